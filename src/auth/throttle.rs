//! Brute-force limits on `/login`.
//!
//! Failures are counted per normalised username and per client IP, in the database so that every
//! replica sees them. Past a free allowance, each further failure doubles a wait (capped); while
//! a key waits, logins for it are answered 429 `slow_down` with `Retry-After`, before any argon2
//! work. Usernames that do not exist are counted exactly like real ones, so a 429 says nothing
//! about whether an account exists. A successful login clears the username's count. Backoff
//! rather than hard lockout keeps an attacker from locking a user out for long.

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

/// The wait after the `failures`-th failure, given `free` free failures.
pub fn backoff(s: &ThrottleSettings, failures: i64, free: u32) -> Option<Duration> {
    if free == 0 {
        return None;
    }
    let over = failures - i64::from(free);
    if over <= 0 {
        return None;
    }
    let factor = 1u32
        .checked_shl((over - 1).min(30) as u32)
        .unwrap_or(u32::MAX);
    Some(s.backoff_base.saturating_mul(factor).min(s.backoff_max))
}

/// Refuses the attempt with 429 while any of its keys waits.
pub async fn check(
    store: &dyn Store,
    s: &ThrottleSettings,
    keys: &AttemptKeys,
    now: i64,
) -> Result<(), AuthError> {
    if !s.enabled() {
        return Ok(());
    }
    let ip = keys.ip.as_deref().unwrap_or("");
    let until = store.throttle_locked_until(&keys.account, ip, now).await?;
    if until > now {
        let secs = (until - now + 999) / 1000;
        return Err(AuthError::Throttled {
            retry_after_secs: secs.max(1) as u64,
        });
    }
    Ok(())
}

/// Records a failed attempt and starts a wait when the allowance is used up.
pub async fn failed(
    store: &dyn Store,
    s: &ThrottleSettings,
    keys: &AttemptKeys,
    now: i64,
) -> Result<(), AuthError> {
    if !s.enabled() {
        return Ok(());
    }
    let window_cutoff = now - millis(s.window);
    let mut pairs = vec![(keys.account.as_str(), s.account_free_failures)];
    if let (Some(ip), true) = (keys.ip.as_deref(), s.ip_free_failures > 0) {
        pairs.push((ip, s.ip_free_failures));
    }
    for (key, free) in pairs {
        if free == 0 {
            continue;
        }
        let failures = store.throttle_fail(key, now, window_cutoff).await?;
        if let Some(wait) = backoff(s, failures, free) {
            store.throttle_lock(key, now + millis(wait)).await?;
        }
    }
    Ok(())
}

/// Clears the account's count after a successful login.
pub async fn succeeded(
    store: &dyn Store,
    s: &ThrottleSettings,
    keys: &AttemptKeys,
) -> Result<(), AuthError> {
    if s.enabled() {
        store.throttle_clear(&keys.account).await?;
    }
    Ok(())
}
