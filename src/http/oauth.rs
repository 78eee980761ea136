//! The OAuth endpoints for API-side verifiers and clients: `POST /token` (RFC 6749 §4.3, §6),
//! `POST /revoke` (RFC 7009), `POST /introspect` (RFC 7662) and `GET /revocations` (the
//! revocation feed). Bodies are form-encoded where the RFCs say so.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};

use super::client_auth::{authenticate, Clients, Form};
use super::error::{token_endpoint, ApiError, ErrorBody};
use super::session::{client_meta, token_response};
use super::AppState;
use crate::auth::{FeedKind, FeedPosition, FeedStart, Introspection, TokenRequest};
use crate::time::UnixMillis;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(token))
        .routes(routes!(revoke))
        .routes(routes!(introspect))
        .routes(routes!(revocations, revocations_post))
}

/// Form parameters of `/token` (documentation only; parsing rejects repeated parameters).
#[derive(ToSchema)]
#[allow(dead_code)]
struct TokenForm {
    /// `password` or `refresh_token`.
    grant_type: String,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
    /// Space-separated scopes to ask for (RFC 6749 §3.3); at a refresh, a narrower scope.
    scope: Option<String>,
    /// The API the access token is for (RFC 8707): a `[[resources]]` id, which becomes `aud`.
    resource: Option<String>,
    /// With `client_secret` (client_secret_post), or alone for the public client.
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Form parameters of `/revoke` and `/introspect`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct TokenParam {
    token: String,
    /// `access_token` or `refresh_token`; only orders the lookups.
    token_type_hint: Option<String>,
}

/// RFC 6749 token endpoint: the password (§4.3) and refresh_token (§6) grants.
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
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let form = Form::parse(&headers, body)?;
    let grant = form.require("grant_type")?;
    if !matches!(grant, "password" | "refresh_token") {
        return Err(ApiError::UnsupportedGrantType);
    }
    let client = authenticate(&st, &headers, Some(&form), Clients::Any).await?;
    // RFC 6749 §3.3 and RFC 8707 §2.
    let req = TokenRequest {
        scope: form.get("scope").map(str::to_string),
        resource: form.resource()?.map(str::to_string),
    };
    // Same code as /login and /refresh; only the status of invalid_grant differs (§5.2).
    let pair = if grant == "password" {
        let username = form.require("username")?;
        let password = SecretString::from(form.require("password")?.to_string());
        let meta = client_meta(&st, &headers, peer.map(|Extension(ConnectInfo(p))| p));
        st.auth
            .login(username, password, meta, &client, &req)
            .await
            .map_err(token_endpoint)?
    } else {
        let rt = SecretString::from(form.require("refresh_token")?.to_string());
        st.auth
            .refresh(rt, &client, &req)
            .await
            .map_err(token_endpoint)?
    };
    Ok(token_response(&pair))
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
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let form = Form::parse(&headers, body)?;
    let client = authenticate(&st, &headers, Some(&form), Clients::Any).await?;
    let token = SecretString::from(form.require("token")?.to_string());
    st.auth
        .revoke(&token, form.get("token_type_hint"), &client)
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// RFC 7662 introspection, for authenticated clients. Inactive tokens get exactly
/// `{"active":false}`.
#[utoipa::path(post, path = "/introspect", tag = "oauth",
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    security(("basic" = [])),
    responses(
        (status = 200, description = "active, sub, exp, iat, jti, sid, aud, iss, client_id, token_type", body = Object),
        (status = 400, description = "Missing token", body = ErrorBody),
        (status = 401, description = "Client authentication failed", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
async fn introspect(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let form = Form::parse(&headers, body)?;
    authenticate(&st, &headers, Some(&form), Clients::Confidential).await?;
    let token = SecretString::from(form.require("token")?.to_string());
    let t = &st.settings.tokens;
    let mut body = match st
        .auth
        .introspect(&token, form.get("token_type_hint"))
        .await?
    {
        None => json!({ "active": false }),
        Some(Introspection::Access(a)) => {
            let c = &a.claims;
            json!({
                "active": true,
                "token_type": "Bearer",
                "sub": c.sub.to_string(),
                "username": a.user.username,
                "exp": c.exp,
                "iat": c.iat,
                "nbf": c.nbf,
                "jti": c.jti,
                "sid": c.sid.to_string(),
                "aud": c.aud,
                "iss": t.issuer,
                "client_id": c.client_id,
                "roles": a.user.roles,
                "scope": c.scope,
            })
        }
        Some(Introspection::Refresh(b)) => {
            let (session, user) = *b;
            json!({
                "active": true,
                "token_type": "refresh_token",
                "sub": user.id.to_string(),
                "username": user.username,
                "exp": secs(session.idle_expires_at.min(session.absolute_expires_at)),
                "iat": secs(session.last_refreshed_at),
                "sid": session.id.to_string(),
                "aud": session.resource.as_deref().unwrap_or(&t.audience),
                "iss": t.issuer,
                "client_id": session.client_id,
                "scope": session.scope,
            })
        }
    };
    // RFC 7662 §2.2: `scope` only when the token has one.
    if let Some(m) = body.as_object_mut() {
        if m.get("scope").is_some_and(Value::is_null) {
            m.remove("scope");
        }
    }
    Ok(Json(body).into_response())
}

/// A stored time (ms) as a JWT `NumericDate` (whole seconds).
fn secs(ms: i64) -> i64 {
    UnixMillis(ms).as_secs()
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FeedQuery {
    /// The `cursor` of the previous response; absent for the full current state.
    since: Option<String>,
    /// Most entries in one answer: 1 to 10000, default 1000. With `has_more`, ask again at
    /// once with the returned `cursor`.
    limit: Option<String>,
}

/// Entries in one feed answer when the client names no `limit`.
const FEED_PAGE: usize = 1000;
/// Most entries in one feed answer.
const FEED_PAGE_MAX: usize = 10_000;

/// Entries of the feed overlap by this much between polls, so a revocation committed while a
/// poll ran is never skipped. Applying an entry twice is harmless.
const FEED_OVERLAP_MS: i64 = 10_000;

/// The revocation feed: denylisted `jti`s not yet expired, revoked sessions, and per-user
/// `not_before` cut-offs since the cursor. Entries may repeat across polls; apply them
/// idempotently.
#[utoipa::path(get, path = "/revocations", tag = "oauth", params(FeedQuery), security(("basic" = [])),
    responses(
        (status = 200, description = "cursor, has_more, revoked_tokens, revoked_sessions, not_before", body = Object),
        (status = 400, description = "Malformed cursor", body = ErrorBody),
        (status = 401, description = "Client authentication failed", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
async fn revocations(
    State(st): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authenticate(&st, &headers, None, Clients::Confidential).await?;
    let Query(q) = query.map_err(|_| ApiError::InvalidRequest("malformed query".into()))?;
    feed(&st, q.since.as_deref(), q.limit.as_deref()).await
}

/// Form parameters of `POST /revocations`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct FeedForm {
    /// The `cursor` of the previous response; absent for the full current state.
    since: Option<String>,
    /// Most entries in one answer: 1 to 10000, default 1000.
    limit: Option<String>,
    /// With `client_secret` (client_secret_post), instead of HTTP Basic.
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// The revocation feed, asked for with a form: for clients that authenticate with
/// `client_secret_post`, which a GET cannot carry.
#[utoipa::path(post, path = "/revocations", tag = "oauth", security(("basic" = [])),
    request_body(content = FeedForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "As GET /revocations", body = Object),
        (status = 400, description = "Malformed cursor or form", body = ErrorBody),
        (status = 401, description = "Client authentication failed", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
async fn revocations_post(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let form = Form::parse(&headers, body)?;
    authenticate(&st, &headers, Some(&form), Clients::Confidential).await?;
    feed(&st, form.get("since"), form.get("limit")).await
}

/// One page of the feed after a cursor (absent or empty: everything still relevant).
///
/// A cursor is `MS` (every entry from that millisecond on; what a final page returns, with
/// the overlap that catches revocations committed late) or `MS.KIND.KEY` with the key in
/// base64url (strictly after that entry; what a page followed by more returns). Entries are
/// ordered by time, then kind (token, session, user), then key. Cursors hold only URL-safe
/// characters.
async fn feed(
    st: &AppState,
    since: Option<&str>,
    limit: Option<&str>,
) -> Result<Response, ApiError> {
    let start =
        parse_cursor(since).ok_or_else(|| ApiError::InvalidRequest("malformed cursor".into()))?;
    let limit = match limit {
        None | Some("") => FEED_PAGE,
        Some(l) => digits(l)
            .filter(|n| (1..=FEED_PAGE_MAX as u64).contains(n))
            .map(|n| n as usize)
            .ok_or_else(|| {
                ApiError::InvalidRequest(format!("limit must be 1 to {FEED_PAGE_MAX}"))
            })?,
    };
    let (page, now) = st.auth.revocations(&start, limit).await?;
    let feed = &page.entries;
    let (cursor, has_more) = match &page.more_after {
        Some(p) => (
            format!(
                "{}.{}.{}",
                p.at,
                p.kind as u8,
                URL_SAFE_NO_PAD.encode(p.key.as_bytes())
            ),
            true,
        ),
        None => ((now - FEED_OVERLAP_MS).max(0).to_string(), false),
    };
    let body = json!({
        "cursor": cursor,
        "has_more": has_more,
        "revoked_tokens": feed.tokens.iter().map(|(jti, exp, at)| json!({
            "jti": jti, "exp": secs(*exp), "revoked_at": secs(*at),
        })).collect::<Vec<Value>>(),
        "revoked_sessions": feed.sessions.iter().map(|(sid, at)| json!({
            "sid": sid.to_string(), "revoked_at": secs(*at),
        })).collect::<Vec<Value>>(),
        // `not_before` in whole seconds is rounded up, so a verifier comparing `iat` refuses
        // every token of the cut-off's second (the safe side); `not_before_ms` is exact, for
        // a verifier that reads the issuance time from the UUIDv7 `jti`.
        "not_before": feed.users.iter().map(|(sub, nbf)| json!({
            "sub": sub.to_string(),
            "not_before": secs(nbf.saturating_add(999)),
            "not_before_ms": nbf,
        })).collect::<Vec<Value>>(),
    });
    Ok(Json(body).into_response())
}

/// The longest token key a feed cursor takes back (bytes, before base64url).
const MAX_CURSOR_KEY_BYTES: usize = 64 * 1024;

/// A feed cursor (see `feed`); `None` when malformed.
fn parse_cursor(since: Option<&str>) -> Option<FeedStart> {
    let since = since.unwrap_or_default();
    if since.is_empty() {
        return Some(FeedStart::From(0));
    }
    let mut parts = since.splitn(3, '.');
    let at = i64::try_from(digits(parts.next()?)?).ok()?;
    let (kind, key) = match (parts.next(), parts.next()) {
        (None, _) => return Some(FeedStart::From(at)),
        (Some(k), Some(key)) => (k, key),
        (Some(_), None) => return None,
    };
    let kind = match kind {
        "0" => FeedKind::Token,
        "1" => FeedKind::Session,
        "2" => FeedKind::User,
        _ => return None,
    };
    let key = URL_SAFE_NO_PAD
        .decode(key)
        .ok()
        .and_then(|k| String::from_utf8(k).ok())?;
    let ok = match kind {
        // Any text a row can hold (Postgres text cannot hold NUL), up to a bound far beyond
        // any real `jti`: a cursor the feed hands out must always be taken back, whatever a
        // row written by hand holds (a 1496-byte jti once made a refused cursor).
        FeedKind::Token => key.len() <= MAX_CURSOR_KEY_BYTES && !key.contains('\0'),
        _ => uuid::Uuid::parse_str(&key).is_ok_and(|u| u.to_string() == key),
    };
    ok.then_some(FeedStart::After(FeedPosition { at, kind, key }))
}

/// A non-negative decimal written with ASCII digits only (no sign, no spaces), up to 18
/// digits.
fn digits(s: &str) -> Option<u64> {
    (!s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}
