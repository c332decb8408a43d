//! The PBX's call events and IVR look-ups as JSON (the HTTP door and the Rust door share it),
//! validated and converted to the WIT types plugins receive.

use serde::{Deserialize, Deserializer, Serialize};

use crate::runtime::bindings::{ivr_handler, types};

/// A timestamp as the PBX sends it: milliseconds since the epoch, or RFC 3339 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Ms(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Ms(ms) => Ok(Timestamp(ms)),
            Raw::Text(s) => chrono::DateTime::parse_from_rfc3339(&s)
                .map(|t| Timestamp(t.timestamp_millis()))
                .map_err(|e| {
                    serde::de::Error::custom(format!("'{s}' is not an RFC 3339 time: {e}"))
                }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Inbound,
    Outbound,
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Answered,
    Missed,
    Voicemail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransferKind {
    Internal,
    External,
    AutomaticForwarding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    DialStarted,
    Answered,
    QueueEntered,
    Transferred,
    Ended,
    MemoUpdated,
    TranscriptUpdated,
}

impl EventKind {
    /// The name used in `plugins.toml` subscriptions.
    pub fn name(self) -> &'static str {
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    pub kind: TransferKind,
    pub target_number: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub extension: String,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub user_email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Predictive {
    pub answered_by_callee: bool,
    pub answered_by_agent: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transcript {
    pub text: String,
    #[serde(default)]
    pub summary: Option<String>,
}

/// A call as of one event (see the WIT `call` record for the meaning of each field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    pub call_id: String,
    pub direction: Direction,
    pub caller: String,
    pub callee: String,
    #[serde(default)]
    pub agent: Option<Agent>,
    #[serde(default)]
    pub queue: Option<String>,
    pub dial_started_at: Timestamp,
    #[serde(default)]
    pub answered_at: Option<Timestamp>,
    #[serde(default)]
    pub ended_at: Option<Timestamp>,
    #[serde(default)]
    pub duration_seconds: u32,
    #[serde(default)]
    pub outcome: Option<Outcome>,
    #[serde(default)]
    pub transfer: Option<Transfer>,
    #[serde(default)]
    pub recording_url: Option<String>,
    #[serde(default)]
    pub predictive: Option<Predictive>,
    #[serde(default)]
    pub crm_record_id: Option<String>,
}

/// A call event as the PBX posts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallEvent {
    pub tenant: String,
    /// The PBX's id of the event; the host assigns one when missing.
    #[serde(default)]
    pub event_id: Option<String>,
    pub kind: EventKind,
    #[serde(default)]
    pub occurred_at: Option<Timestamp>,
    pub call: Call,
    #[serde(default)]
    pub memo: Vec<String>,
    #[serde(default)]
    pub transcript: Option<Transcript>,
}

/// An IVR look-up as the PBX posts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IvrLookup {
    pub tenant: String,
    pub call: Call,
    #[serde(default)]
    pub ivr_name: String,
    #[serde(default)]
    pub digits: Option<String>,
    /// How long the PBX waits for the decision, in milliseconds.
    pub deadline_ms: u32,
    /// The plugin to ask; by default the tenant's first enabled plugin with an IVR handler.
    #[serde(default)]
    pub plugin: Option<String>,
}

/// The decision returned to the PBX.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IvrDecision {
    pub speech: Option<String>,
    pub route: Option<String>,
    pub variables: Vec<(String, String)>,
    /// "plugin" when the plugin decided; "fallback" when the tenant's fallback was used.
    pub source: String,
    /// Why the fallback was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Bad input from the PBX, named precisely.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct InvalidEvent {
    pub field: String,
    pub message: String,
}

fn check_text(field: &str, v: &str, max: usize, required: bool) -> Result<(), InvalidEvent> {
    if required && v.trim().is_empty() {
        return Err(InvalidEvent {
            field: field.into(),
            message: "must not be empty".into(),
        });
    }
    if v.len() > max {
        return Err(InvalidEvent {
            field: field.into(),
            message: format!("is over {max} bytes"),
        });
    }
    Ok(())
}

impl Call {
    pub fn validate(&self, at: &str) -> Result<(), InvalidEvent> {
        check_text(&format!("{at}.call_id"), &self.call_id, 128, true)?;
        check_text(&format!("{at}.caller"), &self.caller, 64, false)?;
        check_text(&format!("{at}.callee"), &self.callee, 64, false)?;
        for (name, v) in [
            ("queue", &self.queue),
            ("recording_url", &self.recording_url),
            ("crm_record_id", &self.crm_record_id),
        ] {
            if let Some(v) = v {
                check_text(&format!("{at}.{name}"), v, 2048, false)?;
            }
        }
        if let (Some(a), Some(e)) = (self.answered_at, self.ended_at)
            && e.0 < a.0
        {
            return Err(InvalidEvent {
                field: format!("{at}.ended_at"),
                message: "is before answered_at".into(),
            });
        }
        Ok(())
    }
}

