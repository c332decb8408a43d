//! SPEC L-8 over a realistic day: Salesforce API calls per logged call, counting the calls the
//! phone-book index (contact import) spends to stay fresh, read from the stand-in's counter.
//!
//! The day, compressed: 200 calls (85 % from numbers Salesforce knows, 15 % unknown), logged
//! one by one (no batching: the quiet-office case, the worst for the ratio), and the index
//! refreshed every hour (24 incremental syncs), far more often than the seed products' daily.

use pbx_e2e::{TestEnv, ended_call, standin};
use serde_json::json;
use sf_standin::OrgSpec;

const TOML: &str = r#"
[host]
allow_private_networks = ["127.0.0.0/8"]

[plugins.history-logger]
component = "@PLUGINS@/history_logger.wasm"
events = ["ended"]
[plugins.history-logger.grants]
http = ["{config.login_url}", "{config.instance_url}"]
secrets = ["salesforce.password", "salesforce.security_token", "salesforce.client_secret"]
state = true
contacts = "read"

[plugins.contact-import]
component = "@PLUGINS@/contact_import.wasm"
schedules = { sync = 3600 }
[plugins.contact-import.grants]
http = ["{config.login_url}", "{config.instance_url}"]
secrets = ["salesforce.password", "salesforce.security_token", "salesforce.client_secret"]
state = true
contacts = "read-write"

[tenants.acme]
default_country = "JP"
[tenants.acme.plugins.history-logger]
config = { login_url = "@STANDIN@", auth = "password", username = "admin@acme.example", client_id = "ACME_CLIENT", language = "ja" }
[tenants.acme.plugins.contact-import]
config = { login_url = "@STANDIN@", auth = "password", username = "admin@acme.example", client_id = "ACME_CLIENT", objects = ["Contact", "Account", "Lead"] }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l8_api_calls_per_logged_call_over_a_day_including_the_index_refresh() {
    let sf = standin().await;
    let org = sf.add_org(OrgSpec {
        username: "admin@acme.example".into(),
        password: "pw-secret-1".into(),
        security_token: "TOKENSECRET".into(),
        client_id: "ACME_CLIENT".into(),
        client_secret: "client-secret-1".into(),
        ..OrgSpec::default()
    });
    // 40 Contacts, 10 Accounts, 10 Leads, in the formats people type.
    let mut known = Vec::new();
    for i in 0..60u32 {
        let national = format!("03-4{:03}-{:04}", i / 10, 1000 + i);
        let (object, fields) = match i {
            0..40 => (
                "Contact",
                json!({"LastName": format!("顧客{i}"), "Phone": national.clone()}),
            ),
            40..50 => (
                "Account",
                json!({"Name": format!("会社{i}"), "Phone": national.clone()}),
            ),
            _ => (
                "Lead",
                json!({"LastName": format!("見込{i}"), "Company": "見込会社", "Phone": national.clone()}),
            ),
        };
        org.insert(object, fields);
        known.push(national);
    }
    let env = TestEnv::start(TOML, &sf.base_url()).await;
    for plugin in ["history-logger", "contact-import"] {
        for (name, value) in [
            ("salesforce.password", "pw-secret-1"),
            ("salesforce.security_token", "TOKENSECRET"),
            ("salesforce.client_secret", "client-secret-1"),
        ] {
            env.set_secret("acme", plugin, name, value).await;
        }
    }
    // The first import happens once in a tenant's life, not every day: not counted.
    assert!(
        env.host
            .run_schedule("acme", "contact-import", "sync")
            .await
            .unwrap()
            .outcome
            .is_ok()
    );
    assert_eq!(env.host.storage().contacts_count("acme").unwrap(), 60);
    // A warm-up call logs in (the session is then reused all day).
    env.post(
        "/v1/events",
        &ended_call(
            "acme",
            "warm-up",
            "inbound",
            &known[0],
            "0501111222",
            "answered",
            10,
        ),
    )
    .await;
    env.wait_idle().await;

    org.reset_counters();
    let mut sync_calls = 0;
    for hour in 0..24u32 {
        // the index refreshes every hour...
        let before = org.api_calls();
        let report = env
            .host
            .run_schedule("acme", "contact-import", "sync")
            .await
            .unwrap();
        assert!(report.outcome.is_ok(), "{:?}", report.outcome);
        sync_calls += org.api_calls() - before;
        // ...and a salesperson edits a record now and then, which the next sync picks up
        if hour % 6 == 0 {
            let id = org.records("Contact")[hour as usize]["Id"]
                .as_str()
                .unwrap()
                .to_string();
            org.update(
                "Contact",
                &id,
                json!({"MobilePhone": format!("090-1111-{:04}", hour)}),
            );
        }
        // ...while the calls of that hour are logged
        for n in 0..(200 / 24 + u32::from(hour < 200 % 24)) {
            let i = (hour * 9 + n) as usize;
            let caller = if i % 7 == 3 {
                format!("0{}", 600_000_000 + i)
            } else {
                known[i % known.len()].clone()
            };
            let (status, body) = env
                .post(
                    "/v1/events",
                    &ended_call(
                        "acme",
                        &format!("c{hour}-{n}"),
                        "inbound",
                        &caller,
                        "0501111222",
                        "answered",
                        30,
                    ),
                )
                .await;
            assert_eq!(status, 202, "{body}");
        }
        env.wait_idle().await;
    }
    let tasks = org.records("Task").len() - 1;
    assert_eq!(tasks, 200, "every call of the day logged once");
    let total = org.api_calls();
    let logging = total - sync_calls;
    let per_call = total as f64 / tasks as f64;
    println!(
        "a day of {tasks} logged calls: {logging} API calls for logging + {sync_calls} for 24 index refreshes = {total} = {per_call:.2} per logged call"
    );
    // known numbers cost 1, unknown ones at most 2: 171 known + 29 unknown
    assert!(logging <= 171 + 2 * 29, "logging cost {logging}");
    // the seed products: BIZTEL 2 + M + N per call with its session cached; ours, refresh included:
    assert!(
        per_call < 2.0,
        "{per_call:.2} API calls per logged call over the day"
    );
}
