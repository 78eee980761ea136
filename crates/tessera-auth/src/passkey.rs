//! Passkeys (WebAuthn Level 2+, checked by webauthn-rs): registered by the user themself, used
//! as the second step of a password login, and for passwordless login with a discoverable
//! credential (the login page's autofill, "conditional UI").
//!
//! Every ceremony has two calls: the options (a challenge) and the authenticator's answer. The
//! server half of the ceremony is stored under the digest of an opaque id (for a second factor,
//! the login's mfa_token) and taken once by the answer (invariant 7). The relying party id and
//! origins come from `[webauthn]`; user verification is always required, so a passkey alone is
//! a multi-factor login. A passkey's sign counter and backup flags are stored after every use:
//! a counter that goes backwards (a cloned authenticator) is refused.
//!
//! RFC 8176 methods: `hwk` for a device-bound passkey, `swk` for a synced one (backup
//! eligible), with `user` (verified) and `mfa`; after a password, `pwd` too. Either makes the
//! `acr` phishing-resistant (`tessera_proto::claims::acr`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;
use webauthn_rs::prelude::{
    Credential, DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Url, Webauthn, WebauthnBuilder,
};

use webauthn_rs_proto::UserVerificationPolicy;

use crate::audit::{Caller, Event, Record};
use crate::mfa::FactorInfo;
use crate::oidc::{random_token, token_digest};
use crate::store::{Ceremony, CeremonyPurpose, MfaChallenge, MfaFactor, PasskeyRefused};
use crate::time::{now_ms, UnixMillis};
use crate::{Auth, AuthError, ClientId, ClientMeta, Settings, TokenPair, TokenRequest};

/// webauthn-rs's types, for the benchmarks that build ceremonies of their own.
pub use webauthn_rs::prelude as webauthn;

/// Longest ceremony id accepted back (a sealed passwordless ceremony is about 800 bytes).
const MAX_CEREMONY_BYTES: usize = 4096;

/// Largest credential JSON accepted from a client, in bytes (a passkey's answer is ~1-2 KiB).
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

/// The first call of a ceremony: the options for `navigator.credentials.create` or `.get`
/// (`{"publicKey": {...}}`, base64url bytes, as WebAuthn Level 3's `toJSON` forms have them),
/// and the ceremony id that the answer must carry.
#[derive(Debug)]
pub struct PasskeyCeremony {
    /// Opaque; names the stored challenge.
    pub ceremony: String,
    pub options: serde_json::Value,
}

/// A new passkey, and the recovery codes when it is the user's first factor.
#[derive(Debug)]
pub struct PasskeyAdded {
    pub factor: FactorInfo,
    pub recovery_codes: Option<Vec<SecretString>>,
}

