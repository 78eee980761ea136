//! `GET /userinfo` and the verifier: a battery of forged tokens (RFC 8725, jwt_tool's playbook).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::{eventually, Backend, TestApp};
use crate::on_both;

on_both!(
    tokens_of_our_key_are_read_as_signed,
    revocations_written_by_hand_hold,
    user_changes_written_by_hand_apply,
    userinfo_returns_the_caller,
    forged_algorithms_and_keys_are_refused,
    tampered_signatures_are_refused,
    our_key_with_a_bad_header_is_refused,
    our_key_with_bad_claims_is_refused,
    missing_and_malformed_credentials
);

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// Signs arbitrary header and claims with the server's own active key.
async fn sign_with_ours(app: &TestApp, header: Header, claims: &Value) -> String {
    let key = app.signing_key().await;
    tessera::auth::tokens::sign_jws(&key, &header, claims).unwrap()
}

async fn our_header(app: &TestApp) -> Header {
    let key = app.signing_key().await;
    let mut h = Header::new(key.alg);
    h.typ = Some("at+jwt".into());
    h.kid = Some(key.kid.clone());
    h
}

async fn assert_refused(app: &TestApp, token: &str, what: &str) {
    let r = app.userinfo(token).await;
    assert_eq!(r.status(), 401, "{what} was accepted");
    let www = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        www.starts_with("Bearer") && www.contains(r#"error="invalid_token""#),
        "{what}: {www}"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_token", "{what}");
}

async fn userinfo_returns_the_caller(b: Backend) {
    let Some((app, u)) = TestApp::with_user(b, "alice", &["admin"]).await else {
        return;
    };
    let t = app.login_ok("alice").await;
    let r = app.userinfo(t["access_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["sub"], u.id.to_string());
    assert_eq!(v["username"], "alice");
    assert_eq!(v["roles"], json!(["admin"]));
    // The scheme name is case-insensitive (RFC 7235 §2.1).
    let r = app
        .client
        .get(app.url("/userinfo"))
        .header(
            "authorization",
            format!("bearer {}", t["access_token"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // POST, with the token in a form body (RFC 6750 §2.2; the `oic` package's default): it
    // was refused with 401 as if no token had been sent.
    let access = t["access_token"].as_str().unwrap();
    let post = |body: String, bearer: Option<&str>| {
        let mut req = app
            .client
            .post(app.url("/userinfo"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(b) = bearer {
            req = req.header("authorization", format!("Bearer {b}"));
        }
        req.send()
    };
    let r = post(format!("access_token={access}"), None).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["sub"], u.id.to_string());
    // Both ways at once, or the parameter twice: 400 invalid_request.
    for (body, bearer) in [
        (format!("access_token={access}"), Some(access)),
        (format!("access_token={access}&access_token={access}"), None),
    ] {
        let r = post(body, bearer).await.unwrap();
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], "invalid_request");
    }
    // The header and the body (or the query) at once is the token sent twice: the same 400
    // as two Authorization headers, with its challenge (it had neither the challenge nor the
    // description, and the query beside the header was ignored).
    let twice = [
        app.client
            .post(app.url("/userinfo"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Bearer {access}"))
            .body(format!("access_token={access}")),
        app.client
            .get(app.url(&format!("/userinfo?access_token={access}")))
            .header("authorization", format!("Bearer {access}")),
        app.client
            .post(app.url(&format!("/userinfo?access_token={access}")))
            .header("authorization", format!("Bearer {access}")),
        app.client
            .post(app.url("/userinfo"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("access_token={access}&access_token={access}")),
    ];
    for req in twice {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(
            r.headers()["www-authenticate"],
            r#"Bearer realm="tessera", error="invalid_request""#
        );
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], "invalid_request");
        assert!(
            e["error_description"]
                .as_str()
                .unwrap()
                .contains("more than once"),
            "{e}"
        );
    }
    // An empty parameter is no parameter (RFC 6749 §3.1), in the body as in the query.
    for req in [
        app.client
            .get(app.url("/userinfo?access_token="))
            .header("authorization", format!("Bearer {access}")),
        app.client
            .post(app.url("/userinfo"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Bearer {access}"))
            .body("access_token="),
    ] {
        assert_eq!(req.send().await.unwrap().status(), 200);
    }
    // The query alone carries no token Tessera takes (RFC 6750 §2.3 is not offered): 401
    // with the bare challenge, as with no token.
    let r = app
        .client
        .get(app.url(&format!("/userinfo?access_token={access}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], r#"Bearer realm="tessera""#);
    // A bad token in the body: 401 invalid_token, as in the header.
    let r = post("access_token=not.a.token".into(), None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    // Another body beside the header changes nothing.
    let r = app
        .client
        .post(app.url("/userinfo"))
        .header("authorization", format!("Bearer {access}"))
        .json(&json!({"access_token": "ignored"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// One logged-in user, the real access token and its claims: the material every forgery
/// starts from.
struct Forgery {
    app: TestApp,
    real: String,
    claims: Value,
    now: i64,
    kid: String,
}

impl Forgery {
    async fn new(b: Backend) -> Option<Self> {
        let app = TestApp::spawn(b).await?;
        app.create_user("alice", &["user"]).await;
        let real = app.login_ok("alice").await["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        let claims = TestApp::claims(&real);
        let now = claims["iat"].as_i64().unwrap();
        let kid = our_header(&app).await.kid.unwrap();
        // Control: the forging helper itself produces an accepted token, so every refusal is
        // due to the one thing each case changes.
        let control = sign_with_ours(&app, our_header(&app).await, &claims).await;
        assert_eq!(
            app.userinfo(&control).await.status(),
            200,
            "control token refused"
        );
        Some(Self {
            app,
            real,
            claims,
            now,
            kid,
        })
    }

    /// The real token's three segments.
    fn parts(&self) -> Vec<&str> {
        self.real.split('.').collect()
    }

    /// The real claims with `k` set to `v`.
    fn with(&self, k: &str, v: Value) -> Value {
        let mut c = self.claims.clone();
        c[k] = v;
        c
    }

    /// The real claims without `k`.
    fn without(&self, k: &str) -> Value {
        let mut c = self.claims.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    }

    /// The real token still works: no forgery changed any state.
    async fn real_still_works(&self) {
        assert_eq!(self.app.userinfo(&self.real).await.status(), 200);
    }
}

/// `none`, HMAC with our public key, foreign keys, embedded keys and algorithm swaps.
async fn forged_algorithms_and_keys_are_refused(b: Backend) {
    let Some(f) = Forgery::new(b).await else {
        return;
    };
    let (app, claims, kid) = (&f.app, &f.claims, &f.kid);
    let parts = f.parts();
    // alg none, in several spellings.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = json!({"alg": alg, "typ": "at+jwt", "kid": kid});
        assert_refused(app, &format!("{}.{}.", b64(&h), parts[1]), alg).await;
    }
    // HS256 signed with the public key material as the HMAC secret (key confusion).
    let jwks = app
        .get("/.well-known/jwks.json")
        .await
        .text()
        .await
        .unwrap();
    let jwk: Value = serde_json::from_str::<Value>(&jwks).unwrap()["keys"][0].clone();
    for secret in [
        jwks.as_bytes().to_vec(),
        jwk.to_string().into_bytes(),
        jwk["x"].as_str().unwrap().as_bytes().to_vec(),
    ] {
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(kid.clone());
        let tok = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(&secret)).unwrap();
        assert_refused(app, &tok, "HS256 with the public key").await;
    }
    // A foreign key claiming our kid, also with the foreign key embedded (jwk header) and a jku.
    let foreign = tessera::auth::keys::generate(tessera::auth::keys::KeyAlg::Es256, 2048).unwrap();
    let mut h = our_header(app).await;
    let tok = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_der(&foreign.pkcs8)).unwrap();
    assert_refused(app, &tok, "foreign key with our kid").await;
    h.jwk = Some(serde_json::from_value(foreign.jwk.clone()).unwrap());
    h.jku = Some("http://127.0.0.1:9/jwks.json".into());
    let tok = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_der(&foreign.pkcs8)).unwrap();
    assert_refused(app, &tok, "embedded jwk / jku").await;
    let mut h2 = our_header(app).await;
    h2.kid = Some(foreign.kid.clone());
    let tok =
        jsonwebtoken::encode(&h2, &claims, &EncodingKey::from_ec_der(&foreign.pkcs8)).unwrap();
    assert_refused(app, &tok, "unknown kid").await;
    // An EdDSA key with our kid, and an algorithm swap in the header.
    let ed = tessera::auth::keys::generate(tessera::auth::keys::KeyAlg::EdDsa, 2048).unwrap();
    let mut h3 = Header::new(Algorithm::EdDSA);
    h3.typ = Some("at+jwt".into());
    h3.kid = Some(kid.clone());
    assert_refused(
        app,
        &jsonwebtoken::encode(&h3, &claims, &EncodingKey::from_ed_der(&ed.pkcs8)).unwrap(),
        "alg swap to EdDSA",
    )
    .await;

    f.real_still_works().await;
}

/// Edited payloads, stripped, truncated, extended and all-zero signatures.
async fn tampered_signatures_are_refused(b: Backend) {
    let Some(f) = Forgery::new(b).await else {
        return;
    };
    let app = &f.app;
    let parts = f.parts();
    let with = |k: &str, v: Value| f.with(k, v);
    // Edited payload with the original signature; stripped and truncated signatures.
    let edited = b64(&with("roles", json!(["admin"])));
    assert_refused(
        app,
        &format!("{}.{}.{}", parts[0], edited, parts[2]),
        "edited payload",
    )
    .await;
    assert_refused(
        app,
        &format!("{}.{}.", parts[0], parts[1]),
        "stripped signature",
    )
    .await;
    assert_refused(app, &format!("{}.{}", parts[0], parts[1]), "two segments").await;
    // "Psychic signatures" (CVE-2022-21449): an all-zero ECDSA signature, r = s = 0.
    let zeros = URL_SAFE_NO_PAD.encode([0u8; 64]);
    let zero_sig = format!("{}.{}.{zeros}", parts[0], parts[1]);
    assert_refused(app, &zero_sig, "r = s = 0").await;
    let zero_edited = format!(
        "{}.{}.{zeros}",
        parts[0],
        b64(&with("roles", json!(["admin"])))
    );
    assert_refused(app, &zero_edited, "r = s = 0, edited payload").await;
    assert_refused(
        app,
        &format!("{}.{}.{}", parts[0], parts[1], &parts[2][..20]),
        "truncated signature",
    )
    .await;
    assert_refused(
        app,
        &format!("{}.{}.{}x", parts[0], parts[1], parts[2]),
        "extended signature",
    )
    .await;
    // The real token with one byte outside RFC 6750's b64token (at the start, in the middle,
    // at the end): refused before any verification, and the real one is not cached under it.
    for bad in ['$', '%', '!', '*', ',', '"', '@'] {
        for at in [0, f.real.len() / 2, f.real.len()] {
            let mut t = f.real.clone();
            t.insert(at, bad);
            assert_refused(app, &t, &format!("{bad:?} at {at}")).await;
        }
    }

    f.real_still_works().await;
}

/// Signed by our own key, but the header breaks RFC 9068 (typ, crit, kid).
async fn our_key_with_a_bad_header_is_refused(b: Backend) {
    let Some(f) = Forgery::new(b).await else {
        return;
    };
    let (app, claims) = (&f.app, &f.claims);
    // Signed by our own key, but the claims or header are wrong.
    let mut h = our_header(app).await;
    h.typ = Some("JWT".into());
    assert_refused(app, &sign_with_ours(app, h, claims).await, "typ JWT").await;
    let mut h = our_header(app).await;
    h.typ = None;
    assert_refused(app, &sign_with_ours(app, h, claims).await, "no typ").await;
    let mut h = our_header(app).await;
    h.crit = Some(vec!["exp".into()]);
    assert_refused(app, &sign_with_ours(app, h, claims).await, "crit").await;
    let mut h = our_header(app).await;
    h.kid = None;
    assert_refused(app, &sign_with_ours(app, h, claims).await, "no kid").await;
    f.real_still_works().await;
}

/// Signed by our own key, but the claims are wrong, missing or mistyped.
async fn our_key_with_bad_claims_is_refused(b: Backend) {
    let Some(f) = Forgery::new(b).await else {
        return;
    };
    let (app, claims, now) = (&f.app, &f.claims, f.now);
    let with = |k: &str, v: Value| f.with(k, v);
    let without = |k: &str| f.without(k);
    let cases = [
        ("wrong iss", with("iss", json!("https://evil.example"))),
        ("wrong aud", with("aud", json!("someone-else"))),
        ("aud array without ours", with("aud", json!(["a", "b"]))),
        ("expired", with("exp", json!(now - 60))),
        ("not yet valid", with("nbf", json!(now + 120))),
        ("issued in the future", with("iat", json!(now + 120))),
        ("exp as string", with("exp", json!((now + 600).to_string()))),
        ("iat as string", with("iat", json!(now.to_string()))),
        ("nbf as float", with("nbf", json!(now as f64 + 0.5))),
        (
            "sub not ours",
            with("sub", json!(uuid::Uuid::now_v7().to_string())),
        ),
        ("sub as number", with("sub", json!(42))),
        (
            "session unknown",
            with("sid", json!(uuid::Uuid::now_v7().to_string())),
        ),
        ("no jti", without("jti")),
        ("no sub", without("sub")),
        ("no exp", without("exp")),
        ("no iss", without("iss")),
        ("no aud", without("aud")),
        ("no sid", without("sid")),
    ];
    for (what, c) in cases {
        assert_refused(
            app,
            &sign_with_ours(app, our_header(app).await, &c).await,
            what,
        )
        .await;
    }
    // An aud array that contains ours is fine (RFC 7519 §4.1.3).
    let ok = sign_with_ours(
        app,
        our_header(app).await,
        &with("aud", json!(["other", "tessera"])),
    )
    .await;
    assert_eq!(app.userinfo(&ok).await.status(), 200);
    // Duplicate JSON members in the payload, signed by our key.
    let dup_payload = format!(
        r#"{{"iss":"http://127.0.0.1:8080","sub":{},"aud":"tessera","exp":{},"exp":{},"iat":{now},"nbf":{now},"jti":"x","sid":{}}}"#,
        claims["sub"],
        now + 600,
        now - 600,
        claims["sid"]
    );
    let h = b64(&serde_json::to_value(our_header(app).await).unwrap());
    let signing_input = format!("{h}.{}", URL_SAFE_NO_PAD.encode(dup_payload));
    let key = app.signing_key().await;
    let sig = key.sign_bytes(signing_input.as_bytes()).unwrap();
    assert_refused(app, &format!("{signing_input}.{sig}"), "duplicate exp").await;

    f.real_still_works().await;
}

async fn missing_and_malformed_credentials(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let r = app.client.get(app.url("/userinfo")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    // Another scheme is no bearer token at all: 401 with a bare challenge (RFC 6750 §3.1).
    for auth in ["Basic YWxpY2U6cHc=", "Token abc"] {
        let r = app
            .client
            .get(app.url("/userinfo"))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{auth}");
        assert_eq!(r.headers()["www-authenticate"], r#"Bearer realm="tessera""#);
    }
    for auth in ["Bearer", "Bearer ", "Bearer a.b.c", "Bearer ey J"] {
        let r = app
            .client
            .get(app.url("/userinfo"))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{auth}");
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token"),
            "{auth}"
        );
    }
    // Two Authorization headers, even with a good token in each, are one request that repeats
    // a parameter (RFC 6750 §3.1 `invalid_request`): 400, as tessera-verify answers it.
    app.create_user("alice", &[]).await;
    let good = format!(
        "Bearer {}",
        app.login_ok("alice").await["access_token"]
            .as_str()
            .unwrap()
    );
    for second in [good.as_str(), "Basic YWxpY2U6cHc="] {
        let r = app
            .client
            .get(app.url("/userinfo"))
            .header("authorization", good.as_str())
            .header("authorization", second)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{second}");
        assert_eq!(
            r.headers()["www-authenticate"],
            r#"Bearer realm="tessera", error="invalid_request""#
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{body}");
    }
    let r = app
        .client
        .get(app.url("/userinfo"))
        .header("authorization", good.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let huge = format!("Bearer {}", "a".repeat(9000));
    let r = app
        .client
        .get(app.url("/userinfo"))
        .header("authorization", huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Revocations written behind the server's back (an operator's SQL, another process) are
/// enforced: on Postgres through the in-memory state, which answers verifications without a
/// query and learns of every write by NOTIFY; on SQLite by reading the database every time.
/// A server whose in-memory revocation state is trusted (answering checks from memory), with
/// three sessions of alice and one of bob, each token accepted.
async fn trusted_with_sessions(b: Backend) -> Option<(TestApp, [String; 4])> {
    let app = TestApp::spawn(b).await?;
    app.create_user("alice", &[]).await;
    app.create_user("bob", &[]).await;
    let mut tokens = Vec::new();
    for who in ["alice", "alice", "alice", "bob"] {
        let t = app.login_ok(who).await;
        tokens.push(t["access_token"].as_str().unwrap().to_string());
    }
    // Once the first sync is done, checks are answered from memory.
    eventually(
        5,
        "the in-memory revocation state becomes trusted",
        || async { app.auth.readiness().await.revocation_state_trusted },
    )
    .await;
    for t in &tokens {
        assert_eq!(app.userinfo(t).await.status(), 200);
    }
    Some((app, tokens.try_into().unwrap()))
}

/// A SQL literal for a UUID claim of `token`: SQLite stores UUIDs as 16-byte blobs.
fn uuid_literal(b: Backend, token: &str, claim: &str) -> String {
    let c = TestApp::claims(token);
    let id = uuid::Uuid::parse_str(c[claim].as_str().unwrap()).unwrap();
    match b {
        Backend::Postgres => format!("'{id}'"),
        Backend::Sqlite => format!("X'{}'", id.simple()),
    }
}

/// Revocations written by hand (another process, an operator's SQL) reach the in-memory
/// state: a revoked session, a denylisted jti, a deleted session. They still hold after the
/// next polls, and reading them changed no row.
async fn revocations_written_by_hand_hold(b: Backend) {
    let Some((app, [first, second, third, bobs])) = trusted_with_sessions(b).await else {
        return;
    };
    let sid = uuid_literal(b, &first, "sid");
    app.exec_sql(format!(
        "UPDATE sessions SET revoked_at = 1, revoked_reason = 'sql' WHERE id = {sid}"
    ))
    .await;
    app.userinfo_becomes(&first, 401).await;
    let jti = TestApp::claims(&second)["jti"]
        .as_str()
        .unwrap()
        .to_string();
    let sub = uuid_literal(b, &second, "sub");
    app.exec_sql(format!(
        "INSERT INTO revoked_tokens (jti, user_id, session_id, expires_at, revoked_at, reason)
         VALUES ('{jti}', {sub}, NULL, 9999999999999, 1, 'sql')"
    ))
    .await;
    app.userinfo_becomes(&second, 401).await;
    // The other session of the same user is untouched.
    assert_eq!(app.userinfo(&third).await.status(), 200);
    // A session row deleted by hand ends its tokens too (it was known to be live).
    let bobs_sid = uuid_literal(b, &bobs, "sid");
    app.exec_sql(format!("DELETE FROM sessions WHERE id = {bobs_sid}"))
        .await;
    app.userinfo_becomes(&bobs, 401).await;
    // Past the next polls (max_lag is 2 s), whatever they prune, the revocations still hold,
    // even with the odd timestamps written by hand.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    for t in [&first, &second, &bobs] {
        assert_eq!(app.userinfo(t).await.status(), 401);
    }
    assert_eq!(app.userinfo(&third).await.status(), 200);
    assert!(
        app.auth.readiness().await.revocation_state_trusted,
        "the state stays trusted while the database is reachable"
    );
    // Reading the state wrote nothing: the rows are exactly as written by hand.
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM revoked_tokens WHERE jti = $1", &jti)
            .await,
        1
    );
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE u.username = $1 AND s.revoked_at IS NOT NULL",
            "alice"
        )
        .await,
        1
    );
}

/// User rows changed by hand reach the in-memory state: disabled, re-enabled (no cut-off was
/// written, so earlier tokens work again), and a role granted.
async fn user_changes_written_by_hand_apply(b: Backend) {
    let Some((app, [_, _, third, bobs])) = trusted_with_sessions(b).await else {
        return;
    };
    // Disabled by hand: alice's tokens stop working; bob is not affected.
    app.exec_sql("UPDATE users SET disabled = TRUE WHERE username = 'alice'".into())
        .await;
    app.userinfo_becomes(&third, 401).await;
    assert_eq!(app.userinfo(&bobs).await.status(), 200);
    // Re-enabled by hand: the user row is read again, and the token is accepted again.
    app.exec_sql("UPDATE users SET disabled = FALSE WHERE username = 'alice'".into())
        .await;
    app.userinfo_becomes(&third, 200).await;
    // A role granted by hand shows in /userinfo.
    app.exec_sql(r#"UPDATE users SET roles = '["auditor"]' WHERE username = 'bob'"#.into())
        .await;
    eventually(3, "the role granted by hand shows in /userinfo", || async {
        let v: Value = app.userinfo(&bobs).await.json().await.unwrap();
        v["roles"] == json!(["auditor"])
    })
    .await;
    assert_eq!(
        app.scalar_i64(
            "SELECT tokens_not_before FROM users WHERE username = $1",
            "alice"
        )
        .await,
        0
    );
}

/// Tokens signed with Tessera's key in shapes it does not issue itself (no `client_id`, `aud`
/// as an array) are read as they always were: the claims' wire type keeps `aud` in the form
/// signed, and Tessera's endpoints read `client_id` as optional (a verifier requires it).
async fn tokens_of_our_key_are_read_as_signed(b: Backend) {
    let Some((app, alice)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    let t = app.login_ok("alice").await;
    let real = TestApp::claims(t["access_token"].as_str().unwrap());
    let header = our_header(&app).await;
    let mut no_client = real.clone();
    no_client.as_object_mut().unwrap().remove("client_id");
    let token = sign_with_ours(&app, header.clone(), &no_client).await;
    let r = app.userinfo(&token).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["sub"], alice.id.to_string());
    let i = app.introspect(&token).await;
    assert_eq!(i["active"], true);
    assert!(
        i["client_id"].is_null() && i.get("client_id").is_some(),
        "{i}"
    );
    for aud in [
        json!(["tessera"]),
        json!(["tessera", "https://other.example"]),
    ] {
        let mut many = real.clone();
        many["aud"] = aud.clone();
        let token = sign_with_ours(&app, header.clone(), &many).await;
        let i = app.introspect(&token).await;
        assert_eq!(i["active"], true, "{aud}");
        assert_eq!(i["aud"], aud);
    }
}
