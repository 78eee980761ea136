//! The SQL of tokens by email and invitations (`accounts.rs`).

use async_trait::async_trait;
use uuid::Uuid;

use super::backend::{on_backend, Backend, SqlStore};
use super::outbox_sql::insert_mail;
use super::user_changes_sql::{REVOKE_SESSIONS_OF_USER, SET_PASSWORD_BY_ID};
use super::users_sql::{DROP_TOKENS_OF_OTHER_ADDRESSES, RENAME_FROM, SET_EMAIL};
use super::{
    AccountStore, AccountToken, Invitation, OutboxMail, Redeemed, Redemption, StoreResult,
};

const DROP_UNUSED: &str =
    "DELETE FROM account_tokens WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL";

pub(crate) const INSERT_TOKEN: &str = "
    INSERT INTO account_tokens (token_hash, user_id, purpose, fence, created_at, expires_at,
                                email_key, email)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// `INSERT_TOKEN` with the token `$t` bound, on either backend's pool or transaction.
macro_rules! insert_token {
    ($t:expr) => {
        sqlx::query($crate::accounts_sql::INSERT_TOKEN)
            .bind(&$t.token_hash)
            .bind($t.user_id)
            .bind(&$t.purpose)
            .bind($t.fence)
            .bind($t.created_at)
            .bind($t.expires_at)
            .bind(&$t.email_key)
            .bind(&$t.email)
    };
}
pub(crate) use insert_token;

/// Issuing a token with a "not since" check takes turns per user: on Postgres under an
/// advisory lock held to the transaction's end (no row lock, so no lock order to keep with the
/// rest); on SQLite `BEGIN IMMEDIATE` already holds the database.
const TAKE_TURN_PG: &str = "SELECT pg_advisory_xact_lock($1)";
const TAKE_TURN: &str = "SELECT $1";

const LAST_TOKEN: &str =
    "SELECT MAX(created_at) FROM account_tokens WHERE user_id = $1 AND purpose = $2";

/// The user's fence is the whole check of "issued before a password change".
const TOKEN: &str = "
    SELECT t.* FROM account_tokens t JOIN users u ON u.id = t.user_id
    WHERE t.token_hash = $1 AND t.purpose = $2 AND t.used_at IS NULL AND t.expires_at > $3
      AND NOT u.disabled AND u.tokens_not_before = t.fence";

/// Invariant 7: the WHERE clause lets one use through.
/// The binding is checked in the same statement: a password change, disable or address change
/// between a token's check and its use leaves it unused.
const USE_TOKEN: &str = "
    UPDATE account_tokens SET used_at = $2
    WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2
      AND EXISTS (
        SELECT 1 FROM users u
        WHERE u.id = account_tokens.user_id AND NOT u.disabled
          AND u.tokens_not_before = account_tokens.fence
          AND (u.email_key = account_tokens.email_key
               OR (u.email_key IS NULL AND account_tokens.email_key IS NULL)))";

const LOCK_USER_PG: &str = "SELECT id FROM users WHERE id = $1 FOR UPDATE";
const LOCK_USER: &str = "SELECT id FROM users WHERE id = $1";

/// `USE_TOKEN`, for a token of user `$3` only.
const USE_TOKEN_OF: &str = "
    UPDATE account_tokens SET used_at = $2
    WHERE token_hash = $1 AND user_id = $3 AND used_at IS NULL AND expires_at > $2
      AND EXISTS (
        SELECT 1 FROM users u
        WHERE u.id = account_tokens.user_id AND NOT u.disabled
          AND u.tokens_not_before = account_tokens.fence
          AND (u.email_key = account_tokens.email_key
               OR (u.email_key IS NULL AND account_tokens.email_key IS NULL)))";

/// Not accepted: unused, and the password untouched since (an invitee who set one by a reset
/// instead has taken the account up). Expired ones too: their account still holds the address
/// and the name until an administrator withdraws it (and may invite again).
const INVITATIONS: &str = "
    SELECT u.id AS user_id, u.username, u.email, t.created_at, t.expires_at
    FROM account_tokens t JOIN users u ON u.id = t.user_id
    WHERE t.purpose = 'invite' AND t.used_at IS NULL
      AND u.tokens_not_before = t.fence
    ORDER BY t.created_at, u.id";

/// Only a user whose invitation is still pending is deleted: never accepted, and no password
/// set since it was sent (a reset moves the cut-off past the invitation's fence).
const REVOKE_INVITATION: &str = "
    DELETE FROM users WHERE id = $1 AND EXISTS (
        SELECT 1 FROM account_tokens t
        WHERE t.user_id = $1 AND t.purpose = 'invite' AND t.used_at IS NULL
          AND t.fence = users.tokens_not_before)
      AND NOT EXISTS (
        SELECT 1 FROM account_tokens t
        WHERE t.user_id = $1 AND t.purpose = 'invite' AND t.used_at IS NOT NULL)";

/// One statement on both backends: a window that has ended starts again at 1.
const COUNT_REQUEST: &str = "
    INSERT INTO request_limits (key, count, expires_at) VALUES ($1, 1, $3)
    ON CONFLICT (key) DO UPDATE SET
        count = CASE WHEN request_limits.expires_at <= $2 THEN 1
                     ELSE request_limits.count + 1 END,
        expires_at = CASE WHEN request_limits.expires_at <= $2 THEN $3
                          ELSE request_limits.expires_at END
    RETURNING count, expires_at";

/// A redemption's three writes: a password hash, an address (as given, compared form), and a
/// rename (old name, new name, new skeleton); each `None` when it makes no such write.
type RedemptionWrites<'a> = (
    Option<&'a str>,
    Option<(&'a str, &'a str)>,
    Option<(&'a str, &'a str, &'a str)>,
);

