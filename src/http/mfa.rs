//! Second factors over HTTP: the second step of a password login (`POST /login/mfa`), and the
//! user's own factors (`/me/factors`, `/me/recovery_codes`), with their bearer token.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::admin::PathId;
use super::csrf::Missing;
use super::error::{ApiError, ErrorBody};
use super::extract::{AppJson, Bearer, OptionalJson, RequestCaller};
use super::session::{client_meta, session_response};
use super::AppState;
use crate::auth::mfa::{FactorInfo, SecondFactor};
use crate::auth::Authenticated;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login_mfa))
        .routes(routes!(list_factors))
        .routes(routes!(enrol_totp))
        .routes(routes!(confirm_factor))
        .routes(routes!(rename_factor, remove_factor))
        .routes(routes!(regenerate_recovery_codes))
}

/// The second step of a password login: the `mfa_token` of the 403 `mfa_required` answer and
/// exactly one second factor.
#[derive(Deserialize, ToSchema)]
pub struct MfaLoginRequest {
    #[schema(value_type = String)]
    mfa_token: SecretString,
    /// A 6-digit TOTP code (RFC 6238).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    totp_code: Option<SecretString>,
    /// One of the user's recovery codes (case, spaces and dashes do not matter).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    recovery_code: Option<SecretString>,
    /// A passkey's assertion for the challenge of `POST /login/mfa/passkey`: the browser's
    /// `PublicKeyCredential`, as its `toJSON()` gives it (WebAuthn Level 3).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    passkey: Option<serde_json::Value>,
}

/// The second factor of a request that names exactly one; `names` are the request's own
/// field names for the three (for the error).
pub(crate) fn one_factor(
    totp: Option<SecretString>,
    recovery: Option<SecretString>,
    passkey: Option<String>,
    names: (&str, &str, &str),
) -> Result<SecondFactor, ApiError> {
    match (totp, recovery, passkey) {
        (Some(c), None, None) => Ok(SecondFactor::Totp(c)),
        (None, Some(c), None) => Ok(SecondFactor::RecoveryCode(c)),
        (None, None, Some(c)) => Ok(SecondFactor::Passkey(c)),
        _ => Err(ApiError::InvalidRequest(format!(
            "give exactly one of {}, {} and {}",
            names.0, names.1, names.2
        ))),
    }
}

/// Completes a password login with a second factor: the same answer as `/login` (cookie mode
/// included). An `mfa_token` works once, for five wrong factors at most, within `mfa.token_ttl`;
/// wrong factors are throttled per account like passwords.
#[utoipa::path(post, path = "/login/mfa", tag = "session", request_body = MfaLoginRequest,
    responses(
        (status = 200, description = "Logged in (amr pwd otp mfa with TOTP, pwd hwk user mfa or pwd swk user mfa with a passkey, pwd mfa with a recovery code)", body = super::session::TokenResponse),
        (status = 400, description = "Malformed request, or not exactly one factor", body = ErrorBody),
        (status = 401, description = "invalid_grant: a wrong, replayed or used factor, or an unknown, used or expired mfa_token (one body)", body = ErrorBody),
        (status = 403, description = "Cookie mode: the request names an origin that is not allowed", body = ErrorBody),
        (status = 429, description = "Too many wrong factors; see Retry-After", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
async fn login_mfa(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    AppJson(req): AppJson<MfaLoginRequest>,
) -> Result<Response, ApiError> {
    if st.settings.sessions.refresh_cookie {
        st.allowed_origins.check(&headers, Missing::Allow)?;
    }
    let factor = one_factor(
        req.totp_code,
        req.recovery_code,
        req.passkey.map(|p| p.to_string()),
        ("totp_code", "recovery_code", "passkey"),
    )?;
    let meta = client_meta(&st, &headers, peer.map(|Extension(ConnectInfo(p))| p));
    let pair = st
        .auth
        .complete_mfa(
            &req.mfa_token,
            factor,
            meta,
            &st.auth.first_party(),
            &caller,
        )
        .await?;
    Ok(session_response(&st, &pair))
}

/// The caller of a self-service request: a valid token of one of the operator's own clients
/// (a third-party client may not manage the user's factors).
pub(crate) async fn me(st: &AppState, bearer: Bearer) -> Result<Authenticated, ApiError> {
    let token = bearer.0.ok_or(ApiError::MissingToken)?;
    let who = st.auth.authenticate(&token).await?;
    if !st
        .auth
        .trusted_client(who.claims.claims.client_id.as_deref())
    {
        return Err(ApiError::Forbidden);
    }
    Ok(who)
}

/// A factor, as listed.
#[derive(Serialize, ToSchema)]
pub struct FactorBody {
    id: Uuid,
    /// `totp` or `passkey`.
    kind: String,
    name: String,
    /// Only confirmed factors count at login.
    confirmed: bool,
    /// Unix seconds.
    created_at: i64,
    /// Unix seconds.
    last_used_at: Option<i64>,
    /// A passkey's backup eligibility (a synced passkey) and backup state, as last seen;
    /// absent for TOTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    backup_eligible: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backup_state: Option<bool>,
}

impl From<FactorInfo> for FactorBody {
    fn from(f: FactorInfo) -> Self {
        FactorBody {
            id: f.id,
            kind: f.kind,
            name: f.name,
            confirmed: f.confirmed,
            created_at: f.created_at,
            last_used_at: f.last_used_at,
            backup_eligible: f.backup_eligible,
            backup_state: f.backup_state,
        }
    }
}

/// The caller's factors and how many unused recovery codes they have.
#[derive(Serialize, ToSchema)]
pub struct FactorsBody {
    factors: Vec<FactorBody>,
    recovery_codes_left: i64,
}

/// Lists the caller's second factors.
#[utoipa::path(get, path = "/me/factors", tag = "mfa", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's factors, oldest first", body = FactorsBody),
        (status = 401, description = "Missing, invalid or revoked token", body = ErrorBody),
        (status = 403, description = "A third-party client's token", body = ErrorBody),
    ))]
