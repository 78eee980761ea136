//! `/admin/users…` and `/admin/sessions…`: user and session management over HTTP, for callers
//! whose access token passes every check and whose user currently holds the `admin` role (read
//! from the database on each request, not from the token, so removing the role takes effect at
//! once). Every change is an audit event.

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
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
use super::extract::{AppJson, Bearer, RequestCaller};
use super::AppState;
use crate::auth::{Caller, UserQuery, UserRef};

mod invitations;
mod sessions;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user))
        .routes(routes!(set_roles))
        .routes(routes!(set_email))
        .routes(routes!(invitations::invite, invitations::list_invitations))
        .routes(routes!(invitations::revoke_invitation))
        .routes(routes!(set_password))
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
        .routes(routes!(revoke_sessions))
        .routes(routes!(set_claims))
        .routes(routes!(sessions::list_sessions))
        .routes(routes!(sessions::list_sso_sessions))
        .routes(routes!(list_user_factors, reset_user_factors))
        .routes(routes!(sessions::revoke_sso_session))
        .routes(routes!(sessions::revoke_session))
}

/// A caller authenticated with an access token whose user holds the `admin` role
/// (`auth::access::ADMIN_ROLE`), and the `Caller` its audited actions are recorded with (the
/// administrator as actor).
pub struct AdminUser {
    pub caller: Caller,
}

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    #[tracing::instrument(skip_all)]
    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let Bearer(token) = Bearer::from_request_parts(parts, st).await?;
        let token = token.ok_or(ApiError::MissingToken)?;
        let who = st.auth.authenticate_admin(&token).await?;
        let caller = RequestCaller::of(&parts.extensions).acting_as(who.user.id);
        Ok(AdminUser { caller })
    }
}

pub use tessera_store::{SessionView, SsoSessionView, UserView};

#[derive(Deserialize, ToSchema)]
pub struct NewUserRequest {
    username: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    #[serde(default)]
    roles: Vec<String>,
    /// An email address (unverified), which the user can log in with too; unique among users
    /// (case-insensitive, the domain IDNA-normalised).
    #[serde(default)]
    email: Option<String>,
}

/// A user's email address: `null` clears it; the member is required (a body without it, a
/// misspelt name say, must not clear the address).
#[derive(Deserialize, ToSchema)]
pub struct EmailRequest {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, required = true)]
    email: Option<Option<String>>,
    /// The administrator vouches that the address is the user's.
    #[serde(default)]
    verified: bool,
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

/// The id in the path of `/admin/users/{id}…` and `/admin/sessions/{sid}`. Extracting it never
/// fails: a malformed one is refused (400 `invalid_request`) when the handler asks for it with
/// `id()`, after `AdminUser` (a caller who may not use the admin API learns nothing from the
/// path) and after the body was read (an oversized body is 413 whatever the path).
pub struct PathId(Option<Uuid>);

impl PathId {
    /// The id, or 400 `invalid_request`.
    pub fn id(self) -> Result<Uuid, ApiError> {
        self.0
            .ok_or_else(|| ApiError::InvalidRequest("malformed id in the path".into()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, st: &S) -> Result<Self, Self::Rejection> {
        let id = Path::<Uuid>::from_request_parts(parts, st).await.ok();
        Ok(PathId(id.map(|Path(id)| id)))
    }
}

/// Filters and the cursor of `GET /admin/users`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct UsersParams {
    /// Usernames starting with this.
    q: Option<String>,
    /// Only users holding this role.
    role: Option<String>,
    /// Only disabled (`true`) or enabled (`false`) users.
    disabled: Option<bool>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Users per page, 1 to 1000 (default 100).
    limit: Option<u32>,
}

/// A page of users, by username.
#[derive(Serialize, ToSchema)]
pub struct UsersPage {
    users: Vec<UserView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// Users, ordered by username, in pages.
#[utoipa::path(get, path = "/admin/users", tag = "admin", params(UsersParams), security(("bearer" = [])),
    responses((status = 200, description = "A page of users", body = UsersPage),
              (status = 400, description = "Malformed filter", body = ErrorBody),
              (status = 401, description = "Missing or invalid access token", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody)))]
