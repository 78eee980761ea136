//! The OAuth endpoints for API-side verifiers and clients: `POST /token` (RFC 6749 §4.3, §6),
//! `POST /revoke` (RFC 7009) and `POST /introspect` (RFC 7662). Bodies are form-encoded where
//! the RFCs say so. The revocation feed is in `feed`.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::client_auth::{authenticate, AnyClientForm, Clients, ConfidentialClientForm, Form};
use super::error::{token_endpoint, ApiError, ErrorBody};
use super::extract::RequestCaller;
use super::session::{client_meta, code_response, token_response};
use super::AppState;
use crate::auth::oidc::DEVICE_GRANT;

/// The second step of a password grant that answered 403 `mfa_required`: `mfa_token` and
/// one of `otp`, `passkey` and `recovery_code` (RFC 6749 §4.5 extension grant).
pub(crate) const MFA_GRANT: &str = "urn:tessera:params:oauth:grant-type:mfa";
use crate::auth::{Caller, ClientId, ClientMeta, Introspection as Found, TokenRequest};
use crate::time::UnixMillis;
use tessera_proto::claims::Audience;
use tessera_proto::introspection::Introspection;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(token))
        .routes(routes!(revoke))
        .routes(routes!(introspect))
}

/// Form parameters of `/token`, as `Form::decode` reads them (a repeated parameter is refused
/// before).
#[derive(Deserialize, ToSchema)]
struct TokenForm {
    /// `authorization_code`, `password`, `refresh_token` or
    /// `urn:ietf:params:oauth:grant-type:device_code`.
    grant_type: String,
    /// The authorization code (`authorization_code`, RFC 6749 §4.1.3).
    #[schema(value_type = Option<String>, format = Password)]
    code: Option<SecretString>,
    /// The PKCE verifier of the code's challenge (RFC 7636 §4.5).
    #[schema(value_type = Option<String>, format = Password)]
    code_verifier: Option<SecretString>,
    /// The redirect URI the code was sent to (RFC 6749 §4.1.3).
    redirect_uri: Option<String>,
    /// The device code (`urn:ietf:params:oauth:grant-type:device_code`, RFC 8628 §3.4).
    #[schema(value_type = Option<String>, format = Password)]
    device_code: Option<SecretString>,
    username: Option<String>,
    #[schema(value_type = Option<String>, format = Password)]
    password: Option<SecretString>,
    #[schema(value_type = Option<String>, format = Password)]
    refresh_token: Option<SecretString>,
    /// The `mfa_token` of a password grant's 403 `mfa_required` answer (`MFA_GRANT`).
    #[schema(value_type = Option<String>, format = Password)]
    mfa_token: Option<SecretString>,
    /// A 6-digit TOTP code (`MFA_GRANT`).
    #[schema(value_type = Option<String>, format = Password)]
    otp: Option<SecretString>,
    /// A recovery code (`MFA_GRANT`).
    #[schema(value_type = Option<String>, format = Password)]
    recovery_code: Option<SecretString>,
    /// MFA grant: a passkey's assertion (the JSON of the browser's `PublicKeyCredential`) for
    /// the challenge of `POST /login/mfa/passkey`.
    #[serde(default)]
    passkey: Option<String>,
    /// Space-separated scopes to ask for (RFC 6749 §3.3); at a refresh, a narrower scope.
    scope: Option<String>,
    /// The API the access token is for (RFC 8707): a `[[resources]]` id, which becomes `aud`.
    resource: Option<String>,
    /// With `client_secret` (client_secret_post), or alone for the public client. Client
    /// authentication (`client_auth::authenticate`) reads these two from the same form.
    #[allow(dead_code)]
    client_id: Option<String>,
    #[allow(dead_code)]
    #[schema(value_type = Option<String>, format = Password)]
    client_secret: Option<SecretString>,
}

/// Form parameters of `/revoke` and `/introspect`, as `Form::decode` reads them (the client's
/// own, for client_secret_post, are `ClientForm`'s).
#[derive(Deserialize, ToSchema)]
struct TokenParam {
    #[schema(value_type = String, format = Password)]
    token: SecretString,
    /// `access_token` or `refresh_token`; only orders the lookups.
    token_type_hint: Option<String>,
}

