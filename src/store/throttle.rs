//! Login throttle counters, shared by every replica.

use async_trait::async_trait;

use super::backend::{on_backend, Backend, SqlStore};
use super::{StoreResult, ThrottleStore};

const LOCKED_UNTIL: &str = "
    SELECT MAX(locked_until) FROM login_throttle
    WHERE (key = $1 OR key = $2) AND locked_until > $3";

/// One upsert, so concurrent attempts are all counted; none while the key waits (then no row
/// comes back).
const RESERVE: &str = "
    INSERT INTO login_throttle (key, failures, window_start, locked_until)
    VALUES ($1, 1, $2, 0)
    ON CONFLICT (key) DO UPDATE SET
      failures = CASE WHEN login_throttle.window_start < $3
                      THEN 1 ELSE login_throttle.failures + 1 END,
      window_start = CASE WHEN login_throttle.window_start < $3
                          THEN $2 ELSE login_throttle.window_start END
    WHERE login_throttle.locked_until <= $2
    RETURNING failures";

/// The one attempt allowed after a wait takes the key's next wait at once, so that attempts
/// racing it find the key waiting. Only a key that has waited (`locked_until <> 0`) has such
/// an attempt: a burst before any wait gets no more than the allowance.
const TAKE_TURN: &str = "
    UPDATE login_throttle SET locked_until = $3
    WHERE key = $1 AND locked_until <> 0 AND locked_until <= $2";

const LOCK: &str = "
    UPDATE login_throttle SET locked_until = $2 WHERE key = $1 AND locked_until < $2";

const RELEASE: &str = "
    UPDATE login_throttle SET failures = failures - 1 WHERE key = $1 AND failures > 0";

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

    async fn throttle_reserve(
        &self,
        key: &str,
        now: i64,
        window_cutoff: i64,
    ) -> StoreResult<Option<i64>> {
        Ok(on_backend!(self, |b| sqlx::query_scalar(RESERVE)
            .bind(key)
            .bind(now)
            .bind(window_cutoff)
            .fetch_optional(b.pool())
            .await)?)
    }

    async fn throttle_take_turn(&self, key: &str, now: i64, until: i64) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(TAKE_TURN)
            .bind(key)
            .bind(now)
            .bind(until)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
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

    async fn throttle_release(&self, key: &str) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(RELEASE)
            .bind(key)
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
