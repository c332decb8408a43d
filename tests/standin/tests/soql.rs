//! SOQL over HTTP (docs/salesforce-api.md §2a): parent fields, date literals, ORDER BY / LIMIT /
//! OFFSET, operators, paging of 10,000 records, queryAll, COUNT, errors, field-level security.

mod common;

use std::collections::HashSet;

use chrono::{Duration, Utc};
use common::*;
use serde_json::{Value, json};
use sf_standin::{CustomFieldType, OrgSpec};

fn ago(days: i64) -> String {
    (Utc::now() - Duration::days(days)).to_rfc3339()
}

fn names(r: &Resp) -> Vec<String> {
    r.body["records"]
        .as_array()
        .unwrap_or_else(|| panic!("records in {}", r.text))
        .iter()
        .map(|x| x["Name"].as_str().unwrap_or("<null>").to_string())
        .collect()
}

#[tokio::test]
async fn the_contact_import_query() {
    let e = env().await;
    let owner = e.org.insert(
        "User",
        json!({"FirstName": "Guy", "LastName": "Smiley", "Username": "guy@x.example"}),
    );
    let acme = e
        .org
        .insert("Account", json!({"Name": "Acme", "OwnerId": owner}));
    e.org.insert("Contact", json!({"FirstName": "Old", "LastName": "Timer", "AccountId": acme, "LastModifiedDate": ago(400)}));
    e.org.insert("Contact", json!({"FirstName": "A", "LastName": "Recent", "AccountId": acme, "Phone": "03-1234-5678", "LastModifiedDate": ago(3)}));
    e.org.insert(
        "Contact",
        json!({"LastName": "Orphan", "LastModifiedDate": ago(1)}),
    );
    let r = e
        .query("SELECT Id, FirstName, LastName, Phone, MobilePhone, Account.Name, LastModifiedDate FROM Contact WHERE LastModifiedDate = LAST_N_DAYS:365 ORDER BY LastModifiedDate DESC LIMIT 2000")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["totalSize"], json!(2));
    assert_eq!(r.body["done"], json!(true));
    assert!(r.body.get("nextRecordsUrl").is_none());
    let recs = r.body["records"].as_array().expect("records");
    assert_eq!(recs[0]["LastName"], json!("Orphan"));
    assert_eq!(recs[0]["Account"], Value::Null, "no parent -> null");
    assert_eq!(
        recs[0]["FirstName"],
        Value::Null,
        "selected but unset -> null"
    );
    assert_eq!(recs[1]["Account"]["Name"], json!("Acme"));
    assert_eq!(recs[1]["Account"]["attributes"]["type"], json!("Account"));
    assert_eq!(
        recs[1]["Account"]["attributes"]["url"],
        json!(format!("/services/data/v60.0/sobjects/Account/{acme}"))
    );
    let lm = recs[1]["LastModifiedDate"].as_str().expect("date");
    assert!(
        lm.ends_with("+0000") && lm.len() == 28 && &lm[19..20] == ".",
        "{lm}"
    );
    // Key order: attributes first, then the select list.
    let text = &r.text;
    let rec_start = text.find("\"records\":[{").expect("records");
    assert!(text[rec_start..].starts_with("\"records\":[{\"attributes\""));
    // Two levels of parents.
    let r = e
        .query(
            "SELECT Name, Account.Owner.Name, Account.Name FROM Contact WHERE LastName = 'Recent'",
        )
        .await;
    assert_eq!(
        r.body["records"][0]["Account"]["Owner"]["Name"],
        json!("Guy Smiley")
    );
    assert_eq!(r.body["records"][0]["Account"]["Name"], json!("Acme"));
    assert_eq!(r.body["records"][0]["Name"], json!("A Recent"));
}

