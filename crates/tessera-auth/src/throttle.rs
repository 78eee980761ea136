//! Brute-force limits on `/login`.
//!
//! Failures are counted per normalised username and per client IP, in the database so that every
//! replica sees them. A key has a free allowance of failures; the failure that uses it up starts
//! a wait, and each further failure doubles it (capped). While a key waits, logins for it are
//! answered 429 `slow_down` with `Retry-After`, before any argon2 work. Usernames that do not
//! exist are counted exactly like real ones, so a 429 says nothing about whether an account
//! exists. A successful login clears the username's count. Backoff rather than hard lockout
//! keeps an attacker from locking a user out for long.
//!
//! The throttle counts failures, never attempts in flight (invariant 11, OWASP ASVS 5 V6.3).
//! Before its password is hashed, an attempt *reserves* a slot on each key, in one transaction
//! that locks the keys' rows and counts the attempts in flight (`login_attempts`, each with its
//! own lease): a key lets at most the allowance it has left be checked at once (one
//! guess once it is used up, after each wait). An attempt beyond that waits, for at most
//! `password.queue_timeout`, for the attempts ahead of it to settle, and then goes on with the
//! updated count: cleared by a success, reduced by failures, or refused with 429 if they used
//! the allowance up. So a parallel burst of wrong guesses, on one replica or many, hashes at
//! most the allowance, and correct logins are never refused because others were in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use uuid::Uuid;

use super::AuthError;
use crate::config::ThrottleSettings;
use crate::store::{Reserve, Reserved, Store};
use crate::time::{millis, now_ms};

/// How often a waiting attempt looks again when no settlement in this process woke it: one
/// made by another replica is seen only this way, and so is capacity beyond the one slot a
/// settlement wakes a waiter for.
const RECHECK: Duration = Duration::from_millis(50);

/// The throttle keys of one login attempt.
#[derive(Clone)]
pub struct AttemptKeys {
    pub account: String,
    pub ip: Option<String>,
}

impl AttemptKeys {
    pub fn new(username: &str, ip: Option<&str>) -> Self {
        Self {
            account: format!("u:{username}"),
            ip: ip.map(|ip| format!("ip:{ip}")),
        }
    }
}

/// The wait after the `failures`-th failure, given `free` failures allowed: none before the
/// allowance is used up, `backoff_base` for the failure that uses it up, then doubling up to
/// `backoff_max`. (The store computes the same in its settlement statement.)
pub fn backoff(s: &ThrottleSettings, failures: i64, free: u32) -> Option<Duration> {
    if free == 0 {
        return None;
    }
    let over = failures - i64::from(free);
    if over < 0 {
        return None;
    }
    let factor = 1u32.checked_shl(over.min(30) as u32).unwrap_or(u32::MAX);
    Some(s.backoff_base.saturating_mul(factor).min(s.backoff_max))
}

/// The throttle of one process: the settings, and the signal that wakes one of its waiting
/// attempts, the longest waiting, each time one of its own attempts settles (a slot may have
/// come free).
#[derive(Debug)]
pub struct Throttle {
    settings: ThrottleSettings,
    settled: Arc<Notify>,
}

