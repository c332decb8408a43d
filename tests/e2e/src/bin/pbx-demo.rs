//! The demo: the host with its plugins, on its embedded defaults, against the local Salesforce
//! stand-in. It plays a realistic day of a Japanese tenant through the host's HTTP API, exactly
//! as a PBX would, and prints what landed in "Salesforce". It needs no account and no server:
//! everything runs on loopback.
//!
//! Run it with `cargo xtask demo` (which builds the plugin components first).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pbx_host::{Host, HostOptions};
use serde_json::{Value, json};
use sf_standin::{Org, OrgSpec, StandIn};

const STANDIN_ADDR: &str = "127.0.0.1:18089";
const PLUGINS: [&str; 4] = [
    "contact-import",
    "ivr-greeting",
    "history-logger",
    "case-creation",
];
const SECRETS: [(&str, &str); 3] = [
    ("salesforce.password", "demo-password"),
    ("salesforce.security_token", "DEMOTOKEN123"),
    ("salesforce.client_secret", "demo-client-secret"),
];

/// The HTTP client side of the demo: what a PBX (with the operator's token) and a tenant
/// admin (with a token for its own tenant only) send.
struct Pbx {
    api: String,
    http: reqwest::Client,
    token: String,
}

impl Pbx {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("{path}: {status} {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// One call of the day and the events the PBX sends for it.
struct DemoCall {
    id: &'static str,
    what: &'static str,
    direction: &'static str,
    caller: &'static str,
    callee: &'static str,
    extension: &'static str,
    outcome: &'static str,
    seconds: i64,
    queue: Option<&'static str>,
    transfer: Option<(&'static str, &'static str)>,
    predictive: Option<(bool, bool)>,
}

impl DemoCall {
    fn events(&self, start: i64) -> Vec<Value> {
        let answered = self.outcome == "answered";
        let answered_at = start + 6_000;
        let ended_at = if answered {
            answered_at + self.seconds * 1000
        } else {
            start + 25_000
        };
        let call = |upto: &str| {
            let mut c = json!({
                "call_id": self.id, "direction": self.direction, "caller": self.caller, "callee": self.callee,
                "agent": {"extension": self.extension, "user_name": format!("内線{}", self.extension)},
                "dial_started_at": start,
            });
            if let Some(q) = self.queue {
                c["queue"] = json!(q);
            }
            if let Some((a, b)) = self.predictive {
                c["predictive"] = json!({"answered_by_callee": a, "answered_by_agent": b});
            }
            if answered && upto != "dial-started" && upto != "queue-entered" {
                c["answered_at"] = json!(answered_at);
            }
            if let Some((kind, target)) = self.transfer
                && (upto == "transferred" || upto == "ended")
            {
                c["transfer"] = json!({"kind": kind, "target_number": target});
            }
            if upto == "ended" {
                c["ended_at"] = json!(ended_at);
                c["duration_seconds"] = json!(if answered { self.seconds } else { 0 });
                c["outcome"] = json!(self.outcome);
                c["recording_url"] = json!(format!(
                    "https://acme.u.biztel.jp:8000/recordings/{}.wav",
                    self.id
                ));
            }
            c
        };
        let ev = |kind: &str, at: i64| json!({"tenant": "acme", "event_id": format!("{}-{kind}", self.id), "kind": kind, "occurred_at": at, "call": call(kind)});
        let mut out = vec![ev("dial-started", start)];
        if self.queue.is_some() {
            out.push(ev("queue-entered", start + 2_000));
        }
        if answered {
            out.push(ev("answered", answered_at));
        }
        if self.transfer.is_some() {
            out.push(ev("transferred", answered_at + 30_000));
        }
        out.push(ev("ended", ended_at));
        out
    }
}

fn seed(org: &Org) -> (String, String) {
    let yamada_corp = org.insert(
        "Account",
        json!({"Name": "株式会社山田商事", "Phone": "03-1234-0000"}),
    );
    org.insert("Contact", json!({"FirstName": "太郎", "LastName": "山田", "Phone": "03-1234-5678", "AccountId": yamada_corp, "Email": "taro@yamada.example"}));
    org.insert(
        "Contact",
        json!({"FirstName": "花子", "LastName": "佐藤", "MobilePhone": "090 8765 4321"}),
    );
    org.insert("Lead", json!({"FirstName": "一郎", "LastName": "鈴木", "Company": "鈴木工業", "Phone": "(06) 6123 4567"}));
    org.insert(
        "Contact",
        json!({"FirstName": "健", "LastName": "高橋", "Phone": "+81 45-222-3333"}),
    );
    org.insert(
        "Contact",
        json!({"LastName": "(名前なし連絡先)", "Phone": "+81-3-1111-2222"}),
    );
    let tanaka = org.insert("User", json!({"LastName": "田中", "FirstName": "誠", "Username": "tanaka@acme.example", "Email": "tanaka@acme.example", "Phone": "03-5555-0201"}));
    let ito = org.insert("User", json!({"LastName": "伊藤", "FirstName": "翼", "Username": "ito@acme.example", "Email": "ito@acme.example", "Phone": "03-5555-0202"}));
    (tanaka, ito)
}

fn the_day() -> Vec<DemoCall> {
    let c = |id, what, direction, caller, callee, extension, outcome, seconds| DemoCall {
        id,
        what,
        direction,
        caller,
        callee,
        extension,
        outcome,
        seconds,
        queue: None,
        transfer: None,
        predictive: None,
    };
    vec![
        c(
            "d-0901",
            "inbound, answered (Contact, E.164)",
            "inbound",
            "+81 3 1234 5678",
            "0501111222",
            "201",
            "answered",
            185,
        ),
        c(
            "d-0915",
            "outbound, answered (Contact's mobile)",
            "outbound",
            "201",
            "090-8765-4321",
            "201",
            "answered",
            42,
        ),
        c(
            "d-0930",
            "inbound, missed (Lead)",
            "inbound",
            "0661234567",
            "0501111222",
            "201",
            "missed",
            0,
        ),
        c(
            "d-0945",
            "outbound, missed (Account)",
            "outbound",
            "202",
            "0312340000",
            "202",
            "missed",
            0,
        ),
        DemoCall {
            transfer: Some(("internal", "202")),
            ..c(
                "d-1000",
                "inbound, transferred internally",
                "inbound",
                "03-1234-5678",
                "0501111222",
                "201",
                "answered",
                95,
            )
        },
        DemoCall {
            transfer: Some(("external", "03-9876-5432")),
            ..c(
                "d-1015",
                "inbound, transferred out",
                "inbound",
                "090-8765-4321",
                "0501111222",
                "201",
                "answered",
                60,
            )
        },
        DemoCall {
            transfer: Some(("automatic-forwarding", "03-5555-0202")),
            ..c(
                "d-1030",
                "inbound, forwarded automatically",
                "inbound",
                "0661234567",
                "0501111222",
                "201",
                "missed",
                0,
            )
        },
        c(
            "d-1045",
            "inbound, voicemail (unknown number)",
            "inbound",
            "0459999999",
            "0501111222",
            "201",
            "voicemail",
            0,
        ),
        DemoCall {
            predictive: Some((true, true)),
            ..c(
                "d-1100",
                "predictive, callee and agent",
                "outbound",
                "201",
                "0312345678",
                "201",
                "answered",
                130,
            )
        },
        DemoCall {
            predictive: Some((true, false)),
            ..c(
                "d-1115",
                "predictive, callee only",
                "outbound",
                "201",
                "09087654321",
                "201",
                "missed",
                0,
            )
        },
        c(
            "d-1130",
            "internal (not logged)",
            "internal",
            "201",
            "202",
            "201",
            "answered",
            20,
        ),
        DemoCall {
            queue: Some("support"),
            ..c(
                "d-1145",
                "inbound via the support queue (Case)",
                "inbound",
                "045-222-3333",
                "0501111222",
                "202",
                "answered",
                240,
            )
        },
    ]
}

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

    // 1. "Salesforce": the stand-in, with acme's org and its data.
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
    let (tanaka, ito) = seed(&acme);

    // 2. The host, from the shipped plugins.toml, in a fresh data directory.
    let data = tempfile::tempdir()?;
    let started = Instant::now();
    let mut opts = HostOptions::new(&config, data.path());
    opts.schedule_tick = Duration::from_secs(3600); // the demo runs the import itself
    // The API is never open, not even in the demo: the PBX uses the operator's token, the
    // tenant admin a token for its own tenant.
    let operator_token = pbx_host::auth::new_token();
    opts.operator_token = Some(operator_token.clone());
    let host = Host::start(opts)
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
                "  plugin {:<15} loaded ({:?}); exports {}",
                s.id,
                s.source.unwrap_or(pbx_host::runtime::LoadSource::Compiled),
                s.exports.join(", ")
            ),
            Some(e) => println!("  plugin {:<15} SKIPPED: {e}", s.id),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    // api::serve refuses its socket to every plugin before it answers a request.
    tokio::spawn(pbx_host::api::serve(
        host.clone(),
        listener,
        std::future::pending(),
    ));
    let pbx = Pbx {
        api: api.clone(),
        http: reqwest::Client::new(),
        token: operator_token,
    };
    use reqwest::Method;
    let minted = pbx
        .send(
            Method::POST,
            "/v1/tenants/acme/tokens",
            Some(&json!({"label": "acme admin (demo)"})),
        )
        .await?;
    let admin = Pbx {
        api,
        http: reqwest::Client::new(),
        token: minted["token"]
            .as_str()
            .context("the API minted no tenant token")?
            .to_string(),
    };
    println!(
        "API on {} (operator token for the PBX, a tenant token for acme's admin; plugins may reach only the stand-in on {STANDIN_ADDR})",
        pbx.api
    );