#[tokio::test]
async fn date_literals() {
    let e = env().await;
    let yesterday = (Utc::now() - Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    e.org.insert(
        "Task",
        json!({"Subject": "today", "ActivityDate": Utc::now().format("%Y-%m-%d").to_string()}),
    );
    e.org.insert(
        "Task",
        json!({"Subject": "yesterday", "ActivityDate": yesterday, "LastModifiedDate": ago(1)}),
    );
    e.org.insert(
        "Task",
        json!({"Subject": "old", "ActivityDate": "2001-01-01", "LastModifiedDate": ago(40)}),
    );
    let subjects = |r: &Resp| -> Vec<String> {
        r.body["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|x| x["Subject"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let r = e
        .query("SELECT Subject FROM Task WHERE ActivityDate = TODAY")
        .await;
    assert_eq!(subjects(&r), vec!["today"]);
    let r = e
        .query("SELECT Subject FROM Task WHERE ActivityDate = YESTERDAY")
        .await;
    assert_eq!(subjects(&r), vec!["yesterday"]);
    let r = e
        .query("SELECT Subject FROM Task WHERE LastModifiedDate = LAST_N_DAYS:30 ORDER BY Subject")
        .await;
    assert_eq!(subjects(&r), vec!["today", "yesterday"]);
    let r = e
        .query("SELECT Subject FROM Task WHERE LastModifiedDate < LAST_N_DAYS:30")
        .await;
    assert_eq!(subjects(&r), vec!["old"]);
    let r = e
        .query("SELECT Subject FROM Task WHERE ActivityDate < 2002-01-01")
        .await;
    assert_eq!(subjects(&r), vec!["old"]);
    let cutoff = (Utc::now() - Duration::days(10))
        .format("%Y-%m-%dT%H:%M:%S+09:00")
        .to_string();
    let r = e
        .query(&format!(
            "SELECT Subject FROM Task WHERE LastModifiedDate > {cutoff} ORDER BY Subject"
        ))
        .await;
    assert_eq!(subjects(&r), vec!["today", "yesterday"]);
    // Date literals of the wrong kind are refused like the real service does.
    let r = e
        .query("SELECT Subject FROM Task WHERE LastModifiedDate > 2020-01-01")
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code().as_deref(), Some("INVALID_FIELD"));
    assert!(
        r.error_message()
            .expect("msg")
            .contains("must be of type dateTime")
    );
    let r = e
        .query("SELECT Subject FROM Task WHERE ActivityDate = '2020-01-01'")
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error_message().expect("msg").ends_with("value of filter criterion for field 'ActivityDate' must be of type date and should not be enclosed in quotes"));
}

#[tokio::test]
async fn order_by_limit_offset() {
    let e = env().await;
    for (name, rating, employees) in [
        ("b", Some("Hot"), 5),
        ("a", None, 10),
        ("c", Some("Cold"), 5),
        ("d", Some("Hot"), 1),
    ] {
        e.org.insert(
            "Account",
            json!({"Name": name, "Rating": rating, "NumberOfEmployees": employees}),
        );
    }
    let r = e.query("SELECT Name FROM Account ORDER BY Name DESC").await;
    assert_eq!(names(&r), vec!["d", "c", "b", "a"]);
    let r = e
        .query("SELECT Name FROM Account ORDER BY Rating, Name")
        .await;
    assert_eq!(names(&r), vec!["a", "c", "b", "d"], "ASC puts nulls first");
    let r = e
        .query("SELECT Name FROM Account ORDER BY Rating NULLS LAST, Name DESC")
        .await;
    assert_eq!(names(&r), vec!["c", "d", "b", "a"]);
    let r = e
        .query("SELECT Name FROM Account ORDER BY Rating DESC")
        .await;
    assert_eq!(names(&r)[3], "a", "DESC puts nulls last");
    let r = e
        .query("SELECT Name FROM Account ORDER BY NumberOfEmployees DESC, Name ASC LIMIT 3")
        .await;
    assert_eq!(names(&r), vec!["a", "b", "c"]);
    assert_eq!(r.body["totalSize"], json!(3));
    let r = e
        .query("SELECT Name FROM Account ORDER BY Name LIMIT 2 OFFSET 1")
        .await;
    assert_eq!(names(&r), vec!["b", "c"]);
    let r = e
        .query("SELECT Name FROM Account ORDER BY Name OFFSET 2001")
        .await;
    assert_eq!(
        r.error_code().as_deref(),
        Some("NUMBER_OUTSIDE_VALID_RANGE")
    );
}

#[tokio::test]
async fn operators() {
    let e = env().await;
    e.org.add_custom_field(
        "Account",
        "Memo__c",
        CustomFieldType::MultiPicklist(vec!["VIP".into(), "Spam".into(), "Hot".into()]),
    );
    for (name, phone, emp, memo) in [
        ("O'Brien & Co", Some("03-1111-1111"), 10, Some("VIP;Hot")),
        ("Acme", None, 20, Some("Spam")),
        ("acme japan", Some("06-2222-2222"), 30, None),
        ("Globex_1", Some("011"), 40, Some("VIP")),
    ] {
        e.org.insert(
            "Account",
            json!({"Name": name, "Phone": phone, "NumberOfEmployees": emp, "Memo__c": memo}),
        );
    }
    let cases: &[(&str, &[&str])] = &[
        ("Name = 'acme'", &["Acme"]),
        (
            "Name != 'acme'",
            &["O'Brien & Co", "acme japan", "Globex_1"],
        ),
        ("Name = 'O\\'Brien & Co'", &["O'Brien & Co"]),
        ("Name LIKE 'acme%'", &["Acme", "acme japan"]),
        ("Name LIKE '%J_PAN'", &["acme japan"]),
        ("Name LIKE 'Globex\\_%'", &["Globex_1"]),
        ("Phone = null", &["Acme"]),
        (
            "Phone != null AND NumberOfEmployees >= 30",
            &["acme japan", "Globex_1"],
        ),
        (
            "NumberOfEmployees < 20 OR NumberOfEmployees > 30",
            &["O'Brien & Co", "Globex_1"],
        ),
        ("NOT (NumberOfEmployees <= 20)", &["acme japan", "Globex_1"]),
        (
            "(Name = 'Acme' OR Name = 'Globex_1') AND NumberOfEmployees > 25",
            &["Globex_1"],
        ),
        (
            "Name IN ('Acme', 'acme japan', 'nope')",
            &["Acme", "acme japan"],
        ),
        (
            "Name NOT IN ('Acme', 'acme japan')",
            &["O'Brien & Co", "Globex_1"],
        ),
        (
            "Memo__c INCLUDES ('VIP;Hot', 'Spam')",
            &["O'Brien & Co", "Acme"],
        ),
        ("Memo__c EXCLUDES ('VIP')", &["Acme", "acme japan"]),
        (
            "IsDeleted = false AND NumberOfEmployees = 10",
            &["O'Brien & Co"],
        ),
    ];
    for (cond, want) in cases {
        let r = e
            .query(&format!("SELECT Name FROM Account WHERE {cond}"))
            .await;
        assert_eq!(r.status, 200, "{cond}: {}", r.text);
        assert_eq!(names(&r), want.to_vec(), "{cond}");
    }
    let acme = e
        .org
        .records("Account")
        .into_iter()
        .find(|a| a["Name"] == json!("Acme"))
        .expect("acme");
    let id15 = &acme["Id"].as_str().expect("id")[..15];
    let r = e
        .query(&format!("SELECT Name FROM Account WHERE Id = '{id15}'"))
        .await;
    assert_eq!(names(&r), vec!["Acme"], "15-character ids are accepted");
    let r = e
        .query("SELECT Name FROM Account WHERE Id = 'nonsense'")
        .await;
    assert_eq!(
        r.error_code().as_deref(),
        Some("INVALID_QUERY_FILTER_OPERATOR")
    );
}

#[tokio::test]
async fn child_subqueries_and_semi_joins() {
    let e = env().await;
    let a1 = e.org.insert("Account", json!({"Name": "With"}));
    e.org.insert("Account", json!({"Name": "Without"}));
    let c = e
        .org
        .insert("Contact", json!({"LastName": "Kid", "AccountId": a1}));
    e.org
        .insert("Contact", json!({"LastName": "Zed", "AccountId": a1}));
    e.org.insert("Task", json!({"Subject": "Call", "WhoId": c}));
    let r = e.query("SELECT Name, (SELECT LastName FROM Contacts ORDER BY LastName DESC LIMIT 1) FROM Account ORDER BY Name").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let recs = r.body["records"].as_array().expect("records");
    assert_eq!(recs[0]["Contacts"]["totalSize"], json!(1));
    assert_eq!(recs[0]["Contacts"]["done"], json!(true));
    assert_eq!(recs[0]["Contacts"]["records"][0]["LastName"], json!("Zed"));
    assert_eq!(recs[1]["Contacts"], Value::Null, "no children -> null");
    let r = e
        .query("SELECT LastName FROM Contact WHERE Id IN (SELECT WhoId FROM Task)")
        .await;
    assert_eq!(r.body["records"].as_array().expect("r").len(), 1);
    assert_eq!(r.body["records"][0]["LastName"], json!("Kid"));
    let r = e
        .query("SELECT LastName FROM Contact WHERE Id NOT IN (SELECT WhoId FROM Task)")
        .await;
    assert_eq!(r.body["records"][0]["LastName"], json!("Zed"));
    let r = e
        .query("SELECT Subject, Who.Name, Account.Name FROM Task")
        .await;
    assert_eq!(r.body["records"][0]["Who"]["Name"], json!("Kid"));
    assert_eq!(
        r.body["records"][0]["Who"]["attributes"]["type"],
        json!("Contact")
    );
    assert_eq!(
        r.body["records"][0]["Account"]["Name"],
        json!("With"),
        "Task.AccountId derives from the contact"
    );
    let r = e
        .query("SELECT Name, (SELECT Id FROM Nope) FROM Account")
        .await;
    assert_eq!(r.error_code().as_deref(), Some("INVALID_TYPE"));
}

#[tokio::test]
async fn counts() {
    let e = env().await;
    for i in 0..7 {
        e.org.insert("Lead", json!({"LastName": format!("L{i}"), "Company": "X", "Phone": if i % 2 == 0 { Some("1") } else { None }}));
    }
    let r = e.query("SELECT COUNT() FROM Lead").await;
    assert_eq!(r.body, json!({"totalSize": 7, "done": true, "records": []}));
    let r = e
        .query("SELECT COUNT() FROM Lead WHERE IsConverted = false AND Phone != null")
        .await;
    assert_eq!(r.body["totalSize"], json!(4));
    let r = e.query("SELECT COUNT(Phone) n FROM Lead").await;
    assert_eq!(
        r.body["records"][0],
        json!({"attributes": {"type": "AggregateResult"}, "n": 4})
    );
    let r = e.query("SELECT COUNT(Id) FROM Lead").await;
    assert_eq!(r.body["records"][0]["expr0"], json!(7));
    let r = e.query("SELECT Name, COUNT(Id) FROM Lead").await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn pages_through_ten_thousand_records() {
    let e = env().await;
    e.org.add_custom_object("Item__c");
    e.org
        .add_custom_field("Item__c", "N__c", CustomFieldType::Number);
    for i in 0..10_000 {
        e.org
            .insert("Item__c", json!({"Name": format!("item {i}"), "N__c": i}));
    }
    let mut seen = HashSet::new();
    let mut r = e.query("SELECT Id, N__c FROM Item__c").await;
    let mut pages = 0;
    loop {
        pages += 1;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["totalSize"], json!(10_000));
        let recs = r.body["records"].as_array().expect("records");
        assert!(recs.len() <= 2000);
        for rec in recs {
            assert!(
                seen.insert(rec["Id"].as_str().expect("id").to_string()),
                "duplicate"
            );
        }
        let Some(next) = r.body["nextRecordsUrl"].as_str() else {
            assert_eq!(r.body["done"], json!(true));
            break;
        };
        assert_eq!(r.body["done"], json!(false));
        assert!(next.ends_with(&format!("-{}", pages * 2000)), "{next}");
        r = e.get(next).await;
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 10_000);
    // batchSize from Sforce-Query-Options, clamped to 200..2000.
    let first = e
        .send_with(
            reqwest::Method::GET,
            &e.data("query?q=SELECT+Id+FROM+Item__c"),
            None,
            Some(&e.token),
            &[("Sforce-Query-Options", "batchSize=500")],
        )
        .await;
    assert_eq!(first.body["records"].as_array().expect("r").len(), 500);
    assert!(
        first.body["nextRecordsUrl"]
            .as_str()
            .expect("next")
            .ends_with("-500")
    );
    let r = e
        .get(first.body["nextRecordsUrl"].as_str().expect("next"))
        .await;
    assert_eq!(r.body["records"].as_array().expect("r").len(), 500);
    let small = e
        .send_with(
            reqwest::Method::GET,
            &e.data("query?q=SELECT+Id+FROM+Item__c"),
            None,
            Some(&e.token),
            &[("Sforce-Query-Options", "batchSize=10")],
        )
        .await;
    assert_eq!(small.body["records"].as_array().expect("r").len(), 200);
    // A locator the server never issued.
    let bad = e.get(&e.data("query/01gB000003OCxSPIA1-2000")).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_code().as_deref(), Some("INVALID_QUERY_LOCATOR"));
    // Every page is one API call.
    assert_eq!(e.org.api_calls(), 5 + 2 + 1 + 1);
}

