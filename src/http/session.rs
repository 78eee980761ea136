//! `POST /login`, `POST /refresh` and `POST /logout`.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::csrf::Missing;
use super::error::{ApiError, ErrorBody};
use super::extract::{AppJson, Bearer, RequestCaller};
use super::AppState;
use crate::auth::{ClientMeta, TokenPair, TokenRequest};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
}

/// Credentials for `/login`.
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    username: String,
    /// At most 1024 bytes.
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    /// Space-separated scopes to ask for (RFC 6749 §3.3); `tokens.scopes` says which may be
    /// granted.
    #[serde(default)]
    scope: Option<String>,
    /// The API the access token is for (RFC 8707): a `[[resources]]` id, which becomes `aud`.
    #[serde(default)]
    resource: Option<String>,
}

/// The body of `/refresh` and `/logout`, as `body_token` parses it: the refresh token, which
/// `/refresh` needs unless the `__Host-tessera_refresh` cookie carries it (cookie mode). An
/// empty body, `null` and `{}` carry none.
#[derive(Deserialize, ToSchema)]
pub struct SessionTokenRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    refresh_token: Option<SecretString>,
}

/// The RFC 6749 §5.1 token response. In cookie mode `/login` and `/refresh` leave out
/// `refresh_token`: it is in the `__Host-tessera_refresh` cookie instead.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    /// Seconds until the refresh token expires if unused; with the refresh token only.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_expires_in: Option<i64>,
    /// The granted scope, when one was asked for (RFC 6749 §5.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    /// The ID token, for a code exchange that was granted `openid` (OIDC Core §3.1.3.3).
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<&'a str>,
}

