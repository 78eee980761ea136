//! The device authorization grant (RFC 8628): `/device_authorization`, the hosted device page
//! and the device's polls at `/token`.

use figment::providers::Serialized;
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp, PASSWORD};
use crate::oidc::{hidden_fields, Browser};
use crate::on_both;

on_both!(
    a_device_signs_in_once_the_user_allows_it,
    denied_expired_and_foreign_device_codes_get_no_tokens,
    user_codes_cannot_be_guessed,
    a_device_approved_before_a_logout_gets_nothing,
    a_device_polling_while_its_sso_session_ends_gets_nothing,
    the_device_page_asks_for_the_second_factor,
    a_device_page_answers_only_for_the_user_it_was_shown_to,
    device_authorizations_are_limited_per_address,
    a_device_approved_before_a_factor_was_added_gets_nothing,
);

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn provider(b: Backend) -> Option<TestApp> {
    let app = TestApp::spawn_with(b, |f| {
        // The throttle's first wait outlasts a slow machine's next attempt (at 1 s, a loaded
        // CI run let the attempt after the allowance through).
        f.merge(Serialized::default("throttle.backoff_base", "30s"))
            .merge(Serialized::default(
                "clients",
                json!([
                    {"id": "tv", "public": true, "first_party": true,
                     "grant_types": [GRANT, "refresh_token"],
                     "scopes": ["openid", "profile", "offline_access"]},
                    {"id": "tv2", "public": true, "first_party": true,
                     "grant_types": [GRANT], "scopes": ["openid", "offline_access"]},
                    {"id": "web", "public": true, "first_party": true,
                     "redirect_uris": ["https://app.example/cb"], "scopes": ["openid"]},
                ]),
            ))
    })
    .await?;
    app.create_user("alice", &[]).await;
    Some(app)
}

async fn start(app: &TestApp, client: &str) -> reqwest::Response {
    app.form(
        "/device_authorization",
        &[("client_id", client), ("scope", "openid offline_access")],
        None,
    )
    .await
}

async fn poll(app: &TestApp, device_code: &str) -> (u16, Value) {
    poll_as(app, "tv", device_code).await
}

