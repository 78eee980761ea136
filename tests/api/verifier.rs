//! tessera-verify against a real Tessera: discovery, every signing algorithm, a key rotation
//! under traffic, an unknown-`kid` storm, the forgery battery, revocations through the feed,
//! Tessera unreachable, and the `orders-api` example driven as a script would.
//!
//! The issuer is the address of a proxy in front of Tessera, so a test can cut the verifier
//! off from it while the test itself still reaches Tessera directly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::{Json, Router};
use figment::providers::Serialized;
use figment::Figment;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tessera::auth::keys::{generate, KeyAlg};
use tessera_verify::{
    Claims, RequireAcr, RequireAmr, RequireRole, RequireScope, StalePolicy, Verifier, VerifyError,
    VerifyLayer,
};
use tokio::io::AsyncBufReadExt;
use tower::ServiceExt;

use crate::helpers::{eventually, Backend, Proxy, TestApp, CLIENT_ID, CLIENT_SECRET};
use crate::on_both;

on_both!(
    every_algorithm_verifies_through_the_layer,
    rotation_under_traffic_fails_nothing,
    unknown_kid_storm_refetches_at_most_once,
    forgeries_are_refused,
    logout_and_logout_all_are_enforced_through_the_feed,
    a_disabled_user_is_refused_after_the_cutoff,
    tessera_unreachable,
    orders_api_example,
    set_up_fails_loudly,
    a_role_taken_away_reaches_the_verifier,
    an_api_can_demand_a_second_factor,
    cached_tokens_die_with_their_expiry_and_their_key,
);

const AUDIENCE: &str = "tessera";

/// Tessera behind a proxy whose address is its issuer.
struct Issuer {
    app: TestApp,
    proxy: Proxy,
    url: String,
}

/// The proxy listens first (its address is the issuer); it is pointed at Tessera once
/// Tessera has bound its own port.
async fn issuer(b: Backend, tweak: impl FnOnce(Figment) -> Figment) -> Option<Issuer> {
    let proxy = Proxy::start("127.0.0.1:9").await;
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let iss = url.clone();
    let app = TestApp::spawn_with(b, move |f| {
        tweak(f.merge(Serialized::default("tokens.issuer", iss)))
    })
    .await?;
    proxy.retarget(app.base.trim_start_matches("http://"));
    Some(Issuer { app, proxy, url })
}

fn secret(s: &str) -> tessera_verify::SecretString {
    tessera_verify::SecretString::from(s.to_string())
}

