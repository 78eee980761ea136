//! Tokens verified by an independent JOSE implementation (PyJWT), against the live JWKS.

use std::process::Command;

use serde_json::Value;

use crate::helpers::{Backend, TestApp};
use crate::on_both;

on_both!(pyjwt_verifies_issued_tokens);

/// Whether PyJWT can run here; in CI its absence is a failure, not a skip.
fn pyjwt_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "PyJWT is required in CI (pip install 'pyjwt[crypto]')"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "*** PyJWT interop test SKIPPED: pip install 'pyjwt[crypto]' ***"
        );
    }
    ok
}

/// Runs the PyJWT verifier off the runtime (it calls back into the server for the JWKS).
async fn pyjwt(app: &TestApp, token: &str) -> (bool, String) {
    let (base, token) = (app.base.clone(), token.to_string());
    tokio::task::spawn_blocking(move || {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/verify_pyjwt.py");
        let out = Command::new("python3")
            .args([script, &base, &token, "http://127.0.0.1:8080", "tessera"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    })
    .await
    .unwrap()
}

async fn pyjwt_verifies_issued_tokens(b: Backend) {
    if !pyjwt_available() {
        return;
    }
    for alg in ["ES256", "EdDSA", "RS256"] {
        let Some(app) = TestApp::spawn_with(b, |f| {
            f.merge(figment::providers::Serialized::default(
                "keys.algorithm",
                alg,
            ))
        })
        .await
        else {
            return;
        };
        let user = app.create_user("alice", &["admin"]).await;
        let t = app.login_ok("alice").await;
        let token = t["access_token"].as_str().unwrap().to_string();
        let (ok, out) = pyjwt(&app, &token).await;
        assert!(ok, "PyJWT rejected a {alg} token: {out}");
        let claims: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(claims["sub"], user.id.to_string());
        assert_eq!(
            format!("{:?}", jsonwebtoken::decode_header(&token).unwrap().alg),
            alg
        );
        // And PyJWT refuses a tampered one, so the check above is not vacuous.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[1] = parts[1].replacen('e', "f", 1);
        let (ok, _) = pyjwt(&app, &parts.join(".")).await;
        assert!(!ok, "PyJWT accepted a tampered {alg} token");
    }
}
