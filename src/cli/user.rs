//! `tessera user …`: account administration from the shell.

use std::io::Write;

use clap::Subcommand;

use super::{catalog, read_password, CliError};
use crate::app;
use crate::auth::Caller;
use crate::auth::{AuthError, UserRef, Username};
use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user.
    Add {
        username: String,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long, conflicts_with = "password_hash")]
        password_stdin: bool,
        /// Take an existing password hash instead of a password: argon2id/argon2i PHC, bcrypt,
        /// PBKDF2 (PHC, passlib or Django form) or a Keycloak credential JSON. Prefer `-`, which
        /// reads it from standard input: a value given here is visible to other local users
        /// (process list) and stays in shell history. The first login re-hashes to argon2id.
        #[arg(long, value_name = "HASH")]
        password_hash: Option<String>,
        /// A role to grant (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// The user's email address (unverified), which they can log in with too.
        #[arg(long)]
        email: Option<String>,
    },
    /// Import users with their password hashes from a JSON Lines file (`-`: standard input).
    /// Each line: {"username", "password_hash", "roles"?, "claims"?, "disabled"?, "email"?,
    /// "email_verified"?}. Every line is
    /// checked first; nothing is imported if one is bad, unless --skip-invalid.
    Import {
        file: std::path::PathBuf,
        /// Import the good lines even if some are bad (each bad one is still reported).
        #[arg(long)]
        skip_invalid: bool,
        /// What an existing username does: `fail` imports nothing, `skip` leaves that user as
        /// it is (so an import can be re-run).
        #[arg(long, value_enum, default_value = "fail")]
        on_conflict: super::import::Conflict,
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
    /// Set the user's email address (unverified unless --verified), or clear it (--clear).
    SetEmail {
        username: String,
        #[arg(required_unless_present = "clear")]
        email: Option<String>,
        /// The address is known to be the user's.
        #[arg(long)]
        verified: bool,
        #[arg(long, conflicts_with = "email")]
        clear: bool,
    },
    /// Replace the user's roles (no --role clears them).
    SetRoles {
        username: String,
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// End every session of the user and cut off every access token issued so far.
    Revoke { username: String },
    /// Invite an address: an account with the roles, and a link mailed to it with which the
    /// invitee sets a password (needs mail.smtp_url; the link goes to accounts.link_base, or Tessera's own page).
    Invite {
        email: String,
        /// A role to grant (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// The username; the address itself otherwise.
        #[arg(long)]
        username: Option<String>,
    },
    /// List the user's second factors (TOTP apps and passkeys; no secrets) and how many
    /// unused recovery codes they have.
    Factors { username: String },
    /// Remove every second factor and recovery code of the user (a lost device) and end their
    /// sessions; audited.
    ResetFactors { username: String },
}

pub(super) async fn run(cmd: UserCmd, settings: Settings) -> Result<(), CliError> {
    match cmd {
        UserCmd::Add {
            username,
            password_hash: Some(hash),
            roles,
            email,
            ..
        } => super::import::add_with_hash(settings, &username, &hash, roles, email).await,
        UserCmd::Add {
            username,
            password_stdin,
            roles,
            email,
            password_hash: None,
        } => add(settings, &username, password_stdin, roles, email).await,
        UserCmd::Import {
            file,
            skip_invalid,
            on_conflict,
        } => super::import::import(settings, &file, skip_invalid, on_conflict).await,
        UserCmd::List => list(settings).await,
        UserCmd::Disable { username } => set_disabled(settings, &username, true).await,
        UserCmd::Enable { username } => set_disabled(settings, &username, false).await,
        UserCmd::SetPassword {
            username,
            password_stdin,
        } => set_password(settings, &username, password_stdin).await,
        UserCmd::SetRoles { username, roles } => set_roles(settings, &username, roles).await,
        UserCmd::SetEmail {
            username,
            email,
            verified,
            ..
        } => set_email(settings, &username, email, verified).await,
        UserCmd::Revoke { username } => revoke(settings, &username).await,
        UserCmd::Factors { username } => factors(settings, &username).await,
        UserCmd::Invite {
            email,
            roles,
            username,
        } => invite(settings, &email, roles, username).await,
        UserCmd::ResetFactors { username } => reset_factors(settings, &username).await,
    }
}

/// A domain error, with the name in "no such user".
fn named(name: &str) -> impl Fn(AuthError) -> CliError + '_ {
    move |e| match e {
        AuthError::UserNotFound => CliError::Usage(format!("no such user: {name}")),
        other => other.into(),
    }
}

