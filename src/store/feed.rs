//! The change feed: what changed since a point in time (the revocation feed and the in-memory
//! revocation state's poll), and the push notifications between replicas.

use async_trait::async_trait;
use tokio::sync::mpsc::Receiver;
use uuid::Uuid;

use super::backend::{on_backend, Backend, SqlStore};
use super::{ChangeFeed, FeedKind, FeedPage, FeedPosition, RevocationFeed, StoreResult};

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

// The paged feed: entries after a position (time, then key within a time), oldest first.
// `$2` is false when the position's kind sorts after this one (then only later times count),
// `$3` the position's key when the kinds are equal, else the least key. Postgres compares the
// `jti` in the "C" collation, the bytewise order SQLite and Rust use.
const PAGE_TOKENS_PG: &str = "
    SELECT jti, expires_at, revoked_at FROM revoked_tokens
    WHERE (revoked_at > $1 OR (revoked_at = $1 AND $2 AND jti COLLATE \"C\" > $3))
      AND expires_at > $4
    ORDER BY revoked_at, jti COLLATE \"C\" LIMIT $5";
const PAGE_TOKENS_SQLITE: &str = "
    SELECT jti, expires_at, revoked_at FROM revoked_tokens
    WHERE (revoked_at > $1 OR (revoked_at = $1 AND $2 AND jti > $3)) AND expires_at > $4
    ORDER BY revoked_at, jti LIMIT $5";
const PAGE_SESSIONS: &str = "
    SELECT id, revoked_at FROM sessions
    WHERE (revoked_at > $1 OR (revoked_at = $1 AND $2 AND id > $3)) AND revoked_at > $4
    ORDER BY revoked_at, id LIMIT $5";
const PAGE_USERS: &str = "
    SELECT id, tokens_not_before FROM users
    WHERE (tokens_not_before > $1 OR (tokens_not_before = $1 AND $2 AND id > $3))
      AND tokens_not_before > $4
    ORDER BY tokens_not_before, id LIMIT $5";

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

    async fn revocations_page(
        &self,
        after: &FeedPosition,
        now: i64,
        horizon_ms: i64,
        limit: usize,
    ) -> StoreResult<FeedPage> {
        let oldest = now - horizon_ms;
        let n = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        // Per kind: whether entries at the position's own time still count, and from which key.
        let bounds = |kind: FeedKind| match kind.cmp(&after.kind) {
            std::cmp::Ordering::Less => (false, String::new()),
            std::cmp::Ordering::Equal => (true, after.key.clone()),
            std::cmp::Ordering::Greater => (true, String::new()),
        };
        let (same, key) = bounds(FeedKind::Token);
        let tokens: Vec<(String, i64, i64)> = match self {
            SqlStore::Postgres(b) => {
                sqlx::query_as(PAGE_TOKENS_PG)
                    .bind(after.at)
                    .bind(same)
                    .bind(key)
                    .bind(now)
                    .bind(n)
                    .fetch_all(b.pool())
                    .await?
            }
            SqlStore::Sqlite(b) => {
                sqlx::query_as(PAGE_TOKENS_SQLITE)
                    .bind(after.at)
                    .bind(same)
                    .bind(key)
                    .bind(now)
                    .bind(n)
                    .fetch_all(b.pool())
                    .await?
            }
        };
        let id_bound = |kind| {
            let (same, key) = bounds(kind);
            (same, Uuid::parse_str(&key).unwrap_or(Uuid::nil()))
        };
        let (same, key) = id_bound(FeedKind::Session);
        let sessions: Vec<(Uuid, i64)> = on_backend!(self, |b| sqlx::query_as(PAGE_SESSIONS)
            .bind(after.at)
            .bind(same)
            .bind(key)
            .bind(oldest)
            .bind(n)
            .fetch_all(b.pool())
            .await)?;
        let (same, key) = id_bound(FeedKind::User);
        let users: Vec<(Uuid, i64)> = on_backend!(self, |b| sqlx::query_as(PAGE_USERS)
            .bind(after.at)
            .bind(same)
            .bind(key)
            .bind(oldest)
            .bind(n)
            .fetch_all(b.pool())
            .await)?;
        Ok(merge_page(tokens, sessions, users, limit))
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

/// The first `limit` entries of three sorted kinds, in feed order, and where the page ends if
/// any entry was left out.
fn merge_page(
    tokens: Vec<(String, i64, i64)>,
    sessions: Vec<(Uuid, i64)>,
    users: Vec<(Uuid, i64)>,
    limit: usize,
) -> FeedPage {
    let mut all: Vec<(FeedPosition, usize)> = Vec::new();
    let pos = |at, kind, key: String| FeedPosition { at, kind, key };
    all.extend(
        tokens
            .iter()
            .enumerate()
            .map(|(i, (jti, _, at))| (pos(*at, FeedKind::Token, jti.clone()), i)),
    );
    all.extend(
        sessions
            .iter()
            .enumerate()
            .map(|(i, (id, at))| (pos(*at, FeedKind::Session, id.to_string()), i)),
    );
    all.extend(
        users
            .iter()
            .enumerate()
            .map(|(i, (id, at))| (pos(*at, FeedKind::User, id.to_string()), i)),
    );
    // UUID strings (lowercase hex, fixed hyphens) sort as their bytes do.
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let limit = limit.max(1);
    let more_after = (all.len() > limit).then(|| all[limit - 1].0.clone());
    all.truncate(limit);
    let mut page = FeedPage {
        more_after,
        ..FeedPage::default()
    };
    for (p, i) in all {
        match p.kind {
            FeedKind::Token => page.entries.tokens.push(tokens[i].clone()),
            FeedKind::Session => page.entries.sessions.push(sessions[i]),
            FeedKind::User => page.entries.users.push(users[i]),
        }
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_merges_kinds_in_feed_order_and_says_where_it_ends() {
        let id = |n: u128| Uuid::from_u128(n);
        let tokens = vec![("a".to_string(), 99, 10), ("b".to_string(), 99, 20)];
        let sessions = vec![(id(1), 10), (id(2), 30)];
        let users = vec![(id(3), 20)];
        let page = merge_page(tokens.clone(), sessions.clone(), users.clone(), 3);
        assert_eq!(page.entries.tokens, vec![("a".to_string(), 99, 10)]);
        assert_eq!(page.entries.sessions, vec![(id(1), 10)]);
        assert_eq!(
            page.entries.tokens.len() + page.entries.sessions.len() + page.entries.users.len(),
            3
        );
        assert_eq!(
            page.more_after,
            Some(FeedPosition {
                at: 20,
                kind: FeedKind::Token,
                key: "b".into()
            })
        );
        let all = merge_page(tokens, sessions, users, 5);
        assert_eq!(all.more_after, None);
        assert_eq!(all.entries.sessions.len(), 2);
    }
}
