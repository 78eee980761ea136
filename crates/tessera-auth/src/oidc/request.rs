//! Checking an authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, OIDC Core §3.1.2.1).
//! The client and the redirect URI come first: until both are verified, an error is Tessera's
//! own page and never a redirect (invariant 8).

use super::{
    error_redirect, AuthorizationRequest, AuthorizeError, AuthorizeParams, Prompt, ResponseMode,
};
use crate::{Auth, AuthError, ClientId, TokenRequest};

/// The longest `state` and `nonce` kept (bytes): longer ones are refused, not cut.
const MAX_PARAM_BYTES: usize = 2048;

/// Whether `presented` is the registered redirect URI `registered`: the same string, except
/// that for an http loopback URI (`127.0.0.1`, `[::1]` or `localhost`) the port may differ
/// (RFC 8252 §7.3). The comparison is on the text, never on a parsed and normalised URL: a
/// prefix, another path or query, another spelling of the host (`127.1`, `0x7f000001`, a
/// trailing dot), a backslash, `..` segments or a fragment never match (RFC 9700 §4.1.3).
pub fn redirect_uri_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let (Some((r_host, _, r_rest)), Some((p_host, p_port, p_rest))) =
        (loopback_parts(registered), loopback_parts(presented))
    else {
        return false;
    };
    r_host == p_host && r_rest == p_rest && p_port.is_none_or(is_port)
}

/// An `http://` loopback URI as `(host, port, rest)`, split on the text: `host` is exactly
/// `127.0.0.1`, `[::1]` or `localhost`, `port` the text after `:`, if any, and `rest` the
/// path and query that follow (starting with `/`).
fn loopback_parts(uri: &str) -> Option<(&str, Option<&str>, &str)> {
    let after = uri.strip_prefix("http://")?;
    let end = after.find('/')?;
    let (authority, rest) = after.split_at(end);
    if rest.contains(['#', '\\']) {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if h == "[::1]" || !h.contains(':') => (h, Some(p)),
        _ => (authority, None),
    };
    matches!(host, "127.0.0.1" | "[::1]" | "localhost").then_some((host, port, rest))
}

/// A port as a browser writes it: 1 to 65535, no leading zero.
fn is_port(p: &str) -> bool {
    !p.starts_with('0')
        && p.len() <= 5
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
}

/// RFC 7636 §4.2: 43 to 128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
pub(crate) fn is_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

