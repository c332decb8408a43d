//! Experiment (issue 5 §2): what the pooling allocator's settings cost per IVR look-up,
//! outside the host. Each variant is an engine built like `pbx_host::runtime::engine`'s, the
//! host's linker (WASI + the host world), the probe component, and 16 tasks each running
//! look-ups back to back: a fresh store and instance, `ivr-handler.lookup` with one HTTP GET
//! to the stand-in (in this process, no latency injected), drop. Rounds interleave the
//! variants; the median round's process CPU per look-up is printed (the stand-in's share is
//! the same in every variant). Not a benchmark of record: it shows what to change in the host.
//!
//! `cargo run --release -p pbx-bench --example pool` (`POOL_VARIANT=i`: only variant `i`,
//! with the process's RSS at the end).

use std::sync::Arc;

use pbx_bench::{MemStorage, plugin_wasm, process_cpu, services};
use pbx_host::capabilities::PluginGrants;
use pbx_host::runtime::bindings::{Host_, ivr_handler, types};
use pbx_host::runtime::{Invocation, InvocationScope, Limits};
use serde_json::json;
use sf_standin::{OrgSpec, StandIn};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};

#[derive(Clone, Copy, Debug)]
struct Variant {
    name: &'static str,
    keep_resident: usize,
    batch: usize,
    pagemap: bool,
}

fn engine(v: Variant) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(512 << 10);
    config.memory_init_cow(true);
    let n = 128u32;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n);
    pool.total_core_instances(n * 8);
    pool.total_memories(n * 2);
    pool.total_tables(n * 8);
    pool.total_stacks(n);
    pool.max_memory_size(1 << 30);
    pool.linear_memory_keep_resident(v.keep_resident);
    pool.table_keep_resident(64 << 10);
    pool.decommit_batch_size(v.batch);
    if v.pagemap {
        pool.pagemap_scan(Enabled::Auto);
    }
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:#}"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let sf = StandIn::start().await?;
    let org = sf.add_org(OrgSpec {
        daily_api_limit: u64::MAX / 4,
        ..OrgSpec::default()
    });
    let session = org.issue_session();
    let base = sf.base_url();
    let url = format!("{base}/services/data/v62.0/query?q=SELECT+Id+FROM+Contact+LIMIT+1");
    let dir = tempfile::tempdir()?;
    let svc = services(Arc::new(MemStorage::new()?), dir.path())?;
    let config = json!({"allowed_url": base, "ops": [{"op": "http", "url": url, "headers": [["Authorization", format!("Bearer {session}")]]}]});
    let scope = InvocationScope {
        services: svc,
        tenant_id: "acme".into(),
        default_country: "JP".into(),
        plugin_id: "probe".into(),
        grants: Arc::new(PluginGrants {
            http: vec!["{config.allowed_url}".into()],
            secrets: Default::default(),
            state: false,
            contacts: Default::default(),
        }),
        limits: Arc::new(Limits::default()),
        config: Arc::new(config.clone()),
        invocation_id: "x".into(),
    };
    let ctx = types::Context {
        tenant_id: "acme".into(),
        plugin_id: "probe".into(),
        invocation_id: "x".into(),
        config: config.to_string(),
        attempt: 0,
    };
    let lookup = pbx_bench::probe_ivr_lookup()?;
    let request = lookup.to_wit(2000);
    let variants = [
        Variant {
            name: "host today: keep 64 KiB, batch 1",
            keep_resident: 64 << 10,
            batch: 1,
            pagemap: false,
        },
        Variant {
            name: "keep 64 KiB, batch 32",
            keep_resident: 64 << 10,
            batch: 32,
            pagemap: false,
        },
        Variant {
            name: "keep 2 MiB + pagemap, batch 1",
            keep_resident: 2 << 20,
            batch: 1,
            pagemap: true,
        },
        Variant {
            name: "keep 2 MiB + pagemap, batch 32",
            keep_resident: 2 << 20,
            batch: 32,
            pagemap: true,
        },
        Variant {
            name: "keep 2 MiB, no pagemap, batch 1",
            keep_resident: 2 << 20,
            batch: 1,
            pagemap: false,
        },
        Variant {
            name: "keep 1 MiB + pagemap, batch 1",
            keep_resident: 1 << 20,
            batch: 1,
            pagemap: true,
        },
    ];
    let only: Option<usize> = std::env::var("POOL_VARIANT")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut setups = Vec::new();
    for (k, v) in variants.into_iter().enumerate() {
        if only.is_some_and(|o| o != k) {
            continue;
        }
        let engine = engine(v)?;
        let mut linker: Linker<Invocation> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Host_::add_to_linker::<Invocation, HasSelf<Invocation>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let component =
            wasmtime::component::Component::from_file(&engine, plugin_wasm("probe-plugin"))
                .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let pre = Arc::new(
            linker
                .instantiate_pre(&component)
                .map_err(|e| anyhow::anyhow!("{e:#}"))?,
        );
        let idx =
            Arc::new(ivr_handler::GuestIndices::new(&*pre).map_err(|e| anyhow::anyhow!("{e:#}"))?);
        setups.push((v, engine, pre, idx));
    }
    let conc = 16usize;
    let per_task = 100usize;
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    for round in 0..7 {
        for (i, (_, engine, pre, idx)) in setups.iter().enumerate() {
            let c0 = process_cpu();
            let mut tasks = Vec::new();
            for _ in 0..conc {
                let (engine, pre, idx) = (engine.clone(), pre.clone(), idx.clone());
                let (scope, ctx, request) = (scope.clone(), ctx.clone(), request.clone());
                tasks.push(tokio::spawn(async move {
                    for _ in 0..per_task {
                        let mut store =
                            Store::new(&engine, Invocation::new(scope.clone(), Arc::default()));
                        store.limiter(|s| &mut s.limiter);
                        store.set_epoch_deadline(u64::MAX / 2);
                        let inst = pre
                            .instantiate_async(&mut store)
                            .await
                            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
                        let g = idx
                            .load(&mut store, &inst)
                            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
                        let d = g
                            .call_lookup(&mut store, &ctx, &request)
                            .await
                            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
                        let d = d.map_err(|e| anyhow::anyhow!("{}", e.message))?;
                        anyhow::ensure!(
                            d.variables
                                .first()
                                .is_some_and(|(_, v)| v.starts_with("ok:200")),
                            "{:?}",
                            d.variables
                        );
                        drop(store);
                    }
                    anyhow::Ok(())
                }));
            }
            for t in tasks {
                t.await??;
            }
            let n = (conc * per_task) as f64;
            let cpu = process_cpu().saturating_sub(c0);
            if round > 0 {
                results[i].push(cpu.as_secs_f64() * 1e6 / n);
            }
        }
    }
    for (i, (v, ..)) in setups.iter().enumerate() {
        let r = &mut results[i];
        r.sort_by(f64::total_cmp);
        println!(
            "{:40} process CPU per look-up (incl. stand-in): median {:.0} µs (min {:.0}, max {:.0})",
            v.name,
            r[r.len() / 2],
            r[0],
            r[r.len() - 1]
        );
    }
    println!("RSS now / peak: {:?} KiB", pbx_bench::rss_kib());
    Ok(())
}
