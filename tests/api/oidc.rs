//! The OpenID Provider: `/authorize` with PKCE, the hosted login and consent pages, the SSO
//! session, the code exchange at `/token`, ID tokens and discovery. A `Browser` drives the
//! pages as a browser would without JavaScript: it keeps cookies, follows nothing by itself,
//! and submits the forms it is shown.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use figment::providers::Serialized;
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp, CLIENT_ID, CLIENT_SECRET, PASSWORD};
use crate::on_both;

on_both!(
    the_code_flow_issues_an_id_token_and_tokens,
    a_second_app_signs_in_without_a_login_page,
    an_id_token_hint_of_someone_else_signs_in_again,
    a_short_sso_idle_lifetime_holds_for_a_session_in_use,
    unverified_redirect_uris_get_an_error_page_never_a_redirect,
    pkce_is_required_and_checked,
    a_code_works_once_and_only_for_its_client_and_redirect_uri,
    a_code_exchanged_while_its_sso_session_ends_is_refused,
    errors_go_back_with_state_and_iss,
    forged_forms_are_refused,
    third_party_clients_ask_for_consent,
    a_code_from_before_a_factor_was_added_is_refused,
    a_consent_page_answers_only_for_the_user_it_was_shown_to,
    the_hosted_login_refuses_alike_and_throttles,
    ending_the_users_tokens_ends_the_sso_session,
    form_post_answers_with_a_form,
    pushed_requests_are_checked_used_once_and_bound_to_their_client,
);

pub const APP_CB: &str = "https://app.example/cb";
pub const APP_LOGGED_OUT: &str = "https://app.example/logged-out";
const PARTNER_CB: &str = "https://partner.example/callback";
const PARTNER_SECRET: &str = "partner-secret-0123456789";

/// A server with four clients: the test's confidential API client, `web` (a first-party SPA,
/// public), `cli` (first-party, public, loopback) and `partner` (third-party, confidential).
pub async fn op(b: Backend) -> Option<TestApp> {
    op_with(b, None).await
}

/// `op`, with `web`'s back-channel logout URI.
pub async fn op_with(b: Backend, backchannel: Option<String>) -> Option<TestApp> {
    op_tweaked(b, backchannel, |f| f).await
}

/// `op_with`, with more settings layered on.
pub async fn op_tweaked(
    b: Backend,
    backchannel: Option<String>,
    tweak: impl FnOnce(figment::Figment) -> figment::Figment,
) -> Option<TestApp> {
    let mut web = json!({"id": "web", "public": true, "first_party": true,
        "redirect_uris": [APP_CB], "scopes": ["openid", "profile", "offline_access"],
        "post_logout_redirect_uris": [APP_LOGGED_OUT]});
    if let Some(uri) = backchannel {
        web["backchannel_logout_uri"] = json!(uri);
    }
    let app = TestApp::spawn_with(b, |f| {
        tweak(f).merge(Serialized::default(
            "clients",
            json!([
                {"id": CLIENT_ID, "secret": CLIENT_SECRET},
                web,
                {"id": "cli", "public": true, "first_party": true,
                 "redirect_uris": ["http://127.0.0.1/callback"], "scopes": ["openid"]},
                {"id": "partner", "secret": PARTNER_SECRET,
                 "redirect_uris": [PARTNER_CB], "scopes": ["openid", "profile"]},
            ]),
        ))
    })
    .await?;
    app.create_user("alice", &[]).await;
    Some(app)
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    let verifier = URL_SAFE_NO_PAD.encode(b);
    let challenge = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ));
    (verifier, challenge)
}

/// The query of an authorization request of `client` to `redirect_uri`.
pub fn request(
    client: &str,
    redirect_uri: &str,
    challenge: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", "openid profile offline_access")
        .append_pair("state", "st-123")
        .append_pair("nonce", "n-456")
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        q.append_pair(k, v);
    }
    q.finish()
}

/// A browser without JavaScript: cookies kept, redirects not followed.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    pub jar: HashMap<String, String>,
}

impl Browser {
    pub fn new(app: &TestApp) -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.base.clone(),
            jar: HashMap::new(),
        }
    }

    pub fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, r: &reqwest::Response) {
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if c.contains("Max-Age=0") {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_string(), v.to_string());
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> reqwest::Response {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep_cookies(&r);
        r
    }

    /// POSTs a form as a same-origin page of Tessera's would.
    pub async fn post(&mut self, path: &str, fields: &[(String, String)]) -> reqwest::Response {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("origin", self.base.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.keep_cookies(&r);
        r
    }

    /// `GET /authorize` for `web` with `challenge` and the `extra` parameters.
    pub async fn authorize_web(
        &mut self,
        challenge: &str,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        self.get(&format!(
            "/authorize?{}",
            request("web", APP_CB, challenge, extra)
        ))
        .await
    }

    /// `GET /authorize` for `client` with `prompt=login` (signing in again over the browser's
    /// session, as another tab would), and its login page submitted as `user`.
    pub async fn sign_in_again(
        &mut self,
        client: &str,
        redirect_uri: &str,
        challenge: &str,
        user: &str,
    ) -> reqwest::Response {
        let r = self
            .get(&format!(
                "/authorize?{}",
                request(client, redirect_uri, challenge, &[("prompt", "login")])
            ))
            .await;
        let page = r.text().await.unwrap();
        self.sign_in(&page, user, PASSWORD).await
    }

    /// Fills the login page's form and submits it.
    pub async fn sign_in(
        &mut self,
        page: &str,
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        self.sign_in_at("/authorize/login", page, username, password)
            .await
    }

    /// Fills a login form and submits it to `action`.
    pub async fn sign_in_at(
        &mut self,
        action: &str,
        page: &str,
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        let mut fields = hidden_fields(page);
        fields.push(("username".into(), username.into()));
        fields.push(("password".into(), password.into()));
        self.post(action, &fields).await
    }
}

/// The `<input type="hidden">` fields of a page, unescaped.
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for tag in html.split("<input type=\"hidden\" ").skip(1) {
        let attr = |name: &str| {
            let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
            let end = tag[start..].find('"')? + start;
            Some(unescape(&tag[start..end]))
        };
        out.push((attr("name").unwrap(), attr("value").unwrap()));
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The query parameters of a redirect's `Location`, checking it goes to `redirect_uri`.
pub fn redirected(r: &reqwest::Response, redirect_uri: &str) -> HashMap<String, String> {
    assert!(
        matches!(r.status().as_u16(), 302 | 303),
        "expected a redirect, got {}",
        r.status()
    );
    let location = r.headers()["location"].to_str().unwrap();
    let (target, query) = location.split_once('?').unwrap();
    assert_eq!(target, redirect_uri);
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// From a fresh browser to a code for `web`: the login page, then the form.
pub async fn code_for_web(app: &TestApp, browser: &mut Browser, challenge: &str) -> String {
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("web", APP_CB, challenge, &[])
        ))
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    let r = browser.sign_in(&page, "alice", PASSWORD).await;
    let q = redirected(&r, APP_CB);
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], app.auth_issuer());
    q["code"].clone()
}

