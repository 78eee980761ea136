//! The command line: `serve` (the default), `migrate`, `user …`, `keys list`, `healthcheck`.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::SecretString;

use crate::app::{self, Application};
use crate::auth::keys::{self, Activation, KeyAlg};
use crate::auth::{now_ms, Username};
use crate::config::Settings;

#[derive(Debug, Parser)]
#[command(name = "tessera", version, about = "Tessera authentication server")]
pub struct Cli {
    /// A TOML file layered over the built-in defaults.
    #[arg(long, global = true, env = "TESSERA_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the server (the default). Pending migrations run first.
    Serve,
    /// Run pending database migrations and exit (idempotent).
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Benchmark ceiling: argon2id verifications per second on all cores.
    #[command(hide = true)]
    BenchHash {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Benchmark ceiling: access-token verifications per second on all cores.
    #[command(hide = true)]
    BenchVerify {
        #[arg(long, default_value = "ES256")]
        alg: String,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Benchmark baseline: a hello-world server on Tessera's serve loop.
    #[command(hide = true)]
    BenchHello {
        #[arg(long, default_value = "127.0.0.1:8090")]
        bind: String,
    },
    /// Exit 0 when the local server answers /readyz with 200 (the container probe).
    Healthcheck {
        /// Base URL to probe; defaults to http://<http.bind>.
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user.
    Add {
        username: String,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        /// A role to grant (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// List users.
    List,
    /// Disable a user: logins, refreshes and existing access tokens stop working.
    Disable { username: String },
    /// Enable a disabled user.
    Enable { username: String },
    /// Set a new password; every session of the user is revoked.
    SetPassword {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Replace the user's roles (no --role clears them).
    SetRoles {
        username: String,
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// End every session of the user and cut off every access token issued so far.
    Revoke { username: String },
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// List signing keys with their state and times.
    List,
    /// Publish a new key now; it starts signing after keys.publish_ahead, and the current key
    /// retires then.
    Rotate,
    /// Bring your own PKCS#8 private key (EC P-256, Ed25519, or RSA of at least 2048 bits).
    Import {
        /// The PEM file ("-----BEGIN PRIVATE KEY-----").
        #[arg(long)]
        pem: PathBuf,
        /// The kid to publish; defaults to the RFC 7638 thumbprint.
        #[arg(long)]
        kid: Option<String>,
        /// Sign with it at once, skipping the publish-ahead wait (only when verifiers already
        /// trust this key).
        #[arg(long)]
        activate_now: bool,
    },
}

/// Runs the parsed command line.
pub async fn run(cli: Cli, settings: Settings) -> ExitCode {
    let result = match cli.cmd.unwrap_or(Cmd::Serve) {
        Cmd::Serve => serve(settings).await,
        Cmd::Migrate => migrate(settings).await,
        Cmd::User(u) => user(u, settings).await,
        Cmd::Keys(KeysCmd::List) => keys_list(settings).await,
        Cmd::Keys(KeysCmd::Rotate) => keys_rotate(settings).await,
        Cmd::Keys(KeysCmd::Import {
            pem,
            kid,
            activate_now,
        }) => keys_import(settings, pem, kid, activate_now).await,
        Cmd::Healthcheck { url } => healthcheck(url, &settings).await,
        Cmd::BenchHash { seconds } => {
            let p = settings.password.clone();
            print_json(
                tokio::task::spawn_blocking(move || crate::bench::hash_ceiling(&p, seconds)).await,
            )
        }
        Cmd::BenchVerify { alg, seconds } => {
            let alg = KeyAlg::parse(&alg).ok_or("alg must be ES256, EdDSA or RS256");
            match alg {
                Ok(alg) => {
                    let s = settings.clone();
                    print_json(
                        tokio::task::spawn_blocking(move || {
                            crate::bench::verify_ceiling(&s, alg, seconds)
                        })
                        .await,
                    )
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Cmd::BenchHello { bind } => crate::bench::hello(&settings, &bind).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
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

async fn serve(settings: Settings) -> Result<(), String> {
    let app = Application::build(settings)
        .await
        .map_err(|e| e.to_string())?;
    app.run(app::shutdown_signal()).await;
    Ok(())
}

async fn migrate(settings: Settings) -> Result<(), String> {
    let store = crate::store::connect(&settings.database)
        .await
        .map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    println!("migrations applied");
    Ok(())
}

fn read_password(from_stdin: bool) -> Result<SecretString, String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let pw = line.strip_suffix('\n').unwrap_or(&line);
        let pw = pw.strip_suffix('\r').unwrap_or(pw);
        // Drain the rest so a pipe writer never sees EPIPE.
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        return Ok(SecretString::from(pw.to_string()));
    }
    let a = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
    let b = rpassword::prompt_password("Repeat: ").map_err(|e| e.to_string())?;
    if a != b {
        return Err("passwords do not match".into());
    }
    Ok(SecretString::from(a))
}

async fn user(cmd: UserCmd, settings: Settings) -> Result<(), String> {
    let auth = app::services(settings).await.map_err(|e| e.to_string())?;
    let store = auth.store.clone();
    let norm = |raw: &str| {
        Username::parse(raw)
            .map(|u| u.as_str().to_string())
            .map_err(|e| e.to_string())
    };
    let found = |ok: bool, name: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("no such user: {name}"))
        }
    };
    match cmd {
        UserCmd::Add {
            username,
            password_stdin,
            roles,
        } => {
            let pw = read_password(password_stdin)?;
            let u = auth
                .create_user(&username, pw, roles)
                .await
                .map_err(|e| e.to_string())?;
            println!("created user {} ({})", u.username, u.id);
            Ok(())
        }
        UserCmd::List => {
            let users = store.list_users().await.map_err(|e| e.to_string())?;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "{:<36}  {:<24}  {:<8}  ROLES",
                "ID", "USERNAME", "STATUS"
            );
            for u in users {
                let status = if u.disabled { "disabled" } else { "active" };
                let _ = writeln!(
                    out,
                    "{:<36}  {:<24}  {:<8}  {}",
                    u.id,
                    u.username,
                    status,
                    u.roles.join(",")
                );
            }
            Ok(())
        }
        UserCmd::Disable { username } => {
            let n = norm(&username)?;
            found(
                auth.set_disabled(&n, true)
                    .await
                    .map_err(|e| e.to_string())?,
                &n,
            )?;
            println!("disabled {n}");
            Ok(())
        }
        UserCmd::Enable { username } => {
            let n = norm(&username)?;
            found(
                auth.set_disabled(&n, false)
                    .await
                    .map_err(|e| e.to_string())?,
                &n,
            )?;
            println!("enabled {n}");
            Ok(())
        }
        UserCmd::SetPassword {
            username,
            password_stdin,
        } => {
            let pw = read_password(password_stdin)?;
            let ok = auth
                .set_password(&username, pw)
                .await
                .map_err(|e| e.to_string())?;
            found(ok, &username)?;
            println!("password changed; sessions revoked");
            Ok(())
        }
        UserCmd::SetRoles { username, roles } => {
            let n = norm(&username)?;
            let roles = crate::auth::username::parse_roles(roles).map_err(|e| e.to_string())?;
            found(
                auth.set_roles(&n, &roles)
                    .await
                    .map_err(|e| e.to_string())?,
                &n,
            )?;
            println!("roles of {n}: {}", roles.join(","));
            Ok(())
        }
        UserCmd::Revoke { username } => {
            let n = norm(&username)?;
            let user = store
                .user_by_username(&n)
                .await
                .map_err(|e| e.to_string())?;
            let user = user.ok_or_else(|| format!("no such user: {n}"))?;
            auth.revoke_user(user.id, "revoked_by_operator")
                .await
                .map_err(|e| e.to_string())?;
            println!("revoked every session and access token of {n}");
            Ok(())
        }
    }
}

async fn keys_rotate(settings: Settings) -> Result<(), String> {
    let auth = app::services(settings).await.map_err(|e| e.to_string())?;
    let s = &auth.settings.keys;
    let alg = s.algorithm;
    let bits = s.rsa_bits;
    let m = tokio::task::spawn_blocking(move || keys::generate(alg, bits))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let store = auth.store.as_ref();
    let kid = auth
        .keys
        .add(
            store,
            &m,
            Activation::AfterPublishAhead,
            auth.schedule(),
            None,
            now_ms(),
        )
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "published {} ({}); it signs after {}",
        kid.unwrap_or_default(),
        alg.name(),
        humantime::format_duration(auth.settings.publish_ahead())
    );
    Ok(())
}

async fn keys_import(
    settings: Settings,
    pem: PathBuf,
    kid: Option<String>,
    now: bool,
) -> Result<(), String> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(&pem).map_err(|e| format!("cannot read {}: {e}", pem.display()))?,
    );
    let m = keys::import_pem(&text, kid).map_err(|e| e.to_string())?;
    let auth = app::services(settings).await.map_err(|e| e.to_string())?;
    let activation = if now {
        Activation::Now
    } else {
        Activation::AfterPublishAhead
    };
    let store = auth.store.as_ref();
    auth.keys
        .add(store, &m, activation, auth.schedule(), None, now_ms())
        .await
        .map_err(|e| e.to_string())?;
    let when = if now {
        "now".to_string()
    } else {
        format!(
            "after {}",
            humantime::format_duration(auth.settings.publish_ahead())
        )
    };
    println!("imported {} ({}); it signs {when}", m.kid, m.alg.name());
    Ok(())
}

async fn keys_list(settings: Settings) -> Result<(), String> {
    let auth = app::services(settings).await.map_err(|e| e.to_string())?;
    let rows = auth.store.keys().await.map_err(|e| e.to_string())?;
    let now = now_ms();
    let fmt = |t: Option<i64>| match t {
        Some(ms) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
        )
        .to_string(),
        None => "-".into(),
    };
    println!(
        "{:<44}  {:<6}  {:<8}  {:<20}  {:<20}  {:<20}  REMOVE",
        "KID", "ALG", "STATE", "PUBLISH", "ACTIVATE", "RETIRE"
    );
    for k in rows {
        let state = if k.remove_at.is_some_and(|t| t <= now) {
            "removed"
        } else if k.retire_at.is_some_and(|t| t <= now) {
            "retired"
        } else if k.activate_at <= now {
            "active"
        } else {
            "pending"
        };
        println!(
            "{:<44}  {:<6}  {:<8}  {:<20}  {:<20}  {:<20}  {}",
            k.kid,
            k.alg,
            state,
            fmt(Some(k.publish_at)),
            fmt(Some(k.activate_at)),
            fmt(k.retire_at),
            fmt(k.remove_at)
        );
    }
    Ok(())
}

/// A dependency-free HTTP/1.1 probe of `/readyz`.
async fn healthcheck(url: Option<String>, settings: &Settings) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let base = url.unwrap_or_else(|| format!("http://{}", settings.http.bind));
    let hostport = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let connect_to = hostport
        .replace("0.0.0.0", "127.0.0.1")
        .replace("[::]", "[::1]");
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(&connect_to)
            .await
            .map_err(|e| e.to_string())?;
        let req = format!("GET /readyz HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 256];
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        if head.starts_with("HTTP/1.1 200") {
            Ok(())
        } else {
            Err(format!("not ready: {}", head.lines().next().unwrap_or("")))
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), probe)
        .await
        .map_err(|_| "timed out".to_string())?
}
