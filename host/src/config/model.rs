//! The typed shape of `plugins.toml`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PluginsFile {
    /// Operator settings for the host itself.
    #[serde(default)]
    pub host: HostSettings,
    /// Plugins by id.
    #[serde(default)]
    pub plugins: BTreeMap<String, Spanned<PluginDecl>>,
    /// Tenants by id.
    #[serde(default)]
    pub tenants: BTreeMap<String, Spanned<TenantDecl>>,
}

/// Operator-only settings. Neither a plugin nor a tenant can change these.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HostSettings {
    /// Private, loopback and link-local networks that plugins may reach anyway (CIDR list).
    /// Empty by default: a plugin can never reach the operator's internal network or a cloud
    /// metadata endpoint unless the operator lists it here (the tests and the demo list
    /// 127.0.0.0/8 for the local Salesforce stand-in).
    #[serde(default)]
    pub allow_private_networks: Vec<Spanned<String>>,
    /// Single internal endpoints (`address:port`, e.g. `127.0.0.1:18089`, `[::1]:8443`)
    /// plugins may reach: narrower than a network (the demo opens only its Salesforce
    /// stand-in this way). The host's own listen sockets stay refused whatever is listed.
    #[serde(default)]
    pub allow_private_endpoints: Vec<Spanned<String>>,
    /// Concurrent plugin instances on this host (sizes the pooling allocator).
    pub max_concurrent_instances: Option<u32>,
    /// The sum of the memory limits (`memory_mib`) of the instances alive at once, in MiB
    /// (default [`crate::runtime::DEFAULT_INSTANCE_MEMORY_BUDGET_MIB`]): an invocation waits
    /// (an IVR look-up falls back at once) until its plugin's limit fits.
    pub instance_memory_budget_mib: Option<u64>,
    /// How long an event keeps being retried before it is dead-lettered, in seconds.
    pub retry_horizon_seconds: Option<u64>,
    /// Readiness (`/readyz`) fails when the data directory's filesystem has less free space
    /// than this, in MiB (default: [`crate::HostOptions::min_free_disk_bytes`], 8 MiB).
    pub min_free_disk_mib: Option<u64>,
    /// The shortest wait before a delivery is retried, in ms (default 1000): a plugin's
    /// `retry_after_ms`, the backoff and a rate-limit pause below it are raised to it, so a
    /// plugin cannot make the host retry in a tight loop.
    pub min_retry_delay_ms: Option<u64>,
    /// Invocations a tenant's plugin may have per minute (deliveries and their retries; not
    /// IVR look-ups), unless the plugin's `[limits]` sets its own (default 600). Deliveries
    /// over it wait for the next minute.
    pub invocations_per_minute: Option<u32>,
    /// Integration-log lines older than this are pruned, in days (default 14).
    pub log_retention_days: Option<u64>,
    /// Integration-log lines kept per tenant at most; the oldest go first (default 100,000).
    pub log_rows_per_tenant: Option<u64>,
    /// Dead letters are kept this long after they died, in days (default 30).
    pub dead_letter_retention_days: Option<u64>,
    /// Phone-book entries per tenant, all plugins together (default 200,000).
    pub contacts_per_tenant: Option<u64>,
    /// Bytes of a phone-book entry's name, company and e-mail each (default 1,024).
    pub contact_text_bytes: Option<u64>,
    /// Bytes of a phone-book entry's external id, record type, account id and of each phone
    /// label and number (default 256).
    pub contact_field_bytes: Option<u64>,
    /// Phone numbers per phone-book entry (default 10).
    pub contact_phones_per_entry: Option<u64>,
}

/// One plugin: where its component is, what it may touch, its limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginDecl {
    /// Path of the `.wasm` component, relative to the directory of `plugins.toml`.
    pub component: Spanned<PathBuf>,
    /// The plugin's own version (shown in the admin surface).
    #[serde(default)]
    pub version: Option<String>,
    /// A one-line description for the admin surface.
    #[serde(default)]
    pub description: Option<String>,
    /// Call-event kinds delivered to the plugin (e.g. "ended", "memo-updated"); `["*"]` for all.
    #[serde(default)]
    pub events: Vec<Spanned<String>>,
    /// Periodic runs: schedule name -> default interval in seconds (a tenant may override it).
    #[serde(default)]
    pub schedules: BTreeMap<String, Spanned<u64>>,
    /// What the plugin may touch. Everything not granted is denied.
    #[serde(default)]
    pub grants: Grants,
    /// Per-invocation limits; unset ones take the host defaults.
    #[serde(default)]
    pub limits: LimitsDecl,
    /// Batched delivery for plugins that export `event-batch-handler`: when a tenant's
    /// events for this plugin arrive faster than `window_ms`, they are handed over together.
    #[serde(default)]
    pub batch: Option<BatchDecl>,
}

