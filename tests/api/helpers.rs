//! The test harness: a real Tessera on port 0, on SQLite or on its own Postgres database.
//!
//! Postgres comes from `TESSERA_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! Each test creates and drops its own database. When Postgres is unreachable the Postgres
//! variants are skipped with a message on stderr, unless `CI` or `TESSERA_REQUIRE_POSTGRES` is
//! set, in which case they fail.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde_json::Value;
use sqlx::{Connection, Executor};
use tessera::app::Application;
use tessera::auth::keys::{KeyRing, MasterKey, SigningKey};
use tessera::auth::Auth;
use tessera::config::{Settings, DEFAULT_TOML};
use tessera::store::Store;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a scenario `async fn name(b: Backend)` once per backend.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}

pub const PASSWORD: &str = "correct horse battery staple";

pub fn pg_admin_url() -> String {
    std::env::var("TESSERA_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn pg_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("TESSERA_REQUIRE_POSTGRES").is_some()
}

/// Whether the Postgres suite runs. Checked once per process.
pub async fn postgres_available() -> bool {
    static AVAILABLE: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    *AVAILABLE
        .get_or_init(|| async {
            let ok = tokio::time::timeout(
                Duration::from_secs(3),
                sqlx::PgConnection::connect(&pg_admin_url()),
            )
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false);
            if !ok {
                if pg_required() {
                    panic!(
                        "Postgres at {} is unreachable and CI requires the Postgres suite",
                        pg_admin_url()
                    );
                }
                // Written straight to stderr: the test harness captures println!, not this.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** Postgres suite SKIPPED: no server at {} (set TESSERA_TEST_PG_URL). \
                     Only the SQLite suite ran. ***\n",
                    pg_admin_url()
                );
            }
            ok
        })
        .await
}

/// Where a test's database lives, removed when the test ends.
pub enum Db {
    Sqlite {
        dir: PathBuf,
        url: String,
    },
    Postgres {
        name: String,
        url: String,
    },
    /// Another TestApp's database (a second replica); not dropped by this one.
    Shared {
        url: String,
    },
}

impl Db {
    pub async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir()
                    .join(format!("tessera-test-{}", uuid::Uuid::new_v4().simple()));
                std::fs::create_dir_all(&dir).unwrap();
                let url = format!("sqlite://{}/tessera.db", dir.display());
                Some(Db::Sqlite { dir, url })
            }
            Backend::Postgres => {
                if !postgres_available().await {
                    return None;
                }
                let name = format!("tessera_t_{}", uuid::Uuid::new_v4().simple());
                let mut c = sqlx::PgConnection::connect(&pg_admin_url()).await.unwrap();
                c.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .unwrap();
                let base = pg_admin_url();
                let root = base.rsplit_once('/').map(|(r, _)| r.to_string()).unwrap();
                Some(Db::Postgres {
                    url: format!("{root}/{name}"),
                    name,
                })
            }
        }
    }

    pub fn url(&self) -> &str {
        match self {
            Db::Sqlite { url, .. } | Db::Postgres { url, .. } | Db::Shared { url } => url,
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        match self {
            Db::Shared { .. } => {}
            Db::Sqlite { dir, .. } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Db::Postgres { name, .. } => {
                let name = name.clone();
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        if let Ok(mut c) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                            let _ = c
                                .execute(sqlx::AssertSqlSafe(format!(
                                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                                )))
                                .await;
                        }
                    })
                })
                .join();
            }
        }
    }
}

/// A fresh random master key.
pub fn master_key() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand_bytes();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b
}

/// The settings a test server runs with: the reference defaults (no environment), a free
/// port, the test's database and a fresh master key, then the test's own overrides.
pub fn test_figment(db_url: &str, master: &str) -> Figment {
    Figment::new()
        .merge(Toml::string(DEFAULT_TOML))
        .merge(Serialized::default("http.bind", "127.0.0.1:0"))
        .merge(Serialized::default("database.url", db_url))
        .merge(Serialized::default("keys.master_key", master))
        .merge(Serialized::default("http.request_timeout", "30s"))
        .merge(Serialized::default(
            "clients",
            serde_json::json!([{"id": CLIENT_ID, "secret": CLIENT_SECRET}]),
        ))
}

