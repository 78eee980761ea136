//! The production store: Postgres, shared by every replica.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::sql::impl_store;
use super::StoreResult;

/// Idle time after which a pooled connection is checked before use.
const IDLE_PING_AFTER: Duration = Duration::from_secs(1);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Postgres behind a connection pool. Migrations take an advisory lock, so several replicas may
/// start at once.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
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
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(acquire_timeout)
            // A connection that sat idle is pinged before use, so one broken by a database
            // restart is replaced instead of failing a request. Busy connections are not: a
            // ping per acquire would double the round trips of every request. (sqlx 0.9 also
            // pings every connection as it returns to the pool, off the request's path, and
            // closes it there if the ping fails.)
            .test_before_acquire(false)
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
        Ok(Self { pool })
    }

    /// The underlying pool (tests and tooling).
    pub fn pool(&self) -> &PgPool {
        &self.pool
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

impl_store!(PgStore, MIGRATOR, {
    async fn notify_change(&self, what: &str) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify('tessera_changes', $1)")
            .bind(what)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn listen_changes(&self) -> StoreResult<Option<tokio::sync::mpsc::Receiver<String>>> {
        let mut listener = relisten(&self.pool).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        if tx.send(n.payload().to_string()).await.is_err() {
                            return;
                        }
                    }
                    // The connection broke: say so at once (the consumer stops trusting what
                    // it learnt from notifications), then listen on a fresh connection.
                    Ok(None) | Err(_) => {
                        if tx.send("lost".into()).await.is_err() {
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
                        if tx.send("listening".into()).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Some(rx))
    }
});

async fn relisten(pool: &PgPool) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    // Report a lost connection at once instead of after a reconnect, which hides the gap.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// The NOTIFY channel replicas share.
const CHANNEL: &str = "tessera_changes";
