//! Mail: the templates of each message, their rendering, the sealed outbox row, and the
//! `MailSender` port that the binary implements with SMTP.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::lifetime;
use crate::email::Email;
use crate::oidc::{random_token, token_digest};
use crate::store::{AccountToken, OutboxMail};
use crate::time::UnixMillis;
use crate::{Auth, AuthError};

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
            text: include_str!(concat!("../../templates/mail/", $name, ".txt")),
            html: include_str!(concat!("../../templates/mail/", $name, ".html")),
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

/// What seals an outbox body, and its HTML part: bound to the message.
pub(super) fn mail_label(id: Uuid) -> String {
    format!("mail:{id}")
}
pub(super) fn html_label(id: Uuid) -> String {
    format!("mail-html:{id}")
}

/// The address an outbox row goes to: the domain in its ASCII form, which servers without
/// SMTPUTF8 take.
pub(super) fn recipient(to: &str) -> String {
    Email::parse(to).map_or_else(|_| to.to_string(), |e| e.smtp_address())
}

impl Auth {
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
}

/// A token mail to send.
pub(crate) struct TokenMail<'a> {
    pub(super) purpose: &'static str,
    pub(super) to: &'a str,
    /// The address the token is for (its compared form): the one it verifies, or the one the
    /// account must still have for it to work.
    pub(super) email_key: Option<&'a str>,
    /// For an address change: the new address, set when the token is used.
    pub(super) email: Option<&'a str>,
    pub(super) ttl: Duration,
    pub(super) template: MailTemplate,
    /// Not sent when a token of its purpose went to the user in the last minute
    /// (`RESEND_AFTER_MS`), checked in the store's write (concurrent requests take turns).
    pub(super) once_a_minute: bool,
}

/// Whom a token mail is for: an account's id, name and cut-off (the token's fence).
pub(crate) struct Recipient<'a> {
    pub id: Uuid,
    pub username: &'a str,
    pub tokens_not_before: i64,
}

impl Auth {
    /// A new token of `m.purpose` for `to` (stored as its digest) and the sealed mail that
    /// carries its link, issued at `now` (ms); nothing is stored yet.
    ///
    /// Errors: `Internal` (a template or the sealing failed).
    pub(crate) fn token_mail(
        &self,
        to: Recipient<'_>,
        m: &TokenMail<'_>,
        now: i64,
    ) -> Result<(AccountToken, OutboxMail), AuthError> {
        let token = random_token()?;
        let link = self.account_link(m.purpose, token.expose_secret());
        let body = self.render_mail(
            &m.template,
            minijinja::context! {
                username => to.username,
                link => link,
                minutes => m.ttl.as_secs() / 60,
                lifetime => lifetime(m.ttl),
                new_email => m.email,
            },
        )?;
        let mail = self.sealed_mail(m.to, m.template.subject, &body, now)?;
        let token = AccountToken {
            token_hash: token_digest(token.expose_secret()),
            user_id: to.id,
            purpose: m.purpose.into(),
            email_key: m.email_key.map(str::to_string),
            email: m.email.map(str::to_string),
            fence: to.tokens_not_before,
            created_at: now,
            expires_at: UnixMillis(now).plus(m.ttl).0,
            used_at: None,
        };
        Ok((token, mail))
    }
}
