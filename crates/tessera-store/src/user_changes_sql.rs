//! Writes to a user row that change what the user's tokens may do: claims, roles, the
//! disabled flag, the cut-off (`tokens_not_before`), the password. Every cut-off moves
//! strictly forward, so a login racing the write is fenced out (its `create_session` sees a
//! changed cut-off).

use async_trait::async_trait;
use sqlx::types::Json;
use uuid::Uuid;

use super::backend::{on_backend, Backend, SqlStore};
use super::outbox_sql::insert_mail;
use super::{OutboxMail, StoreResult, UserChanges};

const SET_CLAIMS: &str = "UPDATE users SET claims = $2, updated_at = $3 WHERE id = $1";

// What a role or claim change replaces is read in the change's own transaction, with the row
// locked (`FOR UPDATE` on Postgres; `BEGIN IMMEDIATE` takes SQLite's write lock before the
// read): whether something was taken away, which decides a cut-off, is then decided on what
// the write really replaced, not on an earlier read a concurrent change could have made stale.
const ROLES_CLAIMS_FOR_UPDATE_PG: &str =
    "SELECT id, roles, claims FROM users WHERE username = $1 FOR UPDATE";

const ROLES_CLAIMS_FOR_UPDATE: &str = "SELECT id, roles, claims FROM users WHERE username = $1";

/// Disabling also cuts off every access token issued so far (and publishes the cut-off in the
/// revocation feed); re-enabling does not bring them back. Only a change is written: a user
/// already in that state is left as it is (no row), and of two changes at once the second
/// finds the first's (Postgres re-reads the row it waited for), so exactly one reports it.
const SET_DISABLED: &str = "
    UPDATE users SET disabled = $2, updated_at = $3,
        tokens_not_before = CASE WHEN NOT $2 THEN tokens_not_before
                                 WHEN $4 > tokens_not_before THEN $4
                                 ELSE tokens_not_before + 1 END
    WHERE username = $1 AND disabled <> $2 RETURNING id";

const SET_ROLES: &str = "UPDATE users SET roles = $2, updated_at = $3 WHERE id = $1";

const CUT_OFF: &str = "
    UPDATE users SET updated_at = $2,
        tokens_not_before = CASE WHEN $2 > tokens_not_before THEN $2
                                 ELSE tokens_not_before + 1 END
    WHERE id = $1 RETURNING id";

const CUT_OFF_TOKENS: &str = "
    UPDATE users SET updated_at = $3,
        tokens_not_before = CASE WHEN $2 > tokens_not_before THEN $2
                                 ELSE tokens_not_before + 1 END
    WHERE id = $1";

/// Erases a user's personal data, keeping the row as a disabled tombstone that carries the
/// cut-off (verifiers learn of it through the feed): a new, meaningless name, no address, an
/// unusable hash, no roles or claims.
const ERASE_USER: &str = "
    UPDATE users SET username = $2, username_skeleton = NULL, email = NULL, email_key = NULL,
        email_verified = FALSE, password_hash = '!', roles = '[]', claims = '{}',
        disabled = TRUE, updated_at = $3,
        tokens_not_before = CASE WHEN $3 > tokens_not_before THEN $3
                                 ELSE tokens_not_before + 1 END
    WHERE id = $1 RETURNING id";

/// What else of an erased user holds personal data (addresses, user agents, factors).
const ERASE_USER_ROWS: [&str; 8] = [
    "DELETE FROM sessions WHERE user_id = $1",
    "DELETE FROM sso_sessions WHERE user_id = $1",
    "DELETE FROM mfa_factors WHERE user_id = $1",
    "DELETE FROM recovery_codes WHERE user_id = $1",
    "DELETE FROM mfa_challenges WHERE user_id = $1",
    "DELETE FROM account_tokens WHERE user_id = $1",
    "DELETE FROM consents WHERE user_id = $1",
    "DELETE FROM webauthn_ceremonies WHERE user_id = $1",
];

