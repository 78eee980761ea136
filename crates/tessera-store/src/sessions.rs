//! Sessions: one row per refresh-token family, and its atomic rotation (invariant 1).

use async_trait::async_trait;
use sqlx::types::Json;
use uuid::Uuid;

use super::backend::{on_backend, Backend, Release, SqlStore};
use super::{Rotation, RotationAttempt, Session, SessionStore, StoreResult, SubjectClaims};

/// The text of the statements that create a login's session: its user read by `$from` (with
/// the conditions), locked by `$lock` (Postgres's `FOR SHARE …`, or nothing).
macro_rules! create_session {
    ($from:literal, $lock:literal) => {
        concat!(
            "
    INSERT INTO sessions (id, user_id, generation, created_at, last_refreshed_at,
                          idle_expires_at, absolute_expires_at, user_agent, ip, client_id,
                          scope, resource, sso_session_id, amr)
    SELECT $1, u.id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 ",
            $from,
            "
    WHERE u.id = $2 AND NOT u.disabled AND u.tokens_not_before = $15 ",
            $lock,
            "
    RETURNING (SELECT u.roles FROM users u WHERE u.id = sessions.user_id) AS roles,
              (SELECT u.claims FROM users u WHERE u.id = sessions.user_id) AS claims"
        )
    };
}

/// A login's session, created in one statement only while its user is enabled and the user's
/// cut-off is still the fence read with the password (invariant 7); the user's roles and claims
/// come back with it. On Postgres the user row is locked (`FOR SHARE`) until the statement
/// commits: a concurrent password change, disable or cut-off either committed before (the
/// fence fails, no row) or waits for the session to exist, and then revokes it with the
/// user's other sessions. SQLite runs one writer at a time, and the statement commits as one.
const CREATE_PG: &str = create_session!("FROM users u", "FOR SHARE");
const CREATE: &str = create_session!("FROM users u", "");

/// As `CREATE_PG`, for a login completed with a second factor: also only while its challenge
/// (`$16`, the mfa_token's digest, used by then) is still stored, and held (`FOR SHARE`) until
/// the statement commits. A factor change drops the user's challenges before it ends the
/// user's other sessions: a login that held its challenge first has its session ended with
/// them, and one that comes after finds no challenge and creates nothing.
const CREATE_AFTER_CHALLENGE_PG: &str = create_session!(
    "FROM users u JOIN mfa_challenges c ON c.user_id = u.id AND c.token_hash = $16",
    "FOR SHARE OF u, c"
);
const CREATE_AFTER_CHALLENGE: &str = create_session!(
    "FROM users u JOIN mfa_challenges c ON c.user_id = u.id AND c.token_hash = $16",
    ""
);

/// As `CREATE_PG`, for a session made through an SSO session (`$13`; a device approved at the
/// hosted pages): also only while that SSO session has not ended, and held (`FOR SHARE`) until
/// the statement commits, so an ending that wrote first is waited for and refuses it, and one
/// after finds the new session and ends it.
const CREATE_UNDER_SSO_PG: &str = create_session!(
    "FROM users u JOIN sso_sessions s ON s.id = $13 AND s.user_id = u.id AND s.revoked_at IS NULL",
    "FOR SHARE OF u, s"
);
const CREATE_UNDER_SSO: &str = create_session!(
    "FROM users u JOIN sso_sessions s ON s.id = $13 AND s.user_id = u.id AND s.revoked_at IS NULL",
    ""
);

const BY_ID: &str = "SELECT * FROM sessions WHERE id = $1";

const OF_USER: &str = "
    SELECT * FROM sessions WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2";