#[tokio::test]
async fn query_all_sees_deleted_and_merged_records() {
    let e = env().await;
    let keep = e.org.insert("Account", json!({"Name": "Keep"}));
    let gone = e.org.insert("Account", json!({"Name": "Gone"}));
    let loser = e.org.insert("Account", json!({"Name": "Loser"}));
    e.org.delete("Account", &gone);
    e.org.merge("Account", &keep, &loser);
    let r = e.query("SELECT Name FROM Account ORDER BY Name").await;
    assert_eq!(names(&r), vec!["Keep"]);
    let q: String = url::form_urlencoded::byte_serialize(
        b"SELECT Name, IsDeleted, MasterRecordId FROM Account ORDER BY Name",
    )
    .collect();
    let r = e.get(&e.data(&format!("queryAll?q={q}"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let recs = r.body["records"].as_array().expect("records");
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0]["Name"], json!("Gone"));
    assert_eq!(recs[0]["IsDeleted"], json!(true));
    assert_eq!(recs[1]["Name"], json!("Keep"));
    assert_eq!(recs[1]["IsDeleted"], json!(false));
    assert_eq!(recs[2]["MasterRecordId"], json!(keep));
}

#[tokio::test]
async fn query_errors() {
    let e = env().await;
    let cases = [
        ("SELECT Name FROM Account WHERE", "MALFORMED_QUERY"),
        ("SELECT Name FROM Account LIMIT x", "MALFORMED_QUERY"),
        ("SELECT Name FROM Account GROUP BY Name", "MALFORMED_QUERY"),
        ("SELECT Name FROM Nope__c", "INVALID_TYPE"),
        ("SELECT Nope FROM Account", "INVALID_FIELD"),
        ("SELECT Parent.Nope FROM Account", "INVALID_FIELD"),
        ("SELECT Nope.Name FROM Account", "INVALID_FIELD"),
        ("SELECT Name, Name FROM Account", "INVALID_FIELD"),
        (
            "SELECT Name FROM Account WHERE NumberOfEmployees = '5'",
            "INVALID_FIELD",
        ),
        ("SELECT Name FROM Account WHERE Name = 5", "INVALID_FIELD"),
        (
            "SELECT Name FROM Account WHERE Name = 'unterminated",
            "MALFORMED_QUERY",
        ),
        ("", "MALFORMED_QUERY"),
    ];
    for (q, code) in cases {
        let r = e.query(q).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert_eq!(r.error_code().as_deref(), Some(code), "{q}: {}", r.text);
    }
    let r = e.query("SELECT Name FROM FruitVendor__c").await;
    assert_eq!(
        r.error_message().as_deref(),
        Some(
            "\nSELECT Name FROM FruitVendor__c\n                 ^\nERROR at Row:1:Column:18\nsObject type 'FruitVendor__c' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."
        )
    );
    let r = e.query("SELECT Id,\n  Bacon__c\nFROM Contact").await;
    assert!(r.error_message().expect("msg").starts_with("\nSELECT Id,\n  Bacon__c\n  ^\nERROR at Row:2:Column:3\nNo such column 'Bacon__c' on entity 'Contact'."), "{}", r.text);
    // Errors count too (HEROKU recordings show api-usage rising on 4xx).
    assert_eq!(e.org.api_calls(), 14);
}

#[tokio::test]
async fn person_account_fields_exist_only_when_enabled() {
    let e = env().await;
    let r = e.query("SELECT PersonMobilePhone FROM Account").await;
    assert_eq!(r.error_code().as_deref(), Some("INVALID_FIELD"));
    let e = env_with(OrgSpec {
        person_accounts: true,
        ..OrgSpec::default()
    })
    .await;
    e.org.insert(
        "Account",
        json!({"FirstName": "Hanako", "LastName": "Sato", "PersonMobilePhone": "090-0000-0000"}),
    );
    e.org.insert("Account", json!({"Name": "Business"}));
    let r = e
        .query("SELECT Name, IsPersonAccount, PersonMobilePhone FROM Account ORDER BY Name")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["records"][0]["Name"], json!("Business"));
    assert_eq!(r.body["records"][0]["IsPersonAccount"], json!(false));
    assert_eq!(r.body["records"][1]["Name"], json!("Hanako Sato"));
    assert_eq!(r.body["records"][1]["IsPersonAccount"], json!(true));
}

#[tokio::test]
async fn field_and_object_security() {
    let e = env().await;
    e.org
        .insert("Contact", json!({"LastName": "X", "MobilePhone": "090"}));
    e.org.deny_field("Contact", "MobilePhone");
    let r = e.query("SELECT LastName, MobilePhone FROM Contact").await;
    assert_eq!(r.error_code().as_deref(), Some("INVALID_FIELD"));
    let d = e.get(&e.data("sobjects/Contact/describe")).await;
    let fields: Vec<&str> = d.body["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(fields.contains(&"Phone") && !fields.contains(&"MobilePhone"));
    e.org.deny_object("Lead");
    let r = e.query("SELECT Id FROM Lead").await;
    assert_eq!(r.error_code().as_deref(), Some("INVALID_TYPE"));
    let r = e.get(&e.data("sobjects/Lead/describe")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code().as_deref(), Some("NOT_FOUND"));
    let g = e.get(&e.data("sobjects/")).await;
    assert!(
        !g.body["sobjects"]
            .as_array()
            .expect("list")
            .iter()
            .any(|o| o["name"] == json!("Lead"))
    );
}
