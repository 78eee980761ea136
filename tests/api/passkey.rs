//! Passkeys at the API level, against a software authenticator (`SoftPasskey`: P-256, `none`
//! attestation, the CBOR and client data a browser and an authenticator produce): registration,
//! passwordless login, the second step of a password login (JSON and `/token`), a cloned
//! credential (counter going backwards), the wrong RP ID, the wrong origin, no user
//! verification, a credential registered twice, replays, and passkeys turned off. Then a real
//! browser: Chromium with a CDP virtual authenticator adds a passkey on the hosted account page
//! and signs in to an app with it alone (`tests/interop/passkey_browser.mjs`).

use figment::providers::Serialized;
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp, CLIENT_ID, CLIENT_SECRET, PASSWORD};
use crate::on_both;
#[path = "../support/soft_passkey.rs"]
mod soft_passkey;
use soft_passkey::{b64, unb64, SoftPasskey};

on_both!(
    a_passkey_registers_and_logs_in_without_a_password,
    a_passkey_alone_is_refused_to_an_unverified_address,
    a_passkey_completes_a_password_login,
    the_first_step_names_every_kind_of_factor_held,
    a_cloned_passkey_is_refused,
    the_wrong_origin_rp_id_or_no_user_verification_is_refused,
    a_key_without_a_pin_is_a_second_factor_when_verification_is_preferred,
    a_credential_belongs_to_one_account,
    the_cli_lists_and_resets_passkeys,
    passkeys_are_off_without_a_relying_party,
    the_hosted_pages_take_a_passkey,
    a_browser_adds_a_passkey_and_signs_in_with_it
);

/// The relying party the test servers are configured with, and a page origin under it.
const RP_ID: &str = "example.com";
const ORIGIN: &str = soft_passkey::ORIGIN;

/// A server whose relying party is `example.com`, on `login.example.com`.
pub(crate) async fn app_with_passkeys(b: Backend) -> Option<TestApp> {
    TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("webauthn.rp_id", RP_ID))
            .merge(Serialized::default("webauthn.origins", json!([ORIGIN])))
    })
    .await
}

async fn bearer_post(app: &TestApp, path: &str, access: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(access)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Registers `key` for the holder of `access`: the start's and the finish's answers.
pub(crate) async fn register(
    app: &TestApp,
    access: &str,
    key: &mut SoftPasskey,
) -> (Value, reqwest::Response) {
    let r = bearer_post(
        app,
        "/me/factors/passkey",
        access,
        &json!({"name": "laptop"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let start: Value = r.json().await.unwrap();
    let credential = key.register(&start["publicKey"]);
    let r = bearer_post(
        app,
        "/me/factors/passkey/finish",
        access,
        &json!({"ceremony": start["ceremony"], "credential": credential}),
    )
    .await;
    (start, r)
}

/// A passwordless login with `key`: the options' and the login's answers.
async fn passwordless(app: &TestApp, key: &mut SoftPasskey) -> (Value, reqwest::Response) {
    let r = app.post_json("/login/passkey/options", &json!({})).await;
    assert_eq!(r.status(), 200);
    let options: Value = r.json().await.unwrap();
    let credential = key.assert(&options["publicKey"]);
    let r = app
        .post_json(
            "/login/passkey",
            &json!({"ceremony": options["ceremony"], "credential": credential}),
        )
        .await;
    (options, r)
}

async fn stored_passkey(app: &TestApp, user_id: uuid::Uuid) -> tessera::store::MfaFactor {
    let rows = app.store.factors_of_user(user_id).await.unwrap();
    rows.into_iter().find(|f| f.kind == "passkey").unwrap()
}

/// `accounts.require_verified_email` holds for a passwordless login as for a password: the
/// passkey's holder is told, and gets no token (it used to get a token pair).
async fn a_passkey_alone_is_refused_to_an_unverified_address(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("webauthn.rp_id", RP_ID))
            .merge(Serialized::default("webauthn.origins", json!([ORIGIN])))
            .merge(Serialized::default("accounts.require_verified_email", true))
    })
    .await
    else {
        return;
    };
    let user = app.create_user("alice", &[]).await;
    let first = app.login_ok("alice").await;
    let mut key = SoftPasskey::new();
    let (_, r) = register(&app, first["access_token"].as_str().unwrap(), &mut key).await;
    assert_eq!(r.status(), 201);
    let (_, r) = passwordless(&app, &mut key).await;
    assert_eq!(r.status(), 200, "verified (no address): a login");
    // An address that is not verified (an administrator set it so).
    assert!(app
        .store
        .set_email(
            user.id,
            Some(("alice@example.com", "alice@example.com")),
            false,
            None,
            1
        )
        .await
        .unwrap()
        .is_some());
    let count =
        "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = $1";
    let sessions = app.scalar_i64(count, "alice").await;
    let (_, r) = passwordless(&app, &mut key).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "email_not_verified"
    );
    assert_eq!(
        app.scalar_i64(count, "alice").await,
        sessions,
        "no session opened"
    );
}