impl Issuer {
    async fn access(&self, user: &str) -> String {
        self.app.login_ok(user).await["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A verifier polling the feed every 200 ms, one entry per page, so that every poll
    /// with anything to say walks several pages.
    fn with_feed(&self) -> tessera_verify::VerifierBuilder {
        Verifier::builder(&self.url, AUDIENCE)
            .with_revocation_feed(CLIENT_ID, secret(CLIENT_SECRET), Duration::from_millis(200))
            .revocation_feed_url(format!("{}/revocations?limit=1", self.url))
    }
}

/// The claims `token` carries, unverified (to build forgeries from).
fn payload(token: &str) -> Value {
    TestApp::claims(token)
}

/// An API in front of `verifier`: `/orders` for any valid token, `/admin` for the `admin` role.
fn api(verifier: Verifier) -> Router {
    async fn orders(c: Claims) -> Json<Value> {
        Json(json!({"sub": c.sub, "roles": c.roles}))
    }
    Router::new()
        .route("/admin", get(orders).route_layer(RequireRole("admin")))
        .route(
            "/write",
            get(orders).route_layer(RequireScope("orders:write")),
        )
        .route("/orders", get(orders))
        .layer(VerifyLayer::new(verifier))
}

/// Status, `WWW-Authenticate` and JSON body of `GET path` on `api` with `token`.
async fn call(api: &Router, path: &str, token: Option<&str>) -> (u16, String, Value) {
    let mut req = axum::http::Request::get(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = api
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let www = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        www,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

async fn every_algorithm_verifies_through_the_layer(b: Backend) {
    for alg in ["ES256", "EdDSA", "RS256"] {
        let Some(iss) = issuer(b, |f| {
            f.merge(Serialized::default("keys.algorithm", alg))
                .merge(Serialized::default("tokens.scopes", ["orders:write"]))
        })
        .await
        else {
            return;
        };
        let alice = iss.app.create_user("alice", &["admin"]).await;
        iss.app.create_user("bob", &[]).await;
        let verifier = Verifier::discover(&iss.url, AUDIENCE).await.unwrap();
        let token = iss.access("alice").await;
        let c = verifier.verify(&token).await.unwrap();
        assert_eq!(c.sub, alice.id.to_string(), "{alg}");
        assert_eq!(c.roles, vec!["admin"], "{alg}");
        assert_eq!(
            (
                c.iss.as_ref(),
                c.aud.iter().map(str::to_string).collect::<Vec<_>>()
            ),
            (iss.url.as_str(), vec![AUDIENCE.to_string()])
        );
        assert!(!c.sid.is_empty() && !c.jti.is_empty());
        // Custom claims set by an administrator reach the verifier as JSON.
        let r = iss
            .app
            .admin(
                reqwest::Method::PUT,
                &format!("/admin/users/{}/claims", alice.id),
                &token,
                Some(json!({"claims": {"tenant": "acme", "tier": 2}})),
            )
            .await;
        assert!(r.status().is_success(), "{}", r.status());
        let c = verifier.verify(&iss.access("alice").await).await.unwrap();
        assert_eq!(c.custom.get("tenant"), Some(&json!("acme")), "{alg}");
        assert_eq!(c.custom.get("tier"), Some(&json!(2)), "{alg}");

        let api = api(verifier);
        let (status, _, body) = call(&api, "/orders", Some(&token)).await;
        assert_eq!(status, 200, "{alg}");
        assert_eq!(
            body,
            json!({"sub": alice.id.to_string(), "roles": ["admin"]})
        );
        assert_eq!(call(&api, "/admin", Some(&token)).await.0, 200, "{alg}");
        let (status, www, body) = call(&api, "/admin", Some(&iss.access("bob").await)).await;
        assert_eq!(status, 403, "{alg}");
        assert!(
            www.starts_with("Bearer error=\"insufficient_scope\""),
            "{www}"
        );
        assert_eq!(body["error"], "insufficient_scope");
        // No token: a bare challenge (RFC 6750 §3.1), the body still in the contract's shape.
        let (status, www, body) = call(&api, "/orders", None).await;
        assert_eq!(status, 401);
        assert_eq!(www, "Bearer");
        assert_eq!(body["error"], "invalid_token");
        // Scopes: only a token granted `orders:write` passes RequireScope.
        assert_eq!(call(&api, "/write", Some(&token)).await.0, 403, "{alg}");
        let scoped: Value = iss
            .app
            .post_json(
                "/login",
                &json!({"username": "bob", "password": crate::helpers::PASSWORD,
                    "scope": "orders:write"}),
            )
            .await
            .json()
            .await
            .unwrap();
        let scoped = scoped["access_token"].as_str().unwrap();
        let (status, _, body) = call(&api, "/write", Some(scoped)).await;
        assert_eq!(status, 200, "{alg}: {body}");
    }
}

async fn rotation_under_traffic_fails_nothing(b: Backend) {
    // Verifiers may cache the key set for a second; a new key is published a second (plus
    // Tessera's five-second propagation slack) before it signs.
    let Some(iss) = issuer(b, |f| {
        f.merge(Serialized::default("keys.jwks_max_age", "1s"))
            .merge(Serialized::default("keys.publish_ahead", "1s"))
    })
    .await
    else {
        return;
    };
    iss.app.create_user("alice", &[]).await;
    let verifier = Verifier::discover(&iss.url, AUDIENCE).await.unwrap();
    let pair = iss.app.login_ok("alice").await;
    let first = pair["access_token"].as_str().unwrap().to_string();
    let mut refresh = pair["refresh_token"].as_str().unwrap().to_string();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rotations = {
        let (auth, stop) = (iss.app.auth.clone(), stop.clone());
        tokio::spawn(async move {
            // Two rotations: their keys sign from about 6.3 s and 9.3 s on.
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                auth.rotate_key(&tessera::auth::Caller::default())
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(2700)).await;
            }
            tokio::time::sleep(Duration::from_millis(5000)).await;
            stop.store(true, Ordering::SeqCst);
        })
    };
    let (mut ok, mut kids) = (0u64, std::collections::BTreeSet::new());
    while !stop.load(Ordering::SeqCst) {
        let r: Value = iss.app.refresh(&refresh).await.json().await.unwrap();
        refresh = r["refresh_token"].as_str().unwrap().to_string();
        let token = r["access_token"].as_str().unwrap();
        kids.insert(jsonwebtoken::decode_header(token).unwrap().kid.unwrap());
        for t in [token, first.as_str()] {
            match verifier.verify(t).await {
                Ok(_) => ok += 1,
                Err(e) => panic!("verification failed during rotation: {e}"),
            }
        }
    }
    rotations.await.unwrap();
    assert!(kids.len() >= 3, "tokens were signed by {} keys", kids.len());
    assert!(ok > 100, "only {ok} verifications");
}

/// A well-formed token for `iss`, signed by a key Tessera never published, under `kid`.
fn foreign_token(key: &tessera::auth::keys::KeyMaterial, kid: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some("at+jwt".into());
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_ec_der(&key.pkcs8)).unwrap()
}

async fn unknown_kid_storm_refetches_at_most_once(b: Backend) {
    let Some(iss) = issuer(b, |f| f).await else {
        return;
    };
    iss.app.create_user("alice", &[]).await;
    let verifier = Verifier::discover(&iss.url, AUDIENCE).await.unwrap();
    let real = iss.access("alice").await;
    let claims = payload(&real);
    let foreign = generate(KeyAlg::Es256, 2048).unwrap();
    let tokens: Vec<String> = (0..1000)
        .map(|i| foreign_token(&foreign, &format!("storm-{i}"), &claims))
        .collect();
    let before = verifier.key_set_fetches();
    let results = futures::future::join_all(tokens.iter().map(|t| {
        let v = verifier.clone();
        async move { v.verify(t).await }
    }))
    .await;
    assert!(results.iter().all(|r| r == &Err(VerifyError::UnknownKey)));
    let refetches = verifier.key_set_fetches() - before;
    assert!(
        refetches <= 1,
        "{refetches} refetches for 1000 unknown kids"
    );
    // A second wave right after is refused without any fetch at all.
    let again = verifier.key_set_fetches();
    assert_eq!(
        verifier.verify(&tokens[0]).await,
        Err(VerifyError::UnknownKey)
    );
    assert_eq!(verifier.key_set_fetches(), again);
    assert!(verifier.verify(&real).await.is_ok());
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

async fn forgeries_are_refused(b: Backend) {
    let Some(iss) = issuer(b, |f| f).await else {
        return;
    };
    iss.app.create_user("alice", &[]).await;
    let verifier = Verifier::builder(&iss.url, AUDIENCE)
        .refetch_interval(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    let real = iss.access("alice").await;
    let claims = payload(&real);
    let parts: Vec<&str> = real.split('.').collect();
    let key = iss.app.signing_key().await;
    let ours = |header: Value, claims: &Value| {
        let h: Header = serde_json::from_value(header).unwrap();
        tessera::auth::tokens::sign_jws(&key, &h, claims).unwrap()
    };
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": key.kid});
    let with = |k: &str, v: Value| {
        let mut c = claims.clone();
        c[k] = v;
        c
    };
    let now = tessera::time::now_ms() / 1000;
    let jwks = iss
        .app
        .get("/.well-known/jwks.json")
        .await
        .text()
        .await
        .unwrap();
    let jwk: Value = serde_json::from_str::<Value>(&jwks).unwrap()["keys"][0].clone();
    let hs256 = |secret: &[u8]| {
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(secret)).unwrap()
    };
    let foreign = generate(KeyAlg::Es256, 2048).unwrap();
    let mut jku = Header::new(Algorithm::ES256);
    jku.typ = Some("at+jwt".into());
    jku.kid = Some(foreign.kid.clone());
    jku.jku = Some("http://127.0.0.1:9/jwks.json".into());
    let mut embedded = jku.clone();
    embedded.jku = None;
    embedded.jwk = Some(serde_json::from_value(foreign.jwk.clone()).unwrap());
    let zero_sig = format!("{}.{}.{}", parts[0], parts[1], "A".repeat(86));
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&with("sub", json!("someone-else"))),
        parts[2]
    );

