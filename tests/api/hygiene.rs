//! HTTP hygiene: limits, methods, request ids, the JWKS, health, and no 5xx from client input.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Backend, TestApp, PASSWORD};
use crate::on_both;

on_both!(
    limits_and_methods,
    jwks_is_cached_and_public_only,
    health_and_readiness,
    no_5xx_from_garbage,
    openapi_covers_every_endpoint,
    cors_only_for_configured_origins,
    answers_made_below_the_router_keep_the_contract,
    openapi_document_is_valid_openapi_3_1,
    every_answer_carries_the_security_headers,
    an_answer_before_the_body_is_read_closes_the_connection,
);

async fn limits_and_methods(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    // Body over 16 KiB: 413 with the contract's body, with and without Content-Length.
    let big = json!({"username": "alice", "password": "x".repeat(20_000)}).to_string();
    let r = app
        .client
        .post(app.url("/login"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(big.into_bytes())]);
    let r = app
        .client
        .post(app.url("/login"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Wrong method: 405 with a JSON body; unknown path: 404.
    let r = app.client.get(app.url("/login")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = app.client.delete(app.url("/refresh")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-request-id"));
    // A client's request id is echoed; otherwise one is made.
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-123");
    // One that logs and the audit trail could not carry exactly is replaced.
    for unusable in ["x".repeat(129), "a b".to_string()] {
        let r = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", &unusable)
            .send()
            .await
            .unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(id, unusable);
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    }
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    // An oversized request head is refused (431) and the server keeps serving.
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let _ = s.write_all(req.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let answer = String::from_utf8_lossy(&buf).to_string();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(answer.contains("x-request-id: "), "{answer}");
    assert!(answer.contains(r#""error":"invalid_request""#), "{answer}");
    // RFC 9112 §3.2: an HTTP/1.1 request without a Host field, or any with two, is 400 (both
    // were served); HTTP/1.0 may leave it out.
    for (head, status) in [
        ("GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", "400"),
        (
            "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
            "400",
        ),
        ("GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", "400"),
        ("GET /healthz HTTP/1.0\r\n\r\n", "200"),
        (
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:99999\r\nConnection: close\r\n\r\n",
            "400",
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            "200",
        ),
    ] {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        let answer = String::from_utf8_lossy(&buf).to_string();
        assert_eq!(answer.split(' ').nth(1), Some(status), "{head}: {answer}");
        if status == "400" {
            assert!(answer.contains(r#""error":"invalid_request""#), "{answer}");
        }
    }
    app.login_ok("alice").await;
}

/// Sends `head` and `body` on one keep-alive connection, then a second request on it; the first
/// answer's head, and whether the second got an answer.
async fn two_on_one_connection(app: &TestApp, head: &str, body: &[u8]) -> (String, bool) {
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let _ = s.write_all(body).await;
    // The first answer (its head and JSON body arrive together on loopback).
    let mut buf = vec![0u8; 16 * 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    let first = String::from_utf8_lossy(&buf[..n]).to_string();
    let _ = s
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    let second = String::from_utf8_lossy(&rest).contains("HTTP/1.1 200");
    (
        first
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_lowercase(),
        second,
    )
}

/// An answer given before the request's body was read (a refused content type, a body over
/// the limit) says `Connection: close` (RFC 9112 §9.6): the connection cannot carry another
/// request, and a client that reused it lost that request without a word. An answer after
/// the body was read keeps the connection.
async fn an_answer_before_the_body_is_read_closes_the_connection(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    let body = vec![b'x'; 4000];
    for (path, content_type) in [
        ("/password/forgot", "text/plain"),
        ("/login", "application/json;;;=="),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let (first, _) = two_on_one_connection(&app, &head, &body).await;
        assert!(first.starts_with("http/1.1 4"), "{path}: {first}");
        assert!(first.contains("\r\nconnection: close"), "{path}: {first}");
    }
    // Over the body limit (16 KiB), with its length announced: 413 and close.
    let big = vec![b'x'; 20_000];
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        big.len()
    );
    let (first, _) = two_on_one_connection(&app, &head, &big).await;
    assert!(first.starts_with("http/1.1 413"), "{first}");
    assert!(first.contains("\r\nconnection: close"), "{first}");
    // The same from an HTTP/1.0 client asking to keep the connection: it says `close` alone
    // (it said `close` and `keep-alive` both), and closes.
    let head = format!(
        "POST /login HTTP/1.0\r\nConnection: keep-alive\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (first, second) = two_on_one_connection(&app, &head, &body).await;
    assert!(first.starts_with("http/1.0 4"), "{first}");
    assert_eq!(
        first.matches("\r\nconnection:").collect::<Vec<_>>(),
        ["\r\nconnection:"],
        "{first}"
    );
    assert!(first.contains("\r\nconnection: close"), "{first}");
    assert!(!second, "the connection was closed");
    // A wrong password, its body read: 401, and the connection serves the next request.
    let login = json!({"username": "alice", "password": "wrong password"}).to_string();
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        login.len()
    );
    let (first, second) = two_on_one_connection(&app, &head, login.as_bytes()).await;
    assert!(first.starts_with("http/1.1 401"), "{first}");
    assert!(!first.contains("connection: close"), "{first}");
    assert!(second, "the kept connection answered the next request");
}

async fn jwks_is_cached_and_public_only(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let r = app.get("/.well-known/jwks.json").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    assert_eq!(r.headers()["content-type"], "application/json");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"));
    let v: Value = r.json().await.unwrap();
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!(k["use"], "sig");
    assert_eq!(k["alg"], "ES256");
    assert_eq!(k["kty"], "EC");
    assert_eq!(k["crv"], "P-256");
    for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        assert!(
            k.get(private).is_none(),
            "private member {private} published"
        );
    }
    // The kid matches the one tokens carry.
    app.create_user("alice", &[]).await;
    let t = app.login_ok("alice").await;
    let h = jsonwebtoken::decode_header(t["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(h.kid.as_deref(), k["kid"].as_str());
    // Conditional GET.
    let r = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The private key is sealed at rest: the stored bytes do not contain the PKCS#8 header.
    let n = app
        .scalar_i64(
            "SELECT COUNT(*) FROM signing_keys WHERE public_jwk LIKE '%' || $1 || '%'",
            "\"d\"",
        )
        .await;
    assert_eq!(n, 0);
}

async fn health_and_readiness(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ready");
    assert_eq!(v["database"], "ok");
    assert_eq!(v["signing_key"], "ok");
}

async fn no_5xx_from_garbage(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    let t = app.login_ok("alice").await;
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\xff\xfe\x00garbage".to_vec(),
        b"{\"username\":\"\\ud800\",\"password\":\"x\"}".to_vec(),
        b"{\"username\":\"alice\",\"password\":\"x\",\"extra\":{\"deep\":[[[[[[[[[[]]]]]]]]]]}}"
            .to_vec(),
        "[".repeat(5000).into_bytes(),
        json!({"username": "a\u{0000}lice", "password": "x"})
            .to_string()
            .into_bytes(),
        json!({"username": "x".repeat(300), "password": "x"})
            .to_string()
            .into_bytes(),
        json!({"refresh_token": "x".repeat(5000)})
            .to_string()
            .into_bytes(),
    ];
    for path in ["/login", "/refresh", "/logout", "/userinfo"] {
        for body in &bodies {
            for ct in [
                "application/json",
                "text/plain",
                "application/json; charset=utf-8",
            ] {
                let r = app
                    .client
                    .post(app.url(path))
                    .header("content-type", ct)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let what = format!(
                    "{path} {ct} {:?} -> {}",
                    String::from_utf8_lossy(&body[..body.len().min(40)]),
                    r.status()
                );
                // Only /logout may succeed here (an unknown token is a no-op, RFC 7009 style).
                assert!(
                    r.status().is_client_error() || (path == "/logout" && r.status() == 204),
                    "{what}"
                );
                if r.status().is_client_error() {
                    let v: Value = r.json().await.unwrap();
                    assert!(v["error"].is_string());
                }
            }
        }
    }
    // Stored data survived: the user can still log in and the earlier session still refreshes.
    app.login_ok("alice").await;
    assert_eq!(
        app.refresh(t["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
}

async fn openapi_covers_every_endpoint(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["openapi"].as_str().unwrap().starts_with("3.1"));
    let expected = [
        ("/login", "post"),
        ("/refresh", "post"),
        ("/logout", "post"),
        ("/logout/all", "post"),
        ("/userinfo", "get"),
        ("/token", "post"),
        ("/revoke", "post"),
        ("/introspect", "post"),
        ("/revocations", "get"),
        ("/.well-known/jwks.json", "get"),
        ("/.well-known/oauth-authorization-server", "get"),
        ("/.well-known/openid-configuration", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ];
    for (path, method) in expected {
        assert!(
            v["paths"][path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
        // ... and the documented route really exists on the server (no 404).
        let r = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 404, "{method} {path} documented but not served");
    }
    assert!(v["components"]["schemas"]["ErrorBody"].is_object());
    assert!(v["components"]["securitySchemes"]["bearer"].is_object());
}

async fn cors_only_for_configured_origins(b: Backend) {
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(figment::providers::Serialized::default(
            "http.cors_origins",
            vec!["https://app.example"],
        ))
    })
    .await
    else {
        return;
    };
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/login"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let r = preflight("https://app.example").await.unwrap();
    assert!(r.status().is_success());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    let r = preflight("https://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // Nor does it say credentials are allowed (it did, to every origin and to none).
    assert!(r
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
    let r = app.get("/.well-known/jwks.json").await;
    assert!(r
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
    // A real request from the allowed origin carries the header; others do not.
    app.create_user("alice", &[]).await;
    let r = app
        .client
        .post(app.url("/login"))
        .header("origin", "https://app.example")
        .json(&json!({"username": "alice", "password": crate::helpers::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    // Without configuration, no origin is allowed.
    let Some(plain) = TestApp::spawn(b).await else {
        return;
    };
    let r = plain
        .client
        .request(reqwest::Method::OPTIONS, plain.url("/login"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

/// The answers the limits make (431 for a large head, 503 for a timeout) carry the JSON error
/// body, `x-request-id` and, for a listed origin, CORS; preflights allow every method the
/// routes use and the headers clients send.
async fn answers_made_below_the_router_keep_the_contract(b: Backend) {
    use figment::providers::Serialized;
    const ORIGIN: &str = "https://app.example";
    let Some(app) = TestApp::spawn_with(b, |f| {
        f.merge(Serialized::default("http.cors_origins", vec![ORIGIN]))
            .merge(Serialized::default("http.request_timeout", "5ms"))
    })
    .await
    else {
        return;
    };
    let contract = |r: reqwest::Response, status: u16, error: &'static str| async move {
        assert_eq!(r.status(), status);
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            ORIGIN,
            "{status}"
        );
        assert!(r.headers().contains_key("x-request-id"), "{status}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], error, "{status}");
    };
    // A head over 16 KiB (and under hyper's hard cap).
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("origin", ORIGIN)
        .header("x-big", "a".repeat(20_000))
        .send()
        .await
        .unwrap();
    contract(r, 431, "invalid_request").await;
    // A small head with too many fields (a proxy may add them).
    let mut req = app.client.get(app.url("/healthz")).header("origin", ORIGIN);
    for i in 0..110 {
        req = req.header(format!("x-h{i}"), "1");
    }
    contract(req.send().await.unwrap(), 431, "invalid_request").await;
    // A declared body over the limit is refused at once, not after waiting for it.
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        b"POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), s.read_to_end(&mut buf)).await;
    let answer = String::from_utf8_lossy(&buf).to_string();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""error":"invalid_request""#), "{answer}");
    // A login takes an argon2 verification, far longer than 5 ms.
    app.create_user("alice", &[]).await;
    let r = app
        .client
        .post(app.url("/login"))
        .header("origin", ORIGIN)
        .json(&json!({"username": "alice", "password": crate::helpers::PASSWORD}))
        .send()
        .await
        .unwrap();
    contract(r, 503, "temporarily_unavailable").await;
    // Preflights for PUT with the headers a browser app sends.
    let r = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/admin/users/x/roles"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "PUT")
        .header(
            "access-control-request-headers",
            "authorization, content-type, x-request-id",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let methods = r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_ascii_uppercase();
    assert!(methods.contains("PUT"), "{methods}");
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for h in ["authorization", "content-type", "x-request-id"] {
        assert!(allowed.contains(h), "{h} not in {allowed}");
    }
}

/// `/openapi.json` passes `openapi-spec-validator` (PyPI) as OpenAPI 3.1, every error of it.
async fn openapi_document_is_valid_openapi_3_1(b: Backend) {
    use std::process::Command;
    let available = Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs openapi-spec-validator (pip install openapi-spec-validator)"
        );
        eprintln!("*** OpenAPI validation SKIPPED: pip install openapi-spec-validator ***");
        return;
    }
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let doc = app.get("/openapi.json").await.text().await.unwrap();
    let path = std::env::temp_dir().join(format!(
        "tessera-openapi-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, &doc).unwrap();
    const CHECK: &str = "import json, sys\n\
from openapi_spec_validator import OpenAPIV31SpecValidator\n\
doc = json.load(open(sys.argv[1]))\n\
errors = list(OpenAPIV31SpecValidator(doc).iter_errors())\n\
for e in errors: print(list(e.absolute_path), e.message)\n\
sys.exit(1 if errors else 0)";
    let out = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            Command::new("python3")
                .args(["-c", CHECK, path.to_str().unwrap()])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["openapi"], "3.1.0");
}

/// Every answer, success or error, carries the headers that keep a browser from treating it
/// as a page: nosniff, no referrer, a CSP that loads nothing and forbids framing.
async fn every_answer_carries_the_security_headers(b: Backend) {
    let Some((app, _)) = TestApp::with_user(b, "alice", &[]).await else {
        return;
    };
    let login = app.login("alice", PASSWORD).await;
    let answers = vec![
        login,
        app.login("alice", "wrong").await,
        app.get("/.well-known/jwks.json").await,
        app.get("/healthz").await,
        app.get("/nowhere").await,
        app.userinfo("garbage").await,
    ];
    for r in answers {
        let h = r.headers();
        let what = format!("{} {}", r.status(), r.url().path());
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
        assert_eq!(
            h["content-security-policy"], "default-src 'none'; frame-ancestors 'none'",
            "{what}"
        );
    }
}
