//! The running configuration: declared plugins (loaded or failed) and tenants.
//! Immutable once built; a reload builds a new one and swaps it in, so invocations in flight
//! keep the registry (and the components) they started with.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::capabilities::PluginGrants;
use crate::config::{IvrFallback, PluginDecl, PluginsFile, TenantDecl};
use crate::runtime::{Limits, LoadSource, LoadedComponent, Runtime};

/// A declared plugin.
pub struct PluginEntry {
    pub id: String,
    pub decl: PluginDecl,
    pub path: PathBuf,
    pub grants: Arc<PluginGrants>,
    pub limits: Arc<Limits>,
    /// "*" or the subscribed event kinds.
    pub events: BTreeSet<String>,
    pub component: Result<LoadedComponent, String>,
    /// File identity when loaded (modification time and length), to notice changes.
    pub stamp: Option<(SystemTime, u64)>,
}

impl PluginEntry {
    pub fn subscribes(&self, kind: &str) -> bool {
        self.events.contains("*") || self.events.contains(kind)
    }
}

/// A declared tenant.
pub struct TenantEntry {
    pub id: String,
    pub decl: TenantDecl,
}

impl TenantEntry {
    pub fn fallback(&self) -> &IvrFallback {
        &self.decl.ivr_fallback
    }
}

/// What loading reported for one plugin (admin surface, CLI, tests).
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    pub id: String,
    pub version: Option<String>,
    pub description: Option<String>,
    pub component: String,
    pub loaded: bool,
    pub error: Option<String>,
    pub source: Option<LoadSource>,
    pub exports: Vec<&'static str>,
    pub events: Vec<String>,
    pub schedules: BTreeMap<String, u64>,
}

pub struct Registry {
    pub file: PluginsFile,
    pub plugins: BTreeMap<String, Arc<PluginEntry>>,
    pub tenants: BTreeMap<String, Arc<TenantEntry>>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Registry {
    /// Build from a validated file. Components whose file is unchanged since `previous` are
    /// reused; others are loaded. A component that fails is recorded, not fatal.
    pub fn build(
        runtime: &Runtime,
        file: PluginsFile,
        base_dir: &Path,
        previous: Option<&Registry>,
    ) -> Registry {
        let mut plugins = BTreeMap::new();
        for (id, decl) in &file.plugins {
            let decl = decl.get_ref().clone();
            let path = base_dir.join(decl.component.get_ref());
            let now_stamp = stamp(&path);
            let reused = previous
                .and_then(|p| p.plugins.get(id))
                .filter(|old| {
                    old.path == path
                        && old.stamp.is_some()
                        && old.stamp == now_stamp
                        && old.component.is_ok()
                })
                .and_then(|old| old.component.clone().ok());
            let component = match reused {
                Some(c) => Ok(c),
                None => runtime.load(&path).map_err(|e| e.to_string()),
            };
            match &component {
                Ok(c) => {
                    tracing::info!(plugin = %id, source = ?c.source, exports = ?c.exports.names(), "plugin loaded")
                }
                Err(e) => tracing::error!(plugin = %id, "plugin skipped: {e}"),
            }
            // Validation already proved the limits are well-formed.
            let limits = Limits::from_decl(&decl.limits)
                .unwrap_or_default()
                .with_host(&file.host);
            let entry = PluginEntry {
                id: id.clone(),
                grants: Arc::new(PluginGrants::from_decl(&decl)),
                limits: Arc::new(limits),
                events: decl.events.iter().map(|e| e.get_ref().clone()).collect(),
                path,
                component,
                stamp: now_stamp,
                decl,
            };
            plugins.insert(id.clone(), Arc::new(entry));
        }
        let tenants = file
            .tenants
            .iter()
            .map(|(id, t)| {
                (
                    id.clone(),
                    Arc::new(TenantEntry {
                        id: id.clone(),
                        decl: t.get_ref().clone(),
                    }),
                )
            })
            .collect();
        Registry {
            file,
            plugins,
            tenants,
        }
    }

    /// True if a component file changed on disk since it was loaded.
    pub fn components_changed(&self) -> bool {
        self.plugins.values().any(|p| stamp(&p.path) != p.stamp)
    }

    pub fn statuses(&self) -> Vec<PluginStatus> {
        self.plugins
            .values()
            .map(|p| PluginStatus {
                id: p.id.clone(),
                version: p.decl.version.clone(),
                description: p.decl.description.clone(),
                component: p.path.display().to_string(),
                loaded: p.component.is_ok(),
                error: p.component.as_ref().err().cloned(),
                source: p.component.as_ref().ok().map(|c| c.source),
                exports: p
                    .component
                    .as_ref()
                    .map(|c| c.exports.names())
                    .unwrap_or_default(),
                events: p.events.iter().cloned().collect(),
                schedules: p
                    .decl
                    .schedules
                    .iter()
                    .map(|(k, v)| (k.clone(), *v.get_ref()))
                    .collect(),
            })
            .collect()
    }
}
