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

/// The origins allowed to use the refresh cookie, in the ASCII serialisation browsers send
/// (RFC 6454 §6.2: lowercase scheme and host, no default port, no trailing slash).
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins(Vec<String>);

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
    pub fn new(cors_origins: &[String], issuer: &str) -> Self {
        let mut list: Vec<String> = cors_origins
            .iter()
            .chain(std::iter::once(&issuer.to_string()))
            .filter_map(|o| normalize(o))
            .collect();
        list.sort();
        list.dedup();
        AllowedOrigins(list)
    }

    /// `Ok` when the request's origin is allowed; otherwise [`ApiError::CrossOrigin`] (403).
    pub fn check(&self, headers: &HeaderMap, missing: Missing) -> Result<(), ApiError> {
        match request_origin(headers) {
            None if missing == Missing::Allow => Ok(()),
            Some(origin) if self.0.contains(&origin) => Ok(()),
            _ => Err(ApiError::CrossOrigin),
        }
    }
}

/// The origin a request comes from: `Origin`, or else the origin of `Referer`. More than one
/// `Origin`, or a value that is not an origin, counts as the opaque origin `null`.
fn request_origin(headers: &HeaderMap) -> Option<String> {
    let mut origins = headers.get_all(header::ORIGIN).iter();
    if let Some(first) = origins.next() {
        if origins.next().is_some() {
            return Some("null".into());
        }
        let origin = first.to_str().ok().and_then(normalize);
        return Some(origin.unwrap_or_else(|| "null".into()));
    }
    let referer = headers.get(header::REFERER)?;
    Some(
        referer
            .to_str()
            .ok()
            .and_then(normalize)
            .unwrap_or_else(|| "null".into()),
    )
}

/// The ASCII serialisation of the origin of `url`, or `None` for an opaque origin (`null`,
/// `data:`, a string that is no URL).
pub fn normalize(url: &str) -> Option<String> {
    let origin = url::Url::parse(url).ok()?.origin();
    origin
        .is_tuple()
        .then(|| origin.ascii_serialization())
        .filter(|o| o.starts_with("https://") || o.starts_with("http://"))
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
            &["https://app.example.com".into()],
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
