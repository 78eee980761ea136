//! Scopes and resources (RFC 6749 §3.3, RFC 8707): what each client may be granted, how a
//! refresh keeps or narrows the grant, and logout across clients and audiences.

use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp, CLIENT_ID, CLIENT_SECRET, PASSWORD};
use crate::on_both;

const CLIENT: Option<(&str, &str)> = Some((CLIENT_ID, CLIENT_SECRET));

on_both!(
    scope_is_granted_per_client_and_resource,
    refresh_keeps_or_narrows_the_grant,
    logout_leaves_other_clients_and_audiences_alone,
);

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
        json!([
            "admin",
            "offline_access",
            "openid",
            "orders:read",
            "orders:write",
            "profile"
        ])
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
