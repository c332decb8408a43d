//! SPEC I-1..I-4 (and H-6) through the real host: `POST /v1/ivr` → the `ivr-greeting`
//! component → the tenant's phone book or the Salesforce stand-in over a socket.

use std::time::{Duration, Instant};

use pbx_e2e::{TestEnv, standin};
use pbx_host::store::{ContactRow, PhoneRow};
use serde_json::{Value, json};
use sf_standin::{Fault, FaultKind, Org, OrgSpec, StandIn};

const TOML: &str = r#"
[host]
allow_private_networks = ["127.0.0.0/8"]

[plugins.ivr-greeting]
component = "@PLUGINS@/ivr_greeting.wasm"
[plugins.ivr-greeting.grants]
http = ["https://login.salesforce.com", "https://test.salesforce.com", "{config.login_url}", "{config.instance_url}"]
secrets = ["salesforce.password", "salesforce.security_token", "salesforce.client_secret", "salesforce.refresh_token", "salesforce.private_key"]
state = true
contacts = "read"
[plugins.ivr-greeting.limits]
cpu_ms = 100
memory_mib = 32
wall_ms = 3000

[tenants.acme]
default_country = "JP"
ivr_fallback = { speech = "ただいま混み合っております。", route = "queue:fallback" }
[tenants.acme.plugins.ivr-greeting]
config = { login_url = "@STANDIN@", auth = "password", username = "admin@acme.example", client_id = "ACME_CLIENT", queue = "queue:reception" }
"#;

const NO_MATCH: &str = "お電話ありがとうございます。只今、オペレータへお繋ぎしておりますので、しばらくお待ちください。";

async fn setup() -> (StandIn, Org, TestEnv) {
    let sf = standin().await;
    let org = sf.add_org(OrgSpec {
        username: "admin@acme.example".into(),
        password: "pw-secret-1".into(),
        security_token: "TOKENSECRET".into(),
        client_id: "ACME_CLIENT".into(),
        client_secret: "client-secret-1".into(),
        ..OrgSpec::default()
    });
    let env = TestEnv::start(TOML, &sf.base_url()).await;
    for (name, value) in [
        ("salesforce.password", "pw-secret-1"),
        ("salesforce.security_token", "TOKENSECRET"),
        ("salesforce.client_secret", "client-secret-1"),
    ] {
        env.set_secret("acme", "ivr-greeting", name, value).await;
    }
    (sf, org, env)
}

fn set_config(env: &TestEnv, sf: &StandIn, extra: Value) {
    let mut cfg = json!({"login_url": sf.base_url(), "auth": "password", "username": "admin@acme.example", "client_id": "ACME_CLIENT", "queue": "queue:reception"});
    if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    env.host
        .set_config("acme", "ivr-greeting", cfg)
        .expect("set config");
}

