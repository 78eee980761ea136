//! `POST /refresh` and `POST /logout`: rotation, the grace window, reuse detection, expiry.

use std::time::Duration;

use figment::providers::Serialized;
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp};
use crate::on_both;

on_both!(
    refresh_rotates_and_the_successor_works,
    parallel_refreshes_get_one_successor,
    reuse_after_the_grace_window_revokes_the_family,
    a_slow_rotation_answers_in_time_for_its_retry,
    idle_and_absolute_expiry_end_sessions,
    bad_refresh_requests,
    logout_revokes_session_and_access_token,
    logout_with_only_a_refresh_token,
    disabled_users_and_password_changes_end_sessions,
);

async fn session_of(app: &TestApp, access: &str) -> tessera::store::Session {
    let sid = TestApp::claims(access)["sid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    app.store.session(sid).await.unwrap().unwrap()
}

async fn refresh_rotates_and_the_successor_works(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "alice", &["r"]).await else {
        return;
    };
    let t0 = app.login_ok("alice").await;
    let r = app.refresh(t0["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t1: Value = r.json().await.unwrap();
    assert_eq!(t1["token_type"], "Bearer");
    assert_ne!(t1["refresh_token"], t0["refresh_token"]);
    assert_ne!(t1["access_token"], t0["access_token"]);
    let c0 = TestApp::claims(t0["access_token"].as_str().unwrap());
    let c1 = TestApp::claims(t1["access_token"].as_str().unwrap());
    assert_eq!(c0["sid"], c1["sid"], "a refresh stays in its session");
    assert_eq!(c1["roles"], json!(["r"]));
    assert_eq!(
        app.userinfo(t1["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    let t2: Value = app
        .refresh(t1["refresh_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert!(t2["refresh_token"].is_string());
    let s = session_of(&app, t2["access_token"].as_str().unwrap()).await;
    assert_eq!(s.generation, 2);
    assert!(s.revoked_at.is_none());
    // Refresh tokens are not stored anywhere in the database.
    let rt = t2["refresh_token"].as_str().unwrap();
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM sessions WHERE user_agent = $1 OR ip = $1 OR revoked_reason = $1",
            rt
        )
        .await,
        0
    );
}

async fn parallel_refreshes_get_one_successor(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    let t0 = app.login_ok("alice").await;
    let rt = t0["refresh_token"].as_str().unwrap().to_string();
    let calls = (0..12).map(|_| {
        let client = app.client.clone();
        let url = app.url("/refresh");
        let rt = rt.clone();
        async move {
            client
                .post(url)
                .json(&json!({"refresh_token": rt}))
                .send()
                .await
                .unwrap()
        }
    });
    let responses = futures::future::join_all(calls).await;
    let mut successors = Vec::new();
    for r in responses {
        assert_eq!(r.status(), 200, "a concurrent refresh failed");
        let v: Value = r.json().await.unwrap();
        successors.push(v["refresh_token"].as_str().unwrap().to_string());
    }
    assert!(
        successors.iter().all(|s| *s == successors[0]),
        "more than one live successor"
    );
    assert_ne!(successors[0], rt);
    // Exactly one rotation happened, and the session is alive.
    let s = session_of(&app, t0["access_token"].as_str().unwrap()).await;
    assert_eq!(s.generation, 1);
    assert!(s.revoked_at.is_none());
    // A late retry inside the grace window gets the same successor too.
    let late: Value = app.refresh(&rt).await.json().await.unwrap();
    assert_eq!(late["refresh_token"], successors[0]);
    // The successor works and the session lives on.
    let next = app.refresh(&successors[0]).await;
    assert_eq!(next.status(), 200);
    let s = session_of(&app, t0["access_token"].as_str().unwrap()).await;
    assert_eq!(s.generation, 2);
    assert!(s.revoked_at.is_none());
}

/// A server whose `sessions.reuse_grace` is `grace`, and a login of alice there.
async fn alice_with_grace(b: Backend, grace: &'static str) -> Option<(TestApp, Value)> {
    let app = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("sessions.reuse_grace", grace))
    })
    .await?;
    app.create_user("alice", &[]).await;
    let t0 = app.login_ok("alice").await;
    Some((app, t0))
}

async fn reuse_after_the_grace_window_revokes_the_family(b: Backend) {
    let Some((app, t0)) = alice_with_grace(b, "1s").await else {
        return;
    };
    let rt0 = t0["refresh_token"].as_str().unwrap();
    let t1: Value = app.refresh(rt0).await.json().await.unwrap();
    let access1 = t1["access_token"].as_str().unwrap();
    assert_eq!(app.userinfo(access1).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // The old token again, outside the window: theft signal (RFC 9700 §4.14.2).
    let r = app.refresh(rt0).await;
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_grant");
    let s = session_of(&app, access1).await;
    assert!(s.revoked_at.is_some());
    assert_eq!(s.revoked_reason.as_deref(), Some("refresh_token_reuse"));
    // The whole family is dead: the legitimate successor and its access token too.
    assert_eq!(
        app.refresh(t1["refresh_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    assert_eq!(app.userinfo(access1).await.status(), 401);
    // Other sessions of the user are untouched.
    app.login_ok("alice").await;
}

/// A rotation that waits on the database answers 503 while its token can still be retried:
/// it waits at most the reuse grace less 5 s (1 s of a 6 s grace here). The retry of the same
/// token then gets the successor, whether or not the first rotation committed meanwhile, and
/// the family lives on. (Waiting out the request's timeout, the retry came after the grace and
/// revoked the family.) The database is held up by a lock on the session's row. On SQLite the
/// lock's busy timeout (5 s) also ends the wait, before anything committed; on Postgres the
/// rotation commits once the lock goes, after its 503.
async fn a_slow_rotation_answers_in_time_for_its_retry(b: Backend) {
    use sqlx::Connection;
    let Some((app, t0)) = alice_with_grace(b, "6s").await else {
        return;
    };
    let rt0 = t0["refresh_token"].as_str().unwrap();
    let sid = session_of(&app, t0["access_token"].as_str().unwrap())
        .await
        .id;
    let url = app.db.url().to_string();
    let refused = if url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut c)
            .await
            .unwrap();
        let r = app.refresh(rt0).await;
        sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap();
        r
    } else {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        let mut tx = c.begin().await.unwrap();
        sqlx::query("SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE")
            .bind(sid)
            .execute(&mut *tx)
            .await
            .unwrap();
        let r = app.refresh(rt0).await;
        tx.rollback().await.unwrap();
        r
    };
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let v: Value = refused.json().await.unwrap();
    assert_eq!(v["error"], "temporarily_unavailable", "{v}");
    // The client's retry, as told.
    let r = app.refresh(rt0).await;
    assert_eq!(r.status(), 200);
    let t1: Value = r.json().await.unwrap();
    let access1 = t1["access_token"].as_str().unwrap();
    assert_eq!(app.userinfo(access1).await.status(), 200);
    let s = session_of(&app, access1).await;
    assert!(s.revoked_at.is_none(), "{:?}", s.revoked_reason);
    assert_eq!(
        app.refresh(t1["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
}

async fn idle_and_absolute_expiry_end_sessions(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("sessions.idle_ttl", "2s"))
            .merge(Serialized::default("sessions.absolute_ttl", "4s"))
            .merge(Serialized::default("sessions.reuse_grace", "0s"))
    })
    .await
    else {
        return;
    };
    app.create_user("alice", &[]).await;
    // Idle: unused for longer than idle_ttl.
    let idle = app.login_ok("alice").await;
    assert_eq!(idle["refresh_expires_in"], 2);
    // Absolute: kept busy, but ends at absolute_ttl.
    let busy = app.login_ok("alice").await;
    let mut rt = busy["refresh_token"].as_str().unwrap().to_string();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = app.refresh(&rt).await;
        assert_eq!(r.status(), 200, "a session in use must stay alive");
        let v: Value = r.json().await.unwrap();
        assert!(v["refresh_expires_in"].as_i64().unwrap() <= 2);
        rt = v["refresh_token"].as_str().unwrap().to_string();
    }
    assert_eq!(
        app.refresh(idle["refresh_token"].as_str().unwrap())
            .await
            .status(),
        401,
        "idle expiry"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = app.refresh(&rt).await;
    assert_eq!(r.status(), 401, "absolute expiry");
    // Expiry is not revocation: the rows say why.
    let s = session_of(&app, busy["access_token"].as_str().unwrap()).await;
    assert!(s.revoked_at.is_none());
    assert!(s.absolute_expires_at <= tessera::time::now_ms());
}

async fn bad_refresh_requests(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    let t = app.login_ok("alice").await;
    let good = t["refresh_token"].as_str().unwrap();
    let mut tampered = good.to_string();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [
        tampered.as_str(),
        "garbage",
        &"A".repeat(75),
        &good[..40],
        t["access_token"].as_str().unwrap(),
    ] {
        let r = app.refresh(bad).await;
        assert_eq!(r.status(), 401, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_grant");
    }
    for body in [
        json!({}),
        json!({"refresh_token": ""}),
        json!({"refresh_token": 5}),
        json!([]),
    ] {
        let r = app.post_json("/refresh", &body).await;
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_request");
    }
    // None of that hurt the real session.
    assert_eq!(app.refresh(good).await.status(), 200);
}

async fn logout_revokes_session_and_access_token(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    let t = app.login_ok("alice").await;
    let access = t["access_token"].as_str().unwrap();
    let other = app.login_ok("alice").await;
    assert_eq!(app.userinfo(access).await.status(), 200);
    let r = app
        .client
        .post(app.url("/logout"))
        .bearer_auth(access)
        .json(&json!({"refresh_token": t["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = app.userinfo(access).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains(r#"error="invalid_token""#));
    assert_eq!(
        app.refresh(t["refresh_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    // Stored state: the jti is on the denylist until the token's expiry; the session is revoked.
    let c = TestApp::claims(access);
    let jti = c["jti"].as_str().unwrap();
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM revoked_tokens WHERE jti = $1", jti)
            .await,
        1
    );
    assert_eq!(
        app.scalar_i64("SELECT expires_at FROM revoked_tokens WHERE jti = $1", jti)
            .await,
        c["exp"].as_i64().unwrap() * 1000
    );
    let s = session_of(&app, access).await;
    assert_eq!(s.revoked_reason.as_deref(), Some("logout"));
    // Logging out twice is fine; the other session is untouched.
    let r = app.post_bearer("/logout", access).await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.userinfo(other["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
}

async fn logout_with_only_a_refresh_token(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    let t = app.login_ok("alice").await;
    let r = app
        .post_json("/logout", &json!({"refresh_token": t["refresh_token"]}))
        .await;
    assert_eq!(r.status(), 204);
    // The access token of the revoked session stops working at once (invariant 2).
    app.assert_pair_refused(&t).await;
    // Nothing to log out: 400. An unknown token: 204 (nothing to reveal).
    let r = app.client.post(app.url("/logout")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    assert_eq!(
        app.post_json("/logout", &json!({"refresh_token": "nope"}))
            .await
            .status(),
        204
    );
    let r = app
        .client
        .post(app.url("/logout"))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

async fn disabled_users_and_password_changes_end_sessions(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    app.create_user("bob", &[]).await;
    let a = app.login_ok("alice").await;
    app.auth
        .set_disabled(
            tessera::auth::UserRef::Name("alice"),
            true,
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    app.assert_pair_refused(&a).await;
    app.auth
        .set_disabled(
            tessera::auth::UserRef::Name("alice"),
            false,
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    // Re-enabled: access tokens from before stay cut off, and the session stays ended (it
    // refreshed again, so a disable and re-enable let a stolen refresh token back in).
    assert_eq!(
        app.userinfo(a["access_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = app.refresh(a["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 401);
    let revoked = app
        .scalar_i64(
            "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NOT NULL AND user_id = \
             (SELECT id FROM users WHERE username = $1)",
            "alice",
        )
        .await;
    assert_eq!(revoked, 1);
    // A new login works.
    let fresh = app.login_ok("alice").await;
    assert_eq!(
        app.userinfo(fresh["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );

    let t = app.login_ok("bob").await;
    app.auth
        .set_password(
            tessera::auth::UserRef::Name("bob"),
            secrecy::SecretString::from("a brand new password"),
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    app.assert_pair_refused(&t).await;
    let s = session_of(&app, t["access_token"].as_str().unwrap()).await;
    assert_eq!(s.revoked_reason.as_deref(), Some("password_changed"));
    assert_eq!(
        app.login("bob", crate::helpers::PASSWORD).await.status(),
        401
    );
    let r = app.login("bob", "a brand new password").await;
    assert_eq!(r.status(), 200);
    let fresh: Value = r.json().await.unwrap();
    assert_eq!(
        app.userinfo(fresh["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
}
