//! Start-up: open the store, run migrations, load the master key, start the domain service,
//! bind the port, and serve until a shutdown future resolves. `Application::build` binds first,
//! so tests can ask for port 0 and read the real port back.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

mod logout_sender;
mod mail_sender;
mod master_key;

use crate::auth::keys::KeyError;
use crate::auth::{Auth, Catalog};
use crate::config::Settings;
use crate::store::{self, Store, StoreError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

fn start_err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> StartError {
    move |e| StartError(format!("{what}: {e}"))
}

/// The wired domain: a migrated store and the service on top of it.
pub struct Services {
    pub settings: Arc<Settings>,
    pub store: Arc<dyn Store>,
    pub auth: Arc<Auth>,
}

/// Opens the store and runs the pending migrations (`tessera migrate`, and `serve` first).
pub async fn migrate(settings: &Settings) -> Result<Arc<dyn Store>, StartError> {
    let store = store::connect(&settings.database)
        .await
        .map_err(start_err("database"))?;
    store.migrate().await.map_err(start_err("migrations"))?;
    Ok(store)
}

/// The read-only view for operators' listings: the store alone, opened without creating a
/// database file, never migrated, with no master key and no hashing threads.
pub async fn catalog(settings: &Settings) -> Result<Catalog, StoreError> {
    Ok(Catalog::new(
        store::connect_existing(&settings.database).await?,
    ))
}

/// Opens and migrates the store, loads the master key and starts `Auth` (which creates the
/// first signing key on an empty database).
pub async fn services(settings: Settings) -> Result<Services, StartError> {
    let settings = Arc::new(settings);
    let key_error = |e| match e {
        // Already names the setting.
        KeyError::Config(why) => StartError(why.to_string()),
        other => StartError(format!("keys.master_key: {other}")),
    };
    // A configured key, or none where one is required (Postgres), is read before the database
    // is touched: a start refused for it writes nothing (it migrated the database first).
    let configured = match settings.keys.master_key.is_some() || !settings.is_sqlite() {
        true => Some(master_key::master_key(&settings).map_err(key_error)?),
        false => None,
    };
    let store = migrate(&settings).await?;
    // A SQLite database whose key file is gone: a new key would leave every signing key (and
    // TOTP secret) sealed under the old one unreadable, and the file beside it would then have
    // to be overwritten to recover. Refuse instead, and write nothing.
    if let Some(path) = master_key::key_file_to_generate(&settings) {
        let sealed = store.keys().await.map_err(start_err("signing keys"))?;
        if !sealed.is_empty() {
            return Err(StartError(format!(
                "{} is missing, and this SQLite database holds {} signing key(s) sealed under \
                 the master key it held: put the file back beside the database, or set \
                 keys.master_key (TESSERA__KEYS__MASTER_KEY) to that key",
                path.display(),
                sealed.len()
            )));
        }
    }
    let master = match configured {
        Some(m) => m,
        None => master_key::master_key(&settings).map_err(key_error)?,
    };
    // A login's throttle slot is leased for as long as its request may run.
    let request_limit = settings.http.request_timeout;
    let auth = Auth::start(settings.clone(), store.clone(), master, request_limit)
        .await
        .map_err(|e| StartError(e.to_string()))?;
    Ok(Services {
        settings,
        store,
        auth: Arc::new(auth),
    })
}

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    services: Services,
    pages: crate::pages::SharedPages,
}

