//! The issuer's key set (RFC 7517), cached.
//!
//! - Freshness follows the JWKS answer's `Cache-Control: max-age` (clamped to
//!   [`MIN_TTL`, `MAX_TTL`]); a background task refreshes at 80% of it, revalidating with
//!   `If-None-Match`, so requests never wait on the network in steady state.
//! - An unknown `kid` may trigger one refetch ([`KeyCache::key_for`]): requests that miss at
//!   the same time share it (single-flight, by an async mutex), and another refetch happens at
//!   most once per `refetch_interval`, whatever the tokens say. The fetch runs on its own task
//!   holding the mutex, so a request that gives up does not cancel it for the others.
//! - Every fetch, background or on demand, holds that mutex: an older answer never replaces a
//!   newer set, and each is bounded by the HTTP timeout even with a caller's own client.
//! - When refreshing fails, the last good set keeps serving, flagged stale, until
//!   `hard_limit` after the last successful fetch; then no key is trusted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey};

use crate::error::VerifyError;

mod jwk;
pub(crate) use jwk::parse_jwks;

/// Shortest freshness honoured (a `max-age=0` server would otherwise be polled constantly).
/// Tessera publishes keys `keys.publish_ahead` (at least its max-age) before they sign, so
/// honouring its max-age down to this floor means a new key is known before it is used.
pub(crate) const MIN_TTL: Duration = Duration::from_secs(1);
/// Longest freshness honoured, so a rotation is seen within this even with a long max-age.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(3600);
/// Freshness when the server sends no `max-age`.
const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Why a fetched set was not used: it holds no key this verifier accepts.
const NO_USABLE_KEY: &str = "the key set has no usable signing key";
/// Largest key set read (bytes).
const MAX_JWKS_BYTES: usize = 1 << 20;

/// A verification key: the algorithm is the key's own, never the token's.
pub(crate) struct Key {
    pub alg: Algorithm,
    pub decoding: DecodingKey,
}

/// Where the keys come from.
pub(crate) enum Source {
    /// Fetched from this URL (and refreshed).
    Url(String),
    /// Given once; never refreshed, never stale.
    Static,
}

struct Cached {
    keys: Arc<HashMap<String, Arc<Key>>>,
    etag: Option<http::HeaderValue>,
    /// When the last fetch (a 200 or a 304) succeeded.
    ok_at: Instant,
    /// How long that answer may be used without revalidation.
    ttl: Duration,
}

/// See the module documentation.
pub(crate) struct KeyCache {
    source: Source,
    http: reqwest::Client,
    accepted: Vec<Algorithm>,
    refetch_interval: Duration,
    hard_limit: Duration,
    state: RwLock<Cached>,
    /// Start of the last unknown-`kid` refetch; held while any fetch runs.
    refetch: Arc<tokio::sync::Mutex<Option<Instant>>>,
    /// Bound on each fetch.
    timeout: Duration,
    /// Key-set requests sent, of any outcome.
    fetches: AtomicU64,
}

impl KeyCache {
    /// A cache of the set at `url`, fetched now. Errors: the fetch failed or the set has no
    /// usable key.
    pub(crate) async fn fetch_new(
        url: String,
        http: reqwest::Client,
        accepted: Vec<Algorithm>,
        refetch_interval: Duration,
        hard_limit: Duration,
        timeout: Duration,
    ) -> Result<Self, crate::SetupError> {
        let cache = KeyCache {
            source: Source::Url(url.clone()),
            http,
            accepted,
            refetch_interval,
            hard_limit,
            timeout,
            state: RwLock::new(Cached {
                keys: Arc::default(),
                etag: None,
                ok_at: Instant::now(),
                ttl: Duration::ZERO,
            }),
            refetch: Arc::default(),
            fetches: AtomicU64::new(0),
        };
        match cache.refresh_unlocked().await {
            Ok(()) => Ok(cache),
            Err(reason) if reason == NO_USABLE_KEY => Err(crate::SetupError::NoKeys(url)),
            Err(reason) => Err(crate::SetupError::Fetch { url, reason }),
        }
    }

