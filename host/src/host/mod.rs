//! The host as a library: what a PBX written in Rust links, and what the HTTP API and the
//! CLI call. Both ingest doors (this Rust API and the HTTP/JSON API) end here.

mod admin;
mod budget;
mod data_dir;
mod delivery;
mod health;
mod ivr;
mod metrics;
mod recovery;
mod registry;
mod scheduler;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::capabilities::{HttpClient, NetPolicy, SecretStore, Services};
use crate::config::{self, ConfigError, PluginsFile};
use crate::runtime::bindings::types;
use crate::runtime::{EngineOptions, InvocationScope, Runtime};
use crate::store::Storage;

pub use admin::{AdminError, CheckResult, SecretView, TenantPluginView};
pub use data_dir::{DATABASE_FILE, DataDirError};
pub use delivery::IngestError;
pub use delivery::IngestReceipt;
pub use health::{
    DEFAULT_MIN_FREE_DISK_BYTES, FailedPlugin, PluginsCheck, QueueCheck, Readiness,
    ReadinessChecks, StorageCheck,
};
pub use recovery::RecoveryOptions;
pub use registry::{PluginEntry, PluginStatus, Registry, TenantEntry};

/// How to start a host.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// `plugins.toml`.
    pub config_path: PathBuf,
    /// Database, secrets and compile cache live here.
    pub data_dir: PathBuf,
    pub engine: EngineOptions,
    /// Operator-provided secrets loaded at start (TOML: `[tenant.plugin] name = "value"`).
    pub secrets_file: Option<PathBuf>,
    /// How often to look for a changed plugins.toml or component; `None`: never.
    pub reload_interval: Option<Duration>,
    /// Deliveries running at once.
    pub delivery_workers: usize,
    /// How often the scheduler looks for due schedules.
    pub schedule_tick: Duration,
    /// Readiness fails while the data directory's filesystem has less free space than this
    /// ([`DEFAULT_MIN_FREE_DISK_BYTES`]; `[host] min_free_disk_mib` in plugins.toml wins).
    pub min_free_disk_bytes: u64,
    /// Probing a tenant's failing CRM and releasing its backlog when it answers again.
    pub recovery: RecoveryOptions,
    /// The operator's API token; `None` leaves the HTTP API open (tests, local tools).
    pub operator_token: Option<String>,
    /// The key secrets are encrypted with at rest. `None`: a key file in the data directory
    /// (created on first start), which protects a copy of the secrets directory but not a
    /// copy of the whole data directory; operators should keep the key elsewhere.
    pub secret_key: Option<crate::capabilities::SecretKey>,
    /// This host's listen sockets, refused to plugins from the start, before any plugin runs
    /// (`pbx-host serve` binds first and lists its API here; [`crate::api::serve`] adds the
    /// socket it serves on in any case).
    pub listen_sockets: Vec<std::net::SocketAddr>,
}

impl HostOptions {
    pub fn new(config_path: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> Self {
        HostOptions {
            config_path: config_path.into(),
            data_dir: data_dir.into(),
            engine: EngineOptions::default(),
            secrets_file: None,
            reload_interval: Some(Duration::from_secs(2)),
            delivery_workers: 32,
            schedule_tick: Duration::from_secs(1),
            min_free_disk_bytes: DEFAULT_MIN_FREE_DISK_BYTES,
            recovery: RecoveryOptions::default(),
            operator_token: None,
            secret_key: None,
            listen_sockets: Vec::new(),
        }
    }
}

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Config(Vec<ConfigError>),
    /// The data directory or its database cannot be used.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("{0}")]
    Other(String),
}

pub(crate) struct Inner {
    pub runtime: Runtime,
    pub services: Arc<Services>,
    pub registry: RwLock<Arc<Registry>>,
    pub opts: HostOptions,
    pub base_dir: PathBuf,
    pub wake: Notify,
    pub shutdown: tokio_util_shutdown::Shutdown,
    pub invocation_seq: AtomicU64,
    pub config_stamp: RwLock<Option<std::time::SystemTime>>,
    pub operator_digest: Option<String>,
    /// The tenant admin's overrides, read once per (tenant, plugin) and kept: every event
    /// consults them. The admin methods write through and drop the cached entry.
    #[allow(clippy::type_complexity)]
    pub overrides: RwLock<
        std::collections::HashMap<(String, String), Option<crate::store::TenantPluginOverride>>,
    >,
    /// (tenant, plugin) -> until when its deliveries are paused because the CRM said its API
    /// limit is reached; events that arrive meanwhile wait too.
    pub paused: std::sync::Mutex<std::collections::HashMap<(String, String), i64>>,
    /// Deliveries being invoked now, and those finished since the delivery loop last looked.
    pub in_flight: std::sync::Mutex<delivery::InFlight>,
    /// Tenants' plugins whose CRM is failing: probed, and released when it answers again.
    pub outages: recovery::Outages,
    /// Delivery invocations per tenant's plugin in the current minute (budget.rs).
    pub budget: budget::InvocationBudget,
    /// When each delivery last ran: none re-runs sooner than the retry floor (budget.rs).
    pub recent_runs: budget::RecentRuns,
    /// When the delivery loop last started an iteration (ms since the epoch): readiness
    /// fails when it is older than a minute.
    pub loop_heartbeat: std::sync::atomic::AtomicI64,
    /// The readiness check's cached storage probe and failed ingest commits.
    pub health: health::HealthState,
    /// IVR look-ups that fell back at once (the tenant's share of instances in use), for
    /// one summarised line per interval in the tenant's log.
    pub ivr_refusals: ivr::RefusalLog,
}

