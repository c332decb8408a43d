//! `composite` (docs/salesforce-api.md §2e) and sObject Collections `composite/sobjects` (§2f),
//! including upsert by external id (`composite/sobjects/{Type}/{ExtField}`, v46.0+).
//! Both count as one API call (the caller charges once). allOrNone rollback restores a
//! snapshot of the store taken under the org lock, which is held for the whole request.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::dml::{self, DmlCtx};
use crate::errors::ApiError;
use crate::faults::{FaultKind, Scope};
use crate::ids;
use crate::json::J;
use crate::org::{Org, OrgData};
use crate::rest::{self, RestCtx, RestRequest, RestResponse, Version, json_body};
use crate::sobjects::{record_json, save_result};

const MAX_SUBREQUESTS: usize = 25;
const MAX_QUERIES_AND_COLLECTIONS: usize = 5;
const MAX_COLLECTION_RECORDS: usize = 200;
const MAX_CHUNKS: usize = 10;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "INVALID_INPUT", message)
}

fn processing_halted(message: &str) -> J {
    J::Arr(vec![J::obj([
        ("errorCode", J::str("PROCESSING_HALTED")),
        ("message", J::str(message)),
    ])])
}

const ROLLED_BACK: &str =
    "The transaction was rolled back since another operation in the same transaction failed.";

struct Sub {
    method: String,
    url: String,
    reference_id: String,
    body: Option<Value>,
}

/// Which resource a subrequest URL names, or why it may not be used in composite.
fn classify(url: &str) -> Result<&'static str, ApiError> {
    let path = url.split('?').next().unwrap_or("");
    let rest = path.strip_prefix("/services/data/").ok_or_else(|| {
        invalid(format!(
            "The subrequest url must start with /services/data/: {url}"
        ))
    })?;
    let segs = rest::segments(rest);
    match segs.get(1).map(String::as_str) {
        Some("sobjects") if segs.len() > 2 => Ok("sobject"),
        Some("query" | "queryAll") => Ok("query"),
        Some("composite") if segs.get(2).map(String::as_str) == Some("sobjects") => {
            Ok("collection")
        }
        // [UNCONFIRMED wording] Search (SOSL), limits, describeGlobal and composite itself are
        // not among the resources composite accepts (§2e), and the whole request is refused.
        _ => Err(invalid(format!(
            "The composite resource does not support this subrequest url: {url}. Supported: sObject, query, queryAll and sObject Collections resources."
        ))),
    }
}

/// Replaces `@{ref.path}` in a string with the referenced value. `Err` names the reference
/// that could not be resolved.
fn substitute(s: &str, results: &HashMap<String, Option<J>>) -> Result<Value, String> {
    let whole = s.starts_with("@{") && s.ends_with('}') && s.matches("@{").count() == 1;
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("@{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let expr = &after[..end];
        let value = resolve_reference(expr, results)?;
        if whole {
            return Ok(value.to_value());
        }
        match value {
            J::Str(v) => out.push_str(&v),
            J::Null => {}
            other => out.push_str(&other.to_json()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

/// `refId.field`, `refId.records[0].Id`.
fn resolve_reference(expr: &str, results: &HashMap<String, Option<J>>) -> Result<J, String> {
    let (reference, path) = expr.split_once('.').unwrap_or((expr, ""));
    let (reference, first_index) = match reference.split_once('[') {
        Some((r, idx)) => (r, Some(idx.trim_end_matches(']'))),
        None => (reference, None),
    };
    let Some(Some(body)) = results.get(reference) else {
        return Err(reference.to_string());
    };
    let mut cur = body.clone();
    let mut steps: Vec<String> = Vec::new();
    if let Some(i) = first_index {
        steps.push(format!("[{i}]"));
    }
    for part in path.split('.').filter(|p| !p.is_empty()) {
        match part.split_once('[') {
            Some((name, idx)) => {
                steps.push(name.to_string());
                for i in idx.split('[') {
                    steps.push(format!("[{}", i.trim_end_matches(']')) + "]");
                }
            }
            None => steps.push(part.to_string()),
        }
    }
    for step in steps {
        let next = if let Some(i) = step.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            let i: usize = i.parse().map_err(|_| reference.to_string())?;
            match &cur {
                J::Arr(items) => items.get(i).cloned(),
                _ => None,
            }
        } else if step.is_empty() {
            Some(cur.clone())
        } else {
            cur.get(&step).cloned()
        };
        cur = next.ok_or_else(|| reference.to_string())?;
    }
    Ok(cur)
}

fn substitute_value(v: &Value, results: &HashMap<String, Option<J>>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) if s.contains("@{") => substitute(s, results)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| substitute_value(i, results))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), substitute_value(v, results)?)))
                .collect::<Result<Map<_, _>, String>>()?,
        ),
        other => other.clone(),
    })
}

