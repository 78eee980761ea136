//! One typed settings tree.
//!
//! Layers, later ones winning: built-in defaults, then `config/default.toml` (embedded in the
//! binary, so the reference file and the defaults cannot drift), then an optional `--config`
//! file, then `TESSERA__SECTION__KEY` environment variables, then `DATABASE_URL` (see `load`).
//! Secrets are `SecretString`, so a `Debug` of the settings never prints them; every setting can
//! also be read from a file (`<key>_file`), for container secrets.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod clients;
mod load;
mod validate;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

mod idp;
mod values;

pub use idp::{
    AccountSettings, MailSettings, MfaSettings, SsoSettings, UiSettings, WebauthnSettings,
};
pub use load::{known_env_keys, unknown_env_keys, ConfigError, DEFAULT_TOML};
pub use values::{KeyAlg, Origin, ProxyNet};

/// The whole configuration. `Serialize` exists so that the known keys can be derived from the
/// tree itself (`known_env_keys`); secrets serialise as a placeholder, never as their value.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    pub audit: AuditSettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    /// OAuth clients allowed to authenticate (introspection, the revocation feed, `/token`).
    #[serde(default)]
    pub clients: Vec<ClientSettings>,
    /// APIs a token can be asked for (RFC 8707 resource indicators); none: every token is for
    /// `tokens.audience`.
    #[serde(default)]
    pub resources: Vec<ResourceSettings>,
    /// The SSO session of the hosted login (`/authorize`).
    pub sso: SsoSettings,
    /// Second factors.
    pub mfa: MfaSettings,
    /// Passkeys (WebAuthn).
    pub webauthn: WebauthnSettings,
    /// Outgoing email (SMTP) and its outbox.
    pub mail: MailSettings,
    /// What users do with their own accounts by email (password reset).
    pub accounts: AccountSettings,
    /// The hosted pages' templates.
    #[serde(default)]
    pub ui: UiSettings,
}

/// `/metrics`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// When set, `/metrics` answers only requests with `Authorization: Bearer <this>`.
    #[serde(default, serialize_with = "redacted")]
    pub bearer_token: Option<SecretString>,
}

/// The audit trail (`auth::audit`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// Events older than this are purged.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Whether `token.refreshed` events are stored as rows too (they are always logged and
    /// counted). Off by default: a row per refresh costs `/refresh` throughput, on SQLite most.
    pub store_refreshes: bool,
}

/// An API that tokens can be minted for (`[[resources]]` in a config file).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSettings {
    /// The resource indicator (RFC 8707 §2), an absolute URI; tokens for it carry it as `aud`.
    pub id: String,
    /// The scopes that make sense for this API; a token for it carries no other.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// An OAuth client (`[[clients]]` in a config file): a confidential client with a secret
/// (introspection, the revocation feed, `/token`), or with `public = true` an app that holds no
/// secret (an SPA, a mobile or CLI app) and proves itself with PKCE alone. Either logs users in
/// through `/authorize` when it has `redirect_uris` (`clients.rs` checks each entry at start-up).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    pub id: String,
    /// The client secret (RFC 6749 §2.3.1), at least 16 characters; absent for a public client.
    #[serde(default, serialize_with = "redacted")]
    pub secret: Option<SecretString>,
    /// A public client (RFC 6749 §2.1): no secret, PKCE is its only proof.
    #[serde(default)]
    pub public: bool,
    /// Where `/authorize` may send the browser back: each matched exactly, except a loopback
    /// URI's port (RFC 8252 §7.3). https, or http on a loopback host; no fragment, no wildcard.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Where the end-session endpoint may send the browser after logout (RP-Initiated Logout
    /// 1.0 §3), under the same rules.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// A client of the same operator: `/authorize` asks the user no consent for it.
    #[serde(default)]
    pub first_party: bool,
    /// The scopes this client may ask for (RFC 6749 §3.3): an API's scopes, and the OpenID
    /// scopes `openid`, `profile`, `email` and `offline_access`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The grants this client may use at `/token`: `authorization_code`, `refresh_token`,
    /// `password`, `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628). Absent: `authorization_code` and `refresh_token`, plus `password` for a
    /// confidential client without `redirect_uris` (what such a client could always do).
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    /// Where logout tokens are POSTed when a session of this client ends (Back-Channel
    /// Logout 1.0 §2.2).
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
}

