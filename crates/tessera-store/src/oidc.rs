//! The OpenID Provider's records: SSO sessions and authorization codes, and what the store
//! can do with them. Times are milliseconds since the Unix epoch.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreResult;

/// A browser's login at the hosted pages (the SSO session). Its cookie holds a random token;
/// only that token's digest is stored. Serialised, it is what the admin API shows of it
/// (`SsoSessionView`): never the digest, which its `Debug` leaves out too.
#[derive(Clone, serde::Serialize)]
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct SsoSession {
    /// The session id, the `sid` of ID tokens and logout tokens.
    pub id: Uuid,
    /// Its user.
    pub user_id: Uuid,
    /// base64url SHA-256 of the cookie's token.
    #[serde(skip)]
    pub token_hash: String,
    /// When the user authenticated (OIDC `auth_time`, in ms since the epoch).
    pub auth_time: i64,
    /// The authentication methods used (RFC 8176), e.g. `pwd`: stored space-separated, shown
    /// as a list.
    #[serde(serialize_with = "space_separated")]
    #[cfg_attr(feature = "schema", schema(value_type = Vec<String>))]
    pub amr: String,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// The last authorization it served.
    pub last_seen_at: i64,
    /// It ends if unused by then.
    pub idle_expires_at: i64,
    /// It ends then in any case.
    pub absolute_expires_at: i64,
    /// When it was ended, if it was.
    pub revoked_at: Option<i64>,
    /// Why (`logout`, `replaced`, `revoked_by_admin`, …).
    pub revoked_reason: Option<String>,
    /// The client address at login.
    pub ip: Option<String>,
    /// The user agent at login.
    pub user_agent: Option<String>,
}

impl std::fmt::Debug for SsoSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoSession")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("auth_time", &self.auth_time)
            .field("amr", &self.amr)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// A space-separated list (`amr`) as a JSON array of its members.
fn space_separated<S: serde::Serializer>(list: &str, to: S) -> Result<S::Ok, S::Error> {
    to.collect_seq(list.split(' ').filter(|m| !m.is_empty()))
}

impl SsoSession {
    /// Neither revoked nor past its idle or absolute expiry at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.idle_expires_at > now && self.absolute_expires_at > now
    }
}

/// An authorization code (RFC 6749 §4.1.2), bound to everything its request was granted for.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
pub struct AuthorizationCode {
    /// base64url SHA-256 of the code.
    pub code_hash: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// The PKCE S256 challenge (RFC 7636 §4.2).
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub sso_session_id: Uuid,
    pub user_id: Uuid,
    pub auth_time: i64,
    pub amr: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// When it was exchanged.
    pub used_at: Option<i64>,
    /// The refresh session its exchange created (chosen before the exchange).
    pub session_id: Option<Uuid>,
    /// When it was first presented again after its exchange.
    pub replayed_at: Option<i64>,
}

/// A code exchange to make (`CodeStore::exchange_code`).
#[derive(Debug, Clone, Copy)]
pub struct CodeExchange<'a> {
    pub code_hash: &'a str,
    /// The authenticated client.
    pub client_id: &'a str,
    /// The `redirect_uri` sent with the exchange.
    pub redirect_uri: &'a str,
    /// The S256 of the `code_verifier` sent.
    pub code_challenge: &'a str,
    pub now: i64,
    /// The session to create; its user, scope, resource and SSO session are the code's.
    pub session: &'a crate::Session,
}

/// What a code exchange did.
#[derive(Debug, Clone)]
pub enum Exchanged {
    /// The first use, bound as presented: the session exists, for this user (read under the
    /// fence) and the code.
    Issued {
        code: Box<AuthorizationCode>,
        user: Box<crate::User>,
    },
    /// Expired, or its user or SSO session ended: no session, and the code is spent.
    Refused,
    /// Used before, and presented again by its client as it was bound (now marked replayed):
    /// what it produced must be revoked.
    Replayed(Box<AuthorizationCode>),
    /// No such code, or not presented as it was bound (another client, redirect URI or
    /// verifier): nothing changed, and an unused code still works for its client.
    Unknown,
}

