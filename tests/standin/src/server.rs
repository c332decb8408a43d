//! The listener and per-connection serving, driven by hand (not `axum::serve`) because two
//! faults act below HTTP: `DropConnection` closes one connection without a response, and
//! `RefuseConnections` closes the listening socket for a while so that clients see
//! "connection refused", then binds the same address again.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::http::DropConnection;
use crate::org::lock;

/// Server-wide switches set by request handlers.
#[derive(Default)]
pub(crate) struct ServerCtl {
    refuse_until: Mutex<Option<Instant>>,
    changed: Notify,
}

impl ServerCtl {
    /// Stop accepting connections for `d` (extends a refusal already in progress).
    pub fn refuse(&self, d: Duration) {
        let until = Instant::now() + crate::http::capped(d);
        let mut r = lock(&self.refuse_until);
        *r = Some(r.map_or(until, |u| u.max(until)));
        drop(r);
        self.changed.notify_one();
    }

    pub fn refusing_until(&self) -> Option<Instant> {
        let r = lock(&self.refuse_until);
        r.filter(|u| *u > Instant::now())
    }

    pub fn refusing(&self) -> bool {
        self.refusing_until().is_some()
    }
}

async fn rebind(addr: SocketAddr, shutdown: &mut watch::Receiver<bool>) -> Option<TcpListener> {
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Some(l),
            Err(e) => {
                tracing::warn!("sf-standin: cannot re-bind {addr} yet: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = shutdown.changed() => return None,
                }
            }
        }
    }
}

/// Accepts connections until shutdown.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    app: Router,
    ctl: Arc<ServerCtl>,
    mut shutdown: watch::Receiver<bool>,
) {
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("sf-standin: listener has no address: {e}");
            return;
        }
    };
    let mut listener = Some(listener);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let Some(l) = &listener else {
            // Refusing: the port is closed; wait for the end of the period.
            if let Some(until) = ctl.refusing_until() {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            listener = rebind(addr, &mut shutdown).await;
            if listener.is_none() {
                return;
            }
            continue;
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = ctl.changed.notified() => {
                if ctl.refusing() {
                    listener = None;
                }
            }
            accepted = l.accept() => match accepted {
                Ok((stream, _)) => {
                    if ctl.refusing() {
                        drop(stream);
                        listener = None;
                        continue;
                    }
                    tokio::spawn(serve_connection(stream, app.clone(), ctl.clone(), shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!("sf-standin: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    ctl: Arc<ServerCtl>,
    mut shutdown: watch::Receiver<bool>,
) {
    let abort = Arc::new(Notify::new());
    let svc = {
        let abort = abort.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let app = app.clone();
            let abort = abort.clone();
            let ctl = ctl.clone();
            async move {
                if ctl.refusing() {
                    abort.notify_one();
                    return std::future::pending::<Result<axum::response::Response, Infallible>>()
                        .await;
                }
                // Salesforce finishes a request whose client has gone away (a create that
                // timed out on the client's side still creates its record): the handler runs
                // in a task of its own, so that a closed connection does not cancel it halfway.
                let resp = match tokio::spawn(app.oneshot(req)).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(never)) => match never {},
                    Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                };
                if resp.extensions().get::<DropConnection>().is_some() {
                    // Close the socket instead of answering: the client sees the connection
                    // end before a response (a "connection closed" / reset error).
                    abort.notify_one();
                    return std::future::pending().await;
                }
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::debug!("sf-standin: connection ended: {e}");
            }
        }
        _ = abort.notified() => {}
        _ = shutdown.changed() => {}
    }
}
