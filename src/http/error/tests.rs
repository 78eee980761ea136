use super::*;

#[test]
fn the_status_mapping_is_pinned() {
    let cases = [
        (ApiError::InvalidRequest("x".into()), 400, "invalid_request"),
        (
            ApiError::InvalidGrant {
                status: StatusCode::UNAUTHORIZED,
            },
            401,
            "invalid_grant",
        ),
        (ApiError::InvalidToken, 401, "invalid_token"),
        (ApiError::MissingToken, 401, "invalid_token"),
        (ApiError::MultipleResources, 400, "invalid_target"),
        (
            ApiError::InvalidClient { challenge: true },
            401,
            "invalid_client",
        ),
        (
            ApiError::InvalidClient { challenge: false },
            400,
            "invalid_client",
        ),
        (
            token_endpoint(AuthError::InvalidCredentials),
            400,
            "invalid_grant",
        ),
        (
            ApiError::UnsupportedGrantType,
            400,
            "unsupported_grant_type",
        ),
        (ApiError::SlowDown(3), 429, "slow_down"),
        (ApiError::Forbidden, 403, "insufficient_scope"),
        (ApiError::Conflict("username"), 409, "conflict"),
        (ApiError::ConfusableUsername, 409, "conflict"),
        (
            ApiError::BadUsername(crate::auth::username::NameError::MixedScript),
            400,
            "invalid_request",
        ),
        (ApiError::PayloadTooLarge, 413, "invalid_request"),
        (ApiError::HeaderTooLarge, 431, "invalid_request"),
        (ApiError::MethodNotAllowed, 405, "invalid_request"),
        (ApiError::NotFound, 404, "not_found"),
        (ApiError::UserNotFound, 404, "not_found"),
        (ApiError::SessionNotFound, 404, "not_found"),
        (ApiError::CrossOrigin, 403, "invalid_request"),
        (
            ApiError::WeakPassword(crate::auth::login::PasswordRule::MinLength { min: 8 }),
            400,
            "invalid_request",
        ),
        (ApiError::Unavailable("db"), 503, "temporarily_unavailable"),
        (ApiError::Internal("boom".into()), 500, "server_error"),
        (
            ApiError::MfaRequired(crate::auth::mfa::MfaRequired {
                mfa_token: secrecy::SecretString::from("t"),
                methods: vec!["totp"],
            }),
            403,
            "mfa_required",
        ),
        (
            ApiError::InvalidSecondFactor {
                status: StatusCode::UNAUTHORIZED,
            },
            401,
            "invalid_grant",
        ),
        (
            token_endpoint(AuthError::InvalidSecondFactor),
            400,
            "invalid_grant",
        ),
        (
            ApiError::MfaEnrolmentRequired,
            403,
            "mfa_enrolment_required",
        ),
        (ApiError::FactorNotFound, 404, "not_found"),
        (
            ApiError::ReauthenticationRequired,
            401,
            "insufficient_user_authentication",
        ),
    ];
    for (e, status, code) in cases {
        let (s, b) = e.parts();
        assert_eq!(s.as_u16(), status);
        assert_eq!(b.error, code);
    }
}

#[test]
fn domain_errors_map_to_their_answers() {
    let cases = [
        (AuthError::InvalidCredentials, 401, "invalid_grant"),
        (AuthError::InvalidRefreshToken, 401, "invalid_grant"),
        (AuthError::InvalidToken, 401, "invalid_token"),
        (AuthError::InvalidScope, 400, "invalid_scope"),
        (AuthError::InvalidTarget, 400, "invalid_target"),
        (AuthError::InsufficientRole, 403, "insufficient_scope"),
        (AuthError::InvalidClient, 400, "invalid_client"),
        (
            AuthError::Throttled {
                retry_after_secs: 3,
            },
            429,
            "slow_down",
        ),
        (
            AuthError::Unavailable("busy"),
            503,
            "temporarily_unavailable",
        ),
        (AuthError::NoSchema, 500, "server_error"),
        (AuthError::UserNotFound, 404, "not_found"),
        (AuthError::SessionNotFound, 404, "not_found"),
        (
            AuthError::WeakPassword(crate::auth::login::PasswordRule::MinScore {
                score: 0,
                min: 2,
            }),
            400,
            "invalid_request",
        ),
        (AuthError::UsernameTaken, 409, "conflict"),
        (AuthError::BadInput("x".into()), 400, "invalid_request"),
        (
            AuthError::BadInput(String::from("x").into()),
            400,
            "invalid_request",
        ),
        (AuthError::StoreUnavailable, 503, "temporarily_unavailable"),
        (AuthError::Internal("boom".into()), 500, "server_error"),
    ];
    for (e, status, code) in cases {
        let shown = e.to_string();
        let (s, b) = ApiError::from(e).parts();
        assert_eq!((s.as_u16(), b.error.as_ref()), (status, code), "{shown}");
    }
    // A refused password's answer names the rule and the setting.
    let (_, b) = ApiError::from(AuthError::WeakPassword(
        crate::auth::login::PasswordRule::MinLength { min: 8 },
    ))
    .parts();
    assert!(b.error_description.contains("password.min_length"));
    // Refused input: a fixed rule is named; a text built from input is only logged.
    let (_, b) = ApiError::from(AuthError::BadInput(
        "a username with @ must be the account's own email address".into(),
    ))
    .parts();
    assert_eq!(
        b.error_description,
        "a username with @ must be the account's own email address"
    );
    let (_, b) = ApiError::from(AuthError::BadInput(format!("echo {}", "<script>").into())).parts();
    assert!(
        !b.error_description.contains("script"),
        "{}",
        b.error_description
    );
    // The unknown user of the admin API is not an unknown endpoint.
    let (_, user) = ApiError::from(AuthError::UserNotFound).parts();
    let (_, route) = ApiError::NotFound.parts();
    assert_ne!(user.error_description, route.error_description);
    // Only the token endpoint answers invalid_grant with 400; everything else is as at
    // the first-party endpoints.
    let (s, _) = token_endpoint(AuthError::InvalidRefreshToken).parts();
    assert_eq!(s.as_u16(), 400);
    let (s, _) = token_endpoint(AuthError::InvalidClient).parts();
    assert_eq!(s.as_u16(), 400);
    let retry = ApiError::from(AuthError::Throttled {
        retry_after_secs: 7,
    })
    .into_response();
    assert_eq!(retry.headers()[header::RETRY_AFTER], "7");
}

#[test]
fn internal_detail_never_reaches_the_body() {
    let (_, b) = ApiError::Internal("password=hunter2".into()).parts();
    assert!(!b.error_description.contains("hunter2"));
    let (_, b) = ApiError::InvalidRequest("secret-token".into()).parts();
    assert!(!b.error_description.contains("secret-token"));
}
