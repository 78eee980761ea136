//! The audit trail: security events as rows (`GET /admin/audit`), counted in `/metrics`,
//! purged after `audit.retention`, and never carrying a secret.

use std::time::Duration;

use figment::providers::Serialized;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{eventually, Backend, TestApp, CLIENT_ID, CLIENT_SECRET, PASSWORD};
use crate::on_both;

on_both!(
    security_events_are_audited_without_secrets,
    the_audit_listing_filters_and_pages,
    old_audit_events_are_purged,
);

/// Every event of the trail, through the admin API (all pages).
async fn all_events(app: &TestApp, admin: &str, filter: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/admin/audit?limit=1000{filter}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = app.admin(Method::GET, &path, admin, None).await;
        assert_eq!(r.status(), 200, "{path}");
        let page: Value = r.json().await.unwrap();
        out.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

async fn security_events_are_audited_without_secrets(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("throttle.account_free_failures", 2))
            .merge(Serialized::default("sessions.reuse_grace", "0s"))
            .merge(Serialized::default("audit.store_refreshes", true))
    })
    .await
    else {
        return;
    };
    let admin_user = app.create_user("root", &["admin"]).await;
    let alice = app.create_user("alice", &[]).await;
    let admin = app.login_ok("root").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    // Failures: a wrong password, an unknown user, a disabled one; then the throttle.
    assert_eq!(app.login("alice", "wrong password!").await.status(), 401);
    assert_eq!(app.login("nobody", "wrong password!").await.status(), 401);
    assert_eq!(app.login("nobody", "wrong password!").await.status(), 401);
    assert_eq!(app.login("nobody", "wrong password!").await.status(), 429);
    // A login with a request id of the caller's.
    let r = app
        .client
        .post(app.url("/login"))
        .header("x-request-id", "req-audit-1")
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let (rt, at) = (
        t["refresh_token"].as_str().unwrap().to_string(),
        t["access_token"].as_str().unwrap().to_string(),
    );
    let sid = TestApp::claims(&at)["sid"].as_str().unwrap().to_string();
    // Refresh, then reuse of the spent token (no grace window here).
    let r2: Value = app.refresh(&rt).await.json().await.unwrap();
    assert_eq!(app.refresh(&rt).await.status(), 401);
    // A second session, logged out; then logout everywhere.
    let t3 = app.login_ok("alice").await;
    let r = app
        .post_json(
            "/logout",
            &json!({"refresh_token": t3["refresh_token"].as_str().unwrap()}),
        )
        .await;
    assert_eq!(r.status(), 204);
    // The same logout again, eight at once, with the access token too: the session had ended,
    // so they change nothing and record nothing (one session.logout below).
    let again = json!({"refresh_token": t3["refresh_token"].as_str().unwrap()});
    let answers = futures::future::join_all((0..8).map(|_| {
        app.client
            .post(app.url("/logout"))
            .bearer_auth(t3["access_token"].as_str().unwrap())
            .json(&again)
            .send()
    }))
    .await;
    assert!(answers.into_iter().all(|r| r.unwrap().status() == 204));
    let t4 = app.login_ok("alice").await;
    let r = app
        .post_bearer("/logout/all", t4["access_token"].as_str().unwrap())
        .await;
    assert_eq!(r.status(), 204);
    // Account changes by the admin, and a key rotation.
    let path = format!("/admin/users/{}", alice.id);
    for (method, sub, body) in [
        (Method::PUT, "/roles", Some(json!({"roles": ["ops"]}))),
        (
            Method::PUT,
            "/password",
            Some(json!({"password": "a brand new password"})),
        ),
        (Method::POST, "/disable", None),
        (Method::POST, "/enable", None),
        (Method::POST, "/revoke", None),
        // What changes nothing records nothing: enabled again, the same roles again.
        (Method::POST, "/enable", None),
        (Method::PUT, "/roles", Some(json!({"roles": ["ops"]}))),
    ] {
        let r = app
            .admin(method, &format!("{path}{sub}"), &admin, body)
            .await;
        assert!(r.status().is_success(), "{sub}: {}", r.status());
    }
    app.auth
        .rotate_key(&tessera::auth::Caller::default())
        .await
        .unwrap();
    // Client authentication failures: a wrong secret, an unknown client.
    for (id, secret) in [(CLIENT_ID, "wrong-secret"), ("mallory", "whatever")] {
        let r = app
            .form("/introspect", &[("token", "x")], Some((id, secret)))
            .await;
        assert_eq!(r.status(), 401);
    }

    let wanted = [
        ("user.created", 2),
        ("login.failed", 3),
        ("login.throttled", 1),
        ("login.succeeded", 4),
        ("token.refreshed", 1),
        ("session.reuse_detected", 1),
        ("session.logout", 1),
        ("session.logout_all", 1),
        ("user.roles_changed", 1),
        ("user.password_changed", 1),
        ("user.disabled", 1),
        ("user.enabled", 1),
        ("user.sessions_revoked", 1),
        ("key.rotated", 1),
        ("client.auth_failed", 2),
    ];
    eventually(10, "every audit row written", || async {
        let events = all_events(&app, &admin, "").await;
        wanted
            .iter()
            .all(|(name, n)| named(&events, name).len() >= *n)
    })
    .await;
    let events = all_events(&app, &admin, "").await;
    for (name, n) in wanted {
        assert_eq!(named(&events, name).len(), n, "{name}: {events:#?}");
    }
    let alice_id = alice.id.to_string();
    // Each event has its time, user, session, address and request id where they apply.
    let ok = named(&events, "login.succeeded")
        .into_iter()
        .find(|e| e["request_id"] == "req-audit-1")
        .unwrap();
    assert_eq!(ok["user_id"], alice_id);
    assert_eq!(ok["session_id"], sid);
    assert_eq!(ok["ip"], "127.0.0.1");
    assert_eq!(ok["client_id"], "tessera");
    assert!(ok["actor_id"].is_null());
    // Admin actions name the administrator.
    let disabled = named(&events, "user.disabled")[0];
    assert_eq!(disabled["actor_id"], admin_user.id.to_string());
    assert!(ok["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        crate::helpers::members(ok),
        [
            "actor_id",
            "at",
            "client_id",
            "event",
            "id",
            "ip",
            "reason",
            "request_id",
            "session_id",
            "time",
            "user_id"
        ]
    );
    let mut reasons: Vec<(&str, Option<&str>)> = named(&events, "login.failed")
        .iter()
        .map(|e| (e["reason"].as_str().unwrap(), e["user_id"].as_str()))
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            ("bad_password", Some(alice_id.as_str())),
            ("unknown_user", None),
            ("unknown_user", None)
        ]
    );
    let reuse = named(&events, "session.reuse_detected")[0];
    assert_eq!(reuse["session_id"], sid);
    assert_eq!(reuse["user_id"], alice_id);
    let mut clients: Vec<(&str, Option<&str>)> = named(&events, "client.auth_failed")
        .iter()
        .map(|e| (e["reason"].as_str().unwrap(), e["client_id"].as_str()))
        .collect();
    clients.sort();
    assert_eq!(
        clients,
        vec![("bad_secret", Some(CLIENT_ID)), ("unknown_client", None)]
    );
    assert_eq!(named(&events, "user.disabled")[0]["user_id"], alice_id);
    assert!(named(&events, "user.created")
        .iter()
        .any(|e| e["user_id"] == admin_user.id.to_string()));

    // No secret anywhere in the trail: passwords, tokens, the client secret.
    let text = serde_json::to_string(&events).unwrap();
    for secret in [
        PASSWORD,
        "wrong password!",
        "a brand new password",
        &rt,
        r2["refresh_token"].as_str().unwrap(),
        &at,
        &admin,
        CLIENT_SECRET,
        "wrong-secret",
        "whatever",
    ] {
        assert!(!text.contains(secret), "a secret in the audit trail");
    }
    // The events are counted in /metrics (one registry per process: other tests add to it).
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let failed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"audit_events_total{event="login.failed"} "#))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no audit count in {metrics}"));
    assert!(failed >= 3, "{failed}");
}

