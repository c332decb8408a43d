//! Loading components and invoking them under limits.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};

use super::bindings::{
    self, Host_ as HostWorld, event_batch_handler, event_handler, ivr_handler, scheduled,
    settings_check, types,
};
use super::compile_cache::{CompileCache, LoadSource};
use super::cpu::{CpuMeter, Metered};
use super::engine::{AllocatorKind, EngineOptions, build_engine, start_epoch_ticker};
use super::fair::{FairPermit, FairPool, Refusal, default_reserve};
use super::invocation::{Invocation, InvocationScope, Meter};
use crate::clock::{day_of, now_ms};

/// The runtime shared by every plugin: engine, linker, compile cache, instance slots.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Invocation>,
    cache: CompileCache,
    allocator: AllocatorKind,
    /// The pooling allocator errors instead of waiting when its slots run out; invocations
    /// wait here for a slot instead, each tenant within its fair share (fair.rs), so that one
    /// tenant's slow invocations cannot hold every instance.
    slots: FairPool,
    /// The host-wide memory budget of live instances, in MiB, shared fairly by tenant too:
    /// each invocation holds its plugin's memory limit from it while its instance lives.
    memory: FairPool,
}

/// A live-instance slot of one tenant and its memory limit's share of the budget, taken
/// before instantiating ([`Runtime::try_slot`]).
pub struct InstanceSlot {
    _slot: FairPermit,
    _memory: FairPermit,
}

/// Why no instance could be started for a tenant now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotRefusal {
    #[error("plugin instances: {0}")]
    Instances(Refusal),
    #[error("instance memory budget in MiB: {0}")]
    Memory(Refusal),
}

/// MiB of the memory budget an invocation with this memory limit reserves.
fn budget_mib(memory_bytes: u64) -> usize {
    usize::try_from(memory_bytes.div_ceil(1 << 20)).unwrap_or(usize::MAX)
}

/// Why a component could not be loaded. The plugin is skipped; the others run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read component {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a WebAssembly component: {reason}")]
    NotAComponent { path: String, reason: String },
    #[error("{path} was built against {found}; this host serves {package}@{version} (and compatible 0.1.x versions)", package = bindings::WIT_PACKAGE, version = bindings::WIT_VERSION)]
    WitVersion { path: String, found: String },
    #[error("{path} cannot be linked: {reason}")]
    Link { path: String, reason: String },
    #[error(
        "{path} exports none of the handler interfaces (event-handler, ivr-handler, scheduled, settings-check)"
    )]
    NoExports { path: String },
}

/// What a component exports, resolved once at load time.
#[derive(Clone, Default)]
pub struct Exports {
    pub event: Option<event_handler::GuestIndices>,
    pub batch: Option<event_batch_handler::GuestIndices>,
    pub ivr: Option<ivr_handler::GuestIndices>,
    pub scheduled: Option<scheduled::GuestIndices>,
    pub settings: Option<settings_check::GuestIndices>,
}

impl Exports {
    /// Names of the exported handler interfaces (for the admin surface).
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.event.is_some() {
            v.push("event-handler");
        }
        if self.batch.is_some() {
            v.push("event-batch-handler");
        }
        if self.ivr.is_some() {
            v.push("ivr-handler");
        }
        if self.scheduled.is_some() {
            v.push("scheduled");
        }
        if self.settings.is_some() {
            v.push("settings-check");
        }
        v
    }
}

/// A loaded, linked component, ready to instantiate.
#[derive(Clone)]
pub struct LoadedComponent {
    pub pre: InstancePre<Invocation>,
    pub exports: Exports,
    pub source: LoadSource,
    pub digest: [u8; 32],
}

/// What to call.
pub enum Call {
    Event(types::CallEvent),
    /// Several calls' events at once (the plugin exports `event-batch-handler`).
    Batch(Vec<types::CallEvent>),
    Ivr(ivr_handler::IvrRequest),
    Scheduled(String),
    Check,
}

