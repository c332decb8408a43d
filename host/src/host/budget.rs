//! How often the host runs a tenant's plugin for its deliveries (SPEC H-3, H-4).
//!
//! Two bounds, both the operator's:
//!
//! * A **retry floor** (`[host] min_retry_delay_ms`): no delivery is retried sooner than this
//!   after its last run, whatever the plugin's `retry_after_ms` (a plugin answering
//!   `transient` with `retry_after_ms = 0` turned 8 events into more than 1,000 invocations a
//!   second). The outage probe and the paced release (recovery.rs) may make a delivery due
//!   sooner than its backoff, never sooner than the floor: [`RecentRuns`] remembers when each
//!   delivery last ran.
//! * An **invocation budget** per (tenant, plugin) per minute (`[host] invocations_per_minute`,
//!   or the plugin's `[limits]`): [`InvocationBudget`] counts every delivery invocation, retries
//!   included, in windows of one clock minute. A delivery over the budget waits for the next
//!   window (it is not failed and its attempts are not counted); the number deferred is
//!   reported once per window ([`InvocationBudget::take_excess`]). IVR look-ups are not counted:
//!   they have their deadline and the tenant's fallback.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::runtime::thousands;

/// `[host] min_retry_delay_ms` when unset.
pub const DEFAULT_MIN_RETRY_DELAY_MS: u64 = 1000;
/// `[host] invocations_per_minute` when unset.
pub const DEFAULT_INVOCATIONS_PER_MINUTE: u32 = 600;

const MINUTE_MS: i64 = 60_000;

type Key = (String, String);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether an invocation may run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Over the budget: run it at `until_ms` (the start of the next minute) instead.
    Deferred {
        until_ms: i64,
    },
}

/// A minute in which a tenant's plugin went over its budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excess {
    pub tenant: String,
    pub plugin: String,
    /// The budget in force (invocations a minute).
    pub limit: u32,
    /// Deliveries deferred to a later minute.
    pub deferred: u64,
}

impl Excess {
    /// The line for the tenant's log.
    pub fn message(&self) -> String {
        let what = if self.deferred == 1 {
            "delivery"
        } else {
            "deliveries"
        };
        format!(
            "tenant {}: plugin {} over its budget of {} invocations a minute: {} {what} deferred",
            self.tenant,
            self.plugin,
            thousands(u64::from(self.limit)),
            thousands(self.deferred),
        )
    }
}

/// One (tenant, plugin)'s current minute.
#[derive(Debug)]
struct Window {
    minute: i64,
    used: u32,
    limit: u32,
    deferred: u64,
}

impl Window {
    fn excess(&self, key: &Key) -> Option<Excess> {
        (self.deferred > 0).then(|| Excess {
            tenant: key.0.clone(),
            plugin: key.1.clone(),
            limit: self.limit,
            deferred: self.deferred,
        })
    }
}

/// Invocations per (tenant, plugin) in the current clock minute. In memory: after a restart
/// each tenant's plugin starts the minute with its whole budget.
#[derive(Debug, Default)]
pub struct InvocationBudget {
    windows: Mutex<HashMap<Key, Window>>,
    /// Minutes that ended with deferrals, not yet reported.
    ended: Mutex<Vec<Excess>>,
}

impl InvocationBudget {
    /// One invocation of `tenant`'s `plugin` carrying `deliveries` deliveries (a batch is one
    /// invocation). Admitted, it counts against the minute's `limit`; deferred, its
    /// deliveries count as deferred in this minute.
    pub fn admit(
        &self,
        tenant: &str,
        plugin: &str,
        limit: u32,
        deliveries: usize,
        now_ms: i64,
    ) -> Admission {
        let minute = now_ms.div_euclid(MINUTE_MS);
        let mut windows = lock(&self.windows);
        let key = (tenant.to_string(), plugin.to_string());
        let w = windows.entry(key.clone()).or_insert(Window {
            minute,
            used: 0,
            limit,
            deferred: 0,
        });
        if w.minute != minute {
            if let Some(e) = w.excess(&key) {
                lock(&self.ended).push(e);
            }
            *w = Window {
                minute,
                used: 0,
                limit,
                deferred: 0,
            };
        }
        // A reload may change the budget within the minute: the newest applies.
        w.limit = limit;
        if w.used < limit {
            w.used += 1;
            Admission::Admitted
        } else {
            w.deferred = w.deferred.saturating_add(deliveries as u64);
            Admission::Deferred {
                until_ms: (minute + 1).saturating_mul(MINUTE_MS),
            }
        }
    }

