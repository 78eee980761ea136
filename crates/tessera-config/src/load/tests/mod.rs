//! figment's Jail closures return figment's own error.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use figment::Jail;
use secrecy::ExposeSecret;

use super::*;
use crate::KeyAlg;

mod refused;

/// Settings from the defaults and the (jailed) environment.
fn load(jail: &Jail) -> Result<Settings, ConfigError> {
    let _ = jail;
    Settings::load(None)
}

#[test]
fn defaults_match_the_operator_table() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let s = load(jail).unwrap();
        assert_eq!(s.http.bind, "127.0.0.1:8080");
        assert_eq!(s.tokens.issuer, "http://127.0.0.1:8080");
        assert_eq!(s.tokens.audience, "tessera");
        assert_eq!(s.tokens.access_ttl, Duration::from_secs(600));
        assert_eq!(s.tokens.leeway, Duration::from_secs(10));
        assert_eq!(s.sessions.idle_ttl, Duration::from_secs(7 * 86400));
        assert_eq!(s.sessions.absolute_ttl, Duration::from_secs(30 * 86400));
        assert_eq!(s.sessions.reuse_grace, Duration::from_secs(10));
        assert_eq!(s.keys.algorithm, KeyAlg::Es256);
        assert_eq!(s.keys.jwks_max_age, Duration::from_secs(300));
        assert_eq!(s.publish_ahead(), Duration::from_secs(300));
        assert_eq!(s.keys.rotate_every, Duration::from_secs(30 * 86400));
        assert_eq!(s.token_horizon(), Duration::from_secs(610));
        assert_eq!(
            (s.password.m_cost, s.password.t_cost, s.password.p_cost),
            (19456, 2, 1)
        );
        assert!(s.is_sqlite());
        Ok(())
    });
}

