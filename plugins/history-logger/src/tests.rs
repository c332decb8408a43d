//! The logger's flow against a fake host and canned Salesforce answers.

use super::*;
use pbx_plugin_sdk::bindings::pbx::plugin::contacts::{Contact, Phone};
use pbx_plugin_sdk::testing::{FakeHost, sample_context, sample_event};
use pbx_plugin_sdk::{Direction, ErrorKind, Outcome};
use serde_json::json;

const CONFIG: &str = r#"{
    "username": "integration@example.com",
    "client_id": "CONSUMER",
    "language": "ja",
    "agent_users": {"201": "005000000000001AAA"}
}"#;
const INSTANCE: &str = "https://example.my.salesforce.com";

fn host() -> FakeHost {
    let h = FakeHost::new();
    h.set_secret("salesforce.password", "pw-SECRET");
    h.set_secret("salesforce.security_token", "TOKEN-SECRET");
    h.set_secret("salesforce.client_secret", "CS-SECRET");
    h
}

fn token(h: &FakeHost) {
    h.push_response(
        200,
        &[],
        json!({"access_token":"AT","instance_url":INSTANCE,"issued_at":"1"})
            .to_string()
            .as_bytes(),
    );
}

fn created(h: &FakeHost, id: &str) {
    h.push_response(
        201,
        &[("Sforce-Limit-Info", "api-usage=20/15000")],
        json!({"id": id, "success": true, "errors": []})
            .to_string()
            .as_bytes(),
    );
}

fn sent_json(h: &FakeHost, i: usize) -> Value {
    serde_json::from_slice(h.requests()[i].body.as_deref().expect("body")).expect("json")
}

#[test]
fn inbound_call_found_by_sosl_creates_one_task() {
    let h = host();
    token(&h);
    h.push_response(
        200,
        &[],
        json!({"searchRecords": [
            {"attributes":{"type":"Lead"},"Id":"00Q000000000001AAA","Name":"L","Phone":"03-1234-5678","LastModifiedDate":"2024-01-01T00:00:00.000+0000"},
            {"attributes":{"type":"Contact"},"Id":"003000000000001AAA","Name":"C","Phone":"(03) 1234 5678","AccountId":"001000000000001AAA","LastModifiedDate":"2020-01-01T00:00:00.000+0000"}
        ]})
        .to_string()
        .as_bytes(),
    );
    created(&h, "00T000000000001AAA");
    let ev = sample_event(EventKind::Ended, Direction::Inbound);
    handle_event(&h, &sample_context(CONFIG), &ev).expect("logged");
    let reqs = h.requests();
    assert_eq!(reqs.len(), 3, "login, search, create");
    assert!(reqs[1].url.contains("/services/data/v59.0/search/?q=FIND"));
    assert_eq!(
        reqs[2].url,
        format!("{INSTANCE}/services/data/v59.0/sobjects/Task")
    );
    let task = sent_json(&h, 2);
    assert_eq!(task["Subject"], "着信");
    assert_eq!(task["WhoId"], "003000000000001AAA");
    assert_eq!(task["WhatId"], "001000000000001AAA");
    assert_eq!(task["OwnerId"], "005000000000001AAA");
    assert_eq!(task["CallType"], "Inbound");
    assert_eq!(task["CallObject"], "1001");
    assert_eq!(task["TaskSubtype"], "Call");
    assert_eq!(task["Status"], "Completed");
    assert_eq!(task["ActivityDate"], "2024-01-01");
    assert_eq!(task["CallDurationInSeconds"], 60);
    assert_eq!(
        h.state_value("task:1001").as_deref(),
        Some("00T000000000001AAA")
    );
    assert!(
        h.state_value("salesforce:session").is_some(),
        "session cached"
    );
    assert!(h.state_value("salesforce:usage").is_some(), "usage kept");
    let logs: Vec<String> = h.logs().into_iter().map(|(_, l)| l).collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("Contact 003000000000001AAA matched on Phone")),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("Task 00T000000000001AAA created")),
        "{logs:?}"
    );
    for l in &logs {
        assert!(!l.contains("SECRET"), "secret in log: {l}");
    }

    // Redelivery: nothing is sent, nothing is created.
    handle_event(&h, &sample_context(CONFIG), &ev).expect("idempotent");
    assert_eq!(h.requests().len(), 3);
}

