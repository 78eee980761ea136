//! The key use cases of `Auth`: the JWKS for verifiers, and the operator's manual rotation,
//! key import and re-sealing under a new master key (invariant 3 holds for each).

use bytes::Bytes;

use crate::audit::Caller;
use crate::keys::{self, Activation, KeyMaterial};
use crate::time::now_ms;
use crate::{Auth, AuthError};

/// The published key set (RFC 7517 §5), pre-rendered: the body and its strong entity tag.
#[derive(Debug, Clone)]
pub struct Jwks {
    /// `{"keys":[…]}`, public members only.
    pub body: Bytes,
    /// A strong ETag (RFC 9110 §8.8.3), quotes included; visible ASCII.
    pub etag: Bytes,
}

impl Auth {
    /// The JWKS as it stands now.
    pub fn jwks(&self) -> Jwks {
        let ring = self.keys.ring_now();
        Jwks {
            body: ring.jwks.clone(),
            etag: ring.etag.clone(),
        }
    }

    /// Publishes a new key of `keys.algorithm` now; it signs after `keys.publish_ahead` (plus
    /// the propagation slack), and the current key retires then. Returns the new kid.
    ///
    /// Errors: `StoreUnavailable`, `Internal` (key generation or the store failed).
    pub async fn rotate_key(&self, caller: &Caller) -> Result<String, AuthError> {
        let k = &self.settings.keys;
        let (alg, bits) = (k.algorithm, k.rsa_bits);
        let m = tokio::task::spawn_blocking(move || keys::generate(alg, bits))
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        self.add_key(&m, Activation::AfterPublishAhead, "manual", caller)
            .await
    }

    /// Adds a key (an imported one, or one made by `rotate_key`). `Activation::Now` signs at
    /// once and is only safe when verifiers already trust the key. `why` is the audit event's
    /// reason code (`manual`, `imported`). Returns its kid.
    ///
    /// Errors: `BadInput` (a key with this kid exists), `StoreUnavailable`, `Internal`.
    pub async fn add_key(
        &self,
        material: &KeyMaterial,
        activation: Activation,
        why: &'static str,
        caller: &Caller,
    ) -> Result<String, AuthError> {
        let schedule = keys::Schedule::from_settings(&self.settings);
        let added = self
            .keys
            .add(
                self.store.as_ref(),
                material,
                activation,
                schedule,
                None,
                now_ms(),
            )
            .await
            .map_err(|e| match e {
                keys::KeyError::Rejected(why) => AuthError::BadInput(why.into()),
                keys::KeyError::Store(s) => s.into(),
                other => AuthError::Internal(other.to_string()),
            })?;
        self.audit(
            caller,
            crate::audit::Event::KeyRotated,
            crate::audit::Record::default().reason(why),
        )
        .await;
        Ok(added.unwrap_or_else(|| material.kid.clone()))
    }

    /// `tessera keys rekey`: re-seals every signing key that a previous master key sealed
    /// under the current one (in one transaction), then every TOTP secret (in another). Keys
    /// past their removal that no known master key opens are left as they are (they never sign
    /// or verify again). Running it again finishes what a failure left: what is sealed under
    /// the current key already is left alone.
    ///
    /// Errors: `BadInput` naming keys, or counting TOTP secrets, that no known master key
    /// opens (nothing is changed), `StoreUnavailable`, `Internal`.
    pub async fn rekey(&self, caller: &Caller) -> Result<Rekeyed, AuthError> {
        let master = self.keys.master();
        let now = now_ms();
        let mut done = Rekeyed::default();
        let mut reseal = Vec::new();
        let mut unopenable = Vec::new();
        for row in self.store.keys().await? {
            match master.open_sealed(&row.kid, &row.private_key_enc) {
                Ok((_, false)) => done.current.push(row.kid),
                Ok((plain, true)) => {
                    let new = master
                        .seal(&row.kid, &plain)
                        .map_err(|e| AuthError::Internal(e.to_string()))?;
                    done.resealed.push(row.kid.clone());
                    reseal.push(crate::store::Reseal {
                        kid: row.kid,
                        old: row.private_key_enc,
                        new,
                    });
                }
                Err(_) if row.remove_at.is_some_and(|t| t <= now) => done.skipped.push(row.kid),
                Err(_) => unopenable.push(row.kid),
            }
        }
        if !unopenable.is_empty() {
            return Err(AuthError::BadInput(
                format!(
                    "no configured master key (keys.master_key, keys.previous_master_keys) opens \
                 signing keys {}; nothing was re-sealed",
                    unopenable.join(", ")
                )
                .into(),
            ));
        }
        // Second factors' secrets too; one that no key opens stops the whole command first.
        done.totp_resealed = self.rekey_factors().await?;
        self.store.reseal_keys(&reseal).await?;
        if !reseal.is_empty() || done.totp_resealed > 0 {
            self.audit(
                caller,
                crate::audit::Event::KeyRotated,
                crate::audit::Record::default().reason("rekeyed"),
            )
            .await;
        }
        Ok(done)
    }
}

/// What `Auth::rekey` did, by kid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rekeyed {
    /// Sealed under a previous master key, now under the current one.
    pub resealed: Vec<String>,
    /// Already sealed under the current master key.
    pub current: Vec<String>,
    /// Removed keys that no known master key opens, left alone.
    pub skipped: Vec<String>,
    /// TOTP secrets re-sealed under the current master key.
    pub totp_resealed: usize,
}
