//! The revocation state's own rules: trust, notifications, and what is forgotten when.

use std::sync::atomic::Ordering;
use std::time::Duration;

use uuid::Uuid;

use super::state::Jtis;
use super::*;
use crate::store::{Change, User};

fn user(id: Uuid, updated_at: i64) -> User {
    User {
        id,
        username: "u".into(),
        password_hash: "$argon2id$secret".into(),
        roles: vec![],
        claims: Default::default(),
        disabled: false,
        tokens_not_before: 0,
        created_at: 0,
        updated_at,
        email: None,
        email_verified: false,
    }
}

fn trusted_cache() -> RevocationState {
    let c = RevocationState::new(true, Duration::from_secs(60), 610_000, 0);
    c.set_listening(true);
    c.synced_at.store(c.mono_ns(), Ordering::Release);
    c
}

#[test]
fn untrusted_until_listening_and_synced() {
    let c = RevocationState::new(true, Duration::from_secs(60), 1, 0);
    assert!(matches!(
        c.check(Uuid::nil(), Uuid::nil(), "j"),
        Check::Unknown
    ));
    c.set_listening(true);
    assert!(!c.trusted(), "listening but never synced");
    c.synced_at.store(c.mono_ns(), Ordering::Release);
    assert!(c.trusted());
    c.set_listening(false);
    assert!(!c.trusted());
    let off = RevocationState::new(false, Duration::from_secs(60), 1, 0);
    off.set_listening(true);
    off.synced_at.store(off.mono_ns(), Ordering::Release);
    assert!(!off.trusted(), "a disabled cache is never trusted");
}

#[test]
fn stale_state_is_not_trusted() {
    let c = RevocationState::new(true, Duration::from_millis(1), 1, 0);
    c.set_listening(true);
    c.synced_at.store(c.mono_ns(), Ordering::Release);
    std::thread::sleep(Duration::from_millis(5));
    assert!(!c.trusted());
}

#[test]
fn notifications_revoke_and_invalidate() {
    let c = trusted_cache();
    let (uid, sid) = (Uuid::now_v7(), Uuid::now_v7());
    let Check::Load(epoch) = c.check(uid, sid, "j1") else {
        panic!("expected a load")
    };
    c.remember(&user(uid, 1), sid, epoch);
    match c.check(uid, sid, "j1") {
        Check::User(u) => assert!(u.password_hash.is_empty(), "hash must not be cached"),
        other => panic!("{other:?}"),
    }
    // Another user presenting the same session is not answered from memory.
    assert!(matches!(c.check(Uuid::now_v7(), sid, "j1"), Check::Load(_)));
    assert!(c.apply_change(&Change::parse(&format!("user:{uid}"))));
    assert!(matches!(c.check(uid, sid, "j1"), Check::Load(_)));
    assert!(c.apply_change(&Change::parse("jti:99:j1")));
    assert!(matches!(c.check(uid, sid, "j1"), Check::Revoked));
    assert!(c.apply_change(&Change::parse(&format!("session:{sid}:5"))));
    assert!(matches!(c.check(uid, sid, "j2"), Check::Revoked));
    assert!(!c.apply_change(&Change::parse("keys")));
    // A payload that cannot be read makes the state untrusted rather than wrong.
    assert!(c.apply_change(&Change::parse("session:garbage")));
    assert!(!c.trusted());
}

#[test]
fn forgetting_keeps_revocations_and_drops_what_was_valid() {
    let c = trusted_cache();
    let (uid, sid, dead) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let Check::Load(epoch) = c.check(uid, sid, "j") else {
        panic!("expected a load")
    };
    c.remember(&user(uid, 1), sid, epoch);
    c.revoke_session(dead);
    c.revoke_jti("gone", i64::MAX);
    assert!(matches!(c.check(uid, sid, "j"), Check::User(_)));
    c.forget_valid();
    assert!(matches!(c.check(uid, sid, "j"), Check::Load(_)));
    assert!(matches!(c.check(uid, dead, "j"), Check::Revoked));
    assert!(matches!(c.check(uid, sid, "gone"), Check::Revoked));
    // A read that started before the reset is not remembered, not even the session.
    c.remember(&user(uid, 1), sid, epoch);
    assert!(matches!(c.check(uid, sid, "j"), Check::Load(_)));
    c.session_live(sid, uid);
    assert!(
        matches!(c.check(uid, sid, "j"), Check::Load(_)),
        "no user row yet"
    );
}

