//! The host's durable storage: plugin state, phone books, integration logs, usage counters,
//! the delivery queue and the tenant admin's settings.
//!
//! One interface, [`Storage`], so that a PostgreSQL backend can serve several host processes
//! of one PBX cluster later; the embedded default is a SQLite file in WAL mode, so one machine
//! needs nothing else. Every method is scoped by tenant (and plugin where it applies): there
//! is no method that reaches across tenants on behalf of a plugin.
//!
//! The methods are synchronous: SQLite answers from the local file in microseconds, and a
//! blocking client fits the same shape for PostgreSQL.

mod journal;
mod sqlite;

pub use journal::{Journal, Pruned, Retention};
pub use sqlite::SqliteStorage;

use serde::Serialize;

/// Storage failures. The message never contains secret values, and no "storage:" prefix:
/// the caller says what it was doing (`storage unavailable: database or disk is full`).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0}")]
    Backend(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Backend(e.to_string())
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Bytes each state entry counts toward the plugin's state cap besides its key and value
/// (the row's own cost in the database), so that millions of empty keys are bounded too.
pub const STATE_ROW_OVERHEAD_BYTES: u64 = 32;

/// Whose phone-book entries an upsert or delete may replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactWriter<'a> {
    /// Only entries this plugin wrote (and new ones).
    Owner(&'a str),
    /// Any entry of the tenant (`contacts = "read-write-all"`).
    Any,
}

/// Why a checked phone-book write was refused; nothing of it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactRefusal {
    /// The entry belongs to another plugin.
    NotOwner { external_id: String },
    /// The tenant's phone book would hold more than `limit` entries.
    Full { limit: u64 },
}

/// One phone-book entry as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactRow {
    pub external_id: String,
    pub plugin: String,
    pub record_type: String,
    pub name: String,
    pub company: Option<String>,
    pub email: Option<String>,
    /// (label, number as given, E.164 form when it could be normalised)
    pub phones: Vec<PhoneRow>,
    pub account_id: Option<String>,
    pub modified_at: Option<i64>,
}

/// One number of a phone-book entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhoneRow {
    pub label: String,
    pub number: String,
    pub e164: Option<String>,
}

/// One line of a tenant's integration log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogEntry {
    pub id: i64,
    pub tenant: String,
    pub plugin: String,
    pub invocation: String,
    /// Milliseconds since the epoch.
    pub at: i64,
    pub level: String,
    pub message: String,
}

/// A usage counter of a tenant for one plugin and day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRow {
    pub plugin: String,
    /// YYYY-MM-DD (UTC).
    pub day: String,
    pub counter: String,
    pub value: i64,
}

/// One buffered write of plugin state: a value to set, or `None` to delete the key.
#[derive(Debug, Clone, PartialEq)]
pub struct StateWrite {
    pub key: String,
    pub value: Option<String>,
    pub expires_at_ms: Option<i64>,
}

/// The tenant admin's settings for one plugin, where they override plugins.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantPluginOverride {
    pub enabled: Option<bool>,
    pub config: Option<serde_json::Value>,
}

/// Status of a queued delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryStatus {
    Pending,
    Done,
    Dead,
}

impl DeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Done => "done",
            DeliveryStatus::Dead => "dead",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "done" => Some(DeliveryStatus::Done),
            "dead" => Some(DeliveryStatus::Dead),
            _ => None,
        }
    }
}

/// A delivery to enqueue: one event for one plugin of one tenant.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub tenant: String,
    pub plugin: String,
    pub call_id: String,
    pub event_id: String,
    /// The event as JSON (the host's wire form).
    pub payload: String,
}

/// A queued delivery.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub tenant: String,
    pub plugin: String,
    pub call_id: String,
    pub event_id: String,
    #[serde(skip)]
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// Of the attempts, those that failed in the plugin itself (trap, CPU or memory limit):
    /// these are retried a few times only, however many transient failures came before.
    pub host_failures: u32,
    pub next_at: i64,
    pub created_at: i64,
    pub last_error: Option<String>,
}

