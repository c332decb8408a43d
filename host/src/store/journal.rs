//! Write-behind for the integration log and usage counters.
//!
//! Every invocation produces log lines and counter increments. Committing them one invocation
//! at a time costs a SQLite transaction each (most of an invocation's host-side cost); here they
//! are buffered and written together every [`FLUSH_EVERY`], and before anything reads them. A
//! crash loses at most the last interval of log lines and counters; never an event (the delivery
//! queue is written through, not here).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{LogEntry, Storage};

/// How long log lines and counters may wait in memory.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Log lines buffered before a writer flushes inline (bounds memory under a burst, or where
/// no flush task runs).
const MAX_PENDING_LINES: usize = 8192;

/// (tenant, plugin, day) of a group of counters.
type UsageScope = (String, String, String);

#[derive(Default)]
struct Pending {
    logs: Vec<LogEntry>,
    /// (tenant, plugin, day, counter) -> increment
    usage: HashMap<(String, String, String, String), i64>,
}

/// Buffered writes in front of [`Storage`].
pub struct Journal {
    storage: Arc<dyn Storage>,
    pending: Mutex<Pending>,
    /// Serialises flushes so that log lines keep their order.
    flushing: Mutex<()>,
}

impl Journal {
    pub fn new(storage: Arc<dyn Storage>) -> Arc<Self> {
        Arc::new(Journal {
            storage,
            pending: Mutex::default(),
            flushing: Mutex::new(()),
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn log(&self, entries: Vec<LogEntry>) {
        if entries.is_empty() {
            return;
        }
        let full = {
            let mut p = self.pending();
            p.logs.extend(entries);
            p.logs.len() >= MAX_PENDING_LINES
        };
        if full && let Err(e) = self.flush() {
            tracing::error!("cannot write the integration log: {e}");
        }
    }

    pub fn usage(&self, tenant: &str, plugin: &str, day: &str, counters: &[(&str, i64)]) {
        let mut p = self.pending();
        for (name, n) in counters {
            if *n != 0 {
                *p.usage
                    .entry((tenant.into(), plugin.into(), day.into(), (*name).into()))
                    .or_default() += n;
            }
        }
    }

    /// Write everything buffered now.
    pub fn flush(&self) -> super::Result<()> {
        let _order = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let taken = std::mem::take(&mut *self.pending());
        self.storage.log_append(&taken.logs)?;
        let mut by_scope: HashMap<UsageScope, Vec<(&str, i64)>> = HashMap::new();
        for ((tenant, plugin, day, counter), n) in &taken.usage {
            by_scope
                .entry((tenant.clone(), plugin.clone(), day.clone()))
                .or_default()
                .push((counter.as_str(), *n));
        }
        for ((tenant, plugin, day), counters) in by_scope {
            self.storage.usage_add(&tenant, &plugin, &day, &counters)?;
        }
        Ok(())
    }

    /// Flush every [`FLUSH_EVERY`] until `stop` resolves, then once more.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FLUSH_EVERY) => {}
                _ = &mut stop => break,
            }
            let j = self.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || j.flush()).await {
                tracing::error!("cannot write the integration log and usage counters: {e}");
            }
        }
        if let Err(e) = self.flush() {
            tracing::error!("cannot write the integration log and usage counters: {e}");
        }
    }
}
