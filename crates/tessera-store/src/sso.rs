//! The SQL of SSO sessions and authorization codes (`oidc.rs`).

use async_trait::async_trait;
use uuid::Uuid;

use super::backend::{on_backend, Backend, SqlStore};
use super::sessions::insert_session;
use super::{
    AuthorizationCode, CodeExchange, CodeStore, Exchanged, Session, SsoSession, SsoStore,
    StoreError, StoreResult, User,
};

const INSERT_SSO: &str = "
    INSERT INTO sso_sessions (id, user_id, token_hash, auth_time, amr, created_at, last_seen_at,
                              idle_expires_at, absolute_expires_at, ip, user_agent)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

const SSO_BY_TOKEN: &str = "SELECT * FROM sso_sessions WHERE token_hash = $1";

const SSO_BY_ID: &str = "SELECT * FROM sso_sessions WHERE id = $1";

const TOUCH_SSO: &str = "
    UPDATE sso_sessions
    SET last_seen_at = $2,
        idle_expires_at = CASE WHEN $3 < absolute_expires_at THEN $3 ELSE absolute_expires_at END
    WHERE id = $1 AND revoked_at IS NULL";

const REAUTH_SSO: &str = "
    UPDATE sso_sessions SET token_hash = $2, auth_time = $3, amr = $4, last_seen_at = $5,
                            idle_expires_at = $6, absolute_expires_at = $7
    WHERE id = $1 AND revoked_at IS NULL";

const REVOKE_SSO: &str = "
    UPDATE sso_sessions SET revoked_at = $3, revoked_reason = $2
    WHERE id = $1 AND revoked_at IS NULL";

const SESSIONS_OF_SSO: &str = "
    SELECT id FROM sessions
    WHERE sso_session_id = $1 AND revoked_at IS NULL AND absolute_expires_at > $2";

const CLIENTS_OF_SSO: &str = "
    SELECT DISTINCT client_id FROM sessions WHERE sso_session_id = $1 ORDER BY client_id";

const PUSH: &str = "
    INSERT INTO pushed_requests (uri_hash, client_id, params, expires_at) VALUES ($1, $2, $3, $4)";

const PUSHED: &str = "
    SELECT params FROM pushed_requests WHERE uri_hash = $1 AND client_id = $2 AND expires_at > $3";

const TAKE_PUSHED: &str = "
    DELETE FROM pushed_requests WHERE uri_hash = $1 AND client_id = $2 AND expires_at > $3
    RETURNING params";

const SSO_OF_USER: &str = "
    SELECT * FROM sso_sessions WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2";

const CONSENT: &str = "SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2";