    // 3. The tenant admin: credentials (write-only), the agent mapping, "verify settings".
    for plugin in PLUGINS {
        for (name, value) in SECRETS {
            admin
                .send(
                    Method::PUT,
                    &format!("/v1/tenants/acme/plugins/{plugin}/secrets/{name}"),
                    Some(&json!({"value": value})),
                )
                .await?;
        }
    }
    let views = admin
        .send(Method::GET, "/v1/tenants/acme/plugins", None)
        .await?;
    let mut logger_config = views
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["plugin"] == "history-logger")
        .map(|v| v["config"].clone())
        .unwrap_or_default();
    logger_config["agent_users"] = json!({"201": tanaka, "202": ito});
    admin
        .send(
            Method::PUT,
            "/v1/tenants/acme/plugins/history-logger/config",
            Some(&logger_config),
        )
        .await?;
    println!("\nverify settings (acme):");
    for plugin in PLUGINS {
        let v = admin
            .send(
                Method::POST,
                &format!("/v1/tenants/acme/plugins/{plugin}/verify"),
                None,
            )
            .await?;
        let items = v["items"].as_array().cloned().unwrap_or_default();
        let bad: Vec<String> = items
            .iter()
            .filter(|i| i["ok"] != true)
            .map(|i| {
                format!(
                    "{}: {}",
                    i["name"].as_str().unwrap_or(""),
                    i["message"].as_str().unwrap_or("")
                )
            })
            .collect();
        println!(
            "  {plugin:<15} {} ({} checks){}",
            if v["ok"] == true { "OK" } else { "PROBLEMS" },
            items.len(),
            if bad.is_empty() {
                String::new()
            } else {
                format!(": {}", bad.join("; "))
            }
        );
    }

    // 4. The phone book, imported from Salesforce (first import; then every 24 h).
    acme.reset_counters();
    let report = host.run_schedule("acme", "contact-import", "sync").await?;
    let entries = host.storage().contacts_count("acme")?;
    println!(
        "\ncontact import: {entries} phone-book entries from Salesforce in {} ms, {} API calls ({})",
        report.elapsed.as_millis(),
        acme.api_calls(),
        if report.outcome.is_ok() {
            "ok"
        } else {
            "FAILED"
        }
    );

    // 5. IVR look-ups: the PBX asks during the IVR and gets a decision within its deadline.
    println!("\nIVR greetings:");
    for (caller, who) in [
        ("0312345678", "a known caller"),
        ("0798887777", "an unknown number"),
    ] {
        acme.reset_counters();
        let t = Instant::now();
        let d = pbx.send(Method::POST, "/v1/ivr", Some(&json!({"tenant": "acme", "deadline_ms": 1500, "ivr_name": "main",
            "call": {"call_id": format!("ivr-{caller}"), "direction": "inbound", "caller": caller, "callee": "0501111222", "dial_started_at": chrono::Utc::now().timestamp_millis()}}))).await?;
        println!(
            "  {caller} ({who}): \"{}\" -> {} [{} ms, {} API calls, {}]",
            d["speech"].as_str().unwrap_or(""),
            d["route"].as_str().unwrap_or("-"),
            t.elapsed().as_millis(),
            acme.api_calls(),
            d["source"].as_str().unwrap_or("")
        );
    }

    // 6. The day's calls, event by event, as the PBX posts them; then memo and transcript.
    acme.reset_counters();
    let day = the_day();
    let mut start = chrono::Utc::now().timestamp_millis() - 6 * 3_600_000;
    println!("\nplaying {} calls through POST /v1/events:", day.len());
    for call in &day {
        let events = call.events(start);
        for e in &events {
            pbx.send(Method::POST, "/v1/events", Some(e)).await?;
        }
        println!("  {} {:<40} {} events", call.id, call.what, events.len());
        start += 15 * 60_000;
    }
    host.wait_idle(Duration::from_secs(60)).await;
    let later = chrono::Utc::now().timestamp_millis();
    for (kind, extra) in [
        ("memo-updated", json!({"memo": ["見積依頼", "折り返し要"]})),
        (
            "transcript-updated",
            json!({"transcript": {"text": "お見積りの件でお電話しました。来週お伺いします。", "summary": "見積依頼、来週訪問"}}),
        ),
    ] {
        let mut e = day[0].events(later - 3_600_000).pop().unwrap_or_default();
        e["kind"] = json!(kind);
        e["event_id"] = json!(format!("d-0901-{kind}"));
        if let (Some(obj), Some(more)) = (e.as_object_mut(), extra.as_object()) {
            obj.extend(more.clone());
        }
        pbx.send(Method::POST, "/v1/events", Some(&e)).await?;
    }
    if !host.wait_idle(Duration::from_secs(60)).await {
        println!("(some deliveries are still pending)");
    }

    // 7. What landed in "Salesforce".
    let mut tasks = acme.records("Task");
    tasks.sort_by(|a, b| a["CallObject"].as_str().cmp(&b["CallObject"].as_str()));
    let name_of = |id: &Value| -> String {
        let Some(id) = id.as_str() else {
            return "-".into();
        };
        ["Contact", "Lead", "Account", "User", "Case"]
            .iter()
            .find_map(|t| {
                acme.get(t, id).map(|r| {
                    r["Name"]
                        .as_str()
                        .or(r["CaseNumber"].as_str())
                        .unwrap_or(id)
                        .to_string()
                })
            })
            .unwrap_or_else(|| id.to_string())
    };
    println!(
        "\nSalesforce (stand-in) now holds {} Task(s) for {} calls (the internal call is not logged):",
        tasks.len(),
        day.len()
    );
    println!(
        "  {:<7} {:<16} {:<9} {:>5} {:<14} {:<18} Owner",
        "call", "Subject", "CallType", "secs", "WhoId", "WhatId"
    );
    for t in &tasks {
        println!(
            "  {:<7} {:<16} {:<9} {:>5} {:<14} {:<18} {}",
            t["CallObject"].as_str().unwrap_or("-"),
            t["Subject"].as_str().unwrap_or("-"),
            t["CallType"].as_str().unwrap_or("(none)"),
            t["CallDurationInSeconds"],
            name_of(&t["WhoId"]),
            name_of(&t["WhatId"]),
            name_of(&t["OwnerId"])
        );
    }
    if let Some(t) = tasks.iter().find(|t| t["CallObject"] == "d-0901") {
        println!("\n  d-0901 after the memo and transcript updates (same Task, updated in place):");
        for line in t["Description"].as_str().unwrap_or("").lines() {
            println!("    | {line}");
        }
    }
    for c in acme.records("Case") {
        println!(
            "\nCase {} (queue call): Origin {}, Contact {}, Subject \"{}\"\n  Description: {}",
            c["CaseNumber"].as_str().unwrap_or("-"),
            c["Origin"].as_str().unwrap_or("-"),
            name_of(&c["ContactId"]),
            c["Subject"].as_str().unwrap_or(""),
            c["Description"].as_str().unwrap_or("").replace('\n', " / ")
        );
    }
    let logged = tasks.len().max(1);
    println!(
        "\nSalesforce API calls for the day's {} logged calls, the case and the updates: {} ({:.2} per logged call; session reused, numbers matched in the phone book, Task creates batched)",
        tasks.len(),
        acme.api_calls(),
        acme.api_calls() as f64 / logged as f64
    );
    let dead = admin
        .send(Method::GET, "/v1/tenants/acme/deliveries?status=dead", None)
        .await?;
    println!("dead letters: {}", dead.as_array().map_or(0, Vec::len));
    let usage = admin
        .send(Method::GET, "/v1/tenants/acme/usage", None)
        .await?;
    let mut totals = std::collections::BTreeMap::<String, i64>::new();
    for u in usage.as_array().into_iter().flatten() {
        *totals
            .entry(u["counter"].as_str().unwrap_or("").to_string())
            .or_default() += u["value"].as_i64().unwrap_or(0);
    }
    println!(
        "usage counters (acme, today): {}",
        totals
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let log = admin
        .send(Method::GET, "/v1/tenants/acme/log?limit=14", None)
        .await?;
    println!("\nintegration log of acme (the newest lines):");
    for e in log.as_array().into_iter().flatten().rev() {
        println!(
            "  {:5} {:<15} {}",
            e["level"].as_str().unwrap_or(""),
            e["plugin"].as_str().unwrap_or(""),
            e["message"].as_str().unwrap_or("")
        );
    }
    host.shutdown().await;
    standin.shutdown().await;
    Ok(())
}
