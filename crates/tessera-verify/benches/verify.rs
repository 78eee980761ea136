//! `VerifyLayer` throughput against raw `jsonwebtoken` decode+validate of the same ES256 token
//! (`cargo bench -p tessera-verify`). The layer does everything the raw call does, plus the
//! header policy (typ, crit, kid, key references), the key lookup, the typed claims, the
//! revocation check and the middleware itself; the target is at least 0.9 of the raw rate.
//! `Verifier::verify` of a token seen before (the verified-token cache: about a microsecond is
//! the target) and with the cache off (every check, every time).

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use tessera_verify::{Verifier, VerifyLayer};
use tower::{Layer, ServiceExt};

const ISS: &str = "https://auth.example.com";
const AUD: &str = "orders-api";

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Typed {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    iat: i64,
    nbf: i64,
    jti: String,
    sid: String,
    roles: Vec<String>,
}

fn bench(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    let (x, y) = (
        URL_SAFE_NO_PAD.encode(&point[1..33]),
        URL_SAFE_NO_PAD.encode(&point[33..65]),
    );
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "x": x, "y": y,
        "kid": "k1", "alg": "ES256", "use": "sig"}]});
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("k1".into());
    let claims = serde_json::json!({"iss": ISS, "sub": "0190c3d2-7a8e-7c1e-9b2a-1f2e3d4c5b6a",
        "aud": AUD, "exp": now + 3600, "iat": now, "nbf": now,
        "jti": "0190c3d2-7a8e-7c1e-9b2a-1f2e3d4c5b6b", "sid": "0190c3d2-7a8e-7c1e-9b2a-1f2e3d4c5b6c",
        "client_id": "tessera", "roles": ["admin"], "username": "alice"});
    let token =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(pkcs8.as_ref())).unwrap();

    let decoding = DecodingKey::from_ec_components(&x, &y).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[ISS]);
    validation.set_audience(&[AUD]);
    c.bench_function("raw jsonwebtoken decode (serde_json::Value)", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap()
        })
    });
    c.bench_function("raw jsonwebtoken decode (typed struct)", |b| {
        b.iter(|| jsonwebtoken::decode::<Typed>(&token, &decoding, &validation).unwrap())
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let verifier = rt.block_on(async {
        Verifier::builder(ISS, AUD)
            .jwks(serde_json::to_vec(&jwks).unwrap())
            .build()
            .await
            .unwrap()
    });
    let uncached = rt.block_on(async {
        Verifier::builder(ISS, AUD)
            .jwks(serde_json::to_vec(&jwks).unwrap())
            .verified_cache(0)
            .build()
            .await
            .unwrap()
    });
    c.bench_function("Verifier::verify, a token seen before (cached)", |b| {
        b.to_async(&rt)
            .iter(|| async { verifier.verify(&token).await.unwrap() })
    });
    c.bench_function("Verifier::verify, cache off (every check)", |b| {
        b.to_async(&rt)
            .iter(|| async { uncached.verify(&token).await.unwrap() })
    });
    let bearer = http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    let svc =
        VerifyLayer::new(verifier).layer(tower::service_fn(|_req: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
        }));
    c.bench_function("VerifyLayer request", |b| {
        b.to_async(&rt).iter(|| {
            let mut req = http::Request::new(());
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, bearer.clone());
            let svc = svc.clone();
            async move {
                let res = svc.oneshot(req).await.unwrap();
                assert_eq!(res.status(), 200);
            }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
