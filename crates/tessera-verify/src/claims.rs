//! The claims of a verified access token: Tessera's wire type (`tessera_proto::claims`), the
//! very type the server serialises when it signs, read here and wrapped so that this crate can
//! give it extractor and extension behaviour.

use std::ops::Deref;

use serde::{Deserialize, Serialize};

/// The claims of a token that passed every check (RFC 9068 §2.2, plus Tessera's `sid` and
/// `roles`). Field types are part of the check: a string `exp`, a fractional `iat` or a
/// numeric `sub` fails to deserialize, and the token is refused.
///
/// It dereferences to [`tessera_proto::claims::Claims`]: `claims.sub`, `claims.roles`,
/// `claims.has_role("admin")`, `claims.scopes()`, `claims.custom`. Times are JWT NumericDates:
/// whole seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Claims(pub tessera_proto::claims::Claims);

impl Deref for Claims {
    type Target = tessera_proto::claims::Claims;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Claims {
    /// The wire claims, owned.
    pub fn into_inner(self) -> tessera_proto::claims::Claims {
        self.0
    }
}
