//! The admin surface (SPEC H-10, H-11): enable/disable a plugin for a tenant, set its
//! settings and secrets (write-only), run its settings check, read the integration log,
//! usage counters and the dead letters.

use serde::Serialize;

use super::Host;
use crate::clock::now_ms;
use crate::runtime::{Call, CallOutput};
use crate::store::{Delivery, DeliveryStatus, LogEntry, UsageRow};

/// Admin failures. Messages never contain secret values.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("unknown tenant '{0}'")]
    UnknownTenant(String),
    #[error("unknown plugin '{0}'")]
    UnknownPlugin(String),
    #[error("the plugin is not loaded: {0}")]
    NotLoaded(String),
    #[error("{0}")]
    Invalid(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("the settings check failed to run: {0}")]
    Check(String),
}

/// A tenant's view of one plugin.
#[derive(Debug, Clone, Serialize)]
pub struct TenantPluginView {
    pub plugin: String,
    /// Offered to the tenant by the operator: the tenant admin may enable and set it up.
    pub offered: bool,
    pub enabled: bool,
    pub loaded: bool,
    pub config: serde_json::Value,
    pub secrets: Vec<SecretView>,
}

/// A secret as the admin surface shows it: name and whether it is set, never the value.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SecretView {
    pub name: String,
    pub set: bool,
    /// "********" when set.
    pub value: Option<&'static str>,
}

/// One result of a settings check.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    pub field: Option<String>,
    pub message: String,
}

fn storage_err(e: impl std::fmt::Display) -> AdminError {
    AdminError::Storage(e.to_string())
}

impl Host {
    /// Who holds `bearer`; `None` if the token is unknown. Without an operator token
    /// configured, everyone is the operator.
    pub fn authenticate(&self, bearer: Option<&str>) -> Option<crate::auth::Principal> {
        use crate::auth::{Principal, digest, same_digest};
        let Some(operator) = &self.inner.operator_digest else {
            return Some(Principal::Operator);
        };
        let d = digest(bearer?);
        if same_digest(&d, operator) {
            return Some(Principal::Operator);
        }
        self.storage()
            .token_tenant(&d)
            .ok()
            .flatten()
            .map(Principal::Tenant)
    }

    /// Issue a token for the tenant admin of `tenant`. The token is returned once and stored
    /// only as a digest.
    pub fn issue_tenant_token(&self, tenant: &str, label: &str) -> Result<String, AdminError> {
        if !self.registry().tenants.contains_key(tenant) {
            return Err(AdminError::UnknownTenant(tenant.into()));
        }
        let token = crate::auth::new_token();
        self.storage()
            .token_add(&crate::auth::digest(&token), tenant, label, now_ms())
            .map_err(storage_err)?;
        Ok(token)
    }

    /// Revoke every token of a tenant; returns how many there were.
    pub fn revoke_tenant_tokens(&self, tenant: &str) -> Result<u64, AdminError> {
        self.storage().token_revoke_all(tenant).map_err(storage_err)
    }

    /// Has the operator offered `plugin` (a declared one) to `tenant`: listed in
    /// `[tenants.X] offered` or configured for it in `[tenants.X.plugins.*]`? A tenant admin
    /// may touch only offered plugins (the HTTP API enforces it for tenant tokens; the
    /// operator may set up any plugin for any tenant).
    pub fn is_offered(&self, tenant: &str, plugin: &str) -> bool {
        let r = self.registry();
        r.plugins.contains_key(plugin)
            && r.tenants.get(tenant).is_some_and(|t| t.decl.offers(plugin))
    }

    fn known(&self, tenant: &str, plugin: &str) -> Result<(), AdminError> {
        let r = self.registry();
        if !r.tenants.contains_key(tenant) {
            return Err(AdminError::UnknownTenant(tenant.into()));
        }
        if !r.plugins.contains_key(plugin) {
            return Err(AdminError::UnknownPlugin(plugin.into()));
        }
        Ok(())
    }

    pub fn set_enabled(&self, tenant: &str, plugin: &str, enabled: bool) -> Result<(), AdminError> {
        self.known(tenant, plugin)?;
        let written = self
            .storage()
            .override_set_enabled(tenant, plugin, enabled)
            .map_err(storage_err);
        self.override_changed(tenant, plugin);
        written
    }

    /// Replace a tenant's settings for a plugin (a JSON object; never secrets).
    pub fn set_config(
        &self,
        tenant: &str,
        plugin: &str,
        config: serde_json::Value,
    ) -> Result<(), AdminError> {
        self.known(tenant, plugin)?;
        let Some(obj) = config.as_object() else {
            return Err(AdminError::Invalid("settings must be a JSON object".into()));
        };
        if let Some(key) = obj.keys().find(|k| {
            let k = k.to_ascii_lowercase();
            ["password", "secret", "token", "private_key"]
                .iter()
                .any(|s| k.contains(s))
        }) {
            return Err(AdminError::Invalid(format!(
                "'{key}' looks like a credential: set it as a secret, not as a setting"
            )));
        }
        let written = self
            .storage()
            .override_set_config(tenant, plugin, &config)
            .map_err(storage_err);
        self.override_changed(tenant, plugin);
        written
    }

