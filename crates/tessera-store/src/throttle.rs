//! Login throttle counters, shared by every replica, and the attempts in flight on each key
//! (invariant 11).

use async_trait::async_trait;
use uuid::Uuid;

use super::backend::{on_backend, Backend, SqlStore};
use super::{Reserve, StoreResult, ThrottleStore};

const LOCKED_UNTIL: &str = "
    SELECT MAX(locked_until) FROM login_throttle
    WHERE (key = $1 OR key = $2) AND locked_until > $3";

/// The first statement of a reservation: the key's row, created if missing and its failures
/// forgotten once their window has passed. The upsert holds the row locked until the
/// reservation's transaction ends (on SQLite, `BEGIN IMMEDIATE` holds the database), so the
/// count of attempts in flight read next cannot change before this attempt is added to it.
/// Binds: key, now, window cut-off (ms).
const LOCK_KEY: &str = "
    INSERT INTO login_throttle (key, failures, window_start, locked_until)
    VALUES ($1, 0, $2, 0)
    ON CONFLICT (key) DO UPDATE SET
      failures = CASE WHEN login_throttle.window_start < $3
                      THEN 0 ELSE login_throttle.failures END,
      window_start = CASE WHEN login_throttle.window_start < $3
                          THEN $2 ELSE login_throttle.window_start END
    RETURNING failures, locked_until";

/// Attempts in flight on the key: those whose lease has not ended.
const IN_FLIGHT: &str = "
    SELECT COUNT(*) FROM login_attempts WHERE key = $1 AND lease_until > $2";

const ADD_ATTEMPT: &str = "
    INSERT INTO login_attempts (key, id, lease_until) VALUES ($1, $2, $3)";

const REMOVE_ATTEMPT: &str = "DELETE FROM login_attempts WHERE key = $1 AND id = $2";

/// A failed attempt is counted, and once the count reaches the allowance (`$3`) the key waits
/// `$4 << (count - allowance)` ms (capped at `$5`). It runs before the attempt's row is
/// removed, so an attempt waiting for that slot sees the new count. Binds: key, now,
/// allowance, base wait, longest wait (ms).
const COUNT_FAILURE: &str = "
    UPDATE login_throttle SET
      failures = failures + 1,
      locked_until = CASE
        WHEN failures + 1 < $3 THEN locked_until
        WHEN failures + 1 - $3 >= 30 THEN $2 + $5
        WHEN ($4 << CAST(failures + 1 - $3 AS INTEGER)) > $5 THEN $2 + $5
        ELSE $2 + ($4 << CAST(failures + 1 - $3 AS INTEGER)) END
    WHERE key = $1";

/// A success clears the key: its failures and its wait.
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

    async fn throttle_reserve(&self, r: &Reserve<'_>) -> StoreResult<bool> {
        // The upsert locks the key's row on Postgres; SQLite's lock is taken at BEGIN.
        let (begin, lock_key) = self.locking_tx(LOCK_KEY, LOCK_KEY);
        on_backend!(self, |b| {
            let mut tx = b.pool().begin_with(begin).await?;
            let (failures, locked_until): (i64, i64) = sqlx::query_as(lock_key)
                .bind(r.key)
                .bind(r.now)
                .bind(r.window_cutoff)
                .fetch_all(&mut *tx)
                .await
                .and_then(crate::backend::returned_one)?;
            let in_flight: i64 = sqlx::query_scalar(IN_FLIGHT)
                .bind(r.key)
                .bind(r.now)
                .fetch_one(&mut *tx)
                .await?;
            // The allowance left, but always one: after each wait, exactly one guess.
            let allowed = (r.free - failures).max(1);
            if locked_until > r.now || in_flight >= allowed {
                // Dropping the transaction rolls it back.
                return Ok(false);
            }
            sqlx::query(ADD_ATTEMPT)
                .bind(r.key)
                .bind(r.attempt)
                .bind(r.lease_until)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    async fn throttle_failed(
        &self,
        key: &str,
        attempt: Uuid,
        now: i64,
        free: i64,
        base_ms: i64,
        max_ms: i64,
    ) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(COUNT_FAILURE)
            .bind(key)
            .bind(now)
            .bind(free)
            .bind(base_ms)
            .bind(max_ms)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        self.throttle_release(key, attempt).await
    }

    async fn throttle_release(&self, key: &str, attempt: Uuid) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(REMOVE_ATTEMPT)
            .bind(key)
            .bind(attempt)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn throttle_clear(&self, key: &str, attempt: Uuid) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(CLEAR)
            .bind(key)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        self.throttle_release(key, attempt).await
    }
}
