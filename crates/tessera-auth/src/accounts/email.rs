//! Email addresses: verification links, resending them, and a change of address confirmed
//! from the new one (`POST /me/email`).

use secrecy::SecretString;
use uuid::Uuid;

use super::*;
use crate::audit::{Caller, Event, Record};
use crate::email::Email;
use crate::store::Redemption;
use crate::{Auth, AuthError, Username};

impl Auth {
    /// Asks to change the caller's address to `email` (`POST /me/email`): needs a login within
    /// `mfa.reauth_within` (`auth_time`, ms). A link to confirm it (`accounts.verify_ttl`) goes
    /// to the new address; the account keeps its address until the link is used, and the old
    /// address is told then. When another account holds the address, its owner gets a note
    /// instead, and the caller's answer is the same (nothing tells them the address is taken).
    ///
    /// Errors: `MailDisabled`, `ReauthenticationRequired`, `BadInput` (not an address, a
    /// domain not allowed, the account's address already), `UserNotFound`,
    /// `StoreUnavailable`, `Internal`.
    pub async fn request_email_change(
        &self,
        user_id: Uuid,
        email: &str,
        auth_time: i64,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        if !self.mail_enabled() {
            return Err(AuthError::MailDisabled);
        }
        self.check_recent(auth_time)?;
        let new = self.allowed_address(email)?;
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or(AuthError::UserNotFound)?;
        let current = user.email.as_deref().and_then(|e| Email::parse(e).ok());
        if current.as_ref().is_some_and(|c| c.key == new.key) {
            return Err(AuthError::BadInput(
                "that is the account's address already".into(),
            ));
        }
        // Held by another account as its address, or as its name (an address-shaped
        // username logs in as that address: taking it would lock its owner out).
        let owner = self.address_holder(&new).await?.filter(|o| o.id != user.id);
        if let Some(owner) = owner {
            let to = owner.email.clone().unwrap_or_else(|| new.address.clone());
            self.note_once_a_minute(&owner, &to, &EMAIL_IN_USE_MAIL)
                .await?;
            tracing::info!(user_id = %user.id, "address change to another account's address: its owner is told");
            // The trail shows the attempt as any other (it does not say the address is held).
            self.audit(caller, Event::EmailChangeRequested, Record::user(user.id))
                .await;
            return Ok(());
        }
        // One confirmation mail a minute per account, like every other kind.
        let sent = self
            .send_token(
                &user,
                TokenMail {
                    purpose: EMAIL_CHANGE,
                    to: &new.address,
                    // Bound to the address the account has now: a change meanwhile ends it.
                    email_key: current.as_ref().map(|c| c.key.as_str()),
                    email: Some(&new.address),
                    ttl: self.settings.accounts.verify_ttl,
                    template: EMAIL_CHANGE_MAIL,
                    once_a_minute: true,
                },
            )
            .await?;
        if !sent {
            tracing::info!(user_id = %user.id, "address change mail sent a moment ago; not again");
            return Ok(());
        }
        self.audit(caller, Event::EmailChangeRequested, Record::user(user.id))
            .await;
        Ok(())
    }

    /// A verification link to the user's address (their unused one dies).
    pub(super) async fn send_verification(
        &self,
        user: &crate::store::User,
    ) -> Result<(), AuthError> {
        let Some(to) = user.email.clone() else {
            return Ok(());
        };
        let key = Email::parse(&to)?.key;
        let ttl = self.settings.accounts.verify_ttl;
        self.send_token(
            user,
            TokenMail {
                purpose: EMAIL_VERIFY,
                to: &to,
                email_key: Some(&key),
                email: None,
                ttl,
                template: VERIFY_MAIL,
                // A new account has none yet; a resend waits its minute.
                once_a_minute: true,
            },
        )
        .await
        .map(|_| ())
    }

    /// Sends a new verification link to `email` if it is an unverified address of an enabled
    /// account and none went out in the last minute; otherwise nothing (one answer).
    ///
    /// Errors: `MailDisabled`, `StoreUnavailable`, `Internal`.
    pub async fn resend_verification(&self, email: &str) -> Result<(), AuthError> {
        if !self.mail_enabled() {
            return Err(AuthError::MailDisabled);
        }
        let Ok(email) = Email::parse(email) else {
            return Ok(());
        };
        let Some(user) = self.store.user_for_login(None, &email.key).await? else {
            return Ok(());
        };
        if user.disabled || user.email_verified {
            return Ok(());
        }
        // Once a minute at most: `send_verification` sends nothing inside it.
        self.send_verification(&user).await
    }

