//! CPU time of one invocation, measured as the thread CPU time spent inside its polls.
//!
//! Wall-clock epochs alone would also count the time a plugin spends waiting for a worker
//! thread on a busy machine, and killing plugins for the host's own load is wrong. So the
//! invocation's future is wrapped: each poll adds the thread's CPU time consumed during that
//! poll, and the epoch callback (which fires inside a long poll) adds the part of the current
//! poll so far. Host awaits (HTTP) cost no CPU while they wait, so they are not counted either.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// Thread CPU time in nanoseconds (falls back to 0 where the clock is missing, which turns the
/// limit off rather than killing every plugin).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_THREAD_CPUTIME_ID is
    // supported on Linux and the BSDs.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Shared between the wrapped future and the store's epoch callback.
#[derive(Debug, Default)]
pub struct CpuMeter {
    /// CPU spent in completed polls.
    spent_ns: AtomicU64,
    /// Thread CPU clock at the start of the current poll (0 when not polling).
    poll_start_ns: AtomicU64,
}

impl CpuMeter {
    /// CPU used so far, including the poll in progress.
    pub fn used(&self) -> Duration {
        let start = self.poll_start_ns.load(Ordering::Relaxed);
        let current = if start == 0 {
            0
        } else {
            thread_cpu_ns().saturating_sub(start)
        };
        Duration::from_nanos(self.spent_ns.load(Ordering::Relaxed) + current)
    }
}

/// A future whose polls are metered into a [`CpuMeter`].
pub struct Metered<F> {
    inner: Pin<Box<F>>,
    meter: Arc<CpuMeter>,
}

impl<F> Metered<F> {
    pub fn new(inner: F, meter: Arc<CpuMeter>) -> Self {
        Metered {
            inner: Box::pin(inner),
            meter,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let start = thread_cpu_ns().max(1);
        self.meter.poll_start_ns.store(start, Ordering::Relaxed);
        let out = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_ns().saturating_sub(start);
        self.meter.poll_start_ns.store(0, Ordering::Relaxed);
        self.meter.spent_ns.fetch_add(spent, Ordering::Relaxed);
        out
    }
}
