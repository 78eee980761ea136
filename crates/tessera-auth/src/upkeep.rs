//! Background upkeep: keep the key ring and the revocation state current (on change
//! notifications, and by polling), rotate keys when due, and purge expired denylist rows and
//! dead sessions. Every replica runs it; each step is safe to run concurrently.

use std::time::Duration;

use super::keys::PROPAGATION_MS;
use super::Auth;
use crate::store::Change;
use crate::time::now_ms;

/// How often the key ring is re-read when no change notification arrives (SQLite, or a lost
/// Postgres listener).
const RELOAD_EVERY: Duration = Duration::from_millis(PROPAGATION_MS as u64);
/// How often automatic rotation and the purge of expired rows are considered.
const MAINTAIN_EVERY: Duration = Duration::from_secs(60);
/// Every this many maintenance rounds, the purge also sweeps idle-expired sessions (a table
/// scan; see `store::upkeep`): hourly.
const SWEEP_IDLE_EVERY: u32 = 60;

impl Auth {
    /// Runs until the task is aborted (at shutdown): the state-keeping loop and the
    /// maintenance loop side by side, so that a long purge never holds up a revocation sync.
    pub async fn upkeep(&self) {
        tokio::join!(self.keep_current(), self.maintain());
    }

    /// Rotation when due and the purges, every `MAINTAIN_EVERY`.
    async fn maintain(&self) {
        match self.backfill_username_skeletons().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(users = n, "username skeletons filled in"),
            Err(e) => tracing::warn!(error = %e, "username skeletons not filled in"),
        }
        let mut maintain = tokio::time::interval(MAINTAIN_EVERY);
        maintain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut round: u32 = 0;
        loop {
            maintain.tick().await;
            self.maintain_once(round.is_multiple_of(SWEEP_IDLE_EVERY))
                .await;
            round = round.wrapping_add(1);
        }
    }

    /// Keeps the key ring and the revocation state current: notifications and polling.
    async fn keep_current(&self) {
        let mut changes = match self.store.listen_changes().await {
            Ok(rx) => rx,
            Err(e) => {
                tracing::warn!(error = %e, "change notifications unavailable; polling only");
                None
            }
        };
        let cache = &self.revocations;
        if changes.is_some() {
            cache.set_listening(true);
        }
        self.sync_revocations().await;
        let mut reload = tokio::time::interval(RELOAD_EVERY);
        reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(cache.poll_every());
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let notified = async {
                match changes.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = reload.tick() => {
                    // Started while the database was down: keep trying to listen.
                    if changes.is_none() {
                        if let Ok(Some(rx)) = self.store.listen_changes().await {
                            changes = Some(rx);
                            self.listening_again().await;
                        }
                    }
                    self.reload_keys().await
                }
                _ = poll.tick(), if cache.enabled() => self.sync_revocations().await,
                msg = notified => match msg {
                    None => {
                        changes = None;
                        cache.set_listening(false);
                    }
                    Some(Change::Lost) => cache.set_listening(false),
                    Some(Change::Resync) => {
                        self.listening_again().await;
                        self.reload_keys().await;
                    }
                    Some(change) => {
                        if !cache.apply_change(&change) {
                            self.reload_keys().await;
                        }
                    }
                },
            }
        }
    }

    /// The change listener is (back) up, or saw a change it cannot describe: anything may have
    /// changed, so the revocation state forgets what it knew to be valid and resyncs before it
    /// is trusted again.
    async fn listening_again(&self) {
        self.revocations.forget_valid();
        self.revocations.set_listening(true);
        self.sync_revocations().await;
    }

    async fn sync_revocations(&self) {
        if let Err(e) = self.revocations.sync(self.store.as_ref(), now_ms()).await {
            self.revocations.distrust();
            tracing::warn!(error = %e, "revocation state not synced; checks read the database");
        }
    }

    async fn reload_keys(&self) {
        if let Err(e) = self.keys.reload(self.store.as_ref(), now_ms()).await {
            tracing::warn!(error = %e, "key reload failed");
        }
        // Tokens of a key that left the set go with it (a hit checks the key too).
        let leeway = self.settings.tokens.leeway.as_secs();
        self.verified
            .retain_live(&self.keys.ring(), leeway, crate::time::now_ms() / 1000);
        metrics::gauge!("verified_token_cache_entries").set(self.verified.len() as f64);
    }

    async fn maintain_once(&self, sweep_idle: bool) {
        let now = now_ms();
        let k = &self.settings.keys;
        let schedule = super::keys::Schedule::from_settings(&self.settings);
        match self
            .keys
            .rotate_if_due(self.store.as_ref(), k.algorithm, k.rsa_bits, schedule, now)
            .await
        {
            Ok(Some(kid)) => {
                tracing::info!(%kid, "automatic key rotation: new key published");
                self.audit(
                    &super::Caller::default(),
                    super::audit::Event::KeyRotated,
                    super::audit::Record::default().reason("automatic"),
                )
                .await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "automatic key rotation failed"),
        }
        let retention = crate::time::millis(self.settings.audit.retention);
        let purged = |table: &'static str, n: u64| {
            metrics::counter!("upkeep_purged_rows_total", "table" => table).increment(n);
        };
        match self.store.purge_audit(now - retention).await {
            Ok(n) => purged("audit_events", n),
            Err(e) => tracing::warn!(error = %e, "audit purge failed"),
        }
        let started = std::time::Instant::now();
        // A token is accepted until the end of the second `exp + leeway`: its denylist row
        // must live that long.
        let leeway =
            crate::time::millis(self.settings.tokens.leeway) + crate::time::ACCEPTED_PAST_EXP_MS;
        match self.store.purge_expired(now - leeway, sweep_idle).await {
            Ok(p) => {
                purged("revoked_tokens", p.revoked_tokens);
                purged("sessions", p.sessions);
                purged("login_throttle", p.login_throttle);
                metrics::histogram!("upkeep_purge_seconds").record(started.elapsed().as_secs_f64());
            }
            Err(e) => tracing::warn!(error = %e, "purge failed"),
        }
    }
}
