//! The HTTP client the verifier fetches metadata, keys and the feed with: rustls on aws-lc-rs
//! (the crypto library jsonwebtoken uses here too) with the platform's certificate verifier,
//! no redirects, and the configured timeout.

use std::time::Duration;

/// A client for `timeout` per request. Redirects are not followed: the issuer's documents are
/// fetched from the exact URLs it names.
pub(crate) fn build(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tessera-verify/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// `max-age` of a `Cache-Control` header (RFC 9111 §5.2.2.1), or `None` when absent or when
/// `no-store`/`no-cache` forbid reuse (then the caller's minimum applies).
pub(crate) fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let mut age = None;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "no-store" | "no-cache" => return Some(Duration::ZERO),
                "max-age" => {
                    age = arg
                        .trim()
                        .trim_matches('"')
                        .parse::<u64>()
                        .ok()
                        .map(Duration::from_secs)
                }
                _ => {}
            }
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(v: &str) -> Option<Duration> {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::CACHE_CONTROL, v.parse().unwrap());
        max_age(&h)
    }

    #[test]
    fn reads_max_age() {
        assert_eq!(cc("public, max-age=300"), Some(Duration::from_secs(300)));
        assert_eq!(cc("Max-Age=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(cc("no-store"), Some(Duration::ZERO));
        assert_eq!(cc("public"), None);
        assert_eq!(cc("max-age=-1"), None);
        assert_eq!(max_age(&http::HeaderMap::new()), None);
    }
}
