//! Faults found by replaying peers' bug reports and real clients against Tessera. Each
//! scenario holds the input that failed.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, PASSWORD};
use crate::on_both;

on_both!(
    a_login_rehash_never_undoes_a_concurrent_reset,
    old_password_logins_never_outlive_a_password_change,
    old_password_sign_ins_never_outlive_a_password_change,
    a_session_is_created_only_under_the_credential_verified,
    correct_logins_in_parallel_all_succeed,
    attempts_a_dead_process_left_stop_counting_at_their_lease,
    a_client_written_forwarded_header_is_not_believed,
    a_refused_refresh_leaves_the_session_unrotated,
    a_non_ascii_cookie_does_not_hide_the_refresh_cookie,
    logout_ignores_an_authorization_scheme_it_does_not_use,
    invalid_client_without_the_header_is_400_without_a_challenge,
    repeated_resource_parameters,
    no_token_gets_a_challenge_without_an_error_code,
    header_members_of_the_wrong_type_are_refused,
    homoglyph_usernames_make_no_new_account,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrations_build_big_indexes_concurrently() {
    migrations_build_indexes_concurrently().await
}

#[tokio::test]
async fn h2c_connections_get_the_head_deadline() {
    h2c_is_closed_within_the_head_deadline().await
}

/// A Django PBKDF2 hash of [`PASSWORD`]: re-hashed to argon2id at the first login.
const DJANGO: &str = "pbkdf2_sha256$1000$saltysalt123$bdlERmmw+duuk5FecWFTVO0M81ggrAuyxRe4nczc3tw=";
const NEW_PASSWORD: &str = "a brand new password";

/// One argon2 worker and a slow hash, so that a reset is still hashing while the logins that
/// race it read the user (see `reset_during_logins`); no throttle in the way.
fn racing_reset(f: figment::Figment) -> figment::Figment {
    use figment::providers::Serialized;
    f.merge(Serialized::default("throttle.account_free_failures", 0))
        .merge(Serialized::default("throttle.ip_free_failures", 0))
        .merge(Serialized::default("password.max_concurrency", 1))
        .merge(Serialized::default("password.t_cost", 6))
        .merge(Serialized::default("password.queue_timeout", "20s"))
}

async fn admin_token(app: &TestApp) -> String {
    app.create_user("root", &["admin"]).await;
    app.login_ok("root").await["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn import_legacy(app: &TestApp, name: &str) -> Uuid {
    let id = Uuid::now_v7();
    app.store
        .create_user(tessera::store::NewUser {
            id,
            username: name.into(),
            skeleton: None,
            // Stored as `user import` stores it: the PBKDF2 PHC form.
            password_hash: tessera::auth::password::import(
                DJANGO,
                &tessera::auth::password::CostCaps {
                    bcrypt_cost: 14,
                    pbkdf2_iterations: 2_000_000,
                    argon2_m_cost: 262_144,
                    argon2_t_cost: 16,
                },
            )
            .unwrap(),
            roles: vec![],
            claims: Default::default(),
            disabled: false,
            now: tessera::time::now_ms(),
            email: None,
            email_key: None,
            email_verified: false,
        })
        .await
        .unwrap();
    id
}

/// An administrator's reset of `id`'s password to [`NEW_PASSWORD`], answered 204.
async fn admin_reset(app: &TestApp, admin: &str, id: Uuid) {
    let r = app
        .admin(
            reqwest::Method::PUT,
            &format!("/admin/users/{id}/password"),
            admin,
            Some(json!({"password": NEW_PASSWORD})),
        )
        .await;
    assert_eq!(r.status(), 204);
}

/// Logins with the old password that start while an administrator's reset is being hashed:
/// they read the user before the reset commits and are checked after it (one argon2 worker,
/// first come first served, and a slow hash, so the order is the same on every machine).
/// Returns every racing login's answer, all finished.
async fn reset_during_logins(app: &TestApp, name: &str, id: Uuid) -> Vec<(u16, Value)> {
    let admin = admin_token(app).await;
    let reset = admin_reset(app, &admin, id);
    let logins = async {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let calls = (0..3).map(|_| app.login(name, PASSWORD));
        let mut out = Vec::new();
        for r in futures::future::join_all(calls).await {
            let status = r.status().as_u16();
            out.push((status, r.json().await.unwrap_or(Value::Null)));
        }
        out
    };
    let ((), answers) = tokio::join!(reset, logins);
    answers
}

/// lldap PR #1423: the re-hash's compare-and-set compared against the row re-read after the
/// password check, which already held the reset's hash, so the old password came back.
async fn a_login_rehash_never_undoes_a_concurrent_reset(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, racing_reset).await else {
        return;
    };
    let id = import_legacy(&app, "legacy").await;
    reset_during_logins(&app, "legacy", id).await;
    assert_eq!(app.login("legacy", PASSWORD).await.status(), 401);
    assert_eq!(app.login("legacy", NEW_PASSWORD).await.status(), 200);
    let stored = app
        .store
        .user_by_id(id)
        .await
        .unwrap()
        .unwrap()
        .password_hash;
    assert!(stored.starts_with("$argon2id$"), "{stored}");
}

/// Every session made with the old password, before the change or racing it, is dead once
/// the change has answered 204 and the racing logins have answered.
async fn old_password_logins_never_outlive_a_password_change(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, racing_reset).await else {
        return;
    };
    let id = import_legacy(&app, "legacy").await;
    let before = app.login_ok("legacy").await;
    let answers = reset_during_logins(&app, "legacy", id).await;
    app.assert_pair_refused(&before).await;
    for (status, body) in &answers {
        assert!(*status == 200 || *status == 401, "{status} {body}");
        if *status == 200 {
            app.assert_pair_refused(body).await;
        }
    }
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE u.username = $1 AND s.revoked_at IS NULL",
            "legacy"
        )
        .await,
        0,
        "a session made with the old password is still live"
    );
}