/// Every key of `config/default.toml`, a value other than its default, and what the
/// settings tree must then hold (as serialised). A key added to the file without a row
/// here fails the test.
const EVERY_KEY: &[(&str, &str, &str)] = &[
    ("http.bind", "0.0.0.0:9999", r#""0.0.0.0:9999""#),
    ("http.request_timeout", "7s", r#""7s""#),
    ("http.header_read_timeout", "3s", r#""3s""#),
    ("http.shutdown_grace", "7s", r#""7s""#),
    ("http.body_limit", "4096", "4096"),
    ("http.max_header_bytes", "9000", "9000"),
    (
        "http.cors_origins",
        r#"["https://app.example"]"#,
        r#"["https://app.example"]"#,
    ),
    (
        "http.trusted_proxies",
        r#"["10.0.0.0/8"]"#,
        r#"["10.0.0.0/8"]"#,
    ),
    ("http.forwarded_header", "forwarded", r#""forwarded""#),
    (
        "database.url",
        "postgres://db.example/tessera",
        r#""[REDACTED]""#,
    ),
    ("database.max_connections", "7", "7"),
    ("database.acquire_timeout", "2s", r#""2s""#),
    (
        "tokens.issuer",
        "https://auth.example",
        r#""https://auth.example""#,
    ),
    ("tokens.audience", "orders", r#""orders""#),
    ("tokens.access_ttl", "5m", r#""5m""#),
    ("tokens.leeway", "3s", r#""3s""#),
    ("tokens.client_id", "web", r#""web""#),
    ("tokens.scopes", r#"["profile"]"#, r#"["profile"]"#),
    ("tokens.verified_cache", "100", "100"),
    ("sessions.idle_ttl", "2d", r#""2days""#),
    ("sessions.absolute_ttl", "9d", r#""9days""#),
    ("sessions.reuse_grace", "4s", r#""4s""#),
    ("sessions.refresh_cookie", "true", "true"),
    ("keys.algorithm", "EdDSA", r#""EdDSA""#),
    ("keys.jwks_max_age", "2m", r#""2m""#),
    ("keys.rotate_every", "0s", r#""0s""#),
    ("keys.rsa_bits", "3072", "3072"),
    ("password.min_length", "12", "12"),
    ("password.min_score", "3", "3"),
    ("password.m_cost", "20000", "20000"),
    ("password.t_cost", "3", "3"),
    ("password.p_cost", "2", "2"),
    ("password.max_concurrency", "3", "3"),
    ("password.max_queue", "9", "9"),
    ("password.queue_timeout", "1s", r#""1s""#),
    ("password.yield_every", "2ms", r#""2ms""#),
    ("password.max_bcrypt_cost", "12", "12"),
    ("password.max_pbkdf2_iterations", "900000", "900000"),
    ("password.max_argon2_m_cost", "65536", "65536"),
    ("password.max_argon2_t_cost", "8", "8"),
    ("throttle.account_free_failures", "8", "8"),
    ("throttle.ip_free_failures", "0", "0"),
    ("throttle.backoff_base", "2s", r#""2s""#),
    ("throttle.backoff_max", "1h", r#""1h""#),
    ("throttle.window", "30m", r#""30m""#),
    ("throttle.device_requests", "3", "3"),
    ("throttle.device_window", "1h", r#""1h""#),
    ("revocation.cache", "false", "false"),
    ("revocation.max_lag", "5s", r#""5s""#),
    ("audit.retention", "30d", r#""30days""#),
    ("audit.store_refreshes", "true", "true"),
    (
        "keys.previous_master_keys",
        "c2VjcmV0LW1hc3Rlci1rZXk=",
        r#""[REDACTED]""#,
    ),
    ("sso.idle_ttl", "2h", r#""2h""#),
    ("sso.absolute_ttl", "3d", r#""3days""#),
    ("mfa.token_ttl", "2m", r#""2m""#),
    ("mfa.totp_issuer", "Acme", r#""Acme""#),
    ("mfa.reauth_within", "10m", r#""10m""#),
    ("mfa.required_for_roles", r#"["admin"]"#, r#"["admin"]"#),
    ("mfa.enrol_grace", "3d", r#""3days""#),
    (
        "mail.from",
        "Acme <no-reply@example.com>",
        r#""Acme <no-reply@example.com>""#,
    ),
    ("mail.max_attempts", "3", "3"),
    ("mail.retry_base", "1s", r#""1s""#),
    (
        "accounts.link_base",
        "https://app.example.com/reset",
        r#""https://app.example.com/reset""#,
    ),
    ("accounts.reset_ttl", "10m", r#""10m""#),
    ("accounts.signup", "open", r#""open""#),
    (
        "accounts.email_domains",
        r#"["example.com"]"#,
        r#"["example.com"]"#,
    ),
    ("accounts.require_verified_email", "true", "true"),
    ("accounts.verify_ttl", "2h", r#""2h""#),
    ("accounts.invite_ttl", "3d", r#""3days""#),
    ("accounts.ip_requests", "5", "5"),
    ("accounts.ip_window", "1h", r#""1h""#),
    ("webauthn.rp_id", "example.com", r#""example.com""#),
    ("webauthn.rp_name", "Acme", r#""Acme""#),
    (
        "webauthn.origins",
        r#"["https://login.example.com"]"#,
        r#"["https://login.example.com"]"#,
    ),
    ("webauthn.user_verification", "required", r#""required""#),
    ("webauthn.ceremony_ttl", "2m", r#""2m""#),
    ("log.format", "json", r#""json""#),
    ("log.level", "debug", r#""debug""#),
];

fn default_toml_keys() -> Vec<String> {
    let tree: Value = Figment::from(Toml::string(DEFAULT_TOML)).extract().unwrap();
    let Value::Dict(_, sections) = tree else {
        panic!("default.toml is a table")
    };
    let mut keys = Vec::new();
    for (section, table) in sections {
        let Value::Dict(_, table) = table else {
            panic!("{section} is a table")
        };
        keys.extend(table.keys().map(|k| format!("{section}.{k}")));
    }
    keys.sort();
    keys
}

#[test]
fn every_key_of_default_toml_can_be_set_from_the_environment() {
    let mut covered: Vec<String> = EVERY_KEY.iter().map(|(k, _, _)| k.to_string()).collect();
    covered.sort();
    assert_eq!(
        covered,
        default_toml_keys(),
        "EVERY_KEY and default.toml differ"
    );
    Jail::expect_with(|jail| {
        jail.clear_env();
        for (key, value, _) in EVERY_KEY {
            let var = format!("TESSERA__{}", key.to_ascii_uppercase().replace('.', "__"));
            jail.set_env(var, value);
        }
        assert_eq!(unknown_env_keys(), Vec::<String>::new());
        let s = load(jail).unwrap();
        let tree = serde_json::to_value(&s).unwrap();
        for (key, _, expected) in EVERY_KEY {
            let (section, name) = key.split_once('.').unwrap();
            let expected: serde_json::Value = serde_json::from_str(expected).unwrap();
            assert_eq!(tree[section][name], expected, "{key} did not land");
        }
        // The three that were once dropped at start-up, read back typed.
        assert_eq!(s.password.yield_every, Duration::from_millis(2));
        assert!(!s.revocation.cache);
        assert_eq!(s.revocation.max_lag, Duration::from_secs(5));
        assert_eq!(
            s.database.url.expose_secret(),
            "postgres://db.example/tessera"
        );
        Ok(())
    });
}

#[test]
fn a_typo_is_reported_and_ignored() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("TESSERA__HTTP__BINDD", "0.0.0.0:1");
        jail.set_env("TESSERA__KEYS__PUBLISH_AHEAD", "10m");
        assert_eq!(unknown_env_keys(), vec!["TESSERA__HTTP__BINDD".to_string()]);
        let s = load(jail).unwrap();
        assert_eq!(s.http.bind, "127.0.0.1:8080");
        assert_eq!(s.publish_ahead(), Duration::from_secs(600));
        Ok(())
    });
}

#[test]
fn any_secret_can_come_from_a_file() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file("master", "c2VjcmV0LW1hc3Rlci1rZXk=\n")?;
        jail.create_file("db", "postgres://u:hunter2@db/x\n")?;
        jail.create_file("client", "  a-client-secret-of-32-chars  \n")?;
        jail.create_file(
            "extra.toml",
            "[[clients]]\nid = \"orders\"\nsecret_file = \"client\"\n",
        )?;
        jail.set_env("TESSERA__KEYS__MASTER_KEY_FILE", "master");
        jail.set_env("TESSERA__DATABASE__URL_FILE", "db");
        assert_eq!(unknown_env_keys(), Vec::<String>::new());
        let s = Settings::load(Some(Path::new("extra.toml"))).unwrap();
        let master = s.keys.master_key.as_ref().unwrap();
        assert_eq!(master.expose_secret(), "c2VjcmV0LW1hc3Rlci1rZXk=");
        assert_eq!(s.database.url.expose_secret(), "postgres://u:hunter2@db/x");
        let secret = s.clients[0].secret.as_ref().unwrap();
        assert_eq!(secret.expose_secret(), "a-client-secret-of-32-chars");
        // Secrets never print, not in Debug and not in the serialised tree.
        let shown = format!("{s:?} {}", serde_json::to_string(&s).unwrap());
        for secret in ["hunter2", "c2VjcmV0LW1hc3Rlci1rZXk=", "a-client-secret"] {
            assert!(!shown.contains(secret), "{secret} printed");
        }
        // A missing file is an error that names the key.
        jail.set_env("TESSERA__KEYS__MASTER_KEY_FILE", "nowhere");
        let e = load(jail).unwrap_err().to_string();
        assert!(e.contains("master_key_file"), "{e}");
        Ok(())
    });
}