pub async fn exchange(
    app: &TestApp,
    client: &str,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
) -> reqwest::Response {
    let basic = (client == "partner").then_some(("partner", PARTNER_SECRET));
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", verifier),
        ("redirect_uri", redirect_uri),
    ];
    if basic.is_none() {
        form.push(("client_id", client));
    }
    app.form("/token", &form, basic).await
}

pub trait Issuer {
    fn auth_issuer(&self) -> String;
}

impl Issuer for TestApp {
    fn auth_issuer(&self) -> String {
        "http://127.0.0.1:8080".into()
    }
}

fn header_of(token: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap()
}

async fn the_code_flow_issues_an_id_token_and_tokens(b: Backend) {
    let Some(app) = op(b).await else { return };
    let mut browser = Browser::new(&app);
    let (verifier, challenge) = pkce();
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("web", APP_CB, &challenge, &[])
        ))
        .await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["referrer-policy"], "same-origin");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csrf_cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        csrf_cookie.starts_with("__Host-tessera_csrf="),
        "{csrf_cookie}"
    );
    assert!(csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Strict"));
    let page = r.text().await.unwrap();
    assert!(page.contains("<html lang=\"en\">"));
    assert!(page.contains("<label for=\"username\">Username</label>"));
    assert!(page.contains("<label for=\"password\">Password</label>"));
    assert!(page.contains("autocomplete=\"username\""));
    assert!(page.contains("autocomplete=\"current-password\""));
    assert!(page.contains("<button type=\"submit\">Sign in</button>"));
    assert!(!page.contains("<script"), "the login page needs no script");

    let r = browser.sign_in(&page, "alice", PASSWORD).await;
    let sso = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("__Host-tessera_sso="))
        .expect("an SSO cookie");
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(sso.contains(attr), "{sso}");
    }
    let q = redirected(&r, APP_CB);
    assert_eq!(r.status(), 303);
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], app.auth_issuer());
    let code = &q["code"];
    assert!(code.len() >= 43);

    let r = exchange(&app, "web", code, &verifier, APP_CB).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "openid profile offline_access");
    let access = t["access_token"].as_str().unwrap();
    let id_token = t["id_token"].as_str().unwrap();
    assert!(t["refresh_token"].is_string(), "offline_access: {t}");

    // The ID token (OIDC Core §2, §3.1.3.6).
    let h = header_of(id_token);
    assert_eq!(h["typ"], "JWT");
    assert_eq!(h["alg"], "ES256");
    let c = TestApp::claims(id_token);
    let user = app.store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(c["iss"], app.auth_issuer());
    assert_eq!(c["sub"], user.id.to_string());
    assert_eq!(c["aud"], "web");
    assert_eq!(c["azp"], "web");
    assert_eq!(c["nonce"], "n-456");
    assert_eq!(c["amr"], json!(["pwd"]));
    assert_eq!(c["acr"], "1");
    assert_eq!(c["preferred_username"], "alice");
    let now = tessera::time::now_ms() / 1000;
    assert!((c["auth_time"].as_i64().unwrap() - now).abs() < 60);
    assert!(c["exp"].as_i64().unwrap() > now);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access.as_bytes());
    assert_eq!(c["at_hash"], URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]));
    // `sid` is the SSO session, stored; the refresh session remembers it.
    let sid: uuid::Uuid = c["sid"].as_str().unwrap().parse().unwrap();
    let sso_row = app.store.sso_session(sid).await.unwrap().unwrap();
    assert_eq!(sso_row.user_id, user.id);
    let a = TestApp::claims(access);
    let session: uuid::Uuid = a["sid"].as_str().unwrap().parse().unwrap();
    let s = app.store.session(session).await.unwrap().unwrap();
    assert_eq!(s.sso_session_id, Some(sid));
    assert_eq!(s.client_id, "web");
    assert_eq!(a["client_id"], "web");
    assert_eq!(header_of(access)["typ"], "at+jwt");

    // /userinfo: the access token, with the profile claims; never the ID token.
    let r = app.userinfo(access).await;
    assert_eq!(r.status(), 200);
    let u: Value = r.json().await.unwrap();
    assert_eq!(u["sub"], user.id.to_string());
    assert_eq!(u["preferred_username"], "alice");
    assert!(u["updated_at"].is_i64());
    assert!(u.get("email").is_none(), "no claim is invented: {u}");
    assert_eq!(app.userinfo(id_token).await.status(), 401);
    let r = app.introspect(id_token).await;
    assert_eq!(r["active"], false);

    // The public client refreshes with its id alone; the session is bound to it.
    let rt = t["refresh_token"].as_str().unwrap();
    let r = app
        .form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("client_id", "web"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    // ... and may not use the password grant.
    let r = app
        .form(
            "/token",
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
                ("client_id", "web"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "unauthorized_client");
}

async fn a_second_app_signs_in_without_a_login_page(b: Backend) {
    let Some(app) = op(b).await else { return };
    let mut browser = Browser::new(&app);
    let (_, challenge) = pkce();
    code_for_web(&app, &mut browser, &challenge).await;

    // `cli`, on a loopback port of its choosing (RFC 8252 §7.3): no login page.
    let (verifier, challenge) = pkce();
    let cb = "http://127.0.0.1:49152/callback";
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("cli", cb, &challenge, &[])
        ))
        .await;
    assert_eq!(r.status(), 302);
    let q = redirected(&r, cb);
    assert_eq!(q["state"], "st-123");
    let r = exchange(&app, "cli", &q["code"], &verifier, cb).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["scope"], "openid", "only the client's allowed scopes");
    assert!(
        t.get("refresh_token").is_none(),
        "public, no offline_access: {t}"
    );
    // Both ID tokens name the same SSO session.
    let sid = TestApp::claims(t["id_token"].as_str().unwrap())["sid"].clone();
    assert!(sid.is_string());

    // prompt=login shows the login page even so, and max_age=0 too.
    for extra in [[("prompt", "login")], [("max_age", "0")]] {
        let r = browser
            .get(&format!(
                "/authorize?{}",
                request("cli", cb, &challenge, &extra)
            ))
            .await;
        assert_eq!(r.status(), 200, "{extra:?}");
        assert!(r.text().await.unwrap().contains("Sign in"));
    }
    // Signing in again on a prompt=login page answers with the code at once.
    let r = browser.sign_in_again("cli", cb, &challenge, "alice").await;
    assert!(redirected(&r, cb).contains_key("code"));

    // A login_hint naming someone else: that user must sign in.
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("cli", cb, &challenge, &[("login_hint", "bob")])
        ))
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("value=\"bob\""));
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("cli", cb, &challenge, &[("login_hint", "ALICE")])
        ))
        .await;
    assert!(
        redirected(&r, cb).contains_key("code"),
        "the same user, normalised"
    );
    // A browser without the session: prompt=none is login_required, sent back.
    let mut stranger = Browser::new(&app);
    let r = stranger
        .get(&format!(
            "/authorize?{}",
            request("cli", cb, &challenge, &[("prompt", "none")])
        ))
        .await;
    let q = redirected(&r, cb);
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], app.auth_issuer());
    // With it, prompt=none gets a code.
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("cli", cb, &challenge, &[("prompt", "none")])
        ))
        .await;
    assert!(redirected(&r, cb).contains_key("code"));
}

