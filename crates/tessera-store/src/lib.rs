//! Persistence: the only layer that writes SQL.
//!
//! - The model (`model.rs`): each record written once; with the `sql` feature, the rows are
//!   read straight into it (`FromRow`). The admin API's views (`views.rs`) are those records
//!   serialised, with their secrets skipped (`UserView` alone is a copy: the row without its
//!   password hash).
//! - `Store` is everything the domain needs from a database, as a union of small traits, one
//!   per capability: users (`UserStore`) and the writes that change what a user's tokens may
//!   do (`UserChanges`; both in `users.rs`), sessions, SSO sessions and authorization codes
//!   (`oidc.rs`), second factors (`mfa.rs`), tokens by email (`accounts.rs`), the mail outbox
//!   (`outbox.rs`), the login throttle, signing keys, the revocation state's (`revocation.rs`:
//!   the denylist, the feed, the first load, and the changes pushed between replicas as a
//!   typed `Change`), the audit trail, and upkeep (migrations, readiness, purges).
//! - With the `sql` feature (the default), each capability's SQL lives in its own file, as
//!   `const` strings and bodies that bind and call. Every query is written once and runs on
//!   Postgres and SQLite alike (`backend::on_backend!`); the test suite running every scenario
//!   on both is what catches a query mistake.
//! - `pg.rs` and `sqlite.rs` hold only connection setup and the change watchers.
//! - Both backends keep timestamps as integer milliseconds since the Unix epoch
//!   (`crate::time`). Driver errors become `StoreError` here; callers never match on
//!   `sqlx::Error`.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod change;
mod error;
mod mfa;
mod model;
mod oidc;
mod outbox;
mod revocation;
pub mod time;
mod users;
mod views;

// The SQL implementation: one file per capability, and the two backends.
#[cfg(feature = "sql")]
mod accounts_sql;
#[cfg(feature = "sql")]
mod audit;
#[cfg(feature = "sql")]
mod backend;
#[cfg(feature = "sql")]
mod challenge_sql;
#[cfg(feature = "sql")]
mod codes;
#[cfg(feature = "sql")]
mod copy;
#[cfg(feature = "sql")]
mod deliveries;
#[cfg(feature = "sql")]
mod denylist;
#[cfg(feature = "sql")]
mod device;
#[cfg(feature = "sql")]
mod feed;
#[cfg(feature = "sql")]
mod keys;
#[cfg(feature = "sql")]
mod mfa_sql;
#[cfg(feature = "sql")]
mod outbox_sql;
#[cfg(feature = "sql")]
mod pg;
#[cfg(feature = "sql")]
mod sessions;
#[cfg(feature = "sql")]
mod sql;
#[cfg(feature = "sql")]
mod sqlite;
#[cfg(feature = "sql")]
mod sso;
#[cfg(feature = "sql")]
mod throttle;
#[cfg(feature = "sql")]
mod upkeep;
#[cfg(feature = "sql")]
mod user_changes_sql;
#[cfg(feature = "sql")]
mod users_sql;

use async_trait::async_trait;
use uuid::Uuid;

pub use accounts::{AccountStore, AccountToken, Invitation, Redeemed, Redemption};
#[cfg(feature = "sql")]
pub use backend::SqlStore;
pub use change::Change;
pub use error::{Duplicate, StoreError, StoreResult};
pub use mfa::{
    Ceremony, CeremonyPurpose, ChallengeStore, Charged, MfaChallenge, MfaFactor, MfaStore,
    PasskeyRefused, RecoveryCodeUse,
};
pub use model::{
    AuditEvent, AuditQuery, FeedKind, FeedPage, FeedPosition, FeedStart, Imported, KeyRow, NewUser,
    OnConflict, RevocationFeed, RevokedToken, Rotation, RotationAttempt, Session, SubjectClaims,
    TokenStatus, User, UserQuery,
};
pub use model::{PoolStats, Purged, Reseal, Reserve, Reserved};
pub use oidc::{
    AuthorizationCode, CodeExchange, CodeStore, DeliveryStore, DeviceApproval, DeviceCode,
    DeviceStore, Exchanged, LogoutDelivery, SsoSession, SsoStore,
};
pub use outbox::{MailOutbox, OutboxMail};
#[cfg(feature = "sql")]
pub use pg::PgStore;
pub use revocation::{ChangeNotifier, DenylistStore, FeedStore, FirstLoad};
#[cfg(feature = "sql")]
pub use sql::{connect, connect_existing};
#[cfg(feature = "sql")]
pub use sqlite::SqliteStore;
pub use users::{UserChanges, UserStore};
pub use views::{AuditEventView, SessionView, SsoSessionView, UserView};

