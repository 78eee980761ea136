//! `POST /par`: pushed authorization requests (RFC 9126), for confidential clients.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::client_auth::ConfidentialClientForm;
use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::auth::oidc::AuthorizeParams;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(push))
}

/// The authorization parameters, as `/authorize` takes them (RFC 9126 §2.1), and the client's
/// credentials (`client_secret_post`) or HTTP Basic.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
struct PushedForm {
    response_type: String,
    client_id: Option<String>,
    redirect_uri: String,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: String,
    /// `S256`.
    code_challenge_method: String,
    response_mode: Option<String>,
    prompt: Option<String>,
    max_age: Option<String>,
    login_hint: Option<String>,
    ui_locales: Option<String>,
    acr_values: Option<String>,
    resource: Option<String>,
    #[schema(value_type = Option<String>, format = Password)]
    client_secret: Option<String>,
}

/// RFC 9126 §2.2.
#[derive(Serialize, ToSchema)]
struct PushedResponse {
    /// `urn:ietf:params:oauth:request_uri:…`, for `/authorize?client_id=…&request_uri=…`.
    request_uri: String,
    /// Seconds.
    expires_in: i64,
}

/// Pushes an authorization request: it is checked as `/authorize` would check it, and its
/// one-time `request_uri` is valid for 60 s.
#[utoipa::path(post, path = "/par", tag = "oauth",
    request_body(content = PushedForm, content_type = "application/x-www-form-urlencoded"),
    security(("basic" = [])),
    responses(
        (status = 201, description = "RFC 9126 §2.2 response", body = PushedResponse),
        (status = 400, description = "invalid_request, invalid_scope, unauthorized_client, … (RFC 9126 §2.3)", body = ErrorBody),
        (status = 401, description = "Client authentication failed", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
async fn push(
    State(st): State<AppState>,
    ConfidentialClientForm { form, client, .. }: ConfidentialClientForm,
) -> Result<Response, ApiError> {
    let get = |name: &str| form.get(name).map(str::to_string);
    let params = AuthorizeParams {
        client_id: get("client_id"),
        redirect_uri: get("redirect_uri"),
        response_type: get("response_type"),
        response_mode: get("response_mode"),
        scope: get("scope"),
        state: get("state"),
        nonce: get("nonce"),
        code_challenge: get("code_challenge"),
        code_challenge_method: get("code_challenge_method"),
        prompt: get("prompt"),
        max_age: get("max_age"),
        login_hint: get("login_hint"),
        id_token_hint: get("id_token_hint"),
        ui_locales: get("ui_locales"),
        acr_values: get("acr_values"),
        resource: form.resource()?.map(str::to_string),
        request: get("request"),
        request_uri: get("request_uri"),
    };
    let pushed = st.auth.push_authorization_request(&client, params).await?;
    let body = PushedResponse {
        request_uri: pushed.request_uri,
        expires_in: pushed.expires_in,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
