//! The signing key ring and the JWKS.
//!
//! - Private keys are PKCS#8 DER, sealed with AES-256-GCM under the master key (the kid is the
//!   associated data, so a sealed key cannot be moved to another row). They are opened once, at
//!   load time, and kept in memory.
//! - A key is published from `publish_at`, signs from `activate_at` until `retire_at`, and leaves
//!   the JWKS at `remove_at` (invariant 3).
//! - The JWKS body and its ETag are rendered once per ring, not per request.
//! - `kid` is the RFC 7638 thumbprint of the public key.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::store::{KeyRow, Store, StoreError};
use crate::time::millis;

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("invalid master key: {0}")]
    MasterKey(&'static str),
    #[error("key material rejected: {0}")]
    Rejected(String),
    #[error("cannot open sealed key {0}: wrong master key or corrupted row")]
    Unseal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The 32-byte master key. Its `Debug` never prints the bytes.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

impl MasterKey {
    /// Parses 32 bytes given in standard base64.
    pub fn from_base64(s: &SecretString) -> Result<Self, KeyError> {
        let raw = Zeroizing::new(
            STANDARD
                .decode(s.expose_secret().trim())
                .map_err(|_| KeyError::MasterKey("not standard base64"))?,
        );
        let bytes: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::MasterKey("must decode to exactly 32 bytes"))?;
        Ok(Self(Zeroizing::new(bytes)))
    }

    /// 32 fresh random bytes, base64-encoded (for the SQLite development default).
    pub fn generate_base64() -> Result<SecretString, KeyError> {
        let mut k = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(&mut k[..]).map_err(|_| KeyError::MasterKey("no randomness"))?;
        Ok(SecretString::from(STANDARD.encode(&k[..])))
    }

    fn aead(&self) -> Result<RandomizedNonceKey, KeyError> {
        RandomizedNonceKey::new(&AES_256_GCM, &self.0[..]).map_err(|_| KeyError::MasterKey("aes"))
    }

    /// Seals `plaintext` as nonce ‖ ciphertext ‖ tag, bound to `kid`.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut buf = plaintext.to_vec();
        let nonce = self
            .aead()?
            .seal_in_place_append_tag(Aad::from(aad(kid).as_bytes()), &mut buf)
            .map_err(|_| KeyError::Rejected("seal failed".into()))?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&buf);
        buf.iter_mut().for_each(|b| *b = 0);
        Ok(out)
    }

    /// Opens what `seal` produced for the same `kid`.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(KeyError::Unseal(kid.to_string()));
        }
        let (n, ct) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = n
            .try_into()
            .map_err(|_| KeyError::Unseal(kid.to_string()))?;
        let mut buf = Zeroizing::new(ct.to_vec());
        let len = self
            .aead()?
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(kid).as_bytes()),
                &mut buf,
            )
            .map_err(|_| KeyError::Unseal(kid.to_string()))?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    /// A purpose-bound HMAC key derived from the master key (HKDF-SHA256).
    pub fn derive_hmac(&self, purpose: &str) -> aws_lc_rs::hmac::Key {
        let prk = aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, b"tessera")
            .extract(&self.0[..]);
        let info = [purpose.as_bytes()];
        match prk.expand(&info, aws_lc_rs::hmac::HMAC_SHA256) {
            Ok(okm) => okm.into(),
            // expand only fails for outputs longer than 255 hash lengths; 32 bytes cannot.
            Err(_) => aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.0[..]),
        }
    }
}

fn aad(kid: &str) -> String {
    format!("tessera-signing-key:{kid}")
}

/// The algorithms Tessera signs with. HMAC and `none` do not exist here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    Es256,
    EdDsa,
    Rs256,
}

impl KeyAlg {
    /// Every algorithm, in the order discovery lists them.
    pub const ALL: [KeyAlg; 3] = [KeyAlg::Es256, KeyAlg::EdDsa, KeyAlg::Rs256];

    /// The JOSE name (`ES256`, `EdDSA`, `RS256`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
        }
    }
    pub fn jwt(self) -> Algorithm {
        match self {
            Self::Es256 => Algorithm::ES256,
            Self::EdDsa => Algorithm::EdDSA,
            Self::Rs256 => Algorithm::RS256,
        }
    }
}

impl std::fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for KeyAlg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for KeyAlg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "keys.algorithm must be ES256, EdDSA or RS256, not {s:?}"
            ))
        })
    }
}

