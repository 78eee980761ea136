//! Tessera's wire contract, written once and compiled by both the server and the verifiers
//! (`tessera-verify`), so that the two cannot drift. It holds no web or SQL dependency.
//!
//! - [`jose`]: the JOSE header policy of access tokens (RFC 7515, RFC 8725, RFC 9068);
//! - [`claims`]: the claims of access tokens (RFC 9068 §2.2);
//! - [`feed`]: a page of the revocation feed and its cursor;
//! - [`introspection`]: the introspection answer (RFC 7662 §2.2);
//! - [`error`]: the error body (RFC 6749 §5.2);
//!
//! With the `schema` feature the answer types derive `utoipa::ToSchema`, so that the server's
//! OpenAPI document describes the very types it serialises.

#![deny(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod claims;
pub mod error;
pub mod feed;
pub mod introspection;
pub mod jose;