async fn list_users(
    State(st): State<AppState>,
    _admin: AdminUser,
    params: Result<Query<UsersParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|_| ApiError::InvalidRequest("malformed query".into()))?;
    let page = st
        .auth
        .users_page(UserQuery {
            prefix: p.q.filter(|q| !q.is_empty()),
            role: p.role,
            disabled: p.disabled,
            after: p.cursor,
            limit: p.limit.unwrap_or(100),
        })
        .await?;
    Ok(Json(UsersPage {
        users: page.users,
        next_cursor: page.next_cursor,
    })
    .into_response())
}

#[utoipa::path(post, path = "/admin/users", tag = "admin", security(("bearer" = [])), request_body = NewUserRequest,
    responses((status = 201, description = "Created", body = UserView), (status = 400, description = "Malformed request", body = ErrorBody),
              (status = 409, description = "Username or email taken", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody)))]
async fn create_user(
    State(st): State<AppState>,
    admin: AdminUser,
    AppJson(req): AppJson<NewUserRequest>,
) -> Result<Response, ApiError> {
    let user = st
        .auth
        .create_user_with_email(
            &req.username,
            req.password,
            req.roles,
            req.email.as_deref(),
            &admin.caller,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

#[utoipa::path(put, path = "/admin/users/{id}/email", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")), request_body = EmailRequest,
    responses((status = 200, description = "The user", body = UserView),
              (status = 400, description = "Not an email address", body = ErrorBody), (status = 404, description = "No such user", body = ErrorBody),
              (status = 409, description = "Another account's address", body = ErrorBody)))]
async fn set_email(
    State(st): State<AppState>,
    admin: AdminUser,
    id: PathId,
    AppJson(req): AppJson<EmailRequest>,
) -> Result<Response, ApiError> {
    let Some(email) = req.email else {
        return Err(ApiError::Rule("missing email (null clears the address)"));
    };
    let user = st
        .auth
        .set_email(
            UserRef::Id(id.id()?),
            email.as_deref(),
            req.verified,
            &admin.caller,
        )
        .await?;
    Ok(Json(user).into_response())
}

#[utoipa::path(get, path = "/admin/users/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, description = "The user", body = UserView), (status = 404, description = "No such user", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody)))]
async fn get_user(
    State(st): State<AppState>,
    _admin: AdminUser,
    id: PathId,
) -> Result<Response, ApiError> {
    let user = st.auth.user(UserRef::Id(id.id()?)).await?;
    Ok(Json(user).into_response())
}

#[utoipa::path(put, path = "/admin/users/{id}/roles", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")), request_body = RolesRequest,
    responses((status = 200, description = "The user", body = UserView), (status = 400, description = "Malformed request", body = ErrorBody), (status = 404, description = "No such user", body = ErrorBody)))]
async fn set_roles(
    State(st): State<AppState>,
    admin: AdminUser,
    id: PathId,
    AppJson(req): AppJson<RolesRequest>,
) -> Result<Response, ApiError> {
    let user = st
        .auth
        .set_roles(UserRef::Id(id.id()?), req.roles, &admin.caller)
        .await?;
    Ok(Json(user).into_response())
}

#[utoipa::path(put, path = "/admin/users/{id}/password", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")), request_body = PasswordRequest,
    responses((status = 204, description = "Password set; every session of the user revoked"),
              (status = 400, description = "Malformed request", body = ErrorBody), (status = 404, description = "No such user", body = ErrorBody)))]
