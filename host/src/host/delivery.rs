//! Call events: durable ingest and delivery to each subscribed plugin, in order per call.
//!
//! Ingest commits one queue row per subscribed plugin before it returns, so an acknowledged
//! event survives a crash. The delivery loop takes, for each (tenant, plugin, call), only the
//! oldest pending event, and never runs two events of one call at once: order per call holds
//! across retries. Failures are retried with exponential backoff and jitter until the retry
//! horizon; then the delivery is dead-lettered (visible and replayable by the tenant admin).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;

use super::Host;
use super::budget::Admission;
use crate::clock::now_ms;
use crate::events::{CallEvent, InvalidEvent};
use crate::runtime::bindings::types::ErrorKind;
use crate::runtime::fair::{FairPool, default_reserve};
use crate::runtime::{Call, CallOutput, InvocationError};
use crate::store::{Delivery, NewDelivery};

/// What ingest acknowledges.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IngestReceipt {
    pub event_id: String,
    /// The plugins the event was queued for.
    pub queued_for: Vec<String>,
}

/// Why ingest refused an event. Nothing is queued then.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid event: {0}")]
    Invalid(#[from] InvalidEvent),
    #[error("unknown tenant '{0}'")]
    UnknownTenant(String),
    #[error("storage unavailable: {0}")]
    Storage(String),
}

const DEFAULT_HORIZON_MS: i64 = 24 * 3600 * 1000;
/// Failures of the plugin itself (traps, limits) are deterministic more often than not:
/// retry them a few times, not for the whole horizon.
const MAX_HOST_SIDE_ATTEMPTS: u32 = 3;

impl Host {
    /// Accept a call event: validate it and queue it durably for every enabled plugin of the
    /// tenant that subscribes to its kind. Returns once it is committed.
    /// A failed commit marks the host not ready (health.rs), on both doors.
    pub fn ingest(&self, event: CallEvent) -> Result<IngestReceipt, IngestError> {
        let result = self.queue_event(event);
        self.note_ingest(&result);
        result
    }

    fn queue_event(&self, event: CallEvent) -> Result<IngestReceipt, IngestError> {
        event.validate()?;
        let registry = self.registry();
        if !registry.tenants.contains_key(&event.tenant) {
            return Err(IngestError::UnknownTenant(event.tenant));
        }
        let event_id = event
            .event_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut event = event;
        event.event_id = Some(event_id.clone());
        let payload =
            serde_json::to_string(&event).map_err(|e| IngestError::Storage(e.to_string()))?;
        let mut items = Vec::new();
        for (id, plugin) in &registry.plugins {
            if !plugin.subscribes(event.kind.name()) {
                continue;
            }
            let enabled = self
                .effective(&registry, &event.tenant, id)
                .map(|(e, _)| e)
                .unwrap_or(false);
            if enabled {
                items.push(NewDelivery {
                    tenant: event.tenant.clone(),
                    plugin: id.clone(),
                    call_id: event.call.call_id.clone(),
                    event_id: event_id.clone(),
                    payload: payload.clone(),
                });
            }
        }
        if !items.is_empty() {
            self.storage()
                .enqueue(&items, now_ms())
                .map_err(|e| IngestError::Storage(e.to_string()))?;
            self.inner.wake.notify_one();
        }
        Ok(IngestReceipt {
            event_id,
            queued_for: items.into_iter().map(|d| d.plugin).collect(),
        })
    }