/// A user's ID token, from a sign-in to `cli` in a browser of their own.
async fn id_token_of(app: &TestApp, user: &str) -> String {
    let mut browser = Browser::new(app);
    let (verifier, challenge) = pkce();
    let cb = "http://127.0.0.1:49152/callback";
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("cli", cb, &challenge, &[])
        ))
        .await;
    let page = r.text().await.unwrap();
    let r = browser.sign_in(&page, user, PASSWORD).await;
    let q = redirected(&r, cb);
    let r = exchange(app, "cli", &q["code"], &verifier, cb).await;
    let t: Value = r.json().await.unwrap();
    t["id_token"].as_str().unwrap().to_string()
}

/// `id_token_hint` (OIDC Core §3.1.2.1) names the user the client expects. It was ignored: a
/// browser signed in as alice got a code for alice with bob's ID token as the hint, even with
/// `prompt=none`.
async fn an_id_token_hint_of_someone_else_signs_in_again(b: Backend) {
    let Some(app) = op(b).await else { return };
    app.create_user("bob", &[]).await;
    let bobs = id_token_of(&app, "bob").await;
    let mut browser = Browser::new(&app);
    let (_, challenge) = pkce();
    code_for_web(&app, &mut browser, &challenge).await;
    let alices = id_token_of(&app, "alice").await;
    let cb = "http://127.0.0.1:49152/callback";
    let authorize = |extra: Vec<(&'static str, String)>| {
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        format!("/authorize?{}", request("cli", cb, &challenge, &extra))
    };
    // Bob's hint in alice's browser: login_required with prompt=none, else the login page.
    let r = browser
        .get(&authorize(vec![
            ("prompt", "none".into()),
            ("id_token_hint", bobs.clone()),
        ]))
        .await;
    let q = redirected(&r, cb);
    assert_eq!(q["error"], "login_required");
    assert!(!q.contains_key("code"));
    let r = browser
        .get(&authorize(vec![("id_token_hint", bobs.clone())]))
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Sign in"));
    // Alice's own hint: a code, with prompt=none too.
    let r = browser
        .get(&authorize(vec![
            ("prompt", "none".into()),
            ("id_token_hint", alices.clone()),
        ]))
        .await;
    assert!(redirected(&r, cb).contains_key("code"));
    // Her hint from another client (`aud` cli) at web's request: invalid_request, as
    // /end_session answers it (it gave web a code).
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request(
                "web",
                APP_CB,
                &challenge,
                &[("prompt", "none"), ("id_token_hint", &alices)]
            )
        ))
        .await;
    let q = redirected(&r, APP_CB);
    assert_eq!(q["error"], "invalid_request");
    assert!(!q.contains_key("code"));
    // Not an ID token of this server's (an access token, garbage): invalid_request, sent back.
    let access = app.login_ok("alice").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    for hint in [access, "not-a-token".to_string()] {
        let r = browser.get(&authorize(vec![("id_token_hint", hint)])).await;
        let q = redirected(&r, cb);
        assert_eq!(q["error"], "invalid_request");
        assert_eq!(q["state"], "st-123");
    }
}

/// `sso.idle_ttl` is the time a session may go unused. Its idle end moved at most once a
/// minute, so a 3 s idle lifetime ended a session used every second after 3 s.
async fn a_short_sso_idle_lifetime_holds_for_a_session_in_use(b: Backend) {
    let Some(app) = op_tweaked(b, None, |f| {
        f.merge(Serialized::default("sso.idle_ttl", "3s"))
    })
    .await
    else {
        return;
    };
    let mut browser = Browser::new(&app);
    let (_, challenge) = pkce();
    code_for_web(&app, &mut browser, &challenge).await;
    let cb = "http://127.0.0.1:49152/callback";
    let again = format!(
        "/authorize?{}",
        request("cli", cb, &challenge, &[("prompt", "none")])
    );
    for i in 0..6 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let r = browser.get(&again).await;
        assert!(redirected(&r, cb).contains_key("code"), "after {} s", i + 1);
    }
    // Unused for longer than the idle lifetime: ended.
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let r = browser.get(&again).await;
    assert_eq!(redirected(&r, cb)["error"], "login_required");
}

