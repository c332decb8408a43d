//! The `secrets` capability and the host's secret store.
//!
//! Secrets live in a directory the host owns, one file per (tenant, plugin, name), opened
//! only through a `cap_std` directory handle so that no name can reach outside it. They are
//! written by the tenant admin (write-only: the admin API shows names, never values) or by
//! the operator's secrets file, and never logged.
//!
//! Each file is encrypted with ChaCha20-Poly1305 under the operator's 256-bit key, with a
//! random nonce per write and the (tenant, plugin, name) triple as associated data: a copy of
//! the directory without the key reveals nothing, and a file moved to another tenant's or
//! plugin's place fails authentication instead of being read as theirs.

use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce};
use rand::RngCore;

use crate::config::{valid_id, valid_secret_name};
use crate::runtime::Invocation;
use crate::runtime::bindings::secrets::{Host, SecretError};

/// The host's secret directory.
pub struct SecretStore {
    root: Dir,
    cipher: ChaCha20Poly1305,
}

/// The operator's key for secrets at rest.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

impl SecretKey {
    /// From 64 hex digits or standard base64 of 32 bytes (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, String> {
        use base64::Engine;
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(t).map_err(|_| "bad hex".to_string())?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(|_| "the secret key is neither 64 hex digits nor base64".to_string())?
        };
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "the secret key must be 32 bytes (256 bits)".to_string())?;
        Ok(SecretKey(key))
    }

    /// A new random key.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        SecretKey(k)
    }

    /// The key as 64 hex digits (for writing a key file).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

const FILE_MAGIC: &[u8; 4] = b"PBS1";

/// A secret-store failure. Never carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretStoreError {
    #[error("invalid tenant, plugin or secret name")]
    InvalidName,
    #[error("secret store: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "secret store: a stored secret cannot be decrypted (wrong key, or the file was moved or altered)"
    )]
    Undecryptable,
}

impl SecretStore {
    /// Open (creating) the directory; secrets are encrypted with `key`.
    pub fn open(path: &Path, key: &SecretKey) -> std::io::Result<Self> {
        std::fs::create_dir_all(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(SecretStore {
            root: Dir::open_ambient_dir(path, ambient_authority())?,
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key.0)),
        })
    }

    fn seal(&self, aad: &str, value: &str) -> Result<Vec<u8>, SecretStoreError> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SecretStoreError::Undecryptable)?;
        let mut out = Vec::with_capacity(4 + 12 + sealed.len());
        out.extend_from_slice(FILE_MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open_sealed(&self, aad: &str, bytes: &[u8]) -> Result<String, SecretStoreError> {
        if bytes.len() < 16 || &bytes[..4] != FILE_MAGIC {
            return Err(SecretStoreError::Undecryptable);
        }
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(&bytes[4..16]),
                Payload {
                    msg: &bytes[16..],
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SecretStoreError::Undecryptable)?;
        String::from_utf8(plain).map_err(|_| SecretStoreError::Undecryptable)
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
                let mut sealed = Vec::new();
                f.read_to_end(&mut sealed)?;
                self.open_sealed(&path, &sealed).map(Some)
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
        let sealed = self.seal(&format!("{dir}/{name}"), value)?;
        {
            let mut f = self.root.create(&tmp)?;
            f.write_all(&sealed)?;
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
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, SecretError>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_encrypted_at_rest_and_bound_to_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::generate();
        let store = SecretStore::open(dir.path(), &key).unwrap();
        store
            .set("acme", "crm", "salesforce.password", "hunter2-very-secret")
            .unwrap();
        let raw = std::fs::read(dir.path().join("acme/crm/salesforce.password")).unwrap();
        assert!(!raw.windows(6).any(|w| w == b"hunter"), "plaintext on disk");
        assert_eq!(
            store
                .get("acme", "crm", "salesforce.password")
                .unwrap()
                .as_deref(),
            Some("hunter2-very-secret")
        );
        // moved into another tenant's place: refused, not read as theirs
        std::fs::create_dir_all(dir.path().join("globex/crm")).unwrap();
        std::fs::write(dir.path().join("globex/crm/salesforce.password"), &raw).unwrap();
        assert!(matches!(
            store.get("globex", "crm", "salesforce.password"),
            Err(SecretStoreError::Undecryptable)
        ));
        // another key cannot read it
        let other = SecretStore::open(dir.path(), &SecretKey::generate()).unwrap();
        assert!(matches!(
            other.get("acme", "crm", "salesforce.password"),
            Err(SecretStoreError::Undecryptable)
        ));
        assert_eq!(store.names("acme", "crm").unwrap(), ["salesforce.password"]);
    }

    #[test]
    fn keys_parse_from_hex_or_base64_and_never_print() {
        let k = SecretKey::generate();
        assert_eq!(SecretKey::parse(&k.to_hex()).unwrap().0, k.0);
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(k.0);
        assert_eq!(SecretKey::parse(&format!(" {b64}\n")).unwrap().0, k.0);
        assert!(SecretKey::parse("short").is_err());
        assert_eq!(format!("{k:?}"), "SecretKey(…)");
    }
}
