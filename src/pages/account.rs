//! The account page (`GET /account`): a signed-in user sees their sign-in methods and adds a
//! passkey; a browser without an SSO session signs in first, with a password (and its second
//! step) or a passkey. Every form is CSRF-checked; the user comes only from the SSO session
//! cookie (invariant 9). Adding a passkey needs JavaScript (WebAuthn is a browser API); the
//! rest of the page works without it.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use minijinja::context;
use secrecy::{ExposeSecret, SecretString};

use super::authorize::{forged, set_sso_cookie, sso_cookie, unavailable};
use super::csrf;
use super::signin::{
    factor_from_form, password_refused, throttled, too_many, PasswordRefused, SecondStep, NO_CODE,
};
use crate::auth::oidc::{BrowserUser, SsoCookie};
use crate::auth::AuthError;
use crate::http::{client_meta, AppState, RequestCaller};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/account", get(account_get))
        .route("/account/login", post(login))
        .route("/account/mfa", post(mfa))
        .route("/account/passkey/login", post(passkey_login))
        .route("/account/passkey/options", post(passkey_options))
        .route("/account/passkey", post(add_passkey))
}

/// Who the login page names as asking.
const ASKING: &str = "your account";

fn fields(raw: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(raw).into_owned().collect()
}

/// The form's fields, once its CSRF checks pass.
pub(super) fn checked_form(
    st: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<HashMap<String, String>, Box<Response>> {
    let f = fields(body);
    match csrf::check(
        headers,
        f.get("csrf").map(String::as_str),
        &st.allowed_origins,
        &st.settings.tokens.issuer,
    ) {
        true => Ok(f),
        false => Err(Box::new(forged(st))),
    }
}

async fn account_get(State(st): State<AppState>, headers: HeaderMap) -> Response {
    match st.auth.browser_user(sso_cookie(&headers).as_ref()).await {
        Ok(Some(user)) => account_page(&st, &headers, &user, Shown::default()).await,
        Ok(None) => login_page(&st, &headers, StatusCode::OK, None, ""),
        Err(_) => unavailable(&st),
    }
}

/// To `/account`, signed in with `cookie`.
fn signed_in(cookie: &SsoCookie, max_age: u64) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    res.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/account"));
    set_sso_cookie(&mut res, cookie, max_age);
    super::secure_headers(res.headers_mut());
    res
}

async fn login(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = match checked_form(&st, &headers, &body) {
        Ok(f) => f,
        Err(res) => return *res,
    };
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    let username = get("username");
    let meta = client_meta(&st, &headers, peer.map(|Extension(ConnectInfo(a))| a));
    let password = SecretString::from(get("password").to_string());
    let old = sso_cookie(&headers);
    let shown = |status, error: &str| login_page(&st, &headers, status, Some(error), username);
    match st
        .auth
        .sign_in_browser(username, password, meta, old.as_ref(), &caller)
        .await
    {
        Ok((cookie, max_age)) => signed_in(&cookie, max_age),
        Err(e) => match password_refused(e, "account") {
            PasswordRefused::Again(again) => again.respond(shown),
            PasswordRefused::SecondStep(step) => mfa_page(&st, &headers, &step, None),
            PasswordRefused::Unavailable => unavailable(&st),
        },
    }
}

async fn mfa(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = match checked_form(&st, &headers, &body) {
        Ok(f) => f,
        Err(res) => return *res,
    };
    let get = |k: &str| f.get(k).map(String::as_str);
    let step = SecondStep::from_form(get("mfa_token"), get("methods"));
    let Some(factor) = factor_from_form(get) else {
        return mfa_page(&st, &headers, &step, Some(NO_CODE));
    };
    let meta = client_meta(&st, &headers, peer.map(|Extension(ConnectInfo(a))| a));
    let old = sso_cookie(&headers);
    match st
        .auth
        .sign_in_browser_mfa(&step.token, factor, meta, old.as_ref(), &caller)
        .await
    {
        Ok((cookie, max_age)) => signed_in(&cookie, max_age),
        Err(AuthError::InvalidSecondFactor) | Err(AuthError::BadInput(_)) => mfa_page(
            &st,
            &headers,
            &step,
            Some("Incorrect or expired code. If it keeps failing, sign in again."),
        ),
        Err(AuthError::Throttled { retry_after_secs }) => {
            let error = too_many(retry_after_secs);
            throttled(
                mfa_page(&st, &headers, &step, Some(&error)),
                retry_after_secs,
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "account second step failed");
            unavailable(&st)
        }
    }
}

async fn passkey_login(
    State(st): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = match checked_form(&st, &headers, &body) {
        Ok(f) => f,
        Err(res) => return *res,
    };
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    let meta = client_meta(&st, &headers, peer.map(|Extension(ConnectInfo(a))| a));
    let old = sso_cookie(&headers);
    match st
        .auth
        .sign_in_browser_passkey(
            get("ceremony"),
            get("credential"),
            meta,
            old.as_ref(),
            &caller,
        )
        .await
    {
        Ok((cookie, max_age)) => signed_in(&cookie, max_age),
        Err(AuthError::EmailNotVerified) => login_page(
            &st,
            &headers,
            StatusCode::FORBIDDEN,
            Some(super::signin::VERIFY_FIRST),
            "",
        ),
        Err(AuthError::InvalidCredentials | AuthError::BadInput(_)) => login_page(
            &st,
            &headers,
            StatusCode::OK,
            Some(super::signin::PASSKEY_REFUSED),
            "",
        ),
        Err(e) => {
            tracing::warn!(error = %e, "account passkey sign-in failed");
            unavailable(&st)
        }
    }
}

