//! The one middleware every route goes through, as a single service with a single future:
//! - a request id (UUIDv7, or the caller's `x-request-id`), on the request, the response and
//!   the trace span;
//! - `Authorization`, `Cookie` and `Proxy-Authorization` marked sensitive, so no `Debug` of
//!   the request prints them;
//! - `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
//!   `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'`, and
//!   `Cache-Control: no-store` on every answer that does
//!   not set its own (tokens, errors, user data: RFC 6749 §5.1; only the JWKS and discovery
//!   documents are cacheable);
//! - per-route metrics (`http_requests_total`, `http_request_duration_seconds`);
//! - a note on `auth::password::Activity`, for every request but a login, that password hashing
//!   should yield the CPU;
//! - the request's `auth::Caller` (request id, client address) in its extensions, which the
//!   `RequestCaller` extractor hands to the use cases that record audit events; only on routes that
//!   can record one, so the JWKS, discovery, health and metrics paths do not pay for it;
//! - `Connection: close` on an answer given before the request's body was read to its end
//!   (a 413, a 415, a refusal before parsing): the connection cannot carry another request
//!   then, and RFC 9112 §9.6 asks the server to say so, or a client that reuses it loses the
//!   request it sends next.
//!
//! It replaces a stack of separate tower-http layers and `from_fn` middlewares: one future
//! instead of seven nested ones, and no allocation for metric labels. This matters on the
//! cheapest paths (the JWKS), where the middleware costs as much as the handler.

use std::cell::RefCell;
use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use tower::{Layer, Service};
use tracing::instrument::Instrumented;
use tracing::Instrument;

use crate::auth::audit::{Caller, RequestId};
use crate::auth::password::Activity;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct EdgeLayer {
    pub activity: Activity,
    /// `http.trusted_proxies`, parsed: whose forwarded addresses are believed.
    pub trusted_proxies: std::sync::Arc<super::client_addr::ProxyTrust>,
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;
    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            shared: std::sync::Arc::new(self.clone()),
        }
    }
}

/// The router clones a route's whole service for every request, so what the edge needs is
/// behind one reference count.
#[derive(Debug, Clone)]
pub struct Edge<S> {
    inner: S,
    shared: std::sync::Arc<EdgeLayer>,
}

impl<S, B> Service<Request> for Edge<S>
where
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>,
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let started = Instant::now();
        let headers = req.headers_mut();
        // A caller's id is kept if it is 1 to 128 visible ASCII characters, so that logs, the
        // audit trail and the answer all carry it exactly; anything else gets a fresh one.
        let (id, request_id) = match headers.get(&X_REQUEST_ID) {
            Some(v) if usable_request_id(v.as_bytes()) => {
                let given = v.to_str().unwrap_or_default().into();
                (v.clone(), RequestId::Given(given))
            }
            _ => {
                // Without uuid's shared context: a request id needs no order within a
                // millisecond, and that context is one lock every request would take.
                let made = uuid::Uuid::new_v7(uuid::Timestamp::now(uuid::NoContext));
                let v = request_id_header(made);
                headers.insert(X_REQUEST_ID.clone(), v.clone());
                (v, RequestId::Made(made))
            }
        };
        mark_sensitive(headers);
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|p| route_label(p.as_str()))
            .unwrap_or("unmatched");
        // The steps of a login (the password, a passkey's options, the second factor) are the
        // hashing's own traffic; anything else in flight makes the hashing threads yield
        // their cores (`password.yield_every`).
        if !matches!(route, "/login" | "/login/mfa" | "/login/mfa/passkey") {
            self.shared.activity.note_other_request(started);
        }
        // The client's address is for the span and the audit trail: the public documents at
        // the usual level (warn) need neither.
        let records = records_events(route);
        let client_ip = (records || tracing::enabled!(tracing::Level::INFO))
            .then(|| {
                req.extensions()
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map(|peer| {
                        super::client_addr::client_ip(
                            req.headers(),
                            peer.0.ip(),
                            &self.shared.trusted_proxies,
                        )
                    })
            })
            .flatten();
        let method = method_label(req.method());
        let span = tracing::info_span!(
            "http",
            method = %req.method(),
            path = %req.uri().path(),
            request_id = id.to_str().unwrap_or("-"),
            client_ip = client_ip.map(tracing::field::display),
        );
        if records {
            req.extensions_mut().insert(Caller {
                request_id,
                client_ip,
                actor: None,
            });
        }
        let http10 = req.version() == axum::http::Version::HTTP_10;
        let body_read = match super::body_read::has_body(req.headers()) {
            true => {
                let (tracked, read) = super::body_read::tracked(req);
                req = tracked;
                Some(read)
            }
            false => None,
        };
        let inner = self.inner.call(req).instrument(span);
        EdgeFuture {
            inner,
            id,
            route,
            method,
            started,
            body_read,
            http10,
        }
    }
}

/// Marks the credentials' headers sensitive, so that no `Debug` of the request prints them.
fn mark_sensitive(headers: &mut axum::http::HeaderMap) {
    for name in [
        header::AUTHORIZATION,
        header::PROXY_AUTHORIZATION,
        header::COOKIE,
    ] {
        if let header::Entry::Occupied(mut e) = headers.entry(name) {
            for v in e.iter_mut() {
                v.set_sensitive(true);
            }
        }
    }
}

/// Whether a route can record an audit event, and so needs the request's `Caller`. The
/// public documents, health and metrics never do.
fn records_events(route: &str) -> bool {
    !(route.starts_with("/.well-known/")
        || matches!(
            route,
            "/healthz" | "/readyz" | "/metrics" | "/openapi.json" | "unmatched"
        ))
}

