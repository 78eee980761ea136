//! The hosted landing page of emailed links (`/account/link?purpose=…&token=…`), used when
//! `accounts.link_base` is empty: a form that posts the token (and a new password, for a
//! reset or an invitation) to `POST /account/link`, which calls the same use cases as the
//! JSON API (`/password/reset`, `/invitations/accept`, `/email/verify`).
//!
//! Opening the link never uses its token: mail scanners and link previews fetch links, so
//! only the form's POST (CSRF-checked) does. The page is `Cache-Control: no-store` (the edge
//! sets it on every answer that sets none), and its
//! `Referrer-Policy: same-origin` keeps the token's URL from leaving Tessera.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use minijinja::context;
use secrecy::SecretString;

use super::account::checked_form;
use super::authorize::unavailable;
use super::csrf;
use crate::auth::{accounts, AuthError};
use crate::http::{AppState, RequestCaller};

pub fn router() -> Router<AppState> {
    Router::new().route("/account/link", get(link_get).post(link_post))
}

/// What a link is for: its `purpose` and what the page says.
#[derive(Clone, Copy)]
struct Purpose {
    name: &'static str,
    title: &'static str,
    action: &'static str,
    done: &'static str,
    password: bool,
}

const PURPOSES: [Purpose; 4] = [
    Purpose {
        name: accounts::PASSWORD_RESET,
        title: "Choose a new password",
        action: "Set the password",
        done: "Your password is set, and every earlier sign-in has ended. Sign in with the new password.",
        password: true,
    },
    Purpose {
        name: accounts::INVITE,
        title: "Accept your invitation",
        action: "Set the password",
        done: "Your account is ready. Sign in with your new password.",
        password: true,
    },
    Purpose {
        name: accounts::EMAIL_VERIFY,
        title: "Verify your email address",
        action: "Verify the address",
        done: "Your email address is verified.",
        password: false,
    },
    Purpose {
        name: accounts::EMAIL_CHANGE,
        title: "Confirm your new email address",
        action: "Confirm the address",
        done: "Your account now has this email address.",
        password: false,
    },
];

fn purpose(name: Option<&String>) -> Option<Purpose> {
    let name = name?;
    PURPOSES.into_iter().find(|p| p.name == name)
}

const INCOMPLETE: &str = "This link is incomplete. Open the link from your email again.";
const SPENT: &str =
    "This link no longer works: it was used, it expired, or a newer one was sent. Ask for a new one.";

async fn link_get(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if !st.auth.mail_enabled() {
        return st.pages.error(StatusCode::NOT_FOUND, "Not found.");
    }
    let q: HashMap<String, String> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    match (purpose(q.get("purpose")), q.get("token")) {
        (Some(p), Some(token)) if !token.is_empty() && token.len() <= 256 => {
            form(&st, &headers, StatusCode::OK, p, token, None)
        }
        _ => st.pages.error(StatusCode::BAD_REQUEST, INCOMPLETE),
    }
}

async fn link_post(
    State(st): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !st.auth.mail_enabled() {
        return st.pages.error(StatusCode::NOT_FOUND, "Not found.");
    }
    let f = match checked_form(&st, &headers, &body) {
        Ok(f) => f,
        Err(res) => return *res,
    };
    let (Some(p), Some(raw)) = (purpose(f.get("purpose")), f.get("token")) else {
        return st.pages.error(StatusCode::BAD_REQUEST, INCOMPLETE);
    };
    let token = SecretString::from(raw.clone());
    let password = || SecretString::from(f.get("password").cloned().unwrap_or_default());
    let done = match p.name {
        accounts::PASSWORD_RESET => st.auth.reset_password(&token, password(), &caller).await,
        accounts::INVITE => st.auth.accept_invitation(&token, password(), &caller).await,
        // Verification and address change: /email/verify takes both.
        _ => st.auth.verify_email(&token, &caller).await,
    };
    let status = match done {
        Ok(()) => {
            return st.pages.render(
                StatusCode::OK,
                "link.html",
                context! { lang => "en", title => p.title, done => p.done },
            )
        }
        Err(AuthError::WeakPassword(rule)) => {
            let why = AuthError::WeakPassword(rule).to_string();
            return form(&st, &headers, StatusCode::BAD_REQUEST, p, raw, Some(&why));
        }
        // A password the rules refuse before looking at it (empty, too long): the form
        // again, the token unused.
        Err(AuthError::BadInput(why)) if p.password => {
            return form(&st, &headers, StatusCode::BAD_REQUEST, p, raw, Some(&why));
        }
        Err(AuthError::InvalidAccountToken | AuthError::BadInput(_)) => StatusCode::BAD_REQUEST,
        Err(AuthError::EmailTaken) => {
            return st.pages.error(
                StatusCode::CONFLICT,
                "Another account has this email address now.",
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "an emailed link's form failed");
            return unavailable(&st);
        }
    };
    st.pages.error(status, SPENT)
}

/// The link's form, the token in a hidden field.
fn form(
    st: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    p: Purpose,
    token: &str,
    error: Option<&str>,
) -> Response {
    csrf::with_token(headers, |csrf| {
        st.pages.render(
            status,
            "link.html",
            context! {
                lang => "en",
                title => p.title,
                action => p.action,
                purpose => p.name,
                password => p.password,
                min_length => st.settings.password.min_length,
                token => token,
                csrf => csrf,
                error => error,
            },
        )
    })
}
