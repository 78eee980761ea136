//! The audit trail. Every security event is:
//! - a structured log line (target `audit`, `event=…`; JSON with `log.format = "json"`);
//! - a row of `audit_events`, listed by `GET /admin/audit` and purged after `audit.retention`;
//! - a count in `/metrics` (`audit_events_total{event}`).
//!
//! Each carries the time, the user and session when known, the OAuth client, the client
//! address and the request id (from the `Caller` the HTTP edge builds for each request),
//! and a reason code. Never a password, token, hash or key. `login.throttled` carries no user:
//! a refused attempt is not looked up, and its name need not be an account's. Rows are listed by
//! id (UUIDv7, taken when the event happens); a batch written late can land behind a cursor
//! already handed out, so a client following the trail should re-read its last minute.
//!
//! `token.refreshed` is stored only with `audit.store_refreshes` (off by default: a row per
//! refresh costs `/refresh` throughput); it is always logged and counted.
//!
//! In a server, rows are written by a background writer in batches, so that an event costs the
//! request a channel send and not a database round trip (`/refresh` stays one statement). If
//! the writer falls `QUEUE` events behind (the database is down), further rows are dropped and
//! counted in `audit_events_dropped_total`; the log line is written regardless. The CLI, which
//! runs no writer, writes each row before the command returns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Mutex, Notify};
use uuid::Uuid;

use crate::store::{AuditEvent, AuditQuery, Store};
use crate::time::UnixMillis;

mod event;
pub use event::Event;

/// Events the writer may fall behind by before rows are dropped.
const QUEUE: usize = 16_384;
/// Most rows written in one go.
const BATCH: usize = 1_000;
/// The waits before a failed batch is written again.
const WRITE_RETRIES: [std::time::Duration; 2] = [
    std::time::Duration::from_millis(100),
    std::time::Duration::from_millis(500),
];
/// Longest request id kept, in characters (the edge replaces longer ones a client sends).
const MAX_REQUEST_ID_CHARS: usize = 128;
/// How long after it happens an event appears in `GET /admin/audit`: more than any replica's
/// writer takes to store it, so that a cursor never passes a row written late.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// A request's id: one Tessera made, or the caller's (kept only when logs and rows can carry
/// it exactly).
#[derive(Debug, Clone, Default)]
pub enum RequestId {
    #[default]
    None,
    Made(Uuid),
    Given(Box<str>),
}

impl RequestId {
    fn text(&self) -> Option<String> {
        match self {
            RequestId::None => None,
            RequestId::Made(id) => Some(id.to_string()),
            RequestId::Given(id) => Some(id.chars().take(MAX_REQUEST_ID_CHARS).collect()),
        }
    }
}

/// Who asks for an audited action: the request's id, the client's address and, in the admin
/// API, the administrator acting. The edge builds one per request and hands it to the use case
/// as an argument; the CLI and the background loop use `Caller::default()` (none of the
/// three). Building one allocates nothing for a request without its own id.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub request_id: RequestId,
    /// The client address (the socket peer, or what a trusted proxy forwarded).
    pub client_ip: Option<std::net::IpAddr>,
    /// The administrator acting, once the admin API has authenticated one.
    pub actor: Option<Uuid>,
}

impl Caller {
    /// The same caller, acting as administrator `id`.
    pub fn acting_as(mut self, id: Uuid) -> Self {
        self.actor = Some(id);
        self
    }
}

/// One event to record: who and what. Time, address and request id are added.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub user_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub client_id: Option<String>,
    pub reason: Option<&'static str>,
}

impl Record {
    /// An event about user `id`.
    pub fn user(id: Uuid) -> Self {
        Record {
            user_id: Some(id),
            ..Record::default()
        }
    }

    /// An event about one session of a user.
    pub fn session(user_id: Uuid, session_id: Uuid) -> Self {
        Record {
            user_id: Some(user_id),
            session_id: Some(session_id),
            ..Record::default()
        }
    }

    /// The OAuth client the event concerns (only a configured client's id).
    pub fn client(mut self, client_id: &str) -> Self {
        self.client_id = Some(client_id.to_string());
        self
    }

    /// A reason code (a fixed word, never input).
    pub fn reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }
}

/// The writer of the audit trail (see the module documentation).
pub struct AuditTrail {
    store: Arc<dyn Store>,
    /// `audit.store_refreshes`.
    store_refreshes: bool,
    queue: mpsc::Sender<AuditEvent>,
    pending: Mutex<Option<mpsc::Receiver<AuditEvent>>>,
    /// A background writer is running: rows go through the queue.
    batched: AtomicBool,
    stop: Notify,
}