async fn unverified_redirect_uris_get_an_error_page_never_a_redirect(b: Backend) {
    let Some(app) = op(b).await else { return };
    let mut browser = Browser::new(&app);
    let (_, challenge) = pkce();
    let cases = [
        ("web", "https://evil.example/cb"),
        ("web", "https://app.example/cbx"),
        ("web", "https://app.example/cb/"),
        ("web", "https://app.example/cb/../evil"),
        ("web", "https://app.example/cb?x=1"),
        ("web", "https://app.example/cb#frag"),
        ("web", "http://app.example/cb"),
        ("web", "https://APP.example/cb"),
        ("cli", "http://127.0.0.1:8080/callbackx"),
        // Other spellings of a loopback URI (found by probing): matched as text, never
        // normalised, or the browser resolves them against the issuer.
        ("cli", "http:127.0.0.1:8080/callback"),
        ("cli", "http:/127.0.0.1:8080/callback"),
        ("cli", "HTTP://127.0.0.1:8080/callback"),
        ("cli", "http://127.1:8080/callback"),
        ("cli", "http://0x7f000001:8080/callback"),
        ("cli", "http://127.0.0.1.:8080/callback"),
        ("cli", "http://127.0.0.1:8080/x/../callback"),
        ("cli", "http://127.0.0.1:8080\\callback"),
        ("cli", "http://127.0.0.1:080/callback"),
        ("cli", "http://127.0.0.1:/callback"),
        ("cli", "http://localhost:8080/callback"),
        ("cli", "https://127.0.0.1:8080/callback"),
        ("nobody", APP_CB),
        ("", APP_CB),
        (CLIENT_ID, APP_CB),
    ];
    for (client, uri) in cases {
        let r = browser
            .get(&format!(
                "/authorize?{}",
                request(client, uri, &challenge, &[])
            ))
            .await;
        assert_eq!(r.status(), 400, "{client} {uri}");
        assert!(r.headers().get("location").is_none(), "{client} {uri}");
        assert!(r.text().await.unwrap().contains("Cannot continue"));
    }
    // No redirect_uri, and a repeated one.
    let r = browser
        .get(&format!(
            "/authorize?response_type=code&client_id=web&code_challenge={challenge}&code_challenge_method=S256"
        ))
        .await;
    assert_eq!(r.status(), 400);
    let r = browser
        .get(&format!(
            "/authorize?{}&redirect_uri=https%3A%2F%2Fevil.example%2F",
            request("web", APP_CB, &challenge, &[])
        ))
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
}

async fn pkce_is_required_and_checked(b: Backend) {
    let Some(app) = op(b).await else { return };
    let mut browser = Browser::new(&app);
    let (verifier, challenge) = pkce();
    code_for_web(&app, &mut browser, &challenge).await;
    // No challenge, `plain`, or a malformed one: sent back as invalid_request, with state.
    for query in [
        "response_type=code&client_id=web&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&state=s1"
            .to_string(),
        format!(
            "{}&code_challenge_method=plain",
            request("web", APP_CB, &verifier, &[])
        )
        .replace("code_challenge_method=S256&", ""),
        request("web", APP_CB, "short", &[]),
    ] {
        let r = browser.get(&format!("/authorize?{query}")).await;
        let q = redirected(&r, APP_CB);
        assert_eq!(q["error"], "invalid_request", "{query}");
        assert!(q.contains_key("state"));
    }
    // A wrong verifier, and none at all.
    let code = code_again(&mut browser, &challenge).await;
    let r = exchange(&app, "web", &code, &pkce().0, APP_CB).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let code = code_again(&mut browser, &challenge).await;
    let r = app
        .form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", APP_CB),
                ("client_id", "web"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    // The right one still works on a fresh code.
    let code = code_again(&mut browser, &challenge).await;
    assert_eq!(
        exchange(&app, "web", &code, &verifier, APP_CB)
            .await
            .status(),
        200
    );
}

/// A code exchanged while its SSO session is being ended (a logout in another tab): the
/// exchange waits for the ending's write and is refused, rather than creating a refresh
/// session after the ending had listed the SSO session's sessions to end them. The ending's
/// first write is held open here in a transaction of the test's own. Before, on Postgres, the
/// exchange did not wait, read the SSO session as live and answered 200 with tokens of an
/// ended session.
async fn a_code_exchanged_while_its_sso_session_ends_is_refused(b: Backend) {
    let Some(app) = op(b).await else { return };
    let mut browser = Browser::new(&app);
    let (verifier, challenge) = pkce();
    let code = code_for_web(&app, &mut browser, &challenge).await;
    let r = while_sso_ending_is_held(&app, exchange(&app, "web", &code, &verifier, APP_CB)).await;
    assert_eq!(
        r.status(),
        400,
        "a session was made for an ended SSO session"
    );
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM sessions WHERE sso_session_id IS NOT NULL AND $1 = $1",
            "",
        )
        .await,
        0
    );
}

/// Runs `request` while every SSO session's ending (a logout's first write) is held open in a
/// transaction of the test's own, for 700 ms from 200 ms before `request` starts; then
/// commits it. Returns `request`'s answer.
pub async fn while_sso_ending_is_held<T>(
    app: &TestApp,
    request: impl std::future::Future<Output = T>,
) -> T {
    use sqlx::Connection;
    let url = app.db.url().to_string();
    let end = "UPDATE sso_sessions SET revoked_at = 1, revoked_reason = 'logout'";
    let held = std::time::Duration::from_millis(700);
    let ending = async {
        if url.starts_with("sqlite") {
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .unwrap();
            sqlx::query(end).execute(&mut c).await.unwrap();
            tokio::time::sleep(held).await;
            sqlx::query("COMMIT").execute(&mut c).await.unwrap();
        } else {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN").execute(&mut c).await.unwrap();
            sqlx::query(end).execute(&mut c).await.unwrap();
            tokio::time::sleep(held).await;
            sqlx::query("COMMIT").execute(&mut c).await.unwrap();
        }
    };
    let (answer, ()) = tokio::join!(
        async {
            // The ending's write comes first.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            request.await
        },
        ending
    );
    answer
}

/// Another code for `web` in a browser that is signed in.
pub async fn code_again(browser: &mut Browser, challenge: &str) -> String {
    let r = browser.authorize_web(challenge, &[]).await;
    redirected(&r, APP_CB)["code"].clone()
}

