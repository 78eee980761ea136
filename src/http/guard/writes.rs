//! The writes a server lets run past their answers (see the guard): counted for its
//! shutdown, and given up while they still wait for their body.

use axum::response::Response;

use crate::http::body_read::BodyState;

/// The writes one server runs in tasks of their own, for its shutdown to wait for. Each
/// router has its own, leaked (`Writes::for_router`: a router is built once per server, and a
/// `&'static` keeps the guard `Copy`, with nothing to count per request).
#[derive(Debug)]
pub struct Writes {
    running: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// The writes of a server whose routes have no guard (a bench's bare router): always none.
pub static NO_WRITES: Writes = Writes::none();

impl Writes {
    /// None running, as a `static`'s value.
    pub const fn none() -> Writes {
        Writes {
            running: std::sync::atomic::AtomicUsize::new(0),
            idle: tokio::sync::Notify::const_new(),
        }
    }

    /// A fresh count, for one router.
    pub fn for_router() -> &'static Writes {
        Box::leak(Box::new(Writes {
            running: std::sync::atomic::AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
        }))
    }

    /// Counts a write whose task starts now, until the guard it returns is dropped.
    pub(super) fn start(&'static self) -> Running {
        self.running
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Running(self)
    }

    /// Resolves once none of these writes runs: the last step of a graceful shutdown, after
    /// the connections closed (a write whose client hung up, or that was answered 503, has no
    /// connection left to wait for).
    pub async fn finished(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.running.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Held by a write's task until it ends; the last one out wakes `Writes::finished`.
pub(super) struct Running(&'static Writes);

impl Drop for Running {
    fn drop(&mut self) {
        if self
            .0
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

/// A write's task: given up when it is dropped (its answer given or no longer wanted) while
/// it still waits for its body from the client, and left to run otherwise.
pub(super) struct WriteTask {
    pub(super) handle: tokio::task::JoinHandle<Response>,
    pub(super) body: Option<std::sync::Arc<BodyState>>,
}

impl Drop for WriteTask {
    fn drop(&mut self) {
        if self.body.as_ref().is_some_and(|b| b.waiting()) {
            self.handle.abort();
        }
    }
}