async fn ivr(env: &TestEnv, caller: &str, deadline_ms: u32) -> (Value, Duration) {
    let started = Instant::now();
    let (status, d) = env
        .post(
            "/v1/ivr",
            &json!({"tenant": "acme", "ivr_name": "main", "deadline_ms": deadline_ms,
                    "call": {"call_id": "ivr-1", "direction": "inbound", "caller": caller,
                             "callee": "0501111222", "dial_started_at": 0}}),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{d}");
    (d, took)
}

fn vars(d: &Value) -> Vec<(String, String)> {
    d["variables"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap_or("").to_string(),
                        p[1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn var(d: &Value, name: &str) -> Option<String> {
    vars(d).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Searches made (SOSL), from the stand-in's request log.
fn searches(org: &Org) -> Vec<String> {
    org.request_log()
        .into_iter()
        .filter(|r| r.path.contains("/search"))
        .map(|r| r.path)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i1_known_number_answers_from_the_phone_book_with_no_api_call() {
    let (_sf, org, env) = setup().await;
    env.host
        .storage()
        .contacts_upsert(
            "acme",
            &[ContactRow {
                external_id: "Account/0012v00002uhRmWAAU".into(),
                plugin: "contact-import".into(),
                record_type: "Account".into(),
                name: "CDF 株式会社".into(),
                company: Some("CDF 株式会社".into()),
                email: None,
                phones: vec![PhoneRow {
                    label: "Phone".into(),
                    number: "070-7537-3713".into(),
                    e164: Some("+817075373713".into()),
                }],
                account_id: None,
                modified_at: Some(1_700_000_000_000),
            }],
        )
        .expect("phone book");
    org.reset_counters();
    let (d, _) = ivr(&env, "07075373713", 2000).await;
    assert_eq!(d["source"], "plugin", "{d}");
    assert_eq!(
        d["speech"],
        "CDF 株式会社様、お電話ありがとうございます。只今、オペレータへお繋ぎしておりますので、しばらくお待ちください。"
    );
    assert_eq!(d["route"], "queue:reception");
    assert_eq!(var(&d, "crm_id").as_deref(), Some("0012v00002uhRmWAAU"));
    assert_eq!(var(&d, "match_source").as_deref(), Some("phone_book"));
    assert_eq!(org.api_calls(), 0, "a known number costs no API call");
    assert!(
        org.request_log().is_empty(),
        "not even a login: {:?}",
        org.request_log()
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i1_unknown_number_searches_salesforce() {
    let (_sf, org, env) = setup().await;
    let acct = org.insert(
        "Account",
        json!({"Name": "CDF 株式会社", "Phone": "07075373713"}),
    );
    let (d, _) = ivr(&env, "+81 70 7537 3713", 2000).await;
    assert_eq!(d["source"], "plugin", "{d}");
    assert_eq!(var(&d, "crm_id"), Some(acct.clone()));
    assert_eq!(var(&d, "crm_type").as_deref(), Some("Account"));
    assert_eq!(var(&d, "match_source").as_deref(), Some("salesforce"));
    let s = searches(&org);
    assert_eq!(s.len(), 1, "one SOSL search: {s:?}");
    let q = s[0].replace('+', " ");
    assert!(
        q.contains("RETURNING Account(Id, Name, Phone)")
            || q.contains("RETURNING%20Account(Id%2C%20Name%2C%20Phone)")
            || q.contains("RETURNING Account%28Id%2C Name%2C Phone%29"),
        "{q}"
    );
    // Login + search; the session is then reused by the next look-up (one login in all).
    assert_eq!(org.api_calls(), 2, "{:?}", org.request_log());
    let (d2, _) = ivr(&env, "07075373713", 2000).await;
    assert_eq!(var(&d2, "crm_id"), Some(acct));
    let logins = org
        .request_log()
        .iter()
        .filter(|r| r.path.contains("/oauth2/token"))
        .count();
    assert_eq!(logins, 1, "{:?}", org.request_log());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i1_objects_configurable() {
    let (sf, org, env) = setup().await;
    let contact = org.insert(
        "Contact",
        json!({"FirstName": "Taro", "LastName": "Yamada", "MobilePhone": "090-1111-2222"}),
    );
    // Default objects (Account only): the Contact is not found.
    let (d, _) = ivr(&env, "09011112222", 2000).await;
    assert_eq!(var(&d, "match").as_deref(), Some("false"), "{d}");
    assert_eq!(d["speech"], NO_MATCH);
    set_config(&env, &sf, json!({"objects": ["Contact", "Account"]}));
    let (d, _) = ivr(&env, "09011112222", 2000).await;
    assert_eq!(var(&d, "crm_id"), Some(contact), "{d}");
    assert_eq!(var(&d, "crm_type").as_deref(), Some("Contact"));
    assert_eq!(
        d["speech"],
        format!(
            "Taro Yamada様、お電話ありがとうございます。只今、オペレータへお繋ぎしておりますので、しばらくお待ちください。"
        )
    );
    let s = searches(&org);
    let last = s.last().expect("searches");
    assert!(last.contains("Contact"), "{last}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i2_no_match_default_text_and_route() {
    let (_sf, _org, env) = setup().await;
    let (d, _) = ivr(&env, "0312345678", 2000).await;
    assert_eq!(d["source"], "plugin", "{d}");
    assert_eq!(d["speech"], NO_MATCH);
    assert_eq!(d["route"], "queue:reception");
    assert_eq!(vars(&d), vec![("match".to_string(), "false".to_string())]);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i2_match_template_with_name() {
    let (sf, org, env) = setup().await;
    let acct = org.insert(
        "Account",
        json!({"Name": "CDF 株式会社", "Phone": "03-1234-5678"}),
    );
    set_config(
        &env,
        &sf,
        json!({"rules": [
            {"when": "match", "speech": "{NAME}様（{TYPE} {ID}）、{CALLER}からのお電話ありがとうございます。", "route": "queue:known"},
            {"when": "no_match", "speech": "いらっしゃいませ。"}
        ]}),
    );
    let (d, _) = ivr(&env, "0312345678", 2000).await;
    assert_eq!(
        d["speech"],
        format!("CDF 株式会社様（Account {acct}）、0312345678からのお電話ありがとうございます。")
    );
    assert_eq!(d["route"], "queue:known");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i2_rule_order() {
    let (sf, org, env) = setup().await;
    org.insert(
        "Account",
        json!({"Name": "Acme Trading", "Phone": "03-1234-5678"}),
    );
    org.insert(
        "Contact",
        json!({"FirstName": "Hanako", "LastName": "Sato", "Phone": "03-9999-0000"}),
    );
    let rules = json!([
        {"when": "match:Contact", "speech": "VIP {NAME}", "route": "queue:vip"},
        {"when": "match", "speech": "Hello {NAME}"},
        {"when": "any", "speech": "Welcome", "route": "queue:general"}
    ]);
    set_config(
        &env,
        &sf,
        json!({"objects": ["Contact", "Account"], "rules": rules}),
    );
    let (d, _) = ivr(&env, "0399990000", 2000).await;
    assert_eq!(
        (d["speech"].as_str(), d["route"].as_str()),
        (Some("VIP Hanako Sato"), Some("queue:vip"))
    );
    let (d, _) = ivr(&env, "0312345678", 2000).await;
    assert_eq!(
        (d["speech"].as_str(), d["route"].as_str()),
        (Some("Hello Acme Trading"), Some("queue:reception"))
    );
    let (d, _) = ivr(&env, "0311110000", 2000).await;
    assert_eq!(
        (d["speech"].as_str(), d["route"].as_str()),
        (Some("Welcome"), Some("queue:general"))
    );
    // The same rules in another order: "any" first answers everybody alike.
    let mut reordered = rules.as_array().cloned().unwrap_or_default();
    reordered.rotate_right(1);
    set_config(
        &env,
        &sf,
        json!({"objects": ["Contact", "Account"], "rules": reordered}),
    );
    let (d, _) = ivr(&env, "0399990000", 2000).await;
    assert_eq!(
        (d["speech"].as_str(), d["route"].as_str()),
        (Some("Welcome"), Some("queue:general"))
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i3_slow_crm_gets_the_fallback_within_the_deadline() {
    let (_sf, org, env) = setup().await;
    org.insert(
        "Account",
        json!({"Name": "CDF 株式会社", "Phone": "03-1234-5678"}),
    );
    // Warm up: log in and cache the session so only the search is slow.
    let (d, _) = ivr(&env, "0312345678", 2000).await;
    assert_eq!(d["source"], "plugin", "{d}");
    org.inject(
        Fault::new(FaultKind::Latency(Duration::from_millis(2000)))
            .path_contains("/search")
            .times(5),
    );
    let deadline_ms = 400;
    let (d, took) = ivr(&env, "0312345678", deadline_ms).await;
    eprintln!("I-3: fallback after {took:?} for a deadline of {deadline_ms} ms");
    assert_eq!(d["source"], "fallback", "{d}");
    assert_eq!(d["speech"], "ただいま混み合っております。");
    assert_eq!(d["route"], "queue:fallback");
    assert!(
        took < Duration::from_millis(u64::from(deadline_ms) + 50),
        "answered by the deadline: {took:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i3_error_gets_the_fallback() {
    let (_sf, org, env) = setup().await;
    org.inject(Fault::new(FaultKind::Status(503)).path_contains("/search"));
    let (d, _) = ivr(&env, "0312345678", 2000).await;
    assert_eq!(d["source"], "fallback", "{d}");
    assert_eq!(d["speech"], "ただいま混み合っております。");
    assert_eq!(d["route"], "queue:fallback");
    let reason = d["reason"].as_str().unwrap_or("");
    assert!(reason.contains("searching Salesforce"), "{reason}");
    // A login refused (another connected app, whose session is not cached; wrong password):
    // also the fallback, and no secret in the answer or the log.
    env.set_secret("acme", "ivr-greeting", "salesforce.password", "wrong-pw")
        .await;
    set_config(&env, &_sf, json!({"client_id": "OTHER_APP"}));
    let (d, _) = ivr(&env, "0312345679", 2000).await;
    assert_eq!(d["source"], "fallback", "{d}");
    let all = format!("{d} {:?}", env.log_lines("acme").await);
    for secret in ["wrong-pw", "TOKENSECRET", "client-secret-1"] {
        assert!(!all.contains(secret), "secret {secret} leaked: {all}");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i4_decision_as_data() {
    let (_sf, org, env) = setup().await;
    let acct = org.insert(
        "Account",
        json!({"Name": "CDF 株式会社", "Phone": "07075373713"}),
    );
    let (d, _) = ivr(&env, "07075373713", 2000).await;
    assert_eq!(
        d,
        json!({
            "speech": "CDF 株式会社様、お電話ありがとうございます。只今、オペレータへお繋ぎしておりますので、しばらくお待ちください。",
            "route": "queue:reception",
            "variables": [
                ["match", "true"],
                ["crm_id", acct],
                ["crm_type", "Account"],
                ["crm_name", "CDF 株式会社"],
                ["crm_company", "CDF 株式会社"],
                ["match_source", "salesforce"]
            ],
            "source": "plugin"
        })
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivr_settings_check_names_wrong_credentials_and_a_hidden_field() {
    let (_sf, org, env) = setup().await;
    let (status, v) = env
        .post("/v1/tenants/acme/plugins/ivr-greeting/verify", &json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    org.deny_field("Account", "Phone");
    let (_, v) = env
        .post("/v1/tenants/acme/plugins/ivr-greeting/verify", &json!({}))
        .await;
    assert_eq!(v["ok"], false, "{v}");
    let bad: Vec<&Value> = v["items"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["ok"] == false).collect())
        .unwrap_or_default();
    assert_eq!(bad.len(), 1, "{v}");
    assert_eq!(bad[0]["field"], "Account.Phone");
    env.set_secret("acme", "ivr-greeting", "salesforce.client_secret", "nope")
        .await;
    let (_, v) = env
        .post("/v1/tenants/acme/plugins/ivr-greeting/verify", &json!({}))
        .await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["items"][0]["name"], "login", "{v}");
    assert_eq!(v["items"][0]["field"], "salesforce.client_secret", "{v}");
    assert!(!v.to_string().contains("nope"));
    env.stop().await;
}
