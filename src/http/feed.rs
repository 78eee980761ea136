//! The revocation feed (`GET`/`POST /revocations`), for verifiers that keep their own
//! revocation state: denylisted `jti`s not yet expired, revoked sessions and per-user cut-offs,
//! a page at a time after a cursor. The page and the cursor are `tessera_proto::feed`'s, the
//! types `tessera-verify` reads.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tessera_proto::feed::{digits, Cursor, FeedPage};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::client_auth::{authenticate, Clients, ConfidentialClientForm};
use super::error::{ApiError, ErrorBody};
use super::extract::RequestCaller;
use super::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(revocations, revocations_post))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FeedQuery {
    /// The `cursor` of the previous response; absent for the full current state.
    since: Option<String>,
    /// Most entries in one answer: 1 to 10000, default 1000. With `has_more`, ask again at
    /// once with the returned `cursor`.
    limit: Option<String>,
}

/// Entries in one feed answer when the client names no `limit`.
const FEED_PAGE: usize = 1000;
/// Most entries in one feed answer.
const FEED_PAGE_MAX: usize = 10_000;

/// The revocation feed: denylisted `jti`s not yet expired, revoked sessions, and per-user
/// `not_before` cut-offs since the cursor. Entries may repeat across polls; apply them
/// idempotently.
#[utoipa::path(get, path = "/revocations", tag = "oauth", params(FeedQuery), security(("basic" = [])),
    responses(
        (status = 200, description = "A page of the feed", body = FeedPage),
        (status = 400, description = "Malformed cursor", body = ErrorBody),
        (status = 401, description = "Client authentication failed", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
async fn revocations(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    query: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    // A GET has no form: the client is authenticated from the `Authorization` header alone.
    authenticate(&st, &headers, None, Clients::Confidential, &caller).await?;
    let Query(q) = query.map_err(|_| ApiError::InvalidRequest("malformed query".into()))?;
    feed(&st, q.since.as_deref(), q.limit.as_deref()).await
}

/// Form parameters of `POST /revocations`, as `Form::decode` reads them.
#[derive(Deserialize, ToSchema)]
struct FeedForm {
    /// The `cursor` of the previous response; absent for the full current state.
    since: Option<String>,
    /// Most entries in one answer: 1 to 10000, default 1000.
    limit: Option<String>,
    /// With `client_secret` (client_secret_post), instead of HTTP Basic; read by client
    /// authentication (`ConfidentialClientForm`) from the same form.
    #[allow(dead_code)]
    client_id: Option<String>,
    #[allow(dead_code)]
    #[schema(value_type = Option<String>, format = Password)]
    client_secret: Option<secrecy::SecretString>,
}

/// The revocation feed, asked for with a form: for clients that authenticate with
/// `client_secret_post`, which a GET cannot carry.
#[utoipa::path(post, path = "/revocations", tag = "oauth", security(("basic" = [])),
    request_body(content = FeedForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "As GET /revocations", body = FeedPage),
        (status = 400, description = "Malformed cursor or form", body = ErrorBody),
        (status = 401, description = "Client authentication failed", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
async fn revocations_post(
    State(st): State<AppState>,
    ConfidentialClientForm { form, .. }: ConfidentialClientForm,
) -> Result<Response, ApiError> {
    let f: FeedForm = form.decode()?;
    feed(&st, f.since.as_deref(), f.limit.as_deref()).await
}

/// One page of the feed after a cursor (absent or empty: everything still relevant).
///
/// A cursor is `MS` (every entry from that millisecond on; what a final page returns, with
/// the overlap that catches revocations committed late) or `MS.KIND.KEY` with the key in
/// base64url (strictly after that entry; what a page followed by more returns). Entries are
/// ordered by time, then kind (token, session, user), then key. Cursors hold only URL-safe
/// characters.
async fn feed(
    st: &AppState,
    since: Option<&str>,
    limit: Option<&str>,
) -> Result<Response, ApiError> {
    let cursor = Cursor::parse(since.unwrap_or_default())
        .ok_or_else(|| ApiError::InvalidRequest("malformed cursor".into()))?;
    let limit = match limit {
        None | Some("") => FEED_PAGE,
        Some(l) => digits(l)
            .filter(|n| (1..=FEED_PAGE_MAX as u64).contains(n))
            .map(|n| n as usize)
            .ok_or_else(|| {
                ApiError::InvalidRequest(format!("limit must be 1 to {FEED_PAGE_MAX}"))
            })?,
    };
    let page = st.auth.revocation_feed(&cursor, limit).await?;
    Ok(Json(page).into_response())
}
