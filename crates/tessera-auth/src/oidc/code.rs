//! Authorization codes: issued at `/authorize`, exchanged once at `/token` (RFC 6749 §4.1.3,
//! RFC 7636 §4.6, invariant 7).

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::request::is_pkce_value;
use super::{has_scope, random_token, token_digest, AuthorizationRequest, Redirect, CODE_TTL_MS};
use crate::audit::{Caller, Event, Record};
use crate::store::{
    AuthorizationCode, CodeExchange, Exchanged, Session, SsoSession, SubjectClaims, User,
};
use crate::time::UnixMillis;
use crate::{Auth, AuthError, ClientId, ClientMeta, Granted, TokenPair};

/// What a code exchange issues: the token pair, the ID token when `openid` was granted, and
/// whether the refresh token goes to the client (it may use `refresh_token`, and a public
/// client asked for `offline_access`).
#[derive(Debug)]
pub struct CodeGrant {
    pub pair: TokenPair,
    pub id_token: Option<SecretString>,
    pub refresh: bool,
}

/// What an ID token says of the sign-in it comes from (OIDC Core §2).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignIn<'a> {
    /// The `aud` and `azp`.
    pub client_id: &'a str,
    pub nonce: Option<&'a str>,
    /// The `sid`.
    pub sso_session_id: Uuid,
    /// When the user authenticated (ms).
    pub auth_time: i64,
    /// Space-separated RFC 8176 methods.
    pub amr: &'a str,
}

/// What a grant issues tokens for.
pub(crate) struct Issued<'a> {
    pub user: &'a User,
    pub subject: &'a SubjectClaims,
    pub session: &'a Session,
    pub granted: &'a Granted,
    pub sign_in: SignIn<'a>,
}

impl Auth {
    /// A new code for `req`, signed in as `sso`: stored as its digest, valid for 60 s.
    pub(crate) async fn issue_code(
        &self,
        req: &AuthorizationRequest,
        sso: &SsoSession,
        now: i64,
    ) -> Result<Redirect, AuthError> {
        let code = random_token()?;
        self.use_pushed(req).await?;
        self.store
            .insert_code(&AuthorizationCode {
                code_hash: token_digest(code.expose_secret()),
                client_id: req.client_id.clone(),
                redirect_uri: req.redirect_uri.clone(),
                code_challenge: req.code_challenge.clone(),
                nonce: req.nonce.clone(),
                scope: req.granted.scope.clone(),
                resource: req.granted.resource.clone(),
                sso_session_id: sso.id,
                user_id: sso.user_id,
                auth_time: sso.auth_time,
                amr: sso.amr.clone(),
                created_at: now,
                expires_at: now + CODE_TTL_MS,
                used_at: None,
                session_id: None,
                replayed_at: None,
            })
            .await?;
        let mut params = vec![("code", code.expose_secret().to_string())];
        if let Some(state) = &req.state {
            params.push(("state", state.clone()));
        }
        Ok(Redirect {
            redirect_uri: req.redirect_uri.clone(),
            response_mode: req.response_mode,
            params,
        })
    }