async fn a_code_works_once_and_only_for_its_client_and_redirect_uri(b: Backend) {
    let Some(app) = op(b).await else { return };
    let mut browser = Browser::new(&app);
    let (verifier, challenge) = pkce();
    let code = code_for_web(&app, &mut browser, &challenge).await;
    let r = exchange(&app, "web", &code, &verifier, APP_CB).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(app.userinfo(access).await.status(), 200);
    // Replayed: refused, and what the code produced is revoked (RFC 6749 §4.1.2).
    let r = exchange(&app, "web", &code, &verifier, APP_CB).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    app.userinfo_becomes(access, 401).await;
    let rt = t["refresh_token"].as_str().unwrap();
    let r = app
        .form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("client_id", "web"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 400);
    let sid: uuid::Uuid = TestApp::claims(access)["sid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let s = app.store.session(sid).await.unwrap().unwrap();
    assert_eq!(s.revoked_reason.as_deref(), Some("code_replayed"));
    assert!(audit_event_stored(&app, "code.replayed").await);

    // Parallel exchanges of one code: exactly one gets tokens, and the replays revoke them.
    let code = code_again(&mut browser, &challenge).await;
    let attempts = (0..10).map(|_| exchange(&app, "web", &code, &verifier, APP_CB));
    let answers = futures::future::join_all(attempts).await;
    let mut won = Vec::new();
    for r in answers {
        match r.status().as_u16() {
            200 => won.push(r.json::<Value>().await.unwrap()),
            400 => assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant"),
            other => panic!("status {other}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one exchange wins");
    app.userinfo_becomes(won[0]["access_token"].as_str().unwrap(), 401)
        .await;

    // Another client, another redirect URI or another verifier: refused, and the code is left
    // for its client (a wrong guess spent it).
    let code = code_again(&mut browser, &challenge).await;
    let r = exchange(&app, "cli", &code, &verifier, APP_CB).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let r = exchange(&app, "web", &code, &verifier, "https://app.example/other").await;
    assert_eq!(r.status(), 400);
    let r = exchange(&app, "web", &code, &pkce().0, APP_CB).await;
    assert_eq!(r.status(), 400);
    let r = exchange(&app, "web", &code, &verifier, APP_CB).await;
    assert_eq!(r.status(), 200);
    let access = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    // Used, then presented by another client or without its verifier: refused, and its
    // client's tokens live on (anyone who saw the code in a log could end them otherwise).
    for (client, v) in [("cli", verifier.as_str()), ("web", &pkce().0)] {
        let r = exchange(&app, client, &code, v, APP_CB).await;
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    }
    assert_eq!(app.userinfo(&access).await.status(), 200);
    // By its client, as bound: a replay, which revokes them.
    let r = exchange(&app, "web", &code, &verifier, APP_CB).await;
    assert_eq!(r.status(), 400);
    app.userinfo_becomes(&access, 401).await;
    let r = exchange(&app, "web", "not-a-code", &verifier, APP_CB).await;
    assert_eq!(r.status(), 400);
    // A code is stored only as its digest.
    let stored = app
        .scalar_i64(
            "SELECT COUNT(*) FROM authorization_codes WHERE code_hash = $1",
            &code,
        )
        .await;
    assert_eq!(stored, 0);
}

/// Whether an `event` row is stored; the audit writer stores events in batches, so wait.
pub async fn audit_event_stored(app: &TestApp, event: &'static str) -> bool {
    for _ in 0..50 {
        let n = app
            .scalar_i64("SELECT COUNT(*) FROM audit_events WHERE event = $1", event)
            .await;
        if n >= 1 {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

async fn errors_go_back_with_state_and_iss(b: Backend) {
    let Some(app) = op(b).await else { return };
    let mut browser = Browser::new(&app);
    let (_, challenge) = pkce();
    // The state comes back exactly, whatever it holds.
    let odd = "a b&c=d/é?%20\"'<>";
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("web", APP_CB, &challenge, &[("response_type", "token")])
                .replace("response_type=code&", "")
                .replace("state=st-123", &format!("state={}", urlencode(odd)))
        ))
        .await;
    let q = redirected(&r, APP_CB);
    assert_eq!(q["error"], "unsupported_response_type");
    assert_eq!(q["state"], odd);
    assert_eq!(q["iss"], app.auth_issuer());
    for (extra, error) in [
        (("prompt", "none login"), "invalid_request"),
        (("max_age", "-1"), "invalid_request"),
        (("response_mode", "fragment"), "invalid_request"),
        (("request", "eyJ.x.y"), "request_not_supported"),
        (("resource", "https://unknown.example"), "invalid_target"),
    ] {
        let r = browser
            .get(&format!(
                "/authorize?{}",
                request("web", APP_CB, &challenge, &[extra])
            ))
            .await;
        let q = redirected(&r, APP_CB);
        assert_eq!(q["error"], error, "{extra:?}");
        assert_eq!(q["state"], "st-123");
    }
    // Only scopes the client may not have: invalid_scope.
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("web", APP_CB, &challenge, &[])
                .replace("scope=openid+profile+offline_access", "scope=admin")
        ))
        .await;
    assert_eq!(redirected(&r, APP_CB)["error"], "invalid_scope");
    // A repeated parameter other than client_id or redirect_uri.
    let r = browser
        .get(&format!(
            "/authorize?{}&nonce=again",
            request("web", APP_CB, &challenge, &[])
        ))
        .await;
    assert_eq!(redirected(&r, APP_CB)["error"], "invalid_request");
    // A repeated state, or one too long to keep: refused, and no state is sent back (the
    // second copy, or the whole 5000 characters, came back).
    for query in [
        format!("{}&state=injected", request("web", APP_CB, &challenge, &[])),
        request("web", APP_CB, &challenge, &[])
            .replace("state=st-123", &format!("state={}", "s".repeat(5000))),
    ] {
        let r = browser.get(&format!("/authorize?{query}")).await;
        let q = redirected(&r, APP_CB);
        assert_eq!(q["error"], "invalid_request");
        assert!(!q.contains_key("state"), "{q:?}");
    }
    // A state that is not UTF-8 could not come back as sent: the error page.
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("web", APP_CB, &challenge, &[]).replace("state=st-123", "state=%FF%00")
        ))
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    // An S256 challenge is 43 characters.
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("web", APP_CB, &format!("{challenge}A"), &[])
        ))
        .await;
    assert_eq!(redirected(&r, APP_CB)["error"], "invalid_request");
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn forged_forms_are_refused(b: Backend) {
    let Some(app) = op(b).await else { return };
    let (_, challenge) = pkce();
    let mut browser = Browser::new(&app);
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("web", APP_CB, &challenge, &[])
        ))
        .await;
    let page = r.text().await.unwrap();
    let mut fields = hidden_fields(&page);
    fields.push(("username".into(), "alice".into()));
    fields.push(("password".into(), PASSWORD.into()));

    // Login CSRF: a foreign site's form carries no cookie of ours ...
    let mut foreign = Browser::new(&app);
    let r = foreign.post("/authorize/login", &fields).await;
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    // ... and with the cookie (SameSite aside) a wrong token or a foreign Origin fails.
    let mut wrong = fields.clone();
    for f in wrong.iter_mut().filter(|f| f.0 == "csrf") {
        f.1 = "A".repeat(43);
    }
    assert_eq!(browser.post("/authorize/login", &wrong).await.status(), 403);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&fields)
        .finish();
    // The form with the cookie, and one header more.
    let forged = |name: &'static str, value: String| {
        browser
            .http
            .post(format!("{}/authorize/login", browser.base))
            .header("cookie", browser.cookie_header())
            .header(name, value)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
    };
    for origin in [
        "https://evil.example".to_string(),
        "null".to_string(),
        // Found by probing: the host alone is not the origin.
        format!("https://{}", browser.base.trim_start_matches("http://")),
        format!("{}/evil", browser.base),
        format!(
            "http://evil.example@{}",
            browser.base.trim_start_matches("http://")
        ),
        browser.base.replace("127.0.0.1", "127.1"),
    ] {
        let r = forged("origin", origin.clone()).await.unwrap();
        assert_eq!(r.status(), 403, "{origin}");
    }
    let r = forged("sec-fetch-site", "cross-site".into()).await.unwrap();
    assert_eq!(r.status(), 403, "Sec-Fetch-Site: cross-site");
    // Without `Origin`, a `Referer` of another site is refused too (it passed: only `Origin`
    // was compared).
    for referer in [
        "https://evil.example/page".to_string(),
        format!(
            "https://{}/authorize",
            browser.base.trim_start_matches("http://")
        ),
    ] {
        let r = forged("referer", referer.clone()).await.unwrap();
        assert_eq!(r.status(), 403, "{referer}");
    }
    assert!(!browser.jar.contains_key("__Host-tessera_sso"));

    // The consent page skipped by a forged POST: no CSRF token, or no SSO session.
    let mut consent = hidden_fields(&page);
    consent.push(("decision".into(), "allow".into()));
    let r = foreign.post("/authorize/consent", &consent).await;
    assert_eq!(r.status(), 403);
    let r = browser.post("/authorize/consent", &consent).await;
    assert_eq!(r.status(), 400, "a CSRF token but no SSO session");
    assert!(r.headers().get("location").is_none());
}

