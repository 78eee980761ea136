//! Schema migrations, the readiness ping, and the purge of rows nobody needs any more.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::backend::{on_backend, Backend, SqlStore};
use super::{PoolStats, Purged, StoreError, StoreResult, Upkeep, PURGE_BATCH};

const PING: &str = "SELECT 1";

/// Postgres: whether this session may write. `on` on a standby, a demoted primary, or a
/// database set `default_transaction_read_only`: every login would fail, so not ready.
const PING_PG: &str = "SELECT current_setting('transaction_read_only')";

// Each batch is found by an index range scan, in index order. Without the `ORDER BY`, Postgres
// may pick a sequential scan for a small `LIMIT` (it expects matches spread over the table):
// with 1M expired sessions behind 1M live ones, every batch then read the live ones first,
// and a refresh chain's p99 went from 0.55 to 11.4 ms during the purge (47.6 s long). One
// statement per indexed end, for the same reason (an `OR` of the two could not be read in
// order).
const PURGE_DENYLIST: &str = "
    DELETE FROM revoked_tokens WHERE jti IN
        (SELECT jti FROM revoked_tokens WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)";

const PURGE_ENDED_SESSIONS: &str = "
    DELETE FROM sessions WHERE id IN
        (SELECT id FROM sessions WHERE absolute_expires_at < $1
         ORDER BY absolute_expires_at LIMIT $2)";

const PURGE_REVOKED_SESSIONS: &str = "
    DELETE FROM sessions WHERE id IN
        (SELECT id FROM sessions WHERE revoked_at < $1 ORDER BY revoked_at LIMIT $2)";

// `idle_expires_at` changes at every refresh. An index on it costs the refresh path its HOT
// updates: measured on Postgres 15 with 1M sessions, rotations fell from 12,224 to 11,455/s
// and none of 172k updates was HOT (all 183k were without the index). Without it, this
// statement scans the table (67 ms at 1M rows with nothing to delete), so it runs hourly, not
// every minute; the sessions it finds are dead already (a refresh checks the idle expiry).
const PURGE_IDLE_SESSIONS: &str = "
    DELETE FROM sessions WHERE id IN
        (SELECT id FROM sessions WHERE idle_expires_at < $1 LIMIT $2)";

/// Authorization codes an hour past their expiry: long enough for a replay to still find the
/// code and revoke what it produced (invariant 7), and no longer.
const PURGE_CODES: &str = "
    DELETE FROM authorization_codes WHERE code_hash IN
        (SELECT code_hash FROM authorization_codes WHERE expires_at < $1
         ORDER BY expires_at LIMIT $2)";

/// SSO sessions ended (absolute expiry or revocation) before the retention cut-off.
const PURGE_SSO_SESSIONS: &str = "
    DELETE FROM sso_sessions WHERE id IN
        (SELECT id FROM sso_sessions
         WHERE absolute_expires_at < $1 OR revoked_at < $1 OR idle_expires_at < $1 LIMIT $2)";

/// Device codes an hour past their expiry.
const PURGE_DEVICE_CODES: &str = "
    DELETE FROM device_codes WHERE device_code_hash IN
        (SELECT device_code_hash FROM device_codes WHERE expires_at < $1 LIMIT $2)";

/// The mfa_tokens of logins waiting for a second factor, past their expiry.
const PURGE_MFA_CHALLENGES: &str = "
    DELETE FROM mfa_challenges WHERE token_hash IN
        (SELECT token_hash FROM mfa_challenges WHERE expires_at < $1 LIMIT $2)";

/// Tokens sent by email, past their expiry; not an invitation that was never taken up, which
/// `GET /admin/invitations` lists until it is withdrawn (its account holds the address).
const PURGE_ACCOUNT_TOKENS: &str = "
    DELETE FROM account_tokens WHERE token_hash IN
        (SELECT t.token_hash FROM account_tokens t
         WHERE t.expires_at < $1
           AND NOT (t.purpose = 'invite' AND t.used_at IS NULL AND EXISTS (
               SELECT 1 FROM users u WHERE u.id = t.user_id AND u.tokens_not_before = t.fence))
         LIMIT $2)";

/// Mail sent or given up before the cut-off.
const PURGE_MAIL: &str = "
    DELETE FROM mail_outbox WHERE id IN
        (SELECT id FROM mail_outbox WHERE sent_at < $1 OR dead_at < $1 LIMIT $2)";

/// Request counts whose window has ended.
const PURGE_REQUEST_LIMITS: &str = "
    DELETE FROM request_limits WHERE key IN
        (SELECT key FROM request_limits WHERE expires_at < $1 LIMIT $2)";

/// WebAuthn ceremonies never finished, past their expiry.
const PURGE_CEREMONIES: &str = "
    DELETE FROM webauthn_ceremonies WHERE id_hash IN
        (SELECT id_hash FROM webauthn_ceremonies WHERE expires_at < $1 LIMIT $2)";

