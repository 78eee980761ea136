//! Self-service by email: a password reset asked for with an address (or username), a link
//! with a single-use token (256 random bits, stored as its SHA-256, `accounts.reset_ttl`),
//! and the new password set with it. The mail goes through the outbox (`MailSender` sends it):
//! written in the same transaction as the token, sent by a background loop that retries with
//! backoff and gives up after `mail.max_attempts` (invariants 7, 10).
//!
//! Asking never tells whether the address is known (invariant 4): the work below is done
//! before the HTTP edge answers (so a crash after the answer loses nothing), the same work
//! for a known and an unknown address where it costs (argon2 at signup), and the answer waits
//! for `Auth::ANSWER_FLOOR` in any case.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::audit::{Caller, Event, Record};
use crate::email::Email;
use crate::oidc::{random_token, token_digest};
use crate::store::{AccountToken, Duplicate, OutboxMail, Redeemed, Redemption, StoreError};
use crate::time::{now_ms, UnixMillis};
use crate::{Auth, AuthError, Username};

/// The purpose of a password-reset token.
pub const PASSWORD_RESET: &str = "password_reset";
/// A second reset mail for one account within this long is not sent (the first is enough).
const RESEND_AFTER_MS: i64 = 60_000;
/// Messages claimed per round, and how long a claim holds.
const BATCH: i64 = SENDS_AT_ONCE as i64;
const LEASE: Duration = Duration::from_secs(60);
/// Messages of a round sent at once; the SMTP transport pools as many connections. A round is
/// one wave, so that no claimed message waits behind others past its lease.
pub const SENDS_AT_ONCE: usize = 20;
/// The outbox loop's pace when idle.
const POLL: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The purpose of an address verification token.
pub const EMAIL_VERIFY: &str = "email_verify";
/// The purpose of an invitation token.
pub const INVITE: &str = "invite";
/// The purpose of a token that confirms a new address (`POST /me/email`).
pub const EMAIL_CHANGE: &str = "email_change";

/// A mail: its subject and its two parts, `mail/<name>.txt` and `mail/<name>.html`, each
/// replaced by a file of that name under `ui.templates_dir` when there is one. The HTML part
/// is rendered with HTML escaping.
pub(crate) struct MailTemplate {
    name: &'static str,
    pub(crate) subject: &'static str,
    text: &'static str,
    html: &'static str,
}

macro_rules! mail_template {
    ($name:literal, $subject:literal) => {
        MailTemplate {
            name: $name,
            subject: $subject,
            text: include_str!(concat!("../templates/mail/", $name, ".txt")),
            html: include_str!(concat!("../templates/mail/", $name, ".html")),
        }
    };
}

pub(crate) const RESET_MAIL: MailTemplate = mail_template!("password_reset", "Reset your password");
pub(crate) const VERIFY_MAIL: MailTemplate =
    mail_template!("verify_email", "Verify your email address");
/// To an address's owner when someone signs up with it again.
pub(crate) const SIGNUP_EXISTS_MAIL: MailTemplate = mail_template!(
    "signup_exists",
    "Someone tried to sign up with your address"
);
pub(crate) const INVITE_MAIL: MailTemplate = mail_template!("invitation", "You are invited");
pub(crate) const PASSWORD_CHANGED_MAIL: MailTemplate =
    mail_template!("password_changed", "Your password was changed");
/// To the new address of an address change.
pub(crate) const EMAIL_CHANGE_MAIL: MailTemplate =
    mail_template!("email_change", "Confirm your new email address");
/// To the old address once the change is confirmed.
pub(crate) const EMAIL_CHANGED_MAIL: MailTemplate =
    mail_template!("email_changed", "Your email address was changed");
/// To the owner of an address another account asked to change to.
pub(crate) const EMAIL_IN_USE_MAIL: MailTemplate =
    mail_template!("email_in_use", "Someone tried to use your email address");

/// A rendered mail: the text part and the HTML part.
pub(crate) struct MailBody {
    text: SecretString,
    html: SecretString,
}

/// A signup that passed the checks that need no database (`check_signup`); what
/// `complete_signup` does with it.
pub struct SignupRequest {
    email: Email,
    username: Username,
    /// Whether the caller chose the name (else it is the address).
    chosen: bool,
    password: SecretString,
}

impl std::fmt::Debug for SignupRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignupRequest").finish_non_exhaustive()
    }
}

/// Why a message was not sent: a short reason (never the body), and whether trying again
/// cannot help (the server refused it for good, or cannot take the address).
#[derive(Debug)]
pub struct SendError {
    pub reason: String,
    pub permanent: bool,
}

/// How mail leaves the server: SMTP, which the domain does not speak itself.
#[async_trait::async_trait]
pub trait MailSender: Send + Sync {
    /// Sends one message: its text, and its HTML alternative when it has one
    /// (`multipart/alternative`).
    ///
    /// Errors: `SendError`.
    async fn send(
        &self,
        to: &str,
        subject: &str,
        text: &str,
        html: Option<&str>,
    ) -> Result<(), SendError>;
}

