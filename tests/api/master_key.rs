//! Master-key rotation: with the old key in `keys.previous_master_keys`, every signing key and
//! every refresh token keeps working; `tessera keys rekey` re-seals the signing keys under the
//! new key, after which the old key can go.

use std::process::Command;

use figment::providers::Serialized;
use serde_json::Value;

use crate::helpers::{master_key, Backend, TestApp};
use crate::on_both;

on_both!(
    the_master_key_rotates_without_losing_a_session,
    a_wrong_master_key_answers_503_and_keeps_the_session,
    a_wrong_master_key_spends_no_second_factor
);

/// `tessera keys rekey` with `master` and `previous`.
async fn rekey(app: &TestApp, master: &str, previous: &str) -> (bool, String) {
    let (url, master, previous) = (
        app.db.url().to_string(),
        master.to_string(),
        previous.to_string(),
    );
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["keys", "rekey"])
            .env("DATABASE_URL", url)
            .env("TESSERA__KEYS__MASTER_KEY", master)
            .env("TESSERA__KEYS__PREVIOUS_MASTER_KEYS", previous)
            .env("TESSERA__LOG__LEVEL", "warn")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    })
    .await
    .unwrap()
}

async fn sealed_keys(app: &TestApp) -> Vec<Vec<u8>> {
    app.store
        .keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.private_key_enc)
        .collect()
}

/// A replica started with a wrong master key opens no signing key and cannot tell its own
/// refresh tokens: it answers 503 (retry), not 401 (which logs the user out), and the session
/// is untouched where the key is right.
async fn a_wrong_master_key_answers_503_and_keeps_the_session(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    app.create_user("alice", &[]).await;
    let t = app.login_ok("alice").await;
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    let wrong = app
        .replica(|f| f.merge(Serialized::default("keys.master_key", master_key())))
        .await;
    let r = wrong.refresh(&rt).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "temporarily_unavailable", "{v}");
    assert_eq!(app.refresh(&rt).await.status(), 200);
}

/// The same replica and a login's second step: 503 before anything is spent. A recovery
/// code was used up and answered 503 (the tokens could not be signed), and the right
/// replica then refused it.
async fn a_wrong_master_key_spends_no_second_factor(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let alice = app.create_user("alice", &[]).await;
    let (_, codes, _) = crate::mfa::with_totp(&app, "alice").await;
    let wrong = app
        .replica(|f| f.merge(Serialized::default("keys.master_key", master_key())))
        .await;
    let token = crate::mfa::mfa_token(&wrong, "alice").await;
    let r = crate::mfa::second_step(&wrong, &token, "recovery_code", &codes[0]).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "temporarily_unavailable", "{v}");
    assert_eq!(app.auth.recovery_codes_left(alice.id).await.unwrap(), 10);
    let token = crate::mfa::mfa_token(&app, "alice").await;
    let r = crate::mfa::second_step(&app, &token, "recovery_code", &codes[0]).await;
    assert_eq!(r.status(), 200);
}

async fn the_master_key_rotates_without_losing_a_session(b: Backend) {
    let Some(old) = TestApp::spawn(b).await else {
        return;
    };
    old.create_user("alice", &[]).await;
    let (a, b_) = (old.login_ok("alice").await, old.login_ok("alice").await);
    let rt = |t: &Value| t["refresh_token"].as_str().unwrap().to_string();
    let at = |t: &Value| t["access_token"].as_str().unwrap().to_string();
    let old_key = old.master_key.clone();
    let new_key = master_key();

    // A replica with the new key and the old one as previous: old tokens refresh, the signing
    // key opens, logins work, and what it mints verifies everywhere.
    let overlap = old
        .replica(|f| {
            f.merge(Serialized::default("keys.master_key", &new_key))
                .merge(Serialized::default(
                    "keys.previous_master_keys",
                    vec![old_key.clone()],
                ))
        })
        .await;
    assert_eq!(overlap.userinfo(&at(&a)).await.status(), 200);
    let r = overlap.refresh(&rt(&a)).await;
    assert_eq!(r.status(), 200);
    let a2: Value = r.json().await.unwrap();
    let fresh = overlap.login_ok("alice").await;
    assert_eq!(old.userinfo(&at(&fresh)).await.status(), 200);
    assert_eq!(overlap.refresh(&rt(&fresh)).await.status(), 200);

    // A wrong key list is refused before anything changes; then rekey re-seals every key.
    let before = sealed_keys(&old).await;
    let (ok, out) = rekey(&old, &master_key(), "").await;
    assert!(!ok, "{out}");
    assert!(out.contains("nothing was re-sealed"), "{out}");
    assert_eq!(sealed_keys(&old).await, before);
    let (ok, out) = rekey(&old, &new_key, &old_key).await;
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("{} re-sealed", before.len())),
        "{out}"
    );
    let after = sealed_keys(&old).await;
    assert_eq!(after.len(), before.len());
    assert!(after.iter().zip(&before).all(|(x, y)| x != y));
    // Again: nothing left to do.
    let (ok, out) = rekey(&old, &new_key, &old_key).await;
    assert!(ok, "{out}");
    assert!(out.contains("0 re-sealed"), "{out}");

    // During the overlap the session that was never refreshed still works.
    assert_eq!(overlap.refresh(&rt(&b_)).await.status(), 200);

    // Without the old key: the re-sealed signing key signs, tokens minted under the new key
    // refresh, and earlier access tokens still verify.
    let new_only = old
        .replica(|f| f.merge(Serialized::default("keys.master_key", &new_key)))
        .await;
    let t = new_only.login_ok("alice").await;
    assert_eq!(new_only.userinfo(&at(&t)).await.status(), 200);
    assert_eq!(new_only.userinfo(&at(&a2)).await.status(), 200);
    assert_eq!(new_only.refresh(&rt(&a2)).await.status(), 200);
    assert_eq!(new_only.refresh(&rt(&t)).await.status(), 200);
}