/// The hosted login's SSO session, made with the old password while a reset is hashed (the
/// same order as `reset_during_logins`): once the reset has answered 204 and the sign-ins
/// have answered, no browser is signed in and no code they got is exchanged. Before, the
/// session was opened after the reset had ended the user's others, stamped after its cut-off,
/// and stayed live.
async fn old_password_sign_ins_never_outlive_a_password_change(b: Backend) {
    use crate::oidc::{exchange, pkce, redirected, Browser, APP_CB};
    let Some(app) = crate::oidc::op_tweaked(b, None, racing_reset).await else {
        return;
    };
    let id = app.create_user("bob", &[]).await.id;
    let admin = admin_token(&app).await;
    let (verifier, challenge) = pkce();
    let mut browsers = Vec::new();
    for _ in 0..3 {
        let mut browser = Browser::new(&app);
        let r = browser.authorize_web(&challenge, &[]).await;
        assert_eq!(r.status(), 200);
        let page = r.text().await.unwrap();
        browsers.push((browser, page));
    }
    let reset = admin_reset(&app, &admin, id);
    let sign_ins = async {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let calls = browsers
            .iter_mut()
            .map(|(browser, page)| browser.sign_in(page, "bob", PASSWORD));
        futures::future::join_all(calls).await
    };
    let ((), answers) = tokio::join!(reset, sign_ins);
    let mut codes = Vec::new();
    for r in &answers {
        match r.status().as_u16() {
            // Signed in before the reset committed: the code is the app's, for now.
            303 => codes.push(redirected(r, APP_CB)["code"].clone()),
            // The page again, with the one error of a wrong password.
            200 => {}
            s => panic!("a racing sign-in answered {s}"),
        }
    }
    for code in codes {
        let r = exchange(&app, "web", &code, &verifier, APP_CB).await;
        assert_eq!(
            r.status(),
            400,
            "a code of an old-password sign-in was exchanged"
        );
    }
    for (browser, _) in &mut browsers {
        let r = browser.authorize_web(&challenge, &[]).await;
        assert_eq!(
            r.status(),
            200,
            "an old-password sign-in is still signed in"
        );
    }
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM sso_sessions s JOIN users u ON u.id = s.user_id
             WHERE u.username = $1 AND s.revoked_at IS NULL
               AND s.created_at > u.tokens_not_before",
            "bob"
        )
        .await,
        0,
        "an SSO session made with the old password is still live"
    );
}

