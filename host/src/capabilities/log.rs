//! The `log` capability: levelled lines into the tenant's integration log, capped per
//! invocation (lines over the cap are counted and summarised, not stored).

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
    fn write(&mut self, level: Level, mut message: String) -> wasmtime::Result<()> {
        let plugin_lines = self.logs.len() as u32;
        if plugin_lines >= self.scope.limits.log_lines {
            self.meter.log_lines_dropped += 1;
            return Ok(());
        }
        truncate(&mut message, self.scope.limits.log_line_bytes as usize);
        let level = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.log_line(level, message);
        Ok(())
    }
}
