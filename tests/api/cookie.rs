//! Cookie mode (`sessions.refresh_cookie = true`) and its CSRF defence, and body mode (the
//! default), which neither sets nor reads a cookie.

use figment::providers::Serialized;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp, PASSWORD};
use crate::on_both;

on_both!(
    body_mode_sets_and_reads_no_cookie,
    cookie_mode_keeps_the_refresh_token_out_of_the_body,
    cookie_requests_from_other_origins_are_refused,
    cookie_mode_leaves_the_token_endpoint_alone,
);

const APP: &str = "https://app.example";
const EVIL: &str = "https://evil.example";
const COOKIE: &str = "__Host-tessera_refresh";

async fn cookie_app(b: Backend) -> Option<TestApp> {
    TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("sessions.refresh_cookie", true))
            .merge(Serialized::default("http.cors_origins", vec![APP]))
    })
    .await
}

/// The refresh token in a `Set-Cookie` answer, after checking every attribute.
fn cookie_token(headers: &HeaderMap) -> String {
    let all: Vec<&str> = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    let cookie = all[0];
    let (pair, attrs) = cookie.split_once(';').unwrap();
    let (name, value) = pair.split_once('=').unwrap();
    assert_eq!(name, COOKIE);
    let attrs: Vec<&str> = attrs.split(';').map(str::trim).collect();
    for want in ["Path=/", "HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(attrs.contains(&want), "{want} missing from {cookie}");
    }
    assert!(
        !cookie.to_ascii_lowercase().contains("domain="),
        "a __Host- cookie has no Domain: {cookie}"
    );
    assert!(attrs.iter().any(|a| a.starts_with("Max-Age=")), "{cookie}");
    value.to_string()
}

impl TestApp {
    async fn cookie_post(
        &self,
        path: &str,
        token: &str,
        origin: Option<(&str, &str)>,
        body: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url(path))
            .header("cookie", format!("other=1; {COOKIE}={token}"));
        if let Some((name, value)) = origin {
            req = req.header(name, value);
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        req.send().await.unwrap()
    }

    async fn login_from(&self, origin: Option<&str>) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url("/login"))
            .json(&json!({"username": "alice", "password": PASSWORD}));
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req.send().await.unwrap()
    }
}

async fn body_mode_sets_and_reads_no_cookie(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    let r = app.login("alice", PASSWORD).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    let t: Value = r.json().await.unwrap();
    let rt = t["refresh_token"].as_str().unwrap();
    // A cookie is not a way in: only the body's token counts.
    let r = app
        .cookie_post("/refresh", rt, Some(("origin", APP)), None)
        .await;
    assert_eq!(r.status(), 400);
    let r = app
        .cookie_post("/refresh", rt, Some(("origin", APP)), Some("{}"))
        .await;
    assert_eq!(r.status(), 400);
    let r = app.refresh(rt).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    let t: Value = r.json().await.unwrap();
    assert!(t["refresh_token"].is_string());
}

