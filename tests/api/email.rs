//! Users' email addresses: set through the admin API, the CLI and imports; unique whatever the
//! case or the domain's Unicode form; a login by username or address, with one answer and one
//! throttle; and the `email` scope's claims in `/userinfo` and ID tokens.

use figment::providers::Serialized;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp, PASSWORD};
use crate::on_both;

on_both!(
    users_log_in_with_their_address,
    an_address_belongs_to_one_account,
    the_email_scope_shows_the_address,
    id_tokens_carry_the_address_with_the_email_scope,
    the_cli_and_imports_carry_the_address
);

/// A server with an admin; the admin's access token.
async fn with_admin(b: Backend) -> Option<(TestApp, String)> {
    let app = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("tokens.scopes", json!(["email"])))
            .merge(Serialized::default("throttle.account_free_failures", 3))
    })
    .await?;
    app.create_user("root", &["admin"]).await;
    let admin = app.login_ok("root").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    Some((app, admin))
}

async fn create(app: &TestApp, admin: &str, name: &str, email: &str) -> reqwest::Response {
    app.admin(
        Method::POST,
        "/admin/users",
        admin,
        Some(json!({"username": name, "password": PASSWORD, "email": email})),
    )
    .await
}

async fn users_log_in_with_their_address(b: Backend) {
    let Some((app, admin)) = with_admin(b).await else {
        return;
    };
    let r = create(&app, &admin, "zoe", " Zoë@Bücher.Example ").await;
    assert_eq!(r.status(), 201);
    let zoe: Value = r.json().await.unwrap();
    assert_eq!(zoe["email"], "Zoë@Bücher.Example");
    assert_eq!(zoe["email_verified"], false);
    // The address, in any case and either form of its domain, logs in as the username does.
    for login in ["zoe", "Zoë@Bücher.Example", "ZOË@xn--bcher-kva.example"] {
        let r = app.login(login, PASSWORD).await;
        assert_eq!(r.status(), 200, "{login}");
        let t: Value = r.json().await.unwrap();
        assert_eq!(
            TestApp::claims(t["access_token"].as_str().unwrap())["sub"],
            zoe["id"]
        );
    }
    // A name that is another account's address does not shadow it: the address wins.
    let r = app
        .admin(
            Method::POST,
            "/admin/users",
            &admin,
            Some(json!({"username": "shadow@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let sol: Value = create(&app, &admin, "sol", "Shadow@Example.com")
        .await
        .json()
        .await
        .unwrap();
    let r = app.login("shadow@example.com", PASSWORD).await;
    let t: Value = r.json().await.unwrap();
    assert_eq!(
        TestApp::claims(t["access_token"].as_str().unwrap())["sub"],
        sol["id"]
    );
    // A wrong password by address, and an unknown address: the username's one answer.
    let by_name = app.login("zoe", "wrong password!").await;
    assert_eq!(by_name.status(), 401);
    let by_name: Value = by_name.json().await.unwrap();
    for login in [
        "zoë@bücher.example",
        "nobody@bücher.example",
        "not-an-address@",
    ] {
        let r = app.login(login, "wrong password!").await;
        assert_eq!(r.status(), 401, "{login}");
        assert_eq!(r.json::<Value>().await.unwrap(), by_name, "{login}");
    }
    // One throttle for the name and the address: three failures in all (one above, two
    // here) use the allowance up, whichever was typed.
    let r = app.login("ZOË@bücher.example", "wrong password!").await;
    assert_eq!(r.status(), 401);
    let r = app.login("zoe", "wrong password!").await;
    assert!(matches!(r.status().as_u16(), 401 | 429));
    let r = app.login("zoë@bücher.example", PASSWORD).await;
    assert_eq!(r.status(), 429, "the address shares the name's throttle");
    let r = app.login("zoe", PASSWORD).await;
    assert_eq!(r.status(), 429);
}

async fn an_address_belongs_to_one_account(b: Backend) {
    let Some((app, admin)) = with_admin(b).await else {
        return;
    };
    assert_eq!(
        create(&app, &admin, "amy", "amy@example.com")
            .await
            .status(),
        201
    );
    // The same mailbox, written otherwise: 409, and no user is created.
    for same in ["AMY@EXAMPLE.COM", " amy@Example.com"] {
        let r = create(&app, &admin, "amy2", same).await;
        assert_eq!(r.status(), 409, "{same}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "conflict");
    }
    assert!(app.store.user_by_username("amy2").await.unwrap().is_none());
    let r = create(&app, &admin, "ann", "ann@bücher.example").await;
    assert_eq!(r.status(), 201);
    let ann: Value = r.json().await.unwrap();
    let r = create(&app, &admin, "ann2", "Ann@xn--bcher-kva.example").await;
    assert_eq!(r.status(), 409);
    // Not addresses: 400 naming the rule, and nothing stored.
    for bad in [
        "ann",
        "ann@",
        "Ann <ann@example.com>",
        "a@[127.0.0.1]",
        "a@b",
    ] {
        let r = create(&app, &admin, "bad", bad).await;
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request");
    }
    assert!(app.store.user_by_username("bad").await.unwrap().is_none());
    // Changing one: not to another account's; to a free one, or none.
    let path = format!("/admin/users/{}/email", ann["id"].as_str().unwrap());
    let r = app
        .admin(
            Method::PUT,
            &path,
            &admin,
            Some(json!({"email": "amy@example.com"})),
        )
        .await;
    assert_eq!(r.status(), 409);
    let r = app
        .admin(
            Method::PUT,
            &path,
            &admin,
            Some(json!({"email": "ann@example.org", "verified": true})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["email"].as_str(), v["email_verified"].as_bool()),
        (Some("ann@example.org"), Some(true))
    );
    // The old address is free again, and no longer logs ann in.
    assert_eq!(
        app.login("ann@bücher.example", PASSWORD).await.status(),
        401
    );
    assert_eq!(app.login("ann@example.org", PASSWORD).await.status(), 200);
    let r = app
        .admin(Method::PUT, &path, &admin, Some(json!({"email": null})))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["email"].clone(), v["email_verified"].clone()),
        (Value::Null, json!(false))
    );
    let stored = app.store.user_by_username("ann").await.unwrap().unwrap();
    assert_eq!(stored.email, None);
    assert!(!stored.email_verified);
    assert_eq!(
        create(&app, &admin, "ann3", "ann@bücher.example")
            .await
            .status(),
        201
    );
}

async fn the_email_scope_shows_the_address(b: Backend) {
    let Some((app, admin)) = with_admin(b).await else {
        return;
    };
    assert_eq!(
        create(&app, &admin, "eve", "Eve@Example.com")
            .await
            .status(),
        201
    );
    let plain = app.login_ok("eve").await;
    let r = app.userinfo(plain["access_token"].as_str().unwrap()).await;
    let info: Value = r.json().await.unwrap();
    assert!(info.get("email").is_none(), "{info}");
    let r = app
        .post_json(
            "/login",
            &json!({"username": "eve@example.com", "password": PASSWORD, "scope": "email"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let access = t["access_token"].as_str().unwrap();
    let info: Value = app.userinfo(access).await.json().await.unwrap();
    assert_eq!(info["email"], "Eve@Example.com");
    assert_eq!(info["email_verified"], false);
    let id = info["sub"].as_str().unwrap().to_string();
    let r = app
        .admin(
            Method::PUT,
            &format!("/admin/users/{id}/email"),
            &admin,
            Some(json!({"email": "Eve@Example.com", "verified": true})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let info: Value = app.userinfo(access).await.json().await.unwrap();
    assert_eq!(info["email_verified"], true);
}

async fn the_cli_and_imports_carry_the_address(b: Backend) {
    let Some((app, _)) = with_admin(b).await else {
        return;
    };
    let cli = |args: Vec<String>, stdin: Option<&'static str>| {
        let (url, master) = (app.db.url().to_string(), app.master_key.clone());
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crate::cli::tessera(&url, &master, &args, stdin)
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (ok, out) = cli(
        args(&[
            "user",
            "add",
            "kim",
            "--password-stdin",
            "--email",
            "kim@example.com",
        ]),
        Some("correct horse battery staple\n"),
    )
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert_eq!(app.login("KIM@example.com", PASSWORD).await.status(), 200);
    let (ok, out) = cli(
        args(&["user", "set-email", "kim", "kim@example.org", "--verified"]),
        None,
    )
    .await
    .unwrap();
    assert!(ok, "{out}");
    let kim = app.store.user_by_username("kim").await.unwrap().unwrap();
    assert_eq!(kim.email.as_deref(), Some("kim@example.org"));
    assert!(kim.email_verified);
    let (ok, out) = cli(args(&["user", "set-email", "kim", "not an address"]), None)
        .await
        .unwrap();
    assert!(!ok, "{out}");

    // An import keeps the address and whether the old system had verified it.
    let hash = kim.password_hash.clone();
    let file = std::env::temp_dir().join(format!("tessera-import-{}.jsonl", uuid::Uuid::now_v7()));
    std::fs::write(
        &file,
        format!(
            "{}\n{}\n",
            json!({"username": "lee", "password_hash": hash, "email": "Lee@Example.com", "email_verified": true}),
            json!({"username": "max", "password_hash": hash, "email": "max@example.com"}),
        ),
    )
    .unwrap();
    let (ok, out) = cli(args(&["user", "import", file.to_str().unwrap()]), None)
        .await
        .unwrap();
    assert!(ok, "{out}");
    let lee = app.store.user_by_username("lee").await.unwrap().unwrap();
    assert_eq!(
        (lee.email.as_deref(), lee.email_verified),
        (Some("Lee@Example.com"), true)
    );
    let max = app.store.user_by_username("max").await.unwrap().unwrap();
    assert!(!max.email_verified);
    assert_eq!(app.login("lee@example.com", PASSWORD).await.status(), 200);
    // An address another line or account holds: nothing is imported.
    std::fs::write(
        &file,
        format!(
            "{}\n",
            json!({"username": "ned", "password_hash": hash, "email": "LEE@example.com"})
        ),
    )
    .unwrap();
    let (ok, _) = cli(args(&["user", "import", file.to_str().unwrap()]), None)
        .await
        .unwrap();
    assert!(!ok);
    assert!(app.store.user_by_username("ned").await.unwrap().is_none());
    let _ = std::fs::remove_file(&file);
}

async fn id_tokens_carry_the_address_with_the_email_scope(b: Backend) {
    use crate::oidc::{exchange, pkce, redirected, Browser};
    const CB: &str = "https://mail.example/cb";
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default(
            "clients",
            json!([{"id": "mail", "public": true, "first_party": true,
                    "redirect_uris": [CB], "scopes": ["openid", "email", "profile"]}]),
        ))
    })
    .await
    else {
        return;
    };
    app.auth
        .create_user_with_email(
            "ida",
            secrecy::SecretString::from(PASSWORD),
            vec![],
            Some("Ida@Example.com"),
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    for (scope, expect) in [("openid email", true), ("openid profile", false)] {
        let mut browser = Browser::new(&app);
        let (verifier, challenge) = pkce();
        let q = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", "mail")
            .append_pair("redirect_uri", CB)
            .append_pair("scope", scope)
            .append_pair("state", "s")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        let page = browser
            .get(&format!("/authorize?{q}"))
            .await
            .text()
            .await
            .unwrap();
        // The login page takes the address as the username.
        let r = browser.sign_in(&page, "ida@example.com", PASSWORD).await;
        let code = redirected(&r, CB)["code"].clone();
        let r = exchange(&app, "mail", &code, &verifier, CB).await;
        assert_eq!(r.status(), 200);
        let t: Value = r.json().await.unwrap();
        let id = TestApp::claims(t["id_token"].as_str().unwrap());
        match expect {
            true => {
                assert_eq!(id["email"], "Ida@Example.com", "{id}");
                assert_eq!(id["email_verified"], false);
            }
            false => assert!(id.get("email").is_none(), "{id}"),
        }
    }
}
