//! Every recorded Salesforce response (tests/fixtures/salesforce-recorded) goes through the
//! real client against a fake host that answers with the recording: the client must build the
//! recorded request (method and path) and turn the recorded answer into the right typed result
//! or error.

mod common;

use base64::Engine;
use pbx_plugin_sdk::http::Method;
use pbx_plugin_sdk::testing::FakeHost;
use pbx_salesforce::{ApiUsage, Client, SfError};
use serde_json::Value;

struct Fixture {
    name: String,
    method: String,
    path: String,
    query: Option<String>,
    request_body: Option<Value>,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn load() -> Vec<Fixture> {
    let dir = common::fixtures_dir();
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("read fixtures")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    entries.sort();
    for path in entries {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let req = &v["request"];
        let resp = &v["response"];
        let path_s = req["url"]
            .as_str()
            .or_else(|| req["urlPath"].as_str())
            .expect("url")
            .to_string();
        let mut headers = Vec::new();
        if let Some(h) = resp["headers"].as_object() {
            for (k, val) in h {
                match val {
                    Value::String(s) => headers.push((k.to_ascii_lowercase(), s.clone())),
                    Value::Array(a) => {
                        for s in a.iter().filter_map(Value::as_str) {
                            headers.push((k.to_ascii_lowercase(), s.to_string()));
                        }
                    }
                    _ => {}
                }
            }
        }
        let body = match (resp["body"].as_str(), resp["base64Body"].as_str()) {
            (Some(b), _) => b.as_bytes().to_vec(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .expect("base64"),
            _ => Vec::new(),
        };
        let request_body = req["bodyPatterns"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|p| p["equalToJson"].as_str())
            .map(|s| serde_json::from_str(s).expect("request json"));
        out.push(Fixture {
            name: path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned(),
            method: req["method"].as_str().expect("method").to_string(),
            path: path_s,
            query: req["queryParameters"]["q"]["equalTo"]
                .as_str()
                .map(str::to_string),
            request_body,
            status: u16::try_from(resp["status"].as_u64().expect("status")).expect("u16"),
            headers,
            body,
        });
    }
    out
}

/// What the client returned, reduced to something comparable.
#[derive(Debug, PartialEq)]
enum Outcome {
    Query {
        total: u64,
        records: usize,
        next: Option<String>,
    },
    Created(String),
    Done,
    Graph {
        ok: bool,
        statuses: Vec<u16>,
    },
    Raw(usize),
    Error(SfError),
}

fn run(fx: &Fixture) -> (Outcome, FakeHost) {
    let cfg = common::config();
    let host = common::host_with_session(&cfg, "EXAMPLE-TOKEN");
    let headers: Vec<(&str, &str)> = fx
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    host.push_response(fx.status, &headers, &fx.body);
    let client = Client::new(&host, cfg);
    let rest = fx
        .path
        .strip_prefix("/services/data/v53.0/")
        .expect("data path");
    let outcome = match (fx.method.as_str(), rest) {
        ("GET", "query") => client
            .query::<Value>(fx.query.as_deref().expect("q"))
            .map(|q| Outcome::Query {
                total: q.total_size,
                records: q.records.len(),
                next: q.next_records_url,
            }),
        ("GET", r) if r.starts_with("query/") => {
            client
                .query_more::<Value>(&fx.path)
                .map(|q| Outcome::Query {
                    total: q.total_size,
                    records: q.records.len(),
                    next: q.next_records_url,
                })
        }
        ("POST", "composite/graph") => client
            .composite_graph(fx.request_body.as_ref().unwrap_or(&Value::Null))
            .map(|g| Outcome::Graph {
                ok: g.iter().all(|x| x.is_successful),
                statuses: g
                    .iter()
                    .flat_map(|x| x.graph_response.composite_response.iter())
                    .map(|r| r.http_status_code)
                    .collect(),
            }),
        ("POST", r) if r.starts_with("sobjects/") => client
            .create(
                r.trim_start_matches("sobjects/"),
                fx.request_body.as_ref().unwrap_or(&Value::Null),
            )
            .map(Outcome::Created),
        ("PATCH", r) if r.starts_with("sobjects/") => {
            let (object, id) = r
                .trim_start_matches("sobjects/")
                .split_once('/')
                .expect("object/id");
            client
                .update(object, id, fx.request_body.as_ref().unwrap_or(&Value::Null))
                .map(|()| Outcome::Done)
        }
        ("DELETE", r) if r.starts_with("sobjects/") => {
            let (object, id) = r
                .trim_start_matches("sobjects/")
                .split_once('/')
                .expect("object/id");
            client.delete(object, id).map(|()| Outcome::Done)
        }
        ("GET", _) => client
            .send(Method::Get, rest, None)
            .map(|r| Outcome::Raw(r.body.len())),
        other => panic!("{}: no client call for {other:?}", fx.name),
    }
    .unwrap_or_else(Outcome::Error);
    // The client sent exactly the recorded request.
    let reqs = host.requests();
    assert_eq!(reqs.len(), 1, "{}", fx.name);
    let sent = &reqs[0];
    let url = url::Url::parse(&sent.url).expect("url");
    assert_eq!(url.path(), fx.path, "{}", fx.name);
    assert_eq!(format!("{}", sent.method), fx.method, "{}", fx.name);
    assert_eq!(
        sent.header_value("authorization"),
        Some("Bearer EXAMPLE-TOKEN"),
        "{}",
        fx.name
    );
    if let Some(q) = &fx.query {
        let got = url
            .query_pairs()
            .find(|(k, _)| k == "q")
            .map(|(_, v)| v.into_owned());
        assert_eq!(got.as_deref(), Some(q.as_str()), "{}", fx.name);
    }
    if let Some(body) = &fx.request_body {
        let got: Value =
            serde_json::from_slice(sent.body.as_deref().expect("body")).expect("json body");
        assert_eq!(&got, body, "{}", fx.name);
        assert_eq!(sent.header_value("content-type"), Some("application/json"));
    }
    (outcome, host)
}

fn validation(code: &str, fields: &[&str]) -> impl Fn(&Outcome) -> bool {
    let code = code.to_string();
    let fields: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
    move |o| {
        matches!(o, Outcome::Error(SfError::Validation { status: 400, code: c, fields: f, .. })
            if *c == code && *f == fields)
    }
}

#[test]
fn every_recording_parses_into_typed_results() {
    let fixtures = load();
    assert!(fixtures.len() >= 27, "found {} fixtures", fixtures.len());
    let mut checked = 0;
    for fx in &fixtures {
        let (outcome, _host) = run(fx);
        let ok: Box<dyn Fn(&Outcome) -> bool> = match fx.name.as_str() {
            "query.json" => Box::new(|o| {
                *o == Outcome::Query {
                    total: 5,
                    records: 5,
                    next: None,
                }
            }),
            "query-with-associated-data.json" => Box::new(|o| {
                *o == Outcome::Query {
                    total: 1,
                    records: 1,
                    next: None,
                }
            }),
            "query-with-subquery.json" => Box::new(|o| {
                *o == Outcome::Query {
                    total: 5,
                    records: 5,
                    next: None,
                }
            }),
            "query-binary-data.json" => Box::new(|o| {
                *o == Outcome::Query {
                    total: 1,
                    records: 1,
                    next: None,
                }
            }),
            "query-with-next-records-url.json" => Box::new(|o| {
                *o == Outcome::Query {
                    total: 10000,
                    records: 2000,
                    next: Some("/services/data/v53.0/query/01gB000003OCxSPIA1-2000".into()),
                }
            }),
            "query-with-next-records-url-2.json" => Box::new(|o| {
                *o == Outcome::Query {
                    total: 10000,
                    records: 2000,
                    next: Some("/services/data/v53.0/query/01gB000003OCxSPIA1-4000".into()),
                }
            }),
            "query-malformed-soql.json" => Box::new(validation("MALFORMED_QUERY", &[])),
            "query-unknown-column.json" => Box::new(validation("INVALID_FIELD", &[])),
            "query-unexpected-response.json" => Box::new(|o| {
                matches!(o, Outcome::Error(SfError::NotFound { code, message })
                    if code.is_empty() && message.starts_with("<!doctype html>"))
            }),
            "query-binary-data-subsequent-request.json" => {
                Box::new(|o| matches!(o, Outcome::Raw(n) if *n > 0))
            }
            "create.json" => Box::new(|o| *o == Outcome::Created("a00B000000FSkcvIAD".into())),
            "create-binary-data.json" => {
                Box::new(|o| *o == Outcome::Created("0687S00000AX5WVQA1".into()))
            }
            "create-invalid-field.json" => Box::new(validation("INVALID_FIELD", &[])),
            "create-invalid-picklist-value.json" => Box::new(validation(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                &["Rating__c"],
            )),
            "create-required-field-missing.json" => {
                Box::new(validation("REQUIRED_FIELD_MISSING", &["Website__c"]))
            }
            "create-unknown-object.json" => Box::new(
                |o| matches!(o, Outcome::Error(SfError::NotFound { code, .. }) if code == "NOT_FOUND"),
            ),
            "update.json" | "update-binary-data.json" | "delete.json" => {
                Box::new(|o| *o == Outcome::Done)
            }
            "update-invalid-field.json" => Box::new(validation("INVALID_FIELD", &[])),
            "update-malformed-id.json" => Box::new(validation("MALFORMED_ID", &["Id"])),
            "delete-already-deleted.json" => Box::new(|o| {
                matches!(o, Outcome::Error(SfError::NotFound { code, message })
                    if code == "ENTITY_IS_DELETED" && message == "entity is deleted")
            }),
            "composite-graph-create.json" | "composite-graph-create-tree.json" => Box::new(
                |o| matches!(o, Outcome::Graph { ok: true, statuses } if statuses.iter().all(|s| *s == 201)),
            ),
            "composite-graph-single-update.json" | "composite-graph-single-delete.json" => {
                Box::new(|o| {
                    *o == Outcome::Graph {
                        ok: true,
                        statuses: vec![204],
                    }
                })
            }
            "composite-graph-single-create-error.json" => Box::new(|o| {
                *o == Outcome::Graph {
                    ok: false,
                    statuses: vec![400],
                }
            }),
            other => panic!("unexpected fixture {other}: add its expectation"),
        };
        assert!(ok(&outcome), "{}: {outcome:?}", fx.name);
        checked += 1;
    }
    assert_eq!(checked, fixtures.len());
}

#[test]
fn limit_info_is_read_from_every_recording() {
    for fx in load() {
        let Some((_, raw)) = fx.headers.iter().find(|(k, _)| k == "sforce-limit-info") else {
            continue;
        };
        let cfg = common::config();
        let host = common::host_with_session(&cfg, "EXAMPLE-TOKEN");
        let headers: Vec<(&str, &str)> = fx
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        host.push_response(fx.status, &headers, &fx.body);
        let client = Client::new(&host, cfg);
        let _ = client.send(
            Method::Get,
            fx.path.trim_start_matches("/services/data/v53.0/"),
            None,
        );
        let expected = ApiUsage::parse(raw).expect("recorded header parses");
        assert_eq!(client.usage(), Some(expected), "{}", fx.name);
        assert!(
            expected.max > 0 && expected.used > 0,
            "{}: {expected:?}",
            fx.name
        );
    }
}

#[test]
fn composite_graph_errors_are_typed() {
    let fx = load()
        .into_iter()
        .find(|f| f.name == "composite-graph-single-create-error.json")
        .expect("fixture");
    let cfg = common::config();
    let host = common::host_with_session(&cfg, "EXAMPLE-TOKEN");
    host.push_response(fx.status, &[], &fx.body);
    let graphs = Client::new(&host, cfg)
        .composite_graph(&serde_json::json!({}))
        .expect("graph");
    let err = graphs[0].graph_response.composite_response[0]
        .result()
        .expect_err("error");
    assert!(
        matches!(&err, SfError::Validation { code, fields, .. }
            if code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" && fields == &["Rating__c"]),
        "{err:?}"
    );
    assert_eq!(err.kind(), pbx_plugin_sdk::ErrorKind::Permanent);
}

#[test]
fn paging_follows_next_records_url() {
    let fixtures = load();
    let page = |name: &str| {
        fixtures
            .iter()
            .find(|f| f.name == name)
            .expect("fixture")
            .body
            .clone()
    };
    let cfg = common::config();
    let host = common::host_with_session(&cfg, "EXAMPLE-TOKEN");
    host.push_response(200, &[], &page("query-with-next-records-url.json"));
    host.push_response(200, &[], &page("query-with-next-records-url-2.json"));
    host.push_response(
        200,
        &[],
        br#"{"totalSize":10000,"done":true,"records":[{"attributes":{"type":"random__c"},"RANDOM_1__c":"LAST"}]}"#,
    );
    let client = Client::new(&host, cfg);
    let all: Vec<Value> = client
        .query_all("SELECT RANDOM_1__c, RANDOM_2__c FROM Random__c", 100_000)
        .expect("all");
    assert_eq!(all.len(), 4001);
    assert_eq!(all[4000]["RANDOM_1__c"], "LAST");
    let paths: Vec<String> = host
        .requests()
        .iter()
        .map(|r| url::Url::parse(&r.url).expect("url").path().to_string())
        .collect();
    assert_eq!(
        paths,
        [
            "/services/data/v53.0/query",
            "/services/data/v53.0/query/01gB000003OCxSPIA1-2000",
            "/services/data/v53.0/query/01gB000003OCxSPIA1-4000",
        ]
    );
    // A cap stops paging early.
    let cfg = common::config();
    let host = common::host_with_session(&cfg, "EXAMPLE-TOKEN");
    host.push_response(200, &[], &page("query-with-next-records-url.json"));
    let some: Vec<Value> = Client::new(&host, cfg)
        .query_all("SELECT Id FROM Random__c", 1500)
        .expect("capped");
    assert_eq!(some.len(), 1500);
    assert_eq!(host.requests().len(), 1);
}