async fn a_passkey_registers_and_logs_in_without_a_password(b: Backend) {
    let Some(app) = app_with_passkeys(b).await else {
        return;
    };
    let user = app.create_user("alice", &[]).await;
    let first = app.login_ok("alice").await;
    let access = first["access_token"].as_str().unwrap();
    let mut key = SoftPasskey::new();
    let (start, r) = register(&app, access, &mut key).await;
    // The options ask for a discoverable credential, verified, for this relying party.
    let pk = &start["publicKey"];
    assert_eq!(pk["rp"]["id"], RP_ID);
    assert_eq!(pk["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(pk["authenticatorSelection"]["userVerification"], "required");
    assert_eq!(
        unb64(pk["user"]["id"].as_str().unwrap()),
        user.id.as_bytes()
    );
    assert_eq!(r.status(), 201);
    let added: Value = r.json().await.unwrap();
    assert_eq!(added["factor"]["kind"], "passkey");
    assert_eq!(added["factor"]["name"], "laptop");
    assert_eq!(added["factor"]["backup_eligible"], false);
    assert_eq!(added["recovery_codes"].as_array().unwrap().len(), 10);
    // The ceremony is used up: its answer again is refused.
    let again = bearer_post(
        &app,
        "/me/factors/passkey/finish",
        access,
        &json!({"ceremony": start["ceremony"], "credential": key.register(pk)}),
    )
    .await;
    assert_eq!(again.status(), 400);
    let stored = stored_passkey(&app, user.id).await;
    assert_eq!(
        stored.credential_id.as_deref(),
        Some(b64(&key.cred_id).as_str())
    );
    assert!(stored.confirmed_at.is_some());
    assert!(stored.secret_enc.is_empty());

    // Passwordless: any discoverable passkey, through the browser's autofill.
    let (options, r) = passwordless(&app, &mut key).await;
    assert_eq!(options["mediation"], "conditional");
    assert_eq!(options["publicKey"]["allowCredentials"], json!([]));
    assert_eq!(options["publicKey"]["userVerification"], "required");
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let claims = TestApp::claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], user.id.to_string());
    assert_eq!(claims["amr"], json!(["hwk", "user", "mfa"]));
    assert_eq!(claims["acr"], "3");
    assert_eq!(
        app.userinfo(t["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    // A refresh keeps the methods.
    let r = app
        .post_json("/refresh", &json!({"refresh_token": t["refresh_token"]}))
        .await;
    assert_eq!(r.status(), 200);
    let t2: Value = r.json().await.unwrap();
    assert_eq!(
        TestApp::claims(t2["access_token"].as_str().unwrap())["acr"],
        "3"
    );
    // The counter and the time of use are stored.
    let stored = stored_passkey(&app, user.id).await;
    assert_eq!(stored.sign_count, 1);
    assert!(stored.last_used_at.is_some());

    // The same assertion again: its ceremony is used up, and a new ceremony's challenge is
    // not the one it signed.
    let replay = key.clone_device();
    let (_, r) = passwordless(&app, &mut key).await;
    assert_eq!(r.status(), 200);
    let mut stale = replay;
    let old = stale.assert(&options["publicKey"]);
    let r = app
        .post_json(
            "/login/passkey",
            &json!({"ceremony": options["ceremony"], "credential": old}),
        )
        .await;
    assert_eq!(r.status(), 401);
    let r2 = app.post_json("/login/passkey/options", &json!({})).await;
    let fresh: Value = r2.json().await.unwrap();
    let r = app
        .post_json(
            "/login/passkey",
            &json!({"ceremony": fresh["ceremony"], "credential": old}),
        )
        .await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");

    // A ceremony id that is not one Tessera sealed: the one refusal.
    let r = app.post_json("/login/passkey/options", &json!({})).await;
    let sealed: Value = r.json().await.unwrap();
    let mut tampered = sealed["ceremony"].as_str().unwrap().to_string();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let r = app
        .post_json(
            "/login/passkey",
            &json!({"ceremony": tampered, "credential": key.assert(&sealed["publicKey"])}),
        )
        .await;
    assert_eq!(r.status(), 401);

    // Garbage is a 400, never a 5xx.
    let mut wrong_type = key.clone_device().assert(&fresh["publicKey"]);
    wrong_type["type"] = json!("password");
    for bad in [
        json!({"ceremony": fresh["ceremony"], "credential": wrong_type}),
        json!({"ceremony": fresh["ceremony"], "credential": {"id": 5}}),
        json!({"ceremony": fresh["ceremony"], "credential": "x"}),
        json!({"ceremony": "", "credential": {}}),
        json!({"credential": {}}),
    ] {
        let r = app.post_json("/login/passkey", &bad).await;
        assert_eq!(r.status(), 400, "{bad}");
    }

    // A disabled user's passkey logs nobody in.
    app.auth
        .set_disabled(
            tessera::auth::UserRef::Id(user.id),
            true,
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    let (_, r) = passwordless(&app, &mut key).await;
    assert_eq!(r.status(), 401);
}

/// The `mfa_methods` of the first step come from the statement that stores the challenge:
/// both kinds a user holds, confirmed, and never one that is not confirmed.
async fn the_first_step_names_every_kind_of_factor_held(b: Backend) {
    let Some(app) = app_with_passkeys(b).await else {
        return;
    };
    app.create_user("bob", &[]).await;
    let (_, _, t) = crate::mfa::with_totp(&app, "bob").await;
    let access = t["access_token"].as_str().unwrap();
    let mut key = SoftPasskey::new();
    let (_, r) = register(&app, access, &mut key).await;
    assert_eq!(r.status(), 201);
    // A second TOTP factor, never confirmed, adds nothing.
    enrol_totp_unconfirmed(&app, access).await;
    let r = app.login("bob", PASSWORD).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "mfa_required");
    assert_eq!(
        body["mfa_methods"],
        json!(["totp", "passkey", "recovery_code"])
    );

    // A passkey-only user with an unconfirmed TOTP factor is offered the passkey alone.
    app.create_user("carol", &[]).await;
    let first = app.login_ok("carol").await;
    let access = first["access_token"].as_str().unwrap();
    enrol_totp_unconfirmed(&app, access).await;
    let mut key = SoftPasskey::new();
    let (_, r) = register(&app, access, &mut key).await;
    assert_eq!(r.status(), 201);
    let r = app.login("carol", PASSWORD).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["mfa_methods"], json!(["passkey", "recovery_code"]));
}

/// Starts a TOTP enrolment with `access` and never confirms it.
async fn enrol_totp_unconfirmed(app: &TestApp, access: &str) {
    let r = app
        .client
        .post(app.url("/me/factors/totp"))
        .bearer_auth(access)
        .json(&json!({"name": "unconfirmed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

async fn a_passkey_completes_a_password_login(b: Backend) {
    let Some(app) = app_with_passkeys(b).await else {
        return;
    };
    let user = app.create_user("bob", &[]).await;
    let first = app.login_ok("bob").await;
    let mut key = SoftPasskey::new();
    key.synced = true;
    let (_, r) = register(&app, first["access_token"].as_str().unwrap(), &mut key).await;
    assert_eq!(r.status(), 201);
    let added: Value = r.json().await.unwrap();
    assert_eq!(added["factor"]["backup_eligible"], true);
    assert_eq!(added["factor"]["backup_state"], true);

    // The password is the first step; the passkey is offered as the second.
    let r = app.login("bob", PASSWORD).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["mfa_methods"], json!(["passkey", "recovery_code"]));
    let mfa_token = body["mfa_token"].as_str().unwrap();
    let r = app
        .post_json("/login/mfa/passkey", &json!({"mfa_token": mfa_token}))
        .await;
    assert_eq!(r.status(), 200);
    let options: Value = r.json().await.unwrap();
    let allowed = &options["publicKey"]["allowCredentials"];
    assert_eq!(allowed.as_array().unwrap().len(), 1);
    assert_eq!(allowed[0]["id"], b64(&key.cred_id));
    let credential = key.assert(&options["publicKey"]);
    let r = app
        .post_json(
            "/login/mfa",
            &json!({"mfa_token": mfa_token, "passkey": credential}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let claims = TestApp::claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["amr"], json!(["pwd", "swk", "user", "mfa"]));
    assert_eq!(claims["acr"], "3");
    assert_eq!(claims["sub"], user.id.to_string());
    // The mfa_token and the assertion are used up.
    let r = app
        .post_json(
            "/login/mfa",
            &json!({"mfa_token": mfa_token, "passkey": credential}),
        )
        .await;
    assert_eq!(r.status(), 401);
    // Options for a used mfa_token: the one refusal.
    let r = app
        .post_json("/login/mfa/passkey", &json!({"mfa_token": mfa_token}))
        .await;
    assert_eq!(r.status(), 401);

    // An assertion for another login's challenge does not complete this one.
    let token_a = {
        let r = app.login("bob", PASSWORD).await;
        let b: Value = r.json().await.unwrap();
        b["mfa_token"].as_str().unwrap().to_string()
    };
    let token_b = {
        let r = app.login("bob", PASSWORD).await;
        let b: Value = r.json().await.unwrap();
        b["mfa_token"].as_str().unwrap().to_string()
    };
    let r = app
        .post_json("/login/mfa/passkey", &json!({"mfa_token": token_a}))
        .await;
    let options_a: Value = r.json().await.unwrap();
    let for_a = key.assert(&options_a["publicKey"]);
    let r = app
        .post_json(
            "/login/mfa",
            &json!({"mfa_token": token_b, "passkey": for_a}),
        )
        .await;
    assert_eq!(r.status(), 401);

    // A user handle that is not the login's user: refused (WebAuthn §7.2 step 6).
    let token_c = {
        let r = app.login("bob", PASSWORD).await;
        let b: Value = r.json().await.unwrap();
        b["mfa_token"].as_str().unwrap().to_string()
    };
    let r = app
        .post_json("/login/mfa/passkey", &json!({"mfa_token": token_c}))
        .await;
    let options_c: Value = r.json().await.unwrap();
    let mut foreign = key.assert(&options_c["publicKey"]);
    foreign["response"]["userHandle"] = json!(b64(uuid::Uuid::now_v7().as_bytes()));
    let r = app
        .post_json(
            "/login/mfa",
            &json!({"mfa_token": token_c, "passkey": foreign}),
        )
        .await;
    assert_eq!(r.status(), 401);
    // The challenge lives on the login's own row, and a second options call replaces the
    // first: the first call's assertion no longer completes the login, the second's does.
    let token_e = {
        let r = app.login("bob", PASSWORD).await;
        let b: Value = r.json().await.unwrap();
        b["mfa_token"].as_str().unwrap().to_string()
    };
    let ceremonies_before = app
        .scalar_i64("SELECT COUNT(*) FROM webauthn_ceremonies WHERE $1 = $1", "")
        .await;
    // Challenges asked for above and never answered are still pending.
    let pending = "SELECT COUNT(*) FROM mfa_challenges
                   WHERE passkey_expires_at > 0 AND used_at IS NULL AND $1 = $1";
    let pending_before = app.scalar_i64(pending, "").await;
    let r = app
        .post_json("/login/mfa/passkey", &json!({"mfa_token": token_e}))
        .await;
    let first: Value = r.json().await.unwrap();
    let stale = key.assert(&first["publicKey"]);
    let r = app
        .post_json("/login/mfa/passkey", &json!({"mfa_token": token_e}))
        .await;
    let second: Value = r.json().await.unwrap();
    assert_ne!(
        first["publicKey"]["challenge"],
        second["publicKey"]["challenge"]
    );
    let fresh = key.assert(&second["publicKey"]);
    assert_eq!(app.scalar_i64(pending, "").await, pending_before + 1);
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM webauthn_ceremonies WHERE $1 = $1", "")
            .await,
        ceremonies_before,
        "a second step writes no ceremony row"
    );
    let r = app
        .post_json(
            "/login/mfa",
            &json!({"mfa_token": token_e, "passkey": stale}),
        )
        .await;
    assert_eq!(r.status(), 401);
    // That try took the stored challenge with it: the second call's assertion needs a third.
    assert_eq!(app.scalar_i64(pending, "").await, pending_before);
    let r = app
        .post_json(
            "/login/mfa",
            &json!({"mfa_token": token_e, "passkey": fresh}),
        )
        .await;
    assert_eq!(r.status(), 401);
    let r = app
        .post_json("/login/mfa/passkey", &json!({"mfa_token": token_e}))
        .await;
    let third: Value = r.json().await.unwrap();
    let good_e = key.assert(&third["publicKey"]);
    let r = app
        .post_json(
            "/login/mfa",
            &json!({"mfa_token": token_e, "passkey": good_e}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.scalar_i64(pending, "").await, pending_before);

    // A burst of retries of one good answer: exactly one wins (the losers find the ceremony
    // used, which does not count as a wrong factor and cannot starve the winner).
    let token_d = {
        let r = app.login("bob", PASSWORD).await;
        let b: Value = r.json().await.unwrap();
        b["mfa_token"].as_str().unwrap().to_string()
    };
    let r = app
        .post_json("/login/mfa/passkey", &json!({"mfa_token": token_d}))
        .await;
    let options_d: Value = r.json().await.unwrap();
    let good = key.assert(&options_d["publicKey"]);
    // A credential that does not parse is a 400 that spends neither a guess nor the options.
    let guesses =
        "SELECT CAST(COALESCE(SUM(failures), 0) AS BIGINT) FROM mfa_challenges WHERE $1 = $1";
    let before = (
        app.scalar_i64(guesses, "").await,
        app.scalar_i64(pending, "").await,
    );
    for garbage in [json!("not a credential"), json!({"type": "public-key"})] {
        let r = app
            .post_json(
                "/login/mfa",
                &json!({"mfa_token": token_d, "passkey": garbage}),
            )
            .await;
        assert_eq!(r.status(), 400, "{garbage}");
    }
    assert_eq!(
        (
            app.scalar_i64(guesses, "").await,
            app.scalar_i64(pending, "").await
        ),
        before
    );
    let body = json!({"mfa_token": token_d, "passkey": good});
    let answers =
        futures::future::join_all((0..8).map(|_| app.post_json("/login/mfa", &body))).await;
    let won = answers.iter().filter(|r| r.status() == 200).count();
    assert_eq!(
        won,
        1,
        "{:?}",
        answers.iter().map(|r| r.status()).collect::<Vec<_>>()
    );

    // The password grant's second step takes the passkey too (a form field of JSON).
    let r = app
        .client
        .post(app.url("/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let b: Value = r.json().await.unwrap();
    let grant_token = b["mfa_token"].as_str().unwrap().to_string();
    let r = app
        .post_json("/login/mfa/passkey", &json!({"mfa_token": grant_token}))
        .await;
    assert_eq!(r.status(), 200);
    let options: Value = r.json().await.unwrap();
    let assertion = key.assert(&options["publicKey"]).to_string();
    // Not at /login/mfa: the token is the client's.
    let r = app
        .post_json(
            "/login/mfa",
            &json!({"mfa_token": grant_token, "passkey": serde_json::from_str::<Value>(&assertion).unwrap()}),
        )
        .await;
    assert_eq!(r.status(), 401);
    let r = app
        .post_json("/login/mfa/passkey", &json!({"mfa_token": grant_token}))
        .await;
    let options: Value = r.json().await.unwrap();
    let assertion = key.assert(&options["publicKey"]).to_string();
    let r = app
        .client
        .post(app.url("/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "urn:tessera:params:oauth:grant-type:mfa"),
            ("mfa_token", grant_token.as_str()),
            ("passkey", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let claims = TestApp::claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["amr"], json!(["pwd", "swk", "user", "mfa"]));
}

async fn a_cloned_passkey_is_refused(b: Backend) {
    let Some(app) = app_with_passkeys(b).await else {
        return;
    };
    let user = app.create_user("carol", &[]).await;
    let first = app.login_ok("carol").await;
    let mut key = SoftPasskey::new();
    key.counter = 10;
    let (_, r) = register(&app, first["access_token"].as_str().unwrap(), &mut key).await;
    assert_eq!(r.status(), 201);
    let mut clone = key.clone_device();
    let (_, r) = passwordless(&app, &mut key).await;
    assert_eq!(r.status(), 200);
    let (_, r) = passwordless(&app, &mut key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(stored_passkey(&app, user.id).await.sign_count, 12);
    // The clone's counter (11) is behind the original's (12). The refusal counts as a failed
    // login, where the failed-login alert looks (it was result="invalid", seen by no alert).
    let failed = || async {
        let text = app.get("/metrics").await.text().await.unwrap();
        crate::operations::sample(&text, r#"logins_total{result="failed"}"#).unwrap_or(0.0)
    };
    let before = failed().await;
    let (_, r) = passwordless(&app, &mut clone).await;
    assert_eq!(r.status(), 401);
    assert!(failed().await >= before + 1.0);
    // Equal is not enough either.
    clone.counter = 11;
    let (_, r) = passwordless(&app, &mut clone).await;
    assert_eq!(r.status(), 401);
    let stored = stored_passkey(&app, user.id).await;
    assert_eq!(stored.sign_count, 12);
    // The original goes on working.
    let (_, r) = passwordless(&app, &mut key).await;
    assert_eq!(r.status(), 200);
}

async fn the_wrong_origin_rp_id_or_no_user_verification_is_refused(b: Backend) {
    let Some(app) = app_with_passkeys(b).await else {
        return;
    };
    let user = app.create_user("dave", &[]).await;
    let first = app.login_ok("dave").await;
    let access = first["access_token"].as_str().unwrap();
    let mut evil_origin = SoftPasskey::new();
    evil_origin.origin = "https://login.example.net".into();
    let mut evil_rp = SoftPasskey::new();
    evil_rp.rp_id = Some("example.net".into());
    let mut unverified = SoftPasskey::new();
    unverified.verifies_user = false;
    for key in [&mut evil_origin, &mut evil_rp, &mut unverified] {
        let (_, r) = register(&app, access, key).await;
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request");
    }
    assert!(app.store.factors_of_user(user.id).await.unwrap().is_empty());

    // A good registration; then each fault at login.
    let mut key = SoftPasskey::new();
    let (_, r) = register(&app, access, &mut key).await;
    assert_eq!(r.status(), 201);
    for fault in 0..3 {
        let mut k = key.clone_device();
        k.counter = 100 + fault;
        match fault {
            0 => k.origin = "https://login.example.net".into(),
            1 => k.rp_id = Some("example.net".into()),
            _ => k.verifies_user = false,
        }
        let (_, r) = passwordless(&app, &mut k).await;
        assert_eq!(r.status(), 401, "fault {fault}");
    }
    assert_eq!(stored_passkey(&app, user.id).await.sign_count, 0);
    let (_, r) = passwordless(&app, &mut key).await;
    assert_eq!(r.status(), 200);
}

async fn a_credential_belongs_to_one_account(b: Backend) {
    let Some(app) = app_with_passkeys(b).await else {
        return;
    };
    let erin = app.create_user("erin", &[]).await;
    app.create_user("frank", &[]).await;
    let erin_t = app.login_ok("erin").await;
    let mut key = SoftPasskey::new();
    let (_, r) = register(&app, erin_t["access_token"].as_str().unwrap(), &mut key).await;
    assert_eq!(r.status(), 201);
    // The same credential id, offered for another account: refused.
    let frank_t = app.login_ok("frank").await;
    let mut same = key.clone_device();
    let (_, r) = register(&app, frank_t["access_token"].as_str().unwrap(), &mut same).await;
    assert_eq!(r.status(), 409);
    // And for its own account again (the options excluded it): the same conflict.
    let erin_access = erin_t["access_token"].as_str().unwrap().to_string();
    let mut again = key.clone_device();
    let (_, r) = register(&app, &erin_access, &mut again).await;
    assert_eq!(r.status(), 409);
    // Credential ids of the wrong length, and ids that are not the rawId: 400, nothing stored.
    for (len, mismatch) in [(8usize, false), (1024, false), (32, true)] {
        let mut odd = SoftPasskey::new();
        odd.cred_id = vec![7u8; len];
        let r = bearer_post(&app, "/me/factors/passkey", &erin_access, &json!({})).await;
        let start: Value = r.json().await.unwrap();
        let mut credential = odd.register(&start["publicKey"]);
        if mismatch {
            credential["id"] = json!(b64(&[9u8; 32]));
        }
        let r = bearer_post(
            &app,
            "/me/factors/passkey/finish",
            &erin_access,
            &json!({"ceremony": start["ceremony"], "credential": credential}),
        )
        .await;
        assert_eq!(r.status(), 400, "{len} {mismatch}");
    }
    // Another user's attempt with erin's registration ceremony leaves it to erin.
    let r = bearer_post(&app, "/me/factors/passkey", &erin_access, &json!({})).await;
    let start: Value = r.json().await.unwrap();
    let mut third = SoftPasskey::new();
    let credential = third.register(&start["publicKey"]);
    let body = json!({"ceremony": start["ceremony"], "credential": credential});
    let r = bearer_post(
        &app,
        "/me/factors/passkey/finish",
        frank_t["access_token"].as_str().unwrap(),
        &body,
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = bearer_post(&app, "/me/factors/passkey/finish", &erin_access, &body).await;
    assert_eq!(r.status(), 201);
    // Without a token: 401, whatever the body.
    let r = app
        .post_json("/me/factors/passkey/finish", &json!("x"))
        .await;
    assert_eq!(r.status(), 401);
    // A second passkey of erin's is excluded from nothing, and both log in.
    let erin_t = {
        let r = app.login("erin", PASSWORD).await;
        assert_eq!(r.status(), 403);
        let mut k = key.clone_device();
        let b: Value = r.json().await.unwrap();
        let mfa_token = b["mfa_token"].as_str().unwrap();
        let options: Value = app
            .post_json("/login/mfa/passkey", &json!({"mfa_token": mfa_token}))
            .await
            .json()
            .await
            .unwrap();
        key.counter = k.counter + 1;
        let r = app
            .post_json(
                "/login/mfa",
                &json!({"mfa_token": mfa_token, "passkey": k.assert(&options["publicKey"])}),
            )
            .await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    let access = erin_t["access_token"].as_str().unwrap();
    let mut second = SoftPasskey::new();
    let (start, r) = register(&app, access, &mut second).await;
    assert_eq!(r.status(), 201);
    // The options exclude erin's two passkeys (the first, and the one added above).
    let excluded: Vec<&str> = start["publicKey"]["excludeCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(excluded.len(), 2);
    assert!(excluded.contains(&b64(&key.cred_id).as_str()));
    assert!(excluded.contains(&b64(&third.cred_id).as_str()));
    let (_, r) = passwordless(&app, &mut second).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(
        TestApp::claims(t["access_token"].as_str().unwrap())["sub"],
        erin.id.to_string()
    );
    // GET /me/factors lists all three, with their flags.
    let r = app
        .client
        .get(app.url("/me/factors"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    let list: Value = r.json().await.unwrap();
    let kinds: Vec<&str> = list["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["passkey", "passkey", "passkey"]);
    // Without a bearer token nothing starts.
    let r = app.post_json("/me/factors/passkey", &json!({})).await;
    assert_eq!(r.status(), 401);
}

async fn passkeys_are_off_without_a_relying_party(b: Backend) {
    // The test issuer is an IP address, and no rp_id is set.
    let Some((app, _)) = TestApp::with_user(b, "gina", &[]).await else {
        return;
    };
    let r = app.post_json("/login/passkey/options", &json!({})).await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    let meta: Value = app
        .client
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["acr_values_supported"], json!(["1", "2"]));
    let t = app.login_ok("gina").await;
    let r = bearer_post(
        &app,
        "/me/factors/passkey",
        t["access_token"].as_str().unwrap(),
        &json!({}),
    )
    .await;
    assert_eq!(r.status(), 404);
    // An rp_id that is no parent of an origin is refused at start-up.
    let bad = tessera::config::Settings::from_figment(
        crate::helpers::test_figment("sqlite::memory:", &crate::helpers::master_key())
            .merge(Serialized::default("webauthn.rp_id", "example.org"))
            .merge(Serialized::default("webauthn.origins", json!([ORIGIN]))),
    );
    let err = bad.unwrap_err().to_string();
    assert!(err.contains("webauthn.rp_id"), "{err}");
}

async fn a_browser_adds_a_passkey_and_signs_in_with_it(b: Backend) {
    use crate::oidc_interop::{available, free_port, run, DIR};
    let modules = std::path::Path::new(DIR).join("node_modules");
    let ready = std::path::Path::new("/usr/bin/chromium").exists()
        && modules.join("playwright-core").exists();
    if !available(ready, "Debian's chromium and `npm ci` in tests/interop") {
        return;
    }
    // WebAuthn needs a secure context: http://localhost is one, and "localhost" is the RP ID.
    let (port, callback_port) = (free_port(), free_port());
    let base = format!("http://localhost:{port}");
    let b2 = base.clone();
    let Some(app) = TestApp::spawn_with(b, move |f| {
        f.merge(Serialized::default(
            "http.bind",
            format!("127.0.0.1:{port}"),
        ))
        .merge(Serialized::default("tokens.issuer", b2.clone()))
        .merge(Serialized::default("webauthn.rp_id", "localhost"))
        .merge(Serialized::default("webauthn.origins", json!([b2])))
        .merge(Serialized::default(
            "clients",
            json!([{"id": "web", "public": true, "first_party": true,
                        "redirect_uris": ["http://127.0.0.1/cb"],
                        "scopes": ["openid", "profile", "offline_access"]}]),
        ))
    })
    .await
    else {
        return;
    };
    let user = app.create_user("alice", &[]).await;
    let args = vec![
        format!("{DIR}/passkey_browser.mjs"),
        base,
        callback_port.to_string(),
        "alice".into(),
        PASSWORD.into(),
    ];
    let (ok, text) = run("node", args).await;
    assert!(ok && text.contains("\"ok\":true"), "{text}");
    // Both ways of asking ran: the autofill and the button.
    assert!(text.contains(r#""via":["autofill","button"]"#), "{text}");
    // The passkey is stored, discoverable, used once, and the login recorded with it.
    let stored = stored_passkey(&app, user.id).await;
    assert!(stored.sign_count >= 1, "{stored:?}");
    assert!(stored.last_used_at.is_some());
    assert_eq!(app.store.recovery_codes_left(user.id).await.unwrap(), 10);
}

/// The fields of the form that follows `marker` on a page, with `set` in place of (or beside)
/// its own.
fn form_after(page: &str, marker: &str, set: &[(&str, String)]) -> Vec<(String, String)> {
    let at = page
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not on the page"));
    let rest = &page[at..];
    let form = &rest[..rest.find("</form>").unwrap()];
    let mut fields: Vec<(String, String)> = crate::oidc::hidden_fields(form)
        .into_iter()
        .filter(|(k, _)| !set.iter().any(|(n, _)| n == k))
        .collect();
    fields.extend(set.iter().map(|(k, v)| (k.to_string(), v.clone())));
    fields
}

/// The hosted pages without JavaScript, posting what the page's script would: the login
/// page's passkey form, the second step's passkey, and the account page's registration.
async fn the_hosted_pages_take_a_passkey(b: Backend) {
    use crate::oidc::{exchange, op_tweaked, pkce, redirected, Browser, APP_CB};
    let Some(app) = op_tweaked(b, None, |f| {
        f.merge(Serialized::default("webauthn.rp_id", RP_ID))
            .merge(Serialized::default("webauthn.origins", json!([ORIGIN])))
    })
    .await
    else {
        return;
    };
    // The account page: signed out, it is a login page; signed in, it adds a passkey.
    let mut browser = Browser::new(&app);
    let r = browser.get("/account").await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(plain(&page).contains(r#"action="/account/login""#));
    assert!(page.contains(r#"autocomplete="username webauthn""#));
    let fields = form_after(
        &page,
        "<form",
        &[("username", "alice".into()), ("password", PASSWORD.into())],
    );
    let r = browser.post("/account/login", &fields).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/account");
    // Another browser signed in too: adding a factor ends its SSO session, not the caller's.
    let mut elsewhere = Browser::new(&app);
    let page = elsewhere.get("/account").await.text().await.unwrap();
    let fields = form_after(
        &page,
        "<form",
        &[("username", "alice".into()), ("password", PASSWORD.into())],
    );
    assert_eq!(
        elsewhere.post("/account/login", &fields).await.status(),
        303
    );
    let page = browser.get("/account").await.text().await.unwrap();
    assert!(
        page.contains("Signed in as <strong>alice</strong>"),
        "{page}"
    );
    assert!(page.contains("Add a passkey"));
    let csrf = form_after(&page, r#"id="add-passkey""#, &[])
        .into_iter()
        .find(|(k, _)| k == "csrf")
        .unwrap()
        .1;
    // The options need the form's CSRF token.
    let r = browser
        .post(
            "/account/passkey/options",
            &[("name".into(), "phone".into())],
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = browser
        .post(
            "/account/passkey/options",
            &[
                ("csrf".into(), csrf.clone()),
                ("name".into(), "phone".into()),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let o: Value = r.json().await.unwrap();
    let mut key = SoftPasskey::new();
    let credential = key.register(&o["publicKey"]).to_string();
    let fields = form_after(
        &page,
        r#"id="add-passkey""#,
        &[
            ("ceremony", o["ceremony"].as_str().unwrap().to_string()),
            ("credential", credential),
        ],
    );
    let r = browser.post("/account/passkey", &fields).await;
    assert_eq!(r.status(), 200);
    let done = r.text().await.unwrap();
    assert!(done.contains("Passkey added"), "{done}");
    assert_eq!(done.matches("<li><code>").count(), 10);
    let ended = |reason: &'static str| {
        app.scalar_i64(
            "SELECT count(*) FROM sso_sessions WHERE revoked_reason = $1",
            reason,
        )
    };
    assert_eq!(ended("factors_changed").await, 1);
    let live = app
        .scalar_i64(
            "SELECT count(*) FROM sso_sessions WHERE revoked_at IS NULL AND $1 = $1",
            "",
        )
        .await;
    assert_eq!(live, 1);
    assert!(done.contains("Passkey: phone"));
    let recovery: Vec<String> = done
        .split("<li><code>")
        .skip(1)
        .map(|c| c[..c.find("</code>").unwrap()].to_string())
        .collect();

    // An app's login page offers the passkey; the form the script posts signs in with it.
    let (verifier, challenge) = pkce();
    let page = browser
        .authorize_web(&challenge, &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(
        plain(&page).contains(r#"action="/authorize/passkey""#),
        "{page}"
    );
    let ask = || async {
        let o: Value = app
            .post_json("/login/passkey/options", &json!({}))
            .await
            .json()
            .await
            .unwrap();
        o
    };
    // A refused passkey: the login page again, saying so.
    let o = ask().await;
    let mut stranger = SoftPasskey::new();
    stranger.user_handle = key.user_handle.clone();
    let fields = form_after(
        &page,
        r#"id="passkey-login""#,
        &[
            ("ceremony", o["ceremony"].as_str().unwrap().to_string()),
            ("credential", stranger.assert(&o["publicKey"]).to_string()),
        ],
    );
    let r = browser.post("/authorize/passkey", &fields).await;
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("That passkey was not accepted"));
    let o = ask().await;
    let fields = form_after(
        &page,
        r#"id="passkey-login""#,
        &[
            ("ceremony", o["ceremony"].as_str().unwrap().to_string()),
            ("credential", key.assert(&o["publicKey"]).to_string()),
        ],
    );
    let r = browser.post("/authorize/passkey", &fields).await;
    let q = redirected(&r, APP_CB);
    let r = exchange(&app, "web", &q["code"], &verifier, APP_CB).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let id = TestApp::claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], json!(["hwk", "user", "mfa"]));
    assert_eq!(id["acr"], "3");

    // A fresh browser: password, then "Use a passkey" on the second step.
    let mut other = Browser::new(&app);
    let (verifier, challenge) = pkce();
    let page = other
        .authorize_web(&challenge, &[])
        .await
        .text()
        .await
        .unwrap();
    let r = other
        .sign_in(&form_of_login(&page), "alice", PASSWORD)
        .await;
    assert_eq!(r.status(), 200);
    let step = r.text().await.unwrap();
    assert!(step.contains("Use a passkey"), "{step}");
    // Alice holds a passkey and no TOTP: the page offers no code field she cannot use,
    // and the recovery code in its place.
    assert!(!step.contains("Authentication code"), "{step}");
    assert!(step.contains(r#"<label for="recovery_code">Recovery code</label>"#));
    let token = form_after(&step, r#"id="second-step""#, &[])
        .into_iter()
        .find(|(k, _)| k == "mfa_token")
        .unwrap()
        .1;
    let o: Value = app
        .post_json("/login/mfa/passkey", &json!({"mfa_token": token}))
        .await
        .json()
        .await
        .unwrap();
    let fields = form_after(
        &step,
        r#"id="second-step""#,
        &[("passkey", key.assert(&o["publicKey"]).to_string())],
    );
    let r = other.post("/authorize/mfa", &fields).await;
    let q = redirected(&r, APP_CB);
    let r = exchange(&app, "web", &q["code"], &verifier, APP_CB).await;
    let t: Value = r.json().await.unwrap();
    let id = TestApp::claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], json!(["pwd", "hwk", "user", "mfa"]));
    assert_eq!(id["acr"], "3");

    // Step-up to "3": a browser signed in with a password and a recovery code ("2") gets a
    // code for acr_values=2, and the login page for acr_values=3.
    let meta: Value = app
        .client
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["acr_values_supported"], json!(["1", "2", "3"]));
    let mut third = Browser::new(&app);
    let (_, challenge) = pkce();
    let page = third
        .authorize_web(&challenge, &[])
        .await
        .text()
        .await
        .unwrap();
    let r = third
        .sign_in(&form_of_login(&page), "alice", PASSWORD)
        .await;
    let step = r.text().await.unwrap();
    let fields = form_after(
        &step,
        r#"id="second-step""#,
        &[("recovery_code", recovery[0].clone())],
    );
    let r = third.post("/authorize/mfa", &fields).await;
    redirected(&r, APP_CB);
    let r = third
        .authorize_web(&challenge, &[("acr_values", "2")])
        .await;
    redirected(&r, APP_CB);
    let r = third
        .authorize_web(&challenge, &[("acr_values", "3")])
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Use a passkey"));
    let r = third
        .authorize_web(&challenge, &[("acr_values", "3"), ("prompt", "none")])
        .await;
    assert_eq!(redirected(&r, APP_CB)["error"], "login_required");
}

/// A page with the `/` that autoescaping writes as `&#x2f;` put back.
fn plain(page: &str) -> String {
    page.replace("&#x2f;", "/")
}

/// The login form alone of a login page (which also holds the passkey form).
fn form_of_login(page: &str) -> String {
    let end = page.find(r#"id="passkey-login""#).unwrap_or(page.len());
    page[..end].to_string()
}

async fn the_cli_lists_and_resets_passkeys(b: Backend) {
    let Some(app) = app_with_passkeys(b).await else {
        return;
    };
    let user = app.create_user("hana", &[]).await;
    let t = app.login_ok("hana").await;
    let mut key = SoftPasskey::new();
    let (_, r) = register(&app, t["access_token"].as_str().unwrap(), &mut key).await;
    assert_eq!(r.status(), 201);
    let cli = |args: &'static [&'static str]| {
        let (url, master) = (app.db.url().to_string(), app.master_key.clone());
        tokio::task::spawn_blocking(move || crate::cli::tessera(&url, &master, args, None))
    };
    let (ok, out) = cli(&["user", "factors", "hana"]).await.unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("\tpasskey\tlaptop\ttrue\t"), "{out}");
    assert!(out.contains("recovery codes left: 10"), "{out}");
    // No credential material is printed.
    assert!(!out.contains(&b64(&key.cred_id)), "{out}");
    let (ok, out) = cli(&["user", "reset-factors", "hana"]).await.unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("removed 1 factors"), "{out}");
    assert!(app.store.factors_of_user(user.id).await.unwrap().is_empty());
    assert_eq!(app.store.recovery_codes_left(user.id).await.unwrap(), 0);
    // The password alone logs in again; the passkey does not.
    assert_eq!(app.login("hana", PASSWORD).await.status(), 200);
    let (_, r) = passwordless(&app, &mut key).await;
    assert_eq!(r.status(), 401);
    let (ok, _) = cli(&["user", "factors", "nobody"]).await.unwrap();
    assert!(!ok);
}

/// `webauthn.user_verification = "preferred"`: a security key without a PIN registers and
/// completes a password login (its `amr` lacks `user`), but never logs in alone; a key that
/// verified its user when added keeps having to.
async fn a_key_without_a_pin_is_a_second_factor_when_verification_is_preferred(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("webauthn.rp_id", RP_ID))
            .merge(Serialized::default("webauthn.origins", json!([ORIGIN])))
            .merge(Serialized::default(
                "webauthn.user_verification",
                "preferred",
            ))
    })
    .await
    else {
        return;
    };
    let user = app.create_user("pia", &[]).await;
    let first = app.login_ok("pia").await;
    let access = first["access_token"].as_str().unwrap();
    let mut key = SoftPasskey::new();
    key.verifies_user = false;
    let (start, r) = register(&app, access, &mut key).await;
    assert_eq!(
        start["publicKey"]["authenticatorSelection"]["userVerification"],
        "preferred"
    );
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // The second step of a password login.
    let r = app.login("pia", PASSWORD).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    let mfa_token = body["mfa_token"].as_str().unwrap();
    let r = app
        .post_json("/login/mfa/passkey", &json!({ "mfa_token": mfa_token }))
        .await;
    assert_eq!(r.status(), 200);
    let options: Value = r.json().await.unwrap();
    assert_eq!(options["publicKey"]["userVerification"], "preferred");
    let credential = key.assert(&options["publicKey"]);
    let r = app
        .post_json(
            "/login/mfa",
            &json!({"mfa_token": mfa_token, "passkey": credential}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let claims = TestApp::claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["amr"], json!(["pwd", "hwk", "mfa"]));
    assert_eq!(claims["sub"], user.id.to_string());
    assert_eq!(stored_passkey(&app, user.id).await.sign_count, 1);
    // Alone, without verification, it is no login.
    let (_, r) = passwordless(&app, &mut key).await;
    assert_eq!(r.status(), 401);

    // A key that verified its user when added must keep doing so.
    let other = app.create_user("quin", &[]).await;
    let access = app.login_ok("quin").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut pin = SoftPasskey::new();
    let (_, r) = register(&app, &access, &mut pin).await;
    assert_eq!(r.status(), 201);
    pin.verifies_user = false;
    let r = app.login("quin", PASSWORD).await;
    let body: Value = r.json().await.unwrap();
    let mfa_token = body["mfa_token"].as_str().unwrap();
    let r = app
        .post_json("/login/mfa/passkey", &json!({ "mfa_token": mfa_token }))
        .await;
    let options: Value = r.json().await.unwrap();
    let credential = pin.assert(&options["publicKey"]);
    let r = app
        .post_json(
            "/login/mfa",
            &json!({"mfa_token": mfa_token, "passkey": credential}),
        )
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(stored_passkey(&app, other.id).await.sign_count, 0);
    // With verification, it logs in alone, with `user` in its amr.
    pin.verifies_user = true;
    let (_, r) = passwordless(&app, &mut pin).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let claims = TestApp::claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["amr"], json!(["hwk", "user", "mfa"]));
}
