//! Per-invocation limits: what a plugin may consume in one call before the host stops it.

use std::time::Duration;

use crate::config::{HostSettings, LimitsDecl};

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
    /// Total state a plugin may keep per tenant (keys, values and a fixed overhead per
    /// entry, [`crate::store::STATE_ROW_OVERHEAD_BYTES`]).
    pub state_bytes: u64,
    /// The tenant's phone book (host-wide, `[host]`).
    pub contacts: ContactCaps,
}

/// What a tenant's phone book may hold: set by the operator in `[host]`, the same for every
/// plugin (the phone book is the tenant's, shared by its plugins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactCaps {
    /// Entries per tenant, all plugins together.
    pub per_tenant: u64,
    /// Bytes of a name, company or e-mail (a Salesforce Account Name of 255 Japanese
    /// characters is 765 bytes).
    pub text_bytes: usize,
    /// Bytes of an external id, record type, account id, phone label or phone number.
    pub field_bytes: usize,
    /// Phone numbers per entry (Salesforce Contacts have at most 6 phone fields).
    pub phones_per_entry: usize,
}

impl Default for ContactCaps {
    fn default() -> Self {
        ContactCaps {
            per_tenant: 200_000,
            text_bytes: 1024,
            field_bytes: 256,
            phones_per_entry: 10,
        }
    }
}

impl ContactCaps {
    /// The operator's `[host]` values over the defaults (validated by [`check_host`]).
    pub fn from_host(h: &HostSettings) -> Self {
        let d = ContactCaps::default();
        let size = |v: Option<u64>, default: usize| {
            v.map_or(default, |v| usize::try_from(v).unwrap_or(usize::MAX))
        };
        ContactCaps {
            per_tenant: h.contacts_per_tenant.unwrap_or(d.per_tenant),
            text_bytes: size(h.contact_text_bytes, d.text_bytes),
            field_bytes: size(h.contact_field_bytes, d.field_bytes),
            phones_per_entry: size(h.contact_phones_per_entry, d.phones_per_entry),
        }
    }
}

impl Limits {
    /// Problems in the storage caps of `[host]`: (field, message).
    pub fn check_host(h: &HostSettings) -> Vec<(&'static str, String)> {
        let mut errors = Vec::new();
        for (name, v) in [
            ("log_retention_days", h.log_retention_days),
            ("log_rows_per_tenant", h.log_rows_per_tenant),
            ("dead_letter_retention_days", h.dead_letter_retention_days),
            ("contacts_per_tenant", h.contacts_per_tenant),
            ("contact_text_bytes", h.contact_text_bytes),
            ("contact_field_bytes", h.contact_field_bytes),
            ("contact_phones_per_entry", h.contact_phones_per_entry),
        ] {
            if v == Some(0) {
                errors.push((name, "must be greater than 0".to_string()));
            }
        }
        for (name, v) in [
            ("log_retention_days", h.log_retention_days),
            ("dead_letter_retention_days", h.dead_letter_retention_days),
        ] {
            if v.is_some_and(|d| d > 36_500) {
                errors.push((name, "at most 36500 (a hundred years)".to_string()));
            }
        }
        errors
    }
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
            contacts: ContactCaps::default(),
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

    /// These limits with the host-wide caps of `[host]` (the phone book's).
    pub fn with_host(mut self, h: &HostSettings) -> Limits {
        self.contacts = ContactCaps::from_host(h);
        self
    }
}

/// What a returned value costs once the host passes it on as JSON (to the PBX, the API, the
/// log): its encoded size, not the bytes of its strings. 600,000 empty IVR variables hold no
/// string bytes at all and are 5.7 MiB of JSON.
pub fn encoded_size<T: serde::Serialize + ?Sized>(value: &T) -> u64 {
    let mut counter = ByteCounter(0);
    // Writing to the counter cannot fail, and these values (strings, options, lists of
    // them) always serialise; a failure would count as "too large" below anyway.
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => u64::MAX,
    }
}

/// The JSON-escaped length of a text, without its quotes: its bytes for plain text, more
/// for control characters and quotes (a message of NULs is six times its length in JSON).
pub fn encoded_text_size(text: &str) -> u64 {
    encoded_size(text).saturating_sub(2)
}

struct ByteCounter(u64);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len() as u64);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returned_values_are_measured_as_json() {
        let empty: Vec<(String, String)> = vec![(String::new(), String::new()); 1000];
        // [["",""],["",""],...]: 7 bytes per variable, a comma between, the brackets.
        assert_eq!(encoded_size(&empty), 1000 * 7 + 999 + 2);
        assert_eq!(encoded_text_size("plain"), 5);
        assert_eq!(encoded_text_size("\u{0}"), 6);
        assert_eq!(encoded_text_size("あ"), 3);
    }
}
