//! The introspection answer (RFC 7662 §2.2) of `POST /introspect`.

use serde::{Deserialize, Serialize};

use crate::claims::Audience;

/// What Tessera says about a token. An inactive token is `{"active":false}` and nothing else
/// (§2.2: nothing about why). Members are serialised in alphabetical order; absent ones are
/// left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Introspection {
    /// Whether the token is active: signed by Tessera, unexpired, and not revoked.
    pub active: bool,
    /// The audience: `tokens.audience` or the RFC 8707 resource, in the form the token
    /// carries it (a string, or an array of strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schema(value_type = Option<serde_json::Value>))]
    pub aud: Option<Audience<'static>>,
    /// The OAuth client the token was issued to; `null` for an access token that names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schema(value_type = Option<String>, nullable))]
    pub client_id: Option<Option<String>>,
    /// Expiry, Unix seconds (for a refresh token: when its session ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issuance, Unix seconds (for a refresh token: its last rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// The issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The access token's `jti`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The access token's `nbf`, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The user's roles now (access tokens of the operator's own clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// The granted scope, space-separated; absent when none was granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The user's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// `Bearer` (an access token) or `refresh_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// The user's name now (tokens of the operator's own clients, or with the `profile`
    /// scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

impl Introspection {
    /// `{"active":false}`.
    pub fn inactive() -> Self {
        Self::default()
    }
}