async fn poll_as(app: &TestApp, client: &str, device_code: &str) -> (u16, Value) {
    let r = app
        .form(
            "/token",
            &[
                ("grant_type", GRANT),
                ("device_code", device_code),
                ("client_id", client),
            ],
            None,
        )
        .await;
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Lets the next poll through at once (the interval is the device's to respect; the tests do
/// not wait it out).
async fn interval_passed(app: &TestApp) {
    app.exec_sql("UPDATE device_codes SET last_polled_at = 0".into())
        .await;
}

/// Signs `alice` in on the device page and answers for `user_code`.
async fn answer(app: &TestApp, user_code: &str, decision: &str) -> reqwest::Response {
    let mut browser = Browser::new(app);
    let r = browser.get(&format!("/device?user_code={user_code}")).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("<label for=\"username\">Username</label>"));
    assert!(
        page.contains("action=\"&#x2f;device&#x2f;login\""),
        "{page}"
    );
    let r = browser
        .sign_in_at("/device/login", &page, "alice", PASSWORD)
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Allow this device?"), "{page}");
    assert!(page.contains("<strong>tv</strong>"));
    let mut fields = hidden_fields(&page);
    fields.push(("decision".into(), decision.into()));
    browser.post("/device/decide", &fields).await
}

async fn a_device_signs_in_once_the_user_allows_it(b: Backend) {
    let Some(app) = provider(b).await else { return };
    let r = start(&app, "tv").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let d: Value = r.json().await.unwrap();
    let user_code = d["user_code"].as_str().unwrap();
    assert_eq!(user_code.len(), 9);
    assert_eq!(&user_code[4..5], "-");
    assert!(user_code
        .replace('-', "")
        .bytes()
        .all(|c| b"BCDFGHJKLMNPQRSTVWXZ".contains(&c)));
    assert_eq!(d["verification_uri"], "http://127.0.0.1:8080/device");
    assert_eq!(
        d["verification_uri_complete"],
        format!("http://127.0.0.1:8080/device?user_code={user_code}")
    );
    assert_eq!(d["expires_in"], 600);
    assert_eq!(d["interval"], 5);
    let device_code = d["device_code"].as_str().unwrap();
    // Not answered yet; then too fast.
    assert_eq!(
        poll(&app, device_code).await,
        (400, error("authorization_pending"))
    );
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (status, body) = poll(&app, device_code).await;
    assert_eq!((status, body["error"].clone()), (400, json!("slow_down")));
    // RFC 8628 §3.5: the longer interval counts from this poll too (it counted from the last
    // poll let through, so a client could poll again sooner than it was told).
    let polled = app
        .scalar_i64(
            "SELECT last_polled_at FROM device_codes WHERE client_id = $1",
            "tv",
        )
        .await;
    assert!(polled >= before, "{polled} < {before}");
    let interval = app
        .scalar_i64(
            "SELECT interval_ms FROM device_codes WHERE client_id = $1",
            "tv",
        )
        .await;
    assert_eq!(interval, 10_000, "slow_down adds 5 s");
    // The user allows it, typing the code in lower case with a space.
    let r = answer(&app, &user_code.to_lowercase().replace('-', " "), "allow").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Device connected"));
    interval_passed(&app).await;
    // Another client that holds the grant and presents the approved code gets nothing, and
    // neither spends the code nor counts as the device's poll.
    let (status, body) = poll_as(&app, "tv2", device_code).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_grant"))
    );
    let polled = app
        .scalar_i64(
            "SELECT last_polled_at FROM device_codes WHERE client_id = $1",
            "tv",
        )
        .await;
    assert_eq!(polled, 0, "a foreign poll is not the device's");
    let (status, t) = poll(&app, device_code).await;
    assert_eq!(status, 200, "{t}");
    assert!(t["access_token"].is_string() && t["refresh_token"].is_string());
    let id = TestApp::claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], "tv");
    assert!(id.get("nonce").is_none());
    let sso: uuid::Uuid = id["sid"].as_str().unwrap().parse().unwrap();
    assert!(app.store.sso_session(sso).await.unwrap().is_some());
    assert_eq!(
        app.userinfo(t["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    // Once.
    interval_passed(&app).await;
    let (status, body) = poll(&app, device_code).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_grant"))
    );
}

/// A device approved from a password-only sign-in, before the user confirmed a factor: the
/// factor ended the user's other sessions, and the device's poll gets nothing (it got tokens
/// of a new password-only session).
async fn a_device_approved_before_a_factor_was_added_gets_nothing(b: Backend) {
    let Some(app) = provider(b).await else { return };
    let d: Value = start(&app, "tv").await.json().await.unwrap();
    let r = answer(&app, d["user_code"].as_str().unwrap(), "allow").await;
    assert!(r.text().await.unwrap().contains("Device connected"));
    crate::mfa::with_totp(&app, "alice").await;
    interval_passed(&app).await;
    let (status, body) = poll(&app, d["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_grant"))
    );
}

/// Each device authorization stores a code for ten minutes, so one address may start only
/// `throttle.device_requests` per window (there was no limit: a loop filled the table).
async fn device_authorizations_are_limited_per_address(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("throttle.device_requests", 2))
            .merge(Serialized::default(
                "clients",
                json!([{"id": "tv", "public": true, "first_party": true,
                        "grant_types": [GRANT], "scopes": ["openid"]}]),
            ))
    })
    .await
    else {
        return;
    };
    for _ in 0..2 {
        assert_eq!(start(&app, "tv").await.status(), 200);
    }
    let r = start(&app, "tv").await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "slow_down");
    let stored = app
        .scalar_i64(
            "SELECT COUNT(*) FROM device_codes WHERE client_id = $1",
            "tv",
        )
        .await;
    assert_eq!(stored, 2, "the refused request stored nothing");
}

fn error(code: &str) -> Value {
    let descriptions = [(
        "authorization_pending",
        "The user has not answered yet: poll again after the interval.",
    )];
    let d = descriptions.iter().find(|(c, _)| *c == code).unwrap().1;
    json!({"error": code, "error_description": d})
}

