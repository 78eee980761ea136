//! The OpenID Provider: authorization requests (RFC 6749 §4.1, OIDC Core §3.1.2), the SSO
//! session of the hosted login, authorization codes with PKCE (RFC 7636) and ID tokens (OIDC
//! Core §2). The hosted pages (`pages/` in the binary) and `/token` call these use cases; none
//! of them knows HTTP or HTML.
//!
//! - `request`: checking an authorization request, and the redirect URI rule (invariant 8).
//! - `sso`: signing in at the hosted login, the SSO session behind its cookie, and the
//!   decision `/authorize` takes (log in, ask consent, or answer with a code).
//! - `code`: issuing a code and exchanging it (invariant 7).
//! - `id_token`: the ID token's claims and signature.
//! - `logout`: RP-Initiated Logout (the end-session endpoint, `id_token_hint`) and ending an
//!   SSO session with its refresh sessions.
//! - `backchannel`: Back-Channel Logout tokens, delivered from durable rows.
//! - `par`: pushed authorization requests (RFC 9126).
//! - `device`: the device authorization grant (RFC 8628).

mod backchannel;
mod code;
mod device;
mod id_token;
mod logout;
mod par;
mod request;
mod sign_in;
mod sso;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::Granted;

pub use backchannel::{LogoutSender, MAX_ATTEMPTS};
pub use code::CodeGrant;
pub use device::{
    display_user_code, normalize_user_code, DeviceAuthorization, DevicePoll, PendingDevice,
    DEVICE_CODE_TTL_SECS, DEVICE_GRANT, POLL_INTERVAL_SECS,
};
pub use logout::{IdTokenHint, LogoutParams, LogoutRequest};
pub use par::{Pushed, PUSHED_TTL_SECS};
pub use request::redirect_uri_matches;
pub use sso::{BrowserUser, SignedIn, SsoCookie};

/// How long an authorization code may be exchanged: 60 s (RFC 6749 §4.1.2 recommends at most
/// ten minutes; OAuth 2.1 one).
pub const CODE_TTL_MS: i64 = 60_000;

/// The parameters of an authorization request, as sent (query or form). Every one is kept so
/// that the hosted pages can carry the request through the login and consent forms.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeParams {
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub response_mode: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub login_hint: Option<String>,
    /// An ID token of this server's naming the user the client expects (OIDC Core §3.1.2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_hint: Option<String>,
    pub ui_locales: Option<String>,
    /// Space-separated `acr` values asked for (OIDC Core §3.1.2.1), weakest accepted first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr_values: Option<String>,
    pub resource: Option<String>,
    /// Request objects (OIDC Core §6) are not supported: refused with `request_not_supported`.
    pub request: Option<String>,
    /// A pushed request's URI (RFC 9126 §4), resolved before the request is checked.
    pub request_uri: Option<String>,
}

/// How the response goes back to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    /// In the redirect URI's query (RFC 6749 §4.1.2).
    Query,
    /// In an auto-submitted HTML form POSTed to the redirect URI (OAuth 2.0 Form Post
    /// Response Mode).
    FormPost,
}

/// `prompt` (OIDC Core §3.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    /// `none`: answer without showing any page, or fail.
    pub none: bool,
    /// `login`: authenticate again even with an SSO session.
    pub login: bool,
    /// `consent`: ask for consent even for a first-party client.
    pub consent: bool,
}

