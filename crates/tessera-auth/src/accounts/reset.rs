//! Password reset by email: the request (`POST /password/forgot`) and the new password set
//! with the token of its link (`POST /password/reset`).

use secrecy::SecretString;

use super::*;
use crate::audit::{Caller, Event, Record};
use crate::email::Email;
use crate::store::Redemption;
use crate::{Auth, AuthError, Username};

impl Auth {
    /// Asks for a password reset for `login`, a username or an email address: when it names
    /// an enabled account with an address, and no reset mail went to it in the last minute, a
    /// token is issued (the account's earlier unused ones die) and its link is queued to the
    /// address. Otherwise nothing happens; the caller's answer does not change either way.
    ///
    /// Errors: `MailDisabled`, `StoreUnavailable`, `Internal`.
    pub async fn request_password_reset(
        &self,
        login: &str,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        if !self.mail_enabled() {
            return Err(AuthError::MailDisabled);
        }
        let login = login.trim();
        if login.is_empty() || login.len() > crate::username::MAX_RAW_BYTES {
            return Ok(());
        }
        let user = match Email::parse(login) {
            Ok(email) if login.contains('@') => {
                let name = Username::for_lookup(login).ok();
                self.store
                    .user_for_login(name.as_ref().map(|n| n.as_str()), &email.key)
                    .await?
            }
            _ => match Username::for_lookup(login) {
                Ok(name) => self.store.user_by_username(name.as_str()).await?,
                Err(_) => None,
            },
        };
        let Some(user) = user.filter(|u| !u.disabled) else {
            tracing::debug!("password reset asked for no account");
            return Ok(());
        };
        let Some(to) = user.email.clone() else {
            tracing::info!(user_id = %user.id, "password reset asked for an account without an address");
            return Ok(());
        };
        let key = Email::parse(&to).map(|e| e.key).ok();
        let sent = self
            .send_token(
                &user,
                TokenMail {
                    purpose: PASSWORD_RESET,
                    to: &to,
                    // The link works only while the account keeps this address.
                    email_key: key.as_deref(),
                    email: None,
                    ttl: self.settings.accounts.reset_ttl,
                    template: RESET_MAIL,
                    once_a_minute: true,
                },
            )
            .await?;
        if !sent {
            tracing::info!(user_id = %user.id, "password reset mail sent a moment ago; not again");
            return Ok(());
        }
        self.audit(caller, Event::PasswordResetRequested, Record::user(user.id))
            .await;
        Ok(())
    }

    /// Sets a new password with a reset token (`POST /password/reset`): the token must be
    /// unused, unexpired, a reset token, and issued under the user's current cut-off (a
    /// password change since kills it). The password rules apply before the token is used;
    /// then it is used once (of parallel uses, one wins), the password is set, every session
    /// of the user ends, earlier access tokens are cut off and a note to the address is queued,
    /// in one transaction; then the user's SSO sessions end.
    ///
    /// Errors: `BadInput` (empty or oversized token), `InvalidAccountToken`, `WeakPassword`,
    /// `Unavailable`, `StoreUnavailable`, `Internal` (the note's template).
    pub async fn reset_password(
        &self,
        token: &SecretString,
        password: SecretString,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        // The address the link went to must still be the account's: a changed address ends
        // what was mailed to the old one.
        let EmailedToken {
            hash,
            user,
            current,
            ..
        } = self.emailed_token(token, PASSWORD_RESET).await?;
        crate::login::check_new_password(&password, &user.username, &self.settings.password)?;
        let hashed = self.passwords.hash(password).await?;
        // The address is told, in the reset's own transaction, as after any password change.
        let notice = current
            .as_ref()
            .map(|to| {
                let ctx = minijinja::context! { username => user.username };
                self.notice(&to.address, &PASSWORD_CHANGED_MAIL, ctx)
            })
            .transpose()?;
        let change = Redemption::Password { hash: &hashed };
        self.redeem(&hash, user.id, change, notice.as_ref()).await?;
        self.end_sso_of_user(user.id, "password_changed").await?;
        self.audit(caller, Event::PasswordChanged, Record::user(user.id))
            .await;
        self.audit(caller, Event::PasswordReset, Record::user(user.id))
            .await;
        Ok(())
    }
}