pin_project_lite::pin_project! {
    /// The response future of [`Edge`].
    pub struct EdgeFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        id: HeaderValue,
        route: &'static str,
        method: &'static str,
        started: Instant,
        // Set when the request came with a body: whether it was read to its end.
        body_read: Option<Arc<super::body_read::BodyState>>,
        // An HTTP/1.0 request, whose answer must not offer to keep a closing connection.
        http10: bool,
    }
}

impl<F, B> Future for EdgeFuture<F>
where
    F: Future<Output = Result<axum::http::Response<B>, Infallible>>,
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = match ready!(this.inner.poll(cx)) {
            Ok(res) => res.map(axum::body::Body::new),
            Err(never) => match never {},
        };
        let latency = this.started.elapsed();
        let status = res.status();
        let h = res.headers_mut();
        h.insert(X_REQUEST_ID.clone(), this.id.clone());
        if !h.contains_key(header::CACHE_CONTROL) {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        security_headers(h);
        if this.body_read.as_ref().is_some_and(|state| !state.read()) {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            if *this.http10 {
                // An HTTP/1.1 answer to an HTTP/1.0 keep-alive request gets `keep-alive`
                // appended by the connection (`close, keep-alive`); a 1.0 answer is closed
                // instead, and says only `close`.
                *res.version_mut() = axum::http::Version::HTTP_10;
            }
        }
        tracing::debug!(
            request_id = this.id.to_str().unwrap_or("-"),
            status = status.as_u16(),
            latency_us = latency.as_micros() as u64,
            "response"
        );
        let route: &'static str = this.route;
        let method: &'static str = this.method;
        record(route, method, status_label(status), latency);
        Poll::Ready(Ok(res))
    }
}

/// How many headers a typical answer leaves with: a handler that builds a hot answer can size
/// its map once.
pub const ANSWER_HEADERS: usize = 8;

/// The headers that make an API answer never a page: it sends no referrer on, may not be
/// framed, and loads nothing (OWASP REST Security Cheat Sheet). Each is set unless the answer
/// set its own (the hosted pages do).
pub fn security_headers(h: &mut axum::http::HeaderMap) {
    if !h.contains_key(header::REFERRER_POLICY) {
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    if !h.contains_key(header::X_CONTENT_TYPE_OPTIONS) {
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
    }
}

/// The metric handles of one route, method and status.
struct RouteMetrics {
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

/// Counts a request in `http_requests_total{route,method,status}` and its latency in
/// `http_request_duration_seconds{route}`. The handles are resolved once per thread and label
/// set (a label set is three `'static` strings: route templates and statuses are interned), so
/// a request neither allocates its labels nor hashes their text. The set is bounded by the
/// routes, methods and statuses.
fn record(route: &'static str, method: &'static str, status: &'static str, latency: Duration) {
    type Labels = [(usize, usize); 3];
    thread_local! {
        static HANDLES: RefCell<foldhash::HashMap<Labels, RouteMetrics>> =
            RefCell::new(foldhash::HashMap::default());
    }
    let key = [route, method, status].map(|s| (s.as_ptr() as usize, s.len()));
    HANDLES.with(|h| {
        let mut h = h.borrow_mut();
        let m = h.entry(key).or_insert_with(|| RouteMetrics {
            requests: metrics::counter!("http_requests_total",
                "route" => route, "method" => method, "status" => status),
            duration: metrics::histogram!("http_request_duration_seconds", "route" => route),
        });
        m.requests.increment(1);
        m.duration.record(latency.as_secs_f64());
    });
}

/// A fresh UUIDv7 as a header value, formatted without an intermediate `String`.
fn usable_request_id(id: &[u8]) -> bool {
    (1..=128).contains(&id.len()) && id.iter().all(|b| b.is_ascii_graphic())
}

fn request_id_header(id: uuid::Uuid) -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let s = id.hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("-"))
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

fn status_label(s: StatusCode) -> &'static str {
    match s.as_u16() {
        200 => "200",
        204 => "204",
        304 => "304",
        400 => "400",
        401 => "401",
        404 => "404",
        429 => "429",
        503 => "503",
        _ => intern(s.as_str()),
    }
}

/// The `'static` label of a route template (`MatchedPath`). The router keeps each template in
/// one allocation for its lifetime, so each thread remembers the label by the template's
/// address and length, and a request neither hashes the text nor takes the shared lock of
/// `intern`.
fn route_label(template: &str) -> &'static str {
    thread_local! {
        static LABELS: RefCell<foldhash::HashMap<(usize, usize), &'static str>> =
            RefCell::new(foldhash::HashMap::default());
    }
    let key = (template.as_ptr() as usize, template.len());
    LABELS.with(|l| {
        if let Some(label) = l.borrow().get(&key) {
            // The same address and length could only hold another text if the router had
            // been dropped and another built in its place (tests do): compare to be sure.
            if *label == template {
                return *label;
            }
        }
        let label = intern(template);
        l.borrow_mut().insert(key, label);
        label
    })
}

/// A `'static` copy of a label value. Only route templates and status codes come here, so the
/// set is small and bounded.
fn intern(s: &str) -> &'static str {
    static SET: OnceLock<RwLock<HashSet<&'static str>>> = OnceLock::new();
    let set = SET.get_or_init(Default::default);
    if let Some(v) = set
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(s)
        .copied()
    {
        return v;
    }
    let mut w = set.write().unwrap_or_else(|p| p.into_inner());
    if let Some(v) = w.get(s).copied() {
        return v;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    w.insert(leaked);
    leaked
}
