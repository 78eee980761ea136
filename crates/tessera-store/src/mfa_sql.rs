//! The SQL of second factors (`mfa.rs`, `MfaStore`): factors, passkeys and recovery codes.

use async_trait::async_trait;
use uuid::Uuid;

use super::backend::{on_backend, Backend, SqlStore};
use super::challenge_sql::TAKE_CHALLENGE;
use super::{MfaFactor, MfaStore, PasskeyRefused, RecoveryCodeUse, StoreResult};

/// Only while the user holds fewer than `$10` factors (run with the user's row held:
/// `insert_factor`).
const INSERT_FACTOR: &str = "
    INSERT INTO mfa_factors (id, user_id, kind, name, secret_enc, confirmed_at, last_used_step,
                             created_at, last_used_at)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
    WHERE (SELECT COUNT(*) FROM mfa_factors WHERE user_id = $2) < $10";

/// A passkey: confirmed as it is stored, and refused when its credential id is anyone's
/// already (the unique index is the last word under a race).
const INSERT_PASSKEY: &str = "
    INSERT INTO mfa_factors (id, user_id, kind, name, secret_enc, confirmed_at, last_used_step,
                             created_at, last_used_at, credential_id, credential, sign_count,
                             backup_eligible, backup_state)
    SELECT $1, $2, 'passkey', $3, $4, $5, -1, $5, NULL, $6, $7, $8, $9, $10
    WHERE (SELECT COUNT(*) FROM mfa_factors WHERE user_id = $2) < $11
      AND NOT EXISTS (SELECT 1 FROM mfa_factors WHERE credential_id = $6)
    ON CONFLICT DO NOTHING";

const PASSKEY: &str = "
    SELECT * FROM mfa_factors
    WHERE credential_id = $1 AND kind = 'passkey' AND confirmed_at IS NOT NULL";

/// Only if the counter is still what the assertion was checked against: of two parallel
/// assertions with one counter value, one is stored.
const PASSKEY_USED: &str = "
    UPDATE mfa_factors
    SET credential = $2, sign_count = $3, backup_eligible = $4, backup_state = $5,
        last_used_at = $6
    WHERE id = $1 AND sign_count = $7";

const FACTOR_KINDS: &str = "
    SELECT DISTINCT kind FROM mfa_factors
    WHERE user_id = $1 AND confirmed_at IS NOT NULL ORDER BY kind";

const FACTORS_OF_USER: &str =
    "SELECT * FROM mfa_factors WHERE user_id = $1 ORDER BY created_at, id";

const HAS_FACTOR: &str = "
    SELECT COUNT(*) FROM mfa_factors WHERE user_id = $1 AND confirmed_at IS NOT NULL";

/// Invariant 7: the WHERE clause is the whole check, so a time step is taken once.
const TAKE_STEP: &str = "
    UPDATE mfa_factors
    SET last_used_step = $2, last_used_at = $3,
        confirmed_at = CASE WHEN confirmed_at IS NULL THEN $3 ELSE confirmed_at END
    WHERE id = $1 AND last_used_step < $2
      AND ((confirmed_at IS NULL) = $4)";

const RENAME_FACTOR: &str = "UPDATE mfa_factors SET name = $3 WHERE user_id = $1 AND id = $2";

const DELETE_FACTOR: &str = "DELETE FROM mfa_factors WHERE user_id = $1 AND id = $2";

const DELETE_FACTORS: &str = "DELETE FROM mfa_factors WHERE user_id = $1";

const DELETE_RECOVERY_CODES: &str = "DELETE FROM recovery_codes WHERE user_id = $1";

/// The first statement of a replacement of recovery codes: their user's row, held until the
/// transaction ends (SQLite's `BEGIN IMMEDIATE` holds the database).
const LOCK_USER_PG: &str = "SELECT id FROM users WHERE id = $1 FOR UPDATE";
const LOCK_USER: &str = "SELECT id FROM users WHERE id = $1";

const HELD_RECOVERY_CODES: &str = "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1";

const SEALED_FACTORS: &str =
    "SELECT id, secret_enc FROM mfa_factors WHERE kind = 'totp' ORDER BY id";

const RESEAL_FACTOR: &str =
    "UPDATE mfa_factors SET secret_enc = $3 WHERE id = $1 AND secret_enc = $2";

const INSERT_RECOVERY_CODE: &str =
    "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)";

const USE_RECOVERY_CODE: &str = "
    UPDATE recovery_codes SET used_at = $3
    WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL";

const RETURN_RECOVERY_CODE: &str = "
    UPDATE recovery_codes SET used_at = NULL
    WHERE user_id = $1 AND code_hash = $2 AND used_at IS NOT NULL";

