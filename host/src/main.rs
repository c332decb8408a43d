//! `pbx-host`: the plugin host as a daemon beside the PBX, and its operator tools.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pbx_host::{Host, HostOptions};

#[derive(Parser)]
#[command(
    name = "pbx-host",
    version,
    about = "WebAssembly plugin host for a cloud PBX"
)]
struct Cli {
    /// plugins.toml: plugins, their grants and limits, tenants.
    #[arg(
        long,
        short,
        global = true,
        default_value = "plugins.toml",
        env = "PBX_HOST_CONFIG"
    )]
    config: PathBuf,
    /// Where the database, secrets and compiled components live.
    #[arg(long, global = true, default_value = "data", env = "PBX_HOST_DATA")]
    data_dir: PathBuf,
    /// A secrets file (`[tenant.plugin] name = "value"`) loaded at start.
    #[arg(long, global = true, env = "PBX_HOST_SECRETS")]
    secrets: Option<PathBuf>,
    /// The key secrets are encrypted with at rest: a file holding 32 bytes as 64 hex digits or
    /// base64 (or set PBX_HOST_SECRET_KEY). Without it, a key file in the data directory.
    #[arg(long, global = true)]
    secret_key_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host with its HTTP/JSON API.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080", env = "PBX_HOST_LISTEN")]
        listen: String,
        /// A file holding the operator's API token (or set PBX_HOST_OPERATOR_TOKEN).
        #[arg(long)]
        operator_token_file: Option<PathBuf>,
        /// Serve the API without any authentication (local development only): only on a
        /// loopback address, and with a warning at start.
        #[arg(long)]
        no_auth: bool,
    },
    /// Validate plugins.toml and load every component; exit non-zero on any problem.
    CheckConfig,
    /// Run a plugin's settings check for a tenant ("verify settings").
    Verify {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        plugin: String,
    },
    /// Play a file of recorded call events (JSON lines) through the tenants' plugins.
    Replay {
        /// One call event (JSON) per line.
        file: PathBuf,
        /// How long to wait for deliveries to finish.
        #[arg(long, default_value = "60")]
        wait_seconds: u64,
    },
}

/// `--no-auth` serves an API anyone who can connect may drive: only on loopback. Every
/// address `listen` names must be a loopback one.
async fn require_loopback(listen: &str) -> anyhow::Result<()> {
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(listen)
        .await
        .with_context(|| format!("cannot resolve --listen {listen}"))?
        .collect();
    if addrs.is_empty() {
        anyhow::bail!("--listen {listen} names no address");
    }
    if let Some(bad) = addrs.iter().find(|a| !a.ip().to_canonical().is_loopback()) {
        anyhow::bail!(
            "--no-auth serves the API without authentication, so it listens only on loopback: \
             --listen {listen} is {} (use 127.0.0.1:PORT or [::1]:PORT, or give an operator token \
             with --operator-token-file to listen elsewhere)",
            bad.ip()
        );
    }
    Ok(())
}

/// Ctrl-C or SIGTERM (what a service manager sends).
async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn options(cli: &Cli) -> anyhow::Result<HostOptions> {
    let mut o = HostOptions::new(&cli.config, &cli.data_dir);
    o.secrets_file = cli.secrets.clone();
    let key_text = match &cli.secret_key_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => std::env::var("PBX_HOST_SECRET_KEY")
            .ok()
            .filter(|k| !k.trim().is_empty()),
    };
    if let Some(text) = key_text {
        o.secret_key = Some(
            pbx_host::capabilities::SecretKey::parse(&text)
                .map_err(|e| anyhow::anyhow!("secret key: {e}"))?,
        );
    }
    Ok(o)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Serve {
            listen,
            operator_token_file,
            no_auth,
        } => {
            let mut opts = options(&cli)?;
            opts.operator_token = match operator_token_file {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?
                        .trim()
                        .to_string(),
                ),
                None => std::env::var("PBX_HOST_OPERATOR_TOKEN")
                    .ok()
                    .filter(|t| !t.trim().is_empty()),
            };
            if opts.operator_token.is_none() && !no_auth {
                anyhow::bail!(
                    "no operator token: give --operator-token-file or PBX_HOST_OPERATOR_TOKEN, or --no-auth for local development"
                );
            }
            let open_api = opts.operator_token.is_none();
            if open_api {
                require_loopback(listen).await?;
            }
            // Bound before the host starts, so that its plugins never see a moment in which
            // the API's socket is not refused to them.
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let local = listener.local_addr()?;
            opts.listen_sockets.push(local);
            let host = Host::start(opts).await?;
            if open_api {
                let warning = format!(
                    "WARNING: --no-auth: the API on http://{local} accepts every request without a token; \
                     any process or user on this machine can act as the operator (mint tenant tokens, \
                     change every tenant's settings and secrets, read every log). Local development only."
                );
                eprintln!("{warning}");
                tracing::warn!("{warning}");
            }
            eprintln!("pbx-host listening on http://{local}");
            let h = host.clone();
            pbx_host::api::serve(host, listener, async move {
                wait_for_stop_signal().await;
                eprintln!("stopping: finishing deliveries in flight");
                h.shutdown().await;
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig => {
            let mut opts = options(&cli)?;
            opts.reload_interval = None;
            let host = Host::start(opts).await?;
            let mut ok = true;
            for s in host.plugin_statuses() {
                match &s.error {
                    None => println!(
                        "ok      {} ({:?}; exports {})",
                        s.id,
                        s.source,
                        s.exports.join(", ")
                    ),
                    Some(e) => {
                        ok = false;
                        println!("FAILED  {}: {e}", s.id);
                    }
                }
            }
            host.shutdown().await;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Verify { tenant, plugin } => {
            let mut opts = options(&cli)?;
            opts.reload_interval = None;
            let host = Host::start(opts).await?;
            let items = host.verify(tenant, plugin).await?;
            let mut ok = true;
            for i in &items {
                ok &= i.ok;
                let field = i
                    .field
                    .as_deref()
                    .map(|f| format!(" [{f}]"))
                    .unwrap_or_default();
                println!(
                    "{} {}{}: {}",
                    if i.ok { "ok  " } else { "FAIL" },
                    i.name,
                    field,
                    i.message
                );
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Replay { file, wait_seconds } => {
            let mut opts = options(&cli)?;
            opts.reload_interval = None;
            let host = Host::start(opts).await?;
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let mut tenants = std::collections::BTreeSet::new();
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let event: pbx_host::events::CallEvent = serde_json::from_str(line)
                    .with_context(|| format!("{}:{}: not a call event", file.display(), n + 1))?;
                tenants.insert(event.tenant.clone());
                let receipt = host
                    .ingest(event)
                    .with_context(|| format!("{}:{}", file.display(), n + 1))?;
                println!("queued {} for {:?}", receipt.event_id, receipt.queued_for);
            }
            let idle = host.wait_idle(Duration::from_secs(*wait_seconds)).await;
            for t in &tenants {
                println!("--- integration log of {t} (oldest first)");
                for e in host.log(t, 1000)?.iter().rev() {
                    println!("{} {:5} {}: {}", e.at, e.level, e.plugin, e.message);
                }
            }
            Ok(if idle {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
