//! The SQL of SSO sessions and consents (`oidc.rs`); the codes are in `codes.rs`.

use async_trait::async_trait;
use uuid::Uuid;

use super::backend::{on_backend, Backend, SqlStore};
use sqlx::types::Json;

use super::{SsoSession, SsoStore, StoreResult, User};

/// The columns of `UserColumns`, from the users row `u`.
macro_rules! user_columns {
    () => {
        "u.id AS u_id, u.username AS u_username, u.password_hash AS u_password_hash,
         u.roles AS u_roles, u.claims AS u_claims, u.disabled AS u_disabled,
         u.tokens_not_before AS u_tokens_not_before, u.created_at AS u_created_at,
         u.updated_at AS u_updated_at, u.email AS u_email, u.email_verified AS u_email_verified"
    };
}
pub(super) use user_columns;

/// A new SSO session, inserted only while its user is enabled and the user's cut-off is still
/// the fence read with the credential (`$12`; invariant 2), as a login's refresh session is
/// (`sessions.rs`). On Postgres the user row is held (`FOR SHARE`) until the statement commits:
/// a password change, disable or cut-off either committed before (the fence fails, nothing is
/// inserted) or waits for the session to exist, and then ends it with the user's others.
macro_rules! insert_sso {
    ($from:literal, $lock:literal) => {
        concat!(
            "
    INSERT INTO sso_sessions (id, user_id, token_hash, auth_time, amr, created_at, last_seen_at,
                              idle_expires_at, absolute_expires_at, ip, user_agent)
    SELECT $1, u.id, $3, $4, $5, $6, $7, $8, $9, $10, $11 ",
            $from,
            "
    WHERE u.id = $2 AND NOT u.disabled AND u.tokens_not_before = $12 ",
            $lock
        )
    };
}
const INSERT_SSO_PG: &str = insert_sso!("FROM users u", "FOR SHARE");
const INSERT_SSO: &str = insert_sso!("FROM users u", "");
/// After a second step: also only while its challenge (`$13`) is stored, and held, as
/// `CREATE_AFTER_CHALLENGE_PG` in `sessions.rs` (a factor change drops the challenges first).
const INSERT_SSO_AFTER_CHALLENGE_PG: &str = insert_sso!(
    "FROM users u JOIN mfa_challenges c ON c.user_id = u.id AND c.token_hash = $13",
    "FOR SHARE OF u, c"
);
const INSERT_SSO_AFTER_CHALLENGE: &str = insert_sso!(
    "FROM users u JOIN mfa_challenges c ON c.user_id = u.id AND c.token_hash = $13",
    ""
);

const SSO_BY_TOKEN: &str = "SELECT * FROM sso_sessions WHERE token_hash = $1";

const SSO_BY_ID: &str = "SELECT * FROM sso_sessions WHERE id = $1";

const TOUCH_SSO: &str = "
    UPDATE sso_sessions
    SET last_seen_at = $2,
        idle_expires_at = CASE WHEN $3 < absolute_expires_at THEN $3 ELSE absolute_expires_at END
    WHERE id = $1 AND revoked_at IS NULL";

