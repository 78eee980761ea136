//! Account administration, for the admin API and the CLI. Every write that changes what a
//! user's tokens may do goes through `Auth::user_changed` or `Auth::end_sessions`.

use std::future::Future;

use secrecy::SecretString;
use uuid::Uuid;

use crate::email::Email;

use super::audit::{Event, Record};
use super::login::check_new_password;
use super::username::{self, Username};
use super::{Auth, AuthError, Ending};
use crate::audit::Caller;
use crate::store::UserView;
use crate::store::{Duplicate, NewUser, StoreError, User};
use crate::time::now_ms;

mod admin;
mod email;

pub use admin::UserPage;

/// A user, by id (the admin API) or by username (the CLI; normalised before lookup).
#[derive(Debug, Clone, Copy)]
pub enum UserRef<'a> {
    Id(Uuid),
    Name(&'a str),
}

/// An account to create (`Auth::create_account`).
pub(crate) struct NewAccount<'a> {
    pub username: &'a str,
    pub password: SecretString,
    pub roles: Vec<String>,
    /// Its address, unverified.
    pub email: Option<&'a str>,
    /// The caller has applied the password rules already (a signup, at its checks).
    pub password_checked: bool,
    /// Its first link (an address verification, an invitation): the token and the mail are
    /// stored in the same transaction as the account, so there is no account without it.
    pub first_link: Option<crate::accounts::TokenMail<'a>>,
}

impl Auth {
    /// Creates a user with a new password and roles.
    ///
    /// Errors: `BadUsername` (naming rules: PRECIS, length, mixed scripts), `BadInput`
    /// (password rules, role names), `UsernameTaken`, `UsernameConfusable` (it looks like an
    /// existing account's name, UTS #39),
    /// `Unavailable` (hashing saturated), `StoreUnavailable`.
    pub async fn create_user(
        &self,
        username: &str,
        password: SecretString,
        roles: Vec<String>,
        caller: &Caller,
    ) -> Result<UserView, AuthError> {
        self.create_user_with_email(username, password, roles, None, caller)
            .await
    }

    /// `create_user`, with an email address (unverified), which the user can log in with too.
    ///
    /// Errors: as `create_user`, and `BadInput` (not an address), `EmailTaken`.
    pub async fn create_user_with_email(
        &self,
        username: &str,
        password: SecretString,
        roles: Vec<String>,
        email: Option<&str>,
        caller: &Caller,
    ) -> Result<UserView, AuthError> {
        let account = NewAccount {
            username,
            password,
            roles,
            email,
            password_checked: false,
            first_link: None,
        };
        self.create_account(account, caller)
            .await
            .map(|u| UserView::from(&u))
    }

    /// `create_user_with_email`, returning the stored row (see `NewAccount`).
    pub(crate) async fn create_account(
        &self,
        account: NewAccount<'_>,
        caller: &Caller,
    ) -> Result<User, AuthError> {
        let NewAccount {
            username,
            password,
            roles,
            email,
            password_checked,
            first_link,
        } = account;
        let mut name = Username::parse(username).map_err(AuthError::BadUsername)?;
        let email = email.map(Email::parse).transpose()?;
        // A name with an @ logs in as that address: with an address given, it must be that
        // one, in the address's own form.
        if let (Some(email), true) = (&email, name.as_str().contains('@')) {
            if Email::parse(name.as_str()).map(|n| n.key).ok() != Some(email.key.clone()) {
                return Err(AuthError::BadInput(
                    "a username with @ must be the account's own email address".into(),
                ));
            }
            name = Username::parse(&email.address).map_err(AuthError::BadUsername)?;
        }
        if !password_checked {
            check_new_password(&password, name.as_str(), &self.settings.password)?;
        }
        let roles = parse_roles(roles)?;
        let hash = self.passwords.hash(password).await?;
        let now = now_ms();
        let new = NewUser {
            id: Uuid::now_v7(),
            username: name.as_str().to_string(),
            skeleton: Some(name.skeleton()),
            password_hash: hash,
            roles,
            claims: Default::default(),
            disabled: false,
            now,
            email_key: email.as_ref().map(|e| e.key.clone()),
            email: email.map(|e| e.address),
            email_verified: false,
        };
        let created = match first_link {
            None => self.store.create_user(new).await,
            Some(m) => {
                // A new row's cut-off is 0: the token's fence.
                let to = crate::accounts::Recipient {
                    id: new.id,
                    username: &new.username,
                    tokens_not_before: 0,
                };
                let (token, mail) = self.token_mail(to, &m, now)?;
                let created = self.store.create_user_with_token(new, &token, &mail).await;
                if created.is_ok() {
                    self.mail_queued.notify_one();
                }
                created
            }
        };
        let user = created.map_err(|e| match e {
            StoreError::Duplicate(Duplicate::UsernameSkeleton) => AuthError::UsernameConfusable,
            StoreError::Duplicate(Duplicate::Email) => AuthError::EmailTaken,
            StoreError::Duplicate(_) => AuthError::UsernameTaken,
            other => other.into(),
        })?;
        self.audit(
            caller,
            Event::UserCreated,
            Record::user(user.id).reason("created"),
        )
        .await;
        Ok(user)
    }