    /// Wait until no delivery is pending or `timeout` passes. True if idle.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.storage().pending_count().unwrap_or(1) == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Queue rows being delivered now, and rows whose delivery finished since the loop last read
/// the queue. A row that finishes between the loop's read and its dispatch would otherwise be
/// dispatched a second time from the stale read.
#[derive(Default)]
pub struct InFlight {
    pub running: std::collections::HashSet<i64>,
    finished: std::collections::HashSet<i64>,
}

/// Rows the delivery loop reads from the queue at a time.
const DUE_READ_ROWS: u32 = 1024;

/// The shortest time between two reads of the queue when the previous read dispatched
/// nothing new; at most this much is added to an event's delivery.
const REREAD_INTERVAL: Duration = Duration::from_millis(5);

/// The shortest sleep of the delivery loop while batches wait for their windows.
const BATCH_POLL_MS: i64 = 50;

/// The delivery loop.
pub(super) async fn run(host: Host) {
    // Each tenant runs at most its fair share of the workers (all of its plugins together),
    // and a few are kept for tenants that have none running: a tenant whose CRM hangs (every
    // invocation waiting out its timeouts) cannot take them all and stall every other
    // tenant's deliveries (H-4). What waits stays queued.
    let n = host.inner.opts.delivery_workers.max(1);
    let workers = FairPool::new(n, default_reserve(n));
    // When each (tenant, plugin) with batching last had something dispatched.
    let mut last_dispatch: HashMap<(String, String), i64> = HashMap::new();
    resume_outages(&host);
    loop {
        host.inner
            .loop_heartbeat
            .store(now_ms(), std::sync::atomic::Ordering::Relaxed);
        if host.inner.shutdown.is_triggered() {
            return;
        }
        // Forget what finished before this read: the read no longer returns it.
        lock(&host.inner.in_flight).finished.clear();
        let now = now_ms();
        probe_outages(&host, now);
        let read_at = tokio::time::Instant::now();
        let due = match host.storage().due(now, DUE_READ_ROWS) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("delivery queue unavailable: {e}");
                Vec::new()
            }
        };
        // More is due than one read returns (a backlog): a batch then reads its tenant's
        // rows itself, or it would carry only what fitted in this read (with 1,000 tenants
        // and 10 waiting calls each: one call per batch, measured 0.9 API calls per call).
        let truncated = due.len() >= DUE_READ_ROWS as usize;
        let registry = host.registry();
        let mut work: Vec<Vec<Delivery>> = Vec::new();
        let mut batches: BTreeMap<(String, String), Vec<Delivery>> = BTreeMap::new();
        {
            let in_flight = lock(&host.inner.in_flight);
            let mut paused = lock(&host.inner.paused);
            paused.retain(|_, until| *until > now);
            for d in due {
                if in_flight.running.contains(&d.id) || in_flight.finished.contains(&d.id) {
                    continue;
                }
                // A tenant's plugin whose CRM reported its API limit: events that arrived
                // since wait for the end of the pause like the ones already queued.
                if !paused.is_empty()
                    && let Some(until) = paused.get(&(d.tenant.clone(), d.plugin.clone()))
                {
                    let _ = host.storage().pause(&d.tenant, &d.plugin, *until);
                    continue;
                }
                if batch_settings(&registry, &d.tenant, &d.plugin).is_some() {
                    batches
                        .entry((d.tenant.clone(), d.plugin.clone()))
                        .or_default()
                        .push(d);
                } else {
                    work.push(vec![d]);
                }
            }
        }
        // Rate-adaptive batching: dispatch a tenant's waiting events once a window has passed
        // since its last dispatch (so a lone call goes at once), or when a batch is full.
        // Waiting only for batch windows, the loop wakes at most every BATCH_POLL_MS: every
        // wake re-reads the due rows, and with many tenants' windows ending at different
        // times it would otherwise wake every few milliseconds (profiled: reading due rows and
        // sorting them into batches took a quarter of the host's CPU per batched event). A
        // batch goes out up to that much after its window.
        let mut next_wake = 250i64;
        for (key, mut waiting) in batches {
            let Some((window, max)) = batch_settings(&registry, &key.0, &key.1) else {
                continue;
            };
            let since = last_dispatch.get(&key).map_or(i64::MAX, |at| now - at);
            if since >= window || waiting.len() >= max {
                if truncated && waiting.len() < max {
                    waiting = more_of_a_batch(&host, &key, waiting, now, max);
                }
                while !waiting.is_empty() {
                    let rest = waiting.split_off(waiting.len().min(max));
                    work.push(std::mem::replace(&mut waiting, rest));
                }
                last_dispatch.insert(key, now);
            } else {
                next_wake = next_wake.min(window - since);
            }
        }
        last_dispatch.retain(|_, at| now - *at < 600_000);
        if let Some(at) = host.inner.outages.next_probe_at() {
            next_wake = next_wake.min(at - now);
        }
        let mut started = 0;
        // Every tenant with work waiting counts as active while this pass dispatches, so
        // that the others' shares make room for it.
        let _waiting: Vec<_> = work
            .iter()
            .filter_map(|g| g.first().map(|d| d.tenant.as_str()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|t| workers.demand(t))
            .collect();
        for group in work {
            let Some(tenant) = group.first().map(|d| d.tenant.clone()) else {
                continue;
            };
            if host.inner.shutdown.is_triggered() {
                return;
            }
            // At its share (or only the newcomers' reserve is left): it stays queued until
            // one of the running invocations finishes (that wakes us).
            let Ok(permit) = workers.try_acquire(&tenant) else {
                continue;
            };
            {
                let mut in_flight = lock(&host.inner.in_flight);
                if group.iter().any(|d| {
                    in_flight.running.contains(&d.id) || in_flight.finished.contains(&d.id)
                }) {
                    continue;
                }
                in_flight.running.extend(group.iter().map(|d| d.id));
            }
            started += 1;
            let host = host.clone();
            tokio::spawn(async move {
                let ids: Vec<i64> = group.iter().map(|d| d.id).collect();
                deliver(&host, group).await;
                let mut in_flight = lock(&host.inner.in_flight);
                for id in ids {
                    in_flight.running.remove(&id);
                    in_flight.finished.insert(id);
                }
                drop(in_flight);
                drop(permit);
                host.inner.wake.notify_one();
            });
        }
        if started == 0 {
            tokio::select! {
                _ = host.inner.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(next_wake.clamp(BATCH_POLL_MS, 250) as u64)) => {}
                _ = host.inner.shutdown.wait() => return,
            }
            // Every ingest and every finished delivery notifies; in a burst, reading the due
            // rows once per notification costs a read of the whole waiting queue per event
            // (profiled: 15 % of the host's CPU per batched event). Coalesce them.
            tokio::select! {
                _ = tokio::time::sleep_until(read_at + REREAD_INTERVAL) => {}
                _ = host.inner.shutdown.wait() => return,
            }
        }
    }
}

