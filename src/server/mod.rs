//! `coffer serve`: an embedded document store with history, users and
//! tokens, and the backup & restore engine, over HTTP.
//!
//! ```text
//! store/    SQLite (WAL): databases, collections, documents, commits, branches, users, tokens, jobs
//! backup/   the engine: jobs, the object_store backend, snapshot → bundle → seal, restore
//! api/      routes: the native API under /api/v1, /metrics, /healthz
//! ```
//!
//! Tests drive it as a library: build a [`Config`], [`AppState::open`] it,
//! bind `127.0.0.1:0`, and [`serve`] on that listener.

pub mod api;
pub mod backup;
pub mod error;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use serde::Deserialize;
use tokio::net::TcpListener;

use self::backup::{Backend, Engine, EngineConfig};
use self::error::{ApiError, ApiResult};
use self::store::Store;
use crate::seal;

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./coffer-data";
/// Default listening address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6363";
/// Name of the SQLite file in the data directory.
pub const DB_FILE: &str = "coffer.sqlite";
/// Name of the server's X25519 identity file in the data directory.
pub const IDENTITY_FILE: &str = "identity.txt";

/// Server configuration: defaults, then a JSON config file, then
/// `COFFER_*` environment variables, then command-line flags.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the database, the identity and (by default) backups live.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Backups directory (filesystem backend); default `<data_dir>/backups`.
    pub backup_dir: Option<PathBuf>,
    /// Password of the first `admin` user (only read on first start).
    pub admin_password: Option<String>,
    /// Largest JSON request body, bytes.
    pub max_body: usize,
    /// Largest upload (`/backups/import`), bytes.
    pub max_upload: u64,
    /// Backup and restore jobs that run at once.
    pub backup_concurrency: usize,
    /// Bytes per second one backup may write, and one restore read (0 = unlimited).
    pub backup_rate_limit: u64,
    /// Compression/encryption threads per backup (0 = all cores).
    pub backup_threads: usize,
    /// Niceness added to a backup's threads (Linux, where it is per
    /// thread; 0..=19, 0 = none): a backup uses idle cores at full speed
    /// but yields them to the server's writers and readers.
    pub backup_nice: i32,
    /// Runs a backup's threads under SCHED_IDLE (Linux): a writer that wakes
    /// up takes the core at once instead of waiting for the backup thread's
    /// time slice, which a niceness alone does not give. A backup then only
    /// uses cores nothing else wants.
    pub backup_idle: bool,
    /// Seconds the Argon2id work memory of passphrase backups, restores,
    /// verifies and imports (64 MiB) stays allocated after its last use, so
    /// that jobs in a row do not each allocate and fault it in again
    /// (0.2–0.3 s on a VM that hands freed memory back to its host). It is
    /// zeroed after every use. 0 = allocate it per job.
    pub kdf_keep_seconds: u64,
    /// Extra X25519 recipients (`coffer1…`) of `recipients` backups.
    pub recipients: Vec<String>,
    /// Backups the server makes by itself (`method: periodic`).
    pub periodic: Vec<Periodic>,
}

/// A periodic backup: every `every_seconds`, the `databases`, sealed to the
/// server's recipients (or with integrity only when `encryption` is `none`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Periodic {
    /// `org/db` names (one organization).
    pub databases: Vec<String>,
    /// Interval in seconds (≥ 1).
    pub every_seconds: u64,
    /// `recipients` (default) or `none`.
    #[serde(default)]
    pub encryption: Option<String>,
    /// Collections to include.
    #[serde(default)]
    pub include: Option<Vec<String>>,
    /// Collections to exclude.
    #[serde(default)]
    pub exclude: Option<Vec<String>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            backup_dir: None,
            admin_password: None,
            max_body: 32 << 20,
            max_upload: 64 << 30,
            backup_concurrency: 2,
            backup_rate_limit: 0,
            backup_threads: 0,
            backup_nice: 10,
            backup_idle: true,
            kdf_keep_seconds: 60,
            recipients: Vec::new(),
            periodic: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("backup_dir", &self.backup_dir)
            .field("admin_password", &self.admin_password.as_ref().map(|_| "<redacted>"))
            .field("max_body", &self.max_body)
            .field("max_upload", &self.max_upload)
            .field("backup_concurrency", &self.backup_concurrency)
            .field("backup_rate_limit", &self.backup_rate_limit)
            .field("backup_threads", &self.backup_threads)
            .field("backup_nice", &self.backup_nice)
            .field("backup_idle", &self.backup_idle)
            .field("kdf_keep_seconds", &self.kdf_keep_seconds)
            .field("recipients", &self.recipients)
            .field("periodic", &self.periodic)
            .finish()
    }
}

