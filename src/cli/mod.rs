//! The command line: `serve` (the default), `migrate`, `user …`, `keys …`, `healthcheck`.
//!
//! One function per subcommand. Commands that change something start the domain service on a
//! migrated store (`app::services`); read-only ones (`user list`, `keys list`) open only the
//! store, through `auth::Catalog`: they never migrate and never create a key.

mod healthcheck;
mod import;
mod keys;
mod session;
mod user;

use std::io::{BufRead, IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::SecretString;

use crate::app::{self, Application, StartError};
use crate::auth::{AuthError, Catalog};
use crate::config::Settings;
use crate::store::StoreError;

#[derive(Debug, Parser)]
#[command(name = "tessera", version, about = "Tessera authentication server")]
pub struct Cli {
    /// A TOML file layered over the built-in defaults.
    #[arg(long, global = true, env = "TESSERA_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

impl Cli {
    /// Whether this run is the server (`serve`, or no command), whose logs are its output;
    /// every other command's output is its result, and its logs go to stderr.
    pub fn serves(&self) -> bool {
        matches!(self.cmd, None | Some(Cmd::Serve))
    }
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the server (the default). Pending migrations run first.
    Serve,
    /// Run pending database migrations and exit (idempotent).
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(user::UserCmd),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCmd),
    /// List and end sessions.
    #[command(subcommand)]
    Session(session::SessionCmd),
    /// Exit 0 when the local server answers /readyz with 200 (the container probe).
    Healthcheck {
        /// Base URL to probe; defaults to http://<http.bind>.
        #[arg(long)]
        url: Option<String>,
    },
}

/// Why a command failed; printed as `error: …` with exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("{}", domain_message(.0))]
    Auth(#[from] AuthError),
    #[error("{}", store_message(.0))]
    Store(#[from] StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Usage(String),
}

/// What an operator should read for a domain error.
fn domain_message(e: &AuthError) -> String {
    match e {
        AuthError::UserNotFound => "no such user".into(),
        AuthError::SessionNotFound => "no such session".into(),
        AuthError::UsernameTaken => "conflict: username".into(),
        AuthError::BadInput(why) => format!("invalid request: {why}"),
        AuthError::NoSchema => no_schema(),
        other => other.to_string(),
    }
}

fn store_message(e: &StoreError) -> String {
    match e {
        StoreError::NoSchema => no_schema(),
        other => other.to_string(),
    }
}

fn no_schema() -> String {
    "the database has no schema yet: run `tessera migrate` (or start the server) first".into()
}

/// Runs the parsed command line.
pub async fn run(cli: Cli, settings: Settings) -> ExitCode {
    let result = match cli.cmd.unwrap_or(Cmd::Serve) {
        Cmd::Serve => serve(settings).await,
        Cmd::Migrate => migrate(settings).await,
        Cmd::User(cmd) => user::run(cmd, settings).await,
        Cmd::Keys(cmd) => keys::run(cmd, settings).await,
        Cmd::Session(cmd) => session::run(cmd, settings).await,
        Cmd::Healthcheck { url } => healthcheck::probe(url, &settings).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<(), CliError> {
    let app = Application::build(settings).await?;
    app.run(app::shutdown_signal()).await;
    Ok(())
}

async fn migrate(settings: Settings) -> Result<(), CliError> {
    app::migrate(&settings).await?;
    println!("migrations applied");
    Ok(())
}

/// The read-only view: the store alone.
async fn catalog(settings: &Settings) -> Result<Catalog, CliError> {
    Ok(app::catalog(settings).await?)
}

/// A password from the first line of standard input (`--password-stdin`, or whenever stdin is
/// not a terminal), or else typed twice at a prompt that does not echo. `--password-stdin` on
/// a terminal reads the line without echoing it (it was shown as it was typed).
fn read_password(from_stdin: bool) -> Result<SecretString, CliError> {
    let terminal = std::io::stdin().is_terminal();
    if from_stdin && terminal {
        return Ok(SecretString::from(rpassword::read_password()?));
    }
    if from_stdin || !terminal {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let pw = line.strip_suffix('\n').unwrap_or(&line);
        let pw = pw.strip_suffix('\r').unwrap_or(pw);
        // Drain the rest so a pipe writer never sees EPIPE.
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        return Ok(SecretString::from(pw.to_string()));
    }
    let a = rpassword::prompt_password("Password: ")?;
    let b = rpassword::prompt_password("Repeat: ")?;
    if a != b {
        return Err(CliError::Usage("passwords do not match".into()));
    }
    Ok(SecretString::from(a))
}

/// A time in milliseconds as RFC 3339, or `-`.
fn rfc3339(t: Option<i64>) -> String {
    match t {
        Some(ms) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
        )
        .to_string(),
        None => "-".into(),
    }
}