impl ClientSettings {
    /// Whether this client may use `grant` (`authorization_code`, `refresh_token`,
    /// `password`) at `/token`; see `grant_types`.
    pub fn allows_grant(&self, grant: &str) -> bool {
        match &self.grant_types {
            Some(list) => list.iter().any(|g| g == grant),
            None => match grant {
                "authorization_code" | "refresh_token" => true,
                "password" => !self.public && self.redirect_uris.is_empty(),
                _ => false,
            },
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub bind: String,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// After SIGTERM, how long in-flight requests may take to finish before the process exits.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub body_limit: usize,
    pub max_header_bytes: usize,
    /// Browser origins allowed to call Tessera (CORS, with credentials); empty: none.
    #[serde(default)]
    pub cors_origins: Vec<Origin>,
    /// Proxies (CIDRs or addresses) whose forwarded-for header names the client.
    #[serde(default)]
    pub trusted_proxies: Vec<ProxyNet>,
    /// The one header the trusted proxies write the client's address into; the other is
    /// never read.
    #[serde(default)]
    pub forwarded_header: ForwardedHeader,
}

/// Which header a deployment's proxies append the client's address to. Proxies pass the other
/// through as the client sent it, so only the one they write may be believed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx `$proxy_add_x_forwarded_for`, HAProxy `option forwardfor`,
    /// Traefik, Caddy, cloud load balancers).
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=…` (for proxies configured to append it).
    #[serde(rename = "forwarded")]
    Forwarded,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// May carry a password, hence secret.
    #[serde(serialize_with = "redacted")]
    pub url: SecretString,
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    #[serde(with = "humantime_serde")]
    pub access_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    pub client_id: String,
    /// The scopes the first-party client (`client_id`) may ask for.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Access tokens whose verified claims are kept (until `exp` plus `leeway`), so that a
    /// token used again skips the signature check; revocation is still checked on every use.
    /// 0: off.
    pub verified_cache: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    pub algorithm: KeyAlg,
    #[serde(with = "humantime_serde")]
    pub jwks_max_age: Duration,
    #[serde(default, with = "humantime_serde::option")]
    pub publish_ahead: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub rotate_every: Duration,
    pub rsa_bits: u32,
    #[serde(default, serialize_with = "redacted")]
    pub master_key: Option<SecretString>,
    /// Master keys of before a rotation: material sealed or keyed under them still opens
    /// until `tessera keys rekey` has re-sealed it. A list, or one string of keys separated by
    /// commas or white space (what `previous_master_keys_file` holds).
    #[serde(default, serialize_with = "redacted", deserialize_with = "secret_list")]
    pub previous_master_keys: Vec<SecretString>,
}

/// A list of secrets, given as a list or as one string separated by commas or white space.
fn secret_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SecretString>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        List(Vec<String>),
        One(String),
    }
    let items = match Given::deserialize(d)? {
        Given::List(l) => l,
        Given::One(s) => s
            .split(|c: char| c == ',' || c.is_whitespace())
            .map(str::to_string)
            .collect(),
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .map(SecretString::from)
        .collect())
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSettings {
    /// Fewest characters a new password may have (NIST SP 800-63B: at least 8).
    pub min_length: usize,
    /// Lowest zxcvbn score (0 to 4) a new password may have; 0 turns the check off.
    pub min_score: u8,
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
    /// Cost caps on stored hashes, applied at import and at every verification, so that no
    /// hash can make a login a denial of service: bcrypt cost, PBKDF2 iterations, and argon2
    /// memory (KiB) and passes.
    pub max_bcrypt_cost: u32,
    pub max_pbkdf2_iterations: u32,
    pub max_argon2_m_cost: u32,
    pub max_argon2_t_cost: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// Device authorizations (`/device_authorization`, RFC 8628 §3.1) one client address may
    /// start per `device_window`, counted for every replica together (an IPv6 address by its
    /// /64); 0 turns the limit off.
    pub device_requests: u32,
    /// The window `device_requests` counts in; a new one starts when the last has ended.
    #[serde(with = "humantime_serde")]
    pub device_window: Duration,
}

impl ThrottleSettings {
    /// False when both allowances are 0 (throttling off).
    pub fn enabled(&self) -> bool {
        self.account_free_failures > 0 || self.ip_free_failures > 0
    }
}

/// The in-memory revocation state (see `auth::revocation`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationSettings {
    pub cache: bool,
    #[serde(with = "humantime_serde")]
    pub max_lag: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Serialises a secret as a fixed placeholder: the tree's shape without its value.
pub(crate) fn redacted<S: Serializer, T>(_: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[REDACTED]")
}

impl Settings {
    /// The time a new key is published before it signs (`keys.publish_ahead`, defaulting to the
    /// JWKS cache lifetime).
    pub fn publish_ahead(&self) -> Duration {
        self.keys.publish_ahead.unwrap_or(self.keys.jwks_max_age)
    }

    /// How long an access token issued now can still be accepted somewhere: its lifetime plus
    /// the verifiers' leeway. A revocation matters for this long, and no longer.
    pub fn token_horizon(&self) -> Duration {
        self.tokens.access_ttl + self.tokens.leeway
    }

    /// True when the configured database is SQLite.
    pub fn is_sqlite(&self) -> bool {
        self.database.url.expose_secret().starts_with("sqlite:")
    }
}