/// The text of `ROTATE_PG` and `ROTATE`, with the rotation's stamp `$stamp`.
macro_rules! rotate {
    ($stamp:literal) => {
        concat!(
            "
    UPDATE sessions
    SET generation = generation + 1,
        last_refreshed_at = ",
            $stamp,
            ",
        idle_expires_at = CASE WHEN $4 < absolute_expires_at
                               THEN $4 ELSE absolute_expires_at END
    WHERE id = $1 AND generation = $2 AND revoked_at IS NULL
      AND idle_expires_at > $3 AND absolute_expires_at > $3 AND client_id = $5
      AND EXISTS (SELECT 1 FROM users u
                  WHERE u.id = sessions.user_id AND NOT u.disabled)
    RETURNING *,
      (SELECT u.roles FROM users u WHERE u.id = sessions.user_id) AS user_roles,
      (SELECT u.claims FROM users u WHERE u.id = sessions.user_id) AS user_claims"
        )
    };
}

/// Invariant 1: exactly one request moves the family from g to g+1. The WHERE clause is the
/// whole check, so two concurrent refreshes cannot both win. The user's roles and claims come
/// back with the row, so a refresh is one round trip; the EXISTS clause has already refused
/// disabled users.
///
/// The stamp that starts the reuse grace (`last_refreshed_at`) is when the rotation ran, not
/// when its request began: on Postgres a rotation that waited on a lock (a stalled database)
/// commits late, after its request was answered 503, and the client's retry must still find
/// it within the grace. Postgres's clock, bounded to the request's time (`$3`) and one grace
/// (`$6`) after it, so that a database clock that runs ahead lengthens no window by more. On
/// SQLite a rotation never commits after its answer (a lock it waits for past the busy
/// timeout fails it).
const ROTATE_PG: &str = rotate!(
    "LEAST(GREATEST($3, CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS BIGINT)),
                                $3 + $6)"
);
const ROTATE: &str = rotate!("$3");

/// RFC 9700 §4.14.2: an old token presented outside the grace window means the token leaked;
/// revoke the whole family. One statement, so a retry that is inside the window can never be
/// mistaken for reuse.
const REVOKE_ON_REUSE: &str = "
    UPDATE sessions
    SET revoked_at = $3, revoked_reason = 'refresh_token_reuse'
    WHERE id = $1 AND revoked_at IS NULL AND generation > $2
      AND NOT (generation = $2 + 1 AND last_refreshed_at > $3 - $4)
    RETURNING id";

/// Inside the grace window: the same successor is the answer, if the family is still usable.
const RETRY: &str = "
    SELECT s.*, u.roles AS user_roles, u.claims AS user_claims
    FROM sessions s JOIN users u ON u.id = s.user_id
    WHERE s.id = $1 AND s.generation = $2 + 1 AND s.revoked_at IS NULL
      AND s.last_refreshed_at > $3 - $4
      AND s.idle_expires_at > $3 AND s.absolute_expires_at > $3
      AND s.client_id = $5 AND NOT u.disabled";

const REVOKE: &str = "
    UPDATE sessions SET revoked_at = $2, revoked_reason = $3
    WHERE id = $1 AND revoked_at IS NULL";

/// A session row with the user's roles and claims, as the rotation returns it.
#[derive(sqlx::FromRow)]
struct RotatedRow {
    #[sqlx(flatten)]
    session: Session,
    user_roles: Json<Vec<String>>,
    user_claims: Json<serde_json::Map<String, serde_json::Value>>,
}