async fn denied_expired_and_foreign_device_codes_get_no_tokens(b: Backend) {
    let Some(app) = provider(b).await else { return };
    // A client without the grant.
    let r = start(&app, "web").await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unauthorized_client"
    );
    // Denied.
    let d: Value = start(&app, "tv").await.json().await.unwrap();
    let r = answer(&app, d["user_code"].as_str().unwrap(), "deny").await;
    assert!(r.text().await.unwrap().contains("Device refused"));
    let (status, body) = poll(&app, d["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("access_denied"))
    );
    // Expired.
    let d: Value = start(&app, "tv").await.json().await.unwrap();
    app.exec_sql(format!(
        "UPDATE device_codes SET expires_at = 1 WHERE user_code = '{}'",
        d["user_code"].as_str().unwrap().replace('-', "")
    ))
    .await;
    let (status, body) = poll(&app, d["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("expired_token"))
    );
    // Unknown, and a forged answer without the CSRF token.
    let (status, body) = poll(&app, "not-a-device-code").await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_grant"))
    );
    let d: Value = start(&app, "tv").await.json().await.unwrap();
    let mut foreign = Browser::new(&app);
    let r = foreign
        .post(
            "/device/decide",
            &[
                ("user_code".into(), d["user_code"].as_str().unwrap().into()),
                ("decision".into(), "allow".into()),
            ],
        )
        .await;
    assert_eq!(r.status(), 403);
    let (status, body) = poll(&app, d["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("authorization_pending"))
    );
}

async fn user_codes_cannot_be_guessed(b: Backend) {
    let Some(app) = provider(b).await else { return };
    let d: Value = start(&app, "tv").await.json().await.unwrap();
    let mut browser = Browser::new(&app);
    let r = browser.get("/device").await;
    let page = r.text().await.unwrap();
    let r = browser
        .sign_in_at("/device/login", &page, "alice", PASSWORD)
        .await;
    let page = r.text().await.unwrap();
    assert!(
        page.contains("<label for=\"user_code\">Code</label>"),
        "{page}"
    );
    let csrf = hidden_fields(&page);
    let mut throttled = false;
    for i in 0..15 {
        let mut fields = csrf.clone();
        fields.push((
            "user_code".into(),
            format!("BCDF-GHJ{}", ["K", "L", "M"][i % 3]),
        ));
        let r = browser.post("/device", &fields).await;
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            throttled = true;
            break;
        }
        assert!(r.text().await.unwrap().contains("not valid"));
    }
    assert!(throttled, "wrong codes are throttled");
    // While throttled, even the right code waits.
    let mut fields = csrf.clone();
    fields.push(("user_code".into(), d["user_code"].as_str().unwrap().into()));
    assert_eq!(browser.post("/device", &fields).await.status(), 429);
}

async fn a_device_approved_before_a_logout_gets_nothing(b: Backend) {
    let Some(app) = provider(b).await else { return };
    let d: Value = start(&app, "tv").await.json().await.unwrap();
    let mut browser = Browser::new(&app);
    let r = browser
        .get(&format!(
            "/device?user_code={}",
            d["user_code"].as_str().unwrap()
        ))
        .await;
    let page = r.text().await.unwrap();
    let r = browser
        .sign_in_at("/device/login", &page, "alice", PASSWORD)
        .await;
    let mut fields = hidden_fields(&r.text().await.unwrap());
    fields.push(("decision".into(), "allow".into()));
    assert_eq!(browser.post("/device/decide", &fields).await.status(), 200);
    // The browser's SSO session ends before the device polls.
    let r = browser.get("/end_session").await;
    let mut fields = hidden_fields(&r.text().await.unwrap());
    fields.push(("decision".into(), "logout".into()));
    assert_eq!(
        browser.post("/end_session/confirm", &fields).await.status(),
        200
    );
    interval_passed(&app).await;
    let (status, body) = poll(&app, d["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_grant"))
    );
}

/// A device polling while the SSO session that approved it is being ended (a logout in
/// another tab): the poll waits for the ending's write and gets nothing. Before, on Postgres,
/// it read the session as live past the uncommitted ending and got tokens of an ended session
/// (a refresh session the ending had already listed past).
async fn a_device_polling_while_its_sso_session_ends_gets_nothing(b: Backend) {
    let Some(app) = provider(b).await else { return };
    let d: Value = start(&app, "tv").await.json().await.unwrap();
    let r = answer(&app, d["user_code"].as_str().unwrap(), "allow").await;
    assert_eq!(r.status(), 200);
    interval_passed(&app).await;
    let device_code = d["device_code"].as_str().unwrap();
    let (status, body) = crate::oidc::while_sso_ending_is_held(&app, poll(&app, device_code)).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_grant")),
        "{body}"
    );
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM sessions WHERE sso_session_id IS NOT NULL AND $1 = $1",
            "",
        )
        .await,
        0
    );
}

