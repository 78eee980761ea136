//! Self-service by email over HTTP: asking for a password reset (`POST /password/forgot`) and
//! setting the new password with the emailed token (`POST /password/reset`), signup
//! (`POST /signup`) and address verification (`POST /email/verify`, `/email/verify/resend`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{AppJson, RequestCaller};
use super::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(forgot_password))
        .routes(routes!(reset_password))
        .routes(routes!(signup))
        .routes(routes!(verify_email))
        .routes(routes!(resend_verification))
        .routes(routes!(accept_invitation))
}

/// A new account.
#[derive(Deserialize, ToSchema)]
pub struct SignupRequest {
    email: String,
    /// The password rules apply (`password.*`).
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    /// Optional: the address itself is the username otherwise.
    #[serde(default)]
    username: Option<String>,
}

/// Creates an account (`accounts.signup = "open"`). The address, username and password are
/// checked first (400 naming the rule); then the answer is the same 202 for a new address
/// and a registered one, at once. A new address gets the account and a verification link; a
/// registered one gets a note to its owner instead.
#[utoipa::path(post, path = "/signup", tag = "accounts", request_body = SignupRequest,
    responses(
        (status = 202, description = "Accepted (whether or not the address is registered)", body = AcceptedBody),
        (status = 400, description = "Not an address, a domain not allowed, a username or password the rules refuse", body = ErrorBody),
        (status = 404, description = "Signup is closed", body = ErrorBody),
        (status = 409, description = "The username chosen is taken, or looks like a taken one (UTS #39 confusable skeleton)", body = ErrorBody),
        (status = 429, description = "slow_down: too many requests that send mail from this address (accounts.ip_requests); see Retry-After", body = ErrorBody),
    ))]
async fn signup(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    AppJson(req): AppJson<SignupRequest>,
) -> Result<Response, ApiError> {
    if !st.auth.signup_open() {
        return Err(crate::auth::AuthError::SignupClosed.into());
    }
    st.auth.limit_mail_request(&caller).await?;
    let checked = st
        .auth
        .check_signup(&req.email, req.password, req.username.as_deref())
        .await?;
    let started = tokio::time::Instant::now();
    let done = st.auth.complete_signup(checked, &caller).await;
    accepted(started, done).await
}

/// The token of an address verification link.
#[derive(Deserialize, ToSchema)]
pub struct TokenRequest {
    #[schema(value_type = String, format = Password)]
    token: SecretString,
}

/// Verifies an address with the token of its link (once, for the address it was sent to):
/// a link of `purpose=email_verify` (signup, resend), or of `purpose=email_change` (`POST
/// /me/email`), which makes the new address the account's, verified, and tells the old one.
#[utoipa::path(post, path = "/email/verify", tag = "accounts", request_body = TokenRequest,
    responses(
        (status = 204, description = "Verified"),
        (status = 400, description = "invalid_grant: an unknown, used or expired token, or one for another address", body = ErrorBody),
        (status = 409, description = "An address change to an address another account took meanwhile", body = ErrorBody),
    ))]
async fn verify_email(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    AppJson(req): AppJson<TokenRequest>,
) -> Result<Response, ApiError> {
    st.auth.verify_email(&req.token, &caller).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An address to send a new verification link to.
#[derive(Deserialize, ToSchema)]
pub struct ResendRequest {
    email: String,
}

/// Sends a new verification link to an unverified address (once a minute at most); the same
/// 202 for every address.
#[utoipa::path(post, path = "/email/verify/resend", tag = "accounts", request_body = ResendRequest,
    responses(
        (status = 202, description = "Accepted (whatever the address)", body = AcceptedBody),
        (status = 404, description = "Mail is not configured", body = ErrorBody),
        (status = 429, description = "slow_down: too many requests that send mail from this address (accounts.ip_requests); see Retry-After", body = ErrorBody),
    ))]
async fn resend_verification(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    AppJson(req): AppJson<ResendRequest>,
) -> Result<Response, ApiError> {
    if !st.auth.mail_enabled() {
        return Err(ApiError::MailDisabled);
    }
    st.auth.limit_mail_request(&caller).await?;
    let started = tokio::time::Instant::now();
    let done = st.auth.resend_verification(&req.email).await;
    accepted(started, done).await
}

/// Whose password to reset: an email address or a username.
#[derive(Deserialize, ToSchema)]
pub struct ForgotRequest {
    /// The account's email address.
    #[serde(default)]
    email: Option<String>,
    /// Or its username.
    #[serde(default)]
    username: Option<String>,
}

/// The one answer to every request.
#[derive(Serialize, ToSchema)]
pub struct AcceptedBody {
    /// `accepted`.
    status: &'static str,
}

