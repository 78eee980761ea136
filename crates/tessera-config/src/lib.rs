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

mod values;

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

/// The SSO session of the hosted pages: a browser's login, shared by every app that sends it
/// to `/authorize`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SsoSettings {
    /// It ends after this long without use.
    #[serde(with = "humantime_serde")]
    pub idle_ttl: Duration,
    /// ... and after this long in any case.
    #[serde(with = "humantime_serde")]
    pub absolute_ttl: Duration,
}

/// Second factors (TOTP, recovery codes).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MfaSettings {
    /// How long the `mfa_token` of a password login waiting for its second factor lives.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// The issuer an authenticator app shows beside a TOTP factor (the `otpauth://` label).
    pub totp_issuer: String,
    /// Confirming or removing a factor, or regenerating recovery codes, needs a sign-in at
    /// most this old.
    #[serde(with = "humantime_serde")]
    pub reauth_within: Duration,
    /// Roles that only a login with a second factor carries: a token from a password-only
    /// login leaves them out (and the admin API refuses it for `admin`).
    #[serde(default)]
    pub required_for_roles: Vec<String>,
    /// How long after its creation an account holding such a role may still log in without a
    /// factor, to enrol one (its tokens lack the role meanwhile); after that such a login is
    /// refused with 403 `mfa_enrolment_required`.
    #[serde(with = "humantime_serde")]
    pub enrol_grace: Duration,
}

/// Outgoing email: SMTP through lettre, fed by a durable outbox in the database.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MailSettings {
    /// `smtps://user:pass@host` (implicit TLS), `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS), or `smtp://127.0.0.1:25` (no TLS: loopback only). Unset: no mail, and the
    /// flows that need it are off. May carry a password, hence secret (`smtp_url_file`).
    #[serde(default, serialize_with = "redacted")]
    pub smtp_url: Option<SecretString>,
    /// The sender, `Name <address>` or an address.
    pub from: String,
    /// Sending attempts before a message is given up (dead).
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles with each further one (at most
    /// an hour).
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
}

/// Self-service by email.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    /// The frontend page that email links point at (`?purpose=…&token=…` is appended), which
    /// calls the API. Empty: the hosted page `<issuer>/account/link`.
    pub link_base: String,
    /// How long a password-reset link works.
    #[serde(with = "humantime_serde")]
    pub reset_ttl: Duration,
    /// Who may create an account with `POST /signup`: `closed` (administrators only),
    /// `invite` (administrators, and the people they invite by email) or `open` (anyone, with
    /// an email address it verifies). Invitations work in every mode; `invite` says so.
    pub signup: String,
    /// When not empty, signup takes only addresses of these domains.
    #[serde(default)]
    pub email_domains: Vec<String>,
    /// Whether a user whose address is not verified may log in (a correct password then
    /// gets 403 `email_not_verified`). Users without an address are not affected.
    pub require_verified_email: bool,
    /// How long an address verification link works.
    #[serde(with = "humantime_serde")]
    pub verify_ttl: Duration,
    /// How long an invitation link works.
    #[serde(with = "humantime_serde")]
    pub invite_ttl: Duration,
    /// The requests that send mail (`/signup`, `/password/forgot`, `/email/verify/resend`,
    /// `/me/email`) one client address may make per `ip_window`, together (an IPv6 address
    /// counts by its /64); more are answered 429 `slow_down`. 0: no limit.
    pub ip_requests: u32,
    /// The window `ip_requests` counts in; a new one starts when the last has ended.
    #[serde(with = "humantime_serde")]
    pub ip_window: Duration,
}

/// Passkeys (WebAuthn Level 2+), as second factors and for passwordless login.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebauthnSettings {
    /// The relying party id: the domain passkeys are bound to (`example.com`, or
    /// `localhost`), a suffix of every origin's host. Empty: the host of `tokens.issuer` when
    /// that is a domain name; with an IP address there, passkeys are off until it is set.
    pub rp_id: String,
    /// The name authenticators show for the relying party.
    pub rp_name: String,
    /// The origins (scheme, host, port) whose pages may run the ceremonies: the hosted pages'
    /// and the first-party frontends'. Empty: the origin of `tokens.issuer`.
    #[serde(default)]
    pub origins: Vec<Origin>,
    /// User verification (a PIN or biometric on the authenticator) for passkeys added and
    /// used as a second factor: `required` (the default), or `preferred`, which also takes a
    /// security key without a PIN there (`amr` then lacks `user`). A passwordless login always
    /// requires it, and a passkey added with verification always needs it afterwards.
    pub user_verification: String,
    /// How long a ceremony's challenge lives between its two calls.
    #[serde(with = "humantime_serde")]
    pub ceremony_ttl: Duration,
}

impl WebauthnSettings {
    /// The relying party id in effect and the origins, or `None` when passkeys are off (no
    /// `rp_id` and an issuer whose host is an IP address or missing).
    pub fn relying_party(&self, issuer: &str) -> Option<(String, Vec<Origin>)> {
        let origins = match self.origins.is_empty() {
            true => Origin::of_url(issuer).into_iter().collect(),
            false => self.origins.clone(),
        };
        let rp_id = match self.rp_id.is_empty() {
            false => self.rp_id.clone(),
            true => match url::Url::parse(issuer).ok()?.host()? {
                url::Host::Domain(d) => d.to_string(),
                _ => return None,
            },
        };
        (!origins.is_empty()).then_some((rp_id, origins))
    }
}

/// The hosted HTML pages.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UiSettings {
    /// A directory of templates (`login.html`, `consent.html`, `error.html`, `base.html`, …)
    /// that replace the embedded ones of the same name, for theming.
    #[serde(default)]
    pub templates_dir: Option<std::path::PathBuf>,
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
fn redacted<S: Serializer, T>(_: &T, s: S) -> Result<S::Ok, S::Error> {
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