impl CallEvent {
    pub fn validate(&self) -> Result<(), InvalidEvent> {
        if !crate::config::valid_id(&self.tenant) {
            return Err(InvalidEvent {
                field: "tenant".into(),
                message: "is not a tenant id".into(),
            });
        }
        if let Some(id) = &self.event_id {
            check_text("event_id", id, 128, true)?;
        }
        self.call.validate("call")?;
        if self.memo.len() > 64 {
            return Err(InvalidEvent {
                field: "memo".into(),
                message: "has more than 64 labels".into(),
            });
        }
        if let Some(t) = &self.transcript {
            check_text("transcript.text", &t.text, 256 << 10, false)?;
        }
        Ok(())
    }

    /// The WIT form handed to plugins.
    pub fn to_wit(&self, event_id: &str) -> types::CallEvent {
        types::CallEvent {
            event_id: event_id.to_string(),
            kind: match self.kind {
                EventKind::DialStarted => types::EventKind::DialStarted,
                EventKind::Answered => types::EventKind::Answered,
                EventKind::QueueEntered => types::EventKind::QueueEntered,
                EventKind::Transferred => types::EventKind::Transferred,
                EventKind::Ended => types::EventKind::Ended,
                EventKind::MemoUpdated => types::EventKind::MemoUpdated,
                EventKind::TranscriptUpdated => types::EventKind::TranscriptUpdated,
            },
            occurred_at: self
                .occurred_at
                .map_or(self.call.dial_started_at.0, |t| t.0),
            call: self.call.to_wit(),
            memo: self.memo.clone(),
            transcript: self.transcript.as_ref().map(|t| types::Transcript {
                text: t.text.clone(),
                summary: t.summary.clone(),
            }),
        }
    }
}

impl Call {
    pub fn to_wit(&self) -> types::Call {
        types::Call {
            call_id: self.call_id.clone(),
            direction: match self.direction {
                Direction::Inbound => types::Direction::Inbound,
                Direction::Outbound => types::Direction::Outbound,
                Direction::Internal => types::Direction::Internal,
            },
            caller: self.caller.clone(),
            callee: self.callee.clone(),
            agent: self.agent.as_ref().map(|a| types::Agent {
                extension: a.extension.clone(),
                user_id: a.user_id.clone(),
                user_name: a.user_name.clone(),
                user_email: a.user_email.clone(),
            }),
            queue: self.queue.clone(),
            dial_started_at: self.dial_started_at.0,
            answered_at: self.answered_at.map(|t| t.0),
            ended_at: self.ended_at.map(|t| t.0),
            duration_seconds: self.duration_seconds,
            outcome: self.outcome.map(|o| match o {
                Outcome::Answered => types::Outcome::Answered,
                Outcome::Missed => types::Outcome::Missed,
                Outcome::Voicemail => types::Outcome::Voicemail,
            }),
            transfer: self.transfer.as_ref().map(|t| types::Transfer {
                kind: match t.kind {
                    TransferKind::Internal => types::TransferKind::Internal,
                    TransferKind::External => types::TransferKind::External,
                    TransferKind::AutomaticForwarding => types::TransferKind::AutomaticForwarding,
                },
                target_number: t.target_number.clone(),
            }),
            recording_url: self.recording_url.clone(),
            predictive: self.predictive.as_ref().map(|p| types::Predictive {
                answered_by_callee: p.answered_by_callee,
                answered_by_agent: p.answered_by_agent,
            }),
            crm_record_id: self.crm_record_id.clone(),
        }
    }
}

impl IvrLookup {
    pub fn validate(&self) -> Result<(), InvalidEvent> {
        if !crate::config::valid_id(&self.tenant) {
            return Err(InvalidEvent {
                field: "tenant".into(),
                message: "is not a tenant id".into(),
            });
        }
        if self.deadline_ms == 0 || self.deadline_ms > 60_000 {
            return Err(InvalidEvent {
                field: "deadline_ms".into(),
                message: "must be 1 to 60000".into(),
            });
        }
        check_text("ivr_name", &self.ivr_name, 128, false)?;
        self.call.validate("call")
    }

    pub fn to_wit(&self, remaining_ms: u32) -> ivr_handler::IvrRequest {
        ivr_handler::IvrRequest {
            call: self.call.to_wit(),
            ivr_name: self.ivr_name.clone(),
            digits: self.digits.clone(),
            deadline_ms: remaining_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_accept_ms_and_rfc3339() {
        let a: Timestamp = serde_json::from_str("1700000000000").unwrap();
        let b: Timestamp = serde_json::from_str("\"2023-11-14T22:13:20Z\"").unwrap();
        assert_eq!(a, b);
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }

    #[test]
    fn malformed_events_name_the_field() {
        let e: CallEvent = serde_json::from_value(serde_json::json!({
            "tenant": "acme", "kind": "ended",
            "call": {"call_id": "", "direction": "inbound", "caller": "0312345678", "callee": "200",
                     "dial_started_at": 1}
        }))
        .unwrap();
        assert_eq!(e.validate().unwrap_err().field, "call.call_id");
        let err = serde_json::from_value::<CallEvent>(
            serde_json::json!({"tenant": "acme", "kind": "exploded"}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("exploded"), "{err}");
    }
}
