//! What changed in the database, as the change watchers report it to the domain.
//!
//! On Postgres the writers and the triggers of migrations 0004 and 0005 NOTIFY a payload
//! string; on SQLite a watcher compares `PRAGMA data_version`. Both become a `Change` here,
//! and nothing else reads a payload.

use uuid::Uuid;

/// One change notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A user row changed (roles, claims, disabled, cut-off): `user:<uuid>`.
    User(Uuid),
    /// A session was revoked or deleted: `session:<uuid>:<reason>`.
    Session(Uuid),
    /// An access token was denylisted: `jti:<expires_at ms>:<jti>`.
    Token { jti: String, expires_at: i64 },
    /// A revocation payload that could not be read: revocations may have gone unseen.
    Unreadable,
    /// `keys`: the signing keys may have changed.
    Keys,
    /// Changes may be going unseen from now on (the listener's connection broke, or SQLite
    /// cannot be read).
    Lost,
    /// Anything may have changed without a precise notification (after `Lost`, on SQLite
    /// after any commit by another connection, or a payload this version does not know, say
    /// from a newer replica): forget what was cached and reread.
    Resync,
}

impl Change {
    /// Reads a NOTIFY payload.
    pub fn parse(payload: &str) -> Change {
        if let Some(id) = payload.strip_prefix("user:") {
            return Uuid::parse_str(id).map_or(Change::Unreadable, Change::User);
        }
        if let Some(rest) = payload.strip_prefix("session:") {
            return rest
                .split_once(':')
                .and_then(|(id, _)| Uuid::parse_str(id).ok())
                .map_or(Change::Unreadable, Change::Session);
        }
        if let Some(rest) = payload.strip_prefix("jti:") {
            return rest
                .split_once(':')
                .and_then(|(exp, jti)| Some((exp.parse::<i64>().ok()?, jti)))
                .map_or(Change::Unreadable, |(expires_at, jti)| Change::Token {
                    jti: jti.to_string(),
                    expires_at,
                });
        }
        if payload == "keys" {
            return Change::Keys;
        }
        Change::Resync
    }

    /// The payload a writer NOTIFYs for a change it made itself (only `Keys` is sent so; the
    /// others come from the database triggers).
    pub fn payload(&self) -> Option<&'static str> {
        matches!(self, Change::Keys).then_some("keys")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_of_the_triggers_are_read() {
        let id = Uuid::now_v7();
        assert_eq!(Change::parse(&format!("user:{id}")), Change::User(id));
        assert_eq!(
            Change::parse(&format!("session:{id}:deleted")),
            Change::Session(id)
        );
        assert_eq!(
            Change::parse("jti:99:a:b"),
            Change::Token {
                jti: "a:b".into(),
                expires_at: 99
            }
        );
        assert_eq!(Change::parse("keys"), Change::Keys);
        assert_eq!(Change::parse("clients"), Change::Resync);
        assert_eq!(Change::parse("user:nope"), Change::Unreadable);
        assert_eq!(Change::parse("session:garbage"), Change::Unreadable);
        assert_eq!(Change::parse("jti:soon:x"), Change::Unreadable);
        assert_eq!(Change::Keys.payload(), Some("keys"));
        assert_eq!(Change::Lost.payload(), None);
    }
}
