//! Recovery from a CRM outage without waiting out the backoff (H-8).
//!
//! While a tenant's plugin fails transiently, each delivery backs off on its own schedule
//! (1 s, 2 s, 4 s … up to 5 minutes), so after a long outage the last of them would come
//! back minutes after the CRM did. Instead the host keeps, per (tenant, plugin) that is
//! failing, a probe: every `probe_interval` one of its backed-off deliveries (the one due
//! soonest) is made due at once. The first success of that tenant's plugin, a probe's or
//! any other delivery's, ends the outage: every backed-off delivery of it is made due again,
//! spread at `deliveries_per_second` so that the recovery itself does not burst into the
//! CRM's limits (a batching plugin still takes them a batch at a time).
//!
//! The set of failing plugins lives in memory; after a restart it is rebuilt from the queue
//! (every tenant's plugin with a backed-off delivery).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How the host recovers from an outage.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryOptions {
    /// How often a failing tenant's plugin gets one delivery retried regardless of backoff.
    pub probe_interval: Duration,
    /// How fast its backlog is made due once it succeeds again.
    pub deliveries_per_second: u32,
}

impl Default for RecoveryOptions {
    fn default() -> Self {
        RecoveryOptions {
            probe_interval: Duration::from_secs(5),
            deliveries_per_second: 20,
        }
    }
}

impl RecoveryOptions {
    /// The gap between two released deliveries of one tenant's plugin.
    pub fn pace_ms(&self) -> i64 {
        1000 / i64::from(self.deliveries_per_second.max(1))
    }

    fn probe_ms(&self) -> i64 {
        i64::try_from(self.probe_interval.as_millis()).unwrap_or(i64::MAX)
    }
}

type Key = (String, String);

/// The tenants' plugins in an outage, each with when its next probe is due.
#[derive(Debug, Default)]
pub struct Outages {
    next_probe: Mutex<HashMap<Key, i64>>,
}

impl Outages {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, i64>> {
        self.next_probe.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A transient failure of this tenant's plugin: it is in an outage (if not already).
    pub fn failed(&self, tenant: &str, plugin: &str, now_ms: i64, opts: &RecoveryOptions) {
        self.lock()
            .entry((tenant.to_string(), plugin.to_string()))
            .or_insert_with(|| now_ms.saturating_add(opts.probe_ms()));
    }

    /// A success: true when it ends an outage (the backlog is to be released).
    pub fn succeeded(&self, tenant: &str, plugin: &str) -> bool {
        let mut map = self.lock();
        // Most successes are of plugins in no outage: no allocation for the look-up then.
        if map.is_empty() {
            return false;
        }
        map.remove(&(tenant.to_string(), plugin.to_string()))
            .is_some()
    }

    /// The tenants' plugins whose probe is due now; their next probe is scheduled.
    pub fn probes_due(&self, now_ms: i64, opts: &RecoveryOptions) -> Vec<Key> {
        let mut map = self.lock();
        let mut due = Vec::new();
        for (key, at) in map.iter_mut() {
            if *at <= now_ms {
                *at = now_ms.saturating_add(opts.probe_ms());
                due.push(key.clone());
            }
        }
        due
    }

    /// How many tenants' plugins are in an outage.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// When the next probe is due, if any outage is going on.
    pub fn next_probe_at(&self) -> Option<i64> {
        self.lock().values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_probed_at_its_interval_and_ends_with_a_success() {
        let opts = RecoveryOptions {
            probe_interval: Duration::from_secs(5),
            deliveries_per_second: 20,
        };
        assert_eq!(opts.pace_ms(), 50);
        let o = Outages::default();
        assert!(!o.succeeded("a", "p"), "no outage: nothing to release");
        o.failed("a", "p", 1_000, &opts);
        o.failed("a", "p", 3_000, &opts); // still the first probe time
        assert_eq!(o.next_probe_at(), Some(6_000));
        assert!(o.probes_due(5_999, &opts).is_empty());
        assert_eq!(
            o.probes_due(6_000, &opts),
            vec![("a".to_string(), "p".to_string())]
        );
        assert_eq!(o.next_probe_at(), Some(11_000));
        assert!(
            !o.succeeded("b", "p"),
            "another tenant's success ends nothing"
        );
        assert!(o.succeeded("a", "p"));
        assert!(!o.succeeded("a", "p"), "released once");
        assert_eq!(o.next_probe_at(), None);
    }
}
