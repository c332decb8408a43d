//! The WebAssembly plugin host of a cloud PBX.
//!
//! The PBX feeds it call events and IVR look-ups; the host runs each tenant's enabled
//! plugins as sandboxed WebAssembly components, giving each only the capabilities it
//! declares in `plugins.toml`. Embed it as a library ([`Host`]) or run it beside the PBX as
//! a daemon (the `pbx-host` binary, HTTP/JSON API in [`api`]).

pub mod api;
pub mod auth;
pub mod capabilities;
pub mod clock;
pub mod config;
pub mod events;
mod host;
pub mod runtime;
pub mod store;

pub use host::{
    AdminError, Host, HostOptions, IngestReceipt, PluginStatus, SecretView, StartError,
    TenantPluginView,
};
pub use host::{CheckResult, IngestError};
pub use host::{
    DATABASE_FILE, DEFAULT_MIN_FREE_DISK_BYTES, DataDirError, FailedPlugin, PluginsCheck,
    QueueCheck, Readiness, ReadinessChecks, StorageCheck,
};
