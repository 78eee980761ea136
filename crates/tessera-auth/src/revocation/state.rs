//! What the revocation state knows, how far it is trusted, and the checks against it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::dense::DenseSet;

use crate::store::{Change, User};

/// Cached user rows beyond this are dropped wholesale (they reload on demand).
pub(super) const MAX_USERS: usize = 100_000;
/// Likewise for sessions known to exist and not be revoked.
pub(super) const MAX_LIVE_SESSIONS: usize = 500_000;
/// Rows are written with the writer's clock and become visible at commit: a poll re-reads this
/// much before its cursor, so a slow commit or a skewed replica clock is not missed.
pub(super) const OVERLAP_MS: i64 = 10_000;
/// The first load reads at least this many rows per `max_lag`, or fails.
pub(super) const LOAD_CHUNK: usize = 100_000;
/// How often lapsed entries are dropped (ms).
pub(super) const PRUNE_EVERY_MS: i64 = 15_000;

/// What the in-memory state says about a token.
#[derive(Debug)]
pub enum Check {
    /// The state cannot be trusted right now: ask the database.
    Unknown,
    /// The `jti` or the session is revoked.
    Revoked,
    /// The session is live and belongs to the user, and this is the user's current row.
    User(Arc<User>),
    /// Nothing known is revoked, but the session or the user row is not cached: read them from
    /// the database, then `remember` them with the epoch given.
    Load(u64),
}

/// Denylisted `jti`s and their tokens' expiry (ms), compactly: Tessera's own `jti`s are
/// UUIDs, held as their 16 bytes in a [`DenseSet`] (20 bytes an entry); any other text (a
/// token from elsewhere, a row written by hand) is kept as text. A `jti` is held as a UUID only
/// in its canonical lowercase hyphenated form, so two different strings never meet in one
/// entry.
#[derive(Default)]
pub(super) struct Jtis {
    pub(super) uuids: DenseSet,
    pub(super) text: HashMap<Box<str>, i64>,
}

impl Jtis {
    pub(super) fn canonical_uuid(jti: &str) -> Option<[u8; 16]> {
        let id = Uuid::try_parse(jti).ok()?;
        let mut buf = Uuid::encode_buffer();
        (id.hyphenated().encode_lower(&mut buf) == jti).then(|| *id.as_bytes())
    }

    pub(super) fn insert(&mut self, jti: &str, exp: i64) {
        match Self::canonical_uuid(jti) {
            Some(id) => self.uuids.insert(id, exp),
            None => {
                let held = self.text.entry(jti.into()).or_insert(exp);
                *held = (*held).max(exp);
            }
        }
    }

