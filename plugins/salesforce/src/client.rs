//! The REST client: session reuse and renewal (SPEC A-3), API version, limit tracking
//! and the resources the integrations need (docs/salesforce-api.md §2).
//!
//! Every request goes through [`Client::send`]: it takes the cached session (plugin state key
//! [`SESSION_KEY`]) or logs in, sends, and on `401 INVALID_SESSION_ID` logs in again once and
//! retries once. It reads `Sforce-Limit-Info` from every answer and counts the requests it made
//! (SPEC L-8).

use std::cell::{Cell, RefCell};

use pbx_plugin_sdk::Host;
use pbx_plugin_sdk::http::{Method, Request, Response};
use pbx_plugin_sdk::log::Level;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::{self, Session};
use crate::config::SalesforceConfig;
use crate::error::{ApiError, SfError, from_api_error};
use crate::limits::ApiUsage;

/// Plugin-state key of the cached session.
pub const SESSION_KEY: &str = "salesforce:session";
/// Plugin-state key of the last known API usage (`{"used":n,"max":m}`).
pub const USAGE_KEY: &str = "salesforce:usage";
/// How long a cached session is kept at most (Salesforce's longest session timeout is 24 h;
/// an older one would fail anyway and cost a request to find out).
pub const SESSION_TTL_SECS: u32 = 12 * 3600;
/// Default per-request timeout.
pub const DEFAULT_TIMEOUT_MS: u32 = 10_000;
/// Default API reserve, in percent of the daily allocation.
pub const DEFAULT_RESERVE_PERCENT: u8 = 5;

/// A query page: `{"totalSize","done","nextRecordsUrl","records"}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryResult<T> {
    pub total_size: u64,
    pub done: bool,
    #[serde(default)]
    pub next_records_url: Option<String>,
    pub records: Vec<T>,
}

/// The result of a create: `{"id","success","errors"}`; also a collections SaveResult.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SaveResult {
    #[serde(default)]
    pub id: Option<String>,
    pub success: bool,
    #[serde(default)]
    pub errors: Vec<ApiError>,
    /// Upserts only: whether the record was created (else updated).
    #[serde(default)]
    pub created: Option<bool>,
}

/// A composite subrequest (docs/salesforce-api.md §2e).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompositeRequest {
    /// "GET", "POST", "PATCH", "PUT", "DELETE" (case-sensitive).
    pub method: String,
    /// A `/services/data/vXX.X/...` URL; may reference earlier results: `@{ref.id}`.
    pub url: String,
    pub reference_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// A composite subresponse.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompositeResponse {
    #[serde(default)]
    pub body: Value,
    pub http_status_code: u16,
    pub reference_id: String,
}

impl CompositeResponse {
    /// The subresponse as a result: its body, or its error classified like a top-level one.
    pub fn result(&self) -> Result<&Value, SfError> {
        if (200..300).contains(&self.http_status_code) {
            return Ok(&self.body);
        }
        let errors: Option<Vec<ApiError>> = serde_json::from_value(self.body.clone()).ok();
        match errors.and_then(|e| e.into_iter().next()) {
            Some(e) => Err(from_api_error(self.http_status_code, e)),
            None => Err(SfError::Protocol {
                status: self.http_status_code,
                message: self.body.to_string(),
            }),
        }
    }
}

/// The `{"compositeResponse":[…]}` envelope.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompositeEnvelope {
    pub composite_response: Vec<CompositeResponse>,
}

#[derive(Debug, Deserialize)]
struct GraphEnvelope {
    graphs: Vec<GraphResult>,
}

/// One graph of a composite graph response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphResult {
    pub graph_id: String,
    pub is_successful: bool,
    pub graph_response: CompositeEnvelope,
}

/// `describe` of an object: the parts "verify settings" needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Describe {
    pub name: String,
    #[serde(default)]
    pub createable: bool,
    #[serde(default)]
    pub updateable: bool,
    #[serde(default)]
    pub queryable: bool,
    #[serde(default)]
    pub fields: Vec<FieldDescribe>,
}

