//! The control API under `/__standin/` (JSON), for the `sf-standin` binary and for tests not
//! written in Rust. Nothing here counts as an API call or appears in request logs.
//!
//! | Method | Path | Body / result |
//! |---|---|---|
//! | GET | `/__standin/health` | `{"ok":true}` |
//! | GET | `/__standin/orgs` | list of org summaries |
//! | POST | `/__standin/orgs` | OrgSpec fields (all optional) -> 201 summary incl. credentials |
//! | GET | `/__standin/orgs/{org}` | summary |
//! | POST | `/__standin/orgs/{org}/sessions` | `{"access_token"}` without a login request |
//! | POST/GET | `/__standin/orgs/{org}/records/{sobject}` | seed (fields) -> `{"id"}` / list |
//! | GET/PATCH/DELETE | `/__standin/orgs/{org}/records/{sobject}/{id}` | read / edit / delete |
//! | POST | `/__standin/orgs/{org}/merge` | `{"sobject","master_id","loser_id"}` |
//! | GET | `/__standin/orgs/{org}/counters` | `{"api_calls","api_usage","api_limit","requests":[…]}` |
//! | POST | `/__standin/orgs/{org}/reset-counters` | |
//! | POST | `/__standin/orgs/{org}/remaining-api` | `{"remaining"}` |
//! | POST | `/__standin/orgs/{org}/expire-sessions` | |
//! | POST/DELETE | `/__standin/orgs/{org}/faults` | FaultSpec (below) / clear |
//! | POST | `/__standin/orgs/{org}/deny-field` | `{"sobject","field"}` |
//! | POST | `/__standin/orgs/{org}/deny-object` | `{"sobject"}` |
//! | POST | `/__standin/orgs/{org}/custom-objects` | `{"name","key_prefix"?}` |
//! | POST | `/__standin/orgs/{org}/custom-fields` | `{"sobject","name","type","values"?,"target"?,"required"?,"label"?,"external_id"?}` |
//!
//! FaultSpec: `{"kind":"latency|status|drop_connection|expire_session|request_limit_exceeded|
//! unable_to_lock_row|refuse_connections","ms":…,"status":…,"times":…,"method":…,"path_contains":…}`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::{Fault, FaultKind};
use crate::http::Shared;
use crate::org::{Org, OrgSpec};
use crate::schema::{CustomField, CustomFieldType};

type Sh = State<Arc<Shared>>;

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({"error": message.to_string()}))).into_response()
}

