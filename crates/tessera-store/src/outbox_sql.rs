//! The SQL of the mail outbox (`outbox.rs`).

use async_trait::async_trait;
use uuid::Uuid;

use super::backend::{on_backend, Backend, SqlStore};
use super::{MailOutbox, OutboxMail, StoreResult};

pub(crate) const INSERT_MAIL: &str = "
    INSERT INTO mail_outbox (id, recipient, subject, body_sealed, html_sealed, created_at,
                             next_attempt_at)
    VALUES ($1, $2, $3, $4, $5, $6, $6)";

/// `INSERT_MAIL` with the outbox row `$m` bound, ready to execute on either backend's pool or
/// transaction (the one place its binding order lives).
macro_rules! insert_mail {
    ($m:expr) => {
        sqlx::query($crate::outbox_sql::INSERT_MAIL)
            .bind($m.id)
            .bind(&$m.recipient)
            .bind(&$m.subject)
            .bind(&$m.body_sealed)
            .bind(&$m.html_sealed)
            .bind($m.created_at)
    };
}
pub(crate) use insert_mail;

/// Postgres: rows being claimed elsewhere are skipped, so two replicas never hold one.
const CLAIM_PG: &str = "
    UPDATE mail_outbox SET claimed_until = $2, attempts = attempts + 1
    WHERE id IN (
        SELECT id FROM mail_outbox
        WHERE sent_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $1
          AND (claimed_until IS NULL OR claimed_until < $1)
        ORDER BY next_attempt_at LIMIT $3
        FOR UPDATE SKIP LOCKED)
    RETURNING *";

/// SQLite has one writer: the statement is the claim.
const CLAIM_SQLITE: &str = "
    UPDATE mail_outbox SET claimed_until = $2, attempts = attempts + 1
    WHERE id IN (
        SELECT id FROM mail_outbox
        WHERE sent_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $1
          AND (claimed_until IS NULL OR claimed_until < $1)
        ORDER BY next_attempt_at LIMIT $3)
    RETURNING *";

const SENT: &str = "UPDATE mail_outbox SET sent_at = $2, claimed_until = NULL WHERE id = $1";

const FAILED: &str = "
    UPDATE mail_outbox
    SET last_error = $2, next_attempt_at = $3, claimed_until = NULL,
        dead_at = CASE WHEN $4 THEN $5 ELSE NULL END
    WHERE id = $1 AND sent_at IS NULL";

const QUEUED_SINCE: &str = "
    SELECT COUNT(*) FROM mail_outbox WHERE recipient = $1 AND subject = $2 AND created_at >= $3";

const PENDING: &str = "SELECT COUNT(*) FROM mail_outbox WHERE sent_at IS NULL AND dead_at IS NULL";

#[async_trait]
impl MailOutbox for SqlStore {
    async fn claim_mail(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<OutboxMail>> {
        let rows: Vec<OutboxMail> = match self {
            SqlStore::Postgres(b) => {
                sqlx::query_as(CLAIM_PG)
                    .bind(now)
                    .bind(lease_until)
                    .bind(limit)
                    .fetch_all(b.pool())
                    .await?
            }
            SqlStore::Sqlite(b) => {
                sqlx::query_as(CLAIM_SQLITE)
                    .bind(now)
                    .bind(lease_until)
                    .bind(limit)
                    .fetch_all(b.pool())
                    .await?
            }
        };
        Ok(rows)
    }

    async fn mail_sent(&self, id: Uuid, now: i64) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(SENT)
            .bind(id)
            .bind(now)
            .execute(b.pool())
            .await
            .map(|_| ()))?;
        Ok(())
    }

    async fn mail_failed(
        &self,
        id: Uuid,
        error: &str,
        next_attempt_at: i64,
        dead: bool,
        now: i64,
    ) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(FAILED)
            .bind(id)
            .bind(error)
            .bind(next_attempt_at)
            .bind(dead)
            .bind(now)
            .execute(b.pool())
            .await
            .map(|_| ()))?;
        Ok(())
    }

    async fn mail_queued_since(
        &self,
        recipient: &str,
        subject: &str,
        since: i64,
    ) -> StoreResult<bool> {
        let (n,): (i64,) = on_backend!(self, |b| sqlx::query_as(QUEUED_SINCE)
            .bind(recipient)
            .bind(subject)
            .bind(since)
            .fetch_one(b.pool())
            .await)?;
        Ok(n > 0)
    }

    async fn queue_mail(&self, m: &OutboxMail) -> StoreResult<()> {
        on_backend!(self, |b| insert_mail!(m)
            .execute(b.pool())
            .await
            .map(|_| ()))?;
        Ok(())
    }

    async fn mail_pending(&self) -> StoreResult<i64> {
        let (n,): (i64,) =
            on_backend!(self, |b| sqlx::query_as(PENDING).fetch_one(b.pool()).await)?;
        Ok(n)
    }
}
