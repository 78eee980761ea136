//! The audit trail's rows.

use async_trait::async_trait;

use super::backend::{on_backend, Backend, SqlStore};
use super::{AuditEvent, AuditQuery, AuditStore, StoreResult};

const COLUMNS: &str =
    "id, at, event, user_id, session_id, client_id, ip, request_id, reason, actor_id";

/// Parameters per row.
const PER_ROW: usize = 10;

/// Rows per `INSERT` (far under either database's parameter limit).
const ROWS_PER_INSERT: usize = 200;

/// A page of events, with `$at` the expression for the time column.
macro_rules! page {
    ($at:literal) => {
        concat!(
            "SELECT id, at, event, user_id, session_id, client_id, ip, request_id, reason, actor_id
             FROM audit_events
             WHERE ",
            $at,
            " >= $1
               AND ($2 IS NULL OR user_id = $2)
               AND ($3 IS NULL OR event = $3)
               AND ($4 IS NULL OR id > $4)
               AND ",
            $at,
            " < $6
             ORDER BY id
             LIMIT $5"
        )
    };
}
const PAGE: &str = page!("at");
/// On SQLite, `+at` keeps the planner off the `at` index: it took that index for the time
/// range and then sorted every event in it by id (1M events: 660 ms a page). Read in id order
/// on the primary key, a page stops after `limit` rows (2 ms).
const PAGE_SQLITE: &str = page!("+at");

// In index order, like the other purges (see `upkeep.rs`): with a small `LIMIT` and no
// `ORDER BY`, Postgres may scan the table from its start for every batch.
const PURGE: &str = "
    DELETE FROM audit_events WHERE id IN
        (SELECT id FROM audit_events WHERE at < $1 ORDER BY at LIMIT $2)";

/// `INSERT INTO audit_events (…) VALUES ($1, …, $10), ($11, …)` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let p: Vec<String> = (1..=PER_ROW)
                .map(|c| format!("${}", r * PER_ROW + c))
                .collect();
            format!("({})", p.join(", "))
        })
        .collect();
    // A batch is written again after an error whose commit may have gone through (a
    // connection lost at its answer): the rows it stored already are kept as they are.
    format!(
        "INSERT INTO audit_events ({COLUMNS}) VALUES {} ON CONFLICT (id) DO NOTHING",
        values.join(", ")
    )
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn insert_audit(&self, events: &[AuditEvent]) -> StoreResult<()> {
        for chunk in events.chunks(ROWS_PER_INSERT) {
            // Built from numbers only: no input reaches the SQL text.
            let sql = insert_sql(chunk.len());
            on_backend!(self, |b| {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                for e in chunk {
                    q = q
                        .bind(e.id)
                        .bind(e.at)
                        .bind(&e.event)
                        .bind(e.user_id)
                        .bind(e.session_id)
                        .bind(&e.client_id)
                        .bind(&e.ip)
                        .bind(&e.request_id)
                        .bind(&e.reason)
                        .bind(e.actor_id);
                }
                q.execute(b.pool()).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    async fn audit_events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        let sql = match self {
            SqlStore::Postgres(_) => PAGE,
            SqlStore::Sqlite(_) => PAGE_SQLITE,
        };
        let rows: Vec<AuditEvent> = on_backend!(self, |b| sqlx::query_as(sql)
            .bind(query.since)
            .bind(query.user_id)
            .bind(&query.event)
            .bind(query.after)
            .bind(i64::from(query.limit))
            .bind(query.before)
            .fetch_all(b.pool())
            .await)?;
        Ok(rows)
    }

    async fn purge_audit(&self, before: i64) -> StoreResult<u64> {
        // In batches, as the other purges: the largest table must not hold the database (or
        // SQLite's one writer) for one long statement after an outage or a shorter retention.
        self.purge_in_batches(PURGE, &[before]).await
    }
}