/// A consent page shown to alice, answered after bob signed in over her session in another tab
/// of the same browser: it allowed access to bob's account, which bob was never asked about.
async fn a_consent_page_answers_only_for_the_user_it_was_shown_to(b: Backend) {
    let Some(app) = op(b).await else { return };
    app.create_user("bob", &[]).await;
    let mut browser = Browser::new(&app);
    let (_, challenge) = pkce();
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("partner", PARTNER_CB, &challenge, &[])
        ))
        .await;
    let page = r.text().await.unwrap();
    let r = browser.sign_in(&page, "alice", PASSWORD).await;
    let alices = r.text().await.unwrap();
    assert!(alices.contains("You are signed in as <strong>alice</strong>"));
    // Another tab: bob signs in (prompt=login) for the first-party app.
    let r = browser
        .sign_in_again("web", APP_CB, &challenge, "bob")
        .await;
    assert!(redirected(&r, APP_CB).contains_key("code"));
    // Alice's page is answered: refused, and nothing is allowed for bob; so is the page
    // without its `account` field.
    let mut fields = hidden_fields(&alices);
    fields.push(("decision".into(), "allow".into()));
    let r = browser.post("/authorize/consent", &fields).await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("another account"));
    fields.retain(|(k, _)| k != "account");
    let r = browser.post("/authorize/consent", &fields).await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    let bob = app.store.user_by_username("bob").await.unwrap().unwrap();
    assert_eq!(app.store.consent(bob.id, "partner").await.unwrap(), None);
    // A page shown to bob is his to answer.
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("partner", PARTNER_CB, &challenge, &[])
        ))
        .await;
    let page = r.text().await.unwrap();
    assert!(page.contains("You are signed in as <strong>bob</strong>"));
    let mut fields = hidden_fields(&page);
    fields.push(("decision".into(), "allow".into()));
    let r = browser.post("/authorize/consent", &fields).await;
    assert!(redirected(&r, PARTNER_CB).contains_key("code"));
}

/// Confirming a factor ends the user's other sessions, and the SSO session asks for the factor
/// at its next use: so does a code issued from it before (it was exchanged for a new
/// password-only session).
async fn a_code_from_before_a_factor_was_added_is_refused(b: Backend) {
    let Some(app) = op(b).await else { return };
    let mut browser = Browser::new(&app);
    let (verifier, challenge) = pkce();
    let code = code_for_web(&app, &mut browser, &challenge).await;
    crate::mfa::with_totp(&app, "alice").await;
    let sessions = "SELECT COUNT(*) FROM sessions WHERE client_id = $1";
    let before = app.scalar_i64(sessions, "web").await;
    let r = exchange(&app, "web", &code, &verifier, APP_CB).await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "invalid_grant");
    assert_eq!(app.scalar_i64(sessions, "web").await, before);
}

