//! The forms of the hosted pages under `/authorize`: the login, its second step (a code or a
//! passkey), the passwordless passkey login, and the consent page's answer.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use secrecy::SecretString;

use super::*;
use crate::auth::AuthError;
use crate::http::{client_meta, AppState, RequestCaller};

/// The hosted login form.
pub(super) async fn login(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (p, req) = match form_request(&st, &headers, &body).await {
        Ok(form) => form,
        Err(res) => return *res,
    };
    let username = p.own("username").unwrap_or_default();
    let password = SecretString::from(p.own("password").unwrap_or_default().to_string());
    let meta = client_meta(&st, &headers, peer.map(|Extension(ConnectInfo(a))| a));
    let old = sso_cookie(&headers);
    let signed = st
        .auth
        .sign_in(&req, username, password, meta, old.as_ref(), &caller)
        .await;
    let shown =
        |status, error: &str| login_page(&st, &headers, &req, status, Some(error), username);
    match signed {
        Ok(signed) => {
            let mut res = decided(&st, &headers, &req, signed.decision, Via::Post);
            set_sso_cookie(&mut res, &signed.cookie, signed.max_age_secs);
            res
        }
        Err(e) => match password_refused(e, "authorize") {
            PasswordRefused::Again(again) => again.respond(shown),
            PasswordRefused::SecondStep(step) => mfa_page(&st, &headers, &req, &step, None),
            PasswordRefused::Unavailable => unavailable(&st),
        },
    }
}

/// The hosted login's second step: the `mfa_token` of the password step and a TOTP or
/// recovery code.
pub(super) async fn mfa(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (p, req) = match form_request(&st, &headers, &body).await {
        Ok(form) => form,
        Err(res) => return *res,
    };
    let step = SecondStep::from_form(p.own("mfa_token"), p.own("methods"));
    let Some(factor) = factor_from_form(|name| p.own(name)) else {
        return mfa_page(&st, &headers, &req, &step, Some(NO_CODE));
    };
    let meta = client_meta(&st, &headers, peer.map(|Extension(ConnectInfo(a))| a));
    let old = sso_cookie(&headers);
    let signed = st
        .auth
        .sign_in_mfa(&req, &step.token, factor, meta, old.as_ref(), &caller)
        .await;
    match signed {
        Ok(signed) => {
            let mut res = decided(&st, &headers, &req, signed.decision, Via::Post);
            set_sso_cookie(&mut res, &signed.cookie, signed.max_age_secs);
            res
        }
        Err(AuthError::InvalidSecondFactor) | Err(AuthError::BadInput(_)) => mfa_page(
            &st,
            &headers,
            &req,
            &step,
            Some("Incorrect or expired code. If it keeps failing, sign in again."),
        ),
        Err(AuthError::Throttled { retry_after_secs }) => {
            let error = too_many(retry_after_secs);
            throttled(
                mfa_page(&st, &headers, &req, &step, Some(&error)),
                retry_after_secs,
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "hosted second step failed");
            unavailable(&st)
        }
    }
}

/// The hosted login with a passkey and no password: the ceremony the page's script fetched
/// (`POST /login/passkey/options`) and the browser's assertion.
pub(super) async fn passkey(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (p, req) = match form_request(&st, &headers, &body).await {
        Ok(form) => form,
        Err(res) => return *res,
    };
    let meta = client_meta(&st, &headers, peer.map(|Extension(ConnectInfo(a))| a));
    let old = sso_cookie(&headers);
    let signed = st
        .auth
        .sign_in_passkey(
            &req,
            p.own("ceremony").unwrap_or_default(),
            p.own("credential").unwrap_or_default(),
            meta,
            old.as_ref(),
            &caller,
        )
        .await;
    match signed {
        Ok(signed) => {
            let mut res = decided(&st, &headers, &req, signed.decision, Via::Post);
            set_sso_cookie(&mut res, &signed.cookie, signed.max_age_secs);
            res
        }
        Err(AuthError::EmailNotVerified) => login_page(
            &st,
            &headers,
            &req,
            StatusCode::FORBIDDEN,
            Some(super::super::signin::VERIFY_FIRST),
            "",
        ),
        Err(AuthError::InvalidCredentials | AuthError::BadInput(_)) => login_page(
            &st,
            &headers,
            &req,
            StatusCode::OK,
            Some(PASSKEY_REFUSED),
            "",
        ),
        Err(e) => {
            tracing::warn!(error = %e, "hosted passkey sign-in failed");
            unavailable(&st)
        }
    }
}

/// The consent form's answer.
pub(super) async fn consent(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (p, req) = match form_request(&st, &headers, &body).await {
        Ok(form) => form,
        Err(res) => return *res,
    };
    let allow = match p.own("decision") {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            return st
                .pages
                .error(StatusCode::BAD_REQUEST, "No decision was made.")
        }
    };
    let cookie = sso_cookie(&headers);
    match st
        .auth
        .consent(&req, cookie.as_ref(), p.own("account"), allow)
        .await
    {
        Ok(code) => redirect(&st, code, Via::Post),
        Err(e) => failed(&st, e, Via::Post),
    }
}
