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
    pub log_lines_dropped: u32,
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

    /// Record a line in the tenant's integration log (host lines and plugin lines alike).
    pub fn log_line(&mut self, level: &str, message: String) {
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

    /// A capability refused something: the tenant's log says what and why.
    pub fn record_denial(&mut self, capability: &str, why: &str) {
        self.meter.denials += 1;
        self.log_line("warn", format!("denied: {capability}: {why}"));
    }
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
