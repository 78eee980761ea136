//! The master key of a deployment, as the settings give it: `keys.master_key` (and the
//! previous keys), or for a SQLite database without one, a key file kept beside the database.
//! Where that file lives depends on the database URL, which is why this is wiring and not
//! domain.

use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;

use crate::auth::keys::{KeyError, MasterKey};
use crate::config::Settings;

/// The master key from `keys.master_key` (or `keys.master_key_file`). Postgres requires
/// one. A SQLite database without one gets a generated key kept beside it in `master.key`
/// (created once, mode 0600, with a warning); an in-memory database gets a throw-away one.
pub fn master_key(settings: &Settings) -> Result<MasterKey, KeyError> {
    let previous = &settings.keys.previous_master_keys;
    if let Some(k) = &settings.keys.master_key {
        return MasterKey::from_base64(k)?.with_previous(previous);
    }
    if !settings.is_sqlite() {
        return Err(KeyError::Config(
            "keys.master_key (TESSERA__KEYS__MASTER_KEY or TESSERA__KEYS__MASTER_KEY_FILE) is \
             required with Postgres; create one with `openssl rand -base64 32`",
        ));
    }
    let Some(path) = sqlite_master_key_path(settings.database.url.expose_secret()) else {
        tracing::warn!("in-memory SQLite and no keys.master_key: using a throw-away master key");
        return MasterKey::from_base64(&MasterKey::generate_base64()?);
    };
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return MasterKey::from_base64(&existing.trim().to_string().into())?
            .with_previous(previous);
    }
    tracing::warn!(
        path = %path.display(),
        "no keys.master_key configured: generated one for this SQLite database. Set \
         TESSERA__KEYS__MASTER_KEY in production."
    );
    let k = MasterKey::generate_base64()?;
    write_private(&path, k.expose_secret()).map_err(|e| KeyError::File {
        path: path.display().to_string(),
        cause: e.to_string(),
    })?;
    MasterKey::from_base64(&k)
}

/// The key file `master_key` would create: for a SQLite database file when the settings give
/// no master key and the file does not exist. `None` otherwise.
pub fn key_file_to_generate(settings: &Settings) -> Option<PathBuf> {
    if settings.keys.master_key.is_some() || !settings.is_sqlite() {
        return None;
    }
    sqlite_master_key_path(settings.database.url.expose_secret()).filter(|path| !path.exists())
}

/// `data/master.key` for `sqlite://data/tessera.db`; `None` for an in-memory database.
fn sqlite_master_key_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let file = rest.split('?').next()?;
    if file.is_empty() || file.starts_with(":memory:") {
        return None;
    }
    let dir = Path::new(file)
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    Some(dir.join("master.key"))
}

/// Creates `path` (and its directory) readable by the owner only; never overwrites.
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(content.as_bytes())?;
    f.write_all(b"\n")
}
