//! The pages `/authorize` renders: login, second step and consent, with what each form
//! carries of the authorization request.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::context;
use secrecy::ExposeSecret;

use crate::auth::oidc::{AuthorizationRequest, AuthorizeParams};
use crate::http::AppState;
use crate::pages::csrf;
use crate::pages::signin::SecondStep;

/// What a form carries of the request, as `[name, value]` pairs for its hidden fields: the
/// parameters, or for a pushed request only `client_id` and `request_uri` (its parameters
/// stay on the server, where the browser cannot change them).
pub(super) fn carried(req: &AuthorizationRequest) -> Vec<(String, String)> {
    match &req.pushed {
        Some(uri) => vec![
            ("client_id".into(), req.client_id.clone()),
            ("request_uri".into(), uri.clone()),
        ],
        None => hidden(&req.params),
    }
}

/// The authorization parameters as `[name, value]` pairs.
pub(super) fn hidden(p: &AuthorizeParams) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(p) else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            _ => None,
        })
        .collect()
}

/// The page's language: the first of `ui_locales` (a BCP 47 tag), else English.
pub(super) fn lang(req: &AuthorizationRequest) -> String {
    req.ui_locales
        .as_deref()
        .and_then(|l| l.split(' ').next())
        .filter(|t| t.len() <= 35 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .unwrap_or("en")
        .to_string()
}

pub(super) fn login_page(
    st: &AppState,
    headers: &HeaderMap,
    req: &AuthorizationRequest,
    status: StatusCode,
    error: Option<&str>,
    username: &str,
) -> Response {
    csrf::with_token(headers, |csrf| {
        st.pages.render(
            status,
            "login.html",
            context! {
                lang => lang(req),
                action => "/authorize/login",
                passkey_action => st.auth.passkeys_enabled().then_some("/authorize/passkey"),
                client_id => req.client_id,
                csrf => csrf,
                params => carried(req),
                username => username,
                error => error,
            },
        )
    })
}

/// The second-step page: the request's parameters and the `mfa_token` carried in the form.
pub(super) fn mfa_page(
    st: &AppState,
    headers: &HeaderMap,
    req: &AuthorizationRequest,
    step: &SecondStep,
    error: Option<&str>,
) -> Response {
    csrf::with_token(headers, |csrf| {
        st.pages.render(
            StatusCode::OK,
            "mfa.html",
            context! {
                lang => lang(req),
                action => "/authorize/mfa",
                client_id => req.client_id,
                csrf => csrf,
                params => carried(req),
                mfa_token => step.token.expose_secret(),
                methods => step.offers(),
                passkey => st.auth.passkeys_enabled(),
                error => error,
            },
        )
    })
}

pub(super) fn consent_page(
    st: &AppState,
    headers: &HeaderMap,
    req: &AuthorizationRequest,
    user_id: uuid::Uuid,
    username: &str,
) -> Response {
    // "Not you?": the same request with prompt=login (a pushed request's parameters cannot
    // change: it asks again as it was pushed).
    let mut again = req.params.clone();
    again.prompt = Some("login".into());
    let pairs = match req.pushed {
        Some(_) => carried(req),
        None => hidden(&again),
    };
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(&k, &v);
    }
    let scopes: Vec<&str> = req
        .granted
        .scope
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    csrf::with_token(headers, |csrf| {
        st.pages.render(
            StatusCode::OK,
            "consent.html",
            context! {
                lang => lang(req),
                client_id => req.client_id,
                username => username,
                account => user_id.to_string(),
                scopes => scopes,
                switch_url => format!("/authorize?{}", q.finish()),
                csrf => csrf,
                params => carried(req),
            },
        )
    })
}