async fn set_password(
    State(st): State<AppState>,
    admin: AdminUser,
    id: PathId,
    AppJson(req): AppJson<PasswordRequest>,
) -> Result<Response, ApiError> {
    st.auth
        .set_password(UserRef::Id(id.id()?), req.password, &admin.caller)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/admin/users/{id}/disable", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 204, description = "Disabled; existing access tokens stop working"), (status = 404, description = "No such user", body = ErrorBody)))]
async fn disable_user(
    State(st): State<AppState>,
    admin: AdminUser,
    id: PathId,
) -> Result<Response, ApiError> {
    set_disabled(&st, id.id()?, true, &admin.caller).await
}

#[utoipa::path(post, path = "/admin/users/{id}/enable", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 204, description = "Enabled"), (status = 404, description = "No such user", body = ErrorBody)))]
async fn enable_user(
    State(st): State<AppState>,
    admin: AdminUser,
    id: PathId,
) -> Result<Response, ApiError> {
    set_disabled(&st, id.id()?, false, &admin.caller).await
}

async fn set_disabled(
    st: &AppState,
    id: Uuid,
    disabled: bool,
    caller: &Caller,
) -> Result<Response, ApiError> {
    st.auth
        .set_disabled(UserRef::Id(id), disabled, caller)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/admin/users/{id}/revoke", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 204, description = "Every session revoked, every access token cut off"), (status = 404, description = "No such user", body = ErrorBody)))]
async fn revoke_sessions(
    State(st): State<AppState>,
    admin: AdminUser,
    id: PathId,
) -> Result<Response, ApiError> {
    st.auth
        .revoke_user(UserRef::Id(id.id()?), "revoked_by_admin", &admin.caller)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Custom claims: a JSON object, at most 4 KiB, with no registered claim name.
#[derive(Deserialize, ToSchema)]
pub struct ClaimsRequest {
    #[schema(value_type = Object)]
    claims: serde_json::Map<String, serde_json::Value>,
}

#[utoipa::path(put, path = "/admin/users/{id}/claims", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")), request_body = ClaimsRequest,
    responses((status = 200, description = "The user; access tokens issued from now on carry the claims", body = UserView),
              (status = 400, description = "A registered claim name, or over 4 KiB", body = ErrorBody), (status = 404, description = "No such user", body = ErrorBody)))]
async fn set_claims(
    State(st): State<AppState>,
    admin: AdminUser,
    id: PathId,
    AppJson(req): AppJson<ClaimsRequest>,
) -> Result<Response, ApiError> {
    let user = st
        .auth
        .set_claims(UserRef::Id(id.id()?), req.claims, &admin.caller)
        .await?;
    Ok(Json(user).into_response())
}

#[utoipa::path(get, path = "/admin/users/{id}/factors", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, description = "The user's second factors and unused recovery codes (no secrets)", body = super::mfa::FactorsBody),
              (status = 404, description = "No such user", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody)))]
async fn list_user_factors(
    State(st): State<AppState>,
    _admin: AdminUser,
    id: PathId,
) -> Result<Response, ApiError> {
    let user = st.auth.user(UserRef::Id(id.id()?)).await?;
    let body = super::mfa::factors_body(&st, user.id).await?;
    Ok(Json(body).into_response())
}

#[utoipa::path(delete, path = "/admin/users/{id}/factors", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, description = "Every factor and recovery code removed (a lost device); the user's sessions end. {\"removed\": N}", body = Object),
              (status = 404, description = "No such user", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody)))]
async fn reset_user_factors(
    State(st): State<AppState>,
    admin: AdminUser,
    id: PathId,
) -> Result<Response, ApiError> {
    let user = st.auth.user(UserRef::Id(id.id()?)).await?;
    let removed = st.auth.reset_factors(user.id, &admin.caller).await?;
    Ok(Json(serde_json::json!({ "removed": removed })).into_response())
}

/// A member that may be `null`: absent is `None`, `null` is `Some(None)`.
fn present<'de, D>(d: D) -> Result<Option<Option<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<String>::deserialize(d).map(Some)
}
