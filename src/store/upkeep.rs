//! Schema migrations, the readiness ping, and the purge of rows nobody needs any more.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::backend::{on_backend, Backend, SqlStore};
use super::{
    PoolStats, Purged, StoreError, StoreResult, Upkeep, PURGE_BATCH, SESSION_RETENTION_MS,
};

const PING: &str = "SELECT 1";

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

const PURGE_THROTTLE: &str = "
    DELETE FROM login_throttle WHERE key IN
        (SELECT key FROM login_throttle
         WHERE locked_until < $1 AND window_start < $2 AND pending_until < $1 LIMIT $3)";

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

#[async_trait]
impl Upkeep for SqlStore {
    async fn migrate(&self) -> StoreResult<()> {
        on_backend!(self, |b| {
            // A dedicated connection: if a migration fails while holding Postgres's advisory
            // lock, the connection is closed (detached and dropped) instead of returning to
            // the pool with the lock still held.
            let mut conn = b.pool().acquire().await?;
            match b.migrator().run_direct(None, &mut *conn, false).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    drop(conn.detach());
                    Err(StoreError::Other(format!("migration failed: {e}")))
                }
            }
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(PING)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
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
        let cutoff = now - SESSION_RETENTION_MS;
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
            .await?;
        Ok(Purged {
            revoked_tokens: a,
            sessions: b,
            login_throttle: c,
        })
    }
}
