//! The domain: logins, sessions, access tokens, keys. It knows neither HTTP nor SQL.
//!
//! `Auth` is the one service the HTTP layer and the CLI call. Each public method is one use
//! case and keeps the invariants of DESIGN.md on its own, so no caller can skip a check.

pub mod keys;
pub mod password;
pub mod revocation;
pub mod session;
pub mod throttle;
pub mod tokens;
pub mod username;

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::config::Settings;
use crate::error::Error;
use crate::store::{
    NewUser, RevocationFeed, RevokedToken, Rotation, RotationAttempt, Session, Store,
    SubjectClaims, User,
};
use keys::Keys;
use password::{PasswordError, Passwords, MAX_PASSWORD_BYTES};
use revocation::{Check, RevocationCache};
use session::RefreshTokens;
use tokens::{AccessClaims, Expect, VerifiedClaims};
pub use username::Username;

pub use crate::time::now_ms;

/// A freshly issued pair of tokens.
#[derive(Debug)]
pub struct TokenPair {
    pub access_token: SecretString,
    pub expires_in: i64,
    pub refresh_token: SecretString,
    pub refresh_expires_in: i64,
}

/// Where a login came from, recorded on the session.
#[derive(Debug, Default, Clone)]
pub struct ClientMeta {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// An active token, as introspection reports it.
#[derive(Debug)]
pub enum Introspection {
    Access(Box<Authenticated>),
    Refresh(Box<(Session, User)>),
}

/// A caller whose access token passed every check of invariant 2.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub claims: VerifiedClaims,
    pub user: User,
}

/// The authentication service.
pub struct Auth {
    pub store: Arc<dyn Store>,
    pub passwords: Passwords,
    pub keys: Keys,
    pub refresh: RefreshTokens,
    pub settings: Arc<Settings>,
    /// In-memory revocation state (invariant 2 without a query per verification).
    pub revocations: RevocationCache,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

impl From<PasswordError> for Error {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Busy => Error::Unavailable("password hashing saturated"),
            PasswordError::Internal(m) => Error::Internal(m),
        }
    }
}

/// Checks a password's size before any hashing happens.
pub fn check_password(pw: &SecretString) -> Result<(), Error> {
    let n = pw.expose_secret().len();
    if n == 0 {
        return Err(Error::InvalidRequest("empty password".into()));
    }
    if n > MAX_PASSWORD_BYTES {
        return Err(Error::InvalidRequest("password too long".into()));
    }
    Ok(())
}

/// Password rules for new passwords (NIST SP 800-63B: at least 8 characters, no composition
/// rules).
pub fn check_new_password(pw: &SecretString) -> Result<(), Error> {
    check_password(pw)?;
    if pw.expose_secret().chars().count() < 8 {
        return Err(Error::InvalidRequest(
            "password must have at least 8 characters".into(),
        ));
    }
    Ok(())
}

