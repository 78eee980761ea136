//! The production store: Postgres, shared by every replica.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::sql::impl_store;
use super::StoreResult;

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
            // Connections found broken are replaced instead of failing requests forever after a
            // database restart.
            .test_before_acquire(true)
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

impl_store!(PgStore, MIGRATOR);
