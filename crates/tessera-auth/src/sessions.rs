//! Sessions: refresh-token rotation (invariant 1), logout, logout everywhere, RFC 7009
//! revocation, and issuing a token pair for a session.

use secrecy::{ExposeSecret, SecretString};

use super::audit::{Event, Record};
use super::tokens::{self, AccessClaims, Audience};
use super::{Auth, AuthError, ClientId, Ending, Granted, TokenPair, TokenRequest};
use crate::audit::Caller;
use crate::store::{Rotation, RotationAttempt, Session, SubjectClaims};
use crate::time::{millis, UnixMillis};

/// What a rotation leaves of the reuse grace for the client's retry after a 503: its wait
/// for `Retry-After`, and the retry's way back.
const RETRY_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a refresh waits for its rotation: the reuse grace less `RETRY_MARGIN` (5 s of the
/// default 10 s), so that a client told 503 retries while its token is still a retry; no
/// limit of its own (the request's timeout) when the grace is that short or shorter.
fn rotation_wait(grace: std::time::Duration) -> Option<std::time::Duration> {
    grace
        .checked_sub(RETRY_MARGIN)
        .filter(|wait| !wait.is_zero())
}

impl Auth {
    /// Refresh-token rotation (`POST /refresh`, and `/token` with `grant_type=refresh_token`,
    /// RFC 6749 §6): one atomic rotation (invariant 1). A session refreshes only for the
    /// client it was issued to.
    ///
    /// Errors: `InvalidRefreshToken` (unknown, expired, revoked, reused, another client's),
    /// `Unavailable` (no key signs), `StoreUnavailable`, `Internal` (signing failed).
    pub async fn refresh(
        &self,
        token: SecretString,
        client: &ClientId,
        req: &TokenRequest,
        caller: &Caller,
    ) -> Result<TokenPair, AuthError> {
        // First: a server whose master key opens no signing key (a wrong key, a missed step of
        // a rotation) cannot tell its own refresh tokens either. 503, which the client retries,
        // not 401, which logs the user out of a session that is fine.
        self.require_signer(UnixMillis::now().0)?;
        let Some(rt) = self.refresh.parse(&token) else {
            return Err(AuthError::InvalidRefreshToken);
        };
        self.check_before_rotation(rt.session_id, client, req)
            .await?;
        let now = UnixMillis::now();
        self.require_signer(now.0)?;
        let s = &self.settings.sessions;
        let attempt = RotationAttempt {
            session_id: rt.session_id,
            generation: rt.generation,
            client_id: client.as_str(),
            now: now.0,
            idle_expires_at: now.plus(s.idle_ttl).0,
            grace_ms: millis(s.reuse_grace),
        };
        let rotation = self.store.rotate_session(&attempt);
        let outcome = match rotation_wait(s.reuse_grace) {
            // The answer of a rotation that committed may be what is slow. Waiting past the
            // grace would leave the client's retry of the same token looking like reuse
            // (the family revoked): a 503 comes early enough for the retry to be a retry.
            Some(limit) => tokio::time::timeout(limit, rotation).await.map_err(|_| {
                tracing::warn!("a rotation outlasted its wait; answered 503 within the grace");
                AuthError::from(crate::store::StoreError::Unavailable(
                    "the rotation did not answer in time".into(),
                ))
            })?,
            None => rotation.await,
        }
        .map_err(|e| self.db_error(e))?;
        let outcome_metric = |result: &'static str| {
            metrics::counter!("refresh_total", "result" => result).increment(1);
        };
        let (session, subject) = match outcome {
            Rotation::Rotated(s, g) => {
                outcome_metric("rotated");
                (s, g)
            }
            Rotation::Retry(s, g) => {
                outcome_metric("retry_in_grace");
                tracing::info!(session_id = %s.id, "refresh retried inside the grace window");
                (s, g)
            }
            Rotation::ReuseDetected => {
                self.reuse_detected(rt.session_id, client, caller).await;
                outcome_metric("reuse");
                return Err(AuthError::InvalidRefreshToken);
            }
            Rotation::Invalid => {
                outcome_metric(self.why_invalid(rt.session_id, client, now.0).await);
                return Err(AuthError::InvalidRefreshToken);
            }
        };
        self.revocations.session_live(session.id, session.user_id);
        self.audit(
            caller,
            Event::Refreshed,
            Record::session(session.user_id, session.id).client(client.as_str()),
        )
        .await;
        // A narrower scope may be asked for; the session keeps its own (RFC 6749 §6). It was
        // checked before the rotation, against the same grant.
        let granted = self.narrow(&Granted::of(&session), req)?;
        self.issue(&subject, &session, &granted, now)
    }

    /// The scope and resource a refresh asks for, checked before the rotation (RFC 6749 §6:
    /// the old token is revoked only once the new one is issued). A refusal after it would
    /// leave the client holding a spent token, and its retry after the grace window would
    /// revoke the session as reuse; the signing key is checked before it too. A narrower scope
    /// or a resource is asked for rarely, so only then is the session's grant (which never
    /// changes) read first.
    async fn check_before_rotation(
        &self,
        session_id: uuid::Uuid,
        client: &ClientId,
        req: &TokenRequest,
    ) -> Result<(), AuthError> {
        if req.scope.is_some() || req.resource.as_deref().is_some_and(|r| !r.is_empty()) {
            if let Some(own) = self.store.session(session_id).await? {
                if own.client_id == client.as_str() {
                    self.narrow(&Granted::of(&own), req)?;
                }
            }
        }
        Ok(())
    }

    /// A spent refresh token came back after the grace window: the rotation statement has
    /// revoked its session (RFC 9700 §4.14.2). The revocation state learns of it, and it is
    /// audited and counted.
    async fn reuse_detected(&self, session_id: uuid::Uuid, client: &ClientId, caller: &Caller) {
        self.sessions_ended(&[session_id]);
        let user_id = match self.store.session(session_id).await {
            Ok(s) => s.map(|s| s.user_id),
            Err(_) => None,
        };
        let record = Record {
            user_id,
            session_id: Some(session_id),
            ..Record::default()
        };
        self.audit(caller, Event::ReuseDetected, record.client(client.as_str()))
            .await;
        metrics::counter!("refresh_reuse_detected_total").increment(1);
        tracing::warn!(%session_id, "refresh token reuse: session revoked");
    }

    /// Why a well-formed refresh token did not rotate, for `refresh_total{result}`: one read,
    /// on the failure path only.
    async fn why_invalid(&self, id: uuid::Uuid, client: &ClientId, now: i64) -> &'static str {
        match self.store.session(id).await {
            Ok(None) => "unknown",
            Ok(Some(s)) if s.revoked_at.is_some() => "revoked",
            Ok(Some(s)) if s.is_expired(now) => "expired",
            Ok(Some(s)) if s.client_id != client.as_str() => "wrong_client",
            Ok(Some(_)) => "stale",
            Err(_) => "unknown",
        }
    }

    /// `POST /logout`: revokes the session named by the refresh token and/or the access token,
    /// and denylists the access token's `jti` until its `exp` plus the leeway. Unknown tokens are ignored, so
    /// logout is idempotent.
    ///
    /// Errors: `BadInput` (no token at all), `StoreUnavailable`.
    pub async fn logout(
        &self,
        refresh: Option<SecretString>,
        access: Option<&str>,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        if refresh.is_none() && access.is_none() {
            return Err(AuthError::BadInput("no token to revoke".into()));
        }
        // Logout is the first-party client's: another client's tokens (refresh tokens it was
        // issued, access tokens minted for other APIs) are left alone, as at /revoke.
        let me = self.first_party();
        // The event is the ending's, recorded as soon as it committed (a later write that
        // fails does not take it away): a logout of a session that had ended (again, or after
        // a parallel logout won) changes nothing and records nothing.
        let mut recorded = false;
        if let Some(rt) = refresh.as_ref().and_then(|t| self.refresh.parse(t)) {
            if let Some(user_id) = self.session_owner(rt.session_id, &me).await? {
                if self.end_one_session(rt.session_id, "logout").await? {
                    let record = Record::session(user_id, rt.session_id);
                    self.audit(caller, Event::Logout, record.client(me.as_str()))
                        .await;
                    recorded = true;
                }
            }
        }
        if let Some(c) = access.and_then(|t| self.verify_signature(t, &self.expect())) {
            if c.claims.client_id.as_deref() == Some(me.as_str()) {
                // The session first: its ending refuses the token everywhere already (the
                // denylist entry only spares a verifier the session lookup).
                if self.end_one_session(c.session_id, "logout").await? && !recorded {
                    let record = Record::session(c.user_id, c.session_id);
                    self.audit(caller, Event::Logout, record.client(me.as_str()))
                        .await;
                }
                self.deny(&c, "logout").await?;
            }
        }
        Ok(())
    }

    /// The user of session `id`, if it exists and was issued to `client`.
    async fn session_owner(
        &self,
        id: uuid::Uuid,
        client: &ClientId,
    ) -> Result<Option<uuid::Uuid>, AuthError> {
        let session = self.store.session(id).await?;
        Ok(session
            .filter(|s| s.client_id == client.as_str())
            .map(|s| s.user_id))
    }

    /// `POST /logout/all`: ends every session of the bearer and cuts off every access token
    /// issued to them so far.
    ///
    /// Errors: `InvalidToken`, `StoreUnavailable`.
    pub async fn logout_all(&self, token: &str, caller: &Caller) -> Result<(), AuthError> {
        let who = self.authenticate(token).await?;
        // A third-party app the user consented to may not log them out everywhere.
        if !self.trusted_client(who.claims.claims.client_id.as_deref()) {
            return Err(AuthError::InsufficientRole);
        }
        self.end_sessions(Ending::AllOf(who.user.id), "logout_all")
            .await?;
        self.audit(caller, Event::LogoutAll, Record::user(who.user.id))
            .await;
        Ok(())
    }

    /// RFC 7009 revocation, by `client`. A refresh token revokes its session; an access token
    /// goes on the denylist until its `exp` plus the leeway (and its session is left alone, as RFC 7009 §2.1
    /// allows). Unknown or invalid tokens are accepted silently (§2.2). The hint only orders
    /// the attempts (§2.1).
    ///
    /// Only the client a token was issued to may revoke it (§2.1). A token of another client
    /// is left valid and the call still succeeds: answering differently would tell a client
    /// that a token it should not hold is live.
    ///
    /// Each revocation is an audit event (`token.revoked`), once per token: a token revoked
    /// again, or by a parallel call first, records nothing.
    ///
    /// Errors: `StoreUnavailable`.
    pub async fn revoke(
        &self,
        token: &SecretString,
        hint: Option<&str>,
        client: &ClientId,
        caller: &Caller,
    ) -> Result<(), AuthError> {
        let as_refresh = || self.refresh.parse(token);
        let any_audience = self.expect_any_audience();
        let as_access = || self.verify_signature(token.expose_secret(), &any_audience);
        let (refresh, access) = if hint == Some("access_token") {
            let a = as_access();
            (if a.is_none() { as_refresh() } else { None }, a)
        } else {
            let r = as_refresh();
            (r, if r.is_none() { as_access() } else { None })
        };
        if let Some(rt) = refresh {
            if let Some(user_id) = self.session_owner(rt.session_id, client).await? {
                if self.end_one_session(rt.session_id, "revoked").await? {
                    let record = Record::session(user_id, rt.session_id);
                    let record = record.client(client.as_str()).reason("refresh_token");
                    self.audit(caller, Event::TokenRevoked, record).await;
                }
            } else {
                tracing::info!("revocation of another client's refresh token ignored");
            }
        }
        if let Some(c) = &access {
            if c.claims.client_id.as_deref() == Some(client.as_str()) {
                if self.deny(c, "revoked").await? {
                    let record = Record::session(c.user_id, c.session_id);
                    let record = record.client(client.as_str()).reason("access_token");
                    self.audit(caller, Event::TokenRevoked, record).await;
                }
            } else {
                tracing::info!("revocation of another client's access token ignored");
            }
        }
        Ok(())
    }

    /// Signs an access token for the session's user and mints the session's current refresh
    /// token (RFC 9068 §2.2 claims).
    pub(super) fn issue(
        &self,
        subject: &SubjectClaims,
        session: &Session,
        granted: &Granted,
        now: UnixMillis,
    ) -> Result<TokenPair, AuthError> {
        let ring = self.keys.ring();
        let key = ring
            .signer_at(now.0)
            .ok_or(AuthError::Unavailable("no active signing key"))?;
        let t = &self.settings.tokens;
        let iat = now.as_secs();
        let ttl = t.access_ttl.as_secs() as i64;
        // A client the user consented to acts with its scopes alone: the user's roles and
        // custom claims are authority the consent page never showed, so its tokens carry
        // neither, and an API's role check cannot take them for the user's own.
        let (roles, custom) = match self.trusted_client(Some(session.client_id.as_str())) {
            true => (
                self.roles_for(&subject.roles, session),
                tokens::custom_claims(&subject.claims),
            ),
            false => Default::default(),
        };
        let claims = AccessClaims {
            iss: t.issuer.as_str().into(),
            sub: session.user_id.to_string().into(),
            aud: Audience::One(granted.resource.as_deref().unwrap_or(&t.audience).into()),
            exp: iat + ttl,
            iat,
            nbf: iat,
            // The jti's timestamp is the issuance time to the millisecond, which cut-offs are
            // compared with (`iat` has whole seconds only).
            jti: now.uuid_v7().to_string().into(),
            sid: session.id.to_string().into(),
            client_id: Some(session.client_id.as_str().into()),
            scope: granted.scope.as_deref().map(Into::into),
            amr: Some(session_amr(session).map(Into::into).collect()),
            acr: Some(tessera_proto::claims::acr::from_amr(session_amr(session)).into()),
            roles: roles.into(),
            custom,
        };
        let access = tokens::sign(key, &claims)
            .map_err(|e| AuthError::Internal(format!("signing failed: {e}")))?;
        let ends = session.idle_expires_at.min(session.absolute_expires_at);
        Ok(TokenPair {
            access_token: SecretString::from(access),
            expires_in: ttl,
            refresh_token: self.refresh.mint(session.id, session.generation),
            refresh_expires_in: UnixMillis(ends - now.0).as_secs().max(0),
            scope: granted.scope.clone(),
        })
    }
}

