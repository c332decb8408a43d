//! Takeover through loopback (issue 11, finding 3) and plugin offers (item 6): a tenant that
//! points its plugin's `{config.login_url}` at the host's own API gets `denied`, whatever the
//! operator opened and with `--no-auth` too; the operator can open the one stand-in endpoint
//! instead of all of 127.0.0.0/8; `--no-auth` binds only to loopback and warns; a tenant admin
//! sets up only the plugins the operator offered to its tenant.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pbx_e2e::{AuthEnv, HostProcess, TestEnv, standin};
use serde_json::{Value, json};

/// The probe plugin with grants that take whole origins from the tenant's settings, as the
/// Salesforce plugins' `{config.login_url}` does; loopback opened as the e2e suite opens it.
const PROBE_TOML: &str = r#"
[host]
allow_private_networks = ["127.0.0.0/8"]

[plugins.probe]
component = "@PLUGINS@/probe_plugin.wasm"
[plugins.probe.grants]
http = ["{config.login_url}", "{config.instance_url}", "{config.other_url}"]
state = true
[plugins.probe.limits]
wall_ms = 10000

[tenants.acme]
ivr_fallback = { speech = "acme fallback", route = "queue:acme" }
[tenants.acme.plugins.probe]
config = {}

[tenants.globex]
[tenants.globex.plugins.probe]
config = { marker = "globex's own" }
"#;

fn http_op(method: &str, url: String, body: Option<&str>) -> Value {
    let mut op = json!({"op": "http", "method": method, "url": url,
                        "headers": [["content-type", "application/json"]], "timeout_ms": 5000});
    if let Some(b) = body {
        op["body"] = json!(b);
    }
    op
}