#[allow(clippy::result_large_err)]
fn find(sh: &Shared, org_id: &str) -> Result<Org, Response> {
    sh.org(org_id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no org {org_id}")))
}

/// An org's summary, with what a client needs to log in.
pub(crate) fn summary(sh: &Shared, org: &Org) -> Value {
    let spec = org.spec();
    json!({
        "org_id": spec.org_id,
        "base_url": sh.base_url,
        "login_url": sh.base_url,
        "instance_url": sh.base_url,
        "username": spec.username,
        "password": spec.password,
        "security_token": spec.security_token,
        "client_id": spec.client_id,
        "client_secret": spec.client_secret,
        "refresh_tokens": spec.refresh_tokens,
        "sandbox": spec.sandbox,
        "person_accounts": spec.person_accounts,
        "daily_api_limit": spec.daily_api_limit,
        "user_id": org.login_user_id(),
    })
}

async fn health() -> Json<Value> {
    Json(json!({"ok": true}))
}

async fn list_orgs(State(sh): Sh) -> Json<Value> {
    Json(Value::Array(
        sh.all_orgs().iter().map(|o| summary(&sh, o)).collect(),
    ))
}

async fn create_org(State(sh): Sh, body: Option<Json<OrgSpec>>) -> Response {
    let spec = body.map(|Json(s)| s).unwrap_or_default();
    match sh.create_org(spec) {
        Ok(org) => (StatusCode::CREATED, Json(summary(&sh, &org))).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn get_org(State(sh): Sh, Path(org): Path<String>) -> Response {
    match find(&sh, &org) {
        Ok(o) => Json(summary(&sh, &o)).into_response(),
        Err(r) => r,
    }
}

async fn new_session(State(sh): Sh, Path(org): Path<String>) -> Response {
    match find(&sh, &org) {
        Ok(o) => Json(json!({"access_token": o.issue_session(), "instance_url": sh.base_url}))
            .into_response(),
        Err(r) => r,
    }
}

async fn seed_record(
    State(sh): Sh,
    Path((org, sobject)): Path<(String, String)>,
    Json(fields): Json<Value>,
) -> Response {
    let org = match find(&sh, &org) {
        Ok(o) => o,
        Err(r) => return r,
    };
    match org.try_insert(&sobject, fields) {
        Ok(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn list_records(State(sh): Sh, Path((org, sobject)): Path<(String, String)>) -> Response {
    match find(&sh, &org) {
        Ok(o) => Json(Value::Array(o.records(&sobject))).into_response(),
        Err(r) => r,
    }
}

async fn get_record(
    State(sh): Sh,
    Path((org, sobject, id)): Path<(String, String, String)>,
) -> Response {
    match find(&sh, &org) {
        Ok(o) => match o.get(&sobject, &id) {
            Some(r) => Json(r).into_response(),
            None => error(StatusCode::NOT_FOUND, format!("no live {sobject} {id}")),
        },
        Err(r) => r,
    }
}

async fn patch_record(
    State(sh): Sh,
    Path((org, sobject, id)): Path<(String, String, String)>,
    Json(fields): Json<Value>,
) -> Response {
    match find(&sh, &org) {
        Ok(o) => match o.try_update(&sobject, &id, fields) {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => error(StatusCode::BAD_REQUEST, e),
        },
        Err(r) => r,
    }
}

async fn delete_record(
    State(sh): Sh,
    Path((org, sobject, id)): Path<(String, String, String)>,
) -> Response {
    match find(&sh, &org) {
        Ok(o) => match o.try_delete(&sobject, &id) {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => error(StatusCode::BAD_REQUEST, e),
        },
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct MergeReq {
    sobject: String,
    master_id: String,
    loser_id: String,
}

async fn merge(State(sh): Sh, Path(org): Path<String>, Json(m): Json<MergeReq>) -> Response {
    match find(&sh, &org) {
        Ok(o) => match o.try_merge(&m.sobject, &m.master_id, &m.loser_id) {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => error(StatusCode::BAD_REQUEST, e),
        },
        Err(r) => r,
    }
}

async fn counters(State(sh): Sh, Path(org): Path<String>) -> Response {
    match find(&sh, &org) {
        Ok(o) => {
            let (used, max) = o.api_usage();
            Json(json!({
                "api_calls": o.api_calls(),
                "api_usage": used,
                "api_limit": max,
                "requests": o.request_log(),
            }))
            .into_response()
        }
        Err(r) => r,
    }
}

async fn reset_counters(State(sh): Sh, Path(org): Path<String>) -> Response {
    match find(&sh, &org) {
        Ok(o) => {
            o.reset_counters();
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct Remaining {
    remaining: u64,
}

async fn remaining_api(
    State(sh): Sh,
    Path(org): Path<String>,
    Json(r): Json<Remaining>,
) -> Response {
    match find(&sh, &org) {
        Ok(o) => {
            o.set_remaining_api(r.remaining);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

async fn expire_sessions(State(sh): Sh, Path(org): Path<String>) -> Response {
    match find(&sh, &org) {
        Ok(o) => {
            o.expire_sessions();
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct FaultSpec {
    kind: String,
    #[serde(default)]
    ms: u64,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default = "one")]
    times: u32,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path_contains: Option<String>,
}

fn one() -> u32 {
    1
}

fn fault_from(spec: FaultSpec) -> Result<Fault, String> {
    let d = Duration::from_millis(spec.ms);
    let kind = match spec.kind.as_str() {
        "latency" => FaultKind::Latency(d),
        "status" => FaultKind::Status(spec.status.unwrap_or(503)),
        "drop_connection" => FaultKind::DropConnection,
        "expire_session" => FaultKind::ExpireSession,
        "request_limit_exceeded" => FaultKind::RequestLimitExceeded,
        "unable_to_lock_row" => FaultKind::UnableToLockRow,
        "refuse_connections" => FaultKind::RefuseConnections(d),
        other => return Err(format!("unknown fault kind {other}")),
    };
    Ok(Fault {
        kind,
        times: spec.times,
        method: spec.method,
        path_contains: spec.path_contains,
    })
}

async fn inject(State(sh): Sh, Path(org): Path<String>, Json(spec): Json<FaultSpec>) -> Response {
    let org = match find(&sh, &org) {
        Ok(o) => o,
        Err(r) => return r,
    };
    match fault_from(spec) {
        Ok(f) => {
            org.inject(f);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn clear_faults(State(sh): Sh, Path(org): Path<String>) -> Response {
    match find(&sh, &org) {
        Ok(o) => {
            o.clear_faults();
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct DenyReq {
    sobject: String,
    #[serde(default)]
    field: Option<String>,
}

async fn deny_field(State(sh): Sh, Path(org): Path<String>, Json(d): Json<DenyReq>) -> Response {
    match (find(&sh, &org), d.field) {
        (Ok(o), Some(f)) => {
            o.deny_field(&d.sobject, &f);
            StatusCode::NO_CONTENT.into_response()
        }
        (Ok(_), None) => error(StatusCode::BAD_REQUEST, "field is required"),
        (Err(r), _) => r,
    }
}

async fn deny_object(State(sh): Sh, Path(org): Path<String>, Json(d): Json<DenyReq>) -> Response {
    match find(&sh, &org) {
        Ok(o) => {
            o.deny_object(&d.sobject);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct CustomObjectReq {
    name: String,
    #[serde(default)]
    key_prefix: Option<String>,
}

async fn custom_object(
    State(sh): Sh,
    Path(org): Path<String>,
    Json(c): Json<CustomObjectReq>,
) -> Response {
    let org = match find(&sh, &org) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let r = org
        .data()
        .schema
        .add_custom_object(&c.name, c.key_prefix.as_deref());
    match r {
        Ok(prefix) => (StatusCode::CREATED, Json(json!({"key_prefix": prefix}))).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

#[derive(Deserialize)]
struct CustomFieldReq {
    sobject: String,
    name: String,
    #[serde(rename = "type")]
    field_type: String,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    external_id: bool,
}

async fn custom_field(
    State(sh): Sh,
    Path(org): Path<String>,
    Json(c): Json<CustomFieldReq>,
) -> Response {
    let org = match find(&sh, &org) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let ty = match c.field_type.to_ascii_lowercase().as_str() {
        "string" | "text" => CustomFieldType::String,
        "textarea" => CustomFieldType::TextArea,
        "phone" => CustomFieldType::Phone,
        "email" => CustomFieldType::Email,
        "url" => CustomFieldType::Url,
        "number" | "double" => CustomFieldType::Number,
        "checkbox" | "boolean" => CustomFieldType::Checkbox,
        "date" => CustomFieldType::Date,
        "datetime" => CustomFieldType::DateTime,
        "picklist" => CustomFieldType::Picklist(c.values),
        "restricted_picklist" => CustomFieldType::RestrictedPicklist(c.values),
        "multipicklist" => CustomFieldType::MultiPicklist(c.values),
        "lookup" | "reference" => match c.target {
            Some(t) => CustomFieldType::Lookup(t),
            None => return error(StatusCode::BAD_REQUEST, "lookup fields need a target"),
        },
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown field type {other}"),
            );
        }
    };
    let mut f = CustomField::new(&c.name, ty);
    f.required = c.required;
    f.label = c.label;
    f.external_id = c.external_id;
    match org.add_custom_field_with(&c.sobject, f) {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/health", get(health))
        .route("/orgs", get(list_orgs).post(create_org))
        .route("/orgs/{org}", get(get_org))
        .route("/orgs/{org}/sessions", post(new_session))
        .route(
            "/orgs/{org}/records/{sobject}",
            get(list_records).post(seed_record),
        )
        .route(
            "/orgs/{org}/records/{sobject}/{id}",
            get(get_record).patch(patch_record).delete(delete_record),
        )
        .route("/orgs/{org}/merge", post(merge))
        .route("/orgs/{org}/counters", get(counters))
        .route("/orgs/{org}/reset-counters", post(reset_counters))
        .route("/orgs/{org}/remaining-api", post(remaining_api))
        .route("/orgs/{org}/expire-sessions", post(expire_sessions))
        .route("/orgs/{org}/faults", post(inject).delete(clear_faults))
        .route("/orgs/{org}/deny-field", post(deny_field))
        .route("/orgs/{org}/deny-object", post(deny_object))
        .route("/orgs/{org}/custom-objects", post(custom_object))
        .route("/orgs/{org}/custom-fields", post(custom_field))
}