async fn list_factors(State(st): State<AppState>, bearer: Bearer) -> Result<Response, ApiError> {
    let who = me(&st, bearer).await?;
    Ok(axum::Json(factors_body(&st, who.user.id).await?).into_response())
}

/// A user's factors and unused recovery codes (also the admin API's answer).
pub(crate) async fn factors_body(st: &AppState, user_id: Uuid) -> Result<FactorsBody, ApiError> {
    let factors = st.auth.factors(user_id).await?;
    let left = st.auth.recovery_codes_left(user_id).await?;
    Ok(FactorsBody {
        factors: factors.into_iter().map(FactorBody::from).collect(),
        recovery_codes_left: left,
    })
}

/// A name for a factor.
#[derive(Deserialize, ToSchema, Default)]
pub struct FactorName {
    /// 1 to 64 characters.
    #[serde(default)]
    pub(crate) name: Option<String>,
}

/// A new TOTP factor, shown once.
#[derive(Serialize, ToSchema)]
pub struct TotpEnrolmentBody<'a> {
    id: Uuid,
    /// The shared secret, base32 (RFC 4648).
    secret: &'a str,
    /// The `otpauth://totp/…` URI authenticator apps scan.
    otpauth_uri: &'a str,
    /// The URI as a QR code (an SVG document).
    qr_svg: &'a str,
}

/// Starts a TOTP enrolment: the secret is shown once here; the factor counts only after a
/// valid code confirms it (`POST /me/factors/{id}/confirm`).
#[utoipa::path(post, path = "/me/factors/totp", tag = "mfa", security(("bearer" = [])),
    request_body(content = Option<FactorName>),
    responses(
        (status = 201, description = "Enrolled, unconfirmed", body = TotpEnrolmentBody),
        (status = 400, description = "A name too long", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked token", body = ErrorBody),
        (status = 403, description = "A third-party client's token", body = ErrorBody),
    ))]
