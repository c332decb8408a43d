//! Durable per-tenant, per-plugin key-value state, with JSON helpers.
//!
//! The free functions use the real host; the `_in` variants take any [`Host`] so the same
//! code runs in native tests.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::bindings::pbx::plugin::state::StateError;
use crate::{Host, PluginError, WasmHost};

/// Maps a state failure to the plugin error the host should see: storage trouble is worth a
/// retry; a refused key or an over-limit value will not heal by itself.
impl From<StateError> for PluginError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Unavailable(m) => PluginError::transient(format!("state unavailable: {m}")),
            StateError::TooLarge(n) => {
                PluginError::permanent(format!("state value over the limit of {n} bytes"))
            }
            StateError::Denied(m) => PluginError::permanent(format!("state key denied: {m}")),
        }
    }
}

/// Reads a raw value.
pub fn get(key: &str) -> Result<Option<String>, StateError> {
    WasmHost.state_get(key)
}

/// Writes a raw value.
pub fn set(key: &str, value: &str, ttl_seconds: Option<u32>) -> Result<(), StateError> {
    WasmHost.state_set(key, value, ttl_seconds)
}

/// Removes a value.
pub fn delete(key: &str) -> Result<(), StateError> {
    WasmHost.state_delete(key)
}

/// Reads a JSON value. A value that no longer parses (written by an older plugin version) is
/// treated as absent rather than failing the invocation forever.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, PluginError> {
    get_json_in(&WasmHost, key)
}

/// Writes a JSON value.
pub fn set_json<T: Serialize + ?Sized>(
    key: &str,
    value: &T,
    ttl_seconds: Option<u32>,
) -> Result<(), PluginError> {
    set_json_in(&WasmHost, key, value, ttl_seconds)
}

/// [`get_json`] on any host.
pub fn get_json_in<T: DeserializeOwned>(
    host: &impl Host,
    key: &str,
) -> Result<Option<T>, PluginError> {
    match host.state_get(key)? {
        Some(raw) => Ok(serde_json::from_str(&raw).ok()),
        None => Ok(None),
    }
}

/// [`set_json`] on any host.
pub fn set_json_in<T: Serialize + ?Sized>(
    host: &impl Host,
    key: &str,
    value: &T,
    ttl_seconds: Option<u32>,
) -> Result<(), PluginError> {
    let raw = serde_json::to_string(value)
        .map_err(|e| PluginError::permanent(format!("state value for {key}: {e}")))?;
    Ok(host.state_set(key, &raw, ttl_seconds)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    #[test]
    fn json_round_trip_and_garbage_is_absent() {
        let host = FakeHost::new();
        set_json_in(&host, "k", &vec![1, 2, 3], Some(60)).expect("set");
        assert_eq!(
            get_json_in::<Vec<i32>>(&host, "k").expect("get"),
            Some(vec![1, 2, 3])
        );
        host.state_set("k", "not json", None).expect("set");
        assert_eq!(get_json_in::<Vec<i32>>(&host, "k").expect("get"), None);
        assert_eq!(
            get_json_in::<Vec<i32>>(&host, "missing").expect("get"),
            None
        );
    }

    #[test]
    fn errors_map_to_kinds() {
        use crate::ErrorKind;
        assert_eq!(
            PluginError::from(StateError::Unavailable("db".into())).kind,
            ErrorKind::Transient
        );
        assert_eq!(
            PluginError::from(StateError::TooLarge(9)).kind,
            ErrorKind::Permanent
        );
    }
}
