//! OAuth clients: who is asking, at `/token`, `/revoke`, `/introspect` and the revocation feed.
//!
//! - The first-party client (`tokens.client_id`, `tessera` by default) is public: it presents
//!   no secret (RFC 6749 §2.1), and `/login` and `/refresh` act for it.
//! - Registered public clients (`[[clients]]` with `public = true`) name themselves with
//!   `client_id` and present no secret; PKCE proves them at the code exchange.
//! - Confidential clients (`[[clients]]`) authenticate with a secret (RFC 6749 §2.3.1), by
//!   HTTP Basic or form parameters; the transport is the HTTP layer's business, the check is
//!   here, in constant time.

use secrecy::{ExposeSecret, SecretString};

use super::{Auth, AuthError};
use crate::audit::Caller;

/// An authenticated client (or the public first-party client). Only this module makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(String);

impl ClientId {
    /// A client named by a checked authorization request or code (not authenticated here).
    pub(crate) fn registered(id: &str) -> ClientId {
        ClientId(id.to_string())
    }

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

    /// The registered client `id` (`[[clients]]`), if any.
    pub fn client_settings(&self, id: &str) -> Option<&crate::config::ClientSettings> {
        self.settings.clients.iter().find(|c| c.id == id)
    }

    /// Whether `client` may use `grant` at `/token` (`grant_types`; the first-party client
    /// uses `password` and `refresh_token`).
    ///
    /// Errors: `UnauthorizedClient` (RFC 6749 §5.2).
    pub fn check_grant(&self, client: &ClientId, grant: &str) -> Result<(), AuthError> {
        let allowed = if client.as_str() == self.settings.tokens.client_id {
            matches!(grant, "password" | "refresh_token")
        } else {
            self.client_settings(client.as_str())
                .is_some_and(|c| c.allows_grant(grant))
        };
        allowed.then_some(()).ok_or(AuthError::UnauthorizedClient)
    }

    /// Client authentication for `/token` and `/revoke`: a confidential client with its
    /// secret, or the public first-party client without one. A failure is an audit event.
    ///
    /// Errors: `InvalidClient` (a wrong secret, an unknown client, a confidential client
    /// without its secret, or a `client_id` that names another client than the secret's).
    pub async fn authenticate_client(
        &self,
        auth: &ClientAuth,
        caller: &Caller,
    ) -> Result<ClientId, AuthError> {
        let checked = self.check_client(auth);
        if checked.is_err() {
            self.client_auth_failed(auth, caller).await;
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
        caller: &Caller,
    ) -> Result<ClientId, AuthError> {
        let checked = match auth {
            ClientAuth::Public { .. } => Err(AuthError::InvalidClient),
            secret => self.check_client(secret),
        };
        if checked.is_err() {
            self.client_auth_failed(auth, caller).await;
        }
        checked
    }

    /// Records a failed client authentication, naming the client only when it is one Tessera
    /// knows (a name sent by anyone would let them write what they like into the trail).
    async fn client_auth_failed(&self, auth: &ClientAuth, caller: &Caller) {
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
        self.audit(
            caller,
            super::audit::Event::ClientAuthFailed,
            record.reason(reason),
        )
        .await;
    }

    fn check_client(&self, auth: &ClientAuth) -> Result<ClientId, AuthError> {
        match auth {
            ClientAuth::Public { client_id: None } => Ok(self.first_party()),
            ClientAuth::Public {
                client_id: Some(id),
            } if *id == self.settings.tokens.client_id => Ok(self.first_party()),
            // A registered public client (PKCE is its proof, at the code exchange).
            ClientAuth::Public {
                client_id: Some(id),
            } if self.client_settings(id).is_some_and(|c| c.public) => Ok(ClientId(id.clone())),
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
