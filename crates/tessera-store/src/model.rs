//! The rows the store reads and writes, and the arguments of its multi-value operations. Times
//! are integer milliseconds since the Unix epoch (`crate::time`), as both databases keep them.

use uuid::Uuid;

/// A user row.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
pub struct User {
    pub id: Uuid,
    pub username: String,
    /// argon2id PHC string. Not a secret in the sense of a password, but never logged.
    pub password_hash: String,
    #[cfg_attr(feature = "sql", sqlx(json))]
    pub roles: Vec<String>,
    #[cfg_attr(feature = "sql", sqlx(json))]
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub disabled: bool,
    /// The cut-off (ms): tokens issued at or before it (to the millisecond, from the UUIDv7
    /// `jti`) are refused.
    pub tokens_not_before: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// The address as the user gave it (`email` in `/userinfo` and ID tokens).
    pub email: Option<String>,
    /// Whether the user proved they receive mail there.
    pub email_verified: bool,
}

/// A new user to insert.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: Uuid,
    pub username: String,
    /// The username's confusable skeleton (`auth::username::skeleton_key`): unique among
    /// users, so no new name looks like another. `None` only for rows written without one.
    pub skeleton: Option<String>,
    pub password_hash: String,
    pub roles: Vec<String>,
    /// Custom claims copied into access tokens.
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub disabled: bool,
    pub now: i64,
    /// The address as given, and its compared form (`users.email_key`, unique).
    pub email: Option<String>,
    pub email_key: Option<String>,
    pub email_verified: bool,
}

/// What `import_users` does with a username that exists already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// Leave the existing user as it is and go on (a re-run of an import is a no-op).
    Skip,
    /// Import nothing.
    Fail,
}

/// The outcome of `import_users`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    /// Users created.
    pub created: usize,
    /// Usernames that exist already: skipped, or with `OnConflict::Fail` the reason nothing
    /// was imported.
    pub existing: Vec<String>,
}

/// A session (refresh-token family) row. Serialised, it is what the admin API and `/me/sessions`
/// show of it (`SessionView`): the generation, resource and methods stay inside.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Session {
    /// The session id, the `sid` of its access tokens.
    pub id: Uuid,
    /// Its user.
    pub user_id: Uuid,
    /// The OAuth client it was issued to; refreshes must come from the same client.
    pub client_id: String,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// The last rotation of its refresh token.
    pub last_refreshed_at: i64,
    /// It ends if not refreshed by then.
    pub idle_expires_at: i64,
    /// It ends then, refreshed or not.
    pub absolute_expires_at: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// Why (`logout`, `reuse_detected`, `password_changed`, …).
    pub revoked_reason: Option<String>,
    /// The client address at login.
    pub ip: Option<String>,
    /// The user agent at login.
    pub user_agent: Option<String>,
    /// The scope granted at login, space-separated (RFC 6749 §3.3); `None`: none asked for.
    pub scope: Option<String>,
    /// The SSO session it was created through (`/authorize`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sso_session_id: Option<Uuid>,
    /// The refresh token's generation: each rotation moves it on by one (invariant 1).
    #[serde(skip)]
    pub generation: i64,
    /// The RFC 8707 resource its access tokens are for (`aud`); `None`: `tokens.audience`.
    #[serde(skip)]
    pub resource: Option<String>,
    /// The authentication methods of its login, space-separated RFC 8176 values (`pwd`,
    /// `pwd otp mfa`); `None` for sessions from before they were recorded, read as `pwd`.
    #[serde(skip)]
    pub amr: Option<String>,
}

impl Session {
    /// Past its idle or absolute expiry at `now` (ms).
    pub fn is_expired(&self, now: i64) -> bool {
        self.idle_expires_at <= now || self.absolute_expires_at <= now
    }

    /// Neither revoked nor expired at `now` (ms): its refresh token still works.
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && !self.is_expired(now)
    }
}

/// The roles and custom claims of a token's subject, read together with a rotation so that a
/// refresh is one round trip.
#[derive(Debug, Clone, Default)]
pub struct SubjectClaims {
    pub roles: Vec<String>,
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// One refresh-token rotation attempt: move session `session_id` from `generation` to the
/// next, for `client_id`, at `now` (invariant 1).
#[derive(Debug, Clone, Copy)]
pub struct RotationAttempt<'a> {
    pub session_id: Uuid,
    /// The generation the presented token carries.
    pub generation: i64,
    /// The client presenting it; a session refreshes only for its own client (RFC 6749 §6).
    pub client_id: &'a str,
    pub now: i64,
    /// The session's new idle expiry (capped by its absolute expiry in the statement).
    pub idle_expires_at: i64,
    /// How long after a rotation its predecessor still gets the same successor.
    pub grace_ms: i64,
}

