//! sObject resources (docs/salesforce-api.md §2c, §3, §5): Task call logs and Cases as the
//! integrations write them, validation errors, read/update/delete, describe, upsert, the
//! replication resources and limits.

mod common;

use chrono::{Duration, Timelike, Utc};
use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sf_standin::{CustomField, CustomFieldType};

fn err(r: &Resp) -> (u16, String, String, Option<Value>) {
    (
        r.status,
        r.error_code().unwrap_or_default(),
        r.error_message().unwrap_or_default(),
        r.body[0].get("fields").cloned(),
    )
}

#[tokio::test]
async fn task_call_log_round_trip() {
    let e = env().await;
    let acc = e.org.insert("Account", json!({"Name": "Acme"}));
    let con = e
        .org
        .insert("Contact", json!({"LastName": "Yamada", "AccountId": acc}));
    let body = json!({
        "Subject": "着信", "Description": "memo", "WhoId": con, "WhatId": acc,
        "TaskSubtype": "Call", "ActivityDate": "2026-11-21", "CallDurationInSeconds": 125,
        "CallType": "Inbound", "CallObject": "pbx-call-42", "CallDisposition": "answered", "Status": "Completed"
    });
    let r = e.post(&e.data("sobjects/Task"), &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("00T") && is_id(&id));
    assert_eq!(r.body, json!({"id": id, "success": true, "errors": []}));
    assert_eq!(
        r.header("location"),
        Some(format!("/services/data/v60.0/sobjects/Task/{id}"))
    );
    let g = e.get(&e.data(&format!("sobjects/Task/{id}"))).await;
    assert_eq!(g.status, 200);
    let t = &g.body;
    assert_eq!(
        t["attributes"],
        json!({"type": "Task", "url": format!("/services/data/v60.0/sobjects/Task/{id}")})
    );
    assert_eq!(t["Priority"], json!("Normal"), "defaulted");
    assert_eq!(t["IsClosed"], json!(true));
    assert_eq!(t["AccountId"], json!(acc));
    assert_eq!(t["OwnerId"], json!(e.org.login_user_id()));
    assert_eq!(t["CallDurationInSeconds"], json!(125));
    assert_eq!(t["ActivityDate"], json!("2026-11-21"));
    assert_eq!(t["IsDeleted"], json!(false));
    assert!(
        t["CreatedDate"]
            .as_str()
            .expect("created")
            .ends_with("+0000")
    );
    let only = e
        .get(&e.data(&format!("sobjects/Task/{id}?fields=Subject,Status")))
        .await;
    assert_eq!(
        only.body,
        json!({"attributes": t["attributes"], "Subject": "着信", "Status": "Completed"})
    );
    // Defaults when not given.
    let r = e
        .post(&e.data("sobjects/Task"), &json!({"Subject": "x"}))
        .await;
    let t2 = e
        .org
        .get("Task", r.body["id"].as_str().expect("id"))
        .expect("task");
    assert_eq!(
        (
            t2["Status"].clone(),
            t2["Priority"].clone(),
            t2["TaskSubtype"].clone()
        ),
        (json!("Not Started"), json!("Normal"), json!("Task"))
    );
    // Update the memo: 204, no body, LastModifiedDate moves.
    let before = e.org.get("Task", &id).expect("task")["LastModifiedDate"].clone();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let p = e
        .patch(
            &e.data(&format!("sobjects/Task/{id}")),
            &json!({"Description": "memo 2"}),
        )
        .await;
    assert_eq!(p.status, 204);
    assert!(p.text.is_empty());
    assert!(p.header("content-type").is_none());
    let after = e.org.get("Task", &id).expect("task");
    assert_eq!(after["Description"], json!("memo 2"));
    assert_ne!(after["LastModifiedDate"], before);
    // TaskSubtype is settable on create only.
    let p = e
        .patch(
            &e.data(&format!("sobjects/Task/{id}")),
            &json!({"TaskSubtype": "Task"}),
        )
        .await;
    assert_eq!(p.status, 400);
    assert_eq!(
        p.error_code().as_deref(),
        Some("INVALID_FIELD_FOR_INSERT_UPDATE")
    );
}