    /// Fills in the confusable skeleton of accounts named before skeletons were stored, in
    /// pages of 500, so that a new name that looks like theirs is refused too. Runs once at
    /// start-up, in the background, on every replica (the writes are idempotent). An older
    /// account whose skeleton another account already holds keeps none: both still log in.
    /// Returns how many were filled in.
    ///
    /// Errors: `StoreUnavailable`.
    pub async fn backfill_username_skeletons(&self) -> Result<u64, AuthError> {
        const PAGE: u32 = 500;
        let mut after = Uuid::nil();
        let mut filled = 0;
        loop {
            let page = self.store.users_missing_skeleton(after, PAGE).await?;
            let Some((last, _)) = page.last() else {
                return Ok(filled);
            };
            after = *last;
            for (id, name) in &page {
                if self
                    .store
                    .set_skeleton(*id, &super::username::skeleton_key(name))
                    .await?
                {
                    filled += 1;
                }
            }
            if page.len() < PAGE as usize {
                return Ok(filled);
            }
        }
    }

    /// One user.
    ///
    /// Errors: `UserNotFound`, `BadInput` (a name no account can have), `StoreUnavailable`.
    pub async fn user(&self, who: UserRef<'_>) -> Result<UserView, AuthError> {
        self.find_user(who).await.map(|u| UserView::from(&u))
    }

    /// The stored row of a user.
    async fn find_user(&self, who: UserRef<'_>) -> Result<User, AuthError> {
        let found = match who {
            UserRef::Id(id) => self.store.user_by_id(id).await?,
            UserRef::Name(raw) => {
                let name = Username::for_lookup(raw)
                    .map_err(|e| AuthError::BadInput(e.to_string().into()))?;
                self.store.user_by_username(name.as_str()).await?
            }
        };
        found.ok_or(AuthError::UserNotFound)
    }

    /// Sets a new password; every session of the user is revoked and earlier access tokens
    /// stop working.
    ///
    /// Errors: `UserNotFound`, `BadInput` (password rules), `Unavailable` (hashing
    /// saturated), `StoreUnavailable`.
    pub async fn set_password(
        &self,
        who: UserRef<'_>,
        password: SecretString,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        let user = self.find_user(who).await?;
        check_new_password(&password, &user.username, &self.settings.password)?;
        let hash = self.passwords.hash(password).await?;
        let now = now_ms();
        self.user_changed(self.store.set_password(&user.username, &hash, now))
            .await?;
        self.end_sso_of_user(user.id, "password_changed").await?;
        self.audit(caller, Event::PasswordChanged, Record::user(user.id))
            .await;
        Ok(())
    }