#[test]
fn phone_book_hit_saves_the_search_and_reuses_the_session() {
    let h = host();
    h.add_contact(Contact {
        external_id: "Contact/003000000000009AAA".into(),
        record_type: "Contact".into(),
        name: "山田".into(),
        company: None,
        email: None,
        phones: vec![Phone {
            label: "Phone".into(),
            number: "03-1234-5678".into(),
        }],
        account_id: None,
        modified_at: Some(5),
    });
    token(&h);
    created(&h, "00T000000000002AAA");
    let mut ev = sample_event(EventKind::Ended, Direction::Outbound);
    ev.call.outcome = Some(Outcome::Missed);
    ev.call.duration_seconds = 0;
    handle_event(&h, &sample_context(CONFIG), &ev).expect("logged");
    assert_eq!(h.requests().len(), 2, "login, create: no search");
    let task = sent_json(&h, 1);
    assert_eq!(task["Subject"], "発信(不在)");
    assert_eq!(task["CallType"], "Outbound");
    assert_eq!(task["WhoId"], "003000000000009AAA");

    // Next call: the cached session, one request only.
    let mut ev2 = ev.clone();
    ev2.call.call_id = "1002".into();
    created(&h, "00T000000000003AAA");
    handle_event(&h, &sample_context(CONFIG), &ev2).expect("logged");
    assert_eq!(h.requests().len(), 3);
}

#[test]
fn click_to_call_wins_and_english_subjects() {
    let h = host();
    token(&h);
    created(&h, "00T000000000004AAA");
    let mut ev = sample_event(EventKind::Ended, Direction::Outbound);
    ev.call.crm_record_id = Some("00Q000000000005AAA".into());
    let cfg = CONFIG.replace("\"ja\"", "\"en\"");
    handle_event(&h, &sample_context(&cfg), &ev).expect("logged");
    let task = sent_json(&h, 1);
    assert_eq!(task["Subject"], "Outbound call");
    assert_eq!(task["WhoId"], "00Q000000000005AAA");
}

#[test]
fn internal_calls_and_other_events_are_ignored() {
    let h = host();
    let ctx = sample_context(CONFIG);
    handle_event(
        &h,
        &ctx,
        &sample_event(EventKind::Ended, Direction::Internal),
    )
    .expect("ok");
    handle_event(
        &h,
        &ctx,
        &sample_event(EventKind::Answered, Direction::Inbound),
    )
    .expect("ok");
    assert!(h.requests().is_empty());
}

#[test]
fn a_retry_without_a_marker_creates_without_a_look_up() {
    // No marker: no create was ever sent (it is committed before the request leaves), so a
    // retry spends no look-up (L-8).
    let h = host();
    token(&h);
    h.push_response(200, &[], br#"{"searchRecords":[]}"#);
    created(&h, "00T000000000001AAA");
    let mut ctx = sample_context(CONFIG);
    ctx.attempt = 3;
    handle_event(
        &h,
        &ctx,
        &sample_event(EventKind::Ended, Direction::Inbound),
    )
    .expect("ok");
    let reqs = h.requests();
    assert_eq!(reqs.len(), 3, "login, search, create");
    assert!(reqs.iter().all(|r| !r.url.contains("CallObject")));
}

#[test]
fn a_retry_finds_the_task_an_earlier_attempt_created() {
    let h = host();
    // A marker of an older version (no send time): looked up at once.
    h.state_set("task:1001", "pending:0", None).expect("state");
    token(&h);
    h.push_response(
        200,
        &[],
        br#"{"totalSize":1,"done":true,"records":[{"attributes":{"type":"Task"},"Id":"00T000000000007AAA","CallObject":"1001"}]}"#,
    );
    let mut ctx = sample_context(CONFIG);
    ctx.attempt = 1;
    handle_event(
        &h,
        &ctx,
        &sample_event(EventKind::Ended, Direction::Inbound),
    )
    .expect("ok");
    let reqs = h.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].url.contains("CallObject"), "{}", reqs[1].url);
    assert_eq!(
        h.state_value("task:1001").as_deref(),
        Some("00T000000000007AAA")
    );
}