async fn cookie_mode_keeps_the_refresh_token_out_of_the_body(b: Backend) {
    let Some(app) = cookie_app(b).await else {
        return;
    };
    app.create_user("alice", &[]).await;
    let r = app.login_from(Some(APP)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], APP);
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["pragma"], "no-cache");
    let rt = cookie_token(r.headers());
    let t: Value = r.json().await.unwrap();
    assert!(t.get("refresh_token").is_none(), "{t}");
    assert!(t["access_token"].is_string());
    assert!(t["expires_in"].as_i64().unwrap() > 0);
    assert!(t["refresh_expires_in"].as_i64().unwrap() > 0);
    assert_eq!(
        app.userinfo(t["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    // A non-browser client (no Origin) may log in too.
    assert_eq!(app.login_from(None).await.status(), 200);

    // /refresh reads the cookie, with the body empty, `{}` or `null`, and rotates it.
    let mut rt = rt;
    for body in [None, Some("{}"), Some("null")] {
        let r = app
            .cookie_post("/refresh", &rt, Some(("origin", APP)), body)
            .await;
        assert_eq!(r.status(), 200, "{body:?}");
        assert_eq!(r.headers()["pragma"], "no-cache");
        let next = cookie_token(r.headers());
        assert_ne!(next, rt);
        let t: Value = r.json().await.unwrap();
        assert!(t.get("refresh_token").is_none(), "{t}");
        assert_eq!(
            app.userinfo(t["access_token"].as_str().unwrap())
                .await
                .status(),
            200
        );
        rt = next;
    }
    // Tessera's own origin (that of tokens.issuer) may use the cookie too; so may a Referer
    // from an allowed page when a browser sends no Origin.
    let meta: Value = app
        .client
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let own = meta["issuer"].as_str().unwrap().to_string();
    let r = app
        .cookie_post("/refresh", &rt, Some(("origin", &own)), None)
        .await;
    assert_eq!(r.status(), 200);
    rt = cookie_token(r.headers());
    let r = app
        .cookie_post(
            "/refresh",
            &rt,
            Some(("referer", "https://app.example/app?x=1")),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    rt = cookie_token(r.headers());
    // In cookie mode the body is not a second way to present a token.
    let r = app
        .cookie_post(
            "/refresh",
            &rt,
            Some(("origin", APP)),
            Some(&json!({"refresh_token": rt}).to_string()),
        )
        .await;
    assert_eq!(r.status(), 400);
    // No cookie: malformed.
    let r = app
        .client
        .post(app.url("/refresh"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // /logout ends the session and clears the cookie.
    let r = app
        .cookie_post("/logout", &rt, Some(("origin", APP)), None)
        .await;
    assert_eq!(r.status(), 204);
    let cleared = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.starts_with(&format!("{COOKIE}=;")), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let r = app
        .cookie_post("/refresh", &rt, Some(("origin", APP)), None)
        .await;
    assert_eq!(r.status(), 401);
}

async fn cookie_requests_from_other_origins_are_refused(b: Backend) {
    let Some(app) = cookie_app(b).await else {
        return;
    };
    app.create_user("alice", &[]).await;
    let r = app.login_from(Some(APP)).await;
    let rt = cookie_token(r.headers());
    let t: Value = r.json().await.unwrap();
    let sid: uuid::Uuid = TestApp::claims(t["access_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let before = app.store.session(sid).await.unwrap().unwrap();

    let refused = [
        Some(("origin", EVIL)),
        Some(("origin", "null")),
        Some(("origin", "https://app.example.evil.example")),
        Some(("origin", "http://app.example")),
        Some(("referer", "https://evil.example/https://app.example")),
        None,
    ];
    for path in ["/refresh", "/logout"] {
        for origin in refused {
            let r = app.cookie_post(path, &rt, origin, None).await;
            assert_eq!(r.status(), 403, "{path} {origin:?}");
            assert!(
                r.headers().get("access-control-allow-origin").is_none(),
                "{path} {origin:?}"
            );
            assert!(r.headers().get("set-cookie").is_none(), "{path} {origin:?}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"], "invalid_request");
        }
    }
    // Neither rotated nor revoked: the stored session is as it was, and the cookie still works.
    let after = app.store.session(sid).await.unwrap().unwrap();
    assert_eq!(after.generation, before.generation);
    assert_eq!(after.revoked_at, None);
    let r = app
        .cookie_post("/refresh", &rt, Some(("origin", APP)), None)
        .await;
    assert_eq!(r.status(), 200);
    // A login from a page of another site (login CSRF) is refused too.
    let r = app.login_from(Some(EVIL)).await;
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    // Preflights: allowed methods and content-type for the listed origin, nothing for others.
    for (origin, allowed) in [(APP, true), (EVIL, false)] {
        let r = app
            .client
            .request(reqwest::Method::OPTIONS, app.url("/refresh"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        let h = r.headers();
        if allowed {
            assert_eq!(h["access-control-allow-origin"], APP);
            assert_eq!(h["access-control-allow-credentials"], "true");
            let methods = h["access-control-allow-methods"].to_str().unwrap();
            assert!(methods.contains("POST"), "{methods}");
            let headers = h["access-control-allow-headers"].to_str().unwrap();
            assert!(headers.contains("content-type"), "{headers}");
        } else {
            assert!(h.get("access-control-allow-origin").is_none());
        }
    }
}

async fn cookie_mode_leaves_the_token_endpoint_alone(b: Backend) {
    let Some(app) = cookie_app(b).await else {
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
                ("client_id", crate::helpers::CLIENT_ID),
                ("client_secret", crate::helpers::CLIENT_SECRET),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    let t: Value = r.json().await.unwrap();
    let rt = t["refresh_token"].as_str().unwrap();
    let r = app
        .form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("client_id", crate::helpers::CLIENT_ID),
                ("client_secret", crate::helpers::CLIENT_SECRET),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert!(t["refresh_token"].is_string());
}