/// The answer of a code exchange: the pair, the refresh token only when the client gets one,
/// and the ID token.
pub fn code_response(g: &crate::auth::oidc::CodeGrant) -> Response {
    let refresh = g.refresh.then(|| g.pair.refresh_token.expose_secret());
    let body = TokenResponse {
        access_token: g.pair.access_token.expose_secret(),
        token_type: "Bearer",
        expires_in: g.pair.expires_in,
        refresh_token: refresh,
        refresh_expires_in: g.refresh.then_some(g.pair.refresh_expires_in),
        scope: g.pair.scope.as_deref(),
        id_token: g.id_token.as_ref().map(|t| t.expose_secret()),
    };
    let mut res = axum::Json(body).into_response();
    res.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// Serialises a token pair (RFC 6749 §5.1; the edge adds `Cache-Control: no-store`).
pub fn token_response(pair: &TokenPair) -> Response {
    token_body(pair, Some(pair.refresh_token.expose_secret()))
}

/// The answer of `/login` and `/refresh`: in cookie mode the refresh token goes into the
/// cookie and not into the body, where a script could read it.
pub(crate) fn session_response(st: &AppState, pair: &TokenPair) -> Response {
    if !st.settings.sessions.refresh_cookie {
        return token_response(pair);
    }
    let mut res = token_body(pair, None);
    set_refresh_cookie(&mut res, pair);
    res
}

fn token_body(pair: &TokenPair, refresh_token: Option<&str>) -> Response {
    let body = TokenResponse {
        access_token: pair.access_token.expose_secret(),
        token_type: "Bearer",
        expires_in: pair.expires_in,
        refresh_token,
        refresh_expires_in: Some(pair.refresh_expires_in),
        scope: pair.scope.as_deref(),
        id_token: None,
    };
    let mut res = axum::Json(body).into_response();
    res.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// Where a login comes from: the user agent, and the client address (the socket peer, or what
/// a trusted proxy forwarded; see `client_addr`).
pub(crate) fn client_meta(
    st: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> ClientMeta {
    ClientMeta {
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        ip: peer.map(|p| {
            super::client_addr::client_ip(headers, p.ip(), &st.trusted_proxies).to_string()
        }),
    }
}

/// Password login: an access token and a refresh token.
#[utoipa::path(post, path = "/login", tag = "session", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Wrong credentials, unknown or disabled user (identical bodies)", body = ErrorBody),
        (status = 403, description = "mfa_required: the password is correct and the user has a second factor; the body also has mfa_token and mfa_methods, for POST /login/mfa. Or, in cookie mode, an origin that is not allowed", body = ErrorBody),
        (status = 429, description = "Too many failures; see Retry-After", body = ErrorBody),
        (status = 503, description = "Overloaded or database unavailable; see Retry-After", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
async fn login(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    AppJson(req): AppJson<LoginRequest>,
) -> Result<Response, ApiError> {
    if st.settings.sessions.refresh_cookie {
        st.allowed_origins.check(&headers, Missing::Allow)?;
    }
    let meta = client_meta(&st, &headers, peer.map(|Extension(ConnectInfo(p))| p));
    let client = st.auth.first_party();
    let pair = st
        .auth
        .login(
            &req.username,
            req.password,
            meta,
            &client,
            &TokenRequest {
                scope: req.scope,
                resource: req.resource,
            },
            &caller,
        )
        .await?;
    Ok(session_response(&st, &pair))
}

/// Rotates a refresh token: a new access token and the successor refresh token.
#[utoipa::path(post, path = "/refresh", tag = "session", request_body(content = Option<SessionTokenRequest>),
    responses(
        (status = 200, description = "Rotated", body = TokenResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Unknown, expired, revoked or reused token", body = ErrorBody),
        (status = 403, description = "Cookie mode: the request's origin may not use the cookie (CSRF)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
async fn refresh(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let token = session_token(&st, &headers, &body)?
        .ok_or_else(|| ApiError::InvalidRequest("no refresh_token".into()))?;
    let pair = st
        .auth
        .refresh(
            token,
            &st.auth.first_party(),
            &TokenRequest::default(),
            &caller,
        )
        .await?;
    Ok(session_response(&st, &pair))
}

/// The refresh token of a `/refresh` or `/logout` request.
/// - Body mode: the body's `refresh_token`.
/// - Cookie mode: the `__Host-tessera_refresh` cookie, from an allowed origin only (403
///   otherwise, see `csrf`); a `refresh_token` in the body is refused, so that one deployment
///   does not take refresh tokens two ways.
fn session_token(
    st: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Option<SecretString>, ApiError> {
    let in_body = body_token(body)?;
    if !st.settings.sessions.refresh_cookie {
        return Ok(in_body.filter(|t| !t.expose_secret().is_empty()));
    }
    if in_body.is_some() {
        return Err(ApiError::InvalidRequest(
            "cookie mode: the refresh token is read from the cookie only".into(),
        ));
    }
    let cookie = refresh_cookie(headers);
    if cookie.is_some() {
        st.allowed_origins.check(headers, Missing::Refuse)?;
    }
    Ok(cookie)
}

/// The refresh token of a `/refresh` or `/logout` body. `None` when the body carries none: it
/// is empty, `null`, or an object without `refresh_token` (`fetch` users send `{}`); the
/// cookie is used then.
fn body_token(body: &Bytes) -> Result<Option<SecretString>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let req: Option<SessionTokenRequest> = serde_json::from_slice(body)
        .map_err(|_| ApiError::InvalidRequest("malformed JSON body".into()))?;
    Ok(req.and_then(|r| r.refresh_token))
}

/// The name of the refresh-token cookie. The `__Host-` prefix makes browsers refuse it unless it
/// is `Secure`, has `Path=/` and no `Domain`, so no sibling subdomain can set or shadow it
/// (RFC 6265bis §4.1.3.2).
pub const REFRESH_COOKIE: &str = "__Host-tessera_refresh";

/// The refresh token from the `Cookie` header, if any. The header is read as bytes (RFC
/// 6265bis §5.4): another cookie's value may hold UTF-8 or other non-ASCII bytes (analytics
/// scripts set such cookies, possibly on a parent domain), and that must not hide this one.
/// Names are compared byte for byte after trimming only spaces and tabs, so a name such as
/// `\u{2000}__Host-tessera_refresh` is another cookie, never this one.
fn refresh_cookie(headers: &HeaderMap) -> Option<SecretString> {
    read_cookie(headers, REFRESH_COOKIE)
}

/// The value of the cookie `name` (the refresh cookie, and the hosted pages' SSO and CSRF
/// cookies), read as `refresh_cookie` says; an empty value is none.
pub(crate) fn read_cookie(headers: &HeaderMap, name: &str) -> Option<SecretString> {
    // A header value holds no control character but HTAB, so ASCII trimming is exactly
    // trimming spaces and tabs; Unicode spaces stay part of the name.
    let trim = <[u8]>::trim_ascii;
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .filter_map(|pair| {
            let eq = pair.iter().position(|b| *b == b'=')?;
            Some((trim(&pair[..eq]), trim(&pair[eq + 1..])))
        })
        .find(|(n, _)| *n == name.as_bytes())
        .and_then(|(_, value)| {
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            // Tessera's cookie values are base64url: anything else is no value of ours.
            std::str::from_utf8(value).ok().map(str::to_string)
        })
        .map(SecretString::from)
        .filter(|t| !t.expose_secret().is_empty())
}

/// `Set-Cookie` for the refresh token: HttpOnly (no script can read it), Secure, and
/// SameSite=Strict (never sent on cross-site requests; the origin check in `csrf` is the second
/// layer). `Max-Age` is the idle lifetime left.
fn set_refresh_cookie(res: &mut Response, pair: &TokenPair) {
    let cookie = format!(
        "{REFRESH_COOKIE}={}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
        pair.refresh_token.expose_secret(),
        pair.refresh_expires_in
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn clear_refresh_cookie(res: &mut Response) {
    let cookie = format!("{REFRESH_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Ends the session of the refresh token and/or the bearer token; denylists the bearer's `jti`.
#[utoipa::path(post, path = "/logout", tag = "session", request_body(content = Option<SessionTokenRequest>),
    security((), ("bearer" = [])),
    responses(
        (status = 204, description = "Logged out (also for unknown tokens)"),
        (status = 400, description = "No token given, or a malformed body", body = ErrorBody),
        (status = 403, description = "Cookie mode: the request's origin may not use the cookie (CSRF)", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
async fn logout(
    State(st): State<AppState>,
    bearer: Result<Bearer, ApiError>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let refresh = session_token(&st, &headers, &body)?;
    // Logout ignores what it cannot use, a malformed bearer token as an unknown one: the
    // refresh token still ends its session.
    let bearer = bearer.ok().and_then(|b| b.0);
    st.auth.logout(refresh, bearer.as_deref(), &caller).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    if st.settings.sessions.refresh_cookie {
        clear_refresh_cookie(&mut res);
    }
    Ok(res)
}

/// `POST /logout/all`: every session of the caller ends, and every access token issued to them
/// so far stops working.
#[utoipa::path(post, path = "/logout/all", tag = "session", security(("bearer" = [])),
    responses(
        (status = 204, description = "Every session of the caller ended"),
        (status = 401, description = "Invalid bearer token", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
async fn logout_all(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    bearer: Bearer,
) -> Result<Response, ApiError> {
    let token = bearer.0.ok_or(ApiError::MissingToken)?;
    st.auth.logout_all(&token, &caller).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