    use VerifyError as E;
    let cases: Vec<(&str, String, VerifyError)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "at+jwt", "kid": key.kid})),
                parts[1]
            ),
            E::Header("alg"),
        ),
        (
            "HS256 keyed with the JWKS",
            hs256(jwks.as_bytes()),
            E::Header("alg"),
        ),
        (
            "HS256 keyed with the JWK",
            hs256(jwk.to_string().as_bytes()),
            E::Header("alg"),
        ),
        (
            "HS256 keyed with x",
            hs256(jwk["x"].as_str().unwrap().as_bytes()),
            E::Header("alg"),
        ),
        (
            "jku",
            jsonwebtoken::encode(&jku, &claims, &EncodingKey::from_ec_der(&foreign.pkcs8)).unwrap(),
            E::Header("key reference"),
        ),
        (
            "embedded jwk",
            jsonwebtoken::encode(
                &embedded,
                &claims,
                &EncodingKey::from_ec_der(&foreign.pkcs8),
            )
            .unwrap(),
            E::Header("key reference"),
        ),
        (
            "foreign key under our kid",
            foreign_token(&foreign, &key.kid, &claims),
            E::Signature,
        ),
        (
            "kid path traversal",
            foreign_token(&foreign, "../../../../dev/null", &claims),
            E::UnknownKey,
        ),
        (
            "kid SQL",
            foreign_token(&foreign, "' OR '1'='1", &claims),
            E::UnknownKey,
        ),
        (
            "no kid",
            ours(json!({"alg": "ES256", "typ": "at+jwt"}), &claims),
            E::Header("kid"),
        ),
        (
            "typ JWT",
            ours(
                json!({"alg": "ES256", "typ": "JWT", "kid": key.kid}),
                &claims,
            ),
            E::Header("typ"),
        ),
        (
            "no typ",
            ours(json!({"alg": "ES256", "kid": key.kid}), &claims),
            E::Header("typ"),
        ),
        (
            // RFC 9068 §2.2: required, though the shared wire type reads it as optional.
            "no client_id",
            ours(header.clone(), &{
                let mut c = claims.clone();
                c.as_object_mut().unwrap().remove("client_id");
                c
            }),
            E::Claim("missing"),
        ),
        (
            "crit",
            ours(
                json!({"alg": "ES256", "typ": "at+jwt", "kid": key.kid, "crit": ["exp"]}),
                &claims,
            ),
            E::Header("crit"),
        ),
        (
            "wrong iss",
            ours(header.clone(), &with("iss", json!("https://evil.example"))),
            E::Claim("iss"),
        ),
        (
            "iss with a trailing slash",
            ours(header.clone(), &with("iss", json!(format!("{}/", iss.url)))),
            E::Claim("iss"),
        ),
        (
            "wrong aud",
            ours(header.clone(), &with("aud", json!("other-api"))),
            E::Claim("aud"),
        ),
        (
            "no aud",
            {
                let mut c = claims.clone();
                c.as_object_mut().unwrap().remove("aud");
                ours(header.clone(), &c)
            },
            E::Claim("missing"),
        ),
        (
            "expired",
            ours(header.clone(), &with("exp", json!(now - 60))),
            E::Expired,
        ),
        (
            "nbf in the future",
            ours(header.clone(), &with("nbf", json!(now + 600))),
            E::NotYetValid,
        ),
        (
            "iat in the future",
            ours(header.clone(), &with("iat", json!(now + 600))),
            E::NotYetValid,
        ),
        (
            "string exp",
            ours(header.clone(), &with("exp", json!((now + 60).to_string()))),
            E::Claim("type"),
        ),
        (
            "lifetime past the horizon",
            ours(header.clone(), &with("exp", json!(now + 2 * 86_400))),
            E::Claim("lifetime"),
        ),
        ("tampered payload", tampered, E::Signature),
        ("all-zero ECDSA signature", zero_sig, E::Signature),
        (
            "no signature",
            format!("{}.{}.", parts[0], parts[1]),
            E::Signature,
        ),
        (
            "two parts",
            format!("{}.{}", parts[0], parts[1]),
            E::Malformed,
        ),
        (
            "oversized",
            format!("{}.{}.{}", parts[0], "A".repeat(9000), parts[2]),
            E::Malformed,
        ),
    ];
    let api = api(verifier.clone());
    for (what, token, expected) in cases {
        let got = verifier.verify(&token).await;
        assert_eq!(got.as_ref().err(), Some(&expected), "{what}: {got:?}");
        let (status, www, _) = call(&api, "/orders", Some(&token)).await;
        // A token with characters outside b64token is refused before verification.
        assert_eq!(status, 401, "{what}");
        assert!(
            www.starts_with("Bearer error=\"invalid_token\""),
            "{what}: {www}"
        );
    }
    assert!(verifier.verify(&real).await.is_ok());
}