/// The RFC 8176 methods of `session`'s login (`pwd` when none were recorded).
pub(crate) fn session_amr(session: &Session) -> impl Iterator<Item = &str> {
    session
        .amr
        .as_deref()
        .unwrap_or("pwd")
        .split_ascii_whitespace()
}

impl Auth {
    /// The roles a token of `session` carries when it is one of the operator's own clients'
    /// (a client the user consented to gets none, see `issue`): those in
    /// `mfa.required_for_roles` only when its login had a second factor.
    pub(crate) fn roles_for(&self, roles: &[String], session: &Session) -> Vec<String> {
        let mfa = tessera_proto::claims::acr::is_multi_factor(session_amr(session));
        self.roles_for_login(roles, mfa)
    }

    /// The roles an access token of the operator's own clients with these `amr` (RFC 8176
    /// methods) carries for a user who holds `roles`: what `/userinfo` and `/introspect` show
    /// (a client the user consented to is shown none).
    pub fn roles_in_token<'a>(
        &self,
        roles: &[String],
        amr: Option<impl IntoIterator<Item = &'a str>>,
    ) -> Vec<String> {
        let mfa = amr.is_some_and(tessera_proto::claims::acr::is_multi_factor);
        self.roles_for_login(roles, mfa)
    }

    /// The roles a login carries: those in `mfa.required_for_roles` only with a second factor
    /// (`multi_factor`). `/userinfo` shows the same.
    pub fn roles_for_login(&self, roles: &[String], multi_factor: bool) -> Vec<String> {
        let required = &self.settings.mfa.required_for_roles;
        roles
            .iter()
            .filter(|r| multi_factor || !required.contains(r))
            .cloned()
            .collect()
    }
}