    /// The minutes that ended before `now_ms` with deliveries deferred, each reported once;
    /// forgets the ended minutes of every tenant's plugin.
    pub fn take_excess(&self, now_ms: i64) -> Vec<Excess> {
        let minute = now_ms.div_euclid(MINUTE_MS);
        let mut out = std::mem::take(&mut *lock(&self.ended));
        lock(&self.windows).retain(|key, w| {
            if w.minute >= minute {
                return true;
            }
            out.extend(w.excess(key));
            false
        });
        out
    }
}

/// When each delivery's last invocation ended, for as long as the floor makes it matter.
#[derive(Debug, Default)]
pub struct RecentRuns {
    inner: Mutex<Runs>,
}

#[derive(Debug, Default)]
struct Runs {
    last: HashMap<i64, i64>,
    /// Size of `last` at which entries older than the floor are dropped.
    prune_at: usize,
}

const MIN_PRUNE_AT: usize = 1024;

impl RecentRuns {
    /// Delivery `id` just ran.
    pub fn ran(&self, id: i64, now_ms: i64, floor_ms: i64) {
        let mut runs = lock(&self.inner);
        runs.last.insert(id, now_ms);
        if runs.last.len() >= runs.prune_at.max(MIN_PRUNE_AT) {
            runs.last.retain(|_, at| now_ms - *at < floor_ms);
            // Amortised: prune again when the map has doubled.
            runs.prune_at = runs.last.len().saturating_mul(2);
        }
    }

    /// When delivery `id` may run again if now is too soon after its last run.
    pub fn too_soon(&self, id: i64, now_ms: i64, floor_ms: i64) -> Option<i64> {
        let runs = lock(&self.inner);
        let at = runs.last.get(&id)?.saturating_add(floor_ms);
        (at > now_ms).then_some(at)
    }

    /// Forget a delivery that left the queue.
    pub fn forget(&self, id: i64) {
        lock(&self.inner).last.remove(&id);
    }
}

/// How often ended minutes are looked for and their excess reported.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl super::Host {
    /// The floor under every retry delay of a delivery, in ms.
    pub(crate) fn min_retry_delay_ms(&self, registry: &super::Registry) -> i64 {
        let ms = registry
            .file
            .host
            .min_retry_delay_ms
            .unwrap_or(DEFAULT_MIN_RETRY_DELAY_MS);
        i64::try_from(ms).unwrap_or(i64::MAX)
    }

    /// The invocations a minute a tenant's `plugin` may have: its own limit, else the host's.
    pub(crate) fn invocations_per_minute(
        &self,
        registry: &super::Registry,
        plugin: &super::PluginEntry,
    ) -> u32 {
        plugin
            .decl
            .limits
            .invocations_per_minute
            .or(registry.file.host.invocations_per_minute)
            .unwrap_or(DEFAULT_INVOCATIONS_PER_MINUTE)
    }

    /// Deliveries of `tenant`'s `plugin` held back by its budget: counted now in the usage
    /// counters (`deliveries.deferred`); the tenant's log gets one line when the minute ends.
    pub(crate) fn note_deferred(&self, tenant: &str, plugin: &str, n: usize, now_ms: i64) {
        self.inner.services.journal.usage(
            tenant,
            plugin,
            &crate::clock::day_of(now_ms),
            &[("deliveries.deferred", n as i64)],
        );
    }
}

