//! The data of one invocation's `Store`: who it runs for, what it may touch, what it used.
//!
//! A fresh store per invocation: nothing of one tenant's invocation can be seen by the next.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::cpu::CpuMeter;
use super::limits::Limits;
use crate::capabilities::{PluginGrants, Services};
use crate::store::LogEntry;

/// Who an invocation runs for and what it may do. Cheap to clone (Arcs).
#[derive(Clone)]
pub struct InvocationScope {
    pub services: Arc<Services>,
    pub tenant_id: Arc<str>,
    pub default_country: Arc<str>,
    pub plugin_id: Arc<str>,
    pub grants: Arc<PluginGrants>,
    pub limits: Arc<Limits>,
    /// The tenant's settings for this plugin (passed to the plugin, and used to expand
    /// `{config.KEY}` in its HTTP grants).
    pub config: Arc<serde_json::Value>,
    pub invocation_id: Arc<str>,
}

/// What an invocation consumed, reported in usage counters and errors.
#[derive(Debug, Default, Clone)]
pub struct Meter {
    pub http_requests: u32,
    pub http_bytes_out: u64,
    pub http_bytes_in: u64,
    pub http_denied: u32,
    /// Lines the plugin wrote over the cap (counted, not stored).
    pub log_lines_dropped: u32,
    /// Lines the host wrote on the plugin's behalf over the cap (refusals, "secret not
    /// set", "state is full"): counted per kind and summarised at the end, not stored.
    pub host_lines_dropped: u32,
    pub denials: u32,
    /// Latest `Sforce-Limit-Info` api-usage seen ("used/max").
    pub crm_api_usage: Option<(u64, u64)>,
}

