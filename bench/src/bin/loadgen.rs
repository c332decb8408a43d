//! `loadgen`: the scenario benchmarks of issue 5, each measured side by side in one run.
//!
//! ```text
//! cargo run --release -p pbx-bench --bin loadgen -- [--quick] [--out DIR] [SCENARIO...]
//! scenarios: overhead ivr throughput density startup import   (default: all)
//! ```
//!
//! Results go to `DIR` (default `target/bench-results`): `results.md` (the table),
//! `results.json`, and SVG charts where a curve says more than a number.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pbx_bench::import;
use pbx_bench::overhead::{Overhead, VARIANTS};
use pbx_bench::report::{Row, Verdict, svg_chart, table};
use pbx_bench::{ended_call, percentile, plugin_dir, process_cpu, rss_kib, run_queue_wait};
use pbx_host::events::IvrLookup;
use pbx_host::runtime::{EngineOptions, Runtime};
use pbx_host::{Host, HostOptions};
use serde_json::json;
use sf_standin::{Fault, FaultKind, OrgSpec, StandIn};

struct Opts {
    quick: bool,
    out: PathBuf,
    scenarios: Vec<String>,
}

struct Results {
    rows: Vec<Row>,
    notes: String,
    json: serde_json::Map<String, serde_json::Value>,
    out: PathBuf,
}

impl Results {
    fn row(&mut self, measure: &str, result: String, target: &str, v: Verdict) {
        println!("{measure}: {result} (target {target}) {v:?}");
        self.rows.push(Row::new(measure, result, target, v));
    }
    fn note(&mut self, s: String) {
        println!("  {s}");
        self.notes.push_str(&s);
        self.notes.push('\n');
    }
    fn svg(&mut self, name: &str, svg: String) {
        let path = self.out.join(name);
        if let Err(e) = std::fs::write(&path, svg) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
}

fn main() -> anyhow::Result<()> {
    if let Some(dir) = std::env::var_os("LOADGEN_DENSITY_CHILD") {
        let num = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        return rt.block_on(density_child(
            PathBuf::from(dir),
            num("LOADGEN_DENSITY_TENANTS"),
            num("LOADGEN_DENSITY_EVENTS"),
        ));
    }
    if let Some(base) = std::env::var_os("LOADGEN_IVR_CHILD") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let session = std::env::var("LOADGEN_IVR_SESSION")?;
        let per_worker = std::env::var("LOADGEN_IVR_PER_WORKER")?.parse()?;
        return rt.block_on(ivr_child(
            base.to_string_lossy().into_owned(),
            session,
            per_worker,
        ));
    }
    if let Some(dir) = std::env::var_os(import::CHILD_ENV) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        return rt.block_on(import::child(Path::new(&dir)));
    }
    let mut opts = Opts {
        quick: false,
        out: Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results"),
        scenarios: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--out" => opts.out = PathBuf::from(args.next().unwrap_or_default()),
            "-h" | "--help" => {
                println!(
                    "loadgen [--quick] [--out DIR] [overhead|ivr|throughput|density|startup|import]..."
                );
                return Ok(());
            }
            s => opts.scenarios.push(s.to_string()),
        }
    }
    if opts.scenarios.is_empty() {
        opts.scenarios = [
            "startup",
            "overhead",
            "ivr",
            "throughput",
            "density",
            "import",
        ]
        .map(String::from)
        .to_vec();
    }
    std::fs::create_dir_all(&opts.out)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut res = Results {
        rows: Vec::new(),
        notes: String::new(),
        json: Default::default(),
        out: opts.out.clone(),
    };
    let machine = machine();
    println!("machine: {machine}");
    let mut failed = Vec::new();
    for s in opts.scenarios.clone() {
        println!("== {s}");
        let r = match s.as_str() {
            "overhead" => rt.block_on(overhead(&opts, &mut res)),
            "ivr" => rt.block_on(ivr(&opts, &mut res)),
            "throughput" => rt.block_on(throughput(&opts, &mut res)),
            "density" => rt.block_on(density(&opts, &mut res)),
            "startup" => rt.block_on(startup(&opts, &mut res)),
            "import" => rt.block_on(contact_import(&opts, &mut res)),
            other => Err(anyhow::anyhow!("unknown scenario {other}")),
        };
        if let Err(e) = r {
            res.row(&s, format!("failed: {e:#}"), "", Verdict::Missed);
            failed.push(s);
        }
    }
    let mut md = format!(
        "# Benchmark results\n\nMachine: {machine}. Mode: {}. Generated by `loadgen`.\n\n",
        if opts.quick { "quick" } else { "full" }
    );
    md.push_str(&table(&res.rows));
    md.push_str("\n## Notes\n\n```text\n");
    md.push_str(&res.notes);
    md.push_str("```\n");
    std::fs::write(opts.out.join("results.md"), &md)?;
    std::fs::write(
        opts.out.join("results.json"),
        serde_json::to_string_pretty(&res.json)?,
    )?;
    println!("\n{md}\nwritten to {}", opts.out.display());
    // A target missed is a result; a scenario that could not run is a failure.
    if !failed.is_empty() {
        anyhow::bail!("scenarios failed: {}", failed.join(", "));
    }
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), {} GiB RAM, load average {}",
        mem >> 20,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// 100000 -> "100,000".
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------------------
// §1 invocation overhead, interleaved rounds: every round runs each variant for a slice,
// so that the machine's noise hits all variants alike; the median round per variant.

