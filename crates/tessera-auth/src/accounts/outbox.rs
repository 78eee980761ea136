//! The outbox loop: claims due messages, sends them with the `MailSender`, and retries with
//! backoff until `mail.max_attempts` (invariant 10).

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::audit::{Caller, Event, Record};
use crate::store::OutboxMail;
use crate::time::{now_ms, UnixMillis};
use crate::{Auth, AuthError};

impl Auth {
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
                    // Why: the server refused it for good, or the last attempt failed too.
                    let reason = if *permanent {
                        "rejected"
                    } else {
                        "attempts_exhausted"
                    };
                    self.audit(
                        &Caller::default(),
                        Event::MailDead,
                        Record::default().reason(reason),
                    )
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