impl Call {
    fn export_name(&self) -> &'static str {
        match self {
            Call::Event(_) => "event-handler",
            Call::Batch(_) => "event-batch-handler",
            Call::Ivr(_) => "ivr-handler",
            Call::Scheduled(_) => "scheduled",
            Call::Check => "settings-check",
        }
    }
}

/// What a successful call returned.
#[derive(Debug)]
pub enum CallOutput {
    Done,
    /// One result per event of a batch, in order.
    Batch(Vec<Result<(), types::PluginError>>),
    /// A scheduled run finished; it may ask to run again sooner than its interval.
    Scheduled {
        run_again_after_ms: Option<u32>,
    },
    Ivr(ivr_handler::IvrDecision),
    Check(Vec<settings_check::CheckItem>),
}

/// Why an invocation failed. Each variant is contained: the host and other invocations go on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvocationError {
    /// The plugin ran and reported a failure.
    #[error("plugin reported {kind:?}: {message}")]
    Plugin {
        kind: types::ErrorKind,
        message: String,
        retry_after_ms: Option<u32>,
    },
    #[error("CPU limit of {} ms exceeded", .limit.as_millis())]
    CpuLimit { limit: Duration },
    #[error("memory limit of {} MiB exceeded (the plugin asked for {} MiB)", limit >> 20, asked >> 20)]
    MemoryLimit { limit: u64, asked: u64 },
    #[error("wall-clock limit of {} ms exceeded", .limit.as_millis())]
    WallClock { limit: Duration },
    #[error("the plugin returned {size} bytes, over the limit of {limit}")]
    ReturnTooLarge { size: u64, limit: u64 },
    #[error("the plugin trapped: {0}")]
    Trap(String),
    #[error("the plugin does not export {0}")]
    NotExported(&'static str),
    #[error("the plugin could not be instantiated: {0}")]
    Instantiate(String),
}

impl InvocationError {
    /// A short machine-readable kind for logs, counters and API responses.
    pub fn code(&self) -> &'static str {
        match self {
            InvocationError::Plugin { .. } => "plugin-error",
            InvocationError::CpuLimit { .. } => "cpu-limit",
            InvocationError::MemoryLimit { .. } => "memory-limit",
            InvocationError::WallClock { .. } => "wall-clock-limit",
            InvocationError::ReturnTooLarge { .. } => "return-too-large",
            InvocationError::Trap(_) => "trap",
            InvocationError::NotExported(_) => "not-exported",
            InvocationError::Instantiate(_) => "instantiate",
        }
    }
}

/// The outcome of one invocation and what it consumed.
#[derive(Debug)]
pub struct InvocationReport {
    pub outcome: Result<CallOutput, InvocationError>,
    pub meter: Meter,
    pub elapsed: Duration,
    pub cpu: Duration,
    pub invocation_id: String,
}

/// The epoch callback's error when the CPU budget is spent.
#[derive(Debug, thiserror::Error)]
#[error("CPU limit exceeded")]
struct CpuLimitExceeded;

