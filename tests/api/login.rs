//! `POST /login`.

use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp, PASSWORD};
use crate::on_both;

on_both!(
    login_issues_tokens_and_a_session,
    credential_failures_are_indistinguishable,
    usernames_are_normalised,
    lookalike_usernames_make_no_new_account,
    malformed_logins_are_invalid_request,
    outdated_hashes_are_upgraded_at_login,
    repeated_failures_are_throttled,
    a_parallel_burst_hashes_at_most_the_allowance,
    a_burst_from_one_address_hashes_at_most_its_allowance,
    a_burst_across_replicas_hashes_at_most_the_allowance,
    dropped_logins_do_not_lock_the_account,
    forwarded_addresses_only_from_trusted_proxies,
);

async fn login_issues_tokens_and_a_session(b: Backend) {
    let Some((app, user)) = TestApp::with_user(b, "alice", &["admin", "dev"]).await else {
        return;
    };
    let r = app.login("alice", PASSWORD).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["pragma"], "no-cache");
    assert!(r.headers().contains_key("x-request-id"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["refresh_expires_in"], 7 * 86400);
    let access = body["access_token"].as_str().unwrap();
    let refresh = body["refresh_token"].as_str().unwrap();
    assert!(
        refresh.len() >= 43,
        "refresh token must carry at least 256 bits"
    );

    // RFC 9068 header and claims.
    let header = jsonwebtoken::decode_header(access).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert!(header.kid.is_some());
    let c = TestApp::claims(access);
    assert_eq!(c["sub"], user.id.to_string());
    assert_eq!(c["iss"], "http://127.0.0.1:8080");
    assert_eq!(c["aud"], "tessera");
    assert_eq!(c["client_id"], "tessera");
    assert_eq!(c["roles"], json!(["admin", "dev"]));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 600);
    assert_eq!(c["nbf"], c["iat"]);
    assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()));

    // The session row exists, is live, and stores no token.
    let sid = c["sid"].as_str().unwrap();
    let session = app
        .store
        .session(sid.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(session.revoked_at.is_none());
    assert_eq!(session.generation, 0);
    assert_eq!(session.user_id, user.id);
    assert_eq!(session.ip.as_deref(), Some("127.0.0.1"));
    // Two logins, two distinct tokens and sessions.
    let again = app.login_ok("alice").await;
    assert_ne!(again["access_token"], body["access_token"]);
    assert_ne!(again["refresh_token"], body["refresh_token"]);
    assert_ne!(
        TestApp::claims(again["access_token"].as_str().unwrap())["jti"],
        c["jti"]
    );
}

async fn credential_failures_are_indistinguishable(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "bob", &[]).await else {
        return;
    };
    app.create_user("carol", &[]).await;
    app.auth
        .set_disabled(
            tessera::auth::UserRef::Name("carol"),
            true,
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();

    let mut bodies = Vec::new();
    for (u, p) in [
        ("bob", "wrong password!"),
        ("nobody", PASSWORD),
        ("carol", PASSWORD),
        ("bob", "Correct horse battery staple"),
    ] {
        let r = app.login(u, p).await;
        assert_eq!(r.status(), 401, "{u}");
        assert_eq!(r.headers()["content-type"], "application/json");
        bodies.push(r.bytes().await.unwrap());
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "failure bodies differ: {bodies:?}"
    );
    let body: Value = serde_json::from_slice(&bodies[0]).unwrap();
    assert_eq!(body["error"], "invalid_grant");
    // No failed attempt created a session.
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM sessions WHERE $1 = $1", "")
            .await,
        0
    );
    // The disabled user still exists, and the right password still works for bob.
    app.login_ok("bob").await;
}

async fn usernames_are_normalised(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let u = app.create_user("  Dörte ", &[]).await;
    assert_eq!(u.username, "dörte");
    app.login_ok("DÖRTE").await;
    // Fullwidth forms normalise (NFKC) to the same account.
    app.login_ok("ｄöｒｔｅ").await;
    let dup = app
        .auth
        .create_user(
            "DÖRTE",
            secrecy::SecretString::from(PASSWORD),
            vec![],
            &tessera::auth::Caller::default(),
        )
        .await;
    assert!(
        dup.is_err(),
        "a username equal after normalisation must be refused"
    );
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM users WHERE $1 = $1", "")
            .await,
        1
    );
}

