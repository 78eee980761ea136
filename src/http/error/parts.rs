//! `ApiError::parts`: the status, OAuth error code and fixed description of each error, one
//! flat table.

use axum::http::StatusCode;

use super::{ApiError, ErrorBody};

impl ApiError {
    /// Status, OAuth error code and the public description. The description is a fixed string per
    /// variant, or a broken rule's text (a password rule, built from settings only; a username
    /// rule; a `Rule`'s `&'static str`), so no input or internal detail can leak into a
    /// response.
    pub fn parts(&self) -> (StatusCode, ErrorBody) {
        // A broken rule names itself: its text is built from settings and fixed strings only.
        let rule = match self {
            ApiError::WeakPassword(rule) => Some(rule.to_string()),
            ApiError::BadUsername(rule) => Some(rule.to_string()),
            ApiError::Rule(rule) => Some((*rule).to_string()),
            _ => None,
        };
        if let ApiError::AuthorizationRequest { error, description } = self {
            let body = ErrorBody {
                error: (*error).into(),
                error_description: description.clone().into(),
            };
            return (StatusCode::BAD_REQUEST, body);
        }
        if let Some(rule) = rule {
            let body = ErrorBody {
                error: "invalid_request".into(),
                error_description: rule.into(),
            };
            return (StatusCode::BAD_REQUEST, body);
        }
        let (status, error, error_description) = match self {
            ApiError::InvalidRequest(_)
            | ApiError::Rule(_)
            | ApiError::WeakPassword(_)
            | ApiError::BadUsername(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The request is missing a required parameter or is malformed.",
            ),
            ApiError::InvalidGrant { status } => (
                *status,
                "invalid_grant",
                "The credentials or the refresh token are invalid, expired or revoked.",
            ),
            ApiError::InvalidCode => (
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "The code is invalid, expired or used, or was issued for another client, redirect URI or code verifier.",
            ),
            ApiError::DevicePoll(error) => (
                StatusCode::BAD_REQUEST,
                *error,
                match *error {
                    "authorization_pending" => "The user has not answered yet: poll again after the interval.",
                    "slow_down" => "Polling too fast: wait 5 seconds more between polls from now on.",
                    "access_denied" => "The user denied the request.",
                    _ => "The device code expired: start again.",
                },
            ),
            ApiError::AuthorizationRequest { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The authorization request is invalid.",
            ),
            ApiError::UnauthorizedClient => (
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "The client may not use this grant type.",
            ),
            ApiError::InvalidScope => (
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "The requested scope is invalid, unknown, or not allowed.",
            ),
            ApiError::InvalidTarget => (
                StatusCode::BAD_REQUEST,
                "invalid_target",
                "The requested resource is invalid or unknown.",
            ),
            ApiError::MultipleResources => (
                StatusCode::BAD_REQUEST,
                "invalid_target",
                "Tessera issues a token for one resource per request: send a single resource parameter (or the same one repeated).",
            ),
            ApiError::InvalidClient { challenge } => (
                if *challenge {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::BAD_REQUEST
                },
                "invalid_client",
                "Client authentication failed.",
            ),
            ApiError::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "The grant type is not supported by this server.",
            ),
            ApiError::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "The access token is missing, invalid, expired or revoked.",
            ),
            ApiError::AmbiguousToken => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The request carries the access token more than once (two Authorization headers, the header and an access_token parameter, or access_token repeated); RFC 6750 allows one method.",
            ),
            ApiError::MissingToken => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "This endpoint needs a bearer access token (Authorization: Bearer).",
            ),
            ApiError::SlowDown(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                "Too many attempts. Retry after the time given in Retry-After.",
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "The access token does not grant this operation.",
            ),
            ApiError::CrossOrigin => (
                StatusCode::FORBIDDEN,
                "invalid_request",
                "The request's origin may not use the session cookie.",
            ),
            ApiError::Conflict(_) => (
                StatusCode::CONFLICT,
                "conflict",
                "The resource already exists.",
            ),
            ApiError::ConfusableUsername => (
                StatusCode::CONFLICT,
                "conflict",
                "The username looks like an existing account's (Unicode UTS #39 confusable skeleton): choose a name that does not.",
            ),
            ApiError::HeaderTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "invalid_request",
                "The request head is too large.",
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "The request body is too large.",
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "The method is not allowed on this endpoint.",
            ),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", "No such endpoint."),
            ApiError::UserNotFound => (StatusCode::NOT_FOUND, "not_found", "No such user."),
            ApiError::FactorNotFound => (StatusCode::NOT_FOUND, "not_found", "No such factor."),
            ApiError::SignupClosed => (
                StatusCode::NOT_FOUND,
                "not_found",
                "Signup is closed on this server (accounts.signup).",
            ),
            ApiError::EmailNotVerified => (
                StatusCode::FORBIDDEN,
                "email_not_verified",
                "Verify your email address first; POST /email/verify/resend sends a new link.",
            ),
            ApiError::MailDisabled => (
                StatusCode::NOT_FOUND,
                "not_found",
                "Password reset by email is not enabled on this server (mail.smtp_url, accounts.link_base).",
            ),
            ApiError::InvalidAccountToken => (
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "The token is invalid, expired or used.",
            ),
            ApiError::PasskeysDisabled => (
                StatusCode::NOT_FOUND,
                "not_found",
                "Passkeys are not enabled on this server (webauthn.rp_id).",
            ),
            ApiError::InvalidPasskey => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The passkey ceremony is unknown, expired or used, or the authenticator's answer does not verify.",
            ),
            ApiError::MfaEnrolmentRequired => (
                StatusCode::FORBIDDEN,
                "mfa_enrolment_required",
                "The account must have a second factor and has none; an administrator can help.",
            ),
            ApiError::MfaRequired(_) => (
                StatusCode::FORBIDDEN,
                "mfa_required",
                "The password is correct; complete the login with a second factor and the mfa_token.",
            ),
            ApiError::InvalidSecondFactor { status } => (
                *status,
                "invalid_grant",
                "The second factor or the mfa_token is invalid, expired or used.",
            ),
            ApiError::ReauthenticationRequired => (
                StatusCode::UNAUTHORIZED,
                "insufficient_user_authentication",
                "This needs a more recent login: log in again, then retry.",
            ),
            ApiError::SessionNotFound => (StatusCode::NOT_FOUND, "not_found", "No such session."),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "The server is temporarily unable to handle the request. Retry later.",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "The server encountered an unexpected condition.",
            ),
        };
        (
            status,
            ErrorBody {
                error: error.into(),
                error_description: error_description.into(),
            },
        )
    }
}
