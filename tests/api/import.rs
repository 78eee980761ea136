//! Users moved from other systems with their password hashes (`tessera user import`, `user add
//! --password-hash`), re-hashed to argon2id at their first login; and passwords compared after
//! NFKC normalisation.

use serde_json::{json, Value};

use crate::cli::tessera;
use crate::helpers::{Backend, TestApp};
use crate::on_both;

on_both!(
    imported_users_log_in_and_are_rehashed,
    bad_import_lines_are_reported_by_number,
    user_add_takes_a_password_hash,
    passwords_are_compared_after_nfkc,
);

/// The password of every hash below, made by Python's `bcrypt`, `hashlib` and `passlib`.
const PW: &str = "correct horse battery staple";
const BCRYPT: &str = "$2b$04$P7bxGvKUsUxbmhaJNqmqkevYTPNz0oun0HwDL84EMHMT5cIpjGA7.";
const BCRYPT_2Y: &str = "$2y$04$29N5RxMKofyI9lh/AjS78uGd6YDOO87WFseGL6aEpCT6bERCDkvpW";
const DJANGO: &str = "pbkdf2_sha256$1000$saltysalt123$bdlERmmw+duuk5FecWFTVO0M81ggrAuyxRe4nczc3tw=";
const PASSLIB: &str =
    "$pbkdf2-sha256$1100$19obI0RoLUUoxRjDOMc4hw$LOfBBJPa16Bi00Ls3W2DyERwXUIO3W1375i/B1qSwbE";
const KEYCLOAK: &str = r#"{"type": "password", "secretData": "{\"value\": \"jGblgNRVzfUznQAUNO6VBaWSuU2UFuJ2XYZghXbbFq1SZxd+SJ5ZiQBj4cQcqbx2ip0vzy2Z1owJO/kswdDqAg==\", \"salt\": \"ZGVmZ2hpamtsbW5vcHFycw==\", \"additionalParameters\": {}}", "credentialData": "{\"hashIterations\": 1300, \"algorithm\": \"pbkdf2-sha512\", \"additionalParameters\": {}}"}"#;

/// Runs `tessera` against the app's database, with `stdin`.
async fn cli(app: &TestApp, args: Vec<String>, stdin: Option<String>) -> (bool, String) {
    let (url, master) = (app.db.url().to_string(), app.master_key.clone());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tessera(&url, &master, &args, stdin.as_deref())
    })
    .await
    .unwrap()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

async fn stored_hash(app: &TestApp, name: &str) -> String {
    app.store
        .user_by_username(name)
        .await
        .unwrap()
        .unwrap()
        .password_hash
}

