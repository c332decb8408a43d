//! The tenant's settings for the history logger (`ctx.config`, JSON).
//!
//! ```json
//! {
//!   "login_url": "https://login.salesforce.com",   // or "sandbox", or a My Domain URL
//!   "auth": "password",                            // "password" | "soap" | "refresh_token" | "jwt"
//!   "username": "integration@example.com",
//!   "client_id": "3MVG9...",
//!   "api_version": "v59.0",
//!   "default_country": "JP",
//!   "language": "ja",                              // "ja" | "en"
//!   "task_status": "Completed",
//!   "agent_users": { "201": "005000000000001AAA" },
//!   "utc_offset_minutes": 540,                     // for ActivityDate and times in Description
//!   "person_accounts": false,
//!   "timing": "call_end",                          // "call_start" | "call_end" (L-5)
//!   "templates": {                                 // by call type (L-4); unset: defaults
//!     "inbound": { "subject": "着信 {CALLER}", "description": "{SPEECH_RECOGNITION_SUMMARY}" }
//!   },
//!   "custom_fields": {                             // Task custom fields (L-4), all optional
//!     "dial_start": "DialStart__c", "call_start": "CallStart__c",
//!     "call_end": "CallEnd__c", "memo": "CallMemo__c"
//!   },
//!   "case_link": false,                            // a Case per call, Tasks linked to it (L-7)
//!   "task_external_id_field": "PBX_Call_Id__c",    // optional: Tasks upserted by the call id
//!   "case_status": "New",
//!   "lock_retries": 3                              // in-plugin UNABLE_TO_LOCK_ROW retries (L-6)
//! }
//! ```
//!
//! Call types (template keys): `outbound`, `inbound`, `outbound_missed`, `inbound_missed`,
//! `voicemail`, `transfer_internal`, `transfer_external`, `automatic_forwarding`.
//! `agent_users` keys are extensions or agent e-mail addresses.
//!
//! Secrets (declare in plugins.toml): see `pbx_salesforce::config::ALL_SECRETS`.

use std::collections::BTreeMap;

use pbx_salesforce::SalesforceConfig;
use serde::Deserialize;

/// Languages of the default Subject texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// 発信 / 着信 / 発信(不在) / 着信(不在): the seed manuals' defaults.
    #[default]
    Ja,
    /// "Outbound call" / "Inbound call" / "… (missed)".
    En,
}

/// See the module docs.
#[derive(Debug, Clone, Deserialize)]
pub struct LoggerConfig {
    /// The Salesforce connection (login host, auth method, user, consumer key, API version).
    #[serde(flatten)]
    pub salesforce: SalesforceConfig,
    /// ISO country of numbers written without a country code; default "JP".
    #[serde(default = "default_country")]
    pub default_country: String,
    #[serde(default)]
    pub language: Language,
    /// The Task's Status; default "Completed".
    #[serde(default = "default_status")]
    pub task_status: String,
    /// PBX extension -> Salesforce user id (OwnerId). Unmapped agents: the integration user.
    #[serde(default)]
    pub agent_users: BTreeMap<String, String>,
    /// The tenant's UTC offset in minutes; default +540 (Japan) when `default_country` is JP,
    /// else 0.
    #[serde(default)]
    pub utc_offset_minutes: Option<i32>,
    /// The org has Person Accounts (the caller search then asks for their fields).
    #[serde(default)]
    pub person_accounts: bool,
    /// When the Task is created (L-5).
    #[serde(default)]
    pub timing: Timing,
    /// Subject / Description templates by call type (L-4).
    #[serde(default)]
    pub templates: BTreeMap<String, Template>,
    /// Task custom fields (L-4).
    #[serde(default)]
    pub custom_fields: CustomFields,
    /// Create a Case per call and link its Task(s) to it (L-7).
    #[serde(default)]
    pub case_link: bool,
    /// An external-id field of Task that holds the call id: Tasks are then upserted by it
    /// (exactly once whatever the timing of a crash) instead of created after a pending
    /// marker (docs/adr/0005-create-once.md). The org must have the field; a Task created
    /// with its Case (`case_link`) still uses the marker.
    #[serde(default)]
    pub task_external_id_field: Option<String>,
    /// The Status of the Case created by `case_link`; unset: the org's default.
    #[serde(default)]
    pub case_status: Option<String>,
    /// How often a locked Task (UNABLE_TO_LOCK_ROW) is retried inside one invocation before
    /// the host is asked to retry later; default 3.
    #[serde(default)]
    pub lock_retries: Option<u8>,
}

/// When the Task is written (SPEC L-5, seed 003 「登録タイミング」).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Timing {
    /// On `answered` (duration 0); calls never answered are logged when they end; voicemail
    /// and predictive calls answered by both sides are not logged.
    CallStart,
    /// On `ended`.
    #[default]
    CallEnd,
}

/// A per-type template; an unset part takes the default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Task custom field API names (seed 003 「カスタム項目」).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomFields {
    /// Date/time: when dialing started.
    #[serde(default)]
    pub dial_start: Option<String>,
    /// Date/time: when the call was answered.
    #[serde(default)]
    pub call_start: Option<String>,
    /// Date/time: when the call ended.
    #[serde(default)]
    pub call_end: Option<String>,
    /// Multi-select picklist: the memo labels.
    #[serde(default)]
    pub memo: Option<String>,
}

impl CustomFields {
    /// (setting name, field name) of every mapped field.
    pub fn mapped(&self) -> Vec<(&'static str, &str)> {
        [
            ("custom_fields.dial_start", &self.dial_start),
            ("custom_fields.call_start", &self.call_start),
            ("custom_fields.call_end", &self.call_end),
            ("custom_fields.memo", &self.memo),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().filter(|s| !s.is_empty()).map(|v| (k, v)))
        .collect()
    }
}

fn default_country() -> String {
    "JP".into()
}

fn default_status() -> String {
    "Completed".into()
}

/// The template keys `templates` accepts.
pub const TEMPLATE_KEYS: &[&str] = &[
    "outbound",
    "inbound",
    "outbound_missed",
    "inbound_missed",
    "voicemail",
    "transfer_internal",
    "transfer_external",
    "automatic_forwarding",
];

impl LoggerConfig {
    /// The Salesforce user for an agent: by extension, else by e-mail.
    pub fn agent_user(&self, agent: &pbx_plugin_sdk::Agent) -> Option<&str> {
        self.agent_users
            .get(&agent.extension)
            .or_else(|| {
                agent
                    .user_email
                    .as_ref()
                    .and_then(|e| self.agent_users.get(e))
            })
            .map(String::as_str)
    }

    /// The tenant's UTC offset.
    pub fn offset(&self) -> chrono::FixedOffset {
        let minutes =
            self.utc_offset_minutes
                .unwrap_or(if self.default_country.eq_ignore_ascii_case("JP") {
                    540
                } else {
                    0
                });
        chrono::FixedOffset::east_opt(minutes.clamp(-18 * 60, 18 * 60) * 60)
            .unwrap_or_else(|| chrono::Offset::fix(&chrono::Utc))
    }
}
