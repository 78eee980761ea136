//! `GET /.well-known/jwks.json`: the pre-rendered public key set.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(jwks))
}

/// The public signing keys (RFC 7517), pre-rendered, with a strong ETag.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "keys",
    responses(
        (status = 200, description = "The key set; Cache-Control: public, max-age", body = Object),
        (status = 304, description = "Not modified (If-None-Match)"),
    ))]
// The request itself rather than a `HeaderMap`, which would copy every header.
async fn jwks(State(st): State<AppState>, req: Request) -> Response {
    let jwks = st.auth.jwks();
    let Ok(etag) = HeaderValue::from_maybe_shared(jwks.etag) else {
        return ApiError::Internal("unrepresentable ETag".into()).into_response();
    };
    let cache = st.jwks_cache_control.clone();
    // RFC 9110 §13.1.2: If-None-Match with a matching (or `*`) entity tag gets 304.
    let matches = req
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t.as_bytes() == etag.as_bytes());
    if matches {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    // Sized for every header the answer leaves with (the edge adds the request id), and
    // with the edge's security headers already in: this is the hottest answer there is.
    let mut res = Response::new(axum::body::Body::from(jwks.body));
    let h = res.headers_mut();
    h.reserve(super::edge::ANSWER_HEADERS);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, cache);
    super::edge::security_headers(h);
    res
}