#[test]
fn failures_have_the_right_kind() {
    // Wrong password: config.
    let h = host();
    h.push_response(
        400,
        &[],
        br#"{"error":"invalid_grant","error_description":"authentication failure"}"#,
    );
    let e = handle_event(
        &h,
        &sample_context(CONFIG),
        &sample_event(EventKind::Ended, Direction::Inbound),
    )
    .expect_err("login");
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(!e.message.contains("SECRET"));

    // Locked row on create: transient, nothing remembered.
    let h = host();
    h.add_contact(Contact {
        external_id: "Contact/003000000000009AAA".into(),
        record_type: "Contact".into(),
        name: "x".into(),
        company: None,
        email: None,
        phones: vec![Phone {
            label: "Phone".into(),
            number: "+81312345678".into(),
        }],
        account_id: None,
        modified_at: None,
    });
    token(&h);
    h.push_response(
        400,
        &[],
        br#"[{"message":"unable to obtain exclusive access to this record","errorCode":"UNABLE_TO_LOCK_ROW","fields":[]}]"#,
    );
    let e = handle_event(
        &h,
        &sample_context(CONFIG),
        &sample_event(EventKind::Ended, Direction::Inbound),
    )
    .expect_err("lock");
    assert_eq!(e.kind, ErrorKind::Transient);
    assert!(h.state_value("task:1001").is_none());

    // A bad setting: config, naming it.
    let e = handle_event(
        &host(),
        &sample_context(r#"{"agent_users": []}"#),
        &sample_event(EventKind::Ended, Direction::Inbound),
    )
    .expect_err("settings");
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.message.contains("agent_users"), "{}", e.message);
}

#[test]
fn anonymous_callers_are_logged_without_a_link() {
    let h = host();
    token(&h);
    created(&h, "00T000000000008AAA");
    let mut ev = sample_event(EventKind::Ended, Direction::Inbound);
    ev.call.caller = "anonymous".into();
    handle_event(&h, &sample_context(CONFIG), &ev).expect("logged");
    let task = sent_json(&h, 1);
    assert!(task.get("WhoId").is_none());
}

fn describe_body(status_values: &[&str], missing: &str) -> Vec<u8> {
    let fields: Vec<Value> = TASK_FIELDS
        .iter()
        .filter(|f| **f != missing)
        .map(|f| {
            let mut v =
                json!({"name": f, "type": "string", "createable": true, "updateable": true});
            if *f == "Status" {
                v["picklistValues"] = status_values
                    .iter()
                    .map(|s| json!({"value": s, "active": true}))
                    .collect();
            }
            v
        })
        .collect();
    json!({"name":"Task","createable":true,"updateable":true,"queryable":true,"fields":fields})
        .to_string()
        .into_bytes()
}

#[test]
fn settings_check_reports_every_problem() {
    let h = host();
    token(&h);
    h.push_response(200, &[], &describe_body(&["Not Started", "Completed"], ""));
    let items = check(&h, &sample_context(CONFIG));
    assert!(items.iter().all(|i| i.ok), "{items:?}");
    assert!(items.iter().any(|i| i.name == "Task.CallType"));

    let h = host();
    token(&h);
    h.push_response(200, &[], &describe_body(&["Open", "Done"], "CallType"));
    let cfg = CONFIG.replace("005000000000001AAA", "bob");
    let items = check(&h, &sample_context(&cfg));
    let bad: Vec<(&str, Option<&str>)> = items
        .iter()
        .filter(|i| !i.ok)
        .map(|i| (i.name.as_str(), i.field.as_deref()))
        .collect();
    assert_eq!(
        bad,
        [
            ("agent_users", Some("agent_users.201")),
            ("Task.CallType", Some("CallType")),
            ("task_status", Some("task_status")),
        ]
    );
}

