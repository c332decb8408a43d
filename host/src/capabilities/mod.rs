//! Capabilities: what a plugin can ask of the host. Each module holds one capability's
//! policy, its implementation of the WIT interface and its checks, together (after Spin's
//! "factors"): adding a capability touches one module and the WIT, not the dispatcher.
//!
//! Deny by default: a plugin gets only what `plugins.toml` grants it, only for the tenant the
//! invocation runs for. Every refusal is a typed error the plugin sees and a line in the
//! tenant's integration log.

pub mod contacts;
pub mod http;
pub mod log;
pub mod secrets;
pub mod state;

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::config::{ContactsGrant, PluginDecl};
use crate::store::Storage;

pub use http::{HttpClient, NetPolicy, UrlPattern};
pub use secrets::{SecretKey, SecretStore};

/// The host services every invocation shares.
pub struct Services {
    pub storage: Arc<dyn Storage>,
    /// Log lines and usage counters, written behind (see [`crate::store::Journal`]).
    pub journal: Arc<crate::store::Journal>,
    pub secrets: SecretStore,
    pub http: HttpClient,
}

/// A plugin's grants, compiled from its declaration.
#[derive(Debug, Clone, Default)]
pub struct PluginGrants {
    /// URL pattern templates (may contain `{config.KEY}`).
    pub http: Vec<String>,
    pub secrets: BTreeSet<String>,
    pub state: bool,
    pub contacts: ContactsGrant,
}

impl PluginGrants {
    pub fn from_decl(decl: &PluginDecl) -> Self {
        PluginGrants {
            http: decl
                .grants
                .http
                .iter()
                .map(|p| p.get_ref().clone())
                .collect(),
            secrets: decl
                .grants
                .secrets
                .iter()
                .map(|s| s.get_ref().clone())
                .collect(),
            state: decl.grants.state,
            contacts: decl.grants.contacts,
        }
    }
}

/// The empty `types` interface has no functions, but bindgen still asks for its trait.
impl crate::runtime::bindings::types::Host for crate::runtime::Invocation {}