/// The store's fence, one change at a time: a session is created only while the user's
/// cut-off is the one read with the credential, so a password change, disable, role removal
/// or logout-everywhere made after that read refuses it, even within the same millisecond.
async fn a_session_is_created_only_under_the_credential_verified(b: Backend) {
    let Some((app, user)) = TestApp::with_user(b, "alice", &["ops"]).await else {
        return;
    };
    let session = |user_id: Uuid| tessera::store::Session {
        id: Uuid::now_v7(),
        user_id,
        generation: 0,
        created_at: tessera::time::now_ms(),
        last_refreshed_at: tessera::time::now_ms(),
        idle_expires_at: tessera::time::now_ms() + 60_000,
        absolute_expires_at: tessera::time::now_ms() + 60_000,
        revoked_at: None,
        revoked_reason: None,
        user_agent: None,
        ip: None,
        client_id: "tessera".into(),
        scope: None,
        resource: None,
        sso_session_id: None,
        amr: None,
    };
    let fence = |app: &TestApp| {
        let store = app.store.clone();
        async move {
            store
                .user_by_id(user.id)
                .await
                .unwrap()
                .unwrap()
                .tokens_not_before
        }
    };
    // Unchanged: created, with the user's roles.
    let read = fence(&app).await;
    let subject = app
        .store
        .create_session(&session(user.id), read, None)
        .await
        .unwrap();
    assert_eq!(subject.unwrap().roles, ["ops"]);
    // Each change, made twice in the same millisecond, moves the cut-off.
    let now = tessera::time::now_ms();
    let changes: [(&str, Box<dyn Fn() -> _>); 4] = [
        (
            "password",
            Box::new(|| {
                let s = app.store.clone();
                Box::pin(async move {
                    s.set_password("alice", "$argon2id$x", now)
                        .await
                        .map(|_| ())
                }) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
            }),
        ),
        (
            "disable",
            Box::new(|| {
                let s = app.store.clone();
                Box::pin(async move { s.set_disabled("alice", true, now).await.map(|_| ()) })
            }),
        ),
        (
            "role removal",
            Box::new(|| {
                let s = app.store.clone();
                Box::pin(async move { s.cut_off_tokens(user.id, now).await.map(|_| ()) })
            }),
        ),
        (
            "logout everywhere",
            Box::new(|| {
                let s = app.store.clone();
                Box::pin(async move { s.revoke_user(user.id, "logout_all", now).await.map(|_| ()) })
            }),
        ),
    ];
    for (what, change) in changes {
        app.store.set_disabled("alice", false, now).await.unwrap();
        change().await.unwrap();
        app.store.set_disabled("alice", false, now).await.unwrap();
        let read = fence(&app).await;
        change().await.unwrap();
        app.store.set_disabled("alice", false, now).await.unwrap();
        let refused = app
            .store
            .create_session(&session(user.id), read, None)
            .await
            .unwrap();
        assert!(refused.is_none(), "{what}: a session was created after it");
    }
}

/// Invariant 11: 20 concurrent logins with the right password for one account (devices or
/// workers of one service account) all succeed; none is throttled because others were in
/// flight, and nothing is left counted.
async fn correct_logins_in_parallel_all_succeed(b: Backend) {
    // Four rounds of five hashes: on a loaded machine (a parallel suite on two cores) longer
    // than the default queue_timeout, past which a waiting login is shed (503).
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(figment::providers::Serialized::default(
            "password.queue_timeout",
            "20s",
        ))
    })
    .await
    else {
        return;
    };
    app.create_user("svc", &[]).await;
    let calls = (0..20).map(|_| app.login("svc", PASSWORD));
    let statuses: Vec<u16> = futures::future::join_all(calls)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(statuses, [200; 20]);
    assert_eq!(
        app.scalar_i64(
            "SELECT (SELECT COUNT(*) FROM login_attempts)
                  + (SELECT COUNT(*) FROM login_throttle WHERE failures > 0 AND key <> $1)",
            ""
        )
        .await,
        0
    );
}

async fn ip(app: &TestApp, ip: &str) -> i64 {
    app.scalar_i64("SELECT COUNT(*) FROM sessions WHERE ip = $1", ip)
        .await
}

