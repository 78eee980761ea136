//! Second factors: TOTP enrolment and login, replay and races, recovery codes, the password
//! grant's second step, `amr`/`acr`, secrets at rest, and the hosted login failing closed.

use futures::future::join_all;
use serde_json::{json, Value};
use totp_rs::{Algorithm, Secret, Totp};

use crate::helpers::{Backend, TestApp, CLIENT_ID, CLIENT_SECRET, PASSWORD};
use crate::on_both;

on_both!(
    totp_enrolment_then_login_with_a_code,
    a_totp_code_works_once_even_in_parallel,
    a_right_code_sent_at_once_counts_no_wrong_factor,
    recovery_codes_work_once_and_regenerate,
    recovery_code_sets_do_not_multiply_at_once,
    enrolments_at_once_stop_at_ten_factors,
    parallel_recovery_codes_on_one_mfa_token_spend_one,
    second_steps_racing_a_factor_removal_leave_no_session,
    second_steps_refused_by_a_factor_change_spend_no_code,
    wrong_factors_are_counted_and_end_the_mfa_token,
    parallel_wrong_codes_check_at_most_five_on_one_mfa_token,
    the_password_grant_has_a_second_step,
    a_password_change_between_the_steps_ends_the_login,
    factors_are_managed_by_their_user_only,
    the_hosted_login_asks_for_the_second_factor,
    roles_that_need_a_second_factor,
    administrators_list_and_reset_factors,
    acr_values_step_up_to_the_second_factor,
    changing_factors_needs_a_recent_sign_in
);

