//! The request limits enforced inside CORS, so that their answers carry the contract like any
//! other: the JSON error body, `x-request-id` (added by the edge, outside) and, for a listed
//! origin, the CORS headers (added by the CORS layer, outside):
//! - a request head over `http.max_header_bytes`, or with more than `MAX_HEADER_FIELDS`
//!   fields, is answered 431;
//! - a declared `Content-Length` over `http.body_limit` is answered 413 at once, without
//!   waiting for a body that may never come;
//! - an HTTP/1.1 request without a `Host` field, any request with more than one, or one whose
//!   value is not a host and port, is answered 400 (RFC 9112 §3.2: which host it is for is
//!   unknown);
//! - a request that takes longer than `http.request_timeout` is answered 503.
//!
//! A request that may change state (any method but `GET`, `HEAD` and `OPTIONS`, and the
//! two pages whose `GET` writes: `/authorize` issues a code, `/end_session` may end the SSO
//! session) runs to its end in a task of its own, even when its answer is no longer wanted:
//! past the timeout, or when the client hangs up. Cutting it off between two writes (a
//! password changed but the other sessions not yet ended, a session created but its audit
//! event not yet written) would leave the store half-changed. Two exceptions: a request
//! still waiting for its body (it has written nothing) is given up with its answer, so that
//! its connection closes; and the shutdown waits for these writes (`Writes::finished`) only
//! within `http.shutdown_grace`.
//!
//! hyper itself refuses heads past a larger hard cap (see `serve`), with a bare 431: that cap
//! bounds the memory one connection can hold, this one is the contract.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};
use tracing::Instrument;

use super::body_read::BodyState;
use super::error::ApiError;

mod writes;
use writes::WriteTask;
pub use writes::{Writes, NO_WRITES};

/// The most header fields a request may have.
pub const MAX_HEADER_FIELDS: usize = 100;

/// See the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct GuardLayer {
    pub timeout: Duration,
    pub max_header_bytes: usize,
    pub body_limit: usize,
    /// The server's writes that run in tasks of their own (`Writes::for_router`).
    pub writes: &'static Writes,
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;
    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            limits: *self,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    limits: GuardLayer,
}

/// The size of the request head as it came on the wire (HTTP/1.1), near enough: the request
/// line and every `name: value\r\n`.
fn head_bytes(req: &Request) -> usize {
    // The URI's length as `Display` writes it, without writing it.
    let uri = req.uri();
    let uri_len = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path().len()
        + uri.query().map_or(0, |q| q.len() + 1);
    let line = req.method().as_str().len() + uri_len + 12;
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    line + headers
}

/// Whether a request is a browser's (its `Accept` names `text/html`, as a navigation or a
/// form's submission does).
fn wants_html(req: &Request) -> bool {
    req.headers()
        .get(axum::http::header::ACCEPT)
        .is_some_and(|a| a.as_bytes().windows(9).any(|w| w == b"text/html"))
}

/// The timeout's answer to a browser: the same status and headers (`Retry-After`), as a page.
fn timed_out_page(res: Response) -> Response {
    const PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
        <title>Try again</title></head><body><h1>Try again</h1>\
        <p>The server took too long to answer. Please try again in a moment.</p></body></html>\n";
    let (mut parts, _) = res.into_parts();
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    Response::from_parts(parts, axum::body::Body::from(PAGE))
}

/// Whether the request names its host as RFC 9112 §3.2 asks: one `Host` field with a valid
/// value, which HTTP/1.0 may leave out (HTTP/2 names it in `:authority` instead).
fn one_host(req: &Request) -> bool {
    let mut hosts = req.headers().get_all(axum::http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(host), None) => valid_host(host.as_bytes()),
        (Some(_), Some(_)) => false,
        (None, _) => req.version() != axum::http::Version::HTTP_11,
    }
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a name, an IPv4 address or a
/// bracketed IPv6 literal, and a port of at most 65535; no user information. Empty is allowed
/// (a request whose target has no authority).
fn valid_host(value: &[u8]) -> bool {
    let Ok(host) = std::str::from_utf8(value) else {
        return false;
    };
    if host.is_empty() {
        return true;
    }
    if host.contains('@') || host.parse::<axum::http::uri::Authority>().is_err() {
        return false;
    }
    let port = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((_, "")) => None,
            Some((_, rest)) => match rest.strip_prefix(':') {
                Some(port) => Some(port),
                None => return false,
            },
            None => return false,
        },
        None => host.rsplit_once(':').map(|(_, port)| port),
    };
    port.is_none_or(|p| {
        p.is_empty() || (p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok())
    })
}

