//! The command line (clap derive) and its translation into a [`Config`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::scenario::{self, RequestSet, RequestSpec};
use crate::tls::TlsOptions;
use crate::{target, Config, Error, Mode};

/// tollgate-load: HTTP/1.1 load generator (closed loop like wrk, or open loop
/// at a fixed rate with coordinated-omission correction like wrk2), over TLS
/// with --tls or an https:// URL.
///
/// Only loopback targets (127.0.0.0/8, ::1, localhost) are allowed unless
/// --allow-remote is given.
#[derive(Debug, Clone, Parser)]
#[command(name = "tollgate-load", version)]
pub struct Args {
    /// Target URL, e.g. http://127.0.0.1:8080/path (with --scenario, its paths replace this one)
    pub url: String,

    /// Connections to keep open (total)
    #[arg(short = 'c', long, default_value_t = 10)]
    pub connections: usize,

    /// Worker threads (connections are spread over them)
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: usize,

    /// Run time, e.g. 10s, 500ms, 2m (the run always ends by then)
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Stop after this many requests (or at --duration, whichever comes first)
    #[arg(short = 'n', long = "requests")]
    pub requests: Option<u64>,

    /// Open loop: total requests per second on a fixed schedule; latency is
    /// measured from each request's intended send time
    #[arg(short = 'R', long)]
    pub rate: Option<f64>,

    /// Closed loop: requests kept in flight per connection (HTTP pipelining)
    #[arg(long, default_value_t = 1, conflicts_with = "rate")]
    pub pipeline: usize,

