//! A floor and a budget for retries (issue 11, finding 4; SPEC H-3, H-4): a plugin cannot make
//! the host retry in a tight loop, a tenant's plugin has a budget of invocations a minute whose
//! excess waits (logged once a minute, counted), and deliveries for a plugin that cannot be
//! loaded end at the retry horizon.

use std::time::{Duration, Instant};

use pbx_e2e::{TestEnv, ended_call};
use serde_json::{Value, json};

/// No Salesforce in these tests: the probe plugin does not make requests.
const NO_STANDIN: &str = "http://127.0.0.1:9";

/// `[host] min_retry_delay_ms` when unset (docs/delivery.md).
const DEFAULT_FLOOR: Duration = Duration::from_millis(1000);

fn event(tenant: &str, call: &str) -> Value {
    ended_call(
        tenant,
        call,
        "inbound",
        "0312345678",
        "0501111222",
        "answered",
        10,
    )
}

async fn ingest(env: &TestEnv, tenant: &str, calls: impl IntoIterator<Item = String>) {
    for call in calls {
        let (status, body) = env.post("/v1/events", &event(tenant, &call)).await;
        assert_eq!(status, 202, "{body}");
    }
}

/// The sum of a usage counter over the tenant's plugins and days, from the usage API.
async fn counter(env: &TestEnv, tenant: &str, name: &str) -> i64 {
    let (status, body) = env.get(&format!("/v1/tenants/{tenant}/usage")).await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .expect("usage rows")
        .iter()
        .filter(|u| u["counter"] == name)
        .filter_map(|u| u["value"].as_i64())
        .sum()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Finding 4: a plugin answering `transient` with `retry_after_ms = 0` to every event made the
/// host invoke it more than 1,000 times a second. With the floor, each of the 8 events is
/// retried at most once per floor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_retry_after_is_raised_to_the_floor() {
    let config = r#"
[plugins.probe]
component = "@PLUGINS@/probe_plugin.wasm"
events = ["*"]

[tenants.acme]
[tenants.acme.plugins.probe]
config = { attack = "fail", kind = "transient", retry_after_ms = 0 }
"#;
    let env = TestEnv::start(config, NO_STANDIN).await;
    let started = Instant::now();
    ingest(&env, "acme", (0..8).map(|i| format!("storm-{i}"))).await;
    tokio::time::sleep_until((started + Duration::from_secs(5)).into()).await;
    let invocations = counter(&env, "acme", "invocations").await;
    let elapsed = started.elapsed();
    // Each event: its first attempt, then at most one retry per floor.
    let per_event = elapsed.as_millis().div_ceil(DEFAULT_FLOOR.as_millis()) as i64 + 1;
    assert!(
        invocations >= 8,
        "every event reached the plugin: {invocations}"
    );
    assert!(
        invocations <= 8 * per_event,
        "{invocations} invocations in {elapsed:?} for 8 events: at most {} with a {DEFAULT_FLOOR:?} floor",
        8 * per_event
    );
    let pending = env.host.deliveries("acme", None).expect("deliveries");
    assert_eq!(pending.len(), 8, "still retried, none dead: {pending:?}");
    let now = now_ms();
    assert!(
        pending.iter().all(|d| d.next_at <= now + 60_000),
        "retried, not parked: {pending:?}"
    );
    env.stop().await;
}

/// The budget: with 20 invocations a minute and 100 events due at once, 20 run in the
/// minute; the other 80 wait for the next minute (not failed, no attempt counted), and the
/// tenant's log says so once, with the count, which the usage counters also show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_over_the_budget_wait_for_the_next_minute_and_are_reported_once() {
    let config = r#"
[plugins.probe]
component = "@PLUGINS@/probe_plugin.wasm"
events = ["*"]

[plugins.probe.limits]
invocations_per_minute = 20

