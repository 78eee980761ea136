//! Settings refused at start-up: each error names the setting (or the client) and the rule.
#![allow(clippy::result_large_err)]

use figment::Jail;

use super::super::*;
use super::load;

#[test]
fn keys_cannot_sign_before_caches_expire() {
    let r = Settings::from_figment(
        Figment::from(Toml::string(DEFAULT_TOML))
            .merge(Serialized::default("keys.jwks_max_age", "5m"))
            .merge(Serialized::default("keys.publish_ahead", "1m")),
    );
    assert!(r.is_err());
}

#[test]
fn weak_password_parameters_are_refused() {
    let r = Settings::from_figment(
        Figment::from(Toml::string(DEFAULT_TOML))
            .merge(Serialized::default("password.m_cost", 1024)),
    );
    assert!(r.is_err());
}

#[test]
fn an_unknown_algorithm_names_the_setting() {
    let e = Settings::from_figment(
        Figment::from(Toml::string(DEFAULT_TOML))
            .merge(Serialized::default("keys.algorithm", "HS256")),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("keys.algorithm"), "{e}");
}

#[test]
fn a_bad_client_entry_names_the_client_and_the_rule() {
    let with = |client: serde_json::Value| {
        Settings::from_figment(
            Figment::from(Toml::string(DEFAULT_TOML))
                .merge(Serialized::default("clients", serde_json::json!([client]))),
        )
    };
    let secret = "a-client-secret-of-32-chars";
    for (client, rule) in [
        (
            serde_json::json!({"id": "spa", "public": true, "secret": secret}),
            "a public client has no secret",
        ),
        (
            serde_json::json!({"id": "spa", "public": true, "redirect_uris": ["https://a.example/cb#x"]}),
            "fragment",
        ),
        (
            serde_json::json!({"id": "spa", "public": true, "redirect_uris": ["http://a.example/cb"]}),
            "https, or http on a loopback host",
        ),
        (
            serde_json::json!({"id": "spa", "public": true, "redirect_uris": ["https://*.a.example/cb"]}),
            "wildcard",
        ),
        (
            serde_json::json!({"id": "spa", "public": true, "post_logout_redirect_uris": ["https://a.example/*"]}),
            "wildcard",
        ),
        (
            serde_json::json!({"id": "app", "secret": secret, "grant_types": ["implicit"]}),
            "unknown grant type",
        ),
        (
            serde_json::json!({"id": "app", "secret": secret, "grant_types": ["authorization_code"]}),
            "needs redirect_uris",
        ),
        (serde_json::json!({"id": "app"}), "needs a secret"),
    ] {
        let e = with(client.clone()).unwrap_err().to_string();
        let id = client["id"].as_str().unwrap();
        assert!(
            e.contains(&format!("\"{id}\"")) && e.contains(rule),
            "{client}: {e}"
        );
    }
    let ok = with(serde_json::json!({
        "id": "spa", "public": true, "first_party": true,
        "redirect_uris": ["https://a.example/cb", "http://127.0.0.1/cb"],
        "scopes": ["openid", "profile", "offline_access"]
    }))
    .unwrap();
    let spa = &ok.clients[0];
    assert!(spa.allows_grant("authorization_code") && spa.allows_grant("refresh_token"));
    assert!(!spa.allows_grant("password"));
}

#[test]
fn smtp_without_tls_only_reaches_loopback() {
    let with = |url: &str| {
        Settings::from_figment(
            Figment::from(Toml::string(DEFAULT_TOML))
                .merge(Serialized::default("mail.smtp_url", url)),
        )
    };
    for ok in [
        "smtp://127.0.0.1:2525",
        "smtp://localhost:25",
        "smtp://[::1]:25",
        "smtps://user:pass@smtp.example.com",
        "smtp://user:pass@smtp.example.com:587?tls=required",
    ] {
        assert!(with(ok).is_ok(), "{ok}");
    }
    for bad in [
        "smtp://smtp.example.com:25",
        "smtp://user:pass@smtp.example.com:587?tls=opportunistic",
        "http://smtp.example.com",
        "not a url",
    ] {
        let e = with(bad).unwrap_err().to_string();
        assert!(e.contains("mail.smtp_url"), "{bad}: {e}");
        // The URL's password is never in the error.
        assert!(!e.contains("pass@"), "{e}");
    }
}

/// Every endpoint's URL is built on the issuer: a query, a fragment, another scheme or no host
/// made discovery publish `https://id.example?x=1/token`. Refused at start-up, naming the key.
#[test]
fn an_issuer_that_is_not_a_plain_url_is_refused() {
    for bad in [
        "https://id.example?x=1",
        "https://id.example#top",
        "ftp://id.example",
        "https://user@id.example",
        "id.example",
        "https://",
    ] {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("TESSERA__TOKENS__ISSUER", bad);
            let e = load(jail).expect_err(bad).to_string();
            assert!(e.contains("tokens.issuer"), "{bad}: {e}");
            Ok(())
        });
    }
    for good in [
        "https://id.example",
        "https://id.example/",
        "https://id.example:8443/auth",
        "http://127.0.0.1:8080",
    ] {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("TESSERA__TOKENS__ISSUER", good);
            assert_eq!(load(jail).unwrap().tokens.issuer, good);
            Ok(())
        });
    }
}
