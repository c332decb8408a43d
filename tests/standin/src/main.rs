//! `sf-standin`: runs the Salesforce stand-in as a process, for manual testing and for
//! tests not written in Rust (which drive it through the `/__standin` control API).

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};
use sf_standin::{OrgSpec, StandIn, seed};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Seed {
    /// No org; create them with `POST /__standin/orgs`.
    None,
    /// One org with fixed credentials and sample users, accounts, contacts and leads.
    Demo,
    /// One empty org with generated credentials.
    Empty,
}

/// A local Salesforce stand-in: OAuth, SOAP login and the REST data API, in memory.
#[derive(Parser, Debug)]
#[command(name = "sf-standin", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
    /// What to create at start-up.
    #[arg(long, value_enum, default_value_t = Seed::None)]
    seed: Seed,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let sf = StandIn::start_on(args.listen).await?;
    let org = match args.seed {
        Seed::None => None,
        Seed::Demo => {
            let org = sf
                .try_add_org(seed::demo_spec())
                .map_err(anyhow::Error::msg)?;
            seed::demo(&org);
            Some(org)
        }
        Seed::Empty => Some(
            sf.try_add_org(OrgSpec::default())
                .map_err(anyhow::Error::msg)?,
        ),
    };
    // The base URL goes to stdout once the seed is in place, so a script can wait for it.
    println!("{}", sf.base_url());
    if let Some(org) = org {
        let s = org.spec();
        eprintln!("org_id        {}", s.org_id);
        eprintln!("username      {}", s.username);
        eprintln!("password      {}", s.password);
        eprintln!("token         {}", s.security_token);
        eprintln!("client_id     {}", s.client_id);
        eprintln!("client_secret {}", s.client_secret);
        if let Some(rt) = s.refresh_tokens.first() {
            eprintln!("refresh_token {rt}");
        }
    }
    eprintln!(
        "control API: {}/__standin/orgs ; stop with Ctrl-C",
        sf.base_url()
    );
    tokio::signal::ctrl_c().await?;
    sf.shutdown().await;
    Ok(())
}