    /// The authorization code grant (RFC 6749 §4.1.3): a code, once, by the client it was
    /// issued to, with the same redirect URI and the PKCE verifier of its challenge (RFC 7636
    /// §4.6). A code presented again by its client, with its redirect URI and verifier, revokes
    /// the session its exchange created (§4.1.2); presented any other way it is refused and
    /// nothing changes, so that neither a code seen in a log revokes its client's tokens nor a
    /// wrong guess spends a code before its client uses it.
    ///
    /// Errors: `UnauthorizedClient` (the client may not use the grant), `InvalidCode`,
    /// `BadInput` (no `code_verifier` or `redirect_uri`), `Unavailable` (no key signs),
    /// `StoreUnavailable`.
    pub async fn exchange_code(
        &self,
        code: &SecretString,
        verifier: Option<&str>,
        redirect_uri: Option<&str>,
        client: &ClientId,
        meta: ClientMeta,
        caller: &Caller,
    ) -> Result<CodeGrant, AuthError> {
        self.check_grant(client, "authorization_code")?;
        let verifier = verifier.ok_or(AuthError::BadInput("missing code_verifier".into()))?;
        let redirect_uri =
            redirect_uri.ok_or(AuthError::BadInput("missing redirect_uri".into()))?;
        let digest = token_digest(code.expose_secret());
        // A malformed verifier can match no challenge; the code is left as it is.
        if !is_pkce_value(verifier) {
            return Err(AuthError::InvalidCode);
        }
        let challenge = token_digest(verifier);
        let now = UnixMillis::now();
        let mut session = self.new_session(Uuid::nil(), meta, client, &Granted::default(), now);
        let exchanged = self
            .store
            .exchange_code(&CodeExchange {
                code_hash: &digest,
                client_id: client.as_str(),
                redirect_uri,
                code_challenge: &challenge,
                now: now.0,
                session: &session,
            })
            .await?;
        let (issued, user) = match exchanged {
            Exchanged::Issued { code, user } => (*code, *user),
            Exchanged::Unknown => return Err(AuthError::InvalidCode),
            Exchanged::Refused => {
                tracing::info!("authorization code refused");
                return Err(AuthError::InvalidCode);
            }
            Exchanged::Replayed(c) => return Err(self.code_replayed(&c, caller).await),
        };
        let granted = Granted {
            scope: issued.scope.clone(),
            resource: issued.resource.clone(),
        };
        session.user_id = user.id;
        session.scope = granted.scope.clone();
        session.resource = granted.resource.clone();
        session.sso_session_id = Some(issued.sso_session_id);
        session.amr = Some(issued.amr.clone());
        self.revocations.session_live(session.id, user.id);
        let subject = SubjectClaims {
            roles: user.roles.clone(),
            claims: user.claims.clone(),
        };
        // Minted after the cut-off read under the fence, never at or before it.
        let now = UnixMillis(now.0.max(user.tokens_not_before + 1));
        let sign_in = SignIn {
            client_id: &issued.client_id,
            nonce: issued.nonce.as_deref(),
            sso_session_id: issued.sso_session_id,
            auth_time: issued.auth_time,
            amr: &issued.amr,
        };
        self.answer_grant(
            &Issued {
                user: &user,
                subject: &subject,
                session: &session,
                granted: &granted,
                sign_in,
            },
            client,
            now,
            caller,
        )
        .await
    }

    /// The answer of a grant that signed a user in through the hosted pages (a code, a device
    /// code): the token pair, the ID token when `openid` was granted, and whether the client
    /// gets the refresh token (it may use `refresh_token`, and a public client asked for
    /// `offline_access`). The grant is an audit event.
    ///
    /// Errors: `Unavailable` (no key signs), `Internal` (signing failed).
    pub(crate) async fn answer_grant(
        &self,
        i: &Issued<'_>,
        client: &ClientId,
        now: UnixMillis,
        caller: &Caller,
    ) -> Result<CodeGrant, AuthError> {
        let scope = i.granted.scope.as_deref();
        let pair = self.issue(i.subject, i.session, i.granted, now)?;
        let id_token = match has_scope(scope, "openid") {
            true => Some(self.id_token(
                &i.sign_in,
                scope,
                i.user,
                pair.access_token.expose_secret(),
                now,
            )?),
            false => None,
        };
        let public = self
            .client_settings(client.as_str())
            .is_some_and(|c| c.public);
        let refresh = self.check_grant(client, "refresh_token").is_ok()
            && (!public || has_scope(scope, "offline_access"));
        self.audit(
            caller,
            Event::CodeExchanged,
            Record::session(i.user.id, i.session.id).client(client.as_str()),
        )
        .await;
        Ok(CodeGrant {
            pair,
            id_token,
            refresh,
        })
    }

    /// A code came back after its exchange: the session it produced ends (RFC 6749 §4.1.2).
    async fn code_replayed(&self, code: &AuthorizationCode, caller: &Caller) -> AuthError {
        tracing::warn!(client_id = %code.client_id, "authorization code replayed");
        if let Some(id) = code.session_id {
            if let Err(e) = self
                .end_sessions(crate::Ending::Session(id), "code_replayed")
                .await
            {
                return e;
            }
        }
        let record = match code.session_id {
            Some(s) => Record::session(code.user_id, s),
            None => Record::user(code.user_id),
        };
        self.audit(caller, Event::CodeReplayed, record.client(&code.client_id))
            .await;
        AuthError::InvalidCode
    }
}
