//! Which calls are logged and what their Task says (SPEC L-3, L-4, L-5).
//!
//! This first version logs finished inbound and outbound calls (answered, missed,
//! voicemail), predictive-dialer calls by L-5, and never internal calls. Transfers, memo and
//! transcript updates, templates and custom fields come next; they slot in as new
//! [`CallType`]s and more fields in [`build_task`].

use pbx_plugin_sdk::{Call, Direction, Outcome};
use pbx_salesforce::Match;
use serde_json::{Map, Value, json};

use crate::config::{Language, LoggerConfig};

/// The logged call types of L-3 handled so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallType {
    Outbound,
    Inbound,
    OutboundMissed,
    InboundMissed,
    Voicemail,
}

impl CallType {
    /// The call type of a finished call; `None` for calls that are not logged (internal).
    pub fn of(call: &Call) -> Option<CallType> {
        let missed = match (&call.predictive, call.outcome) {
            // L-5: a predictive call counts as answered only when callee and agent talked.
            (Some(p), _) => !(p.answered_by_callee && p.answered_by_agent),
            (None, Some(Outcome::Missed)) => true,
            (None, Some(Outcome::Voicemail)) => {
                return (call.direction == Direction::Inbound).then_some(CallType::Voicemail);
            }
            (None, Some(Outcome::Answered)) => false,
            (None, None) => call.answered_at.is_none(),
        };
        match (call.direction, missed) {
            (Direction::Internal, _) => None,
            (Direction::Outbound, false) => Some(CallType::Outbound),
            (Direction::Outbound, true) => Some(CallType::OutboundMissed),
            (Direction::Inbound, false) => Some(CallType::Inbound),
            (Direction::Inbound, true) => Some(CallType::InboundMissed),
        }
    }

    /// Task.CallType (a restricted picklist): Outbound or Inbound.
    pub fn sf_call_type(self) -> &'static str {
        match self {
            CallType::Outbound | CallType::OutboundMissed => "Outbound",
            CallType::Inbound | CallType::InboundMissed | CallType::Voicemail => "Inbound",
        }
    }

    /// The default Subject in the tenant's language (L-4).
    pub fn subject(self, lang: Language) -> &'static str {
        match (lang, self) {
            (Language::Ja, CallType::Outbound) => "発信",
            (Language::Ja, CallType::Inbound) => "着信",
            (Language::Ja, CallType::OutboundMissed) => "発信(不在)",
            (Language::Ja, CallType::InboundMissed) => "着信(不在)",
            (Language::Ja, CallType::Voicemail) => "着信(留守番電話)",
            (Language::En, CallType::Outbound) => "Outbound call",
            (Language::En, CallType::Inbound) => "Inbound call",
            (Language::En, CallType::OutboundMissed) => "Outbound call (missed)",
            (Language::En, CallType::InboundMissed) => "Inbound call (missed)",
            (Language::En, CallType::Voicemail) => "Inbound call (voicemail)",
        }
    }
}

/// The other party's number: the caller of an inbound call, the callee of an outbound one.
pub fn other_party(call: &Call) -> &str {
    match call.direction {
        Direction::Outbound => &call.callee,
        _ => &call.caller,
    }
}

fn format_time(ms: i64, cfg: &LoggerConfig) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&cfg.offset())
                .format("%Y-%m-%d %H:%M:%S %:z")
                .to_string()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// The date (YYYY-MM-DD, tenant time) for ActivityDate: when the call ended.
pub fn activity_date(call: &Call, fallback_ms: i64, cfg: &LoggerConfig) -> String {
    let ms = call.ended_at.unwrap_or(fallback_ms);
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&cfg.offset())
                .format("%Y-%m-%d")
                .to_string()
        })
        .unwrap_or_default()
}

/// The Task's Description: the facts of the call, one per line.
pub fn description(call: &Call, kind: CallType, m: Option<&Match>, cfg: &LoggerConfig) -> String {
    let ja = cfg.language == Language::Ja;
    let mut lines = Vec::new();
    let mut line = |ja_label: &str, en_label: &str, value: String| {
        lines.push(format!("{}: {value}", if ja { ja_label } else { en_label }));
    };
    line("種別", "Type", kind.subject(cfg.language).to_string());
    line("相手番号", "Other party", other_party(call).to_string());
    if let Some(agent) = &call.agent {
        let who = match &agent.user_name {
            Some(n) => format!("{} ({n})", agent.extension),
            None => agent.extension.clone(),
        };
        line("内線", "Extension", who);
    }
    line(
        "発信開始",
        "Dial started",
        format_time(call.dial_started_at, cfg),
    );
    if let Some(t) = call.answered_at {
        line("応答", "Answered", format_time(t, cfg));
    }
    if let Some(t) = call.ended_at {
        line("終了", "Ended", format_time(t, cfg));
    }
    line(
        "通話時間",
        "Duration",
        if ja {
            format!("{}秒", call.duration_seconds)
        } else {
            format!("{} s", call.duration_seconds)
        },
    );
    if let Some(q) = &call.queue {
        line("キュー", "Queue", q.clone());
    }
    if let Some(url) = &call.recording_url {
        line("録音", "Recording", url.clone());
    }
    if let Some(m) = m {
        line("照合", "Matched", m.reason.clone());
    }
    line("通話ID", "Call id", call.call_id.clone());
    lines.join("\n")
}

