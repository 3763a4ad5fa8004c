//! Running the load generators (`tollgate-load`, and `wrk` for reference) on the client CPU(s)
//! they are given, and reading their results: tollgate-load's `--json` report, wrk's text summary.

use crate::procs;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What one tollgate-load run reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadResult {
    /// Responses received.
    pub requests: u64,
    pub elapsed_s: f64,
    pub rps: f64,
    pub bytes_read: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub ok_2xx: u64,
    /// Non-2xx responses.
    pub non_2xx: u64,
    /// Connect/read/write/parse errors and timeouts.
    pub errors: u64,
    /// e.g. "404: 12, 502: 3".
    pub codes: String,
    /// TLS runs: handshakes completed in full and resumed.
    pub tls_full: u64,
    pub tls_resumed: u64,
}

impl LoadResult {
    /// Failed requests: non-2xx responses plus socket errors and timeouts.
    pub fn bad(&self) -> u64 {
        self.non_2xx + self.errors
    }
}

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64()
        .or_else(|| cur.as_f64().map(|f| f.max(0.0) as u64))
        .unwrap_or(0)
}

fn f(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_f64().unwrap_or(0.0)
}

/// Parses tollgate-load's `--json` report.
pub fn parse_load_json(text: &str) -> Result<LoadResult, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("tollgate-load --json output: {e}"))?;
    if !v.is_object() {
        return Err("tollgate-load --json output is not an object".into());
    }
    let ok_2xx = u(&v, &["status", "2xx"]);
    let non_2xx = ["3xx", "4xx", "5xx", "other"]
        .iter()
        .map(|c| u(&v, &["status", c]))
        .sum();
    let errors = ["connect", "read", "write", "parse", "timeout"]
        .iter()
        .map(|e| u(&v, &["errors", e]))
        .sum();
    let codes = v["status_codes"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(c, _)| !c.starts_with('2'))
                .map(|(c, n)| format!("{c}: {}", n.as_u64().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    Ok(LoadResult {
        requests: u(&v, &["requests"]),
        elapsed_s: f(&v, &["elapsed_s"]),
        rps: f(&v, &["requests_per_sec"]),
        bytes_read: u(&v, &["bytes_read"]),
        p50_us: u(&v, &["latency", "p50_us"]),
        p99_us: u(&v, &["latency", "p99_us"]),
        p999_us: u(&v, &["latency", "p99_9_us"]),
        ok_2xx,
        non_2xx,
        errors,
        codes,
        tls_full: u(&v, &["tls", "full_handshakes"]),
        tls_resumed: u(&v, &["tls", "resumed_handshakes"]),
    })
}

/// What one wrk run reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WrkResult {
    pub rps: f64,
    /// Non-2xx/3xx responses plus socket errors.
    pub bad: u64,
}

/// Parses wrk's text summary.
pub fn parse_wrk(text: &str) -> Result<WrkResult, String> {
    let mut r = WrkResult::default();
    let mut seen_rps = false;
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            r.rps = v
                .trim()
                .parse()
                .map_err(|_| format!("wrk: bad line {l:?}"))?;
            seen_rps = true;
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            r.bad += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = l.strip_prefix("Socket errors:") {
            r.bad += v
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    if seen_rps {
        Ok(r)
    } else {
        Err(format!(
            "wrk printed no Requests/sec line: {}",
            text.trim().lines().last().unwrap_or("")
        ))
    }
}

/// One load run: what the generator reported plus the CPU it used itself.
#[derive(Clone, Debug, Default)]
pub struct Ran<T> {
    pub result: T,
    pub client_cpu: Duration,
    /// Wall time from start to exit.
    pub wall: Duration,
}

/// How to drive one phase.
pub struct LoadSpec<'a> {
    pub url: &'a str,
    /// A tollgate-load scenario file (several paths) instead of the URL's path.
    pub scenario: Option<&'a Path>,
    pub connections: usize,
    pub duration: Duration,
    /// Open loop at this many requests/s; None = closed loop.
    pub rate: Option<f64>,
    pub hgrm: Option<&'a Path>,
    pub cpus: &'a [usize],
    /// Where the JSON report and logs go (unique per run).
    pub work: &'a Path,
    pub tag: &'a str,
    /// More tollgate-load options (`--tls`, `--resume`, `--new-conn-per-request`).
    pub extra: &'a [&'a str],
}