async fn imported_users_log_in_and_are_rehashed(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let keycloak: Value = serde_json::from_str(KEYCLOAK).unwrap();
    let lines = [
        json!({"username": "alice", "password_hash": BCRYPT}),
        json!({"username": "amir", "password_hash": BCRYPT_2Y}),
        json!({"username": "bob", "password_hash": DJANGO, "roles": ["admin"]}),
        json!({"username": "carol", "password_hash": PASSLIB}),
        json!({"username": "dave", "password_hash": keycloak, "roles": ["ops"],
               "claims": {"tenant": "t1"}}),
        json!({"username": "erin", "password_hash": BCRYPT, "disabled": true}),
    ];
    let file: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let (ok, out) = cli(&app, args(&["user", "import", "-"]), Some(file.clone())).await;
    assert!(ok, "{out}");
    assert!(out.contains("imported 6 user(s)"), "{out}");
    assert!(!out.contains("$2b$"), "a hash reached the output: {out}");
    // The CLI writes its audit rows before it exits.
    let created = app
        .store
        .audit_events(&tessera::store::AuditQuery {
            event: Some("user.created".into()),
            limit: 100,
            before: i64::MAX,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(created.len(), 6);
    assert!(created
        .iter()
        .all(|e| e.reason.as_deref() == Some("imported")));

    for name in ["alice", "amir", "bob", "carol", "dave"] {
        let before = stored_hash(&app, name).await;
        assert!(!before.starts_with("$argon2id$"), "{name}: {before}");
        assert_eq!(
            app.login(name, "correct horse battery stapler")
                .await
                .status(),
            401
        );
        let r = app.login(name, PW).await;
        assert_eq!(r.status(), 200, "{name}");
        let t: Value = r.json().await.unwrap();
        let after = stored_hash(&app, name).await;
        assert!(
            after.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{name}: {after}"
        );
        // The new hash works, and only with the password.
        assert_eq!(app.login(name, PW).await.status(), 200, "{name}");
        if name == "dave" {
            let claims = TestApp::claims(t["access_token"].as_str().unwrap());
            assert_eq!(claims["tenant"], "t1");
            assert_eq!(claims["roles"], json!(["ops"]));
        }
    }
    assert_eq!(app.login("erin", PW).await.status(), 401);

    // A re-run: nothing changes with --on-conflict skip; the default refuses.
    let (ok, out) = cli(
        &app,
        args(&["user", "import", "-", "--on-conflict", "skip"]),
        Some(file.clone()),
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("imported 0 user(s); 6 existing left alone"),
        "{out}"
    );
    let extra = format!(
        "{file}{}\n",
        json!({"username": "zed", "password_hash": BCRYPT})
    );
    let (ok, out) = cli(&app, args(&["user", "import", "-"]), Some(extra)).await;
    assert!(!ok, "{out}");
    assert!(out.contains("exists already: alice"), "{out}");
    assert!(app.store.user_by_username("zed").await.unwrap().is_none());
}

async fn bad_import_lines_are_reported_by_number(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let file = [
        json!({"username": "alice", "password_hash": BCRYPT}).to_string(),
        json!({"username": "costly", "password_hash": BCRYPT.replace("$04$", "$15$")}).to_string(),
        json!({"username": "plain", "password_hash": "hunter2hunter2"}).to_string(),
        "{\"username\": \"broken\", ".to_string(),
        json!({"username": "sneaky", "password_hash": BCRYPT, "claims": {"sub": "x"}}).to_string(),
        json!({"username": "ALICE", "password_hash": BCRYPT}).to_string(),
        String::new(),
        json!({"username": "pbk", "password_hash": DJANGO.replace("$1000$", "$3000000$")})
            .to_string(),
        json!({"username": "x", "password": "plaintext"}).to_string(),
    ]
    .join("\n");
    let (ok, out) = cli(&app, args(&["user", "import", "-"]), Some(file.clone())).await;
    assert!(!ok, "{out}");
    for (line, why) in [
        (2, "max_bcrypt_cost"),
        (3, "unrecognised"),
        (4, "not JSON"),
        (5, "\"sub\""),
        (6, "repeats line 1"),
        (8, "max_pbkdf2_iterations"),
        (9, "not an import line"),
    ] {
        let said = out
            .lines()
            .find(|l| l.starts_with(&format!("line {line}: ")))
            .unwrap_or_else(|| panic!("line {line} not reported: {out}"));
        assert!(said.contains(why), "{said}");
    }
    assert!(
        !out.contains("hunter2") && !out.contains("plaintext"),
        "{out}"
    );
    assert!(out.contains("nothing imported"), "{out}");
    assert!(app.store.user_by_username("alice").await.unwrap().is_none());
    // --skip-invalid imports the one good line.
    let (ok, out) = cli(
        &app,
        args(&["user", "import", "-", "--skip-invalid"]),
        Some(file),
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("imported 1 user(s)"), "{out}");
    assert_eq!(app.store.list_users().await.unwrap().len(), 1);
    assert_eq!(app.login("alice", PW).await.status(), 200);
}

async fn user_add_takes_a_password_hash(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let (ok, out) = cli(
        &app,
        args(&[
            "user",
            "add",
            "alice",
            "--password-hash",
            BCRYPT,
            "--role",
            "ops",
        ]),
        None,
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = cli(
        &app,
        args(&["user", "add", "dave", "--password-hash", "-"]),
        Some(KEYCLOAK.to_string()),
    )
    .await;
    assert!(ok, "{out}");
    for name in ["alice", "dave"] {
        assert_eq!(app.login(name, PW).await.status(), 200, "{name}");
    }
    // Refusals name the rule; a taken name is a conflict.
    let costly = BCRYPT.replace("$04$", "$16$");
    let (ok, out) = cli(
        &app,
        args(&["user", "add", "bob", "--password-hash", &costly]),
        None,
    )
    .await;
    assert!(!ok);
    assert!(out.contains("password.max_bcrypt_cost"), "{out}");
    let (ok, out) = cli(
        &app,
        args(&["user", "add", "ALICE", "--password-hash", BCRYPT]),
        None,
    )
    .await;
    assert!(!ok);
    assert!(out.contains("conflict"), "{out}");
    assert!(app.store.user_by_username("bob").await.unwrap().is_none());
}

async fn passwords_are_compared_after_nfkc(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    // Full-width Latin letters: NFKC makes them ASCII.
    let wide = "ｃｏｒｒｅｃｔ ｈｏｒｓｅ ｂａｔｔｅｒｙ ｓｔａｐｌｅ";
    app.auth
        .create_user(
            "nina",
            wide.to_string().into(),
            vec![],
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    assert_eq!(app.login("nina", PW).await.status(), 200);
    assert_eq!(app.login("nina", wide).await.status(), 200);
    assert_eq!(
        app.login("nina", "correct horse battery stapl")
            .await
            .status(),
        401
    );
    // A hash made from the raw input (before NFKC, or by another system) still works, and the
    // login re-hashes it from the NFKC form.
    let params = argon2::Params::new(19456, 2, 1, None).unwrap();
    let raw = tessera::auth::password::hash_blocking(&params, wide.as_bytes()).unwrap();
    app.store
        .create_user(tessera::store::NewUser {
            id: uuid::Uuid::now_v7(),
            username: "lena".into(),
            skeleton: None,
            password_hash: raw.clone(),
            roles: vec![],
            claims: Default::default(),
            disabled: false,
            now: tessera::time::now_ms(),
            email: None,
            email_key: None,
            email_verified: false,
        })
        .await
        .unwrap();
    assert_eq!(app.login("lena", PW).await.status(), 401);
    assert_eq!(app.login("lena", wide).await.status(), 200);
    assert_ne!(stored_hash(&app, "lena").await, raw);
    assert_eq!(app.login("lena", PW).await.status(), 200);
}