impl Application {
    /// Prepares everything and binds `http.bind` (port 0 picks a free port).
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let bind = settings.http.bind.clone();
        // A broken theme fails the start, not a login.
        let pages = crate::pages::Pages::load(settings.ui.templates_dir.as_deref())
            .map(Arc::new)
            .map_err(StartError)?;
        let services = services(settings).await?;
        let listener = TcpListener::bind(&bind)
            .await
            .map_err(start_err("cannot bind http.bind"))?;
        Ok(Self {
            listener,
            services,
            pages,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, StartError> {
        self.listener
            .local_addr()
            .map_err(start_err("local address"))
    }

    /// The domain service (tests use it to seed users).
    pub fn auth(&self) -> Arc<Auth> {
        self.services.auth.clone()
    }

    /// The store the server runs on (tests read the stored state through it).
    pub fn store(&self) -> Arc<dyn Store> {
        self.services.store.clone()
    }

    /// Serves until `shutdown` resolves, with background upkeep running alongside.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Services { settings, auth, .. } = self.services;
        let upkeep = tokio::spawn({
            let auth = auth.clone();
            async move { auth.upkeep().await }
        });
        let audit = tokio::spawn({
            let auth = auth.clone();
            async move { auth.run_audit_writer().await }
        });
        let backchannel = tokio::spawn(
            auth.clone()
                .run_backchannel(Arc::new(logout_sender::HttpLogoutSender::new())),
        );
        // Flows that need mail are off without it; they never fail at request time for it.
        let outbox = match mail_sender::SmtpSender::new(&settings.mail) {
            Ok(Some(sender)) => {
                if settings.accounts.link_base.is_empty() {
                    tracing::info!(
                        "accounts.link_base is unset: emailed links point at the hosted page /account/link"
                    );
                }
                Some(tokio::spawn(auth.clone().run_outbox(Arc::new(sender))))
            }
            Ok(None) => {
                tracing::info!(
                    "mail.smtp_url is unset: no mail is sent, and the flows that need it are off \
                     (signup, password reset, address verification and change, invitations)"
                );
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "mail is off");
                None
            }
        };
        let (router, writes) = crate::http::router(auth.clone(), settings.clone(), self.pages);
        // Verifiers compare `iss` with the URL they were given: say which one tokens carry.
        tracing::info!(issuer = %settings.tokens.issuer, "access tokens are issued by");
        if let Ok(bound) = self.listener.local_addr() {
            warn_if_issuer_elsewhere(&settings.tokens.issuer, bound);
        }
        if settings.publish_ahead() < MIN_PUBLISH_AHEAD {
            tracing::warn!(
                publish_ahead = ?settings.publish_ahead(),
                "keys.publish_ahead is under 30s: verifiers that refetch the JWKS on an unknown \
                 kid at most every 30s (PyJWT, jose, express-oauth2-jwt-bearer) will refuse \
                 tokens of a new key for a while after each rotation"
            );
        }
        match self.listener.local_addr() {
            Ok(addr) => tracing::info!(%addr, "tessera listening"),
            Err(_) => tracing::info!("tessera listening"),
        }
        crate::http::serve::serve(self.listener, router, writes, &settings.http, shutdown).await;
        upkeep.abort();
        backchannel.abort();
        if let Some(outbox) = outbox {
            outbox.abort();
        }
        // The audit rows still queued are written before the process ends.
        auth.stop_audit();
        let _ = audit.await;
        tracing::info!("tessera stopped");
    }
}

/// The shortest `keys.publish_ahead` common verifiers cope with: they refetch the JWKS on an
/// unknown `kid` at most every 30 s.
const MIN_PUBLISH_AHEAD: std::time::Duration = std::time::Duration::from_secs(30);

/// Resolves on SIGTERM or Ctrl-C.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    // The handlers are installed here, when the future is made (before the server says it
    // listens), not when it is first polled: a SIGTERM that follows "tessera listening" at
    // once must not meet the default action, which kills the process without draining.
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let int = async {
                match int.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            };
            tokio::select! { _ = int => {}, _ = term => {} }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested");
    }
}

/// A loopback `tokens.issuer` on another port than the one Tessera listens on is a missed
/// setting (`http.bind` changed alone): discovery, redirects and every token's `iss` would name
/// the other port, and clients' issuer checks fail with no word why. Behind a proxy the issuer
/// is the proxy's public URL, which is no loopback address.
fn warn_if_issuer_elsewhere(issuer: &str, bound: SocketAddr) {
    let Ok(url) = url::Url::parse(issuer) else {
        return;
    };
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if loopback && url.port_or_known_default() != Some(bound.port()) {
        tracing::warn!(
            issuer,
            listening_on = %bound,
            "tokens.issuer names another port than this server listens on: discovery, redirects \
             and the tokens' iss will point there; set tokens.issuer to this server's URL"
        );
    }
}