fn subresponse(resp: &RestResponse, reference_id: &str) -> J {
    let headers = match &resp.location {
        Some(l) => J::obj([("Location", J::str(l))]),
        None => J::Obj(Vec::new()),
    };
    J::obj([
        ("body", resp.body.clone().unwrap_or(J::Null)),
        ("httpHeaders", headers),
        ("httpStatusCode", J::uint(u64::from(resp.status))),
        ("referenceId", J::str(reference_id)),
    ])
}

fn parse_subrequests(body: &Value) -> Result<(bool, Vec<Sub>), ApiError> {
    let obj = body.as_object().ok_or_else(|| {
        ApiError::json_parser("Cannot deserialize instance of CompositeRequest from START_ARRAY")
    })?;
    let all_or_none = obj
        .get("allOrNone")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let list = obj
        .get("compositeRequest")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("Required field is missing: compositeRequest"))?;
    if list.len() > MAX_SUBREQUESTS {
        return Err(ApiError::new(
            400,
            "LIMIT_EXCEEDED",
            format!(
                "A composite request can contain at most {MAX_SUBREQUESTS} subrequests; this one has {}",
                list.len()
            ),
        ));
    }
    let mut subs = Vec::new();
    let mut heavy = 0;
    for item in list {
        let method = item.get("method").and_then(Value::as_str).unwrap_or("");
        if !["GET", "POST", "PATCH", "PUT", "DELETE"].contains(&method) {
            return Err(invalid(format!(
                "Invalid HTTP method for subrequest: '{method}'"
            )));
        }
        let url = item
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("Required field is missing: url"))?;
        let reference_id = item
            .get("referenceId")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("Required field is missing: referenceId"))?;
        if reference_id.is_empty()
            || !reference_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || !reference_id.starts_with(|c: char| c.is_ascii_alphabetic())
        {
            return Err(invalid(format!("Invalid referenceId: {reference_id}")));
        }
        if subs.iter().any(|s: &Sub| s.reference_id == reference_id) {
            return Err(invalid(format!(
                "Duplicate referenceId provided in the request: {reference_id}"
            )));
        }
        if let Some(h) = item.get("httpHeaders").and_then(Value::as_object) {
            for k in h.keys() {
                if ["accept", "authorization", "content-type"]
                    .contains(&k.to_ascii_lowercase().as_str())
                {
                    return Err(invalid(format!(
                        "Invalid httpHeaders: {k} is not allowed in a subrequest"
                    )));
                }
            }
        }
        if matches!(classify(url)?, "query" | "collection") {
            heavy += 1;
        }
        subs.push(Sub {
            method: method.to_string(),
            url: url.to_string(),
            reference_id: reference_id.to_string(),
            body: item.get("body").cloned(),
        });
    }
    if heavy > MAX_QUERIES_AND_COLLECTIONS {
        return Err(ApiError::new(
            400,
            "LIMIT_EXCEEDED",
            format!(
                "A composite request can contain at most {MAX_QUERIES_AND_COLLECTIONS} query or sObject Collections subrequests"
            ),
        ));
    }
    Ok((all_or_none, subs))
}