impl Runtime {
    /// Build the engine and linker. `cache_dir` holds precompiled components.
    pub fn new(
        opts: &EngineOptions,
        cache_dir: Option<std::path::PathBuf>,
    ) -> anyhow::Result<Self> {
        let (engine, allocator) = build_engine(opts)?;
        start_epoch_ticker(&engine);
        let mut linker: Linker<Invocation> = Linker::new(&engine);
        // WASI is linked with a context that grants nothing (no env, args, files or sockets):
        // a std guest imports it whether it uses it or not.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        HostWorld::add_to_linker::<Invocation, HasSelf<Invocation>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Ok(Runtime {
            engine,
            linker,
            cache: CompileCache::new(cache_dir)?,
            allocator,
            slots: {
                let n = opts.max_instances.max(1) as usize;
                FairPool::new(n, default_reserve(n))
            },
            memory: {
                let mib =
                    usize::try_from(opts.instance_memory_budget_mib.max(1)).unwrap_or(usize::MAX);
                FairPool::new(mib, default_reserve(mib))
            },
        })
    }

    pub fn allocator(&self) -> AllocatorKind {
        self.allocator
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A live-instance slot for `tenant` with `memory_bytes` of the memory budget now, or why
    /// not (its fair share is in use): for the IVR door, which answers with the fallback at
    /// once rather than wait.
    pub fn try_slot(&self, tenant: &str, memory_bytes: u64) -> Result<InstanceSlot, SlotRefusal> {
        let slot = self
            .slots
            .try_acquire(tenant)
            .map_err(SlotRefusal::Instances)?;
        let memory = self
            .memory
            .try_acquire_units(tenant, budget_mib(memory_bytes))
            .map_err(SlotRefusal::Memory)?;
        Ok(InstanceSlot {
            _slot: slot,
            _memory: memory,
        })
    }

    /// Live-instance slots and the memory budget (MiB): (in use, in all) of each.
    pub fn slots_in_use(&self) -> ((usize, usize), (usize, usize)) {
        (
            (self.slots.in_use(), self.slots.capacity()),
            (self.memory.in_use(), self.memory.capacity()),
        )
    }

    /// Wait for a slot and the memory budget, each within the tenant's fair share.
    async fn slot(&self, tenant: &str, memory_bytes: u64) -> InstanceSlot {
        let slot = self.slots.acquire(tenant).await;
        let mib = budget_mib(memory_bytes);
        let memory = match self.memory.try_acquire_units(tenant, mib) {
            Ok(m) => m,
            Err(refusal) => {
                tracing::info!(
                    "tenant {tenant}: an invocation waits for {mib} MiB of the instance memory budget ({refusal})"
                );
                self.memory.acquire_units(tenant, mib).await
            }
        };
        InstanceSlot {
            _slot: slot,
            _memory: memory,
        }
    }

    /// Load, compile (or fetch from the cache) and link a component file.
    pub fn load(&self, path: &Path) -> Result<LoadedComponent, LoadError> {
        let shown = path.display().to_string();
        let wasm = std::fs::read(path).map_err(|source| LoadError::Read {
            path: shown.clone(),
            source,
        })?;
        if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
            return Err(LoadError::NotAComponent {
                path: shown,
                reason: "no WebAssembly header (truncated or not a .wasm file)".into(),
            });
        }
        if wasm[4..8] != [0x0d, 0x00, 0x01, 0x00] {
            return Err(LoadError::NotAComponent {
                path: shown,
                reason:
                    "this is a core module; build the plugin for wasm32-wasip2 to get a component"
                        .into(),
            });
        }
        let (component, source, digest) =
            self.cache
                .load(&self.engine, &wasm)
                .map_err(|e| LoadError::NotAComponent {
                    path: shown.clone(),
                    reason: format!("{e}"),
                })?;
        if let Some(found) = foreign_wit_version(&self.engine, &component) {
            return Err(LoadError::WitVersion { path: shown, found });
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link {
                path: shown.clone(),
                reason: format!("{e:#}"),
            })?;
        let exports = Exports {
            event: event_handler::GuestIndices::new(&pre).ok(),
            batch: event_batch_handler::GuestIndices::new(&pre).ok(),
            ivr: ivr_handler::GuestIndices::new(&pre).ok(),
            scheduled: scheduled::GuestIndices::new(&pre).ok(),
            settings: settings_check::GuestIndices::new(&pre).ok(),
        };
        if exports.names().is_empty() {
            return Err(LoadError::NoExports { path: shown });
        }
        Ok(LoadedComponent {
            pre,
            exports,
            source,
            digest,
        })
    }

    /// The linker every component is linked with (WASI and the host's imports). For embedders
    /// and benchmarks that instantiate without the `InstancePre` of [`Runtime::load`]
    /// (`Linker::instantiate_async` type-checks and resolves every import on each call).
    pub fn linker(&self) -> &Linker<Invocation> {
        &self.linker
    }

    /// A store set up as [`Runtime::invoke`] sets up its own: the scope's memory limiter and
    /// the epoch callback. For embedders and benchmarks that drive instances themselves, e.g.
    /// a warm instance reused across calls, which the host itself never does (a fresh instance
    /// per invocation is its isolation guarantee). The CPU limit is counted only inside
    /// `invoke`'s metered future, so a store from here is bounded by memory only.
    pub fn new_store(&self, scope: InvocationScope) -> Store<Invocation> {
        self.store_with_meter(scope, Arc::new(CpuMeter::default()))
    }

    fn store_with_meter(&self, scope: InvocationScope, cpu: Arc<CpuMeter>) -> Store<Invocation> {
        let cpu_limit = scope.limits.cpu;
        let mut store = Store::new(&self.engine, Invocation::new(scope, cpu.clone()));
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if cpu.used() >= cpu_limit {
                return Err(wasmtime::Error::new(CpuLimitExceeded));
            }
            // Yield at every tick so that a busy plugin cannot hold a worker thread.
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }

    /// Run one call in a fresh instance, under the scope's limits. Never panics and never
    /// fails the host: every failure is in the report. Logs and usage are written here.
    /// Waits for a live-instance slot within the tenant's fair share first.
    pub async fn invoke(
        &self,
        component: &LoadedComponent,
        scope: InvocationScope,
        ctx: types::Context,
        call: Call,
    ) -> InvocationReport {
        let slot = self.slot(&scope.tenant_id, scope.limits.memory_bytes).await;
        self.invoke_in(slot, component, scope, ctx, call).await
    }

    /// [`Runtime::invoke`] in a slot already taken ([`Runtime::try_slot`]).
    pub async fn invoke_in(
        &self,
        slot: InstanceSlot,
        component: &LoadedComponent,
        scope: InvocationScope,
        ctx: types::Context,
        call: Call,
    ) -> InvocationReport {
        let started = Instant::now();
        let limits = scope.limits.clone();
        let invocation_id = scope.invocation_id.to_string();
        let services = scope.services.clone();
        let cpu = Arc::new(CpuMeter::default());
        // Held until the store is gone.
        let _slot = slot;
        let mut store = self.store_with_meter(scope, cpu.clone());

        let run = call_export(&mut store, component, &ctx, call, limits.return_bytes);
        let outcome = match tokio::time::timeout(limits.wall, Metered::new(run, cpu.clone())).await
        {
            Err(_) => Err(InvocationError::WallClock { limit: limits.wall }),
            Ok(Ok(output)) => Ok(output),
            Ok(Err(CallFailure::Known(e))) => Err(e),
            Ok(Err(CallFailure::Wasm(e))) => Err(classify(&e, &store, &limits)),
        };
        let cpu_used = cpu.used();
        let data = store.data_mut();
        // Written whether the call succeeded or not, as each write would have been at once.
        let outcome = match (data.flush_state(), outcome) {
            (Err(e), Ok(_)) => Err(InvocationError::Plugin {
                kind: types::ErrorKind::Transient,
                message: format!("the plugin's state could not be saved: {e}"),
                retry_after_ms: None,
            }),
            (Err(e), Err(failed)) => {
                data.log_final_line(
                    "error",
                    format!("the plugin's state could not be saved: {e}"),
                );
                Err(failed)
            }
            (Ok(()), outcome) => outcome,
        };
        // What the log caps kept out: one summary per kind, not one line each.
        data.finish_log();
        if let Err(e) = &outcome {
            let level = if matches!(e, InvocationError::Plugin { .. }) {
                "warn"
            } else {
                "error"
            };
            data.log_final_line(level, format!("invocation failed: {e}"));
        }
        let logs = std::mem::take(&mut data.logs);
        let meter = data.meter.clone();
        let (tenant, plugin) = (data.scope.tenant_id.clone(), data.scope.plugin_id.clone());
        drop(store);
        services.journal.log(logs);
        let counters = [
            ("invocations", 1),
            ("invocations.failed", i64::from(outcome.is_err())),
            ("http.requests", i64::from(meter.http_requests)),
            ("http.bytes_out", meter.http_bytes_out as i64),
            ("http.bytes_in", meter.http_bytes_in as i64),
            ("denials", i64::from(meter.denials)),
        ];
        services
            .journal
            .usage(&tenant, &plugin, &day_of(now_ms()), &counters);
        InvocationReport {
            outcome,
            meter,
            elapsed: started.elapsed(),
            cpu: cpu_used,
            invocation_id,
        }
    }
}

