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
//! An attempt is *reserved* before its password is hashed: one atomic increment per key in the
//! database, which counts it as a failure until it is settled. Past a key's allowance, an
//! attempt goes on only if it is the one attempt allowed after a served wait, and it claims
//! that turn atomically; any other is refused at once. So a parallel burst, on one replica or
//! many, hashes at most the allowance, and after each wait exactly one guess. After the
//! verification, a failure keeps its count (and starts or lengthens the wait); a success
//! clears the username's count and hands back the address's reservation.

use std::time::Duration;

use super::AuthError;
use crate::config::ThrottleSettings;
use crate::store::Store;
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

/// The attempt counted against each of its keys, until `failed` or `succeeded` settles it.
#[must_use = "a reservation is settled by `failed` or `succeeded`"]
#[derive(Debug, Default)]
pub struct Reservation {
    /// (key, its count including this attempt, its free allowance).
    counts: Vec<(String, i64, u32)>,
    /// Whether the account key is counted (its success clears it rather than releasing).
    account: Option<String>,
}

/// Whole seconds until `until` (ms), at least one.
fn retry_after(until: i64, now: i64) -> u64 {
    ((until - now + 999) / 1000).max(1) as u64
}

/// Reserves the attempt against each key, or refuses it: `Throttled` while a key waits, or
/// when this attempt would go past a key's allowance (a parallel burst).
pub async fn reserve(
    store: &dyn Store,
    s: &ThrottleSettings,
    keys: &AttemptKeys,
    now: i64,
) -> Result<Reservation, AuthError> {
    let mut r = Reservation::default();
    if !s.enabled() {
        return Ok(r);
    }
    let ip = keys.ip.as_deref().unwrap_or("");
    let until = store.throttle_locked_until(&keys.account, ip, now).await?;
    if until > now {
        return Err(AuthError::Throttled {
            retry_after_secs: retry_after(until, now),
        });
    }
    let window_cutoff = now - millis(s.window);
    let mut pairs = Vec::new();
    if s.account_free_failures > 0 {
        pairs.push((keys.account.as_str(), s.account_free_failures));
        r.account = Some(keys.account.clone());
    }
    if let (Some(ip), true) = (keys.ip.as_deref(), s.ip_free_failures > 0) {
        pairs.push((ip, s.ip_free_failures));
    }
    // A refused attempt hands back what it took, and is told to wait at least as long as the
    // failure that uses up the allowance makes a key wait.
    let refuse = |r: Reservation| async move {
        release(store, &r.counts).await?;
        Err(AuthError::Throttled {
            retry_after_secs: retry_after(now + millis(s.backoff_base), now),
        })
    };
    for (key, free) in pairs {
        let Some(count) = store.throttle_reserve(key, now, window_cutoff).await? else {
            // The key started waiting since the check above.
            return refuse(r).await;
        };
        r.counts.push((key.to_string(), count, free));
        if count > i64::from(free) {
            let next = backoff(s, count, free).unwrap_or(s.backoff_base);
            if !store
                .throttle_take_turn(key, now, now + millis(next))
                .await?
            {
                // Past the allowance, and not the one attempt after a wait: the allowance is
                // held by attempts in flight.
                return refuse(r).await;
            }
        }
    }
    Ok(r)
}

async fn release(store: &dyn Store, counts: &[(String, i64, u32)]) -> Result<(), AuthError> {
    for (key, _, _) in counts {
        store.throttle_release(key).await?;
    }
    Ok(())
}

/// Hands back an attempt that was neither a success nor a failure (the password could not be
/// checked: shed, or the database failed). Best effort: the counts expire with the window.
pub async fn abandon(store: &dyn Store, r: Reservation) {
    if let Err(e) = release(store, &r.counts).await {
        tracing::warn!(error = %e, "login throttle reservation not handed back");
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
            store.throttle_lock(key, now + millis(wait)).await?;
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
            store.throttle_release(key).await?;
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
