//! Whether a request's body was read to its end: an answer given before that (a 413, a
//! refused content type) leaves bytes on the connection that no next request can follow, so
//! the edge marks it `Connection: close` (RFC 9112 §9.6).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::extract::Request;
use axum::http::header;

/// Whether a request announces a body (RFC 9112 §6.3): a `Transfer-Encoding`, or a
/// `Content-Length` other than 0.
pub(super) fn has_body(h: &axum::http::HeaderMap) -> bool {
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

pin_project_lite::pin_project! {
    /// A request body that notes when it has been read to its end.
    struct TrackedBody {
        #[pin]
        inner: axum::body::Body,
        read: Arc<AtomicBool>,
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
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            this.read.store(true, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// `req` with its body wrapped to note its end, and the flag it sets.
pub(super) fn tracked(req: Request) -> (Request, Arc<AtomicBool>) {
    let read = Arc::new(AtomicBool::new(false));
    let (parts, body) = req.into_parts();
    let body = axum::body::Body::new(TrackedBody {
        inner: body,
        read: read.clone(),
    });
    (Request::from_parts(parts, body), read)
}
