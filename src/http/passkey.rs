//! Passkeys over HTTP (WebAuthn, through `auth::passkey`): adding one with the user's bearer
//! token, the assertion options of a password login's second step, and passwordless login.
//! Each ceremony is two calls: options (`{"publicKey": {...}}`, for the browser's
//! `PublicKeyCredential.parseCreationOptionsFromJSON` / `parseRequestOptionsFromJSON`), then the
//! credential (its `toJSON()`) with the ceremony id.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::csrf::Missing;
use super::error::{ApiError, ErrorBody};
use super::extract::{AppJson, Bearer, OptionalJson, RequestCaller};
use super::mfa::{me, FactorBody, FactorName};
use super::session::{client_meta, session_response};
use super::AppState;
use crate::auth::passkey::PasskeyCeremony;
use crate::auth::TokenRequest;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_registration))
        .routes(routes!(finish_registration))
        .routes(routes!(second_factor_options))
        .routes(routes!(passwordless_options))
        .routes(routes!(passwordless_login))
}

/// The first call of a ceremony: its id, to send back with the credential, and the options.
#[derive(Serialize, ToSchema)]
pub struct CeremonyBody {
    /// Opaque; names the challenge (valid for `webauthn.ceremony_ttl`, once).
    ceremony: String,
    /// `PublicKeyCredentialCreationOptionsJSON` or `PublicKeyCredentialRequestOptionsJSON`
    /// (WebAuthn Level 3 §5.1.8, §5.1.9): byte fields are base64url.
    #[serde(rename = "publicKey")]
    #[schema(value_type = Object)]
    public_key: serde_json::Value,
    /// `conditional` for a passwordless login (the browser's autofill).
    #[serde(skip_serializing_if = "Option::is_none")]
    mediation: Option<serde_json::Value>,
}

impl From<PasskeyCeremony> for CeremonyBody {
    fn from(c: PasskeyCeremony) -> Self {
        let mut options = c.options;
        CeremonyBody {
            ceremony: c.ceremony,
            public_key: options
                .get_mut("publicKey")
                .map(serde_json::Value::take)
                .unwrap_or_default(),
            mediation: options.get_mut("mediation").map(serde_json::Value::take),
        }
    }
}

/// The second call of a ceremony.
#[derive(Deserialize, ToSchema)]
pub struct CredentialRequest {
    /// From the first call.
    ceremony: String,
    /// The browser's `PublicKeyCredential`, as its `toJSON()` gives it.
    #[schema(value_type = Object)]
    credential: serde_json::Value,
}

/// A passwordless login's credential, and what to ask for as at `/login`.
#[derive(Deserialize, ToSchema)]
pub struct PasskeyLoginRequest {
    /// From `POST /login/passkey/options`.
    ceremony: String,
    /// The browser's `PublicKeyCredential` (an assertion), as its `toJSON()` gives it.
    #[schema(value_type = Object)]
    credential: serde_json::Value,
    /// Space-separated scopes (RFC 6749 §3.3), as at `/login`.
    #[serde(default)]
    scope: Option<String>,
    /// The API the access token is for (RFC 8707), as at `/login`.
    #[serde(default)]
    resource: Option<String>,
}

/// The `mfa_token` of a password login waiting for its second factor.
#[derive(Deserialize, ToSchema)]
pub struct MfaTokenRequest {
    #[schema(value_type = String)]
    mfa_token: SecretString,
}

/// A new passkey, and the recovery codes when it is the caller's first factor (shown once).
#[derive(Serialize, ToSchema)]
pub struct PasskeyAddedBody<'a> {
    factor: FactorBody,
    recovery_codes: Option<Vec<&'a str>>,
}

/// Starts adding a passkey: the creation options (a discoverable credential, user
/// verification required, the caller's passkeys excluded). Needs a login within
/// `mfa.reauth_within`.
#[utoipa::path(post, path = "/me/factors/passkey", tag = "mfa", security(("bearer" = [])),
    request_body(content = Option<FactorName>),
    responses(
        (status = 200, description = "The ceremony and the options for navigator.credentials.create", body = CeremonyBody),
        (status = 400, description = "A name too long", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked token, or insufficient_user_authentication (log in again first)", body = ErrorBody),
        (status = 403, description = "A third-party client's token", body = ErrorBody),
        (status = 404, description = "Passkeys are not enabled (webauthn.rp_id)", body = ErrorBody),
    ))]
async fn start_registration(
    State(st): State<AppState>,
    bearer: Bearer,
    body: OptionalJson,
) -> Result<Response, ApiError> {
    let who = me(&st, bearer).await?;
    let name: FactorName = body.parse()?;
    let since = st.auth.login_time(who.claims.session_id).await?;
    let c = st
        .auth
        .start_passkey_registration(who.user.id, name.name.as_deref(), since)
        .await?;
    Ok(axum::Json(CeremonyBody::from(c)).into_response())
}

