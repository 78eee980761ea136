//! The SSO session of the hosted login, and the decision `/authorize` takes with it.
//!
//! A browser that signed in at the hosted login holds a cookie with a random 256-bit token;
//! the store keeps only its digest. The session it names is live while it is neither revoked
//! nor past its idle or absolute expiry, its user is enabled, and nothing cut off the user's
//! tokens since it began (a password change, `logout/all`, an administrator's revocation move
//! `tokens_not_before`, which ends it too).

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::{random_token, token_digest, AuthorizationRequest, AuthorizeError, Decision, Redirect};
use crate::audit::{Caller, Event, Record};
use crate::store::{SsoSession, User};
use crate::time::{now_ms, UnixMillis};
use crate::{Auth, AuthError, ClientId, ClientMeta};

/// Whether a sign-in with these RFC 8176 methods (`amr`, space-separated) is outdated by a
/// factor its user has confirmed since: one without a second factor, of a user who now has
/// one. Its SSO session, codes and device approvals are refused at their next use (the
/// code exchange's SQL applies the same rule, `second_factor_kept!`).
pub(crate) fn outdated_by_factor(amr: &str, has_factor: bool) -> bool {
    has_factor && !tessera_proto::claims::acr::is_multi_factor(amr.split_ascii_whitespace())
}

/// How often a use of an SSO session moves its idle expiry: at most once a minute, and at
/// most every tenth of `sso.idle_ttl`, so that a session in use ends no more than that early.
const TOUCH_EVERY_MS: i64 = 60_000;

/// The token of an SSO session's cookie.
#[derive(Debug)]
pub struct SsoCookie(pub SecretString);

/// A sign-in at the hosted login: the new session's cookie and what comes next.
#[derive(Debug)]
pub struct SignedIn {
    pub cookie: SsoCookie,
    /// The cookie's lifetime (seconds): the session's absolute lifetime.
    pub max_age_secs: u64,
    /// `Consent` or `Code`.
    pub decision: Decision,
}

/// The user of a browser's live SSO session.
#[derive(Debug, Clone)]
pub struct BrowserUser {
    pub user_id: Uuid,
    /// The SSO session (the `sid` of its ID tokens).
    pub sso_session_id: Uuid,
    pub username: String,
    /// When they signed in (ms since the Unix epoch).
    pub auth_time: i64,
}

pub(super) fn unavailable(e: AuthError) -> AuthorizeError {
    tracing::warn!(error = %e, "authorization request failed");
    AuthorizeError::Unavailable
}

impl Auth {
    /// The live SSO session `cookie` names, with its user; its idle expiry moves on.
    pub(crate) async fn live_sso(
        &self,
        cookie: Option<&SsoCookie>,
        now: i64,
    ) -> Result<Option<(SsoSession, User)>, AuthError> {
        let Some(cookie) = cookie else {
            return Ok(None);
        };
        let digest = token_digest(cookie.0.expose_secret());
        let Some((sso, user, has_factor)) = self.store.sso_session_with_user(&digest).await? else {
            return Ok(None);
        };
        if !sso.is_live(now) || user.disabled || sso.created_at <= user.tokens_not_before {
            return Ok(None);
        }
        // Signed in with a password before the user enrolled a factor: not signed in enough
        // any more; the next login asks for the factor.
        if outdated_by_factor(&sso.amr, has_factor) {
            return Ok(None);
        }
        // The idle expiry moves on at most once a minute: an SSO re-authorization then costs
        // no write for it (the idle lifetime is a day by default; a minute is noise). A short
        // idle lifetime moves it every tenth of itself: a session used every 4 s with a 15 s
        // idle lifetime ended after 15 s.
        let idle_ttl = self.settings.sso.idle_ttl;
        let every =
            TOUCH_EVERY_MS.min(i64::try_from(idle_ttl.as_millis() / 10).unwrap_or(i64::MAX));
        if now - sso.last_seen_at >= every {
            let idle = UnixMillis(now).plus(idle_ttl).0;
            self.store.touch_sso_session(sso.id, now, idle).await?;
        }
        Ok(Some((sso, user)))
    }