/// Batched delivery settings.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BatchDecl {
    /// At most one dispatch per window per tenant; what arrives in between waits for it.
    pub window_ms: u64,
    /// Events per batch at most.
    #[serde(default = "default_max_events")]
    pub max_events: u32,
}

fn default_max_events() -> u32 {
    200
}

/// Capabilities granted to a plugin. Deny by default.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// URL patterns the plugin may send HTTP requests to: `scheme://host[:port][/path-prefix]`,
    /// where the host may start with `*.`, and `{config.KEY}` takes the value of a tenant setting
    /// (how a tenant's own login host, My Domain or instance URL is allowed).
    #[serde(default)]
    pub http: Vec<Spanned<String>>,
    /// Secret names the plugin may read (the tenant's values only).
    #[serde(default)]
    pub secrets: Vec<Spanned<String>>,
    /// May keep durable state for itself.
    #[serde(default)]
    pub state: bool,
    /// Access to the tenant's phone book.
    #[serde(default)]
    pub contacts: ContactsGrant,
}

/// How far a plugin may touch the tenant's phone book.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ContactsGrant {
    /// No access.
    #[default]
    None,
    /// Look-ups only.
    Read,
    /// Look-ups, and upserts and deletions of the entries this plugin wrote.
    ReadWrite,
    /// Look-ups, and upserts and deletions of any entry, also those other plugins wrote.
    ReadWriteAll,
}

/// Per-invocation limits as written in the file (all optional).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsDecl {
    pub cpu_ms: Option<u64>,
    pub memory_mib: Option<u64>,
    pub wall_ms: Option<u64>,
    pub http_requests: Option<u32>,
    pub http_request_bytes: Option<u64>,
    pub http_response_bytes: Option<u64>,
    pub log_lines: Option<u32>,
    pub log_line_bytes: Option<u32>,
    pub return_bytes: Option<u64>,
    pub state_bytes: Option<u64>,
    /// Invocations of this plugin per tenant per minute; overrides `[host] invocations_per_minute`.
    pub invocations_per_minute: Option<u32>,
}

/// A tenant: its defaults and the plugins it enabled.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantDecl {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// ISO country for national phone numbers (JP for the seeds' tenants).
    #[serde(default = "default_country")]
    pub default_country: String,
    /// The tenant's language for default texts ("ja", "en").
    #[serde(default)]
    pub language: Option<String>,
    /// What the PBX gets when an IVR look-up fails or is late.
    #[serde(default)]
    pub ivr_fallback: IvrFallback,
    /// Plugin id -> the tenant's settings for it.
    #[serde(default)]
    pub plugins: BTreeMap<String, Spanned<TenantPluginDecl>>,
    /// Plugins the operator offers to this tenant besides those configured for it in
    /// `plugins` (which are offered too): the tenant admin may enable, configure and set
    /// secrets only for offered plugins. Absent: only the configured ones.
    #[serde(default)]
    pub offered: Vec<Spanned<String>>,
}

impl TenantDecl {
    /// Has the operator offered `plugin` to this tenant (listed in `offered`, or configured
    /// for it in `[tenants.X.plugins.*]`)?
    pub fn offers(&self, plugin: &str) -> bool {
        self.plugins.contains_key(plugin) || self.offered.iter().any(|p| p.get_ref() == plugin)
    }
}

fn default_country() -> String {
    "JP".to_string()
}

/// The decision the PBX gets when the plugin cannot answer in time.
#[derive(Debug, Clone, Deserialize, Default, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IvrFallback {
    pub speech: Option<String>,
    pub route: Option<String>,
}

/// A tenant's settings for one plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPluginDecl {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Free-form settings passed to the plugin as JSON. Never secrets.
    #[serde(default)]
    pub config: Option<Spanned<toml::Table>>,
    /// Schedule name -> interval in seconds, overriding the plugin's default.
    #[serde(default)]
    pub schedules: BTreeMap<String, u64>,
    /// The tenant's batch window, overriding the plugin's (0 turns batching off).
    #[serde(default)]
    pub batch_window_ms: Option<u64>,
}

fn yes() -> bool {
    true
}
