//! Scopes and resources: what a token request asks for (RFC 6749 §3.3, RFC 8707), what a
//! client may be granted, and how a refresh may narrow what its session was granted.

use super::{Auth, AuthError, ClientId};

/// What a token request asks for, as sent: `scope` (RFC 6749 §3.3, space-separated) and
/// `resource` (RFC 8707 §2).
#[derive(Debug, Default, Clone)]
pub struct TokenRequest {
    pub scope: Option<String>,
    pub resource: Option<String>,
}

/// What a session is granted: the scope (space-separated; `None`: none asked for) and the
/// resource its tokens are for (`None`: `tokens.audience`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Granted {
    pub scope: Option<String>,
    pub resource: Option<String>,
}

impl Granted {
    /// What `session` was granted at login.
    pub fn of(session: &crate::store::Session) -> Self {
        Granted {
            scope: session.scope.clone(),
            resource: session.resource.clone(),
        }
    }
}

/// The scope-tokens of a `scope` parameter, in order, without repeats. `None` for an absent or
/// empty parameter.
fn scope_tokens(scope: Option<&str>) -> Option<Vec<&str>> {
    let mut out: Vec<&str> = Vec::new();
    for s in scope?.split(' ').filter(|s| !s.is_empty()) {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    (!out.is_empty()).then_some(out)
}

impl Auth {
    /// The scopes `client` may ask for.
    fn allowed_scopes(&self, client: &ClientId) -> &[String] {
        if client.as_str() == self.settings.tokens.client_id {
            return &self.settings.tokens.scopes;
        }
        self.settings
            .clients
            .iter()
            .find(|c| c.id == client.as_str())
            .map_or(&[], |c| c.scopes.as_slice())
    }

    /// What a new session of `client` is granted for `req`: the requested scopes that the
    /// client may ask for and that make sense for the resource (RFC 6749 §3.3), and the
    /// resource (RFC 8707).
    ///
    /// Errors: `InvalidTarget` (an unknown resource), `InvalidScope` (scopes were asked for
    /// and none may be granted).
    pub(super) fn grant(
        &self,
        client: &ClientId,
        req: &TokenRequest,
    ) -> Result<Granted, AuthError> {
        let resource = match req.resource.as_deref().filter(|r| !r.is_empty()) {
            None => None,
            Some(r) if r == self.settings.tokens.audience => None,
            Some(r) => Some(
                self.settings
                    .resources
                    .iter()
                    .find(|known| known.id == r)
                    .ok_or(AuthError::InvalidTarget)?,
            ),
        };
        let scope = match scope_tokens(req.scope.as_deref()) {
            None => None,
            Some(asked) => {
                let allowed = self.allowed_scopes(client);
                let granted: Vec<&str> = asked
                    .into_iter()
                    .filter(|s| allowed.iter().any(|a| a == s))
                    .filter(|s| resource.is_none_or(|r| r.scopes.iter().any(|a| a == s)))
                    .collect();
                if granted.is_empty() {
                    return Err(AuthError::InvalidScope);
                }
                Some(granted.join(" "))
            }
        };
        Ok(Granted {
            scope,
            resource: resource.map(|r| r.id.clone()),
        })
    }

    /// What an access token minted by a refresh carries: the session's grant, or a narrower
    /// scope if one is asked for (RFC 6749 §6). The resource cannot change.
    ///
    /// Errors: `InvalidScope` (a scope the session was not granted), `InvalidTarget` (another
    /// resource).
    pub(super) fn narrow(
        &self,
        session: &Granted,
        req: &TokenRequest,
    ) -> Result<Granted, AuthError> {
        if let Some(r) = req.resource.as_deref().filter(|r| !r.is_empty()) {
            let same = match &session.resource {
                Some(own) => own == r,
                None => r == self.settings.tokens.audience,
            };
            if !same {
                return Err(AuthError::InvalidTarget);
            }
        }
        let scope = match scope_tokens(req.scope.as_deref()) {
            None => session.scope.clone(),
            Some(asked) => {
                let held = scope_tokens(session.scope.as_deref()).unwrap_or_default();
                if !asked.iter().all(|s| held.contains(s)) {
                    return Err(AuthError::InvalidScope);
                }
                Some(asked.join(" "))
            }
        };
        Ok(Granted {
            scope,
            resource: session.resource.clone(),
        })
    }

    /// Every scope any client may ask for (discovery's `scopes_supported`), sorted.
    pub fn scopes_supported(&self) -> Vec<String> {
        let s = &self.settings;
        let mut all: Vec<String> = s
            .tokens
            .scopes
            .iter()
            .chain(s.clients.iter().flat_map(|c| &c.scopes))
            .chain(s.resources.iter().flat_map(|r| &r.scopes))
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        all
    }
}
