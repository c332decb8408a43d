//! The smallest useful plugin: one `log.write` per event and nothing else.
//!
//! The host's benchmarks use it to measure per-invocation overhead (instantiate, one host call,
//! drop) and its smoke tests to check that events reach plugins.

use exports::pbx::plugin::event_handler::Guest as EventHandler;
use exports::pbx::plugin::settings_check::{CheckItem, Guest as SettingsCheck};
use pbx_plugin_sdk::log::{self, Level};
use pbx_plugin_sdk::{CallEvent, Context, PluginError};

pbx_plugin_sdk::generate!("event-plugin", "../../../wit");

/// The export; wasm32 only, because natively the export symbol names do not link.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Plugin;

impl EventHandler for Plugin {
    fn handle_event(_ctx: Context, event: CallEvent) -> Result<(), PluginError> {
        log::write(
            Level::Info,
            &format!(
                "minimal: {} {} {}",
                event.kind.as_str(),
                event.call.call_id,
                event.event_id
            ),
        );
        Ok(())
    }
}

impl SettingsCheck for Plugin {
    fn check(_ctx: Context) -> Vec<CheckItem> {
        vec![CheckItem {
            name: "minimal".into(),
            ok: true,
            field: None,
            message: "nothing to check".into(),
        }]
    }
}

#[cfg(target_arch = "wasm32")]
export!(Plugin);
