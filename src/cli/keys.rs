//! `tessera keys …`: list, rotate and import signing keys.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::{catalog, rfc3339, CliError};
use crate::app;
use crate::auth::keys::{self, Activation};
use crate::auth::Caller;
use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// List signing keys with their state and times.
    List,
    /// Publish a new key now; it starts signing after keys.publish_ahead, and the current key
    /// retires then.
    Rotate,
    /// Re-seal every signing key under keys.master_key, after a master-key rotation (the old
    /// key listed in keys.previous_master_keys), in one transaction.
    Rekey,
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

pub(super) async fn run(cmd: KeysCmd, settings: Settings) -> Result<(), CliError> {
    match cmd {
        KeysCmd::List => list(settings).await,
        KeysCmd::Rotate => rotate(settings).await,
        KeysCmd::Rekey => rekey(settings).await,
        KeysCmd::Import {
            pem,
            kid,
            activate_now,
        } => import(settings, &pem, kid, activate_now).await,
    }
}

async fn rekey(settings: Settings) -> Result<(), CliError> {
    let auth = app::services(settings).await?.auth;
    let done = auth.rekey(&Caller::default()).await?;
    for kid in &done.resealed {
        println!("re-sealed {kid} under the current master key");
    }
    for kid in &done.skipped {
        println!("left alone {kid}: removed, and no configured master key opens it");
    }
    println!(
        "{} re-sealed, {} already under the current master key, {} left alone",
        done.resealed.len(),
        done.current.len(),
        done.skipped.len()
    );
    if done.totp_resealed > 0 {
        println!(
            "{} TOTP secrets re-sealed under the current master key",
            done.totp_resealed
        );
    }
    Ok(())
}

async fn list(settings: Settings) -> Result<(), CliError> {
    let keys = catalog(&settings).await?.keys().await?;
    println!(
        "{:<44}  {:<6}  {:<8}  {:<20}  {:<20}  {:<20}  REMOVE",
        "KID", "ALG", "STATE", "PUBLISH", "ACTIVATE", "RETIRE"
    );
    for k in keys {
        println!(
            "{:<44}  {:<6}  {:<8}  {:<20}  {:<20}  {:<20}  {}",
            k.kid,
            k.alg,
            k.state.name(),
            rfc3339(Some(k.publish_at)),
            rfc3339(Some(k.activate_at)),
            rfc3339(k.retire_at),
            rfc3339(k.remove_at)
        );
    }
    Ok(())
}

async fn rotate(settings: Settings) -> Result<(), CliError> {
    let services = app::services(settings).await?;
    let kid = services.auth.rotate_key(&Caller::default()).await?;
    println!(
        "published {kid} ({}); it signs after {}",
        services.settings.keys.algorithm,
        humantime::format_duration(services.settings.publish_ahead())
    );
    Ok(())
}

async fn import(
    settings: Settings,
    pem: &Path,
    kid: Option<String>,
    now: bool,
) -> Result<(), CliError> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(pem)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", pem.display())))?,
    );
    let m = keys::import_pem(&text, kid).map_err(|e| CliError::Usage(e.to_string()))?;
    let services = app::services(settings).await?;
    let activation = if now {
        Activation::Now
    } else {
        Activation::AfterPublishAhead
    };
    services
        .auth
        .add_key(&m, activation, "imported", &Caller::default())
        .await?;
    let when = if now {
        "now".to_string()
    } else {
        format!(
            "after {}",
            humantime::format_duration(services.settings.publish_ahead())
        )
    };
    println!("imported {} ({}); it signs {when}", m.kid, m.alg.name());
    Ok(())
}