/// `SET_PASSWORD`, only while the hash is still `$5` (the one the current password was
/// checked against): of parallel changes made with one current password, one wins.
const SET_PASSWORD_IF: &str = "
    UPDATE users SET password_hash = $2, updated_at = $4,
        tokens_not_before = CASE WHEN $3 > tokens_not_before THEN $3
                                 ELSE tokens_not_before + 1 END
    WHERE username = $1 AND password_hash = $5 RETURNING id";

const SET_PASSWORD: &str = "
    UPDATE users SET password_hash = $2, updated_at = $4,
        tokens_not_before = CASE WHEN $3 > tokens_not_before THEN $3
                                 ELSE tokens_not_before + 1 END
    WHERE username = $1 RETURNING id";

/// Compare-and-set against the hash that was verified (`$2`), never a later read of the row:
/// a password change committed while the login was hashing has replaced it, and wins over the
/// upgrade.
const REHASH: &str = "
    UPDATE users SET password_hash = $3, updated_at = $4
    WHERE id = $1 AND password_hash = $2";

/// `SET_PASSWORD` by id (`$1`), at `$3`.
pub(crate) const SET_PASSWORD_BY_ID: &str = "
    UPDATE users SET password_hash = $2, updated_at = $3,
        tokens_not_before = CASE WHEN $3 > tokens_not_before THEN $3
                                 ELSE tokens_not_before + 1 END
    WHERE id = $1";

pub(crate) const REVOKE_SESSIONS_OF_USER: &str = "
    UPDATE sessions SET revoked_at = $2, revoked_reason = $3
    WHERE user_id = $1 AND revoked_at IS NULL RETURNING id";

#[async_trait]
impl UserChanges for SqlStore {
    async fn set_claims(
        &self,
        username: &str,
        claims: &serde_json::Map<String, serde_json::Value>,
        now: i64,
    ) -> StoreResult<Option<(Uuid, serde_json::Map<String, serde_json::Value>)>> {
        let replaced = self
            .replace_roles_or_claims(username, SET_CLAIMS, Json(claims), now)
            .await?;
        Ok(replaced.map(|(id, _, old_claims)| (id, old_claims)))
    }

    async fn set_disabled(
        &self,
        username: &str,
        disabled: bool,
        now: i64,
    ) -> StoreResult<Option<Uuid>> {
        Ok(on_backend!(self, |b| sqlx::query_scalar(SET_DISABLED)
            .bind(username)
            .bind(disabled)
            .bind(now)
            .bind(now)
            .fetch_all(b.pool())
            .await
            .map(crate::backend::returned))?)
    }

    async fn set_roles(
        &self,
        username: &str,
        roles: &[String],
        now: i64,
    ) -> StoreResult<Option<(Uuid, Vec<String>)>> {
        let replaced = self
            .replace_roles_or_claims(username, SET_ROLES, Json(roles), now)
            .await?;
        Ok(replaced.map(|(id, old_roles, _)| (id, old_roles)))
    }

    async fn cut_off_tokens(&self, user_id: Uuid, now: i64) -> StoreResult<Option<Uuid>> {
        Ok(on_backend!(self, |b| sqlx::query_scalar(CUT_OFF)
            .bind(user_id)
            .bind(now)
            .fetch_all(b.pool())
            .await
            .map(crate::backend::returned))?)
    }

