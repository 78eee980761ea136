//! Keeping the revocation state current from the store: the first load (streamed), then the
//! changes since the last sync (the revocation feed and `users.updated_at`), every
//! `max_lag / 2` and after a lost listener.

use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::StreamExt;
use uuid::Uuid;

use super::dense::{DenseSet, Entry};
use super::state::{Jtis, Known, RevocationState, LOAD_CHUNK, OVERLAP_MS, PRUNE_EVERY_MS};
use crate::store::{RevocationFeed, RowStream, Store, StoreError};

impl RevocationState {
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
                .revocations_since(
                    since,
                    now - self.leeway_ms - crate::time::ACCEPTED_PAST_EXP_MS,
                    self.horizon_ms,
                )
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
    fn apply(&self, st: &mut Known, feed: RevocationFeed, changed: Vec<(Uuid, i64)>, now: i64) {
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
            store.denylist_all(now - self.leeway_ms - crate::time::ACCEPTED_PAST_EXP_MS),
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
