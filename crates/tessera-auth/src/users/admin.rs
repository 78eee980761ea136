//! What the admin API lists and ends: users by page, a user's custom claims, sessions and
//! SSO sessions, and one session or SSO session ended.

use uuid::Uuid;

use super::*;

use crate::audit::Caller;
use crate::audit::{Event, Record};
use crate::store::UserQuery;
use crate::store::{Session, SessionView, SsoSessionView, UserView};
use crate::time::now_ms;
use crate::{Auth, AuthError};

/// A page of users (`GET /admin/users`), with the cursor of the next page.
#[derive(Debug, Clone)]
pub struct UserPage {
    pub users: Vec<UserView>,
    /// The last username of this page, when there may be more.
    pub next_cursor: Option<String>,
}

impl Auth {
    /// A page of users, ordered by username, filtered by username prefix, role and state.
    /// `query.limit` is 1 to `MAX_PAGE`.
    ///
    /// Errors: `BadInput` (limit, role name), `StoreUnavailable`.
    pub async fn users_page(&self, mut query: UserQuery) -> Result<UserPage, AuthError> {
        if !(1..=MAX_PAGE).contains(&query.limit) {
            return Err(AuthError::BadInput(
                format!("limit must be 1 to {MAX_PAGE}").into(),
            ));
        }
        let nul = |s: &Option<String>| s.as_deref().is_some_and(|s| s.contains('\0'));
        if nul(&query.prefix) || nul(&query.after) {
            return Err(AuthError::BadInput("U+0000 in a filter".into()));
        }
        if let Some(role) = query.role.take() {
            query.role = parse_roles(vec![role])?.pop();
        }
        // Stored names are width- and case-folded (PRECIS UsernameCaseMapped).
        query.prefix = query.prefix.map(|p| {
            use unicode_normalization::UnicodeNormalization;
            p.trim().nfkc().collect::<String>().to_lowercase()
        });
        let limit = query.limit as usize;
        // One more than asked: whether a next page exists.
        query.limit += 1;
        let mut users = self.store.users_page(&query).await?;
        let more = users.len() > limit;
        users.truncate(limit);
        let next_cursor = more
            .then(|| users.last().map(|u| u.username.clone()))
            .flatten();
        let users = users.into_iter().map(|u| UserView::from(&u)).collect();
        Ok(UserPage { users, next_cursor })
    }

    /// Replaces a user's custom claims (copied into access tokens issued from now on) and
    /// returns the user. A claim removed or changed cuts off every access token issued so far,
    /// as a role taken away does.
    ///
    /// Errors: `UserNotFound`, `BadInput` (a registered claim name, over 4 KiB), `StoreUnavailable`.
    pub async fn set_claims(
        &self,
        who: UserRef<'_>,
        claims: serde_json::Map<String, serde_json::Value>,
        caller: &Caller,
    ) -> Result<UserView, AuthError> {
        let user = self.find_user(who).await?;
        crate::import::check_claims(&claims).map_err(|e| AuthError::BadInput(e.into()))?;
        // A claim removed or changed may have granted something: tokens carrying the old value
        // are cut off, as for a role taken away. Adding a claim takes nothing away.
        let (id, old) = self
            .store
            .set_claims(&user.username, &claims, now_ms())
            .await?
            .ok_or(AuthError::UserNotFound)?;
        self.revocations.invalidate_user(id);
        if old.iter().any(|(k, v)| claims.get(k) != Some(v)) {
            self.cut_off_after(id).await?;
        }
        // The same claims again change nothing, and record nothing (see `set_roles`).
        if old != claims {
            self.audit(caller, Event::ClaimsChanged, Record::user(id))
                .await;
        }
        self.user(UserRef::Id(id)).await
    }

    /// A user's sessions not yet purged (live, expired or revoked within a day), newest first,
    /// at most `MAX_PAGE`.
    ///
    /// Errors: `UserNotFound`, `StoreUnavailable`.
    pub async fn sessions_of(&self, who: UserRef<'_>) -> Result<Vec<SessionView>, AuthError> {
        let user = self.find_user(who).await?;
        let now = now_ms();
        let sessions = self.store.sessions_of_user(user.id, MAX_PAGE).await?;
        Ok(sessions
            .into_iter()
            .map(|s| SessionView::at(s, now))
            .collect())
    }

    /// The user's SSO sessions (hosted logins), newest first, at most 1000.
    ///
    /// Errors: `UserNotFound`, `StoreUnavailable`.
    pub async fn sso_sessions_of(
        &self,
        who: UserRef<'_>,
    ) -> Result<Vec<SsoSessionView>, AuthError> {
        let user = self.find_user(who).await?;
        let now = now_ms();
        let rows = self.store.sso_sessions_of_user(user.id, MAX_PAGE).await?;
        Ok(rows
            .into_iter()
            .map(|sso| SsoSessionView {
                active: sso.is_live(now)
                    && !user.disabled
                    && sso.created_at > user.tokens_not_before,
                sso,
            })
            .collect())
    }

    /// Ends one SSO session as `/end_session` would: the browser must sign in again, the
    /// refresh sessions created through it end, and their clients get back-channel logout
    /// tokens. Ending an ended one again succeeds.
    ///
    /// Errors: `SessionNotFound`, `StoreUnavailable`.
    pub async fn revoke_sso_session(&self, id: Uuid, caller: &Caller) -> Result<(), AuthError> {
        let sso = self
            .store
            .sso_session(id)
            .await?
            .ok_or(AuthError::SessionNotFound)?;
        if self.end_sso(&sso, "revoked_by_admin").await? {
            self.audit(
                caller,
                Event::SsoLogout,
                Record::user(sso.user_id).reason("revoked_by_admin"),
            )
            .await;
        }
        Ok(())
    }

    /// Ends one session: its refresh token stops working, and so do the access tokens issued
    /// from it. Ending an ended session again succeeds and changes nothing. Returns the
    /// session as it was before: `revoked_at` is set when it had ended already.
    ///
    /// Errors: `SessionNotFound`, `StoreUnavailable`.
    pub async fn revoke_session(&self, id: Uuid, caller: &Caller) -> Result<Session, AuthError> {
        let session = self
            .store
            .session(id)
            .await?
            .ok_or(AuthError::SessionNotFound)?;
        // The revocation's own answer decides the audit event: of two revocations at once,
        // both read the session live, and only the one whose write ended it records it.
        if session.revoked_at.is_none() && self.end_one_session(id, "revoked_by_admin").await? {
            self.audit(
                caller,
                Event::SessionRevoked,
                Record::session(session.user_id, id),
            )
            .await;
        }
        Ok(session)
    }
}
