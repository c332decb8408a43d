//! Delivery of call events (SPEC H-5, H-8): durable queue, order per call, retries with
//! backoff, dead letters and replay, rate-limit pauses, and batching at high call rates.

use std::time::{Duration, Instant};

use pbx_e2e::{TestEnv, ended_call, standin};
use serde_json::{Value, json};

fn toml(batch: &str) -> String {
    format!(
        r#"
[plugins.probe]
component = "@PLUGINS@/probe_plugin.wasm"
events = ["*"]
{batch}
[plugins.probe.grants]
state = true

[tenants.acme]
[tenants.acme.plugins.probe]
config = {{}}

[tenants.globex]
[tenants.globex.plugins.probe]
config = {{}}
"#
    )
}

fn event(tenant: &str, call: &str, kind: &str, n: u32) -> Value {
    let mut e = ended_call(
        tenant,
        call,
        "inbound",
        "0312345678",
        "0501111222",
        "answered",
        10,
    );
    e["kind"] = json!(kind);
    e["event_id"] = json!(format!("{call}-{kind}-{n}"));
    e
}

/// The probe's "received" lines for `tenant`, in order.
async fn received(env: &TestEnv, tenant: &str) -> Vec<String> {
    env.log_lines(tenant)
        .await
        .into_iter()
        .filter(|l| l.contains("probe: received"))
        .collect()
}

