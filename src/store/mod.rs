//! Persistence. The `Store` trait is everything the domain needs from a database; `PgStore` and
//! `SqliteStore` implement it. Nothing outside this module writes SQL.
//!
//! Both backends keep timestamps as integer milliseconds since the Unix epoch and share one set
//! of queries (see `sql.rs`), so the test suite running every scenario on both is what catches
//! a query mistake. Driver errors are translated into `StoreError` here; callers never match on
//! `sqlx::Error`.

mod pg;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use uuid::Uuid;

pub use pg::PgStore;
pub use sqlite::SqliteStore;

use crate::config::DatabaseSettings;

/// A store failure, with the meaning callers need.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint was violated; the field is named.
    #[error("duplicate {0}")]
    Duplicate(&'static str),
    /// The database cannot be reached or the pool is exhausted. The caller fails closed (503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or corrupted data.
    #[error("database error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                let msg = db.message();
                let constraint = db.constraint().unwrap_or_default();
                let field = if msg.contains("username") || constraint == "users_username_key" {
                    "username"
                } else if msg.contains("succeeds") || constraint == "signing_keys_succeeds_key" {
                    "succeeds"
                } else {
                    "key"
                };
                StoreError::Duplicate(field)
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) => {
                // Postgres class 08 (connection), 57P (operator intervention: shutdown, restart),
                // 53 (insufficient resources); SQLite BUSY/LOCKED. All are transient.
                let code = db.code().map(|c| c.to_string()).unwrap_or_default();
                if code.starts_with("08")
                    || code.starts_with("57P")
                    || code.starts_with("53")
                    || code == "5"
                    || code == "6"
                    || code == "517"
                {
                    StoreError::Unavailable(e.to_string())
                } else {
                    StoreError::Other(e.to_string())
                }
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A user row.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    /// argon2id PHC string. Not a secret in the sense of a password, but never logged.
    pub password_hash: String,
    pub roles: Vec<String>,
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub disabled: bool,
    /// Milliseconds; tokens with `iat` before this are refused.
    pub tokens_not_before: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A new user to insert.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: Uuid,
    pub username: String,
    pub password_hash: String,
    pub roles: Vec<String>,
    pub now: i64,
}

/// A session (refresh-token family) row.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub generation: i64,
    pub created_at: i64,
    pub last_refreshed_at: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// The OAuth client the session was issued to; refreshes must come from the same client.
    pub client_id: String,
}

/// What an access token carries about its user, read together with a rotation.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    pub roles: Vec<String>,
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// The outcome of one rotation attempt.
#[derive(Debug, Clone)]
pub enum Rotation {
    /// This request moved the session from `generation - 1` to `generation`.
    Rotated(Session, Grant),
    /// The presented generation was rotated moments ago (inside the grace window): the caller
    /// answers with the same successor, `generation`.
    Retry(Session, Grant),
    /// Reuse outside the grace window: the session is now revoked (RFC 9700 §4.14.2).
    ReuseDetected,
    /// Unknown, expired, revoked, or the user is disabled.
    Invalid,
}

/// A denylisted access token.
#[derive(Debug, Clone)]
pub struct RevokedToken {
    pub jti: String,
    pub user_id: Uuid,
    pub session_id: Option<Uuid>,
    pub expires_at: i64,
    pub revoked_at: i64,
    pub reason: String,
}

/// What the verifier needs to know about a token's subject and session, in one read.
#[derive(Debug, Clone)]
pub struct TokenStatus {
    pub user: Option<User>,
    pub session_revoked: bool,
    pub jti_revoked: bool,
}

/// A signing key row; the private key is sealed.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub private_key_enc: Vec<u8>,
    pub public_jwk: String,
    pub created_at: i64,
    pub publish_at: i64,
    pub activate_at: i64,
    pub retire_at: Option<i64>,
    pub remove_at: Option<i64>,
    /// For automatic rotations: the kid this key replaces (unique, so one replica wins).
    pub succeeds: Option<String>,
}

/// Revocations that happened at or after a point in time, for the revocation feed.
#[derive(Debug, Clone, Default)]
pub struct RevocationFeed {
    /// (jti, token expiry ms, revoked at ms) for denylisted tokens not yet expired.
    pub tokens: Vec<(String, i64, i64)>,
    /// (session id, revoked at ms) for sessions whose access tokens may still be alive.
    pub sessions: Vec<(Uuid, i64)>,
    /// (user id, tokens_not_before ms) for users whose cut-off may still matter.
    pub users: Vec<(Uuid, i64)>,
}

