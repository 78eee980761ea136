//! The hosted HTML pages of the OpenID Provider: the login, consent and error pages of
//! `/authorize`, the form-post response, the end-session endpoint's confirmation, the
//! device page (RFC 8628), the account page (sign-in methods, adding a passkey), and the
//! landing page of emailed links. Beside the JSON API (`http`), not inside it: they
//! call the same domain use cases (`tessera-auth`) and turn their errors into pages, as
//! `http::error` turns them into statuses.
//!
//! - Templates are minijinja (`templates/`): embedded in the binary, each replaceable by a file
//!   of the same name in `ui.templates_dir`, loaded once at start-up so that a broken theme
//!   fails the start and not a login. minijinja rather than askama because an operator's
//!   templates must load at run time; autoescaping is on for every `.html` template.
//! - Every page works without JavaScript, has real labels and `autocomplete` hints, and is
//!   sent with a strict CSP (`default-src 'none'`, scripts and styles from Tessera only, no
//!   inline script, `frame-ancestors 'none'`) and `Referrer-Policy: same-origin`, so that
//!   browsers send a true `Origin` with the forms (see `csrf`).
//! - Every form is CSRF-checked (`csrf`), and a browser's signed-in state comes only from the
//!   SSO session cookie (invariant 9).

mod account;
mod authorize;
mod csrf;
mod device;
mod device_views;
mod link;
mod logout;
mod signin;

use std::path::Path;
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use minijinja::Environment;

use crate::http::AppState;

/// The embedded templates, by name.
const TEMPLATES: [(&str, &str); 12] = [
    ("account.html", include_str!("templates/account.html")),
    ("base.html", include_str!("templates/base.html")),
    ("link.html", include_str!("templates/link.html")),
    ("login.html", include_str!("templates/login.html")),
    ("mfa.html", include_str!("templates/mfa.html")),
    ("consent.html", include_str!("templates/consent.html")),
    ("error.html", include_str!("templates/error.html")),
    ("form_post.html", include_str!("templates/form_post.html")),
    ("logout.html", include_str!("templates/logout.html")),
    ("signed_out.html", include_str!("templates/signed_out.html")),
    ("device.html", include_str!("templates/device.html")),
    (
        "device_confirm.html",
        include_str!("templates/device_confirm.html"),
    ),
];

const STYLE: &str = include_str!("static/style.css");
const FORM_POST_JS: &str = include_str!("static/form_post.js");
const PASSKEY_JS: &str = include_str!("static/passkey.js");

/// The CSP of every page: nothing but Tessera's own stylesheet and script, no frames; the
/// passkey script may call Tessera's own endpoints (`connect-src 'self'`), forms post only to
/// Tessera, except the form-post response's to the client's verified redirect URI.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The page templates, loaded once.
pub struct Pages {
    env: Environment<'static>,
}

impl Pages {
    /// The embedded templates, with those of `dir` (if any) in their place.
    ///
    /// Errors: a template of `dir` that cannot be read or parsed, named.
    pub fn load(dir: Option<&Path>) -> Result<Self, String> {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            let source = match dir.map(|d| d.join(name)).filter(|p| p.exists()) {
                Some(path) => std::fs::read_to_string(&path)
                    .map_err(|e| format!("ui.templates_dir: {}: {e}", path.display()))?,
                None => source.to_string(),
            };
            env.add_template_owned(name, source)
                .map_err(|e| format!("ui.templates_dir: {name}: {e}"))?;
        }
        Ok(Pages { env })
    }

    /// `name` rendered with `ctx`, as a page with `status`. A template that fails to render
    /// (an operator's) is logged and becomes a plain 500 page.
    pub fn render(&self, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
        let html = self.env.get_template(name).and_then(|t| t.render(ctx));
        match html {
            Ok(html) => page(status, html),
            Err(e) => {
                tracing::error!(template = name, error = %e, "page template failed");
                page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "<!doctype html><title>Error</title><p>Internal error.</p>".into(),
                )
            }
        }
    }

    /// The error page, with a message safe to show.
    pub fn error(&self, status: StatusCode, message: &str) -> Response {
        self.render(
            status,
            "error.html",
            minijinja::context! { lang => "en", message => message },
        )
    }
}

/// An HTML answer with the pages' headers.
fn page(status: StatusCode, html: String) -> Response {
    let mut res = (status, html).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(h);
    res
}

/// The security headers of every page and page redirect.
pub(super) fn secure_headers(h: &mut axum::http::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// A static asset of the pages.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    res
}

/// The routes of the hosted pages (outside the OpenAPI document: they are HTML).
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(authorize::router())
        .merge(logout::router())
        .merge(device::router())
        .merge(account::router())
        .merge(link::router())
        .route("/ui/style.css", get(|| async { asset("text/css", STYLE) }))
        .route(
            "/ui/form_post.js",
            get(|| async { asset("text/javascript", FORM_POST_JS) }),
        )
        .route(
            "/ui/passkey.js",
            get(|| async { asset("text/javascript", PASSKEY_JS) }),
        )
}

/// The loaded pages, shared by the handlers.
pub type SharedPages = Arc<Pages>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_templates_render_and_escape() {
        let pages = Pages::load(None).unwrap();
        let res = pages.error(StatusCode::BAD_REQUEST, "<script>x</script>");
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(res.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'"));
    }

    #[test]
    fn a_theme_replaces_a_template_and_a_broken_one_fails_the_start() {
        let dir = std::env::temp_dir().join(format!("tessera-ui-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("error.html"), "{% if %}").unwrap();
        let e = Pages::load(Some(&dir)).err().unwrap();
        assert!(e.contains("error.html"), "{e}");
        std::fs::write(dir.join("error.html"), "themed: {{ message }}").unwrap();
        assert!(Pages::load(Some(&dir)).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