    /// Replaces the user's roles and returns the updated user. When a role is taken away,
    /// every access token issued so far is cut off (`tokens_not_before`), so that APIs
    /// verifying on their own learn it from the revocation feed; sessions stay, and the next
    /// refresh carries the new roles.
    ///
    /// Errors: `UserNotFound`, `BadInput` (role names), `StoreUnavailable`.
    pub async fn set_roles(
        &self,
        who: UserRef<'_>,
        roles: Vec<String>,
        caller: &Caller,
    ) -> Result<UserView, AuthError> {
        let user = self.find_user(who).await?;
        let roles = parse_roles(roles)?;
        // A role taken away must not outlive its tokens at APIs that verify on their own: the
        // cut-off reaches them through the revocation feed, and the user's next refresh gets
        // a token with the new roles (sessions stay).
        // Decided on what the write replaced (read in its transaction), not on `user`: a
        // concurrent change between the two would otherwise take a role away unnoticed.
        let (id, old) = self
            .store
            .set_roles(&user.username, &roles, now_ms())
            .await?
            .ok_or(AuthError::UserNotFound)?;
        self.revocations.invalidate_user(id);
        if old.iter().any(|r| !roles.contains(r)) {
            self.cut_off_after(id).await?;
        }
        // The same roles again change nothing, and record nothing (compared with what the
        // write replaced, in its transaction: of two equal changes at once, one records it).
        if old.len() != roles.len() || roles.iter().any(|r| !old.contains(r)) {
            self.audit(caller, Event::RolesChanged, Record::user(id))
                .await;
        }
        self.user(UserRef::Id(id)).await
    }

    /// Disables or re-enables a user. Disabling refuses every token issued so far and ends
    /// every session of the user, refresh and SSO (their apps get back-channel logouts);
    /// re-enabling brings none of them back. The disable commits first, so a session that
    /// survives a failed revocation (`StoreUnavailable`, to be retried) still cannot refresh.
    ///
    /// Errors: `UserNotFound`, `StoreUnavailable`.
    pub async fn set_disabled(
        &self,
        who: UserRef<'_>,
        disabled: bool,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        let user = self.find_user(who).await?;
        let changed = self
            .store
            .set_disabled(&user.username, disabled, now_ms())
            .await?
            .is_some();
        if changed {
            self.revocations.invalidate_user(user.id);
        }
        // Again when it was disabled already: a revocation that failed before is retried.
        if disabled {
            self.end_sessions(Ending::AllOf(user.id), "disabled")
                .await?;
        }
        // An event records a change: disabling a disabled user (or enabling an enabled one)
        // changes nothing, and of two at once only the one that wrote records it.
        if changed {
            let event = if disabled {
                Event::UserDisabled
            } else {
                Event::UserEnabled
            };
            self.audit(caller, event, Record::user(user.id)).await;
        }
        Ok(())
    }

    /// Ends every session of the user and cuts off every access token issued so far.
    ///
    /// Errors: `UserNotFound`, `StoreUnavailable`.
    pub async fn revoke_user(
        &self,
        who: UserRef<'_>,
        reason: &str,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        let user = self.find_user(who).await?;
        self.end_sessions(Ending::AllOf(user.id), reason).await?;
        self.audit(caller, Event::UserRevoked, Record::user(user.id))
            .await;
        Ok(())
    }
}

/// Most users or sessions one admin listing returns.
pub const MAX_PAGE: u32 = 1000;

impl Auth {
    /// Cuts off the user's access tokens as of now, a clock read after the change that calls
    /// for it has committed: a token minted from the old row (whose issuance time is taken
    /// before that row is read, see `login` and the rotation) is then always before it.
    async fn cut_off_after(&self, id: Uuid) -> Result<(), AuthError> {
        self.row_changed(self.store.cut_off_tokens(id, now_ms()))
            .await
            .map(|_| ())
    }

    /// `user_changed` for a write that ends no session and returns the user's id, if any.
    async fn row_changed(
        &self,
        write: impl Future<Output = Result<Option<Uuid>, StoreError>>,
    ) -> Result<Uuid, AuthError> {
        self.user_changed(async { Ok(write.await?.map(|id| (id, Vec::new()))) })
            .await
    }
}

fn parse_roles(roles: Vec<String>) -> Result<Vec<String>, AuthError> {
    username::parse_roles(roles).map_err(|e| AuthError::BadInput(e.to_string().into()))
}
