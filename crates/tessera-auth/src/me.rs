//! What a user does with their own account, with their bearer token: change the password
//! (with the current one) or the username, list and end their sessions, and delete the
//! account.

use secrecy::SecretString;
use uuid::Uuid;

use crate::audit::{Caller, Event, Record};
use crate::email::Email;
use crate::store::{Duplicate, StoreError};
use crate::store::{SessionView, UserView};
use crate::time::{now_ms, UnixMillis};
use crate::users::UserRef;
use crate::{Auth, AuthError, ClientId, ClientMeta, Granted, TokenPair, Username};

impl Auth {
    /// Changes the caller's password (`POST /me/password`): the current one is checked like a
    /// login (throttled, argon2), the new one against the rules; then every session of the
    /// user ends and earlier access tokens are cut off, and the caller gets a new session with
    /// the methods of the one it came from (`amr`). A note goes to the user's address when
    /// mail is on.
    ///
    /// Errors: `InvalidCredentials` (the current password is wrong), `Throttled`,
    /// `WeakPassword`, `BadInput`, `Unavailable`, `StoreUnavailable`.
    #[allow(clippy::too_many_arguments)]
    pub async fn change_password(
        &self,
        user_id: Uuid,
        current: SecretString,
        new: SecretString,
        amr: Option<String>,
        meta: ClientMeta,
        client: &ClientId,
        caller: &Caller,
    ) -> Result<TokenPair, AuthError> {
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        crate::login::check_new_password(&new, &user.username, &self.settings.password)?;
        let (checked, _) = self
            .verify_password_login(&user.username, current, meta.ip.as_deref(), client, caller)
            .await?;
        // Against the hash the current password was checked with: of parallel changes with
        // one current password, one wins; the others find it changed.
        let hash = self.passwords.hash(new).await?;
        // The note is queued in the change's own transaction (invariant 10).
        let notice = match (self.mail_enabled(), &user.email) {
            (true, Some(to)) => {
                let ctx = minijinja::context! { username => user.username };
                Some(self.notice(to, &crate::accounts::PASSWORD_CHANGED_MAIL, ctx)?)
            }
            _ => None,
        };
        self.user_changed(self.store.set_password_if(
            &checked.username,
            &checked.password_hash,
            &hash,
            now_ms(),
            notice.as_ref(),
        ))
        .await
        .map_err(|e| match e {
            AuthError::UserNotFound => AuthError::InvalidCredentials,
            other => other,
        })?;
        if notice.is_some() {
            self.mail_queued.notify_one();
        }
        self.end_sso_of_user(user.id, "password_changed").await?;
        self.audit(caller, Event::PasswordChanged, Record::user(user.id))
            .await;
        // The caller carries on in a new session, minted after the cut-off.
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let granted = Granted::default();
        let now = UnixMillis(now_ms().max(user.tokens_not_before + 1));
        let mut session = self.new_session(user.id, meta, client, &granted, now);
        session.amr = amr;
        let subject = self
            .open_session(user.tokens_not_before, None, &session, client, caller)
            .await?;
        self.issue(&subject, &session, &granted, now)
    }

