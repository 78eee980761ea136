//! Cookie mode in a real browser: Debian's Chromium, driven by `playwright-core`, runs a small
//! SPA (`tests/interop/spa.html`) from a second loopback origin, and from a third origin that is
//! not in `http.cors_origins`.

use std::process::Command;

use figment::providers::Serialized;
use serde_json::Value;

use crate::helpers::{Backend, TestApp, PASSWORD};
use crate::on_both;

on_both!(a_browser_app_never_sees_the_refresh_token);

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");
const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether Chromium and playwright-core are here; in CI their absence is a failure.
fn browser_available() -> bool {
    let ok = std::path::Path::new(CHROMIUM).exists()
        && std::path::Path::new(DIR)
            .join("node_modules/playwright-core")
            .exists();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs Debian's chromium and `npm ci` in tests/interop (.ci/run installs both)"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "*** browser test SKIPPED: needs {CHROMIUM} and playwright-core in tests/interop ***"
        );
    }
    ok
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn a_browser_app_never_sees_the_refresh_token(b: Backend) {
    if !browser_available() {
        return;
    }
    // The page servers bind ports found free a moment before; another test's connection can
    // take one in between (EADDRINUSE). Then the run starts over on fresh ports.
    let mut tries = 0;
    let (app, user, out) = loop {
        tries += 1;
        let (allowed, other) = (free_port(), free_port());
        let Some(app) = TestApp::spawn_with(b, |f| {
            f.merge(Serialized::default("sessions.refresh_cookie", true))
                .merge(Serialized::default(
                    "http.cors_origins",
                    vec![format!("http://127.0.0.1:{allowed}")],
                ))
        })
        .await
        else {
            return;
        };
        let user = app.create_user("alice", &[]).await;
        let base = app.base.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("node")
                .args(["browser.mjs", &base])
                .args([allowed.to_string(), other.to_string()])
                .args(["alice", PASSWORD])
                .current_dir(DIR)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let port_taken = String::from_utf8_lossy(&out.stderr).contains("EADDRINUSE");
        if out.status.success() || !port_taken || tries == 3 {
            break (app, user, out);
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    let fields = |step: &str| -> Vec<String> {
        serde_json::from_value(v[step]["fields"].clone()).unwrap_or_default()
    };

    // Login: an access token for the page, the refresh token only in an HttpOnly cookie.
    assert_eq!(v["login"]["status"], 200, "{v}");
    assert!(fields("login").contains(&"access_token".to_string()), "{v}");
    assert!(
        !fields("login").contains(&"refresh_token".to_string()),
        "{v}"
    );
    let cookie = &v["cookieAfterLogin"];
    assert_eq!(cookie["httpOnly"], true, "{v}");
    assert_eq!(cookie["secure"], true, "{v}");
    assert_eq!(cookie["sameSite"], "Strict", "{v}");
    assert_eq!(cookie["path"], "/", "{v}");
    // Refresh from the allowed origin rotates the cookie; /userinfo takes the new access token.
    assert_eq!(v["refresh"]["status"], 200, "{v}");
    assert!(
        !fields("refresh").contains(&"refresh_token".to_string()),
        "{v}"
    );
    assert_ne!(v["cookieAfterRefresh"]["value"], cookie["value"], "{v}");
    assert_eq!(v["userinfo"]["status"], 200, "{v}");
    assert_eq!(v["userinfo"]["body"]["username"], "alice", "{v}");
    // The page from another origin learns nothing and changes nothing: the browser sends the
    // cookie (same site), Tessera answers 403 without CORS, and the cookie is not rotated.
    for step in ["otherRefresh", "otherLogout"] {
        assert!(v[step]["status"].is_null(), "{step}: {v}");
        assert!(v[step]["error"].is_string(), "{step}: {v}");
    }
    assert_eq!(
        v["cookieAfterOther"]["value"], v["cookieAfterRefresh"]["value"],
        "{v}"
    );
    assert_eq!(v["refreshAgain"]["status"], 200, "{v}");
    // Logout clears the cookie; refreshing afterwards has nothing to send.
    assert_eq!(v["logout"]["status"], 204, "{v}");
    assert!(v["cookieAfterLogout"].is_null(), "{v}");
    assert_eq!(v["refreshAfterLogout"]["status"], 400, "{v}");
    // No script ever saw the refresh token in document.cookie.
    for (step, obs) in v.as_object().unwrap() {
        if let Some(seen) = obs.get("cookie").and_then(Value::as_str) {
            assert!(!seen.contains("tessera_refresh"), "{step}: {seen}");
        }
    }
    // Stored state: the session the page used belongs to alice and was ended by the logout.
    let sid = v["userinfo"]["body"]["sid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let session = app.store.session(sid).await.unwrap().unwrap();
    assert_eq!(session.user_id, user.id);
    assert_eq!(session.revoked_reason.as_deref(), Some("logout"));
}
