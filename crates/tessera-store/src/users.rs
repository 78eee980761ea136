//! What the domain asks of a database about users: accounts, their lookup and listing, and
//! import (`UserStore`), and the writes that change what a user's tokens may do
//! (`UserChanges`). The SQL is in `users_sql.rs` and `user_changes_sql.rs`.

use async_trait::async_trait;
use uuid::Uuid;

use super::{
    AccountToken, Duplicate, Imported, NewUser, OnConflict, OutboxMail, StoreResult, User,
    UserQuery,
};

/// Accounts.
#[async_trait]
pub trait UserStore {
    async fn create_user(&self, user: NewUser) -> StoreResult<User>;
    /// `create_user`, with the token of its first link (an address verification, an
    /// invitation) stored and `mail` queued in the same transaction: the account exists with
    /// its link, or not at all.
    async fn create_user_with_token(
        &self,
        user: NewUser,
        token: &AccountToken,
        mail: &OutboxMail,
    ) -> StoreResult<User>;
    /// Creates many users in one transaction. With `OnConflict::Fail`, one existing username
    /// means nothing is created (every such name is reported).
    async fn import_users(
        &self,
        users: &[NewUser],
        on_conflict: OnConflict,
    ) -> StoreResult<Imported>;
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>>;
    /// The account a login names (one read): the user whose compared address
    /// (`users.email_key`) is `email_key`, else the one named `username`.
    async fn user_for_login(
        &self,
        username: Option<&str>,
        email_key: &str,
    ) -> StoreResult<Option<User>>;
    /// Sets or clears (`None`) a user's address (`(as given, compared form)`) and whether it
    /// is verified, and in the same transaction renames the user per `rename` (`(from, to,
    /// to's skeleton)`) if still named `from`. `None` when there is no such user, else whether
    /// it was renamed. Errors: `Duplicate(Email)` when another account holds the address,
    /// `Duplicate(Username)` or `Duplicate(UsernameSkeleton)` when one holds the new name (or
    /// its skeleton); nothing is changed then.
    async fn set_email(
        &self,
        id: Uuid,
        email: Option<(&str, &str)>,
        verified: bool,
        rename: Option<(&str, &str, &str)>,
        now: i64,
    ) -> StoreResult<Option<bool>>;
    /// Accounts without a stored skeleton (named before skeletons were kept), id order, after
    /// `after` (the nil UUID to start), at most `limit`.
    async fn users_missing_skeleton(
        &self,
        after: Uuid,
        limit: u32,
    ) -> StoreResult<Vec<(Uuid, String)>>;
    /// Renames an enabled user (`username`, with its confusable `skeleton`), and with
    /// `email_key` only while the user's address is still that one (a name that is an
    /// address must stay the account's own); `false` otherwise. `now` is ms since the epoch.
    /// Errors: `Duplicate(Username)`
    /// or `Duplicate(UsernameSkeleton)` when another account holds the name or its skeleton.
    async fn rename_user(
        &self,
        id: Uuid,
        username: &str,
        skeleton: &str,
        email_key: Option<&str>,
        now: i64,
    ) -> StoreResult<bool>;
    /// Whether an account holds `username` or a name with its confusable `skeleton`, and
    /// which (the name itself first). Errors: `Unavailable`, `Other`.
    async fn name_in_use(&self, username: &str, skeleton: &str) -> StoreResult<Option<Duplicate>>;
    /// Stores the user's skeleton; `false` when another account holds it (or it was set).
    async fn set_skeleton(&self, id: Uuid, skeleton: &str) -> StoreResult<bool>;
    async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<User>>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// A page of users, ordered by username (see `UserQuery`).
    async fn users_page(&self, query: &UserQuery) -> StoreResult<Vec<User>>;
}

/// Writes to a user row that change what the user's tokens may do: claims, roles, the
/// disabled flag, the cut-off, the password (each ending sessions or moving the cut-off as it
/// says).
#[async_trait]
pub trait UserChanges {
    /// Replaces the custom claims; returns the user's id and the claims replaced (read in the
    /// same transaction), `None` when there is no such user.
    async fn set_claims(
        &self,
        username: &str,
        claims: &serde_json::Map<String, serde_json::Value>,
        now: i64,
    ) -> StoreResult<Option<(Uuid, serde_json::Map<String, serde_json::Value>)>>;
    /// Disables or enables the user; disabling moves the cut-off. Returns the user's id when
    /// this call changed the flag, `None` when there is no such user or it was so already
    /// (nothing written).
    async fn set_disabled(
        &self,
        username: &str,
        disabled: bool,
        now: i64,
    ) -> StoreResult<Option<Uuid>>;
    /// Replaces the roles; returns the user's id and the roles replaced (read in the same
    /// transaction, so a concurrent change cannot slip between), `None` when there is no such
    /// user.
    async fn set_roles(
        &self,
        username: &str,
        roles: &[String],
        now: i64,
    ) -> StoreResult<Option<(Uuid, Vec<String>)>>;
    /// Refuses every access token of the user issued before `now` (`tokens_not_before`);
    /// sessions stay. Returns the user's id, `None` when there is no such user.
    async fn cut_off_tokens(&self, user_id: Uuid, now: i64) -> StoreResult<Option<Uuid>>;
    /// Replaces the hash, revokes every session of the user and sets `tokens_not_before`, in one
    /// transaction. Returns the user's id and the sessions revoked; `None`: no such user.
    async fn set_password(
        &self,
        username: &str,
        hash: &str,
        now: i64,
    ) -> StoreResult<Option<(Uuid, Vec<Uuid>)>>;
    /// `set_password`, only while the stored hash is still `old_hash` (the one a current
    /// password was checked against), with `notice` queued in the same transaction; `None`
    /// otherwise (nothing changed, nothing queued).
    async fn set_password_if(
        &self,
        username: &str,
        old_hash: &str,
        hash: &str,
        now: i64,
        notice: Option<&OutboxMail>,
    ) -> StoreResult<Option<(Uuid, Vec<Uuid>)>>;
    /// Erases the user's personal data in one transaction: the row stays as a disabled
    /// tombstone named `tombstone` that carries a new cut-off, and their sessions, SSO
    /// sessions, factors, recovery codes, tokens by email and consents are deleted. `false`
    /// when there is no such user.
    async fn erase_user(&self, user_id: Uuid, tombstone: &str, now: i64) -> StoreResult<bool>;
    /// Revokes every session of the user and sets `tokens_not_before` (logout everywhere).
    /// Returns the sessions revoked, or `None` when there is no such user.
    async fn revoke_user(
        &self,
        user_id: Uuid,
        reason: &str,
        now: i64,
    ) -> StoreResult<Option<Vec<Uuid>>>;
    /// Replaces the hash after a successful login (parameter upgrade); sessions stay. Writes
    /// only while the stored hash is still `old_hash`, the one the password was verified
    /// against, so a password change made meanwhile is never undone.
    async fn rehash_password(
        &self,
        id: Uuid,
        old_hash: &str,
        new_hash: &str,
        now: i64,
    ) -> StoreResult<()>;
}
