//! Issue 5 §1, invocation overhead: one call event into a plugin doing `state.get`,
//! `state.set` and `log.write` (the `bench-plugin` component), four ways:
//!
//! * `a`: the product path, [`Runtime::invoke`] (pooling allocator, `InstancePre`, a fresh
//!   store and instance per call, limits, CPU metering, log and usage written at the end).
//!   `a_bare` is the same instantiate + call without `invoke`'s bookkeeping, for the a/b
//!   comparison on exactly equal terms.
//! * `b`: a naive embedding: on-demand allocator, `Linker::instantiate_async` (imports
//!   resolved and type-checked on every call), otherwise as `a_bare`.
//! * `c`: a warm instance reused for the same tenant and plugin: only the call. The host
//!   never does this (a fresh instance per invocation is its isolation guarantee); it is the
//!   lower bound of what a call into wasm costs.
//! * `d`: the plugin's logic compiled natively and called in-process, against the same
//!   in-memory storage through the same `Storage` methods.
//!
//! State, log and usage go to [`MemStorage`] in every variant, so the comparison is of the
//! runtime, not of SQLite; `a_sqlite` is `a` against the product's SQLite file, for scale.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pbx_host::capabilities::Services;
use pbx_host::runtime::bindings::{event_handler, types};
use pbx_host::runtime::{
    Call, EngineOptions, Invocation, InvocationScope, LoadedComponent, Runtime,
};
use pbx_host::store::{LogEntry, SqliteStorage, Storage};
use pbx_plugin_sdk::bindings::pbx::plugin::{contacts, http, log, secrets, state};
use wasmtime::Store;
use wasmtime::component::Instance;

use crate::{MemStorage, context, plugin_wasm, scope, sdk_event, services, wit_event};

pub const TENANT: &str = "t-bench";
pub const PLUGIN: &str = "bench";

/// The variants, in report order.
pub const VARIANTS: &[&str] = &[
    "a_invoke", "a_bare", "b_naive", "c_warm", "d_native", "a_sqlite",
];

/// Everything the four variants need, built once.
pub struct Overhead {
    pub pooled: Runtime,
    pub on_demand: Runtime,
    pooled_component: LoadedComponent,
    on_demand_component: LoadedComponent,
    services: Arc<Services>,
    sqlite_services: Arc<Services>,
    mem: Arc<MemStorage>,
    event: types::CallEvent,
    ctx: types::Context,
    warm: Option<(Store<Invocation>, Instance)>,
    native: NativeHost,
    native_event: pbx_plugin_sdk::CallEvent,
    _dir: tempfile::TempDir,
}

impl Overhead {
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let wasm = plugin_wasm("bench-plugin");
        let pooled = Runtime::new(&EngineOptions::default(), None)?;
        let on_demand = Runtime::new(
            &EngineOptions {
                on_demand: true,
                ..EngineOptions::default()
            },
            None,
        )?;
        let pooled_component = pooled.load(&wasm)?;
        let on_demand_component = on_demand.load(&wasm)?;
        let mem = Arc::new(MemStorage::new()?);
        let services = services(mem.clone(), dir.path())?;
        let sqlite = SqliteStorage::open(&dir.path().join("host.sqlite3"))?;
        let sqlite_services = crate::services(Arc::new(sqlite), &dir.path().join("s"))?;
        Ok(Overhead {
            pooled,
            on_demand,
            pooled_component,
            on_demand_component,
            native: NativeHost {
                storage: mem.clone(),
                logs: Default::default(),
            },
            services,
            sqlite_services,
            mem,
            event: wit_event(TENANT, "call-1"),
            ctx: context(TENANT, PLUGIN),
            warm: None,
            native_event: sdk_event("call-1"),
            _dir: dir,
        })
    }

    fn scope(&self) -> InvocationScope {
        scope(&self.services, TENANT, PLUGIN)
    }

    /// Log lines the wasm variants wrote (a sanity check that the plugin really ran).
    pub fn log_lines(&self) -> u64 {
        self.mem.log_lines()
    }

    /// Run `iters` iterations of `variant`; the elapsed wall time.
    pub async fn run(&mut self, variant: &str, iters: u64) -> anyhow::Result<Duration> {
        match variant {
            "a_invoke" => self.invoke(iters, false).await,
            "a_sqlite" => self.invoke(iters, true).await,
            "a_bare" => self.bare(iters, false).await,
            "b_naive" => self.bare(iters, true).await,
            "c_warm" => self.warm(iters).await,
            "d_native" => Ok(self.native(iters)),
            other => anyhow::bail!("unknown variant {other}"),
        }
    }

    async fn invoke(&mut self, iters: u64, sqlite: bool) -> anyhow::Result<Duration> {
        let services = if sqlite {
            &self.sqlite_services
        } else {
            &self.services
        };
        let started = Instant::now();
        for _ in 0..iters {
            let report = self
                .pooled
                .invoke(
                    &self.pooled_component,
                    scope(services, TENANT, PLUGIN),
                    self.ctx.clone(),
                    Call::Event(self.event.clone()),
                )
                .await;
            if let Err(e) = report.outcome {
                anyhow::bail!("invocation failed: {e}");
            }
        }
        Ok(started.elapsed())
    }

    /// A fresh store and instance per call, without `invoke`'s bookkeeping; `naive`: the
    /// on-demand engine and `Linker::instantiate_async` instead of the `InstancePre`.
    async fn bare(&mut self, iters: u64, naive: bool) -> anyhow::Result<Duration> {
        let (rt, component) = if naive {
            (&self.on_demand, &self.on_demand_component)
        } else {
            (&self.pooled, &self.pooled_component)
        };
        let indices = component
            .exports
            .event
            .clone()
            .ok_or_else(|| anyhow::anyhow!("bench-plugin exports no event-handler"))?;
        let started = Instant::now();
        for _ in 0..iters {
            let mut store = rt.new_store(self.scope());
            let instance = if naive {
                rt.linker()
                    .instantiate_async(&mut store, component.pre.component())
                    .await
            } else {
                component.pre.instantiate_async(&mut store).await
            }
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
            call(&mut store, &instance, &indices, &self.ctx, &self.event).await?;
            flush(&mut store, &self.services)?;
        }
        Ok(started.elapsed())
    }

    async fn warm(&mut self, iters: u64) -> anyhow::Result<Duration> {
        let indices = self
            .pooled_component
            .exports
            .event
            .clone()
            .ok_or_else(|| anyhow::anyhow!("bench-plugin exports no event-handler"))?;
        if self.warm.is_none() {
            let mut store = self.pooled.new_store(self.scope());
            let instance = self
                .pooled_component
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| anyhow::anyhow!("{e:#}"))?;
            self.warm = Some((store, instance));
        }
        let Some((store, instance)) = self.warm.as_mut() else {
            anyhow::bail!("no warm instance");
        };
        let started = Instant::now();
        for _ in 0..iters {
            call(store, instance, &indices, &self.ctx, &self.event).await?;
            flush(store, &self.services)?;
        }
        Ok(started.elapsed())
    }

    fn native(&mut self, iters: u64) -> Duration {
        let started = Instant::now();
        for _ in 0..iters {
            let r = bench_plugin::handle(&self.native, std::hint::black_box(&self.native_event));
            std::hint::black_box(r).ok();
            let logs = std::mem::take(&mut *self.native.logs.borrow_mut());
            let _ = self.native.storage.log_append(&logs);
        }
        started.elapsed()
    }
}