/// An attempt's slots on its keys, until `failed`, `succeeded` or `abandon` settles it. Dropped
/// unsettled (its request was cancelled), it hands its slots back in the background; a process
/// that dies leaves them to expire with their lease.
#[must_use = "a reservation is settled by `failed`, `succeeded` or `abandon`"]
pub struct Reservation {
    store: Arc<dyn Store>,
    settled: Arc<Notify>,
    /// The attempt's id, the same on each of its keys.
    attempt: Uuid,
    /// (key, its free allowance).
    keys: Vec<(String, u32)>,
    /// The account key (a success clears it rather than releasing).
    account: Option<String>,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Reservation {
    /// Hands the slots still held back, on a task of its own, and wakes a waiting attempt;
    /// `None` when nothing is held.
    fn hand_back(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        let keys = std::mem::take(&mut self.keys);
        if keys.is_empty() {
            return None;
        }
        let (store, settled, attempt) = (self.store.clone(), self.settled.clone(), self.attempt);
        let rt = tokio::runtime::Handle::try_current().ok()?;
        Some(rt.spawn(async move {
            release(store.as_ref(), attempt, &keys).await;
            settled.notify_one();
        }))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Not waited for: whoever dropped it has gone.
        let _ = self.hand_back();
    }
}

async fn release(store: &dyn Store, attempt: Uuid, keys: &[(String, u32)]) {
    let keys: Vec<&str> = keys.iter().map(|(key, _)| key.as_str()).collect();
    if let Err(e) = store.throttle_release(&keys, attempt).await {
        tracing::warn!(error = %e, "login throttle reservation not handed back");
    }
}

/// Whole seconds until `until` (ms), at least one.
fn retry_after(until: i64, now: i64) -> u64 {
    ((until - now + 999) / 1000).max(1) as u64
}

impl Throttle {
    pub fn new(settings: ThrottleSettings) -> Self {
        Self {
            settings,
            settled: Arc::new(Notify::new()),
        }
    }

    /// Reserves the attempt against each key, waiting up to `queue_timeout` while the keys'
    /// allowances are in use by attempts in flight.
    ///
    /// The work runs in a task of its own, so that a request dropped mid-statement (a client
    /// that went away, a request timeout) never leaves a slot taken in the database with no
    /// reservation to hand it back: the task finishes, and a reservation nobody waits for any
    /// more is dropped, which hands it back. `lease` is how long a slot is held if even that
    /// never happens (the process died): longer than a request may take.
    ///
    /// Errors: `Throttled` while a key waits after failures (or the attempts ahead of this one
    /// used its allowance up); `Unavailable("login queue")` when the attempts ahead did not
    /// settle within `queue_timeout`; `StoreUnavailable`.
    pub async fn reserve(
        &self,
        store: &Arc<dyn Store>,
        keys: &AttemptKeys,
        lease: Duration,
        queue_timeout: Duration,
    ) -> Result<Reservation, AuthError> {
        let (store, settled, settings) =
            (store.clone(), self.settled.clone(), self.settings.clone());
        let keys = keys.clone();
        tokio::spawn(reserve(
            store,
            settled,
            settings,
            keys,
            lease,
            queue_timeout,
        ))
        .await
        .map_err(|e| AuthError::Internal(format!("throttle reservation task: {e}")))?
    }

    /// Hands back an attempt that was neither a success nor a failure (the password could not
    /// be checked: shed, or the database failed).
    pub async fn abandon(&self, mut r: Reservation) {
        if let Some(handed_back) = r.hand_back() {
            let _ = handed_back.await;
        }
    }

    /// Settles a failed attempt: counted against each key, and a key whose allowance is used up
    /// waits.
    pub async fn failed(&self, r: Reservation) -> Result<(), AuthError> {
        let (base, max) = (
            millis(self.settings.backoff_base),
            millis(self.settings.backoff_max),
        );
        self.settle(r, Outcome::Failed { base, max }).await
    }

    /// Settles a successful attempt: the username's count is cleared, and the address's slot
    /// handed back.
    pub async fn succeeded(&self, r: Reservation) -> Result<(), AuthError> {
        self.settle(r, Outcome::Succeeded).await
    }

