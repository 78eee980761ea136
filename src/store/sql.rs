//! The queries, written once for both backends.
//!
//! Postgres and SQLite accept the same SQL here: `$n` placeholders, `RETURNING`,
//! `ON CONFLICT DO NOTHING`, integer timestamps and `CASE` instead of `LEAST`/`min`. The
//! `impl_store!` macro instantiates the `Store` implementation for each pool type, so a query
//! exists exactly once and runs on both in the test suite.

use sqlx::types::Json;
use uuid::Uuid;

use super::{KeyRow, Session, User};

#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    id: Uuid,
    username: String,
    password_hash: String,
    roles: Json<Vec<String>>,
    claims: Json<serde_json::Map<String, serde_json::Value>>,
    disabled: bool,
    tokens_not_before: i64,
    created_at: i64,
    updated_at: i64,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id,
            username: r.username,
            password_hash: r.password_hash,
            roles: r.roles.0,
            claims: r.claims.0,
            disabled: r.disabled,
            tokens_not_before: r.tokens_not_before,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct StatusRow {
    #[sqlx(flatten)]
    user: UserRow,
    session_live: bool,
    jti_revoked: bool,
}

impl StatusRow {
    pub(super) fn into_status(self) -> super::TokenStatus {
        super::TokenStatus {
            user: Some(self.user.into()),
            session_revoked: !self.session_live,
            jti_revoked: self.jti_revoked,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct SessionRow {
    id: Uuid,
    user_id: Uuid,
    generation: i64,
    created_at: i64,
    last_refreshed_at: i64,
    idle_expires_at: i64,
    absolute_expires_at: i64,
    revoked_at: Option<i64>,
    revoked_reason: Option<String>,
    user_agent: Option<String>,
    ip: Option<String>,
    client_id: String,
}

impl From<SessionRow> for Session {
    fn from(r: SessionRow) -> Self {
        Session {
            id: r.id,
            user_id: r.user_id,
            generation: r.generation,
            created_at: r.created_at,
            last_refreshed_at: r.last_refreshed_at,
            idle_expires_at: r.idle_expires_at,
            absolute_expires_at: r.absolute_expires_at,
            revoked_at: r.revoked_at,
            revoked_reason: r.revoked_reason,
            user_agent: r.user_agent,
            ip: r.ip,
            client_id: r.client_id,
        }
    }
}

/// A session row with the user's roles and claims, as the rotation returns it.
#[derive(sqlx::FromRow)]
pub(super) struct GrantRow {
    #[sqlx(flatten)]
    session: SessionRow,
    user_roles: Json<Vec<String>>,
    user_claims: Json<serde_json::Map<String, serde_json::Value>>,
}

impl GrantRow {
    pub(super) fn into_parts(self) -> (Session, super::Grant) {
        let grant = super::Grant {
            roles: self.user_roles.0,
            claims: self.user_claims.0,
        };
        (self.session.into(), grant)
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct KeyDbRow {
    kid: String,
    alg: String,
    private_key_enc: Vec<u8>,
    public_jwk: String,
    created_at: i64,
    publish_at: i64,
    activate_at: i64,
    retire_at: Option<i64>,
    remove_at: Option<i64>,
    succeeds: Option<String>,
}

impl From<KeyDbRow> for KeyRow {
    fn from(r: KeyDbRow) -> Self {
        KeyRow {
            kid: r.kid,
            alg: r.alg,
            private_key_enc: r.private_key_enc,
            public_jwk: r.public_jwk,
            created_at: r.created_at,
            publish_at: r.publish_at,
            activate_at: r.activate_at,
            retire_at: r.retire_at,
            remove_at: r.remove_at,
            succeeds: r.succeeds,
        }
    }
}

/// `ms` rounded down to a whole second. `tokens_not_before` has whole-second granularity because
/// a token's `iat` does: a token issued later in the same second as a cut-off must still pass.
pub(super) fn whole_second(ms: i64) -> i64 {
    ms - ms.rem_euclid(1000)
}

/// How long a finished session or a revoked one is kept before the purge deletes it.
pub(super) const SESSION_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// Implements `Store` for a type with a `pool` field of the given pool type.
macro_rules! impl_store {
    ($store:ty, $migrator:expr, { $($extra:item)* }) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn migrate(&self) -> $crate::store::StoreResult<()> {
                // A dedicated connection: if a migration fails while holding Postgres's advisory
                // lock, the connection is closed (detached and dropped) instead of returning
                // to the pool with the lock still held.
                let mut conn = self.pool.acquire().await?;
                match $migrator.run_direct(None, &mut *conn, false).await {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        drop(conn.detach());
                        Err($crate::store::StoreError::Other(format!("migration failed: {e}")))
                    }
                }
            }

            $($extra)*

            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn create_user(
                &self,
                u: $crate::store::NewUser,
            ) -> $crate::store::StoreResult<$crate::store::User> {
                sqlx::query(
                    "INSERT INTO users (id, username, password_hash, roles, claims, disabled,
                                        tokens_not_before, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, '{}', FALSE, 0, $5, $5)",
                )
                .bind(u.id)
                .bind(&u.username)
                .bind(&u.password_hash)
                .bind(sqlx::types::Json(&u.roles))
                .bind(u.now)
                .execute(&self.pool)
                .await?;
                self.user_by_id(u.id).await?.ok_or_else(|| {
                    $crate::store::StoreError::Other("user vanished after insert".into())
                })
            }

            async fn user_by_username(
                &self,
                username: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::User>> {
                let row: Option<$crate::store::sql::UserRow> = sqlx::query_as(
                    "SELECT id, username, password_hash, roles, claims, disabled, tokens_not_before,
                            created_at, updated_at
                     FROM users WHERE username = $1",
                )
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(Into::into))
            }

            async fn user_by_id(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::User>> {
                let row: Option<$crate::store::sql::UserRow> = sqlx::query_as(
                    "SELECT id, username, password_hash, roles, claims, disabled, tokens_not_before,
                            created_at, updated_at
                     FROM users WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(Into::into))
            }

            async fn list_users(&self) -> $crate::store::StoreResult<Vec<$crate::store::User>> {
                let rows: Vec<$crate::store::sql::UserRow> = sqlx::query_as(
                    "SELECT id, username, password_hash, roles, claims, disabled, tokens_not_before,
                            created_at, updated_at
                     FROM users ORDER BY username",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn set_disabled(
                &self,
                username: &str,
                disabled: bool,
                now: i64,
            ) -> $crate::store::StoreResult<Option<uuid::Uuid>> {
                // Disabling also cuts off every access token issued so far, including those of
                // the current second (and publishes the cut-off in the revocation feed);
                // re-enabling does not bring them back.
                let not_before = $crate::store::sql::whole_second(now) + 1000;
                Ok(sqlx::query_scalar(
                    "UPDATE users SET disabled = $2, updated_at = $3,
                         tokens_not_before = CASE WHEN $2 THEN $4 ELSE tokens_not_before END
                     WHERE username = $1 RETURNING id",
                )
                .bind(username)
                .bind(disabled)
                .bind(now)
                .bind(not_before)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn revoke_user(
                &self,
                user_id: uuid::Uuid,
                reason: &str,
                now: i64,
            ) -> $crate::store::StoreResult<Option<Vec<uuid::Uuid>>> {
                let not_before = $crate::store::sql::whole_second(now);
                let mut tx = self.pool.begin().await?;
                let r = sqlx::query("UPDATE users SET tokens_not_before = $2, updated_at = $3 WHERE id = $1")
                    .bind(user_id)
                    .bind(not_before)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                if r.rows_affected() != 1 {
                    return Ok(None);
                }
                let sessions: Vec<uuid::Uuid> = sqlx::query_scalar(
                    "UPDATE sessions SET revoked_at = $2, revoked_reason = $3
                     WHERE user_id = $1 AND revoked_at IS NULL RETURNING id",
                )
                .bind(user_id)
                .bind(now)
                .bind(reason)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some(sessions))
            }

            async fn set_roles(
                &self,
                username: &str,
                roles: &[String],
                now: i64,
            ) -> $crate::store::StoreResult<Option<uuid::Uuid>> {
                Ok(sqlx::query_scalar(
                    "UPDATE users SET roles = $2, updated_at = $3 WHERE username = $1 RETURNING id",
                )
                .bind(username)
                .bind(sqlx::types::Json(roles))
                .bind(now)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn set_password(
                &self,
                username: &str,
                hash: &str,
                now: i64,
            ) -> $crate::store::StoreResult<Option<(uuid::Uuid, Vec<uuid::Uuid>)>> {
                let not_before = $crate::store::sql::whole_second(now);
                let mut tx = self.pool.begin().await?;
                let id: Option<uuid::Uuid> = sqlx::query_scalar(
                    "UPDATE users SET password_hash = $2, tokens_not_before = $3, updated_at = $4
                     WHERE username = $1 RETURNING id",
                )
                .bind(username)
                .bind(hash)
                .bind(not_before)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(id) = id else {
                    return Ok(None);
                };
                let sessions: Vec<uuid::Uuid> = sqlx::query_scalar(
                    "UPDATE sessions SET revoked_at = $2, revoked_reason = 'password_changed'
                     WHERE user_id = $1 AND revoked_at IS NULL RETURNING id",
                )
                .bind(id)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some((id, sessions)))
            }

            async fn rehash_password(
                &self,
                id: uuid::Uuid,
                old_hash: &str,
                new_hash: &str,
                now: i64,
            ) -> $crate::store::StoreResult<()> {
                // Compare-and-set: a concurrent password change wins over the upgrade.
                sqlx::query(
                    "UPDATE users SET password_hash = $3, updated_at = $4
                     WHERE id = $1 AND password_hash = $2",
                )
                .bind(id)
                .bind(old_hash)
                .bind(new_hash)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn create_session(
                &self,
                s: &$crate::store::Session,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO sessions (id, user_id, generation, created_at, last_refreshed_at,
                                           idle_expires_at, absolute_expires_at, user_agent, ip,
                                           client_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
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
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn session(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::Session>> {
                let row: Option<$crate::store::sql::SessionRow> =
                    sqlx::query_as("SELECT * FROM sessions WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(Into::into))
            }

            async fn rotate_session(
                &self,
                id: uuid::Uuid,
                generation: i64,
                client_id: &str,
                now: i64,
                idle_ttl_ms: i64,
                grace_ms: i64,
            ) -> $crate::store::StoreResult<$crate::store::Rotation> {
                use $crate::store::Rotation;
                // Invariant 1: exactly one request moves the family from g to g+1. The WHERE
                // clause is the whole check, so two concurrent refreshes cannot both win.
                // The user's roles and claims come back with the row, so a refresh is one
                // round trip; the EXISTS clause has already refused disabled users.
                let mut conn = self.rotation_conn().await?;
                let rotated: Option<$crate::store::sql::GrantRow> = sqlx::query_as(
                    "UPDATE sessions
                     SET generation = generation + 1,
                         last_refreshed_at = $3,
                         idle_expires_at = CASE WHEN $4 < absolute_expires_at
                                                THEN $4 ELSE absolute_expires_at END
                     WHERE id = $1 AND generation = $2 AND revoked_at IS NULL
                       AND idle_expires_at > $3 AND absolute_expires_at > $3 AND client_id = $5
                       AND EXISTS (SELECT 1 FROM users u
                                   WHERE u.id = sessions.user_id AND NOT u.disabled)
                     RETURNING *,
                       (SELECT u.roles FROM users u WHERE u.id = sessions.user_id) AS user_roles,
                       (SELECT u.claims FROM users u WHERE u.id = sessions.user_id) AS user_claims",
                )
                .bind(id)
                .bind(generation)
                .bind(now)
                .bind(now.saturating_add(idle_ttl_ms))
                .bind(client_id)
                .fetch_optional(&mut *conn)
                .await?;
                conn.release();
                if let Some(row) = rotated {
                    let (session, grant) = row.into_parts();
                    return Ok(Rotation::Rotated(session, grant));
                }
                // RFC 9700 §4.14.2: an old token presented outside the grace window means the
                // token leaked; revoke the whole family. One statement, so a retry that is
                // inside the window can never be mistaken for reuse.
                let revoked: Option<(uuid::Uuid,)> = sqlx::query_as(
                    "UPDATE sessions
                     SET revoked_at = $3, revoked_reason = 'refresh_token_reuse'
                     WHERE id = $1 AND revoked_at IS NULL AND generation > $2
                       AND NOT (generation = $2 + 1 AND last_refreshed_at > $3 - $4)
                     RETURNING id",
                )
                .bind(id)
                .bind(generation)
                .bind(now)
                .bind(grace_ms)
                .fetch_optional(&self.pool)
                .await?;
                if revoked.is_some() {
                    return Ok(Rotation::ReuseDetected);
                }
                // Inside the grace window: the same successor is the answer, if the family is
                // still usable.
                let retry: Option<$crate::store::sql::GrantRow> = sqlx::query_as(
                    "SELECT s.*, u.roles AS user_roles, u.claims AS user_claims
                     FROM sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.id = $1 AND s.generation = $2 + 1 AND s.revoked_at IS NULL
                       AND s.last_refreshed_at > $3 - $4
                       AND s.idle_expires_at > $3 AND s.absolute_expires_at > $3
                       AND s.client_id = $5 AND NOT u.disabled",
                )
                .bind(id)
                .bind(generation)
                .bind(now)
                .bind(grace_ms)
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(match retry {
                    Some(row) => {
                        let (session, grant) = row.into_parts();
                        Rotation::Retry(session, grant)
                    }
                    None => Rotation::Invalid,
                })
            }

            async fn revoke_session(
                &self,
                id: uuid::Uuid,
                reason: &str,
                now: i64,
            ) -> $crate::store::StoreResult<bool> {
                let r = sqlx::query(
                    "UPDATE sessions SET revoked_at = $2, revoked_reason = $3
                     WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(now)
                .bind(reason)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn revoke_token(
                &self,
                t: &$crate::store::RevokedToken,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO revoked_tokens (jti, user_id, session_id, expires_at, revoked_at, reason)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (jti) DO NOTHING",
                )
                .bind(&t.jti)
                .bind(t.user_id)
                .bind(t.session_id)
                .bind(t.expires_at)
                .bind(t.revoked_at)
                .bind(&t.reason)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn token_status(
                &self,
                user_id: uuid::Uuid,
                session_id: uuid::Uuid,
                jti: &str,
            ) -> $crate::store::StoreResult<$crate::store::TokenStatus> {
                // One round trip for every revocation check of invariant 2.
                let row: Option<$crate::store::sql::StatusRow> = sqlx::query_as(
                    "SELECT u.id, u.username, u.password_hash, u.roles, u.claims, u.disabled,
                            u.tokens_not_before, u.created_at, u.updated_at,
                            EXISTS (SELECT 1 FROM sessions s
                                    WHERE s.id = $2 AND s.user_id = u.id
                                      AND s.revoked_at IS NULL) AS session_live,
                            EXISTS (SELECT 1 FROM revoked_tokens r WHERE r.jti = $3) AS jti_revoked
                     FROM users u WHERE u.id = $1",
                )
                .bind(user_id)
                .bind(session_id)
                .bind(jti)
                .fetch_optional(&self.pool)
                .await?;
                Ok(match row {
                    Some(r) => r.into_status(),
                    None => $crate::store::TokenStatus {
                        user: None,
                        session_revoked: true,
                        jti_revoked: false,
                    },
                })
            }

            async fn purge_expired(&self, now: i64) -> $crate::store::StoreResult<u64> {
                let cutoff = now - $crate::store::sql::SESSION_RETENTION_MS;
                let a = sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                let b = sqlx::query(
                    "DELETE FROM sessions
                     WHERE absolute_expires_at < $1 OR idle_expires_at < $1 OR revoked_at < $1",
                )
                .bind(cutoff)
                .execute(&self.pool)
                .await?;
                let c = sqlx::query(
                    "DELETE FROM login_throttle WHERE locked_until < $1 AND window_start < $2",
                )
                .bind(now)
                .bind(cutoff)
                .execute(&self.pool)
                .await?;
                Ok(a.rows_affected() + b.rows_affected() + c.rows_affected())
            }

            async fn throttle_locked_until(
                &self,
                account: &str,
                ip: &str,
                now: i64,
            ) -> $crate::store::StoreResult<i64> {
                let until: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(locked_until) FROM login_throttle
                     WHERE (key = $1 OR key = $2) AND locked_until > $3",
                )
                .bind(account)
                .bind(ip)
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
                Ok(until.unwrap_or(0))
            }

            async fn throttle_fail(
                &self,
                key: &str,
                now: i64,
                window_cutoff: i64,
            ) -> $crate::store::StoreResult<i64> {
                // One upsert, so concurrent failures are all counted.
                let n: i64 = sqlx::query_scalar(
                    "INSERT INTO login_throttle (key, failures, window_start, locked_until)
                     VALUES ($1, 1, $2, 0)
                     ON CONFLICT (key) DO UPDATE SET
                       failures = CASE WHEN login_throttle.window_start < $3
                                       THEN 1 ELSE login_throttle.failures + 1 END,
                       window_start = CASE WHEN login_throttle.window_start < $3
                                           THEN $2 ELSE login_throttle.window_start END
                     RETURNING failures",
                )
                .bind(key)
                .bind(now)
                .bind(window_cutoff)
                .fetch_one(&self.pool)
                .await?;
                Ok(n)
            }

            async fn throttle_lock(&self, key: &str, until: i64) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE login_throttle SET locked_until = $2 WHERE key = $1 AND locked_until < $2")
                    .bind(key)
                    .bind(until)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn throttle_clear(&self, key: &str) -> $crate::store::StoreResult<()> {
                sqlx::query("DELETE FROM login_throttle WHERE key = $1")
                    .bind(key)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn keys(&self) -> $crate::store::StoreResult<Vec<$crate::store::KeyRow>> {
                let rows: Vec<$crate::store::sql::KeyDbRow> =
                    sqlx::query_as("SELECT * FROM signing_keys ORDER BY activate_at, kid")
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn insert_key(&self, k: &$crate::store::KeyRow) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, private_key_enc, public_jwk, created_at,
                                               publish_at, activate_at, retire_at, remove_at, succeeds)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&k.kid)
                .bind(&k.alg)
                .bind(&k.private_key_enc)
                .bind(&k.public_jwk)
                .bind(k.created_at)
                .bind(k.publish_at)
                .bind(k.activate_at)
                .bind(k.retire_at)
                .bind(k.remove_at)
                .bind(&k.succeeds)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn rotate_keys(
                &self,
                k: &$crate::store::KeyRow,
                retire_at: i64,
                remove_at: i64,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, private_key_enc, public_jwk, created_at,
                                               publish_at, activate_at, retire_at, remove_at, succeeds)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8)",
                )
                .bind(&k.kid)
                .bind(&k.alg)
                .bind(&k.private_key_enc)
                .bind(&k.public_jwk)
                .bind(k.created_at)
                .bind(k.publish_at)
                .bind(k.activate_at)
                .bind(&k.succeeds)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE signing_keys SET retire_at = $2, remove_at = $3
                     WHERE kid <> $1 AND (retire_at IS NULL OR retire_at > $2)",
                )
                .bind(&k.kid)
                .bind(retire_at)
                .bind(remove_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn revocations_since(
                &self,
                since: i64,
                now: i64,
                horizon_ms: i64,
            ) -> $crate::store::StoreResult<$crate::store::RevocationFeed> {
                let oldest = now - horizon_ms;
                let tokens: Vec<(String, i64, i64)> = sqlx::query_as(
                    "SELECT jti, expires_at, revoked_at FROM revoked_tokens
                     WHERE revoked_at >= $1 AND expires_at > $2 ORDER BY revoked_at",
                )
                .bind(since)
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
                let sessions: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
                    "SELECT id, revoked_at FROM sessions
                     WHERE revoked_at >= $1 AND revoked_at > $2 ORDER BY revoked_at",
                )
                .bind(since)
                .bind(oldest)
                .fetch_all(&self.pool)
                .await?;
                let users: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
                    "SELECT id, tokens_not_before FROM users
                     WHERE tokens_not_before >= $1 AND tokens_not_before > $2
                     ORDER BY tokens_not_before",
                )
                .bind(since)
                .bind(oldest)
                .fetch_all(&self.pool)
                .await?;
                Ok($crate::store::RevocationFeed { tokens, sessions, users })
            }

            async fn users_changed_since(
                &self,
                since: i64,
            ) -> $crate::store::StoreResult<Vec<(uuid::Uuid, i64)>> {
                Ok(sqlx::query_as("SELECT id, updated_at FROM users WHERE updated_at >= $1")
                    .bind(since)
                    .fetch_all(&self.pool)
                    .await?)
            }
        }
    };
}

pub(super) use impl_store;
