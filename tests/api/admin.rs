//! `/admin/users…`: user management for callers with the `admin` role.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp, PASSWORD};
use crate::on_both;

on_both!(
    an_oversized_body_is_413_whatever_the_path,
    admin_creates_users,
    admin_lists_and_reads_users,
    admin_answers_404_for_an_unknown_user,
    admin_sets_roles,
    admin_disables_and_enables,
    admin_revokes_every_session,
    admin_sets_a_password,
    a_cut_off_refuses_only_tokens_issued_before_it,
    admin_requires_the_admin_role,
    admin_pages_and_filters_users,
    admin_sets_claims,
    custom_claims_never_pass_for_the_accounts_own,
    admin_lists_and_ends_sessions,
    a_role_change_sees_what_it_replaces_under_a_concurrent_writer,
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
    let long = "x".repeat(1025);
    for (pw, rule) in [
        ("password123", "password.min_score"),
        ("short", "password.min_length"),
        (long.as_str(), "at most 1024 bytes"),
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
    assert!(list["next_cursor"].is_null(), "{list}");
    let names: Vec<&str> = list["users"]
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
    let Some((app, _)) = TestApp::with_user(b, "root", &["admin"]).await else {
        return;
    };
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
    // A role claim in the token is not enough: the role is read from the database, and taking
    // it away cuts off the tokens issued before (401), at once.
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
        .set_roles(
            tessera::auth::UserRef::Name("root"),
            vec![],
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        app.admin(Method::GET, "/admin/users", &root, None)
            .await
            .status(),
        401
    );
    // A token issued after the change is valid, but lacks the role: 403.
    let demoted = app.login_ok("root").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        app.admin(Method::GET, "/admin/users", &demoted, None)
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

/// The names of one page, and its cursor.
async fn users_page(app: &TestApp, admin: &str, query: &str) -> (Vec<String>, Option<String>) {
    let r = app
        .admin(Method::GET, &format!("/admin/users?{query}"), admin, None)
        .await;
    assert_eq!(r.status(), 200, "{query}");
    let v: Value = r.json().await.unwrap();
    let names = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_string())
        .collect();
    (names, v["next_cursor"].as_str().map(str::to_string))
}

async fn admin_pages_and_filters_users(b: Backend) {
    let Some((app, admin)) = with_admin(b).await else {
        return;
    };
    for (name, roles) in [
        ("ann", &["ops"][..]),
        ("anna", &["ops", "db_admin"][..]),
        ("bob", &[][..]),
        ("bo_x", &["dbxadmin"][..]),
        ("carl", &["ops"][..]),
    ] {
        app.create_user(name, roles).await;
    }
    app.auth
        .set_disabled(
            tessera::auth::UserRef::Name("carl"),
            true,
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    // Pages of two walk every user once, in username order.
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let (names, next) = users_page(&app, &admin, &format!("limit=2{cursor}")).await;
        assert!(names.len() <= 2);
        all.extend(names);
        match next {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(all, ["ann", "anna", "bo_x", "bob", "carl", "root"]);
    // Filters: prefix (case-folded, wildcards literal), role (exact), state.
    assert_eq!(users_page(&app, &admin, "q=AN").await.0, ["ann", "anna"]);
    assert_eq!(users_page(&app, &admin, "q=bo_").await.0, ["bo_x"]);
    assert_eq!(
        users_page(&app, &admin, "q=%25").await.0,
        Vec::<String>::new()
    );
    assert_eq!(
        users_page(&app, &admin, "role=ops").await.0,
        ["ann", "anna", "carl"]
    );
    assert_eq!(users_page(&app, &admin, "role=db_admin").await.0, ["anna"]);
    assert_eq!(
        users_page(&app, &admin, "role=ops&disabled=false").await.0,
        ["ann", "anna"]
    );
    assert_eq!(users_page(&app, &admin, "disabled=true").await.0, ["carl"]);
    // A full last page says there is no next one.
    let (names, next) = users_page(&app, &admin, "role=ops&limit=3").await;
    assert_eq!((names.len(), next), (3, None));
    // Roles compare exactly, on both backends.
    app.create_user("shouty", &["OPS"]).await;
    assert_eq!(
        users_page(&app, &admin, "role=ops").await.0,
        ["ann", "anna", "carl"]
    );
    assert_eq!(users_page(&app, &admin, "role=OPS").await.0, ["shouty"]);
    // Full-width prefixes are folded like names.
    assert_eq!(
        users_page(&app, &admin, "q=%EF%BC%A1N").await.0,
        ["ann", "anna"]
    );
    for bad in ["q=%00", "cursor=a%00"] {
        let r = app
            .admin(Method::GET, &format!("/admin/users?{bad}"), &admin, None)
            .await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    for bad in [
        "limit=0",
        "limit=1001",
        "disabled=maybe",
        "role=a%20b",
        "x=1",
    ] {
        let r = app
            .admin(Method::GET, &format!("/admin/users?{bad}"), &admin, None)
            .await;
        assert_eq!(r.status(), 400, "{bad}");
    }
}

async fn admin_sets_claims(b: Backend) {
    let Some((app, admin, id)) = with_admin_and_carol(b).await else {
        return;
    };
    let path = format!("/admin/users/{id}/claims");
    let r = app
        .admin(
            Method::PUT,
            &path,
            &admin,
            Some(json!({"claims": {"tenant": "t1", "tier": 2}})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["claims"], json!({"tenant": "t1", "tier": 2}));
    // New tokens carry them.
    let t = login_carol(&app, "test").await;
    let claims = TestApp::claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["tenant"], "t1");
    assert_eq!(claims["tier"], 2);
    // /userinfo shows them to the operator's own client, after the standard claims, which
    // none of them replaces.
    let u: Value = app
        .userinfo(t["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(u["tenant"], "t1", "{u}");
    assert_eq!(u["tier"], 2, "{u}");
    assert_eq!(u["username"], "carol", "{u}");
    assert_eq!(u["sub"], id.to_string(), "{u}");
    assert_eq!(u.as_object().unwrap().len(), 6, "{u}");
    // Registered names, oversized objects and non-objects are refused; nothing changes.
    for body in [
        json!({"claims": {"sub": "someone-else"}}),
        json!({"claims": {"roles": ["admin"]}}),
        json!({"claims": {"big": "x".repeat(5000)}}),
        json!({"claims": ["tenant"]}),
        json!({"claims": {"groups": ["admin"]}}),
        json!({"claims": {"username": "root"}}),
        json!({"claims": {"": "empty"}}),
        json!({"claims": {"k": "a\u{0}b"}}),
        // OIDC claims Tessera sets from the account: a custom one would pass for Tessera's.
        json!({"claims": {"email": "ceo@bank.example"}}),
        json!({"claims": {"email_verified": true}}),
        json!({"claims": {"preferred_username": "alice"}}),
        json!({"claims": {"updated_at": 0}}),
        json!({"claims": {"at_hash": "AAAA"}}),
        json!({"claims": {"c_hash": "x"}}),
        json!({"claims": {"active": true}}),
    ] {
        let r = app
            .admin(Method::PUT, &path, &admin, Some(body.clone()))
            .await;
        assert_eq!(r.status(), 400, "{body}");
    }
    let stored = app.store.user_by_username("carol").await.unwrap().unwrap();
    assert_eq!(
        serde_json::Value::Object(stored.claims),
        json!({"tenant": "t1", "tier": 2})
    );
    let r = app
        .admin(
            Method::PUT,
            &format!("/admin/users/{}/claims", uuid::Uuid::now_v7()),
            &admin,
            Some(json!({"claims": {}})),
        )
        .await;
    assert_eq!(r.status(), 404);
}

/// Claims named like the account's own OIDC claims, stored before such names were refused (or
/// written past the API), never reach a token or `/userinfo`: an unverified address stays
/// unverified, whatever the custom claims say.
async fn custom_claims_never_pass_for_the_accounts_own(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.create_user("bob", &[]).await;
    let forged = json!({"email": "ceo@bank.example", "email_verified": true,
        "preferred_username": "alice", "updated_at": 0, "at_hash": "AAAA", "tenant": "t1"});
    let serde_json::Value::Object(map) = forged else {
        unreachable!()
    };
    let stored = app
        .store
        .set_claims("bob", &map, tessera::time::now_ms())
        .await
        .unwrap();
    assert!(stored.is_some());
    let access = app.login_ok("bob").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let claims = TestApp::claims(&access);
    assert_eq!(claims["tenant"], "t1", "{claims}");
    for name in [
        "email",
        "email_verified",
        "preferred_username",
        "updated_at",
        "at_hash",
    ] {
        assert!(claims.get(name).is_none(), "{name} in {claims}");
    }
    let u: Value = app.userinfo(&access).await.json().await.unwrap();
    assert_eq!(u["tenant"], "t1", "{u}");
    for name in [
        "email",
        "email_verified",
        "preferred_username",
        "updated_at",
        "at_hash",
    ] {
        assert!(u.get(name).is_none(), "{name} in {u}");
    }
}

async fn login_carol(app: &TestApp, user_agent: &str) -> Value {
    let r = app
        .client
        .post(app.url("/login"))
        .header("user-agent", user_agent)
        .json(&json!({"username": "carol", "password": CAROL_PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn admin_lists_and_ends_sessions(b: Backend) {
    let Some((app, admin, id)) = with_admin_and_carol(b).await else {
        return;
    };
    let first = login_carol(&app, "carol-laptop/1.0").await;
    let second = login_carol(&app, "carol-phone/1.0").await;
    let sid = |t: &Value| {
        TestApp::claims(t["access_token"].as_str().unwrap())["sid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let list: Value = app
        .admin(
            Method::GET,
            &format!("/admin/users/{id}/sessions"),
            &admin,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let sessions = list.as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{list}");
    // Newest first, with times, address and state; never a token.
    assert_eq!(sessions[0]["id"], sid(&second));
    assert_eq!(sessions[1]["id"], sid(&first));
    for s in sessions {
        assert_eq!(s["active"], true);
        assert_eq!(s["ip"], "127.0.0.1");
        assert!(s["created_at"].as_i64().unwrap() > 0);
        assert!(s["last_refreshed_at"].as_i64().unwrap() > 0);
    }
    assert_eq!(sessions[0]["user_agent"], "carol-phone/1.0");
    let text = list.to_string();
    assert!(!text.contains(first["refresh_token"].as_str().unwrap()));
    // Ending one session: its tokens stop working, the other session is untouched.
    let r = app
        .admin(
            Method::DELETE,
            &format!("/admin/sessions/{}", sid(&first)),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.refresh(first["refresh_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    assert_eq!(
        app.userinfo(first["access_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    assert_eq!(
        app.userinfo(second["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    let stored = app
        .store
        .session(sid(&first).parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.revoked_reason.as_deref(), Some("revoked_by_admin"));
    let list: Value = app
        .admin(
            Method::GET,
            &format!("/admin/users/{id}/sessions"),
            &admin,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list[1]["active"], false);
    assert_eq!(list[1]["revoked_reason"], "revoked_by_admin");
    // Again: still 204. Unknown: 404; malformed: 400.
    let again = app
        .admin(
            Method::DELETE,
            &format!("/admin/sessions/{}", sid(&first)),
            &admin,
            None,
        )
        .await;
    assert_eq!(again.status(), 204);
    let unknown = app
        .admin(
            Method::DELETE,
            &format!("/admin/sessions/{}", uuid::Uuid::now_v7()),
            &admin,
            None,
        )
        .await;
    assert_eq!(unknown.status(), 404);
    let bad = app
        .admin(Method::DELETE, "/admin/sessions/not-a-uuid", &admin, None)
        .await;
    assert_eq!(bad.status(), 400);
    // The CLI sees the same sessions and ends the other one.
    let (url, master) = (app.db.url().to_string(), app.master_key.clone());
    let second_sid = sid(&second);
    let (listed, ended) = tokio::task::spawn_blocking(move || {
        let listed = crate::cli::tessera(&url, &master, &["session", "list", "Carol"], None);
        let ended = crate::cli::tessera(&url, &master, &["session", "revoke", &second_sid], None);
        (listed, ended)
    })
    .await
    .unwrap();
    assert!(listed.0, "{}", listed.1);
    assert!(
        listed.1.contains(&sid(&second)) && listed.1.contains("revoked"),
        "{}",
        listed.1
    );
    assert!(ended.0, "{}", ended.1);
    crate::helpers::eventually(10, "the CLI's revocation seen", || async {
        app.userinfo(second["access_token"].as_str().unwrap())
            .await
            .status()
            == 401
    })
    .await;
    // Sixteen revocations of one session at once: every one answered 204, and one event (each
    // read the session live before any ended it).
    let third = login_carol(&app, "carol-tablet/1.0").await;
    let path = format!("/admin/sessions/{}", sid(&third));
    let answers =
        futures::future::join_all((0..16).map(|_| app.admin(Method::DELETE, &path, &admin, None)))
            .await;
    assert!(answers.iter().all(|r| r.status() == 204));
    // Each ending is an audit event naming the administrator (the CLI has none); ending an
    // ended session again records nothing.
    let root = app.store.user_by_username("root").await.unwrap().unwrap();
    let q = tessera::store::AuditQuery {
        event: Some("session.revoked".into()),
        limit: 10,
        before: i64::MAX,
        ..Default::default()
    };
    crate::helpers::eventually(10, "session.revoked audited", || async {
        app.store.audit_events(&q).await.unwrap().len() >= 3
    })
    .await;
    // Every answer was in before the wait: a duplicate event would be queued by now.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let rows = app.store.audit_events(&q).await.unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0].actor_id, Some(root.id));
    assert_eq!(rows[0].session_id, Some(sid(&first).parse().unwrap()));
    assert_eq!(rows[1].actor_id, None);
    assert_eq!(rows[2].session_id, Some(sid(&third).parse().unwrap()));
}

/// Whether a role change cuts off tokens depends on the roles it replaced, so it must be told
/// what it really replaced. Another writer holds alice's row (Postgres: `FOR UPDATE`; SQLite:
/// the write lock) while a change starts, then gives her `r-mid` and commits: the change must
/// report `r-mid` as replaced. Reading before the lock (the old code read the user first)
/// reported `r-start`, and taking `r-mid` away went without a cut-off.
async fn a_role_change_sees_what_it_replaces_under_a_concurrent_writer(b: Backend) {
    use sqlx::Connection;
    let Some((app, _)) = TestApp::with_user(b, "alice", &["r-start"]).await else {
        return;
    };
    let url = app.db.url().to_string();
    let mut pg = None;
    let mut lite = None;
    match b {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN").execute(&mut c).await.unwrap();
            sqlx::query("SELECT id FROM users WHERE username = 'alice' FOR UPDATE")
                .execute(&mut c)
                .await
                .unwrap();
            pg = Some(c);
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .unwrap();
            lite = Some(c);
        }
    }
    let store = app.store.clone();
    let change = tokio::spawn(async move {
        store
            .set_roles("alice", &["r-new".to_string()], tessera::time::now_ms())
            .await
    });
    // Let the change reach the lock (if it is quicker, it reads `r-mid` anyway).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mid = r#"UPDATE users SET roles = '["r-mid"]' WHERE username = 'alice'"#;
    if let Some(mut c) = pg {
        sqlx::query(mid).execute(&mut c).await.unwrap();
        sqlx::query("COMMIT").execute(&mut c).await.unwrap();
    }
    if let Some(mut c) = lite {
        sqlx::query(mid).execute(&mut c).await.unwrap();
        sqlx::query("COMMIT").execute(&mut c).await.unwrap();
    }
    let (_, replaced) = change.await.unwrap().unwrap().unwrap();
    assert_eq!(replaced, ["r-mid"]);
    let stored = app.store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(stored.roles, ["r-new"]);
}

/// The body is read before the path's id is judged: an oversized body is 413 with a malformed
/// id too, sent chunked (no Content-Length to refuse it by) as with a valid one.
async fn an_oversized_body_is_413_whatever_the_path(b: Backend) {
    let Some((app, admin)) = with_admin(b).await else {
        return;
    };
    let big = format!("{{\"roles\": [\"{}\"]}}", "r".repeat(20_000));
    for path in ["/admin/users/not-a-uuid/roles", "/admin/users/1/password"] {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
            .as_bytes()
            .chunks(4096)
            .map(|c| Ok(c.to_vec()))
            .collect();
        let r = app
            .client
            .put(app.url(path))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413, "{path}");
    }
    // Nothing was written: the only account is as it was.
    let root = app.store.user_by_username("root").await.unwrap().unwrap();
    assert_eq!(root.roles, vec!["admin"]);
    assert_eq!(app.store.list_users().await.unwrap().len(), 1);
    // A malformed id with a body that fits is 400 invalid_request.
    let r = app
        .admin(
            Method::PUT,
            "/admin/users/not-a-uuid/roles",
            &admin,
            Some(serde_json::json!({"roles": []})),
        )
        .await;
    assert_eq!(r.status(), 400);
}
