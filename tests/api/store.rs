//! Each store capability on both backends, called directly: no domain, no server. The same
//! queries run on Postgres and SQLite (`backend::on_backend!`); these pin what each returns
//! and what it leaves stored.

use std::sync::Arc;

use tessera::store::{
    AuditEvent, AuditQuery, Duplicate, FeedStart, KeyRow, MfaChallenge, MfaFactor, NewUser,
    Reserve, Reserved, RevokedToken, Rotation, RotationAttempt, Session, SsoSession, Store,
    StoreError, User,
};
use tessera::time::now_ms;
use uuid::Uuid;

use crate::helpers::{Backend, Db};
use crate::on_both;

on_both!(
    users_are_created_once_and_read_back,
    a_session_is_fenced_rotated_and_revoked,
    an_sso_session_opens_under_its_fence_and_challenge,
    the_denylist_and_token_status_agree,
    the_throttle_reserves_counts_and_clears,
    keys_are_stored_and_rotated,
    the_feed_lists_what_was_revoked,
    audit_rows_are_stored_and_paged,
);

/// A migrated store on a fresh database of `backend`.
async fn store(backend: Backend) -> Option<(Arc<dyn Store>, Db)> {
    let db = Db::create(backend).await?;
    let settings = tessera::config::DatabaseSettings {
        url: db.url().to_string().into(),
        ..tessera::config::Settings::defaults().unwrap().database
    };
    let store = tessera::store::connect(&settings).await.unwrap();
    store.migrate().await.unwrap();
    Some((store, db))
}

/// A migrated store holding `alice` and one live session of hers, created at `now`.
async fn with_a_session(backend: Backend) -> Option<(Arc<dyn Store>, Db, User, Session, i64)> {
    let (s, db) = store(backend).await?;
    let alice = s.create_user(new_user("alice")).await.unwrap();
    let now = now_ms();
    let session = session_of(alice.id, now);
    let subject = s
        .create_session(&session, alice.tokens_not_before, None)
        .await;
    assert!(
        subject.unwrap().is_some(),
        "the fence holds for a fresh user"
    );
    Some((s, db, alice, session, now))
}

fn new_user(name: &str) -> NewUser {
    NewUser {
        id: Uuid::now_v7(),
        username: name.into(),
        skeleton: Some(name.into()),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        roles: vec!["reader".into()],
        claims: serde_json::Map::new(),
        disabled: false,
        now: now_ms(),
        email: None,
        email_key: None,
        email_verified: false,
    }
}

fn session_of(user_id: Uuid, now: i64) -> Session {
    Session {
        id: Uuid::now_v7(),
        user_id,
        generation: 0,
        created_at: now,
        last_refreshed_at: now,
        idle_expires_at: now + 60_000,
        absolute_expires_at: now + 120_000,
        revoked_at: None,
        revoked_reason: None,
        user_agent: None,
        ip: None,
        client_id: "tessera".into(),
        scope: None,
        resource: None,
        sso_session_id: None,
        amr: None,
    }
}

async fn users_are_created_once_and_read_back(b: Backend) {
    let Some((s, _db)) = store(b).await else {
        return;
    };
    let alice = s.create_user(new_user("alice")).await.unwrap();
    let read = s.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(
        (read.id, read.roles.clone()),
        (alice.id, vec!["reader".to_string()])
    );
    assert_eq!(
        s.user_by_id(alice.id).await.unwrap().unwrap().username,
        "alice"
    );
    let again = s.create_user(new_user("alice")).await.unwrap_err();
    assert!(
        matches!(again, StoreError::Duplicate(Duplicate::Username)),
        "{again:?}"
    );
    let mut lookalike = new_user("alice2");
    lookalike.skeleton = Some("alice".into());
    let clash = s.create_user(lookalike).await.unwrap_err();
    assert!(
        matches!(clash, StoreError::Duplicate(Duplicate::UsernameSkeleton)),
        "{clash:?}"
    );
    assert!(s.user_by_username("bob").await.unwrap().is_none());
}

