//! Logging: tracing to stdout for the server and to stderr for every other command (whose
//! stdout is its result: `tessera keys list | …`), as text or JSON
//! (`TESSERA__LOG__FORMAT=json`). `RUST_LOG`, when set, overrides `log.level`. Nothing secret
//! is ever recorded: secrets are typed and extractors skip their arguments.

use std::io::IsTerminal;

use tracing_subscriber::fmt::writer::EitherWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber, writing to stdout when `server`, else to stderr; a second
/// call is a no-op.
pub fn init(log: &LogSettings, server: bool) {
    let mut filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // webauthn-rs-core logs the input it refuses at ERROR, client bytes and all (kilobytes a
    // request). Tessera logs each refusal with its reason, so that crate stays quiet unless a
    // directive names it.
    let asked = std::env::var("RUST_LOG").unwrap_or_else(|_| log.level.clone());
    if !asked.contains("webauthn") {
        if let Ok(quiet) = "webauthn_rs_core=off".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    let registry = tracing_subscriber::registry().with(filter);
    // Chosen per event without allocating (the server logs on its request path).
    let writer = move || match server {
        true => EitherWriter::A(std::io::stdout()),
        false => EitherWriter::B(std::io::stderr()),
    };
    let terminal = match server {
        true => std::io::stdout().is_terminal(),
        false => std::io::stderr().is_terminal(),
    };
    let _ =
        match log.format {
            LogFormat::Json => registry
                .with(
                    fmt::layer()
                        .with_writer(writer)
                        .json()
                        .with_current_span(true)
                        .with_span_list(false)
                        .flatten_event(true),
                )
                .try_init(),
            // Colour only for a terminal, and never with NO_COLOR set (no-color.org): logs written
            // to a file or a pipe carry no escape codes.
            LogFormat::Text => registry
                .with(fmt::layer().with_writer(writer).with_ansi(
                    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
                ))
                .try_init(),
        };
}
