//! Self-service by email: a password reset asked for with an address (or username), a link
//! with a single-use token (256 random bits, stored as its SHA-256, `accounts.reset_ttl`),
//! and the new password set with it. The mail goes through the outbox (`MailSender` sends it):
//! written in the same transaction as the token, sent by a background loop that retries with
//! backoff and gives up after `mail.max_attempts` (invariants 7, 10).
//!
//! Asking never tells whether the address is known (invariant 4): the HTTP edge answers 202
//! before the work below runs, the same for every address.

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

/// How mail leaves the server: SMTP, which the domain does not speak itself.
#[async_trait::async_trait]
pub trait MailSender: Send + Sync {
    /// Sends one text message. Errors: a short reason (refused, timed out), never the body.
    async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), String>;
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

/// What seals an outbox body: bound to the message.
fn mail_label(id: Uuid) -> String {
    format!("mail:{id}")
}

impl Auth {
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
        let token = random_token()?;
        let a = &self.settings.accounts;
        let sep = if a.link_base.contains('?') { '&' } else { '?' };
        let link = format!("{}{sep}token={}", a.link_base, token.expose_secret());
        let (subject, body) = self.reset_mail(&user.username, &link)?;
        let id = Uuid::now_v7();
        let sealed = self
            .keys
            .master()
            .seal(&mail_label(id), body.expose_secret().as_bytes())
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        self.store
            .issue_account_token(
                &AccountToken {
                    token_hash: token_digest(token.expose_secret()),
                    user_id: user.id,
                    purpose: PASSWORD_RESET.into(),
                    fence: user.tokens_not_before,
                    created_at: now,
                    expires_at: UnixMillis(now).plus(a.reset_ttl).0,
                    used_at: None,
                },
                &OutboxMail {
                    id,
                    recipient: to,
                    subject,
                    body_sealed: sealed,
                    created_at: now,
                    attempts: 0,
                    next_attempt_at: now,
                    claimed_until: None,
                    sent_at: None,
                    dead_at: None,
                    last_error: None,
                },
            )
            .await?;
        self.mail_queued.notify_one();
        self.audit(caller, Event::PasswordResetRequested, Record::user(user.id))
            .await;
        Ok(())
    }

    /// The reset mail for `username` with `link`: subject and text.
    fn reset_mail(&self, username: &str, link: &str) -> Result<(String, SecretString), AuthError> {
        let mut env = minijinja::Environment::new();
        let source = self
            .settings
            .ui
            .templates_dir
            .as_ref()
            .map(|d| d.join("mail/password_reset.txt"))
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_else(|| RESET_TEMPLATE.to_string());
        env.add_template_owned("mail/password_reset.txt", source)
            .map_err(|e| AuthError::Internal(format!("mail template: {e}")))?;
        let minutes = self.settings.accounts.reset_ttl.as_secs() / 60;
        let body = env
            .get_template("mail/password_reset.txt")
            .and_then(|t| {
                t.render(
                    minijinja::context! { username => username, link => link, minutes => minutes },
                )
            })
            .map_err(|e| AuthError::Internal(format!("mail template: {e}")))?;
        Ok(("Reset your password".into(), SecretString::from(body)))
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
        let t = token.expose_secret();
        if t.is_empty() || t.len() > 256 {
            return Err(AuthError::BadInput("token is empty or too long".into()));
        }
        let hash = token_digest(t);
        let now = now_ms();
        let stored = self
            .store
            .account_token(&hash, PASSWORD_RESET, now)
            .await?
            .ok_or(AuthError::InvalidAccountToken)?;
        let user = self
            .store
            .user_by_id(stored.user_id)
            .await?
            .ok_or(AuthError::InvalidAccountToken)?;
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
        let sent = match self.keys.master().open(&mail_label(m.id), &m.body_sealed) {
            Ok(body) => match std::str::from_utf8(&body) {
                Ok(text) => sender.send(&m.recipient, &m.subject, text).await,
                Err(_) => Err("the body is not UTF-8".into()),
            },
            Err(_) => Err("no configured master key opens the body".into()),
        };
        let now = now_ms();
        let outcome = match &sent {
            Ok(()) => {
                metrics::counter!("mail_total", "result" => "sent").increment(1);
                self.store.mail_sent(m.id, now).await
            }
            Err(why) => {
                let dead = m.attempts >= i64::from(self.settings.mail.max_attempts);
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