async fn a_session_is_fenced_rotated_and_revoked(b: Backend) {
    let Some((s, _db)) = store(b).await else {
        return;
    };
    let alice = s.create_user(new_user("alice")).await.unwrap();
    let now = now_ms();
    // The fence is the cut-off read with the credential: a stale one creates nothing.
    let stale = session_of(alice.id, now);
    let refused = s
        .create_session(&stale, alice.tokens_not_before - 1, None)
        .await
        .unwrap();
    assert!(refused.is_none());
    assert!(s.session(stale.id).await.unwrap().is_none());
    let live = session_of(alice.id, now);
    let subject = s
        .create_session(&live, alice.tokens_not_before, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(subject.roles, vec!["reader"]);
    let attempt = |generation| RotationAttempt {
        session_id: live.id,
        generation,
        client_id: "tessera",
        now: now + 1,
        idle_expires_at: now + 90_000,
        grace_ms: 0,
    };
    match s.rotate_session(&attempt(0)).await.unwrap() {
        Rotation::Rotated(next, _) => assert_eq!(next.generation, 1),
        other => panic!("{other:?}"),
    }
    // Generation 0 again, with no grace: reuse, and the session is revoked (invariant 1).
    assert!(matches!(
        s.rotate_session(&attempt(0)).await.unwrap(),
        Rotation::ReuseDetected
    ));
    let stored = s.session(live.id).await.unwrap().unwrap();
    assert!(stored.revoked_at.is_some());
    assert!(!s.revoke_session(live.id, "logout", now + 2).await.unwrap());
}

fn sso_of(user_id: Uuid, now: i64) -> SsoSession {
    SsoSession {
        id: Uuid::now_v7(),
        user_id,
        token_hash: Uuid::now_v7().to_string(),
        auth_time: now,
        amr: "pwd".into(),
        created_at: now,
        last_seen_at: now,
        idle_expires_at: now + 60_000,
        absolute_expires_at: now + 120_000,
        revoked_at: None,
        revoked_reason: None,
        ip: None,
        user_agent: None,
    }
}

/// An SSO session is opened (or signed in again) only while its user is enabled with the
/// cut-off read with the credential, and after a second step only while the login's
/// challenge is stored: a password change, disable or factor change in between opens nothing.
async fn an_sso_session_opens_under_its_fence_and_challenge(b: Backend) {
    let Some((s, _db)) = store(b).await else {
        return;
    };
    let alice = s.create_user(new_user("alice")).await.unwrap();
    let (now, fence) = (now_ms(), alice.tokens_not_before);
    let stale = sso_of(alice.id, now);
    assert!(!s.create_sso_session(&stale, fence - 1, None).await.unwrap());
    assert!(s.sso_session(stale.id).await.unwrap().is_none());
    let mut live = sso_of(alice.id, now);
    assert!(s.create_sso_session(&live, fence, None).await.unwrap());
    assert!(s.sso_session(live.id).await.unwrap().is_some());
    // Signed in again: under the same fence only.
    live.token_hash = "another token".into();
    assert!(!s
        .reauthenticate_sso_session(&live, fence - 1, None)
        .await
        .unwrap());
    assert!(s
        .reauthenticate_sso_session(&live, fence, None)
        .await
        .unwrap());
    assert_eq!(
        s.sso_session(live.id).await.unwrap().unwrap().token_hash,
        "another token"
    );
    // After a second step: only while its challenge is stored.
    let challenge = MfaChallenge {
        token_hash: "challenge digest".into(),
        user_id: alice.id,
        client_id: "tessera".into(),
        scope: None,
        resource: None,
        fence,
        failures: 0,
        created_at: now,
        expires_at: now + 60_000,
        used_at: None,
    };
    let after = sso_of(alice.id, now);
    let digest = Some("challenge digest");
    assert!(!s.create_sso_session(&after, fence, digest).await.unwrap());
    // (A challenge is stored only for a user with a confirmed factor.)
    let factor = MfaFactor::new_totp(Uuid::now_v7(), alice.id, "phone".into(), vec![1], now);
    assert!(s.insert_factor(&factor, 10).await.unwrap());
    assert!(s.take_totp_step(factor.id, 1, true, now).await.unwrap());
    assert!(s.insert_challenge(&challenge).await.unwrap().is_some());
    assert!(s.create_sso_session(&after, fence, digest).await.unwrap());
    assert!(s
        .reauthenticate_sso_session(&after, fence, digest)
        .await
        .unwrap());
    s.drop_challenges_of_user(alice.id).await.unwrap();
    assert!(!s
        .create_sso_session(&sso_of(alice.id, now), fence, digest)
        .await
        .unwrap());
    assert!(!s
        .reauthenticate_sso_session(&after, fence, digest)
        .await
        .unwrap());
    // Disabled: nothing opens, whatever the fence.
    s.set_disabled("alice", true, now).await.unwrap();
    let disabled = s.user_by_id(alice.id).await.unwrap().unwrap();
    assert!(!s
        .create_sso_session(&sso_of(alice.id, now), disabled.tokens_not_before, None)
        .await
        .unwrap());
    // An ended session is not signed in again.
    s.set_disabled("alice", false, now).await.unwrap();
    let enabled = s.user_by_id(alice.id).await.unwrap().unwrap();
    assert!(s.revoke_sso_session(live.id, "logout", now).await.unwrap());
    assert!(!s
        .reauthenticate_sso_session(&live, enabled.tokens_not_before, None)
        .await
        .unwrap());
}

async fn the_denylist_and_token_status_agree(b: Backend) {
    let Some((s, _db, alice, session, now)) = with_a_session(b).await else {
        return;
    };
    let fresh = s.token_status(alice.id, session.id, "j1").await.unwrap();
    assert!(fresh.user.is_some() && !fresh.session_revoked && !fresh.jti_revoked);
    let token = RevokedToken {
        jti: "j1".into(),
        user_id: alice.id,
        session_id: Some(session.id),
        expires_at: now + 60_000,
        revoked_at: now,
        reason: "logout".into(),
    };
    assert!(s.revoke_token(&token).await.unwrap());
    assert!(!s.revoke_token(&token).await.unwrap(), "idempotent");
    let denied = s.token_status(alice.id, session.id, "j1").await.unwrap();
    assert!(denied.jti_revoked && !denied.session_revoked);
    assert!(s.revoke_session(session.id, "logout", now).await.unwrap());
    assert!(
        s.token_status(alice.id, session.id, "j2")
            .await
            .unwrap()
            .session_revoked
    );
}

async fn the_throttle_reserves_counts_and_clears(b: Backend) {
    let Some((s, _db)) = store(b).await else {
        return;
    };
    let now = now_ms();
    let alice = [("u:alice", 1), ("ip:192.0.2.1", 5)];
    fn reserve<'a>(attempt: Uuid, keys: &'a [(&'a str, i64)], now: i64) -> Reserve<'a> {
        Reserve {
            keys,
            attempt,
            now,
            window_cutoff: now - 60_000,
            lease_until: now + 30_000,
        }
    }
    let (a, b2, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    // One failure left on the account: one attempt in flight at a time, on every key at once.
    assert_eq!(
        s.throttle_reserve(&reserve(a, &alice, now)).await.unwrap(),
        Reserved::Taken
    );
    assert_eq!(
        s.throttle_reserve(&reserve(b2, &alice, now)).await.unwrap(),
        Reserved::Busy
    );
    // The busy attempt took nothing: the address alone still has room for four more.
    let ip = [("ip:192.0.2.1", 5)];
    for _ in 0..4 {
        assert_eq!(
            s.throttle_reserve(&reserve(Uuid::now_v7(), &ip, now))
                .await
                .unwrap(),
            Reserved::Taken
        );
    }
    assert_eq!(
        s.throttle_reserve(&reserve(c, &ip, now)).await.unwrap(),
        Reserved::Busy
    );
    // A failure uses the allowance up: the key waits, and a reservation says until when.
    s.throttle_failed("u:alice", now, 1, 1_000, 60_000)
        .await
        .unwrap();
    s.throttle_release(&["u:alice", "ip:192.0.2.1"], a)
        .await
        .unwrap();
    assert_eq!(
        s.throttle_reserve(&reserve(b2, &alice, now)).await.unwrap(),
        Reserved::LockedUntil(now + 1_000)
    );
    // The address's slot that `a` held is free again.
    assert_eq!(
        s.throttle_reserve(&reserve(c, &ip, now)).await.unwrap(),
        Reserved::Taken
    );
    // A success clears the wait, and its attempt leaves both keys at once.
    s.throttle_release(&["ip:192.0.2.1"], c).await.unwrap();
    s.throttle_succeeded(Some("u:alice"), &["u:alice"], Uuid::now_v7())
        .await
        .unwrap();
    let d = Uuid::now_v7();
    assert_eq!(
        s.throttle_reserve(&reserve(d, &alice, now)).await.unwrap(),
        Reserved::Taken
    );
    assert_eq!(
        s.throttle_reserve(&reserve(b2, &alice, now)).await.unwrap(),
        Reserved::Busy
    );
    s.throttle_succeeded(Some("u:alice"), &["u:alice", "ip:192.0.2.1"], d)
        .await
        .unwrap();
    assert_eq!(
        s.throttle_reserve(&reserve(b2, &alice, now)).await.unwrap(),
        Reserved::Taken
    );
    // The address had four attempts of its own and b2 in flight: no more room.
    assert_eq!(
        s.throttle_reserve(&reserve(c, &ip, now)).await.unwrap(),
        Reserved::Busy
    );
}

async fn keys_are_stored_and_rotated(b: Backend) {
    let Some((s, _db)) = store(b).await else {
        return;
    };
    let now = now_ms();
    let key = |kid: &str| KeyRow {
        kid: kid.into(),
        alg: "ES256".into(),
        private_key_enc: vec![1, 2, 3],
        public_jwk: format!("{{\"kid\":\"{kid}\"}}"),
        created_at: now,
        publish_at: now,
        activate_at: now,
        retire_at: None,
        remove_at: None,
        succeeds: None,
    };
    s.insert_key(&key("k1")).await.unwrap();
    s.rotate_keys(&key("k2"), now + 10, now + 20).await.unwrap();
    let keys = s.keys().await.unwrap();
    let k1 = keys.iter().find(|k| k.kid == "k1").unwrap();
    assert_eq!(
        (k1.retire_at, k1.remove_at),
        (Some(now + 10), Some(now + 20))
    );
    let k2 = keys.iter().find(|k| k.kid == "k2").unwrap();
    assert_eq!(
        (k2.retire_at, k2.private_key_enc.clone()),
        (None, vec![1, 2, 3])
    );
    assert!(s.insert_key(&key("k1")).await.is_err(), "a kid is unique");
}

async fn the_feed_lists_what_was_revoked(b: Backend) {
    let Some((s, _db, alice, session, now)) = with_a_session(b).await else {
        return;
    };
    s.revoke_session(session.id, "logout", now).await.unwrap();
    s.revoke_token(&RevokedToken {
        jti: "j1".into(),
        user_id: alice.id,
        session_id: None,
        expires_at: now + 60_000,
        revoked_at: now,
        reason: "revoked".into(),
    })
    .await
    .unwrap();
    let page = s
        .revocations_page(&FeedStart::From(0), now, 600_000, 10)
        .await
        .unwrap();
    assert_eq!(page.entries.tokens.len(), 1);
    assert_eq!(page.entries.tokens[0].0, "j1");
    assert_eq!(page.entries.sessions, vec![(session.id, now)]);
    assert!(page.more_after.is_none());
    // A page of one ends where the next begins.
    let first = s
        .revocations_page(&FeedStart::From(0), now, 600_000, 1)
        .await
        .unwrap();
    assert!(first.more_after.is_some());
}

async fn audit_rows_are_stored_and_paged(b: Backend) {
    let Some((s, _db)) = store(b).await else {
        return;
    };
    let now = now_ms();
    let event = |name: &str| AuditEvent {
        id: Uuid::now_v7(),
        at: now,
        event: name.into(),
        user_id: None,
        session_id: None,
        client_id: Some("tessera".into()),
        ip: Some("192.0.2.1".into()),
        request_id: Some("req-1".into()),
        reason: None,
        actor_id: None,
    };
    let rows = vec![event("login.failed"), event("login.succeeded")];
    s.insert_audit(&rows).await.unwrap();
    let query = AuditQuery {
        limit: 10,
        before: now + 1,
        ..AuditQuery::default()
    };
    assert_eq!(s.audit_events(&query).await.unwrap(), rows);
    let failed = AuditQuery {
        event: Some("login.failed".into()),
        ..query.clone()
    };
    assert_eq!(s.audit_events(&failed).await.unwrap(), rows[..1].to_vec());
    assert_eq!(s.purge_audit(now + 1).await.unwrap(), 2);
}
