//! The CSRF defence of cookie mode (`sessions.refresh_cookie = true`).
//!
//! Two layers, after the OWASP CSRF Prevention Cheat Sheet:
//! - the refresh cookie is `SameSite=Strict`, so a browser never attaches it to a request that
//!   another site starts;
//! - every request that the cookie authenticates must name, in `Origin` (or, when a browser
//!   leaves that out, `Referer`), an origin of `http.cors_origins` or Tessera's own (the origin of
//!   `tokens.issuer`). A request naming neither is refused too: browsers always send one of them
//!   on a `POST`, so its absence means a client that should not be using the cookie.
//!
//! `/login` sets the cookie without reading one; there the check applies only when the request
//! names an origin (login CSRF: a page of another site logging the browser into its account).

use axum::http::{header, HeaderMap};

use super::error::ApiError;
use crate::config::Origin;

/// The origins allowed to use the refresh cookie, in the ASCII serialisation browsers send
/// (RFC 6454 §6.2: lowercase scheme and host, no default port, no trailing slash).
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins(Vec<Origin>);

/// Whether a request without `Origin` and `Referer` passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// A cookie-authenticated request: it must name its origin.
    Refuse,
    /// `/login`: non-browser clients name none.
    Allow,
}

impl AllowedOrigins {
    /// `http.cors_origins` plus the origin of `issuer`.
    pub fn new(cors_origins: &[Origin], issuer: &str) -> Self {
        let mut list: Vec<Origin> = cors_origins
            .iter()
            .cloned()
            .chain(Origin::of_url(issuer))
            .collect();
        list.sort();
        list.dedup();
        AllowedOrigins(list)
    }

    /// `Ok` when the request's origin is allowed; otherwise [`ApiError::CrossOrigin`] (403).
    pub fn check(&self, headers: &HeaderMap, missing: Missing) -> Result<(), ApiError> {
        match request_origin(headers) {
            None if missing == Missing::Allow => Ok(()),
            Some(Some(origin)) if self.0.contains(&origin) => Ok(()),
            _ => Err(ApiError::CrossOrigin),
        }
    }
}

/// The origin a request comes from: `Origin`, or else the origin of `Referer`; `None` when it
/// names neither. More than one `Origin`, or a value that is not an origin, is the opaque
/// origin `null`: `Some(None)`.
fn request_origin(headers: &HeaderMap) -> Option<Option<Origin>> {
    let mut origins = headers.get_all(header::ORIGIN).iter();
    if let Some(first) = origins.next() {
        if origins.next().is_some() {
            return Some(None);
        }
        return Some(first.to_str().ok().and_then(Origin::of_url));
    }
    let referer = headers.get(header::REFERER)?;
    Some(referer.to_str().ok().and_then(Origin::of_url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_check() {
        let allowed = AllowedOrigins::new(
            &[Origin::of_url("https://app.example.com").unwrap()],
            "https://auth.example.com/tenant",
        );
        let ok = |h: &[(&'static str, &'static str)], m| allowed.check(&headers(h), m).is_ok();
        assert!(ok(
            &[("origin", "https://app.example.com")],
            Missing::Refuse
        ));
        assert!(ok(
            &[("origin", "https://auth.example.com")],
            Missing::Refuse
        ));
        assert!(ok(
            &[("origin", "HTTPS://APP.example.com:443")],
            Missing::Refuse
        ));
        assert!(ok(
            &[("referer", "https://app.example.com/page?x=1")],
            Missing::Refuse
        ));
        assert!(!ok(&[("origin", "https://evil.example")], Missing::Refuse));
        assert!(!ok(
            &[("origin", "https://app.example.com:8443")],
            Missing::Refuse
        ));
        assert!(!ok(
            &[("origin", "http://app.example.com")],
            Missing::Refuse
        ));
        assert!(!ok(&[("origin", "null")], Missing::Allow));
        // Origin wins over Referer.
        assert!(!ok(
            &[
                ("origin", "https://evil.example"),
                ("referer", "https://app.example.com/")
            ],
            Missing::Refuse
        ));
        assert!(!ok(
            &[
                ("origin", "https://app.example.com"),
                ("origin", "https://evil.example")
            ],
            Missing::Allow
        ));
        assert!(!ok(&[], Missing::Refuse));
        assert!(ok(&[], Missing::Allow));
    }
}
