//! Verify Tessera's access tokens, and enforce its revocations, in a Rust API.
//!
//! ```ignore
//! let verifier = Verifier::discover("https://auth.example.com", "orders-api").await?;
//! let app = Router::new().route("/orders", get(orders)).layer(VerifyLayer::new(verifier));
//! async fn orders(claims: Claims) -> String { claims.sub.to_string() }
//! ```
//!
//! What the [`Verifier`] does:
//! - **Keys.** It reads the issuer's RFC 8414 metadata (the `issuer` must match exactly) and
//!   keeps its JWKS (RFC 7517) cached for the `Cache-Control: max-age` the server gives,
//!   revalidating with `ETag`/`If-None-Match`. A background task refreshes the set before it
//!   expires, so no request waits on the network in steady state. A token whose `kid` is
//!   unknown triggers one refetch, shared by every request waiting on it and at most one per
//!   [`VerifierBuilder::refetch_interval`]. While the server is unreachable the last good set
//!   keeps serving (and [`Verifier::keys_stale`] says so), up to
//!   [`VerifierBuilder::key_hard_limit`].
//! - **Tokens** (RFC 8725, RFC 9068): the key is chosen by `kid` and the algorithm is that
//!   key's, never the token's; `none`, HMAC, a missing `kid`, `crit`, and key-carrying headers
//!   (`jku`, `jwk`, `x5u`, `x5c`) are refused; `typ` must be `at+jwt`; `iss` must match
//!   exactly and `aud` must contain the audience; `exp`, `nbf` and `iat` are checked with a
//!   leeway. The result is a typed [`Claims`].
//! - **Revocation** (optional, [`VerifierBuilder::with_revocation_feed`]): it polls Tessera's
//!   revocation feed and refuses revoked tokens (`jti`), revoked sessions (`sid`) and tokens
//!   issued before a user's cut-off (`not_before`: logout-all, disable, password change).
//!   Entries are dropped once no token they could refuse is still valid, so memory is bounded
//!   by what was revoked within [`VerifierBuilder::token_horizon`]. If polling fails for longer
//!   than [`VerifierBuilder::max_staleness`], verification fails closed by default
//!   ([`StalePolicy`]).
//! - **tower**: [`VerifyLayer`] puts [`Claims`] into the request extensions, and answers 401
//!   with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3) or 403
//!   `insufficient_scope` for a missing role ([`RequireRole`]) or scope ([`RequireScope`]).
//!   With the `axum` feature, [`Claims`] is also an extractor.
//! - **Metrics**, through the `metrics` facade: `tessera_verify_total{outcome}`,
//!   `tessera_verify_forbidden_total{outcome}`, `tessera_verify_key_refreshes_total{result}`,
//!   `tessera_verify_keys_stale`, `tessera_verify_feed_polls_total{result}`,
//!   `tessera_verify_feed_lag_seconds`, `tessera_verify_revocation_entries`.
//!
//! Two staleness signals differ on purpose: [`Verifier::keys_stale`] means the key set is past
//! its `max-age` and could not be revalidated, yet still serves (until the hard limit);
//! [`Verifier::revocations_stale`] means the feed is past `max_staleness`, and the
//! [`StalePolicy`] applies.
//!
//! Tokens never reach the logs: every span skips its arguments, and errors name only the
//! check that failed.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![warn(missing_docs)]

mod background;
mod builder;
mod claims;
mod discovery;
mod error;
mod feed;
mod http_client;
mod keys;
mod layer;
mod verifier;

#[cfg(feature = "axum")]
mod extract;

pub use claims::Claims;
pub use error::{SetupError, VerifyError};
pub use jsonwebtoken::Algorithm;
pub use layer::{
    LayerBody, RequireAcr, RequireAmr, RequireRole, RequireScope, RequireService, VerifyLayer,
    VerifyService,
};
pub use secrecy::SecretString;
/// The wire types behind [`Claims`], shared with the server (`tessera-proto`).
pub use tessera_proto::claims::{AccessClaims, Audience};
pub use verifier::{StalePolicy, Verifier, VerifierBuilder};
