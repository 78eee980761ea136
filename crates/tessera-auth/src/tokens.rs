//! Access tokens: the RFC 9068 JWT profile. This file both signs (the JWS assembly) and
//! verifies.
//!
//! Verification is strict by construction (RFC 8725):
//! - the key is chosen by `kid` among published keys, and the algorithm is pinned to that key's
//!   own algorithm, never read from the token (so `none`, HS256-with-the-public-key and
//!   algorithm swaps cannot work);
//! - the JOSE header follows `tessera_proto::jose`, the policy every verifier shares: `typ`
//!   `at+jwt` (RFC 9068 §4), registered members of their registered types, no `crit` (RFC 7515
//!   §4.1.11: we understand no extensions), no key references (`jku`, `jwk`, `x5u`, `x5c`);
//! - `iss`, `aud`, `exp`, `nbf`, `iat`, `sub`, `jti` and `sid` are required, with their JSON
//!   types checked, and times are checked with a small leeway.

use jsonwebtoken::Validation;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub use tessera_proto::claims::{AccessClaims, Audience, Claims};

use super::keys::{KeyError, KeyRing, SigningKey};

/// Longest token we even try to parse.
pub(crate) const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Claims whose names custom claims may not take: those Tessera sets, and registered JWT and
/// RFC 9068 claims a verifier could read as Tessera's word (`groups`, `entitlements`, `act`,
/// `cnf`, …).
const REGISTERED: &[&str] = &[
    "username",
    "groups",
    "entitlements",
    "act",
    "may_act",
    "cnf",
    "azp",
    "nonce",
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "sid",
    "client_id",
    "roles",
    "scope",
    "typ",
    "auth_time",
    "acr",
    "amr",
    // OIDC Core §5.1 and §3.1.3.6: claims Tessera sets from the account or the ID token
    // (a custom `email_verified: true` beside an unverified address would pass for Tessera's).
    "email",
    "email_verified",
    "preferred_username",
    "updated_at",
    "at_hash",
    "c_hash",
    "s_hash",
    "events",
    // RFC 7662 §2.2 members of an introspection answer.
    "active",
    "token_type",
];

/// Whether `name` is a claim Tessera sets itself, which a custom claim may not take.
pub fn is_registered(name: &str) -> bool {
    REGISTERED.contains(&name)
}

/// Keeps only custom claims that do not collide with a registered one.
pub fn custom_claims(claims: &Map<String, Value>) -> Map<String, Value> {
    claims
        .iter()
        .filter(|(k, _)| !REGISTERED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A compact JWS (RFC 7515 §7.1) of `claims`, signed by `key`, with the access-token header
/// `{"typ":"at+jwt","alg","kid"}` (RFC 9068 §2.1).
pub fn sign<C: Serialize>(key: &SigningKey, claims: &C) -> Result<String, KeyError> {
    let payload = serde_json::to_vec(claims).map_err(|e| KeyError::Rejected(e.to_string()))?;
    let header = key.access_header();
    let mut out = String::with_capacity(header.len() + payload.len() * 4 / 3 + 100);
    out.push_str(header);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
    let sig = key.sign_bytes(out.as_bytes())?;
    out.push('.');
    out.push_str(&sig);
    Ok(out)
}

/// A compact JWS with an arbitrary header: tests and tooling forge tokens with this.
pub fn sign_jws<H: Serialize, C: Serialize>(
    key: &SigningKey,
    header: &H,
    claims: &C,
) -> Result<String, KeyError> {
    let enc = |v: Vec<u8>| URL_SAFE_NO_PAD.encode(v);
    let h = serde_json::to_vec(header).map_err(|e| KeyError::Rejected(e.to_string()))?;
    let c = serde_json::to_vec(claims).map_err(|e| KeyError::Rejected(e.to_string()))?;
    let input = format!("{}.{}", enc(h), enc(c));
    let sig = key.sign_bytes(input.as_bytes())?;
    Ok(format!("{input}.{sig}"))
}

/// An access token that passed verification: its claims, as every verifier reads them
/// (`tessera_proto::claims`), and the user and session they name, as ids.
#[derive(Debug, Clone)]
pub struct VerifiedClaims {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub claims: Claims,
}

/// What verification checks against.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    /// Further audiences accepted (RFC 8707 resources); empty for Tessera's own endpoints.
    pub also: &'a [String],
    pub leeway_secs: u64,
}

/// Why a token was refused; logged at debug, never returned in detail.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("unacceptable header: {0}")]
    Header(&'static str),
    #[error("unknown kid")]
    UnknownKey,
    #[error("rejected: {0}")]
    Rejected(String),
}

/// Verifies signature and claims. Revocation is checked by the caller afterwards.
pub fn verify(
    token: &str,
    ring: &KeyRing,
    expect: &Expect<'_>,
    now: i64,
) -> Result<VerifiedClaims, TokenError> {
    verify_keyed(token, ring, expect, now).map(|(claims, _)| claims)
}

/// `verify`, and the `kid` of the key that signed the token (the verified-token cache keeps
/// it, to drop the token with its key).
///
/// Errors: `TokenError`, as `verify`.
pub(crate) fn verify_keyed(
    token: &str,
    ring: &KeyRing,
    expect: &Expect<'_>,
    now: i64,
) -> Result<(VerifiedClaims, String), TokenError> {
    if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
        return Err(TokenError::Malformed);
    }
    // The header policy shared with every verifier (tessera-proto): member types, `typ`,
    // no `crit`, no key references, no JWE members.
    let header = tessera_proto::jose::check_access_header(token).map_err(|e| match e {
        tessera_proto::jose::HeaderRefusal::Malformed => TokenError::Malformed,
        tessera_proto::jose::HeaderRefusal::Member(m) => TokenError::Header(m),
    })?;
    let key = ring
        .verifying
        .get(header.kid.as_str())
        .ok_or(TokenError::UnknownKey)?;
    // The algorithm is the key's own; the header must name exactly it.
    if header.alg.parse::<jsonwebtoken::Algorithm>().ok() != Some(key.alg) {
        return Err(TokenError::Header("alg"));
    }
    let mut v = Validation::new(key.alg);
    v.leeway = expect.leeway_secs;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.set_issuer(&[expect.issuer]);
    let mut audiences = Vec::with_capacity(1 + expect.also.len());
    audiences.push(expect.audience);
    audiences.extend(expect.also.iter().map(String::as_str));
    v.set_audience(&audiences);
    v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &v)
        .map_err(|e| TokenError::Rejected(format!("{:?}", e.kind())))?;
    let c = data.claims;
    let leeway = expect.leeway_secs as i64;
    // RFC 7519 §4.1.4: refused at or after `exp` (plus the leeway). `now` is whole seconds,
    // rounded down, so the second that `exp` names is already past it; jsonwebtoken's own
    // check still accepts that second.
    if c.exp.saturating_add(leeway) <= now {
        return Err(TokenError::Rejected("ExpiredSignature".into()));
    }
    if c.iat > now + leeway {
        return Err(TokenError::Rejected("iat in the future".into()));
    }
    if c.jti.is_empty() || c.jti.len() > 128 {
        return Err(TokenError::Rejected("jti".into()));
    }
    let id = |s: &str, what: &'static str| {
        Uuid::parse_str(s).map_err(|_| TokenError::Rejected(what.into()))
    };
    Ok((
        VerifiedClaims {
            user_id: id(&c.sub, "sub")?,
            session_id: id(&c.sid, "sid")?,
            claims: c,
        },
        header.kid,
    ))
}
