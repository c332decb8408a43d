//! Test harness for end-to-end scenarios: a host started from a real `plugins.toml` with real
//! plugin components (built from source by `cargo xtask plugins`), its HTTP API on a loopback
//! socket, and the Salesforce stand-in on another.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pbx_host::{Host, HostOptions};
use serde_json::{Value, json};
use sf_standin::StandIn;

/// Where `cargo xtask plugins` puts the components.
pub fn plugin_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("wasm32-wasip2/plugin")
}

/// The path of a built component; panics with the command to run when it is missing.
pub fn plugin_wasm(crate_name: &str) -> PathBuf {
    let path = plugin_dir().join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(
        path.is_file(),
        "{} is missing: build the plugin components first with `cargo xtask plugins` (or run the suite with `cargo xtask test`)",
        path.display()
    );
    path
}

/// A running host with its API, in a private directory.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub host: Host,
    pub api: String,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl TestEnv {
    /// Start from `plugins.toml` text. `@PLUGINS@` is replaced by the components' directory
    /// and `@STANDIN@` by `standin_url`.
    pub async fn start(config: &str, standin_url: &str) -> TestEnv {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, config, standin_url).await
    }

    /// Start in an existing directory (a restart keeps the database and compile cache).
    pub async fn start_in(dir: tempfile::TempDir, config: &str, standin_url: &str) -> TestEnv {
        let text = config
            .replace("@PLUGINS@", &plugin_dir().display().to_string())
            .replace("@STANDIN@", standin_url);
        let config_path = dir.path().join("plugins.toml");
        std::fs::write(&config_path, text).expect("write plugins.toml");
        let mut opts = HostOptions::new(&config_path, dir.path().join("data"));
        opts.schedule_tick = Duration::from_millis(200);
        opts.reload_interval = Some(Duration::from_millis(200));
        let host = Host::start(opts)
            .await
            .unwrap_or_else(|e| panic!("host did not start: {e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let api = format!("http://{}", listener.local_addr().expect("addr"));
        let h = host.clone();
        let server = tokio::spawn(async move {
            let _ = pbx_host::api::serve(h, listener, std::future::pending()).await;
        });
        TestEnv {
            dir,
            host,
            api,
            http: reqwest::Client::new(),
            server,
        }
    }

    pub async fn stop(self) -> tempfile::TempDir {
        self.host.shutdown().await;
        self.server.abort();
        self.dir
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.api))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .put(format!("{}{path}", self.api))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Set a secret through the admin API; asserts it was accepted.
    pub async fn set_secret(&self, tenant: &str, plugin: &str, name: &str, value: &str) {
        let (status, body) = self
            .put(
                &format!("/v1/tenants/{tenant}/plugins/{plugin}/secrets/{name}"),
                &json!({"value": value}),
            )
            .await;
        assert_eq!(status, 204, "set secret {name}: {body}");
    }

    /// The tenant's integration log, oldest first, as "level plugin: message" lines.
    pub async fn log_lines(&self, tenant: &str) -> Vec<String> {
        let (status, body) = self
            .get(&format!("/v1/tenants/{tenant}/log?limit=10000"))
            .await;
        assert_eq!(status, 200, "{body}");
        let mut lines: Vec<String> = body
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        format!(
                            "{} {}: {}",
                            e["level"].as_str().unwrap_or(""),
                            e["plugin"].as_str().unwrap_or(""),
                            e["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        lines.reverse();
        lines
    }

    pub async fn wait_idle(&self) {
        assert!(
            self.host.wait_idle(Duration::from_secs(60)).await,
            "deliveries still pending after 60 s"
        );
    }
}

/// Start a stand-in.
pub async fn standin() -> StandIn {
    StandIn::start().await.expect("stand-in")
}

/// A call event as the PBX posts it: a finished call.
pub fn ended_call(
    tenant: &str,
    call_id: &str,
    direction: &str,
    caller: &str,
    callee: &str,
    outcome: &str,
    duration: u32,
) -> Value {
    let start = chrono::Utc::now().timestamp_millis() - i64::from(duration) * 1000 - 5000;
    json!({
        "tenant": tenant,
        "event_id": format!("{call_id}-ended"),
        "kind": "ended",
        "call": {
            "call_id": call_id,
            "direction": direction,
            "caller": caller,
            "callee": callee,
            "agent": {"extension": "201", "user_id": "u-201", "user_name": "Sato", "user_email": "sato@example.jp"},
            "dial_started_at": start,
            "answered_at": if outcome == "answered" { json!(start + 5000) } else { Value::Null },
            "ended_at": start + 5000 + i64::from(duration) * 1000,
            "duration_seconds": duration,
            "outcome": outcome,
        }
    })
}

/// A TCP server on loopback that accepts connections and never answers (a CRM hanging).
/// Returns its base URL. The listener lives until the test's runtime ends.
pub async fn silent_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}
