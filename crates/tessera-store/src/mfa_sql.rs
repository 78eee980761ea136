//! The SQL of second factors (`mfa.rs`).

use async_trait::async_trait;
use uuid::Uuid;

use super::backend::{on_backend, Backend, SqlStore};
use super::{
    Ceremony, CeremonyPurpose, MfaChallenge, MfaFactor, MfaStore, PasskeyRefused, StoreResult,
};

/// Only while the user holds fewer than `$10` factors (a soft bound: parallel enrolments
/// may pass it by their number).
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

const PUT_CEREMONY: &str = "
    INSERT INTO webauthn_ceremonies (id_hash, purpose, user_id, name, state, created_at,
                                     expires_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (id_hash) DO UPDATE
    SET purpose = excluded.purpose, user_id = excluded.user_id, name = excluded.name,
        state = excluded.state, created_at = excluded.created_at,
        expires_at = excluded.expires_at";

/// Invariant 7: deleted as it is read, so a ceremony finishes once.
const TAKE_CEREMONY: &str = "
    DELETE FROM webauthn_ceremonies
    WHERE id_hash = $1 AND purpose = $2 AND expires_at > $3
      AND ($4 OR user_id = $5)
    RETURNING *";

/// Invariant 7: the primary key lets one spend through.
const SPEND_CEREMONY: &str = "
    INSERT INTO webauthn_ceremonies (id_hash, purpose, state, created_at, expires_at)
    VALUES ($1, 'spent', '', $2, $3)
    ON CONFLICT (id_hash) DO NOTHING";

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

const SEALED_FACTORS: &str =
    "SELECT id, secret_enc FROM mfa_factors WHERE kind = 'totp' ORDER BY id";

const RESEAL_FACTOR: &str =
    "UPDATE mfa_factors SET secret_enc = $3 WHERE id = $1 AND secret_enc = $2";

const INSERT_RECOVERY_CODE: &str =
    "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)";

const USE_RECOVERY_CODE: &str = "
    UPDATE recovery_codes SET used_at = $3
    WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL";

const RECOVERY_CODES_LEFT: &str =
    "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL";

const INSERT_CHALLENGE: &str = "
    INSERT INTO mfa_challenges (token_hash, user_id, client_id, scope, resource, fence,
                                created_at, expires_at)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8
    WHERE EXISTS (SELECT 1 FROM mfa_factors WHERE user_id = $2 AND confirmed_at IS NOT NULL)";

/// Also the user's fence: a password change, disable or cut-off since the password check
/// makes the challenge unusable before any factor is looked at (nothing spent, one answer).
const CHALLENGE: &str = "
    SELECT c.token_hash, c.user_id, c.client_id, c.scope, c.resource, c.fence, c.failures,
           c.created_at, c.expires_at, c.used_at
    FROM mfa_challenges c JOIN users u ON u.id = c.user_id
    WHERE c.token_hash = $1 AND c.used_at IS NULL AND c.expires_at > $2 AND c.failures < $3
      AND NOT u.disabled AND u.tokens_not_before = c.fence";

/// One guess, counted before it is checked (invariant 7: an mfa_token checks at most
/// `$3` factors, however many requests come at once).
const CHARGE_CHALLENGE: &str = "
    UPDATE mfa_challenges SET failures = failures + 1
    WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 AND failures < $3";

const PUT_CHALLENGE_PASSKEY: &str = "
    UPDATE mfa_challenges SET passkey_state = $2, passkey_expires_at = $3
    WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $4";

/// Invariant 7: spent as it is read (its expiry set to 0; RETURNING gives the row as updated,
/// so the state itself stays), so an options call's challenge is asserted once.
const TAKE_CHALLENGE_PASSKEY: &str = "
    UPDATE mfa_challenges SET passkey_expires_at = 0
    WHERE token_hash = $1 AND used_at IS NULL AND passkey_state IS NOT NULL
      AND passkey_expires_at > $2
    RETURNING passkey_state";

/// Invariant 7: an mfa_token is used once, by a guess that was counted (`CHARGE_CHALLENGE`)
/// within its allowance.
const TAKE_CHALLENGE: &str = "
    UPDATE mfa_challenges SET used_at = $2
    WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 AND failures <= $3";

#[async_trait]
impl MfaStore for SqlStore {
    async fn insert_factor(&self, f: &MfaFactor, max_factors: i64) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(INSERT_FACTOR)
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
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
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
    ) -> StoreResult<()> {
        on_backend!(self, |b| {
            let mut tx = b.pool().begin().await?;
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
            Ok(())
        })
    }

    async fn use_recovery_code(&self, user_id: Uuid, hash: &str, now: i64) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(USE_RECOVERY_CODE)
            .bind(user_id)
            .bind(hash)
            .bind(now)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    async fn recovery_codes_left(&self, user_id: Uuid) -> StoreResult<i64> {
        let (n,): (i64,) = on_backend!(self, |b| sqlx::query_as(RECOVERY_CODES_LEFT)
            .bind(user_id)
            .fetch_one(b.pool())
            .await)?;
        Ok(n)
    }

    async fn insert_challenge(&self, c: &MfaChallenge) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(INSERT_CHALLENGE)
            .bind(&c.token_hash)
            .bind(c.user_id)
            .bind(&c.client_id)
            .bind(&c.scope)
            .bind(&c.resource)
            .bind(c.fence)
            .bind(c.created_at)
            .bind(c.expires_at)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    async fn challenge(
        &self,
        token_hash: &str,
        now: i64,
        max_failures: i64,
    ) -> StoreResult<Option<MfaChallenge>> {
        let row: Option<MfaChallenge> = on_backend!(self, |b| sqlx::query_as(CHALLENGE)
            .bind(token_hash)
            .bind(now)
            .bind(max_failures)
            .fetch_optional(b.pool())
            .await)?;
        Ok(row)
    }

    async fn charge_challenge(
        &self,
        token_hash: &str,
        now: i64,
        max_failures: i64,
    ) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(CHARGE_CHALLENGE)
            .bind(token_hash)
            .bind(now)
            .bind(max_failures)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    async fn take_challenge(
        &self,
        token_hash: &str,
        now: i64,
        max_failures: i64,
    ) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(TAKE_CHALLENGE)
            .bind(token_hash)
            .bind(now)
            .bind(max_failures)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    async fn put_challenge_passkey(
        &self,
        token_hash: &str,
        state: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(PUT_CHALLENGE_PASSKEY)
            .bind(token_hash)
            .bind(state)
            .bind(expires_at)
            .bind(now)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    async fn take_challenge_passkey(
        &self,
        token_hash: &str,
        now: i64,
    ) -> StoreResult<Option<String>> {
        let state: Option<String> =
            on_backend!(self, |b| sqlx::query_scalar(TAKE_CHALLENGE_PASSKEY)
                .bind(token_hash)
                .bind(now)
                .fetch_all(b.pool())
                .await
                .map(crate::backend::returned))?;
        Ok(state)
    }

    async fn put_ceremony(&self, c: &Ceremony) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(PUT_CEREMONY)
            .bind(&c.id_hash)
            .bind(&c.purpose)
            .bind(c.user_id)
            .bind(&c.name)
            .bind(&c.state)
            .bind(c.created_at)
            .bind(c.expires_at)
            .execute(b.pool())
            .await
            .map(|_| ()))?;
        Ok(())
    }

    async fn take_ceremony(
        &self,
        id_hash: &str,
        purpose: CeremonyPurpose,
        user_id: Option<Uuid>,
        now: i64,
    ) -> StoreResult<Option<Ceremony>> {
        let row: Option<Ceremony> = on_backend!(self, |b| sqlx::query_as(TAKE_CEREMONY)
            .bind(id_hash)
            .bind(purpose.as_str())
            .bind(now)
            .bind(user_id.is_none())
            .bind(user_id.unwrap_or_default())
            .fetch_all(b.pool())
            .await
            .map(crate::backend::returned))?;
        Ok(row)
    }

    async fn spend_ceremony(&self, id_hash: &str, now: i64, expires_at: i64) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(SPEND_CEREMONY)
            .bind(id_hash)
            .bind(now)
            .bind(expires_at)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
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
        let n = on_backend!(self, |b| sqlx::query(INSERT_PASSKEY)
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
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
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
