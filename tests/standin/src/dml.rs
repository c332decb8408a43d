//! Create, update, delete and merge with Salesforce's validation (docs/salesforce-api.md §2c, §3,
//! §5): one implementation for the single-record resources, sObject Collections, composite
//! subrequests and seeding, so that every path reports the same error for the same input.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::errors::ApiError;
use crate::ids;
use crate::org::OrgData;
use crate::schema::{FieldDef, FieldType, ObjectDef};
use crate::store::Record;
use crate::values;

/// Who is writing and how strictly.
#[derive(Clone, Debug)]
pub struct DmlCtx {
    pub user_id: String,
    pub now: DateTime<Utc>,
    /// `Seed`: a record "created in the UI" by a test. Read-only and system fields
    /// (CreatedDate, LastModifiedDate, IsConverted, an explicit Id…) may be set, security
    /// rules are ignored; types, ids and references are still checked.
    pub seed: bool,
}

impl DmlCtx {
    pub fn api(user_id: &str) -> DmlCtx {
        DmlCtx {
            user_id: user_id.to_string(),
            now: Utc::now(),
            seed: false,
        }
    }

    pub fn seed(user_id: &str) -> DmlCtx {
        DmlCtx {
            seed: true,
            ..DmlCtx::api(user_id)
        }
    }
}

fn object_for<'a>(
    data: &'a OrgData,
    sobject: &str,
    ctx: &DmlCtx,
) -> Result<&'a ObjectDef, ApiError> {
    let obj = if ctx.seed {
        data.schema.object(sobject)
    } else {
        data.schema.visible_object(sobject)
    };
    obj.ok_or_else(ApiError::not_found)
}

fn field_for<'a>(
    data: &OrgData,
    obj: &'a ObjectDef,
    name: &str,
    ctx: &DmlCtx,
) -> Result<&'a FieldDef, ApiError> {
    let f = if ctx.seed {
        obj.field(name)
    } else {
        data.schema.visible_field(obj, name)
    };
    f.ok_or_else(|| ApiError::no_such_column(name, &obj.name))
}

fn json_token(v: &Value) -> String {
    match v {
        Value::String(s) => format!("VALUE_STRING value {s}"),
        Value::Number(n) if n.is_f64() => format!("VALUE_NUMBER_FLOAT value {n}"),
        Value::Number(n) => format!("VALUE_NUMBER_INT value {n}"),
        Value::Bool(true) => "VALUE_TRUE value true".to_string(),
        Value::Bool(false) => "VALUE_FALSE value false".to_string(),
        Value::Array(_) => "START_ARRAY value [".to_string(),
        Value::Object(_) => "START_OBJECT value {".to_string(),
        Value::Null => "VALUE_NULL value null".to_string(),
    }
}

fn cannot_deserialize(type_name: &str, v: &Value) -> ApiError {
    ApiError::json_parser(format!(
        "Cannot deserialize instance of {type_name} from {} or request may be missing a required field",
        json_token(v)
    ))
}

/// Converts a JSON value into the stored form for a field (Salesforce's JSON deserialiser
/// step: type errors are JSON_PARSER_ERROR). Empty strings become null, as in Salesforce.
pub fn coerce(f: &FieldDef, v: &Value) -> Result<Value, ApiError> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    match f.ftype {
        t if t.is_textual() => match v {
            Value::String(s) if s.is_empty() => Ok(Value::Null),
            Value::String(s) => Ok(Value::String(s.clone())),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            _ => Err(cannot_deserialize("string", v)),
        },
        FieldType::Boolean => match v {
            Value::Bool(b) => Ok(Value::Bool(*b)),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            _ => Err(cannot_deserialize("boolean", v)),
        },
        FieldType::Int => {
            let n = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            match n {
                Some(n) if n.fract() == 0.0 && n.abs() < 2_147_483_648.0 => {
                    Ok(Value::from(n as i64))
                }
                _ => Err(cannot_deserialize("int", v)),
            }
        }
        FieldType::Double | FieldType::Currency => {
            let n = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            n.and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| cannot_deserialize("double", v))
        }
        FieldType::Date => match v {
            Value::String(s) if s.is_empty() => Ok(Value::Null),
            Value::String(s) => values::parse_date(s)
                .map(|d| Value::String(values::format_date(d)))
                .ok_or_else(|| cannot_deserialize("date", v)),
            _ => Err(cannot_deserialize("date", v)),
        },
        FieldType::DateTime => match v {
            Value::String(s) if s.is_empty() => Ok(Value::Null),
            Value::String(s) => values::normalize_datetime(s)
                .map(Value::String)
                .ok_or_else(|| cannot_deserialize("datetime", v)),
            _ => Err(cannot_deserialize("datetime", v)),
        },
        _ => Err(cannot_deserialize("string", v)),
    }
}