fn run_sub(
    org: &Org,
    data: &mut OrgData,
    ctx: &RestCtx,
    sub: &Sub,
    url: &str,
    body: Option<&Value>,
) -> RestResponse {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let rest_path = path.strip_prefix("/services/data/").unwrap_or("");
    let mut segs = rest::segments(rest_path);
    let version = match segs.first().map(|v| rest::parse_version(v)) {
        Some(Version::Ok(v)) => v,
        Some(Version::Retired(v)) => return RestResponse::error(&rest::gone(&v)),
        _ => return RestResponse::error(&ApiError::not_found()),
    };
    segs.remove(0);
    if org.take_fault(&sub.method, url, Scope::SubRequest) == Some(FaultKind::UnableToLockRow) {
        let id = segs
            .iter()
            .rev()
            .find(|s| ids::normalize(s).is_some())
            .cloned();
        return RestResponse::error(&ApiError::unable_to_lock_row(
            &id.unwrap_or_else(|| ids::generate("001")),
        ));
    }
    let body_bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let req = RestRequest {
        method: &sub.method,
        segments: segs,
        query: url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        body: &body_bytes,
    };
    let sub_ctx = RestCtx {
        version,
        ..ctx.clone()
    };
    rest::dispatch(org, data, &sub_ctx, &req)
}

/// `POST composite`.
pub fn composite(org: &Org, data: &mut OrgData, ctx: &RestCtx, body: &[u8]) -> RestResponse {
    let parsed = json_body(body).and_then(|b| parse_subrequests(&b));
    let (all_or_none, subs) = match parsed {
        Ok(x) => x,
        Err(e) => return RestResponse::error(&e),
    };
    let snapshot = all_or_none.then(|| data.store.clone());
    let mut results: HashMap<String, Option<J>> = HashMap::new();
    let mut responses: Vec<(RestResponse, String)> = Vec::new();
    let mut first_failure: Option<usize> = None;
    for (i, sub) in subs.iter().enumerate() {
        if all_or_none && first_failure.is_some() {
            let halted = RestResponse {
                status: 400,
                body: Some(processing_halted(ROLLED_BACK)),
                location: None,
            };
            responses.push((halted, sub.reference_id.clone()));
            continue;
        }
        let resolved = substitute(&sub.url, &results).and_then(|u| {
            let body = sub
                .body
                .as_ref()
                .map(|b| substitute_value(b, &results))
                .transpose()?;
            Ok((u, body))
        });
        let resp = match resolved {
            Ok((Value::String(url), body)) => run_sub(org, data, ctx, sub, &url, body.as_ref()),
            Ok((_, _)) => RestResponse::error(&ApiError::not_found()),
            Err(reference) => RestResponse {
                status: 400,
                body: Some(processing_halted(&format!(
                    "Invalid reference specified. No value for {reference} found in {reference}. Provided referenceId ('{reference}') refers to a subrequest that failed or was not run."
                ))),
                location: None,
            },
        };
        let ok = resp.status < 400;
        results.insert(
            sub.reference_id.clone(),
            ok.then(|| resp.body.clone().unwrap_or(J::Null)),
        );
        if !ok && first_failure.is_none() {
            first_failure = Some(i);
        }
        responses.push((resp, sub.reference_id.clone()));
    }
    if let (Some(failed), Some(snap)) = (first_failure, snapshot) {
        data.store = snap;
        for (i, (resp, _)) in responses.iter_mut().enumerate() {
            if i != failed {
                *resp = RestResponse {
                    status: 400,
                    body: Some(processing_halted(ROLLED_BACK)),
                    location: None,
                };
            }
        }
    }
    RestResponse::ok(J::obj([(
        "compositeResponse",
        J::Arr(responses.iter().map(|(r, id)| subresponse(r, id)).collect()),
    )]))
}

// ---- sObject Collections -------------------------------------------------------------------

fn failure(id: Option<&str>, e: &ApiError) -> J {
    let mut pairs = Vec::new();
    if let Some(id) = id {
        pairs.push(("id".to_string(), J::str(id)));
    }
    pairs.push(("success".to_string(), J::Bool(false)));
    pairs.push(("errors".to_string(), J::Arr(vec![e.to_save_result_error()])));
    J::Obj(pairs)
}

fn rolled_back(id: Option<&str>) -> J {
    failure(
        id,
        &ApiError::new(
            400,
            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
            "Record rolled back because not all records were valid and the request was using AllOrNone header",
        )
        .with_fields(Vec::<String>::new()),
    )
}

fn collection_error(message: impl Into<String>) -> RestResponse {
    RestResponse::error(&ApiError::new(400, "EXCEEDED_ID_LIMIT", message))
}

fn lock_row_fault(org: &Org, method: &str, ctx: &RestCtx, ty: &str, id: &str) -> bool {
    let path = format!("/services/data/v{}/sobjects/{ty}/{id}", ctx.version);
    org.take_fault(method, &path, Scope::SubRequest) == Some(FaultKind::UnableToLockRow)
}