/// What the takeover in the finding did, from acme's plugin: mint a token for globex,
/// rewrite globex's settings, read globex's log, and the health check; by IP literal (`api`)
/// and by name (`named`, which goes through the resolver).
fn takeover_ops(api: &str, named: &str) -> Vec<Value> {
    vec![
        http_op(
            "POST",
            format!("{api}/v1/tenants/globex/tokens"),
            Some(r#"{"label":"stolen"}"#),
        ),
        http_op(
            "PUT",
            format!("{api}/v1/tenants/globex/plugins/probe/config"),
            Some(r#"{"marker":"rewritten by acme"}"#),
        ),
        http_op("GET", format!("{api}/v1/tenants/globex/log"), None),
        http_op("GET", format!("{api}/healthz"), None),
        http_op("GET", format!("{named}/v1/tenants/globex/log"), None),
    ]
}

/// The op results of an IVR decision of the probe, in order.
fn results(decision: &Value) -> Vec<String> {
    assert_eq!(decision["source"], "plugin", "{decision}");
    decision["variables"]
        .as_array()
        .unwrap_or_else(|| panic!("no variables: {decision}"))
        .iter()
        .map(|kv| kv[1].as_str().unwrap_or("").to_string())
        .collect()
}

fn ivr_lookup(tenant: &str) -> Value {
    json!({"tenant": tenant, "deadline_ms": 8000, "call": {"call_id": "ivr-takeover",
           "direction": "inbound", "caller": "0312345678", "callee": "0501111222", "dial_started_at": 0}})
}

/// "http://127.0.0.1:PORT" -> "http://localhost:PORT".
fn by_name(url: &str) -> String {
    url.replace("127.0.0.1", "localhost")
}

/// Each of the first `n` results is a denial naming the listen socket (the last one by
/// `localhost`, which may also resolve to ::1, a loopback address the file does not open).
fn assert_listen_socket_denials(results: &[String], n: usize) {
    for (i, r) in results.iter().take(n).enumerate() {
        let why_ok = r.contains("listen socket") || (i == n - 1 && r.contains("(::1)"));
        assert!(
            r.starts_with("err:denied:") && why_ok,
            "op {i} reached the host's API: {r}"
        );
    }
}

fn assert_denial_logged(lines: &[String]) {
    assert!(
        lines.iter().any(|l| l.contains("probe")
            && l.contains("denied: http")
            && l.contains("listen socket")),
        "no denial naming the listen socket in acme's log: {lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_pointing_its_plugin_at_the_no_auth_daemons_api_is_denied() {
    let sf = standin().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plugins.toml"),
        PROBE_TOML.replace("@PLUGINS@", &pbx_e2e::plugin_dir().display().to_string()),
    )
    .unwrap();
    // `pbx-host serve --no-auth --listen 127.0.0.1:0`: the API is open to anyone who reaches it.
    let host = HostProcess::start(dir.path()).await;
    let api = host.api.clone();
    let mut ops = takeover_ops(&api, &by_name(&api));
    // The control: the same plugin reaches another loopback service (the stand-in).
    ops.push(http_op(
        "GET",
        format!("{}/services/data", sf.base_url()),
        None,
    ));
    // The tenant admin sets its own settings: its login URL is the host's API.
    let config = json!({"login_url": api, "instance_url": by_name(&api),
                        "other_url": sf.base_url(), "ops": ops});
    let r = host
        .http
        .put(format!("{api}/v1/tenants/acme/plugins/probe/config"))
        .json(&config)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);

    let (status, decision) = host
        .try_post("/v1/ivr", &ivr_lookup("acme"))
        .await
        .expect("the daemon answers");
    assert_eq!(status, 200, "{decision}");
    let got = results(&decision);
    assert_eq!(got.len(), 6, "{got:?}");
    assert_listen_socket_denials(&got, 5);
    assert!(
        got[5].starts_with("ok:"),
        "another loopback port stays reachable: {}",
        got[5]
    );

    // Nothing happened to globex: no token was minted (none is listed in its log either),
    // its settings are its own.
    let (status, plugins) = host.get("/v1/tenants/globex/plugins").await;
    assert_eq!(status, 200, "{plugins}");
    assert_eq!(plugins[0]["config"]["marker"], "globex's own", "{plugins}");
    assert_denial_logged(&host.log_lines("acme").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_api_is_refused_to_plugins_though_loopback_is_open() {
    let sf = standin().await;
    // TestEnv serves through pbx_host::api::serve, open (no operator token), as the e2e tests
    // and the demo once did; plugins.toml opens 127.0.0.0/8.
    let env = TestEnv::start(PROBE_TOML, &sf.base_url()).await;
    let mut ops = takeover_ops(&env.api, &by_name(&env.api));
    ops.push(http_op(
        "GET",
        format!("{}/services/data", sf.base_url()),
        None,
    ));
    let (status, body) = env
        .put(
            "/v1/tenants/acme/plugins/probe/config",
            &json!({"login_url": env.api, "instance_url": by_name(&env.api),
                    "other_url": sf.base_url(), "ops": ops}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, decision) = env.post("/v1/ivr", &ivr_lookup("acme")).await;
    assert_eq!(status, 200, "{decision}");
    let got = results(&decision);
    assert_listen_socket_denials(&got, 5);
    assert!(got[5].starts_with("ok:"), "{}", got[5]);
    let views = env.host.tenant_plugins("globex").unwrap();
    assert_eq!(views[0].config["marker"], "globex's own");
    assert_denial_logged(&env.log_lines("acme").await);
    env.stop().await;
}

/// A loopback server that counts the connections it accepted and answers each with 200.
async fn counting_server() -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (url, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opened_endpoint_opens_the_stand_in_and_no_other_loopback_port() {
    let sf = standin().await;
    let standin_addr = sf.base_url().trim_start_matches("http://").to_string();
    let toml = PROBE_TOML.replace(
        r#"allow_private_networks = ["127.0.0.0/8"]"#,
        &format!(r#"allow_private_endpoints = ["{standin_addr}"]"#),
    );
    let env = TestEnv::start(&toml, &sf.base_url()).await;
    let (neighbour, connections) = counting_server().await;
    let ops = vec![
        http_op("GET", format!("{}/services/data", sf.base_url()), None),
        http_op("GET", format!("{neighbour}/admin"), None),
        http_op("GET", format!("{}/healthz", env.api), None),
    ];
    env.host
        .set_config(
            "acme",
            "probe",
            json!({"login_url": sf.base_url(), "instance_url": neighbour,
                   "other_url": env.api, "ops": ops}),
        )
        .unwrap();
    let (status, decision) = env.post("/v1/ivr", &ivr_lookup("acme")).await;
    assert_eq!(status, 200, "{decision}");
    let got = results(&decision);
    assert!(got[0].starts_with("ok:"), "the stand-in: {}", got[0]);
    assert!(
        got[1].starts_with("err:denied:") && got[1].contains("loopback"),
        "another loopback port: {}",
        got[1]
    );
    assert!(
        got[2].starts_with("err:denied:") && got[2].contains("listen socket"),
        "the API: {}",
        got[2]
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the neighbour saw a connection"
    );
    env.stop().await;
}

#[test]
fn the_shipped_plugins_toml_opens_only_the_stand_ins_endpoint() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins.toml");
    let file =
        pbx_host::config::load_file(&path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    assert!(
        file.host.allow_private_networks.is_empty(),
        "the shipped file opens whole networks: {:?}",
        file.host.allow_private_networks
    );
    let endpoints: Vec<&str> = file
        .host
        .allow_private_endpoints
        .iter()
        .map(|e| e.get_ref().as_str())
        .collect();
    assert_eq!(endpoints, ["127.0.0.1:18089"]);
}

// ---------------------------------------------------------------------------------------------
// --no-auth

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_auth_refuses_a_non_loopback_listen_address_and_warns_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plugins.toml"), "").unwrap();
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let mut child = std::process::Command::new(pbx_e2e::host_binary())
            .arg("--config")
            .arg(dir.path().join("plugins.toml"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["serve", "--no-auth", "--listen", listen])
            .env_remove("PBX_HOST_OPERATOR_TOKEN")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run pbx-host");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if std::time::Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("--no-auth --listen {listen}: the daemon started on a non-loopback address");
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "{listen}: {stderr}");
        assert!(
            stderr.contains("--no-auth") && stderr.contains("only on loopback"),
            "{listen}: {stderr}"
        );
    }
    // On loopback it starts, and says loudly what it means.
    std::fs::write(dir.path().join("plugins.toml"), "").unwrap();
    let host = HostProcess::start(dir.path()).await;
    let log = std::fs::read_to_string(dir.path().join("host.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.starts_with("WARNING: --no-auth") && l.contains("without a token")),
        "{log}"
    );
    drop(host);
}

// ---------------------------------------------------------------------------------------------
// Offers

const OFFERS_TOML: &str = r#"
[plugins.probe]
component = "@PLUGINS@/probe_plugin.wasm"
[plugins.probe.grants]
secrets = ["probe.token"]

[plugins.offered-only]
component = "@PLUGINS@/probe_plugin.wasm"
[plugins.offered-only.grants]
secrets = ["probe.token"]

[plugins.catalogue]
component = "@PLUGINS@/probe_plugin.wasm"
[plugins.catalogue.grants]
secrets = ["probe.token"]
contacts = "read-write"

[tenants.acme]
offered = ["offered-only"]
[tenants.acme.plugins.probe]
config = {}

[tenants.globex]
"#;

const OPERATOR: &str = "operator-token-for-takeover-tests-9c2e";

/// Every plugin route a tenant admin uses, for `plugin` of `tenant`.
fn plugin_routes(tenant: &str, plugin: &str) -> Vec<(&'static str, String, Option<Value>)> {
    let base = format!("/v1/tenants/{tenant}/plugins/{plugin}");
    vec![
        (
            "PUT",
            format!("{base}/enabled"),
            Some(json!({"enabled": true})),
        ),
        ("PUT", format!("{base}/config"), Some(json!({"x": "y"}))),
        (
            "PUT",
            format!("{base}/secrets/probe.token"),
            Some(json!({"value": "v"})),
        ),
        ("DELETE", format!("{base}/secrets/probe.token"), None),
        ("GET", format!("{base}/secrets"), None),
        ("POST", format!("{base}/verify"), Some(json!({}))),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_sets_up_only_plugins_offered_to_its_tenant() {
    let env = AuthEnv::start(OFFERS_TOML, OPERATOR).await;
    let acme = env.tenant_token("acme").await;
    let globex = env.tenant_token("globex").await;

    // Offered: configured for acme (probe), or listed in `offered` (offered-only).
    for plugin in ["probe", "offered-only"] {
        for (method, path, body) in plugin_routes("acme", plugin) {
            let (status, resp) = env.call_json(method, &path, &acme, body).await;
            assert!(
                (200..300).contains(&status),
                "{method} {path} with acme's token: {status} {resp}"
            );
        }
    }
    // Not offered: declared but neither listed nor configured for acme, undeclared, and for
    // globex (which names no plugin) every plugin.
    for (tenant, token, plugin) in [
        ("acme", &acme, "catalogue"),
        ("acme", &acme, "no-such-plugin"),
        ("globex", &globex, "probe"),
        ("globex", &globex, "catalogue"),
    ] {
        for (method, path, body) in plugin_routes(tenant, plugin) {
            let (status, resp) = env.call_json(method, &path, token, body).await;
            assert_eq!(status, 403, "{method} {path}: {resp}");
            assert_eq!(resp["error"]["code"], "not-offered", "{resp}");
            let message = resp["error"]["message"].as_str().unwrap_or("");
            assert!(
                message.contains(plugin) && message.contains(tenant) && message.contains("offered"),
                "{message}"
            );
        }
    }
    // None of it took effect, and the tenant sees only what it was offered.
    let (status, list) = env
        .call_json("GET", "/v1/tenants/acme/plugins", &acme, None)
        .await;
    assert_eq!(status, 200, "{list}");
    let mut seen: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["plugin"].as_str().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, ["offered-only", "probe"], "{list}");
    let (_, all) = env
        .call_json("GET", "/v1/tenants/acme/plugins", OPERATOR, None)
        .await;
    let catalogue = all
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["plugin"] == "catalogue")
        .cloned()
        .unwrap_or_else(|| panic!("{all}"));
    assert_eq!(catalogue["offered"], false, "{catalogue}");
    assert_eq!(catalogue["enabled"], false, "{catalogue}");
    assert_eq!(catalogue["config"], json!({}), "{catalogue}");
    assert!(env.host.is_offered("acme", "offered-only"));
    assert!(!env.host.is_offered("globex", "probe"));

    // The operator may set up any plugin for any tenant.
    for (method, path, body) in plugin_routes("acme", "catalogue") {
        let (status, resp) = env.call_json(method, &path, OPERATOR, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {resp}"
        );
    }
    let (status, resp) = env
        .call_json(
            "PUT",
            "/v1/tenants/acme/plugins/no-such-plugin/enabled",
            OPERATOR,
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 404, "{resp}");
    env.stop().await;
}

#[test]
fn offering_an_undeclared_plugin_is_a_config_error() {
    let err = pbx_host::config::parse_str(
        std::path::Path::new("plugins.toml"),
        "[tenants.acme]\noffered = [\"crm\"]\n",
    )
    .expect_err("refused");
    let text = err
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("plugins.toml:2")
            && text.contains("tenants.acme.offered")
            && text.contains("'crm'"),
        "{text}"
    );
}