/// The due rows of one tenant's plugin, up to `max`, that are not being delivered already;
/// `seen` (from the loop's read) if the read fails.
fn more_of_a_batch(
    host: &Host,
    key: &(String, String),
    seen: Vec<Delivery>,
    now: i64,
    max: usize,
) -> Vec<Delivery> {
    let rows = match host.storage().due_for(&key.0, &key.1, now, max as u32) {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!("delivery queue unavailable: {e}");
            return seen;
        }
    };
    let in_flight = lock(&host.inner.in_flight);
    rows.into_iter()
        .filter(|d| !in_flight.running.contains(&d.id) && !in_flight.finished.contains(&d.id))
        .collect()
}

/// (window, max events) when this tenant's plugin gets batched deliveries.
fn batch_settings(registry: &super::Registry, tenant: &str, plugin: &str) -> Option<(i64, usize)> {
    let p = registry.plugins.get(plugin)?;
    let decl = p.decl.batch?;
    if !p
        .component
        .as_ref()
        .is_ok_and(|c| c.exports.batch.is_some())
    {
        return None;
    }
    let window = registry
        .tenants
        .get(tenant)
        .and_then(|t| t.decl.plugins.get(plugin))
        .and_then(|tp| tp.get_ref().batch_window_ms)
        .unwrap_or(decl.window_ms);
    (window > 0).then_some((window as i64, decl.max_events.max(1) as usize))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// After a restart: every tenant's plugin with backed-off deliveries is probed again.
fn resume_outages(host: &Host) {
    let now = now_ms();
    match host.storage().backed_off(now) {
        Ok(keys) => {
            for (tenant, plugin) in keys {
                host.inner
                    .outages
                    .failed(&tenant, &plugin, now, &host.inner.opts.recovery);
            }
        }
        Err(e) => tracing::error!("delivery queue unavailable: {e}"),
    }
}

/// One backed-off delivery of each failing tenant's plugin whose probe is due becomes due.
/// A plugin with none left (delivered or dead-lettered meanwhile) is no longer probed.
fn probe_outages(host: &Host, now: i64) {
    for (tenant, plugin) in host
        .inner
        .outages
        .probes_due(now, &host.inner.opts.recovery)
    {
        match host.storage().probe_backoff(&tenant, &plugin, now) {
            Ok(true) => {}
            Ok(false) => {
                host.inner.outages.succeeded(&tenant, &plugin);
            }
            Err(e) => tracing::error!("delivery queue unavailable: {e}"),
        }
    }
}

/// A success of a tenant's plugin that ends an outage: its backed-off deliveries become due
/// again, paced (recovery.rs).
fn note_success(host: &Host, tenant: &str, plugin: &str) {
    if !host.inner.outages.succeeded(tenant, plugin) {
        return;
    }
    let pace = host.inner.opts.recovery.pace_ms();
    match host
        .storage()
        .release_backoff(tenant, plugin, now_ms(), pace)
    {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(
                "tenant {tenant}: {plugin} succeeds again: {n} backed-off deliveries resume, {pace} ms apart"
            );
            host.inner.wake.notify_one();
        }
        Err(e) => tracing::error!("delivery queue unavailable: {e}"),
    }
}