    /// Per-request timeout (counted as a timeout; the connection is reopened)
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Extra request header 'name: value' (repeatable; wins over the scenario's)
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// Request method for the one-URL form
    #[arg(short = 'm', long, default_value = "GET", conflicts_with = "scenario")]
    pub method: String,

    /// Generated request body size in bytes for the one-URL form
    #[arg(long, default_value_t = 0, conflicts_with = "scenario")]
    pub body_size: usize,

    /// Request mix from a TOML scenario file
    #[arg(short = 's', long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,

    /// Pin worker thread i to CPU cpus[i % len], e.g. --cpus 1,2
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub cpus: Vec<usize>,

    /// Write a JSON report to FILE
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write the latency distribution in HdrHistogram's .hgrm text format to FILE
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,

    /// No progress lines
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Allow targets outside loopback
    #[arg(long)]
    pub allow_remote: bool,

    /// TLS on every connection (rustls, TLS 1.3, TLS13_AES_128_GCM_SHA256 with X25519, ALPN
    /// http/1.1); implied by an https:// URL
    #[arg(long)]
    pub tls: bool,

    /// With TLS: resume sessions (tickets) on new connections; without it every handshake
    /// is a full one
    #[arg(long)]
    pub resume: bool,

    /// With TLS: verify the server's certificate against these CA certificates (PEM);
    /// without it any certificate is accepted (handshake signatures are still checked)
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// Close each connection after its response and open a new one for the next request
    /// (with TLS: a handshake per request)
    #[arg(long, conflicts_with = "pipeline")]
    pub new_conn_per_request: bool,
}

/// Parse `10s`, `500ms`, `2m`, `1h`, `250us` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration '{s}' (e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => v,
        "ms" => v / 1e3,
        "us" | "µs" => v / 1e6,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        u => {
            return Err(format!(
                "invalid duration unit '{u}' (use us, ms, s, m or h)"
            ))
        }
    };
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err(format!("duration '{s}' out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl Args {
    /// Resolve the target (with the loopback guard), build the request mix and
    /// the run configuration.
    pub fn to_config(&self) -> Result<Config, Error> {
        let target = target::resolve(&self.url, self.allow_remote)?;
        let tls = self.tls_options(target.url.https)?;
        let cli_headers = self
            .headers
            .iter()
            .map(|h| scenario::parse_header_arg(h))
            .collect::<Result<Vec<_>, _>>()?;
        let specs: Vec<RequestSpec> = match &self.scenario {
            Some(path) => scenario::load_scenario(path)?
                .into_iter()
                .map(|mut s| {
                    s.headers = scenario::merge_headers(&s.headers, &cli_headers);
                    s
                })
                .collect(),
            None => vec![RequestSpec {
                method: self.method.clone(),
                path: target.url.path.clone(),
                headers: cli_headers,
                body_size: self.body_size,
                weight: 1,
            }],
        };
        let requests = RequestSet::build(&specs, &target.url.host_header)?;
        let mode = match self.rate {
            Some(rate) => Mode::Open { rate },
            None => Mode::Closed {
                pipeline: self.pipeline,
            },
        };
        let cfg = Config {
            target,
            requests,
            connections: self.connections,
            threads: self.threads,
            mode,
            duration: self.duration,
            max_requests: self.requests,
            timeout: self.timeout,
            cpus: self.cpus.clone(),
            progress: !self.quiet,
            tls,
            new_conn_per_request: self.new_conn_per_request,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The TLS options: on with `--tls` or an `https://` URL; `--resume` and `--tls-ca` need it.
    fn tls_options(&self, https: bool) -> Result<Option<TlsOptions>, Error> {
        if self.tls || https {
            return Ok(Some(TlsOptions {
                resume: self.resume,
                ca_file: self.tls_ca.clone(),
            }));
        }
        if self.resume {
            return Err(Error::new("--resume needs --tls (or an https:// URL)"));
        }
        if self.tls_ca.is_some() {
            return Err(Error::new("--tls-ca needs --tls (or an https:// URL)"));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut v = vec!["tollgate-load"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v)
    }

    #[test]
    fn one_url_form() {
        let a = args(&[
            "-c",
            "64",
            "-t",
            "2",
            "-d",
            "3s",
            "-H",
            "x-api-key: k",
            "-m",
            "POST",
            "--body-size",
            "10",
            "--cpus",
            "1,2",
            "http://127.0.0.1:8080/p",
        ])
        .unwrap();
        let cfg = a.to_config().unwrap();
        assert_eq!((cfg.connections, cfg.threads), (64, 2));
        assert_eq!(cfg.mode, Mode::Closed { pipeline: 1 });
        assert_eq!(cfg.cpus, vec![1, 2]);
        let bytes = &cfg.requests.get(0).bytes;
        let text = String::from_utf8_lossy(bytes);
        assert!(text.starts_with("POST /p HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nx-api-key: k\r\n"));
        assert!(text.ends_with("Content-Length: 10\r\n\r\nabcdefghij"));
    }

    #[test]
    fn open_loop_and_conflicts() {
        let cfg = args(&["-R", "2000", "http://localhost:1/"])
            .unwrap()
            .to_config()
            .unwrap();
        assert_eq!(cfg.mode, Mode::Open { rate: 2000.0 });
        assert!(args(&["-R", "10", "--pipeline", "4", "http://127.0.0.1/"]).is_err());
        assert!(args(&["-s", "x.toml", "-m", "POST", "http://127.0.0.1/"]).is_err());
        assert!(args(&["-R", "0", "http://127.0.0.1/"])
            .unwrap()
            .to_config()
            .is_err());
        assert!(args(&["-c", "1", "-t", "2", "http://127.0.0.1/"])
            .unwrap()
            .to_config()
            .is_err());
        assert!(args(&["-H", "bad", "http://127.0.0.1/"])
            .unwrap()
            .to_config()
            .is_err());
    }

    #[test]
    fn tls_options() {
        let plain = args(&["http://127.0.0.1:1/"]).unwrap().to_config().unwrap();
        assert_eq!(plain.tls, None);
        assert!(!plain.new_conn_per_request);
        let full = args(&["--tls", "--new-conn-per-request", "http://127.0.0.1:1/"])
            .unwrap()
            .to_config()
            .unwrap();
        assert_eq!(
            full.tls,
            Some(TlsOptions {
                resume: false,
                ca_file: None
            })
        );
        assert!(full.new_conn_per_request);
        let resumed = args(&[
            "--resume",
            "--new-conn-per-request",
            "--tls-ca",
            "/x/ca.pem",
            "https://127.0.0.1:8443/p",
        ])
        .unwrap()
        .to_config()
        .unwrap();
        assert_eq!(
            resumed.tls,
            Some(TlsOptions {
                resume: true,
                ca_file: Some("/x/ca.pem".into())
            })
        );
        // The Host header keeps the port (not https's 443).
        let text = String::from_utf8_lossy(&resumed.requests.get(0).bytes).into_owned();
        assert!(
            text.starts_with("GET /p HTTP/1.1\r\nHost: 127.0.0.1:8443\r\n"),
            "{text}"
        );
        // --resume and --tls-ca mean nothing without TLS.
        let err = args(&["--resume", "http://127.0.0.1:1/"])
            .unwrap()
            .to_config()
            .unwrap_err();
        assert!(err.0.contains("--resume needs --tls"), "{err}");
        assert!(args(&["--tls-ca", "c.pem", "http://127.0.0.1:1/"])
            .unwrap()
            .to_config()
            .is_err());
        // One request per connection: no pipelining.
        assert!(args(&[
            "--new-conn-per-request",
            "--pipeline",
            "2",
            "http://127.0.0.1:1/"
        ])
        .is_err());
        // Plain HTTP may open a connection per request too.
        assert!(
            args(&["--new-conn-per-request", "http://127.0.0.1:1/"])
                .unwrap()
                .to_config()
                .unwrap()
                .new_conn_per_request
        );
    }

    #[test]
    fn remote_targets_are_refused_from_the_cli() {
        let err = args(&["http://192.0.2.1/"])
            .unwrap()
            .to_config()
            .unwrap_err();
        assert!(err.0.contains("refusing"), "{err}");
        assert!(args(&["--allow-remote", "http://192.0.2.1/"])
            .unwrap()
            .to_config()
            .is_ok());
    }
}
