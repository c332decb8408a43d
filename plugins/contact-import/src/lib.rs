//! Contact import (SPEC C-1..C-4): Salesforce Leads, Contacts, Accounts and Person Accounts
//! into the tenant's PBX phone book, one-way.
//!
//! * [`config`]: the tenant's settings (`objects`, `person_accounts`, `cutoff_days`, the run
//!   budget, and the Salesforce connection of `pbx-salesforce`);
//! * [`source`]: what is read per object and how a record becomes an entry (C-2, C-3);
//! * [`sync`]: the `sync` schedule: first import through every page, then incremental sync by
//!   `LastModifiedDate` with deletions and merges from `deleted/` (C-4);
//! * [`check`]: "verify settings" (A-4, H-11).
//!
//! Nothing is ever written to Salesforce: the plugin only sends GET requests after login.

pub mod check;
pub mod config;
pub mod source;
pub mod sync;

use exports::pbx::plugin::settings_check::CheckItem;
use pbx_plugin_sdk::{Context, Host, PluginError, WasmHost};

use crate::config::ImportConfig;

pbx_plugin_sdk::generate!("scheduled-plugin", "../../wit");

/// The schedule this plugin declares in plugins.toml.
pub const SYNC_SCHEDULE: &str = "sync";

/// Parses the settings; a bad one is a `config` error naming the field.
pub fn settings(ctx: &Context) -> Result<ImportConfig, PluginError> {
    Ok(pbx_plugin_sdk::config::parse(ctx)?)
}

/// How soon to run again when a run stopped at its budget with more to import.
pub const CONTINUE_AFTER_MS: u32 = 1_000;

/// Runs a schedule. `Ok(Some(ms))`: more to import, run again after `ms`.
pub fn run(host: &impl Host, ctx: &Context, schedule: &str) -> Result<Option<u32>, PluginError> {
    if schedule != SYNC_SCHEDULE {
        return Err(PluginError::permanent(format!(
            "unknown schedule \"{schedule}\" (this plugin has only \"{SYNC_SCHEDULE}\")"
        )));
    }
    let cfg = settings(ctx)?;
    let finished = sync::run(host, ctx, &cfg)?;
    Ok((!finished).then_some(CONTINUE_AFTER_MS))
}

/// The export; wasm32 only, because natively the export symbol names do not link.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct ContactImport;

impl exports::pbx::plugin::scheduled::Guest for ContactImport {
    fn run(
        ctx: Context,
        schedule: String,
    ) -> Result<exports::pbx::plugin::scheduled::RunResult, PluginError> {
        let again = run(&WasmHost, &ctx, &schedule)?;
        Ok(exports::pbx::plugin::scheduled::RunResult {
            run_again_after_ms: again,
        })
    }
}

impl exports::pbx::plugin::settings_check::Guest for ContactImport {
    fn check(ctx: Context) -> Vec<CheckItem> {
        check::check(&WasmHost, &ctx)
    }
}

#[cfg(target_arch = "wasm32")]
export!(ContactImport);

#[cfg(test)]
mod tests;
