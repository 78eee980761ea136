//! orders-api: a small API whose every route needs a Tessera access token, and `/admin` the
//! `admin` role. `cargo run --release --example orders-api`, with `ISSUER` and `AUDIENCE`, and
//! optionally `BIND` (default 127.0.0.1:8081) and `FEED_CLIENT_ID`, `FEED_CLIENT_SECRET`,
//! `FEED_POLL` (default 5s) to enforce revocations from Tessera's feed.

use axum::{routing::get, Json, Router};
use serde_json::{json, Value};
use tessera_verify::{Claims, RequireRole, Verifier, VerifyLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut verifier = Verifier::builder(
        env("ISSUER").ok_or("set ISSUER (Tessera's tokens.issuer)")?,
        env("AUDIENCE").ok_or("set AUDIENCE (Tessera's tokens.audience)")?,
    );
    if let (Some(id), Some(secret)) = (env("FEED_CLIENT_ID"), env("FEED_CLIENT_SECRET")) {
        let poll = humantime::parse_duration(&env("FEED_POLL").unwrap_or("5s".into()))?;
        verifier = verifier.with_revocation_feed(id, secret.into(), poll);
    }
    // RequireRole sits inside VerifyLayer: it reads the claims VerifyLayer verified.
    let app = Router::new()
        .route("/orders", get(orders))
        .route("/admin", get(admin).route_layer(RequireRole("admin")))
        .layer(VerifyLayer::new(verifier.build().await?));
    let listener = tokio::net::TcpListener::bind(env("BIND").unwrap_or("127.0.0.1:8081".into()));
    let addr = listener.await?;
    tracing::info!("orders-api listening on http://{}", addr.local_addr()?);
    let listener = addr;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn orders(claims: Claims) -> Json<Value> {
    Json(json!({ "sub": claims.sub, "roles": claims.roles }))
}

async fn admin(claims: Claims) -> Json<Value> {
    Json(json!({ "sub": claims.sub, "admin": true }))
}
