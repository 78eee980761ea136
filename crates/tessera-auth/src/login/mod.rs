//! `Auth::login`: password login, behind admission control and the throttle (invariant 4), and
//! the rules every password must meet.

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::audit::{Event, Record};
use super::password::{Verified, MAX_PASSWORD_BYTES};
use super::{
    throttle, username, Auth, AuthError, ClientId, ClientMeta, Granted, TokenPair, TokenRequest,
    Username,
};
use crate::audit::Caller;
use crate::config::PasswordSettings;
use crate::store::{Session, SubjectClaims, User};
use crate::time::UnixMillis;

/// Longest `User-Agent` kept on a session, in characters.
const MAX_USER_AGENT_CHARS: usize = 512;

/// Checks a password's size before any hashing happens.
pub fn check_password(pw: &SecretString) -> Result<(), AuthError> {
    let n = pw.expose_secret().len();
    if n == 0 {
        return Err(AuthError::BadInput("empty password".into()));
    }
    if n > MAX_PASSWORD_BYTES {
        return Err(AuthError::BadInput("password too long".into()));
    }
    Ok(())
}

/// The rule of `password.*` a new password broke. Its text names the rule and the settings,
/// never the password, so it may be shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRule {
    /// Fewer than `password.min_length` characters (after NFKC normalisation).
    #[error("password must have at least {min} characters (password.min_length)")]
    MinLength { min: usize },
    /// Longer than the 1024 bytes Tessera accepts (never truncated).
    #[error("password must be at most {max} bytes")]
    MaxBytes { max: usize },
    /// A zxcvbn score below `password.min_score`: common, breached or easily guessed.
    #[error("password is too common or too easy to guess: strength {score} of 4, at least {min} needed (password.min_score)")]
    MinScore { score: u8, min: u8 },
}

/// Password rules for new passwords (NIST SP 800-63B §5.1.1.2, ASVS 5 §6): at least
/// `password.min_length` characters after NFKC normalisation, at most 1024 bytes and never
/// truncated, no composition rules, and not common or easily guessed (a zxcvbn score of at
/// least `password.min_score`, with the username as a known input).
///
/// Errors: `BadInput` (empty or oversized), `WeakPassword` naming the rule that failed.
pub fn check_new_password(
    pw: &SecretString,
    username: &str,
    rules: &PasswordSettings,
) -> Result<(), AuthError> {
    if pw.expose_secret().len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::WeakPassword(PasswordRule::MaxBytes {
            max: MAX_PASSWORD_BYTES,
        }));
    }
    check_password(pw)?;
    let pw = super::password::normalize(pw.expose_secret());
    if pw.chars().count() < rules.min_length {
        return Err(AuthError::WeakPassword(PasswordRule::MinLength {
            min: rules.min_length,
        }));
    }
    if rules.min_score > 0 {
        let score = u8::from(zxcvbn::zxcvbn(&pw, &[username]).score());
        if score < rules.min_score {
            return Err(AuthError::WeakPassword(PasswordRule::MinScore {
                score,
                min: rules.min_score,
            }));
        }
    }
    Ok(())
}

/// The form of a login's username and password, checked before anything else.
///
/// Errors: `BadInput` (empty or oversized).
pub fn check_login_input(username: &str, password: &SecretString) -> Result<(), AuthError> {
    if username.is_empty() {
        return Err(AuthError::BadInput("empty username".into()));
    }
    if username.len() > username::MAX_RAW_BYTES {
        return Err(AuthError::BadInput("username too long".into()));
    }
    check_password(password)
}

/// The throttle's name for a login attempt: the normalised username, or for input no account
/// can have, a digest of it (so raw input such as NUL bytes never reaches SQL).
fn throttle_name(raw: &str, parsed: &Result<Username, username::NameError>) -> String {
    match parsed {
        Ok(n) => n.as_str().to_string(),
        Err(_) => {
            use base64::Engine;
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, raw.as_bytes());
            format!(
                "#{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
            )
        }
    }
}

impl Auth {
    /// `accounts.require_verified_email`: a login (with a password, or a passkey alone) of a
    /// user whose address is not verified is refused, after its credential was checked.
    ///
    /// Errors: `EmailNotVerified`.
    pub(crate) fn check_verified_email(&self, user: &User) -> Result<(), AuthError> {
        if self.settings.accounts.require_verified_email
            && user.email.is_some()
            && !user.email_verified
        {
            tracing::info!(user_id = %user.id, "login refused: address not verified");
            return Err(AuthError::EmailNotVerified);
        }
        Ok(())
    }