/// Behind nginx (`deploy/compose/nginx.conf`: `X-Forwarded-For $proxy_add_x_forwarded_for`), a
/// client's own `Forwarded` arrives untouched beside the proxy's `X-Forwarded-For`. It picked
/// the address sessions, the throttle and the audit trail recorded. Only the header set in
/// `http.forwarded_header` is read; set to `forwarded`, that one is, and from the right.
async fn a_client_written_forwarded_header_is_not_believed(b: Backend) {
    use figment::providers::Serialized;
    let behind = |header: &'static str| {
        move |f: figment::Figment| {
            f.merge(Serialized::default(
                "http.trusted_proxies",
                ["127.0.0.1/32"],
            ))
            .merge(Serialized::default("http.forwarded_header", header))
        }
    };
    let Some(app) = TestApp::spawn_with(b, behind("x-forwarded-for")).await else {
        return;
    };
    app.create_user("alice", &[]).await;
    let login = |app: &TestApp, fwd: &'static str, xff: &'static str| {
        app.client
            .post(app.url("/login"))
            .header("forwarded", fwd)
            .header("x-forwarded-for", xff)
            .json(&json!({"username": "alice", "password": PASSWORD}))
            .send()
    };
    let r = login(&app, "for=6.6.6.6", "198.51.100.7").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(ip(&app, "198.51.100.7").await, 1);
    assert_eq!(ip(&app, "6.6.6.6").await, 0);
    // A chain with an unreadable entry: the walk from the right stops there, keeping what it
    // read (the whole chain used to be dropped, leaving the proxy's own address).
    let r = login(&app, "for=6.6.6.6", "junk, 198.51.100.8")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(ip(&app, "198.51.100.8").await, 1);
    let rfc = app.replica(behind("forwarded")).await;
    let r = login(&rfc, r#"for=unknown, for="[2001:db8::7]:443""#, "6.6.6.6")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(ip(&rfc, "2001:db8::7").await, 1);
    assert_eq!(ip(&rfc, "6.6.6.6").await, 0);
    // A bad setting is refused at start-up.
    let bad = tessera::config::Settings::from_figment(
        crate::helpers::test_figment("sqlite::memory:", &crate::helpers::master_key())
            .merge(Serialized::default("http.forwarded_header", "x-real-ip")),
    );
    assert!(bad.is_err());
}

/// A confidential client that may ask for the orders scopes, and an orders API resource.
fn orders(f: figment::Figment) -> figment::Figment {
    use figment::providers::Serialized;
    f.merge(Serialized::default(
        "clients",
        json!([{"id": crate::helpers::CLIENT_ID, "secret": crate::helpers::CLIENT_SECRET,
                "scopes": ["orders:read", "orders:write"]}]),
    ))
    .merge(Serialized::default(
        "resources",
        json!([{"id": "https://orders.example", "scopes": ["orders:read", "orders:write"]},
               {"id": "https://billing.example", "scopes": ["orders:read"]}]),
    ))
    .merge(Serialized::default("sessions.reuse_grace", "1s"))
}

const CLIENT: Option<(&str, &str)> =
    Some((crate::helpers::CLIENT_ID, crate::helpers::CLIENT_SECRET));

/// Authlib and requests-oauthlib re-send the scope they first asked for. A refresh refused
/// 400 `invalid_scope` had already rotated the session, so the retry after the grace window
/// was taken for reuse and the user logged out by a request that was refused.
async fn a_refused_refresh_leaves_the_session_unrotated(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, orders).await else {
        return;
    };
    app.create_user("alice", &[]).await;
    let r = app
        .form(
            "/token",
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
                ("scope", "orders:read"),
            ],
            CLIENT,
        )
        .await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    let refresh = |extra: Vec<(&'static str, &'static str)>| {
        let mut p = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
        ];
        p.extend(extra);
        let app = &app;
        async move { app.form("/token", &p, CLIENT).await }
    };
    let r = refresh(vec![("scope", "orders:read orders:write")]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_scope");
    let r = refresh(vec![("resource", "https://orders.example")]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_target");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = refresh(vec![]).await;
    assert_eq!(r.status(), 200, "the refused refreshes spent the token");
    let next: Value = r.json().await.unwrap();
    assert_eq!(next["scope"], "orders:read");
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND generation = 1
             AND client_id <> $1",
            ""
        )
        .await,
        1
    );
}

