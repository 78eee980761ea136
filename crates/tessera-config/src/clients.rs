//! The rules of one `[[clients]]` entry, checked at start-up so that a bad entry never serves:
//! what its redirect URIs may be (RFC 6749 §3.1.2, RFC 8252 §7.3, RFC 9700 §4.1.3), and how
//! its secret, its kind and its grants fit together.

use secrecy::ExposeSecret;

use super::ClientSettings;

/// The grants `grant_types` may name.
const GRANTS: [&str; 4] = [
    "authorization_code",
    "refresh_token",
    "password",
    "urn:ietf:params:oauth:grant-type:device_code",
];

impl ClientSettings {
    /// Checks this entry. The error names the rule broken (the caller adds the client's id).
    pub(crate) fn validate(&self) -> Result<(), String> {
        match (&self.secret, self.public) {
            (Some(_), true) => return Err("a public client has no secret".into()),
            (Some(s), false) if s.expose_secret().len() >= 16 => {}
            (None, true) => {}
            _ => {
                return Err(
                    "needs a secret (or secret_file) of at least 16 characters, or public = true"
                        .into(),
                )
            }
        }
        for uri in self
            .redirect_uris
            .iter()
            .chain(&self.post_logout_redirect_uris)
        {
            check_redirect_uri(uri).map_err(|rule| format!("redirect URI {uri:?}: {rule}"))?;
        }
        if let Some(uri) = &self.backchannel_logout_uri {
            check_redirect_uri(uri)
                .map_err(|rule| format!("backchannel_logout_uri {uri:?}: {rule}"))?;
        }
        if let Some(grants) = &self.grant_types {
            if let Some(g) = grants.iter().find(|g| !GRANTS.contains(&g.as_str())) {
                return Err(format!(
                    "unknown grant type {g:?} (known: authorization_code, refresh_token, password, urn:ietf:params:oauth:grant-type:device_code)"
                ));
            }
        }
        if self.allows_grant("authorization_code")
            && self.grant_types.is_some()
            && self.redirect_uris.is_empty()
        {
            return Err("the authorization_code grant needs redirect_uris".into());
        }
        Ok(())
    }
}

/// A URI the browser may be sent to: absolute, https or http on a loopback host, with no
/// fragment, no credentials and no wildcard. Errors: the rule broken.
pub fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    if uri.contains('*') {
        return Err("wildcards are not allowed: every redirect URI is matched exactly");
    }
    if uri.contains('#') {
        return Err("a redirect URI may not have a fragment (RFC 6749 §3.1.2)");
    }
    let url = url::Url::parse(uri).map_err(|_| "not an absolute URI")?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a redirect URI may not carry credentials");
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        _ => Err("must be https, or http on a loopback host (RFC 8252 §7.3)"),
    }
}

/// `127.0.0.1` (any of 127/8), `[::1]` or `localhost`.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_follow_the_rules() {
        for ok in [
            "https://app.example/cb",
            "https://app.example:8443/cb?x=1",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:8080/cb",
            "http://[::1]:9000/cb",
            "http://localhost:3000/cb",
        ] {
            assert_eq!(check_redirect_uri(ok), Ok(()), "{ok}");
        }
        for (bad, rule) in [
            ("https://app.example/cb#x", "fragment"),
            ("https://*.app.example/cb", "wildcard"),
            ("https://app.example/*", "wildcard"),
            ("http://app.example/cb", "https"),
            ("com.example.app:/cb", "https"),
            ("/cb", "absolute"),
            ("https://user:pw@app.example/cb", "credentials"),
            ("javascript:alert(1)", "https"),
        ] {
            let e = check_redirect_uri(bad).unwrap_err();
            assert!(e.contains(rule), "{bad}: {e}");
        }
    }
}
