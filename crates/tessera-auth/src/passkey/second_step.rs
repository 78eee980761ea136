//! A passkey as the second step of a password login (`POST /login/mfa/passkey`): the options
//! on the login's `mfa_challenges` row, one assertion per challenge.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use webauthn_rs::prelude::{Passkey, PasskeyAuthentication, PublicKeyCredential};

use super::*;
use crate::oidc::token_digest;
use crate::store::{MfaChallenge, MfaFactor};
use crate::time::now_ms;
use crate::{Auth, AuthError};

/// What `Auth::parse_passkey_factor` read of a passkey second factor.
pub(crate) struct PasskeyFactor {
    user_handle: Option<Vec<u8>>,
}

impl Auth {
    /// The assertion options for the second step of a password login with a passkey
    /// (`POST /login/mfa/passkey`): a challenge for the user's passkeys, bound to the
    /// `mfa_token` (a second call replaces the first's challenge). Any client's mfa_token
    /// gets them: they tell its holder, who knew the password, only the user's credential
    /// ids, and the login completes only with the client the token is bound to.
    ///
    /// Errors: `PasskeysDisabled`, `BadInput`, `InvalidSecondFactor` (an unknown, used or
    /// expired mfa_token), `FactorNotFound` (the user has no passkey), `StoreUnavailable`,
    /// `Internal`.
    pub async fn second_factor_passkey_options(
        &self,
        mfa_token: &SecretString,
    ) -> Result<serde_json::Value, AuthError> {
        let wa = self.webauthn()?;
        let t = mfa_token.expose_secret();
        if t.is_empty() || t.len() > 256 {
            return Err(AuthError::BadInput("mfa_token is empty or too long".into()));
        }
        let hash = token_digest(t);
        let now = now_ms();
        let challenge = self
            .store
            .challenge(&hash, now, crate::mfa::MAX_FAILURES)
            .await?
            .ok_or(AuthError::InvalidSecondFactor)?;
        let passkeys: Vec<Passkey> = self
            .store
            .factors_of_user(challenge.user_id)
            .await?
            .iter()
            .filter(|f| f.kind == "passkey" && f.confirmed_at.is_some())
            .map(stored_passkey)
            .collect::<Result<_, _>>()?;
        if passkeys.is_empty() {
            return Err(AuthError::FactorNotFound);
        }
        let (mut options, state) = wa
            .start_passkey_authentication(&passkeys)
            .map_err(|e| AuthError::Internal(format!("webauthn: {e}")))?;
        let policy = self.second_factor_policy();
        options.public_key.user_verification = policy;
        let state = with_policy(state, "ast", policy)?;
        // On the login's own row (invariant 7): no ceremony row to write and delete.
        let stored = self
            .store
            .put_challenge_passkey(
                &hash,
                &state_json::<PasskeyAuthentication>(&state)?,
                self.ceremony_expiry(now).min(challenge.expires_at),
                now,
            )
            .await?;
        if !stored {
            // Used by a parallel request meanwhile.
            return Err(AuthError::InvalidSecondFactor);
        }
        options_json(&options)
    }

    /// A passkey second factor, read before its guess is counted: a credential that does not
    /// parse is the caller's mistake (400), and spends neither a guess nor the ceremony.
    ///
    /// Errors: `PasskeysDisabled`, `BadInput` (not a credential).
    pub(crate) fn parse_passkey_factor(
        &self,
        credential: &str,
    ) -> Result<PasskeyFactor, AuthError> {
        self.webauthn()?;
        let parsed: Parsed<PublicKeyCredential> = parse_credential(credential)?;
        Ok(PasskeyFactor {
            user_handle: parsed.user_handle,
        })
    }

    /// Whether `credential` (read by `parse_passkey_factor`) is an assertion of one of the
    /// user's passkeys for the options `state` its counted guess took from the login's
    /// challenge, and used now for the first time; its RFC 8176 method (`hwk` or `swk`) when
    /// it is.
    ///
    /// Errors: `InvalidSecondFactor` (no options were bound, or a parallel request took
    /// them), `StoreUnavailable`, `Internal`.
    pub(crate) async fn check_passkey_factor(
        &self,
        challenge: &MfaChallenge,
        credential: &str,
        read: &PasskeyFactor,
        state: Option<&str>,
        now: i64,
    ) -> Result<Option<&'static str>, AuthError> {
        let wa = self.webauthn()?;
        // WebAuthn Level 3 §7.2 step 6: a user handle, when given, is the user's.
        if read
            .user_handle
            .as_ref()
            .is_some_and(|h| h.as_slice() != challenge.user_id.as_bytes())
        {
            return Ok(None);
        }
        // No ceremony: used by a parallel request with this mfa_token, or never asked for.
        // Not a wrong factor for the throttle, though it used one of the token's guesses (a
        // retry burst keeps its winner, which was counted before it).
        let Some(state) = state else {
            return Err(AuthError::InvalidSecondFactor);
        };
        let state: PasskeyAuthentication = state_of(state)?;
        let res = match check_assertion(wa, credential, &state) {
            Ok(res) => res,
            Err(_) => return Ok(None),
        };
        let id = URL_SAFE_NO_PAD.encode(res.cred_id());
        let Some(f) = self.store.passkey(&id).await? else {
            return Ok(None);
        };
        if f.user_id != challenge.user_id {
            return Ok(None);
        }
        self.passkey_used(&f, &res, now).await
    }

    /// Stores what an assertion `res` of passkey `f` changed; its RFC 8176 method, or `None`
    /// when a parallel assertion with the same counter was stored first, or the counter went
    /// backwards (a cloned authenticator).
    pub(super) async fn passkey_used(
        &self,
        f: &MfaFactor,
        res: &webauthn_rs::prelude::AuthenticationResult,
        now: i64,
    ) -> Result<Option<&'static str>, AuthError> {
        let counter = i64::from(res.counter());
        if counter != 0 && counter <= f.sign_count {
            tracing::warn!(user_id = %f.user_id, factor_id = %f.id, "passkey counter went backwards: a cloned authenticator?");
            return Ok(None);
        }
        let g = after_use(f, stored_passkey(f)?, res)?;
        match self.store.passkey_used(&g, f.sign_count, now).await? {
            true => Ok(Some(key_method(&g, res.user_verified()))),
            false => Ok(None),
        }
    }
}