    /// Renames the caller (`PATCH /me`): needs a login within `mfa.reauth_within`
    /// (`auth_time`, ms), since the name is what the account logs in with. The name follows
    /// the username rules (PRECIS, one script); a name with an `@` must be the account's own
    /// address. Access tokens issued before carry the old name until they are refreshed; `sub`
    /// does not change.
    ///
    /// Errors: `ReauthenticationRequired`, `BadUsername`, `BadInput` (an address that is not
    /// the account's), `UsernameTaken`, `UsernameConfusable` (it looks like another
    /// account's), `UserNotFound`, `StoreUnavailable`.
    pub async fn change_username(
        &self,
        user_id: Uuid,
        username: &str,
        auth_time: i64,
        caller: &Caller,
    ) -> Result<UserView, AuthError> {
        self.check_recent(auth_time)?;
        let name = Username::parse(username).map_err(AuthError::BadUsername)?;
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or(AuthError::UserNotFound)?;
        // A name with an @ logs in as that address: only the account's own, in the form an
        // address-shaped name always has (its address's), and only while the account keeps
        // that address (checked by the write itself).
        let not_own = || {
            AuthError::BadInput("a username with @ must be the account's own email address".into())
        };
        let (name, bound) = if name.as_str().contains('@') {
            let own = user.email.as_deref().and_then(|e| Email::parse(e).ok());
            let named = Email::parse(name.as_str()).ok();
            match (own, named) {
                (Some(own), Some(named)) if own.key == named.key => {
                    let canonical =
                        Username::parse(&own.address).map_err(AuthError::BadUsername)?;
                    (canonical, Some(own.key))
                }
                _ => return Err(not_own()),
            }
        } else {
            (name, None)
        };
        if name.as_str() == user.username {
            return self.user(UserRef::Id(user_id)).await;
        }
        let renamed = self
            .store
            .rename_user(
                user_id,
                name.as_str(),
                &name.skeleton(),
                bound.as_deref(),
                now_ms(),
            )
            .await
            .map_err(|e| match e {
                StoreError::Duplicate(Duplicate::Username) => AuthError::UsernameTaken,
                StoreError::Duplicate(Duplicate::UsernameSkeleton) => AuthError::UsernameConfusable,
                other => other.into(),
            })?;
        if !renamed {
            // The address changed meanwhile, or the account was disabled or erased.
            return Err(if bound.is_some() {
                not_own()
            } else {
                AuthError::UserNotFound
            });
        }
        self.revocations.invalidate_user(user_id);
        self.audit(caller, Event::UsernameChanged, Record::user(user_id))
            .await;
        self.user(UserRef::Id(user_id)).await
    }

    /// The caller's sessions (`GET /me/sessions`), newest first.
    ///
    /// Errors: `UserNotFound`, `StoreUnavailable`.
    pub async fn my_sessions(&self, user_id: Uuid) -> Result<Vec<SessionView>, AuthError> {
        self.sessions_of(UserRef::Id(user_id)).await
    }

    /// Ends one of the caller's sessions (`DELETE /me/sessions/{id}`); ending an ended one
    /// succeeds.
    ///
    /// Errors: `SessionNotFound` (no such session of the user), `StoreUnavailable`.
    pub async fn end_my_session(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        let session = self
            .store
            .session(session_id)
            .await?
            .filter(|s| s.user_id == user_id)
            .ok_or(AuthError::SessionNotFound)?;
        if session.revoked_at.is_none() && self.end_one_session(session_id, "ended_by_user").await?
        {
            self.audit(caller, Event::Logout, Record::session(user_id, session_id))
                .await;
        }
        Ok(())
    }

    /// Deletes the caller's account (`DELETE /me`): needs a login within `mfa.reauth_within`
    /// (`auth_time`, ms). The username, address, password hash, factors, sessions and consents
    /// are erased; the row stays as a disabled tombstone with a new cut-off, so that every
    /// token of the user is refused here and, through the revocation feed, by every API. Audit
    /// rows keep only the user id.
    ///
    /// Errors: `ReauthenticationRequired`, `UserNotFound`, `StoreUnavailable`.
    pub async fn delete_account(
        &self,
        user_id: Uuid,
        auth_time: i64,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        self.check_recent(auth_time)?;
        // First the SSO sessions, so that their apps get their back-channel logouts.
        self.end_sso_of_user(user_id, "account_deleted").await?;
        let tombstone = format!("deleted-{}", user_id.simple());
        if !self.store.erase_user(user_id, &tombstone, now_ms()).await? {
            return Err(AuthError::UserNotFound);
        }
        self.revocations.invalidate_user(user_id);
        self.audit(caller, Event::UserDeleted, Record::user(user_id))
            .await;
        Ok(())
    }
}
