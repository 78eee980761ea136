//! The verified-token cache: an access token's signature and claims are checked once, and
//! its claims kept until `exp` (plus `tokens.leeway`), so that the next request with the same
//! token skips the ECDSA or RSA verification (about 38 µs a core for ES256).
//!
//! - **Keyed by the exact token**: the map hashes the token to find an entry and compares the
//!   whole token before using it, so no other string, however its hash falls, can reach an
//!   entry.
//! - **Never cached: revocation.** The denylist, the session and the user's cut-off are
//!   checked on every use by the caller (`Auth::authenticate`), exactly as without the cache.
//! - **Checked again on every hit**: the key that signed it is still in the ring (a key that
//!   leaves the key set takes its tokens with it), the token has not expired, and its
//!   audience is one the caller accepts (introspection accepts more than `/userinfo`).
//! - **Bounded**: `tokens.verified_cache` entries (quick_cache, S3-FIFO: a scan of tokens
//!   used once does not push out those used often), each the token and its claims (about
//!   2 KB for a typical token; at most about 10 KB, tokens being at most 8 KB). Expired
//!   entries go at each key reload (every second or so). Only tokens that verified are stored, so
//!   a flood of forged or expired tokens adds nothing. Hits and misses are counted in
//!   `verified_token_cache_total{result}`.

use std::sync::Arc;

use quick_cache::sync::Cache;

use crate::keys::KeyRing;
use crate::observe::HotCounter;
use crate::tokens::{self, Expect, TokenError, VerifiedClaims};

/// A token that verified, and the key that signed it.
struct Entry {
    claims: Arc<VerifiedClaims>,
    kid: Box<str>,
}

impl Entry {
    /// Whether its key is still in `ring` and `now` (Unix seconds, rounded down) is before `exp`
    /// plus `leeway_secs`, as `tokens::verify` checks it (RFC 7519 §4.1.4).
    fn live(&self, ring: &KeyRing, leeway_secs: u64, now: i64) -> bool {
        let leeway = i64::try_from(leeway_secs).unwrap_or(i64::MAX);
        ring.verifying.contains_key(&*self.kid)
            && now < self.claims.claims.exp.saturating_add(leeway)
    }

    /// Whether the entry still stands for `expect` at `now` (Unix seconds).
    fn holds(&self, ring: &KeyRing, expect: &Expect<'_>, now: i64) -> bool {
        let c = &self.claims.claims;
        self.live(ring, expect.leeway_secs, now)
            && c.iss == expect.issuer
            && c.aud
                .iter()
                .any(|a| a == expect.audience || expect.also.iter().any(|x| x == a))
    }
}

/// See the module documentation.
pub(crate) struct VerifiedTokens {
    /// `None` when `tokens.verified_cache` is 0.
    cache: Option<Cache<Box<str>, Arc<Entry>>>,
    hits: HotCounter,
    misses: HotCounter,
}

impl VerifiedTokens {
    /// A cache of at most `entries` tokens; 0 turns it off.
    pub(crate) fn new(entries: usize) -> Self {
        Self {
            cache: (entries > 0).then(|| Cache::new(entries)),
            hits: HotCounter::new(
                || metrics::counter!("verified_token_cache_total", "result" => "hit"),
            ),
            misses: HotCounter::new(
                || metrics::counter!("verified_token_cache_total", "result" => "miss"),
            ),
        }
    }

    /// `tokens::verify`, or the claims found for exactly this token when they still hold
    /// (shared with the cache: a hit copies nothing).
    ///
    /// Errors: `TokenError`, as `tokens::verify`.
    pub(crate) fn verify(
        &self,
        token: &str,
        ring: &KeyRing,
        expect: &Expect<'_>,
        now: i64,
    ) -> Result<Arc<VerifiedClaims>, TokenError> {
        let Some(cache) = &self.cache else {
            return tokens::verify(token, ring, expect, now).map(Arc::new);
        };
        // An oversized token is refused before it is even hashed.
        if token.len() > tokens::MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        if let Some(e) = cache.get(token) {
            if e.holds(ring, expect, now) {
                self.hits.increment();
                return Ok(e.claims.clone());
            }
            // Expired, or its key is gone: dropped, and verified afresh below, which refuses
            // it. (An audience this caller does not accept is verified afresh too, and the
            // entry stays for the callers that do.)
            if !e.live(ring, expect.leeway_secs, now) {
                cache.remove(token);
            }
        }
        self.misses.increment();
        let (claims, kid) = tokens::verify_keyed(token, ring, expect, now)?;
        let claims = Arc::new(claims);
        cache.insert(
            token.into(),
            Arc::new(Entry {
                claims: claims.clone(),
                kid: kid.into(),
            }),
        );
        Ok(claims)
    }

    /// Drops every entry whose key is not in `ring` (after the key set changed) or whose
    /// `exp` plus `leeway_secs` has passed at `now` (Unix seconds).
    pub(crate) fn retain_live(&self, ring: &KeyRing, leeway_secs: u64, now: i64) {
        if let Some(cache) = &self.cache {
            cache.retain(|_, e| e.live(ring, leeway_secs, now));
        }
    }

    /// How many tokens are held.
    pub(crate) fn len(&self) -> usize {
        self.cache.as_ref().map_or(0, Cache::len)
    }
}
