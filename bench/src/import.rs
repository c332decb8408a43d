//! §6 contact import: N Contacts from the stand-in into a tenant's phone book, through the
//! real host and the real `contact-import` component; time and peak RSS.
//!
//! The stand-in (and its N records in memory) runs in the calling process; the host runs in a
//! child process started from the same binary with [`CHILD_ENV`] set, so that the child's
//! `VmHWM` is the host's alone. The child runs the `sync` schedule until the import reports it
//! is complete, then checks that the phone book holds exactly N entries and that one chosen
//! record arrived with every field; anything else is an error (the benchmark fails loudly).
//!
//! The plugin is configured as in `tests/e2e/tests/contact_import.rs`
//! (`c4_ten_thousand_contacts_import_completely`): password flow, `objects = ["Contact"]`,
//! the same limits; the scheduler is held off (its tick is a day) and the child calls
//! `Host::run_schedule` itself, again while the plugin asks to run again.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use pbx_host::runtime::CallOutput;
use pbx_host::{Host, HostOptions};
use serde_json::{Value, json};
use sf_standin::{OrgSpec, StandIn};

use crate::{plugin_dir, process_cpu, reset_peak_rss, rss_kib};

/// Set (to the prepared directory) in the child process.
pub const CHILD_ENV: &str = "LOADGEN_IMPORT_CHILD";
const RECORDS_ENV: &str = "LOADGEN_IMPORT_RECORDS";
const EXPECT_ENV: &str = "LOADGEN_IMPORT_EXPECT";
const TENANT: &str = "acme";
const PLUGIN: &str = "contact-import";
/// Accounts the Contacts belong to (`Account.Name` becomes the entry's company).
const ACCOUNTS: usize = 100;
/// More runs than this is a failure (a run reads up to 100 pages of 2,000).
const MAX_RUNS: u32 = 50;

/// One size, measured.
#[derive(Debug, Clone)]
pub struct Sample {
    pub records: usize,
    /// Seeding the stand-in (parent).
    pub seed: Duration,
    /// First `run_schedule` to the last one's end (child).
    pub elapsed: Duration,
    /// Schedule runs it took.
    pub runs: u32,
    /// Child CPU time (user + system) during the import.
    pub cpu: Duration,
    /// Child `VmRSS` after start-up, before the import.
    pub base_kib: u64,
    /// Child `VmHWM` during the import (reset after start-up).
    pub peak_kib: u64,
    /// Child `VmRSS` after the import.
    pub after_kib: u64,
    /// Requests the org counted as API calls during the import.
    pub api_calls: u64,
    /// Of which: logins, first query pages, further pages.
    pub logins: usize,
    pub queries: usize,
    pub more_pages: usize,
}

fn number(prefix: u32, i: usize) -> String {
    format!("0{prefix}-{:04}-{:04}", 1000 + i / 10_000, i % 10_000)
}

fn e164(national: &str) -> String {
    let digits: String = national.chars().filter(char::is_ascii_digit).collect();
    format!("+81{}", digits.trim_start_matches('0'))
}

/// The phone-book entry Contact `i` must become: (name, company, email, [(label, number)]).
fn expected(i: usize) -> (String, String, String, Vec<(String, String)>) {
    (
        format!("Taro Yamada {i:06}"),
        format!("Company {:03}", i % ACCOUNTS),
        format!("taro.{i}@example.jp"),
        vec![
            ("Phone".into(), number(3, i)),
            ("MobilePhone".into(), number(90, i)),
        ],
    )
}

fn plugins_toml(standin: &str) -> String {
    let component = plugin_dir().join("contact_import.wasm");
    format!(
        r#"
[host]
allow_private_networks = ["127.0.0.0/8"]

[plugins.contact-import]
component = "{}"
schedules = {{ sync = 86400 }}
[plugins.contact-import.grants]
http = ["{{config.login_url}}", "{{config.instance_url}}"]
secrets = ["salesforce.password", "salesforce.security_token", "salesforce.client_secret", "salesforce.refresh_token", "salesforce.private_key"]
state = true
contacts = "read-write"
[plugins.contact-import.limits]
wall_ms = 120000
cpu_ms = 20000
memory_mib = 64
http_requests = 200

[tenants.{TENANT}]
default_country = "JP"
[tenants.{TENANT}.plugins.contact-import]
config = {{ login_url = "{standin}", auth = "password", username = "admin@{TENANT}.example", client_id = "ACME_CONNECTED_APP", objects = ["Contact"] }}
"#,
        component.display()
    )
}

