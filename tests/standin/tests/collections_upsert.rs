//! sObject Collections upsert, `PATCH composite/sobjects/{Type}/{ExtField}` (docs/salesforce-api.md
//! §2f; v46.0 and later): created then updated by external id, UpsertResults in order,
//! per-record errors, allOrNone rollback, duplicate values, the field and version checks, and
//! one API call per request.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sf_standin::{CustomField, CustomFieldType, Fault, FaultKind};

const EXT: &str = "PbxCallId__c";

/// A stand-in whose Task has the external-id field `PbxCallId__c` and a plain `Plain__c`.
async fn env_ext() -> Env {
    let e = env().await;
    e.org
        .add_custom_field_with(
            "Task",
            CustomField::new("PbxCallId", CustomFieldType::String)
                .label("PBX Call Id")
                .external_id(),
        )
        .expect("field");
    e.org
        .add_custom_field("Task", "Plain__c", CustomFieldType::String);
    e
}

fn task(ext: &str, subject: &str) -> Value {
    json!({"attributes": {"type": "Task"}, EXT: ext, "Subject": subject})
}

fn path(e: &Env) -> String {
    e.data(&format!("composite/sobjects/Task/{EXT}"))
}

fn results(r: &Resp) -> Vec<Value> {
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
        .as_array()
        .unwrap_or_else(|| panic!("array in {}", r.text))
        .clone()
}

fn status_code(result: &Value) -> &str {
    result["errors"][0]["statusCode"].as_str().unwrap_or("")
}

fn tasks_with(e: &Env, ext: &str) -> Vec<Value> {
    e.org
        .records("Task")
        .into_iter()
        .filter(|t| t[EXT] == json!(ext))
        .collect()
}