const RECOVERY_CODE_KNOWN: &str =
    "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND code_hash = $2";

const RECOVERY_CODES_LEFT: &str =
    "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL";

/// Runs the write `$query` (a factor counted against the user's limit, then inserted) in a
/// transaction that holds the user's row first (Postgres `FOR UPDATE`, SQLite `BEGIN
/// IMMEDIATE`): on Postgres, enrolments at once each counted before the others' inserts
/// committed, and all passed the limit. Evaluates to the rows it wrote.
macro_rules! with_user_held {
    ($store:expr, $user_id:expr, $query:expr) => {{
        let (begin, lock_user) = $store.locking_tx(LOCK_USER_PG, LOCK_USER);
        on_backend!($store, |b| {
            let mut tx = b.pool().begin_with(begin).await?;
            let _: Option<Uuid> = sqlx::query_scalar(lock_user)
                .bind($user_id)
                .fetch_optional(&mut *tx)
                .await?;
            let n = $query.execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            n
        })
    }};
}

#[async_trait]
impl MfaStore for SqlStore {
    async fn insert_factor(&self, f: &MfaFactor, max_factors: i64) -> StoreResult<bool> {
        let n = with_user_held!(
            self,
            f.user_id,
            sqlx::query(INSERT_FACTOR)
                .bind(f.id)
                .bind(f.user_id)
                .bind(&f.kind)
                .bind(&f.name)
                .bind(&f.secret_enc)
                .bind(f.confirmed_at)
                .bind(f.last_used_step)
                .bind(f.created_at)
                .bind(f.last_used_at)
                .bind(max_factors)
        );
        Ok(n == 1)
    }

    async fn factors_of_user(&self, user_id: Uuid) -> StoreResult<Vec<MfaFactor>> {
        let rows: Vec<MfaFactor> = on_backend!(self, |b| sqlx::query_as(FACTORS_OF_USER)
            .bind(user_id)
            .fetch_all(b.pool())
            .await)?;
        Ok(rows)
    }

    async fn has_factor(&self, user_id: Uuid) -> StoreResult<bool> {
        let (n,): (i64,) = on_backend!(self, |b| sqlx::query_as(HAS_FACTOR)
            .bind(user_id)
            .fetch_one(b.pool())
            .await)?;
        Ok(n > 0)
    }

    async fn take_totp_step(
        &self,
        id: Uuid,
        step: i64,
        confirm: bool,
        now: i64,
    ) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(TAKE_STEP)
            .bind(id)
            .bind(step)
            .bind(now)
            .bind(confirm)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    async fn rename_factor(&self, user_id: Uuid, id: Uuid, name: &str) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(RENAME_FACTOR)
            .bind(user_id)
            .bind(id)
            .bind(name)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    async fn delete_factor(&self, user_id: Uuid, id: Uuid) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(DELETE_FACTOR)
            .bind(user_id)
            .bind(id)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    async fn delete_factors(&self, user_id: Uuid) -> StoreResult<u64> {
        on_backend!(self, |b| {
            let mut tx = b.pool().begin().await?;
            let n = sqlx::query(DELETE_FACTORS)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(DELETE_RECOVERY_CODES)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(n)
        })
    }

    async fn sealed_factors(&self) -> StoreResult<Vec<(Uuid, Vec<u8>)>> {
        let rows: Vec<(Uuid, Vec<u8>)> = on_backend!(self, |b| sqlx::query_as(SEALED_FACTORS)
            .fetch_all(b.pool())
            .await)?;
        Ok(rows)
    }