/// One field of a [`Describe`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDescribe {
    pub name: String,
    #[serde(rename = "type", default)]
    pub field_type: String,
    #[serde(default)]
    pub createable: bool,
    #[serde(default)]
    pub updateable: bool,
    /// Whether records can be upserted by this field (`externalId` in describe).
    #[serde(default)]
    pub external_id: bool,
    #[serde(default)]
    pub picklist_values: Vec<PicklistValue>,
}

/// One picklist value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PicklistValue {
    pub value: String,
    #[serde(default)]
    pub active: bool,
}

impl Describe {
    /// A field by API name (case-insensitive, as Salesforce treats names).
    pub fn field(&self, name: &str) -> Option<&FieldDescribe> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

/// The Salesforce REST client for one invocation.
pub struct Client<H: Host> {
    host: H,
    cfg: SalesforceConfig,
    session: RefCell<Option<Session>>,
    usage: Cell<Option<ApiUsage>>,
    usage_loaded: Cell<bool>,
    /// Salesforce reported a usage during this invocation (worth storing).
    usage_fresh: Cell<bool>,
    requests: Cell<u32>,
}

impl<H: Host> Client<H> {
    /// A client; nothing is sent until the first request.
    pub fn new(host: H, cfg: SalesforceConfig) -> Self {
        Client {
            host,
            cfg,
            session: RefCell::new(None),
            usage: Cell::new(None),
            usage_loaded: Cell::new(false),
            usage_fresh: Cell::new(false),
            requests: Cell::new(0),
        }
    }

    /// The host, for the caller's own capability use.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The settings.
    pub fn config(&self) -> &SalesforceConfig {
        &self.cfg
    }

    /// How many HTTP requests to Salesforce this client made (logins included).
    pub fn request_count(&self) -> u32 {
        self.requests.get()
    }

    /// The API usage last reported by Salesforce (`Sforce-Limit-Info`), or the one stored by an
    /// earlier invocation.
    pub fn usage(&self) -> Option<ApiUsage> {
        self.load_usage();
        self.usage.get()
    }

    fn load_usage(&self) {
        if !self.usage_loaded.replace(true) && self.usage.get().is_none() {
            let stored = pbx_plugin_sdk::state::get_json_in::<ApiUsage>(&self.host, USAGE_KEY);
            if let Ok(Some(u)) = stored {
                self.usage.set(Some(u));
            }
        }
    }

    /// Stores the last known usage in plugin state so later invocations can keep the reserve
    /// (call once at the end of an invocation; a failure is only logged).
    /// Writes only when Salesforce reported a usage during this invocation.
    pub fn save_usage(&self) {
        if !self.usage_fresh.get() {
            return;
        }
        if let Some(u) = self.usage.get()
            && let Err(e) = pbx_plugin_sdk::state::set_json_in(&self.host, USAGE_KEY, &u, None)
        {
            self.host.log(
                Level::Warn,
                &format!("could not store API usage: {}", e.message),
            );
        }
    }

    /// The session: the one in memory, else the cached one (if made with the same settings),
    /// else a new login.
    pub fn session(&self) -> Result<Session, SfError> {
        if let Some(s) = self.session.borrow().as_ref() {
            return Ok(s.clone());
        }
        let cached = pbx_plugin_sdk::state::get_json_in::<Session>(&self.host, SESSION_KEY)
            .ok()
            .flatten()
            .filter(|s| s.fingerprint == self.cfg.session_fingerprint());
        match cached {
            Some(s) => {
                *self.session.borrow_mut() = Some(s.clone());
                Ok(s)
            }
            None => self.login(),
        }
    }

