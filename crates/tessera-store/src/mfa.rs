//! Second factors: TOTP factors, passkeys and recovery codes (`MfaStore`), and the second
//! step of a login (`ChallengeStore`: the mfa_tokens of logins waiting for a second factor,
//! and WebAuthn ceremonies; invariant 7). Times are milliseconds since the Unix epoch.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreResult;

/// A user's second factor.
#[derive(Clone)]
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
pub struct MfaFactor {
    pub id: Uuid,
    pub user_id: Uuid,
    /// `totp` or `passkey`.
    pub kind: String,
    /// The user's name for it ("phone").
    pub name: String,
    /// The TOTP secret sealed under the master key (bound to `totp:<id>`); empty for a
    /// passkey. Never logged.
    pub secret_enc: Vec<u8>,
    /// When a valid code confirmed it; until then it does not count.
    pub confirmed_at: Option<i64>,
    /// The last RFC 6238 time step accepted (-1: none).
    pub last_used_step: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// A passkey's credential id (base64url), unique across accounts.
    pub credential_id: Option<String>,
    /// A passkey's credential as webauthn-rs keeps it (JSON: public key, counter, flags).
    pub credential: Option<String>,
    /// A passkey's last signature counter (0: the authenticator keeps none).
    pub sign_count: i64,
    /// A passkey's backup eligibility and state (a synced passkey), as last asserted.
    pub backup_eligible: bool,
    pub backup_state: bool,
}

impl MfaFactor {
    /// A TOTP factor of `user_id`, its secret sealed (`secret_enc`), not yet confirmed.
    pub fn new_totp(
        id: Uuid,
        user_id: Uuid,
        name: String,
        secret_enc: Vec<u8>,
        created_at: i64,
    ) -> Self {
        MfaFactor {
            id,
            user_id,
            kind: "totp".into(),
            name,
            secret_enc,
            confirmed_at: None,
            last_used_step: -1,
            created_at,
            last_used_at: None,
            credential_id: None,
            credential: None,
            sign_count: 0,
            backup_eligible: false,
            backup_state: false,
        }
    }
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
            .field("credential_id", &self.credential_id)
            .field("sign_count", &self.sign_count)
            .field("backup_eligible", &self.backup_eligible)
            .field("backup_state", &self.backup_state)
            .finish_non_exhaustive()
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

/// What a WebAuthn ceremony is for. (A passkey as the second step of a password login keeps
/// its state on the login's `mfa_challenges` row instead: `put_challenge_passkey`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyPurpose {
    /// A user adding a passkey.
    Register,
}

impl CeremonyPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            CeremonyPurpose::Register => "register",
        }
    }
}