[tenants.acme]
[tenants.acme.plugins.probe]
config = {}
"#;
    let env = TestEnv::start(config, NO_STANDIN).await;
    // The budget counts clock minutes: start early in one, so that all 100 events are due in
    // the same minute.
    if now_ms() % 60_000 > 40_000 {
        let wait = 60_000 - now_ms() % 60_000 + 200;
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    let minute = now_ms() / 60_000;
    ingest(&env, "acme", (0..100).map(|i| format!("call-{i}"))).await;
    assert_eq!(
        now_ms() / 60_000,
        minute,
        "ingesting 100 events took more than 20 s"
    );
    let received = |lines: Vec<String>| {
        lines
            .iter()
            .filter(|l| l.contains("probe: received"))
            .count()
    };
    // Until just before the minute ends: never more than the budget.
    let end_of_minute = (minute + 1) * 60_000;
    let mut in_the_minute = 0;
    while now_ms() < end_of_minute - 2_000 {
        in_the_minute = received(env.log_lines("acme").await);
        assert!(
            in_the_minute <= 20,
            "{in_the_minute} invocations in the minute, over the budget of 20"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(in_the_minute, 20, "the budget was used");
    // After the minute: one line for it, with the count.
    let budget_lines = |lines: Vec<String>| -> Vec<String> {
        lines
            .into_iter()
            .filter(|l| l.contains("over its budget"))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let lines = budget_lines(env.log_lines("acme").await);
        if !lines.is_empty() {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "no budget line 30 s after the minute"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        lines,
        vec![
            "warn probe: tenant acme: plugin probe over its budget of 20 invocations a minute: 80 deliveries deferred"
                .to_string()
        ],
        "logged once, with the count"
    );
    assert!(
        counter(&env, "acme", "deliveries.deferred").await >= 80,
        "counted in the usage counters"
    );
    // Nothing failed or lost: every event is delivered or waits, with no attempt counted.
    assert!(
        env.host
            .deliveries("acme", Some(pbx_host::store::DeliveryStatus::Dead))
            .expect("dead")
            .is_empty(),
        "nothing dead-lettered"
    );
    let pending = env.host.deliveries("acme", None).expect("pending");
    let delivered = received(env.log_lines("acme").await);
    assert!(
        pending.len() + delivered >= 100,
        "none lost: {} pending, {delivered} delivered",
        pending.len()
    );
    assert!(
        pending.len() >= 100 - 40,
        "at most two minutes' budget ran: {} pending",
        pending.len()
    );
    assert!(
        pending.iter().all(|d| d.attempts == 0),
        "waiting for the budget is not an attempt: {pending:?}"
    );
    // The next minute's excess is reported when that minute ends, not before.
    assert_eq!(budget_lines(env.log_lines("acme").await).len(), 1);
    env.stop().await;
}

/// Deliveries queued for a plugin whose component cannot be loaded were rescheduled forever;
/// the retry horizon now ends them too, with the load error in the dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_for_a_plugin_that_cannot_be_loaded_end_at_the_retry_horizon() {
    let config = r#"
[host]
retry_horizon_seconds = 2

[plugins.ghost]
component = "@PLUGINS@/no_such_plugin.wasm"
events = ["*"]

[tenants.acme]
[tenants.acme.plugins.ghost]
config = {}
"#;
    let env = TestEnv::start(config, NO_STANDIN).await;
    let load_error = env
        .host
        .plugin_statuses()
        .into_iter()
        .find(|s| s.id == "ghost")
        .and_then(|s| s.error)
        .expect("the ghost plugin failed to load");
    let (status, body) = env.post("/v1/events", &event("acme", "c1")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["queued_for"], json!(["ghost"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let dead = env
            .host
            .deliveries("acme", Some(pbx_host::store::DeliveryStatus::Dead))
            .expect("deliveries");
        if let Some(d) = dead.into_iter().next() {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "still queued 30 s after a 2-s horizon: {:?}",
            env.host.deliveries("acme", None)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let message = dead.last_error.clone().unwrap_or_default();
    assert!(
        message.contains("plugin 'ghost' cannot be loaded") && message.contains(&load_error),
        "the dead letter names the plugin and the load error ({load_error}): {message}"
    );
    assert!(
        env.host
            .deliveries("acme", Some(pbx_host::store::DeliveryStatus::Pending))
            .expect("pending")
            .is_empty()
    );
    env.stop().await;
}
