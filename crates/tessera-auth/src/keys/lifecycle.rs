//! The key lifecycle: loading the ring, adding keys, and automatic rotation (invariant 3).

use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::Duration;

use super::{generate, KeyAlg, KeyError, KeyMaterial, KeyRing, MasterKey};
use crate::store::{Duplicate, KeyRow, Store, StoreError};
use crate::time::millis;

/// How often every replica re-reads the keys even without a change notification. A change is
/// therefore everywhere within this time.
pub const PROPAGATION_MS: i64 = 5_000;
/// Extra time a retired key stays published: a replica that has not reloaded yet may still sign
/// with it for up to `PROPAGATION_MS`.
pub const RELOAD_SLACK_MS: i64 = 2 * PROPAGATION_MS;

/// Timing of the key lifecycle, from the settings (`Schedule::from_settings`).
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// A new key is published this long before it signs (≥ the JWKS cache lifetime).
    pub publish_ahead_ms: i64,
    /// A retired key stays published this long: the access-token lifetime plus leeway plus
    /// the reload interval of other replicas.
    pub keep_after_retire_ms: i64,
    /// Automatic rotation period; 0 turns it off.
    pub rotate_every_ms: i64,
}

impl Schedule {
    /// `token_horizon` is how long a token stays acceptable after it is signed.
    pub fn new(publish_ahead: Duration, token_horizon: Duration, rotate_every: Duration) -> Self {
        Self {
            publish_ahead_ms: millis(publish_ahead),
            keep_after_retire_ms: millis(token_horizon) + RELOAD_SLACK_MS,
            rotate_every_ms: millis(rotate_every),
        }
    }

    /// The schedule `keys.*` and the token horizon give.
    pub fn from_settings(s: &crate::config::Settings) -> Self {
        Self::new(s.publish_ahead(), s.token_horizon(), s.keys.rotate_every)
    }
}

/// How a new key enters service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Published now, signs after `publish_ahead`.
    AfterPublishAhead,
    /// Signs at once (an imported key verifiers already trust).
    Now,
}

/// The live key ring, shared by every request.
pub struct Keys {
    /// Swapped whole at each reload; read by every request without a shared lock.
    ring: ArcSwap<KeyRing>,
    master: MasterKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

impl Keys {
    /// Loads the keys; on a database with none, generates, seals and stores the first one,
    /// active at once (no verifier can have cached an older JWKS yet).
    pub async fn load(
        store: &dyn Store,
        master: MasterKey,
        alg: KeyAlg,
        rsa_bits: u32,
        now: i64,
    ) -> Result<Self, KeyError> {
        let mut rows = store.keys().await?;
        if rows.is_empty() {
            let m = generate_blocking(alg, rsa_bits).await?;
            let row = sealed_row(&master, &m, now, now, None)?;
            store.insert_key(&row).await?;
            tracing::info!(kid = %m.kid, alg = alg.name(), "generated the first signing key");
            rows = store.keys().await?;
        }
        let ring = KeyRing::build(&rows, &master, now);
        Ok(Self {
            ring: ArcSwap::from_pointee(ring),
            master,
        })
    }

    /// Re-reads the keys from the store and swaps the ring.
    pub async fn reload(&self, store: &dyn Store, now: i64) -> Result<(), KeyError> {
        let rows = store.keys().await?;
        let ring = KeyRing::build(&rows, &self.master, now);
        self.ring.store(Arc::new(ring));
        Ok(())
    }

    /// The current snapshot.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring.load_full()
    }

    /// The current snapshot for a short, synchronous use (every access-token check and JWKS
    /// answer): no shared counter is touched. Not to be held across an `.await`.
    pub(crate) fn ring_now(&self) -> arc_swap::Guard<Arc<KeyRing>> {
        self.ring.load()
    }

