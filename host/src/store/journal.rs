//! Write-behind for the integration log and usage counters.
//!
//! Every invocation produces log lines and counter increments. Committing them one invocation
//! at a time costs a SQLite transaction each (most of an invocation's host-side cost); here they
//! are buffered and written together every [`FLUSH_EVERY`], and before anything reads them. A
//! crash loses at most the last interval of log lines and counters; never an event (the delivery
//! queue is written through, not here).
//!
//! The journal's writer also prunes what the operator's retention no longer keeps (old and
//! surplus log lines, old dead letters), every [`PRUNE_EVERY`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{LogEntry, Storage};

/// How long log lines and counters may wait in memory.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// How often old log lines and dead letters are pruned (also once soon after start).
pub const PRUNE_EVERY: Duration = Duration::from_secs(300);
const DAY_MS: i64 = 86_400_000;
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

/// How long the host keeps what plugins made it store (`[host]` in plugins.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Log lines older than this many days go.
    pub log_days: u64,
    /// Log lines per tenant beyond the newest this many go.
    pub log_rows_per_tenant: u64,
    /// Dead letters that died more than this many days ago go.
    pub dead_letter_days: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            log_days: 14,
            log_rows_per_tenant: 100_000,
            dead_letter_days: 30,
        }
    }
}

impl Retention {
    /// The operator's `[host]` values over the defaults.
    pub fn from_host(h: &crate::config::HostSettings) -> Self {
        let d = Retention::default();
        Retention {
            log_days: h.log_retention_days.unwrap_or(d.log_days),
            log_rows_per_tenant: h.log_rows_per_tenant.unwrap_or(d.log_rows_per_tenant),
            dead_letter_days: h.dead_letter_retention_days.unwrap_or(d.dead_letter_days),
        }
    }

    /// Log lines written before this instant go.
    pub fn log_cutoff_ms(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub((self.log_days as i64).saturating_mul(DAY_MS))
    }

    /// Dead letters that died before this instant go.
    pub fn dead_letter_cutoff_ms(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub((self.dead_letter_days as i64).saturating_mul(DAY_MS))
    }
}

/// What one pruning pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub log_rows: u64,
    pub dead_letters: u64,
}

/// Buffered writes in front of [`Storage`].
pub struct Journal {
    storage: Arc<dyn Storage>,
    retention: Mutex<Retention>,
    pending: Mutex<Pending>,
    /// Serialises flushes so that log lines keep their order.
    flushing: Mutex<()>,
}

impl Journal {
    pub fn new(storage: Arc<dyn Storage>) -> Arc<Self> {
        Arc::new(Journal {
            storage,
            retention: Mutex::new(Retention::default()),
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

    /// The retention in force (set at start and on every reload of plugins.toml).
    pub fn set_retention(&self, retention: Retention) {
        *self.retention.lock().unwrap_or_else(|p| p.into_inner()) = retention;
    }

    pub fn retention(&self) -> Retention {
        *self.retention.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write what is buffered, then delete what the retention no longer keeps.
    pub fn prune(&self, now_ms: i64) -> super::Result<Pruned> {
        self.flush()?;
        let pruned = self.storage.prune(now_ms, &self.retention())?;
        if pruned != Pruned::default() {
            tracing::info!(
                log_rows = pruned.log_rows,
                dead_letters = pruned.dead_letters,
                "pruned the integration log and dead letters"
            );
        }
        Ok(pruned)
    }

    /// Flush every [`FLUSH_EVERY`] and prune every [`PRUNE_EVERY`] until `stop` resolves,
    /// then flush once more.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        // The first pass soon after start: a host restarted often still prunes.
        let mut next_prune = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FLUSH_EVERY) => {}
                _ = &mut stop => break,
            }
            let j = self.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || j.flush()).await {
                tracing::error!("cannot write the integration log and usage counters: {e}");
            }
            if tokio::time::Instant::now() >= next_prune {
                next_prune = tokio::time::Instant::now() + PRUNE_EVERY;
                let j = self.clone();
                let pass = tokio::task::spawn_blocking(move || j.prune(crate::clock::now_ms()));
                if let Ok(Err(e)) = pass.await {
                    tracing::error!("cannot prune the integration log and dead letters: {e}");
                }
            }
        }
        if let Err(e) = self.flush() {
            tracing::error!("cannot write the integration log and usage counters: {e}");
        }
    }
}
