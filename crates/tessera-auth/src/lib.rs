//! The domain: logins, sessions, access tokens, keys. It knows neither HTTP nor SQL: it imports
//! nothing from axum, http or tower (`.ci/run` checks), and fails with `AuthError`.
//!
//! `Auth` is the one service the HTTP layer and the CLI call. Its fields are private; each
//! public method is one use case, kept in the file of its capability:
//! - `login`: credentials, the throttle, password rules;
//! - `sessions`: refresh, logout, logout-all, RFC 7009 revocation, issuing token pairs;
//! - `access`: verifying access tokens, RFC 7662 introspection;
//! - `feed`: the revocation feed for stateless verifiers;
//! - `users`: account administration;
//! - `clients`: client authentication and the first-party/confidential policy;
//! - `oidc`: the OpenID Provider: authorization requests, the SSO session, codes, ID tokens;
//! - `grants`: scopes and resources (RFC 6749 §3.3, RFC 8707): what a token request is granted;
//! - `keys`: the signing keys, their lifecycle, and their use cases (the JWKS, manual
//!   rotation, imported keys, rekey);
//! - `upkeep`: the background loop (key reloads and rotation, revocation sync, purges).
//!
//! Every write that revokes something goes through one of the private helpers below, which
//! also update the in-memory revocation state, so that no use case can forget to (invariant
//! 2): `end_sessions` (logout, logout everywhere, revocation), `user_changed` (a write to a
//! user row that ended sessions), `deny` (a denylisted access token) and, in `users`,
//! `cut_off_after` (a role or claim taken away). The one revocation the store makes on its own,
//! reuse detection inside the rotation statement, is reported through `sessions_ended`.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod access;
pub mod accounts;
pub mod audit;
mod catalog;
pub mod clients;
pub mod email;
mod error;
mod feed;
pub mod grants;
pub mod import;
pub mod keys;
pub mod login;
pub mod me;
pub mod mfa;
mod observe;
pub mod oidc;
pub mod passkey;
pub mod password;
pub mod refresh_token;
pub mod revocation;
pub mod sessions;
pub mod throttle;
pub mod tokens;
mod upkeep;
pub mod username;
pub mod users;
mod verified;

// The crates below, under the names the domain uses for them.
use tessera_config as config;
use tessera_store as store;
use tessera_store::time;

use std::future::Future;
use std::sync::Arc;

use secrecy::SecretString;
use uuid::Uuid;

use crate::config::Settings;
pub use crate::store::{
    AuditEvent, AuditQuery, FeedKind, FeedPage, FeedPosition, FeedStart, UserQuery,
};
use crate::store::{RevokedToken, Store, StoreError};
pub use crate::store::{SessionView, UserView};
use crate::time::{now_ms, UnixMillis};
pub use access::{Authenticated, Introspection};
pub use audit::Caller;
pub use catalog::Catalog;
pub use clients::{ClientAuth, ClientId};
pub use error::AuthError;
pub use grants::{Granted, TokenRequest};
pub use keys::{Jwks, Rekeyed};
use keys::{Keys, MasterKey};
use password::Passwords;
use refresh_token::RefreshTokens;
use revocation::RevocationState;
use tokens::{Expect, VerifiedClaims};
pub use username::Username;
pub use users::UserRef;

/// A freshly issued pair of tokens.
#[derive(Debug)]
pub struct TokenPair {
    pub access_token: SecretString,
    /// Seconds.
    pub expires_in: i64,
    pub refresh_token: SecretString,
    /// Seconds until the session ends (idle or absolute expiry, whichever is first).
    pub refresh_expires_in: i64,
    /// The scope the access token carries (RFC 6749 §5.1); `None` when none was asked for.
    pub scope: Option<String>,
}

/// Where a login came from, recorded on the session.
#[derive(Debug, Default, Clone)]
pub struct ClientMeta {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// What `/readyz` reports.
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    /// The database answered a round trip.
    pub database: bool,
    /// A key signs now.
    pub signing_key: bool,
    /// The in-memory revocation state is fresh (otherwise checks read the database).
    pub revocation_state_trusted: bool,
}

impl Readiness {
    /// Ready to serve: the database answers and a key signs.
    pub fn ready(&self) -> bool {
        self.database && self.signing_key
    }
}

/// The authentication service. See the module documentation.
pub struct Auth {
    store: Arc<dyn Store>,
    passwords: Passwords,
    keys: Keys,
    refresh: RefreshTokens,
    settings: Arc<Settings>,
    /// In-memory revocation state (invariant 2 without a query per verification).
    revocations: RevocationState,
    /// The `[[resources]]` ids: the audiences besides `tokens.audience`.
    resource_ids: Vec<String>,
    /// The audit trail.
    audit: audit::AuditTrail,
    /// The login throttle (invariant 11).
    throttle: throttle::Throttle,
    /// How long a login attempt holds its throttle slot if it is never settled (its process
    /// died): as long as its request may run, plus a second.
    attempt_lease: std::time::Duration,
    /// The passkeys' relying party; `None`: passkeys are off.
    webauthn: Option<Arc<webauthn_rs::prelude::Webauthn>>,
    /// Wakes the outbox loop when a message is queued.
    mail_queued: tokio::sync::Notify,
    /// Access tokens that verified, by their exact bytes (`tokens.verified_cache`).
    verified: verified::VerifiedTokens,
    /// `token_checks_total{source}`.
    token_checks: observe::TokenChecks,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

/// Which sessions a revoking write ends.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// One session (logout, RFC 7009 revocation).
    Session(Uuid),
    /// Every session of a user, and every access token issued to them so far.
    AllOf(Uuid),
}

