//! Signup by email (`POST /signup`, `accounts.signup = "open"`): the checks that need no
//! database, then the account and its verification link, the same work for a known address.

use secrecy::SecretString;

use super::*;
use crate::audit::Caller;
use crate::email::Email;
use crate::store::Duplicate;
use crate::{Auth, AuthError, Username};

/// A signup that passed the checks that need no database (`check_signup`); what
/// `complete_signup` does with it.
pub struct SignupRequest {
    email: Email,
    username: Username,
    /// Whether the caller chose the name (else it is the address).
    chosen: bool,
    password: SecretString,
}

impl std::fmt::Debug for SignupRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignupRequest").finish_non_exhaustive()
    }
}

impl Auth {
    /// Whether `POST /signup` is open: `accounts.signup = "open"`, with mail.
    pub fn signup_open(&self) -> bool {
        self.settings.accounts.signup == "open" && self.mail_enabled()
    }

    /// The checks of a signup that need no database, so that their answers say nothing about
    /// existing accounts: the address (and `accounts.email_domains`), the username (the
    /// address itself when none is given) and the password rules.
    ///
    /// Errors: `SignupClosed`, `BadInput`, `BadUsername`, `UsernameTaken` (a chosen name),
    /// `UsernameConfusable` (a chosen name that looks like a taken one), `WeakPassword`,
    /// `StoreUnavailable`.
    pub async fn check_signup(
        &self,
        email: &str,
        password: SecretString,
        username: Option<&str>,
    ) -> Result<SignupRequest, AuthError> {
        if !self.signup_open() {
            return Err(AuthError::SignupClosed);
        }
        let email = self.allowed_address(email)?;
        // A name with an @ is only ever the account's own address: no one takes another's
        // address as a name (logins and resets by address go to the address's owner).
        if let Some(name) = username.filter(|n| n.contains('@')) {
            if Email::parse(name).map(|e| e.key).ok() != Some(email.key.clone()) {
                return Err(AuthError::BadInput(
                    "a username with @ must be the account's own email address".into(),
                ));
            }
        }
        // A name with an @ is the address itself, however it was written: not a choice.
        let chosen = username.is_some_and(|n| !n.contains('@'));
        let username = match username {
            Some(name) => Username::parse(name).map_err(AuthError::BadUsername)?,
            // The address as the name, or a generated one for an address too long to be a
            // name (over 64 characters): a valid address does not fail on a name rule.
            None => Username::parse(&email.address).unwrap_or_else(|_| Username::generated()),
        };
        // A name chosen and taken, or one that looks like a taken one, is said now (names are
        // not secret); a default name (the address) is left to the address's own check, which
        // says nothing.
        if chosen && !username.as_str().contains('@') {
            match self
                .store
                .name_in_use(username.as_str(), &username.skeleton())
                .await?
            {
                Some(Duplicate::Username) => return Err(AuthError::UsernameTaken),
                Some(_) => return Err(AuthError::UsernameConfusable),
                None => {}
            }
        }
        crate::login::check_new_password(&password, username.as_str(), &self.settings.password)?;
        Ok(SignupRequest {
            email,
            username,
            chosen,
            password,
        })
    }

    /// The rest of a signup, before the answer: for a new address, the account (its address
    /// unverified) and a verification link to it; for an address an account holds already,
    /// a note to that address instead ("someone tried to sign up with your address"), once a
    /// minute at most. When the default name (the address) looks like another account's
    /// name, the account is named `user-<random hex>` instead, since saying so would tell of
    /// that account; it logs in with its address either way.
    ///
    /// A chosen name another signup took since `check_signup` creates nothing (logged): saying
    /// so would tell that the address is new.
    ///
    /// Errors: `Unavailable` (hashing saturated), `StoreUnavailable`, `Internal`.
    pub async fn complete_signup(
        &self,
        req: SignupRequest,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        if let Some(owner) = self.address_holder(&req.email).await? {
            // The argon2 work a new account costs, so that both take the same time.
            let _ = self.passwords.hash(req.password).await;
            let to = owner
                .email
                .clone()
                .unwrap_or_else(|| req.email.address.clone());
            self.note_once_a_minute(&owner, &to, &SIGNUP_EXISTS_MAIL)
                .await?;
            tracing::info!(user_id = %owner.id, "signup with a registered address: its owner is told");
            return Ok(());
        }
        let mut name = req.username.as_str().to_string();
        if !req.chosen
            && self
                .store
                .name_in_use(&name, &req.username.skeleton())
                .await?
                .is_some()
        {
            name = Username::generated().as_str().to_string();
        }
        // The password rules were applied at `check_signup`, against the chosen name or the
        // address (a generated name is no word of the password). The account and its
        // verification link are one write.
        let verification = TokenMail {
            purpose: EMAIL_VERIFY,
            to: &req.email.address,
            email_key: Some(&req.email.key),
            email: None,
            ttl: self.settings.accounts.verify_ttl,
            template: VERIFY_MAIL,
            once_a_minute: false,
        };
        let account = crate::users::NewAccount {
            username: &name,
            password: req.password,
            roles: Vec::new(),
            email: Some(&req.email.address),
            password_checked: true,
            first_link: Some(verification),
        };
        let created = self.create_account(account, caller).await;
        match created {
            Ok(_) => Ok(()),
            // A chosen name lost to a parallel signup is not said: only a new address gets this
            // far, so a 409 here would tell that the address is not registered (invariant 4).
            Err(
                AuthError::UsernameTaken | AuthError::UsernameConfusable | AuthError::EmailTaken,
            ) => {
                tracing::info!(
                    "signup refused: the address, or a name like it, was taken meanwhile"
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}
