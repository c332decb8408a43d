//! An org (one per PBX tenant): its settings, schema, records, sessions, API accounting and
//! fault queue, and the test-facing handle [`Org`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::dml::{self, DmlCtx};
use crate::errors::ApiError;
use crate::faults::{Fault, FaultKind, FaultQueue, Scope};
use crate::ids;
use crate::query::Cursors;
use crate::schema::{CustomField, CustomFieldType, Schema, SchemaError};
use crate::store::Record;

/// Locks a mutex, ignoring poisoning: a panicking test thread must not wedge the server.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn random_alnum(n: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// Settings of an org and of the connected app the integration uses.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct OrgSpec {
    /// 18-character `00D…` id (a 15-character one is extended).
    pub org_id: String,
    /// The integration user; created as a User record when the org is added.
    pub username: String,
    pub password: String,
    /// Appended to the password for the password flow and SOAP login (docs/salesforce-api.md §1a).
    pub security_token: String,
    pub client_id: String,
    pub client_secret: String,
    /// Valid refresh tokens for the refresh-token flow (issued earlier by a web-server flow).
    pub refresh_tokens: Vec<String>,
    /// The "certificate" of the connected app: RSA public key PEM, SPKI or PKCS#1.
    pub jwt_public_key_pem: Option<String>,
    /// Users pre-authorised for the JWT flow; others get "user hasn't approved this consumer".
    pub jwt_preauthorized_users: Vec<String>,
    /// JWT `aud` must be https://test.salesforce.com if true, https://login.salesforce.com if false.
    pub sandbox: bool,
    pub person_accounts: bool,
    /// Rolling 24 h allocation; beyond it REST answers 403 REQUEST_LIMIT_EXCEEDED.
    pub daily_api_limit: u64,
    /// Sessions expire after this many seconds without use.
    pub session_seconds: u64,
    /// false: the user lacks "API Enabled" — OAuth logins still succeed, REST calls get
    /// 403 API_DISABLED_FOR_ORG and SOAP login() is refused.
    pub api_enabled: bool,
    /// false: an edition without API access (Professional without the add-on): REST calls get
    /// 403 API_DISABLED_FOR_ORG "The REST API is not enabled for this Organization.".
    pub rest_api_available: bool,
}

impl Default for OrgSpec {
    fn default() -> OrgSpec {
        let org_id = ids::random("00D");
        let username = format!(
            "integration@{}.standin.example",
            org_id[..15].to_ascii_lowercase()
        );
        OrgSpec {
            org_id,
            username: username.clone(),
            password: "standin-Passw0rd".to_string(),
            security_token: random_alnum(25),
            client_id: format!("3MVG9{}", random_alnum(80)),
            client_secret: random_alnum(64).to_ascii_uppercase(),
            refresh_tokens: vec![format!("5Aep861{}", random_alnum(80))],
            jwt_public_key_pem: None,
            jwt_preauthorized_users: vec![username],
            sandbox: false,
            person_accounts: false,
            daily_api_limit: 15_000,
            session_seconds: 7_200,
            api_enabled: true,
            rest_api_available: true,
        }
    }
}

/// One request as the org saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoggedRequest {
    pub method: String,
    /// Path plus query string.
    pub path: String,
    /// HTTP status; 0 when the connection was dropped without a response.
    pub status: u16,
    /// Whether it counted toward the org's API usage.
    pub counted: bool,
    pub at: DateTime<Utc>,
}

/// An issued session (OAuth access token or SOAP session id).
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub user_id: String,
    pub last_used: DateTime<Utc>,
}

/// Everything of an org that requests read and write, behind one lock (composite requests
/// hold it for their whole run, which is what makes allOrNone rollback simple).
pub struct OrgData {
    pub schema: Schema,
    pub store: crate::store::Store,
    pub(crate) cursors: Cursors,
    pub(crate) sessions: HashMap<String, Session>,
    pub(crate) refresh_tokens: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Accounting {
    pub api_calls: u64,
    /// Requests counted against the daily allocation (what `Sforce-Limit-Info` reports).
    pub used: u64,
    pub log: Vec<LoggedRequest>,
}

pub(crate) struct OrgInner {
    pub id: String,
    pub spec: OrgSpec,
    pub user_id: String,
    pub data: Mutex<OrgData>,
    pub acct: Mutex<Accounting>,
    pub faults: Mutex<FaultQueue>,
}

/// A handle on one org; cheap to clone.
#[derive(Clone)]
pub struct Org {
    pub(crate) inner: Arc<OrgInner>,
}

impl std::fmt::Debug for Org {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Org")
            .field("id", &self.inner.id)
            .field("username", &self.inner.spec.username)
            .finish()
    }
}