/// Asks for a password-reset link. The answer is the same 202, with the same body and after
/// the same time (at least `Auth::ANSWER_FLOOR`, 150 ms), whether or not the address or name
/// belongs to an account (invariant 4); when it does, and the account has an address, a link
/// is queued to it (once a minute at most) before the answer.
#[utoipa::path(post, path = "/password/forgot", tag = "accounts", request_body = ForgotRequest,
    responses(
        (status = 202, description = "Accepted (whatever the address)", body = AcceptedBody),
        (status = 400, description = "Neither email nor username", body = ErrorBody),
        (status = 404, description = "Password reset by email is not enabled (mail.smtp_url)", body = ErrorBody),
        (status = 429, description = "slow_down: too many requests that send mail from this address (accounts.ip_requests); see Retry-After", body = ErrorBody),
    ))]
async fn forgot_password(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    AppJson(req): AppJson<ForgotRequest>,
) -> Result<Response, ApiError> {
    if !st.auth.mail_enabled() {
        return Err(ApiError::MailDisabled);
    }
    st.auth.limit_mail_request(&caller).await?;
    let login = match (req.email, req.username) {
        (Some(e), None) => e,
        (None, Some(u)) => u,
        _ => {
            return Err(ApiError::InvalidRequest(
                "give exactly one of email and username".into(),
            ))
        }
    };
    let started = tokio::time::Instant::now();
    let done = st.auth.request_password_reset(&login, &caller).await;
    accepted(started, done).await
}

/// The one 202 of the requests whose answer must not tell whether an address is known: sent
/// once the work is stored (nothing is lost to a crash after it) and no sooner than
/// `Auth::ANSWER_FLOOR` after `started`. A database outage or a saturated hasher, which every
/// address meets alike, is a 503. Any other failure is logged as an error and still answered
/// 202: it comes of the work done for one kind of address only (a known account's mail), so a
/// different answer would tell which addresses are registered (invariant 4).
pub(super) async fn accepted(
    started: tokio::time::Instant,
    done: Result<(), crate::auth::AuthError>,
) -> Result<Response, ApiError> {
    tokio::time::sleep_until(started + crate::auth::Auth::ANSWER_FLOOR).await;
    match done {
        Ok(()) => {}
        Err(e @ crate::auth::AuthError::StoreUnavailable) => return Err(e.into()),
        Err(e @ crate::auth::AuthError::MailDisabled) => return Err(e.into()),
        Err(e @ crate::auth::AuthError::Unavailable(_)) => return Err(e.into()),
        Err(e) => tracing::error!(error = %e, "an account request failed after its checks"),
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(AcceptedBody { status: "accepted" }),
    )
        .into_response())
}

/// The emailed token and the new password.
#[derive(Deserialize, ToSchema)]
pub struct ResetRequest {
    #[schema(value_type = String, format = Password)]
    token: SecretString,
    /// The password rules apply (`password.*`).
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

/// Sets a new password with the token of a reset link. The token works once; every session of
/// the user ends and earlier access tokens are cut off.
#[utoipa::path(post, path = "/password/reset", tag = "accounts", request_body = ResetRequest,
    responses(
        (status = 204, description = "Password set; every session of the user ended"),
        (status = 400, description = "invalid_grant: an unknown, used or expired token, or one issued before a password change (one body); invalid_request: a password the rules refuse (the token still works)", body = ErrorBody),
        (status = 404, description = "Password reset by email is not enabled", body = ErrorBody),
    ))]
async fn reset_password(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    AppJson(req): AppJson<ResetRequest>,
) -> Result<Response, ApiError> {
    if !st.auth.mail_enabled() {
        return Err(ApiError::MailDisabled);
    }
    st.auth
        .reset_password(&req.token, req.password, &caller)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The token of an invitation's link and the invitee's password.
#[derive(Deserialize, ToSchema)]
pub struct AcceptRequest {
    #[schema(value_type = String, format = Password)]
    token: SecretString,
    /// The password rules apply (`password.*`).
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

/// Accepts an invitation: sets the invitee's password with the token of its link (once) and
/// verifies their address. They then log in as anyone does.
#[utoipa::path(post, path = "/invitations/accept", tag = "accounts", request_body = AcceptRequest,
    responses(
        (status = 204, description = "Accepted"),
        (status = 400, description = "invalid_grant: an unknown, used, expired or withdrawn invitation; invalid_request: a password the rules refuse (the token still works)", body = ErrorBody),
    ))]
async fn accept_invitation(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    AppJson(req): AppJson<AcceptRequest>,
) -> Result<Response, ApiError> {
    st.auth
        .accept_invitation(&req.token, req.password, &caller)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
