//! Invariants 4 and 6: load shedding under a login flood, and failing closed (503) through a
//! database outage, then recovering without a restart.

use figment::providers::Serialized;
use serde_json::Value;

use crate::helpers::{Backend, Proxy, TestApp, PASSWORD};
use crate::on_both;

on_both!(
    excess_logins_are_shed_fast,
    database_outage_fails_closed_and_recovers,
    a_database_refusing_connections_fails_closed,
    a_read_only_database_fails_closed,
    a_login_past_the_request_timeout_still_ends_whole,
    a_request_whose_body_never_comes_is_answered_and_closed,
    a_rotation_that_commits_after_a_stall_is_a_retry,
);

async fn excess_logins_are_shed_fast(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("password.max_concurrency", 1))
            .merge(Serialized::default("password.max_queue", 0))
    })
    .await
    else {
        return;
    };
    app.create_user("alice", &[]).await;
    let calls = (0..12).map(|_| app.login("alice", PASSWORD));
    let jwks = app.client.get(app.url("/.well-known/jwks.json")).send();
    let (responses, jwks) = tokio::join!(futures::future::join_all(calls), jwks);
    assert_eq!(
        jwks.unwrap().status(),
        200,
        "the JWKS must stay available during a login flood"
    );
    let (mut ok, mut shed) = (0, 0);
    for r in responses {
        match r.status().as_u16() {
            200 => ok += 1,
            503 => {
                assert_eq!(r.headers()["retry-after"], "1");
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["error"], "temporarily_unavailable");
                shed += 1;
            }
            s => panic!("unexpected status {s} under load"),
        }
    }
    assert!(ok >= 1, "at least one login must get through");
    assert!(shed >= 1, "excess logins must be shed, not queued forever");
    // Shedding is not a failed login: the account still works.
    app.login_ok("alice").await;
}

/// A request that writes is not cut off between its writes when its answer is no longer
/// wanted: a login past `http.request_timeout` gets its 503, and still ends whole, with its
/// session and its `login.succeeded` event (it was dropped mid-way: whatever had committed
/// stayed without the rest, and without an audit event).
async fn a_login_past_the_request_timeout_still_ends_whole(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("http.request_timeout", "1ms"))
    })
    .await
    else {
        return;
    };
    app.create_user("alice", &[]).await;
    let r = app.login("alice", PASSWORD).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "temporarily_unavailable");
    crate::helpers::eventually(10, "the login's session and its event", || async {
        app.scalar_i64("SELECT COUNT(*) FROM sessions WHERE $1 = $1", "")
            .await
            == 1
            && app
                .scalar_i64(
                    "SELECT COUNT(*) FROM audit_events WHERE event = $1",
                    "login.succeeded",
                )
                .await
                == 1
    })
    .await;
}

/// A write whose body never comes has written nothing: past the timeout it is answered 503
/// with `Connection: close`, and the connection closes (it stayed open, its task holding the
/// body, for as long as the client kept it: one client could hold every file descriptor).
async fn a_request_whose_body_never_comes_is_answered_and_closed(b: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("http.request_timeout", "100ms"))
    })
    .await
    else {
        return;
    };
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let closed =
        tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let answer = String::from_utf8_lossy(&buf).to_lowercase();
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(answer.contains("\r\nconnection: close"), "{answer}");
    assert!(closed.is_ok(), "the connection was left open: {answer}");
}