#[test]
fn settings_check_explains_a_bad_security_token() {
    let h = host();
    h.push_response(
        400,
        &[],
        br#"{"error":"invalid_grant","error_description":"authentication failure"}"#,
    );
    let items = check(&h, &sample_context(CONFIG));
    assert_eq!(items.len(), 1);
    assert!(!items[0].ok);
    assert_eq!(items[0].name, "login");
    assert_eq!(items[0].field.as_deref(), Some("salesforce.security_token"));
    assert_eq!(
        items[0].message,
        "login failed: the password or security token is wrong (Salesforce: authentication failure)"
    );

    let items = check(&FakeHost::new(), &sample_context(CONFIG));
    assert_eq!(items[0].field.as_deref(), Some("salesforce.password"));

    let items = check(&h, &sample_context(r#"{"language":"fr"}"#));
    assert_eq!(items[0].name, "settings");
    assert_eq!(items[0].field.as_deref(), Some("language"));
}

fn ended(call_id: &str, number: &str) -> CallEvent {
    let mut ev = sample_event(EventKind::Ended, Direction::Inbound);
    ev.call.call_id = call_id.into();
    ev.call.caller = number.into();
    ev.event_id = format!("{call_id}-ended");
    ev
}

#[test]
fn a_batch_costs_one_search_and_one_collection_create() {
    let h = host();
    h.add_contact(Contact {
        external_id: "Contact/003000000000009AAA".into(),
        record_type: "Contact".into(),
        name: "山田".into(),
        company: None,
        email: None,
        phones: vec![Phone {
            label: "Phone".into(),
            number: "03-1111-0000".into(),
        }],
        account_id: None,
        modified_at: Some(1),
    });
    token(&h);
    h.push_response(
        200,
        &[],
        json!({"searchRecords": [
            {"attributes":{"type":"Lead"},"Id":"00Q000000000001AAA","Name":"L","Phone":"03-2222-0000","LastModifiedDate":"2024-01-01T00:00:00.000+0000"}
        ]})
        .to_string()
        .as_bytes(),
    );
    h.push_response(
        200,
        &[],
        json!([
            {"id":"00T000000000001AAA","success":true,"errors":[]},
            {"id":"00T000000000002AAA","success":true,"errors":[]},
            {"success":false,"errors":[{"statusCode":"UNABLE_TO_LOCK_ROW","message":"locked","fields":[]}]}
        ])
        .to_string()
        .as_bytes(),
    );
    let mut internal = ended("c4", "202");
    internal.call.direction = Direction::Internal;
    let events = vec![
        ended("c1", "0311110000"),
        ended("c2", "+81322220000"),
        ended("c3", "0333330000"),
        internal,
    ];
    let results = handle_events(&h, &sample_context(CONFIG), &events);
    assert_eq!(results.len(), 4);
    assert!(results[0].is_ok() && results[1].is_ok() && results[3].is_ok());
    assert_eq!(
        results[2].as_ref().map_err(|e| e.kind),
        Err(ErrorKind::Transient)
    );
    let reqs = h.requests();
    assert_eq!(
        reqs.len(),
        3,
        "login, one SOSL for both unknown numbers, one create"
    );
    assert!(reqs[1].url.contains("search"));
    assert!(reqs[1].url.contains("81322220000") && reqs[1].url.contains("81333330000"));
    assert!(reqs[2].url.ends_with("/composite/sobjects"));
    let body = sent_json(&h, 2);
    let recs = body["records"].as_array().expect("records");
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0]["WhoId"], "003000000000009AAA");
    assert_eq!(recs[1]["WhoId"], "00Q000000000001AAA");
    assert!(recs[2].get("WhoId").is_none());
    assert_eq!(recs[0]["attributes"]["type"], "Task");
    assert_eq!(
        h.state_value("task:c1").as_deref(),
        Some("00T000000000001AAA")
    );
    assert_eq!(
        h.state_value("task:c3"),
        None,
        "Salesforce answered c3's failure: nothing was created, the marker goes"
    );
}

