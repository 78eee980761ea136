//! `GET`/`POST /authorize` (RFC 6749 §4.1.1, OIDC Core §3.1.2.1) and the forms of its pages:
//! `POST /authorize/login` (the hosted login) and `POST /authorize/consent`. Each parses the
//! request, calls one use case of `tessera_auth::oidc`, and answers with a page, a redirect
//! to the client's verified redirect URI, or the form-post page.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use minijinja::context;
use secrecy::{ExposeSecret, SecretString};

use super::csrf;
use crate::auth::mfa::SecondFactor;
use crate::auth::oidc::{
    AuthorizationRequest, AuthorizeError, AuthorizeParams, Decision, Redirect, ResponseMode,
    SsoCookie,
};
use crate::auth::AuthError;
use crate::http::{client_meta, read_cookie, AppState, RequestCaller};

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
        let auth = AuthorizeParams {
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
            ui_locales: take("ui_locales"),
            acr_values: take("acr_values"),
            resource: take("resource"),
            request: take("request"),
            request_uri: take("request_uri"),
        };
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

/// The hosted login form.
async fn login(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (p, req) = match form_request(&st, &headers, &body).await {
        Ok(form) => form,
        Err(res) => return *res,
    };
    let username = p.own("username").unwrap_or_default();
    let password = SecretString::from(p.own("password").unwrap_or_default().to_string());
    let meta = client_meta(&st, &headers, peer.map(|Extension(ConnectInfo(a))| a));
    let old = sso_cookie(&headers);
    let signed = st
        .auth
        .sign_in(&req, username, password, meta, old.as_ref(), &caller)
        .await;
    let shown =
        |status, error: &str| login_page(&st, &headers, &req, status, Some(error), username);
    match signed {
        Ok(signed) => {
            let mut res = decided(&st, &headers, &req, signed.decision, Via::Post);
            set_sso_cookie(&mut res, &signed.cookie, signed.max_age_secs);
            res
        }
        Err(e) => match password_refused(e, "authorize") {
            PasswordRefused::Again(again) => again.respond(shown),
            PasswordRefused::SecondStep(token) => mfa_page(&st, &headers, &req, &token, None),
            PasswordRefused::Unavailable => unavailable(&st),
        },
    }
}

/// What the login pages say to an account that must have a second factor and has none.
pub(super) const ENROL_FIRST: &str =
    "This account needs a second factor and has none. Ask an administrator for help.";

/// What the login pages say to an account whose address is not verified yet
/// (`accounts.require_verified_email`), after a correct password only.
pub(super) const VERIFY_FIRST: &str =
    "Verify your email address first: open the link we sent you, or ask for a new one.";

/// What a second-step page says when neither field was filled in.
pub(super) const NO_CODE: &str = "Enter the code from your app, or a recovery code.";

/// What a login page says when a passkey was not accepted.
pub(super) const PASSKEY_REFUSED: &str =
    "That passkey was not accepted. Try again, or sign in with your password.";

/// The second factor a second-step form names (`passkey`, the page script's assertion, else
/// `code`, else `recovery_code`), if any.
pub(super) fn factor_from_form<'a>(
    field: impl Fn(&str) -> Option<&'a str>,
) -> Option<SecondFactor> {
    let filled = |name: &str| {
        field(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| SecretString::from(v.to_string()))
    };
    if let Some(p) = filled("passkey") {
        return Some(SecondFactor::Passkey(p.expose_secret().to_string()));
    }
    match (filled("code"), filled("recovery_code")) {
        (Some(c), _) => Some(SecondFactor::Totp(c)),
        (None, Some(c)) => Some(SecondFactor::RecoveryCode(c)),
        (None, None) => None,
    }
}

/// What a page says while the throttle holds attempts back.
pub(super) fn too_many(retry_after_secs: u64) -> String {
    format!("Too many attempts. Try again in {retry_after_secs} seconds.")
}

/// What every hosted sign-in form (`/authorize`, `/account`, `/device`) shows when a password
/// sign-in is refused: the login form again with a message, or the second step.
pub(super) enum PasswordRefused {
    /// The login form again, with this status and message (a 429 also carries
    /// `Retry-After`: see `Again::respond`).
    Again(Again),
    /// The password was right and a second factor is due: its `mfa_token`.
    SecondStep(SecretString),
    /// Anything else (logged): the "unavailable" page.
    Unavailable,
}

