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

/// The writes one server runs in tasks of their own, for its shutdown to wait for. Each
/// router has its own, leaked (`Writes::for_router`: a router is built once per server, and a
/// `&'static` keeps the guard `Copy`, with nothing to count per request).
#[derive(Debug)]
pub struct Writes {
    running: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// The writes of a server whose routes have no guard (a bench's bare router): always none.
pub static NO_WRITES: Writes = Writes {
    running: std::sync::atomic::AtomicUsize::new(0),
    idle: tokio::sync::Notify::const_new(),
};

impl Writes {
    /// A fresh count, for one router.
    pub fn for_router() -> &'static Writes {
        Box::leak(Box::new(Writes {
            running: std::sync::atomic::AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
        }))
    }

    fn start(&'static self) -> Running {
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
struct Running(&'static Writes);

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
pub struct WriteTask {
    handle: tokio::task::JoinHandle<Response>,
    body: Option<std::sync::Arc<BodyState>>,
}

impl Drop for WriteTask {
    fn drop(&mut self) {
        if self.body.as_ref().is_some_and(|b| b.waiting()) {
            self.handle.abort();
        }
    }
}

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
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// RFC 9112 §3.2: a `Host` that is no host and port is refused (each was served).
    #[test]
    fn host_values_are_hosts_and_ports() {
        for ok in [
            "",
            "example.com",
            "a.example:443",
            "127.0.0.1",
            "127.0.0.1:18600",
            "[::1]",
            "[::1]:8080",
            "localhost:",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "a b",
            "127.0.0.1:abc",
            "user@127.0.0.1",
            "[::1",
            "127.0.0.1:99999",
            "127.0.0.1:18600/x",
            "[::1]x",
            "h\u{e9}",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    /// A request as a client sends it (HTTP/1.1, with its `Host`).
    fn request() -> Request {
        let mut req = Request::new(axum::body::Body::empty());
        req.headers_mut()
            .insert(axum::http::header::HOST, "x".parse().unwrap());
        req
    }

    static TEST_WRITES: Writes = Writes {
        running: std::sync::atomic::AtomicUsize::new(0),
        idle: tokio::sync::Notify::const_new(),
    };

    fn guard<S>(inner: S) -> Guard<S> {
        GuardLayer {
            timeout: Duration::from_millis(50),
            max_header_bytes: 16 * 1024,
            body_limit: 1024,
            writes: &TEST_WRITES,
        }
        .layer(inner)
    }

    /// A handler that never waits on anything outside the task but always uses up its coop
    /// budget (rows that keep arriving, a channel that is never empty) still gets its 503 at
    /// the deadline, as under tokio's own `Timeout`.
    #[tokio::test]
    async fn a_handler_that_spends_its_budget_still_times_out() {
        let busy = tower::service_fn(|_: Request| async {
            loop {
                tokio::task::consume_budget().await;
            }
            #[allow(unreachable_code)]
            Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
        });
        let answer = tokio::time::timeout(Duration::from_secs(10), guard(busy).oneshot(request()))
            .await
            .expect("the request timeout never fired");
        let Ok(res) = answer;
        assert_eq!(res.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    }

    /// A handler that waits (a database round trip) is cut off at the deadline; one that is
    /// ready at once is answered, with no timer.
    #[tokio::test]
    async fn a_waiting_handler_times_out_and_a_ready_one_answers() {
        let slow = tower::service_fn(|_: Request| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
        });
        let Ok(res) = guard(slow).oneshot(request()).await;
        assert_eq!(res.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        let ready = tower::service_fn(|_: Request| async {
            Ok::<_, Infallible>(Response::new(axum::body::Body::from("ok")))
        });
        let Ok(res) = guard(ready).oneshot(request()).await;
        assert_eq!(res.status(), axum::http::StatusCode::OK);
    }

    /// A handler that takes `delay` and then sets the flag it returns.
    fn slow_handler(
        delay: Duration,
    ) -> (
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        impl Service<Request, Response = Response, Error = Infallible, Future: Send + 'static> + Clone,
    ) {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let handler = tower::service_fn(move |_: Request| {
            let flag = flag.clone();
            async move {
                tokio::time::sleep(delay).await;
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
            }
        });
        (done, handler)
    }

    /// A request that may write runs to its end after its 503 (its answer was no longer
    /// wanted, or the client hung up): it was cut off between its writes. A `GET` is not.
    #[tokio::test]
    async fn a_write_runs_to_its_end_past_the_timeout() {
        use std::sync::atomic::Ordering;
        for (method, finishes) in [
            (axum::http::Method::POST, true),
            (axum::http::Method::DELETE, true),
            (axum::http::Method::GET, false),
        ] {
            let (done, slow) = slow_handler(Duration::from_millis(200));
            let mut req = request();
            *req.method_mut() = method.clone();
            let Ok(res) = guard(slow).oneshot(req).await;
            assert_eq!(res.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
            assert!(
                !done.load(Ordering::SeqCst),
                "{method}: answered before the end"
            );
            tokio::time::sleep(Duration::from_millis(600)).await;
            assert_eq!(done.load(Ordering::SeqCst), finishes, "{method}");
        }
        // A client that hangs up (the answer's future dropped) leaves a write running too.
        let (done, slow) = slow_handler(Duration::from_millis(30));
        let mut req = request();
        *req.method_mut() = axum::http::Method::POST;
        let answer = guard(slow).oneshot(req);
        let _ = tokio::time::timeout(Duration::from_millis(5), answer).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            done.load(Ordering::SeqCst),
            "the dropped write ran to its end"
        );
    }

    /// A write still waiting for its body when it is answered 503 has written nothing: it is
    /// given up, so that its body (and connection) is let go; it held the connection open for
    /// a body that never came. The shutdown waits for the writes that do run on.
    #[tokio::test]
    async fn a_write_waiting_for_its_body_is_given_up_and_the_shutdown_waits_for_the_rest() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        /// Sets its flag when dropped: the handler's future was given up.
        struct Dropped(Arc<AtomicBool>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = dropped.clone();
        let reads = tower::service_fn(move |req: Request| {
            let guard = Dropped(flag.clone());
            async move {
                let _guard = guard;
                let _ = axum::body::to_bytes(req.into_body(), 1024).await;
                Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
            }
        });
        // A body whose bytes never come.
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, Infallible>>(1);
        let body = axum::body::Body::from_stream(tokio_stream_of(rx));
        let mut req = request();
        *req.method_mut() = axum::http::Method::POST;
        *req.body_mut() = body;
        let (req, state) = super::super::body_read::tracked(req);
        let Ok(res) = guard(reads).oneshot(req).await;
        assert_eq!(res.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(state.waiting());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            dropped.load(Ordering::SeqCst),
            "the waiting write was given up"
        );
        // A write that runs on past its answer: the shutdown's last step waits for it.
        let (done, slow) = slow_handler(Duration::from_millis(300));
        let mut req = request();
        *req.method_mut() = axum::http::Method::POST;
        let Ok(res) = guard(slow).oneshot(req).await;
        assert_eq!(res.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        tokio::time::timeout(Duration::from_secs(5), TEST_WRITES.finished())
            .await
            .expect("the writes finish");
        assert!(
            done.load(Ordering::SeqCst),
            "the shutdown waited for the write"
        );
    }

    /// The receiver as a stream of body chunks.
    fn tokio_stream_of(
        mut rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, Infallible>>,
    ) -> impl futures::Stream<Item = Result<bytes::Bytes, Infallible>> + Send {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    /// A hosted page's request that times out gets a page (a browser shows JSON as text); an
    /// API request gets the JSON error body. Both are 503 with `Retry-After`.
    #[tokio::test]
    async fn a_browser_gets_its_timeout_as_a_page() {
        let slow = || {
            tower::service_fn(|_: Request| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
            })
        };
        for (accept, html) in [
            (Some("text/html,application/xhtml+xml,*/*;q=0.8"), true),
            (Some("application/json"), false),
            (None, false),
        ] {
            let mut req = request();
            if let Some(a) = accept {
                req.headers_mut().insert(
                    axum::http::header::ACCEPT,
                    axum::http::HeaderValue::from_static(a),
                );
            }
            let Ok(res) = guard(slow()).oneshot(req).await;
            assert_eq!(res.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
            assert!(res.headers().contains_key(axum::http::header::RETRY_AFTER));
            let kind = res.headers()[axum::http::header::CONTENT_TYPE].clone();
            let body = axum::body::to_bytes(res.into_body(), 1 << 16)
                .await
                .unwrap();
            let body = String::from_utf8(body.to_vec()).unwrap();
            if html {
                assert_eq!(kind, "text/html; charset=utf-8");
                assert!(body.contains("<html lang=\"en\">"), "{body}");
            } else {
                assert_eq!(kind, "application/json");
                assert!(body.contains("temporarily_unavailable"), "{body}");
            }
        }
    }
}
