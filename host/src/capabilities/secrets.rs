//! The `secrets` capability and the host's secret store.
//!
//! Secrets live in a directory the host owns, one file per (tenant, plugin, name), opened
//! only through a `cap_std` directory handle so that no name can reach outside it. They are
//! written by the tenant admin (write-only: the admin API shows names, never values) or by
//! the operator's secrets file, and never logged.

use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::config::{valid_id, valid_secret_name};
use crate::runtime::Invocation;
use crate::runtime::bindings::secrets::{Host, SecretError};

/// The host's secret directory.
pub struct SecretStore {
    root: Dir,
}

/// A secret-store failure. Never carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretStoreError {
    #[error("invalid tenant, plugin or secret name")]
    InvalidName,
    #[error("secret store: {0}")]
    Io(#[from] std::io::Error),
}

impl SecretStore {
    /// Open (creating) the directory.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(SecretStore {
            root: Dir::open_ambient_dir(path, ambient_authority())?,
        })
    }

    fn check(tenant: &str, plugin: &str, name: &str) -> Result<(), SecretStoreError> {
        if valid_id(tenant) && valid_id(plugin) && valid_secret_name(name) {
            Ok(())
        } else {
            Err(SecretStoreError::InvalidName)
        }
    }

    /// Read a secret; `None` if unset.
    pub fn get(
        &self,
        tenant: &str,
        plugin: &str,
        name: &str,
    ) -> Result<Option<String>, SecretStoreError> {
        Self::check(tenant, plugin, name)?;
        let path = format!("{tenant}/{plugin}/{name}");
        match self.root.open(&path) {
            Ok(mut f) => {
                let mut value = String::new();
                f.read_to_string(&mut value)?;
                Ok(Some(value))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Write a secret atomically.
    pub fn set(
        &self,
        tenant: &str,
        plugin: &str,
        name: &str,
        value: &str,
    ) -> Result<(), SecretStoreError> {
        Self::check(tenant, plugin, name)?;
        let dir = format!("{tenant}/{plugin}");
        self.root.create_dir_all(&dir)?;
        let tmp = format!("{dir}/.{name}.tmp");
        {
            let mut f = self.root.create(&tmp)?;
            f.write_all(value.as_bytes())?;
            f.sync_all()?;
        }
        self.root
            .rename(&tmp, &self.root, format!("{dir}/{name}"))?;
        Ok(())
    }

    /// Remove a secret. True if it was set.
    pub fn delete(&self, tenant: &str, plugin: &str, name: &str) -> Result<bool, SecretStoreError> {
        Self::check(tenant, plugin, name)?;
        match self.root.remove_file(format!("{tenant}/{plugin}/{name}")) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Names of the secrets set for a tenant's plugin.
    pub fn names(&self, tenant: &str, plugin: &str) -> Result<Vec<String>, SecretStoreError> {
        if !valid_id(tenant) || !valid_id(plugin) {
            return Err(SecretStoreError::InvalidName);
        }
        let dir = match self.root.open_dir(format!("{tenant}/{plugin}")) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut names = Vec::new();
        for entry in dir.entries()? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

impl Host for Invocation {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, SecretError>> {
        let plugin = self.scope.plugin_id.clone();
        if !valid_secret_name(&name) {
            let why = "secret names are letters, digits, '.', '-' and '_': a plugin reads only \
                       its own tenant's secrets"
                .to_string();
            self.record_denial(
                "secrets",
                &format!("malformed secret name ({} bytes)", name.len()),
            );
            return Ok(Err(SecretError::Denied(why)));
        }
        if !self.scope.grants.secrets.contains(&name) {
            let why =
                format!("secret '{name}' is not declared by plugin '{plugin}' in plugins.toml");
            self.record_denial("secrets", &why);
            return Ok(Err(SecretError::Denied(why)));
        }
        let tenant = self.scope.tenant_id.clone();
        match self.scope.services.secrets.get(&tenant, &plugin, &name) {
            Ok(Some(value)) => Ok(Ok(value)),
            Ok(None) => {
                self.log_line(
                    "warn",
                    format!("secret '{name}' is not set for this tenant"),
                );
                Ok(Err(SecretError::NotSet(name)))
            }
            Err(e) => {
                self.log_line("error", format!("secret '{name}' could not be read: {e}"));
                Ok(Err(SecretError::NotSet(name)))
            }
        }
    }
}