/// A private key that can sign, and its public half.
pub struct KeyMaterial {
    pub kid: String,
    pub alg: KeyAlg,
    pub pkcs8: Zeroizing<Vec<u8>>,
    /// The public JWK as published (with kid, use, alg).
    pub jwk: Value,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Generates a new private key.
pub fn generate(alg: KeyAlg, rsa_bits: u32) -> Result<KeyMaterial, KeyError> {
    let rng = SystemRandom::new();
    let err = |_| KeyError::Rejected("key generation failed".into());
    let pkcs8 = match alg {
        KeyAlg::Es256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(err)?
            .as_ref()
            .to_vec(),
        KeyAlg::EdDsa => Ed25519KeyPair::generate_pkcs8v1(&rng)
            .map_err(err)?
            .as_ref()
            .to_vec(),
        KeyAlg::Rs256 => {
            let size = match rsa_bits {
                3072 => aws_lc_rs::rsa::KeySize::Rsa3072,
                _ => aws_lc_rs::rsa::KeySize::Rsa2048,
            };
            let kp = aws_lc_rs::rsa::KeyPair::generate(size).map_err(err)?;
            AsDer::<Pkcs8V1Der>::as_der(&kp)
                .map_err(err)?
                .as_ref()
                .to_vec()
        }
    };
    from_pkcs8(alg, Zeroizing::new(pkcs8), None)
}

/// Loads a PKCS#8 private key of the given algorithm. The kid defaults to the thumbprint.
pub fn from_pkcs8(
    alg: KeyAlg,
    pkcs8: Zeroizing<Vec<u8>>,
    kid: Option<String>,
) -> Result<KeyMaterial, KeyError> {
    let rej = |what: &str| KeyError::Rejected(what.to_string());
    let mut jwk = match alg {
        KeyAlg::Es256 => {
            let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                .map_err(|_| rej("not a PKCS#8 P-256 key"))?;
            let pt = kp.public_key().as_ref();
            if pt.len() != 65 {
                return Err(rej("unexpected P-256 point"));
            }
            let jwk = json!({
                "kty": "EC", "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&pt[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&pt[33..65]),
            });
            jwk
        }
        KeyAlg::EdDsa => {
            let kp =
                Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| rej("not a PKCS#8 Ed25519 key"))?;
            let jwk = json!({
                "kty": "OKP", "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(kp.public_key().as_ref()),
            });
            jwk
        }
        KeyAlg::Rs256 => {
            let kp = aws_lc_rs::rsa::KeyPair::from_pkcs8(&pkcs8)
                .map_err(|_| rej("not a PKCS#8 RSA key"))?;
            let bits = kp.public_modulus_len() * 8;
            if bits < 2048 {
                return Err(rej("RSA keys must have at least 2048 bits"));
            }
            let pc = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(kp.public_key());
            let jwk = json!({
                "kty": "RSA",
                "n": URL_SAFE_NO_PAD.encode(&pc.n),
                "e": URL_SAFE_NO_PAD.encode(&pc.e),
            });
            jwk
        }
    };
    let kid = kid.unwrap_or_else(|| thumbprint(&jwk));
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    jwk["alg"] = json!(alg.name());
    Ok(KeyMaterial {
        kid,
        alg,
        pkcs8,
        jwk,
    })
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url): the required members in lexicographic order.
pub fn thumbprint(jwk: &Value) -> String {
    let canonical = match jwk["kty"].as_str() {
        Some("EC") => format!(
            r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
            jwk["crv"], jwk["x"], jwk["y"]
        ),
        Some("OKP") => format!(r#"{{"crv":{},"kty":"OKP","x":{}}}"#, jwk["crv"], jwk["x"]),
        _ => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, jwk["e"], jwk["n"]),
    };
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
}

/// A parsed private key, kept for the life of the ring: signing never re-parses key material
/// (jsonwebtoken's `encode` would parse it on every call).
enum KeyPairKind {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(aws_lc_rs::rsa::KeyPair),
}

/// A key that signs.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pair: KeyPairKind,
    /// `base64url({"typ":"at+jwt","alg":…,"kid":…})`, encoded once.
    access_header: String,
}

