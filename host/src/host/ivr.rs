//! Synchronous IVR look-ups: the PBX gets a decision within its deadline, always; on a late
//! or failing plugin it gets the tenant's fallback, never silence (SPEC H-6, I-3).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Host;
use crate::events::{InvalidEvent, IvrDecision, IvrLookup};
use crate::runtime::{Call, CallOutput, Limits};

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
                .invoke(&component, scope, ctx, Call::Ivr(request))
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