    /// The master key (for deriving other secrets).
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// Adds `material` as the next key and schedules the current ones to retire when it starts
    /// signing. `succeeds` makes an automatic rotation unique per predecessor. Returns the new
    /// kid; `Ok(None)` when another replica already rotated `succeeds`.
    pub async fn add(
        &self,
        store: &dyn Store,
        material: &KeyMaterial,
        activation: Activation,
        schedule: Schedule,
        succeeds: Option<String>,
        now: i64,
    ) -> Result<Option<String>, KeyError> {
        // Invariant 3: every replica must have published the key for `publish_ahead` before
        // any signs with it, and replicas may learn of it up to `PROPAGATION_MS` late.
        let activate_at = match activation {
            Activation::Now => now,
            Activation::AfterPublishAhead => now + schedule.publish_ahead_ms + PROPAGATION_MS,
        };
        let row = sealed_row(&self.master, material, now, activate_at, succeeds)?;
        match store
            .rotate_keys(
                &row,
                activate_at,
                activate_at + schedule.keep_after_retire_ms,
            )
            .await
        {
            Ok(()) => {}
            // Another replica already rotated this predecessor.
            Err(StoreError::Duplicate(Duplicate::KeySuccessor)) => return Ok(None),
            Err(StoreError::Duplicate(_)) => {
                return Err(KeyError::Rejected(format!(
                    "a key with kid {} already exists",
                    material.kid
                )))
            }
            Err(e) => return Err(e.into()),
        }
        if let Err(e) = store.notify_change(&crate::store::Change::Keys).await {
            tracing::warn!(error = %e, "key change not broadcast; replicas will poll");
        }
        self.reload(store, now).await?;
        tracing::info!(kid = %material.kid, alg = material.alg.name(), activate_at, "signing key added");
        Ok(Some(material.kid.clone()))
    }

    /// Rotates when the newest key is due (automatic rotation). Safe to call from every
    /// replica: exactly one wins per predecessor.
    pub async fn rotate_if_due(
        &self,
        store: &dyn Store,
        alg: KeyAlg,
        rsa_bits: u32,
        schedule: Schedule,
        now: i64,
    ) -> Result<Option<String>, KeyError> {
        if schedule.rotate_every_ms <= 0 {
            return Ok(None);
        }
        let rows = store.keys().await?;
        let Some(newest) = rows.iter().max_by_key(|r| (r.activate_at, r.created_at)) else {
            return Ok(None);
        };
        // Create the successor early enough that it has been published for `publish_ahead`
        // when the newest key has served `rotate_every`.
        let due = newest.activate_at + schedule.rotate_every_ms
            - schedule.publish_ahead_ms
            - PROPAGATION_MS;
        if now < due || newest.retire_at.is_some() {
            return Ok(None);
        }
        let material = generate_blocking(alg, rsa_bits).await?;
        let activation = Activation::AfterPublishAhead;
        self.add(
            store,
            &material,
            activation,
            schedule,
            Some(newest.kid.clone()),
            now,
        )
        .await
    }
}

async fn generate_blocking(alg: KeyAlg, rsa_bits: u32) -> Result<KeyMaterial, KeyError> {
    tokio::task::spawn_blocking(move || generate(alg, rsa_bits))
        .await
        .map_err(|e| KeyError::Rejected(e.to_string()))?
}

/// The stored row for `m`: sealed under `master`, created and published at `now`, signing from
/// `activate_at`, with no retirement scheduled.
pub fn sealed_row(
    master: &MasterKey,
    m: &KeyMaterial,
    now: i64,
    activate_at: i64,
    succeeds: Option<String>,
) -> Result<KeyRow, KeyError> {
    Ok(KeyRow {
        kid: m.kid.clone(),
        alg: m.alg.name().to_string(),
        private_key_enc: master.seal(&m.kid, &m.pkcs8)?,
        public_jwk: m.jwk.to_string(),
        created_at: now,
        publish_at: now,
        activate_at,
        retire_at: None,
        remove_at: None,
        succeeds,
    })
}

/// Where a key is in its lifecycle at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not signing yet.
    Pending,
    /// Signing (the newest active key signs).
    Active,
    /// No longer signing, still published so its tokens verify.
    Retired,
    /// Gone from the JWKS.
    Removed,
}

impl KeyState {
    /// The state of `row` at `now` (ms).
    pub fn of(row: &KeyRow, now: i64) -> Self {
        if row.remove_at.is_some_and(|t| t <= now) {
            Self::Removed
        } else if row.retire_at.is_some_and(|t| t <= now) {
            Self::Retired
        } else if row.activate_at <= now {
            Self::Active
        } else {
            Self::Pending
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Retired => "retired",
            Self::Removed => "removed",
        }
    }
}

/// A signing key as operators see it (`tessera keys list`): no key material.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: String,
    pub state: KeyState,
    /// Milliseconds since the epoch.
    pub publish_at: i64,
    pub activate_at: i64,
    pub retire_at: Option<i64>,
    pub remove_at: Option<i64>,
}

impl KeyInfo {
    /// The operator's view of `row` at `now` (ms).
    pub fn of(row: &KeyRow, now: i64) -> Self {
        Self {
            kid: row.kid.clone(),
            alg: row.alg.clone(),
            state: KeyState::of(row, now),
            publish_at: row.publish_at,
            activate_at: row.activate_at,
            retire_at: row.retire_at,
            remove_at: row.remove_at,
        }
    }
}
