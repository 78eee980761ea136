//! Opening a store, and what the SQL capabilities share: driver errors mapped to
//! `StoreError`, batched row streams, retention.

use std::sync::Arc;

use secrecy::ExposeSecret;
use tessera_config::DatabaseSettings;

use super::{Duplicate, PgStore, RowStream, SqlStore, SqliteStore, Store, StoreError, StoreResult};

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                let msg = db.message();
                let constraint = db.constraint().unwrap_or_default();
                let field = if msg.contains("username_skeleton")
                    || constraint == "users_username_skeleton_key"
                {
                    Duplicate::UsernameSkeleton
                } else if msg.contains("email_key") || constraint == "users_email_key" {
                    Duplicate::Email
                } else if msg.contains("username") || constraint == "users_username_key" {
                    Duplicate::Username
                } else if msg.contains("succeeds") || constraint == "signing_keys_succeeds_key" {
                    Duplicate::KeySuccessor
                } else {
                    Duplicate::Other
                };
                StoreError::Duplicate(field)
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) => {
                // Whatever the database does, fail closed (503, invariant 6): the client did
                // nothing wrong. Postgres classes 08 (connection), 25 (transaction state: a
                // read-only database, a demoted primary or a standby, 25006; an idle session
                // ended), 40 (serialization failure, deadlock), 53 (insufficient resources), 55
                // (not in the required state: a lock not available), 57 (operator
                // intervention: a statement timeout or cancel, 57014; shutdown, restart), 58
                // (system error), XX (internal error) and P0 (raised by the database's own code:
                // a trigger, a rule), and a connection refused by the server: 3D000 (no such
                // database), 28000/28P01 (the credentials are refused); SQLite's codes below.
                // What is left (22 data, 23 integrity, 42 syntax) is a request this server
                // should not have sent: a fault of its own.
                let code = db.code().map(|c| c.to_string()).unwrap_or_default();
                // Postgres 42P01 (undefined_table); SQLite reports a generic error.
                if code == "42P01" || db.message().starts_with("no such table") {
                    return StoreError::NoSchema;
                }
                if postgres_unavailable(&code) || sqlite_unavailable(&code) {
                    StoreError::Unavailable(e.to_string())
                } else {
                    StoreError::Other(e.to_string())
                }
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

/// Whether a Postgres SQLSTATE (five characters; SQLite's codes are decimal numbers of at most
/// four digits, some of which begin with the same digits) is the database's state rather than
/// the request (see `From<sqlx::Error>`).
fn postgres_unavailable(code: &str) -> bool {
    code.len() == 5
        && (["08", "25", "40", "53", "55", "57", "58", "XX", "P0"]
            .iter()
            .any(|class| code.starts_with(class))
            || matches!(code, "3D000" | "28000" | "28P01"))
}

/// Whether an SQLite result code (its extended form, at most four digits; Postgres codes have
/// five characters) is the database's state rather than the request: BUSY (5) and LOCKED (6)
/// and their extended codes, NOMEM (7), READONLY (8), INTERRUPT (9), IOERR (10), CORRUPT (11),
/// FULL (13, a full disk), CANTOPEN (14), PROTOCOL (15), NOTADB (26), and CONSTRAINT_TRIGGER
/// (1811: a trigger's `RAISE`, the database's own code).
fn sqlite_unavailable(code: &str) -> bool {
    code.len() <= 4
        && code
            .parse::<u32>()
            .is_ok_and(|c| c == 1811 || matches!(c & 0xff, 5..=11 | 13..=15 | 26))
}

/// The rows of a stream of batches (pages, COPY chunks), one by one.
pub(crate) fn rows_of_batches<T: Send + 'static>(
    batches: impl futures_util::Stream<Item = StoreResult<Vec<T>>> + Send + 'static,
) -> RowStream<'static, T> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    batches
        .map_ok(|batch| stream::iter(batch.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
}

/// How long a finished session or a revoked one is kept before the purge deletes it.
pub(crate) const SESSION_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// Opens the store named by the settings, creating a SQLite database file if there is none.
/// Nothing is migrated here: `serve` and `migrate` do that.
pub async fn connect(db: &DatabaseSettings) -> StoreResult<Arc<dyn Store>> {
    open(db, true).await
}

/// Opens an existing store for reading: a missing SQLite file is `StoreError::NoSchema`, and
/// nothing is created.
pub async fn connect_existing(db: &DatabaseSettings) -> StoreResult<Arc<dyn Store>> {
    open(db, false).await
}

async fn open(db: &DatabaseSettings, create: bool) -> StoreResult<Arc<dyn Store>> {
    let url = db.url.expose_secret();
    let store = if url.starts_with("sqlite:") {
        SqlStore::Sqlite(SqliteStore::connect(url, db.acquire_timeout, create).await?)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        SqlStore::Postgres(PgStore::connect(url, db.max_connections, db.acquire_timeout).await?)
    } else {
        return Err(StoreError::Other(
            "database.url must start with sqlite: or postgres:".into(),
        ));
    };
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::{postgres_unavailable, sqlite_unavailable};

    /// What the database does (503) against what this server asked wrongly (a fault of its
    /// own), for the codes each backend reports.
    #[test]
    fn database_states_are_told_from_requests() {
        for code in [
            "08006", "25006", "25P03", "40001", "40P01", "53100", "53300", "55000", "55P03",
            "57014", "57P01", "58030", "XX000", "P0001", "3D000", "28P01",
        ] {
            assert!(postgres_unavailable(code), "{code}");
        }
        for code in ["22001", "23505", "23503", "42601", "42P01"] {
            assert!(!postgres_unavailable(code), "{code}");
        }
        // SQLite: BUSY, LOCKED and their extended codes, NOMEM, READONLY, INTERRUPT, IOERR
        // (and IOERR_SHORT_READ), CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB, a trigger's RAISE.
        for code in [
            "1811", "5", "261", "6", "262", "7", "8", "9", "10", "522", "11", "13", "14", "15",
            "26",
        ] {
            assert!(
                sqlite_unavailable(code) && !postgres_unavailable(code),
                "{code}"
            );
        }
        // CONSTRAINT (and ROWID, COMMITHOOK), RANGE, ERROR_MISSING_COLLSEQ, a plain ERROR.
        for code in ["19", "2579", "531", "25", "257", "1"] {
            assert!(
                !sqlite_unavailable(code) && !postgres_unavailable(code),
                "{code}"
            );
        }
    }
}
