//! The claims of an access token (RFC 9068 §2.2, plus Tessera's `sid` and `roles`).
//!
//! One type for both directions: the server serialises it when it signs (borrowing what it
//! already holds), and verifiers deserialise it (owning everything: [`Claims`]). Field types
//! are part of verification: a string `exp`, a fractional `iat` or a numeric `sub` fails to
//! deserialize, and the token is refused. Times are JWT NumericDates: whole seconds since the
//! Unix epoch.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The claims of an access token. Serialised, the members come in this order, `aud` is a
/// string when there is one audience, and `scope` is left out when none was granted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims<'a> {
    /// The issuer (`tokens.issuer`).
    pub iss: Cow<'a, str>,
    /// The user's id (a UUID in Tessera).
    pub sub: Cow<'a, str>,
    /// The audiences (RFC 7519 §4.1.3: one string, or an array), in the form signed.
    pub aud: Audience<'a>,
    /// Expiry (RFC 7519 §4.1.4), Unix seconds.
    pub exp: i64,
    /// Issuance (RFC 7519 §4.1.6), Unix seconds.
    pub iat: i64,
    /// Not before (RFC 7519 §4.1.5), Unix seconds.
    pub nbf: i64,
    /// The token's own id: a UUIDv7 whose timestamp is the issuance to the millisecond. The
    /// revocation feed lists revoked ones.
    pub jti: Cow<'a, str>,
    /// The session (refresh-token family) the token was issued from.
    pub sid: Cow<'a, str>,
    /// The OAuth client the token was issued to. RFC 9068 §2.2 requires it, and every token
    /// Tessera issues has it; verifiers refuse a token without it (`tessera-verify` does),
    /// while Tessera's own endpoints read it as optional, as they always have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Cow<'a, str>>,
    /// The granted scope, space-separated (RFC 9068 §2.2.3), when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Cow<'a, str>>,
    /// How the user authenticated for the session the token comes from (RFC 8176 §2):
    /// `["pwd"]` for a password, `["pwd","otp","mfa"]` with a TOTP code, `["pwd","mfa"]` with
    /// a recovery code. A refresh keeps the login's methods; it never adds any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<Cow<'a, str>>>,
    /// The authentication context class (OIDC Core §2), one of `acr::PASSWORD` ("1"),
    /// `acr::MFA` ("2") and `acr::PHISHING_RESISTANT` ("3"), from `amr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<Cow<'a, str>>,
    /// The user's roles.
    #[serde(default)]
    pub roles: Cow<'a, [String]>,
    /// Every other claim: the user's custom claims (and `username`), as JSON.
    #[serde(flatten)]
    pub custom: Map<String, Value>,
}

/// The `acr` values Tessera issues (OIDC Core §2), ordered by strength: a verifier that
/// requires one accepts it and every stronger one.
pub mod acr {
    /// A password alone.
    pub const PASSWORD: &str = "1";
    /// A password and a second factor (TOTP or a recovery code).
    pub const MFA: &str = "2";
    /// Multi-factor with a phishing-resistant authenticator: a passkey with user verification
    /// (`hwk` or `swk`, with `user`), alone or after a password.
    pub const PHISHING_RESISTANT: &str = "3";

    /// Whether a login with these RFC 8176 methods had more than one factor (`mfa`): what
    /// `mfa.required_for_roles`, the admin API and `RequireAmr("mfa")` ask for.
    pub fn is_multi_factor<'a>(amr: impl IntoIterator<Item = &'a str>) -> bool {
        amr.into_iter().any(|m| m == "mfa")
    }

    /// The `acr` of a login with these RFC 8176 methods.
    pub fn from_amr<'a>(amr: impl IntoIterator<Item = &'a str>) -> &'static str {
        let methods: Vec<&str> = amr.into_iter().collect();
        let has = |m: &str| methods.contains(&m);
        match (
            is_multi_factor(methods.iter().copied()),
            (has("hwk") || has("swk")) && has("user"),
        ) {
            (true, true) => PHISHING_RESISTANT,
            (true, false) => MFA,
            (false, _) => PASSWORD,
        }
    }

    /// Whether `acr` is at least as strong as `required` (both Tessera values).
    pub fn satisfies(acr: Option<&str>, required: &str) -> bool {
        let rank = |v: &str| {
            [PASSWORD, MFA, PHISHING_RESISTANT]
                .iter()
                .position(|x| *x == v)
        };
        match (acr.and_then(rank), rank(required)) {
            (Some(have), Some(need)) => have >= need,
            _ => false,
        }
    }
}

/// The claims of a verified token, owned.
pub type Claims = AccessClaims<'static>;

impl AccessClaims<'_> {
    /// Whether the user has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// The granted scopes (RFC 6749 §3.3), in order.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.as_deref().unwrap_or("").split_ascii_whitespace()
    }

    /// When the token was issued, in milliseconds: from the UUIDv7 `jti` when it lies within
    /// the `iat` second, otherwise the start of that second (which refuses the token when a
    /// cut-off fell in the same second: the safe side). Per-user cut-offs compare against
    /// this.
    pub fn issued_at_ms(&self) -> i64 {
        let second = self.iat.saturating_mul(1000);
        uuid::Uuid::parse_str(&self.jti)
            .ok()
            .filter(|u| u.get_version_num() == 7)
            .and_then(|u| u.get_timestamp())
            .map(|ts| {
                let (s, n) = ts.to_unix();
                (s as i64).saturating_mul(1000) + i64::from(n / 1_000_000)
            })
            .filter(|ms| (second..second + 1000).contains(ms))
            .unwrap_or(second)
    }
}

