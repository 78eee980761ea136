//! Second factors: TOTP (RFC 6238) and single-use recovery codes, enrolled by the user
//! themself, and the second step of a password login (invariant 7).
//!
//! A correct password for a user with a confirmed factor does not open a session: it creates
//! a challenge (the `mfa_token`: opaque, single-use, `mfa.token_ttl`, bound to the user, the
//! client, the grant asked for and the cut-off read with the password), and `complete_mfa`
//! opens the session once a second factor checks out.

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::audit::{Caller, Event, Record};
use crate::oidc::{random_token, token_digest};
use crate::store::{MfaChallenge, RecoveryCodeUse, User};
use crate::time::{now_ms, UnixMillis};
use crate::{throttle, Auth, AuthError, ClientId, ClientMeta, Granted, TokenPair};

mod factors;
mod secrets;

pub use factors::FactorInfo;
pub(crate) use factors::{factor_name, too_many_factors};
use secrets::*;
pub use secrets::{seal_totp_secret, totp_step};

/// The second factors a login can be completed with, as `mfa_methods` names them.
pub const METHODS: [&str; 3] = ["totp", "passkey", "recovery_code"];
/// Second factors one `mfa_token` has checked at most, each counted before it is checked:
/// five wrong ones end it.
pub(crate) const MAX_FAILURES: i64 = 5;
/// Recovery codes in a set.
const RECOVERY_CODES: usize = 10;
/// TOTP per RFC 6238's defaults, which every authenticator app uses.
const TOTP_DIGITS: u8 = 6;
const TOTP_STEP_SECS: u64 = 30;
/// Longest factor name, in characters.
const MAX_NAME_CHARS: usize = 64;
/// Factors a user may hold, confirmed or not (enrolment cannot grow a user's rows unbounded).
pub(crate) const MAX_FACTORS: i64 = 10;

/// A password login that needs its second factor: 403 `mfa_required` at the edge.
#[derive(Debug)]
pub struct MfaRequired {
    /// Opaque, single-use; completes the login at `POST /login/mfa` (or `/token`).
    pub mfa_token: SecretString,
    /// What can complete it: the kinds of the user's factors (`totp`, `passkey`), then
    /// `recovery_code`.
    pub methods: Vec<&'static str>,
}

/// A second factor presented to complete a login.
#[derive(Debug)]
pub enum SecondFactor {
    /// A 6-digit TOTP code.
    Totp(SecretString),
    /// One of the user's recovery codes (case, spaces and dashes do not matter).
    RecoveryCode(SecretString),
    /// A passkey's assertion (the JSON of the browser's `PublicKeyCredential`) for the
    /// challenge of `second_factor_passkey_options`.
    Passkey(String),
}

/// A new TOTP factor, shown once: it counts only after `confirm_totp`.
#[derive(Debug)]
pub struct TotpEnrolment {
    pub factor_id: Uuid,
    /// The shared secret, base32 (RFC 4648), for typing into an app.
    pub secret: SecretString,
    /// `otpauth://totp/...` (the Key Uri Format authenticator apps scan).
    pub otpauth_uri: SecretString,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: SecretString,
}

/// The RFC 8176 methods of a password login completed with a factor whose own method is
/// `method` (`otp`, `hwk`, `swk`; `None` for a recovery code).
fn amr_after_password(method: Option<&str>) -> &'static str {
    match method {
        Some("otp") => "pwd otp mfa",
        Some("hwk") => "pwd hwk user mfa",
        Some("swk") => "pwd swk user mfa",
        Some("hwk-presence") => "pwd hwk mfa",
        Some("swk-presence") => "pwd swk mfa",
        _ => "pwd mfa",
    }
}

