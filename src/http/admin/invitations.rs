//! `/admin/invitations…`: accounts created for an address, with a mailed link that sets their
//! password (`POST /invitations/accept`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{AdminUser, PathId, UserView};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::AppJson;
use crate::http::AppState;

/// An address to invite, with the roles its account gets.
#[derive(Deserialize, ToSchema)]
pub struct InviteRequest {
    email: String,
    #[serde(default)]
    roles: Vec<String>,
    /// Optional: the address itself is the username otherwise.
    #[serde(default)]
    username: Option<String>,
}

/// An invitation not yet accepted.
#[derive(serde::Serialize, ToSchema)]
pub struct InvitationView {
    /// The invited account.
    user_id: Uuid,
    username: String,
    email: Option<String>,
    /// Milliseconds since the epoch.
    created_at: i64,
    /// Milliseconds since the epoch.
    expires_at: i64,
}

/// Invites an address: an account with the roles and no usable password, and a link mailed to
/// the address with which the invitee sets one (`POST /invitations/accept`).
#[utoipa::path(post, path = "/admin/invitations", tag = "admin", security(("bearer" = [])), request_body = InviteRequest,
    responses((status = 201, description = "Invited: the account", body = UserView),
              (status = 400, description = "Not an address, or a bad username or role", body = ErrorBody),
              (status = 404, description = "Mail is not configured", body = ErrorBody),
              (status = 409, description = "Username or address taken", body = ErrorBody)))]
pub(super) async fn invite(
    State(st): State<AppState>,
    admin: AdminUser,
    AppJson(req): AppJson<InviteRequest>,
) -> Result<Response, ApiError> {
    let user = st
        .auth
        .invite(
            &req.email,
            req.roles,
            req.username.as_deref(),
            &admin.caller,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

/// The invitations not yet accepted, oldest first.
#[utoipa::path(get, path = "/admin/invitations", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Pending invitations", body = [InvitationView])))]
pub(super) async fn list_invitations(
    State(st): State<AppState>,
    _admin: AdminUser,
) -> Result<Response, ApiError> {
    let list: Vec<InvitationView> = st
        .auth
        .invitations()
        .await?
        .into_iter()
        .map(|i| InvitationView {
            user_id: i.user_id,
            username: i.username,
            email: i.email,
            created_at: i.created_at,
            expires_at: i.expires_at,
        })
        .collect();
    Ok(Json(list).into_response())
}

/// Withdraws an invitation that was not accepted: the invited account is deleted.
#[utoipa::path(delete, path = "/admin/invitations/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The invited account")),
    responses((status = 204, description = "Withdrawn"), (status = 404, description = "No pending invitation of that account", body = ErrorBody)))]
pub(super) async fn revoke_invitation(
    State(st): State<AppState>,
    admin: AdminUser,
    id: PathId,
) -> Result<Response, ApiError> {
    st.auth.revoke_invitation(id.id()?, &admin.caller).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