/// A live session signed in again, under the same fence as `insert_sso` (`$8` the user, `$9`
/// the cut-off read with the credential, `$10` the challenge after a second step).
macro_rules! reauth_sso {
    ($from:literal, $lock:literal) => {
        concat!(
            "
    UPDATE sso_sessions SET token_hash = $2, auth_time = $3, amr = $4, last_seen_at = $5,
                            idle_expires_at = $6, absolute_expires_at = $7
    WHERE id = $1 AND revoked_at IS NULL AND user_id IN (
        SELECT u.id ",
            $from,
            "
        WHERE u.id = $8 AND NOT u.disabled AND u.tokens_not_before = $9 ",
            $lock,
            ")"
        )
    };
}
const REAUTH_SSO_PG: &str = reauth_sso!("FROM users u", "FOR SHARE OF u");
const REAUTH_SSO: &str = reauth_sso!("FROM users u", "");
const REAUTH_SSO_AFTER_CHALLENGE_PG: &str = reauth_sso!(
    "FROM users u JOIN mfa_challenges c ON c.user_id = u.id AND c.token_hash = $10",
    "FOR SHARE OF u, c"
);
const REAUTH_SSO_AFTER_CHALLENGE: &str = reauth_sso!(
    "FROM users u JOIN mfa_challenges c ON c.user_id = u.id AND c.token_hash = $10",
    ""
);

const REVOKE_SSO: &str = "
    UPDATE sso_sessions SET revoked_at = $3, revoked_reason = $2
    WHERE id = $1 AND revoked_at IS NULL";

const SESSIONS_OF_SSO: &str = "
    SELECT id FROM sessions
    WHERE sso_session_id = $1 AND revoked_at IS NULL AND absolute_expires_at > $2";

const CLIENTS_OF_SSO: &str = "
    SELECT DISTINCT client_id FROM sessions WHERE sso_session_id = $1 ORDER BY client_id";

const SSO_OF_USER: &str = "
    SELECT * FROM sso_sessions WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2";

const CONSENT: &str = "SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2";

const GRANT_CONSENT: &str = "
    INSERT INTO consents (user_id, client_id, scope, granted_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (user_id, client_id) DO UPDATE
    SET scope = excluded.scope, granted_at = excluded.granted_at";

/// A user's columns under a `u_` prefix, beside another record's in one row (a LEFT JOIN
/// leaves them null): `USER_COLUMNS` selects them from `u`.
#[derive(sqlx::FromRow)]
pub(super) struct UserColumns {
    u_id: Option<Uuid>,
    u_username: Option<String>,
    u_password_hash: Option<String>,
    u_roles: Option<Json<Vec<String>>>,
    u_claims: Option<Json<serde_json::Map<String, serde_json::Value>>>,
    u_disabled: Option<bool>,
    u_tokens_not_before: Option<i64>,
    u_created_at: Option<i64>,
    u_updated_at: Option<i64>,
    u_email: Option<String>,
    u_email_verified: Option<bool>,
}

impl UserColumns {
    pub(super) fn into_user(self) -> Option<User> {
        Some(User {
            id: self.u_id?,
            username: self.u_username?,
            password_hash: self.u_password_hash?,
            roles: self.u_roles?.0,
            claims: self.u_claims?.0,
            disabled: self.u_disabled?,
            tokens_not_before: self.u_tokens_not_before?,
            created_at: self.u_created_at?,
            updated_at: self.u_updated_at?,
            email: self.u_email,
            email_verified: self.u_email_verified.unwrap_or(false),
        })
    }
}

/// An SSO session with its user, as `/authorize` reads them: one round trip.
#[derive(sqlx::FromRow)]
struct SsoWithUser {
    #[sqlx(flatten)]
    sso: SsoSession,
    #[sqlx(flatten)]
    user: UserColumns,
    has_factor: bool,
}

const SSO_WITH_USER: &str = concat!(
    "SELECT s.*, ",
    user_columns!(),
    ", EXISTS (SELECT 1 FROM mfa_factors f
               WHERE f.user_id = u.id AND f.confirmed_at IS NOT NULL) AS has_factor
     FROM sso_sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1"
);

#[async_trait]
impl SsoStore for SqlStore {
    async fn create_sso_session(
        &self,
        s: &SsoSession,
        fence: i64,
        challenge: Option<&str>,
    ) -> StoreResult<bool> {
        let sql = self.fenced(
            challenge.is_some(),
            [
                INSERT_SSO_PG,
                INSERT_SSO,
                INSERT_SSO_AFTER_CHALLENGE_PG,
                INSERT_SSO_AFTER_CHALLENGE,
            ],
        );
        let n = on_backend!(self, |b| {
            let mut q = sqlx::query(sql)
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
                .bind(fence);
            // Only the statements after a challenge have a `$13`.
            if let Some(challenge) = challenge {
                q = q.bind(challenge);
            }
            q.execute(b.pool()).await.map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    async fn sso_session_by_token(&self, token_hash: &str) -> StoreResult<Option<SsoSession>> {
        let row: Option<SsoSession> = on_backend!(self, |b| sqlx::query_as(SSO_BY_TOKEN)
            .bind(token_hash)
            .fetch_optional(b.pool())
            .await)?;
        Ok(row)
    }

    async fn sso_session_with_user(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<(SsoSession, User, bool)>> {
        let row: Option<SsoWithUser> = on_backend!(self, |b| sqlx::query_as(SSO_WITH_USER)
            .bind(token_hash)
            .fetch_optional(b.pool())
            .await)?;
        Ok(row.and_then(|r| Some((r.sso, r.user.into_user()?, r.has_factor))))
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

    async fn reauthenticate_sso_session(
        &self,
        s: &SsoSession,
        fence: i64,
        challenge: Option<&str>,
    ) -> StoreResult<bool> {
        let sql = self.fenced(
            challenge.is_some(),
            [
                REAUTH_SSO_PG,
                REAUTH_SSO,
                REAUTH_SSO_AFTER_CHALLENGE_PG,
                REAUTH_SSO_AFTER_CHALLENGE,
            ],
        );
        let n = on_backend!(self, |b| {
            let mut q = sqlx::query(sql)
                .bind(s.id)
                .bind(&s.token_hash)
                .bind(s.auth_time)
                .bind(&s.amr)
                .bind(s.last_seen_at)
                .bind(s.idle_expires_at)
                .bind(s.absolute_expires_at)
                .bind(s.user_id)
                .bind(fence);
            // Only the statements after a challenge have a `$10`.
            if let Some(challenge) = challenge {
                q = q.bind(challenge);
            }
            q.execute(b.pool()).await.map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
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