impl AuditTrail {
    /// A trail writing to `store`, directly until `run_writer` starts batching.
    pub fn new(store: Arc<dyn Store>, store_refreshes: bool) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        AuditTrail {
            store,
            store_refreshes,
            queue,
            pending: Mutex::new(Some(pending)),
            batched: AtomicBool::new(false),
            stop: Notify::new(),
        }
    }

    /// Records one event: the log line and the count at once, the row now (CLI) or through the
    /// writer (server).
    pub async fn record(&self, caller: &Caller, event: Event, r: Record) {
        metrics::counter!("audit_events_total", "event" => event.name()).increment(1);
        let store_row = event != Event::Refreshed || self.store_refreshes;
        // The hottest event (a refresh) is usually neither stored nor logged at info: then
        // nothing more is built for it.
        if !store_row && !tracing::enabled!(target: "audit", tracing::Level::INFO) {
            return;
        }
        let (request_id, ip, actor_id) = (
            caller.request_id.text(),
            caller.client_ip.map(|ip| ip.to_string()),
            caller.actor,
        );
        let row = AuditEvent {
            id: Uuid::now_v7(),
            at: UnixMillis::now().0,
            event: event.name().to_string(),
            user_id: r.user_id,
            session_id: r.session_id,
            client_id: r.client_id,
            ip,
            request_id,
            reason: r.reason.map(str::to_string),
            actor_id,
        };
        tracing::info!(
            target: "audit",
            event = event.name(),
            user_id = row.user_id.map(tracing::field::display),
            session_id = row.session_id.map(tracing::field::display),
            client_id = row.client_id.as_deref(),
            ip = row.ip.as_deref(),
            request_id = row.request_id.as_deref(),
            actor_id = row.actor_id.map(tracing::field::display),
            reason = r.reason,
            "audit event"
        );
        if !store_row {
            return;
        }
        let row = if self.batched.load(Ordering::Acquire) {
            match self.queue.try_send(row) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics::counter!("audit_events_dropped_total").increment(1);
                    return;
                }
                // The writer has stopped (shutdown): write it here.
                Err(mpsc::error::TrySendError::Closed(row)) => row,
            }
        } else {
            row
        };
        if let Err(e) = self.store.insert_audit(std::slice::from_ref(&row)).await {
            metrics::counter!("audit_events_dropped_total").increment(1);
            tracing::warn!(error = %e, event = event.name(), "audit row not stored");
        }
    }

    /// Writes queued rows in batches until `stop`, then drains the queue. Run once, by the
    /// server, alongside the upkeep loop.
    pub async fn run_writer(&self) {
        let Some(mut rx) = self.pending.lock().await.take() else {
            return;
        };
        self.batched.store(true, Ordering::Release);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return;
                    }
                    self.write(&mut batch).await;
                }
                _ = self.stop.notified() => {
                    self.batched.store(false, Ordering::Release);
                    // Closed first: a send racing the drain fails with `Closed`, and its
                    // sender writes the row itself.
                    rx.close();
                    while let Ok(row) = rx.try_recv() {
                        batch.push(row);
                        if batch.len() == BATCH {
                            self.write(&mut batch).await;
                        }
                    }
                    self.write(&mut batch).await;
                    return;
                }
            }
        }
    }

    /// Asks the writer to write what is queued and stop; later events are written directly.
    pub fn stop(&self) {
        self.stop.notify_one();
    }

    async fn write(&self, batch: &mut Vec<AuditEvent>) {
        if batch.is_empty() {
            return;
        }
        // A connection lost (a database restart, a killed backend) fails one batch: it is
        // written again, twice, before its rows count as dropped. Rows already stored are
        // kept as they are (the insert skips ids it has).
        let mut waits = WRITE_RETRIES.iter();
        loop {
            match self.store.insert_audit(batch).await {
                Ok(()) => break,
                Err(e) => match waits.next() {
                    Some(wait) => {
                        tracing::info!(error = %e, rows = batch.len(), "audit rows written again");
                        tokio::time::sleep(*wait).await;
                    }
                    None => {
                        metrics::counter!("audit_events_dropped_total")
                            .increment(batch.len() as u64);
                        tracing::warn!(error = %e, rows = batch.len(), "audit rows not stored");
                        break;
                    }
                },
            }
        }
        batch.clear();
    }

    /// A page of the trail.
    pub async fn page(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>, crate::store::StoreError> {
        self.store.audit_events(q).await
    }
}
