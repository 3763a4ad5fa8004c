//! Per-thread measurements (latency histograms, status codes, byte and error
//! counters), the shared progress counters, and merging at the end of a run.

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::schedule::new_histogram;

/// Socket and protocol errors, wrk-style.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Errors {
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    /// Requests that got no response within `--timeout` (or by the end of the run).
    pub timeout: u64,
    /// Responses that could not be parsed (counted once per connection reset).
    pub parse: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout + self.parse
    }

    fn add(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.read += o.read;
        self.write += o.write;
        self.timeout += o.timeout;
        self.parse += o.parse;
    }
}

/// What one worker thread measured.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency in µs: from the intended send time in open loop, from the actual send in closed loop.
    pub latency: Histogram<u64>,
    /// Open loop only: time from the actual send (uncorrected), µs.
    pub service: Histogram<u64>,
    /// Responses received.
    pub completed: u64,
    /// Requests written (or queued to be written).
    pub sent: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Count per status code, indexed by code (httparse guarantees 3 digits).
    pub status: Box<[u64; 1000]>,
    pub errors: Errors,
    /// Connections (re)opened successfully.
    pub connects: u64,
    /// TLS handshakes completed in full / resumed (TLS runs only).
    pub tls_full: u64,
    pub tls_resumed: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            latency: new_histogram(),
            service: new_histogram(),
            completed: 0,
            sent: 0,
            bytes_read: 0,
            bytes_written: 0,
            status: Box::new([0; 1000]),
            errors: Errors::default(),
            connects: 0,
            tls_full: 0,
            tls_resumed: 0,
        }
    }

    #[inline]
    pub fn count_status(&mut self, code: u16) {
        if let Some(c) = self.status.get_mut(usize::from(code)) {
            *c += 1;
        }
    }

    pub fn merge(&mut self, o: &Stats) {
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.latency.add(&o.latency);
        let _ = self.service.add(&o.service);
        self.completed += o.completed;
        self.sent += o.sent;
        self.bytes_read += o.bytes_read;
        self.bytes_written += o.bytes_written;
        for (a, b) in self.status.iter_mut().zip(o.status.iter()) {
            *a += b;
        }
        self.errors.add(&o.errors);
        self.connects += o.connects;
        self.tls_full += o.tls_full;
        self.tls_resumed += o.tls_resumed;
    }

    /// Responses by class: 1xx (and anything unusual), 2xx, 3xx, 4xx, 5xx.
    pub fn classes(&self) -> [u64; 5] {
        let mut out = [0u64; 5];
        for (code, &n) in self.status.iter().enumerate() {
            let class = match code {
                200..=299 => 1,
                300..=399 => 2,
                400..=499 => 3,
                500..=599 => 4,
                _ => 0,
            };
            out[class] += n;
        }
        out
    }

    /// Non-zero exact status codes, ascending.
    pub fn codes(&self) -> Vec<(u16, u64)> {
        self.status
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(c, &n)| (c as u16, n))
            .collect()
    }
}

/// Live counters one worker publishes for the progress line; on its own
/// cache line so workers never share one.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Progress {
    pub completed: AtomicU64,
    pub errors: AtomicU64,
}

impl Progress {
    #[inline]
    pub fn publish(&self, s: &Stats) {
        self.completed.store(s.completed, Ordering::Relaxed);
        self.errors.store(s.errors.total(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_classes() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        a.count_status(200);
        a.count_status(200);
        b.count_status(404);
        b.count_status(503);
        b.count_status(302);
        b.count_status(101);
        a.latency.saturating_record(100);
        b.latency.saturating_record(300);
        b.errors.timeout = 2;
        a.merge(&b);
        assert_eq!(a.classes(), [1, 2, 1, 1, 1]);
        assert_eq!(
            a.codes(),
            vec![(101, 1), (200, 2), (302, 1), (404, 1), (503, 1)]
        );
        assert_eq!(a.latency.len(), 2);
        assert_eq!(a.errors.total(), 2);
    }
}