/// The relying party of `[webauthn]`: `None` when passkeys are off (no `rp_id` and an issuer
/// that is an IP address).
///
/// Errors: `Internal` (a relying party webauthn-rs refuses; the config checks make it rare).
pub(crate) fn relying_party(settings: &Settings) -> Result<Option<Webauthn>, AuthError> {
    let Some((rp_id, origins)) = settings.webauthn.relying_party(&settings.tokens.issuer) else {
        tracing::info!("passkeys are off: set webauthn.rp_id to turn them on");
        return Ok(None);
    };
    let bad = |e: String| AuthError::Internal(format!("webauthn: {e}"));
    let urls = origins
        .iter()
        .map(|o| Url::parse(o.as_str()).map_err(|e| bad(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = urls.first() else {
        return Ok(None);
    };
    let mut builder = WebauthnBuilder::new(&rp_id, first)
        .map_err(|e| bad(e.to_string()))?
        .rp_name(&settings.webauthn.rp_name)
        .timeout(settings.webauthn.ceremony_ttl);
    for u in &urls[1..] {
        builder = builder.append_allowed_origin(u);
    }
    builder.build().map(Some).map_err(|e| bad(e.to_string()))
}

/// A ceremony id as the client sent it back.
///
/// Errors: `BadInput` (empty or longer than any id Tessera issues).
fn check_ceremony(ceremony: &str) -> Result<(), AuthError> {
    match ceremony.is_empty() || ceremony.len() > MAX_CEREMONY_BYTES {
        true => Err(AuthError::BadInput("ceremony is empty or too long".into())),
        false => Ok(()),
    }
}

/// Credential ids are 16 to 1023 bytes (WebAuthn Level 3 §5.1 `rawId`, §6.1
/// `credentialIdLength`).
const CREDENTIAL_ID_BYTES: std::ops::RangeInclusive<usize> = 16..=1023;

/// A credential as the browser's `toJSON()` gives it, and what webauthn-rs does not check
/// itself: its id and the user handle, if any.
struct Parsed<T> {
    credential: T,
    raw_id: Vec<u8>,
    user_handle: Option<Vec<u8>>,
}

/// Bytes of a base64url field (padding optional; standard base64 too, as webauthn-rs reads it).
fn b64_field(v: &serde_json::Value) -> Option<Vec<u8>> {
    use base64::engine::{
        general_purpose, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig,
    };
    let s = v.as_str()?;
    let lenient =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient)
        .decode(s)
        .or_else(|_| GeneralPurpose::new(&base64::alphabet::STANDARD, lenient).decode(s))
        .ok()
        .or_else(|| general_purpose::STANDARD.decode(s).ok())
}

/// A credential's JSON: at most `MAX_CREDENTIAL_BYTES`, `type` `public-key`, `id` the same
/// bytes as `rawId`, an id of 16 to 1023 bytes, then the WebAuthn shape `T`.
///
/// Errors: `BadInput` naming what is wrong.
fn parse_credential<T: serde::de::DeserializeOwned>(json: &str) -> Result<Parsed<T>, AuthError> {
    let bad = |why: &str| AuthError::BadInput(format!("the passkey credential {why}").into());
    if json.len() > MAX_CREDENTIAL_BYTES {
        return Err(bad("is too large"));
    }
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
        tracing::debug!(
            line = e.line(),
            column = e.column(),
            "a passkey credential does not parse"
        );
        bad("is not JSON")
    })?;
    if value.get("type").and_then(|t| t.as_str()) != Some("public-key") {
        return Err(bad("is not of type public-key"));
    }
    let raw_id = value.get("rawId").and_then(b64_field);
    let id = value.get("id").and_then(b64_field);
    let raw_id = match (raw_id, id) {
        (Some(r), Some(i)) if r == i && CREDENTIAL_ID_BYTES.contains(&r.len()) => r,
        _ => {
            return Err(bad(
                "needs id and rawId, the same 16 to 1023 bytes in base64url",
            ))
        }
    };
    let user_handle = value
        .get("response")
        .and_then(|r| r.get("userHandle"))
        .filter(|h| !h.is_null())
        .map(|h| b64_field(h).ok_or_else(|| bad("has a userHandle that is not base64url")))
        .transpose()?;
    let credential = serde_json::from_value(value)
        .map_err(|_| bad("is not a WebAuthn PublicKeyCredential (JSON)"))?;
    Ok(Parsed {
        credential,
        raw_id,
        user_handle,
    })
}

/// The RFC 8176 method of a passkey: `swk` when it is synced (backup eligible), `hwk` when it
/// is bound to its device; with `-presence` when its user was not verified (a security key
/// without a PIN as a second factor, `webauthn.user_verification = "preferred"`), whose login
/// `amr` then lacks `user`.
fn key_method(f: &MfaFactor, user_verified: bool) -> &'static str {
    match (f.backup_eligible, user_verified) {
        (true, true) => "swk",
        (false, true) => "hwk",
        (true, false) => "swk-presence",
        (false, false) => "hwk-presence",
    }
}