fn not_writable(fields: &[String]) -> ApiError {
    ApiError::new(
        400,
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        format!(
            "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
            fields.join(", ")
        ),
    )
    .with_fields(fields.iter().cloned())
}

/// Checks one (already coerced, non-null) value against its field definition.
fn validate_value(
    data: &OrgData,
    obj: &str,
    f: &FieldDef,
    v: &Value,
    ctx: &DmlCtx,
) -> Result<Value, ApiError> {
    let Some(s) = v.as_str() else {
        return Ok(v.clone());
    };
    if f.ftype.is_textual() && f.length > 0 && s.chars().count() > f.length as usize {
        return Err(ApiError::new(
            400,
            "STRING_TOO_LONG",
            format!(
                "{}: data value too large: {s} (max length={})",
                f.label, f.length
            ),
        )
        .with_fields([f.name.as_str()]));
    }
    match f.ftype {
        FieldType::Picklist if f.restricted && !f.picklist.iter().any(|p| p == s) => {
            Err(ApiError::bad_restricted_picklist(&f.label, s, &f.name))
        }
        FieldType::MultiPicklist if f.restricted => {
            for part in s.split(';') {
                if !f.picklist.iter().any(|p| p == part) {
                    return Err(ApiError::bad_restricted_picklist(&f.label, part, &f.name));
                }
            }
            Ok(v.clone())
        }
        FieldType::Email => {
            let ok = s
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.ends_with('.'))
                && !s.contains(char::is_whitespace);
            if ok {
                Ok(v.clone())
            } else {
                Err(ApiError::new(
                    400,
                    "INVALID_EMAIL_ADDRESS",
                    format!("{}: invalid email address: {s}", f.label),
                )
                .with_fields([f.name.as_str()]))
            }
        }
        FieldType::Reference => validate_reference(data, obj, f, s, ctx).map(Value::String),
        _ => Ok(v.clone()),
    }
}

/// Lookup fields: a well-formed id (MALFORMED_ID), of an allowed object
/// (FIELD_INTEGRITY_EXCEPTION), of a record that exists and is live.
fn validate_reference(
    data: &OrgData,
    obj: &str,
    f: &FieldDef,
    s: &str,
    ctx: &DmlCtx,
) -> Result<String, ApiError> {
    let incorrect = |code: &str| {
        ApiError::new(
            400,
            code,
            format!("{}: id value of incorrect type: {s}", f.label),
        )
        .with_fields([f.name.as_str()])
    };
    let id = ids::normalize(s).ok_or_else(|| incorrect("MALFORMED_ID"))?;
    let targets = data.schema.reference_targets(f);
    let target = data
        .schema
        .object_by_prefix(ids::prefix(&id))
        .filter(|o| targets.iter().any(|t| t == &o.name))
        .ok_or_else(|| incorrect("FIELD_INTEGRITY_EXCEPTION"))?;
    if !ctx.seed && data.schema.visible_object(&target.name).is_none() {
        return Err(ApiError::new(
            400,
            "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY",
            "insufficient access rights on cross-reference id",
        )
        .with_fields(Vec::<String>::new()));
    }
    match data.store.get(&id) {
        None => Err(ApiError::new(
            400,
            "INVALID_CROSS_REFERENCE_KEY",
            "invalid cross reference id",
        )
        .with_fields(Vec::<String>::new())),
        Some(r) if r.is_deleted() => {
            Err(ApiError::new(400, "ENTITY_IS_DELETED", "entity is deleted")
                .with_fields([f.name.as_str()]))
        }
        Some(r) => {
            if f.name == "OwnerId" && r.get("IsActive") == &Value::Bool(false) {
                return Err(ApiError::new(
                    400,
                    "INACTIVE_OWNER_OR_USER",
                    format!(
                        "operation performed with inactive user [{id}] as owner of {}",
                        obj.to_ascii_lowercase()
                    ),
                )
                .with_fields(Vec::<String>::new()));
            }
            Ok(id)
        }
    }
}

