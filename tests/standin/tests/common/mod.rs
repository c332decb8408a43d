//! Shared helpers for the stand-in's integration tests: a running stand-in with one org and a
//! session, a small HTTP wrapper over reqwest, the recordings directory, and a recursive
//! "same JSON shape" assertion.

#![allow(dead_code)]

use std::path::PathBuf;

use reqwest::Method;
use serde_json::Value;
use sf_standin::{Org, OrgSpec, StandIn};

pub const V: &str = "v60.0";

pub struct Env {
    pub sf: StandIn,
    pub org: Org,
    pub token: String,
    pub http: reqwest::Client,
    pub base: String,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The first errorCode of a REST error array.
    pub fn error_code(&self) -> Option<String> {
        self.body
            .get(0)
            .and_then(|e| e.get("errorCode"))
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    pub fn error_message(&self) -> Option<String> {
        self.body
            .get(0)
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// `api-usage=N/MAX` -> (N, MAX)
    pub fn api_usage(&self) -> Option<(u64, u64)> {
        let h = self.header("sforce-limit-info")?;
        let v = h.strip_prefix("api-usage=")?;
        let (n, m) = v.split_once('/')?;
        Some((n.parse().ok()?, m.parse().ok()?))
    }
}

pub async fn env() -> Env {
    env_with(OrgSpec::default()).await
}

pub async fn env_with(spec: OrgSpec) -> Env {
    let sf = StandIn::start().await.expect("stand-in starts");
    let org = sf.add_org(spec);
    let token = org.issue_session();
    let base = sf.base_url();
    Env {
        sf,
        org,
        token,
        http: reqwest::Client::new(),
        base,
    }
}

impl Env {
    pub fn data(&self, rest: &str) -> String {
        format!("/services/data/{V}/{rest}")
    }

    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.expect("request completes");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        Resp {
            status,
            headers,
            text,
            body,
        }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Resp {
        self.send_with(method, path, body, Some(&self.token.clone()), &[])
            .await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, None).await
    }

    /// `GET query?q=…` with the query URL-encoded.
    pub async fn query(&self, soql: &str) -> Resp {
        let q: String = url::form_urlencoded::byte_serialize(soql.as_bytes()).collect();
        self.get(&self.data(&format!("query?q={q}"))).await
    }

    pub async fn search(&self, sosl: &str) -> Resp {
        let q: String = url::form_urlencoded::byte_serialize(sosl.as_bytes()).collect();
        self.get(&self.data(&format!("search/?q={q}"))).await
    }

    /// Posts a form to the token endpoint.
    pub async fn token(&self, form: &[(&str, &str)]) -> Resp {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let r = self
            .http
            .post(format!("{}/services/oauth2/token", self.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("token request completes");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            body,
        }
    }
}

/// The WireMock recordings of a real org, carried by the repository in
/// `tests/fixtures/salesforce-recorded/` (see its README for their origin and licence).
pub fn recordings_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/salesforce-recorded"
    ));
    assert!(
        dir.is_dir(),
        "the golden tests need the recordings in {}, which the repository carries",
        dir.display()
    );
    dir
}

/// Reads one recording.
pub fn recording(name: &str) -> Value {
    let path = recordings_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Same keys recursively, same JSON types, same array lengths.
pub fn assert_same_shape(expected: &Value, actual: &Value, path: &str) {
    assert_eq!(
        kind(expected),
        kind(actual),
        "{path}: expected {}, got {} ({actual})",
        kind(expected),
        kind(actual)
    );
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let ek: Vec<&String> = e.keys().collect();
            let ak: Vec<&String> = a.keys().collect();
            let mut eks = ek.clone();
            let mut aks = ak.clone();
            eks.sort();
            aks.sort();
            assert_eq!(eks, aks, "{path}: keys differ");
            for (k, ev) in e {
                assert_same_shape(ev, &a[k], &format!("{path}.{k}"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "{path}: array lengths differ");
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                assert_same_shape(ev, av, &format!("{path}[{i}]"));
            }
        }
        _ => {}
    }
}

/// Whether `s` is an 18-character Salesforce id with a valid checksum.
pub fn is_id(s: &str) -> bool {
    sf_standin::ids::normalize(s).as_deref() == Some(s)
}
