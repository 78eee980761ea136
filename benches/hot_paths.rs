//! Microbenchmarks of the hot paths (`cargo bench`): password verification, the second
//! factors' checks (TOTP, a passkey's assertion), access-token signing and verification per
//! algorithm, refresh-token minting and checking, and building the key ring with its
//! pre-rendered JWKS. The end-to-end harness is `bench/run`.

use std::hint::black_box;

use argon2::Params;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use tessera::auth::keys::{generate, sealed_row, KeyAlg, KeyRing, MasterKey};
use tessera::auth::password::{hash_blocking, verify_blocking, CostCaps};
use tessera::auth::refresh_token::RefreshTokens;
use tessera::auth::tokens::{self, Expect};
use tessera::store::KeyRow;

#[path = "../tests/support/soft_passkey.rs"]
mod soft_passkey;

fn ring(alg: KeyAlg, keys: usize) -> (KeyRing, MasterKey) {
    let master = MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap();
    let rows: Vec<KeyRow> = (0..keys)
        .map(|_| {
            let m = generate(alg, 2048).unwrap();
            sealed_row(&master, &m, 0, 0, None).unwrap()
        })
        .collect();
    (KeyRing::build(&rows, &master, 1), master)
}

fn claims(now: i64) -> serde_json::Value {
    json!({
        "iss": "http://127.0.0.1:8080", "sub": uuid::Uuid::now_v7(), "aud": "tessera",
        "exp": now + 600, "iat": now, "nbf": now, "jti": uuid::Uuid::now_v7().to_string(),
        "sid": uuid::Uuid::now_v7(), "client_id": "tessera", "roles": ["user"],
    })
}

fn password(c: &mut Criterion) {
    let params = Params::new(19456, 2, 1, None).unwrap();
    let phc = hash_blocking(&params, b"correct horse battery staple").unwrap();
    c.bench_function("password verify (argon2id m=19456 t=2 p=1)", |b| {
        b.iter(|| {
            assert!(verify_blocking(
                black_box(b"correct horse battery staple"),
                &phc,
                &CostCaps::DEFAULTS
            ))
        })
    });
}

/// The CPU part of a TOTP check (`tessera_auth::mfa::totp_step`): the secret opened with the
/// master key (AES-256-GCM) and the codes of three time steps (HMAC-SHA1), the right code
/// found last.
fn totp(c: &mut Criterion) {
    use tessera::auth::mfa::{seal_totp_secret, totp_step};
    let master = MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap();
    let id = uuid::Uuid::now_v7();
    let secret = *b"12345678901234567890";
    let sealed = seal_totp_secret(&master, id, &secret).unwrap();
    let mut factor = tessera::store::MfaFactor::new_totp(id, id, "bench".into(), sealed, 0);
    factor.confirmed_at = Some(0);
    let at = 1_234_567_890u64;
    // RFC 6238's vector for this time, 6 digits, one step ahead (the last one tried).
    let app = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::new(secret.to_vec().into_boxed_slice()))
        .with_account_name("b")
        .build_noncompliant();
    let code = app.generate(at + 30).to_string();
    c.bench_function("TOTP check (open the sealed secret, three steps)", |b| {
        b.iter(|| {
            assert!(totp_step(&master, &factor, black_box(&code), at)
                .unwrap()
                .is_some())
        })
    });
}

fn access_tokens(c: &mut Criterion) {
    let now = tessera::time::now_ms() / 1000;
    let expect = Expect {
        issuer: "http://127.0.0.1:8080",
        audience: "tessera",
        also: &[],
        leeway_secs: 10,
    };
    for alg in [KeyAlg::Es256, KeyAlg::EdDsa, KeyAlg::Rs256] {
        let (ring, _) = ring(alg, 1);
        let key = ring.active().unwrap().clone();
        let cl = claims(now);
        c.bench_function(&format!("access token sign {}", alg.name()), |b| {
            b.iter(|| tokens::sign(&key, black_box(&cl)).unwrap())
        });
        let token = tokens::sign(&key, &cl).unwrap();
        c.bench_function(&format!("access token verify {}", alg.name()), |b| {
            b.iter(|| tokens::verify(black_box(&token), &ring, &expect, now).unwrap())
        });
    }
}

fn refresh_tokens(c: &mut Criterion) {
    let (_, master) = ring(KeyAlg::Es256, 1);
    let rt = RefreshTokens::new(master.derive_hmac("refresh-token-v1"));
    let sid = uuid::Uuid::now_v7();
    c.bench_function("refresh token mint", |b| {
        b.iter(|| rt.mint(black_box(sid), 7))
    });
    let token = rt.mint(sid, 7);
    c.bench_function("refresh token parse+check", |b| {
        b.iter(|| rt.parse(black_box(&token)).unwrap())
    });
}

fn jwks(c: &mut Criterion) {
    let master = MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap();
    let rows: Vec<KeyRow> = [KeyAlg::Es256, KeyAlg::EdDsa]
        .into_iter()
        .map(|alg| {
            let m = generate(alg, 2048).unwrap();
            sealed_row(&master, &m, 0, 0, None).unwrap()
        })
        .collect();
    c.bench_function("key ring build + JWKS render (2 keys)", |b| {
        b.iter(|| KeyRing::build(black_box(&rows), &master, 1))
    });
}

/// A passkey's assertion checked for a second step (`tessera::auth::passkey::check_assertion`:
/// parse the credential JSON, then challenge, origin, RP ID, flags, counter and an ES256
/// signature), against a software authenticator's answer.
fn passkey(c: &mut Criterion) {
    use tessera::auth::passkey::{check_assertion, webauthn};
    let origin = webauthn::Url::parse(soft_passkey::ORIGIN).unwrap();
    let wa = webauthn::WebauthnBuilder::new("example.com", &origin)
        .unwrap()
        .build()
        .unwrap();
    let mut key = soft_passkey::SoftPasskey::new();
    let (ccr, reg) = wa
        .start_passkey_registration(uuid::Uuid::now_v7(), "bench", "bench", None)
        .unwrap();
    let options = serde_json::to_value(&ccr).unwrap();
    let credential = key.register(&options["publicKey"]);
    let passkey = wa
        .finish_passkey_registration(&serde_json::from_value(credential).unwrap(), &reg)
        .unwrap();
    let (rcr, state) = wa.start_passkey_authentication(&[passkey]).unwrap();
    let options = serde_json::to_value(&rcr).unwrap();
    let assertion = key.assert(&options["publicKey"]).to_string();
    c.bench_function("passkey assertion check (parse, ES256, webauthn-rs)", |b| {
        b.iter(|| check_assertion(&wa, black_box(&assertion), &state).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = password, totp, passkey, access_tokens, refresh_tokens, jwks
}
criterion_main!(benches);