#[tokio::test]
async fn validation_errors() {
    let e = env().await;
    let acc = e.org.insert("Account", json!({"Name": "Acme"}));
    let con = e.org.insert("Contact", json!({"LastName": "C"}));
    let lead = e
        .org
        .insert("Lead", json!({"LastName": "L", "Company": "Co"}));
    let inactive = e.org.insert(
        "User",
        json!({"LastName": "Gone", "Username": "gone@x.example", "IsActive": false}),
    );
    let deleted = e.org.insert("Contact", json!({"LastName": "D"}));
    e.org.delete("Contact", &deleted);
    let missing = sf_standin::ids::generate("003");
    let task = e.data("sobjects/Task");
    let long = "x".repeat(256);
    type Want<'a> = (u16, &'a str, String, Option<Value>);
    let cases: Vec<(&str, Value, Want)> = vec![
        (&task, json!({"CallType": "Incoming"}), (400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "Call Type: bad value for restricted picklist field: Incoming".into(), Some(json!(["CallType"])))),
        (&task, json!({"TaskSubtype": "Meeting"}), (400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "Task Subtype: bad value for restricted picklist field: Meeting".into(), Some(json!(["TaskSubtype"])))),
        (&task, json!({"WhoId": acc}), (400, "FIELD_INTEGRITY_EXCEPTION", format!("Name ID: id value of incorrect type: {acc}"), Some(json!(["WhoId"])))),
        (&task, json!({"WhatId": con}), (400, "FIELD_INTEGRITY_EXCEPTION", format!("Related To ID: id value of incorrect type: {con}"), Some(json!(["WhatId"])))),
        (&task, json!({"WhoId": "garbage"}), (400, "MALFORMED_ID", "Name ID: id value of incorrect type: garbage".into(), Some(json!(["WhoId"])))),
        (&task, json!({"WhoId": missing}), (400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id".into(), Some(json!([])))),
        (&task, json!({"WhoId": deleted}), (400, "ENTITY_IS_DELETED", "entity is deleted".into(), Some(json!(["WhoId"])))),
        (&task, json!({"OwnerId": inactive}), (400, "INACTIVE_OWNER_OR_USER", format!("operation performed with inactive user [{inactive}] as owner of task"), Some(json!([])))),
        (&task, json!({"Id": lead}), (400, "INVALID_FIELD", "The Id field should not be specified in the sobject data.".into(), None)),
        (&task, json!({"Nope__c": 1}), (400, "INVALID_FIELD", "No such column 'Nope__c' on sobject of type Task".into(), None)),
        (&task, json!({"IsClosed": true}), (400, "INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: IsClosed. Please check the security settings of this field and verify that it is read/write for your profile or permission set.".into(), Some(json!(["IsClosed"])))),
        (&task, json!({"Subject": long}), (400, "STRING_TOO_LONG", format!("Subject: data value too large: {long} (max length=255)"), Some(json!(["Subject"])))),
    ];
    for (path, body, want) in cases {
        let r = e.post(path, &body).await;
        let (s, c, m, f) = err(&r);
        assert_eq!(
            (s, c.as_str(), m, f),
            (want.0, want.1, want.2, want.3),
            "{body}"
        );
    }
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "sobjects/Contact",
            json!({"FirstName": "No last"}),
            400,
            "REQUIRED_FIELD_MISSING",
        ),
        (
            "sobjects/Contact",
            json!({"LastName": "X", "Name": "Y"}),
            400,
            "INVALID_FIELD_FOR_INSERT_UPDATE",
        ),
        (
            "sobjects/Contact",
            json!({"LastName": "X", "Email": "not-an-email"}),
            400,
            "INVALID_EMAIL_ADDRESS",
        ),
        (
            "sobjects/Task",
            json!({"CallDurationInSeconds": "abc"}),
            400,
            "JSON_PARSER_ERROR",
        ),
        (
            "sobjects/Task",
            json!({"ActivityDate": "2024-13-45"}),
            400,
            "JSON_PARSER_ERROR",
        ),
        (
            "sobjects/Case",
            json!({"CaseNumber": "1"}),
            400,
            "INVALID_FIELD_FOR_INSERT_UPDATE",
        ),
        (
            "sobjects/Account",
            json!({"Phone": "1"}),
            400,
            "REQUIRED_FIELD_MISSING",
        ),
        (
            "sobjects/User",
            json!({"LastName": "U"}),
            400,
            "INVALID_TYPE_FOR_OPERATION",
        ),
        ("sobjects/Nope__c", json!({"Name": "x"}), 404, "NOT_FOUND"),
    ];
    for (path, body, status, code) in cases {
        let r = e.post(&e.data(path), &body).await;
        assert_eq!(
            (r.status, r.error_code().as_deref()),
            (status, Some(code)),
            "{path} {body}: {}",
            r.text
        );
    }
    let r = e
        .post(&e.data("sobjects/Lead"), &json!({"FirstName": "x"}))
        .await;
    assert_eq!(
        r.error_message().as_deref(),
        Some("Required fields are missing: [LastName, Company]")
    );
    assert_eq!(r.body[0]["fields"], json!(["LastName", "Company"]));
    let r = e
        .send_with(
            Method::POST,
            &e.data("sobjects/Task"),
            None,
            Some(&e.token),
            &[("Content-Type", "application/json")],
        )
        .await;
    assert_eq!(r.error_code().as_deref(), Some("JSON_PARSER_ERROR"));
    let raw = e
        .http
        .post(format!("{}{}", e.base, e.data("sobjects/Task")))
        .bearer_auth(&e.token)
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(raw.status().as_u16(), 400);
    // Nothing was written by the failures.
    assert_eq!(e.org.records("Task").len(), 0);
}

