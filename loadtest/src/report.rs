//! Results of a run: [`Summary`] (merged stats plus the run's shape), the
//! human-readable summary and the machine-readable JSON report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::stats::{Errors, Stats};
use crate::{Config, Mode};

/// Percentiles listed in the JSON report.
pub const PERCENTILES: [f64; 9] = [50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 99.999, 100.0];

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Summary {
    pub target: String,
    pub mode: Mode,
    pub connections: usize,
    pub threads: usize,
    /// Requested upper bound.
    pub duration: Duration,
    pub max_requests: Option<u64>,
    pub timeout: Duration,
    /// From the start until the last worker finished (including the drain of
    /// requests in flight at the end).
    pub elapsed: Duration,
    pub stats: Stats,
    /// The run used TLS (`tls` in the JSON report).
    pub tls: bool,
    /// Each connection carried one request (`--new-conn-per-request`).
    pub new_conn_per_request: bool,
}

/// TLS handshakes of a run (`--json`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TlsReport {
    pub full_handshakes: u64,
    pub resumed_handshakes: u64,
}

/// Latency distribution in microseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencyReport {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub stdev_us: f64,
    pub max_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p99_9_us: u64,
    pub percentiles: Vec<PercentileValue>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PercentileValue {
    pub percentile: f64,
    pub value_us: u64,
}

impl LatencyReport {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        let at = |p: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_percentile(p)
            }
        };
        LatencyReport {
            count: h.len(),
            min_us: if h.is_empty() { 0 } else { h.min() },
            mean_us: h.mean(),
            stdev_us: h.stdev(),
            max_us: if h.is_empty() { 0 } else { h.max() },
            p50_us: at(50.0),
            p90_us: at(90.0),
            p99_us: at(99.0),
            p99_9_us: at(99.9),
            percentiles: PERCENTILES
                .iter()
                .map(|&p| PercentileValue {
                    percentile: p,
                    value_us: at(p),
                })
                .collect(),
        }
    }
}

/// The `--json` document.
#[derive(Debug, Clone, Serialize)]
pub struct JsonReport {
    pub tool: &'static str,
    pub target: String,
    /// "closed" or "open".
    pub mode: &'static str,
    /// Open loop: the target rate, requests/s.
    pub rate: Option<f64>,
    /// Closed loop: requests kept in flight per connection.
    pub pipeline: Option<usize>,
    pub connections: usize,
    pub threads: usize,
    pub duration_s: f64,
    pub max_requests: Option<u64>,
    pub timeout_s: f64,
    pub elapsed_s: f64,
    /// Responses received.
    pub requests: u64,
    /// Requests sent.
    pub sent: u64,
    pub requests_per_sec: f64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Bytes read per second.
    pub transfer_per_sec: f64,
    /// From the intended send time in open loop (corrected), from the send in closed loop.
    pub latency: LatencyReport,
    /// Open loop only: from the actual send (uncorrected), for comparison.
    pub service_time: Option<LatencyReport>,
    pub status: BTreeMap<&'static str, u64>,
    pub status_codes: BTreeMap<String, u64>,
    pub errors: Errors,
    pub connects: u64,
    pub new_conn_per_request: bool,
    /// TLS runs only.
    pub tls: Option<TlsReport>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2} {}", UNITS[u])
}

fn latency_line(l: &LatencyReport) -> String {
    format!(
        "p50 {:.3} ms   p90 {:.3} ms   p99 {:.3} ms   p99.9 {:.3} ms   max {:.3} ms   mean {:.3} ms",
        ms(l.p50_us),
        ms(l.p90_us),
        ms(l.p99_us),
        ms(l.p99_9_us),
        ms(l.max_us),
        l.mean_us / 1000.0
    )
}

impl Summary {
    pub fn new(cfg: &Config, stats: Stats, elapsed: Duration) -> Self {
        Summary {
            target: cfg.target.display.clone(),
            mode: cfg.mode,
            connections: cfg.connections,
            threads: cfg.threads,
            duration: cfg.duration,
            max_requests: cfg.max_requests,
            timeout: cfg.timeout,
            elapsed,
            stats,
            tls: cfg.tls.is_some(),
            new_conn_per_request: cfg.new_conn_per_request,
        }
    }

    fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Responses per second over the elapsed time.
    pub fn requests_per_sec(&self) -> f64 {
        self.stats.completed as f64 / self.secs()
    }

    /// Bytes read per second.
    pub fn transfer_per_sec(&self) -> f64 {
        self.stats.bytes_read as f64 / self.secs()
    }

