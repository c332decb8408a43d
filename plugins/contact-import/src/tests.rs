//! Unit tests of the mapping, the SOQL and the number formatting (natively, no host).

use serde_json::json;

use crate::config::ImportConfig;
use crate::source::{Mapped, Object, Source, map_record, sources};
use crate::sync::{ObjectState, soql, thousands};

fn cfg(json: &str) -> ImportConfig {
    pbx_plugin_sdk::config::parse_str(json).expect("config")
}

#[test]
fn thousands_separators() {
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(10_000), "10,000");
    assert_eq!(thousands(1_234_567), "1,234,567");
}

#[test]
fn default_objects_and_bad_object_named() {
    let c = cfg("{}");
    let s = c.selection().expect("selection");
    let names: Vec<_> = sources(&c, &s).iter().map(|s| s.object).collect();
    assert_eq!(names, vec![Object::Contact, Object::Account, Object::Lead]);
    let (field, _) = cfg(r#"{"objects":["Contact","Opportunity"]}"#)
        .selection()
        .expect_err("bad");
    assert_eq!(field, "objects[1]");
}

#[test]
fn keyset_query_after_the_watermark() {
    let src = Source {
        object: Object::Lead,
        business: false,
        person: false,
        person_fields: false,
    };
    let first = soql(
        &src,
        &ObjectState::default(),
        Some("2024-01-01T00:00:00.000Z"),
    );
    assert!(first.contains("IsConverted = false"), "{first}");
    assert!(
        first.contains("LastModifiedDate >= 2024-01-01T00:00:00.000Z"),
        "{first}"
    );
    assert!(
        first.ends_with("ORDER BY LastModifiedDate ASC, Id ASC"),
        "{first}"
    );
    let st = ObjectState {
        initial_done: true,
        lmd: Some("2024-02-01T00:00:00.000Z".into()),
        last_id: Some("00Q000000000001AAA".into()),
        ..ObjectState::default()
    };
    let next = soql(&src, &st, Some("2024-01-01T00:00:00.000Z"));
    assert!(!next.contains("IsConverted = false"), "{next}");
    assert!(!next.contains(">= 2024-01-01"), "{next}");
    assert!(
        next.contains("(LastModifiedDate > 2024-02-01T00:00:00.000Z OR (LastModifiedDate = 2024-02-01T00:00:00.000Z AND Id > '00Q000000000001AAA'))"),
        "{next}"
    );
}

#[test]
fn person_account_mapping() {
    let src = Source {
        object: Object::Account,
        business: true,
        person: true,
        person_fields: true,
    };
    let rec = json!({"Id":"001A","Name":"Hanako Sato","IsPersonAccount":true,"Phone":"03-1111-2222","PersonMobilePhone":"090-1234-5678","LastModifiedDate":"2024-05-01T10:00:00.000+0000"});
    let Mapped::Entry(c) = map_record(&src, &rec).expect("maps") else {
        panic!("entry")
    };
    assert_eq!(c.external_id, "PersonAccount/001A");
    assert_eq!(c.record_type, "PersonAccount");
    assert_eq!(c.company.as_deref(), Some("Hanako Sato"));
    assert_eq!(c.phones.len(), 2);
    assert_eq!(c.modified_at, Some(1_714_557_600_000));
    let no_name = json!({"Id":"001B","Name":null,"IsPersonAccount":false});
    assert_eq!(
        map_record(&src, &no_name).expect("maps"),
        Mapped::NoName(vec!["Account/001B".into(), "PersonAccount/001B".into()])
    );
}