fn duration_arg(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// Runs tollgate-load (`bin`) and parses its JSON report.
pub fn run_tollgate_load(bin: &Path, spec: &LoadSpec<'_>) -> Result<Ran<LoadResult>, String> {
    let json: PathBuf = spec.work.join(format!("{}.json", spec.tag));
    let log: PathBuf = spec.work.join(format!("{}.log", spec.tag));
    let mut args = vec![
        "-c".to_string(),
        spec.connections.to_string(),
        "-t".into(),
        "1".into(),
        "-d".into(),
        duration_arg(spec.duration),
        "-q".into(),
        "--json".into(),
        json.display().to_string(),
    ];
    // One CPU: pin the generator's thread there. Several: it may run on any of them (the
    // process affinity set at spawn).
    if let [cpu] = spec.cpus {
        args.push("--cpus".into());
        args.push(cpu.to_string());
    }
    if let Some(rate) = spec.rate {
        args.push("-R".into());
        args.push(format!("{}", rate.max(1.0).round()));
    }
    if let Some(h) = spec.hgrm {
        args.push("--hgrm".into());
        args.push(h.display().to_string());
    }
    if let Some(s) = spec.scenario {
        args.push("--scenario".into());
        args.push(s.display().to_string());
    }
    args.extend(spec.extra.iter().map(|a| a.to_string()));
    args.push(spec.url.to_string());
    let start = std::time::Instant::now();
    let mut child = procs::spawn("tollgate-load", bin, &args, spec.cpus, &log, None)
        .map_err(|e| e.to_string())?;
    let exit = child.wait_for(spec.duration + Duration::from_secs(15));
    let wall = start.elapsed();
    if procs::interrupted() {
        return Err("interrupted".into());
    }
    if exit.timed_out {
        return Err(format!(
            "tollgate-load did not finish in time: {}",
            child.log_tail(300)
        ));
    }
    let text = std::fs::read_to_string(&json).map_err(|_| {
        format!(
            "tollgate-load wrote no report (exit {:?}): {}",
            exit.code,
            child.log_tail(300)
        )
    })?;
    let result = parse_load_json(&text)?;
    Ok(Ran {
        result,
        client_cpu: exit.cpu,
        wall,
    })
}

/// Runs wrk (closed loop, 1 thread) for at least one second (wrk counts whole seconds).
pub fn run_wrk(
    bin: &Path,
    spec: &LoadSpec<'_>,
    lua: Option<&Path>,
) -> Result<Ran<WrkResult>, String> {
    let log: PathBuf = spec.work.join(format!("{}.log", spec.tag));
    let secs = spec.duration.as_secs_f64().round().max(1.0) as u64;
    let mut args = vec![
        "-t1".to_string(),
        format!("-c{}", spec.connections),
        format!("-d{secs}s"),
        "--timeout".into(),
        "2s".into(),
    ];
    if let Some(l) = lua {
        args.push("-s".into());
        args.push(l.display().to_string());
    }
    args.push(spec.url.to_string());
    let start = std::time::Instant::now();
    let mut child =
        procs::spawn("wrk", bin, &args, spec.cpus, &log, None).map_err(|e| e.to_string())?;
    let exit = child.wait_for(Duration::from_secs(secs + 15));
    let wall = start.elapsed();
    if procs::interrupted() {
        return Err("interrupted".into());
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let result = parse_wrk(&text)?;
    Ok(Ran {
        result,
        client_cpu: exit.cpu,
        wall,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tollgate_load_json() {
        let text = r#"{"tool":"tollgate-load","requests":1000,"elapsed_s":2.0,
            "requests_per_sec":500.0,"bytes_read":123456,
            "latency":{"p50_us":100,"p99_us":900,"p99_9_us":1500},
            "status":{"2xx":990,"3xx":0,"4xx":10,"5xx":0,"other":0},
            "status_codes":{"200":990,"404":10},
            "errors":{"connect":1,"read":0,"write":0,"timeout":2,"parse":0}}"#;
        let r = parse_load_json(text).expect("parses");
        assert_eq!(r.requests, 1000);
        assert_eq!((r.p50_us, r.p99_us, r.p999_us), (100, 900, 1500));
        assert_eq!((r.ok_2xx, r.non_2xx, r.errors), (990, 10, 3));
        assert_eq!(r.codes, "404: 10");
        assert_eq!(r.bad(), 13);
        assert_eq!((r.tls_full, r.tls_resumed), (0, 0));
        let tls = text.replace(
            r#""tool":"tollgate-load","#,
            r#""tool":"tollgate-load","tls":{"full_handshakes":7,"resumed_handshakes":993},"#,
        );
        let r = parse_load_json(&tls).expect("parses");
        assert_eq!((r.tls_full, r.tls_resumed), (7, 993));
        assert!(parse_load_json("not json").is_err());
        assert!(parse_load_json("[]").is_err());
    }

    #[test]
    fn reads_wrk_summary() {
        let text = "Running 2s test @ http://127.0.0.1:1/\n  1 threads and 64 connections\n\
            \x20 123456 requests in 2.00s, 10.00MB read\n\
            \x20 Socket errors: connect 0, read 2, write 0, timeout 1\n\
            \x20 Non-2xx or 3xx responses: 4\nRequests/sec:  61728.00\nTransfer/sec:      5.00MB\n";
        let r = parse_wrk(text).expect("parses");
        assert!((r.rps - 61728.0).abs() < 1e-9);
        assert_eq!(r.bad, 7);
        assert!(parse_wrk("unable to connect").is_err());
    }
}
