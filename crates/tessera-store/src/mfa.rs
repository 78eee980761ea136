//! Second factors: TOTP factors, recovery codes and the mfa_tokens of logins waiting for a
//! second factor (invariant 7). Times are milliseconds since the Unix epoch.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreResult;

/// A user's second factor.
#[derive(Clone)]
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
pub struct MfaFactor {
    pub id: Uuid,
    pub user_id: Uuid,
    /// `totp`.
    pub kind: String,
    /// The user's name for it ("phone").
    pub name: String,
    /// The TOTP secret sealed under the master key (bound to `totp:<id>`). Never logged.
    pub secret_enc: Vec<u8>,
    /// When a valid code confirmed it; until then it does not count.
    pub confirmed_at: Option<i64>,
    /// The last RFC 6238 time step accepted (-1: none).
    pub last_used_step: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl std::fmt::Debug for MfaFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaFactor")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("secret_enc", &"[sealed]")
            .field("confirmed_at", &self.confirmed_at)
            .field("last_used_step", &self.last_used_step)
            .field("created_at", &self.created_at)
            .field("last_used_at", &self.last_used_at)
            .finish()
    }
}

/// A password login waiting for its second factor.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
pub struct MfaChallenge {
    /// base64url SHA-256 of the mfa_token.
    pub token_hash: String,
    pub user_id: Uuid,
    pub client_id: String,
    pub scope: Option<String>,
    pub resource: Option<String>,
    /// The user's `tokens_not_before` read with the password: the session is created only if
    /// it has not moved since (a password reset in between ends the login).
    pub fence: i64,
    /// Wrong second factors presented with it so far.
    pub failures: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// Second factors (invariant 7).
#[async_trait]
pub trait MfaStore {
    /// Stores a new factor if the user holds fewer than `max_factors`; `false` otherwise.
    async fn insert_factor(&self, factor: &MfaFactor, max_factors: i64) -> StoreResult<bool>;
    /// The user's factors, confirmed or not, oldest first.
    async fn factors_of_user(&self, user_id: Uuid) -> StoreResult<Vec<MfaFactor>>;
    /// Whether the user has a confirmed factor.
    async fn has_factor(&self, user_id: Uuid) -> StoreResult<bool>;
    /// Takes TOTP time step `step` for the factor: `true` only if it is later than the last
    /// one taken (one conditional UPDATE: of parallel requests with one code, one wins). With
    /// `confirm`, the factor must be unconfirmed and becomes confirmed; without, it must be
    /// confirmed already.
    async fn take_totp_step(
        &self,
        id: Uuid,
        step: i64,
        confirm: bool,
        now: i64,
    ) -> StoreResult<bool>;
    /// `false` when the user has no such factor.
    async fn rename_factor(&self, user_id: Uuid, id: Uuid, name: &str) -> StoreResult<bool>;
    /// `false` when the user has no such factor.
    async fn delete_factor(&self, user_id: Uuid, id: Uuid) -> StoreResult<bool>;
    /// Deletes every factor and recovery code of the user; returns how many factors.
    async fn delete_factors(&self, user_id: Uuid) -> StoreResult<u64>;
    /// Every factor's id and sealed secret (for `keys rekey`).
    async fn sealed_factors(&self) -> StoreResult<Vec<(Uuid, Vec<u8>)>>;
    /// Replaces sealed secrets, each only if it is still `old` (`(id, old, new)`).
    async fn reseal_factors(&self, reseal: &[(Uuid, Vec<u8>, Vec<u8>)]) -> StoreResult<()>;
    /// Replaces the user's recovery codes (their digests) in one transaction.
    async fn replace_recovery_codes(
        &self,
        user_id: Uuid,
        hashes: &[String],
        now: i64,
    ) -> StoreResult<()>;
    /// Uses the code with this digest: `true` once, if it is the user's and unused.
    async fn use_recovery_code(&self, user_id: Uuid, hash: &str, now: i64) -> StoreResult<bool>;
    /// How many unused recovery codes the user has.
    async fn recovery_codes_left(&self, user_id: Uuid) -> StoreResult<i64>;
    /// Stores the challenge if its user has a confirmed factor (one statement: a login needs
    /// no second read); `false` when they have none, and nothing is stored.
    async fn insert_challenge(&self, c: &MfaChallenge) -> StoreResult<bool>;
    /// The unused, unexpired challenge with this digest and fewer than `max_failures`, whose
    /// user is enabled and has the cut-off the challenge was made under.
    async fn challenge(
        &self,
        token_hash: &str,
        now: i64,
        max_failures: i64,
    ) -> StoreResult<Option<MfaChallenge>>;
    /// Counts a wrong second factor against it.
    async fn challenge_failed(&self, token_hash: &str) -> StoreResult<()>;
    /// Uses it up: `true` once, if it was unused, unexpired and has fewer than
    /// `max_failures` wrong factors.
    async fn take_challenge(
        &self,
        token_hash: &str,
        now: i64,
        max_failures: i64,
    ) -> StoreResult<bool>;
}
