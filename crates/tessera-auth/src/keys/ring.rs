//! The key ring: one immutable snapshot of the published keys, with the pre-rendered JWKS.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{json, Value};

use super::{KeyAlg, KeyError, MasterKey};
use crate::store::KeyRow;

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
            alg: super::material::jwt_alg(alg),
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

    /// `base64url({"typ":"at+jwt","alg","kid"})`, the JWS header of every access token
    /// this key signs, encoded once.
    pub fn access_header(&self) -> &str {
        &self.access_header
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
    /// The pre-rendered JWKS body and its strong ETag (quotes included; shared, so that
    /// serving it copies nothing).
    pub jwks: bytes::Bytes,
    pub etag: bytes::Bytes,
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
                    alg: super::material::jwt_alg(alg),
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
        Self {
            signers,
            verifying,
            jwks: body.into(),
            etag: etag.into(),
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
        self.signer_at(crate::time::now_ms())
    }
}

pub(super) fn decoding_key(jwk: &Value) -> Option<DecodingKey> {
    let s = |k: &str| jwk[k].as_str();
    match s("kty")? {
        "EC" => DecodingKey::from_ec_components(s("x")?, s("y")?).ok(),
        "OKP" => DecodingKey::from_ed_components(s("x")?).ok(),
        "RSA" => DecodingKey::from_rsa_components(s("n")?, s("e")?).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{generate, sealed_row, KeyMaterial};

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
}