async fn overhead(opts: &Opts, res: &mut Results) -> anyhow::Result<()> {
    let mut o = Overhead::new()?;
    let (rounds, slice) = if opts.quick { (15, 300) } else { (60, 1000) };
    for v in VARIANTS {
        o.run(v, 200).await?; // warm-up
    }
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for _ in 0..rounds {
        for (i, v) in VARIANTS.iter().enumerate() {
            // the native baseline is ~1000x faster: more iterations for a measurable slice
            let n = if *v == "d_native" { slice * 100 } else { slice };
            let t = o.run(v, n).await?;
            per[i].push(us(t) / n as f64);
        }
    }
    let med: Vec<f64> = per
        .iter_mut()
        .map(|v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    let get = |name: &str| med[VARIANTS.iter().position(|v| *v == name).unwrap_or(0)];
    for (i, v) in VARIANTS.iter().enumerate() {
        let p10 = per[i][per[i].len() / 10];
        let p90 = per[i][per[i].len() * 9 / 10];
        res.note(format!(
            "overhead {v}: median {:.3} µs/call (rounds p10 {p10:.3}, p90 {p90:.3})",
            med[i]
        ));
        res.json.insert(format!("overhead.{v}.us"), json!(med[i]));
    }
    let (a, a_bare, b, c, d) = (
        get("a_invoke"),
        get("a_bare"),
        get("b_naive"),
        get("c_warm"),
        get("d_native"),
    );
    res.row(
        "§1 a/b: product invoke vs naive embedding",
        format!(
            "{:.2} ({a:.1} µs / {b:.1} µs); bare instantiate+call {:.2} ({a_bare:.1} / {b:.1})",
            a / b,
            a_bare / b
        ),
        "≤ 0.4",
        Verdict::of(a / b <= 0.4),
    );
    res.row(
        "§1 a/d: product invoke vs native in-process",
        format!("{:.0}× ({a:.1} µs / {d:.3} µs)", a / d),
        "(reported)",
        Verdict::Info,
    );
    res.row(
        "§1 c/d: warm instance vs native in-process",
        format!("{:.1}× ({c:.2} µs / {d:.3} µs)", c / d),
        "≤ 3",
        Verdict::of(c / d <= 3.0),
    );
    res.row(
        "§1 product invoke, SQLite storage",
        format!("{:.1} µs/call", get("a_sqlite")),
        "(reported)",
        Verdict::Info,
    );
    if o.log_lines() == 0 {
        anyhow::bail!("the plugin wrote no log lines: it did not run");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// A host in a temporary directory.

struct Env {
    _dir: tempfile::TempDir,
    host: Host,
}

fn plugins_path(name: &str) -> String {
    plugin_dir()
        .join(format!("{}.wasm", name.replace('-', "_")))
        .display()
        .to_string()
}

async fn start_host(config: &str, dir: tempfile::TempDir) -> anyhow::Result<(Env, Duration)> {
    let path = dir.path().join("plugins.toml");
    std::fs::write(&path, config)?;
    let mut o = HostOptions::new(&path, dir.path().join("data"));
    o.reload_interval = None;
    let started = Instant::now();
    let host = Host::start(o).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let took = started.elapsed();
    Ok((Env { _dir: dir, host }, took))
}

// ---------------------------------------------------------------------------------------
// §5 start-up: every plugin loaded, from the precompiled cache vs compiled cold.

async fn startup(opts: &Opts, res: &mut Results) -> anyhow::Result<()> {
    let plugins = [
        "history-logger",
        "contact-import",
        "ivr-greeting",
        "case-creation",
        "probe-plugin",
        "minimal-plugin",
        "bench-plugin",
    ];
    let reps = if opts.quick { 3 } else { 7 };
    let cache = tempfile::tempdir()?;
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        // cold: an empty cache directory; warm: the one the cold runs filled
        for (samples, dir) in [
            (&mut cold, tempfile::tempdir()?.path().to_path_buf()),
            (&mut warm, cache.path().to_path_buf()),
        ] {
            let t = Instant::now();
            let rt = Runtime::new(&EngineOptions::default(), Some(dir))?;
            for p in plugins {
                rt.load(Path::new(&plugins_path(p)))?;
            }
            samples.push(t.elapsed());
        }
    }
    cold.sort();
    warm.sort();
    let (c, w) = (cold[cold.len() / 2], warm[warm.len() / 2]);
    // The host's own time to ready (config, SQLite, engine, plugins), from the cache.
    let mut toml = String::from("[host]\n");
    for p in plugins {
        let _ = writeln!(
            toml,
            "[plugins.{p}]\ncomponent = \"{}\"\nevents = [\"ended\"]",
            plugins_path(p)
        );
    }
    toml.push_str("[tenants.acme]\ndefault_country = \"JP\"\n");
    let dir = tempfile::tempdir()?;
    let (env, first) = start_host(&toml, dir).await?;
    env.host.shutdown_within(Duration::from_secs(1)).await;
    let dir = env._dir;
    let (env, second) = start_host(&toml, dir).await?;
    env.host.shutdown_within(Duration::from_secs(1)).await;
    res.note(format!(
        "startup: {} plugins; runtime+load cold {:.1} ms, from cache {:.1} ms (medians of {reps}); Host::start first {:.1} ms, restart {:.1} ms",
        plugins.len(),
        ms(c),
        ms(w),
        ms(first),
        ms(second)
    ));
    res.row(
        "§5 start-up, all plugins from the cache (Host::start, restart)",
        format!("{:.1} ms (engine + load alone {:.1} ms)", ms(second), ms(w)),
        "≤ 100 ms",
        Verdict::of(ms(second) <= 100.0),
    );
    res.row(
        "§5 cache speed-up (engine + load, cold / cached)",
        format!("{:.0}× ({:.0} ms / {:.1} ms)", ms(c) / ms(w), ms(c), ms(w)),
        "≥ 50×",
        Verdict::of(ms(c) / ms(w) >= 50.0),
    );
    res.json.insert("startup.cold_ms".into(), json!(ms(c)));
    res.json.insert("startup.cached_ms".into(), json!(ms(w)));
    res.json
        .insert("startup.host_restart_ms".into(), json!(ms(second)));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// §2 IVR: latency the host adds over the CRM's, at 1..64 concurrent look-ups. The probe
// plugin does one HTTP GET (a SOQL query) against the stand-in, which sleeps 20 ms on it;
// the baseline is the same GET sent directly at the same concurrency. The stand-in runs in
// this process; the host and both load generators (host path and direct GET) run in a child
// process (`LOADGEN_IVR_CHILD`), so that the stand-in's work does not run on the host's
// runtime threads.

const IVR_CONCURRENCY: [usize; 5] = [1, 8, 16, 32, 64];
/// The levels that get a row in the table (the others are points of the curve).
const IVR_ROWS: [usize; 3] = [1, 8, 64];

async fn ivr(opts: &Opts, res: &mut Results) -> anyhow::Result<()> {
    let sf = StandIn::start().await?;
    let org = sf.add_org(OrgSpec {
        daily_api_limit: u64::MAX / 4,
        ..OrgSpec::default()
    });
    let session = org.issue_session();
    org.inject(
        Fault::new(FaultKind::Latency(Duration::from_millis(20)))
            .times(u32::MAX)
            .path_contains("/query"),
    );
    let per_worker: usize = if opts.quick { 40 } else { 200 };
    let exe = std::env::current_exe()?;
    let base = sf.base_url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .env("LOADGEN_IVR_CHILD", base)
            .env("LOADGEN_IVR_SESSION", session)
            .env("LOADGEN_IVR_PER_WORKER", per_worker.to_string())
            .output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        anyhow::bail!(
            "ivr child failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut curves: Vec<(&str, Vec<(f64, f64)>)> = vec![
        ("host p50", vec![]),
        ("host p99", vec![]),
        ("direct p50", vec![]),
        ("direct p99", vec![]),
    ];
    let mut all_met = true;
    let mut worst = String::new();
    let mut seen = 0;
    for line in stdout.lines().filter(|l| l.starts_with("IVR ")) {
        let field = |k: &str| -> anyhow::Result<f64> {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("no {k} in {line:?}"))
        };
        let conc = field("conc")? as usize;
        let n = field("n")? as usize;
        let ms_of = |k: &str| field(k).map(|us| us / 1000.0);
        let (h50, h99, d50, d99) = (
            ms_of("host_p50_us")?,
            ms_of("host_p99_us")?,
            ms_of("direct_p50_us")?,
            ms_of("direct_p99_us")?,
        );
        let (hmax, dmax) = (ms_of("host_max_us")?, ms_of("direct_max_us")?);
        let (hcpu, dcpu) = (field("host_cpu_us")?, field("direct_cpu_us")?);
        let (hwait, dwait) = (field("host_runq_us")?, field("direct_runq_us")?);
        seen += 1;
        let add50 = h50 - d50;
        let add99 = h99 - d99;
        res.note(format!(
            "ivr c={conc}: {n} look-ups; host p50 {h50:.2} ms p99 {h99:.2} ms max {hmax:.2} ms; direct p50 {d50:.2} ms p99 {d99:.2} ms max {dmax:.2} ms; added p50 {add50:.2} ms p99 {add99:.2} ms; per look-up, child CPU: host {hcpu:.0} µs, direct {dcpu:.0} µs; child threads waiting for a CPU: host {hwait:.0} µs, direct {dwait:.0} µs"
        ));
        curves[0].1.push((conc as f64, h50));
        curves[1].1.push((conc as f64, h99));
        curves[2].1.push((conc as f64, d50));
        curves[3].1.push((conc as f64, d99));
        res.json
            .insert(format!("ivr.c{conc}.added_p50_ms"), json!(add50));
        res.json
            .insert(format!("ivr.c{conc}.added_p99_ms"), json!(add99));
        if !IVR_ROWS.contains(&conc) {
            continue;
        }
        res.row(
            &format!("§2 IVR added latency, {conc} concurrent (p50 / p99)"),
            format!("{add50:.2} / {add99:.2} ms (CRM 20 ms injected; stand-in in another process)"),
            "p99 ≤ 2 ms",
            Verdict::of(add99 <= 2.0),
        );
        if add99 > 2.0 {
            all_met = false;
            let _ = write!(worst, "c={conc}: {add99:.1} ms ");
        }
    }
    if seen != IVR_CONCURRENCY.len() {
        anyhow::bail!("ivr child reported {seen} concurrency levels: {stdout}");
    }
    if !all_met {
        res.note(format!("ivr: p99 target missed at {worst}"));
    }
    res.svg(
        "ivr-latency.svg",
        svg_chart(
            "IVR look-up latency by concurrency (CRM sleeps 20 ms)",
            "concurrent look-ups",
            "ms",
            &curves,
            true,
        ),
    );
    drop(sf);
    Ok(())
}

/// The IVR child: the host (probe plugin) against the stand-in at `base`, and the load
/// generators; one `IVR conc=… n=… host_p50_us=… …` line per concurrency.
async fn ivr_child(base: String, session: String, per_worker: usize) -> anyhow::Result<()> {
    let url = format!("{base}/services/data/v62.0/query?q=SELECT+Id+FROM+Contact+LIMIT+1");
    let toml = format!(
        r#"
[host]
allow_private_networks = ["127.0.0.0/8"]
max_concurrent_instances = 128
# Sized for the load measured: one tenant's 64 look-ups at once at the default 64 MiB each,
# with the eighth of the budget that fair sharing keeps for other tenants on top.
instance_memory_budget_mib = 8192
[plugins.probe]
component = "{}"
[plugins.probe.grants]
http = ["{{config.allowed_url}}"]
[plugins.probe.limits]
wall_ms = 3000
[tenants.acme]
default_country = "JP"
ivr_fallback = {{ speech = "fallback", route = "queue:fallback" }}
[tenants.acme.plugins.probe]
config = {{ allowed_url = "{base}", ops = [{{ op = "http", url = "{url}", headers = [["Authorization", "Bearer {session}"]] }}] }}
"#,
        plugins_path("probe-plugin"),
    );
    let (env, _) = start_host(&toml, tempfile::tempdir()?).await?;
    let host = env.host.clone();
    let lookup = pbx_bench::probe_ivr_lookup()?;
    let d = host.ivr_lookup(lookup.clone()).await?;
    let ok = d
        .variables
        .first()
        .is_some_and(|(_, v)| v.starts_with("ok:200"));
    if d.source != "plugin" || !ok {
        anyhow::bail!("the probe did not answer from the CRM: {d:?}");
    }
    let client = reqwest::Client::new();
    for conc in IVR_CONCURRENCY {
        let n = if conc == 1 {
            per_worker * 2
        } else {
            per_worker.max(4 * conc) / conc * 2 + 2
        };
        // interleave: direct, host, direct, host (in halves) so noise hits both alike
        let mut host_lat = Vec::new();
        let mut direct_lat = Vec::new();
        let (mut host_cpu, mut direct_cpu) = (Duration::ZERO, Duration::ZERO);
        let (mut host_wait, mut direct_wait) = (Duration::ZERO, Duration::ZERO);
        for _half in 0..2 {
            let (c0, w0) = (process_cpu(), run_queue_wait());
            direct_lat.extend(
                run_concurrent(conc, n / 2, || {
                    let c = client.clone();
                    let (u, s) = (url.clone(), session.clone());
                    async move {
                        let r = c.get(&u).bearer_auth(&s).send().await?;
                        anyhow::ensure!(r.status().is_success(), "status {}", r.status());
                        r.bytes().await?;
                        Ok(())
                    }
                })
                .await?,
            );
            let (c1, w1) = (process_cpu(), run_queue_wait());
            direct_cpu += c1.saturating_sub(c0);
            direct_wait += w1.saturating_sub(w0);
            host_lat.extend(
                run_concurrent(conc, n / 2, || {
                    let h = host.clone();
                    let l = lookup.clone();
                    async move {
                        let d = h.ivr_lookup(l).await?;
                        anyhow::ensure!(d.source == "plugin", "fallback: {:?}", d.reason);
                        Ok(())
                    }
                })
                .await?,
            );
            host_cpu += process_cpu().saturating_sub(c1);
            host_wait += run_queue_wait().saturating_sub(w1);
        }
        host_lat.sort();
        direct_lat.sort();
        println!(
            "IVR conc={conc} n={} host_p50_us={:.0} host_p99_us={:.0} direct_p50_us={:.0} direct_p99_us={:.0} host_max_us={:.0} direct_max_us={:.0} host_cpu_us={:.0} direct_cpu_us={:.0} host_runq_us={:.0} direct_runq_us={:.0}",
            host_lat.len(),
            us(percentile(&host_lat, 50.0)),
            us(percentile(&host_lat, 99.0)),
            us(percentile(&direct_lat, 50.0)),
            us(percentile(&direct_lat, 99.0)),
            us(percentile(&host_lat, 100.0)),
            us(percentile(&direct_lat, 100.0)),
            us(host_cpu) / host_lat.len().max(1) as f64,
            us(direct_cpu) / direct_lat.len().max(1) as f64,
            us(host_wait) / host_lat.len().max(1) as f64,
            us(direct_wait) / direct_lat.len().max(1) as f64,
        );
    }
    env.host.shutdown_within(Duration::from_secs(2)).await;
    Ok(())
}

/// `conc` workers each running `n` requests back to back; every request's latency.
async fn run_concurrent<F, Fut>(conc: usize, n: usize, make: F) -> anyhow::Result<Vec<Duration>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let futs: Vec<Fut> = (0..n).map(|_| make()).collect();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(futs.len());
            for f in futs {
                let t = Instant::now();
                f.await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

// ---------------------------------------------------------------------------------------
// §3 end to end: call events per second logged into the stand-in across many tenants.

const SF_SECRETS: [(&str, &str); 3] = [
    ("salesforce.password", "pw-secret-1"),
    ("salesforce.security_token", "TOKENSECRET"),
    ("salesforce.client_secret", "client-secret-1"),
];

/// How the measured calls arrive.
#[derive(Clone, Copy)]
enum Shape {
    /// All at once, round-robin over the tenants.
    Burst,
    /// Every tenant makes `per_s` calls a second for `seconds` (the per-tenant rate at which
    /// batching is meant to pay: several calls per batch window).
    Sustained { per_s: u32, seconds: u32 },
}

async fn throughput(opts: &Opts, res: &mut Results) -> anyhow::Result<()> {
    let tenants = if opts.quick { 200 } else { 1000 };
    let events = if opts.quick { 2000 } else { 10_000 };
    for batch in [false, true] {
        throughput_one(tenants, events, batch, Shape::Burst, res).await?;
    }
    // A sustained 10 calls/s per tenant, within what the host drains (fewer tenants).
    let (tenants, seconds) = if opts.quick { (100, 5) } else { (200, 10) };
    let shape = Shape::Sustained { per_s: 10, seconds };
    throughput_one(tenants, tenants * 10 * seconds as usize, true, shape, res).await
}

async fn throughput_one(
    tenants: usize,
    events: usize,
    batch: bool,
    shape: Shape,
    res: &mut Results,
) -> anyhow::Result<()> {
    // The stand-in runs on its own runtime (threads named "standin") so that its CPU can be
    // told apart from the host's.
    let sf_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("standin")
        .enable_all()
        .build()?;
    let sf = sf_rt.spawn(StandIn::start()).await??;
    let org = sf.add_org(OrgSpec {
        username: "admin@acme.example".into(),
        password: "pw-secret-1".into(),
        security_token: "TOKENSECRET".into(),
        client_id: "ACME_CLIENT".into(),
        client_secret: "client-secret-1".into(),
        daily_api_limit: u64::MAX / 4,
        ..OrgSpec::default()
    });
    let mut toml = format!(
        r#"
[host]
allow_private_networks = ["127.0.0.0/8"]
[plugins.history-logger]
component = "{}"
events = ["ended"]
{}
[plugins.history-logger.grants]
http = ["{{config.login_url}}", "{{config.instance_url}}"]
secrets = ["salesforce.password", "salesforce.security_token", "salesforce.client_secret"]
state = true
contacts = "read"
"#,
        plugins_path("history-logger"),
        if batch {
            // As plugins.toml ships the history logger.
            "batch = { window_ms = 2000, max_events = 200 }"
        } else {
            ""
        }
    );
    let mut secrets = String::new();
    for t in 0..tenants {
        let _ = write!(
            toml,
            "[tenants.t{t}]\ndefault_country = \"JP\"\n[tenants.t{t}.plugins.history-logger]\nconfig = {{ login_url = \"{}\", auth = \"password\", username = \"admin@acme.example\", client_id = \"ACME_CLIENT\", language = \"ja\" }}\n",
            sf.base_url()
        );
        let _ = writeln!(secrets, "[t{t}.history-logger]");
        for (k, v) in SF_SECRETS {
            let _ = writeln!(secrets, "\"{k}\" = \"{v}\"");
        }
    }
    let dir = tempfile::tempdir()?;
    let secrets_path = dir.path().join("secrets.toml");
    std::fs::write(&secrets_path, secrets)?;
    let config_path = dir.path().join("plugins.toml");
    std::fs::write(&config_path, &toml)?;
    let mut o = HostOptions::new(&config_path, dir.path().join("data"));
    o.reload_interval = None;
    o.secrets_file = Some(secrets_path);
    let host = Host::start(o).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    // One known Contact per tenant, in the org and in the tenant's phone book.
    let number = |t: usize| format!("03-5{:03}-{:04}", t / 10000, t % 10000);
    for t in 0..tenants {
        let num = number(t);
        let id = org.insert(
            "Contact",
            json!({"LastName": format!("Caller {t}"), "Phone": num}),
        );
        let digits: String = num.chars().filter(char::is_ascii_digit).collect();
        host.storage().contacts_upsert(
            &format!("t{t}"),
            &[pbx_host::store::ContactRow {
                external_id: format!("Contact/{id}"),
                plugin: "contact-import".into(),
                record_type: "Contact".into(),
                name: format!("Caller {t}"),
                company: None,
                email: None,
                phones: vec![pbx_host::store::PhoneRow {
                    label: "Phone".into(),
                    number: num.clone(),
                    e164: Some(format!("+81{}", &digits[1..])),
                }],
                account_id: None,
                modified_at: Some(1),
            }],
        )?;
    }
    // Warm-up: one call per tenant (each logs in once and caches its session).
    for t in 0..tenants {
        let mut e = ended_call(&format!("t{t}"), &format!("w{t}"), &number(t));
        e.event_id = Some(format!("w{t}-ended"));
        host.ingest(e).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    if !host.wait_idle(Duration::from_secs(600)).await {
        anyhow::bail!("warm-up did not finish");
    }
    let warm_tasks = org.records("Task").len();
    org.reset_counters();
    let sf_cpu0 = threads_cpu("standin");
    let cpu0 = process_cpu();
    let started = Instant::now();
    let ingest = |i: usize| {
        let t = i % tenants;
        let mut e = ended_call(&format!("t{t}"), &format!("c{i}"), &number(t));
        e.event_id = Some(format!("c{i}-ended"));
        host.ingest(e)
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    match shape {
        Shape::Burst => (0..events).try_for_each(ingest)?,
        Shape::Sustained { per_s, .. } => {
            // One call per tenant per tick.
            let mut tick = tokio::time::interval(Duration::from_secs(1) / per_s);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for round in 0..events.div_ceil(tenants) {
                tick.tick().await;
                (round * tenants..((round + 1) * tenants).min(events)).try_for_each(ingest)?;
            }
        }
    }
    let ingested = started.elapsed();
    if !host.wait_idle(Duration::from_secs(1800)).await {
        anyhow::bail!("deliveries did not finish");
    }
    let took = started.elapsed();
    let cpu = process_cpu().saturating_sub(cpu0);
    let sf_cpu = threads_cpu("standin").saturating_sub(sf_cpu0);
    let host_cpu = cpu.saturating_sub(sf_cpu);
    let tasks = org.records("Task").len() - warm_tasks;
    let api = org.api_calls();
    let key = match (batch, shape) {
        (false, _) => "unbatched",
        (true, Shape::Burst) => "batched",
        (true, Shape::Sustained { .. }) => "batched_sustained",
    };
    let label = match (batch, shape) {
        (false, _) => "unbatched".to_string(),
        (true, Shape::Burst) => "batched".to_string(),
        (true, Shape::Sustained { per_s, seconds }) => {
            format!("batched, {per_s} calls/s per tenant for {seconds} s")
        }
    };
    let per_s = events as f64 / took.as_secs_f64();
    let per_core = events as f64 / host_cpu.as_secs_f64();
    res.note(format!(
        "throughput {label}: {tenants} tenants, {events} events ingested in {:.2} s, all logged in {:.2} s = {per_s:.0}/s wall; process CPU {:.2} s, stand-in threads {:.2} s, host {:.2} s = {:.0} µs/event; {tasks} Tasks, {api} API calls",
        ingested.as_secs_f64(),
        took.as_secs_f64(),
        cpu.as_secs_f64(),
        sf_cpu.as_secs_f64(),
        host_cpu.as_secs_f64(),
        us(host_cpu) / events as f64
    ));
    if tasks != events {
        res.note(format!(
            "throughput {label}: {tasks} Tasks for {events} events"
        ));
    }
    res.row(
        &format!("§3 events/s per core of host CPU ({label})"),
        format!(
            "{per_core:.0} ({:.0} µs host CPU/event; {per_s:.0}/s wall, {tenants} tenants)",
            us(host_cpu) / events as f64
        ),
        "≥ 10,000",
        Verdict::of(per_core >= 10_000.0),
    );
    let api_per_call = api as f64 / events as f64;
    let target = if batch { 0.1 } else { 1.0 };
    res.row(
        &format!("§3 Salesforce API calls per logged call ({label})"),
        format!("{api_per_call:.3} ({api} for {events}; {tasks} Tasks)"),
        if batch { "≤ 0.1" } else { "≤ 1" },
        Verdict::of(api_per_call <= target && tasks == events),
    );
    res.json.insert(
        format!("throughput.{key}.events_per_core_s"),
        json!(per_core),
    );
    res.json.insert(
        format!("throughput.{key}.api_per_call"),
        json!(api_per_call),
    );
    host.shutdown_within(Duration::from_secs(5)).await;
    drop(sf);
    sf_rt.shutdown_background();
    Ok(())
}

/// CPU time of this process's threads whose name starts with `prefix` (`/proc/self/task`).
fn threads_cpu(prefix: &str) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut ticks = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if !comm.starts_with(prefix) {
                continue;
            }
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // fields after the ")" : state is field 3; utime 14, stime 15 (1-based)
            if let Some(rest) = stat.rsplit(')').next() {
                let f: Vec<&str> = rest.split_whitespace().collect();
                let p = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                ticks += p(11) + p(12);
            }
        }
    }
    Duration::from_millis(ticks * 1000 / hz)
}

// ---------------------------------------------------------------------------------------
// §4 density: RSS with N tenants × 4 plugins configured, idle and under load.

async fn density(opts: &Opts, res: &mut Results) -> anyhow::Result<()> {
    let counts: &[usize] = if opts.quick {
        &[100, 2000]
    } else {
        &[100, 1000, 5000, 10_000]
    };
    let plugins = [
        "minimal-plugin",
        "bench-plugin",
        "probe-plugin",
        "history-logger",
    ];
    let mut idle_curve = Vec::new();
    let mut load_curve = Vec::new();
    for &n in counts {
        let mut toml = String::from("[host]\n");
        for p in plugins {
            let events = if p == "history-logger" {
                "[\"memo-updated\"]"
            } else {
                "[\"ended\"]"
            };
            let _ = writeln!(
                toml,
                "[plugins.{p}]\ncomponent = \"{}\"\nevents = {events}\n[plugins.{p}.grants]\nstate = true",
                plugins_path(p)
            );
        }
        for t in 0..n {
            let _ = writeln!(toml, "[tenants.t{t}]\ndefault_country = \"JP\"");
            for p in plugins {
                let _ = writeln!(toml, "[tenants.t{t}.plugins.{p}]");
            }
        }
        // Each size in a fresh child process: RSS is per process and never shrinks.
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("plugins.toml"), &toml)?;
        let exe = std::env::current_exe()?;
        let events = if opts.quick { 2000 } else { 10_000 };
        let out = std::process::Command::new(exe)
            .env("LOADGEN_DENSITY_CHILD", dir.path())
            .env("LOADGEN_DENSITY_TENANTS", n.to_string())
            .env("LOADGEN_DENSITY_EVENTS", events.to_string())
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let line = text
            .lines()
            .find(|l| l.starts_with("DENSITY "))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "density child failed: {}{}",
                    text,
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        let v: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let (start_ms, idle_mib, load_mib, peak_mib) = (v[0], v[1], v[2], v[3]);
        res.note(format!(
            "density {n} tenants x 4 plugins: start {start_ms:.0} ms, RSS idle {idle_mib:.1} MiB, after {events} events {load_mib:.1} MiB, peak {peak_mib:.1} MiB"
        ));
        idle_curve.push((n as f64, idle_mib));
        load_curve.push((n as f64, peak_mib));
        if n == *counts.last().unwrap_or(&0) {
            res.row(
                &format!("§4 RSS, {n} tenants × 4 plugins (idle / peak under load)"),
                format!("{idle_mib:.0} / {peak_mib:.0} MiB (start {start_ms:.0} ms)"),
                "≤ 200 MB",
                Verdict::of(peak_mib * 1.048_576 <= 200.0),
            );
            res.json.insert("density.idle_mib".into(), json!(idle_mib));
            res.json.insert("density.peak_mib".into(), json!(peak_mib));
        }
    }
    res.svg(
        "rss-by-tenants.svg",
        svg_chart(
            "RSS by tenant count (4 plugins each)",
            "tenants",
            "MiB",
            &[("idle", idle_curve), ("peak under load", load_curve)],
            true,
        ),
    );
    Ok(())
}

/// The density child: start the host from the prepared directory, report RSS idle, then
/// after events to every tenant (two plugins each) and 64 concurrent IVR look-ups.
async fn density_child(dir: PathBuf, tenants: usize, events: usize) -> anyhow::Result<()> {
    let mut o = HostOptions::new(dir.join("plugins.toml"), dir.join("data"));
    o.reload_interval = None;
    let t = Instant::now();
    let host = Host::start(o).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let start = t.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle, _) = rss_kib();
    pbx_bench::reset_peak_rss();
    for i in 0..events {
        let tn = i % tenants;
        host.ingest(ended_call(
            &format!("t{tn}"),
            &format!("c{i}"),
            "0312345678",
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let lookups = run_concurrent(64, 4, || {
        let h = host.clone();
        let n = tenants;
        async move {
            let l: IvrLookup = serde_json::from_value(json!({
                "tenant": format!("t{}", rand_index(n)),
                "call": ended_call("t0", "ivr", "0312345678").call,
                "deadline_ms": 2000,
                "plugin": "probe-plugin",
            }))?;
            h.ivr_lookup(l).await?;
            Ok(())
        }
    });
    lookups.await?;
    if !host.wait_idle(Duration::from_secs(600)).await {
        anyhow::bail!("deliveries did not finish");
    }
    let (load, peak) = rss_kib();
    println!(
        "DENSITY {:.1} {:.1} {:.1} {:.1}",
        ms(start),
        idle as f64 / 1024.0,
        load as f64 / 1024.0,
        peak.max(idle) as f64 / 1024.0
    );
    host.shutdown_within(Duration::from_secs(2)).await;
    Ok(())
}

fn rand_index(n: usize) -> usize {
    (Instant::now().elapsed().subsec_nanos() as usize ^ std::process::id() as usize) % n.max(1)
}

// ---------------------------------------------------------------------------------------
// §6 contact import: N Contacts from the stand-in (this process) into the phone book by the
// host and the contact-import component (a child process per size; see `import.rs`).

/// Peak RSS at the largest size over the smallest: at most this counts as "does not grow".
const IMPORT_RSS_RATIO_MAX: f64 = 1.2;

async fn contact_import(opts: &Opts, res: &mut Results) -> anyhow::Result<()> {
    let sizes: &[usize] = if opts.quick {
        &[10_000, 100_000]
    } else {
        &[10_000, 50_000, 100_000, 200_000]
    };
    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut samples = Vec::new();
    let (mut peak_curve, mut base_curve) = (Vec::new(), Vec::new());
    for &n in sizes {
        let s = import::measure(n).await?;
        res.note(format!(
            "import {} contacts: {:.2} s in {} run(s), child CPU {:.2} s; RSS before {:.1} MiB, peak {:.1} MiB, after {:.1} MiB; {} API calls ({} login, {} query, {} further pages); seeding the stand-in {:.1} s",
            thousands(n),
            s.elapsed.as_secs_f64(),
            s.runs,
            s.cpu.as_secs_f64(),
            mib(s.base_kib),
            mib(s.peak_kib),
            mib(s.after_kib),
            s.api_calls,
            s.logins,
            s.queries,
            s.more_pages,
            s.seed.as_secs_f64(),
        ));
        res.json.insert(
            format!("import.{n}.seconds"),
            json!(s.elapsed.as_secs_f64()),
        );
        res.json
            .insert(format!("import.{n}.peak_mib"), json!(mib(s.peak_kib)));
        res.json
            .insert(format!("import.{n}.api_calls"), json!(s.api_calls));
        peak_curve.push((n as f64, mib(s.peak_kib)));
        base_curve.push((n as f64, mib(s.base_kib)));
        samples.push(s);
    }
    let (Some(first), Some(reference)) = (
        samples.first(),
        samples
            .iter()
            .find(|s| s.records == 100_000)
            .or(samples.last()),
    ) else {
        anyhow::bail!("no sizes measured");
    };
    let n = reference.records;
    let secs = reference.elapsed.as_secs_f64();
    res.row(
        &format!("§6 contact import, {} records: time", thousands(n)),
        format!(
            "{secs:.1} s ({:.0} records/s; {} run(s); host process CPU {:.1} s)",
            n as f64 / secs.max(1e-9),
            reference.runs,
            reference.cpu.as_secs_f64()
        ),
        "≤ 60 s",
        Verdict::of(secs <= 60.0),
    );
    let ratio = |s: &import::Sample| s.peak_kib as f64 / first.peak_kib.max(1) as f64;
    let per_size: Vec<String> = samples
        .iter()
        .map(|s| format!("{}: {:.1} MiB", thousands(s.records), mib(s.peak_kib)))
        .collect();
    let worst = samples.iter().map(ratio).fold(0.0, f64::max);
    res.row(
        "§6 contact import: peak RSS (VmHWM of the host process) by record count",
        format!(
            "{}; peak({}) / peak({}) = {:.2}",
            per_size.join(", "),
            thousands(n),
            thousands(first.records),
            ratio(reference)
        ),
        &format!("does not grow: every size ≤ {IMPORT_RSS_RATIO_MAX} × the smallest"),
        Verdict::of(worst <= IMPORT_RSS_RATIO_MAX),
    );
    res.row(
        &format!(
            "§6 contact import, {} records: Salesforce API calls",
            thousands(n)
        ),
        format!(
            "{} ({} login + {} query + {} further pages of 2,000)",
            reference.api_calls, reference.logins, reference.queries, reference.more_pages
        ),
        "(reported)",
        Verdict::Info,
    );
    res.json
        .insert("import.rss_ratio".into(), json!(ratio(reference)));
    res.svg(
        "rss-by-import-size.svg",
        svg_chart(
            "Host RSS during a contact import, by record count",
            "records",
            "MiB",
            &[
                ("peak during import", peak_curve),
                ("after start-up", base_curve),
            ],
            true,
        ),
    );
    Ok(())
}