async fn database_outage_fails_closed_and_recovers(b: Backend) {
    // SQLite is embedded in the process: there is no database server to lose.
    if b == Backend::Sqlite {
        return;
    }
    let Some(probe) = crate::helpers::Db::create(b).await else {
        return;
    };
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let name = probe.url().rsplit('/').next().unwrap().to_string();
    let via_proxy = format!("postgres://postgres@127.0.0.1:{}/{name}", proxy.port);
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("database.url", via_proxy.as_str()))
            .merge(Serialized::default("database.acquire_timeout", "1s"))
    })
    .await
    else {
        return;
    };
    app.create_user("alice", &[]).await;
    let t = app.login_ok("alice").await;
    let access = t["access_token"].as_str().unwrap();
    let refresh = t["refresh_token"].as_str().unwrap();

    proxy.cut();
    let r = app.login("alice", PASSWORD).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "temporarily_unavailable"
    );
    assert_eq!(app.refresh(refresh).await.status(), 503);
    // Fail closed: without the revocation check, a token is not accepted.
    assert_eq!(app.userinfo(access).await.status(), 503);
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    proxy.restore();
    // Recovery without a restart; how soon depends on the machine's load, so no fixed sleep.
    crate::helpers::eventually(10, "/readyz answers 200 again", || async {
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
    // Nothing was lost or half-done: the refresh token that failed during the outage still works.
    assert_eq!(app.userinfo(access).await.status(), 200);
    let r = app.refresh(refresh).await;
    assert_eq!(r.status(), 200);
    app.login_ok("alice").await;
    drop(probe);
}

/// An operator blocks connections to the database (`ALLOW_CONNECTIONS false`, as during a
/// maintenance window or a restore): Postgres refuses each new connection with SQLSTATE
/// 55000. Every request that needs the database fails closed with 503 and `Retry-After`, not
/// 500, and the server recovers once connections are allowed again (invariant 6).
async fn a_database_refusing_connections_fails_closed(b: Backend) {
    use sqlx::Executor;
    if b == Backend::Sqlite {
        return;
    }
    let Some((app, name, t, mut admin)) = postgres_with_alice(b).await else {
        return;
    };
    let refresh = t["refresh_token"].as_str().unwrap();
    let block = |allow: bool| {
        sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}"))
    };
    admin.execute(block(false)).await.unwrap();
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )))
        .await
        .unwrap();
    let fails_closed = |r: reqwest::Response, what: &'static str| async move {
        assert_eq!(r.status(), 503, "{what}");
        assert_eq!(r.headers()["retry-after"], "1", "{what}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "temporarily_unavailable", "{what}");
    };
    // The first attempt may meet a connection the termination broke; every one answers 503.
    for _ in 0..3 {
        fails_closed(app.refresh(refresh).await, "refresh").await;
        fails_closed(app.login("alice", PASSWORD).await, "login").await;
    }
    crate::helpers::eventually(5, "/userinfo fails closed", || async {
        app.userinfo(t["access_token"].as_str().unwrap())
            .await
            .status()
            == 503
    })
    .await;
    admin.execute(block(true)).await.unwrap();
    crate::helpers::eventually(10, "refresh works again", || async {
        app.refresh(refresh).await.status() == 200
    })
    .await;
}

