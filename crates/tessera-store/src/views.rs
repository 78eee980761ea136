//! What the admin API (`/admin/users…`, `/admin/audit`) and the self-service API (`/me…`) show
//! of the model: a user without its password hash, and the session, SSO session and audit rows
//! as they are serialised, with what is worked out from them at the time of asking. Times are
//! milliseconds since the Unix epoch.

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{AuditEvent, Session, SsoSession, User};

/// A user as the admin API shows it: never the password hash or the token cut-off.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    pub email: Option<String>,
    /// Whether the user proved they receive mail there.
    pub email_verified: bool,
}

impl From<&User> for UserView {
    /// Only the view's fields are copied: the password hash stays in the row.
    fn from(u: &User) -> Self {
        UserView {
            id: u.id,
            username: u.username.clone(),
            roles: u.roles.clone(),
            claims: u.claims.clone(),
            disabled: u.disabled,
            created_at: u.created_at,
            updated_at: u.updated_at,
            email: u.email.clone(),
            email_verified: u.email_verified,
        }
    }
}

/// A session (refresh-token family) as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct SessionView {
    #[serde(flatten)]
    pub session: Session,
    /// Whether its refresh token still works.
    pub active: bool,
}

impl SessionView {
    /// `session`, live or not at `now` (ms).
    pub fn at(session: Session, now: i64) -> Self {
        SessionView {
            active: session.is_live(now),
            session,
        }
    }
}

/// An SSO session (a browser's login at the hosted pages) as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct SsoSessionView {
    #[serde(flatten)]
    pub sso: SsoSession,
    /// Whether it still signs the browser in (not ended, not expired, and not cut off by a
    /// password change, a disable or a revocation of every session).
    pub active: bool,
}

/// An audit event as `GET /admin/audit` shows it: the row, and its time in RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AuditEventView {
    /// `at` in RFC 3339, UTC, milliseconds.
    pub time: String,
    #[serde(flatten)]
    pub event: AuditEvent,
}
