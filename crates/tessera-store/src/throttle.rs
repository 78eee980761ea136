//! Login throttle counters, shared by every replica, and the attempts in flight on each key
//! (invariant 11).

use async_trait::async_trait;
use uuid::Uuid;

use super::backend::{on_backend, Backend, SqlStore};
use super::{Reserve, Reserved, StoreResult, ThrottleStore};

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

/// The attempt joins the key's attempts in flight if fewer than the allowance it has left are
/// in flight (whose lease has not ended); one row or none. Binds: key, attempt, lease end, now,
/// allowance left.
const ADD_ATTEMPT_IF_ROOM: &str = "
    INSERT INTO login_attempts (key, id, lease_until)
    SELECT $1, $2, $3
    WHERE (SELECT COUNT(*) FROM login_attempts WHERE key = $1 AND lease_until > $4) < $5";

/// The attempt leaves the attempts in flight of one or two keys (the one key bound twice).
const REMOVE_ATTEMPT: &str = "DELETE FROM login_attempts WHERE id = $1 AND (key = $2 OR key = $3)";

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

/// A success on Postgres, in one statement (one commit): `CLEAR` of `$4` (none when null) and
/// `REMOVE_ATTEMPT`.
const SUCCEEDED_PG: &str = "
    WITH cleared AS (DELETE FROM login_throttle WHERE key = $4)
    DELETE FROM login_attempts WHERE id = $1 AND (key = $2 OR key = $3)";

#[async_trait]
impl ThrottleStore for SqlStore {
    async fn throttle_reserve(&self, r: &Reserve<'_>) -> StoreResult<Reserved> {
        if r.keys.is_empty() {
            return Ok(Reserved::Taken);
        }
        // The upsert locks each key's row on Postgres; SQLite's lock is taken at BEGIN.
        let (begin, lock_key) = self.locking_tx(LOCK_KEY, LOCK_KEY);
        on_backend!(self, |b| {
            let mut tx = b.pool().begin_with(begin).await?;
            let mut failures = Vec::with_capacity(r.keys.len());
            let mut until = 0;
            for (key, _) in r.keys {
                let (failed, locked_until): (i64, i64) = sqlx::query_as(lock_key)
                    .bind(*key)
                    .bind(r.now)
                    .bind(r.window_cutoff)
                    .fetch_all(&mut *tx)
                    .await
                    .and_then(crate::backend::returned_one)?;
                failures.push(failed);
                until = until.max(locked_until);
            }
            // Dropping the transaction rolls it back.
            if until > r.now {
                return Ok(Reserved::LockedUntil(until));
            }
            for ((key, free), failed) in r.keys.iter().zip(failures) {
                // The allowance left, but always one: after each wait, exactly one guess.
                let allowed = (free - failed).max(1);
                let added = sqlx::query(ADD_ATTEMPT_IF_ROOM)
                    .bind(*key)
                    .bind(r.attempt)
                    .bind(r.lease_until)
                    .bind(r.now)
                    .bind(allowed)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if added == 0 {
                    return Ok(Reserved::Busy);
                }
            }
            tx.commit().await?;
            Ok(Reserved::Taken)
        })
    }

    async fn throttle_failed(
        &self,
        key: &str,
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
        Ok(())
    }

    async fn throttle_release(&self, keys: &[&str], attempt: Uuid) -> StoreResult<()> {
        // An attempt has one or two keys: one statement.
        for pair in keys.chunks(2) {
            let (first, last) = (pair[0], pair[pair.len() - 1]);
            on_backend!(self, |b| sqlx::query(REMOVE_ATTEMPT)
                .bind(attempt)
                .bind(first)
                .bind(last)
                .execute(b.pool())
                .await
                .map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    async fn throttle_succeeded(
        &self,
        clear: Option<&str>,
        keys: &[&str],
        attempt: Uuid,
    ) -> StoreResult<()> {
        let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
            return Ok(());
        };
        if keys.len() > 2 {
            if let Some(key) = clear {
                on_backend!(self, |b| sqlx::query(CLEAR)
                    .bind(key)
                    .execute(b.pool())
                    .await
                    .map(|r| r.rows_affected()))?;
            }
            return self.throttle_release(keys, attempt).await;
        }
        match self {
            SqlStore::Postgres(b) => {
                sqlx::query(SUCCEEDED_PG)
                    .bind(attempt)
                    .bind(*first)
                    .bind(*last)
                    .bind(clear)
                    .execute(b.pool())
                    .await?;
            }
            SqlStore::Sqlite(b) => {
                // One transaction: one commit for both.
                let mut tx = b.pool().begin_with("BEGIN IMMEDIATE").await?;
                if let Some(key) = clear {
                    sqlx::query(CLEAR).bind(key).execute(&mut *tx).await?;
                }
                sqlx::query(REMOVE_ATTEMPT)
                    .bind(attempt)
                    .bind(*first)
                    .bind(*last)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }
}
