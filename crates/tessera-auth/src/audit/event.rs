//! The audited events, and their names in logs, rows and metrics.

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// A password login issued a session.
    LoginSucceeded,
    /// `reason`: `unknown_user`, `bad_password`, `disabled`.
    LoginFailed,
    /// Refused by the throttle before any password was checked.
    LoginThrottled,
    /// A refresh token rotated (or was retried inside the grace window).
    Refreshed,
    /// A spent refresh token came back: the session was revoked (RFC 9700 §4.14.2).
    ReuseDetected,
    /// `/logout` ended a session.
    Logout,
    /// `/logout/all` ended every session of the caller.
    LogoutAll,
    /// A new password was set (every session of the user ended).
    PasswordChanged,
    /// `reason`: `created` or `imported`.
    UserCreated,
    /// Disabled: every token of the user refused from now on.
    UserDisabled,
    UserEnabled,
    /// The roles were replaced.
    RolesChanged,
    /// Every session of the user ended by an administrator.
    UserRevoked,
    /// The custom claims were replaced.
    ClaimsChanged,
    /// The email address was set, changed or cleared.
    EmailChanged,
    /// One session ended by an administrator.
    SessionRevoked,
    /// A client revoked a token at `/revoke` (RFC 7009), once per token: `reason`
    /// `refresh_token` (its session ended) or `access_token` (its `jti` denylisted).
    TokenRevoked,
    /// A signing key added or re-sealed; `reason`: `manual`, `automatic`, `imported`, `rekeyed`.
    KeyRotated,
    /// `reason`: `unknown_client`, `bad_secret`, `no_secret` (a confidential client without its
    /// secret).
    ClientAuthFailed,
    /// An authorization code was exchanged for tokens (`/token`, RFC 6749 §4.1.3).
    CodeExchanged,
    /// An authorization code came back after its exchange: what it produced was revoked
    /// (RFC 6749 §4.1.2, invariant 7).
    CodeReplayed,
    /// An SSO session ended at the end-session endpoint (RP-Initiated Logout).
    SsoLogout,
    /// A logout token was delivered to a client's back channel.
    BackchannelDelivered,
    /// A logout token was not delivered; `reason`: `retrying` or `gave_up`.
    BackchannelFailed,
    /// A wrong second factor was presented with an mfa_token.
    MfaFailed,
    /// A recovery code completed a login.
    RecoveryCodeUsed,
    /// A new set of recovery codes replaced the old one.
    RecoveryCodesGenerated,
    /// A second factor was confirmed.
    FactorAdded,
    /// A second factor was removed (`reason`: `reset_by_admin` for an administrator's reset).
    FactorRemoved,
    /// A password-reset link was queued to the user's address.
    PasswordResetRequested,
    /// A password was set with a reset link (every session of the user ended).
    PasswordReset,
    /// A queued message was given up after `mail.max_attempts`.
    MailDead,
    /// A user deleted their account (its personal data erased).
    UserDeleted,
    /// An administrator invited an address.
    UserInvited,
    /// An invitation was withdrawn before it was accepted (the invited account deleted).
    InvitationRevoked,
    /// A user asked to change their address: a link to confirm it went to the new one.
    EmailChangeRequested,
    /// The username was changed (by the user, or with their address-shaped name's address).
    UsernameChanged,
}

impl Event {
    pub const ALL: [Event; 37] = [
        Event::LoginSucceeded,
        Event::LoginFailed,
        Event::LoginThrottled,
        Event::Refreshed,
        Event::ReuseDetected,
        Event::Logout,
        Event::LogoutAll,
        Event::PasswordChanged,
        Event::UserCreated,
        Event::UserDisabled,
        Event::UserEnabled,
        Event::RolesChanged,
        Event::UserRevoked,
        Event::ClaimsChanged,
        Event::EmailChanged,
        Event::SessionRevoked,
        Event::TokenRevoked,
        Event::KeyRotated,
        Event::ClientAuthFailed,
        Event::CodeExchanged,
        Event::CodeReplayed,
        Event::SsoLogout,
        Event::BackchannelDelivered,
        Event::BackchannelFailed,
        Event::MfaFailed,
        Event::RecoveryCodeUsed,
        Event::RecoveryCodesGenerated,
        Event::FactorAdded,
        Event::FactorRemoved,
        Event::PasswordResetRequested,
        Event::PasswordReset,
        Event::MailDead,
        Event::UserDeleted,
        Event::UserInvited,
        Event::InvitationRevoked,
        Event::EmailChangeRequested,
        Event::UsernameChanged,
    ];

    /// The event's name in logs, rows, metrics and the admin API.
    pub fn name(self) -> &'static str {
        match self {
            Event::LoginSucceeded => "login.succeeded",
            Event::LoginFailed => "login.failed",
            Event::LoginThrottled => "login.throttled",
            Event::Refreshed => "token.refreshed",
            Event::ReuseDetected => "session.reuse_detected",
            Event::Logout => "session.logout",
            Event::LogoutAll => "session.logout_all",
            Event::PasswordChanged => "user.password_changed",
            Event::UserCreated => "user.created",
            Event::UserDisabled => "user.disabled",
            Event::UserEnabled => "user.enabled",
            Event::RolesChanged => "user.roles_changed",
            Event::UserRevoked => "user.sessions_revoked",
            Event::ClaimsChanged => "user.claims_changed",
            Event::EmailChanged => "user.email_changed",
            Event::SessionRevoked => "session.revoked",
            Event::TokenRevoked => "token.revoked",
            Event::KeyRotated => "key.rotated",
            Event::ClientAuthFailed => "client.auth_failed",
            Event::CodeExchanged => "code.exchanged",
            Event::CodeReplayed => "code.replayed",
            Event::SsoLogout => "sso.logout",
            Event::BackchannelDelivered => "backchannel.delivered",
            Event::BackchannelFailed => "backchannel.failed",
            Event::MfaFailed => "mfa.failed",
            Event::RecoveryCodeUsed => "mfa.recovery_code_used",
            Event::RecoveryCodesGenerated => "mfa.recovery_codes_generated",
            Event::FactorAdded => "mfa.factor_added",
            Event::FactorRemoved => "mfa.factor_removed",
            Event::PasswordResetRequested => "password.reset_requested",
            Event::PasswordReset => "password.reset",
            Event::MailDead => "mail.dead",
            Event::UserDeleted => "user.deleted",
            Event::UserInvited => "user.invited",
            Event::InvitationRevoked => "user.invitation_revoked",
            Event::EmailChangeRequested => "user.email_change_requested",
            Event::UsernameChanged => "user.renamed",
        }
    }

    /// The event named `name` (as `name()` spells it), if any.
    pub fn parse(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.name() == name)
    }
}