/// "Allow this device?" shown to alice, answered after bob signed in over her session in
/// another tab: the device got bob's tokens. Now the page is shown again, to bob.
async fn a_device_page_answers_only_for_the_user_it_was_shown_to(b: Backend) {
    let Some(app) = provider(b).await else { return };
    app.create_user("bob", &[]).await;
    let d: Value = start(&app, "tv").await.json().await.unwrap();
    let user_code = d["user_code"].as_str().unwrap();
    let mut browser = Browser::new(&app);
    let r = browser.get(&format!("/device?user_code={user_code}")).await;
    let page = r.text().await.unwrap();
    let r = browser
        .sign_in_at("/device/login", &page, "alice", PASSWORD)
        .await;
    let alices = r.text().await.unwrap();
    assert!(alices.contains("Allow this device?"), "{alices}");
    assert!(alices.contains("<strong>alice</strong>"));
    // An answer without the page's `account` is no answer: the question again.
    let mut fields = hidden_fields(&alices);
    fields.retain(|(k, _)| k != "account");
    fields.push(("decision".into(), "allow".into()));
    let r = browser.post("/device/decide", &fields).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Allow this device?"));
    // Another tab: bob signs in over alice's session.
    let (_, challenge) = crate::oidc::pkce();
    let r = browser
        .sign_in_again("web", "https://app.example/cb", &challenge, "bob")
        .await;
    assert!(crate::oidc::redirected(&r, "https://app.example/cb").contains_key("code"));
    // Alice's page is answered: the question again, to bob; the device is not allowed yet.
    let mut fields = hidden_fields(&alices);
    fields.push(("decision".into(), "allow".into()));
    let r = browser.post("/device/decide", &fields).await;
    assert_eq!(r.status(), 200);
    let bobs = r.text().await.unwrap();
    assert!(bobs.contains("Allow this device?"), "{bobs}");
    assert!(bobs.contains("<strong>bob</strong>"), "{bobs}");
    interval_passed(&app).await;
    let (status, body) = poll(&app, d["device_code"].as_str().unwrap()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "authorization_pending");
    // Bob allows it on his page: the device signs in as bob.
    let mut fields = hidden_fields(&bobs);
    fields.push(("decision".into(), "allow".into()));
    assert_eq!(browser.post("/device/decide", &fields).await.status(), 200);
    interval_passed(&app).await;
    let (status, t) = poll(&app, d["device_code"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{t}");
    let bob = app.store.user_by_username("bob").await.unwrap().unwrap();
    assert_eq!(
        TestApp::claims(t["access_token"].as_str().unwrap())["sub"],
        bob.id.to_string()
    );
}

async fn the_device_page_asks_for_the_second_factor(b: Backend) {
    let Some(app) = provider(b).await else { return };
    let (totp, _, _) = crate::mfa::with_totp(&app, "alice").await;
    let r = start(&app, "tv").await;
    let d: Value = r.json().await.unwrap();
    let user_code = d["user_code"].as_str().unwrap();
    let mut browser = Browser::new(&app);
    let r = browser.get(&format!("/device?user_code={user_code}")).await;
    let page = r.text().await.unwrap();
    let r = browser
        .sign_in_at("/device/login", &page, "alice", PASSWORD)
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Two-step verification"), "{page}");
    assert!(!page.contains("Allow this device?"));
    let mut fields = hidden_fields(&page);
    fields.push(("code".into(), crate::mfa::code(&totp, 1)));
    let r = browser.post("/device/mfa", &fields).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Allow this device?"), "{page}");
    let mut fields = hidden_fields(&page);
    fields.push(("decision".into(), "allow".into()));
    let r = browser.post("/device/decide", &fields).await;
    assert_eq!(r.status(), 200);
    interval_passed(&app).await;
    let (status, t) = poll(&app, d["device_code"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{t}");
    let id = TestApp::claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(id["acr"], "2");

    // Wrong codes: the page again; past the throttle's allowance, 429 with Retry-After.
    let second_step_page = |browser: &mut Browser| {
        let url = format!("/device?user_code={user_code}");
        let mut b = std::mem::replace(browser, Browser::new(&app));
        async move {
            let r = b.get(&url).await;
            let page = r.text().await.unwrap();
            let r = b
                .sign_in_at("/device/login", &page, "alice", PASSWORD)
                .await;
            let page = r.text().await.unwrap();
            (b, page)
        }
    };
    let (mut b, page) = second_step_page(&mut browser).await;
    assert!(page.contains("Two-step verification"), "{page}");
    for _ in 0..5 {
        let mut fields = hidden_fields(&page);
        fields.push(("code".into(), "000000".into()));
        let r = b.post("/device/mfa", &fields).await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("Incorrect"));
    }
    let (mut b, page) = second_step_page(&mut b).await;
    let mut fields = hidden_fields(&page);
    fields.push(("code".into(), "000000".into()));
    let r = b.post("/device/mfa", &fields).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}
