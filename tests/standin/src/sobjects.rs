//! sObject resources (docs/salesforce-api.md §2c): basic info, describe, create, retrieve,
//! update, delete, upsert by external id, and the replication resources `deleted/` and
//! `updated/` that incremental contact sync relies on (SPEC C-4).

use chrono::{DateTime, Duration, Timelike, Utc};
use serde_json::{Map, Value};

use crate::describe;
use crate::dml::{self, DmlCtx};
use crate::errors::ApiError;
use crate::ids;
use crate::json::J;
use crate::org::OrgData;
use crate::rest::{RestCtx, RestRequest, RestResponse, json_body};
use crate::schema::ObjectDef;
use crate::store::Record;
use crate::values;

fn allow(method: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&method) || (method == "HEAD" && allowed.contains(&"GET")) {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed(method, allowed))
    }
}

pub fn record_url(version: &str, sobject: &str, id: &str) -> String {
    format!("/services/data/v{version}/sobjects/{sobject}/{id}")
}

fn attributes(version: &str, rec: &Record) -> J {
    J::obj([
        ("type", J::str(&rec.sobject)),
        ("url", J::Str(record_url(version, &rec.sobject, &rec.id))),
    ])
}

/// A record as `GET sobjects/{Type}/{id}` returns it: attributes, then every visible field
/// in describe order (or only `fields`, in the order asked for).
pub fn record_json(
    data: &OrgData,
    version: &str,
    obj: &ObjectDef,
    rec: &Record,
    fields: Option<&[String]>,
) -> Result<J, ApiError> {
    let mut pairs = vec![("attributes".to_string(), attributes(version, rec))];
    match fields {
        Some(list) => {
            for name in list {
                let f = data.schema.visible_field(obj, name).ok_or_else(|| {
                    ApiError::invalid_field(format!(
                        "No such column '{name}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                        obj.name
                    ))
                })?;
                pairs.push((f.name.clone(), J::from(&data.store.value(rec, &f.name))));
            }
        }
        None => {
            for f in obj
                .fields
                .iter()
                .filter(|f| data.schema.field_visible(obj, f))
            {
                pairs.push((f.name.clone(), J::from(&data.store.value(rec, &f.name))));
            }
        }
    }
    Ok(J::Obj(pairs))
}

/// `{"id":…,"success":true,"errors":[]}` (HEROKU `create.json`).
pub fn save_result(id: &str) -> J {
    J::obj([
        ("id", J::str(id)),
        ("success", J::Bool(true)),
        ("errors", J::Arr(Vec::new())),
    ])
}