fn invocations(usage: &Value) -> i64 {
    usage
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["counter"] == "invocations")
        .map(|u| u["value"].as_i64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_one_call_reach_the_plugin_in_order() {
    let sf = standin().await;
    let env = TestEnv::start(&toml(""), &sf.base_url()).await;
    let kinds = [
        "dial-started",
        "answered",
        "queue-entered",
        "transferred",
        "ended",
        "memo-updated",
        "transcript-updated",
    ];
    for call in ["c1", "c2", "c3"] {
        for (i, k) in kinds.iter().enumerate() {
            let (status, body) = env
                .post("/v1/events", &event("acme", call, k, i as u32))
                .await;
            assert_eq!(status, 202, "{body}");
        }
    }
    env.wait_idle().await;
    let lines = received(&env, "acme").await;
    assert_eq!(
        lines.len(),
        21,
        "{lines:#?}\nqueue: {:#?}\nlog: {:#?}",
        env.host.deliveries("acme", None).unwrap(),
        env.log_lines("acme").await
    );
    for call in ["c1", "c2", "c3"] {
        let seen: Vec<&str> = lines
            .iter()
            .filter(|l| l.contains(&format!("received {call} ")))
            .map(|l| {
                l.split_whitespace()
                    .nth(5)
                    .unwrap_or("")
                    .trim_start_matches("EventKind::")
            })
            .collect();
        assert_eq!(
            seen,
            [
                "DialStarted",
                "Answered",
                "QueueEntered",
                "Transferred",
                "Ended",
                "MemoUpdated",
                "TranscriptUpdated"
            ],
            "{call}: {lines:#?}"
        );
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_with_backoff_until_they_succeed() {
    let sf = standin().await;
    let env = TestEnv::start(&toml(""), &sf.base_url()).await;
    env.host
        .set_config("acme", "probe", json!({"fail_attempts": 2}))
        .unwrap();
    let started = Instant::now();
    env.post("/v1/events", &event("acme", "r1", "ended", 0))
        .await;
    env.wait_idle().await;
    let took = started.elapsed();
    let lines = received(&env, "acme").await;
    assert_eq!(lines.len(), 3, "two failures, then success: {lines:#?}");
    assert!(lines[2].contains("attempt 2"));
    // 1 s then 2 s of backoff, each ±25%
    assert!(
        took >= Duration::from_millis(2200),
        "backoff was applied: {took:?}"
    );
    assert!(
        env.host.deliveries("acme", None).unwrap().is_empty(),
        "nothing left in the queue"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_after_transient_failures_is_retried_not_dead_lettered() {
    // Two transient failures (a CRM outage), then the plugin traps once: the few retries
    // allowed for failures of the plugin itself count those failures only.
    let sf = standin().await;
    let env = TestEnv::start(&toml(""), &sf.base_url()).await;
    env.host
        .set_config(
            "acme",
            "probe",
            json!({"fail_attempts": 2, "attack": "trap"}),
        )
        .unwrap();
    env.post("/v1/events", &event("acme", "t1", "ended", 0))
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let d = loop {
        let queued = env.host.deliveries("acme", None).unwrap();
        if let Some(d) = queued.iter().find(|d| d.host_failures == 1) {
            break d.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no host-side failure recorded: {queued:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(d.attempts, 3, "{d:?}");
    assert_eq!(
        d.status,
        pbx_host::store::DeliveryStatus::Pending,
        "retried, not dead-lettered: {d:?}"
    );
    assert!(
        d.last_error.as_deref().unwrap_or("").contains("trap"),
        "{d:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_are_dead_lettered_visible_and_replayable() {
    let sf = standin().await;
    let env = TestEnv::start(&toml(""), &sf.base_url()).await;
    env.host.set_config("acme", "probe", json!({"attack": "fail", "kind": "permanent", "message": "REQUIRED_FIELD_MISSING: Subject"})).unwrap();
    env.post("/v1/events", &event("acme", "d1", "ended", 0))
        .await;
    env.wait_idle().await;
    let (status, dead) = env.get("/v1/tenants/acme/deliveries?status=dead").await;
    assert_eq!(status, 200);
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["last_error"], "REQUIRED_FIELD_MISSING: Subject");
    assert_eq!(dead[0]["attempts"], 1, "a validation error is not retried");
    assert!(
        env.log_lines("acme")
            .await
            .iter()
            .any(|l| l.contains("REQUIRED_FIELD_MISSING"))
    );
    // globex cannot replay acme's dead letter
    let id = dead[0]["id"].as_i64().unwrap();
    let (status, _) = env
        .post(
            &format!("/v1/tenants/globex/deliveries/{id}/replay"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 404);
    // the tenant fixes the cause and replays it
    env.host.set_config("acme", "probe", json!({})).unwrap();
    let (status, _) = env
        .post(
            &format!("/v1/tenants/acme/deliveries/{id}/replay"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 202);
    env.wait_idle().await;
    assert!(env.host.deliveries("acme", None).unwrap().is_empty());
    assert_eq!(received(&env, "acme").await.len(), 2);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_tenant_pauses_while_another_tenant_goes_on() {
    let sf = standin().await;
    let env = TestEnv::start(&toml(""), &sf.base_url()).await;
    env.host
        .set_config(
            "acme",
            "probe",
            json!({"attack": "fail", "kind": "rate-limited", "retry_after_ms": 60000}),
        )
        .unwrap();
    for i in 0..3 {
        env.post("/v1/events", &event("acme", &format!("a{i}"), "ended", 0))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..3 {
        env.post("/v1/events", &event("globex", &format!("g{i}"), "ended", 0))
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while received(&env, "globex").await.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "globex was held up by acme's limit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pending = env.host.deliveries("acme", None).unwrap();
    assert_eq!(
        pending.len(),
        3,
        "acme's events wait, none lost: {pending:?}"
    );
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        pending.iter().all(|d| d.next_at > now + 50_000),
        "paused for the retry-after the CRM asked for"
    );
    // at most one attempt per call reached the plugin while paused (the first in flight)
    let seen = received(&env, "acme").await.len();
    assert!(seen <= 3);
    // a call that arrives during the pause waits too: the CRM is not asked again before then
    env.post("/v1/events", &event("acme", "a-late", "ended", 0))
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        received(&env, "acme").await.len(),
        seen,
        "nothing reached the plugin during the pause"
    );
    let late = env
        .host
        .deliveries("acme", None)
        .unwrap()
        .into_iter()
        .find(|d| d.call_id == "a-late")
        .unwrap();
    assert!(
        late.next_at > now + 50_000,
        "the late event waits for the pause: {late:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_calls_are_batched_and_a_lone_call_is_not_held_back() {
    let sf = standin().await;
    let env = TestEnv::start(
        &toml("batch = { window_ms = 500, max_events = 200 }"),
        &sf.base_url(),
    )
    .await;
    // a lone call goes at once: nothing was dispatched within the window before it
    let started = Instant::now();
    env.post("/v1/events", &event("acme", "lone", "ended", 0))
        .await;
    env.wait_idle().await;
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "not held for the window: {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    // 60 calls within about a second: delivered in a few batches
    let (_, before) = env.get("/v1/tenants/acme/usage").await;
    for i in 0..60 {
        let (status, _) = env
            .post("/v1/events", &event("acme", &format!("b{i}"), "ended", 0))
            .await;
        assert_eq!(status, 202);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    env.wait_idle().await;
    let (_, after) = env.get("/v1/tenants/acme/usage").await;
    let used = invocations(&after) - invocations(&before);
    assert_eq!(
        received(&env, "acme").await.len(),
        61,
        "every event delivered exactly once"
    );
    assert!(
        used <= 6,
        "60 calls in about 1 s with a 500 ms window take a handful of invocations, not {used}"
    );
    assert!(env.host.deliveries("acme", None).unwrap().is_empty());
    env.stop().await;
}
