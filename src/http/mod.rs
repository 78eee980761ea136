//! The HTTP layer: routers, extractors and the middleware stack. No business rules live here;
//! a handler parses input, calls one `Auth` method and shapes the response.

mod accounts;
mod admin;
mod audit;
mod body_read;
pub(crate) mod client_addr;
mod client_auth;
pub(crate) mod csrf;
mod device;
mod discovery;
mod edge;
pub mod error;
mod extract;
pub(crate) use client_auth::is_form;
pub(crate) use extract::RequestCaller;
pub(crate) use session::{client_meta, read_cookie};
mod feed;
pub mod guard;
mod health;
mod jwks;
mod me;
mod metrics;
pub(crate) mod mfa;
mod oauth;
mod par;
mod passkey;
pub mod serve;
mod session;
mod userinfo;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::Auth;
use crate::config::Settings;
use error::ApiError;

/// Shared state of every handler: one `Arc`, so that handing it to a handler is one reference
/// count, not one per field (it is cloned for every request).
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl std::ops::Deref for AppState {
    type Target = SharedState;
    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct SharedState {
    /// The domain: every handler calls one of its use cases.
    pub auth: Arc<Auth>,
    /// What handlers need to shape answers (cookie mode, discovery, introspection's `iss`).
    pub settings: Arc<Settings>,
    /// `http.trusted_proxies`, parsed (see `client_addr`).
    pub trusted_proxies: Arc<client_addr::ProxyTrust>,
    /// Origins that may use the refresh cookie in cookie mode (see `csrf`).
    pub allowed_origins: Arc<csrf::AllowedOrigins>,
    /// `Cache-Control` of the JWKS, rendered once.
    pub jwks_cache_control: HeaderValue,
    /// The hosted pages' templates.
    pub pages: crate::pages::SharedPages,
}

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
        (name = "mfa", description = "The user's own second factors (TOTP, passkeys, recovery codes), with their bearer token"),
        (name = "accounts", description = "Self-service by email: password reset"),
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

/// Every route of the contract, the OpenAPI document, and the middleware stack; with the
/// count of the router's writes that outlive their answers, for `serve`'s shutdown to wait for.
pub fn router(
    auth: Arc<Auth>,
    settings: Arc<Settings>,
    pages: crate::pages::SharedPages,
) -> (Router, &'static guard::Writes) {
    let s = &settings;
    let body_limit = s.http.body_limit;
    let timeout = s.http.request_timeout;
    let max_age = s.keys.jwks_max_age.as_secs();
    let cors = cors_layer(&s.http.cors_origins);
    let activity = auth.activity();
    // Install the metrics recorder before the first request is counted.
    let _ = metrics::handle();
    let trusted_proxies = Arc::new(client_addr::ProxyTrust {
        proxies: s.http.trusted_proxies.clone(),
        header: s.http.forwarded_header,
    });
    let state = AppState(Arc::new(SharedState {
        jwks_cache_control: HeaderValue::from_str(&format!("public, max-age={max_age}"))
            .unwrap_or(HeaderValue::from_static("public, max-age=300")),
        allowed_origins: Arc::new(csrf::AllowedOrigins::new(
            &s.http.cors_origins,
            &s.tokens.issuer,
        )),
        settings: settings.clone(),
        trusted_proxies: trusted_proxies.clone(),
        auth,
        pages,
    }));
    // The OpenAPI document is generated from the same route table that serves requests, so
    // the two cannot drift.
    let (api_routes, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(session::router())
        .merge(mfa::router())
        .merge(passkey::router())
        .merge(accounts::router())
        .merge(me::router())
        .merge(userinfo::router())
        .merge(jwks::router())
        .merge(oauth::router())
        .merge(par::router())
        .merge(device::router())
        .merge(feed::router())
        .merge(discovery::router())
        .merge(health::router())
        .merge(metrics::router())
        .merge(admin::router())
        .merge(audit::router())
        .split_for_parts();
    let openapi = bytes::Bytes::from(api.to_json().unwrap_or_else(|_| "{}".into()));
    let routes = api_routes
        .merge(crate::pages::router())
        .route(
            "/openapi.json",
            get(move || {
                let body = openapi.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], body) }
            }),
        )
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state);

    // Layers, outermost first:
    // - edge: request id, span, metrics, nosniff, no-store (every answer, including CORS
    //   preflights and the limits' own answers);
    // - CORS, only when origins are configured: it sees every answer made below it;
    // - guard: the head-size limit (431), a declared body over the limit (413), one valid
    //   Host (400) and the request timeout (503), as JSON errors;
    // - panics become a JSON 500; bodies are capped (413) where extractors read them.
    // One stack, applied once: the router boxes each route's service for every layer it is
    // given, and clones the box on every request.
    let writes = guard::Writes::for_router();
    let stack = ServiceBuilder::new()
        .layer(edge::EdgeLayer {
            activity,
            trusted_proxies,
        })
        // Without configured origins there is nothing for CORS to do: it is left out.
        .option_layer(cors)
        .layer(guard::GuardLayer {
            timeout,
            max_header_bytes: s.http.max_header_bytes,
            body_limit,
            writes,
        })
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("handler panicked".into()).into_response()
        }))
        .layer(DefaultBodyLimit::max(body_limit));
    (routes.layer(stack), writes)
}

fn cors_layer(origins: &[crate::config::Origin]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::Method;
    use tower_http::cors::{AllowCredentials, AllowOrigin, CorsLayer};
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.as_str()).ok())
        .collect();
    if list.is_empty() {
        return None;
    }
    let allowed = list.clone();
    let layer = CorsLayer::new()
        .allow_origin(AllowOrigin::list(list))
        // Every method a route uses, and every request header clients send.
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            edge::X_REQUEST_ID.clone(),
        ])
        .expose_headers([
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            edge::X_REQUEST_ID.clone(),
        ])
        // Only to the allowed origins: a request from any other origin, or from none, is not
        // told that credentials are allowed.
        .allow_credentials(AllowCredentials::predicate(move |origin, _| {
            allowed.contains(origin)
        }))
        .max_age(Duration::from_secs(600));
    Some(layer)
}
