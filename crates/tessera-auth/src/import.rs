//! Users moved from another system with their password hashes: `tessera user add
//! --password-hash` and `tessera user import FILE` (JSON Lines). The hash formats, their
//! conversion and cost caps are in `password::formats`; the first successful login re-hashes to
//! the configured argon2id.

use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::audit::{Event, Record};
use super::password::{self, CostCaps};
use super::username::{self, Username};
use super::{tokens, Auth, AuthError};
use crate::audit::Caller;
use crate::store::{NewUser, OnConflict};
use crate::time::now_ms;

/// Largest custom-claims object, serialised, in bytes: they go into every access token.
const MAX_CLAIMS_BYTES: usize = 4096;

/// One user to import: a line of `tessera user import`'s JSON Lines.
///
/// `password_hash` is a hash string in a format `password::formats` accepts, or a Keycloak
/// credential object. `roles`, `claims` (an object of custom access-token claims, none named
/// like a registered claim) and `disabled` are optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportLine {
    pub username: String,
    pub password_hash: Value,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub claims: Map<String, Value>,
    #[serde(default)]
    pub disabled: bool,
    /// The user's email address, which they can log in with; unique among users.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether the system it comes from had verified the address.
    #[serde(default)]
    pub email_verified: bool,
}

impl std::fmt::Debug for ImportLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportLine")
            .field("username", &self.username)
            .field("password_hash", &"[REDACTED]")
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// A numbered input line (1-based), parsed, or why it could not be.
pub type NumberedLine = (usize, Result<ImportLine, String>);

/// A line that was refused, by its 1-based number, and why (never the hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Users created.
    pub created: usize,
    /// Existing usernames left alone (`OnConflict::Skip`), or with `OnConflict::Fail` the
    /// reason nothing was imported.
    pub existing: Vec<String>,
    /// Refused lines. Unless invalid lines were to be skipped, nothing was imported.
    pub invalid: Vec<LineError>,
    /// Whether the import was applied; false when it stopped on an invalid line or a conflict.
    pub applied: bool,
}

impl Auth {
    /// Imports users with existing password hashes, in one transaction.
    ///
    /// `lines` are numbered input lines, each parsed or the parse error. Every line is checked
    /// first (username, hash format and cost caps, roles, claims, duplicates within the input);
    /// any refused line stops the import unless `skip_invalid`. An existing username is skipped
    /// or stops the import, per `on_conflict`.
    ///
    /// Errors: `StoreUnavailable`. Refusals are in the report, not errors.
    pub async fn import_users(
        &self,
        lines: impl IntoIterator<Item = NumberedLine>,
        skip_invalid: bool,
        on_conflict: OnConflict,
        caller: &Caller,
    ) -> Result<ImportReport, AuthError> {
        let caps = CostCaps::from(&self.settings.password);
        let mut report = ImportReport::default();
        let mut users: Vec<NewUser> = Vec::new();
        let mut seen = std::collections::HashMap::new();
        let mut looks = std::collections::HashMap::new();
        let now = now_ms();
        for (line, parsed) in lines {
            let user = parsed.and_then(|l| prepare(l, &caps, now));
            match user {
                Ok(u) => {
                    let skeleton = u.skeleton.clone().unwrap_or_default();
                    if let Some(first) = seen.insert(u.username.clone(), line) {
                        report.invalid.push(LineError {
                            line,
                            reason: format!("username {} repeats line {first}", u.username),
                        });
                    } else if let Some(first) = looks.insert(skeleton, line) {
                        report.invalid.push(LineError {
                            line,
                            reason: format!(
                                "username {} looks like line {first}'s (UTS #39 confusable)",
                                u.username
                            ),
                        });
                    } else {
                        users.push(u);
                    }
                }
                Err(reason) => report.invalid.push(LineError { line, reason }),
            }
        }
        if !report.invalid.is_empty() && !skip_invalid {
            return Ok(report);
        }
        let done = self.store.import_users(&users, on_conflict).await?;
        report.created = done.created;
        report.existing = done.existing;
        report.applied = on_conflict == OnConflict::Skip || report.existing.is_empty();
        if report.applied {
            for u in users
                .iter()
                .filter(|u| !report.existing.contains(&u.username))
            {
                self.audit(
                    caller,
                    Event::UserCreated,
                    Record::user(u.id).reason("imported"),
                )
                .await;
            }
            tracing::info!(
                created = report.created,
                existing = report.existing.len(),
                invalid = report.invalid.len(),
                "users imported"
            );
        }
        Ok(report)
    }
}

/// Custom claims a user may have: none named like a claim Tessera sets (`sub`, `roles`, …), and
/// at most `MAX_CLAIMS_BYTES` of JSON, since they go into every access token.
pub fn check_claims(claims: &Map<String, Value>) -> Result<(), String> {
    if claims.keys().any(String::is_empty) {
        return Err("a claim name is empty".into());
    }
    if has_nul(&Value::Object(claims.clone())) {
        return Err("claims may not contain U+0000".into());
    }
    if let Some(k) = claims.keys().find(|k| tokens::is_registered(k)) {
        return Err(format!(
            "claim {k:?} is set by Tessera and cannot be a custom claim"
        ));
    }
    if serde_json::to_vec(claims).map_or(0, |v| v.len()) > MAX_CLAIMS_BYTES {
        return Err(format!("claims are larger than {MAX_CLAIMS_BYTES} bytes"));
    }
    Ok(())
}

/// Whether any string or key in `v` holds U+0000, which Postgres text cannot store.
fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// Checks one line and makes the row to insert.
fn prepare(l: ImportLine, caps: &CostCaps, now: i64) -> Result<NewUser, String> {
    let name = Username::parse(&l.username).map_err(|e| e.to_string())?;
    let hash_input = match &l.password_hash {
        Value::String(s) => s.clone(),
        v @ Value::Object(_) => v.to_string(),
        _ => return Err("password_hash must be a string or a Keycloak credential object".into()),
    };
    let password_hash = password::import(&hash_input, caps).map_err(|e| e.to_string())?;
    let roles = username::parse_roles(l.roles).map_err(|e| e.to_string())?;
    check_claims(&l.claims)?;
    let email = l
        .email
        .as_deref()
        .map(crate::email::Email::parse)
        .transpose()
        .map_err(|e| match e {
            crate::AuthError::BadInput(why) => why,
            other => other.to_string().into(),
        })?;
    Ok(NewUser {
        id: Uuid::now_v7(),
        username: name.as_str().to_string(),
        skeleton: Some(name.skeleton()),
        password_hash,
        roles,
        claims: l.claims,
        disabled: l.disabled,
        now,
        email_key: email.as_ref().map(|e| e.key.clone()),
        email_verified: l.email_verified && email.is_some(),
        email: email.map(|e| e.address),
    })
}
