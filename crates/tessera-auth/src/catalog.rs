//! Read-only views for operators' commands (`tessera user list`, `tessera keys list`). They
//! open only the store: no migration, no key generation, no hashing threads.

use std::sync::Arc;

use super::keys::KeyInfo;
use super::AuthError;
use crate::store::{Session, Store, User};
use crate::time::now_ms;

/// The read-only face of the domain.
pub struct Catalog {
    store: Arc<dyn Store>,
}

impl Catalog {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Every user, ordered by username.
    ///
    /// Errors: `NoSchema` (never migrated), `StoreUnavailable`.
    pub async fn users(&self) -> Result<Vec<User>, AuthError> {
        Ok(self.store.list_users().await?)
    }

    /// A user's sessions not yet purged, newest first (at most `users::MAX_PAGE`).
    ///
    /// Errors: `UserNotFound`, `BadInput` (a name no account can have), `NoSchema`,
    /// `StoreUnavailable`.
    pub async fn sessions(&self, username: &str) -> Result<Vec<Session>, AuthError> {
        let name = super::Username::for_lookup(username)
            .map_err(|e| AuthError::BadInput(e.to_string().into()))?;
        let user = self
            .store
            .user_by_username(name.as_str())
            .await?
            .ok_or(AuthError::UserNotFound)?;
        Ok(self
            .store
            .sessions_of_user(user.id, super::users::MAX_PAGE)
            .await?)
    }

    /// Every signing key with its state now, in activation order.
    ///
    /// Errors: `NoSchema`, `StoreUnavailable`.
    pub async fn keys(&self) -> Result<Vec<KeyInfo>, AuthError> {
        let now = now_ms();
        let rows = self.store.keys().await?;
        Ok(rows.iter().map(|r| KeyInfo::of(r, now)).collect())
    }
}
