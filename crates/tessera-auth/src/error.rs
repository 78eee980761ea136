//! The domain's error: what went wrong, in the domain's words. The HTTP layer chooses statuses
//! and OAuth error codes for these (`ApiError`, in the HTTP layer); nothing here knows either.

use crate::store::StoreError;

/// Every way a use case of `Auth` can fail.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong password, unknown or disabled user. One variant, so that callers cannot tell
    /// which (invariant 4).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// An unknown, expired, revoked or reused refresh token, or one of another client.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// The requested scope is unknown, or not allowed for this client or resource (RFC 6749
    /// §5.2 `invalid_scope`).
    #[error("invalid scope")]
    InvalidScope,
    /// The requested resource is unknown, or not the session's (RFC 8707 §2 `invalid_target`).
    #[error("invalid target")]
    InvalidTarget,
    /// A bearer access token failed verification or a revocation check (RFC 6750 §3.1).
    #[error("invalid access token")]
    InvalidToken,
    /// A valid token whose user lacks the role the operation needs.
    #[error("insufficient role")]
    InsufficientRole,
    /// An authorization code that is unknown, expired, used before, or presented by another
    /// client, with another redirect URI or a PKCE verifier that does not match (RFC 6749
    /// §5.2 `invalid_grant`).
    #[error("invalid authorization code")]
    InvalidCode,
    /// A correct password; the login needs its second factor (`mfa::MfaRequired`).
    #[error("a second factor is required")]
    MfaRequired(super::mfa::MfaRequired),
    /// An `mfa_token` that is unknown, used, expired or another client's, or a second factor
    /// that is wrong, replayed or used: one error for all.
    #[error("invalid second factor")]
    InvalidSecondFactor,
    /// A correct password, but the account holds a role that needs a second factor, has
    /// none, and its enrolment grace (`mfa.enrol_grace`) is over.
    #[error("the account must enrol a second factor")]
    MfaEnrolmentRequired,
    /// No such factor of the user.
    #[error("factor not found")]
    FactorNotFound,
    /// `POST /signup` is closed (`accounts.signup`), or needs mail that is not configured.
    #[error("signup is closed")]
    SignupClosed,
    /// A correct password for a user whose address is not verified, under
    /// `accounts.require_verified_email`.
    #[error("email not verified")]
    EmailNotVerified,
    /// Flows that need mail are off (`mail.smtp_url` or `accounts.link_base` unset).
    #[error("mail is not configured")]
    MailDisabled,
    /// A token sent by email that is unknown, used, expired, of another purpose, or issued
    /// before a password change (one answer for all).
    #[error("invalid account token")]
    InvalidAccountToken,
    /// Passkeys are off: `[webauthn]` names no relying party.
    #[error("passkeys are not enabled")]
    PasskeysDisabled,
    /// A passkey ceremony that is unknown, used, expired or another user's, or an
    /// authenticator's answer that does not verify (challenge, origin, RP ID, user
    /// verification, signature).
    #[error("invalid passkey")]
    InvalidPasskey,
    /// The credential is registered already, to this account or another.
    #[error("passkey already registered")]
    PasskeyRegistered,
    /// The action needs a more recent login (`mfa.reauth_within`).
    #[error("a more recent login is required")]
    ReauthenticationRequired,
    /// A pushed authorization request that `/authorize` would refuse (RFC 9126 §2.3): the
    /// OAuth error code and a fixed description.
    #[error("invalid authorization request: {error}")]
    InvalidAuthorizationRequest {
        error: &'static str,
        description: String,
    },
    /// A device's poll that gets no tokens yet, or never will (RFC 8628 §3.5).
    #[error("device poll: {0:?}")]
    DevicePoll(super::oidc::DevicePoll),
    /// The client may not use this grant (RFC 6749 §5.2 `unauthorized_client`).
    #[error("unauthorized client")]
    UnauthorizedClient,
    /// Client authentication failed (RFC 6749 §5.2 `invalid_client`).
    #[error("invalid client")]
    InvalidClient,
    /// Too many failed logins for this username or address: retry after this many seconds.
    #[error("throttled for {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    /// Shedding load (password hashing saturated), or a resource the request needs is
    /// missing (no signing key): retry later. The reason is a fixed label, for logs and
    /// metrics.
    #[error("unavailable: {0}")]
    Unavailable(&'static str),
    /// No such user.
    #[error("user not found")]
    UserNotFound,
    /// No such session.
    #[error("session not found")]
    SessionNotFound,
    /// The username is taken (after normalisation).
    #[error("username taken")]
    UsernameTaken,
    /// The email address is another account's (compared case-insensitively, the domain
    /// IDNA-normalised).
    #[error("email taken")]
    EmailTaken,
    /// The username looks like an existing account's: it has the same confusable skeleton
    /// (Unicode UTS #39 §4).
    #[error("username looks like an existing one")]
    UsernameConfusable,
    /// A new username breaks a naming rule; the rule is safe to show.
    #[error("{0}")]
    BadUsername(super::username::NameError),
    /// A new password breaks a rule of `password.*`; the rule is safe to show.
    #[error("{0}")]
    WeakPassword(super::login::PasswordRule),
    /// Input the domain refuses (an empty username, an oversized password). A fixed text
    /// (`Cow::Borrowed`, a `&'static str`) names the rule and is safe to show; a built one
    /// (`Cow::Owned`) may hold input and is for logs only.
    #[error("bad input: {0}")]
    BadInput(std::borrow::Cow<'static, str>),
    /// The database cannot be reached: fail closed (invariant 6).
    #[error("database unavailable")]
    StoreUnavailable,
    /// The database has no tables yet: it was never migrated (`tessera migrate`).
    #[error("the database has no schema")]
    NoSchema,
    /// A bug or corrupted data. The cause is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => AuthError::StoreUnavailable,
            StoreError::NoSchema => AuthError::NoSchema,
            other => AuthError::Internal(other.to_string()),
        }
    }
}

impl From<super::password::PasswordError> for AuthError {
    fn from(e: super::password::PasswordError) -> Self {
        match e {
            super::password::PasswordError::Busy => {
                AuthError::Unavailable("password hashing saturated")
            }
            super::password::PasswordError::Internal(m) => AuthError::Internal(m),
        }
    }
}
