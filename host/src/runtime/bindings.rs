//! Host-side bindings generated from `wit/plugin.wit` (world `host`: every export).
//!
//! The host calls only what a component actually exports: each exported interface is
//! resolved on its own with its `GuestIndices`, so a component that exports only the
//! event handler links and runs.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "host",
    // Only HTTP awaits anything; the other capabilities answer from memory or the local
    // database, and a synchronous host call skips the fiber switch an async one costs.
    imports: { "pbx:plugin/http.send": async | trappable, default: trappable },
    exports: { default: async },
});

pub use exports::pbx::plugin::{
    event_batch_handler, event_handler, ivr_handler, scheduled, settings_check,
};
pub use pbx::plugin::{contacts, http, log, secrets, state, types};

/// The version of the WIT package this host serves (and every semver-compatible one).
pub const WIT_PACKAGE: &str = "pbx:plugin";
pub const WIT_VERSION: &str = "0.1.0";