impl Auth {
    /// After a correct password: `Some(MfaRequired)` when the user has a confirmed factor,
    /// with a new challenge for `client` and `granted`, bound to the cut-off read with the
    /// password (`user.tokens_not_before`); `Some(MfaEnrolmentRequired)` for an account with a
    /// role of `mfa.required_for_roles`, no factor, and older than `mfa.enrol_grace`.
    ///
    /// Errors: `StoreUnavailable`, `Internal`.
    pub(crate) async fn second_factor_needed(
        &self,
        user: &User,
        client: &ClientId,
        granted: &Granted,
    ) -> Result<Option<AuthError>, AuthError> {
        let token = random_token()?;
        let now = now_ms();
        let kinds = self
            .store
            .insert_challenge(&MfaChallenge {
                token_hash: token_digest(token.expose_secret()),
                user_id: user.id,
                client_id: client.as_str().to_string(),
                scope: granted.scope.clone(),
                resource: granted.resource.clone(),
                fence: user.tokens_not_before,
                failures: 0,
                created_at: now,
                expires_at: UnixMillis(now).plus(self.settings.mfa.token_ttl).0,
                used_at: None,
            })
            .await?;
        let Some(kinds) = kinds else {
            // No factor. `mfa.required_for_roles`: past `mfa.enrol_grace`, such an account
            // must enrol (an administrator can help); until then it logs in without those
            // roles.
            let m = &self.settings.mfa;
            let privileged = user.roles.iter().any(|r| m.required_for_roles.contains(r));
            let grace = i64::try_from(m.enrol_grace.as_millis()).unwrap_or(i64::MAX);
            if privileged && now.saturating_sub(user.created_at) > grace {
                return Ok(Some(AuthError::MfaEnrolmentRequired));
            }
            return Ok(None);
        };
        tracing::info!(user_id = %user.id, "password ok, second factor required");
        let methods = METHODS
            .iter()
            .copied()
            .filter(|m| *m == "recovery_code" || kinds.iter().any(|k| k == m))
            .filter(|m| *m != "passkey" || self.passkeys_enabled())
            .collect();
        Ok(Some(AuthError::MfaRequired(MfaRequired {
            mfa_token: token,
            methods,
        })))
    }

    /// The second step of a password login (`POST /login/mfa`, and `/token` with the MFA
    /// grant): the `mfa_token` of `client` and a second factor. Wrong factors are throttled
    /// per account and address like passwords, and an `mfa_token` takes at most five. The
    /// session is created only if the user's cut-off has not moved since the password check
    /// (a password reset in between ends the login), with `amr` `pwd otp mfa` (TOTP) or
    /// `pwd mfa` (a recovery code).
    ///
    /// Errors: `BadInput` (empty or oversized input), `InvalidSecondFactor` (unknown, used,
    /// expired or another client's `mfa_token`, or a wrong, replayed or used factor: one
    /// answer), `Throttled`, `StoreUnavailable`, `Unavailable`, `Internal`.
    pub async fn complete_mfa(
        &self,
        mfa_token: &SecretString,
        factor: SecondFactor,
        meta: ClientMeta,
        client: &ClientId,
        caller: &Caller,
    ) -> Result<TokenPair, AuthError> {
        let (challenge, amr) = self
            .verify_second_factor(mfa_token, &factor, meta.ip.as_deref(), client, caller)
            .await?;
        let granted = Granted {
            scope: challenge.scope.clone(),
            resource: challenge.resource.clone(),
        };
        let now = UnixMillis(now_ms().max(challenge.fence + 1));
        let mut session = self.new_session(challenge.user_id, meta, client, &granted, now);
        session.amr = Some(amr.into());
        // Fenced by the cut-off read with the password: a password change, disable or
        // cut-off since then refuses the session, with the one answer of a second step.
        let subject = self
            .open_session(
                challenge.fence,
                Some(&challenge.token_hash),
                &session,
                client,
                caller,
            )
            .await;
        let subject = match subject {
            Ok(subject) => subject,
            Err(AuthError::InvalidCredentials) => {
                return Err(self.refused_after_check(&challenge, &factor).await)
            }
            Err(other) => return Err(other),
        };
        self.login_succeeded(&subject, &session, &granted, now, client, caller)
            .await
    }

