//! ID tokens (OIDC Core §2, §3.1.3.6): signed by the key that signs access tokens, with
//! `typ: JWT`, so that neither kind passes for the other (access tokens are `at+jwt`, RFC
//! 9068 §2.1, and every verifier of Tessera's refuses any other `typ`).

use secrecy::SecretString;
use serde::Serialize;

use super::code::SignIn;
use super::has_scope;
use crate::store::User;
use crate::time::UnixMillis;
use crate::{tokens, Auth, AuthError};

/// The claims of an ID token.
#[derive(Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: String,
    aud: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    /// `1`: one factor (ISO/IEC 29115 level 1).
    acr: &'static str,
    amr: Vec<&'a str>,
    /// The SSO session.
    sid: String,
    azp: &'a str,
    at_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    preferred_username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<i64>,
    /// With the `email` scope and an address (OIDC Core §5.4).
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
}

/// `at_hash` (OIDC Core §3.1.3.6): the left half of the access token's hash, with the hash of
/// the signing algorithm, base64url.
fn at_hash(alg: jsonwebtoken::Algorithm, access_token: &str) -> String {
    use aws_lc_rs::digest::{digest, SHA256, SHA384, SHA512};
    use base64::Engine;
    use jsonwebtoken::Algorithm as A;
    let hash = match alg {
        A::ES384 | A::RS384 | A::PS384 => &SHA384,
        A::RS512 | A::PS512 | A::EdDSA => &SHA512,
        _ => &SHA256,
    };
    let d = digest(hash, access_token.as_bytes());
    let half = &d.as_ref()[..d.as_ref().len() / 2];
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(half)
}

impl Auth {
    /// The ID token of a sign-in, for `user` and the granted `scope`, beside `access_token`.
    ///
    /// Errors: `Unavailable` (no key signs), `Internal` (signing failed).
    pub(crate) fn id_token(
        &self,
        sign_in: &SignIn<'_>,
        scope: Option<&str>,
        user: &User,
        access_token: &str,
        now: UnixMillis,
    ) -> Result<SecretString, AuthError> {
        let ring = self.keys.ring();
        let key = ring
            .signer_at(now.0)
            .ok_or(AuthError::Unavailable("no active signing key"))?;
        let t = &self.settings.tokens;
        let iat = now.as_secs();
        let profile = has_scope(scope, "profile");
        let email = user.email.as_deref().filter(|_| has_scope(scope, "email"));
        let claims = IdClaims {
            iss: &t.issuer,
            sub: user.id.to_string(),
            aud: sign_in.client_id,
            exp: iat + t.access_ttl.as_secs() as i64,
            iat,
            auth_time: UnixMillis(sign_in.auth_time).as_secs(),
            nonce: sign_in.nonce,
            acr: tessera_proto::claims::acr::from_amr(sign_in.amr.split_ascii_whitespace()),
            amr: sign_in.amr.split(' ').filter(|m| !m.is_empty()).collect(),
            sid: sign_in.sso_session_id.to_string(),
            azp: sign_in.client_id,
            at_hash: at_hash(key.alg, access_token),
            preferred_username: profile.then_some(user.username.as_str()),
            updated_at: profile.then(|| UnixMillis(user.updated_at).as_secs()),
            email,
            email_verified: email.map(|_| user.email_verified),
        };
        let header = serde_json::json!({ "alg": key.alg, "kid": key.kid, "typ": "JWT" });
        tokens::sign_jws(key, &header, &claims)
            .map(SecretString::from)
            .map_err(|e| AuthError::Internal(format!("signing failed: {e}")))
    }
}
