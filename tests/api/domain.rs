//! The main use cases on `Auth` itself, over a migrated store and with no server: login,
//! rotation, logout and a role cut-off. What the HTTP tests prove through the wire, these
//! prove below it, so a failure here points at the domain and not at the edge.

use std::sync::Arc;
use std::time::Duration;

use figment::providers::Serialized;
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use tessera::auth::keys::MasterKey;
use tessera::auth::{Auth, AuthError, Caller, ClientMeta, TokenRequest, UserRef};
use tessera::config::Settings;
use tessera::store::Store;

use crate::helpers::{master_key, test_figment, Backend, Db, PASSWORD};
use crate::on_both;

on_both!(
    login_issues_a_pair_that_authenticates,
    a_wrong_password_and_an_unknown_user_are_the_same_refusal,
    refresh_rotates_and_reuse_revokes_the_session,
    logout_refuses_the_session_and_its_access_token,
    taking_a_role_away_cuts_off_earlier_tokens,
);

/// `Auth` on a fresh, migrated database of `backend`, with no HTTP in front.
struct Domain {
    auth: Auth,
    store: Arc<dyn Store>,
    _db: Db,
}

impl Domain {
    async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, |f| f).await
    }

    /// With settings layered on top of the test defaults.
    async fn start_with(backend: Backend, tweak: impl FnOnce(Figment) -> Figment) -> Option<Self> {
        let db = Db::create(backend).await?;
        let master = master_key();
        let settings = Settings::from_figment(tweak(test_figment(db.url(), &master))).unwrap();
        let store = tessera::store::connect(&settings.database).await.unwrap();
        store.migrate().await.unwrap();
        let key = MasterKey::from_base64(&SecretString::from(master)).unwrap();
        let auth = Auth::start(
            Arc::new(settings),
            store.clone(),
            key,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        auth.create_user(
            "alice",
            SecretString::from(PASSWORD),
            vec!["admin".into()],
            &Caller::default(),
        )
        .await
        .unwrap();
        Some(Domain {
            auth,
            store,
            _db: db,
        })
    }

    async fn login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<tessera::auth::TokenPair, AuthError> {
        self.auth
            .login(
                username,
                SecretString::from(password.to_string()),
                ClientMeta::default(),
                &self.auth.first_party(),
                &TokenRequest::default(),
                &Caller::default(),
            )
            .await
    }

    async fn refresh(&self, token: &SecretString) -> Result<tessera::auth::TokenPair, AuthError> {
        self.auth
            .refresh(
                token.clone(),
                &self.auth.first_party(),
                &TokenRequest::default(),
                &Caller::default(),
            )
            .await
    }
}

async fn login_issues_a_pair_that_authenticates(b: Backend) {
    let Some(d) = Domain::start(b).await else {
        return;
    };
    let pair = d.login("alice", PASSWORD).await.unwrap();
    let who = d
        .auth
        .authenticate(pair.access_token.expose_secret())
        .await
        .unwrap();
    assert_eq!(who.user.username, "alice");
    assert_eq!(who.user.roles, vec!["admin"]);
    // The session the token names is stored, live, for the first-party client.
    let session = d
        .store
        .session(who.claims.session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.user_id, who.user.id);
    assert_eq!(session.client_id, d.auth.first_party().as_str());
    assert!(session.revoked_at.is_none());
}