/// An authenticator app holding `secret` (base32).
pub(crate) fn app_for(secret: &str) -> Totp {
    totp_rs::Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_skew(0)
        .with_secret(Secret::try_from_base32(secret).unwrap())
        .with_account_name("t")
        .build_noncompliant()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The code of the step `offset` steps from now.
pub(crate) fn code(totp: &Totp, offset: i64) -> String {
    let t = now_secs() as i64 + offset * 30;
    totp.generate(t as u64).to_string()
}

async fn bearer_json(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

/// Enrols and confirms a TOTP factor for `user` (logged in now); returns the app, the first
/// recovery codes, and the login's tokens.
pub(crate) async fn with_totp(app: &TestApp, user: &str) -> (Totp, Vec<String>, Value) {
    let t = app.login_ok(user).await;
    let access = t["access_token"].as_str().unwrap();
    let r = bearer_json(
        app,
        reqwest::Method::POST,
        "/me/factors/totp",
        access,
        Some(json!({"name": "phone"})),
    )
    .await;
    assert_eq!(r.status(), 201);
    let e: Value = r.json().await.unwrap();
    let secret = e["secret"].as_str().unwrap();
    assert!(e["otpauth_uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/"));
    assert!(e["qr_svg"].as_str().unwrap().contains("<svg"));
    let totp = app_for(secret);
    let id = e["id"].as_str().unwrap();
    // A wrong code does not confirm it.
    let wrong = format!(
        "{:06}",
        (code(&totp, 0).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    let r = bearer_json(
        app,
        reqwest::Method::POST,
        &format!("/me/factors/{id}/confirm"),
        access,
        Some(json!({"code": wrong})),
    )
    .await;
    assert_eq!(r.status(), 401);
    // Not yet confirmed: the password alone still logs in.
    app.login_ok(user).await;
    let r = bearer_json(
        app,
        reqwest::Method::POST,
        &format!("/me/factors/{id}/confirm"),
        access,
        Some(json!({"code": code(&totp, 0)})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let c: Value = r.json().await.unwrap();
    let codes: Vec<String> = c["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    (totp, codes, t)
}

/// `/login` for `user`: asserts the 403 `mfa_required` and returns its mfa_token.
pub(crate) async fn mfa_token(app: &TestApp, user: &str) -> String {
    mfa_token_with(app, user, PASSWORD).await
}

async fn mfa_token_with(app: &TestApp, user: &str, password: &str) -> String {
    let r = app.login(user, password).await;
    assert_eq!(r.status(), 403);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"], "mfa_required");
    assert_eq!(b["mfa_methods"], json!(["totp", "recovery_code"]));
    assert!(b.get("access_token").is_none());
    b["mfa_token"].as_str().unwrap().to_string()
}

pub(crate) async fn second_step(
    app: &TestApp,
    token: &str,
    field: &str,
    value: &str,
) -> reqwest::Response {
    app.post_json("/login/mfa", &json!({"mfa_token": token, field: value}))
        .await
}

async fn totp_enrolment_then_login_with_a_code(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    let (totp, _, first) = with_totp(&app, "alice").await;
    // Confirming ended the other sessions, but not the caller's own.
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(app.userinfo(access).await.status(), 200);
    let claims = TestApp::claims(access);
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert_eq!(claims["acr"], "1");

    // A wrong password is still the same 401, with no hint of the factor.
    let r = app.login("alice", "not the password").await;
    assert_eq!(r.status(), 401);
    let token = mfa_token(&app, "alice").await;
    let r = second_step(&app, &token, "totp_code", &code(&totp, 1)).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let claims = TestApp::claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(claims["acr"], "2");
    // A refresh keeps the login's methods.
    let r = app.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let claims = TestApp::claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(claims["acr"], "2");
    // The mfa_token was used up.
    let r = second_step(&app, &token, "totp_code", &code(&totp, 0)).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    // Listed, with no secret.
    let r = bearer_json(
        &app,
        reqwest::Method::GET,
        "/me/factors",
        t["access_token"].as_str().unwrap(),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let l: Value = r.json().await.unwrap();
    assert_eq!(l["factors"][0]["name"], "phone");
    assert_eq!(l["factors"][0]["confirmed"], true);
    assert_eq!(l["recovery_codes_left"], 10);
    assert!(!l.to_string().contains("secret"));
    // At most ten factors, confirmed or not.
    let bearer = t["access_token"].as_str().unwrap();
    // A body must be JSON, labelled so and UTF-8 throughout (a JSON body sent as text/plain,
    // as a form or unlabelled, and invalid UTF-8 in an unknown member, were taken): refused,
    // and no factor is made.
    for (content_type, body) in [
        (Some("text/plain"), br#"{"name":"desk"}"#.to_vec()),
        (
            Some("application/x-www-form-urlencoded"),
            br#"{"name":"desk"}"#.to_vec(),
        ),
        (None, br#"{"name":"desk"}"#.to_vec()),
        (
            Some("application/json"),
            b"{\"x\":\"\xff\",\"name\":\"desk\"}".to_vec(),
        ),
        // An array, which serde reads as the object's fields in order.
        (Some("application/json"), br#"["desk"]"#.to_vec()),
    ] {
        let mut r = app
            .client
            .post(app.url("/me/factors/totp"))
            .bearer_auth(bearer)
            .body(body);
        if let Some(ct) = content_type {
            r = r.header("content-type", ct);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 400, "{content_type:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_request");
    }
    for _ in 0..9 {
        let r = bearer_json(
            &app,
            reqwest::Method::POST,
            "/me/factors/totp",
            bearer,
            None,
        )
        .await;
        assert_eq!(r.status(), 201);
    }
    let r = bearer_json(
        &app,
        reqwest::Method::POST,
        "/me/factors/totp",
        bearer,
        None,
    )
    .await;
    assert_eq!(r.status(), 400);
    // Sealed at rest: the stored bytes are not the secret.
    let secret = totp.secret().as_bytes().to_vec();
    let rows = app
        .store
        .factors_of_user(
            app.auth
                .user(tessera::auth::UserRef::Name("alice"))
                .await
                .unwrap()
                .id,
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 10);
    assert!(!rows[0]
        .secret_enc
        .windows(secret.len())
        .any(|w| w == secret));
    assert!(rows[0].secret_enc.len() >= secret.len() + 28);
    assert!(!format!("{:?}", rows[0]).contains(&format!("{:?}", secret)));
}

async fn a_totp_code_works_once_even_in_parallel(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "bob", &[]).await else {
        return;
    };
    let (totp, _, _) = with_totp(&app, "bob").await;
    // The next step's code (within the window), sent with three mfa_tokens at once: one wins.
    // (Three, so that the failures below stay within `throttle.account_free_failures`.)
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(mfa_token(&app, "bob").await);
    }
    let c = code(&totp, 1);
    let answers = join_all(tokens.iter().map(|t| second_step(&app, t, "totp_code", &c))).await;
    let won = answers.iter().filter(|r| r.status() == 200).count();
    assert_eq!(won, 1, "one code, one login");
    for r in &answers {
        assert!(matches!(r.status().as_u16(), 200 | 401), "{}", r.status());
    }
    // Replayed later with a fresh mfa_token: refused.
    let token = mfa_token(&app, "bob").await;
    let r = second_step(&app, &token, "totp_code", &c).await;
    assert_eq!(r.status(), 401);
    // A code of two steps ago: refused (the window is one step each way).
    let r = second_step(&app, &token, "totp_code", &code(&totp, -2)).await;
    assert_eq!(r.status(), 401);
    // Not six digits: refused alike.
    let r = second_step(&app, &token, "totp_code", "12ab56").await;
    assert_eq!(r.status(), 401);
    // Both factors, or none: 400.
    let r = app
        .post_json(
            "/login/mfa",
            &json!({"mfa_token": token, "totp_code": "123456", "recovery_code": "x"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = app
        .post_json("/login/mfa", &json!({"mfa_token": token}))
        .await;
    assert_eq!(r.status(), 400);
}

/// The right code sent eight times at once (a double submit, a client's retries): one login,
/// and the seven losers are refused without counting as wrong factors. They counted, so the
/// account's second step was throttled (429) after a user's own retries.
async fn a_right_code_sent_at_once_counts_no_wrong_factor(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "gus", &[]).await else {
        return;
    };
    let (totp, recovery, _) = with_totp(&app, "gus").await;
    one_login_and_no_wrong_factor(&app, "totp_code", &code(&totp, 1)).await;
    assert!(!crate::oidc::audit_event_stored(&app, "mfa.failed").await);
    // The account's second step is not throttled.
    let token = mfa_token(&app, "gus").await;
    let r = second_step(&app, &token, "recovery_code", &recovery[0]).await;
    assert_eq!(r.status(), 200);
    // A recovery code sent eight times at once: the same (its losers counted).
    one_login_and_no_wrong_factor(&app, "recovery_code", &recovery[1]).await;
    // A code the user never held still counts.
    let token = mfa_token(&app, "gus").await;
    let r = second_step(&app, &token, "recovery_code", "aaaa-bbbb-cccc").await;
    assert_eq!(r.status(), 401);
    let counted = app
        .scalar_i64(
            "SELECT COALESCE(MAX(failures), 0) FROM login_throttle WHERE key LIKE $1",
            "mfa:%",
        )
        .await;
    assert_eq!(counted, 1, "a wrong recovery code was not counted");
}

async fn recovery_codes_work_once_and_regenerate(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "carol", &[]).await else {
        return;
    };
    let (_, codes, first) = with_totp(&app, "carol").await;
    let token = mfa_token(&app, "carol").await;
    // Case, spaces and dashes do not matter.
    let typed = codes[0].replace('-', " ").to_uppercase();
    let r = second_step(&app, &token, "recovery_code", &typed).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let claims = TestApp::claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["amr"], json!(["pwd", "mfa"]));
    // Used once.
    let token = mfa_token(&app, "carol").await;
    let r = second_step(&app, &token, "recovery_code", &codes[0]).await;
    assert_eq!(r.status(), 401);
    assert!(crate::oidc::audit_event_stored(&app, "mfa.recovery_code_used").await);
    // Regenerating revokes the old set.
    let r = bearer_json(
        &app,
        reqwest::Method::POST,
        "/me/recovery_codes",
        first["access_token"].as_str().unwrap(),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let fresh: Value = r.json().await.unwrap();
    let fresh = fresh["recovery_codes"][0].as_str().unwrap().to_string();
    let r = second_step(&app, &token, "recovery_code", &codes[1]).await;
    assert_eq!(r.status(), 401);
    let r = second_step(&app, &token, "recovery_code", &fresh).await;
    assert_eq!(r.status(), 200);
}

/// Replacements of the recovery codes at once end as one set (Postgres: two transactions
/// each deleted the old set and inserted theirs, and both sets worked), and of two first
/// factors confirmed at once, one answer brings the set.
async fn recovery_code_sets_do_not_multiply_at_once(b: Backend) {
    let Some((app, carol)) = TestApp::with_user(b, "carol", &[]).await else {
        return;
    };
    let (_, _, t) = with_totp(&app, "carol").await;
    let access = t["access_token"].as_str().unwrap();
    let answers = join_all((0..8).map(|_| {
        bearer_json(
            &app,
            reqwest::Method::POST,
            "/me/recovery_codes",
            access,
            None,
        )
    }))
    .await;
    assert!(answers.iter().all(|r| r.status() == 200));
    assert_eq!(app.auth.recovery_codes_left(carol.id).await.unwrap(), 10);

    // Two TOTP factors of a user with none, confirmed at once.
    let dave = app.create_user("dave", &[]).await;
    let t = app.login_ok("dave").await;
    let access = t["access_token"].as_str().unwrap();
    let mut enrolled = Vec::new();
    for name in ["phone", "tablet"] {
        let r = bearer_json(
            &app,
            reqwest::Method::POST,
            "/me/factors/totp",
            access,
            Some(json!({ "name": name })),
        )
        .await;
        assert_eq!(r.status(), 201);
        let e: Value = r.json().await.unwrap();
        let code = code(&app_for(e["secret"].as_str().unwrap()), 0);
        enrolled.push((e["id"].as_str().unwrap().to_string(), code));
    }
    let paths: Vec<String> = enrolled
        .iter()
        .map(|(id, _)| format!("/me/factors/{id}/confirm"))
        .collect();
    let answers = join_all(paths.iter().zip(&enrolled).map(|(path, (_, code))| {
        bearer_json(
            &app,
            reqwest::Method::POST,
            path,
            access,
            Some(json!({ "code": code })),
        )
    }))
    .await;
    let mut sets = 0;
    for r in answers {
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        sets += usize::from(body["recovery_codes"].is_array());
    }
    assert_eq!(sets, 1);
    assert_eq!(app.auth.recovery_codes_left(dave.id).await.unwrap(), 10);
}

/// Eight different recovery codes on one mfa_token at once: one login, and only its code is
/// spent (the seven others were used up with no login and no event).
/// Sixteen TOTP enrolments at once: ten factors, the rest refused with the limit's 400. On
/// Postgres each counted the factors before the others' inserts committed, and all sixteen
/// were stored.
async fn enrolments_at_once_stop_at_ten_factors(b: Backend) {
    let Some((app, alice)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    let t = app.login_ok("alice").await;
    let access = t["access_token"].as_str().unwrap();
    let answers = join_all((0..16).map(|i| {
        bearer_json(
            &app,
            reqwest::Method::POST,
            "/me/factors/totp",
            access,
            Some(json!({"name": format!("phone {i}")})),
        )
    }))
    .await;
    let mut statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, [[201; 10].as_slice(), &[400; 6]].concat());
    assert_eq!(app.store.factors_of_user(alice.id).await.unwrap().len(), 10);
}

async fn parallel_recovery_codes_on_one_mfa_token_spend_one(b: Backend) {
    let Some((app, carol)) = TestApp::with_user(b, "carol", &[]).await else {
        return;
    };
    let (_, codes, _) = with_totp(&app, "carol").await;
    let token = mfa_token(&app, "carol").await;
    let answers = join_all(
        codes[..8]
            .iter()
            .map(|c| second_step(&app, &token, "recovery_code", c)),
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );
    assert_eq!(app.auth.recovery_codes_left(carol.id).await.unwrap(), 9);
    // Each loser's code still works, once.
    let winner = statuses.iter().position(|s| *s == 200).unwrap();
    let other = codes[(winner + 1) % 8].clone();
    let token = mfa_token(&app, "carol").await;
    assert_eq!(
        second_step(&app, &token, "recovery_code", &other)
            .await
            .status(),
        200
    );
    assert_eq!(app.auth.recovery_codes_left(carol.id).await.unwrap(), 8);
}

/// The last factor removed while eight logins complete their second step with recovery
/// codes: afterwards no session but the remover's is live. Sessions of second steps that
/// finished just after the removal had ended the other sessions stayed live (made with a
/// code of a factor that was gone).
async fn second_steps_racing_a_factor_removal_leave_no_session(b: Backend) {
    use figment::providers::Serialized;
    // Codes refused after the removal count as wrong factors: the account must not lock up
    // over the rounds.
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("throttle.account_free_failures", 1000))
    })
    .await
    else {
        return;
    };
    let ivy = app.create_user("ivy", &[]).await;
    for _ in 0..3 {
        let (_, codes, t) = with_totp(&app, "ivy").await;
        let access = t["access_token"].as_str().unwrap();
        let keep = TestApp::claims(access)["sid"].as_str().unwrap().to_string();
        let r = bearer_json(&app, reqwest::Method::GET, "/me/factors", access, None).await;
        let listed: Value = r.json().await.unwrap();
        let remove = format!(
            "/me/factors/{}",
            listed["factors"][0]["id"].as_str().unwrap()
        );
        let mut tokens = Vec::new();
        for _ in 0..8 {
            tokens.push(mfa_token(&app, "ivy").await);
        }
        let removal = bearer_json(&app, reqwest::Method::DELETE, &remove, access, None);
        let steps = join_all(
            tokens
                .iter()
                .zip(&codes)
                .map(|(t, c)| second_step(&app, t, "recovery_code", c)),
        );
        let (removed, answers) = tokio::join!(removal, steps);
        assert_eq!(removed.status(), 204);
        let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
        assert!(
            statuses.iter().all(|s| matches!(s, 200 | 401)),
            "{statuses:?}"
        );
        for s in app.store.sessions_of_user(ivy.id, 100).await.unwrap() {
            if s.id.to_string() != keep {
                assert!(
                    s.revoked_at.is_some(),
                    "session {} outlived the removal",
                    s.id
                );
            }
        }
        // The codes were the user's when sent: none counts as a wrong factor.
        let counted = app
            .scalar_i64(
                "SELECT COALESCE(MAX(failures), 0) FROM login_throttle WHERE key LIKE $1",
                "mfa:%",
            )
            .await;
        assert_eq!(counted, 0, "{statuses:?}");
    }
}

/// A factor added while eight logins complete their second step with recovery codes: the
/// steps the change refuses hand their codes back, so the codes left are the ten less the
/// logins that got through. They were spent with a 401.
async fn second_steps_refused_by_a_factor_change_spend_no_code(b: Backend) {
    use figment::providers::Serialized;
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("throttle.account_free_failures", 1000))
    })
    .await
    else {
        return;
    };
    let jo = app.create_user("jo", &[]).await;
    let (_, codes, t) = with_totp(&app, "jo").await;
    let access = t["access_token"].as_str().unwrap();
    let mut left = 10;
    for round in 0..3 {
        let r = bearer_json(
            &app,
            reqwest::Method::POST,
            "/me/factors/totp",
            access,
            Some(json!({ "name": format!("spare {round}") })),
        )
        .await;
        assert_eq!(r.status(), 201);
        let e: Value = r.json().await.unwrap();
        let confirm = format!("/me/factors/{}/confirm", e["id"].as_str().unwrap());
        let code = code(&app_for(e["secret"].as_str().unwrap()), 0);
        let mut tokens = Vec::new();
        for _ in 0..3 {
            tokens.push(mfa_token(&app, "jo").await);
        }
        let used = &codes[round * 3..round * 3 + 3];
        let change = bearer_json(
            &app,
            reqwest::Method::POST,
            &confirm,
            access,
            Some(json!({ "code": code })),
        );
        let steps = join_all(
            tokens
                .iter()
                .zip(used)
                .map(|(t, c)| second_step(&app, t, "recovery_code", c)),
        );
        let (changed, answers) = tokio::join!(change, steps);
        assert_eq!(changed.status(), 200);
        let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
        assert!(
            statuses.iter().all(|s| matches!(s, 200 | 401)),
            "{statuses:?}"
        );
        left -= statuses.iter().filter(|s| **s == 200).count() as i64;
        assert_eq!(
            app.auth.recovery_codes_left(jo.id).await.unwrap(),
            left,
            "round {round}: {statuses:?}"
        );
    }
}

/// Sends one right factor (`field`, `value`) on eight of gus's mfa_tokens at once: one login,
/// seven refusals (401), and no wrong factor counted for the account.
async fn one_login_and_no_wrong_factor(app: &TestApp, field: &str, value: &str) {
    let mut tokens = Vec::new();
    for _ in 0..8 {
        tokens.push(mfa_token(app, "gus").await);
    }
    let answers = join_all(tokens.iter().map(|t| second_step(app, t, field, value))).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{field}: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 401)),
        "{field}: {statuses:?}"
    );
    let counted = app
        .scalar_i64(
            "SELECT COALESCE(MAX(failures), 0) FROM login_throttle WHERE key LIKE $1",
            "mfa:%",
        )
        .await;
    assert_eq!(counted, 0, "{field}: wrong factors counted for the account");
}

/// A server whose throttle lets more through than an mfa_token takes (so the token's own limit
/// shows), an mfa_token of a user `name` with a TOTP factor, and a right and a wrong code for
/// it.
async fn one_token_and_its_codes(
    b: Backend,
    name: &str,
) -> Option<(TestApp, String, String, String)> {
    use figment::providers::Serialized;
    let app = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("throttle.account_free_failures", 50))
    })
    .await?;
    app.create_user(name, &[]).await;
    let (totp, _, _) = with_totp(&app, name).await;
    let token = mfa_token(&app, name).await;
    let right = code(&totp, 1);
    let wrong = format!(
        "{:06}",
        (right.parse::<u32>().unwrap() + 500_000) % 1_000_000
    );
    Some((app, token, right, wrong))
}