async fn enrol_totp(
    State(st): State<AppState>,
    bearer: Bearer,
    body: OptionalJson,
) -> Result<Response, ApiError> {
    let who = me(&st, bearer).await?;
    let name: FactorName = body.parse()?;
    let e = st
        .auth
        .enrol_totp(who.user.id, name.name.as_deref())
        .await?;
    let body = TotpEnrolmentBody {
        id: e.factor_id,
        secret: e.secret.expose_secret(),
        otpauth_uri: e.otpauth_uri.expose_secret(),
        qr_svg: e.qr_svg.expose_secret(),
    };
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// A code that confirms a factor.
#[derive(Deserialize, ToSchema)]
pub struct ConfirmRequest {
    /// A current 6-digit code from the app.
    #[schema(value_type = String)]
    code: SecretString,
}

/// Confirms a TOTP factor with a valid code. The first factor's answer carries ten recovery
/// codes, shown once. The caller's other sessions end.
#[utoipa::path(post, path = "/me/factors/{id}/confirm", tag = "mfa", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The factor")),
    request_body = ConfirmRequest,
    responses(
        (status = 200, description = "Confirmed: {\"confirmed\":true,\"recovery_codes\":[…]|null}", body = Object),
        (status = 401, description = "A wrong code (invalid_grant), a login older than mfa.reauth_within (insufficient_user_authentication), or a missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such unconfirmed factor of the caller", body = ErrorBody),
    ))]
async fn confirm_factor(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    bearer: Bearer,
    id: PathId,
    AppJson(req): AppJson<ConfirmRequest>,
) -> Result<Response, ApiError> {
    let who = me(&st, bearer).await?;
    let id = id.id()?;
    let since = st.auth.login_time(who.claims.session_id).await?;
    let codes = st
        .auth
        .confirm_totp(
            who.user.id,
            id,
            &req.code,
            since,
            who.claims.session_id,
            &caller,
        )
        .await?;
    let codes: Option<Vec<&str>> = codes
        .as_ref()
        .map(|c| c.iter().map(|c| c.expose_secret()).collect());
    Ok(axum::Json(json!({ "confirmed": true, "recovery_codes": codes })).into_response())
}

/// Renames one of the caller's factors.
#[utoipa::path(patch, path = "/me/factors/{id}", tag = "mfa", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The factor")),
    request_body = FactorName,
    responses(
        (status = 204, description = "Renamed"),
        (status = 400, description = "No name, or one too long", body = ErrorBody),
        (status = 404, description = "No such factor of the caller", body = ErrorBody),
    ))]
async fn rename_factor(
    State(st): State<AppState>,
    bearer: Bearer,
    id: PathId,
    AppJson(req): AppJson<FactorName>,
) -> Result<Response, ApiError> {
    let who = me(&st, bearer).await?;
    let id = id.id()?;
    let name = req
        .name
        .ok_or_else(|| ApiError::InvalidRequest("missing name".into()))?;
    st.auth.rename_factor(who.user.id, id, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Removes one of the caller's factors. Needs a login within `mfa.reauth_within`; the
/// caller's other sessions end.
#[utoipa::path(delete, path = "/me/factors/{id}", tag = "mfa", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The factor")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "insufficient_user_authentication: log in again first (RFC 9470)", body = ErrorBody),
        (status = 404, description = "No such factor of the caller", body = ErrorBody),
    ))]
async fn remove_factor(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    bearer: Bearer,
    id: PathId,
) -> Result<Response, ApiError> {
    let who = me(&st, bearer).await?;
    let id = id.id()?;
    let since = st.auth.login_time(who.claims.session_id).await?;
    st.auth
        .remove_factor(who.user.id, id, since, who.claims.session_id, &caller)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A new set of ten recovery codes, shown once; the old set stops working. Needs a confirmed
/// factor and a login within `mfa.reauth_within`.
#[utoipa::path(post, path = "/me/recovery_codes", tag = "mfa", security(("bearer" = [])),
    responses(
        (status = 200, description = "{\"recovery_codes\":[…]}", body = Object),
        (status = 401, description = "insufficient_user_authentication: log in again first (RFC 9470)", body = ErrorBody),
        (status = 404, description = "The caller has no confirmed factor", body = ErrorBody),
    ))]
async fn regenerate_recovery_codes(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    bearer: Bearer,
) -> Result<Response, ApiError> {
    let who = me(&st, bearer).await?;
    let since = st.auth.login_time(who.claims.session_id).await?;
    let codes = st
        .auth
        .regenerate_recovery_codes(who.user.id, since, &caller)
        .await?;
    let codes: Vec<&str> = codes.iter().map(|c| c.expose_secret()).collect();
    Ok(axum::Json(json!({ "recovery_codes": codes })).into_response())
}
