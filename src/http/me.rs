//! The user's own account, with their bearer token (an operator's client): the profile
//! (`GET /me`; `PATCH /me` for the username), a password change (`POST /me/password`), their
//! sessions (`GET /me/sessions`, `DELETE /me/sessions/{id}`), an address change
//! (`POST /me/email`) and deleting the account (`DELETE /me`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admin::PathId;
use super::error::{ApiError, ErrorBody};
use super::extract::{AppJson, Bearer, RequestCaller};
use super::mfa::me;
use super::session::{client_meta, session_response};
use super::AppState;
use crate::auth::{AuthError, UserRef};
use tessera_store::{SessionView, UserView};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(profile, rename, delete_account))
        .routes(routes!(change_password))
        .routes(routes!(change_email))
        .routes(routes!(my_sessions))
        .routes(routes!(end_my_session))
}

/// The caller's account.
#[utoipa::path(get, path = "/me", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller (no password hash)", body = UserView),
        (status = 401, description = "Missing, invalid or revoked token", body = ErrorBody),
        (status = 403, description = "A third-party client's token", body = ErrorBody),
    ))]
async fn profile(State(st): State<AppState>, bearer: Bearer) -> Result<Response, ApiError> {
    let who = me(&st, bearer).await?;
    Ok(Json(st.auth.user(UserRef::Id(who.user.id)).await?).into_response())
}

/// What the caller changes of their profile.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileChange {
    /// The new username (PRECIS, one script, at most 64 bytes; with an `@` only the account's
    /// own address).
    username: String,
}

/// Changes the caller's username (needs a login within `mfa.reauth_within`). The account logs
/// in with the new name from now on; `sub` stays, and access tokens issued before carry the
/// old name until refreshed.
#[utoipa::path(patch, path = "/me", tag = "accounts", security(("bearer" = [])),
    request_body = ProfileChange,
    responses(
        (status = 200, description = "Renamed: the caller's account", body = UserView),
        (status = 400, description = "invalid_request: a name the rules refuse, or an address that is not the account's", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked token, or insufficient_user_authentication (log in again first)", body = ErrorBody),
        (status = 403, description = "A third-party client's token", body = ErrorBody),
        (status = 409, description = "conflict: the name is taken, or looks like another account's (the description says which)", body = ErrorBody),
    ))]
async fn rename(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    bearer: Bearer,
    AppJson(req): AppJson<ProfileChange>,
) -> Result<Response, ApiError> {
    let who = me(&st, bearer).await?;
    let since = st.auth.login_time(who.claims.session_id).await?;
    let view = st
        .auth
        .change_username(who.user.id, &req.username, since, &caller)
        .await?;
    Ok(Json(view).into_response())
}

/// The current password and the new one.
#[derive(Deserialize, ToSchema)]
pub struct PasswordChange {
    #[schema(value_type = String, format = Password)]
    current_password: SecretString,
    /// The password rules apply (`password.*`).
    #[schema(value_type = String, format = Password)]
    new_password: SecretString,
}

/// Changes the caller's password. Every session of the user ends and earlier access tokens are
/// cut off; the answer is a new session for the caller, as `/login` gives (cookie mode too).
/// A note goes to the user's address when mail is on.
#[utoipa::path(post, path = "/me/password", tag = "accounts", security(("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed; the caller's new session", body = super::session::TokenResponse),
        (status = 400, description = "invalid_grant: the current password is wrong; invalid_request: a new password the rules refuse", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked token", body = ErrorBody),
        (status = 429, description = "Too many wrong current passwords; see Retry-After", body = ErrorBody),
    ))]
async fn change_password(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    bearer: Bearer,
    AppJson(req): AppJson<PasswordChange>,
) -> Result<Response, ApiError> {
    let who = me(&st, bearer).await?;
    let meta = client_meta(&st, &headers, peer.map(|Extension(ConnectInfo(p))| p));
    let amr = who.claims.claims.amr.as_ref().map(|m| {
        m.iter()
            .map(|s| s.as_ref())
            .collect::<Vec<&str>>()
            .join(" ")
    });
    let pair = st
        .auth
        .change_password(
            who.user.id,
            req.current_password,
            req.new_password,
            amr,
            meta,
            &st.auth.first_party(),
            &caller,
        )
        .await
        .map_err(|e| match e {
            // The caller's token is fine: the current password is what is wrong.
            AuthError::InvalidCredentials => ApiError::InvalidGrant {
                status: StatusCode::BAD_REQUEST,
            },
            other => other.into(),
        })?;
    Ok(session_response(&st, &pair))
}

