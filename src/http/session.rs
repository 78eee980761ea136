//! `POST /login`, `POST /refresh` and `POST /logout`.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Extension;
use axum::Router;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::extract::{AppJson, Bearer};
use super::AppState;
use crate::auth::{ClientMeta, TokenPair};
use crate::error::Error;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", post(login))
        .route("/refresh", post(refresh))
        .route("/logout", post(logout))
        .route("/logout/all", post(logout_all))
}

#[derive(Deserialize)]
pub struct LoginRequest {
    username: String,
    password: SecretString,
}

#[derive(Deserialize)]
pub struct RefreshRequest {
    refresh_token: SecretString,
}

#[derive(Deserialize)]
pub struct LogoutRequest {
    #[serde(default)]
    refresh_token: Option<SecretString>,
}

/// The RFC 6749 §5.1 token response.
#[derive(Serialize)]
pub struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: i64,
    refresh_token: &'a str,
    refresh_expires_in: i64,
}

/// Serialises a token pair with `Cache-Control: no-store` (RFC 6749 §5.1).
pub fn token_response(pair: &TokenPair) -> Response {
    let body = TokenResponse {
        access_token: pair.access_token.expose_secret(),
        token_type: "Bearer",
        expires_in: pair.expires_in,
        refresh_token: pair.refresh_token.expose_secret(),
        refresh_expires_in: pair.refresh_expires_in,
    };
    let mut res = axum::Json(body).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

pub(super) fn client_meta(headers: &HeaderMap, peer: Option<SocketAddr>) -> ClientMeta {
    ClientMeta {
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        ip: peer.map(|p| p.ip().to_string()),
    }
}

#[tracing::instrument(skip_all)]
async fn login(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    AppJson(req): AppJson<LoginRequest>,
) -> Result<Response, Error> {
    let meta = client_meta(&headers, peer.map(|Extension(ConnectInfo(p))| p));
    let pair = st
        .auth
        .login(
            &req.username,
            req.password,
            meta,
            &st.auth.settings.tokens.client_id,
        )
        .await?;
    Ok(token_response(&pair))
}

#[tracing::instrument(skip_all)]
async fn refresh(
    State(st): State<AppState>,
    AppJson(req): AppJson<RefreshRequest>,
) -> Result<Response, Error> {
    if req.refresh_token.expose_secret().is_empty() {
        return Err(Error::InvalidRequest("empty refresh_token".into()));
    }
    let pair = st
        .auth
        .refresh(req.refresh_token, &st.auth.settings.tokens.client_id)
        .await?;
    Ok(token_response(&pair))
}

#[tracing::instrument(skip_all)]
async fn logout(
    State(st): State<AppState>,
    bearer: Bearer,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Error> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge
        } else {
            Error::InvalidRequest("unreadable body".into())
        }
    })?;
    let refresh = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let req: LogoutRequest = serde_json::from_slice(&body)
            .map_err(|_| Error::InvalidRequest("malformed JSON body".into()))?;
        req.refresh_token.filter(|t| !t.expose_secret().is_empty())
    };
    st.auth.logout(refresh, bearer.0.as_deref()).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::CACHE_CONTROL, "no-store")],
    )
        .into_response())
}

/// `POST /logout/all`: every session of the caller ends, and every access token issued to them
/// so far stops working.
#[tracing::instrument(skip_all)]
async fn logout_all(State(st): State<AppState>, bearer: Bearer) -> Result<Response, Error> {
    let token = bearer.0.ok_or(Error::InvalidToken)?;
    st.auth.logout_all(&token).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::CACHE_CONTROL, "no-store")],
    )
        .into_response())
}