/// SSO sessions.
#[async_trait]
pub trait SsoStore {
    /// Inserts `s` only while its user is enabled and their cut-off (`tokens_not_before`) is
    /// still `fence`, the one read with the credential, and, after a second step, while the
    /// login's challenge (`challenge`, the mfa_token's digest) is stored (invariant 2).
    /// `false`: nothing inserted (the account changed since the credential was checked).
    async fn create_sso_session(
        &self,
        s: &SsoSession,
        fence: i64,
        challenge: Option<&str>,
    ) -> StoreResult<bool>;
    /// The session whose cookie token has this digest, live or not.
    async fn sso_session_by_token(&self, token_hash: &str) -> StoreResult<Option<SsoSession>>;
    /// The session whose cookie token has this digest, live or not, with its user and
    /// whether the user has a confirmed second factor.
    async fn sso_session_with_user(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<(SsoSession, crate::User, bool)>>;
    async fn sso_session(&self, id: Uuid) -> StoreResult<Option<SsoSession>>;
    /// Records a use: `last_seen_at = now`, and the idle expiry moved to `idle_expires_at`
    /// (never past the absolute expiry).
    async fn touch_sso_session(&self, id: Uuid, now: i64, idle_expires_at: i64) -> StoreResult<()>;
    /// The same user signed in again on the browser of a live session: it carries on under a
    /// new cookie token (no fixation), with the new `auth_time`, methods and lifetimes; under
    /// the same conditions as `create_sso_session`. `false`: unchanged (it ended, or the
    /// account changed since the credential was checked).
    async fn reauthenticate_sso_session(
        &self,
        s: &SsoSession,
        fence: i64,
        challenge: Option<&str>,
    ) -> StoreResult<bool>;
    /// Ends it; `false` when it had ended already.
    async fn revoke_sso_session(&self, id: Uuid, reason: &str, now: i64) -> StoreResult<bool>;
    /// The refresh sessions created through it that are still live, which end with it.
    async fn sessions_of_sso(&self, id: Uuid, now: i64) -> StoreResult<Vec<Uuid>>;
    /// Every client a refresh session was created for through it, once each.
    async fn clients_of_sso(&self, id: Uuid) -> StoreResult<Vec<String>>;
    /// The user's SSO sessions, newest first (live or not, until purged).
    async fn sso_sessions_of_user(&self, user_id: Uuid, limit: u32)
        -> StoreResult<Vec<SsoSession>>;
    /// The scope `user_id` consented to for `client_id`, if any (space-separated).
    async fn consent(&self, user_id: Uuid, client_id: &str) -> StoreResult<Option<String>>;
    /// Records consent to `scope` (replacing what was recorded).
    async fn grant_consent(
        &self,
        user_id: Uuid,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> StoreResult<()>;
}

/// A logout token to deliver to a client (Back-Channel Logout 1.0 §2.5), as durable work.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
pub struct LogoutDelivery {
    /// Also the logout token's `jti`.
    pub id: Uuid,
    pub client_id: String,
    /// The client's `backchannel_logout_uri`.
    pub uri: String,
    /// The token's `sub`.
    pub user_id: Uuid,
    /// The token's `sid`.
    pub sso_session_id: Uuid,
    pub created_at: i64,
    /// Attempts made so far, this one included once claimed.
    pub attempts: i64,
    pub next_attempt_at: i64,
    /// Until when the replica that claimed it holds it.
    pub locked_until: i64,
    pub delivered_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub last_error: Option<String>,
}

/// Back-channel logout deliveries (invariant 10).
#[async_trait]
pub trait DeliveryStore {
    async fn enqueue_deliveries(&self, deliveries: &[LogoutDelivery]) -> StoreResult<()>;
    /// Claims up to `limit` due deliveries until `lease_until`, counting the attempt: each is
    /// claimed by one replica at a time (`FOR UPDATE SKIP LOCKED` on Postgres; SQLite has one
    /// writer), and one whose replica died is claimed again when its lease ends.
    async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<LogoutDelivery>>;
    async fn delivery_done(&self, id: Uuid, now: i64) -> StoreResult<()>;
    /// A failed attempt: tried again at `next_attempt_at`, or with `None` given up.
    async fn delivery_failed(
        &self,
        id: Uuid,
        next_attempt_at: Option<i64>,
        error: &str,
        now: i64,
    ) -> StoreResult<()>;
}

/// Authorization codes (invariant 7) and pushed authorization requests (RFC 9126).
#[async_trait]
pub trait CodeStore {
    /// Stores a pushed request's parameters (a JSON object) under the digest of its URI.
    async fn push_request(
        &self,
        uri_hash: &str,
        client_id: &str,
        params: &str,
        expires_at: i64,
    ) -> StoreResult<()>;
    /// The parameters of a pushed request of `client_id` that has not expired at `now`, left
    /// in place (a reload of the page may read them again, RFC 9126 §4).
    async fn pushed_request(
        &self,
        uri_hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<String>>;
    /// Takes a pushed request of `client_id` that has not expired at `now`: it is deleted in
    /// the same statement, so it is used once. Returns its parameters.
    async fn take_pushed_request(
        &self,
        uri_hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<String>>;
    async fn insert_code(&self, code: &AuthorizationCode) -> StoreResult<()>;
    /// The whole exchange of a code, in one transaction (invariant 7): marks it used when it
    /// is presented as it was bound (client, redirect URI, PKCE challenge), and creates `x.session` for its user under the user row's
    /// fence, with the code's scope, resource and SSO session. A replay cannot slip between
    /// the mark and the session: it waits for the transaction (a row lock on Postgres, the
    /// write lock on SQLite) and then finds the session to revoke.
    async fn exchange_code(&self, x: &CodeExchange<'_>) -> StoreResult<Exchanged>;
}

/// A device authorization (RFC 8628 §3.2), pending until the user answers.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
pub struct DeviceCode {
    /// base64url SHA-256 of the device code.
    pub device_code_hash: String,
    /// Normalised: 8 letters, no separator.
    pub user_code: String,
    pub client_id: String,
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// The least wait between two polls (ms).
    pub interval_ms: i64,
    pub last_polled_at: i64,
    /// `pending`, `approved`, `denied` or `used`.
    pub status: String,
    pub user_id: Option<Uuid>,
    pub sso_session_id: Option<Uuid>,
    pub auth_time: Option<i64>,
    pub amr: Option<String>,
    pub session_id: Option<Uuid>,
}

/// Who approved a device code, from their SSO session.
#[derive(Debug, Clone)]
pub struct DeviceApproval<'a> {
    pub user_id: Uuid,
    pub sso_session_id: Uuid,
    pub auth_time: i64,
    pub amr: &'a str,
}

/// Device codes (RFC 8628, invariant 7).
#[async_trait]
pub trait DeviceStore {
    async fn insert_device_code(&self, code: &DeviceCode) -> StoreResult<()>;
    /// The pending, unexpired code with this user code.
    async fn pending_device_code(
        &self,
        user_code: &str,
        now: i64,
    ) -> StoreResult<Option<DeviceCode>>;
    /// Approves (with `Some`) or denies a pending, unexpired code; `false` if it was not.
    async fn decide_device_code(
        &self,
        user_code: &str,
        approval: Option<&DeviceApproval<'_>>,
        now: i64,
    ) -> StoreResult<bool>;
    async fn device_code(&self, hash: &str) -> StoreResult<Option<DeviceCode>>;
    /// Records a poll at `now` if the interval has passed since the last one; `false` when
    /// it has not (the device polls too fast), and the interval then grows by `slow_down_ms`,
    /// counted from this poll (RFC 8628 §3.5).
    async fn poll_device_code(&self, hash: &str, now: i64, slow_down_ms: i64) -> StoreResult<bool>;
    /// Marks an approved code used, with the session it produces: of concurrent polls one
    /// gets the code.
    async fn use_device_code(
        &self,
        hash: &str,
        session_id: Uuid,
    ) -> StoreResult<Option<DeviceCode>>;
}
