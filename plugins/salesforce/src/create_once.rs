//! Creating a record once through a crash at any instant (SPEC H-8).
//!
//! A create whose answer never reached the plugin (the host was killed while the request was in
//! flight, or the request timed out) may still be committed by Salesforce: the service goes on
//! with a request after its client has gone. So before it sends a create, a plugin writes a
//! [`Pending`] marker into its state (the host commits state before every HTTP request), and
//! a later delivery that finds the marker must not create again before it knows:
//!
//! 1. while the marker is younger than its settle window (the time in which Salesforce may
//!    still commit the create), the delivery waits: [`Pending::wait`] answers a transient
//!    error whose `retry_after_ms` is the time left, and the host reschedules the event;
//! 2. once the window has passed, the delivery looks the record up (by `CallObject` for a
//!    Task, by the caller and the call id for a Case) and adopts what it finds; only when
//!    nothing is there does it create.
//!
//! Where the org has an external-id field for it, a plugin may instead upsert by that field
//! holding the call id ([`external_id_field`] checks the tenant's setting): a repeated upsert
//! updates the record the first one created, whatever the timing, at the price of the field.
//!
//! The window is [`SETTLE_TIMEOUTS`] request timeouts, measured from when the create was sent.
//! Its trade-off (docs/adr/0005-create-once.md): a crash delays that call's record by up to
//! the window; a Salesforce that commits a create later than the window would still get a
//! second record. A create that was answered (an error with a response) created nothing: the
//! caller drops the marker ([`Marker::Absent`]) so its retry needs neither wait nor look-up.

use pbx_plugin_sdk::{Host, PluginError};
use serde_json::Value;

use crate::client::{DEFAULT_TIMEOUT_MS, SaveResult};
use crate::error::ApiError;
use crate::{Client, SalesforceConfig, SfError};

/// How many request timeouts after a create was sent Salesforce may still commit it.
pub const SETTLE_TIMEOUTS: i64 = 3;

/// The prefix of a pending marker in plugin state.
const PREFIX: &str = "pending:";

/// A create that was sent and whose answer was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// When the create was sent (ms since the epoch); 0 for a marker written before markers
    /// carried the time (looked up at once, as then).
    pub sent_at_ms: i64,
    /// How long after `sent_at_ms` Salesforce may still commit it.
    pub settle_ms: i64,
}

/// What plugin state says of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// Nothing: no create of this record was started (or it failed with an answer).
    Absent,
    /// A create was sent; its outcome is unknown.
    Pending(Pending),
    /// The record exists: its id.
    Created(String),
}

/// The settle window of creates sent with these settings.
pub fn settle_window_ms(cfg: &SalesforceConfig) -> i64 {
    i64::from(cfg.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)).saturating_mul(SETTLE_TIMEOUTS)
}

impl Pending {
    /// The marker for a create sent now with these settings.
    pub fn sent_now(now_ms: i64, cfg: &SalesforceConfig) -> Pending {
        Pending {
            sent_at_ms: now_ms,
            settle_ms: settle_window_ms(cfg),
        }
    }

    /// The text kept in plugin state: `pending:{sent_at_ms}:{settle_ms}`.
    pub fn encode(&self) -> String {
        format!("{PREFIX}{}:{}", self.sent_at_ms, self.settle_ms)
    }

    /// When Salesforce has surely finished with the create.
    pub fn settles_at(&self) -> i64 {
        self.sent_at_ms.saturating_add(self.settle_ms)
    }

    /// `Ok` once the window has passed (look the record up now); before that a transient
    /// error asking the host to come back when it has (`what` names the record in the
    /// message, e.g. "the Task of call c1").
    pub fn wait(&self, now_ms: i64, what: &str) -> Result<(), PluginError> {
        let left = self.settles_at().saturating_sub(now_ms);
        if left <= 0 {
            return Ok(());
        }
        // A little past the window, so the retry does not come back a moment too early.
        let retry = u32::try_from(left.saturating_add(100)).unwrap_or(u32::MAX);
        Err(PluginError::transient(format!(
            "{what} may still be being created by an earlier attempt (sent at {}, Salesforce \
             may commit it for {} ms): waiting {left} ms before looking it up",
            self.sent_at_ms, self.settle_ms
        ))
        .retry_after_ms(retry))
    }
}

impl Marker {
    /// Reads a stored value: a pending marker (this format, or the older `pending:{attempt}`),
    /// else a record id.
    pub fn parse(stored: Option<&str>) -> Marker {
        let Some(value) = stored else {
            return Marker::Absent;
        };
        let Some(rest) = value.strip_prefix(PREFIX) else {
            return Marker::Created(value.to_string());
        };
        let pending = rest
            .split_once(':')
            .and_then(|(sent, settle)| {
                Some(Pending {
                    sent_at_ms: sent.parse().ok()?,
                    settle_ms: settle.parse().ok()?,
                })
            })
            .unwrap_or(Pending {
                sent_at_ms: 0,
                settle_ms: 0,
            });
        Marker::Pending(pending)
    }

    /// Whether the stored value is a pending marker.
    pub fn is_pending(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }

    /// The record id, when it exists.
    pub fn created(&self) -> Option<&str> {
        match self {
            Marker::Created(id) => Some(id),
            _ => None,
        }
    }
}