/// `aud` (RFC 7519 §4.1.3): one string, or an array of strings. Kept in the form it was
/// signed in, so that it is echoed as it was (introspection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience<'a> {
    /// `"aud": "api"`: what Tessera signs.
    One(Cow<'a, str>),
    /// `"aud": ["a", "b"]`.
    Many(Vec<String>),
}

impl Audience<'_> {
    /// The audiences, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many) = match self {
            Audience::One(a) => (Some(a.as_ref()), None),
            Audience::Many(v) => (None, Some(v.iter().map(String::as_str))),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Whether `aud` is among them.
    pub fn contains(&self, aud: &str) -> bool {
        self.iter().any(|a| a == aud)
    }

    /// The same audiences, owned.
    pub fn into_owned(self) -> Audience<'static> {
        match self {
            Audience::One(a) => Audience::One(Cow::Owned(a.into_owned())),
            Audience::Many(v) => Audience::Many(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: Value) -> Result<Claims, serde_json::Error> {
        serde_json::from_value(v)
    }

    fn base() -> Value {
        serde_json::json!({
            "iss": "https://auth.example", "sub": "u", "aud": "api", "exp": 20, "iat": 10,
            "nbf": 10, "jti": "j", "sid": "s", "client_id": "tessera", "roles": ["admin"],
            "tenant": "acme"
        })
    }

    #[test]
    fn audience_is_one_or_many_and_custom_claims_are_kept() {
        let c = claims(base()).unwrap();
        assert_eq!(c.aud, Audience::One("api".into()));
        assert!(c.aud.contains("api") && !c.aud.contains("ap"));
        assert_eq!(c.custom.get("tenant"), Some(&Value::from("acme")));
        assert!(c.has_role("admin") && !c.has_role("Admin"));
        let mut v = base();
        v["aud"] = serde_json::json!(["a", "api"]);
        let many = claims(v).unwrap().aud;
        assert_eq!(many.iter().collect::<Vec<_>>(), vec!["a", "api"]);
        assert_eq!(
            serde_json::to_value(&many).unwrap(),
            serde_json::json!(["a", "api"])
        );
    }

    #[test]
    fn the_server_writes_what_verifiers_read() {
        let roles = vec!["admin".to_string()];
        let mut custom = Map::new();
        custom.insert("tenant".into(), Value::from("acme"));
        let signed = AccessClaims {
            iss: "https://auth.example".into(),
            sub: "u".into(),
            aud: Audience::One("api".into()),
            exp: 20,
            iat: 10,
            nbf: 10,
            jti: "j".into(),
            sid: "s".into(),
            client_id: Some("tessera".into()),
            scope: None,
            amr: None,
            acr: None,
            roles: Cow::Borrowed(&roles),
            custom,
        };
        let json = serde_json::to_string(&signed).unwrap();
        assert_eq!(
            json,
            r#"{"iss":"https://auth.example","sub":"u","aud":"api","exp":20,"iat":10,"nbf":10,"jti":"j","sid":"s","client_id":"tessera","roles":["admin"],"tenant":"acme"}"#
        );
        assert_eq!(serde_json::from_str::<Claims>(&json).unwrap(), signed);
    }

    #[test]
    fn wrong_json_types_are_refused() {
        for (k, bad) in [
            ("exp", Value::from("20")),
            ("iat", Value::from(1.5)),
            ("sub", Value::from(7)),
            ("roles", Value::from("admin")),
            ("aud", Value::from(3)),
        ] {
            let mut v = base();
            v[k] = bad;
            assert!(claims(v).is_err(), "{k}");
        }
        for k in ["sid", "jti", "sub"] {
            let mut v = base();
            v.as_object_mut().unwrap().remove(k);
            assert!(claims(v).is_err(), "without {k}");
        }
        // Optional on the wire type (Tessera's endpoints have always read it so); verifiers
        // refuse a token without it.
        let mut v = base();
        v.as_object_mut().unwrap().remove("client_id");
        assert_eq!(claims(v).unwrap().client_id, None);
    }

    #[test]
    fn issuance_time_comes_from_a_uuid7_jti_within_the_iat_second() {
        let mut v = base();
        // 2025-01-01T00:00:00.250Z as a UUIDv7.
        let ms: u64 = 1_735_689_600_250;
        let id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            ms / 1000,
            ((ms % 1000) * 1_000_000) as u32,
        ));
        v["jti"] = Value::from(id.to_string());
        v["iat"] = Value::from(1_735_689_600);
        assert_eq!(claims(v.clone()).unwrap().issued_at_ms(), ms as i64);
        // A jti from another second is not believed: iat decides.
        v["iat"] = Value::from(1_735_689_700);
        assert_eq!(claims(v).unwrap().issued_at_ms(), 1_735_689_700_000);
        assert_eq!(claims(base()).unwrap().issued_at_ms(), 10_000);
    }
}
