//! Invitations (`/admin/invitations`): an account with no usable password until its link is
//! used (`POST /invitations/accept`).

use secrecy::SecretString;
use uuid::Uuid;

use super::*;
use crate::audit::{Caller, Event, Record};
use crate::email::Email;
use crate::oidc::random_token;
use crate::store::Redemption;
use crate::time::now_ms;
use crate::{Auth, AuthError};

impl Auth {
    /// Invites `email` (`POST /admin/invitations`): an account with `roles` and no usable
    /// password (a random one nobody knows), named `username` or the address, and a link
    /// (`accounts.invite_ttl`) with which the invitee sets their password.
    ///
    /// Errors: `MailDisabled`, `BadInput`, `BadUsername`, `UsernameTaken`,
    /// `UsernameConfusable`, `EmailTaken`, `Unavailable`, `StoreUnavailable`, `Internal`.
    pub async fn invite(
        &self,
        email: &str,
        roles: Vec<String>,
        username: Option<&str>,
        caller: &Caller,
    ) -> Result<crate::UserView, AuthError> {
        if !self.mail_enabled() {
            return Err(AuthError::MailDisabled);
        }
        let address = Email::parse(email)?;
        let unknown = random_token()?;
        // Named by the address, unless it is too long to be a name (over 64 characters).
        let generated = crate::Username::generated();
        let name = match username {
            Some(name) => name,
            None if crate::Username::parse(&address.address).is_ok() => &address.address,
            None => generated.as_str(),
        };
        // The account and its invitation link are one write: no account without its link.
        let link = TokenMail {
            purpose: INVITE,
            to: &address.address,
            email_key: Some(&address.key),
            email: None,
            ttl: self.settings.accounts.invite_ttl,
            template: INVITE_MAIL,
            once_a_minute: false,
        };
        let account = crate::users::NewAccount {
            username: name,
            password: unknown,
            roles,
            email: Some(&address.address),
            password_checked: false,
            first_link: Some(link),
        };
        let user = self.create_account(account, caller).await?;
        self.audit(caller, Event::UserInvited, Record::user(user.id))
            .await;
        Ok(crate::UserView::from(&user))
    }

    /// The invitations not yet accepted, oldest first, expired ones too (their `expires_at`
    /// has passed; withdrawing one frees its address and name).
    ///
    /// Errors: `StoreUnavailable`.
    pub async fn invitations(&self) -> Result<Vec<crate::store::Invitation>, AuthError> {
        Ok(self.store.pending_invitations().await?)
    }

    /// Withdraws an invitation that was not accepted: the invited account is deleted.
    ///
    /// Errors: `UserNotFound` (no pending invitation of that user), `StoreUnavailable`.
    pub async fn revoke_invitation(&self, user_id: Uuid, caller: &Caller) -> Result<(), AuthError> {
        if !self.store.revoke_invitation(user_id, now_ms()).await? {
            return Err(AuthError::UserNotFound);
        }
        self.revocations.invalidate_user(user_id);
        self.audit(caller, Event::InvitationRevoked, Record::user(user_id))
            .await;
        Ok(())
    }

    /// Accepts an invitation (`POST /invitations/accept`): the token of its link and the
    /// invitee's password (the rules apply before the token is used). The address is then
    /// verified, since the link reached it.
    ///
    /// Errors: `BadInput`, `InvalidAccountToken`, `WeakPassword`, `Unavailable`,
    /// `StoreUnavailable`.
    pub async fn accept_invitation(
        &self,
        token: &SecretString,
        password: SecretString,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        let EmailedToken {
            hash,
            user,
            current,
            ..
        } = self.emailed_token(token, INVITE).await?;
        let current = current.ok_or(AuthError::InvalidAccountToken)?;
        crate::login::check_new_password(&password, &user.username, &self.settings.password)?;
        let hashed = self.passwords.hash(password).await?;
        let change = Redemption::Invitation {
            hash: &hashed,
            address: (&current.address, &current.key),
        };
        self.redeem(&hash, user.id, change, None).await?;
        // A new password ends every sign-in, the SSO ones too (their apps are told).
        self.end_sso_of_user(user.id, "password_changed").await?;
        self.audit(caller, Event::PasswordChanged, Record::user(user.id))
            .await;
        self.audit(caller, Event::EmailChanged, Record::user(user.id))
            .await;
        Ok(())
    }
}
