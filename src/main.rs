//! The `tessera` binary: parse the CLI, load configuration, start telemetry, dispatch.

use std::process::ExitCode;

use clap::Parser;
use tessera::cli::{self, Cli};
use tessera::config::{self, Settings};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    tessera::telemetry::init(&settings.log, cli.serves());
    for key in config::unknown_env_keys() {
        tracing::warn!(%key, "unknown configuration variable ignored");
    }
    cli::run(cli, settings).await
}
