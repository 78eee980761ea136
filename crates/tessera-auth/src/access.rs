//! Access: verifying access tokens against every rule of invariant 2, RFC 7662 introspection,
//! and the revocation feed for stateless verifiers.

use secrecy::{ExposeSecret, SecretString};

use super::revocation::Check;
use super::tokens::{self, VerifiedClaims};
use super::{Auth, AuthError, ClientId};
use crate::store::UserView;
use crate::store::{Session, User};
use crate::time::{now_ms, UnixMillis};

/// The role that may use the admin API.
pub const ADMIN_ROLE: &str = "admin";

/// A caller whose access token passed every check of invariant 2: the token's claims, and
/// the user as they are now (never their password hash).
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Shared with the verified-token cache.
    pub claims: std::sync::Arc<VerifiedClaims>,
    pub user: UserView,
}

/// An active token, as introspection reports it.
#[derive(Debug)]
pub enum Introspection {
    Access(Box<Authenticated>),
    Refresh(Box<(Session, UserView)>),
}

/// What a token's client may learn of its user (`Auth::disclosure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disclosure {
    /// One of the operator's own clients (`trusted_client`): the username, the roles, the
    /// session and the custom claims.
    pub own: bool,
    /// The `profile` scope: the username (`preferred_username`) and `updated_at`.
    pub profile: bool,
    /// The `email` scope: the address and whether it is verified.
    pub email: bool,
}

impl Auth {
    /// The claims of an access token whose signature and claims check out for `expect`,
    /// revoked or not (logout and RFC 7009 revocation act on such tokens).
    pub(super) fn verify_signature(
        &self,
        token: &str,
        expect: &tokens::Expect<'_>,
    ) -> Option<VerifiedClaims> {
        self.verified
            .verify(
                token,
                &self.keys.ring_now(),
                expect,
                UnixMillis::now().as_secs(),
            )
            .ok()
            .map(std::sync::Arc::unwrap_or_clone)
    }

    /// How many access tokens the verified-token cache holds (`tokens.verified_cache`).
    pub fn verified_tokens_held(&self) -> usize {
        self.verified.len()
    }

    /// Verifies an access token (RFC 9068 §4) and then every revocation rule of invariant 2.
    ///
    /// Errors: `InvalidToken`, `StoreUnavailable` (the revocation state cannot be trusted and
    /// the database cannot answer: fail closed).
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated, AuthError> {
        self.authenticate_for(token, &self.expect()).await
    }

    /// `authenticate`, with the audiences `expect` accepts.
    async fn authenticate_for(
        &self,
        token: &str,
        expect: &tokens::Expect<'_>,
    ) -> Result<Authenticated, AuthError> {
        let now = UnixMillis::now();
        let claims = self
            .verified
            .verify(token, &self.keys.ring_now(), expect, now.as_secs())
            .map_err(|e| {
                tracing::debug!(reason = %e, "access token refused");
                AuthError::InvalidToken
            })?;
        let issued = claims.claims.issued_at_ms();
        // A cut-off (disable, password change, logout-all, revoke) refuses every token issued
        // up to it, and none issued after it, to the millisecond.
        let accepts = |u: &User| !u.disabled && issued > u.tokens_not_before;
        let refused = || {
            tracing::debug!("access token revoked");
            AuthError::InvalidToken
        };
        let check = self
            .revocations
            .check(claims.user_id, claims.session_id, &claims.claims.jti);
        if matches!(check, Check::Unknown) {
            self.token_checks.database.increment();
        } else {
            self.token_checks.memory.increment();
        }
        let user = match check {
            Check::Revoked => return Err(refused()),
            // The common case: the view is copied from the shared row, nothing more.
            Check::User(u) if accepts(&u) => {
                return Ok(Authenticated {
                    claims,
                    user: UserView::from(&*u),
                })
            }
            Check::User(_) => return Err(refused()),
            Check::Load(epoch) => {
                let u = self.token_status(&claims, accepts).await?;
                self.revocations.remember(&u, claims.session_id, epoch);
                // A revocation may have arrived while the rows were read.
                if matches!(
                    self.revocations
                        .check(claims.user_id, claims.session_id, &claims.claims.jti),
                    Check::Revoked
                ) {
                    return Err(refused());
                }
                u
            }
            Check::Unknown => self.token_status(&claims, accepts).await?,
        };
        Ok(Authenticated {
            claims,
            user: UserView::from(&user),
        })
    }

