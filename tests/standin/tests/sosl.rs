//! SOSL (docs/salesforce-api.md §2b): caller lookup by phone across the formats of SPEC L-2, the
//! escaped E.164 `+`, RETURNING field lists with WHERE/ORDER BY/LIMIT, scopes, the
//! version-dependent response wrapper, errors and parameterizedSearch.

mod common;

use common::*;
use serde_json::{Value, json};

const FORMATS: &[&str] = &[
    "03-1234-5678",
    "(03) 1234 5678",
    "0312345678",
    "+81 3 1234 5678",
    "+81-3-1234-5678",
];

fn rows(r: &Resp) -> Vec<Value> {
    r.body["searchRecords"]
        .as_array()
        .unwrap_or_else(|| panic!("searchRecords in {}", r.text))
        .clone()
}

#[tokio::test]
async fn phone_numbers_match_in_every_format() {
    let e = env().await;
    let mut want = Vec::new();
    for (i, f) in FORMATS.iter().enumerate() {
        want.push(
            e.org
                .insert("Contact", json!({"LastName": format!("C{i}"), "Phone": f})),
        );
    }
    // Mobile and other phone fields are searched too; other numbers are not found.
    want.push(e.org.insert(
        "Contact",
        json!({"LastName": "Mobile", "MobilePhone": "+81 (0)3-1234-5678"}),
    ));
    e.org.insert(
        "Contact",
        json!({"LastName": "Other", "Phone": "03-1234-5679"}),
    );
    e.org.insert(
        "Contact",
        json!({"LastName": "London", "Phone": "+44 3 1234 5678"}),
    );
    e.org.insert(
        "Contact",
        json!({"LastName": "Text", "Description": "call 0312345678"}),
    );
    for term in [
        "0312345678",
        "\\+81312345678",
        "03\\-1234\\-5678",
        "81312345678",
    ] {
        let r = e
            .search(&format!(
                "FIND {{{term}}} IN PHONE FIELDS RETURNING Contact(Id, Name, Phone)"
            ))
            .await;
        assert_eq!(r.status, 200, "{term}: {}", r.text);
        let got: Vec<String> = rows(&r)
            .iter()
            .map(|x| x["Id"].as_str().expect("id").to_string())
            .collect();
        assert_eq!(got, want, "FIND {{{term}}}");
    }
}

#[tokio::test]
async fn caller_lookup_across_objects() {
    let e = env().await;
    let acc = e
        .org
        .insert("Account", json!({"Name": "Acme", "Phone": "03-1234-5678"}));
    let con = e.org.insert("Contact", json!({"FirstName": "Taro", "LastName": "Yamada", "Phone": "(03) 1234 5678", "AccountId": acc}));
    e.org.insert(
        "Lead",
        json!({"LastName": "Lead", "Company": "L Co", "MobilePhone": "+81 3 1234 5678"}),
    );
    e.org.insert("Lead", json!({"LastName": "Converted", "Company": "C Co", "Phone": "0312345678", "IsConverted": true}));
    let r = e
        .search("FIND {\\+81312345678} IN PHONE FIELDS RETURNING Contact(Id, Name, Phone, Account.Name), Lead(Id, Name, Company WHERE IsConverted = false), Account(Id, Name)")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rs = rows(&r);
    assert_eq!(rs.len(), 3);
    assert_eq!(rs[0]["attributes"]["type"], json!("Contact"));
    assert_eq!(rs[0]["Id"], json!(con));
    assert_eq!(rs[0]["Name"], json!("Taro Yamada"));
    assert_eq!(rs[0]["Account"]["Name"], json!("Acme"));
    assert_eq!(rs[1]["attributes"]["type"], json!("Lead"));
    assert_eq!(rs[1]["Company"], json!("L Co"));
    assert_eq!(rs[2]["attributes"]["type"], json!("Account"));
    assert_eq!(
        rs[2].as_object().expect("obj").keys().collect::<Vec<_>>(),
        vec!["Id", "Name", "attributes"],
        "only the RETURNING fields (plus attributes)"
    );
    // One API call for the whole search.
    assert_eq!(e.org.api_calls(), 1);
    // Without a field list a RETURNING object gives Id only.
    let r = e
        .search("FIND {0312345678} IN PHONE FIELDS RETURNING Account")
        .await;
    assert_eq!(
        rows(&r),
        vec![
            json!({"attributes": {"type": "Account", "url": format!("/services/data/v60.0/sobjects/Account/{acc}")}, "Id": acc})
        ]
    );
}

