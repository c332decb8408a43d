//! The API-linked IVR greeting (SPEC I-1..I-4, seed 001 "API連携IVR").
//!
//! On an IVR look-up:
//! 1. find the caller (I-1): first the tenant's phone book (`contacts.lookup-by-phone`, no
//!    Salesforce request at all, L-8); otherwise one SOSL search
//!    `FIND {number} IN PHONE FIELDS RETURNING Account(Id, Name, Phone)` over the configured
//!    objects, with the number in its E.164 and national forms;
//! 2. take the first response rule whose `when` fits the outcome (I-2): `no_match`, `match`,
//!    `match:<Type>` or `any`; render its speech template with `{NAME}`, `{COMPANY}`, `{ID}`,
//!    `{TYPE}`, `{CALLER}`; route to the rule's route or the configured `queue`;
//! 3. answer with data (I-4): speech, route and variables (`crm_id`, `crm_type`, `crm_name`,
//!    `crm_company`, `match`, `match_source`).
//!
//! Every Salesforce request gets a timeout below the request's `deadline-ms`; a failure or a
//! timeout comes back as a `plugin-error`, and the host answers the PBX with the tenant's
//! `ivr_fallback` (I-3, H-6).
//!
//! Settings (`ctx.config`): the Salesforce keys of [`pbx_salesforce::SalesforceConfig`] and
//!
//! ```json
//! {
//!   "default_country": "JP",
//!   "objects": ["Account"],                 // SOSL RETURNING objects: Account, Contact, Lead…
//!   "queue": "queue:reception",             // the route of rules without their own
//!   "rules": [                              // ordered; the first that fits wins
//!     {"when": "match:Contact", "speech": "{NAME}様…", "route": "queue:vip"},
//!     {"when": "no_match", "speech": "お電話ありがとうございます。…"}
//!   ]
//! }
//! ```

use exports::pbx::plugin::ivr_handler::{IvrDecision, IvrRequest};
use exports::pbx::plugin::settings_check::CheckItem;
use pbx_plugin_sdk::log::Level;
use pbx_plugin_sdk::{Context, Host, PluginError, WasmHost};
use pbx_salesforce::matching::{self, Candidate, RecordKind};
use pbx_salesforce::verify::{self, Check, Need};
use pbx_salesforce::{Client, SalesforceConfig, search};
use serde::Deserialize;
use serde_json::Value;

pbx_plugin_sdk::generate!("ivr-plugin", "../../wit");

/// Seed 001, priority 1 (no matching record): the greeting before the transfer.
pub const NO_MATCH_SPEECH: &str = "お電話ありがとうございます。只今、オペレータへお繋ぎしておりますので、しばらくお待ちください。";
/// Seed 001, priority 2 (a matching record): the same greeting with the caller's name.
pub const MATCH_SPEECH: &str = "{NAME}様、お電話ありがとうございます。只今、オペレータへお繋ぎしておりますので、しばらくお待ちください。";

/// Time kept back from the PBX's deadline for answering after the last request.
pub const DEADLINE_MARGIN_MS: u32 = 30;

/// One response rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// "no_match", "match", "match:<Type>" (Contact, Account, PersonAccount, Lead, …) or "any".
    pub when: String,
    /// Text for speech synthesis; templates: {NAME}, {COMPANY}, {ID}, {TYPE}, {CALLER}.
    #[serde(default)]
    pub speech: Option<String>,
    /// Where to route; default the setting `queue`.
    #[serde(default)]
    pub route: Option<String>,
}

/// The settings; see the module docs.
#[derive(Debug, Clone, Deserialize)]
pub struct IvrConfig {
    #[serde(flatten)]
    pub salesforce: SalesforceConfig,
    #[serde(default = "default_country")]
    pub default_country: String,
    #[serde(default = "default_objects")]
    pub objects: Vec<String>,
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub rules: Option<Vec<Rule>>,
}

fn default_country() -> String {
    "JP".into()
}