/// The store data.
pub struct Invocation {
    pub scope: InvocationScope,
    pub deadline: Instant,
    pub meter: Meter,
    /// Log lines buffered for one write at the end of the invocation.
    pub logs: Vec<LogEntry>,
    /// Host lines over the cap, by kind ([`line_kind`]), summarised once at the end.
    dropped_by_kind: std::collections::BTreeMap<String, u32>,
    /// State writes not yet committed ([`crate::capabilities::state::PendingState`]).
    pub pending_state: crate::capabilities::state::PendingState,
    pub limiter: MemoryLimiter,
    pub cpu: Arc<CpuMeter>,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl Invocation {
    pub fn new(scope: InvocationScope, cpu: Arc<CpuMeter>) -> Self {
        let limits = scope.limits.clone();
        Invocation {
            deadline: Instant::now() + limits.wall,
            limiter: MemoryLimiter::new(limits.memory_bytes as usize),
            scope,
            meter: Meter::default(),
            logs: Vec::new(),
            dropped_by_kind: Default::default(),
            pending_state: Default::default(),
            cpu,
            // No environment, arguments, preopened directories or sockets (all denied by
            // default in wasmtime-wasi 48); stdio goes nowhere. Clocks and randomness answer.
            wasi: WasiCtxBuilder::new()
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build(),
            table: ResourceTable::new(),
        }
    }

    /// Time left before the wall-clock deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Whether another line fits in this invocation's share of the log: plugin lines and the
    /// lines the host writes on the plugin's behalf count against the same cap.
    pub fn log_has_room(&self) -> bool {
        self.logs.len() < self.scope.limits.log_lines as usize
    }

    /// Store a line now, cut to the line-length cap. Callers check the cap first.
    fn push_line(&mut self, level: &str, mut message: String) {
        crate::capabilities::log::truncate(&mut message, self.scope.limits.log_line_bytes as usize);
        self.logs.push(LogEntry {
            id: 0,
            tenant: self.scope.tenant_id.to_string(),
            plugin: self.scope.plugin_id.to_string(),
            invocation: self.scope.invocation_id.to_string(),
            at: crate::clock::now_ms(),
            level: level.to_string(),
            message,
        });
    }

    /// A line the host writes on the plugin's behalf (a refusal, "secret not set", "state is
    /// full", an HTTP failure). A plugin can cause any number of these, so they count against
    /// the invocation's log cap like its own lines; over the cap they are counted by kind and
    /// summarised once at the end ([`Invocation::finish_log`]).
    pub fn log_line(&mut self, level: &str, message: String) {
        let kind = line_kind(&message);
        self.log_line_of_kind(kind, level, message);
    }

    fn log_line_of_kind(&mut self, kind: String, level: &str, message: String) {
        if self.log_has_room() {
            self.push_line(level, message);
            return;
        }
        self.meter.host_lines_dropped += 1;
        // Kinds come from the host's own wording; bounded all the same.
        let kind = if self.dropped_by_kind.len() < MAX_SUMMARISED_KINDS
            || self.dropped_by_kind.contains_key(&kind)
        {
            kind
        } else {
            "other".to_string()
        };
        *self.dropped_by_kind.entry(kind).or_default() += 1;
    }

    /// A plugin's own line (the `log` capability): stored while there is room, else counted.
    pub fn plugin_log_line(&mut self, level: &str, message: String) {
        if self.log_has_room() {
            self.push_line(level, message);
        } else {
            self.meter.log_lines_dropped += 1;
        }
    }

    /// The host's own lines at the end of an invocation (its outcome, a failed state
    /// commit): a handful per invocation whatever the plugin did, so always stored.
    pub fn log_final_line(&mut self, level: &str, message: String) {
        self.push_line(level, message);
    }

    /// Summarise what the caps kept out of the log: one line for the plugin's own lines and
    /// one per kind of host line ("1,204 more refusals of the same kind (denied: secrets)").
    pub fn finish_log(&mut self) {
        let limit = self.scope.limits.log_lines;
        if self.meter.log_lines_dropped > 0 {
            let n = self.meter.log_lines_dropped;
            self.push_line(
                "warn",
                format!("{n} more log lines dropped (limit {limit} per invocation)"),
            );
        }
        for (kind, n) in std::mem::take(&mut self.dropped_by_kind) {
            let what = if kind.starts_with("denied") {
                "refusals"
            } else {
                "host lines"
            };
            self.push_line(
                "warn",
                format!(
                    "{} more {what} of the same kind ({kind}) not stored (limit {limit} lines per invocation)",
                    thousands(u64::from(n))
                ),
            );
        }
    }

    /// A capability refused something: the tenant's log says what and why.
    pub fn record_denial(&mut self, capability: &str, why: &str) {
        self.meter.denials += 1;
        let kind: String = format!("denied: {capability}").chars().take(40).collect();
        self.log_line_of_kind(kind, "warn", format!("denied: {capability}: {why}"));
    }
}

/// Distinct kinds of host lines summarised per invocation; the rest are "other".
const MAX_SUMMARISED_KINDS: usize = 8;

/// The kind of a host line, for its summary: the host's wording before the first ':' (e.g.
/// "http", "state is full"), else its first word ("secret"); never a value the plugin chose
/// (those come after the prefix).
fn line_kind(message: &str) -> String {
    let prefix = match message.split_once(':') {
        Some((p, _))
            if p.len() <= 24
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b' ' || b == b'-') =>
        {
            p
        }
        _ => message.split(' ').next().unwrap_or(""),
    };
    prefix.chars().take(24).collect()
}

/// 1204 -> "1,204".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl WasiView for Invocation {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Memory, table and instance limits of one store; remembers whether memory ran out so
/// that the failure can be reported as "memory limit" rather than as a bare trap.
pub struct MemoryLimiter {
    max_memory: usize,
    /// The size a denied growth asked for.
    pub denied_growth: Option<usize>,
}

impl MemoryLimiter {
    fn new(max_memory: usize) -> Self {
        MemoryLimiter {
            max_memory,
            denied_growth: None,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.denied_growth = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    // A Rust wasip2 component is several core instances; these bound a hostile component
    // that declares thousands of them.
    fn instances(&self) -> usize {
        64
    }
    fn tables(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        16
    }
}

#[cfg(test)]
mod tests {
    use super::{line_kind, thousands};

    #[test]
    fn counts_are_written_with_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1204), "1,204");
        assert_eq!(thousands(105_459), "105,459");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    #[test]
    fn a_host_lines_kind_is_its_fixed_prefix_not_the_plugins_values() {
        assert_eq!(
            line_kind("state is full: the plugin's state is limited to 9 bytes"),
            "state is full"
        );
        assert_eq!(
            line_kind("http: request limit of 64 per invocation reached"),
            "http"
        );
        assert_eq!(
            line_kind("secret 'a:b' is not set for this tenant"),
            "secret"
        );
    }
}