async fn the_audit_listing_filters_and_pages(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "root", &["admin"]).await else {
        return;
    };
    let alice = app.create_user("alice", &[]).await;
    let admin = app.login_ok("root").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    // By default a refresh is logged and counted, not stored (audit.store_refreshes).
    let first = app.login_ok("alice").await;
    assert_eq!(
        app.refresh(first["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    for _ in 0..4 {
        app.login_ok("alice").await;
    }
    eventually(10, "seven logins audited", || async {
        all_events(&app, &admin, "&event=login.succeeded")
            .await
            .len()
            == 6
    })
    .await;
    assert!(all_events(&app, &admin, "&event=token.refreshed")
        .await
        .is_empty());
    // By user and event.
    let mine = all_events(&app, &admin, &format!("&user={}", alice.id)).await;
    assert_eq!(mine.len(), 6, "{mine:#?}"); // created + five logins
    assert!(mine.iter().all(|e| e["user_id"] == alice.id.to_string()));
    // Pages of two, oldest first, cover everything once.
    let everything = all_events(&app, &admin, "").await;
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = app
            .admin(
                Method::GET,
                &format!("/admin/audit?limit=2{cursor}"),
                &admin,
                None,
            )
            .await;
        let page: Value = r.json().await.unwrap();
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 2);
        paged.extend(events.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(paged, everything);
    let ids: Vec<&str> = paged.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    // `since` with an offset: the same instant as in UTC.
    let in_utc = all_events(&app, &admin, "&since=2020-01-01T05:00:00Z").await;
    let offset = all_events(&app, &admin, "&since=2020-01-01T00:00:00-05:00").await;
    assert_eq!(in_utc, offset);
    assert!(!in_utc.is_empty());
    // `since` in the future: nothing.
    assert!(all_events(&app, &admin, "&since=2999-01-01T00:00:00Z")
        .await
        .is_empty());
    // Bad filters are 400; no admin token is 401, a user's token 403.
    for bad in [
        "event=nope",
        "limit=0",
        "limit=1001",
        "since=yesterday",
        "cursor=xyz",
        "user=alice",
        "unknown=1",
    ] {
        let r = app
            .admin(Method::GET, &format!("/admin/audit?{bad}"), &admin, None)
            .await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    assert_eq!(app.get("/admin/audit").await.status(), 401);
    let user = app.login_ok("alice").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app.admin(Method::GET, "/admin/audit", &user, None).await;
    assert_eq!(r.status(), 403);
}

async fn old_audit_events_are_purged(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let now = tessera::time::now_ms();
    let row = |days: i64, event: &str| tessera::store::AuditEvent {
        actor_id: None,
        id: uuid::Uuid::now_v7(),
        at: now - days * 86_400_000,
        event: event.into(),
        user_id: None,
        session_id: None,
        client_id: None,
        ip: None,
        request_id: None,
        reason: None,
    };
    let (old, recent) = (row(91, "login.failed"), row(89, "login.failed"));
    app.store
        .insert_audit(&[old.clone(), recent.clone()])
        .await
        .unwrap();
    // A new replica purges at start-up (audit.retention = 90d), and then every minute.
    let replica = app.replica(|f| f).await;
    let ids = || async {
        app.store
            .audit_events(&tessera::store::AuditQuery {
                limit: 100,
                before: i64::MAX,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    eventually(10, "the old event purged", || async {
        !ids().await.contains(&old.id)
    })
    .await;
    assert!(ids().await.contains(&recent.id));
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(replica);
}
