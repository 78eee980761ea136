//! Tessera: a standalone authentication server.
//!
//! Passwords are checked against argon2id hashes; callers get a short-lived access JWT and an
//! opaque rotating refresh token; APIs verify access tokens against the JWKS. Data flows one
//! way: `http` / `cli` → `tessera-auth` → `tessera-store`, each a crate whose `Cargo.toml`
//! keeps the rule (docs/DESIGN.md).
//!
//! A tour, in the order a request meets the rooms:
//! - `main.rs` parses the command line, loads `config`, starts `telemetry`, dispatches to `cli`.
//! - `app` wires the store, the master key and `auth::Auth`, binds the port and serves.
//! - `http` is the edge: `serve` (the accept loop), `edge` (request ids, the request's
//!   `Caller`, metrics, `Cache-Control`), `guard` (the request timeout), one file per endpoint
//!   group, the extractors, and `http::error`, where
//!   `AuthError` becomes a status and an OAuth error body.
//! - `auth` (`tessera-auth`) is the domain. `Auth` is a façade whose use cases live one file
//!   each (`login`, `sessions`, `access`, `users`, `clients`, `grants`, `keys/operations`),
//!   over `tokens` (JWS sign and verify), `keys/`, `password/` (argon2id on its own threads),
//!   `refresh_token`, `throttle`, `revocation/` (the in-memory revocation state) and `upkeep`.
//! - `store` (`tessera-store`) is the only room with SQL: one file per capability, on Postgres
//!   and SQLite alike.
//! - The wire types shared with verifiers are `tessera-proto`'s; the settings are
//!   `tessera-config`'s.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Start-up and the serve loop with graceful shutdown.
pub mod app;
/// The domain: passwords, access tokens, refresh sessions, signing keys. No HTTP, no SQL (the
/// `tessera-auth` crate).
pub use tessera_auth as auth;
/// The command line (serve, migrate, user, keys, healthcheck).
pub mod cli;
/// The typed, layered settings tree (the `tessera-config` crate).
pub use tessera_config as config;
/// Routers, extractors, the middleware stack, and `ApiError`.
pub mod http;
/// The hosted HTML pages of the OpenID Provider (`/authorize` and its forms).
pub mod pages;
/// The model, the `Store` traits and their Postgres and SQLite implementation (the
/// `tessera-store` crate).
pub use tessera_store as store;
/// Logging setup.
pub mod telemetry;
/// Unix milliseconds, the one time representation, and its conversions.
pub use tessera_store::time;