fn env_parse<T: std::str::FromStr>(name: &str, slot: &mut T) -> Result<(), String> {
    if let Ok(v) = std::env::var(name) {
        *slot = v.parse().map_err(|_| format!("{name}: cannot parse {v:?}"))?;
    }
    Ok(())
}

impl Config {
    /// Reads a JSON config file.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Applies `COFFER_*` environment variables.
    pub fn apply_env(&mut self) -> Result<(), String> {
        if let Ok(v) = std::env::var("COFFER_DATA_DIR") {
            self.data_dir = v.into();
        }
        env_parse("COFFER_LISTEN", &mut self.listen)?;
        if let Ok(v) = std::env::var("COFFER_BACKUP_DIR") {
            self.backup_dir = Some(v.into());
        }
        if let Ok(v) = std::env::var("COFFER_ADMIN_PASSWORD") {
            self.admin_password = Some(v);
        }
        env_parse("COFFER_MAX_BODY", &mut self.max_body)?;
        env_parse("COFFER_MAX_UPLOAD", &mut self.max_upload)?;
        env_parse("COFFER_BACKUP_CONCURRENCY", &mut self.backup_concurrency)?;
        env_parse("COFFER_BACKUP_RATE_LIMIT", &mut self.backup_rate_limit)?;
        env_parse("COFFER_BACKUP_THREADS", &mut self.backup_threads)?;
        env_parse("COFFER_BACKUP_NICE", &mut self.backup_nice)?;
        env_parse("COFFER_BACKUP_IDLE", &mut self.backup_idle)?;
        env_parse("COFFER_KDF_KEEP_SECONDS", &mut self.kdf_keep_seconds)?;
        if let Ok(v) = std::env::var("COFFER_RECIPIENTS") {
            self.recipients = v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
        }
        Ok(())
    }

    /// A configuration for `data_dir`, everything else default (tests).
    pub fn for_dir(data_dir: &Path) -> Self {
        Self { data_dir: data_dir.to_path_buf(), ..Self::default() }
    }
}

/// A secret from a request body (password, passphrase): zeroized on drop,
/// redacted in `Debug`.
#[derive(Clone, Default)]
pub struct Secret(pub zeroize::Zeroizing<String>);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Secret(zeroize::Zeroizing::new(String::deserialize(d)?)))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Deref for Secret {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Shared state of all handlers.
pub struct Inner {
    /// Configuration.
    pub config: Config,
    /// The store.
    pub store: Arc<Store>,
    /// The engine.
    pub engine: Arc<Engine>,
    /// Key of signed download links.
    pub link_key: [u8; 32],
    /// HTTP counters.
    pub http: api::HttpMetrics,
    /// Basic-auth password checks (bounded, successes remembered).
    pub passwords: store::auth::PasswordChecks,
}

/// Cheap-to-clone handle on [`Inner`].
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

fn load_identity(path: &Path) -> ApiResult<seal::Identity> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut ids = seal::Identity::parse_file(&text)?;
            if ids.is_empty() {
                return Err(ApiError::invalid(format!("{} holds no identity", path.display())));
            }
            Ok(ids.remove(0))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let identity = seal::Identity::generate()?;
            let tmp = path.with_extension("tmp");
            {
                use std::io::Write;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut f = options.open(&tmp)?;
                f.write_all(identity.to_file_string().as_bytes())?;
                f.sync_all()?;
            }
            std::fs::rename(&tmp, path)?;
            Ok(identity)
        }
        Err(e) => Err(e.into()),
    }
}

impl AppState {
    /// Opens the data directory (creating it on first start), recovers
    /// interrupted jobs, and returns the state and, on first start without
    /// `admin_password`, the generated admin password (to print once).
    pub async fn open(config: Config) -> ApiResult<(Self, Option<String>)> {
        std::fs::create_dir_all(&config.data_dir)?;
        let store = Arc::new(Store::open(&config.data_dir.join(DB_FILE))?);
        let node = store.meta_or_init("node_id", || uuid::Uuid::new_v4().to_string())?;
        let link_hex = store.meta_or_init("link_key", store::auth::random_secret)?;
        let mut link_key = [0u8; 32];
        hex::decode_to_slice(&link_hex, &mut link_key).map_err(|_| ApiError::internal("stored link key is not hex"))?;
        let password = config.admin_password.clone();
        let generated = store.run_write(move |tx| store::auth::bootstrap(tx, password.as_deref())).await?;
        let identity = load_identity(&config.data_dir.join(IDENTITY_FILE))?;
        let recipients = config.recipients.iter().map(|r| r.parse::<seal::PublicKey>()).collect::<crate::Result<Vec<_>>>()?;
        let backup_dir = config.backup_dir.clone().unwrap_or_else(|| config.data_dir.join("backups"));
        let backend = Backend::local(&backup_dir)?;
        let engine_config = EngineConfig {
            concurrency: config.backup_concurrency,
            rate_limit: config.backup_rate_limit,
            threads: config.backup_threads,
            nice: config.backup_nice,
            idle: config.backup_idle,
        };
        keep_kdf_memory_until_idle(config.kdf_keep_seconds);
        let engine = Arc::new(Engine::new(store.clone(), backend, node, engine_config, identity, recipients));
        engine.recover().await?;
        for schedule in &config.periodic {
            engine.clone().schedule(schedule.clone())?;
        }
        let state = AppState(Arc::new(Inner {
            config,
            store,
            engine,
            link_key,
            http: api::HttpMetrics::default(),
            // As many password checks at once as cores: more only queue for them.
            passwords: store::auth::PasswordChecks::new(std::thread::available_parallelism().map_or(2, usize::from))?,
        }));
        Ok((state, generated))
    }
}

