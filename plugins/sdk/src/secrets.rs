//! The tenant's secrets for this plugin.
//!
//! Secret values must never reach a log line or an error message; the helpers here name the
//! secret, never its value.

pub use crate::bindings::pbx::plugin::secrets::SecretError;
use crate::{Host, PluginError, WasmHost};

/// A missing or undeclared secret is a settings problem: the admin must set it, or the
/// plugin's manifest must declare it.
impl From<SecretError> for PluginError {
    fn from(e: SecretError) -> Self {
        match e {
            SecretError::NotSet(name) => {
                PluginError::config(format!("the secret {name} is not set for this tenant"))
            }
            SecretError::Denied(m) => PluginError::config(format!("secret denied: {m}")),
        }
    }
}

/// Reads a secret from the real host.
pub fn get(name: &str) -> Result<String, SecretError> {
    WasmHost.secret(name)
}

/// Reads a secret, or `None` when the tenant has not set it (for optional secrets).
pub fn get_optional_in(host: &impl Host, name: &str) -> Result<Option<String>, PluginError> {
    match host.secret(name) {
        Ok(v) => Ok(Some(v)),
        Err(SecretError::NotSet(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reads a required secret as a [`PluginError`] of kind `config` when missing.
pub fn require_in(host: &impl Host, name: &str) -> Result<String, PluginError> {
    Ok(host.secret(name)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    #[test]
    fn missing_secret_is_config_error_naming_it() {
        let host = FakeHost::new();
        let e = require_in(&host, "api.key").expect_err("missing");
        assert_eq!(e.kind, crate::ErrorKind::Config);
        assert!(e.message.contains("api.key"));
        assert_eq!(get_optional_in(&host, "api.key").expect("ok"), None);
        host.set_secret("api.key", "s3cr3t");
        assert_eq!(require_in(&host, "api.key").expect("set"), "s3cr3t");
    }
}
