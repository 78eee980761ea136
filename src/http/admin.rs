//! `/admin/users…`: user management over HTTP, for callers whose access token passes every
//! check and whose user currently holds the `admin` role (read from the database on each
//! request, not from the token, so removing the role takes effect at once).

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody};
use super::extract::{AppJson, Bearer};
use super::AppState;
use crate::auth::{Authenticated, User, UserRef};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user))
        .routes(routes!(set_roles))
        .routes(routes!(set_password))
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
        .routes(routes!(revoke_sessions))
}

/// A caller authenticated with an access token whose user holds the `admin` role
/// (`auth::access::ADMIN_ROLE`).
pub struct AdminUser(#[allow(dead_code)] pub Authenticated);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    #[tracing::instrument(skip_all)]
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let Bearer(token) = Bearer::from_request_parts(parts, st).await?;
        let token = token.ok_or(ApiError::InvalidToken)?;
        Ok(AdminUser(st.auth.authenticate_admin(&token).await?))
    }
}

/// A user as the admin API shows it (never the password hash).
#[derive(Serialize, ToSchema)]
pub struct UserView {
    id: Uuid,
    username: String,
    roles: Vec<String>,
    disabled: bool,
    /// Milliseconds since the epoch.
    created_at: i64,
    updated_at: i64,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            username: u.username,
            roles: u.roles,
            disabled: u.disabled,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct NewUserRequest {
    username: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct RolesRequest {
    roles: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordRequest {
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

/// The user named by the path; a malformed id is a malformed request.
fn user_id(id: Result<Path<Uuid>, PathRejection>) -> Result<UserRef<'static>, ApiError> {
    let Path(id) = id.map_err(|_| ApiError::InvalidRequest("malformed user id".into()))?;
    Ok(UserRef::Id(id))
}

#[utoipa::path(get, path = "/admin/users", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Every user", body = Vec<UserView>),
              (status = 401, description = "Missing or invalid access token", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody)))]
async fn list_users(State(st): State<AppState>, _admin: AdminUser) -> Result<Response, ApiError> {
    let users: Vec<UserView> = st
        .auth
        .list_users()
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(users).into_response())
}

#[utoipa::path(post, path = "/admin/users", tag = "admin", security(("bearer" = [])), request_body = NewUserRequest,
    responses((status = 201, description = "Created", body = UserView), (status = 400, description = "Malformed request", body = ErrorBody),
              (status = 409, description = "Username taken", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody)))]
async fn create_user(
    State(st): State<AppState>,
    _admin: AdminUser,
    AppJson(req): AppJson<NewUserRequest>,
) -> Result<Response, ApiError> {
    let user = st
        .auth
        .create_user(&req.username, req.password, req.roles)
        .await?;
    Ok((StatusCode::CREATED, Json(UserView::from(user))).into_response())
}

#[utoipa::path(get, path = "/admin/users/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, description = "The user", body = UserView), (status = 404, description = "No such user", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody)))]
async fn get_user(
    State(st): State<AppState>,
    _admin: AdminUser,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Response, ApiError> {
    let user = st.auth.user(user_id(id)?).await?;
    Ok(Json(UserView::from(user)).into_response())
}

#[utoipa::path(put, path = "/admin/users/{id}/roles", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")), request_body = RolesRequest,
    responses((status = 200, description = "The user", body = UserView), (status = 400, description = "Malformed request", body = ErrorBody), (status = 404, description = "No such user", body = ErrorBody)))]
async fn set_roles(
    State(st): State<AppState>,
    _admin: AdminUser,
    id: Result<Path<Uuid>, PathRejection>,
    AppJson(req): AppJson<RolesRequest>,
) -> Result<Response, ApiError> {
    let user = st.auth.set_roles(user_id(id)?, req.roles).await?;
    Ok(Json(UserView::from(user)).into_response())
}

#[utoipa::path(put, path = "/admin/users/{id}/password", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")), request_body = PasswordRequest,
    responses((status = 204, description = "Password set; every session of the user revoked"),
              (status = 400, description = "Malformed request", body = ErrorBody), (status = 404, description = "No such user", body = ErrorBody)))]
async fn set_password(
    State(st): State<AppState>,
    _admin: AdminUser,
    id: Result<Path<Uuid>, PathRejection>,
    AppJson(req): AppJson<PasswordRequest>,
) -> Result<Response, ApiError> {
    st.auth.set_password(user_id(id)?, req.password).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/admin/users/{id}/disable", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 204, description = "Disabled; existing access tokens stop working"), (status = 404, description = "No such user", body = ErrorBody)))]
async fn disable_user(
    State(st): State<AppState>,
    _admin: AdminUser,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Response, ApiError> {
    set_disabled(&st, id, true).await
}

#[utoipa::path(post, path = "/admin/users/{id}/enable", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 204, description = "Enabled"), (status = 404, description = "No such user", body = ErrorBody)))]
async fn enable_user(
    State(st): State<AppState>,
    _admin: AdminUser,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Response, ApiError> {
    set_disabled(&st, id, false).await
}

async fn set_disabled(
    st: &AppState,
    id: Result<Path<Uuid>, PathRejection>,
    disabled: bool,
) -> Result<Response, ApiError> {
    st.auth.set_disabled(user_id(id)?, disabled).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/admin/users/{id}/revoke", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 204, description = "Every session revoked, every access token cut off"), (status = 404, description = "No such user", body = ErrorBody)))]
async fn revoke_sessions(
    State(st): State<AppState>,
    _admin: AdminUser,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Response, ApiError> {
    st.auth
        .revoke_user(user_id(id)?, "revoked_by_admin")
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
