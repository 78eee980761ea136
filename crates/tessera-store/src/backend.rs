//! The two backends behind one type. Every query is written once, in the capability files
//! (`users_sql.rs`, `sessions.rs`, …), and runs on both: `on_backend!` expands a body once per
//! backend, each time with a concrete, fully typed connection pool.

use std::ops::DerefMut;

use sqlx::migrate::Migrator;

use super::pg::PgStore;
use super::sqlite::SqliteStore;
use super::StoreResult;

/// What a database backend provides to the shared queries.
pub(crate) trait Backend: Send + Sync {
    type Db: sqlx::Database;
    /// A connection lent for the one statement of a refresh rotation (see `PgStore`).
    type RotationConn<'a>: DerefMut<Target = <Self::Db as sqlx::Database>::Connection>
        + Release
        + Send
    where
        Self: 'a;

    /// The pool every other statement runs on.
    fn pool(&self) -> &sqlx::Pool<Self::Db>;
    /// The backend's embedded migrations.
    fn migrator(&self) -> &'static Migrator;
    /// A connection for the rotation statement.
    async fn rotation_conn(&self) -> StoreResult<Self::RotationConn<'_>>;
}

/// A rotation connection's way home.
pub(crate) trait Release {
    /// Hands back a connection whose statement completed; one dropped without this (an error,
    /// a cancelled request) is closed instead.
    fn release(self);
}

/// The store: Postgres or SQLite.
#[derive(Clone)]
pub enum SqlStore {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

impl SqlStore {
    /// One of the four texts of a statement that opens a session under a fence: for this
    /// backend, and whether it also needs a second step's challenge stored (`after_challenge`).
    /// `texts`: Postgres, SQLite, Postgres after a challenge, SQLite after a challenge.
    pub(super) fn fenced(&self, after_challenge: bool, texts: [&'static str; 4]) -> &'static str {
        let [pg, sqlite, pg_after, sqlite_after] = texts;
        match (self, after_challenge) {
            (SqlStore::Postgres(_), false) => pg,
            (SqlStore::Sqlite(_), false) => sqlite,
            (SqlStore::Postgres(_), true) => pg_after,
            (SqlStore::Sqlite(_), true) => sqlite_after,
        }
    }

    /// The statement that begins a transaction which reads what it will write, and must hold
    /// it until it commits, paired with the read for each backend: on Postgres the read
    /// itself locks its rows (`pg_read`, with `FOR UPDATE` or `FOR SHARE`); SQLite has no row
    /// locks, and `BEGIN IMMEDIATE` takes its write lock before the read (`read`).
    pub(super) fn locking_tx(
        &self,
        pg_read: &'static str,
        read: &'static str,
    ) -> (&'static str, &'static str) {
        match self {
            SqlStore::Postgres(_) => ("BEGIN", pg_read),
            SqlStore::Sqlite(_) => ("BEGIN IMMEDIATE", read),
        }
    }
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SqlStore::Postgres(_) => "SqlStore::Postgres",
            SqlStore::Sqlite(_) => "SqlStore::Sqlite",
        })
    }
}

/// `on_backend!(store, |b| body)`: runs `body` with `b` bound to the concrete backend
/// (`&PgStore` or `&SqliteStore`). The body is compiled once per backend.
macro_rules! on_backend {
    ($store:expr, |$b:ident| $body:expr) => {
        match $store {
            $crate::backend::SqlStore::Postgres($b) => $body,
            $crate::backend::SqlStore::Sqlite($b) => $body,
        }
    };
}

pub(crate) use on_backend;

/// The first row of a write's `RETURNING` rows, read to their end with `fetch_all`. SQLite
/// commits a statement outside a transaction when it runs to its end, and sqlx's
/// `fetch_optional` (and `fetch_one`) stop after the first row and drop the error of that commit
/// (a full disk): the row would come back for a write that was never stored.
pub(crate) fn returned<T>(rows: Vec<T>) -> Option<T> {
    rows.into_iter().next()
}

/// `returned`, for a write that always returns a row (`fetch_one`'s contract).
pub(crate) fn returned_one<T>(rows: Vec<T>) -> Result<T, sqlx::Error> {
    rows.into_iter().next().ok_or(sqlx::Error::RowNotFound)
}
