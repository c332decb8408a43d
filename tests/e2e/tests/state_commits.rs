//! When a plugin's state writes become durable. The host commits an invocation's writes
//! together (one commit instead of one per write), but never later than the plugin's next
//! HTTP request and the end of the invocation, failed or not: the effectively-once markers
//! (written before a CRM create) depend on the first, and nothing a plugin wrote may be lost
//! because it failed afterwards.

use std::sync::{Arc, Mutex};

use pbx_e2e::TestEnv;
use pbx_host::store::Storage;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOML: &str = r#"
[host]
allow_private_networks = ["127.0.0.0/8"]

[plugins.probe]
component = "@PLUGINS@/probe_plugin.wasm"
events = []
[plugins.probe.grants]
http = ["{config.allowed_url}"]
state = true
[plugins.probe.limits]
state_bytes = 1024

[tenants.acme]
ivr_fallback = { speech = "Please hold", route = "queue:main" }
[tenants.acme.plugins.probe]
config = { allowed_url = "@STANDIN@" }
"#;

/// A server that, when a request arrives, reads what the storage holds for `key` at that
/// moment, and answers 200.
async fn witness(
    storage: Arc<dyn Storage>,
    key: &'static str,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let stored = storage
                .state_get("acme", "probe", key, 0)
                .unwrap()
                .unwrap_or_else(|| "<absent>".into());
            record.lock().unwrap().push(stored);
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .await;
        }
    });
    (url, seen)
}

async fn lookup(env: &TestEnv, allowed_url: &str, ops: Value) -> Value {
    let (status, _) = env
        .put(
            "/v1/tenants/acme/plugins/probe/config",
            &json!({"allowed_url": allowed_url, "ops": ops}),
        )
        .await;
    assert_eq!(status, 204);
    let (status, decision) = env
        .post("/v1/ivr", &json!({"tenant": "acme", "deadline_ms": 5000, "call": {"call_id": "ivr-1", "direction": "inbound", "caller": "0312345678", "callee": "0501111222", "dial_started_at": 0}}))
        .await;
    assert_eq!(status, 200, "{decision}");
    decision
}

fn results(decision: &Value) -> Vec<String> {
    decision["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv[1].as_str().unwrap_or("").to_string())
        .collect()
}

fn stored(env: &TestEnv, key: &str) -> Option<String> {
    env.host
        .storage()
        .state_get("acme", "probe", key, 0)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_durable_before_the_next_http_request_and_reads_see_the_invocations_own_writes()
{
    let env = TestEnv::start(TOML, "http://127.0.0.1:9").await;
    let (url, seen) = witness(env.host.storage().clone(), "marker").await;
    let decision = lookup(
        &env,
        &url,
        json!([
            {"op": "state-set", "key": "marker", "value": "pending:call-1"},
            {"op": "state-get", "key": "marker"},
            {"op": "http", "method": "POST", "url": format!("{url}/create"), "body": "{}"},
            {"op": "state-set", "key": "marker", "value": "00T000000000001"},
            {"op": "state-set", "key": "scratch", "value": "x"},
            {"op": "state-delete", "key": "scratch"},
            {"op": "state-get", "key": "scratch"},
            {"op": "state-get", "key": "marker"},
        ]),
    )
    .await;
    assert_eq!(decision["source"], "plugin", "{decision}");
    assert_eq!(
        results(&decision),
        [
            "ok",
            "ok:pending:call-1",
            "ok:200:ok",
            "ok",
            "ok",
            "ok",
            "none",
            "ok:00T000000000001"
        ]
    );
    assert_eq!(
        *seen.lock().unwrap(),
        ["pending:call-1"],
        "the marker was committed before the request reached the server"
    );
    assert_eq!(stored(&env, "marker").as_deref(), Some("00T000000000001"));
    assert_eq!(stored(&env, "scratch"), None);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_before_a_trap_are_kept_and_the_cap_holds_for_buffered_writes() {
    let env = TestEnv::start(TOML, "http://127.0.0.1:9").await;
    let decision = lookup(
        &env,
        "http://127.0.0.1:9",
        json!([
            {"op": "state-set", "key": "progress", "value": "page-7"},
            {"op": "trap"},
        ]),
    )
    .await;
    assert_eq!(
        decision["source"], "fallback",
        "the look-up failed: {decision}"
    );
    assert_eq!(stored(&env, "progress").as_deref(), Some("page-7"));

    // 1 KiB cap: the third 400-byte value does not fit, buffered or not, and the refused
    // write leaves the others in place.
    let big = "v".repeat(400);
    let decision = lookup(
        &env,
        "http://127.0.0.1:9",
        json!([
            {"op": "state-set", "key": "a", "value": big},
            {"op": "state-set", "key": "b", "value": big},
            {"op": "state-set", "key": "c", "value": big},
            {"op": "state-set", "key": "a", "value": "small"},
            {"op": "state-set", "key": "c", "value": big},
        ]),
    )
    .await;
    let r = results(&decision);
    assert_eq!(r[0], "ok");
    assert_eq!(r[1], "ok");
    assert!(r[2].starts_with("err:too-large"), "{r:?}");
    assert_eq!(r[3], "ok", "{r:?}");
    assert_eq!(r[4], "ok", "after a shrank, c fits: {r:?}");
    assert_eq!(stored(&env, "a").as_deref(), Some("small"));
    assert_eq!(stored(&env, "b").map(|v| v.len()), Some(400));
    assert_eq!(stored(&env, "c").map(|v| v.len()), Some(400));
    env.stop().await;
}
