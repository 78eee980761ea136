//! The device page (RFC 8628 §3.3): `GET /device[?user_code=…]`, where a signed-in user types
//! the code their device shows (`POST /device`), signs in first if needed
//! (`POST /device/login`), and allows or denies the device (`POST /device/decide`). Every
//! form is CSRF-checked, and wrong codes are throttled per user and address.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use minijinja::context;
use secrecy::SecretString;

use super::authorize::{forged, set_sso_cookie, sso_cookie, unavailable};
use super::csrf;
use super::device_views::{code_page, confirm_page, login_page, mfa_page};
use super::signin::{factor_from_form, throttled, too_many, PasswordRefused, SecondStep, NO_CODE};
use crate::auth::oidc::SsoCookie;
use crate::auth::{AuthError, Caller};
use crate::http::{client_meta, AppState, RequestCaller};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/device", get(device_get).post(device_post))
        .route("/device/login", post(login))
        .route("/device/mfa", post(mfa))
        .route("/device/decide", post(decide))
}

fn fields(raw: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(raw).into_owned().collect()
}

fn peer_ip(
    st: &AppState,
    headers: &HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Option<String> {
    client_meta(st, headers, peer.map(|Extension(ConnectInfo(a))| a)).ip
}

async fn device_get(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = fields(query.unwrap_or_default().as_bytes());
    let typed = q.get("user_code").cloned().unwrap_or_default();
    let ip = peer_ip(&st, &headers, peer);
    let cookie = sso_cookie(&headers);
    show(
        &st,
        &headers,
        cookie.as_ref(),
        &typed,
        ip.as_deref(),
        &caller,
        None,
    )
    .await
}

async fn device_post(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = fields(&body);
    if !checked(&st, &headers, &f) {
        return forged(&st);
    }
    let typed = f.get("user_code").cloned().unwrap_or_default();
    let ip = peer_ip(&st, &headers, peer);
    let cookie = sso_cookie(&headers);
    show(
        &st,
        &headers,
        cookie.as_ref(),
        &typed,
        ip.as_deref(),
        &caller,
        None,
    )
    .await
}

fn checked(st: &AppState, headers: &HeaderMap, f: &HashMap<String, String>) -> bool {
    csrf::check(
        headers,
        f.get("csrf").map(String::as_str),
        &st.allowed_origins,
        &st.settings.tokens.issuer,
    )
}

/// The page for what the browser has: the login form without an SSO session, the code form
/// without a (valid) code, the confirmation with one.
async fn show(
    st: &AppState,
    headers: &HeaderMap,
    cookie: Option<&SsoCookie>,
    typed: &str,
    ip: Option<&str>,
    caller: &Caller,
    set_cookie: Option<(&SsoCookie, u64)>,
) -> Response {
    let username = match st.auth.signed_in_as(cookie).await {
        Ok(Some(u)) => u,
        Ok(None) => return login_page(st, headers, typed, StatusCode::OK, None),
        Err(_) => return unavailable(st),
    };
    let mut res = if typed.is_empty() {
        code_page(st, headers, &username, "", StatusCode::OK, None)
    } else {
        match st.auth.pending_device(typed, cookie, ip, caller).await {
            Ok(pending) => confirm_page(st, headers, &username, &pending),
            Err(AuthError::BadInput(_)) => code_page(
                st,
                headers,
                &username,
                typed,
                StatusCode::OK,
                Some("That code is not valid, or it has expired."),
            ),
            Err(AuthError::Throttled { retry_after_secs }) => {
                let mut res = code_page(
                    st,
                    headers,
                    &username,
                    typed,
                    StatusCode::TOO_MANY_REQUESTS,
                    Some(&format!(
                        "Too many wrong codes. Try again in {}.",
                        super::signin::seconds(retry_after_secs)
                    )),
                );
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    res.headers_mut().insert(header::RETRY_AFTER, v);
                }
                res
            }
            Err(AuthError::InvalidCredentials) => {
                login_page(st, headers, typed, StatusCode::OK, None)
            }
            Err(_) => unavailable(st),
        }
    };
    if let Some((cookie, max_age)) = set_cookie {
        set_sso_cookie(&mut res, cookie, max_age);
    }
    res
}