    async fn reseal_factors(&self, reseal: &[(Uuid, Vec<u8>, Vec<u8>)]) -> StoreResult<()> {
        on_backend!(self, |b| {
            let mut tx = b.pool().begin().await?;
            for (id, old, new) in reseal {
                sqlx::query(RESEAL_FACTOR)
                    .bind(id)
                    .bind(old)
                    .bind(new)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    async fn replace_recovery_codes(
        &self,
        user_id: Uuid,
        hashes: &[String],
        now: i64,
        if_none: bool,
    ) -> StoreResult<bool> {
        let (begin, lock_user) = self.locking_tx(LOCK_USER_PG, LOCK_USER);
        on_backend!(self, |b| {
            let mut tx = b.pool().begin_with(begin).await?;
            let _: Option<Uuid> = sqlx::query_scalar(lock_user)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
            if if_none {
                let held: i64 = sqlx::query_scalar(HELD_RECOVERY_CODES)
                    .bind(user_id)
                    .fetch_one(&mut *tx)
                    .await?;
                // Dropping the transaction rolls it back.
                if held > 0 {
                    return Ok(false);
                }
            }
            sqlx::query(DELETE_RECOVERY_CODES)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            for h in hashes {
                sqlx::query(INSERT_RECOVERY_CODE)
                    .bind(user_id)
                    .bind(h)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    async fn use_recovery_code(
        &self,
        user_id: Uuid,
        hash: &str,
        now: i64,
        challenge_hash: &str,
        max_failures: i64,
    ) -> StoreResult<RecoveryCodeUse> {
        // The challenge first: its row is held until the end, so parallel steps on one
        // mfa_token take turns, and a step that finds it used leaves its code alone. (The
        // body's `return`s leave this function.)
        let (begin, take) = self.locking_tx(TAKE_CHALLENGE, TAKE_CHALLENGE);
        on_backend!(self, |b| {
            let mut tx = b.pool().begin_with(begin).await?;
            let took = sqlx::query(take)
                .bind(challenge_hash)
                .bind(now)
                .bind(max_failures)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if took != 1 {
                return Ok(RecoveryCodeUse::ChallengeUsed);
            }
            let used = sqlx::query(USE_RECOVERY_CODE)
                .bind(user_id)
                .bind(hash)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if used == 1 {
                tx.commit().await?;
                return Ok(RecoveryCodeUse::Taken);
            }
            // Codes are only ever used or deleted: a row that is still there was used.
            let known: i64 = sqlx::query_scalar(RECOVERY_CODE_KNOWN)
                .bind(user_id)
                .bind(hash)
                .fetch_one(&mut *tx)
                .await?;
            // Dropping the transaction rolls it back: the challenge stays for another guess.
            Ok(match known > 0 {
                true => RecoveryCodeUse::Spent,
                false => RecoveryCodeUse::Unknown,
            })
        })
    }

    async fn return_recovery_code(&self, user_id: Uuid, hash: &str) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(RETURN_RECOVERY_CODE)
            .bind(user_id)
            .bind(hash)
            .execute(b.pool())
            .await
            .map(|_| ()))?;
        Ok(())
    }

    async fn recovery_codes_left(&self, user_id: Uuid) -> StoreResult<i64> {
        let (n,): (i64,) = on_backend!(self, |b| sqlx::query_as(RECOVERY_CODES_LEFT)
            .bind(user_id)
            .fetch_one(b.pool())
            .await)?;
        Ok(n)
    }

    async fn passkey(&self, credential_id: &str) -> StoreResult<Option<MfaFactor>> {
        let row: Option<MfaFactor> = on_backend!(self, |b| sqlx::query_as(PASSKEY)
            .bind(credential_id)
            .fetch_optional(b.pool())
            .await)?;
        Ok(row)
    }

    async fn passkey_used(&self, f: &MfaFactor, seen_count: i64, now: i64) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(PASSKEY_USED)
            .bind(f.id)
            .bind(&f.credential)
            .bind(f.sign_count)
            .bind(f.backup_eligible)
            .bind(f.backup_state)
            .bind(now)
            .bind(seen_count)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    async fn insert_passkey(
        &self,
        f: &MfaFactor,
        max_factors: i64,
    ) -> StoreResult<Option<PasskeyRefused>> {
        let n = with_user_held!(
            self,
            f.user_id,
            sqlx::query(INSERT_PASSKEY)
                .bind(f.id)
                .bind(f.user_id)
                .bind(&f.name)
                .bind(&f.secret_enc)
                .bind(f.created_at)
                .bind(&f.credential_id)
                .bind(&f.credential)
                .bind(f.sign_count)
                .bind(f.backup_eligible)
                .bind(f.backup_state)
                .bind(max_factors)
        );
        if n == 1 {
            return Ok(None);
        }
        let taken = match &f.credential_id {
            Some(id) => self.passkey_registered(id).await?,
            None => false,
        };
        Ok(Some(match taken {
            true => PasskeyRefused::Registered,
            false => PasskeyRefused::TooMany,
        }))
    }

    async fn factor_kinds(&self, user_id: Uuid) -> StoreResult<Vec<String>> {
        let rows: Vec<(String,)> = on_backend!(self, |b| sqlx::query_as(FACTOR_KINDS)
            .bind(user_id)
            .fetch_all(b.pool())
            .await)?;
        Ok(rows.into_iter().map(|(k,)| k).collect())
    }
}

impl SqlStore {
    /// Whether any factor, confirmed or not, has this credential id.
    async fn passkey_registered(&self, credential_id: &str) -> StoreResult<bool> {
        let (n,): (i64,) = on_backend!(self, |b| sqlx::query_as(
            "SELECT COUNT(*) FROM mfa_factors WHERE credential_id = $1"
        )
        .bind(credential_id)
        .fetch_one(b.pool())
        .await)?;
        Ok(n > 0)
    }
}