/// The outcome of one rotation attempt.
#[derive(Debug, Clone)]
pub enum Rotation {
    /// This request moved the session from `generation - 1` to `generation`.
    Rotated(Session, SubjectClaims),
    /// The presented generation was rotated moments ago (inside the grace window): the caller
    /// answers with the same successor, `generation`.
    Retry(Session, SubjectClaims),
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
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
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

/// What one entry of the revocation feed revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FeedKind {
    /// A denylisted access token (`jti`).
    Token = 0,
    /// A revoked session (`sid`).
    Session = 1,
    /// A user's cut-off (`tokens_not_before`).
    User = 2,
}

/// A place in the revocation feed, whose entries are ordered by (time, kind, key): the last
/// entry a page returned. Keys compare bytewise (`jti`) or as UUID bytes (ids), the order both
/// backends use.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FeedPosition {
    /// Milliseconds: `revoked_at`, or the user's `tokens_not_before`.
    pub at: i64,
    pub kind: FeedKind,
    /// The `jti`, or the id as a UUID string.
    pub key: String,
}

/// Where a page of the revocation feed starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedStart {
    /// Every entry of this millisecond on (the cursor of a final page, or none: `From(0)`).
    From(i64),
    /// Every entry after this one (the cursor of a page followed by more).
    After(FeedPosition),
}

/// One page of the revocation feed: at most the limit asked for, in feed order.
#[derive(Debug, Default)]
pub struct FeedPage {
    pub entries: RevocationFeed,
    /// Where the page ends, when more entries follow it.
    pub more_after: Option<FeedPosition>,
}

/// One row of the audit trail, as `GET /admin/audit` shows it too (`AuditEventView`). Never a
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    /// UUIDv7: ordering by id is ordering by time.
    pub id: Uuid,
    /// Milliseconds since the epoch.
    pub at: i64,
    /// The event's name, e.g. `login.failed` (`auth::audit::Event`).
    pub event: String,
    /// The user the event is about.
    pub user_id: Option<Uuid>,
    /// The session (refresh-token family) it is about.
    pub session_id: Option<Uuid>,
    /// The OAuth client that asked.
    pub client_id: Option<String>,
    /// The client address.
    pub ip: Option<String>,
    /// The `x-request-id` of the request that caused it.
    pub request_id: Option<String>,
    /// A reason code, e.g. `bad_password`, `unknown_user`, `disabled`.
    pub reason: Option<String>,
    /// The administrator who acted, for admin API actions; `None` otherwise (the CLI included).
    pub actor_id: Option<Uuid>,
}

/// A page of the audit trail: events at or after `since` and before `before`, after the cursor
/// `after`, oldest first, at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub user_id: Option<Uuid>,
    pub event: Option<String>,
    /// Milliseconds since the epoch.
    pub since: i64,
    pub after: Option<Uuid>,
    pub limit: u32,
    /// Only events before this time (ms): the newest ones are left out until every replica's
    /// writer has surely stored them, so that a cursor never passes a row written late.
    pub before: i64,
}

/// A page of users, by username: those after `after`, matching every filter given.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Usernames starting with this (normalised) text.
    pub prefix: Option<String>,
    /// Users holding this role.
    pub role: Option<String>,
    pub disabled: Option<bool>,
    /// The last username of the previous page.
    pub after: Option<String>,
    pub limit: u32,
}

/// One attempt to reserve against its throttle keys (milliseconds throughout).
#[derive(Debug, Clone, Copy)]
pub struct Reserve<'a> {
    /// Each key with its free allowance of failures, in the order their rows are locked (the
    /// account, then the address: every attempt locks in this order).
    pub keys: &'a [(&'a str, i64)],
    /// The attempt's id, the same on each of its keys.
    pub attempt: Uuid,
    pub now: i64,
    /// Failures from windows that began before this are forgotten.
    pub window_cutoff: i64,
    /// Until when this attempt counts as in flight if it is never settled (its process died).
    pub lease_until: i64,
}

/// What a reservation found (`ThrottleStore::throttle_reserve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// The attempt is in flight on every key.
    Taken,
    /// A key has as many attempts in flight as the allowance it has left: nothing was taken.
    Busy,
    /// A key waits after failures until then (ms; the latest of the keys): nothing was taken.
    LockedUntil(i64),
}

/// A signing key sealed anew (master-key rotation).
#[derive(Debug, Clone)]
pub struct Reseal {
    pub kid: String,
    /// The sealed key as it is stored now (the compare of compare-and-set).
    pub old: Vec<u8>,
    /// The same key sealed under the current master key.
    pub new: Vec<u8>,
}

/// Rows deleted by one `purge_expired`, by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub revoked_tokens: u64,
    /// Refresh sessions, SSO sessions and finished back-channel deliveries.
    pub sessions: u64,
    /// Authorization codes, device codes, pushed authorization requests and expired
    /// mfa_tokens.
    pub authorization_codes: u64,
    pub login_throttle: u64,
}

/// Connections of the database pool (the refresh path's own connections not included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open (idle or in use).
    pub open: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// `database.max_connections`.
    pub max: u32,
}
