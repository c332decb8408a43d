//! Scheduled work (SPEC H-7): each enabled plugin that exports `scheduled` runs each of its
//! schedules at the tenant's interval (or the plugin's default). Last runs are stored, so a
//! restart does not re-run everything at once; a schedule never overlaps itself.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::Host;
use crate::clock::now_ms;
use crate::runtime::{Call, CallOutput, InvocationReport};

impl Host {
    /// Run one schedule of a tenant's plugin now and record the run.
    pub async fn run_schedule(
        &self,
        tenant: &str,
        plugin: &str,
        schedule: &str,
    ) -> Result<InvocationReport, super::AdminError> {
        use super::AdminError;
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
        if !p.decl.schedules.contains_key(schedule) {
            return Err(AdminError::Invalid(format!(
                "plugin '{plugin}' declares no schedule '{schedule}'"
            )));
        }
        let component = p.component.clone().map_err(AdminError::NotLoaded)?;
        let (_, config) = self.effective(&registry, tenant, plugin)?;
        let _ = self
            .storage()
            .schedule_mark_run(tenant, plugin, schedule, now_ms());
        let (scope, ctx) = self.scope(&t, &p, config);
        let call = Call::Scheduled(schedule.to_string());
        let report = self
            .inner
            .runtime
            .invoke(&component, scope, ctx, call)
            .await;
        // A run that stopped at its budget with more to do asks to run again soon: make it due
        // then, instead of a whole interval later.
        if let Ok(CallOutput::Scheduled {
            run_again_after_ms: Some(ms),
        }) = &report.outcome
        {
            let every_ms = (interval_seconds(&t, &p, schedule) as i64).saturating_mul(1000);
            let due_at = now_ms() + i64::from(*ms) - every_ms;
            let _ = self
                .storage()
                .schedule_mark_run(tenant, plugin, schedule, due_at);
        }
        Ok(report)
    }
}

/// The interval of a tenant's schedule: the tenant's override, else the plugin's default.
fn interval_seconds(
    tenant: &super::TenantEntry,
    plugin: &super::PluginEntry,
    schedule: &str,
) -> u64 {
    tenant
        .decl
        .plugins
        .get(&plugin.id)
        .and_then(|tp| tp.get_ref().schedules.get(schedule).copied())
        .or_else(|| plugin.decl.schedules.get(schedule).map(|s| *s.get_ref()))
        .unwrap_or(86_400)
}

pub(super) async fn run(host: Host) {
    let running: Arc<Mutex<HashSet<(String, String, String)>>> = Arc::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(host.inner.opts.schedule_tick) => {}
            _ = host.inner.shutdown.wait() => return,
        }
        let registry = host.registry();
        let now = now_ms();
        for tenant in registry.tenants.values() {
            for plugin in registry.plugins.values() {
                if plugin.decl.schedules.is_empty()
                    || !plugin
                        .component
                        .as_ref()
                        .is_ok_and(|c| c.exports.scheduled.is_some())
                {
                    continue;
                }
                let Ok((true, _)) = host.effective(&registry, &tenant.id, &plugin.id) else {
                    continue;
                };
                for name in plugin.decl.schedules.keys() {
                    let every = interval_seconds(tenant, plugin, name);
                    let last = host
                        .storage()
                        .schedule_last_run(&tenant.id, &plugin.id, name)
                        .ok()
                        .flatten();
                    if last.is_some_and(|l| now - l < (every as i64).saturating_mul(1000)) {
                        continue;
                    }
                    let key = (tenant.id.clone(), plugin.id.clone(), name.clone());
                    if !running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key.clone())
                    {
                        continue;
                    }
                    // A schedule run is an invocation like a delivery: over the tenant's
                    // budget for this plugin it waits for a later tick (budget.rs).
                    let limit = host.invocations_per_minute(&registry, plugin);
                    if let super::budget::Admission::Deferred { .. } = host
                        .inner
                        .budget
                        .admit(&tenant.id, &plugin.id, limit, 0, now)
                    {
                        running
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&key);
                        continue;
                    }
                    let (host, running) = (host.clone(), running.clone());
                    tokio::spawn(async move {
                        if let Err(e) = host.run_schedule(&key.0, &key.1, &key.2).await {
                            tracing::warn!("schedule {}/{}/{}: {e}", key.0, key.1, key.2);
                        }
                        running
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&key);
                    });
                }
            }
        }
    }
}
