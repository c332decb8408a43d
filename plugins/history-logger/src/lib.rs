//! The call-history logger (SPEC L-1..L-8), first version: after an inbound or outbound call
//! ends, write one Salesforce Task linked to the other party's record.
//!
//! Flow of one `ended` event:
//! 1. read the settings ([`config::LoggerConfig`]);
//! 2. skip internal calls and other events;
//! 3. idempotence: plugin state `task:{call-id}` holds the Task id once written, so a
//!    redelivered event writes nothing (H-8). On a retry without that key (the Task may have
//!    been created just before a crash) the Task is first looked up by `CallObject`;
//! 4. find the record: a click-to-call record id wins; else the tenant's phone book
//!    (`contacts.lookup-by-phone`, no Salesforce call); else one SOSL search (L-1, L-8);
//! 5. create the Task (L-4) and remember its id.
//!
//! Each step writes a line to the tenant's integration log. Failures come back as a
//! `plugin-error` of the kind the host needs (transient / rate-limited / permanent / config).
//!
//! The logic takes `&impl Host`, so the tests below run it natively against `FakeHost`.

pub mod config;
pub mod task;

use std::collections::BTreeMap;

use exports::pbx::plugin::settings_check::CheckItem;
use pbx_plugin_sdk::log::Level;
use pbx_plugin_sdk::state::StateError;
use pbx_plugin_sdk::{
    Call, CallEvent, Context, Direction, EventKind, Host, PluginError, TransferKind, WasmHost,
};
use pbx_salesforce::client::CompositeRequest;
use pbx_salesforce::create_once::{self, Marker, Pending};
use pbx_salesforce::matching::{self, Candidate, Match};
use pbx_salesforce::search::{self, PhoneSearchScope};
use pbx_salesforce::{Client, RecordKind, SfError};
use serde_json::{Value, json};

use crate::config::{LoggerConfig, Timing};
use crate::task::{CallType, Extras};

pbx_plugin_sdk::generate!("batch-event-plugin");

/// How long the call-id -> Task id link is kept: long enough for late memo and transcript
/// updates of the same call (L-6).
pub const TASK_KEY_TTL_SECS: u32 = 90 * 24 * 3600;
/// How long a forwarding target's Salesforce user (or its absence) is cached.
pub const USER_CACHE_TTL_SECS: u32 = 6 * 3600;
/// Unknown numbers per SOSL search in a batch (keeps the search string well under limits).
pub const SOSL_NUMBERS_PER_SEARCH: usize = 20;
/// Records per sObject Collections request.
pub const COLLECTION_SIZE: usize = 200;
/// The longest transcript kept in state for re-rendering the Description.
const TRANSCRIPT_STATE_CHARS: usize = 16_000;

/// The plugin-state key linking a call to its Task: the Task id, or a pending marker
/// ([`pbx_salesforce::create_once::Pending`]) while it is being created (exactly once, H-8).
pub fn task_key(call_id: &str) -> String {
    format!("task:{call_id}")
}