    pub(super) fn contains(&self, jti: &str) -> bool {
        match Self::canonical_uuid(jti) {
            Some(id) => self.uuids.contains(&id),
            None => self.text.contains_key(jti),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.uuids.len() + self.text.len()
    }

    /// Drops the entries whose token has expired at `now`.
    pub(super) fn retain_live(&mut self, now: i64) {
        self.uuids.retain_after(now);
        self.text.retain(|_, exp| *exp > now);
    }
}

#[derive(Default)]
pub(super) struct Known {
    /// Denylisted jti -> token expiry (ms).
    pub(super) jtis: Jtis,
    /// Revoked session ids, each kept for the token horizon after this process learnt of the
    /// revocation (the row's own time may be anything an operator wrote).
    pub(super) sessions: DenseSet,
    pub(super) users: HashMap<Uuid, Arc<User>>,
    /// session id -> its user, for sessions read from the database (or created here) unrevoked.
    /// A later revocation lands in `sessions`, which is checked first.
    pub(super) live: HashMap<Uuid, Uuid>,
    /// The `now` of the last successful sync; the next one reads from here (minus the overlap).
    pub(super) cursor: Option<i64>,
    /// When lapsed entries are next dropped (ms): a pass over millions of entries under the
    /// write lock is not worth making every sync, and a lapsed entry only costs memory.
    pub(super) next_prune: i64,
}

/// What `RevocationState::stats` reports.
#[derive(Debug, Clone, Copy)]
pub struct RevocationStats {
    /// Denylisted access-token ids not yet expired.
    pub jtis: usize,
    /// Revoked sessions inside the token horizon.
    pub sessions: usize,
    /// Cached user rows.
    pub users: usize,
    /// Sessions known to be live.
    pub live: usize,
    /// `None`: never synced, or distrusted since.
    pub since_sync: Option<Duration>,
    pub trusted: bool,
}

/// See the module documentation.
pub struct RevocationState {
    pub(super) enabled: bool,
    pub(super) max_lag: Duration,
    pub(super) horizon_ms: i64,
    /// The verifiers' leeway past `exp` (ms): a denylisted `jti` is kept that much longer.
    pub(super) leeway_ms: i64,
    pub(super) base: Instant,
    /// Nanoseconds after `base` at which the last successful sync started; 0: none, or
    /// distrusted since.
    pub(super) synced_at: AtomicU64,
    pub(super) listening: AtomicBool,
    /// Bumped by every user invalidation: a row read before a bump is not cached.
    pub(super) user_epoch: AtomicU64,
    pub(super) state: RwLock<Known>,
}

impl std::fmt::Debug for RevocationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationState")
            .field("enabled", &self.enabled)
            .field("trusted", &self.trusted())
            .finish_non_exhaustive()
    }
}

