//! tower middleware: [`VerifyLayer`] authenticates, [`RequireRole`] authorises.
//!
//! Answers (RFC 6750 §3), each with `Cache-Control: no-store` and a JSON body
//! `{"error", "error_description"}`:
//! - no bearer token: 401 with a bare `WWW-Authenticate: Bearer` (RFC 6750 §3.1: a request
//!   without authentication information gets no error code);
//! - a refused token: 401 with `WWW-Authenticate: Bearer error="invalid_token"`;
//! - more than one `Authorization` header: 400 `invalid_request`;
//! - a verified token without a required role: 403 with `WWW-Authenticate: Bearer
//!   error="insufficient_scope"`;
//! - with [`crate::StalePolicy::Unavailable`], a verifier whose keys or revocation state are
//!   stale: 503 `temporarily_unavailable` with `Retry-After`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use tower_layer::Layer;
use tower_service::Service;

use crate::claims::Claims;
use crate::error::VerifyError;
use crate::verifier::{StalePolicy, Verifier};

/// The response body of the layers: the inner service's, or an error's JSON.
pub type LayerBody<B> = Either<B, Full<Bytes>>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Verifies the bearer token of every request and inserts its [`Claims`] into the request
/// extensions; refuses the request otherwise (see the module documentation).
#[derive(Clone, Debug)]
pub struct VerifyLayer {
    verifier: Verifier,
}

impl VerifyLayer {
    /// A layer verifying with `verifier` (clones share its caches and tasks).
    pub fn new(verifier: Verifier) -> Self {
        VerifyLayer { verifier }
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = VerifyService<S>;
    fn layer(&self, inner: S) -> VerifyService<S> {
        VerifyService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service of [`VerifyLayer`].
#[derive(Clone, Debug)]
pub struct VerifyService<S> {
    inner: S,
    verifier: Verifier,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for VerifyService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<LayerBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready serves this request; the fresh one waits its turn.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            let token = match bearer(req.headers()) {
                Ok(t) => t,
                Err(refusal) => return Ok(refusal.respond(verifier.stale_policy())),
            };
            match verifier.verify(&token).await {
                Ok(claims) => {
                    req.extensions_mut().insert(claims);
                    inner.call(req).await.map(|r| r.map(Either::Left))
                }
                Err(e) => Ok(Refusal::Token(e).respond(verifier.stale_policy())),
            }
        })
    }
}