/// Keeps the Argon2id work area of the server's own sealing parameters
/// (files asking for more memory allocate their own) and frees it once no
/// derivation has used it for `seconds` (checked every `seconds`, so it goes
/// between one and two such periods after the last use).
fn keep_kdf_memory_until_idle(seconds: u64) {
    if seconds == 0 {
        return;
    }
    seal::keep_kdf_memory(seal::KdfParams::default().memory_kib);
    let period = std::time::Duration::from_secs(seconds);
    tokio::spawn(async move {
        let mut seen = seal::kdf_memory_uses();
        loop {
            tokio::time::sleep(period).await;
            let uses = seal::kdf_memory_uses();
            if uses == seen {
                seal::release_kdf_memory();
            }
            seen = uses;
        }
    });
}

/// The application: every route, with its state.
pub fn app(state: AppState) -> Router {
    api::router(state)
}

/// Serves `app(state)` on `listener` until `shutdown` resolves, then
/// finishes the requests in flight.
pub async fn serve(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}

/// Resolves on Ctrl-C or SIGTERM.
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
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

const USAGE: &str = "usage: coffer serve [--data-dir DIR] [--listen ADDR] [--config FILE.json]

Environment: COFFER_DATA_DIR, COFFER_LISTEN, COFFER_BACKUP_DIR, COFFER_ADMIN_PASSWORD,
COFFER_MAX_BODY, COFFER_MAX_UPLOAD, COFFER_BACKUP_CONCURRENCY, COFFER_BACKUP_RATE_LIMIT,
COFFER_BACKUP_THREADS, COFFER_RECIPIENTS, COFFER_CONFIG, RUST_LOG.";

/// Parses `coffer serve` arguments into a configuration.
pub fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut config_file = std::env::var("COFFER_CONFIG").ok().map(PathBuf::from);
    let mut data_dir = None;
    let mut listen = None;
    let mut i = 0;
    while i < args.len() {
        let (flag, inline) = match args[i].split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (args[i].clone(), None),
        };
        let mut value = || -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            i += 1;
            args.get(i).cloned().ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--data-dir" => data_dir = Some(PathBuf::from(value()?)),
            "--listen" => listen = Some(value()?.parse::<SocketAddr>().map_err(|e| format!("--listen: {e}"))?),
            "--config" => config_file = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
        i += 1;
    }
    let mut config = match config_file {
        Some(path) => Config::from_file(&path)?,
        None => Config::default(),
    };
    config.apply_env()?;
    if let Some(d) = data_dir {
        config.data_dir = d;
    }
    if let Some(l) = listen {
        config.listen = l;
    }
    Ok(config)
}

/// `coffer serve …`: runs the server until Ctrl-C/SIGTERM; returns the exit code.
pub fn run_cli(args: Vec<String>) -> i32 {
    let config = match parse_args(&args) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("{msg}");
            return if msg == USAGE { 0 } else { 2 };
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(async move {
        let listen = config.listen;
        let data_dir = config.data_dir.clone();
        let (state, generated) = match AppState::open(config).await {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error[{}]: {}", e.code, e.message);
                return 1;
            }
        };
        if let Some(password) = generated {
            // Printed once, on first start only; never logged.
            eprintln!("created user 'admin' with password: {password}\n(set COFFER_ADMIN_PASSWORD before the first start to choose it)");
        }
        let listener = match TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error[IO]: cannot listen on {listen}: {e}");
                return 1;
            }
        };
        let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(address = %local, data_dir = %data_dir.display(), node = %state.engine.node(), "coffer serve listening");
        eprintln!("listening on http://{local}");
        match serve(listener, state, shutdown_signal()).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error[IO]: {e}");
                1
            }
        }
    })
}