const GRANT_CONSENT: &str = "
    INSERT INTO consents (user_id, client_id, scope, granted_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (user_id, client_id) DO UPDATE
    SET scope = excluded.scope, granted_at = excluded.granted_at";

const INSERT_CODE: &str = "
    INSERT INTO authorization_codes (code_hash, client_id, redirect_uri, code_challenge, nonce,
        scope, resource, sso_session_id, user_id, auth_time, amr, created_at, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

/// Invariant 7: the WHERE clause is the whole check, so exactly one exchange wins.
const REDEEM: &str = "
    UPDATE authorization_codes SET used_at = $3, session_id = $2
    WHERE code_hash = $1 AND used_at IS NULL
    RETURNING *";

const MARK_REPLAYED: &str = "
    UPDATE authorization_codes
    SET replayed_at = CASE WHEN replayed_at IS NULL THEN $2 ELSE replayed_at END
    WHERE code_hash = $1
    RETURNING *";

/// The code's user, if enabled and not cut off since its SSO session began, and the SSO
/// session live: the fence the exchange's session is created under (as a login's is).
const EXCHANGE_FENCE_PG: &str = "
    SELECT u.* FROM users u JOIN sso_sessions s ON s.user_id = u.id
    WHERE u.id = $1 AND s.id = $2 AND NOT u.disabled AND s.revoked_at IS NULL
      AND s.idle_expires_at > $3 AND s.absolute_expires_at > $3
      AND s.created_at > u.tokens_not_before
    FOR SHARE OF u";
const EXCHANGE_FENCE: &str = "
    SELECT u.* FROM users u JOIN sso_sessions s ON s.user_id = u.id
    WHERE u.id = $1 AND s.id = $2 AND NOT u.disabled AND s.revoked_at IS NULL
      AND s.idle_expires_at > $3 AND s.absolute_expires_at > $3
      AND s.created_at > u.tokens_not_before";

#[async_trait]
impl SsoStore for SqlStore {
    async fn create_sso_session(&self, s: &SsoSession) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(INSERT_SSO)
            .bind(s.id)
            .bind(s.user_id)
            .bind(&s.token_hash)
            .bind(s.auth_time)
            .bind(&s.amr)
            .bind(s.created_at)
            .bind(s.last_seen_at)
            .bind(s.idle_expires_at)
            .bind(s.absolute_expires_at)
            .bind(&s.ip)
            .bind(&s.user_agent)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn sso_session_by_token(&self, token_hash: &str) -> StoreResult<Option<SsoSession>> {
        let row: Option<SsoSession> = on_backend!(self, |b| sqlx::query_as(SSO_BY_TOKEN)
            .bind(token_hash)
            .fetch_optional(b.pool())
            .await)?;
        Ok(row)
    }

    async fn sso_session(&self, id: Uuid) -> StoreResult<Option<SsoSession>> {
        let row: Option<SsoSession> = on_backend!(self, |b| sqlx::query_as(SSO_BY_ID)
            .bind(id)
            .fetch_optional(b.pool())
            .await)?;
        Ok(row)
    }

    async fn touch_sso_session(&self, id: Uuid, now: i64, idle_expires_at: i64) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(TOUCH_SSO)
            .bind(id)
            .bind(now)
            .bind(idle_expires_at)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn reauthenticate_sso_session(&self, s: &SsoSession) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(REAUTH_SSO)
            .bind(s.id)
            .bind(&s.token_hash)
            .bind(s.auth_time)
            .bind(&s.amr)
            .bind(s.last_seen_at)
            .bind(s.idle_expires_at)
            .bind(s.absolute_expires_at)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn revoke_sso_session(&self, id: Uuid, reason: &str, now: i64) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(REVOKE_SSO)
            .bind(id)
            .bind(reason)
            .bind(now)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    async fn sessions_of_sso(&self, id: Uuid, now: i64) -> StoreResult<Vec<Uuid>> {
        let rows: Vec<(Uuid,)> = on_backend!(self, |b| sqlx::query_as(SESSIONS_OF_SSO)
            .bind(id)
            .bind(now)
            .fetch_all(b.pool())
            .await)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn sso_sessions_of_user(
        &self,
        user_id: Uuid,
        limit: u32,
    ) -> StoreResult<Vec<SsoSession>> {
        let rows: Vec<SsoSession> = on_backend!(self, |b| sqlx::query_as(SSO_OF_USER)
            .bind(user_id)
            .bind(i64::from(limit))
            .fetch_all(b.pool())
            .await)?;
        Ok(rows)
    }

    async fn consent(&self, user_id: Uuid, client_id: &str) -> StoreResult<Option<String>> {
        let row: Option<(String,)> = on_backend!(self, |b| sqlx::query_as(CONSENT)
            .bind(user_id)
            .bind(client_id)
            .fetch_optional(b.pool())
            .await)?;
        Ok(row.map(|(s,)| s))
    }

    async fn grant_consent(
        &self,
        user_id: Uuid,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(GRANT_CONSENT)
            .bind(user_id)
            .bind(client_id)
            .bind(scope)
            .bind(now)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn clients_of_sso(&self, id: Uuid) -> StoreResult<Vec<String>> {
        let rows: Vec<(String,)> = on_backend!(self, |b| sqlx::query_as(CLIENTS_OF_SSO)
            .bind(id)
            .fetch_all(b.pool())
            .await)?;
        Ok(rows.into_iter().map(|(c,)| c).collect())
    }
}

#[async_trait]
impl CodeStore for SqlStore {
    async fn push_request(
        &self,
        uri_hash: &str,
        client_id: &str,
        params: &str,
        expires_at: i64,
    ) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(PUSH)
            .bind(uri_hash)
            .bind(client_id)
            .bind(params)
            .bind(expires_at)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn pushed_request(
        &self,
        uri_hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<String>> {
        let row: Option<(String,)> = on_backend!(self, |b| sqlx::query_as(PUSHED)
            .bind(uri_hash)
            .bind(client_id)
            .bind(now)
            .fetch_optional(b.pool())
            .await)?;
        Ok(row.map(|(p,)| p))
    }

    async fn take_pushed_request(
        &self,
        uri_hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<String>> {
        let row: Option<(String,)> = on_backend!(self, |b| sqlx::query_as(TAKE_PUSHED)
            .bind(uri_hash)
            .bind(client_id)
            .bind(now)
            .fetch_optional(b.pool())
            .await)?;
        Ok(row.map(|(p,)| p))
    }

    async fn insert_code(&self, c: &AuthorizationCode) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(INSERT_CODE)
            .bind(&c.code_hash)
            .bind(&c.client_id)
            .bind(&c.redirect_uri)
            .bind(&c.code_challenge)
            .bind(&c.nonce)
            .bind(&c.scope)
            .bind(&c.resource)
            .bind(c.sso_session_id)
            .bind(c.user_id)
            .bind(c.auth_time)
            .bind(&c.amr)
            .bind(c.created_at)
            .bind(c.expires_at)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn exchange_code(&self, x: &CodeExchange<'_>) -> StoreResult<Exchanged> {
        let (begin, fence) = self.locking_tx(EXCHANGE_FENCE_PG, EXCHANGE_FENCE);
        // (`return` inside `on_backend!` would leave this function: each outcome is a value.)
        let outcome: Option<Exchanged> = on_backend!(self, |b| {
            let mut tx = b.pool().begin_with(begin).await?;
            let fresh: Option<AuthorizationCode> = sqlx::query_as(REDEEM)
                .bind(x.code_hash)
                .bind(x.session.id)
                .bind(x.now)
                .fetch_optional(&mut *tx)
                .await?;
            let bound = fresh.as_ref().is_some_and(|code| {
                code.expires_at > x.now
                    && code.client_id == x.client_id
                    && code.redirect_uri == x.redirect_uri
                    && code.code_challenge == x.code_challenge
            });
            let user: Option<User> = match (&fresh, bound) {
                (Some(code), true) => {
                    sqlx::query_as(fence)
                        .bind(code.user_id)
                        .bind(code.sso_session_id)
                        .bind(x.now)
                        .fetch_optional(&mut *tx)
                        .await?
                }
                _ => None,
            };
            match (fresh, user) {
                (None, _) => {
                    tx.rollback().await?;
                    Ok::<_, StoreError>(None)
                }
                // Spent: a code that failed its checks is not tried again.
                (Some(_), None) => {
                    tx.commit().await?;
                    Ok(Some(Exchanged::Refused))
                }
                (Some(code), Some(user)) => {
                    // The session of the code's user, grant and SSO session.
                    let session = Session {
                        user_id: code.user_id,
                        scope: code.scope.clone(),
                        resource: code.resource.clone(),
                        sso_session_id: Some(code.sso_session_id),
                        ..x.session.clone()
                    };
                    insert_session!(&session).execute(&mut *tx).await?;
                    tx.commit().await?;
                    Ok(Some(Exchanged::Issued {
                        code: Box::new(code),
                        user: Box::new(user),
                    }))
                }
            }
        })?;
        if let Some(done) = outcome {
            return Ok(done);
        }
        let used: Option<AuthorizationCode> = on_backend!(self, |b| sqlx::query_as(MARK_REPLAYED)
            .bind(x.code_hash)
            .bind(x.now)
            .fetch_optional(b.pool())
            .await)?;
        Ok(used.map_or(Exchanged::Unknown, |c| Exchanged::Replayed(Box::new(c))))
    }
}
