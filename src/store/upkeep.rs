//! Schema migrations, the readiness ping, and the purge of rows nobody needs any more.

use async_trait::async_trait;

use super::backend::{on_backend, Backend, SqlStore};
use super::{
    PoolStats, Purged, StoreError, StoreResult, Upkeep, PURGE_BATCH, SESSION_RETENTION_MS,
};

const PING: &str = "SELECT 1";

const PURGE_DENYLIST: &str = "
    DELETE FROM revoked_tokens WHERE jti IN
        (SELECT jti FROM revoked_tokens WHERE expires_at < $1 LIMIT $2)";

// Both ends are indexed: with nothing to delete this reads two index pages.
const PURGE_SESSIONS: &str = "
    DELETE FROM sessions WHERE id IN
        (SELECT id FROM sessions WHERE absolute_expires_at < $1 OR revoked_at < $1 LIMIT $2)";

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
        (SELECT key FROM login_throttle WHERE locked_until < $1 AND window_start < $2 LIMIT $3)";

/// Pause between two purge batches: the hot paths' statements get the database in between.
const PURGE_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

impl SqlStore {
    /// Runs the purge statement `sql` with `binds` and then `PURGE_BATCH` as its parameters,
    /// again after a pause while it deletes a whole batch; the total deleted.
    pub(super) async fn purge_in_batches(
        &self,
        sql: &'static str,
        binds: &[i64],
    ) -> StoreResult<u64> {
        let mut total = 0;
        loop {
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
            tokio::time::sleep(PURGE_PAUSE).await;
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
        let mut b = self.purge_in_batches(PURGE_SESSIONS, &[cutoff]).await?;
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
