//! SPEC K-1..K-3 through the real host: `POST /v1/events` (queue-entered, ended) → durable
//! delivery → the `case-creation` component → the Salesforce stand-in over a socket.

use std::time::Duration;

use pbx_e2e::{TestEnv, standin};
use serde_json::{Value, json};
use sf_standin::{Fault, FaultKind, Org, OrgSpec, StandIn};

const TOML: &str = r#"
[host]
allow_private_networks = ["127.0.0.0/8"]

[plugins.case-creation]
component = "@PLUGINS@/case_creation.wasm"
events = ["queue-entered", "ended"]
[plugins.case-creation.grants]
http = ["https://login.salesforce.com", "https://test.salesforce.com", "{config.login_url}", "{config.instance_url}"]
secrets = ["salesforce.password", "salesforce.security_token", "salesforce.client_secret", "salesforce.refresh_token", "salesforce.private_key"]
state = true
contacts = "read"
[plugins.case-creation.limits]
cpu_ms = 500
memory_mib = 32
wall_ms = 20000

[tenants.acme]
default_country = "JP"
[tenants.acme.plugins.case-creation]
config = { login_url = "@STANDIN@", auth = "password", username = "admin@acme.example", client_id = "ACME_CLIENT", recording_base_url = "https://acme.u.biztel.jp:8000" }
"#;

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
        env.set_secret("acme", "case-creation", name, value).await;
    }
    (sf, org, env)
}

fn set_config(env: &TestEnv, sf: &StandIn, extra: Value) {
    let mut cfg = json!({"login_url": sf.base_url(), "auth": "password", "username": "admin@acme.example", "client_id": "ACME_CLIENT", "recording_base_url": "https://acme.u.biztel.jp:8000"});
    if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    env.host
        .set_config("acme", "case-creation", cfg)
        .expect("set config");
}

/// A call event as the PBX posts it.
fn event(kind: &str, call_id: &str, caller: &str, queue: Option<&str>) -> Value {
    let start = chrono::Utc::now().timestamp_millis() - 60_000;
    let mut call = json!({
        "call_id": call_id,
        "direction": "inbound",
        "caller": caller,
        "callee": "0501111222",
        "dial_started_at": start,
        "queue": queue,
    });
    if kind == "ended" {
        call["answered_at"] = json!(start + 5000);
        call["ended_at"] = json!(start + 50_000);
        call["duration_seconds"] = json!(45);
        call["outcome"] = json!("answered");
        call["agent"] = json!({"extension": "201", "user_name": "Sato"});
    }
    json!({"tenant": "acme", "event_id": format!("{call_id}-{kind}"), "kind": kind, "call": call})
}

async fn post(env: &TestEnv, ev: &Value) {
    let (status, r) = env.post("/v1/events", ev).await;
    assert_eq!(status, 202, "{r}");
    assert_eq!(r["queued_for"], json!(["case-creation"]), "{r}");
    env.wait_idle().await;
}

