//! The revocation feed (`GET`/`POST /revocations`): its entries, cursors and pages.

use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp, CLIENT_ID, CLIENT_SECRET};
use crate::on_both;

on_both!(revocation_feed, revocation_feed_pages,);

async fn revocation_feed(b: Backend) {
    let Some((app, user)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    let feed = |since: Option<String>| {
        let app = &app;
        async move {
            let mut req = app
                .client
                .get(app.url("/revocations"))
                .basic_auth(CLIENT_ID, Some(CLIENT_SECRET));
            if let Some(s) = since {
                req = req.query(&[("since", s)]);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    // Closed without client authentication.
    let r = app.get("/revocations").await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let empty = feed(None).await;
    assert_eq!(empty["revoked_tokens"], json!([]));
    assert_eq!(empty["revoked_sessions"], json!([]));
    assert_eq!(empty["not_before"], json!([]));
    let cursor = empty["cursor"].as_str().unwrap().to_string();

    let t = app.login_ok("alice").await;
    let access = t["access_token"].as_str().unwrap();
    let c = TestApp::claims(access);
    let r = app.post_bearer("/logout", access).await;
    assert_eq!(r.status(), 204);
    let v = feed(Some(cursor.clone())).await;
    let tokens = v["revoked_tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["jti"], c["jti"]);
    assert_eq!(tokens[0]["exp"], c["exp"]);
    assert_eq!(
        v["revoked_sessions"].as_array().unwrap()[0]["sid"],
        c["sid"]
    );

    // Logout everywhere publishes the user's cut-off.
    let t2 = app.login_ok("alice").await;
    let r = app
        .post_bearer("/logout/all", t2["access_token"].as_str().unwrap())
        .await;
    assert_eq!(r.status(), 204);
    let v = feed(Some(cursor)).await;
    let nbf = v["not_before"].as_array().unwrap();
    assert_eq!(nbf.len(), 1);
    assert_eq!(nbf[0]["sub"], user.id.to_string());
    assert!(
        nbf[0]["not_before"].as_i64().unwrap()
            <= TestApp::claims(t2["access_token"].as_str().unwrap())["iat"]
                .as_i64()
                .unwrap()
                + 1
    );
    // A cursor from the future sees nothing; a malformed one is a 400.
    let later = (tessera::time::now_ms() + 60_000).to_string();
    let v = feed(Some(later)).await;
    assert_eq!(v["revoked_tokens"], json!([]));
    let r = app
        .client
        .get(app.url("/revocations?since=yesterday"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// The feed in pages: every entry exactly once across the pages of one pass, even when many
/// share a millisecond; no page over the limit; bad limits and cursors are 400s.
async fn revocation_feed_pages(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let users = [
        app.create_user("alice", &[]).await,
        app.create_user("bob", &[]).await,
        app.create_user("carol", &[]).await,
    ];
    let now = tessera::time::now_ms();
    // 23 tokens over three milliseconds (ties), 3 sessions and 2 cut-offs at the same times.
    let mut expected = std::collections::BTreeSet::new();
    for i in 0..23 {
        let jti = format!("jti-{i:02}");
        app.store
            .revoke_token(&tessera::store::RevokedToken {
                jti: jti.clone(),
                user_id: users[0].id,
                session_id: None,
                expires_at: now + 600_000,
                revoked_at: now - 3000 + (i % 3),
                reason: "test".into(),
            })
            .await
            .unwrap();
        expected.insert(format!("t:{jti}"));
    }
    for u in &users {
        let t = app.login_ok(&u.username).await;
        let sid = TestApp::claims(t["access_token"].as_str().unwrap())["sid"]
            .as_str()
            .unwrap()
            .to_string();
        app.store
            .revoke_session(sid.parse().unwrap(), "test", now - 3000)
            .await
            .unwrap();
        expected.insert(format!("s:{sid}"));
    }
    for u in &users[..2] {
        app.store
            .revoke_user(u.id, "test", now - 2999)
            .await
            .unwrap();
        expected.insert(format!("u:{}", u.id));
    }
    // Keys a cursor must carry whatever they hold: the least one (empty), long non-ASCII, and
    // one of 1500 bytes (a cursor on it was once refused: keys were capped at 1024 bytes).
    for jti in [
        String::new(),
        "é".repeat(128),
        "a&b=c #+%".to_string(),
        "日".repeat(500),
    ] {
        app.store
            .revoke_token(&tessera::store::RevokedToken {
                jti: jti.clone(),
                user_id: users[1].id,
                session_id: None,
                expires_at: now + 600_000,
                revoked_at: now - 3000,
                reason: "test".into(),
            })
            .await
            .unwrap();
        expected.insert(format!("t:{jti}"));
    }
    let get = |query: String| {
        let app = &app;
        async move {
            app.client
                .get(app.url(&format!("/revocations?{query}")))
                .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
                .send()
                .await
                .unwrap()
        }
    };
    let mut seen = Vec::new();
    let mut since = String::new();
    let mut pages = 0;
    loop {
        // Cursors hold only URL-safe characters: pasted into the URL as they are.
        assert!(
            since
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "{since}"
        );
        let r = get(format!("since={since}&limit=4")).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let mut n = 0;
        for t in v["revoked_tokens"].as_array().unwrap() {
            seen.push(format!("t:{}", t["jti"].as_str().unwrap()));
            n += 1;
        }
        for t in v["revoked_sessions"].as_array().unwrap() {
            seen.push(format!("s:{}", t["sid"].as_str().unwrap()));
            n += 1;
        }
        for t in v["not_before"].as_array().unwrap() {
            seen.push(format!("u:{}", t["sub"].as_str().unwrap()));
            n += 1;
        }
        assert!(n <= 4, "a page of {n}");
        pages += 1;
        since = v["cursor"].as_str().unwrap().to_string();
        if !v["has_more"].as_bool().unwrap() {
            break;
        }
        assert_eq!(n, 4, "only a full page says has_more");
        assert!(pages < 50, "the pages never end");
    }
    // revoke_user also revoked the sessions already listed: sessions may repeat only as the
    // same entry, so compare sets and check that the pass had no duplicate entry.
    let unique: std::collections::BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "an entry came twice in one pass");
    assert!(
        expected.is_subset(&unique),
        "missing: {:?}",
        expected.difference(&unique)
    );
    assert!(pages >= 7, "{pages} pages for {} entries", seen.len());
    // The last cursor is a time with overlap: polling again repeats recent entries, harmlessly.
    assert!(since.parse::<i64>().is_ok(), "{since}");
    // The default page holds everything here.
    let v: Value = get(String::new()).await.json().await.unwrap();
    assert_eq!(v["has_more"], json!(false));
    assert_eq!(
        v["revoked_tokens"].as_array().unwrap().len(),
        27,
        "{:?}",
        v["revoked_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["jti"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    );
    for bad in [
        "limit=0",
        "limit=10001",
        "limit=x",
        "limit=-1",
        "since=1.9.x",
        "since=1.1.not-a-uuid",
        "since=1.1.",
        "since=1.0",
        "since=-5",
        "since=+5",
        "since=-0",
        "since=%205",
        "since=1.0.%00",
        "since=1.0.AA",
        "since=1.0.@@",
        "since=1.1.MDE5MEMzRDItN0E4RS03QzFFLTlCMkEtMUYyRTNENEM1QjZB",
        "limit=+5",
    ] {
        let r = get(bad.to_string()).await;
        assert_eq!(r.status(), 400, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_request", "{bad}");
    }
}