/// Reads a request body into (field, coerced value) pairs: the "deserialisation" stage.
/// Unknown fields, `Id` in the body, non-writable fields and type errors are reported here.
/// Fields of a body with their coerced values, and an explicit `Id` (seeding only).
type ReadBody<'a> = (Vec<(&'a FieldDef, Value)>, Option<String>);

fn read_body<'a>(
    data: &OrgData,
    obj: &'a ObjectDef,
    body: &Map<String, Value>,
    ctx: &DmlCtx,
    creating: bool,
) -> Result<ReadBody<'a>, ApiError> {
    let mut out = Vec::new();
    let mut explicit_id = None;
    let mut read_only = Vec::new();
    for (key, raw) in body {
        if key == "attributes" {
            continue;
        }
        if key.eq_ignore_ascii_case("Id") {
            if ctx.seed && creating {
                explicit_id = raw.as_str().map(str::to_string);
                continue;
            }
            return Err(ApiError::invalid_field(
                "The Id field should not be specified in the sobject data.",
            ));
        }
        let f = field_for(data, obj, key, ctx)?;
        let writable = if creating { f.createable } else { f.updateable };
        if !writable && !ctx.seed {
            read_only.push(f.name.clone());
            continue;
        }
        out.push((f, coerce(f, raw)?));
    }
    if !read_only.is_empty() {
        return Err(not_writable(&read_only));
    }
    Ok((out, explicit_id))
}

fn derive_name(rec: &mut BTreeMap<String, Value>) {
    let first = rec.get("FirstName").and_then(Value::as_str).unwrap_or("");
    let last = rec.get("LastName").and_then(Value::as_str).unwrap_or("");
    let name = match (first.is_empty(), last.is_empty()) {
        (true, _) => last.to_string(),
        (false, true) => first.to_string(),
        (false, false) => format!("{first} {last}"),
    };
    if name.is_empty() {
        rec.remove("Name");
    } else {
        rec.insert("Name".to_string(), Value::String(name));
    }
}

