//! `GET /metrics`: Prometheus text format. Per-route request counts and latency histograms
//! (recorded by `edge`), the domain counters recorded in `auth` (logins, refresh outcomes, shed
//! requests, audit events, purged rows), and the state gauges `Auth::observe` sets at each
//! scrape. With `metrics.bearer_token` set, only a request bearing that token is answered.
//!
//! The recorder is process-wide (the `metrics` facade allows one), installed on first use.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use secrecy::{ExposeSecret, SecretString};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

/// The process's Prometheus handle, if the recorder could be installed.
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    &buckets,
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("password_hash_seconds".into()),
                    &[0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0],
                )
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            describe();
            // Counters that alerts watch (deploy/prometheus) exist from the start at 0, so
            // `increase()` sees their first event.
            for name in ["refresh_reuse_detected_total", "audit_events_dropped_total"] {
                metrics::counter!(name).increment(0);
            }
            for cause in SHED_CAUSES {
                metrics::counter!("requests_shed_total", "cause" => *cause).increment(0);
            }
            // Histograms need periodic upkeep when there is no exporter task of their own.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

/// Every `cause` of `requests_shed_total` (the reasons of a 503), each counted from 0 at
/// start, so that a rate or an alert sees the first shed request.
const SHED_CAUSES: &[&str] = &[
    "request timed out",
    "database unavailable",
    "login queue",
    "password hashing saturated",
    "no active signing key",
];

/// Every metric Tessera records, with its `# HELP` text (the exposition format's lint,
/// `promtool check metrics`, wants one for each family).
const HELP: &[(&str, &str)] = &[
    (
        "http_requests_total",
        "HTTP requests answered, by route, method and status.",
    ),
    (
        "http_request_duration_seconds",
        "Seconds to answer an HTTP request, by route.",
    ),
    ("logins_total", "Logins, by result."),
    (
        "requests_shed_total",
        "Requests answered 503 (overload, a dependency down), by cause.",
    ),
    ("refresh_total", "Refresh-token rotations, by result."),
    (
        "refresh_reuse_detected_total",
        "Refresh tokens used again after their grace window; each revokes its session.",
    ),
    ("audit_events_total", "Audit events, by event."),
    (
        "audit_events_dropped_total",
        "Audit rows dropped while the writer was behind (their log lines are written).",
    ),
    (
        "token_checks_total",
        "Revocation checks of access tokens, by where they were answered.",
    ),
    (
        "verified_token_cache_entries",
        "Entries of the verified-token cache.",
    ),
    (
        "verified_token_cache_total",
        "Lookups in the verified-token cache, by result.",
    ),
    (
        "password_hash_seconds",
        "Seconds of one argon2 computation.",
    ),
    ("password_queue_depth", "Logins waiting for an argon2 slot."),
    ("password_slots", "Concurrent argon2 computations allowed."),
    (
        "db_pool_connections",
        "Database connections of the pool, by state.",
    ),
    ("db_pool_max_connections", "The pool's connection limit."),
    (
        "db_pool_acquire_wait_seconds",
        "Seconds to take a connection from the pool, probed at each scrape.",
    ),
    (
        "revocation_state_entries",
        "Entries of the in-memory revocation state, by kind.",
    ),
    (
        "revocation_state_sync_age_seconds",
        "Seconds since the revocation state last caught up with the database.",
    ),
    (
        "revocation_state_trusted",
        "1 while the revocation state answers, 0 while token checks fail closed.",
    ),
    ("signing_keys", "Signing keys, by state."),
    (
        "signing_key_active_age_seconds",
        "Age in seconds of the key signing now.",
    ),
    ("upkeep_purged_rows_total", "Expired rows purged, by table."),
    ("upkeep_purge_seconds", "Seconds of one purge round."),
    ("mail_total", "Account emails, by result."),
    (
        "mail_requests_throttled_total",
        "Requests that send mail refused: their client address was over accounts.ip_requests.",
    ),
    (
        "device_authorizations_throttled_total",
        "Device authorizations refused: their client address was over throttle.device_requests.",
    ),
    (
        "tessera_build_info",
        "The running build, by version (always 1).",
    ),
];

/// Registers the `# HELP` texts. The kind of each family comes from how it is recorded; a
/// description of either kind gives the text.
fn describe() {
    for (name, help) in HELP {
        metrics::describe_counter!(*name, *help);
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", security((), ("bearer" = [])),
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain"),
              (status = 401, description = "metrics.bearer_token is set and the request does not bear it", body = super::error::ErrorBody)))]
async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &st.settings.metrics.bearer_token {
        // No bearer token at all (no header, or another scheme): a bare challenge (RFC 6750
        // §3.1).
        let bearer = headers.get(header::AUTHORIZATION).is_some_and(|v| {
            v.as_bytes()
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"bearer "))
        });
        if !bearer {
            return super::error::ApiError::MissingToken.into_response();
        }
        if !bears(&headers, expected) {
            return super::error::ApiError::InvalidToken.into_response();
        }
    }
    st.auth.observe().await;
    let body = handle().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Whether the request bears `expected`, compared in constant time (both sides hashed first).
fn bears(headers: &HeaderMap, expected: &SecretString) -> bool {
    use aws_lc_rs::digest::{digest, SHA256};
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme is case-insensitive (RFC 7235 §2.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim());
    aws_lc_rs::constant_time::verify_slices_are_equal(
        digest(&SHA256, given.as_bytes()).as_ref(),
        digest(&SHA256, expected.expose_secret().as_bytes()).as_ref(),
    )
    .is_ok()
}
