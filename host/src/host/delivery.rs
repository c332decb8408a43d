//! Call events: durable ingest and delivery to each subscribed plugin, in order per call.
//!
//! Ingest commits one queue row per subscribed plugin before it returns, so an acknowledged
//! event survives a crash. The delivery loop takes, for each (tenant, plugin, call), only the
//! oldest pending event, and never runs two events of one call at once: order per call holds
//! across retries. Failures are retried with exponential backoff and jitter until the retry
//! horizon; then the delivery is dead-lettered (visible and replayable by the tenant admin).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::Host;
use crate::clock::now_ms;
use crate::events::{CallEvent, InvalidEvent};
use crate::runtime::bindings::types::ErrorKind;
use crate::runtime::{Call, InvocationError};
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
    pub fn ingest(&self, event: CallEvent) -> Result<IngestReceipt, IngestError> {
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

/// The delivery loop.
pub(super) async fn run(host: Host) {
    let workers = Arc::new(Semaphore::new(host.inner.opts.delivery_workers.max(1)));
    loop {
        if host.inner.shutdown.is_triggered() {
            return;
        }
        let due = match host.storage().due(now_ms(), 256) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("delivery queue unavailable: {e}");
                Vec::new()
            }
        };
        let mut started = 0;
        for d in due {
            let Ok(permit) = workers.clone().acquire_owned().await else {
                return;
            };
            if host.inner.shutdown.is_triggered() || !lock(&host.inner.in_flight).insert(d.id) {
                continue;
            }
            started += 1;
            let host = host.clone();
            tokio::spawn(async move {
                let id = d.id;
                deliver(&host, d).await;
                lock(&host.inner.in_flight).remove(&id);
                drop(permit);
                host.inner.wake.notify_one();
            });
        }
        if started == 0 {
            tokio::select! {
                _ = host.inner.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = host.inner.shutdown.wait() => return,
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Exponential backoff with ±25% jitter: 1 s, 2 s, 4 s … capped at 5 minutes.
fn backoff_ms(attempts: u32) -> i64 {
    let base = 1000i64.saturating_mul(1i64 << attempts.min(9)).min(300_000);
    let jitter = rand::rng().random_range(-(base / 4)..=(base / 4));
    base + jitter
}

async fn deliver(host: &Host, d: Delivery) {
    let storage = host.storage();
    let fail = |msg: &str| {
        if let Err(e) = storage.dead_letter(d.id, msg) {
            tracing::error!("cannot dead-letter delivery {}: {e}", d.id);
        }
    };
    let event: CallEvent = match serde_json::from_str(&d.payload) {
        Ok(e) => e,
        Err(e) => return fail(&format!("stored event is unreadable: {e}")),
    };
    let registry = host.registry();
    let (Some(tenant), Some(plugin)) = (
        registry.tenants.get(&d.tenant),
        registry.plugins.get(&d.plugin),
    ) else {
        return fail("the tenant or plugin is no longer configured");
    };
    let (enabled, config) = match host.effective(&registry, &d.tenant, &d.plugin) {
        Ok(x) => x,
        Err(e) => return fail(&e.to_string()),
    };
    if !enabled {
        // Disabled after the event was accepted: the tenant asked for no more work.
        let _ = storage.complete(d.id);
        return;
    }
    let component = match &plugin.component {
        Ok(c) => c,
        Err(e) => {
            // Not loadable now; a fixed component may be reloaded, so keep it queued.
            let _ = storage.reschedule(d.id, now_ms() + backoff_ms(d.attempts), e);
            return;
        }
    };
    let (scope, mut ctx) = host.scope(tenant, plugin, config);
    ctx.attempt = d.attempts;
    let event_id = event.event_id.clone().unwrap_or_default();
    let report = host
        .inner
        .runtime
        .invoke(component, scope, ctx, Call::Event(event.to_wit(&event_id)))
        .await;
    let now = now_ms();
    let horizon = host
        .registry()
        .file
        .host
        .retry_horizon_seconds
        .map_or(DEFAULT_HORIZON_MS, |s| (s as i64).saturating_mul(1000));
    let expired = now - d.created_at >= horizon;
    let result = match report.outcome {
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
            let until = now + retry_after_ms.map_or(60_000, i64::from);
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
            let next = now + retry_after_ms.map_or_else(|| backoff_ms(d.attempts), i64::from);
            if expired {
                storage.dead_letter(d.id, &message)
            } else {
                storage.reschedule(d.id, next, &message)
            }
        }
        Err(InvocationError::NotExported(what)) => {
            storage.dead_letter(d.id, &format!("the plugin does not export {what}"))
        }
        Err(e) => {
            let msg = e.to_string();
            if expired || d.attempts + 1 >= MAX_HOST_SIDE_ATTEMPTS {
                storage.dead_letter(d.id, &msg)
            } else {
                storage.reschedule(d.id, now + backoff_ms(d.attempts), &msg)
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