#[tokio::test]
async fn case_create_and_update() {
    let e = env().await;
    let con = e.org.insert(
        "Contact",
        json!({"LastName": "Caller", "Phone": "03-1234-5678", "MobilePhone": "090-0000-0000"}),
    );
    let r = e
        .post(
            &e.data("sobjects/Case"),
            &json!({"Origin": "Phone", "ContactId": con, "Subject": "Queue entry"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("500"));
    let c = e.get(&e.data(&format!("sobjects/Case/{id}"))).await.body;
    assert_eq!(c["Status"], json!("New"));
    assert_eq!(c["CaseNumber"], json!("00001001"));
    assert_eq!(c["ContactPhone"], json!("03-1234-5678"));
    assert_eq!(c["ContactMobile"], json!("090-0000-0000"));
    assert_eq!(c["IsClosed"], json!(false));
    let r2 = e
        .post(&e.data("sobjects/Case"), &json!({"Origin": "Web"}))
        .await;
    let c2 = e
        .org
        .get("Case", r2.body["id"].as_str().expect("id"))
        .expect("case");
    assert_eq!(c2["CaseNumber"], json!("00001002"));
    let p = e
        .patch(
            &e.data(&format!("sobjects/Case/{id}")),
            &json!({"Subject": "Call ended", "Description": "https://pbx.example/monitor_link/42", "Status": "Closed"}),
        )
        .await;
    assert_eq!(p.status, 204, "{}", p.text);
    let c = e.org.get("Case", &id).expect("case");
    assert_eq!(c["IsClosed"], json!(true));
    assert!(c["ClosedDate"].is_string());
    let p = e
        .patch(
            &e.data(&format!("sobjects/Case/{id}")),
            &json!({"CaseNumber": "9"}),
        )
        .await;
    assert_eq!(
        p.error_code().as_deref(),
        Some("INVALID_FIELD_FOR_INSERT_UPDATE")
    );
    let p = e
        .patch(
            &e.data(&format!("sobjects/Case/{id}")),
            &json!({"Status": null}),
        )
        .await;
    assert_eq!(p.error_code().as_deref(), Some("REQUIRED_FIELD_MISSING"));
}

#[tokio::test]
async fn read_update_delete_errors() {
    let e = env().await;
    let id = e.org.insert("Account", json!({"Name": "A"}));
    let path = e.data(&format!("sobjects/Account/{id}"));
    let d = e.delete(&path).await;
    assert_eq!(d.status, 204);
    assert!(d.text.is_empty());
    let d = e.delete(&path).await;
    assert_eq!(
        d.body,
        json!([{"message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED", "fields": []}])
    );
    assert_eq!(d.status, 404);
    let p = e.patch(&path, &json!({"Name": "B"})).await;
    assert_eq!(p.error_code().as_deref(), Some("ENTITY_IS_DELETED"));
    let g = e.get(&path).await;
    assert_eq!(
        (g.status, g.error_code().as_deref()),
        (404, Some("NOT_FOUND"))
    );
    let other = sf_standin::ids::generate("001");
    let g = e.get(&e.data(&format!("sobjects/Account/{other}"))).await;
    assert_eq!(
        g.body,
        json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])
    );
    assert!(g.text.starts_with("[{\"errorCode\""), "errorCode first");
    let g = e.get(&e.data("sobjects/Account/not-an-id")).await;
    assert_eq!(
        g.error_message().as_deref(),
        Some("Provided external ID field does not exist or is not accessible: not-an-id")
    );
    let p = e
        .patch(
            &e.data(&format!("sobjects/Account/{}", &other[..17])),
            &json!({"Name": "x"}),
        )
        .await;
    assert_eq!(p.error_code().as_deref(), Some("MALFORMED_ID"));
    let contact = e.org.insert("Contact", json!({"LastName": "C"}));
    let p = e
        .patch(
            &e.data(&format!("sobjects/Account/{contact}")),
            &json!({"Name": "x"}),
        )
        .await;
    assert_eq!(
        p.error_code().as_deref(),
        Some("MALFORMED_ID"),
        "an id of another object"
    );
    let p = e
        .patch(
            &e.data(&format!("sobjects/Contact/{}", &contact[..15])),
            &json!({"Phone": "1"}),
        )
        .await;
    assert_eq!(p.status, 204, "15-character ids work");
    let m = e
        .send(Method::PUT, &e.data("sobjects/Account"), Some(&json!({})))
        .await;
    assert_eq!(m.status, 405);
    assert_eq!(m.error_code().as_deref(), Some("METHOD_NOT_ALLOWED"));
    let u = e.get(&e.data("nothing/here")).await;
    assert_eq!(u.status, 404);
}

