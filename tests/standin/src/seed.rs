//! Demo data (`sf-standin --seed demo`, and for tests that want a populated org): agents,
//! accounts, contacts and leads whose phone numbers are written in the formats SPEC L-2 lists,
//! so a caller lookup can be tried by hand.

use serde_json::json;

use crate::org::{Org, OrgSpec};

/// Fixed credentials for the demo org, so a person can type them.
pub fn demo_spec() -> OrgSpec {
    OrgSpec {
        org_id: "00D5g000000DEMO".to_string(),
        username: "demo@standin.example".to_string(),
        password: "demo-password".to_string(),
        security_token: "DEMOTOKEN0123456789".to_string(),
        client_id: "3MVG9standin.demo.client.id".to_string(),
        client_secret: "DEMOSECRET0123456789".to_string(),
        refresh_tokens: vec!["5Aep861standin.demo.refresh.token".to_string()],
        jwt_preauthorized_users: vec!["demo@standin.example".to_string()],
        ..OrgSpec::default()
    }
}

/// Seeds users, accounts, contacts, leads and a case.
pub fn demo(org: &Org) {
    let sato = org.insert(
        "User",
        json!({"FirstName": "Hanako", "LastName": "Sato", "Username": "sato@standin.example",
               "Email": "sato@standin.example", "Phone": "03-5555-0101", "Extension": "101"}),
    );
    org.insert(
        "User",
        json!({"FirstName": "Jiro", "LastName": "Suzuki", "Username": "suzuki@standin.example",
               "Email": "suzuki@standin.example", "Phone": "03-5555-0102", "Extension": "102"}),
    );
    let acme = org.insert(
        "Account",
        json!({"Name": "株式会社アクメ", "Phone": "03-1234-5678", "OwnerId": sato}),
    );
    let globex = org.insert(
        "Account",
        json!({"Name": "Globex Japan", "Phone": "+81 6 6000 0000"}),
    );
    org.insert(
        "Contact",
        json!({"FirstName": "太郎", "LastName": "山田", "AccountId": acme,
               "Phone": "(03) 1234 5678", "MobilePhone": "090-1111-2222", "Email": "yamada@acme.example"}),
    );
    org.insert(
        "Contact",
        json!({"FirstName": "Ken", "LastName": "Tanaka", "AccountId": globex,
               "Phone": "+81-6-6000-0001", "Email": "tanaka@globex.example"}),
    );
    org.insert(
        "Lead",
        json!({"FirstName": "Yui", "LastName": "Kobayashi", "Company": "Initech",
               "Phone": "+81 45 000 1234", "MobilePhone": "080 3333 4444"}),
    );
    org.insert(
        "Lead",
        json!({"LastName": "Converted Lead", "Company": "Old Co", "Phone": "0451112222",
               "IsConverted": true, "Status": "Closed - Converted"}),
    );
    org.insert(
        "Case",
        json!({"Subject": "Printer on fire", "Origin": "Phone", "AccountId": acme, "Status": "Working"}),
    );
}