fn default_objects() -> Vec<String> {
    vec!["Account".into()]
}

impl IvrConfig {
    /// The rules, or seed 001's two.
    pub fn rules(&self) -> Vec<Rule> {
        match &self.rules {
            Some(r) if !r.is_empty() => r.clone(),
            _ => vec![
                Rule {
                    when: "no_match".into(),
                    speech: Some(NO_MATCH_SPEECH.into()),
                    route: None,
                },
                Rule {
                    when: "match".into(),
                    speech: Some(MATCH_SPEECH.into()),
                    route: None,
                },
            ],
        }
    }

    /// Checks what serde cannot: rule conditions and object names (they go into SOSL).
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, r) in self.rules().iter().enumerate() {
            let w = r.when.trim();
            let ok = w == "no_match"
                || w == "match"
                || w == "any"
                || w.strip_prefix("match:").is_some_and(is_api_name);
            if !ok {
                return Err((
                    format!("rules[{i}].when"),
                    format!(
                        "\"{w}\" is not a rule condition: use \"no_match\", \"match\", \"match:<Type>\" or \"any\""
                    ),
                ));
            }
        }
        if self.objects.is_empty() {
            return Err((
                "objects".into(),
                "name at least one object to search".into(),
            ));
        }
        for (i, o) in self.objects.iter().enumerate() {
            if !is_api_name(o) {
                return Err((
                    format!("objects[{i}]"),
                    format!("\"{o}\" is not a Salesforce object name"),
                ));
            }
        }
        Ok(())
    }
}

/// A Salesforce API name: letters, digits and underscores, starting with a letter.
fn is_api_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The caller as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub kind: String,
    pub id: String,
    pub name: String,
    pub company: String,
    /// "phone_book" or "salesforce".
    pub source: &'static str,
}

/// Replaces `{KEY}` by its value; unknown keys are left as written.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

fn settings(ctx: &Context) -> Result<IvrConfig, PluginError> {
    let cfg: IvrConfig = pbx_plugin_sdk::config::parse(ctx)?;
    cfg.validate()
        .map_err(|(f, m)| PluginError::config(format!("setting {f}: {m}")))?;
    Ok(cfg)
}

/// The RETURNING clause of one object.
fn returning(object: &str) -> String {
    match object {
        "Contact" => "Contact(Id, Name, Phone, MobilePhone, AccountId, LastModifiedDate ORDER BY LastModifiedDate DESC)".into(),
        "Lead" => "Lead(Id, Name, Company, Phone, MobilePhone, LastModifiedDate WHERE IsConverted = false ORDER BY LastModifiedDate DESC)".into(),
        "Account" => "Account(Id, Name, Phone)".into(),
        other => format!("{other}(Id, Name, Phone)"),
    }
}

/// The SOSL of I-1 over the configured objects; `None` when the number is not a phone number.
pub fn sosl(number: &str, default_country: &str, objects: &[String]) -> Option<String> {
    let terms = search::phone_terms(number, default_country)?;
    let find: Vec<String> = terms.iter().map(|t| search::escape_sosl(t)).collect();
    let ret: Vec<String> = objects.iter().map(|o| returning(o)).collect();
    Some(format!(
        "FIND {{{}}} IN PHONE FIELDS RETURNING {}",
        find.join(" OR "),
        ret.join(", ")
    ))
}

