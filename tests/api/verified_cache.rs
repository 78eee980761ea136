//! The verified-token cache (`tokens.verified_cache`): a token sent again skips the signature
//! check, and yet is refused at once after a logout, a revoked session, a disable, a role taken
//! away, its key leaving the set, and `exp` plus leeway. Only tokens that verified are kept.

use std::time::Duration;

use figment::providers::Serialized;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{eventually, Backend, TestApp};
use crate::on_both;

on_both!(
    a_cached_token_is_refused_at_once_when_revoked,
    a_cached_token_dies_with_its_key_and_its_expiry
);

fn access(t: &Value) -> String {
    t["access_token"].as_str().unwrap().to_string()
}

fn sid(token: &str) -> String {
    TestApp::claims(token)["sid"].as_str().unwrap().to_string()
}

async fn a_cached_token_is_refused_at_once_when_revoked(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.create_user("root", &["admin"]).await;
    let root = access(&app.login_ok("root").await);
    let users: Vec<_> = ["alice", "bob", "carol", "dave"]
        .iter()
        .map(|n| n.to_string())
        .collect();
    let mut ids = Vec::new();
    for n in &users {
        ids.push(app.create_user(n, &["admin"]).await.id);
    }
    let before = app.auth.verified_tokens_held();
    let mut tokens = Vec::new();
    for n in &users {
        let t = access(&app.login_ok(n).await);
        // Verified once, then found: each token is held once, however often it is sent.
        for _ in 0..3 {
            assert_eq!(app.userinfo(&t).await.status(), 200);
        }
        tokens.push(t);
    }
    assert_eq!(app.auth.verified_tokens_held(), before + users.len());
    // Forgeries and garbage are never held.
    for i in 0..200 {
        let t = &tokens[0];
        let forged = format!("{}{}", &t[..t.len() - 4], ["AAAA", "BBBB"][i % 2]);
        assert_eq!(app.userinfo(&forged).await.status(), 401);
        assert_eq!(app.userinfo(&format!("x.y.{i}")).await.status(), 401);
    }
    assert_eq!(app.auth.verified_tokens_held(), before + users.len());

    // alice logs out with her token.
    assert_eq!(app.post_bearer("/logout", &tokens[0]).await.status(), 204);
    assert_eq!(app.userinfo(&tokens[0]).await.status(), 401);
    // bob's session is revoked by an administrator.
    let r = app
        .admin(
            Method::DELETE,
            &format!("/admin/sessions/{}", sid(&tokens[1])),
            &root,
            None,
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(app.userinfo(&tokens[1]).await.status(), 401);
    // carol is disabled.
    let r = app
        .admin(
            Method::POST,
            &format!("/admin/users/{}/disable", ids[2]),
            &root,
            None,
        )
        .await;
    assert!(r.status().is_success());
    assert_eq!(app.userinfo(&tokens[2]).await.status(), 401);
    // dave loses the admin role: his cached token no longer opens the admin API.
    let r = app
        .admin(Method::GET, "/admin/users", &tokens[3], None)
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .admin(
            Method::PUT,
            &format!("/admin/users/{}/roles", ids[3]),
            &root,
            Some(json!({"roles": []})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .admin(Method::GET, "/admin/users", &tokens[3], None)
        .await;
    assert!(matches!(r.status().as_u16(), 401 | 403), "{}", r.status());
    // The administrator's own cached token still works.
    assert_eq!(app.userinfo(&root).await.status(), 200);
}

async fn a_cached_token_dies_with_its_key_and_its_expiry(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("tokens.access_ttl", "2s"))
            .merge(Serialized::default("tokens.leeway", "1s"))
    })
    .await
    else {
        return;
    };
    app.create_user("erin", &[]).await;
    let t = access(&app.login_ok("erin").await);
    // A second token, never presented before its expiry: the path without the cache.
    let fresh = access(&app.login_ok("erin").await);
    assert_eq!(app.userinfo(&t).await.status(), 200);
    assert_eq!(app.userinfo(&t).await.status(), 200);
    let exp = TestApp::claims(&t)["exp"].as_i64().unwrap();
    let exp_fresh = TestApp::claims(&fresh)["exp"].as_i64().unwrap();
    // From the second that exp + leeway names (RFC 7519 §4.1.4: "on or after"), the held
    // claims count for nothing, and a token never seen is refused too.
    let now = tessera::time::now_ms();
    let wait = (exp.max(exp_fresh) + 1) * 1000 + 100 - now;
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
    assert_eq!(app.userinfo(&t).await.status(), 401);
    assert_eq!(app.userinfo(&fresh).await.status(), 401);

    // A token whose key leaves the key set is refused once the server has the new set.
    let t = access(&app.login_ok("erin").await);
    assert_eq!(app.userinfo(&t).await.status(), 200);
    assert_eq!(app.userinfo(&t).await.status(), 200);
    let kid = jsonwebtoken::decode_header(&t).unwrap().kid.unwrap();
    app.exec_sql(format!(
        "UPDATE signing_keys SET remove_at = 1 WHERE kid = '{kid}'"
    ))
    .await;
    // The server has the new set once its JWKS lacks the key (under load that took longer
    // than the token's 2 s life, and a 401 by expiry passed for one by the key).
    eventually(10, "the key leaves the JWKS", || async {
        let jwks: Value = app
            .get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .unwrap();
        !jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid.as_str())
    })
    .await;
    assert_eq!(app.userinfo(&t).await.status(), 401);
}