impl Auth {
    fn expect(&self) -> Expect<'_> {
        Expect {
            issuer: &self.settings.tokens.issuer,
            audience: &self.settings.tokens.audience,
            leeway_secs: self.settings.tokens.leeway.as_secs(),
        }
    }

    /// `POST /login`: every credential failure is the same `InvalidGrant`, after the same amount
    /// of argon2 work (invariant 4).
    pub async fn login(
        &self,
        username: &str,
        password: SecretString,
        meta: ClientMeta,
        client_id: &str,
    ) -> Result<TokenPair, Error> {
        if username.is_empty() {
            return Err(Error::InvalidRequest("empty username".into()));
        }
        if username.len() > username::MAX_RAW_BYTES {
            return Err(Error::InvalidRequest("username too long".into()));
        }
        check_password(&password)?;
        // Shed before any database work when the password pipeline is full (invariant 4).
        let _admission = self.passwords.admit()?;
        let name = Username::parse(username);
        let throttle_name = match &name {
            Ok(n) => n.as_str().to_string(),
            // Not a valid name: key on a digest, so raw input (NUL bytes...) never reaches SQL.
            Err(_) => {
                use base64::Engine;
                let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, username.as_bytes());
                format!(
                    "#{}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
                )
            }
        };
        let keys = throttle::Keys::new(&throttle_name, meta.ip.as_deref());
        let limits = &self.settings.throttle;
        throttle::check(self.store.as_ref(), limits, &keys, now_ms()).await?;
        let user = match name {
            Ok(name) => self.store.user_by_username(name.as_str()).await?,
            // Not a name anyone can have: still pay for one verification.
            Err(_) => None,
        };
        let verified = self
            .passwords
            .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
            .await?;
        let user = match user {
            Some(u) if verified.ok && !u.disabled => u,
            _ => {
                tracing::info!("login failed");
                metrics::counter!("logins_total", "result" => "failed").increment(1);
                throttle::failed(self.store.as_ref(), limits, &keys, now_ms()).await?;
                return Err(Error::InvalidGrant);
            }
        };
        throttle::succeeded(self.store.as_ref(), limits, &keys).await?;
        let now = now_ms();
        if let Some(new_hash) = verified.rehash {
            if let Err(e) = self
                .store
                .rehash_password(user.id, &user.password_hash, &new_hash, now)
                .await
            {
                tracing::warn!(error = %e, "password re-hash not stored");
            }
        }
        let s = &self.settings.sessions;
        let absolute = now.saturating_add(s.absolute_ttl.as_millis() as i64);
        let session = Session {
            id: Uuid::now_v7(),
            user_id: user.id,
            generation: 0,
            created_at: now,
            last_refreshed_at: now,
            idle_expires_at: now
                .saturating_add(s.idle_ttl.as_millis() as i64)
                .min(absolute),
            absolute_expires_at: absolute,
            revoked_at: None,
            revoked_reason: None,
            user_agent: meta.user_agent.map(|ua| ua.chars().take(512).collect()),
            ip: meta.ip,
            client_id: client_id.to_string(),
        };
        self.store.create_session(&session).await?;
        self.revocations.session_live(session.id, user.id);
        tracing::info!(user_id = %user.id, session_id = %session.id, "login ok");
        metrics::counter!("logins_total", "result" => "ok").increment(1);
        let grant = SubjectClaims {
            roles: user.roles,
            claims: user.claims,
        };
        self.issue(user.id, &grant, &session, now)
    }

    /// `POST /refresh`: one atomic rotation (invariant 1). A session only refreshes for the
    /// client it was issued to (RFC 6749 §6).
    pub async fn refresh(&self, token: SecretString, client_id: &str) -> Result<TokenPair, Error> {
        let Some(rt) = self.refresh.parse(&token) else {
            return Err(Error::InvalidGrant);
        };
        let now = now_ms();
        let s = &self.settings.sessions;
        let outcome = self
            .store
            .rotate_session(&RotationAttempt {
                session_id: rt.session_id,
                generation: rt.generation,
                client_id,
                now,
                idle_expires_at: now.saturating_add(crate::time::millis(s.idle_ttl)),
                grace_ms: crate::time::millis(s.reuse_grace),
            })
            .await
            .map_err(|e| self.db_error(e))?;
        let (session, grant) = match outcome {
            Rotation::Rotated(s, g) => (s, g),
            Rotation::Retry(s, g) => {
                tracing::info!(session_id = %s.id, "refresh retried inside the grace window");
                (s, g)
            }
            Rotation::ReuseDetected => {
                self.revocations.revoke_session(rt.session_id);
                metrics::counter!("refresh_reuse_detected_total").increment(1);
                tracing::warn!(session_id = %rt.session_id, "refresh token reuse: session revoked");
                return Err(Error::InvalidGrant);
            }
            Rotation::Invalid => return Err(Error::InvalidGrant),
        };
        self.revocations.session_live(session.id, session.user_id);
        self.issue(session.user_id, &grant, &session, now)
    }

    /// `POST /logout`: revokes the session named by the refresh token and/or the access token,
    /// and denylists the access token's `jti` until it expires. Unknown tokens are ignored, so
    /// logout is idempotent.
    pub async fn logout(
        &self,
        refresh: Option<SecretString>,
        access: Option<&str>,
    ) -> Result<(), Error> {
        if refresh.is_none() && access.is_none() {
            return Err(Error::InvalidRequest("no token to revoke".into()));
        }
        let now = now_ms();
        if let Some(rt) = refresh.as_ref().and_then(|t| self.refresh.parse(t)) {
            self.store
                .revoke_session(rt.session_id, "logout", now)
                .await?;
            self.revocations.revoke_session(rt.session_id);
        }
        if let Some(token) = access {
            let ring = self.keys.ring();
            if let Ok(c) = tokens::verify(token, &ring, &self.expect(), now / 1000) {
                self.deny_token(&c, "logout", now).await?;
                self.store.revoke_session(c.sid, "logout", now).await?;
                self.revocations.revoke_session(c.sid);
            }
        }
        Ok(())
    }

    /// Verifies an access token and then every revocation rule of invariant 2.
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated, Error> {
        let now = now_ms();
        let ring = self.keys.ring();
        let claims = tokens::verify(token, &ring, &self.expect(), now / 1000).map_err(|e| {
            tracing::debug!(reason = %e, "access token refused");
            Error::InvalidToken
        })?;
        let iat_ms = claims.iat.saturating_mul(1000);
        let accepts = |u: &User| !u.disabled && iat_ms >= u.tokens_not_before;
        let refused = || {
            tracing::debug!("access token revoked");
            Error::InvalidToken
        };
        let check = self.revocations.check(claims.sub, claims.sid, &claims.jti);
        let source = if matches!(check, Check::Unknown) {
            "database"
        } else {
            "memory"
        };
        metrics::counter!("token_checks_total", "source" => source).increment(1);
        let user = match check {
            Check::Revoked => return Err(refused()),
            Check::User(u) if accepts(&u) => User::clone(&u),
            Check::User(_) => return Err(refused()),
            Check::Load(epoch) => {
                let u = self.token_status(&claims, accepts).await?;
                self.revocations.remember(&u, claims.sid, epoch);
                // A revocation may have arrived while the rows were read.
                if matches!(
                    self.revocations.check(claims.sub, claims.sid, &claims.jti),
                    Check::Revoked
                ) {
                    return Err(refused());
                }
                u
            }
            Check::Unknown => self.token_status(&claims, accepts).await?,
        };
        Ok(Authenticated { claims, user })
    }

    /// Every revocation check of invariant 2 in one database read; the user row if all pass.
    async fn token_status(
        &self,
        claims: &VerifiedClaims,
        accepts: impl Fn(&User) -> bool,
    ) -> Result<User, Error> {
        let status = self
            .store
            .token_status(claims.sub, claims.sid, &claims.jti)
            .await
            .map_err(|e| self.db_error(e))?;
        match status.user {
            Some(u) if accepts(&u) && !status.session_revoked && !status.jti_revoked => Ok(u),
            _ => {
                tracing::debug!("access token revoked");
                Err(Error::InvalidToken)
            }
        }
    }

    /// Signs an access token for `user` in `session` and mints the session's current refresh
    /// token.
    fn issue(
        &self,
        user_id: Uuid,
        grant: &SubjectClaims,
        session: &Session,
        now: i64,
    ) -> Result<TokenPair, Error> {
        let ring = self.keys.ring();
        let key = ring
            .signer_at(now)
            .ok_or(Error::Unavailable("no active signing key"))?;
        let t = &self.settings.tokens;
        let iat = now / 1000;
        let ttl = t.access_ttl.as_secs() as i64;
        let claims = AccessClaims {
            iss: &t.issuer,
            sub: user_id.to_string(),
            aud: &t.audience,
            exp: iat + ttl,
            iat,
            nbf: iat,
            jti: Uuid::now_v7().to_string(),
            sid: session.id.to_string(),
            client_id: &session.client_id,
            roles: &grant.roles,
            extra: tokens::custom_claims(&grant.claims),
        };
        let access = tokens::sign(key, &claims)
            .map_err(|e| Error::Internal(format!("signing failed: {e}")))?;
        let ends = session.idle_expires_at.min(session.absolute_expires_at);
        Ok(TokenPair {
            access_token: SecretString::from(access),
            expires_in: ttl,
            refresh_token: self.refresh.mint(session.id, session.generation),
            refresh_expires_in: ((ends - now) / 1000).max(0),
        })
    }

    /// `POST /logout/all`: ends every session of the caller and cuts off every access token
    /// issued to them so far.
    pub async fn logout_all(&self, token: &str) -> Result<(), Error> {
        let who = self.authenticate(token).await?;
        self.revoke_user(who.user.id, "logout_all").await
    }

    /// Revokes every session of a user and sets `tokens_not_before` (CLI `user revoke`).
    pub async fn revoke_user(&self, user_id: Uuid, reason: &str) -> Result<(), Error> {
        let now = now_ms();
        let sessions = self
            .store
            .revoke_user(user_id, reason, now)
            .await?
            .ok_or(Error::NotFound)?;
        self.revocations.revoke_sessions(&sessions);
        self.revocations.invalidate_user(user_id);
        Ok(())
    }

    /// Disables or re-enables a user (CLI and admin API). Disabling refuses every token issued
    /// so far. Returns false when there is no such user.
    pub async fn set_disabled(&self, username: &str, disabled: bool) -> Result<bool, Error> {
        let id = self
            .store
            .set_disabled(username, disabled, now_ms())
            .await?;
        Ok(self.user_changed(id))
    }

    /// Replaces a user's roles (CLI and admin API). Returns false when there is no such user.
    pub async fn set_roles(&self, username: &str, roles: &[String]) -> Result<bool, Error> {
        let id = self.store.set_roles(username, roles, now_ms()).await?;
        Ok(self.user_changed(id))
    }

    /// Forgets the cached row of a user a store write just changed; false: no such user.
    fn user_changed(&self, id: Option<Uuid>) -> bool {
        if let Some(id) = id {
            self.revocations.invalidate_user(id);
        }
        id.is_some()
    }

    /// Denylists a verified access token until it expires.
    async fn deny_token(&self, c: &VerifiedClaims, reason: &str, now: i64) -> Result<(), Error> {
        let expires_at = c.exp.saturating_mul(1000);
        self.store
            .revoke_token(&RevokedToken {
                jti: c.jti.clone(),
                user_id: c.sub,
                session_id: Some(c.sid),
                expires_at,
                revoked_at: now,
                reason: reason.into(),
            })
            .await?;
        self.revocations.revoke_jti(&c.jti, expires_at);
        Ok(())
    }

    /// Maps a store error; one that says the database is unreachable also stops the in-memory
    /// revocation state from being trusted until its next successful sync (fail closed).
    fn db_error(&self, e: crate::store::StoreError) -> Error {
        if matches!(e, crate::store::StoreError::Unavailable(_)) {
            self.revocations.distrust();
        }
        e.into()
    }

    /// RFC 7009 revocation. A refresh token revokes its session; an access token goes on the
    /// denylist until it expires (and its session is left alone, as RFC 7009 §2.1 allows).
    /// Unknown or invalid tokens are accepted silently (§2.2).
    pub async fn revoke(&self, token: &SecretString, hint: Option<&str>) -> Result<(), Error> {
        let now = now_ms();
        let as_refresh = || self.refresh.parse(token);
        let as_access = || {
            let ring = self.keys.ring();
            tokens::verify(token.expose_secret(), &ring, &self.expect(), now / 1000).ok()
        };
        // The hint only orders the attempts (§2.1).
        let (refresh, access) = if hint == Some("access_token") {
            let a = as_access();
            (if a.is_none() { as_refresh() } else { None }, a)
        } else {
            let r = as_refresh();
            (r, if r.is_none() { as_access() } else { None })
        };
        if let Some(rt) = refresh {
            self.store
                .revoke_session(rt.session_id, "revoked", now)
                .await?;
            self.revocations.revoke_session(rt.session_id);
        }
        if let Some(c) = &access {
            self.deny_token(c, "revoked", now).await?;
        }
        Ok(())
    }

    /// RFC 7662 introspection. `None` means inactive: unknown, expired, revoked, or the user
    /// is disabled. Side-effect free: introspecting a refresh token does not rotate it.
    pub async fn introspect(
        &self,
        token: &SecretString,
        hint: Option<&str>,
    ) -> Result<Option<Introspection>, Error> {
        let try_refresh = || async {
            let Some(rt) = self.refresh.parse(token) else {
                return Ok::<_, Error>(None);
            };
            let now = now_ms();
            let Some(s) = self.store.session(rt.session_id).await? else {
                return Ok(None);
            };
            let live = s.revoked_at.is_none()
                && s.generation == rt.generation
                && s.idle_expires_at > now
                && s.absolute_expires_at > now;
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
            Ok(Some(Introspection::Refresh(Box::new((s, user)))))
        };
        let try_access = || async {
            match self.authenticate(token.expose_secret()).await {
                Ok(a) => Ok(Some(Introspection::Access(Box::new(a)))),
                Err(Error::InvalidToken) => Ok(None),
                Err(e) => Err(e),
            }
        };
        if hint == Some("refresh_token") {
            if let Some(i) = try_refresh().await? {
                return Ok(Some(i));
            }
            return try_access().await;
        }
        if let Some(i) = try_access().await? {
            return Ok(Some(i));
        }
        try_refresh().await
    }

    /// The revocation feed since `since` (ms): everything a stateless verifier must apply to
    /// tokens that can still be alive.
    pub async fn revocations(&self, since: i64) -> Result<(RevocationFeed, i64), Error> {
        let now = now_ms();
        let horizon = crate::time::millis(self.settings.token_horizon());
        let feed = self.store.revocations_since(since, now, horizon).await?;
        Ok((feed, now))
    }

    /// Checks a confidential client's credentials in constant time (both sides are hashed
    /// first, so not even the length is compared directly). Returns the client id.
    pub fn authenticate_client(&self, id: &str, secret: &SecretString) -> Result<String, Error> {
        use aws_lc_rs::digest::{digest, SHA256};
        let presented = digest(&SHA256, secret.expose_secret().as_bytes());
        let mut ok = false;
        for c in &self.settings.clients {
            let Some(expected) = &c.secret else { continue };
            let expected = digest(&SHA256, expected.expose_secret().as_bytes());
            let same = aws_lc_rs::constant_time::verify_slices_are_equal(
                presented.as_ref(),
                expected.as_ref(),
            )
            .is_ok();
            ok |= same && c.id == id;
        }
        if ok {
            Ok(id.to_string())
        } else {
            tracing::info!("client authentication failed");
            Err(Error::InvalidClient)
        }
    }

    /// The key lifecycle timing from the settings.
    pub fn schedule(&self) -> keys::Schedule {
        self.settings.key_schedule()
    }

    /// Creates a user (CLI and admin API).
    pub async fn create_user(
        &self,
        username: &str,
        password: SecretString,
        roles: Vec<String>,
    ) -> Result<User, Error> {
        let name = Username::parse(username).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        check_new_password(&password)?;
        let roles =
            username::parse_roles(roles).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let hash = self.passwords.hash(password).await?;
        let user = self
            .store
            .create_user(NewUser {
                id: Uuid::now_v7(),
                username: name.as_str().to_string(),
                password_hash: hash,
                roles,
                now: now_ms(),
            })
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Duplicate(_) => Error::Conflict("username"),
                other => other.into(),
            })?;
        Ok(user)
    }

    /// Sets a new password; every session of the user is revoked and earlier access tokens stop
    /// working.
    pub async fn set_password(
        &self,
        username: &str,
        password: SecretString,
    ) -> Result<bool, Error> {
        let name = Username::parse(username).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        check_new_password(&password)?;
        let hash = self.passwords.hash(password).await?;
        let now = now_ms();
        let Some((id, sessions)) = self.store.set_password(name.as_str(), &hash, now).await? else {
            return Ok(false);
        };
        self.revocations.revoke_sessions(&sessions);
        self.revocations.invalidate_user(id);
        Ok(true)
    }
}