    /// Logs in now (replacing any session) and caches the new session.
    pub fn login(&self) -> Result<Session, SfError> {
        self.requests.set(self.requests.get() + 1);
        let s = auth::login(&self.host, &self.cfg)?;
        self.host.log(
            Level::Info,
            &format!(
                "Salesforce login ok ({}), instance {}",
                self.cfg.auth.as_str(),
                s.instance_url
            ),
        );
        if let Err(e) =
            pbx_plugin_sdk::state::set_json_in(&self.host, SESSION_KEY, &s, Some(SESSION_TTL_SECS))
        {
            // Not fatal: the session still works for this invocation.
            self.host.log(
                Level::Warn,
                &format!("could not cache the Salesforce session: {}", e.message),
            );
        }
        *self.session.borrow_mut() = Some(s.clone());
        Ok(s)
    }

    /// Forgets the session (memory and state).
    pub fn forget_session(&self) {
        *self.session.borrow_mut() = None;
        let _ = self.host.state_delete(SESSION_KEY);
    }

    /// The absolute URL for `path`: an absolute URL is kept, `/services/...` is put on the
    /// instance, anything else is relative to `/services/data/vXX.X/`.
    pub fn url(&self, session: &Session, path: &str) -> Result<String, SfError> {
        if path.starts_with("https://") || path.starts_with("http://") {
            return Ok(path.to_string());
        }
        if path.starts_with("/services/") {
            return Ok(format!("{}{path}", session.instance_url));
        }
        Ok(format!(
            "{}/services/data/{}/{}",
            session.instance_url,
            self.cfg.version()?,
            path.trim_start_matches('/')
        ))
    }

    /// Refuses to spend the tenant's reserve (SPEC A-6).
    fn check_budget(&self) -> Result<(), SfError> {
        let reserve = self
            .cfg
            .api_reserve_percent
            .unwrap_or(DEFAULT_RESERVE_PERCENT);
        match self.usage() {
            Some(u) if u.over_reserve(reserve) => Err(SfError::RequestLimit(format!(
                "API usage {}/{} is within the {reserve}% reserve; waiting for the daily allocation to recover",
                u.used, u.max
            ))),
            _ => Ok(()),
        }
    }

    /// Sends one REST request with the session, renewing it once on `INVALID_SESSION_ID`.
    /// Returns 2xx responses; anything else becomes an [`SfError`].
    pub fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, SfError> {
        self.check_budget()?;
        let session = self.session()?;
        match self.send_once(&session, method, path, body) {
            Err(e) if e.is_session() => {
                self.host.log(
                    Level::Info,
                    "Salesforce session expired or invalid; logging in again",
                );
                self.forget_session();
                let session = self.login()?;
                self.send_once(&session, method, path, body)
            }
            other => other,
        }
    }

