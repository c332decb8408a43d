//! composite (docs/salesforce-api.md §2e) and sObject Collections (§2f): references, allOrNone
//! rollback, limits, what may not be a subrequest, SaveResults, one API call each.

mod common;

use common::*;
use serde_json::{Value, json};
use sf_standin::{Fault, FaultKind};

fn sub(method: &str, url: &str, reference: &str, body: Option<Value>) -> Value {
    let mut v = json!({"method": method, "url": url, "referenceId": reference});
    if let Some(b) = body {
        v["body"] = b;
    }
    v
}

fn responses(r: &Resp) -> Vec<Value> {
    r.body["compositeResponse"]
        .as_array()
        .unwrap_or_else(|| panic!("compositeResponse in {}", r.text))
        .clone()
}

#[tokio::test]
async fn references_between_subrequests() {
    let e = env().await;
    let v = "/services/data/v60.0";
    let body = json!({"allOrNone": false, "compositeRequest": [
        sub("POST", &format!("{v}/sobjects/Account"), "refAccount", Some(json!({"Name": "Acme"}))),
        sub("POST", &format!("{v}/sobjects/Contact"), "refContact", Some(json!({"LastName": "Yamada", "AccountId": "@{refAccount.id}"}))),
        sub("GET", &format!("{v}/query?q=SELECT+Id,Name+FROM+Contact+WHERE+AccountId='@{{refAccount.id}}'"), "refQuery", None),
        sub("PATCH", &format!("{v}/sobjects/Contact/@{{refQuery.records[0].Id}}"), "refUpdate", Some(json!({"Phone": "03-1234-5678"}))),
        sub("POST", &format!("{v}/sobjects/Task"), "refTask", Some(json!({"Subject": "Call", "WhoId": "@{refContact.id}", "Description": "contact @{refQuery.records[0].Name}"}))),
        sub("GET", &format!("{v}/sobjects/Contact/@{{refContact.id}}?fields=Phone"), "refGet", None),
        sub("DELETE", &format!("{v}/sobjects/Task/@{{refTask.id}}"), "refDelete", None),
    ]});
    let r = e.post(&e.data("composite"), &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rs = responses(&r);
    let statuses: Vec<u64> = rs
        .iter()
        .map(|x| x["httpStatusCode"].as_u64().expect("status"))
        .collect();
    assert_eq!(
        statuses,
        vec![201, 201, 200, 204, 201, 200, 204],
        "{}",
        r.text
    );
    let acc = rs[0]["body"]["id"].as_str().expect("id");
    assert_eq!(rs[0]["referenceId"], json!("refAccount"));
    assert_eq!(
        rs[0]["httpHeaders"],
        json!({"Location": format!("{v}/sobjects/Account/{acc}")})
    );
    assert_eq!(rs[3]["body"], Value::Null);
    assert_eq!(rs[3]["httpHeaders"], json!({}));
    assert_eq!(rs[2]["body"]["totalSize"], json!(1));
    assert_eq!(rs[5]["body"]["Phone"], json!("03-1234-5678"));
    let contact = e
        .org
        .get("Contact", rs[1]["body"]["id"].as_str().expect("id"))
        .expect("contact");
    assert_eq!(contact["AccountId"], json!(acc));
    assert_eq!(
        e.org.deleted_records("Task")[0]["Description"],
        json!("contact Yamada")
    );
    assert_eq!(e.org.api_calls(), 1, "a composite request is one call");
    assert_eq!(r.api_usage(), Some((1, 15000)));
}

#[tokio::test]
async fn all_or_none_rolls_everything_back() {
    let e = env().await;
    let v = "/services/data/v60.0";
    let body = json!({"allOrNone": true, "compositeRequest": [
        sub("POST", &format!("{v}/sobjects/Account"), "a", Some(json!({"Name": "Acme"}))),
        sub("POST", &format!("{v}/sobjects/Contact"), "c", Some(json!({"FirstName": "No last name"}))),
        sub("POST", &format!("{v}/sobjects/Lead"), "l", Some(json!({"LastName": "L", "Company": "C"}))),
    ]});
    let r = e.post(&e.data("composite"), &body).await;
    assert_eq!(r.status, 200);
    let rs = responses(&r);
    let halted = json!([{"errorCode": "PROCESSING_HALTED", "message": "The transaction was rolled back since another operation in the same transaction failed."}]);
    assert_eq!(rs[0]["httpStatusCode"], json!(400));
    assert_eq!(rs[0]["body"], halted);
    assert_eq!(rs[1]["httpStatusCode"], json!(400));
    assert_eq!(
        rs[1]["body"][0]["errorCode"],
        json!("REQUIRED_FIELD_MISSING")
    );
    assert_eq!(rs[2]["body"], halted);
    assert!(e.org.records("Account").is_empty(), "rolled back");
    assert!(e.org.records("Lead").is_empty());
}

#[tokio::test]
async fn without_all_or_none_only_dependents_fail() {
    let e = env().await;
    let v = "/services/data/v60.0";
    let body = json!({"compositeRequest": [
        sub("POST", &format!("{v}/sobjects/Contact"), "bad", Some(json!({"FirstName": "x"}))),
        sub("POST", &format!("{v}/sobjects/Task"), "dependent", Some(json!({"Subject": "s", "WhoId": "@{bad.id}"}))),
        sub("POST", &format!("{v}/sobjects/Account"), "independent", Some(json!({"Name": "ok"}))),
    ]});
    let r = e.post(&e.data("composite"), &body).await;
    let rs = responses(&r);
    assert_eq!(
        rs[0]["body"][0]["errorCode"],
        json!("REQUIRED_FIELD_MISSING")
    );
    assert_eq!(rs[1]["httpStatusCode"], json!(400));
    assert_eq!(rs[1]["body"][0]["errorCode"], json!("PROCESSING_HALTED"));
    assert!(
        rs[1]["body"][0]["message"]
            .as_str()
            .expect("msg")
            .contains("bad")
    );
    assert_eq!(rs[2]["httpStatusCode"], json!(201));
    assert_eq!(e.org.records("Account").len(), 1);
}

#[tokio::test]
async fn what_composite_refuses() {
    let e = env().await;
    let v = "/services/data/v60.0";
    let q = format!("{v}/query?q=SELECT+Id+FROM+Account");
    let too_many: Vec<Value> = (0..26)
        .map(|i| sub("GET", &q, &format!("r{i}"), None))
        .collect();
    let six_queries: Vec<Value> = (0..6)
        .map(|i| sub("GET", &q, &format!("r{i}"), None))
        .collect();
    let search = vec![sub(
        "GET",
        &format!("{v}/search/?q=FIND+%7B0312345678%7D+IN+PHONE+FIELDS"),
        "s",
        None,
    )];
    let mut with_header = sub("GET", &q, "h", None);
    with_header["httpHeaders"] = json!({"Authorization": "Bearer x"});
    let cases = vec![
        (json!({"compositeRequest": too_many}), "LIMIT_EXCEEDED"),
        (json!({"compositeRequest": six_queries}), "LIMIT_EXCEEDED"),
        (json!({"compositeRequest": search}), "INVALID_INPUT"),
        (
            json!({"compositeRequest": [sub("GET", &format!("{v}/limits"), "x", None)]}),
            "INVALID_INPUT",
        ),
        (json!({"compositeRequest": [with_header]}), "INVALID_INPUT"),
        (
            json!({"compositeRequest": [sub("post", &format!("{v}/sobjects/Account"), "x", None)]}),
            "INVALID_INPUT",
        ),
        (
            json!({"compositeRequest": [sub("GET", &q, "dup", None), sub("GET", &q, "dup", None)]}),
            "INVALID_INPUT",
        ),
        (json!({"nope": []}), "INVALID_INPUT"),
    ];
    for (body, code) in cases {
        let r = e.post(&e.data("composite"), &body).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.error_code().as_deref(), Some(code), "{}", r.text);
    }
    // Five queries are fine.
    let five: Vec<Value> = (0..5)
        .map(|i| sub("GET", &q, &format!("r{i}"), None))
        .collect();
    let r = e
        .post(&e.data("composite"), &json!({"compositeRequest": five}))
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn collections_create_in_order_with_save_results() {
    let e = env().await;
    let acc = e.org.insert("Account", json!({"Name": "Acme"}));
    let body = json!({"allOrNone": false, "records": [
        {"attributes": {"type": "Task"}, "Subject": "Call 1", "WhatId": acc, "TaskSubtype": "Call"},
        {"attributes": {"type": "Task"}, "Subject": "Call 2", "CallType": "Sideways"},
        {"attributes": {"type": "Contact"}, "LastName": "New"},
        {"Subject": "no type"},
        {"attributes": {"type": "Contact"}, "Id": "003000000000001AAA", "LastName": "with id"},
    ]});
    let r = e.post(&e.data("composite/sobjects"), &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rs = r.body.as_array().expect("array");
    assert_eq!(rs.len(), 5);
    assert_eq!(rs[0]["success"], json!(true));
    assert!(rs[0]["id"].as_str().expect("id").starts_with("00T"));
    assert_eq!(rs[0]["errors"], json!([]));
    assert_eq!(
        rs[1],
        json!({"success": false, "errors": [{"statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "message": "Call Type: bad value for restricted picklist field: Sideways", "fields": ["CallType"]}]})
    );
    assert!(
        rs[1]["errors"][0].get("errorCode").is_none(),
        "SaveResults say statusCode"
    );
    assert!(rs[2]["id"].as_str().expect("id").starts_with("003"));
    assert_eq!(rs[3]["errors"][0]["statusCode"], json!("INVALID_TYPE"));
    assert_eq!(rs[4]["success"], json!(false));
    assert_eq!(e.org.records("Task").len(), 1);
    assert_eq!(e.org.api_calls(), 1);
}

#[tokio::test]
async fn collections_all_or_none_rollback() {
    let e = env().await;
    let body = json!({"allOrNone": true, "records": [
        {"attributes": {"type": "Account"}, "Name": "Valid"},
        {"attributes": {"type": "Account"}, "Phone": "no name"},
        {"attributes": {"type": "Lead"}, "LastName": "Valid", "Company": "Co"},
    ]});
    let r = e.post(&e.data("composite/sobjects"), &body).await;
    assert_eq!(r.status, 200);
    let rolled = json!({"success": false, "errors": [{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "Record rolled back because not all records were valid and the request was using AllOrNone header", "fields": []}]});
    assert_eq!(r.body[0], rolled);
    assert_eq!(
        r.body[1]["errors"][0]["statusCode"],
        json!("REQUIRED_FIELD_MISSING")
    );
    assert_eq!(r.body[2], rolled);
    assert!(e.org.records("Account").is_empty());
    assert!(e.org.records("Lead").is_empty());
}

#[tokio::test]
async fn collections_update_delete_retrieve_and_limits() {
    let e = env().await;
    let a = e.org.insert("Contact", json!({"LastName": "A"}));
    let b = e.org.insert("Contact", json!({"LastName": "B"}));
    let r = e
        .patch(
            &e.data("composite/sobjects"),
            &json!({"records": [
                {"attributes": {"type": "Contact"}, "id": a, "Phone": "1"},
                {"attributes": {"type": "Contact"}, "Phone": "2"},
            ]}),
        )
        .await;
    assert_eq!(r.body[0], json!({"id": a, "success": true, "errors": []}));
    assert_eq!(
        r.body[1]["errors"][0]["statusCode"],
        json!("MISSING_ARGUMENT")
    );
    assert_eq!(e.org.get("Contact", &a).expect("a")["Phone"], json!("1"));
    let r = e
        .get(&e.data(&format!(
            "composite/sobjects/Contact?ids={a},{b},003000000000001AAA&fields=LastName,Phone"
        )))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body[0]["LastName"], json!("A"));
    assert_eq!(r.body[1]["Phone"], Value::Null);
    assert_eq!(r.body[2], Value::Null);
    let r = e
        .delete(&e.data(&format!("composite/sobjects?ids={a},{b}&allOrNone=false")))
        .await;
    assert_eq!(
        r.body,
        json!([{"id": a, "success": true, "errors": []}, {"id": b, "success": true, "errors": []}])
    );
    let r = e
        .delete(&e.data(&format!("composite/sobjects?ids={a}")))
        .await;
    assert_eq!(
        r.body[0]["errors"][0]["statusCode"],
        json!("ENTITY_IS_DELETED")
    );
    let many: Vec<Value> = (0..201)
        .map(|i| json!({"attributes": {"type": "Account"}, "Name": format!("A{i}")}))
        .collect();
    let r = e
        .post(&e.data("composite/sobjects"), &json!({"records": many}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code().as_deref(), Some("EXCEEDED_ID_LIMIT"));
    // Eleven chunks of alternating types.
    let chunks: Vec<Value> = (0..11)
        .map(|i| {
            if i % 2 == 0 {
                json!({"attributes": {"type": "Account"}, "Name": "a"})
            } else {
                json!({"attributes": {"type": "Contact"}, "LastName": "c"})
            }
        })
        .collect();
    let r = e
        .post(&e.data("composite/sobjects"), &json!({"records": chunks}))
        .await;
    assert_eq!(r.error_code().as_deref(), Some("EXCEEDED_MAX_TYPES_LIMIT"));
    let r = e.post(&e.data("composite/sobjects"), &json!({"records": (0..200).map(|i| json!({"attributes": {"type": "Account"}, "Name": format!("A{i}")})).collect::<Vec<_>>()})).await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(200));
}

#[tokio::test]
async fn unable_to_lock_row_hits_the_subrequest_not_the_composite() {
    let e = env().await;
    let t = e.org.insert("Task", json!({"Subject": "logged"}));
    e.org
        .inject(Fault::new(FaultKind::UnableToLockRow).path_contains("/sobjects/Task/"));
    let v = "/services/data/v60.0";
    let body = json!({"compositeRequest": [
        sub("POST", &format!("{v}/sobjects/Account"), "a", Some(json!({"Name": "ok"}))),
        sub("PATCH", &format!("{v}/sobjects/Task/{t}"), "t", Some(json!({"Description": "memo"}))),
    ]});
    let r = e.post(&e.data("composite"), &body).await;
    assert_eq!(r.status, 200);
    let rs = responses(&r);
    assert_eq!(rs[0]["httpStatusCode"], json!(201));
    assert_eq!(rs[1]["httpStatusCode"], json!(400));
    assert_eq!(rs[1]["body"][0]["errorCode"], json!("UNABLE_TO_LOCK_ROW"));
    assert_eq!(
        rs[1]["body"][0]["message"],
        json!(format!(
            "unable to obtain exclusive access to this record or 1 records: {t}"
        ))
    );
    // The retry goes through.
    let r = e.post(&e.data("composite"), &body).await;
    assert_eq!(responses(&r)[1]["httpStatusCode"], json!(204));
    // In a collection, the record fails.
    e.org
        .inject(Fault::new(FaultKind::UnableToLockRow).path_contains(&t));
    let r = e
        .patch(
            &e.data("composite/sobjects"),
            &json!({"records": [{"attributes": {"type": "Task"}, "id": t, "Description": "x"}]}),
        )
        .await;
    assert_eq!(
        r.body[0]["errors"][0]["statusCode"],
        json!("UNABLE_TO_LOCK_ROW")
    );
}
