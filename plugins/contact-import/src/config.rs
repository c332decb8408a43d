//! The tenant's settings for the contact import (`ctx.config`, JSON).
//!
//! ```json
//! {
//!   "login_url": "https://login.salesforce.com",   // or "sandbox", or a My Domain URL
//!   "auth": "password",                            // "password" | "soap" | "refresh_token" | "jwt"
//!   "username": "integration@example.com",
//!   "client_id": "3MVG9...",
//!   "objects": ["Contact", "Account", "Lead"],     // any set; also "PersonAccount"
//!   "person_accounts": false,                      // Account records with IsPersonAccount
//!   "cutoff_days": 365,                            // first import: only records modified in the last N days
//!   "run_budget_ms": 90000,                        // stop and continue next run after this long
//!   "max_pages_per_run": 100                       // query pages (≤ 2,000 records each) per run
//! }
//! ```
//!
//! The sync interval is not a setting here: it is the host's schedule `sync` (plugins.toml,
//! default 86 400 s; a tenant overrides it with `schedules = { sync = 3600 }`).

use pbx_salesforce::SalesforceConfig;
use serde::Deserialize;

/// See the module docs.
#[derive(Debug, Clone, Deserialize)]
pub struct ImportConfig {
    /// The Salesforce connection (login host, auth method, user, consumer key, API version).
    #[serde(flatten)]
    pub salesforce: SalesforceConfig,
    /// Which objects to import; default Contact, Account, Lead.
    #[serde(default = "default_objects")]
    pub objects: Vec<String>,
    /// The org has Person Accounts: Account records with `IsPersonAccount` are imported as
    /// `PersonAccount` entries (Name, Phone, PersonMobilePhone).
    #[serde(default)]
    pub person_accounts: bool,
    /// First import: only records modified in the last N days (none: all records).
    #[serde(default)]
    pub cutoff_days: Option<u32>,
    /// Wall-clock time one run may spend before it stores its progress and stops.
    #[serde(default = "default_budget")]
    pub run_budget_ms: u64,
    /// Query pages one run may fetch before it stores its progress and stops.
    #[serde(default = "default_max_pages")]
    pub max_pages_per_run: u32,
}

fn default_objects() -> Vec<String> {
    vec!["Contact".into(), "Account".into(), "Lead".into()]
}

fn default_budget() -> u64 {
    90_000
}

fn default_max_pages() -> u32 {
    100
}

/// What the settings ask to import, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Selection {
    pub contact: bool,
    pub lead: bool,
    /// Business accounts.
    pub account: bool,
    /// Person accounts.
    pub person_account: bool,
}

impl ImportConfig {
    /// The objects to import; an unknown name is an error naming `objects[i]`.
    pub fn selection(&self) -> Result<Selection, (String, String)> {
        let mut s = Selection::default();
        for (i, o) in self.objects.iter().enumerate() {
            match o.trim().to_ascii_lowercase().as_str() {
                "contact" => s.contact = true,
                "lead" => s.lead = true,
                "account" => {
                    s.account = true;
                    s.person_account |= self.person_accounts;
                }
                "personaccount" => s.person_account = true,
                _ => {
                    return Err((
                        format!("objects[{i}]"),
                        format!(
                            "\"{o}\" is not an object this plugin imports (use Contact, Account, Lead or PersonAccount)"
                        ),
                    ));
                }
            }
        }
        if s == Selection::default() {
            return Err((
                "objects".into(),
                "no object to import: list at least one of Contact, Account, Lead, PersonAccount"
                    .into(),
            ));
        }
        Ok(s)
    }

    /// Person-account fields exist in the org (queried on Account).
    pub fn person_fields(&self, s: &Selection) -> bool {
        self.person_accounts || s.person_account
    }
}
