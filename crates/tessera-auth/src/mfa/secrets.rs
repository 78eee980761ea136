//! The secrets of second factors: TOTP (RFC 6238: SHA-1, 6 digits, 30 s, sealed under the
//! master key) and recovery codes (stored as digests).

use secrecy::SecretString;
use totp_rs::{Algorithm, Secret, Totp};
use uuid::Uuid;

use super::*;
use crate::oidc::token_digest;
use crate::store::MfaFactor;
use crate::{Auth, AuthError};

/// What seals a factor's secret: bound to the factor.
pub(super) fn seal_label(id: Uuid) -> String {
    format!("totp:{id}")
}

/// A recovery code as stored: SHA-256 of the user id and the normalised code.
pub(super) fn recovery_digest(user_id: Uuid, code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    token_digest(&format!("{user_id}:{normal}"))
}

/// Ten new recovery codes: 80 random bits each, as `xxxx-xxxx-xxxx-xxxx` (base32, lower case).
pub(super) fn new_recovery_codes() -> Result<Vec<SecretString>, AuthError> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut b = [0u8; 10];
            aws_lc_rs::rand::fill(&mut b)
                .map_err(|_| AuthError::Internal("no randomness".into()))?;
            let s = base32_lower(&b);
            Ok(SecretString::from(format!(
                "{}-{}-{}-{}",
                &s[0..4],
                &s[4..8],
                &s[8..12],
                &s[12..16]
            )))
        })
        .collect()
}

/// RFC 4648 base32 without padding, lower case.
pub(super) fn base32_lower(bytes: &[u8]) -> String {
    Secret::new(bytes.to_vec().into_boxed_slice())
        .to_base32()
        .trim_end_matches('=')
        .to_ascii_lowercase()
}

impl Auth {
    pub(super) fn totp(&self, secret: &[u8], account: &str) -> Result<Totp, AuthError> {
        totp_rs::Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(TOTP_DIGITS)
            .with_step_duration(TOTP_STEP_SECS)
            .with_skew(1)
            .with_secret(Secret::new(secret.to_vec().into_boxed_slice()))
            .with_account_name(account.replace(':', "_"))
            .with_issuer(Some(self.settings.mfa.totp_issuer.replace(':', "_")))
            .build()
            .map_err(|e| AuthError::Internal(format!("totp: {e}")))
    }
}

/// The RFC 6238 time step (Unix seconds / 30) whose code `code` is, within one step either side
/// of `at` (Unix seconds), for the TOTP factor `f`, whose secret `master` opens. The CPU part of
/// every TOTP check (`benches/hot_paths.rs` measures it).
///
/// Errors: `Unavailable` (the secret does not open: the master key that sealed it is not
/// configured, as when no signing key opens; a 503 the client retries, not a wrong code).
pub fn totp_step(
    master: &crate::keys::MasterKey,
    f: &MfaFactor,
    code: &str,
    at: u64,
) -> Result<Option<u64>, AuthError> {
    let secret = master
        .open(&seal_label(f.id), &f.secret_enc)
        .map_err(|e| {
            tracing::error!(factor_id = %f.id, error = %e, "a TOTP secret does not open under the configured master keys");
            AuthError::Unavailable("a TOTP secret does not open")
        })?;
    let totp = totp_rs::Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(TOTP_DIGITS)
        .with_step_duration(TOTP_STEP_SECS)
        .with_skew(1)
        .with_secret(Secret::new(secret.to_vec().into_boxed_slice()))
        .build_noncompliant();
    Ok(totp.check(code, at))
}

/// Seals a new TOTP secret for factor `id` as `MfaFactor::secret_enc` holds it (tests and
/// benchmarks build factors with it).
///
/// Errors: `Internal`.
pub fn seal_totp_secret(
    master: &crate::keys::MasterKey,
    id: Uuid,
    secret: &[u8],
) -> Result<Vec<u8>, AuthError> {
    master
        .seal(&seal_label(id), secret)
        .map_err(|e| AuthError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1, truncated to 6 digits.
    #[test]
    fn totp_matches_the_rfc_6238_vectors() {
        let totp = totp_rs::Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(8)
            .with_step_duration(30)
            .with_skew(0)
            .with_secret(Secret::new(
                b"12345678901234567890".to_vec().into_boxed_slice(),
            ))
            .with_account_name("a")
            .build_noncompliant();
        for (t, code) in [
            (59u64, "94287082"),
            (1111111109, "07081804"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
        ] {
            assert_eq!(totp.generate(t).to_string(), code);
        }
    }

    /// A secret sealed under a master key the server no longer has (a wrong key, a missed
    /// step of a rotation): 503, as when no signing key opens, not a 500 or a wrong code.
    #[test]
    fn a_secret_no_configured_key_opens_is_unavailable() {
        use crate::keys::MasterKey;
        let key = || MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap();
        let (sealed_under, configured) = (key(), key());
        let id = Uuid::now_v7();
        let sealed = seal_totp_secret(&sealed_under, id, b"12345678901234567890").unwrap();
        let f = MfaFactor::new_totp(id, Uuid::now_v7(), "phone".into(), sealed, 1);
        assert!(matches!(
            totp_step(&configured, &f, "123456", 59),
            Err(AuthError::Unavailable(_))
        ));
        assert!(totp_step(&sealed_under, &f, "287082", 59)
            .unwrap()
            .is_some());
    }

    #[test]
    fn recovery_codes_are_random_and_normalised() {
        let a = new_recovery_codes().unwrap();
        let b = new_recovery_codes().unwrap();
        assert_eq!(a.len(), 10);
        assert_ne!(a[0].expose_secret(), b[0].expose_secret());
        let code = a[0].expose_secret();
        assert_eq!(code.len(), 19);
        let user = Uuid::now_v7();
        assert_eq!(
            recovery_digest(user, code),
            recovery_digest(user, &code.replace('-', " ").to_uppercase())
        );
        assert_ne!(
            recovery_digest(user, code),
            recovery_digest(Uuid::now_v7(), code)
        );
    }
}
