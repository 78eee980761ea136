//! `GET` and `POST /userinfo`: who the bearer of a valid access token is.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::client_auth::{is_form, Form};
use super::error::{ApiError, ErrorBody};
use super::extract::Bearer;
use super::AppState;
use crate::auth::tokens::is_registered;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(userinfo, userinfo_post))
}

/// Who the bearer of the access token is.
#[utoipa::path(get, path = "/userinfo", tag = "session", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller: sub, username, roles, sid, custom claims, and with the profile scope preferred_username and updated_at, with the email scope email and email_verified (OIDC Core §5.3, §5.4)", body = Object),
        (status = 400, description = "invalid_request: the access token sent more than once (two Authorization headers, or the header and an access_token query parameter)", body = ErrorBody),
        (status = 401, description = "Missing, invalid, expired or revoked token (WWW-Authenticate: Bearer)", body = ErrorBody),
        (status = 503, description = "Revocation state unavailable (fails closed)", body = ErrorBody),
    ))]
async fn userinfo(
    st: State<AppState>,
    bearer: Bearer,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    if bearer.0.is_some() && query_token(query.as_deref()) {
        return Err(ApiError::AmbiguousToken);
    }
    userinfo_inner(st, bearer).await
}

/// Whether the query names an `access_token` (RFC 6750 §2.3, which Tessera does not take: a
/// token in a URL ends up in logs and histories). Alone it is no token; beside the header it
/// is the token sent twice. An empty one is no parameter (RFC 6749 §3.1), as in the form.
fn query_token(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "access_token" && !v.is_empty())
    })
}

/// The same as `GET /userinfo` (OIDC Core §5.3.1: both methods). The access token comes in
/// `Authorization: Bearer`, or in an `application/x-www-form-urlencoded` body as
/// `access_token` (RFC 6750 §2.2, which some relying parties use by default); both at once
/// is 400 `invalid_request` (RFC 6750 §2: one method per request).
#[utoipa::path(post, path = "/userinfo", tag = "session", security(("bearer" = [])),
    request_body(content = UserinfoForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The caller", body = Object),
              (status = 400, description = "invalid_request: the access token sent more than once (the header and the body or the query, or access_token repeated), or a malformed form", body = ErrorBody),
              (status = 401, description = "Invalid token", body = ErrorBody)))]
async fn userinfo_post(
    st: State<AppState>,
    bearer: Bearer,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let token = match (bearer.0, form_token(&headers, body)?) {
        (Some(_), Some(_)) => return Err(ApiError::AmbiguousToken),
        (t, None) | (None, t) => t,
    };
    if token.is_some() && query_token(query.as_deref()) {
        return Err(ApiError::AmbiguousToken);
    }
    userinfo_inner(st, Bearer(token)).await
}

/// The form body of `POST /userinfo` (RFC 6750 §2.2).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // the OpenAPI document's shape of the body `form_token` reads
struct UserinfoForm {
    /// The access token, when it is not in `Authorization`.
    access_token: Option<String>,
}

/// The `access_token` of a form body, `None` when the body is not a form or has none. A form
/// that repeats a parameter is 400 `invalid_request` (as at `/token`); one that repeats the
/// token is the token sent twice (`AmbiguousToken`, with its challenge).
fn form_token(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Option<String>, ApiError> {
    if !is_form(headers) {
        return Ok(None);
    }
    let body = body?;
    if form_urlencoded::parse(&body)
        .filter(|(k, v)| k == "access_token" && !v.is_empty())
        .count()
        > 1
    {
        return Err(ApiError::AmbiguousToken);
    }
    let form = Form::parse(headers, Ok(body))?;
    Ok(form.get("access_token").map(str::to_owned))
}

async fn userinfo_inner(State(st): State<AppState>, bearer: Bearer) -> Result<Response, ApiError> {
    let token = bearer.0.ok_or(ApiError::MissingToken)?;
    let who = st.auth.authenticate(&token).await?;
    let claims = &who.claims.claims;
    // A client the user consented to gets what its scope allows (OIDC Core §5.4), not the
    // username, roles, session and custom claims the operator's own clients see.
    let may = st
        .auth
        .disclosure(claims.client_id.as_deref(), claims.scope.as_deref());
    // `mfa.required_for_roles`: as the token itself carries them.
    let own = may.own.then(|| {
        let amr = claims
            .amr
            .as_ref()
            .map(|amr| amr.iter().map(|m| m.as_ref()));
        st.auth.roles_in_token(&who.user.roles, amr)
    });
    let answer = Answer {
        profile: may.profile,
        email: may.email,
        own,
        who: &who,
    };
    Ok(axum::Json(answer).into_response())
}

/// The `/userinfo` answer, written straight from the caller (no JSON tree in between):
/// `sub`; for the operator's own clients `username`, `roles` (`own`) and `sid`; with the
/// `profile` scope `preferred_username` and `updated_at` (Unix seconds); with the `email` scope
/// and an address `email` and `email_verified` (OIDC Core §5.3, §5.4); then, for the
/// operator's own clients, the custom claims, none of which takes a name set before it.
struct Answer<'a> {
    who: &'a crate::auth::Authenticated,
    /// The roles the token carries, for the operator's own clients.
    own: Option<Vec<String>>,
    profile: bool,
    email: bool,
}

impl Serialize for Answer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let u = &self.who.user;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("sub", &u.id)?;
        if let Some(roles) = &self.own {
            m.serialize_entry("username", &u.username)?;
            m.serialize_entry("roles", roles)?;
            m.serialize_entry("sid", &self.who.claims.session_id)?;
        }
        if self.profile {
            m.serialize_entry("preferred_username", &u.username)?;
            m.serialize_entry("updated_at", &u.updated_at.div_euclid(1000))?;
        }
        let email = u.email.as_ref().filter(|_| self.email);
        if let Some(email) = email {
            m.serialize_entry("email", email)?;
            m.serialize_entry("email_verified", &u.email_verified)?;
        }
        if self.own.is_some() {
            // `email`, `preferred_username` and the rest that Tessera sets are registered:
            // refused when set, and skipped here if stored before they were.
            for (k, v) in u.claims.iter().filter(|(k, _)| !is_registered(k)) {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}
