//! `/admin/users/{id}/sessions`, `/admin/users/{id}/sso_sessions`, `/admin/sessions/{sid}` and
//! `/admin/sso_sessions/{sid}`: a user's refresh sessions and SSO sessions, listed and ended.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{AdminUser, PathId, SessionView, SsoSessionView};
use crate::auth::UserRef;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::AppState;

#[utoipa::path(get, path = "/admin/users/{id}/sessions", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, description = "The user's sessions, newest first (at most 1000; ended ones until purged)", body = Vec<SessionView>),
              (status = 404, description = "No such user", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody)))]
pub(super) async fn list_sessions(
    State(st): State<AppState>,
    _admin: AdminUser,
    id: PathId,
) -> Result<Response, ApiError> {
    let sessions: Vec<SessionView> = st.auth.sessions_of(UserRef::Id(id.id()?)).await?;
    Ok(Json(sessions).into_response())
}

#[utoipa::path(get, path = "/admin/users/{id}/sso_sessions", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, description = "The user's SSO sessions (hosted logins), newest first (at most 1000; ended ones until purged)", body = Vec<SsoSessionView>),
              (status = 404, description = "No such user", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody)))]
pub(super) async fn list_sso_sessions(
    State(st): State<AppState>,
    _admin: AdminUser,
    id: PathId,
) -> Result<Response, ApiError> {
    let sessions: Vec<SsoSessionView> = st.auth.sso_sessions_of(UserRef::Id(id.id()?)).await?;
    Ok(Json(sessions).into_response())
}

#[utoipa::path(delete, path = "/admin/sso_sessions/{sid}", tag = "admin", security(("bearer" = [])),
    params(("sid" = Uuid, Path, description = "SSO session id")),
    responses((status = 204, description = "The SSO session ended, with the refresh sessions made through it; their clients get back-channel logout tokens"),
              (status = 404, description = "No such SSO session", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody)))]
pub(super) async fn revoke_sso_session(
    State(st): State<AppState>,
    admin: AdminUser,
    sid: PathId,
) -> Result<Response, ApiError> {
    st.auth.revoke_sso_session(sid.id()?, &admin.caller).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(delete, path = "/admin/sessions/{sid}", tag = "admin", security(("bearer" = [])),
    params(("sid" = Uuid, Path, description = "Session id")),
    responses((status = 204, description = "The session ended; its refresh and access tokens stop working"),
              (status = 404, description = "No such session", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody)))]
pub(super) async fn revoke_session(
    State(st): State<AppState>,
    admin: AdminUser,
    sid: PathId,
) -> Result<Response, ApiError> {
    st.auth.revoke_session(sid.id()?, &admin.caller).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