const SECRETS: &str = r#"
[acme.contact-import]
"salesforce.password" = "pw-secret-1"
"salesforce.security_token" = "TOKENSECRET"
"salesforce.client_secret" = "client-secret-1"
"#;

/// Parent side: a fresh stand-in with `n` Contacts, the host importing them in a child.
pub async fn measure(n: usize) -> anyhow::Result<Sample> {
    let component = plugin_dir().join("contact_import.wasm");
    anyhow::ensure!(
        component.is_file(),
        "{} is missing: build the components with `cargo xtask plugins`",
        component.display()
    );
    let sf = StandIn::start().await?;
    let org = sf.add_org(OrgSpec {
        username: format!("admin@{TENANT}.example"),
        password: "pw-secret-1".into(),
        security_token: "TOKENSECRET".into(),
        client_id: "ACME_CONNECTED_APP".into(),
        client_secret: "client-secret-1".into(),
        daily_api_limit: 1_000_000,
        ..OrgSpec::default()
    });
    // Seeded through the stand-in's Rust API (no HTTP, not counted as API calls).
    let t = Instant::now();
    let mut accounts = Vec::with_capacity(ACCOUNTS);
    for k in 0..ACCOUNTS {
        accounts.push(org.try_insert(
            "Account",
            json!({"Name": format!("Company {k:03}"), "Phone": format!("06-6000-{k:04}")}),
        )?);
    }
    // The record checked field by field in the child: one on a late page.
    let spot = n.saturating_sub(1).min(n * 2 / 3 + 7);
    let mut spot_id = String::new();
    for i in 0..n {
        let (_, _, email, phones) = expected(i);
        let id = org.try_insert(
            "Contact",
            json!({"FirstName": "Taro", "LastName": format!("Yamada {i:06}"),
                   "AccountId": accounts[i % ACCOUNTS], "Email": email,
                   "Phone": phones[0].1, "MobilePhone": phones[1].1}),
        )?;
        if i == spot {
            spot_id = id;
        }
    }
    let seed = t.elapsed();
    let (name, company, email, phones) = expected(spot);
    let expect = json!({
        "external_id": format!("Contact/{spot_id}"),
        "account_id": accounts[spot % ACCOUNTS],
        "name": name, "company": company, "email": email, "phones": phones,
    });

    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("plugins.toml"),
        plugins_toml(&sf.base_url()),
    )?;
    std::fs::write(dir.path().join("secrets.toml"), SECRETS)?;
    org.reset_counters();
    let exe = std::env::current_exe()?;
    let path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .env(CHILD_ENV, path)
            .env(RECORDS_ENV, n.to_string())
            .env(EXPECT_ENV, expect.to_string())
            .output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("IMPORT "))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "import child failed ({}): {stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let field = |k: &str| -> anyhow::Result<u64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no {k} in {line:?}"))
    };
    let log = org.request_log();
    let count = |p: &str| log.iter().filter(|r| r.path.contains(p)).count();
    let sample = Sample {
        records: n,
        seed,
        elapsed: Duration::from_millis(field("elapsed_ms")?),
        runs: u32::try_from(field("runs")?)?,
        cpu: Duration::from_millis(field("cpu_ms")?),
        base_kib: field("base_kib")?,
        peak_kib: field("peak_kib")?,
        after_kib: field("after_kib")?,
        api_calls: org.api_calls(),
        logins: count("/oauth2/token"),
        queries: count("/query?q="),
        more_pages: count("/query/"),
    };
    drop(sf);
    Ok(sample)
}

