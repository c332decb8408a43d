//! Fair shares of the host's shared pools between tenants (issue 11, findings 1 and 2; SPEC
//! H-3, H-4, H-6): one tenant flooding slow IVR look-ups, or four tenants whose deliveries
//! hang until the wall clock, must not stall a healthy neighbour.
//!
//! The slow work waits on a server that accepts and never answers, on 127.0.0.2 (the only
//! private address the operator allows here), so each slow invocation holds its instance or
//! delivery worker until its wall clock ends, as a hung CRM would make it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pbx_e2e::{TestEnv, ended_call};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const ISOLATION_TOML: &str = r#"
[host]
allow_private_networks = ["127.0.0.2/32"]

[plugins.probe]
component = "@PLUGINS@/probe_plugin.wasm"
events = ["*"]
[plugins.probe.grants]
http = ["{config.url}"]
[plugins.probe.limits]
cpu_ms = 200
wall_ms = 10000
# Small enough that the instance share, not the memory budget, binds first in the IVR flood.
memory_mib = 16

[tenants.acme]
ivr_fallback = { speech = "Acme hold", route = "queue:acme" }
[tenants.acme.plugins.probe]
config = {}

[tenants.globex]
ivr_fallback = { speech = "Globex hold", route = "queue:globex" }
[tenants.globex.plugins.probe]
config = {}

[tenants.slow1.plugins.probe]
config = {}
[tenants.slow2.plugins.probe]
config = {}
[tenants.slow3.plugins.probe]
config = {}
[tenants.slow4.plugins.probe]
config = {}
[tenants.healthy.plugins.probe]
config = {}
"#;

/// The wall-clock limit of the probe's deliveries (`wall_ms` above).
const DELIVERY_WALL: Duration = Duration::from_secs(10);

/// A server that accepts connections, counts them and never answers.
struct HangingServer {
    url: String,
    accepted: Arc<AtomicUsize>,
}

