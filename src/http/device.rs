//! `POST /device_authorization` (RFC 8628 §3.1): a device asks for a device code and a user
//! code. The device then polls `/token` with `grant_type=urn:ietf:params:oauth:grant-type:
//! device_code`, and the user answers on the hosted page `/device`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::client_auth::AnyClientForm;
use super::error::{ApiError, ErrorBody};
use super::extract::RequestCaller;
use super::AppState;
use crate::auth::TokenRequest;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(device_authorization))
}

/// The request (RFC 8628 §3.1): the client (`client_id` for a public client, or its
/// credentials), `scope` and `resource`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
struct DeviceForm {
    client_id: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
    #[schema(value_type = Option<String>, format = Password)]
    client_secret: Option<String>,
}

/// RFC 8628 §3.2.
#[derive(Serialize, ToSchema)]
struct DeviceResponse<'a> {
    /// For the device's polls at `/token`.
    device_code: &'a str,
    /// What the user types at `verification_uri`: 8 letters, shown as `XXXX-XXXX`.
    user_code: &'a str,
    verification_uri: String,
    /// `verification_uri` with the user code filled in (for a QR code).
    verification_uri_complete: String,
    /// Seconds.
    expires_in: i64,
    /// Seconds between polls.
    interval: i64,
}

/// Starts a device authorization for a client allowed the device grant.
#[utoipa::path(post, path = "/device_authorization", tag = "oauth",
    request_body(content = DeviceForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("basic" = [])),
    responses(
        (status = 200, description = "RFC 8628 §3.2 response", body = DeviceResponse),
        (status = 400, description = "invalid_request, invalid_scope, invalid_target, unauthorized_client", body = ErrorBody),
        (status = 401, description = "Client authentication failed", body = ErrorBody),
        (status = 429, description = "slow_down: too many device authorizations from this address (throttle.device_requests); see Retry-After", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
async fn device_authorization(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    AnyClientForm { form, client, .. }: AnyClientForm,
) -> Result<Response, ApiError> {
    let req = TokenRequest {
        scope: form.get("scope").map(str::to_string),
        resource: form.resource()?.map(str::to_string),
    };
    let d = st.auth.device_authorization(&client, &req, &caller).await?;
    let iss = st.settings.tokens.issuer.trim_end_matches('/');
    let verification_uri = format!("{iss}/device");
    let body = DeviceResponse {
        device_code: d.device_code.expose_secret(),
        user_code: &d.user_code,
        verification_uri_complete: format!("{verification_uri}?user_code={}", d.user_code),
        verification_uri,
        expires_in: d.expires_in,
        interval: d.interval,
    };
    Ok(Json(body).into_response())
}