/// Exponential backoff with ±25% jitter: 1 s, 2 s, 4 s … capped at 5 minutes.
fn backoff_ms(attempts: u32) -> i64 {
    let base = 1000i64.saturating_mul(1i64 << attempts.min(9)).min(300_000);
    let jitter = rand::rng().random_range(-(base / 4)..=(base / 4));
    base + jitter
}

/// Deliver one event (a group of one) or a batch (one event per call) to one plugin.
async fn deliver(host: &Host, group: Vec<Delivery>) {
    for d in deliver_group(host, group).await {
        deliver_group(host, vec![d]).await;
    }
}

/// [`deliver`]; returns the events of a batch to deliver one by one instead.
async fn deliver_group(host: &Host, group: Vec<Delivery>) -> Vec<Delivery> {
    let storage = host.storage();
    let Some(first) = group.first() else {
        return Vec::new();
    };
    let (tenant_id, plugin_id) = (first.tenant.clone(), first.plugin.clone());
    let dead_all = |msg: &str| {
        for d in &group {
            if let Err(e) = storage.dead_letter(d.id, msg) {
                tracing::error!("cannot dead-letter delivery {}: {e}", d.id);
            }
        }
    };
    let registry = host.registry();
    let (Some(tenant), Some(plugin)) = (
        registry.tenants.get(&tenant_id),
        registry.plugins.get(&plugin_id),
    ) else {
        dead_all("the tenant or plugin is no longer configured");
        return Vec::new();
    };
    let (enabled, config) = match host.effective(&registry, &tenant_id, &plugin_id) {
        Ok(x) => x,
        Err(e) => {
            dead_all(&e.to_string());
            return Vec::new();
        }
    };
    if !enabled {
        // Disabled after the events were accepted: the tenant asked for no more work.
        for d in &group {
            let _ = storage.complete(d.id);
        }
        return Vec::new();
    }
    let horizon = registry
        .file
        .host
        .retry_horizon_seconds
        .map_or(DEFAULT_HORIZON_MS, |s| (s as i64).saturating_mul(1000));
    let floor = host.min_retry_delay_ms(&registry);
    let component = match &plugin.component {
        Ok(c) => c,
        Err(e) => {
            // Not loadable now; a fixed component may be reloaded, so keep them queued, but
            // not past the retry horizon.
            let now = now_ms();
            for d in &group {
                let result = if now - d.created_at >= horizon {
                    storage
                        .dead_letter(d.id, &format!("plugin '{plugin_id}' cannot be loaded: {e}"))
                } else {
                    storage.reschedule(d.id, now + backoff_ms(d.attempts).max(floor), e)
                };
                if let Err(e) = result {
                    tracing::error!("cannot record the outcome of delivery {}: {e}", d.id);
                }
            }
            return Vec::new();
        }
    };
    let now = now_ms();
    let mut events = Vec::with_capacity(group.len());
    let mut ready = Vec::with_capacity(group.len());
    for d in group {
        // The outage probe and the paced release may make a delivery due before its backoff
        // ends, never sooner than the floor after its last run.
        if let Some(at) = host.inner.recent_runs.too_soon(d.id, now, floor) {
            if let Err(e) = storage.defer(&d, at) {
                tracing::error!("cannot hold back delivery {}: {e}", d.id);
            }
            continue;
        }
        match serde_json::from_str::<CallEvent>(&d.payload) {
            Ok(e) => {
                let id = e.event_id.clone().unwrap_or_default();
                events.push(e.to_wit(&id));
                ready.push(d);
            }
            Err(e) => {
                let _ = storage.dead_letter(d.id, &format!("stored event is unreadable: {e}"));
            }
        }
    }
    if ready.is_empty() {
        return Vec::new();
    }
    // Over the tenant's budget for this plugin: the deliveries wait for the next minute, not
    // failed and with no attempt counted (budget.rs).
    let limit = host.invocations_per_minute(&registry, plugin);
    if let Admission::Deferred { until_ms } =
        host.inner
            .budget
            .admit(&tenant_id, &plugin_id, limit, ready.len(), now)
    {
        for d in &ready {
            if let Err(e) = storage.defer(d, until_ms) {
                tracing::error!("cannot hold back delivery {}: {e}", d.id);
            }
        }
        host.note_deferred(&tenant_id, &plugin_id, ready.len(), now);
        return Vec::new();
    }
    let (scope, mut ctx) = host.scope(tenant, plugin, config);
    ctx.attempt = ready.iter().map(|d| d.attempts).max().unwrap_or(0);
    let call = if events.len() == 1 {
        Call::Event(events.remove(0))
    } else {
        Call::Batch(events)
    };
    let report = host.inner.runtime.invoke(component, scope, ctx, call).await;
    let ran_at = now_ms();
    for d in &ready {
        host.inner.recent_runs.ran(d.id, ran_at, floor);
    }
    match report.outcome {
        Ok(CallOutput::Batch(results)) => {
            let mut done = Vec::with_capacity(ready.len());
            for (d, r) in ready.iter().zip(results) {
                match r {
                    Ok(()) => done.push(d.id),
                    Err(e) => {
                        let failed = InvocationError::Plugin {
                            kind: e.kind,
                            message: e.message,
                            retry_after_ms: e.retry_after_ms,
                        };
                        record(host, d, Err(failed), horizon);
                    }
                }
            }
            for id in &done {
                host.inner.recent_runs.forget(*id);
            }
            // One commit for the batch's completed deliveries.
            if let Err(e) = storage.complete_many(&done) {
                tracing::error!("cannot record {} completed deliveries: {e}", done.len());
            } else if !done.is_empty() {
                note_success(host, &tenant_id, &plugin_id);
            }
        }
        // A batch stopped by a limit or a trap: one event may be to blame, or only their sum
        // (a batch of long transcripts is over the CPU limit while each alone is not). Run its
        // events one by one now, so that each is judged on its own and no call log fails for
        // its neighbours: retried as a batch, it would fail again, then be dead-lettered.
        Err(e) if ready.len() > 1 && is_batch_limit(&e) => {
            tracing::warn!(
                "tenant {tenant_id}: a batch of {} events for {plugin_id} failed ({e}); delivering them one by one",
                ready.len()
            );
            return ready;
        }
        other => {
            for d in &ready {
                record(
                    host,
                    d,
                    other.as_ref().map(|_| ()).map_err(Clone::clone),
                    horizon,
                );
            }
        }
    }
    Vec::new()
}