impl HangingServer {
    async fn start() -> HangingServer {
        let listener = TcpListener::bind("127.0.0.2:0")
            .await
            .expect("bind 127.0.0.2");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        HangingServer { url, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn lookup(tenant: &str, call: &str, deadline_ms: u32) -> Value {
    json!({"tenant": tenant, "deadline_ms": deadline_ms, "call": {"call_id": call,
        "direction": "inbound", "caller": "0312345678", "callee": "0501111222",
        "dial_started_at": 0}})
}

/// One IVR look-up through the HTTP API: (decision, how long it took).
async fn ivr(http: &reqwest::Client, api: &str, body: &Value) -> (Value, Duration) {
    let started = Instant::now();
    let r = http
        .post(format!("{api}/v1/ivr"))
        .json(body)
        .send()
        .await
        .expect("ivr request");
    assert_eq!(r.status().as_u16(), 200);
    let decision: Value = r.json().await.expect("ivr decision");
    (decision, started.elapsed())
}

/// Finding 1: acme keeps far more slow look-ups in flight than the host has instances (each
/// waits on a hung server until its deadline). globex's look-ups still get the plugin's real
/// decision, and acme's look-ups beyond its share get acme's fallback at once, saying why,
/// instead of waiting out their deadline.
///
/// Fails on the code before fair shares: acme held every instance and queued for more, so
/// globex's look-ups waited behind acme's and fell back at their deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_ivr_flood_leaves_a_neighbours_lookups_their_real_decision() {
    const FLOODERS: usize = 200;
    const ACME_DEADLINE_MS: u32 = 3000;
    let env = TestEnv::start(ISOLATION_TOML, "http://unused.invalid").await;
    let hanging = HangingServer::start().await;
    env.host
        .set_config(
            "acme",
            "probe",
            json!({"url": hanging.url, "ops": [{"op": "http", "url": format!("{}/slow", hanging.url)}]}),
        )
        .unwrap();
    // Warm up globex (the first instantiation of the component).
    let (warm, _) = ivr(&env.http, &env.api, &lookup("globex", "warm", 5000)).await;
    assert_eq!(warm["source"], "plugin", "{warm}");

    let stop = Arc::new(AtomicBool::new(false));
    let mut flooders = Vec::new();
    for i in 0..FLOODERS {
        let (http, api, stop) = (env.http.clone(), env.api.clone(), stop.clone());
        flooders.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let body = lookup("acme", &format!("flood-{i}"), ACME_DEADLINE_MS);
            while !stop.load(Ordering::SeqCst) {
                let (decision, took) = ivr(&http, &api, &body).await;
                seen.push((decision, took));
                // A refused look-up comes back at once: do not spin on the two cores.
                if took < Duration::from_millis(500) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            seen
        }));
    }
    // The flood is in place when acme's look-ups hold many instances on the hung server.
    let waited = Instant::now();
    while hanging.accepted() < 64 {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "the flood never got going: {} connections",
            hanging.accepted()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut neighbour = Vec::new();
    for n in 0..5 {
        let (decision, took) = ivr(
            &env.http,
            &env.api,
            &lookup("globex", &format!("globex-{n}"), 2000),
        )
        .await;
        neighbour.push((decision, took));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut acme = Vec::new();
    for f in flooders {
        acme.extend(f.await.unwrap());
    }

    for (decision, took) in &neighbour {
        assert_eq!(
            decision["source"], "plugin",
            "globex got {decision} after {took:?} while acme flooded"
        );
        assert_eq!(decision["speech"], "probe", "{decision}");
        // Generous: the look-up itself takes a few ms; its deadline is 2 s.
        assert!(*took < Duration::from_millis(1500), "globex took {took:?}");
    }
    let refused: Vec<&(Value, Duration)> = acme
        .iter()
        .filter(|(d, _)| d["reason"].as_str().is_some_and(|r| r.contains("share")))
        .collect();
    assert!(
        !refused.is_empty(),
        "some of acme's {} look-ups were over its share: {:?}",
        acme.len(),
        acme.iter().take(3).collect::<Vec<_>>()
    );
    for (decision, took) in &refused {
        assert_eq!(decision["source"], "fallback", "{decision}");
        assert_eq!(
            decision["speech"], "Acme hold",
            "acme's own fallback: {decision}"
        );
        // At once, well before the 3 s deadline.
        assert!(
            *took < Duration::from_millis(1000),
            "a look-up over the share came back after {took:?}: {decision}"
        );
    }
    let log = env.log_lines("acme").await;
    assert!(
        log.iter().any(|l| l.contains("share of plugin instances")),
        "acme's log says why its look-ups fell back at once: {} lines, {:#?}",
        log.len(),
        log.iter()
            .filter(|l| !l.contains("2996"))
            .take(20)
            .collect::<Vec<_>>()
    );
    env.stop().await;
}

/// Finding 2: four tenants' deliveries hang until the 10 s wall clock (many calls each, so
/// that together they could hold every delivery worker); a healthy tenant's event is still
/// delivered at once.
///
/// Fails on the code before fair shares: a fixed 8 workers per tenant's plugin let the four
/// hold all 32, and the healthy event waited for one of them to time out (about 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_tenants_do_not_hold_every_delivery_worker() {
    let env = TestEnv::start(ISOLATION_TOML, "http://unused.invalid").await;
    let hanging = HangingServer::start().await;
    let slow = ["slow1", "slow2", "slow3", "slow4"];
    for t in slow {
        env.host
            .set_config(
                t,
                "probe",
                json!({"attack": "slow-http", "url": format!("{}/hang", hanging.url)}),
            )
            .unwrap();
    }
    env.host
        .set_config("healthy", "probe", json!({"attack": "none"}))
        .unwrap();
    for t in slow {
        for call in 0..20 {
            let event = serde_json::from_value(ended_call(
                t,
                &format!("{t}-call-{call}"),
                "inbound",
                "0312345678",
                "0501111222",
                "answered",
                10,
            ))
            .unwrap();
            env.host.ingest(event).unwrap();
        }
    }
    // Saturating: the slow tenants' deliveries hold as many workers as they are given.
    let waited = Instant::now();
    while hanging.accepted() < 24 {
        assert!(
            waited.elapsed() < Duration::from_secs(5),
            "the slow deliveries never got going: {} connections",
            hanging.accepted()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let saturating = hanging.accepted();

    let event = serde_json::from_value(ended_call(
        "healthy",
        "healthy-call",
        "inbound",
        "0312345678",
        "0501111222",
        "answered",
        10,
    ))
    .unwrap();
    let started = Instant::now();
    env.host.ingest(event).unwrap();
    // Delivered: the probe logged that it received the event (completed deliveries need
    // not stay listed).
    let delivered = loop {
        let log = env.log_lines("healthy").await;
        if log
            .iter()
            .any(|l| l.contains("probe: received healthy-call"))
        {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < DELIVERY_WALL * 2,
            "the healthy event was not delivered within {:?}",
            DELIVERY_WALL * 2
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("{saturating} slow deliveries in flight; the healthy event took {delivered:?}");
    // Generous (an unloaded delivery takes a few ms), and far below the slow ones' 10 s.
    assert!(
        delivered < Duration::from_secs(3),
        "the healthy tenant's event was delivered after {delivered:?} \
         ({saturating} slow deliveries in flight)"
    );
    // Still saturating: no slow delivery had reached its wall clock yet.
    assert!(
        started.elapsed() < DELIVERY_WALL - Duration::from_secs(2),
        "the slow deliveries timed out meanwhile: the test proves nothing"
    );
    env.stop().await;
}

/// The host-wide memory budget of live instances: each look-up reserves its plugin's
/// `memory_mib` (16 here) of a 64 MiB budget before it is instantiated. acme's slow look-ups
/// fill what a tenant may take (all but the eighth kept for tenants holding none); its next
/// ones fall back at once, saying so, while globex's look-up still gets its real decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_memory_budget_admits_a_neighbour_and_refuses_the_excess_at_once() {
    let toml = ISOLATION_TOML.replace("[host]\n", "[host]\ninstance_memory_budget_mib = 64\n");
    let env = TestEnv::start(&toml, "http://unused.invalid").await;
    let hanging = HangingServer::start().await;
    env.host
        .set_config(
            "acme",
            "probe",
            json!({"url": hanging.url, "ops": [{"op": "http", "url": format!("{}/slow", hanging.url)}]}),
        )
        .unwrap();
    let mut slow = Vec::new();
    for i in 0..3 {
        let (http, api) = (env.http.clone(), env.api.clone());
        slow.push(tokio::spawn(async move {
            ivr(&http, &api, &lookup("acme", &format!("slow-{i}"), 3000)).await
        }));
    }
    let waited = Instant::now();
    while hanging.accepted() < 3 {
        assert!(
            waited.elapsed() < Duration::from_secs(2),
            "acme's look-ups never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // 48 of 64 MiB held by acme: a fourth would leave less than the 8 MiB kept back.
    let (refused, took) = ivr(&env.http, &env.api, &lookup("acme", "excess", 3000)).await;
    assert_eq!(refused["source"], "fallback", "{refused}");
    assert_eq!(refused["speech"], "Acme hold", "{refused}");
    let reason = refused["reason"].as_str().unwrap_or("");
    assert!(reason.contains("memory budget"), "{reason}");
    assert!(
        took < Duration::from_millis(1000),
        "at once, not at the deadline: {took:?}"
    );
    let (neighbour, took) = ivr(&env.http, &env.api, &lookup("globex", "g", 2000)).await;
    assert_eq!(neighbour["source"], "plugin", "{neighbour} after {took:?}");
    for s in slow {
        let (d, _) = s.await.unwrap();
        // They held their memory until they ended: at their deadline, or (on a loaded
        // machine) when their own request to the silent server timed out first.
        let timed_out_inside =
            d["source"] == "plugin" && d["variables"][0][1].as_str() == Some("err:timeout");
        assert!(
            timed_out_inside
                || d["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("deadline") || r.contains("wall-clock")),
            "acme's first three ran until their deadline or their request's timeout: {d}"
        );
    }
    env.stop().await;
}