/// Rows read as they arrive.
pub type RowStream<'a, T> = futures_util::stream::BoxStream<'a, StoreResult<T>>;

/// The audit trail.
#[async_trait]
pub trait AuditStore {
    /// Appends events, in one statement per few hundred.
    async fn insert_audit(&self, events: &[AuditEvent]) -> StoreResult<()>;
    /// A page of events (see `AuditQuery`).
    async fn audit_events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>>;
    /// Deletes events older than `before` (ms); returns how many.
    async fn purge_audit(&self, before: i64) -> StoreResult<u64>;
}

/// Refresh-token families.
#[async_trait]
pub trait SessionStore {
    /// Creates `session` only if its user is still enabled and the user's cut-off
    /// (`tokens_not_before`) is still `fence`, the value read with the credential that was
    /// verified: in one statement that holds the user row, so a password change, disable,
    /// role removal or logout-everywhere that raced the login either refuses it here or, if it
    /// commits later, revokes the session it finds. Returns the user's roles and claims as
    /// read under that lock; `None` when the fence no longer holds (nothing was written).
    /// With `challenge` (the digest of a login's mfa_token, a login completed with a second
    /// factor), also only while that challenge is stored, held the same way: a factor change
    /// drops the user's challenges before it ends their other sessions. A session made
    /// through an SSO session (`sso_session_id`, a device approved at the hosted pages) is
    /// created only while that SSO session has not ended, held the same way.
    async fn create_session(
        &self,
        session: &Session,
        fence: i64,
        challenge: Option<&str>,
    ) -> StoreResult<Option<SubjectClaims>>;
    async fn session(&self, id: Uuid) -> StoreResult<Option<Session>>;
    /// One atomic rotation (invariant 1), for the client the session belongs to.
    async fn rotate_session(&self, attempt: &RotationAttempt<'_>) -> StoreResult<Rotation>;
    /// Returns false when there was no live session to revoke.
    async fn revoke_session(&self, id: Uuid, reason: &str, now: i64) -> StoreResult<bool>;
    /// The user's sessions not yet purged, newest first, at most `limit`.
    async fn sessions_of_user(&self, user_id: Uuid, limit: u32) -> StoreResult<Vec<Session>>;
}

/// Failed-login counters, and the attempts in flight on each key (invariant 11).
#[async_trait]
pub trait ThrottleStore {
    /// Adds the attempt to the attempts in flight of every key, atomically (one transaction,
    /// the keys' rows locked in the order given): `LockedUntil` while a key waits after
    /// failures, `Busy` while a key has as many attempts in flight (within their leases) as the
    /// allowance it has left (at least one); either way nothing is added.
    async fn throttle_reserve(&self, reserve: &Reserve<'_>) -> StoreResult<Reserved>;
    /// Counts a failed attempt on `key`: once the count reaches `free`, the key waits
    /// `base_ms`, doubling with each further failure up to `max_ms`. The attempt stays in
    /// flight until `throttle_release`.
    async fn throttle_failed(
        &self,
        key: &str,
        now: i64,
        free: i64,
        base_ms: i64,
        max_ms: i64,
    ) -> StoreResult<()>;
    /// Removes the attempt from the attempts in flight of `keys` (one or two keys).
    async fn throttle_release(&self, keys: &[&str], attempt: Uuid) -> StoreResult<()>;
    /// A success, settled in one commit: clears the failures and wait of `clear` (the account
    /// key, when the attempt holds one) and removes the attempt from the attempts in flight of
    /// `keys` (one or two keys).
    async fn throttle_succeeded(
        &self,
        clear: Option<&str>,
        keys: &[&str],
        attempt: Uuid,
    ) -> StoreResult<()>;
}

/// Signing keys.
#[async_trait]
pub trait KeyStore {
    async fn keys(&self) -> StoreResult<Vec<KeyRow>>;
    async fn insert_key(&self, key: &KeyRow) -> StoreResult<()>;
    /// Inserts `key` and schedules every other unretired key to retire at `retire_at` and leave
    /// the JWKS at `remove_at`, in one transaction.
    async fn rotate_keys(&self, key: &KeyRow, retire_at: i64, remove_at: i64) -> StoreResult<()>;
    /// Replaces sealed private keys, in one transaction: each `Reseal` applies only if the row
    /// still holds `old` (else an error, and nothing changes).
    async fn reseal_keys(&self, reseal: &[Reseal]) -> StoreResult<()>;
}

/// The schema, readiness, and the purge of expired rows.
#[async_trait]
pub trait Upkeep {
    /// Runs the embedded migrations (idempotent; serialised by an advisory lock on Postgres).
    async fn migrate(&self) -> StoreResult<()>;
    /// A round trip, for readiness; on Postgres also that the session may write
    /// (`Unavailable` on a standby or a read-only database).
    async fn ping(&self) -> StoreResult<()>;
    /// Deletes denylist rows whose token has expired, sessions long past their end, and
    /// throttle rows nobody waits on, in batches of `PURGE_BATCH` rows (one short statement
    /// each, with a pause between them), so that no purge holds locks or the database for
    /// long. Sessions found by their indexed ends (absolute expiry, revocation) go every time;
    /// with `sweep_idle`, also those only past their idle expiry, which has no index (see
    /// `purge_expired`'s implementation for why).
    async fn purge_expired(&self, now: i64, sweep_idle: bool) -> StoreResult<Purged>;
    /// The connection pool's state, for `/metrics`.
    fn pool_stats(&self) -> PoolStats;
    /// How long taking a connection from the pool takes now (waiting for one when all are in
    /// use), giving up after `limit`: `None` then, or when the database is unreachable.
    async fn probe_acquire(&self, limit: std::time::Duration) -> Option<std::time::Duration>;
}

/// Rows one purge statement deletes at most: 100. Small, because a batch's effect on the hot
/// paths grows with its length: on Postgres at 1M sessions, purging 1M expired ones in batches
/// of 1000 with 10 ms pauses raised a refresh chain's p99 from 0.94 to 3.36 ms, and batches of
/// 250 found in index order and paced by `PURGE_YIELD` still 2.4–3.0× (2.6–3.2× on SQLite). A
/// refresh that meets a batch waits for it, so the batch's length is what the p99 pays; with
/// 100, 1M expired sessions go in 56 s on Postgres and 51 s on SQLite (docs/benchmarks.md,
/// "At scale").
pub const PURGE_BATCH: i64 = 100;

/// Everything the domain asks of a database.
pub trait Store:
    AccountStore
    + MailOutbox
    + AuditStore
    + UserStore
    + UserChanges
    + SessionStore
    + SsoStore
    + CodeStore
    + DeliveryStore
    + DeviceStore
    + MfaStore
    + ChallengeStore
    + DenylistStore
    + ThrottleStore
    + KeyStore
    + FeedStore
    + FirstLoad
    + ChangeNotifier
    + Upkeep
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: AccountStore
        + MailOutbox
        + AuditStore
        + UserStore
        + UserChanges
        + SessionStore
        + SsoStore
        + CodeStore
        + DeliveryStore
        + DeviceStore
        + MfaStore
        + ChallengeStore
        + DenylistStore
        + ThrottleStore
        + KeyStore
        + FeedStore
        + FirstLoad
        + ChangeNotifier
        + Upkeep
        + Send
        + Sync
        + 'static
{
}