/// RFC 6749 token endpoint: the authorization code (§4.1.3, with PKCE), password (§4.3) and
/// refresh_token (§6) grants.
#[utoipa::path(post, path = "/token", tag = "oauth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("basic" = [])),
    responses(
        (status = 200, description = "RFC 6749 §5.1 response", body = super::session::TokenResponse),
        (status = 400, description = "invalid_request, invalid_grant or unsupported_grant_type", body = ErrorBody),
        (status = 401, description = "invalid_client", body = ErrorBody),
        (status = 429, description = "slow_down", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
async fn token(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // Not the `ClientForm` extractor: an unsupported grant type is answered before the client
    // is authenticated.
    let form = Form::parse(&headers, body)?;
    let t: TokenForm = form.decode()?;
    let grant = t.grant_type.as_str();
    if !matches!(
        grant,
        "password" | "refresh_token" | "authorization_code" | DEVICE_GRANT | MFA_GRANT
    ) {
        return Err(ApiError::UnsupportedGrantType);
    }
    let client = authenticate(&st, &headers, Some(&form), Clients::Any, &caller).await?;
    // The second step of a password grant is open to the clients that may use the first.
    let checked = if grant == MFA_GRANT {
        "password"
    } else {
        grant
    };
    st.auth.check_grant(&client, checked)?;
    let peer = peer.map(|Extension(ConnectInfo(p))| p);
    let meta = || client_meta(&st, &headers, peer);
    match grant {
        MFA_GRANT => mfa_grant(&st, t, meta(), &client, &caller).await,
        "authorization_code" => code_grant(&st, t, meta(), &client, &caller).await,
        DEVICE_GRANT => {
            let code = t.device_code.ok_or_else(|| missing("device_code"))?;
            let granted = st.auth.poll_device(&code, &client, meta(), &caller).await;
            Ok(code_response(&granted.map_err(token_endpoint)?))
        }
        "password" | "refresh_token" => {
            // RFC 6749 §3.3 and RFC 8707 §2; repeated, different resources are refused here,
            // after client authentication.
            let req = TokenRequest {
                scope: t.scope,
                resource: form.resource()?.and(t.resource),
            };
            // Same code as /login and /refresh; only the status of invalid_grant differs (§5.2).
            let pair = if grant == "password" {
                let username = t.username.ok_or_else(|| missing("username"))?;
                let password = t.password.ok_or_else(|| missing("password"))?;
                st.auth
                    .login(&username, password, meta(), &client, &req, &caller)
                    .await
            } else {
                let rt = t.refresh_token.ok_or_else(|| missing("refresh_token"))?;
                st.auth.refresh(rt, &client, &req, &caller).await
            };
            Ok(token_response(&pair.map_err(token_endpoint)?))
        }
        _ => Err(ApiError::UnsupportedGrantType),
    }
}

/// `invalid_request` for a grant's missing parameter `p`.
fn missing(p: &str) -> ApiError {
    ApiError::InvalidRequest(format!("missing {p}"))
}

/// The second step of a password grant (`MFA_GRANT`): the `mfa_token` and one factor.
async fn mfa_grant(
    st: &AppState,
    t: TokenForm,
    meta: ClientMeta,
    client: &ClientId,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let mfa_token = t.mfa_token.ok_or_else(|| missing("mfa_token"))?;
    let factor = super::mfa::one_factor(
        t.otp,
        t.recovery_code,
        t.passkey,
        ("otp", "recovery_code", "passkey"),
    )?;
    let pair = st
        .auth
        .complete_mfa(&mfa_token, factor, meta, client, caller)
        .await
        .map_err(token_endpoint)?;
    Ok(token_response(&pair))
}

/// The authorization code grant (RFC 6749 §4.1.3, with the PKCE verifier of RFC 7636 §4.5).
async fn code_grant(
    st: &AppState,
    t: TokenForm,
    meta: ClientMeta,
    client: &ClientId,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let code = t.code.ok_or_else(|| missing("code"))?;
    let verifier = t.code_verifier.as_ref().map(|v| v.expose_secret());
    let granted = st
        .auth
        .exchange_code(
            &code,
            verifier,
            t.redirect_uri.as_deref(),
            client,
            meta,
            caller,
        )
        .await
        .map_err(token_endpoint)?;
    Ok(code_response(&granted))
}

/// RFC 7009 revocation of a refresh or access token. Unknown tokens also get 200.
#[utoipa::path(post, path = "/revoke", tag = "oauth",
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    security((), ("basic" = [])),
    responses(
        (status = 200, description = "Revoked (or unknown)"),
        (status = 400, description = "Missing token", body = ErrorBody),
        (status = 401, description = "Wrong client credentials", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
async fn revoke(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    AnyClientForm { client, form, .. }: AnyClientForm,
) -> Result<Response, ApiError> {
    let p: TokenParam = form.decode()?;
    let token = p.token;
    st.auth
        .revoke(&token, p.token_type_hint.as_deref(), &client, &caller)
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// RFC 7662 introspection, for authenticated clients. Inactive tokens get exactly
/// `{"active":false}`. §4 leaves to the server which tokens a caller may introspect: the
/// operator's own confidential clients (APIs, resource servers) any token; a client the user
/// consented to only the tokens issued to it (another client's token is `{"active":false}`
/// to it, as an unknown one). What it says of the user follows `/userinfo`: `username` and
/// `roles` for the tokens of the operator's own clients; for a client the user consented to,
/// `username` only with the `profile` scope, and never the roles.
#[utoipa::path(post, path = "/introspect", tag = "oauth",
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    security(("basic" = [])),
    responses(
        (status = 200, description = "The token's state (RFC 7662 §2.2)", body = Introspection),
        (status = 400, description = "Missing token", body = ErrorBody),
        (status = 401, description = "Client authentication failed", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
async fn introspect(
    State(st): State<AppState>,
    ConfidentialClientForm { form, client }: ConfidentialClientForm,
) -> Result<Response, ApiError> {
    let p: TokenParam = form.decode()?;
    let token = p.token;
    let t = &st.settings.tokens;
    let found = st
        .auth
        .introspect(&token, p.token_type_hint.as_deref(), &client)
        .await?;
    let body = match found {
        None => Introspection::inactive(),
        Some(Found::Access(a)) => {
            let c = &a.claims.claims;
            let may = st
                .auth
                .disclosure(c.client_id.as_deref(), c.scope.as_deref());
            let (own, profile) = (may.own, may.own || may.profile);
            Introspection {
                active: true,
                token_type: Some("Bearer".into()),
                sub: Some(a.claims.user_id.to_string()),
                username: profile.then(|| a.user.username.clone()),
                exp: Some(c.exp),
                iat: Some(c.iat),
                nbf: Some(c.nbf),
                jti: Some(c.jti.to_string()),
                sid: Some(a.claims.session_id.to_string()),
                aud: Some(c.aud.clone().into_owned()),
                iss: Some(t.issuer.clone()),
                client_id: Some(c.client_id.as_ref().map(|id| id.to_string())),
                // `mfa.required_for_roles`: the roles the token itself carries.
                roles: own.then(|| {
                    let amr = c.amr.as_ref().map(|amr| amr.iter().map(|m| m.as_ref()));
                    st.auth.roles_in_token(&a.user.roles, amr)
                }),
                scope: c.scope.as_ref().map(|s| s.to_string()),
            }
        }
        Some(Found::Refresh(b)) => {
            let (session, user) = *b;
            let may = st
                .auth
                .disclosure(Some(&session.client_id), session.scope.as_deref());
            let profile = may.own || may.profile;
            Introspection {
                active: true,
                token_type: Some("refresh_token".into()),
                sub: Some(user.id.to_string()),
                username: profile.then_some(user.username),
                exp: Some(secs(
                    session.idle_expires_at.min(session.absolute_expires_at),
                )),
                iat: Some(secs(session.last_refreshed_at)),
                sid: Some(session.id.to_string()),
                aud: Some(Audience::One(
                    session
                        .resource
                        .unwrap_or_else(|| t.audience.clone())
                        .into(),
                )),
                iss: Some(t.issuer.clone()),
                client_id: Some(Some(session.client_id)),
                scope: session.scope,
                ..Introspection::default()
            }
        }
    };
    Ok(Json(body).into_response())
}

/// A stored time (ms) as a JWT `NumericDate` (whole seconds).
fn secs(ms: i64) -> i64 {
    UnixMillis(ms).as_secs()
}
