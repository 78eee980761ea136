//! Logout across apps: the end-session endpoint (RP-Initiated Logout 1.0) and back-channel
//! logout tokens (Back-Channel Logout 1.0), delivered from durable rows.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::helpers::{eventually, Backend, TestApp};
use crate::oidc::{
    code_for_web, exchange, hidden_fields, op, op_with, pkce, redirected, request, Browser, Issuer,
    APP_CB, APP_LOGGED_OUT,
};
use crate::on_both;

on_both!(
    a_hinted_logout_ends_the_sso_session_and_its_tokens,
    a_hinted_logout_ends_the_session_it_decided_on,
    a_logout_without_a_valid_hint_asks_first,
    a_logout_confirmation_answers_only_for_the_account_it_was_shown_to,
    a_foreign_logout_keeps_the_cookie_and_a_hint_alone_ends_nothing,
    back_channel_logout_tokens_are_delivered_retried_and_survive_a_restart,
    administrators_list_and_end_sso_sessions,
    a_password_change_or_a_disable_sends_logout_tokens,
);

/// Signs `web` in through a fresh browser: the browser and the token answer.
async fn signed_in(app: &TestApp) -> (Browser, Value) {
    let mut browser = Browser::new(app);
    let (verifier, challenge) = pkce();
    let code = code_for_web(app, &mut browser, &challenge).await;
    let r = exchange(app, "web", &code, &verifier, APP_CB).await;
    assert_eq!(r.status(), 200);
    (browser, r.json().await.unwrap())
}

fn end_session_query(params: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.extend_pairs(params);
    format!("/end_session?{}", q.finish())
}

/// A hinted logout ends the SSO session it decided on, even when a sign-in in another tab
/// (`prompt=login`, the same user) renewed the cookie between the decision and the ending.
/// Before, the ending looked the session up again by the request's cookie, found none, and
/// the relying party was sent to its post-logout URI with its tokens still live (seen once in
/// a race of the two at the HTTP level; here the two steps are taken apart).
async fn a_hinted_logout_ends_the_session_it_decided_on(b: Backend) {
    use tessera::auth::oidc::{LogoutParams, SsoCookie};
    let Some(app) = op(b).await else { return };
    let (mut browser, t) = signed_in(&app).await;
    let id_token = t["id_token"].as_str().unwrap();
    let access = t["access_token"].as_str().unwrap();
    let old_cookie = browser.jar["__Host-tessera_sso"].clone();
    let req = app
        .auth
        .logout_request(&LogoutParams {
            id_token_hint: Some(id_token.into()),
            ..LogoutParams::default()
        })
        .unwrap();
    let cookie = SsoCookie(old_cookie.clone().into());
    let decided = app
        .auth
        .silent_logout_session(&req, Some(&cookie))
        .await
        .unwrap()
        .expect("the hint names the browser's session");
    // Another tab signs in again: the cookie token is renewed.
    let (_, challenge) = pkce();
    let r = browser
        .sign_in_again("web", APP_CB, &challenge, "alice")
        .await;
    assert_eq!(r.status(), 303);
    assert_ne!(browser.jar["__Host-tessera_sso"], old_cookie);
    // Looked up again by the old cookie, there is nothing to end.
    let caller = tessera::auth::Caller::default();
    assert!(!app.auth.end_session(&cookie, &caller).await.unwrap());
    // Ended as decided: the session, and the app's tokens with it.
    assert!(app.auth.end_sso_session(decided, &caller).await.unwrap());
    let sso = app.store.sso_session(decided).await.unwrap().unwrap();
    assert_eq!(sso.revoked_reason.as_deref(), Some("logout"));
    app.userinfo_becomes(access, 401).await;
}

