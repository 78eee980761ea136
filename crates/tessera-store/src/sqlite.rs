//! The embedded store: SQLite in WAL mode with a single connection (one writer), the default
//! when no `DATABASE_URL` is given.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Connection as _;

use super::backend::{Backend, Release};
use super::{Change, StoreError, StoreResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// SQLite behind one pooled connection. One connection serialises every statement, which is
/// what SQLite does with writers anyway, and rules out `SQLITE_BUSY` between our own requests.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Bumped each time the pool opens its connection: `PRAGMA data_version` readings are
    /// only comparable on one connection.
    generation: Arc<AtomicU64>,
}

/// How often the change watcher asks SQLite whether another connection committed.
const WATCH_EVERY: Duration = Duration::from_millis(100);

impl SqliteStore {
    /// Opens the database file named by `url`; with `create`, creates it (and its parent
    /// directory) when missing, and refuses (`StoreError::Other`) a file, journal or directory
    /// it cannot write: SQLite would open it read-only without a word, and every login would
    /// fail until a restart. Without `create`, a missing file is `StoreError::NoSchema`.
    pub async fn connect(url: &str, acquire_timeout: Duration, create: bool) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("bad sqlite url: {e}")))?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // LIKE compares case as Postgres does (the admin listing's role and name filters).
            .pragma("case_sensitive_like", "ON");
        let path = opts.get_filename();
        if let (Some(dir), true) = (path.parent(), create) {
            if !dir.as_os_str().is_empty() && path.to_str() != Some(":memory:") {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Other(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        // An in-memory database (`sqlite::memory:`, `mode=memory`) has no file to write.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if create && !in_memory {
            writable(path)?;
        }
        let generation = Arc::new(AtomicU64::new(0));
        let opened = generation.clone();
        let pool = SqlitePoolOptions::new()
            .after_connect(move |_, _| {
                opened.fetch_add(1, Ordering::AcqRel);
                Box::pin(async { Ok(()) })
            })
            // A transaction that SQLite rolled back by itself (a full disk, an I/O error) leaves
            // sqlx counting it as open: its ROLLBACK then fails, and every later `begin` on the
            // connection is refused. A connection handed back inside a transaction is checked
            // once its queued rollback has run (the ping runs after it), and closed if sqlx
            // still counts one; the pool opens a fresh connection for the next caller.
            .after_release(|conn, _| {
                Box::pin(async move {
                    if !conn.is_in_transaction() {
                        return Ok(true);
                    }
                    conn.ping().await?;
                    Ok(!conn.is_in_transaction())
                })
            })
            .max_connections(1)
            .acquire_timeout(acquire_timeout)
            // An embedded database has no network to lose: no ping before each use.
            .test_before_acquire(false)
            // Keep the one connection forever: an in-memory database lives only as long as it.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await
            .map_err(|e| match &e {
                // SQLITE_CANTOPEN: no such file, and we were not to create one.
                sqlx::Error::Database(db) if !create && db.code().as_deref() == Some("14") => {
                    StoreError::NoSchema
                }
                _ => e.into(),
            })?;
        Ok(Self { pool, generation })
    }
}

/// Whether Tessera can write the database at `path`: the file and its `-wal` and `-shm`
/// files where they exist, and the directory they are created in, asked of the operating
/// system without opening any of them. (Opening and closing the database file would drop
/// every POSIX lock this process holds on it, the locks SQLite's own connections rely on.)
fn writable(path: &std::path::Path) -> StoreResult<()> {
    let refused = |what: &std::path::Path, e: std::io::Error| {
        StoreError::Other(format!(
            "the SQLite database cannot be written: {}: {e}",
            what.display()
        ))
    };
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = std::path::PathBuf::from(name);
        match may_write(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(refused(&file, e)),
        }
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    may_write(dir).map_err(|e| refused(dir, e))
}

/// access(2) with `W_OK`: whether this process may write `path` (a read-only file system
/// included), without opening it.
#[cfg(unix)]
fn may_write(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL in the path"))?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call, which only reads it.
    match unsafe { libc::access(c.as_ptr(), libc::W_OK) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Elsewhere: the permissions' read-only flag.
#[cfg(not(unix))]
fn may_write(path: &std::path::Path) -> std::io::Result<()> {
    if std::fs::metadata(path)?.permissions().readonly() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "read-only",
        ));
    }
    Ok(())
}