async fn cases(env: &TestEnv, org: &Org, n: usize) -> Vec<Value> {
    let c = org.records("Case");
    assert_eq!(
        c.len(),
        n,
        "{c:#?}\nlog: {:#?}",
        env.log_lines("acme").await
    );
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k1_queue_entry_creates_a_case_for_the_contact() {
    let (_sf, org, env) = setup().await;
    let contact = org.insert(
        "Contact",
        json!({"FirstName": "Taro", "LastName": "Yamada", "Phone": "03-1234-5678"}),
    );
    post(
        &env,
        &event("queue-entered", "7001", "+81312345678", Some("support")),
    )
    .await;
    let c = cases(&env, &org, 1).await;
    assert_eq!(c[0]["Origin"], "Phone");
    assert_eq!(c[0]["ContactId"], Value::String(contact));
    assert_eq!(c[0]["SuppliedPhone"], "+81312345678");
    assert_eq!(c[0]["Subject"], "コールセンターへの着信です (通話ID 7001)");
    assert_eq!(
        c[0]["Description"],
        "+81312345678 からの着信 (キュー: support)"
    );
    let log = env.log_lines("acme").await;
    let id = c[0]["Id"].as_str().unwrap_or("");
    assert!(
        log.iter()
            .any(|l| l.contains(&format!("Case {id} created"))),
        "{log:#?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k2_hang_up_updates_the_same_case_with_the_recording_link() {
    let (_sf, org, env) = setup().await;
    let contact = org.insert(
        "Contact",
        json!({"FirstName": "Taro", "LastName": "Yamada", "MobilePhone": "090-1234-5678"}),
    );
    post(
        &env,
        &event("queue-entered", "7002", "09012345678", Some("support")),
    )
    .await;
    let before = cases(&env, &org, 1).await;
    org.reset_counters();
    post(
        &env,
        &event("ended", "7002", "09012345678", Some("support")),
    )
    .await;
    let after = cases(&env, &org, 1).await;
    assert_eq!(after[0]["Id"], before[0]["Id"], "the same Case");
    assert_eq!(
        after[0]["Description"],
        "https://acme.u.biztel.jp:8000/monitor_link/7002"
    );
    assert_eq!(
        after[0]["Subject"],
        "コールセンターへの着信です (通話ID 7002)"
    );
    assert_eq!(after[0]["Origin"], "Phone");
    assert_eq!(after[0]["ContactId"], Value::String(contact));
    // The hang-up costs one API call: the PATCH (the session is reused).
    let log = org.request_log();
    assert_eq!(org.api_calls(), 1, "{log:?}");
    assert_eq!(log[0].method, "PATCH");
    // A recording URL given by the PBX wins over the configured base.
    post(
        &env,
        &event("queue-entered", "7003", "09012345678", Some("support")),
    )
    .await;
    let mut ended = event("ended", "7003", "09012345678", Some("support"));
    ended["call"]["recording_url"] = json!("https://rec.example.jp/7003.mp3");
    post(&env, &ended).await;
    let c = cases(&env, &org, 2).await;
    let second = c
        .iter()
        .find(|c| c["Subject"].as_str().is_some_and(|s| s.contains("7003")))
        .expect("second case");
    assert_eq!(second["Description"], "https://rec.example.jp/7003.mp3");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k3_templates_and_action_order() {
    let (sf, org, env) = setup().await;
    let contact = org.insert(
        "Contact",
        json!({"FirstName": "Hanako", "LastName": "Sato", "Phone": "0312340000"}),
    );
    set_config(
        &env,
        &sf,
        json!({
            "create_fields": {"Subject": "着信 {CALLER} / {QUEUE} / {CALL_ID}", "Description": "受付中", "Priority": "High"},
            "update_fields": {"Subject": "対応済 {CALL_ID} ({DURATION}秒, 担当 {AGENT})", "Description": "{CONTACT_NAME}: {RECORDING_URL}", "Status": "Working"},
            "actions": {"queue-entered": ["create_case"], "ended": ["find_contact", "update_case"]}
        }),
    );
    post(
        &env,
        &event("queue-entered", "7101", "0312340000", Some("sales")),
    )
    .await;
    let c = cases(&env, &org, 1).await;
    assert_eq!(c[0]["Subject"], "着信 0312340000 / sales / 7101");
    assert_eq!(c[0]["Description"], "受付中");
    assert_eq!(c[0]["Priority"], "High");
    assert_eq!(
        c[0]["ContactId"],
        Value::Null,
        "find_contact is not among the queue-entered actions"
    );
    post(&env, &event("ended", "7101", "0312340000", Some("sales"))).await;
    let c = cases(&env, &org, 1).await;
    assert_eq!(c[0]["Subject"], "対応済 7101 (45秒, 担当 201)");
    assert_eq!(
        c[0]["Description"],
        "Hanako Sato: https://acme.u.biztel.jp:8000/monitor_link/7101"
    );
    assert_eq!(c[0]["Status"], "Working");
    assert_eq!(
        c[0]["ContactId"],
        Value::String(contact),
        "found at hang-up"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_no_case_without_queue() {
    let (sf, org, env) = setup().await;
    post(&env, &event("ended", "7201", "0312345678", None)).await;
    cases(&env, &org, 0).await;
    assert_eq!(org.api_calls(), 0, "{:?}", org.request_log());
    // Outbound calls never get a Case.
    let mut out = event("ended", "7202", "0312345678", Some("support"));
    out["call"]["direction"] = json!("outbound");
    post(&env, &out).await;
    cases(&env, &org, 0).await;
    // Unless configured: then the hang-up creates and completes it.
    set_config(&env, &sf, json!({"create_without_queue": true}));
    post(&env, &event("ended", "7203", "0312345678", None)).await;
    let c = cases(&env, &org, 1).await;
    assert_eq!(
        c[0]["Description"],
        "https://acme.u.biztel.jp:8000/monitor_link/7203"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_retry_does_not_duplicate() {
    let (sf, org, env) = setup().await;
    // 1. The same event delivered twice (a PBX resend with a new event id): one Case.
    post(
        &env,
        &event("queue-entered", "7301", "0312345678", Some("support")),
    )
    .await;
    let mut again = event("queue-entered", "7301", "0312345678", Some("support"));
    again["event_id"] = json!("7301-queue-entered-resent");
    post(&env, &again).await;
    cases(&env, &org, 1).await;

    // 2. The create times out (the stand-in drops the unanswered request unsaved): the
    //    attempt fails as transient, the host retries, the retry sees its pending marker,
    //    looks for a saved Case, finds none and creates exactly one.
    set_config(&env, &sf, json!({"timeout_ms": 300}));
    org.reset_counters();
    org.inject(
        Fault::new(FaultKind::Latency(Duration::from_millis(600)))
            .method("POST")
            .path_contains("/sobjects/Case"),
    );
    post(
        &env,
        &event("queue-entered", "7302", "0312345678", Some("support")),
    )
    .await;
    cases(&env, &org, 2).await;
    assert!(
        org.request_log()
            .iter()
            .any(|r| r.path.contains("/query") && r.path.contains("SuppliedPhone")),
        "the retry looked for a Case of the earlier attempt: {:?}",
        org.request_log()
    );
    let log = env.log_lines("acme").await;
    assert!(
        log.iter()
            .any(|l| l.contains("creating the Case: Salesforce unreachable")),
        "{log:#?}"
    );

    // 3. An earlier attempt created the Case and died before recording its id (only the
    //    pending marker is in state): the delivery adopts that Case instead of creating one.
    let earlier = org.insert(
        "Case",
        json!({"Subject": "コールセンターへの着信です (通話ID 7303)", "SuppliedPhone": "0312345678", "Origin": "Phone"}),
    );
    let now = chrono::Utc::now().timestamp_millis();
    env.host
        .storage()
        .state_set(
            "acme",
            "case-creation",
            "case:7303",
            &json!({"pending_since": now - 1000, "contact_searched": true}).to_string(),
            None,
            1 << 20,
        )
        .expect("storage")
        .expect("state size");
    org.reset_counters();
    post(
        &env,
        &event("queue-entered", "7303", "0312345678", Some("support")),
    )
    .await;
    cases(&env, &org, 3).await;
    assert!(
        !org.request_log().iter().any(|r| r.method == "POST"),
        "no second create: {:?}",
        org.request_log()
    );
    let log = env.log_lines("acme").await;
    assert!(
        log.iter()
            .any(|l| l.contains(&format!("Case {earlier} was created by an earlier attempt"))),
        "{log:#?}"
    );
    // The hang-up updates that adopted Case.
    post(&env, &event("ended", "7303", "0312345678", Some("support"))).await;
    let adopted = org.get("Case", &earlier).expect("case");
    assert_eq!(
        adopted["Description"],
        "https://acme.u.biztel.jp:8000/monitor_link/7303"
    );
    cases(&env, &org, 3).await;
    env.stop().await;
}
