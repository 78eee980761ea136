//! Tokens verified by independent JOSE implementations (PyJWT and npm `jose`) against the live
//! JWKS, for every algorithm, across a key rotation; and an OAuth client library
//! (`openid-client`) using discovery, both grants, introspection and revocation.

use std::process::Command;

use serde_json::Value;
use tessera::auth::keys::{generate, Activation, KeyAlg};

use crate::helpers::{Backend, TestApp};
use crate::on_both;

on_both!(
    independent_verifiers_accept_tokens_across_rotation,
    an_oauth_client_library_uses_every_endpoint,
);

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");

/// Whether both verifiers can run here; in CI their absence is a failure, not a skip.
fn verifiers_available() -> bool {
    let py = Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    let modules = std::path::Path::new(DIR).join("node_modules");
    let node = modules.join("jose").exists() && modules.join("openid-client").exists();
    if !(py && node) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs PyJWT (pip install 'pyjwt[crypto]') and jose (npm ci in tests/interop)"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "*** interop test SKIPPED: needs PyJWT and `npm ci` in tests/interop ***"
        );
    }
    py && node
}

/// Runs one verifier off the runtime (it calls back into the server for the JWKS).
async fn verify(verifier: &'static str, app: &TestApp, token: &str) -> (bool, String) {
    let (base, token) = (app.base.clone(), token.to_string());
    tokio::task::spawn_blocking(move || {
        let (prog, script) = match verifier {
            "pyjwt" => ("python3", format!("{DIR}/verify_pyjwt.py")),
            _ => ("node", format!("{DIR}/verify_jose.mjs")),
        };
        let out = Command::new(prog)
            .args([&script, &base, &token, "http://127.0.0.1:8080", "tessera"])
            .current_dir(DIR)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    })
    .await
    .unwrap()
}

async fn independent_verifiers_accept_tokens_across_rotation(b: Backend) {
    if !verifiers_available() {
        return;
    }
    for alg in [KeyAlg::Es256, KeyAlg::EdDsa, KeyAlg::Rs256] {
        let Some(app) = TestApp::spawn_with(b, |f| {
            f.merge(figment::providers::Serialized::default(
                "keys.algorithm",
                alg.name(),
            ))
        })
        .await
        else {
            return;
        };
        let user = app.create_user("alice", &["admin"]).await;
        let before = app.login_ok("alice").await["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        // Rotate to a fresh key of the same algorithm; the old one is retired but published.
        let m = generate(alg, 2048).unwrap();
        app.auth
            .add_key(
                &m,
                Activation::Now,
                "imported",
                &tessera::auth::Caller::default(),
            )
            .await
            .unwrap();
        let after = app.login_ok("alice").await["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        let kid = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
        assert_ne!(
            kid(&before),
            kid(&after),
            "the rotation did not change the signing key"
        );
        for verifier in ["pyjwt", "jose"] {
            for token in [&before, &after] {
                let (ok, out) = verify(verifier, &app, token).await;
                assert!(ok, "{verifier} rejected a {} token: {out}", alg.name());
                let claims: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
                assert_eq!(claims["sub"], user.id.to_string());
            }
            // A tampered token is refused, so the acceptance above is not vacuous.
            let mut parts: Vec<String> = after.split('.').map(str::to_string).collect();
            let payload = TestApp::claims(&after);
            let mut forged = payload.clone();
            forged["roles"] = serde_json::json!(["root"]);
            use base64::Engine;
            parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&forged).unwrap());
            let (ok, _) = verify(verifier, &app, &parts.join(".")).await;
            assert!(!ok, "{verifier} accepted a tampered {} token", alg.name());
        }
    }
}

/// openid-client 5 discovers Tessera (both documents), then, as `client_secret_basic` and as
/// `client_secret_post`, runs the password grant, introspects, refreshes and revokes.
async fn an_oauth_client_library_uses_every_endpoint(b: Backend) {
    if !verifiers_available() {
        return;
    }
    // The issuer must be the URL the client discovers: bind a known port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Some(app) = TestApp::spawn_with(b, |f| {
        use figment::providers::Serialized;
        f.merge(Serialized::default(
            "http.bind",
            format!("127.0.0.1:{port}"),
        ))
        .merge(Serialized::default(
            "tokens.issuer",
            format!("http://127.0.0.1:{port}"),
        ))
    })
    .await
    else {
        return;
    };
    app.create_user("alice", &[]).await;
    let base = app.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args([
                &format!("{DIR}/oauth_client.cjs"),
                &base,
                crate::helpers::CLIENT_ID,
                crate::helpers::CLIENT_SECRET,
                "alice",
                crate::helpers::PASSWORD,
            ])
            .current_dir(DIR)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("ok"), "{text}");
}
