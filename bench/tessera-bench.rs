//! `tessera-bench`: the ceilings `bench/run` measures Tessera against: what this machine can do
//! without Tessera around it, measured in the same run as Tessera itself, so every figure is
//! reported as a ratio to its own limit. Built for `bench/run` only
//! (`cargo build --release --example tessera-bench`); not part of the product binary.
//!
//! - `hash`: argon2id verifications per second, one thread per core, with the configured
//!   parameters (the login ceiling);
//! - `verify`: access-token signature verifications per second, one thread per core (the
//!   `/userinfo` ceiling);
//! - `hello`: a hello-world route on Tessera's own serve loop, or the same answer as another
//!   route's (the JWKS ceiling: the JWKS's bytes on a bare axum router).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher, Version};
use serde_json::json;

use clap::{Parser, Subcommand};
use tessera::auth::keys::{generate, sealed_row, KeyAlg, KeyRing, MasterKey};
use tessera::auth::tokens::{self, Expect};
use tessera::config::{PasswordSettings, Settings};
use tessera::time::now_ms;

#[derive(Parser)]
#[command(name = "tessera-bench", about = "Machine ceilings for bench/run")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// argon2id verifications per second on all cores.
    Hash {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Access-token verifications (and signatures) per second on all cores.
    Verify {
        #[arg(long, default_value = "ES256")]
        alg: String,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// A hello-world server on Tessera's serve loop, until Ctrl-C or SIGTERM: `GET /`
    /// answers "hello", or with `--body-file` that file's bytes and the `--header`s given
    /// (the JWKS ceiling: the same answer on a bare axum router).
    Hello {
        #[arg(long, default_value = "127.0.0.1:8090")]
        bind: String,
        /// The answer's body.
        #[arg(long)]
        body_file: Option<std::path::PathBuf>,
        /// An answer header, `name: value` (repeatable).
        #[arg(long)]
        header: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match Settings::load(None) {
        Err(e) => Err(e.to_string()),
        Ok(settings) => match cli.cmd {
            Cmd::Hash { seconds } => {
                let p = settings.password.clone();
                print_json(tokio::task::spawn_blocking(move || hash_ceiling(&p, seconds)).await)
            }
            Cmd::Verify { alg, seconds } => match KeyAlg::parse(&alg) {
                Some(alg) => print_json(
                    tokio::task::spawn_blocking(move || verify_ceiling(&settings, alg, seconds))
                        .await,
                ),
                None => Err("alg must be ES256, EdDSA or RS256".into()),
            },
            Cmd::Hello {
                bind,
                body_file,
                header,
            } => hello(&settings, &bind, body_file, &header).await,
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn print_json(
    r: Result<Result<serde_json::Value, String>, tokio::task::JoinError>,
) -> Result<(), String> {
    let v = r.map_err(|e| e.to_string())??;
    println!("{v}");
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Runs `work` on every core for `secs` seconds; returns operations per second.
fn on_all_cores(secs: u64, work: impl Fn() -> bool + Send + Sync + 'static) -> f64 {
    let work = Arc::new(work);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..cores())
        .map(|_| {
            let (work, stop, done) = (work.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if work() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// argon2id verifications per second on all cores (memory reused per thread, as in the server).
fn hash_ceiling(p: &PasswordSettings, secs: u64) -> Result<serde_json::Value, String> {
    let params = Params::new(p.m_cost, p.t_cost, p.p_cost, None).map_err(|e| e.to_string())?;
    let a2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let phc = a2
        .hash_password(b"benchmark password")
        .map_err(|e| e.to_string())?
        .to_string();
    let parsed = argon2::PasswordHash::new(&phc).map_err(|e| e.to_string())?;
    let salt = parsed.salt.ok_or("no salt")?;
    let blocks = params.block_count();
    let rate = on_all_cores(secs, move || {
        thread_local!(static MEM: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) });
        let mut out = [0u8; 32];
        MEM.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() < blocks {
                m.resize(blocks, Block::default());
            }
            a2.hash_password_into_with_memory(
                b"benchmark password",
                salt.as_ref(),
                &mut out,
                &mut m[..blocks],
            )
            .is_ok()
        })
    });
    Ok(json!({ "argon2_verifies_per_sec": rate, "cores": cores(),
               "m_cost": p.m_cost, "t_cost": p.t_cost, "p_cost": p.p_cost }))
}

/// Access-token verifications per second on all cores, with the server's own verify function.
fn verify_ceiling(
    settings: &Settings,
    alg: KeyAlg,
    secs: u64,
) -> Result<serde_json::Value, String> {
    let master = MasterKey::from_base64(&MasterKey::generate_base64().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let m = generate(alg, 2048).map_err(|e| e.to_string())?;
    let row = sealed_row(&master, &m, 0, 0, None).map_err(|e| e.to_string())?;
    let now = now_ms();
    let ring = Arc::new(KeyRing::build(&[row], &master, now));
    let key = ring.active().ok_or("no key")?.clone();
    let t = &settings.tokens;
    let claims = json!({
        "iss": t.issuer, "sub": uuid::Uuid::now_v7(), "aud": t.audience,
        "exp": now / 1000 + 600, "iat": now / 1000, "nbf": now / 1000,
        "jti": uuid::Uuid::now_v7().to_string(), "sid": uuid::Uuid::now_v7(),
        "client_id": "bench", "roles": ["user"],
    });
    let token = tokens::sign(&key, &claims).map_err(|e| e.to_string())?;
    let (issuer, audience, leeway) = (t.issuer.clone(), t.audience.clone(), t.leeway.as_secs());
    let sign_per_sec = {
        let key = key.clone();
        let claims = claims.clone();
        on_all_cores(1, move || tokens::sign(&key, &claims).is_ok())
    };
    let rate = on_all_cores(secs, move || {
        let expect = Expect {
            issuer: &issuer,
            audience: &audience,
            also: &[],
            leeway_secs: leeway,
        };
        tokens::verify(&token, &ring, &expect, now_ms() / 1000).is_ok()
    });
    Ok(
        json!({ "alg": alg.name(), "verifies_per_sec": rate, "signs_per_sec": sign_per_sec, "cores": cores() }),
    )
}

/// Serves a hello-world on `bind` with Tessera's own serve loop, until Ctrl-C or SIGTERM.
async fn hello(
    settings: &Settings,
    bind: &str,
    body_file: Option<std::path::PathBuf>,
    headers: &[String],
) -> Result<(), String> {
    let body = match body_file {
        Some(path) => bytes::Bytes::from(std::fs::read(&path).map_err(|e| e.to_string())?),
        None => bytes::Bytes::from_static(b"hello"),
    };
    let mut map = axum::http::HeaderMap::new();
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("--header {h:?}: expected name: value"))?;
        map.append(
            axum::http::HeaderName::try_from(name.trim()).map_err(|e| e.to_string())?,
            axum::http::HeaderValue::try_from(value.trim()).map_err(|e| e.to_string())?,
        );
    }
    let router =
        axum::Router::new().route("/", axum::routing::get(move || async move { (map, body) }));
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "{}",
        json!({ "listening": listener.local_addr().map_err(|e| e.to_string())?.to_string() })
    );
    tessera::http::serve::serve(
        listener,
        router,
        &tessera::http::guard::NO_WRITES,
        &settings.http,
        tessera::app::shutdown_signal(),
    )
    .await;
    Ok(())
}
