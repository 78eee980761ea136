//! Loading the settings: the layers, `<key>_file` indirection, and the known environment keys.
//!
//! - The known `TESSERA__` keys are derived from the settings tree itself: the defaults are
//!   serialised and every leaf becomes a key (`HTTP__BIND`, `REVOCATION__MAX_LAG`, …). A
//!   setting added to `Settings` is known to the environment layer at once; no list is kept by
//!   hand.
//! - Any setting `x` may instead be given as `x_file`, a path whose trimmed content is the
//!   value (Docker and Kubernetes secrets). This is resolved here, once, for every key.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Value;
use figment::Figment;

use super::Settings;

/// The reference configuration, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../../../../config/default.toml");

/// The suffix that makes a key's value the content of a file.
const FILE_SUFFIX: &str = "_file";

/// A configuration that cannot be used, with the key and source named.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

impl Settings {
    /// Loads the layered configuration from the process environment.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_figment(Self::figment(config_file))
    }

    /// The layered figment, before extraction. Tests add their own layers on top.
    pub fn figment(config_file: Option<&Path>) -> Figment {
        let mut fig = Figment::new().merge(Toml::string(DEFAULT_TOML));
        if let Some(path) = config_file {
            fig = fig.merge(Toml::file_exact(path));
        }
        // Unknown variables are left out here and reported by `unknown_env_keys`, rather than
        // failing extraction; unknown keys in TOML files do fail.
        fig.merge(
            Env::prefixed("TESSERA__")
                .filter(|k| is_known(k.as_str()))
                .split("__"),
        )
        .merge(
            Env::raw()
                .only(&["DATABASE_URL"])
                .map(|_| "database.url".into()),
        )
    }

    /// Resolves `<key>_file` values, extracts and validates the settings.
    pub fn from_figment(fig: Figment) -> Result<Self, ConfigError> {
        let fig = resolve_files(fig)?;
        let s: Settings = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }
}

impl Settings {
    /// The built-in defaults alone (`config/default.toml`), without the environment: for tests
    /// and tools.
    ///
    /// Errors: `ConfigError` only if the embedded `config/default.toml` is broken, which the
    /// test suite rules out.
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(DEFAULT_TOML)))
    }
}

/// Replaces every `x_file = "PATH"` in the tree with `x = <content of PATH, trimmed>`. The
/// figment is rebuilt only when some key used a file, so errors keep naming their source
/// otherwise.
fn resolve_files(fig: Figment) -> Result<Figment, ConfigError> {
    let mut tree: Value = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
    if !replace_files(&mut tree)? {
        return Ok(fig);
    }
    Ok(Figment::from(Serialized::defaults(tree)))
}

/// Walks dictionaries and arrays; returns whether anything was replaced.
fn replace_files(v: &mut Value) -> Result<bool, ConfigError> {
    match v {
        Value::Dict(_, dict) => {
            let mut changed = false;
            let file_keys: Vec<String> = dict
                .keys()
                .filter(|k| k.ends_with(FILE_SUFFIX))
                .cloned()
                .collect();
            for file_key in file_keys {
                let Some(Value::String(_, path)) = dict.remove(&file_key) else {
                    return Err(ConfigError(format!("{file_key} must be a file path")));
                };
                let content = std::fs::read_to_string(&path)
                    .map_err(|e| ConfigError(format!("cannot read {file_key} file {path}: {e}")))?;
                let key = file_key
                    .strip_suffix(FILE_SUFFIX)
                    .unwrap_or(&file_key)
                    .to_string();
                dict.insert(key, Value::from(content.trim().to_string()));
                changed = true;
            }
            for child in dict.values_mut() {
                changed |= replace_files(child)?;
            }
            Ok(changed)
        }
        Value::Array(_, items) => {
            let mut changed = false;
            for item in items {
                changed |= replace_files(item)?;
            }
            Ok(changed)
        }
        _ => Ok(false),
    }
}

/// Every key a `TESSERA__` variable may set, upper-case and without the prefix
/// (`HTTP__BIND`), each also with `_FILE`. Derived from the serialised defaults.
pub fn known_env_keys() -> &'static BTreeSet<String> {
    static KEYS: OnceLock<BTreeSet<String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let defaults = Figment::new()
            .merge(Toml::string(DEFAULT_TOML))
            .extract::<Settings>()
            .ok()
            .and_then(|s| serde_json::to_value(s).ok());
        let mut keys = BTreeSet::new();
        if let Some(tree) = defaults {
            leaf_keys(&tree, "", &mut keys);
        }
        let files: Vec<String> = keys.iter().map(|k| format!("{k}_FILE")).collect();
        keys.extend(files);
        keys
    })
}

fn leaf_keys(v: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                let key = if prefix.is_empty() {
                    k.to_ascii_uppercase()
                } else {
                    format!("{prefix}__{}", k.to_ascii_uppercase())
                };
                leaf_keys(child, &key, out);
            }
        }
        // Scalars, nulls (unset optional settings) and arrays are set as a whole.
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

fn is_known(key: &str) -> bool {
    known_env_keys().contains(&key.to_ascii_uppercase())
}

/// Names `TESSERA__` environment variables that do not match any setting. They are ignored
/// (and reported at start-up), so a typo never silently becomes a default.
pub fn unknown_env_keys() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter_map(|k| k.strip_prefix("TESSERA__").map(str::to_string))
        .filter(|k| !is_known(k))
        .map(|k| format!("TESSERA__{k}"))
        .collect()
}

#[cfg(test)]
mod tests;