/// A ceremony's state with `webauthn.user_verification` as its policy. webauthn-rs's passkey
/// ceremonies ask for `required`; with `preferred`, webauthn-rs itself checks the assertion
/// against the credential's own registration (a credential added with verification keeps
/// needing it). `field` is the state's inner field (`rs` for a registration, `ast` for an
/// authentication).
///
/// Errors: `Internal` (a state of another shape).
fn with_policy<T>(state: T, field: &str, policy: UserVerificationPolicy) -> Result<T, AuthError>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let bad = |e: &dyn std::fmt::Display| AuthError::Internal(format!("webauthn state: {e}"));
    let mut v = serde_json::to_value(&state).map_err(|e| bad(&e))?;
    let inner = v.get_mut(field).ok_or_else(|| bad(&"no state"))?;
    let slot = inner.get_mut("policy").ok_or_else(|| bad(&"no policy"))?;
    *slot = serde_json::to_value(policy).map_err(|e| bad(&e))?;
    // A registration's credProtect asks the key to demand verification for every use: with
    // `preferred`, the key's default (a CTAP 2.1 key without a PIN could not assert at all).
    if policy != UserVerificationPolicy::Required {
        if let Some(ext) = inner
            .get_mut("extensions")
            .and_then(serde_json::Value::as_object_mut)
        {
            ext.remove("credentialProtectionPolicy");
            ext.remove("enforceCredentialProtectionPolicy");
        }
    }
    serde_json::from_value(v).map_err(|e| bad(&e))
}

/// A stored passkey's credential.
///
/// Errors: `Internal` (a row that is not a passkey).
fn stored_passkey(f: &MfaFactor) -> Result<Passkey, AuthError> {
    f.credential
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok())
        .ok_or_else(|| AuthError::Internal(format!("factor {} holds no passkey", f.id)))
}

/// The factor row after an assertion `res` of it: counter, flags and credential.
fn after_use(
    f: &MfaFactor,
    mut pk: Passkey,
    res: &webauthn_rs::prelude::AuthenticationResult,
) -> Result<MfaFactor, AuthError> {
    pk.update_credential(res);
    let cred = Credential::from(pk.clone());
    let mut g = f.clone();
    g.credential =
        Some(serde_json::to_string(&pk).map_err(|e| AuthError::Internal(format!("passkey: {e}")))?);
    g.sign_count = i64::from(cred.counter);
    g.backup_eligible = cred.backup_eligible;
    g.backup_state = cred.backup_state;
    Ok(g)
}

/// The CPU part of checking a passkey's assertion: parse the credential (the JSON of the
/// browser's `PublicKeyCredential`) and have webauthn-rs check it against the ceremony's
/// state: challenge, origin, RP ID, user verification, the allowed credentials, counter and
/// signature (WebAuthn Level 3 §7.2). `benches/hot_paths.rs` measures it.
///
/// Errors: `BadInput` (not a credential), `InvalidPasskey` (it does not verify).
pub fn check_assertion(
    wa: &Webauthn,
    credential: &str,
    state: &PasskeyAuthentication,
) -> Result<webauthn_rs::prelude::AuthenticationResult, AuthError> {
    let pkc: PublicKeyCredential = parse_credential(credential)?.credential;
    wa.finish_passkey_authentication(&pkc, state).map_err(|e| {
        tracing::info!(error = %e, "passkey assertion refused");
        AuthError::InvalidPasskey
    })
}

/// What seals a passwordless ceremony's state (the master key's AEAD label).
const PASSWORDLESS_SEAL: &str = "webauthn-passwordless";

/// A passwordless ceremony's state, sealed into its id.
#[derive(serde::Serialize, serde::Deserialize)]
struct SealedCeremony {
    state: String,
    /// ms since the Unix epoch.
    expires_at: i64,
}

fn state_json<T: serde::Serialize>(state: &T) -> Result<String, AuthError> {
    serde_json::to_string(state).map_err(|e| AuthError::Internal(format!("webauthn state: {e}")))
}

