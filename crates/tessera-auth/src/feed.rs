//! The revocation feed for stateless verifiers (`tessera_proto::feed`): a page of the
//! revocations that can still refuse a live token, after a cursor, with the cursor of the next
//! poll. The rules live here: how long each entry is listed, the overlap between polls, and
//! the safe-side rounding of cut-offs to whole seconds.

use tessera_proto::feed::{Cursor, Cutoff, EntryKind, FeedPage, RevokedSession, RevokedToken};

use super::{Auth, AuthError};
use crate::store::{FeedKind, FeedPosition, FeedStart};
use crate::time::{millis, now_ms, UnixMillis};

/// Entries of the feed overlap by this much between polls, so a revocation committed while a
/// poll ran is never skipped. Applying an entry twice is harmless.
const FEED_OVERLAP_MS: i64 = 10_000;

impl Auth {
    /// One page of the revocation feed from `cursor`: at most `limit` (≥ 1) entries a
    /// stateless verifier must apply to tokens that can still be alive, in feed order (time,
    /// kind, key). Its `cursor` continues right after the page when `has_more`; otherwise it
    /// is the time of this read less the overlap.
    ///
    /// Errors: `StoreUnavailable`.
    pub async fn revocation_feed(
        &self,
        cursor: &Cursor,
        limit: usize,
    ) -> Result<FeedPage, AuthError> {
        let now = now_ms();
        let horizon = millis(self.settings.token_horizon());
        // A token is accepted until `exp + leeway`: its denylisting is listed that long.
        let leeway = millis(self.settings.tokens.leeway);
        let page = self
            .store
            .revocations_page(&store_start(cursor), now - leeway, horizon, limit)
            .await?;
        let (next, has_more) = match page.more_after {
            Some(p) => (after(p), true),
            None => (Cursor::From((now - FEED_OVERLAP_MS).max(0)), false),
        };
        let entries = page.entries;
        Ok(FeedPage {
            cursor: next.to_string(),
            has_more,
            revoked_tokens: entries
                .tokens
                .into_iter()
                .map(|(jti, exp, at)| RevokedToken {
                    jti,
                    exp: secs(exp),
                    revoked_at: secs(at),
                })
                .collect(),
            revoked_sessions: entries
                .sessions
                .into_iter()
                .map(|(sid, at)| RevokedSession {
                    sid: sid.to_string(),
                    revoked_at: secs(at),
                })
                .collect(),
            // `not_before` in whole seconds is rounded up, so a verifier comparing `iat` refuses
            // every token of the cut-off's second (the safe side); `not_before_ms` is exact, for
            // a verifier that reads the issuance time from the UUIDv7 `jti`.
            not_before: entries
                .users
                .into_iter()
                .map(|(sub, nbf)| Cutoff {
                    sub: sub.to_string(),
                    not_before: secs(nbf.saturating_add(999)),
                    not_before_ms: Some(nbf),
                })
                .collect(),
        })
    }
}

/// Where the store starts reading for a cursor.
fn store_start(cursor: &Cursor) -> FeedStart {
    match cursor {
        Cursor::From(at) => FeedStart::From(*at),
        Cursor::After { at, kind, key } => FeedStart::After(FeedPosition {
            at: *at,
            kind: match kind {
                EntryKind::Token => FeedKind::Token,
                EntryKind::Session => FeedKind::Session,
                EntryKind::User => FeedKind::User,
            },
            key: key.clone(),
        }),
    }
}

/// The cursor strictly after the store's position `p`.
fn after(p: FeedPosition) -> Cursor {
    let kind = match p.kind {
        FeedKind::Token => EntryKind::Token,
        FeedKind::Session => EntryKind::Session,
        FeedKind::User => EntryKind::User,
    };
    Cursor::After {
        at: p.at,
        kind,
        key: p.key,
    }
}

/// A stored time (ms) as a JWT `NumericDate` (whole seconds).
fn secs(ms: i64) -> i64 {
    UnixMillis(ms).as_secs()
}