/// RFC 6265bis §5.4: the `Cookie` header is bytes. A UTF-8 analytics cookie beside the
/// refresh cookie made /refresh and /logout answer 400 (and the session outlived the logout).
/// A name with a Unicode space in front is another cookie.
async fn a_non_ascii_cookie_does_not_hide_the_refresh_cookie(b: Backend) {
    use figment::providers::Serialized;
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("sessions.refresh_cookie", true))
            .merge(Serialized::default(
                "http.cors_origins",
                vec!["https://app.example"],
            ))
    })
    .await
    else {
        return;
    };
    app.create_user("alice", &[]).await;
    let r = app
        .client
        .post(app.url("/login"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let token = set
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    let post = |path: &'static str, cookie: Vec<u8>| {
        let req = app
            .client
            .post(app.url(path))
            .header("origin", "https://app.example")
            .header(
                "cookie",
                reqwest::header::HeaderValue::from_bytes(&cookie).unwrap(),
            );
        async move { req.send().await.unwrap() }
    };
    let utmz = |name: &str, token: &str| {
        let mut c = b"__utmz=1.2.3.utmcsr=survey|utmccn=Unders\xc3\xb8gelse; ".to_vec();
        c.extend_from_slice(format!("{name}={token}").as_bytes());
        c
    };
    // A Unicode space before the name: not the __Host- cookie, so no token at all.
    let r = post("/refresh", utmz("\u{2000}__Host-tessera_refresh", &token)).await;
    assert_eq!(r.status(), 400);
    let r = post("/refresh", utmz("__Host-tessera_refresh", &token)).await;
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let token = set
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    let r = post("/logout", utmz("__Host-tessera_refresh", &token)).await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND client_id <> $1",
            ""
        )
        .await,
        0,
        "the session outlived the logout"
    );
}

