//! The change feed: what changed since a point in time (the revocation feed and the in-memory
//! revocation state's poll), and the push notifications between replicas.

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::mpsc::Receiver;
use uuid::Uuid;

use super::backend::{on_backend, Backend, SqlStore};
use super::{
    Change, ChangeNotifier, FeedKind, FeedPage, FeedPosition, FeedStart, FeedStore, FirstLoad,
    RevocationFeed, RowStream, StoreError, StoreResult,
};

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

// The paged feed, oldest first. Two shapes per kind, both index range scans on (time, key):
// `FROM` every entry at or after a time ($1), `AFTER` every entry after a (time, key) ($1,
// $2). Then the horizon and the limit. Postgres compares the `jti` in the "C" collation, the
// bytewise order SQLite and the merge use.
const TOKENS_FROM: &str = "
    SELECT jti, expires_at, revoked_at FROM revoked_tokens
    WHERE revoked_at >= $1 AND expires_at > $2
    ORDER BY revoked_at, jti LIMIT $3";
const TOKENS_FROM_PG: &str = "
    SELECT jti, expires_at, revoked_at FROM revoked_tokens
    WHERE revoked_at >= $1 AND expires_at > $2
    ORDER BY revoked_at, jti COLLATE \"C\" LIMIT $3";
const TOKENS_AFTER: &str = "
    SELECT jti, expires_at, revoked_at FROM revoked_tokens
    WHERE (revoked_at, jti) > ($1, $2) AND expires_at > $3
    ORDER BY revoked_at, jti LIMIT $4";
const TOKENS_AFTER_PG: &str = "
    SELECT jti, expires_at, revoked_at FROM revoked_tokens
    WHERE (revoked_at, jti COLLATE \"C\") > ($1, $2) AND expires_at > $3
    ORDER BY revoked_at, jti COLLATE \"C\" LIMIT $4";
// Sessions and user cut-offs have one time column: the horizon is folded into the start by
// `one_lower_bound`, so each statement has a single lower bound on it. SQLite takes only one
// of two range terms on a column as its index bound: with `t >= $1 AND t > $2` and 1M users
// whose cut-off is 0, a first page read every index entry (21 ms; the feed's first page p99
// was 41 ms at 1M users).
const SESSIONS_FROM: &str = "
    SELECT id, revoked_at FROM sessions
    WHERE revoked_at >= $1
    ORDER BY revoked_at, id LIMIT $2";
const SESSIONS_AFTER: &str = "
    SELECT id, revoked_at FROM sessions
    WHERE (revoked_at, id) > ($1, $2)
    ORDER BY revoked_at, id LIMIT $3";
const USERS_FROM: &str = "
    SELECT id, tokens_not_before FROM users
    WHERE tokens_not_before >= $1
    ORDER BY tokens_not_before, id LIMIT $2";
const USERS_AFTER: &str = "
    SELECT id, tokens_not_before FROM users
    WHERE (tokens_not_before, id) > ($1, $2)
    ORDER BY tokens_not_before, id LIMIT $3";

/// The rows of a keyset-paged read on SQLite: `page(after)` reads at most `SQLITE_PAGE` rows
/// after a key (`None`: from the start); a full page is followed by the page after its last
/// row's `key`. Each row is handed on as `item(row)`.
fn sqlite_pages<K, R, T, P, F>(page: P, key: fn(&R) -> K, item: fn(R) -> T) -> RowStream<'static, T>
where
    K: Send + 'static,
    R: Send + 'static,
    T: Send + 'static,
    P: Fn(Option<K>) -> F + Send + 'static,
    F: std::future::Future<Output = Result<Vec<R>, sqlx::Error>> + Send + 'static,
{
    let batches = stream::try_unfold(Some(None), move |after: Option<Option<K>>| {
        let read = after.map(&page);
        async move {
            let Some(read) = read else {
                return Ok::<_, StoreError>(None);
            };
            let rows = read.await?;
            let next = rows
                .last()
                .filter(|_| rows.len() as i64 == SQLITE_PAGE)
                .map(|r| Some(key(r)));
            Ok(Some((rows.into_iter().map(item).collect::<Vec<_>>(), next)))
        }
    });
    super::sql::rows_of_batches(batches)
}

/// Where a page of an id kind starts, given a position (`at`, `id`) and the horizon: entries
/// after the position whose time is later than `oldest`. A position at or before the horizon
/// means "everything inside it": from `oldest + 1`.
fn one_lower_bound(at: i64, id: Option<Uuid>, oldest: i64) -> (i64, Option<Uuid>) {
    if at > oldest {
        (at, id)
    } else {
        (oldest.saturating_add(1), None)
    }
}

// The revocation state's first load: everything that still matters, in no particular order
// (a sequential scan of the denylist, which is all live rows; the sessions' feed index). On
// Postgres the denylist is read as a binary COPY (see `copy`).
const DENYLIST_ALL: &str = "SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > $1";
const REVOKED_SESSIONS_ALL: &str = "SELECT id FROM sessions WHERE revoked_at > $1";
const DENYLIST_PAGE_SQLITE: &str = "
    SELECT rowid, jti, expires_at FROM revoked_tokens
    WHERE rowid > $1 AND expires_at > $2 ORDER BY rowid LIMIT $3";
/// Rows per page of the first load's reads on SQLite.
const SQLITE_PAGE: i64 = 10_000;

const USERS_CHANGED: &str = "SELECT id, updated_at FROM users WHERE updated_at >= $1";

#[async_trait]
impl FeedStore for SqlStore {
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
        start: &FeedStart,
        now: i64,
        horizon_ms: i64,
        limit: usize,
    ) -> StoreResult<FeedPage> {
        let oldest = now - horizon_ms;
        let n = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        // Per kind, where its entries start: at a time, or after a key of the position's own
        // kind. After a position, a kind sorting before the position's starts at the next
        // millisecond, one sorting after it at the position's millisecond.
        let from = |kind: FeedKind| match start {
            FeedStart::From(at) => (*at, None),
            FeedStart::After(p) => match p.kind.cmp(&kind) {
                std::cmp::Ordering::Greater => (p.at.saturating_add(1), None),
                std::cmp::Ordering::Less => (p.at, None),
                std::cmp::Ordering::Equal => (p.at, Some(p.key.as_str())),
            },
        };
        // One statement per kind: `*_FROM` binds (time, horizon, limit), `*_AFTER` binds
        // (time, key, horizon, limit).
        let (at, key) = from(FeedKind::Token);
        let sql = match (key.is_some(), matches!(self, SqlStore::Postgres(_))) {
            (false, true) => TOKENS_FROM_PG,
            (false, false) => TOKENS_FROM,
            (true, true) => TOKENS_AFTER_PG,
            (true, false) => TOKENS_AFTER,
        };
        let tokens: Vec<(String, i64, i64)> = on_backend!(self, |b| {
            let q = sqlx::query_as(sql).bind(at);
            let q = match key {
                Some(k) => q.bind(k),
                None => q,
            };
            q.bind(now).bind(n).fetch_all(b.pool()).await
        })?;
        let mut ids = [Vec::new(), Vec::new()];
        for (slot, kind, (sql_from, sql_after)) in [
            (0, FeedKind::Session, (SESSIONS_FROM, SESSIONS_AFTER)),
            (1, FeedKind::User, (USERS_FROM, USERS_AFTER)),
        ] {
            let (at, key) = from(kind);
            // A position of an id kind always holds a UUID (the HTTP layer checks).
            let id = key
                .map(|k| {
                    Uuid::parse_str(k)
                        .map_err(|_| StoreError::Other("feed position: not a UUID".into()))
                })
                .transpose()?;
            let (at, id) = one_lower_bound(at, id, oldest);
            let sql = if id.is_some() { sql_after } else { sql_from };
            ids[slot] = on_backend!(self, |b| {
                let q = sqlx::query_as(sql).bind(at);
                let q = match id {
                    Some(id) => q.bind(id),
                    None => q,
                };
                q.bind(n).fetch_all(b.pool()).await
            })?;
        }
        let [sessions, users] = ids;
        Ok(merge_page(tokens, sessions, users, limit))
    }

    async fn users_changed_since(&self, since: i64) -> StoreResult<Vec<(Uuid, i64)>> {
        Ok(on_backend!(self, |b| sqlx::query_as(USERS_CHANGED)
            .bind(since)
            .fetch_all(b.pool())
            .await)?)
    }
}