#[tokio::test]
async fn creates_then_updates_by_external_id() {
    let e = env_ext().await;
    let body =
        json!({"allOrNone": false, "records": [task("C-1", "Call 1"), task("C-2", "Call 2")]});
    let rs = results(&e.patch(&path(&e), &body).await);
    assert_eq!(rs.len(), 2);
    let ids: Vec<String> = rs
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect();
    for (r, id) in rs.iter().zip(&ids) {
        assert!(is_id(id) && id.starts_with("00T"), "{id}");
        assert_eq!(
            r,
            &json!({"id": id, "success": true, "errors": [], "created": true})
        );
    }
    // Key order as documented: id, success, errors, created.
    let r = e.patch(&path(&e), &body).await;
    assert!(
        r.text.starts_with(r#"[{"id":""#) && r.text.contains(r#""errors":[],"created":false}"#),
        "{}",
        r.text
    );

    let again =
        json!({"records": [task("C-1", "Call 1 (edited)"), task("c-2", "Call 2 (edited)")]});
    let rs = results(&e.patch(&path(&e), &again).await);
    assert_eq!(
        rs,
        vec![
            json!({"id": ids[0], "success": true, "errors": [], "created": false}),
            json!({"id": ids[1], "success": true, "errors": [], "created": false}),
        ],
        "matched case-insensitively, as the single upsert"
    );
    assert_eq!(e.org.records("Task").len(), 2, "one record per value");
    let t1 = e.org.get("Task", &ids[0]).expect("task 1");
    assert_eq!(t1["Subject"], json!("Call 1 (edited)"));
    assert_eq!(t1[EXT], json!("C-1"));
    assert_eq!(tasks_with(&e, "C-1").len(), 1);
    // The records are readable by external id through the single-record resource too.
    let r = e
        .get(&e.data(&format!("sobjects/Task/{EXT}/C-1?fields=Subject")))
        .await;
    assert_eq!(r.body["Subject"], json!("Call 1 (edited)"));
}

#[tokio::test]
async fn mixed_batch_creates_and_updates_in_order() {
    let e = env_ext().await;
    let existing = e.org.insert("Task", json!({"Subject": "old", EXT: "M-1"}));
    let body = json!({"records": [
        task("M-2", "new"),
        task("M-1", "updated"),
        task("M-3", "new too"),
    ]});
    let rs = results(&e.patch(&path(&e), &body).await);
    let created: Vec<&Value> = rs.iter().map(|r| &r["created"]).collect();
    assert_eq!(created, vec![&json!(true), &json!(false), &json!(true)]);
    assert_eq!(rs[1]["id"], json!(existing));
    assert!(rs.iter().all(|r| r["success"] == json!(true)));
    assert_eq!(
        e.org.get("Task", &existing).expect("task")["Subject"],
        json!("updated")
    );
    assert_eq!(e.org.records("Task").len(), 3);
    // Created records belong to the session's user, like any API create.
    let new = e
        .org
        .get("Task", rs[0]["id"].as_str().expect("id"))
        .expect("new");
    assert_eq!(new["OwnerId"], json!(e.org.login_user_id()));
}

#[tokio::test]
async fn without_all_or_none_only_the_bad_record_fails() {
    let e = env_ext().await;
    let body = json!({"allOrNone": false, "records": [
        task("B-1", "good"),
        {"attributes": {"type": "Task"}, EXT: "B-2", "CallType": "Sideways"},
        {"attributes": {"type": "Task"}, EXT: "B-3", "NoSuchField__c": "x"},
        task("B-4", "good too"),
    ]});
    let rs = results(&e.patch(&path(&e), &body).await);
    assert_eq!(rs[0]["success"], json!(true));
    assert_eq!(
        rs[1],
        json!({"success": false, "errors": [{"statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "message": "Call Type: bad value for restricted picklist field: Sideways", "fields": ["CallType"]}], "created": false})
    );
    assert_eq!(status_code(&rs[2]), "INVALID_FIELD");
    assert_eq!(
        rs[2]["errors"][0]["message"],
        json!("No such column 'NoSuchField__c' on sobject of type Task")
    );
    assert!(rs[1].get("id").is_none(), "a failed record has no id");
    assert_eq!(rs[3]["created"], json!(true));
    assert_eq!(e.org.records("Task").len(), 2);
    assert!(tasks_with(&e, "B-2").is_empty());
}

#[tokio::test]
async fn all_or_none_rolls_everything_back() {
    let e = env_ext().await;
    let existing = e
        .org
        .insert("Task", json!({"Subject": "before", EXT: "R-1"}));
    let body = json!({"allOrNone": true, "records": [
        task("R-1", "changed"),
        task("R-2", "created"),
        {"attributes": {"type": "Task"}, EXT: "R-3", "CallType": "Sideways"},
    ]});
    let rs = results(&e.patch(&path(&e), &body).await);
    let rolled = json!({"success": false, "errors": [{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "Record rolled back because not all records were valid and the request was using AllOrNone header", "fields": []}], "created": false});
    assert_eq!(rs[0], rolled);
    assert_eq!(rs[1], rolled);
    assert_eq!(
        status_code(&rs[2]),
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    );
    assert_eq!(e.org.records("Task").len(), 1, "the create was undone");
    assert_eq!(
        e.org.get("Task", &existing).expect("task")["Subject"],
        json!("before"),
        "the update was undone"
    );
    // The same batch without the bad record goes through.
    let ok =
        json!({"allOrNone": true, "records": [task("R-1", "changed"), task("R-2", "created")]});
    let rs = results(&e.patch(&path(&e), &ok).await);
    assert!(rs.iter().all(|r| r["success"] == json!(true)));
    assert_eq!(e.org.records("Task").len(), 2);
}

#[tokio::test]
async fn a_record_without_its_external_id_fails() {
    let e = env_ext().await;
    let body = json!({"records": [
        {"attributes": {"type": "Task"}, "Subject": "no ext id"},
        {"attributes": {"type": "Task"}, EXT: null, "Subject": "null ext id"},
        {"attributes": {"type": "Task"}, EXT: "", "Subject": "empty ext id"},
        task("X-1", "fine"),
    ]});
    let rs = results(&e.patch(&path(&e), &body).await);
    let missing = json!({"success": false, "errors": [{"statusCode": "MISSING_ARGUMENT", "message": "PbxCallId__c not specified", "fields": []}], "created": false});
    assert_eq!(rs[0], missing);
    assert_eq!(rs[1], missing);
    assert_eq!(rs[2], missing);
    assert_eq!(rs[3]["created"], json!(true));
    assert_eq!(e.org.records("Task").len(), 1);
}

#[tokio::test]
async fn the_url_field_must_be_an_external_id() {
    let e = env_ext().await;
    let body = json!({"records": [task("Y-1", "x")]});
    for field in ["Plain__c", "Subject", "Nope__c", "Id"] {
        let r = e
            .patch(&e.data(&format!("composite/sobjects/Task/{field}")), &body)
            .await;
        assert_eq!(r.status, 400, "{field}: {}", r.text);
        assert_eq!(
            r.body,
            json!([{"message": format!("Field name provided, {field} is not an External ID or indexed field for Task"), "errorCode": "INVALID_FIELD"}]),
            "{field}"
        );
    }
    assert!(e.org.records("Task").is_empty());
    // An unknown object is an unknown resource.
    let r = e
        .patch(&e.data(&format!("composite/sobjects/Nope__c/{EXT}")), &body)
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.error_code().as_deref(), Some("NOT_FOUND"));
    // A field the user cannot see is not accessible.
    e.org.deny_field("Task", EXT);
    let r = e.patch(&path(&e), &body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error_code().as_deref(), Some("INVALID_FIELD"));
}

#[tokio::test]
async fn duplicate_values_in_the_request_and_in_the_org() {
    let e = env_ext().await;
    let a = e.org.insert("Task", json!({"Subject": "a", EXT: "TWICE"}));
    let b = e.org.insert("Task", json!({"Subject": "b", EXT: "twice"}));
    let body = json!({"records": [
        task("D-1", "first"),
        task("U-1", "unique"),
        task("d-1", "second"),
        task("TWICE", "ambiguous"),
    ]});
    let rs = results(&e.patch(&path(&e), &body).await);
    assert_eq!(
        rs[0],
        json!({"success": false, "errors": [{"statusCode": "DUPLICATE_VALUE", "message": "Duplicate external id specified: D-1", "fields": []}], "created": false})
    );
    assert_eq!(status_code(&rs[2]), "DUPLICATE_VALUE");
    assert_eq!(
        rs[2]["errors"][0]["message"],
        json!("Duplicate external id specified: d-1")
    );
    assert_eq!(rs[1]["created"], json!(true));
    assert_eq!(status_code(&rs[3]), "DUPLICATE_EXTERNAL_ID");
    assert_eq!(
        rs[3]["errors"][0]["message"],
        json!(format!(
            "PBX Call Id: more than one record found for external id field: [{a}, {b}]"
        ))
    );
    assert!(tasks_with(&e, "D-1").is_empty() && tasks_with(&e, "d-1").is_empty());
    assert_eq!(e.org.records("Task").len(), 3);
    // The single-record upsert answers the same ambiguity with 300 (sobjects.rs).
    let r = e
        .patch(
            &e.data(&format!("sobjects/Task/{EXT}/TWICE")),
            &json!({"Subject": "x"}),
        )
        .await;
    assert_eq!(r.status, 300);
}

#[tokio::test]
async fn records_must_be_of_the_url_type_without_id() {
    let e = env_ext().await;
    let t = e.org.insert("Task", json!({"Subject": "t", EXT: "T-1"}));
    let body = json!({"records": [
        {"attributes": {"type": "Contact"}, EXT: "T-2", "LastName": "wrong type"},
        {EXT: "T-3", "Subject": "no attributes"},
        {"attributes": {"type": "Task"}, "Id": t, EXT: "T-1", "Subject": "with id"},
        "not an object",
        {"attributes": {"type": "task"}, EXT: "T-4", "Subject": "type in lower case"},
    ]});
    let rs = results(&e.patch(&path(&e), &body).await);
    assert_eq!(status_code(&rs[0]), "INVALID_TYPE");
    assert_eq!(
        rs[0]["errors"][0]["message"],
        json!("Record of type Contact cannot be upserted in a request for Task")
    );
    assert_eq!(
        rs[1]["errors"][0],
        json!({"statusCode": "INVALID_TYPE", "message": "Must send a concrete entity type.", "fields": []})
    );
    assert_eq!(status_code(&rs[2]), "INVALID_FIELD");
    assert_eq!(status_code(&rs[3]), "JSON_PARSER_ERROR");
    assert_eq!(rs[4]["created"], json!(true));
    assert!(e.org.records("Contact").is_empty());
    assert_eq!(e.org.get("Task", &t).expect("t")["Subject"], json!("t"));
}

#[tokio::test]
async fn api_version_below_46_has_no_such_resource() {
    let e = env_ext().await;
    let body = json!({"records": [task("V-1", "x")]});
    for v in ["v45.0", "v31.0"] {
        let r = e
            .send(
                Method::PATCH,
                &format!("/services/data/{v}/composite/sobjects/Task/{EXT}"),
                Some(&body),
            )
            .await;
        assert_eq!(r.status, 404, "{v}: {}", r.text);
        assert_eq!(
            r.text,
            r#"[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]"#
        );
    }
    assert!(e.org.records("Task").is_empty());
    let r = e
        .send(
            Method::PATCH,
            &format!("/services/data/v46.0/composite/sobjects/Task/{EXT}"),
            Some(&body),
        )
        .await;
    assert_eq!(results(&r)[0]["created"], json!(true));
    // Only PATCH is served there.
    let r = e.get(&path(&e)).await;
    assert_eq!(r.status, 405, "{}", r.text);
    assert_eq!(
        r.error_message().as_deref(),
        Some("HTTP Method 'GET' not allowed. Allowed are PATCH")
    );
}

#[tokio::test]
async fn one_request_is_one_api_call() {
    let e = env_ext().await;
    let records: Vec<Value> = (0..150)
        .map(|i| task(&format!("N-{i}"), &format!("Call {i}")))
        .collect();
    let r = e
        .patch(&path(&e), &json!({"allOrNone": false, "records": records}))
        .await;
    assert_eq!(results(&r).len(), 150);
    assert_eq!(e.org.api_calls(), 1);
    assert_eq!(r.api_usage(), Some((1, 15000)));
    assert_eq!(e.org.request_log().len(), 1);
    let r = e
        .patch(&path(&e), &json!({"allOrNone": false, "records": records}))
        .await;
    assert!(results(&r).iter().all(|x| x["created"] == json!(false)));
    assert_eq!(e.org.api_calls(), 2);
    assert_eq!(e.org.records("Task").len(), 150);
}

#[tokio::test]
async fn request_level_errors() {
    let e = env_ext().await;
    let many: Vec<Value> = (0..201).map(|i| task(&format!("L-{i}"), "x")).collect();
    let r = e.patch(&path(&e), &json!({"records": many})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error_code().as_deref(), Some("EXCEEDED_ID_LIMIT"));
    let r = e.patch(&path(&e), &json!({"allOrNone": true})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code().as_deref(), Some("INVALID_INPUT"));
    let r = e
        .send_with(
            Method::PATCH,
            &path(&e),
            None,
            Some(&e.token.clone()),
            &[("Content-Type", "application/json")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code().as_deref(), Some("JSON_PARSER_ERROR"));
    assert!(e.org.records("Task").is_empty());
    assert_eq!(e.org.api_calls(), 3, "failed requests count too");
}

#[tokio::test]
async fn as_a_composite_subrequest_and_with_a_locked_row() {
    let e = env_ext().await;
    let v = "/services/data/v60.0";
    let body = json!({"compositeRequest": [{
        "method": "PATCH",
        "url": format!("{v}/composite/sobjects/Task/{EXT}"),
        "referenceId": "upsert",
        "body": {"records": [task("S-1", "via composite")]},
    }]});
    let r = e.post(&e.data("composite"), &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sub = &r.body["compositeResponse"][0];
    assert_eq!(sub["httpStatusCode"], json!(200));
    assert_eq!(sub["body"][0]["created"], json!(true));
    assert_eq!(e.org.api_calls(), 1);
    // A lock fault on the record's external-id path fails that record only.
    e.org.inject(
        Fault::new(FaultKind::UnableToLockRow).path_contains(&format!("/sobjects/Task/{EXT}/S-1")),
    );
    let id = sub["body"][0]["id"].as_str().expect("id").to_string();
    let rs = results(
        &e.patch(
            &path(&e),
            &json!({"records": [task("S-1", "locked"), task("S-2", "free")]}),
        )
        .await,
    );
    assert_eq!(status_code(&rs[0]), "UNABLE_TO_LOCK_ROW");
    assert_eq!(
        rs[0]["errors"][0]["message"],
        json!(format!(
            "unable to obtain exclusive access to this record or 1 records: {id}"
        ))
    );
    assert_eq!(rs[1]["created"], json!(true));
}
