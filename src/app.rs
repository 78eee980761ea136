//! Start-up: open the store, run migrations, load keys, bind the port, and serve until a
//! shutdown future resolves. `Application::build` binds first, so tests can ask for port 0 and
//! read the real port back.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::auth::keys::{Keys, MasterKey};
use crate::auth::password::Passwords;
use crate::auth::revocation::RevocationCache;
use crate::auth::session::RefreshTokens;
use crate::auth::{now_ms, Auth};
use crate::config::Settings;
use crate::store;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

fn start_err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> StartError {
    move |e| StartError(format!("{what}: {e}"))
}

/// Builds the domain service: store (migrated), master key, key ring, password hasher.
pub async fn services(settings: Settings) -> Result<Arc<Auth>, StartError> {
    let settings = Arc::new(settings);
    let store = store::connect(&settings.database)
        .await
        .map_err(start_err("database"))?;
    store.migrate().await.map_err(start_err("migrations"))?;
    let master = master_key(&settings)?;
    let alg = settings.keys.algorithm;
    let keys = Keys::load(
        store.as_ref(),
        master,
        alg,
        settings.keys.rsa_bits,
        now_ms(),
    )
    .await
    .map_err(start_err("signing keys"))?;
    let refresh = RefreshTokens::new(keys.master().derive_hmac("refresh-token-v1"));
    let pw = settings.password.clone();
    let passwords = tokio::task::spawn_blocking(move || Passwords::new(&pw))
        .await
        .map_err(start_err("password hasher"))?
        .map_err(start_err("password hasher"))?;
    let horizon_ms = crate::time::millis(settings.token_horizon());
    let revocations = RevocationCache::new(
        settings.revocation.cache,
        settings.revocation.max_lag,
        horizon_ms,
    );
    Ok(Arc::new(Auth {
        store,
        passwords,
        keys,
        refresh,
        settings,
        revocations,
    }))
}

/// The master key from config, or for SQLite a generated one kept beside the database.
fn master_key(settings: &Settings) -> Result<MasterKey, StartError> {
    if let Some(k) = &settings.keys.master_key {
        return MasterKey::from_base64(k).map_err(start_err("keys.master_key"));
    }
    if !settings.is_sqlite() {
        return Err(StartError(
            "keys.master_key (TESSERA__KEYS__MASTER_KEY or TESSERA__KEYS__MASTER_KEY_FILE) is required \
             with Postgres; create one with `openssl rand -base64 32`"
                .into(),
        ));
    }
    let Some(path) = sqlite_master_key_path(settings.database.url.expose_secret()) else {
        tracing::warn!("in-memory SQLite and no keys.master_key: using a throw-away master key");
        let k = MasterKey::generate_base64().map_err(start_err("master key"))?;
        return MasterKey::from_base64(&k).map_err(start_err("master key"));
    };
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return MasterKey::from_base64(&existing.trim().to_string().into())
            .map_err(start_err("master key file"));
    }
    tracing::warn!(
        path = %path.display(),
        "no keys.master_key configured: generated one for this SQLite database. Set \
         TESSERA__KEYS__MASTER_KEY in production."
    );
    let k = MasterKey::generate_base64().map_err(start_err("master key"))?;
    write_private(&path, k.expose_secret()).map_err(start_err("cannot write master key"))?;
    MasterKey::from_base64(&k).map_err(start_err("master key"))
}

fn sqlite_master_key_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let file = rest.split('?').next()?;
    if file.is_empty() || file.starts_with(":memory:") {
        return None;
    }
    let dir = std::path::Path::new(file)
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    Some(dir.join("master.key"))
}

fn write_private(path: &std::path::Path, content: &str) -> std::io::Result<()> {
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

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    auth: Arc<Auth>,
}

impl Application {
    /// Prepares everything and binds `http.bind` (port 0 picks a free port).
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let bind = settings.http.bind.clone();
        let auth = services(settings).await?;
        let listener = TcpListener::bind(&bind)
            .await
            .map_err(start_err("cannot bind http.bind"))?;
        Ok(Self { listener, auth })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, StartError> {
        self.listener
            .local_addr()
            .map_err(start_err("local address"))
    }