/// A database Tessera cannot write. Postgres read-only (a standby, a demoted primary,
/// `default_transaction_read_only`): every login was 500 `server_error` and `/readyz` 200; now
/// 503 and not ready, until it may write again. SQLite: a file, journal or directory Tessera
/// cannot write was opened read-only without a word, looked ready, and refused every login
/// until a restart; now the start is refused and names it.
async fn a_read_only_database_fails_closed(b: Backend) {
    use sqlx::Executor;
    if b == Backend::Sqlite {
        // A database file Tessera may not write: chmod 444, and the command run as `nobody`
        // where the tests run as root (whom no mode stops).
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("tessera-ro-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let url = format!("sqlite://{}/tessera.db", dir.display());
        let master = crate::helpers::master_key();
        let migrate = |url: String, master: String| {
            tokio::task::spawn_blocking(move || {
                let root = std::process::Command::new("id")
                    .arg("-u")
                    .output()
                    .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
                let mut cmd = if root {
                    let mut c = std::process::Command::new("setpriv");
                    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                        .arg(env!("CARGO_BIN_EXE_tessera"));
                    c
                } else {
                    std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
                };
                let out = cmd
                    .arg("migrate")
                    .env("DATABASE_URL", &url)
                    .env("TESSERA__KEYS__MASTER_KEY", &master)
                    .env("TESSERA__LOG__LEVEL", "warn")
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout).to_string()
                    + &String::from_utf8_lossy(&out.stderr);
                (out.status.success(), text)
            })
        };
        let (ok, out) = migrate(url.clone(), master.clone()).await.unwrap();
        assert!(ok, "{out}");
        let db = dir.join("tessera.db");
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
        let (ok, out) = migrate(url.clone(), master.clone()).await.unwrap();
        assert!(!ok, "{out}");
        assert!(
            out.contains("the SQLite database cannot be written") && out.contains("tessera.db:"),
            "{out}"
        );
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
        let (ok, out) = migrate(url, master).await.unwrap();
        assert!(ok, "{out}");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let Some((app, name, t, mut admin)) = postgres_with_alice(b).await else {
        return;
    };
    let ready = || async {
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
    };
    let refresh = t["refresh_token"].as_str().unwrap();
    let set = |on: bool| {
        sqlx::AssertSqlSafe(if on {
            format!("ALTER DATABASE {name} SET default_transaction_read_only = on")
        } else {
            format!("ALTER DATABASE {name} RESET default_transaction_read_only")
        })
    };
    let reconnect = || {
        sqlx::AssertSqlSafe(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
    };
    admin.execute(set(true)).await.unwrap();
    admin.execute(reconnect()).await.unwrap();
    crate::helpers::eventually(10, "/readyz says not ready", || async {
        ready().await == 503
    })
    .await;
    for _ in 0..3 {
        for (what, r) in [
            ("login", app.login("alice", PASSWORD).await),
            ("refresh", app.refresh(refresh).await),
        ] {
            assert_eq!(r.status(), 503, "{what}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"], "temporarily_unavailable", "{what}");
        }
    }
    admin.execute(set(false)).await.unwrap();
    admin.execute(reconnect()).await.unwrap();
    crate::helpers::eventually(10, "ready again", || async { ready().await == 200 }).await;
    crate::helpers::eventually(10, "refresh works again", || async {
        app.refresh(refresh).await.status() == 200
    })
    .await;
}

/// A Postgres test app with `alice` logged in (her token pair), its database's name, and a
/// connection of the administrator's to inject faults with; `None` on SQLite.
async fn postgres_with_alice(b: Backend) -> Option<(TestApp, String, Value, sqlx::PgConnection)> {
    use sqlx::Connection;
    let app = TestApp::spawn(b).await?;
    let crate::helpers::Db::Postgres { name, .. } = &app.db else {
        return None;
    };
    let name = name.clone();
    app.create_user("alice", &[]).await;
    let t = app.login_ok("alice").await;
    let admin = sqlx::PgConnection::connect(&crate::helpers::pg_admin_url())
        .await
        .unwrap();
    Some((app, name, t, admin))
}

/// A stalled database (the sessions table locked for 14 s, past the 10 s reuse grace): each
/// refresh is answered 503 within the grace, the client retries the same token as
/// `Retry-After` says, and once the lock ends it gets its tokens, the session whole. The
/// rotation that waited longest commits when the lock ends; it was stamped with its request's
/// start, so the retry fell outside the grace and revoked the session as reuse. (On SQLite a
/// rotation never commits after its answer.)
async fn a_rotation_that_commits_after_a_stall_is_a_retry(b: Backend) {
    use sqlx::{Connection, Executor};
    if b == Backend::Sqlite {
        return;
    }
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.create_user("alice", &[]).await;
    let t = app.login_ok("alice").await;
    // A first rotation prepares the statement on the refresh connection, as on any server
    // that has served one: a stalled rotation has then sent all of its statement, and commits
    // when the lock ends.
    let r = app.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let refresh = t["refresh_token"].as_str().unwrap().to_string();
    let sid: uuid::Uuid = TestApp::claims(t["access_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut lock = sqlx::PgConnection::connect(app.db.url()).await.unwrap();
    lock.execute("BEGIN").await.unwrap();
    lock.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(14)).await;
        lock.execute("COMMIT").await.unwrap();
        lock
    });
    let mut answers = Vec::new();
    let last = loop {
        let r = app.refresh(&refresh).await;
        answers.push(r.status().as_u16());
        if r.status() != 503 || answers.len() > 30 {
            break r;
        }
        let wait: u64 = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(1);
        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    };
    assert_eq!(last.status(), 200, "{answers:?}");
    let mut lock = release.await.unwrap();
    let revoked: Option<i64> = sqlx::query_scalar("SELECT revoked_at FROM sessions WHERE id = $1")
        .bind(sid)
        .fetch_one(&mut lock)
        .await
        .unwrap();
    assert_eq!(revoked, None, "{answers:?}");
}
