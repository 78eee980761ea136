//! Users: accounts, their lookup and listing, and import. The writes that change what a
//! user's tokens may do are in `user_changes_sql.rs`.

use async_trait::async_trait;
use sqlx::types::Json;
use uuid::Uuid;

use super::accounts_sql::insert_token;
use super::backend::{on_backend, Backend, SqlStore};
use super::outbox_sql::insert_mail;
use super::{
    AccountToken, Duplicate, Imported, NewUser, OnConflict, OutboxMail, StoreError, StoreResult,
    User, UserQuery, UserStore,
};

const INSERT: &str = "
    INSERT INTO users (id, username, password_hash, roles, claims, disabled,
                       tokens_not_before, created_at, updated_at, username_skeleton,
                       email, email_key, email_verified)
    VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7, $8, $9, $10, $11)";

/// `INSERT` that leaves an existing username, or one it looks like (the same skeleton), alone
/// (affects no row then).
const IMPORT: &str = "
    INSERT INTO users (id, username, password_hash, roles, claims, disabled,
                       tokens_not_before, created_at, updated_at, username_skeleton,
                       email, email_key, email_verified)
    VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7, $8, $9, $10, $11)
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
           created_at, updated_at, email, email_verified
    FROM users WHERE username = $1";

/// The account a login names: the user whose compared address is `$2`, else the one with
/// username `$1` (an address is its owner's, whatever name another account has).
const FOR_LOGIN: &str = "
    SELECT id, username, password_hash, roles, claims, disabled, tokens_not_before,
           created_at, updated_at, email, email_verified
    FROM users WHERE email_key = $2 OR username = $1
    ORDER BY CASE WHEN email_key = $2 THEN 0 ELSE 1 END LIMIT 1";

/// Renames an enabled user, while its address is `$5` when that is given; a unique violation
/// means another account holds the name or its skeleton.
const RENAME: &str = "
    UPDATE users SET username = $2, username_skeleton = $3, updated_at = $4
    WHERE id = $1 AND NOT disabled AND ($5 IS NULL OR email_key = $5)";

/// Renames a user still named `$2` (an address-shaped name following its address).
pub(crate) const RENAME_FROM: &str = "
    UPDATE users SET username = $3, username_skeleton = $4, updated_at = $5
    WHERE id = $1 AND username = $2";

/// Which of a name and its skeleton an account holds: 1 the name, 2 only the skeleton.
const NAME_IN_USE: &str = "
    SELECT MIN(CASE WHEN username = $1 THEN 1 ELSE 2 END) FROM users
    WHERE username = $1 OR username_skeleton = $2";

/// Sets the address; a unique violation means another account holds it.
pub(crate) const SET_EMAIL: &str = "
    UPDATE users SET email = $2, email_key = $3, email_verified = $4, updated_at = $5
    WHERE id = $1";

/// With `SET_EMAIL`: the user's unused emailed tokens bound to another address than the new
/// one (`$2`, its compared form) die, so that a change back to the old address does not bring
/// them back. Binds: user id, the new address's key (null: no address).
pub(crate) const DROP_TOKENS_OF_OTHER_ADDRESSES: &str = "
    DELETE FROM account_tokens
    WHERE user_id = $1 AND used_at IS NULL AND email_key IS NOT NULL
      AND ($2 IS NULL OR email_key <> $2)";

const BY_ID: &str = "
    SELECT id, username, password_hash, roles, claims, disabled, tokens_not_before,
           created_at, updated_at, email, email_verified
    FROM users WHERE id = $1";

const LIST: &str = "
    SELECT id, username, password_hash, roles, claims, disabled, tokens_not_before,
           created_at, updated_at, email, email_verified
    FROM users ORDER BY username";

/// `$2`, `$3`: LIKE patterns with `\` as the escape character.
const PAGE: &str = "
    SELECT id, username, password_hash, roles, claims, disabled, tokens_not_before,
           created_at, updated_at, email, email_verified
    FROM users
    WHERE ($1 IS NULL OR username > $1)
      AND ($2 IS NULL OR username LIKE $2 ESCAPE '\\')
      AND ($3 IS NULL OR CAST(roles AS TEXT) LIKE $3 ESCAPE '\\')
      AND ($4 IS NULL OR disabled = $4)
    ORDER BY username
    LIMIT $5";

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