    fn send_once(
        &self,
        session: &Session,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, SfError> {
        let mut req = Request::new(method, self.url(session, path)?)
            .header("Authorization", format!("Bearer {}", session.access_token))
            .header("Accept", "application/json")
            .timeout_ms(self.cfg.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS));
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string().into_bytes());
        }
        self.requests.set(self.requests.get() + 1);
        let resp = self.host.http_send(&req)?;
        if let Some(u) = resp.header("sforce-limit-info").and_then(ApiUsage::parse) {
            self.usage.set(Some(u));
            self.usage_loaded.set(true);
            self.usage_fresh.set(true);
        }
        if resp.is_success() {
            Ok(resp)
        } else {
            Err(SfError::from_response(resp.status, &resp.body))
        }
    }

    fn json<T: DeserializeOwned>(resp: &Response) -> Result<T, SfError> {
        serde_json::from_slice(&resp.body).map_err(|e| SfError::Protocol {
            status: resp.status,
            message: format!("{e}: {}", crate::error::excerpt(&resp.body)),
        })
    }

    /// One page of a SOQL query.
    pub fn query<T: DeserializeOwned>(&self, soql: &str) -> Result<QueryResult<T>, SfError> {
        let path = format!("query?q={}", encode(soql));
        Self::json(&self.send(Method::Get, &path, None)?)
    }

    /// The next page after `next_records_url`.
    pub fn query_more<T: DeserializeOwned>(
        &self,
        next_records_url: &str,
    ) -> Result<QueryResult<T>, SfError> {
        Self::json(&self.send(Method::Get, next_records_url, None)?)
    }

    /// Every record of a query, following `nextRecordsUrl`, stopping after `max_records`
    /// (the rest is left for a later run).
    pub fn query_all<T: DeserializeOwned>(
        &self,
        soql: &str,
        max_records: usize,
    ) -> Result<Vec<T>, SfError> {
        let mut page = self.query::<T>(soql)?;
        let mut records = std::mem::take(&mut page.records);
        while !page.done && records.len() < max_records {
            let Some(next) = page.next_records_url.take() else {
                break;
            };
            page = self.query_more(&next)?;
            records.append(&mut page.records);
        }
        records.truncate(max_records);
        Ok(records)
    }

    /// A SOSL search; returns the records (both the `searchRecords` envelope and the bare
    /// array of API ≤ v36 are accepted).
    pub fn search(&self, sosl: &str) -> Result<Vec<Value>, SfError> {
        let path = format!("search/?q={}", encode(sosl));
        let v: Value = Self::json(&self.send(Method::Get, &path, None)?)?;
        Ok(match v {
            Value::Array(records) => records,
            Value::Object(mut o) => match o.remove("searchRecords") {
                Some(Value::Array(records)) => records,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        })
    }

    /// Creates a record; returns its id.
    pub fn create(&self, sobject: &str, fields: &Value) -> Result<String, SfError> {
        let resp = self.send(Method::Post, &format!("sobjects/{sobject}"), Some(fields))?;
        let r: SaveResult = Self::json(&resp)?;
        match (r.success, r.id) {
            (true, Some(id)) => Ok(id),
            _ => Err(match r.errors.into_iter().next() {
                Some(e) => from_api_error(400, e),
                None => SfError::Protocol {
                    status: resp.status,
                    message: "create answered without an id".into(),
                },
            }),
        }
    }

    /// Upserts a record by an external-id field (docs/salesforce-api.md §2c): creates it, or
    /// updates the record whose `field` is `value`. Idempotent, so a retry after an unknown
    /// outcome writes no second record. The id, or `None` when Salesforce answered an update
    /// with 204 (before API v46.0).
    pub fn upsert(
        &self,
        sobject: &str,
        field: &str,
        value: &str,
        fields: &Value,
    ) -> Result<Option<String>, SfError> {
        let path = format!("sobjects/{sobject}/{field}/{}", encode_segment(value));
        let resp = self.send(Method::Patch, &path, Some(fields))?;
        if resp.body.is_empty() {
            return Ok(None);
        }
        let r: SaveResult = Self::json(&resp)?;
        match (r.success, r.id) {
            (true, id) => Ok(id),
            (false, _) => Err(match r.errors.into_iter().next() {
                Some(e) => from_api_error(400, e),
                None => SfError::Protocol {
                    status: resp.status,
                    message: "upsert answered without success".into(),
                },
            }),
        }
    }

    /// Updates fields of a record (204).
    pub fn update(&self, sobject: &str, id: &str, fields: &Value) -> Result<(), SfError> {
        self.send(
            Method::Patch,
            &format!("sobjects/{sobject}/{id}"),
            Some(fields),
        )?;
        Ok(())
    }

    /// Reads a record (only `fields`, or all when empty).
    pub fn get(&self, sobject: &str, id: &str, fields: &[&str]) -> Result<Value, SfError> {
        let mut path = format!("sobjects/{sobject}/{id}");
        if !fields.is_empty() {
            path.push_str("?fields=");
            path.push_str(&encode(&fields.join(",")));
        }
        Self::json(&self.send(Method::Get, &path, None)?)
    }

    /// Deletes a record (204).
    pub fn delete(&self, sobject: &str, id: &str) -> Result<(), SfError> {
        self.send(Method::Delete, &format!("sobjects/{sobject}/{id}"), None)?;
        Ok(())
    }

    /// Describes an object.
    pub fn describe(&self, sobject: &str) -> Result<Describe, SfError> {
        Self::json(&self.send(Method::Get, &format!("sobjects/{sobject}/describe"), None)?)
    }

    /// A composite request: up to 25 subrequests in one API call.
    pub fn composite(
        &self,
        all_or_none: bool,
        requests: &[CompositeRequest],
    ) -> Result<Vec<CompositeResponse>, SfError> {
        let body = serde_json::json!({ "allOrNone": all_or_none, "compositeRequest": requests });
        let env: CompositeEnvelope =
            Self::json(&self.send(Method::Post, "composite", Some(&body))?)?;
        Ok(env.composite_response)
    }

    /// A composite graph request (`{"graphs":[…]}`); returns each graph's result.
    pub fn composite_graph(&self, body: &Value) -> Result<Vec<GraphResult>, SfError> {
        let env: GraphEnvelope =
            Self::json(&self.send(Method::Post, "composite/graph", Some(body))?)?;
        Ok(env.graphs)
    }

    /// sObject Collections create: up to 200 records (each with `attributes.type`).
    /// sObject Collections upsert by an external-id field (§2f; API v46.0 and later): one
    /// result per record, in order, with `created`.
    pub fn collections_upsert(
        &self,
        sobject: &str,
        field: &str,
        all_or_none: bool,
        records: &[Value],
    ) -> Result<Vec<SaveResult>, SfError> {
        let body = serde_json::json!({ "allOrNone": all_or_none, "records": records });
        Self::json(&self.send(
            Method::Patch,
            &format!("composite/sobjects/{sobject}/{field}"),
            Some(&body),
        )?)
    }

    pub fn collections_create(
        &self,
        all_or_none: bool,
        records: &[Value],
    ) -> Result<Vec<SaveResult>, SfError> {
        let body = serde_json::json!({ "allOrNone": all_or_none, "records": records });
        Self::json(&self.send(Method::Post, "composite/sobjects", Some(&body))?)
    }

    /// sObject Collections update: up to 200 records (each with `attributes.type` and `id`).
    pub fn collections_update(
        &self,
        all_or_none: bool,
        records: &[Value],
    ) -> Result<Vec<SaveResult>, SfError> {
        let body = serde_json::json!({ "allOrNone": all_or_none, "records": records });
        Self::json(&self.send(Method::Patch, "composite/sobjects", Some(&body))?)
    }
}

