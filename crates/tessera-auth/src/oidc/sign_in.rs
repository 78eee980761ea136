//! Signing in at the hosted pages: the password step, its second step, and a passkey without
//! a password, each ending in a new SSO session (`sso.rs`) and what follows it.

use secrecy::SecretString;

use super::sso::*;
use super::{AuthorizationRequest, Decision};
use crate::audit::Caller;
use crate::login::check_login_input;
use crate::store::{SsoSession, User};
use crate::time::{now_ms, UnixMillis};
use crate::{Auth, AuthError, ClientId, ClientMeta};

impl Auth {
    /// Signs in at the hosted login: the same checks, throttle, timing and audit events as
    /// `login` (invariant 4), then a new SSO session, replacing the browser's old one if it
    /// had one. What comes next is consent or the code; the login itself satisfies
    /// `prompt=login` and `max_age`.
    ///
    /// Errors: as `login` (`BadInput`, `Unavailable`, `Throttled`, `InvalidCredentials`,
    /// `StoreUnavailable`).
    pub async fn sign_in(
        &self,
        req: &AuthorizationRequest,
        username: &str,
        password: SecretString,
        meta: ClientMeta,
        old: Option<&SsoCookie>,
        caller: &Caller,
    ) -> Result<SignedIn, AuthError> {
        let client = ClientId::registered(&req.client_id);
        let (sso, user, cookie) = self
            .start_sso(&client, username, password, meta, old, caller)
            .await?;
        self.signed_in(req, sso, user, cookie).await
    }

    /// What follows a sign-in at the hosted login: consent, or the code (with the cookie of
    /// the new SSO session and its lifetime).
    async fn signed_in(
        &self,
        req: &AuthorizationRequest,
        sso: SsoSession,
        user: User,
        cookie: SsoCookie,
    ) -> Result<SignedIn, AuthError> {
        let decision = if self.needs_consent(req, sso.user_id).await? {
            Decision::Consent {
                user_id: user.id,
                username: user.username,
            }
        } else {
            Decision::Code(self.issue_code(req, &sso, sso.created_at).await?)
        };
        Ok(SignedIn {
            cookie,
            max_age_secs: self.settings.sso.absolute_ttl.as_secs(),
            decision,
        })
    }

    /// Signs in at a hosted page that serves no authorization request (the device page): the
    /// same checks as `sign_in`. Returns the new session's cookie and its lifetime (seconds).
    ///
    /// Errors: as `sign_in`.
    pub async fn sign_in_browser(
        &self,
        username: &str,
        password: SecretString,
        meta: ClientMeta,
        old: Option<&SsoCookie>,
        caller: &Caller,
    ) -> Result<(SsoCookie, u64), AuthError> {
        let (_, _, cookie) = self
            .start_sso(&self.first_party(), username, password, meta, old, caller)
            .await?;
        Ok((cookie, self.settings.sso.absolute_ttl.as_secs()))
    }

    /// The second step of `sign_in_browser`: the `mfa_token` its password step gave the page
    /// and a second factor.
    ///
    /// Errors: as `complete_mfa`.
    pub async fn sign_in_browser_mfa(
        &self,
        mfa_token: &SecretString,
        factor: crate::mfa::SecondFactor,
        meta: ClientMeta,
        old: Option<&SsoCookie>,
        caller: &Caller,
    ) -> Result<(SsoCookie, u64), AuthError> {
        let (_, _, cookie) = self
            .second_step_sso(&self.first_party(), mfa_token, factor, meta, old, caller)
            .await?;
        Ok((cookie, self.settings.sso.absolute_ttl.as_secs()))
    }

    /// Signs in at the hosted login with a passkey, without a password: the ceremony of
    /// `passwordless_options` and the browser's assertion (`credential`, JSON), then the same
    /// decision as `sign_in`. The SSO session's `amr` is `hwk user mfa` (or `swk user mfa`).
    ///
    /// Errors: as `login_with_passkey` (`PasskeysDisabled`, `BadInput`,
    /// `InvalidCredentials`, `EmailNotVerified`, `StoreUnavailable`, `Internal`).
    #[allow(clippy::too_many_arguments)]
    pub async fn sign_in_passkey(
        &self,
        req: &AuthorizationRequest,
        ceremony: &str,
        credential: &str,
        meta: ClientMeta,
        old: Option<&SsoCookie>,
        caller: &Caller,
    ) -> Result<SignedIn, AuthError> {
        let client = ClientId::registered(&req.client_id);
        let (user, amr) = self
            .verify_passwordless(ceremony, credential, &client, caller)
            .await?;
        let now = UnixMillis(now_ms().max(user.tokens_not_before + 1));
        let (sso, user, cookie) = self
            .open_sso(&client, user, now, amr, meta, old, None, caller)
            .await?;
        self.signed_in(req, sso, user, cookie).await
    }

