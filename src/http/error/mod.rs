//! `ApiError`: every failure a request can end in. HTTP statuses and OAuth 2.0 error codes are
//! chosen in this module (the table in `parts.rs`) and nowhere else: domain errors (`AuthError`) map in `From`, and the cases only
//! the transport knows (a body too large, a wrong method, no such route) are added here.
//!
//! Bodies use OAuth's vocabulary (`{"error", "error_description"}`, RFC 6749 §5.2). Internal
//! causes are logged with the request's span and never returned to the client. Like every
//! answer, errors carry `Cache-Control: no-store` (set once, by the edge middleware).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::auth::oidc::DevicePoll;
use crate::auth::AuthError;

mod parts;

/// Every failure a request can end in.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (RFC 6749 §5.2 `invalid_request`).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The request breaks a rule whose fixed text names it (`invalid_request`, the text as
    /// the description).
    #[error("invalid request: {0}")]
    Rule(&'static str),
    /// Wrong credentials, unknown or disabled user, or an unusable refresh token. One variant,
    /// one body: callers cannot tell which of those it was. The first-party `/login` and
    /// `/refresh` answer 401; the token endpoint answers 400 (RFC 6749 §5.2, see
    /// `token_endpoint`).
    #[error("invalid grant")]
    InvalidGrant { status: StatusCode },
    /// Client authentication failed (RFC 6749 §5.2 `invalid_client`). `challenge`: the client
    /// used the `Authorization` header, so the answer is 401 naming the Basic scheme (RFC 9110
    /// §15.5.2: a 401 carries a challenge); otherwise 400, as §5.2 allows, since there is no
    /// scheme to challenge and a Basic challenge would misdirect a form-authenticating client.
    #[error("invalid client")]
    InvalidClient { challenge: bool },
    /// An authorization code that is unknown, expired, used, or not the client's, redirect
    /// URI's or PKCE verifier's (RFC 6749 §5.2 `invalid_grant`).
    #[error("invalid authorization code")]
    InvalidCode,
    /// A correct password for a user with a second factor: 403 `mfa_required`, whose body
    /// also carries the `mfa_token` and `mfa_methods` that complete the login.
    #[error("second factor required")]
    MfaRequired(crate::auth::mfa::MfaRequired),
    /// A wrong, replayed or used second factor, or an unusable `mfa_token` (`invalid_grant`:
    /// 401 at `/login/mfa`, 400 at `/token`).
    #[error("invalid second factor")]
    InvalidSecondFactor { status: StatusCode },
    /// 403 `mfa_enrolment_required`: a correct password for an account that must have a
    /// second factor (`mfa.required_for_roles`) and has none after `mfa.enrol_grace`.
    #[error("second factor enrolment required")]
    MfaEnrolmentRequired,
    /// No such factor of the user: 404.
    #[error("factor not found")]
    FactorNotFound,
    /// `POST /signup` is closed: 404.
    #[error("signup closed")]
    SignupClosed,
    /// A correct password, an unverified address, `accounts.require_verified_email`: 403.
    #[error("email not verified")]
    EmailNotVerified,
    /// Flows that need mail are off: 404.
    #[error("mail disabled")]
    MailDisabled,
    /// A token sent by email that is unknown, used, expired or stale: 400 `invalid_grant`.
    #[error("invalid account token")]
    InvalidAccountToken,
    /// Passkeys are off (`[webauthn]` names no relying party): 404.
    #[error("passkeys disabled")]
    PasskeysDisabled,
    /// A passkey ceremony unknown, used or expired, or an answer that does not verify: 400.
    #[error("invalid passkey")]
    InvalidPasskey,
    /// The action needs a more recent login (RFC 9470 §3 `insufficient_user_authentication`).
    #[error("reauthentication required")]
    ReauthenticationRequired,
    /// The client may not use this grant (RFC 6749 §5.2 `unauthorized_client`).
    #[error("unauthorized client")]
    UnauthorizedClient,
    /// A device's poll without tokens (RFC 8628 §3.5): `authorization_pending`, `slow_down`,
    /// `access_denied` or `expired_token`, all 400.
    #[error("device poll: {0}")]
    DevicePoll(&'static str),
    /// A pushed authorization request refused (RFC 9126 §2.3): its OAuth error code and the
    /// domain's fixed description (never input).
    #[error("invalid authorization request: {error}")]
    AuthorizationRequest {
        error: &'static str,
        description: String,
    },
    /// `grant_type` names a grant this server does not offer.
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    /// RFC 6749 §5.2 `invalid_scope`.
    #[error("invalid scope")]
    InvalidScope,
    /// RFC 8707 §2 `invalid_target`.
    #[error("invalid target")]
    InvalidTarget,
    /// RFC 8707 §2 `invalid_target`: different `resource` parameters in one request; Tessera
    /// mints a token for one resource at a time.
    #[error("more than one resource")]
    MultipleResources,
    /// A bearer access token failed verification (RFC 6750 §3.1 `invalid_token`).
    #[error("invalid token")]
    InvalidToken,
    /// The access token sent more than once: two `Authorization` headers, or the header and
    /// an `access_token` in a form body or the query (RFC 6750 §3.1 `invalid_request`: a
    /// request that repeats a parameter or carries the token by more than one method), as
    /// `tessera-verify` answers it.
    #[error("the access token sent more than once")]
    AmbiguousToken,
    /// An endpoint that needs a bearer token got none (RFC 6750 §3.1: the challenge then
    /// carries no error code). The body still has the contract's shape, `invalid_token`.
    #[error("no token")]
    MissingToken,
    /// Too many failed logins: wait this many seconds (RFC 8628 §3.5 `slow_down`).
    #[error("slow down")]
    SlowDown(u64),
    /// A valid token whose user lacks the role the endpoint needs (RFC 6750 §3.1).
    #[error("forbidden")]
    Forbidden,
    /// Cookie mode: a request the refresh cookie authenticates comes from an origin that is
    /// neither in `http.cors_origins` nor Tessera's own (CSRF; see `csrf`).
    #[error("cross-origin request")]
    CrossOrigin,
    /// A new password breaks a `password.*` rule: 400 `invalid_request` naming the rule.
    #[error("weak password: {0}")]
    WeakPassword(crate::auth::login::PasswordRule),
    /// A new username breaks a naming rule (PRECIS, length, mixed scripts): 400
    /// `invalid_request` naming the rule.
    #[error("bad username: {0}")]
    BadUsername(crate::auth::username::NameError),
    /// A new username looks like an existing account's (UTS #39 confusable skeleton): 409.
    #[error("confusable username")]
    ConfusableUsername,
    /// The resource already exists (a username taken).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The request head is larger than `http.max_header_bytes` (RFC 6585 §5).
    #[error("request head too large")]
    HeaderTooLarge,
    /// The body is larger than the configured limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// A route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No such route.
    #[error("not found")]
    NotFound,
    /// No such user (the admin API).
    #[error("user not found")]
    UserNotFound,
    /// No such session (the admin API).
    #[error("session not found")]
    SessionNotFound,
    /// Load shedding or a dependency (the database) is down: fail closed, ask to retry.
    #[error("temporarily unavailable: {0}")]
    Unavailable(&'static str),
    /// A bug or an unexpected failure. The cause is logged, never returned.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The wire shape of every error body (`tessera_proto::error`). Its description is a fixed
/// text per error, or a broken rule's fixed text (a password's names settings only).
pub use tessera_proto::error::ErrorBody;

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidCredentials | AuthError::InvalidRefreshToken => {
                ApiError::InvalidGrant {
                    status: StatusCode::UNAUTHORIZED,
                }
            }
            AuthError::InvalidToken => ApiError::InvalidToken,
            AuthError::InvalidCode => ApiError::InvalidCode,
            AuthError::MfaRequired(m) => ApiError::MfaRequired(m),
            AuthError::InvalidSecondFactor => ApiError::InvalidSecondFactor {
                status: StatusCode::UNAUTHORIZED,
            },
            AuthError::FactorNotFound => ApiError::FactorNotFound,
            AuthError::PasskeysDisabled => ApiError::PasskeysDisabled,
            AuthError::MailDisabled => ApiError::MailDisabled,
            AuthError::SignupClosed => ApiError::SignupClosed,
            AuthError::EmailNotVerified => ApiError::EmailNotVerified,
            AuthError::InvalidAccountToken => ApiError::InvalidAccountToken,
            AuthError::InvalidPasskey => ApiError::InvalidPasskey,
            AuthError::PasskeyRegistered => ApiError::Conflict("passkey"),
            AuthError::MfaEnrolmentRequired => ApiError::MfaEnrolmentRequired,
            AuthError::ReauthenticationRequired => ApiError::ReauthenticationRequired,
            AuthError::UnauthorizedClient => ApiError::UnauthorizedClient,
            AuthError::DevicePoll(poll) => ApiError::DevicePoll(match poll {
                DevicePoll::AuthorizationPending => "authorization_pending",
                DevicePoll::SlowDown => "slow_down",
                DevicePoll::AccessDenied => "access_denied",
                DevicePoll::ExpiredToken => "expired_token",
            }),
            AuthError::InvalidAuthorizationRequest { error, description } => {
                ApiError::AuthorizationRequest { error, description }
            }
            AuthError::InvalidScope => ApiError::InvalidScope,
            AuthError::InvalidTarget => ApiError::InvalidTarget,
            AuthError::InsufficientRole => ApiError::Forbidden,
            AuthError::InvalidClient => ApiError::InvalidClient { challenge: false },
            AuthError::Throttled { retry_after_secs } => ApiError::SlowDown(retry_after_secs),
            AuthError::Unavailable(cause) => ApiError::Unavailable(cause),
            // `serve` migrates before it listens: a missing schema is an operator's mistake.
            AuthError::NoSchema => ApiError::Internal("the database has no schema".into()),
            AuthError::UserNotFound => ApiError::UserNotFound,
            AuthError::SessionNotFound => ApiError::SessionNotFound,
            AuthError::UsernameTaken => ApiError::Conflict("username"),
            AuthError::EmailTaken => ApiError::Conflict("email"),
            AuthError::UsernameConfusable => ApiError::ConfusableUsername,
            AuthError::BadUsername(rule) => ApiError::BadUsername(rule),
            AuthError::BadInput(std::borrow::Cow::Borrowed(rule)) => ApiError::Rule(rule),
            AuthError::BadInput(std::borrow::Cow::Owned(why)) => ApiError::InvalidRequest(why),
            AuthError::WeakPassword(rule) => ApiError::WeakPassword(rule),
            AuthError::StoreUnavailable => ApiError::Unavailable("database unavailable"),
            AuthError::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

/// A domain error as the token endpoint answers it: RFC 6749 §5.2 has `invalid_grant` be
/// 400 there, where the first-party endpoints answer 401.
pub fn token_endpoint(e: AuthError) -> ApiError {
    match ApiError::from(e) {
        ApiError::InvalidGrant { .. } => ApiError::InvalidGrant {
            status: StatusCode::BAD_REQUEST,
        },
        ApiError::InvalidSecondFactor { .. } => ApiError::InvalidSecondFactor {
            status: StatusCode::BAD_REQUEST,
        },
        other => other,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.parts();
        match &self {
            ApiError::Internal(cause) => tracing::error!(%cause, "request failed"),
            ApiError::Unavailable(cause) => {
                tracing::warn!(%cause, "request shed");
                metrics::counter!("requests_shed_total", "cause" => *cause).increment(1);
            }
            ApiError::InvalidRequest(why) => tracing::debug!(%why, "invalid request"),
            _ => {}
        }
        let mut res = match &self {
            ApiError::MfaRequired(m) => {
                use secrecy::ExposeSecret;
                let body = serde_json::json!({
                    "error": body.error,
                    "error_description": body.error_description,
                    "mfa_token": m.mfa_token.expose_secret(),
                    "mfa_methods": m.methods,
                });
                (status, axum::Json(body)).into_response()
            }
            _ => (status, axum::Json(body)).into_response(),
        };
        let h = res.headers_mut();
        match self {
            ApiError::InvalidToken => {
                // RFC 6750 §3: a 401 for a bearer token names the scheme and the error.
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="tessera", error="invalid_token""#),
                );
            }
            ApiError::AmbiguousToken => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="tessera", error="invalid_request""#),
                );
            }
            ApiError::MissingToken => {
                // RFC 6750 §3.1: no authentication information, no error code.
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="tessera""#),
                );
            }
            ApiError::Forbidden => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        r#"Bearer realm="tessera", error="insufficient_scope""#,
                    ),
                );
            }
            ApiError::InvalidClient { challenge: true } => {
                // RFC 6749 §5.2: when the client used the Authorization header, the 401 names
                // its scheme; otherwise there is no challenge to answer.
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="tessera", charset="UTF-8""#),
                );
            }
            ApiError::Unavailable(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::ReauthenticationRequired => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        r#"Bearer realm="tessera", error="insufficient_user_authentication""#,
                    ),
                );
            }
            ApiError::SlowDown(secs) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            _ => {}
        }
        res
    }
}

#[cfg(test)]
mod tests;