/// Host-side failures of a whole batch that its events may not cause one by one.
fn is_batch_limit(e: &InvocationError) -> bool {
    matches!(
        e,
        InvocationError::CpuLimit { .. }
            | InvocationError::MemoryLimit { .. }
            | InvocationError::ReturnTooLarge { .. }
            | InvocationError::Trap(_)
    )
}

/// What happens to one delivery after its invocation.
fn record(host: &Host, d: &Delivery, outcome: Result<(), InvocationError>, horizon: i64) {
    let storage = host.storage();
    let now = now_ms();
    let expired = now - d.created_at >= horizon;
    // No retry sooner than the operator's floor, whatever the plugin asks (budget.rs).
    let floor = host.min_retry_delay_ms(&host.registry());
    match &outcome {
        Ok(_) => {
            host.inner.recent_runs.forget(d.id);
            note_success(host, &d.tenant, &d.plugin)
        }
        Err(InvocationError::Plugin {
            kind: ErrorKind::Transient,
            ..
        })
        | Err(InvocationError::WallClock { .. }) => {
            host.inner
                .outages
                .failed(&d.tenant, &d.plugin, now, &host.inner.opts.recovery)
        }
        Err(_) => {}
    }
    let result = match outcome {
        Ok(_) => storage.complete(d.id),
        Err(InvocationError::Plugin {
            kind: ErrorKind::Permanent | ErrorKind::Config,
            message,
            ..
        }) => storage.dead_letter(d.id, &message),
        Err(InvocationError::Plugin {
            kind: ErrorKind::RateLimited,
            message,
            retry_after_ms,
        }) => {
            let until = now + retry_after_ms.map_or(60_000, i64::from).max(floor);
            {
                let mut paused = lock(&host.inner.paused);
                let at = paused
                    .entry((d.tenant.clone(), d.plugin.clone()))
                    .or_default();
                *at = (*at).max(until);
            }
            let _ = storage.pause(&d.tenant, &d.plugin, until);
            if expired {
                storage.dead_letter(d.id, &message)
            } else {
                storage.reschedule(d.id, until, &message)
            }
        }
        Err(InvocationError::Plugin {
            kind: ErrorKind::Transient,
            message,
            retry_after_ms,
        }) => {
            let next = now
                + retry_after_ms
                    .map_or_else(|| backoff_ms(d.attempts), i64::from)
                    .max(floor);
            if expired {
                storage.dead_letter(d.id, &message)
            } else {
                storage.reschedule(d.id, next, &message)
            }
        }
        // Out of wall-clock time: the invocation waited on the network (a CRM that hangs or
        // crawls; a looping plugin is stopped by the CPU limit instead). Not the event's fault:
        // retried with backoff until the horizon, like a transient failure. Counted among the
        // few host-side attempts, a CRM hang would dead-letter call logs within a minute.
        Err(e @ InvocationError::WallClock { .. }) => {
            let msg = e.to_string();
            if expired {
                storage.dead_letter(d.id, &msg)
            } else {
                storage.reschedule(d.id, now + backoff_ms(d.attempts).max(floor), &msg)
            }
        }
        Err(InvocationError::NotExported(what)) => {
            storage.dead_letter(d.id, &format!("the plugin does not export {what}"))
        }
        Err(e) => {
            let msg = e.to_string();
            if expired || d.host_failures + 1 >= MAX_HOST_SIDE_ATTEMPTS {
                storage.dead_letter(d.id, &msg)
            } else {
                let next = now + backoff_ms(d.attempts).max(floor);
                storage.reschedule_after_host_failure(d.id, next, &msg)
            }
        }
    };
    if let Err(e) = result {
        tracing::error!("cannot record the outcome of delivery {}: {e}", d.id);
    }
}

