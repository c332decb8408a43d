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
//!   "person_accounts": false
//! }
//! ```
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
}

fn default_country() -> String {
    "JP".into()
}

fn default_status() -> String {
    "Completed".into()
}

impl LoggerConfig {
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
