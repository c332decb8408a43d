//! The `/__standin` control API and the `sf-standin` binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;
use serde_json::{Value, json};
use sf_standin::StandIn;

async fn json_of(r: reqwest::Response) -> Value {
    r.json().await.expect("json body")
}

#[tokio::test]
async fn create_org_seed_and_log_in_over_http() {
    let sf = StandIn::start().await.expect("start");
    let http = reqwest::Client::new();
    let base = sf.base_url();
    let r = http
        .post(format!("{base}/__standin/orgs"))
        .json(&json!({"username": "ops@tenant-a.example", "daily_api_limit": 100, "person_accounts": true}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status().as_u16(), 201);
    let org = json_of(r).await;
    assert_eq!(org["username"], json!("ops@tenant-a.example"));
    assert_eq!(org["instance_url"], json!(base));
    let org_id = org["org_id"].as_str().expect("org id").to_string();
    assert!(is_id(&org_id) && org_id.starts_with("00D"));
    let ctl = format!("{base}/__standin/orgs/{org_id}");
    // Seed, read, edit, delete through the control API.
    let r = http
        .post(format!("{ctl}/records/Contact"))
        .json(&json!({"LastName": "Seeded", "Phone": "0312345678"}))
        .send()
        .await
        .expect("seed");
    assert_eq!(r.status().as_u16(), 201);
    let id = json_of(r).await["id"].as_str().expect("id").to_string();
    let r = http
        .patch(format!("{ctl}/records/Contact/{id}"))
        .json(&json!({"FirstName": "Is"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status().as_u16(), 204);
    let rec = json_of(
        http.get(format!("{ctl}/records/Contact/{id}"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(rec["Name"], json!("Is Seeded"));
    let list = json_of(
        http.get(format!("{ctl}/records/Contact"))
            .send()
            .await
            .expect("list"),
    )
    .await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let bad = http
        .post(format!("{ctl}/records/Contact"))
        .json(&json!({"Nope": 1}))
        .send()
        .await
        .expect("bad");
    assert_eq!(bad.status().as_u16(), 400);
    // Schema and security.
    let r = http
        .post(format!("{ctl}/custom-objects"))
        .json(&json!({"name": "Call__c"}))
        .send()
        .await
        .expect("obj");
    assert_eq!(json_of(r).await["key_prefix"], json!("a00"));
    let r = http
        .post(format!("{ctl}/custom-fields"))
        .json(&json!({"sobject": "Task", "name": "Memo__c", "type": "multipicklist", "values": ["A", "B"]}))
        .send()
        .await
        .expect("field");
    assert_eq!(r.status().as_u16(), 201);
    http.post(format!("{ctl}/deny-field"))
        .json(&json!({"sobject": "Contact", "field": "Phone"}))
        .send()
        .await
        .expect("deny");
    // Log in with the returned credentials and use the API.
    let pw = format!(
        "{}{}",
        org["password"].as_str().expect("pw"),
        org["security_token"].as_str().expect("tok")
    );
    let form = [
        ("grant_type", "password"),
        ("client_id", org["client_id"].as_str().expect("cid")),
        (
            "client_secret",
            org["client_secret"].as_str().expect("secret"),
        ),
        ("username", "ops@tenant-a.example"),
        ("password", pw.as_str()),
    ];
    let t = json_of(
        http.post(format!("{base}/services/oauth2/token"))
            .form(&form)
            .send()
            .await
            .expect("token"),
    )
    .await;
    let token = t["access_token"].as_str().expect("token").to_string();
    let q = http
        .get(format!(
            "{base}/services/data/v51.0/query?q=SELECT+Phone+FROM+Contact"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("q");
    assert_eq!(q.status().as_u16(), 400, "Phone is denied");
    let q = http
        .get(format!(
            "{base}/services/data/v51.0/query?q=SELECT+Memo__c+FROM+Task"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("q");
    assert_eq!(q.status().as_u16(), 200);
    let counters = json_of(
        http.get(format!("{ctl}/counters"))
            .send()
            .await
            .expect("counters"),
    )
    .await;
    assert_eq!(counters["api_calls"], json!(3));
    assert_eq!(counters["api_limit"], json!(100));
    http.post(format!("{ctl}/remaining-api"))
        .json(&json!({"remaining": 0}))
        .send()
        .await
        .expect("remaining");
    let q = http
        .get(format!("{base}/services/data/v51.0/limits"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("q");
    assert_eq!(q.status().as_u16(), 403);
    http.post(format!("{ctl}/reset-counters"))
        .send()
        .await
        .expect("reset");
    http.post(format!("{ctl}/expire-sessions"))
        .send()
        .await
        .expect("expire");
    let q = http
        .get(format!("{base}/services/data/v51.0/limits"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("q");
    assert_eq!(q.status().as_u16(), 401);
    let s = json_of(
        http.post(format!("{ctl}/sessions"))
            .send()
            .await
            .expect("session"),
    )
    .await;
    let q = http
        .get(format!("{base}/services/data/v51.0/limits"))
        .bearer_auth(s["access_token"].as_str().expect("t"))
        .send()
        .await
        .expect("q");
    assert_eq!(q.status().as_u16(), 200);
    let r = http
        .delete(format!("{ctl}/records/Contact/{id}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 204);
    let orgs = json_of(
        http.get(format!("{base}/__standin/orgs"))
            .send()
            .await
            .expect("orgs"),
    )
    .await;
    assert_eq!(orgs.as_array().map(Vec::len), Some(1));
    assert_eq!(
        http.get(format!("{base}/__standin/orgs/00Dnope"))
            .send()
            .await
            .expect("404")
            .status()
            .as_u16(),
        404
    );
    // A duplicate org id is refused.
    let dup = http
        .post(format!("{base}/__standin/orgs"))
        .json(&json!({"org_id": org_id}))
        .send()
        .await
        .expect("dup");
    assert_eq!(dup.status().as_u16(), 400);
    sf.shutdown().await;
}

#[tokio::test]
async fn demo_seed_answers_a_caller_lookup() {
    let e = env_with(sf_standin::seed::demo_spec()).await;
    sf_standin::seed::demo(&e.org);
    let r = e
        .search("FIND {\\+81312345678} IN PHONE FIELDS RETURNING Contact(Id, Name, Phone), Account(Id, Name, Phone), Lead(Id, Name)")
        .await;
    let types: Vec<&str> = r.body["searchRecords"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|x| x["attributes"]["type"].as_str())
        .collect();
    assert_eq!(types, vec!["Contact", "Account"]);
}

#[test]
fn binary_help_and_run() {
    let exe = env!("CARGO_BIN_EXE_sf-standin");
    let help = Command::new(exe).arg("--help").output().expect("runs");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success());
    assert!(
        text.contains("--listen") && text.contains("--seed"),
        "{text}"
    );
    let mut child = Command::new(exe)
        .args(["--listen", "127.0.0.1:0", "--seed", "demo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("base url line");
    let base = line.trim().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let orgs: Value = rt.block_on(async {
        reqwest::get(format!("{base}/__standin/orgs"))
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(orgs[0]["username"], json!("demo@standin.example"));
}
