//! `GET /healthz` (the process is alive) and `GET /readyz` (it can serve: the database answers
//! and a signing key is loaded).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive", body = Object)))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers and a signing key is loaded.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready", body = Object),
              (status = 503, description = "Not ready", body = Object)))]
async fn readyz(State(st): State<AppState>) -> Response {
    let r = st.auth.readiness().await;
    let (db, key) = (r.database, r.signing_key);
    let status = if r.ready() {
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
