//! Tests of `formats`: vectors from independent implementations, and refusals.
use super::*;

const PW: &[u8] = b"correct horse battery staple";

fn imported(input: &str) -> String {
    import(input, &CostCaps::DEFAULTS).unwrap()
}

fn verifies(stored: &str, pw: &[u8]) -> bool {
    super::super::verify_blocking(pw, stored, &CostCaps::DEFAULTS)
}

/// Vectors made by Python's `bcrypt`, `hashlib.pbkdf2_hmac` and `passlib`: independent
/// implementations of each format.
#[test]
fn foreign_hashes_import_and_verify() {
    let cases = [
        "$2b$04$P7bxGvKUsUxbmhaJNqmqkevYTPNz0oun0HwDL84EMHMT5cIpjGA7.",
        "$2y$04$29N5RxMKofyI9lh/AjS78uGd6YDOO87WFseGL6aEpCT6bERCDkvpW",
        "pbkdf2_sha256$1000$saltysalt123$bdlERmmw+duuk5FecWFTVO0M81ggrAuyxRe4nczc3tw=",
        "$pbkdf2-sha256$1200$AAECAwQFBgcICQoLDA0ODw$cLVC0OlPTMXgGyBMMbYG/8206mrFiQxMhfuNGhvDUsM",
        "$pbkdf2-sha256$1100$19obI0RoLUUoxRjDOMc4hw$LOfBBJPa16Bi00Ls3W2DyERwXUIO3W1375i/B1qSwbE",
        r#"{"type": "password", "secretData": "{\"value\": \"jGblgNRVzfUznQAUNO6VBaWSuU2UFuJ2XYZghXbbFq1SZxd+SJ5ZiQBj4cQcqbx2ip0vzy2Z1owJO/kswdDqAg==\", \"salt\": \"ZGVmZ2hpamtsbW5vcHFycw==\", \"additionalParameters\": {}}", "credentialData": "{\"hashIterations\": 1300, \"algorithm\": \"pbkdf2-sha512\", \"additionalParameters\": {}}"}"#,
    ];
    for input in cases {
        let stored = imported(input);
        assert!(
            stored.starts_with("$2") || stored.starts_with("$pbkdf2-sha"),
            "{stored}"
        );
        assert!(verifies(&stored, PW), "{input} -> {stored}");
        assert!(
            !verifies(&stored, b"correct horse battery stapler"),
            "{input}"
        );
    }
    // Django's and passlib's forms become PHC strings.
    assert_eq!(
        imported("pbkdf2_sha256$1000$saltysalt123$bdlERmmw+duuk5FecWFTVO0M81ggrAuyxRe4nczc3tw="),
        "$pbkdf2-sha256$i=1000,l=32$c2FsdHlzYWx0MTIz$bdlERmmw+duuk5FecWFTVO0M81ggrAuyxRe4nczc3tw"
    );
}

#[test]
fn argon2_phc_and_keycloak_argon2() {
    let params = argon2::Params::new(8192, 3, 1, Some(32)).unwrap();
    for alg in [argon2::Algorithm::Argon2i, argon2::Algorithm::Argon2id] {
        use argon2::PasswordHasher;
        let phc = argon2::Argon2::new(alg, argon2::Version::V0x13, params.clone())
            .hash_password(PW)
            .unwrap()
            .to_string();
        assert_eq!(imported(&phc), phc);
        assert!(verifies(&phc, PW), "{phc}");
        assert!(!verifies(&phc, b"nope"), "{phc}");
        // The same hash as Keycloak exports it.
        let h = argon2::PasswordHash::new(&phc).unwrap();
        let kind = if alg == argon2::Algorithm::Argon2i {
            "i"
        } else {
            "id"
        };
        let cred = serde_json::json!({
            "type": "password",
            "secretData": serde_json::json!({
                "value": STANDARD.encode(h.hash.unwrap().as_bytes()),
                "salt": STANDARD.encode(h.salt.unwrap().as_ref()),
            }).to_string(),
            "credentialData": serde_json::json!({
                "hashIterations": 3, "algorithm": "argon2",
                "additionalParameters": {"hashLength": ["32"], "memory": ["8192"],
                    "type": [kind], "version": ["1.3"], "parallelism": ["1"]},
            }).to_string(),
        });
        let stored = imported(&cred.to_string());
        assert!(verifies(&stored, PW), "{stored}");
    }
}

#[test]
fn bad_and_costly_hashes_are_refused() {
    let refused = |input: &str| import(input, &CostCaps::DEFAULTS).unwrap_err();
    assert_eq!(refused("plaintext"), ImportError::Unrecognised);
    assert_eq!(refused("$2b$04$short"), ImportError::Malformed("bcrypt"));
    assert!(matches!(
        refused("$2x$04$P7bxGvKUsUxbmhaJNqmqkevYTPNz0oun0HwDL84EMHMT5cIpjGA7."),
        ImportError::Unsupported(_)
    ));
    // Over the caps: bcrypt 15, PBKDF2 3M iterations, argon2 512 MiB or 20 passes.
    let e = refused("$2b$15$P7bxGvKUsUxbmhaJNqmqkevYTPNz0oun0HwDL84EMHMT5cIpjGA7.");
    assert!(e.to_string().contains("password.max_bcrypt_cost"), "{e}");
    let e =
        refused("pbkdf2_sha256$3000000$saltysalt123$bdlERmmw+duuk5FecWFTVO0M81ggrAuyxRe4nczc3tw=");
    assert!(e.to_string().contains("max_pbkdf2_iterations"), "{e}");
    let e = refused(
        "$argon2id$v=19$m=524288,t=2,p=1$c2FsdHNhbHQ$bdlERmmw+duuk5FecWFTVO0M81ggrAuyxRe4nczc3tw",
    );
    assert!(e.to_string().contains("max_argon2_m_cost"), "{e}");
    let e = refused(
        "$argon2id$v=19$m=8192,t=20,p=1$c2FsdHNhbHQ$bdlERmmw+duuk5FecWFTVO0M81ggrAuyxRe4nczc3tw",
    );
    assert!(e.to_string().contains("max_argon2_t_cost"), "{e}");
    assert!(matches!(
        refused("pbkdf2_sha1$1000$salt$AAAA"),
        ImportError::Unsupported(_)
    ));
    assert!(matches!(refused("{not json"), ImportError::Malformed(_)));
    // A hash over a cap is not computed at login either, even if it reached the store.
    let costly = "$2b$15$P7bxGvKUsUxbmhaJNqmqkevYTPNz0oun0HwDL84EMHMT5cIpjGA7.";
    assert!(!verifies(costly, PW));
}
