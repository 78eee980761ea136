//! One typed settings tree.
//!
//! Layers, later ones winning: built-in defaults, then `config/default.toml` (embedded in the
//! binary, so the reference file and the defaults cannot drift), then an optional `--config`
//! file, then `TESSERA__SECTION__KEY` environment variables, then `DATABASE_URL`. Secrets are
//! `SecretString`, so a `Debug` of the settings never prints them; every secret can also be read
//! from a file (`*_file` keys), for container secrets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The reference configuration, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub tokens: TokenSettings,
    pub sessions: SessionSettings,
    pub keys: KeySettings,
    pub password: PasswordSettings,
    pub throttle: ThrottleSettings,
    pub revocation: RevocationSettings,
    pub log: LogSettings,
    /// OAuth clients allowed to authenticate (introspection, the revocation feed, `/token`).
    #[serde(default)]
    pub clients: Vec<ClientSettings>,
}

/// A confidential client (`[[clients]]` in a config file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    pub id: String,
    #[serde(default)]
    pub secret: Option<SecretString>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub bind: String,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    pub body_limit: usize,
    pub max_header_bytes: usize,
    /// Browser origins allowed to call Tessera (CORS, with credentials); empty: none.
    #[serde(default)]
    pub cors_origins: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// May carry a password, hence secret.
    pub url: SecretString,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    #[serde(with = "humantime_serde")]
    pub access_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    pub client_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    #[serde(with = "humantime_serde")]
    pub idle_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub absolute_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub reuse_grace: Duration,
    pub refresh_cookie: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    pub algorithm: String,
    #[serde(with = "humantime_serde")]
    pub jwks_max_age: Duration,
    #[serde(default, with = "humantime_serde::option")]
    pub publish_ahead: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub rotate_every: Duration,
    pub rsa_bits: u32,
    #[serde(default)]
    pub master_key: Option<SecretString>,
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSettings {
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    pub max_concurrency: usize,
    pub max_queue: usize,
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// While hashing, yield the CPU this often (0: never); see `auth::password`.
    #[serde(with = "humantime_serde")]
    pub yield_every: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleSettings {
    pub account_free_failures: u32,
    pub ip_free_failures: u32,
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl ThrottleSettings {
    /// False when both allowances are 0 (throttling off).
    pub fn enabled(&self) -> bool {
        self.account_free_failures > 0 || self.ip_free_failures > 0
    }
}

/// The in-memory revocation state (see `auth::revocation`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationSettings {
    pub cache: bool,
    #[serde(with = "humantime_serde")]
    pub max_lag: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A configuration that cannot be used, with the key and source named.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

impl Settings {
    /// Loads the layered configuration from the process environment.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_figment(Self::figment(config_file))
    }

    /// The layered figment, before extraction. Tests add their own layers on top.
    pub fn figment(config_file: Option<&Path>) -> Figment {
        let mut fig = Figment::new().merge(Toml::string(DEFAULT_TOML));
        if let Some(path) = config_file {
            fig = fig.merge(Toml::file_exact(path));
        }
        // Unknown variables are left out here and reported by `unknown_env_keys`, rather than
        // failing extraction; unknown keys in TOML files do fail.
        fig.merge(
            Env::prefixed("TESSERA__")
                .filter(|k| is_known(k.as_str()))
                .split("__"),
        )
        .merge(
            Env::raw()
                .only(&["DATABASE_URL"])
                .map(|_| "database.url".into()),
        )
    }

    /// Extracts and validates the settings, and resolves `*_file` secrets.
    pub fn from_figment(fig: Figment) -> Result<Self, ConfigError> {
        let mut s: Settings = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
        if let Some(path) = s.database.url_file.clone() {
            s.database.url = read_secret_file(&path)?;
        }
        if let Some(path) = s.keys.master_key_file.clone() {
            s.keys.master_key = Some(read_secret_file(&path)?);
        }
        for c in &mut s.clients {
            if let Some(path) = c.secret_file.clone() {
                c.secret = Some(read_secret_file(&path)?);
            }
        }
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: &str| Err(ConfigError(m.to_string()));
        if !matches!(self.keys.algorithm.as_str(), "ES256" | "EdDSA" | "RS256") {
            return err("keys.algorithm must be ES256, EdDSA or RS256");
        }
        if self.publish_ahead() < self.keys.jwks_max_age {
            // Invariant 3: verifiers may cache the JWKS for jwks_max_age; a key that signed
            // sooner after publication could be unknown to them.
            return err("keys.publish_ahead must be at least keys.jwks_max_age");
        }
        if !matches!(self.keys.rsa_bits, 2048 | 3072) {
            return err("keys.rsa_bits must be 2048 or 3072");
        }
        if self.password.yield_every > Duration::from_millis(100) {
            return err("password.yield_every must be at most 100ms (0s turns it off)");
        }
        if self.revocation.max_lag < Duration::from_millis(100)
            || self.revocation.max_lag > Duration::from_secs(60)
        {
            return err("revocation.max_lag must be between 100ms and 60s");
        }
        if self.tokens.access_ttl < Duration::from_secs(1) {
            return err("tokens.access_ttl must be at least 1s");
        }
        if self.sessions.idle_ttl.is_zero() || self.sessions.absolute_ttl.is_zero() {
            return err("sessions.idle_ttl and sessions.absolute_ttl must be positive");
        }
        if self.password.m_cost < 19456 || self.password.t_cost < 2 || self.password.p_cost < 1 {
            // OWASP's minimum for argon2id. Lower values are refused rather than silently used.
            return err(
                "password parameters below the OWASP minimum (m_cost=19456, t_cost=2, p_cost=1)",
            );
        }
        if self.http.body_limit == 0 || self.http.max_header_bytes < 8192 {
            return err("http.body_limit must be positive and http.max_header_bytes at least 8192");
        }
        for o in &self.http.cors_origins {
            let ok = (o.starts_with("https://") || o.starts_with("http://"))
                && !o.ends_with('/')
                && axum::http::HeaderValue::from_str(o).is_ok();
            if !ok {
                return err("http.cors_origins entries must be origins like \"https://app.example.com\" (no path, no '*')");
            }
        }
        if self.tokens.issuer.is_empty() || self.tokens.audience.is_empty() {
            return err("tokens.issuer and tokens.audience must not be empty");
        }
        let mut ids = std::collections::HashSet::new();
        for c in &self.clients {
            if c.id.is_empty() || c.id.contains(':') || !ids.insert(c.id.as_str()) {
                return err("every [[clients]] entry needs a unique, non-empty id without ':'");
            }
            if c.id == self.tokens.client_id {
                return err("a [[clients]] id must differ from tokens.client_id (the public first-party client)");
            }
            match &c.secret {
                Some(s) if s.expose_secret().len() >= 16 => {}
                _ => return err("every [[clients]] entry needs a secret (or secret_file) of at least 16 characters"),
            }
        }
        Ok(())
    }

    /// The time a new key is published before it signs (`keys.publish_ahead`, defaulting to the
    /// JWKS cache lifetime).
    pub fn publish_ahead(&self) -> Duration {
        self.keys.publish_ahead.unwrap_or(self.keys.jwks_max_age)
    }

    /// True when the configured database is SQLite.
    pub fn is_sqlite(&self) -> bool {
        self.database.url.expose_secret().starts_with("sqlite:")
    }
}

fn read_secret_file(path: &Path) -> Result<SecretString, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| SecretString::from(s.trim().to_string()))
        .map_err(|e| ConfigError(format!("cannot read secret file {}: {e}", path.display())))
}