async fn a_hinted_logout_ends_the_sso_session_and_its_tokens(b: Backend) {
    let Some(app) = op(b).await else { return };
    let (mut browser, t) = signed_in(&app).await;
    let id_token = t["id_token"].as_str().unwrap();
    let access = t["access_token"].as_str().unwrap();
    let sid: uuid::Uuid = TestApp::claims(id_token)["sid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let old_cookie = browser.jar["__Host-tessera_sso"].clone();
    // Signing in again as the same user (prompt=login) carries the session on: same sid,
    // a new cookie token, and the earlier tokens end with it at logout.
    let (verifier2, challenge2) = pkce();
    let r = browser
        .sign_in_again("web", APP_CB, &challenge2, "alice")
        .await;
    let code = crate::oidc::redirected(&r, APP_CB)["code"].clone();
    let t2: Value = exchange(&app, "web", &code, &verifier2, APP_CB)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        TestApp::claims(t2["id_token"].as_str().unwrap())["sid"],
        sid.to_string()
    );
    assert_ne!(
        browser.jar["__Host-tessera_sso"], old_cookie,
        "a new cookie token"
    );
    let r = browser
        .get(&end_session_query(&[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", APP_LOGGED_OUT),
            ("state", "bye & back"),
        ]))
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        format!("{APP_LOGGED_OUT}?state=bye+%26+back")
    );
    let cleared = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.starts_with("__Host-tessera_sso=;") && cleared.contains("Max-Age=0"));
    // Stored: the SSO session ended, and the refresh session made through it.
    let sso = app.store.sso_session(sid).await.unwrap().unwrap();
    assert_eq!(sso.revoked_reason.as_deref(), Some("logout"));
    app.userinfo_becomes(access, 401).await;
    app.userinfo_becomes(t2["access_token"].as_str().unwrap(), 401)
        .await;
    let r = app
        .form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", t["refresh_token"].as_str().unwrap()),
                ("client_id", "web"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 400);
    // The next authorization asks for a login again, even with the old cookie replayed.
    let mut replayed = Browser::new(&app);
    replayed.jar = browser.jar.clone();
    assert!(!browser.jar.contains_key("__Host-tessera_sso"));
    replayed.jar.insert("__Host-tessera_sso".into(), old_cookie);
    let (_, challenge) = pkce();
    let r = replayed
        .get(&format!(
            "/authorize?{}",
            request("web", APP_CB, &challenge, &[])
        ))
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Sign in"));
    assert!(crate::oidc::audit_event_stored(&app, "sso.logout").await);
}