/// The creation options of a new passkey for the signed-in user (JSON, for the page's
/// script): `{"ceremony": …, "publicKey": …}`.
async fn passkey_options(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let f = match checked_form(&st, &headers, &body) {
        Ok(f) => f,
        Err(res) => return *res,
    };
    let user = match st.auth.browser_user(sso_cookie(&headers).as_ref()).await {
        Ok(Some(u)) => u,
        Ok(None) => return crate::http::error::ApiError::MissingToken.into_response(),
        Err(e) => return crate::http::error::ApiError::from(e).into_response(),
    };
    let name = f.get("name").map(String::as_str).filter(|n| !n.is_empty());
    match st
        .auth
        .start_passkey_registration(user.user_id, name, user.auth_time)
        .await
    {
        Ok(c) => {
            let mut options = c.options;
            let body = serde_json::json!({
                "ceremony": c.ceremony,
                "publicKey": options.get_mut("publicKey").map(serde_json::Value::take),
            });
            axum::Json(body).into_response()
        }
        Err(e) => crate::http::error::ApiError::from(e).into_response(),
    }
}

async fn add_passkey(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = match checked_form(&st, &headers, &body) {
        Ok(f) => f,
        Err(res) => return *res,
    };
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    let user = match st.auth.browser_user(sso_cookie(&headers).as_ref()).await {
        Ok(Some(u)) => u,
        Ok(None) => return login_page(&st, &headers, StatusCode::OK, None, ""),
        Err(_) => return unavailable(&st),
    };
    // The SSO session is the caller's (kept); every token session of the user ends, and
    // every other SSO session.
    let added = st
        .auth
        .finish_passkey_registration(
            user.user_id,
            get("ceremony"),
            get("credential"),
            user.auth_time,
            user.sso_session_id,
            &caller,
        )
        .await;
    let shown = match added {
        Ok(added) => Shown {
            notice: Some("Passkey added. Use it the next time you sign in."),
            recovery_codes: added
                .recovery_codes
                .map(|c| c.iter().map(|c| c.expose_secret().to_string()).collect()),
            ..Shown::default()
        },
        Err(AuthError::PasskeyRegistered) => Shown::error("That passkey is registered already."),
        Err(AuthError::ReauthenticationRequired) => {
            Shown::error("For your security, sign out and sign in again before adding a passkey.")
        }
        Err(AuthError::InvalidPasskey | AuthError::BadInput(_)) => {
            Shown::error("The passkey could not be added. Try again.")
        }
        Err(e) => {
            tracing::warn!(error = %e, "adding a passkey failed");
            return unavailable(&st);
        }
    };
    account_page(&st, &headers, &user, shown).await
}

/// What the account page says besides the user's methods.
#[derive(Default)]
struct Shown {
    notice: Option<&'static str>,
    error: Option<&'static str>,
    recovery_codes: Option<Vec<String>>,
}

impl Shown {
    fn error(message: &'static str) -> Self {
        Shown {
            error: Some(message),
            ..Shown::default()
        }
    }
}

async fn account_page(
    st: &AppState,
    headers: &HeaderMap,
    user: &BrowserUser,
    shown: Shown,
) -> Response {
    let factors = match st.auth.factors(user.user_id).await {
        Ok(f) => f,
        Err(_) => return unavailable(st),
    };
    let factors: Vec<_> = factors
        .iter()
        .filter(|f| f.confirmed)
        .map(|f| {
            let kind = match f.kind.as_str() {
                "passkey" => "Passkey",
                _ => "Authenticator app",
            };
            context! { name => f.name, kind => kind }
        })
        .collect();
    csrf::with_token(headers, |csrf| {
        st.pages.render(
            StatusCode::OK,
            "account.html",
            context! {
                lang => "en",
                username => user.username,
                factors => factors,
                passkeys => st.auth.passkeys_enabled(),
                csrf => csrf,
                notice => shown.notice,
                error => shown.error,
                recovery_codes => shown.recovery_codes,
            },
        )
    })
}

fn login_page(
    st: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
    username: &str,
) -> Response {
    let passkey_action = st
        .auth
        .passkeys_enabled()
        .then_some("/account/passkey/login");
    csrf::with_token(headers, |csrf| {
        st.pages.render(
            status,
            "login.html",
            context! {
                lang => "en",
                action => "/account/login",
                passkey_action => passkey_action,
                client_id => ASKING,
                csrf => csrf,
                params => Vec::<(String, String)>::new(),
                username => username,
                error => error,
            },
        )
    })
}

fn mfa_page(
    st: &AppState,
    headers: &HeaderMap,
    step: &SecondStep,
    error: Option<&str>,
) -> Response {
    csrf::with_token(headers, |csrf| {
        st.pages.render(
            StatusCode::OK,
            "mfa.html",
            context! {
                lang => "en",
                action => "/account/mfa",
                client_id => ASKING,
                csrf => csrf,
                params => Vec::<(String, String)>::new(),
                mfa_token => step.token.expose_secret(),
                methods => step.offers(),
                passkey => st.auth.passkeys_enabled(),
                error => error,
            },
        )
    })
}
