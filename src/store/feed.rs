//! The change feed: what changed since a point in time (the revocation feed and the in-memory
//! revocation state's poll), and the push notifications between replicas.

use async_trait::async_trait;
use tokio::sync::mpsc::Receiver;
use uuid::Uuid;

use super::backend::{on_backend, Backend, SqlStore};
use super::{ChangeFeed, RevocationFeed, StoreResult};

const REVOKED_TOKENS: &str = "
    SELECT jti, expires_at, revoked_at FROM revoked_tokens
    WHERE revoked_at >= $1 AND expires_at > $2 ORDER BY revoked_at";

const REVOKED_SESSIONS: &str = "
    SELECT id, revoked_at FROM sessions
    WHERE revoked_at >= $1 AND revoked_at > $2 ORDER BY revoked_at";

const USER_CUT_OFFS: &str = "
    SELECT id, tokens_not_before FROM users
    WHERE tokens_not_before >= $1 AND tokens_not_before > $2
    ORDER BY tokens_not_before";

const USERS_CHANGED: &str = "SELECT id, updated_at FROM users WHERE updated_at >= $1";

#[async_trait]
impl ChangeFeed for SqlStore {
    async fn revocations_since(
        &self,
        since: i64,
        now: i64,
        horizon_ms: i64,
    ) -> StoreResult<RevocationFeed> {
        let oldest = now - horizon_ms;
        let tokens: Vec<(String, i64, i64)> =
            on_backend!(self, |b| sqlx::query_as(REVOKED_TOKENS)
                .bind(since)
                .bind(now)
                .fetch_all(b.pool())
                .await)?;
        let sessions: Vec<(Uuid, i64)> = on_backend!(self, |b| sqlx::query_as(REVOKED_SESSIONS)
            .bind(since)
            .bind(oldest)
            .fetch_all(b.pool())
            .await)?;
        let users: Vec<(Uuid, i64)> = on_backend!(self, |b| sqlx::query_as(USER_CUT_OFFS)
            .bind(since)
            .bind(oldest)
            .fetch_all(b.pool())
            .await)?;
        Ok(RevocationFeed {
            tokens,
            sessions,
            users,
        })
    }

    async fn users_changed_since(&self, since: i64) -> StoreResult<Vec<(Uuid, i64)>> {
        Ok(on_backend!(self, |b| sqlx::query_as(USERS_CHANGED)
            .bind(since)
            .fetch_all(b.pool())
            .await)?)
    }

    async fn notify_change(&self, what: &str) -> StoreResult<()> {
        match self {
            SqlStore::Postgres(pg) => pg.notify_change(what).await,
            // One process writes a SQLite file at a time; others see commits by polling.
            SqlStore::Sqlite(_) => Ok(()),
        }
    }

    async fn listen_changes(&self) -> StoreResult<Option<Receiver<String>>> {
        match self {
            SqlStore::Postgres(pg) => pg.listen_changes().await,
            SqlStore::Sqlite(lite) => lite.listen_changes().await,
        }
    }
}
