//! Password hashes made by other systems, for users moved to Tessera with
//! `tessera user add --password-hash` or `tessera user import`.
//!
//! What is accepted, and what is stored:
//! - argon2id and argon2i PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`): as given;
//! - bcrypt `$2a$`, `$2b$`, `$2y$` (GoTrue, Auth0, Devise, PHP): as given;
//! - PBKDF2-SHA256 or -SHA512 in PHC form (`$pbkdf2-sha256$i=…,l=…$salt$hash`): as given;
//! - the same in passlib's form (`$pbkdf2-sha256$ROUNDS$salt$hash`, "adapted" base64) and in
//!   Django's (`pbkdf2_sha256$ROUNDS$salt$hash`, the salt used as its UTF-8 bytes): converted to
//!   the PHC form;
//! - a Keycloak password credential as exported in a realm or user JSON (`{"secretData":
//!   "{\"value\":…,\"salt\":…}", "credentialData": "{\"algorithm\":…,\"hashIterations\":…}"}`):
//!   `pbkdf2-sha256` and `pbkdf2-sha512` become the PBKDF2 PHC form with `i=hashIterations`;
//!   `argon2` becomes an argon2 PHC string from `additionalParameters` (`type`, `version`,
//!   `memory`, `parallelism`, `hashLength`).
//!
//! So the store only ever holds PHC or bcrypt strings, verified by the `argon2`, `pbkdf2` and
//! `bcrypt` crates. Every cost is capped (`password.max_*`) at import and again at each
//! verification. A user with a foreign hash is re-hashed to the configured argon2id at the next
//! successful login. bcrypt reads only the first 72 bytes of a password, as the system that
//! made the hash did; the argon2id hash made at that login covers the whole password.

use std::str::FromStr;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use pbkdf2::password_hash::PasswordVerifier;
use serde_json::Value;

use crate::config::PasswordSettings;

/// The most a stored hash may cost to verify (`password.max_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostCaps {
    /// bcrypt's cost: log2 of its rounds (14 is 16,384 rounds).
    pub bcrypt_cost: u32,
    /// PBKDF2 iterations.
    pub pbkdf2_iterations: u32,
    /// argon2 memory, in KiB.
    pub argon2_m_cost: u32,
    /// argon2 passes over the memory.
    pub argon2_t_cost: u32,
}

impl CostCaps {
    /// The caps of `config/default.toml`.
    pub const DEFAULTS: CostCaps = CostCaps {
        bcrypt_cost: 14,
        pbkdf2_iterations: 2_000_000,
        argon2_m_cost: 262_144,
        argon2_t_cost: 16,
    };
}

impl From<&PasswordSettings> for CostCaps {
    fn from(s: &PasswordSettings) -> Self {
        CostCaps {
            bcrypt_cost: s.max_bcrypt_cost,
            pbkdf2_iterations: s.max_pbkdf2_iterations,
            argon2_m_cost: s.max_argon2_m_cost,
            argon2_t_cost: s.max_argon2_t_cost,
        }
    }
}

/// Why an imported hash was refused. The texts name the format and the setting, never the hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("unrecognised password hash (expected argon2id or argon2i PHC, bcrypt $2a$/$2b$/$2y$, PBKDF2-SHA256/512 in PHC, passlib or Django form, or a Keycloak credential)")]
    Unrecognised,
    #[error("malformed {0} hash")]
    Malformed(&'static str),
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    #[error("{what} {got} is over the cap of {cap} (password.{setting})")]
    OverCap {
        what: &'static str,
        got: u64,
        cap: u64,
        setting: &'static str,
    },
}

/// The scheme of a stored hash, by its prefix.
enum Scheme {
    Argon2,
    Bcrypt,
    Pbkdf2,
    Unknown,
}

fn scheme(stored: &str) -> Scheme {
    if stored.starts_with("$argon2") {
        Scheme::Argon2
    } else if stored.starts_with("$pbkdf2-") {
        Scheme::Pbkdf2
    } else if stored.starts_with("$2") {
        Scheme::Bcrypt
    } else {
        Scheme::Unknown
    }
}

/// Checks an imported hash (or Keycloak credential) and returns the string to store.
///
/// Errors: `Unrecognised`, `Malformed`, `Unsupported` (bcrypt `$2x$`, Keycloak's SHA-1
/// `pbkdf2`), `OverCap`.
pub fn import(input: &str, caps: &CostCaps) -> Result<String, ImportError> {
    let input = input.trim();
    let stored = if input.starts_with('{') {
        keycloak(input)?
    } else if let Some(rest) = input.strip_prefix("pbkdf2_") {
        django(rest)?
    } else if input.starts_with("$pbkdf2-") && !input.contains("$i=") {
        passlib(input)?
    } else {
        input.to_string()
    };
    check(&stored, caps)?;
    Ok(stored)
}

