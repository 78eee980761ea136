//! The revocation feed (`GET`/`POST /revocations`): one page of entries, and the cursor that
//! continues after it.
//!
//! Entries are ordered by time, then kind (token, session, user), then key. Members are
//! serialised in alphabetical order, the order of the published examples.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// One page of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct FeedPage {
    /// Where the next poll starts (see [`Cursor`]); opaque to clients.
    pub cursor: String,
    /// More entries follow at once: ask again with `cursor`.
    #[serde(default)]
    pub has_more: bool,
    /// Per-user cut-offs: every token of `sub` issued at or before them is refused.
    #[serde(default)]
    pub not_before: Vec<Cutoff>,
    /// Revoked sessions: every token with this `sid` is refused.
    #[serde(default)]
    pub revoked_sessions: Vec<RevokedSession>,
    /// Denylisted access tokens.
    #[serde(default)]
    pub revoked_tokens: Vec<RevokedToken>,
}

/// A denylisted access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct RevokedToken {
    /// The token's `exp` (Unix seconds): after it, the entry refuses nothing.
    pub exp: i64,
    /// The token's `jti`.
    pub jti: String,
    /// When it was revoked (Unix seconds).
    #[serde(default)]
    pub revoked_at: i64,
}

/// A revoked session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct RevokedSession {
    /// When it was revoked (Unix seconds).
    pub revoked_at: i64,
    /// The session id, the tokens' `sid`.
    pub sid: String,
}

/// A per-user cut-off (password change, disable, role removal, logout everywhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Cutoff {
    /// The cut-off in Unix seconds, rounded up: a verifier comparing `iat` refuses every token
    /// of the cut-off's second (the safe side).
    pub not_before: i64,
    /// The exact cut-off in milliseconds, for a verifier that reads the issuance time from the
    /// UUIDv7 `jti`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<i64>,
    /// The user, the tokens' `sub`.
    pub sub: String,
}

/// The kind of a feed entry, in feed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryKind {
    /// A denylisted token (its key is the `jti`).
    Token = 0,
    /// A revoked session (its key is the session id).
    Session = 1,
    /// A user's cut-off (its key is the user id).
    User = 2,
}

/// Where a page of the feed starts.
///
/// Written `MS` (every entry from that millisecond on: what a final page returns, with an
/// overlap that catches revocations committed late) or `MS.KIND.KEY`, the key in base64url
/// (strictly after that entry: what a page followed by more returns). Only URL-safe
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// Every entry from this millisecond on; `From(0)` is the whole feed.
    From(i64),
    /// Strictly after this entry.
    After {
        /// The entry's time (ms).
        at: i64,
        /// Its kind.
        kind: EntryKind,
        /// Its key (a `jti`, or a UUID in its hyphenated lowercase form).
        key: String,
    },
}

/// The longest token key a cursor takes back (bytes, before base64url).
pub const MAX_CURSOR_KEY_BYTES: usize = 64 * 1024;

impl Cursor {
    /// Reads a cursor; the empty string is the whole feed. `None` when malformed.
    pub fn parse(s: &str) -> Option<Cursor> {
        if s.is_empty() {
            return Some(Cursor::From(0));
        }
        let mut parts = s.splitn(3, '.');
        let at = i64::try_from(digits(parts.next()?)?).ok()?;
        let (kind, key) = match (parts.next(), parts.next()) {
            (None, _) => return Some(Cursor::From(at)),
            (Some(k), Some(key)) => (k, key),
            (Some(_), None) => return None,
        };
        let kind = match kind {
            "0" => EntryKind::Token,
            "1" => EntryKind::Session,
            "2" => EntryKind::User,
            _ => return None,
        };
        let key = URL_SAFE_NO_PAD
            .decode(key)
            .ok()
            .and_then(|k| String::from_utf8(k).ok())?;
        let ok = match kind {
            // Any text a row can hold (Postgres text cannot hold NUL), up to a bound far beyond
            // any real `jti`: a cursor the feed hands out must always be taken back, whatever a
            // row written by hand holds (a 1496-byte jti once made a refused cursor).
            EntryKind::Token => key.len() <= MAX_CURSOR_KEY_BYTES && !key.contains('\0'),
            _ => uuid::Uuid::parse_str(&key).is_ok_and(|u| u.to_string() == key),
        };
        ok.then_some(Cursor::After { at, kind, key })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cursor::From(at) => write!(f, "{at}"),
            Cursor::After { at, kind, key } => {
                write!(f, "{at}.{}.{}", *kind as u8, URL_SAFE_NO_PAD.encode(key))
            }
        }
    }
}

/// A non-negative decimal written with ASCII digits only (no sign, no spaces), up to 18
/// digits.
pub fn digits(s: &str) -> Option<u64> {
    (!s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_malformed_ones_are_refused() {
        let id = uuid::Uuid::now_v7().to_string();
        for c in [
            Cursor::From(0),
            Cursor::From(1_700_000_000_123),
            Cursor::After {
                at: 5,
                kind: EntryKind::Token,
                key: "a.b/c d".into(),
            },
            Cursor::After {
                at: 5,
                kind: EntryKind::Session,
                key: id.clone(),
            },
            Cursor::After {
                at: 5,
                kind: EntryKind::User,
                key: id.clone(),
            },
        ] {
            assert_eq!(Cursor::parse(&c.to_string()), Some(c.clone()), "{c}");
        }
        assert_eq!(Cursor::parse(""), Some(Cursor::From(0)));
        for bad in [
            "-1",
            "+1",
            " 1",
            "1.0",
            "1.3.YQ",
            "1.1.YQ",
            "1.0.!!",
            "x",
            "1234567890123456789",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
        // A session key must be a UUID in its canonical form.
        let upper = URL_SAFE_NO_PAD.encode(id.to_uppercase());
        assert_eq!(Cursor::parse(&format!("1.1.{upper}")), None);
    }

    #[test]
    fn a_page_is_written_in_alphabetical_order() {
        let page = FeedPage {
            cursor: "9".into(),
            has_more: false,
            not_before: vec![Cutoff {
                not_before: 2,
                not_before_ms: Some(1001),
                sub: "u".into(),
            }],
            revoked_sessions: vec![RevokedSession {
                revoked_at: 1,
                sid: "s".into(),
            }],
            revoked_tokens: vec![RevokedToken {
                exp: 3,
                jti: "j".into(),
                revoked_at: 1,
            }],
        };
        assert_eq!(
            serde_json::to_string(&page).unwrap(),
            r#"{"cursor":"9","has_more":false,"not_before":[{"not_before":2,"not_before_ms":1001,"sub":"u"}],"revoked_sessions":[{"revoked_at":1,"sid":"s"}],"revoked_tokens":[{"exp":3,"jti":"j","revoked_at":1}]}"#
        );
    }
}
