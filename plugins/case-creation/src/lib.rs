//! Case creation (SPEC K-1..K-3, seed 001 "コールアクション" examples 1-3).
//!
//! * `queue-entered` of an inbound call (K-1): find the caller's Contact (the tenant's phone
//!   book first, no Salesforce request; else one SOSL search), create a Case (Origin = Phone,
//!   ContactId, SuppliedPhone = the caller, Subject and Description from templates) and keep
//!   its id in plugin state `case:{call-id}`.
//! * `ended` of that call (K-2): update the same Case (Subject, Description with the recording
//!   playback link `{recording_base_url}/monitor_link/{call id}`, or `call.recording-url`
//!   when the PBX gives one, Origin, ContactId). A call that never entered a queue gets no
//!   Case unless `create_without_queue` is set.
//! * Per tenant (K-3): the Case field templates (`create_fields`, `update_fields`) and the
//!   actions run per event, in order (`actions`).
//!
//! Exactly once (H-8, `pbx_salesforce::create_once`): before creating, the plugin writes a
//! pending marker into `case:{call-id}` (when the create was sent, and for how long Salesforce
//! may still commit it); after creating, the Case id. A delivery that finds the Case id does
//! not create; one that finds only the marker (an earlier attempt may have created the Case
//! and died, or timed out while Salesforce still saved it) waits until that window has passed,
//! then looks the Case up by `SuppliedPhone` = the caller and the call id in the Subject (the
//! default Subject carries it), created since the marker, and adopts it. A create Salesforce
//! answered with a failure created nothing: the marker is dropped.
//!
//! Settings (`ctx.config`): the Salesforce keys of [`pbx_salesforce::SalesforceConfig`] and
//!
//! ```json
//! {
//!   "default_country": "JP",
//!   "recording_base_url": "https://s0000.u.biztel.jp:8000",
//!   "origin": "Phone",
//!   "create_fields": {"Subject": "…{CALL_ID}…", "Description": "…"},
//!   "update_fields": {"Subject": "…", "Description": "{RECORDING_URL}"},
//!   "actions": {"queue-entered": ["find_contact", "create_case"], "ended": ["update_case"]},
//!   "create_without_queue": false
//! }
//! ```
//!
//! Template variables: {CALL_ID} (also {ID}, as in the seed), {CALLER}, {CALLEE}, {QUEUE},
//! {AGENT}, {AGENT_NAME}, {DURATION}, {RECORDING_URL}, {CONTACT_ID}, {CONTACT_NAME}, {CASE_ID}.

use std::collections::BTreeMap;

use exports::pbx::plugin::settings_check::CheckItem;
use pbx_plugin_sdk::log::Level;
use pbx_plugin_sdk::{Call, CallEvent, Context, Direction, EventKind, Host, PluginError, WasmHost};
use pbx_salesforce::create_once::Pending;
use pbx_salesforce::matching::{self, Candidate, RecordKind};
use pbx_salesforce::search::{self, PhoneSearchScope};
use pbx_salesforce::verify::{self, Check, Need};
use pbx_salesforce::{Client, SalesforceConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pbx_plugin_sdk::generate!("event-plugin", "../../wit");

/// Default Subject (seed 001 example 3), with the call id so a retried delivery can find
/// the Case it may already have created.
pub const DEFAULT_SUBJECT: &str = "コールセンターへの着信です (通話ID {CALL_ID})";
/// Default Description at queue entry.
pub const DEFAULT_CREATE_DESCRIPTION: &str = "{CALLER} からの着信 (キュー: {QUEUE})";
/// Default Description at hang-up (seed 001 example 3: the recording playback link).
pub const DEFAULT_UPDATE_DESCRIPTION: &str = "{RECORDING_URL}";

/// The event kinds `actions` may name.
pub const EVENT_KINDS: &[&str] = &[
    "dial-started",
    "answered",
    "queue-entered",
    "transferred",
    "ended",
];

/// How long the call -> Case link is kept.
pub const CASE_KEY_TTL_SECS: u32 = 30 * 24 * 3600;

/// The actions a tenant can order per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    FindContact,
    CreateCase,
    UpdateCase,
}

