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

/// A tenant's log as the API answers it (newest first), as "level plugin: message" lines,
/// oldest first.
fn log_lines_of(body: &Value) -> Vec<String> {
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
        log_lines_of(&body)
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

// ---------------------------------------------------------------------------------------------
// The `pbx-host` daemon as a child process: for tests that crash it (SIGKILL), stop it (SIGTERM)
// or freeze it (SIGSTOP) and start it again on the same data directory.

/// The `pbx-host` binary of this build (`target/debug/pbx-host`, next to the test binary's
/// `deps/` directory). Panics with the command to run when it is missing or older than one of
/// the workspace sources it was built from (cargo's `pbx-host.d`): a stale daemon would make
/// a crash test pass or fail for the wrong code.
/// Checked once per test process: a restart in the middle of a test uses the binary its
/// first start used, even if a source file changes meanwhile.
pub fn host_binary() -> PathBuf {
    static CHECKED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CHECKED.get_or_init(check_host_binary).clone()
}

fn check_host_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/<test>-<hash> -> target/debug
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps");
    let bin = dir.join(format!("pbx-host{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&bin).and_then(|m| m.modified());
    let Ok(built) = built else {
        panic!(
            "{} is missing: build the host daemon first with `cargo build -p pbx-host` \
             (`cargo xtask test` builds it)",
            bin.display()
        );
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let workspace = workspace.canonicalize().unwrap_or(workspace);
    let deps = std::fs::read_to_string(dir.join("pbx-host.d")).unwrap_or_default();
    let sources = deps
        .split_once(": ")
        .map_or("", |(_, rest)| rest)
        .lines()
        .next()
        .unwrap_or("");
    // Paths are separated by spaces; a space inside a path is escaped as "\ ".
    let sources = sources.replace("\\ ", "\u{0}");
    for source in sources
        .split(' ')
        .map(|p| PathBuf::from(p.replace('\u{0}', " ")))
    {
        if !source.starts_with(&workspace) {
            continue;
        }
        let changed = std::fs::metadata(&source).and_then(|m| m.modified());
        if changed.is_ok_and(|t| t > built) {
            panic!(
                "{} is older than {}: rebuild the host daemon with `cargo build -p pbx-host`",
                bin.display(),
                source.display()
            );
        }
    }
    bin
}

/// A `pbx-host serve --no-auth` child process in `dir`: `dir/plugins.toml`, `dir/data`, and
/// `dir/secrets.toml` when that file exists. Its stderr goes to `dir/host.log` (appended at
/// every start). Killed when dropped.
pub struct HostProcess {
    child: std::process::Child,
    pub api: String,
    pub http: reqwest::Client,
    pub dir: PathBuf,
}

impl HostProcess {
    /// Starts the daemon on a free loopback port and waits until it listens.
    pub async fn start(dir: &Path) -> HostProcess {
        Self::start_wrapped(dir, &[]).await
    }

    /// [`HostProcess::start`] through a wrapper command: `wrapper`'s words, then the daemon's
    /// own command line (binary and arguments), e.g. `["unshare", "-Urm", "sh", "-c", SCRIPT,
    /// "sh"]` with a script that prepares something and ends in `exec "$@"` (then the child's
    /// pid is the daemon's). The wrapper's stderr goes to `host.log` too.
    pub async fn start_wrapped(dir: &Path, wrapper: &[std::ffi::OsString]) -> HostProcess {
        let log_path = dir.join("host.log");
        let offset = std::fs::metadata(&log_path).map_or(0, |m| m.len());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("host.log");
        let mut cmd = match wrapper.split_first() {
            None => std::process::Command::new(host_binary()),
            Some((program, args)) => {
                let mut cmd = std::process::Command::new(program);
                cmd.args(args).arg(host_binary());
                cmd
            }
        };
        cmd.current_dir(dir)
            .arg("--config")
            .arg(dir.join("plugins.toml"))
            .arg("--data-dir")
            .arg(dir.join("data"));
        if dir.join("secrets.toml").is_file() {
            cmd.arg("--secrets").arg(dir.join("secrets.toml"));
        }
        cmd.args(["serve", "--no-auth", "--listen", "127.0.0.1:0"])
            .env_remove("PBX_HOST_OPERATOR_TOKEN")
            .env_remove("PBX_HOST_CONFIG")
            .env_remove("PBX_HOST_DATA")
            .env_remove("PBX_HOST_SECRETS")
            .env_remove("PBX_HOST_LISTEN")
            .env(
                "RUST_LOG",
                std::env::var("PBX_E2E_HOST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log);
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}",
                wrapper.first().map_or_else(
                    || host_binary().display().to_string(),
                    |w| w.to_string_lossy().into_owned()
                )
            )
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let api = loop {
            let text = std::fs::read(&log_path).unwrap_or_default();
            let text = String::from_utf8_lossy(text.get(offset as usize..).unwrap_or_default());
            if let Some(url) = text
                .lines()
                .find_map(|l| l.strip_prefix("pbx-host listening on "))
            {
                break url.trim().to_string();
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("pbx-host exited at start ({status}):\n{text}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pbx-host did not listen within 120 s:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        HostProcess {
            child,
            api,
            http: reqwest::Client::new(),
            dir: dir.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (a crash: nothing runs after it) and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by name ("TERM", "STOP", "CONT") with kill(1).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -s {name} failed: {status}");
    }

    /// Waits for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last `n` lines the daemon wrote to stderr (for failure messages).
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("host.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// POSTs JSON; `Err` when there is no HTTP answer (the daemon is down).
    pub async fn try_post(&self, path: &str, body: &Value) -> Result<(u16, Value), String> {
        let r = self
            .http
            .post(format!("{}{path}", self.api))
            .json(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(|e| e.to_string())?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.log_tail(40)));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The tenant's queued (pending or dead) deliveries, as the admin API lists them.
    pub async fn deliveries(&self, tenant: &str, status: Option<&str>) -> Vec<Value> {
        let path = match status {
            Some(s) => format!("/v1/tenants/{tenant}/deliveries?status={s}"),
            None => format!("/v1/tenants/{tenant}/deliveries"),
        };
        let (code, body) = self.get(&path).await;
        assert_eq!(code, 200, "{path}: {body}");
        body.as_array().cloned().unwrap_or_default()
    }

    /// The tenant's integration log, oldest first, as "level plugin: message" lines.
    pub async fn log_lines(&self, tenant: &str) -> Vec<String> {
        let (status, body) = self
            .get(&format!("/v1/tenants/{tenant}/log?limit=10000"))
            .await;
        assert_eq!(status, 200, "{body}");
        log_lines_of(&body)
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // A frozen (SIGSTOP) process still dies of SIGKILL.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A host with an operator token, its HTTP API served on a free loopback port by
/// `pbx_host::api::serve` (`TestEnv` starts without a token). `@PLUGINS@` in the config is the
/// components' directory.
pub struct AuthEnv {
    _dir: tempfile::TempDir,
    pub host: Host,
    pub api: String,
    pub http: reqwest::Client,
    /// The operator's token the host was started with.
    pub operator: String,
    server: tokio::task::JoinHandle<()>,
}

impl AuthEnv {
    pub async fn start(config: &str, operator_token: &str) -> AuthEnv {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("plugins.toml");
        std::fs::write(
            &path,
            config.replace("@PLUGINS@", &plugin_dir().display().to_string()),
        )
        .expect("plugins.toml");
        let mut opts = HostOptions::new(&path, dir.path().join("data"));
        opts.operator_token = Some(operator_token.into());
        opts.reload_interval = None;
        let host = Host::start(opts).await.expect("host starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let api = format!("http://{}", listener.local_addr().expect("addr"));
        let h = host.clone();
        let server = tokio::spawn(async move {
            let _ = pbx_host::api::serve(h, listener, std::future::pending()).await;
        });
        AuthEnv {
            _dir: dir,
            host,
            api,
            http: reqwest::Client::new(),
            operator: operator_token.to_string(),
            server,
        }
    }

    /// One request with `token` (or none); the status and the body as text.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.api));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// [`AuthEnv::call`] with a token, the body as JSON (a string when it is not JSON).
    pub async fn call_json(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, text) = self.call(method, path, Some(token), body).await;
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A new tenant token, issued with the operator's token.
    pub async fn tenant_token(&self, tenant: &str) -> String {
        let (status, body) = self
            .call_json(
                "POST",
                &format!("/v1/tenants/{tenant}/tokens"),
                &self.operator,
                Some(json!({"label": "admin"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap_or_default().to_string()
    }

    pub async fn stop(self) {
        self.host.shutdown().await;
        self.server.abort();
    }
}
