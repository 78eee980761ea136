//! The user's factors: TOTP enrolment and confirmation, names, removal, recovery codes,
//! an administrator's reset, and re-sealing under a new master key.

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::*;
use crate::audit::{Caller, Event, Record};
use crate::store::MfaFactor;
use crate::time::{now_ms, UnixMillis};
use crate::{Auth, AuthError};

/// A factor as the user and administrators see it (no secret).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FactorInfo {
    pub id: Uuid,
    /// `totp`.
    pub kind: String,
    pub name: String,
    /// Whether a valid code confirmed it (only confirmed factors count).
    pub confirmed: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub last_used_at: Option<i64>,
    /// A passkey's backup eligibility (a synced passkey) and state, as last seen.
    pub backup_eligible: Option<bool>,
    pub backup_state: Option<bool>,
}

impl From<&MfaFactor> for FactorInfo {
    fn from(f: &MfaFactor) -> Self {
        FactorInfo {
            id: f.id,
            kind: f.kind.clone(),
            name: f.name.clone(),
            confirmed: f.confirmed_at.is_some(),
            created_at: UnixMillis(f.created_at).as_secs(),
            last_used_at: f.last_used_at.map(|t| UnixMillis(t).as_secs()),
            backup_eligible: (f.kind == "passkey").then_some(f.backup_eligible),
            backup_state: (f.kind == "passkey").then_some(f.backup_state),
        }
    }
}

impl Auth {
    /// A new TOTP factor for the user (`POST /me/factors/totp`): its secret (160 random
    /// bits), shown once as base32, an `otpauth://` URI and a QR code, sealed under the master
    /// key when stored. It counts only once `confirm_totp` takes a valid code.
    ///
    /// Errors: `BadInput` (a name too long, or ten factors already), `UserNotFound`,
    /// `StoreUnavailable`, `Internal`.
    pub async fn enrol_totp(
        &self,
        user_id: Uuid,
        name: Option<&str>,
    ) -> Result<TotpEnrolment, AuthError> {
        let name = factor_name(name.unwrap_or("Authenticator app"))?;
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(AuthError::UserNotFound)?;
        let mut secret = zeroize::Zeroizing::new([0u8; 20]);
        aws_lc_rs::rand::fill(&mut secret[..])
            .map_err(|_| AuthError::Internal("no randomness".into()))?;
        let id = Uuid::now_v7();
        let totp = self.totp(&secret[..], &user.username)?;
        let uri = totp
            .to_url()
            .map_err(|e| AuthError::Internal(format!("totp: {e}")))?;
        let qr = qrcode::QrCode::new(uri.as_bytes())
            .map_err(|e| AuthError::Internal(format!("qr: {e}")))?
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .build();
        let sealed = seal_totp_secret(self.keys.master(), id, &secret[..])?;
        let now = now_ms();
        let stored = self
            .store
            .insert_factor(
                &MfaFactor::new_totp(id, user_id, name, sealed, now),
                MAX_FACTORS,
            )
            .await?;
        if !stored {
            return Err(too_many_factors());
        }
        Ok(TotpEnrolment {
            factor_id: id,
            secret: SecretString::from(base32_lower(&secret[..]).to_ascii_uppercase()),
            otpauth_uri: SecretString::from(uri),
            qr_svg: SecretString::from(qr),
        })
    }

    /// Confirms an enrolled TOTP factor with a valid code (`POST /me/factors/{id}/confirm`).
    /// Needs a login within `mfa.reauth_within` (`auth_time`, ms). The first factor also
    /// brings a set of recovery codes, returned here once. The user's other sessions and SSO
    /// sessions end (`keep` is the caller's own; see `end_other_sessions`).
    ///
    /// Errors: `ReauthenticationRequired`, `FactorNotFound` (no such unconfirmed factor of the user),
    /// `InvalidSecondFactor` (a wrong code), `StoreUnavailable`, `Internal`.
    pub async fn confirm_totp(
        &self,
        user_id: Uuid,
        factor_id: Uuid,
        code: &SecretString,
        auth_time: i64,
        keep: Uuid,
        caller: &Caller,
    ) -> Result<Option<Vec<SecretString>>, AuthError> {
        self.check_recent(auth_time)?;
        let factors = self.store.factors_of_user(user_id).await?;
        let f = factors
            .iter()
            .find(|f| f.id == factor_id && f.confirmed_at.is_none())
            .ok_or(AuthError::FactorNotFound)?;
        let first = factors.iter().all(|f| f.confirmed_at.is_none());
        let now = now_ms();
        let at = UnixMillis(now).as_secs() as u64;
        let step = totp_step(self.keys.master(), f, code.expose_secret().trim(), at)?;
        let Some(step) = step else {
            return Err(AuthError::InvalidSecondFactor);
        };
        if !self
            .store
            .take_totp_step(f.id, step as i64, true, now)
            .await?
        {
            return Err(AuthError::InvalidSecondFactor);
        }
        self.audit(
            caller,
            Event::FactorAdded,
            Record::user(user_id).reason("totp"),
        )
        .await;
        self.end_other_sessions(user_id, keep).await?;
        match first {
            true => self.new_recovery_set(user_id, true, caller).await,
            false => Ok(None),
        }
    }