/// The settings; see the module docs.
#[derive(Debug, Clone, Deserialize)]
pub struct CaseConfig {
    #[serde(flatten)]
    pub salesforce: SalesforceConfig,
    #[serde(default = "default_country")]
    pub default_country: String,
    #[serde(default)]
    pub recording_base_url: Option<String>,
    #[serde(default = "default_origin")]
    pub origin: String,
    #[serde(default)]
    pub create_fields: BTreeMap<String, String>,
    #[serde(default)]
    pub update_fields: BTreeMap<String, String>,
    #[serde(default)]
    pub actions: Option<BTreeMap<String, Vec<Action>>>,
    #[serde(default)]
    pub create_without_queue: bool,
    /// An external-id field of Case that holds the call id: Cases are then upserted by it
    /// (exactly once whatever the timing of a crash) instead of created after a pending
    /// marker (docs/adr/0005-create-once.md). The org must have the field.
    #[serde(default)]
    pub case_external_id_field: Option<String>,
}

fn default_country() -> String {
    "JP".into()
}

fn default_origin() -> String {
    "Phone".into()
}

impl CaseConfig {
    /// The actions for an event kind ("queue-entered", "ended", …).
    pub fn actions_for(&self, kind: &str) -> Vec<Action> {
        match &self.actions {
            Some(map) => map.get(kind).cloned().unwrap_or_default(),
            None => match kind {
                "queue-entered" => vec![Action::FindContact, Action::CreateCase],
                "ended" => vec![Action::UpdateCase],
                _ => Vec::new(),
            },
        }
    }

    fn templates(&self, update: bool) -> BTreeMap<String, String> {
        let mut t = BTreeMap::new();
        t.insert("Subject".to_string(), DEFAULT_SUBJECT.to_string());
        t.insert(
            "Description".to_string(),
            if update {
                DEFAULT_UPDATE_DESCRIPTION
            } else {
                DEFAULT_CREATE_DESCRIPTION
            }
            .to_string(),
        );
        let own = if update {
            &self.update_fields
        } else {
            &self.create_fields
        };
        for (k, v) in own {
            t.insert(k.clone(), v.clone());
        }
        t
    }

    /// Checks what serde cannot: event names and field names.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(map) = &self.actions {
            for kind in map.keys() {
                if !EVENT_KINDS.contains(&kind.as_str()) {
                    return Err((
                        format!("actions.{kind}"),
                        format!(
                            "\"{kind}\" is not an event kind (use e.g. \"queue-entered\", \"ended\")"
                        ),
                    ));
                }
            }
        }
        for (name, map) in [
            ("create_fields", &self.create_fields),
            ("update_fields", &self.update_fields),
        ] {
            for f in map.keys() {
                let ok = f.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    return Err((
                        format!("{name}.{f}"),
                        format!("\"{f}\" is not a Case field name"),
                    ));
                }
            }
        }
        if let Some(name) = &self.case_external_id_field {
            pbx_salesforce::create_once::external_id_field("case_external_id_field", name)
                .map_err(|e| ("case_external_id_field".to_string(), e.message))?;
        }
        Ok(())
    }

    /// Every Case field the plugin writes.
    pub fn case_fields(&self) -> Vec<String> {
        let mut v: Vec<String> = [
            "Subject",
            "Description",
            "Origin",
            "ContactId",
            "SuppliedPhone",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for f in self
            .create_fields
            .keys()
            .chain(self.update_fields.keys())
            .chain(self.case_external_id_field.iter())
        {
            if !v.iter().any(|x| x.eq_ignore_ascii_case(f)) {
                v.push(f.clone());
            }
        }
        v
    }
}

/// What the plugin keeps per call (`case:{call-id}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallState {
    #[serde(default)]
    pub case_id: Option<String>,
    /// When a create was started without its result being recorded (ms since the epoch).
    #[serde(default)]
    pub pending_since: Option<i64>,
    /// How long after `pending_since` Salesforce may still commit that create (older states
    /// lack it: looked up at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_settle_ms: Option<i64>,
    #[serde(default)]
    pub contact_searched: bool,
    #[serde(default)]
    pub contact_id: Option<String>,
    #[serde(default)]
    pub contact_name: Option<String>,
    /// The Case was updated at hang-up by this event id.
    #[serde(default)]
    pub updated_by: Option<String>,
}

