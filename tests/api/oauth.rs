//! The OAuth endpoints: `/token` (RFC 6749), `/revoke` (RFC 7009), `/introspect` (RFC 7662),
//! client authentication on each, and `/logout/all`.

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
    every_endpoint_takes_both_client_auth_methods,
    introspection,
    logout_everywhere,
    basic_auth_raw_and_form_encoded,
);

const CLIENT: Option<(&str, &str)> = Some((CLIENT_ID, CLIENT_SECRET));

/// The password and refresh_token grants for the public first-party client, the same
/// rotation as `/refresh`.
async fn token_endpoint_grants(b: Backend) {
    let Some((app, user)) = TestApp::with_user(b, "alice", &["admin"]).await else {
        return;
    };
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
    let Some((app, _)) = TestApp::with_user(b, "alice", &["admin"]).await else {
        return;
    };
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
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
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
            // The first-party client has no redirect URI: it may not use the code grant.
            "authorization_code by the first-party client",
            vec![("grant_type", "authorization_code"), ("code", "x")],
            400,
            "unauthorized_client",
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
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
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
    // Two Authorization fields, the right one first: malformed, whichever comes first (the
    // first was used, so a wrong second credential went unseen).
    use base64::Engine as _;
    let basic = |secret: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{secret}"))
        )
    };
    for path in ["/token", "/introspect", "/revoke"] {
        let r = app
            .client
            .post(app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", basic(CLIENT_SECRET))
            .header("authorization", basic("not-the-secret"))
            .body("grant_type=password&username=alice&password=x&token=x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{path}");
    }
    assert_no_session(&app).await;
}

/// Credential failures: one status, one body, for wrong password, unknown and disabled users.
async fn token_endpoint_credential_failures_look_alike(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
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
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    // A refresh token: its session ends, and with it the session's access tokens.
    let t = app.login_ok("alice").await;
    let first_refresh = t["refresh_token"].as_str().unwrap().to_string();
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
    // Each revocation is one audit event; the same tokens revoked again, four at once each,
    // change nothing and record nothing.
    let (by_refresh, by_access) = ([("token", first_refresh.as_str())], [("token", access)]);
    let again = futures::future::join_all((0..4).flat_map(|_| {
        [
            app.form("/revoke", &by_refresh, None),
            app.form("/revoke", &by_access, None),
        ]
    }))
    .await;
    assert!(again.iter().all(|r| r.status() == 200));
    let revoked = |reason: &'static str| {
        app.scalar_i64(
            "SELECT COUNT(*) FROM audit_events WHERE event = 'token.revoked' AND reason = $1",
            reason,
        )
    };
    crate::helpers::eventually(10, "the revocations audited", || async {
        revoked("refresh_token").await + revoked("access_token").await >= 2
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(revoked("refresh_token").await, 1);
    assert_eq!(revoked("access_token").await, 1);
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
    let Some((app, user)) = TestApp::with_user(b, "alice", &["admin"]).await else {
        return;
    };
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

async fn logout_everywhere(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
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
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
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