/// Everything the domain asks of a database.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Runs the embedded migrations (idempotent; serialised by an advisory lock on Postgres).
    async fn migrate(&self) -> StoreResult<()>;
    /// A round trip, for readiness.
    async fn ping(&self) -> StoreResult<()>;

    async fn create_user(&self, user: NewUser) -> StoreResult<User>;
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>>;
    async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<User>>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// Returns the user's id, or `None` when there is no such user.
    async fn set_disabled(
        &self,
        username: &str,
        disabled: bool,
        now: i64,
    ) -> StoreResult<Option<Uuid>>;
    /// Returns the user's id, or `None` when there is no such user.
    async fn set_roles(
        &self,
        username: &str,
        roles: &[String],
        now: i64,
    ) -> StoreResult<Option<Uuid>>;
    /// Replaces the hash, revokes every session of the user and sets `tokens_not_before`, in one
    /// transaction. Returns the user's id and the sessions revoked; `None`: no such user.
    async fn set_password(
        &self,
        username: &str,
        hash: &str,
        now: i64,
    ) -> StoreResult<Option<(Uuid, Vec<Uuid>)>>;
    /// Revokes every session of the user and sets `tokens_not_before` (logout everywhere).
    /// Returns the sessions revoked, or `None` when there is no such user.
    async fn revoke_user(
        &self,
        user_id: Uuid,
        reason: &str,
        now: i64,
    ) -> StoreResult<Option<Vec<Uuid>>>;
    /// Replaces the hash after a successful login (parameter upgrade); sessions stay.
    async fn rehash_password(
        &self,
        id: Uuid,
        old_hash: &str,
        new_hash: &str,
        now: i64,
    ) -> StoreResult<()>;

    async fn create_session(&self, session: &Session) -> StoreResult<()>;
    async fn session(&self, id: Uuid) -> StoreResult<Option<Session>>;
    /// One atomic rotation of `id` from `generation`.
    /// One atomic rotation of `id` from `generation`, for the client the session belongs to.
    async fn rotate_session(
        &self,
        id: Uuid,
        generation: i64,
        client_id: &str,
        now: i64,
        idle_ttl_ms: i64,
        grace_ms: i64,
    ) -> StoreResult<Rotation>;
    /// Returns false when there was no live session to revoke.
    async fn revoke_session(&self, id: Uuid, reason: &str, now: i64) -> StoreResult<bool>;

    /// Idempotent: denylisting a `jti` twice keeps the first row.
    async fn revoke_token(&self, token: &RevokedToken) -> StoreResult<()>;
    async fn token_status(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        jti: &str,
    ) -> StoreResult<TokenStatus>;
    /// Deletes denylist rows whose token has expired and sessions long past their end.
    async fn purge_expired(&self, now: i64) -> StoreResult<u64>;

    /// The latest `locked_until` (ms) of the two throttle keys, or 0.
    async fn throttle_locked_until(&self, account: &str, ip: &str, now: i64) -> StoreResult<i64>;
    /// Counts one failure for `key` (restarting the count when the window began before
    /// `window_cutoff`) and returns the count, atomically.
    async fn throttle_fail(&self, key: &str, now: i64, window_cutoff: i64) -> StoreResult<i64>;
    async fn throttle_lock(&self, key: &str, until: i64) -> StoreResult<()>;
    async fn throttle_clear(&self, key: &str) -> StoreResult<()>;

    async fn keys(&self) -> StoreResult<Vec<KeyRow>>;
    async fn insert_key(&self, key: &KeyRow) -> StoreResult<()>;
    /// Inserts `key` and schedules every other unretired key to retire at `retire_at` and leave
    /// the JWKS at `remove_at`, in one transaction.
    async fn rotate_keys(&self, key: &KeyRow, retire_at: i64, remove_at: i64) -> StoreResult<()>;

    /// Revocations since `since` (ms) that can still matter at `now`: denylisted tokens not yet
    /// expired, and session revocations and user cut-offs newer than `now - horizon_ms`.
    async fn revocations_since(
        &self,
        since: i64,
        now: i64,
        horizon_ms: i64,
    ) -> StoreResult<RevocationFeed>;

    /// Users whose row changed at or after `since` (ms), with their `updated_at`.
    async fn users_changed_since(&self, since: i64) -> StoreResult<Vec<(Uuid, i64)>>;

    /// Tells other replicas that `what` changed (Postgres NOTIFY; a no-op on SQLite).
    async fn notify_change(&self, _what: &str) -> StoreResult<()> {
        Ok(())
    }
    /// A stream of change notifications. `None` means: poll. Postgres LISTENs (the payloads
    /// written by `notify_change` and by the database triggers); SQLite watches
    /// `PRAGMA data_version` for commits by other connections. Either stream also carries
    /// `lost` when changes may be going unseen from now on, and `resync` when anything may
    /// have changed without a precise notification (after `lost`, or on SQLite after any
    /// commit by another connection): the consumer forgets what it cached and rereads.
    async fn listen_changes(&self) -> StoreResult<Option<tokio::sync::mpsc::Receiver<String>>> {
        Ok(None)
    }
}

/// Opens the store named by the settings and returns it as a trait object.
pub async fn connect(db: &DatabaseSettings) -> StoreResult<Arc<dyn Store>> {
    let url = db.url.expose_secret();
    if url.starts_with("sqlite:") {
        Ok(Arc::new(
            SqliteStore::connect(url, db.acquire_timeout).await?,
        ))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(
            PgStore::connect(url, db.max_connections, db.acquire_timeout).await?,
        ))
    } else {
        Err(StoreError::Other(
            "database.url must start with sqlite: or postgres:".into(),
        ))
    }
}
