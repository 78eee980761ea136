//! [`Verifier`]: set up once, shared by every request (it is a cheap `Arc` clone).
//!
//! Invariants:
//! - a token is accepted only if its `kid` names a key of the issuer's set as last fetched
//!   (within the hard limit), the signature verifies with that key's own algorithm, and every
//!   claim check passes;
//! - with a revocation feed, a token is also checked against the state of the last successful
//!   poll, and that poll is at most `max_staleness` old (unless the policy fails open);
//! - the background tasks exist only once `build` has succeeded, and stop when the last clone
//!   of the verifier is dropped.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, Validation};

pub use crate::builder::VerifierBuilder;
use crate::claims::Claims;
use crate::error::{SetupError, VerifyError};
use crate::feed::Feed;
use crate::keys::KeyCache;

/// Longest token even parsed (bytes).
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Every asymmetric JWS algorithm the verifier can check (RFC 7518 §3); HMAC and `none` are
/// never accepted.
pub(crate) const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// What to do with a request while the verifier cannot vouch for its state: the revocation
/// feed unread for longer than `max_staleness`, or the key set older than the hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StalePolicy {
    /// Refuse with 401 `invalid_token` (the default: fail closed).
    #[default]
    Reject,
    /// Refuse with 503 and `Retry-After`, so clients retry rather than log in again.
    Unavailable,
    /// Accept tokens that are otherwise valid, ignoring the stale revocation state (fail
    /// open; a warning is logged by the poller). Keys past the hard limit are still refused.
    Accept,
}

/// Tokens that verified, keyed by their exact bytes: their claims and the `kid` of their key.
pub(crate) type VerifiedCache = quick_cache::sync::Cache<Box<str>, Arc<(Claims, Box<str>)>>;

/// Verifies Tessera's access tokens. See the crate documentation.
#[derive(Clone)]
pub struct Verifier {
    pub(crate) inner: Arc<Inner>,
}