    /// The latency histogram (µs) the headline numbers come from.
    pub fn latency(&self) -> &Histogram<u64> {
        &self.stats.latency
    }

    pub fn is_open_loop(&self) -> bool {
        matches!(self.mode, Mode::Open { .. })
    }

    pub fn json(&self) -> JsonReport {
        let [other, c2, c3, c4, c5] = self.stats.classes();
        let (mode, rate, pipeline) = match self.mode {
            Mode::Closed { pipeline } => ("closed", None, Some(pipeline)),
            Mode::Open { rate } => ("open", Some(rate), None),
        };
        JsonReport {
            tool: "tollgate-load",
            target: self.target.clone(),
            mode,
            rate,
            pipeline,
            connections: self.connections,
            threads: self.threads,
            duration_s: self.duration.as_secs_f64(),
            max_requests: self.max_requests,
            timeout_s: self.timeout.as_secs_f64(),
            elapsed_s: self.elapsed.as_secs_f64(),
            requests: self.stats.completed,
            sent: self.stats.sent,
            requests_per_sec: self.requests_per_sec(),
            bytes_read: self.stats.bytes_read,
            bytes_written: self.stats.bytes_written,
            transfer_per_sec: self.transfer_per_sec(),
            latency: LatencyReport::from_histogram(&self.stats.latency),
            service_time: self
                .is_open_loop()
                .then(|| LatencyReport::from_histogram(&self.stats.service)),
            status: BTreeMap::from([
                ("2xx", c2),
                ("3xx", c3),
                ("4xx", c4),
                ("5xx", c5),
                ("other", other),
            ]),
            status_codes: self
                .stats
                .codes()
                .into_iter()
                .map(|(c, n)| (c.to_string(), n))
                .collect(),
            errors: self.stats.errors,
            connects: self.stats.connects,
            new_conn_per_request: self.new_conn_per_request,
            tls: self.tls.then_some(TlsReport {
                full_handshakes: self.stats.tls_full,
                resumed_handshakes: self.stats.tls_resumed,
            }),
        }
    }

    /// The human summary printed at the end of a run.
    pub fn render(&self) -> String {
        let s = &self.stats;
        let mut out = String::new();
        let mode = match self.mode {
            Mode::Closed { pipeline: 1 } => "closed loop".to_string(),
            Mode::Closed { pipeline } => format!("closed loop, pipeline {pipeline}"),
            Mode::Open { rate } => {
                format!("open loop at {rate} req/s (latency from intended send time)")
            }
        };
        let _ = writeln!(
            out,
            "tollgate-load: {mode}; {} thread(s), {} connection(s) @ {}",
            self.threads, self.connections, self.target
        );
        let _ = writeln!(
            out,
            "  Requests       {} in {:.2} s = {:.2} req/s",
            s.completed,
            self.elapsed.as_secs_f64(),
            self.requests_per_sec()
        );
        let _ = writeln!(
            out,
            "  Transfer       read {} ({}/s), written {}",
            bytes(s.bytes_read as f64),
            bytes(self.transfer_per_sec()),
            bytes(s.bytes_written as f64)
        );
        let lat = LatencyReport::from_histogram(&s.latency);
        let _ = writeln!(out, "  Latency        {}", latency_line(&lat));
        if self.is_open_loop() {
            let svc = LatencyReport::from_histogram(&s.service);
            let _ = writeln!(out, "  Service time   {}", latency_line(&svc));
            let _ = writeln!(
                out,
                "                 (service time: from the actual send; uncorrected, for comparison only)"
            );
        }
        let [other, c2, c3, c4, c5] = s.classes();
        let codes: Vec<String> = s.codes().iter().map(|(c, n)| format!("{c}: {n}")).collect();
        let _ = write!(
            out,
            "  Status         2xx {c2}   3xx {c3}   4xx {c4}   5xx {c5}"
        );
        if other > 0 {
            let _ = write!(out, "   other {other}");
        }
        if !codes.is_empty() {
            let _ = write!(out, "   ({})", codes.join(", "));
        }
        out.push('\n');
        let e = &s.errors;
        let _ = writeln!(
            out,
            "  Socket errors  connect {}, read {}, write {}, parse {}",
            e.connect, e.read, e.write, e.parse
        );
        let _ = writeln!(out, "  Timeouts       {}", e.timeout);
        if self.tls {
            let _ = writeln!(
                out,
                "  TLS            {} full handshakes, {} resumed",
                s.tls_full, s.tls_resumed
            );
        }
        out
    }
}