    /// `authenticate`, and the user must hold the `admin` role now (read from the database
    /// row, not from the token, so removing the role takes effect at once), and the token
    /// must be a trusted client's (`trusted_client`): a user's consent to a third-party app
    /// never hands it the admin API.
    ///
    /// With `admin` in `mfa.required_for_roles`, the token must come from a login with a
    /// second factor (`amr` has `mfa`).
    ///
    /// Errors: those of `authenticate`, and `InsufficientRole`.
    pub async fn authenticate_admin(&self, token: &str) -> Result<Authenticated, AuthError> {
        let who = self.authenticate(token).await?;
        if !self.trusted_client(who.claims.claims.client_id.as_deref()) {
            return Err(AuthError::InsufficientRole);
        }
        if !who.user.roles.iter().any(|r| r == ADMIN_ROLE) {
            return Err(AuthError::InsufficientRole);
        }
        // `mfa.required_for_roles`: the role counts only for a login with a second factor.
        let mfa = who.claims.claims.amr.as_ref().is_some_and(|amr| {
            tessera_proto::claims::acr::is_multi_factor(amr.iter().map(|m| m.as_ref()))
        });
        if !mfa
            && self
                .settings
                .mfa
                .required_for_roles
                .iter()
                .any(|r| r == ADMIN_ROLE)
        {
            return Err(AuthError::InsufficientRole);
        }

        Ok(who)
    }

    /// What a token of `client_id` with `scope` may learn of its user, at `/userinfo` (OIDC
    /// Core §5.4) and `/introspect` (RFC 7662 §4) alike.
    pub fn disclosure(&self, client_id: Option<&str>, scope: Option<&str>) -> Disclosure {
        let has = |s: &str| scope.is_some_and(|scope| scope.split(' ').any(|g| g == s));
        Disclosure {
            own: self.trusted_client(client_id),
            profile: has("profile"),
            email: has("email"),
        }
    }

    /// Whether tokens of `client_id` may act on the user's account at Tessera itself (the
    /// admin API, `/logout/all`): the first-party client, a `first_party` client, or a
    /// confidential client without redirect URIs (one the operator gives passwords to). A
    /// client the user consented to is none of these.
    pub fn trusted_client(&self, client_id: Option<&str>) -> bool {
        let Some(id) = client_id else {
            return true;
        };
        if id == self.settings.tokens.client_id {
            return true;
        }
        self.client_settings(id)
            .is_some_and(|c| c.first_party || (!c.public && c.redirect_uris.is_empty()))
    }

    /// Every revocation check of invariant 2 in one database read; the user row if all pass.
    async fn token_status(
        &self,
        claims: &VerifiedClaims,
        accepts: impl Fn(&User) -> bool,
    ) -> Result<User, AuthError> {
        let status = self
            .store
            .token_status(claims.user_id, claims.session_id, &claims.claims.jti)
            .await
            .map_err(|e| self.db_error(e))?;
        match status.user {
            Some(u) if accepts(&u) && !status.session_revoked && !status.jti_revoked => Ok(u),
            _ => {
                tracing::debug!("access token revoked");
                Err(AuthError::InvalidToken)
            }
        }
    }

    /// RFC 7662 introspection by the authenticated `client`. `None` means inactive: unknown,
    /// expired, revoked, the user is disabled, or the token is not `client`'s to see (§4: the
    /// operator's own clients see every token; a client the user consented to only the tokens
    /// issued to it, and of others not even that they are live). Side-effect free:
    /// introspecting a refresh token does not rotate it. The hint only orders the lookups
    /// (§2.1).
    ///
    /// Errors: `StoreUnavailable`.
    pub async fn introspect(
        &self,
        token: &SecretString,
        hint: Option<&str>,
        client: &ClientId,
    ) -> Result<Option<Introspection>, AuthError> {
        let found = if hint == Some("refresh_token") {
            match self.introspect_refresh(token).await? {
                Some(i) => Some(i),
                None => self.introspect_access(token).await?,
            }
        } else {
            match self.introspect_access(token).await? {
                Some(i) => Some(i),
                None => self.introspect_refresh(token).await?,
            }
        };
        let issued_to = match &found {
            Some(Introspection::Access(a)) => a.claims.claims.client_id.as_deref(),
            Some(Introspection::Refresh(b)) => Some(b.0.client_id.as_str()),
            None => None,
        };
        let visible =
            issued_to == Some(client.as_str()) || self.trusted_client(Some(client.as_str()));
        Ok(found.filter(|_| visible))
    }

    async fn introspect_access(
        &self,
        token: &SecretString,
    ) -> Result<Option<Introspection>, AuthError> {
        // Introspection answers for every audience Tessera mints tokens for.
        let expect = self.expect_any_audience();
        match self.authenticate_for(token.expose_secret(), &expect).await {
            Ok(a) => Ok(Some(Introspection::Access(Box::new(a)))),
            Err(AuthError::InvalidToken) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn introspect_refresh(
        &self,
        token: &SecretString,
    ) -> Result<Option<Introspection>, AuthError> {
        let Some(rt) = self.refresh.parse(token) else {
            return Ok(None);
        };
        let now = now_ms();
        let Some(s) = self.store.session(rt.session_id).await? else {
            return Ok(None);
        };
        let live = s.is_live(now) && s.generation == rt.generation;
        if !live {
            return Ok(None);
        }
        let Some(user) = self
            .store
            .user_by_id(s.user_id)
            .await?
            .filter(|u| !u.disabled)
        else {
            return Ok(None);
        };
        Ok(Some(Introspection::Refresh(Box::new((
            s,
            UserView::from(&user),
        )))))
    }
}
