//! Self-service by email: password reset (`reset`), signup (`signup`), address verification
//! and change (`email`) and invitations (`invite`). Each works with a link that carries a
//! single-use token (256 random bits, stored as its SHA-256, with a time to live per purpose).
//! The mail goes through the outbox (`mail` renders and seals it, `outbox` sends it):
//! written in the same transaction as the token, sent by a background loop that retries with
//! backoff and gives up after `mail.max_attempts` (invariants 7, 10).
//!
//! Asking never tells whether the address is known (invariant 4): the work below is done
//! before the HTTP edge answers (so a crash after the answer loses nothing), the same work
//! for a known and an unknown address where it costs (argon2 at signup), and the answer waits
//! for `Auth::ANSWER_FLOOR` in any case.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::audit::Caller;
use crate::email::Email;
use crate::oidc::token_digest;
use crate::store::{AccountToken, Duplicate, OutboxMail, Redeemed, Redemption, StoreError};
use crate::time::now_ms;
use crate::{Auth, AuthError};

mod email;
mod invite;
mod mail;
mod outbox;
mod reset;
mod signup;

pub(crate) use mail::*;
pub use mail::{MailSender, SendError};
pub use signup::SignupRequest;

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

/// An emailed token that `Auth::emailed_token` found good: its digest (to use it up), its
/// user, its row, and the user's address now.
struct EmailedToken {
    hash: String,
    user: crate::store::User,
    stored: AccountToken,
    current: Option<Email>,
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
        let over = self
            .over_address_limit(caller, "mail-ip", a.ip_requests, a.ip_window)
            .await?;
        if let Some(retry_after_secs) = over {
            metrics::counter!("mail_requests_throttled_total").increment(1);
            return Err(AuthError::Throttled { retry_after_secs });
        }
        Ok(())
    }

    /// Counts a request of one kind (the key's `prefix`) against the caller's address, and
    /// says how many seconds remain of its window once more than `limit` were made in it: one
    /// count for every replica; an IPv6 address counts by its /64, which one host usually
    /// holds whole. `None` when under the limit, when the limit is 0 (off), or when the
    /// address is unknown.
    ///
    /// Errors: `StoreUnavailable`.
    pub(crate) async fn over_address_limit(
        &self,
        caller: &Caller,
        prefix: &str,
        limit: u32,
        window: std::time::Duration,
    ) -> Result<Option<u64>, AuthError> {
        let Some(ip) = caller.client_ip.filter(|_| limit > 0) else {
            return Ok(None);
        };
        let key = match ip {
            std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                format!("{prefix}:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            other => format!("{prefix}:{}", other.to_canonical()),
        };
        let now = now_ms();
        let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 2);
        let (count, until) = self.store.count_request(&key, now, window).await?;
        Ok((count > i64::from(limit)).then(|| {
            u64::try_from(until - now)
                .unwrap_or(0)
                .div_ceil(1000)
                .max(1)
        }))
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
    /// and queues its link to `m.to`, in one transaction; returns whether it did (see
    /// `TokenMail::once_a_minute`).
    async fn send_token(
        &self,
        user: &crate::store::User,
        m: TokenMail<'_>,
    ) -> Result<bool, AuthError> {
        let now = now_ms();
        let (token, mail) = self.token_mail(
            Recipient {
                id: user.id,
                username: &user.username,
                tokens_not_before: user.tokens_not_before,
            },
            &m,
            now,
        )?;
        let issued = self
            .store
            .issue_account_token(
                &token,
                &mail,
                m.once_a_minute.then(|| now - RESEND_AFTER_MS),
            )
            .await?;
        if issued {
            self.mail_queued.notify_one();
        }
        Ok(issued)
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

    /// The account that holds `email`: as its address, or else as its username in any of the
    /// address's spellings (`Email::names`: a name with an `@` is the address it logs in as,
    /// and a login by that name reads the address first).
    ///
    /// Errors: `StoreUnavailable`.
    async fn address_holder(&self, email: &Email) -> Result<Option<crate::store::User>, AuthError> {
        for name in email.names() {
            if let Some(u) = self.store.user_for_login(Some(&name), &email.key).await? {
                return Ok(Some(u));
            }
        }
        Ok(self.store.user_for_login(None, &email.key).await?)
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
}

/// A link's lifetime as a mail says it: in the largest whole unit ("7 days", "24 hours",
/// "30 minutes", "1 minute"), else in minutes.
fn lifetime(ttl: Duration) -> String {
    let minutes = (ttl.as_secs() / 60).max(1);
    let (n, unit) = match minutes {
        m if m % (24 * 60) == 0 => (m / (24 * 60), "day"),
        m if m % 60 == 0 => (m / 60, "hour"),
        m => (m, "minute"),
    };
    match n {
        1 => format!("1 {unit}"),
        n => format!("{n} {unit}s"),
    }
}

#[cfg(test)]
mod lifetime_tests {
    use super::*;

    #[test]
    fn lifetimes_are_said_in_the_largest_whole_unit() {
        let d = |secs| lifetime(Duration::from_secs(secs));
        assert_eq!(d(7 * 86_400), "7 days");
        assert_eq!(d(86_400), "1 day");
        assert_eq!(d(24 * 3600 + 3600), "25 hours");
        assert_eq!(d(30 * 60), "30 minutes");
        assert_eq!(d(60), "1 minute");
        assert_eq!(d(90), "1 minute");
        assert_eq!(d(5), "1 minute");
    }
}