/// A checked authorization request: the client and redirect URI are registered and match.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub response_mode: ResponseMode,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// The scope and resource it is granted (the client's allowed scopes only).
    pub granted: Granted,
    pub prompt: Prompt,
    /// `max_age`, in seconds.
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// The `sub` of a valid `id_token_hint`: a browser signed in as anyone else signs in
    /// again (with `prompt=none`, `login_required`).
    pub hint_sub: Option<String>,
    pub ui_locales: Option<String>,
    /// The weakest `acr` that `acr_values` accepts (`None`: any). A sign-in that is weaker,
    /// for a user who has a second factor, logs in again with it (step-up).
    pub acr: Option<&'static str>,
    /// The client skips consent (`first_party = true`).
    pub first_party: bool,
    /// The parameters as sent, for the forms of the hosted pages.
    pub params: AuthorizeParams,
    /// The `request_uri` of a pushed request (RFC 9126) these parameters came from: the forms
    /// carry it instead of the parameters, and the code's issue uses it up.
    pub pushed: Option<String>,
}

/// Where an error or a code goes: the client's verified redirect URI.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub redirect_uri: String,
    pub response_mode: ResponseMode,
    /// The response's parameters, `state` last when there is one (`iss` is the HTTP layer's).
    pub params: Vec<(&'static str, String)>,
}

/// Why an authorization request cannot go on.
#[derive(Debug)]
pub enum AuthorizeError {
    /// The client or the redirect URI cannot be trusted: Tessera shows its own error page and
    /// never redirects (RFC 6749 §4.1.2.1, invariant 8). The text is safe to show.
    Page(String),
    /// Any other error, sent to the verified redirect URI (RFC 6749 §4.1.2.1, OIDC Core
    /// §3.1.2.6): its parameters are `error`, `error_description` and `state`.
    Redirect(Redirect),
    /// The database or the keys are unavailable: retry later (a 503 page).
    Unavailable,
}

/// What `/authorize` does next.
#[derive(Debug)]
pub enum Decision {
    /// Show the login page.
    Login,
    /// Show the consent page for this user (`user_id` goes into the form, so that its
    /// answer counts only for the user it was shown to).
    Consent {
        user_id: uuid::Uuid,
        username: String,
    },
    /// Send the code back.
    Code(Redirect),
}

/// The error redirect of `req` with `error` (an RFC 6749 §4.1.2.1 or OIDC Core §3.1.2.6
/// code) and a description.
pub(crate) fn error_redirect(
    redirect_uri: &str,
    response_mode: ResponseMode,
    state: Option<&str>,
    error: &'static str,
    description: &str,
) -> AuthorizeError {
    let mut params = vec![
        ("error", error.to_string()),
        ("error_description", description.to_string()),
    ];
    if let Some(state) = state {
        params.push(("state", state.to_string()));
    }
    AuthorizeError::Redirect(Redirect {
        redirect_uri: redirect_uri.to_string(),
        response_mode,
        params,
    })
}

impl AuthorizationRequest {
    /// An error sent back to this request's client.
    pub fn error(&self, error: &'static str, description: &str) -> AuthorizeError {
        error_redirect(
            &self.redirect_uri,
            self.response_mode,
            self.state.as_deref(),
            error,
            description,
        )
    }

    /// Whether `openid` was granted: the request is an OpenID Connect one.
    pub fn is_openid(&self) -> bool {
        has_scope(self.granted.scope.as_deref(), "openid")
    }
}

/// Whether the space-separated `scope` holds `wanted`.
pub(crate) fn has_scope(scope: Option<&str>, wanted: &str) -> bool {
    scope.is_some_and(|s| s.split(' ').any(|t| t == wanted))
}

/// 32 random bytes, base64url: a code or a cookie token (256 bits).
pub(crate) fn random_token() -> Result<SecretString, super::AuthError> {
    use base64::Engine;
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| super::AuthError::Internal("no randomness".into()))?;
    Ok(SecretString::from(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b),
    ))
}

/// A new random 256-bit token for a cookie of the hosted pages (base64url, 43 characters).
///
/// Errors: `Internal` (the system has no randomness).
pub fn random_cookie_token() -> Result<SecretString, super::AuthError> {
    random_token()
}

/// base64url SHA-256 of a token: how codes and cookie tokens are stored and looked up.
pub(crate) fn token_digest(token: &str) -> String {
    use base64::Engine;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
}
