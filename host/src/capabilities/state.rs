//! The `state` capability: durable key-value state per (tenant, plugin).
//!
//! The scope comes from the invocation, never from the key: a key names an entry inside the
//! caller's own scope and nothing else. Keys that look like paths out of it ("..", a leading
//! "/", control characters) are refused outright, so that no backend that maps keys onto
//! paths or prefixes can ever be tricked.

use crate::clock::now_ms;
use crate::runtime::Invocation;
use crate::runtime::bindings::state::{Host, StateError};

const MAX_KEY_BYTES: usize = 256;

/// Why a key is refused, if it is.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!("state keys are 1 to {MAX_KEY_BYTES} bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err("state keys may not contain control characters".into());
    }
    if key.starts_with('/') || key.split(['/', '\\']).any(|seg| seg == "..") {
        return Err(
            "state keys may not contain '..' segments or start with '/': a plugin's \
                    state is its own tenant's only"
                .into(),
        );
    }
    Ok(())
}

impl Invocation {
    fn state_allowed(&mut self, key: &str) -> Result<(), StateError> {
        if !self.scope.grants.state {
            let why = format!(
                "plugin '{}' is not granted state in plugins.toml",
                self.scope.plugin_id
            );
            self.record_denial("state", &why);
            return Err(StateError::Denied(why));
        }
        if let Err(why) = check_key(key) {
            self.record_denial("state", &why);
            return Err(StateError::Denied(why));
        }
        Ok(())
    }
}

impl Host for Invocation {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, StateError>> {
        if let Err(e) = self.state_allowed(&key) {
            return Ok(Err(e));
        }
        let s = &self.scope;
        Ok(s.services
            .storage
            .state_get(&s.tenant_id, &s.plugin_id, &key, now_ms())
            .map_err(|e| StateError::Unavailable(e.to_string())))
    }

    fn set(
        &mut self,
        key: String,
        value: String,
        ttl_seconds: Option<u32>,
    ) -> wasmtime::Result<Result<(), StateError>> {
        if let Err(e) = self.state_allowed(&key) {
            return Ok(Err(e));
        }
        let s = &self.scope;
        let expires = ttl_seconds.map(|t| now_ms() + i64::from(t) * 1000);
        match s.services.storage.state_set(
            &s.tenant_id,
            &s.plugin_id,
            &key,
            &value,
            expires,
            s.limits.state_bytes,
        ) {
            Ok(Ok(())) => Ok(Ok(())),
            Ok(Err(limit)) => {
                self.log_line(
                    "warn",
                    format!("state is full: the plugin's state is limited to {limit} bytes"),
                );
                Ok(Err(StateError::TooLarge(limit)))
            }
            Err(e) => Ok(Err(StateError::Unavailable(e.to_string()))),
        }
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), StateError>> {
        if let Err(e) = self.state_allowed(&key) {
            return Ok(Err(e));
        }
        let s = &self.scope;
        Ok(s.services
            .storage
            .state_delete(&s.tenant_id, &s.plugin_id, &key)
            .map_err(|e| StateError::Unavailable(e.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::check_key;

    #[test]
    fn keys_that_look_like_escapes_are_refused() {
        for bad in [
            "",
            "../globex/session",
            "a/../../b",
            "/etc/passwd",
            "a\u{0}b",
            "..\\x",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        for good in ["session", "task:call-1", "sync/watermark", "a..b"] {
            assert!(check_key(good).is_ok(), "{good:?}");
        }
    }
}