/// Writes the call -> Task link. `Ok(false)`: the tenant's plugin state is full (logged). A
/// full state must not cost a call log: without the link, the Task is looked up by CallObject
/// before every create instead (see [`create_one`]).
fn remember(host: &impl Host, call_id: &str, value: &str) -> Result<bool, PluginError> {
    match host.state_set(&task_key(call_id), value, Some(TASK_KEY_TTL_SECS)) {
        Ok(()) => Ok(true),
        Err(StateError::TooLarge(limit)) => {
            host.log(
                Level::Warn,
                &format!(
                    "call {call_id}: the plugin's state is full ({limit} bytes): the call's Task \
                     is found by CallObject instead of from state (one more Salesforce request)"
                ),
            );
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Marks the call's Task create as sent now (see [`pbx_salesforce::create_once`]). `Ok(false)`: state full.
fn mark_pending(host: &impl Host, cfg: &LoggerConfig, call_id: &str) -> Result<bool, PluginError> {
    remember(
        host,
        call_id,
        &Pending::sent_now(host.now_ms(), &cfg.salesforce).encode(),
    )
}

/// A create that Salesforce answered with a failure created nothing: the marker goes, so the
/// retry neither waits nor looks up. A failure without an answer keeps it.
fn forget_pending_unless_unknown(host: &impl Host, call_id: &str, e: &SfError) {
    if !e.outcome_unknown() {
        let _ = host.state_delete(&task_key(call_id));
    }
}

/// Whether the call's Task may exist without its id in state: waits (a transient error) while
/// an earlier attempt's create may still be committed by Salesforce.
fn must_look_up(host: &impl Host, call_id: &str, marker: &Marker) -> Result<bool, PluginError> {
    match marker {
        Marker::Pending(p) => {
            p.wait(host.now_ms(), &format!("the Task of call {call_id}"))?;
            Ok(true)
        }
        // No marker: no create was sent (the marker is committed before the request leaves,
        // and one answered with a failure drops it), whatever the attempt; a full state
        // looks up right before its create instead (see `create_one`).
        Marker::Absent => Ok(false),
        Marker::Created(_) => Ok(false),
    }
}

/// The Task external-id field when the tenant chose upserts (and the Task goes alone).
fn upsert_field(cfg: &LoggerConfig) -> Result<Option<&str>, PluginError> {
    match cfg.task_external_id_field.as_deref() {
        Some(name) if !cfg.case_link => {
            create_once::external_id_field("task_external_id_field", name).map(Some)
        }
        _ => Ok(None),
    }
}

fn case_key(call_id: &str) -> String {
    format!("case:{call_id}")
}

fn memo_key(call_id: &str) -> String {
    format!("memo:{call_id}")
}

fn transcript_key(call_id: &str) -> String {
    format!("transcript:{call_id}")
}

/// Parses the settings; a bad one is a `config` error naming the field.
fn settings(ctx: &Context) -> Result<LoggerConfig, PluginError> {
    let cfg: LoggerConfig = pbx_plugin_sdk::config::parse(ctx)?;
    upsert_field(&cfg)?;
    Ok(cfg)
}

/// Logs and converts a Salesforce error.
fn fail(host: &impl Host, call_id: &str, what: &str, e: impl Into<PluginError>) -> PluginError {
    let pe = e.into().context(what);
    host.log(Level::Error, &format!("call {call_id}: {}", pe.message));
    pe
}

/// Waits a little before retrying a locked row (a real pause only inside the component).
fn pause(ms: u64) {
    #[cfg(target_arch = "wasm32")]
    std::thread::sleep(std::time::Duration::from_millis(ms));
    #[cfg(not(target_arch = "wasm32"))]
    let _ = ms;
}

/// What one event asks of the logger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing (the reason goes to the log).
    Skip(&'static str),
    /// Create the call's Task of this type, unless it exists.
    Create(CallType),
    /// Update the call's Task (memo, transcript).
    Update,
}

/// Decides what to do with an event (L-3, L-5, L-6).
pub fn plan(cfg: &LoggerConfig, event: &CallEvent) -> Action {
    let call = &event.call;
    if call.direction == Direction::Internal {
        return Action::Skip("internal (extension-to-extension) calls are not logged");
    }
    let Some(kind) = CallType::of(call) else {
        return Action::Skip("not a logged call type");
    };
    let predictive_both = call
        .predictive
        .as_ref()
        .is_some_and(|p| p.answered_by_callee && p.answered_by_agent);
    match (event.kind, cfg.timing) {
        (EventKind::MemoUpdated | EventKind::TranscriptUpdated, _) => Action::Update,
        (EventKind::Ended, Timing::CallEnd) => Action::Create(kind),
        (EventKind::Ended, Timing::CallStart) => {
            if kind == CallType::Voicemail {
                Action::Skip("voicemail is logged only with timing = call_end")
            } else if predictive_both {
                Action::Skip(
                    "a predictive call answered by callee and agent is logged only with timing = call_end",
                )
            } else {
                // Calls never answered (missed, automatic forwarding) are logged at their end;
                // an answered call already has its Task from `answered`.
                Action::Create(kind)
            }
        }
        (EventKind::Answered, Timing::CallStart) => {
            if call.predictive.is_some() {
                Action::Skip("predictive calls are not logged at call start")
            } else {
                Action::Create(kind)
            }
        }
        _ => Action::Skip("event not used with this timing"),
    }
}

/// Handles one call event.
pub fn handle_event(host: &impl Host, ctx: &Context, event: &CallEvent) -> Result<(), PluginError> {
    let cfg = settings(ctx)?;
    let call_id = &event.call.call_id;
    let action = plan(&cfg, event);
    if let Action::Skip(why) = action {
        host.log(
            Level::Debug,
            &format!("call {call_id}: {} not logged: {why}", event.kind.as_str()),
        );
        return Ok(());
    }
    let client = Client::new(host, cfg.salesforce.clone());
    let result = match action {
        Action::Create(kind) => create_one(&client, &cfg, event, kind),
        Action::Update => update_task(&client, &cfg, ctx, event),
        Action::Skip(_) => Ok(()),
    };
    client.save_usage();
    result
}

/// Looks a call's Task up by CallObject (a retry after a crash between create and remember).
fn find_by_call_object(
    client: &Client<&impl Host>,
    call_ids: &[&str],
) -> Result<BTreeMap<String, String>, SfError> {
    let list: Vec<String> = call_ids
        .iter()
        .map(|c| format!("'{}'", search::escape_soql(c)))
        .collect();
    let soql = format!(
        "SELECT Id, CallObject FROM Task WHERE CallObject IN ({}) ORDER BY CreatedDate ASC",
        list.join(", ")
    );
    let found = client.query::<Value>(&soql)?;
    let mut map = BTreeMap::new();
    for r in &found.records {
        if let (Some(id), Some(co)) = (
            r.get("Id").and_then(Value::as_str),
            r.get("CallObject").and_then(Value::as_str),
        ) {
            map.entry(co.to_string()).or_insert_with(|| id.to_string());
        }
    }
    Ok(map)
}

fn create_one(
    client: &Client<&impl Host>,
    cfg: &LoggerConfig,
    event: &CallEvent,
    kind: CallType,
) -> Result<(), PluginError> {
    let host = *client.host();
    let call = &event.call;
    let key = task_key(&call.call_id);
    let marker = Marker::parse(host.state_get(&key)?.as_deref());
    if let Some(existing) = marker.created() {
        host.log(
            Level::Info,
            &format!(
                "call {}: already logged as Task {existing}; nothing to do",
                call.call_id
            ),
        );
        return Ok(());
    }
    // Whether the Task exists: looked up by CallObject (Ok(true): found and logged).
    let look_up = || -> Result<bool, PluginError> {
        let found = find_by_call_object(client, &[&call.call_id])
            .map_err(|e| fail(host, &call.call_id, "looking for an earlier Task", e))?;
        let Some(id) = found.get(&call.call_id) else {
            return Ok(false);
        };
        remember(host, &call.call_id, id)?;
        host.log(
            Level::Info,
            &format!(
                "call {}: Task {id} was already created by an earlier attempt",
                call.call_id
            ),
        );
        Ok(true)
    };
    let looked_up = must_look_up(host, &call.call_id, &marker)?;
    if looked_up && look_up()? {
        return Ok(());
    }
    let number = task::other_party(call);
    let found = match known_match(host, cfg, call) {
        Lookup::Found(m) => Some(m),
        Lookup::NoNumber => None,
        Lookup::Unknown => {
            let records = sosl_search(client, cfg, &[number]).map_err(|e| {
                fail(
                    host,
                    &call.call_id,
                    "searching Salesforce for the caller",
                    e,
                )
            })?;
            choose_from(cfg, number, &records)
        }
    };
    log_match(host, call, found.as_ref());
    let owner = resolve_owner(client, cfg, call, kind)?;
    let x = Extras {
        matched: found.as_ref(),
        memo: &event.memo,
        transcript_text: event.transcript.as_ref().map(|t| t.text.as_str()),
        transcript_summary: event.transcript.as_ref().and_then(|t| t.summary.as_deref()),
    };
    let mut record = task::build_task(call, kind, cfg, &x, owner.as_deref(), host.now_ms());
    if let Some(field) = upsert_field(cfg)? {
        // Idempotent: a repeat updates the Task the first upsert created.
        let upserted = create_once::upsert(
            client,
            "Task",
            field,
            &call.call_id,
            &record,
            TASK_CREATE_ONLY,
        )
        .map_err(|e| fail(host, &call.call_id, "upserting the Task", e))?;
        let id = match upserted {
            Some(id) => id,
            // An update answered 204 (before API v46.0): the id from CallObject.
            None => find_by_call_object(client, &[&call.call_id])
                .map_err(|e| fail(host, &call.call_id, "looking for the upserted Task", e))?
                .remove(&call.call_id)
                .unwrap_or_default(),
        };
        if !id.is_empty() {
            remember(host, &call.call_id, &id)?;
        }
        host.log(
            Level::Info,
            &format!(
                "call {}: Task {id} upserted by {field} ({}); {} Salesforce request(s)",
                call.call_id,
                kind.key(),
                client.request_count()
            ),
        );
        return Ok(());
    }
    // Without the pending marker (state full) a retry after a crash could not know that the
    // Task may exist: look it up right before every create instead.
    if !mark_pending(host, cfg, &call.call_id)? && !looked_up && look_up()? {
        return Ok(());
    }
    let id = if cfg.case_link {
        let (case_id, task_id) =
            create_with_case(client, cfg, call, kind, found.as_ref(), &mut record)?;
        // Only a convenience for later events of the call: never fail the call log on it.
        if let Err(e) = host.state_set(&case_key(&call.call_id), &case_id, Some(TASK_KEY_TTL_SECS))
        {
            host.log(
                Level::Warn,
                &format!("call {}: could not keep the Case id: {e:?}", call.call_id),
            );
        }
        task_id
    } else {
        client.create("Task", &record).map_err(|e| {
            forget_pending_unless_unknown(host, &call.call_id, &e);
            fail(
                host,
                &call.call_id,
                "creating the Task",
                e.of_create(&cfg.salesforce),
            )
        })?
    };
    // The Task exists: a full state only means a later event finds it by CallObject.
    remember(host, &call.call_id, &id)?;
    host.log(
        Level::Info,
        &format!(
            "call {}: Task {id} created ({}); {} Salesforce request(s)",
            call.call_id,
            kind.key(),
            client.request_count()
        ),
    );
    Ok(())
}

/// L-7: one composite request creates the call's Case and its Task linked to it
/// (Task.WhatId = the Case, seed 000 「ケースと紐づけて活動履歴を作成」).
fn create_with_case(
    client: &Client<&impl Host>,
    cfg: &LoggerConfig,
    call: &Call,
    kind: CallType,
    m: Option<&Match>,
    record: &mut Value,
) -> Result<(String, String), PluginError> {
    let host = *client.host();
    let version = client
        .config()
        .version()
        .map_err(|e| fail(host, &call.call_id, "creating the Case", e))?;
    let mut case = serde_json::Map::new();
    case.insert("Subject".into(), record["Subject"].clone());
    case.insert("Description".into(), record["Description"].clone());
    case.insert("Origin".into(), json!("Phone"));
    case.insert("SuppliedPhone".into(), json!(task::other_party(call)));
    if let Some(s) = &cfg.case_status {
        case.insert("Status".into(), json!(s));
    }
    if let Some(owner) = record.get("OwnerId") {
        case.insert("OwnerId".into(), owner.clone());
    }
    if let Some(m) = m {
        match m.kind {
            RecordKind::Contact | RecordKind::PersonAccount => {
                if let Some(who) = &m.who_id {
                    case.insert("ContactId".into(), json!(who));
                }
                if let Some(what) = &m.what_id {
                    case.insert("AccountId".into(), json!(what));
                }
            }
            RecordKind::Account => {
                case.insert("AccountId".into(), json!(m.id));
            }
            _ => {}
        }
        if m.kind == RecordKind::Lead
            && let Some(obj) = record.as_object_mut()
        {
            // A Task whose WhoId is a Lead cannot have a WhatId: the Case link wins.
            obj.remove("WhoId");
            host.log(
                Level::Info,
                &format!(
                    "call {}: matched Lead {} is named in the Case; the Task links the Case only",
                    call.call_id, m.id
                ),
            );
        }
    }
    if let Some(obj) = record.as_object_mut() {
        obj.insert("WhatId".into(), json!("@{case.id}"));
    }
    let requests = [
        CompositeRequest {
            method: "POST".into(),
            url: format!("/services/data/{version}/sobjects/Case"),
            reference_id: "case".into(),
            body: Some(Value::Object(case)),
        },
        CompositeRequest {
            method: "POST".into(),
            url: format!("/services/data/{version}/sobjects/Task"),
            reference_id: "task".into(),
            body: Some(record.clone()),
        },
    ];
    let answers = client.composite(true, &requests).map_err(|e| {
        forget_pending_unless_unknown(host, &call.call_id, &e);
        fail(
            host,
            &call.call_id,
            "creating the Case and the Task",
            e.of_create(&cfg.salesforce),
        )
    })?;
    let id_of = |reference: &str| -> Result<String, PluginError> {
        let r = answers
            .iter()
            .find(|r| r.reference_id == reference)
            .ok_or_else(|| {
                PluginError::transient(format!("composite answer without {reference}"))
            })?;
        let body = r
            .result()
            .map_err(|e| fail(host, &call.call_id, &format!("creating the {reference}"), e))?;
        body.get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| PluginError::transient(format!("{reference} created without an id")))
    };
    let case_id = id_of("case")?;
    let task_id = id_of("task")?;
    host.log(
        Level::Info,
        &format!(
            "call {}: Case {case_id} created ({}) and the Task linked to it",
            call.call_id,
            kind.key()
        ),
    );
    Ok((case_id, task_id))
}

/// L-6: memo or transcript changed: PATCH the same Task.
fn update_task(
    client: &Client<&impl Host>,
    cfg: &LoggerConfig,
    ctx: &Context,
    event: &CallEvent,
) -> Result<(), PluginError> {
    let host = *client.host();
    let call = &event.call;
    let marker = Marker::parse(host.state_get(&task_key(&call.call_id))?.as_deref());
    let id = match marker.created() {
        Some(id) => id.to_string(),
        None => {
            let _ = ctx;
            let found = find_by_call_object(client, &[&call.call_id])
                .map_err(|e| fail(host, &call.call_id, "looking for the call's Task", e))?;
            match found.get(&call.call_id) {
                Some(id) => {
                    remember(host, &call.call_id, id)?;
                    id.clone()
                }
                None => {
                    host.log(
                        Level::Warn,
                        &format!(
                            "call {}: {} but the call has no Task (not logged); nothing to update",
                            call.call_id,
                            event.kind.as_str()
                        ),
                    );
                    return Ok(());
                }
            }
        }
    };
    // What the Task says about memo and transcript: this event's, else the last one kept.
    let memo: Vec<String> = if event.kind == EventKind::MemoUpdated {
        let _ = pbx_plugin_sdk::state::set_json_in(
            host,
            &memo_key(&call.call_id),
            &event.memo,
            Some(TASK_KEY_TTL_SECS),
        );
        event.memo.clone()
    } else {
        pbx_plugin_sdk::state::get_json_in::<Vec<String>>(host, &memo_key(&call.call_id))
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    let transcript: (Option<String>, Option<String>) = match &event.transcript {
        Some(t) if event.kind == EventKind::TranscriptUpdated => {
            let kept = (
                Some(
                    t.text
                        .chars()
                        .take(TRANSCRIPT_STATE_CHARS)
                        .collect::<String>(),
                ),
                t.summary.clone(),
            );
            let _ = pbx_plugin_sdk::state::set_json_in(
                host,
                &transcript_key(&call.call_id),
                &kept,
                Some(TASK_KEY_TTL_SECS),
            );
            (Some(t.text.clone()), t.summary.clone())
        }
        _ => pbx_plugin_sdk::state::get_json_in(host, &transcript_key(&call.call_id))
            .ok()
            .flatten()
            .unwrap_or_default(),
    };
    let kind = CallType::of(call).unwrap_or(CallType::Inbound);
    let x = Extras {
        matched: None,
        memo: &memo,
        transcript_text: transcript.0.as_deref(),
        transcript_summary: transcript.1.as_deref(),
    };
    let (_, description) = task::texts(call, kind, cfg, &x);
    let mut patch = serde_json::Map::new();
    patch.insert("Description".into(), json!(description));
    if let Some(f) = cfg.custom_fields.memo.as_deref().filter(|f| !f.is_empty())
        && event.kind == EventKind::MemoUpdated
    {
        patch.insert(f.to_string(), json!(task::memo_value(&memo)));
    }
    let patch = Value::Object(patch);
    let retries = cfg.lock_retries.unwrap_or(3);
    let mut attempt = 0u8;
    loop {
        match client.update("Task", &id, &patch) {
            Ok(()) => break,
            Err(SfError::LockRow(m)) if attempt < retries => {
                attempt += 1;
                host.log(
                    Level::Warn,
                    &format!(
                        "call {}: Task {id} is locked by another edit (UNABLE_TO_LOCK_ROW); retry {attempt}/{retries}",
                        call.call_id
                    ),
                );
                let _ = m;
                pause(150 * u64::from(attempt));
            }
            Err(SfError::LockRow(m)) => {
                let e = PluginError::transient(format!(
                    "updating Task {id}: still locked after {retries} retries ({m}); the host will retry"
                ))
                .retry_after_ms(2_000);
                host.log(
                    Level::Warn,
                    &format!("call {}: {}", call.call_id, e.message),
                );
                return Err(e);
            }
            Err(e) => return Err(fail(host, &call.call_id, &format!("updating Task {id}"), e)),
        }
    }
    host.log(
        Level::Info,
        &format!(
            "call {}: Task {id} updated ({}); {} Salesforce request(s)",
            call.call_id,
            event.kind.as_str(),
            client.request_count()
        ),
    );
    Ok(())
}

/// The outcome of matching without Salesforce.
#[derive(Debug)]
enum Lookup {
    Found(Match),
    /// No number worth searching (anonymous, an extension).
    NoNumber,
    /// The phone book does not know the number: search Salesforce.
    Unknown,
}

/// Click-to-call, else the tenant's phone book (L-1, L-8: no Salesforce request).
fn known_match(host: &impl Host, cfg: &LoggerConfig, call: &Call) -> Lookup {
    if let Some(id) = call
        .crm_record_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if search::is_salesforce_id(id) {
            return Lookup::Found(matching::click_to_call(id));
        }
        host.log(
            Level::Warn,
            &format!(
                "call {}: click-to-call record id {id:?} is not a Salesforce id; matching by number",
                call.call_id
            ),
        );
    }
    let number = task::other_party(call);
    if pbx_phone::normalize(number, &cfg.default_country).is_none() {
        return Lookup::NoNumber;
    }
    match host.contacts_lookup(number) {
        Ok(entries) => {
            let candidates: Vec<Candidate> = entries
                .iter()
                .filter_map(Candidate::from_phone_book)
                .collect();
            if let Some(m) = matching::choose(number, &cfg.default_country, None, &candidates) {
                return Lookup::Found(Match {
                    reason: format!("{} (phone book)", m.reason),
                    ..m
                });
            }
        }
        // The phone book only saves a search; without it, search Salesforce.
        Err(e) => host.log(Level::Warn, &format!("phone book look-up failed: {e:?}")),
    }
    Lookup::Unknown
}

/// One SOSL search for several numbers: `FIND {a OR b OR …} IN PHONE FIELDS RETURNING …`.
fn sosl_search(
    client: &Client<&impl Host>,
    cfg: &LoggerConfig,
    numbers: &[&str],
) -> Result<Vec<Value>, SfError> {
    let scope = PhoneSearchScope {
        person_accounts: cfg.person_accounts,
        ..Default::default()
    };
    let mut finds = Vec::new();
    let mut returning = None;
    for n in numbers {
        if let Some(q) = search::phone_search_sosl(n, &cfg.default_country, scope)
            && let Some(rest) = q.strip_prefix("FIND {")
            && let Some((terms, tail)) = rest.split_once("} ")
        {
            for t in terms.split(" OR ") {
                if !finds.iter().any(|f: &String| f == t) {
                    finds.push(t.to_string());
                }
            }
            returning.get_or_insert_with(|| tail.to_string());
        }
    }
    let Some(tail) = returning else {
        return Ok(Vec::new());
    };
    client.search(&format!("FIND {{{}}} {tail}", finds.join(" OR ")))
}

fn choose_from(cfg: &LoggerConfig, number: &str, records: &[Value]) -> Option<Match> {
    let candidates: Vec<Candidate> = records.iter().filter_map(Candidate::from_record).collect();
    matching::choose(number, &cfg.default_country, None, &candidates)
}

fn log_match(host: &impl Host, call: &Call, m: Option<&Match>) {
    match m {
        Some(m) => host.log(Level::Info, &format!("call {}: {}", call.call_id, m.reason)),
        None => host.log(
            Level::Info,
            &format!(
                "call {}: no Salesforce record has the number {}; the Task is logged without a link",
                call.call_id,
                task::other_party(call)
            ),
        ),
    }
}

/// OwnerId (L-4): for an automatic forwarding, the user whose Phone is the forwarding target
/// (looked up once, cached in state); otherwise the agent's mapped user. `None`: the
/// integration user (Salesforce's default owner).
fn resolve_owner(
    client: &Client<&impl Host>,
    cfg: &LoggerConfig,
    call: &Call,
    kind: CallType,
) -> Result<Option<String>, PluginError> {
    let host = *client.host();
    if kind == CallType::AutomaticForwarding {
        let target = call
            .transfer
            .as_ref()
            .filter(|t| t.kind == TransferKind::AutomaticForwarding)
            .map(|t| t.target_number.as_str())
            .unwrap_or_default();
        let Some(e164) = pbx_phone::normalize(target, &cfg.default_country) else {
            return Ok(None);
        };
        let key = format!("user-by-phone:{e164}");
        if let Some(v) = host.state_get(&key)? {
            return Ok(Some(v).filter(|v| v != "-"));
        }
        let users = client
            .query_all::<Value>(
                "SELECT Id, Phone FROM User WHERE IsActive = true AND Phone != null",
                2000,
            )
            .map_err(|e| {
                fail(
                    host,
                    &call.call_id,
                    "looking up the forwarding target's user",
                    e,
                )
            })?;
        let found = users.iter().find_map(|u| {
            let phone = u.get("Phone").and_then(Value::as_str)?;
            pbx_phone::same_number(phone, target, &cfg.default_country)
                .then(|| u.get("Id").and_then(Value::as_str).map(str::to_string))
                .flatten()
        });
        // A cache: a full state costs a look-up next time, never the call log.
        if let Err(e) = host.state_set(
            &key,
            found.as_deref().unwrap_or("-"),
            Some(USER_CACHE_TTL_SECS),
        ) {
            host.log(
                Level::Warn,
                &format!("could not cache the user of {target}: {e:?}"),
            );
        }
        host.log(
            Level::Info,
            &match &found {
                Some(id) => format!(
                    "call {}: forwarded to {target}: Task owner is user {id} (Phone matches)",
                    call.call_id
                ),
                None => format!(
                    "call {}: forwarded to {target}: no user has that Phone; the integration user owns the Task",
                    call.call_id
                ),
            },
        );
        return Ok(found);
    }
    Ok(call
        .agent
        .as_ref()
        .and_then(|a| cfg.agent_user(a))
        .map(str::to_string))
}

/// Handles several calls' events (L-8): matches from the phone book, one SOSL for every
/// unknown number, ONE sObject Collections create for every new Task. One result per event.
pub fn handle_events(
    host: &impl Host,
    ctx: &Context,
    events: &[CallEvent],
) -> Vec<Result<(), PluginError>> {
    let cfg = match settings(ctx) {
        Ok(c) => c,
        Err(e) => return events.iter().map(|_| Err(e.clone())).collect(),
    };
    if cfg.case_link || events.len() == 1 {
        // A Case and its Task go together in one composite request per call.
        return events.iter().map(|e| handle_event(host, ctx, e)).collect();
    }
    let upsert = match upsert_field(&cfg) {
        Ok(u) => u,
        Err(e) => return events.iter().map(|_| Err(e.clone())).collect(),
    };
    let client = Client::new(host, cfg.salesforce.clone());
    let mut results: Vec<Result<(), PluginError>> = events.iter().map(|_| Ok(())).collect();
    // (index, kind) of the events that create a Task.
    let mut creates: Vec<(usize, CallType)> = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        match plan(&cfg, ev) {
            Action::Skip(why) => host.log(
                Level::Debug,
                &format!(
                    "call {}: {} not logged: {why}",
                    ev.call.call_id,
                    ev.kind.as_str()
                ),
            ),
            Action::Update => results[i] = update_task(&client, &cfg, ctx, ev),
            Action::Create(kind) => creates.push((i, kind)),
        }
    }
    // Already logged, or possibly created by an earlier attempt.
    let mut todo: Vec<(usize, CallType)> = Vec::new();
    let mut check: Vec<(usize, CallType)> = Vec::new();
    for (i, kind) in creates {
        let call_id = &events[i].call.call_id;
        let marker = match host.state_get(&task_key(call_id)) {
            Ok(v) => Marker::parse(v.as_deref()),
            Err(e) => {
                results[i] = Err(e.into());
                continue;
            }
        };
        if let Some(id) = marker.created() {
            host.log(
                Level::Info,
                &format!("call {call_id}: already logged as Task {id}; nothing to do"),
            );
            continue;
        }
        // A young marker makes only its own call wait: the rest of the batch goes on.
        match must_look_up(host, call_id, &marker) {
            Ok(true) => check.push((i, kind)),
            Ok(false) => todo.push((i, kind)),
            Err(e) => results[i] = Err(e),
        }
    }
    if !check.is_empty() {
        let ids: Vec<&str> = check
            .iter()
            .map(|(i, _)| events[*i].call.call_id.as_str())
            .collect();
        match find_by_call_object(&client, &ids) {
            Ok(found) => {
                for (i, kind) in check {
                    let call_id = &events[i].call.call_id;
                    match found.get(call_id) {
                        Some(id) => {
                            match remember(host, call_id, id) {
                                Ok(_) => host.log(
                                    Level::Info,
                                    &format!(
                                        "call {call_id}: Task {id} was already created by an earlier attempt"
                                    ),
                                ),
                                Err(e) => results[i] = Err(e),
                            }
                        }
                        None => todo.push((i, kind)),
                    }
                }
            }
            Err(e) => {
                let e = fail(host, "batch", "looking for earlier Tasks", e);
                for (i, _) in check {
                    results[i] = Err(e.clone());
                }
            }
        }
    }
    todo.sort_by_key(|(i, _)| *i);
    // Matching: the phone book first; one SOSL for the numbers it does not know.
    let mut matches: Vec<Option<Match>> = Vec::new();
    let mut unknown: Vec<usize> = Vec::new();
    for (n, (i, _)) in todo.iter().enumerate() {
        match known_match(host, &cfg, &events[*i].call) {
            Lookup::Found(m) => matches.push(Some(m)),
            Lookup::NoNumber => matches.push(None),
            Lookup::Unknown => {
                matches.push(None);
                unknown.push(n);
            }
        }
    }
    let mut failed: Vec<bool> = vec![false; todo.len()];
    for chunk in unknown.chunks(SOSL_NUMBERS_PER_SEARCH) {
        let numbers: Vec<&str> = chunk
            .iter()
            .map(|n| task::other_party(&events[todo[*n].0].call))
            .collect();
        match sosl_search(&client, &cfg, &numbers) {
            Ok(records) => {
                for n in chunk {
                    let number = task::other_party(&events[todo[*n].0].call);
                    matches[*n] = choose_from(&cfg, number, &records);
                }
            }
            Err(e) => {
                let e = fail(host, "batch", "searching Salesforce for the callers", e);
                for n in chunk {
                    results[todo[*n].0] = Err(e.clone());
                    failed[*n] = true;
                }
            }
        }
    }
    // The Task records.
    let now = host.now_ms();
    let mut records: Vec<(usize, Value)> = Vec::new();
    let mut unmarked: Vec<(usize, Value)> = Vec::new();
    for (n, (i, kind)) in todo.iter().enumerate() {
        if failed[n] {
            continue;
        }
        let ev = &events[*i];
        log_match(host, &ev.call, matches[n].as_ref());
        let owner = match resolve_owner(&client, &cfg, &ev.call, *kind) {
            Ok(o) => o,
            Err(e) => {
                results[*i] = Err(e);
                continue;
            }
        };
        let x = Extras {
            matched: matches[n].as_ref(),
            memo: &ev.memo,
            transcript_text: ev.transcript.as_ref().map(|t| t.text.as_str()),
            transcript_summary: ev.transcript.as_ref().and_then(|t| t.summary.as_deref()),
        };
        let mut record = task::build_task(&ev.call, *kind, &cfg, &x, owner.as_deref(), now);
        if let Some(o) = record.as_object_mut() {
            o.insert("attributes".into(), json!({"type": "Task"}));
            if let Some(field) = upsert {
                // Upserted by the call id: a repeat needs no marker.
                o.insert(field.into(), json!(ev.call.call_id));
                records.push((*i, record));
                continue;
            }
        }
        match mark_pending(host, &cfg, &ev.call.call_id) {
            Ok(true) => records.push((*i, record)),
            Ok(false) => unmarked.push((*i, record)),
            Err(e) => results[*i] = Err(e),
        }
    }
    // No pending marker (state full): look the Tasks up right before creating them, so that
    // a retry after a crash never creates a second one (see `create_one`).
    if !unmarked.is_empty() {
        let ids: Vec<&str> = unmarked
            .iter()
            .map(|(i, _)| events[*i].call.call_id.as_str())
            .collect();
        match find_by_call_object(&client, &ids) {
            Ok(found) => {
                for (i, record) in unmarked {
                    let call_id = &events[i].call.call_id;
                    match found.get(call_id) {
                        Some(id) => host.log(
                            Level::Info,
                            &format!(
                                "call {call_id}: Task {id} was already created by an earlier attempt"
                            ),
                        ),
                        None => records.push((i, record)),
                    }
                }
                records.sort_by_key(|(i, _)| *i);
            }
            Err(e) => {
                let e = fail(host, "batch", "looking for earlier Tasks", e);
                for (i, _) in unmarked {
                    results[i] = Err(e.clone());
                }
            }
        }
    }
    for chunk in records.chunks(COLLECTION_SIZE) {
        let body: Vec<Value> = chunk.iter().map(|(_, r)| r.clone()).collect();
        let saved = match upsert {
            Some(field) => {
                create_once::collections_upsert(&client, "Task", field, &body, TASK_CREATE_ONLY)
            }
            None => client.collections_create(false, &body),
        };
        match saved {
            Ok(saved) => {
                for (n, (i, _)) in chunk.iter().enumerate() {
                    let call_id = &events[*i].call.call_id;
                    results[*i] = match saved.get(n) {
                        Some(r) if r.success && r.id.is_some() => {
                            let id = r.id.clone().unwrap_or_default();
                            remember(host, call_id, &id).map(|_| ())
                        }
                        Some(r) => {
                            // Answered: this record was not created.
                            let _ = host.state_delete(&task_key(call_id));
                            let e = match r.errors.first() {
                                Some(api) => {
                                    pbx_salesforce::error::from_api_error(400, api.clone())
                                }
                                None => SfError::Protocol {
                                    status: 200,
                                    message: "a Task was not created and Salesforce gave no reason"
                                        .into(),
                                },
                            };
                            Err(fail(host, call_id, "creating the Task", e))
                        }
                        None => Err(PluginError::transient(
                            "Salesforce answered fewer results than Tasks sent",
                        )),
                    };
                }
            }
            Err(e) => {
                for (i, _) in chunk {
                    forget_pending_unless_unknown(host, &events[*i].call.call_id, &e);
                }
                let e = fail(
                    host,
                    "batch",
                    "creating the Tasks",
                    e.of_create(&cfg.salesforce),
                );
                for (i, _) in chunk {
                    results[*i] = Err(e.clone());
                }
            }
        }
    }
    host.log(
        Level::Info,
        &format!(
            "batch of {} event(s): {} Task(s) sent in one collection request; {} Salesforce request(s)",
            events.len(),
            records.len(),
            client.request_count()
        ),
    );
    client.save_usage();
    results
}

/// Task fields that can be set on create only: an upsert that updates leaves them out.
const TASK_CREATE_ONLY: &[&str] = &["TaskSubtype"];

/// The Task fields the logger writes; each must exist and be creatable.
pub const TASK_FIELDS: &[&str] = &[
    "Subject",
    "Description",
    "Status",
    "WhoId",
    "WhatId",
    "OwnerId",
    "TaskSubtype",
    "ActivityDate",
    "CallDurationInSeconds",
    "CallType",
    "CallObject",
];

fn item(name: &str, ok: bool, field: Option<&str>, message: impl Into<String>) -> CheckItem {
    CheckItem {
        name: name.into(),
        ok,
        field: field.map(str::to_string),
        message: message.into(),
    }
}

fn from_check(c: pbx_salesforce::verify::Check) -> CheckItem {
    CheckItem {
        name: c.name,
        ok: c.ok,
        field: c.field,
        message: c.message,
    }
}

/// "Verify settings" (SPEC A-4): settings, login, Task and its fields, the Status value,
/// the agent mapping. Every problem is reported, each naming the setting or field at fault.
pub fn check(host: &impl Host, ctx: &Context) -> Vec<CheckItem> {
    let cfg = match settings(ctx) {
        Ok(c) => c,
        Err(e) => {
            let field = pbx_plugin_sdk::config::parse::<LoggerConfig>(ctx)
                .err()
                .and_then(|e| e.field);
            return vec![item("settings", false, field.as_deref(), e.message)];
        }
    };
    let mut items = Vec::new();
    if pbx_phone::country(&cfg.default_country).is_none() {
        items.push(item(
            "default_country",
            false,
            Some("default_country"),
            format!(
                "\"{}\" is not a supported country code (use an ISO code such as JP or US)",
                cfg.default_country
            ),
        ));
    }
    for (ext, user) in &cfg.agent_users {
        if !(search::is_salesforce_id(user) && user.starts_with("005")) {
            items.push(item(
                "agent_users",
                false,
                Some(&format!("agent_users.{ext}")),
                format!("extension {ext}: \"{user}\" is not a Salesforce user id (005…)"),
            ));
        }
    }
    let client = Client::new(host, cfg.salesforce.clone());
    // The shared login check names the wrong credential (password vs security token vs
    // client id).
    match pbx_salesforce::verify::login(&client) {
        Ok(c) => items.push(from_check(c)),
        Err(c) => {
            items.push(from_check(c));
            return items;
        }
    }
    match client.describe("Task") {
        Ok(d) => {
            items.push(item(
                "Task",
                d.createable,
                (!d.createable).then_some("username"),
                if d.createable {
                    "the integration user can create Tasks".to_string()
                } else {
                    "the integration user cannot create Tasks: grant Create on Task".to_string()
                },
            ));
            for name in TASK_FIELDS {
                let (ok, message) = match d.field(name) {
                    Some(f) if f.createable => (true, format!("Task.{name} is writable")),
                    Some(_) => (
                        false,
                        format!(
                            "Task.{name} is read-only for the integration user: grant edit access"
                        ),
                    ),
                    None => (
                        false,
                        format!(
                            "Task.{name} does not exist or is hidden from the integration user (field-level security)"
                        ),
                    ),
                };
                items.push(item(
                    &format!("Task.{name}"),
                    ok,
                    (!ok).then_some(*name),
                    message,
                ));
            }
            for (setting, name) in cfg.custom_fields.mapped() {
                let (ok, message) = match d.field(name) {
                    Some(f) if f.createable && f.updateable => {
                        (true, format!("Task.{name} ({setting}) is writable"))
                    }
                    Some(_) => (
                        false,
                        format!(
                            "Task.{name} ({setting}) is read-only for the integration user: grant edit access"
                        ),
                    ),
                    None => (
                        false,
                        format!(
                            "Task.{name} ({setting}) does not exist or is hidden from the integration user: create it on Activity or grant field-level access"
                        ),
                    ),
                };
                items.push(item(
                    &format!("Task.{name}"),
                    ok,
                    (!ok).then_some(setting),
                    message,
                ));
            }
            if let Some(name) = cfg.task_external_id_field.as_deref() {
                let setting = "task_external_id_field";
                let (ok, message) = match d.field(name) {
                    Some(f) if f.external_id && f.createable && f.updateable => (
                        true,
                        format!(
                            "Task.{name} ({setting}) is an External ID: Tasks are upserted by the call id"
                        ),
                    ),
                    Some(f) if !f.external_id => (
                        false,
                        format!(
                            "Task.{name} ({setting}) is not an External ID field: mark it External ID and Unique in Setup"
                        ),
                    ),
                    Some(_) => (
                        false,
                        format!(
                            "Task.{name} ({setting}) is read-only for the integration user: grant edit access"
                        ),
                    ),
                    None => (
                        false,
                        format!(
                            "Task.{name} ({setting}) does not exist or is hidden from the integration user: create it on Activity (Text, External ID, Unique) or grant field-level access"
                        ),
                    ),
                };
                items.push(item(
                    &format!("Task.{name}"),
                    ok,
                    (!ok).then_some(setting),
                    message,
                ));
            }
            if let Some(status) = d.field("Status") {
                let values: Vec<&str> = status
                    .picklist_values
                    .iter()
                    .filter(|v| v.active)
                    .map(|v| v.value.as_str())
                    .collect();
                if !values.is_empty() && !values.contains(&cfg.task_status.as_str()) {
                    items.push(item(
                        "task_status",
                        false,
                        Some("task_status"),
                        format!(
                            "\"{}\" is not a Task Status value; use one of: {}",
                            cfg.task_status,
                            values.join(", ")
                        ),
                    ));
                }
            }
        }
        Err(e) => items.push(describe_failure("Task", e)),
    }
    if cfg.case_link {
        match client.describe("Case") {
            Ok(d) => {
                let ok = d.createable;
                items.push(item(
                    "Case",
                    ok,
                    (!ok).then_some("case_link"),
                    if ok {
                        "the integration user can create Cases (case_link)".to_string()
                    } else {
                        "case_link is on but the integration user cannot create Cases: grant Create on Case".to_string()
                    },
                ));
            }
            Err(e) => items.push(describe_failure("Case", e)),
        }
    }
    client.save_usage();
    items
}

fn describe_failure(object: &str, e: SfError) -> CheckItem {
    match e {
        SfError::Forbidden { code, message }
            if code.contains("API_DISABLED") || code.contains("API_CURRENTLY_DISABLED") =>
        {
            item(
                object,
                false,
                Some("username"),
                format!(
                    "the REST API is disabled for this user or org ({code}): enable \"API Enabled\" on the user's profile, or use an edition with API access ({message})"
                ),
            )
        }
        SfError::Forbidden { code, message } | SfError::NotFound { code, message } => item(
            object,
            false,
            Some("username"),
            format!(
                "the integration user cannot use {object} ({code}: {message}): grant access to the object"
            ),
        ),
        e => item(
            object,
            false,
            None,
            format!("cannot describe {object}: {e}"),
        ),
    }
}

/// The export; wasm32 only, because natively the export symbol names do not link.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct HistoryLogger;

impl exports::pbx::plugin::event_handler::Guest for HistoryLogger {
    fn handle_event(ctx: Context, event: CallEvent) -> Result<(), PluginError> {
        handle_event(&WasmHost, &ctx, &event)
    }
}

impl exports::pbx::plugin::event_batch_handler::Guest for HistoryLogger {
    fn handle_events(ctx: Context, events: Vec<CallEvent>) -> Vec<Result<(), PluginError>> {
        handle_events(&WasmHost, &ctx, &events)
    }
}

impl exports::pbx::plugin::settings_check::Guest for HistoryLogger {
    fn check(ctx: Context) -> Vec<CheckItem> {
        check(&WasmHost, &ctx)
    }
}

#[cfg(target_arch = "wasm32")]
export!(HistoryLogger);

#[cfg(test)]
mod tests;