enum CallFailure {
    Known(InvocationError),
    Wasm(wasmtime::Error),
}

impl From<wasmtime::Error> for CallFailure {
    fn from(e: wasmtime::Error) -> Self {
        CallFailure::Wasm(e)
    }
}

fn plugin_error(e: types::PluginError, limit: u64) -> CallFailure {
    // Measured as the JSON text it becomes (API answers, the log, a dead letter).
    let size = super::limits::encoded_text_size(&e.message);
    if size > limit {
        return CallFailure::Known(InvocationError::ReturnTooLarge { size, limit });
    }
    CallFailure::Known(InvocationError::Plugin {
        kind: e.kind,
        message: e.message,
        retry_after_ms: e.retry_after_ms,
    })
}

async fn call_export(
    store: &mut Store<Invocation>,
    component: &LoadedComponent,
    ctx: &types::Context,
    call: Call,
    return_limit: u64,
) -> Result<CallOutput, CallFailure> {
    let name = call.export_name();
    let not_exported = || CallFailure::Known(InvocationError::NotExported(name));
    let exports = &component.exports;
    // Check before instantiating: a call the plugin cannot take costs nothing.
    let exported = match &call {
        Call::Event(_) => exports.event.is_some(),
        Call::Batch(_) => exports.batch.is_some(),
        Call::Ivr(_) => exports.ivr.is_some(),
        Call::Scheduled(_) => exports.scheduled.is_some(),
        Call::Check => exports.settings.is_some(),
    };
    if !exported {
        return Err(not_exported());
    }
    let instance = component
        .pre
        .instantiate_async(&mut *store)
        .await
        .map_err(|e| {
            if store.data().limiter.denied_growth.is_some() {
                CallFailure::Wasm(e)
            } else {
                CallFailure::Known(InvocationError::Instantiate(format!("{e:#}")))
            }
        })?;
    match call {
        Call::Event(event) => {
            let g = exports
                .event
                .as_ref()
                .ok_or_else(not_exported)?
                .load(&mut *store, &instance)?;
            match g.call_handle_event(&mut *store, ctx, &event).await? {
                Ok(()) => Ok(CallOutput::Done),
                Err(e) => Err(plugin_error(e, return_limit)),
            }
        }
        Call::Batch(events) => {
            let g = exports
                .batch
                .as_ref()
                .ok_or_else(not_exported)?
                .load(&mut *store, &instance)?;
            let results = g.call_handle_events(&mut *store, ctx, &events).await?;
            let size: u64 = results
                .iter()
                .map(|r| {
                    r.as_ref()
                        .err()
                        .map_or(0, |e| super::limits::encoded_text_size(&e.message))
                })
                .fold(0, u64::saturating_add);
            if size > return_limit {
                return Err(CallFailure::Known(InvocationError::ReturnTooLarge {
                    size,
                    limit: return_limit,
                }));
            }
            if results.len() != events.len() {
                return Err(CallFailure::Known(InvocationError::Trap(format!(
                    "the plugin returned {} results for a batch of {} events",
                    results.len(),
                    events.len()
                ))));
            }
            Ok(CallOutput::Batch(results))
        }
        Call::Ivr(req) => {
            let g = exports
                .ivr
                .as_ref()
                .ok_or_else(not_exported)?
                .load(&mut *store, &instance)?;
            match g.call_lookup(&mut *store, ctx, &req).await? {
                Ok(d) => {
                    // What reaches the PBX: the decision as JSON.
                    let size = super::limits::encoded_size(&(&d.speech, &d.route, &d.variables));
                    if size > return_limit {
                        return Err(CallFailure::Known(InvocationError::ReturnTooLarge {
                            size,
                            limit: return_limit,
                        }));
                    }
                    Ok(CallOutput::Ivr(d))
                }
                Err(e) => Err(plugin_error(e, return_limit)),
            }
        }
        Call::Scheduled(name) => {
            let g = exports
                .scheduled
                .as_ref()
                .ok_or_else(not_exported)?
                .load(&mut *store, &instance)?;
            match g.call_run(&mut *store, ctx, &name).await? {
                Ok(r) => Ok(CallOutput::Scheduled {
                    run_again_after_ms: r.run_again_after_ms,
                }),
                Err(e) => Err(plugin_error(e, return_limit)),
            }
        }
        Call::Check => {
            let g = exports
                .settings
                .as_ref()
                .ok_or_else(not_exported)?
                .load(&mut *store, &instance)?;
            let items = g.call_check(&mut *store, ctx).await?;
            let size = items
                .iter()
                .map(|i| super::limits::encoded_size(&(&i.name, &i.message, &i.field)))
                .fold(0, u64::saturating_add);
            if size > return_limit {
                return Err(CallFailure::Known(InvocationError::ReturnTooLarge {
                    size,
                    limit: return_limit,
                }));
            }
            Ok(CallOutput::Check(items))
        }
    }
}

