//! Security acceptance (SPEC H-2, H-3, H-10, H-11): no secret ever leaks, tenant tokens reach
//! their own tenant only, secrets are write-only, and a graceful shutdown loses nothing.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pbx_e2e::{AuthEnv, TestEnv, ended_call, standin};
use pbx_host::store::DeliveryStatus;
use serde_json::{Value, json};
use sf_standin::OrgSpec;

// ---------------------------------------------------------------------------------------------
// The host's own tracing output, captured for the whole test binary.

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once) a subscriber at the verbosity an operator would debug with and returns
/// everything it has written so far.
fn host_tracing() -> String {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    let buf = BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buf.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,pbx_host=trace,pbx_e2e=trace",
            ))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        buf
    });
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

// ---------------------------------------------------------------------------------------------
// (a) No secret value anywhere

const SCENARIO_TOML: &str = r#"
[host]
allow_private_networks = ["127.0.0.0/8"]

[plugins.history-logger]
component = "@PLUGINS@/history_logger.wasm"
events = ["ended", "memo-updated", "transcript-updated"]
[plugins.history-logger.grants]
http = ["https://login.salesforce.com", "https://*.my.salesforce.com", "{config.login_url}", "{config.instance_url}"]
secrets = ["salesforce.password", "salesforce.security_token", "salesforce.client_secret"]
state = true
contacts = "read"

[plugins.ivr-greeting]
component = "@PLUGINS@/ivr_greeting.wasm"
[plugins.ivr-greeting.grants]
http = ["https://login.salesforce.com", "{config.login_url}", "{config.instance_url}"]
secrets = ["salesforce.password", "salesforce.security_token", "salesforce.client_secret"]
state = true
contacts = "read"

[tenants.acme]
default_country = "JP"
ivr_fallback = { speech = "Please hold", route = "queue:main" }
[tenants.acme.plugins.history-logger]
config = { login_url = "@STANDIN@", auth = "password", username = "admin@acme.example", client_id = "ACME_CLIENT", language = "en" }
[tenants.acme.plugins.ivr-greeting]
config = { login_url = "@STANDIN@", auth = "password", username = "admin@acme.example", client_id = "ACME_CLIENT", queue = "queue:reception" }

[tenants.globex]
default_country = "JP"
[tenants.globex.plugins.history-logger]
config = { login_url = "@STANDIN@", auth = "password", username = "admin@globex.example", client_id = "GLOBEX_CLIENT", language = "en" }
"#;

/// Every response body the scenario saw, for the leak check.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    async fn get(&mut self, env: &TestEnv, path: &str) -> (u16, Value) {
        let (status, body) = env.get(path).await;
        self.0.push(format!("GET {path} -> {status} {body}"));
        (status, body)
    }
    async fn post(&mut self, env: &TestEnv, path: &str, body: &Value) -> (u16, Value) {
        let (status, resp) = env.post(path, body).await;
        self.0.push(format!("POST {path} -> {status} {resp}"));
        (status, resp)
    }
}

struct Creds {
    tenant: &'static str,
    username: &'static str,
    client_id: &'static str,
    password: &'static str,
    token: &'static str,
    client_secret: &'static str,
}

const ACME: Creds = Creds {
    tenant: "acme",
    username: "admin@acme.example",
    client_id: "ACME_CLIENT",
    password: "acme-pw-Zq81x",
    token: "ACMEtok3nSECRETv9",
    client_secret: "acme-client-secret-77Jk",
};
const GLOBEX: Creds = Creds {
    tenant: "globex",
    username: "admin@globex.example",
    client_id: "GLOBEX_CLIENT",
    password: "globex-pw-Lm44q",
    token: "GLOBEXtok3nSECRETw2",
    client_secret: "globex-client-secret-90Pw",
};
const WRONG_PASSWORD: &str = "wrong-pw-Xc55t";

fn spec(c: &Creds) -> OrgSpec {
    OrgSpec {
        username: c.username.into(),
        password: c.password.into(),
        security_token: c.token.into(),
        client_id: c.client_id.into(),
        client_secret: c.client_secret.into(),
        ..OrgSpec::default()
    }
}

async fn set_creds(env: &TestEnv, plugin: &str, c: &Creds) {
    env.set_secret(c.tenant, plugin, "salesforce.password", c.password)
        .await;
    env.set_secret(c.tenant, plugin, "salesforce.security_token", c.token)
        .await;
    env.set_secret(
        c.tenant,
        plugin,
        "salesforce.client_secret",
        c.client_secret,
    )
    .await;
}

