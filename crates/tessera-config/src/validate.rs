//! The rules that span several settings, checked once the tree is parsed (`Settings::load`).
//! Each value's own form (origins, CIDRs, the algorithm) was checked when it was parsed.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::{ConfigError, Settings};

impl Settings {
    /// Checks the rules that span several values; each value's own form was checked when it
    /// was parsed. The first broken rule is the error.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.validate_keys()?;
        self.validate_password()?;
        self.validate_limits()?;
        self.validate_scopes()?;
        self.validate_resources()?;
        self.validate_webauthn()?;
        self.validate_mail()?;
        self.validate_clients()
    }

    fn validate_mail(&self) -> Result<(), ConfigError> {
        let m = &self.mail;
        if m.max_attempts < 1 || m.max_attempts > 100 {
            return err("mail.max_attempts must be 1 to 100");
        }
        if let Some(url) = &m.smtp_url {
            let parsed = url::Url::parse(url.expose_secret())
                .map_err(|_| ConfigError("mail.smtp_url is not a URL".into()))?;
            let tls = parsed.scheme() == "smtps"
                || parsed
                    .query_pairs()
                    .any(|(k, v)| k == "tls" && v == "required");
            // smtp:// is not a special scheme: its host stays a string, even an IP address.
            let loopback = match parsed.host() {
                Some(url::Host::Domain(d)) => {
                    d == "localhost"
                        || d.trim_start_matches('[')
                            .trim_end_matches(']')
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback())
                }
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if !matches!(parsed.scheme(), "smtp" | "smtps") {
                return err("mail.smtp_url must be smtps://… or smtp://…");
            }
            if !tls && !loopback {
                return err("mail.smtp_url without TLS (smtps://, or smtp://…?tls=required) may only name a loopback host");
            }
            if m.from.trim().is_empty() {
                return err("mail.from must be set when mail.smtp_url is");
            }
        }
        if !matches!(self.accounts.signup.as_str(), "closed" | "invite" | "open") {
            return err("accounts.signup must be \"closed\", \"invite\" or \"open\"");
        }
        if !self.accounts.link_base.is_empty() {
            let ok = url::Url::parse(&self.accounts.link_base)
                .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.fragment().is_none());
            if !ok {
                return err("accounts.link_base must be an http(s) URL without a fragment");
            }
        }
        Ok(())
    }

    fn validate_webauthn(&self) -> Result<(), ConfigError> {
        let w = &self.webauthn;
        if !matches!(w.user_verification.as_str(), "required" | "preferred") {
            return err("webauthn.user_verification must be \"required\" or \"preferred\"");
        }
        if w.ceremony_ttl < Duration::from_secs(30) || w.ceremony_ttl > Duration::from_secs(600) {
            return err("webauthn.ceremony_ttl must be 30s to 10m");
        }
        if let Some((rp_id, origins)) = w.relying_party(&self.tokens.issuer) {
            let id = rp_id.to_ascii_lowercase();
            for o in &origins {
                let host = url::Url::parse(o.as_str())
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                    .unwrap_or_default();
                if host != id && !host.ends_with(&format!(".{id}")) {
                    return Err(ConfigError(format!(
                        "webauthn.rp_id {rp_id:?} must be the host of every webauthn origin or a parent domain of it; {o} is not"
                    )));
                }
            }
        }
        Ok(())
    }

    fn validate_keys(&self) -> Result<(), ConfigError> {
        if self.publish_ahead() < self.keys.jwks_max_age {
            // Invariant 3: verifiers may cache the JWKS for jwks_max_age; a key that signed
            // sooner after publication could be unknown to them.
            return err("keys.publish_ahead must be at least keys.jwks_max_age");
        }
        if !matches!(self.keys.rsa_bits, 2048 | 3072) {
            return err("keys.rsa_bits must be 2048 or 3072");
        }
        Ok(())
    }

    fn validate_password(&self) -> Result<(), ConfigError> {
        let p = &self.password;
        if p.min_length < 8 || p.min_length > 64 || p.min_score > 4 {
            return err("password.min_length must be 8 to 64 and password.min_score 0 to 4");
        }
        if p.yield_every > Duration::from_millis(100) {
            return err("password.yield_every must be at most 100ms (0s turns it off)");
        }
        if p.m_cost < 19456 || p.t_cost < 2 || p.p_cost < 1 {
            // OWASP's minimum for argon2id. Lower values are refused rather than silently used.
            return err(
                "password parameters below the OWASP minimum (m_cost=19456, t_cost=2, p_cost=1)",
            );
        }
        if p.m_cost > p.max_argon2_m_cost || p.t_cost > p.max_argon2_t_cost {
            return err("password.m_cost and t_cost must not exceed password.max_argon2_m_cost and max_argon2_t_cost");
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        if self.revocation.max_lag < Duration::from_millis(100)
            || self.revocation.max_lag > Duration::from_secs(60)
        {
            return err("revocation.max_lag must be between 100ms and 60s");
        }
        if self.tokens.access_ttl < Duration::from_secs(1) {
            return err("tokens.access_ttl must be at least 1s");
        }
        if self.sessions.idle_ttl.is_zero() || self.sessions.absolute_ttl.is_zero() {
            return err("sessions.idle_ttl and sessions.absolute_ttl must be positive");
        }
        if self
            .metrics
            .bearer_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().trim().is_empty())
        {
            return err("metrics.bearer_token must not be empty (leave it unset to open /metrics)");
        }
        if self.http.body_limit == 0 || self.http.max_header_bytes < 8192 {
            return err("http.body_limit must be positive and http.max_header_bytes at least 8192");
        }
        if self.tokens.issuer.is_empty() || self.tokens.audience.is_empty() {
            return err("tokens.issuer and tokens.audience must not be empty");
        }
        // RFC 8414 §2, OIDC Discovery §3: an https (here also http, for development) URL with
        // a host and no query or fragment; every endpoint's URL is built on it.
        let issuer_ok = url::Url::parse(&self.tokens.issuer).is_ok_and(|u| {
            matches!(u.scheme(), "https" | "http")
                && u.host_str().is_some_and(|h| !h.is_empty())
                && u.query().is_none()
                && u.fragment().is_none()
                && u.username().is_empty()
                && u.password().is_none()
        }) && !self.tokens.issuer.contains(['?', '#']);
        if !issuer_ok {
            return err("tokens.issuer must be an https or http URL with a host and no query, fragment or user (RFC 8414 §2)");
        }
        Ok(())
    }

    fn validate_scopes(&self) -> Result<(), ConfigError> {
        let all_scopes = self
            .tokens
            .scopes
            .iter()
            .chain(self.clients.iter().flat_map(|c| &c.scopes))
            .chain(self.resources.iter().flat_map(|r| &r.scopes));
        // RFC 6749 §3.3: scope-token = 1*NQCHAR.
        let nqchar = |b: u8| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b);
        for scope in all_scopes {
            if scope.is_empty() || !scope.bytes().all(nqchar) {
                return err("scopes must be non-empty and contain no spaces, quotes or backslashes (RFC 6749 §3.3)");
            }
        }
        Ok(())
    }

    fn validate_resources(&self) -> Result<(), ConfigError> {
        let mut resource_ids = std::collections::HashSet::new();
        for r in &self.resources {
            let absolute = r.id.contains(':') && !r.id.contains('#') && !r.id.contains(' ');
            if !absolute || r.id == self.tokens.audience || !resource_ids.insert(r.id.as_str()) {
                return err("every [[resources]] entry needs a unique absolute URI id without a fragment (RFC 8707 §2), other than tokens.audience");
            }
        }
        Ok(())
    }

    fn validate_clients(&self) -> Result<(), ConfigError> {
        let mut ids = std::collections::HashSet::new();
        for c in &self.clients {
            if c.id.is_empty() || c.id.contains(':') || !ids.insert(c.id.as_str()) {
                return err("every [[clients]] entry needs a unique, non-empty id without ':'");
            }
            if c.id == self.tokens.client_id {
                return err("a [[clients]] id must differ from tokens.client_id (the public first-party client)");
            }
            c.validate()
                .map_err(|rule| ConfigError(format!("[[clients]] entry \"{}\": {rule}", c.id)))?;
        }
        if self.sso.idle_ttl.is_zero() || self.sso.absolute_ttl < self.sso.idle_ttl {
            return err("sso.idle_ttl must be positive and at most sso.absolute_ttl");
        }
        Ok(())
    }
}

fn err(message: &str) -> Result<(), ConfigError> {
    Err(ConfigError(message.to_string()))
}