/// The normalised form of a username, as it is stored and shown.
fn normalised(raw: &str) -> Result<String, CliError> {
    Username::for_lookup(raw)
        .map(|u| u.as_str().to_string())
        .map_err(|e| CliError::Usage(e.to_string()))
}

async fn add(
    settings: Settings,
    username: &str,
    password_stdin: bool,
    roles: Vec<String>,
    email: Option<String>,
) -> Result<(), CliError> {
    let pw = read_password(password_stdin)?;
    let auth = app::services(settings).await?.auth;
    let u = auth
        .create_user_with_email(username, pw, roles, email.as_deref(), &Caller::default())
        .await?;
    println!("created user {} ({})", u.username, u.id);
    Ok(())
}

async fn list(settings: Settings) -> Result<(), CliError> {
    let users = catalog(&settings).await?.users().await?;
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error of the command.
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

async fn set_disabled(settings: Settings, username: &str, disabled: bool) -> Result<(), CliError> {
    let name = normalised(username)?;
    let auth = app::services(settings).await?.auth;
    auth.set_disabled(UserRef::Name(&name), disabled, &Caller::default())
        .await
        .map_err(named(&name))?;
    println!("{} {name}", if disabled { "disabled" } else { "enabled" });
    Ok(())
}

async fn set_password(
    settings: Settings,
    username: &str,
    password_stdin: bool,
) -> Result<(), CliError> {
    let name = normalised(username)?;
    let pw = read_password(password_stdin)?;
    let auth = app::services(settings).await?.auth;
    auth.set_password(UserRef::Name(&name), pw, &Caller::default())
        .await
        .map_err(named(&name))?;
    println!("password changed; sessions revoked");
    Ok(())
}

async fn set_roles(settings: Settings, username: &str, roles: Vec<String>) -> Result<(), CliError> {
    let name = normalised(username)?;
    let auth = app::services(settings).await?.auth;
    let user = auth
        .set_roles(UserRef::Name(&name), roles, &Caller::default())
        .await
        .map_err(named(&name))?;
    println!("roles of {name}: {}", user.roles.join(","));
    Ok(())
}

async fn revoke(settings: Settings, username: &str) -> Result<(), CliError> {
    let name = normalised(username)?;
    let auth = app::services(settings).await?.auth;
    auth.revoke_user(
        UserRef::Name(&name),
        "revoked_by_operator",
        &Caller::default(),
    )
    .await
    .map_err(named(&name))?;
    println!("revoked every session and access token of {name}");
    Ok(())
}

async fn factors(settings: Settings, username: &str) -> Result<(), CliError> {
    let name = normalised(username)?;
    let auth = app::services(settings).await?.auth;
    let user = auth
        .user(UserRef::Name(&name))
        .await
        .map_err(named(&name))?;
    println!("id\tkind\tname\tconfirmed\tcreated_at\tlast_used_at");
    for f in auth.factors(user.id).await? {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            f.id,
            f.kind,
            f.name,
            f.confirmed,
            f.created_at,
            f.last_used_at.map_or("-".into(), |t| t.to_string())
        );
    }
    println!(
        "recovery codes left: {}",
        auth.recovery_codes_left(user.id).await?
    );
    Ok(())
}

async fn reset_factors(settings: Settings, username: &str) -> Result<(), CliError> {
    let name = normalised(username)?;
    let auth = app::services(settings).await?.auth;
    let user = auth
        .user(UserRef::Name(&name))
        .await
        .map_err(named(&name))?;
    let n = auth.reset_factors(user.id, &Caller::default()).await?;
    println!("removed {n} factors and the recovery codes of {name}; sessions ended");
    Ok(())
}

async fn set_email(
    settings: Settings,
    username: &str,
    email: Option<String>,
    verified: bool,
) -> Result<(), CliError> {
    let name = normalised(username)?;
    let auth = app::services(settings).await?.auth;
    let u = auth
        .set_email(
            UserRef::Name(&name),
            email.as_deref(),
            verified,
            &Caller::default(),
        )
        .await
        .map_err(named(&name))?;
    match u.email {
        Some(e) => println!("email of {name}: {e} (verified: {})", u.email_verified),
        None => println!("email of {name} cleared"),
    }
    Ok(())
}

async fn invite(
    settings: Settings,
    email: &str,
    roles: Vec<String>,
    username: Option<String>,
) -> Result<(), CliError> {
    let auth = app::services(settings).await?.auth;
    let u = auth
        .invite(email, roles, username.as_deref(), &Caller::default())
        .await?;
    // The running server's outbox sends it.
    println!(
        "invited {} as {} ({}); the link is queued",
        email, u.username, u.id
    );
    Ok(())
}