/// The host's storage backend.
pub trait Storage: Send + Sync + 'static {
    // --- readiness ---
    /// Commit a small write now (a probe timestamp in a `health` row, in one transaction) to
    /// prove the backend can still commit: the host's readiness check ([`crate::Host::readiness`],
    /// `/readyz`) calls it at most about once a second. The default, for a backend that has
    /// no such probe, reports success.
    fn health_probe(&self, _now_ms: i64) -> Result<()> {
        Ok(())
    }

    // --- plugin state, scoped to (tenant, plugin) ---
    fn state_get(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<String>>;
    /// Sets a value; fails with `Ok(Err(total))` when the scope would exceed `max_total_bytes`.
    fn state_set(
        &self,
        tenant: &str,
        plugin: &str,
        key: &str,
        value: &str,
        expires_at_ms: Option<i64>,
        max_total_bytes: u64,
    ) -> Result<std::result::Result<(), u64>>;
    fn state_delete(&self, tenant: &str, plugin: &str, key: &str) -> Result<()>;
    /// Bytes (keys + values) the scope holds, and of those the entry `key` (0 if absent),
    /// for an invocation that buffers its writes ([`Storage::state_apply`]). `None`: this
    /// backend keeps no running total; writes then go through [`Storage::state_set`] one by one.
    fn state_usage(&self, _tenant: &str, _plugin: &str, _key: &str) -> Result<Option<(u64, u64)>> {
        Ok(None)
    }
    /// Apply an invocation's buffered writes (a `None` value deletes) in one commit: all or
    /// none. Their size was checked against the cap as they were buffered.
    fn state_apply(&self, tenant: &str, plugin: &str, writes: &[StateWrite]) -> Result<()> {
        for w in writes {
            match &w.value {
                Some(v) => {
                    // Checked when buffered; a backend without totals has nothing to add.
                    let _ = self.state_set(tenant, plugin, &w.key, v, w.expires_at_ms, u64::MAX)?;
                }
                None => self.state_delete(tenant, plugin, &w.key)?,
            }
        }
        Ok(())
    }

    // --- phone book, scoped to tenant ---
    fn contacts_upsert(&self, tenant: &str, rows: &[ContactRow]) -> Result<u32>;
    /// True if an entry was removed.
    fn contacts_delete(&self, tenant: &str, external_id: &str) -> Result<bool>;
    fn contacts_get(&self, tenant: &str, external_id: &str) -> Result<Option<ContactRow>>;
    /// Entries with a number whose E.164 form is `e164`, most recently modified first.
    fn contacts_lookup(&self, tenant: &str, e164: &str) -> Result<Vec<ContactRow>>;
    fn contacts_count(&self, tenant: &str) -> Result<u64>;
    /// [`Storage::contacts_upsert`] for a plugin: all or nothing, refused when an entry
    /// belongs to another plugin than `writer` allows, or when the new entries would take the
    /// tenant's phone book over `max_entries` (replacing entries always fits). The default
    /// checks before writing, for a backend without transactions.
    fn contacts_upsert_checked(
        &self,
        tenant: &str,
        rows: &[ContactRow],
        writer: ContactWriter<'_>,
        max_entries: u64,
    ) -> Result<std::result::Result<u32, ContactRefusal>> {
        let mut new_ids = std::collections::BTreeSet::new();
        for r in rows {
            match self.contacts_get(tenant, &r.external_id)? {
                Some(old) => {
                    if let ContactWriter::Owner(me) = writer
                        && old.plugin != me
                    {
                        return Ok(Err(ContactRefusal::NotOwner {
                            external_id: r.external_id.clone(),
                        }));
                    }
                }
                None => {
                    new_ids.insert(r.external_id.as_str());
                }
            }
        }
        let new = new_ids.len() as u64;
        if new > 0 && self.contacts_count(tenant)?.saturating_add(new) > max_entries {
            return Ok(Err(ContactRefusal::Full { limit: max_entries }));
        }
        self.contacts_upsert(tenant, rows).map(Ok)
    }
    /// [`Storage::contacts_delete`] for a plugin: refused when the entry belongs to another
    /// plugin than `writer` allows. `Ok(false)`: no such entry.
    fn contacts_delete_checked(
        &self,
        tenant: &str,
        external_id: &str,
        writer: ContactWriter<'_>,
    ) -> Result<std::result::Result<bool, ContactRefusal>> {
        if let ContactWriter::Owner(me) = writer
            && let Some(old) = self.contacts_get(tenant, external_id)?
            && old.plugin != me
        {
            return Ok(Err(ContactRefusal::NotOwner {
                external_id: external_id.to_string(),
            }));
        }
        self.contacts_delete(tenant, external_id).map(Ok)
    }

    // --- integration log and usage ---
    fn log_append(&self, entries: &[LogEntry]) -> Result<()>;
    /// The newest `limit` lines of a tenant, newest first.
    fn log_read(&self, tenant: &str, limit: u32) -> Result<Vec<LogEntry>>;
    fn usage_add(
        &self,
        tenant: &str,
        plugin: &str,
        day: &str,
        counters: &[(&str, i64)],
    ) -> Result<()>;
    fn usage_read(&self, tenant: &str) -> Result<Vec<UsageRow>>;
    /// Delete what [`Retention`] no longer keeps: log lines older than its age or beyond its
    /// rows per tenant, dead letters older than its age (by when they died). In small
    /// transactions, so that writers are not held up. The default, for a backend that
    /// prunes by other means, deletes nothing.
    fn prune(&self, _now_ms: i64, _retention: &Retention) -> Result<Pruned> {
        Ok(Pruned::default())
    }

    // --- tenant admin settings ---
    fn override_get(&self, tenant: &str, plugin: &str) -> Result<Option<TenantPluginOverride>>;
    fn override_set_enabled(&self, tenant: &str, plugin: &str, enabled: bool) -> Result<()>;
    fn override_set_config(
        &self,
        tenant: &str,
        plugin: &str,
        config: &serde_json::Value,
    ) -> Result<()>;

    // --- admin API tokens (stored as SHA-256 digests, never in clear) ---
    fn token_add(&self, digest: &str, tenant: &str, label: &str, now_ms: i64) -> Result<()>;
    /// The tenant a token digest belongs to.
    fn token_tenant(&self, digest: &str) -> Result<Option<String>>;
    fn token_revoke_all(&self, tenant: &str) -> Result<u64>;

    // --- schedules ---
    fn schedule_last_run(&self, tenant: &str, plugin: &str, schedule: &str) -> Result<Option<i64>>;
    fn schedule_mark_run(
        &self,
        tenant: &str,
        plugin: &str,
        schedule: &str,
        at_ms: i64,
    ) -> Result<()>;

    // --- durable delivery queue ---
    /// Commits every delivery or none.
    fn enqueue(&self, items: &[NewDelivery], now_ms: i64) -> Result<Vec<i64>>;
    /// Pending deliveries due at `now_ms`, each the oldest pending one of its
    /// (tenant, plugin, call), oldest first, skipping the calls in `busy`.
    fn due(&self, now_ms: i64, limit: u32) -> Result<Vec<Delivery>>;
    /// [`Storage::due`] for one tenant's plugin.
    fn due_for(
        &self,
        tenant: &str,
        plugin: &str,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let mut rows = self.due(now_ms, u32::MAX)?;
        rows.retain(|d| d.tenant == tenant && d.plugin == plugin);
        rows.truncate(limit as usize);
        Ok(rows)
    }
    fn complete(&self, id: i64) -> Result<()>;
    /// [`Storage::complete`] for the deliveries of a batch, in one commit.
    fn complete_many(&self, ids: &[i64]) -> Result<()> {
        ids.iter().try_for_each(|id| self.complete(*id))
    }
    fn reschedule(&self, id: i64, next_at_ms: i64, error: &str) -> Result<()>;
    /// [`Storage::reschedule`] after a failure of the plugin itself; also counts it in
    /// [`Delivery::host_failures`].
    fn reschedule_after_host_failure(&self, id: i64, next_at_ms: i64, error: &str) -> Result<()>;
    /// Hold a pending delivery back until `next_at_ms` without counting an attempt: the host
    /// did not run it (the invocation budget, the retry floor). The default, for a backend
    /// without it, holds back every pending delivery of the tenant's plugin ([`Storage::pause`]).
    fn defer(&self, d: &Delivery, next_at_ms: i64) -> Result<()> {
        self.pause(&d.tenant, &d.plugin, next_at_ms)
    }
    fn dead_letter(&self, id: i64, error: &str) -> Result<()>;
    /// Move every pending delivery of a tenant's plugin to `next_at_ms` at the earliest.
    fn pause(&self, tenant: &str, plugin: &str, until_ms: i64) -> Result<()>;
    /// Outage recovery: the backed-off deliveries of a tenant's plugin (pending, attempted
    /// before, due after `now_ms`) become due from `now_ms` on, `pace_ms` apart in queue
    /// order, never later than they were. Returns how many moved.
    fn release_backoff(&self, tenant: &str, plugin: &str, now_ms: i64, pace_ms: i64)
    -> Result<u64>;
    /// Outage probe: the backed-off delivery of a tenant's plugin that is due soonest
    /// becomes due now. False when it has none.
    fn probe_backoff(&self, tenant: &str, plugin: &str, now_ms: i64) -> Result<bool>;
    /// The (tenant, plugin) pairs with a backed-off delivery (probing resumes after a restart).
    fn backed_off(&self, now_ms: i64) -> Result<Vec<(String, String)>>;
    fn deliveries(
        &self,
        tenant: &str,
        status: Option<DeliveryStatus>,
        limit: u32,
    ) -> Result<Vec<Delivery>>;
    /// Put a dead delivery back in the queue. False if there is no such dead delivery of the tenant.
    fn replay(&self, tenant: &str, id: i64, now_ms: i64) -> Result<bool>;
    /// Pending deliveries (all tenants).
    fn pending_count(&self) -> Result<u64>;
}
