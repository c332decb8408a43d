//! The invocation-overhead benchmark's plugin: per event, three host calls
//! (`state.get`, `state.set`, `log.write`), written against [`pbx_plugin_sdk::Host`] so that the
//! same logic runs in the component and natively in-process (the benchmark's baseline).

use exports::pbx::plugin::event_handler::Guest as EventHandler;
use exports::pbx::plugin::settings_check::{CheckItem, Guest as SettingsCheck};
use pbx_plugin_sdk::bindings::pbx::plugin::log::Level;
use pbx_plugin_sdk::{CallEvent, Context, Host, PluginError, WasmHost};

pbx_plugin_sdk::generate!("event-plugin", "../../../wit");

/// The work done per event: count events per call in state and log one line.
pub fn handle(host: &impl Host, event: &CallEvent) -> Result<(), PluginError> {
    let key = "events";
    let n: u64 = host
        .state_get(key)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    host.state_set(key, &(n + 1).to_string(), None)?;
    host.log(
        Level::Info,
        &format!(
            "bench: {} {} #{}",
            event.kind.as_str(),
            event.call.call_id,
            n + 1
        ),
    );
    Ok(())
}

/// The export; wasm32 only, because natively the export symbol names do not link.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Plugin;

impl EventHandler for Plugin {
    fn handle_event(_ctx: Context, event: CallEvent) -> Result<(), PluginError> {
        handle(&WasmHost, &event)
    }
}

impl SettingsCheck for Plugin {
    fn check(_ctx: Context) -> Vec<CheckItem> {
        Vec::new()
    }
}

#[cfg(target_arch = "wasm32")]
export!(Plugin);
