//! `GET /admin/audit`: the audit trail, for an admin token (see `auth::audit`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::admin::AdminUser;
use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::auth::audit::Event;
use crate::auth::{AuditEvent, AuditQuery};
use tessera_store::AuditEventView;

/// Events per page unless `limit` says otherwise.
const DEFAULT_LIMIT: u32 = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events))
}

/// Filters and the cursor of `GET /admin/audit`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    /// Only this user's events (a user id).
    user: Option<String>,
    /// Only this event, e.g. `login.failed`.
    event: Option<String>,
    /// Only events at or after this RFC 3339 time, e.g. `2026-11-29T00:00:00Z`.
    since: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Events per page, 1 to 1000 (default 100).
    limit: Option<u32>,
}

/// An event as the admin API shows it, its time also in RFC 3339.
fn event_view(event: AuditEvent) -> AuditEventView {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(event.at.max(0) as u64);
    AuditEventView {
        time: humantime::format_rfc3339_millis(time).to_string(),
        event,
    }
}

/// A page of the audit trail, oldest first.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    events: Vec<AuditEventView>,
    /// Pass as `cursor` for the next page; `null` when this page is the last one so far.
    next_cursor: Option<Uuid>,
}

/// The audit trail, oldest first, filtered by user, event and time, in pages with a cursor.
#[utoipa::path(get, path = "/admin/audit", tag = "admin", params(AuditParams), security(("bearer" = [])),
    responses((status = 200, description = "A page of events", body = AuditPage),
              (status = 400, description = "Malformed filter", body = ErrorBody),
              (status = 401, description = "Missing or invalid access token", body = ErrorBody),
              (status = 403, description = "Not an admin", body = ErrorBody)))]
async fn list_events(
    State(st): State<AppState>,
    _admin: AdminUser,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|_| ApiError::InvalidRequest("malformed query".into()))?;
    let bad = |what: &str| ApiError::InvalidRequest(format!("malformed {what}"));
    let user_id = p
        .user
        .map(|u| u.parse::<Uuid>().map_err(|_| bad("user")))
        .transpose()?;
    let event = p
        .event
        .map(|e| {
            Event::parse(&e)
                .map(|e| e.name().to_string())
                .ok_or_else(|| bad("event"))
        })
        .transpose()?;
    let since = match p.since {
        None => 0,
        Some(t) => rfc3339_ms(&t).ok_or_else(|| bad("since"))?,
    };
    let after = p
        .cursor
        .map(|c| c.parse::<Uuid>().map_err(|_| bad("cursor")))
        .transpose()?;
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    let (events, next_cursor) = st
        .auth
        .audit_events(&AuditQuery {
            user_id,
            event,
            since,
            after,
            limit,
            before: 0,
        })
        .await?;
    let page = AuditPage {
        events: events.into_iter().map(event_view).collect(),
        next_cursor,
    };
    Ok(Json(page).into_response())
}

/// An RFC 3339 date-time (`Z` or a `±hh:mm` offset, `T` or `t`) in milliseconds since the epoch.
fn rfc3339_ms(text: &str) -> Option<i64> {
    // RFC 3339 is ASCII: anything else is refused before any byte-offset split.
    if !text.is_ascii() {
        return None;
    }
    let t = text.trim().to_ascii_uppercase();
    let (local, offset_ms) = match t.strip_suffix('Z') {
        Some(local) => (local.to_string(), 0),
        None => {
            let split = t.len().checked_sub(6)?;
            let (local, offset) = t.split_at(split);
            let sign = match offset.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = offset.get(1..)?.split_once(':')?;
            // `time-numoffset = ("+" / "-") time-hour ":" time-minute`: two digits each.
            let two_digits = |x: &str| x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit());
            if !two_digits(h) || !two_digits(m) {
                return None;
            }
            let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
            if h > 23 || m > 59 {
                return None;
            }
            (local.to_string(), sign * (h * 60 + m) * 60_000)
        }
    };
    let utc = humantime::parse_rfc3339_weak(&format!("{local}Z")).ok()?;
    let ms = i64::try_from(utc.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis()).ok()?;
    Some(ms - offset_ms)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_with_offsets() {
        let z = super::rfc3339_ms("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(super::rfc3339_ms("2026-01-01t00:00:00z"), Some(z));
        assert_eq!(super::rfc3339_ms("2025-12-31T19:00:00-05:00"), Some(z));
        assert_eq!(super::rfc3339_ms("2026-01-01T02:00:00+02:00"), Some(z));
        assert_eq!(super::rfc3339_ms("2026-01-01T00:00:00.250Z"), Some(z + 250));
        for bad in [
            "yesterday",
            "2026-01-01",
            "2026-01-01T00:00:00+25:00",
            "+01:00",
            // Found by an attack pass: a multi-byte character where the offset split falls
            // panicked (500); a signed hour was read as an offset.
            "日1234",
            "a日日b",
            "2026-01-01T00:00:00+日:0",
            "2026-01-01T00:00:00+-1:00",
            "2026-01-01T00:00:00++1:00",
            "2026-01-01T00:00:00+1:000",
        ] {
            assert_eq!(super::rfc3339_ms(bad), None, "{bad}");
        }
    }
}
