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
    a_session_is_created_only_under_the_credential_verified,
    correct_logins_in_parallel_all_succeed,
    a_client_written_forwarded_header_is_not_believed,
);

/// A Django PBKDF2 hash of [`PASSWORD`]: re-hashed to argon2id at the first login.
const DJANGO: &str = "pbkdf2_sha256$1000$saltysalt123$bdlERmmw+duuk5FecWFTVO0M81ggrAuyxRe4nczc3tw=";
const NEW_PASSWORD: &str = "a brand new password";

/// The old password's failures after a reset are expected: no throttle in the way.
fn no_throttle(f: figment::Figment) -> figment::Figment {
    use figment::providers::Serialized;
    f.merge(Serialized::default("throttle.account_free_failures", 0))
        .merge(Serialized::default("throttle.ip_free_failures", 0))
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
            password_hash: DJANGO.into(),
            roles: vec![],
            claims: Default::default(),
            disabled: false,
            now: tessera::time::now_ms(),
        })
        .await
        .unwrap();
    id
}

/// Logins with `password` for `name`, four at a time, until `stop` is set; every answer.
async fn login_stream(
    app: &TestApp,
    name: &str,
    password: &str,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<(u16, Value)> {
    use std::sync::atomic::Ordering;
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let calls = (0..4).map(|_| app.login(name, password));
        for r in futures::future::join_all(calls).await {
            let status = r.status().as_u16();
            out.push((status, r.json().await.unwrap_or(Value::Null)));
        }
    }
    out
}

/// Runs logins with the old password while an administrator sets a new one; returns the
/// answers of every login, all finished.
async fn reset_during_logins(app: &TestApp, name: &str, id: Uuid) -> Vec<(u16, Value)> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let admin = admin_token(app).await;
    let stop = AtomicBool::new(false);
    let logins = login_stream(app, name, PASSWORD, &stop);
    let reset = async {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let r = app
            .admin(
                reqwest::Method::PUT,
                &format!("/admin/users/{id}/password"),
                &admin,
                Some(json!({"password": NEW_PASSWORD})),
            )
            .await;
        assert_eq!(r.status(), 204);
        tokio::time::sleep(Duration::from_millis(150)).await;
        stop.store(true, Ordering::Relaxed);
    };
    let (answers, ()) = tokio::join!(logins, reset);
    answers
}

/// lldap PR #1423: the re-hash's compare-and-set compared against the row re-read after the
/// password check, which already held the reset's hash, so the old password came back.
async fn a_login_rehash_never_undoes_a_concurrent_reset(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, no_throttle).await else {
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
    let Some(app) = TestApp::spawn_with(b, no_throttle).await else {
        return;
    };
    let id = import_legacy(&app, "legacy").await;
    let answers = reset_during_logins(&app, "legacy", id).await;
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

/// The store's fence, one change at a time: a session is created only while the user's
/// cut-off is the one read with the credential, so a password change, disable, role removal
/// or logout-everywhere made after that read refuses it, even within the same millisecond.
async fn a_session_is_created_only_under_the_credential_verified(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let user = app.create_user("alice", &["ops"]).await;
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
        .create_session(&session(user.id), read)
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
            .create_session(&session(user.id), read)
            .await
            .unwrap();
        assert!(refused.is_none(), "{what}: a session was created after it");
    }
}

/// Invariant 11: 20 concurrent logins with the right password for one account (devices or
/// workers of one service account) all succeed; none is throttled because others were in
/// flight, and nothing is left counted.
async fn correct_logins_in_parallel_all_succeed(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
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
            "SELECT CAST(COALESCE(SUM(failures + pending), 0) AS BIGINT) FROM login_throttle
             WHERE key <> $1",
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
