//! A minimal event plugin: copy this crate to start a new plugin.
//!
//! It logs every ended inbound or outbound call and counts them in state. The logic lives in
//! functions that take `&impl Host`, so the unit tests at the bottom run natively against
//! `FakeHost`; the exported trait impls only wire the real host in.

use exports::pbx::plugin::settings_check::CheckItem;
use pbx_plugin_sdk::log::Level;
use pbx_plugin_sdk::{CallEvent, Context, Direction, EventKind, Host, PluginError, WasmHost};
use serde::Deserialize;

pbx_plugin_sdk::generate!("event-plugin");

/// The tenant's settings for this plugin (`ctx.config`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// A prefix for the log lines, to show how settings are read.
    #[serde(default = "default_prefix")]
    prefix: String,
}

fn default_prefix() -> String {
    "call".to_string()
}

/// Handles one event with any host (the real one in the component, a fake in tests).
fn handle(host: &impl Host, ctx: &Context, event: &CallEvent) -> Result<(), PluginError> {
    let config: Config = pbx_plugin_sdk::config::parse(ctx)?;
    if event.kind != EventKind::Ended || event.call.direction == Direction::Internal {
        return Ok(());
    }
    let count: u64 = pbx_plugin_sdk::state::get_json_in(host, "ended-calls")?.unwrap_or(0) + 1;
    pbx_plugin_sdk::state::set_json_in(host, "ended-calls", &count, None)?;
    host.log(
        Level::Info,
        &format!(
            "{} {} ended ({} s); {count} so far",
            config.prefix, event.call.call_id, event.call.duration_seconds
        ),
    );
    Ok(())
}

/// "Verify settings": here only the settings' shape can be checked.
fn check(ctx: &Context) -> Vec<CheckItem> {
    match pbx_plugin_sdk::config::parse::<Config>(ctx) {
        Ok(_) => vec![CheckItem {
            name: "settings".into(),
            ok: true,
            field: None,
            message: "settings are valid".into(),
        }],
        Err(e) => vec![CheckItem {
            name: "settings".into(),
            ok: false,
            field: e.field.clone(),
            message: e.to_string(),
        }],
    }
}

/// The component's export. Only wasm32 exports it: natively (unit tests, clippy) the export
/// symbols' names (`pbx:plugin/event-handler@0.1.0#handle-event`) do not link into a cdylib.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Plugin;

impl exports::pbx::plugin::event_handler::Guest for Plugin {
    fn handle_event(ctx: Context, event: CallEvent) -> Result<(), PluginError> {
        handle(&WasmHost, &ctx, &event)
    }
}

impl exports::pbx::plugin::settings_check::Guest for Plugin {
    fn check(ctx: Context) -> Vec<CheckItem> {
        check(&ctx)
    }
}

#[cfg(target_arch = "wasm32")]
export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use pbx_plugin_sdk::testing::{FakeHost, sample_context, sample_event};

    #[test]
    fn counts_ended_calls() {
        let host = FakeHost::new();
        let ctx = sample_context(r#"{"prefix":"call"}"#);
        let mut ev = sample_event(EventKind::Ended, Direction::Inbound);
        handle(&host, &ctx, &ev).expect("first");
        handle(&host, &ctx, &ev).expect("second");
        assert_eq!(host.state_value("ended-calls").as_deref(), Some("2"));
        ev.call.direction = Direction::Internal;
        handle(&host, &ctx, &ev).expect("internal");
        assert_eq!(host.state_value("ended-calls").as_deref(), Some("2"));
        assert_eq!(host.logs().len(), 2);
    }

    #[test]
    fn bad_settings_name_the_field() {
        let items = check(&sample_context(r#"{"prefix":1}"#));
        assert!(!items[0].ok);
        assert_eq!(items[0].field.as_deref(), Some("prefix"));
    }
}