    /// Settles `r` on each of its keys, on a task of its own like the reservation, and wakes
    /// the attempts waiting in this process. If the database refuses a key's settlement, that
    /// key's attempt and the rest are handed back (or, failing that too, end with their lease).
    async fn settle(&self, mut r: Reservation, outcome: Outcome) -> Result<(), AuthError> {
        let keys = std::mem::take(&mut r.keys);
        let account = r.account.take();
        let (store, settled, attempt) = (r.store.clone(), self.settled.clone(), r.attempt);
        let settle = async move {
            let held: Vec<&str> = keys.iter().map(|(key, _)| key.as_str()).collect();
            let result = match outcome {
                // The account key's count is cleared and the attempt leaves every key, at once.
                Outcome::Succeeded => {
                    let clear = account.as_deref().filter(|a| held.contains(a));
                    let settled = store.throttle_succeeded(clear, &held, attempt).await;
                    if settled.is_err() {
                        release(store.as_ref(), attempt, &keys).await;
                    }
                    settled
                }
                // First the counts, then the attempt leaves: an attempt waiting for its slot
                // sees the new count.
                Outcome::Failed { base, max } => {
                    let mut counted = Ok(());
                    for (key, free) in &keys {
                        let free = i64::from(*free);
                        counted = store.throttle_failed(key, now_ms(), free, base, max).await;
                        if counted.is_err() {
                            break;
                        }
                    }
                    match counted {
                        Ok(()) => store.throttle_release(&held, attempt).await,
                        Err(e) => {
                            release(store.as_ref(), attempt, &keys).await;
                            Err(e)
                        }
                    }
                }
            }
            .map_err(AuthError::from);
            settled.notify_one();
            result
        };
        tokio::spawn(settle)
            .await
            .map_err(|e| AuthError::Internal(format!("throttle settlement task: {e}")))?
    }
}

/// How an attempt ended. `Failed` carries the backoff (ms): the first wait, and the longest.
#[derive(Clone, Copy)]
enum Outcome {
    Failed { base: i64, max: i64 },
    Succeeded,
}

/// The body of [`Throttle::reserve`], on its own task.
async fn reserve(
    store: Arc<dyn Store>,
    settled: Arc<Notify>,
    s: ThrottleSettings,
    keys: AttemptKeys,
    lease: Duration,
    queue_timeout: Duration,
) -> Result<Reservation, AuthError> {
    let mut r = Reservation {
        store: store.clone(),
        settled: settled.clone(),
        attempt: Uuid::now_v7(),
        keys: Vec::new(),
        account: None,
    };
    if !s.enabled() {
        return Ok(r);
    }
    let mut pairs = Vec::new();
    if s.account_free_failures > 0 {
        pairs.push((keys.account.clone(), s.account_free_failures));
        r.account = Some(keys.account.clone());
    }
    if let (Some(ip), true) = (keys.ip.as_deref(), s.ip_free_failures > 0) {
        pairs.push((ip.to_string(), s.ip_free_failures));
    }
    let deadline = Instant::now() + queue_timeout;
    let held: Vec<(&str, i64)> = pairs
        .iter()
        .map(|(key, free)| (key.as_str(), i64::from(*free)))
        .collect();
    loop {
        // Registered before looking, so a settlement between the look and the wait wakes
        // this attempt.
        let woken = settled.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let now = now_ms();
        let reserved = store
            .throttle_reserve(&Reserve {
                keys: &held,
                attempt: r.attempt,
                now,
                window_cutoff: now - millis(s.window),
                lease_until: now + millis(lease),
            })
            .await?;
        match reserved {
            Reserved::Taken => {
                r.keys = pairs;
                return Ok(r);
            }
            Reserved::LockedUntil(until) => {
                return Err(AuthError::Throttled {
                    retry_after_secs: retry_after(until, now),
                })
            }
            // A key is busy: nothing was taken; wait for a settlement.
            Reserved::Busy => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(AuthError::Unavailable("login queue"));
        }
        let _ = tokio::time::timeout(left.min(RECHECK), woken).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_that_uses_up_the_allowance_starts_the_wait() {
        let s = ThrottleSettings {
            account_free_failures: 3,
            ip_free_failures: 0,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(5),
            window: Duration::from_secs(900),
            device_requests: 0,
            device_window: Duration::from_secs(300),
        };
        let waits: Vec<Option<u64>> = (1..=7)
            .map(|n| backoff(&s, n, 3).map(|d| d.as_secs()))
            .collect();
        assert_eq!(
            waits,
            [None, None, Some(1), Some(2), Some(4), Some(5), Some(5)]
        );
        assert_eq!(backoff(&s, 10, 0), None, "0 turns the limit off");
    }
}
