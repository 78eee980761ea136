//! Login throttle counters, shared by every replica.

use async_trait::async_trait;

use super::backend::{on_backend, Backend, SqlStore};
use super::{Reserve, StoreResult, ThrottleStore};

const LOCKED_UNTIL: &str = "
    SELECT MAX(locked_until) FROM login_throttle
    WHERE (key = $1 OR key = $2) AND locked_until > $3";

/// One upsert reserves an attempt, or refuses it (no row comes back). It refuses while the
/// key waits (`locked_until`), and while as many attempts are in flight (`pending`, within
/// their lease) as the allowance left: `$4` minus the failures of the window, but always one,
/// so that after each wait exactly one guess goes on. Failures are not counted here; the
/// settlement counts them. Binds: key, now, window cut-off, allowance, lease end (ms).
const RESERVE: &str = "
    INSERT INTO login_throttle (key, failures, window_start, locked_until, pending, pending_until)
    VALUES ($1, 0, $2, 0, 1, $5)
    ON CONFLICT (key) DO UPDATE SET
      failures = CASE WHEN login_throttle.window_start < $3
                      THEN 0 ELSE login_throttle.failures END,
      window_start = CASE WHEN login_throttle.window_start < $3
                          THEN $2 ELSE login_throttle.window_start END,
      pending = CASE WHEN login_throttle.pending_until <= $2
                     THEN 1 ELSE login_throttle.pending + 1 END,
      pending_until = CASE WHEN login_throttle.pending_until > $5
                           THEN login_throttle.pending_until ELSE $5 END
    WHERE login_throttle.locked_until <= $2
      AND (login_throttle.pending_until <= $2
           OR login_throttle.pending < CASE
                WHEN login_throttle.window_start < $3 THEN $4
                WHEN $4 - login_throttle.failures > 1 THEN $4 - login_throttle.failures
                ELSE 1 END)
    RETURNING failures";

/// A failed attempt: counted, its in-flight slot handed back, and, once the count reaches the
/// allowance (`$3`), the key waits `$4 << (count - allowance)` ms (capped at `$5`), in the same
/// statement, so that no attempt can start between the count and the wait. Binds: key, now,
/// allowance, base wait, longest wait (ms).
const SETTLE_FAILED: &str = "
    UPDATE login_throttle SET
      failures = failures + 1,
      pending = CASE WHEN pending > 0 THEN pending - 1 ELSE 0 END,
      locked_until = CASE
        WHEN failures + 1 < $3 THEN locked_until
        WHEN failures + 1 - $3 >= 30 THEN $2 + $5
        WHEN ($4 << CAST(failures + 1 - $3 AS INTEGER)) > $5 THEN $2 + $5
        ELSE $2 + ($4 << CAST(failures + 1 - $3 AS INTEGER)) END
    WHERE key = $1";

/// An attempt that was no failure (or could not be checked): its in-flight slot is handed
/// back.
const RELEASE: &str = "
    UPDATE login_throttle
    SET pending = CASE WHEN pending > 0 THEN pending - 1 ELSE 0 END
    WHERE key = $1";

/// A success clears the key's failures and wait: the row goes when no other attempt is in
/// flight on it (`$2`: now), ...
const CLEAR_IDLE: &str = "
    DELETE FROM login_throttle WHERE key = $1 AND (pending <= 1 OR pending_until <= $2)";

/// ... and otherwise is reset, the attempts still in flight keeping their slots.
const CLEAR: &str = "
    UPDATE login_throttle
    SET failures = 0, locked_until = 0,
        pending = CASE WHEN pending > 0 THEN pending - 1 ELSE 0 END
    WHERE key = $1";

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

    async fn throttle_reserve(&self, r: &Reserve<'_>) -> StoreResult<Option<i64>> {
        Ok(on_backend!(self, |b| sqlx::query_scalar(RESERVE)
            .bind(r.key)
            .bind(r.now)
            .bind(r.window_cutoff)
            .bind(r.free)
            .bind(r.lease_until)
            .fetch_optional(b.pool())
            .await)?)
    }

    async fn throttle_failed(
        &self,
        key: &str,
        now: i64,
        free: i64,
        base_ms: i64,
        max_ms: i64,
    ) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(SETTLE_FAILED)
            .bind(key)
            .bind(now)
            .bind(free)
            .bind(base_ms)
            .bind(max_ms)
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

    async fn throttle_clear(&self, key: &str, now: i64) -> StoreResult<()> {
        let deleted = on_backend!(self, |b| sqlx::query(CLEAR_IDLE)
            .bind(key)
            .bind(now)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        if deleted == 1 {
            return Ok(());
        }
        on_backend!(self, |b| sqlx::query(CLEAR)
            .bind(key)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }
}