async fn login(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = fields(&body);
    if !checked(&st, &headers, &f) {
        return forged(&st);
    }
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    let typed = get("user_code");
    let meta = client_meta(&st, &headers, peer.map(|Extension(ConnectInfo(a))| a));
    let ip = meta.ip.clone();
    let password = SecretString::from(get("password").to_string());
    let old = sso_cookie(&headers);
    let signed = st
        .auth
        .sign_in_browser(get("username"), password, meta, old.as_ref(), &caller)
        .await;
    match signed {
        Ok((cookie, max_age)) => {
            show(
                &st,
                &headers,
                Some(&cookie),
                typed,
                ip.as_deref(),
                &caller,
                Some((&cookie, max_age)),
            )
            .await
        }
        Err(e) => match super::signin::password_refused(e, "device") {
            PasswordRefused::Again(again) => again
                .respond(|status, message| login_page(&st, &headers, typed, status, Some(message))),
            PasswordRefused::SecondStep(step) => mfa_page(&st, &headers, typed, &step, None),
            PasswordRefused::Unavailable => unavailable(&st),
        },
    }
}

async fn decide(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = fields(&body);
    if !checked(&st, &headers, &f) {
        return forged(&st);
    }
    let allow = match f.get("decision").map(String::as_str) {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            return st
                .pages
                .error(StatusCode::BAD_REQUEST, "No decision was made.")
        }
    };
    let typed = f.get("user_code").cloned().unwrap_or_default();
    let ip = peer_ip(&st, &headers, peer);
    let cookie = sso_cookie(&headers);
    let shown_to = f.get("account").map(String::as_str);
    match st
        .auth
        .decide_device(
            &typed,
            cookie.as_ref(),
            shown_to,
            allow,
            ip.as_deref(),
            &caller,
        )
        .await
    {
        Ok(()) => {
            let (title, message) = match allow {
                true => ("Device connected", "You can return to your device."),
                false => ("Device refused", "The device was not allowed to sign in."),
            };
            st.pages.render(
                StatusCode::OK,
                "signed_out.html",
                context! { lang => "en", title => title, message => message },
            )
        }
        Err(AuthError::InvalidCredentials) => {
            login_page(&st, &headers, &typed, StatusCode::OK, None)
        }
        // Another user signed in since the page was shown: the page again, for them.
        Err(AuthError::ReauthenticationRequired) => {
            show(
                &st,
                &headers,
                cookie.as_ref(),
                &typed,
                ip.as_deref(),
                &caller,
                None,
            )
            .await
        }
        Err(AuthError::BadInput(_)) | Err(AuthError::Throttled { .. }) => st.pages.error(
            StatusCode::BAD_REQUEST,
            "That code is not valid, or it has expired.",
        ),
        Err(_) => unavailable(&st),
    }
}

/// The device login's second step: the `mfa_token` of the password step and a TOTP or
/// recovery code.
async fn mfa(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = fields(&body);
    if !checked(&st, &headers, &f) {
        return forged(&st);
    }
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    let typed = get("user_code");
    let step = SecondStep::from_form(
        f.get("mfa_token").map(String::as_str),
        f.get("methods").map(String::as_str),
    );
    let Some(factor) = factor_from_form(|k| f.get(k).map(String::as_str)) else {
        return mfa_page(&st, &headers, typed, &step, Some(NO_CODE));
    };
    let meta = client_meta(&st, &headers, peer.map(|Extension(ConnectInfo(a))| a));
    let ip = meta.ip.clone();
    let old = sso_cookie(&headers);
    let signed = st
        .auth
        .sign_in_browser_mfa(&step.token, factor, meta, old.as_ref(), &caller)
        .await;
    match signed {
        Ok((cookie, max_age)) => {
            show(
                &st,
                &headers,
                Some(&cookie),
                typed,
                ip.as_deref(),
                &caller,
                Some((&cookie, max_age)),
            )
            .await
        }
        Err(AuthError::InvalidSecondFactor) | Err(AuthError::BadInput(_)) => mfa_page(
            &st,
            &headers,
            typed,
            &step,
            Some("Incorrect or expired code. If it keeps failing, sign in again."),
        ),
        Err(AuthError::Throttled { retry_after_secs }) => {
            let error = too_many(retry_after_secs);
            throttled(
                mfa_page(&st, &headers, typed, &step, Some(&error)),
                retry_after_secs,
            )
        }
        Err(_) => unavailable(&st),
    }
}
