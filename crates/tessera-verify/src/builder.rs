//! [`VerifierBuilder`]: the settings of a [`Verifier`], and building one: metadata discovery,
//! the first key set, the first feed poll, then the background refresh and polling tasks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use secrecy::SecretString;

use crate::background::{poll_feed, refresh_keys};
use crate::discovery::{check_url, discover};
use crate::error::SetupError;
use crate::feed::{Feed, FeedSource};
use crate::keys::KeyCache;
use crate::verifier::{Inner, StalePolicy, Verifier, ASYMMETRIC};

/// Settings of a [`Verifier`]; every one has a default.
#[must_use]
pub struct VerifierBuilder {
    issuer: String,
    audience: String,
    jwks_url: Option<String>,
    jwks: Option<Vec<u8>>,
    leeway: Duration,
    required_roles: Vec<String>,
    algorithms: Vec<Algorithm>,
    http_timeout: Duration,
    http: Option<reqwest::Client>,
    allow_http: bool,
    refetch_interval: Duration,
    key_hard_limit: Duration,
    feed: Option<(String, SecretString, Duration)>,
    feed_url: Option<String>,
    max_staleness: Option<Duration>,
    stale_policy: StalePolicy,
    token_horizon: Duration,
    cache_entries: usize,
}

/// Verified tokens kept by default (`VerifierBuilder::verified_cache`).
const DEFAULT_CACHE_ENTRIES: usize = 10_000;

impl std::fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("feed_client_id", &self.feed.as_ref().map(|f| &f.0))
            .finish_non_exhaustive()
    }
}

impl VerifierBuilder {
    /// Every default, for tokens of `issuer` meant for `audience` (`Verifier::builder`).
    pub(crate) fn new(issuer: String, audience: String) -> Self {
        VerifierBuilder {
            issuer,
            audience,
            jwks_url: None,
            jwks: None,
            leeway: Duration::from_secs(10),
            required_roles: Vec::new(),
            algorithms: ASYMMETRIC.to_vec(),
            http_timeout: Duration::from_secs(5),
            http: None,
            allow_http: false,
            refetch_interval: Duration::from_secs(5),
            key_hard_limit: Duration::from_secs(24 * 3600),
            feed: None,
            feed_url: None,
            max_staleness: None,
            stale_policy: StalePolicy::Reject,
            token_horizon: Duration::from_secs(24 * 3600),
            cache_entries: DEFAULT_CACHE_ENTRIES,
        }
    }

    /// How many verified tokens to keep (default 10 000, about 2 KB each; 0: none). A token
    /// seen again within its lifetime skips the signature check (about a microsecond instead
    /// of tens); the revocation feed, the required roles, the key still being in the set and
    /// `exp` are checked on every use. Only tokens that verified are kept, so forged or
    /// expired ones cannot push the others out.
    pub fn verified_cache(mut self, entries: usize) -> Self {
        self.cache_entries = entries;
        self
    }

    /// Read keys from this URL instead of the metadata's `jwks_uri` (no discovery).
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// Use this JWKS document for good: no network for keys, no refresh (tests, pinned keys).
    pub fn jwks(mut self, document: impl Into<Vec<u8>>) -> Self {
        self.jwks = Some(document.into());
        self
    }

    /// Clock skew allowed on `exp`, `nbf` and `iat` (whole seconds; default 10 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// A role every token must carry (403 `insufficient_scope` otherwise); may repeat.
    pub fn require_role(mut self, role: impl Into<String>) -> Self {
        self.required_roles.push(role.into());
        self
    }

