//! Shared pieces of the benchmarks (issue 5): where the components are, an in-memory storage
//! backend (so that the invocation benchmarks measure the runtime, not SQLite), invocation
//! scopes, sample events, and process measurements (RSS, CPU time).
//!
//! The criterion benches are in `benches/`, the scenario runner in `src/bin/loadgen.rs`;
//! `BENCHMARKS.md` at the repository root says what each measures and what it found.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pbx_host::capabilities::{
    HttpClient, NetPolicy, PluginGrants, SecretKey, SecretStore, Services,
};
use pbx_host::config::ContactsGrant;
use pbx_host::runtime::bindings::types;
use pbx_host::runtime::{InvocationScope, Limits};
use pbx_host::store::{
    ContactRow, Delivery, DeliveryStatus, LogEntry, NewDelivery, Result, SqliteStorage, Storage,
    TenantPluginOverride, UsageRow,
};

pub mod import;
pub mod overhead;
pub mod report;

// The components are where the end-to-end tests find them.
pub use pbx_e2e::{plugin_dir, plugin_wasm};

/// Storage whose plugin state, integration log and usage counters live in memory (hash maps
/// behind a mutex); everything else goes to an in-memory SQLite database. The invocation
/// benchmarks use it so that the wasm side is compared with the native baseline on equal
/// terms (the same three operations against an in-memory store).
pub struct MemStorage {
    state: Mutex<HashMap<(String, String, String), String>>,
    log_lines: Mutex<u64>,
    usage: Mutex<HashMap<(String, String, String), i64>>,
    rest: SqliteStorage,
}

impl MemStorage {
    pub fn new() -> anyhow::Result<Self> {
        Ok(MemStorage {
            state: Mutex::default(),
            log_lines: Mutex::default(),
            usage: Mutex::default(),
            rest: SqliteStorage::in_memory()?,
        })
    }