/// What a write to a user row did: the user's id, and the sessions it ended.
type UserWrite = Option<(Uuid, Vec<Uuid>)>;

impl Auth {
    /// Builds the service on a migrated store: loads the signing keys (creating the first one
    /// on an empty database) and starts the password hashing threads. `request_limit` is how
    /// long the caller waits for one request's answer. A login runs to its end even past
    /// that (the server does not cut off a write), so its throttle slot is leased for the
    /// limit plus its two bounded waits (the throttle's queue and the hashing's, each
    /// `password.queue_timeout`) and a second.
    ///
    /// Errors: `StoreUnavailable`, `NoSchema`, `Internal` (a key that cannot be generated or
    /// stored, threads that cannot start).
    pub async fn start(
        settings: Arc<Settings>,
        store: Arc<dyn Store>,
        master: MasterKey,
        request_limit: std::time::Duration,
    ) -> Result<Self, AuthError> {
        let attempt_lease =
            request_limit + 2 * settings.password.queue_timeout + std::time::Duration::from_secs(1);
        let k = &settings.keys;
        let keys = Keys::load(store.as_ref(), master, k.algorithm, k.rsa_bits, now_ms())
            .await
            .map_err(|e| match e {
                keys::KeyError::Store(s) => s.into(),
                other => AuthError::Internal(format!("signing keys: {other}")),
            })?;
        let refresh = RefreshTokens::new(keys.master().derive_hmac("refresh-token-v1"))
            .with_previous(keys.master().derive_previous_hmacs("refresh-token-v1"));
        let pw = settings.password.clone();
        let passwords = tokio::task::spawn_blocking(move || Passwords::new(&pw))
            .await
            .map_err(|e| AuthError::Internal(format!("password hasher: {e}")))?
            .map_err(|e| AuthError::Internal(format!("password hasher: {e}")))?;
        let revocations = RevocationState::new(
            settings.revocation.cache,
            settings.revocation.max_lag,
            crate::time::millis(settings.token_horizon()),
            crate::time::millis(settings.tokens.leeway),
        );
        let resource_ids = settings.resources.iter().map(|r| r.id.clone()).collect();
        let webauthn = passkey::relying_party(&settings)?.map(Arc::new);
        Ok(Self {
            webauthn,
            mail_queued: tokio::sync::Notify::new(),
            verified: verified::VerifiedTokens::new(settings.tokens.verified_cache),
            token_checks: observe::TokenChecks::new(),
            audit: audit::AuditTrail::new(store.clone(), settings.audit.store_refreshes),
            throttle: throttle::Throttle::new(settings.throttle.clone()),
            store,
            passwords,
            keys,
            refresh,
            settings,
            revocations,
            resource_ids,
            attempt_lease,
        })
    }

    /// Records a security event (see `audit`).
    async fn audit(&self, caller: &Caller, event: audit::Event, record: audit::Record) {
        self.audit.record(caller, event, record).await
    }

    /// Writes audit rows in batches until `stop_audit`; the server runs it alongside `upkeep`.
    pub async fn run_audit_writer(&self) {
        self.audit.run_writer().await
    }

    /// Has the audit writer write what is queued and stop.
    pub fn stop_audit(&self) {
        self.audit.stop()
    }

    /// A page of the audit trail, oldest first (`GET /admin/audit`), and the cursor of the
    /// next page when there is one. Events of the last `audit::SETTLE` are left out, so that a
    /// client following the cursor never passes a row that a replica writes a little late.
    /// `query.limit` is 1 to `users::MAX_PAGE`; `query.before` is set here.
    ///
    /// Errors: `BadInput` (limit), `StoreUnavailable`.
    pub async fn audit_events(
        &self,
        query: &crate::store::AuditQuery,
    ) -> Result<(Vec<crate::store::AuditEvent>, Option<Uuid>), AuthError> {
        if !(1..=users::MAX_PAGE).contains(&query.limit) {
            return Err(AuthError::BadInput(
                format!("limit must be 1 to {}", users::MAX_PAGE).into(),
            ));
        }
        let mut q = query.clone();
        q.before = now_ms() - crate::time::millis(audit::SETTLE);
        // One more than asked: whether a next page exists.
        q.limit += 1;
        let mut events = self.audit.page(&q).await?;
        let more = events.len() > query.limit as usize;
        events.truncate(query.limit as usize);
        let next = more.then(|| events.last().map(|e| e.id)).flatten();
        Ok((events, next))
    }