/// Requires a role of the [`Claims`] a [`VerifyLayer`] inserted: 403 `insufficient_scope`
/// without it, 401 when no verified claims are present. Apply it inside the `VerifyLayer`
/// (with axum: `route_layer` on the route, `layer(VerifyLayer)` on the router).
#[derive(Clone, Copy, Debug)]
pub struct RequireRole(pub &'static str);

/// Requires a scope in the `scope` claim (RFC 9068 §2.2.3) of the [`Claims`] a
/// [`VerifyLayer`] inserted: 403 `insufficient_scope` without it. For APIs that authorise on
/// OAuth scopes (Tessera's `[[resources]]`) rather than roles.
#[derive(Clone, Copy, Debug)]
pub struct RequireScope(pub &'static str);

/// Requires a login at least as strong as an `acr` value (Tessera's, ordered:
/// `tessera_proto::claims::acr::MFA` is "2", multi-factor): 401
/// `insufficient_user_authentication` (RFC 9470 §3) otherwise, which asks the client to have
/// the user log in again with more. A refresh never raises a session's `acr`.
#[derive(Clone, Copy, Debug)]
pub struct RequireAcr(pub &'static str);

/// Requires an RFC 8176 method in the token's `amr` (`"mfa"`, `"otp"`): 401
/// `insufficient_user_authentication` (RFC 9470 §3) otherwise.
#[derive(Clone, Copy, Debug)]
pub struct RequireAmr(pub &'static str);

/// What a [`RequireService`] checks.
#[derive(Clone, Copy, Debug)]
enum Requirement {
    Role(&'static str),
    Scope(&'static str),
    Acr(&'static str),
    Amr(&'static str),
}

impl<S> Layer<S> for RequireAcr {
    type Service = RequireService<S>;
    fn layer(&self, inner: S) -> RequireService<S> {
        RequireService {
            inner,
            need: Requirement::Acr(self.0),
        }
    }
}

impl<S> Layer<S> for RequireAmr {
    type Service = RequireService<S>;
    fn layer(&self, inner: S) -> RequireService<S> {
        RequireService {
            inner,
            need: Requirement::Amr(self.0),
        }
    }
}

impl<S> Layer<S> for RequireRole {
    type Service = RequireService<S>;
    fn layer(&self, inner: S) -> RequireService<S> {
        RequireService {
            inner,
            need: Requirement::Role(self.0),
        }
    }
}

impl<S> Layer<S> for RequireScope {
    type Service = RequireService<S>;
    fn layer(&self, inner: S) -> RequireService<S> {
        RequireService {
            inner,
            need: Requirement::Scope(self.0),
        }
    }
}

/// The service of [`RequireRole`], [`RequireScope`], [`RequireAcr`] and [`RequireAmr`].
#[derive(Clone, Debug)]
pub struct RequireService<S> {
    inner: S,
    need: Requirement,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<LayerBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let refusal = match (req.extensions().get::<Claims>(), self.need) {
            (None, _) => Some(VerifyError::Missing),
            (Some(c), Requirement::Role(r)) if !c.has_role(r) => Some(VerifyError::MissingRole),
            (Some(c), Requirement::Scope(w)) if !c.scopes().any(|s| s == w) => {
                Some(VerifyError::MissingScope)
            }
            (Some(c), Requirement::Acr(a))
                if !tessera_proto::claims::acr::satisfies(c.acr.as_deref(), a) =>
            {
                Some(VerifyError::InsufficientAuthentication)
            }
            (Some(c), Requirement::Amr(m))
                if !c.amr.as_ref().is_some_and(|amr| amr.iter().any(|x| x == m)) =>
            {
                Some(VerifyError::InsufficientAuthentication)
            }
            (Some(_), _) => None,
        };
        if let Some(e) = refusal {
            metrics::counter!("tessera_verify_forbidden_total", "outcome" => e.outcome())
                .increment(1);
            let res = Refusal::Token(e).respond(StalePolicy::Reject);
            return Box::pin(async move { Ok(res) });
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move { inner.call(req).await.map(|r| r.map(Either::Left)) })
    }
}

/// Why a request is refused before reaching the handler.
pub(crate) enum Refusal {
    /// More than one `Authorization` header (RFC 6750 §3.1 `invalid_request`).
    Ambiguous,
    /// No token, a refused one, or a missing role or scope.
    Token(VerifyError),
}

impl Refusal {
    pub(crate) fn respond<B>(self, policy: StalePolicy) -> Response<LayerBody<B>> {
        let (status, error, description) = match &self {
            Refusal::Ambiguous => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "more than one Authorization header".to_string(),
            ),
            Refusal::Token(VerifyError::MissingRole) => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "the token lacks a required role".to_string(),
            ),
            Refusal::Token(VerifyError::MissingScope) => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "the token lacks a required scope".to_string(),
            ),
            Refusal::Token(VerifyError::InsufficientAuthentication) => (
                StatusCode::UNAUTHORIZED,
                "insufficient_user_authentication",
                "a stronger login is required".to_string(),
            ),
            Refusal::Token(e) if e.is_unavailable() && policy == StalePolicy::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                e.to_string(),
            ),
            Refusal::Token(e) => (StatusCode::UNAUTHORIZED, "invalid_token", e.to_string()),
        };
        let body = tessera_proto::error::ErrorBody {
            error: error.into(),
            error_description: description.clone().into(),
        };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut res = Response::new(Either::Right(Full::new(Bytes::from(body))));
        *res.status_mut() = status;
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            StatusCode::UNAUTHORIZED if matches!(self, Refusal::Token(VerifyError::Missing)) => {
                // RFC 6750 §3.1: no authentication information, no error code.
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST => {
                // The description is one of this crate's fixed texts: a valid header value.
                let challenge =
                    format!("Bearer error=\"{error}\", error_description=\"{description}\"");
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    h.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            _ => {}
        }
        res
    }
}

/// The bearer token of a request (RFC 6750 §2.1): one `Authorization` header, scheme `Bearer`
/// in any case, and a `b64token`.
pub(crate) fn bearer(headers: &http::HeaderMap) -> Result<String, Refusal> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Refusal::Token(VerifyError::Missing));
    };
    if values.next().is_some() {
        return Err(Refusal::Ambiguous);
    }
    let value = value.as_bytes();
    let Some((scheme, rest)) = value.split_first_chunk::<7>() else {
        return Err(Refusal::Token(VerifyError::Missing));
    };
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return Err(Refusal::Token(VerifyError::Missing));
    }
    let token = rest.trim_ascii();
    let b64token = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(b);
    if token.is_empty() || !token.iter().all(b64token) {
        return Err(Refusal::Token(VerifyError::Malformed));
    }
    // All ASCII, checked above.
    Ok(String::from_utf8_lossy(token).into_owned())
}

#[cfg(test)]
mod tests;