/// A token mail to send.
struct TokenMail<'a> {
    purpose: &'static str,
    to: &'a str,
    /// The address the token is for (its compared form): the one it verifies, or the one the
    /// account must still have for it to work.
    email_key: Option<&'a str>,
    /// For an address change: the new address, set when the token is used.
    email: Option<&'a str>,
    ttl: Duration,
    template: MailTemplate,
}

/// An emailed token that `Auth::emailed_token` found good: its digest (to use it up), its
/// user, its row, and the user's address now.
struct EmailedToken {
    hash: String,
    user: crate::store::User,
    stored: AccountToken,
    current: Option<Email>,
}

/// What seals an outbox body, and its HTML part: bound to the message.
fn mail_label(id: Uuid) -> String {
    format!("mail:{id}")
}
fn html_label(id: Uuid) -> String {
    format!("mail-html:{id}")
}

/// The address an outbox row goes to: the domain in its ASCII form, which servers without
/// SMTPUTF8 take.
fn recipient(to: &str) -> String {
    Email::parse(to).map_or_else(|_| to.to_string(), |e| e.smtp_address())
}

impl Auth {
    /// The shortest time the answers of `POST /password/forgot`, `/signup` and
    /// `/email/verify/resend` take: their work is done before answering (so that a crash
    /// after the answer loses nothing), and the answer waits until this much has passed, so
    /// that a known address and an unknown one take the same time.
    pub const ANSWER_FLOOR: Duration = Duration::from_millis(150);

    /// Whether the flows by email (reset, signup, verification, invitations, address
    /// change) are on: `mail.smtp_url` set. Their links point at `accounts.link_base`, or at
    /// the hosted `/account/link` page when it is empty.
    pub fn mail_enabled(&self) -> bool {
        self.settings.mail.smtp_url.is_some()
    }

    /// Counts a request that sends mail (`/signup`, `/password/forgot`,
    /// `/email/verify/resend`, `/me/email`) against the caller's address:
    /// `accounts.ip_requests` per `accounts.ip_window`, one count for every replica. An IPv6
    /// address counts by its /64, which one host usually holds whole. Called before any work,
    /// so that the answer says nothing about an address.
    ///
    /// Errors: `Throttled` (over the limit, until the window ends), `StoreUnavailable`.
    pub async fn limit_mail_request(&self, caller: &Caller) -> Result<(), AuthError> {
        let a = &self.settings.accounts;
        let Some(ip) = caller.client_ip.filter(|_| a.ip_requests > 0) else {
            return Ok(());
        };
        let key = match ip {
            std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                format!("mail-ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            other => format!("mail-ip:{}", other.to_canonical()),
        };
        let now = now_ms();
        let window = i64::try_from(a.ip_window.as_millis()).unwrap_or(i64::MAX / 2);
        let (count, until) = self.store.count_request(&key, now, window).await?;
        if count > i64::from(a.ip_requests) {
            metrics::counter!("mail_requests_throttled_total").increment(1);
            let secs = u64::try_from(until - now).unwrap_or(0).div_ceil(1000);
            return Err(AuthError::Throttled {
                retry_after_secs: secs.max(1),
            });
        }
        Ok(())
    }

    /// Asks for a password reset for `login`, a username or an email address: when it names
    /// an enabled account with an address, and no reset mail went to it in the last minute, a
    /// token is issued (the account's earlier unused ones die) and its link is queued to the
    /// address. Otherwise nothing happens; the caller's answer does not change either way.
    ///
    /// Errors: `MailDisabled`, `StoreUnavailable`, `Internal`.
    pub async fn request_password_reset(
        &self,
        login: &str,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        if !self.mail_enabled() {
            return Err(AuthError::MailDisabled);
        }
        let login = login.trim();
        if login.is_empty() || login.len() > crate::username::MAX_RAW_BYTES {
            return Ok(());
        }
        let user = match Email::parse(login) {
            Ok(email) if login.contains('@') => {
                let name = Username::for_lookup(login).ok();
                self.store
                    .user_for_login(name.as_ref().map(|n| n.as_str()), &email.key)
                    .await?
            }
            _ => match Username::for_lookup(login) {
                Ok(name) => self.store.user_by_username(name.as_str()).await?,
                Err(_) => None,
            },
        };
        let Some(user) = user.filter(|u| !u.disabled) else {
            tracing::debug!("password reset asked for no account");
            return Ok(());
        };
        let Some(to) = user.email.clone() else {
            tracing::info!(user_id = %user.id, "password reset asked for an account without an address");
            return Ok(());
        };
        let now = now_ms();
        if let Some(last) = self
            .store
            .last_account_token(user.id, PASSWORD_RESET)
            .await?
        {
            if now - last < RESEND_AFTER_MS {
                tracing::info!(user_id = %user.id, "password reset mail sent a moment ago; not again");
                return Ok(());
            }
        }
        let key = Email::parse(&to).map(|e| e.key).ok();
        self.send_token(
            &user,
            TokenMail {
                purpose: PASSWORD_RESET,
                to: &to,
                // The link works only while the account keeps this address.
                email_key: key.as_deref(),
                email: None,
                ttl: self.settings.accounts.reset_ttl,
                template: RESET_MAIL,
            },
        )
        .await?;
        self.audit(caller, Event::PasswordResetRequested, Record::user(user.id))
            .await;
        Ok(())
    }

    /// The link of an emailed token: `<accounts.link_base>?purpose=<purpose>&token=<token>`
    /// (with `&` when the base has a query already), so that one frontend page serves every
    /// purpose; the hosted `/account/link` page when no base is set.
    fn account_link(&self, purpose: &str, token: &str) -> String {
        let base = self.link_base();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}purpose={purpose}&token={token}")
    }

