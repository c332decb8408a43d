//! The `log` capability: levelled lines into the tenant's integration log, capped per
//! invocation together with the lines the host writes on the plugin's behalf (lines over the
//! cap are counted and summarised, not stored: see [`Invocation::finish_log`]).

use crate::runtime::Invocation;
use crate::runtime::bindings::log::{Host, Level};

/// Cut `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

impl Host for Invocation {
    fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        // Counted against the invocation's cap together with the host's lines on its behalf;
        // cut to the line-length cap when stored.
        self.plugin_log_line(level, message);
        Ok(())
    }
}
