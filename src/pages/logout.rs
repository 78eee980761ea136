//! The end-session endpoint (RP-Initiated Logout 1.0): `GET`/`POST /end_session`, and the
//! confirmation form `POST /end_session/confirm`. A request whose `id_token_hint` names the
//! browser's live SSO session ends it at once; any other asks the user first, so that a
//! foreign site cannot log them out silently. Afterwards the browser goes to the registered
//! `post_logout_redirect_uri` with `state`, or sees a page.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::context;

use super::authorize::{clear_sso_cookie, forged, sso_cookie, unavailable};
use super::csrf;
use crate::auth::oidc::{LogoutParams, LogoutRequest};
use crate::http::is_form;
use crate::http::{AppState, RequestCaller};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/end_session", get(end_session_get).post(end_session_post))
        .route("/end_session/confirm", post(confirm))
}

/// The request's parameters, and the page's own fields (`csrf`, `decision`). `None` when a
/// parameter is repeated (RFC 6749 §3.1's rule, kept here too).
fn parse(raw: &[u8]) -> Option<(LogoutParams, HashMap<String, String>)> {
    let mut map: HashMap<String, String> = HashMap::new();
    for (k, v) in form_urlencoded::parse(raw).into_owned() {
        if map.insert(k, v).is_some() {
            return None;
        }
    }
    let mut take = |name: &str| map.remove(name).filter(|v| !v.is_empty());
    let p = LogoutParams {
        id_token_hint: take("id_token_hint"),
        client_id: take("client_id"),
        post_logout_redirect_uri: take("post_logout_redirect_uri"),
        state: take("state"),
        ui_locales: take("ui_locales"),
        logout_hint: take("logout_hint"),
    };
    Some((p, map))
}

fn repeated(st: &AppState) -> Response {
    st.pages
        .error(StatusCode::BAD_REQUEST, "The request repeats a parameter.")
}

async fn end_session_get(
    State(st): State<AppState>,
    caller: RequestCaller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some((p, _)) = parse(query.unwrap_or_default().as_bytes()) else {
        return repeated(&st);
    };
    start(&st, caller, &headers, &p).await
}

async fn end_session_post(
    State(st): State<AppState>,
    caller: RequestCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_form(&headers) {
        return st.pages.error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The request must be a form (application/x-www-form-urlencoded).",
        );
    }
    let Some((p, _)) = parse(&body) else {
        return repeated(&st);
    };
    start(&st, caller, &headers, &p).await
}

async fn start(
    st: &AppState,
    RequestCaller(caller): RequestCaller,
    headers: &HeaderMap,
    p: &LogoutParams,
) -> Response {
    let req = match st.auth.logout_request(p) {
        Ok(req) => req,
        Err(message) => return st.pages.error(StatusCode::BAD_REQUEST, &message),
    };
    let cookie = sso_cookie(headers);
    let silent = st.auth.silent_logout_session(&req, cookie.as_ref()).await;
    let had_cookie = cookie.is_some();
    match (silent, cookie) {
        (Ok(Some(sso)), Some(_)) => match st.auth.end_sso_session(sso, &caller).await {
            Ok(_) => signed_out(st, &req, true),
            Err(_) => unavailable(st),
        },
        (Ok(_), cookie) => match st.auth.signed_in_user(cookie.as_ref()).await {
            // No session came with the request (another site's POST carries no SameSite=Lax
            // cookie), but the hint names a live one: ask, on a page of Tessera's whose form
            // brings the cookie.
            Ok(None) => match st.auth.hinted_user(&req).await {
                Ok(Some(user)) => confirm_page(st, headers, &req, &user),
                Ok(None) => signed_out(st, &req, had_cookie),
                Err(_) => unavailable(st),
            },
            Ok(Some(user)) => confirm_page(st, headers, &req, &user),
            Err(_) => unavailable(st),
        },
        (Err(_), _) => unavailable(st),
    }
}

/// The user's answer on the confirmation page.
async fn confirm(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((p, own)) = parse(&body) else {
        return repeated(&st);
    };
    if !csrf::check(
        &headers,
        own.get("csrf").map(String::as_str),
        &st.allowed_origins,
        &st.settings.tokens.issuer,
    ) {
        return forged(&st);
    }
    let req = match st.auth.logout_request(&p) {
        Ok(req) => req,
        Err(message) => return st.pages.error(StatusCode::BAD_REQUEST, &message),
    };
    match own.get("decision").map(String::as_str) {
        Some("logout") => {}
        Some("stay") => {
            return st.pages.render(
                StatusCode::OK,
                "signed_out.html",
                context! { lang => "en", title => "Still signed in", message => "You are still signed in." },
            )
        }
        _ => return st.pages.error(StatusCode::BAD_REQUEST, "No decision was made."),
    }
    // Only the browser's own session ends: a hint alone (an ID token, which its relying party
    // and anything it leaked to hold) never ends one (invariant 9).
    let cookie = sso_cookie(&headers);
    // And only for the account the page was shown to (its `account`): when another user
    // signed in since, in another tab, the page asks again, about them.
    match st.auth.signed_in_user(cookie.as_ref()).await {
        Ok(Some(user)) if own.get("account") != Some(&user.0.to_string()) => {
            return confirm_page(&st, &headers, &req, &user);
        }
        Ok(_) => {}
        Err(_) => return unavailable(&st),
    }
    if let Some(cookie) = &cookie {
        if st.auth.end_session(cookie, &caller).await.is_err() {
            return unavailable(&st);
        }
    }
    signed_out(&st, &req, cookie.is_some())
}

/// After the logout: to the registered `post_logout_redirect_uri` with `state`, or a page.
/// The SSO cookie is removed when the request brought one: a request without it (another
/// site's POST, which a `SameSite=Lax` cookie does not come with) must not delete it, or any
/// site could sign the browser out of a session that lives on.
fn signed_out(st: &AppState, req: &LogoutRequest, had_cookie: bool) -> Response {
    let mut res = match &req.post_logout_redirect_uri {
        Some(uri) => {
            let mut location = uri.clone();
            if let Some(state) = &req.state {
                let q: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("state", state)
                    .finish();
                location.push(if uri.contains('?') { '&' } else { '?' });
                location.push_str(&q);
            }
            let mut res = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                res.headers_mut().insert(header::LOCATION, v);
            }
            super::secure_headers(res.headers_mut());
            res
        }
        None => st.pages.render(
            StatusCode::OK,
            "signed_out.html",
            context! { lang => "en", title => "Signed out", message => "You are signed out." },
        ),
    };
    if had_cookie {
        clear_sso_cookie(&mut res);
    }
    res
}

/// The confirmation page, for `user` (id and name): its form names the account (`account`),
/// and its answer counts only while that account is signed in.
fn confirm_page(
    st: &AppState,
    headers: &HeaderMap,
    req: &LogoutRequest,
    (account, username): &(uuid::Uuid, String),
) -> Response {
    let params: Vec<(String, String)> = match serde_json::to_value(&req.params) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
            .collect(),
        _ => Vec::new(),
    };
    csrf::with_token(headers, |csrf| {
        st.pages.render(
            StatusCode::OK,
            "logout.html",
            context! {
                lang => "en",
                username => username,
                account => account.to_string(),
                client_id => req.client_id,
                csrf => csrf,
                params => params,
            },
        )
    })
}