/// The new address.
#[derive(Deserialize, ToSchema)]
pub struct EmailChange {
    email: String,
}

/// Asks to change the caller's address (needs a login within `mfa.reauth_within`). A link to
/// confirm it goes to the new address (`accounts.verify_ttl`); the account keeps its address
/// until the link's token is posted to `/email/verify`, and then the old address is told. The
/// answer is the same 202 after the same time when another account holds the address (its
/// owner is told instead).
#[utoipa::path(post, path = "/me/email", tag = "accounts", security(("bearer" = [])),
    request_body = EmailChange,
    responses(
        (status = 202, description = "Accepted (whether or not the address is free)", body = super::accounts::AcceptedBody),
        (status = 400, description = "Not an address, a domain not allowed, or the account's address already", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked token, or insufficient_user_authentication (log in again first)", body = ErrorBody),
        (status = 403, description = "A third-party client's token", body = ErrorBody),
        (status = 404, description = "Mail is not configured", body = ErrorBody),
        (status = 429, description = "slow_down: too many requests that send mail from this address (accounts.ip_requests); see Retry-After", body = ErrorBody),
    ))]
async fn change_email(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    bearer: Bearer,
    AppJson(req): AppJson<EmailChange>,
) -> Result<Response, ApiError> {
    let who = me(&st, bearer).await?;
    if !st.auth.mail_enabled() {
        return Err(ApiError::MailDisabled);
    }
    st.auth.limit_mail_request(&caller).await?;
    let since = st.auth.login_time(who.claims.session_id).await?;
    let started = tokio::time::Instant::now();
    let done = st
        .auth
        .request_email_change(who.user.id, &req.email, since, &caller)
        .await;
    match done {
        // What the caller must fix is said at once; the rest is one answer.
        Err(
            e @ (AuthError::BadInput(_)
            | AuthError::ReauthenticationRequired
            | AuthError::UserNotFound),
        ) => Err(e.into()),
        done => super::accounts::accepted(started, done).await,
    }
}

/// The caller's sessions.
#[derive(Serialize, ToSchema)]
pub struct MySessions {
    sessions: Vec<SessionView>,
    /// The session of the token that asked.
    current: uuid::Uuid,
}

/// Lists the caller's sessions, newest first (ended ones until purged).
#[utoipa::path(get, path = "/me/sessions", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's sessions", body = MySessions),
        (status = 401, description = "Missing, invalid or revoked token", body = ErrorBody),
    ))]
async fn my_sessions(State(st): State<AppState>, bearer: Bearer) -> Result<Response, ApiError> {
    let who = me(&st, bearer).await?;
    let sessions = st.auth.my_sessions(who.user.id).await?;
    Ok(Json(MySessions {
        sessions,
        current: who.claims.session_id,
    })
    .into_response())
}

/// Ends one of the caller's sessions (its refresh token and access tokens stop working).
#[utoipa::path(delete, path = "/me/sessions/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The session")),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, description = "Missing, invalid or revoked token", body = ErrorBody),
        (status = 404, description = "No such session of the caller", body = ErrorBody),
    ))]
async fn end_my_session(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    bearer: Bearer,
    id: PathId,
) -> Result<Response, ApiError> {
    let who = me(&st, bearer).await?;
    st.auth
        .end_my_session(who.user.id, id.id()?, &caller)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Deletes the caller's account: its personal data is erased and every token of it refused.
/// Needs a login within `mfa.reauth_within`.
#[utoipa::path(delete, path = "/me", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing, invalid or revoked token, or insufficient_user_authentication (log in again first)", body = ErrorBody),
    ))]
async fn delete_account(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    bearer: Bearer,
) -> Result<Response, ApiError> {
    let who = me(&st, bearer).await?;
    let since = st.auth.login_time(who.claims.session_id).await?;
    st.auth.delete_account(who.user.id, since, &caller).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