/// The phone book's answer, if it knows the number.
fn from_phone_book(host: &impl Host, cfg: &IvrConfig, number: &str) -> Option<Found> {
    let entries = match host.contacts_lookup(number) {
        Ok(e) => e,
        Err(e) => {
            host.log(Level::Warn, &format!("phone book look-up failed: {e:?}"));
            return None;
        }
    };
    let candidates: Vec<Candidate> = entries
        .iter()
        .filter_map(Candidate::from_phone_book)
        .collect();
    let m = matching::choose(number, &cfg.default_country, None, &candidates)?;
    let entry = entries
        .iter()
        .find(|e| e.external_id.rsplit('/').next() == Some(m.id.as_str()));
    let name = m
        .name
        .clone()
        .or_else(|| entry.map(|e| e.name.clone()))
        .unwrap_or_default();
    let company = entry
        .and_then(|e| e.company.clone())
        .unwrap_or_else(|| match m.kind {
            RecordKind::Account | RecordKind::PersonAccount => name.clone(),
            _ => String::new(),
        });
    Some(Found {
        kind: m.kind.object().to_string(),
        id: m.id,
        name,
        company,
        source: "phone_book",
    })
}

/// Searches Salesforce for the caller.
fn from_salesforce(
    client: &Client<&impl Host>,
    cfg: &IvrConfig,
    number: &str,
) -> Result<Option<Found>, PluginError> {
    let Some(q) = sosl(number, &cfg.default_country, &cfg.objects) else {
        return Ok(None);
    };
    let records = client
        .search(&q)
        .map_err(|e| PluginError::from(e).context("searching Salesforce for the caller"))?;
    let candidates: Vec<Candidate> = records.iter().filter_map(Candidate::from_record).collect();
    let text = |v: &Value, f: &str| v.get(f).and_then(Value::as_str).map(str::to_string);
    if let Some(m) = matching::choose(number, &cfg.default_country, None, &candidates) {
        let record = records
            .iter()
            .find(|r| text(r, "Id").as_deref() == Some(m.id.as_str()));
        let name = m.name.clone().unwrap_or_default();
        let company = match m.kind {
            RecordKind::Account | RecordKind::PersonAccount => name.clone(),
            _ => record.and_then(|r| text(r, "Company")).unwrap_or_default(),
        };
        return Ok(Some(Found {
            kind: m.kind.object().to_string(),
            id: m.id,
            name,
            company,
            source: "salesforce",
        }));
    }
    // Objects the matching rules do not know (custom objects): SOSL found the number in one
    // of their phone fields; take the first.
    Ok(records.iter().find_map(|r| {
        let kind = r.get("attributes")?.get("type")?.as_str()?;
        if matches!(kind, "Contact" | "Account" | "Lead") {
            return None;
        }
        Some(Found {
            kind: kind.to_string(),
            id: text(r, "Id")?,
            name: text(r, "Name").unwrap_or_default(),
            company: String::new(),
            source: "salesforce",
        })
    }))
}

/// Whether a rule's condition fits the outcome.
fn fits(rule: &Rule, found: Option<&Found>) -> bool {
    match (rule.when.trim(), found) {
        ("any", _) => true,
        ("no_match", None) => true,
        ("match", Some(_)) => true,
        (w, Some(f)) => w
            .strip_prefix("match:")
            .is_some_and(|t| t.eq_ignore_ascii_case(&f.kind)),
        _ => false,
    }
}

/// Builds the decision for an outcome (I-2, I-4).
pub fn decide(cfg: &IvrConfig, caller: &str, found: Option<&Found>) -> Option<IvrDecision> {
    let rule = cfg.rules().into_iter().find(|r| fits(r, found))?;
    let empty = String::new();
    let (kind, id, name, company) = match found {
        Some(f) => (&f.kind, &f.id, &f.name, &f.company),
        None => (&empty, &empty, &empty, &empty),
    };
    let vars = [
        ("NAME", name.as_str()),
        ("COMPANY", company.as_str()),
        ("ID", id.as_str()),
        ("TYPE", kind.as_str()),
        ("CALLER", caller),
    ];
    let mut variables = vec![("match".to_string(), found.is_some().to_string())];
    if let Some(f) = found {
        variables.extend([
            ("crm_id".to_string(), f.id.clone()),
            ("crm_type".to_string(), f.kind.clone()),
            ("crm_name".to_string(), f.name.clone()),
            ("crm_company".to_string(), f.company.clone()),
            ("match_source".to_string(), f.source.to_string()),
        ]);
    }
    Some(IvrDecision {
        speech: rule.speech.as_deref().map(|s| render(s, &vars)),
        route: rule.route.clone().or_else(|| cfg.queue.clone()),
        variables,
    })
}

