//! `GET /.well-known/oauth-authorization-server` (RFC 8414) and
//! `GET /.well-known/openid-configuration`: where the endpoints and keys are, and what each
//! accepts. Every member is true of this server; none describes something it does not do.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::AppState;
use crate::auth::keys::KeyAlg;
use crate::config::Settings;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(oauth_metadata))
        .routes(routes!(openid_configuration))
}

/// The RFC 8414 metadata document.
pub fn metadata(s: &Settings, scopes: Vec<String>) -> Value {
    let iss = s.tokens.issuer.trim_end_matches('/');
    json!({
        "issuer": s.tokens.issuer,
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "token_endpoint": format!("{iss}/token"),
        "revocation_endpoint": format!("{iss}/revoke"),
        "introspection_endpoint": format!("{iss}/introspect"),
        "userinfo_endpoint": format!("{iss}/userinfo"),
        // An extension member (RFC 8414 §2 allows them): the revocation feed, which
        // tessera-verify and other verifiers poll.
        "revocation_feed_endpoint": format!("{iss}/revocations"),
        "grant_types_supported": ["password", "refresh_token"],
        // RFC 8414 §2 requires the member; with no authorization endpoint, no response type
        // is supported (in particular not the implicit grant's "token").
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        // The algorithms access tokens may be signed with (RFC 9068 JWTs).
        "token_signing_alg_values_supported": algs(),
        "scopes_supported": scopes,
        "service_documentation": format!("{iss}/openapi.json"),
    })
}

/// Every algorithm Tessera can sign with (`keys.algorithm` may change between rotations).
fn algs() -> Value {
    json!(KeyAlg::ALL.map(KeyAlg::name))
}

fn cached(v: Value) -> Response {
    let mut res = Json(v).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}

/// RFC 8414 authorization server metadata.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery",
    responses((status = 200, description = "Metadata", body = Object)))]
async fn oauth_metadata(State(st): State<AppState>) -> Response {
    cached(metadata(&st.settings, st.auth.scopes_supported()))
}

/// The same RFC 8414 document under the OpenID Connect discovery name, for clients that look
/// only there. Tessera is not an OpenID Provider: it issues no ID token and has no
/// authorization endpoint, so it does not claim OpenID Connect Discovery fields.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery",
    responses((status = 200, description = "The RFC 8414 metadata", body = Object)))]
async fn openid_configuration(State(st): State<AppState>) -> Response {
    cached(metadata(&st.settings, st.auth.scopes_supported()))
}
