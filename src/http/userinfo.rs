//! `GET /userinfo`: who the bearer of a valid access token is.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::extract::Bearer;
use super::AppState;
use crate::auth::tokens::custom_claims;
use crate::error::Error;

pub fn router() -> Router<AppState> {
    Router::new().route("/userinfo", get(userinfo).post(userinfo))
}

#[tracing::instrument(skip_all)]
async fn userinfo(State(st): State<AppState>, bearer: Bearer) -> Result<Response, Error> {
    let token = bearer.0.ok_or(Error::InvalidToken)?;
    let who = st.auth.authenticate(&token).await?;
    let mut body = json!({
        "sub": who.user.id.to_string(),
        "username": who.user.username,
        "roles": who.user.roles,
        "sid": who.claims.sid.to_string(),
    });
    if let Value::Object(map) = &mut body {
        for (k, v) in custom_claims(&who.user.claims) {
            map.entry(k).or_insert(v);
        }
    }
    let mut res = axum::Json(body).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