/// The server half of a WebAuthn ceremony between its two calls.
#[derive(Clone)]
#[cfg_attr(feature = "sql", derive(sqlx::FromRow))]
pub struct Ceremony {
    /// base64url SHA-256 of the ceremony's opaque id (or of the login's mfa_token).
    pub id_hash: String,
    /// `CeremonyPurpose::as_str`.
    pub purpose: String,
    /// The user it is for (none for a passwordless login).
    pub user_id: Option<Uuid>,
    /// The new passkey's name (registration).
    pub name: Option<String>,
    /// webauthn-rs's state (JSON), holding the challenge.
    pub state: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for Ceremony {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ceremony")
            .field("purpose", &self.purpose)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
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
    /// Replaces the user's recovery codes (their digests) in one transaction, which holds the
    /// user's row (Postgres `FOR UPDATE`, SQLite `BEGIN IMMEDIATE`): replacements at once end
    /// as one set, the last one's. With `if_none`, only when the user holds no codes (the set
    /// a first factor brings: of two first factors at once, one brings it). `false` when
    /// nothing was replaced.
    async fn replace_recovery_codes(
        &self,
        user_id: Uuid,
        hashes: &[String],
        now: i64,
        if_none: bool,
    ) -> StoreResult<bool>;
    /// Uses the code with this digest, once, to complete the login of the challenge
    /// `challenge_hash` (its mfa_token), which it uses up in the same transaction (as
    /// `ChallengeStore::take_challenge`, within `max_failures`): `Taken` if the code is the
    /// user's and was unused, `Spent` if it is the user's and was used before (a replay, or a
    /// parallel twin that won), `Unknown` if the user holds no such code, `ChallengeUsed` if
    /// the mfa_token was used meanwhile (a parallel step won). Only `Taken` changes anything:
    /// of parallel steps on one mfa_token, the one that completes it is the one whose code is
    /// spent.
    async fn use_recovery_code(
        &self,
        user_id: Uuid,
        hash: &str,
        now: i64,
        challenge_hash: &str,
        max_failures: i64,
    ) -> StoreResult<RecoveryCodeUse>;
    /// Makes a used code of the user's unused again: the login it was spent on was refused
    /// after the code was taken (`use_recovery_code`). A code deleted meanwhile stays gone.
    async fn return_recovery_code(&self, user_id: Uuid, hash: &str) -> StoreResult<()>;
    /// How many unused recovery codes the user has.
    async fn recovery_codes_left(&self, user_id: Uuid) -> StoreResult<i64>;
    /// The confirmed passkey with this credential id (base64url), whoever holds it.
    async fn passkey(&self, credential_id: &str) -> StoreResult<Option<MfaFactor>>;
    /// Stores a passkey's counter, flags and credential after an assertion, and when it was
    /// used; `false` when its counter moved meanwhile (a parallel assertion won).
    async fn passkey_used(&self, f: &MfaFactor, seen_count: i64, now: i64) -> StoreResult<bool>;
    /// Stores a confirmed passkey if its credential id is not registered yet and the user
    /// holds fewer than `max_factors`. `Ok(None)` on success; `Some(reason)` otherwise.
    async fn insert_passkey(
        &self,
        f: &MfaFactor,
        max_factors: i64,
    ) -> StoreResult<Option<PasskeyRefused>>;
    /// The kinds of the user's confirmed factors, sorted and distinct.
    async fn factor_kinds(&self, user_id: Uuid) -> StoreResult<Vec<String>>;
}

/// A guess counted against a login's challenge (`ChallengeStore::charge_challenge`).
#[derive(Debug, Default)]
pub struct Charged {
    /// The passkey state (webauthn-rs's, JSON) the guess took, when it asked for it and one
    /// was bound and unexpired.
    pub passkey_state: Option<String>,
}

/// The second step of a login: the challenges of logins waiting for a second factor (their
/// mfa_tokens) and the WebAuthn ceremonies (invariant 7).
#[async_trait]
pub trait ChallengeStore {
    /// Stores the challenge if its user has a confirmed factor, and answers the kinds of their
    /// confirmed factors (`passkey`, `totp`, in that order) in the same statement: a login
    /// needs no second read. `None` when they have none, and nothing is stored.
    async fn insert_challenge(&self, c: &MfaChallenge) -> StoreResult<Option<Vec<String>>>;
    /// Deletes every challenge of the user (their logins waiting for, or completing, a second
    /// step), after a change of their factors; see `SessionStore::create_session`.
    async fn drop_challenges_of_user(&self, user_id: Uuid) -> StoreResult<()>;
    /// The unused, unexpired challenge with this digest and fewer than `max_failures`, whose
    /// user is enabled and has the cut-off the challenge was made under.
    async fn challenge(
        &self,
        token_hash: &str,
        now: i64,
        max_failures: i64,
    ) -> StoreResult<Option<MfaChallenge>>;
    /// Counts one guess against it, before its factor is checked: `None` (nothing counted)
    /// when it is used, expired or has had `max_failures` guesses, so parallel requests check
    /// at most `max_failures` factors on one challenge. With `take_passkey` (the guess is a
    /// passkey assertion) the same statement takes the passkey state bound to it, if one is
    /// unexpired: spent as it is read, so one options call allows one assertion (invariant 7).
    async fn charge_challenge(
        &self,
        token_hash: &str,
        now: i64,
        max_failures: i64,
        take_passkey: bool,
    ) -> StoreResult<Option<Charged>>;
    /// Uses it up: `true` once, if it was unused, unexpired and had at most `max_failures`
    /// guesses counted (the one that succeeded included).
    async fn take_challenge(
        &self,
        token_hash: &str,
        now: i64,
        max_failures: i64,
    ) -> StoreResult<bool>;
    /// Binds the state of a passkey second step (webauthn-rs's, JSON, holding the challenge)
    /// to the unused, unexpired challenge `token_hash` until `expires_at`, replacing an
    /// earlier one (a second options call starts over). `false` when there is no such
    /// challenge.
    async fn put_challenge_passkey(
        &self,
        token_hash: &str,
        state: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<bool>;
    /// Stores a ceremony, replacing one under the same `id_hash`.
    async fn put_ceremony(&self, c: &Ceremony) -> StoreResult<()>;
    /// Takes the unexpired ceremony with this digest and purpose, of `user_id` when given: it
    /// is deleted as it is read, so it finishes at most once (invariant 7), and another user's
    /// attempt leaves it alone.
    async fn take_ceremony(
        &self,
        id_hash: &str,
        purpose: CeremonyPurpose,
        user_id: Option<Uuid>,
        now: i64,
    ) -> StoreResult<Option<Ceremony>>;
    /// Records that the ceremony with this digest was used, until `expires_at`: `true` the
    /// first time only (a ceremony the server did not store, such as a sealed passwordless
    /// one, is spent this way).
    async fn spend_ceremony(&self, id_hash: &str, now: i64, expires_at: i64) -> StoreResult<bool>;
}

/// What using a recovery code found (`MfaStore::use_recovery_code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryCodeUse {
    /// The code was the user's and unused: it is used now.
    Taken,
    /// The code is the user's but was used before.
    Spent,
    /// The user holds no such code.
    Unknown,
    /// The login's challenge was used (or ran out) meanwhile; the code was left as it was.
    ChallengeUsed,
}

/// Why a new passkey was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasskeyRefused {
    /// Its credential id is registered already (to this account or another).
    Registered,
    /// The user holds `max_factors` factors.
    TooMany,
}