async fn malformed_logins_are_invalid_request(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "dave", &[]).await else {
        return;
    };
    let url = app.url("/login");
    let long = "x".repeat(1025);
    let cases: Vec<(&str, Option<&str>, String)> = vec![
        ("not json", Some("application/json"), "{not json".into()),
        (
            "missing password",
            Some("application/json"),
            r#"{"username":"dave"}"#.into(),
        ),
        (
            "missing username",
            Some("application/json"),
            r#"{"password":"x"}"#.into(),
        ),
        (
            "wrong types",
            Some("application/json"),
            r#"{"username":1,"password":true}"#.into(),
        ),
        ("array", Some("application/json"), "[]".into()),
        ("empty body", Some("application/json"), "".into()),
        (
            "no content type",
            None,
            r#"{"username":"dave","password":"x"}"#.into(),
        ),
        (
            "form",
            Some("application/x-www-form-urlencoded"),
            "username=dave&password=x".into(),
        ),
        (
            "empty password",
            Some("application/json"),
            r#"{"username":"dave","password":""}"#.into(),
        ),
        (
            "empty username",
            Some("application/json"),
            r#"{"username":"","password":"x"}"#.into(),
        ),
        (
            "duplicate member",
            Some("application/json"),
            r#"{"username":"dave","password":"a","password":"b"}"#.into(),
        ),
        (
            "password over 1024 bytes",
            Some("application/json"),
            json!({"username": "dave", "password": long}).to_string(),
        ),
        ("null", Some("application/json"), "null".into()),
    ];
    for (what, ct, body) in cases {
        let mut req = app.client.post(&url).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 400, "{what}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_request", "{what}");
        assert!(v["error_description"].is_string(), "{what}");
    }
    // Still works afterwards.
    app.login_ok("dave").await;
}

async fn outdated_hashes_are_upgraded_at_login(b: Backend) {
    use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
    let Some((app, _)) = TestApp::with_user(b, "erin", &[]).await else {
        return;
    };
    let old = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(20480, 2, 1, None).unwrap(),
    )
    .hash_password(PASSWORD.as_bytes())
    .unwrap()
    .to_string();
    // Fixture: store a hash made with other parameters.
    let user = app.store.user_by_username("erin").await.unwrap().unwrap();
    app.store
        .rehash_password(user.id, &user.password_hash, &old, 1)
        .await
        .unwrap();
    assert!(app
        .store
        .user_by_username("erin")
        .await
        .unwrap()
        .unwrap()
        .password_hash
        .contains("m=20480"));
    app.login_ok("erin").await;
    let after = app
        .store
        .user_by_username("erin")
        .await
        .unwrap()
        .unwrap()
        .password_hash;
    assert!(
        after.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{after}"
    );
    app.login_ok("erin").await;
}

async fn repeated_failures_are_throttled(b: Backend) {
    use figment::providers::Serialized;
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("throttle.account_free_failures", 3))
            .merge(Serialized::default("throttle.backoff_base", "2s"))
    })
    .await
    else {
        return;
    };
    app.create_user("alice", &[]).await;
    app.create_user("bob", &[]).await;
    // Three free failures, all plain 401s; the third uses up the allowance and starts the wait.
    for _ in 0..3 {
        assert_eq!(app.login("alice", "not the password").await.status(), 401);
    }
    // Now even the right password waits: 429 slow_down with Retry-After.
    let r = app.login("ALICE", PASSWORD).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "retry-after {wait}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "slow_down");
    // The count lives in the database, shared by replicas.
    assert_eq!(throttle_failures(&app, "u:alice").await, 3);
    // Unknown usernames are throttled the same way, so a 429 reveals nothing.
    for _ in 0..3 {
        assert_eq!(app.login("ghost", "not the password").await.status(), 401);
    }
    assert_eq!(app.login("ghost", PASSWORD).await.status(), 429);
    // Other accounts are unaffected.
    app.login_ok("bob").await;
    // After the wait the right password works and clears the count.
    tokio::time::sleep(std::time::Duration::from_millis(wait * 1000 + 100)).await;
    app.login_ok("alice").await;
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM login_throttle WHERE key = $1",
            "u:alice"
        )
        .await,
        0
    );
    assert_eq!(app.login("alice", "not the password").await.status(), 401);
}

/// Sends every `(username, password)` login at once; returns how many were answered 401
/// (their password was hashed) and how many 429 `slow_down` (refused before hashing).
async fn burst(apps: &[&TestApp], logins: &[(String, &str)]) -> (usize, usize) {
    let calls = logins
        .iter()
        .enumerate()
        .map(|(i, (u, p))| apps[i % apps.len()].login(u, p));
    let (mut hashed, mut refused) = (0, 0);
    for r in futures::future::join_all(calls).await {
        match r.status().as_u16() {
            401 => hashed += 1,
            429 => {
                assert!(r.headers().contains_key("retry-after"));
                assert_eq!(r.json::<Value>().await.unwrap()["error"], "slow_down");
                refused += 1;
            }
            s => panic!("unexpected status {s} in a burst"),
        }
    }
    (hashed, refused)
}

