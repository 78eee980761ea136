//! What an operator reads: `/metrics` (state gauges, refresh outcomes, the scrape token).

use figment::providers::Serialized;
use serde_json::Value;

use crate::helpers::{Backend, TestApp, CLIENT_ID, CLIENT_SECRET};
use crate::on_both;

on_both!(
    metrics_answer_an_operators_questions,
    the_purge_deletes_in_batches_what_is_dead,
    a_large_revocation_state_loads_whole,
    a_denylisting_outlives_exp_by_the_leeway
);

/// The value of the sample `line` (name and labels exactly), if present.
pub(crate) fn sample(text: &str, line: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
}

async fn metrics_answer_an_operators_questions(b: Backend) {
    const TOKEN: &str = "scrape-token-0123456789";
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("metrics.bearer_token", TOKEN))
    })
    .await
    else {
        return;
    };
    // The scrape token is required, and compared exactly.
    assert_eq!(app.get("/metrics").await.status(), 401);
    let r = app.post_bearer("/metrics", TOKEN).await;
    assert_eq!(r.status(), 405);
    for wrong in ["scrape-token-012345678", "scrape-token-01234567890", ""] {
        let r = app
            .client
            .get(app.url("/metrics"))
            .bearer_auth(wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{wrong}");
    }
    // Refresh outcomes by reason.
    app.create_user("alice", &[]).await;
    let t = app.login_ok("alice").await;
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    let next: Value = app.refresh(&rt).await.json().await.unwrap();
    app.post_bearer("/logout/all", next["access_token"].as_str().unwrap())
        .await;
    assert_eq!(
        app.refresh(next["refresh_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    let scrape = || async {
        let r = app
            .client
            .get(app.url("/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    let text = scrape().await;
    let has = |line: &str| sample(&text, line).unwrap_or_else(|| panic!("no {line} in\n{text}"));
    assert!(has(r#"refresh_total{result="rotated"}"#) >= 1.0);
    // Every family of Tessera's has its `# HELP` (promtool's lint refused all of them); the
    // verifier crate, which this test process also runs, describes its own.
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .filter(|f| !f.starts_with("tessera_verify_"))
        .collect();
    assert!(families.len() > 10, "{text}");
    for family in families {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# HELP {family} "))),
            "no HELP for {family}"
        );
    }
    assert!(has(r#"refresh_total{result="revoked"}"#) >= 1.0);
    // The counters the shipped alerts watch exist before their first event (at 0 here, unless
    // another test of this process counted one), so that `increase()` sees that event.
    assert!(has("refresh_reuse_detected_total") >= 0.0);
    assert!(has("audit_events_dropped_total") >= 0.0);
    for cause in [
        "request timed out",
        "database unavailable",
        "login queue",
        "password hashing saturated",
        "no active signing key",
    ] {
        assert!(has(&format!(r#"requests_shed_total{{cause="{cause}"}}"#)) >= 0.0);
    }
    assert_eq!(
        has(&format!(
            r#"tessera_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    // State: hashing, pool, revocation state, keys.
    assert!(has("password_slots") >= 1.0);
    assert!(has("password_queue_depth") >= 0.0);
    assert!(text.contains("password_hash_seconds_bucket"), "{text}");
    assert!(has(r#"db_pool_connections{state="open"}"#) >= 1.0);
    assert!(has("db_pool_max_connections") >= 1.0);
    assert!(has("db_pool_acquire_wait_seconds") < 0.5);
    assert!(has(r#"revocation_state_entries{kind="session"}"#) >= 0.0);
    assert!(has("revocation_state_trusted") <= 1.0);
    assert!(has(r#"signing_keys{state="active"}"#) >= 1.0);
    assert!(has("signing_key_active_age_seconds") >= 0.0);
    // The scheme is case-insensitive (RFC 7235 §2.1).
    let r = app
        .client
        .get(app.url("/metrics"))
        .header("authorization", format!("bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Trusted once synced.
    crate::helpers::eventually(10, "revocation state trusted", || async {
        sample(&scrape().await, "revocation_state_trusted") == Some(1.0)
    })
    .await;
}

/// The upkeep purge, over more rows than one batch: expired denylist rows and sessions past
/// their absolute end or long revoked go every time; idle-expired sessions only in the hourly
/// sweep; live rows stay. Counted by reading the tables back.
async fn the_purge_deletes_in_batches_what_is_dead(b: Backend) {
    let Some((mut app, user)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    let now = tessera::time::now_ms();
    let day = 86_400_000i64;
    let (uid, new_id) = match b {
        Backend::Postgres => (format!("'{}'", user.id), "md5(k || i)::uuid"),
        Backend::Sqlite => (format!("X'{}'", user.id.simple()), "randomblob(16)"),
    };
    let batch = tessera::store::PURGE_BATCH;
    // The server's own upkeep (its first round runs at start) would purge these rows too, and
    // under load it raced this test's counts: only the store is needed here.
    app.stop().await;
    // (kind, rows, idle_expires_at, absolute_expires_at, revoked_at)
    let kinds = [
        ("live", 10, now + day, now + 30 * day, "NULL".to_string()),
        (
            "absolute",
            batch + 7,
            now - 40 * day,
            now - 2 * day,
            "NULL".to_string(),
        ),
        (
            "revoked",
            5,
            now + day,
            now + 30 * day,
            (now - 2 * day).to_string(),
        ),
        ("idle", 9, now - 2 * day, now + 30 * day, "NULL".to_string()),
    ];
    for (k, n, idle, abs, revoked) in &kinds {
        app.exec_sql(format!(
            "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n})
             INSERT INTO sessions (id, user_id, generation, created_at, last_refreshed_at,
                                   idle_expires_at, absolute_expires_at, revoked_at, client_id)
             SELECT {id}, {uid}, 0, {c}, {c}, {idle}, {abs}, {revoked}, 'tessera'
             FROM (SELECT i, '{k}' AS k FROM seq) s",
            id = new_id,
            c = now - 40 * day,
        ))
        .await;
    }
    app.exec_sql(format!(
        "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n})
         INSERT INTO revoked_tokens (jti, user_id, session_id, expires_at, revoked_at, reason)
         SELECT 'old-' || i, {uid}, NULL, {exp}, {exp}, 'test' FROM seq",
        n = batch + 3,
        exp = now - 1000,
    ))
    .await;
    app.exec_sql(format!(
        "INSERT INTO revoked_tokens (jti, user_id, session_id, expires_at, revoked_at, reason)
         VALUES ('live-1', {uid}, NULL, {}, {now}, 'test')",
        now + 600_000
    ))
    .await;
    let count = |sql: &'static str| app.scalar_i64(sql, "");
    let sessions = "SELECT COUNT(*) FROM sessions WHERE $1 = $1";
    let tokens = "SELECT COUNT(*) FROM revoked_tokens WHERE $1 = $1";
    assert_eq!(count(sessions).await, 10 + batch + 7 + 5 + 9);

    let p = app.store.purge_expired(now, false).await.unwrap();
    assert_eq!(p.revoked_tokens, batch as u64 + 3);
    assert_eq!(p.sessions, batch as u64 + 7 + 5);
    assert_eq!(count(tokens).await, 1, "the live denylist row stays");
    assert_eq!(
        count(sessions).await,
        10 + 9,
        "idle-expired rows wait for the sweep"
    );
    let p = app.store.purge_expired(now, true).await.unwrap();
    assert_eq!((p.sessions, p.revoked_tokens), (9, 0));
    assert_eq!(count(sessions).await, 10, "live sessions stay");
}

/// A replica starting on more revocations than one chunk of its first load (100,000 rows,
/// each chunk within `max_lag`) reads them all: 100,050 text `jti`s written by hand, then a
/// real token's UUID `jti` (held in the dense set), refused once the state is trusted.
async fn a_large_revocation_state_loads_whole(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let (token, jti, uid) = alice_with_token(&app, b).await;
    let now = tessera::time::now_ms();
    // 100,050 entries (more than a chunk of 100,000), then the real token's.
    app.exec_sql(format!(
        "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < 100050)
         INSERT INTO revoked_tokens (jti, user_id, session_id, expires_at, revoked_at, reason)
         SELECT 'bulk-' || i, {uid}, NULL, {exp}, {at} + i / 1000, 'test' FROM seq;
         INSERT INTO revoked_tokens (jti, user_id, session_id, expires_at, revoked_at, reason)
         VALUES ('{jti}', {uid}, NULL, {exp}, {last}, 'test')",
        exp = now + 600_000,
        at = now - 200_000,
        last = now - 1000,
    ))
    .await;
    let replica = trusted_replica(&app).await;
    assert_eq!(replica.userinfo(&token).await.status(), 401);
}

/// A token is accepted until `exp + leeway` (10 s by default), so its denylisting must last as
/// long: a row whose `exp` passed 3 s ago stays in the table through a replica's start-up
/// purge, is listed by the feed, and is loaded into the replica's state (a token carrying that
/// `jti` is refused); one 60 s past its `exp` is purged.
async fn a_denylisting_outlives_exp_by_the_leeway(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let (token, jti, uid) = alice_with_token(&app, b).await;
    let now = tessera::time::now_ms();
    app.exec_sql(format!(
        "INSERT INTO revoked_tokens (jti, user_id, session_id, expires_at, revoked_at, reason)
         VALUES ('{jti}', {uid}, NULL, {recent}, {recent}, 'test'),
                ('long-gone', {uid}, NULL, {old}, {old}, 'test')",
        recent = now - 3_000,
        old = now - 60_000,
    ))
    .await;
    // A new replica purges at start-up and loads its revocation state.
    let replica = trusted_replica(&app).await;
    crate::helpers::eventually(10, "the long-expired row purged", || async {
        app.scalar_i64(
            "SELECT COUNT(*) FROM revoked_tokens WHERE jti = $1",
            "long-gone",
        )
        .await
            == 0
    })
    .await;
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM revoked_tokens WHERE jti = $1", &jti)
            .await,
        1,
        "inside exp + leeway: kept"
    );
    // The real token is still inside its own exp, so /userinfo reaches the revocation check.
    assert_eq!(replica.userinfo(&token).await.status(), 401);
    let feed: Value = app
        .form("/revocations", &[], Some((CLIENT_ID, CLIENT_SECRET)))
        .await
        .json()
        .await
        .unwrap();
    let listed: Vec<&str> = feed["revoked_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["jti"].as_str())
        .collect();
    assert_eq!(listed, [jti.as_str()], "{feed}");
}

/// Alice, one access token of hers, its `jti`, and her id as an SQL literal on this backend.
async fn alice_with_token(app: &TestApp, b: Backend) -> (String, String, String) {
    let user = app.create_user("alice", &[]).await;
    let token = app.login_ok("alice").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let jti = TestApp::claims(&token)["jti"].as_str().unwrap().to_string();
    let uid = match b {
        Backend::Postgres => format!("'{}'", user.id),
        Backend::Sqlite => format!("X'{}'", user.id.simple()),
    };
    (token, jti, uid)
}

/// A new replica on the same database, once its revocation state is trusted.
async fn trusted_replica(app: &TestApp) -> TestApp {
    let replica = app.replica(|f| f).await;
    crate::helpers::eventually(30, "the replica's revocation state is trusted", || async {
        replica.auth.readiness().await.revocation_state_trusted
    })
    .await;
    replica
}