    /// A second step refused after its factor was checked (a factor change, a password change
    /// or a disable came between): a recovery code it used is handed back, as the login it
    /// was spent on never happened. Returns the step's one refusal, `InvalidSecondFactor`
    /// (or `StoreUnavailable` when the code could not be handed back).
    pub(crate) async fn refused_after_check(
        &self,
        challenge: &MfaChallenge,
        factor: &SecondFactor,
    ) -> AuthError {
        if let SecondFactor::RecoveryCode(code) = factor {
            let digest = recovery_digest(challenge.user_id, code.expose_secret());
            if let Err(e) = self
                .store
                .return_recovery_code(challenge.user_id, &digest)
                .await
            {
                return e.into();
            }
        }
        AuthError::InvalidSecondFactor
    }

    /// The second step of every login with a second factor (the JSON API and the hosted
    /// pages): the challenge of `mfa_token` for `client`, throttled, checked and used up.
    /// Returns it and the RFC 8176 methods of the login. What is opened with it must be
    /// fenced by `challenge.fence` (the cut-off read with the password).
    ///
    /// Errors: as `complete_mfa`.
    pub(crate) async fn verify_second_factor(
        &self,
        mfa_token: &SecretString,
        factor: &SecondFactor,
        ip: Option<&str>,
        client: &ClientId,
        caller: &Caller,
    ) -> Result<(MfaChallenge, &'static str), AuthError> {
        let (presented, limit) = match factor {
            SecondFactor::Totp(c) | SecondFactor::RecoveryCode(c) => (c.expose_secret(), 64),
            SecondFactor::Passkey(c) => (c.as_str(), crate::passkey::MAX_CREDENTIAL_BYTES),
        };
        if mfa_token.expose_secret().is_empty() || mfa_token.expose_secret().len() > 256 {
            return Err(AuthError::BadInput("mfa_token is empty or too long".into()));
        }
        if presented.is_empty() || presented.len() > limit {
            return Err(AuthError::BadInput("the code is empty or too long".into()));
        }
        // A server whose master key opens no signing key could check the factor but not sign
        // the login's tokens: 503 before anything is spent (a recovery code, a TOTP step).
        self.require_signer(now_ms())?;
        let passkey = match factor {
            SecondFactor::Passkey(c) => Some(self.parse_passkey_factor(c)?),
            _ => None,
        };
        let hash = token_digest(mfa_token.expose_secret());
        let now = now_ms();
        let challenge = match self.store.challenge(&hash, now, MAX_FAILURES).await? {
            Some(c) if c.client_id == client.as_str() => c,
            _ => return Err(AuthError::InvalidSecondFactor),
        };
        let keys = throttle::AttemptKeys {
            account: format!("mfa:{}", challenge.user_id),
            ip: ip.map(|ip| format!("ip:{ip}")),
        };
        let reservation = self.reserve_attempt(&keys, client, caller).await?;
        // One of the token's guesses, counted before its factor is checked: requests at once
        // check at most MAX_FAILURES factors on one mfa_token, whatever the throttle's keys
        // let through meanwhile (a success on another mfa_token clears the account's count).
        // A passkey's guess takes the options bound to the token in the same write.
        let charged = match self
            .store
            .charge_challenge(&hash, now, MAX_FAILURES, passkey.is_some())
            .await
        {
            Ok(Some(charged)) => charged,
            Ok(None) => {
                self.throttle.abandon(reservation).await;
                return Err(AuthError::InvalidSecondFactor);
            }
            Err(e) => {
                self.throttle.abandon(reservation).await;
                return Err(e.into());
            }
        };
        let checked = match (&passkey, factor) {
            (Some(read), SecondFactor::Passkey(credential)) => self
                .check_passkey_factor(
                    &challenge,
                    credential,
                    read,
                    charged.passkey_state.as_deref(),
                    now,
                )
                .await
                .map(|m| m.map(Some)),
            _ => self.check_factor(&challenge, factor, now).await,
        };
        let method = match checked {
            Ok(m) => m,
            Err(e) => {
                self.throttle.abandon(reservation).await;
                return Err(e);
            }
        };
        let Some(method) = method else {
            self.throttle.failed(reservation).await?;
            self.audit(
                caller,
                Event::MfaFailed,
                Record::user(challenge.user_id).client(client.as_str()),
            )
            .await;
            tracing::info!(user_id = %challenge.user_id, "second factor refused");
            return Err(AuthError::InvalidSecondFactor);
        };
        self.throttle.succeeded(reservation).await?;
        // A recovery code used up the challenge with itself (`check_factor`).
        let taken = matches!(factor, SecondFactor::RecoveryCode(_))
            || self
                .store
                .take_challenge(&hash, now_ms(), MAX_FAILURES)
                .await?;
        if !taken {
            return Err(AuthError::InvalidSecondFactor);
        }
        if let SecondFactor::RecoveryCode(_) = factor {
            self.audit(
                caller,
                Event::RecoveryCodeUsed,
                Record::user(challenge.user_id).client(client.as_str()),
            )
            .await;
        }
        Ok((challenge, amr_after_password(method)))
    }