impl FirstLoad for SqlStore {
    fn denylist_all(&self, now: i64) -> RowStream<'_, (String, i64)> {
        match self {
            // `now` is an integer: formatting it into the statement cannot inject anything
            // (COPY takes no parameters).
            SqlStore::Postgres(pg) => super::copy::text_int8_rows(
                pg.clone(),
                format!(
                    "COPY ({}) TO STDOUT (FORMAT binary)",
                    DENYLIST_ALL.replace("$1", &now.to_string())
                ),
            ),
            // SQLite has one connection: read in pages, so that requests get it in between.
            SqlStore::Sqlite(b) => {
                let pool = b.pool().clone();
                sqlite_pages(
                    move |after: Option<i64>| {
                        let pool = pool.clone();
                        async move {
                            sqlx::query_as(DENYLIST_PAGE_SQLITE)
                                .bind(after.unwrap_or(i64::MIN))
                                .bind(now)
                                .bind(SQLITE_PAGE)
                                .fetch_all(&pool)
                                .await
                        }
                    },
                    |&(rowid, _, _): &(i64, String, i64)| rowid,
                    |(_, jti, exp)| (jti, exp),
                )
            }
        }
    }

    fn revoked_sessions_all(&self, oldest: i64) -> RowStream<'_, Uuid> {
        match self {
            SqlStore::Postgres(pg) => sqlx::query_scalar(REVOKED_SESSIONS_ALL)
                .bind(oldest)
                .fetch(pg.pool())
                .map_err(StoreError::from)
                .boxed(),
            // In pages on the feed's (time, id) index, as for the denylist.
            SqlStore::Sqlite(b) => {
                let pool = b.pool().clone();
                sqlite_pages(
                    move |after: Option<(i64, Uuid)>| {
                        let pool = pool.clone();
                        // Every row read is inside the horizon, so a later page needs no bound.
                        let q = match after {
                            Some((at, id)) => sqlx::query_as(SESSIONS_AFTER).bind(at).bind(id),
                            None => sqlx::query_as(SESSIONS_FROM).bind(oldest.saturating_add(1)),
                        };
                        async move { q.bind(SQLITE_PAGE).fetch_all(&pool).await }
                    },
                    |&(id, at): &(Uuid, i64)| (at, id),
                    |(id, _)| id,
                )
            }
        }
    }
}

#[async_trait]
impl ChangeNotifier for SqlStore {
    async fn notify_change(&self, change: &Change) -> StoreResult<()> {
        match self {
            SqlStore::Postgres(pg) => pg.notify_change(change).await,
            // One process writes a SQLite file at a time; others see commits by polling.
            SqlStore::Sqlite(_) => Ok(()),
        }
    }

    async fn listen_changes(&self) -> StoreResult<Option<Receiver<Change>>> {
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
        // Feed order: (10, token a), (10, session 1), (20, token b), (20, user 3), (30, …).
        assert_eq!(page.entries.tokens, tokens);
        assert_eq!(page.entries.sessions, vec![(id(1), 10)]);
        assert!(page.entries.users.is_empty());
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
