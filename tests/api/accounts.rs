//! Self-service by email against a real SMTP server (aiosmtpd, from PyPI): a password reset
//! asked for by address or username, the link read from the delivered message, the new
//! password set with it, and the token's abuse (reuse, a newer token, a password change in
//! between, parallel use); the outbox keeping a message through an SMTP outage; the same
//! answer for known and unknown addresses; and the flows off without mail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use figment::providers::Serialized;
use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp, PASSWORD};
use crate::oidc_interop::{available, free_port};
use crate::on_both;

on_both!(
    a_reset_link_sets_a_new_password,
    reset_tokens_work_once_and_die_with_a_password_change,
    parallel_resets_send_one_link_and_an_address_change_kills_it,
    the_outbox_keeps_mail_through_an_smtp_outage,
    two_replicas_send_each_queued_message_once,
    signup_verifies_the_address_and_tells_the_owner_of_a_taken_one,
    reset_is_off_without_mail,
    users_change_their_password_end_sessions_and_delete_the_account,
    administrators_invite_and_invitees_set_their_password,
    users_change_their_address_with_a_link_to_the_new_one,
    mail_requests_are_limited_per_client_address,
    the_hosted_page_serves_emailed_links,
    a_kill_between_the_commit_and_the_send_loses_nothing,
    address_shaped_names_follow_their_address_and_users_rename_themselves,
    long_addresses_and_administrators_changes_keep_names_their_own,
    a_reset_tells_the_address_in_its_own_transaction,
    renames_race_address_changes_signups_and_deletion_safely,
    a_mail_that_cannot_be_queued_leaves_no_account,
    a_dead_mail_is_audited_with_its_reason
);

/// A real SMTP server on loopback, delivering into a maildir.
struct Smtp {
    child: Child,
    dir: PathBuf,
    port: u16,
    /// Messages `next_message` has returned (maildir names do not sort by arrival).
    seen: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
}

impl Smtp {
    fn available() -> bool {
        let ok = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        available(ok, "python3 with aiosmtpd")
    }

    async fn start(port: u16, dir: &Path) -> Smtp {
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Up to 30 s: under the full suite's load the interpreter's start took more than 5 s,
        // the first sends failed into their retry waits, and a test waiting for its message
        // saw none.
        let mut listening = false;
        for _ in 0..600 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                listening = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            listening,
            "the SMTP server did not listen on {port} within 30 s"
        );
        Smtp {
            child,
            dir: dir.to_path_buf(),
            port,
            seen: Default::default(),
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The files of the messages delivered so far.
    fn files(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("new")) else {
            return Vec::new();
        };
        entries.map(|e| e.unwrap().path()).collect()
    }

    /// How many messages were delivered.
    fn count(&self) -> usize {
        self.files().len()
    }

