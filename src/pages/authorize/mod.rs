//! `GET`/`POST /authorize` (RFC 6749 §4.1.1, OIDC Core §3.1.2.1) and the forms of its pages:
//! `POST /authorize/login` (the hosted login) and `POST /authorize/consent`. Each parses the
//! request, calls one use case of `tessera_auth::oidc`, and answers with a page, a redirect
//! to the client's verified redirect URI, or the form-post page.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::context;
use secrecy::ExposeSecret;

use super::csrf;
use super::signin::*;
use crate::auth::oidc::{
    AuthorizationRequest, AuthorizeError, AuthorizeParams, Decision, Redirect, ResponseMode,
    SsoCookie,
};
use crate::http::{is_form, read_cookie, AppState};

mod forms;
mod views;

use forms::{consent, login, mfa, passkey};
use views::*;

/// The SSO session's cookie. `__Host-`: Secure, `Path=/`, no `Domain`, so no sibling
/// subdomain can set or shadow it. `SameSite=Lax`: sent when another app's link or redirect
/// brings the browser to `/authorize`, never with another site's POST.
pub const SSO_COOKIE: &str = "__Host-tessera_sso";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/authorize", get(authorize_get).post(authorize_post))
        .route("/authorize/login", post(login))
        .route("/authorize/mfa", post(mfa))
        .route("/authorize/passkey", post(passkey))
        .route("/authorize/consent", post(consent))
}

/// How the request came: a redirect answers a GET with 302 (RFC 6749 §4.1.2) and a form POST
/// with 303, so that the browser follows it with a GET.
#[derive(Clone, Copy)]
enum Via {
    Get,
    Post,
}

/// A query or form: the authorization parameters, the page's own fields (`csrf`, `username`,
/// `password`, `decision`), and the names that came more than once.
struct Params {
    auth: AuthorizeParams,
    own: HashMap<String, String>,
    repeated: Vec<String>,
    /// A name or value that is not UTF-8 once decoded: it could not be echoed exactly.
    malformed: bool,
}

impl Params {
    fn parse(raw: &[u8]) -> Self {
        let mut map: HashMap<String, String> = HashMap::new();
        let mut repeated = Vec::new();
        for (k, v) in form_urlencoded::parse(raw) {
            if map.insert(k.to_string(), v.into_owned()).is_some() {
                repeated.push(k.into_owned());
            }
        }
        // RFC 6749 §3.1: a parameter sent without a value is treated as omitted.
        let mut take = |name: &str| map.remove(name).filter(|v| !v.is_empty());
        let mut auth = AuthorizeParams {
            client_id: take("client_id"),
            redirect_uri: take("redirect_uri"),
            response_type: take("response_type"),
            response_mode: take("response_mode"),
            scope: take("scope"),
            state: take("state"),
            nonce: take("nonce"),
            code_challenge: take("code_challenge"),
            code_challenge_method: take("code_challenge_method"),
            prompt: take("prompt"),
            max_age: take("max_age"),
            login_hint: take("login_hint"),
            id_token_hint: take("id_token_hint"),
            ui_locales: take("ui_locales"),
            acr_values: take("acr_values"),
            resource: take("resource"),
            request: take("request"),
            request_uri: take("request_uri"),
        };
        // A repeated `state` is not the client's to be sent back: which copy is, is unknown.
        if repeated.iter().any(|n| n == "state") {
            auth.state = None;
        }
        Params {
            auth,
            own: map,
            repeated,
            malformed: !decodes_as_utf8(raw),
        }
    }

    fn own(&self, name: &str) -> Option<&str> {
        self.own.get(name).map(String::as_str)
    }
}

async fn authorize_get(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let p = Params::parse(query.unwrap_or_default().as_bytes());
    start(&st, &headers, &p, Via::Get).await
}

async fn authorize_post(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if !is_form(&headers) {
        return st.pages.error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The request must be a form (application/x-www-form-urlencoded).",
        );
    }
    start(&st, &headers, &Params::parse(&body), Via::Post).await
}

/// The authorization request, as it arrives from the client.
async fn start(st: &AppState, headers: &HeaderMap, p: &Params, via: Via) -> Response {
    let req = match checked(st, p, via).await {
        Ok(req) => req,
        Err(res) => return *res,
    };
    let cookie = sso_cookie(headers);
    match st.auth.authorize(&req, cookie.as_ref()).await {
        Ok(decision) => decided(st, headers, &req, decision, via),
        Err(e) => failed(st, e, via),
    }
}

/// A form of the hosted pages: its fields, once the CSRF checks pass, and the authorization
/// request it carries, checked again as a new one. Otherwise the page to answer with.
async fn form_request(
    st: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Params, AuthorizationRequest), Box<Response>> {
    let p = Params::parse(body);
    if !csrf::check(
        headers,
        p.own("csrf"),
        &st.allowed_origins,
        &st.settings.tokens.issuer,
    ) {
        return Err(Box::new(forged(st)));
    }
    let req = checked(st, &p, Via::Post).await?;
    Ok((p, req))
}

