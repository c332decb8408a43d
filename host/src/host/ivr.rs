//! Synchronous IVR look-ups: the PBX gets a decision within its deadline, always; on a late
//! or failing plugin it gets the tenant's fallback, never silence (SPEC H-6, I-3).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Host;
use crate::clock::now_ms;
use crate::events::{InvalidEvent, IvrDecision, IvrLookup};
use crate::runtime::fair::Refusal;
use crate::runtime::{Call, CallOutput, Limits, SlotRefusal};
use crate::store::LogEntry;

/// Time kept back from the PBX's deadline for answering it (the plugin's own wall clock is
/// this much shorter, so its logs are written before the PBX moves on).
const ANSWER_MARGIN: Duration = Duration::from_millis(3);

impl Host {
    /// Ask the tenant's IVR plugin for a decision. Only a malformed request or an unknown
    /// tenant is an error; everything else answers (with the fallback if need be).
    pub async fn ivr_lookup(&self, req: IvrLookup) -> Result<IvrDecision, InvalidEvent> {
        let started = Instant::now();
        req.validate()?;
        let deadline = Duration::from_millis(u64::from(req.deadline_ms));
        let registry = self.registry();
        let tenant = registry
            .tenants
            .get(&req.tenant)
            .cloned()
            .ok_or_else(|| InvalidEvent {
                field: "tenant".into(),
                message: format!("unknown tenant '{}'", req.tenant),
            })?;
        let fallback = |reason: String| {
            let f = tenant.fallback();
            IvrDecision {
                speech: f.speech.clone(),
                route: f.route.clone(),
                variables: Vec::new(),
                source: "fallback".into(),
                reason: Some(reason),
            }
        };
        // The plugin asked for, or the first enabled one that answers IVR look-ups, with the
        // tenant's settings for it (read once: this is the PBX's waiting path).
        let chosen = registry.plugins.values().find_map(|p| {
            if req.plugin.as_ref().is_some_and(|want| want != &p.id) {
                return None;
            }
            let component = p
                .component
                .as_ref()
                .ok()
                .filter(|c| c.exports.ivr.is_some())?;
            match self.effective(&registry, &tenant.id, &p.id) {
                Ok((true, config)) => Some((p.clone(), component.clone(), config)),
                _ => None,
            }
        });
        let Some((plugin, component, config)) = chosen else {
            return Ok(fallback("no enabled IVR plugin for this tenant".into()));
        };
        // A slot now or the fallback now: waiting for one would only end in the fallback at
        // the deadline, holding the PBX's caller in silence meanwhile.
        let slot = match self
            .inner
            .runtime
            .try_slot(&tenant.id, plugin.limits.memory_bytes)
        {
            Ok(slot) => slot,
            Err(refusal) => {
                let reason = refusal_reason(&refusal);
                self.inner.ivr_refusals.note(
                    &self.inner.services.journal,
                    &tenant.id,
                    &plugin.id,
                    &reason,
                );
                return Ok(fallback(reason));
            }
        };
        let budget = deadline
            .saturating_sub(started.elapsed())
            .saturating_sub(ANSWER_MARGIN);
        let (mut scope, ctx) = self.scope(&tenant, &plugin, config);
        let mut limits: Limits = (*scope.limits).clone();
        limits.wall = limits.wall.min(budget.max(Duration::from_millis(1)));
        limits.cpu = limits.cpu.min(limits.wall);
        scope.limits = Arc::new(limits);
        let request = req.to_wit(budget.as_millis() as u32);
        let host = self.clone();
        // Run the invocation in its own task: if it overruns, the PBX is answered at the
        // deadline anyway and the task finishes (and writes its log) on its own.
        let task = tokio::spawn(async move {
            host.inner
                .runtime
                .invoke_in(slot, &component, scope, ctx, Call::Ivr(request))
                .await
        });
        let remaining = deadline.saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, task).await {
            Ok(Ok(report)) => match report.outcome {
                Ok(CallOutput::Ivr(d)) => Ok(IvrDecision {
                    speech: d.speech,
                    route: d.route,
                    variables: d.variables,
                    source: "plugin".into(),
                    reason: None,
                }),
                Ok(_) => Ok(fallback("the plugin gave no decision".into())),
                Err(e) => Ok(fallback(e.to_string())),
            },
            Ok(Err(join)) => Ok(fallback(format!("the invocation failed: {join}"))),
            Err(_) => Ok(fallback(format!(
                "no decision within the deadline of {} ms",
                req.deadline_ms
            ))),
        }
    }
}

/// The fallback's reason when no instance could be started for the tenant.
fn refusal_reason(refusal: &SlotRefusal) -> String {
    let (what, why) = match refusal {
        SlotRefusal::Instances(r @ Refusal::Full { .. }) => ("no plugin instance is free", r),
        SlotRefusal::Instances(r) => ("the tenant's share of plugin instances is exhausted", r),
        SlotRefusal::Memory(r @ Refusal::Full { .. }) => (
            "the host's memory budget for plugin instances (MiB) is exhausted",
            r,
        ),
        SlotRefusal::Memory(r) => (
            "the tenant's share of the memory budget for plugin instances (MiB) is exhausted",
            r,
        ),
    };
    format!("{what} ({why}); answered with the fallback at once")
}

/// How often a tenant's log says that its look-ups fell back at once: a flood of look-ups
/// makes one line per interval with their count, not one line each.
const REFUSAL_LOG_INTERVAL_MS: i64 = 10_000;

/// Look-ups that fell back at once, per tenant, since its log last said so.
#[derive(Default)]
pub(crate) struct RefusalLog {
    /// tenant -> (when its log last said so, look-ups since then not yet in its log).
    by_tenant: Mutex<HashMap<String, (i64, u64)>>,
}

impl RefusalLog {
    fn note(&self, journal: &crate::store::Journal, tenant: &str, plugin: &str, reason: &str) {
        let now = now_ms();
        let count = {
            let mut by_tenant = self.by_tenant.lock().unwrap_or_else(|p| p.into_inner());
            let entry = by_tenant.entry(tenant.to_string()).or_insert((i64::MIN, 0));
            entry.1 += 1;
            if now.saturating_sub(entry.0) < REFUSAL_LOG_INTERVAL_MS {
                return;
            }
            let count = entry.1;
            *entry = (now, 0);
            // Forget tenants that have been quiet for a while (bounded by active tenants).
            by_tenant.retain(|_, (at, n)| *n > 0 || now - *at < 10 * REFUSAL_LOG_INTERVAL_MS);
            count
        };
        let message = if count > 1 {
            format!(
                "{count} IVR look-ups answered with the fallback at once since the last such line; the latest: {reason}"
            )
        } else {
            format!("IVR look-up: {reason}")
        };
        journal.log(vec![LogEntry {
            id: 0,
            tenant: tenant.to_string(),
            plugin: plugin.to_string(),
            invocation: String::new(),
            at: now,
            level: "warn".into(),
            message,
        }]);
    }
}