/// The confidential client every test server knows.
pub const CLIENT_ID: &str = "orders-api";
pub const CLIENT_SECRET: &str = "orders-api-secret-0123456789";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub auth: Arc<Auth>,
    /// The server's own store, for asserting and seeding stored state.
    pub store: Arc<dyn Store>,
    pub master_key: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    // Declared last: dropped after the server has stopped.
    pub db: Db,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, |f| f).await
    }

    /// Spawns with extra settings layered on top of the test defaults.
    pub async fn spawn_with(
        backend: Backend,
        tweak: impl FnOnce(Figment) -> Figment,
    ) -> Option<Self> {
        let db = Db::create(backend).await?;
        Some(Self::spawn_on(db, master_key(), tweak).await)
    }

    /// A second server on this one's database and master key: another replica.
    pub async fn replica(&self, tweak: impl FnOnce(Figment) -> Figment) -> Self {
        let db = Db::Shared {
            url: self.db.url().to_string(),
        };
        Self::spawn_on(db, self.master_key.clone(), tweak).await
    }

    async fn spawn_on(db: Db, master: String, tweak: impl FnOnce(Figment) -> Figment) -> Self {
        init_logs();
        let settings = Settings::from_figment(tweak(test_figment(db.url(), &master))).unwrap();
        let app = Application::build(settings).await.unwrap();
        let addr = app.local_addr().unwrap();
        let auth = app.auth();
        let store = app.store();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        Self {
            base: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            auth,
            store,
            master_key: master,
            shutdown: Some(tx),
            server: Some(server),
            db,
        }
    }

    /// Stops the server (and its background tasks) and waits for it, keeping the database:
    /// what a restart leaves behind, for a `replica` to start on.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    /// The key that signs now, built from the stored rows and the master key as any replica
    /// would: tests forge tokens with it.
    pub async fn signing_key(&self) -> Arc<SigningKey> {
        let rows = self.store.keys().await.unwrap();
        let master = MasterKey::from_base64(&SecretString::from(self.master_key.clone())).unwrap();
        let ring = KeyRing::build(&rows, &master, tessera::time::now_ms());
        ring.active().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A server on a fresh database of `backend` with one user, `name`, holding `roles`
    /// (password `PASSWORD`): the set-up most scenarios start from.
    pub async fn with_user(
        backend: Backend,
        name: &str,
        roles: &[&str],
    ) -> Option<(Self, tessera::auth::UserView)> {
        let app = Self::spawn(backend).await?;
        let user = app.create_user(name, roles).await;
        Some((app, user))
    }

    pub async fn create_user(&self, name: &str, roles: &[&str]) -> tessera::auth::UserView {
        self.auth
            .create_user(
                name,
                SecretString::from(PASSWORD),
                roles.iter().map(|r| r.to_string()).collect(),
                &tessera::auth::Caller::default(),
            )
            .await
            .unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/login",
            &serde_json::json!({"username": username, "password": password}),
        )
        .await
    }

    /// Logs in and returns the token response, asserting success.
    pub async fn login_ok(&self, username: &str) -> Value {
        let r = self.login(username, PASSWORD).await;
        assert_eq!(r.status(), 200, "login of {username} failed");
        r.json().await.unwrap()
    }

    pub async fn refresh(&self, token: &str) -> reqwest::Response {
        self.post_json("/refresh", &serde_json::json!({"refresh_token": token}))
            .await
    }

    /// A GET without credentials.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// A POST with a bearer token and no body (`/logout`, `/logout/all`).
    pub async fn post_bearer(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// The JWKS document; asserts a 200.
    pub async fn jwks(&self) -> Value {
        let r = self.get("/.well-known/jwks.json").await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// A form-encoded POST, with HTTP Basic client credentials if given.
    pub async fn form(
        &self,
        path: &str,
        params: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> reqwest::Response {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let mut req = self
            .client
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        req.send().await.unwrap()
    }

    /// RFC 7662 introspection as the test's confidential client; asserts a 200.
    pub async fn introspect(&self, token: &str) -> Value {
        let r = self
            .form(
                "/introspect",
                &[("token", token)],
                Some((CLIENT_ID, CLIENT_SECRET)),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store");
        r.json().await.unwrap()
    }

    /// A request to the admin API with a bearer token and an optional JSON body.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    pub async fn userinfo(&self, token: &str) -> reqwest::Response {
        self.client
            .get(self.url("/userinfo"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// For a change made by another process (a replica, the CLI): on Postgres it reaches this
    /// server's in-memory revocation state by NOTIFY, within milliseconds rather than before
    /// the writer returns. Polls `/userinfo` until it answers `status`, for at most 3 s.
    pub async fn userinfo_becomes(&self, token: &str, status: u16) {
        eventually(3, &format!("/userinfo answers {status}"), || async {
            self.userinfo(token).await.status().as_u16() == status
        })
        .await;
    }

    /// Asserts that neither token of a token response works any more: the access token is
    /// refused by /userinfo, then the refresh token by /refresh (401 both).
    pub async fn assert_pair_refused(&self, t: &Value) {
        let access = t["access_token"].as_str().unwrap();
        assert_eq!(
            self.userinfo(access).await.status(),
            401,
            "access token still accepted"
        );
        let refresh = t["refresh_token"].as_str().unwrap();
        assert_eq!(
            self.refresh(refresh).await.status(),
            401,
            "refresh token still accepted"
        );
    }

    /// Runs a scalar query against the test's database, for asserting stored state.
    pub async fn scalar_i64(&self, sql: &'static str, bind: &str) -> i64 {
        let url = self.db.url();
        if url.starts_with("sqlite") {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_scalar::<_, i64>(sql)
                .bind(bind)
                .fetch_one(&mut c)
                .await
                .unwrap()
        } else {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar::<_, i64>(sql)
                .bind(bind)
                .fetch_one(&mut c)
                .await
                .unwrap()
        }
    }

    /// Runs a statement on the test's database from a connection of its own: a write made
    /// behind the server's back (an operator's SQL, another process).
    pub async fn exec_sql(&self, sql: String) {
        let url = self.db.url();
        if url.starts_with("sqlite") {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await
                .unwrap();
        } else {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await
                .unwrap();
        }
    }

    /// The claims of a token we issued (no verification: the test only reads them).
    pub fn claims(token: &str) -> Value {
        use base64::Engine;
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            h.abort();
        }
    }
}

fn init_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("debug,sqlx=warn,hyper=info")
                .with_test_writer()
                .try_init();
        }
    });
}

/// The member names of a JSON object, sorted: the shape of an answer, pinned by tests.
pub fn members(v: &serde_json::Value) -> Vec<&str> {
    let mut names: Vec<&str> = v
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    names.sort_unstable();
    names
}

/// Polls `check` every 10 ms until it holds; fails the test after `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A TCP proxy in front of Postgres that a test can cut and restore, to inject database
/// outages without touching the shared server.
pub struct Proxy {
    pub port: u16,
    target: Arc<std::sync::RwLock<String>>,
    up: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: &str) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let target = Arc::new(std::sync::RwLock::new(target.to_string()));
        let accept = tokio::spawn({
            let (up, conns, target) = (up.clone(), conns.clone(), target.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let target = target.read().unwrap().clone();
                    let h = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    conns.lock().unwrap().push(h);
                }
            }
        });
        Self {
            port,
            target,
            up,
            conns,
            accept,
        }
    }

    /// Sends new connections to `target` (`host:port`) from now on.
    pub fn retarget(&self, target: &str) {
        *self.target.write().unwrap() = target.to_string();
    }

    /// Drops every open connection and refuses new ones, like a crashed database.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
