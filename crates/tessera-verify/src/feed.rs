//! Tessera's revocation feed (`GET /revocations?since=CURSOR`, client-authenticated), polled
//! and applied to an in-memory state.
//!
//! The feed lists, since the cursor: revoked access tokens (`jti`, with their `exp`), revoked
//! sessions (`sid`, with `revoked_at`) and per-user cut-offs (`sub`, `not_before`). Entries may
//! repeat between polls; applying one twice changes nothing. An entry is dropped once no token
//! it could refuse is still valid:
//! - a `jti` after its own `exp` plus the leeway;
//! - a `sid` or a cut-off once `token_horizon` plus the leeway has passed since it was made
//!   (the verifier refuses tokens that live longer than the horizon, so none issued earlier
//!   is still accepted then).
//!
//! A cut-off refuses every token issued at or before it, in milliseconds, as Tessera does.
//!
//! So the state holds what was revoked within one horizon, and no more.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use tessera_proto::feed::FeedPage as Page;

use crate::claims::Claims;
use crate::error::VerifyError;

/// Largest feed answer read (bytes); Tessera's pages are at most a few MB.
const MAX_FEED_BYTES: usize = 16 << 20;
/// Most pages read in one poll (a backlog longer than this continues at the next poll).
const MAX_PAGES_PER_POLL: usize = 1000;

/// Where and how to poll.
pub(crate) struct FeedSource {
    pub url: String,
    pub client_id: String,
    pub secret: SecretString,
}

impl std::fmt::Debug for FeedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedSource")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// The revoked entries in force, by key, with the Unix second after which each is dropped.
#[derive(Debug, Default)]
pub(crate) struct Revocations {
    jtis: HashMap<String, i64>,
    sids: HashMap<String, i64>,
    /// `sub` → (cut-off in ms, drop after).
    users: HashMap<String, (i64, i64)>,
}

impl Revocations {
    /// Whether `c` is revoked.
    pub(crate) fn refuses(&self, c: &Claims) -> bool {
        self.jtis.contains_key(c.jti.as_ref())
            || self.sids.contains_key(c.sid.as_ref())
            || self
                .users
                .get(c.sub.as_ref())
                .is_some_and(|(cut_ms, _)| c.issued_at_ms() <= *cut_ms)
    }

    pub(crate) fn len(&self) -> usize {
        self.jtis.len() + self.sids.len() + self.users.len()
    }

    /// Applies one feed answer; entries already past their drop time are not added.
    fn apply(&mut self, page: Page, now: i64, leeway: i64, horizon: i64) {
        for t in page.revoked_tokens {
            let drop_at = t.exp.saturating_add(leeway);
            if drop_at >= now {
                self.jtis.insert(t.jti, drop_at);
            }
        }
        for s in page.revoked_sessions {
            let drop_at = s.revoked_at.saturating_add(horizon).saturating_add(leeway);
            if drop_at >= now {
                let e = self.sids.entry(s.sid).or_insert(drop_at);
                *e = (*e).max(drop_at);
            }
        }
        for u in page.not_before {
            // The exact cut-off when given; the whole second otherwise.
            let cut_ms = u
                .not_before_ms
                .unwrap_or_else(|| u.not_before.saturating_mul(1000));
            let drop_at = (cut_ms / 1000)
                .saturating_add(horizon)
                .saturating_add(leeway)
                .saturating_add(1);
            if drop_at >= now {
                let e = self.users.entry(u.sub).or_insert((cut_ms, drop_at));
                // A later cut-off supersedes an earlier one; an earlier never undoes a later.
                if cut_ms >= e.0 {
                    *e = (cut_ms, drop_at);
                }
            }
        }
    }

    /// Drops every entry past its drop time.
    fn prune(&mut self, now: i64) {
        self.jtis.retain(|_, drop_at| *drop_at >= now);
        self.sids.retain(|_, drop_at| *drop_at >= now);
        self.users.retain(|_, (_, drop_at)| *drop_at >= now);
    }
}