/// webauthn-rs's state, from the JSON `state_json` wrote.
fn state_of<T: serde::de::DeserializeOwned>(state: &str) -> Result<T, AuthError> {
    serde_json::from_str(state).map_err(|e| AuthError::Internal(format!("webauthn state: {e}")))
}

fn options_json<T: serde::Serialize>(options: &T) -> Result<serde_json::Value, AuthError> {
    serde_json::to_value(options).map_err(|e| AuthError::Internal(format!("webauthn options: {e}")))
}

impl Auth {
    fn webauthn(&self) -> Result<&Webauthn, AuthError> {
        self.webauthn.as_deref().ok_or(AuthError::PasskeysDisabled)
    }

    /// Whether passkeys are on (`[webauthn]` names a relying party).
    pub fn passkeys_enabled(&self) -> bool {
        self.webauthn.is_some()
    }

    /// `webauthn.user_verification` for passkeys added and second steps: `Preferred` or
    /// `Required`.
    fn second_factor_policy(&self) -> UserVerificationPolicy {
        match self.settings.webauthn.user_verification.as_str() {
            "preferred" => UserVerificationPolicy::Preferred,
            _ => UserVerificationPolicy::Required,
        }
    }

    fn ceremony_expiry(&self, now: i64) -> i64 {
        UnixMillis(now).plus(self.settings.webauthn.ceremony_ttl).0
    }

    async fn put_ceremony(
        &self,
        id_hash: String,
        purpose: CeremonyPurpose,
        user_id: Option<Uuid>,
        name: Option<String>,
        state: String,
        expires_at: i64,
    ) -> Result<(), AuthError> {
        let now = now_ms();
        self.store
            .put_ceremony(&Ceremony {
                id_hash,
                purpose: purpose.as_str().into(),
                user_id,
                name,
                state,
                created_at: now,
                expires_at,
            })
            .await?;
        Ok(())
    }

    /// Starts adding a passkey (`POST /me/factors/passkey`): the creation options, asking for
    /// a discoverable credential with user verification, excluding the user's passkeys. Needs a
    /// login within `mfa.reauth_within` (`auth_time`, ms).
    ///
    /// Errors: `PasskeysDisabled`, `ReauthenticationRequired`, `BadInput` (the name),
    /// `UserNotFound`, `StoreUnavailable`, `Internal`.
    pub async fn start_passkey_registration(
        &self,
        user_id: Uuid,
        name: Option<&str>,
        auth_time: i64,
    ) -> Result<PasskeyCeremony, AuthError> {
        let wa = self.webauthn()?;
        self.check_recent(auth_time)?;
        let name = crate::mfa::factor_name(name.unwrap_or("Passkey"))?;
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(AuthError::UserNotFound)?;
        let exclude = self
            .store
            .factors_of_user(user_id)
            .await?
            .iter()
            .filter(|f| f.kind == "passkey")
            .filter_map(|f| stored_passkey(f).ok())
            .map(|pk| pk.cred_id().clone())
            .collect();
        let (mut options, state) = wa
            .start_passkey_registration(user.id, &user.username, &user.username, Some(exclude))
            .map_err(|e| AuthError::Internal(format!("webauthn: {e}")))?;
        // Discoverable, so that it can log in without a username (passwordless, autofill).
        let policy = self.second_factor_policy();
        if let Some(sel) = options.public_key.authenticator_selection.as_mut() {
            sel.resident_key = Some(webauthn_rs_proto::ResidentKeyRequirement::Required);
            sel.require_resident_key = true;
            sel.user_verification = policy;
        }
        if policy != UserVerificationPolicy::Required {
            if let Some(ext) = options.public_key.extensions.as_mut() {
                ext.cred_protect = None;
            }
        }
        let state = with_policy(state, "rs", policy)?;
        let ceremony = random_token()?;
        let now = now_ms();
        self.put_ceremony(
            token_digest(ceremony.expose_secret()),
            CeremonyPurpose::Register,
            Some(user_id),
            Some(name),
            state_json::<PasskeyRegistration>(&state)?,
            self.ceremony_expiry(now),
        )
        .await?;
        Ok(PasskeyCeremony {
            ceremony: ceremony.expose_secret().to_string(),
            options: options_json(&options)?,
        })
    }