/// Errors of the seeding API ([`Org::try_insert`] and friends).
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{0}")]
    Api(#[from] ApiError),
    #[error("{0}")]
    Schema(#[from] SchemaError),
    #[error("record fields must be a JSON object")]
    NotAnObject,
    #[error("invalid org id {0}")]
    BadOrgId(String),
}

fn split_name(username: &str) -> (String, String) {
    let local = username.split('@').next().unwrap_or(username);
    let mut parts = local.split(['.', '_', '-']).filter(|p| !p.is_empty());
    let cap = |s: &str| {
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    };
    let first = parts
        .next()
        .map(cap)
        .unwrap_or_else(|| "Integration".to_string());
    let last = parts.next().map(cap).unwrap_or_else(|| "User".to_string());
    (first, last)
}

impl Org {
    pub(crate) fn create(mut spec: OrgSpec) -> Result<Org, SeedError> {
        let id = ids::normalize(&spec.org_id)
            .filter(|id| id.starts_with("00D"))
            .ok_or_else(|| SeedError::BadOrgId(spec.org_id.clone()))?;
        spec.org_id = id.clone();
        let mut data = OrgData {
            schema: Schema::standard(spec.person_accounts),
            store: crate::store::Store::default(),
            cursors: Cursors::default(),
            sessions: HashMap::new(),
            refresh_tokens: spec.refresh_tokens.clone(),
        };
        let (first, last) = split_name(&spec.username);
        let mut user = Map::new();
        user.insert("Username".into(), Value::String(spec.username.clone()));
        user.insert("FirstName".into(), Value::String(first));
        user.insert("LastName".into(), Value::String(last));
        user.insert("Email".into(), Value::String(spec.username.clone()));
        user.insert("Alias".into(), Value::String("integ".into()));
        // The integration user creates itself; its own id is not known yet, so the audit
        // fields are fixed up right after.
        let user_id = dml::create(
            &mut data,
            "User",
            &user,
            &DmlCtx::seed("005000000000000AAA"),
        )?;
        if let Some(r) = data.store.get_mut(&user_id) {
            for f in ["CreatedById", "LastModifiedById"] {
                r.fields.insert(f.into(), Value::String(user_id.clone()));
            }
        }
        Ok(Org {
            inner: Arc::new(OrgInner {
                id,
                spec,
                user_id,
                data: Mutex::new(data),
                acct: Mutex::new(Accounting::default()),
                faults: Mutex::new(FaultQueue::default()),
            }),
        })
    }

    pub(crate) fn data(&self) -> MutexGuard<'_, OrgData> {
        lock(&self.inner.data)
    }

    /// The 18-character org id.
    pub fn id(&self) -> String {
        self.inner.id.clone()
    }

    /// The settings the org was created with (org id normalised).
    pub fn spec(&self) -> OrgSpec {
        self.inner.spec.clone()
    }

    /// Id of the integration user (the User whose username is `spec.username`); records
    /// created through the API are owned by it unless OwnerId says otherwise.
    pub fn login_user_id(&self) -> String {
        self.inner.user_id.clone()
    }

    /// Seeds a record as if created in the Salesforce UI: not counted as an API call, not
    /// subject to field-level security or required-field rules; system fields such as
    /// `CreatedDate`, `LastModifiedDate` or an explicit `Id` (correct checksum and key
    /// prefix) may be given. Returns the 18-character id.
    ///
    /// # Panics
    /// On an unknown object or field, a value of the wrong type, or a bad reference; use
    /// [`Org::try_insert`] to get the error instead.
    pub fn insert(&self, sobject: &str, fields: Value) -> String {
        match self.try_insert(sobject, fields) {
            Ok(id) => id,
            Err(e) => panic!("sf-standin: cannot seed {sobject}: {e}"),
        }
    }

    /// [`Org::insert`] without panicking.
    pub fn try_insert(&self, sobject: &str, fields: Value) -> Result<String, SeedError> {
        let Value::Object(map) = fields else {
            return Err(SeedError::NotAnObject);
        };
        let mut data = self.data();
        Ok(dml::create(
            &mut data,
            sobject,
            &map,
            &DmlCtx::seed(&self.inner.user_id),
        )?)
    }

    /// An edit made in Salesforce (bumps LastModifiedDate unless one is given).
    ///
    /// # Panics
    /// As [`Org::insert`]; see [`Org::try_update`].
    pub fn update(&self, sobject: &str, id: &str, fields: Value) {
        if let Err(e) = self.try_update(sobject, id, fields) {
            panic!("sf-standin: cannot update {sobject} {id}: {e}");
        }
    }

    pub fn try_update(&self, sobject: &str, id: &str, fields: Value) -> Result<(), SeedError> {
        let Value::Object(map) = fields else {
            return Err(SeedError::NotAnObject);
        };
        let mut data = self.data();
        Ok(dml::update(
            &mut data,
            sobject,
            id,
            &map,
            &DmlCtx::seed(&self.inner.user_id),
        )?)
    }

    /// A deletion in Salesforce (the record goes to the recycle bin: visible to queryAll and
    /// the `deleted` replication resource). Cascades like Salesforce (an account's contacts
    /// and cases, activities).
    ///
    /// # Panics
    /// If the record does not exist or is already deleted; see [`Org::try_delete`].
    pub fn delete(&self, sobject: &str, id: &str) {
        if let Err(e) = self.try_delete(sobject, id) {
            panic!("sf-standin: cannot delete {sobject} {id}: {e}");
        }
    }

    pub fn try_delete(&self, sobject: &str, id: &str) -> Result<(), SeedError> {
        self.try_delete_at(sobject, id, Utc::now())
    }

    /// A deletion that happened at a given time (the `deleted` replication resource only
    /// covers whole minutes in the past, so tests of incremental sync need past deletions).
    ///
    /// # Panics
    /// As [`Org::delete`].
    pub fn delete_at(&self, sobject: &str, id: &str, at: DateTime<Utc>) {
        if let Err(e) = self.try_delete_at(sobject, id, at) {
            panic!("sf-standin: cannot delete {sobject} {id}: {e}");
        }
    }

    pub fn try_delete_at(
        &self,
        sobject: &str,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), SeedError> {
        let mut data = self.data();
        let ctx = DmlCtx {
            now: at,
            ..DmlCtx::seed(&self.inner.user_id)
        };
        Ok(dml::delete(&mut data, sobject, id, &ctx)?)
    }

    /// A merge in Salesforce: the loser is deleted with `MasterRecordId` = master and its
    /// children move to the master.
    ///
    /// # Panics
    /// If either record is missing; see [`Org::try_merge`].
    pub fn merge(&self, sobject: &str, master_id: &str, loser_id: &str) {
        if let Err(e) = self.try_merge(sobject, master_id, loser_id) {
            panic!("sf-standin: cannot merge {sobject}: {e}");
        }
    }

    pub fn try_merge(
        &self,
        sobject: &str,
        master_id: &str,
        loser_id: &str,
    ) -> Result<(), SeedError> {
        let mut data = self.data();
        Ok(dml::merge(
            &mut data,
            sobject,
            master_id,
            loser_id,
            &DmlCtx::seed(&self.inner.user_id),
        )?)
    }

    fn record_value(data: &OrgData, rec: &Record) -> Value {
        let mut out = Map::new();
        if let Some(obj) = data.schema.object(&rec.sobject) {
            for f in &obj.fields {
                out.insert(f.name.clone(), data.store.value(rec, &f.name));
            }
        }
        Value::Object(out)
    }

    /// Live records of an object with every field (null where unset), in creation order.
    pub fn records(&self, sobject: &str) -> Vec<Value> {
        let data = self.data();
        data.store
            .iter_object(sobject, false)
            .map(|r| Org::record_value(&data, r))
            .collect()
    }

    /// Deleted (recycle-bin) records of an object.
    pub fn deleted_records(&self, sobject: &str) -> Vec<Value> {
        let data = self.data();
        data.store
            .iter_object(sobject, true)
            .filter(|r| r.is_deleted())
            .map(|r| Org::record_value(&data, r))
            .collect()
    }

    /// A live record by id (15 or 18 characters), every field.
    pub fn get(&self, sobject: &str, id: &str) -> Option<Value> {
        let id = ids::normalize(id)?;
        let data = self.data();
        data.store
            .get(&id)
            .filter(|r| !r.is_deleted() && r.sobject.eq_ignore_ascii_case(sobject))
            .map(|r| Org::record_value(&data, r))
    }

    /// Declares a custom object (name ending in `__c`); returns its key prefix (`a00`, `a01`…
    /// in order of declaration).
    ///
    /// # Panics
    /// On a bad or duplicate name.
    pub fn add_custom_object(&self, name: &str) -> String {
        match self.data().schema.add_custom_object(name, None) {
            Ok(p) => p,
            Err(e) => panic!("sf-standin: {e}"),
        }
    }

    /// Declares a custom object with a given key prefix.
    pub fn add_custom_object_with_prefix(
        &self,
        name: &str,
        key_prefix: &str,
    ) -> Result<String, SchemaError> {
        self.data().schema.add_custom_object(name, Some(key_prefix))
    }

    /// Declares a custom field (`__c` appended if missing) on a standard or custom object.
    ///
    /// # Panics
    /// On an unknown object or a duplicate field; see [`Org::add_custom_field_with`].
    pub fn add_custom_field(&self, sobject: &str, name: &str, field_type: CustomFieldType) {
        if let Err(e) = self.add_custom_field_with(sobject, CustomField::new(name, field_type)) {
            panic!("sf-standin: {e}");
        }
    }

    /// Declares a custom field with options (required, label, external id).
    pub fn add_custom_field_with(
        &self,
        sobject: &str,
        field: CustomField,
    ) -> Result<(), SchemaError> {
        self.data().schema.add_custom_field(sobject, field)
    }

    /// Every counted REST / SOAP / OAuth request of this org since creation or
    /// [`Org::reset_counters`].
    pub fn api_calls(&self) -> u64 {
        lock(&self.inner.acct).api_calls
    }

    /// The daily allocation used, as `Sforce-Limit-Info` reports it (`api-usage=N/MAX`).
    pub fn api_usage(&self) -> (u64, u64) {
        let a = lock(&self.inner.acct);
        (a.used, self.inner.spec.daily_api_limit)
    }

    pub fn request_log(&self) -> Vec<LoggedRequest> {
        lock(&self.inner.acct).log.clone()
    }

    /// Zeroes the API call counter, the daily usage and the request log.
    pub fn reset_counters(&self) {
        let mut a = lock(&self.inner.acct);
        a.api_calls = 0;
        a.used = 0;
        a.log.clear();
    }

    /// Sets how many calls remain in the daily allocation (usage = limit - remaining).
    pub fn set_remaining_api(&self, remaining: u64) {
        let mut a = lock(&self.inner.acct);
        a.used = self.inner.spec.daily_api_limit.saturating_sub(remaining);
    }

    /// Invalidates every issued session: the next request with one gets 401 INVALID_SESSION_ID.
    pub fn expire_sessions(&self) {
        self.data().sessions.clear();
    }

    /// Issues a session for the integration user without a login request (not counted).
    pub fn issue_session(&self) -> String {
        self.new_session(&self.inner.user_id.clone())
    }

    /// Revokes a refresh token (the next refresh with it gets invalid_grant).
    pub fn revoke_refresh_token(&self, token: &str) {
        self.data().refresh_tokens.retain(|t| t != token);
    }

    /// Queues a fault (see [`crate::faults`] for matching).
    pub fn inject(&self, fault: Fault) {
        lock(&self.inner.faults).push(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.inner.faults).clear();
    }

    /// Field-level security: the field disappears from describe; using it is INVALID_FIELD.
    pub fn deny_field(&self, sobject: &str, field: &str) {
        self.data().schema.deny_field(sobject, field);
    }

    /// The object becomes inaccessible: sobjects URLs answer NOT_FOUND, SOQL/SOSL INVALID_TYPE,
    /// describeGlobal omits it, and lookups to it fail with INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY.
    pub fn deny_object(&self, sobject: &str) {
        self.data().schema.deny_object(sobject);
    }

    // ---- crate-internal: sessions, accounting, faults ----------------------------------

    pub(crate) fn new_session(&self, user_id: &str) -> String {
        let token = format!(
            "{}!AR{}.{}",
            &self.inner.id[..15],
            random_alnum(40),
            random_alnum(52)
        );
        self.data().sessions.insert(
            token.clone(),
            Session {
                user_id: user_id.to_string(),
                last_used: Utc::now(),
            },
        );
        token
    }

    /// The user of a live session, touching it (sessions time out after inactivity).
    pub(crate) fn check_session(&self, token: &str) -> Option<String> {
        let now = Utc::now();
        let timeout = chrono::Duration::seconds(self.inner.spec.session_seconds as i64);
        let mut data = self.data();
        let expired = match data.sessions.get_mut(token) {
            None => return None,
            Some(s) if now - s.last_used > timeout => true,
            Some(s) => {
                s.last_used = now;
                return Some(s.user_id.clone());
            }
        };
        if expired {
            data.sessions.remove(token);
        }
        None
    }

    pub(crate) fn end_session(&self, token: &str) {
        self.data().sessions.remove(token);
    }

    /// Counts a REST request against the allocation; `Err` when it is exhausted.
    pub(crate) fn charge(&self) -> Result<(), ()> {
        let mut a = lock(&self.inner.acct);
        if a.used >= self.inner.spec.daily_api_limit {
            return Err(());
        }
        a.used += 1;
        a.api_calls += 1;
        Ok(())
    }

    /// Counts a login (OAuth token or SOAP login) without refusing it.
    pub(crate) fn charge_login(&self) {
        let mut a = lock(&self.inner.acct);
        a.used += 1;
        a.api_calls += 1;
    }

    pub(crate) fn limit_info(&self) -> String {
        let a = lock(&self.inner.acct);
        format!("api-usage={}/{}", a.used, self.inner.spec.daily_api_limit)
    }

    pub(crate) fn log(&self, method: &str, path: &str, status: u16, counted: bool) {
        lock(&self.inner.acct).log.push(LoggedRequest {
            method: method.to_string(),
            path: path.to_string(),
            status,
            counted,
            at: Utc::now(),
        });
    }

    pub(crate) fn take_fault(&self, method: &str, path: &str, scope: Scope) -> Option<FaultKind> {
        lock(&self.inner.faults).take(method, path, scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seeding_and_reading() {
        let org = Org::create(OrgSpec::default()).expect("org");
        assert!(org.id().starts_with("00D"));
        assert_eq!(org.id().len(), 18);
        let users = org.records("User");
        assert_eq!(users.len(), 1);
        assert_eq!(users[0]["Username"], json!(org.spec().username));
        let acc = org.insert("Account", json!({"Name": "Acme", "Phone": "03-1234-5678"}));
        assert!(acc.starts_with("001"));
        let c = org.insert(
            "Contact",
            json!({"FirstName": "Taro", "LastName": "Yamada", "AccountId": acc,
                   "LastModifiedDate": "2020-01-01T00:00:00Z"}),
        );
        let rec = org.get("Contact", &c).expect("contact");
        assert_eq!(rec["Name"], json!("Taro Yamada"));
        assert_eq!(
            rec["LastModifiedDate"],
            json!("2020-01-01T00:00:00.000+0000")
        );
        assert_eq!(rec["OwnerId"], json!(org.login_user_id()));
        org.update("Contact", &c, json!({"Phone": "090-1111-2222"}));
        let rec = org.get("Contact", &c).expect("contact");
        assert_ne!(
            rec["LastModifiedDate"],
            json!("2020-01-01T00:00:00.000+0000")
        );
        org.delete("Account", &acc);
        assert!(org.get("Contact", &c).is_none(), "cascade");
        assert_eq!(org.deleted_records("Contact").len(), 1);
        assert!(org.try_insert("Account", json!({"Nope__c": 1})).is_err());
    }

    #[test]
    fn explicit_ids_and_merge() {
        let org = Org::create(OrgSpec::default()).expect("org");
        let a = org.insert("Account", json!({"Id": "001B000001Lp1FxIAJ", "Name": "A"}));
        assert_eq!(a, "001B000001Lp1FxIAJ");
        assert!(
            org.try_insert("Account", json!({"Id": "001B000001Lp1FxIAX", "Name": "B"}))
                .is_err()
        );
        let b = org.insert("Account", json!({"Name": "B"}));
        let c = org.insert("Contact", json!({"LastName": "X", "AccountId": b}));
        org.merge("Account", &a, &b);
        assert_eq!(org.get("Contact", &c).expect("c")["AccountId"], json!(a));
        assert_eq!(
            org.deleted_records("Account")[0]["MasterRecordId"],
            json!(a)
        );
    }

    #[test]
    fn sessions_and_accounting() {
        let org = Org::create(OrgSpec::default()).expect("org");
        let t = org.issue_session();
        assert!(t.starts_with(&org.id()[..15]));
        assert_eq!(org.check_session(&t), Some(org.login_user_id()));
        org.expire_sessions();
        assert_eq!(org.check_session(&t), None);
        org.set_remaining_api(1);
        assert!(org.charge().is_ok());
        assert!(org.charge().is_err());
        assert_eq!(org.api_calls(), 1);
        assert_eq!(org.limit_info(), "api-usage=15000/15000");
    }
}