    /// The user of a challenge that passed, for a hosted page's SSO session: refused when a
    /// password change, disable or cut-off came after the password check.
    ///
    /// Errors: `InvalidSecondFactor`, `StoreUnavailable`.
    pub(crate) async fn challenge_user(&self, challenge: &MfaChallenge) -> Result<User, AuthError> {
        match self.store.user_by_id(challenge.user_id).await? {
            Some(u) if !u.disabled && u.tokens_not_before == challenge.fence => Ok(u),
            _ => Err(AuthError::InvalidSecondFactor),
        }
    }

    /// Whether `factor` is one of the challenge's user's, used now for the first time:
    /// `Some` with its RFC 8176 method (`otp`, `hwk`, `swk`; `None` inside for a recovery
    /// code), `None` when it is not.
    ///
    /// Errors: `InvalidSecondFactor` for a right TOTP code whose time step was used, or a
    /// recovery code of the user's that was used (a replay, or the loser of a parallel twin):
    /// refused without counting as a wrong factor.
    async fn check_factor(
        &self,
        challenge: &MfaChallenge,
        factor: &SecondFactor,
        now: i64,
    ) -> Result<Option<Option<&'static str>>, AuthError> {
        let user_id = challenge.user_id;
        match factor {
            // Checked with the options its counted guess took (`verify_second_factor`), never
            // here: reaching this is a bug, not a wrong factor.
            SecondFactor::Passkey(_) => Err(AuthError::Internal(
                "a passkey reached the other factors' check".into(),
            )),
            SecondFactor::Totp(code) => {
                let code = code.expose_secret().trim();
                if code.len() != usize::from(TOTP_DIGITS)
                    || !code.bytes().all(|b| b.is_ascii_digit())
                {
                    return Ok(None);
                }
                for f in self.store.factors_of_user(user_id).await? {
                    if f.kind != "totp" || f.confirmed_at.is_none() {
                        continue;
                    }
                    let at = UnixMillis(now).as_secs() as u64;
                    let Some(step) = totp_step(self.keys.master(), &f, code, at)? else {
                        continue;
                    };
                    // A code is taken once: a replay, or a parallel twin, finds its step used.
                    // Refused, but not a wrong factor for the throttle: the code is right (its
                    // sender knows it), so it is no guess, and a double submit must not count
                    // against the account.
                    if !self
                        .store
                        .take_totp_step(f.id, step as i64, false, now)
                        .await?
                    {
                        tracing::info!(user_id = %user_id, "TOTP code refused: its time step was used");
                        return Err(AuthError::InvalidSecondFactor);
                    }
                    return Ok(Some(Some("otp")));
                }
                Ok(None)
            }
            SecondFactor::RecoveryCode(code) => {
                let digest = recovery_digest(user_id, code.expose_secret());
                let used = self
                    .store
                    .use_recovery_code(user_id, &digest, now, &challenge.token_hash, MAX_FAILURES)
                    .await?;
                match used {
                    RecoveryCodeUse::Taken => Ok(Some(None)),
                    // A parallel step completed this login first; the code was left unused.
                    RecoveryCodeUse::ChallengeUsed => Err(AuthError::InvalidSecondFactor),
                    // As a used TOTP step: the sender knows the code, so it is no guess, and a
                    // double submit must not count against the account.
                    RecoveryCodeUse::Spent => {
                        tracing::info!(user_id = %user_id, "recovery code refused: it was used");
                        Err(AuthError::InvalidSecondFactor)
                    }
                    RecoveryCodeUse::Unknown => Ok(None),
                }
            }
        }
    }
}