#[tokio::test]
async fn returning_order_limit_and_overall_limit() {
    let e = env().await;
    for (i, name) in ["b", "c", "a"].iter().enumerate() {
        e.org.insert(
            "Contact",
            json!({"LastName": name, "Phone": "050-0000-0000", "Title": format!("t{i}")}),
        );
    }
    let r = e.search("FIND {05000000000} IN PHONE FIELDS RETURNING Contact(LastName ORDER BY LastName DESC LIMIT 2)").await;
    let names: Vec<&str> = rows(&r)
        .iter()
        .filter_map(|x| x["LastName"].as_str())
        .map(|_| "")
        .collect();
    assert_eq!(names.len(), 2);
    let got: Vec<Value> = rows(&r).iter().map(|x| x["LastName"].clone()).collect();
    assert_eq!(got, vec![json!("c"), json!("b")]);
    let r = e
        .search("FIND {05000000000} IN PHONE FIELDS RETURNING Contact(LastName) LIMIT 1")
        .await;
    assert_eq!(rows(&r).len(), 1);
}

#[tokio::test]
async fn text_scopes() {
    let e = env().await;
    e.org.insert(
        "Account",
        json!({"Name": "Global Media", "Description": "sells acme widgets"}),
    );
    e.org.insert("Account", json!({"Name": "Acme"}));
    e.org.insert(
        "Contact",
        json!({"FirstName": "太郎", "LastName": "山田", "Email": "taro@yamada.example"}),
    );
    let count = |r: &Resp| rows(r).len();
    let r = e
        .search("FIND {acme} IN NAME FIELDS RETURNING Account(Name)")
        .await;
    assert_eq!(count(&r), 1);
    let r = e
        .search("FIND {acme} IN ALL FIELDS RETURNING Account(Name)")
        .await;
    assert_eq!(count(&r), 2);
    let r = e.search("FIND {acm*} RETURNING Account(Name)").await;
    assert_eq!(
        count(&r),
        2,
        "ALL FIELDS is the default; * is a prefix wildcard"
    );
    let r = e.search("FIND {acm} RETURNING Account(Name)").await;
    assert_eq!(count(&r), 0, "whole words only");
    let r = e
        .search("FIND {\"global media\"} IN NAME FIELDS RETURNING Account(Name)")
        .await;
    assert_eq!(count(&r), 1);
    let r = e
        .search("FIND {山田} IN NAME FIELDS RETURNING Contact(Name)")
        .await;
    assert_eq!(rows(&r)[0]["Name"], json!("太郎 山田"));
    let r = e
        .search("FIND {taro@yamada.example} IN EMAIL FIELDS RETURNING Contact(Email)")
        .await;
    assert_eq!(count(&r), 1);
    let r = e.search("FIND {acme OR 山田}").await;
    assert_eq!(count(&r), 3, "no RETURNING: every searchable object");
}

#[tokio::test]
async fn response_wrapper_depends_on_the_version() {
    let e = env().await;
    e.org
        .insert("Contact", json!({"LastName": "X", "Phone": "0312345678"}));
    let q: String = url::form_urlencoded::byte_serialize(
        b"FIND {0312345678} IN PHONE FIELDS RETURNING Contact(Id)",
    )
    .collect();
    let old = e.get(&format!("/services/data/v35.0/search/?q={q}")).await;
    assert!(old.body.is_array(), "bare array before v36: {}", old.text);
    assert_eq!(old.body.as_array().map(Vec::len), Some(1));
    let new = e.get(&format!("/services/data/v45.0/search/?q={q}")).await;
    assert_eq!(new.body["searchRecords"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn search_errors() {
    let e = env().await;
    let cases = [
        ("FIND 0312345678 IN PHONE FIELDS", 400, "MALFORMED_SEARCH"),
        ("FIND {3} IN PHONE FIELDS", 400, "INVALID_SEARCH"),
        ("FIND {acme} IN FOO FIELDS", 400, "MALFORMED_SEARCH"),
        ("FIND {acme} RETURNING Nope__c(Id)", 400, "INVALID_TYPE"),
        ("FIND {acme} RETURNING Account(Nope)", 400, "INVALID_FIELD"),
        ("SELECT Id FROM Account", 400, "MALFORMED_SEARCH"),
        ("", 400, "MALFORMED_SEARCH"),
    ];
    for (q, status, code) in cases {
        let r = e.search(q).await;
        assert_eq!(r.status, status, "{q}: {}", r.text);
        assert_eq!(r.error_code().as_deref(), Some(code), "{q}: {}", r.text);
    }
    e.org.deny_object("Lead");
    let r = e.search("FIND {acme} RETURNING Lead(Id)").await;
    assert_eq!(r.error_code().as_deref(), Some("INVALID_TYPE"));
}

#[tokio::test]
async fn parameterized_search() {
    let e = env().await;
    e.org.insert(
        "Account",
        json!({"Name": "Acme", "Phone": "+81 3 1234 5678"}),
    );
    e.org
        .insert("Account", json!({"Name": "Other", "Phone": "06-0000-0000"}));
    let r = e
        .get(&e.data("parameterizedSearch/?q=03-1234-5678&in=PHONE&sobject=Account&Account.fields=Id,Name&Account.limit=10"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(rows(&r).len(), 1);
    assert_eq!(rows(&r)[0]["Name"], json!("Acme"));
}
