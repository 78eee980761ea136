//! The revocation state's capabilities (invariant 2): the denylist and a token's revocation
//! check, the feed read back, the state's first load, and the changes pushed between replicas.

use async_trait::async_trait;
use tokio::sync::mpsc::Receiver;
use uuid::Uuid;

use crate::{
    Change, FeedPage, FeedStart, RevocationFeed, RevokedToken, RowStream, StoreResult, TokenStatus,
};

/// Revoked access tokens, and the revocation check of a token.
#[async_trait]
pub trait DenylistStore {
    /// Idempotent: denylisting a `jti` twice keeps the first row. `true` when this call
    /// denylisted it.
    async fn revoke_token(&self, token: &RevokedToken) -> StoreResult<bool>;
    /// Every revocation rule of invariant 2 for one token, in one read.
    async fn token_status(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        jti: &str,
    ) -> StoreResult<TokenStatus>;
}

/// The revocation feed read back, and what replicas poll for (invariant 2).
#[async_trait]
pub trait FeedStore {
    /// Revocations since `since` (ms) that can still matter at `now`: denylisted tokens not yet
    /// expired, and session revocations and user cut-offs newer than `now - horizon_ms`.
    async fn revocations_since(
        &self,
        since: i64,
        now: i64,
        horizon_ms: i64,
    ) -> StoreResult<RevocationFeed>;
    /// At most `limit` (≥ 1) revocations from `start` in feed order (time, kind, key) that
    /// can still matter at `now`, and where the page ends if more follow.
    async fn revocations_page(
        &self,
        start: &FeedStart,
        now: i64,
        horizon_ms: i64,
        limit: usize,
    ) -> StoreResult<FeedPage>;
    /// Users whose row changed at or after `since` (ms), with their `updated_at`.
    async fn users_changed_since(&self, since: i64) -> StoreResult<Vec<(Uuid, i64)>>;
}

/// The revocation state's first load: every revocation still in force, streamed.
pub trait FirstLoad {
    /// Every denylisted token not expired at `now` (ms), as (`jti`, `expires_at`), streamed as
    /// the rows arrive from one statement (one snapshot), so that millions of rows neither
    /// wait behind pages nor sit in a buffer.
    fn denylist_all(&self, now: i64) -> RowStream<'_, (String, i64)>;
    /// Likewise, every session revoked after `oldest` (ms).
    fn revoked_sessions_all(&self, oldest: i64) -> RowStream<'_, Uuid>;
}

/// Changes pushed between replicas: Postgres NOTIFY/LISTEN, SQLite's `data_version` watcher.
#[async_trait]
pub trait ChangeNotifier {
    /// Tells other replicas of `change` (Postgres NOTIFY). Only `Change::Keys` is sent so;
    /// every other change is reported by the database itself, and this is a no-op for it (and
    /// on SQLite).
    async fn notify_change(&self, change: &Change) -> StoreResult<()>;
    /// A stream of changes. `None` means: poll. Postgres LISTENs (the payloads written by
    /// `notify_change` and by the database triggers); SQLite watches `PRAGMA data_version` for
    /// commits by other connections. Either stream also carries `Change::Lost` when changes
    /// may be going unseen from now on, and `Change::Resync` when anything may have changed
    /// without a precise notification: the consumer forgets what it cached and rereads.
    async fn listen_changes(&self) -> StoreResult<Option<Receiver<Change>>>;
}
