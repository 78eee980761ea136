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
use crate::store::{AccountToken, OutboxMail};
use crate::time::{now_ms, UnixMillis};
use crate::users::UserRef;
use crate::{Auth, AuthError, Username};

/// The purpose of a password-reset token.
pub const PASSWORD_RESET: &str = "password_reset";
/// A second reset mail for one account within this long is not sent (the first is enough).
const RESEND_AFTER_MS: i64 = 60_000;
/// Messages claimed per round, and how long a claim holds.
const BATCH: i64 = 20;
const LEASE: Duration = Duration::from_secs(60);
/// The outbox loop's pace when idle.
const POLL: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The reset mail's text; `ui.templates_dir` may hold a `mail/password_reset.txt` instead.
const RESET_TEMPLATE: &str = include_str!("../templates/mail/password_reset.txt");

/// The purpose of an address verification token.
pub const EMAIL_VERIFY: &str = "email_verify";
/// The verification mail's text, and the mail to an address's owner when someone signs up
/// with it again.
const VERIFY_TEMPLATE: &str = include_str!("../templates/mail/verify_email.txt");
const SIGNUP_EXISTS_TEMPLATE: &str = include_str!("../templates/mail/signup_exists.txt");
const SIGNUP_EXISTS_SUBJECT: &str = "Someone tried to sign up with your address";

/// The purpose of an invitation token, and its mail.
pub const INVITE: &str = "invite";
const INVITE_TEMPLATE: &str = include_str!("../templates/mail/invitation.txt");

/// A signup that passed the checks that need no database (`check_signup`); what
/// `complete_signup` does with it.
pub struct SignupRequest {
    email: Email,
    username: Username,
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
    /// Sends one text message.
    ///
    /// Errors: `SendError`.
    async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), SendError>;
}

/// A message due, its body opened.
pub struct ReadyMail {
    pub id: Uuid,
    pub to: String,
    pub subject: String,
    pub body: SecretString,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

/// A token mail to send.
struct TokenMail<'a> {
    purpose: &'static str,
    to: &'a str,
    /// The address a verification token verifies.
    email_key: Option<&'a str>,
    ttl: Duration,
    template: (&'static str, &'static str),
    subject: &'static str,
    /// The link's lifetime, for the text.
    minutes: u64,
}

/// What seals an outbox body: bound to the message.
fn mail_label(id: Uuid) -> String {
    format!("mail:{id}")
}

impl Auth {
    /// The shortest time the answers of `POST /password/forgot`, `/signup` and
    /// `/email/verify/resend` take: their work is done before answering (so that a crash
    /// after the answer loses nothing), and the answer waits until this much has passed, so
    /// that a known address and an unknown one take the same time.
    pub const ANSWER_FLOOR: Duration = Duration::from_millis(150);