fn ivr_request(caller: &str) -> Value {
    json!({"tenant": "acme", "ivr_name": "main", "deadline_ms": 3000,
           "call": {"call_id": format!("ivr-{caller}"), "direction": "inbound", "caller": caller,
                    "callee": "0501111222", "dial_started_at": 0}})
}

/// The cached Salesforce session a plugin keeps in its state: the access token the stand-in
/// issued to it.
fn cached_access_token(env: &TestEnv, tenant: &str, plugin: &str) -> Option<String> {
    let raw = env
        .host
        .storage()
        .state_get(tenant, plugin, "salesforce:session", i64::MAX / 2)
        .ok()
        .flatten()
        .or_else(|| {
            env.host
                .storage()
                .state_get(
                    tenant,
                    plugin,
                    "salesforce:session",
                    chrono::Utc::now().timestamp_millis(),
                )
                .ok()
                .flatten()
        })?;
    let v: Value = serde_json::from_str(&raw).ok()?;
    v["access_token"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_appears_in_logs_api_responses_or_host_tracing() {
    host_tracing();
    let sf = standin().await;
    let acme_org = sf.add_org(spec(&ACME));
    let globex_org = sf.add_org(spec(&GLOBEX));
    acme_org.insert(
        "Contact",
        json!({"FirstName": "Taro", "LastName": "Yamada", "Phone": "03-1234-5678"}),
    );
    let env = TestEnv::start(SCENARIO_TOML, &sf.base_url()).await;
    let mut seen = Seen::default();

    // Verify settings with a wrong password, then the right one.
    set_creds(&env, "history-logger", &ACME).await;
    env.set_secret(
        "acme",
        "history-logger",
        "salesforce.password",
        WRONG_PASSWORD,
    )
    .await;
    let (status, v) = seen
        .post(
            &env,
            "/v1/tenants/acme/plugins/history-logger/verify",
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ok"], false, "the wrong password is noticed: {v}");
    // A failing login through the event path too (an invocation, logged).
    let failed = env
        .host
        .invoke_event_now(
            "acme",
            "history-logger",
            serde_json::from_value(ended_call(
                "acme",
                "fail-1",
                "inbound",
                "+81312345678",
                "0501111222",
                "answered",
                5,
            ))
            .unwrap(),
        )
        .await
        .unwrap();
    assert!(failed.outcome.is_err(), "a wrong password fails the login");
    set_creds(&env, "history-logger", &ACME).await;
    let (_, v) = seen
        .post(
            &env,
            "/v1/tenants/acme/plugins/history-logger/verify",
            &json!({}),
        )
        .await;
    assert_eq!(v["ok"], true, "{v}");
    set_creds(&env, "history-logger", &GLOBEX).await;
    set_creds(&env, "ivr-greeting", &ACME).await;

    // Calls logged for both tenants.
    for i in 0..3 {
        for tenant in ["acme", "globex"] {
            let (status, r) = seen
                .post(
                    &env,
                    "/v1/events",
                    &ended_call(
                        tenant,
                        &format!("call-{i}"),
                        "inbound",
                        "+81312345678",
                        "0501111222",
                        "answered",
                        30 + i,
                    ),
                )
                .await;
            assert_eq!(status, 202, "{r}");
        }
    }
    env.wait_idle().await;
    assert_eq!(acme_org.records("Task").len(), 3);
    assert_eq!(globex_org.records("Task").len(), 3);

    // IVR look-ups (a known and an unknown caller).
    for caller in ["0312345678", "0399999999"] {
        let (status, d) = seen.post(&env, "/v1/ivr", &ivr_request(caller)).await;
        assert_eq!(status, 200);
        assert_eq!(d["source"], "plugin", "{d}");
    }

    // Every admin read there is.
    seen.get(&env, "/v1/plugins").await;
    for tenant in ["acme", "globex"] {
        for path in [
            "plugins",
            "log?limit=10000",
            "usage",
            "deliveries",
            "deliveries?status=dead",
            "plugins/history-logger/secrets",
            "plugins/ivr-greeting/secrets",
        ] {
            let (status, body) = seen
                .get(&env, &format!("/v1/tenants/{tenant}/{path}"))
                .await;
            assert_eq!(status, 200, "{path}: {body}");
        }
    }

    // The secrets, and the session tokens the stand-in issued to the plugins.
    let mut needles: Vec<String> = [ACME, GLOBEX]
        .iter()
        .flat_map(|c| [c.password, c.token, c.client_secret])
        .chain([WRONG_PASSWORD])
        .map(str::to_string)
        .collect();
    let mut sessions = 0;
    for (tenant, plugin) in [
        ("acme", "history-logger"),
        ("globex", "history-logger"),
        ("acme", "ivr-greeting"),
    ] {
        if let Some(token) = cached_access_token(&env, tenant, plugin) {
            assert!(token.len() >= 16, "{token}");
            needles.push(token);
            sessions += 1;
        }
    }
    assert!(sessions >= 2, "the plugins cached their sessions");
    // And one issued directly, in the stand-in's format (never used, so it can only appear
    // if something echoes the stand-in's session store).
    needles.push(acme_org.issue_session());

    let logs: Vec<String> = {
        let mut all = Vec::new();
        for tenant in ["acme", "globex"] {
            all.extend(env.log_lines(tenant).await);
        }
        all
    };
    assert!(
        logs.iter().any(|l| l.contains("history-logger")),
        "the haystack is not empty: {logs:#?}"
    );
    let responses = seen.0.join("\n");
    assert!(responses.contains("********"), "secrets listed masked");
    let tracing_out = host_tracing();
    for needle in &needles {
        // A secret is also leaked by its first half (a cut) or in the password+token form.
        let half = &needle[..needle.len() / 2 + 2];
        for (what, hay) in [
            ("integration log", logs.join("\n")),
            ("API responses", responses.clone()),
            ("host tracing", tracing_out.clone()),
        ] {
            assert!(
                !hay.contains(needle.as_str()),
                "secret {needle:?} leaked into the {what}"
            );
            assert!(
                !hay.contains(half),
                "a prefix of secret {needle:?} leaked into the {what}"
            );
        }
    }
    // The secret files on disk are not the plain values either.
    let secrets_dir = env.dir.path().join("data/secrets");
    for entry in walk(&secrets_dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for c in [ACME, GLOBEX] {
            assert!(
                !text.contains(c.password) && !text.contains(c.client_secret),
                "{} stores a secret in clear",
                entry.display()
            );
        }
    }
    env.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// (b) tenant tokens, (c) write-only secrets

const PROBE_TOML: &str = r#"
[plugins.probe]
component = "@PLUGINS@/probe_plugin.wasm"
events = ["*"]
[plugins.probe.grants]
secrets = ["probe.token"]
state = true
[plugins.probe.limits]
wall_ms = 3000

[tenants.acme]
[tenants.acme.plugins.probe]
config = {}

[tenants.globex]
[tenants.globex.plugins.probe]
config = {}
"#;

const OPERATOR: &str = "operator-token-for-tests-5b1f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_tokens_reach_only_their_own_tenants_admin_routes() {
    let env = AuthEnv::start(PROBE_TOML, OPERATOR).await;
    let (status, body) = env
        .call(
            "POST",
            "/v1/tenants/acme/tokens",
            Some(OPERATOR),
            Some(json!({"label": "acme admin"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let acme_token = serde_json::from_str::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let event = ended_call(
        "acme",
        "c1",
        "inbound",
        "0312345678",
        "0501111222",
        "answered",
        5,
    );

    // Its own tenant's admin routes work.
    for (method, path, body, want) in [
        ("GET", "/v1/tenants/acme/plugins", None, 200),
        ("GET", "/v1/tenants/acme/log", None, 200),
        ("GET", "/v1/tenants/acme/usage", None, 200),
        ("GET", "/v1/tenants/acme/deliveries", None, 200),
        ("GET", "/v1/tenants/acme/plugins/probe/secrets", None, 200),
        (
            "PUT",
            "/v1/tenants/acme/plugins/probe/secrets/probe.token",
            Some(json!({"value": "acme-secret-value"})),
            204,
        ),
        (
            "PUT",
            "/v1/tenants/acme/plugins/probe/config",
            Some(json!({"attack": "none"})),
            204,
        ),
        (
            "PUT",
            "/v1/tenants/acme/plugins/probe/enabled",
            Some(json!({"enabled": true})),
            204,
        ),
        (
            "POST",
            "/v1/tenants/acme/plugins/probe/verify",
            Some(json!({})),
            200,
        ),
    ] {
        let (status, resp) = env.call(method, path, Some(&acme_token), body).await;
        assert_eq!(status, want, "{method} {path}: {resp}");
    }
    // Another tenant's, the ingest and operator routes, and minting tokens: 403.
    for (method, path, body) in [
        ("GET", "/v1/tenants/globex/plugins", None),
        ("GET", "/v1/tenants/globex/log", None),
        ("GET", "/v1/tenants/globex/usage", None),
        ("GET", "/v1/tenants/globex/deliveries", None),
        ("GET", "/v1/tenants/globex/plugins/probe/secrets", None),
        (
            "PUT",
            "/v1/tenants/globex/plugins/probe/secrets/probe.token",
            Some(json!({"value": "x"})),
        ),
        (
            "PUT",
            "/v1/tenants/globex/plugins/probe/config",
            Some(json!({})),
        ),
        (
            "PUT",
            "/v1/tenants/globex/plugins/probe/enabled",
            Some(json!({"enabled": false})),
        ),
        (
            "POST",
            "/v1/tenants/globex/plugins/probe/verify",
            Some(json!({})),
        ),
        ("POST", "/v1/tenants/globex/deliveries/1/replay", None),
        ("POST", "/v1/events", Some(event.clone())),
        (
            "POST",
            "/v1/ivr",
            Some(
                json!({"tenant": "acme", "deadline_ms": 100, "call": {"call_id": "x", "direction": "inbound", "caller": "1", "callee": "2", "dial_started_at": 0}}),
            ),
        ),
        ("GET", "/v1/plugins", None),
        ("POST", "/v1/reload", None),
        (
            "POST",
            "/v1/tenants/acme/tokens",
            Some(json!({"label": "self-minted"})),
        ),
        ("DELETE", "/v1/tenants/acme/tokens", None),
        (
            "POST",
            "/v1/tenants/globex/tokens",
            Some(json!({"label": "x"})),
        ),
        // Lookalike paths do not slip past the tenant check.
        ("GET", "/v1/tenants/acme/../globex/log", None),
        ("GET", "/v1/tenants/acmex/log", None),
    ] {
        let (status, resp) = env.call(method, path, Some(&acme_token), body).await;
        assert!(
            status == 403 || (status == 404 && path.contains("..")),
            "{method} {path} with acme's token: {status} {resp}"
        );
        if status == 403 {
            assert!(resp.contains("\"forbidden\""), "{resp}");
        }
    }
    // globex's secret was not written, its plugin not disabled.
    let (_, secrets) = env
        .call(
            "GET",
            "/v1/tenants/globex/plugins/probe/secrets",
            Some(OPERATOR),
            None,
        )
        .await;
    assert!(secrets.contains("\"set\":false"), "{secrets}");
    // No token, a wrong token, a malformed header: 401 everywhere (but the health check).
    for path in ["/v1/tenants/acme/log", "/v1/events", "/v1/plugins"] {
        for token in [None, Some("pbxt_not-a-real-token"), Some("")] {
            let (status, resp) = env.call("GET", path, token, None).await;
            assert_eq!(status, 401, "{path} with {token:?}: {resp}");
        }
    }
    let r = env
        .http
        .get(format!("{}/v1/tenants/acme/log", env.api))
        .header("Authorization", format!("Basic {acme_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "only Bearer tokens");
    assert_eq!(env.call("GET", "/healthz", None, None).await.0, 200);
    // The operator may do everything; revoking the tenant's tokens locks it out.
    let (status, _) = env
        .call("POST", "/v1/events", Some(OPERATOR), Some(event))
        .await;
    assert_eq!(status, 202);
    let (status, _) = env
        .call("DELETE", "/v1/tenants/acme/tokens", Some(OPERATOR), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = env
        .call("GET", "/v1/tenants/acme/log", Some(&acme_token), None)
        .await;
    assert_eq!(status, 401, "a revoked token is refused");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_write_only_on_every_route() {
    let env = TestEnv::start(PROBE_TOML, "http://unused.invalid").await;
    let value = "write-only-secret-R4nd0m";
    env.set_secret("acme", "probe", "probe.token", value).await;
    // The plugin can read it (it is really stored)...
    env.host
        .set_config(
            "acme",
            "probe",
            json!({"ops": [{"op": "secret", "name": "probe.token"}]}),
        )
        .unwrap();
    let (_, d) = env
        .post("/v1/ivr", &json!({"tenant": "acme", "deadline_ms": 3000, "call": {"call_id": "x", "direction": "inbound", "caller": "1", "callee": "2", "dial_started_at": 0}}))
        .await;
    // ...and the decision is the plugin's own output: what it does with the value is its
    // business, so it is checked here only to prove the secret is set.
    assert_eq!(d["variables"][0][1], format!("ok:{value}"), "{d}");
    // ...but no admin route returns it.
    let mut bodies = Vec::new();
    for path in [
        "/v1/plugins",
        "/v1/tenants/acme/plugins",
        "/v1/tenants/acme/plugins/probe/secrets",
        "/v1/tenants/acme/log?limit=10000",
        "/v1/tenants/acme/usage",
        "/v1/tenants/acme/deliveries",
    ] {
        let (status, body) = env.get(path).await;
        assert_eq!(status, 200, "{path}");
        bodies.push(body.to_string());
    }
    // GET on a secret's own path is not a route.
    let (status, body) = env
        .get("/v1/tenants/acme/plugins/probe/secrets/probe.token")
        .await;
    assert_eq!(status, 405, "{body}");
    bodies.push(body.to_string());
    let (_, secrets) = env.get("/v1/tenants/acme/plugins/probe/secrets").await;
    assert_eq!(
        secrets,
        json!([{"name": "probe.token", "set": true, "value": "********"}])
    );
    // Secrets cannot be smuggled in as settings either.
    let (status, body) = env
        .put(
            "/v1/tenants/acme/plugins/probe/config",
            &json!({"api_token": value}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    bodies.push(body.to_string());
    for b in &bodies {
        assert!(!b.contains(value), "secret in a response: {b}");
    }
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// (d) graceful shutdown

const SHUTDOWN_TOML: &str = r#"
[plugins.probe]
component = "@PLUGINS@/probe_plugin.wasm"
events = ["ended"]
[plugins.probe.grants]
state = true
[plugins.probe.limits]
cpu_ms = 5000
wall_ms = 10000

[tenants.acme]
[tenants.acme.plugins.probe]
config = { attack = "sleep", ms = 1500 }
"#;

fn event_of_one_call(i: usize) -> Value {
    let mut e = ended_call("acme", "sd", "inbound", "1", "2", "answered", 5);
    e["event_id"] = json!(format!("sd-ended-{i}"));
    e
}

fn count(deliveries: &[pbx_host::store::Delivery], status: DeliveryStatus) -> usize {
    deliveries.iter().filter(|d| d.status == status).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_deliveries_and_keeps_queued_ones() {
    let env = TestEnv::start(SHUTDOWN_TOML, "http://unused.invalid").await;
    // Six events of one call: they run in order, one at a time, each busy-waiting 1.5 s; so
    // at shutdown one is in flight and the rest are queued behind it.
    let events = 6;
    for i in 0..events {
        let (status, r) = env.post("/v1/events", &event_of_one_call(i)).await;
        assert_eq!(status, 202, "{r}");
    }
    // The dispatcher is woken by the ingest; 400 ms in, the first delivery is running (its
    // log lines are written when it ends, so there is nothing to poll for).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let t = Instant::now();
    let left = env.host.shutdown_within(Duration::from_secs(8)).await;
    let took = t.elapsed();
    assert_eq!(
        left, 0,
        "the in-flight delivery finished within the grace period"
    );
    assert!(
        took < Duration::from_millis(1500 + 1000),
        "waited for one delivery only: {took:?}"
    );
    // Nothing new starts after shutdown.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // An acknowledged delivery leaves the queue; what is left is pending, none dead.
    let deliveries = env.host.deliveries("acme", None).unwrap();
    let pending = count(&deliveries, DeliveryStatus::Pending);
    assert_eq!(pending, deliveries.len(), "{deliveries:#?}");
    let done = events - pending;
    assert!(
        done >= 1,
        "the in-flight one finished and was acknowledged: {deliveries:#?}"
    );
    assert!(pending >= 1, "queued ones stay pending: {deliveries:#?}");
    assert!(
        deliveries.iter().all(|d| d.attempts == 0),
        "the queued ones never started: {deliveries:#?}"
    );
    let ran_before = env
        .log_lines("acme")
        .await
        .iter()
        .filter(|l| l.contains("probe: received sd"))
        .count();
    assert_eq!(ran_before, done, "only the acknowledged ones ran");

    // Restart on the same data directory: the pending ones run, none runs twice.
    let dir = env.stop().await;
    let config = std::fs::read_to_string(dir.path().join("plugins.toml")).unwrap();
    let env = TestEnv::start_in(dir, &config, "http://unused.invalid").await;
    env.host
        .set_config("acme", "probe", json!({"attack": "none"}))
        .unwrap();
    env.wait_idle().await;
    let deliveries = env.host.deliveries("acme", None).unwrap();
    assert!(deliveries.is_empty(), "all acknowledged: {deliveries:#?}");
    let log = env.log_lines("acme").await;
    let ran = log
        .iter()
        .filter(|l| l.contains("probe: received sd"))
        .count();
    assert_eq!(
        ran, events,
        "every event ran exactly once across the restart: {log:#?}"
    );
    env.stop().await;
}
