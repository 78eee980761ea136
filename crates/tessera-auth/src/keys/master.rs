//! The master key: 32 bytes that seal private signing keys at rest (AES-256-GCM, bound to the
//! kid) and from which other secrets are derived (HKDF-SHA256).
//!
//! Rotation: the current key seals and derives; previous keys (`keys.previous_master_keys`)
//! still open what they sealed and still verify what was keyed from them, until `tessera keys
//! rekey` has re-sealed every signing key and the old key is dropped.

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::KeyError;

/// The 32-byte master key, and the keys it replaced. Its `Debug` never prints the bytes.
pub struct MasterKey {
    current: Zeroizing<[u8; 32]>,
    previous: Vec<Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey([REDACTED], {} previous)", self.previous.len())
    }
}

fn decode(s: &SecretString) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let raw = Zeroizing::new(
        STANDARD
            .decode(s.expose_secret().trim())
            .map_err(|_| KeyError::MasterKey("not standard base64"))?,
    );
    let bytes: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::MasterKey("must decode to exactly 32 bytes"))?;
    Ok(Zeroizing::new(bytes))
}

fn aead(key: &[u8; 32]) -> Result<RandomizedNonceKey, KeyError> {
    RandomizedNonceKey::new(&AES_256_GCM, &key[..]).map_err(|_| KeyError::MasterKey("aes"))
}

fn hmac_key(key: &[u8; 32], purpose: &str) -> aws_lc_rs::hmac::Key {
    let prk =
        aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, b"tessera").extract(&key[..]);
    let info = [purpose.as_bytes()];
    match prk.expand(&info, aws_lc_rs::hmac::HMAC_SHA256) {
        Ok(okm) => okm.into(),
        // expand only fails for outputs longer than 255 hash lengths; 32 bytes cannot.
        Err(_) => aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key[..]),
    }
}

impl MasterKey {
    /// Parses 32 bytes given in standard base64.
    pub fn from_base64(s: &SecretString) -> Result<Self, KeyError> {
        Ok(Self {
            current: decode(s)?,
            previous: Vec::new(),
        })
    }

    /// Adds keys this one replaced (each 32 bytes in standard base64); they open and verify,
    /// never seal or mint. A repeat of the current key is ignored.
    ///
    /// Errors: `Config` (naming `keys.previous_master_keys`) when an entry is not 32 bytes of
    /// standard base64.
    pub fn with_previous(mut self, previous: &[SecretString]) -> Result<Self, KeyError> {
        for p in previous {
            let key = decode(p).map_err(|_| {
                KeyError::Config(
                    "keys.previous_master_keys: an entry is not 32 bytes of standard base64",
                )
            })?;
            if key[..] != self.current[..] {
                self.previous.push(key);
            }
        }
        Ok(self)
    }

    /// 32 fresh random bytes, base64-encoded (for the SQLite development default).
    pub fn generate_base64() -> Result<SecretString, KeyError> {
        let mut k = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(&mut k[..]).map_err(|_| KeyError::MasterKey("no randomness"))?;
        Ok(SecretString::from(STANDARD.encode(&k[..])))
    }

    /// Seals `plaintext` as nonce ‖ ciphertext ‖ tag, bound to `kid`, under the current key.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut buf = plaintext.to_vec();
        let nonce = aead(&self.current)?
            .seal_in_place_append_tag(Aad::from(aad(kid).as_bytes()), &mut buf)
            .map_err(|_| KeyError::Rejected("seal failed".into()))?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&buf);
        buf.iter_mut().for_each(|b| *b = 0);
        Ok(out)
    }

    /// Opens what `seal` produced for the same `kid`, under the current key or a previous one.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.open_sealed(kid, sealed).map(|(plain, _)| plain)
    }

    /// `open`, and whether it took a previous key (the material needs re-sealing).
    ///
    /// Errors: `Unseal(kid)` when no configured key opens it (wrong key, tampered, wrong kid).
    pub fn open_sealed(
        &self,
        kid: &str,
        sealed: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, bool), KeyError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(KeyError::Unseal(kid.to_string()));
        }
        let (n, ct) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = n
            .try_into()
            .map_err(|_| KeyError::Unseal(kid.to_string()))?;
        for (i, key) in std::iter::once(&self.current)
            .chain(&self.previous)
            .enumerate()
        {
            let mut buf = Zeroizing::new(ct.to_vec());
            let opened = aead(key)?.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(kid).as_bytes()),
                &mut buf,
            );
            if let Ok(plain) = opened {
                let len = plain.len();
                buf.truncate(len);
                return Ok((buf, i > 0));
            }
        }
        Err(KeyError::Unseal(kid.to_string()))
    }

    /// A purpose-bound HMAC key derived from the current master key (HKDF-SHA256).
    pub fn derive_hmac(&self, purpose: &str) -> aws_lc_rs::hmac::Key {
        hmac_key(&self.current, purpose)
    }

    /// The same from each previous master key, newest first: what was keyed before a rotation.
    pub fn derive_previous_hmacs(&self, purpose: &str) -> Vec<aws_lc_rs::hmac::Key> {
        self.previous.iter().map(|k| hmac_key(k, purpose)).collect()
    }
}

fn aad(kid: &str) -> String {
    format!("tessera-signing-key:{kid}")
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
        assert!(!format!("{mk:?}").contains(&STANDARD.encode(&mk.current[..])));
    }

    #[test]
    fn master_key_must_be_32_bytes() {
        assert!(MasterKey::from_base64(&SecretString::from("c2hvcnQ=")).is_err());
        assert!(MasterKey::from_base64(&SecretString::from("not base64!")).is_err());
    }
}