/// `POST` / `PATCH` / `DELETE composite/sobjects`.
pub fn collections(
    org: &Org,
    data: &mut OrgData,
    ctx: &RestCtx,
    req: &RestRequest<'_>,
) -> RestResponse {
    if req.method == "DELETE" {
        return delete_collection(org, data, ctx, req);
    }
    let body = match json_body(req.body) {
        Ok(b) => b,
        Err(e) => return RestResponse::error(&e),
    };
    let all_or_none = body
        .get("allOrNone")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let Some(records) = body.get("records").and_then(Value::as_array) else {
        return RestResponse::error(&invalid("Required field is missing: records"));
    };
    if records.len() > MAX_COLLECTION_RECORDS {
        // [UNCONFIRMED wording] the SOAP API's text for the same limit.
        return collection_error(format!(
            "record limit reached. cannot submit more than {MAX_COLLECTION_RECORDS} records into this call"
        ));
    }
    let types: Vec<Option<String>> = records
        .iter()
        .map(|r| {
            r.get("attributes")
                .and_then(|a| a.get("type"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    let chunks = types.windows(2).filter(|w| w[0] != w[1]).count() + usize::from(!types.is_empty());
    if chunks > MAX_CHUNKS {
        return RestResponse::error(&ApiError::new(
            400,
            "EXCEEDED_MAX_TYPES_LIMIT",
            "Cannot have more than 10 chunks in a single operation. Please rearrange the data to reduce chunking.",
        ));
    }
    let snapshot = all_or_none.then(|| data.store.clone());
    let dctx = DmlCtx::api(&ctx.user_id);
    let creating = req.method == "POST";
    let mut outcomes: Vec<(Option<String>, Result<String, ApiError>)> = Vec::new();
    for (rec, ty) in records.iter().zip(&types) {
        let Some(fields) = rec.as_object() else {
            outcomes.push((
                None,
                Err(ApiError::json_parser("Each record must be a JSON object")),
            ));
            continue;
        };
        let Some(ty) = ty else {
            outcomes.push((
                None,
                Err(
                    ApiError::new(400, "INVALID_TYPE", "Must send a concrete entity type.")
                        .with_fields(Vec::<String>::new()),
                ),
            ));
            continue;
        };
        let id_key = fields
            .keys()
            .find(|k| k.eq_ignore_ascii_case("id"))
            .cloned();
        let given_id = id_key
            .as_ref()
            .and_then(|k| fields.get(k))
            .and_then(Value::as_str)
            .map(str::to_string);
        let outcome = if creating {
            if id_key.is_some() {
                Err(
                    ApiError::new(400, "INVALID_FIELD", "cannot specify Id in an insert call")
                        .with_fields(Vec::<String>::new()),
                )
            } else if lock_row_fault(org, "POST", ctx, ty, "") {
                Err(ApiError::unable_to_lock_row(&ids::generate("001")))
            } else {
                dml::create(data, ty, fields, &dctx)
            }
        } else {
            match &given_id {
                None => Err(ApiError::new(
                    400,
                    "MISSING_ARGUMENT",
                    "Id not specified in an update call",
                )
                .with_fields(Vec::<String>::new())),
                Some(id) if lock_row_fault(org, "PATCH", ctx, ty, id) => {
                    Err(ApiError::unable_to_lock_row(id))
                }
                Some(id) => {
                    let mut body = fields.clone();
                    if let Some(k) = &id_key {
                        body.remove(k);
                    }
                    dml::update(data, ty, id, &body, &dctx).map(|_| id.clone())
                }
            }
        };
        // SaveResults use statusCode; a 404 such as an unknown type becomes NOT_FOUND.
        outcomes.push((given_id, outcome));
    }
    let any_failed = outcomes.iter().any(|(_, o)| o.is_err());
    if let (true, Some(snap)) = (any_failed, snapshot) {
        data.store = snap;
    }
    let results: Vec<J> = outcomes
        .iter()
        .map(|(given, o)| match o {
            Ok(id) if any_failed && all_or_none => rolled_back(given.as_deref()),
            Ok(id) => save_result(id),
            Err(e) => failure(given.as_deref(), e),
        })
        .collect();
    RestResponse::ok(J::Arr(results))
}

fn delete_collection(
    org: &Org,
    data: &mut OrgData,
    ctx: &RestCtx,
    req: &RestRequest<'_>,
) -> RestResponse {
    let ids_param: Vec<String> = req
        .param("ids")
        .unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if ids_param.is_empty() {
        return RestResponse::error(&invalid("Required parameter is missing: ids"));
    }
    if ids_param.len() > MAX_COLLECTION_RECORDS {
        return collection_error(format!(
            "record limit reached. cannot submit more than {MAX_COLLECTION_RECORDS} records into this call"
        ));
    }
    let all_or_none = req.param("allOrNone") == Some("true");
    let snapshot = all_or_none.then(|| data.store.clone());
    let dctx = DmlCtx::api(&ctx.user_id);
    let mut outcomes = Vec::new();
    for raw in &ids_param {
        let ty = ids::normalize(raw).and_then(|id| {
            data.schema
                .object_by_prefix(ids::prefix(&id))
                .map(|o| o.name.clone())
        });
        let outcome = match ty {
            None => Err(ApiError::malformed_record_id(raw)),
            Some(ty) if lock_row_fault(org, "DELETE", ctx, &ty, raw) => {
                Err(ApiError::unable_to_lock_row(raw))
            }
            Some(ty) => dml::delete(data, &ty, raw, &dctx),
        };
        outcomes.push(outcome);
    }
    let any_failed = outcomes.iter().any(Result::is_err);
    if let (true, Some(snap)) = (any_failed, snapshot) {
        data.store = snap;
    }
    RestResponse::ok(J::Arr(
        ids_param
            .iter()
            .zip(&outcomes)
            .map(|(id, o)| match o {
                Ok(()) if any_failed && all_or_none => rolled_back(Some(id)),
                Ok(()) => save_result(id),
                Err(e) => failure(Some(id), e),
            })
            .collect(),
    ))
}

// ---- sObject Collections upsert --------------------------------------------------------------

/// An UpsertResult: a SaveResult with `created` last (SFDOC
/// `resources_composite_sobjects_collections_upsert.htm`; SOAP UpsertResult). A failed record has
/// no `id`; that it still carries `"created":false` follows the SOAP UpsertResult, whose
/// `created` is a plain boolean **[UNCONFIRMED over REST]**.
fn upsert_result(mut result: J, created: bool) -> J {
    result.set("created", J::Bool(created));
    result
}

/// The whole-request error for an upsert field that is not an external id (or unknown, or not
/// accessible, or `Id`: "Only external ids are supported. Don't use record ids." in the
/// documentation). The wording is that of SOAP `upsert()` and the Bulk API for the same case;
/// that the REST collection answers it as one 400 rather than per record is **[UNCONFIRMED]**.
fn not_an_external_id(field: &str, sobject: &str) -> ApiError {
    ApiError::invalid_field(format!(
        "Field name provided, {field} is not an External ID or indexed field for {sobject}"
    ))
}

/// A matching key for an external-id value: strings compare case-insensitively, as in the
/// single-record upsert (`sobjects.rs`), numbers by value. `None`: no usable value.
fn external_key(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.to_ascii_lowercase()),
        Value::Number(n) => n.as_f64().map(|f| f.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A record of an upsert request that passed the per-record checks.
struct UpsertItem<'a> {
    fields: &'a Map<String, Value>,
    /// The external-id value as sent (for messages and fault paths).
    shown: String,
    key: String,
}

/// `PATCH composite/sobjects/{Type}/{ExternalIdField}` (API v46.0 and later; the caller checks
/// the version): up to 200 records of the URL's type, each created or updated by the value of
/// the external-id field, with UpsertResults in request order.
pub fn upsert(
    org: &Org,
    data: &mut OrgData,
    ctx: &RestCtx,
    req: &RestRequest<'_>,
    ty: &str,
    field: &str,
) -> Result<RestResponse, ApiError> {
    let obj = data
        .schema
        .visible_object(ty)
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    let ext = data
        .schema
        .visible_field(&obj, field)
        .filter(|f| f.external_id && f.name != "Id")
        .cloned()
        .ok_or_else(|| not_an_external_id(field, &obj.name))?;
    let body = json_body(req.body)?;
    let all_or_none = body
        .get("allOrNone")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let records = body
        .get("records")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("Required field is missing: records"))?;
    if records.len() > MAX_COLLECTION_RECORDS {
        return Ok(collection_error(format!(
            "record limit reached. cannot submit more than {MAX_COLLECTION_RECORDS} records into this call"
        )));
    }

    // Per-record checks that need no data.
    let checked: Vec<Result<UpsertItem<'_>, ApiError>> = records
        .iter()
        .map(|rec| {
            let fields = rec
                .as_object()
                .ok_or_else(|| ApiError::json_parser("Each record must be a JSON object"))?;
            let rec_type = fields
                .get("attributes")
                .and_then(|a| a.get("type"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::invalid_type("Must send a concrete entity type.")
                        .with_fields(Vec::<String>::new())
                })?;
            if !rec_type.eq_ignore_ascii_case(&obj.name) {
                // "The list can contain objects only of the type indicated in the request
                // URI." The code and wording of the refusal are [UNCONFIRMED].
                return Err(ApiError::invalid_type(format!(
                    "Record of type {rec_type} cannot be upserted in a request for {}",
                    obj.name
                ))
                .with_fields(Vec::<String>::new()));
            }
            if fields.keys().any(|k| k.eq_ignore_ascii_case("Id")) {
                // "Don't set the id field for any object" (same wording as a create).
                return Err(ApiError::invalid_field(
                    "The Id field should not be specified in the sobject data.",
                )
                .with_fields(Vec::<String>::new()));
            }
            // "MISSING_ARGUMENT, External_Id__c not specified" is how Salesforce reports an
            // upserted record without its external id (SOAP/Apex upsert; Data-Migration-Tool#5).
            let missing = || {
                ApiError::new(
                    400,
                    "MISSING_ARGUMENT",
                    format!("{} not specified", ext.name),
                )
                .with_fields(Vec::<String>::new())
            };
            let raw = fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&ext.name))
                .map(|(_, v)| v)
                .ok_or_else(missing)?;
            let value = dml::coerce(&ext, raw)?;
            let key = external_key(&value).ok_or_else(missing)?;
            let shown = match &value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Ok(UpsertItem { fields, shown, key })
        })
        .collect();

    // Two records of one request with the same external id: Salesforce refuses every one of
    // them with DUPLICATE_VALUE "Duplicate external id specified: <value>" (the code/message
    // pair integrations match on, e.g. Castled's SalesforceErrorParser; that *all* of them fail,
    // not only the later ones, and the empty `fields`, are [UNCONFIRMED]).
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for item in checked.iter().flatten() {
        *seen.entry(item.key.as_str()).or_default() += 1;
    }
    let duplicated: Vec<bool> = checked
        .iter()
        .map(|c| {
            c.as_ref()
                .is_ok_and(|item| seen.get(item.key.as_str()).copied().unwrap_or(0) > 1)
        })
        .collect();

    let snapshot = all_or_none.then(|| data.store.clone());
    let dctx = DmlCtx::api(&ctx.user_id);
    let mut outcomes: Vec<Result<(String, bool), ApiError>> = Vec::new();
    for (item, dup) in checked.iter().zip(duplicated) {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                outcomes.push(Err(e.clone()));
                continue;
            }
        };
        if dup {
            outcomes.push(Err(ApiError::new(
                400,
                "DUPLICATE_VALUE",
                format!("Duplicate external id specified: {}", item.shown),
            )
            .with_fields(Vec::<String>::new())));
            continue;
        }
        let matches: Vec<String> = data
            .store
            .iter_object(&obj.name, false)
            .filter(|r| external_key(&data.store.value(r, &ext.name)).as_deref() == Some(&item.key))
            .map(|r| r.id.clone())
            .collect();
        // A fault aimed at `/sobjects/{Type}/{ExtField}/{value}` hits this record.
        let fault_path = format!("{}/{}", ext.name, item.shown);
        if lock_row_fault(org, "PATCH", ctx, &obj.name, &fault_path) {
            let id = matches
                .first()
                .cloned()
                .unwrap_or_else(|| ids::generate(&obj.key_prefix));
            outcomes.push(Err(ApiError::unable_to_lock_row(&id)));
            continue;
        }
        let outcome = match matches.as_slice() {
            [] => dml::create(data, &obj.name, item.fields, &dctx).map(|id| (id, true)),
            [id] => {
                dml::update(data, &obj.name, id, item.fields, &dctx).map(|()| (id.clone(), false))
            }
            // The single upsert answers 300 with the matching URLs; in a collection the record
            // fails with DUPLICATE_EXTERNAL_ID and the message SOAP/Apex give ("<label>: more
            // than one record found for external id field: [id, id]"); `fields` [UNCONFIRMED].
            many => Err(ApiError::new(
                400,
                "DUPLICATE_EXTERNAL_ID",
                format!(
                    "{}: more than one record found for external id field: [{}]",
                    ext.label,
                    many.join(", ")
                ),
            )
            .with_fields(Vec::<String>::new())),
        };
        outcomes.push(outcome);
    }
    let any_failed = outcomes.iter().any(Result::is_err);
    if let (true, Some(snap)) = (any_failed, snapshot) {
        data.store = snap;
    }
    Ok(RestResponse::ok(J::Arr(
        outcomes
            .iter()
            .map(|o| match o {
                Ok(_) if any_failed && all_or_none => upsert_result(rolled_back(None), false),
                Ok((id, created)) => upsert_result(save_result(id), *created),
                Err(e) => upsert_result(failure(None, e), false),
            })
            .collect(),
    )))
}