async fn a_wrong_password_and_an_unknown_user_are_the_same_refusal(b: Backend) {
    let Some(d) = Domain::start(b).await else {
        return;
    };
    let wrong = d
        .login("alice", "not the password at all")
        .await
        .unwrap_err();
    let unknown = d.login("nobody", PASSWORD).await.unwrap_err();
    assert!(matches!(wrong, AuthError::InvalidCredentials), "{wrong:?}");
    assert!(
        matches!(unknown, AuthError::InvalidCredentials),
        "{unknown:?}"
    );
    // No session was created by either.
    let alice = d.auth.user(UserRef::Name("alice")).await.unwrap();
    assert!(d
        .store
        .sessions_of_user(alice.id, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn refresh_rotates_and_reuse_revokes_the_session(b: Backend) {
    let Some(d) = Domain::start_with(b, |f| {
        f.merge(Serialized::default("sessions.reuse_grace", "1s"))
    })
    .await
    else {
        return;
    };
    let first = d.login("alice", PASSWORD).await.unwrap();
    let second = d.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(
        first.refresh_token.expose_secret(),
        second.refresh_token.expose_secret()
    );
    let sid = d
        .auth
        .authenticate(second.access_token.expose_secret())
        .await
        .unwrap()
        .claims
        .session_id;
    // Inside the grace window the spent token gets the same successor (invariant 1).
    let retried = d.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(
        retried.refresh_token.expose_secret(),
        second.refresh_token.expose_secret()
    );
    // After it, the spent token is a reuse: the whole session is revoked, its current
    // refresh token and access token with it.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(matches!(
        d.refresh(&first.refresh_token).await,
        Err(AuthError::InvalidRefreshToken)
    ));
    assert!(matches!(
        d.refresh(&second.refresh_token).await,
        Err(AuthError::InvalidRefreshToken)
    ));
    assert!(matches!(
        d.auth
            .authenticate(second.access_token.expose_secret())
            .await,
        Err(AuthError::InvalidToken)
    ));
    let session = d.store.session(sid).await.unwrap().unwrap();
    assert_eq!(
        session.revoked_reason.as_deref(),
        Some("refresh_token_reuse")
    );
}

async fn logout_refuses_the_session_and_its_access_token(b: Backend) {
    let Some(d) = Domain::start(b).await else {
        return;
    };
    let pair = d.login("alice", PASSWORD).await.unwrap();
    let access = pair.access_token.expose_secret().to_string();
    let sid = d
        .auth
        .authenticate(&access)
        .await
        .unwrap()
        .claims
        .session_id;
    d.auth
        .logout(
            Some(pair.refresh_token.clone()),
            Some(&access),
            &Caller::default(),
        )
        .await
        .unwrap();
    assert!(matches!(
        d.auth.authenticate(&access).await,
        Err(AuthError::InvalidToken)
    ));
    assert!(matches!(
        d.refresh(&pair.refresh_token).await,
        Err(AuthError::InvalidRefreshToken)
    ));
    let session = d.store.session(sid).await.unwrap().unwrap();
    assert_eq!(session.revoked_reason.as_deref(), Some("logout"));
}

async fn taking_a_role_away_cuts_off_earlier_tokens(b: Backend) {
    let Some(d) = Domain::start(b).await else {
        return;
    };
    let pair = d.login("alice", PASSWORD).await.unwrap();
    let access = pair.access_token.expose_secret().to_string();
    assert!(d.auth.authenticate_admin(&access).await.is_ok());
    let before = d.store.user_by_username("alice").await.unwrap().unwrap();
    let view = d
        .auth
        .set_roles(UserRef::Name("alice"), vec![], &Caller::default())
        .await
        .unwrap();
    assert!(view.roles.is_empty());
    // The token that carried the role is refused, and the stored cut-off moved forward.
    assert!(matches!(
        d.auth.authenticate(&access).await,
        Err(AuthError::InvalidToken)
    ));
    let after = d.store.user_by_username("alice").await.unwrap().unwrap();
    assert!(after.tokens_not_before > before.tokens_not_before);
    // The session stays: its next refresh carries the new roles.
    let next = d.refresh(&pair.refresh_token).await.unwrap();
    let who = d
        .auth
        .authenticate(next.access_token.expose_secret())
        .await
        .unwrap();
    assert!(who.user.roles.is_empty());
    assert!(matches!(
        d.auth
            .authenticate_admin(next.access_token.expose_secret())
            .await,
        Err(AuthError::InsufficientRole)
    ));
}
