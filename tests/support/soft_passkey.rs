//! A software passkey authenticator for the tests and the benchmarks: one discoverable P-256
//! credential, `none` attestation, and the CBOR, authenticator data and client data a browser
//! and a platform authenticator produce (WebAuthn Level 3 §6.1, §6.5; COSE RFC 9053), as the
//! JSON of `PublicKeyCredential.toJSON()`. Fields are public so that tests can misbehave on
//! purpose (a clone, another origin or RP ID, no user verification).
#![allow(dead_code)]

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

/// The page origin the authenticator reports unless told otherwise.
pub const ORIGIN: &str = "https://login.example.com";

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

/// A software authenticator holding one discoverable credential, as a platform authenticator
/// with user verification would. Fields are public so that tests can misbehave on purpose.
pub struct SoftPasskey {
    pkcs8: Vec<u8>,
    pub cred_id: Vec<u8>,
    pub user_handle: Vec<u8>,
    pub counter: u32,
    /// Backup eligible and backed up (a synced passkey).
    pub synced: bool,
    /// The user-verified flag it sets.
    pub verifies_user: bool,
    /// The page the browser reports (`clientDataJSON.origin`).
    pub origin: String,
    /// The RP ID it hashes into its authenticator data (the browser's choice, normally the
    /// options' `rp.id`); `None`: the options'.
    pub rp_id: Option<String>,
}

fn cbor_head(major: u8, n: usize) -> Vec<u8> {
    let m = major << 5;
    match n {
        0..=23 => vec![m | n as u8],
        24..=255 => vec![m | 24, n as u8],
        _ => vec![m | 25, (n >> 8) as u8, n as u8],
    }
}

fn cbor_text(s: &str) -> Vec<u8> {
    let mut v = cbor_head(3, s.len());
    v.extend_from_slice(s.as_bytes());
    v
}

fn cbor_bytes(b: &[u8]) -> Vec<u8> {
    let mut v = cbor_head(2, b.len());
    v.extend_from_slice(b);
    v
}

impl SoftPasskey {
    pub fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let mut cred_id = vec![0u8; 32];
        aws_lc_rs::rand::fill(&mut cred_id).unwrap();
        SoftPasskey {
            pkcs8,
            cred_id,
            user_handle: Vec::new(),
            counter: 0,
            synced: false,
            verifies_user: true,
            origin: ORIGIN.into(),
            rp_id: None,
        }
    }

    /// The same key and credential in a second authenticator (a clone).
    pub fn clone_device(&self) -> Self {
        SoftPasskey {
            pkcs8: self.pkcs8.clone(),
            cred_id: self.cred_id.clone(),
            user_handle: self.user_handle.clone(),
            counter: self.counter,
            synced: self.synced,
            verifies_user: self.verifies_user,
            origin: self.origin.clone(),
            rp_id: self.rp_id.clone(),
        }
    }

    fn key(&self) -> EcdsaKeyPair {
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.pkcs8).unwrap()
    }

    fn flags(&self, attested: bool) -> u8 {
        let mut f = 0x01; // user present
        if self.verifies_user {
            f |= 0x04;
        }
        if self.synced {
            f |= 0x08 | 0x10;
        }
        if attested {
            f |= 0x40;
        }
        f
    }

    fn auth_data(&self, rp_id: &str, attested: bool) -> Vec<u8> {
        let rp = self.rp_id.as_deref().unwrap_or(rp_id);
        let mut d = digest(&SHA256, rp.as_bytes()).as_ref().to_vec();
        d.push(self.flags(attested));
        d.extend_from_slice(&self.counter.to_be_bytes());
        if attested {
            d.extend_from_slice(&[0u8; 16]); // AAGUID
            d.extend_from_slice(&(self.cred_id.len() as u16).to_be_bytes());
            d.extend_from_slice(&self.cred_id);
            // COSE_Key (RFC 9053): EC2, ES256, P-256, x, y.
            let public = self.key().public_key().as_ref().to_vec();
            let mut k = cbor_head(5, 5);
            k.extend([0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21]);
            k.extend(cbor_bytes(&public[1..33]));
            k.push(0x22);
            k.extend(cbor_bytes(&public[33..65]));
            d.extend(k);
        }
        d
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": kind,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": false,
        }))
        .unwrap()
    }

    /// `navigator.credentials.create({publicKey})`, then `toJSON()`.
    pub fn register(&mut self, public_key: &Value) -> Value {
        let rp_id = public_key["rp"]["id"].as_str().unwrap();
        self.user_handle = unb64(public_key["user"]["id"].as_str().unwrap());
        let client_data =
            self.client_data("webauthn.create", public_key["challenge"].as_str().unwrap());
        let mut att = cbor_head(5, 3);
        att.extend(cbor_text("fmt"));
        att.extend(cbor_text("none"));
        att.extend(cbor_text("attStmt"));
        att.extend(cbor_head(5, 0));
        att.extend(cbor_text("authData"));
        att.extend(cbor_bytes(&self.auth_data(rp_id, true)));
        json!({
            "id": b64(&self.cred_id),
            "rawId": b64(&self.cred_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64(&client_data),
                "attestationObject": b64(&att),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
        })
    }

    /// `navigator.credentials.get({publicKey})`, then `toJSON()`; the counter goes up first.
    pub fn assert(&mut self, public_key: &Value) -> Value {
        self.counter += 1;
        let rp_id = public_key["rpId"].as_str().unwrap();
        let client_data =
            self.client_data("webauthn.get", public_key["challenge"].as_str().unwrap());
        let auth_data = self.auth_data(rp_id, false);
        let mut signed = auth_data.clone();
        signed.extend_from_slice(digest(&SHA256, &client_data).as_ref());
        let sig = self.key().sign(&SystemRandom::new(), &signed).unwrap();
        json!({
            "id": b64(&self.cred_id),
            "rawId": b64(&self.cred_id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&client_data),
                "signature": b64(sig.as_ref()),
                "userHandle": b64(&self.user_handle),
            },
            "clientExtensionResults": {},
        })
    }
}

impl Default for SoftPasskey {
    fn default() -> Self {
        Self::new()
    }
}
