//! The denylist of access tokens, and the one read that checks every revocation rule of
//! invariant 2 for a token.

use async_trait::async_trait;
use uuid::Uuid;

use super::backend::{on_backend, Backend, SqlStore};
use super::{DenylistStore, RevokedToken, StoreResult, TokenStatus, User};

/// Idempotent: denylisting a `jti` twice keeps the first row.
const INSERT: &str = "
    INSERT INTO revoked_tokens (jti, user_id, session_id, expires_at, revoked_at, reason)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (jti) DO NOTHING";

/// One round trip for every revocation check of invariant 2.
const TOKEN_STATUS: &str = "
    SELECT u.id, u.username, u.password_hash, u.roles, u.claims, u.disabled,
           u.tokens_not_before, u.created_at, u.updated_at, u.email, u.email_verified,
           EXISTS (SELECT 1 FROM sessions s
                   WHERE s.id = $2 AND s.user_id = u.id
                     AND s.revoked_at IS NULL) AS session_live,
           EXISTS (SELECT 1 FROM revoked_tokens r WHERE r.jti = $3) AS jti_revoked
    FROM users u WHERE u.id = $1";

#[derive(sqlx::FromRow)]
struct StatusRow {
    #[sqlx(flatten)]
    user: User,
    session_live: bool,
    jti_revoked: bool,
}

#[async_trait]
impl DenylistStore for SqlStore {
    async fn revoke_token(&self, t: &RevokedToken) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(INSERT)
            .bind(&t.jti)
            .bind(t.user_id)
            .bind(t.session_id)
            .bind(t.expires_at)
            .bind(t.revoked_at)
            .bind(&t.reason)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    async fn token_status(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        jti: &str,
    ) -> StoreResult<TokenStatus> {
        let row: Option<StatusRow> = on_backend!(self, |b| sqlx::query_as(TOKEN_STATUS)
            .bind(user_id)
            .bind(session_id)
            .bind(jti)
            .fetch_optional(b.pool())
            .await)?;
        Ok(match row {
            Some(r) => TokenStatus {
                user: Some(r.user),
                session_revoked: !r.session_live,
                jti_revoked: r.jti_revoked,
            },
            None => TokenStatus {
                user: None,
                session_revoked: true,
                jti_revoked: false,
            },
        })
    }
}