impl SigningKey {
    fn new(kid: String, alg: KeyAlg, pkcs8: &[u8]) -> Result<Self, KeyError> {
        let rej = || KeyError::Rejected(format!("{} key cannot be parsed", alg.name()));
        let pair = match alg {
            KeyAlg::Es256 => KeyPairKind::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(|_| rej())?,
            ),
            KeyAlg::EdDsa => KeyPairKind::Ed(Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| rej())?),
            KeyAlg::Rs256 => {
                KeyPairKind::Rsa(aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8).map_err(|_| rej())?)
            }
        };
        let header = json!({ "typ": "at+jwt", "alg": alg.name(), "kid": kid });
        let access_header = URL_SAFE_NO_PAD.encode(header.to_string());
        Ok(Self {
            kid,
            alg: alg.jwt(),
            pair,
            access_header,
        })
    }

    /// Signs `message` (a JWS signing input) and returns the base64url signature.
    pub fn sign_bytes(&self, message: &[u8]) -> Result<String, KeyError> {
        let fail = |_| KeyError::Rejected("signing failed".into());
        let sig = match &self.pair {
            KeyPairKind::Ec(kp) => kp
                .sign(&SystemRandom::new(), message)
                .map_err(fail)?
                .as_ref()
                .to_vec(),
            KeyPairKind::Ed(kp) => kp.sign(message).as_ref().to_vec(),
            KeyPairKind::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                let alg = &aws_lc_rs::signature::RSA_PKCS1_SHA256;
                kp.sign(alg, &SystemRandom::new(), message, &mut sig)
                    .map_err(fail)?;
                sig
            }
        };
        Ok(URL_SAFE_NO_PAD.encode(sig))
    }

    /// A compact JWS of `claims` with the access-token header `{"typ":"at+jwt","alg","kid"}`.
    pub fn sign_access<C: serde::Serialize>(&self, claims: &C) -> Result<String, KeyError> {
        let payload = serde_json::to_vec(claims).map_err(|e| KeyError::Rejected(e.to_string()))?;
        let mut out = String::with_capacity(self.access_header.len() + payload.len() * 4 / 3 + 100);
        out.push_str(&self.access_header);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
        let sig = self.sign_bytes(out.as_bytes())?;
        out.push('.');
        out.push_str(&sig);
        Ok(out)
    }

    /// A compact JWS with an arbitrary header (tests and tooling forge tokens with this).
    pub fn sign_jws<H: serde::Serialize, C: serde::Serialize>(
        &self,
        header: &H,
        claims: &C,
    ) -> Result<String, KeyError> {
        let enc = |v: Vec<u8>| URL_SAFE_NO_PAD.encode(v);
        let h = serde_json::to_vec(header).map_err(|e| KeyError::Rejected(e.to_string()))?;
        let c = serde_json::to_vec(claims).map_err(|e| KeyError::Rejected(e.to_string()))?;
        let input = format!("{}.{}", enc(h), enc(c));
        let sig = self.sign_bytes(input.as_bytes())?;
        Ok(format!("{input}.{sig}"))
    }
}

/// A published key that verifies.
pub struct VerifyingKey {
    pub alg: Algorithm,
    pub decoding: DecodingKey,
}

/// A key allowed to sign during `[activate_at, retire_at)`.
struct Signer {
    activate_at: i64,
    retire_at: Option<i64>,
    key: Arc<SigningKey>,
}

/// One immutable snapshot of the keys, swapped as a whole on reload.
///
/// The signer is chosen by time at each signing, not at load time, so a key stops signing at
/// its `retire_at` and a pending key starts at its `activate_at` to the millisecond, whatever
/// the reload interval.
pub struct KeyRing {
    signers: Vec<Signer>,
    pub verifying: HashMap<String, VerifyingKey>,
    /// The pre-rendered JWKS body and its strong ETag.
    pub jwks: bytes::Bytes,
    pub etag: axum::http::HeaderValue,
}

impl KeyRing {
    /// Builds the ring from stored rows at time `now` (ms). Rows that cannot be opened are
    /// skipped with an error log, so one corrupted row does not take every key down.
    pub fn build(rows: &[KeyRow], master: &MasterKey, now: i64) -> Self {
        let mut signers = Vec::new();
        let mut verifying = HashMap::new();
        let mut published = Vec::new();
        for row in rows {
            let Some(alg) = KeyAlg::parse(&row.alg) else {
                tracing::error!(kid = %row.kid, "signing key with unknown algorithm skipped");
                continue;
            };
            let is_published = row.publish_at <= now && row.remove_at.is_none_or(|t| t > now);
            if !is_published {
                continue;
            }
            let jwk: Value = match serde_json::from_str(&row.public_jwk) {
                Ok(v) => v,
                Err(_) => {
                    tracing::error!(kid = %row.kid, "signing key with unreadable JWK skipped");
                    continue;
                }
            };
            let Some(dk) = decoding_key(&jwk) else {
                tracing::error!(kid = %row.kid, "signing key with unusable JWK skipped");
                continue;
            };
            verifying.insert(
                row.kid.clone(),
                VerifyingKey {
                    alg: alg.jwt(),
                    decoding: dk,
                },
            );
            published.push(jwk);
            // Invariant 3: only published keys sign, and only until they retire.
            if row.retire_at.is_some_and(|t| t <= now) {
                continue;
            }
            let key = master
                .open(&row.kid, &row.private_key_enc)
                .and_then(|der| SigningKey::new(row.kid.clone(), alg, &der));
            match key {
                Ok(key) => signers.push(Signer {
                    activate_at: row.activate_at,
                    retire_at: row.retire_at,
                    key: Arc::new(key),
                }),
                Err(e) => {
                    tracing::error!(kid = %row.kid, error = %e, "signing key cannot be opened")
                }
            }
        }
        // Newest activation first: the first signer whose window holds `now` signs.
        signers.sort_by_key(|s| std::cmp::Reverse(s.activate_at));
        let body = serde_json::to_vec(&json!({ "keys": published }))
            .unwrap_or_else(|_| b"{\"keys\":[]}".to_vec());
        let etag = format!(
            "\"{}\"",
            URL_SAFE_NO_PAD.encode(&digest::digest(&digest::SHA256, &body).as_ref()[..16])
        );
        let etag = axum::http::HeaderValue::from_str(&etag)
            .unwrap_or(axum::http::HeaderValue::from_static("\"0\""));
        Self {
            signers,
            verifying,
            jwks: body.into(),
            etag,
        }
    }