/// Throttle settings for the burst tests: only the given allowances, a long wait.
fn allowances(account: u32, ip: u32) -> impl FnOnce(figment::Figment) -> figment::Figment {
    use figment::providers::Serialized;
    move |f| {
        f.merge(Serialized::default(
            "throttle.account_free_failures",
            account,
        ))
        .merge(Serialized::default("throttle.ip_free_failures", ip))
        .merge(Serialized::default("throttle.backoff_base", "1m"))
        // The attempts beyond the allowance wait for the first ones to be hashed: on a loaded
        // machine (a parallel test suite on two cores) that can take longer than the default.
        .merge(Serialized::default("password.queue_timeout", "20s"))
    }
}

/// 60 wrong guesses for one username, released together: the attempt is reserved before
/// hashing, so only the allowance (5) reaches argon2 and the rest get 429 at once.
async fn a_parallel_burst_hashes_at_most_the_allowance(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, allowances(5, 0)).await else {
        return;
    };
    app.create_user("alice", &[]).await;
    let guesses: Vec<(String, &str)> = (0..60).map(|_| ("alice".into(), "wrong guess")).collect();
    assert_eq!(burst(&[&app], &guesses).await, (5, 55));
    assert_eq!(throttle_failures(&app, "u:alice").await, 5);
    // The right password waits too, and the count is exactly the hashed failures.
    assert_eq!(app.login("alice", PASSWORD).await.status(), 429);
}

/// 10 different usernames from one address at once, with `ip_free_failures = 5`.
async fn a_burst_from_one_address_hashes_at_most_its_allowance(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, allowances(0, 5)).await else {
        return;
    };
    let guesses: Vec<(String, &str)> = (0..10).map(|i| (format!("user{i}"), "wrong")).collect();
    assert_eq!(burst(&[&app], &guesses).await, (5, 5));
    assert_eq!(throttle_failures(&app, "ip:127.0.0.1").await, 5);
}

/// The reservation is in the database: two replicas sharing a burst still hash only the
/// allowance between them. A success hands its address reservation back.
async fn a_burst_across_replicas_hashes_at_most_the_allowance(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, allowances(5, 50)).await else {
        return;
    };
    let replica = app.replica(allowances(5, 50)).await;
    app.create_user("alice", &[]).await;
    app.create_user("bob", &[]).await;
    app.login_ok("bob").await;
    let guesses: Vec<(String, &str)> = (0..40).map(|_| ("alice".into(), "wrong")).collect();
    assert_eq!(burst(&[&app, &replica], &guesses).await, (5, 35));
    // Bob's success is not counted against the address: 5 failures only.
    assert_eq!(throttle_failures(&app, "ip:127.0.0.1").await, 5);
}

/// RFC 8265 PRECIS: names with invisible characters, a soft hyphen, a bidirectional override
/// or a space cannot become accounts that display like an existing one; an account created
/// before PRECIS (here, a name with a space) still logs in.
async fn lookalike_usernames_make_no_new_account(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "root", &["admin"]).await else {
        return;
    };
    app.create_user("alice", &[]).await;
    let admin = app.login_ok("root").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    for name in [
        "ali\u{200B}ce",
        "ali\u{00AD}ce",
        "\u{202E}ecila",
        "al ice",
        "alice\u{FE0F}",
    ] {
        let r = app
            .admin(
                reqwest::Method::POST,
                "/admin/users",
                &admin,
                Some(json!({"username": name, "password": "a long enough password"})),
            )
            .await;
        assert_eq!(r.status(), 400, "{name:?}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
        // Logging in with it is a plain failed login, never alice's account.
        assert_eq!(app.login(name, PASSWORD).await.status(), 401, "{name:?}");
    }
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM users WHERE $1 = $1", "")
            .await,
        2
    );
    // A name stored before PRECIS, with a space: found by the old normalisation.
    app.create_user("johnsmith", &[]).await;
    app.exec_sql("UPDATE users SET username = 'john smith' WHERE username = 'johnsmith'".into())
        .await;
    app.login_ok("John Smith").await;
}

