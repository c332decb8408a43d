//! The tenant's settings (`ctx.config`, a JSON object) parsed into the plugin's own type.
//!
//! Errors name the setting at fault (`agent_users.201`), because the tenant admin reads them
//! in "verify settings" and in the integration log and must know what to fix.

use serde::de::DeserializeOwned;

use crate::{Context, PluginError};

/// A setting that is missing or has the wrong type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The path of the setting (`login_url`, `agent_users.201`); `None` when the whole
    /// document is wrong (not JSON, not an object).
    pub field: Option<String>,
    /// What is wrong, for the tenant admin.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "setting `{field}`: {}", self.message),
            None => write!(f, "settings: {}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for PluginError {
    fn from(e: ConfigError) -> Self {
        PluginError::config(e.to_string())
    }
}

/// Parses `ctx.config`. An empty string counts as `{}` so plugins whose settings are all
/// optional work without any configuration.
pub fn parse<T: DeserializeOwned>(ctx: &Context) -> Result<T, ConfigError> {
    parse_str(&ctx.config)
}

/// Parses a JSON settings document.
pub fn parse_str<T: DeserializeOwned>(json: &str) -> Result<T, ConfigError> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        // serde reports a missing field at its parent's path; name the field itself.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string);
        let field = match (path.as_str(), missing) {
            (".", Some(m)) => Some(m),
            (".", None) => None,
            (p, Some(m)) => Some(format!("{p}.{m}")),
            (p, None) => Some(p.to_string()),
        };
        // Drop serde's " at line 1 column 42": the admin did not type the JSON by hand.
        let message = match message.find(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        ConfigError { field, message }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Cfg {
        username: String,
        #[serde(default)]
        agent_users: BTreeMap<String, String>,
        #[serde(default)]
        retries: u32,
    }

    #[test]
    fn names_missing_field() {
        let e = parse_str::<Cfg>("{}").expect_err("missing");
        assert_eq!(e.field.as_deref(), Some("username"));
        assert!(e.to_string().contains("`username`"), "{e}");
    }

    #[test]
    fn names_nested_wrong_type() {
        let e = parse_str::<Cfg>(r#"{"username":"u","agent_users":{"201":5}}"#).expect_err("type");
        assert_eq!(e.field.as_deref(), Some("agent_users.201"));
        assert!(!e.message.contains("line"), "{}", e.message);
        let e = parse_str::<Cfg>(r#"{"username":"u","retries":"x"}"#).expect_err("type");
        assert_eq!(e.field.as_deref(), Some("retries"));
    }

    #[test]
    fn empty_means_defaults_and_garbage_has_no_field() {
        #[derive(Debug, Deserialize, Default)]
        struct Opt {
            #[serde(default)]
            #[allow(dead_code)]
            x: u32,
        }
        assert!(parse_str::<Opt>("").is_ok());
        let e = parse_str::<Opt>("not json").expect_err("garbage");
        assert_eq!(e.field, None);
        assert_eq!(PluginError::from(e).kind, crate::ErrorKind::Config);
    }
}
