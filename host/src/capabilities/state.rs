//! The `state` capability: durable key-value state per (tenant, plugin).
//!
//! The scope comes from the invocation, never from the key: a key names an entry inside the
//! caller's own scope and nothing else. Keys that look like paths out of it ("..", a leading
//! "/", control characters) are refused outright, so that no backend that maps keys onto
//! paths or prefixes can ever be tricked.

use std::collections::BTreeMap;

use crate::clock::now_ms;
use crate::runtime::Invocation;
use crate::runtime::bindings::state::{Host, StateError};
use crate::store::StateWrite;

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

/// The state writes of one invocation, committed together: before the plugin's next HTTP
/// request and when the invocation ends (success or not). A marker written before a CRM
/// create is therefore durable before the create can happen, as with a commit per write; a
/// crash before the commit loses only writes whose effects nobody outside the host has seen.
/// One commit instead of one per write: the history logger writes two keys per call, and a
/// batch of calls writes them all before its one request.
#[derive(Debug, Default)]
pub struct PendingState {
    /// Last write per key: (value or `None` for a delete, expiry).
    writes: BTreeMap<String, (Option<String>, Option<i64>)>,
    /// Bytes the buffered writes add to what is stored (negative when they free space).
    delta: i64,
}

impl PendingState {
    /// What an entry counts toward the cap: key, value and the fixed overhead of a row.
    fn size_of(key: &str, value: Option<&str>) -> i64 {
        value.map_or(0, |v| {
            (key.len() + v.len()) as i64 + crate::store::STATE_ROW_OVERHEAD_BYTES as i64
        })
    }
}

impl Invocation {
    /// Commit the buffered state writes. Called before an HTTP request goes out and when the
    /// invocation ends.
    pub fn flush_state(&mut self) -> Result<(), crate::store::StorageError> {
        if self.pending_state.writes.is_empty() {
            return Ok(());
        }
        let writes: Vec<StateWrite> = std::mem::take(&mut self.pending_state.writes)
            .into_iter()
            .map(|(key, (value, expires_at_ms))| StateWrite {
                key,
                value,
                expires_at_ms,
            })
            .collect();
        self.pending_state.delta = 0;
        let s = &self.scope;
        s.services
            .storage
            .state_apply(&s.tenant_id, &s.plugin_id, &writes)
    }

    /// Buffer a write if the backend keeps totals and the scope stays under its cap with it.
    /// `Ok(false)`: write through instead (no totals, or near the cap, where the exact check
    /// of a direct write decides, after expired entries are purged).
    fn buffer_state_write(
        &mut self,
        key: &str,
        value: Option<&str>,
        expires: Option<i64>,
    ) -> Result<bool, StateError> {
        let s = &self.scope;
        let usage = s
            .services
            .storage
            .state_usage(&s.tenant_id, &s.plugin_id, key)
            .map_err(|e| StateError::Unavailable(e.to_string()))?;
        let Some((stored_total, stored_this)) = usage else {
            return Ok(false);
        };
        let pending = &self.pending_state;
        let old = match pending.writes.get(key) {
            Some((v, _)) => PendingState::size_of(key, v.as_deref()),
            None => stored_this as i64,
        };
        let new = PendingState::size_of(key, value);
        let projected = stored_total as i64 + pending.delta - old + new;
        if value.is_some() && projected > s.limits.state_bytes as i64 {
            return Ok(false);
        }
        let pending = &mut self.pending_state;
        pending.delta += new - old;
        pending
            .writes
            .insert(key.to_string(), (value.map(str::to_string), expires));
        Ok(true)
    }

    /// Buffer the write, or make way for writing it through: `Some` is the plugin's answer
    /// (buffered, or an error); `None`: what was buffered is committed, write this one now
    /// (after the buffered ones, so that the order of writes holds).
    fn buffer_or_flush(
        &mut self,
        key: &str,
        value: Option<&str>,
        expires: Option<i64>,
    ) -> Option<Result<(), StateError>> {
        match self.buffer_state_write(key, value, expires) {
            Ok(true) => Some(Ok(())),
            Ok(false) => self
                .flush_state()
                .err()
                .map(|e| Err(StateError::Unavailable(e.to_string()))),
            Err(e) => Some(Err(e)),
        }
    }
}

impl Host for Invocation {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, StateError>> {
        if let Err(e) = self.state_allowed(&key) {
            return Ok(Err(e));
        }
        let now = now_ms();
        if let Some((value, expires)) = self.pending_state.writes.get(&key) {
            let live = expires.is_none_or(|at| at > now);
            return Ok(Ok(value.clone().filter(|_| live)));
        }
        let s = &self.scope;
        Ok(s.services
            .storage
            .state_get(&s.tenant_id, &s.plugin_id, &key, now)
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
        let expires = ttl_seconds.map(|t| now_ms() + i64::from(t) * 1000);
        if let Some(answer) = self.buffer_or_flush(&key, Some(&value), expires) {
            return Ok(answer);
        }
        let s = &self.scope;
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
        if let Some(answer) = self.buffer_or_flush(&key, None, None) {
            return Ok(answer);
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