#[test]
fn memo_update_patches_the_task_and_retries_a_locked_row() {
    let h = host();
    h.state_set("task:1001", "00T000000000001AAA", None)
        .expect("state");
    token(&h);
    let locked = br#"[{"message":"unable to obtain exclusive access to this record","errorCode":"UNABLE_TO_LOCK_ROW","fields":[]}]"#;
    h.push_response(400, &[], locked);
    h.push_response(204, &[], b"");
    let cfg = r#"{"username":"u@x","client_id":"C","custom_fields":{"memo":"Memo__c"}}"#;
    let mut ev = sample_event(EventKind::MemoUpdated, Direction::Inbound);
    ev.memo = vec!["A".into(), "B".into()];
    handle_event(&h, &sample_context(cfg), &ev).expect("updated after one retry");
    let reqs = h.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs[2].url.ends_with("/sobjects/Task/00T000000000001AAA"));
    let patch = sent_json(&h, 2);
    assert_eq!(patch["Memo__c"], "A;B");
    // Still locked after every retry: transient, for the host to retry.
    for _ in 0..4 {
        h.push_response(400, &[], locked);
    }
    let e = handle_event(&h, &sample_context(cfg), &ev).expect_err("locked");
    assert_eq!(e.kind, ErrorKind::Transient);
}

/// A host whose plugin state is full for the call -> Task links (`task:*`).
struct FullState<'a>(&'a FakeHost);

impl Host for FullState<'_> {
    fn http_send(
        &self,
        req: &pbx_plugin_sdk::http::Request,
    ) -> Result<pbx_plugin_sdk::http::Response, pbx_plugin_sdk::http::HttpError> {
        self.0.http_send(req)
    }
    fn secret(
        &self,
        name: &str,
    ) -> Result<String, pbx_plugin_sdk::bindings::pbx::plugin::secrets::SecretError> {
        self.0.secret(name)
    }
    fn state_get(&self, key: &str) -> Result<Option<String>, StateError> {
        self.0.state_get(key)
    }
    fn state_set(&self, key: &str, value: &str, ttl: Option<u32>) -> Result<(), StateError> {
        if key.starts_with("task:") {
            return Err(StateError::TooLarge(4 << 20));
        }
        self.0.state_set(key, value, ttl)
    }
    fn state_delete(&self, key: &str) -> Result<(), StateError> {
        self.0.state_delete(key)
    }
    fn contacts_upsert(
        &self,
        entries: &[Contact],
    ) -> Result<u32, pbx_plugin_sdk::bindings::pbx::plugin::contacts::ContactsError> {
        self.0.contacts_upsert(entries)
    }
    fn contacts_delete(
        &self,
        external_id: &str,
    ) -> Result<(), pbx_plugin_sdk::bindings::pbx::plugin::contacts::ContactsError> {
        self.0.contacts_delete(external_id)
    }
    fn contacts_get(
        &self,
        external_id: &str,
    ) -> Result<Contact, pbx_plugin_sdk::bindings::pbx::plugin::contacts::ContactsError> {
        self.0.contacts_get(external_id)
    }
    fn contacts_lookup(
        &self,
        number: &str,
    ) -> Result<Vec<Contact>, pbx_plugin_sdk::bindings::pbx::plugin::contacts::ContactsError> {
        self.0.contacts_lookup(number)
    }
    fn log(&self, level: Level, message: &str) {
        self.0.log(level, message)
    }
    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
}

const NO_TASK: &[u8] = br#"{"totalSize":0,"done":true,"records":[]}"#;

