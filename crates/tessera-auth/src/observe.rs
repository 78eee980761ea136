//! `Auth::observe`: the gauges `/metrics` reads at each scrape. Counters and histograms are
//! recorded where things happen; these describe state.

use std::sync::OnceLock;
use std::time::Duration;

use super::keys::KeyState;
use super::Auth;
use crate::time::now_ms;

/// Longest a scrape waits for the key table; past it, the key gauges keep their last values.
const KEYS_READ_TIMEOUT: Duration = Duration::from_millis(500);

impl Auth {
    /// Sets the state gauges:
    /// - `tessera_build_info{version}` (1);
    /// - `password_queue_depth` (logins hashing or waiting), `password_slots`;
    /// - `db_pool_connections{state="open"|"idle"}`, `db_pool_max_connections`,
    ///   `db_pool_acquire_wait_seconds` (one acquire timed at the scrape; NaN past 500 ms);
    /// - `revocation_state_trusted` (0 or 1), `revocation_state_entries{kind}`,
    ///   `revocation_state_sync_age_seconds` (NaN until a first sync, or while distrusted);
    /// - `signing_keys{state}` and `signing_key_active_age_seconds` (since the active key
    ///   started signing; NaN with no active key), from one read of the key table (given up
    ///   after 500 ms).
    pub async fn observe(&self) {
        metrics::gauge!("tessera_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        let (depth, slots) = self.passwords.load();
        metrics::gauge!("password_queue_depth").set(depth as f64);
        metrics::gauge!("password_slots").set(slots as f64);
        let pool = self.store.pool_stats();
        metrics::gauge!("db_pool_connections", "state" => "open").set(f64::from(pool.open));
        metrics::gauge!("db_pool_connections", "state" => "idle").set(f64::from(pool.idle));
        metrics::gauge!("db_pool_max_connections").set(f64::from(pool.max));
        // The wait a query would have now: near zero with an idle connection, the queueing
        // time when every connection is busy, NaN when none came within the probe's limit.
        let wait = self.store.probe_acquire(KEYS_READ_TIMEOUT).await;
        metrics::gauge!("db_pool_acquire_wait_seconds")
            .set(wait.map_or(f64::NAN, |w| w.as_secs_f64()));
        let r = self.revocations.stats();
        metrics::gauge!("revocation_state_trusted").set(if r.trusted { 1.0 } else { 0.0 });
        for (kind, n) in [
            ("jti", r.jtis),
            ("session", r.sessions),
            ("user", r.users),
            ("live_session", r.live),
        ] {
            metrics::gauge!("revocation_state_entries", "kind" => kind).set(n as f64);
        }
        // NaN (no sample value) rather than a stale one, when there is nothing to measure.
        metrics::gauge!("revocation_state_sync_age_seconds")
            .set(r.since_sync.map_or(f64::NAN, |age| age.as_secs_f64()));
        let now = now_ms();
        // A scrape must answer while the database is down, when it matters most.
        let keys = tokio::time::timeout(KEYS_READ_TIMEOUT, self.store.keys()).await;
        if let Ok(Ok(rows)) = keys {
            const STATES: [KeyState; 4] = [
                KeyState::Pending,
                KeyState::Active,
                KeyState::Retired,
                KeyState::Removed,
            ];
            let mut active_since: Option<i64> = None;
            let states: Vec<KeyState> = rows.iter().map(|r| KeyState::of(r, now)).collect();
            for (row, state) in rows.iter().zip(&states) {
                if *state == KeyState::Active {
                    active_since =
                        Some(active_since.map_or(row.activate_at, |t| t.max(row.activate_at)));
                }
            }
            for state in STATES {
                let n = states.iter().filter(|s| **s == state).count();
                metrics::gauge!("signing_keys", "state" => state.name()).set(n as f64);
            }
            metrics::gauge!("signing_key_active_age_seconds")
                .set(active_since.map_or(f64::NAN, |t| (now - t).max(0) as f64 / 1000.0));
        }
    }
}

/// A counter of a hot path, resolved from the recorder at its first use and kept: resolving
/// one hashes its name and labels on every call. (Resolved at first use, not when made, so
/// that a recorder installed after `Auth` is built still gets it.)
pub(crate) struct HotCounter {
    handle: OnceLock<metrics::Counter>,
    resolve: fn() -> metrics::Counter,
}

impl HotCounter {
    pub(crate) const fn new(resolve: fn() -> metrics::Counter) -> Self {
        Self {
            handle: OnceLock::new(),
            resolve,
        }
    }

    pub(crate) fn increment(&self) {
        self.handle.get_or_init(self.resolve).increment(1);
    }
}

/// `token_checks_total{source}`: where each access token's revocation check was answered.
pub(crate) struct TokenChecks {
    pub(crate) memory: HotCounter,
    pub(crate) database: HotCounter,
}

impl TokenChecks {
    pub(crate) const fn new() -> Self {
        Self {
            memory: HotCounter::new(
                || metrics::counter!("token_checks_total", "source" => "memory"),
            ),
            database: HotCounter::new(
                || metrics::counter!("token_checks_total", "source" => "database"),
            ),
        }
    }
}
