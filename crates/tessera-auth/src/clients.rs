//! OAuth clients: who is asking, at `/token`, `/revoke`, `/introspect` and the revocation feed.
//!
//! - The first-party client (`tokens.client_id`, `tessera` by default) is public: it presents
//!   no secret (RFC 6749 §2.1), and `/login` and `/refresh` act for it.
//! - Confidential clients (`[[clients]]`) authenticate with a secret (RFC 6749 §2.3.1), by
//!   HTTP Basic or form parameters; the transport is the HTTP layer's business, the check is
//!   here, in constant time.

use secrecy::{ExposeSecret, SecretString};

use super::{Auth, AuthError};

/// An authenticated client (or the public first-party client). Only this module makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(String);

impl ClientId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a request presented its client.
#[derive(Debug)]
pub enum ClientAuth {
    /// No secret (`none`): the public first-party client, named or not.
    Public { client_id: Option<String> },
    /// A secret (`client_secret_basic` or `client_secret_post`). `readings` holds each
    /// reading of the id and secret the transport allows (HTTP Basic has two: RFC 6749
    /// §2.3.1's form-encoded one and RFC 7617's raw one); any may match. `claimed_id` is a
    /// `client_id` parameter sent alongside, which must name the same client.
    Secret {
        readings: Vec<(String, SecretString)>,
        claimed_id: Option<String>,
    },
}

impl Auth {
    /// The public first-party client, which `/login` and `/refresh` act for.
    pub fn first_party(&self) -> ClientId {
        ClientId(self.settings.tokens.client_id.clone())
    }

    /// Client authentication for `/token` and `/revoke`: a confidential client with its
    /// secret, or the public first-party client without one. A failure is an audit event.
    ///
    /// Errors: `InvalidClient` (a wrong secret, an unknown client, a confidential client
    /// without its secret, or a `client_id` that names another client than the secret's).
    pub async fn authenticate_client(&self, auth: &ClientAuth) -> Result<ClientId, AuthError> {
        let checked = self.check_client(auth);
        if checked.is_err() {
            self.client_auth_failed(auth).await;
        }
        checked
    }

    /// Client authentication for introspection and the revocation feed, which only
    /// confidential clients may use. A failure is an audit event.
    ///
    /// Errors: `InvalidClient`.
    pub async fn authenticate_confidential_client(
        &self,
        auth: &ClientAuth,
    ) -> Result<ClientId, AuthError> {
        let checked = match auth {
            ClientAuth::Public { .. } => Err(AuthError::InvalidClient),
            secret => self.check_client(secret),
        };
        if checked.is_err() {
            self.client_auth_failed(auth).await;
        }
        checked
    }

    /// Records a failed client authentication, naming the client only when it is one Tessera
    /// knows (a name sent by anyone would let them write what they like into the trail).
    async fn client_auth_failed(&self, auth: &ClientAuth) {
        let named = match auth {
            ClientAuth::Public { client_id } => client_id.clone(),
            ClientAuth::Secret {
                readings,
                claimed_id,
            } => claimed_id
                .clone()
                .or_else(|| readings.first().map(|(id, _)| id.clone())),
        };
        let known = named.filter(|id| {
            *id == self.settings.tokens.client_id
                || self.settings.clients.iter().any(|c| c.id == *id)
        });
        let (record, reason) = match (&known, auth) {
            (None, _) => (super::audit::Record::default(), "unknown_client"),
            (Some(id), ClientAuth::Public { .. }) => {
                (super::audit::Record::default().client(id), "no_secret")
            }
            (Some(id), ClientAuth::Secret { .. }) => {
                (super::audit::Record::default().client(id), "bad_secret")
            }
        };
        self.audit(super::audit::Event::ClientAuthFailed, record.reason(reason))
            .await;
    }

    fn check_client(&self, auth: &ClientAuth) -> Result<ClientId, AuthError> {
        match auth {
            ClientAuth::Public { client_id: None } => Ok(self.first_party()),
            ClientAuth::Public {
                client_id: Some(id),
            } if *id == self.settings.tokens.client_id => Ok(self.first_party()),
            // A confidential client without its secret, or an unknown client.
            ClientAuth::Public { .. } => Err(AuthError::InvalidClient),
            ClientAuth::Secret {
                readings,
                claimed_id,
            } => {
                if claimed_id
                    .as_deref()
                    .is_some_and(|c| !readings.iter().any(|(id, _)| id == c))
                {
                    return Err(AuthError::InvalidClient);
                }
                readings
                    .iter()
                    .find_map(|(id, secret)| self.check_secret(id, secret))
                    .ok_or_else(|| {
                        tracing::info!("client authentication failed");
                        AuthError::InvalidClient
                    })
            }
        }
    }

    /// Checks a confidential client's secret in constant time: both sides are hashed first,
    /// so not even the length is compared directly, and every configured client is compared.
    fn check_secret(&self, id: &str, secret: &SecretString) -> Option<ClientId> {
        use aws_lc_rs::digest::{digest, SHA256};
        let presented = digest(&SHA256, secret.expose_secret().as_bytes());
        let mut ok = false;
        for c in &self.settings.clients {
            let Some(expected) = &c.secret else { continue };
            let expected = digest(&SHA256, expected.expose_secret().as_bytes());
            let same = aws_lc_rs::constant_time::verify_slices_are_equal(
                presented.as_ref(),
                expected.as_ref(),
            )
            .is_ok();
            ok |= same && c.id == id;
        }
        ok.then(|| ClientId(id.to_string()))
    }
}

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
        if client.0 == self.settings.tokens.client_id {
            return &self.settings.tokens.scopes;
        }
        self.settings
            .clients
            .iter()
            .find(|c| c.id == client.0)
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