    /// The user's factors, oldest first.
    ///
    /// Errors: `StoreUnavailable`.
    pub async fn factors(&self, user_id: Uuid) -> Result<Vec<FactorInfo>, AuthError> {
        let rows = self.store.factors_of_user(user_id).await?;
        Ok(rows.iter().map(FactorInfo::from).collect())
    }

    /// Renames one of the user's factors.
    ///
    /// Errors: `BadInput` (empty or too long), `FactorNotFound`, `StoreUnavailable`.
    pub async fn rename_factor(
        &self,
        user_id: Uuid,
        factor_id: Uuid,
        name: &str,
    ) -> Result<(), AuthError> {
        let name = factor_name(name)?;
        match self.store.rename_factor(user_id, factor_id, &name).await? {
            true => Ok(()),
            false => Err(AuthError::FactorNotFound),
        }
    }

    /// Removes one of the user's factors. Needs a login within `mfa.reauth_within`
    /// (`auth_time`, ms); the user's other sessions and SSO sessions end (`keep` is the
    /// caller's; see `end_other_sessions`). Removing the last confirmed factor also drops the
    /// recovery codes.
    ///
    /// Errors: `ReauthenticationRequired`, `FactorNotFound`, `StoreUnavailable`.
    pub async fn remove_factor(
        &self,
        user_id: Uuid,
        factor_id: Uuid,
        auth_time: i64,
        keep: Uuid,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        self.check_recent(auth_time)?;
        // The pending logins go first: a second step still running then finds its challenge
        // gone (refused, nothing counted) rather than its recovery code (a wrong factor).
        self.store.drop_challenges_of_user(user_id).await?;
        if !self.store.delete_factor(user_id, factor_id).await? {
            return Err(AuthError::FactorNotFound);
        }
        if !self.store.has_factor(user_id).await? {
            self.store
                .replace_recovery_codes(user_id, &[], now_ms(), false)
                .await?;
        }
        self.audit(caller, Event::FactorRemoved, Record::user(user_id))
            .await;
        self.end_other_sessions(user_id, keep).await
    }

    /// A new set of recovery codes, replacing the old set (`POST /me/recovery_codes`). Needs
    /// a confirmed factor and a login within `mfa.reauth_within`.
    ///
    /// Errors: `ReauthenticationRequired`, `FactorNotFound` (no confirmed factor),
    /// `StoreUnavailable`, `Internal`.
    pub async fn regenerate_recovery_codes(
        &self,
        user_id: Uuid,
        auth_time: i64,
        caller: &Caller,
    ) -> Result<Vec<SecretString>, AuthError> {
        self.check_recent(auth_time)?;
        if !self.store.has_factor(user_id).await? {
            return Err(AuthError::FactorNotFound);
        }
        self.new_recovery_set(user_id, false, caller)
            .await?
            .ok_or_else(|| AuthError::Internal("a replacement stored no recovery codes".into()))
    }

    /// When the user logged in for the session `session_id` (ms; for a session made through
    /// the hosted login, the SSO session's `auth_time`): what `confirm_totp`, `remove_factor`
    /// and `regenerate_recovery_codes` check for recency.
    ///
    /// Errors: `SessionNotFound`, `StoreUnavailable`.
    pub async fn login_time(&self, session_id: Uuid) -> Result<i64, AuthError> {
        let s = self
            .store
            .session(session_id)
            .await?
            .ok_or(AuthError::SessionNotFound)?;
        // A session made through the hosted login is as recent as the SSO session's sign-in,
        // not its code exchange.
        match s.sso_session_id {
            Some(sid) => Ok(self
                .store
                .sso_session(sid)
                .await?
                .map_or(i64::MIN, |sso| sso.auth_time)),
            None => Ok(s.created_at),
        }
    }

    /// How many unused recovery codes the user has.
    ///
    /// Errors: `StoreUnavailable`.
    pub async fn recovery_codes_left(&self, user_id: Uuid) -> Result<i64, AuthError> {
        Ok(self.store.recovery_codes_left(user_id).await?)
    }

    /// Removes every factor and recovery code of a user (an administrator's recovery path
    /// for a lost device); their sessions end. Returns how many factors there were.
    ///
    /// Errors: `StoreUnavailable`.
    pub async fn reset_factors(&self, user_id: Uuid, caller: &Caller) -> Result<u64, AuthError> {
        let n = self.store.delete_factors(user_id).await?;
        self.audit(
            caller,
            Event::FactorRemoved,
            Record::user(user_id).reason("reset_by_admin"),
        )
        .await;
        self.end_sessions(crate::Ending::AllOf(user_id), "factors_reset")
            .await?;
        Ok(n)
    }