    /// `accounts.link_base`, or the hosted landing page under the issuer.
    fn link_base(&self) -> String {
        let a = &self.settings.accounts;
        if a.link_base.is_empty() {
            format!(
                "{}/account/link",
                self.settings.tokens.issuer.trim_end_matches('/')
            )
        } else {
            a.link_base.clone()
        }
    }

    /// Issues a token of `m.purpose` for `user` (the user's unused ones of that purpose die)
    /// and queues its link to `m.to`, in one transaction.
    async fn send_token(
        &self,
        user: &crate::store::User,
        m: TokenMail<'_>,
    ) -> Result<(), AuthError> {
        let token = random_token()?;
        let link = self.account_link(m.purpose, token.expose_secret());
        let body = self.render_mail(
            &m.template,
            minijinja::context! {
                username => user.username,
                link => link,
                minutes => m.ttl.as_secs() / 60,
                new_email => m.email,
            },
        )?;
        let now = now_ms();
        let mail = self.sealed_mail(m.to, m.template.subject, &body, now)?;
        self.store
            .issue_account_token(
                &AccountToken {
                    token_hash: token_digest(token.expose_secret()),
                    user_id: user.id,
                    purpose: m.purpose.into(),
                    email_key: m.email_key.map(str::to_string),
                    email: m.email.map(str::to_string),
                    fence: user.tokens_not_before,
                    created_at: now,
                    expires_at: UnixMillis(now).plus(m.ttl).0,
                    used_at: None,
                },
                &mail,
            )
            .await?;
        self.mail_queued.notify_one();
        Ok(())
    }

    /// An outbox row for a message, its parts sealed under the master key.
    pub(crate) fn sealed_mail(
        &self,
        to: &str,
        subject: &str,
        body: &MailBody,
        now: i64,
    ) -> Result<OutboxMail, AuthError> {
        let id = Uuid::now_v7();
        let master = self.keys.master();
        let seal = |label: String, part: &SecretString| {
            master
                .seal(&label, part.expose_secret().as_bytes())
                .map_err(|e| AuthError::Internal(e.to_string()))
        };
        let sealed = seal(mail_label(id), &body.text)?;
        let html = seal(html_label(id), &body.html)?;
        Ok(OutboxMail {
            id,
            recipient: recipient(to),
            subject: subject.to_string(),
            body_sealed: sealed,
            html_sealed: Some(html),
            created_at: now,
            attempts: 0,
            next_attempt_at: now,
            claimed_until: None,
            sent_at: None,
            dead_at: None,
            last_error: None,
        })
    }

    /// A mail's two parts rendered with `ctx` (`MailTemplate`); the HTML part escapes what
    /// it is given.
    pub(crate) fn render_mail(
        &self,
        t: &MailTemplate,
        ctx: minijinja::Value,
    ) -> Result<MailBody, AuthError> {
        let part = |ext: &str, default: &str| {
            let name = format!("mail/{}.{ext}", t.name);
            let source = self
                .settings
                .ui
                .templates_dir
                .as_ref()
                .map(|d| d.join(&name))
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_else(|| default.to_string());
            // Escaping follows the name: `.html` escapes, `.txt` does not.
            let mut env = minijinja::Environment::new();
            env.add_template_owned(name.clone(), source)
                .and_then(|()| env.get_template(&name)?.render(ctx.clone()))
                .map(SecretString::from)
                .map_err(|e| AuthError::Internal(format!("mail template {name}: {e}")))
        };
        Ok(MailBody {
            text: part("txt", t.text)?,
            html: part("html", t.html)?,
        })
    }

    /// Whether `POST /signup` is open: `accounts.signup = "open"`, with mail.
    pub fn signup_open(&self) -> bool {
        self.settings.accounts.signup == "open" && self.mail_enabled()
    }

    /// The checks of a signup that need no database, so that their answers say nothing about
    /// existing accounts: the address (and `accounts.email_domains`), the username (the
    /// address itself when none is given) and the password rules.
    ///
    /// Errors: `SignupClosed`, `BadInput`, `BadUsername`, `UsernameTaken` (a chosen name),
    /// `UsernameConfusable` (a chosen name that looks like a taken one), `WeakPassword`,
    /// `StoreUnavailable`.
    pub async fn check_signup(
        &self,
        email: &str,
        password: SecretString,
        username: Option<&str>,
    ) -> Result<SignupRequest, AuthError> {
        if !self.signup_open() {
            return Err(AuthError::SignupClosed);
        }
        let email = self.allowed_address(email)?;
        // A name with an @ is only ever the account's own address: no one takes another's
        // address as a name (logins and resets by address go to the address's owner).
        if let Some(name) = username.filter(|n| n.contains('@')) {
            if Email::parse(name).map(|e| e.key).ok() != Some(email.key.clone()) {
                return Err(AuthError::BadInput(
                    "a username with @ must be the account's own email address".into(),
                ));
            }
        }
        // A name with an @ is the address itself, however it was written: not a choice.
        let chosen = username.is_some_and(|n| !n.contains('@'));
        let username =
            Username::parse(username.unwrap_or(&email.address)).map_err(AuthError::BadUsername)?;
        // A name chosen and taken, or one that looks like a taken one, is said now (names are
        // not secret); a default name (the address) is left to the address's own check, which
        // says nothing.
        if chosen && !username.as_str().contains('@') {
            match self
                .store
                .name_in_use(username.as_str(), &username.skeleton())
                .await?
            {
                Some(Duplicate::Username) => return Err(AuthError::UsernameTaken),
                Some(_) => return Err(AuthError::UsernameConfusable),
                None => {}
            }
        }
        crate::login::check_new_password(&password, username.as_str(), &self.settings.password)?;
        Ok(SignupRequest {
            email,
            username,
            chosen,
            password,
        })
    }