    /// Write a secret (write-only: it can never be read back through the admin surface).
    pub fn set_secret(
        &self,
        tenant: &str,
        plugin: &str,
        name: &str,
        value: &str,
    ) -> Result<(), AdminError> {
        self.known(tenant, plugin)?;
        let declared = self
            .registry()
            .plugins
            .get(plugin)
            .is_some_and(|p| p.grants.secrets.contains(name));
        if !declared {
            return Err(AdminError::Invalid(format!(
                "plugin '{plugin}' declares no secret '{name}'"
            )));
        }
        self.inner
            .services
            .secrets
            .set(tenant, plugin, name, value)
            .map_err(storage_err)
    }

    pub fn delete_secret(
        &self,
        tenant: &str,
        plugin: &str,
        name: &str,
    ) -> Result<bool, AdminError> {
        self.known(tenant, plugin)?;
        self.inner
            .services
            .secrets
            .delete(tenant, plugin, name)
            .map_err(storage_err)
    }

    /// The declared secrets of a plugin for a tenant, masked.
    pub fn secrets(&self, tenant: &str, plugin: &str) -> Result<Vec<SecretView>, AdminError> {
        self.known(tenant, plugin)?;
        let set = self
            .inner
            .services
            .secrets
            .names(tenant, plugin)
            .map_err(storage_err)?;
        let registry = self.registry();
        let declared = registry
            .plugins
            .get(plugin)
            .map(|p| p.grants.secrets.clone())
            .unwrap_or_default();
        Ok(declared
            .into_iter()
            .map(|name| {
                let is_set = set.contains(&name);
                SecretView {
                    name,
                    set: is_set,
                    value: is_set.then_some("********"),
                }
            })
            .collect())
    }

    /// Every declared plugin as the tenant sees it.
    pub fn tenant_plugins(&self, tenant: &str) -> Result<Vec<TenantPluginView>, AdminError> {
        let registry = self.registry();
        if !registry.tenants.contains_key(tenant) {
            return Err(AdminError::UnknownTenant(tenant.into()));
        }
        registry
            .plugins
            .values()
            .map(|p| {
                let (enabled, config) = self.effective(&registry, tenant, &p.id)?;
                Ok(TenantPluginView {
                    plugin: p.id.clone(),
                    offered: self.is_offered(tenant, &p.id),
                    enabled,
                    loaded: p.component.is_ok(),
                    config,
                    secrets: self.secrets(tenant, &p.id)?,
                })
            })
            .collect()
    }

    /// Run the plugin's settings check for the tenant ("verify settings").
    pub async fn verify(&self, tenant: &str, plugin: &str) -> Result<Vec<CheckResult>, AdminError> {
        self.known(tenant, plugin)?;
        let registry = self.registry();
        let (Some(t), Some(p)) = (registry.tenants.get(tenant), registry.plugins.get(plugin))
        else {
            return Err(AdminError::UnknownPlugin(plugin.into()));
        };
        let component = p.component.clone().map_err(AdminError::NotLoaded)?;
        let (_, config) = self.effective(&registry, tenant, plugin)?;
        let (scope, ctx) = self.scope(t, p, config);
        let report = self
            .inner
            .runtime
            .invoke(&component, scope, ctx, Call::Check)
            .await;
        match report.outcome {
            Ok(CallOutput::Check(items)) => Ok(items
                .into_iter()
                .map(|i| CheckResult {
                    name: i.name,
                    ok: i.ok,
                    field: i.field,
                    message: i.message,
                })
                .collect()),
            Ok(_) => Err(AdminError::Check("the plugin gave no check result".into())),
            Err(e) => Err(AdminError::Check(e.to_string())),
        }
    }

    /// The newest lines of the tenant's integration log.
    pub fn log(&self, tenant: &str, limit: u32) -> Result<Vec<LogEntry>, AdminError> {
        if !self.registry().tenants.contains_key(tenant) {
            return Err(AdminError::UnknownTenant(tenant.into()));
        }
        self.inner.services.journal.flush().map_err(storage_err)?;
        self.storage().log_read(tenant, limit).map_err(storage_err)
    }

    pub fn usage(&self, tenant: &str) -> Result<Vec<UsageRow>, AdminError> {
        if !self.registry().tenants.contains_key(tenant) {
            return Err(AdminError::UnknownTenant(tenant.into()));
        }
        self.inner.services.journal.flush().map_err(storage_err)?;
        self.storage().usage_read(tenant).map_err(storage_err)
    }

    pub fn deliveries(
        &self,
        tenant: &str,
        status: Option<DeliveryStatus>,
    ) -> Result<Vec<Delivery>, AdminError> {
        if !self.registry().tenants.contains_key(tenant) {
            return Err(AdminError::UnknownTenant(tenant.into()));
        }
        self.storage()
            .deliveries(tenant, status, 1000)
            .map_err(storage_err)
    }

    /// Put a dead-lettered delivery back in the queue.
    pub fn replay(&self, tenant: &str, delivery_id: i64) -> Result<bool, AdminError> {
        let ok = self
            .storage()
            .replay(tenant, delivery_id, now_ms())
            .map_err(storage_err)?;
        self.inner.wake.notify_one();
        Ok(ok)
    }
}
