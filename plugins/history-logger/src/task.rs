//! Which calls are logged and what their Task says (SPEC L-3, L-4, L-5; seed 003).
//!
//! Call types: outbound, inbound, missed both ways, voicemail, transfers (internal, external,
//! automatic forwarding); internal calls are never logged. Subject and Description come from
//! the tenant's templates by type (defaults in the tenant's language); CallType follows the
//! manual: Outbound for outbound and missed outbound, Inbound for inbound, missed inbound,
//! voicemail and automatic forwarding, empty for internal and external transfers.

use pbx_plugin_sdk::{Call, Direction, Outcome, TransferKind};
use pbx_salesforce::Match;
use serde_json::{Map, Value, json};

use crate::config::{Language, LoggerConfig, Timing};

/// The logged call types of L-3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallType {
    Outbound,
    Inbound,
    OutboundMissed,
    InboundMissed,
    Voicemail,
    TransferInternal,
    TransferExternal,
    AutomaticForwarding,
}

impl CallType {
    /// The call type of a call as of now; `None` for calls that are not logged (internal).
    pub fn of(call: &Call) -> Option<CallType> {
        if call.direction == Direction::Internal {
            return None;
        }
        if let Some(t) = &call.transfer {
            return Some(match t.kind {
                TransferKind::Internal => CallType::TransferInternal,
                TransferKind::External => CallType::TransferExternal,
                TransferKind::AutomaticForwarding => CallType::AutomaticForwarding,
            });
        }
        let missed = match (&call.predictive, call.outcome) {
            // L-5: a predictive call counts as answered only when callee and agent talked.
            (Some(p), _) => !(p.answered_by_callee && p.answered_by_agent),
            (None, Some(Outcome::Missed)) => true,
            (None, Some(Outcome::Voicemail)) => {
                return Some(if call.direction == Direction::Inbound {
                    CallType::Voicemail
                } else {
                    CallType::OutboundMissed
                });
            }
            (None, Some(Outcome::Answered)) => false,
            (None, None) => call.answered_at.is_none(),
        };
        Some(match (call.direction == Direction::Outbound, missed) {
            (true, false) => CallType::Outbound,
            (true, true) => CallType::OutboundMissed,
            (false, false) => CallType::Inbound,
            (false, true) => CallType::InboundMissed,
        })
    }

    /// The key of this type in the `templates` setting.
    pub fn key(self) -> &'static str {
        match self {
            CallType::Outbound => "outbound",
            CallType::Inbound => "inbound",
            CallType::OutboundMissed => "outbound_missed",
            CallType::InboundMissed => "inbound_missed",
            CallType::Voicemail => "voicemail",
            CallType::TransferInternal => "transfer_internal",
            CallType::TransferExternal => "transfer_external",
            CallType::AutomaticForwarding => "automatic_forwarding",
        }
    }

    /// Task.CallType (a restricted picklist): Outbound, Inbound, or empty for transfers.
    pub fn sf_call_type(self) -> Option<&'static str> {
        match self {
            CallType::Outbound | CallType::OutboundMissed => Some("Outbound"),
            CallType::Inbound
            | CallType::InboundMissed
            | CallType::Voicemail
            | CallType::AutomaticForwarding => Some("Inbound"),
            CallType::TransferInternal | CallType::TransferExternal => None,
        }
    }

    /// The default Subject in the tenant's language (L-4).
    pub fn subject(self, lang: Language) -> &'static str {
        match (lang, self) {
            (Language::Ja, CallType::Outbound) => "発信",
            (Language::Ja, CallType::Inbound) => "着信",
            (Language::Ja, CallType::OutboundMissed) => "発信(不在)",
            (Language::Ja, CallType::InboundMissed) => "着信(不在)",
            (Language::Ja, CallType::Voicemail) => "留守番電話",
            (Language::Ja, CallType::TransferInternal) => "転送(内線)",
            (Language::Ja, CallType::TransferExternal) => "転送(外線)",
            (Language::Ja, CallType::AutomaticForwarding) => "自動転送",
            (Language::En, CallType::Outbound) => "Outbound call",
            (Language::En, CallType::Inbound) => "Inbound call",
            (Language::En, CallType::OutboundMissed) => "Outbound call (missed)",
            (Language::En, CallType::InboundMissed) => "Inbound call (missed)",
            (Language::En, CallType::Voicemail) => "Voicemail",
            (Language::En, CallType::TransferInternal) => "Transfer (internal)",
            (Language::En, CallType::TransferExternal) => "Transfer (external)",
            (Language::En, CallType::AutomaticForwarding) => "Automatic forwarding",
        }
    }

    /// The first line of the default Description: the manual's wording, where an automatic
    /// forwarding counts as a missed inbound call (seed 003: 「不在着信 (自動転送も含む)」).
    fn description_label(self, lang: Language) -> &'static str {
        match self {
            CallType::AutomaticForwarding => CallType::InboundMissed.subject(lang),
            other => other.subject(lang),
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

fn local_time(ms: i64, cfg: &LoggerConfig, fmt: &str) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&cfg.offset()).format(fmt).to_string())
        .unwrap_or_default()
}