impl<'a> Redemption<'a> {
    /// The writes this redemption makes.
    fn writes(self) -> RedemptionWrites<'a> {
        match self {
            Redemption::Password { hash } => (Some(hash), None, None),
            Redemption::Email { address, rename } => (None, Some(address), rename),
            Redemption::Invitation { hash, address } => (Some(hash), Some(address), None),
        }
    }
}

#[async_trait]
impl AccountStore for SqlStore {
    async fn issue_account_token(
        &self,
        t: &AccountToken,
        m: &OutboxMail,
        not_since: Option<i64>,
    ) -> StoreResult<bool> {
        let (begin, turn) = self.locking_tx(TAKE_TURN_PG, TAKE_TURN);
        // The advisory lock's key: the random half of the user's id.
        let mut half = [0u8; 8];
        half.copy_from_slice(&t.user_id.as_bytes()[8..]);
        let key = i64::from_be_bytes(half);
        let issued = on_backend!(self, |b| {
            let mut tx = b.pool().begin_with(begin).await?;
            if let Some(since) = not_since {
                sqlx::query(turn).bind(key).execute(&mut *tx).await?;
                let (last,): (Option<i64>,) = sqlx::query_as(LAST_TOKEN)
                    .bind(t.user_id)
                    .bind(&t.purpose)
                    .fetch_one(&mut *tx)
                    .await?;
                if last.is_some_and(|last| last > since) {
                    tx.rollback().await?;
                    return Ok(false);
                }
            }
            sqlx::query(DROP_UNUSED)
                .bind(t.user_id)
                .bind(&t.purpose)
                .execute(&mut *tx)
                .await?;
            insert_token!(t).execute(&mut *tx).await?;
            insert_mail!(m).execute(&mut *tx).await?;
            tx.commit().await.map(|()| true)
        })?;
        Ok(issued)
    }

    async fn account_token(
        &self,
        token_hash: &str,
        purpose: &str,
        now: i64,
    ) -> StoreResult<Option<AccountToken>> {
        let row: Option<AccountToken> = on_backend!(self, |b| sqlx::query_as(TOKEN)
            .bind(token_hash)
            .bind(purpose)
            .bind(now)
            .fetch_optional(b.pool())
            .await)?;
        Ok(row)
    }

    async fn use_account_token(&self, token_hash: &str, now: i64) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(USE_TOKEN)
            .bind(token_hash)
            .bind(now)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    async fn redeem_account_token(
        &self,
        token_hash: &str,
        user_id: Uuid,
        now: i64,
        change: Redemption<'_>,
        notice: Option<&OutboxMail>,
    ) -> StoreResult<Option<Redeemed>> {
        let (hash, address, rename) = change.writes();
        // The user's row is locked first (`FOR UPDATE` on Postgres; `BEGIN IMMEDIATE` takes
        // SQLite's write lock): the token's conditions (enabled, the cut-off and address it
        // was issued under) are then read on the row as it stays until the change commits, so
        // a password or address change committed meanwhile ends the token instead of being
        // overwritten by it.
        let (begin, lock) = self.locking_tx(LOCK_USER_PG, LOCK_USER);
        Ok(on_backend!(self, |b| {
            let mut tx = b.pool().begin_with(begin).await?;
            sqlx::query(lock).bind(user_id).execute(&mut *tx).await?;
            let used = sqlx::query(USE_TOKEN_OF)
                .bind(token_hash)
                .bind(now)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if used != 1 {
                return Ok(None);
            }
            let mut done = Redeemed::default();
            if let Some(hash) = hash {
                sqlx::query(SET_PASSWORD_BY_ID)
                    .bind(user_id)
                    .bind(hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                done.sessions_ended = sqlx::query_scalar(REVOKE_SESSIONS_OF_USER)
                    .bind(user_id)
                    .bind(now)
                    .bind("password_changed")
                    .fetch_all(&mut *tx)
                    .await?;
            }
            if let Some((address, key)) = address {
                sqlx::query(SET_EMAIL)
                    .bind(user_id)
                    .bind(address)
                    .bind(key)
                    .bind(true)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(DROP_TOKENS_OF_OTHER_ADDRESSES)
                    .bind(user_id)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
            }
            // Decided on the row as this transaction holds it: a rename committed meanwhile
            // (to another name, or to the old address) is what is compared.
            if let Some((from, to, skeleton)) = rename {
                done.renamed = sqlx::query(RENAME_FROM)
                    .bind(user_id)
                    .bind(from)
                    .bind(to)
                    .bind(skeleton)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
            }
            if let Some(m) = notice {
                insert_mail!(m).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Some(done))
        })?)
    }

    async fn pending_invitations(&self) -> StoreResult<Vec<Invitation>> {
        let rows: Vec<Invitation> = on_backend!(self, |b| sqlx::query_as(INVITATIONS)
            .fetch_all(b.pool())
            .await)?;
        Ok(rows)
    }

    async fn revoke_invitation(&self, user_id: Uuid, _now: i64) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(REVOKE_INVITATION)
            .bind(user_id)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    async fn count_request(&self, key: &str, now: i64, window_ms: i64) -> StoreResult<(i64, i64)> {
        let row: (i64, i64) = on_backend!(self, |b| sqlx::query_as(COUNT_REQUEST)
            .bind(key)
            .bind(now)
            .bind(now + window_ms)
            .fetch_all(b.pool())
            .await
            .and_then(crate::backend::returned_one))?;
        Ok(row)
    }
}
