//! The SQL of device codes (`oidc.rs`, RFC 8628).

use async_trait::async_trait;
use uuid::Uuid;

use super::backend::{on_backend, Backend, SqlStore};
use super::{DeviceApproval, DeviceCode, DeviceStore, StoreResult};

const INSERT: &str = "
    INSERT INTO device_codes (device_code_hash, user_code, client_id, scope, resource,
                              created_at, expires_at, interval_ms)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

const PENDING: &str = "
    SELECT * FROM device_codes WHERE user_code = $1 AND status = 'pending' AND expires_at > $2";

const APPROVE: &str = "
    UPDATE device_codes SET status = 'approved', user_id = $3, sso_session_id = $4,
                            auth_time = $5, amr = $6
    WHERE user_code = $1 AND status = 'pending' AND expires_at > $2";

const DENY: &str = "
    UPDATE device_codes SET status = 'denied'
    WHERE user_code = $1 AND status = 'pending' AND expires_at > $2";

const BY_HASH: &str = "SELECT * FROM device_codes WHERE device_code_hash = $1";

/// The WHERE clause is the whole interval check, so two fast polls cannot both pass.
const POLL: &str = "
    UPDATE device_codes SET last_polled_at = $2
    WHERE device_code_hash = $1 AND last_polled_at + interval_ms <= $2";

/// RFC 8628 §3.5: a poll too soon makes the interval longer, from this poll on.
const SLOW_DOWN: &str = "
    UPDATE device_codes SET interval_ms = interval_ms + $2, last_polled_at = $3
    WHERE device_code_hash = $1";

const USE: &str = "
    UPDATE device_codes SET status = 'used', session_id = $2
    WHERE device_code_hash = $1 AND status = 'approved'
    RETURNING *";

#[async_trait]
impl DeviceStore for SqlStore {
    async fn insert_device_code(&self, c: &DeviceCode) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(INSERT)
            .bind(&c.device_code_hash)
            .bind(&c.user_code)
            .bind(&c.client_id)
            .bind(&c.scope)
            .bind(&c.resource)
            .bind(c.created_at)
            .bind(c.expires_at)
            .bind(c.interval_ms)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn pending_device_code(
        &self,
        user_code: &str,
        now: i64,
    ) -> StoreResult<Option<DeviceCode>> {
        let row: Option<DeviceCode> = on_backend!(self, |b| sqlx::query_as(PENDING)
            .bind(user_code)
            .bind(now)
            .fetch_optional(b.pool())
            .await)?;
        Ok(row)
    }

    async fn decide_device_code(
        &self,
        user_code: &str,
        approval: Option<&DeviceApproval<'_>>,
        now: i64,
    ) -> StoreResult<bool> {
        let n = match approval {
            Some(a) => on_backend!(self, |b| sqlx::query(APPROVE)
                .bind(user_code)
                .bind(now)
                .bind(a.user_id)
                .bind(a.sso_session_id)
                .bind(a.auth_time)
                .bind(a.amr)
                .execute(b.pool())
                .await
                .map(|r| r.rows_affected()))?,
            None => on_backend!(self, |b| sqlx::query(DENY)
                .bind(user_code)
                .bind(now)
                .execute(b.pool())
                .await
                .map(|r| r.rows_affected()))?,
        };
        Ok(n == 1)
    }

    async fn device_code(&self, hash: &str) -> StoreResult<Option<DeviceCode>> {
        let row: Option<DeviceCode> = on_backend!(self, |b| sqlx::query_as(BY_HASH)
            .bind(hash)
            .fetch_optional(b.pool())
            .await)?;
        Ok(row)
    }

    async fn poll_device_code(&self, hash: &str, now: i64, slow_down_ms: i64) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(POLL)
            .bind(hash)
            .bind(now)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        if n == 1 {
            return Ok(true);
        }
        on_backend!(self, |b| sqlx::query(SLOW_DOWN)
            .bind(hash)
            .bind(slow_down_ms)
            .bind(now)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(false)
    }

    async fn use_device_code(
        &self,
        hash: &str,
        session_id: Uuid,
    ) -> StoreResult<Option<DeviceCode>> {
        let row: Option<DeviceCode> = on_backend!(self, |b| sqlx::query_as(USE)
            .bind(hash)
            .bind(session_id)
            .fetch_all(b.pool())
            .await
            .map(crate::backend::returned))?;
        Ok(row)
    }
}
