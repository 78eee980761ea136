//! Signing keys: the master key that seals them at rest, the key material, the ring of
//! published keys with its pre-rendered JWKS, and their lifecycle.
//!
//! - Private keys are PKCS#8 DER, sealed with AES-256-GCM under the master key (`master`). They
//!   are opened once, at load time, and kept in memory.
//! - A key is published from `publish_at`, signs from `activate_at` until `retire_at`, and leaves
//!   the JWKS at `remove_at` (invariant 3; `lifecycle`).
//! - The JWKS body and its ETag are rendered once per ring, not per request (`ring`).
//! - `kid` is the RFC 7638 thumbprint of the public key (`material`).
//! - `operations` holds the use cases: the JWKS, manual rotation, import, rekey.

mod lifecycle;
mod master;
mod material;
mod operations;
mod ring;

pub use lifecycle::{
    sealed_row, Activation, KeyInfo, KeyState, Keys, Schedule, PROPAGATION_MS, RELOAD_SLACK_MS,
};
pub use master::MasterKey;
pub use material::{from_pkcs8, generate, import_pem, thumbprint, KeyAlg, KeyMaterial};
pub use operations::{Jwks, Rekeyed};
pub use ring::{KeyRing, SigningKey, VerifyingKey};

use crate::store::StoreError;

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("invalid master key: {0}")]
    MasterKey(&'static str),
    #[error("key material rejected: {0}")]
    Rejected(String),
    #[error("cannot open sealed key {0}: wrong master key or corrupted row")]
    Unseal(String),
    #[error("{0}")]
    Config(&'static str),
    #[error("cannot write {path}: {cause}")]
    File { path: String, cause: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}
