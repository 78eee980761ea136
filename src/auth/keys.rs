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

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::store::{KeyRow, Store, StoreError};

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
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ES256" => Some(Self::Es256),
            "EdDSA" => Some(Self::EdDsa),
            "RS256" => Some(Self::Rs256),
            _ => None,
        }
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

/// A private key that can sign, and its public half.
pub struct KeyMaterial {
    pub kid: String,
    pub alg: KeyAlg,
    pub pkcs8: Zeroizing<Vec<u8>>,
    pub encoding: EncodingKey,
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
    let (encoding, mut jwk) = match alg {
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
            (EncodingKey::from_ec_der(&pkcs8), jwk)
        }
        KeyAlg::EdDsa => {
            let kp =
                Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| rej("not a PKCS#8 Ed25519 key"))?;
            let jwk = json!({
                "kty": "OKP", "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(kp.public_key().as_ref()),
            });
            (EncodingKey::from_ed_der(&pkcs8), jwk)
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
            // jsonwebtoken wants PKCS#1 for RSA; its PEM parser converts PKCS#8 for us.
            let pem = Zeroizing::new(pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.to_vec())));
            let ek = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| rej("RSA key"))?;
            (ek, jwk)
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
        encoding,
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

/// A key that signs.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
}

/// A published key that verifies.
pub struct VerifyingKey {
    pub alg: Algorithm,
    pub decoding: DecodingKey,
    /// Tokens signed with this key cannot outlive this instant (ms); used for the JWKS lifetime.
    pub remove_at: Option<i64>,
}

/// One immutable snapshot of the keys, swapped as a whole on reload.
pub struct KeyRing {
    pub active: Option<Arc<SigningKey>>,
    pub verifying: HashMap<String, VerifyingKey>,
    /// The pre-rendered JWKS body and its strong ETag.
    pub jwks: bytes::Bytes,
    pub etag: String,
}

impl KeyRing {
    /// Builds the ring from stored rows at time `now` (ms). Rows that cannot be opened are
    /// skipped with an error log, so one corrupted row does not take every key down.
    pub fn build(rows: &[KeyRow], master: &MasterKey, now: i64) -> Self {
        let mut active: Option<(i64, Arc<SigningKey>)> = None;
        let mut verifying = HashMap::new();
        let mut published = Vec::new();
        for row in rows {
            let Some(alg) = KeyAlg::parse(&row.alg) else {
                tracing::error!(kid = %row.kid, "signing key with unknown algorithm skipped");
                continue;
            };
            let is_published = row.publish_at <= now && row.remove_at.is_none_or(|t| t > now);
            let is_active = row.activate_at <= now && row.retire_at.is_none_or(|t| t > now);
            if !is_published && !is_active {
                continue;
            }
            let jwk: Value = match serde_json::from_str(&row.public_jwk) {
                Ok(v) => v,
                Err(_) => {
                    tracing::error!(kid = %row.kid, "signing key with unreadable JWK skipped");
                    continue;
                }
            };
            if is_published {
                if let Some(dk) = decoding_key(&jwk) {
                    verifying.insert(
                        row.kid.clone(),
                        VerifyingKey {
                            alg: alg.jwt(),
                            decoding: dk,
                            remove_at: row.remove_at,
                        },
                    );
                    published.push(jwk.clone());
                }
            }
            // Invariant 3: a key signs only while it is also published.
            if is_active && is_published {
                let material = master
                    .open(&row.kid, &row.private_key_enc)
                    .and_then(|der| from_pkcs8(alg, der, Some(row.kid.clone())));
                match material {
                    Ok(m) => {
                        let newer = active.as_ref().is_none_or(|(at, _)| row.activate_at >= *at);
                        if newer {
                            let sk = SigningKey {
                                kid: m.kid,
                                alg: alg.jwt(),
                                encoding: m.encoding,
                            };
                            active = Some((row.activate_at, Arc::new(sk)));
                        }
                    }
                    Err(e) => {
                        tracing::error!(kid = %row.kid, error = %e, "signing key cannot be opened")
                    }
                }
            }
        }
        let body = serde_json::to_vec(&json!({ "keys": published }))
            .unwrap_or_else(|_| b"{\"keys\":[]}".to_vec());
        let etag = format!(
            "\"{}\"",
            URL_SAFE_NO_PAD.encode(&digest::digest(&digest::SHA256, &body).as_ref()[..16])
        );
        Self {
            active: active.map(|(_, k)| k),
            verifying,
            jwks: body.into(),
            etag,
        }
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
            let m = tokio::task::spawn_blocking(move || generate(alg, rsa_bits))
                .await
                .map_err(|e| KeyError::Rejected(e.to_string()))??;
            let row = KeyRow {
                kid: m.kid.clone(),
                alg: alg.name().to_string(),
                private_key_enc: master.seal(&m.kid, &m.pkcs8)?,
                public_jwk: m.jwk.to_string(),
                created_at: now,
                publish_at: now,
                activate_at: now,
                retire_at: None,
                remove_at: None,
            };
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
    fn master_key_must_be_32_bytes() {
        assert!(MasterKey::from_base64(&SecretString::from("c2hvcnQ=")).is_err());
        assert!(MasterKey::from_base64(&SecretString::from("not base64!")).is_err());
    }
}
