//! The revocation state each replica keeps in memory, so that verifying an access token
//! (`/userinfo`, `/introspect`, the admin API) needs no database round trip while still
//! keeping invariant 2.
//!
//! It holds:
//! - denylisted `jti`s, until the token's own `exp` plus the leeway (verifiers accept a token
//!   that long);
//! - revoked sessions, for `access_ttl + leeway` after the revocation (no token issued before
//!   can live longer, and none is issued after);
//! - a bounded cache of user rows: `disabled`, `tokens_not_before`, and what `/userinfo` shows.
//!
//! How it stays right:
//! - A write made through this process is applied here before its request answers.
//! - On Postgres, triggers NOTIFY every relevant write, whoever makes it (another replica, the
//!   CLI, an operator's SQL); the listener applies them within milliseconds.
//! - On SQLite, a watcher reads `PRAGMA data_version` every 100 ms. It changes only when
//!   another connection (the CLI, an operator's `sqlite3`) committed; then, as after a lost
//!   Postgres listener, everything known to be *valid* (live sessions, user rows) is
//!   forgotten and reread from the database on demand. What is known to be revoked is kept:
//!   it can only make a check stricter.
//! - A poll of the revocation feed and of `users.updated_at` runs every `max_lag / 2`. It is
//!   the safety net and the liveness check of the database.
//! - The state is trusted only while the listener (or watcher) runs and the last poll
//!   succeeded less than `max_lag` ago. Otherwise every check reads the database, as it would
//!   without this cache, and fails closed (503) when the database cannot answer.

mod dense;
mod state;
mod sync;
#[cfg(test)]
mod tests;

pub use state::{Check, RevocationState, RevocationStats};