/// Whether a stored string parses and is within the caps.
fn check(stored: &str, caps: &CostCaps) -> Result<(), ImportError> {
    match scheme(stored) {
        Scheme::Argon2 => {
            let h =
                argon2::PasswordHash::new(stored).map_err(|_| ImportError::Malformed("argon2"))?;
            if h.algorithm != argon2::ARGON2ID_IDENT && h.algorithm != argon2::ARGON2I_IDENT {
                return Err(ImportError::Unsupported("argon2d"));
            }
            let p = argon2::Params::try_from(&h).map_err(|_| ImportError::Malformed("argon2"))?;
            if h.salt.is_none() || h.hash.is_none() {
                return Err(ImportError::Malformed("argon2"));
            }
            cap(
                "argon2 memory (KiB)",
                p.m_cost(),
                caps.argon2_m_cost,
                "max_argon2_m_cost",
            )?;
            cap(
                "argon2 passes",
                p.t_cost(),
                caps.argon2_t_cost,
                "max_argon2_t_cost",
            )
        }
        Scheme::Bcrypt => {
            let parts = bcrypt::HashParts::from_str(stored)
                .map_err(|_| ImportError::Malformed("bcrypt"))?;
            if !["$2a$", "$2b$", "$2y$"]
                .iter()
                .any(|v| stored.starts_with(v))
            {
                return Err(ImportError::Unsupported(
                    "bcrypt $2x$ (crypt_blowfish's buggy variant)",
                ));
            }
            cap(
                "bcrypt cost",
                parts.get_cost(),
                caps.bcrypt_cost,
                "max_bcrypt_cost",
            )
        }
        Scheme::Pbkdf2 => {
            let h = pbkdf2::phc::PasswordHash::new(stored)
                .map_err(|_| ImportError::Malformed("PBKDF2"))?;
            let p = pbkdf2::Params::try_from(&h).map_err(|_| ImportError::Malformed("PBKDF2"))?;
            if h.salt.is_none() || h.hash.is_none() {
                return Err(ImportError::Malformed("PBKDF2"));
            }
            cap(
                "PBKDF2 iterations",
                p.rounds(),
                caps.pbkdf2_iterations,
                "max_pbkdf2_iterations",
            )
        }
        Scheme::Unknown => Err(ImportError::Unrecognised),
    }
}

fn cap(what: &'static str, got: u32, cap: u32, setting: &'static str) -> Result<(), ImportError> {
    if got > cap {
        return Err(ImportError::OverCap {
            what,
            got: got.into(),
            cap: cap.into(),
            setting,
        });
    }
    Ok(())
}

/// Verifies a bcrypt or PBKDF2 hash within the caps; anything malformed or over a cap is
/// `false`. Blocking: call it off the async runtime.
pub(super) fn verify_foreign(password: &[u8], stored: &str, caps: &CostCaps) -> bool {
    if check(stored, caps).is_err() {
        return false;
    }
    match scheme(stored) {
        Scheme::Bcrypt => bcrypt::verify(password, stored).unwrap_or(false),
        Scheme::Pbkdf2 => pbkdf2::phc::PasswordHash::new(stored).is_ok_and(|h| {
            pbkdf2::Pbkdf2::default()
                .verify_password(password, &h)
                .is_ok()
        }),
        Scheme::Argon2 | Scheme::Unknown => false,
    }
}

/// `$pbkdf2-sha256$i=ROUNDS,l=LEN$SALT$HASH`, salt and hash in PHC's base64 (no padding).
fn pbkdf2_phc(digest: &str, rounds: u64, salt: &[u8], hash: &[u8]) -> String {
    format!(
        "$pbkdf2-{digest}$i={rounds},l={}${}${}",
        hash.len(),
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(hash)
    )
}

fn digest_name(name: &str) -> Result<&'static str, ImportError> {
    match name {
        "sha256" => Ok("sha256"),
        "sha512" => Ok("sha512"),
        "sha1" | "" => Err(ImportError::Unsupported("PBKDF2 with SHA-1")),
        _ => Err(ImportError::Unrecognised),
    }
}