/// The plugin-state key of a call.
pub fn case_key(call_id: &str) -> String {
    format!("case:{call_id}")
}

/// Replaces `{KEY}` by its value; unknown keys are left as written.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// The recording playback link (K-2).
pub fn recording_url(cfg: &CaseConfig, call: &Call) -> String {
    if let Some(u) = call
        .recording_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
    {
        return u.trim().to_string();
    }
    match cfg.recording_base_url.as_deref().map(str::trim) {
        Some(base) if !base.is_empty() => format!(
            "{}/monitor_link/{}",
            base.trim_end_matches('/'),
            call.call_id
        ),
        _ => String::new(),
    }
}

fn vars(cfg: &CaseConfig, call: &Call, st: &CallState) -> Vec<(&'static str, String)> {
    let agent = call.agent.as_ref();
    vec![
        ("CALL_ID", call.call_id.clone()),
        ("ID", call.call_id.clone()),
        ("CALLER", call.caller.clone()),
        ("CALLEE", call.callee.clone()),
        ("QUEUE", call.queue.clone().unwrap_or_default()),
        (
            "AGENT",
            agent.map(|a| a.extension.clone()).unwrap_or_default(),
        ),
        (
            "AGENT_NAME",
            agent.and_then(|a| a.user_name.clone()).unwrap_or_default(),
        ),
        ("DURATION", call.duration_seconds.to_string()),
        ("RECORDING_URL", recording_url(cfg, call)),
        ("CONTACT_ID", st.contact_id.clone().unwrap_or_default()),
        ("CONTACT_NAME", st.contact_name.clone().unwrap_or_default()),
        ("CASE_ID", st.case_id.clone().unwrap_or_default()),
    ]
}

/// The Case fields to write.
pub fn case_record(cfg: &CaseConfig, call: &Call, st: &CallState, update: bool) -> Value {
    let v = vars(cfg, call, st);
    let mut m = Map::new();
    for (field, template) in cfg.templates(update) {
        m.insert(field, Value::String(render(&template, &v)));
    }
    m.insert("Origin".into(), Value::String(cfg.origin.clone()));
    if let Some(c) = &st.contact_id {
        m.insert("ContactId".into(), Value::String(c.clone()));
    }
    if !update {
        m.insert("SuppliedPhone".into(), Value::String(call.caller.clone()));
    }
    Value::Object(m)
}

fn settings(ctx: &Context) -> Result<CaseConfig, PluginError> {
    let cfg: CaseConfig = pbx_plugin_sdk::config::parse(ctx)?;
    cfg.validate()
        .map_err(|(f, m)| PluginError::config(format!("setting {f}: {m}")))?;
    Ok(cfg)
}

fn fail(host: &impl Host, what: &str, e: impl Into<PluginError>) -> PluginError {
    let pe = e.into().context(what);
    host.log(Level::Error, &pe.message);
    pe
}

struct Run<'a, H: Host> {
    client: &'a Client<&'a H>,
    cfg: &'a CaseConfig,
    event: &'a CallEvent,
    key: String,
    st: CallState,
}