impl Backend for SqliteStore {
    type Db = sqlx::Sqlite;
    type RotationConn<'a> = RotationConn;

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
    }

    /// The one pooled connection: SQLite has a single writer anyway.
    async fn rotation_conn(&self) -> StoreResult<RotationConn> {
        Ok(RotationConn(self.pool.acquire().await?))
    }
}

/// The pooled connection, with the same `release` as the Postgres store's (a no-op here).
pub struct RotationConn(sqlx::pool::PoolConnection<sqlx::Sqlite>);

impl Release for RotationConn {
    fn release(self) {}
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

impl SqliteStore {
    /// Which connection answered, and its `data_version`; `None` for the connection when it
    /// changed while the query ran (the reading is not comparable with anything).
    async fn data_version(&self) -> StoreResult<(Option<u64>, i64)> {
        let before = self.generation.load(Ordering::Acquire);
        let v: i64 = sqlx::query_scalar("PRAGMA data_version")
            .fetch_one(&self.pool)
            .await?;
        let after = self.generation.load(Ordering::Acquire);
        Ok(((before == after).then_some(after), v))
    }
}

/// Sends `Change::Resync` whenever a connection other than ours may have committed since the last
/// reading (the CLI, another process, an operator's `sqlite3` shell), or when a reading is not
/// comparable with the last one; `Change::Lost` when SQLite cannot be read, then `Resync` once it
/// can. Our own commits do not change `data_version` on our connection.
async fn watch(
    store: SqliteStore,
    mut last: (Option<u64>, i64),
    tx: tokio::sync::mpsc::Sender<Change>,
) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy = true;
    loop {
        tick.tick().await;
        if tx.is_closed() {
            return;
        }
        let msg = match store.data_version().await {
            Ok(now) => {
                let same = healthy && now.0.is_some() && now == last;
                healthy = true;
                last = now;
                (!same).then_some(Change::Resync)
            }
            Err(_) if healthy => {
                healthy = false;
                Some(Change::Lost)
            }
            Err(_) => None,
        };
        if let Some(m) = msg {
            if tx.send(m).await.is_err() {
                return;
            }
        }
    }
}

impl SqliteStore {
    /// Starts the `data_version` watcher; see `ChangeNotifier::listen_changes`.
    pub(super) async fn listen_changes(
        &self,
    ) -> StoreResult<Option<tokio::sync::mpsc::Receiver<Change>>> {
        let first = self.data_version().await?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(watch(self.clone(), first, tx));
        Ok(Some(rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite ends a transaction by itself on a full disk or an I/O error; a `ROLLBACK` inside
    /// the transaction does the same behind sqlx's back. The connection must still take
    /// transactions afterwards (it failed every `begin` until a restart).
    #[tokio::test]
    async fn a_transaction_sqlite_ended_by_itself_does_not_wedge_the_connection() {
        let dir = std::env::temp_dir().join(format!("tessera-wedge-{}", uuid::Uuid::now_v7()));
        let url = format!("sqlite://{}/t.db", dir.display());
        let store = SqliteStore::connect(&url, Duration::from_secs(5), true)
            .await
            .unwrap();
        let pool = store.pool();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(pool)
            .await
            .unwrap();
        let opened = store.generation.load(Ordering::Acquire);
        {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
            sqlx::query("INSERT INTO t VALUES (1)")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query("ROLLBACK").execute(&mut *tx).await.unwrap();
            // Dropped: sqlx's own ROLLBACK now fails, and it still counts the transaction.
        }
        for x in 2..4 {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
            sqlx::query("INSERT INTO t VALUES ($1)")
                .bind(x)
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        let rows: Vec<(i64,)> = sqlx::query_as("SELECT x FROM t ORDER BY x")
            .fetch_all(pool)
            .await
            .unwrap();
        assert_eq!(rows, vec![(2,), (3,)]);
        assert_eq!(
            store.generation.load(Ordering::Acquire),
            opened + 1,
            "the wedged connection was replaced once"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
