//! The revocation state each replica keeps in memory, so that verifying an access token
//! (`/userinfo`, `/introspect`, the admin API) needs no database round trip while still
//! keeping invariant 2.
//!
//! It holds:
//! - denylisted `jti`s, until the token's own `exp`;
//! - revoked sessions, for `access_ttl + leeway` after the revocation (no token issued before
//!   can live longer, and none is issued after);
//! - a bounded cache of user rows: `disabled`, `tokens_not_before`, and what `/userinfo` shows.
//!
//! How it stays right:
//! - A write made through this process is applied here before its request answers.
//! - On Postgres, triggers NOTIFY every relevant write, whoever makes it (another replica, the
//!   CLI, an operator's SQL); the listener applies them within milliseconds.
//! - On SQLite, a watcher reads `PRAGMA data_version` every 100 ms. It changes only when
//!   another connection (the CLI, an operator's `sqlite3`) committed; then, as after a lost
//!   Postgres listener, everything known to be *valid* (live sessions, user rows) is
//!   forgotten and reread from the database on demand. What is known to be revoked is kept:
//!   it can only make a check stricter.
//! - A poll of the revocation feed and of `users.updated_at` runs every `max_lag / 2`. It is
//!   the safety net and the liveness check of the database.
//! - The state is trusted only while the listener (or watcher) runs and the last poll
//!   succeeded less than `max_lag` ago. Otherwise every check reads the database, as it would
//!   without this cache, and fails closed (503) when the database cannot answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use uuid::Uuid;

use dense::{DenseSet, Entry};

use crate::store::{Change, RevocationFeed, RowStream, Store, StoreError, User};

/// Cached user rows beyond this are dropped wholesale (they reload on demand).
const MAX_USERS: usize = 100_000;
/// Likewise for sessions known to exist and not be revoked.
const MAX_LIVE_SESSIONS: usize = 500_000;
/// Rows are written with the writer's clock and become visible at commit: a poll re-reads this
/// much before its cursor, so a slow commit or a skewed replica clock is not missed.
const OVERLAP_MS: i64 = 10_000;
/// The first load reads at least this many rows per `max_lag`, or fails.
const LOAD_CHUNK: usize = 100_000;
/// How often lapsed entries are dropped (ms).
const PRUNE_EVERY_MS: i64 = 15_000;

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
struct Jtis {
    uuids: DenseSet,
    text: HashMap<Box<str>, i64>,
}

impl Jtis {
    fn canonical_uuid(jti: &str) -> Option<[u8; 16]> {
        let id = Uuid::try_parse(jti).ok()?;
        let mut buf = Uuid::encode_buffer();
        (id.hyphenated().encode_lower(&mut buf) == jti).then(|| *id.as_bytes())
    }

    fn insert(&mut self, jti: &str, exp: i64) {
        match Self::canonical_uuid(jti) {
            Some(id) => self.uuids.insert(id, exp),
            None => {
                let held = self.text.entry(jti.into()).or_insert(exp);
                *held = (*held).max(exp);
            }
        }
    }

    fn contains(&self, jti: &str) -> bool {
        match Self::canonical_uuid(jti) {
            Some(id) => self.uuids.contains(&id),
            None => self.text.contains_key(jti),
        }
    }

    fn len(&self) -> usize {
        self.uuids.len() + self.text.len()
    }

    /// Drops the entries whose token has expired at `now`.
    fn retain_live(&mut self, now: i64) {
        self.uuids.retain_after(now);
        self.text.retain(|_, exp| *exp > now);
    }
}

#[derive(Default)]
struct State {
    /// Denylisted jti -> token expiry (ms).
    jtis: Jtis,
    /// Revoked session ids, each kept for the token horizon after this process learnt of the
    /// revocation (the row's own time may be anything an operator wrote).
    sessions: DenseSet,
    users: HashMap<Uuid, Arc<User>>,
    /// session id -> its user, for sessions read from the database (or created here) unrevoked.
    /// A later revocation lands in `sessions`, which is checked first.
    live: HashMap<Uuid, Uuid>,
    /// The `now` of the last successful sync; the next one reads from here (minus the overlap).
    cursor: Option<i64>,
    /// When lapsed entries are next dropped (ms): a pass over millions of entries under the
    /// write lock is not worth making every sync, and a lapsed entry only costs memory.
    next_prune: i64,
}

/// What `RevocationCache::stats` reports.
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
pub struct RevocationCache {
    enabled: bool,
    max_lag: Duration,
    horizon_ms: i64,
    /// The verifiers' leeway past `exp` (ms): a denylisted `jti` is kept that much longer.
    leeway_ms: i64,
    base: Instant,
    /// Nanoseconds after `base` at which the last successful sync started; 0: none, or
    /// distrusted since.
    synced_at: AtomicU64,
    listening: AtomicBool,
    /// Bumped by every user invalidation: a row read before a bump is not cached.
    user_epoch: AtomicU64,
    state: RwLock<State>,
}

impl std::fmt::Debug for RevocationCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationCache")
            .field("enabled", &self.enabled)
            .field("trusted", &self.trusted())
            .finish_non_exhaustive()
    }
}

