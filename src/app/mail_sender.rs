//! The SMTP side of the outbox: sends a message through lettre, for `tessera_auth`'s outbox
//! loop (`Auth::run_outbox`).

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::auth::accounts::{MailSender, SendError, SENDS_AT_ONCE};
use crate::config::MailSettings;

/// How long one SMTP exchange may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// A pooled SMTP transport to `mail.smtp_url`, from `mail.from`.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpSender {
    /// `None` when mail is not configured.
    ///
    /// Errors: an unusable `mail.smtp_url` or `mail.from`, named (never the URL's password).
    pub fn new(m: &MailSettings) -> Result<Option<Self>, String> {
        let Some(url) = &m.smtp_url else {
            return Ok(None);
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
            .map_err(|_| "mail.smtp_url is not a usable SMTP URL".to_string())?
            .timeout(Some(TIMEOUT))
            // As many connections as the outbox sends at once.
            .pool_config(PoolConfig::new().max_size(SENDS_AT_ONCE as u32))
            .build();
        let from = m
            .from
            .parse::<Mailbox>()
            .map_err(|e| format!("mail.from: {e}"))?;
        Ok(Some(SmtpSender { transport, from }))
    }
}

#[async_trait::async_trait]
impl MailSender for SmtpSender {
    async fn send(
        &self,
        to: &str,
        subject: &str,
        text: &str,
        html: Option<&str>,
    ) -> Result<(), SendError> {
        let permanent = |reason: &str| SendError {
            reason: reason.into(),
            permanent: true,
        };
        let to: Mailbox = to
            .parse()
            .map_err(|_| permanent("the recipient is not a mailbox"))?;
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(None)
            .header(lettre::message::header::MIME_VERSION_1_0);
        let message = match html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                text.to_string(),
                html.to_string(),
            )),
            None => builder
                .header(lettre::message::header::ContentType::TEXT_PLAIN)
                .body(text.to_string()),
        }
        .map_err(|_| permanent("the message cannot be built"))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| {
            // The kind of failure, never the message. A 5xx answer, or an address the server
            // cannot take (a non-ASCII local part without SMTPUTF8), is for good.
            let (reason, permanent) = if e.is_permanent() {
                ("the SMTP server refused the message (5xx)", true)
            } else if e.is_client() {
                (
                    "the SMTP server cannot take this message or address (SMTPUTF8?)",
                    true,
                )
            } else if e.is_transient() {
                ("temporary SMTP failure (4xx)", false)
            } else if e.is_timeout() {
                ("SMTP timed out", false)
            } else {
                ("SMTP connection failed", false)
            };
            SendError {
                reason: reason.into(),
                permanent,
            }
        })
    }
}
