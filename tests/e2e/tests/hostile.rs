//! The hostile-plugin suite (SPEC H-3, H-4): the probe plugin misbehaves in every way we know
//! of, and each test asserts the specific containment (the error kind, the limit named in the
//! tenant's log, what never reached the network) and that the host and another tenant carry on.
//!
//! Network layout: the operator allows only `127.0.0.2/32` (`[host] allow_private_networks`),
//! so the test servers that a plugin may reach listen on 127.0.0.2, and everything on
//! 127.0.0.1 / `localhost` / `[::1]` is an internal address the operator did NOT allow. Every
//! test server counts the connections it accepted, so "denied before any connection" is
//! asserted, not assumed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pbx_e2e::{TestEnv, ended_call};
use pbx_host::runtime::{InvocationError, InvocationReport};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const HOSTILE_TOML: &str = r#"
[host]
allow_private_networks = ["127.0.0.2/32"]

[plugins.probe]
component = "@PLUGINS@/probe_plugin.wasm"
events = ["*"]
[plugins.probe.grants]
http = ["{config.url}", "{config.u1}", "{config.u2}", "{config.u3}", "{config.u4}",
        "http://10.1.2.3", "http://192.168.1.1", "http://169.254.169.254", "http://[::1]"]
secrets = ["probe.token"]
state = true
contacts = "read-write"
[plugins.probe.limits]
cpu_ms = 200
memory_mib = 32
wall_ms = 2000
http_request_bytes = 1048576
http_response_bytes = 65536
log_lines = 20
return_bytes = 16384

[tenants.acme]
ivr_fallback = { speech = "Please hold", route = "queue:main" }
[tenants.acme.plugins.probe]
config = {}

[tenants.globex]
ivr_fallback = { speech = "Globex hold", route = "queue:globex" }
[tenants.globex.plugins.probe]
config = {}

[tenants.initech]
[tenants.initech.plugins.probe]
config = {}
"#;

const CPU_LIMIT: Duration = Duration::from_millis(200);
const WALL_LIMIT: Duration = Duration::from_millis(2000);

async fn env() -> TestEnv {
    // No stand-in: these tests talk to their own sockets.
    TestEnv::start(HOSTILE_TOML, "http://unused.invalid").await
}