    /// Waits for a message not returned before (up to 30 s: a send that failed waits
    /// `mail.retry_base`, 5 s, before its next attempt) and returns it, with quoted-printable
    /// soft breaks undone.
    async fn next_message(&self) -> String {
        for _ in 0..600 {
            let new = {
                let mut seen = self.seen.lock().unwrap();
                let new = self.files().into_iter().find(|f| !seen.contains(f));
                if let Some(f) = &new {
                    seen.insert(f.clone());
                }
                new
            };
            if let Some(f) = new {
                return std::fs::read_to_string(&f)
                    .unwrap()
                    .replace("=\r\n", "")
                    .replace("=\n", "")
                    .replace("=3D", "=");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no new message arrived; have {}", self.count());
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the store keeps of a token: base64url SHA-256.
fn digest(token: &str) -> String {
    use base64::Engine;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
}

fn maildir() -> PathBuf {
    std::env::temp_dir().join(format!("tessera-mail-{}", uuid::Uuid::now_v7()))
}

/// The token of the link in a message (`<link_base>?purpose=…&token=…`).
fn token_of(message: &str) -> String {
    link_of(message).expect(message).1
}

/// The purpose and token of the first link to `https://app.example/reset` in a message.
fn link_of(message: &str) -> Option<(String, String)> {
    let at = message.find("https://app.example/reset?")?;
    let query: String = message[at + "https://app.example/reset?".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "-_=&".contains(*c))
        .collect();
    let mut purpose = None;
    let mut token = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "purpose" => purpose = Some(v.into_owned()),
            "token" => token = Some(v.into_owned()),
            _ => {}
        }
    }
    Some((purpose?, token?))
}

async fn app_with_mail(b: Backend, smtp_port: u16) -> Option<TestApp> {
    TestApp::spawn_with(b, move |f| {
        f.merge(Serialized::default(
            "mail.smtp_url",
            format!("smtp://127.0.0.1:{smtp_port}"),
        ))
        .merge(Serialized::default(
            "mail.from",
            "Tessera <no-reply@example.com>",
        ))
        .merge(Serialized::default("mail.retry_base", "200ms"))
        .merge(Serialized::default(
            "accounts.link_base",
            "https://app.example/reset",
        ))
        // Some tests queue many mails from one address; the limit has its own test.
        .merge(Serialized::default("accounts.ip_requests", 0))
    })
    .await
}

async fn with_email(app: &TestApp, name: &str, email: &str) -> tessera::auth::UserView {
    app.auth
        .create_user_with_email(
            name,
            secrecy::SecretString::from(PASSWORD),
            vec![],
            Some(email),
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap()
}

async fn forgot(app: &TestApp, body: Value) -> reqwest::Response {
    app.post_json("/password/forgot", &body).await
}

async fn reset(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/password/reset",
        &json!({"token": token, "password": password}),
    )
    .await
}

async fn a_reset_link_sets_a_new_password(b: Backend) {
    if !Smtp::available() {
        return;
    }
    let port = free_port();
    let smtp = Smtp::start(port, &maildir()).await;
    let Some(app) = app_with_mail(b, smtp.port).await else {
        return;
    };
    with_email(&app, "rita", "Rita@Example.com").await;
    let before = app.login_ok("rita").await;
    // Known and unknown: the same status and body.
    let known = forgot(&app, json!({"email": "rita@example.com"})).await;
    let unknown = forgot(&app, json!({"email": "nobody@example.com"})).await;
    assert_eq!(known.status(), 202);
    assert_eq!(unknown.status(), 202);
    assert_eq!(known.text().await.unwrap(), unknown.text().await.unwrap());
    let message = smtp.next_message().await;
    // To the address as given, its domain in ASCII form.
    assert!(message.contains("X-RcptTo: Rita@example.com"), "{message}");
    assert!(
        message.contains("Content-Type: text/plain; charset=utf-8"),
        "{message}"
    );
    assert!(message.contains("Subject: Reset your password"));
    assert!(message.contains("Hello rita"));
    let token = token_of(&message);
    assert_eq!(token.len(), 43, "256 bits, base64url");
    // Nothing went to the unknown address.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.count(), 1);
    // The token is stored only as a digest; the queued body is sealed.
    let stored = app
        .store
        .account_token(&digest(&token), "password_reset", tessera::time::now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stored.token_hash, token);

    // A password the rules refuse: 400, and the token still works.
    let r = reset(&app, &token, "short").await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = reset(&app, &token, "a brand new passphrase").await;
    assert_eq!(r.status(), 204);
    // Every session ended, and the old password is gone.
    assert_eq!(
        app.refresh(before["refresh_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    app.userinfo_becomes(before["access_token"].as_str().unwrap(), 401)
        .await;
    assert_eq!(app.login("rita", PASSWORD).await.status(), 401);
    assert_eq!(
        app.login("rita", "a brand new passphrase").await.status(),
        200
    );
    // Used: the one refusal.
    let r = reset(&app, &token, "yet another passphrase").await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    // The reset's notice goes out (the outbox sends after the answer, so it is waited for).
    for _ in 0..100 {
        if app.store.mail_pending().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.store.mail_pending().await.unwrap(), 0);

    // aiosmtpd takes ASCII only (no SMTPUTF8): a non-ASCII local part cannot be delivered,
    // which is given up at once rather than retried.
    with_email(&app, "zoe", "zoë@example.com").await;
    assert_eq!(forgot(&app, json!({"username": "zoe"})).await.status(), 202);
    for _ in 0..100 {
        if app.store.mail_pending().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.store.mail_pending().await.unwrap(), 0);
    assert_eq!(smtp.count(), 2, "the link and the reset's notice");
}

/// Eight requests at once for one account send one mail: the once-a-minute check and the
/// token's write are one step per account (they raced, and each request killed the link of the
/// one before). The suppressed requests leave the mailed link working. A link dies with a
/// change of the account's address, also when the address then changes back.
async fn parallel_resets_send_one_link_and_an_address_change_kills_it(b: Backend) {
    if !Smtp::available() {
        return;
    }
    let smtp = Smtp::start(free_port(), &maildir()).await;
    let Some(app) = app_with_mail(b, smtp.port).await else {
        return;
    };
    let ida = with_email(&app, "ida", "ida@example.com").await;
    let answers = futures::future::join_all(
        (0..8).map(|_| forgot(&app, json!({"email": "ida@example.com"}))),
    )
    .await;
    assert!(answers.iter().all(|r| r.status() == 202));
    let first = token_of(&smtp.next_message().await);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(smtp.count(), 1, "one mail for eight requests");
    assert_eq!(
        reset(&app, &first, "a brand new passphrase").await.status(),
        204
    );
    // A new link (its minute passed), then the address changes and changes back.
    app.exec_sql("UPDATE account_tokens SET created_at = created_at - 120000".into())
        .await;
    assert_eq!(forgot(&app, json!({"username": "ida"})).await.status(), 202);
    let second = loop {
        if let Some(t) = token_of_opt(&smtp.next_message().await) {
            break t;
        }
    };
    let caller = tessera::auth::Caller::default();
    for address in ["ida2@example.com", "ida@example.com"] {
        app.auth
            .set_email(
                tessera::auth::UserRef::Id(ida.id),
                Some(address),
                true,
                &caller,
            )
            .await
            .unwrap();
    }
    let r = reset(&app, &second, "another new passphrase").await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
}

async fn reset_tokens_work_once_and_die_with_a_password_change(b: Backend) {
    if !Smtp::available() {
        return;
    }
    let smtp = Smtp::start(free_port(), &maildir()).await;
    let Some(app) = app_with_mail(b, smtp.port).await else {
        return;
    };
    let sam = with_email(&app, "sam", "sam@example.com").await;
    // By username too.
    assert_eq!(forgot(&app, json!({"username": "sam"})).await.status(), 202);
    let first = token_of(&smtp.next_message().await);
    // A second request within a minute sends nothing more.
    assert_eq!(
        forgot(&app, json!({"email": "sam@example.com"}))
            .await
            .status(),
        202
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.count(), 1);
    // A password change kills the token.
    app.auth
        .set_password(
            tessera::auth::UserRef::Id(sam.id),
            secrecy::SecretString::from("changed by an admin 1"),
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    let r = reset(&app, &first, "a brand new passphrase").await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    // A newer token kills the older one (issued directly: the minute has not passed).
    app.exec_sql("UPDATE account_tokens SET created_at = created_at - 120000".into())
        .await;
    assert_eq!(
        forgot(&app, json!({"email": "SAM@example.com"}))
            .await
            .status(),
        202
    );
    let second = token_of(&smtp.next_message().await);
    app.exec_sql("UPDATE account_tokens SET created_at = created_at - 120000".into())
        .await;
    assert_eq!(
        forgot(&app, json!({"email": "sam@example.com"}))
            .await
            .status(),
        202
    );
    let third = token_of(&smtp.next_message().await);
    assert_eq!(
        reset(&app, &second, "a brand new passphrase")
            .await
            .status(),
        400
    );
    // Parallel uses of one token: exactly one wins.
    let answers = futures::future::join_all((0..6).map(|i| {
        let (app, third) = (&app, third.clone());
        async move { reset(app, &third, &format!("parallel passphrase {i}")).await }
    }))
    .await;
    let won: Vec<usize> = answers
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status() == 204)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        won.len(),
        1,
        "{:?}",
        answers.iter().map(|r| r.status()).collect::<Vec<_>>()
    );
    let winner = format!("parallel passphrase {}", won[0]);
    assert_eq!(app.login("sam", &winner).await.status(), 200);
    // The one reset that won told the address (the losers queued nothing).
    let told = smtp.next_message().await;
    assert!(
        told.contains("Subject: Your password was changed"),
        "{told}"
    );
    // Garbage: 400, never a 5xx.
    for bad in [
        json!({"token": "", "password": "x"}),
        json!({"token": 5}),
        json!({}),
    ] {
        let r = app.post_json("/password/reset", &bad).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    for bad in [json!({}), json!({"email": "a@b.c", "username": "x"})] {
        assert_eq!(forgot(&app, bad.clone()).await.status(), 400, "{bad}");
    }
    // A changed address ends what was mailed to the old one.
    app.exec_sql("UPDATE account_tokens SET created_at = created_at - 120000".into())
        .await;
    assert_eq!(
        forgot(&app, json!({"email": "sam@example.com"}))
            .await
            .status(),
        202
    );
    let fourth = token_of(&smtp.next_message().await);
    app.auth
        .set_email(
            tessera::auth::UserRef::Id(sam.id),
            Some("sam@example.org"),
            true,
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    let r = reset(&app, &fourth, "a brand new passphrase").await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    // A disabled account gets no mail.
    app.exec_sql("UPDATE account_tokens SET created_at = created_at - 120000".into())
        .await;
    app.auth
        .set_disabled(
            tessera::auth::UserRef::Id(sam.id),
            true,
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        forgot(&app, json!({"email": "sam@example.com"}))
            .await
            .status(),
        202
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.count(), 5, "four links and one notice");
}

async fn the_outbox_keeps_mail_through_an_smtp_outage(b: Backend) {
    if !Smtp::available() {
        return;
    }
    // No SMTP server yet: the message waits in the outbox and is retried.
    let port = free_port();
    let Some(app) = app_with_mail(b, port).await else {
        return;
    };
    with_email(&app, "ola", "ola@example.com").await;
    assert_eq!(
        forgot(&app, json!({"email": "ola@example.com"}))
            .await
            .status(),
        202
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(app.store.mail_pending().await.unwrap(), 1);
    let smtp = Smtp::start(port, &maildir()).await;
    let message = smtp.next_message().await;
    assert_eq!(link_of(&message).unwrap().0, "password_reset");
    for _ in 0..100 {
        if app.store.mail_pending().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.store.mail_pending().await.unwrap(), 0);
    // Sent once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.count(), 1);
}

async fn signup_verifies_the_address_and_tells_the_owner_of_a_taken_one(b: Backend) {
    if !Smtp::available() {
        return;
    }
    let smtp = Smtp::start(free_port(), &maildir()).await;
    let port = smtp.port;
    let Some(app) = TestApp::spawn_with(b, move |f| {
        f.merge(Serialized::default(
            "mail.smtp_url",
            format!("smtp://127.0.0.1:{port}"),
        ))
        .merge(Serialized::default(
            "accounts.link_base",
            "https://app.example/reset",
        ))
        .merge(Serialized::default("accounts.signup", "open"))
        .merge(Serialized::default("accounts.require_verified_email", true))
        .merge(Serialized::default(
            "accounts.email_domains",
            json!(["example.com", "Bücher.example"]),
        ))
    })
    .await
    else {
        return;
    };
    let signup = |email: &str, password: &str| {
        let body = json!({"email": email, "password": password});
        let app = &app;
        async move { app.post_json("/signup", &body).await }
    };
    let r = signup("Nina@Example.com", PASSWORD).await;
    assert_eq!(r.status(), 202);
    let first_body = r.text().await.unwrap();
    let message = smtp.next_message().await;
    assert!(
        message.contains("Subject: Verify your email address"),
        "{message}"
    );
    let token = token_of(&message);
    // The account exists, unverified; the address is its username too.
    let nina = app
        .store
        .user_by_username("nina@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(nina.email.as_deref(), Some("Nina@Example.com"));
    assert!(!nina.email_verified);
    // Unverified: a correct password is told so; a wrong one gets the plain 401.
    let r = app.login("nina@example.com", PASSWORD).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "email_not_verified"
    );
    assert_eq!(
        app.login("nina@example.com", "wrong password!")
            .await
            .status(),
        401
    );
    // The same address again, in another case: the same answer; its owner is told, and no
    // second account exists.
    let r = signup("NINA@example.com", "another good passphrase").await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.text().await.unwrap(), first_body);
    let note = smtp.next_message().await;
    assert!(note.contains("Someone tried to sign up"), "{note}");
    assert!(token_of_opt(&note).is_none());
    // Verifying: once.
    let r = app
        .post_json("/email/verify", &json!({"token": token}))
        .await;
    assert_eq!(r.status(), 204);
    let r = app
        .post_json("/email/verify", &json!({"token": token}))
        .await;
    assert_eq!(r.status(), 400);
    assert!(
        app.store
            .user_by_id(nina.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );
    assert_eq!(app.login("Nina@example.com", PASSWORD).await.status(), 200);
    // A verified address gets no new link.
    let r = app
        .post_json(
            "/email/verify/resend",
            &json!({"email": "nina@example.com"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    // Another's address is no one's name; a chosen name that is taken is said at once.
    let r = app
        .post_json(
            "/signup",
            &json!({"email": "mallory@example.com", "password": PASSWORD, "username": "NINA@example.com"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    app.create_user("taken", &[]).await;
    let r = app
        .post_json(
            "/signup",
            &json!({"email": "quinn@example.com", "password": PASSWORD, "username": "taken"}),
        )
        .await;
    assert_eq!(r.status(), 409);
    // A chosen name that looks like a taken one (the same confusable skeleton) is said at
    // once too, and nothing is created.
    app.create_user("root", &[]).await;
    let r = app
        .post_json(
            "/signup",
            &json!({"email": "rita@example.com", "password": PASSWORD, "username": "r00t"}),
        )
        .await;
    assert_eq!(r.status(), 409);
    let body = r.json::<Value>().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("confusable"),
        "{body}"
    );
    assert!(app.store.user_by_username("r00t").await.unwrap().is_none());
    assert!(app
        .store
        .user_for_login(None, "rita@example.com")
        .await
        .unwrap()
        .is_none());
    // The rules, checked before anything is stored: 400 each.
    for (email, password) in [
        ("omar@elsewhere.com", PASSWORD),
        ("omar@example.com", "short"),
        ("not an address", PASSWORD),
        ("\"quoted\"@example.com", PASSWORD),
    ] {
        let r = signup(email, password).await;
        assert_eq!(r.status(), 400, "{email}");
    }
    // An IDNA domain of the list, written either way, is allowed.
    assert_eq!(
        signup("pia@xn--bcher-kva.example", PASSWORD).await.status(),
        202
    );
    let m = smtp.next_message().await;
    assert!(m.contains("pia@xn--bcher-kva.example"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.count(), 3);
}

fn token_of_opt(message: &str) -> Option<String> {
    link_of(message).map(|(_, t)| t)
}

/// Invariant 10 across replicas: 60 messages queued while SMTP is down, then two replicas
/// claiming at once when it is back; every message arrives exactly once.
async fn two_replicas_send_each_queued_message_once(b: Backend) {
    if !Smtp::available() {
        return;
    }
    let port = free_port();
    let Some(app) = app_with_mail(b, port).await else {
        return;
    };
    let mail_settings = move |f: figment::Figment| {
        f.merge(Serialized::default(
            "mail.smtp_url",
            format!("smtp://127.0.0.1:{port}"),
        ))
        .merge(Serialized::default("mail.retry_base", "200ms"))
        .merge(Serialized::default(
            "accounts.link_base",
            "https://app.example/reset",
        ))
        .merge(Serialized::default("accounts.ip_requests", 0))
    };
    let replica = app.replica(mail_settings).await;
    const N: usize = 100;
    for i in 0..N {
        with_email(&app, &format!("user{i}"), &format!("user{i}@example.com")).await;
    }
    let asked = futures::future::join_all((0..N).map(|i| {
        let target = if i % 2 == 0 { &app } else { &replica };
        forgot(target, json!({"email": format!("user{i}@example.com")}))
    }))
    .await;
    assert!(asked.iter().all(|r| r.status() == 202));
    // Stored before each answer (a crash after a 202 loses nothing).
    assert_eq!(app.store.mail_pending().await.unwrap(), N as i64);
    let smtp = Smtp::start(port, &maildir()).await;
    for _ in 0..300 {
        if app.store.mail_pending().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.store.mail_pending().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut recipients: Vec<String> = smtp
        .files()
        .iter()
        .map(|f| {
            let m = std::fs::read_to_string(f).unwrap();
            let at = m.find("X-RcptTo: ").unwrap() + "X-RcptTo: ".len();
            m[at..].lines().next().unwrap().trim().to_string()
        })
        .collect();
    recipients.sort();
    let before = recipients.len();
    recipients.dedup();
    assert_eq!(before, N, "every message arrives");
    assert_eq!(recipients.len(), N, "none twice");
}

async fn reset_is_off_without_mail(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "tom", &[]).await else {
        return;
    };
    let r = forgot(&app, json!({"email": "tom@example.com"})).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "not_found");
    let r = reset(&app, "x", "a brand new passphrase").await;
    assert_eq!(r.status(), 404);
    // Signup is closed by default.
    let r = app
        .post_json(
            "/signup",
            &json!({"email": "a@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 404);
}

async fn users_change_their_password_end_sessions_and_delete_the_account(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let una = with_email(&app, "una", "una@example.com").await;
    let t1 = app.login_ok("una").await;
    let t2 = app.login_ok("una").await;
    let a1 = t1["access_token"].as_str().unwrap();
    let get = |path: &'static str, token: String| {
        let app = &app;
        async move {
            app.client
                .get(app.url(path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let me: Value = get("/me", a1.to_string()).await.json().await.unwrap();
    assert_eq!(me["username"], "una");
    assert_eq!(me["email"], "una@example.com");
    assert!(me.get("password_hash").is_none());
    // Sessions: both listed; the other one ended by its owner.
    let list: Value = get("/me/sessions", a1.to_string())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 2);
    let sid2 = TestApp::claims(t2["access_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(list["current"], TestApp::claims(a1)["sid"]);
    let r = app
        .client
        .delete(app.url(&format!("/me/sessions/{sid2}")))
        .bearer_auth(a1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.refresh(t2["refresh_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    // Not another user's session.
    app.create_user("vic", &[]).await;
    let vic = app.login_ok("vic").await;
    let vic_sid = TestApp::claims(vic["access_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .client
        .delete(app.url(&format!("/me/sessions/{vic_sid}")))
        .bearer_auth(a1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        app.refresh(vic["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );

    // A password change: the current one is checked, the new one against the rules.
    let change = |current: &str, new: &str, token: &str| {
        let body = json!({"current_password": current, "new_password": new});
        let (app, token) = (&app, token.to_string());
        async move {
            app.client
                .post(app.url("/me/password"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let r = change("wrong password!", "a brand new passphrase", a1).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let r = change(PASSWORD, "short", a1).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    // Parallel changes with one current password: one wins.
    let racers = futures::future::join_all(
        (0..6).map(|i| change(PASSWORD, &format!("racing passphrase {i}"), a1)),
    )
    .await;
    let won: Vec<usize> = racers
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status() == 200)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        won.len(),
        1,
        "{:?}",
        racers.iter().map(|r| r.status()).collect::<Vec<_>>()
    );
    let winner = format!("racing passphrase {}", won[0]);
    assert_eq!(app.login("una", &winner).await.status(), 200);
    let r = app.login("una", &winner).await;
    let t1: Value = r.json().await.unwrap();
    let a1 = t1["access_token"].as_str().unwrap();
    let r = change(&winner, "a brand new passphrase", a1).await;
    assert_eq!(r.status(), 200);
    let fresh: Value = r.json().await.unwrap();
    // Every earlier session ended; the caller carries on in the new one.
    app.userinfo_becomes(a1, 401).await;
    assert_eq!(
        app.refresh(t1["refresh_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    let a3 = fresh["access_token"].as_str().unwrap().to_string();
    assert_eq!(app.userinfo(&a3).await.status(), 200);
    assert_eq!(app.login("una", PASSWORD).await.status(), 401);
    assert_eq!(
        app.login("una", "a brand new passphrase").await.status(),
        200
    );

    // Deleting the account erases its personal data and refuses its tokens.
    let r = app
        .client
        .delete(app.url("/me"))
        .bearer_auth(&a3)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    app.userinfo_becomes(&a3, 401).await;
    assert_eq!(
        app.login("una", "a brand new passphrase").await.status(),
        401
    );
    assert_eq!(
        app.login("una@example.com", "a brand new passphrase")
            .await
            .status(),
        401
    );
    let row = app.store.user_by_id(una.id).await.unwrap().unwrap();
    assert_ne!(row.username, "una");
    assert!(row.username.starts_with("deleted-"));
    assert_eq!(row.email, None);
    assert!(row.disabled);
    assert!(row.roles.is_empty());
    assert_ne!(row.password_hash, una.id.to_string());
    assert!(!row.password_hash.starts_with("$argon2"));
    assert!(app
        .store
        .sessions_of_user(una.id, 100)
        .await
        .unwrap()
        .is_empty());
    // The name and the address are free again.
    let again = with_email(&app, "una", "una@example.com").await;
    assert_ne!(again.id, una.id);
    // Without a token: 401.
    let r = app.client.delete(app.url("/me")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

async fn administrators_invite_and_invitees_set_their_password(b: Backend) {
    if !Smtp::available() {
        return;
    }
    let smtp = Smtp::start(free_port(), &maildir()).await;
    let Some(app) = app_with_mail(b, smtp.port).await else {
        return;
    };
    app.create_user("root", &["admin"]).await;
    let admin = app.login_ok("root").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let invite = |email: &str| {
        let body = json!({"email": email, "roles": ["ops"]});
        let (app, admin) = (&app, admin.clone());
        async move {
            app.admin(
                reqwest::Method::POST,
                "/admin/invitations",
                &admin,
                Some(body),
            )
            .await
        }
    };
    let r = invite("Ivy@Example.com").await;
    assert_eq!(r.status(), 201);
    let ivy: Value = r.json().await.unwrap();
    assert_eq!(ivy["username"], "ivy@example.com");
    assert_eq!(ivy["roles"], json!(["ops"]));
    assert_eq!(invite("ivy@example.com").await.status(), 409);
    let list: Value = app
        .admin(reqwest::Method::GET, "/admin/invitations", &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["user_id"], ivy["id"]);
    let message = smtp.next_message().await;
    assert!(message.contains("Subject: You are invited"), "{message}");
    let token = token_of(&message);
    // Nobody can log in to it before it is accepted.
    assert_eq!(app.login("ivy@example.com", PASSWORD).await.status(), 401);
    let accept = |token: &str, password: &str| {
        let body = json!({"token": token, "password": password});
        let app = &app;
        async move { app.post_json("/invitations/accept", &body).await }
    };
    assert_eq!(accept(&token, "short").await.status(), 400);
    // Six parallel accepts with six passwords: one wins, and its password is the one set.
    let passwords: Vec<String> = (0..6).map(|i| format!("{PASSWORD} {i}")).collect();
    let answers = futures::future::join_all(passwords.iter().map(|p| accept(&token, p))).await;
    let won: Vec<usize> = (0..6).filter(|&i| answers[i].status() == 204).collect();
    assert_eq!(won.len(), 1, "exactly one accept wins");
    assert!(answers
        .iter()
        .all(|r| matches!(r.status().as_u16(), 204 | 400)));
    let winner = &passwords[won[0]];
    assert_eq!(app.login("ivy@example.com", winner).await.status(), 200);
    let loser = &passwords[(won[0] + 1) % 6];
    assert_eq!(app.login("ivy@example.com", loser).await.status(), 401);
    // Its token is spent: the usual password cannot be set with it any more.
    assert_eq!(accept(&token, PASSWORD).await.status(), 400);
    assert_eq!(app.login("ivy@example.com", winner).await.status(), 200);
    app.auth
        .set_password(
            tessera::auth::UserRef::Name("ivy@example.com"),
            secrecy::SecretString::from(PASSWORD),
            &tessera::auth::Caller::default(),
        )
        .await
        .unwrap();
    let r = app.login("Ivy@example.com", PASSWORD).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(
        TestApp::claims(t["access_token"].as_str().unwrap())["roles"],
        json!(["ops"])
    );
    let row = app
        .store
        .user_by_username("ivy@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(row.email_verified);
    let list: Value = app
        .admin(reqwest::Method::GET, "/admin/invitations", &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!([]));
    // An accepted invitation cannot be withdrawn; a pending one can, and its link dies.
    let path = format!("/admin/invitations/{}", ivy["id"].as_str().unwrap());
    let r = app
        .admin(reqwest::Method::DELETE, &path, &admin, None)
        .await;
    assert_eq!(r.status(), 404);
    let r = invite("jay@example.com").await;
    let jay: Value = r.json().await.unwrap();
    let jay_token = token_of(&smtp.next_message().await);
    let path = format!("/admin/invitations/{}", jay["id"].as_str().unwrap());
    let r = app
        .admin(reqwest::Method::DELETE, &path, &admin, None)
        .await;
    assert_eq!(r.status(), 204);
    assert!(app
        .store
        .user_by_username("jay@example.com")
        .await
        .unwrap()
        .is_none());
    let r = accept(&jay_token, PASSWORD).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    // An invitation that expired unaccepted still holds its address: it stays listed, through
    // the upkeep's purge, until it is withdrawn; then the address can be invited again (it
    // used to vanish from the list while the address stayed taken: 409 for good).
    let r = invite("kim@example.com").await;
    let kim: Value = r.json().await.unwrap();
    let _ = smtp.next_message().await;
    app.exec_sql(
        "UPDATE account_tokens SET expires_at = 1 WHERE purpose = 'invite' AND used_at IS NULL"
            .into(),
    )
    .await;
    app.store
        .purge_expired(tessera::time::now_ms(), true)
        .await
        .unwrap();
    let list: Value = app
        .admin(reqwest::Method::GET, "/admin/invitations", &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["user_id"], kim["id"]);
    assert_eq!(list[0]["expires_at"], 1);
    assert_eq!(invite("kim@example.com").await.status(), 409);
    let path = format!("/admin/invitations/{}", kim["id"].as_str().unwrap());
    let r = app
        .admin(reqwest::Method::DELETE, &path, &admin, None)
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(invite("kim@example.com").await.status(), 201);
    let _ = smtp.next_message().await;
    let path = format!("/admin/invitations/{}", {
        let list: Value = app
            .admin(reqwest::Method::GET, "/admin/invitations", &admin, None)
            .await
            .json()
            .await
            .unwrap();
        list[0]["user_id"].as_str().unwrap().to_string()
    });
    let r = app
        .admin(reqwest::Method::DELETE, &path, &admin, None)
        .await;
    assert_eq!(r.status(), 204);
    // An invitee who sets a password by a reset instead has taken the account up: it is no
    // longer pending, and withdrawing it deletes nothing (it deleted the live account).
    let r = invite("lea@example.com").await;
    let lea: Value = r.json().await.unwrap();
    let _ = smtp.next_message().await;
    assert_eq!(
        forgot(&app, json!({"email": "lea@example.com"}))
            .await
            .status(),
        202
    );
    let reset_token = token_of(&smtp.next_message().await);
    assert_eq!(reset(&app, &reset_token, PASSWORD).await.status(), 204);
    let told = smtp.next_message().await;
    assert!(
        told.contains("Subject: Your password was changed"),
        "{told}"
    );
    let list: Value = app
        .admin(reqwest::Method::GET, "/admin/invitations", &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(!list.to_string().contains("lea@example.com"), "{list}");
    let path = format!("/admin/invitations/{}", lea["id"].as_str().unwrap());
    let r = app
        .admin(reqwest::Method::DELETE, &path, &admin, None)
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(app.login("lea@example.com", PASSWORD).await.status(), 200);
    // The CLI invites too (with the server's mail settings); the server's outbox sends it.
    let config = std::env::temp_dir().join(format!("tessera-mail-{}.toml", uuid::Uuid::now_v7()));
    std::fs::write(
        &config,
        format!(
            "[mail]\nsmtp_url = \"smtp://127.0.0.1:{}\"\n[accounts]\nlink_base = \"https://app.example/reset\"\n",
            smtp.port
        ),
    )
    .unwrap();
    let (url, master) = (app.db.url().to_string(), app.master_key.clone());
    let config_arg = config.to_str().unwrap().to_string();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        crate::cli::tessera(
            &url,
            &master,
            &[
                "--config",
                &config_arg,
                "user",
                "invite",
                "kai@example.com",
                "--role",
                "ops",
            ],
            None,
        )
    })
    .await
    .unwrap();
    let _ = std::fs::remove_file(&config);
    assert!(ok, "{out}");
    let m = smtp.next_message().await;
    assert!(m.contains("kai@example.com"), "{m}");
}

/// The message's text part (before the HTML alternative), and whether it has an HTML part.
fn parts(message: &str) -> (String, bool) {
    let html = message.contains("Content-Type: text/html");
    let text = message
        .split("Content-Type: text/html")
        .next()
        .unwrap_or_default()
        .to_string();
    (text, html)
}

async fn users_change_their_address_with_a_link_to_the_new_one(b: Backend) {
    if !Smtp::available() {
        return;
    }
    let smtp = Smtp::start(free_port(), &maildir()).await;
    let Some(app) = app_with_mail(b, smtp.port).await else {
        return;
    };
    let olga = with_email(&app, "olga", "olga@example.com").await;
    with_email(&app, "taken", "taken@example.com").await;
    let access = app.login_ok("olga").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let change = |email: &str| {
        let body = json!({ "email": email });
        let req = app
            .client
            .post(app.url("/me/email"))
            .bearer_auth(&access)
            .json(&body);
        async move { req.send().await.unwrap() }
    };
    // A reset link to the old address, asked for before the change.
    assert_eq!(
        forgot(&app, json!({"email": "olga@example.com"}))
            .await
            .status(),
        202
    );
    let reset_token = token_of(&smtp.next_message().await);

    // Bad input is said at once; no token needed for nothing.
    for bad in ["not an address", "olga@example.com", "OLGA@Example.com"] {
        let r = change(bad).await;
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    }
    let r = app
        .client
        .post(app.url("/me/email"))
        .json(&json!({"email": "x@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The new address gets a link; the account keeps its address until it is used.
    let r = change("Olga.New@Example.com").await;
    assert_eq!(r.status(), 202);
    let accepted = r.text().await.unwrap();
    let message = smtp.next_message().await;
    // Sent to the address's SMTP form (the domain in lower-case ASCII).
    assert!(message.contains("To: Olga.New@example.com"), "{message}");
    assert!(message.contains("Subject: Confirm your new email address"));
    let (text, html) = parts(&message);
    assert!(html, "a text and an HTML part: {message}");
    assert!(text.contains("Content-Type: text/plain"));
    let (purpose, token) = link_of(&text).unwrap();
    assert_eq!(purpose, "email_change");
    let row = app.store.user_by_id(olga.id).await.unwrap().unwrap();
    assert_eq!(row.email.as_deref(), Some("olga@example.com"));

    // Another account's address: the same answer, its owner is told, nothing changes.
    let r = change("TAKEN@example.com").await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.text().await.unwrap(), accepted);
    let note = smtp.next_message().await;
    assert!(note.contains("To: taken@example.com"), "{note}");
    assert!(note.contains("Someone tried to use your email address"));
    assert!(link_of(&note).is_none(), "no link in the note");

    // An account named by an address holds it too (it logs in as that address): no link,
    // the same answer, a note to the address.
    app.create_user("carol@example.com", &[]).await;
    let r = change("Carol@Example.com").await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.text().await.unwrap(), accepted);
    let note = smtp.next_message().await;
    assert!(note.contains("To: Carol@example.com"), "{note}");
    assert!(note.contains("Someone tried to use your email address"));
    assert!(link_of(&note).is_none());

    // Confirmed once, by one of parallel uses.
    let uses = (0..6).map(|_| {
        let app = &app;
        let token = token.clone();
        async move {
            app.post_json("/email/verify", &json!({ "token": token }))
                .await
                .status()
                .as_u16()
        }
    });
    let mut statuses = futures::future::join_all(uses).await;
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 400, 400, 400, 400, 400]);
    let row = app.store.user_by_id(olga.id).await.unwrap().unwrap();
    assert_eq!(row.email.as_deref(), Some("Olga.New@Example.com"));
    assert!(row.email_verified);
    // The old address is told, with the new one.
    let told = smtp.next_message().await;
    assert!(told.contains("To: olga@example.com"), "{told}");
    assert!(told.contains("Subject: Your email address was changed"));
    assert!(told.contains("Olga.New@Example.com"));
    // Logins by address follow; the old address's reset link is dead.
    assert_eq!(
        app.login("olga.new@example.com", PASSWORD).await.status(),
        200
    );
    assert_eq!(app.login("olga@example.com", PASSWORD).await.status(), 401);
    let r = reset(&app, &reset_token, "a brand new passphrase").await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        smtp.count(),
        5,
        "reset, change link, two notes, changed notice"
    );
}

async fn mail_requests_are_limited_per_client_address(b: Backend) {
    if !Smtp::available() {
        return;
    }
    let smtp = Smtp::start(free_port(), &maildir()).await;
    let port = smtp.port;
    let Some(app) = TestApp::spawn_with(b, move |f| {
        f.merge(Serialized::default(
            "mail.smtp_url",
            format!("smtp://127.0.0.1:{port}"),
        ))
        .merge(Serialized::default("accounts.signup", "open"))
        .merge(Serialized::default("accounts.ip_requests", 3))
        .merge(Serialized::default("accounts.ip_window", "1h"))
    })
    .await
    else {
        return;
    };
    for i in 0..3 {
        let r = forgot(&app, json!({ "email": format!("nobody{i}@example.com") })).await;
        assert_eq!(r.status(), 202);
    }
    // The fourth from this address, whatever it asks, and a signup too: 429 before any work.
    let r = forgot(&app, json!({"email": "nobody3@example.com"})).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3000..=3600).contains(&retry), "{retry}");
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "slow_down");
    let r = app
        .post_json(
            "/signup",
            &json!({"email": "new@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 429);
    let r = app
        .post_json("/email/verify/resend", &json!({"email": "new@example.com"}))
        .await;
    assert_eq!(r.status(), 429);
    assert!(app
        .store
        .user_by_username("new@example.com")
        .await
        .unwrap()
        .is_none());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.count(), 0);
}

async fn the_hosted_page_serves_emailed_links(b: Backend) {
    use crate::oidc::{hidden_fields, Browser, Issuer};
    if !Smtp::available() {
        return;
    }
    let smtp = Smtp::start(free_port(), &maildir()).await;
    let port = smtp.port;
    // No link_base: links point at the hosted page.
    let Some(app) = TestApp::spawn_with(b, move |f| {
        f.merge(Serialized::default(
            "mail.smtp_url",
            format!("smtp://127.0.0.1:{port}"),
        ))
    })
    .await
    else {
        return;
    };
    let user = with_email(&app, "petra", "petra@example.com").await;
    let old = app.login_ok("petra").await;
    assert_eq!(
        forgot(&app, json!({"username": "petra"})).await.status(),
        202
    );
    let message = smtp.next_message().await;
    let issuer = app.auth_issuer();
    let prefix = format!("{issuer}/account/link?");
    let at = message.find(&prefix).expect(&message) + issuer.len();
    let path: String = message[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    assert!(
        path.starts_with("/account/link?purpose=password_reset&token="),
        "{path}"
    );

    let mut browser = Browser::new(&app);
    // Opening the link uses nothing (mail scanners open links too).
    for _ in 0..2 {
        let r = browser.get(&path).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert_eq!(r.headers()["referrer-policy"], "same-origin");
    }
    let page = browser.get(&path).await.text().await.unwrap();
    assert!(page.contains("autocomplete=\"new-password\""), "{page}");
    // The page's URL holds the token: its stylesheet is fetched without a Referer (OWASP
    // Forgot Password; the page keeps `same-origin` so that its form sends a true Origin).
    assert!(
        page.contains("href=\"/ui/style.css\" referrerpolicy=\"no-referrer\""),
        "{page}"
    );
    assert!(!page.contains("<script"), "{page}");
    let mut fields = hidden_fields(&page);
    // A form without its CSRF token is refused, and the token still works after.
    let no_csrf: Vec<_> = fields
        .iter()
        .filter(|(k, _)| k != "csrf")
        .cloned()
        .collect();
    assert_eq!(browser.post("/account/link", &no_csrf).await.status(), 403);
    // No password, then one the rules refuse: the form again, with the reason, and the
    // token still works (an empty password was answered "no longer works").
    let r = browser.post("/account/link", &fields).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("name=\"password\""));
    let mut weak = fields.clone();
    weak.push(("password".into(), "short".into()));
    let r = browser.post("/account/link", &weak).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("name=\"password\""));
    fields.push(("password".into(), "a brand new passphrase".into()));
    let r = browser.post("/account/link", &fields).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.text().await.unwrap().contains("Your password is set"));
    // Used: the new password works, the old session ended, the link is spent.
    assert_eq!(
        app.login("petra", "a brand new passphrase").await.status(),
        200
    );
    app.assert_pair_refused(&old).await;
    let r = browser.post("/account/link", &fields).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("no longer works"));
    // A link that is not one of Tessera's.
    assert_eq!(
        browser
            .get("/account/link?purpose=other&token=x")
            .await
            .status(),
        400
    );
    assert_eq!(browser.get("/account/link").await.status(), 400);
    let row = app.store.user_by_id(user.id).await.unwrap().unwrap();
    assert!(
        row.tokens_not_before > 0,
        "the reset cut earlier tokens off"
    );
}

/// The recipients of the delivered messages, sorted.
fn recipients(smtp: &Smtp) -> Vec<String> {
    let mut r: Vec<String> = smtp
        .files()
        .iter()
        .map(|f| {
            let m = std::fs::read_to_string(f).unwrap();
            let at = m.find("X-RcptTo: ").unwrap() + "X-RcptTo: ".len();
            m[at..].lines().next().unwrap().trim().to_string()
        })
        .collect();
    r.sort();
    r
}

async fn a_kill_between_the_commit_and_the_send_loses_nothing(b: Backend) {
    use crate::cli::Served;
    if !Smtp::available() {
        return;
    }
    let port = free_port();
    let Some(mut app) = app_with_mail(b, port).await else {
        return;
    };
    const N: usize = 5;
    for i in 0..N {
        with_email(&app, &format!("k{i}"), &format!("k{i}@example.com")).await;
    }
    // Only the child processes below send mail.
    app.stop().await;
    let smtp_url = format!("smtp://127.0.0.1:{port}");
    let env = [
        ("TESSERA__MAIL__SMTP_URL", smtp_url.as_str()),
        ("TESSERA__MAIL__FROM", "no-reply@example.com"),
        ("TESSERA__MAIL__RETRY_BASE", "200ms"),
        ("TESSERA__ACCOUNTS__LINK_BASE", "https://app.example/reset"),
        ("TESSERA__ACCOUNTS__IP_REQUESTS", "0"),
    ];
    let mut first = Served::start_with(app.db.url(), &app.master_key, &env).await;
    let http = reqwest::Client::new();
    for i in 0..N {
        let r = http
            .post(format!("{}/password/forgot", first.base))
            .json(&json!({ "email": format!("k{i}@example.com") }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // SMTP is down: the messages are committed and not sent. SIGKILL, no shutdown.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert_eq!(app.store.mail_pending().await.unwrap(), N as i64);

    let smtp = Smtp::start(port, &maildir()).await;
    let mut second = Served::start_with(app.db.url(), &app.master_key, &env).await;
    // A message claimed at the moment of the kill waits out its lease (60 s) first.
    for _ in 0..900 {
        if app.store.mail_pending().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.store.mail_pending().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = recipients(&smtp);
    let want: Vec<String> = (0..N).map(|i| format!("k{i}@example.com")).collect();
    assert_eq!(got, want, "each message once");
    second.child.kill().unwrap();
    second.child.wait().unwrap();
}

/// `PATCH /me` with `body`, as the holder of `access`.
async fn patch_me(app: &TestApp, access: &str, body: &Value) -> reqwest::Response {
    app.client
        .patch(app.url("/me"))
        .bearer_auth(access)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// An address too long to be a name (over 64 characters) signs up, is invited and is moved to
/// under a generated name (it was refused with "username must be 1 to 64 characters", or the
/// name kept the old address); an administrator's address change moves an address-shaped
/// name as the user's own does (the old name kept the freed address, so its next owner's
/// signup created nothing and its note went to the account that had moved away).
async fn long_addresses_and_administrators_changes_keep_names_their_own(b: Backend) {
    if !Smtp::available() {
        return;
    }
    let smtp = Smtp::start(free_port(), &maildir()).await;
    let port = smtp.port;
    let Some(app) = TestApp::spawn_with(b, move |f| {
        f.merge(Serialized::default(
            "mail.smtp_url",
            format!("smtp://127.0.0.1:{port}"),
        ))
        .merge(Serialized::default("accounts.signup", "open"))
        .merge(Serialized::default("accounts.ip_requests", 0))
    })
    .await
    else {
        return;
    };
    let long = "firstname.lastname.department1630573@subdomain.longcompanyname-example.com";
    assert!(long.len() > 64);
    let r = app
        .post_json("/signup", &json!({"email": long, "password": PASSWORD}))
        .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let row = app
        .store
        .user_for_login(None, &long.to_lowercase())
        .await
        .unwrap()
        .unwrap();
    assert!(row.username.starts_with("user-"), "{}", row.username);
    let _ = smtp.next_message().await;
    // An administrator moves an address-named account: the name follows.
    app.create_user("root", &["admin"]).await;
    let admin = app.login_ok("root").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let fay = with_email(&app, "fay@example.com", "fay@example.com").await;
    let path = format!("/admin/users/{}/email", fay.id);
    let put = |email: Value| {
        let (app, admin, path) = (&app, admin.clone(), path.clone());
        async move {
            app.admin(
                reqwest::Method::PUT,
                &path,
                &admin,
                Some(json!({"email": email, "verified": true})),
            )
            .await
        }
    };
    let r = put(json!("fay.moved@example.com")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["username"],
        "fay.moved@example.com"
    );
    assert_eq!(
        app.login("fay.moved@example.com", PASSWORD).await.status(),
        200
    );
    // The freed address signs up as a new account, told by a link, not a note to fay.
    let r = app
        .post_json(
            "/signup",
            &json!({"email": "fay@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let m = smtp.next_message().await;
    assert!(m.contains("To: fay@example.com"), "{m}");
    assert!(m.contains("Subject: Verify your email address"), "{m}");
    // To an address too long to be a name: a generated one; the address still logs in.
    let r = put(json!(long.replace("firstname", "other"))).await;
    assert_eq!(r.status(), 200);
    let name = r.json::<Value>().await.unwrap()["username"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(name.starts_with("user-"), "{name}");
    assert_eq!(
        app.login(&long.replace("firstname", "other"), PASSWORD)
            .await
            .status(),
        200
    );
    // Cleared, an address-shaped name would name nobody's address: a generated one too.
    let gus = with_email(&app, "gus@example.com", "gus@example.com").await;
    let r = app
        .admin(
            reqwest::Method::PUT,
            &format!("/admin/users/{}/email", gus.id),
            &admin,
            Some(json!({"email": null})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let name = r.json::<Value>().await.unwrap()["username"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(name.starts_with("user-"), "{name}");
    // An account named by an address it does not hold: that address is its name's, so no
    // other account may take it (logins by it would go there); given an address of its own,
    // the name follows it.
    let hal = app.create_user("hal@example.com", &[]).await;
    assert_eq!(hal.username, "hal@example.com");
    let r = put(json!("hal@example.com")).await;
    assert_eq!(r.status(), 409);
    assert_eq!(app.login("hal@example.com", PASSWORD).await.status(), 200);
    // In another spelling of its domain too (the compared form is the same address).
    let ida = app.create_user("ida@bücher.example", &[]).await;
    let r = put(json!("IDA@xn--bcher-kva.example")).await;
    assert_eq!(r.status(), 409);
    let row = app.store.user_by_id(fay.id).await.unwrap().unwrap();
    assert_eq!(row.email, Some(long.replace("firstname", "other")));
    assert!(row.username.starts_with("user-"), "{}", row.username);
    let row = app.store.user_by_id(ida.id).await.unwrap().unwrap();
    assert_eq!(row.username, "ida@bücher.example");
    assert_eq!(row.email, None);
    // A signup in that other spelling is a signup with ida's address: no second account
    // takes it (logins by `ida@bücher.example` would go there); the address is told, as any
    // taken address is, and gets no verification link.
    let r = app
        .post_json(
            "/signup",
            &json!({"email": "ida@xn--bcher-kva.example", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert!(app
        .store
        .user_for_login(None, "ida@xn--bcher-kva.example")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        app.login("ida@bücher.example", PASSWORD).await.status(),
        200
    );
    let m = smtp.next_message().await;
    assert!(m.contains("Someone tried to sign up"), "{m}");
    // A body without `email` (a misspelt member) clears nothing: only `null` does. A tab or
    // a line break around the address is refused, not trimmed away.
    for body in [
        json!({}),
        json!({"emial": null, "verified": true}),
        json!({"email": "fay.new@example.com\n"}),
        json!({"email": "\tfay.new@example.com"}),
    ] {
        let r = app
            .admin(reqwest::Method::PUT, &path, &admin, Some(body.clone()))
            .await;
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], "invalid_request");
        assert_ne!(
            e["error_description"], "The request is missing a required parameter or is malformed.",
            "{body}: the answer names its rule"
        );
    }
    let row = app.store.user_by_id(fay.id).await.unwrap().unwrap();
    assert_eq!(row.email, Some(long.replace("firstname", "other")));
    let r = app
        .admin(
            reqwest::Method::PUT,
            &format!("/admin/users/{}/email", hal.id),
            &admin,
            Some(json!({"email": "hal.other@example.com"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["username"],
        "hal.other@example.com"
    );
    // An invitation to a long address: a generated name too.
    let r = app
        .admin(
            reqwest::Method::POST,
            "/admin/invitations",
            &admin,
            Some(json!({"email": long.replace("firstname", "invited")})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let name = r.json::<Value>().await.unwrap()["username"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(name.starts_with("user-"), "{name}");
}

async fn address_shaped_names_follow_their_address_and_users_rename_themselves(b: Backend) {
    if !Smtp::available() {
        return;
    }
    let smtp = Smtp::start(free_port(), &maildir()).await;
    let Some(app) = app_with_mail(b, smtp.port).await else {
        return;
    };
    // Named by her address, as a signup without a chosen name is.
    let dora = with_email(&app, "dora@example.com", "dora@example.com").await;
    let access = app.login_ok("dora@example.com").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .client
        .post(app.url("/me/email"))
        .bearer_auth(&access)
        .json(&json!({"email": "dora.new@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let token = token_of(&smtp.next_message().await);
    let r = app
        .post_json("/email/verify", &json!({ "token": token }))
        .await;
    assert_eq!(r.status(), 204);
    let told = smtp.next_message().await;
    assert!(told.contains("To: dora@example.com"), "{told}");
    assert!(told.contains("Subject: Your email address was changed"));
    // The name followed the address: the old address names no account any more.
    let row = app.store.user_by_id(dora.id).await.unwrap().unwrap();
    assert_eq!(row.username, "dora.new@example.com");
    assert_eq!(row.email.as_deref(), Some("dora.new@example.com"));
    assert_eq!(
        app.login("dora.new@example.com", PASSWORD).await.status(),
        200
    );
    assert_eq!(app.login("dora@example.com", PASSWORD).await.status(), 401);
    // A reset asked with the old address sends nothing (it went to the new one before).
    let before = smtp.count();
    assert_eq!(
        forgot(&app, json!({"email": "dora@example.com"}))
            .await
            .status(),
        202
    );
    // The old address is free: another account can take it (a link, not an "in use" note).
    with_email(&app, "erin", "erin@example.com").await;
    let erin = app.login_ok("erin").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .client
        .post(app.url("/me/email"))
        .bearer_auth(&erin)
        .json(&json!({"email": "dora@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let m = smtp.next_message().await;
    assert!(m.contains("To: dora@example.com"), "{m}");
    assert!(m.contains("Subject: Confirm your new email address"), "{m}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.count(), before + 1, "no reset mail to the old address");

    // Renaming oneself: the new name logs in, the old one does not, `sub` stays.
    let access = app.login_ok("dora.new@example.com").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = patch_me(&app, &access, &json!({"username": "Dora"})).await;
    assert_eq!(r.status(), 200);
    let view = r.json::<Value>().await.unwrap();
    assert_eq!(view["username"], "dora");
    assert_eq!(view["id"], dora.id.to_string());
    assert_eq!(app.login("dora", PASSWORD).await.status(), 200);
    let row = app.store.user_by_id(dora.id).await.unwrap().unwrap();
    assert_eq!(row.username, "dora");
    // Back to her own address as a name: allowed; another address is not.
    let r = patch_me(&app, &access, &json!({"username": "Dora.New@Example.com"})).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = patch_me(&app, &access, &json!({"username": "erin@example.com"})).await;
    assert_eq!(r.status(), 400);
    let body = r.json::<Value>().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    // The rule is named.
    assert_eq!(
        body["error_description"],
        "a username with @ must be the account's own email address"
    );
    // Taken, looking like a taken one, refused by the rules, or not a profile field.
    app.create_user("root", &[]).await;
    let r = patch_me(&app, &access, &json!({"username": "ERIN"})).await;
    assert_eq!(r.status(), 409);
    let r = patch_me(&app, &access, &json!({"username": "r00t"})).await;
    assert_eq!(r.status(), 409);
    let body = r.json::<Value>().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("confusable"),
        "{body}"
    );
    for bad in [
        json!({"username": "al ice"}),
        json!({"username": ""}),
        json!({"username": "x", "roles": ["admin"]}),
        json!({"username": 7}),
    ] {
        let r = patch_me(&app, &access, &bad).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    let row = app.store.user_by_id(dora.id).await.unwrap().unwrap();
    assert_eq!(row.username, "dora.new@example.com");
    assert_eq!(row.roles, Vec::<String>::new());
    // Without a token, nothing.
    let r = app
        .client
        .patch(app.url("/me"))
        .json(&json!({"username": "nobody"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The trail names the renames (one with the address, two by hand).
    let q = tessera::store::AuditQuery {
        event: Some("user.renamed".into()),
        user_id: Some(dora.id),
        limit: 10,
        before: i64::MAX,
        ..Default::default()
    };
    crate::helpers::eventually(10, "three renames audited", || async {
        app.store.audit_events(&q).await.unwrap().len() == 3
    })
    .await;
}

async fn a_reset_tells_the_address_in_its_own_transaction(b: Backend) {
    if !Smtp::available() {
        return;
    }
    let mut smtp = Smtp::start(free_port(), &maildir()).await;
    let Some(app) = app_with_mail(b, smtp.port).await else {
        return;
    };
    with_email(&app, "fred", "fred@example.com").await;
    assert_eq!(
        forgot(&app, json!({"username": "fred"})).await.status(),
        202
    );
    let token = token_of(&smtp.next_message().await);
    // With SMTP down, the reset's notice is stored by the time the answer comes.
    smtp.stop();
    let pending = app.store.mail_pending().await.unwrap();
    let r = reset(&app, &token, "a brand new passphrase").await;
    assert_eq!(r.status(), 204);
    assert_eq!(app.store.mail_pending().await.unwrap(), pending + 1);
    // A second use of the token changes nothing and queues nothing.
    let r = reset(&app, &token, "another new passphrase").await;
    assert_eq!(r.status(), 400);
    assert_eq!(app.store.mail_pending().await.unwrap(), pending + 1);
    assert_eq!(
        app.login("fred", "a brand new passphrase").await.status(),
        200
    );
    // SMTP back: the notice arrives.
    let smtp = Smtp::start(smtp.port, &maildir()).await;
    let m = smtp.next_message().await;
    assert!(m.contains("To: fred@example.com"), "{m}");
    assert!(m.contains("Subject: Your password was changed"), "{m}");
}

/// A fresh access token of `name`.
async fn access_of(app: &TestApp, name: &str) -> String {
    app.login_ok(name).await["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn renames_race_address_changes_signups_and_deletion_safely(b: Backend) {
    if !Smtp::available() {
        return;
    }
    let smtp = Smtp::start(free_port(), &maildir()).await;
    let port = smtp.port;
    let Some(app) = TestApp::spawn_with(b, move |f| {
        f.merge(Serialized::default(
            "mail.smtp_url",
            format!("smtp://127.0.0.1:{port}"),
        ))
        .merge(Serialized::default(
            "accounts.link_base",
            "https://app.example/reset",
        ))
        .merge(Serialized::default("accounts.signup", "open"))
        .merge(Serialized::default("accounts.ip_requests", 0))
    })
    .await
    else {
        return;
    };
    // An address-change confirmation racing a rename to the old address: whichever wins, a
    // name with an @ is the account's own address afterwards.
    for i in 0..4 {
        let (name, old) = (format!("kk{i}"), format!("k{i}@example.com"));
        let user = with_email(&app, &name, &old).await;
        let access = access_of(&app, &name).await;
        let r = app
            .client
            .post(app.url("/me/email"))
            .bearer_auth(&access)
            .json(&json!({ "email": format!("k{i}new@example.com") }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let token = token_of(&smtp.next_message().await);
        let (verify_body, rename_body) = (json!({ "token": token }), json!({ "username": old }));
        let (confirm, rename) = tokio::join!(
            app.post_json("/email/verify", &verify_body),
            patch_me(&app, &access, &rename_body)
        );
        assert_eq!(confirm.status(), 204);
        assert!(
            [200, 400].contains(&rename.status().as_u16()),
            "{}",
            rename.status()
        );
        let row = app.store.user_by_id(user.id).await.unwrap().unwrap();
        assert_eq!(row.email.as_deref(), Some(&*format!("k{i}new@example.com")));
        assert!(
            !row.username.contains('@') || row.username == format!("k{i}new@example.com"),
            "{} kept {} with {:?}",
            name,
            row.username,
            row.email
        );
        let _told = smtp.next_message().await;
    }
    // A rename racing the account's deletion: the erased account keeps no chosen name.
    for i in 0..4 {
        let name = format!("rd{i}");
        let user = app.create_user(&name, &[]).await;
        let access = access_of(&app, &name).await;
        let delete = app
            .client
            .delete(app.url("/me"))
            .bearer_auth(&access)
            .send();
        let body = json!({ "username": format!("{name}new") });
        let (renamed, deleted) = tokio::join!(patch_me(&app, &access, &body), delete);
        assert_eq!(deleted.unwrap().status(), 204);
        assert!([200, 401, 404].contains(&renamed.status().as_u16()));
        let row = app.store.user_by_id(user.id).await.unwrap().unwrap();
        assert!(row.username.starts_with("deleted-"), "{}", row.username);
    }
    // No one takes an erased account's name ahead of it, so deletion cannot be blocked.
    let victim = app.create_user("victim", &[]).await;
    let mallory = access_of(&app, &{
        app.create_user("mallory", &[]).await;
        "mallory".to_string()
    })
    .await;
    let tomb = format!("deleted-{}", victim.id.simple());
    let r = patch_me(&app, &mallory, &json!({ "username": tomb })).await;
    assert_eq!(r.status(), 400);
    let r = app
        .client
        .delete(app.url("/me"))
        .bearer_auth(access_of(&app, "victim").await)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Marks that hide under their letter make a look-alike: refused (UTS #39 §5.4).
    app.create_user("admin", &[]).await;
    for hidden in ["admi\u{0307}n", "adm\u{0131}\u{0307}n"] {
        let r = patch_me(&app, &mallory, &json!({ "username": hidden })).await;
        assert_eq!(r.status(), 400, "{hidden:?}");
    }
    // A new address whose default name looks like another account's name: the account is
    // made under a generated name, and the address is verified as any other.
    app.create_user("ned@example.com", &[]).await;
    let r = app
        .post_json(
            "/signup",
            &json!({"email": "ned@exarnple.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let m = smtp.next_message().await;
    assert!(m.contains("To: ned@exarnple.com"), "{m}");
    let ned = app
        .store
        .user_for_login(None, "ned@exarnple.com")
        .await
        .unwrap()
        .unwrap();
    assert!(ned.username.starts_with("user-"), "{}", ned.username);
    // Parallel signups choosing one name (or look-alikes of it): one account. The others get
    // the same 202: a 409 there would say that their addresses are not registered.
    let signups = ["yy0q", "yyoq", "YY0Q", "ｙｙｏｑ"].into_iter().enumerate().map(|(i, name)| {
        let body = json!({"email": format!("y{i}@example.com"), "password": PASSWORD, "username": name});
        let app = &app;
        async move { app.post_json("/signup", &body).await.status().as_u16() }
    });
    let statuses = futures::future::join_all(signups).await;
    assert_eq!(statuses, [202, 202, 202, 202]);
    let mut made = 0;
    for i in 0..4 {
        let key = format!("y{i}@example.com");
        made += usize::from(
            app.store
                .user_for_login(None, &key)
                .await
                .unwrap()
                .is_some(),
        );
    }
    assert_eq!(made, 1, "one of the four signups made its account");
}

/// The outbox refusing a row (here a trigger; a full disk in life). A signup and an invitation
/// each left an account with no link behind: the signup's could log in unverified and its
/// retry only got the "someone signed up with your address" note; the invitee's was neither
/// listed nor withdrawable, and its address was taken for good. Now the account and its link
/// are one write, and what the database does is 503 (invariant 6): a full disk here, a
/// trigger's `RAISE` on SQLite.
async fn a_mail_that_cannot_be_queued_leaves_no_account(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("mail.smtp_url", "smtp://127.0.0.1:9"))
            .merge(Serialized::default(
                "accounts.link_base",
                "https://app.example/reset",
            ))
            .merge(Serialized::default("accounts.signup", "open"))
    })
    .await
    else {
        return;
    };
    app.create_user("root", &["admin"]).await;
    let admin = app.login_ok("root").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let pg = app.db.url().starts_with("postgres");
    app.exec_sql(if pg {
        "CREATE FUNCTION no_mail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         RAISE EXCEPTION 'could not extend file' USING ERRCODE = '53100'; END $$; \
         CREATE TRIGGER no_mail BEFORE INSERT ON mail_outbox FOR EACH ROW \
         EXECUTE FUNCTION no_mail()"
            .into()
    } else {
        "CREATE TRIGGER no_mail BEFORE INSERT ON mail_outbox \
         BEGIN SELECT RAISE(ABORT, 'no mail'); END"
            .into()
    })
    .await;
    let signup = || async {
        app.post_json(
            "/signup",
            &json!({"email": "nina@example.com", "password": PASSWORD}),
        )
        .await
    };
    let invite = || async {
        let body = json!({"email": "ivy@example.com", "roles": ["ops"]});
        app.admin(
            reqwest::Method::POST,
            "/admin/invitations",
            &admin,
            Some(body),
        )
        .await
    };
    for r in [signup().await, invite().await] {
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "temporarily_unavailable"
        );
    }
    let accounts = || {
        app.scalar_i64(
            "SELECT COUNT(*) FROM users WHERE email_key IN ('nina@example.com', 'ivy@example.com') AND $1 = $1",
            "",
        )
    };
    assert_eq!(accounts().await, 0, "an account without its link");
    assert_eq!(app.login("nina@example.com", PASSWORD).await.status(), 401);
    // The outbox takes rows again: both go through, each with its link queued.
    app.exec_sql(if pg {
        "DROP TRIGGER no_mail ON mail_outbox".into()
    } else {
        "DROP TRIGGER no_mail".into()
    })
    .await;
    assert_eq!(signup().await.status(), 202);
    assert_eq!(invite().await.status(), 201);
    assert_eq!(accounts().await, 2);
    let tokens = app
        .scalar_i64(
            "SELECT COUNT(*) FROM account_tokens WHERE purpose <> $1",
            "password_reset",
        )
        .await;
    let mails = app
        .scalar_i64("SELECT COUNT(*) FROM mail_outbox WHERE recipient <> $1", "")
        .await;
    assert_eq!((tokens, mails), (2, 2));
}

/// A message whose last attempt fails is dead, and its `mail.dead` audit event says why (it
/// carried no reason, so an operator could not tell a refusal from an outage).
async fn a_dead_mail_is_audited_with_its_reason(b: Backend) {
    // Nothing listens on the SMTP port, and one attempt is all a message gets.
    let port = free_port();
    let Some(app) = TestApp::spawn_with(b, move |f| {
        f.merge(Serialized::default(
            "mail.smtp_url",
            format!("smtp://127.0.0.1:{port}"),
        ))
        .merge(Serialized::default("mail.max_attempts", 1))
        .merge(Serialized::default("mail.retry_base", "200ms"))
        .merge(Serialized::default(
            "accounts.link_base",
            "https://app.example/reset",
        ))
    })
    .await
    else {
        return;
    };
    with_email(&app, "ola", "ola@example.com").await;
    assert_eq!(
        forgot(&app, json!({"email": "ola@example.com"}))
            .await
            .status(),
        202
    );
    crate::helpers::eventually(15, "mail.dead audited with its reason", || async {
        app.scalar_i64(
            "SELECT COUNT(*) FROM audit_events WHERE event = 'mail.dead' AND reason = $1",
            "attempts_exhausted",
        )
        .await
            == 1
    })
    .await;
    assert_eq!(app.store.mail_pending().await.unwrap(), 0);
}
