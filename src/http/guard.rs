//! The request limits enforced inside CORS, so that their answers carry the contract like any
//! other: the JSON error body, `x-request-id` (added by the edge, outside) and, for a listed
//! origin, the CORS headers (added by the CORS layer, outside):
//! - a request head over `http.max_header_bytes`, or with more than `MAX_HEADER_FIELDS`
//!   fields, is answered 431;
//! - a declared `Content-Length` over `http.body_limit` is answered 413 at once, without
//!   waiting for a body that may never come;
//! - a request that takes longer than `http.request_timeout` is answered 503.
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

use super::error::ApiError;

/// The most header fields a request may have.
pub const MAX_HEADER_FIELDS: usize = 100;

/// See the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct GuardLayer {
    pub timeout: Duration,
    pub max_header_bytes: usize,
    pub body_limit: usize,
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
        } else {
            None
        };
        if let Some(e) = refused {
            return GuardFuture::Refused {
                response: Some(e.into_response()),
            };
        }
        GuardFuture::Running {
            deadline: tokio::time::Instant::now() + self.limits.timeout,
            inner: self.inner.call(req),
            timer: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Guard`]. The timer is armed only when the request has to wait
    /// (most answers are ready at their first poll, and a timer costs a shared handle and a
    /// wheel entry); its deadline counts from the request's start either way.
    #[project = GuardProj]
    pub enum GuardFuture<F> {
        Refused { response: Option<Response> },
        Running {
            #[pin]
            inner: F,
            deadline: tokio::time::Instant,
            timer: Option<Pin<Box<tokio::time::Sleep>>>,
        },
    }
}

impl<F, B> Future for GuardFuture<F>
where
    F: Future<Output = Result<axum::http::Response<B>, Infallible>>,
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
                timer,
            } => {
                if let Poll::Ready(res) = inner.poll(cx) {
                    return Poll::Ready(Ok(match res {
                        Ok(res) => res.map(axum::body::Body::new),
                        Err(never) => match never {},
                    }));
                }
                let timer =
                    timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(*deadline)));
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Ok(
                    ApiError::Unavailable("request timed out").into_response()
                ))
            }
        }
    }
}