/// Write one line per ended minute in which a tenant's plugin went over its budget, in that
/// tenant's log (and the host's own), until shutdown.
pub(super) async fn report_excess(host: super::Host) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(REPORT_EVERY) => {}
            _ = host.inner.shutdown.wait() => return,
        }
        let now = crate::clock::now_ms();
        let lines: Vec<crate::store::LogEntry> = host
            .inner
            .budget
            .take_excess(now)
            .into_iter()
            .map(|e| {
                let message = e.message();
                tracing::warn!("{message}");
                crate::store::LogEntry {
                    id: 0,
                    tenant: e.tenant,
                    plugin: e.plugin,
                    invocation: String::new(),
                    at: now,
                    level: "warn".into(),
                    message,
                }
            })
            .collect();
        host.inner.services.journal.log(lines);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_040_000; // a whole minute

    #[test]
    fn the_budget_admits_its_limit_a_minute_and_defers_the_rest_to_the_next_minute() {
        let b = InvocationBudget::default();
        for i in 0..3 {
            assert_eq!(
                b.admit("t", "p", 3, 1, T0 + i),
                Admission::Admitted,
                "within the budget"
            );
        }
        assert_eq!(
            b.admit("t", "p", 3, 1, T0 + 10),
            Admission::Deferred {
                until_ms: T0 + 60_000
            }
        );
        // A batch over the budget defers all its deliveries.
        assert!(matches!(
            b.admit("t", "p", 3, 5, T0 + 20),
            Admission::Deferred { .. }
        ));
        assert_eq!(
            b.admit("u", "p", 3, 1, T0 + 30),
            Admission::Admitted,
            "another tenant has its own budget"
        );
        assert_eq!(
            b.admit("t", "q", 3, 1, T0 + 30),
            Admission::Admitted,
            "and another plugin"
        );
        assert!(
            b.take_excess(T0 + 59_999).is_empty(),
            "reported only once the minute is over"
        );
        assert_eq!(
            b.admit("t", "p", 3, 1, T0 + 60_000),
            Admission::Admitted,
            "a new minute, a new budget"
        );
        let excess = b.take_excess(T0 + 60_001);
        assert_eq!(
            excess,
            vec![Excess {
                tenant: "t".into(),
                plugin: "p".into(),
                limit: 3,
                deferred: 6,
            }]
        );
        assert!(b.take_excess(T0 + 200_000).is_empty(), "reported once");
    }

    #[test]
    fn an_ended_minute_is_reported_without_another_invocation_and_forgotten() {
        let b = InvocationBudget::default();
        b.admit("t", "p", 1, 1, T0);
        b.admit("t", "p", 1, 1204, T0 + 1);
        b.admit("u", "p", 5, 1, T0 + 2);
        let excess = b.take_excess(T0 + 61_000);
        assert_eq!(
            excess.len(),
            1,
            "only the minute with deferrals: {excess:?}"
        );
        assert_eq!(
            excess[0].message(),
            "tenant t: plugin p over its budget of 1 invocations a minute: 1,204 deliveries deferred"
        );
        assert!(lock(&b.windows).is_empty(), "ended minutes are forgotten");
    }

    #[test]
    fn counts_are_written_with_thousands_separators() {
        let one = Excess {
            tenant: "t".into(),
            plugin: "p".into(),
            limit: 600,
            deferred: 1,
        };
        assert!(one.message().ends_with(": 1 delivery deferred"));
    }

    #[test]
    fn the_floor_and_the_budget_are_the_operators_to_set_and_zero_budgets_are_refused() {
        let parse = |text: &str| crate::config::parse_str(std::path::Path::new("p.toml"), text);
        let file = parse(
            "[host]\nmin_retry_delay_ms = 250\ninvocations_per_minute = 100\n\
             [plugins.p]\ncomponent = \"p.wasm\"\n[plugins.p.limits]\ninvocations_per_minute = 7\n",
        )
        .expect("valid");
        assert_eq!(file.host.min_retry_delay_ms, Some(250));
        assert_eq!(file.host.invocations_per_minute, Some(100));
        assert_eq!(
            file.plugins["p"].get_ref().limits.invocations_per_minute,
            Some(7)
        );
        for (text, field) in [
            (
                "[host]\ninvocations_per_minute = 0\n",
                "host.invocations_per_minute",
            ),
            (
                "[host]\nmin_retry_delay_ms = 3600001\n",
                "host.min_retry_delay_ms",
            ),
            (
                "[plugins.p]\ncomponent = \"p.wasm\"\n[plugins.p.limits]\ninvocations_per_minute = 0\n",
                "plugins.p.limits.invocations_per_minute",
            ),
        ] {
            let errors = parse(text).expect_err(text);
            assert!(
                errors.iter().any(|e| e.field == field),
                "{field}: {errors:?}"
            );
        }
    }

    #[test]
    fn a_delivery_is_not_rerun_sooner_than_the_floor_after_its_last_run() {
        let r = RecentRuns::default();
        assert_eq!(r.too_soon(1, T0, 1000), None, "never ran");
        r.ran(1, T0, 1000);
        assert_eq!(r.too_soon(1, T0 + 10, 1000), Some(T0 + 1000));
        assert_eq!(r.too_soon(1, T0 + 1000, 1000), None);
        assert_eq!(r.too_soon(2, T0 + 10, 1000), None, "another delivery");
        r.forget(1);
        assert_eq!(r.too_soon(1, T0 + 10, 1000), None);
    }

    #[test]
    fn old_runs_are_pruned_as_the_map_grows() {
        let r = RecentRuns::default();
        for id in 0..5000 {
            r.ran(id, T0 + id * 10, 1000);
        }
        let len = lock(&r.inner).last.len();
        assert!(
            len < 2 * MIN_PRUNE_AT,
            "runs older than the floor dropped: {len}"
        );
        assert_eq!(
            r.too_soon(4999, T0 + 49_995, 1000),
            Some(T0 + 49_990 + 1000)
        );
    }
}