    /// The JWS algorithms accepted (default: every asymmetric one). HMAC algorithms are
    /// ignored: a verifier that holds only public keys must never accept them.
    pub fn algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = algorithms
            .iter()
            .copied()
            .filter(|a| ASYMMETRIC.contains(a))
            .collect();
        self
    }

    /// Timeout of each metadata, key-set and feed request (default 5 s).
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// Use this HTTP client (for a private CA or a proxy) instead of the built-in one
    /// (rustls on aws-lc-rs, the platform's certificate verifier). `http_timeout` still bounds
    /// every request.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Allow plain `http://` URLs for metadata, keys and the feed on hosts other than the
    /// loopback (a private network behind a service mesh, say). Without it they must be
    /// `https://`, since keys fetched in clear can be replaced in transit and the feed's
    /// client secret travels in the request (RFC 8414 §2).
    pub fn allow_http(mut self) -> Self {
        self.allow_http = true;
        self
    }

    /// Least time between two refetches caused by unknown `kid`s (default 5 s).
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// How long after the last successful fetch cached keys are still trusted while the
    /// issuer is unreachable (default 24 h). Past it every token is refused.
    pub fn key_hard_limit(mut self, limit: Duration) -> Self {
        self.key_hard_limit = limit;
        self
    }

    /// Poll Tessera's revocation feed every `poll_every` (100 ms to 1 h), authenticating as
    /// the confidential client `client_id` (HTTP Basic, RFC 6749 §2.3.1).
    pub fn with_revocation_feed(
        mut self,
        client_id: impl Into<String>,
        client_secret: SecretString,
        poll_every: Duration,
    ) -> Self {
        self.feed = Some((client_id.into(), client_secret, poll_every));
        self
    }

    /// The feed's URL (default: the metadata's `revocation_feed_endpoint`, else
    /// `{issuer}/revocations`).
    pub fn revocation_feed_url(mut self, url: impl Into<String>) -> Self {
        self.feed_url = Some(url.into());
        self
    }

    /// How long the feed may go unread before the [`StalePolicy`] applies (default: three
    /// poll intervals, at least 30 s).
    pub fn max_staleness(mut self, max: Duration) -> Self {
        self.max_staleness = Some(max);
        self
    }

    /// What to answer while the verifier's state is stale (default [`StalePolicy::Reject`]).
    pub fn on_stale(mut self, policy: StalePolicy) -> Self {
        self.stale_policy = policy;
        self
    }

    /// The longest lifetime (`exp - iat`) a token may have (default 24 h): longer ones are
    /// refused, and revocation entries are kept this long. Set it at or above Tessera's
    /// `tokens.access_ttl`.
    pub fn token_horizon(mut self, horizon: Duration) -> Self {
        self.token_horizon = horizon;
        self
    }

    /// Fetches metadata (unless a JWKS URL or document was given), the key set and the first
    /// feed page, then starts the background refresh and polling tasks (on the current tokio
    /// runtime; they stop when the last clone of the verifier is dropped).
    ///
    /// Errors: [`SetupError`].
    pub async fn build(self) -> Result<Verifier, SetupError> {
        self.validate()?;
        let http = match self.http.clone() {
            Some(c) => c,
            None => crate::http_client::build(self.http_timeout).map_err(SetupError::Config)?,
        };
        let (keys, feed_endpoint) = self.load_keys(&http).await?;
        let keys = Arc::new(keys);
        let feed = self.start_feed(&http, feed_endpoint).await?;
        // Nothing can fail from here on: only now do the background tasks start.
        let mut tasks = Vec::new();
        if self.jwks.is_none() {
            tasks.push(tokio::spawn(refresh_keys(keys.clone())));
        }
        if let Some((feed, every)) = &feed {
            tasks.push(tokio::spawn(poll_feed(feed.clone(), *every)));
        }
        let validations = self.validations();
        Ok(Verifier {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                audience: self.audience,
                leeway: secs(self.leeway),
                horizon: secs(self.token_horizon),
                required_roles: self.required_roles,
                stale_policy: self.stale_policy,
                keys,
                feed: feed.map(|(f, _)| f),
                validations,
                cache: (self.cache_entries > 0)
                    .then(|| quick_cache::sync::Cache::new(self.cache_entries)),
                tasks,
            }),
        })
    }

    /// The key set: the pinned document, or fetched from the JWKS URL (given, or found by
    /// metadata discovery, which also names the feed's endpoint).
    async fn load_keys(
        &self,
        http: &reqwest::Client,
    ) -> Result<(KeyCache, Option<String>), SetupError> {
        if let Some(doc) = self.jwks.as_deref() {
            let keys = KeyCache::fixed(doc, http.clone(), self.algorithms.clone())?;
            return Ok((keys, None));
        }
        let (url, feed_endpoint) = match self.jwks_url.clone() {
            Some(url) => (url, None),
            None => {
                let meta = tokio::time::timeout(
                    self.http_timeout.saturating_mul(2),
                    discover(http, &self.issuer, self.allow_http),
                )
                .await
                .map_err(|_| SetupError::Fetch {
                    url: self.issuer.clone(),
                    reason: "metadata discovery timed out".into(),
                })??;
                (meta.jwks_uri, meta.revocation_feed_endpoint)
            }
        };
        check_url(&url, self.allow_http)?;
        let keys = KeyCache::fetch_new(
            url,
            http.clone(),
            self.algorithms.clone(),
            self.refetch_interval,
            self.key_hard_limit,
            self.http_timeout,
        )
        .await?;
        Ok((keys, feed_endpoint))
    }

    /// The revocation feed, polled once before the verifier is returned; `None` without one.
    async fn start_feed(
        &self,
        http: &reqwest::Client,
        feed_endpoint: Option<String>,
    ) -> Result<Option<(Arc<Feed>, Duration)>, SetupError> {
        let Some((client_id, secret, every)) = self.feed.clone() else {
            return Ok(None);
        };
        let url = self
            .feed_url
            .clone()
            .or(feed_endpoint)
            .unwrap_or_else(|| format!("{}/revocations", self.issuer.trim_end_matches('/')));
        check_url(&url, self.allow_http)?;
        let max_staleness = self
            .max_staleness
            .unwrap_or_else(|| every.saturating_mul(3).max(Duration::from_secs(30)));
        let source = FeedSource {
            url,
            client_id,
            secret,
        };
        let feed = Feed::new(
            source,
            http.clone(),
            self.leeway,
            self.token_horizon,
            max_staleness,
            self.http_timeout,
        );
        feed.poll().await.map_err(SetupError::Feed)?;
        Ok(Some((Arc::new(feed), every)))
    }

    /// One prebuilt validation per accepted algorithm.
    fn validations(&self) -> HashMap<Algorithm, Validation> {
        self.algorithms
            .iter()
            .map(|alg| {
                let mut v = Validation::new(*alg);
                v.leeway = self.leeway.as_secs();
                v.validate_exp = true;
                v.validate_nbf = true;
                v.set_issuer(&[&self.issuer]);
                v.set_audience(&[&self.audience]);
                v.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
                (*alg, v)
            })
            .collect()
    }

    /// Refuses settings that cannot work: the errors name the setting.
    fn validate(&self) -> Result<(), SetupError> {
        let bad = |what: &str| Err(SetupError::Config(what.to_string()));
        if self.issuer.is_empty() || self.audience.is_empty() {
            return bad("issuer and audience must not be empty");
        }
        if self.algorithms.is_empty() {
            return bad("algorithms: no asymmetric algorithm accepted");
        }
        if self.leeway > Duration::from_secs(300) {
            return bad("leeway: at most 5 minutes");
        }
        if self.token_horizon < Duration::from_secs(60)
            || self.token_horizon > Duration::from_secs(30 * 86_400)
        {
            return bad("token_horizon: 1 minute to 30 days");
        }
        if self.refetch_interval < Duration::from_secs(1) {
            return bad("refetch_interval: at least 1 second");
        }
        if self.key_hard_limit < Duration::from_secs(1) {
            return bad("key_hard_limit: at least 1 second");
        }
        if self.http_timeout.is_zero() {
            return bad("http_timeout: must not be zero");
        }
        if let Some((_, _, every)) = &self.feed {
            if *every < Duration::from_millis(100) || *every > Duration::from_secs(3600) {
                return bad("the feed's poll interval: 100 ms to 1 hour");
            }
            if self.max_staleness.is_some_and(|m| m < *every) {
                return bad("max_staleness: at least the poll interval");
            }
        }
        Ok(())
    }
}

/// Whole seconds as `i64`, saturating.
fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}