    /// The clock of requests other than logins, which the hashing threads read (see
    /// `password::Activity`); the HTTP edge notes every such request on it.
    pub fn activity(&self) -> password::Activity {
        self.passwords.activity().clone()
    }

    /// Whether the server can serve: the database answers within `READINESS_PING` (a stalled
    /// database is not ready, and the probe gets its answer before its own timeout) and a key
    /// signs now.
    pub async fn readiness(&self) -> Readiness {
        const READINESS_PING: std::time::Duration = std::time::Duration::from_secs(2);
        let ping = tokio::time::timeout(READINESS_PING, self.store.ping()).await;
        Readiness {
            database: matches!(ping, Ok(Ok(()))),
            signing_key: self.keys.ring().active().is_some(),
            revocation_state_trusted: self.revocations.trusted(),
        }
    }

    /// What Tessera's own endpoints accept: tokens for `tokens.audience`.
    fn expect(&self) -> Expect<'_> {
        Expect {
            issuer: &self.settings.tokens.issuer,
            audience: &self.settings.tokens.audience,
            also: &[],
            leeway_secs: self.settings.tokens.leeway.as_secs(),
        }
    }

    /// `Unavailable` (503, which the client retries) when no signing key is active at `now`
    /// (ms): the master key opens none (a wrong key, a missed step of a rotation). Checked
    /// before a request spends anything it could not answer with tokens.
    fn require_signer(&self, now: i64) -> Result<(), AuthError> {
        match self.keys.ring().signer_at(now) {
            Some(_) => Ok(()),
            None => Err(AuthError::Unavailable("no active signing key")),
        }
    }

    /// What introspection and revocation accept: tokens for any audience Tessera mints for
    /// (`tokens.audience` and every `[[resources]]` id).
    fn expect_any_audience(&self) -> Expect<'_> {
        Expect {
            issuer: &self.settings.tokens.issuer,
            audience: &self.settings.tokens.audience,
            also: &self.resource_ids,
            leeway_secs: self.settings.tokens.leeway.as_secs(),
        }
    }

    /// Revokes one session in the store and in the revocation state; `true` when this call
    /// ended it, `false` when it had ended before (or a parallel request ended it first), so
    /// that exactly one ending is audited.
    async fn end_one_session(&self, id: Uuid, reason: &str) -> Result<bool, AuthError> {
        let ended = self.store.revoke_session(id, reason, now_ms()).await?;
        self.sessions_ended(&[id]);
        Ok(ended)
    }

    /// Revokes sessions in the store and in the revocation state. `AllOf` also cuts off every
    /// access token of the user; it fails with `UserNotFound` for an unknown user.
    async fn end_sessions(&self, which: Ending, reason: &str) -> Result<(), AuthError> {
        let now = now_ms();
        match which {
            Ending::Session(id) => {
                self.end_one_session(id, reason).await?;
            }
            Ending::AllOf(user_id) => {
                self.user_changed(async {
                    let ended = self.store.revoke_user(user_id, reason, now).await?;
                    Ok(ended.map(|sessions| (user_id, sessions)))
                })
                .await?;
                self.end_sso_of_user(user_id, reason).await?;
            }
        }
        Ok(())
    }

    /// Runs a store write to a user row, then makes the revocation state forget the row and
    /// learn the sessions the write ended. `UserNotFound` when the write found no user.
    async fn user_changed(
        &self,
        write: impl Future<Output = Result<UserWrite, StoreError>>,
    ) -> Result<Uuid, AuthError> {
        let (id, ended) = write.await?.ok_or(AuthError::UserNotFound)?;
        self.sessions_ended(&ended);
        self.revocations.invalidate_user(id);
        Ok(id)
    }

    /// Tells the revocation state about sessions the store has just revoked.
    fn sessions_ended(&self, ids: &[Uuid]) {
        self.revocations.revoke_sessions(ids);
    }

    /// Denylists a verified access token until its `exp` plus the leeway; `true` when this
    /// call put it on the denylist (`false`: it was there already).
    async fn deny(&self, c: &VerifiedClaims, reason: &str) -> Result<bool, AuthError> {
        let expires_at = UnixMillis::from_secs(c.claims.exp).0;
        let denied = self
            .store
            .revoke_token(&RevokedToken {
                jti: c.claims.jti.to_string(),
                user_id: c.user_id,
                session_id: Some(c.session_id),
                expires_at,
                revoked_at: now_ms(),
                reason: reason.into(),
            })
            .await?;
        self.revocations.revoke_jti(&c.claims.jti, expires_at);
        Ok(denied)
    }

    /// Maps a store error; one that says the database is unreachable also stops the in-memory
    /// revocation state from being trusted until its next successful sync (fail closed).
    fn db_error(&self, e: StoreError) -> AuthError {
        if matches!(e, StoreError::Unavailable(_)) {
            self.revocations.distrust();
        }
        e.into()
    }
}