    /// A new set of recovery codes in place of the user's, shown once; with `first` (the
    /// set a first factor brings), only if the user holds none: of two first factors
    /// confirmed at once, one answer carries the set, the other `None`.
    pub(crate) async fn new_recovery_set(
        &self,
        user_id: Uuid,
        first: bool,
        caller: &Caller,
    ) -> Result<Option<Vec<SecretString>>, AuthError> {
        let codes = new_recovery_codes()?;
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| recovery_digest(user_id, c.expose_secret()))
            .collect();
        if !self
            .store
            .replace_recovery_codes(user_id, &hashes, now_ms(), first)
            .await?
        {
            return Ok(None);
        }
        self.audit(caller, Event::RecoveryCodesGenerated, Record::user(user_id))
            .await;
        Ok(Some(codes))
    }

    pub(crate) fn check_recent(&self, auth_time: i64) -> Result<(), AuthError> {
        let within = i64::try_from(self.settings.mfa.reauth_within.as_millis()).unwrap_or(i64::MAX);
        match now_ms().saturating_sub(auth_time) <= within {
            true => Ok(()),
            false => Err(AuthError::ReauthenticationRequired),
        }
    }

    /// After a change of the user's factors: drops the user's logins waiting for (or
    /// completing) a second step, then ends every live session of the user but the caller's
    /// (`keep`): a refresh session, with the SSO session it was created through, or, from the
    /// hosted pages, an SSO session. Every other SSO session ends too, with its apps (and
    /// their back-channel logouts): a browser signed in with the factor removed, or before a
    /// factor was added, signs in again. In that order: a second step that was creating its
    /// session when its challenge went is waited for, and its session found and ended here;
    /// one after finds no challenge (`SessionStore::create_session`).
    pub(crate) async fn end_other_sessions(
        &self,
        user_id: Uuid,
        keep: Uuid,
    ) -> Result<(), AuthError> {
        self.store.drop_challenges_of_user(user_id).await?;
        let now = now_ms();
        let sessions = self.store.sessions_of_user(user_id, 1000).await?;
        let keep_sso = sessions
            .iter()
            .find(|s| s.id == keep)
            .map_or(Some(keep), |s| s.sso_session_id);
        for s in sessions {
            if s.id != keep && s.is_live(now) {
                self.end_sessions(crate::Ending::Session(s.id), "factors_changed")
                    .await?;
            }
        }
        for sso in self.store.sso_sessions_of_user(user_id, 1000).await? {
            if Some(sso.id) != keep_sso && sso.is_live(now) {
                self.end_sso(&sso, "factors_changed").await?;
            }
        }
        Ok(())
    }

    /// Re-seals every TOTP secret that a previous master key opens (`keys rekey`). Returns
    /// how many were re-sealed.
    ///
    /// Errors: `BadInput` (a secret no configured key opens; nothing re-sealed),
    /// `StoreUnavailable`, `Internal`.
    pub(crate) async fn rekey_factors(&self) -> Result<usize, AuthError> {
        let master = self.keys.master();
        let mut reseal = Vec::new();
        let mut unopenable = 0;
        for (id, sealed) in self.store.sealed_factors().await? {
            match master.open_sealed(&seal_label(id), &sealed) {
                Ok((_, false)) => {}
                Ok((plain, true)) => {
                    let new = master
                        .seal(&seal_label(id), &plain)
                        .map_err(|e| AuthError::Internal(e.to_string()))?;
                    reseal.push((id, sealed, new));
                }
                Err(_) => unopenable += 1,
            }
        }
        if unopenable > 0 {
            return Err(AuthError::BadInput(
                format!(
                "no configured master key opens {unopenable} TOTP secrets; nothing was re-sealed"
            )
                .into(),
            ));
        }
        self.store.reseal_factors(&reseal).await?;
        Ok(reseal.len())
    }
}

/// A factor's name: trimmed, 1 to 64 characters, no control characters.
pub(crate) fn factor_name(name: &str) -> Result<String, AuthError> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(AuthError::BadInput(
            format!(
                "a factor's name is 1 to {MAX_NAME_CHARS} characters, without control characters"
            )
            .into(),
        ));
    }
    Ok(name.to_string())
}

/// The refusal of a factor past `MAX_FACTORS`, a static text so that the answer names it.
pub(crate) fn too_many_factors() -> AuthError {
    AuthError::BadInput(TOO_MANY_FACTORS.into())
}

const TOO_MANY_FACTORS: &str = "a user holds at most 10 factors: remove one first";

#[cfg(test)]
mod too_many_tests {
    use super::*;

    #[test]
    fn the_refusal_names_the_limit() {
        assert!(TOO_MANY_FACTORS.contains(&format!(" {MAX_FACTORS} ")));
    }
}