    /// Finishes adding a passkey with the authenticator's answer (`credential`, the JSON of
    /// the browser's `PublicKeyCredential`). Checks the challenge, origin, RP ID and user
    /// verification; a credential id registered to any account is refused. Needs a login
    /// within `mfa.reauth_within`; the user's other sessions end (`keep` is the caller's), and
    /// the first factor brings recovery codes.
    ///
    /// Errors: `PasskeysDisabled`, `ReauthenticationRequired`, `BadInput` (not a credential,
    /// or ten factors already), `InvalidPasskey` (an unknown, used or expired ceremony, or an
    /// answer that does not verify), `PasskeyRegistered`, `StoreUnavailable`, `Internal`.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_passkey_registration(
        &self,
        user_id: Uuid,
        ceremony: &str,
        credential: &str,
        auth_time: i64,
        keep: Uuid,
        caller: &Caller,
    ) -> Result<PasskeyAdded, AuthError> {
        let wa = self.webauthn()?;
        self.check_recent(auth_time)?;
        check_ceremony(ceremony)?;
        let parsed: Parsed<RegisterPublicKeyCredential> = parse_credential(credential)?;
        let reg = parsed.credential;
        let now = now_ms();
        let c = self
            .store
            .take_ceremony(
                &token_digest(ceremony),
                CeremonyPurpose::Register,
                Some(user_id),
                now,
            )
            .await?
            .ok_or(AuthError::InvalidPasskey)?;
        // Registered already (this account's own, which the options excluded, or another's):
        // a conflict, not a failed check.
        if self
            .store
            .passkey(&URL_SAFE_NO_PAD.encode(&parsed.raw_id))
            .await?
            .is_some()
        {
            return Err(AuthError::PasskeyRegistered);
        }
        let state: PasskeyRegistration = state_of(&c.state)?;
        let pk = wa.finish_passkey_registration(&reg, &state).map_err(|e| {
            tracing::info!(user_id = %user_id, error = %e, "passkey registration refused");
            AuthError::InvalidPasskey
        })?;
        let first = !self.store.has_factor(user_id).await?;
        let cred = Credential::from(pk.clone());
        let factor = MfaFactor {
            id: Uuid::now_v7(),
            user_id,
            kind: "passkey".into(),
            name: c.name.unwrap_or_else(|| "Passkey".into()),
            secret_enc: Vec::new(),
            confirmed_at: Some(now),
            last_used_step: -1,
            created_at: now,
            last_used_at: None,
            credential_id: Some(URL_SAFE_NO_PAD.encode(pk.cred_id())),
            credential: Some(state_json(&pk)?),
            sign_count: i64::from(cred.counter),
            backup_eligible: cred.backup_eligible,
            backup_state: cred.backup_state,
        };
        match self
            .store
            .insert_passkey(&factor, crate::mfa::MAX_FACTORS)
            .await?
        {
            None => {}
            Some(PasskeyRefused::Registered) => return Err(AuthError::PasskeyRegistered),
            Some(PasskeyRefused::TooMany) => {
                return Err(AuthError::BadInput(
                    format!(
                        "a user holds at most {} factors: remove one first",
                        crate::mfa::MAX_FACTORS
                    )
                    .into(),
                ))
            }
        }
        self.audit(
            caller,
            Event::FactorAdded,
            Record::user(user_id).reason("passkey"),
        )
        .await;
        self.end_other_sessions(user_id, keep).await?;
        let recovery_codes = match first {
            true => Some(self.new_recovery_set(user_id, caller).await?),
            false => None,
        };
        Ok(PasskeyAdded {
            factor: FactorInfo::from(&factor),
            recovery_codes,
        })
    }

    /// The assertion options for the second step of a password login with a passkey
    /// (`POST /login/mfa/passkey`): a challenge for the user's passkeys, bound to the
    /// `mfa_token` (a second call replaces the first's challenge). Any client's mfa_token
    /// gets them: they tell its holder, who knew the password, only the user's credential
    /// ids, and the login completes only with the client the token is bound to.
    ///
    /// Errors: `PasskeysDisabled`, `BadInput`, `InvalidSecondFactor` (an unknown, used or
    /// expired mfa_token), `FactorNotFound` (the user has no passkey), `StoreUnavailable`,
    /// `Internal`.
    pub async fn second_factor_passkey_options(
        &self,
        mfa_token: &SecretString,
    ) -> Result<serde_json::Value, AuthError> {
        let wa = self.webauthn()?;
        let t = mfa_token.expose_secret();
        if t.is_empty() || t.len() > 256 {
            return Err(AuthError::BadInput("mfa_token is empty or too long".into()));
        }
        let hash = token_digest(t);
        let now = now_ms();
        let challenge = self
            .store
            .challenge(&hash, now, crate::mfa::MAX_FAILURES)
            .await?
            .ok_or(AuthError::InvalidSecondFactor)?;
        let passkeys: Vec<Passkey> = self
            .store
            .factors_of_user(challenge.user_id)
            .await?
            .iter()
            .filter(|f| f.kind == "passkey" && f.confirmed_at.is_some())
            .map(stored_passkey)
            .collect::<Result<_, _>>()?;
        if passkeys.is_empty() {
            return Err(AuthError::FactorNotFound);
        }
        let (mut options, state) = wa
            .start_passkey_authentication(&passkeys)
            .map_err(|e| AuthError::Internal(format!("webauthn: {e}")))?;
        let policy = self.second_factor_policy();
        options.public_key.user_verification = policy;
        let state = with_policy(state, "ast", policy)?;
        // On the login's own row (invariant 7): no ceremony row to write and delete.
        let stored = self
            .store
            .put_challenge_passkey(
                &hash,
                &state_json::<PasskeyAuthentication>(&state)?,
                self.ceremony_expiry(now).min(challenge.expires_at),
                now,
            )
            .await?;
        if !stored {
            // Used by a parallel request meanwhile.
            return Err(AuthError::InvalidSecondFactor);
        }
        options_json(&options)
    }

    /// Whether `credential` is an assertion of one of the user's passkeys for the challenge
    /// bound to the login's mfa_token (`token_hash`), and used now for the first time; its
    /// RFC 8176 method (`hwk` or `swk`) when it is.
    ///
    /// Errors: `BadInput` (not a credential), `StoreUnavailable`, `Internal`.
    pub(crate) async fn check_passkey_factor(
        &self,
        challenge: &MfaChallenge,
        credential: &str,
        now: i64,
    ) -> Result<Option<&'static str>, AuthError> {
        let wa = self.webauthn()?;
        // A credential that does not parse is the caller's mistake (400), before the ceremony
        // is spent.
        let parsed: Parsed<PublicKeyCredential> = parse_credential(credential)?;
        // WebAuthn Level 3 §7.2 step 6: a user handle, when given, is the user's.
        if parsed
            .user_handle
            .as_ref()
            .is_some_and(|h| h.as_slice() != challenge.user_id.as_bytes())
        {
            return Ok(None);
        }
        // No ceremony: used by a parallel request with this mfa_token, or never asked for.
        // Not a wrong factor, so not counted against the token (a retry burst keeps its
        // winner).
        let Some(state) = self
            .store
            .take_challenge_passkey(&challenge.token_hash, now)
            .await?
        else {
            return Err(AuthError::InvalidSecondFactor);
        };
        let state: PasskeyAuthentication = state_of(&state)?;
        let res = match check_assertion(wa, credential, &state) {
            Ok(res) => res,
            Err(_) => return Ok(None),
        };
        let id = URL_SAFE_NO_PAD.encode(res.cred_id());
        let Some(f) = self.store.passkey(&id).await? else {
            return Ok(None);
        };
        if f.user_id != challenge.user_id {
            return Ok(None);
        }
        self.passkey_used(&f, &res, now).await
    }

    /// Stores what an assertion `res` of passkey `f` changed; its RFC 8176 method, or `None`
    /// when a parallel assertion with the same counter was stored first, or the counter went
    /// backwards (a cloned authenticator).
    async fn passkey_used(
        &self,
        f: &MfaFactor,
        res: &webauthn_rs::prelude::AuthenticationResult,
        now: i64,
    ) -> Result<Option<&'static str>, AuthError> {
        let counter = i64::from(res.counter());
        if counter != 0 && counter <= f.sign_count {
            tracing::warn!(user_id = %f.user_id, factor_id = %f.id, "passkey counter went backwards: a cloned authenticator?");
            return Ok(None);
        }
        let g = after_use(f, stored_passkey(f)?, res)?;
        match self.store.passkey_used(&g, f.sign_count, now).await? {
            true => Ok(Some(key_method(&g, res.user_verified()))),
            false => Ok(None),
        }
    }

    /// The assertion options of a passwordless login (`POST /login/passkey/options`, and the
    /// hosted login page's autofill): any discoverable passkey of this relying party, with
    /// user verification.
    ///
    /// Errors: `PasskeysDisabled`, `StoreUnavailable`, `Internal`.
    pub async fn passwordless_options(&self) -> Result<PasskeyCeremony, AuthError> {
        let wa = self.webauthn()?;
        let (options, state) = wa
            .start_discoverable_authentication()
            .map_err(|e| AuthError::Internal(format!("webauthn: {e}")))?;
        // Anyone may ask, so nothing is stored: the state travels in the ceremony id, sealed
        // under the master key with its expiry, and is spent when an assertion checks out.
        let sealed = SealedCeremony {
            state: state_json::<DiscoverableAuthentication>(&state)?,
            expires_at: self.ceremony_expiry(now_ms()),
        };
        let plain = serde_json::to_vec(&sealed)
            .map_err(|e| AuthError::Internal(format!("webauthn state: {e}")))?;
        let sealed = self
            .keys
            .master()
            .seal(PASSWORDLESS_SEAL, &plain)
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        Ok(PasskeyCeremony {
            ceremony: URL_SAFE_NO_PAD.encode(sealed),
            options: options_json(&options)?,
        })
    }

    /// The state and expiry a passwordless ceremony id seals, if it opens and is unexpired.
    fn open_passwordless(&self, ceremony: &str, now: i64) -> Option<SealedCeremony> {
        let sealed = URL_SAFE_NO_PAD.decode(ceremony).ok()?;
        let plain = self.keys.master().open(PASSWORDLESS_SEAL, &sealed).ok()?;
        let c: SealedCeremony = serde_json::from_slice(&plain).ok()?;
        (c.expires_at > now).then_some(c)
    }

    /// The user a passwordless assertion proves (its ceremony is taken), with the RFC 8176
    /// methods of the login (`hwk user mfa` or `swk user mfa`): user verification was required, so the
    /// passkey is two factors in one. Every refusal is `InvalidCredentials`, recorded as a
    /// failed login.
    ///
    /// Errors: `PasskeysDisabled`, `BadInput`, `InvalidCredentials`, `StoreUnavailable`,
    /// `Internal`.
    pub(crate) async fn verify_passwordless(
        &self,
        ceremony: &str,
        credential: &str,
        client: &ClientId,
        caller: &Caller,
    ) -> Result<(crate::store::User, &'static str), AuthError> {
        let wa = self.webauthn()?;
        check_ceremony(ceremony)?;
        let pkc: PublicKeyCredential = parse_credential(credential)?.credential;
        let now = now_ms();
        let refused = |why: &str| {
            tracing::info!(reason = why, "passwordless login refused");
            AuthError::InvalidCredentials
        };
        let result: Result<_, AuthError> = async {
            let c = self
                .open_passwordless(ceremony, now)
                .ok_or_else(|| refused("unknown or expired ceremony"))?;
            let state: DiscoverableAuthentication = state_of(&c.state)?;
            let (user_id, cred_id) = wa
                .identify_discoverable_authentication(&pkc)
                .map_err(|_| refused("no user handle"))?;
            let f = self
                .store
                .passkey(&URL_SAFE_NO_PAD.encode(cred_id))
                .await?
                .filter(|f| f.user_id == user_id)
                .ok_or_else(|| refused("unknown credential"))?;
            let user = self
                .store
                .user_by_id(user_id)
                .await?
                .filter(|u| !u.disabled)
                .ok_or_else(|| refused("unknown or disabled user"))?;
            let pk = stored_passkey(&f)?;
            let res = wa
                .finish_discoverable_authentication_v2(&pkc, state, &pk)
                .map_err(|e| {
                    tracing::info!(user_id = %user_id, error = %e, "passkey assertion refused");
                    AuthError::InvalidCredentials
                })?;
            // Invariant 7: the ceremony works once, whatever the counter says.
            if !self
                .store
                .spend_ceremony(&token_digest(ceremony), now, c.expires_at)
                .await?
            {
                return Err(refused("ceremony used"));
            }
            let method = self
                .passkey_used(&f, &res, now)
                .await?
                .ok_or_else(|| refused("counter replayed or backwards"))?;
            // webauthn-rs refuses a discoverable assertion without verification already; a
            // passkey alone is a login only with it.
            if method.ends_with("-presence") {
                return Err(refused("user not verified"));
            }
            Ok((user, method))
        }
        .await;
        match result {
            Ok((user, method)) => Ok((
                user,
                match method {
                    "swk" => "swk user mfa",
                    _ => "hwk user mfa",
                },
            )),
            Err(AuthError::InvalidCredentials) => {
                self.audit(
                    caller,
                    Event::LoginFailed,
                    Record::default().client(client.as_str()).reason("passkey"),
                )
                .await;
                metrics::counter!("logins_total", "result" => "invalid").increment(1);
                Err(AuthError::InvalidCredentials)
            }
            Err(e) => Err(e),
        }
    }

    /// A passwordless login of the JSON API (`POST /login/passkey`): the ceremony of
    /// `passwordless_options` and the browser's assertion. Opens a session as `/login` does,
    /// with `amr` `hwk user mfa` (or `swk user mfa`) and `acr` phishing-resistant.
    ///
    /// Errors: as `verify_passwordless`, and `InvalidScope`, `InvalidTarget`.
    pub async fn login_with_passkey(
        &self,
        ceremony: &str,
        credential: &str,
        meta: ClientMeta,
        client: &ClientId,
        req: &TokenRequest,
        caller: &Caller,
    ) -> Result<TokenPair, AuthError> {
        let granted = self.grant(client, req)?;
        let (user, amr) = self
            .verify_passwordless(ceremony, credential, client, caller)
            .await?;
        let now = UnixMillis(now_ms().max(user.tokens_not_before + 1));
        let mut session = self.new_session(user.id, meta, client, &granted, now);
        session.amr = Some(amr.into());
        let subject = self
            .open_session(user.tokens_not_before, &session, client, caller)
            .await?;
        self.audit(
            caller,
            Event::LoginSucceeded,
            Record::session(user.id, session.id).client(client.as_str()),
        )
        .await;
        metrics::counter!("logins_total", "result" => "ok").increment(1);
        self.issue(&subject, &session, &granted, now)
    }
}