/// The login form again: its status, its message, and for a 429 the wait.
pub(super) struct Again {
    pub status: StatusCode,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl Again {
    /// `render(status, message)` (the page's own login form), made a 429 with `Retry-After`
    /// when throttled.
    pub fn respond(self, render: impl FnOnce(StatusCode, &str) -> Response) -> Response {
        let res = render(self.status, &self.message);
        match self.retry_after_secs {
            Some(secs) => throttled(res, secs),
            None => res,
        }
    }
}

/// The one mapping of a refused password sign-in to a page, for every hosted form.
pub(super) fn password_refused(e: AuthError, page: &str) -> PasswordRefused {
    let again = |status, message: &str| {
        PasswordRefused::Again(Again {
            status,
            message: message.to_string(),
            retry_after_secs: None,
        })
    };
    match e {
        AuthError::InvalidCredentials => again(StatusCode::OK, "Incorrect username or password."),
        AuthError::BadInput(_) => {
            again(StatusCode::BAD_REQUEST, "Enter your username and password.")
        }
        AuthError::MfaRequired(m) => PasswordRefused::SecondStep(m.mfa_token),
        AuthError::MfaEnrolmentRequired => again(StatusCode::FORBIDDEN, ENROL_FIRST),
        AuthError::EmailNotVerified => again(StatusCode::FORBIDDEN, VERIFY_FIRST),
        AuthError::Throttled { retry_after_secs } => PasswordRefused::Again(Again {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: too_many(retry_after_secs),
            retry_after_secs: Some(retry_after_secs),
        }),
        e => {
            tracing::warn!(error = %e, page, "hosted sign-in failed");
            PasswordRefused::Unavailable
        }
    }
}

/// `res` as a 429 with `Retry-After`.
pub(super) fn throttled(mut res: Response, retry_after_secs: u64) -> Response {
    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

/// The hosted login's second step: the `mfa_token` of the password step and a TOTP or
/// recovery code.
async fn mfa(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (p, req) = match form_request(&st, &headers, &body).await {
        Ok(form) => form,
        Err(res) => return *res,
    };
    let token = SecretString::from(p.own("mfa_token").unwrap_or_default().to_string());
    let Some(factor) = factor_from_form(|name| p.own(name)) else {
        return mfa_page(&st, &headers, &req, &token, Some(NO_CODE));
    };
    let meta = client_meta(&st, &headers, peer.map(|Extension(ConnectInfo(a))| a));
    let old = sso_cookie(&headers);
    let signed = st
        .auth
        .sign_in_mfa(&req, &token, factor, meta, old.as_ref(), &caller)
        .await;
    match signed {
        Ok(signed) => {
            let mut res = decided(&st, &headers, &req, signed.decision, Via::Post);
            set_sso_cookie(&mut res, &signed.cookie, signed.max_age_secs);
            res
        }
        Err(AuthError::InvalidSecondFactor) | Err(AuthError::BadInput(_)) => mfa_page(
            &st,
            &headers,
            &req,
            &token,
            Some("Incorrect or expired code. If it keeps failing, sign in again."),
        ),
        Err(AuthError::Throttled { retry_after_secs }) => {
            let error = too_many(retry_after_secs);
            throttled(
                mfa_page(&st, &headers, &req, &token, Some(&error)),
                retry_after_secs,
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "hosted second step failed");
            unavailable(&st)
        }
    }
}

/// The hosted login with a passkey and no password: the ceremony the page's script fetched
/// (`POST /login/passkey/options`) and the browser's assertion.
async fn passkey(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (p, req) = match form_request(&st, &headers, &body).await {
        Ok(form) => form,
        Err(res) => return *res,
    };
    let meta = client_meta(&st, &headers, peer.map(|Extension(ConnectInfo(a))| a));
    let old = sso_cookie(&headers);
    let signed = st
        .auth
        .sign_in_passkey(
            &req,
            p.own("ceremony").unwrap_or_default(),
            p.own("credential").unwrap_or_default(),
            meta,
            old.as_ref(),
            &caller,
        )
        .await;
    match signed {
        Ok(signed) => {
            let mut res = decided(&st, &headers, &req, signed.decision, Via::Post);
            set_sso_cookie(&mut res, &signed.cookie, signed.max_age_secs);
            res
        }
        Err(AuthError::InvalidCredentials | AuthError::BadInput(_)) => login_page(
            &st,
            &headers,
            &req,
            StatusCode::OK,
            Some(PASSKEY_REFUSED),
            "",
        ),
        Err(e) => {
            tracing::warn!(error = %e, "hosted passkey sign-in failed");
            unavailable(&st)
        }
    }
}

/// The consent form's answer.
async fn consent(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (p, req) = match form_request(&st, &headers, &body).await {
        Ok(form) => form,
        Err(res) => return *res,
    };
    let allow = match p.own("decision") {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            return st
                .pages
                .error(StatusCode::BAD_REQUEST, "No decision was made.")
        }
    };
    let cookie = sso_cookie(&headers);
    match st.auth.consent(&req, cookie.as_ref(), allow).await {
        Ok(code) => redirect(&st, code, Via::Post),
        Err(e) => failed(&st, e, Via::Post),
    }
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
        Decision::Consent { username } => consent_page(st, headers, req, &username),
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

pub(super) fn unavailable(st: &AppState) -> Response {
    st.pages.error(
        StatusCode::SERVICE_UNAVAILABLE,
        "The service is unavailable. Try again shortly.",
    )
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

/// What a form carries of the request, as `[name, value]` pairs for its hidden fields: the
/// parameters, or for a pushed request only `client_id` and `request_uri` (its parameters
/// stay on the server, where the browser cannot change them).
fn carried(req: &AuthorizationRequest) -> Vec<(String, String)> {
    match &req.pushed {
        Some(uri) => vec![
            ("client_id".into(), req.client_id.clone()),
            ("request_uri".into(), uri.clone()),
        ],
        None => hidden(&req.params),
    }
}

/// The authorization parameters as `[name, value]` pairs.
fn hidden(p: &AuthorizeParams) -> Vec<(String, String)> {
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
fn lang(req: &AuthorizationRequest) -> String {
    req.ui_locales
        .as_deref()
        .and_then(|l| l.split(' ').next())
        .filter(|t| t.len() <= 35 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .unwrap_or("en")
        .to_string()
}

fn login_page(
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
fn mfa_page(
    st: &AppState,
    headers: &HeaderMap,
    req: &AuthorizationRequest,
    mfa_token: &SecretString,
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
                mfa_token => mfa_token.expose_secret(),
                passkey => st.auth.passkeys_enabled(),
                error => error,
            },
        )
    })
}

fn consent_page(
    st: &AppState,
    headers: &HeaderMap,
    req: &AuthorizationRequest,
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
                scopes => scopes,
                switch_url => format!("/authorize?{}", q.finish()),
                csrf => csrf,
                params => carried(req),
            },
        )
    })
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

pub(super) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}