async fn wrong_factors_are_counted_and_end_the_mfa_token(b: Backend) {
    let Some((app, token, right, wrong)) = one_token_and_its_codes(b, "dave").await else {
        return;
    };
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            second_step(&app, &token, "totp_code", &wrong)
                .await
                .status()
                .as_u16(),
        );
    }
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    // Five wrong factors: the token is dead, even for the right code.
    let r = second_step(&app, &token, "totp_code", &right).await;
    assert!(matches!(r.status().as_u16(), 401 | 429), "{}", r.status());
    assert!(crate::oidc::audit_event_stored(&app, "mfa.failed").await);
    // An unknown token: the same 401 body.
    let r = second_step(&app, "no-such-token", "totp_code", &right).await;
    assert_eq!(r.status(), 401);
}

/// Wrong codes sent at once on one mfa_token: each was checked against the failure count read
/// before its throttle reservation, so while the throttle let them through (a larger
/// allowance, or another token's success clearing the account's count), all were checked: an
/// attack saw eight of thirty. Each guess is now counted on the token before its check.
async fn parallel_wrong_codes_check_at_most_five_on_one_mfa_token(b: Backend) {
    let Some((app, token, right, wrong)) = one_token_and_its_codes(b, "fay").await else {
        return;
    };
    let answers = join_all((0..12).map(|_| second_step(&app, &token, "totp_code", &wrong))).await;
    for r in &answers {
        assert_eq!(r.status(), 401);
    }
    let guesses = app
        .scalar_i64(
            "SELECT MAX(failures) FROM mfa_challenges \
             WHERE user_id = (SELECT id FROM users WHERE username = $1)",
            "fay",
        )
        .await;
    assert_eq!(guesses, 5, "factors checked on one mfa_token");
    // Dead, even for the right code; a new token still works.
    let r = second_step(&app, &token, "totp_code", &right).await;
    assert_eq!(r.status(), 401);
    let token = mfa_token(&app, "fay").await;
    let r = second_step(&app, &token, "totp_code", &right).await;
    assert_eq!(r.status(), 200);
}

