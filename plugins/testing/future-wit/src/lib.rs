//! A component built against `pbx:plugin@0.2.0`, a WIT version the 0.1.x host does not serve.
//!
//! The host's tests load it to check that an incompatible plugin is refused at load time with a
//! clear error (and that the other plugins go on), instead of failing later at a call.
//! `wit/plugin.wit` here is a copy of the real contract with only the package version changed.

wit_bindgen::generate!({
    path: "wit",
    world: "event-plugin",
    generate_all,
});

use exports::pbx::plugin::event_handler::Guest as EventHandler;
use exports::pbx::plugin::settings_check::{CheckItem, Guest as SettingsCheck};
use pbx::plugin::log;
use pbx::plugin::types::{CallEvent, Context, PluginError};

/// The export; wasm32 only, because natively the export symbol names do not link.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Plugin;

impl EventHandler for Plugin {
    fn handle_event(_ctx: Context, event: CallEvent) -> Result<(), PluginError> {
        log::write(
            log::Level::Info,
            &format!("future-wit plugin saw {}", event.event_id),
        );
        Ok(())
    }
}

impl SettingsCheck for Plugin {
    fn check(_ctx: Context) -> Vec<CheckItem> {
        vec![CheckItem {
            name: "future".into(),
            ok: true,
            field: None,
            message: "built against pbx:plugin@0.2.0".into(),
        }]
    }
}

#[cfg(target_arch = "wasm32")]
export!(Plugin);