/// The tenant's external-id field setting `setting`, checked: an API name only (it becomes a
/// segment of the request path), else a `config` error naming the setting.
pub fn external_id_field<'a>(setting: &str, name: &'a str) -> Result<&'a str, PluginError> {
    let api_name = name.len() <= 80
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if api_name {
        Ok(name)
    } else {
        Err(PluginError::config(format!(
            "{setting}: '{name}' is not a field API name (letters, digits and underscores, \
             starting with a letter, e.g. PBX_Call_Id__c)"
        )))
    }
}

/// Whether Salesforce refused an upsert that updated because the body set fields that can
/// only be set on create (`INVALID_FIELD_FOR_INSERT_UPDATE` naming only `create_only` fields).
fn refused_create_only(code: &str, fields: &[String], create_only: &[&str]) -> bool {
    code == "INVALID_FIELD_FOR_INSERT_UPDATE"
        && !fields.is_empty()
        && fields.iter().all(|f| create_only.contains(&f.as_str()))
}

fn without(record: &Value, create_only: &[&str]) -> Value {
    let mut r = record.clone();
    if let Some(o) = r.as_object_mut() {
        for f in create_only {
            o.remove(*f);
        }
    }
    r
}

/// Upserts one record by `field` = `value`. A record with create-only fields (a Task's
/// `TaskSubtype`) can be created with them but not updated: when the upsert turns out to be an
/// update (a repeat after a crash) and Salesforce refuses those fields, it is sent again
/// without them. The id, or `None` when Salesforce answered an update with 204.
pub fn upsert<H: Host>(
    client: &Client<H>,
    sobject: &str,
    field: &str,
    value: &str,
    record: &Value,
    create_only: &[&str],
) -> Result<Option<String>, SfError> {
    match client.upsert(sobject, field, value, record) {
        Err(SfError::Validation { code, fields, .. })
            if refused_create_only(&code, &fields, create_only) =>
        {
            client.upsert(sobject, field, value, &without(record, create_only))
        }
        other => other,
    }
}

/// [`upsert`] for a collection: one sObject Collections upsert, and a second one for the
/// records that turned out to be updates refused for their create-only fields. One result
/// per record, in order.
pub fn collections_upsert<H: Host>(
    client: &Client<H>,
    sobject: &str,
    field: &str,
    records: &[Value],
    create_only: &[&str],
) -> Result<Vec<SaveResult>, SfError> {
    let mut results = client.collections_upsert(sobject, field, false, records)?;
    let again: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            !r.success
                && r.errors.first().is_some_and(|e: &ApiError| {
                    refused_create_only(&e.code, &e.fields, create_only)
                })
        })
        .map(|(i, _)| i)
        .filter(|i| *i < records.len())
        .collect();
    if again.is_empty() {
        return Ok(results);
    }
    let retry: Vec<Value> = again
        .iter()
        .map(|i| without(&records[*i], create_only))
        .collect();
    let second = client.collections_upsert(sobject, field, false, &retry)?;
    for (i, r) in again.into_iter().zip(second) {
        results[i] = r;
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(timeout_ms: Option<u32>) -> SalesforceConfig {
        let mut c = SalesforceConfig::password("u", "c");
        c.timeout_ms = timeout_ms;
        c
    }

    #[test]
    fn a_marker_round_trips_and_older_markers_are_looked_up_at_once() {
        let p = Pending::sent_now(1_000, &cfg(Some(2_000)));
        assert_eq!(p.settle_ms, 6_000);
        assert_eq!(Marker::parse(Some(&p.encode())), Marker::Pending(p));
        assert_eq!(
            Marker::parse(Some("pending:2")),
            Marker::Pending(Pending {
                sent_at_ms: 0,
                settle_ms: 0
            })
        );
        assert!(
            Pending {
                sent_at_ms: 0,
                settle_ms: 0
            }
            .wait(5, "x")
            .is_ok()
        );
        assert_eq!(
            Marker::parse(Some("00T000000000001")),
            Marker::Created("00T000000000001".into())
        );
        assert_eq!(Marker::parse(None), Marker::Absent);
        assert_eq!(settle_window_ms(&cfg(None)), 30_000);
    }

    #[test]
    fn an_external_id_field_must_be_an_api_name() {
        assert_eq!(
            external_id_field("task_external_id_field", "PBX_Call_Id__c").ok(),
            Some("PBX_Call_Id__c")
        );
        for bad in ["", "x/../../Account", "Call Id", "1abc", "a?b"] {
            let e = external_id_field("task_external_id_field", bad).unwrap_err();
            assert_eq!(e.kind, pbx_plugin_sdk::ErrorKind::Config, "{bad}");
            assert!(e.message.contains("task_external_id_field"), "{bad}");
        }
    }

    #[test]
    fn a_young_marker_waits_out_the_window_then_lets_the_look_up_run() {
        let p = Pending::sent_now(10_000, &cfg(Some(1_000)));
        let early = p.wait(10_500, "the Task of call c1").unwrap_err();
        assert_eq!(early.kind, pbx_plugin_sdk::ErrorKind::Transient);
        assert_eq!(early.retry_after_ms, Some(2_600));
        assert!(early.message.contains("the Task of call c1"), "{early:?}");
        assert!(p.wait(13_000, "x").is_ok());
        assert!(p.wait(99_000, "x").is_ok());
    }
}
