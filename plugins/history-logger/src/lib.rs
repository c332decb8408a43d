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

use exports::pbx::plugin::settings_check::CheckItem;
use pbx_plugin_sdk::log::Level;
use pbx_plugin_sdk::{CallEvent, Context, EventKind, Host, PluginError, WasmHost};
use pbx_salesforce::matching::{self, Candidate, Match};
use pbx_salesforce::search::{self, PhoneSearchScope};
use pbx_salesforce::{Client, SfError};
use serde_json::Value;

use crate::config::LoggerConfig;
use crate::task::CallType;

pbx_plugin_sdk::generate!("event-plugin");

/// How long the call-id -> Task id link is kept: long enough for late memo and transcript
/// updates of the same call (L-6).
pub const TASK_KEY_TTL_SECS: u32 = 90 * 24 * 3600;

/// The plugin-state key linking a call to its Task.
pub fn task_key(call_id: &str) -> String {
    format!("task:{call_id}")
}

/// Parses the settings; a bad one is a `config` error naming the field.
fn settings(ctx: &Context) -> Result<LoggerConfig, PluginError> {
    Ok(pbx_plugin_sdk::config::parse(ctx)?)
}

/// Logs and converts a Salesforce error.
fn fail(host: &impl Host, what: &str, e: SfError) -> PluginError {
    let pe = PluginError::from(e).context(what);
    host.log(Level::Error, &pe.message);
    pe
}

/// Handles one call event.
pub fn handle_event(host: &impl Host, ctx: &Context, event: &CallEvent) -> Result<(), PluginError> {
    let cfg = settings(ctx)?;
    let call = &event.call;
    if event.kind != EventKind::Ended {
        return Ok(());
    }
    let Some(kind) = CallType::of(call) else {
        host.log(
            Level::Debug,
            &format!("call {}: internal call, not logged", call.call_id),
        );
        return Ok(());
    };
    let key = task_key(&call.call_id);
    if let Some(existing) = host.state_get(&key)? {
        host.log(
            Level::Info,
            &format!(
                "call {}: already logged as Task {existing}; nothing to do",
                call.call_id
            ),
        );
        return Ok(());
    }
    let client = Client::new(host, cfg.salesforce.clone());
    let result = log_call(&client, &cfg, ctx, event, kind, &key);
    client.save_usage();
    result
}

fn log_call(
    client: &Client<&impl Host>,
    cfg: &LoggerConfig,
    ctx: &Context,
    event: &CallEvent,
    kind: CallType,
    key: &str,
) -> Result<(), PluginError> {
    let host = *client.host();
    let call = &event.call;
    if ctx.attempt > 0 {
        // A previous attempt may have created the Task and died before remembering it.
        let soql = format!(
            "SELECT Id FROM Task WHERE CallObject = '{}' ORDER BY CreatedDate DESC LIMIT 1",
            search::escape_soql(&call.call_id)
        );
        let found = client
            .query::<Value>(&soql)
            .map_err(|e| fail(host, "looking for an earlier Task", e))?;
        if let Some(id) = found
            .records
            .first()
            .and_then(|r| r.get("Id"))
            .and_then(Value::as_str)
        {
            host.state_set(key, id, Some(TASK_KEY_TTL_SECS))?;
            host.log(
                Level::Info,
                &format!(
                    "call {}: Task {id} was already created by an earlier attempt",
                    call.call_id
                ),
            );
            return Ok(());
        }
    }
    let number = task::other_party(call);
    let found = find_record(client, cfg, call.crm_record_id.as_deref(), number)?;
    match &found {
        Some(m) => host.log(Level::Info, &format!("call {}: {}", call.call_id, m.reason)),
        None => host.log(
            Level::Info,
            &format!(
                "call {}: no Salesforce record has the number {number}; the Task is logged without a link",
                call.call_id
            ),
        ),
    }
    let record = task::build_task(call, kind, found.as_ref(), cfg, event.occurred_at);
    let id = client
        .create("Task", &record)
        .map_err(|e| fail(host, "creating the Task", e))?;
    host.state_set(key, &id, Some(TASK_KEY_TTL_SECS))?;
    host.log(
        Level::Info,
        &format!(
            "call {}: Task {id} created ({}); {} Salesforce request(s)",
            call.call_id,
            kind.subject(cfg.language),
            client.request_count()
        ),
    );
    Ok(())
}

/// Finds the record for the call (L-1): click-to-call id, else phone book, else SOSL.
fn find_record(
    client: &Client<&impl Host>,
    cfg: &LoggerConfig,
    click_to_call: Option<&str>,
    number: &str,
) -> Result<Option<Match>, PluginError> {
    let host = *client.host();
    if let Some(id) = click_to_call.map(str::trim).filter(|s| !s.is_empty()) {
        if search::is_salesforce_id(id) {
            return Ok(Some(matching::click_to_call(id)));
        }
        host.log(
            Level::Warn,
            &format!("click-to-call record id {id:?} is not a Salesforce id; matching by number"),
        );
    }
    if pbx_phone::normalize(number, &cfg.default_country).is_none() {
        return Ok(None);
    }
    match host.contacts_lookup(number) {
        Ok(entries) => {
            let candidates: Vec<Candidate> = entries
                .iter()
                .filter_map(Candidate::from_phone_book)
                .collect();
            if let Some(m) = matching::choose(number, &cfg.default_country, None, &candidates) {
                return Ok(Some(Match {
                    reason: format!("{} (phone book)", m.reason),
                    ..m
                }));
            }
        }
        // The phone book only saves a search; without it, search Salesforce.
        Err(e) => host.log(Level::Warn, &format!("phone book look-up failed: {e:?}")),
    }
    let scope = PhoneSearchScope {
        person_accounts: cfg.person_accounts,
        ..Default::default()
    };
    let Some(sosl) = search::phone_search_sosl(number, &cfg.default_country, scope) else {
        return Ok(None);
    };
    let records = client
        .search(&sosl)
        .map_err(|e| fail(host, "searching Salesforce for the caller", e))?;
    let candidates: Vec<Candidate> = records.iter().filter_map(Candidate::from_record).collect();
    Ok(matching::choose(
        number,
        &cfg.default_country,
        None,
        &candidates,
    ))
}

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
    client.forget_session();
    match client.login() {
        Ok(s) => items.push(item(
            "login",
            true,
            None,
            format!(
                "logged in to {} ({})",
                s.instance_url,
                cfg.salesforce.auth.as_str()
            ),
        )),
        Err(SfError::Auth { error, description }) => {
            let (field, message) = pbx_salesforce::auth::explain_auth_failure(
                cfg.salesforce.auth,
                &error,
                &description,
            );
            items.push(item("login", false, Some(&field), message));
            return items;
        }
        Err(SfError::Config { field, message }) => {
            items.push(item(
                "login",
                false,
                Some(&field),
                format!("{field} {message}"),
            ));
            return items;
        }
        Err(e) => {
            items.push(item("login", false, None, format!("login failed: {e}")));
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
        Err(e) => items.push(item(
            "Task",
            false,
            None,
            format!("cannot describe Task: {e}"),
        )),
    }
    client.save_usage();
    items
}

/// The export; wasm32 only, because natively the export symbol names do not link.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct HistoryLogger;

impl exports::pbx::plugin::event_handler::Guest for HistoryLogger {
    fn handle_event(ctx: Context, event: CallEvent) -> Result<(), PluginError> {
        handle_event(&WasmHost, &ctx, &event)
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