/// One record of the `deleted/` replication resource.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedRecord {
    pub id: String,
    #[serde(default)]
    pub deleted_date: Option<String>,
}

/// The answer of `GET sobjects/{Type}/deleted/?start=&end=` (docs/salesforce-api.md §2g, getDeleted).
/// Salesforce ignores the seconds of `start` and `end` and covers only whole past minutes, so
/// the next window must start at `latest_date_covered`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedResult {
    #[serde(default)]
    pub deleted_records: Vec<DeletedRecord>,
    #[serde(default)]
    pub earliest_date_available: Option<String>,
    #[serde(default)]
    pub latest_date_covered: Option<String>,
}

impl<H: Host> Client<H> {
    /// Records of `sobject` deleted (or merged away) between `start` and `end` (dateTime
    /// strings such as `2024-05-01T10:00:00Z`): the `deleted/` replication resource.
    pub fn get_deleted(
        &self,
        sobject: &str,
        start: &str,
        end: &str,
    ) -> Result<DeletedResult, SfError> {
        let path = format!(
            "sobjects/{sobject}/deleted/?start={}&end={}",
            encode(start),
            encode(end)
        );
        Self::json(&self.send(Method::Get, &path, None)?)
    }
}

/// Percent-encodes a query-string value.
pub(crate) fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Percent-encodes one path segment (a space is `%20` there, not `+`; `/` is encoded).
pub(crate) fn encode_segment(s: &str) -> String {
    encode(s).replace('+', "%20")
}
