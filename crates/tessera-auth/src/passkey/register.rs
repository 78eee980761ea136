//! Adding a passkey (`POST /me/factors/passkey` and its answer): a discoverable credential
//! with user verification, named by the user, excluding the ones they hold.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::ExposeSecret;
use uuid::Uuid;
use webauthn_rs::prelude::{Credential, PasskeyRegistration, RegisterPublicKeyCredential};

use webauthn_rs_proto::UserVerificationPolicy;

use super::*;
use crate::audit::{Caller, Event, Record};
use crate::mfa::FactorInfo;
use crate::oidc::{random_token, token_digest};
use crate::store::{CeremonyPurpose, MfaFactor, PasskeyRefused};
use crate::time::now_ms;
use crate::{Auth, AuthError};

impl Auth {
    /// Starts adding a passkey (`POST /me/factors/passkey`): the creation options, asking for
    /// a discoverable credential with user verification, excluding the user's passkeys. Needs a
    /// login within `mfa.reauth_within` (`auth_time`, ms).
    ///
    /// Errors: `PasskeysDisabled`, `ReauthenticationRequired`, `BadInput` (the name),
    /// `UserNotFound`, `StoreUnavailable`, `Internal`.
    pub async fn start_passkey_registration(
        &self,
        user_id: Uuid,
        name: Option<&str>,
        auth_time: i64,
    ) -> Result<PasskeyCeremony, AuthError> {
        let wa = self.webauthn()?;
        self.check_recent(auth_time)?;
        let name = crate::mfa::factor_name(name.unwrap_or("Passkey"))?;
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(AuthError::UserNotFound)?;
        let exclude = self
            .store
            .factors_of_user(user_id)
            .await?
            .iter()
            .filter(|f| f.kind == "passkey")
            .filter_map(|f| stored_passkey(f).ok())
            .map(|pk| pk.cred_id().clone())
            .collect();
        let (mut options, state) = wa
            .start_passkey_registration(user.id, &user.username, &user.username, Some(exclude))
            .map_err(|e| AuthError::Internal(format!("webauthn: {e}")))?;
        // Discoverable, so that it can log in without a username (passwordless, autofill).
        let policy = self.second_factor_policy();
        if let Some(sel) = options.public_key.authenticator_selection.as_mut() {
            sel.resident_key = Some(webauthn_rs_proto::ResidentKeyRequirement::Required);
            sel.require_resident_key = true;
            sel.user_verification = policy;
        }
        if policy != UserVerificationPolicy::Required {
            if let Some(ext) = options.public_key.extensions.as_mut() {
                ext.cred_protect = None;
            }
        }
        let state = with_policy(state, "rs", policy)?;
        let ceremony = random_token()?;
        let now = now_ms();
        self.put_ceremony(
            token_digest(ceremony.expose_secret()),
            CeremonyPurpose::Register,
            Some(user_id),
            Some(name),
            state_json::<PasskeyRegistration>(&state)?,
            self.ceremony_expiry(now),
        )
        .await?;
        Ok(PasskeyCeremony {
            ceremony: ceremony.expose_secret().to_string(),
            options: options_json(&options)?,
        })
    }

    /// Finishes adding a passkey with the authenticator's answer (`credential`, the JSON of
    /// the browser's `PublicKeyCredential`). Checks the challenge, origin, RP ID and user
    /// verification; a credential id registered to any account is refused. Needs a login
    /// within `mfa.reauth_within`; the user's other sessions and SSO sessions end (`keep` is
    /// the caller's: a refresh session, or on the account page its SSO session), and the
    /// first factor brings recovery codes.
    ///
    /// Errors: `PasskeysDisabled`, `ReauthenticationRequired`, `BadInput` (not a credential,
    /// or ten factors already), `InvalidPasskey` (an unknown, used or expired ceremony, or an
    /// answer that does not verify), `PasskeyRegistered`, `StoreUnavailable`, `Internal`.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_passkey_registration(
        &self,
        user_id: Uuid,
        ceremony: &str,
        credential: &str,
        auth_time: i64,
        keep: Uuid,
        caller: &Caller,
    ) -> Result<PasskeyAdded, AuthError> {
        let wa = self.webauthn()?;
        self.check_recent(auth_time)?;
        check_ceremony(ceremony)?;
        let parsed: Parsed<RegisterPublicKeyCredential> = parse_credential(credential)?;
        let reg = parsed.credential;
        let now = now_ms();
        let c = self
            .store
            .take_ceremony(
                &token_digest(ceremony),
                CeremonyPurpose::Register,
                Some(user_id),
                now,
            )
            .await?
            .ok_or(AuthError::InvalidPasskey)?;
        // Registered already (this account's own, which the options excluded, or another's):
        // a conflict, not a failed check.
        if self
            .store
            .passkey(&URL_SAFE_NO_PAD.encode(&parsed.raw_id))
            .await?
            .is_some()
        {
            return Err(AuthError::PasskeyRegistered);
        }
        let state: PasskeyRegistration = state_of(&c.state)?;
        let pk = wa.finish_passkey_registration(&reg, &state).map_err(|e| {
            tracing::info!(user_id = %user_id, error = %e, "passkey registration refused");
            AuthError::InvalidPasskey
        })?;
        let first = !self.store.has_factor(user_id).await?;
        let name = c.name.unwrap_or_else(|| "Passkey".into());
        let factor = passkey_factor(user_id, name, &pk, now)?;
        match self
            .store
            .insert_passkey(&factor, crate::mfa::MAX_FACTORS)
            .await?
        {
            None => {}
            Some(PasskeyRefused::Registered) => return Err(AuthError::PasskeyRegistered),
            Some(PasskeyRefused::TooMany) => return Err(crate::mfa::too_many_factors()),
        }
        self.audit(
            caller,
            Event::FactorAdded,
            Record::user(user_id).reason("passkey"),
        )
        .await;
        self.end_other_sessions(user_id, keep).await?;
        let recovery_codes = match first {
            true => self.new_recovery_set(user_id, true, caller).await?,
            false => None,
        };
        Ok(PasskeyAdded {
            factor: FactorInfo::from(&factor),
            recovery_codes,
        })
    }
}

/// The stored form of a passkey registered now: its credential (as webauthn-rs serialises it),
/// id, sign counter and backup flags (WebAuthn Level 3 §6.1, flags BE and BS).
///
/// Errors: `Internal` when the credential does not serialise.
fn passkey_factor(
    user_id: Uuid,
    name: String,
    pk: &Passkey,
    now: i64,
) -> Result<MfaFactor, AuthError> {
    let cred = Credential::from(pk.clone());
    Ok(MfaFactor {
        id: Uuid::now_v7(),
        user_id,
        kind: "passkey".into(),
        name,
        secret_enc: Vec::new(),
        confirmed_at: Some(now),
        last_used_step: -1,
        created_at: now,
        last_used_at: None,
        credential_id: Some(URL_SAFE_NO_PAD.encode(pk.cred_id())),
        credential: Some(state_json(pk)?),
        sign_count: i64::from(cred.counter),
        backup_eligible: cred.backup_eligible,
        backup_state: cred.backup_state,
    })
}