async fn the_password_grant_has_a_second_step(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "erin", &[]).await else {
        return;
    };
    let (totp, _, _) = with_totp(&app, "erin").await;
    let basic = Some((CLIENT_ID, CLIENT_SECRET));
    let r = app
        .form(
            "/token",
            &[
                ("grant_type", "password"),
                ("username", "erin"),
                ("password", PASSWORD),
            ],
            basic,
        )
        .await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "mfa_required");
    let token = body["mfa_token"].as_str().unwrap();
    let grant = "urn:tessera:params:oauth:grant-type:mfa";
    // Another client cannot finish it.
    let r = app
        .form(
            "/token",
            &[
                ("grant_type", grant),
                ("mfa_token", token),
                ("otp", &code(&totp, 1)),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = app
        .form(
            "/token",
            &[
                ("grant_type", grant),
                ("mfa_token", token),
                ("otp", &code(&totp, 1)),
            ],
            basic,
        )
        .await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let claims = TestApp::claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["client_id"], CLIENT_ID);
    assert_eq!(claims["acr"], "2");
    let r = app
        .form(
            "/token",
            &[
                ("grant_type", grant),
                ("mfa_token", token),
                ("otp", &code(&totp, 0)),
            ],
            basic,
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
}

async fn a_password_change_between_the_steps_ends_the_login(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "frank", &[]).await else {
        return;
    };
    let (totp, _, _) = with_totp(&app, "frank").await;
    let token = mfa_token(&app, "frank").await;
    app.auth
        .set_password(
            tessera::auth::UserRef::Name("frank"),
            secrecy::SecretString::from("a brand new password"),
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    // The right code now gets exactly the answer of a wrong one, and is not spent.
    let right = second_step(&app, &token, "totp_code", &code(&totp, 1)).await;
    assert_eq!(right.status(), 401);
    let right: Value = right.json().await.unwrap();
    let token2 = mfa_token_with(&app, "frank", "a brand new password").await;
    let wrong = second_step(&app, &token2, "totp_code", "000000").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(right, wrong.json::<Value>().await.unwrap());
    let r = second_step(&app, &token2, "totp_code", &code(&totp, 1)).await;
    assert_eq!(
        r.status(),
        200,
        "the code was not spent by the refused step"
    );
}

async fn factors_are_managed_by_their_user_only(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "gina", &[]).await else {
        return;
    };
    app.create_user("hank", &[]).await;
    let (_, _, first) = with_totp(&app, "gina").await;
    let mine = first["access_token"].as_str().unwrap();
    let r = bearer_json(&app, reqwest::Method::GET, "/me/factors", mine, None).await;
    let l: Value = r.json().await.unwrap();
    let id = l["factors"][0]["id"].as_str().unwrap().to_string();
    // Another user cannot rename or remove it.
    let theirs = app.login_ok("hank").await;
    let theirs = theirs["access_token"].as_str().unwrap();
    let r = bearer_json(
        &app,
        reqwest::Method::PATCH,
        &format!("/me/factors/{id}"),
        theirs,
        Some(json!({"name": "mine now"})),
    )
    .await;
    assert_eq!(r.status(), 404);
    let r = bearer_json(
        &app,
        reqwest::Method::DELETE,
        &format!("/me/factors/{id}"),
        theirs,
        None,
    )
    .await;
    assert_eq!(r.status(), 404);
    // No token: 401.
    let r = app.get("/me/factors").await;
    assert_eq!(r.status(), 401);
    // The user renames and removes it; then the password alone logs in again.
    let r = bearer_json(
        &app,
        reqwest::Method::PATCH,
        &format!("/me/factors/{id}"),
        mine,
        Some(json!({"name": "old phone"})),
    )
    .await;
    assert_eq!(r.status(), 204);
    let r = bearer_json(
        &app,
        reqwest::Method::DELETE,
        &format!("/me/factors/{id}"),
        mine,
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
    app.login_ok("gina").await;
    assert!(crate::oidc::audit_event_stored(&app, "mfa.factor_removed").await);
}

async fn the_hosted_login_asks_for_the_second_factor(b: Backend) {
    let Some(app) = crate::oidc::op(b).await else {
        return;
    };
    app.create_user("ivy", &[]).await;
    let (totp, codes, _) = with_totp(&app, "ivy").await;
    let mut browser = crate::oidc::Browser::new(&app);
    let (verifier, challenge) = crate::oidc::pkce();
    let r = browser.authorize_web(&challenge, &[]).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    // The password step answers with the second step's page, not a code.
    let r = browser.sign_in(&page, "ivy", PASSWORD).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Two-step verification"), "{page}");
    assert!(page.contains(r#"autocomplete="one-time-code""#));
    assert!(browser.jar.keys().all(|k| !k.contains("tessera_sso")));
    let step = |code: (&str, String)| {
        let mut fields = crate::oidc::hidden_fields(&page);
        fields.push((code.0.to_string(), code.1));
        fields
    };
    // A wrong code: the page again, with an error, and no session.
    let right = code(&totp, 1);
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);
    let r = browser.post("/authorize/mfa", &step(("code", wrong))).await;
    assert_eq!(r.status(), 200);
    let again = r.text().await.unwrap();
    assert!(again.contains("Incorrect"));
    // It offers what the user has (the form carried the methods back).
    assert!(
        again.contains(r#"name="methods" value="totp recovery_code""#),
        "{again}"
    );
    assert!(again.contains(r#"autocomplete="one-time-code""#));
    // A forged form (no CSRF token) is refused.
    let mut forged = step(("code", right.clone()));
    forged.retain(|(k, _)| k != "csrf");
    let r = browser.post("/authorize/mfa", &forged).await;
    assert_eq!(r.status(), 403);
    // The right code: the code goes to the app, and the SSO session says how.
    let r = browser.post("/authorize/mfa", &step(("code", right))).await;
    let q = crate::oidc::redirected(&r, crate::oidc::APP_CB);
    let r = crate::oidc::exchange(&app, "web", &q["code"], &verifier, crate::oidc::APP_CB).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let id = TestApp::claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(id["acr"], "2");
    let access = TestApp::claims(t["access_token"].as_str().unwrap());
    assert_eq!(access["acr"], "2");
    // The next app needs no login page and keeps the methods.
    let q = crate::oidc::code_again(&mut browser, &challenge).await;
    let r = crate::oidc::exchange(&app, "web", &q, &verifier, crate::oidc::APP_CB).await;
    let t: Value = r.json().await.unwrap();
    assert_eq!(TestApp::claims(t["id_token"].as_str().unwrap())["acr"], "2");
    // A recovery code works on the page too (a fresh browser).
    let mut other = crate::oidc::Browser::new(&app);
    let r = other.authorize_web(&challenge, &[]).await;
    let page = r.text().await.unwrap();
    let r = other.sign_in(&page, "ivy", PASSWORD).await;
    let page = r.text().await.unwrap();
    let mut fields = crate::oidc::hidden_fields(&page);
    fields.push(("recovery_code".into(), codes[3].clone()));
    let r = other.post("/authorize/mfa", &fields).await;
    let q = crate::oidc::redirected(&r, crate::oidc::APP_CB);
    let r = crate::oidc::exchange(&app, "web", &q["code"], &verifier, crate::oidc::APP_CB).await;
    let t: Value = r.json().await.unwrap();
    assert_eq!(
        TestApp::claims(t["id_token"].as_str().unwrap())["amr"],
        json!(["pwd", "mfa"])
    );
    let app_access = t["access_token"].as_str().unwrap().to_string();

    // The factor removed through the API (the device was lost): both browsers' SSO sessions
    // end with the other sessions, so neither signs an app in again without the password.
    let token = mfa_token(&app, "ivy").await;
    let r = second_step(&app, &token, "recovery_code", &codes[4]).await;
    assert_eq!(r.status(), 200);
    let access = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = bearer_json(&app, reqwest::Method::GET, "/me/factors", &access, None).await;
    let listed: Value = r.json().await.unwrap();
    let id = listed["factors"][0]["id"].as_str().unwrap();
    let r = bearer_json(
        &app,
        reqwest::Method::DELETE,
        &format!("/me/factors/{id}"),
        &access,
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
    for b in [&mut browser, &mut other] {
        let r = b.authorize_web(&challenge, &[]).await;
        assert_eq!(r.status(), 200, "an SSO session outlived the removal");
        assert!(r.text().await.unwrap().contains("Sign in"));
    }
    let live = app
        .scalar_i64(
            "SELECT count(*) FROM sso_sessions WHERE revoked_at IS NULL OR revoked_reason <> $1",
            "factors_changed",
        )
        .await;
    assert_eq!(live, 0);
    app.userinfo_becomes(&app_access, 401).await;
    assert_eq!(app.userinfo(&access).await.status(), 200);
}

async fn roles_that_need_a_second_factor(b: Backend) {
    use figment::providers::Serialized;
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("mfa.required_for_roles", ["admin"]))
    })
    .await
    else {
        return;
    };
    app.create_user("root", &["admin", "ops"]).await;
    // No factor yet (within the grace): a login without the role, so no admin API.
    let t = app.login_ok("root").await;
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(TestApp::claims(access)["roles"], json!(["ops"]));
    let r = app
        .admin(reqwest::Method::GET, "/admin/users", access, None)
        .await;
    assert_eq!(r.status(), 403);
    // /userinfo shows the roles the token carries.
    let u: Value = app.userinfo(access).await.json().await.unwrap();
    assert_eq!(u["roles"], json!(["ops"]));
    assert_eq!(app.introspect(access).await["roles"], json!(["ops"]));
    // Nor after a refresh.
    let r = app.refresh(t["refresh_token"].as_str().unwrap()).await;
    let t2: Value = r.json().await.unwrap();
    assert_eq!(
        TestApp::claims(t2["access_token"].as_str().unwrap())["roles"],
        json!(["ops"])
    );
    // With a factor, a login with it carries the role and reaches the admin API.
    let (totp, _, _) = with_totp(&app, "root").await;
    let token = mfa_token(&app, "root").await;
    let r = second_step(&app, &token, "totp_code", &code(&totp, 1)).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let strong = t["access_token"].as_str().unwrap();
    assert_eq!(TestApp::claims(strong)["roles"], json!(["admin", "ops"]));
    let r = app
        .admin(reqwest::Method::GET, "/admin/users", strong, None)
        .await;
    assert_eq!(r.status(), 200);
    let u: Value = app.userinfo(strong).await.json().await.unwrap();
    assert_eq!(u["roles"], json!(["admin", "ops"]));
    assert_eq!(
        app.introspect(strong).await["roles"],
        json!(["admin", "ops"])
    );

    // Past the grace, an account with the role and no factor cannot log in at all.
    let Some(strict) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("mfa.required_for_roles", ["admin"]))
            .merge(Serialized::default("mfa.enrol_grace", "0s"))
    })
    .await
    else {
        return;
    };
    strict.create_user("late", &["admin"]).await;
    strict.create_user("plain", &[]).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let r = strict.login("late", PASSWORD).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "mfa_enrolment_required"
    );
    // A wrong password is still the plain 401, and other accounts are untouched.
    assert_eq!(strict.login("late", "wrong password").await.status(), 401);
    strict.login_ok("plain").await;
}