/// Turn a wasmtime error into the reason an operator or plugin author can act on.
fn classify(
    e: &wasmtime::Error,
    store: &Store<Invocation>,
    limits: &super::Limits,
) -> InvocationError {
    if e.downcast_ref::<CpuLimitExceeded>().is_some()
        || e.chain().any(|c| c.to_string() == "CPU limit exceeded")
    {
        return InvocationError::CpuLimit { limit: limits.cpu };
    }
    if let Some(asked) = store.data().limiter.denied_growth {
        return InvocationError::MemoryLimit {
            limit: limits.memory_bytes,
            asked: asked as u64,
        };
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        let what = match trap {
            wasmtime::Trap::StackOverflow => {
                "call stack exhausted (unbounded recursion?)".to_string()
            }
            wasmtime::Trap::UnreachableCodeReached => {
                "unreachable executed (a panic or abort in the plugin)".to_string()
            }
            // Rust and C guests keep their data stack at the bottom of linear memory: deep
            // recursion with arrays in its frames wraps the stack pointer out of bounds.
            wasmtime::Trap::MemoryOutOfBounds => "out of bounds memory access (the plugin's \
                 data stack overflowed in deep recursion, or a memory bug)"
                .to_string(),
            other => other.to_string(),
        };
        return InvocationError::Trap(what);
    }
    InvocationError::Trap(format!("{}", e.root_cause()))
}

/// If the component imports `pbx:plugin` at a version this host does not serve, that version.
fn foreign_wit_version(engine: &Engine, component: &Component) -> Option<String> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine).chain(ty.exports(engine)) {
        let Some(rest) = name.strip_prefix("pbx:plugin/") else {
            continue;
        };
        let Some((_, version)) = rest.split_once('@') else {
            continue;
        };
        if !version.starts_with("0.1.") {
            return Some(format!("pbx:plugin@{version}"));
        }
    }
    None
}