    /// `raw` parsed as an address of a domain `accounts.email_domains` allows (all when it is
    /// empty; IDNA-compared).
    ///
    /// Errors: `BadInput`.
    fn allowed_address(&self, raw: &str) -> Result<Email, AuthError> {
        let email = Email::parse(raw)?;
        let domains = &self.settings.accounts.email_domains;
        let domain = email.key.rsplit_once('@').map_or("", |(_, d)| d);
        let allowed = domains.is_empty()
            || domains.iter().any(|d| {
                idna::domain_to_ascii(d.trim()).is_ok_and(|d| d.eq_ignore_ascii_case(domain))
            });
        if !allowed {
            return Err(AuthError::BadInput(
                "only addresses of the allowed domains are taken (accounts.email_domains)".into(),
            ));
        }
        Ok(email)
    }

    /// Asks to change the caller's address to `email` (`POST /me/email`): needs a login within
    /// `mfa.reauth_within` (`auth_time`, ms). A link to confirm it (`accounts.verify_ttl`) goes
    /// to the new address; the account keeps its address until the link is used, and the old
    /// address is told then. When another account holds the address, its owner gets a note
    /// instead, and the caller's answer is the same (nothing tells them the address is taken).
    ///
    /// Errors: `MailDisabled`, `ReauthenticationRequired`, `BadInput` (not an address, a
    /// domain not allowed, the account's address already), `UserNotFound`,
    /// `StoreUnavailable`, `Internal`.
    pub async fn request_email_change(
        &self,
        user_id: Uuid,
        email: &str,
        auth_time: i64,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        if !self.mail_enabled() {
            return Err(AuthError::MailDisabled);
        }
        self.check_recent(auth_time)?;
        let new = self.allowed_address(email)?;
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or(AuthError::UserNotFound)?;
        let current = user.email.as_deref().and_then(|e| Email::parse(e).ok());
        if current.as_ref().is_some_and(|c| c.key == new.key) {
            return Err(AuthError::BadInput(
                "that is the account's address already".into(),
            ));
        }
        // Held by another account as its address, or as its name (an address-shaped
        // username logs in as that address: taking it would lock its owner out).
        let owner = self.address_holder(&new).await?.filter(|o| o.id != user.id);
        if let Some(owner) = owner {
            let to = owner.email.clone().unwrap_or_else(|| new.address.clone());
            self.note_once_a_minute(&owner, &to, &EMAIL_IN_USE_MAIL)
                .await?;
            tracing::info!(user_id = %user.id, "address change to another account's address: its owner is told");
            // The trail shows the attempt as any other (it does not say the address is held).
            self.audit(caller, Event::EmailChangeRequested, Record::user(user.id))
                .await;
            return Ok(());
        }
        // One confirmation mail a minute per account, like every other kind.
        let last = self.store.last_account_token(user.id, EMAIL_CHANGE).await?;
        if last.is_some_and(|t| now_ms() - t < RESEND_AFTER_MS) {
            tracing::info!(user_id = %user.id, "address change mail sent a moment ago; not again");
            return Ok(());
        }
        self.send_token(
            &user,
            TokenMail {
                purpose: EMAIL_CHANGE,
                to: &new.address,
                // Bound to the address the account has now: a change meanwhile ends it.
                email_key: current.as_ref().map(|c| c.key.as_str()),
                email: Some(&new.address),
                ttl: self.settings.accounts.verify_ttl,
                template: EMAIL_CHANGE_MAIL,
            },
        )
        .await?;
        self.audit(caller, Event::EmailChangeRequested, Record::user(user.id))
            .await;
        Ok(())
    }

    /// The account that holds `email`: as its address, or else as its username (a name with
    /// an `@` is the address it logs in as).
    ///
    /// Errors: `StoreUnavailable`.
    async fn address_holder(&self, email: &Email) -> Result<Option<crate::store::User>, AuthError> {
        let name = Username::for_lookup(&email.address).ok();
        Ok(self
            .store
            .user_for_login(name.as_ref().map(|n| n.as_str()), &email.key)
            .await?)
    }

