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

use base64::Engine;
use secrecy::SecretString;
use uuid::Uuid;
use webauthn_rs::prelude::{
    Credential, Passkey, PasskeyAuthentication, PublicKeyCredential, Url, Webauthn, WebauthnBuilder,
};

use webauthn_rs_proto::UserVerificationPolicy;

use crate::mfa::FactorInfo;
use crate::store::{Ceremony, CeremonyPurpose, MfaFactor};
use crate::time::{now_ms, UnixMillis};
use crate::{Auth, AuthError, Settings};

mod passwordless;
mod register;
mod second_step;

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
}
