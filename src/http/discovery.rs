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

/// The RFC 8414 metadata document, which is also the OpenID Provider configuration (OIDC
/// Discovery §3): every endpoint and capability, and nothing Tessera does not do.
pub fn metadata(s: &Settings, scopes: Vec<String>) -> Value {
    let iss = s.tokens.issuer.trim_end_matches('/');
    let mut scopes = scopes;
    for oidc in ["openid", "profile", "offline_access"] {
        if !scopes.iter().any(|s| s == oidc) {
            scopes.push(oidc.to_string());
        }
    }
    scopes.sort();
    let acr_values = match s.webauthn.relying_party(&s.tokens.issuer) {
        Some(_) => json!(["1", "2", "3"]),
        None => json!(["1", "2"]),
    };
    json!({
        "issuer": s.tokens.issuer,
        "authorization_endpoint": format!("{iss}/authorize"),
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "token_endpoint": format!("{iss}/token"),
        "revocation_endpoint": format!("{iss}/revoke"),
        "introspection_endpoint": format!("{iss}/introspect"),
        "userinfo_endpoint": format!("{iss}/userinfo"),
        // RP-Initiated Logout 1.0 and Back-Channel Logout 1.0.
        "end_session_endpoint": format!("{iss}/end_session"),
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        // An extension member (RFC 8414 §2 allows them): the revocation feed, which
        // tessera-verify and other verifiers poll.
        "revocation_feed_endpoint": format!("{iss}/revocations"),
        "grant_types_supported": [
            "authorization_code", "password", "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code",
            super::oauth::MFA_GRANT
        ],
        // RFC 8628.
        "device_authorization_endpoint": format!("{iss}/device_authorization"),
        // RFC 9126, for confidential clients; optional.
        "pushed_authorization_request_endpoint": format!("{iss}/par"),
        "require_pushed_authorization_requests": false,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "code_challenge_methods_supported": ["S256"],
        // RFC 9207: every authorization response carries `iss`.
        "authorization_response_iss_parameter_supported": true,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs(),
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid",
            "azp", "at_hash", "preferred_username", "updated_at", "email", "email_verified"
        ],
        // "3", a passkey's phishing-resistant sign-in, only where passkeys are on.
        "acr_values_supported": acr_values,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
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

/// The OpenID Provider configuration (OIDC Discovery §4): the same document as RFC 8414's.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery",
    responses((status = 200, description = "The OpenID Provider configuration", body = Object)))]
async fn openid_configuration(State(st): State<AppState>) -> Response {
    cached(metadata(&st.settings, st.auth.scopes_supported()))
}