/// Fields Salesforce computes from others; run after every create and update.
fn derive(data: &OrgData, obj: &ObjectDef, rec: &mut BTreeMap<String, Value>, ctx: &DmlCtx) {
    match obj.name.as_str() {
        "Contact" | "Lead" | "User" => derive_name(rec),
        "Account" if rec.get("IsPersonAccount") == Some(&Value::Bool(true)) => derive_name(rec),
        "Task" => {
            let closed = rec.get("Status").and_then(Value::as_str) == Some("Completed");
            rec.insert("IsClosed".into(), Value::Bool(closed));
            let high = rec.get("Priority").and_then(Value::as_str) == Some("High");
            rec.insert("IsHighPriority".into(), Value::Bool(high));
            if closed && !rec.contains_key("CompletedDateTime") {
                rec.insert(
                    "CompletedDateTime".into(),
                    Value::String(values::format_datetime(ctx.now)),
                );
            }
            // AccountId: the WhatId if it is an account, else the account of the contact.
            let what = rec
                .get("WhatId")
                .and_then(Value::as_str)
                .map(str::to_string);
            let who = rec.get("WhoId").and_then(Value::as_str).map(str::to_string);
            let account = what.filter(|w| w.starts_with("001")).or_else(|| {
                who.filter(|w| w.starts_with("003"))
                    .and_then(|w| data.store.get(&w))
                    .and_then(|c| c.get_str("AccountId").map(str::to_string))
            });
            match account {
                Some(a) => rec.insert("AccountId".into(), Value::String(a)),
                None => rec.remove("AccountId"),
            };
        }
        "Case" => {
            let closed = rec.get("Status").and_then(Value::as_str) == Some("Closed");
            let was_closed = rec.get("IsClosed") == Some(&Value::Bool(true));
            rec.insert("IsClosed".into(), Value::Bool(closed));
            if closed && !was_closed {
                rec.insert(
                    "ClosedDate".into(),
                    Value::String(values::format_datetime(ctx.now)),
                );
            } else if !closed {
                rec.remove("ClosedDate");
            }
        }
        _ => {}
    }
}

/// Creates a record; returns its id.
pub fn create(
    data: &mut OrgData,
    sobject: &str,
    body: &Map<String, Value>,
    ctx: &DmlCtx,
) -> Result<String, ApiError> {
    let obj = object_for(data, sobject, ctx)?.clone();
    if !obj.createable && !ctx.seed {
        return Err(ApiError::new(
            400,
            "INVALID_TYPE_FOR_OPERATION",
            format!("entity type cannot be inserted: {}", obj.name),
        ));
    }
    let (pairs, explicit_id) = read_body(data, &obj, body, ctx, true)?;

    let id = match explicit_id {
        Some(raw) => {
            let id = ids::normalize(&raw)
                .filter(|id| ids::prefix(id) == obj.key_prefix)
                .ok_or_else(|| ApiError::malformed_record_id(&raw))?;
            if data.store.contains(&id) {
                return Err(ApiError::new(
                    400,
                    "DUPLICATE_VALUE",
                    format!("duplicate value found: Id duplicates value on record with id: {id}"),
                ));
            }
            id
        }
        None => ids::generate(&obj.key_prefix),
    };

    // Required fields are checked on what the caller sent (after defaults).
    let given: Vec<&str> = pairs
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(f, _)| f.name.as_str())
        .collect();
    let person_account = obj.name == "Account"
        && obj.field("IsPersonAccount").is_some()
        && given.contains(&"LastName");
    let mut missing: Vec<String> = obj
        .fields
        .iter()
        .filter(|f| f.required && f.default_value.is_none() && !given.contains(&f.name.as_str()))
        .map(|f| f.name.clone())
        .collect();
    if obj.name == "Account" && !person_account && !given.contains(&"Name") {
        missing.push("Name".to_string());
    }
    if !missing.is_empty() && !ctx.seed {
        return Err(ApiError::required_fields_missing(&missing));
    }

    let mut fields = BTreeMap::new();
    for (f, v) in &pairs {
        if v.is_null() {
            continue;
        }
        let v = validate_value(data, &obj.name, f, v, ctx)?;
        fields.insert(f.name.clone(), v);
    }
    for f in &obj.fields {
        if let Some(d) = &f.default_value
            && !fields.contains_key(&f.name)
        {
            let v = match f.ftype {
                FieldType::Boolean => Value::Bool(d == "true"),
                _ => Value::String(d.clone()),
            };
            fields.insert(f.name.clone(), v);
        }
    }
    let now = values::format_datetime(ctx.now);
    fields.insert("Id".into(), Value::String(id.clone()));
    fields.insert("IsDeleted".into(), Value::Bool(false));
    if obj.field("OwnerId").is_some() && !fields.contains_key("OwnerId") {
        fields.insert("OwnerId".into(), Value::String(ctx.user_id.clone()));
    }
    for (k, v) in [
        ("CreatedDate", now.clone()),
        ("CreatedById", ctx.user_id.clone()),
        ("LastModifiedById", ctx.user_id.clone()),
    ] {
        fields.entry(k.to_string()).or_insert(Value::String(v));
    }
    let modified = fields
        .get("LastModifiedDate")
        .cloned()
        .unwrap_or(Value::String(now));
    fields.insert("LastModifiedDate".into(), modified.clone());
    fields.entry("SystemModstamp".into()).or_insert(modified);
    if person_account {
        fields.insert("IsPersonAccount".into(), Value::Bool(true));
    }
    if obj.custom && !fields.contains_key("Name") {
        // A custom object's text Name defaults to the record id.
        fields.insert("Name".into(), Value::String(id.clone()));
    }
    if obj.name == "Case" {
        data.store.case_number += 1;
        fields.insert(
            "CaseNumber".into(),
            Value::String(format!("{:08}", 1000 + data.store.case_number)),
        );
    }
    derive(data, &obj, &mut fields, ctx);
    data.store.insert(Record {
        id: id.clone(),
        sobject: obj.name.clone(),
        fields,
        deleted_at: None,
    });
    Ok(id)
}

