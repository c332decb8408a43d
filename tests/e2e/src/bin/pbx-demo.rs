//! The demo: the host with its plugins, on its embedded defaults, against the local Salesforce
//! stand-in. Plays calls through the host's HTTP API, exactly as a PBX would, and prints what
//! landed in "Salesforce". Needs no account and no server: everything runs on loopback.
//!
//! Run it with `cargo xtask demo` (which builds the plugin components first).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pbx_host::{Host, HostOptions};
use serde_json::{Value, json};
use sf_standin::{OrgSpec, StandIn};

const STANDIN_ADDR: &str = "127.0.0.1:18089";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()?;
    let config = root.join("plugins.toml");

    // 1. "Salesforce": the stand-in, with the tenants' orgs and their data.
    let standin = StandIn::start_on(STANDIN_ADDR.parse()?)
        .await
        .with_context(|| {
            format!("cannot start the Salesforce stand-in on {STANDIN_ADDR} (is the port in use?)")
        })?;
    let acme = standin.add_org(OrgSpec {
        username: "admin@acme.example".into(),
        password: "demo-password".into(),
        security_token: "DEMOTOKEN123".into(),
        client_id: "ACME_CONNECTED_APP".into(),
        client_secret: "demo-client-secret".into(),
        ..OrgSpec::default()
    });
    let account = acme.insert(
        "Account",
        json!({"Name": "株式会社山田商事", "Phone": "03-1234-0000"}),
    );
    acme.insert("Contact", json!({"FirstName": "太郎", "LastName": "山田", "Phone": "03-1234-5678", "AccountId": account}));
    acme.insert(
        "Contact",
        json!({"FirstName": "花子", "LastName": "佐藤", "MobilePhone": "090 8765 4321"}),
    );
    acme.insert(
        "Lead",
        json!({"LastName": "鈴木", "Company": "鈴木工業", "Phone": "(06) 6123 4567"}),
    );

    // 2. The host, from the shipped plugins.toml, in a fresh data directory.
    let data = tempfile::tempdir()?;
    let started = Instant::now();
    let host = Host::start(HostOptions::new(&config, data.path()))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "pbx-host ready in {} ms ({:?} allocator)",
        started.elapsed().as_millis(),
        host.allocator()
    );
    for s in host.plugin_statuses() {
        match &s.error {
            None => println!(
                "  plugin {:<16} loaded ({:?}), exports {}",
                s.id,
                s.source.unwrap_or(pbx_host::runtime::LoadSource::Compiled),
                s.exports.join(", ")
            ),
            Some(e) => println!("  plugin {:<16} SKIPPED: {e}", s.id),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    tokio::spawn(pbx_host::api::serve(
        host.clone(),
        listener,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();

    // 3. The tenant admin enters the Salesforce credentials (write-only) and verifies them.
    for (name, value) in [
        ("salesforce.password", "demo-password"),
        ("salesforce.security_token", "DEMOTOKEN123"),
        ("salesforce.client_secret", "demo-client-secret"),
    ] {
        let r = http
            .put(format!(
                "{api}/v1/tenants/acme/plugins/history-logger/secrets/{name}"
            ))
            .json(&json!({"value": value}))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("setting {name}: {}", r.text().await?);
        }
    }
    let verify: Value = http
        .post(format!(
            "{api}/v1/tenants/acme/plugins/history-logger/verify"
        ))
        .send()
        .await?
        .json()
        .await?;
    println!(
        "\nverify settings (acme / history-logger): {}",
        if verify["ok"] == true {
            "OK"
        } else {
            "PROBLEMS"
        }
    );
    for item in verify["items"].as_array().into_iter().flatten() {
        println!(
            "  [{}] {}: {}",
            if item["ok"] == true { "ok" } else { "!!" },
            item["name"].as_str().unwrap_or(""),
            item["message"].as_str().unwrap_or("")
        );
    }

    // 4. The PBX posts calls.
    acme.reset_counters();
    let now = chrono::Utc::now().timestamp_millis();
    let calls = [
        (
            "demo-1001",
            "inbound",
            "+81 3 1234 5678",
            "0501111222",
            "answered",
            185,
        ),
        (
            "demo-1002",
            "outbound",
            "201",
            "090-8765-4321",
            "answered",
            42,
        ),
        (
            "demo-1003",
            "inbound",
            "0661234567",
            "0501111222",
            "missed",
            0,
        ),
        ("demo-1004", "outbound", "201", "0312340000", "missed", 0),
        (
            "demo-1005",
            "inbound",
            "0459999999",
            "0501111222",
            "answered",
            30,
        ),
        ("demo-1006", "internal", "201", "202", "answered", 12),
    ];
    println!("\nposting {} call events to {api}/v1/events", calls.len());
    for (i, (id, dir, from, to, outcome, secs)) in calls.iter().enumerate() {
        let start = now - 3_600_000 + i as i64 * 60_000;
        let event = json!({
            "tenant": "acme", "event_id": format!("{id}-ended"), "kind": "ended",
            "call": {
                "call_id": id, "direction": dir, "caller": from, "callee": to,
                "agent": {"extension": "201", "user_name": "Agent 201"},
                "dial_started_at": start,
                "answered_at": if *outcome == "answered" { json!(start + 4000) } else { Value::Null },
                "ended_at": start + 4000 + secs * 1000, "duration_seconds": secs, "outcome": outcome,
            }
        });
        let r = http
            .post(format!("{api}/v1/events"))
            .json(&event)
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        println!(
            "  {id} {dir:<8} {from:>16} -> {to:<14} {outcome:<9} {status} queued for {}",
            body["queued_for"]
        );
    }
    if !host.wait_idle(Duration::from_secs(60)).await {
        println!("(some deliveries are still pending)");
    }

    // 5. What landed in "Salesforce".
    let tasks = acme.records("Task");
    println!(
        "\nSalesforce (stand-in) org of acme now holds {} Task(s):",
        tasks.len()
    );
    for t in &tasks {
        println!(
            "  {} | {:<10} | CallType {:<8} | {:>4} s | WhoId {} | WhatId {}",
            t["CallObject"].as_str().unwrap_or("-"),
            t["Subject"].as_str().unwrap_or("-"),
            t["CallType"].as_str().unwrap_or("-"),
            t["CallDurationInSeconds"],
            t["WhoId"].as_str().unwrap_or("-"),
            t["WhatId"].as_str().unwrap_or("-"),
        );
    }
    let logged = tasks.len().max(1);
    println!(
        "\nSalesforce API calls for these calls: {} ({:.2} per logged call, session reused)",
        acme.api_calls(),
        acme.api_calls() as f64 / logged as f64
    );
    let usage: Value = http
        .get(format!("{api}/v1/tenants/acme/usage"))
        .send()
        .await?
        .json()
        .await?;
    println!(
        "usage counters (acme): {}",
        usage
            .as_array()
            .map(|a| a
                .iter()
                .map(|u| format!("{}={}", u["counter"].as_str().unwrap_or(""), u["value"]))
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
    let log: Value = http
        .get(format!("{api}/v1/tenants/acme/log?limit=12"))
        .send()
        .await?
        .json()
        .await?;
    println!("\nintegration log of acme (newest last):");
    for e in log.as_array().into_iter().flatten().rev() {
        println!(
            "  {:5} {}: {}",
            e["level"].as_str().unwrap_or(""),
            e["plugin"].as_str().unwrap_or(""),
            e["message"].as_str().unwrap_or("")
        );
    }
    host.shutdown().await;
    standin.shutdown().await;
    Ok(())
}
