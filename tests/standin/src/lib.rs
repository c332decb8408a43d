//! `sf-standin`: a local, faithful Salesforce stand-in for testing the PBX's Salesforce
//! plugins. Salesforce itself is never reachable from the test machines, so this server
//! speaks the real wire formats (docs/salesforce-api.md §0–5, checked against the
//! WireMock recordings in `tests/fixtures/salesforce-recorded/`) over a real socket.
//!
//! One server hosts several orgs (one per PBX tenant). The base URL serves as both the login
//! host and the instance URL.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use sf_standin::{StandIn, OrgSpec, Fault, FaultKind};
//! let sf = StandIn::start().await?;
//! let org = sf.add_org(OrgSpec::default());
//! org.insert("Contact", serde_json::json!({"LastName": "Yamada", "Phone": "03-1234-5678"}));
//! org.inject(Fault::new(FaultKind::Status(503)).path_contains("/search"));
//! println!("login at {}/services/oauth2/token", sf.base_url());
//! # Ok(()) }
//! ```
//!
//! Module map: `server` (listener, connection-level faults), `http` (router, REST pipeline,
//! headers, accounting), `auth` (OAuth), `soap` (SOAP login), `rest` (resource routing),
//! `sobjects` (CRUD, replication), `describe`, `query` (paging) and `soql` (lexer, parser,
//! evaluator), `sosl` and `phone` (search), `composite` (composite, collections), `dml`
//! (validation and writes), `schema` (objects and fields), `store` (records), `org` (org
//! state and the test API), `faults`, `control` (`/__standin` API), `seed` (demo data).

mod auth;
mod composite;
mod control;
mod describe;
mod dml;
mod http;
mod query;
mod rest;
mod server;
mod soap;
mod sobjects;

pub mod errors;
pub mod faults;
pub mod ids;
pub mod json;
pub mod org;
pub mod phone;
pub mod schema;
pub mod seed;
pub mod soql;
pub mod sosl;
pub mod store;
pub mod values;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use errors::ApiError;
pub use faults::{Fault, FaultKind};
pub use org::{LoggedRequest, Org, OrgSpec, SeedError};
pub use rest::{LATEST_VERSION, OLDEST_VERSION};
pub use schema::{CustomField, CustomFieldType};

/// A running stand-in. Dropping it (or [`StandIn::shutdown`]) stops the server.
pub struct StandIn {
    shared: Arc<http::Shared>,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl StandIn {
    /// Starts on `127.0.0.1` with a free port.
    pub async fn start() -> anyhow::Result<StandIn> {
        StandIn::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on a given address.
    pub async fn start_on(addr: SocketAddr) -> anyhow::Result<StandIn> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(http::Shared {
            base_url: format!("http://{addr}"),
            orgs: RwLock::new(Vec::new()),
            ctl: Arc::new(server::ServerCtl::default()),
        });
        let app = http::router(shared.clone());
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(server::accept_loop(listener, app, shared.ctl.clone(), rx));
        Ok(StandIn {
            shared,
            addr,
            shutdown: tx,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`: the login host and the instance URL of every org.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds an org.
    ///
    /// # Panics
    /// If the org id is not a valid `00D` id or is already taken; see [`StandIn::try_add_org`].
    pub fn add_org(&self, spec: OrgSpec) -> Org {
        match self.try_add_org(spec) {
            Ok(o) => o,
            Err(e) => panic!("sf-standin: cannot add org: {e}"),
        }
    }

    pub fn try_add_org(&self, spec: OrgSpec) -> Result<Org, String> {
        self.shared.create_org(spec)
    }

    /// An org by id (15 or 18 characters).
    pub fn org(&self, org_id: &str) -> Option<Org> {
        self.shared.org(org_id)
    }

    pub fn orgs(&self) -> Vec<Org> {
        self.shared.all_orgs()
    }

    /// Stops accepting, closes open connections and waits for the server task.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
