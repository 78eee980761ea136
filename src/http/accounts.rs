//! Self-service by email over HTTP: asking for a password reset (`POST /password/forgot`) and
//! setting the new password with the emailed token (`POST /password/reset`).

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

/// Asks for a password-reset link. The answer is the same 202, with the same body and at once,
/// whether or not the address or name belongs to an account (invariant 4); when it does, and
/// the account has an address, a link is mailed to it (once a minute at most).
#[utoipa::path(post, path = "/password/forgot", tag = "accounts", request_body = ForgotRequest,
    responses(
        (status = 202, description = "Accepted (whatever the address)", body = AcceptedBody),
        (status = 400, description = "Neither email nor username", body = ErrorBody),
        (status = 404, description = "Password reset by email is not enabled (mail.smtp_url, accounts.link_base)", body = ErrorBody),
    ))]
async fn forgot_password(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    AppJson(req): AppJson<ForgotRequest>,
) -> Result<Response, ApiError> {
    if !st.auth.password_reset_enabled() {
        return Err(ApiError::MailDisabled);
    }
    let login = match (req.email, req.username) {
        (Some(e), None) => e,
        (None, Some(u)) => u,
        _ => {
            return Err(ApiError::InvalidRequest(
                "give exactly one of email and username".into(),
            ))
        }
    };
    // The work runs after the answer, so that its duration tells nothing.
    let auth = st.auth.clone();
    tokio::spawn(async move {
        if let Err(e) = auth.request_password_reset(&login, &caller).await {
            tracing::warn!(error = %e, "password reset request failed");
        }
    });
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
    if !st.auth.password_reset_enabled() {
        return Err(ApiError::MailDisabled);
    }
    st.auth
        .reset_password(&req.token, req.password, &caller)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