fn event(tenant: &str, call: &str) -> pbx_host::events::CallEvent {
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

/// Configure `tenant`'s probe and run one event through it now.
async fn attack(env: &TestEnv, tenant: &str, config: Value) -> InvocationReport {
    env.host.set_config(tenant, "probe", config).unwrap();
    run(env, tenant).await
}

async fn run(env: &TestEnv, tenant: &str) -> InvocationReport {
    env.host
        .invoke_event_now(tenant, "probe", event(tenant, "hostile-call"))
        .await
        .unwrap()
}

fn err(report: &InvocationReport) -> &InvocationError {
    report
        .outcome
        .as_ref()
        .err()
        .unwrap_or_else(|| panic!("the invocation should have failed: {report:?}"))
}

/// The IVR door: set the config, ask for a decision, return it (source, reason, variables).
async fn ivr(env: &TestEnv, tenant: &str, config: Value) -> Value {
    env.host.set_config(tenant, "probe", config).unwrap();
    let (status, decision) = env
        .post("/v1/ivr", &json!({"tenant": tenant, "deadline_ms": 5000, "call": {"call_id": "ivr-1", "direction": "inbound", "caller": "0312345678", "callee": "0501111222", "dial_started_at": 0}}))
        .await;
    assert_eq!(status, 200, "{decision}");
    decision
}

/// The op results of a plugin decision, in order.
fn results(decision: &Value) -> Vec<String> {
    assert_eq!(decision["source"], "plugin", "{decision}");
    decision["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv[1].as_str().unwrap_or("").to_string())
        .collect()
}

/// The tenant's log lines of one invocation, oldest first, as "level: message".
async fn invocation_log(env: &TestEnv, tenant: &str, invocation: &str) -> Vec<String> {
    let (status, body) = env
        .get(&format!("/v1/tenants/{tenant}/log?limit=10000"))
        .await;
    assert_eq!(status, 200);
    let mut lines: Vec<String> = body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["invocation"] == invocation)
        .map(|e| {
            format!(
                "{}: {}",
                e["level"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    lines.reverse();
    lines
}

/// A tenant's usage counter summed over days and plugins.
async fn usage(env: &TestEnv, tenant: &str, counter: &str) -> i64 {
    let (_, usage) = env.get(&format!("/v1/tenants/{tenant}/usage")).await;
    usage
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["counter"] == counter)
        .map(|u| u["value"].as_i64().unwrap())
        .sum()
}

/// After an attack: the neighbour tenant's plain invocation succeeds, and so does the
/// attacker's own next plain one (the host is not wedged).
async fn host_and_neighbour_carry_on(env: &TestEnv, attacker: &str, neighbour: &str) {
    let good = attack(env, neighbour, json!({"attack": "none"})).await;
    assert!(good.outcome.is_ok(), "neighbour: {:?}", good.outcome);
    let again = attack(env, attacker, json!({"attack": "none"})).await;
    assert!(
        again.outcome.is_ok(),
        "attacker's next call: {:?}",
        again.outcome
    );
}

// ---------------------------------------------------------------------------------------------
// Test servers

/// An HTTP server that counts connections and answers every request with `body_len` bytes
/// (with a Content-Length, or, if `chunked`, as a body delimited by closing the connection).
struct CountingServer {
    url: String,
    accepted: Arc<AtomicUsize>,
}

impl CountingServer {
    async fn start(bind: &str, body_len: usize, with_length: bool) -> Option<CountingServer> {
        let listener = TcpListener::bind(bind).await.ok()?;
        let addr = listener.local_addr().ok()?;
        let url = format!("http://{addr}");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = if with_length {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\nConnection: close\r\n\r\n"
                        )
                    } else {
                        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string()
                    };
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&vec![b'r'; body_len]).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Some(CountingServer { url, accepted })
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A server that accepts and never answers; records when each connection was closed by the
/// client (the host cancelling its request).
struct SilentServer {
    url: String,
    accepted: Arc<AtomicUsize>,
    closed_at: Arc<Mutex<Vec<Instant>>>,
}

impl SilentServer {
    async fn start(bind: &str) -> SilentServer {
        let listener = TcpListener::bind(bind).await.expect("bind silent server");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed_at = Arc::new(Mutex::new(Vec::new()));
        let (count, closed) = (accepted.clone(), closed_at.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let closed = closed.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    loop {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                    closed.lock().unwrap().push(Instant::now());
                });
            }
        });
        SilentServer {
            url,
            accepted,
            closed_at,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_is_stopped_at_its_cpu_limit() {
    let env = env().await;
    let r = attack(&env, "acme", json!({"attack": "loop"})).await;
    assert_eq!(err(&r).code(), "cpu-limit", "{}", err(&r));
    // Measured CPU: at least the limit (it was not stopped early) and at most the limit plus
    // a few epoch ticks (5 ms each) and one poll's overshoot; 150 ms is generous.
    assert!(
        r.cpu >= CPU_LIMIT && r.cpu < CPU_LIMIT + Duration::from_millis(150),
        "stopped at its CPU limit: {:?}",
        r.cpu
    );
    // Wall time: the limit plus scheduling on a shared 2-core machine; far below wall_ms.
    assert!(
        r.elapsed < CPU_LIMIT + Duration::from_millis(1000),
        "stopped within limit + margin: {:?}",
        r.elapsed
    );
    let log = invocation_log(&env, "acme", &r.invocation_id).await;
    assert!(
        log.iter()
            .any(|l| l == "error: invocation failed: CPU limit of 200 ms exceeded"),
        "{log:#?}"
    );
    host_and_neighbour_carry_on(&env, "acme", "globex").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_hits_the_memory_limit() {
    let env = env().await;
    let r = attack(&env, "acme", json!({"attack": "alloc"})).await;
    let e = err(&r);
    assert_eq!(e.code(), "memory-limit", "{e}");
    match e {
        InvocationError::MemoryLimit { limit, asked } => {
            assert_eq!(*limit, 32 << 20);
            assert!(*asked > 32 << 20, "asked {asked}");
        }
        other => panic!("{other:?}"),
    }
    let log = invocation_log(&env, "acme", &r.invocation_id).await;
    assert!(
        log.iter()
            .any(|l| l.starts_with("error: invocation failed: memory limit of 32 MiB exceeded")),
        "{log:#?}"
    );
    host_and_neighbour_carry_on(&env, "acme", "globex").await;
    env.stop().await;
}

/// Two ways to recurse without bound. Without arrays in its frames, the wasm call stack
/// runs out: a "call stack exhausted" trap. With arrays, Rust's data stack in linear memory
/// (1 MiB, below the plugin's statics) runs out first and the stack pointer wraps to an
/// out-of-bounds address; the host cannot tell that from any other wild access, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_traps_with_call_stack_exhausted() {
    let env = env().await;
    let r = attack(&env, "acme", json!({"attack": "native-recursion"})).await;
    let e = err(&r);
    assert_eq!(e.code(), "trap", "{e}");
    assert!(e.to_string().contains("call stack exhausted"), "{e}");
    assert!(r.elapsed < WALL_LIMIT, "{:?}", r.elapsed);
    let log = invocation_log(&env, "acme", &r.invocation_id).await;
    assert!(
        log.iter().any(|l| l.contains("call stack exhausted")),
        "{log:#?}"
    );
    let r = attack(&env, "acme", json!({"attack": "recursion"})).await;
    let e = err(&r);
    assert_eq!(e.code(), "trap", "{e}");
    assert!(e.to_string().contains("out of bounds memory access"), "{e}");
    host_and_neighbour_carry_on(&env, "acme", "globex").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_and_trap_fail_only_their_invocation_as_traps() {
    let env = env().await;
    for name in ["panic", "trap"] {
        let r = attack(&env, "acme", json!({"attack": name})).await;
        let e = err(&r);
        assert_eq!(e.code(), "trap", "{name}: {e}");
        assert!(
            e.to_string().contains("unreachable executed"),
            "{name}: {e}"
        );
        let log = invocation_log(&env, "acme", &r.invocation_id).await;
        assert!(
            log.iter()
                .any(|l| l.starts_with("error: invocation failed: the plugin trapped")),
            "{name}: {log:#?}"
        );
        host_and_neighbour_carry_on(&env, "acme", "globex").await;
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_return_value_is_return_too_large() {
    let env = env().await;
    let r = attack(
        &env,
        "acme",
        json!({"attack": "huge-return", "size": 100_000}),
    )
    .await;
    let e = err(&r);
    assert_eq!(e.code(), "return-too-large", "{e}");
    assert!(
        matches!(
            e,
            InvocationError::ReturnTooLarge {
                size: 100_000,
                limit: 16384
            }
        ),
        "{e:?}"
    );
    // The message itself is never stored: the log says only how big it was.
    let log = invocation_log(&env, "acme", &r.invocation_id).await;
    assert!(
        log.iter().any(|l| l
            == "error: invocation failed: the plugin returned 100000 bytes, over the limit of 16384"),
        "{log:#?}"
    );
    assert!(log.iter().all(|l| l.len() < 1000), "{log:#?}");
    host_and_neighbour_carry_on(&env, "acme", "globex").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_flood_stores_only_log_lines_and_one_summary() {
    let env = env().await;
    let r = attack(&env, "acme", json!({"attack": "log-flood", "count": 500})).await;
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    // 501 writes (the probe's "received" line and 500 flood lines), 20 stored.
    assert_eq!(r.meter.log_lines_dropped, 481);
    let log = invocation_log(&env, "acme", &r.invocation_id).await;
    assert_eq!(log.len(), 21, "20 lines and the summary: {log:#?}");
    assert_eq!(
        log.iter()
            .filter(|l| l.contains("probe: flood line"))
            .count(),
        19
    );
    assert_eq!(
        log.last().unwrap(),
        "warn: 481 more log lines dropped (limit 20 per invocation)"
    );
    host_and_neighbour_carry_on(&env, "acme", "globex").await;
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// HTTP

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_http_body_is_refused_before_any_byte_leaves() {
    let env = env().await;
    let server = CountingServer::start("127.0.0.2:0", 2, true)
        .await
        .expect("bind 127.0.0.2");
    let url = format!("{}/upload", server.url);
    let r = attack(
        &env,
        "acme",
        json!({"attack": "huge-http-body", "url": url, "size": 2 << 20}),
    )
    .await;
    match err(&r) {
        InvocationError::Plugin { message, .. } => {
            assert_eq!(message, "err:too-large:1048576")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.accepted(), 0, "not even a connection was opened");
    assert_eq!((r.meter.http_requests, r.meter.http_bytes_out), (0, 0));
    let log = invocation_log(&env, "acme", &r.invocation_id).await;
    assert!(
        log.iter()
            .any(|l| l == "warn: http: request body of 2097152 bytes is over the limit of 1048576"),
        "{log:#?}"
    );
    // The same URL with a small body goes through: the server was reachable all along.
    let ok = attack(
        &env,
        "acme",
        json!({"attack": "huge-http-body", "url": url, "size": 10}),
    )
    .await;
    assert!(ok.outcome.is_ok(), "{:?}", ok.outcome);
    assert_eq!(server.accepted(), 1);
    host_and_neighbour_carry_on(&env, "acme", "globex").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_response_is_too_large_with_or_without_a_content_length() {
    let env = env().await;
    let declared = CountingServer::start("127.0.0.2:0", 1 << 20, true)
        .await
        .expect("bind 127.0.0.2");
    let streamed = CountingServer::start("127.0.0.2:0", 1 << 20, false)
        .await
        .unwrap();
    let small = CountingServer::start("127.0.0.2:0", 65536, false)
        .await
        .unwrap();
    let d = ivr(
        &env,
        "acme",
        json!({"u1": declared.url, "u2": streamed.url, "u3": small.url, "ops": [
            {"op": "http", "url": format!("{}/big", declared.url)},
            {"op": "http", "url": format!("{}/big", streamed.url)},
            {"op": "http", "url": format!("{}/exactly-the-limit", small.url)},
        ]}),
    )
    .await;
    let r = results(&d);
    assert_eq!(r[0], "err:too-large:65536", "Content-Length over the limit");
    assert_eq!(r[1], "err:too-large:65536", "streamed body over the limit");
    assert!(
        r[2].starts_with("ok:200:rrrr"),
        "at the limit is fine: {}",
        &r[2][..20]
    );
    assert_eq!(
        (declared.accepted(), streamed.accepted(), small.accepted()),
        (1, 1, 1)
    );
    let log = env.log_lines("acme").await;
    assert_eq!(
        log.iter()
            .filter(|l| l.contains("http: response from 127.0.0.2 is over the limit of 65536 bytes"))
            .count(),
        2,
        "{log:#?}"
    );
    // Only what the plugin was given counts as bytes in.
    assert_eq!(usage(&env, "acme", "http.bytes_in").await, 65536);
    host_and_neighbour_carry_on(&env, "acme", "globex").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_hosts_paths_and_ports_are_denied_without_a_connection() {
    let env = env().await;
    let server = CountingServer::start("127.0.0.2:0", 2, true).await.unwrap();
    let port = server.url.rsplit(':').next().unwrap().to_string();
    let d = ivr(
        &env,
        "acme",
        json!({"url": format!("{}/api", server.url), "ops": [
            {"op": "http", "url": "https://evil.example.com/steal"},
            {"op": "http", "url": format!("{}/other", server.url)},
            {"op": "http", "url": format!("{}/apix", server.url)},
            {"op": "http", "url": format!("https://127.0.0.2:{port}/api")},
            {"op": "http", "url": format!("http://127.0.0.2:{}/api", port.parse::<u16>().unwrap() ^ 1)},
            {"op": "http", "url": format!("{}/api/x", server.url)},
        ]}),
    )
    .await;
    let r = results(&d);
    for (i, what) in [
        "undeclared host",
        "path outside the grant",
        "path prefix lookalike",
        "other scheme",
        "other port",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            r[i].starts_with("err:denied:") && r[i].contains("is not granted to plugin 'probe'"),
            "{what}: {}",
            r[i]
        );
    }
    assert_eq!(r[5], "ok:200:rr", "the granted path works");
    assert_eq!(server.accepted(), 1, "only the granted request connected");
    let log = env.log_lines("acme").await;
    assert_eq!(
        log.iter().filter(|l| l.contains("denied: http:")).count(),
        5,
        "{log:#?}"
    );
    assert_eq!(usage(&env, "acme", "http.requests").await, 1);
    assert_eq!(usage(&env, "acme", "denials").await, 5);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_addresses_are_denied_even_when_granted_and_nothing_connects() {
    let env = env().await;
    // Servers on the loopback addresses the operator did not allow.
    let v4 = CountingServer::start("127.0.0.1:0", 2, true).await.unwrap();
    let v6 = CountingServer::start("[::1]:0", 2, true).await;
    let port = v4.url.rsplit(':').next().unwrap().to_string();
    let v6_url = v6
        .as_ref()
        .map(|s| s.url.clone())
        .unwrap_or_else(|| format!("http://[::1]:{port}"));
    let started = Instant::now();
    let d = ivr(
        &env,
        "acme",
        json!({
            "u1": v4.url,
            "u2": format!("http://localhost:{port}"),
            "u3": v6_url,
            "ops": [
                {"op": "http", "url": format!("{}/", v4.url)},
                {"op": "http", "url": format!("http://localhost:{port}/")},
                {"op": "http", "url": format!("{v6_url}/")},
                {"op": "http", "url": "http://[::1]/"},
                {"op": "http", "url": "http://10.1.2.3/"},
                {"op": "http", "url": "http://192.168.1.1/admin"},
                {"op": "http", "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials/"},
            ]
        }),
    )
    .await;
    let took = started.elapsed();
    let r = results(&d);
    let expect = [
        ("127.0.0.1", "loopback"),
        ("localhost (granted by name)", "loopback"),
        ("[::1] with a port", "loopback"),
        ("[::1] on the default port", "loopback"),
        ("10.x", "private"),
        ("192.168.x", "private"),
        ("cloud metadata", "link-local (cloud metadata)"),
    ];
    for (i, (what, kind)) in expect.iter().enumerate() {
        assert!(
            r[i].starts_with("err:denied:")
                && r[i].contains(&format!("is a {kind} address"))
                && r[i].contains("the operator has not allowed it"),
            "{what}: {}",
            r[i]
        );
    }
    assert_eq!(v4.accepted(), 0, "no connection to 127.0.0.1");
    if let Some(v6) = &v6 {
        assert_eq!(v6.accepted(), 0, "no connection to [::1]");
    }
    // No connection was even attempted: 10.1.2.3 and 192.168.1.1 would have taken up to the
    // client's connect timeout (10 s) to fail.
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(usage(&env, "acme", "http.requests").await, 0);
    assert_eq!(usage(&env, "acme", "denials").await, 7);
    host_and_neighbour_carry_on(&env, "acme", "globex").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_cut_at_the_wall_clock_limit() {
    let env = env().await;
    let silent = SilentServer::start("127.0.0.2:0").await;
    let before = Instant::now();
    let r = attack(
        &env,
        "acme",
        json!({"attack": "slow-http", "url": format!("{}/services/data/", silent.url)}),
    )
    .await;
    let e = err(&r);
    // The host's HTTP await is bounded by what is left of the wall clock; whichever of the
    // two deadlines the runtime sees first, the invocation ends at wall_ms and says why.
    match e {
        InvocationError::WallClock { limit } => assert_eq!(*limit, WALL_LIMIT),
        InvocationError::Plugin { message, .. } => assert_eq!(message, "err:timeout"),
        other => panic!("{other:?}"),
    }
    assert!(
        r.elapsed >= WALL_LIMIT - Duration::from_millis(50)
            && r.elapsed < WALL_LIMIT + Duration::from_millis(500),
        "ends at the wall clock: {:?}",
        r.elapsed
    );
    assert!(
        r.cpu < CPU_LIMIT,
        "waiting costs no CPU budget: {:?}",
        r.cpu
    );
    assert_eq!(silent.accepted.load(Ordering::SeqCst), 1);
    // The request was cancelled: the host closed its connection by the deadline (plus a
    // margin for the close to reach the server's task).
    let deadline = before + WALL_LIMIT + Duration::from_millis(1000);
    loop {
        if let Some(at) = silent.closed_at.lock().unwrap().first() {
            assert!(*at < deadline, "closed late");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the host never closed the connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = invocation_log(&env, "acme", &r.invocation_id).await;
    assert!(
        log.iter().any(|l| l.contains("did not answer within")
            || l.contains("wall-clock limit of 2000 ms exceeded")),
        "{log:#?}"
    );
    host_and_neighbour_carry_on(&env, "acme", "globex").await;
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Secrets, state, contacts, and the OS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_secret_state_and_contacts_are_out_of_reach() {
    let env = env().await;
    env.set_secret("globex", "probe", "probe.token", "globex-token-value")
        .await;
    let g = ivr(
        &env,
        "globex",
        json!({"ops": [
            {"op": "state-set", "key": "session", "value": "globex-session"},
            {"op": "contacts-upsert", "entries": [{"external_id": "Contact/G1", "name": "Globex Person",
                "phones": [{"label": "Phone", "number": "+81399990000"}]}]},
        ]}),
    )
    .await;
    assert_eq!(results(&g), ["ok", "ok:1"]);
    let d = ivr(
        &env,
        "acme",
        json!({"ops": [
            {"op": "secret", "name": "probe.token"},
            {"op": "secret", "name": "salesforce.password"},
            {"op": "secret", "name": "../globex/probe/probe.token"},
            {"op": "secret", "name": "globex/probe/probe.token"},
            {"op": "state-get", "key": "session"},
            {"op": "state-get", "key": "../globex/probe/session"},
            {"op": "state-get", "key": "/globex/probe/session"},
            {"op": "contacts-get", "id": "Contact/G1"},
            {"op": "contacts-lookup", "number": "+81399990000"},
            {"op": "contacts-delete", "id": "Contact/G1"},
        ]}),
    )
    .await;
    let r = results(&d);
    assert_eq!(r[0], "err:not-set:probe.token", "acme's own is unset");
    assert!(r[1].starts_with("err:denied:"), "undeclared: {}", r[1]);
    assert!(r[2].starts_with("err:denied:"), "path: {}", r[2]);
    assert!(r[3].starts_with("err:denied:"), "path: {}", r[3]);
    assert_eq!(r[4], "none", "globex's state is invisible");
    assert!(r[5].starts_with("err:denied:"), "{}", r[5]);
    assert!(r[6].starts_with("err:denied:"), "{}", r[6]);
    assert!(r[7].starts_with("err:not-found:"), "{}", r[7]);
    assert_eq!(r[8], "ok:0:");
    for v in &r {
        assert!(
            !v.contains("globex-token-value") && !v.contains("globex-session"),
            "{v}"
        );
    }
    // globex's data is intact after acme's attempts (the delete did not reach it).
    let g = ivr(
        &env,
        "globex",
        json!({"ops": [
            {"op": "secret", "name": "probe.token"},
            {"op": "state-get", "key": "session"},
            {"op": "contacts-lookup", "number": "+81399990000"},
        ]}),
    )
    .await;
    assert_eq!(
        results(&g),
        [
            "ok:globex-token-value",
            "ok:globex-session",
            "ok:1:Contact/G1"
        ]
    );
    assert!(
        !env.log_lines("globex")
            .await
            .iter()
            .any(|l| l.contains("denied")),
        "acme's refusals are in acme's log only"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_environment_and_sockets_are_not_there() {
    let env = env().await;
    let server = CountingServer::start("127.0.0.2:0", 2, true).await.unwrap();
    let addr = server.url.trim_start_matches("http://").to_string();
    let d = ivr(
        &env,
        "acme",
        json!({"ops": [
            {"op": "fs-read", "path": "/etc/passwd"},
            {"op": "fs-read", "path": "plugins.toml"},
            {"op": "fs-read", "path": "data/host.sqlite3"},
            {"op": "fs-list", "path": "/"},
            {"op": "fs-list", "path": "."},
            {"op": "env"},
            {"op": "tcp-connect", "addr": addr},
            {"op": "tcp-connect", "addr": "1.1.1.1:80"},
            {"op": "clock"},
        ]}),
    )
    .await;
    let r = results(&d);
    for (i, what) in [
        "/etc/passwd",
        "relative plugins.toml",
        "the host's database",
        "list /",
        "list .",
    ]
    .iter()
    .enumerate()
    {
        assert!(r[i].starts_with("err:io:"), "{what}: {}", r[i]);
    }
    assert_eq!(r[5], "ok:0:", "no environment variables");
    assert!(
        r[6].starts_with("err:io:"),
        "tcp to a reachable server: {}",
        r[6]
    );
    assert!(r[7].starts_with("err:io:"), "tcp out: {}", r[7]);
    assert!(r[8].starts_with("ok:1"), "the clock answers: {}", r[8]);
    assert_eq!(server.accepted(), 0, "the socket attempt reached nothing");
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Garbage and incompatible components

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_ivr_decisions_and_errors_get_the_fallback() {
    let env = env().await;
    let d = ivr(&env, "acme", json!({"pad_bytes": 20000, "ops": []})).await;
    assert_eq!(d["source"], "fallback", "{d}");
    assert_eq!(d["speech"], "Please hold");
    assert_eq!(d["variables"], json!([]));
    let reason = d["reason"].as_str().unwrap();
    assert!(
        // Measured as the JSON the PBX would get: ["probe",null,[["pad","ppp…"]]].
        reason == "the plugin returned 20027 bytes, over the limit of 16384",
        "{reason}"
    );
    let d = ivr(&env, "acme", json!({"ivr_error_size": 20000})).await;
    assert_eq!(d["source"], "fallback", "{d}");
    assert_eq!(
        d["reason"],
        "the plugin returned 20000 bytes, over the limit of 16384"
    );
    // Just under the limit still answers from the plugin.
    let d = ivr(&env, "acme", json!({"pad_bytes": 16000, "ops": []})).await;
    assert_eq!(d["source"], "plugin", "{}", d["reason"]);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_built_against_an_unknown_wit_version_is_refused_at_load() {
    let future = pbx_e2e::plugin_wasm("future-wit-plugin");
    let toml = format!(
        "{HOSTILE_TOML}\n[plugins.future]\ncomponent = \"{}\"\nevents = [\"*\"]\n\
         [tenants.acme.plugins.future]\n",
        future.display()
    );
    let env = TestEnv::start(&toml, "http://unused.invalid").await;
    let statuses = env.host.plugin_statuses();
    let status = statuses.iter().find(|s| s.id == "future").unwrap();
    assert!(!status.loaded);
    let error = status.error.as_deref().unwrap();
    assert!(
        error.contains("built against pbx:plugin@0.2.0")
            && error.contains("this host serves pbx:plugin@0.1.0"),
        "names both versions: {error}"
    );
    // The event is queued for nothing that cannot run, and the probe still runs.
    assert!(statuses.iter().find(|s| s.id == "probe").unwrap().loaded);
    let r = env
        .host
        .invoke_event_now("acme", "future", event("acme", "f"))
        .await;
    assert!(r.is_err(), "an unloaded plugin cannot be invoked");
    host_and_neighbour_carry_on(&env, "acme", "globex").await;
    env.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Neighbours

/// While acme and initech run CPU-loop and memory-bomb attacks four at a time, globex's plain
/// invocations keep completing quickly.
///
/// The bound: a plain probe invocation costs a few ms of CPU alone. 250 ms at p95 is generous
/// for a shared 2-core machine running other builds, yet it fails if the host ever serialised
/// globex behind an attack: four attacks in flight each hold a thread for up to their 200 ms
/// CPU limit, so globex waiting for even one would be seen at every percentile, and waiting
/// for the batch (≥ 400 ms on two cores) would break the bound outright. The host keeps the
/// bound by yielding a running plugin at every 5 ms epoch tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_neighbours_latency_holds_while_other_tenants_attack() {
    let env = env().await;
    env.host
        .set_config("acme", "probe", json!({"attack": "loop"}))
        .unwrap();
    env.host
        .set_config("initech", "probe", json!({"attack": "alloc"}))
        .unwrap();
    env.host
        .set_config("globex", "probe", json!({"attack": "none"}))
        .unwrap();
    // Warm up (first instantiation of the pool slots).
    assert!(run(&env, "globex").await.outcome.is_ok());

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacks = Arc::new(AtomicUsize::new(0));
    let mut attackers = Vec::new();
    for i in 0..4 {
        let host = env.host.clone();
        let stop = stop.clone();
        let attacks = attacks.clone();
        let tenant = if i % 2 == 0 { "acme" } else { "initech" };
        attackers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let r = host
                    .invoke_event_now(tenant, "probe", event(tenant, "attack"))
                    .await
                    .unwrap();
                let code = r.outcome.as_ref().err().map(|e| e.code());
                let want = if tenant == "acme" {
                    "cpu-limit"
                } else {
                    "memory-limit"
                };
                assert_eq!(code, Some(want), "{tenant}");
                attacks.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut latencies = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        let r = run(&env, "globex").await;
        latencies.push(started.elapsed());
        assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    }
    stop.store(true, Ordering::SeqCst);
    for a in attackers {
        a.await.unwrap();
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p95 = latencies[(latencies.len() * 95).div_ceil(100) - 1];
    let n = attacks.load(Ordering::SeqCst);
    eprintln!("neighbour latency under attack: p50 {p50:?}, p95 {p95:?}, {n} attacks ran");
    assert!(n >= 4, "the attacks really ran alongside: {n}");
    assert!(
        p95 < Duration::from_millis(250),
        "globex's p95 {p95:?} (p50 {p50:?}, all {latencies:?})"
    );
    env.stop().await;
}
