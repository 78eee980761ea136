//! Second factors: TOTP (RFC 6238) and single-use recovery codes, enrolled by the user
//! themself, and the second step of a password login (invariant 7).
//!
//! A correct password for a user with a confirmed factor does not open a session: it creates
//! a challenge (the `mfa_token`: opaque, single-use, `mfa.token_ttl`, bound to the user, the
//! client, the grant asked for and the cut-off read with the password), and `complete_mfa`
//! opens the session once a second factor checks out.

use secrecy::{ExposeSecret, SecretString};
use totp_rs::{Algorithm, Secret, Totp};
use uuid::Uuid;

use crate::audit::{Caller, Event, Record};
use crate::oidc::{random_token, token_digest};
use crate::store::{MfaChallenge, MfaFactor, User};
use crate::time::{now_ms, UnixMillis};
use crate::{throttle, Auth, AuthError, ClientId, ClientMeta, Granted, TokenPair};

/// The second factors a login can be completed with, as `mfa_methods` names them.
pub const METHODS: [&str; 3] = ["totp", "passkey", "recovery_code"];
/// Wrong second factors one `mfa_token` takes before it stops working.
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

/// What seals a factor's secret: bound to the factor.
fn seal_label(id: Uuid) -> String {
    format!("totp:{id}")
}

/// A recovery code as stored: SHA-256 of the user id and the normalised code.
fn recovery_digest(user_id: Uuid, code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    token_digest(&format!("{user_id}:{normal}"))
}

/// Ten new recovery codes: 80 random bits each, as `xxxx-xxxx-xxxx-xxxx` (base32, lower case).
fn new_recovery_codes() -> Result<Vec<SecretString>, AuthError> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut b = [0u8; 10];
            aws_lc_rs::rand::fill(&mut b)
                .map_err(|_| AuthError::Internal("no randomness".into()))?;
            let s = base32_lower(&b);
            Ok(SecretString::from(format!(
                "{}-{}-{}-{}",
                &s[0..4],
                &s[4..8],
                &s[8..12],
                &s[12..16]
            )))
        })
        .collect()
}

/// RFC 4648 base32 without padding, lower case.
fn base32_lower(bytes: &[u8]) -> String {
    Secret::new(bytes.to_vec().into_boxed_slice())
        .to_base32()
        .trim_end_matches('=')
        .to_ascii_lowercase()
}

