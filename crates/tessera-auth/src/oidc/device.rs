//! The device authorization grant (RFC 8628), for CLIs and TVs: the device asks for a code
//! pair, the user types the user code on the hosted page (signed in there), and the device
//! polls `/token` until the user has answered.

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::code::{Issued, SignIn};
use super::{random_token, token_digest, CodeGrant, SsoCookie};
use crate::audit::Caller;
use crate::store::{DeviceApproval, DeviceCode, SsoSession};
use crate::time::{now_ms, UnixMillis};
use crate::{throttle, Auth, AuthError, ClientId, ClientMeta, Granted, TokenRequest};

/// The grant type at `/token` (RFC 8628 §3.4).
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// How long a code pair lives: 10 minutes.
pub const DEVICE_CODE_TTL_SECS: i64 = 600;
/// The least wait between two polls at first (RFC 8628 §3.2 default); each `slow_down` adds 5 s.
pub const POLL_INTERVAL_SECS: i64 = 5;
/// The user-code alphabet (RFC 8628 §6.1): 20 consonants, no vowels (no words), none that look
/// alike. 8 of them are 20^8 ≈ 2^34.6 codes; with the throttle on guesses, out of reach.
const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";

/// The answer of `/device_authorization` (RFC 8628 §3.2).
#[derive(Debug)]
pub struct DeviceAuthorization {
    pub device_code: SecretString,
    /// As shown to the user: `XXXX-XXXX`.
    pub user_code: String,
    /// Seconds.
    pub expires_in: i64,
    /// Seconds.
    pub interval: i64,
}

/// A pending code as the hosted page shows it.
#[derive(Debug, Clone)]
pub struct PendingDevice {
    /// The signed-in user the page is shown to: the confirmation form carries it back, so
    /// that its answer counts only for that user.
    pub user_id: Uuid,
    /// Normalised, as typed back in the confirmation form.
    pub user_code: String,
    pub client_id: String,
    pub scope: Option<String>,
}

/// Why a poll gets no tokens (RFC 8628 §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePoll {
    AuthorizationPending,
    SlowDown,
    AccessDenied,
    ExpiredToken,
}

/// The user code typed by a person, normalised: letters upper-cased, dashes and spaces
/// dropped; `None` unless 8 letters of the alphabet remain.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == 8 && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// `XXXXXXXX` as `XXXX-XXXX`.
pub fn display_user_code(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => code.to_string(),
    }
}

fn new_user_code() -> Result<String, AuthError> {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| AuthError::Internal("no randomness".into()))?;
    // 256 is not a multiple of 20: reject the bytes that would bias the draw.
    let mut out = String::with_capacity(8);
    let mut pool = b.to_vec();
    while out.len() < 8 {
        let Some(byte) = pool.pop() else {
            let mut more = [0u8; 8];
            aws_lc_rs::rand::fill(&mut more)
                .map_err(|_| AuthError::Internal("no randomness".into()))?;
            pool.extend_from_slice(&more);
            continue;
        };
        if byte < 240 {
            out.push(ALPHABET[usize::from(byte % 20)] as char);
        }
    }
    Ok(out)
}

