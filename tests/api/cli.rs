//! The `tessera` binary: user management, migrations, the health probe, and logs that never
//! carry a secret.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{Backend, Db, TestApp};
use crate::on_both;

on_both!(
    user_add_creates_an_account,
    user_add_refuses_bad_input,
    list_commands_show_no_secrets,
    user_changes_take_effect,
    session_revoke_says_what_it_did,
    migrate_is_idempotent,
    read_only_commands_create_nothing,
    a_lost_sqlite_key_file_refuses_to_start,
    text_logs_to_a_pipe_carry_no_colour,
    start_up_names_the_issuer_and_warns_of_a_short_publish_ahead,
    serve_logs_no_secrets,
    healthcheck_and_config_files,
);

pub(crate) fn tessera(
    db_url: &str,
    master: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(args)
        .env("DATABASE_URL", db_url)
        .env("TESSERA__KEYS__MASTER_KEY", master)
        .env("TESSERA__LOG__LEVEL", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

async fn run(
    app: &TestApp,
    args: &'static [&'static str],
    stdin: Option<&'static str>,
) -> (bool, String) {
    let (url, master) = (app.db.url().to_string(), app.master_key.clone());
    tokio::task::spawn_blocking(move || tessera(&url, &master, args, stdin))
        .await
        .unwrap()
}

/// A server with `bob` (roles admin and ops) created by `tessera user add`, and a token pair
/// of his.
async fn with_bob_added(b: Backend) -> Option<(TestApp, Value)> {
    let app = TestApp::spawn(b).await?;
    let (ok, out) = run(
        &app,
        &[
            "user",
            "add",
            "Bob",
            "--password-stdin",
            "--role",
            "admin",
            "--role",
            "ops",
        ],
        Some("s3cret password\n"),
    )
    .await;
    assert!(ok, "{out}");
    assert!(!out.contains("s3cret"), "the password was echoed: {out}");
    let stored = app.store.user_by_username("bob").await.unwrap().unwrap();
    assert_eq!(stored.roles, vec!["admin", "ops"]);
    assert!(stored
        .password_hash
        .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    let r = app.login("BOB", "s3cret password").await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(
        TestApp::claims(t["access_token"].as_str().unwrap())["roles"],
        json!(["admin", "ops"])
    );

    Some((app, t))
}

/// `user add` stores a normalised name, the roles, and an argon2id hash; the password is never
/// echoed.
async fn user_add_creates_an_account(b: Backend) {
    let Some((app, t)) = with_bob_added(b).await else {
        return;
    };
    assert_eq!(
        app.userinfo(t["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
}

async fn user_add_refuses_bad_input(b: Backend) {
    let Some((app, _)) = with_bob_added(b).await else {
        return;
    };
    // A common password is refused, and the message names the rule.
    let (ok, out) = run(
        &app,
        &["user", "add", "carl", "--password-stdin"],
        Some("password123\n"),
    )
    .await;
    assert!(!ok);
    assert!(out.contains("too common"), "{out}");
    // Duplicates, short passwords and bad roles are refused without touching the stored user.
    let (ok, _) = run(
        &app,
        &["user", "add", "BOB", "--password-stdin"],
        Some("another password\n"),
    )
    .await;
    assert!(!ok);
    let (ok, _) = run(
        &app,
        &["user", "add", "carl", "--password-stdin"],
        Some("short\n"),
    )
    .await;
    assert!(!ok);
    let (ok, _) = run(
        &app,
        &[
            "user",
            "add",
            "carl",
            "--password-stdin",
            "--role",
            "bad role",
        ],
        Some("long enough pw\n"),
    )
    .await;
    assert!(!ok);
    assert!(app.store.user_by_username("carl").await.unwrap().is_none());

    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM users WHERE $1 = $1", "")
            .await,
        1
    );
}

/// `user list` and `keys list` show accounts and keys, never a hash.
async fn list_commands_show_no_secrets(b: Backend) {
    let Some((app, _)) = with_bob_added(b).await else {
        return;
    };
    let (ok, out) = run(&app, &["user", "list"], None).await;
    assert!(
        ok && out.contains("bob") && out.contains("admin,ops"),
        "{out}"
    );
    assert!(!out.contains("argon2"), "user list must not print hashes");

    let (ok, out) = run(&app, &["keys", "list"], None).await;
    assert!(
        ok && out.contains("ES256") && out.contains("active"),
        "{out}"
    );
}

/// `set-roles`, `disable`, `enable` and `set-password` take effect on the running server.
async fn user_changes_take_effect(b: Backend) {
    let Some((app, t)) = with_bob_added(b).await else {
        return;
    };
    let (ok, out) = run(
        &app,
        &["user", "set-roles", "bob", "--role", "viewer"],
        None,
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(
        app.store
            .user_by_username("bob")
            .await
            .unwrap()
            .unwrap()
            .roles,
        vec!["viewer"]
    );

    let (ok, _) = run(&app, &["user", "disable", "bob"], None).await;
    assert!(ok);
    assert_eq!(app.login("bob", "s3cret password").await.status(), 401);
    app.userinfo_becomes(t["access_token"].as_str().unwrap(), 401)
        .await;
    let (ok, _) = run(&app, &["user", "enable", "bob"], None).await;
    assert!(ok);
    assert_eq!(app.login("bob", "s3cret password").await.status(), 200);

    let (ok, out) = run(
        &app,
        &["user", "set-password", "bob", "--password-stdin"],
        Some("the new password\r\n"),
    )
    .await;
    assert!(ok, "{out}");
    // The old token must die.
    app.userinfo_becomes(t["access_token"].as_str().unwrap(), 401)
        .await;
    assert_eq!(
        app.refresh(t["refresh_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    assert_eq!(app.login("bob", "s3cret password").await.status(), 401);
    assert_eq!(app.login("bob", "the new password").await.status(), 200);

    let (ok, _) = run(&app, &["user", "disable", "nobody"], None).await;
    assert!(!ok, "unknown user must fail");
}

/// `session revoke` ends a live session and says so; an ended one it leaves as it was and says
/// that instead (it printed "ended" both times); an unknown id fails.
async fn session_revoke_says_what_it_did(b: Backend) {
    let Some((app, t)) = with_bob_added(b).await else {
        return;
    };
    let sid = TestApp::claims(t["access_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let (url, master) = (app.db.url().to_string(), app.master_key.clone());
    let revoke = |id: String| {
        let (url, master) = (url.clone(), master.clone());
        tokio::task::spawn_blocking(move || {
            tessera(&url, &master, &["session", "revoke", &id], None)
        })
    };
    let (ok, out) = revoke(sid.clone()).await.unwrap();
    assert!(ok && out.contains(&format!("session {sid} ended")), "{out}");
    assert_eq!(
        app.refresh(t["refresh_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    let (ok, out) = revoke(sid.clone()).await.unwrap();
    assert!(
        ok && out.contains("had already ended (revoked_by_admin,")
            && out.contains("nothing changed"),
        "{out}"
    );
    let (ok, out) = revoke(uuid::Uuid::now_v7().to_string()).await.unwrap();
    assert!(!ok && out.contains("no such session"), "{out}");
    // One that expired unrevoked: it said "ended" as if this had ended it.
    let r = app.login("bob", "s3cret password").await;
    let t: Value = r.json().await.unwrap();
    let sid = TestApp::claims(t["access_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_string();
    app.exec_sql("UPDATE sessions SET idle_expires_at = 1 WHERE revoked_at IS NULL".into())
        .await;
    let (ok, out) = revoke(sid).await.unwrap();
    assert!(ok && out.contains("had already expired"), "{out}");
}

async fn migrate_is_idempotent(b: Backend) {
    let Some(db) = Db::create(b).await else {
        return;
    };
    let master = crate::helpers::master_key();
    let url = db.url().to_string();
    let (first, second) = tokio::task::spawn_blocking(move || {
        (
            tessera(&url, &master, &["migrate"], None),
            tessera(&url, &master, &["migrate"], None),
        )
    })
    .await
    .unwrap();
    assert!(first.0, "{}", first.1);
    assert!(second.0, "{}", second.1);
    // A mistyped TESSERA__ variable is reported, not silently used or fatal; a bad value of a
    // real setting is fatal and names the key.
    let (url, master) = (db.url().to_string(), crate::helpers::master_key());
    let (typo, bad) = tokio::task::spawn_blocking(move || {
        let run = |k: &str, v: &str| {
            Command::new(env!("CARGO_BIN_EXE_tessera"))
                .arg("migrate")
                .env("DATABASE_URL", &url)
                .env("TESSERA__KEYS__MASTER_KEY", &master)
                .env(k, v)
                .output()
                .unwrap()
        };
        (
            run("TESSERA__HTTP__BINDD", "0.0.0.0:1"),
            run("TESSERA__TOKENS__ACCESS_TTL", "soon"),
        )
    })
    .await
    .unwrap();
    // A previous master key that is not a key names its own setting, not the current key's.
    let (url, master) = (db.url().to_string(), crate::helpers::master_key());
    let previous = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["keys", "rotate"])
            .env("DATABASE_URL", &url)
            .env("TESSERA__KEYS__MASTER_KEY", &master)
            .env("TESSERA__KEYS__PREVIOUS_MASTER_KEYS", "Zm9vYmFy")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&previous.stderr);
    assert!(!previous.status.success());
    assert!(said.contains("keys.previous_master_keys: "), "{said}");
    assert!(!said.contains("keys.master_key"), "{said}");
    assert!(typo.status.success());
    // A command's logs go to stderr: its stdout is its result.
    assert!(String::from_utf8_lossy(&typo.stderr).contains("TESSERA__HTTP__BINDD"));
    assert!(!String::from_utf8_lossy(&typo.stdout).contains("TESSERA__HTTP__BINDD"));
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("TOKENS.ACCESS_TTL"));
    // Postgres without a master key refuses to start the service (here, to rotate keys); the
    // message names the setting, and a fresh database is left as it was (it was migrated
    // first).
    if b == Backend::Postgres {
        let Some(fresh) = Db::create(b).await else {
            return;
        };
        let url = fresh.url().to_string();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_tessera"))
                .args(["keys", "rotate"])
                .env("DATABASE_URL", &url)
                .env_remove("TESSERA__KEYS__MASTER_KEY")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("master_key"));
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(fresh.url()).await.unwrap();
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert_eq!(tables, 0, "a refused start wrote to the database");
    }
}

/// A SQLite database without `keys.master_key` keeps a generated key in `master.key` beside it.
/// Once that file is gone, a database that holds sealed signing keys refuses to start, names
/// the file, and writes no new key (which would leave the old keys unreadable for good).
async fn a_lost_sqlite_key_file_refuses_to_start(b: Backend) {
    let Some(db) = Db::create(b).await else {
        return;
    };
    let Db::Sqlite { dir, .. } = &db else {
        return;
    };
    let key_file = dir.join("master.key");
    let url = db.url().to_string();
    let rotate = move || {
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["keys", "rotate"])
            .env("DATABASE_URL", &url)
            .env_remove("TESSERA__KEYS__MASTER_KEY")
            .env("TESSERA__LOG__LEVEL", "warn")
            .output()
            .unwrap()
    };
    let first = tokio::task::spawn_blocking(rotate.clone()).await.unwrap();
    assert!(first.status.success(), "{first:?}");
    let generated = std::fs::read_to_string(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let second = tokio::task::spawn_blocking(rotate.clone()).await.unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{second:?}");
    assert!(stderr.contains("master.key is missing"), "{stderr}");
    assert!(!stderr.contains(generated.trim()), "{stderr}");
    assert!(!key_file.exists(), "a new master key was written");
    // With the file back, the database starts again.
    std::fs::write(&key_file, &generated).unwrap();
    let third = tokio::task::spawn_blocking(rotate).await.unwrap();
    assert!(third.status.success(), "{third:?}");
}

/// `user list` and `keys list` open only the store. On a database that was never migrated
/// they say so and create nothing; on a migrated, empty one they answer without creating a
/// signing key; and they need no master key, on either backend.
async fn read_only_commands_create_nothing(b: Backend) {
    let Some(db) = Db::create(b).await else {
        return;
    };
    let url = db.url().to_string();
    let file = match &db {
        Db::Sqlite { dir, .. } => Some(dir.join("tessera.db")),
        _ => None,
    };
    let (fresh, created, migrated, users, keys) = tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| {
            Command::new(env!("CARGO_BIN_EXE_tessera"))
                .args(args)
                .env("DATABASE_URL", &url)
                .env_remove("TESSERA__KEYS__MASTER_KEY")
                .env("TESSERA__LOG__LEVEL", "warn")
                .output()
                .unwrap()
        };
        let fresh = run(&["user", "list"]);
        let created = file.is_some_and(|f| f.exists());
        let migrated = run(&["migrate"]);
        let (users, keys) = (run(&["user", "list"]), run(&["keys", "list"]));
        (fresh, created, migrated, users, keys)
    })
    .await
    .unwrap();
    let text = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
    };
    assert!(!fresh.status.success(), "{}", text(&fresh));
    assert!(text(&fresh).contains("tessera migrate"), "{}", text(&fresh));
    assert!(
        !created,
        "a read-only command created a SQLite database file"
    );
    assert!(migrated.status.success(), "{}", text(&migrated));
    assert!(users.status.success(), "{}", text(&users));
    assert!(text(&users).contains("USERNAME"), "{}", text(&users));
    assert!(keys.status.success(), "{}", text(&keys));
    assert!(text(&keys).starts_with("KID"), "{}", text(&keys));
    assert_eq!(
        key_rows(db.url()).await,
        0,
        "a read-only command created a key"
    );
    if let Db::Sqlite { dir, .. } = &db {
        assert!(
            !dir.join("master.key").exists(),
            "a read-only command generated a master key"
        );
    }
}

/// The number of signing keys stored in the database at `url`.
async fn key_rows(url: &str) -> i64 {
    use sqlx::Connection;
    const COUNT: &str = "SELECT COUNT(*) FROM signing_keys";
    if url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_scalar(COUNT).fetch_one(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar(COUNT).fetch_one(&mut c).await.unwrap()
    }
}

/// Runs `tessera serve` at trace level with JSON logs, exercises every token path, and checks
/// that no password, token or key reached the log.
async fn serve_logs_no_secrets(b: Backend) {
    let Some(db) = Db::create(b).await else {
        return;
    };
    let master = crate::helpers::master_key();
    let (ok, out) = {
        let (u, m) = (db.url().to_string(), master.clone());
        tokio::task::spawn_blocking(move || {
            tessera(
                &u,
                &m,
                &["user", "add", "zoe", "--password-stdin"],
                Some("zoe's long password\n"),
            )
        })
        .await
        .unwrap()
    };
    assert!(ok, "{out}");
    let server = Served::start(db.url(), &master).await;
    let base = server.base.clone();
    let c = reqwest::Client::new();
    let login = |pw: &'static str| {
        c.post(format!("{base}/login"))
            .json(&json!({"username": "zoe", "password": pw}))
            .send()
    };
    assert_eq!(login("wrong password here").await.unwrap().status(), 401);
    // A password (or a code) sent as a JSON number: 400, and serde's message, which quotes
    // the value, stays out of the log.
    let r = c
        .post(format!("{base}/login"))
        .json(&json!({"username": "zoe", "password": 73915046218u64}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let t: Value = login("zoe's long password")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = t["access_token"].as_str().unwrap().to_string();
    let refresh = t["refresh_token"].as_str().unwrap().to_string();
    let r = c
        .get(format!("{base}/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t2: Value = c
        .post(format!("{base}/refresh"))
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh2 = t2["refresh_token"].as_str().unwrap().to_string();
    let r = c
        .post(format!("{base}/logout"))
        .bearer_auth(&access)
        .json(&json!({"refresh_token": refresh2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = c
        .get(format!("{base}/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let logs = server.stop().await;
    assert!(
        logs.contains("login ok"),
        "expected trace logs, got: {}",
        &logs[..logs.len().min(2000)]
    );
    // Audit events are structured JSON lines with `event=…`, the reason and the address.
    let audit: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "audit")
        .collect();
    let failed = audit
        .iter()
        .find(|v| v["event"] == "login.failed")
        .unwrap_or_else(|| panic!("no login.failed audit line in {audit:?}"));
    assert_eq!(failed["reason"], "bad_password");
    assert_eq!(failed["ip"], "127.0.0.1");
    assert!(failed["request_id"].is_string(), "{failed}");
    for event in ["login.succeeded", "token.refreshed", "session.logout"] {
        assert!(
            audit.iter().any(|v| v["event"] == event),
            "no {event} audit line"
        );
    }
    let sig = |tok: &str| tok.rsplit('.').next().unwrap().to_string();
    for (what, secret) in [
        ("password", "zoe's long password".to_string()),
        ("wrong password", "wrong password here".to_string()),
        ("password sent as a number", "73915046218".to_string()),
        ("access token signature", sig(&access)),
        ("refresh token", refresh.clone()),
        ("rotated refresh token", refresh2.clone()),
        ("master key", master.clone()),
    ] {
        assert!(!logs.contains(&secret), "{what} leaked into the logs");
    }
    assert!(
        !logs.contains("$argon2id$"),
        "a password hash leaked into the logs"
    );
}

/// The container probe, and `--config` files layered over the defaults.
async fn healthcheck_and_config_files(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let base = app.base.clone();
    let (up, down, typo, layered) = tokio::task::spawn_blocking({
        let (url, master) = (app.db.url().to_string(), app.master_key.clone());
        move || {
            let probe = |u: &str| {
                Command::new(env!("CARGO_BIN_EXE_tessera"))
                    .args(["healthcheck", "--url", u])
                    .output()
                    .unwrap()
                    .status
                    .success()
            };
            let dir =
                std::env::temp_dir().join(format!("tessera-cfg-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).unwrap();
            let bad = dir.join("bad.toml");
            std::fs::write(&bad, "[tokens]\naccess_tll = \"5m\"\n").unwrap();
            let good = dir.join("good.toml");
            std::fs::write(
                &good,
                "[tokens]\naccess_ttl = \"1s\"\n[keys]\nalgorithm = \"nope\"\n",
            )
            .unwrap();
            let run = |cfg: &std::path::Path| {
                Command::new(env!("CARGO_BIN_EXE_tessera"))
                    .args(["--config", cfg.to_str().unwrap(), "migrate"])
                    .env("DATABASE_URL", &url)
                    .env("TESSERA__KEYS__MASTER_KEY", &master)
                    .output()
                    .unwrap()
            };
            let out = (
                probe(&base),
                probe("http://127.0.0.1:9"),
                run(&bad),
                run(&good),
            );
            let _ = std::fs::remove_dir_all(&dir);
            out
        }
    })
    .await
    .unwrap();
    assert!(up, "healthcheck must pass against a ready server");
    assert!(!down, "healthcheck must fail when nothing listens");
    // A typo in a config file is an error naming the key; a bad value from the file, too.
    assert!(!typo.status.success());
    assert!(String::from_utf8_lossy(&typo.stderr).contains("access_tll"));
    assert!(
        !layered.status.success(),
        "the file's keys.algorithm must have been read"
    );
    assert!(String::from_utf8_lossy(&layered.stderr).contains("keys.algorithm"));
}

/// `tessera serve` as a child process at trace level with JSON logs, everything it prints
/// collected.
pub(crate) struct Served {
    pub(crate) child: std::process::Child,
    pub(crate) base: String,
    log: Arc<Mutex<String>>,
}

impl Served {
    async fn start(db_url: &str, master: &str) -> Self {
        Self::start_with(db_url, master, &[("RUST_LOG", "trace")]).await
    }

    /// `start`, with more environment variables.
    pub(crate) async fn start_with(db_url: &str, master: &str, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .arg("serve")
            .env("DATABASE_URL", db_url)
            .env("TESSERA__KEYS__MASTER_KEY", master)
            .env("TESSERA__HTTP__BIND", "127.0.0.1:0")
            .env("TESSERA__LOG__FORMAT", "json")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        // The bound address is in the "tessera listening" line.
        let mut base = None;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let l = log.lock().unwrap().clone();
            if let Some(i) = l.find("tessera listening") {
                let rest = &l[i..];
                if let Some(j) = rest.find("127.0.0.1:") {
                    let port: String = rest[j + 10..]
                        .chars()
                        .take_while(|c| c.is_ascii_digit())
                        .collect();
                    base = Some(format!("http://127.0.0.1:{port}"));
                    break;
                }
            }
        }
        let base = base.expect("server did not start");
        Self { child, base, log }
    }

    /// Stops the server with SIGTERM, asserts that it exits cleanly (graceful shutdown), and
    /// returns everything it logged.
    async fn stop(self) -> String {
        let Self { mut child, log, .. } = self;
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        assert!(
            status.success(),
            "SIGTERM must end the server cleanly: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let logs = log.lock().unwrap().clone();
        logs
    }
}

/// Text logs written to a pipe (not a terminal) carry no ANSI escape codes.
async fn text_logs_to_a_pipe_carry_no_colour(b: Backend) {
    let Some(db) = Db::create(b).await else {
        return;
    };
    let url = db.url().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .arg("migrate")
            .env("DATABASE_URL", &url)
            .env("TESSERA__LOG__FORMAT", "text")
            .env("RUST_LOG", "debug")
            .env_remove("NO_COLOR")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    // A command's logs are on stderr (its stdout is its result).
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("DEBUG"), "expected debug logs: {text}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("DEBUG"));
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in piped logs: {text}"
    );
}

/// Start-up logs the issuer tokens carry (verifiers must expect exactly it), and warns when
/// `keys.publish_ahead` is shorter than the 30 s common verifiers wait between JWKS refetches.
async fn start_up_names_the_issuer_and_warns_of_a_short_publish_ahead(b: Backend) {
    let Some(db) = Db::create(b).await else {
        return;
    };
    let master = crate::helpers::master_key();
    let server = Served::start_with(
        db.url(),
        &master,
        &[
            ("TESSERA__KEYS__PUBLISH_AHEAD", "10s"),
            ("TESSERA__KEYS__JWKS_MAX_AGE", "10s"),
            ("TESSERA__TOKENS__ISSUER", "https://auth.example.test"),
        ],
    )
    .await;
    let logs = server.stop().await;
    assert!(
        logs.contains("https://auth.example.test") && logs.contains("issued by"),
        "{logs}"
    );
    assert!(logs.contains("publish_ahead is under 30s"), "{logs}");
    // A public issuer (a proxy's) is no sign of a missed setting: no warning.
    assert!(!logs.contains("another port"), "{logs}");
    // `http.bind` changed alone: the default issuer names port 8080, which is not where the
    // server listens (any port here): it says so.
    let server = Served::start_with(db.url(), &master, &[]).await;
    let logs = server.stop().await;
    assert!(
        logs.contains("tokens.issuer names another port than this server listens on"),
        "{logs}"
    );
}
