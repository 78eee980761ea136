//! Pushed authorization requests (RFC 9126): a confidential client sends the authorization
//! parameters to Tessera directly, authenticated, and the browser carries only a one-time
//! `request_uri` to `/authorize`.

use secrecy::ExposeSecret;

use super::{random_token, token_digest, AuthorizationRequest, AuthorizeError, AuthorizeParams};
use crate::time::now_ms;
use crate::{Auth, AuthError, ClientId};

/// How long a pushed request may be used: 60 s (RFC 9126 §2.2 suggests 5 to 600 s).
pub const PUSHED_TTL_SECS: i64 = 60;

/// The prefix of every `request_uri` (RFC 9126 §2.2).
const URN: &str = "urn:ietf:params:oauth:request_uri:";

/// The answer to a push (RFC 9126 §2.2).
#[derive(Debug)]
pub struct Pushed {
    pub request_uri: String,
    /// Seconds.
    pub expires_in: i64,
}

/// The OAuth error code of an authorization error, as a static string.
fn code_of(error: &str) -> &'static str {
    match error {
        "invalid_scope" => "invalid_scope",
        "invalid_target" => "invalid_target",
        "unauthorized_client" => "unauthorized_client",
        "unsupported_response_type" => "unsupported_response_type",
        "request_not_supported" => "request_not_supported",
        _ => "invalid_request",
    }
}

impl Auth {
    /// Checks and stores the pushed parameters of `client` (authenticated, confidential) as an
    /// authorization request, as `/authorize` would check them (RFC 9126 §2.1).
    ///
    /// Errors: `InvalidAuthorizationRequest` with the OAuth error code (`invalid_request` for a
    /// `request_uri` inside, a `client_id` of another client, or an unregistered redirect URI),
    /// `StoreUnavailable`.
    pub async fn push_authorization_request(
        &self,
        client: &ClientId,
        mut p: AuthorizeParams,
    ) -> Result<Pushed, AuthError> {
        let refuse =
            |error: &'static str, description: &str| AuthError::InvalidAuthorizationRequest {
                error,
                description: description.to_string(),
            };
        if p.request_uri.is_some() {
            return Err(refuse("invalid_request", "request_uri cannot be pushed"));
        }
        match p.client_id.as_deref() {
            Some(id) if id != client.as_str() => {
                return Err(refuse(
                    "invalid_request",
                    "client_id is not the authenticated client",
                ))
            }
            _ => p.client_id = Some(client.as_str().to_string()),
        }
        match self.authorization_request(&p) {
            Ok(_) => {}
            Err(AuthorizeError::Page(why)) => return Err(refuse("invalid_request", &why)),
            Err(AuthorizeError::Redirect(r)) => {
                let get = |name: &str| {
                    r.params
                        .iter()
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| v.as_str())
                        .unwrap_or_default()
                };
                return Err(refuse(code_of(get("error")), get("error_description")));
            }
            Err(AuthorizeError::Unavailable) => return Err(AuthError::StoreUnavailable),
        }
        let token = random_token()?;
        let request_uri = format!("{URN}{}", token.expose_secret());
        let params = serde_json::to_string(&p)
            .map_err(|e| AuthError::Internal(format!("pushed request: {e}")))?;
        self.store
            .push_request(
                &token_digest(&request_uri),
                client.as_str(),
                &params,
                now_ms() + PUSHED_TTL_SECS * 1000,
            )
            .await?;
        Ok(Pushed {
            request_uri,
            expires_in: PUSHED_TTL_SECS,
        })
    }

    /// The request pushed as `request_uri` by `client_id`, checked: `/authorize` goes on with
    /// it and ignores what else the browser brought (RFC 9126 §4). It stays usable (a reload
    /// of the page) until a code is issued for it or it expires.
    ///
    /// Errors: `Page` (unknown, used, expired, or another client's), and those of
    /// `authorization_request`.
    pub async fn pushed_request(
        &self,
        client_id: Option<&str>,
        request_uri: &str,
    ) -> Result<AuthorizationRequest, AuthorizeError> {
        let gone = || {
            AuthorizeError::Page(
                "The pushed authorization request is unknown, used or expired. Start again from the application."
                    .into(),
            )
        };
        let Some(client_id) = client_id else {
            return Err(gone());
        };
        if !request_uri.starts_with(URN) {
            return Err(gone());
        }
        let params = self
            .store
            .pushed_request(&token_digest(request_uri), client_id, now_ms())
            .await
            .map_err(|_| AuthorizeError::Unavailable)?
            .ok_or_else(gone)?;
        let params: AuthorizeParams = serde_json::from_str(&params).map_err(|_| gone())?;
        let mut req = self.authorization_request(&params)?;
        req.pushed = Some(request_uri.to_string());
        Ok(req)
    }

    /// Uses up the pushed request a code was issued for.
    pub(crate) async fn use_pushed(&self, req: &AuthorizationRequest) -> Result<(), AuthError> {
        if let Some(uri) = &req.pushed {
            self.store
                .take_pushed_request(&token_digest(uri), &req.client_id, now_ms())
                .await?;
        }
        Ok(())
    }
}