    /// Log lines appended so far.
    pub fn log_lines(&self) -> u64 {
        *self.log_lines.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Storage for MemStorage {
    fn state_get(&self, t: &str, p: &str, k: &str, _now: i64) -> Result<Option<String>> {
        let m = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(m.get(&(t.to_string(), p.to_string(), k.to_string()))
            .cloned())
    }
    fn state_set(
        &self,
        t: &str,
        p: &str,
        k: &str,
        v: &str,
        _exp: Option<i64>,
        _max: u64,
    ) -> Result<std::result::Result<(), u64>> {
        let mut m = self.state.lock().unwrap_or_else(|p| p.into_inner());
        m.insert((t.to_string(), p.to_string(), k.to_string()), v.to_string());
        Ok(Ok(()))
    }
    fn state_delete(&self, t: &str, p: &str, k: &str) -> Result<()> {
        let mut m = self.state.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(&(t.to_string(), p.to_string(), k.to_string()));
        Ok(())
    }
    fn contacts_upsert(&self, t: &str, rows: &[ContactRow]) -> Result<u32> {
        self.rest.contacts_upsert(t, rows)
    }
    fn contacts_delete(&self, t: &str, id: &str) -> Result<bool> {
        self.rest.contacts_delete(t, id)
    }
    fn contacts_get(&self, t: &str, id: &str) -> Result<Option<ContactRow>> {
        self.rest.contacts_get(t, id)
    }
    fn contacts_lookup(&self, t: &str, e164: &str) -> Result<Vec<ContactRow>> {
        self.rest.contacts_lookup(t, e164)
    }
    fn contacts_count(&self, t: &str) -> Result<u64> {
        self.rest.contacts_count(t)
    }
    fn contacts_upsert_checked(
        &self,
        t: &str,
        rows: &[ContactRow],
        writer: pbx_host::store::ContactWriter<'_>,
        max: u64,
    ) -> Result<std::result::Result<u32, pbx_host::store::ContactRefusal>> {
        self.rest.contacts_upsert_checked(t, rows, writer, max)
    }
    fn contacts_delete_checked(
        &self,
        t: &str,
        id: &str,
        writer: pbx_host::store::ContactWriter<'_>,
    ) -> Result<std::result::Result<bool, pbx_host::store::ContactRefusal>> {
        self.rest.contacts_delete_checked(t, id, writer)
    }
    fn log_append(&self, entries: &[LogEntry]) -> Result<()> {
        *self.log_lines.lock().unwrap_or_else(|p| p.into_inner()) += entries.len() as u64;
        Ok(())
    }
    fn log_read(&self, t: &str, limit: u32) -> Result<Vec<LogEntry>> {
        self.rest.log_read(t, limit)
    }
    fn prune(
        &self,
        now_ms: i64,
        retention: &pbx_host::store::Retention,
    ) -> Result<pbx_host::store::Pruned> {
        self.rest.prune(now_ms, retention)
    }
    fn usage_add(&self, t: &str, p: &str, day: &str, counters: &[(&str, i64)]) -> Result<()> {
        let mut m = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        for (name, n) in counters {
            *m.entry((t.to_string(), p.to_string(), format!("{day}/{name}")))
                .or_default() += n;
        }
        Ok(())
    }
    fn usage_read(&self, t: &str) -> Result<Vec<UsageRow>> {
        self.rest.usage_read(t)
    }
    fn override_get(&self, t: &str, p: &str) -> Result<Option<TenantPluginOverride>> {
        self.rest.override_get(t, p)
    }
    fn override_set_enabled(&self, t: &str, p: &str, e: bool) -> Result<()> {
        self.rest.override_set_enabled(t, p, e)
    }
    fn override_set_config(&self, t: &str, p: &str, c: &serde_json::Value) -> Result<()> {
        self.rest.override_set_config(t, p, c)
    }
    fn token_add(&self, d: &str, t: &str, l: &str, now: i64) -> Result<()> {
        self.rest.token_add(d, t, l, now)
    }
    fn token_tenant(&self, d: &str) -> Result<Option<String>> {
        self.rest.token_tenant(d)
    }
    fn token_revoke_all(&self, t: &str) -> Result<u64> {
        self.rest.token_revoke_all(t)
    }
    fn schedule_last_run(&self, t: &str, p: &str, s: &str) -> Result<Option<i64>> {
        self.rest.schedule_last_run(t, p, s)
    }
    fn schedule_mark_run(&self, t: &str, p: &str, s: &str, at: i64) -> Result<()> {
        self.rest.schedule_mark_run(t, p, s, at)
    }
    fn enqueue(&self, items: &[NewDelivery], now: i64) -> Result<Vec<i64>> {
        self.rest.enqueue(items, now)
    }
    fn due(&self, now: i64, limit: u32) -> Result<Vec<Delivery>> {
        self.rest.due(now, limit)
    }
    fn complete(&self, id: i64) -> Result<()> {
        self.rest.complete(id)
    }
    fn reschedule(&self, id: i64, next: i64, e: &str) -> Result<()> {
        self.rest.reschedule(id, next, e)
    }
    fn reschedule_after_host_failure(&self, id: i64, next: i64, e: &str) -> Result<()> {
        self.rest.reschedule_after_host_failure(id, next, e)
    }
    fn dead_letter(&self, id: i64, e: &str) -> Result<()> {
        self.rest.dead_letter(id, e)
    }
    fn pause(&self, t: &str, p: &str, until: i64) -> Result<()> {
        self.rest.pause(t, p, until)
    }
    fn release_backoff(&self, t: &str, p: &str, now: i64, pace: i64) -> Result<u64> {
        self.rest.release_backoff(t, p, now, pace)
    }
    fn probe_backoff(&self, t: &str, p: &str, now: i64) -> Result<bool> {
        self.rest.probe_backoff(t, p, now)
    }
    fn backed_off(&self, now: i64) -> Result<Vec<(String, String)>> {
        self.rest.backed_off(now)
    }
    fn deliveries(&self, t: &str, s: Option<DeliveryStatus>, limit: u32) -> Result<Vec<Delivery>> {
        self.rest.deliveries(t, s, limit)
    }
    fn replay(&self, t: &str, id: i64, now: i64) -> Result<bool> {
        self.rest.replay(t, id, now)
    }
    fn pending_count(&self) -> Result<u64> {
        self.rest.pending_count()
    }
}

/// Host services over `storage`, secrets in `dir`, an HTTP client that may reach loopback.
pub fn services(storage: Arc<dyn Storage>, dir: &Path) -> anyhow::Result<Arc<Services>> {
    Ok(Arc::new(Services {
        journal: pbx_host::store::Journal::new(storage.clone()),
        storage,
        secrets: SecretStore::open(&dir.join("secrets"), &SecretKey::generate())?,
        http: HttpClient::new(NetPolicy {
            allowed_internal: vec!["127.0.0.0/8".parse()?],
        })?,
    }))
}

/// The scope of one invocation of `plugin` for `tenant`, with state granted and default limits.
pub fn scope(services: &Arc<Services>, tenant: &str, plugin: &str) -> InvocationScope {
    InvocationScope {
        services: services.clone(),
        tenant_id: tenant.into(),
        default_country: "JP".into(),
        plugin_id: plugin.into(),
        grants: Arc::new(PluginGrants {
            http: Vec::new(),
            secrets: Default::default(),
            state: true,
            contacts: ContactsGrant::default(),
        }),
        limits: Arc::new(Limits::default()),
        config: Arc::new(serde_json::json!({})),
        invocation_id: "bench-1".into(),
    }
}

/// The context passed with every benchmark invocation.
pub fn context(tenant: &str, plugin: &str) -> types::Context {
    types::Context {
        tenant_id: tenant.into(),
        plugin_id: plugin.into(),
        invocation_id: "bench-1".into(),
        config: "{}".into(),
        attempt: 0,
    }
}

/// A finished inbound call as the PBX posts it (JSON).
pub fn ended_call_json(tenant: &str, call_id: &str, caller: &str) -> serde_json::Value {
    let start = 1_767_225_600_000_i64;
    serde_json::json!({
        "tenant": tenant,
        "event_id": format!("{call_id}-ended"),
        "kind": "ended",
        "call": {
            "call_id": call_id,
            "direction": "inbound",
            "caller": caller,
            "callee": "0501111222",
            "agent": {"extension": "201", "user_id": "u-201", "user_name": "Sato", "user_email": "sato@example.jp"},
            "dial_started_at": start,
            "answered_at": start + 5000,
            "ended_at": start + 65_000,
            "duration_seconds": 60,
            "outcome": "answered",
        }
    })
}

/// The IVR look-up the IVR benchmarks send: acme's caller 03-1234-5678, to the probe plugin.
pub fn probe_ivr_lookup() -> anyhow::Result<pbx_host::events::IvrLookup> {
    Ok(serde_json::from_value(serde_json::json!({
        "tenant": "acme",
        "call": ended_call("acme", "ivr-1", "0312345678").call,
        "ivr_name": "main",
        "deadline_ms": 2000,
        "plugin": "probe",
    }))?)
}

/// The same event as the host's typed event.
pub fn ended_call(tenant: &str, call_id: &str, caller: &str) -> pbx_host::events::CallEvent {
    serde_json::from_value(ended_call_json(tenant, call_id, caller))
        .expect("the sample event parses")
}

/// The same event as the WIT record a plugin receives.
pub fn wit_event(tenant: &str, call_id: &str) -> types::CallEvent {
    let e = ended_call(tenant, call_id, "0312345678");
    e.to_wit(&format!("{call_id}-ended"))
}

/// The same event as the guest SDK's record (for the native baseline).
pub fn sdk_event(call_id: &str) -> pbx_plugin_sdk::CallEvent {
    use pbx_plugin_sdk::{Call, CallEvent, Direction, EventKind, Outcome};
    CallEvent {
        event_id: format!("{call_id}-ended"),
        kind: EventKind::Ended,
        occurred_at: 1_767_225_665_000,
        call: Call {
            call_id: call_id.into(),
            direction: Direction::Inbound,
            caller: "0312345678".into(),
            callee: "0501111222".into(),
            agent: None,
            dial_started_at: 1_767_225_600_000,
            answered_at: Some(1_767_225_605_000),
            ended_at: Some(1_767_225_665_000),
            duration_seconds: 60,
            outcome: Some(Outcome::Answered),
            transfer: None,
            predictive: None,
            queue: None,
            recording_url: None,
            crm_record_id: None,
        },
        memo: Vec::new(),
        transcript: None,
    }
}

/// The resident set size of this process now and its peak, in KiB (`/proc/self/status`).
pub fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Reset the peak RSS (`VmHWM`) to the current RSS (Linux: write 5 to `clear_refs`).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// User + system CPU time of this process (`getrusage(RUSAGE_SELF)`).
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage fills the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Percentile (0..=100) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Time this process's threads have spent runnable but waiting for a CPU (the second field
/// of `/proc/self/task/*/schedstat`, summed over threads alive now).
pub fn run_queue_wait() -> Duration {
    let mut ns = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            let s = std::fs::read_to_string(e.path().join("schedstat")).unwrap_or_default();
            ns += s
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}