async fn logout_and_logout_all_are_enforced_through_the_feed(b: Backend) {
    let Some(iss) = issuer(b, |f| f).await else {
        return;
    };
    iss.app.create_user("alice", &[]).await;
    let verifier = iss.with_feed().build().await.unwrap();
    let one = iss.app.login_ok("alice").await;
    let two = iss.app.login_ok("alice").await;
    let three = iss.app.login_ok("alice").await;
    let token = |p: &Value| p["access_token"].as_str().unwrap().to_string();
    for p in [&one, &two, &three] {
        assert!(verifier.verify(&token(p)).await.is_ok());
    }
    // Logout ends one session: its token is refused within a few polls, the others stay.
    let r = iss
        .app
        .post_json("/logout", &json!({"refresh_token": one["refresh_token"]}))
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    eventually(3, "the logged-out token is refused", || async {
        verifier.verify(&token(&one)).await == Err(VerifyError::Revoked)
    })
    .await;
    assert!(verifier.verify(&token(&two)).await.is_ok());
    // Logout-all cuts off every token issued before it.
    let r = iss.app.post_bearer("/logout/all", &token(&two)).await;
    assert!(r.status().is_success(), "{}", r.status());
    eventually(3, "every session's token is refused", || async {
        verifier.verify(&token(&two)).await == Err(VerifyError::Revoked)
            && verifier.verify(&token(&three)).await == Err(VerifyError::Revoked)
    })
    .await;
    // A login after the cut-off is accepted.
    let fresh = iss.access("alice").await;
    assert!(verifier.verify(&fresh).await.is_ok());
    assert!(verifier.revocation_entries() >= 2);
    let (status, www, _) = call(&api(verifier), "/orders", Some(&token(&one))).await;
    assert_eq!(status, 401);
    assert!(www.contains("invalid_token"));
}

