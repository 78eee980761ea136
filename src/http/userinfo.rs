//! `GET /userinfo`: who the bearer of a valid access token is.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::error::{ApiError, ErrorBody};
use super::extract::Bearer;
use super::AppState;
use crate::auth::tokens::custom_claims;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(userinfo, userinfo_post))
}

/// Who the bearer of the access token is.
#[utoipa::path(get, path = "/userinfo", tag = "session", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller: sub, username, roles, sid, custom claims, and with the profile scope preferred_username and updated_at, with the email scope email and email_verified (OIDC Core §5.3, §5.4)", body = Object),
        (status = 401, description = "Missing, invalid, expired or revoked token (WWW-Authenticate: Bearer)", body = ErrorBody),
        (status = 503, description = "Revocation state unavailable (fails closed)", body = ErrorBody),
    ))]
async fn userinfo(st: State<AppState>, bearer: Bearer) -> Result<Response, ApiError> {
    userinfo_inner(st, bearer).await
}

/// The same as `GET /userinfo` (OpenID Connect allows both methods).
#[utoipa::path(post, path = "/userinfo", tag = "session", security(("bearer" = [])),
    responses((status = 200, description = "The caller", body = Object),
              (status = 401, description = "Invalid token", body = ErrorBody)))]
async fn userinfo_post(st: State<AppState>, bearer: Bearer) -> Result<Response, ApiError> {
    userinfo_inner(st, bearer).await
}

async fn userinfo_inner(State(st): State<AppState>, bearer: Bearer) -> Result<Response, ApiError> {
    let token = bearer.0.ok_or(ApiError::MissingToken)?;
    let who = st.auth.authenticate(&token).await?;
    // A client the user consented to gets what its scope allows (OIDC Core §5.4), not the
    // username, roles, session and custom claims the operator's own clients see.
    if !st
        .auth
        .trusted_client(who.claims.claims.client_id.as_deref())
    {
        let mut body = json!({ "sub": who.user.id.to_string() });
        if who.claims.claims.scopes().any(|s| s == "profile") {
            body["preferred_username"] = json!(who.user.username);
            body["updated_at"] = json!(who.user.updated_at.div_euclid(1000));
        }
        if let Value::Object(map) = &mut body {
            email_claims(map, &who);
        }
        return Ok(axum::Json(body).into_response());
    }
    let mut body = json!({
        "sub": who.user.id.to_string(),
        "username": who.user.username,
        // `mfa.required_for_roles`: as the token itself carries them.
        "roles": st.auth.roles_for_login(
            &who.user.roles,
            who.claims.claims.amr.as_ref().is_some_and(|amr| {
                tessera_proto::claims::acr::is_multi_factor(amr.iter().map(|m| m.as_ref()))
            }),
        ),
        "sid": who.claims.session_id.to_string(),
    });
    if let Value::Object(map) = &mut body {
        // OIDC Core §5.4: the standard claims the granted scope allows; none is invented.
        if who.claims.claims.scopes().any(|s| s == "profile") {
            map.insert("preferred_username".into(), json!(who.user.username));
            map.insert(
                "updated_at".into(),
                json!(who.user.updated_at.div_euclid(1000)),
            );
        }
        email_claims(map, &who);
        for (k, v) in custom_claims(&who.user.claims) {
            map.entry(k).or_insert(v);
        }
    }
    Ok(axum::Json(body).into_response())
}

/// `email` and `email_verified`, with the `email` scope and an address (OIDC Core §5.4).
fn email_claims(map: &mut serde_json::Map<String, Value>, who: &crate::auth::Authenticated) {
    if let Some(email) = &who.user.email {
        if who.claims.claims.scopes().any(|s| s == "email") {
            map.insert("email".into(), json!(email));
            map.insert("email_verified".into(), json!(who.user.email_verified));
        }
    }
}