fn format_time(ms: i64, cfg: &LoggerConfig) -> String {
    local_time(ms, cfg, "%Y-%m-%d %H:%M:%S")
}

/// Salesforce dateTime (UTC) for custom fields.
pub fn sf_datetime(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// ActivityDate: the date the record is created, in the tenant's time (seed 003
/// 「期日: レコード作成日」).
pub fn activity_date(now_ms: i64, cfg: &LoggerConfig) -> String {
    local_time(now_ms, cfg, "%Y-%m-%d")
}

/// What a template can use besides the call: the matched record, memo and transcript.
#[derive(Debug, Clone, Default)]
pub struct Extras<'a> {
    pub matched: Option<&'a Match>,
    pub memo: &'a [String],
    pub transcript_text: Option<&'a str>,
    pub transcript_summary: Option<&'a str>,
}

/// The template variables of a call (names without braces).
pub fn variables(
    call: &Call,
    kind: CallType,
    cfg: &LoggerConfig,
    x: &Extras<'_>,
) -> Vec<(&'static str, String)> {
    let agent = call.agent.as_ref();
    let opt_time = |t: Option<i64>| t.map(|t| format_time(t, cfg)).unwrap_or_default();
    let duration = if cfg.timing == Timing::CallStart {
        0
    } else {
        call.duration_seconds
    };
    vec![
        ("CALL_ID", call.call_id.clone()),
        ("CALL_TYPE", kind.subject(cfg.language).to_string()),
        ("DIRECTION", call.direction.as_str().to_string()),
        ("CALLER", call.caller.clone()),
        ("CALLEE", call.callee.clone()),
        ("OTHER_PARTY", other_party(call).to_string()),
        (
            "AGENT",
            agent
                .map(|a| a.user_name.clone().unwrap_or_else(|| a.extension.clone()))
                .unwrap_or_default(),
        ),
        (
            "AGENT_EXTENSION",
            agent.map(|a| a.extension.clone()).unwrap_or_default(),
        ),
        (
            "AGENT_EMAIL",
            agent.and_then(|a| a.user_email.clone()).unwrap_or_default(),
        ),
        ("QUEUE", call.queue.clone().unwrap_or_default()),
        ("DURATION", duration.to_string()),
        ("DIAL_START", format_time(call.dial_started_at, cfg)),
        ("CALL_START", opt_time(call.answered_at)),
        ("CALL_END", opt_time(call.ended_at)),
        (
            "RECORDING_URL",
            call.recording_url.clone().unwrap_or_default(),
        ),
        (
            "TRANSFER_TARGET",
            call.transfer
                .as_ref()
                .map(|t| t.target_number.clone())
                .unwrap_or_default(),
        ),
        (
            "RECORD_NAME",
            x.matched.and_then(|m| m.name.clone()).unwrap_or_default(),
        ),
        ("MEMO", x.memo.join(", ")),
        (
            "SPEECH_RECOGNITION",
            x.transcript_text.unwrap_or_default().to_string(),
        ),
        (
            "SPEECH_RECOGNITION_SUMMARY",
            x.transcript_summary.unwrap_or_default().to_string(),
        ),
    ]
}

