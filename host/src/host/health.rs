//! Readiness: whether this host should be given traffic now ([`Host::readiness`],
//! `GET /readyz`). Liveness is `/healthz` (the process answers); readiness says whether it can
//! do its job. Three checks:
//!
//! - **storage**: the database commits a write (a probe row) and the data directory's
//!   filesystem has at least the free-space floor ([`crate::HostOptions::min_free_disk_bytes`],
//!   `[host] min_free_disk_mib`). The probe runs at most once per [`PROBE_TTL`] however often
//!   the check is asked (concurrent callers wait for the one probe in progress), so a load
//!   balancer polling it cannot load the database. An ingest whose commit failed marks
//!   storage failing until a later probe or commit succeeds, so readiness fails while ingest
//!   cannot commit, even between probes.
//! - **plugins**: the initial plugin load has completed. Plugins that failed to load are
//!   listed but do not fail readiness: one broken plugin must not take every host out of
//!   rotation (the other plugins run; `GET /v1/plugins` says what is wrong with it).
//! - **queue**: the delivery loop went round within [`MAX_LOOP_SILENCE_MS`]; and the host is
//!   not shutting down.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Host, IngestError, IngestReceipt, PluginStatus};
use crate::clock::now_ms;

/// The default free-space floor of the data directory's filesystem: 8 MiB.
pub const DEFAULT_MIN_FREE_DISK_BYTES: u64 = 8 << 20;

/// A delivery loop silent for longer than this is stuck.
pub const MAX_LOOP_SILENCE_MS: i64 = 60_000;

/// How long a storage probe's result is reused.
pub const PROBE_TTL: Duration = Duration::from_secs(1);

/// What [`Host::readiness`] reports; `/readyz` answers it as JSON (200 when `ready`, else 503).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Readiness {
    /// Every check passed.
    pub ready: bool,
    pub checks: ReadinessChecks,
}

/// Each check of [`Readiness`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReadinessChecks {
    pub storage: StorageCheck,
    pub plugins: PluginsCheck,
    pub queue: QueueCheck,
}

/// Whether storage takes writes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StorageCheck {
    pub ok: bool,
    /// Why not, when not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Free bytes on the data directory's filesystem at the last probe (`None`: unknown).
    pub free_bytes: Option<u64>,
    /// The floor below which storage is not ready.
    pub min_free_bytes: u64,
    /// When the probe this check is based on ran, in milliseconds since the epoch.
    pub probed_at_ms: i64,
}

/// Which plugins loaded. Never fails readiness once the initial load has completed: see the
/// module documentation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PluginsCheck {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub loaded: Vec<String>,
    /// Declared plugins that failed to load, and why; they do not make the host unready.
    pub failed: Vec<FailedPlugin>,
}

/// A plugin that failed to load.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FailedPlugin {
    pub id: String,
    pub error: String,
}

/// Whether the delivery loop is going round.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueCheck {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Milliseconds since the delivery loop last started an iteration.
    pub loop_silent_ms: i64,
    pub max_silent_ms: i64,
}

/// What readiness keeps between calls.
#[derive(Default)]
pub(crate) struct HealthState {
    /// The last storage probe.
    probe: Mutex<Option<StorageProbe>>,
    /// The last ingest commit that failed, when no probe or commit has succeeded since.
    commit_failure: Mutex<Option<CommitFailure>>,
}

#[derive(Debug, Clone)]
struct StorageProbe {
    started: Instant,
    at_ms: i64,
    min_free_bytes: u64,
    free_bytes: Option<u64>,
    /// Empty when the probe passed.
    problems: Vec<String>,
}

#[derive(Debug, Clone)]
struct CommitFailure {
    at: Instant,
    message: String,
}