async fn a_disabled_user_is_refused_after_the_cutoff(b: Backend) {
    let Some(iss) = issuer(b, |f| f).await else {
        return;
    };
    let alice = iss.app.create_user("alice", &[]).await;
    iss.app.create_user("bob", &[]).await;
    iss.app.create_user("root", &["admin"]).await;
    let root = iss.access("root").await;
    let verifier = iss.with_feed().build().await.unwrap();
    let (a, bob) = (iss.access("alice").await, iss.access("bob").await);
    assert!(verifier.verify(&a).await.is_ok());
    let r = iss
        .app
        .admin(
            reqwest::Method::POST,
            &format!("/admin/users/{}/disable", alice.id),
            &root,
            None,
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    eventually(3, "the disabled user's token is refused", || async {
        verifier.verify(&a).await == Err(VerifyError::Revoked)
    })
    .await;
    assert!(
        verifier.verify(&bob).await.is_ok(),
        "another user is unaffected"
    );
    // Enabled again: tokens issued after the cut-off verify, the old one stays refused.
    let r = iss
        .app
        .admin(
            reqwest::Method::POST,
            &format!("/admin/users/{}/enable", alice.id),
            &root,
            None,
        )
        .await;
    assert!(r.status().is_success());
    let again = iss.access("alice").await;
    assert!(verifier.verify(&again).await.is_ok());
    assert_eq!(verifier.verify(&a).await, Err(VerifyError::Revoked));
}

async fn tessera_unreachable(b: Backend) {
    let Some(iss) = issuer(b, |f| {
        f.merge(Serialized::default("keys.jwks_max_age", "1s"))
            .merge(Serialized::default("keys.publish_ahead", "1s"))
    })
    .await
    else {
        return;
    };
    iss.app.create_user("alice", &[]).await;
    let stale = |policy| {
        iss.with_feed()
            .max_staleness(Duration::from_secs(1))
            .on_stale(policy)
            .build()
    };
    let closed = stale(StalePolicy::Reject).await.unwrap();
    let unavailable = stale(StalePolicy::Unavailable).await.unwrap();
    let open = stale(StalePolicy::Accept).await.unwrap();
    let keys_only = Verifier::discover(&iss.url, AUDIENCE).await.unwrap();
    let limited = Verifier::builder(&iss.url, AUDIENCE)
        .key_hard_limit(Duration::from_secs(4))
        .build()
        .await
        .unwrap();
    let token = iss.access("alice").await;
    iss.proxy.cut();
    // Right after the cut the cached state serves everyone.
    for v in [&closed, &unavailable, &open, &keys_only, &limited] {
        assert!(v.verify(&token).await.is_ok());
    }
    // The feed goes stale: fail closed (401, or 503 by option) or open, as configured.
    eventually(5, "the feed is stale", || async {
        closed.verify(&token).await == Err(VerifyError::RevocationStale)
    })
    .await;
    assert!(closed.revocations_stale());
    let (status, www, _) = call(&api(closed.clone()), "/orders", Some(&token)).await;
    assert_eq!(status, 401);
    assert!(www.contains("invalid_token"));
    eventually(5, "503 while stale", || async {
        call(&api(unavailable.clone()), "/orders", Some(&token))
            .await
            .0
            == 503
    })
    .await;
    eventually(5, "the fail-open verifier's feed is stale", || async {
        open.revocations_stale()
    })
    .await;
    assert!(open.verify(&token).await.is_ok(), "fail-open accepts");
    // The keys go stale but keep serving until the hard limit.
    eventually(5, "the key set is stale", || async {
        keys_only.keys_stale()
    })
    .await;
    assert!(keys_only.verify(&token).await.is_ok());
    eventually(8, "the hard limit refuses every key", || async {
        limited.verify(&token).await == Err(VerifyError::KeysUnavailable)
    })
    .await;
    assert!(keys_only.verify(&token).await.is_ok());
    // Back up: the feed catches up and the verifier accepts again.
    iss.proxy.restore();
    eventually(10, "the feed recovers", || async {
        closed.verify(&token).await.is_ok()
    })
    .await;
    eventually(10, "the keys recover", || async {
        !keys_only.keys_stale() && limited.verify(&token).await.is_ok()
    })
    .await;
}

/// `examples/orders-api`, run as its README says, against this Tessera.
async fn orders_api_example(b: Backend) {
    let Some(iss) = issuer(b, |f| f).await else {
        return;
    };
    iss.app.create_user("alice", &["admin"]).await;
    iss.app.create_user("bob", &[]).await;
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join("orders-api");
    assert!(bin.exists(), "{} is built by cargo test", bin.display());
    let mut child = tokio::process::Command::new(bin)
        .env("ISSUER", &iss.url)
        .env("AUDIENCE", AUDIENCE)
        .env("BIND", "127.0.0.1:0")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .env("FEED_CLIENT_ID", CLIENT_ID)
        .env("FEED_CLIENT_SECRET", CLIENT_SECRET)
        .env("FEED_POLL", "200ms")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // It says where it listens; the rest of its output is drained.
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let bind = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, addr)) = line.split_once("listening on http://") {
                return addr.trim().to_string();
            }
        }
        panic!("orders-api exited without listening");
    })
    .await
    .expect("orders-api did not start");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<String>| {
        let mut r = http.get(format!("http://{bind}{path}"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let calls = Arc::new(AtomicU64::new(0));
    eventually(30, "orders-api is up", || {
        calls.fetch_add(1, Ordering::Relaxed);
        async { get("/orders", None).await.is_ok() }
    })
    .await;
    let (alice, bob) = (iss.access("alice").await, iss.access("bob").await);
    let r = get("/orders", Some(alice.clone())).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["roles"], json!(["admin"]));
    assert_eq!(v["sub"], payload(&alice)["sub"]);
    assert_eq!(
        get("/admin", Some(alice.clone())).await.unwrap().status(),
        200
    );
    assert_eq!(get("/admin", Some(bob)).await.unwrap().status(), 403);
    let r = get("/orders", None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    // The feed is on: a logout-all at Tessera is enforced by the example.
    assert!(iss
        .app
        .post_bearer("/logout/all", &alice)
        .await
        .status()
        .is_success());
    eventually(5, "orders-api refuses the revoked token", || async {
        get("/orders", Some(alice.clone())).await.unwrap().status() == 401
    })
    .await;
    child.kill().await.unwrap();
}

/// A misconfigured verifier does not start: it says what is wrong.
async fn set_up_fails_loudly(b: Backend) {
    use tessera_verify::SetupError;
    let Some(iss) = issuer(b, |f| f).await else {
        return;
    };
    // RFC 8414 §3.3: the metadata's issuer must be exactly the configured one.
    let err = Verifier::discover(format!("{}/", iss.url), AUDIENCE)
        .await
        .unwrap_err();
    assert!(matches!(err, SetupError::IssuerMismatch { .. }), "{err}");
    let err = Verifier::discover("http://127.0.0.1:9", AUDIENCE)
        .await
        .unwrap_err();
    assert!(matches!(err, SetupError::Fetch { .. }), "{err}");
    let err = Verifier::builder(&iss.url, AUDIENCE)
        .with_revocation_feed(
            CLIENT_ID,
            secret("not-the-secret-at-all"),
            Duration::from_secs(1),
        )
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, SetupError::Feed(_)), "{err}");
    assert!(!err.to_string().contains("not-the-secret"), "{err}");
    let err = Verifier::builder(&iss.url, AUDIENCE)
        .algorithms(&[Algorithm::HS256])
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, SetupError::Config(_)), "{err}");
    // Keys of an algorithm the verifier does not accept: no usable key.
    let err = Verifier::builder(&iss.url, AUDIENCE)
        .algorithms(&[Algorithm::RS256])
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, SetupError::NoKeys(_)), "{err}");
}