/// Fills `{NAME}` placeholders; unknown ones are left as they are.
pub fn render(template: &str, vars: &[(&'static str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match vars.iter().find(|(n, _)| *n == name) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The default Description: the facts of the call, one per line, in the tenant's language
/// (no match reasons or other debugging text: those go to the integration log).
pub fn default_description(kind: CallType, cfg: &LoggerConfig) -> String {
    let lines: &[(&str, &str, &str)] = &[
        ("相手番号", "Other party", "{OTHER_PARTY}"),
        ("担当者", "Agent", "{AGENT}"),
        ("内線", "Extension", "{AGENT_EXTENSION}"),
        ("キュー", "Queue", "{QUEUE}"),
        ("転送先", "Transferred to", "{TRANSFER_TARGET}"),
        ("発信開始", "Dial started", "{DIAL_START}"),
        ("応答", "Answered", "{CALL_START}"),
        ("終了", "Ended", "{CALL_END}"),
        ("通話時間(秒)", "Duration (s)", "{DURATION}"),
        ("録音", "Recording", "{RECORDING_URL}"),
        ("応対メモ", "Memo", "{MEMO}"),
        ("要約", "Summary", "{SPEECH_RECOGNITION_SUMMARY}"),
        ("音声認識結果", "Transcript", "{SPEECH_RECOGNITION}"),
        ("通話ID", "Call id", "{CALL_ID}"),
    ];
    let ja = cfg.language == Language::Ja;
    let mut out = vec![kind.description_label(cfg.language).to_string()];
    for (j, e, v) in lines {
        out.push(format!("{}: {v}", if ja { j } else { e }));
    }
    out.join("\n")
}

/// Subject and Description of a call.
pub fn texts(call: &Call, kind: CallType, cfg: &LoggerConfig, x: &Extras<'_>) -> (String, String) {
    let vars = variables(call, kind, cfg, x);
    let t = cfg.templates.get(kind.key());
    let subject = match t.and_then(|t| t.subject.as_deref()) {
        Some(s) => render(s, &vars),
        None => kind.subject(cfg.language).to_string(),
    };
    let description = match t.and_then(|t| t.description.as_deref()) {
        Some(d) => render(d, &vars),
        None => {
            // Drop the lines whose value is empty.
            let full = default_description(kind, cfg);
            full.lines()
                .map(|l| render(l, &vars))
                .filter(|l| !l.ends_with(": "))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    // Salesforce's Subject is 255 characters.
    let subject: String = subject.chars().take(255).collect();
    let description: String = description.chars().take(32_000).collect();
    (subject, description)
}

/// The Task record (L-4) for a call. `owner`: the Salesforce user (None: the integration user).
/// `what_override`: the Case of L-7.
pub fn build_task(
    call: &Call,
    kind: CallType,
    cfg: &LoggerConfig,
    x: &Extras<'_>,
    owner: Option<&str>,
    now_ms: i64,
) -> Value {
    let (subject, description) = texts(call, kind, cfg, x);
    let mut t = Map::new();
    t.insert("Subject".into(), json!(subject));
    t.insert("Description".into(), json!(description));
    t.insert("Status".into(), json!(cfg.task_status));
    t.insert("TaskSubtype".into(), json!("Call"));
    t.insert("ActivityDate".into(), json!(activity_date(now_ms, cfg)));
    let duration = if cfg.timing == Timing::CallStart {
        0
    } else {
        call.duration_seconds
    };
    t.insert("CallDurationInSeconds".into(), json!(duration));
    t.insert(
        "CallType".into(),
        kind.sf_call_type().map_or(Value::Null, |c| json!(c)),
    );
    t.insert("CallObject".into(), json!(call.call_id));
    if let Some(m) = x.matched {
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
    if let Some(owner) = owner {
        t.insert("OwnerId".into(), json!(owner));
    }
    let cf = &cfg.custom_fields;
    let times = [
        (&cf.dial_start, Some(call.dial_started_at)),
        (&cf.call_start, call.answered_at),
        (&cf.call_end, call.ended_at),
    ];
    for (field, at) in times {
        if let (Some(f), Some(at)) = (field.as_deref().filter(|f| !f.is_empty()), at)
            && let Some(v) = sf_datetime(at)
        {
            t.insert(f.to_string(), json!(v));
        }
    }
    if let Some(f) = cf.memo.as_deref().filter(|f| !f.is_empty())
        && !x.memo.is_empty()
    {
        t.insert(f.to_string(), json!(memo_value(x.memo)));
    }
    Value::Object(t)
}

/// A multi-select picklist value: the labels joined by `;`.
pub fn memo_value(memo: &[String]) -> String {
    memo.iter()
        .map(|m| m.replace(';', ","))
        .collect::<Vec<_>>()
        .join(";")
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
        call.ended_at = Some(1_704_123_000_000);
        let m = pbx_salesforce::matching::click_to_call("003000000000001AAA");
        let x = Extras {
            matched: Some(&m),
            ..Default::default()
        };
        // 2024-01-01T15:30:00Z is 2024-01-02 00:30 in Japan: the creation date, tenant time.
        let t = build_task(
            &call,
            CallType::Outbound,
            &c,
            &x,
            Some("005000000000001AAA"),
            1_704_123_000_000,
        );
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
        assert!(d.contains("Extension: 201"), "{d}");
        assert!(d.contains("Ended: 2024-01-02 00:30:00"), "{d}");
        assert!(!d.contains("Queue"), "empty lines dropped: {d}");
        let utc = cfg(r#"{"utc_offset_minutes":0}"#);
        assert_eq!(activity_date(1_704_123_000_000, &utc), "2024-01-01");
    }

    #[test]
    fn transfers_and_templates() {
        let c = cfg(
            r#"{"templates":{"transfer_external":{"subject":"転送 {TRANSFER_TARGET} by {AGENT}","description":"{SPEECH_RECOGNITION_SUMMARY}|{CALL_ID}|{UNKNOWN}"}},
                "custom_fields":{"dial_start":"Dial__c","memo":"Memo__c"}}"#,
        );
        let mut call = sample_event(EventKind::Ended, Direction::Inbound).call;
        call.transfer = Some(pbx_plugin_sdk::Transfer {
            kind: pbx_plugin_sdk::TransferKind::External,
            target_number: "09011112222".into(),
        });
        let kind = CallType::of(&call).expect("logged");
        assert_eq!(kind, CallType::TransferExternal);
        assert_eq!(kind.sf_call_type(), None);
        let memo = vec!["要折返".to_string(), "見込み".to_string()];
        let x = Extras {
            memo: &memo,
            transcript_summary: Some("要約"),
            ..Default::default()
        };
        let t = build_task(&call, kind, &c, &x, None, 0);
        assert_eq!(t["Subject"], "転送 09011112222 by Agent 201");
        assert_eq!(t["Description"], "要約|1001|{UNKNOWN}");
        assert_eq!(t["CallType"], Value::Null);
        assert_eq!(t["Dial__c"], "2024-01-01T00:00:00.000Z");
        assert_eq!(t["Memo__c"], "要折返;見込み");
        assert!(t.get("OwnerId").is_none());
    }

    #[test]
    fn lead_gets_no_what_id() {
        let c = cfg("{}");
        let call = sample_event(EventKind::Ended, Direction::Inbound).call;
        let mut m = pbx_salesforce::matching::click_to_call("00Q000000000001AAA");
        m.what_id = Some("001000000000001AAA".into());
        let x = Extras {
            matched: Some(&m),
            ..Default::default()
        };
        let t = build_task(&call, CallType::Inbound, &c, &x, None, 0);
        assert_eq!(t["WhoId"], "00Q000000000001AAA");
        assert!(t.get("WhatId").is_none());
        assert!(t.get("OwnerId").is_none(), "integration user");
        assert_eq!(t["Subject"], "着信");
        let d = t["Description"].as_str().expect("description");
        assert!(d.starts_with("着信\n相手番号: 03-1234-5678"), "{d}");
        assert!(!d.is_ascii() && !d.contains("matched"), "{d}");
    }
}