/// What a built verifier holds (see `builder::VerifierBuilder::build`).
pub(crate) struct Inner {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) leeway: i64,
    pub(crate) horizon: i64,
    pub(crate) required_roles: Vec<String>,
    pub(crate) stale_policy: StalePolicy,
    pub(crate) keys: Arc<KeyCache>,
    pub(crate) feed: Option<Arc<Feed>>,
    /// One prebuilt validation per accepted algorithm.
    pub(crate) validations: HashMap<Algorithm, Validation>,
    /// Tokens that verified, by their exact bytes, with the `kid` of their key
    /// (`VerifierBuilder::verified_cache`); `None` when off.
    pub(crate) cache: Option<VerifiedCache>,
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("revocation_feed", &self.inner.feed.is_some())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for tokens of `issuer` (exactly as in their `iss`, e.g.
    /// `https://auth.example.com`) meant for `audience`, with every default. It reads the
    /// issuer's RFC 8414 metadata and key set before returning.
    ///
    /// Errors: [`SetupError`] when the metadata or the keys cannot be fetched or used.
    pub async fn discover(
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, SetupError> {
        Self::builder(issuer, audience).build().await
    }

    /// A verifier that reads keys from `jwks_url` directly, without metadata discovery.
    ///
    /// Errors: [`SetupError`] when the key set cannot be fetched or has no usable key.
    pub async fn from_jwks_url(
        jwks_url: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, SetupError> {
        Self::builder(issuer, audience)
            .jwks_url(jwks_url)
            .build()
            .await
    }

    /// A builder for every other setting.
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder::new(issuer.into(), audience.into())
    }

    /// Verifies `token` (the compact JWS, without `Bearer `): signature, header and claims,
    /// then the required roles and the revocation state. Awaits only when the `kid` is unknown
    /// and a refetch is allowed.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let result = self.verify_inner(token).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        metrics::counter!("tessera_verify_total", "outcome" => outcome).increment(1);
        result
    }

    async fn verify_inner(&self, token: &str) -> Result<Claims, VerifyError> {
        let inner = &*self.inner;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(VerifyError::Malformed);
        }
        if let Some(cache) = &inner.cache {
            if let Some(hit) = cache.get(token) {
                let (claims, kid) = &*hit;
                // Its key still in the set (within the hard limit), and not expired.
                let key_held = matches!(inner.keys.cached(kid), Ok(Some(_)));
                // RFC 7519 §4.1.4: before `exp` plus the leeway, in whole seconds rounded down.
                if key_held && crate::feed::unix_now() < claims.exp.saturating_add(inner.leeway) {
                    metrics::counter!("tessera_verify_cache_total", "result" => "hit").increment(1);
                    return self.admit(claims.clone());
                }
                cache.remove(token);
            }
            metrics::counter!("tessera_verify_cache_total", "result" => "miss").increment(1);
        }
        let kid = checked_header(token)?;
        let key = inner.keys.key_for(&kid).await?;
        let validation = inner
            .validations
            .get(&key.alg)
            .ok_or(VerifyError::Header("alg"))?;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, validation)
            .map_err(|e| refusal(e.kind()))?
            .claims;
        let now = crate::feed::unix_now();
        // jsonwebtoken accepts the second that `exp` (plus the leeway) names; RFC 7519 §4.1.4
        // refuses it (`now` is rounded down, so that second has begun).
        if claims.exp.saturating_add(inner.leeway) <= now {
            return Err(VerifyError::Expired);
        }
        if claims.iat > now + inner.leeway {
            return Err(VerifyError::NotYetValid);
        }
        if claims.exp.saturating_sub(claims.iat) > inner.horizon {
            return Err(VerifyError::Claim("lifetime"));
        }
        // RFC 9068 §2.2: required (the wire type reads it as optional, for the server).
        if claims.client_id.is_none() {
            return Err(VerifyError::Claim("missing"));
        }
        if claims.jti.is_empty() || claims.sid.is_empty() || claims.sub.is_empty() {
            return Err(VerifyError::Claim("empty"));
        }
        if let Some(cache) = &inner.cache {
            cache.insert(token.into(), Arc::new((claims.clone(), kid.into())));
        }
        self.admit(claims)
    }

    /// The checks of every use, after the signature and claims (or a cache hit): the
    /// revocation state and the required roles.
    fn admit(&self, claims: Claims) -> Result<Claims, VerifyError> {
        let inner = &*self.inner;
        if let Some(feed) = &inner.feed {
            if feed.is_stale() && inner.stale_policy != StalePolicy::Accept {
                return Err(VerifyError::RevocationStale);
            }
            feed.check(&claims)?;
        }
        if !inner.required_roles.iter().all(|r| claims.has_role(r)) {
            return Err(VerifyError::MissingRole);
        }
        Ok(claims)
    }

    /// What to answer while the state is stale (see [`StalePolicy`]).
    pub fn stale_policy(&self) -> StalePolicy {
        self.inner.stale_policy
    }

    /// Whether the cached key set is past its freshness and could not be revalidated (the
    /// issuer is unreachable); it keeps serving until the hard limit.
    pub fn keys_stale(&self) -> bool {
        self.inner.keys.is_stale()
    }

    /// Whether the revocation feed has not been read for longer than `max_staleness`;
    /// `false` without a feed.
    pub fn revocations_stale(&self) -> bool {
        self.inner.feed.as_ref().is_some_and(|f| f.is_stale())
    }

    /// How many key-set requests this verifier has sent (set-up, background refreshes and
    /// unknown-`kid` refetches).
    pub fn key_set_fetches(&self) -> u64 {
        self.inner.keys.fetches()
    }

    /// How many verified tokens are held (`VerifierBuilder::verified_cache`).
    pub fn cached_tokens(&self) -> usize {
        self.inner.cache.as_ref().map_or(0, |c| c.len())
    }

    /// How many revocation entries are held (0 without a feed).
    pub fn revocation_entries(&self) -> usize {
        self.inner.feed.as_ref().map_or(0, |f| f.len())
    }
}

/// The `kid` of a token whose header passes Tessera's header policy (`tessera_proto::jose`:
/// RFC 7515 member types, RFC 8725, RFC 9068). The algorithm is checked later, against the
/// key's own.
fn checked_header(token: &str) -> Result<String, VerifyError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(VerifyError::Malformed);
    }
    match tessera_proto::jose::check_access_header(token) {
        Ok(h) => Ok(h.kid),
        Err(tessera_proto::jose::HeaderRefusal::Malformed) => Err(VerifyError::Malformed),
        Err(tessera_proto::jose::HeaderRefusal::Member(m)) => Err(VerifyError::Header(m)),
    }
}

fn refusal(kind: &jsonwebtoken::errors::ErrorKind) -> VerifyError {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::ExpiredSignature => VerifyError::Expired,
        K::ImmatureSignature => VerifyError::NotYetValid,
        K::InvalidSignature => VerifyError::Signature,
        K::InvalidIssuer => VerifyError::Claim("iss"),
        K::InvalidAudience => VerifyError::Claim("aud"),
        K::MissingRequiredClaim(_) => VerifyError::Claim("missing"),
        K::InvalidSubject => VerifyError::Claim("sub"),
        K::Json(e) if e.to_string().starts_with("missing field") => VerifyError::Claim("missing"),
        K::Json(_) => VerifyError::Claim("type"),
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => {
            VerifyError::Header("alg")
        }
        K::InvalidEcdsaKey | K::InvalidEddsaKey | K::InvalidRsaKey(_) | K::InvalidKeyFormat => {
            VerifyError::Signature
        }
        _ => VerifyError::Malformed,
    }
}