    /// What `/authorize` does with a checked request and the browser's SSO cookie: ask for a
    /// login (none, too old for `max_age`, or `prompt=login`), ask for consent (a client that
    /// is not first-party, or `prompt=consent`), or answer with a code. With `prompt=none`, a
    /// page is an error instead (`login_required`, `consent_required`; OIDC Core §3.1.2.6).
    ///
    /// Errors: `Redirect` (the `prompt=none` errors, `server_error`), `Unavailable`.
    pub async fn authorize(
        &self,
        req: &AuthorizationRequest,
        cookie: Option<&SsoCookie>,
    ) -> Result<Decision, AuthorizeError> {
        let now = now_ms();
        let live = self.live_sso(cookie, now).await.map_err(unavailable)?;
        let Some((sso, user)) = live else {
            return match req.prompt.none {
                true => Err(req.error("login_required", "the user is not signed in")),
                false => Ok(Decision::Login),
            };
        };
        let too_old = req
            .max_age
            .is_some_and(|m| now - sso.auth_time > m.saturating_mul(1000));
        // A `login_hint` or an `id_token_hint` naming someone else: that user signs in, not the
        // session's.
        let someone_else = req.login_hint.as_deref().is_some_and(|hint| {
            crate::Username::for_lookup(hint).map_or(true, |n| n.as_str() != user.username)
        }) || req
            .hint_sub
            .as_deref()
            .is_some_and(|sub| sub != user.id.to_string());
        // Step-up (OIDC Core §3.1.2.1 `acr_values`): a sign-in weaker than asked for, by a
        // user who has a factor that reaches it (any second factor for "2", a passkey for
        // "3"), signs in again, and the login asks for the factor.
        let weaker = match req.acr {
            Some(want) => {
                use tessera_proto::claims::acr;
                let have = acr::from_amr(sso.amr.split_ascii_whitespace());
                !acr::satisfies(Some(have), want) && {
                    let kinds = self
                        .store
                        .factor_kinds(user.id)
                        .await
                        .map_err(|e| unavailable(e.into()))?;
                    match want == acr::PHISHING_RESISTANT {
                        true => kinds.iter().any(|k| k == "passkey"),
                        false => !kinds.is_empty(),
                    }
                }
            }
            None => false,
        };
        if req.prompt.login || too_old || someone_else || weaker {
            return match req.prompt.none {
                true => Err(req.error("login_required", "the user must sign in again")),
                false => Ok(Decision::Login),
            };
        }
        if self
            .needs_consent(req, user.id)
            .await
            .map_err(unavailable)?
        {
            return match req.prompt.none {
                true => Err(req.error("consent_required", "the user must consent")),
                false => Ok(Decision::Consent {
                    user_id: user.id,
                    username: user.username,
                }),
            };
        }
        self.issue_code(req, &sso, now)
            .await
            .map(Decision::Code)
            .map_err(unavailable)
    }

    /// Whether the user is asked before `req`'s client gets a code: with `prompt=consent`, or
    /// for a client that is not first-party unless the user consented before to every scope
    /// it asks for now.
    pub(super) async fn needs_consent(
        &self,
        req: &AuthorizationRequest,
        user_id: Uuid,
    ) -> Result<bool, AuthError> {
        if req.prompt.consent {
            return Ok(true);
        }
        if req.first_party {
            return Ok(false);
        }
        let Some(held) = self.store.consent(user_id, &req.client_id).await? else {
            return Ok(true);
        };
        let asked = req.granted.scope.as_deref().unwrap_or_default();
        Ok(!asked
            .split(' ')
            .filter(|s| !s.is_empty())
            .all(|s| held.split(' ').any(|h| h == s)))
    }