/// Logins whose requests die before their password is checked (a 5 ms request timeout on one
/// replica) are not failures (invariant 11): they count nothing, and the slots they held are
/// handed back when they are dropped, so the right password works at once, with the key's
/// allowance of 2 still whole.
async fn dropped_logins_do_not_lock_the_account(b: Backend) {
    use figment::providers::Serialized;
    let Some(app) = TestApp::spawn_with(b, allowances(2, 0)).await else {
        return;
    };
    let hasty = app
        .replica(|f| allowances(2, 0)(f).merge(Serialized::default("http.request_timeout", "5ms")))
        .await;
    app.create_user("alice", &[]).await;
    let calls = (0..20).map(|_| hasty.login("alice", PASSWORD));
    for r in futures::future::join_all(calls).await {
        let s = r.status().as_u16();
        assert!(s == 503 || s == 200, "{s}");
    }
    // Every slot a dropped request held is handed back (the throttle's statements run on
    // tasks of their own, which a dropped request does not cut short), and every dropped
    // login has run to its end: no slot held, and no new session for a second. (A login
    // still on its way to its slot when the slots were first seen handed back succeeded
    // later, after the wrong guesses below, and cleared their count: on a loaded machine
    // the last answer was 200.) Within 20 s: the full suite's load can hold the twenty
    // logins' hashing for seconds; a slot is handed back by deleting its row, so its lease
    // running out would not pass.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut last = -1;
    loop {
        let held = app
            .scalar_i64(
                "SELECT COUNT(*) FROM login_attempts WHERE key = $1",
                "u:alice",
            )
            .await;
        let sessions = app
            .scalar_i64(
                "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE u.username = $1",
                "alice",
            )
            .await;
        if held == 0 && sessions == last {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped logins did not settle: {held} slots held"
        );
        last = sessions;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    // ...and nothing was counted as a failure.
    assert_eq!(
        app.scalar_i64(
            "SELECT COALESCE(MAX(failures), 0) FROM login_throttle WHERE key = $1",
            "u:alice",
        )
        .await,
        0
    );
    app.login_ok("alice").await;
    // Two wrong guesses still use the allowance up: nothing dropped was counted.
    assert_eq!(app.login("alice", "wrong guess").await.status(), 401);
    assert_eq!(app.login("alice", "wrong guess").await.status(), 401);
    assert_eq!(app.login("alice", PASSWORD).await.status(), 429);
}

/// How many sessions were opened from `ip`.
async fn ips(app: &TestApp, ip: &str) -> i64 {
    app.scalar_i64("SELECT COUNT(*) FROM sessions WHERE ip = $1", ip)
        .await
}

/// Logs in with an extra header; returns the status.
async fn login_via(app: &TestApp, password: &str, name: &str, value: &str) -> u16 {
    app.client
        .post(app.url("/login"))
        .header(name, value)
        .json(&json!({"username": "alice", "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The forwarded-for header (`X-Forwarded-For` by default) names the client only when the
/// socket peer is a trusted proxy; then sessions and the throttle use the forwarded address. From anyone else,
/// a forged header changes nothing.
async fn forwarded_addresses_only_from_trusted_proxies(b: Backend) {
    use figment::providers::Serialized;
    let Some(trusting) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default(
            "http.trusted_proxies",
            ["127.0.0.1/32"],
        ))
    })
    .await
    else {
        return;
    };
    trusting.create_user("alice", &[]).await;
    assert_eq!(
        login_via(
            &trusting,
            PASSWORD,
            "x-forwarded-for",
            "198.51.100.1, 203.0.113.7"
        )
        .await,
        200
    );
    assert_eq!(ips(&trusting, "203.0.113.7").await, 1);
    // The proxy writes X-Forwarded-For (the default): a Forwarded header is the client's own.
    assert_eq!(
        login_via(
            &trusting,
            PASSWORD,
            "forwarded",
            r#"for="[2001:db8::1]:4711""#
        )
        .await,
        200
    );
    assert_eq!(ips(&trusting, "2001:db8::1").await, 0);
    assert_eq!(ips(&trusting, "127.0.0.1").await, 1);
    assert_eq!(
        login_via(&trusting, "wrong", "x-forwarded-for", "203.0.113.8").await,
        401
    );
    assert_eq!(throttle_failures(&trusting, "ip:203.0.113.8").await, 1);
    // The default trusts no proxy: the socket address is used, whatever the header says.
    let Some(plain) = TestApp::spawn(b).await else {
        return;
    };
    plain.create_user("alice", &[]).await;
    assert_eq!(
        login_via(&plain, PASSWORD, "x-forwarded-for", "203.0.113.7").await,
        200
    );
    assert_eq!(ips(&plain, "127.0.0.1").await, 1);
    assert_eq!(ips(&plain, "203.0.113.7").await, 0);
    assert_eq!(
        login_via(&plain, "wrong", "x-forwarded-for", "203.0.113.8").await,
        401
    );
    assert_eq!(throttle_failures(&plain, "ip:127.0.0.1").await, 1);
}

/// The failures counted against a throttle key (`u:NAME` or `ip:ADDRESS`); panics if none.
async fn throttle_failures(app: &TestApp, key: &str) -> i64 {
    app.scalar_i64("SELECT failures FROM login_throttle WHERE key = $1", key)
        .await
}
