//! The embedded store: SQLite in WAL mode with a single connection (one writer), the default
//! when no `DATABASE_URL` is given.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::sql::impl_store;
use super::{StoreError, StoreResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// SQLite behind one pooled connection. One connection serialises every statement, which is
/// what SQLite does with writers anyway, and rules out `SQLITE_BUSY` between our own requests.
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (and creates, with its parent directory) the database file named by `url`.
    pub async fn connect(url: &str, acquire_timeout: Duration) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("bad sqlite url: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let path = opts.get_filename();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && path.to_str() != Some(":memory:") {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Other(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(acquire_timeout)
            // An embedded database has no network to lose: no ping before each use.
            .test_before_acquire(false)
            // Keep the one connection forever: an in-memory database lives only as long as it.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await?;
        Ok(Self { pool })
    }

    /// The underlying pool (tests and tooling).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A connection for the refresh rotation: the one pooled connection.
    pub(crate) async fn rotation_conn(&self) -> StoreResult<RotationConn> {
        Ok(RotationConn(self.pool.acquire().await?))
    }
}

/// The pooled connection, with the same `release` as the Postgres store's (a no-op here).
pub(crate) struct RotationConn(sqlx::pool::PoolConnection<sqlx::Sqlite>);

impl RotationConn {
    pub(crate) fn release(self) {}
}

impl std::ops::Deref for RotationConn {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &sqlx::SqliteConnection {
        &self.0
    }
}

impl std::ops::DerefMut for RotationConn {
    fn deref_mut(&mut self) -> &mut sqlx::SqliteConnection {
        &mut self.0
    }
}

impl_store!(SqliteStore, MIGRATOR, {});
