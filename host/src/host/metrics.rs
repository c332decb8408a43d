//! Prometheus metrics (`GET /metrics`, text format), gathered when scraped.
//!
//! Host-wide figures only: with 10,000 tenants, per-tenant figures belong in the usage API, not
//! in labels. So far: liveness, readiness and each of its checks (health.rs), the free space of
//! the data directory, the delivery queue and loop, and the tenants' plugins in an outage
//! (recovery.rs).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Host;

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

impl Host {
    /// The metrics in Prometheus' text format. Runs the readiness checks (their storage probe
    /// is cached for a second), so call it off the async threads.
    pub fn metrics_text(&self) -> String {
        let report = self.readiness();
        let mut registry = Registry::default();
        gauge(
            &mut registry,
            "pbx_host_up",
            "1 while the host answers (liveness)",
            1,
        );
        gauge(
            &mut registry,
            "pbx_host_ready",
            "1 when the host is ready (GET /readyz answers 200)",
            i64::from(report.ready),
        );
        let checks = Family::<Vec<(String, String)>, Gauge>::default();
        for (name, ok) in [
            ("storage", report.checks.storage.ok),
            ("plugins", report.checks.plugins.ok),
            ("queue", report.checks.queue.ok),
        ] {
            checks
                .get_or_create(&vec![("check".to_string(), name.to_string())])
                .set(i64::from(ok));
        }
        registry.register(
            "pbx_host_readiness_check",
            "1 when this readiness check passes",
            checks,
        );
        if let Some(free) = report.checks.storage.free_bytes {
            gauge(
                &mut registry,
                "pbx_host_data_dir_free_bytes",
                "Free bytes on the data directory's filesystem at the last probe",
                i64::try_from(free).unwrap_or(i64::MAX),
            );
        }
        gauge(
            &mut registry,
            "pbx_host_plugins_loaded",
            "Plugins loaded",
            report.checks.plugins.loaded.len() as i64,
        );
        gauge(
            &mut registry,
            "pbx_host_plugins_failed",
            "Declared plugins that failed to load",
            report.checks.plugins.failed.len() as i64,
        );
        gauge(
            &mut registry,
            "pbx_host_delivery_loop_silent_milliseconds",
            "Time since the delivery loop last went round",
            report.checks.queue.loop_silent_ms,
        );
        if let Ok(pending) = self.storage().pending_count() {
            gauge(
                &mut registry,
                "pbx_host_deliveries_pending",
                "Deliveries waiting in the queue (all tenants)",
                i64::try_from(pending).unwrap_or(i64::MAX),
            );
        }
        gauge(
            &mut registry,
            "pbx_host_plugins_in_outage",
            "Tenants' plugins whose CRM is failing, probed until it answers again",
            self.inner.outages.count() as i64,
        );
        let mut text = String::new();
        if let Err(e) = encode(&mut text, &registry) {
            tracing::error!("cannot encode the metrics: {e}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_gauge_is_encoded_in_the_text_format() {
        let mut registry = prometheus_client::registry::Registry::default();
        super::gauge(&mut registry, "pbx_host_ready", "ready", 0);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("# TYPE pbx_host_ready gauge"), "{text}");
        assert!(text.contains("\npbx_host_ready 0\n"), "{text}");
    }
}