    /// The key that signs at `now` (ms).
    pub fn signer_at(&self, now: i64) -> Option<&Arc<SigningKey>> {
        self.signers
            .iter()
            .find(|s| s.activate_at <= now && s.retire_at.is_none_or(|t| t > now))
            .map(|s| &s.key)
    }

    /// The key that signs now.
    pub fn active(&self) -> Option<&Arc<SigningKey>> {
        self.signer_at(crate::auth::now_ms())
    }
}

fn decoding_key(jwk: &Value) -> Option<DecodingKey> {
    let s = |k: &str| jwk[k].as_str();
    match s("kty")? {
        "EC" => DecodingKey::from_ec_components(s("x")?, s("y")?).ok(),
        "OKP" => DecodingKey::from_ed_components(s("x")?).ok(),
        "RSA" => DecodingKey::from_rsa_components(s("n")?, s("e")?).ok(),
        _ => None,
    }
}

/// How often every replica re-reads the keys even without a change notification. A change is
/// therefore everywhere within this time.
pub const PROPAGATION_MS: i64 = 5_000;
/// Extra time a retired key stays published: a replica that has not reloaded yet may still sign
/// with it for up to `PROPAGATION_MS`.
pub const RELOAD_SLACK_MS: i64 = 2 * PROPAGATION_MS;