#[test]
fn a_full_state_costs_a_look_up_not_the_call_log() {
    let h = host();
    token(&h);
    h.push_response(200, &[], br#"{"searchRecords":[]}"#);
    h.push_response(200, &[], NO_TASK);
    created(&h, "00T000000000001AAA");
    let ev = sample_event(EventKind::Ended, Direction::Inbound);
    handle_event(&FullState(&h), &sample_context(CONFIG), &ev).expect("logged");
    let reqs = h.requests();
    assert_eq!(
        reqs.len(),
        4,
        "login, search, look-up by CallObject, create"
    );
    assert!(reqs[2].url.contains("CallObject"), "{}", reqs[2].url);
    assert!(reqs[3].url.ends_with("/sobjects/Task"));
    let logs: Vec<String> = h.logs().into_iter().map(|(_, l)| l).collect();
    assert!(logs.iter().any(|l| l.contains("state is full")), "{logs:?}");

    // Delivered again (after a crash, the create answered but not recorded): found, not
    // created again.
    h.push_response(200, &[], br#"{"searchRecords":[]}"#);
    h.push_response(
        200,
        &[],
        br#"{"totalSize":1,"done":true,"records":[{"attributes":{"type":"Task"},"Id":"00T000000000001AAA","CallObject":"1001"}]}"#,
    );
    handle_event(&FullState(&h), &sample_context(CONFIG), &ev).expect("idempotent");
    let reqs = h.requests();
    assert_eq!(reqs.len(), 6, "search, look-up; no create");
    assert!(reqs[5].url.contains("CallObject"));
}

#[test]
fn a_full_state_in_a_batch_looks_the_tasks_up_before_the_create() {
    let h = host();
    token(&h);
    h.push_response(200, &[], br#"{"searchRecords":[]}"#);
    // c1 was created by an attempt that crashed; c2 was not.
    h.push_response(
        200,
        &[],
        br#"{"totalSize":1,"done":true,"records":[{"attributes":{"type":"Task"},"Id":"00T000000000001AAA","CallObject":"c1"}]}"#,
    );
    h.push_response(
        200,
        &[],
        json!([{"id":"00T000000000002AAA","success":true,"errors":[]}])
            .to_string()
            .as_bytes(),
    );
    let events = vec![ended("c1", "0311110000"), ended("c2", "0322220000")];
    let results = handle_events(&FullState(&h), &sample_context(CONFIG), &events);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let reqs = h.requests();
    assert_eq!(reqs.len(), 4, "login, search, look-up, create");
    assert!(reqs[2].url.contains("CallObject") && reqs[2].url.contains("c2"));
    let body = sent_json(&h, 3);
    let recs = body["records"].as_array().expect("records");
    assert_eq!(recs.len(), 1, "only c2 is created: {recs:?}");
    assert_eq!(recs[0]["CallObject"], "c2");
}

/// The marker an earlier attempt left when it sent its create at `sent_at` (10-s timeout).
fn pending_marker(sent_at: i64) -> String {
    let mut cfg = pbx_salesforce::SalesforceConfig::password("u", "c");
    cfg.timeout_ms = Some(10_000);
    Pending::sent_now(sent_at, &cfg).encode()
}

#[test]
fn a_young_pending_marker_waits_out_the_settle_window_before_the_look_up() {
    // An earlier attempt sent its create at t = 1,000,000 and was killed; Salesforce may
    // commit it for three timeouts (30 s). A delivery 5 s later must neither create nor look
    // up (the look-up could come before the commit): it waits, and asks to come back.
    let h = host();
    h.set_now_ms(1_000_000);
    h.state_set("task:1001", &pending_marker(1_000_000), None)
        .expect("state");
    h.set_now_ms(1_005_000);
    let ev = sample_event(EventKind::Ended, Direction::Inbound);
    let err = handle_event(&h, &sample_context(CONFIG), &ev).expect_err("waits");
    assert_eq!(err.kind, ErrorKind::Transient);
    assert_eq!(err.retry_after_ms, Some(25_100));
    assert!(
        h.requests().is_empty(),
        "no request while the create may settle"
    );
    assert!(
        err.message.contains("the Task of call 1001"),
        "{}",
        err.message
    );

    // After the window: looked up by CallObject and adopted, not created.
    h.set_now_ms(1_031_000);
    token(&h);
    h.push_response(
        200,
        &[],
        br#"{"totalSize":1,"done":true,"records":[{"attributes":{"type":"Task"},"Id":"00T000000000007AAA","CallObject":"1001"}]}"#,
    );
    handle_event(&h, &sample_context(CONFIG), &ev).expect("adopted");
    let reqs = h.requests();
    assert_eq!(reqs.len(), 2, "login, look-up; no create");
    assert!(reqs[1].url.contains("CallObject"), "{}", reqs[1].url);
    assert_eq!(
        h.state_value("task:1001").as_deref(),
        Some("00T000000000007AAA")
    );
}

#[test]
fn in_a_batch_only_the_call_whose_create_may_settle_waits() {
    let h = host();
    h.set_now_ms(2_000_000);
    h.state_set("task:c1", &pending_marker(1_995_000), None)
        .expect("state");
    token(&h);
    h.push_response(200, &[], br#"{"searchRecords":[]}"#);
    h.push_response(
        200,
        &[],
        json!([{"id":"00T000000000002AAA","success":true,"errors":[]}])
            .to_string()
            .as_bytes(),
    );
    let events = vec![ended("c1", "0311110000"), ended("c2", "0322220000")];
    let results = handle_events(&h, &sample_context(CONFIG), &events);
    assert_eq!(
        results[0].as_ref().map_err(|e| (e.kind, e.retry_after_ms)),
        Err((ErrorKind::Transient, Some(25_100)))
    );
    assert!(results[1].is_ok(), "{results:?}");
    let body = sent_json(&h, 2);
    let recs = body["records"].as_array().expect("records");
    assert_eq!(recs.len(), 1, "only c2 is created: {recs:?}");
    assert_eq!(recs[0]["CallObject"], "c2");
    assert!(
        h.state_value("task:c2")
            .is_some_and(|v| v == "00T000000000002AAA")
    );
}

#[test]
fn a_create_that_timed_out_keeps_its_marker_one_refused_before_sending_drops_it() {
    for (error, kept) in [
        (pbx_plugin_sdk::http::HttpError::Timeout, true),
        (
            pbx_plugin_sdk::http::HttpError::Connect(format!(
                "{}connection refused",
                pbx_plugin_sdk::http::NOT_SENT_PREFIX
            )),
            false,
        ),
    ] {
        let h = host();
        h.set_now_ms(3_000_000);
        token(&h);
        h.push_response(200, &[], br#"{"searchRecords":[]}"#);
        h.push_error(error.clone());
        let ev = sample_event(EventKind::Ended, Direction::Inbound);
        let err = handle_event(&h, &sample_context(CONFIG), &ev).expect_err("fails");
        assert_eq!(err.kind, ErrorKind::Transient, "{error:?}");
        let marker = h.state_value("task:1001");
        assert_eq!(
            marker.as_deref().map(Marker::is_pending),
            kept.then_some(true),
            "{error:?}: {marker:?}"
        );
    }
}

const UPSERT_CONFIG: &str = r#"{
    "username": "integration@example.com",
    "client_id": "CONSUMER",
    "language": "ja",
    "task_external_id_field": "PBX_Call_Id__c"
}"#;

#[test]
fn with_an_external_id_field_a_task_is_upserted_by_the_call_id_without_a_marker() {
    let h = host();
    token(&h);
    h.push_response(200, &[], br#"{"searchRecords":[]}"#);
    h.push_response(
        201,
        &[],
        br#"{"id":"00T000000000003AAA","success":true,"errors":[],"created":true}"#,
    );
    let ev = sample_event(EventKind::Ended, Direction::Inbound);
    let mut ctx = sample_context(UPSERT_CONFIG);
    ctx.attempt = 2;
    handle_event(&h, &ctx, &ev).expect("upserted");
    let reqs = h.requests();
    assert_eq!(
        reqs.len(),
        3,
        "login, search, upsert: no look-up on a retry"
    );
    assert_eq!(reqs[2].method, pbx_plugin_sdk::http::Method::Patch);
    assert_eq!(
        reqs[2].url,
        format!("{INSTANCE}/services/data/v59.0/sobjects/Task/PBX_Call_Id__c/1001")
    );
    assert_eq!(sent_json(&h, 2)["CallObject"], "1001");
    assert_eq!(
        h.state_value("task:1001").as_deref(),
        Some("00T000000000003AAA")
    );

    // A bad field name is the tenant's setting at fault, named; nothing is sent.
    let h = host();
    let bad = UPSERT_CONFIG.replace("PBX_Call_Id__c", "x/../Account");
    let err = handle_event(&h, &sample_context(&bad), &ev).expect_err("config");
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(err.message.contains("task_external_id_field"), "{err:?}");
}

#[test]
fn with_an_external_id_field_a_batch_is_one_collections_upsert() {
    let h = host();
    token(&h);
    h.push_response(200, &[], br#"{"searchRecords":[]}"#);
    h.push_response(
        200,
        &[],
        json!([
            {"id":"00T000000000001AAA","success":true,"errors":[],"created":true},
            {"id":"00T000000000002AAA","success":true,"errors":[],"created":false}
        ])
        .to_string()
        .as_bytes(),
    );
    let events = vec![ended("c1", "0311110000"), ended("c2", "0322220000")];
    let results = handle_events(&h, &sample_context(UPSERT_CONFIG), &events);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let reqs = h.requests();
    assert_eq!(reqs.len(), 3, "login, search, one upsert");
    assert_eq!(reqs[2].method, pbx_plugin_sdk::http::Method::Patch);
    assert!(
        reqs[2]
            .url
            .ends_with("/composite/sobjects/Task/PBX_Call_Id__c"),
        "{}",
        reqs[2].url
    );
    let body = sent_json(&h, 2);
    let recs = body["records"].as_array().expect("records");
    assert_eq!(recs[0]["PBX_Call_Id__c"], "c1");
    assert_eq!(recs[1]["PBX_Call_Id__c"], "c2");
    assert_eq!(
        h.state_value("task:c2").as_deref(),
        Some("00T000000000002AAA")
    );
    assert!(
        h.state_value("task:c1")
            .is_some_and(|v| !v.starts_with("pending:"))
    );
}

#[test]
fn an_upsert_that_turns_out_an_update_is_sent_again_without_the_create_only_fields() {
    // A repeat after a crash: the Task exists, so the upsert is an update, and Salesforce
    // refuses TaskSubtype (create-only). Sent again without it: the same Task, updated.
    let h = host();
    token(&h);
    h.push_response(200, &[], br#"{"searchRecords":[]}"#);
    h.push_response(
        400,
        &[],
        br#"[{"message":"Unable to create/update fields: TaskSubtype.","errorCode":"INVALID_FIELD_FOR_INSERT_UPDATE","fields":["TaskSubtype"]}]"#,
    );
    h.push_response(
        200,
        &[],
        br#"{"id":"00T000000000003AAA","success":true,"errors":[],"created":false}"#,
    );
    let ev = sample_event(EventKind::Ended, Direction::Inbound);
    handle_event(&h, &sample_context(UPSERT_CONFIG), &ev).expect("updated");
    let reqs = h.requests();
    assert_eq!(
        reqs.len(),
        4,
        "login, search, upsert, upsert without TaskSubtype"
    );
    assert_eq!(sent_json(&h, 2)["TaskSubtype"], "Call");
    assert!(sent_json(&h, 3).get("TaskSubtype").is_none());
    assert_eq!(sent_json(&h, 3)["CallObject"], "1001");
    assert_eq!(
        h.state_value("task:1001").as_deref(),
        Some("00T000000000003AAA")
    );
}