/// The key cache against a JWKS server that counts: it revalidates in the background with
/// `If-None-Match`, keeps its keys on 304, and picks up a changed set without any request
/// asking for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_cache_revalidates_in_the_background() {
    use axum::http::{header, HeaderMap, StatusCode};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Served {
        body: String,
        etag: String,
        requests: u64,
        conditional: u64,
    }
    let first = generate(KeyAlg::Es256, 2048).unwrap();
    let second = generate(KeyAlg::Es256, 2048).unwrap();
    let set = |keys: &[&tessera::auth::keys::KeyMaterial]| {
        let keys: Vec<Value> = keys.iter().map(|k| k.jwk.clone()).collect();
        json!({ "keys": keys }).to_string()
    };
    let served = Arc::new(Mutex::new(Served {
        body: set(&[&first]),
        etag: "\"v1\"".into(),
        ..Served::default()
    }));
    let app = Router::new().route(
        "/jwks",
        get({
            let served = served.clone();
            move |headers: HeaderMap| async move {
                let mut s = served.lock().unwrap();
                s.requests += 1;
                let cache = (header::CACHE_CONTROL, "max-age=1".to_string());
                let tag = s.etag.clone();
                if headers.get(header::IF_NONE_MATCH).is_some() {
                    s.conditional += 1;
                }
                if headers.get(header::IF_NONE_MATCH).map(|v| v.as_bytes()) == Some(tag.as_bytes())
                {
                    return (
                        StatusCode::NOT_MODIFIED,
                        [cache, (header::ETAG, tag)],
                        String::new(),
                    );
                }
                (StatusCode::OK, [cache, (header::ETAG, tag)], s.body.clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let now = tessera::time::now_ms() / 1000;
    let claims = json!({"iss": "https://issuer.example", "sub": "u", "aud": AUDIENCE,
        "exp": now + 60, "iat": now, "nbf": now, "jti": "j", "sid": "s", "client_id": "c"});
    let verifier = Verifier::from_jwks_url(
        format!("http://{addr}/jwks"),
        "https://issuer.example",
        AUDIENCE,
    )
    .await
    .unwrap();
    let by_first = foreign_token(&first, &first.kid, &claims);
    let by_second = foreign_token(&second, &second.kid, &claims);
    assert!(verifier.verify(&by_first).await.is_ok());
    eventually(5, "two background revalidations", || async {
        served.lock().unwrap().conditional >= 2
    })
    .await;
    assert!(verifier.verify(&by_first).await.is_ok(), "kept on 304");
    // Fresh after each 304 (a loaded machine may run the refresh past its 1 s freshness for a
    // moment: the check waits for it, rather than reading one instant).
    eventually(5, "the set fresh after the revalidations", || async {
        !verifier.keys_stale()
    })
    .await;
    // The set changes: the background refresh brings the new key before any token needs it.
    {
        let mut s = served.lock().unwrap();
        s.body = set(&[&first, &second]);
        s.etag = "\"v2\"".into();
    }
    let seen = served.lock().unwrap().requests;
    eventually(5, "the changed set is fetched", || async {
        served.lock().unwrap().requests > seen
    })
    .await;
    eventually(2, "the new key verifies", || async {
        verifier.verify(&by_second).await.is_ok()
    })
    .await;
    server.abort();
}

/// Taking a role away cuts off the user's earlier access tokens everywhere; the session stays,
/// and a refresh brings a token with the new roles. Adding a role cuts nothing off.
async fn a_role_taken_away_reaches_the_verifier(b: Backend) {
    let Some(iss) = issuer(b, |f| f).await else {
        return;
    };
    iss.app.create_user("root", &["admin"]).await;
    let dave = iss.app.create_user("dave", &["admin"]).await;
    let root = iss.access("root").await;
    let verifier = iss.with_feed().build().await.unwrap();
    let api = api(verifier.clone());
    let pair = iss.app.login_ok("dave").await;
    let old = pair["access_token"].as_str().unwrap().to_string();
    assert_eq!(call(&api, "/admin", Some(&old)).await.0, 200);
    let set_roles = |roles: Value| {
        let (app, root) = (&iss.app, root.clone());
        let path = format!("/admin/users/{}/roles", dave.id);
        async move {
            let r = app
                .admin(
                    reqwest::Method::PUT,
                    &path,
                    &root,
                    Some(json!({ "roles": roles })),
                )
                .await;
            assert!(r.status().is_success(), "{}", r.status());
        }
    };
    let cut_off = || {
        iss.app.scalar_i64(
            "SELECT tokens_not_before FROM users WHERE username = $1",
            "dave",
        )
    };
    let before = cut_off().await;
    // Adding a role takes nothing away: the stored cut-off stays.
    set_roles(json!(["admin", "auditor"])).await;
    assert_eq!(cut_off().await, before);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(verifier.verify(&old).await.is_ok());
    assert_eq!(iss.app.userinfo(&old).await.status(), 200);
    // Taking admin away: the old token is refused by the verifier and by Tessera.
    set_roles(json!(["auditor"])).await;
    let stored = cut_off().await;
    assert!(
        stored > before && stored >= TestApp::claims(&old)["iat"].as_i64().unwrap() * 1000,
        "the cut-off is stored after the old token's issuance: {stored}"
    );
    eventually(3, "the demoted token is refused", || async {
        verifier.verify(&old).await == Err(VerifyError::Revoked)
    })
    .await;
    assert_eq!(iss.app.userinfo(&old).await.status(), 401);
    // The session stays: a refresh brings a token with the new roles.
    let r: Value = iss
        .app
        .refresh(pair["refresh_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let new = r["access_token"].as_str().unwrap();
    let c = verifier.verify(new).await.unwrap();
    assert_eq!(c.roles, vec!["auditor"]);
    assert_eq!(call(&api, "/admin", Some(new)).await.0, 403);
    assert_eq!(call(&api, "/orders", Some(new)).await.0, 200);
}

/// A feed that stops taking the verifier's cursor (a server upgraded to another cursor shape)
/// makes the verifier start over from the whole feed, instead of failing every poll until it
/// goes stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_cursor_starts_the_feed_over() {
    use axum::extract::Query;
    use std::collections::HashMap;
    use std::sync::Mutex;

    let log: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let app = Router::new().route(
        "/revocations",
        get({
            let log = log.clone();
            move |Query(q): Query<HashMap<String, String>>| async move {
                let since = q.get("since").cloned();
                log.lock().unwrap().push(since.clone());
                match since {
                    // The cursor this server handed out before its "upgrade".
                    Some(c) if c == "old-shape" => (
                        axum::http::StatusCode::BAD_REQUEST,
                        Json(json!({"error": "invalid_request"})),
                    ),
                    Some(_) => (
                        axum::http::StatusCode::OK,
                        Json(json!({"cursor": "new", "has_more": false})),
                    ),
                    None => (
                        axum::http::StatusCode::OK,
                        Json(json!({"cursor": "old-shape", "has_more": false})),
                    ),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let key = generate(KeyAlg::Es256, 2048).unwrap();
    let verifier = Verifier::builder("https://issuer.example", AUDIENCE)
        .jwks(json!({ "keys": [key.jwk] }).to_string())
        .with_revocation_feed(CLIENT_ID, secret(CLIENT_SECRET), Duration::from_millis(100))
        .revocation_feed_url(format!("http://{addr}/revocations"))
        .build()
        .await
        .unwrap();
    // First poll: no cursor, gets "old-shape"; next: refused; then from the start again.
    eventually(5, "the feed was read again from the start", || async {
        let log = log.lock().unwrap();
        log.iter().filter(|s| s.is_none()).count() >= 2
            && log.iter().any(|s| s.as_deref() == Some("old-shape"))
    })
    .await;
    assert!(!verifier.revocations_stale());
    server.abort();
}

/// `RequireAmr("mfa")` and `RequireAcr("2")` refuse a password-only token with 401
/// `insufficient_user_authentication` (RFC 9470 §3) and pass one from a login with a second
/// factor.
async fn an_api_can_demand_a_second_factor(b: Backend) {
    let Some(iss) = issuer(b, |f| f).await else {
        return;
    };
    iss.app.create_user("mia", &[]).await;
    let (totp, _, first) = crate::mfa::with_totp(&iss.app, "mia").await;
    let verifier = Verifier::discover(&iss.url, AUDIENCE).await.unwrap();
    async fn ok(c: Claims) -> Json<Value> {
        Json(json!({"sub": c.sub, "amr": c.amr, "acr": c.acr}))
    }
    let api = Router::new()
        .route("/mfa", get(ok).route_layer(RequireAmr("mfa")))
        .route("/strong", get(ok).route_layer(RequireAcr("2")))
        .route("/any", get(ok))
        .layer(VerifyLayer::new(verifier));
    let password_only = first["access_token"].as_str().unwrap();
    assert_eq!(call(&api, "/any", Some(password_only)).await.0, 200);
    for path in ["/mfa", "/strong"] {
        let (status, www, body) = call(&api, path, Some(password_only)).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(body["error"], "insufficient_user_authentication");
        assert!(www.contains("insufficient_user_authentication"), "{www}");
    }
    let token = crate::mfa::mfa_token(&iss.app, "mia").await;
    let r =
        crate::mfa::second_step(&iss.app, &token, "totp_code", &crate::mfa::code(&totp, 1)).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let strong = t["access_token"].as_str().unwrap();
    for path in ["/mfa", "/strong"] {
        let (status, _, body) = call(&api, path, Some(strong)).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["acr"], "2");
        assert_eq!(body["amr"], json!(["pwd", "otp", "mfa"]));
    }
}

/// The verifier's cache of verified tokens: one entry per good token however often it is sent,
/// none for forgeries, and a held token refused past `exp` plus leeway and once its key has
/// left the key set (revocations through the feed: the tests above verify each token before
/// revoking it, so they check a held token too).
async fn cached_tokens_die_with_their_expiry_and_their_key(b: Backend) {
    let Some(iss) = issuer(b, |f| {
        f.merge(Serialized::default("tokens.access_ttl", "2s"))
            .merge(Serialized::default("keys.jwks_max_age", "1s"))
    })
    .await
    else {
        return;
    };
    iss.app.create_user("alice", &[]).await;
    let verifier = iss
        .with_feed()
        .leeway(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let t = iss.access("alice").await;
    for _ in 0..3 {
        assert!(verifier.verify(&t).await.is_ok());
    }
    assert_eq!(verifier.cached_tokens(), 1);
    for i in 0..500 {
        let forged = format!("{}{}", &t[..t.len() - 4], ["AAAA", "BBBB"][i % 2]);
        assert!(verifier.verify(&forged).await.is_err());
    }
    assert_eq!(verifier.cached_tokens(), 1, "forgeries are never held");
    // A second token, first verified after its expiry: the path without the cache.
    let fresh = iss.access("alice").await;
    let exp = payload(&t)["exp"].as_i64().unwrap();
    let exp_fresh = payload(&fresh)["exp"].as_i64().unwrap();
    // From the second that exp + leeway names on (RFC 7519 §4.1.4: "on or after").
    let wait = (exp.max(exp_fresh) + 1) * 1000 + 100 - tessera::time::now_ms();
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
    assert_eq!(verifier.verify(&t).await, Err(VerifyError::Expired));
    assert_eq!(verifier.verify(&fresh).await, Err(VerifyError::Expired));

    let t = iss.access("alice").await;
    assert!(verifier.verify(&t).await.is_ok());
    assert!(verifier.verify(&t).await.is_ok());
    let kid = jsonwebtoken::decode_header(&t).unwrap().kid.unwrap();
    iss.app
        .exec_sql(format!(
            "UPDATE signing_keys SET remove_at = 1 WHERE kid = '{kid}'"
        ))
        .await;
    eventually(10, "the removed key's token is refused", || async {
        verifier.verify(&t).await.is_err()
    })
    .await;
}
