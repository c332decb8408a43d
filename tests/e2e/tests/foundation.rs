//! Acceptance of the foundation (issue 2): the whole path, for real, end to end.
//! HTTP ingest → dispatcher → plugin component → capabilities → the stand-in over sockets.

use std::time::{Duration, Instant};

use pbx_e2e::{TestEnv, ended_call, standin};
use serde_json::{Value, json};
use sf_standin::OrgSpec;

const LOGGER_TOML: &str = r#"
[host]
allow_private_networks = ["127.0.0.0/8"]

[plugins.history-logger]
component = "@PLUGINS@/history_logger.wasm"
events = ["ended", "memo-updated", "transcript-updated"]
[plugins.history-logger.grants]
http = ["https://login.salesforce.com", "https://test.salesforce.com", "https://*.my.salesforce.com", "{config.login_url}", "{config.instance_url}"]
secrets = ["salesforce.password", "salesforce.security_token", "salesforce.client_secret"]
state = true
contacts = "read"

[tenants.acme]
default_country = "JP"
[tenants.acme.plugins.history-logger]
config = { login_url = "@STANDIN@", auth = "password", username = "admin@acme.example", client_id = "ACME_CLIENT", language = "ja" }

[tenants.globex]
default_country = "JP"
[tenants.globex.plugins.history-logger]
enabled = false
config = { login_url = "@STANDIN@", auth = "password", username = "admin@globex.example", client_id = "GLOBEX_CLIENT", language = "en" }
"#;

fn org(username: &str, client: &str) -> OrgSpec {
    OrgSpec {
        username: username.into(),
        password: "pw-secret-1".into(),
        security_token: "TOKENSECRET".into(),
        client_id: client.into(),
        client_secret: "client-secret-1".into(),
        ..OrgSpec::default()
    }
}

