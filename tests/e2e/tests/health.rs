//! Health that tells the truth (issue 10): `/healthz` is liveness, `/readyz` readiness.
//!
//! | test | what |
//! |---|---|
//! | `a_full_disk_makes_the_host_unready_and_freeing_it_makes_it_ready_again` | the daemon on a real, small tmpfs that fills up and is freed again, without a restart |
//! | `readiness_needs_no_token_and_a_broken_plugin_does_not_fail_it` | `/readyz` without a token; a plugin that cannot load is listed, the host stays ready |
//!
//! The full disk is real and needs no root: the daemon runs in an unprivileged user and mount
//! namespace (`unshare -Urm`) whose data directory is a 16 MiB tmpfs. The test cannot see
//! inside that tmpfs, so a watcher started by the same script inside the namespace waits for
//! trigger files in the test's directory (outside the tmpfs): on `fill` it writes a ballast
//! file until the tmpfs is full and touches `full`; on `free` it deletes the ballast and
//! touches `freed`. It exits when the daemon does. Build first: `cargo xtask plugins &&
//! cargo build -p pbx-host` (`cargo xtask test` does both).

#![cfg(target_os = "linux")]

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use pbx_e2e::{HostProcess, ended_call, plugin_dir};
use serde_json::{Value, json};

/// Runs in the namespace: `sh -c SCRIPT sh DATA TRIGGERS pbx-host ARGS...`.
const SCRIPT: &str = r#"
data=$1
triggers=$2
shift 2
mount -t tmpfs -o size=16m tmpfs "$data" || exit 97
(
    # $$ is the script's pid, which becomes the daemon's at the exec below.
    while kill -0 $$ 2>/dev/null; do
        if [ -e "$triggers/fill" ]; then
            rm -f "$triggers/fill"
            dd if=/dev/zero of="$data/ballast" bs=64k 2>"$triggers/dd.log"
            touch "$triggers/full"
        fi
        if [ -e "$triggers/free" ]; then
            rm -f "$triggers/free" "$data/ballast"
            touch "$triggers/freed"
        fi
        sleep 0.1
    done
) &
exec "$@"
"#;

/// Fails the test (never skips it) when this machine cannot make unprivileged user and mount
/// namespaces.
fn require_unshare(dir: &Path) {
    let probe = dir.join("unshare-probe");
    std::fs::create_dir_all(&probe).expect("probe dir");
    let out = std::process::Command::new("unshare")
        .args([
            "-Urm",
            "sh",
            "-c",
            r#"mount -t tmpfs -o size=1m tmpfs "$1""#,
            "sh",
        ])
        .arg(&probe)
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "this test needs unprivileged user and mount namespaces: `unshare -Urm sh -c 'mount -t tmpfs ...'` failed ({}): {}\n\
             (enable them, e.g. sysctl kernel.unprivileged_userns_clone=1, or run the container with a seccomp profile that allows unshare)",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!(
            "this test needs `unshare` (util-linux) to run the daemon on a small tmpfs: cannot run it: {e}"
        ),
    }
}

/// A plugin whose deliveries stay queued: the probe fails every event as transient and asks
/// for the retry in ten minutes.
fn write_config(dir: &Path) {
    let toml = format!(
        r#"[plugins.probe]
component = "{}/probe_plugin.wasm"
events = ["*"]

[tenants.acme]
[tenants.acme.plugins.probe]
config = {{ attack = "fail", kind = "transient", retry_after_ms = 600000 }}
"#,
        plugin_dir().display()
    );
    std::fs::write(dir.join("plugins.toml"), toml).expect("write plugins.toml");
}

fn event(call: &str) -> Value {
    ended_call(
        "acme",
        call,
        "inbound",
        "0312345678",
        "0501111222",
        "answered",
        10,
    )
}

