//! The admin API's views of users, sessions (`/admin/users…`) and audit events
//! (`/admin/audit`): what an administrator sees,
//! never a password hash. Times are milliseconds since the Unix epoch.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// A user as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct UserView {
    /// The user's id, the `sub` of their tokens.
    pub id: Uuid,
    /// The username, as stored (PRECIS-enforced).
    pub username: String,
    /// The roles copied into access tokens.
    pub roles: Vec<String>,
    /// Custom claims copied into access tokens.
    #[cfg_attr(feature = "schema", schema(value_type = Object))]
    pub claims: Map<String, Value>,
    /// A disabled user cannot log in, and every token of theirs is refused.
    pub disabled: bool,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// Milliseconds since the epoch.
    pub updated_at: i64,
    /// The user's email address, which they can log in with too.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether the user proved they receive mail there.
    #[serde(default)]
    pub email_verified: bool,
}

/// A session (refresh-token family) as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct SessionView {
    /// The session id, the `sid` of its access tokens.
    pub id: Uuid,
    /// Its user.
    pub user_id: Uuid,
    /// The OAuth client it was issued to.
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
    /// The granted scope.
    pub scope: Option<String>,
    /// Whether its refresh token still works.
    pub active: bool,
    /// The SSO session it was created through (`/authorize`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso_session_id: Option<Uuid>,
}

/// An audit event as `GET /admin/audit` shows it. Never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AuditEventView {
    /// UUIDv7: ordering by id is ordering by time.
    pub id: Uuid,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// Milliseconds since the epoch.
    pub at: i64,
    /// The event's name, e.g. `login.failed`.
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
    /// The administrator who acted, for admin API actions.
    pub actor_id: Option<Uuid>,
}

/// An SSO session (a browser's login at the hosted pages) as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct SsoSessionView {
    /// The session id, the `sid` of ID tokens and logout tokens.
    pub id: Uuid,
    /// Its user.
    pub user_id: Uuid,
    /// When the user authenticated (ms since the epoch).
    pub auth_time: i64,
    /// The authentication methods used (RFC 8176), e.g. `pwd`.
    pub amr: Vec<String>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// The last authorization it served.
    pub last_seen_at: i64,
    /// It ends if unused by then.
    pub idle_expires_at: i64,
    /// It ends then in any case.
    pub absolute_expires_at: i64,
    /// When it was ended, if it was.
    pub revoked_at: Option<i64>,
    /// Why (`logout`, `replaced`, `revoked_by_admin`, …).
    pub revoked_reason: Option<String>,
    /// The client address at login.
    pub ip: Option<String>,
    /// The user agent at login.
    pub user_agent: Option<String>,
    /// Whether it still signs the browser in (not ended, not expired, and not cut off by a
    /// password change, a disable or a revocation of every session).
    pub active: bool,
}