/// Validates an id taken from a URL for an object: MALFORMED_ID unless well-formed and of
/// this object's key prefix (HEROKU `update-malformed-id.json`).
pub fn record_id_for(obj: &ObjectDef, raw: &str) -> Result<String, ApiError> {
    ids::normalize(raw)
        .filter(|id| ids::prefix(id) == obj.key_prefix)
        .ok_or_else(|| ApiError::malformed_record_id(raw))
}

fn live_record<'a>(data: &'a OrgData, id: &str) -> Result<&'a Record, ApiError> {
    match data.store.get(id) {
        None => Err(ApiError::not_found()),
        Some(r) if r.is_deleted() => Err(ApiError::entity_is_deleted()),
        Some(r) => Ok(r),
    }
}

/// Updates a record (PATCH semantics: only the given fields change).
pub fn update(
    data: &mut OrgData,
    sobject: &str,
    raw_id: &str,
    body: &Map<String, Value>,
    ctx: &DmlCtx,
) -> Result<(), ApiError> {
    let obj = object_for(data, sobject, ctx)?.clone();
    if !obj.updateable && !ctx.seed {
        return Err(ApiError::new(
            400,
            "INVALID_TYPE_FOR_OPERATION",
            format!("entity type cannot be updated: {}", obj.name),
        ));
    }
    // An `Id` equal to the URL's is harmless (clients echo records back); another is not.
    let url_id = ids::normalize(raw_id);
    let mut body = body.clone();
    if let Some(key) = body.keys().find(|k| k.eq_ignore_ascii_case("Id")).cloned() {
        let same = body
            .get(&key)
            .and_then(Value::as_str)
            .and_then(ids::normalize)
            .is_some_and(|v| Some(v) == url_id);
        if same {
            body.remove(&key);
        }
    }
    // The body is read before the id is looked at: HEROKU `update-invalid-field.json` sends a
    // malformed id with an unknown field and gets INVALID_FIELD, not MALFORMED_ID.
    let (pairs, _) = read_body(data, &obj, &body, ctx, false)?;
    let id = record_id_for(&obj, raw_id)?;
    let existing = live_record(data, &id)?.fields.clone();
    let mut fields = existing;
    let mut missing = Vec::new();
    for (f, v) in &pairs {
        if v.is_null() {
            if !f.nillable && !ctx.seed {
                missing.push(f.name.clone());
            }
            fields.remove(&f.name);
            continue;
        }
        let v = validate_value(data, &obj.name, f, v, ctx)?;
        fields.insert(f.name.clone(), v);
    }
    if !missing.is_empty() {
        return Err(ApiError::required_fields_missing(&missing));
    }
    let explicit_modified = ctx.seed && pairs.iter().any(|(f, _)| f.name == "LastModifiedDate");
    if !explicit_modified {
        let now = Value::String(values::format_datetime(ctx.now));
        fields.insert("LastModifiedDate".into(), now.clone());
        fields.insert("SystemModstamp".into(), now);
    } else if let Some(v) = fields.get("LastModifiedDate").cloned() {
        fields.insert("SystemModstamp".into(), v);
    }
    fields.insert(
        "LastModifiedById".into(),
        Value::String(ctx.user_id.clone()),
    );
    derive(data, &obj, &mut fields, ctx);
    if let Some(r) = data.store.get_mut(&id) {
        r.fields = fields;
    }
    Ok(())
}