impl Auth {
    fn totp(&self, secret: &[u8], account: &str) -> Result<Totp, AuthError> {
        totp_rs::Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(TOTP_DIGITS)
            .with_step_duration(TOTP_STEP_SECS)
            .with_skew(1)
            .with_secret(Secret::new(secret.to_vec().into_boxed_slice()))
            .with_account_name(account.replace(':', "_"))
            .with_issuer(Some(self.settings.mfa.totp_issuer.replace(':', "_")))
            .build()
            .map_err(|e| AuthError::Internal(format!("totp: {e}")))
    }

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
        let stored = self
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
        if !stored {
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
        }
        tracing::info!(user_id = %user.id, "password ok, second factor required");
        let kinds = self.store.factor_kinds(user.id).await?;
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
            .open_session(challenge.fence, &session, client, caller)
            .await
            .map_err(|e| match e {
                AuthError::InvalidCredentials => AuthError::InvalidSecondFactor,
                other => other,
            })?;
        self.audit(
            caller,
            Event::LoginSucceeded,
            Record::session(challenge.user_id, session.id).client(client.as_str()),
        )
        .await;
        metrics::counter!("logins_total", "result" => "ok").increment(1);
        self.issue(&subject, &session, &granted, now)
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
        let method = match self.check_factor(&challenge, factor, now).await {
            Ok(m) => m,
            Err(e) => {
                self.throttle.abandon(reservation).await;
                return Err(e);
            }
        };
        let Some(method) = method else {
            self.throttle.failed(reservation).await?;
            self.store.challenge_failed(&hash).await?;
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
        if !self
            .store
            .take_challenge(&hash, now_ms(), MAX_FAILURES)
            .await?
        {
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
    async fn check_factor(
        &self,
        challenge: &MfaChallenge,
        factor: &SecondFactor,
        now: i64,
    ) -> Result<Option<Option<&'static str>>, AuthError> {
        let user_id = challenge.user_id;
        match factor {
            SecondFactor::Passkey(credential) => Ok(self
                .check_passkey_factor(challenge, credential, now)
                .await?
                .map(Some)),
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
                    let taken = self
                        .store
                        .take_totp_step(f.id, step as i64, false, now)
                        .await?;
                    return Ok(taken.then_some(Some("otp")));
                }
                Ok(None)
            }
            SecondFactor::RecoveryCode(code) => Ok(self
                .store
                .use_recovery_code(
                    user_id,
                    &recovery_digest(user_id, code.expose_secret()),
                    now,
                )
                .await?
                .then_some(None)),
        }
    }

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
                &MfaFactor {
                    id,
                    user_id,
                    kind: "totp".into(),
                    name,
                    secret_enc: sealed,
                    confirmed_at: None,
                    last_used_step: -1,
                    created_at: now,
                    last_used_at: None,
                    credential_id: None,
                    credential: None,
                    sign_count: 0,
                    backup_eligible: false,
                    backup_state: false,
                },
                MAX_FACTORS,
            )
            .await?;
        if !stored {
            return Err(AuthError::BadInput(
                format!("a user holds at most {MAX_FACTORS} factors: remove one first").into(),
            ));
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
    /// brings a set of recovery codes, returned here once. The user's other sessions end
    /// (`keep` is the caller's own), and an SSO session signed in without a factor asks for
    /// it from now on.
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
            true => Ok(Some(self.new_recovery_set(user_id, caller).await?)),
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
    /// (`auth_time`, ms); the user's other sessions end. Removing the last confirmed factor
    /// also drops the recovery codes.
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
        if !self.store.delete_factor(user_id, factor_id).await? {
            return Err(AuthError::FactorNotFound);
        }
        if !self.store.has_factor(user_id).await? {
            self.store
                .replace_recovery_codes(user_id, &[], now_ms())
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
        self.new_recovery_set(user_id, caller).await
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

    pub(crate) async fn new_recovery_set(
        &self,
        user_id: Uuid,
        caller: &Caller,
    ) -> Result<Vec<SecretString>, AuthError> {
        let codes = new_recovery_codes()?;
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| recovery_digest(user_id, c.expose_secret()))
            .collect();
        self.store
            .replace_recovery_codes(user_id, &hashes, now_ms())
            .await?;
        self.audit(caller, Event::RecoveryCodesGenerated, Record::user(user_id))
            .await;
        Ok(codes)
    }

    pub(crate) fn check_recent(&self, auth_time: i64) -> Result<(), AuthError> {
        let within = i64::try_from(self.settings.mfa.reauth_within.as_millis()).unwrap_or(i64::MAX);
        match now_ms().saturating_sub(auth_time) <= within {
            true => Ok(()),
            false => Err(AuthError::ReauthenticationRequired),
        }
    }

    /// Ends every live session of the user but `keep`.
    pub(crate) async fn end_other_sessions(
        &self,
        user_id: Uuid,
        keep: Uuid,
    ) -> Result<(), AuthError> {
        let now = now_ms();
        for s in self.store.sessions_of_user(user_id, 1000).await? {
            if s.id != keep && s.is_live(now) {
                self.end_sessions(crate::Ending::Session(s.id), "factors_changed")
                    .await?;
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

/// The RFC 6238 time step (Unix seconds / 30) whose code `code` is, within one step either side
/// of `at` (Unix seconds), for the TOTP factor `f`, whose secret `master` opens. The CPU part of
/// every TOTP check (`benches/hot_paths.rs` measures it).
///
/// Errors: `Internal` (the secret does not open).
pub fn totp_step(
    master: &crate::keys::MasterKey,
    f: &MfaFactor,
    code: &str,
    at: u64,
) -> Result<Option<u64>, AuthError> {
    let secret = master
        .open(&seal_label(f.id), &f.secret_enc)
        .map_err(|e| AuthError::Internal(format!("a TOTP secret does not open: {e}")))?;
    let totp = totp_rs::Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(TOTP_DIGITS)
        .with_step_duration(TOTP_STEP_SECS)
        .with_skew(1)
        .with_secret(Secret::new(secret.to_vec().into_boxed_slice()))
        .build_noncompliant();
    Ok(totp.check(code, at))
}

/// Seals a new TOTP secret for factor `id` as `MfaFactor::secret_enc` holds it (tests and
/// benchmarks build factors with it).
///
/// Errors: `Internal`.
pub fn seal_totp_secret(
    master: &crate::keys::MasterKey,
    id: Uuid,
    secret: &[u8],
) -> Result<Vec<u8>, AuthError> {
    master
        .seal(&seal_label(id), secret)
        .map_err(|e| AuthError::Internal(e.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1, truncated to 6 digits.
    #[test]
    fn totp_matches_the_rfc_6238_vectors() {
        let totp = totp_rs::Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(8)
            .with_step_duration(30)
            .with_skew(0)
            .with_secret(Secret::new(
                b"12345678901234567890".to_vec().into_boxed_slice(),
            ))
            .with_account_name("a")
            .build_noncompliant();
        for (t, code) in [
            (59u64, "94287082"),
            (1111111109, "07081804"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
        ] {
            assert_eq!(totp.generate(t).to_string(), code);
        }
    }

    #[test]
    fn recovery_codes_are_random_and_normalised() {
        let a = new_recovery_codes().unwrap();
        let b = new_recovery_codes().unwrap();
        assert_eq!(a.len(), 10);
        assert_ne!(a[0].expose_secret(), b[0].expose_secret());
        let code = a[0].expose_secret();
        assert_eq!(code.len(), 19);
        let user = Uuid::now_v7();
        assert_eq!(
            recovery_digest(user, code),
            recovery_digest(user, &code.replace('-', " ").to_uppercase())
        );
        assert_ne!(
            recovery_digest(user, code),
            recovery_digest(Uuid::now_v7(), code)
        );
    }
}
