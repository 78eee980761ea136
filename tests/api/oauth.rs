//! The standards endpoints: `/token` (RFC 6749), `/revoke` (RFC 7009), `/introspect`
//! (RFC 7662), the revocation feed, `/logout/all`, and discovery (RFC 8414).

use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp, CLIENT_ID, CLIENT_SECRET, PASSWORD};
use crate::on_both;

on_both!(
    token_endpoint_grants,
    token_endpoint_confidential_client,
    token_endpoint_refuses_malformed_requests,
    token_endpoint_authenticates_clients,
    token_endpoint_credential_failures_look_alike,
    revoke_refresh_and_access_tokens,
    revoke_only_by_the_owning_client,
    scope_is_granted_per_client_and_resource,
    refresh_keeps_or_narrows_the_grant,
    logout_leaves_other_clients_and_audiences_alone,
    every_endpoint_takes_both_client_auth_methods,
    introspection,
    revocation_feed,
    revocation_feed_pages,
    logout_everywhere,
    discovery_documents,
    basic_auth_raw_and_form_encoded,
);

const CLIENT: Option<(&str, &str)> = Some((CLIENT_ID, CLIENT_SECRET));

/// The password and refresh_token grants for the public first-party client, the same
/// rotation as `/refresh`.
async fn token_endpoint_grants(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let user = app.create_user("alice", &["admin"]).await;
    // Password grant, public first-party client.
    let r = app
        .form(
            "/token",
            &[
                ("grant_type", "password"),
                ("username", "Alice"),
                ("password", PASSWORD),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["pragma"], "no-cache");
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 600);
    let c = TestApp::claims(t["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], user.id.to_string());
    assert_eq!(c["client_id"], "tessera");
    assert_eq!(
        app.userinfo(t["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    // Refresh grant: same rotation as /refresh (the old token is then spent).
    let rt = t["refresh_token"].as_str().unwrap();
    let r = app
        .form(
            "/token",
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let t2: Value = r.json().await.unwrap();
    assert_ne!(t2["refresh_token"], t["refresh_token"]);
    // ... and /refresh continues the same family.
    assert_eq!(
        app.refresh(t2["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
}

/// A confidential client, by HTTP Basic and by form credentials; its refresh tokens work only
/// for it (RFC 6749 §6).
async fn token_endpoint_confidential_client(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.create_user("alice", &["admin"]).await;
    let r = app
        .form(
            "/token",
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
            CLIENT,
        )
        .await;
    assert_eq!(r.status(), 200);
    let conf: Value = r.json().await.unwrap();
    assert_eq!(
        TestApp::claims(conf["access_token"].as_str().unwrap())["client_id"],
        CLIENT_ID
    );
    let r = app
        .form(
            "/token",
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    // RFC 6749 §6: a refresh token works only for the client it was issued to.
    let crt = conf["refresh_token"].as_str().unwrap();
    let r = app
        .form(
            "/token",
            &[("grant_type", "refresh_token"), ("refresh_token", crt)],
            None,
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(
        app.refresh(crt).await.status(),
        401,
        "/refresh is the first-party client"
    );
    let r = app
        .form(
            "/token",
            &[("grant_type", "refresh_token"), ("refresh_token", crt)],
            CLIENT,
        )
        .await;
    assert_eq!(r.status(), 200, "the owning client can still refresh");
}

async fn token_endpoint_refuses_malformed_requests(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.create_user("alice", &[]).await;
    let cases: Vec<TokenCase> = vec![
        (
            "no grant_type",
            vec![("username", "alice"), ("password", PASSWORD)],
            400,
            "invalid_request",
        ),
        (
            "unknown grant",
            vec![("grant_type", "client_credentials")],
            400,
            "unsupported_grant_type",
        ),
        (
            "authorization_code",
            vec![("grant_type", "authorization_code"), ("code", "x")],
            400,
            "unsupported_grant_type",
        ),
        (
            "missing password",
            vec![("grant_type", "password"), ("username", "alice")],
            400,
            "invalid_request",
        ),
        (
            "missing refresh_token",
            vec![("grant_type", "refresh_token")],
            400,
            "invalid_request",
        ),
        (
            "repeated parameter",
            vec![
                ("grant_type", "password"),
                ("username", "alice"),
                ("username", "bob"),
                ("password", PASSWORD),
            ],
            400,
            "invalid_request",
        ),
        (
            "garbage refresh token",
            vec![("grant_type", "refresh_token"), ("refresh_token", "nope")],
            400,
            "invalid_grant",
        ),
    ];
    assert_token_errors(&app, cases).await;
    // JSON is not the token endpoint's format; GET is not its method.
    let r = app
        .post_json(
            "/token",
            &json!({"grant_type": "password", "username": "alice", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        app.client
            .get(app.url("/token"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
    assert_no_session(&app).await;
}

async fn token_endpoint_authenticates_clients(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.create_user("alice", &[]).await;
    let cases: Vec<TokenCase> = vec![
        (
            "unknown client_id",
            vec![
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
                ("client_id", "mallory"),
            ],
            400,
            "invalid_client",
        ),
        (
            "confidential client without secret",
            vec![
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
                ("client_id", CLIENT_ID),
            ],
            400,
            "invalid_client",
        ),
        (
            "wrong client_secret",
            vec![
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
                ("client_id", CLIENT_ID),
                ("client_secret", "wrong-secret-wrong-secret"),
            ],
            400,
            "invalid_client",
        ),
    ];
    assert_token_errors(&app, cases).await;
    // Basic with a wrong secret, malformed Basic, and two methods at once.
    let p = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", PASSWORD),
    ];
    let r = app
        .form("/token", &p, Some((CLIENT_ID, "not-the-secret")))
        .await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    let r = app
        .client
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", "Basic !!!")
        .body("grant_type=password&username=alice&password=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let mut both = p.to_vec();
    both.push(("client_secret", CLIENT_SECRET));
    both.push(("client_id", CLIENT_ID));
    assert_eq!(app.form("/token", &both, CLIENT).await.status(), 400);
    assert_no_session(&app).await;
}

/// Credential failures: one status, one body, for wrong password, unknown and disabled users.
async fn token_endpoint_credential_failures_look_alike(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.create_user("alice", &[]).await;
    app.create_user("bob", &[]).await;
    app.auth
        .set_disabled(
            tessera::auth::UserRef::Name("bob"),
            true,
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    let mut bodies = Vec::new();
    for (u, p) in [
        ("alice", "wrong password"),
        ("nobody", PASSWORD),
        ("bob", PASSWORD),
    ] {
        let r = app
            .form(
                "/token",
                &[("grant_type", "password"), ("username", u), ("password", p)],
                None,
            )
            .await;
        assert_eq!(r.status(), 400);
        bodies.push(r.bytes().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(
        serde_json::from_slice::<Value>(&bodies[0]).unwrap()["error"],
        "invalid_grant"
    );
    assert_no_session(&app).await;
}

/// Sends each case to `/token` and checks its status and error code. None of them uses the
/// `Authorization` header, so a failed client authentication is 400 with no challenge (RFC
/// 6749 §5.2; a 401 would need one, RFC 9110 §15.5.2).
async fn assert_token_errors(app: &TestApp, cases: Vec<TokenCase<'_>>) {
    for (what, params, status, error) in cases {
        let r = app.form("/token", &params, None).await;
        assert_eq!(r.status(), status, "{what}");
        assert!(r.headers().get("www-authenticate").is_none(), "{what}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], error, "{what}");
    }
}

/// What is sent, the form, and the status and `error` expected.
type TokenCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

/// Nothing a refused request did created a session.
async fn assert_no_session(app: &TestApp) {
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM sessions WHERE $1 = $1", "")
            .await,
        0
    );
}

async fn revoke_refresh_and_access_tokens(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.create_user("alice", &[]).await;
    // A refresh token: its session ends, and with it the session's access tokens.
    let t = app.login_ok("alice").await;
    let r = app
        .form(
            "/revoke",
            &[
                ("token", t["refresh_token"].as_str().unwrap()),
                ("token_type_hint", "refresh_token"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    app.assert_pair_refused(&t).await;
    // An access token: its jti is denylisted until it expires; the session lives on. Both
    // tokens are the public first-party client's, so no client authentication is needed.
    let t = app.login_ok("alice").await;
    let access = t["access_token"].as_str().unwrap();
    let r = app.form("/revoke", &[("token", access)], None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.userinfo(access).await.status(), 401);
    let jti = TestApp::claims(access)["jti"].as_str().unwrap().to_string();
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM revoked_tokens WHERE jti = $1", &jti)
            .await,
        1
    );
    assert_eq!(
        app.refresh(t["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    // RFC 7009 §2.2: unknown tokens get 200 as well; a missing token is malformed.
    assert_eq!(
        app.form("/revoke", &[("token", "whatever")], None)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.form(
            "/revoke",
            &[("token", "x"), ("token_type_hint", "unknown_hint")],
            None
        )
        .await
        .status(),
        200
    );
    let r = app.form("/revoke", &[], None).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    // Presented client credentials must be right.
    let r = app
        .form("/revoke", &[("token", access)], Some((CLIENT_ID, "wrong")))
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
}

async fn introspection(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let user = app.create_user("alice", &["admin"]).await;
    let t = app.login_ok("alice").await;
    let access = t["access_token"].as_str().unwrap();
    // Client authentication is required (400, no challenge: the client used no header).
    let r = app.form("/introspect", &[("token", access)], None).await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("www-authenticate").is_none());
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    assert_eq!(
        app.form(
            "/introspect",
            &[("token", access)],
            Some((CLIENT_ID, "nope"))
        )
        .await
        .status(),
        401
    );
    assert_eq!(
        app.form(
            "/introspect",
            &[("token", access)],
            Some(("tessera", CLIENT_SECRET))
        )
        .await
        .status(),
        401
    );
    assert_eq!(app.form("/introspect", &[], CLIENT).await.status(), 400);

    let c = TestApp::claims(access);
    let v = app.introspect(access).await;
    assert_eq!(v["active"], true);
    assert_eq!(v["sub"], user.id.to_string());
    assert_eq!(v["token_type"], "Bearer");
    for k in ["exp", "iat", "jti", "sid", "aud", "iss", "client_id"] {
        assert_eq!(v[k], c[k], "{k}");
    }
    // A refresh token, without spending it.
    let rt = t["refresh_token"].as_str().unwrap();
    let v = app.introspect(rt).await;
    assert_eq!(v["active"], true);
    assert_eq!(v["token_type"], "refresh_token");
    assert_eq!(v["sid"], c["sid"]);
    let next: Value = app.refresh(rt).await.json().await.unwrap();
    // After rotation the old refresh token is inactive, and introspecting it is not "reuse".
    let inactive = |v: &Value| *v == json!({"active": false});
    assert!(inactive(&app.introspect(rt).await));
    let next_rt = next["refresh_token"].as_str().unwrap();
    assert_eq!(app.introspect(next_rt).await["active"], true);
    // Revoked, garbage, and forged tokens: exactly {"active":false}.
    let r = app.post_bearer("/logout", access).await;
    assert_eq!(r.status(), 204);
    for tok in [access, next_rt, "garbage", "a.b.c"] {
        let r = app.form("/introspect", &[("token", tok)], CLIENT).await;
        assert_eq!(r.text().await.unwrap(), r#"{"active":false}"#);
    }
}

async fn revocation_feed(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let user = app.create_user("alice", &[]).await;
    let feed = |since: Option<String>| {
        let app = &app;
        async move {
            let mut req = app
                .client
                .get(app.url("/revocations"))
                .basic_auth(CLIENT_ID, Some(CLIENT_SECRET));
            if let Some(s) = since {
                req = req.query(&[("since", s)]);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    // Closed without client authentication.
    let r = app.get("/revocations").await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let empty = feed(None).await;
    assert_eq!(empty["revoked_tokens"], json!([]));
    assert_eq!(empty["revoked_sessions"], json!([]));
    assert_eq!(empty["not_before"], json!([]));
    let cursor = empty["cursor"].as_str().unwrap().to_string();

    let t = app.login_ok("alice").await;
    let access = t["access_token"].as_str().unwrap();
    let c = TestApp::claims(access);
    let r = app.post_bearer("/logout", access).await;
    assert_eq!(r.status(), 204);
    let v = feed(Some(cursor.clone())).await;
    let tokens = v["revoked_tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["jti"], c["jti"]);
    assert_eq!(tokens[0]["exp"], c["exp"]);
    assert_eq!(
        v["revoked_sessions"].as_array().unwrap()[0]["sid"],
        c["sid"]
    );

    // Logout everywhere publishes the user's cut-off.
    let t2 = app.login_ok("alice").await;
    let r = app
        .post_bearer("/logout/all", t2["access_token"].as_str().unwrap())
        .await;
    assert_eq!(r.status(), 204);
    let v = feed(Some(cursor)).await;
    let nbf = v["not_before"].as_array().unwrap();
    assert_eq!(nbf.len(), 1);
    assert_eq!(nbf[0]["sub"], user.id.to_string());
    assert!(
        nbf[0]["not_before"].as_i64().unwrap()
            <= TestApp::claims(t2["access_token"].as_str().unwrap())["iat"]
                .as_i64()
                .unwrap()
                + 1
    );
    // A cursor from the future sees nothing; a malformed one is a 400.
    let later = (tessera::time::now_ms() + 60_000).to_string();
    let v = feed(Some(later)).await;
    assert_eq!(v["revoked_tokens"], json!([]));
    let r = app
        .client
        .get(app.url("/revocations?since=yesterday"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// The feed in pages: every entry exactly once across the pages of one pass, even when many
/// share a millisecond; no page over the limit; bad limits and cursors are 400s.
async fn revocation_feed_pages(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let users = [
        app.create_user("alice", &[]).await,
        app.create_user("bob", &[]).await,
        app.create_user("carol", &[]).await,
    ];
    let now = tessera::time::now_ms();
    // 23 tokens over three milliseconds (ties), 3 sessions and 2 cut-offs at the same times.
    let mut expected = std::collections::BTreeSet::new();
    for i in 0..23 {
        let jti = format!("jti-{i:02}");
        app.store
            .revoke_token(&tessera::store::RevokedToken {
                jti: jti.clone(),
                user_id: users[0].id,
                session_id: None,
                expires_at: now + 600_000,
                revoked_at: now - 3000 + (i % 3),
                reason: "test".into(),
            })
            .await
            .unwrap();
        expected.insert(format!("t:{jti}"));
    }
    for u in &users {
        let t = app.login_ok(&u.username).await;
        let sid = TestApp::claims(t["access_token"].as_str().unwrap())["sid"]
            .as_str()
            .unwrap()
            .to_string();
        app.store
            .revoke_session(sid.parse().unwrap(), "test", now - 3000)
            .await
            .unwrap();
        expected.insert(format!("s:{sid}"));
    }
    for u in &users[..2] {
        app.store
            .revoke_user(u.id, "test", now - 2999)
            .await
            .unwrap();
        expected.insert(format!("u:{}", u.id));
    }
    // Keys a cursor must carry whatever they hold: the least one (empty), long non-ASCII, and
    // one of 1500 bytes (a cursor on it was once refused: keys were capped at 1024 bytes).
    for jti in [
        String::new(),
        "é".repeat(128),
        "a&b=c #+%".to_string(),
        "日".repeat(500),
    ] {
        app.store
            .revoke_token(&tessera::store::RevokedToken {
                jti: jti.clone(),
                user_id: users[1].id,
                session_id: None,
                expires_at: now + 600_000,
                revoked_at: now - 3000,
                reason: "test".into(),
            })
            .await
            .unwrap();
        expected.insert(format!("t:{jti}"));
    }
    let get = |query: String| {
        let app = &app;
        async move {
            app.client
                .get(app.url(&format!("/revocations?{query}")))
                .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
                .send()
                .await
                .unwrap()
        }
    };
    let mut seen = Vec::new();
    let mut since = String::new();
    let mut pages = 0;
    loop {
        // Cursors hold only URL-safe characters: pasted into the URL as they are.
        assert!(
            since
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "{since}"
        );
        let r = get(format!("since={since}&limit=4")).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let mut n = 0;
        for t in v["revoked_tokens"].as_array().unwrap() {
            seen.push(format!("t:{}", t["jti"].as_str().unwrap()));
            n += 1;
        }
        for t in v["revoked_sessions"].as_array().unwrap() {
            seen.push(format!("s:{}", t["sid"].as_str().unwrap()));
            n += 1;
        }
        for t in v["not_before"].as_array().unwrap() {
            seen.push(format!("u:{}", t["sub"].as_str().unwrap()));
            n += 1;
        }
        assert!(n <= 4, "a page of {n}");
        pages += 1;
        since = v["cursor"].as_str().unwrap().to_string();
        if !v["has_more"].as_bool().unwrap() {
            break;
        }
        assert_eq!(n, 4, "only a full page says has_more");
        assert!(pages < 50, "the pages never end");
    }
    // revoke_user also revoked the sessions already listed: sessions may repeat only as the
    // same entry, so compare sets and check that the pass had no duplicate entry.
    let unique: std::collections::BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "an entry came twice in one pass");
    assert!(
        expected.is_subset(&unique),
        "missing: {:?}",
        expected.difference(&unique)
    );
    assert!(pages >= 7, "{pages} pages for {} entries", seen.len());
    // The last cursor is a time with overlap: polling again repeats recent entries, harmlessly.
    assert!(since.parse::<i64>().is_ok(), "{since}");
    // The default page holds everything here.
    let v: Value = get(String::new()).await.json().await.unwrap();
    assert_eq!(v["has_more"], json!(false));
    assert_eq!(
        v["revoked_tokens"].as_array().unwrap().len(),
        27,
        "{:?}",
        v["revoked_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["jti"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    );
    for bad in [
        "limit=0",
        "limit=10001",
        "limit=x",
        "limit=-1",
        "since=1.9.x",
        "since=1.1.not-a-uuid",
        "since=1.1.",
        "since=1.0",
        "since=-5",
        "since=+5",
        "since=-0",
        "since=%205",
        "since=1.0.%00",
        "since=1.0.AA",
        "since=1.0.@@",
        "since=1.1.MDE5MEMzRDItN0E4RS03QzFFLTlCMkEtMUYyRTNENEM1QjZB",
        "limit=+5",
    ] {
        let r = get(bad.to_string()).await;
        assert_eq!(r.status(), 400, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_request", "{bad}");
    }
}

async fn logout_everywhere(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.create_user("alice", &[]).await;
    app.create_user("bob", &[]).await;
    let s1 = app.login_ok("alice").await;
    let s2 = app.login_ok("alice").await;
    let bob = app.login_ok("bob").await;
    let r = app
        .client
        .post(app.url("/logout/all"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .post_bearer("/logout/all", s1["access_token"].as_str().unwrap())
        .await;
    assert_eq!(r.status(), 204);
    for s in [&s1, &s2] {
        app.assert_pair_refused(s).await;
    }
    assert_eq!(
        app.userinfo(bob["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM sessions WHERE revoked_reason = $1",
            "logout_all"
        )
        .await,
        2
    );
    // A new login works at once.
    let fresh = app.login_ok("alice").await;
    assert_eq!(
        app.userinfo(fresh["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    // The CLI does the same for an operator.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["user", "revoke", "BOB"])
        .env("DATABASE_URL", app.db.url())
        .env("TESSERA__KEYS__MASTER_KEY", &app.master_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Written by another process: it reaches the server's revocation state within ms.
    app.userinfo_becomes(bob["access_token"].as_str().unwrap(), 401)
        .await;
    app.assert_pair_refused(&bob).await;
}

async fn discovery_documents(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let iss = "http://127.0.0.1:8080";
        assert_eq!(v["issuer"], iss);
        assert_eq!(v["jwks_uri"], format!("{iss}/.well-known/jwks.json"));
        assert_eq!(v["token_endpoint"], format!("{iss}/token"));
        assert_eq!(v["revocation_endpoint"], format!("{iss}/revoke"));
        assert_eq!(v["introspection_endpoint"], format!("{iss}/introspect"));
        assert_eq!(
            v["grant_types_supported"],
            json!(["password", "refresh_token"])
        );
        assert!(v["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("client_secret_basic")));
        assert!(v.to_string().contains("ES256"));
        // Exactly true: no authorization endpoint, so no response type and no implicit grant;
        // no ID token, so no OpenID Connect fields.
        assert_eq!(v["response_types_supported"], json!([]));
        for absent in [
            "authorization_endpoint",
            "id_token_signing_alg_values_supported",
            "subject_types_supported",
            "claims_supported",
        ] {
            assert!(v.get(absent).is_none(), "{path} claims {absent}");
        }
        assert_eq!(
            v["introspection_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post"])
        );
    }
}

async fn basic_auth_raw_and_form_encoded(b: Backend) {
    use base64::Engine;
    // A secret full of characters that form-urlencoding changes.
    const ID: &str = "weird client";
    const SECRET: &str = "a+b/c&d%2Fe:f=g 0123456789";
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(figment::providers::Serialized::default(
            "clients",
            json!([{"id": ID, "secret": SECRET}, {"id": CLIENT_ID, "secret": CLIENT_SECRET}]),
        ))
    })
    .await
    else {
        return;
    };
    let basic = |id: &str, secret: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        )
    };
    let encoded = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let introspect = |auth: String| {
        app.client
            .post(app.url("/introspect"))
            .header("authorization", auth)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("token=x")
            .send()
    };
    // RFC 6749 §2.3.1 (form-urlencoded, then base64) and raw RFC 7617 Basic both work.
    assert_eq!(
        introspect(basic(&encoded(ID), &encoded(SECRET)))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(introspect(basic(ID, SECRET)).await.unwrap().status(), 200);
    // A near miss does not.
    assert_eq!(
        introspect(basic(ID, "a b/c&d%2Fe:f=g 0123456789"))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        introspect(basic(ID, &SECRET[..SECRET.len() - 1]))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        introspect(basic(CLIENT_ID, SECRET)).await.unwrap().status(),
        401
    );
}

/// A second confidential client, to try another client's tokens with.
const OTHER: (&str, &str) = ("billing-api", "billing-api-secret-0123456789");

/// A server that knows `orders-api` and `billing-api`.
async fn with_two_clients(b: Backend) -> Option<TestApp> {
    TestApp::spawn_with(b, |f| {
        f.merge(figment::providers::Serialized::default(
            "clients",
            json!([
                {"id": CLIENT_ID, "secret": CLIENT_SECRET},
                {"id": OTHER.0, "secret": OTHER.1},
            ]),
        ))
    })
    .await
}

/// RFC 7009 §2.1: only the client a token was issued to can revoke it. A token of
/// `orders-api` presented without credentials (as the public client) or by `billing-api` is
/// answered 200 and stays valid; `orders-api` itself revokes it.
async fn revoke_only_by_the_owning_client(b: Backend) {
    let Some(app) = with_two_clients(b).await else {
        return;
    };
    app.create_user("alice", &[]).await;
    let grant = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", PASSWORD),
    ];
    let r = app.form("/token", &grant, CLIENT).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let (access, refresh) = (
        t["access_token"].as_str().unwrap(),
        t["refresh_token"].as_str().unwrap(),
    );
    for who in [None, Some(OTHER)] {
        for token in [access, refresh] {
            let r = app.form("/revoke", &[("token", token)], who).await;
            assert_eq!(r.status(), 200, "{who:?}");
        }
    }
    // Both tokens still work, and nothing was written.
    assert_eq!(app.introspect(access).await["active"], true);
    assert_eq!(app.introspect(refresh).await["active"], true);
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM revoked_tokens WHERE $1 = $1", "")
            .await,
        0
    );
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NOT NULL AND $1 = $1",
            ""
        )
        .await,
        0
    );
    // The owner revokes both.
    for token in [access, refresh] {
        let r = app.form("/revoke", &[("token", token)], CLIENT).await;
        assert_eq!(r.status(), 200);
        assert_eq!(app.introspect(token).await, json!({"active": false}));
    }
    let r = app
        .form(
            "/token",
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
            CLIENT,
        )
        .await;
    assert_eq!(r.status(), 400);
    // A first-party token is revoked by another client? No: it belongs to the public client.
    let t = app.login_ok("alice").await;
    let r = app
        .form(
            "/revoke",
            &[("token", t["refresh_token"].as_str().unwrap())],
            Some(OTHER),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.refresh(t["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
}

/// One client-authentication path: `/introspect` and `/revocations` take
/// `client_secret_post` as well as Basic (authlib and openid-client reuse the token
/// endpoint's method), and a 401 carries a Basic challenge only after a Basic attempt.
async fn every_endpoint_takes_both_client_auth_methods(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.create_user("alice", &[]).await;
    let access = app.login_ok("alice").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let post = [("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut p: Vec<(&str, &str)> = post.to_vec();
        p.extend_from_slice(extra);
        p
    };
    let mut params = with(&[]);
    params.push(("token", &access));
    let r = app.form("/introspect", &params, None).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["active"], true);
    assert_eq!(v["client_id"], "tessera");
    // The feed by POST with form credentials, and by GET with Basic, say the same.
    let r = app
        .form("/revocations", &with(&[("since", "0")]), None)
        .await;
    assert_eq!(r.status(), 200);
    let by_post: Value = r.json().await.unwrap();
    let r = app
        .client
        .get(app.url("/revocations?since=0"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let by_get: Value = r.json().await.unwrap();
    assert_eq!(by_post["revoked_tokens"], by_get["revoked_tokens"]);
    // POST with Basic and no body at all: the whole feed.
    let r = app
        .client
        .post(app.url("/revocations"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Wrong secrets: invalid_client, 400 without a challenge for form credentials, 401 with
    // a Basic challenge for a Basic attempt.
    for path in ["/introspect", "/revocations", "/token", "/revoke"] {
        let wrong = [
            ("client_id", CLIENT_ID),
            ("client_secret", "wrong-secret-wrong-secret"),
            ("token", "x"),
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
        ];
        let r = app.form(path, &wrong, None).await;
        assert_eq!(r.status(), 400, "{path}");
        assert!(r.headers().get("www-authenticate").is_none(), "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_client", "{path}");
        let r = app
            .form(path, &wrong[2..], Some((CLIENT_ID, "wrong")))
            .await;
        assert_eq!(r.status(), 401, "{path}");
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic"),
            "{path}"
        );
    }
    // Introspection without any client is still refused.
    let r = app.form("/introspect", &[("token", &access)], None).await;
    assert_eq!(r.status(), 400);
    // Discovery says what each endpoint accepts.
    let meta: Value = app
        .get("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["introspection_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
}

const ORDERS: &str = "https://orders.example";

/// A server where `orders-api` may ask for `orders:read`, `orders:write` and `admin`, the
/// first-party client for `profile`, and the `https://orders.example` API takes only the
/// `orders:*` scopes.
async fn with_scopes(b: Backend) -> Option<TestApp> {
    use figment::providers::Serialized;
    let app = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("tokens.scopes", ["profile"]))
            .merge(Serialized::default(
                "clients",
                json!([{"id": CLIENT_ID, "secret": CLIENT_SECRET,
                        "scopes": ["orders:read", "orders:write", "admin"]}]),
            ))
            .merge(Serialized::default(
                "resources",
                json!([{"id": ORDERS, "scopes": ["orders:read", "orders:write"]}]),
            ))
    })
    .await?;
    app.create_user("alice", &[]).await;
    Some(app)
}

/// A password grant for orders-api with extra form parameters.
async fn grant(app: &TestApp, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut p = vec![
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", PASSWORD),
    ];
    p.extend_from_slice(extra);
    app.form("/token", &p, CLIENT).await
}

/// RFC 6749 §3.3, RFC 9068 §2.2.3, RFC 8707: the granted scope is what was asked for and is
/// allowed for the client (and the resource); it is returned and carried as the `scope`
/// claim; a resource becomes `aud`; unknown ones are refused.
async fn scope_is_granted_per_client_and_resource(b: Backend) {
    let Some(app) = with_scopes(b).await else {
        return;
    };
    let token = |v: &Value| TestApp::claims(v["access_token"].as_str().unwrap());
    // All granted: returned, and in the token.
    let v: Value = grant(&app, &[("scope", "orders:write admin")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["scope"], "orders:write admin");
    assert_eq!(token(&v)["scope"], "orders:write admin");
    assert_eq!(token(&v)["aud"], "tessera");
    // Part granted: the response says which part.
    let v: Value = grant(&app, &[("scope", "orders:write unknown")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["scope"], "orders:write");
    // Nothing grantable: invalid_scope, and no session.
    let r = grant(&app, &[("scope", "unknown other")]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_scope");
    // No scope asked for: none in the response or the token (RFC 6749 §3.3 default).
    let v: Value = grant(&app, &[]).await.json().await.unwrap();
    assert!(v.get("scope").is_none());
    assert!(token(&v).get("scope").is_none());
    // A resource: its id is the audience, and only its scopes are granted.
    let r = grant(
        &app,
        &[("scope", "orders:read admin"), ("resource", ORDERS)],
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["scope"], "orders:read");
    assert_eq!(token(&v)["aud"], ORDERS);
    let access = v["access_token"].as_str().unwrap();
    let i = app.introspect(access).await;
    assert_eq!(
        (i["active"].clone(), i["aud"].clone()),
        (json!(true), json!(ORDERS))
    );
    assert_eq!(i["scope"], "orders:read");
    let i = app.introspect(v["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (i["aud"].clone(), i["scope"].clone()),
        (json!(ORDERS), json!("orders:read"))
    );
    // Tessera's own endpoints take only tokens for Tessera.
    assert_eq!(app.userinfo(access).await.status(), 401);
    let r = grant(&app, &[("resource", "https://elsewhere.example")]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_target");
    // The first-party client at /login: its own scopes only.
    let r = app
        .post_json(
            "/login",
            &json!({"username": "alice", "password": PASSWORD, "scope": "profile admin"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["scope"], "profile");
    assert_eq!(token(&v)["scope"], "profile");
    let r = app
        .post_json(
            "/login",
            &json!({"username": "alice", "password": PASSWORD, "resource": "urn:nothing"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    // The sessions remember their grants; refused requests made none.
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM sessions WHERE resource = $1 AND scope = 'orders:read'",
            ORDERS
        )
        .await,
        1
    );
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM sessions WHERE $1 = $1", "")
            .await,
        5
    );
    // Discovery lists every scope.
    let meta: Value = app
        .get("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["scopes_supported"],
        json!(["admin", "orders:read", "orders:write", "profile"])
    );
}

/// RFC 6749 §6: a refresh keeps the session's scope and resource; a narrower scope may be asked
/// for one access token; a broader scope or another resource is refused.
async fn refresh_keeps_or_narrows_the_grant(b: Backend) {
    let Some(app) = with_scopes(b).await else {
        return;
    };
    let v: Value = grant(
        &app,
        &[("scope", "orders:read orders:write"), ("resource", ORDERS)],
    )
    .await
    .json()
    .await
    .unwrap();
    let mut rt = v["refresh_token"].as_str().unwrap().to_string();
    let r = refresh_grant(&app, &rt, &[("scope", "orders:read")]).await;
    assert_eq!(r.status(), 200);
    let narrowed: Value = r.json().await.unwrap();
    assert_eq!(narrowed["scope"], "orders:read");
    let claims = TestApp::claims(narrowed["access_token"].as_str().unwrap());
    assert_eq!(
        (claims["scope"].clone(), claims["aud"].clone()),
        (json!("orders:read"), json!(ORDERS))
    );
    rt = narrowed["refresh_token"].as_str().unwrap().to_string();
    // Without a scope: the session's whole grant again.
    let r = refresh_grant(&app, &rt, &[]).await;
    assert_eq!(r.status(), 200);
    let full: Value = r.json().await.unwrap();
    assert_eq!(full["scope"], "orders:read orders:write");
    rt = full["refresh_token"].as_str().unwrap().to_string();
    for (extra, error) in [
        (("scope", "orders:read admin"), "invalid_scope"),
        (("resource", "https://elsewhere.example"), "invalid_target"),
        (("resource", "tessera"), "invalid_target"),
    ] {
        let r = refresh_grant(&app, &rt, &[extra]).await;
        assert_eq!(r.status(), 400, "{error}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], error);
    }
}

/// A refresh grant for orders-api with extra form parameters.
async fn refresh_grant(app: &TestApp, rt: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut p = vec![("grant_type", "refresh_token"), ("refresh_token", rt)];
    p.extend_from_slice(extra);
    app.form("/token", &p, CLIENT).await
}

/// `/logout` is the first-party client's: a confidential client's refresh token, or an access
/// token minted for another API, is answered 204 and left valid (the same rule as `/revoke`).
async fn logout_leaves_other_clients_and_audiences_alone(b: Backend) {
    let Some(app) = with_scopes(b).await else {
        return;
    };
    let theirs: Value = grant(&app, &[]).await.json().await.unwrap();
    let rt = theirs["refresh_token"].as_str().unwrap();
    let r = app
        .post_json("/logout", &json!({"refresh_token": rt}))
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(app.introspect(rt).await["active"], true);
    let r = app
        .post_json(
            "/login",
            &json!({"username": "alice", "password": PASSWORD, "resource": ORDERS}),
        )
        .await;
    let for_orders: Value = r.json().await.unwrap();
    let access = for_orders["access_token"].as_str().unwrap();
    assert_eq!(app.post_bearer("/logout", access).await.status(), 204);
    assert_eq!(app.introspect(access).await["active"], true);
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NOT NULL AND $1 = $1",
            ""
        )
        .await,
        0
    );
}
