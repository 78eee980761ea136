//! CSRF defence of the hosted pages' forms (OWASP CSRF Prevention Cheat Sheet), two layers:
//! - a double-submit token: a random value in the `__Host-tessera_csrf` cookie (HttpOnly,
//!   Secure, SameSite=Strict, so no other site's request carries it and no sibling subdomain
//!   can set it) and the same value in every form; a POST must carry both, equal;
//! - the `Origin` header, when the browser sends one, must be this server's own (the `Host`
//!   the request was sent to). The pages' `Referrer-Policy: same-origin` makes Chromium send a
//!   true `Origin` with same-origin forms rather than `null`, which is refused.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};

use crate::http::csrf::{AllowedOrigins, Missing};

/// The cookie holding the token.
pub const CSRF_COOKIE: &str = "__Host-tessera_csrf";

/// The token of the browser's cookie, or a new one (with `fresh` set: the answer must set it).
pub fn token(headers: &HeaderMap) -> (SecretString, bool) {
    match crate::http::read_cookie(headers, CSRF_COOKIE).filter(well_formed) {
        Some(t) => (t, false),
        None => match tessera_auth::oidc::random_cookie_token() {
            Ok(t) => (t, true),
            Err(_) => (SecretString::from(String::new()), false),
        },
    }
}

/// 43 base64url characters: a token Tessera made.
fn well_formed(t: &SecretString) -> bool {
    let t = t.expose_secret();
    t.len() == 43
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Sets the token's cookie on `res`.
pub fn set_cookie(res: &mut Response, token: &SecretString) {
    let cookie = format!(
        "{CSRF_COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Strict",
        token.expose_secret()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Whether a form POST passes: the cookie's token equals the form's (compared in constant
/// time), and the request's `Origin`, if any, is this server's own: the host it was sent to,
/// the origin of `tokens.issuer` (behind a proxy that rewrites `Host`) or one of
/// `http.cors_origins`.
pub fn check(headers: &HeaderMap, form_token: Option<&str>, allowed: &AllowedOrigins) -> bool {
    let Some(cookie) = crate::http::read_cookie(headers, CSRF_COOKIE).filter(well_formed) else {
        return false;
    };
    let Some(form_token) = form_token else {
        return false;
    };
    let same = aws_lc_rs::constant_time::verify_slices_are_equal(
        cookie.expose_secret().as_bytes(),
        form_token.as_bytes(),
    )
    .is_ok();
    same && (same_origin(headers) || allowed.check(headers, Missing::Allow).is_ok())
}

/// `Origin` absent, or naming the host the request was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let mut origins = headers.get_all(header::ORIGIN).iter();
    let Some(origin) = origins.next() else {
        return true;
    };
    if origins.next().is_some() {
        return false;
    }
    let (Ok(origin), Some(host)) = (
        origin.to_str(),
        headers.get(header::HOST).and_then(|h| h.to_str().ok()),
    ) else {
        return false;
    };
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    let authority = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => return false,
    };
    authority.eq_ignore_ascii_case(host)
}