    async fn revoke_user(
        &self,
        user_id: Uuid,
        reason: &str,
        now: i64,
    ) -> StoreResult<Option<Vec<Uuid>>> {
        on_backend!(self, |b| {
            let mut tx = b.pool().begin().await?;
            let r = sqlx::query(CUT_OFF_TOKENS)
                .bind(user_id)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if r.rows_affected() != 1 {
                return Ok(None);
            }
            let sessions: Vec<Uuid> = sqlx::query_scalar(REVOKE_SESSIONS_OF_USER)
                .bind(user_id)
                .bind(now)
                .bind(reason)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(sessions))
        })
    }

    async fn erase_user(&self, user_id: Uuid, tombstone: &str, now: i64) -> StoreResult<bool> {
        on_backend!(self, |b| {
            let mut tx = b.pool().begin().await?;
            let r = sqlx::query(ERASE_USER)
                .bind(user_id)
                .bind(tombstone)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if r.rows_affected() != 1 {
                return Ok(false);
            }
            for sql in ERASE_USER_ROWS {
                sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    async fn set_password(
        &self,
        username: &str,
        hash: &str,
        now: i64,
    ) -> StoreResult<Option<(Uuid, Vec<Uuid>)>> {
        self.set_password_where(username, hash, now, None, None)
            .await
    }

    async fn set_password_if(
        &self,
        username: &str,
        old_hash: &str,
        hash: &str,
        now: i64,
        notice: Option<&OutboxMail>,
    ) -> StoreResult<Option<(Uuid, Vec<Uuid>)>> {
        self.set_password_where(username, hash, now, Some(old_hash), notice)
            .await
    }
    async fn rehash_password(
        &self,
        id: Uuid,
        old_hash: &str,
        new_hash: &str,
        now: i64,
    ) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(REHASH)
            .bind(id)
            .bind(old_hash)
            .bind(new_hash)
            .bind(now)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }
}

/// A user's id, roles and claims as one row.
type RolesClaims = (
    Uuid,
    Json<Vec<String>>,
    Json<serde_json::Map<String, serde_json::Value>>,
);

impl SqlStore {
    /// Runs `update` (binds: id, `value`, `now`) on the user named `username` in one
    /// transaction with the locked read of what it replaces; returns the id and the roles and
    /// claims the row held before, `None` when there is no such user.
    async fn replace_roles_or_claims<T>(
        &self,
        username: &str,
        update: &'static str,
        value: Json<T>,
        now: i64,
    ) -> StoreResult<
        Option<(
            Uuid,
            Vec<String>,
            serde_json::Map<String, serde_json::Value>,
        )>,
    >
    where
        T: serde::Serialize + Send + Sync,
    {
        let (begin, read) = self.locking_tx(ROLES_CLAIMS_FOR_UPDATE_PG, ROLES_CLAIMS_FOR_UPDATE);
        Ok(on_backend!(self, |b| {
            let mut tx = b.pool().begin_with(begin).await?;
            let old: Option<RolesClaims> = sqlx::query_as(read)
                .bind(username)
                .fetch_optional(&mut *tx)
                .await?;
            match old {
                Some((id, roles, claims)) => {
                    sqlx::query(update)
                        .bind(id)
                        .bind(&value)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(Some((id, roles.0, claims.0)))
                }
                None => Ok(None),
            }
        })?)
    }
}

impl SqlStore {
    /// A new hash for the user (compare-and-set against `old` when given), every session
    /// revoked, the cut-off moved and `notice` queued, in one transaction.
    async fn set_password_where(
        &self,
        username: &str,
        hash: &str,
        now: i64,
        old: Option<&str>,
        notice: Option<&OutboxMail>,
    ) -> StoreResult<Option<(Uuid, Vec<Uuid>)>> {
        on_backend!(self, |b| {
            let mut tx = b.pool().begin().await?;
            let query = match old {
                Some(_) => SET_PASSWORD_IF,
                None => SET_PASSWORD,
            };
            let mut q = sqlx::query_scalar(query)
                .bind(username)
                .bind(hash)
                .bind(now)
                .bind(now);
            if let Some(old) = old {
                q = q.bind(old);
            }
            let id: Option<Uuid> = q.fetch_all(&mut *tx).await.map(crate::backend::returned)?;
            let Some(id) = id else {
                return Ok(None);
            };
            let sessions: Vec<Uuid> = sqlx::query_scalar(REVOKE_SESSIONS_OF_USER)
                .bind(id)
                .bind(now)
                .bind("password_changed")
                .fetch_all(&mut *tx)
                .await?;
            if let Some(m) = notice {
                insert_mail!(m).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(Some((id, sessions)))
        })
    }
}