/// Timing of the key lifecycle, from the settings (`Settings::key_schedule`).
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
    ring: RwLock<Arc<KeyRing>>,
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
            ring: RwLock::new(Arc::new(ring)),
            master,
        })
    }

    /// Re-reads the keys from the store and swaps the ring.
    pub async fn reload(&self, store: &dyn Store, now: i64) -> Result<(), KeyError> {
        let rows = store.keys().await?;
        let ring = KeyRing::build(&rows, &self.master, now);
        if let Ok(mut g) = self.ring.write() {
            *g = Arc::new(ring);
        }
        Ok(())
    }

    /// The current snapshot.
    pub fn ring(&self) -> Arc<KeyRing> {
        match self.ring.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
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
            Err(StoreError::Duplicate("succeeds")) => return Ok(None),
            Err(StoreError::Duplicate(_)) => {
                return Err(KeyError::Rejected(format!(
                    "a key with kid {} already exists",
                    material.kid
                )))
            }
            Err(e) => return Err(e.into()),
        }
        if let Err(e) = store.notify_change("keys").await {
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

/// Reads a PKCS#8 PEM private key and works out its algorithm: P-256 → ES256, Ed25519 →
/// EdDSA, RSA (≥ 2048 bits) → RS256.
pub fn import_pem(pem_text: &str, kid: Option<String>) -> Result<KeyMaterial, KeyError> {
    let parsed = pem::parse(pem_text).map_err(|_| KeyError::Rejected("not a PEM file".into()))?;
    if parsed.tag() != "PRIVATE KEY" {
        return Err(KeyError::Rejected(format!(
            "expected a PKCS#8 \"PRIVATE KEY\" PEM, found \"{}\" (convert with `openssl pkcs8 -topk8 -nocrypt`)",
            parsed.tag()
        )));
    }
    let der = Zeroizing::new(parsed.into_contents());
    if let Some(k) = &kid {
        if k.is_empty() || k.len() > 128 || !k.chars().all(|c| c.is_ascii_graphic()) {
            return Err(KeyError::Rejected(
                "kid must be 1 to 128 printable ASCII characters".into(),
            ));
        }
    }
    for alg in [KeyAlg::Es256, KeyAlg::EdDsa, KeyAlg::Rs256] {
        if let Ok(m) = from_pkcs8(alg, der.clone(), kid.clone()) {
            return Ok(m);
        }
    }
    Err(KeyError::Rejected(
        "unsupported key: expected EC P-256, Ed25519 or RSA with at least 2048 bits".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_is_bound_to_the_kid() {
        let mk = MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap();
        let sealed = mk.seal("a", b"private").unwrap();
        assert_eq!(&mk.open("a", &sealed).unwrap()[..], b"private");
        assert!(mk.open("b", &sealed).is_err());
        assert!(!format!("{mk:?}").contains(&STANDARD.encode(&mk.0[..])));
    }

    #[test]
    fn every_algorithm_generates_a_public_only_jwk() {
        for alg in [KeyAlg::Es256, KeyAlg::EdDsa, KeyAlg::Rs256] {
            let m = generate(alg, 2048).unwrap();
            assert_eq!(m.jwk["alg"], alg.name());
            assert_eq!(m.jwk["use"], "sig");
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(m.jwk.get(private).is_none(), "{private} leaked for {alg:?}");
            }
            assert!(decoding_key(&m.jwk).is_some());
        }
    }

    #[test]
    fn ring_follows_the_lifecycle() {
        let mk = MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap();
        let a = generate(KeyAlg::Es256, 2048).unwrap();
        let b = generate(KeyAlg::EdDsa, 2048).unwrap();
        let row = |m: &KeyMaterial,
                   publish: i64,
                   activate: i64,
                   retire: Option<i64>,
                   remove: Option<i64>| KeyRow {
            retire_at: retire,
            remove_at: remove,
            publish_at: publish,
            ..sealed_row(&mk, m, publish, activate, None).unwrap()
        };
        let rows = vec![
            row(&a, 0, 0, Some(100), Some(200)),
            row(&b, 50, 100, None, None),
        ];
        let kids = |r: &KeyRing| {
            let v: Value = serde_json::from_slice(&r.jwks).unwrap();
            v["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        // Before B is published: only A, and A signs.
        let r = KeyRing::build(&rows, &mk, 40);
        assert_eq!(kids(&r), vec![a.kid.clone()]);
        assert_eq!(r.signer_at(40).unwrap().kid, a.kid);
        // B published ahead of signing; A still signs; at B's activation B signs, with no reload.
        let r = KeyRing::build(&rows, &mk, 60);
        assert_eq!(kids(&r), vec![a.kid.clone(), b.kid.clone()]);
        assert_eq!(r.signer_at(99).unwrap().kid, a.kid);
        assert_eq!(r.signer_at(100).unwrap().kid, b.kid);
        // Retired A stays published (tokens it signed still verify) until its removal.
        let r = KeyRing::build(&rows, &mk, 199);
        assert!(r.verifying.contains_key(&a.kid));
        assert_eq!(r.signer_at(199).unwrap().kid, b.kid);
        let r = KeyRing::build(&rows, &mk, 200);
        assert_eq!(kids(&r), vec![b.kid.clone()]);
        assert!(!r.verifying.contains_key(&a.kid));
        // A sealed key opened with the wrong master key is skipped, not fatal.
        let other = MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap();
        let r = KeyRing::build(&rows, &other, 150);
        assert!(r.signer_at(150).is_none());
    }

    #[test]
    fn import_detects_the_algorithm() {
        for alg in [KeyAlg::Es256, KeyAlg::EdDsa, KeyAlg::Rs256] {
            let m = generate(alg, 2048).unwrap();
            let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", m.pkcs8.to_vec()));
            let imported = import_pem(&pem, Some("k1".into())).unwrap();
            assert_eq!(imported.alg, alg);
            assert_eq!(imported.kid, "k1");
            assert_eq!(imported.jwk["x"], m.jwk["x"]);
        }
        let ec = generate(KeyAlg::Es256, 2048).unwrap();
        let sec1 = pem::encode(&pem::Pem::new("EC PRIVATE KEY", ec.pkcs8.to_vec()));
        assert!(import_pem(&sec1, None).is_err());
        assert!(import_pem("not pem", None).is_err());
        let junk = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
        assert!(import_pem(&junk, None).is_err());
    }

    #[test]
    fn master_key_must_be_32_bytes() {
        assert!(MasterKey::from_base64(&SecretString::from("c2hvcnQ=")).is_err());
        assert!(MasterKey::from_base64(&SecretString::from("not base64!")).is_err());
    }
}