async fn a_logout_without_a_valid_hint_asks_first(b: Backend) {
    let Some(app) = op(b).await else { return };
    let (mut browser, t) = signed_in(&app).await;
    let access = t["access_token"].as_str().unwrap();
    // No hint: a confirmation page, and nothing ended yet.
    let r = browser.get("/end_session").await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"));
    let page = r.text().await.unwrap();
    assert!(page.contains("Sign out?") && page.contains(">Sign out</button>"));
    assert!(page.contains("<strong>alice</strong>"));
    assert_eq!(app.userinfo(access).await.status(), 200);
    // A foreign site's POST of the confirmation carries no CSRF token.
    let mut foreign = Browser::new(&app);
    let mut fields = hidden_fields(&page);
    fields.push(("decision".into(), "logout".into()));
    foreign.jar.insert(
        "__Host-tessera_sso".into(),
        browser.jar["__Host-tessera_sso"].clone(),
    );
    assert_eq!(
        foreign.post("/end_session/confirm", &fields).await.status(),
        403
    );
    assert_eq!(app.userinfo(access).await.status(), 200);
    // An access token is no ID token; an unregistered redirect gets the error page.
    for query in [
        end_session_query(&[("id_token_hint", access)]),
        end_session_query(&[("id_token_hint", "not.a.token")]),
        end_session_query(&[
            ("client_id", "web"),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ]),
        end_session_query(&[("post_logout_redirect_uri", APP_LOGGED_OUT)]),
        end_session_query(&[
            ("client_id", "cli"),
            ("id_token_hint", t["id_token"].as_str().unwrap()),
        ]),
    ] {
        let r = browser.get(&query).await;
        assert_eq!(r.status(), 400, "{query}");
        assert!(r.headers().get("location").is_none());
    }
    assert_eq!(app.userinfo(access).await.status(), 200);
    // A valid hint POSTed by another site, which carries no SameSite=Lax cookie: Tessera asks
    // (on its own page, whose form brings the cookie) rather than report a logout it did not do.
    let r = Browser::new(&app)
        .post(
            "/end_session",
            &[
                (
                    "id_token_hint".into(),
                    t["id_token"].as_str().unwrap().into(),
                ),
                ("post_logout_redirect_uri".into(), APP_LOGGED_OUT.into()),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Sign out?"));
    assert_eq!(app.userinfo(access).await.status(), 200);
    let r = browser
        .get(&end_session_query(&[("state", "a"), ("state", "b")]))
        .await;
    assert_eq!(r.status(), 400, "a repeated parameter");
    // Post-logout URIs are exact: no port rule, no trailing slash.
    for uri in [
        "https://app.example:443/logged-out",
        "https://app.example/logged-out/",
    ] {
        let r = browser
            .get(&end_session_query(&[
                ("client_id", "web"),
                ("post_logout_redirect_uri", uri),
            ]))
            .await;
        assert_eq!(r.status(), 400, "{uri}");
    }
    // The user confirms: signed out.
    let r = browser.post("/end_session/confirm", &fields).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("You are signed out."));
    app.userinfo_becomes(access, 401).await;
    // A stale hint (of an ended session) with a new sign-in: asked again, not silent.
    let (mut browser2, t2) = signed_in(&app).await;
    let r = browser2
        .get(&end_session_query(&[(
            "id_token_hint",
            t["id_token"].as_str().unwrap(),
        )]))
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Sign out?"));
    assert_eq!(
        app.userinfo(t2["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
}

/// A confirmation page shown to alice, answered after bob signed in over her session in
/// another tab: it signed bob out, whom it never named. Now it asks again, about bob, and ends
/// nothing until he answers; so does a form without its `account`.
async fn a_logout_confirmation_answers_only_for_the_account_it_was_shown_to(b: Backend) {
    let Some(app) = op(b).await else { return };
    app.create_user("bob", &[]).await;
    let (mut browser, _) = signed_in(&app).await;
    let page = browser.get("/end_session").await.text().await.unwrap();
    assert!(page.contains("<strong>alice</strong>"), "{page}");
    let mut alices = hidden_fields(&page);
    alices.push(("decision".into(), "logout".into()));
    // Another tab: bob signs in over her session.
    let (verifier, challenge) = pkce();
    let r = browser
        .sign_in_again("web", APP_CB, &challenge, "bob")
        .await;
    let code = redirected(&r, APP_CB)["code"].clone();
    let r = exchange(&app, "web", &code, &verifier, APP_CB).await;
    let bob: Value = r.json().await.unwrap();
    let bobs_access = bob["access_token"].as_str().unwrap();
    for fields in [
        alices.clone(),
        alices
            .iter()
            .filter(|(k, _)| k != "account")
            .cloned()
            .collect(),
    ] {
        let r = browser.post("/end_session/confirm", &fields).await;
        assert_eq!(r.status(), 200);
        let again = r.text().await.unwrap();
        assert!(
            again.contains("Sign out?") && again.contains("<strong>bob</strong>"),
            "{again}"
        );
        assert_eq!(app.userinfo(bobs_access).await.status(), 200);
    }
    // Bob's own answer signs him out.
    let page = browser.get("/end_session").await.text().await.unwrap();
    let mut bobs = hidden_fields(&page);
    bobs.push(("decision".into(), "logout".into()));
    let r = browser.post("/end_session/confirm", &bobs).await;
    assert!(r.text().await.unwrap().contains("You are signed out."));
    app.userinfo_becomes(bobs_access, 401).await;
}

async fn a_foreign_logout_keeps_the_cookie_and_a_hint_alone_ends_nothing(b: Backend) {
    let Some(app) = op(b).await else { return };
    let (mut browser, t) = signed_in(&app).await;
    let id_token = t["id_token"].as_str().unwrap();
    let sid: uuid::Uuid = TestApp::claims(id_token)["sid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Another site's top-level POST, which a SameSite=Lax cookie does not come with: it ends
    // nothing, so it may not delete the cookie either (a browser applies a Set-Cookie of a
    // cross-site top-level navigation), with or without a redirect.
    for fields in [
        vec![],
        vec![
            ("client_id".to_string(), "web".to_string()),
            (
                "post_logout_redirect_uri".to_string(),
                APP_LOGGED_OUT.to_string(),
            ),
        ],
    ] {
        let r = Browser::new(&app)
            .http
            .post(app.url("/end_session"))
            .header("origin", "https://evil.example")
            .form(&fields)
            .send()
            .await
            .unwrap();
        assert!(matches!(r.status().as_u16(), 200 | 303), "{fields:?}");
        assert!(
            r.headers().get("set-cookie").is_none(),
            "a request without the cookie cleared it: {fields:?}"
        );
    }
    let sso = app.store.sso_session(sid).await.unwrap().unwrap();
    assert!(sso.revoked_at.is_none());
    // The same browser still signs in without a login page.
    let (_, challenge) = pkce();
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("web", APP_CB, &challenge, &[("prompt", "none")])
        ))
        .await;
    assert!(crate::oidc::redirected(&r, APP_CB).contains_key("code"));
    // Another browser, holding only the ID token (anything the relying party leaked): it is
    // asked, and confirming ends nothing, since it holds no session of its own.
    let mut cookieless = Browser::new(&app);
    let r = cookieless
        .get(&end_session_query(&[("id_token_hint", id_token)]))
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Sign out?") && page.contains("<strong>alice</strong>"));
    let mut fields = hidden_fields(&page);
    fields.push(("decision".into(), "logout".into()));
    let r = cookieless.post("/end_session/confirm", &fields).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    let sso = app.store.sso_session(sid).await.unwrap().unwrap();
    assert!(sso.revoked_at.is_none());
    assert_eq!(
        app.userinfo(t["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    // The browser that holds the session signs out with the same hint, and its cookie goes.
    let r = browser
        .get(&end_session_query(&[("id_token_hint", id_token)]))
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let sso = app.store.sso_session(sid).await.unwrap().unwrap();
    assert_eq!(sso.revoked_reason.as_deref(), Some("logout"));
}

/// A back-channel logout receiver: records each `logout_token`, answering with the statuses
/// given, then 200.
struct Receiver {
    tokens: Arc<Mutex<Vec<String>>>,
    url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(listener: tokio::net::TcpListener, fail_first: usize) -> Self {
        use axum::routing::post;
        let url = format!("http://{}/backchannel", listener.local_addr().unwrap());
        let tokens = Arc::new(Mutex::new(Vec::new()));
        let seen = tokens.clone();
        let app = axum::Router::new().route(
            "/backchannel",
            post(move |body: String| {
                let seen = seen.clone();
                async move {
                    let token = form_urlencoded::parse(body.as_bytes())
                        .find(|(k, _)| k == "logout_token")
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default();
                    let mut all = seen.lock().unwrap();
                    all.push(token);
                    if all.len() <= fail_first {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        axum::http::StatusCode::OK
                    }
                }
            }),
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            tokens,
            url,
            server,
        }
    }

    fn tokens(&self) -> Vec<String> {
        self.tokens.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Checks a logout token (Back-Channel Logout 1.0 §2.4) against the JWKS and the session.
async fn assert_logout_token(app: &TestApp, token: &str, sid: &str, sub: &str) {
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "logout+jwt");
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(app.jwks().await).unwrap();
    let jwk = jwks.find(header["kid"].as_str().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["web"]);
    v.set_issuer(&[app.auth_issuer()]);
    let c = jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims;
    assert_eq!(c["sid"], sid);
    assert_eq!(c["sub"], sub);
    assert_eq!(
        c["events"],
        json!({"http://schemas.openid.net/event/backchannel-logout": {}})
    );
    assert!(c.get("nonce").is_none());
    assert!(c["jti"].is_string() && c["iat"].is_i64());
}

async fn back_channel_logout_tokens_are_delivered_retried_and_survive_a_restart(b: Backend) {
    // The receiver's port, reserved; nothing answers on it until later.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let uri = format!("http://{addr}/backchannel");
    let Some(mut app) = op_with(b, Some(uri)).await else {
        return;
    };
    let (mut browser, t) = signed_in(&app).await;
    let c = TestApp::claims(t["id_token"].as_str().unwrap());
    let (sid, sub) = (c["sid"].as_str().unwrap(), c["sub"].as_str().unwrap());
    let r = browser
        .get(&end_session_query(&[(
            "id_token_hint",
            t["id_token"].as_str().unwrap(),
        )]))
        .await;
    assert_eq!(r.status(), 200);
    // The receiver is down: the logout is complete anyway, and the delivery is retried.
    app.userinfo_becomes(t["access_token"].as_str().unwrap(), 401)
        .await;
    eventually(10, "a failed attempt", || async {
        app.scalar_i64(
            "SELECT COUNT(*) FROM backchannel_deliveries WHERE last_error = $1",
            "connection failed",
        )
        .await
            == 1
    })
    .await;
    assert!(crate::oidc::audit_event_stored(&app, "backchannel.failed").await);
    // The server restarts; the receiver comes up answering 500 once, then 200.
    app.stop().await;
    let receiver = Receiver::start(tokio::net::TcpListener::bind(addr).await.unwrap(), 1).await;
    let replica = app.replica(|f| f).await;
    eventually(30, "the token delivered", || async {
        replica
            .scalar_i64(
                "SELECT COUNT(*) FROM backchannel_deliveries WHERE client_id = $1 AND delivered_at IS NOT NULL",
                "web",
            )
            .await
            == 1
    })
    .await;
    let tokens = receiver.tokens();
    assert_eq!(tokens.len(), 2, "one refused attempt, one delivery");
    for token in &tokens {
        assert_logout_token(&replica, token, sid, sub).await;
    }
    // A retry is the same token's jti.
    assert_eq!(
        TestApp::claims(&tokens[0])["jti"],
        TestApp::claims(&tokens[1])["jti"]
    );
    assert!(crate::oidc::audit_event_stored(&replica, "backchannel.delivered").await);
    assert!(receiver.url.ends_with("/backchannel"));
}

async fn administrators_list_and_end_sso_sessions(b: Backend) {
    let Some(app) = op(b).await else { return };
    app.create_user("root", &["admin"]).await;
    let admin = app.login_ok("root").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut browser, t) = signed_in(&app).await;
    let user = app.store.user_by_username("alice").await.unwrap().unwrap();
    let sid = TestApp::claims(t["id_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let l = list_sso(&app, user.id, &admin).await;
    assert_eq!(l.as_array().unwrap().len(), 1);
    assert_eq!(l[0]["id"], sid);
    assert_eq!(l[0]["amr"], json!(["pwd"]));
    assert_eq!(l[0]["active"], true);
    // Never the cookie's digest.
    assert_eq!(
        crate::helpers::members(&l[0]),
        [
            "absolute_expires_at",
            "active",
            "amr",
            "auth_time",
            "created_at",
            "id",
            "idle_expires_at",
            "ip",
            "last_seen_at",
            "revoked_at",
            "revoked_reason",
            "user_agent",
            "user_id"
        ]
    );
    // The refresh session names it.
    let r = app
        .admin(
            reqwest::Method::GET,
            &format!("/admin/users/{}/sessions", user.id),
            &admin,
            None,
        )
        .await;
    let sessions: Value = r.json().await.unwrap();
    assert_eq!(sessions[0]["sso_session_id"], sid);
    // Never the refresh generation.
    assert_eq!(
        crate::helpers::members(&sessions[0]),
        [
            "absolute_expires_at",
            "active",
            "client_id",
            "created_at",
            "id",
            "idle_expires_at",
            "ip",
            "last_refreshed_at",
            "revoked_at",
            "revoked_reason",
            "scope",
            "sso_session_id",
            "user_agent",
            "user_id"
        ]
    );
    // Ended by an administrator: the browser signs in again, the tokens stop working.
    let r = app
        .admin(
            reqwest::Method::DELETE,
            &format!("/admin/sso_sessions/{sid}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    let l = list_sso(&app, user.id, &admin).await;
    assert_eq!(l[0]["active"], false);
    assert_eq!(l[0]["revoked_reason"], "revoked_by_admin");
    app.userinfo_becomes(t["access_token"].as_str().unwrap(), 401)
        .await;
    let (_, challenge) = pkce();
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("web", APP_CB, &challenge, &[])
        ))
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .admin(
            reqwest::Method::DELETE,
            &format!("/admin/sso_sessions/{}", uuid::Uuid::now_v7()),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status(), 404);
}

async fn list_sso(app: &TestApp, user: uuid::Uuid, admin: &str) -> Value {
    let path = format!("/admin/users/{user}/sso_sessions");
    let r = app.admin(reqwest::Method::GET, &path, admin, None).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn a_password_change_or_a_disable_sends_logout_tokens(b: Backend) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/backchannel", listener.local_addr().unwrap());
    let receiver = Receiver::start(listener, 0).await;
    let Some(app) = op_with(b, Some(uri)).await else {
        return;
    };
    let caller = tessera::auth::Caller::default();
    let alice = tessera::auth::UserRef::Name("alice");
    // A password change ends the SSO session: its app gets a logout token.
    let (_, t) = signed_in(&app).await;
    let sid = TestApp::claims(t["id_token"].as_str().unwrap())["sid"].clone();
    app.auth
        .set_password(alice, "a brand new password".into(), &caller)
        .await
        .unwrap();
    eventually(10, "a logout token after the password change", || async {
        receiver.tokens().len() == 1
    })
    .await;
    assert_eq!(TestApp::claims(&receiver.tokens()[0])["sid"], sid);
    let user = app.store.user_by_username("alice").await.unwrap().unwrap();
    let sso: uuid::Uuid = sid.as_str().unwrap().parse().unwrap();
    let row = app.store.sso_session(sso).await.unwrap().unwrap();
    assert_eq!(row.revoked_reason.as_deref(), Some("password_changed"));
    assert_eq!(row.user_id, user.id);
    // So does a disable.
    app.auth
        .set_password(alice, crate::helpers::PASSWORD.into(), &caller)
        .await
        .unwrap();
    let (_, t) = signed_in(&app).await;
    let sid = TestApp::claims(t["id_token"].as_str().unwrap())["sid"].clone();
    app.auth.set_disabled(alice, true, &caller).await.unwrap();
    eventually(10, "a logout token after the disable", || async {
        receiver.tokens().len() == 2
    })
    .await;
    assert_eq!(TestApp::claims(&receiver.tokens()[1])["sid"], sid);
}
