//! Per-invocation limits: what a plugin may consume in one call before the host stops it.

use std::time::Duration;

use crate::config::LimitsDecl;

/// Limits of one invocation. Every one is enforced by the host, whatever the plugin does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time spent executing wasm (host awaits excluded). A looping plugin is stopped here.
    pub cpu: Duration,
    /// Linear memory of the instance, in bytes.
    pub memory_bytes: u64,
    /// The whole call, host awaits included. Cancels outstanding HTTP requests.
    pub wall: Duration,
    /// HTTP requests per invocation.
    pub http_requests: u32,
    /// Bytes of one request body.
    pub http_request_bytes: u64,
    /// Bytes of one response body.
    pub http_response_bytes: u64,
    /// Log lines stored per invocation (the rest are counted).
    pub log_lines: u32,
    /// Bytes of one log line (longer lines are cut).
    pub log_line_bytes: u32,
    /// Bytes the plugin may return (error messages, IVR decisions).
    pub return_bytes: u64,
    /// Total state a plugin may keep per tenant.
    pub state_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu: Duration::from_millis(500),
            memory_bytes: 64 << 20,
            wall: Duration::from_secs(30),
            http_requests: 64,
            http_request_bytes: 1 << 20,
            http_response_bytes: 16 << 20,
            log_lines: 200,
            log_line_bytes: 4096,
            return_bytes: 64 << 10,
            state_bytes: 4 << 20,
        }
    }
}

/// The largest memory any plugin may be given; sizes the pooling allocator's slots.
pub const MAX_MEMORY_BYTES: u64 = 1 << 30;

impl Limits {
    /// Apply the file's values over the defaults. Err names the field and the problem.
    pub fn from_decl(d: &LimitsDecl) -> Result<Limits, (&'static str, String)> {
        let mut l = Limits::default();
        fn positive(name: &'static str, v: u64) -> Result<u64, (&'static str, String)> {
            if v == 0 {
                Err((name, "must be greater than 0".into()))
            } else {
                Ok(v)
            }
        }
        if let Some(v) = d.cpu_ms {
            l.cpu = Duration::from_millis(positive("cpu_ms", v)?);
        }
        if let Some(v) = d.memory_mib {
            let bytes = positive("memory_mib", v)?.saturating_mul(1 << 20);
            if bytes > MAX_MEMORY_BYTES {
                return Err((
                    "memory_mib",
                    format!("at most {} MiB", MAX_MEMORY_BYTES >> 20),
                ));
            }
            l.memory_bytes = bytes;
        }
        if let Some(v) = d.wall_ms {
            l.wall = Duration::from_millis(positive("wall_ms", v)?);
        }
        if let Some(v) = d.http_requests {
            l.http_requests = v;
        }
        if let Some(v) = d.http_request_bytes {
            l.http_request_bytes = v;
        }
        if let Some(v) = d.http_response_bytes {
            l.http_response_bytes = v;
        }
        if let Some(v) = d.log_lines {
            l.log_lines = v;
        }
        if let Some(v) = d.log_line_bytes {
            l.log_line_bytes = positive("log_line_bytes", u64::from(v))? as u32;
        }
        if let Some(v) = d.return_bytes {
            l.return_bytes = positive("return_bytes", v)?;
        }
        if let Some(v) = d.state_bytes {
            l.state_bytes = v;
        }
        if l.cpu > l.wall {
            return Err(("cpu_ms", "must not exceed wall_ms".into()));
        }
        Ok(l)
    }
}
