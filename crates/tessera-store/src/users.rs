//! Users: accounts, their roles and claims, and the writes that cut off their tokens.

use async_trait::async_trait;
use sqlx::types::Json;
use uuid::Uuid;

use super::backend::{on_backend, Backend, SqlStore};
use super::{
    Duplicate, Imported, NewUser, OnConflict, StoreError, StoreResult, User, UserQuery, UserStore,
};

const INSERT: &str = "
    INSERT INTO users (id, username, password_hash, roles, claims, disabled,
                       tokens_not_before, created_at, updated_at, username_skeleton)
    VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7, $8)";

/// `INSERT` that leaves an existing username, or one it looks like (the same skeleton), alone
/// (affects no row then).
const IMPORT: &str = "
    INSERT INTO users (id, username, password_hash, roles, claims, disabled,
                       tokens_not_before, created_at, updated_at, username_skeleton)
    VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7, $8)
    ON CONFLICT DO NOTHING";

/// Accounts named before skeletons were stored, in id order from a cursor.
const MISSING_SKELETON: &str = "
    SELECT id, username FROM users
    WHERE username_skeleton IS NULL AND id > $1 ORDER BY id LIMIT $2";

/// Fills in one skeleton; a unique violation means another account holds it already.
const SET_SKELETON: &str = "
    UPDATE users SET username_skeleton = $2 WHERE id = $1 AND username_skeleton IS NULL";

const BY_USERNAME: &str = "
    SELECT id, username, password_hash, roles, claims, disabled, tokens_not_before,
           created_at, updated_at
    FROM users WHERE username = $1";

const BY_ID: &str = "
    SELECT id, username, password_hash, roles, claims, disabled, tokens_not_before,
           created_at, updated_at
    FROM users WHERE id = $1";

const LIST: &str = "
    SELECT id, username, password_hash, roles, claims, disabled, tokens_not_before,
           created_at, updated_at
    FROM users ORDER BY username";

/// `$2`, `$3`: LIKE patterns with `\` as the escape character.
const PAGE: &str = "
    SELECT id, username, password_hash, roles, claims, disabled, tokens_not_before,
           created_at, updated_at
    FROM users
    WHERE ($1 IS NULL OR username > $1)
      AND ($2 IS NULL OR username LIKE $2 ESCAPE '\\')
      AND ($3 IS NULL OR CAST(roles AS TEXT) LIKE $3 ESCAPE '\\')
      AND ($4 IS NULL OR disabled = $4)
    ORDER BY username
    LIMIT $5";

const SET_CLAIMS: &str = "UPDATE users SET claims = $2, updated_at = $3 WHERE id = $1";

// What a role or claim change replaces is read in the change's own transaction, with the row
// locked (`FOR UPDATE` on Postgres; `BEGIN IMMEDIATE` takes SQLite's write lock before the
// read): whether something was taken away, which decides a cut-off, is then decided on what
// the write really replaced, not on an earlier read a concurrent change could have made stale.
const ROLES_CLAIMS_FOR_UPDATE_PG: &str =
    "SELECT id, roles, claims FROM users WHERE username = $1 FOR UPDATE";
const ROLES_CLAIMS_FOR_UPDATE: &str = "SELECT id, roles, claims FROM users WHERE username = $1";

/// `text` with LIKE's wildcards escaped (escape character `\`).
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

// Every write of a cut-off (`tokens_not_before`) moves it strictly forward, even within one
// millisecond of the last: a login creates its session only while the cut-off is still the one
// it read with the credential it verified (`sessions::FENCE`), so each password change,
// disable, role removal or logout-everywhere must change the value.

/// Disabling also cuts off every access token issued so far (and publishes the cut-off in the
/// revocation feed); re-enabling does not bring them back.
const SET_DISABLED: &str = "
    UPDATE users SET disabled = $2, updated_at = $3,
        tokens_not_before = CASE WHEN NOT $2 THEN tokens_not_before
                                 WHEN $4 > tokens_not_before THEN $4
                                 ELSE tokens_not_before + 1 END
    WHERE username = $1 RETURNING id";

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