/// Answers one IVR look-up.
pub fn lookup(
    host: &impl Host,
    ctx: &Context,
    req: &IvrRequest,
) -> Result<IvrDecision, PluginError> {
    let started = host.now_ms();
    let mut cfg = settings(ctx)?;
    let caller = req.call.caller.trim().to_string();
    let found = match from_phone_book(host, &cfg, &caller) {
        Some(f) => Some(f),
        None if pbx_phone::normalize(&caller, &cfg.default_country).is_none() => None,
        None => {
            // Every request must end before the PBX's deadline (I-3).
            let spent = u32::try_from(host.now_ms().saturating_sub(started)).unwrap_or(u32::MAX);
            let budget = req
                .deadline_ms
                .saturating_sub(spent)
                .saturating_sub(DEADLINE_MARGIN_MS)
                .max(1);
            cfg.salesforce.timeout_ms =
                Some(cfg.salesforce.timeout_ms.map_or(budget, |t| t.min(budget)));
            let client = Client::new(host, cfg.salesforce.clone());
            let result = from_salesforce(&client, &cfg, &caller);
            client.save_usage();
            match result {
                Ok(f) => f,
                Err(e) => {
                    host.log(
                        Level::Error,
                        &format!(
                            "IVR {}: {}; the PBX gets the tenant's fallback",
                            req.ivr_name, e.message
                        ),
                    );
                    return Err(e);
                }
            }
        }
    };
    let decision = decide(&cfg, &caller, found.as_ref()).ok_or_else(|| {
        PluginError::config(format!(
            "no response rule fits this caller ({}); add a rule with \"when\": \"any\"",
            if found.is_some() { "match" } else { "no_match" }
        ))
    })?;
    host.log(
        Level::Info,
        &match &found {
            Some(f) => format!(
                "IVR {}: caller matched {} {} ({}); route {}",
                req.ivr_name,
                f.kind,
                f.id,
                f.source,
                decision.route.as_deref().unwrap_or("-")
            ),
            None => format!(
                "IVR {}: no record has the caller's number; route {}",
                req.ivr_name,
                decision.route.as_deref().unwrap_or("-")
            ),
        },
    );
    Ok(decision)
}

fn item(c: Check) -> CheckItem {
    CheckItem {
        name: c.name,
        ok: c.ok,
        field: c.field,
        message: c.message,
    }
}

