//! Tessera's wire contract, written once and compiled by both the server and the verifiers
//! (`tessera-verify`), so that the two cannot drift. It holds no web or SQL dependency.
//!
//! - [`jose`]: the JOSE header policy of access tokens (RFC 7515, RFC 8725, RFC 9068).

#![deny(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod jose;