/// Whether every name and value of a form or query is UTF-8 once percent-decoded
/// (`form_urlencoded` would replace the bytes that are not, and `state` would not come back as
/// sent).
fn decodes_as_utf8(raw: &[u8]) -> bool {
    raw.split(|b| *b == b'&').all(|pair| {
        let plus: Vec<u8> = pair
            .iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect();
        percent_encoding::percent_decode(&plus)
            .decode_utf8()
            .is_ok()
    })
}

/// The request checked, or the answer that ends it. A repeated `client_id` or `redirect_uri`
/// makes the redirect URI untrustworthy (an error page); another repeated parameter is an
/// `invalid_request` sent back (RFC 6749 §3.1). A pushed request's `request_uri` (RFC 9126
/// §4) brings its parameters; only `client_id` is read beside it.
async fn checked(
    st: &AppState,
    p: &Params,
    via: Via,
) -> Result<AuthorizationRequest, Box<Response>> {
    if p.malformed {
        return Err(Box::new(st.pages.error(
            StatusCode::BAD_REQUEST,
            "The request is malformed: a parameter is not UTF-8.",
        )));
    }
    if let Some(uri) = &p.auth.request_uri {
        return st
            .auth
            .pushed_request(p.auth.client_id.as_deref(), uri)
            .await
            .map_err(|e| Box::new(failed(st, e, via)));
    }
    if p.repeated
        .iter()
        .any(|n| n == "client_id" || n == "redirect_uri")
    {
        return Err(Box::new(st.pages.error(
            StatusCode::BAD_REQUEST,
            "The request repeats client_id or redirect_uri.",
        )));
    }
    let req = st
        .auth
        .authorization_request(&p.auth)
        .map_err(|e| Box::new(failed(st, e, via)))?;
    if !p.repeated.is_empty() {
        return Err(Box::new(failed(
            st,
            req.error("invalid_request", "a parameter is repeated"),
            via,
        )));
    }
    Ok(req)
}

/// The page or redirect a decision calls for.
fn decided(
    st: &AppState,
    headers: &HeaderMap,
    req: &AuthorizationRequest,
    decision: Decision,
    via: Via,
) -> Response {
    match decision {
        Decision::Login => login_page(
            st,
            headers,
            req,
            StatusCode::OK,
            None,
            req.login_hint.as_deref().unwrap_or_default(),
        ),
        Decision::Consent { user_id, username } => {
            consent_page(st, headers, req, user_id, &username)
        }
        Decision::Code(code) => redirect(st, code, via),
    }
}

fn failed(st: &AppState, e: AuthorizeError, via: Via) -> Response {
    match e {
        AuthorizeError::Page(message) => st.pages.error(StatusCode::BAD_REQUEST, &message),
        AuthorizeError::Redirect(r) => redirect(st, r, via),
        AuthorizeError::Unavailable => unavailable(st),
    }
}

/// The page of a 503, with the `Retry-After` the JSON answers carry (1 s).
pub(super) fn unavailable(st: &AppState) -> Response {
    let mut res = st.pages.error(
        StatusCode::SERVICE_UNAVAILABLE,
        "The service is unavailable. Try again shortly.",
    );
    res.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    res
}

pub(super) fn forged(st: &AppState) -> Response {
    st.pages.error(
        StatusCode::FORBIDDEN,
        "This form has expired or was sent from another site. Go back to the application and start again.",
    )
}

/// The response sent to the client's verified redirect URI, with `iss` (RFC 9207): in the
/// query (a 302 or 303), or as the auto-submitted form of `response_mode=form_post`.
fn redirect(st: &AppState, r: Redirect, via: Via) -> Response {
    let mut params = r.params;
    params.push(("iss", st.settings.tokens.issuer.clone()));
    let mut res = match r.response_mode {
        ResponseMode::FormPost => {
            let fields: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            return st.pages.render(
                StatusCode::OK,
                "form_post.html",
                context! { lang => "en", redirect_uri => r.redirect_uri, params => fields },
            );
        }
        ResponseMode::Query => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &params {
                q.append_pair(k, v);
            }
            let sep = if r.redirect_uri.contains('?') {
                '&'
            } else {
                '?'
            };
            let location = format!("{}{sep}{}", r.redirect_uri, q.finish());
            let status = match via {
                Via::Get => StatusCode::FOUND,
                Via::Post => StatusCode::SEE_OTHER,
            };
            let mut res = status.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                res.headers_mut().insert(header::LOCATION, v);
            }
            res
        }
    };
    super::secure_headers(res.headers_mut());
    res
}

pub(super) fn sso_cookie(headers: &HeaderMap) -> Option<SsoCookie> {
    read_cookie(headers, SSO_COOKIE).map(SsoCookie)
}

/// Removes the SSO cookie from the browser.
pub(super) fn clear_sso_cookie(res: &mut Response) {
    let value = format!("{SSO_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax");
    if let Ok(v) = HeaderValue::from_str(&value) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

pub(super) fn set_sso_cookie(res: &mut Response, cookie: &SsoCookie, max_age_secs: u64) {
    let value = format!(
        "{SSO_COOKIE}={}; Path=/; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Lax",
        cookie.0.expose_secret()
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}