#[tokio::test]
async fn describe_and_describe_global() {
    let e = env().await;
    e.org
        .add_custom_field("Task", "CallStart__c", CustomFieldType::DateTime);
    let d = e.get(&e.data("sobjects/Task/describe")).await;
    assert_eq!(d.status, 200);
    assert_eq!(d.body["name"], json!("Task"));
    assert_eq!(d.body["keyPrefix"], json!("00T"));
    assert_eq!(d.body["createable"], json!(true));
    let field = |n: &str| {
        d.body["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .find(|f| f["name"] == json!(n))
            .cloned()
            .unwrap_or_else(|| panic!("{n}"))
    };
    let ct = field("CallType");
    assert_eq!(ct["type"], json!("picklist"));
    assert_eq!(ct["restrictedPicklist"], json!(true));
    assert_eq!(ct["label"], json!("Call Type"));
    let values: Vec<&str> = ct["picklistValues"]
        .as_array()
        .expect("values")
        .iter()
        .filter_map(|v| v["value"].as_str())
        .collect();
    assert_eq!(values, vec!["Inbound", "Internal", "Outbound"]);
    let st = field("TaskSubtype");
    assert_eq!(
        (st["createable"].clone(), st["updateable"].clone()),
        (json!(true), json!(false))
    );
    let who = field("WhoId");
    assert_eq!(who["referenceTo"], json!(["Contact", "Lead"]));
    assert_eq!(who["relationshipName"], json!("Who"));
    let custom = field("CallStart__c");
    assert_eq!(
        (custom["custom"].clone(), custom["type"].clone()),
        (json!(true), json!("datetime"))
    );
    let status = field("Status");
    assert!(
        status["picklistValues"]
            .as_array()
            .expect("v")
            .iter()
            .any(|v| v["value"] == json!("Not Started") && v["defaultValue"] == json!(true))
    );
    for k in [
        "name",
        "type",
        "label",
        "updateable",
        "createable",
        "nillable",
        "picklistValues",
        "restrictedPicklist",
    ] {
        assert!(ct.get(k).is_some(), "describe field key {k}");
    }
    let acc = e.get(&e.data("sobjects/Account/describe")).await;
    assert!(
        acc.body["childRelationships"]
            .as_array()
            .expect("rels")
            .iter()
            .any(|r| r["relationshipName"] == json!("Contacts"))
    );
    let g = e.get(&e.data("sobjects/")).await;
    assert_eq!(g.body["encoding"], json!("UTF-8"));
    let names: Vec<&str> = g.body["sobjects"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    for n in ["Account", "Contact", "Lead", "Task", "Case", "User"] {
        assert!(names.contains(&n), "{n}");
    }
    let user = g.body["sobjects"]
        .as_array()
        .expect("list")
        .iter()
        .find(|o| o["name"] == json!("User"))
        .expect("user")
        .clone();
    assert_eq!(user["createable"], json!(false));
    let basic = e.get(&e.data("sobjects/Contact")).await;
    assert_eq!(basic.body["objectDescribe"]["name"], json!("Contact"));
    assert_eq!(basic.body["recentItems"], json!([]));
}

#[tokio::test]
async fn upsert_by_external_id() {
    let e = env().await;
    e.org
        .add_custom_field_with(
            "Contact",
            CustomField::new("PbxId", CustomFieldType::String).external_id(),
        )
        .expect("field");
    e.org
        .add_custom_field("Contact", "Plain__c", CustomFieldType::String);
    let path = e.data("sobjects/Contact/PbxId__c/E-1");
    let r = e.patch(&path, &json!({"LastName": "Ext"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["created"], json!(true));
    let id = r.body["id"].as_str().expect("id").to_string();
    let r = e.patch(&path, &json!({"LastName": "Ext2"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"id": id, "success": true, "errors": [], "created": false})
    );
    assert_eq!(
        e.org.get("Contact", &id).expect("c")["LastName"],
        json!("Ext2")
    );
    let r = e.get(&path).await;
    assert_eq!(r.body["PbxId__c"], json!("E-1"));
    let r = e
        .patch(
            &e.data("sobjects/Contact/Plain__c/x"),
            &json!({"LastName": "x"}),
        )
        .await;
    assert_eq!(r.status, 404);
    // Before v46.0 an update by upsert answered 204.
    let r = e
        .send(
            Method::PATCH,
            "/services/data/v45.0/sobjects/Contact/PbxId__c/E-1",
            Some(&json!({"LastName": "E3"})),
        )
        .await;
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn replication_resources_report_deletions_and_updates() {
    let e = env().await;
    let now = Utc::now();
    let a = e.org.insert("Contact", json!({"LastName": "A"}));
    let b = e.org.insert(
        "Contact",
        json!({"LastName": "B", "LastModifiedDate": (now - Duration::minutes(10)).to_rfc3339()}),
    );
    let c = e.org.insert("Contact", json!({"LastName": "C"}));
    e.org.delete_at("Contact", &a, now - Duration::minutes(5));
    e.org.delete("Contact", &c); // this minute: not covered yet
    let enc = |d: chrono::DateTime<Utc>| -> String {
        url::form_urlencoded::byte_serialize(d.to_rfc3339().as_bytes()).collect()
    };
    let start = enc(now - Duration::hours(1));
    let end = enc(now + Duration::hours(1));
    let r = e
        .get(&e.data(&format!(
            "sobjects/Contact/deleted/?start={start}&end={end}"
        )))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let del = r.body["deletedRecords"].as_array().expect("deleted");
    assert_eq!(del.len(), 1, "{}", r.text);
    assert_eq!(del[0]["id"], json!(a));
    assert!(
        del[0]["deletedDate"]
            .as_str()
            .expect("date")
            .ends_with("+0000")
    );
    let covered = r.body["latestDateCovered"].as_str().expect("covered");
    let minute = now
        .with_second(0)
        .and_then(|d| d.with_nanosecond(0))
        .expect("minute");
    assert!(covered <= sf_standin::values::format_datetime(minute + Duration::minutes(1)).as_str());
    assert!(
        covered.ends_with(":00.000+0000"),
        "whole minutes: {covered}"
    );
    assert!(r.body["earliestDateAvailable"].is_string());
    let r = e
        .get(&e.data(&format!(
            "sobjects/Contact/updated/?start={start}&end={end}"
        )))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["ids"], json!([b]));
    // Bad windows.
    let r = e
        .get(&e.data(&format!(
            "sobjects/Contact/deleted/?start={end}&end={start}"
        )))
        .await;
    assert_eq!(r.error_code().as_deref(), Some("INVALID_REPLICATION_DATE"));
    let old = enc(now - Duration::days(40));
    let r = e
        .get(&e.data(&format!("sobjects/Contact/deleted/?start={old}&end={end}")))
        .await;
    assert_eq!(r.error_code().as_deref(), Some("INVALID_REPLICATION_DATE"));
    let r = e.get(&e.data("sobjects/Contact/deleted/")).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn limits_and_usage_headers() {
    let e = env().await;
    let r = e.get(&e.data("limits/")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["DailyApiRequests"],
        json!({"Max": 15000, "Remaining": 14999})
    );
    assert_eq!(r.api_usage(), Some((1, 15000)));
    assert!(r.body["DataStorageMB"]["Max"].is_number());
    let r = e.get(&e.data("limits/")).await;
    assert_eq!(r.api_usage(), Some((2, 15000)));
    assert_eq!(r.body["DailyApiRequests"]["Remaining"], json!(14998));
    e.org.set_remaining_api(1);
    let r = e.get(&e.data("sobjects/")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.api_usage(), Some((15000, 15000)));
    let r = e.get(&e.data("sobjects/")).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body,
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
    assert_eq!(r.api_usage(), Some((15000, 15000)));
    assert_eq!(e.org.api_calls(), 3);
    let log = e.org.request_log();
    assert_eq!(log.len(), 4);
    assert!(!log[3].counted);
    assert_eq!(log[3].status, 403);
    assert_eq!(log[0].path, "/services/data/v60.0/limits/");
    e.org.reset_counters();
    assert_eq!(e.org.api_calls(), 0);
    assert_eq!(e.get(&e.data("limits")).await.api_usage(), Some((1, 15000)));
}
