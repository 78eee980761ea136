//! The identity provider's sections: the SSO session, second factors and passkeys, outgoing
//! mail, self-service accounts and the hosted pages.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::{redacted, Origin};

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