impl RevocationCache {
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
            state: RwLock::new(State::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// How often the upkeep task should sync.
    pub fn poll_every(&self) -> Duration {
        (self.max_lag / 2).max(Duration::from_millis(50))
    }

    fn mono_ns(&self) -> u64 {
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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
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

    /// How long a denylisted `jti` is kept (ms), given its token's `exp`: `leeway` longer, as
    /// long as a verifier may still accept the token.
    fn jti_kept_until(&self, exp: i64) -> i64 {
        exp.saturating_add(self.leeway_ms)
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

    /// Reads what changed since the last sync and applies it; marks the state fresh.
    pub async fn sync(&self, store: &dyn Store, now: i64) -> Result<(), StoreError> {
        if !self.enabled {
            return Ok(());
        }
        let started = self.mono_ns();
        // Read apart from the `let else`: the read guard must be gone before a load writes.
        let cursor = self.read().cursor;
        let Some(cursor) = cursor else {
            return self.load(store, now).await;
        };
        let since = cursor - OVERLAP_MS;
        let read = async {
            // Tokens are accepted until `exp + leeway`: so long their denylisting matters.
            let feed = store
                .revocations_since(since, now - self.leeway_ms, self.horizon_ms)
                .await?;
            let changed = store.users_changed_since(since).await?;
            Ok::<_, StoreError>((feed, changed))
        };
        let (feed, changed) = match tokio::time::timeout(self.max_lag, read).await {
            Ok(r) => r?,
            Err(_) => return Err(StoreError::Unavailable("revocation sync timed out".into())),
        };
        {
            let mut st = self.write();
            self.apply(&mut st, feed, changed, now);
            if now >= st.next_prune {
                st.jtis.retain_live(now);
                st.sessions.retain_after(now);
                st.next_prune = now + PRUNE_EVERY_MS;
            }
            st.cursor = Some(now);
        }
        self.synced_at.store(started, Ordering::Release);
        Ok(())
    }

    /// Applies revocations read from the store, and forgets cached user rows that a cut-off
    /// or a change (`changed`: id, `updated_at`) made stale.
    fn apply(&self, st: &mut State, feed: RevocationFeed, changed: Vec<(Uuid, i64)>, now: i64) {
        for (jti, exp, _) in feed.tokens {
            st.jtis.insert(&jti, self.jti_kept_until(exp));
        }
        for (id, _) in feed.sessions {
            st.sessions.insert(*id.as_bytes(), now + self.horizon_ms);
            st.live.remove(&id);
        }
        let mut evicted = false;
        for (id, not_before) in feed.users {
            if st
                .users
                .get(&id)
                .is_some_and(|u| u.tokens_not_before < not_before)
            {
                st.users.remove(&id);
                evicted = true;
            }
        }
        for (id, updated_at) in changed {
            if st.users.get(&id).is_some_and(|u| u.updated_at < updated_at) {
                st.users.remove(&id);
                evicted = true;
            }
        }
        if evicted {
            self.user_epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The first sync: reads every denylisted token and every session revoked inside the
    /// horizon, each as one streamed statement whose rows are taken as they arrive. Each
    /// `LOAD_CHUNK` rows must arrive within `max_lag`, so that a state of any size loads while a
    /// stalled read still fails. Entries are gathered apart from the live state (checks keep
    /// reading the database meanwhile), sorted once, then merged with what notifications
    /// brought during the load. The state is trusted once both reads are complete, as fresh as
    /// the moment the first began; the next sync reads from `now` (minus the overlap) on. A
    /// failure part-way starts over at the next sync.
    async fn load(&self, store: &dyn Store, now: i64) -> Result<(), StoreError> {
        let started = Instant::now();
        let reads_started = self.mono_ns();
        let mut jti_ids = Vec::new();
        let mut jti_text = Vec::new();
        // One read after the other: SQLite (or a pool of one) has a single connection.
        self.drain(
            store.denylist_all(now - self.leeway_ms),
            |(jti, exp)| match Jtis::canonical_uuid(&jti) {
                Some(id) => jti_ids.push(Entry::new(id, self.jti_kept_until(exp))),
                None => jti_text.push((jti, self.jti_kept_until(exp))),
            },
        )
        .await?;
        let until = now + self.horizon_ms;
        let mut sessions = Vec::new();
        self.drain(store.revoked_sessions_all(now - self.horizon_ms), |id| {
            sessions.push(Entry::new(id.into_bytes(), until))
        })
        .await?;
        let read = started.elapsed();
        let jti_ids = DenseSet::from_entries(jti_ids);
        let sessions = DenseSet::from_entries(sessions);
        {
            let mut st = self.write();
            st.jtis.uuids.absorb(jti_ids);
            for (jti, exp) in jti_text {
                st.jtis.insert(&jti, exp);
            }
            st.sessions.absorb(sessions);
            st.cursor = Some(now);
            st.next_prune = now + PRUNE_EVERY_MS;
            tracing::info!(
                jtis = st.jtis.len(),
                sessions = st.sessions.len(),
                read_ms = read.as_millis() as u64,
                total_ms = started.elapsed().as_millis() as u64,
                "revocation state loaded"
            );
        }
        self.synced_at.store(reads_started, Ordering::Release);
        Ok(())
    }

    /// Feeds every row of `rows` to `each`; fails when `LOAD_CHUNK` rows take longer than
    /// `max_lag`.
    async fn drain<T>(
        &self,
        mut rows: RowStream<'_, T>,
        mut each: impl FnMut(T),
    ) -> Result<(), StoreError> {
        loop {
            // One timer per chunk: a timer per row would cost more than decoding it.
            let chunk = async {
                for _ in 0..LOAD_CHUNK {
                    match rows.next().await {
                        Some(row) => each(row?),
                        None => return Ok(true),
                    }
                }
                Ok::<_, StoreError>(false)
            };
            match tokio::time::timeout(self.max_lag, chunk).await {
                Ok(Ok(true)) => return Ok(()),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(StoreError::Unavailable("revocation load timed out".into())),
            }
        }
    }
}

mod dense;
#[cfg(test)]
mod tests;