impl Host {
    /// Run one event through one of a tenant's plugins now, bypassing the queue, and return
    /// the invocation's report (for operator tools, `replay` and tests). The plugin must be
    /// loaded; whether it is enabled for the tenant is not checked.
    pub async fn invoke_event_now(
        &self,
        tenant: &str,
        plugin: &str,
        event: CallEvent,
    ) -> Result<crate::runtime::InvocationReport, super::AdminError> {
        use super::AdminError;
        event
            .validate()
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
        let registry = self.registry();
        let t = registry
            .tenants
            .get(tenant)
            .cloned()
            .ok_or_else(|| AdminError::UnknownTenant(tenant.into()))?;
        let p = registry
            .plugins
            .get(plugin)
            .cloned()
            .ok_or_else(|| AdminError::UnknownPlugin(plugin.into()))?;
        let component = p.component.clone().map_err(AdminError::NotLoaded)?;
        let (_, config) = self.effective(&registry, tenant, plugin)?;
        let (scope, ctx) = self.scope(&t, &p, config);
        let event_id = event
            .event_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        Ok(self
            .inner
            .runtime
            .invoke(&component, scope, ctx, Call::Event(event.to_wit(&event_id)))
            .await)
    }
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_grows_and_is_capped() {
        for _ in 0..50 {
            let b0 = backoff_ms(0);
            assert!((750..=1250).contains(&b0), "{b0}");
            let b3 = backoff_ms(3);
            assert!((6000..=10000).contains(&b3), "{b3}");
            assert!(backoff_ms(30) <= 375_000);
        }
    }
}