/// `INSERT` (or `IMPORT`) with the new user `$u` bound, on either backend's pool or
/// transaction (the one place the columns' binding order lives).
macro_rules! insert_user {
    ($u:expr) => {
        insert_user!(INSERT, $u)
    };
    ($sql:expr, $u:expr) => {
        sqlx::query($sql)
            .bind($u.id)
            .bind(&$u.username)
            .bind(&$u.password_hash)
            .bind(Json(&$u.roles))
            .bind(Json(&$u.claims))
            .bind($u.disabled)
            .bind($u.now)
            .bind(&$u.skeleton)
            .bind(&$u.email)
            .bind(&$u.email_key)
            .bind($u.email_verified)
    };
}

impl SqlStore {
    /// The row an insert of `u` created, or the name or address it found taken.
    async fn created(&self, inserted: Result<u64, sqlx::Error>, u: &NewUser) -> StoreResult<User> {
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
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, u: NewUser) -> StoreResult<User> {
        let inserted = on_backend!(self, |b| insert_user!(&u)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()));
        self.created(inserted, &u).await
    }

    async fn create_user_with_token(
        &self,
        u: NewUser,
        token: &AccountToken,
        mail: &OutboxMail,
    ) -> StoreResult<User> {
        // The body is a block of its own, so that its `?`s end the transaction, not this
        // function: `created` reads a duplicate the way `create_user` does.
        let inserted = on_backend!(self, |b| async {
            let mut tx = b.pool().begin().await?;
            let n = insert_user!(&u).execute(&mut *tx).await?.rows_affected();
            insert_token!(token).execute(&mut *tx).await?;
            insert_mail!(mail).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        }
        .await);
        self.created(inserted, &u).await
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
                let r = insert_user!(IMPORT, u).execute(&mut *tx).await?;
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

    async fn user_for_login(
        &self,
        username: Option<&str>,
        email_key: &str,
    ) -> StoreResult<Option<User>> {
        let row: Option<User> = on_backend!(self, |b| sqlx::query_as(FOR_LOGIN)
            .bind(username)
            .bind(email_key)
            .fetch_optional(b.pool())
            .await)?;
        Ok(row)
    }

    async fn set_email(
        &self,
        id: Uuid,
        email: Option<(&str, &str)>,
        verified: bool,
        rename: Option<(&str, &str, &str)>,
        now: i64,
    ) -> StoreResult<Option<bool>> {
        let (n, renamed) = on_backend!(self, |b| {
            let mut tx = b.pool().begin().await?;
            let n = sqlx::query(SET_EMAIL)
                .bind(id)
                .bind(email.map(|e| e.0))
                .bind(email.map(|e| e.1))
                .bind(verified && email.is_some())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(DROP_TOKENS_OF_OTHER_ADDRESSES)
                .bind(id)
                .bind(email.map(|e| e.1))
                .execute(&mut *tx)
                .await?;
            let mut renamed = 0;
            if let Some((from, to, skeleton)) = rename.filter(|_| n == 1) {
                renamed = sqlx::query(RENAME_FROM)
                    .bind(id)
                    .bind(from)
                    .bind(to)
                    .bind(skeleton)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await.map(|()| (n, renamed))
        })?;
        Ok((n == 1).then_some(renamed == 1))
    }

    async fn rename_user(
        &self,
        id: Uuid,
        username: &str,
        skeleton: &str,
        email_key: Option<&str>,
        now: i64,
    ) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(RENAME)
            .bind(id)
            .bind(username)
            .bind(skeleton)
            .bind(now)
            .bind(email_key)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    async fn name_in_use(&self, username: &str, skeleton: &str) -> StoreResult<Option<Duplicate>> {
        let (held,): (Option<i32>,) = on_backend!(self, |b| sqlx::query_as(NAME_IN_USE)
            .bind(username)
            .bind(skeleton)
            .fetch_one(b.pool())
            .await)?;
        Ok(held.map(|h| {
            if h == 1 {
                Duplicate::Username
            } else {
                Duplicate::UsernameSkeleton
            }
        }))
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

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows: Vec<User> =
            on_backend!(self, |b| sqlx::query_as(LIST).fetch_all(b.pool()).await)?;
        Ok(rows)
    }
}