    /// A cache holding the set `jwks` (a JWKS document) for good.
    pub(crate) fn fixed(
        jwks: &[u8],
        http: reqwest::Client,
        accepted: Vec<Algorithm>,
    ) -> Result<Self, crate::SetupError> {
        let keys = parse_jwks(jwks, &accepted).map_err(crate::SetupError::KeySet)?;
        if keys.is_empty() {
            return Err(crate::SetupError::NoKeys("the given key set".into()));
        }
        Ok(KeyCache {
            source: Source::Static,
            http,
            accepted,
            refetch_interval: Duration::MAX,
            hard_limit: Duration::MAX,
            timeout: Duration::MAX,
            state: RwLock::new(Cached {
                keys: Arc::new(keys),
                etag: None,
                ok_at: Instant::now(),
                ttl: Duration::MAX,
            }),
            refetch: Arc::default(),
            fetches: AtomicU64::new(0),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cached> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The key `kid` names, from the cache as it stands. `Ok(None)`: not in the set.
    pub(crate) fn cached(&self, kid: &str) -> Result<Option<Arc<Key>>, VerifyError> {
        let c = self.read();
        if c.ok_at.elapsed() > self.hard_limit {
            return Err(VerifyError::KeysUnavailable);
        }
        Ok(c.keys.get(kid).cloned())
    }

    /// The key `kid` names, refetching the set once if it is unknown (single-flight, and at
    /// most once per `refetch_interval`).
    pub(crate) async fn key_for(self: &Arc<Self>, kid: &str) -> Result<Arc<Key>, VerifyError> {
        if let Some(key) = self.cached(kid)? {
            return Ok(key);
        }
        if matches!(self.source, Source::Static) {
            return Err(VerifyError::UnknownKey);
        }
        let mut last = self.refetch.clone().lock_owned().await;
        // A fetch that finished while this request waited may have brought the key.
        if let Some(key) = self.cached(kid)? {
            return Ok(key);
        }
        if last.is_some_and(|t| t.elapsed() < self.refetch_interval) {
            return Err(VerifyError::UnknownKey);
        }
        *last = Some(Instant::now());
        let cache = self.clone();
        let fetch = tokio::spawn(async move {
            if let Err(e) = cache.refresh_unlocked().await {
                tracing::warn!(error = %e, "refetching the key set for an unknown kid failed");
            }
            drop(last);
        });
        // Cancelled or not, the task finishes the fetch and then releases the lock.
        let _ = fetch.await;
        self.cached(kid)?.ok_or(VerifyError::UnknownKey)
    }

    /// How many key-set requests have been sent.
    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Whether the cached set is past its freshness and could not be revalidated.
    pub(crate) fn is_stale(&self) -> bool {
        let c = self.read();
        c.ok_at.elapsed() > c.ttl
    }

    /// When the background task should next refresh: at 80% of the freshness.
    pub(crate) fn next_refresh_in(&self) -> Duration {
        let c = self.read();
        (c.ttl.saturating_mul(4) / 5).saturating_sub(c.ok_at.elapsed())
    }

    /// Fetches the set (conditionally, with the last ETag) and replaces the cache on success,
    /// after any fetch already running. Errors (the reason, for a log line): network, status,
    /// timeout, body, or a set with no usable key; the cache is then left as it was.
    pub(crate) async fn refresh(&self) -> Result<(), String> {
        let _turn = self.refetch.lock().await;
        self.refresh_unlocked().await
    }

    /// `refresh`, for a caller that holds the fetch lock (or needs none: set-up).
    async fn refresh_unlocked(&self) -> Result<(), String> {
        let Source::Url(url) = &self.source else {
            return Ok(());
        };
        let result = match tokio::time::timeout(self.timeout, self.fetch(url)).await {
            Ok(r) => r,
            Err(_) => Err("timed out".to_string()),
        };
        let label = match &result {
            Ok(true) => "updated",
            Ok(false) => "not_modified",
            Err(_) => "error",
        };
        metrics::counter!("tessera_verify_key_refreshes_total", "result" => label).increment(1);
        metrics::gauge!("tessera_verify_keys_stale").set(if self.is_stale() { 1.0 } else { 0.0 });
        result.map(|_| ())
    }

    /// `Ok(true)`: a new set; `Ok(false)`: not modified.
    async fn fetch(&self, url: &str) -> Result<bool, String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let etag = self.read().etag.clone();
        let mut req = self.http.get(url).header(
            http::header::ACCEPT,
            "application/jwk-set+json, application/json",
        );
        if let Some(etag) = etag {
            req = req.header(http::header::IF_NONE_MATCH, etag);
        }
        let res = req.send().await.map_err(describe)?;
        let ttl = crate::http_client::max_age(res.headers())
            .unwrap_or(DEFAULT_TTL)
            .clamp(MIN_TTL, MAX_TTL);
        match res.status() {
            reqwest::StatusCode::NOT_MODIFIED => {
                let mut c = self.state.write().unwrap_or_else(|p| p.into_inner());
                c.ok_at = Instant::now();
                c.ttl = ttl;
                Ok(false)
            }
            reqwest::StatusCode::OK => {
                let etag = res.headers().get(http::header::ETAG).cloned();
                let body = read_capped(res, MAX_JWKS_BYTES).await?;
                let keys = parse_jwks(&body, &self.accepted)?;
                if keys.is_empty() {
                    return Err(NO_USABLE_KEY.into());
                }
                let mut c = self.state.write().unwrap_or_else(|p| p.into_inner());
                *c = Cached {
                    keys: Arc::new(keys),
                    etag,
                    ok_at: Instant::now(),
                    ttl,
                };
                Ok(true)
            }
            s => Err(format!("status {}", s.as_u16())),
        }
    }
}

/// A reqwest error as a log reason: its kind and message, without the URL.
pub(crate) fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    format!("{kind}: {}", e.without_url())
}

/// The body of `res`, refused past `cap` bytes.
pub(crate) async fn read_capped(mut res: reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(describe)? {
        if body.len() + chunk.len() > cap {
            return Err(format!("answer larger than {cap} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests;
