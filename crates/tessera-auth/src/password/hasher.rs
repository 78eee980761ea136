//! argon2id itself: hashing, verifying against a PHC string with reused memory, and deciding
//! when a stored hash is outdated. Everything here blocks: call it off the async runtime.

use std::cell::RefCell;

use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};

use super::formats::{verify_foreign, CostCaps};
use super::PasswordError;

thread_local! {
    /// The argon2 working memory of this worker thread, reused across verifications.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Hashes with a fresh random salt (`password_hash::RECOMMENDED_SALT_LEN`, 16 bytes) into a
/// PHC string, `$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>`, in this thread's reused memory
/// block: a fresh one would be page-faulted in and zeroed for every hash (a third of an
/// argon2 run's cost at 19 MiB). Blocking: call it off the async runtime.
///
/// Errors: `Internal` (the system RNG, or parameters argon2 refuses).
pub fn hash_blocking(params: &Params, password: &[u8]) -> Result<String, PasswordError> {
    use argon2::password_hash::phc::{Output, ParamsString, Salt};
    let internal = |e: &dyn std::fmt::Display| PasswordError::Internal(e.to_string());
    let salt_bytes = argon2::password_hash::try_generate_salt().map_err(|e| internal(&e))?;
    let salt = Salt::new(&salt_bytes).map_err(|e| internal(&e))?;
    let a2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = vec![0u8; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
    BLOCKS
        .with(|cell| {
            let mut blocks = cell.borrow_mut();
            let need = params.block_count();
            if blocks.len() < need {
                blocks.resize(need, Block::default());
            }
            a2.hash_password_into_with_memory(password, &salt_bytes, &mut out, &mut blocks[..need])
        })
        .map_err(|e| internal(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| internal(&e))?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| internal(&e))?),
    };
    Ok(phc.to_string())
}

/// Verifies against a stored hash: argon2id or argon2i here, reusing this thread's memory
/// block; bcrypt and PBKDF2 in `formats`. A malformed or unsupported hash, or one over a cost
/// cap, verifies as false. Blocking: call it off the async runtime.
pub fn verify_blocking(password: &[u8], stored: &str, caps: &CostCaps) -> bool {
    if !stored.starts_with("$argon2") {
        return verify_foreign(password, stored, caps);
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let algorithm = if parsed.algorithm == argon2::ARGON2ID_IDENT {
        Algorithm::Argon2id
    } else if parsed.algorithm == argon2::ARGON2I_IDENT {
        Algorithm::Argon2i
    } else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Ok(params), Some(salt), Some(expected)) =
        (Params::try_from(&parsed), parsed.salt, parsed.hash)
    else {
        return false;
    };
    if params.m_cost() > caps.argon2_m_cost || params.t_cost() > caps.argon2_t_cost {
        return false;
    }
    let a2 = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    let done = BLOCKS.with(|cell| {
        let mut blocks = cell.borrow_mut();
        let need = params.block_count();
        if blocks.len() < need {
            blocks.resize(need, Block::default());
        }
        a2.hash_password_into_with_memory(password, salt.as_ref(), &mut out, &mut blocks[..need])
    });
    done.is_ok()
        && aws_lc_rs::constant_time::verify_slices_are_equal(&out, expected.as_bytes()).is_ok()
}

/// True when the stored hash was made with other parameters than the configured ones.
pub(super) fn needs_rehash(phc: &str, want: &Params) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return true;
    };
    let Ok(p) = Params::try_from(&parsed) else {
        return true;
    };
    parsed.algorithm != argon2::ARGON2ID_IDENT
        || parsed.version != Some(19)
        || p.m_cost() != want.m_cost()
        || p.t_cost() != want.t_cost()
        || p.p_cost() != want.p_cost()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params::new(19456, 2, 1, None).unwrap()
    }

    fn verify_blocking(pw: &[u8], stored: &str) -> bool {
        super::verify_blocking(pw, stored, &CostCaps::DEFAULTS)
    }

    #[test]
    fn verify_round_trip_with_reused_memory() {
        let h = hash_blocking(&params(), b"correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_blocking(b"correct horse", &h));
        assert!(!verify_blocking(b"correct horsf", &h));
        // Second run on the same thread reuses the block and still agrees.
        assert!(verify_blocking(b"correct horse", &h));
        assert!(!verify_blocking(b"correct horse", "not a phc string"));
    }

    #[test]
    fn hashes_made_in_reused_memory_are_standard_phc_strings() {
        use argon2::PasswordVerifier;
        let a = hash_blocking(&params(), b"pw one").unwrap();
        let b = hash_blocking(&params(), b"pw one").unwrap();
        assert_ne!(a, b, "a fresh salt each time");
        // The crate's own verifier, in its own memory, agrees.
        let own = Argon2::default();
        assert!(own.verify_password(b"pw one", a.as_str()).is_ok());
        assert!(own.verify_password(b"pw two", a.as_str()).is_err());
        // A 16-byte salt and a 32-byte hash, unpadded base64.
        let parts: Vec<&str> = a.split('$').collect();
        assert_eq!((parts[4].len(), parts[5].len()), (22, 43), "{a}");
        // A larger block than the thread's earlier one grows it; a smaller one reuses it.
        let big = Params::new(32768, 1, 1, None).unwrap();
        let h = hash_blocking(&big, b"pw").unwrap();
        assert!(own.verify_password(b"pw", h.as_str()).is_ok());
        let small = Params::new(8192, 1, 1, None).unwrap();
        let h = hash_blocking(&small, b"pw").unwrap();
        assert!(own.verify_password(b"pw", h.as_str()).is_ok());
    }

    #[test]
    fn outdated_parameters_ask_for_a_rehash() {
        let old = Params::new(20000, 2, 1, None).unwrap();
        let h = hash_blocking(&old, b"pw").unwrap();
        assert!(needs_rehash(&h, &params()));
        assert!(!needs_rehash(
            &hash_blocking(&params(), b"pw").unwrap(),
            &params()
        ));
    }
}