    /// `sign_in_passkey` at a hosted page that serves no authorization request (the account
    /// page): the new session's cookie and its lifetime (seconds).
    ///
    /// Errors: as `sign_in_passkey`.
    pub async fn sign_in_browser_passkey(
        &self,
        ceremony: &str,
        credential: &str,
        meta: ClientMeta,
        old: Option<&SsoCookie>,
        caller: &Caller,
    ) -> Result<(SsoCookie, u64), AuthError> {
        let client = self.first_party();
        let (user, amr) = self
            .verify_passwordless(ceremony, credential, &client, caller)
            .await?;
        let now = UnixMillis(now_ms().max(user.tokens_not_before + 1));
        let (_, _, cookie) = self
            .open_sso(&client, user, now, amr, meta, old, None, caller)
            .await?;
        Ok((cookie, self.settings.sso.absolute_ttl.as_secs()))
    }

    /// The user the browser's live SSO session signed in, and when (ms): what the account
    /// page acts for.
    ///
    /// Errors: `StoreUnavailable`.
    pub async fn browser_user(
        &self,
        cookie: Option<&SsoCookie>,
    ) -> Result<Option<BrowserUser>, AuthError> {
        Ok(self
            .live_sso(cookie, now_ms())
            .await?
            .map(|(sso, user)| BrowserUser {
                user_id: user.id,
                sso_session_id: sso.id,
                username: user.username,
                auth_time: sso.auth_time,
            }))
    }

    /// The second step of a hosted sign-in for `client`: the factor checked against the
    /// `mfa_token`, then a new SSO session for the challenge's user (still under the cut-off
    /// read with the password), with the methods used.
    ///
    /// Errors: as `complete_mfa`.
    async fn second_step_sso(
        &self,
        client: &ClientId,
        mfa_token: &SecretString,
        factor: crate::mfa::SecondFactor,
        meta: ClientMeta,
        old: Option<&SsoCookie>,
        caller: &Caller,
    ) -> Result<(SsoSession, User, SsoCookie), AuthError> {
        let (challenge, amr) = self
            .verify_second_factor(mfa_token, &factor, meta.ip.as_deref(), client, caller)
            .await?;
        let opened = async {
            let user = self.challenge_user(&challenge).await?;
            let now = UnixMillis(now_ms().max(challenge.fence + 1));
            let hash = Some(challenge.token_hash.as_str());
            self.open_sso(client, user, now, amr, meta, old, hash, caller)
                .await
        }
        .await;
        match opened {
            // The account or its factors changed after the factor was checked.
            Err(AuthError::InvalidCredentials | AuthError::InvalidSecondFactor) => {
                Err(self.refused_after_check(&challenge, &factor).await)
            }
            other => other,
        }
    }

    /// The password check of the hosted pages, then a new SSO session in place of the
    /// browser's old one (if any), with the user it signed in. `client` names who asked, for
    /// the audit trail.
    async fn start_sso(
        &self,
        client: &ClientId,
        username: &str,
        password: SecretString,
        meta: ClientMeta,
        old: Option<&SsoCookie>,
        caller: &Caller,
    ) -> Result<(SsoSession, User, SsoCookie), AuthError> {
        check_login_input(username, &password)?;
        let (user, now) = self
            .verify_password_login(username, password, meta.ip.as_deref(), client, caller)
            .await?;
        // A password alone never signs in a user who has a second factor: the page asks for it.
        if let Some(needed) = self
            .second_factor_needed(&user, client, &Default::default())
            .await?
        {
            return Err(needed);
        }
        self.open_sso(client, user, now, "pwd", meta, old, None, caller)
            .await
    }

    /// The second step of the hosted login (`POST /authorize/mfa`): the `mfa_token` the
    /// password step gave the page and a second factor, then the same decision as `sign_in`.
    ///
    /// Errors: as `complete_mfa`.
    pub async fn sign_in_mfa(
        &self,
        req: &AuthorizationRequest,
        mfa_token: &SecretString,
        factor: crate::mfa::SecondFactor,
        meta: ClientMeta,
        old: Option<&SsoCookie>,
        caller: &Caller,
    ) -> Result<SignedIn, AuthError> {
        let client = ClientId::registered(&req.client_id);
        let (sso, user, cookie) = self
            .second_step_sso(&client, mfa_token, factor, meta, old, caller)
            .await?;
        self.signed_in(req, sso, user, cookie).await
    }
}