    /// The rest of a signup, before the answer: for a new address, the account (its address
    /// unverified) and a verification link to it; for an address an account holds already,
    /// a note to that address instead ("someone tried to sign up with your address"), once a
    /// minute at most. When the default name (the address) looks like another account's
    /// name, the account is named `user-<random hex>` instead, since saying so would tell of
    /// that account; it logs in with its address either way.
    ///
    /// A chosen name another signup took since `check_signup` creates nothing (logged): saying
    /// so would tell that the address is new.
    ///
    /// Errors: `Unavailable` (hashing saturated), `StoreUnavailable`, `Internal`.
    pub async fn complete_signup(
        &self,
        req: SignupRequest,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        if let Some(owner) = self.address_holder(&req.email).await? {
            // The argon2 work a new account costs, so that both take the same time.
            let _ = self.passwords.hash(req.password).await;
            let to = owner
                .email
                .clone()
                .unwrap_or_else(|| req.email.address.clone());
            self.note_once_a_minute(&owner, &to, &SIGNUP_EXISTS_MAIL)
                .await?;
            tracing::info!(user_id = %owner.id, "signup with a registered address: its owner is told");
            return Ok(());
        }
        let mut name = req.username.as_str().to_string();
        if !req.chosen
            && self
                .store
                .name_in_use(&name, &req.username.skeleton())
                .await?
                .is_some()
        {
            name = format!("user-{}", Uuid::new_v4().simple());
        }
        // The password rules were applied at `check_signup`, against the chosen name or the
        // address (a generated name is no word of the password).
        let created = self
            .create_account(
                &name,
                req.password,
                Vec::new(),
                Some(&req.email.address),
                true,
                caller,
            )
            .await;
        let user = match created {
            Ok(v) => v,
            // A chosen name lost to a parallel signup is not said: only a new address gets this
            // far, so a 409 here would tell that the address is not registered (invariant 4).
            Err(
                AuthError::UsernameTaken | AuthError::UsernameConfusable | AuthError::EmailTaken,
            ) => {
                tracing::info!(
                    "signup refused: the address, or a name like it, was taken meanwhile"
                );
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.send_verification(&user).await
    }

    /// Queues `t` (a mail without a token) to `to`, the address of `user`, unless one went to
    /// it in the last minute.
    async fn note_once_a_minute(
        &self,
        user: &crate::store::User,
        to: &str,
        t: &MailTemplate,
    ) -> Result<(), AuthError> {
        let now = now_ms();
        if self
            .store
            .mail_queued_since(&recipient(to), t.subject, now - RESEND_AFTER_MS)
            .await?
        {
            return Ok(());
        }
        self.queue_notice(to, t, minijinja::context! { username => user.username })
            .await
    }

    /// Renders `t` with `ctx` and queues it to `to` (a mail that carries no token).
    ///
    /// Errors: `Internal` (a template), `StoreUnavailable`.
    pub(crate) async fn queue_notice(
        &self,
        to: &str,
        t: &MailTemplate,
        ctx: minijinja::Value,
    ) -> Result<(), AuthError> {
        self.queue(&self.notice(to, t, ctx)?).await
    }

    /// `t` rendered with `ctx` as an outbox row to `to`, for the store write of the change it
    /// tells of to queue in the same transaction (invariant 10: a change is never stored
    /// without its notice).
    ///
    /// Errors: `Internal` (a template, sealing).
    pub(crate) fn notice(
        &self,
        to: &str,
        t: &MailTemplate,
        ctx: minijinja::Value,
    ) -> Result<OutboxMail, AuthError> {
        let body = self.render_mail(t, ctx)?;
        self.sealed_mail(to, t.subject, &body, now_ms())
    }

    /// Uses an emailed token and makes its change, with `notice` queued, in one transaction
    /// (`Redemption`); then this replica's caches forget what changed. Returns what changed.
    ///
    /// Errors: `InvalidAccountToken` (used, expired, or its user's cut-off or address changed
    /// since it was checked), `EmailTaken`, `UsernameTaken`, `UsernameConfusable` (nothing
    /// changed), `StoreUnavailable`.
    async fn redeem(
        &self,
        token_hash: &str,
        user_id: Uuid,
        change: Redemption<'_>,
        notice: Option<&OutboxMail>,
    ) -> Result<Redeemed, AuthError> {
        let done = self
            .store
            .redeem_account_token(token_hash, user_id, now_ms(), change, notice)
            .await
            .map_err(|e| match e {
                StoreError::Duplicate(Duplicate::Email) => AuthError::EmailTaken,
                StoreError::Duplicate(Duplicate::Username) => AuthError::UsernameTaken,
                StoreError::Duplicate(Duplicate::UsernameSkeleton) => AuthError::UsernameConfusable,
                other => other.into(),
            })?
            .ok_or(AuthError::InvalidAccountToken)?;
        self.sessions_ended(&done.sessions_ended);
        self.revocations.invalidate_user(user_id);
        if notice.is_some() {
            self.mail_queued.notify_one();
        }
        Ok(done)
    }

    /// Queues a message that carries no token and wakes the outbox.
    pub(crate) async fn queue(&self, mail: &OutboxMail) -> Result<(), AuthError> {
        self.store.queue_mail(mail).await?;
        self.mail_queued.notify_one();
        Ok(())
    }

    /// A verification link to the user's address (their unused one dies).
    async fn send_verification(&self, user: &crate::store::User) -> Result<(), AuthError> {
        let Some(to) = user.email.clone() else {
            return Ok(());
        };
        let key = Email::parse(&to)?.key;
        let ttl = self.settings.accounts.verify_ttl;
        self.send_token(
            user,
            TokenMail {
                purpose: EMAIL_VERIFY,
                to: &to,
                email_key: Some(&key),
                email: None,
                ttl,
                template: VERIFY_MAIL,
            },
        )
        .await
    }

    /// Sends a new verification link to `email` if it is an unverified address of an enabled
    /// account and none went out in the last minute; otherwise nothing (one answer).
    ///
    /// Errors: `MailDisabled`, `StoreUnavailable`, `Internal`.
    pub async fn resend_verification(&self, email: &str) -> Result<(), AuthError> {
        if !self.mail_enabled() {
            return Err(AuthError::MailDisabled);
        }
        let Ok(email) = Email::parse(email) else {
            return Ok(());
        };
        let Some(user) = self.store.user_for_login(None, &email.key).await? else {
            return Ok(());
        };
        if user.disabled || user.email_verified {
            return Ok(());
        }
        let last = self.store.last_account_token(user.id, EMAIL_VERIFY).await?;
        if last.is_some_and(|t| now_ms() - t < RESEND_AFTER_MS) {
            return Ok(());
        }
        self.send_verification(&user).await
    }

    /// Verifies an address with the token of its link (`POST /email/verify`), used once: a
    /// verification token (for the user's current address), or an address change's token
    /// (the account takes the new address, verified, and its old address is told in the same
    /// transaction; a username that was the old address becomes the new one, or a generated
    /// `user-<hex>` when the new one looks like another account's name).
    ///
    /// Errors: `BadInput`, `InvalidAccountToken`, `EmailTaken` (an address change to an
    /// address another account took meanwhile), `StoreUnavailable`, `Internal` (the notice's
    /// template).
    pub async fn verify_email(
        &self,
        token: &SecretString,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        match self.emailed_token(token, EMAIL_VERIFY).await {
            Err(AuthError::InvalidAccountToken) => {
                return self.confirm_email_change(token, caller).await
            }
            Err(e) => return Err(e),
            Ok(EmailedToken {
                hash,
                user,
                current,
                ..
            }) => {
                let current = current.ok_or(AuthError::InvalidAccountToken)?;
                let address = (current.address.as_str(), current.key.as_str());
                self.redeem(
                    &hash,
                    user.id,
                    Redemption::Email {
                        address,
                        rename: None,
                    },
                    None,
                )
                .await?;
                self.audit(caller, Event::EmailChanged, Record::user(user.id))
                    .await;
            }
        }
        Ok(())
    }

    /// An address change confirmed with the token mailed to the new address.
    async fn confirm_email_change(
        &self,
        token: &SecretString,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        let EmailedToken {
            hash,
            user,
            stored,
            current,
        } = self.emailed_token(token, EMAIL_CHANGE).await?;
        let new = stored
            .email
            .as_deref()
            .and_then(|e| Email::parse(e).ok())
            .ok_or(AuthError::InvalidAccountToken)?;
        // A name that is the old address is the address it logs in with: it follows the
        // address, or it would keep holding the old one (logins and resets by it). Whether
        // the name is the old address is decided in the change's transaction, on the row as it
        // is then (an address-shaped name is always its address's own form, `Username`).
        let rename = current
            .as_ref()
            .and_then(|old| Username::parse(&old.address).ok())
            .zip(Username::parse(&new.address).ok())
            .map(|(from, to)| (from, to.skeleton(), to));
        // The old address is told in the change's own transaction.
        let notice = current
            .as_ref()
            .map(|old| {
                let ctx =
                    minijinja::context! { username => user.username, new_email => new.address };
                self.notice(&old.address, &EMAIL_CHANGED_MAIL, ctx)
            })
            .transpose()?;
        let change = Redemption::Email {
            address: (&new.address, &new.key),
            rename: rename
                .as_ref()
                .map(|(from, skeleton, to)| (from.as_str(), to.as_str(), skeleton.as_str())),
        };
        let done = match self.redeem(&hash, user.id, change, notice.as_ref()).await {
            // The new address as a name looks like another account's name: the account takes
            // a generated name instead (it logs in with its address either way).
            Err(AuthError::UsernameTaken | AuthError::UsernameConfusable) => {
                let Some((from, _, _)) = rename.as_ref() else {
                    return Err(AuthError::EmailTaken);
                };
                let generated = Username::parse(&format!("user-{}", Uuid::new_v4().simple()))
                    .map_err(|e| AuthError::Internal(e.to_string()))?;
                let skeleton = generated.skeleton();
                let change = Redemption::Email {
                    address: (&new.address, &new.key),
                    rename: Some((from.as_str(), generated.as_str(), skeleton.as_str())),
                };
                self.redeem(&hash, user.id, change, notice.as_ref())
                    .await
                    .map_err(|e| match e {
                        AuthError::UsernameTaken | AuthError::UsernameConfusable => {
                            AuthError::EmailTaken
                        }
                        other => other,
                    })?
            }
            other => other?,
        };
        self.audit(caller, Event::EmailChanged, Record::user(user.id))
            .await;
        if done.renamed {
            self.audit(caller, Event::UsernameChanged, Record::user(user.id))
                .await;
        }
        Ok(())
    }

    /// Invites `email` (`POST /admin/invitations`): an account with `roles` and no usable
    /// password (a random one nobody knows), named `username` or the address, and a link
    /// (`accounts.invite_ttl`) with which the invitee sets their password.
    ///
    /// Errors: `MailDisabled`, `BadInput`, `BadUsername`, `UsernameTaken`,
    /// `UsernameConfusable`, `EmailTaken`, `Unavailable`, `StoreUnavailable`, `Internal`.
    pub async fn invite(
        &self,
        email: &str,
        roles: Vec<String>,
        username: Option<&str>,
        caller: &Caller,
    ) -> Result<crate::UserView, AuthError> {
        if !self.mail_enabled() {
            return Err(AuthError::MailDisabled);
        }
        let address = Email::parse(email)?;
        let unknown = random_token()?;
        let view = self
            .create_user_with_email(
                username.unwrap_or(&address.address),
                unknown,
                roles,
                Some(&address.address),
                caller,
            )
            .await?;
        let user = self
            .store
            .user_by_id(view.id)
            .await?
            .ok_or(AuthError::UserNotFound)?;
        let ttl = self.settings.accounts.invite_ttl;
        self.send_token(
            &user,
            TokenMail {
                purpose: INVITE,
                to: &address.address,
                email_key: Some(&address.key),
                email: None,
                ttl,
                template: INVITE_MAIL,
            },
        )
        .await?;
        self.audit(caller, Event::UserInvited, Record::user(user.id))
            .await;
        Ok(view)
    }

    /// The invitations not yet accepted, oldest first.
    ///
    /// Errors: `StoreUnavailable`.
    pub async fn invitations(&self) -> Result<Vec<crate::store::Invitation>, AuthError> {
        Ok(self.store.pending_invitations(now_ms()).await?)
    }

    /// Withdraws an invitation that was not accepted: the invited account is deleted.
    ///
    /// Errors: `UserNotFound` (no pending invitation of that user), `StoreUnavailable`.
    pub async fn revoke_invitation(&self, user_id: Uuid, caller: &Caller) -> Result<(), AuthError> {
        if !self.store.revoke_invitation(user_id, now_ms()).await? {
            return Err(AuthError::UserNotFound);
        }
        self.revocations.invalidate_user(user_id);
        self.audit(caller, Event::InvitationRevoked, Record::user(user_id))
            .await;
        Ok(())
    }

    /// Accepts an invitation (`POST /invitations/accept`): the token of its link and the
    /// invitee's password (the rules apply before the token is used). The address is then
    /// verified, since the link reached it.
    ///
    /// Errors: `BadInput`, `InvalidAccountToken`, `WeakPassword`, `Unavailable`,
    /// `StoreUnavailable`.
    pub async fn accept_invitation(
        &self,
        token: &SecretString,
        password: SecretString,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        let EmailedToken {
            hash,
            user,
            current,
            ..
        } = self.emailed_token(token, INVITE).await?;
        let current = current.ok_or(AuthError::InvalidAccountToken)?;
        crate::login::check_new_password(&password, &user.username, &self.settings.password)?;
        let hashed = self.passwords.hash(password).await?;
        let change = Redemption::Invitation {
            hash: &hashed,
            address: (&current.address, &current.key),
        };
        self.redeem(&hash, user.id, change, None).await?;
        // A new password ends every sign-in, the SSO ones too (their apps are told).
        self.end_sso_of_user(user.id, "password_changed").await?;
        self.audit(caller, Event::PasswordChanged, Record::user(user.id))
            .await;
        self.audit(caller, Event::EmailChanged, Record::user(user.id))
            .await;
        Ok(())
    }

    /// The token of an emailed link, checked for `purpose`: unused, unexpired, issued under
    /// the user's current cut-off, and bound to the address the user has now (the one it was
    /// mailed to; for an address change, the one the account had when it was asked). Nothing
    /// is used up here.
    ///
    /// Errors: `BadInput` (empty or oversized), `InvalidAccountToken`, `StoreUnavailable`.
    async fn emailed_token(
        &self,
        token: &SecretString,
        purpose: &str,
    ) -> Result<EmailedToken, AuthError> {
        let t = token.expose_secret();
        if t.is_empty() || t.len() > 256 {
            return Err(AuthError::BadInput("token is empty or too long".into()));
        }
        let hash = token_digest(t);
        let stored = self
            .store
            .account_token(&hash, purpose, now_ms())
            .await?
            .ok_or(AuthError::InvalidAccountToken)?;
        let user = self
            .store
            .user_by_id(stored.user_id)
            .await?
            .ok_or(AuthError::InvalidAccountToken)?;
        let current = user.email.as_deref().and_then(|e| Email::parse(e).ok());
        if current.as_ref().map(|e| &e.key) != stored.email_key.as_ref() {
            return Err(AuthError::InvalidAccountToken);
        }
        Ok(EmailedToken {
            hash,
            user,
            stored,
            current,
        })
    }

    /// Sets a new password with a reset token (`POST /password/reset`): the token must be
    /// unused, unexpired, a reset token, and issued under the user's current cut-off (a
    /// password change since kills it). The password rules apply before the token is used;
    /// then it is used once (of parallel uses, one wins), the password is set, every session
    /// of the user ends, earlier access tokens are cut off and a note to the address is queued,
    /// in one transaction; then the user's SSO sessions end.
    ///
    /// Errors: `BadInput` (empty or oversized token), `InvalidAccountToken`, `WeakPassword`,
    /// `Unavailable`, `StoreUnavailable`, `Internal` (the note's template).
    pub async fn reset_password(
        &self,
        token: &SecretString,
        password: SecretString,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        // The address the link went to must still be the account's: a changed address ends
        // what was mailed to the old one.
        let EmailedToken {
            hash,
            user,
            current,
            ..
        } = self.emailed_token(token, PASSWORD_RESET).await?;
        crate::login::check_new_password(&password, &user.username, &self.settings.password)?;
        let hashed = self.passwords.hash(password).await?;
        // The address is told, in the reset's own transaction, as after any password change.
        let notice = current
            .as_ref()
            .map(|to| {
                let ctx = minijinja::context! { username => user.username };
                self.notice(&to.address, &PASSWORD_CHANGED_MAIL, ctx)
            })
            .transpose()?;
        let change = Redemption::Password { hash: &hashed };
        self.redeem(&hash, user.id, change, notice.as_ref()).await?;
        self.end_sso_of_user(user.id, "password_changed").await?;
        self.audit(caller, Event::PasswordChanged, Record::user(user.id))
            .await;
        self.audit(caller, Event::PasswordReset, Record::user(user.id))
            .await;
        Ok(())
    }

    /// Sends the outbox's due messages with `sender`, for as long as the server runs.
    pub async fn run_outbox(self: Arc<Self>, sender: Arc<dyn MailSender>) {
        loop {
            match self.send_due(sender.as_ref()).await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox not claimed"),
            }
            // A new message wakes the loop at once; otherwise retries come due with time.
            let _ = tokio::time::timeout(POLL, self.mail_queued.notified()).await;
        }
    }

    /// One round: claims the due messages and attempts each. Returns how many it claimed.
    ///
    /// Errors: `StoreUnavailable` (nothing was claimed).
    pub async fn send_due(&self, sender: &dyn MailSender) -> Result<usize, AuthError> {
        let now = now_ms();
        let due = self
            .store
            .claim_mail(now, now + LEASE.as_millis() as i64, BATCH)
            .await?;
        let n = due.len();
        // Several at once: one SMTP exchange waits on the network far more than it works, so
        // sending one after another caps the outbox at one round trip per message.
        futures_util::StreamExt::for_each_concurrent(
            futures_util::stream::iter(due),
            SENDS_AT_ONCE,
            |m| self.attempt_mail(sender, m),
        )
        .await;
        Ok(n)
    }

    async fn attempt_mail(&self, sender: &dyn MailSender, m: OutboxMail) {
        let broken = |reason: &str| SendError {
            reason: reason.into(),
            permanent: true,
        };
        let master = self.keys.master();
        let open = |label: String, sealed: &[u8]| {
            let part = master
                .open(&label, sealed)
                .map_err(|_| broken("no configured master key opens the body"))?;
            std::str::from_utf8(&part)
                .map(|t| SecretString::from(t.to_string()))
                .map_err(|_| broken("the body is not UTF-8"))
        };
        let parts = open(mail_label(m.id), &m.body_sealed).and_then(|text| {
            let html = m
                .html_sealed
                .as_deref()
                .map(|h| open(html_label(m.id), h))
                .transpose()?;
            Ok((text, html))
        });
        let sent = match parts {
            Ok((text, html)) => {
                let html = html.as_ref().map(ExposeSecret::expose_secret);
                sender
                    .send(&m.recipient, &m.subject, text.expose_secret(), html)
                    .await
            }
            Err(e) => Err(e),
        };
        let now = now_ms();
        let outcome = match &sent {
            Ok(()) => {
                metrics::counter!("mail_total", "result" => "sent").increment(1);
                self.store.mail_sent(m.id, now).await
            }
            Err(SendError {
                reason: why,
                permanent,
            }) => {
                let dead = *permanent || m.attempts >= i64::from(self.settings.mail.max_attempts);
                let base = self.settings.mail.retry_base;
                let shift = u32::try_from(m.attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
                let wait = base.saturating_mul(1 << shift).min(MAX_BACKOFF);
                tracing::warn!(mail_id = %m.id, attempts = m.attempts, dead, error = %why, "mail not sent");
                if dead {
                    metrics::counter!("mail_total", "result" => "dead").increment(1);
                    self.audit(&Caller::default(), Event::MailDead, Record::default())
                        .await;
                } else {
                    metrics::counter!("mail_total", "result" => "retry").increment(1);
                }
                let next = UnixMillis(now).plus(wait).0;
                self.store.mail_failed(m.id, why, next, dead, now).await
            }
        };
        if let Err(e) = outcome {
            // The claim runs out and the message is tried again: at least once.
            tracing::warn!(mail_id = %m.id, error = %e, "mail outcome not stored");
        }
    }
}