impl Host {
    /// Whether this host should be given traffic now: storage takes writes, the initial plugin
    /// load has completed, the delivery loop is going round. Blocks for at most one small
    /// database write (only when the last probe is older than [`PROBE_TTL`]).
    pub fn readiness(&self) -> Readiness {
        let storage = self.storage_check();
        let plugins = plugins_check(&self.plugin_statuses());
        let queue = if self.inner.shutdown.is_triggered() {
            QueueCheck {
                ok: false,
                reason: Some("the host is shutting down: the delivery loop has stopped".into()),
                loop_silent_ms: 0,
                max_silent_ms: MAX_LOOP_SILENCE_MS,
            }
        } else {
            queue_check(
                now_ms(),
                self.inner.loop_heartbeat.load(Ordering::Relaxed),
                MAX_LOOP_SILENCE_MS,
            )
        };
        Readiness {
            ready: storage.ok && plugins.ok && queue.ok,
            checks: ReadinessChecks {
                storage,
                plugins,
                queue,
            },
        }
    }

    /// Record what an ingest's commit did: a failure marks storage not ready until a later
    /// probe or commit succeeds; an event queued for at least one plugin was committed.
    pub(crate) fn note_ingest(&self, result: &Result<IngestReceipt, IngestError>) {
        let mut failure = lock(&self.inner.health.commit_failure);
        match result {
            Err(IngestError::Storage(message)) => {
                *failure = Some(CommitFailure {
                    at: Instant::now(),
                    message: message.clone(),
                });
            }
            Ok(receipt) if !receipt.queued_for.is_empty() => *failure = None,
            _ => {}
        }
    }

    /// The floor in force: `[host] min_free_disk_mib` of plugins.toml, else the option.
    fn min_free_disk_bytes(&self) -> u64 {
        self.registry()
            .file
            .host
            .min_free_disk_mib
            .map_or(self.inner.opts.min_free_disk_bytes, |mib| {
                mib.saturating_mul(1 << 20)
            })
    }

    fn storage_check(&self) -> StorageCheck {
        let floor = self.min_free_disk_bytes();
        let probe = {
            let mut cached = lock(&self.inner.health.probe);
            match &*cached {
                Some(p) if p.started.elapsed() < PROBE_TTL && p.min_free_bytes == floor => {
                    p.clone()
                }
                _ => {
                    let p = self.probe_storage(floor);
                    *cached = Some(p.clone());
                    p
                }
            }
        };
        let mut failure = lock(&self.inner.health.commit_failure);
        if probe.problems.is_empty() && failure.as_ref().is_some_and(|f| f.at <= probe.started) {
            // A probe that started after the failed commit has committed since.
            *failure = None;
        }
        storage_verdict(&probe, failure.as_ref().map(|f| f.message.as_str()))
    }

    fn probe_storage(&self, min_free_bytes: u64) -> StorageProbe {
        let started = Instant::now();
        let at_ms = now_ms();
        let dir = &self.inner.opts.data_dir;
        let mut problems = Vec::new();
        let free_bytes = match free_disk_bytes(dir) {
            Ok(free) => free,
            Err(e) => {
                problems.push(format!(
                    "cannot read the free space of the data directory {}: {e}",
                    dir.display()
                ));
                None
            }
        };
        if let Some(p) = free_bytes.and_then(|free| free_space_problem(free, min_free_bytes)) {
            problems.push(format!("data directory {}: {p}", dir.display()));
        }
        if let Err(e) = self.storage().health_probe(at_ms) {
            problems.push(format!("the database cannot commit a write: {e}"));
        }
        StorageProbe {
            started,
            at_ms,
            min_free_bytes,
            free_bytes,
            problems,
        }
    }
}

/// The storage check from the last probe and the failed ingest commit not superseded since.
fn storage_verdict(probe: &StorageProbe, commit_failure: Option<&str>) -> StorageCheck {
    let mut problems = probe.problems.clone();
    if let Some(message) = commit_failure {
        problems.push(format!("an ingest could not commit: {message}"));
    }
    StorageCheck {
        ok: problems.is_empty(),
        reason: (!problems.is_empty()).then(|| problems.join("; ")),
        free_bytes: probe.free_bytes,
        min_free_bytes: probe.min_free_bytes,
        probed_at_ms: probe.at_ms,
    }
}

