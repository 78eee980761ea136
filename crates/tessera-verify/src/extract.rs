//! axum extractors (feature `axum`): `Claims` in a handler's arguments reads what
//! [`crate::VerifyLayer`] verified; `Option<Claims>` for routes where a token is optional.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::claims::Claims;
use crate::error::VerifyError;
use crate::layer::Refusal;
use crate::verifier::StalePolicy;

/// The verified claims; 401 `invalid_token` when the route is not behind a `VerifyLayer`.
impl<S: Send + Sync> FromRequestParts<S> for Claims {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        parts.extensions.get::<Claims>().cloned().ok_or_else(|| {
            Refusal::Token(VerifyError::Missing)
                .respond::<axum::body::Body>(StalePolicy::Reject)
                .into_response()
        })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Claims {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Infallible> {
        Ok(parts.extensions.get::<Claims>().cloned())
    }
}
