//! Logout across apps: RP-Initiated Logout 1.0 (the end-session endpoint) and the logout
//! tokens of Back-Channel Logout 1.0, queued as durable deliveries (`backchannel`).

use jsonwebtoken::Validation;
use secrecy::ExposeSecret;
use serde::Deserialize;
use uuid::Uuid;

use super::{token_digest, SsoCookie};
use crate::audit::{Caller, Event, Record};
use crate::store::LogoutDelivery;
use crate::time::now_ms;
use crate::{Auth, AuthError};

/// The parameters of an end-session request (RP-Initiated Logout 1.0 §2), as sent.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct LogoutParams {
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    pub ui_locales: Option<String>,
    pub logout_hint: Option<String>,
}

/// What an ID token used as `id_token_hint` says: who, for which client, in which SSO session.
#[derive(Debug, Clone)]
pub struct IdTokenHint {
    pub sub: String,
    pub client_id: String,
    pub sid: Option<String>,
}

/// A checked end-session request.
#[derive(Debug, Clone)]
pub struct LogoutRequest {
    pub hint: Option<IdTokenHint>,
    pub client_id: Option<String>,
    /// Registered for the client: where the browser goes afterwards, with `state`.
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    /// The parameters as sent, for the confirmation form.
    pub params: LogoutParams,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct HintClaims {
    sub: String,
    aud: OneOrMany,
    azp: Option<String>,
    sid: Option<String>,
}

impl Auth {
    /// Reads an ID token of this server's (`typ: JWT`, signed by a key of the ring, `iss`
    /// ours), expired or not (RP-Initiated Logout 1.0 §2: a hint may have expired). An access
    /// token (`typ: at+jwt`) or anything else is `None`.
    pub fn id_token_hint(&self, token: &str) -> Option<IdTokenHint> {
        if token.len() > 8 * 1024 {
            return None;
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.typ.as_deref() != Some("JWT")
            || header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
        {
            return None;
        }
        let ring = self.keys.ring();
        let key = ring.verifying.get(header.kid.as_deref()?)?;
        if header.alg != key.alg {
            return None;
        }
        let mut v = Validation::new(key.alg);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.set_issuer(&[self.settings.tokens.issuer.as_str()]);
        v.set_required_spec_claims(&["iss", "sub", "aud"]);
        let c = jsonwebtoken::decode::<HintClaims>(token, &key.decoding, &v)
            .ok()?
            .claims;
        let client_id = match c.aud {
            OneOrMany::One(a) => a,
            OneOrMany::Many(list) if list.len() == 1 => list.into_iter().next()?,
            OneOrMany::Many(_) => c.azp?,
        };
        Some(IdTokenHint {
            sub: c.sub,
            client_id,
            sid: c.sid,
        })
    }

    /// Checks an end-session request: the hint is an ID token of ours, `client_id` agrees with
    /// it, and `post_logout_redirect_uri` is registered for that client (invariant 8).
    ///
    /// Errors: a message for Tessera's error page (nothing is redirected).
    pub fn logout_request(&self, p: &LogoutParams) -> Result<LogoutRequest, String> {
        let hint = match p.id_token_hint.as_deref() {
            None => None,
            Some(t) => Some(self.id_token_hint(t).ok_or_else(|| {
                "The id_token_hint is not an ID token issued by this server.".to_string()
            })?),
        };
        let client_id = match (p.client_id.clone(), &hint) {
            (Some(c), Some(h)) if c != h.client_id => {
                return Err("The client_id is not the id_token_hint's audience.".into())
            }
            (Some(c), _) => Some(c),
            (None, Some(h)) => Some(h.client_id.clone()),
            (None, None) => None,
        };
        let post_logout_redirect_uri = match p.post_logout_redirect_uri.as_deref() {
            None => None,
            Some(uri) => {
                let registered = client_id
                    .as_deref()
                    .and_then(|c| self.client_settings(c))
                    .is_some_and(|c| {
                        // Exactly as registered: the loopback port rule of RFC 8252 is for
                        // native apps' redirect URIs, not for logout.
                        c.post_logout_redirect_uris.iter().any(|r| r == uri)
                    });
                if !registered {
                    return Err(
                        "The post_logout_redirect_uri is not registered for the application."
                            .into(),
                    );
                }
                Some(uri.to_string())
            }
        };
        Ok(LogoutRequest {
            hint,
            client_id,
            post_logout_redirect_uri,
            state: p.state.clone().filter(|s| !s.is_empty() && s.len() <= 2048),
            params: p.clone(),
        })
    }

    /// The username of the live SSO session `cookie` names, if any.
    ///
    /// Errors: `StoreUnavailable`.
    pub async fn signed_in_as(
        &self,
        cookie: Option<&SsoCookie>,
    ) -> Result<Option<String>, AuthError> {
        Ok(self.signed_in_user(cookie).await?.map(|(_, name)| name))
    }

    /// The user id and username of the live SSO session `cookie` names, if any: whom a page
    /// is shown to, so that its answer counts only for them.
    ///
    /// Errors: `StoreUnavailable`.
    pub async fn signed_in_user(
        &self,
        cookie: Option<&SsoCookie>,
    ) -> Result<Option<(Uuid, String)>, AuthError> {
        Ok(self
            .live_sso(cookie, now_ms())
            .await?
            .map(|(_, user)| (user.id, user.username)))
    }

    /// The SSO session the request may end without asking, if any: the browser's live one,
    /// when the hint names it and its user. Without a hint, or with a stale one, the user
    /// confirms, so that no other site can log them out silently. What is decided here is
    /// what `end_sso_session` ends: a sign-in in another tab that renews the cookie meanwhile
    /// (`prompt=login`) must not turn the logout into one that ends nothing.
    ///
    /// Errors: `StoreUnavailable`.
    pub async fn silent_logout_session(
        &self,
        req: &LogoutRequest,
        cookie: Option<&SsoCookie>,
    ) -> Result<Option<Uuid>, AuthError> {
        let Some(hint) = &req.hint else {
            return Ok(None);
        };
        let Some((sso, user)) = self.live_sso(cookie, now_ms()).await? else {
            return Ok(None);
        };
        let named = hint.sid.as_deref() == Some(sso.id.to_string().as_str())
            && hint.sub == user.id.to_string();
        Ok(named.then_some(sso.id))
    }

    /// The user id and username of the live SSO session a valid hint names (its `sid` and
    /// `sub`), if any: the one the confirmation page asks about when the browser sent no
    /// cookie of its own (another site's POST does not carry the `SameSite=Lax` cookie).
    ///
    /// Errors: `StoreUnavailable`.
    pub async fn hinted_user(
        &self,
        req: &LogoutRequest,
    ) -> Result<Option<(Uuid, String)>, AuthError> {
        let Some(sid) = req
            .hint
            .as_ref()
            .and_then(|h| h.sid.as_deref())
            .and_then(|s| Uuid::parse_str(s).ok())
        else {
            return Ok(None);
        };
        let Some(sso) = self.store.sso_session(sid).await? else {
            return Ok(None);
        };
        let now = now_ms();
        let hinted = req
            .hint
            .as_ref()
            .is_some_and(|h| h.sub == sso.user_id.to_string());
        if !hinted || !sso.is_live(now) {
            return Ok(None);
        }
        Ok(self
            .store
            .user_by_id(sso.user_id)
            .await?
            .filter(|u| !u.disabled && sso.created_at > u.tokens_not_before)
            .map(|u| (u.id, u.username)))
    }

    /// Ends the browser's SSO session (RP-Initiated Logout): the session, every refresh
    /// session created through it, and a logout token queued for each of their clients that
    /// registered a `backchannel_logout_uri`. Returns whether there was a session to end.
    ///
    /// Errors: `StoreUnavailable`.
    pub async fn end_session(
        &self,
        cookie: &SsoCookie,
        caller: &Caller,
    ) -> Result<bool, AuthError> {
        let digest = token_digest(cookie.0.expose_secret());
        let Some(sso) = self.store.sso_session_by_token(&digest).await? else {
            return Ok(false);
        };
        self.logout_sso(&sso, caller).await
    }

    /// `end_session` for the SSO session `id` (see `silent_logout_session`).
    ///
    /// Errors: `StoreUnavailable`.
    pub async fn end_sso_session(&self, id: Uuid, caller: &Caller) -> Result<bool, AuthError> {
        let Some(sso) = self.store.sso_session(id).await? else {
            return Ok(false);
        };
        self.logout_sso(&sso, caller).await
    }

    /// Ends `sso` at the end-session endpoint, with its audit event when this call ended it.
    async fn logout_sso(
        &self,
        sso: &crate::store::SsoSession,
        caller: &Caller,
    ) -> Result<bool, AuthError> {
        let ended = self.end_sso(sso, "logout").await?;
        if ended {
            self.audit(caller, Event::SsoLogout, Record::user(sso.user_id))
                .await;
        }
        Ok(ended)
    }

    /// Ends every live SSO session of a user whose sessions all just ended (logout everywhere,
    /// a password change, a disable, an administrator's revocation), so that their apps get
    /// back-channel logout tokens too.
    pub(crate) async fn end_sso_of_user(
        &self,
        user_id: Uuid,
        reason: &str,
    ) -> Result<(), AuthError> {
        let now = now_ms();
        for sso in self.store.sso_sessions_of_user(user_id, 1000).await? {
            if sso.is_live(now) {
                self.end_sso(&sso, reason).await?;
            }
        }
        Ok(())
    }

    /// Ends `sso` and its refresh sessions, and queues the back-channel logout tokens.
    pub(crate) async fn end_sso(
        &self,
        sso: &crate::store::SsoSession,
        reason: &str,
    ) -> Result<bool, AuthError> {
        let now = now_ms();
        let ended = self.store.revoke_sso_session(sso.id, reason, now).await?;
        // What `end_sessions(Ending::Session)` does, written out: ending all of a user's
        // sessions comes here too, and may not recurse.
        for id in self.store.sessions_of_sso(sso.id, now).await? {
            self.store.revoke_session(id, reason, now).await?;
            self.sessions_ended(&[id]);
        }
        if !ended {
            return Ok(false);
        }
        let deliveries: Vec<LogoutDelivery> = self
            .store
            .clients_of_sso(sso.id)
            .await?
            .into_iter()
            .filter_map(|client| {
                let uri = self
                    .client_settings(&client)?
                    .backchannel_logout_uri
                    .clone()?;
                Some(LogoutDelivery {
                    id: Uuid::now_v7(),
                    client_id: client,
                    uri,
                    user_id: sso.user_id,
                    sso_session_id: sso.id,
                    created_at: now,
                    attempts: 0,
                    next_attempt_at: now,
                    locked_until: 0,
                    delivered_at: None,
                    failed_at: None,
                    last_error: None,
                })
            })
            .collect();
        if !deliveries.is_empty() {
            self.store.enqueue_deliveries(&deliveries).await?;
        }
        Ok(true)
    }
}
