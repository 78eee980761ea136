//! The error body of every Tessera answer that is an error (RFC 6749 §5.2, RFC 6750 §3), as
//! the server writes it and the verifier middleware writes it for the APIs it guards.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// `{"error": …, "error_description": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The OAuth error code (`invalid_request`, `invalid_token`, …).
    #[cfg_attr(feature = "schema", schema(value_type = String))]
    pub error: Cow<'static, str>,
    /// A fixed, human-readable text per error: never input, never an internal detail.
    #[cfg_attr(feature = "schema", schema(value_type = String))]
    pub error_description: Cow<'static, str>,
}