async fn administrators_list_and_reset_factors(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "boss", &["admin"]).await else {
        return;
    };
    let lost = app.create_user("lost", &[]).await;
    let (_, _, lost_tokens) = with_totp(&app, "lost").await;
    let admin = app.login_ok("boss").await;
    let admin = admin["access_token"].as_str().unwrap();
    let path = format!("/admin/users/{}/factors", lost.id);
    let r = app.admin(reqwest::Method::GET, &path, admin, None).await;
    assert_eq!(r.status(), 200);
    let l: Value = r.json().await.unwrap();
    assert_eq!(l["factors"].as_array().unwrap().len(), 1);
    assert_eq!(l["recovery_codes_left"], 10);
    assert!(!l.to_string().contains("secret"));
    // Not for a user's own token without the role.
    let r = app
        .admin(
            reqwest::Method::DELETE,
            &path,
            lost_tokens["access_token"].as_str().unwrap(),
            None,
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = app.admin(reqwest::Method::DELETE, &path, admin, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["removed"], 1);
    // The password alone logs in again; the old sessions ended.
    app.userinfo_becomes(lost_tokens["access_token"].as_str().unwrap(), 401)
        .await;
    app.login_ok("lost").await;
    assert!(crate::oidc::audit_event_stored(&app, "mfa.factor_removed").await);
    let r = app
        .admin(
            reqwest::Method::GET,
            &format!("/admin/users/{}/factors", uuid::Uuid::now_v7()),
            admin,
            None,
        )
        .await;
    assert_eq!(r.status(), 404);
}