    /// Whether password reset by email is on: `mail.smtp_url` and `accounts.link_base` set.
    pub fn password_reset_enabled(&self) -> bool {
        self.settings.mail.smtp_url.is_some() && !self.settings.accounts.link_base.is_empty()
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
        if !self.password_reset_enabled() {
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
        let minutes = self.settings.accounts.reset_ttl.as_secs() / 60;
        let key = Email::parse(&to).map(|e| e.key).ok();
        self.send_token(
            &user,
            TokenMail {
                purpose: PASSWORD_RESET,
                to: &to,
                // The link works only while the account keeps this address.
                email_key: key.as_deref(),
                ttl: self.settings.accounts.reset_ttl,
                template: ("mail/password_reset.txt", RESET_TEMPLATE),
                subject: "Reset your password",
                minutes,
            },
        )
        .await?;
        self.audit(caller, Event::PasswordResetRequested, Record::user(user.id))
            .await;
        Ok(())
    }

    /// Issues a token of `m.purpose` for `user` (the user's unused ones of that purpose die)
    /// and queues its link to `m.to`, in one transaction.
    async fn send_token(
        &self,
        user: &crate::store::User,
        m: TokenMail<'_>,
    ) -> Result<(), AuthError> {
        let token = random_token()?;
        let a = &self.settings.accounts;
        let sep = if a.link_base.contains('?') { '&' } else { '?' };
        let link = format!("{}{sep}token={}", a.link_base, token.expose_secret());
        let body = self.render_mail(
            m.template,
            minijinja::context! { username => user.username, link => link, minutes => m.minutes },
        )?;
        let now = now_ms();
        let mail = self.sealed_mail(m.to, m.subject, &body, now)?;
        self.store
            .issue_account_token(
                &AccountToken {
                    token_hash: token_digest(token.expose_secret()),
                    user_id: user.id,
                    purpose: m.purpose.into(),
                    email_key: m.email_key.map(str::to_string),
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

    /// An outbox row for a message, its body sealed under the master key.
    pub(crate) fn sealed_mail(
        &self,
        to: &str,
        subject: &str,
        body: &SecretString,
        now: i64,
    ) -> Result<OutboxMail, AuthError> {
        let id = Uuid::now_v7();
        let sealed = self
            .keys
            .master()
            .seal(&mail_label(id), body.expose_secret().as_bytes())
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        // The domain in its ASCII form: servers without SMTPUTF8 take it.
        let recipient = Email::parse(to).map_or_else(|_| to.to_string(), |e| e.smtp_address());
        Ok(OutboxMail {
            id,
            recipient,
            subject: subject.to_string(),
            body_sealed: sealed,
            created_at: now,
            attempts: 0,
            next_attempt_at: now,
            claimed_until: None,
            sent_at: None,
            dead_at: None,
            last_error: None,
        })
    }

    /// A mail template (`(name, embedded default)`; a file of that name under
    /// `ui.templates_dir` replaces it) rendered with `ctx`.
    pub(crate) fn render_mail(
        &self,
        (name, default): (&str, &str),
        ctx: minijinja::Value,
    ) -> Result<SecretString, AuthError> {
        let mut env = minijinja::Environment::new();
        let source = self
            .settings
            .ui
            .templates_dir
            .as_ref()
            .map(|d| d.join(name))
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_else(|| default.to_string());
        env.add_template_owned(name.to_string(), source)
            .map_err(|e| AuthError::Internal(format!("mail template: {e}")))?;
        env.get_template(name)
            .and_then(|t| t.render(ctx))
            .map(SecretString::from)
            .map_err(|e| AuthError::Internal(format!("mail template: {e}")))
    }

    /// Whether `POST /signup` is open: `accounts.signup = "open"`, with mail and link_base.
    pub fn signup_open(&self) -> bool {
        self.settings.accounts.signup == "open" && self.password_reset_enabled()
    }

    /// The checks of a signup that need no database, so that their answers say nothing about
    /// existing accounts: the address (and `accounts.email_domains`), the username (the
    /// address itself when none is given) and the password rules.
    ///
    /// Errors: `SignupClosed`, `BadInput`, `BadUsername`, `UsernameTaken` (a chosen name),
    /// `WeakPassword`, `StoreUnavailable`.
    pub async fn check_signup(
        &self,
        email: &str,
        password: SecretString,
        username: Option<&str>,
    ) -> Result<SignupRequest, AuthError> {
        if !self.signup_open() {
            return Err(AuthError::SignupClosed);
        }
        let email = Email::parse(email)?;
        let domains = &self.settings.accounts.email_domains;
        let domain = email.key.rsplit_once('@').map_or("", |(_, d)| d);
        let allowed = domains.is_empty()
            || domains.iter().any(|d| {
                idna::domain_to_ascii(d.trim()).is_ok_and(|d| d.eq_ignore_ascii_case(domain))
            });
        if !allowed {
            return Err(AuthError::BadInput(
                "signup takes addresses of the allowed domains only".into(),
            ));
        }
        // A name with an @ is only ever the account's own address: no one takes another's
        // address as a name (logins and resets by address go to the address's owner).
        if let Some(name) = username.filter(|n| n.contains('@')) {
            if Email::parse(name).map(|e| e.key).ok() != Some(email.key.clone()) {
                return Err(AuthError::BadInput(
                    "a username with @ must be the account's own email address".into(),
                ));
            }
        }
        let chosen = username.is_some();
        let username =
            Username::parse(username.unwrap_or(&email.address)).map_err(AuthError::BadUsername)?;
        // A name chosen and taken is said now (names are not secret); a default name (the
        // address) is left to the address's own check, which says nothing.
        if chosen
            && !username.as_str().contains('@')
            && self
                .store
                .user_by_username(username.as_str())
                .await?
                .is_some()
        {
            return Err(AuthError::UsernameTaken);
        }
        crate::login::check_new_password(&password, username.as_str(), &self.settings.password)?;
        Ok(SignupRequest {
            email,
            username,
            password,
        })
    }

    /// The rest of a signup, after the answer: for a new address, the account (its address
    /// unverified) and a verification link to it; for an address an account holds already,
    /// a note to that address instead ("someone tried to sign up with your address"), once a
    /// minute at most. A username that is taken creates nothing (logged).
    ///
    /// Errors: `Unavailable` (hashing saturated), `StoreUnavailable`, `Internal`.
    pub async fn complete_signup(
        &self,
        req: SignupRequest,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        if let Some(owner) = self.store.user_for_login(None, &req.email.key).await? {
            // The argon2 work a new account costs, so that both take the same time.
            let _ = self.passwords.hash(req.password).await;
            let now = now_ms();
            let to = owner
                .email
                .clone()
                .unwrap_or_else(|| req.email.address.clone());
            let mail =
                self.sealed_mail(&to, SIGNUP_EXISTS_SUBJECT, &SecretString::from(""), now)?;
            // One note a minute to an address at most.
            if self
                .store
                .mail_queued_since(
                    &mail.recipient,
                    SIGNUP_EXISTS_SUBJECT,
                    now - RESEND_AFTER_MS,
                )
                .await?
            {
                return Ok(());
            }
            let body = self.render_mail(
                ("mail/signup_exists.txt", SIGNUP_EXISTS_TEMPLATE),
                minijinja::context! { username => owner.username },
            )?;
            let mail = self.sealed_mail(&to, SIGNUP_EXISTS_SUBJECT, &body, now)?;
            self.store.queue_mail(&mail).await?;
            self.mail_queued.notify_one();
            tracing::info!(user_id = %owner.id, "signup with a registered address: its owner is told");
            return Ok(());
        }
        let created = self
            .create_user_with_email(
                req.username.as_str(),
                req.password,
                Vec::new(),
                Some(&req.email.address),
                caller,
            )
            .await;
        let view = match created {
            Ok(v) => v,
            Err(
                AuthError::UsernameTaken | AuthError::UsernameConfusable | AuthError::EmailTaken,
            ) => {
                tracing::info!("signup refused after the answer: the name or address was taken");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let user = self
            .store
            .user_by_id(view.id)
            .await?
            .ok_or(AuthError::UserNotFound)?;
        self.send_verification(&user).await
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
                ttl,
                template: ("mail/verify_email.txt", VERIFY_TEMPLATE),
                subject: "Verify your email address",
                minutes: ttl.as_secs() / 60,
            },
        )
        .await
    }

    /// Sends a new verification link to `email` if it is an unverified address of an enabled
    /// account and none went out in the last minute; otherwise nothing (one answer).
    ///
    /// Errors: `MailDisabled`, `StoreUnavailable`, `Internal`.
    pub async fn resend_verification(&self, email: &str) -> Result<(), AuthError> {
        if !self.password_reset_enabled() {
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

    /// Verifies an address with the token of its link: the token must be unused, unexpired,
    /// and for the user's current address. Used once.
    ///
    /// Errors: `BadInput`, `InvalidAccountToken`, `StoreUnavailable`.
    pub async fn verify_email(
        &self,
        token: &SecretString,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        let (hash, user, current) = self.emailed_token(token, EMAIL_VERIFY).await?;
        let now = now_ms();
        if !self.store.use_account_token(&hash, now).await? {
            return Err(AuthError::InvalidAccountToken);
        }
        self.set_email(UserRef::Id(user.id), Some(&current.address), true, caller)
            .await?;
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
        if !self.password_reset_enabled() {
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
                ttl,
                template: ("mail/invitation.txt", INVITE_TEMPLATE),
                subject: "You are invited",
                minutes: ttl.as_secs() / 60,
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
        let (hash, user, current) = self.emailed_token(token, INVITE).await?;
        let now = now_ms();
        crate::login::check_new_password(&password, &user.username, &self.settings.password)?;
        if !self.store.use_account_token(&hash, now).await? {
            return Err(AuthError::InvalidAccountToken);
        }
        self.set_password(UserRef::Id(user.id), password, caller)
            .await?;
        self.set_email(UserRef::Id(user.id), Some(&current.address), true, caller)
            .await?;
        Ok(())
    }

    /// The token of an emailed link, checked for `purpose`: unused, unexpired, issued under
    /// the user's current cut-off, and for the address the user has now (the one it was
    /// mailed to). Returns its digest (to use it up), the user and that address. Nothing is
    /// used up here.
    ///
    /// Errors: `BadInput` (empty or oversized), `InvalidAccountToken`, `StoreUnavailable`.
    async fn emailed_token(
        &self,
        token: &SecretString,
        purpose: &str,
    ) -> Result<(String, crate::store::User, Email), AuthError> {
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
        match current.filter(|e| Some(&e.key) == stored.email_key.as_ref()) {
            Some(current) => Ok((hash, user, current)),
            None => Err(AuthError::InvalidAccountToken),
        }
    }

    /// Sets a new password with a reset token (`POST /password/reset`): the token must be
    /// unused, unexpired, a reset token, and issued under the user's current cut-off (a
    /// password change since kills it). The password rules apply before the token is used;
    /// then it is used once (of parallel uses, one wins), the password is set, every session
    /// of the user ends and earlier access tokens are cut off.
    ///
    /// Errors: `BadInput` (empty or oversized token), `InvalidAccountToken`, `WeakPassword`,
    /// `Unavailable`, `StoreUnavailable`.
    pub async fn reset_password(
        &self,
        token: &SecretString,
        password: SecretString,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        // The address the link went to must still be the account's: a changed address ends
        // what was mailed to the old one.
        let (hash, user, _) = self.emailed_token(token, PASSWORD_RESET).await?;
        crate::login::check_new_password(&password, &user.username, &self.settings.password)?;
        if !self.store.use_account_token(&hash, now_ms()).await? {
            return Err(AuthError::InvalidAccountToken);
        }
        self.set_password(UserRef::Id(user.id), password, caller)
            .await?;
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
        for m in due {
            self.attempt_mail(sender, m).await;
        }
        Ok(n)
    }

    async fn attempt_mail(&self, sender: &dyn MailSender, m: OutboxMail) {
        let broken = |reason: &str| SendError {
            reason: reason.into(),
            permanent: true,
        };
        let sent = match self.keys.master().open(&mail_label(m.id), &m.body_sealed) {
            Ok(body) => match std::str::from_utf8(&body) {
                Ok(text) => sender.send(&m.recipient, &m.subject, text).await,
                Err(_) => Err(broken("the body is not UTF-8")),
            },
            Err(_) => Err(broken("no configured master key opens the body")),
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
