//! `/admin/users…`: user management for callers with the `admin` role.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp, PASSWORD};
use crate::on_both;

on_both!(
    admin_creates_users,
    admin_lists_and_reads_users,
    admin_answers_404_for_an_unknown_user,
    admin_sets_roles,
    admin_disables_and_enables,
    admin_revokes_every_session,
    admin_sets_a_password,
    a_cut_off_refuses_only_tokens_issued_before_it,
    admin_requires_the_admin_role,
);

/// A server with an admin (`root`); returns the admin's access token.
async fn with_admin(b: Backend) -> Option<(TestApp, String)> {
    let app = TestApp::spawn(b).await?;
    app.create_user("root", &["admin"]).await;
    let admin = app.login_ok("root").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    Some((app, admin))
}

/// Creates `carol` (role `ops`) through the admin API; returns the answer's user.
async fn create_carol(app: &TestApp, admin: &str) -> Value {
    let r = app
        .admin(
            Method::POST,
            "/admin/users",
            admin,
            Some(json!({"username": "Carol", "password": CAROL_PW, "roles": ["ops"]})),
        )
        .await;
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

/// A server with an admin and `carol`; returns the admin's access token and carol's id.
async fn with_admin_and_carol(b: Backend) -> Option<(TestApp, String, String)> {
    let (app, admin) = with_admin(b).await?;
    let carol = create_carol(&app, &admin).await;
    let id = carol["id"].as_str().unwrap().to_string();
    Some((app, admin, id))
}

const CAROL_PW: &str = "carol's password";

/// Carol's token response; asserts the login succeeded.
async fn carol_logs_in(app: &TestApp) -> Value {
    let r = app.login("carol", CAROL_PW).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn admin_creates_users(b: Backend) {
    let Some((app, admin)) = with_admin(b).await else {
        return;
    };
    let carol = create_carol(&app, &admin).await;
    assert_eq!(carol["username"], "carol");
    assert_eq!(carol["roles"], json!(["ops"]));
    assert!(carol.get("password_hash").is_none());
    // Duplicates (after normalisation), weak passwords and bad roles are refused.
    for (body, status) in [
        (
            json!({"username": "CAROL", "password": "another password"}),
            409,
        ),
        (json!({"username": "dan", "password": "short"}), 400),
        // A common password (NIST SP 800-63B: refused against a dictionary).
        (json!({"username": "dan", "password": "password123"}), 400),
        (
            json!({"username": "dan", "password": "long enough pw", "roles": ["a b"]}),
            400,
        ),
    ] {
        let r = app
            .admin(Method::POST, "/admin/users", &admin, Some(body.clone()))
            .await;
        assert_eq!(r.status(), status, "{body}");
    }
    // A refused password is answered with the rule it broke, and never echoed.
    for (pw, rule) in [
        ("password123", "password.min_score"),
        ("short", "password.min_length"),
    ] {
        let r = app
            .admin(
                Method::POST,
                "/admin/users",
                &admin,
                Some(json!({"username": "dan", "password": pw})),
            )
            .await;
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_request");
        let why = v["error_description"].as_str().unwrap();
        assert!(why.contains(rule), "{why}");
        assert!(!why.contains(pw), "{why}");
    }
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM users WHERE $1 = $1", "")
            .await,
        2
    );
}

async fn admin_lists_and_reads_users(b: Backend) {
    let Some((app, admin, id)) = with_admin_and_carol(b).await else {
        return;
    };
    let list: Value = app
        .admin(Method::GET, "/admin/users", &admin, None)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["carol", "root"]);
    let got: Value = app
        .admin(Method::GET, &format!("/admin/users/{id}"), &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["username"], "carol");
    assert!(got.get("password_hash").is_none());
    assert_eq!(
        app.admin(Method::GET, "/admin/users/not-a-uuid", &admin, None)
            .await
            .status(),
        400
    );
}

/// An unknown user is a 404 that says so, not "No such endpoint", for every operation.
async fn admin_answers_404_for_an_unknown_user(b: Backend) {
    let Some((app, admin, _)) = with_admin_and_carol(b).await else {
        return;
    };
    let unknown = uuid::Uuid::now_v7();
    for (method, path, body) in [
        (Method::GET, format!("/admin/users/{unknown}"), None),
        (
            Method::PUT,
            format!("/admin/users/{unknown}/roles"),
            Some(json!({"roles": ["ops"]})),
        ),
        (
            Method::PUT,
            format!("/admin/users/{unknown}/password"),
            Some(json!({"password": "a long new password"})),
        ),
        (
            Method::POST,
            format!("/admin/users/{unknown}/disable"),
            None,
        ),
        (Method::POST, format!("/admin/users/{unknown}/enable"), None),
        (Method::POST, format!("/admin/users/{unknown}/revoke"), None),
    ] {
        let r = app.admin(method, &path, &admin, body).await;
        assert_eq!(r.status(), 404, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body,
            json!({"error": "not_found", "error_description": "No such user."}),
            "{path}"
        );
    }
    // An unknown path is still "No such endpoint".
    let r = app
        .admin(Method::GET, "/admin/nothing-here", &admin, None)
        .await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error_description"], "No such endpoint.");
}