const REVOKE_SESSIONS_OF_USER: &str = "
    UPDATE sessions SET revoked_at = $2, revoked_reason = $3
    WHERE user_id = $1 AND revoked_at IS NULL RETURNING id";

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, u: NewUser) -> StoreResult<User> {
        let inserted = on_backend!(self, |b| sqlx::query(INSERT)
            .bind(u.id)
            .bind(&u.username)
            .bind(&u.password_hash)
            .bind(Json(&u.roles))
            .bind(Json(&u.claims))
            .bind(u.disabled)
            .bind(u.now)
            .bind(&u.skeleton)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()));
        match inserted.map_err(StoreError::from) {
            // SQLite names one violated constraint, the skeleton's before the username's; a
            // name that is taken outright is reported as taken, as Postgres does.
            Err(StoreError::Duplicate(Duplicate::UsernameSkeleton))
                if self.user_by_username(&u.username).await?.is_some() =>
            {
                return Err(StoreError::Duplicate(Duplicate::Username))
            }
            other => other?,
        };
        self.user_by_id(u.id)
            .await?
            .ok_or_else(|| StoreError::Other("user vanished after insert".into()))
    }

    async fn import_users(
        &self,
        users: &[NewUser],
        on_conflict: OnConflict,
    ) -> StoreResult<Imported> {
        on_backend!(self, |b| {
            let mut tx = b.pool().begin().await?;
            let mut done = Imported::default();
            for u in users {
                let r = sqlx::query(IMPORT)
                    .bind(u.id)
                    .bind(&u.username)
                    .bind(&u.password_hash)
                    .bind(Json(&u.roles))
                    .bind(Json(&u.claims))
                    .bind(u.disabled)
                    .bind(u.now)
                    .bind(&u.skeleton)
                    .execute(&mut *tx)
                    .await?;
                if r.rows_affected() == 1 {
                    done.created += 1;
                } else {
                    done.existing.push(u.username.clone());
                }
            }
            if on_conflict == OnConflict::Fail && !done.existing.is_empty() {
                // Dropping the transaction rolls it back.
                done.created = 0;
                return Ok(done);
            }
            tx.commit().await?;
            Ok(done)
        })
    }

    async fn users_missing_skeleton(
        &self,
        after: Uuid,
        limit: u32,
    ) -> StoreResult<Vec<(Uuid, String)>> {
        Ok(on_backend!(self, |b| sqlx::query_as(MISSING_SKELETON)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(b.pool())
            .await)?)
    }

    async fn set_skeleton(&self, id: Uuid, skeleton: &str) -> StoreResult<bool> {
        let done = on_backend!(self, |b| sqlx::query(SET_SKELETON)
            .bind(id)
            .bind(skeleton)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()));
        match done {
            Ok(n) => Ok(n == 1),
            Err(e) => match StoreError::from(e) {
                StoreError::Duplicate(_) => Ok(false),
                other => Err(other),
            },
        }
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        let row: Option<User> = on_backend!(self, |b| sqlx::query_as(BY_USERNAME)
            .bind(username)
            .fetch_optional(b.pool())
            .await)?;
        Ok(row)
    }

    async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<User>> {
        let row: Option<User> = on_backend!(self, |b| sqlx::query_as(BY_ID)
            .bind(id)
            .fetch_optional(b.pool())
            .await)?;
        Ok(row)
    }

    async fn users_page(&self, q: &UserQuery) -> StoreResult<Vec<User>> {
        let prefix = q.prefix.as_deref().map(|p| format!("{}%", like_escape(p)));
        // Role names hold no quote: `"role"` matches the role as a JSON string element.
        let role = q
            .role
            .as_deref()
            .map(|r| format!("%\"{}\"%", like_escape(r)));
        let rows: Vec<User> = on_backend!(self, |b| sqlx::query_as(PAGE)
            .bind(&q.after)
            .bind(&prefix)
            .bind(&role)
            .bind(q.disabled)
            .bind(i64::from(q.limit))
            .fetch_all(b.pool())
            .await)?;
        Ok(rows)
    }

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

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows: Vec<User> =
            on_backend!(self, |b| sqlx::query_as(LIST).fetch_all(b.pool()).await)?;
        Ok(rows)
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
            .fetch_optional(b.pool())
            .await)?)
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
            .fetch_optional(b.pool())
            .await)?)
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

    async fn set_password(
        &self,
        username: &str,
        hash: &str,
        now: i64,
    ) -> StoreResult<Option<(Uuid, Vec<Uuid>)>> {
        on_backend!(self, |b| {
            let mut tx = b.pool().begin().await?;
            let id: Option<Uuid> = sqlx::query_scalar(SET_PASSWORD)
                .bind(username)
                .bind(hash)
                .bind(now)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(id) = id else {
                return Ok(None);
            };
            let sessions: Vec<Uuid> = sqlx::query_scalar(REVOKE_SESSIONS_OF_USER)
                .bind(id)
                .bind(now)
                .bind("password_changed")
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some((id, sessions)))
        })
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
