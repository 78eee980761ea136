//! A user's email address, set by an administrator (the admin API, the CLI): the address,
//! and the name that follows it when the name is the address.

use super::*;

impl Auth {
    /// Sets a user's email address (`None` clears it), unverified unless `verified` (an
    /// administrator vouching for it, as an import does). The user logs in with it from now on.
    /// A username that was the old address follows it, as at `/me/email`: it becomes the new
    /// address, or a generated `user-<hex>` when the new one cannot be a name (too long, like
    /// another account's name) or the address is cleared, so that it never holds an address
    /// that is no longer the account's.
    ///
    /// Errors: `UserNotFound`, `BadInput` (not an address), `EmailTaken` (another account's,
    /// compared case-insensitively with the domain IDNA-normalised, or another account's
    /// name), `StoreUnavailable`.
    pub async fn set_email(
        &self,
        who: UserRef<'_>,
        email: Option<&str>,
        verified: bool,
        caller: &Caller,
    ) -> Result<UserView, AuthError> {
        let email = email.map(Email::parse).transpose()?;
        let user = self.find_user(who).await?;
        // An address another account is named by is that account's (logins by address would
        // go to this one instead): taken, as for a signup.
        if let Some(e) = &email {
            for name in e.names() {
                let named = self.store.user_by_username(&name).await?;
                if named.is_some_and(|other| other.id != user.id) {
                    return Err(AuthError::EmailTaken);
                }
            }
        }
        let pair = email.as_ref().map(|e| (e.address.as_str(), e.key.as_str()));
        let from = address_shaped_name(&user, email.as_ref());
        let set = |to: Option<Username>| {
            let from = from.clone();
            async move {
                let skeleton = to.as_ref().map(Username::skeleton);
                let rename = from
                    .as_deref()
                    .zip(to.as_ref().map(Username::as_str))
                    .zip(skeleton.as_deref())
                    .map(|((from, to), skeleton)| (from, to, skeleton));
                self.store
                    .set_email(user.id, pair, verified, rename, now_ms())
                    .await
            }
        };
        // The name follows to the new address, or to a generated one when the new address
        // cannot be a name, is cleared, or as a name looks like another account's.
        let to = email
            .as_ref()
            .and_then(|e| Username::parse(&e.address).ok())
            .unwrap_or_else(Username::generated);
        let done = match set(from.is_some().then_some(to)).await {
            Err(StoreError::Duplicate(Duplicate::Username | Duplicate::UsernameSkeleton)) => {
                set(Some(Username::generated())).await
            }
            other => other,
        }
        .map_err(|e| match e {
            StoreError::Duplicate(Duplicate::Email) => AuthError::EmailTaken,
            other => other.into(),
        })?;
        let Some(renamed) = done else {
            return Err(AuthError::UserNotFound);
        };
        // This replica's cache of the row forgets it at once; others follow `updated_at`.
        self.revocations.invalidate_user(user.id);
        self.audit(caller, Event::EmailChanged, Record::user(user.id))
            .await;
        if renamed {
            self.audit(caller, Event::UsernameChanged, Record::user(user.id))
                .await;
        }
        self.user(UserRef::Id(user.id)).await
    }
}

/// The user's name, if it must follow the address as it changes to `new` (another address, or
/// none): a name written as an address names that address's account, so once the account's
/// address is not that one (compared by key, in any spelling), the name goes. An account with
/// no address, left without one, keeps its name.
fn address_shaped_name(user: &User, new: Option<&Email>) -> Option<String> {
    let named = Email::parse(&user.username).ok()?;
    let had = user.email.is_some();
    let follows = (had || new.is_some()) && new.is_none_or(|n| n.key != named.key);
    follows.then(|| user.username.clone())
}
