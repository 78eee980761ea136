//! Login throttle counters, shared by every replica.

use async_trait::async_trait;

use super::backend::{on_backend, Backend, SqlStore};
use super::{StoreResult, ThrottleStore};

const LOCKED_UNTIL: &str = "
    SELECT MAX(locked_until) FROM login_throttle
    WHERE (key = $1 OR key = $2) AND locked_until > $3";

/// One upsert, so concurrent failures are all counted.
const FAIL: &str = "
    INSERT INTO login_throttle (key, failures, window_start, locked_until)
    VALUES ($1, 1, $2, 0)
    ON CONFLICT (key) DO UPDATE SET
      failures = CASE WHEN login_throttle.window_start < $3
                      THEN 1 ELSE login_throttle.failures + 1 END,
      window_start = CASE WHEN login_throttle.window_start < $3
                          THEN $2 ELSE login_throttle.window_start END
    RETURNING failures";

const LOCK: &str = "
    UPDATE login_throttle SET locked_until = $2 WHERE key = $1 AND locked_until < $2";

const CLEAR: &str = "DELETE FROM login_throttle WHERE key = $1";

#[async_trait]
impl ThrottleStore for SqlStore {
    async fn throttle_locked_until(&self, account: &str, ip: &str, now: i64) -> StoreResult<i64> {
        let until: Option<i64> = on_backend!(self, |b| sqlx::query_scalar(LOCKED_UNTIL)
            .bind(account)
            .bind(ip)
            .bind(now)
            .fetch_one(b.pool())
            .await)?;
        Ok(until.unwrap_or(0))
    }

    async fn throttle_fail(&self, key: &str, now: i64, window_cutoff: i64) -> StoreResult<i64> {
        Ok(on_backend!(self, |b| sqlx::query_scalar(FAIL)
            .bind(key)
            .bind(now)
            .bind(window_cutoff)
            .fetch_one(b.pool())
            .await)?)
    }

    async fn throttle_lock(&self, key: &str, until: i64) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(LOCK)
            .bind(key)
            .bind(until)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn throttle_clear(&self, key: &str) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(CLEAR)
            .bind(key)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }
}