/// Polls `/readyz` until its status is `want`; returns the last body.
async fn wait_ready_status(host: &HostProcess, want: u16, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = host.get("/readyz").await;
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not answer {want} within {within:?}; last {status}: {body}\n{}",
            host.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates the trigger `name` and waits for the watcher's answer `done`.
async fn trigger(triggers: &Path, name: &str, done: &str, host: &HostProcess) {
    std::fs::write(triggers.join(name), "").expect("write trigger");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !triggers.join(done).exists() {
        assert!(
            Instant::now() < deadline,
            "the watcher inside the namespace did not answer '{name}' with '{done}' within 10 s\n{}",
            host.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn delivery_of<'a>(deliveries: &'a [Value], event_id: &str) -> Option<&'a Value> {
    deliveries.iter().find(|d| d["event_id"] == event_id)
}

/// `GET /metrics` as Prometheus scrapes it (no token): the value of each sample line.
async fn scrape(host: &HostProcess) -> std::collections::BTreeMap<String, f64> {
    let resp = host
        .http
        .get(format!("{}/metrics", host.api))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.expect("metrics text");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_the_host_unready_and_freeing_it_makes_it_ready_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    require_unshare(dir.path());
    write_config(dir.path());
    let data = dir.path().join("data");
    let triggers = dir.path().join("triggers");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::create_dir_all(&triggers).expect("triggers dir");
    let wrapper: Vec<OsString> = vec![
        "unshare".into(),
        "-Urm".into(),
        "sh".into(),
        "-c".into(),
        SCRIPT.into(),
        "sh".into(),
        data.clone().into(),
        triggers.clone().into(),
    ];
    let host = HostProcess::start_wrapped(dir.path(), &wrapper).await;

    let ready = wait_ready_status(&host, 200, Duration::from_secs(5)).await;
    assert_eq!(ready["ready"], true, "{ready}");
    for check in ["storage", "plugins", "queue"] {
        assert_eq!(ready["checks"][check]["ok"], true, "{check}: {ready}");
    }
    assert!(
        ready["checks"]["storage"]["free_bytes"]
            .as_u64()
            .is_some_and(|f| f > 8 << 20 && f <= 16 << 20),
        "the data directory is the 16 MiB tmpfs: {ready}"
    );

    // Accepted before the disk fills; its first attempt fails and is retried in 10 minutes.
    let before = event("before-full");
    let (status, body) = host.try_post("/v1/events", &before).await.expect("post");
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let deliveries = host.deliveries("acme", None).await;
        if delivery_of(&deliveries, "before-full-ended").is_some_and(|d| d["attempts"] == 1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first delivery was not attempted within 10 s: {deliveries:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    trigger(&triggers, "fill", "full", &host).await;
    let unready = wait_ready_status(&host, 503, Duration::from_secs(5)).await;
    assert_eq!(unready["ready"], false, "{unready}");
    let m = scrape(&host).await;
    assert_eq!(m.get("pbx_host_up"), Some(&1.0), "{m:?}");
    assert_eq!(m.get("pbx_host_ready"), Some(&0.0), "{m:?}");
    assert_eq!(
        m.get("pbx_host_readiness_check{check=\"storage\"}"),
        Some(&0.0),
        "{m:?}"
    );
    assert_eq!(
        m.get("pbx_host_readiness_check{check=\"queue\"}"),
        Some(&1.0),
        "{m:?}"
    );
    assert!(
        m.get("pbx_host_deliveries_pending")
            .is_some_and(|n| *n >= 1.0),
        "the event accepted before is queued: {m:?}"
    );
    let storage = &unready["checks"]["storage"];
    assert_eq!(storage["ok"], false, "{unready}");
    let reason = storage["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&data.display().to_string()) && reason.contains("below the floor"),
        "the reason names the data directory and the floor: {reason}"
    );
    assert_eq!(unready["checks"]["plugins"]["ok"], true, "{unready}");
    assert_eq!(unready["checks"]["queue"]["ok"], true, "{unready}");

    let (status, body) = host
        .try_post("/v1/events", &event("during-full"))
        .await
        .expect("post");
    assert_eq!(status, 503, "an ingest while the disk is full: {body}");
    assert_eq!(body["error"]["code"], "storage", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("storage unavailable") && message.contains("full"),
        "a clear message: {message}"
    );
    assert!(!message.contains("storage: storage:"), "{message}");
    let (status, body) = host.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    let reason = body["checks"]["storage"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("an ingest could not commit"),
        "the failed commit is part of the verdict: {reason}"
    );

    trigger(&triggers, "free", "freed", &host).await;
    let ready = wait_ready_status(&host, 200, Duration::from_secs(5)).await;
    assert_eq!(ready["checks"]["storage"]["ok"], true, "{ready}");
    let m = scrape(&host).await;
    assert_eq!(m.get("pbx_host_ready"), Some(&1.0), "{m:?}");
    assert_eq!(
        m.get("pbx_host_readiness_check{check=\"storage\"}"),
        Some(&1.0),
        "{m:?}"
    );
    let after = event("after-free");
    let (status, body) = host.try_post("/v1/events", &after).await.expect("post");
    assert_eq!(status, 202, "ingest works again without a restart: {body}");

    let deliveries = host.deliveries("acme", None).await;
    let kept = delivery_of(&deliveries, "before-full-ended").unwrap_or_else(|| {
        panic!("the event accepted before the disk filled is lost: {deliveries:?}")
    });
    assert!(
        kept["status"] == "pending" || kept["status"] == "done",
        "still queued or delivered: {kept}"
    );
    assert!(
        delivery_of(&deliveries, "after-free-ended").is_some(),
        "{deliveries:?}"
    );
    assert!(
        delivery_of(&deliveries, "during-full-ended").is_none(),
        "the refused event was not queued: {deliveries:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_needs_no_token_and_a_broken_plugin_does_not_fail_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("plugins.toml");
    std::fs::write(
        &config,
        format!(
            "[host]\nmin_free_disk_mib = 0\n\n[plugins.probe]\ncomponent = \"{}/probe_plugin.wasm\"\n\n[plugins.broken]\ncomponent = \"missing.wasm\"\n",
            plugin_dir().display()
        ),
    )
    .expect("write plugins.toml");
    let mut opts = pbx_host::HostOptions::new(&config, dir.path().join("data"));
    opts.operator_token = Some("operator-secret".into());
    let host = pbx_host::Host::start(opts)
        .await
        .unwrap_or_else(|e| panic!("host did not start: {e}"));

    let report = host.readiness();
    assert!(report.ready, "{report:?}");
    assert_eq!(report.checks.plugins.loaded, ["probe"]);
    assert_eq!(report.checks.plugins.failed.len(), 1, "{report:?}");
    assert_eq!(report.checks.plugins.failed[0].id, "broken");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let api = format!("http://{}", listener.local_addr().expect("addr"));
    let h = host.clone();
    let server = tokio::spawn(async move {
        let _ = pbx_host::api::serve(h, listener, std::future::pending()).await;
    });
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{api}{path}")).send();

    let r = get("/readyz").await.expect("GET /readyz");
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(
        body["checks"]["plugins"],
        json!({
            "ok": true,
            "loaded": ["probe"],
            "failed": [{"id": "broken", "error": body["checks"]["plugins"]["failed"][0]["error"]}],
        }),
        "{body}"
    );
    assert!(
        body["checks"]["plugins"]["failed"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("missing.wasm")),
        "{body}"
    );
    let r = get("/healthz").await.expect("GET /healthz");
    assert_eq!(r.status().as_u16(), 200);
    // The rest of the API still wants the token.
    let r = get("/v1/plugins").await.expect("GET /v1/plugins");
    assert_eq!(r.status().as_u16(), 401);

    host.shutdown().await;
    let (status, body) = {
        let r = get("/readyz").await.expect("GET /readyz");
        (r.status().as_u16(), r.json::<Value>().await.expect("JSON"))
    };
    assert_eq!(status, 503, "a host shutting down is not ready: {body}");
    assert_eq!(body["checks"]["queue"]["ok"], false, "{body}");
    server.abort();
}
