//! The `tessera` binary: parse the CLI, load configuration, start telemetry, dispatch.

use std::process::ExitCode;

use clap::Parser;
use tessera::cli::{self, Cli};
use tessera::config::{self, Settings};

/// mimalloc, not the system allocator: a small request's answer is a few dozen short-lived
/// allocations (headers, buffers, claims), which glibc's malloc and free cost about 7% of the
/// JWKS answer's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