#[test]
fn a_row_read_before_an_invalidation_is_not_cached() {
    let c = trusted_cache();
    let uid = Uuid::now_v7();
    let Check::Load(epoch) = c.check(uid, Uuid::nil(), "j") else {
        panic!("expected a load")
    };
    c.invalidate_user(uid);
    c.remember(&user(uid, 1), Uuid::nil(), epoch);
    assert!(matches!(c.check(uid, Uuid::nil(), "j"), Check::Load(_)));
}

#[test]
fn jtis_are_held_compactly_and_compared_exactly() {
    let mut j = Jtis::default();
    let id = "0190c3d2-7a8e-7c1e-9b2a-1f2e3d4c5b6a";
    j.insert(id, 10_000);
    j.insert("not-a-uuid", 20_000);
    assert_eq!((j.uuids.len(), j.text.len()), (1, 1));
    assert!(j.contains(id) && j.contains("not-a-uuid"));
    // Another spelling of the same UUID is another jti: never matched by the UUID entry.
    assert!(!j.contains(&id.to_uppercase()));
    assert!(!j.contains("0190c3d27a8e7c1e9b2a1f2e3d4c5b6a"));
    j.insert(&id.to_uppercase(), 30_000);
    assert_eq!((j.uuids.len(), j.text.len()), (1, 2));
    j.retain_live(15_000);
    assert!(!j.contains(id) && j.contains("not-a-uuid"));
    assert_eq!(j.len(), 2);
}

#[test]
fn revoked_sessions_are_kept_for_the_horizon() {
    let c = trusted_cache();
    let (uid, sid) = (Uuid::now_v7(), Uuid::now_v7());
    c.revoke_session(sid);
    assert!(matches!(c.check(uid, sid, "j"), Check::Revoked));
    let now = crate::time::now_ms();
    let mut st = c.write();
    st.sessions.retain_after(now + 600_000);
    assert_eq!(st.sessions.len(), 1, "inside the 610 s horizon");
    st.sessions.retain_after(now + 612_000);
    assert_eq!(st.sessions.len(), 0, "past the horizon");
}

#[test]
fn a_denylisted_jti_outlives_its_exp_by_the_leeway() {
    // A verifier accepts a token until `exp + leeway`: its denylisting must hold that long.
    let c = RevocationState::new(true, Duration::from_secs(60), 610_000, 10_000);
    c.set_listening(true);
    c.synced_at.store(c.mono_ns(), Ordering::Release);
    let now = crate::time::now_ms();
    let id = Uuid::now_v7().to_string();
    c.revoke_jti(&id, now - 5_000);
    c.revoke_jti("hand-written", now - 5_000);
    c.write().jtis.retain_live(now);
    assert!(matches!(
        c.check(Uuid::nil(), Uuid::nil(), &id),
        Check::Revoked
    ));
    assert!(matches!(
        c.check(Uuid::nil(), Uuid::nil(), "hand-written"),
        Check::Revoked
    ));
    // The failing input: a prune within the last accepted second. Claims are whole seconds
    // (`now_secs <= exp + leeway`), so the token is accepted until that second ends; the
    // entry was dropped at exp + leeway exactly, and a revoked token passed for up to 1 s.
    c.write().jtis.retain_live(now + 5_500);
    for jti in [id.as_str(), "hand-written"] {
        assert!(
            matches!(c.check(Uuid::nil(), Uuid::nil(), jti), Check::Revoked),
            "{jti}"
        );
    }
    // (UUID entries keep whole seconds, rounded up.)
    c.write().jtis.retain_live(now + 7_000);
    assert_eq!(
        c.stats().jtis,
        0,
        "gone once the last accepted second has passed"
    );
}
