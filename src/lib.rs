//! Tessera: a standalone authentication server.
//!
//! Passwords are checked against argon2id hashes; callers get a short-lived access JWT and an
//! opaque rotating refresh token; APIs verify access tokens against the JWKS. Data flows one
//! way: `http` → `auth` → `store`.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Start-up and the serve loop with graceful shutdown.
pub mod app;
/// The domain: passwords, access tokens, refresh sessions, signing keys.
pub mod auth;
/// Machine ceilings for the benchmark harness (`bench/run`).
pub mod bench;
/// The command line (serve, migrate, user, keys, healthcheck).
pub mod cli;
/// The typed, layered settings tree.
pub mod config;
/// The one error type and its status mapping.
pub mod error;
/// Routers, extractors and the middleware stack.
pub mod http;
/// The `Store` trait and its Postgres and SQLite implementations.
pub mod store;
/// Logging setup.
pub mod telemetry;
/// Unix milliseconds, the one time representation, and its conversions.
pub mod time;
