//! The mail outbox (invariant 10): messages written in the transaction that makes them
//! necessary, claimed by one replica at a time, retried with backoff and dead after the last
//! attempt. Times are milliseconds since the Unix epoch.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreResult;

/// A message in the outbox.
#[derive(Clone)]
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
pub struct OutboxMail {
    pub id: Uuid,
    pub recipient: String,
    pub subject: String,
    /// The text body, sealed under the master key (bound to `mail:<id>`): it may hold a link
    /// with a token.
    pub body_sealed: Vec<u8>,
    /// The HTML part, sealed likewise (bound to `mail-html:<id>`); none in messages queued
    /// before HTML parts existed.
    pub html_sealed: Option<Vec<u8>>,
    pub created_at: i64,
    /// Attempts made so far (a claim counts as one).
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub claimed_until: Option<i64>,
    pub sent_at: Option<i64>,
    pub dead_at: Option<i64>,
    pub last_error: Option<String>,
}

impl std::fmt::Debug for OutboxMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxMail")
            .field("id", &self.id)
            .field("attempts", &self.attempts)
            .field("sent_at", &self.sent_at)
            .field("dead_at", &self.dead_at)
            .finish_non_exhaustive()
    }
}

/// The outbox.
#[async_trait]
pub trait MailOutbox {
    /// Claims up to `limit` messages due at `now` for sending until `lease_until`, counting an
    /// attempt for each. On Postgres, rows another replica is claiming are skipped
    /// (`FOR UPDATE SKIP LOCKED`), so no message is claimed twice at once.
    async fn claim_mail(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<OutboxMail>>;
    /// Marks a claimed message sent.
    async fn mail_sent(&self, id: Uuid, now: i64) -> StoreResult<()>;
    /// Records a failed attempt: retried at `next_attempt_at`, or dead (`dead`).
    async fn mail_failed(
        &self,
        id: Uuid,
        error: &str,
        next_attempt_at: i64,
        dead: bool,
        now: i64,
    ) -> StoreResult<()>;
    /// Whether a message with this subject was queued to `recipient` since `since` (ms).
    async fn mail_queued_since(
        &self,
        recipient: &str,
        subject: &str,
        since: i64,
    ) -> StoreResult<bool>;
    /// Queues a message that carries no token.
    async fn queue_mail(&self, mail: &OutboxMail) -> StoreResult<()>;
    /// Messages neither sent nor dead (for metrics and tests).
    async fn mail_pending(&self) -> StoreResult<i64>;
}