async fn acr_values_step_up_to_the_second_factor(b: Backend) {
    use crate::oidc::{hidden_fields, pkce, redirected, Browser, APP_CB};
    let Some(app) = crate::oidc::op(b).await else {
        return;
    };
    app.create_user("jo", &[]).await;
    // Signed in with a password while there was no factor: an SSO session of acr 1.
    let mut browser = Browser::new(&app);
    let (verifier, challenge) = pkce();
    let r = browser.authorize_web(&challenge, &[]).await;
    let page = r.text().await.unwrap();
    let r = browser.sign_in(&page, "jo", PASSWORD).await;
    redirected(&r, APP_CB);
    let (totp, _, _) = with_totp(&app, "jo").await;
    // A factor enrolled since: the password-only sign-in is not enough, even unasked.
    let r = browser.authorize_web(&challenge, &[]).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Sign in"));
    // acr_values=2 with prompt=none: the user must sign in again.
    let r = browser
        .authorize_web(&challenge, &[("acr_values", "2"), ("prompt", "none")])
        .await;
    assert_eq!(redirected(&r, APP_CB)["error"], "login_required");
    // acr_values=2: the login page, then the second factor, then a code of acr 2.
    let r = browser
        .authorize_web(&challenge, &[("acr_values", "2")])
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Sign in"));
    let r = browser.sign_in(&page, "jo", PASSWORD).await;
    let page = r.text().await.unwrap();
    assert!(page.contains("Two-step verification"));
    let mut fields = hidden_fields(&page);
    fields.push(("code".into(), code(&totp, 1)));
    let r = browser.post("/authorize/mfa", &fields).await;
    let q = redirected(&r, APP_CB);
    let r = crate::oidc::exchange(&app, "web", &q["code"], &verifier, APP_CB).await;
    let t: Value = r.json().await.unwrap();
    assert_eq!(TestApp::claims(t["id_token"].as_str().unwrap())["acr"], "2");
    // Now the session satisfies acr_values=2 without a page.
    let r = browser
        .authorize_web(&challenge, &[("acr_values", "2 1")])
        .await;
    redirected(&r, APP_CB);
}