    /// The domain service (tests use it to seed users).
    pub fn auth(&self) -> Arc<Auth> {
        self.auth.clone()
    }

    /// Serves until `shutdown` resolves, with background upkeep running alongside.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let upkeep = tokio::spawn(upkeep(self.auth.clone()));
        let router = crate::http::router(self.auth.clone());
        tracing::info!(addr = ?self.listener.local_addr().ok(), "tessera listening");
        let http = self.auth.settings.http.clone();
        crate::http::serve::serve(self.listener, router, &http, shutdown).await;
        upkeep.abort();
        tracing::info!("tessera stopped");
    }
}

/// How often the key ring is re-read when no change notification arrives (SQLite, or a lost
/// Postgres listener).
const RELOAD_EVERY: Duration = Duration::from_millis(crate::auth::keys::PROPAGATION_MS as u64);
/// How often automatic rotation and the purge of expired rows are considered.
const MAINTAIN_EVERY: Duration = Duration::from_secs(60);

/// Background work: keep the key ring and the revocation state current (on change
/// notifications, and by polling), rotate keys when due, and purge expired denylist rows and
/// dead sessions.
async fn upkeep(auth: Arc<Auth>) {
    let mut changes = match auth.store.listen_changes().await {
        Ok(rx) => rx,
        Err(e) => {
            tracing::warn!(error = %e, "change notifications unavailable; polling only");
            None
        }
    };
    let cache = &auth.revocations;
    if changes.is_some() {
        cache.set_listening(true);
    }
    sync_revocations(&auth).await;
    let mut reload = tokio::time::interval(RELOAD_EVERY);
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut poll = tokio::time::interval(cache.poll_every());
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut maintain = tokio::time::interval(MAINTAIN_EVERY);
    maintain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let notified = async {
            match changes.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = reload.tick() => {
                // Started while the database was down: keep trying to listen.
                if changes.is_none() {
                    if let Ok(Some(rx)) = auth.store.listen_changes().await {
                        changes = Some(rx);
                        listening_again(&auth).await;
                    }
                }
                reload_keys(&auth).await
            }
            _ = poll.tick(), if cache.enabled() => sync_revocations(&auth).await,
            msg = notified => match msg.as_deref() {
                None => {
                    changes = None;
                    cache.set_listening(false);
                }
                Some("lost") => cache.set_listening(false),
                Some("resync") => {
                    listening_again(&auth).await;
                    reload_keys(&auth).await;
                }
                Some(payload) => {
                    if !cache.apply_notification(payload) {
                        reload_keys(&auth).await;
                    }
                }
            },
            _ = maintain.tick() => maintain_once(&auth).await,
        }
    }
}

/// The change listener is (back) up, or saw a change it cannot describe: anything may have
/// changed, so the revocation state forgets what it knew to be valid and resyncs before it is
/// trusted again.
async fn listening_again(auth: &Auth) {
    auth.revocations.forget_valid();
    auth.revocations.set_listening(true);
    sync_revocations(auth).await;
}

async fn sync_revocations(auth: &Auth) {
    if let Err(e) = auth.revocations.sync(auth.store.as_ref(), now_ms()).await {
        auth.revocations.distrust();
        tracing::warn!(error = %e, "revocation state not synced; checks read the database");
    }
}

async fn reload_keys(auth: &Auth) {
    if let Err(e) = auth.keys.reload(auth.store.as_ref(), now_ms()).await {
        tracing::warn!(error = %e, "key reload failed");
    }
}

async fn maintain_once(auth: &Auth) {
    let now = now_ms();
    let s = &auth.settings.keys;
    match auth
        .keys
        .rotate_if_due(
            auth.store.as_ref(),
            s.algorithm,
            s.rsa_bits,
            auth.schedule(),
            now,
        )
        .await
    {
        Ok(Some(kid)) => tracing::info!(%kid, "automatic key rotation: new key published"),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "automatic key rotation failed"),
    }
    match auth.store.purge_expired(now).await {
        Ok(n) if n > 0 => tracing::debug!(rows = n, "purged expired rows"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "purge failed"),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested");
}
