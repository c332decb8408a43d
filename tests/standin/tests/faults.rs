//! Fault injection observed by a real reqwest client: each kind, matching by method and
//! path, FIFO consumption, per-org isolation, auth endpoints, accounting of faulted requests.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use sf_standin::{Fault, FaultKind, OrgSpec};

#[tokio::test]
async fn latency_then_normal_answer() {
    let e = env().await;
    e.org
        .inject(Fault::new(FaultKind::Latency(Duration::from_millis(400))));
    let t = Instant::now();
    let r = e.get(&e.data("limits")).await;
    assert!(t.elapsed() >= Duration::from_millis(400));
    assert_eq!(r.status, 200);
    let t = Instant::now();
    e.get(&e.data("limits")).await;
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "consumed after one hit"
    );
    assert_eq!(e.org.api_calls(), 2, "a slow request still counts");
}

#[tokio::test]
async fn a_slow_create_whose_client_gave_up_still_creates_the_record() {
    // As Salesforce does: the work of a request goes on when its client stops waiting.
    let e = env().await;
    e.org.inject(
        Fault::new(FaultKind::Latency(Duration::from_millis(600)))
            .method("POST")
            .path_contains("/sobjects/Task"),
    );
    let sent = e
        .http
        .post(format!("{}{}", e.base, e.data("sobjects/Task")))
        .bearer_auth(&e.token)
        .json(&json!({"Subject": "Call", "CallObject": "late-1"}))
        .timeout(Duration::from_millis(150))
        .send()
        .await;
    assert!(sent.is_err(), "the client timed out: {sent:?}");
    assert!(e.org.records("Task").is_empty(), "not yet");
    tokio::time::sleep(Duration::from_millis(900)).await;
    let tasks = e.org.records("Task");
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0]["CallObject"], "late-1");
}

#[tokio::test]
async fn server_errors_have_realistic_bodies_and_do_not_count() {
    let e = env().await;
    e.org.inject(Fault::new(FaultKind::Status(503)).times(2));
    e.org.inject(Fault::new(FaultKind::Status(500)));
    for _ in 0..2 {
        let r = e.get(&e.data("sobjects")).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.error_code().as_deref(), Some("SERVER_UNAVAILABLE"));
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json;charset=UTF-8")
        );
    }
    let r = e.get(&e.data("sobjects")).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.error_code().as_deref(), Some("UNKNOWN_EXCEPTION"));
    assert!(r.error_message().expect("msg").contains("ErrorId"));
    let r = e.get(&e.data("sobjects")).await;
    assert_eq!(r.status, 200);
    assert_eq!(e.org.api_calls(), 1);
    let log = e.org.request_log();
    assert_eq!(
        log.iter()
            .map(|l| (l.status, l.counted))
            .collect::<Vec<_>>(),
        vec![(503, false), (503, false), (500, false), (200, true)]
    );
}

#[tokio::test]
async fn dropped_connection_is_a_transport_error() {
    let e = env().await;
    e.org.inject(
        Fault::new(FaultKind::DropConnection)
            .method("POST")
            .path_contains("/sobjects/Task"),
    );
    // A GET is not matched.
    assert_eq!(e.get(&e.data("sobjects/Task/describe")).await.status, 200);
    let res = e
        .http
        .post(format!("{}{}", e.base, e.data("sobjects/Task")))
        .bearer_auth(&e.token)
        .json(&json!({"Subject": "call"}))
        .send()
        .await;
    let err = res.expect_err("the connection is closed without a response");
    assert!(!err.is_timeout() && !err.is_status(), "{err:?}");
    assert!(e.org.records("Task").is_empty(), "nothing was written");
    // The next request is answered.
    let r = e
        .post(&e.data("sobjects/Task"), &json!({"Subject": "call"}))
        .await;
    assert_eq!(r.status, 201);
    let log = e.org.request_log();
    assert_eq!(log[1].status, 0, "logged as no response");
    assert!(!log[1].counted);
}

