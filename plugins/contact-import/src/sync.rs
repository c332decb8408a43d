//! The `sync` schedule (SPEC C-4): first import, then incremental sync with deletions.
//!
//! Per object, plugin state `sync:{Object}` holds the progress ([`ObjectState`]):
//! * the watermark: the (`LastModifiedDate`, `Id`) of the last record stored. Every query reads
//!   `ORDER BY LastModifiedDate, Id` after it, so a run that stops (error, time or page
//!   budget) continues exactly after the last page it stored, without relying on a query
//!   locator that expires. It only advances once a page is in the phone book;
//! * whether the first import is complete (until then the tenant's `cutoff_days` applies and
//!   converted Leads are filtered out in the query);
//! * where the next `deleted/` window starts (Salesforce's `latestDateCovered`).
//!
//! A run that runs out of budget stores its progress and asks the host's scheduler to run it
//! again shortly (`run-again-after-ms`); the host's scheduler
//! calls the schedule again at the next interval and the import continues from the watermark.

use pbx_plugin_sdk::bindings::pbx::plugin::contacts::{Contact, ContactsError};
use pbx_plugin_sdk::log::Level;
use pbx_plugin_sdk::{Context, Host, PluginError};
use pbx_salesforce::{Client, QueryResult, SfError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::ImportConfig;
use crate::source::{Mapped, Source, map_record, parse_sf_datetime, sources};

/// Entries per `contacts.upsert` (the host's limit).
pub const UPSERT_BATCH: usize = 2_000;
/// Salesforce keeps deletions for about 15 days and refuses windows starting more than 30 days
/// ago; a window is never started earlier than this.
const MAX_DELETED_WINDOW_MS: i64 = 29 * 24 * 3600 * 1000;

/// Progress of one object, in plugin state `sync:{Object}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectState {
    /// The settings this progress belongs to; other settings start over.
    pub fingerprint: String,
    /// The first import has read every record.
    #[serde(default)]
    pub initial_done: bool,
    /// Watermark: `LastModifiedDate` (SOQL literal) and `Id` of the last stored record.
    #[serde(default)]
    pub lmd: Option<String>,
    #[serde(default)]
    pub last_id: Option<String>,
    /// Start of the next `deleted/` window.
    #[serde(default)]
    pub deleted_from: Option<String>,
    /// First import totals so far.
    #[serde(default)]
    pub imported: u64,
    #[serde(default)]
    pub skipped: u64,
}

/// The state key of an object.
pub fn state_key(object: &str) -> String {
    format!("sync:{object}")
}

/// A dateTime as a SOQL literal / replication parameter: `2024-05-01T10:00:00.000Z`.
pub fn literal(d: chrono::DateTime<chrono::Utc>) -> String {
    d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn from_ms(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// 10000 -> "10,000".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fingerprint(cfg: &ImportConfig, src: &Source) -> String {
    format!(
        "{}|cutoff={:?}|b={}|p={}|pf={}",
        cfg.salesforce.session_fingerprint(),
        cfg.cutoff_days,
        src.business,
        src.person,
        src.person_fields
    )
}

/// Counts of one object in one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub imported: u64,
    pub skipped: u64,
    pub converted: u64,
    pub deleted: u64,
}

/// What one run may still spend.
struct Budget {
    deadline_ms: i64,
    pages_left: u32,
}

impl Budget {
    fn exhausted(&self, now_ms: i64) -> bool {
        self.pages_left == 0 || now_ms >= self.deadline_ms
    }
}

fn contacts_error(e: ContactsError, what: &str) -> PluginError {
    match e {
        ContactsError::Denied(m) => PluginError::config(format!(
            "{what}: {m} (grant contacts = \"read-write\" in plugins.toml)"
        )),
        ContactsError::Unavailable(m) => PluginError::transient(format!("{what}: {m}")),
        ContactsError::Invalid(m) | ContactsError::NotFound(m) => {
            PluginError::permanent(format!("{what}: {m}"))
        }
        ContactsError::TooLarge(n) => {
            PluginError::permanent(format!("{what}: too large (limit {n})"))
        }
    }
}

