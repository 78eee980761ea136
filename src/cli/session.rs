//! `tessera session …`: a user's sessions (read-only: no migration, no keys), and ending one.

use clap::Subcommand;

use super::{catalog, rfc3339, CliError};
use crate::app;
use crate::auth::AuthError;
use crate::auth::Caller;
use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    /// List a user's sessions, newest first (ended ones until they are purged).
    List { username: String },
    /// End one session: its refresh token and its access tokens stop working.
    Revoke { session_id: String },
}

pub(super) async fn run(cmd: SessionCmd, settings: Settings) -> Result<(), CliError> {
    match cmd {
        SessionCmd::List { username } => list(settings, &username).await,
        SessionCmd::Revoke { session_id } => revoke(settings, &session_id).await,
    }
}

async fn list(settings: Settings, username: &str) -> Result<(), CliError> {
    let sessions = catalog(&settings)
        .await?
        .sessions(username)
        .await
        .map_err(|e| match e {
            AuthError::UserNotFound => CliError::Usage(format!("no such user: {username}")),
            other => other.into(),
        })?;
    let now = crate::time::now_ms();
    println!(
        "{:<36}  {:<8}  {:<20}  {:<20}  {:<15}  CLIENT",
        "SESSION", "STATE", "CREATED", "LAST REFRESH", "ADDRESS"
    );
    for s in sessions {
        let state = if s.revoked_at.is_some() {
            "revoked"
        } else if s.is_expired(now) {
            "expired"
        } else {
            "active"
        };
        println!(
            "{:<36}  {:<8}  {:<20}  {:<20}  {:<15}  {}",
            s.id,
            state,
            rfc3339(Some(s.created_at)),
            rfc3339(Some(s.last_refreshed_at)),
            s.ip.as_deref().unwrap_or("-"),
            s.client_id
        );
    }
    Ok(())
}

async fn revoke(settings: Settings, session_id: &str) -> Result<(), CliError> {
    let id = session_id
        .parse()
        .map_err(|_| CliError::Usage(format!("not a session id: {session_id}")))?;
    let auth = app::services(settings).await?.auth;
    let before = auth
        .revoke_session(id, &Caller::default())
        .await
        .map_err(|e| match e {
            AuthError::SessionNotFound => CliError::Usage(format!("no such session: {id}")),
            other => other.into(),
        })?;
    let now = crate::time::now_ms();
    match (before.revoked_at, before.revoked_reason.clone()) {
        (None, _) if before.is_expired(now) => println!(
            "session {id} had already expired ({}); it is marked revoked now",
            rfc3339(Some(before.idle_expires_at.min(before.absolute_expires_at)))
        ),
        (None, _) => println!("session {id} ended"),
        (Some(at), reason) => println!(
            "session {id} had already ended ({}, {}); nothing changed",
            reason.as_deref().unwrap_or("revoked"),
            rfc3339(Some(at))
        ),
    }
    Ok(())
}
