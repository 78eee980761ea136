//! Refresh tokens.
//!
//! A refresh token is `base64url(session_id ‖ generation ‖ HMAC-SHA256(k, session_id ‖
//! generation))`, where `k` is derived from the master key. Nothing per token is stored: the
//! session row keeps only its current generation. Two consequences:
//! - a stolen database does not yield a usable token;
//! - a retry inside the grace window can be answered with the very same successor token, since
//!   the successor is a pure function of (session, generation + 1) (invariant 1).

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

const MAC_LEN: usize = 32;
const RAW_LEN: usize = 16 + 8 + MAC_LEN;
/// Domain separation for the HMAC input.
const LABEL: &[u8] = b"tessera refresh token v1";

/// Mints and checks refresh tokens.
pub struct RefreshTokens {
    key: hmac::Key,
    /// Keys of previous master keys: tokens minted under them still parse (master-key
    /// rotation); none is used to mint.
    previous: Vec<hmac::Key>,
}

impl std::fmt::Debug for RefreshTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshTokens([REDACTED])")
    }
}

/// The parts of a refresh token whose MAC checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshClaims {
    pub session_id: Uuid,
    pub generation: i64,
}

impl RefreshTokens {
    pub fn new(key: hmac::Key) -> Self {
        Self {
            key,
            previous: Vec::new(),
        }
    }

    /// Also accepts tokens minted under these keys (from previous master keys).
    pub fn with_previous(mut self, previous: Vec<hmac::Key>) -> Self {
        self.previous = previous;
        self
    }

    fn mac(&self, sid: &Uuid, generation: i64) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(LABEL);
        ctx.update(sid.as_bytes());
        ctx.update(&generation.to_be_bytes());
        ctx.sign()
    }

    /// The token for `generation` of session `sid`.
    pub fn mint(&self, sid: Uuid, generation: i64) -> SecretString {
        let mut raw = Vec::with_capacity(RAW_LEN);
        raw.extend_from_slice(sid.as_bytes());
        raw.extend_from_slice(&generation.to_be_bytes());
        raw.extend_from_slice(self.mac(&sid, generation).as_ref());
        SecretString::from(URL_SAFE_NO_PAD.encode(raw))
    }

    /// Checks the MAC in constant time. `None` for anything that is not a token we minted.
    pub fn parse(&self, token: &SecretString) -> Option<RefreshClaims> {
        let t = token.expose_secret();
        if t.len() != 75 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(t).ok()?;
        if raw.len() != RAW_LEN {
            return None;
        }
        let sid = Uuid::from_slice(&raw[..16]).ok()?;
        let generation = i64::from_be_bytes(raw[16..24].try_into().ok()?);
        let mut msg = Vec::with_capacity(LABEL.len() + 24);
        msg.extend_from_slice(LABEL);
        msg.extend_from_slice(&raw[..24]);
        let tag = &raw[24..];
        let valid = hmac::verify(&self.key, &msg, tag).is_ok()
            || self
                .previous
                .iter()
                .any(|k| hmac::verify(k, &msg, tag).is_ok());
        if !valid {
            return None;
        }
        Some(RefreshClaims {
            session_id: sid,
            generation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> RefreshTokens {
        RefreshTokens::new(hmac::Key::new(hmac::HMAC_SHA256, b"k"))
    }

    #[test]
    fn mint_parse_round_trip_and_tamper() {
        let t = tokens();
        let sid = Uuid::now_v7();
        let tok = t.mint(sid, 7);
        assert_eq!(tok.expose_secret().len(), 75);
        assert_eq!(
            t.parse(&tok),
            Some(RefreshClaims {
                session_id: sid,
                generation: 7
            })
        );
        // Deterministic: the same (session, generation) always gives the same token.
        assert_eq!(t.mint(sid, 7).expose_secret(), tok.expose_secret());
        let mut s = tok.expose_secret().to_string();
        let last = if s.ends_with('A') { 'B' } else { 'A' };
        s.pop();
        s.push(last);
        assert_eq!(t.parse(&SecretString::from(s)), None);
        let other = RefreshTokens::new(hmac::Key::new(hmac::HMAC_SHA256, b"other"));
        assert_eq!(other.parse(&tok), None);
        // After a master-key rotation: old tokens still parse, new ones are minted anew.
        let rotated = RefreshTokens::new(hmac::Key::new(hmac::HMAC_SHA256, b"other"))
            .with_previous(vec![hmac::Key::new(hmac::HMAC_SHA256, b"k")]);
        assert_eq!(rotated.parse(&tok).map(|c| c.generation), Some(7));
        assert_ne!(rotated.mint(sid, 7).expose_secret(), tok.expose_secret());
        assert_eq!(t.parse(&rotated.mint(sid, 8)), None);
        assert_eq!(t.parse(&SecretString::from("short")), None);
    }
}