fn mark_deleted(data: &mut OrgData, id: &str, ctx: &DmlCtx) {
    let now = values::format_datetime(ctx.now);
    if let Some(r) = data.store.get_mut(id) {
        r.deleted_at = Some(ctx.now);
        r.fields.insert("IsDeleted".into(), Value::Bool(true));
        r.fields.insert("SystemModstamp".into(), Value::String(now));
    }
}

/// Deletes a record and what Salesforce deletes with it: an account's contacts and cases,
/// and the activities of every deleted record.
pub fn delete(
    data: &mut OrgData,
    sobject: &str,
    raw_id: &str,
    ctx: &DmlCtx,
) -> Result<(), ApiError> {
    let obj = object_for(data, sobject, ctx)?.clone();
    let id = record_id_for(&obj, raw_id)?;
    live_record(data, &id)?;
    if !obj.deletable && !ctx.seed {
        return Err(ApiError::new(
            400,
            "INVALID_TYPE_FOR_OPERATION",
            format!("entity type cannot be deleted: {}", obj.name),
        ));
    }
    let mut doomed = vec![id.clone()];
    if obj.name == "Account" {
        doomed.extend(data.store.ids_where("Contact", "AccountId", &id));
        doomed.extend(data.store.ids_where("Case", "AccountId", &id));
    }
    let mut tasks = Vec::new();
    for d in &doomed {
        tasks.extend(data.store.ids_where("Task", "WhoId", d));
        tasks.extend(data.store.ids_where("Task", "WhatId", d));
    }
    doomed.extend(tasks);
    doomed.dedup();
    for d in doomed {
        mark_deleted(data, &d, ctx);
    }
    Ok(())
}

/// Merges `loser` into `master`: children of the loser move to the master, the loser is
/// deleted with `MasterRecordId` set (what the replication and queryAll resources show).
pub fn merge(
    data: &mut OrgData,
    sobject: &str,
    master: &str,
    loser: &str,
    ctx: &DmlCtx,
) -> Result<(), ApiError> {
    let obj = object_for(data, sobject, ctx)?.clone();
    let master = record_id_for(&obj, master)?;
    let loser = record_id_for(&obj, loser)?;
    live_record(data, &master)?;
    live_record(data, &loser)?;
    let now = Value::String(values::format_datetime(ctx.now));
    let moves: &[(&str, &str)] = &[
        ("Contact", "AccountId"),
        ("Case", "AccountId"),
        ("Case", "ContactId"),
        ("Task", "WhoId"),
        ("Task", "WhatId"),
    ];
    for (child, field) in moves {
        for cid in data.store.ids_where(child, field, &loser) {
            if let Some(r) = data.store.get_mut(&cid) {
                r.fields
                    .insert((*field).to_string(), Value::String(master.clone()));
                r.fields.insert("LastModifiedDate".into(), now.clone());
                r.fields.insert("SystemModstamp".into(), now.clone());
            }
        }
    }
    if let Some(r) = data.store.get_mut(&loser) {
        r.fields
            .insert("MasterRecordId".into(), Value::String(master.clone()));
    }
    mark_deleted(data, &loser, ctx);
    Ok(())
}
