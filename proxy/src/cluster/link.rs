//! `Link`: what the shards' rebalance rounds and the sync thread share per limit (demand
//! handed in, the host's part of the limit) and the stop / done flags of the exit path.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tollgate_core::traffic::bucket::Limit;

use super::reload::Follow;

/// How long the exit path waits for the stock to be given back.
pub(super) const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// What the shards' rebalance rounds and the sync thread exchange: per limit (bucket index),
/// the demand seen since the last sync and the host's part of the limit.
pub struct Link {
    pub(super) demand: Box<[AtomicU64]>,
    pub(super) rate_milli: Box<[AtomicU64]>,
    pub(super) burst: Box<[AtomicU64]>,
    pub(super) stop: AtomicBool,
    pub(super) done: AtomicBool,
    /// The sync thread's order channel (set by `start`, handed on to successors by `follow`).
    pub(super) follow: std::sync::OnceLock<mpsc::Sender<Follow>>,
    /// The sync thread, unparked by a reload order and by the exit (set by the thread,
    /// handed on to successors by `follow`).
    pub(super) waker: std::sync::OnceLock<std::thread::Thread>,
}

impl Link {
    /// Until the first sync, the host's part of each limit is the whole limit.
    pub fn new(limits: &[Limit]) -> Link {
        Link {
            demand: limits.iter().map(|_| AtomicU64::new(0)).collect(),
            rate_milli: limits
                .iter()
                .map(|l| AtomicU64::new(l.rate_milli))
                .collect(),
            burst: limits.iter().map(|l| AtomicU64::new(l.burst)).collect(),
            stop: AtomicBool::new(false),
            done: AtomicBool::new(false),
            follow: std::sync::OnceLock::new(),
            waker: std::sync::OnceLock::new(),
        }
    }

    /// A rebalance round's demand for limit `b` (requests that asked for a token).
    pub fn add_demand(&self, b: usize, n: u64) {
        if let Some(d) = self.demand.get(b) {
            d.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The host's part of limit `b`.
    pub fn host_limit(&self, b: usize) -> Option<Limit> {
        Some(Limit {
            rate_milli: self.rate_milli.get(b)?.load(Ordering::Relaxed),
            burst: self.burst.get(b)?.load(Ordering::Relaxed),
        })
    }

    /// Demand handed in since the last sync for limit `b` (tests).
    #[cfg(test)]
    pub fn demand(&self, b: usize) -> u64 {
        self.demand.get(b).map_or(0, |d| d.load(Ordering::Relaxed))
    }

    pub(crate) fn set_host_limit(&self, b: usize, l: Limit) {
        if let (Some(r), Some(c)) = (self.rate_milli.get(b), self.burst.get(b)) {
            r.store(l.rate_milli, Ordering::Relaxed);
            c.store(l.burst, Ordering::Relaxed);
        }
    }

    /// The sync thread (`wake` unparks it); the first one set stays.
    pub(super) fn set_waker(&self, t: std::thread::Thread) {
        let _ = self.waker.set(t);
    }

    /// Unparks the sync thread (if it started).
    pub(super) fn wake(&self) {
        if let Some(t) = self.waker.get() {
            t.unpark();
        }
    }

    /// The exit path: the sync thread gives the stock back to Redis (waits at most
    /// `SHUTDOWN_WAIT`). Call it after the shards gave back their leases.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake();
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        while !self.done.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn shutdown_wakes_a_parked_sync_thread() {
        let link = Arc::new(Link::new(&[]));
        let (ready_tx, ready_rx) = mpsc::channel();
        let l = link.clone();
        let thread = std::thread::spawn(move || {
            l.set_waker(std::thread::current());
            let _ = ready_tx.send(());
            let start = Instant::now();
            // Parks as the sync thread does between syncs (spurious wake-ups aside).
            while !l.stop.load(Ordering::Acquire) && start.elapsed() < Duration::from_secs(10) {
                std::thread::park_timeout(Duration::from_secs(10));
            }
            l.done.store(true, Ordering::Release);
            start.elapsed()
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e}"));
        link.shutdown();
        assert!(
            link.done.load(Ordering::Acquire),
            "shutdown returned before done"
        );
        let parked = thread.join().unwrap_or_else(|_| panic!("thread panicked"));
        assert!(parked < Duration::from_secs(5), "woken after {parked:?}");
    }
}