async fn third_party_clients_ask_for_consent(b: Backend) {
    let Some(app) = op(b).await else { return };
    let mut browser = Browser::new(&app);
    let (verifier, challenge) = pkce();
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("partner", PARTNER_CB, &challenge, &[])
        ))
        .await;
    let page = r.text().await.unwrap();
    let r = browser.sign_in(&page, "alice", PASSWORD).await;
    assert_eq!(r.status(), 200, "the consent page, not a code");
    let page = r.text().await.unwrap();
    assert!(page.contains("You are signed in as <strong>alice</strong>"));
    assert!(page.contains("Not you?"));
    assert!(page.contains(">Allow</button>") && page.contains(">Deny</button>"));
    assert!(page.contains("<li>openid</li>") && page.contains("<li>profile</li>"));
    assert!(
        !page.contains("<li>offline_access</li>"),
        "not the partner's to ask"
    );
    // Deny: access_denied, sent back with state.
    let mut fields = hidden_fields(&page);
    fields.push(("decision".into(), "deny".into()));
    let r = browser.post("/authorize/consent", &fields).await;
    let q = redirected(&r, PARTNER_CB);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st-123");
    // Nothing was allowed yet: prompt=none is consent_required.
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("partner", PARTNER_CB, &challenge, &[("prompt", "none")])
        ))
        .await;
    assert_eq!(redirected(&r, PARTNER_CB)["error"], "consent_required");
    // Allow: the code, for the partner with its secret.
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("partner", PARTNER_CB, &challenge, &[])
        ))
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains(">Allow</button>"),
        "a denial is not remembered"
    );
    let mut fields = hidden_fields(&page);
    fields.push(("decision".into(), "allow".into()));
    let r = browser.post("/authorize/consent", &fields).await;
    let q = redirected(&r, PARTNER_CB);
    let user = app.store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(
        app.store
            .consent(user.id, "partner")
            .await
            .unwrap()
            .as_deref(),
        Some("openid profile")
    );
    // The partner authenticates: without its secret the code is refused.
    let r = app
        .form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &q["code"]),
                ("code_verifier", &verifier),
                ("redirect_uri", PARTNER_CB),
                ("client_id", "partner"),
            ],
            None,
        )
        .await;
    // invalid_client; 400, as no Authorization header was sent to challenge.
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    // The consent is remembered: no page now, not even with prompt=none ...
    for extra in [vec![], vec![("prompt", "none")]] {
        let r = browser
            .get(&format!(
                "/authorize?{}",
                request("partner", PARTNER_CB, &challenge, &extra)
            ))
            .await;
        assert!(redirected(&r, PARTNER_CB).contains_key("code"), "{extra:?}");
    }
    // ... unless the client asks with prompt=consent.
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("partner", PARTNER_CB, &challenge, &[("prompt", "consent")])
        ))
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains(">Allow</button>"));
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("partner", PARTNER_CB, &challenge, &[])
        ))
        .await;
    let code = redirected(&r, PARTNER_CB)["code"].clone();
    // alice is an administrator with a custom claim: authority of hers that the consent
    // (scopes) never showed.
    app.auth
        .set_roles(
            tessera::auth::UserRef::Name("alice"),
            vec!["admin".into()],
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    let mut custom = serde_json::Map::new();
    custom.insert("tenant".into(), json!("acme"));
    app.auth
        .set_claims(
            tessera::auth::UserRef::Name("alice"),
            custom,
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    let r = exchange(&app, "partner", &code, &verifier, PARTNER_CB).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["scope"], "openid profile");
    // The third party's access token carries neither her roles nor her custom claims (it
    // carried "roles":["admin"], which an API's role check took for her own token).
    let claims = TestApp::claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["roles"], json!([]), "{claims}");
    assert!(claims.get("tenant").is_none(), "{claims}");
    assert_eq!(claims["client_id"], "partner");
    assert!(
        t["refresh_token"].is_string(),
        "a confidential client refreshes"
    );
    assert_eq!(
        TestApp::claims(t["id_token"].as_str().unwrap())["aud"],
        "partner"
    );
    // A third-party app's token never acts on the account at Tessera itself, even an
    // administrator's: the admin API and /logout/all refuse it.
    let partner_token = t["access_token"].as_str().unwrap();
    // /userinfo gives a third-party client what its scope allows, nothing more.
    let u: Value = app.userinfo(partner_token).await.json().await.unwrap();
    let mut keys: Vec<&str> = u.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["preferred_username", "sub", "updated_at"], "{u}");
    // And introspection no more than /userinfo: the name (the profile scope), not the roles.
    let i = app.introspect(partner_token).await;
    assert_eq!(
        (&i["active"], &i["username"]),
        (&json!(true), &json!("alice"))
    );
    assert!(i.get("roles").is_none(), "{i}");
    let i = app.introspect(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (&i["active"], &i["username"]),
        (&json!(true), &json!("alice"))
    );
    assert!(i.get("roles").is_none(), "{i}");
    let r = app
        .admin(reqwest::Method::GET, "/admin/users", partner_token, None)
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        app.post_bearer("/logout/all", partner_token).await.status(),
        403
    );
    let own = app.login_ok("alice").await;
    let own_refresh = own["refresh_token"].as_str().unwrap().to_string();
    let own = own["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(own).await["roles"], json!(["admin"]));
    // The third party introspects its own tokens, and no other client's (RFC 7662 §4): it
    // learned alice's username and roles from her first-party tokens.
    let as_partner = |token: String| {
        let app = &app;
        async move {
            let r = app
                .form(
                    "/introspect",
                    &[("token", token.as_str())],
                    Some(("partner", PARTNER_SECRET)),
                )
                .await;
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(
        as_partner(partner_token.to_string()).await["active"],
        json!(true)
    );
    for token in [own.to_string(), own_refresh] {
        assert_eq!(as_partner(token).await, json!({"active": false}));
    }
    let claims = TestApp::claims(own);
    assert_eq!(
        (&claims["roles"], &claims["tenant"]),
        (&json!(["admin"]), &json!("acme"))
    );
    let r = app
        .admin(reqwest::Method::GET, "/admin/users", own, None)
        .await;
    assert_eq!(
        r.status(),
        200,
        "the first-party client's token still works"
    );
}

async fn the_hosted_login_refuses_alike_and_throttles(b: Backend) {
    let Some(app) = op(b).await else { return };
    let mut browser = Browser::new(&app);
    let (_, challenge) = pkce();
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("web", APP_CB, &challenge, &[])
        ))
        .await;
    let page = r.text().await.unwrap();
    let mut bodies = Vec::new();
    for (user, pw) in [("alice", "wrong password"), ("nobody", PASSWORD)] {
        let r = browser.sign_in(&page, user, pw).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("location").is_none());
        let body = r.text().await.unwrap();
        assert!(body.contains("Incorrect username or password."));
        assert!(!body.contains(PASSWORD) && !body.contains("wrong password"));
        bodies.push(body.replace(user, "USER"));
    }
    assert_eq!(bodies[0], bodies[1], "no hint whether the user exists");
    // The throttle is the one /login uses: after its allowance, even the right password waits.
    let mut throttled = false;
    for _ in 0..12 {
        let r = browser.sign_in(&page, "alice", "wrong password").await;
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            throttled = true;
            break;
        }
    }
    assert!(throttled, "the hosted login is throttled");
    assert_eq!(app.login("alice", PASSWORD).await.status(), 429);
}