/// Why `free` bytes are not enough, if they are not.
fn free_space_problem(free: u64, floor: u64) -> Option<String> {
    (free < floor).then(|| {
        format!(
            "{} free, below the floor of {}: free some space (or lower [host] min_free_disk_mib)",
            human_bytes(free),
            human_bytes(floor)
        )
    })
}

/// The delivery loop's heartbeat, `last_ms` (ms since the epoch), judged at `now_ms`.
fn queue_check(now_ms: i64, last_ms: i64, max_silent_ms: i64) -> QueueCheck {
    let silent = now_ms.saturating_sub(last_ms).max(0);
    let ok = silent <= max_silent_ms;
    QueueCheck {
        ok,
        reason: (!ok).then(|| {
            format!(
                "the delivery loop has not run for {} s (more than {} s): deliveries are stuck",
                silent / 1000,
                max_silent_ms / 1000
            )
        }),
        loop_silent_ms: silent,
        max_silent_ms,
    }
}

/// The plugins check from what loading reported. [`Host::start`] returns only once the
/// initial load has completed, so a host that can be asked has loaded (or failed to load)
/// every declared plugin: the check passes, and lists the failures without failing on them.
fn plugins_check(statuses: &[PluginStatus]) -> PluginsCheck {
    let mut loaded = Vec::new();
    let mut failed = Vec::new();
    for s in statuses {
        match (&s.error, s.loaded) {
            (None, true) => loaded.push(s.id.clone()),
            (error, _) => failed.push(FailedPlugin {
                id: s.id.clone(),
                error: error.clone().unwrap_or_else(|| "not loaded".into()),
            }),
        }
    }
    PluginsCheck {
        ok: true,
        reason: None,
        loaded,
        failed,
    }
}

/// Bytes available to the host on the filesystem of `dir` (`Ok(None)`: this platform cannot
/// tell).
#[cfg(unix)]
fn free_disk_bytes(dir: &std::path::Path) -> std::io::Result<Option<u64>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `path` is NUL-terminated and `st` is a valid out-pointer for one statvfs.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    // f_bavail: the blocks an unprivileged process may use (the host should not count on the
    // root reserve).
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok(Some(
        (st.f_bavail as u64).saturating_mul(st.f_frsize as u64),
    ))
}

#[cfg(not(unix))]
fn free_disk_bytes(_dir: &std::path::Path) -> std::io::Result<Option<u64>> {
    Ok(None)
}

