//! The production store: Postgres, shared by every replica.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use super::backend::{Backend, Release};
use super::{Change, StoreResult};

/// Idle time after which a pooled connection is checked before use.
const IDLE_PING_AFTER: Duration = Duration::from_secs(1);

/// How long a pooled connection lives (see `PgStore::connect`).
const MAX_LIFETIME: Duration = Duration::from_secs(60);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Postgres behind a connection pool. Migrations take an advisory lock, so several replicas may
/// start at once.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Connections reserved for the refresh rotation (see `HotConns`).
    hot: Arc<HotConns>,
}

impl PgStore {
    /// Connects lazily: the pool opens connections on first use, so a server can start (and
    /// report not-ready) while the database is still coming up.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> StoreResult<Self> {
        let opts: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| {
            super::StoreError::Other(format!("bad database url: {}", redact(&e.to_string())))
        })?;
        // Half of the connections serve the refresh rotation, the rest everything else.
        let hot_size = (max_connections / 2).max(1);
        let hot = Arc::new(HotConns {
            opts: opts.clone(),
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(hot_size as usize),
            acquire_timeout,
        });
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.saturating_sub(hot_size).max(1))
            .min_connections(0)
            .acquire_timeout(acquire_timeout)
            // A connection that sat idle is pinged before use, so one broken by a database
            // restart is replaced instead of failing a request. Busy connections are not: a
            // ping per acquire would double the round trips of every request. (sqlx 0.9 also
            // pings every connection as it returns to the pool, off the request's path, and
            // closes it there if the ping fails.)
            .test_before_acquire(false)
            // A session keeps what it was opened with: one opened read-only (a standby, a
            // demoted primary, `default_transaction_read_only`) or to the address a failover
            // has since moved stays so. A minute's lifetime lets the pool reopen them all once
            // the database takes writes again, at the cost of a connection a minute.
            .max_lifetime(MAX_LIFETIME)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > IDLE_PING_AFTER {
                        use sqlx::Connection;
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(opts);
        Ok(Self { pool, hot })
    }

    /// A connection outside both pools, closed when dropped: for a read that may be cut short
    /// mid-protocol (a `COPY` abandoned part-way leaves a connection that must not be reused).
    pub(super) async fn dedicated_conn(&self) -> StoreResult<PgConnection> {
        let timeout = self.hot.acquire_timeout;
        tokio::time::timeout(timeout, self.hot.opts.connect())
            .await
            .map_err(|_| super::StoreError::Unavailable("connecting timed out".into()))?
            .map_err(super::StoreError::from)
    }
}

impl Backend for PgStore {
    type Db = sqlx::Postgres;
    type RotationConn<'a> = HotConn<'a>;

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
    }

    async fn rotation_conn(&self) -> StoreResult<HotConn<'_>> {
        self.hot.get().await
    }
}

/// A few connections kept outside sqlx's pool for the one statement of a refresh. sqlx's pool
/// sends a ping (a Sync round trip) every time a connection returns to it; on the refresh path
/// that doubles the round trips Postgres serves. Here a connection goes back to the idle list
/// only after its statement completed (`HotConn::release`); one dropped mid-statement (a
/// cancelled request) or after an error is closed instead, which is what the ping guards
/// against. A connection idle for more than a second is pinged before use, like the pool's.
struct HotConns {
    opts: PgConnectOptions,
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    permits: tokio::sync::Semaphore,
    acquire_timeout: Duration,
}

impl HotConns {
    async fn get(&self) -> StoreResult<HotConn<'_>> {
        let unavailable = |what: &str| super::StoreError::Unavailable(what.to_string());
        let started = Instant::now();
        let permit = tokio::time::timeout(self.acquire_timeout, self.permits.acquire())
            .await
            .map_err(|_| unavailable("no refresh connection free"))?
            .map_err(|_| unavailable("refresh connections closed"))?;
        let popped = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match popped {
            Some((mut c, since)) => {
                if since.elapsed() > IDLE_PING_AFTER && c.ping().await.is_err() {
                    None
                } else {
                    Some(c)
                }
            }
            None => None,
        };
        let conn = match conn {
            Some(c) => c,
            None => {
                let left = self.acquire_timeout.saturating_sub(started.elapsed());
                tokio::time::timeout(left, self.opts.connect())
                    .await
                    .map_err(|_| unavailable("connecting timed out"))??
            }
        };
        Ok(HotConn {
            conn: Some(conn),
            home: self,
            _permit: permit,
            clean: false,
        })
    }
}

/// A connection lent by `HotConns`; see there.
pub struct HotConn<'a> {
    conn: Option<PgConnection>,
    home: &'a HotConns,
    _permit: tokio::sync::SemaphorePermit<'a>,
    clean: bool,
}

impl Release for HotConn<'_> {
    /// The statement completed: the connection may serve the next refresh.
    fn release(mut self) {
        self.clean = true;
    }
}

impl std::ops::Deref for HotConn<'_> {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        // Only `Drop` takes the connection out.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for HotConn<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for HotConn<'_> {
    fn drop(&mut self) {
        let Some(c) = self.conn.take() else { return };
        let mut idle = self.home.idle.lock().unwrap_or_else(|p| p.into_inner());
        if self.clean {
            idle.push((c, Instant::now()));
        } else {
            // `c` is dropped: the socket closes, and Postgres rolls back anything open. The
            // failure may be the database restarting: drop the idle ones too rather than fail
            // one request per stale connection.
            idle.clear();
        }
    }
}

/// Parse errors can quote the URL; drop anything after a scheme to keep passwords out of logs.
fn redact(msg: &str) -> String {
    if msg.contains("://") {
        "unparseable connection URL".to_string()
    } else {
        msg.to_string()
    }
}

impl PgStore {
    /// NOTIFY every replica (the channel the triggers of migration 0004 also write to).
    pub(super) async fn notify_change(&self, change: &Change) -> StoreResult<()> {
        let Some(payload) = change.payload() else {
            return Ok(());
        };
        sqlx::query("SELECT pg_notify('tessera_changes', $1)")
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// LISTENs on a connection of its own; see `ChangeNotifier::listen_changes`.
    pub(super) async fn listen_changes(
        &self,
    ) -> StoreResult<Option<tokio::sync::mpsc::Receiver<Change>>> {
        let mut listener = relisten(&self.pool).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        if tx.send(Change::parse(n.payload())).await.is_err() {
                            return;
                        }
                    }
                    // The connection broke: say so at once (the consumer stops trusting what
                    // it learnt from notifications), then listen on a fresh connection.
                    Ok(None) | Err(_) => {
                        if tx.send(Change::Lost).await.is_err() {
                            return;
                        }
                        listener = loop {
                            match relisten(&pool).await {
                                Ok(l) => break l,
                                Err(e) => {
                                    tracing::warn!(error = %e, "change listener down; retrying");
                                    tokio::time::sleep(Duration::from_millis(500)).await;
                                }
                            }
                        };
                        if tx.send(Change::Resync).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Some(rx))
    }
}

async fn relisten(pool: &PgPool) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    // Report a lost connection at once instead of after a reconnect, which hides the gap.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// The NOTIFY channel replicas share.
const CHANNEL: &str = "tessera_changes";