/// Pushed authorization requests past their expiry.
const PURGE_PUSHED: &str = "
    DELETE FROM pushed_requests WHERE uri_hash IN
        (SELECT uri_hash FROM pushed_requests WHERE expires_at < $1 LIMIT $2)";

/// Back-channel deliveries delivered or given up before the retention cut-off.
const PURGE_DELIVERIES: &str = "
    DELETE FROM backchannel_deliveries WHERE id IN
        (SELECT id FROM backchannel_deliveries WHERE delivered_at < $1 OR failed_at < $1 LIMIT $2)";

const PURGE_THROTTLE: &str = "
    DELETE FROM login_throttle WHERE key IN
        (SELECT key FROM login_throttle WHERE locked_until < $1 AND window_start < $2 LIMIT $3)";

/// Attempts whose lease ended: their process died before settling them.
const PURGE_ATTEMPTS: &str = "
    DELETE FROM login_attempts WHERE (key, id) IN
        (SELECT key, id FROM login_attempts WHERE lease_until < $1 LIMIT $2)";

/// The least pause between two purge batches.
const PURGE_PAUSE: Duration = Duration::from_millis(3);
/// After a batch that took `t`, the purge waits `PURGE_YIELD × t` (at least `PURGE_PAUSE`): it
/// works at most a third of the time, and the hot paths' statements get the database, its WAL
/// and the CPU in between, however slow the batches are on a given machine.
const PURGE_YIELD: u32 = 2;

impl SqlStore {
    /// Runs the purge statement `sql` with `binds` and then `PURGE_BATCH` as its parameters,
    /// again after a pause while it deletes a whole batch; the total deleted. The pause grows
    /// with the batch's own time (see `PURGE_YIELD`).
    pub(super) async fn purge_in_batches(
        &self,
        sql: &'static str,
        binds: &[i64],
    ) -> StoreResult<u64> {
        let mut total = 0;
        loop {
            let started = Instant::now();
            let n = on_backend!(self, |b| {
                let mut q = sqlx::query(sql);
                for v in binds {
                    q = q.bind(*v);
                }
                q.bind(PURGE_BATCH)
                    .execute(b.pool())
                    .await
                    .map(|r| r.rows_affected())
            })?;
            total += n;
            if n < PURGE_BATCH as u64 {
                return Ok(total);
            }
            tokio::time::sleep((started.elapsed() * PURGE_YIELD).max(PURGE_PAUSE)).await;
        }
    }
}

/// What Postgres recorded for 0008 when it still built its three indexes in one transaction;
/// the migration now builds one CONCURRENTLY, and 0010-0014 the rest, to the same schema.
const PG_0008_TRANSACTIONAL_SHA384: &str = "9190898aabc0fdfb0107d13072b989e72eb9a96e8b359d6d731d725b6d36bf39198a9c1a41cebbadcaf03e68a06fe0da";

/// Indexes that migrations build `CONCURRENTLY`. A build that was interrupted (the process was
/// killed, the statement failed) leaves an invalid index behind, which `IF NOT EXISTS` would
/// then take as built.
const PG_CONCURRENT_INDEXES: &[&str] = &[
    "revoked_tokens_feed_idx",
    "sessions_feed_idx",
    "users_feed_idx",
    "users_username_skeleton_key",
    "users_email_key",
];

const PG_INVALID_INDEXES: &str = "
    SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE NOT i.indisvalid AND c.relname = ANY($1)";

/// Runs the Postgres migrations under sqlx's advisory lock (re-entrant, so held across the
/// repairs below and the run), on a dedicated connection: if a migration fails while holding
/// the lock, the connection is closed (detached and dropped) instead of returning to the pool
/// with the lock still held. Before the run, under the lock (a replica building an index
/// concurrently holds it, so its in-progress, not yet valid index is never taken for a dead
/// one): the record of 0008's transactional form is updated to its current checksum, and an
/// index a concurrent build left invalid is dropped, so that its migration builds it again.
async fn pg_migrate(pg: &super::pg::PgStore) -> StoreResult<()> {
    use sqlx::migrate::Migrate;
    let mut conn = pg.pool().acquire().await?;
    let result = async {
        conn.lock().await?;
        conn.ensure_migrations_table("_sqlx_migrations").await?;
        if let Some(m) = pg.migrator().iter().find(|m| m.version == 8) {
            let old = (0..PG_0008_TRANSACTIONAL_SHA384.len())
                .step_by(2)
                .filter_map(|i| {
                    u8::from_str_radix(&PG_0008_TRANSACTIONAL_SHA384[i..i + 2], 16).ok()
                })
                .collect::<Vec<u8>>();
            sqlx::query(
                "UPDATE _sqlx_migrations SET checksum = $1 WHERE version = 8 AND checksum = $2",
            )
            .bind(&*m.checksum)
            .bind(old)
            .execute(&mut *conn)
            .await?;
        }
        let invalid: Vec<String> = sqlx::query_scalar(PG_INVALID_INDEXES)
            .bind(PG_CONCURRENT_INDEXES)
            .fetch_all(&mut *conn)
            .await?;
        for name in invalid {
            tracing::warn!(index = %name, "dropping an index an interrupted build left invalid");
            // `name` is one of PG_CONCURRENT_INDEXES, not input.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {name}"
            )))
            .execute(&mut *conn)
            .await?;
        }
        pg.migrator().run_direct(None, &mut *conn, false).await?;
        conn.unlock().await?;
        Ok::<_, sqlx::migrate::MigrateError>(())
    }
    .await;
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            drop(conn.detach());
            Err(StoreError::Other(format!("migration failed: {e}")))
        }
    }
}

