//! The SQL of back-channel logout deliveries (`oidc.rs`, invariant 10).

use async_trait::async_trait;
use uuid::Uuid;

use super::backend::{on_backend, Backend, SqlStore};
use super::{DeliveryStore, LogoutDelivery, StoreResult};

const INSERT: &str = "
    INSERT INTO backchannel_deliveries (id, client_id, uri, user_id, sso_session_id, created_at,
                                        next_attempt_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// One replica per row: the rows another replica is claiming are skipped, not waited for.
const CLAIM_PG: &str = "
    UPDATE backchannel_deliveries SET locked_until = $2, attempts = attempts + 1
    WHERE id IN (SELECT id FROM backchannel_deliveries
                 WHERE delivered_at IS NULL AND failed_at IS NULL
                   AND next_attempt_at <= $1 AND locked_until <= $1
                 ORDER BY next_attempt_at LIMIT $3
                 FOR UPDATE SKIP LOCKED)
    RETURNING *";

/// SQLite has one writer: the statement is the claim.
const CLAIM: &str = "
    UPDATE backchannel_deliveries SET locked_until = $2, attempts = attempts + 1
    WHERE id IN (SELECT id FROM backchannel_deliveries
                 WHERE delivered_at IS NULL AND failed_at IS NULL
                   AND next_attempt_at <= $1 AND locked_until <= $1
                 ORDER BY next_attempt_at LIMIT $3)
    RETURNING *";

const DONE: &str = "
    UPDATE backchannel_deliveries SET delivered_at = $2, locked_until = 0, last_error = NULL
    WHERE id = $1";

const RETRY: &str = "
    UPDATE backchannel_deliveries SET next_attempt_at = $2, locked_until = 0, last_error = $3
    WHERE id = $1";

const DEAD: &str = "
    UPDATE backchannel_deliveries SET failed_at = $2, locked_until = 0, last_error = $3
    WHERE id = $1";

#[async_trait]
impl DeliveryStore for SqlStore {
    async fn enqueue_deliveries(&self, deliveries: &[LogoutDelivery]) -> StoreResult<()> {
        on_backend!(self, |b| {
            let mut tx = b.pool().begin().await?;
            for d in deliveries {
                sqlx::query(INSERT)
                    .bind(d.id)
                    .bind(&d.client_id)
                    .bind(&d.uri)
                    .bind(d.user_id)
                    .bind(d.sso_session_id)
                    .bind(d.created_at)
                    .bind(d.next_attempt_at)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<LogoutDelivery>> {
        let sql = match self {
            SqlStore::Postgres(_) => CLAIM_PG,
            SqlStore::Sqlite(_) => CLAIM,
        };
        let rows: Vec<LogoutDelivery> = on_backend!(self, |b| sqlx::query_as(sql)
            .bind(now)
            .bind(lease_until)
            .bind(limit)
            .fetch_all(b.pool())
            .await)?;
        Ok(rows)
    }

    async fn delivery_done(&self, id: Uuid, now: i64) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(DONE)
            .bind(id)
            .bind(now)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn delivery_failed(
        &self,
        id: Uuid,
        next_attempt_at: Option<i64>,
        error: &str,
        now: i64,
    ) -> StoreResult<()> {
        let (sql, at) = match next_attempt_at {
            Some(at) => (RETRY, at),
            None => (DEAD, now),
        };
        on_backend!(self, |b| sqlx::query(sql)
            .bind(id)
            .bind(at)
            .bind(error)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }
}