/// "Verify settings" (A-4): settings, login, read access to each searched object and its
/// Name and Phone fields, API usage.
pub fn check(host: &impl Host, ctx: &Context) -> Vec<CheckItem> {
    let cfg = match pbx_plugin_sdk::config::parse::<IvrConfig>(ctx) {
        Ok(c) => c,
        Err(e) => {
            return vec![CheckItem {
                name: "settings".into(),
                ok: false,
                field: e.field.clone(),
                message: e.to_string(),
            }];
        }
    };
    if let Err((field, message)) = cfg.validate() {
        return vec![CheckItem {
            name: "settings".into(),
            ok: false,
            field: Some(field.clone()),
            message: format!("setting {field}: {message}"),
        }];
    }
    let mut items = Vec::new();
    if pbx_phone::country(&cfg.default_country).is_none() {
        items.push(item(Check::fail(
            "default_country",
            Some("default_country"),
            format!(
                "\"{}\" is not a supported country code (use an ISO code such as JP or US)",
                cfg.default_country
            ),
        )));
    }
    let client = Client::new(host, cfg.salesforce.clone());
    match verify::login(&client) {
        Ok(c) => items.push(item(c)),
        Err(c) => {
            items.push(item(c));
            return items;
        }
    }
    for object in &cfg.objects {
        let fields: &[&str] = match object.as_str() {
            "Contact" | "Lead" => &["Name", "Phone", "MobilePhone"],
            _ => &["Name", "Phone"],
        };
        let need = Need {
            query: true,
            ..Need::default()
        };
        items.extend(
            verify::object(&client, object, need, fields)
                .into_iter()
                .map(item),
        );
    }
    if let Some(u) = verify::usage(&client) {
        items.push(item(u));
    }
    client.save_usage();
    items
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct IvrGreeting;

impl exports::pbx::plugin::ivr_handler::Guest for IvrGreeting {
    fn lookup(ctx: Context, request: IvrRequest) -> Result<IvrDecision, PluginError> {
        lookup(&WasmHost, &ctx, &request)
    }
}

impl exports::pbx::plugin::settings_check::Guest for IvrGreeting {
    fn check(ctx: Context) -> Vec<CheckItem> {
        check(&WasmHost, &ctx)
    }
}

#[cfg(target_arch = "wasm32")]
export!(IvrGreeting);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> IvrConfig {
        pbx_plugin_sdk::config::parse_str(json).expect("config")
    }

    fn found(kind: &str) -> Found {
        Found {
            kind: kind.into(),
            id: "0012v00002uhRmWAAU".into(),
            name: "CDF 株式会社".into(),
            company: "CDF 株式会社".into(),
            source: "salesforce",
        }
    }

    #[test]
    fn default_rules_are_the_seed_texts() {
        let c = cfg(r#"{"queue":"queue:reception"}"#);
        let d = decide(&c, "0312345678", None).expect("decision");
        assert_eq!(d.speech.as_deref(), Some(NO_MATCH_SPEECH));
        assert_eq!(d.route.as_deref(), Some("queue:reception"));
        assert_eq!(d.variables, vec![("match".into(), "false".into())]);
        let d = decide(&c, "0312345678", Some(&found("Account"))).expect("decision");
        assert_eq!(
            d.speech.as_deref(),
            Some(
                "CDF 株式会社様、お電話ありがとうございます。只今、オペレータへお繋ぎしておりますので、しばらくお待ちください。"
            )
        );
        assert!(
            d.variables
                .contains(&("crm_id".into(), "0012v00002uhRmWAAU".into()))
        );
    }

    #[test]
    fn first_fitting_rule_wins() {
        let c = cfg(
            r#"{"queue":"q:main","rules":[{"when":"match:Contact","speech":"C {NAME}","route":"q:vip"},{"when":"match","speech":"{TYPE} {ID}"},{"when":"any","speech":"x"}]}"#,
        );
        let d = decide(&c, "1", Some(&found("Account"))).expect("decision");
        assert_eq!(d.speech.as_deref(), Some("Account 0012v00002uhRmWAAU"));
        assert_eq!(d.route.as_deref(), Some("q:main"));
        let d = decide(&c, "1", Some(&found("Contact"))).expect("decision");
        assert_eq!(d.route.as_deref(), Some("q:vip"));
        let d = decide(&c, "1", None).expect("decision");
        assert_eq!(d.speech.as_deref(), Some("x"));
    }

    #[test]
    fn bad_settings_name_the_field() {
        let c = cfg(r#"{"rules":[{"when":"sometimes"}]}"#);
        assert_eq!(c.validate().expect_err("bad").0, "rules[0].when");
        let c = cfg(r#"{"objects":["Account) RETURNING User(Id"]}"#);
        assert_eq!(c.validate().expect_err("bad").0, "objects[0]");
    }

    #[test]
    fn sosl_over_the_configured_objects() {
        let q = sosl("03-1234-5678", "JP", &["Account".into()]).expect("sosl");
        assert_eq!(
            q,
            "FIND {\\+81312345678 OR 0312345678} IN PHONE FIELDS RETURNING Account(Id, Name, Phone)"
        );
        assert_eq!(sosl("anonymous", "JP", &["Account".into()]), None);
    }
}