/// The Task record (L-4) for a call.
pub fn build_task(
    call: &Call,
    kind: CallType,
    m: Option<&Match>,
    cfg: &LoggerConfig,
    fallback_ms: i64,
) -> Value {
    let mut t = Map::new();
    t.insert("Subject".into(), json!(kind.subject(cfg.language)));
    t.insert("Description".into(), json!(description(call, kind, m, cfg)));
    t.insert("Status".into(), json!(cfg.task_status));
    t.insert("TaskSubtype".into(), json!("Call"));
    t.insert(
        "ActivityDate".into(),
        json!(activity_date(call, fallback_ms, cfg)),
    );
    t.insert("CallDurationInSeconds".into(), json!(call.duration_seconds));
    t.insert("CallType".into(), json!(kind.sf_call_type()));
    t.insert("CallObject".into(), json!(call.call_id));
    if let Some(m) = m {
        if let Some(who) = &m.who_id {
            t.insert("WhoId".into(), json!(who));
        }
        // Salesforce rejects a WhatId next to a Lead WhoId; a Lead has no account anyway.
        if let Some(what) = &m.what_id
            && m.kind != pbx_salesforce::RecordKind::Lead
        {
            t.insert("WhatId".into(), json!(what));
        }
    }
    let owner = call
        .agent
        .as_ref()
        .and_then(|a| cfg.agent_users.get(&a.extension));
    if let Some(owner) = owner {
        t.insert("OwnerId".into(), json!(owner));
    }
    Value::Object(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbx_plugin_sdk::testing::sample_event;
    use pbx_plugin_sdk::{EventKind, Predictive};

    fn cfg(json: &str) -> LoggerConfig {
        pbx_plugin_sdk::config::parse_str(json).expect("config")
    }

    #[test]
    fn call_types() {
        let mut call = sample_event(EventKind::Ended, Direction::Inbound).call;
        assert_eq!(CallType::of(&call), Some(CallType::Inbound));
        call.outcome = Some(Outcome::Missed);
        assert_eq!(CallType::of(&call), Some(CallType::InboundMissed));
        call.outcome = Some(Outcome::Voicemail);
        assert_eq!(CallType::of(&call), Some(CallType::Voicemail));
        call.direction = Direction::Outbound;
        call.outcome = Some(Outcome::Answered);
        assert_eq!(CallType::of(&call), Some(CallType::Outbound));
        call.predictive = Some(Predictive {
            answered_by_callee: true,
            answered_by_agent: false,
        });
        assert_eq!(CallType::of(&call), Some(CallType::OutboundMissed));
        call.predictive = Some(Predictive {
            answered_by_callee: true,
            answered_by_agent: true,
        });
        assert_eq!(CallType::of(&call), Some(CallType::Outbound));
        call.direction = Direction::Internal;
        assert_eq!(CallType::of(&call), None);
    }

    #[test]
    fn subjects() {
        assert_eq!(CallType::Outbound.subject(Language::Ja), "発信");
        assert_eq!(CallType::Inbound.subject(Language::Ja), "着信");
        assert_eq!(CallType::OutboundMissed.subject(Language::Ja), "発信(不在)");
        assert_eq!(CallType::InboundMissed.subject(Language::Ja), "着信(不在)");
        assert_eq!(CallType::Outbound.subject(Language::En), "Outbound call");
        assert_eq!(
            CallType::InboundMissed.subject(Language::En),
            "Inbound call (missed)"
        );
    }

    #[test]
    fn task_fields() {
        let c = cfg(r#"{"language":"en","agent_users":{"201":"005000000000001AAA"}}"#);
        let mut call = sample_event(EventKind::Ended, Direction::Outbound).call;
        // 2024-01-01T15:30:00Z is 2024-01-02 00:30 in Japan.
        call.ended_at = Some(1_704_123_000_000);
        let m = pbx_salesforce::matching::click_to_call("003000000000001AAA");
        let t = build_task(&call, CallType::Outbound, Some(&m), &c, 0);
        assert_eq!(t["Subject"], "Outbound call");
        assert_eq!(t["Status"], "Completed");
        assert_eq!(t["TaskSubtype"], "Call");
        assert_eq!(t["CallType"], "Outbound");
        assert_eq!(t["CallObject"], "1001");
        assert_eq!(t["CallDurationInSeconds"], 60);
        assert_eq!(t["WhoId"], "003000000000001AAA");
        assert_eq!(t["OwnerId"], "005000000000001AAA");
        assert_eq!(t["ActivityDate"], "2024-01-02", "tenant (JST) date");
        assert!(t.get("WhatId").is_none());
        let d = t["Description"].as_str().expect("description");
        assert!(d.contains("Other party: 03-1234-5678"), "{d}");
        assert!(d.contains("Extension: 201 (Agent 201)"), "{d}");
        assert!(d.contains("Ended: 2024-01-02 00:30:00 +09:00"), "{d}");
        let utc = cfg(r#"{"utc_offset_minutes":0}"#);
        assert_eq!(activity_date(&call, 0, &utc), "2024-01-01");
    }

    #[test]
    fn lead_gets_no_what_id() {
        let c = cfg("{}");
        let call = sample_event(EventKind::Ended, Direction::Inbound).call;
        let mut m = pbx_salesforce::matching::click_to_call("00Q000000000001AAA");
        m.what_id = Some("001000000000001AAA".into());
        let t = build_task(&call, CallType::Inbound, Some(&m), &c, 0);
        assert_eq!(t["WhoId"], "00Q000000000001AAA");
        assert!(t.get("WhatId").is_none());
        assert!(
            t.get("OwnerId").is_none(),
            "unmapped agent: integration user"
        );
        assert_eq!(t["Subject"], "着信");
    }
}
