//! The HTTP layer: routers, extractors and the middleware stack. No business rules live here;
//! a handler parses input, calls one `Auth` method and shapes the response.

mod admin;
mod discovery;
mod extract;
mod health;
mod jwks;
mod metrics;
mod oauth;
pub mod serve;
mod session;
mod userinfo;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::Auth;
use crate::error::Error;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub auth: Arc<Auth>,
    /// `Cache-Control` of the JWKS, rendered once.
    pub jwks_cache_control: HeaderValue,
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The OpenAPI 3.1 document's fixed parts; paths come from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(title = "Tessera", description = "Standalone authentication server: password login, rotating refresh tokens, access JWTs, JWKS and revocation."),
    modifiers(&SecuritySchemes),
    tags(
        (name = "session", description = "First-party login, refresh and logout (JSON)"),
        (name = "oauth", description = "RFC 6749 / 7009 / 7662 endpoints and the revocation feed (form-encoded)"),
        (name = "keys", description = "Public keys for verifiers"),
        (name = "discovery", description = "RFC 8414 metadata"),
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "admin", description = "User management; needs an access token of a user with the admin role"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

/// UUIDv7 request ids: time-ordered, so logs sort naturally.
#[derive(Clone, Copy, Default)]
struct MakeV7;

impl MakeRequestId for MakeV7 {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// The whole application router with its middleware stack.
pub fn router(auth: Arc<Auth>) -> Router {
    let s = &auth.settings;
    let body_limit = s.http.body_limit;
    let timeout = s.http.request_timeout;
    let max_age = s.keys.jwks_max_age.as_secs();
    let auth_settings_cors = s.http.cors_origins.clone();
    // Install the metrics recorder before the first request is counted.
    let _ = metrics::handle();
    let state = AppState {
        jwks_cache_control: HeaderValue::from_str(&format!("public, max-age={max_age}"))
            .unwrap_or(HeaderValue::from_static("public, max-age=300")),
        auth,
    };
    // The OpenAPI document is generated from the same route table that serves requests, so
    // the two cannot drift.
    let (api_routes, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(session::router())
        .merge(userinfo::router())
        .merge(jwks::router())
        .merge(oauth::router())
        .merge(discovery::router())
        .merge(health::router())
        .merge(metrics::router())
        .merge(admin::router())
        .split_for_parts();
    let openapi = bytes::Bytes::from(api.to_json().unwrap_or_else(|_| "{}".into()));
    let cors = cors_layer(&auth_settings_cors);
    let routes = api_routes
        .route(
            "/openapi.json",
            get(move || {
                let body = openapi.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], body) }
            }),
        )
        .fallback(|| async { Error::NotFound })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .with_state(state);

    // Layers, outermost first:
    let stack = ServiceBuilder::new()
        // 1. Give every request an id before anything logs (a client-sent id is kept).
        .layer(SetRequestIdLayer::new(X_REQUEST_ID.clone(), MakeV7))
        // 2. Keep credentials out of anything that prints headers.
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
        // 3. One span per request, carrying the id; no headers or bodies are recorded.
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get(&X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        // 4. Echo the id on every response, errors included.
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
        // 5. Basic response hygiene.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // 6. A panic becomes a logged 500 with the contract's body, never a dropped connection.
        .layer(CatchPanicLayer::custom(|_| Error::Internal("handler panicked".into()).into_response()))
        // 7. Count and time requests (inside the panic guard, so 500s are counted too).
        .layer(middleware::from_fn(metrics::record))
        // 8. Bound the time of each request; a slow dependency answers 503, not a hang.
        .layer(middleware::from_fn(move |req: Request, next: Next| request_timeout(timeout, req, next)))
        // 9. Cap bodies before any extractor buffers them.
        .layer(DefaultBodyLimit::max(body_limit));
    // 10. CORS, innermost: preflights are answered here, for the configured origins only.
    routes.layer(cors).layer(stack)
}

/// CORS for the configured origins (credentials allowed, for the refresh cookie); no origin
/// at all when the list is empty.
fn cors_layer(origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::Method;
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if list.is_empty() {
        return CorsLayer::new();
    }
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(list))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            X_REQUEST_ID.clone(),
        ])
        .allow_credentials(true)
        .max_age(Duration::from_secs(600))
}

async fn request_timeout(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => Error::Unavailable("request timed out").into_response(),
    }
}
