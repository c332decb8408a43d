//! Scheduled work (SPEC H-7): periodic runs at the tenant's interval, never overlapping, and a
//! run that stopped at its budget with more to do is run again soon instead of an interval later.

use std::time::Duration;

use pbx_e2e::{TestEnv, standin};
use serde_json::json;

const TOML: &str = r#"
[plugins.probe]
component = "@PLUGINS@/probe_plugin.wasm"
schedules = { tick = 3600 }
[plugins.probe.grants]
state = true

[tenants.acme]
[tenants.acme.plugins.probe]
schedules = { tick = 1 }

[tenants.globex]
[tenants.globex.plugins.probe]
"#;

async fn runs(env: &TestEnv, tenant: &str) -> usize {
    env.log_lines(tenant)
        .await
        .iter()
        .filter(|l| l.contains("tick"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h7_schedules_run_at_the_tenants_interval() {
    let sf = standin().await;
    let env = TestEnv::start(TOML, &sf.base_url()).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let acme = runs(&env, "acme").await;
    let globex = runs(&env, "globex").await;
    // acme every second (first run at start), globex once (its first run) then hourly
    assert!(
        (3..=5).contains(&acme),
        "acme ran {acme} times in 3.5 s at a 1 s interval"
    );
    assert_eq!(globex, 1, "globex runs once, then waits an hour");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h7_a_run_with_more_to_do_is_run_again_soon() {
    let sf = standin().await;
    let env = TestEnv::start(TOML, &sf.base_url()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs(&env, "globex").await, 1);
    env.host
        .set_config("globex", "probe", json!({"run_again_after_ms": 300}))
        .unwrap();
    // the next run is an hour away; asking to continue brings it forward
    let report = env
        .host
        .run_schedule("globex", "probe", "tick")
        .await
        .unwrap();
    assert!(report.outcome.is_ok());
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let n = runs(&env, "globex").await;
    assert!(
        n >= 4,
        "runs continue every ~300 ms while the plugin asks: {n}"
    );
    env.host.set_config("globex", "probe", json!({})).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let settled = runs(&env, "globex").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        runs(&env, "globex").await,
        settled,
        "back to the hourly interval once it stops asking"
    );
    env.stop().await;
}

/// Schedule runs count against the tenant's invocation budget for the plugin (issue 11 item
/// 2): at a 1-s interval with a budget of 2 a minute, a 5-s window sees at most the budget of
/// the one or two clock minutes it spans, where it ran about five times without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_runs_count_against_the_invocation_budget() {
    let sf = standin().await;
    let toml = TOML.replace(
        "[plugins.probe.grants]",
        "[plugins.probe.limits]\ninvocations_per_minute = 2\n[plugins.probe.grants]",
    );
    let env = TestEnv::start(&toml, &sf.base_url()).await;
    tokio::time::sleep(Duration::from_millis(5000)).await;
    let acme = runs(&env, "acme").await;
    assert!(
        (1..=4).contains(&acme),
        "acme ran {acme} times in 5 s with a budget of 2 invocations a minute"
    );
    env.stop().await;
}