fn fields_param(req: &RestRequest<'_>) -> Option<Vec<String>> {
    req.param("fields").map(|f| {
        f.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

fn object_body(req: &RestRequest<'_>) -> Result<Map<String, Value>, ApiError> {
    match json_body(req.body)? {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::json_parser(format!(
            "Cannot deserialize instance of sObject from {} value or request may be missing a required field",
            if other.is_array() {
                "START_ARRAY"
            } else {
                "VALUE"
            }
        ))),
    }
}

/// `sobjects/{Type}/…`
pub fn route(
    data: &mut OrgData,
    ctx: &RestCtx,
    req: &RestRequest<'_>,
    ty: &str,
    rest: &[&str],
) -> Result<RestResponse, ApiError> {
    let obj = data
        .schema
        .visible_object(ty)
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    let m = req.method;
    match rest {
        [] => {
            allow(m, &["GET", "POST"])?;
            if m == "POST" {
                create(data, ctx, req, &obj)
            } else {
                Ok(RestResponse::ok(describe::basic_info(&ctx.version, &obj)))
            }
        }
        ["describe"] => {
            allow(m, &["GET"])?;
            Ok(RestResponse::ok(describe::describe(
                data,
                &ctx.version,
                &obj,
            )))
        }
        ["deleted"] => {
            allow(m, &["GET"])?;
            Ok(RestResponse::ok(get_deleted(data, ctx, req, &obj)?))
        }
        ["updated"] => {
            allow(m, &["GET"])?;
            Ok(RestResponse::ok(get_updated(data, ctx, req, &obj)?))
        }
        [id] => {
            allow(m, &["GET", "PATCH", "DELETE"])?;
            let dctx = DmlCtx::api(&ctx.user_id);
            match m {
                "PATCH" => {
                    let body = object_body(req)?;
                    dml::update(data, &obj.name, id, &body, &dctx)?;
                    Ok(RestResponse::no_content())
                }
                "DELETE" => {
                    dml::delete(data, &obj.name, id, &dctx)?;
                    Ok(RestResponse::no_content())
                }
                _ => retrieve(data, ctx, req, &obj, id),
            }
        }
        [field, value] => by_external_id(data, ctx, req, &obj, field, value),
        [_, _, _] if obj.name == "ContentVersion" => {
            Err(ApiError::standin_unsupported("blob retrieval"))
        }
        _ => Err(ApiError::not_found()),
    }
}

fn create(
    data: &mut OrgData,
    ctx: &RestCtx,
    req: &RestRequest<'_>,
    obj: &ObjectDef,
) -> Result<RestResponse, ApiError> {
    let body = object_body(req)?;
    let id = dml::create(data, &obj.name, &body, &DmlCtx::api(&ctx.user_id))?;
    Ok(RestResponse {
        status: 201,
        location: Some(record_url(&ctx.version, &obj.name, &id)),
        body: Some(save_result(&id)),
    })
}

fn retrieve(
    data: &OrgData,
    ctx: &RestCtx,
    req: &RestRequest<'_>,
    obj: &ObjectDef,
    raw: &str,
) -> Result<RestResponse, ApiError> {
    // A segment that is not an id is read as an external-id field name by the real service.
    let Some(id) = ids::normalize(raw) else {
        return Err(ApiError::external_id_not_found(raw));
    };
    let rec = data
        .store
        .get(&id)
        .filter(|r| !r.is_deleted() && r.sobject == obj.name)
        .ok_or_else(ApiError::not_found)?;
    let fields = fields_param(req);
    Ok(RestResponse::ok(record_json(
        data,
        &ctx.version,
        obj,
        rec,
        fields.as_deref(),
    )?))
}

/// `sobjects/{Type}/{ExtField}/{value}`: GET, PATCH (upsert) or DELETE by external id.
fn by_external_id(
    data: &mut OrgData,
    ctx: &RestCtx,
    req: &RestRequest<'_>,
    obj: &ObjectDef,
    field: &str,
    value: &str,
) -> Result<RestResponse, ApiError> {
    allow(req.method, &["GET", "PATCH", "DELETE"])?;
    let f = data
        .schema
        .visible_field(obj, field)
        .filter(|f| f.external_id || f.name == "Id")
        .cloned()
        .ok_or_else(|| ApiError::external_id_not_found(field))?;
    let matches: Vec<String> = data
        .store
        .iter_object(&obj.name, false)
        .filter(|r| {
            r.get_str(&f.name)
                .is_some_and(|v| v.eq_ignore_ascii_case(value))
        })
        .map(|r| r.id.clone())
        .collect();
    if matches.len() > 1 {
        return Ok(RestResponse {
            status: 300,
            body: Some(J::Arr(
                matches
                    .iter()
                    .map(|id| J::Str(record_url(&ctx.version, &obj.name, id)))
                    .collect(),
            )),
            location: None,
        });
    }
    let dctx = DmlCtx::api(&ctx.user_id);
    match (req.method, matches.first()) {
        ("GET", Some(id)) => retrieve(data, ctx, req, obj, id),
        ("DELETE", Some(id)) => {
            dml::delete(data, &obj.name, id, &dctx)?;
            Ok(RestResponse::no_content())
        }
        ("PATCH", Some(id)) => {
            let body = object_body(req)?;
            dml::update(data, &obj.name, id, &body, &dctx)?;
            // Since v46.0 an upsert that updates answers 200 with a body; before, 204.
            if ctx.version_number() >= 46.0 {
                let mut r = save_result(id);
                r.set("created", J::Bool(false));
                Ok(RestResponse::ok(r))
            } else {
                Ok(RestResponse::no_content())
            }
        }
        ("PATCH", None) => {
            let mut body = object_body(req)?;
            if f.name != "Id" {
                body.insert(f.name.clone(), Value::String(value.to_string()));
            }
            let id = dml::create(data, &obj.name, &body, &dctx)?;
            let mut r = save_result(&id);
            r.set("created", J::Bool(true));
            Ok(RestResponse {
                status: 201,
                location: Some(record_url(&ctx.version, &obj.name, &id)),
                body: Some(r),
            })
        }
        _ => Err(ApiError::not_found()),
    }
}

// ---- replication: deleted/ and updated/ --------------------------------------------------

fn replication_error(message: &str) -> ApiError {
    ApiError::new(400, "INVALID_REPLICATION_DATE", message)
}

/// The API ignores the seconds of start and end ("12:30:15 is interpreted as 12:30:00",
/// SFDOC getUpdated()/getDeleted()), so callers must continue from `latestDateCovered`.
fn minute(dt: DateTime<Utc>) -> DateTime<Utc> {
    dt.with_second(0)
        .and_then(|d| d.with_nanosecond(0))
        .unwrap_or(dt)
}

fn window(
    ctx: &RestCtx,
    req: &RestRequest<'_>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let get = |name: &str| -> Result<DateTime<Utc>, ApiError> {
        let raw = req.param(name).ok_or_else(|| {
            ApiError::new(400, "MISSING_ARGUMENT", format!("{name} was not specified"))
        })?;
        values::parse_datetime(raw)
            .map(minute)
            .ok_or_else(|| replication_error(&format!("{name}: invalid date format: {raw}")))
    };
    let start = get("start")?;
    let end = get("end")?;
    if start >= end {
        return Err(replication_error(
            "startDate must chronologically precede endDate",
        ));
    }
    if ctx.now - start > Duration::days(30) {
        return Err(replication_error(
            "startDate cannot be more than 30 days ago",
        ));
    }
    // Nothing after "now" is covered yet.
    Ok((start, end.min(minute(ctx.now))))
}

fn get_deleted(
    data: &OrgData,
    ctx: &RestCtx,
    req: &RestRequest<'_>,
    obj: &ObjectDef,
) -> Result<J, ApiError> {
    let (start, end) = window(ctx, req)?;
    let mut deleted: Vec<(DateTime<Utc>, &str)> = data
        .store
        .iter_object(&obj.name, true)
        .filter_map(|r| r.deleted_at.map(|d| (d, r.id.as_str())))
        .collect();
    deleted.sort();
    let earliest = deleted
        .first()
        .map(|(d, _)| *d)
        .unwrap_or_else(|| minute(ctx.now - Duration::days(15)));
    let rows: Vec<J> = deleted
        .iter()
        .filter(|(d, _)| *d >= start && *d < end)
        .map(|(d, id)| {
            J::obj([
                ("id", J::str(*id)),
                ("deletedDate", J::Str(values::format_datetime(*d))),
            ])
        })
        .collect();
    Ok(J::obj([
        ("deletedRecords", J::Arr(rows)),
        (
            "earliestDateAvailable",
            J::Str(values::format_datetime(minute(earliest))),
        ),
        ("latestDateCovered", J::Str(values::format_datetime(end))),
    ]))
}

fn get_updated(
    data: &OrgData,
    ctx: &RestCtx,
    req: &RestRequest<'_>,
    obj: &ObjectDef,
) -> Result<J, ApiError> {
    let (start, end) = window(ctx, req)?;
    let ids: Vec<J> = data
        .store
        .iter_object(&obj.name, false)
        .filter(|r| {
            r.get_str("SystemModstamp")
                .and_then(values::parse_datetime)
                .is_some_and(|d| d >= start && d < end)
        })
        .map(|r| J::str(&r.id))
        .collect();
    Ok(J::obj([
        ("ids", J::Arr(ids)),
        ("latestDateCovered", J::Str(values::format_datetime(end))),
    ]))
}