/// Child side: start the host from `dir`, import, verify, print one `IMPORT k=v ...` line.
pub async fn child(dir: &Path) -> anyhow::Result<()> {
    let records: u64 = std::env::var(RECORDS_ENV)?.parse()?;
    let expect: Value = serde_json::from_str(&std::env::var(EXPECT_ENV)?)?;
    let mut o = HostOptions::new(dir.join("plugins.toml"), dir.join("data"));
    o.reload_interval = None;
    // The scheduler stays out of the way: the child runs the schedule itself.
    o.schedule_tick = Duration::from_secs(86_400);
    o.secrets_file = Some(dir.join("secrets.toml"));
    let host = Host::start(o).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(s) = host.plugin_statuses().iter().find(|s| s.id == PLUGIN)
        && !s.loaded
    {
        anyhow::bail!("{PLUGIN} did not load: {:?}", s.error);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (base, _) = rss_kib();
    reset_peak_rss();
    let cpu0 = process_cpu();
    let started = Instant::now();
    let mut runs = 0u32;
    loop {
        runs += 1;
        let report = host
            .run_schedule(TENANT, PLUGIN, "sync")
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        match report.outcome {
            Ok(CallOutput::Scheduled {
                run_again_after_ms: Some(_),
            }) if runs < MAX_RUNS => {}
            Ok(CallOutput::Scheduled {
                run_again_after_ms: None,
            }) => break,
            Ok(other) => anyhow::bail!("run {runs}: unexpected outcome {other:?}"),
            Err(e) => anyhow::bail!(
                "run {runs} failed after {:.1} s: {e}; log: {}",
                started.elapsed().as_secs_f64(),
                log_tail(&host)
            ),
        }
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu().saturating_sub(cpu0);
    let (after, peak) = rss_kib();
    verify(&host, records, &expect)?;
    println!(
        "IMPORT records={records} runs={runs} elapsed_ms={} cpu_ms={} base_kib={base} peak_kib={} after_kib={after}",
        elapsed.as_millis(),
        cpu.as_millis(),
        peak.max(base)
    );
    host.shutdown_within(Duration::from_secs(2)).await;
    Ok(())
}

fn log_tail(host: &Host) -> String {
    let mut s = String::new();
    if let Ok(lines) = host.storage().log_read(TENANT, 10) {
        for l in lines.iter().rev() {
            let _ = write!(s, "\n  {} {}", l.level, l.message);
        }
    }
    s
}

/// The phone book holds exactly `records` entries, and the chosen one has every field.
fn verify(host: &Host, records: u64, expect: &Value) -> anyhow::Result<()> {
    let storage = host.storage();
    let count = storage.contacts_count(TENANT)?;
    anyhow::ensure!(
        count == records,
        "the import is incomplete: {count} of {records} entries in the phone book; log: {}",
        log_tail(host)
    );
    let s = |k: &str| expect[k].as_str().unwrap_or_default().to_string();
    let ext = s("external_id");
    let row = storage
        .contacts_get(TENANT, &ext)?
        .ok_or_else(|| anyhow::anyhow!("{ext} is not in the phone book"))?;
    let phones: Vec<(String, String, Option<String>)> = row
        .phones
        .iter()
        .map(|p| (p.label.clone(), p.number.clone(), p.e164.clone()))
        .collect();
    let want_phones: Vec<(String, String, Option<String>)> = expect["phones"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let label = p[0].as_str()?.to_string();
            let number = p[1].as_str()?.to_string();
            let e = e164(&number);
            Some((label, number, Some(e)))
        })
        .collect();
    let got = (
        row.record_type.as_str(),
        row.name.as_str(),
        row.company.as_deref(),
        row.email.as_deref(),
        row.account_id.as_deref(),
        &phones,
    );
    let (name, company, email, account) = (s("name"), s("company"), s("email"), s("account_id"));
    let want = (
        "Contact",
        name.as_str(),
        Some(company.as_str()),
        Some(email.as_str()),
        Some(account.as_str()),
        &want_phones,
    );
    anyhow::ensure!(got == want, "{ext}: got {got:?}, want {want:?}");
    anyhow::ensure!(row.modified_at.is_some(), "{ext}: no modified_at");
    // The caller look-up finds it by its mobile number.
    let mobile = want_phones
        .get(1)
        .and_then(|p| p.2.clone())
        .unwrap_or_default();
    let found = storage.contacts_lookup(TENANT, &mobile)?;
    anyhow::ensure!(
        found.iter().any(|r| r.external_id == ext),
        "{ext} is not found by {mobile}"
    );
    Ok(())
}
