//! The process-wide wasmtime `Engine`: component model, async, epoch interruption, and the
//! pooling allocator (with a fallback to on-demand allocation where the pool's virtual
//! address space cannot be reserved, e.g. under `ulimit -v` or in some containers).

use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::limits::MAX_MEMORY_BYTES;

/// How often the epoch advances. The CPU limit is checked at this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Which instance allocator the engine ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllocatorKind {
    Pooling,
    OnDemand,
}

/// Engine construction options.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Component instances alive at once (pool size, and the host's concurrency limit).
    pub max_instances: u32,
    /// Skip the pool (a naive embedding; benchmarks compare against it).
    pub on_demand: bool,
    /// Linear-memory slots per component instance in the pool.
    pub memories_per_instance: u32,
    /// The sum of the memory limits of the instances alive at once, in MiB: an invocation
    /// reserves its plugin's `memory_mib` before it is instantiated (admission control).
    pub instance_memory_budget_mib: u64,
}

/// [`EngineOptions::instance_memory_budget_mib`] unless the operator sets it: room for the
/// 32 delivery workers at the default 64 MiB limit and as many again for IVR look-ups and
/// schedules, far below what the 128 instances could otherwise reserve (8 GiB at 64 MiB).
pub const DEFAULT_INSTANCE_MEMORY_BUDGET_MIB: u64 = 4096;

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_instances: 128,
            on_demand: false,
            memories_per_instance: 2,
            instance_memory_budget_mib: DEFAULT_INSTANCE_MEMORY_BUDGET_MIB,
        }
    }
}

/// Bytes of each linear-memory slot kept resident between instances.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // Deep recursion in a plugin ends in a clean "call stack exhausted" trap well before the
    // host's own fiber stack (2 MiB by default) is in danger.
    config.max_wasm_stack(512 << 10);
    config.memory_init_cow(true);
    config
}

/// Build the engine. Returns which allocator is in use; a pool that cannot be reserved
/// falls back to on-demand allocation with a warning instead of failing start-up.
pub fn build_engine(opts: &EngineOptions) -> anyhow::Result<(Engine, AllocatorKind)> {
    if !opts.on_demand {
        let mut config = base_config();
        let n = opts.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(n);
        // A Rust wasip2 component instantiates several core modules (main, adapter, shims).
        pool.total_core_instances(n.saturating_mul(8));
        pool.total_memories(n.saturating_mul(opts.memories_per_instance.max(1)));
        pool.total_tables(n.saturating_mul(8));
        pool.total_stacks(n);
        pool.max_memory_size(MAX_MEMORY_BYTES as usize);
        // Keep what a typical plugin touches resident in its slot: re-zeroing it is cheaper
        // than madvise + page faults (and TLB shootdowns to the other cores) on every
        // instance. With PAGEMAP_SCAN (Linux 6.7+) only the pages actually dirtied are reset.
        // Measured (bench/examples/pool.rs, process CPU per IVR look-up, probe plugin):
        // 64 KiB 225 µs; 1 MiB + pagemap 132 µs; 2 MiB without pagemap 186 µs.
        pool.linear_memory_keep_resident(KEEP_RESIDENT_BYTES);
        pool.table_keep_resident(64 << 10);
        pool.pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        match Engine::new(&config) {
            Ok(engine) => return Ok((engine, AllocatorKind::Pooling)),
            Err(e) => tracing::warn!(
                "pooling allocator unavailable ({e}); falling back to on-demand allocation"
            ),
        }
    }
    let engine = Engine::new(&base_config()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((engine, AllocatorKind::OnDemand))
}

/// Advance the engine's epoch until the engine is dropped (the thread holds only a weak
/// reference, so it does not keep the engine alive).
pub fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        // Without the ticker no CPU limit could fire: refuse to run plugins at all.
        panic!("cannot start the epoch ticker thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_is_used_when_the_pool_fits() {
        let (_, kind) = build_engine(&EngineOptions {
            max_instances: 4,
            ..EngineOptions::default()
        })
        .unwrap();
        assert_eq!(kind, AllocatorKind::Pooling);
    }

    #[test]
    fn an_unreservable_pool_falls_back_to_on_demand() {
        // 2^22 instances × 64 memories × (4 GiB + guard) of address space is far beyond the
        // 128 TiB a 64-bit process can map: the pool cannot be reserved.
        let opts = EngineOptions {
            max_instances: 1 << 22,
            on_demand: false,
            memories_per_instance: 64,
            ..EngineOptions::default()
        };
        let (engine, kind) = build_engine(&opts).unwrap();
        assert_eq!(kind, AllocatorKind::OnDemand);
        // and the engine compiles components
        let empty_component = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        assert!(wasmtime::component::Component::new(&engine, empty_component).is_ok());
    }
}