/// New tokens carry the new roles.
async fn admin_sets_roles(b: Backend) {
    let Some((app, admin, id)) = with_admin_and_carol(b).await else {
        return;
    };
    let r = app
        .admin(
            Method::PUT,
            &format!("/admin/users/{id}/roles"),
            &admin,
            Some(json!({"roles": ["ops", "billing"]})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let shown: Value = r.json().await.unwrap();
    assert_eq!(shown["roles"], json!(["ops", "billing"]));
    let t = carol_logs_in(&app).await;
    assert_eq!(
        TestApp::claims(t["access_token"].as_str().unwrap())["roles"],
        json!(["ops", "billing"])
    );
    let r = app
        .admin(
            Method::PUT,
            &format!("/admin/users/{id}/roles"),
            &admin,
            Some(json!({"roles": ["a b"]})),
        )
        .await;
    assert_eq!(r.status(), 400);
}

/// Disabling cuts off existing tokens and logins; enabling lets logins work again.
async fn admin_disables_and_enables(b: Backend) {
    let Some((app, admin, id)) = with_admin_and_carol(b).await else {
        return;
    };
    let carol_access = carol_logs_in(&app).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let path = |what: &str| format!("/admin/users/{id}/{what}");
    let r = app
        .admin(Method::POST, &path("disable"), &admin, None)
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(app.userinfo(&carol_access).await.status(), 401);
    assert_eq!(app.login("carol", CAROL_PW).await.status(), 401);
    let r = app.admin(Method::POST, &path("enable"), &admin, None).await;
    assert_eq!(r.status(), 204);
    carol_logs_in(&app).await;
}

async fn admin_revokes_every_session(b: Backend) {
    let Some((app, admin, id)) = with_admin_and_carol(b).await else {
        return;
    };
    let t = carol_logs_in(&app).await;
    let r = app
        .admin(
            Method::POST,
            &format!("/admin/users/{id}/revoke"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    app.assert_pair_refused(&t).await;
    let sid = TestApp::claims(t["access_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let session = app.store.session(sid.parse().unwrap()).await.unwrap();
    assert_eq!(
        session.unwrap().revoked_reason.as_deref(),
        Some("revoked_by_admin")
    );
}

/// A new password: the old one stops working.
async fn admin_sets_a_password(b: Backend) {
    let Some((app, admin, id)) = with_admin_and_carol(b).await else {
        return;
    };
    let r = app
        .admin(
            Method::PUT,
            &format!("/admin/users/{id}/password"),
            &admin,
            Some(json!({"password": "a fresh password"})),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(app.login("carol", CAROL_PW).await.status(), 401);
    assert_eq!(app.login("carol", "a fresh password").await.status(), 200);
}

async fn admin_requires_the_admin_role(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.create_user("root", &["admin"]).await;
    app.create_user("eve", &["user"]).await;
    let eve = app.login_ok("eve").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app.admin(Method::GET, "/admin/users", &eve, None).await;
    assert_eq!(r.status(), 403);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "insufficient_scope"
    );
    let r = app
        .admin(
            Method::POST,
            "/admin/users",
            &eve,
            Some(json!({"username": "x", "password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status(), 403);
    assert!(app.store.user_by_username("x").await.unwrap().is_none());
    // No token, or a forged one: 401.
    assert_eq!(
        app.client
            .get(app.url("/admin/users"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        app.admin(Method::GET, "/admin/users", "a.b.c", None)
            .await
            .status(),
        401
    );
    // A role claim in the token is not enough: the role is read from the database, so taking
    // it away takes effect at once.
    let root = app.login_ok("root").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        app.admin(Method::GET, "/admin/users", &root, None)
            .await
            .status(),
        200
    );
    app.auth
        .set_roles(tessera::auth::UserRef::Name("root"), vec![])
        .await
        .unwrap();
    assert_eq!(
        app.admin(Method::GET, "/admin/users", &root, None)
            .await
            .status(),
        403
    );
}

/// Within one second: carol's token from before a disable is refused; disabled, re-enabled and
/// logged in again, her new token and its refresh are accepted. Cut-offs compare issuance
/// times to the millisecond (the `jti` is a UUIDv7 of the issuance time), not `iat` seconds.
async fn a_cut_off_refuses_only_tokens_issued_before_it(b: Backend) {
    let Some((app, admin, id)) = with_admin_and_carol(b).await else {
        return;
    };
    let path = |what: &str| format!("/admin/users/{id}/{what}");
    for _ in 0..3 {
        let before = carol_logs_in(&app).await;
        for what in ["disable", "enable"] {
            let r = app.admin(Method::POST, &path(what), &admin, None).await;
            assert_eq!(r.status(), 204);
        }
        let after = carol_logs_in(&app).await;
        let access = |t: &Value| t["access_token"].as_str().unwrap().to_string();
        assert_eq!(app.userinfo(&access(&before)).await.status(), 401);
        assert_eq!(app.userinfo(&access(&after)).await.status(), 200);
        let r = app.refresh(after["refresh_token"].as_str().unwrap()).await;
        assert_eq!(r.status(), 200);
        let refreshed: Value = r.json().await.unwrap();
        assert_eq!(app.userinfo(&access(&refreshed)).await.status(), 200);
        // The same for a revocation of every session: a login right after it works.
        let r = app.admin(Method::POST, &path("revoke"), &admin, None).await;
        assert_eq!(r.status(), 204);
        app.assert_pair_refused(&refreshed).await;
        let again = carol_logs_in(&app).await;
        assert_eq!(app.userinfo(&access(&again)).await.status(), 200);
    }
}