/// Finishes adding a passkey with the authenticator's answer. The caller's other sessions
/// end; the first factor's answer carries ten recovery codes, shown once.
#[utoipa::path(post, path = "/me/factors/passkey/finish", tag = "mfa", security(("bearer" = [])),
    request_body = CredentialRequest,
    responses(
        (status = 201, description = "Added", body = PasskeyAddedBody),
        (status = 400, description = "An unknown, used or expired ceremony, or an answer that does not verify (origin, RP ID, challenge, user verification)", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked token, or insufficient_user_authentication", body = ErrorBody),
        (status = 409, description = "The passkey is registered already", body = ErrorBody),
    ))]
async fn finish_registration(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    bearer: Bearer,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // The caller first: without a valid token the answer is 401 whatever the body is.
    let who = me(&st, bearer).await?;
    let req: CredentialRequest = serde_json::from_slice(&body).map_err(|_| {
        ApiError::InvalidRequest(
            "the body is not a JSON object with ceremony and credential".into(),
        )
    })?;
    let since = st.auth.login_time(who.claims.session_id).await?;
    let added = st
        .auth
        .finish_passkey_registration(
            who.user.id,
            &req.ceremony,
            &req.credential.to_string(),
            since,
            who.claims.session_id,
            &caller,
        )
        .await?;
    let body = PasskeyAddedBody {
        factor: added.factor.into(),
        recovery_codes: added
            .recovery_codes
            .as_ref()
            .map(|c| c.iter().map(|c| c.expose_secret()).collect()),
    };
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// The assertion options for completing a password login with a passkey; then
/// `POST /login/mfa` with `mfa_token` and `passkey` (or, for the password grant, `/token` with
/// the MFA grant and `passkey`). A second call replaces the challenge.
#[utoipa::path(post, path = "/login/mfa/passkey", tag = "session", request_body = MfaTokenRequest,
    responses(
        (status = 200, description = "{\"publicKey\": PublicKeyCredentialRequestOptionsJSON}", body = Object),
        (status = 401, description = "invalid_grant: an unknown, used or expired mfa_token", body = ErrorBody),
        (status = 404, description = "The account has no passkey, or passkeys are not enabled", body = ErrorBody),
    ))]
async fn second_factor_options(
    State(st): State<AppState>,
    AppJson(req): AppJson<MfaTokenRequest>,
) -> Result<Response, ApiError> {
    let options = st
        .auth
        .second_factor_passkey_options(&req.mfa_token)
        .await?;
    Ok(axum::Json(options).into_response())
}

/// The options of a passwordless login: a challenge for any discoverable passkey of this
/// relying party (`mediation: conditional` for the browser's autofill).
#[utoipa::path(post, path = "/login/passkey/options", tag = "session",
    responses(
        (status = 200, description = "The ceremony and the options for navigator.credentials.get", body = CeremonyBody),
        (status = 404, description = "Passkeys are not enabled", body = ErrorBody),
    ))]
async fn passwordless_options(
    State(st): State<AppState>,
    // Read and ignored (`{}` or nothing), so that the connection stays usable.
    _body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let c = st.auth.passwordless_options().await?;
    Ok(axum::Json(CeremonyBody::from(c)).into_response())
}

/// Passwordless login with a passkey: the same answer as `/login` (cookie mode included), with
/// `amr` `hwk user mfa` (or `swk user mfa` for a synced passkey) and `acr` "3".
#[utoipa::path(post, path = "/login/passkey", tag = "session", request_body = PasskeyLoginRequest,
    responses(
        (status = 200, description = "Logged in", body = super::session::TokenResponse),
        (status = 400, description = "Malformed request or credential", body = ErrorBody),
        (status = 401, description = "invalid_grant: an unknown, used or expired ceremony, an unknown passkey, or an assertion that does not verify (one body)", body = ErrorBody),
        (status = 403, description = "Cookie mode: the request names an origin that is not allowed", body = ErrorBody),
        (status = 404, description = "Passkeys are not enabled", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
async fn passwordless_login(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    AppJson(req): AppJson<PasskeyLoginRequest>,
) -> Result<Response, ApiError> {
    if st.settings.sessions.refresh_cookie {
        st.allowed_origins.check(&headers, Missing::Allow)?;
    }
    let meta = client_meta(&st, &headers, peer.map(|Extension(ConnectInfo(p))| p));
    let pair = st
        .auth
        .login_with_passkey(
            &req.ceremony,
            &req.credential.to_string(),
            meta,
            &st.auth.first_party(),
            &TokenRequest {
                scope: req.scope,
                resource: req.resource,
            },
            &caller,
        )
        .await?;
    Ok(session_response(&st, &pair))
}
