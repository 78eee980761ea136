//! `/admin/users…`: user management for callers with the `admin` role.

use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp, PASSWORD};
use crate::on_both;

on_both!(admin_manages_users, admin_requires_the_admin_role);

impl TestApp {
    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }
}

async fn admin_manages_users(b: Backend) {
    use reqwest::Method;
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.create_user("root", &["admin"]).await;
    let admin = app.login_ok("root").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    let r = app
        .admin(
            Method::POST,
            "/admin/users",
            &admin,
            Some(json!({"username": "Carol", "password": "carol's password", "roles": ["ops"]})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let carol: Value = r.json().await.unwrap();
    assert_eq!(carol["username"], "carol");
    assert_eq!(carol["roles"], json!(["ops"]));
    assert!(carol.get("password_hash").is_none());
    let id = carol["id"].as_str().unwrap().to_string();
    // Duplicates (after normalisation), weak passwords and bad roles are refused.
    let r = app
        .admin(
            Method::POST,
            "/admin/users",
            &admin,
            Some(json!({"username": "CAROL", "password": "another password"})),
        )
        .await;
    assert_eq!(r.status(), 409);
    let r = app
        .admin(
            Method::POST,
            "/admin/users",
            &admin,
            Some(json!({"username": "dan", "password": "short"})),
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = app
        .admin(
            Method::POST,
            "/admin/users",
            &admin,
            Some(json!({"username": "dan", "password": "long enough pw", "roles": ["a b"]})),
        )
        .await;
    assert_eq!(r.status(), 400);
    // List and get.
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
    assert_eq!(got["id"], carol["id"]);
    assert_eq!(
        app.admin(Method::GET, "/admin/users/not-a-uuid", &admin, None)
            .await
            .status(),
        400
    );
    // An unknown user is a 404 that says so, not "No such endpoint", for every operation.
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

    // Roles: new tokens carry them.
    let r = app
        .admin(
            Method::PUT,
            &format!("/admin/users/{id}/roles"),
            &admin,
            Some(json!({"roles": ["ops", "billing"]})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let t = app
        .login("carol", "carol's password")
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        TestApp::claims(t["access_token"].as_str().unwrap())["roles"],
        json!(["ops", "billing"])
    );
    let carol_access = t["access_token"].as_str().unwrap().to_string();

    // Disable: existing tokens stop working, logins fail; enable: logins work again.
    assert_eq!(
        app.admin(
            Method::POST,
            &format!("/admin/users/{id}/disable"),
            &admin,
            None
        )
        .await
        .status(),
        204
    );
    assert_eq!(app.userinfo(&carol_access).await.status(), 401);
    assert_eq!(app.login("carol", "carol's password").await.status(), 401);
    assert_eq!(
        app.admin(
            Method::POST,
            &format!("/admin/users/{id}/enable"),
            &admin,
            None
        )
        .await
        .status(),
        204
    );
    let t = app
        .login("carol", "carol's password")
        .await
        .json::<Value>()
        .await
        .unwrap();

    // Revoke every session.
    assert_eq!(
        app.admin(
            Method::POST,
            &format!("/admin/users/{id}/revoke"),
            &admin,
            None
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        app.refresh(t["refresh_token"].as_str().unwrap())
            .await
            .status(),
        401
    );

    // Set a password: the old one stops working.
    let r = app
        .admin(
            Method::PUT,
            &format!("/admin/users/{id}/password"),
            &admin,
            Some(json!({"password": "a fresh password"})),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(app.login("carol", "carol's password").await.status(), 401);
    assert_eq!(app.login("carol", "a fresh password").await.status(), 200);
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM users WHERE $1 = $1", "")
            .await,
        2
    );
}

async fn admin_requires_the_admin_role(b: Backend) {
    use reqwest::Method;
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
