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
//! An attempt is *reserved* before its password is hashed: one atomic statement per key in the
//! database counts it as a failure until it is settled, or refuses it (counting nothing) while
//! the key waits. The attempt that uses up a key's allowance makes the key wait at once (a
//! hold, for as long as its check may take), so a parallel burst, on one replica or many,
//! hashes at most the allowance, and after each wait exactly one guess. After the
//! verification, a failure keeps its count and turns the hold into the real wait; a success
//! clears the username's count and hands back the address's count and hold.

use std::time::Duration;

use super::AuthError;
use crate::config::ThrottleSettings;
use crate::store::{Reserve, Store};
use crate::time::millis;

/// The throttle keys of one login attempt.
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
/// `backoff_max`.
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

/// The attempt counted against each of its keys, until `failed`, `succeeded` or `abandon`
/// settles it.
#[must_use = "a reservation is settled by `failed`, `succeeded` or `abandon`"]
#[derive(Debug, Default)]
pub struct Reservation {
    /// (key, its count including this attempt, its free allowance).
    counts: Vec<(String, i64, u32)>,
    /// Whether the account key is counted (its success clears it rather than releasing).
    account: Option<String>,
    /// The hold this attempt set on a key whose allowance it used up.
    hold_until: i64,
}

/// Whole seconds until `until` (ms), at least one.
fn retry_after(until: i64, now: i64) -> u64 {
    ((until - now + 999) / 1000).max(1) as u64
}

/// Reserves the attempt against each key, or refuses it with `Throttled` while a key waits.
/// The attempt that uses up a key's allowance makes it wait at once, so that a parallel burst
/// (on one replica or many) hashes at most the allowance, and after each wait one guess.
///
/// `hold` is how long the attempt that uses up an allowance holds the key while its password
/// is checked: longer than a request may take. Its settlement replaces the hold with the real
/// wait (or clears it); an attempt that never settles (its request was dropped or timed out)
/// frees the key when the hold ends.
pub async fn reserve(
    store: &dyn Store,
    s: &ThrottleSettings,
    keys: &AttemptKeys,
    now: i64,
    hold: Duration,
) -> Result<Reservation, AuthError> {
    let mut r = Reservation {
        hold_until: now + millis(hold),
        ..Reservation::default()
    };
    if !s.enabled() {
        return Ok(r);
    }
    let ip = keys.ip.as_deref().unwrap_or("");
    let waiting = |until: i64| AuthError::Throttled {
        retry_after_secs: retry_after(until, now),
    };
    let until = store.throttle_locked_until(&keys.account, ip, now).await?;
    if until > now {
        return Err(waiting(until));
    }
    let mut pairs = Vec::new();
    if s.account_free_failures > 0 {
        pairs.push((keys.account.as_str(), s.account_free_failures));
        r.account = Some(keys.account.clone());
    }
    if let (Some(ip), true) = (keys.ip.as_deref(), s.ip_free_failures > 0) {
        pairs.push((ip, s.ip_free_failures));
    }
    for (key, free) in pairs {
        let reserved = store
            .throttle_reserve(&Reserve {
                key,
                now,
                window_cutoff: now - millis(s.window),
                free: i64::from(free),
                hold_until: r.hold_until,
            })
            .await?;
        let Some(count) = reserved else {
            // The key started waiting since the check above: hand back what this attempt
            // took, and report the wait.
            abandon(store, r).await;
            let until = store.throttle_locked_until(&keys.account, ip, now).await?;
            return Err(waiting(until.max(now + millis(s.backoff_base))));
        };
        r.counts.push((key.to_string(), count, free));
    }
    Ok(r)
}

/// Hands back an attempt that was neither a success nor a failure (the password could not be
/// checked: shed, or the database failed). Best effort: the counts expire with the window.
pub async fn abandon(store: &dyn Store, r: Reservation) {
    for (key, _, _) in &r.counts {
        if let Err(e) = store.throttle_release(key, r.hold_until).await {
            tracing::warn!(error = %e, "login throttle reservation not handed back");
        }
    }
}

/// Settles a failed attempt: its counts stay, and a key whose allowance is used up waits.
pub async fn failed(
    store: &dyn Store,
    s: &ThrottleSettings,
    r: Reservation,
    now: i64,
) -> Result<(), AuthError> {
    for (key, count, free) in &r.counts {
        if let Some(wait) = backoff(s, *count, *free) {
            store
                .throttle_settle_failed(key, r.hold_until, now + millis(wait))
                .await?;
        }
    }
    Ok(())
}

/// Settles a successful attempt: the username's count is cleared, and the address's
/// reservation handed back.
pub async fn succeeded(store: &dyn Store, r: Reservation) -> Result<(), AuthError> {
    for (key, _, _) in &r.counts {
        if r.account.as_deref() == Some(key.as_str()) {
            store.throttle_clear(key).await?;
        } else {
            store.throttle_release(key, r.hold_until).await?;
        }
    }
    Ok(())
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