/// A staging proxy's `Authorization: Basic` beside a refresh token: not a failed Bearer
/// authentication. /logout answered 401 and the session stayed alive.
async fn logout_ignores_an_authorization_scheme_it_does_not_use(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    let t = app.login_ok("alice").await;
    let r = app
        .client
        .post(app.url("/logout"))
        .header("authorization", "Basic c3RhZ2luZzpzdGFnaW5n")
        .json(&json!({"refresh_token": t["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.refresh(t["refresh_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    // A malformed bearer token is ignored like an unknown one: the refresh token still logs out.
    for auth in ["Bearer", "Bearer a b"] {
        let t = app.login_ok("alice").await;
        let r = app
            .client
            .post(app.url("/logout"))
            .header("authorization", auth)
            .json(&json!({"refresh_token": t["refresh_token"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{auth}");
        let rt = t["refresh_token"].as_str().unwrap();
        assert_eq!(app.refresh(rt).await.status(), 401, "{auth}");
    }
    // /logout/all needs a bearer token: Basic alone is none (401, bare challenge).
    let r = app
        .client
        .post(app.url("/logout/all"))
        .header("authorization", "Basic c3RhZ2luZzpzdGFnaW5n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], r#"Bearer realm="tessera""#);
}

/// RFC 9110 §15.5.2: a 401 must carry a challenge. Without the Authorization header there is
/// none to give, so a failed client authentication is 400 (RFC 6749 §5.2); with it, 401 and
/// the Basic challenge.
async fn invalid_client_without_the_header_is_400_without_a_challenge(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let wrong = [
        ("client_id", crate::helpers::CLIENT_ID),
        ("client_secret", "not-the-secret-not-the-secret"),
        ("grant_type", "refresh_token"),
        ("refresh_token", "x"),
        ("token", "x"),
    ];
    for path in ["/token", "/revoke", "/introspect", "/revocations"] {
        let r = app.form(path, &wrong, None).await;
        assert_eq!(r.status(), 400, "{path}");
        assert!(r.headers().get("www-authenticate").is_none(), "{path}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
        let r = app
            .form(
                path,
                &wrong[2..],
                Some((crate::helpers::CLIENT_ID, "wrong")),
            )
            .await;
        assert_eq!(r.status(), 401, "{path}");
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic "));
    }
    let r = app.get("/revocations").await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("www-authenticate").is_none());
}

/// openid-client 5 and 6 send `resource` as an array. The same resource twice is that
/// resource; two different ones are `invalid_target` saying so, not a generic 400.
async fn repeated_resource_parameters(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, orders).await else {
        return;
    };
    app.create_user("alice", &[]).await;
    let grant = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", PASSWORD),
        ("scope", "orders:read"),
    ];
    let with = |resources: &[&'static str]| {
        let mut p = grant.to_vec();
        p.extend(resources.iter().map(|r| ("resource", *r)));
        p
    };
    let r = app
        .form(
            "/token",
            &with(&["https://orders.example", "https://orders.example"]),
            CLIENT,
        )
        .await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(
        TestApp::claims(t["access_token"].as_str().unwrap())["aud"],
        "https://orders.example"
    );
    let r = app
        .form(
            "/token",
            &with(&["https://orders.example", "https://billing.example"]),
            CLIENT,
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_target");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("one resource"),
        "{v}"
    );
}

/// RFC 6750 §3.1: a request without any authentication information gets a challenge with no
/// error code; a refused token gets `invalid_token`.
async fn no_token_gets_a_challenge_without_an_error_code(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    for (method, path) in [
        (reqwest::Method::GET, "/userinfo"),
        (reqwest::Method::GET, "/admin/users"),
        (reqwest::Method::POST, "/logout/all"),
    ] {
        let r = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(
            r.headers()["www-authenticate"],
            r#"Bearer realm="tessera""#,
            "{path}"
        );
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_token");
        let r = app
            .client
            .request(method, app.url(path))
            .bearer_auth("not.a.token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(
            r.headers()["www-authenticate"],
            r#"Bearer realm="tessera", error="invalid_token""#,
            "{path}"
        );
    }
}

/// An h2c connection (prior knowledge) that sends only the preface and SETTINGS, or a
/// HEADERS frame without END_HEADERS, stayed open past `http.header_read_timeout`. It is
/// closed within the deadline, as a slow HTTP/1.1 head is. No database is involved.
async fn h2c_is_closed_within_the_head_deadline() {
    use figment::providers::Serialized;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |f| {
        f.merge(Serialized::default("http.header_read_timeout", "2s"))
    })
    .await
    else {
        return;
    };
    let addr = app.base.trim_start_matches("http://").to_string();
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let settings = [0u8, 0, 0, 4, 0, 0, 0, 0, 0];
    // HEADERS on stream 1 without END_HEADERS (flags 0), one byte of header block.
    let headers = [0u8, 0, 1, 1, 0, 0, 0, 0, 1, 0x82];
    for extra in [&[][..], &headers[..]] {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(preface).await.unwrap();
        c.write_all(&settings).await.unwrap();
        c.write_all(extra).await.unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 4096];
        let closed = tokio::time::timeout(Duration::from_secs(4), async {
            loop {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "still open after {:?}", started.elapsed());
    }
}

/// RFC 7515 §4.1: a registered header member of the wrong JSON type is refused, not read as
/// absent. `"crit": null` in a token re-signed with Tessera's own key was accepted by
/// /userinfo and /introspect. The server and tessera-verify share one policy now.
async fn header_members_of_the_wrong_type_are_refused(b: Backend) {
    use base64::Engine;
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    let real = app.login_ok("alice").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let claims = TestApp::claims(&real);
    let key = app.signing_key().await;
    let alg = format!("{:?}", key.alg);
    let sign = |header: Value| tessera::auth::tokens::sign_jws(&key, &header, &claims).unwrap();
    // The header as Tessera writes it passes (the check is not too strict).
    let good = sign(json!({"typ": "at+jwt", "alg": alg, "kid": key.kid}));
    assert_eq!(app.userinfo(&good).await.status(), 200);
    let issuer = claims["iss"].as_str().unwrap().to_string();
    let verifier = tessera_verify::Verifier::builder(issuer, "tessera")
        .jwks_url(app.url("/.well-known/jwks.json"))
        .build()
        .await
        .unwrap();
    assert!(verifier.verify(&good).await.is_ok());
    let mut bad = Vec::new();
    for (member, value) in [
        ("crit", Value::Null),
        ("crit", json!([])),
        ("cty", Value::Null),
        ("x5t", json!(7)),
        ("x5u", Value::Null),
        ("jwk", Value::Null),
        ("b64", json!(false)),
        ("zip", json!("DEF")),
    ] {
        let mut h = json!({"typ": "at+jwt", "alg": alg, "kid": key.kid});
        h[member] = value.clone();
        bad.push((format!("{member}: {value}"), sign(h)));
    }
    for header in [
        json!({"typ": "at+jwt", "alg": alg, "kid": [key.kid]}),
        json!({"typ": ["at+jwt"], "alg": alg, "kid": key.kid}),
        json!({"typ": "at+jwt", "alg": [alg], "kid": key.kid}),
    ] {
        bad.push((header.to_string(), sign(header)));
    }
    // A duplicate member: two parsers must never read two different headers.
    let dup = format!(
        r#"{{"typ":"at+jwt","alg":"{alg}","kid":"nope","kid":"{}"}}"#,
        key.kid
    );
    let rest = good.split_once('.').unwrap().1;
    let payload = rest.rsplit_once('.').unwrap().0;
    let input = format!(
        "{}.{payload}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(dup)
    );
    let sig = key.sign_bytes(input.as_bytes()).unwrap();
    bad.push(("duplicate kid".into(), format!("{input}.{sig}")));
    for (what, token) in &bad {
        assert_eq!(
            app.userinfo(token).await.status(),
            401,
            "/userinfo took {what}"
        );
        assert_eq!(
            app.introspect(token).await,
            json!({"active": false}),
            "{what}"
        );
        assert!(
            verifier.verify(token).await.is_err(),
            "tessera-verify took {what}"
        );
    }
}

/// 0008 built three indexes inside the migration's transaction: a SHARE lock on `sessions` for
/// 1-2 s at 1M rows, during a rolling deploy. They are built CONCURRENTLY now, one statement
/// per migration. A database that ran the old 0008 upgrades (its recorded checksum is
/// updated; the indexes exist), and an index an interrupted build left invalid is rebuilt.
async fn migrations_build_indexes_concurrently() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let migrations = std::fs::read_dir("crates/tessera-store/migrations/postgres").unwrap();
    for entry in migrations {
        let path = entry.unwrap().path();
        let sql = std::fs::read_to_string(&path).unwrap();
        let upper = sql.to_uppercase();
        // An index on a table the same migration creates locks nothing anyone uses.
        let builds = (upper.contains("CREATE INDEX") || upper.contains("CREATE UNIQUE INDEX"))
            && !upper.contains("CREATE TABLE");
        let version: u32 = path.file_name().unwrap().to_str().unwrap()[..4]
            .parse()
            .unwrap();
        if builds && version >= 8 {
            assert!(
                sql.starts_with("-- no-transaction"),
                "{path:?} builds in a transaction"
            );
            assert!(upper.contains("CONCURRENTLY"), "{path:?}");
        }
    }
    // A database migrated by the transactional 0008, with 0010-0014 not yet run.
    app.exec_sql(
        "UPDATE _sqlx_migrations SET checksum = decode('9190898aabc0fdfb0107d13072b989e72eb9a96e8b359d6d731d725b6d36bf39198a9c1a41cebbadcaf03e68a06fe0da', 'hex') WHERE version = 8;
         DELETE FROM _sqlx_migrations WHERE version BETWEEN 10 AND 14;
         DROP INDEX users_feed_idx;"
            .into(),
    )
    .await;
    // An interrupted concurrent build of users_feed_idx: it fails (two equal created_at) and
    // leaves an invalid index of that name behind.
    app.create_user("alice", &[]).await;
    app.create_user("bob", &[]).await;
    app.exec_sql("UPDATE users SET created_at = 1".into()).await;
    let url = app.db.url().to_string();
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let failed =
        sqlx::raw_sql("CREATE UNIQUE INDEX CONCURRENTLY users_feed_idx ON users (created_at)")
            .execute(&mut c)
            .await;
    assert!(failed.is_err());
    let invalid = "SELECT COUNT(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                   WHERE c.relname = $1 AND NOT i.indisvalid";
    assert_eq!(app.scalar_i64(invalid, "users_feed_idx").await, 1);
    app.store.migrate().await.unwrap();
    for index in [
        "revoked_tokens_feed_idx",
        "sessions_feed_idx",
        "users_feed_idx",
    ] {
        assert_eq!(app.scalar_i64(invalid, index).await, 0, "{index}");
        assert_eq!(
            app.scalar_i64("SELECT COUNT(*) FROM pg_class WHERE relname = $1", index)
                .await,
            1,
            "{index}"
        );
    }
    let def = "SELECT COUNT(*) FROM pg_indexes WHERE indexname = $1 AND indexdef LIKE '%tokens_not_before, id%'";
    assert_eq!(app.scalar_i64(def, "users_feed_idx").await, 1);
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM _sqlx_migrations
             WHERE success AND (version = 8 OR version BETWEEN 10 AND 14) AND $1 = $1",
            ""
        )
        .await,
        6
    );
    // Running again changes nothing.
    app.store.migrate().await.unwrap();
}

/// UTS #39: `rоot` with a Cyrillic о made a second account that renders as `root`. Names that
/// mix scripts are refused, naming the rule, and so is a name whose confusable skeleton is an
/// existing account's, also one named before skeletons were stored.
async fn homoglyph_usernames_make_no_new_account(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let admin = admin_token(&app).await;
    let create = |name: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            let r = app
                .admin(
                    reqwest::Method::POST,
                    "/admin/users",
                    admin,
                    Some(json!({"username": name, "password": "a long enough password"})),
                )
                .await;
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = create("r\u{043E}ot").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request");
    let why = body["error_description"].as_str().unwrap();
    assert!(
        why.contains("mixes scripts") && why.contains("UTS #39"),
        "{why}"
    );
    // A name PRECIS refuses names its rule too, not the generic text.
    let (status, body) = create("al ice").await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("RFC 8265"),
        "{body}"
    );
    // One script, but the skeleton of root's.
    for lookalike in ["r00t", "rooт"] {
        let (status, body) = create(lookalike).await;
        if lookalike == "r00t" {
            assert_eq!(status, 409, "{lookalike}: {body}");
            assert!(
                body["error_description"]
                    .as_str()
                    .unwrap()
                    .contains("confusable"),
                "{body}"
            );
        } else {
            assert_eq!(status, 400, "{lookalike}: {body}");
        }
    }
    // An account named before skeletons were stored: filled in at start-up, then guarded.
    import_legacy(&app, "admin").await;
    app.auth.backfill_username_skeletons().await.unwrap();
    let (status, _) = create("adrnin").await;
    assert_eq!(status, 409, "rn looks like m");
    let (status, _) = create("alice").await;
    assert_eq!(status, 201);
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM users WHERE username <> $1", "")
            .await,
        3,
        "root, admin and alice only"
    );
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM users WHERE username_skeleton IS NULL AND username <> $1",
            ""
        )
        .await,
        0
    );
}

/// Attempts in flight that a process left when it died (rows in `login_attempts` nobody will
/// settle) hold the account's whole allowance; each stops counting when its own lease ends,
/// whatever other attempts do meanwhile, so a correct login waits for that and gets in.
async fn attempts_a_dead_process_left_stop_counting_at_their_lease(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    let lease = tessera::time::now_ms() + 1_000;
    let sqlite = app.db.url().starts_with("sqlite");
    let rows: Vec<String> = (0..5)
        .map(|_| {
            let id = Uuid::now_v7();
            let id = if sqlite {
                format!("X'{}'", id.simple())
            } else {
                format!("'{id}'")
            };
            format!("('u:alice', {id}, {lease})")
        })
        .collect();
    app.exec_sql(format!(
        "INSERT INTO login_attempts (key, id, lease_until) VALUES {}",
        rows.join(", ")
    ))
    .await;
    let started = std::time::Instant::now();
    app.login_ok("alice").await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    // Five more at once: the dead attempts no longer count, nothing else holds a slot.
    let calls = (0..5).map(|_| app.login("alice", PASSWORD));
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.status(), 200);
    }
}