impl Auth {
    /// Checks an authorization request.
    ///
    /// Errors: `Page` (no or unknown `client_id`, a client without redirect URIs, no or an
    /// unregistered `redirect_uri`); `Redirect` with `unsupported_response_type`,
    /// `invalid_request` (PKCE missing or not S256, a malformed `prompt`, `max_age`,
    /// `response_mode`, `state` or `nonce`), `unauthorized_client`, `invalid_scope`,
    /// `invalid_target`, `request_not_supported`, `invalid_request_uri`.
    pub fn authorization_request(
        &self,
        p: &AuthorizeParams,
    ) -> Result<AuthorizationRequest, AuthorizeError> {
        let (client_id, client, redirect_uri) = self.verified_redirect(p)?;
        let response_mode = match p.response_mode.as_deref() {
            None | Some("query") => ResponseMode::Query,
            Some("form_post") => ResponseMode::FormPost,
            Some(_) => ResponseMode::Query,
        };
        // A state too long to keep is refused without being sent back.
        let state_too_long = p
            .state
            .as_deref()
            .is_some_and(|s| s.len() > MAX_PARAM_BYTES);
        let state = p
            .state
            .as_deref()
            .filter(|s| !s.is_empty() && !state_too_long);
        let fail = |error: &'static str, why: &str| {
            error_redirect(redirect_uri, response_mode, state, error, why)
        };
        if !matches!(
            p.response_mode.as_deref(),
            None | Some("query" | "form_post")
        ) {
            return Err(fail("invalid_request", "unsupported response_mode"));
        }
        if state_too_long {
            return Err(fail("invalid_request", "state too long"));
        }
        code_request(p, &fail)?;
        if !client.allows_grant("authorization_code") {
            return Err(fail(
                "unauthorized_client",
                "the client may not use the authorization code grant",
            ));
        }
        let code_challenge = pkce_challenge(p, &fail)?;
        let nonce = p.nonce.clone().filter(|n| !n.is_empty());
        if nonce.as_ref().is_some_and(|n| n.len() > MAX_PARAM_BYTES) {
            return Err(fail("invalid_request", "nonce too long"));
        }
        let (prompt, max_age, hint_sub) = self.sign_in_params(p, &fail)?;
        let asked = TokenRequest {
            scope: p.scope.clone(),
            resource: p.resource.clone(),
        };
        let granted = self
            .grant(&ClientId::registered(client_id), &asked)
            .map_err(|e| match e {
                AuthError::InvalidTarget => fail("invalid_target", "unknown resource"),
                _ => fail("invalid_scope", "none of the requested scopes is allowed"),
            })?;
        Ok(AuthorizationRequest {
            client_id: client_id.to_string(),
            redirect_uri: redirect_uri.to_string(),
            response_mode,
            state: state.map(str::to_string),
            nonce,
            code_challenge,
            granted,
            prompt,
            max_age,
            login_hint: p.login_hint.clone(),
            hint_sub,
            ui_locales: p.ui_locales.clone(),
            acr: weakest_acr(p.acr_values.as_deref(), self.passkeys_enabled()),
            first_party: client.first_party,
            params: p.clone(),
            pushed: None,
        })
    }

    /// The client and its redirect URI, both verified (never redirect to an unverified URI):
    /// `Page` errors when the client is missing, unknown or has no redirect URIs, or the
    /// redirect URI is missing or not registered (loopback ports aside, RFC 8252 §7.3).
    fn verified_redirect<'p>(
        &self,
        p: &'p AuthorizeParams,
    ) -> Result<(&'p str, &crate::config::ClientSettings, &'p str), AuthorizeError> {
        let client_id = p
            .client_id
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| AuthorizeError::Page("The request names no client.".into()))?;
        let client = self
            .client_settings(client_id)
            .filter(|c| !c.redirect_uris.is_empty())
            .ok_or_else(|| AuthorizeError::Page("The application is not registered.".into()))?;
        let redirect_uri = p
            .redirect_uri
            .as_deref()
            .filter(|presented| {
                client
                    .redirect_uris
                    .iter()
                    .any(|r| redirect_uri_matches(r, presented))
            })
            .ok_or_else(|| {
                AuthorizeError::Page(
                    "The application's redirect URI is missing or not registered.".into(),
                )
            })?;
        Ok((client_id, client, redirect_uri))
    }

    /// `prompt`, `max_age` (seconds) and the `sub` of `id_token_hint`, checked: what decides
    /// whether the browser signs in again (OIDC Core §3.1.2.1).
    fn sign_in_params(
        &self,
        p: &AuthorizeParams,
        fail: &dyn Fn(&'static str, &str) -> AuthorizeError,
    ) -> Result<(Prompt, Option<i64>, Option<String>), AuthorizeError> {
        let prompt = parse_prompt(p.prompt.as_deref())
            .ok_or_else(|| fail("invalid_request", "malformed prompt"))?;
        let max_age = match p.max_age.as_deref() {
            None => None,
            Some(m) => Some(
                m.parse::<u32>()
                    .map_err(|_| fail("invalid_request", "malformed max_age"))?
                    .into(),
            ),
        };
        // OIDC Core §3.1.2.1: an ID token this server issued to this client ("previously
        // issued ... with the Client"), expired or not; anything else is a malformed request,
        // as at the end-session endpoint.
        let hint_sub = match p.id_token_hint.as_deref() {
            None => None,
            Some(t) => {
                let hint = self.id_token_hint(t).ok_or_else(|| {
                    fail(
                        "invalid_request",
                        "id_token_hint is not an ID token issued by this server",
                    )
                })?;
                if p.client_id.as_deref() != Some(hint.client_id.as_str()) {
                    return Err(fail(
                        "invalid_request",
                        "id_token_hint was not issued to this client",
                    ));
                }
                Some(hint.sub)
            }
        };
        Ok((prompt, max_age, hint_sub))
    }
}