/// Removes a phone-book entry; true if it was there.
fn remove(host: &impl Host, external_id: &str) -> Result<bool, PluginError> {
    match host.contacts_delete(external_id) {
        Ok(()) => Ok(true),
        Err(ContactsError::NotFound(_)) => Ok(false),
        Err(e) => Err(contacts_error(e, "removing a phone-book entry")),
    }
}

/// Upserts in batches of ≤ 2,000; an entry the host rejects as invalid is skipped with a
/// warning (the others are stored). Returns how many were stored.
fn upsert(host: &impl Host, entries: &[Contact]) -> Result<u64, PluginError> {
    let mut stored = 0u64;
    for chunk in entries.chunks(UPSERT_BATCH) {
        match host.contacts_upsert(chunk) {
            Ok(n) => stored += u64::from(n),
            Err(ContactsError::Invalid(_)) => {
                for e in chunk {
                    match host.contacts_upsert(std::slice::from_ref(e)) {
                        Ok(n) => stored += u64::from(n),
                        Err(ContactsError::Invalid(m)) => {
                            host.log(Level::Warn, &format!("{} not imported: {m}", e.external_id))
                        }
                        Err(e) => return Err(contacts_error(e, "writing the phone book")),
                    }
                }
            }
            Err(e) => return Err(contacts_error(e, "writing the phone book")),
        }
    }
    Ok(stored)
}

/// The SOQL of the next page run for a source.
pub fn soql(src: &Source, st: &ObjectState, cutoff: Option<&str>) -> String {
    let first_import = !st.initial_done;
    let mut w = src.base_filters(first_import);
    if first_import && let Some(c) = cutoff {
        w.push(format!("LastModifiedDate >= {c}"));
    }
    if let (Some(lmd), Some(id)) = (&st.lmd, &st.last_id) {
        let id = pbx_salesforce::search::escape_soql(id);
        w.push(format!(
            "(LastModifiedDate > {lmd} OR (LastModifiedDate = {lmd} AND Id > '{id}'))"
        ));
    }
    let mut q = format!(
        "SELECT {} FROM {}",
        src.select_fields().join(", "),
        src.object.name()
    );
    if !w.is_empty() {
        q.push_str(" WHERE ");
        q.push_str(&w.join(" AND "));
    }
    q.push_str(" ORDER BY LastModifiedDate ASC, Id ASC");
    q
}