async fn ending_the_users_tokens_ends_the_sso_session(b: Backend) {
    let Some(app) = op(b).await else { return };
    let mut browser = Browser::new(&app);
    let (_, challenge) = pkce();
    code_for_web(&app, &mut browser, &challenge).await;
    assert_eq!(
        browser
            .get(&format!(
                "/authorize?{}",
                request("web", APP_CB, &challenge, &[])
            ))
            .await
            .status(),
        302
    );
    // logout everywhere moves the user's cut-off: the SSO session no longer signs in.
    let user = app.store.user_by_username("alice").await.unwrap().unwrap();
    app.auth
        .revoke_user(
            tessera::auth::UserRef::Id(user.id),
            "test",
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("web", APP_CB, &challenge, &[])
        ))
        .await;
    assert_eq!(r.status(), 200, "the login page again");
    // Signing in again works; disabling the user ends that session too.
    let page = r.text().await.unwrap();
    let r = browser.sign_in(&page, "alice", PASSWORD).await;
    assert!(redirected(&r, APP_CB).contains_key("code"));
    app.auth
        .set_disabled(
            tessera::auth::UserRef::Id(user.id),
            true,
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("web", APP_CB, &challenge, &[("prompt", "none")])
        ))
        .await;
    assert_eq!(redirected(&r, APP_CB)["error"], "login_required");
}

async fn form_post_answers_with_a_form(b: Backend) {
    let Some(app) = op(b).await else { return };
    let mut browser = Browser::new(&app);
    let (verifier, challenge) = pkce();
    code_for_web(&app, &mut browser, &challenge).await;
    let r = browser
        .get(&format!(
            "/authorize?{}",
            request("web", APP_CB, &challenge, &[("response_mode", "form_post")])
        ))
        .await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    let page = r.text().await.unwrap();
    assert!(page.contains("<form method=\"post\" action=\"https:&#x2f;&#x2f;app.example&#x2f;cb\""));
    assert!(page.contains("<script src=\"/ui/form_post.js\"></script>"));
    let fields: HashMap<String, String> = hidden_fields(&page).into_iter().collect();
    assert_eq!(fields["state"], "st-123");
    assert_eq!(fields["iss"], app.auth_issuer());
    let r = exchange(&app, "web", &fields["code"], &verifier, APP_CB).await;
    assert_eq!(r.status(), 200);
    let js = browser.get("/ui/form_post.js").await;
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
}

async fn pushed_requests_are_checked_used_once_and_bound_to_their_client(b: Backend) {
    let Some(app) = op(b).await else { return };
    let (verifier, challenge) = pkce();
    let push = |extra: Vec<(&'static str, String)>, basic: Option<(&'static str, &'static str)>| {
        let mut form: Vec<(String, String)> =
            form_urlencoded::parse(request("partner", PARTNER_CB, &challenge, &[]).as_bytes())
                .into_owned()
                .collect();
        for (k, v) in extra {
            form.retain(|(name, _)| name != k);
            form.push((k.to_string(), v));
        }
        let app = &app;
        async move {
            let pairs: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            app.form("/par", &pairs, basic).await
        }
    };
    let r = push(vec![], Some(("partner", PARTNER_SECRET))).await;
    assert_eq!(r.status(), 201);
    let pushed: Value = r.json().await.unwrap();
    let uri = pushed["request_uri"].as_str().unwrap().to_string();
    assert!(uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    assert_eq!(pushed["expires_in"], 60);
    let q = |client: &str, uri: &str| {
        format!(
            "/authorize?client_id={client}&request_uri={}",
            urlencode(uri)
        )
    };
    // Another client cannot use it; the browser carries only client_id and request_uri.
    let mut browser = Browser::new(&app);
    let r = browser.get(&q("web", &uri)).await;
    assert_eq!(r.status(), 400);
    let r = browser.get(&q("partner", &uri)).await;
    assert_eq!(r.status(), 200, "another client's attempt did not spend it");
    // A fresh push, used by its client: the login page carries only client_id and
    // request_uri, and what the browser adds to the form is not read.
    let r = push(vec![], Some(("partner", PARTNER_SECRET))).await;
    let uri: String = r.json::<Value>().await.unwrap()["request_uri"]
        .as_str()
        .unwrap()
        .into();
    let r = browser.get(&q("partner", &uri)).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    let carried: Vec<String> = hidden_fields(&page).into_iter().map(|(k, _)| k).collect();
    assert_eq!(carried, ["csrf", "client_id", "request_uri"]);
    let mut fields = hidden_fields(&page);
    fields.push((
        "redirect_uri".into(),
        "http://127.0.0.1:9999/callback".into(),
    ));
    fields.push(("state".into(), "TAMPERED".into()));
    fields.push(("username".into(), "alice".into()));
    fields.push(("password".into(), PASSWORD.into()));
    let r = browser.post("/authorize/login", &fields).await;
    assert_eq!(r.status(), 200, "the consent page");
    let page = r.text().await.unwrap();
    // A reload before the code is issued shows the page again (RFC 9126 §4 allows it).
    assert_eq!(browser.get(&q("partner", &uri)).await.status(), 200);
    let mut fields = hidden_fields(&page);
    fields.push(("decision".into(), "allow".into()));
    fields.push(("state".into(), "TAMPERED".into()));
    let r = browser.post("/authorize/consent", &fields).await;
    let back = redirected(&r, PARTNER_CB);
    assert_eq!(back["state"], "st-123", "the pushed state, not the form's");
    let code = back["code"].clone();
    assert_eq!(
        exchange(&app, "partner", &code, &verifier, PARTNER_CB)
            .await
            .status(),
        200
    );
    // Used up by the code.
    let r = browser.get(&q("partner", &uri)).await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    // Refused at the push: what /authorize would refuse, a public client, a foreign client_id.
    for (extra, error) in [
        (
            vec![("redirect_uri", "https://evil.example/".to_string())],
            "invalid_request",
        ),
        (
            vec![("code_challenge_method", "plain".to_string())],
            "invalid_request",
        ),
        (vec![("scope", "admin".to_string())], "invalid_scope"),
        (vec![("request_uri", uri.clone())], "invalid_request"),
    ] {
        let r = push(extra.clone(), Some(("partner", PARTNER_SECRET))).await;
        assert_eq!(r.status(), 400, "{extra:?}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            error,
            "{extra:?}"
        );
    }
    // A client_id other than the authenticated client's: invalid_client (RFC 6749 §2.3).
    let r = push(
        vec![("client_id", "web".to_string())],
        Some(("partner", PARTNER_SECRET)),
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    // A public client may not push.
    let r = push(vec![("client_id", "web".to_string())], None).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
}
