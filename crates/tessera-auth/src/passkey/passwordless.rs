//! Passwordless login with a discoverable credential (`POST /login/passkey/options` and
//! `/login/passkey`, the hosted page's autofill): the ceremony's state sealed into its id.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use webauthn_rs::prelude::{DiscoverableAuthentication, PublicKeyCredential};

use super::*;
use crate::audit::Caller;
use crate::oidc::token_digest;
use crate::time::{now_ms, UnixMillis};
use crate::{Auth, AuthError, ClientId, ClientMeta, TokenPair, TokenRequest};

impl Auth {
    /// The assertion options of a passwordless login (`POST /login/passkey/options`, and the
    /// hosted login page's autofill): any discoverable passkey of this relying party, with
    /// user verification.
    ///
    /// Errors: `PasskeysDisabled`, `StoreUnavailable`, `Internal`.
    pub async fn passwordless_options(&self) -> Result<PasskeyCeremony, AuthError> {
        let wa = self.webauthn()?;
        let (options, state) = wa
            .start_discoverable_authentication()
            .map_err(|e| AuthError::Internal(format!("webauthn: {e}")))?;
        // Anyone may ask, so nothing is stored: the state travels in the ceremony id, sealed
        // under the master key with its expiry, and is spent when an assertion checks out.
        let sealed = SealedCeremony {
            state: state_json::<DiscoverableAuthentication>(&state)?,
            expires_at: self.ceremony_expiry(now_ms()),
        };
        let plain = serde_json::to_vec(&sealed)
            .map_err(|e| AuthError::Internal(format!("webauthn state: {e}")))?;
        let sealed = self
            .keys
            .master()
            .seal(PASSWORDLESS_SEAL, &plain)
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        Ok(PasskeyCeremony {
            ceremony: URL_SAFE_NO_PAD.encode(sealed),
            options: options_json(&options)?,
        })
    }

    /// The state and expiry a passwordless ceremony id seals, if it opens and is unexpired.
    fn open_passwordless(&self, ceremony: &str, now: i64) -> Option<SealedCeremony> {
        let sealed = URL_SAFE_NO_PAD.decode(ceremony).ok()?;
        let plain = self.keys.master().open(PASSWORDLESS_SEAL, &sealed).ok()?;
        let c: SealedCeremony = serde_json::from_slice(&plain).ok()?;
        (c.expires_at > now).then_some(c)
    }

    /// The user a passwordless assertion proves (its ceremony is taken), with the RFC 8176
    /// methods of the login (`hwk user mfa` or `swk user mfa`): user verification was required, so the
    /// passkey is two factors in one. Every refusal of the assertion is `InvalidCredentials`,
    /// recorded as a failed login; an assertion that verified for a user whose address must be
    /// verified first is `EmailNotVerified`.
    ///
    /// Errors: `PasskeysDisabled`, `BadInput`, `InvalidCredentials`, `EmailNotVerified`
    /// (`accounts.require_verified_email`), `StoreUnavailable`, `Internal`.
    pub(crate) async fn verify_passwordless(
        &self,
        ceremony: &str,
        credential: &str,
        client: &ClientId,
        caller: &Caller,
    ) -> Result<(crate::store::User, &'static str), AuthError> {
        let wa = self.webauthn()?;
        check_ceremony(ceremony)?;
        let pkc: PublicKeyCredential = parse_credential(credential)?.credential;
        let now = now_ms();
        let refused = |why: &str| {
            tracing::info!(reason = why, "passwordless login refused");
            AuthError::InvalidCredentials
        };
        let result: Result<_, AuthError> = async {
            let c = self
                .open_passwordless(ceremony, now)
                .ok_or_else(|| refused("unknown or expired ceremony"))?;
            let state: DiscoverableAuthentication = state_of(&c.state)?;
            let (user_id, cred_id) = wa
                .identify_discoverable_authentication(&pkc)
                .map_err(|_| refused("no user handle"))?;
            let f = self
                .store
                .passkey(&URL_SAFE_NO_PAD.encode(cred_id))
                .await?
                .filter(|f| f.user_id == user_id)
                .ok_or_else(|| refused("unknown credential"))?;
            let user = self
                .store
                .user_by_id(user_id)
                .await?
                .filter(|u| !u.disabled)
                .ok_or_else(|| refused("unknown or disabled user"))?;
            let pk = stored_passkey(&f)?;
            let res = wa
                .finish_discoverable_authentication_v2(&pkc, state, &pk)
                .map_err(|e| {
                    tracing::info!(user_id = %user_id, error = %e, "passkey assertion refused");
                    AuthError::InvalidCredentials
                })?;
            // Invariant 7: the ceremony works once, whatever the counter says.
            if !self
                .store
                .spend_ceremony(&token_digest(ceremony), now, c.expires_at)
                .await?
            {
                return Err(refused("ceremony used"));
            }
            let method = self
                .passkey_used(&f, &res, now)
                .await?
                .ok_or_else(|| refused("counter replayed or backwards"))?;
            // webauthn-rs refuses a discoverable assertion without verification already; a
            // passkey alone is a login only with it.
            if method.ends_with("-presence") {
                return Err(refused("user not verified"));
            }
            Ok((user, method))
        }
        .await;
        match result {
            Ok((user, method)) => {
                self.check_verified_email(&user)?;
                Ok((user, passwordless_amr(method)))
            }
            Err(AuthError::InvalidCredentials) => {
                Err(self.login_failed(None, client, "passkey", caller).await)
            }
            Err(e) => Err(e),
        }
    }

    /// A passwordless login of the JSON API (`POST /login/passkey`): the ceremony of
    /// `passwordless_options` and the browser's assertion. Opens a session as `/login` does,
    /// with `amr` `hwk user mfa` (or `swk user mfa`) and `acr` phishing-resistant.
    ///
    /// Errors: as `verify_passwordless`, and `InvalidScope`, `InvalidTarget`.
    pub async fn login_with_passkey(
        &self,
        ceremony: &str,
        credential: &str,
        meta: ClientMeta,
        client: &ClientId,
        req: &TokenRequest,
        caller: &Caller,
    ) -> Result<TokenPair, AuthError> {
        let granted = self.grant(client, req)?;
        let (user, amr) = self
            .verify_passwordless(ceremony, credential, client, caller)
            .await?;
        let now = UnixMillis(now_ms().max(user.tokens_not_before + 1));
        let mut session = self.new_session(user.id, meta, client, &granted, now);
        session.amr = Some(amr.into());
        let subject = self
            .open_session(user.tokens_not_before, None, &session, client, caller)
            .await?;
        self.login_succeeded(&subject, &session, &granted, now, client, caller)
            .await
    }
}

/// The RFC 8176 methods of a passwordless login with a passkey of `method` (`swk` or `hwk`):
/// user verification was required, so the passkey is two factors in one.
fn passwordless_amr(method: &str) -> &'static str {
    match method {
        "swk" => "swk user mfa",
        _ => "hwk user mfa",
    }
}