/// Runs the `sync` schedule once. `Ok(true)` when every object is up to date, `Ok(false)`
/// when the run budget ran out first (the progress is stored; the next run continues).
pub fn run(host: &impl Host, ctx: &Context, cfg: &ImportConfig) -> Result<bool, PluginError> {
    let sel = cfg
        .selection()
        .map_err(|(field, m)| PluginError::config(format!("setting `{field}`: {m}")))?;
    let started = host.now_ms();
    let mut budget = Budget {
        deadline_ms: started.saturating_add(i64::try_from(cfg.run_budget_ms).unwrap_or(i64::MAX)),
        pages_left: cfg.max_pages_per_run.max(1),
    };
    let client = Client::new(host, cfg.salesforce.clone());
    let mut unfinished = Vec::new();
    let mut result = Ok(());
    for src in sources(cfg, &sel) {
        match sync_source(&client, cfg, &src, &mut budget) {
            Ok(true) => {}
            Ok(false) => unfinished.push(src.object.name()),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    client.save_usage();
    if result.is_ok() && !unfinished.is_empty() {
        host.log(
            Level::Info,
            &format!(
                "run budget used up ({} ms, {} pages); {} continue in a moment from the stored progress",
                cfg.run_budget_ms,
                cfg.max_pages_per_run,
                unfinished.join(", ")
            ),
        );
    }
    host.log(
        Level::Debug,
        &format!(
            "sync {} finished in {} ms with {} Salesforce requests",
            ctx.invocation_id,
            host.now_ms() - started,
            client.request_count()
        ),
    );
    result.map(|()| unfinished.is_empty())
}

fn save(host: &impl Host, key: &str, st: &ObjectState) -> Result<(), PluginError> {
    pbx_plugin_sdk::state::set_json_in(host, key, st, None)
        .map_err(|e| e.context("storing the sync progress"))
}

fn progress_line(name: &str, first_import: bool, c: &Counts, st: &ObjectState) -> String {
    let mut line = format!(
        "{name}: {} imported, {} skipped without a Name",
        thousands(c.imported),
        thousands(c.skipped)
    );
    if c.converted > 0 {
        line.push_str(&format!(
            ", {} converted Leads not imported",
            thousands(c.converted)
        ));
    }
    line.push_str(&format!("; {} deleted", thousands(c.deleted)));
    if first_import && st.initial_done {
        line.push_str(&format!(
            " (first import complete: {} imported, {} skipped)",
            thousands(st.imported),
            thousands(st.skipped)
        ));
    } else if first_import {
        line.push_str(&format!(
            " (first import in progress: {} imported so far)",
            thousands(st.imported)
        ));
    }
    line
}

/// Syncs one object; Ok(true) when it is up to date, Ok(false) when the budget ran out.
fn sync_source<H: Host>(
    client: &Client<H>,
    cfg: &ImportConfig,
    src: &Source,
    budget: &mut Budget,
) -> Result<bool, PluginError> {
    let host = client.host();
    let name = src.object.name();
    if budget.exhausted(host.now_ms()) {
        return Ok(false);
    }
    let key = state_key(name);
    let fp = fingerprint(cfg, src);
    let now = host.now_ms();
    let mut st = match pbx_plugin_sdk::state::get_json_in::<ObjectState>(host, &key)? {
        Some(s) if s.fingerprint == fp => s,
        previous => {
            if previous.is_some() {
                host.log(
                    Level::Info,
                    &format!("{name}: settings changed; starting a new first import"),
                );
            }
            ObjectState {
                fingerprint: fp,
                // Deletions from now on matter; one minute back covers a host clock ahead of
                // Salesforce's.
                deleted_from: Some(literal(from_ms(now - 60_000))),
                ..ObjectState::default()
            }
        }
    };
    let first_import = !st.initial_done;
    let cutoff = cfg
        .cutoff_days
        .map(|d| literal(from_ms(now - i64::from(d) * 24 * 3600 * 1000)));
    let mut counts = Counts::default();
    let fail = |st: &ObjectState, counts: &Counts, e: SfError, what: &str| {
        let pe = PluginError::from(e).context(format!("{name}: {what}"));
        host.log(
            Level::Error,
            &format!(
                "{}; stopped here, the next run continues after the last stored page",
                progress_line(name, first_import, counts, st)
            ),
        );
        host.log(Level::Error, &pe.message);
        pe
    };

    // Changed and new records, page by page.
    let mut complete = false;
    let q = soql(src, &st, cutoff.as_deref());
    budget.pages_left = budget.pages_left.saturating_sub(1);
    let mut page: QueryResult<Value> = client
        .query(&q)
        .map_err(|e| fail(&st, &counts, e, "querying changed records"))?;
    loop {
        let mut entries = Vec::with_capacity(page.records.len());
        let mut removals = Vec::new();
        let mut skipped = 0u64;
        for rec in &page.records {
            match map_record(src, rec) {
                Ok(Mapped::Entry(c)) => entries.push(c),
                Ok(Mapped::NoName(ids)) => {
                    skipped += 1;
                    if !first_import {
                        removals.extend(ids);
                    }
                }
                Ok(Mapped::Converted(id)) => {
                    counts.converted += 1;
                    if !first_import {
                        removals.push(id);
                    }
                }
                Ok(Mapped::Unwanted) => {}
                Err(m) => host.log(Level::Warn, &format!("{name}: {m}; ignored")),
            }
        }
        let stored = upsert(host, &entries)?;
        for id in &removals {
            if remove(host, id)? {
                counts.deleted += 1;
            }
        }
        counts.imported += stored;
        counts.skipped += skipped;
        if first_import {
            st.imported += stored;
            st.skipped += skipped;
        }
        // The watermark moves only now that the page is stored.
        if let Some(last) = page.records.last() {
            let lmd = last
                .get("LastModifiedDate")
                .and_then(Value::as_str)
                .and_then(parse_sf_datetime);
            let id = last.get("Id").and_then(Value::as_str);
            if let (Some(lmd), Some(id)) = (lmd, id) {
                st.lmd = Some(literal(lmd));
                st.last_id = Some(id.to_string());
            }
        }
        let next = if page.done {
            None
        } else {
            page.next_records_url.take()
        };
        let Some(next) = next else {
            complete = true;
            if first_import {
                st.initial_done = true;
            }
            save(host, &key, &st)?;
            break;
        };
        save(host, &key, &st)?;
        if budget.exhausted(host.now_ms()) {
            break;
        }
        budget.pages_left = budget.pages_left.saturating_sub(1);
        page = client
            .query_more(&next)
            .map_err(|e| fail(&st, &counts, e, "reading the next page"))?;
    }

    // Deleted and merged records (getDeleted), once the records are read. Not in the run
    // that completes the first import: its window (from the import's start) is read next run.
    if complete && first_import {
        // nothing to do
    } else if complete && !budget.exhausted(host.now_ms()) {
        counts.deleted += deletions(client, src, &mut st).inspect_err(|e| {
            host.log(
                Level::Error,
                &format!(
                    "{}; {}",
                    progress_line(name, first_import, &counts, &st),
                    e.message
                ),
            )
        })?;
        save(host, &key, &st)?;
    } else {
        complete = false;
    }
    host.log(
        Level::Info,
        &progress_line(name, first_import, &counts, &st),
    );
    Ok(complete)
}

/// Removes what Salesforce deleted or merged since the last window; advances the window to
/// `latestDateCovered`. Returns how many phone-book entries were removed.
fn deletions<H: Host>(
    client: &Client<H>,
    src: &Source,
    st: &mut ObjectState,
) -> Result<u64, PluginError> {
    let host = client.host();
    let now = from_ms(host.now_ms());
    let earliest = from_ms(host.now_ms() - MAX_DELETED_WINDOW_MS);
    let mut start = st
        .deleted_from
        .as_deref()
        .and_then(parse_sf_datetime)
        .unwrap_or(now);
    if start < earliest {
        host.log(
            Level::Warn,
            &format!(
                "{}: the last sync is more than 29 days old; deletions before {} cannot be read from Salesforce",
                src.object.name(),
                literal(earliest)
            ),
        );
        start = earliest;
    }
    // Salesforce ignores seconds and covers only whole past minutes.
    let minute = |d: chrono::DateTime<chrono::Utc>| d.timestamp() / 60;
    if minute(now) <= minute(start) {
        return Ok(0);
    }
    let res = client
        .get_deleted(src.object.name(), &literal(start), &literal(now))
        .map_err(|e| {
            PluginError::from(e).context(format!("{}: reading deleted records", src.object.name()))
        })?;
    let mut removed = 0u64;
    for d in &res.deleted_records {
        for ext in src.external_ids(&d.id) {
            if remove(host, &ext)? {
                removed += 1;
            }
        }
    }
    st.deleted_from = Some(
        res.latest_date_covered
            .as_deref()
            .and_then(parse_sf_datetime)
            .map(literal)
            .unwrap_or_else(|| literal(now)),
    );
    Ok(removed)
}