    /// Password login (`POST /login`, and `/token` with `grant_type=password`, RFC 6749
    /// §4.3): a new session for `client`. Every credential failure is the same
    /// `InvalidCredentials`, after the same amount of argon2 work (invariant 4).
    ///
    /// A user with a confirmed second factor gets `MfaRequired` instead of tokens: the login
    /// completes at `complete_mfa`.
    ///
    /// Errors: `BadInput` (empty or oversized username or password), `Unavailable` (shed
    /// before any database work, or no key signs), `Throttled`, `InvalidCredentials`,
    /// `MfaRequired`, `StoreUnavailable`, `Internal` (signing failed).
    pub async fn login(
        &self,
        username: &str,
        password: SecretString,
        meta: ClientMeta,
        client: &ClientId,
        req: &TokenRequest,
        caller: &Caller,
    ) -> Result<TokenPair, AuthError> {
        check_login_input(username, &password)?;
        // A request that cannot be granted costs no hashing.
        let granted = self.grant(client, req)?;
        let (user, now) = self
            .verify_password_login(username, password, meta.ip.as_deref(), client, caller)
            .await?;
        if let Some(needed) = self.second_factor_needed(&user, client, &granted).await? {
            return Err(needed);
        }
        let session = self.new_session(user.id, meta, client, &granted, now);
        let subject = self
            .open_session(user.tokens_not_before, None, &session, client, caller)
            .await?;
        self.login_succeeded(&subject, &session, &granted, now, client, caller)
            .await
    }

    /// The end of every login that opened `session` (a password, a second step, a passkey
    /// alone): the `login.succeeded` event, the count, and the tokens.
    pub(crate) async fn login_succeeded(
        &self,
        subject: &SubjectClaims,
        session: &Session,
        granted: &Granted,
        now: UnixMillis,
        client: &ClientId,
        caller: &Caller,
    ) -> Result<TokenPair, AuthError> {
        self.audit(
            caller,
            Event::LoginSucceeded,
            Record::session(session.user_id, session.id).client(client.as_str()),
        )
        .await;
        metrics::counter!("logins_total", "result" => "ok").increment(1);
        self.issue(subject, session, granted, now)
    }

    /// The password check of every login (`/login`, the password grant, the hosted login
    /// page): admission control, the throttle and argon2 against the stored or the dummy hash
    /// (invariant 4). Returns the user, and the time from which tokens may be minted for them
    /// (after the cut-off read with the credential). Every refusal is the same
    /// `InvalidCredentials`, recorded in the audit trail for `client`.
    ///
    /// Errors: `Unavailable` (shed), `Throttled`, `InvalidCredentials`, `StoreUnavailable`.
    pub(crate) async fn verify_password_login(
        &self,
        username: &str,
        password: SecretString,
        ip: Option<&str>,
        client: &ClientId,
        caller: &Caller,
    ) -> Result<(User, UnixMillis), AuthError> {
        // Shed before any database work when the password pipeline is full (invariant 4).
        let _admission = self.passwords.admit()?;
        let name = Username::for_lookup(username);
        // An email address logs in too. Its account is read first, so that the throttle
        // counts against the account's name: a name and an address of one account share one
        // allowance. Either way one read and one argon2 verification (invariant 4).
        let (found, throttled_as) = match username.contains('@') {
            true => match crate::email::Email::parse(username) {
                Ok(email) => {
                    let n = name.as_ref().ok().map(|n| n.as_str());
                    let u = self.store.user_for_login(n, &email.key).await?;
                    let key = u
                        .as_ref()
                        .map_or_else(|| format!("@{}", email.key), |u| u.username.clone());
                    (Some(u), key)
                }
                Err(_) => (None, throttle_name(username, &name)),
            },
            false => (None, throttle_name(username, &name)),
        };
        let keys = throttle::AttemptKeys::new(&throttled_as, ip);
        let reservation = self.reserve_attempt(&keys, client, caller).await?;
        let (user, verified) = match self.check_credential(name, found, password).await {
            Ok(checked) => checked,
            Err(e) => {
                self.throttle.abandon(reservation).await;
                return Err(e);
            }
        };
        let user = match user {
            Some(u) if verified.ok && !u.disabled => u,
            other => {
                let reason = match &other {
                    None => "unknown_user",
                    Some(_) if verified.ok => "disabled",
                    Some(_) => "bad_password",
                };
                // Counted first: nothing between the check and the count may be cut short.
                self.throttle.failed(reservation).await?;
                return Err(self
                    .login_failed(other.map(|u| u.id), client, reason, caller)
                    .await);
            }
        };
        self.throttle.succeeded(reservation).await?;
        // Said only to a caller who knew the password.
        self.check_verified_email(&user)?;
        // Minted after the cut-off that was read with the credential, never at or before it.
        let now = UnixMillis(UnixMillis::now().0.max(user.tokens_not_before + 1));
        if let Some(new_hash) = verified.rehash {
            self.store_rehash(&user, &new_hash, now).await;
        }
        Ok((user, now))
    }

