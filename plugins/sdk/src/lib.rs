//! The guest-side SDK for PBX plugins.
//!
//! Two layers:
//!
//! * [`bindings`]: the `wit-bindgen` bindings of the `imports` world of `wit/plugin.wit` (the
//!   host's capabilities and the shared types). Every plugin reuses these exact types through
//!   [`generate!`] (a thin wrapper over `wit_bindgen::generate!` with `with:` remappings), so a
//!   `Context` or `PluginError` built by SDK code is the one the plugin's exports return.
//! * Helpers that keep a plugin small: [`Host`] (one trait over every import, so plugin logic
//!   can run natively in unit tests against [`testing::FakeHost`]), [`http::Client`], [`state`],
//!   [`secrets`], [`log`] macros, [`config::parse`] and the [`PluginError`] constructors.
//!
//! See `plugins/sdk/README.md` for the author's guide.

pub mod config;
pub mod host;
pub mod http;
pub mod log;
pub mod secrets;
pub mod state;
pub mod testing;

/// The generated bindings of the `imports` world. Plugins do not generate these again: their
/// own [`generate!`] maps every imported interface here.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "imports",
        generate_all,
        // `types` has no functions in the imports world; without this its records
        // (`context`, `call-event`, `plugin-error`) would not exist for plugins to share.
        generate_unused_types: true,
        additional_derives: [PartialEq],
    });
}

/// Re-exported so [`generate!`] works in a plugin that depends on this crate only.
pub use wit_bindgen;

pub use bindings::pbx::plugin::types::{
    Agent, Call, CallEvent, Context, Direction, ErrorKind, EventKind, Outcome, PluginError,
    Predictive, Timestamp, Transcript, Transfer, TransferKind,
};
pub use host::{Host, WasmHost};

/// Generates a plugin's bindings for one of the worlds of `wit/plugin.wit`, sharing every
/// imported interface (and the `types` records) with this SDK.
///
/// `generate!("event-plugin")` reads the WIT from `../../wit` relative to the plugin's
/// `Cargo.toml` (right for `plugins/<name>/`); pass the path as a second argument otherwise:
/// `generate!("host", "../../../wit")`. The exported interfaces appear as usual under
/// `exports::pbx::plugin::…` together with the `export!` macro.
#[macro_export]
macro_rules! generate {
    ($world:literal) => {
        $crate::generate!($world, "../../wit");
    };
    ($world:literal, $path:literal) => {
        $crate::wit_bindgen::generate!({
            path: $path,
            world: $world,
            runtime_path: "::pbx_plugin_sdk::wit_bindgen::rt",
            with: {
                "pbx:plugin/types@0.1.0": ::pbx_plugin_sdk::bindings::pbx::plugin::types,
                "pbx:plugin/http@0.1.0": ::pbx_plugin_sdk::bindings::pbx::plugin::http,
                "pbx:plugin/secrets@0.1.0": ::pbx_plugin_sdk::bindings::pbx::plugin::secrets,
                "pbx:plugin/state@0.1.0": ::pbx_plugin_sdk::bindings::pbx::plugin::state,
                "pbx:plugin/contacts@0.1.0": ::pbx_plugin_sdk::bindings::pbx::plugin::contacts,
                "pbx:plugin/log@0.1.0": ::pbx_plugin_sdk::bindings::pbx::plugin::log,
            },
        });
    };
}

impl PluginError {
    /// An error of any kind; prefer the named constructors.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// Worth retrying with backoff: network trouble, a 5xx, a locked row.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }

    /// Will never succeed as it is (the CRM rejected the data): dead-lettered, not retried.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permanent, message)
    }

    /// The CRM's API limit is reached: the host pauses the tenant's deliveries.
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::RateLimited, message)
    }

    /// The tenant's settings are wrong: not retried until the admin fixes them.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// Asks the host to wait at least this long before retrying (transient, rate-limited).
    pub fn retry_after_ms(mut self, ms: u32) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }

    /// Prefixes the message with what was being done, keeping the kind.
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl Direction {
    /// The WIT name ("inbound", "outbound", "internal"), for logs and templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Internal => "internal",
        }
    }
}

impl EventKind {
    /// The WIT name ("ended", "memo-updated", …), for logs and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::DialStarted => "dial-started",
            EventKind::Answered => "answered",
            EventKind::QueueEntered => "queue-entered",
            EventKind::Transferred => "transferred",
            EventKind::Ended => "ended",
            EventKind::MemoUpdated => "memo-updated",
            EventKind::TranscriptUpdated => "transcript-updated",
        }
    }
}

impl ErrorKind {
    /// The WIT name ("transient", "rate-limited", …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
            ErrorKind::RateLimited => "rate-limited",
            ErrorKind::Config => "config",
        }
    }

    /// Parses the WIT name; used by configuration that names a kind.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "transient" => ErrorKind::Transient,
            "permanent" => ErrorKind::Permanent,
            "rate-limited" | "rate_limited" => ErrorKind::RateLimited,
            "config" => ErrorKind::Config,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_set_kind_and_message() {
        let e = PluginError::transient("down").retry_after_ms(500);
        assert_eq!(e.kind, ErrorKind::Transient);
        assert_eq!(e.message, "down");
        assert_eq!(e.retry_after_ms, Some(500));
        assert_eq!(PluginError::permanent("x").kind, ErrorKind::Permanent);
        assert_eq!(PluginError::rate_limited("x").kind, ErrorKind::RateLimited);
        assert_eq!(PluginError::config("x").kind, ErrorKind::Config);
        let e = PluginError::config("bad").context("login");
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorKind::Config, "login: bad")
        );
    }

    #[test]
    fn error_kind_names_round_trip() {
        for k in [
            ErrorKind::Transient,
            ErrorKind::Permanent,
            ErrorKind::RateLimited,
            ErrorKind::Config,
        ] {
            assert_eq!(ErrorKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ErrorKind::parse("nope"), None);
    }
}