/// Confirming or removing a factor needs a sign-in within `mfa.reauth_within`: for a token of
/// the hosted login, the SSO session's sign-in, not the code exchange that made the token.
async fn changing_factors_needs_a_recent_sign_in(b: Backend) {
    use crate::oidc::{hidden_fields, pkce, redirected, Browser, APP_CB};
    use figment::providers::Serialized;
    let Some(app) = crate::oidc::op_tweaked(b, None, |f| {
        f.merge(Serialized::default("mfa.reauth_within", "3s"))
    })
    .await
    else {
        return;
    };
    app.create_user("kim", &[]).await;
    let (totp, _, _) = with_totp(&app, "kim").await;
    let mut browser = Browser::new(&app);
    let (verifier, challenge) = pkce();
    let r = browser.authorize_web(&challenge, &[]).await;
    let page = r.text().await.unwrap();
    let r = browser.sign_in(&page, "kim", PASSWORD).await;
    let page = r.text().await.unwrap();
    let mut fields = hidden_fields(&page);
    fields.push(("code".into(), code(&totp, 1)));
    redirected(&browser.post("/authorize/mfa", &fields).await, APP_CB);
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    // A new code from the SSO session, after the window: the exchange is recent, the sign-in
    // is not.
    let r = browser.authorize_web(&challenge, &[]).await;
    let q = redirected(&r, APP_CB);
    let r = crate::oidc::exchange(&app, "web", &q["code"], &verifier, APP_CB).await;
    let t: Value = r.json().await.unwrap();
    let access = t["access_token"].as_str().unwrap();
    let r = bearer_json(&app, reqwest::Method::GET, "/me/factors", access, None).await;
    let l: Value = r.json().await.unwrap();
    let id = l["factors"][0]["id"].as_str().unwrap().to_string();
    let r = bearer_json(
        &app,
        reqwest::Method::DELETE,
        &format!("/me/factors/{id}"),
        access,
        None,
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "insufficient_user_authentication"
    );
    let r = bearer_json(
        &app,
        reqwest::Method::POST,
        "/me/recovery_codes",
        access,
        None,
    )
    .await;
    assert_eq!(r.status(), 401);
    // Adding one too: enrolment starts, confirming needs the recent sign-in.
    let r = bearer_json(
        &app,
        reqwest::Method::POST,
        "/me/factors/totp",
        access,
        None,
    )
    .await;
    assert_eq!(r.status(), 201);
    let e: Value = r.json().await.unwrap();
    let r = bearer_json(
        &app,
        reqwest::Method::POST,
        &format!("/me/factors/{}/confirm", e["id"].as_str().unwrap()),
        access,
        Some(json!({"code": code(&app_for(e["secret"].as_str().unwrap()), 0)})),
    )
    .await;
    assert_eq!(r.status(), 401);
    // A malformed id: a JSON 400, after the token is checked (no token: 401).
    let r = app
        .client
        .delete(app.url("/me/factors/zzz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = bearer_json(
        &app,
        reqwest::Method::DELETE,
        "/me/factors/zzz",
        access,
        None,
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
}