fn is_known(key: &str) -> bool {
    KNOWN.contains(&key.to_ascii_uppercase().as_str())
}

/// Every setting that can come from a `TESSERA__` environment variable.
const KNOWN: &[&str] = &[
    "HTTP__BIND",
    "HTTP__REQUEST_TIMEOUT",
    "HTTP__HEADER_READ_TIMEOUT",
    "HTTP__BODY_LIMIT",
    "HTTP__MAX_HEADER_BYTES",
    "HTTP__CORS_ORIGINS",
    "DATABASE__URL",
    "DATABASE__URL_FILE",
    "DATABASE__MAX_CONNECTIONS",
    "DATABASE__ACQUIRE_TIMEOUT",
    "TOKENS__ISSUER",
    "TOKENS__AUDIENCE",
    "TOKENS__ACCESS_TTL",
    "TOKENS__LEEWAY",
    "TOKENS__CLIENT_ID",
    "SESSIONS__IDLE_TTL",
    "SESSIONS__ABSOLUTE_TTL",
    "SESSIONS__REUSE_GRACE",
    "SESSIONS__REFRESH_COOKIE",
    "KEYS__ALGORITHM",
    "KEYS__JWKS_MAX_AGE",
    "KEYS__PUBLISH_AHEAD",
    "KEYS__ROTATE_EVERY",
    "KEYS__RSA_BITS",
    "KEYS__MASTER_KEY",
    "KEYS__MASTER_KEY_FILE",
    "PASSWORD__M_COST",
    "PASSWORD__T_COST",
    "PASSWORD__P_COST",
    "PASSWORD__MAX_CONCURRENCY",
    "PASSWORD__MAX_QUEUE",
    "PASSWORD__QUEUE_TIMEOUT",
    "THROTTLE__ACCOUNT_FREE_FAILURES",
    "THROTTLE__IP_FREE_FAILURES",
    "THROTTLE__BACKOFF_BASE",
    "THROTTLE__BACKOFF_MAX",
    "THROTTLE__WINDOW",
    "LOG__FORMAT",
    "LOG__LEVEL",
];