/// A running host. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<Inner>,
}

mod tokio_util_shutdown {
    //! A tiny shutdown signal shared by the background tasks.
    use tokio::sync::watch;

    pub struct Shutdown {
        tx: watch::Sender<bool>,
    }
    impl Shutdown {
        pub fn new() -> Self {
            Shutdown {
                tx: watch::channel(false).0,
            }
        }
        pub fn trigger(&self) {
            self.tx.send_replace(true);
        }
        pub fn is_triggered(&self) -> bool {
            *self.tx.borrow()
        }
        pub async fn wait(&self) {
            let mut rx = self.tx.subscribe();
            while !*rx.borrow_and_update() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

fn private_networks(file: &PluginsFile) -> Vec<ipnet::IpNet> {
    file.host
        .allow_private_networks
        .iter()
        .filter_map(|n| n.get_ref().parse().ok())
        .collect()
}

fn private_endpoints(file: &PluginsFile) -> Vec<std::net::SocketAddr> {
    file.host
        .allow_private_endpoints
        .iter()
        .filter_map(|n| n.get_ref().parse().ok())
        .collect()
}

impl Host {
    /// Validate the configuration, open storage, load every plugin (skipping the ones that
    /// fail) and start the background workers (delivery, schedules, reload).
    pub async fn start(opts: HostOptions) -> Result<Host, StartError> {
        let file = config::load_file(&opts.config_path).map_err(StartError::Config)?;
        let other =
            |what: &str, e: &dyn std::fmt::Display| StartError::Other(format!("{what}: {e}"));
        let storage = data_dir::open_storage(&opts.data_dir)?;
        let key = match &opts.secret_key {
            Some(k) => k.clone(),
            None => data_dir_key(&opts.data_dir).map_err(|e| other("secret key", &e))?,
        };
        let secrets_dir = opts.data_dir.join("secrets");
        let secrets = SecretStore::open(&secrets_dir, &key).map_err(|e| {
            other(
                &format!("cannot open the secret store {}", secrets_dir.display()),
                &e,
            )
        })?;
        let http = HttpClient::with_endpoints(
            NetPolicy {
                allowed_internal: private_networks(&file),
            },
            private_endpoints(&file),
        )
        .map_err(|e| other("http client", &e))?;
        for addr in &opts.listen_sockets {
            http.protect_listen_socket(*addr);
        }
        let storage: Arc<dyn Storage> = Arc::new(storage);
        let services = Arc::new(Services {
            journal: crate::store::Journal::new(storage.clone()),
            storage,
            secrets,
            http,
        });
        services
            .journal
            .set_retention(crate::store::Retention::from_host(&file.host));
        if let Some(path) = &opts.secrets_file {
            load_secrets_file(&services.secrets, path)
                .map_err(|e| StartError::Other(e.to_string()))?;
        }
        let mut engine_opts = opts.engine.clone();
        if let Some(n) = file.host.max_concurrent_instances {
            engine_opts.max_instances = n;
        }
        if let Some(mib) = file.host.instance_memory_budget_mib {
            engine_opts.instance_memory_budget_mib = mib;
        }
        let compiled_dir = opts.data_dir.join("compiled");
        let runtime = Runtime::new(&engine_opts, Some(compiled_dir.clone())).map_err(|e| {
            other(
                &format!(
                    "cannot start the plugin engine (compile cache in {})",
                    compiled_dir.display()
                ),
                &e,
            )
        })?;
        let base_dir = opts
            .config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let base_dir = if base_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base_dir
        };
        let stamp = std::fs::metadata(&opts.config_path)
            .and_then(|m| m.modified())
            .ok();
        let registry = Registry::build(&runtime, file, &base_dir, None);
        let inner = Arc::new(Inner {
            runtime,
            services,
            registry: RwLock::new(Arc::new(registry)),
            base_dir,
            wake: Notify::new(),
            shutdown: tokio_util_shutdown::Shutdown::new(),
            invocation_seq: AtomicU64::new(0),
            config_stamp: RwLock::new(stamp),
            operator_digest: opts.operator_token.as_deref().map(crate::auth::digest),
            in_flight: Default::default(),
            outages: Default::default(),
            budget: Default::default(),
            recent_runs: Default::default(),
            loop_heartbeat: std::sync::atomic::AtomicI64::new(crate::clock::now_ms()),
            health: Default::default(),
            ivr_refusals: Default::default(),
            overrides: Default::default(),
            paused: Default::default(),
            opts,
        });
        let host = Host { inner };
        tokio::spawn(delivery::run(host.clone()));
        let stopping = host.clone();
        tokio::spawn(
            host.inner
                .services
                .journal
                .clone()
                .run(async move { stopping.inner.shutdown.wait().await }),
        );
        tokio::spawn(scheduler::run(host.clone()));
        tokio::spawn(budget::report_excess(host.clone()));
        if let Some(every) = host.inner.opts.reload_interval {
            tokio::spawn(reload_loop(host.clone(), every));
        }
        Ok(host)
    }

    /// The registry in force now.
    pub fn registry(&self) -> Arc<Registry> {
        self.inner
            .registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Never let a plugin reach `addr`, a listen socket of this host (its API or another
    /// listener of the embedding PBX), whatever `[host]` allows.
    pub fn protect_listen_socket(&self, addr: std::net::SocketAddr) {
        self.inner.services.http.protect_listen_socket(addr);
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.inner.services.storage
    }

    pub fn allocator(&self) -> crate::runtime::AllocatorKind {
        self.inner.runtime.allocator()
    }

    /// What loading reported for every declared plugin.
    pub fn plugin_statuses(&self) -> Vec<PluginStatus> {
        self.registry().statuses()
    }

    /// Re-read plugins.toml and reload changed components. A file that fails validation is
    /// reported and the running configuration stays; work in flight is not interrupted.
    pub fn reload(&self) -> Result<Vec<PluginStatus>, Vec<ConfigError>> {
        let file = config::load_file(&self.inner.opts.config_path)?;
        self.inner
            .services
            .journal
            .set_retention(crate::store::Retention::from_host(&file.host));
        let old = self.registry();
        let new = Registry::build(&self.inner.runtime, file, &self.inner.base_dir, Some(&old));
        let statuses = new.statuses();
        *self
            .inner
            .registry
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        *self
            .inner
            .config_stamp
            .write()
            .unwrap_or_else(|p| p.into_inner()) = std::fs::metadata(&self.inner.opts.config_path)
            .and_then(|m| m.modified())
            .ok();
        self.inner.wake.notify_one();
        Ok(statuses)
    }

    /// Stop taking work: the background workers stop, deliveries in flight finish (each is
    /// bounded by its plugin's wall-clock limit; this waits at most `grace`), pending ones
    /// stay queued for the next start. Returns how many were still running at the end.
    pub async fn shutdown_within(&self, grace: Duration) -> usize {
        self.inner.shutdown.trigger();
        self.inner.wake.notify_waiters();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let running = self
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .running
                .len();
            if running == 0 || tokio::time::Instant::now() >= deadline {
                if let Err(e) = self.inner.services.journal.flush() {
                    tracing::error!("cannot write the integration log at shutdown: {e}");
                }
                return running;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// [`Host::shutdown_within`] with a 30-second grace period.
    pub async fn shutdown(&self) {
        let left = self.shutdown_within(Duration::from_secs(30)).await;
        if left > 0 {
            tracing::warn!(
                "{left} deliveries were still running at shutdown; they stay queued and run again"
            );
        }
    }

    /// The settings in force for a tenant's plugin: plugins.toml overlaid with what the
    /// tenant admin changed through the admin API.
    pub(crate) fn effective(
        &self,
        registry: &Registry,
        tenant: &str,
        plugin: &str,
    ) -> Result<(bool, serde_json::Value), AdminError> {
        let t = registry
            .tenants
            .get(tenant)
            .ok_or_else(|| AdminError::UnknownTenant(tenant.into()))?;
        if !registry.plugins.contains_key(plugin) {
            return Err(AdminError::UnknownPlugin(plugin.into()));
        }
        let from_file = t.decl.plugins.get(plugin).map(|p| p.get_ref());
        let mut enabled = from_file.is_some_and(|p| p.enabled);
        let mut config = from_file
            .and_then(|p| p.config.as_ref())
            .and_then(|c| serde_json::to_value(c.get_ref()).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        if let Some(o) = self.tenant_override(tenant, plugin)? {
            if let Some(e) = o.enabled {
                enabled = e;
            }
            if let Some(c) = o.config {
                config = c;
            }
        }
        Ok((enabled, config))
    }

    fn tenant_override(
        &self,
        tenant: &str,
        plugin: &str,
    ) -> Result<Option<crate::store::TenantPluginOverride>, AdminError> {
        let key = (tenant.to_string(), plugin.to_string());
        if let Some(o) = self
            .inner
            .overrides
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(o.clone());
        }
        let o = self
            .storage()
            .override_get(tenant, plugin)
            .map_err(|e| AdminError::Storage(e.to_string()))?;
        self.inner
            .overrides
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, o.clone());
        Ok(o)
    }

    /// Forget the cached override after the admin changed it.
    pub(crate) fn override_changed(&self, tenant: &str, plugin: &str) {
        self.inner
            .overrides
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(tenant.to_string(), plugin.to_string()));
    }

    /// Everything an invocation needs about who it runs for.
    pub(crate) fn scope(
        &self,
        tenant: &TenantEntry,
        plugin: &PluginEntry,
        config: serde_json::Value,
    ) -> (InvocationScope, types::Context) {
        let seq = self.inner.invocation_seq.fetch_add(1, Ordering::Relaxed);
        let invocation_id: Arc<str> = format!("{}-{seq}", uuid::Uuid::new_v4().simple()).into();
        let ctx = types::Context {
            tenant_id: tenant.id.clone(),
            plugin_id: plugin.id.clone(),
            invocation_id: invocation_id.to_string(),
            config: config.to_string(),
            attempt: 0,
        };
        let scope = InvocationScope {
            services: self.inner.services.clone(),
            tenant_id: tenant.id.as_str().into(),
            default_country: tenant.decl.default_country.as_str().into(),
            plugin_id: plugin.id.as_str().into(),
            grants: plugin.grants.clone(),
            limits: plugin.limits.clone(),
            config: Arc::new(config),
            invocation_id,
        };
        (scope, ctx)
    }
}

/// The key file kept in the data directory when the operator gives none.
fn data_dir_key(data_dir: &Path) -> anyhow::Result<crate::capabilities::SecretKey> {
    use crate::capabilities::SecretKey;
    let path = data_dir.join("secret.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => SecretKey::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate();
            let cannot_write = |e: std::io::Error| {
                anyhow::anyhow!(
                    "cannot write {} ({e}): make the data directory writable, or give --secret-key-file",
                    path.display()
                )
            };
            std::fs::write(&path, key.to_hex()).map_err(cannot_write)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(cannot_write)?;
            }
            tracing::warn!(
                "no secret key given: generated {} (keep the key apart from the data: --secret-key-file)",
                path.display()
            );
            Ok(key)
        }
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Load `[tenant.plugin] name = "value"` secrets into the store.
fn load_secrets_file(store: &SecretStore, path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read secrets file {}: {e}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("secrets file {}: {}", path.display(), e.message()))?;
    for (tenant, plugins) in &table {
        let Some(plugins) = plugins.as_table() else {
            anyhow::bail!(
                "secrets file {}: [{tenant}] must be a table of plugins",
                path.display()
            );
        };
        for (plugin, secrets) in plugins {
            let Some(secrets) = secrets.as_table() else {
                anyhow::bail!(
                    "secrets file {}: [{tenant}.{plugin}] must be a table of secrets",
                    path.display()
                );
            };
            for (name, value) in secrets {
                let Some(value) = value.as_str() else {
                    anyhow::bail!(
                        "secrets file {}: {tenant}.{plugin}.{name} must be a string",
                        path.display()
                    );
                };
                store.set(tenant, plugin, name, value).map_err(|e| {
                    anyhow::anyhow!(
                        "secrets file {}: {tenant}.{plugin}.{name}: {e}",
                        path.display()
                    )
                })?;
            }
        }
    }
    Ok(())
}

async fn reload_loop(host: Host, every: Duration) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = host.inner.shutdown.wait() => return,
        }
        let path = &host.inner.opts.config_path;
        let stamp = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let config_changed = stamp
            != *host
                .inner
                .config_stamp
                .read()
                .unwrap_or_else(|p| p.into_inner());
        if !config_changed && !host.registry().components_changed() {
            continue;
        }
        match host.reload() {
            Ok(statuses) => tracing::info!(plugins = statuses.len(), "configuration reloaded"),
            Err(errors) => {
                // Keep the running configuration; remember the stamp so the same broken file
                // is reported once.
                *host
                    .inner
                    .config_stamp
                    .write()
                    .unwrap_or_else(|p| p.into_inner()) = stamp;
                for e in errors {
                    tracing::error!("reload refused, keeping the running configuration: {e}");
                }
            }
        }
    }
}