    /// A new SSO session for `user` (as read with the credential: its `tokens_not_before` is
    /// the fence), who authenticated at `now` with `amr`, in place of the browser's old one
    /// (if any). After a second step, `challenge` is the login's (the mfa_token's digest): the
    /// session is opened only while it is stored. A login audit event.
    ///
    /// Errors: `InvalidCredentials` (the account changed since the credential was checked: a
    /// password change, a disable, a cut-off, or a factor change after the challenge),
    /// `StoreUnavailable`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn open_sso(
        &self,
        client: &ClientId,
        user: User,
        now: UnixMillis,
        amr: &str,
        meta: ClientMeta,
        old: Option<&SsoCookie>,
        challenge: Option<&str>,
        caller: &Caller,
    ) -> Result<(SsoSession, User, SsoCookie), AuthError> {
        let previous = match old {
            Some(old) => {
                let digest = token_digest(old.0.expose_secret());
                self.store.sso_session_by_token(&digest).await?
            }
            None => None,
        };
        let token = random_token()?;
        let s = &self.settings.sso;
        let absolute = now.plus(s.absolute_ttl);
        let mut sso = SsoSession {
            id: Uuid::now_v7(),
            user_id: user.id,
            token_hash: token_digest(token.expose_secret()),
            auth_time: now.0,
            amr: amr.into(),
            created_at: now.0,
            last_seen_at: now.0,
            idle_expires_at: now.plus(s.idle_ttl).min(absolute).0,
            absolute_expires_at: absolute.0,
            revoked_at: None,
            revoked_reason: None,
            ip: meta.ip,
            user_agent: meta.user_agent.map(|ua| ua.chars().take(512).collect()),
        };
        let fence = user.tokens_not_before;
        let opened = match previous {
            // The same user again (prompt=login, max_age): the session carries on, so that
            // its apps stay signed in and a logout still reaches all of them; only the cookie
            // token, the authentication time and the lifetimes are new.
            Some(p) if p.user_id == user.id && p.is_live(now.0) && p.created_at > fence => {
                sso.id = p.id;
                sso.created_at = p.created_at;
                self.store
                    .reauthenticate_sso_session(&sso, fence, challenge)
                    .await?
            }
            previous => {
                // Someone else signs in on this browser: the previous session ends, with its
                // apps.
                if let Some(p) = previous {
                    self.end_sso(&p, "replaced").await?;
                }
                self.store
                    .create_sso_session(&sso, fence, challenge)
                    .await?
            }
        };
        // The account changed while the credential was checked (invariant 2): a session
        // opened now would outlive the change that was to end it.
        if !opened {
            tracing::info!(user_id = %user.id, "login refused: the account changed while it was checked");
            return Err(self
                .login_failed(Some(user.id), client, "account_changed", caller)
                .await);
        }
        self.audit(
            caller,
            Event::LoginSucceeded,
            Record::user(user.id).client(client.as_str()),
        )
        .await;
        metrics::counter!("logins_total", "result" => "ok").increment(1);
        Ok((sso, user, SsoCookie(token)))
    }

    /// The user's answer on the consent page: with `allow`, the code; otherwise
    /// `access_denied` to the client. Only a live SSO session may answer, and only of the user
    /// the page was shown to (`shown_to`, the form's `account`; a form without it is refused).
    ///
    /// Errors: `Page` (no live SSO session, another user's, or a form without `account`),
    /// `Redirect` (`access_denied`), `Unavailable`.
    pub async fn consent(
        &self,
        req: &AuthorizationRequest,
        cookie: Option<&SsoCookie>,
        shown_to: Option<&str>,
        allow: bool,
    ) -> Result<Redirect, AuthorizeError> {
        let now = now_ms();
        let Some((sso, _user)) = self.live_sso(cookie, now).await.map_err(unavailable)? else {
            return Err(AuthorizeError::Page(
                "Your sign-in has ended. Start again from the application.".into(),
            ));
        };
        // A page shown to one user and answered after another signed in (in another tab):
        // the answer is not the signed-in user's (OIDC Core §3.1.2.4). A form without the
        // field says nothing of whom it was shown to.
        match shown_to {
            Some(u) if u == sso.user_id.to_string() => {}
            Some(_) => return Err(AuthorizeError::Page(
                "You signed in as another account since this page was shown. Start again from the application.".into(),
            )),
            None => return Err(AuthorizeError::Page(
                "This page cannot be answered: it does not say which account it was shown to. Start again from the application.".into(),
            )),
        }
        if !allow {
            return Err(req.error("access_denied", "the user denied the request"));
        }
        // Remembered: what was allowed before, and what is allowed now.
        let held = self
            .store
            .consent(sso.user_id, &req.client_id)
            .await
            .map_err(|e| unavailable(e.into()))?
            .unwrap_or_default();
        let mut scopes: Vec<&str> = held.split(' ').filter(|s| !s.is_empty()).collect();
        for s in req.granted.scope.as_deref().unwrap_or_default().split(' ') {
            if !s.is_empty() && !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        self.store
            .grant_consent(sso.user_id, &req.client_id, &scopes.join(" "), now)
            .await
            .map_err(|e| unavailable(e.into()))?;
        self.issue_code(req, &sso, now).await.map_err(unavailable)
    }
}
