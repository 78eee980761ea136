//! The SQL of a login's second step (`mfa.rs`, `ChallengeStore`): the challenges of logins
//! waiting for a second factor, and the WebAuthn ceremonies.

use async_trait::async_trait;
use uuid::Uuid;

use super::backend::{on_backend, Backend, SqlStore};
use super::{Ceremony, CeremonyPurpose, ChallengeStore, Charged, MfaChallenge, StoreResult};

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

/// Stored only for a user with a confirmed factor; the row comes back with the kinds of
/// factor they have, so that the `mfa_methods` of the answer need no second read.
const INSERT_CHALLENGE: &str = "
    INSERT INTO mfa_challenges (token_hash, user_id, client_id, scope, resource, fence,
                                created_at, expires_at)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8
    WHERE EXISTS (SELECT 1 FROM mfa_factors WHERE user_id = $2 AND confirmed_at IS NOT NULL)
    RETURNING
        EXISTS (SELECT 1 FROM mfa_factors
                WHERE user_id = $2 AND confirmed_at IS NOT NULL AND kind = 'passkey'),
        EXISTS (SELECT 1 FROM mfa_factors
                WHERE user_id = $2 AND confirmed_at IS NOT NULL AND kind = 'totp')";

const DROP_CHALLENGES_OF_USER: &str = "DELETE FROM mfa_challenges WHERE user_id = $1";

/// Also the user's fence: a password change, disable or cut-off since the password check
/// makes the challenge unusable before any factor is looked at (nothing spent, one answer).
const CHALLENGE: &str = "
    SELECT c.token_hash, c.user_id, c.client_id, c.scope, c.resource, c.fence, c.failures,
           c.created_at, c.expires_at, c.used_at
    FROM mfa_challenges c JOIN users u ON u.id = c.user_id
    WHERE c.token_hash = $1 AND c.used_at IS NULL AND c.expires_at > $2 AND c.failures < $3
      AND NOT u.disabled AND u.tokens_not_before = c.fence";

/// A challenge's `passkey_expires_at`: NULL before any options call; after one, the options'
/// expiry (ms, > 0) while they may be asserted; -1 once a guess took them, 0 once a passkey
/// guess found none live (neither can be asserted again).
///
/// One guess, counted before it is checked (invariant 7: an mfa_token checks at most
/// `$3` factors, however many requests come at once). A passkey's guess (`$4`) also takes
/// the passkey state in the same write, spent as it is read so that an options call's
/// challenge is asserted once: its expiry becomes -1 when it was live (RETURNING sees the row
/// as updated, and -1 says this statement took it) and 0 otherwise; the state itself stays.
const CHARGE_CHALLENGE: &str = "
    UPDATE mfa_challenges SET failures = failures + 1,
        passkey_expires_at = CASE
            WHEN NOT $4 THEN passkey_expires_at
            WHEN passkey_state IS NOT NULL AND passkey_expires_at > $2 THEN -1
            ELSE 0 END
    WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 AND failures < $3
    RETURNING CASE WHEN $4 AND passkey_expires_at = -1 THEN passkey_state END";

const PUT_CHALLENGE_PASSKEY: &str = "
    UPDATE mfa_challenges SET passkey_state = $2, passkey_expires_at = $3
    WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $4";

/// Invariant 7: an mfa_token is used once, by a guess that was counted (`CHARGE_CHALLENGE`)
/// within its allowance.
pub(crate) const TAKE_CHALLENGE: &str = "
    UPDATE mfa_challenges SET used_at = $2
    WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 AND failures <= $3";

#[async_trait]
impl ChallengeStore for SqlStore {
    async fn insert_challenge(&self, c: &MfaChallenge) -> StoreResult<Option<Vec<String>>> {
        let row: Option<(bool, bool)> = on_backend!(self, |b| sqlx::query_as(INSERT_CHALLENGE)
            .bind(&c.token_hash)
            .bind(c.user_id)
            .bind(&c.client_id)
            .bind(&c.scope)
            .bind(&c.resource)
            .bind(c.fence)
            .bind(c.created_at)
            .bind(c.expires_at)
            .fetch_all(b.pool())
            .await
            .map(crate::backend::returned))?;
        Ok(row.map(|(passkey, totp)| {
            [("passkey", passkey), ("totp", totp)]
                .into_iter()
                .filter(|(_, held)| *held)
                .map(|(kind, _)| kind.to_string())
                .collect()
        }))
    }
    async fn drop_challenges_of_user(&self, user_id: Uuid) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(DROP_CHALLENGES_OF_USER)
            .bind(user_id)
            .execute(b.pool())
            .await
            .map(|_| ()))?;
        Ok(())
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
        take_passkey: bool,
    ) -> StoreResult<Option<Charged>> {
        let row: Option<Option<String>> =
            on_backend!(self, |b| sqlx::query_scalar(CHARGE_CHALLENGE)
                .bind(token_hash)
                .bind(now)
                .bind(max_failures)
                .bind(take_passkey)
                .fetch_all(b.pool())
                .await
                .map(crate::backend::returned))?;
        Ok(row.map(|passkey_state| Charged { passkey_state }))
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
}