/// Names `TESSERA__` environment variables that do not match any setting. They are ignored
/// (and reported at start-up), so a typo never silently becomes a default.
pub fn unknown_env_keys() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter_map(|k| k.strip_prefix("TESSERA__").map(str::to_string))
        .filter(|k| !is_known(k))
        .map(|k| format!("TESSERA__{k}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::Serialized;

    #[test]
    fn defaults_match_the_operator_table() {
        let s = Settings::from_figment(Settings::figment(None).merge(Serialized::default(
            "database.url",
            "sqlite://data/tessera.db",
        )))
        .unwrap();
        assert_eq!(s.http.bind, "127.0.0.1:8080");
        assert_eq!(s.tokens.issuer, "http://127.0.0.1:8080");
        assert_eq!(s.tokens.audience, "tessera");
        assert_eq!(s.tokens.access_ttl, Duration::from_secs(600));
        assert_eq!(s.tokens.leeway, Duration::from_secs(10));
        assert_eq!(s.sessions.idle_ttl, Duration::from_secs(7 * 86400));
        assert_eq!(s.sessions.absolute_ttl, Duration::from_secs(30 * 86400));
        assert_eq!(s.sessions.reuse_grace, Duration::from_secs(10));
        assert_eq!(s.keys.algorithm, "ES256");
        assert_eq!(s.keys.jwks_max_age, Duration::from_secs(300));
        assert_eq!(s.publish_ahead(), Duration::from_secs(300));
        assert_eq!(s.keys.rotate_every, Duration::from_secs(30 * 86400));
        assert_eq!(
            (s.password.m_cost, s.password.t_cost, s.password.p_cost),
            (19456, 2, 1)
        );
        assert!(s.is_sqlite());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Settings::from_figment(
            Settings::figment(None)
                .merge(Serialized::default(
                    "database.url",
                    "postgres://u:hunter2@db/x",
                ))
                .merge(Serialized::default(
                    "keys.master_key",
                    "c2VjcmV0LW1hc3Rlci1rZXk=",
                )),
        )
        .unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("hunter2"));
        assert!(!dbg.contains("c2VjcmV0LW1hc3Rlci1rZXk="));
    }

    #[test]
    fn keys_cannot_sign_before_caches_expire() {
        let r = Settings::from_figment(
            Settings::figment(None)
                .merge(Serialized::default("keys.jwks_max_age", "5m"))
                .merge(Serialized::default("keys.publish_ahead", "1m")),
        );
        assert!(r.is_err());
    }

    #[test]
    fn weak_password_parameters_are_refused() {
        let r = Settings::from_figment(
            Settings::figment(None).merge(Serialized::default("password.m_cost", 1024)),
        );
        assert!(r.is_err());
    }
}
