//! `GET /healthz` (the process is alive) and `GET /readyz` (it can serve: the database answers
//! and a signing key is loaded).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(st): State<AppState>) -> Response {
    let db = st.auth.store.ping().await.is_ok();
    let key = st.auth.keys.ring().active().is_some();
    let status = if db && key {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
        "database": if db { "ok" } else { "unavailable" },
        "signing_key": if key { "ok" } else { "missing" },
    });
    (status, Json(body)).into_response()
}