impl RotatedRow {
    fn into_parts(self) -> (Session, SubjectClaims) {
        let subject = SubjectClaims {
            roles: self.user_roles.0,
            claims: self.user_claims.0,
        };
        (self.session, subject)
    }
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn create_session(
        &self,
        s: &Session,
        fence: i64,
        challenge: Option<&str>,
    ) -> StoreResult<Option<SubjectClaims>> {
        type Subject = (
            Json<Vec<String>>,
            Json<serde_json::Map<String, serde_json::Value>>,
        );
        let sql = match (self, s.sso_session_id, challenge) {
            (SqlStore::Postgres(_), Some(_), None) => CREATE_UNDER_SSO_PG,
            (SqlStore::Sqlite(_), Some(_), None) => CREATE_UNDER_SSO,
            _ => self.fenced(
                challenge.is_some(),
                [
                    CREATE_PG,
                    CREATE,
                    CREATE_AFTER_CHALLENGE_PG,
                    CREATE_AFTER_CHALLENGE,
                ],
            ),
        };
        let subject: Option<Subject> = on_backend!(self, |b| {
            let mut q = sqlx::query_as(sql)
                .bind(s.id)
                .bind(s.user_id)
                .bind(s.generation)
                .bind(s.created_at)
                .bind(s.last_refreshed_at)
                .bind(s.idle_expires_at)
                .bind(s.absolute_expires_at)
                .bind(&s.user_agent)
                .bind(&s.ip)
                .bind(&s.client_id)
                .bind(&s.scope)
                .bind(&s.resource)
                .bind(s.sso_session_id)
                .bind(&s.amr)
                .bind(fence);
            // Only the statements after a challenge have a `$16`.
            if let Some(challenge) = challenge {
                q = q.bind(challenge);
            }
            q.fetch_all(b.pool()).await.map(crate::backend::returned)
        })?;
        Ok(subject.map(|(roles, claims)| SubjectClaims {
            roles: roles.0,
            claims: claims.0,
        }))
    }

    async fn session(&self, id: Uuid) -> StoreResult<Option<Session>> {
        let row: Option<Session> = on_backend!(self, |b| sqlx::query_as(BY_ID)
            .bind(id)
            .fetch_optional(b.pool())
            .await)?;
        Ok(row)
    }

    async fn sessions_of_user(&self, user_id: Uuid, limit: u32) -> StoreResult<Vec<Session>> {
        let rows: Vec<Session> = on_backend!(self, |b| sqlx::query_as(OF_USER)
            .bind(user_id)
            .bind(i64::from(limit))
            .fetch_all(b.pool())
            .await)?;
        Ok(rows)
    }

    async fn rotate_session(&self, a: &RotationAttempt<'_>) -> StoreResult<Rotation> {
        let sql = match self {
            SqlStore::Postgres(_) => ROTATE_PG,
            SqlStore::Sqlite(_) => ROTATE,
        };
        let rotated: Option<RotatedRow> = on_backend!(self, |b| {
            let mut conn = b.rotation_conn().await?;
            // SQLite's statement has no `$6`; an unused trailing argument is refused there.
            let mut q = sqlx::query_as(sql)
                .bind(a.session_id)
                .bind(a.generation)
                .bind(a.now)
                .bind(a.idle_expires_at)
                .bind(a.client_id);
            if matches!(self, SqlStore::Postgres(_)) {
                q = q.bind(a.grace_ms);
            }
            let row = q
                .fetch_all(&mut *conn)
                .await
                .map(crate::backend::returned)?;
            conn.release();
            row
        });
        if let Some(row) = rotated {
            let (session, subject) = row.into_parts();
            return Ok(Rotation::Rotated(session, subject));
        }
        let revoked: Option<(Uuid,)> = on_backend!(self, |b| sqlx::query_as(REVOKE_ON_REUSE)
            .bind(a.session_id)
            .bind(a.generation)
            .bind(a.now)
            .bind(a.grace_ms)
            .fetch_all(b.pool())
            .await
            .map(crate::backend::returned))?;
        if revoked.is_some() {
            return Ok(Rotation::ReuseDetected);
        }
        let retry: Option<RotatedRow> = on_backend!(self, |b| sqlx::query_as(RETRY)
            .bind(a.session_id)
            .bind(a.generation)
            .bind(a.now)
            .bind(a.grace_ms)
            .bind(a.client_id)
            .fetch_optional(b.pool())
            .await)?;
        Ok(match retry {
            Some(row) => {
                let (session, subject) = row.into_parts();
                Rotation::Retry(session, subject)
            }
            None => Rotation::Invalid,
        })
    }

    async fn revoke_session(&self, id: Uuid, reason: &str, now: i64) -> StoreResult<bool> {
        let n = on_backend!(self, |b| sqlx::query(REVOKE)
            .bind(id)
            .bind(now)
            .bind(reason)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }
}
