//! Lines into the tenant's integration log.
//!
//! Use the macros (`pbx_plugin_sdk::info!("created {id}")`) or the functions. Lines are capped
//! per invocation by the host; write what the tenant admin needs to follow a call, not a trace.
//! Never log secrets.

pub use crate::bindings::pbx::plugin::log::Level;
use crate::bindings::pbx::plugin::log::write as host_write;

/// Writes one line at `level`.
pub fn write(level: Level, message: &str) {
    host_write(level, message)
}

/// Writes a debug line.
pub fn debug(message: &str) {
    write(Level::Debug, message)
}

/// Writes an info line.
pub fn info(message: &str) {
    write(Level::Info, message)
}

/// Writes a warning.
pub fn warn(message: &str) {
    write(Level::Warn, message)
}

/// Writes an error line.
pub fn error(message: &str) {
    write(Level::Error, message)
}

/// `debug!("fmt", args…)`: a formatted debug line.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, &::std::format!($($arg)*)) };
}

/// `info!("fmt", args…)`: a formatted info line.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, &::std::format!($($arg)*)) };
}

/// `warn!("fmt", args…)`: a formatted warning.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warn, &::std::format!($($arg)*)) };
}

/// `error!("fmt", args…)`: a formatted error line.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, &::std::format!($($arg)*)) };
}