async fn call(
    store: &mut Store<Invocation>,
    instance: &Instance,
    indices: &event_handler::GuestIndices,
    ctx: &types::Context,
    event: &types::CallEvent,
) -> anyhow::Result<()> {
    let guest = indices
        .load(&mut *store, instance)
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    match guest
        .call_handle_event(&mut *store, ctx, event)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}"))?
    {
        Ok(()) => Ok(()),
        Err(e) => anyhow::bail!("plugin error: {}", e.message),
    }
}

/// What the host does with the buffered log lines after a call: one append.
fn flush(store: &mut Store<Invocation>, services: &Services) -> anyhow::Result<()> {
    let logs = std::mem::take(&mut store.data_mut().logs);
    services.storage.log_append(&logs)?;
    Ok(())
}

/// The native baseline's host: the same `Storage` methods the wasm host calls, same keys.
struct NativeHost {
    storage: Arc<MemStorage>,
    logs: std::cell::RefCell<Vec<LogEntry>>,
}

impl pbx_plugin_sdk::Host for NativeHost {
    fn http_send(&self, _req: &http::Request) -> Result<http::Response, http::HttpError> {
        unimplemented!("the benchmark plugin sends no HTTP")
    }
    fn secret(&self, _name: &str) -> Result<String, secrets::SecretError> {
        unimplemented!("the benchmark plugin reads no secrets")
    }
    fn state_get(&self, key: &str) -> Result<Option<String>, state::StateError> {
        self.storage
            .state_get(TENANT, PLUGIN, key, 0)
            .map_err(|e| state::StateError::Unavailable(e.to_string()))
    }
    fn state_set(
        &self,
        key: &str,
        value: &str,
        _ttl: Option<u32>,
    ) -> Result<(), state::StateError> {
        match self
            .storage
            .state_set(TENANT, PLUGIN, key, value, None, u64::MAX)
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(n)) => Err(state::StateError::TooLarge(n)),
            Err(e) => Err(state::StateError::Unavailable(e.to_string())),
        }
    }
    fn state_delete(&self, _key: &str) -> Result<(), state::StateError> {
        unimplemented!("not used")
    }
    fn contacts_upsert(
        &self,
        _entries: &[contacts::Contact],
    ) -> Result<u32, contacts::ContactsError> {
        unimplemented!("not used")
    }
    fn contacts_delete(&self, _id: &str) -> Result<(), contacts::ContactsError> {
        unimplemented!("not used")
    }
    fn contacts_get(&self, _id: &str) -> Result<contacts::Contact, contacts::ContactsError> {
        unimplemented!("not used")
    }
    fn contacts_lookup(&self, _n: &str) -> Result<Vec<contacts::Contact>, contacts::ContactsError> {
        unimplemented!("not used")
    }
    fn log(&self, level: log::Level, message: &str) {
        self.logs.borrow_mut().push(LogEntry {
            id: 0,
            tenant: TENANT.into(),
            plugin: PLUGIN.into(),
            invocation: "bench-1".into(),
            at: 0,
            level: format!("{level:?}"),
            message: message.into(),
        });
    }
    fn now_ms(&self) -> i64 {
        0
    }
}
