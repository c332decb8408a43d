//! Running plugin components: one engine, one `InstancePre` per plugin, a fresh `Store`
//! per invocation with that invocation's tenant, grants and limits.

pub mod bindings;
mod compile_cache;
mod cpu;
mod engine;
pub mod fair;
mod invocation;
pub(crate) use invocation::thousands;
mod limits;
mod plugin;

pub use compile_cache::{CompileCache, LoadSource};
pub use engine::{AllocatorKind, DEFAULT_INSTANCE_MEMORY_BUDGET_MIB, EngineOptions};
pub use invocation::{Invocation, InvocationScope, Meter};
pub use limits::Limits;
pub use plugin::{
    Call, CallOutput, Exports, InstanceSlot, InvocationError, InvocationReport, LoadError,
    LoadedComponent, Runtime, SlotRefusal,
};
