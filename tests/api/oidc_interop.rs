//! Real relying parties against a running Tessera: Authlib over plain HTTP (no browser,
//! `tests/interop/oidc_rp.py`), and openid-client 6 driving Debian's Chromium through
//! playwright-core (`tests/interop/oidc_browser.mjs`). Each discovers the provider, signs in at
//! the hosted login with PKCE, state and nonce, validates the ID token, calls /userinfo,
//! refreshes, and comes back through SSO without a login page; the browser then logs out
//! through the end-session endpoint.

use std::process::Command;

use figment::providers::Serialized;
use serde_json::json;

use crate::helpers::{Backend, TestApp, PASSWORD};
use crate::on_both;

on_both!(
    authlib_signs_in_over_plain_http,
    openid_client_signs_in_through_chromium,
);

pub(crate) const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");

/// Whether `what` can run here; in CI its absence is a failure, not a skip.
pub(crate) fn available(ok: bool, what: &str) -> bool {
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs {what} (.ci/run installs it)"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "*** OIDC interop test SKIPPED: needs {what} ***"
        );
    }
    ok
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A provider whose issuer is the URL the relying parties discover, with the README's `web`
/// and `cli` clients (loopback redirect URIs: any port).
async fn provider(b: Backend, callback_port: u16) -> Option<TestApp> {
    let port = free_port();
    let app = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default(
            "http.bind",
            format!("127.0.0.1:{port}"),
        ))
        .merge(Serialized::default(
            "tokens.issuer",
            format!("http://127.0.0.1:{port}"),
        ))
        .merge(Serialized::default(
            "clients",
            json!([
                {"id": "web", "public": true, "first_party": true,
                 "redirect_uris": ["http://127.0.0.1/cb"],
                 // Exactly as the app will send it: post-logout URIs have no port rule.
                 "post_logout_redirect_uris": [format!("http://127.0.0.1:{callback_port}/bye")],
                 "scopes": ["openid", "profile", "offline_access"]},
                {"id": "cli", "public": true, "first_party": true,
                 "redirect_uris": ["http://127.0.0.1/callback"], "scopes": ["openid"]},
            ]),
        ))
    })
    .await?;
    app.create_user("alice", &[]).await;
    Some(app)
}

pub(crate) async fn run(program: &'static str, args: Vec<String>) -> (bool, String) {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(program)
            .args(&args)
            .current_dir(DIR)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

async fn authlib_signs_in_over_plain_http(b: Backend) {
    let python = Command::new("python3")
        .args(["-c", "import authlib, requests"])
        .status()
        .is_ok_and(|s| s.success());
    if !available(python, "python3 with Authlib and requests") {
        return;
    }
    let Some(app) = provider(b, free_port()).await else {
        return;
    };
    let args = vec![
        format!("{DIR}/oidc_rp.py"),
        app.base.clone(),
        "alice".into(),
        PASSWORD.into(),
    ];
    let (ok, text) = run("python3", args).await;
    assert!(ok && text.contains("\"ok\": true"), "{text}");
}

async fn openid_client_signs_in_through_chromium(b: Backend) {
    let modules = std::path::Path::new(DIR).join("node_modules");
    let ready = std::path::Path::new("/usr/bin/chromium").exists()
        && modules.join("openid-client-6").exists()
        && modules.join("playwright-core").exists();
    if !available(ready, "Debian's chromium and `npm ci` in tests/interop") {
        return;
    }
    let callback_port = free_port();
    let Some(app) = provider(b, callback_port).await else {
        return;
    };
    let args = vec![
        format!("{DIR}/oidc_browser.mjs"),
        app.base.clone(),
        callback_port.to_string(),
        "alice".into(),
        PASSWORD.into(),
    ];
    let (ok, text) = run("node", args).await;
    assert!(ok && text.contains("\"ok\":true"), "{text}");
}