/// "512 B", "12.0 KiB", "8.0 MiB", "3.2 GiB".
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(problems: &[&str]) -> StorageProbe {
        StorageProbe {
            started: Instant::now(),
            at_ms: 1_000,
            min_free_bytes: DEFAULT_MIN_FREE_DISK_BYTES,
            free_bytes: Some(100 << 20),
            problems: problems.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn a_fresh_heartbeat_is_ready_and_one_older_than_the_limit_is_stuck() {
        let now = 1_000_000;
        assert!(queue_check(now, now, MAX_LOOP_SILENCE_MS).ok);
        assert!(queue_check(now, now - MAX_LOOP_SILENCE_MS, MAX_LOOP_SILENCE_MS).ok);
        let stuck = queue_check(now, now - 75_000, MAX_LOOP_SILENCE_MS);
        assert!(!stuck.ok);
        assert_eq!(stuck.loop_silent_ms, 75_000);
        let reason = stuck.reason.unwrap_or_default();
        assert!(
            reason.contains("not run for 75 s") && reason.contains("more than 60 s"),
            "{reason}"
        );
        // A heartbeat from the future (the clock stepped back) is not "stuck".
        let ahead = queue_check(now, now + 5_000, MAX_LOOP_SILENCE_MS);
        assert!(ahead.ok && ahead.loop_silent_ms == 0);
    }

    #[test]
    fn free_space_below_the_floor_is_a_problem_at_or_above_it_is_not() {
        let floor = DEFAULT_MIN_FREE_DISK_BYTES;
        assert_eq!(free_space_problem(floor, floor), None);
        assert_eq!(free_space_problem(u64::MAX, floor), None);
        let p = free_space_problem(0, floor).unwrap_or_default();
        assert!(
            p.contains("0 B free") && p.contains("floor of 8.0 MiB"),
            "{p}"
        );
        let p = free_space_problem(floor - 1, floor).unwrap_or_default();
        assert!(p.contains("below the floor"), "{p}");
    }

    #[test]
    fn human_bytes_picks_a_readable_unit() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(8 << 20), "8.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn a_failed_commit_fails_storage_even_when_the_probe_passed() {
        assert!(storage_verdict(&probe(&[]), None).ok);
        let check = storage_verdict(&probe(&[]), Some("database or disk is full"));
        assert!(!check.ok);
        assert_eq!(
            check.reason.as_deref(),
            Some("an ingest could not commit: database or disk is full")
        );
        let check = storage_verdict(&probe(&["disk low", "cannot write"]), None);
        assert_eq!(check.reason.as_deref(), Some("disk low; cannot write"));
    }

    #[test]
    fn failed_plugins_are_listed_but_do_not_fail_readiness() {
        let status = |id: &str, error: Option<&str>| PluginStatus {
            id: id.into(),
            version: None,
            description: None,
            component: format!("{id}.wasm"),
            loaded: error.is_none(),
            error: error.map(str::to_string),
            source: None,
            exports: Vec::new(),
            events: Vec::new(),
            schedules: Default::default(),
        };
        let check = plugins_check(&[
            status("crm", None),
            status("broken", Some("missing.wasm: not found")),
        ]);
        assert!(check.ok);
        assert_eq!(check.loaded, ["crm"]);
        assert_eq!(
            check.failed,
            [FailedPlugin {
                id: "broken".into(),
                error: "missing.wasm: not found".into()
            }]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_ingest_commit_fails_readiness_until_a_probe_or_a_commit_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("plugins.toml");
        std::fs::write(&config, "").unwrap();
        let mut opts = crate::HostOptions::new(&config, dir.path().join("data"));
        opts.min_free_disk_bytes = 0;
        opts.reload_interval = None;
        let host = Host::start(opts).await.unwrap();
        assert!(host.readiness().ready, "{:?}", host.readiness());

        let full = || Err(IngestError::Storage("database or disk is full".into()));
        let committed = |plugins: &[&str]| {
            Ok(IngestReceipt {
                event_id: "e-1".into(),
                queued_for: plugins.iter().map(|p| p.to_string()).collect(),
            })
        };
        host.note_ingest(&full());
        let report = host.readiness();
        assert!(!report.ready && !report.checks.storage.ok, "{report:?}");
        assert_eq!(
            report.checks.storage.reason.as_deref(),
            Some("an ingest could not commit: database or disk is full")
        );
        // A later commit clears it; an ingest that queued nothing committed nothing.
        host.note_ingest(&committed(&["crm"]));
        assert!(host.readiness().ready);
        host.note_ingest(&full());
        host.note_ingest(&committed(&[]));
        assert!(!host.readiness().ready);
        // So does the next probe, once the cached one has expired.
        tokio::time::sleep(PROBE_TTL + Duration::from_millis(50)).await;
        let report = host.readiness();
        assert!(report.ready, "{report:?}");
        host.shutdown().await;
    }

    #[test]
    fn the_health_probe_commits_one_row() {
        use crate::store::{SqliteStorage, Storage};
        let s = SqliteStorage::in_memory().unwrap();
        s.health_probe(1).unwrap();
        s.health_probe(2).unwrap();
    }

    #[test]
    fn the_data_directory_filesystem_reports_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_disk_bytes(dir.path()).unwrap();
        if cfg!(unix) {
            assert!(free.is_some_and(|f| f > 0), "{free:?}");
        }
        assert!(free_disk_bytes(&dir.path().join("missing")).is_err() || cfg!(not(unix)));
    }
}
