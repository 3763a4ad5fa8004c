//! tollgate-load: an HTTP/1.1 load generator with a closed-loop (wrk-like) and an
//! open-loop, coordinated-omission-corrected (wrk2-like) mode.
//!
//! The crate root owns the run configuration ([`Config`], [`Mode`]), the error
//! type and the entry point [`run`]; the modules own one concern each:
//! - [`target`]: URL parsing, name resolution and the loopback-only guard,
//! - [`scenario`]: the request mix (TOML or one URL), pre-serialized requests,
//! - [`http`]: the incremental HTTP/1.1 response parser,
//! - [`schedule`]: the open-loop schedule and latency correction (pure, testable),
//! - [`conn`]: raw non-blocking sockets and the clock,
//! - [`engine`]: the per-thread edge-triggered epoll event loop,
//! - [`stats`]: per-thread counters and histograms, merged at the end,
//! - [`report`]: the human summary and the JSON report,
//! - [`hgrm`]: HdrHistogram's percentile-distribution text format,
//! - [`tls`]: TLS (`--tls`, `https://`): the rustls client and one connection's session,
//! - [`cli`]: the command line.

pub mod cli;
pub mod conn;
pub mod engine;
pub mod hgrm;
pub mod http;
pub mod report;
pub mod scenario;
pub mod schedule;
pub mod stats;
pub mod target;
pub mod tls;

use std::fmt;
use std::time::Duration;

pub use engine::run;
pub use report::Summary;
pub use scenario::RequestSet;
pub use target::Target;

/// A user-facing error: one line, no backtrace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    pub fn new(msg: impl Into<String>) -> Self {
        Error(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Each connection keeps `pipeline` requests in flight and sends the next one
    /// as soon as a response arrives. Latency is measured from the actual send.
    Closed { pipeline: usize },
    /// A fixed total rate (requests per second) on a fixed schedule; latency is
    /// measured from each request's intended send time.
    Open { rate: f64 },
}

/// Everything a run needs; built by [`cli`] or directly by tests.
#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    pub requests: RequestSet,
    pub connections: usize,
    pub threads: usize,
    pub mode: Mode,
    /// Upper bound of the run; the run also ends after `max_requests`.
    pub duration: Duration,
    pub max_requests: Option<u64>,
    /// Per-request timeout, measured from the actual send.
    pub timeout: Duration,
    /// CPUs to pin worker threads to (thread i → `cpus[i % len]`); empty: no pinning.
    pub cpus: Vec<usize>,
    /// Print a progress line to stderr every second (only for runs longer than 3 s).
    pub progress: bool,
    /// TLS on every connection (`--tls` or an `https://` URL).
    pub tls: Option<tls::TlsOptions>,
    /// Close the connection after each response and open a new one for the next request
    /// (with TLS: a handshake per request, resumed with `--resume`).
    pub new_conn_per_request: bool,
}

impl Config {
    /// A closed-loop config for one prepared request set, 10 s, 2 s timeout.
    pub fn new(target: Target, requests: RequestSet) -> Self {
        Config {
            target,
            requests,
            connections: 10,
            threads: 1,
            mode: Mode::Closed { pipeline: 1 },
            duration: Duration::from_secs(10),
            max_requests: None,
            timeout: Duration::from_secs(2),
            cpus: Vec::new(),
            progress: false,
            tls: None,
            new_conn_per_request: false,
        }
    }

    /// Check the numeric bounds that the engine relies on.
    pub fn validate(&self) -> Result<(), Error> {
        if self.connections == 0 {
            return Err(Error::new("--connections must be at least 1"));
        }
        if self.threads == 0 {
            return Err(Error::new("--threads must be at least 1"));
        }
        if self.threads > self.connections {
            return Err(Error::new(format!(
                "--threads ({}) must not exceed --connections ({})",
                self.threads, self.connections
            )));
        }
        if self.duration.is_zero() {
            return Err(Error::new("--duration must be greater than zero"));
        }
        if self.timeout.is_zero() {
            return Err(Error::new("--timeout must be greater than zero"));
        }
        if self.max_requests == Some(0) {
            return Err(Error::new("--requests must be at least 1"));
        }
        match self.mode {
            Mode::Closed { pipeline } => {
                if pipeline == 0 || pipeline > 1024 {
                    return Err(Error::new("--pipeline must be between 1 and 1024"));
                }
            }
            Mode::Open { rate } => {
                if !(rate.is_finite() && rate > 0.0) {
                    return Err(Error::new("--rate must be a positive number"));
                }
            }
        }
        if self.new_conn_per_request {
            if let Mode::Closed { pipeline } = self.mode {
                if pipeline > 1 {
                    return Err(Error::new(
                        "--new-conn-per-request sends one request per connection: --pipeline must be 1",
                    ));
                }
            }
        }
        for &cpu in &self.cpus {
            if cpu >= libc::CPU_SETSIZE as usize {
                return Err(Error::new(format!("--cpus: CPU {cpu} is out of range")));
            }
        }
        Ok(())
    }
}