impl Auth {
    /// Starts a device authorization for `client` (RFC 8628 §3.1), which must be allowed the
    /// device grant, with the scope and resource granted as at `/token`. Each one stores a
    /// code, so the caller's address may start `throttle.device_requests` per
    /// `throttle.device_window`.
    ///
    /// Errors: `UnauthorizedClient`, `InvalidScope`, `InvalidTarget`, `Throttled` (over the
    /// address's limit, until its window ends), `StoreUnavailable`.
    pub async fn device_authorization(
        &self,
        client: &ClientId,
        req: &TokenRequest,
        caller: &Caller,
    ) -> Result<DeviceAuthorization, AuthError> {
        self.check_grant(client, DEVICE_GRANT)?;
        let granted = self.grant(client, req)?;
        let t = &self.settings.throttle;
        let over = self
            .over_address_limit(caller, "device-ip", t.device_requests, t.device_window)
            .await?;
        if let Some(retry_after_secs) = over {
            metrics::counter!("device_authorizations_throttled_total").increment(1);
            return Err(AuthError::Throttled { retry_after_secs });
        }
        let device_code = random_token()?;
        let now = now_ms();
        // A user code is unique among live ones; a clash (1 in 2^34 per live code) draws again.
        for _ in 0..4 {
            let user_code = new_user_code()?;
            let row = DeviceCode {
                device_code_hash: token_digest(device_code.expose_secret()),
                user_code: user_code.clone(),
                client_id: client.as_str().to_string(),
                scope: granted.scope.clone(),
                resource: granted.resource.clone(),
                created_at: now,
                expires_at: now + DEVICE_CODE_TTL_SECS * 1000,
                interval_ms: POLL_INTERVAL_SECS * 1000,
                last_polled_at: 0,
                status: "pending".into(),
                user_id: None,
                sso_session_id: None,
                auth_time: None,
                amr: None,
                session_id: None,
            };
            match self.store.insert_device_code(&row).await {
                Ok(()) => {
                    return Ok(DeviceAuthorization {
                        device_code,
                        user_code: display_user_code(&user_code),
                        expires_in: DEVICE_CODE_TTL_SECS,
                        interval: POLL_INTERVAL_SECS,
                    })
                }
                Err(crate::store::StoreError::Duplicate(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AuthError::Internal("no free user code".into()))
    }

    /// The pending code a signed-in user typed, for the confirmation page. Wrong codes count
    /// against the user and the address with the login throttle, so that guessing stops.
    ///
    /// Errors: `BadInput` (not a code, or no pending one: the same answer), `Throttled`,
    /// `InvalidCredentials` (no live SSO session), `StoreUnavailable`.
    pub async fn pending_device(
        &self,
        typed: &str,
        cookie: Option<&SsoCookie>,
        ip: Option<&str>,
        caller: &Caller,
    ) -> Result<PendingDevice, AuthError> {
        let Some((sso, _)) = self.live_sso(cookie, now_ms()).await? else {
            return Err(AuthError::InvalidCredentials);
        };
        self.pending_device_of(typed, &sso, ip, caller).await
    }

    /// `pending_device` for the signed-in session `sso`.
    async fn pending_device_of(
        &self,
        typed: &str,
        sso: &SsoSession,
        ip: Option<&str>,
        caller: &Caller,
    ) -> Result<PendingDevice, AuthError> {
        let user_id = sso.user_id;
        let keys = throttle::AttemptKeys::new(&format!("#device:{user_id}"), ip);
        let client = self.first_party();
        let reservation = self.reserve_attempt(&keys, &client, caller).await?;
        let found = match normalize_user_code(typed) {
            Some(code) => self.store.pending_device_code(&code, now_ms()).await,
            None => Ok(None),
        };
        match found {
            Ok(Some(d)) => {
                self.throttle.succeeded(reservation).await?;
                Ok(PendingDevice {
                    user_id,
                    user_code: d.user_code,
                    client_id: d.client_id,
                    scope: d.scope,
                })
            }
            Ok(None) => {
                self.throttle.failed(reservation).await?;
                Err(AuthError::BadInput("no such code".into()))
            }
            Err(e) => {
                self.throttle.abandon(reservation).await;
                Err(e.into())
            }
        }
    }

    /// The user's answer for a pending code (already shown to them by `pending_device`; the
    /// form's `account`, `shown_to`, names whom it was shown to, and a form without it is
    /// shown again).
    ///
    /// Errors: `InvalidCredentials` (no live SSO session), `ReauthenticationRequired` (another
    /// user is signed in than the page was shown to, or the form carries no `account`),
    /// `BadInput` (no such pending code),
    /// `Throttled`, `StoreUnavailable`.
    pub async fn decide_device(
        &self,
        user_code: &str,
        cookie: Option<&SsoCookie>,
        shown_to: Option<&str>,
        allow: bool,
        ip: Option<&str>,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        let now = now_ms();
        let Some((sso, _)) = self.live_sso(cookie, now).await? else {
            return Err(AuthError::InvalidCredentials);
        };
        // A page shown to one user and answered after another signed in (in another tab):
        // not the signed-in user's answer (RFC 8628 §5.4); the page asks them again.
        if shown_to != Some(sso.user_id.to_string().as_str()) {
            return Err(AuthError::ReauthenticationRequired);
        }
        // Looked up again, and throttled again: the form's code is as typed as any.
        let code = self
            .pending_device_of(user_code, &sso, ip, caller)
            .await?
            .user_code;
        let approval = DeviceApproval {
            user_id: sso.user_id,
            sso_session_id: sso.id,
            auth_time: sso.auth_time,
            amr: &sso.amr,
        };
        let decided = self
            .store
            .decide_device_code(&code, allow.then_some(&approval), now)
            .await?;
        decided
            .then_some(())
            .ok_or(AuthError::BadInput("no such code".into()))
    }

    /// What a poll of the code with digest `hash` gets before any token (RFC 8628 §3.5): `Ok`
    /// once the user approved it, else the poll's error; the poll is counted for `slow_down`.
    ///
    /// Errors: `InvalidCode` (unknown, another client's, used), `DevicePoll`,
    /// `StoreUnavailable`.
    async fn device_poll_answer(&self, hash: &str, client: &ClientId) -> Result<(), AuthError> {
        let now = now_ms();
        let code = match self.store.device_code(hash).await? {
            Some(c) if c.client_id == client.as_str() => c,
            _ => return Err(AuthError::InvalidCode),
        };
        if code.status == "used" {
            return Err(AuthError::InvalidCode);
        }
        if code.expires_at <= now {
            return Err(AuthError::DevicePoll(DevicePoll::ExpiredToken));
        }
        if !self.store.poll_device_code(hash, now, 5000).await? {
            return Err(AuthError::DevicePoll(DevicePoll::SlowDown));
        }
        match code.status.as_str() {
            "approved" => Ok(()),
            "denied" => Err(AuthError::DevicePoll(DevicePoll::AccessDenied)),
            _ => Err(AuthError::DevicePoll(DevicePoll::AuthorizationPending)),
        }
    }

    /// The device's poll (RFC 8628 §3.4): tokens once the user allowed it, exactly once.
    ///
    /// Errors: `DevicePoll` (pending, slow down, denied, expired), `UnauthorizedClient`,
    /// `InvalidCode` (unknown, another client's, or used), `Unavailable`, `StoreUnavailable`.
    pub async fn poll_device(
        &self,
        device_code: &SecretString,
        client: &ClientId,
        meta: ClientMeta,
        caller: &Caller,
    ) -> Result<CodeGrant, AuthError> {
        self.check_grant(client, DEVICE_GRANT)?;
        let hash = token_digest(device_code.expose_secret());
        self.device_poll_answer(&hash, client).await?;
        let session_id = Uuid::now_v7();
        let Some(code) = self.store.use_device_code(&hash, session_id).await? else {
            return Err(AuthError::InvalidCode);
        };
        let (Some(user_id), Some(sso_id), Some(auth_time)) =
            (code.user_id, code.sso_session_id, code.auth_time)
        else {
            return Err(AuthError::InvalidCode);
        };
        let user = match self.store.user_by_id(user_id).await? {
            Some(u) if !u.disabled => u,
            _ => return Err(AuthError::InvalidCode),
        };
        // Approved from an SSO session that has ended since (a logout, a cut-off): nothing.
        let sso_live = self
            .store
            .sso_session(sso_id)
            .await?
            .is_some_and(|s| s.is_live(now_ms()) && s.created_at > user.tokens_not_before);
        if !sso_live {
            return Err(AuthError::InvalidCode);
        }
        // Approved from a password-only sign-in before the user confirmed a factor: refused,
        // as that SSO session is at its next use (the factor ended the user's other sessions).
        let has_factor = !self.store.factor_kinds(user.id).await?.is_empty();
        if super::sso::outdated_by_factor(code.amr.as_deref().unwrap_or("pwd"), has_factor) {
            return Err(AuthError::InvalidCode);
        }
        let granted = Granted {
            scope: code.scope.clone(),
            resource: code.resource.clone(),
        };
        let now = UnixMillis(now_ms().max(user.tokens_not_before + 1));
        let mut session = self.new_session(user.id, meta, client, &granted, now);
        session.id = session_id;
        session.sso_session_id = Some(sso_id);
        let amr = code.amr.clone().unwrap_or_else(|| "pwd".into());
        session.amr = Some(amr.clone());
        let subject = self
            .open_session(user.tokens_not_before, None, &session, client, caller)
            .await?;
        let sign_in = SignIn {
            client_id: &code.client_id,
            nonce: None,
            sso_session_id: sso_id,
            auth_time,
            amr: &amr,
        };
        self.answer_grant(
            &Issued {
                user: &user,
                subject: &subject,
                session: &session,
                granted: &granted,
                sign_in,
            },
            client,
            now,
            caller,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_eight_letters_of_the_alphabet() {
        for _ in 0..200 {
            let c = new_user_code().unwrap();
            assert_eq!(normalize_user_code(&c).as_deref(), Some(c.as_str()));
        }
        assert_eq!(
            normalize_user_code("bcdf-ghjk").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(
            normalize_user_code("BCDF GHJK").as_deref(),
            Some("BCDFGHJK")
        );
        for bad in ["BCDFGHJ", "BCDFGHJKL", "ABCDFGHJ", "BCDF-GHJ1", "ВCDFGHJK"] {
            assert_eq!(normalize_user_code(bad), None, "{bad}");
        }
        assert_eq!(display_user_code("BCDFGHJK"), "BCDF-GHJK");
    }
}
