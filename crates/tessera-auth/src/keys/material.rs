//! Key material: the algorithms, generating and importing private keys, and their public JWK.

use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::KeyError;

pub use tessera_config::KeyAlg;

/// The `jsonwebtoken` algorithm of a signing algorithm.
pub fn jwt_alg(alg: KeyAlg) -> Algorithm {
    match alg {
        KeyAlg::Es256 => Algorithm::ES256,
        KeyAlg::EdDsa => Algorithm::EdDSA,
        KeyAlg::Rs256 => Algorithm::RS256,
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
    use crate::keys::ring::decoding_key;

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
}