/// `GET composite/sobjects/{Type}?ids=…&fields=…` (or POST with the same in the body).
pub fn retrieve(
    data: &OrgData,
    ctx: &RestCtx,
    req: &RestRequest<'_>,
    ty: &str,
) -> Result<RestResponse, ApiError> {
    let obj = data
        .schema
        .visible_object(ty)
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    let (ids_list, fields): (Vec<String>, Vec<String>) = if req.method == "POST" {
        let body = json_body(req.body)?;
        let list = |k: &str| {
            body.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        (list("ids"), list("fields"))
    } else {
        let split = |k: &str| {
            req.param(k)
                .unwrap_or("")
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        (split("ids"), split("fields"))
    };
    if fields.is_empty() {
        return Err(invalid("Required parameter is missing: fields"));
    }
    let mut out = Vec::new();
    for raw in &ids_list {
        let rec = ids::normalize(raw)
            .and_then(|id| data.store.get(&id))
            .filter(|r| !r.is_deleted() && r.sobject == obj.name);
        out.push(match rec {
            Some(r) => record_json(data, &ctx.version, &obj, r, Some(&fields))?,
            None => J::Null,
        });
    }
    Ok(RestResponse::ok(J::Arr(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let mut results = HashMap::new();
        results.insert(
            "refAccount".to_string(),
            Some(J::obj([("id", J::str("001000000000001AAA"))])),
        );
        results.insert(
            "refQuery".to_string(),
            Some(J::obj([(
                "records",
                J::Arr(vec![J::obj([("Id", J::str("003000000000001AAA"))])]),
            )])),
        );
        results.insert("failed".to_string(), None);
        assert_eq!(
            substitute("@{refAccount.id}", &results),
            Ok(Value::String("001000000000001AAA".into()))
        );
        assert_eq!(
            substitute(
                "/services/data/v60.0/sobjects/Contact/@{refQuery.records[0].Id}",
                &results
            ),
            Ok(Value::String(
                "/services/data/v60.0/sobjects/Contact/003000000000001AAA".into()
            ))
        );
        assert_eq!(
            substitute("@{failed.id}", &results),
            Err("failed".to_string())
        );
        assert_eq!(substitute("@{nope.id}", &results), Err("nope".to_string()));
        assert_eq!(
            substitute("@{refQuery.records[3].Id}", &results),
            Err("refQuery".to_string())
        );
    }

    #[test]
    fn classification() {
        assert_eq!(
            classify("/services/data/v60.0/sobjects/Task").ok(),
            Some("sobject")
        );
        assert_eq!(
            classify("/services/data/v60.0/query?q=SELECT+Id+FROM+Task").ok(),
            Some("query")
        );
        assert_eq!(
            classify("/services/data/v60.0/composite/sobjects").ok(),
            Some("collection")
        );
        assert!(classify("/services/data/v60.0/search?q=FIND+%7Bx%7D").is_err());
        assert!(classify("/services/data/v60.0/limits").is_err());
        assert!(classify("/services/data/v60.0/sobjects").is_err());
    }
}
