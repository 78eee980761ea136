//! The public face of the signing keys: the JWKS for verifiers, and the operator's manual
//! rotation and key import (invariant 3 holds for both).

use bytes::Bytes;

use super::keys::{self, Activation, KeyMaterial};
use super::{Auth, AuthError};
use crate::time::now_ms;

/// The published key set (RFC 7517 §5), pre-rendered: the body and its strong entity tag.
#[derive(Debug, Clone)]
pub struct Jwks {
    /// `{"keys":[…]}`, public members only.
    pub body: Bytes,
    /// A strong ETag (RFC 9110 §8.8.3), quotes included.
    pub etag: String,
}

impl Auth {
    /// The JWKS as it stands now.
    pub fn jwks(&self) -> Jwks {
        let ring = self.keys.ring();
        Jwks {
            body: ring.jwks.clone(),
            etag: ring.etag.clone(),
        }
    }

    /// Publishes a new key of `keys.algorithm` now; it signs after `keys.publish_ahead` (plus
    /// the propagation slack), and the current key retires then. Returns the new kid.
    ///
    /// Errors: `StoreUnavailable`, `Internal` (key generation or the store failed).
    pub async fn rotate_key(&self) -> Result<String, AuthError> {
        let k = &self.settings.keys;
        let (alg, bits) = (k.algorithm, k.rsa_bits);
        let m = tokio::task::spawn_blocking(move || keys::generate(alg, bits))
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        self.add_key(&m, Activation::AfterPublishAhead, "manual")
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
    ) -> Result<String, AuthError> {
        let schedule = self.settings.key_schedule();
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
                keys::KeyError::Rejected(why) => AuthError::BadInput(why),
                keys::KeyError::Store(s) => s.into(),
                other => AuthError::Internal(other.to_string()),
            })?;
        self.audit(
            super::audit::Event::KeyRotated,
            super::audit::Record::default().reason(why),
        )
        .await;
        Ok(added.unwrap_or_else(|| material.kid.clone()))
    }
}