    /// Verifies an address with the token of its link (`POST /email/verify`), used once: a
    /// verification token (for the user's current address), or an address change's token
    /// (the account takes the new address, verified, and its old address is told in the same
    /// transaction; a username that was the old address becomes the new one, or a generated
    /// `user-<hex>` when the new one looks like another account's name).
    ///
    /// Errors: `BadInput`, `InvalidAccountToken`, `EmailTaken` (an address change to an
    /// address another account took meanwhile), `StoreUnavailable`, `Internal` (the notice's
    /// template).
    pub async fn verify_email(
        &self,
        token: &SecretString,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        match self.emailed_token(token, EMAIL_VERIFY).await {
            Err(AuthError::InvalidAccountToken) => {
                return self.confirm_email_change(token, caller).await
            }
            Err(e) => return Err(e),
            Ok(EmailedToken {
                hash,
                user,
                current,
                ..
            }) => {
                let current = current.ok_or(AuthError::InvalidAccountToken)?;
                let address = (current.address.as_str(), current.key.as_str());
                self.redeem(
                    &hash,
                    user.id,
                    Redemption::Email {
                        address,
                        rename: None,
                    },
                    None,
                )
                .await?;
                self.audit(caller, Event::EmailChanged, Record::user(user.id))
                    .await;
            }
        }
        Ok(())
    }

    /// An address change confirmed with the token mailed to the new address.
    async fn confirm_email_change(
        &self,
        token: &SecretString,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        let EmailedToken {
            hash,
            user,
            stored,
            current,
        } = self.emailed_token(token, EMAIL_CHANGE).await?;
        let new = stored
            .email
            .as_deref()
            .and_then(|e| Email::parse(e).ok())
            .ok_or(AuthError::InvalidAccountToken)?;
        // A name that is the old address is the address it logs in with: it follows the
        // address, or it would keep holding the old one (logins and resets by it). Whether
        // the name is the old address is decided in the change's transaction, on the row as it
        // is then (an address-shaped name is always its address's own form, `Username`).
        let rename = current
            .as_ref()
            .and_then(|old| Username::parse(&old.address).ok())
            .map(|from| {
                // A new address too long to be a name (over 64 characters): a generated one,
                // or the name would keep holding the old address.
                let to = Username::parse(&new.address).unwrap_or_else(|_| Username::generated());
                (from, to.skeleton(), to)
            });
        // The old address is told in the change's own transaction.
        let notice = current
            .as_ref()
            .map(|old| {
                let ctx =
                    minijinja::context! { username => user.username, new_email => new.address };
                self.notice(&old.address, &EMAIL_CHANGED_MAIL, ctx)
            })
            .transpose()?;
        let change = Redemption::Email {
            address: (&new.address, &new.key),
            rename: rename
                .as_ref()
                .map(|(from, skeleton, to)| (from.as_str(), to.as_str(), skeleton.as_str())),
        };
        let done = match self.redeem(&hash, user.id, change, notice.as_ref()).await {
            // The new address as a name looks like another account's name: the account takes
            // a generated name instead (it logs in with its address either way).
            Err(AuthError::UsernameTaken | AuthError::UsernameConfusable) => {
                let Some((from, _, _)) = rename.as_ref() else {
                    return Err(AuthError::EmailTaken);
                };
                let generated = Username::generated();
                let skeleton = generated.skeleton();
                let change = Redemption::Email {
                    address: (&new.address, &new.key),
                    rename: Some((from.as_str(), generated.as_str(), skeleton.as_str())),
                };
                self.redeem(&hash, user.id, change, notice.as_ref())
                    .await
                    .map_err(|e| match e {
                        AuthError::UsernameTaken | AuthError::UsernameConfusable => {
                            AuthError::EmailTaken
                        }
                        other => other,
                    })?
            }
            other => other?,
        };
        self.audit(caller, Event::EmailChanged, Record::user(user.id))
            .await;
        if done.renamed {
            self.audit(caller, Event::UsernameChanged, Record::user(user.id))
                .await;
        }
        Ok(())
    }
}
