//! Login throttle counters, shared by every replica.

use async_trait::async_trait;

use super::backend::{on_backend, Backend, SqlStore};
use super::{StoreResult, ThrottleStore};

const LOCKED_UNTIL: &str = "
    SELECT MAX(locked_until) FROM login_throttle
    WHERE (key = $1 OR key = $2) AND locked_until > $3";

/// One upsert reserves an attempt, or refuses it (no row comes back) while the key waits.
/// The attempt whose count reaches the allowance ($4) makes the key wait at once, until
/// `$5`, so that no attempt racing it goes on; its settlement then sets the real wait, or
/// clears it. Refused attempts count nothing.
const RESERVE: &str = "
    INSERT INTO login_throttle (key, failures, window_start, locked_until)
    VALUES ($1, 1, $2, CASE WHEN 1 >= $4 THEN $5 ELSE 0 END)
    ON CONFLICT (key) DO UPDATE SET
      failures = CASE WHEN login_throttle.window_start < $3
                      THEN 1 ELSE login_throttle.failures + 1 END,
      window_start = CASE WHEN login_throttle.window_start < $3
                          THEN $2 ELSE login_throttle.window_start END,
      locked_until = CASE WHEN (CASE WHEN login_throttle.window_start < $3
                                     THEN 1 ELSE login_throttle.failures + 1 END) >= $4
                          THEN $5 ELSE login_throttle.locked_until END
    WHERE login_throttle.locked_until <= $2
    RETURNING failures";

/// A failure's wait replaces the hold its reservation set ($2), or lengthens a shorter one.
const SETTLE_FAILED: &str = "
    UPDATE login_throttle SET locked_until = $3
    WHERE key = $1 AND (locked_until = $2 OR locked_until < $3)";

/// An attempt that was no failure: its count, and the hold it set ($2), are handed back.
const RELEASE: &str = "
    UPDATE login_throttle
    SET failures = CASE WHEN failures > 0 THEN failures - 1 ELSE 0 END,
        locked_until = CASE WHEN locked_until = $2 THEN 0 ELSE locked_until END
    WHERE key = $1";

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

    async fn throttle_reserve(&self, r: &super::Reserve<'_>) -> StoreResult<Option<i64>> {
        Ok(on_backend!(self, |b| sqlx::query_scalar(RESERVE)
            .bind(r.key)
            .bind(r.now)
            .bind(r.window_cutoff)
            .bind(r.free)
            .bind(r.hold_until)
            .fetch_optional(b.pool())
            .await)?)
    }

    async fn throttle_settle_failed(&self, key: &str, hold: i64, until: i64) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(SETTLE_FAILED)
            .bind(key)
            .bind(hold)
            .bind(until)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn throttle_release(&self, key: &str, hold: i64) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(RELEASE)
            .bind(key)
            .bind(hold)
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
