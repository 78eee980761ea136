//! Key lifecycle (invariant 3): rotation with zero failed requests, old kids verifying until
//! their tokens expire, new kids published before they sign, imports of every algorithm, and
//! replicas on one database picking up changes without a restart.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use figment::providers::Serialized;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp};
use crate::on_both;
use tessera::auth::keys::KeyMaterial;

on_both!(
    rotation_fails_no_request,
    import_every_algorithm,
    import_refuses_what_is_not_a_key,
    forgeries_signed_with_an_imported_key,
    duplicate_members_are_refused,
    replicas_pick_up_keys_and_revocations,
);

async fn jwks_kids(app: &TestApp) -> HashSet<String> {
    app.jwks().await["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

fn cli(app: &TestApp, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env("DATABASE_URL", app.db.url())
        .env("TESSERA__KEYS__MASTER_KEY", &app.master_key)
        .env("TESSERA__KEYS__PUBLISH_AHEAD", "1s")
        .env("TESSERA__KEYS__JWKS_MAX_AGE", "1s")
        .env("TESSERA__LOG__LEVEL", "warn")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

async fn rotation_fails_no_request(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("keys.publish_ahead", "1s"))
            .merge(Serialized::default("keys.jwks_max_age", "1s"))
    })
    .await
    else {
        return;
    };
    app.create_user("alice", &[]).await;
    let first = app.login_ok("alice").await;
    let old_token = first["access_token"].as_str().unwrap().to_string();
    let old_kid = kid_of(&old_token);
    assert_eq!(jwks_kids(&app).await, HashSet::from([old_kid.clone()]));

    // Rotate from the CLI, as an operator would, while the server runs.
    let (ok, out) = cli(&app, &["keys", "rotate"]);
    assert!(ok, "{out}");

    // Through the change-over: every login and every verification succeeds; every token's kid
    // was already in the JWKS fetched before it was issued; the old token keeps verifying.
    let started = Instant::now();
    let mut new_kid_seen_in_jwks_at = None;
    let mut new_kid_signed_at = None;
    let mut requests = 0;
    while started.elapsed() < Duration::from_secs(12) {
        let published = jwks_kids(&app).await;
        if published.len() == 2 && new_kid_seen_in_jwks_at.is_none() {
            new_kid_seen_in_jwks_at = Some(started.elapsed());
        }
        let t = app.login_ok("alice").await;
        let token = t["access_token"].as_str().unwrap();
        let kid = kid_of(token);
        assert!(
            published.contains(&kid),
            "token signed by {kid} before the JWKS published it"
        );
        if kid != old_kid && new_kid_signed_at.is_none() {
            new_kid_signed_at = Some(started.elapsed());
        }
        assert_eq!(app.userinfo(token).await.status(), 200);
        assert_eq!(
            app.userinfo(&old_token).await.status(),
            200,
            "old-kid token stopped verifying"
        );
        let r = app.refresh(t["refresh_token"].as_str().unwrap()).await;
        assert_eq!(r.status(), 200);
        requests += 4;
        if new_kid_signed_at.is_some_and(|t| started.elapsed() > t + Duration::from_secs(1)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (seen, signed) = (
        new_kid_seen_in_jwks_at.unwrap(),
        new_kid_signed_at.expect("the new key never started signing"),
    );
    assert!(
        signed > seen,
        "published at {seen:?}, signing at {signed:?}"
    );
    // Logins are argon2-bound: under the full suite's load the change-over sees fewer of them.
    assert!(requests >= 12, "{requests}");
    // Both keys are published; the retired one until its last token expires.
    let kids = jwks_kids(&app).await;
    assert_eq!(kids.len(), 2);
    assert!(kids.contains(&old_kid));
    let (ok, out) = cli(&app, &["keys", "list"]);
    assert!(
        ok && out.contains("retired") && out.contains("active"),
        "{out}"
    );
}

/// Writes `m`'s private key as a PKCS#8 PEM file.
fn pem_file(m: &KeyMaterial) -> tempfile_path::Path {
    let path =
        std::env::temp_dir().join(format!("tessera-key-{}.pem", uuid::Uuid::new_v4().simple()));
    std::fs::write(
        &path,
        pem::encode(&pem::Pem::new("PRIVATE KEY", m.pkcs8.to_vec())),
    )
    .unwrap();
    tempfile_path::Path(path)
}

mod tempfile_path {
    /// A file removed when dropped.
    pub struct Path(pub std::path::PathBuf);
    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    impl Path {
        pub fn as_str(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }
}

/// Waits until the server signs with `kid` (the CLI changed the database behind its back).
async fn login_until_kid(app: &TestApp, kid: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = app.login_ok("alice").await;
        let token = t["access_token"].as_str().unwrap().to_string();
        if kid_of(&token) == kid {
            return token;
        }
        assert!(Instant::now() < deadline, "server never picked up {kid}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn import_every_algorithm(b: Backend) {
    use tessera::auth::keys::{generate, KeyAlg};
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    for (alg, bits) in [
        (KeyAlg::EdDsa, 2048),
        (KeyAlg::Rs256, 3072),
        (KeyAlg::Es256, 2048),
        (KeyAlg::Rs256, 2048),
    ] {
        let m = generate(alg, bits).unwrap();
        let file = pem_file(&m);
        let kid = format!("imported-{}-{bits}", alg.name());
        let (ok, out) = cli(
            &app,
            &[
                "keys",
                "import",
                "--pem",
                file.as_str(),
                "--kid",
                &kid,
                "--activate-now",
            ],
        );
        assert!(ok, "{out}");
        let token = login_until_kid(&app, &kid).await;
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(format!("{:?}", header.alg), alg.name());
        assert_eq!(app.userinfo(&token).await.status(), 200);
        // The published JWK is the public half of the key we imported.
        let v = app.jwks().await;
        let jwk = v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .unwrap()
            .clone();
        for member in ["x", "y", "n", "e", "crv", "kty"] {
            assert_eq!(jwk.get(member), m.jwk.get(member), "{member} of {kid}");
        }
        assert!(jwk.get("d").is_none());
        // The same kid twice is refused.
        let (ok, _) = cli(
            &app,
            &["keys", "import", "--pem", file.as_str(), "--kid", &kid],
        );
        assert!(!ok, "a duplicate kid must be refused");
    }
}

/// Not PKCS#8, or not a key at all: refused, and nothing changes.
async fn import_refuses_what_is_not_a_key(b: Backend) {
    use tessera::auth::keys::{generate, KeyAlg};
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let ec = generate(KeyAlg::Es256, 2048).unwrap();
    let path = std::env::temp_dir().join(format!(
        "tessera-sec1-{}.pem",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(
        &path,
        pem::encode(&pem::Pem::new("EC PRIVATE KEY", ec.pkcs8.to_vec())),
    )
    .unwrap();
    let (ok, out) = cli(&app, &["keys", "import", "--pem", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert!(!ok && out.contains("PKCS#8"), "{out}");
    let keys_before = app
        .scalar_i64("SELECT COUNT(*) FROM signing_keys WHERE $1 = $1", "")
        .await;
    let (ok, _) = cli(&app, &["keys", "import", "--pem", "/nonexistent.pem"]);
    assert!(!ok);
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM signing_keys WHERE $1 = $1", "")
            .await,
        keys_before
    );
}

/// A server whose signing key is one we hold (imported as `mine` and active at once), and a
/// real token it signed.
async fn with_imported_key(b: Backend) -> Option<(TestApp, KeyMaterial, String)> {
    use tessera::auth::keys::{generate, KeyAlg};
    let app = TestApp::spawn(b).await?;
    app.create_user("alice", &[]).await;
    let m = generate(KeyAlg::Es256, 2048).unwrap();
    let file = pem_file(&m);
    let (ok, out) = cli(
        &app,
        &[
            "keys",
            "import",
            "--pem",
            file.as_str(),
            "--kid",
            "mine",
            "--activate-now",
        ],
    );
    assert!(ok, "{out}");
    let real = login_until_kid(&app, "mine").await;
    Some((app, m, real))
}

/// The access-token header for the imported key.
fn mine_header() -> Header {
    let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("mine".into());
    header
}

/// Signed with a key the server trusts, claims of the wrong JSON type are still refused.
async fn forgeries_signed_with_an_imported_key(b: Backend) {
    let Some((app, m, real)) = with_imported_key(b).await else {
        return;
    };
    let claims = TestApp::claims(&real);
    let now = claims["iat"].as_i64().unwrap();
    // We hold the private key: sign whatever we like.
    let key = EncodingKey::from_ec_der(&m.pkcs8);
    let header = mine_header();
    let sign = |c: &Value| jsonwebtoken::encode(&header, c, &key).unwrap();
    assert_eq!(
        app.userinfo(&sign(&claims)).await.status(),
        200,
        "control token refused"
    );
    let with = |k: &str, v: Value| {
        let mut c = claims.clone();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = claims.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let cases = [
        ("exp as string", with("exp", json!((now + 600).to_string()))),
        ("exp as float", with("exp", json!(now as f64 + 600.5))),
        ("exp as bool", with("exp", json!(true))),
        ("nbf as string", with("nbf", json!(now.to_string()))),
        ("nbf as null", with("nbf", Value::Null)),
        ("iat as string", with("iat", json!(now.to_string()))),
        ("iat as array", with("iat", json!([now]))),
        ("missing jti", without("jti")),
        ("empty jti", with("jti", json!(""))),
        ("missing sub", without("sub")),
        (
            "aud array without ours",
            with("aud", json!(["billing", "reports"])),
        ),
        ("aud empty array", with("aud", json!([]))),
        ("aud as number", with("aud", json!(7))),
    ];
    for (what, c) in cases {
        assert_eq!(
            app.userinfo(&sign(&c)).await.status(),
            401,
            "{what} was accepted"
        );
    }
}

/// Duplicate members, in the payload and in the header, signed with the imported key.
async fn duplicate_members_are_refused(b: Backend) {
    let Some((app, m, real)) = with_imported_key(b).await else {
        return;
    };
    let claims = TestApp::claims(&real);
    let key = EncodingKey::from_ec_der(&m.pkcs8);
    let header = mine_header();
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
    let body = serde_json::to_string(&claims).unwrap();
    let dup_payload = format!(
        "{},\"sub\":\"{}\"}}",
        &body[..body.len() - 1],
        uuid::Uuid::now_v7()
    );
    let dup_header = r#"{"typ":"at+jwt","alg":"ES256","kid":"mine","kid":"other"}"#;
    for (what, h, p) in [
        ("duplicate sub", h.clone(), dup_payload),
        (
            "duplicate kid",
            URL_SAFE_NO_PAD.encode(dup_header),
            body.clone(),
        ),
    ] {
        let input = format!("{h}.{}", URL_SAFE_NO_PAD.encode(p));
        let sig =
            jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::ES256)
                .unwrap();
        assert_eq!(
            app.userinfo(&format!("{input}.{sig}")).await.status(),
            401,
            "{what} was accepted"
        );
    }
}

async fn replicas_pick_up_keys_and_revocations(b: Backend) {
    use tessera::auth::keys::{generate, Activation, KeyAlg};
    let Some(a) = TestApp::spawn(b).await else {
        return;
    };
    let replica = a.replica(|f| f).await;
    a.create_user("alice", &[]).await;
    let t = replica.login_ok("alice").await;
    let token = t["access_token"].as_str().unwrap();
    assert_eq!(a.userinfo(token).await.status(), 200);
    // A key added through replica A appears on B without a restart: at once with Postgres
    // NOTIFY, within the poll interval with SQLite.
    let m = generate(KeyAlg::EdDsa, 2048).unwrap();
    let kid = a
        .auth
        .add_key(
            &m,
            Activation::Now,
            "imported",
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    while !jwks_kids(&replica).await.contains(&kid) {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "replica never saw the new key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if b == Backend::Postgres {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "NOTIFY should propagate at once: {:?}",
            started.elapsed()
        );
    }
    // Tokens signed on one replica verify on the other, old and new kid alike.
    let t2 = a.login_ok("alice").await;
    assert_eq!(kid_of(t2["access_token"].as_str().unwrap()), kid);
    assert_eq!(
        replica
            .userinfo(t2["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    assert_eq!(replica.userinfo(token).await.status(), 200);
    // A logout on one replica is enforced by the other: at once with SQLite (which reads the
    // database), within milliseconds with Postgres (NOTIFY to the in-memory state).
    let r = a.post_bearer("/logout", token).await;
    assert_eq!(r.status(), 204);
    replica.userinfo_becomes(token, 401).await;
    // A refresh family rotated on one replica continues on the other.
    let r: Value = a
        .refresh(t["refresh_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["error"], "invalid_grant",
        "the session was revoked by the logout"
    );
    let t3 = a.login_ok("alice").await;
    let next: Value = replica
        .refresh(t3["refresh_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        a.refresh(next["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
}