/// The `Content-Length` a request declares, if it declares one that parses.
fn declared_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl<S, B> Service<Request> for Guard<S>
where
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = GuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let refused = if head_bytes(&req) > self.limits.max_header_bytes
            || req.headers().len() > MAX_HEADER_FIELDS
        {
            Some(ApiError::HeaderTooLarge)
        } else if declared_length(&req).is_some_and(|n| n > self.limits.body_limit as u64) {
            Some(ApiError::PayloadTooLarge)
        } else if !one_host(&req) {
            Some(ApiError::InvalidRequest(
                "the Host header field is missing, repeated or not a host and port (RFC 9112 §3.2)"
                    .into(),
            ))
        } else {
            None
        };
        if let Some(e) = refused {
            return GuardFuture::Refused {
                response: Some(e.into_response()),
            };
        }
        // As tokio's `timeout`: a deadline past what an `Instant` can hold is none.
        let deadline = tokio::time::Instant::now().checked_add(self.limits.timeout);
        let html = wants_html(&req);
        let safe = matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
        ) && !req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .is_some_and(|p| matches!(p.as_str(), "/authorize" | "/end_session"));
        let body = req.extensions().get::<std::sync::Arc<BodyState>>().cloned();
        let inner = self.inner.call(req);
        if safe {
            return GuardFuture::Running {
                deadline,
                html,
                inner,
                timer: None,
            };
        }
        GuardFuture::Detached {
            start: Some((inner, body)),
            writes: self.limits.writes,
            task: None,
            deadline,
            html,
            timer: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Guard`]. The timer is armed only when the request has to wait
    /// (most answers are ready at their first poll, and a timer costs a shared handle and a
    /// wheel entry); its deadline counts from the request's start either way. Otherwise it
    /// follows tokio's `Timeout`, budget rule included (see `poll`).
    #[project = GuardProj]
    pub enum GuardFuture<F> {
        Refused { response: Option<Response> },
        Running {
            #[pin]
            inner: F,
            deadline: Option<tokio::time::Instant>,
            // A browser's request (a hosted page): its timeout is a page, not JSON.
            html: bool,
            timer: Option<Pin<Box<tokio::time::Sleep>>>,
        },
        // A request that may write: spawned at its first poll (inside the request's span, so
        // its logs keep their request id), and left to finish if this future is dropped.
        Detached {
            start: Option<(F, Option<std::sync::Arc<BodyState>>)>,
            writes: &'static Writes,
            task: Option<WriteTask>,
            deadline: Option<tokio::time::Instant>,
            html: bool,
            timer: Option<Pin<Box<tokio::time::Sleep>>>,
        },
    }
}

/// Waits for `deadline` (none: for ever), arming the timer on the first wait, and answers 503
/// when it passes: as a page to a browser.
fn poll_deadline(
    deadline: Option<tokio::time::Instant>,
    timer: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    html: bool,
    had_budget: bool,
    cx: &mut Context<'_>,
) -> Poll<Response> {
    let Some(deadline) = deadline else {
        return Poll::Pending;
    };
    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    // A handler that used up the task's budget (a stream of ready rows, a busy channel) would
    // leave the timer no budget to notice its deadline, poll after poll: as tokio's `Timeout`
    // does, the timer is then polled outside the budget.
    if had_budget && !tokio::task::coop::has_budget_remaining() {
        let unbudgeted = tokio::task::coop::unconstrained(timer.as_mut());
        ready!(std::pin::pin!(unbudgeted).poll(cx));
    } else {
        ready!(timer.as_mut().poll(cx));
    }
    let res = ApiError::Unavailable("request timed out").into_response();
    Poll::Ready(if html { timed_out_page(res) } else { res })
}

impl<F, B> Future for GuardFuture<F>
where
    F: Future<Output = Result<axum::http::Response<B>, Infallible>> + Send + 'static,
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| ApiError::HeaderTooLarge.into_response()))),
            GuardProj::Running {
                inner,
                deadline,
                html,
                timer,
            } => {
                let had_budget = tokio::task::coop::has_budget_remaining();
                if let Poll::Ready(res) = inner.poll(cx) {
                    return Poll::Ready(Ok(match res {
                        Ok(res) => res.map(axum::body::Body::new),
                        Err(never) => match never {},
                    }));
                }
                poll_deadline(*deadline, timer, *html, had_budget, cx).map(Ok)
            }
            GuardProj::Detached {
                start,
                writes,
                task,
                deadline,
                html,
                timer,
            } => {
                if let Some((inner, body)) = start.take() {
                    let running = writes.start();
                    let answered = async move {
                        let _running = running;
                        match inner.await {
                            Ok(res) => res.map(axum::body::Body::new),
                            Err(never) => match never {},
                        }
                    };
                    *task = Some(WriteTask {
                        handle: tokio::spawn(answered.in_current_span()),
                        body,
                    });
                }
                let had_budget = tokio::task::coop::has_budget_remaining();
                if let Some(t) = task.as_mut() {
                    if let Poll::Ready(done) = Pin::new(&mut t.handle).poll(cx) {
                        // The handler's panics are answered inside the task; a task that
                        // still failed (the runtime shutting down) is a 500.
                        return Poll::Ready(Ok(done.unwrap_or_else(|_| {
                            ApiError::Internal("request task failed".into()).into_response()
                        })));
                    }
                }
                poll_deadline(*deadline, timer, *html, had_budget, cx).map(Ok)
            }
        }
    }
}

#[cfg(test)]
mod tests;