/// A request for a code (RFC 6749 §4.1.1), without a request object (OIDC Core §6): the one
/// kind Tessera answers.
fn code_request(
    p: &AuthorizeParams,
    fail: &dyn Fn(&'static str, &str) -> AuthorizeError,
) -> Result<(), AuthorizeError> {
    if p.request.is_some() {
        return Err(fail(
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    if p.request_uri.is_some() {
        return Err(fail(
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    match p.response_type.as_deref() {
        Some("code") => Ok(()),
        None => Err(fail("invalid_request", "missing response_type")),
        Some(_) => Err(fail(
            "unsupported_response_type",
            "only response_type=code is supported",
        )),
    }
}

/// The PKCE challenge (RFC 7636 §4.3): S256 only, from every client.
fn pkce_challenge(
    p: &AuthorizeParams,
    fail: &dyn Fn(&'static str, &str) -> AuthorizeError,
) -> Result<String, AuthorizeError> {
    match (
        p.code_challenge.as_deref(),
        p.code_challenge_method.as_deref(),
    ) {
        (None, _) => Err(fail("invalid_request", "code_challenge is required (PKCE)")),
        // An S256 challenge is the base64url of a SHA-256: 43 characters.
        (Some(c), Some("S256")) if is_pkce_value(c) && c.len() == 43 => Ok(c.to_string()),
        (Some(_), Some("S256")) => Err(fail("invalid_request", "malformed code_challenge")),
        (Some(_), _) => Err(fail(
            "invalid_request",
            "code_challenge_method must be S256",
        )),
    }
}

/// `prompt`: space-separated `none`, `login`, `consent`, `select_account`; `none` alone.
fn parse_prompt(raw: Option<&str>) -> Option<Prompt> {
    let mut p = Prompt::default();
    let Some(raw) = raw else { return Some(p) };
    let mut any = false;
    for v in raw.split(' ').filter(|v| !v.is_empty()) {
        any = true;
        match v {
            "none" => p.none = true,
            "login" => p.login = true,
            "consent" => p.consent = true,
            // Tessera keeps one account per browser: choosing one is logging in again.
            "select_account" => p.login = true,
            _ => return None,
        }
    }
    if p.none && (p.login || p.consent) {
        return None;
    }
    (any || raw.is_empty()).then_some(p)
}

/// The weakest of the `acr_values` Tessera can reach (`tessera_proto::claims::acr`: "1",
/// "2", and "3" where `passkeys` are on); other values are left out, and with none left, any
/// sign-in will do (OIDC Core §3.1.2.1: `acr_values` is a voluntary claim).
fn weakest_acr(raw: Option<&str>, passkeys: bool) -> Option<&'static str> {
    use tessera_proto::claims::acr;
    let known = [acr::PASSWORD, acr::MFA, acr::PHISHING_RESISTANT];
    let reachable = if passkeys { 3 } else { 2 };
    raw?.split(' ')
        .filter_map(|v| known[..reachable].iter().position(|k| *k == v))
        .min()
        .map(|i| known[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_match_exactly_or_by_loopback_port() {
        let reg = "https://app.example/cb";
        assert!(redirect_uri_matches(reg, reg));
        for bad in [
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "https://app.example/cb#f",
            "https://app.example/cbx",
            "https://app.example/c",
            "https://app.example:443/cb",
            "https://APP.example/cb",
            "https://app.example.evil/cb",
            "http://app.example/cb",
        ] {
            assert!(!redirect_uri_matches(reg, bad), "{bad}");
        }
        let lo = "http://127.0.0.1/cb";
        assert!(redirect_uri_matches(lo, "http://127.0.0.1:53121/cb"));
        assert!(redirect_uri_matches(
            "http://[::1]:80/cb",
            "http://[::1]:4000/cb"
        ));
        for bad in [
            "http://127.0.0.1:53121/cb2",
            "http://127.0.0.1:53121/cb?x",
            "http://127.0.0.2:53121/cb",
            "http://127.0.0.1:53121/cb#x",
            "https://127.0.0.1:53121/cb",
            "http://u@127.0.0.1:53121/cb",
            // Other spellings of the same address or path (found by probing).
            "HTTP://127.0.0.1:53121/cb",
            "http://127.0.0.1:53121/x/../cb",
            "http://127.0.0.1:53121/./cb",
            "http://127.0.0.1:53121\\cb",
            "http:\\\\127.0.0.1:53121\\cb",
            "http://127.1:53121/cb",
            "http://2130706433:53121/cb",
            "http://0x7f000001:53121/cb",
            "http://0177.0.0.1:53121/cb",
            "http://127.0.0.1.:53121/cb",
            "http://%31%32%37.0.0.1:53121/cb",
            "http:127.0.0.1:53121/cb",
            "http:/127.0.0.1:53121/cb",
            "http://127.0.0.1:/cb",
            "http://127.0.0.1:080/cb",
            "http://127.0.0.1:0/cb",
            "http://127.0.0.1:65536/cb",
            "http://localhost:53121/cb",
        ] {
            assert!(!redirect_uri_matches(lo, bad), "{bad}");
        }
    }

    #[test]
    fn pkce_values_and_prompts() {
        assert!(is_pkce_value(&"a".repeat(43)));
        assert!(!is_pkce_value(&"a".repeat(42)));
        assert!(!is_pkce_value(&"a".repeat(129)));
        assert!(!is_pkce_value(&format!("{}+", "a".repeat(43))));
        assert_eq!(parse_prompt(Some("none")).map(|p| p.none), Some(true));
        assert!(parse_prompt(Some("none login")).is_none());
        assert!(parse_prompt(Some("bogus")).is_none());
        assert_eq!(
            parse_prompt(Some("login consent")),
            Some(Prompt {
                none: false,
                login: true,
                consent: true
            })
        );
    }

    #[test]
    fn acr_values_ask_for_their_weakest_known_value() {
        assert_eq!(weakest_acr(None, true), None);
        assert_eq!(weakest_acr(Some("urn:other"), true), None);
        assert_eq!(weakest_acr(Some("2"), true), Some("2"));
        assert_eq!(weakest_acr(Some("3 2"), true), Some("2"));
        assert_eq!(weakest_acr(Some("3"), true), Some("3"));
        // Not reachable without passkeys: not asked for.
        assert_eq!(weakest_acr(Some("3"), false), None);
        assert_eq!(weakest_acr(Some("urn:other 1 2"), false), Some("1"));
    }
}