/// passlib: `$pbkdf2-sha256$29000$N2YMIWQsBWBMae09x1jrPQ$1t8iyB2A.WF/Z5JZv.lfCIhXXN33N23OSgQYThBYRfk`,
/// in "adapted base64" (`.` for `+`, no padding).
fn passlib(input: &str) -> Result<String, ImportError> {
    let bad = || ImportError::Malformed("passlib PBKDF2");
    let mut parts = input.split('$');
    let (Some(""), Some(id), Some(rounds), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    let digest = digest_name(id.strip_prefix("pbkdf2-").ok_or_else(bad)?)?;
    let rounds: u64 = rounds.parse().map_err(|_| bad())?;
    let ab64 = |s: &str| {
        STANDARD_NO_PAD
            .decode(s.replace('.', "+"))
            .map_err(|_| bad())
    };
    Ok(pbkdf2_phc(digest, rounds, &ab64(salt)?, &ab64(hash)?))
}

/// Django: `pbkdf2_sha256$870000$SALT$HASH` (the `pbkdf2_` prefix already taken off); the salt
/// is used as its bytes, the hash is standard base64.
fn django(rest: &str) -> Result<String, ImportError> {
    let bad = || ImportError::Malformed("Django PBKDF2");
    let mut parts = rest.split('$');
    let (Some(digest), Some(rounds), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    let digest = digest_name(digest)?;
    let rounds: u64 = rounds.parse().map_err(|_| bad())?;
    let hash = STANDARD.decode(hash).map_err(|_| bad())?;
    Ok(pbkdf2_phc(digest, rounds, salt.as_bytes(), &hash))
}

/// A Keycloak credential (`CredentialRepresentation` of type `password`). Its `secretData` and
/// `credentialData` are JSON documents inside strings; objects are accepted too.
fn keycloak(input: &str) -> Result<String, ImportError> {
    let bad = || ImportError::Malformed("Keycloak credential");
    let cred: Value = serde_json::from_str(input).map_err(|_| bad())?;
    let inner = |key: &str| -> Result<Value, ImportError> {
        match cred.get(key) {
            Some(Value::String(s)) => serde_json::from_str(s).map_err(|_| bad()),
            Some(v @ Value::Object(_)) => Ok(v.clone()),
            _ => Err(bad()),
        }
    };
    if cred.get("type").is_some_and(|t| t != "password") {
        return Err(ImportError::Unsupported(
            "Keycloak credentials other than passwords",
        ));
    }
    let secret = inner("secretData")?;
    let data = inner("credentialData")?;
    let b64 = |v: Option<&Value>| -> Result<Vec<u8>, ImportError> {
        let s = v.and_then(Value::as_str).ok_or_else(bad)?;
        STANDARD
            .decode(s)
            .or_else(|_| STANDARD_NO_PAD.decode(s))
            .map_err(|_| bad())
    };
    let (hash, salt) = (b64(secret.get("value"))?, b64(secret.get("salt"))?);
    let iterations = data
        .get("hashIterations")
        .and_then(Value::as_u64)
        .ok_or_else(bad)?;
    match data.get("algorithm").and_then(Value::as_str) {
        Some("pbkdf2-sha256") => Ok(pbkdf2_phc("sha256", iterations, &salt, &hash)),
        Some("pbkdf2-sha512") => Ok(pbkdf2_phc("sha512", iterations, &salt, &hash)),
        Some("pbkdf2") => Err(ImportError::Unsupported(
            "Keycloak pbkdf2 (PBKDF2 with SHA-1)",
        )),
        Some("argon2") => {
            // additionalParameters: {"type":["id"],"version":["1.3"],"memory":["7168"],
            // "parallelism":["1"],"hashLength":["32"]}, each a one-element list.
            let params = data.get("additionalParameters");
            let param = |k: &str| {
                params
                    .and_then(|p| p.get(k))
                    .and_then(|v| v.get(0).or(Some(v)))
                    .and_then(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .or(v.as_u64().map(|n| n.to_string()))
                    })
            };
            let kind = match param("type").as_deref() {
                Some("id") | None => "argon2id",
                Some("i") => "argon2i",
                Some(_) => return Err(ImportError::Unsupported("argon2d")),
            };
            let version = match param("version").as_deref() {
                Some("1.3") | None => 19,
                Some("1.0") => 16,
                Some(_) => return Err(bad()),
            };
            let memory: u32 = param("memory")
                .ok_or_else(bad)?
                .parse()
                .map_err(|_| bad())?;
            let lanes: u32 = param("parallelism")
                .unwrap_or_else(|| "1".into())
                .parse()
                .map_err(|_| bad())?;
            Ok(format!(
                "${kind}$v={version}$m={memory},t={iterations},p={lanes}${}${}",
                STANDARD_NO_PAD.encode(&salt),
                STANDARD_NO_PAD.encode(&hash)
            ))
        }
        _ => Err(ImportError::Unrecognised),
    }
}

#[cfg(test)]
#[path = "formats_tests.rs"]
mod tests;
