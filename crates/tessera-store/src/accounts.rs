//! Tokens sent by email (a password reset, an address verification, an invitation, an address
//! change; invariant 7). The outbox that carries them is `outbox.rs`. Times are milliseconds
//! since the Unix epoch.

use async_trait::async_trait;
use uuid::Uuid;

use super::{OutboxMail, StoreResult};

/// A token sent by email, as stored.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
pub struct AccountToken {
    /// base64url SHA-256 of the token.
    pub token_hash: String,
    pub user_id: Uuid,
    /// `password_reset`, `email_verify`, `invite` or `email_change`.
    pub purpose: String,
    /// The address (its compared form) the account must have for the token to work: the one
    /// it was sent to (and verifies), or for `email_change` the one the account had.
    pub email_key: Option<String>,
    /// For `email_change`: the new address, taken when the token is used.
    pub email: Option<String>,
    /// The user's `tokens_not_before` when it was issued: a password change, disable or
    /// cut-off since kills it.
    pub fence: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// An invitation not yet accepted.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
pub struct Invitation {
    pub user_id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What using an emailed token changes, in the transaction that uses it
/// (`AccountStore::redeem_account_token`). Its `Debug` leaves the password hash out.
#[derive(Clone, Copy)]
pub enum Redemption<'a> {
    /// A new password hash (a reset): every session of the user is revoked and the cut-off
    /// moves.
    Password { hash: &'a str },
    /// A new address, verified (`(as given, compared form)`); with `rename`
    /// (`(old name, new name, new skeleton)`), an account still named by its old address (as
    /// the row holds it in this transaction) takes the new one as its name.
    Email {
        address: (&'a str, &'a str),
        rename: Option<(&'a str, &'a str, &'a str)>,
    },
    /// An invitation accepted: the invitee's password hash (sessions revoked and the cut-off
    /// moved, as a reset), and the address the link reached, verified.
    Invitation {
        hash: &'a str,
        address: (&'a str, &'a str),
    },
}

impl std::fmt::Debug for Redemption<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Redemption::Password { .. } => "Redemption::Password",
            Redemption::Email { .. } => "Redemption::Email",
            Redemption::Invitation { .. } => "Redemption::Invitation",
        })
    }
}

/// What a redeemed token changed (`AccountStore::redeem_account_token`).
#[derive(Debug, Clone, Default)]
pub struct Redeemed {
    /// The sessions a new password revoked.
    pub sessions_ended: Vec<Uuid>,
    /// Whether the account was renamed with its address.
    pub renamed: bool,
}

/// Tokens by email, invitations, and the request counter of the mail-sending endpoints.
#[async_trait]
pub trait AccountStore {
    /// In one transaction: deletes the user's unused tokens of the token's purpose, stores the
    /// token, and queues the mail that carries it. With `not_since` (ms), nothing is written
    /// when a token of that purpose was issued to the user after it: the check and the write
    /// are one step for each user (concurrent requests take turns). Returns whether the token
    /// was issued.
    async fn issue_account_token(
        &self,
        token: &AccountToken,
        mail: &OutboxMail,
        not_since: Option<i64>,
    ) -> StoreResult<bool>;
    /// The unused, unexpired token of `purpose` with this digest, whose user is enabled and
    /// still has the cut-off the token was issued under.
    async fn account_token(
        &self,
        token_hash: &str,
        purpose: &str,
        now: i64,
    ) -> StoreResult<Option<AccountToken>>;
    /// Uses it up: `true` once (of parallel uses, one wins), and only while its user is
    /// enabled, has the cut-off it was issued under and the address it is bound to.
    async fn use_account_token(&self, token_hash: &str, now: i64) -> StoreResult<bool>;
    /// Uses the token of `user_id` (as `use_account_token`, at `now`, ms), makes the change it
    /// was issued for and queues `notice`, in one transaction, with the user's row locked
    /// first: either all of it is stored or none.
    /// Returns what changed, or `None` when the token could not be used (nothing changed).
    ///
    /// Errors: `Duplicate(Email)` (another account took the address meanwhile),
    /// `Duplicate(Username | UsernameSkeleton)` (a rename's name is taken); nothing changed.
    async fn redeem_account_token(
        &self,
        token_hash: &str,
        user_id: Uuid,
        now: i64,
        change: Redemption<'_>,
        notice: Option<&OutboxMail>,
    ) -> StoreResult<Option<Redeemed>>;
    /// Invitations not accepted: users with an unused `invite` token and no password set
    /// since, expired or not, oldest first.
    async fn pending_invitations(&self) -> StoreResult<Vec<Invitation>>;
    /// Deletes an invited user who never accepted (a pending `invite` token); `false`
    /// otherwise.
    async fn revoke_invitation(&self, user_id: Uuid, now: i64) -> StoreResult<bool>;
    /// Counts one request on `key` in its fixed window (a new window of `window_ms` starts
    /// when the last one has ended), in one statement. Returns the count in the window, this
    /// request included, and when the window ends (ms).
    async fn count_request(&self, key: &str, now: i64, window_ms: i64) -> StoreResult<(i64, i64)>;
}