impl<H: Host> Run<'_, H> {
    fn host(&self) -> &H {
        self.client.host()
    }

    fn save(&self) -> Result<(), PluginError> {
        pbx_plugin_sdk::state::set_json_in(
            self.host(),
            &self.key,
            &self.st,
            Some(CASE_KEY_TTL_SECS),
        )
    }

    fn call(&self) -> &Call {
        &self.event.call
    }

    /// K-1: the caller's Contact: phone book, else SOSL.
    fn find_contact(&mut self) -> Result<(), PluginError> {
        if self.st.contact_searched {
            return Ok(());
        }
        let number = self.call().caller.clone();
        let country = self.cfg.default_country.clone();
        let mut found = None;
        if pbx_phone::normalize(&number, &country).is_some() {
            match self.host().contacts_lookup(&number) {
                Ok(entries) => {
                    let candidates: Vec<Candidate> = entries
                        .iter()
                        .filter_map(Candidate::from_phone_book)
                        .filter(|c| c.kind == RecordKind::Contact)
                        .collect();
                    found = matching::choose(&number, &country, None, &candidates)
                        .map(|m| (m, "phone book"));
                }
                Err(e) => self
                    .host()
                    .log(Level::Warn, &format!("phone book look-up failed: {e:?}")),
            }
            if found.is_none() {
                let scope = PhoneSearchScope {
                    contacts: true,
                    accounts: false,
                    leads: false,
                    person_accounts: false,
                };
                if let Some(q) = search::phone_search_sosl(&number, &country, scope) {
                    let records = self
                        .client
                        .search(&q)
                        .map_err(|e| fail(self.host(), "searching the caller's Contact", e))?;
                    let candidates: Vec<Candidate> =
                        records.iter().filter_map(Candidate::from_record).collect();
                    found = matching::choose(&number, &country, None, &candidates)
                        .map(|m| (m, "Salesforce"));
                }
            }
        }
        let call_id = self.call().call_id.clone();
        match found {
            Some((m, source)) => {
                self.host().log(
                    Level::Info,
                    &format!("call {call_id}: {} ({source})", m.reason),
                );
                self.st.contact_id = Some(m.id);
                self.st.contact_name = m.name;
            }
            None => self.host().log(
                Level::Info,
                &format!("call {call_id}: no Contact has the number {number}"),
            ),
        }
        self.st.contact_searched = true;
        self.save()
    }

    /// A Case an earlier attempt created (only asked when a pending marker is present).
    fn earlier_case(&self, since_ms: i64) -> Result<Option<String>, PluginError> {
        let call = self.call();
        let subject = case_record(self.cfg, call, &self.st, false)
            .get("Subject")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let since = chrono_like_iso(since_ms.saturating_sub(60_000));
        let mut soql = format!(
            "SELECT Id FROM Case WHERE SuppliedPhone = '{}' AND CreatedDate >= {since}",
            search::escape_soql(&call.caller)
        );
        if subject.contains(call.call_id.as_str()) {
            let like = search::escape_soql(&call.call_id)
                .replace('%', "\\%")
                .replace('_', "\\_");
            soql.push_str(&format!(" AND Subject LIKE '%{like}%'"));
        }
        soql.push_str(" ORDER BY CreatedDate DESC LIMIT 1");
        let found = self
            .client
            .query::<Value>(&soql)
            .map_err(|e| fail(self.host(), "looking for a Case of an earlier attempt", e))?;
        Ok(found
            .records
            .first()
            .and_then(|r| r.get("Id"))
            .and_then(Value::as_str)
            .map(str::to_string))
    }

    /// K-1: create the Case once.
    fn create_case(&mut self) -> Result<(), PluginError> {
        let call_id = self.call().call_id.clone();
        if let Some(id) = &self.st.case_id {
            self.host().log(
                Level::Info,
                &format!("call {call_id}: Case {id} already exists; not created again"),
            );
            return Ok(());
        }
        if let Some(since) = self.st.pending_since {
            // The earlier create may still be committed by Salesforce: wait until it has
            // surely finished before the look-up, or the look-up misses it and a second Case
            // is created (pbx_salesforce::create_once).
            Pending {
                sent_at_ms: since,
                settle_ms: self.st.pending_settle_ms.unwrap_or(0),
            }
            .wait(self.host().now_ms(), &format!("the Case of call {call_id}"))?;
        }
        if let Some(since) = self.st.pending_since
            && let Some(id) = self.earlier_case(since)?
        {
            self.host().log(
                Level::Info,
                &format!("call {call_id}: Case {id} was created by an earlier attempt"),
            );
            self.st.case_id = Some(id);
            self.st.pending_since = None;
            self.st.pending_settle_ms = None;
            return self.save();
        }
        if let Some(field) = self.cfg.case_external_id_field.clone() {
            return self.upsert_case(&field);
        }
        let pending = Pending::sent_now(self.host().now_ms(), &self.cfg.salesforce);
        self.st.pending_since = Some(pending.sent_at_ms);
        self.st.pending_settle_ms = Some(pending.settle_ms);
        self.save()?;
        let record = case_record(self.cfg, self.call(), &self.st, false);
        let created = self.client.create("Case", &record);
        let id = match created {
            Ok(id) => id,
            Err(e) => {
                if !e.outcome_unknown() {
                    // Answered: no Case was created; the retry needs no wait nor look-up.
                    self.st.pending_since = None;
                    self.st.pending_settle_ms = None;
                    self.save()?;
                }
                return Err(fail(
                    self.host(),
                    "creating the Case",
                    e.of_create(&self.cfg.salesforce),
                ));
            }
        };
        self.st.case_id = Some(id.clone());
        self.st.pending_since = None;
        self.st.pending_settle_ms = None;
        self.save()?;
        self.host().log(
            Level::Info,
            &format!(
                "call {call_id}: Case {id} created{}",
                self.st
                    .contact_id
                    .as_deref()
                    .map(|c| format!(" for Contact {c}"))
                    .unwrap_or_default()
            ),
        );
        Ok(())
    }

    /// K-1 where the org has an external-id field for Cases: upserted by the call id, so a
    /// repeat after a crash updates the Case the first one created.
    fn upsert_case(&mut self, field: &str) -> Result<(), PluginError> {
        let call_id = self.call().call_id.clone();
        let record = case_record(self.cfg, self.call(), &self.st, false);
        let upserted =
            pbx_salesforce::create_once::upsert(self.client, "Case", field, &call_id, &record, &[])
                .map_err(|e| fail(self.host(), "upserting the Case", e))?;
        let Some(id) = upserted else {
            return Err(PluginError::config(format!(
                "case_external_id_field: Salesforce answered the upsert of call {call_id} \
                 without the Case id (API version before v46.0): set api_version to v46.0 or later"
            )));
        };
        self.st.case_id = Some(id.clone());
        self.save()?;
        self.host().log(
            Level::Info,
            &format!("call {call_id}: Case {id} upserted by {field}"),
        );
        Ok(())
    }

    /// K-2: update the Case at hang-up.
    fn update_case(&mut self) -> Result<(), PluginError> {
        let call_id = self.call().call_id.clone();
        if self.st.case_id.is_none() {
            if self.call().queue.is_none() && !self.cfg.create_without_queue {
                self.host().log(
                    Level::Info,
                    &format!("call {call_id}: never entered a queue; no Case"),
                );
                return Ok(());
            }
            // The queue entry was not seen (or produced no Case): create it now.
            self.find_contact()?;
            self.create_case()?;
        }
        let Some(id) = self.st.case_id.clone() else {
            return Ok(());
        };
        let record = case_record(self.cfg, self.call(), &self.st, true);
        self.client
            .update("Case", &id, &record)
            .map_err(|e| fail(self.host(), "updating the Case", e))?;
        self.st.updated_by = Some(self.event.event_id.clone());
        self.save()?;
        self.host().log(
            Level::Info,
            &format!("call {call_id}: Case {id} updated at hang-up"),
        );
        Ok(())
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a SOQL dateTime literal.
fn chrono_like_iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Handles one call event.
pub fn handle_event(host: &impl Host, ctx: &Context, event: &CallEvent) -> Result<(), PluginError> {
    let cfg = settings(ctx)?;
    let call = &event.call;
    if call.direction != Direction::Inbound {
        return Ok(());
    }
    let actions = cfg.actions_for(event.kind.as_str());
    if actions.is_empty() {
        return Ok(());
    }
    if event.kind == EventKind::QueueEntered && call.queue.is_none() && !cfg.create_without_queue {
        return Ok(());
    }
    let key = case_key(&call.call_id);
    let st: CallState = pbx_plugin_sdk::state::get_json_in(host, &key)?.unwrap_or_default();
    if event.kind == EventKind::Ended && st.updated_by.as_deref() == Some(event.event_id.as_str()) {
        return Ok(());
    }
    let client = Client::new(host, cfg.salesforce.clone());
    let mut run = Run {
        client: &client,
        cfg: &cfg,
        event,
        key,
        st,
    };
    let mut result = Ok(());
    for a in actions {
        result = match a {
            Action::FindContact => run.find_contact(),
            Action::CreateCase => run.create_case(),
            Action::UpdateCase => run.update_case(),
        };
        if result.is_err() {
            break;
        }
    }
    client.save_usage();
    result
}

fn item(c: Check) -> CheckItem {
    CheckItem {
        name: c.name,
        ok: c.ok,
        field: c.field,
        message: c.message,
    }
}

/// "Verify settings" (A-4): settings, login, Case (create, edit) and the fields written,
/// Contact (read) and its phone fields, the API usage.
pub fn check(host: &impl Host, ctx: &Context) -> Vec<CheckItem> {
    let cfg = match pbx_plugin_sdk::config::parse::<CaseConfig>(ctx) {
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
    if cfg
        .recording_base_url
        .as_deref()
        .is_some_and(|u| !(u.starts_with("https://") || u.starts_with("http://")))
    {
        items.push(item(Check::fail(
            "recording_base_url",
            Some("recording_base_url"),
            "recording_base_url must be an http(s) URL such as https://s0000.u.biztel.jp:8000",
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
    let fields = cfg.case_fields();
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    let need = Need {
        create: true,
        update: true,
        query: true,
    };
    items.extend(
        verify::object(&client, "Case", need, &fields)
            .into_iter()
            .map(item),
    );
    let need = Need {
        query: true,
        ..Need::default()
    };
    items.extend(
        verify::object(&client, "Contact", need, &["Name", "Phone", "MobilePhone"])
            .into_iter()
            .map(item),
    );
    if let Some(u) = verify::usage(&client) {
        items.push(item(u));
    }
    client.save_usage();
    items
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct CaseCreation;

impl exports::pbx::plugin::event_handler::Guest for CaseCreation {
    fn handle_event(ctx: Context, event: CallEvent) -> Result<(), PluginError> {
        handle_event(&WasmHost, &ctx, &event)
    }
}

impl exports::pbx::plugin::settings_check::Guest for CaseCreation {
    fn check(ctx: Context) -> Vec<CheckItem> {
        check(&WasmHost, &ctx)
    }
}

#[cfg(target_arch = "wasm32")]
export!(CaseCreation);

#[cfg(test)]
mod tests {
    use super::*;
    use pbx_plugin_sdk::testing::sample_event;
    use serde_json::json;

    fn cfg(json: &str) -> CaseConfig {
        pbx_plugin_sdk::config::parse_str(json).expect("config")
    }

    #[test]
    fn iso_dates() {
        assert_eq!(chrono_like_iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(chrono_like_iso(1_704_067_265_000), "2024-01-01T00:01:05Z");
        assert_eq!(chrono_like_iso(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn records_from_templates() {
        let c = cfg(
            r#"{"recording_base_url":"https://s1.u.biztel.jp:8000/","update_fields":{"Priority":"High"}}"#,
        );
        let mut ev = sample_event(EventKind::Ended, Direction::Inbound);
        ev.call.queue = Some("support".into());
        let st = CallState {
            contact_id: Some("003000000000001AAA".into()),
            ..Default::default()
        };
        let created = case_record(&c, &ev.call, &st, false);
        assert_eq!(
            created,
            json!({"Subject": "コールセンターへの着信です (通話ID 1001)", "Description": "03-1234-5678 からの着信 (キュー: support)", "Origin": "Phone", "ContactId": "003000000000001AAA", "SuppliedPhone": "03-1234-5678"})
        );
        let updated = case_record(&c, &ev.call, &st, true);
        assert_eq!(
            updated,
            json!({"Subject": "コールセンターへの着信です (通話ID 1001)", "Description": "https://s1.u.biztel.jp:8000/monitor_link/1001", "Origin": "Phone", "ContactId": "003000000000001AAA", "Priority": "High"})
        );
        ev.call.recording_url = Some("https://rec.example/1001.wav".into());
        assert_eq!(recording_url(&c, &ev.call), "https://rec.example/1001.wav");
    }

    #[test]
    fn actions_default_and_configured() {
        let c = cfg("{}");
        assert_eq!(
            c.actions_for("queue-entered"),
            vec![Action::FindContact, Action::CreateCase]
        );
        assert_eq!(c.actions_for("ended"), vec![Action::UpdateCase]);
        let c = cfg(r#"{"actions":{"ended":["find_contact","update_case"]}}"#);
        assert!(c.actions_for("queue-entered").is_empty());
        let c = cfg(r#"{"actions":{"hangup":["update_case"]}}"#);
        assert_eq!(c.validate().expect_err("bad").0, "actions.hangup");
        let e =
            pbx_plugin_sdk::config::parse_str::<CaseConfig>(r#"{"actions":{"ended":["explode"]}}"#)
                .expect_err("bad");
        assert!(e.field.as_deref().is_some_and(|f| f.starts_with("actions")));
    }
}
