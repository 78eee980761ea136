//! Extractors. JSON bodies and bearer tokens are turned into the contract's error bodies here,
//! so no handler ever sees an axum rejection.

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

use super::error::ApiError;

/// `axum::Json` with the contract's error body: a malformed, mistyped or wrongly labelled body
/// is 400 `invalid_request`, an oversized one 413.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct AppJson<T>(pub T);

/// The cause kept for the debug log names the kind of mistake only: serde's own text quotes
/// the offending value, which may be a password or a code sent as a JSON number (invariant 5).
impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let kind = match &r {
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => return ApiError::PayloadTooLarge,
            JsonRejection::JsonDataError(_) => {
                "the JSON body does not have the expected fields and types"
            }
            JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON",
            JsonRejection::MissingJsonContentType(_) => "expected Content-Type: application/json",
            _ => "unreadable body",
        };
        ApiError::InvalidRequest(kind.into())
    }
}

/// An optional JSON body, read when the handler asks (`parse`), so that a request is
/// authenticated before its body is judged: none at all is `T::default()`; anything else must
/// be labelled `application/json` (or `+json`), be UTF-8 throughout and be an object with the
/// expected fields, or it is 400 `invalid_request`.
pub struct OptionalJson {
    body: axum::body::Bytes,
    json: bool,
}

impl OptionalJson {
    /// The body read as `T`.
    ///
    /// Errors: `InvalidRequest` (not labelled JSON, not UTF-8, not the expected fields).
    pub fn parse<T: serde::de::DeserializeOwned + Default>(self) -> Result<T, ApiError> {
        if self.body.is_empty() {
            return Ok(T::default());
        }
        if !self.json {
            return Err(ApiError::InvalidRequest(
                "expected Content-Type: application/json".into(),
            ));
        }
        if std::str::from_utf8(&self.body).is_err() {
            return Err(ApiError::InvalidRequest(
                "the body is not valid JSON".into(),
            ));
        }
        // A JSON object: serde would read a struct from an array too (`["desk"]`).
        if !self.body.trim_ascii_start().starts_with(b"{") {
            return Err(ApiError::InvalidRequest(
                "the body is not a JSON object".into(),
            ));
        }
        let axum::Json(v) = axum::Json::<T>::from_bytes(&self.body)?;
        Ok(v)
    }
}

impl<S: Send + Sync> FromRequest<S> for OptionalJson {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .is_some_and(|m| {
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        let body = axum::body::Bytes::from_request(req, state).await?;
        Ok(OptionalJson { body, json })
    }
}

/// A raw body that could not be read: 413 when it is over the limit, 400 otherwise.
impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::InvalidRequest("unreadable body".into())
        }
    }
}

/// The raw bearer token of `Authorization: Bearer …` (RFC 6750 §2.1), when present. Two
/// `Authorization` headers, whatever their schemes, are 400 `invalid_request` (§3.1).
/// Another scheme (a staging proxy's `Basic` credentials) is not a bearer token, and not a
/// failed bearer authentication either: it is `None`, as no header is. Its value is never
/// logged: the extractor records no fields and opens no span.
pub struct Bearer(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = ApiError;

    // No span of its own: the edge's request span covers it, and this runs on every
    // bearer request.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Ok(Bearer(None));
        };
        if values.next().is_some() {
            return Err(ApiError::AmbiguousToken);
        }
        let value = value.as_bytes();
        let (scheme, token) = match value.iter().position(|b| *b == b' ') {
            Some(i) => (&value[..i], &value[i + 1..]),
            None => (value, &b""[..]),
        };
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return Ok(Bearer(None));
        }
        let token = token.trim_ascii();
        // b64token syntax (RFC 6750 §2.1).
        if token.is_empty() || !token.iter().all(|b| B64TOKEN[usize::from(*b)]) {
            return Err(ApiError::InvalidToken);
        }
        // Only ASCII passed the syntax check, so this never fails.
        String::from_utf8(token.to_vec())
            .map(|t| Bearer(Some(t)))
            .map_err(|_| ApiError::InvalidToken)
    }
}

/// The bytes of RFC 6750 §2.1's b64token, as a table (a token is checked on every bearer
/// request, byte by byte).
static B64TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        b += 1;
    }
    t
};

/// Who is asking, for the use cases that record audit events: the request id and client
/// address the edge put in the request's extensions (`edge::Edge`). A route the edge gave none
/// (it records no events) gets an empty one.
#[derive(Debug, Clone, Default)]
pub struct RequestCaller(pub crate::auth::Caller);

impl RequestCaller {
    /// The `Caller` the edge put in a request's `extensions`, or an empty one.
    pub fn of(extensions: &axum::http::Extensions) -> crate::auth::Caller {
        extensions
            .get::<crate::auth::Caller>()
            .cloned()
            .unwrap_or_default()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestCaller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestCaller(Self::of(&parts.extensions)))
    }
}