#[tokio::test]
async fn expire_session_fault_invalidates_the_token() {
    let e = env().await;
    e.org.inject(Fault::new(FaultKind::ExpireSession));
    let r = e.query("SELECT Id FROM Account").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body,
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );
    let r = e.query("SELECT Id FROM Account").await;
    assert_eq!(
        r.status, 401,
        "the session stays expired: the client must log in again"
    );
    let s = e.org.spec();
    let pw = format!("{}{}", s.password, s.security_token);
    let t = e
        .token(&[
            ("grant_type", "password"),
            ("client_id", &s.client_id),
            ("client_secret", &s.client_secret),
            ("username", &s.username),
            ("password", &pw),
        ])
        .await;
    let token = t.body["access_token"].as_str().expect("token");
    let r = e
        .send_with(
            reqwest::Method::GET,
            &e.data("query?q=SELECT+Id+FROM+Account"),
            None,
            Some(token),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn request_limit_and_lock_row_faults() {
    let e = env().await;
    let t = e.org.insert("Task", json!({"Subject": "x"}));
    e.org.inject(Fault::new(FaultKind::RequestLimitExceeded));
    let r = e.get(&e.data("limits")).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body,
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
    assert!(r.api_usage().is_some());
    e.org
        .inject(Fault::new(FaultKind::UnableToLockRow).method("PATCH"));
    let path = e.data(&format!("sobjects/Task/{t}"));
    let r = e.patch(&path, &json!({"Description": "memo"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code().as_deref(), Some("UNABLE_TO_LOCK_ROW"));
    assert_eq!(r.body[0]["fields"], json!([]));
    assert_eq!(
        e.org.get("Task", &t).expect("t")["Description"],
        serde_json::Value::Null
    );
    let r = e.patch(&path, &json!({"Description": "memo"})).await;
    assert_eq!(r.status, 204, "retried, not dropped");
    assert_eq!(
        e.org.api_calls(),
        2,
        "the lock failure and the retry count; the 403 does not"
    );
}

#[tokio::test]
async fn refused_connections_for_a_while() {
    let e = env().await;
    e.org.inject(Fault::new(FaultKind::RefuseConnections(
        Duration::from_millis(1200),
    )));
    let first = e
        .http
        .get(format!("{}{}", e.base, e.data("limits")))
        .bearer_auth(&e.token)
        .send()
        .await;
    assert!(first.is_err(), "the triggering request gets no answer");
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let refused = fresh
        .get(format!("{}{}", e.base, e.data("limits")))
        .bearer_auth(&e.token)
        .send()
        .await;
    let err = refused.expect_err("refused");
    assert!(err.is_connect(), "connection refused: {err:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let back = fresh
        .get(format!("{}{}", e.base, e.data("limits")))
        .bearer_auth(&e.token)
        .send()
        .await
        .expect("back");
    assert_eq!(back.status().as_u16(), 200);
}

#[tokio::test]
async fn faults_belong_to_one_org_and_match_in_order() {
    let e = env().await;
    let other = e.sf.add_org(OrgSpec::default());
    let other_token = other.issue_session();
    other.inject(Fault::new(FaultKind::Status(503)));
    assert_eq!(
        e.get(&e.data("limits")).await.status,
        200,
        "another org's fault does not apply"
    );
    let r = e
        .send_with(
            reqwest::Method::GET,
            &e.data("limits"),
            None,
            Some(&other_token),
            &[],
        )
        .await;
    assert_eq!(r.status, 503);
    // First matching fault wins; non-matching ones wait.
    e.org
        .inject(Fault::new(FaultKind::Status(500)).path_contains("/search"));
    e.org.inject(Fault::new(FaultKind::Status(502)));
    e.org.inject(Fault::new(FaultKind::Status(504)));
    assert_eq!(e.get(&e.data("limits")).await.status, 502);
    assert_eq!(
        e.search("FIND {0312345678} IN PHONE FIELDS").await.status,
        500
    );
    assert_eq!(e.get(&e.data("limits")).await.status, 504);
    assert_eq!(e.get(&e.data("limits")).await.status, 200);
    e.org.inject(Fault::new(FaultKind::Status(503)).times(5));
    e.org.clear_faults();
    assert_eq!(e.get(&e.data("limits")).await.status, 200);
}

#[tokio::test]
async fn faults_on_login_endpoints() {
    let e = env().await;
    let s = e.org.spec();
    let pw = format!("{}{}", s.password, s.security_token);
    let form = [
        ("grant_type", "password"),
        ("client_id", s.client_id.as_str()),
        ("client_secret", s.client_secret.as_str()),
        ("username", s.username.as_str()),
        ("password", pw.as_str()),
    ];
    e.org
        .inject(Fault::new(FaultKind::Status(503)).path_contains("/services/oauth2/token"));
    let r = e.token(&form).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body,
        json!({"error": "unknown_error", "error_description": "retry your request"})
    );
    e.org.inject(Fault::new(FaultKind::DropConnection));
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let dropped = e
        .http
        .post(format!("{}/services/oauth2/token", e.base))
        .body(body)
        .send()
        .await;
    assert!(dropped.is_err());
    assert_eq!(e.token(&form).await.status, 200);
    assert_eq!(e.org.api_calls(), 1, "only the answered login counted");
}

#[tokio::test]
async fn control_api_injects_faults_and_reports_counters() {
    let e = env().await;
    let ctl = format!("{}/__standin/orgs/{}", e.base, e.org.id());
    let r = e
        .http
        .post(format!("{ctl}/faults"))
        .json(&json!({"kind": "status", "status": 503, "times": 1, "path_contains": "/limits"}))
        .send()
        .await
        .expect("inject");
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(e.get(&e.data("limits")).await.status, 503);
    assert_eq!(e.get(&e.data("limits")).await.status, 200);
    let c: serde_json::Value = e
        .http
        .get(format!("{ctl}/counters"))
        .send()
        .await
        .expect("c")
        .json()
        .await
        .expect("json");
    assert_eq!(c["api_calls"], json!(1));
    assert_eq!(c["api_limit"], json!(15000));
    assert_eq!(c["requests"].as_array().map(Vec::len), Some(2));
    let bad = e
        .http
        .post(format!("{ctl}/faults"))
        .json(&json!({"kind": "meteor"}))
        .send()
        .await
        .expect("bad");
    assert_eq!(bad.status().as_u16(), 400);
}
