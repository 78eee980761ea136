//! The one error type. HTTP statuses and OAuth 2.0 error codes are chosen here and nowhere else.
//!
//! Bodies use OAuth's vocabulary (`{"error", "error_description"}`, RFC 6749 §5.2). Internal
//! causes are logged with the request's span and never returned to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

/// Every failure a request can end in.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed (RFC 6749 §5.2 `invalid_request`).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Wrong credentials, unknown or disabled user, or an unusable refresh token. One variant,
    /// one body: callers cannot tell which of those it was.
    #[error("invalid grant")]
    InvalidGrant,
    /// Client authentication failed (RFC 6749 §5.2 `invalid_client`).
    #[error("invalid client")]
    InvalidClient,
    /// `grant_type` names a grant this server does not offer.
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    /// `invalid_grant` at the token endpoint, where RFC 6749 §5.2 answers 400 (the first-party
    /// `/login` and `/refresh` answer 401).
    #[error("invalid grant")]
    GrantRejected,
    /// A bearer access token failed verification (RFC 6750 §3.1 `invalid_token`).
    #[error("invalid token")]
    InvalidToken,
    /// Too many failed logins: wait this many seconds (RFC 8628 §3.5 `slow_down`).
    #[error("slow down")]
    SlowDown(u64),
    /// A valid token whose user lacks the role the endpoint needs (RFC 6750 §3.1).
    #[error("forbidden")]
    Forbidden,
    /// The resource already exists (a username taken).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The body is larger than the configured limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// A route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No such route.
    #[error("not found")]
    NotFound,
    /// Load shedding or a dependency (the database) is down: fail closed, ask to retry.
    #[error("temporarily unavailable: {0}")]
    Unavailable(&'static str),
    /// A bug or an unexpected failure. The cause is logged, never returned.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The wire shape of every error body.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: &'static str,
    pub error_description: &'static str,
}

impl Error {
    /// Status, OAuth error code and the public description. The description is a fixed string per
    /// variant, so no input or internal detail can leak into a response.
    pub fn parts(&self) -> (StatusCode, ErrorBody) {
        let (status, error, error_description) = match self {
            Error::InvalidRequest(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The request is missing a required parameter or is malformed.",
            ),
            Error::InvalidGrant => (
                StatusCode::UNAUTHORIZED,
                "invalid_grant",
                "The credentials or the refresh token are invalid, expired or revoked.",
            ),
            Error::GrantRejected => (
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "The credentials or the refresh token are invalid, expired or revoked.",
            ),
            Error::InvalidClient => (
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Client authentication failed.",
            ),
            Error::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "The grant type is not supported by this server.",
            ),
            Error::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "The access token is missing, invalid, expired or revoked.",
            ),
            Error::SlowDown(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                "Too many failed attempts. Retry after the time given in Retry-After.",
            ),
            Error::Forbidden => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "The access token does not grant this operation.",
            ),
            Error::Conflict(_) => (
                StatusCode::CONFLICT,
                "conflict",
                "The resource already exists.",
            ),
            Error::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "The request body is too large.",
            ),
            Error::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "The method is not allowed on this endpoint.",
            ),
            Error::NotFound => (StatusCode::NOT_FOUND, "not_found", "No such endpoint."),
            Error::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "The server is temporarily unable to handle the request. Retry later.",
            ),
            Error::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "The server encountered an unexpected condition.",
            ),
        };
        (
            status,
            ErrorBody {
                error,
                error_description,
            },
        )
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Error::Unavailable("database unavailable"),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, body) = self.parts();
        match &self {
            Error::Internal(cause) => tracing::error!(%cause, "request failed"),
            Error::Unavailable(cause) => {
                tracing::warn!(%cause, "request shed");
                metrics::counter!("requests_shed_total", "cause" => *cause).increment(1);
            }
            Error::InvalidRequest(why) => tracing::debug!(%why, "invalid request"),
            _ => {}
        }
        let mut res = (status, axum::Json(body)).into_response();
        let h = res.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            Error::InvalidToken => {
                // RFC 6750 §3: a 401 for a bearer token names the scheme and the error.
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="tessera", error="invalid_token""#),
                );
            }
            Error::Forbidden => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        r#"Bearer realm="tessera", error="insufficient_scope""#,
                    ),
                );
            }
            Error::InvalidClient => {
                // RFC 6749 §5.2: a 401 for client authentication names the scheme.
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="tessera", charset="UTF-8""#),
                );
            }
            Error::Unavailable(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Error::SlowDown(secs) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            _ => {}
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_mapping_is_pinned() {
        let cases = [
            (Error::InvalidRequest("x".into()), 400, "invalid_request"),
            (Error::InvalidGrant, 401, "invalid_grant"),
            (Error::InvalidToken, 401, "invalid_token"),
            (Error::InvalidClient, 401, "invalid_client"),
            (Error::GrantRejected, 400, "invalid_grant"),
            (Error::UnsupportedGrantType, 400, "unsupported_grant_type"),
            (Error::SlowDown(3), 429, "slow_down"),
            (Error::Forbidden, 403, "insufficient_scope"),
            (Error::Conflict("username"), 409, "conflict"),
            (Error::PayloadTooLarge, 413, "invalid_request"),
            (Error::MethodNotAllowed, 405, "invalid_request"),
            (Error::NotFound, 404, "not_found"),
            (Error::Unavailable("db"), 503, "temporarily_unavailable"),
            (Error::Internal("boom".into()), 500, "server_error"),
        ];
        for (e, status, code) in cases {
            let (s, b) = e.parts();
            assert_eq!(s.as_u16(), status);
            assert_eq!(b.error, code);
        }
    }

    #[test]
    fn internal_detail_never_reaches_the_body() {
        let (_, b) = Error::Internal("password=hunter2".into()).parts();
        assert!(!b.error_description.contains("hunter2"));
        let (_, b) = Error::InvalidRequest("secret-token".into()).parts();
        assert!(!b.error_description.contains("secret-token"));
    }
}