#[async_trait]
impl Upkeep for SqlStore {
    async fn migrate(&self) -> StoreResult<()> {
        let sqlite = match self {
            SqlStore::Postgres(pg) => return pg_migrate(pg).await,
            SqlStore::Sqlite(sqlite) => sqlite,
        };
        // As on Postgres, a connection a migration failed on is closed, not pooled again.
        let mut conn = sqlite.pool().acquire().await?;
        match sqlite.migrator().run_direct(None, &mut *conn, false).await {
            Ok(()) => Ok(()),
            Err(e) => {
                drop(conn.detach());
                Err(StoreError::Other(format!("migration failed: {e}")))
            }
        }
    }

    async fn ping(&self) -> StoreResult<()> {
        match self {
            SqlStore::Postgres(b) => {
                let mut conn = b.pool().acquire().await?;
                let (read_only,): (String,) = sqlx::query_as(PING_PG).fetch_one(&mut *conn).await?;
                if read_only != "off" {
                    // Closed, not pooled: a session opened read-only stays so after the
                    // database takes writes again.
                    drop(conn.detach());
                    return Err(StoreError::Unavailable(
                        "the database is read-only (transaction_read_only is on)".into(),
                    ));
                }
            }
            SqlStore::Sqlite(b) => {
                sqlx::query(PING).execute(b.pool()).await?;
            }
        }
        Ok(())
    }

    fn pool_stats(&self) -> PoolStats {
        on_backend!(self, |b| {
            let pool = b.pool();
            PoolStats {
                open: pool.size(),
                idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                max: pool.options().get_max_connections(),
            }
        })
    }

    async fn probe_acquire(&self, limit: std::time::Duration) -> Option<std::time::Duration> {
        let started = std::time::Instant::now();
        on_backend!(self, |b| {
            let conn = tokio::time::timeout(limit, b.pool().acquire()).await;
            matches!(conn, Ok(Ok(_))).then(|| started.elapsed())
        })
    }

    async fn purge_expired(&self, now: i64, sweep_idle: bool) -> StoreResult<Purged> {
        let cutoff = now - super::sql::SESSION_RETENTION_MS;
        let a = self.purge_in_batches(PURGE_DENYLIST, &[now]).await?;
        let mut b = self
            .purge_in_batches(PURGE_ENDED_SESSIONS, &[cutoff])
            .await?;
        b += self
            .purge_in_batches(PURGE_REVOKED_SESSIONS, &[cutoff])
            .await?;
        if sweep_idle {
            b += self
                .purge_in_batches(PURGE_IDLE_SESSIONS, &[cutoff])
                .await?;
        }
        let c = self
            .purge_in_batches(PURGE_THROTTLE, &[now, cutoff])
            .await?
            + self.purge_in_batches(PURGE_ATTEMPTS, &[now]).await?
            + self.purge_in_batches(PURGE_REQUEST_LIMITS, &[now]).await?;
        b += self.purge_in_batches(PURGE_SSO_SESSIONS, &[cutoff]).await?;
        b += self.purge_in_batches(PURGE_DELIVERIES, &[cutoff]).await?;
        let codes = self
            .purge_in_batches(PURGE_CODES, &[now - 3_600_000])
            .await?
            + self.purge_in_batches(PURGE_PUSHED, &[now]).await?
            + self.purge_in_batches(PURGE_MFA_CHALLENGES, &[now]).await?
            + self.purge_in_batches(PURGE_CEREMONIES, &[now]).await?
            + self.purge_in_batches(PURGE_ACCOUNT_TOKENS, &[now]).await?
            // Sent and dead mail is kept a week, to look into.
            + self.purge_in_batches(PURGE_MAIL, &[now - 7 * 86_400_000])
                .await?
            + self
                .purge_in_batches(PURGE_DEVICE_CODES, &[now - 3_600_000])
                .await?;
        Ok(Purged {
            authorization_codes: codes,
            revoked_tokens: a,
            sessions: b,
            login_throttle: c,
        })
    }
}