impl RevocationState {
    /// `horizon_ms` is how long a revoked session still matters (access TTL plus leeway);
    /// `leeway_ms` how long past its `exp` a token is still accepted.
    pub fn new(enabled: bool, max_lag: Duration, horizon_ms: i64, leeway_ms: i64) -> Self {
        Self {
            enabled,
            max_lag,
            horizon_ms,
            leeway_ms,
            base: Instant::now(),
            synced_at: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            user_epoch: AtomicU64::new(0),
            state: RwLock::new(Known::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// How often the upkeep task should sync.
    pub fn poll_every(&self) -> Duration {
        (self.max_lag / 2).max(Duration::from_millis(50))
    }

    pub(super) fn mono_ns(&self) -> u64 {
        // Never 0, which means "not synced".
        (self.base.elapsed().as_nanos() as u64).max(1)
    }

    /// Entries held (denylisted jtis, revoked sessions, cached users, live sessions) and the
    /// time since the last successful sync, for `/metrics`.
    pub fn stats(&self) -> RevocationStats {
        let at = self.synced_at.load(Ordering::Acquire);
        let s = self.state.read().unwrap_or_else(|p| p.into_inner());
        RevocationStats {
            jtis: s.jtis.len(),
            sessions: s.sessions.len(),
            users: s.users.len(),
            live: s.live.len(),
            since_sync: (at != 0).then(|| Duration::from_nanos(self.mono_ns().saturating_sub(at))),
            trusted: self.trusted(),
        }
    }

    /// True when checks may be answered from memory.
    pub fn trusted(&self) -> bool {
        if !self.enabled || !self.listening.load(Ordering::Acquire) {
            return false;
        }
        let at = self.synced_at.load(Ordering::Acquire);
        at != 0 && self.mono_ns().saturating_sub(at) < self.max_lag.as_nanos() as u64
    }

    /// Stops trusting the state until the next successful sync (the database looked
    /// unreachable, or the listener broke).
    pub fn distrust(&self) {
        self.synced_at.store(0, Ordering::Release);
    }

    /// The change listener is connected (`true`) or lost (`false`).
    pub fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::Release);
        if !on {
            self.distrust();
        }
    }

    pub(super) fn read(&self) -> std::sync::RwLockReadGuard<'_, Known> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn write(&self) -> std::sync::RwLockWriteGuard<'_, Known> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The revocation checks of invariant 2 for one token, from memory.
    pub fn check(&self, user_id: Uuid, session_id: Uuid, jti: &str) -> Check {
        if !self.trusted() {
            return Check::Unknown;
        }
        let epoch = self.user_epoch.load(Ordering::Acquire);
        let st = self.read();
        if st.jtis.contains(jti) || st.sessions.contains(session_id.as_bytes()) {
            return Check::Revoked;
        }
        if st.live.get(&session_id) != Some(&user_id) {
            return Check::Load(epoch);
        }
        match st.users.get(&user_id) {
            Some(u) => Check::User(u.clone()),
            None => Check::Load(epoch),
        }
    }

    /// Caches what the database said about a token that passed: its session is live and
    /// belongs to `user`, whose row this is. Nothing is kept if an invalidation happened
    /// since `epoch` (what was read may be stale).
    pub fn remember(&self, user: &User, session_id: Uuid, epoch: u64) {
        let mut row = user.clone();
        // Not needed to verify tokens; keep it out of long-lived memory.
        row.password_hash = String::new();
        let mut st = self.write();
        if self.user_epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if st.live.len() >= MAX_LIVE_SESSIONS {
            st.live.clear();
        }
        st.live.insert(session_id, user.id);
        if st.users.len() >= MAX_USERS {
            st.users.clear();
        }
        st.users.insert(user.id, Arc::new(row));
    }

    /// A session created or rotated by this process: it exists and is not revoked.
    pub fn session_live(&self, session_id: Uuid, user_id: Uuid) {
        if !self.enabled {
            return;
        }
        let mut st = self.write();
        if st.live.len() >= MAX_LIVE_SESSIONS {
            st.live.clear();
        }
        st.live.insert(session_id, user_id);
    }

    /// How long a denylisted `jti` is kept (ms), given its token's `exp` (ms): as long as a
    /// verifier may still accept the token. Times are compared in whole seconds
    /// (`now_secs <= exp + leeway`), so a token is accepted until the end of the second
    /// `exp + leeway`: the entry lives that second out.
    pub(super) fn jti_kept_until(&self, exp: i64) -> i64 {
        exp.saturating_add(self.leeway_ms)
            .saturating_add(crate::time::ACCEPTED_PAST_EXP_MS)
    }

    /// `expires_at` is the token's `exp` (ms).
    pub fn revoke_jti(&self, jti: &str, expires_at: i64) {
        self.write()
            .jtis
            .insert(jti, self.jti_kept_until(expires_at));
    }

    pub fn revoke_session(&self, id: Uuid) {
        self.revoke_sessions(&[id]);
    }

    pub fn revoke_sessions(&self, ids: &[Uuid]) {
        let now = crate::time::now_ms();
        let mut st = self.write();
        for id in ids {
            st.sessions.insert(*id.as_bytes(), now + self.horizon_ms);
            st.live.remove(id);
        }
    }

    /// Forgets a user's cached row (it changed).
    pub fn invalidate_user(&self, id: Uuid) {
        let mut st = self.write();
        self.user_epoch.fetch_add(1, Ordering::AcqRel);
        st.users.remove(&id);
    }

    /// Forgets every session known to be live and every cached user row: the database may
    /// have changed in ways no notification described (a row deleted or rewritten by hand).
    /// They are reread on demand; known revocations stay.
    pub fn forget_valid(&self) {
        let mut st = self.write();
        self.user_epoch.fetch_add(1, Ordering::AcqRel);
        st.users.clear();
        st.live.clear();
    }

    /// Applies one change notification; returns false for changes that are not about
    /// revocation (keys, listener state).
    pub fn apply_change(&self, change: &Change) -> bool {
        match change {
            Change::User(id) => self.invalidate_user(*id),
            Change::Session(id) => self.revoke_session(*id),
            Change::Token { jti, expires_at } => self.revoke_jti(jti, *expires_at),
            Change::Unreadable => self.distrust(),
            Change::Keys | Change::Lost | Change::Resync => return false,
        }
        true
    }
}
