//! The device page's views: the login form, the second step, the code form and the
//! confirmation, each with what its form carries.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::context;
use secrecy::ExposeSecret;

use super::csrf;
use crate::auth::oidc::{display_user_code, PendingDevice};
use crate::http::AppState;

pub(super) fn mfa_page(
    st: &AppState,
    headers: &HeaderMap,
    typed: &str,
    step: &super::signin::SecondStep,
    error: Option<&str>,
) -> Response {
    let params: Vec<(&str, &str)> = match typed.is_empty() {
        true => Vec::new(),
        false => vec![("user_code", typed)],
    };
    csrf::with_token(headers, |csrf| {
        st.pages.render(
            StatusCode::OK,
            "mfa.html",
            context! {
                lang => "en",
                action => "/device/mfa",
                client_id => "your device",
                csrf => csrf,
                params => params,
                mfa_token => step.token.expose_secret(),
                methods => step.offers(),
                passkey => st.auth.passkeys_enabled(),
                error => error,
            },
        )
    })
}

pub(super) fn login_page(
    st: &AppState,
    headers: &HeaderMap,
    typed: &str,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let params: Vec<(&str, &str)> = match typed.is_empty() {
        true => Vec::new(),
        false => vec![("user_code", typed)],
    };
    csrf::with_token(headers, |csrf| {
        st.pages.render(
            status,
            "login.html",
            context! {
                lang => "en",
                action => "/device/login",
                client_id => "your device",
                csrf => csrf,
                params => params,
                username => "",
                error => error,
            },
        )
    })
}

pub(super) fn code_page(
    st: &AppState,
    headers: &HeaderMap,
    username: &str,
    typed: &str,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    csrf::with_token(headers, |csrf| {
        st.pages.render(
            status,
            "device.html",
            context! {
                lang => "en",
                username => username,
                user_code => typed,
                csrf => csrf,
                error => error,
            },
        )
    })
}

pub(super) fn confirm_page(
    st: &AppState,
    headers: &HeaderMap,
    username: &str,
    pending: &PendingDevice,
) -> Response {
    let scopes: Vec<&str> = pending
        .scope
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    csrf::with_token(headers, |csrf| {
        st.pages.render(
            StatusCode::OK,
            "device_confirm.html",
            context! {
                lang => "en",
                username => username,
                account => pending.user_id.to_string(),
                client_id => pending.client_id,
                display_code => display_user_code(&pending.user_code),
                user_code => pending.user_code,
                scopes => scopes,
                csrf => csrf,
            },
        )
    })
}
