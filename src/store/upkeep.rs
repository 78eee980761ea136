//! Schema migrations, the readiness ping, and the purge of rows nobody needs any more.

use async_trait::async_trait;

use super::backend::{on_backend, Backend, SqlStore};
use super::{PoolStats, Purged, StoreError, StoreResult, Upkeep, SESSION_RETENTION_MS};

const PING: &str = "SELECT 1";

const PURGE_DENYLIST: &str = "DELETE FROM revoked_tokens WHERE expires_at < $1";

const PURGE_SESSIONS: &str = "
    DELETE FROM sessions
    WHERE absolute_expires_at < $1 OR idle_expires_at < $1 OR revoked_at < $1";

const PURGE_THROTTLE: &str = "
    DELETE FROM login_throttle WHERE locked_until < $1 AND window_start < $2";

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

    async fn purge_expired(&self, now: i64) -> StoreResult<Purged> {
        let cutoff = now - SESSION_RETENTION_MS;
        let a = on_backend!(self, |b| sqlx::query(PURGE_DENYLIST)
            .bind(now)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        let b = on_backend!(self, |b| sqlx::query(PURGE_SESSIONS)
            .bind(cutoff)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        let c = on_backend!(self, |b| sqlx::query(PURGE_THROTTLE)
            .bind(now)
            .bind(cutoff)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(Purged {
            revoked_tokens: a,
            sessions: b,
            login_throttle: c,
        })
    }
}
