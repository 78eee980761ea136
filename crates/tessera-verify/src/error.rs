//! Why a token was refused, and why a verifier could not be set up.

/// Why a token was refused. The variant is safe to show a client in general terms; it never
/// carries the token or a claim value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No `Authorization: Bearer` token in the request (RFC 6750 §2.1).
    #[error("no bearer token")]
    Missing,
    /// Not a compact JWS (RFC 7515 §7.1), too long, or not decodable.
    #[error("malformed token")]
    Malformed,
    /// A JOSE header this verifier refuses (the policy of `tessera_proto::jose`, shared with
    /// the server): `typ` other than `at+jwt`, a registered member of the wrong JSON type,
    /// `crit`, `cty`, a JWE member, a missing `kid`, an `alg` of `none` or other than the
    /// key's, or a key-carrying header (`jku`, `jwk`, `x5u`, `x5c`); RFC 7515 §4.1, RFC 8725
    /// §3.1, RFC 9068 §4.
    #[error("unacceptable header: {0}")]
    Header(&'static str),
    /// The `kid` names no key of the issuer's JWKS, even after a refetch.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("invalid signature")]
    Signature,
    /// `exp` (plus the leeway) has passed.
    #[error("expired")]
    Expired,
    /// `nbf` or `iat` lies in the future (beyond the leeway).
    #[error("not yet valid")]
    NotYetValid,
    /// A claim is missing, of the wrong JSON type, or does not match: `iss`, `aud`, `sub`,
    /// `jti`, `sid`, or a lifetime longer than the token horizon.
    #[error("invalid claim: {0}")]
    Claim(&'static str),
    /// The revocation feed lists the token, its session, or a cut-off for its user.
    #[error("revoked")]
    Revoked,
    /// The token is valid but lacks a required role (RFC 6750 §3.1 `insufficient_scope`).
    #[error("missing role")]
    MissingRole,
    /// The token is valid but its `scope` lacks a required scope (RFC 6750 §3.1).
    #[error("missing scope")]
    MissingScope,
    /// The token is valid but the login it comes from is not strong enough: its `acr` is
    /// below the one required, or its `amr` lacks a required method (RFC 9470 §3).
    #[error("insufficient user authentication")]
    InsufficientAuthentication,
    /// The cached key set is older than the hard limit: the server has been unreachable too
    /// long for its keys to be trusted.
    #[error("signing keys unavailable")]
    KeysUnavailable,
    /// The revocation feed has not been read for longer than `max_staleness` and the
    /// verifier fails closed.
    #[error("revocation state stale")]
    RevocationStale,
}

impl VerifyError {
    /// A fixed label for metrics and logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            VerifyError::Missing => "missing",
            VerifyError::Malformed => "malformed",
            VerifyError::Header(_) => "header",
            VerifyError::UnknownKey => "unknown_key",
            VerifyError::Signature => "signature",
            VerifyError::Expired => "expired",
            VerifyError::NotYetValid => "not_yet_valid",
            VerifyError::Claim(_) => "claim",
            VerifyError::Revoked => "revoked",
            VerifyError::MissingRole => "missing_role",
            VerifyError::MissingScope => "missing_scope",
            VerifyError::InsufficientAuthentication => "insufficient_authentication",
            VerifyError::KeysUnavailable => "keys_unavailable",
            VerifyError::RevocationStale => "revocation_stale",
        }
    }

    /// Whether the failure is the verifier's state rather than the token's (keys too old,
    /// revocation state stale): with [`crate::StalePolicy::Unavailable`] these answer 503.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            VerifyError::KeysUnavailable | VerifyError::RevocationStale
        )
    }
}

/// Why a [`crate::Verifier`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A URL could not be fetched, or answered other than 200 with JSON.
    #[error("fetching {url}: {reason}")]
    Fetch {
        /// What was fetched.
        url: String,
        /// Why it failed (network, status, timeout), without secrets.
        reason: String,
    },
    /// The metadata's `issuer` is not exactly the configured one (RFC 8414 §3.3).
    #[error("the metadata names issuer {found:?}, not {expected:?}")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The metadata's `issuer`.
        found: String,
    },
    /// The metadata lacks `jwks_uri`, or a member has the wrong type.
    #[error("authorization server metadata: {0}")]
    Metadata(String),
    /// A key set given to the builder is not a JWK set (RFC 7517 §5).
    #[error("key set: {0}")]
    KeySet(String),
    /// The key set holds no key this verifier accepts.
    #[error("the key set at {0} has no usable signing key")]
    NoKeys(String),
    /// A builder setting is unusable.
    #[error("invalid setting: {0}")]
    Config(String),
    /// The first poll of the revocation feed failed.
    #[error("the revocation feed: {0}")]
    Feed(String),
}
