//! Whether a request's body was read to its end: an answer given before that (a 413, a
//! refused content type) leaves bytes on the connection that no next request can follow, so
//! the edge marks it `Connection: close` (RFC 9112 §9.6). And whether its reader is waiting
//! for bytes the client has not sent: a write the guard lets run past its answer is given up
//! while it still waits for its input (it has written nothing yet, and its connection would
//! otherwise stay open for a body that never comes).

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::header;

/// Whether a request announces a body (RFC 9112 §6.3): a `Transfer-Encoding`, or a
/// `Content-Length` other than 0.
pub(super) fn has_body(h: &axum::http::HeaderMap) -> bool {
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// How far a request's body has come, shared between its reader and the layers around it.
#[derive(Debug, Default)]
pub struct BodyState(AtomicU8);

const RECEIVING: u8 = 0;
const WAITING: u8 = 1;
const READ: u8 = 2;

impl BodyState {
    /// Read to its end.
    pub fn read(&self) -> bool {
        self.0.load(Ordering::Relaxed) == READ
    }

    /// Its reader is waiting for bytes the client has not sent (a handler blocked before it
    /// has its input, so before it has written anything).
    pub fn waiting(&self) -> bool {
        self.0.load(Ordering::Relaxed) == WAITING
    }
}

pin_project_lite::pin_project! {
    /// A request body that notes when it is waited on and when it has been read to its end.
    struct TrackedBody {
        #[pin]
        inner: axum::body::Body,
        state: Arc<BodyState>,
    }
}

impl axum::body::HttpBody for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Poll::Ready(frame) = this.inner.poll_frame(cx) else {
            this.state.0.store(WAITING, Ordering::Relaxed);
            return Poll::Pending;
        };
        let now = if frame.is_none() { READ } else { RECEIVING };
        this.state.0.store(now, Ordering::Relaxed);
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// `req` with its body wrapped to note how far it came, and that state (also in the
/// request's extensions, for the guard).
pub(super) fn tracked(req: Request) -> (Request, Arc<BodyState>) {
    let state = Arc::new(BodyState::default());
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(state.clone());
    let body = axum::body::Body::new(TrackedBody {
        inner: body,
        state: state.clone(),
    });
    (Request::from_parts(parts, body), state)
}
