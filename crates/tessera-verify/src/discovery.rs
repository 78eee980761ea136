//! Finding the issuer's keys: RFC 8414 metadata discovery, and the URL rules (https, or http
//! to the loopback or when allowed).

use serde::Deserialize;

use crate::error::SetupError;

/// Largest metadata document read (bytes).
const MAX_METADATA_BYTES: usize = 256 * 1024;

/// `https://`, or `http://` to the loopback or with `allow_http`.
pub(crate) fn check_url(url: &str, allow_http: bool) -> Result<(), SetupError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| SetupError::Config(format!("{url:?} is not a URL")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_http || loopback => Ok(()),
        _ => Err(SetupError::Config(format!(
            "{url} must be https (or call allow_http() for a trusted network)"
        ))),
    }
}

/// The members of RFC 8414 metadata the verifier uses.
#[derive(Deserialize)]
pub(crate) struct Metadata {
    issuer: String,
    pub(crate) jwks_uri: String,
    #[serde(default)]
    pub(crate) revocation_feed_endpoint: Option<String>,
}

/// Reads the issuer's metadata: first at the RFC 8414 §3.1 location (the well-known suffix
/// inserted before the issuer's path), then, for an issuer with a path, appended to it. The
/// document's `issuer` must equal `issuer` exactly (RFC 8414 §3.3).
pub(crate) async fn discover(
    http: &reqwest::Client,
    issuer: &str,
    allow_http: bool,
) -> Result<Metadata, SetupError> {
    const SUFFIX: &str = "/.well-known/oauth-authorization-server";
    let trimmed = issuer.trim_end_matches('/');
    let mut urls = vec![];
    match trimmed.find("://").map(|i| i + 3) {
        Some(start) => match trimmed[start..].find('/') {
            Some(p) => {
                let (origin, path) = trimmed.split_at(start + p);
                urls.push(format!("{origin}{SUFFIX}{path}"));
                urls.push(format!("{trimmed}{SUFFIX}"));
            }
            None => urls.push(format!("{trimmed}{SUFFIX}")),
        },
        None => return Err(SetupError::Config(format!("{issuer:?} is not a URL"))),
    }
    let mut last = None;
    for url in urls {
        check_url(&url, allow_http)?;
        match fetch_json(http, &url).await {
            Ok(body) => {
                let meta: Metadata = serde_json::from_slice(&body)
                    .map_err(|e| SetupError::Metadata(e.to_string()))?;
                if meta.issuer != issuer {
                    return Err(SetupError::IssuerMismatch {
                        expected: issuer.to_string(),
                        found: meta.issuer,
                    });
                }
                return Ok(meta);
            }
            Err(reason) => last = Some(SetupError::Fetch { url, reason }),
        }
    }
    Err(last.unwrap_or_else(|| SetupError::Config("no metadata URL".into())))
}

async fn fetch_json(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let res = http
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(crate::keys::describe)?;
    if res.status() != reqwest::StatusCode::OK {
        return Err(format!("status {}", res.status().as_u16()));
    }
    crate::keys::read_capped(res, MAX_METADATA_BYTES).await
}