/// The polled state. See the module documentation.
pub(crate) struct Feed {
    source: FeedSource,
    http: reqwest::Client,
    leeway_secs: i64,
    horizon_secs: i64,
    max_staleness: Duration,
    timeout: Duration,
    state: RwLock<Revocations>,
    cursor: Mutex<Option<String>>,
    /// When a poll last succeeded.
    ok_at: RwLock<Instant>,
}

impl Feed {
    pub(crate) fn new(
        source: FeedSource,
        http: reqwest::Client,
        leeway: Duration,
        horizon: Duration,
        max_staleness: Duration,
        timeout: Duration,
    ) -> Self {
        Feed {
            source,
            http,
            leeway_secs: i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX),
            horizon_secs: i64::try_from(horizon.as_secs()).unwrap_or(i64::MAX),
            max_staleness,
            timeout,
            state: RwLock::default(),
            cursor: Mutex::new(None),
            ok_at: RwLock::new(Instant::now()),
        }
    }

    /// Whether the last successful poll is older than `max_staleness`.
    pub(crate) fn is_stale(&self) -> bool {
        self.ok_at
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
            > self.max_staleness
    }

    /// `Err(Revoked)` when the feed refuses `c`.
    pub(crate) fn check(&self, c: &Claims) -> Result<(), VerifyError> {
        if self
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .refuses(c)
        {
            return Err(VerifyError::Revoked);
        }
        Ok(())
    }

    /// How many entries are held.
    pub(crate) fn len(&self) -> usize {
        self.state.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Polls once and applies the answer. Errors (the reason, for a log line): network,
    /// status, or an unreadable answer; the state and cursor are then unchanged.
    pub(crate) async fn poll(&self) -> Result<(), String> {
        let result = match tokio::time::timeout(self.timeout, self.fetch()).await {
            Ok(r) => r,
            Err(_) => Err("timed out".to_string()),
        };
        metrics::counter!("tessera_verify_feed_polls_total",
            "result" => if result.is_ok() { "ok" } else { "error" })
        .increment(1);
        let lag = self
            .ok_at
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        metrics::gauge!("tessera_verify_feed_lag_seconds").set(lag.as_secs_f64());
        result
    }

    /// Reads pages until one says no more follow, applying each and keeping its cursor, so
    /// that a failure part-way resumes where it stopped. Only a complete pass counts as a
    /// successful poll.
    async fn fetch(&self) -> Result<(), String> {
        for _ in 0..MAX_PAGES_PER_POLL {
            if !self.fetch_page().await? {
                *self.ok_at.write().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                return Ok(());
            }
        }
        Err(format!("more than {MAX_PAGES_PER_POLL} pages pending"))
    }

    /// One page; `Ok(true)` when more follow.
    async fn fetch_page(&self) -> Result<bool, String> {
        let cursor = self
            .cursor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut req = self.http.get(&self.source.url).basic_auth(
            &self.source.client_id,
            Some(self.source.secret.expose_secret()),
        );
        if let Some(c) = &cursor {
            req = req.query(&[("since", c)]);
        }
        let res = req.send().await.map_err(crate::keys::describe)?;
        if res.status() == reqwest::StatusCode::BAD_REQUEST && cursor.is_some() {
            // A cursor the server no longer takes (an upgrade changed its shape): read the
            // whole feed again; applying entries twice is harmless.
            *self.cursor.lock().unwrap_or_else(|p| p.into_inner()) = None;
            return Err("the server refused the cursor; starting over".into());
        }
        if res.status() != reqwest::StatusCode::OK {
            return Err(format!("status {}", res.status().as_u16()));
        }
        let body = crate::keys::read_capped(res, MAX_FEED_BYTES).await?;
        let page: Page =
            serde_json::from_slice(&body).map_err(|_| "unreadable feed answer".to_string())?;
        let (next, more) = (page.cursor.clone(), page.has_more);
        let now = unix_now();
        let entries = {
            let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
            s.prune(now);
            s.apply(page, now, self.leeway_secs, self.horizon_secs);
            s.len()
        };
        *self.cursor.lock().unwrap_or_else(|p| p.into_inner()) = Some(next);
        metrics::gauge!("tessera_verify_revocation_entries").set(entries as f64);
        Ok(more)
    }
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, sid: &str, jti: &str, iat: i64) -> Claims {
        serde_json::from_value(serde_json::json!({
            "iss": "i", "sub": sub, "aud": "a", "exp": iat + 600, "iat": iat, "nbf": iat,
            "jti": jti, "sid": sid, "client_id": "c"
        }))
        .unwrap()
    }

    fn page(v: serde_json::Value) -> Page {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn applies_each_kind_idempotently() {
        let now = 1_000_000;
        let mut r = Revocations::default();
        let p = serde_json::json!({
            "cursor": "1",
            "revoked_tokens": [{"jti": "j1", "exp": now + 60, "revoked_at": now}],
            "revoked_sessions": [{"sid": "s1", "revoked_at": now}],
            "not_before": [{"sub": "u1", "not_before": now + 1, "not_before_ms": now * 1000 + 500}],
        });
        r.apply(page(p.clone()), now, 10, 3600);
        r.apply(page(p), now, 10, 3600);
        assert_eq!(r.len(), 3);
        assert!(r.refuses(&claims("x", "x", "j1", now)));
        assert!(r.refuses(&claims("x", "s1", "x", now)));
        // Issued in the cut-off's second but before it (iat decides without a UUIDv7 jti).
        assert!(r.refuses(&claims("u1", "x", "x", now)));
        assert!(!r.refuses(&claims("u1", "x", "x", now + 1)));
        // Issued exactly at the cut-off: refused, as Tessera refuses it.
        let mut r = Revocations::default();
        r.apply(
            page(serde_json::json!({"cursor": "1",
                "not_before": [{"sub": "u1", "not_before": now, "not_before_ms": now * 1000}]})),
            now,
            10,
            3600,
        );
        assert!(r.refuses(&claims("u1", "x", "x", now)));
        assert!(!r.refuses(&claims("u1", "x", "x", now + 1)));
        assert!(!r.refuses(&claims("u2", "x", "x", now)));
    }

    #[test]
    fn a_later_cutoff_wins_and_an_earlier_one_never_undoes_it() {
        let now = 1_000_000;
        let mut r = Revocations::default();
        let cut = |s: i64| {
            page(serde_json::json!({"cursor": "1",
                "not_before": [{"sub": "u", "not_before": s, "not_before_ms": s * 1000}]}))
        };
        r.apply(cut(now + 5), now, 10, 3600);
        r.apply(cut(now), now, 10, 3600);
        assert!(r.refuses(&claims("u", "x", "x", now + 5)));
        assert!(!r.refuses(&claims("u", "x", "x", now + 6)));
    }

    #[test]
    fn entries_past_the_horizon_are_dropped() {
        let now = 1_000_000;
        let mut r = Revocations::default();
        r.apply(
            page(serde_json::json!({"cursor": "1",
                "revoked_tokens": [{"jti": "old", "exp": now - 11}, {"jti": "live", "exp": now + 5}],
                "revoked_sessions": [{"sid": "s", "revoked_at": now - 100}],
                "not_before": [{"sub": "u", "not_before": now - 100}]})),
            now,
            10,
            3600,
        );
        assert_eq!(r.len(), 3, "the expired jti is never added");
        r.prune(now + 16);
        assert_eq!(r.len(), 2, "the live jti goes after exp + leeway");
        r.prune(now + 3500);
        assert_eq!(
            r.len(),
            2,
            "a token of the horizon's length may still be in its leeway"
        );
        r.prune(now + 3600);
        assert_eq!(r.len(), 0, "session and cut-off go after horizon + leeway");
    }

    #[test]
    fn the_secret_is_not_in_debug_output() {
        let s = FeedSource {
            url: "u".into(),
            client_id: "c".into(),
            secret: SecretString::from("hunter2-secret"),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