    /// Reserves a slot on each throttle key before any hashing, so that a parallel burst
    /// hashes at most the allowance; attempts beyond it wait for those ahead (invariant 11). A
    /// slot whose request is dropped is handed back; one whose process dies is held no longer
    /// than a request may take (`attempt_lease`).
    pub(crate) async fn reserve_attempt(
        &self,
        keys: &throttle::AttemptKeys,
        client: &ClientId,
        caller: &Caller,
    ) -> Result<throttle::Reservation, AuthError> {
        let queue_timeout = self.settings.password.queue_timeout;
        let reserved = self
            .throttle
            .reserve(&self.store, keys, self.attempt_lease, queue_timeout)
            .await;
        if let Err(AuthError::Throttled { .. }) = &reserved {
            self.audit(
                caller,
                Event::LoginThrottled,
                Record::default().client(client.as_str()),
            )
            .await;
        }
        reserved
    }

    /// Reads the account and verifies the password against its hash, or against the dummy
    /// hash when there is no such account: the same argon2 work either way (invariant 4).
    async fn check_credential(
        &self,
        name: Result<Username, username::NameError>,
        found: Option<Option<User>>,
        password: SecretString,
    ) -> Result<(Option<User>, Verified), AuthError> {
        let user = match (found, name) {
            // Read already, by name or address.
            (Some(found), _) => found,
            (None, Ok(name)) => self.store.user_by_username(name.as_str()).await?,
            // Not a name anyone can have: still pay for one verification.
            (None, Err(_)) => None,
        };
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let verified = self.passwords.verify(password, stored).await?;
        Ok((user, verified))
    }

    /// Records a refused login and returns the one error every refusal gets.
    pub(crate) async fn login_failed(
        &self,
        user_id: Option<Uuid>,
        client: &ClientId,
        reason: &'static str,
        caller: &Caller,
    ) -> AuthError {
        let record = Record {
            user_id,
            ..Record::default()
        };
        self.audit(
            caller,
            Event::LoginFailed,
            record.client(client.as_str()).reason(reason),
        )
        .await;
        tracing::info!(reason, "login failed");
        metrics::counter!("logins_total", "result" => "failed").increment(1);
        AuthError::InvalidCredentials
    }

    /// Stores a hash with upgraded parameters, against the hash that was verified and not a
    /// later read: a reset that committed meanwhile is not undone (the store's
    /// compare-and-set). A failure only delays the upgrade.
    async fn store_rehash(&self, user: &User, new_hash: &str, now: UnixMillis) {
        if let Err(e) = self
            .store
            .rehash_password(user.id, &user.password_hash, new_hash, now.0)
            .await
        {
            tracing::warn!(error = %e, "password re-hash not stored");
        }
    }

    /// The session a login creates, from `now`.
    pub(crate) fn new_session(
        &self,
        user_id: Uuid,
        meta: ClientMeta,
        client: &ClientId,
        granted: &Granted,
        now: UnixMillis,
    ) -> Session {
        let s = &self.settings.sessions;
        let absolute = now.plus(s.absolute_ttl);
        Session {
            id: Uuid::now_v7(),
            user_id,
            generation: 0,
            created_at: now.0,
            last_refreshed_at: now.0,
            idle_expires_at: now.plus(s.idle_ttl).min(absolute).0,
            absolute_expires_at: absolute.0,
            revoked_at: None,
            revoked_reason: None,
            user_agent: meta
                .user_agent
                .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect()),
            ip: meta.ip,
            client_id: client.as_str().to_string(),
            scope: granted.scope.clone(),
            resource: granted.resource.clone(),
            sso_session_id: None,
            amr: Some("pwd".into()),
        }
    }

    /// Stores the session, fenced by the credential that was verified: it exists only if that
    /// credential is still the user's. A password change, disable, role removal or
    /// logout-everywhere that committed since the read moved the cut-off, and refuses it. One
    /// that commits later finds the session: a password change or logout-everywhere revokes
    /// it, a disable refuses its tokens, and a role removal cuts off this token while the
    /// session's next refresh reads the new roles. Roles and claims come from that same locked
    /// read.
    /// `fence` is the user's `tokens_not_before` as read with the credential; `challenge`, for
    /// a login completed with a second factor, its mfa_token's digest, which must still be
    /// stored (a factor change since drops it).
    pub(crate) async fn open_session(
        &self,
        fence: i64,
        challenge: Option<&str>,
        session: &Session,
        client: &ClientId,
        caller: &Caller,
    ) -> Result<SubjectClaims, AuthError> {
        let user_id = session.user_id;
        let fenced = self.store.create_session(session, fence, challenge).await?;
        let Some(subject) = fenced else {
            tracing::info!(%user_id, "login refused: the account changed while it was checked");
            return Err(self
                .login_failed(Some(user_id), client, "account_changed", caller)
                .await);
        };
        self.revocations.session_live(session.id, user_id);
        tracing::info!(%user_id, session_id = %session.id, "login ok");
        Ok(subject)
    }
}

#[cfg(test)]
mod tests;
