//! CSRF defence of the hosted pages' forms (OWASP CSRF Prevention Cheat Sheet), two layers:
//! - a double-submit token: a random value in the `__Host-tessera_csrf` cookie (HttpOnly,
//!   Secure, SameSite=Strict, so no other site's request carries it and no sibling subdomain
//!   can set it) and the same value in every form; a POST must carry both, equal;
//! - the `Origin` header (or, without it, the origin of `Referer`), when the browser sends one,
//!   must be this server's own, exactly (the issuer's scheme and the `Host` the request was
//!   sent to), or one of the allowed origins; and a browser's `Sec-Fetch-Site: cross-site` is
//!   refused. The pages' `Referrer-Policy: same-origin` makes Chromium send a true `Origin`
//!   with same-origin forms rather than `null`, which is refused.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};

use crate::config::Origin;
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

/// A page rendered with the browser's token (`render` gets it for the form), setting the
/// cookie when the token is new.
pub fn with_token(headers: &HeaderMap, render: impl FnOnce(&str) -> Response) -> Response {
    let (token, fresh) = token(headers);
    let mut res = render(token.expose_secret());
    if fresh {
        set_cookie(&mut res, &token);
    }
    res
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
/// time), and the request's `Origin` (else its `Referer`), if any, is this server's own: the
/// host it was sent to, the origin of `tokens.issuer` (behind a proxy that rewrites `Host`) or
/// one of `http.cors_origins`.
pub fn check(
    headers: &HeaderMap,
    form_token: Option<&str>,
    allowed: &AllowedOrigins,
    issuer: &str,
) -> bool {
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
    same && !cross_site(headers)
        && (same_origin(headers, issuer) || allowed.check(headers, Missing::Allow).is_ok())
}

/// `Origin` (or, when a browser leaves it out, the origin of `Referer`) absent, or exactly this
/// server's: the scheme of `tokens.issuer` and the `Host` the request was sent to, as a browser
/// serialises an origin (RFC 6454 §6.2), compared as text.
fn same_origin(headers: &HeaderMap, issuer: &str) -> bool {
    let mut origins = headers.get_all(header::ORIGIN).iter();
    let origin = match (origins.next(), origins.next()) {
        (Some(_), Some(_)) => return false,
        (Some(origin), None) => origin.to_str().ok().map(str::to_owned),
        (None, _) => match headers.get(header::REFERER) {
            None => return true,
            // As cookie mode reads it (`http::csrf`): an http(s) origin, else none.
            Some(referer) => referer
                .to_str()
                .ok()
                .and_then(Origin::of_url)
                .map(|o| o.as_str().to_owned()),
        },
    };
    let (Some(origin), Some(host)) = (
        origin,
        headers.get(header::HOST).and_then(|h| h.to_str().ok()),
    ) else {
        return false;
    };
    let scheme = if issuer.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    origin == format!("{scheme}://{host}")
}

/// A browser that says the request is cross-site (Fetch Metadata, `Sec-Fetch-Site`).
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
}