async fn set_credentials(env: &TestEnv, tenant: &str) {
    env.set_secret(
        tenant,
        "history-logger",
        "salesforce.password",
        "pw-secret-1",
    )
    .await;
    env.set_secret(
        tenant,
        "history-logger",
        "salesforce.security_token",
        "TOKENSECRET",
    )
    .await;
    env.set_secret(
        tenant,
        "history-logger",
        "salesforce.client_secret",
        "client-secret-1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_reaches_enabled_tenant_plugin_and_creates_a_task_while_disabled_tenant_gets_nothing()
{
    let sf = standin().await;
    let acme = sf.add_org(org("admin@acme.example", "ACME_CLIENT"));
    let globex = sf.add_org(org("admin@globex.example", "GLOBEX_CLIENT"));
    let contact = acme.insert(
        "Contact",
        json!({"FirstName": "Taro", "LastName": "Yamada", "Phone": "03-1234-5678"}),
    );
    let env = TestEnv::start(LOGGER_TOML, &sf.base_url()).await;
    set_credentials(&env, "acme").await;
    set_credentials(&env, "globex").await;

    let (status, receipt) = env
        .post(
            "/v1/events",
            &ended_call(
                "acme",
                "call-1",
                "inbound",
                "+81312345678",
                "0501111222",
                "answered",
                65,
            ),
        )
        .await;
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(receipt["queued_for"], json!(["history-logger"]));
    let (status, receipt) = env
        .post(
            "/v1/events",
            &ended_call(
                "globex",
                "call-1",
                "inbound",
                "+81312345678",
                "0501111222",
                "answered",
                65,
            ),
        )
        .await;
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(
        receipt["queued_for"],
        json!([]),
        "globex has the plugin disabled"
    );
    env.wait_idle().await;

    let tasks = acme.records("Task");
    assert_eq!(
        tasks.len(),
        1,
        "one Task in acme's org: {tasks:?}\nlog: {:#?}",
        env.log_lines("acme").await
    );
    let t = &tasks[0];
    assert_eq!(t["CallObject"], "call-1");
    assert_eq!(t["CallType"], "Inbound");
    assert_eq!(t["TaskSubtype"], "Call");
    assert_eq!(t["CallDurationInSeconds"], 65);
    assert_eq!(
        t["WhoId"],
        Value::String(contact.clone()),
        "linked to the caller's Contact"
    );
    assert_eq!(
        t["Subject"], "着信",
        "Japanese default subject for an inbound call"
    );
    assert!(globex.records("Task").is_empty());
    assert_eq!(
        globex.api_calls(),
        0,
        "no request at all reached globex's org"
    );
    // The plugin's own lines and the usage counters are the tenant admin's to read.
    let log = env.log_lines("acme").await;
    assert!(log.iter().any(|l| l.contains("history-logger")), "{log:#?}");
    let (_, usage) = env.get("/v1/tenants/acme/usage").await;
    let http_requests: i64 = usage
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["counter"] == "http.requests")
        .map(|u| u["value"].as_i64().unwrap())
        .sum();
    assert_eq!(
        http_requests as u64,
        acme.api_calls(),
        "every request the plugin sent is counted: {usage}"
    );
    env.stop().await;
}

const PROBE_TOML: &str = r#"
[host]
allow_private_networks = ["127.0.0.0/8"]

[plugins.probe]
component = "@PLUGINS@/probe_plugin.wasm"
events = ["*"]
schedules = { tick = 3600 }
[plugins.probe.grants]
http = ["{config.allowed_url}", "{config.slow_url}"]
secrets = ["probe.token"]
state = true
contacts = "read-write"
[plugins.probe.limits]
cpu_ms = 200
memory_mib = 32
wall_ms = 3000
http_response_bytes = 65536
log_lines = 20

[tenants.acme]
ivr_fallback = { speech = "Please hold", route = "queue:main" }
[tenants.acme.plugins.probe]
config = { allowed_url = "@STANDIN@" }

[tenants.globex]
[tenants.globex.plugins.probe]
config = { allowed_url = "@STANDIN@" }
"#;

/// Run ops in the probe plugin (through the IVR door) and return its result per op.
async fn probe(env: &TestEnv, tenant: &str, ops: Value) -> Vec<String> {
    let (status, _) = env
        .put(
            &format!("/v1/tenants/{tenant}/plugins/probe/config"),
            &json!({"allowed_url": env_standin(env), "ops": ops}),
        )
        .await;
    assert_eq!(status, 204);
    let (status, decision) = env
        .post("/v1/ivr", &json!({"tenant": tenant, "deadline_ms": 5000, "call": {"call_id": "ivr-1", "direction": "inbound", "caller": "0312345678", "callee": "0501111222", "dial_started_at": 0}}))
        .await;
    assert_eq!(status, 200, "{decision}");
    assert_eq!(decision["source"], "plugin", "{decision}");
    decision["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv[1].as_str().unwrap_or("").to_string())
        .collect()
}

fn env_standin(env: &TestEnv) -> String {
    std::fs::read_to_string(env.dir.path().join("standin-url")).unwrap_or_default()
}

async fn probe_env() -> (sf_standin::StandIn, TestEnv) {
    let sf = standin().await;
    let env = TestEnv::start(PROBE_TOML, &sf.base_url()).await;
    std::fs::write(env.dir.path().join("standin-url"), sf.base_url()).unwrap();
    (sf, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_refuse_what_is_not_granted_with_typed_errors_and_log_each_refusal() {
    let (sf, env) = probe_env().await;
    env.set_secret("acme", "probe", "probe.token", "acme-token-value")
        .await;
    env.set_secret("globex", "probe", "probe.token", "globex-token-value")
        .await;
    // globex writes state and a phone-book entry first
    let r = probe(&env, "globex", json!([{"op": "state-set", "key": "k", "value": "globex-only"},
        {"op": "contacts-upsert", "entries": [{"external_id": "Contact/G1", "record_type": "Contact", "name": "Globex Person", "phones": [{"label": "Phone", "number": "03-9999-0000"}]}]}])).await;
    assert!(r.iter().all(|x| x.starts_with("ok")), "{r:?}");

    let results = probe(
        &env,
        "acme",
        json!([
            {"op": "http", "method": "GET", "url": format!("{}/services/data/", sf.base_url())},
            {"op": "http", "method": "GET", "url": "https://evil.example.com/steal"},
            {"op": "http", "method": "GET", "url": "http://169.254.169.254/latest/meta-data/"},
            {"op": "secret", "name": "probe.token"},
            {"op": "secret", "name": "salesforce.password"},
            {"op": "secret", "name": "../globex/probe/probe.token"},
            {"op": "state-get", "key": "k"},
            {"op": "state-get", "key": "../globex/probe/k"},
            {"op": "contacts-get", "id": "Contact/G1"},
            {"op": "contacts-lookup", "number": "+81 3 9999 0000"},
            {"op": "fs-read", "path": "/etc/passwd"},
            {"op": "env"},
            {"op": "tcp-connect", "addr": "1.1.1.1:80"},
        ]),
    )
    .await;
    assert!(
        results[0].starts_with("ok:200"),
        "granted URL: {}",
        results[0]
    );
    assert!(
        results[1].starts_with("err:denied"),
        "undeclared host: {}",
        results[1]
    );
    assert!(
        results[2].starts_with("err:denied"),
        "cloud metadata: {}",
        results[2]
    );
    assert_eq!(
        results[3], "ok:acme-token-value",
        "its own tenant's declared secret"
    );
    assert!(
        results[4].starts_with("err:denied"),
        "undeclared secret: {}",
        results[4]
    );
    assert!(
        results[5].starts_with("err:denied"),
        "another tenant's secret: {}",
        results[5]
    );
    assert_eq!(
        results[6], "none",
        "globex's state is invisible to acme: {}",
        results[6]
    );
    assert!(
        results[7].starts_with("err:denied"),
        "path into another tenant's state: {}",
        results[7]
    );
    assert!(
        results[8].starts_with("err:not-found"),
        "another tenant's contact: {}",
        results[8]
    );
    assert_eq!(
        results[9], "ok:0:",
        "lookup sees only acme's phone book: {}",
        results[9]
    );
    assert!(
        results[10].starts_with("err"),
        "no filesystem: {}",
        results[10]
    );
    assert_eq!(
        results[11], "ok:0:",
        "no environment variables: {}",
        results[11]
    );
    assert!(
        results[12].starts_with("err"),
        "no sockets: {}",
        results[12]
    );
    for v in &results {
        assert!(
            !v.contains("globex-token-value") && !v.contains("globex-only"),
            "leak: {v}"
        );
    }
    let log = env.log_lines("acme").await;
    let denials = log.iter().filter(|l| l.contains("denied:")).count();
    assert!(denials >= 5, "each refusal is in acme's log: {log:#?}");
    assert!(
        !env.log_lines("globex")
            .await
            .iter()
            .any(|l| l.contains("denied:")),
        "globex's log has none of acme's refusals"
    );
    // the host keeps serving
    let again = probe(
        &env,
        "acme",
        json!([{"op": "state-set", "key": "k", "value": "v"}, {"op": "state-get", "key": "k"}]),
    )
    .await;
    assert_eq!(again, ["ok", "ok:v"]);
    env.stop().await;
}

fn attack_event(tenant: &str, call: &str) -> pbx_host::events::CallEvent {
    serde_json::from_value(ended_call(
        tenant,
        call,
        "inbound",
        "0312345678",
        "0501111222",
        "answered",
        10,
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_stop_only_the_offending_invocation_while_another_tenant_completes() {
    let (_sf, env) = probe_env().await;
    for (attack, expect) in [
        ("loop", "cpu-limit"),
        ("alloc", "memory-limit"),
        ("trap", "trap"),
        ("recursion", "trap"),
    ] {
        env.host
            .set_config("acme", "probe", json!({"attack": attack}))
            .unwrap();
        env.host
            .set_config("globex", "probe", json!({"attack": "none"}))
            .unwrap();
        let started = Instant::now();
        let (bad, good) = tokio::join!(
            env.host
                .invoke_event_now("acme", "probe", attack_event("acme", attack)),
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                env.host
                    .invoke_event_now("globex", "probe", attack_event("globex", attack))
                    .await
            }
        );
        let bad = bad.unwrap();
        let good = good.unwrap();
        let err = bad.outcome.as_ref().expect_err(attack);
        assert_eq!(err.code(), expect, "{attack}: {err}");
        assert!(
            good.outcome.is_ok(),
            "globex's concurrent invocation completed during {attack}: {:?}",
            good.outcome
        );
        assert!(
            bad.elapsed < Duration::from_secs(3),
            "{attack} stopped within the wall clock: {:?}",
            bad.elapsed
        );
        if attack == "loop" {
            assert!(
                bad.cpu >= Duration::from_millis(200) && bad.cpu < Duration::from_millis(600),
                "stopped at its CPU limit: {:?}",
                bad.cpu
            );
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    let log = env.log_lines("acme").await;
    assert!(
        log.iter()
            .any(|l| l.contains("CPU limit of 200 ms exceeded")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("memory limit of 32 MiB exceeded")),
        "{log:#?}"
    );
    // and the host still serves both tenants
    env.host
        .set_config("acme", "probe", json!({"attack": "none"}))
        .unwrap();
    assert!(
        env.host
            .invoke_event_now("acme", "probe", attack_event("acme", "after"))
            .await
            .unwrap()
            .outcome
            .is_ok()
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivr_answers_with_the_fallback_when_the_plugin_is_late() {
    let (_sf, env) = probe_env().await;
    // A CRM that accepts the connection and never answers.
    let slow = pbx_e2e::silent_server().await;
    env.host
        .set_config("acme", "probe", json!({"slow_url": slow, "ops": [{"op": "http", "method": "GET", "url": format!("{slow}/services/data/")}]}))
        .unwrap();
    let started = Instant::now();
    let (status, d) = env
        .post("/v1/ivr", &json!({"tenant": "acme", "deadline_ms": 300, "call": {"call_id": "c", "direction": "inbound", "caller": "0312345678", "callee": "0501111222", "dial_started_at": 0}}))
        .await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(d["source"], "fallback", "{d}");
    assert_eq!(d["speech"], "Please hold");
    assert_eq!(d["route"], "queue:main");
    assert!(
        took < Duration::from_millis(300 + 150),
        "answered by the deadline: {took:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_config_is_reported_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugins.toml");
    std::fs::write(&path, "[plugins.crm]\ncomponent = \"x.wasm\"\nevents = [\"ended\", \"exploded\"]\n\n[tenants.acme.plugins.nope]\n").unwrap();
    let err =
        match pbx_host::Host::start(pbx_host::HostOptions::new(&path, dir.path().join("data")))
            .await
        {
            Err(pbx_host::StartError::Config(errors)) => errors,
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a broken file must not start"),
        };
    let text: Vec<String> = err.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|e| e.contains("plugins.toml:3")
            && e.contains("plugins.crm.events")
            && e.contains("exploded")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|e| e.contains("plugins.toml:5")
            && e.contains("tenants.acme.plugins.nope")
            && e.contains("not declared")),
        "{text:#?}"
    );

    std::fs::write(&path, "[plugins.crm]\ncomponent = \"x.wasm\"\nevents = [\"ended\"]\nlimits = { cpu_ms = \"fast\" }\n").unwrap();
    let Err(pbx_host::StartError::Config(errors)) =
        pbx_host::Host::start(pbx_host::HostOptions::new(&path, dir.path().join("data"))).await
    else {
        panic!("a type error must not start");
    };
    assert!(
        errors[0].to_string().contains("plugins.toml:4"),
        "{}",
        errors[0]
    );

    std::fs::write(&path, "[tenants.acme.plugins.crm]\nconfig = { password = \"hunter2\" }\n[plugins.crm]\ncomponent = \"x.wasm\"\n").unwrap();
    let Err(pbx_host::StartError::Config(errors)) =
        pbx_host::Host::start(pbx_host::HostOptions::new(&path, dir.path().join("data"))).await
    else {
        panic!("inline credentials must not start");
    };
    let text = errors[0].to_string();
    assert!(
        text.contains("tenants.acme.plugins.crm.config.password") && !text.contains("hunter2"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_corrupt_components_are_skipped_while_the_others_load_and_the_cache_serves_the_second_start()
 {
    let sf = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let good = pbx_e2e::plugin_wasm("minimal-plugin");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(dir.path().join("truncated.wasm"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(dir.path().join("garbage.wasm"), b"this is not wasm at all").unwrap();
    let toml = format!(
        "[plugins.good]\ncomponent = \"{}\"\nevents = [\"ended\"]\n\
         [plugins.missing]\ncomponent = \"does-not-exist.wasm\"\n\
         [plugins.truncated]\ncomponent = \"truncated.wasm\"\n\
         [plugins.garbage]\ncomponent = \"garbage.wasm\"\n\
         [plugins.future]\ncomponent = \"{}\"\n",
        good.display(),
        pbx_e2e::plugin_wasm("future-wit-plugin").display()
    );
    let env = TestEnv::start_in(dir, &toml, &sf.base_url()).await;
    let statuses = env.host.plugin_statuses();
    let by = |id: &str| statuses.iter().find(|s| s.id == id).unwrap().clone();
    assert!(by("good").loaded);
    assert_eq!(
        by("good").source,
        Some(pbx_host::runtime::LoadSource::Compiled)
    );
    assert!(
        by("missing")
            .error
            .as_ref()
            .unwrap()
            .contains("cannot read component"),
        "{:?}",
        by("missing").error
    );
    assert!(!by("truncated").loaded && !by("garbage").loaded);
    assert!(
        by("garbage")
            .error
            .unwrap()
            .contains("not a WebAssembly component")
    );
    let future = by("future").error.unwrap();
    assert!(
        future.contains("pbx:plugin@0.2.0") && future.contains("0.1.0"),
        "{future}"
    );
    let (status, listed) = env.get("/v1/plugins").await;
    assert_eq!(status, 200);
    assert_eq!(listed["plugins"].as_array().unwrap().len(), 5);

    // Second start on the same data directory: precompiled, nothing compiled.
    let dir = env.stop().await;
    let env = TestEnv::start_in(dir, &toml, &sf.base_url()).await;
    let good = env
        .host
        .plugin_statuses()
        .into_iter()
        .find(|s| s.id == "good")
        .unwrap();
    assert_eq!(
        good.source,
        Some(pbx_host::runtime::LoadSource::Cache),
        "the second start must not compile"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_rejects_bad_input_with_a_named_field_and_masks_secrets() {
    let (_sf, env) = probe_env().await;
    let (status, body) = env.post("/v1/events", &json!({"tenant": "acme", "kind": "ended", "call": {"call_id": "", "direction": "inbound", "caller": "1", "callee": "2", "dial_started_at": 0}})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("call.call_id"),
        "{body}"
    );
    let (status, body) = env
        .post("/v1/events", &json!({"tenant": "acme", "kind": "exploded"}))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = env.post("/v1/events", &json!({"tenant": "nobody", "kind": "ended", "call": {"call_id": "c", "direction": "inbound", "caller": "1", "callee": "2", "dial_started_at": 0}})).await;
    assert_eq!(status, 404);
    env.set_secret("acme", "probe", "probe.token", "s3cr3t-value")
        .await;
    let (status, secrets) = env.get("/v1/tenants/acme/plugins/probe/secrets").await;
    assert_eq!(status, 200);
    assert_eq!(
        secrets,
        json!([{"name": "probe.token", "set": true, "value": "********"}])
    );
    let (_, all) = env.get("/v1/tenants/acme/plugins").await;
    assert!(!all.to_string().contains("s3cr3t-value"));
    let (status, _) = env
        .put(
            "/v1/tenants/acme/plugins/probe/secrets/undeclared",
            &json!({"value": "x"}),
        )
        .await;
    assert_eq!(
        status, 400,
        "a secret the plugin does not declare cannot be set"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_config_is_reloaded_without_a_restart() {
    let (_sf, env) = probe_env().await;
    let path = env.dir.path().join("plugins.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // disable the probe for globex in the file; the host notices on its own
    std::fs::write(
        &path,
        text.replace(
            "[tenants.globex.plugins.probe]",
            "[tenants.globex.plugins.probe]\nenabled = false",
        ),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, view) = env.get("/v1/tenants/globex/plugins").await;
        if view[0]["enabled"] == false {
            break;
        }
        assert!(Instant::now() < deadline, "reload not picked up: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // a broken edit is refused and the running configuration stays
    std::fs::write(&path, "[plugins.probe\n").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, view) = env.get("/v1/tenants/acme/plugins").await;
    assert_eq!(view[0]["enabled"], true, "{view}");
    env.stop().await;
}
