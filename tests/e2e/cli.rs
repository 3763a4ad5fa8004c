//! The command line: `tollgate validate` (the shipped examples and a config in the documented
//! format pass; bad configs exit 1 with one `file:line:col: reason` line per error, pointing
//! at the culprit), `tollgate run --config`, `--version`, `--help`, and the gateway log's
//! level (`--log-level` / `TOLLGATE_LOG`, the flag winning) and format (`--log-format json` /
//! `TOLLGATE_LOG_FORMAT`: every line a JSON object with time, level, message and fields).

use crate::client::{get, Client};
use crate::harness::{
    config_text, free_port, mock_route, rest_proxy_api, run_to_end, Gateway, Server, TempDir, BIN,
};
use crate::ops_support::signal;
use serde_json::Value;
use std::ffi::OsStr;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `(line, column, reason)` of every `file:line:col: reason` line about `file` in `output`.
fn positions(output: &str, file: &Path) -> Vec<(u32, u32, String)> {
    let prefix = format!("{}:", file.display());
    output
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let mut parts = rest.splitn(3, ':');
            let line = parts.next()?.trim().parse().ok()?;
            let col = parts.next()?.trim().parse().ok()?;
            let reason = parts.next()?.trim().to_string();
            Some((line, col, reason))
        })
        .collect()
}

/// 1-based number of the line of `text` containing `marker`.
fn line_of(text: &str, marker: &str) -> u32 {
    text.lines()
        .position(|l| l.contains(marker))
        .map(|i| i as u32 + 1)
        .unwrap_or_else(|| panic!("{marker:?} not in config"))
}

fn validate(files: &[&Path]) -> (Option<i32>, String) {
    let mut args: Vec<&Path> = vec![Path::new("validate")];
    args.extend_from_slice(files);
    run_to_end(&args)
}

#[test]
fn example_configs_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuning/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.toml examples in {}", dir.display());
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let (code, out) = validate(&refs);
    assert_eq!(code, Some(0), "tollgate validate {files:?}:\n{out}");
}

/// The config format as documented for this project (every key the tests rely on).
const DOCUMENTED: &str = r#"[server]
shards = 1
pin_cpus = false
max_body_bytes = 10485760          # 413 above
header_read_timeout_ms = 10000
idle_timeout_ms = 60000
upstream_pool_size = 64
[[listeners]]
address = "127.0.0.1"
port = 18080
[[apis]]
name = "svc"
protocol = "rest"                  # or "http"
  [[apis.stages]]
  name = "prod"                    # "$default" only for http APIs (no path prefix)
  variables = { backend = "127.0.0.1:9000" }
  [[apis.routes]]
  key = "ANY /{proxy+}"            # GET /pets/{id}, $default (http only), ...
  integration = { type = "http_proxy", uri = "http://${stageVariables.backend}/{proxy}", timeout_ms = 29000 }
  [[apis.routes]]
  key = "GET /mock"
  integration = { type = "mock", status = 200, headers = { "content-type" = "text/plain" }, body = "hi" }
"#;

#[test]
fn documented_format_and_test_configs_validate() {
    let dir = TempDir::new("validate-ok");
    let documented = dir.write("documented.toml", DOCUMENTED);
    let harness = dir.write(
        "harness.toml",
        &config_text(
            &Server::default().with("idle_timeout_ms", "300"),
            18081,
            &rest_proxy_api(([127, 0, 0, 1], 9000).into(), 500, ""),
        ),
    );
    for f in [&documented, &harness] {
        let (code, out) = validate(&[f]);
        assert_eq!(code, Some(0), "tollgate validate {}:\n{out}", f.display());
    }
}

const UNKNOWN_KEY: &str = r#"[server]
shards = 1
pin_cpus = false
idle_timeout = 5000
[[listeners]]
address = "127.0.0.1"
port = 18080
[[apis]]
name = "svc"
protocol = "http"
  [[apis.stages]]
  name = "$default"
  [[apis.routes]]
  key = "GET /mock"
  integration = { type = "mock", status = 200, body = "hi" }
"#;

const BAD_ROUTE_KEY: &str = r#"[server]
shards = 1
[[listeners]]
address = "127.0.0.1"
port = 18080
[[apis]]
name = "svc"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  [[apis.routes]]
  key = "GET /ok"
  integration = { type = "mock", status = 200, body = "hi" }
  [[apis.routes]]
  key = "FETCH pets/{id"
  integration = { type = "mock", status = 200, body = "hi" }
"#;

#[test]
fn bad_configs_exit_1_with_positions() {
    let dir = TempDir::new("validate-bad");
    let unknown = dir.write("unknown-key.toml", UNKNOWN_KEY);
    let bad_route = dir.write("bad-route.toml", BAD_ROUTE_KEY);

    for (file, text, marker) in [
        (&unknown, UNKNOWN_KEY, "idle_timeout = 5000"),
        (&bad_route, BAD_ROUTE_KEY, "FETCH pets"),
    ] {
        let (code, out) = validate(&[file]);
        assert_eq!(
            code,
            Some(1),
            "tollgate validate {}:\n{out}",
            file.display()
        );
        let found = positions(&out, file);
        assert!(
            !found.is_empty(),
            "no `{}:line:col: reason` line in:\n{out}",
            file.display()
        );
        let want = line_of(text, marker);
        assert!(
            found
                .iter()
                .any(|(l, c, r)| *l == want && *c >= 1 && !r.is_empty()),
            "expected an error at line {want} ({marker:?}) of {}, got {found:?}; output:\n{out}",
            file.display()
        );

        // Serving a bad config refuses to start, with the same report.
        let (code, out) = run_to_end(&[Path::new("--config"), file]);
        assert_ne!(
            code,
            Some(0),
            "tollgate --config {} started:\n{out}",
            file.display()
        );
        assert!(
            !positions(&out, file).is_empty(),
            "tollgate --config {}: no positioned error in:\n{out}",
            file.display()
        );
    }

    // A good and a bad file together: still exit 1.
    let good = dir.write("good.toml", DOCUMENTED);
    let (code, out) = validate(&[&good, &bad_route]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        positions(&out, &good).is_empty(),
        "good file reported: {out}"
    );
}

#[test]
fn validate_reports_every_error_in_a_file() {
    let dir = TempDir::new("validate-every");
    // Both mistakes in one file: an unknown key and a bad route key.
    let text = BAD_ROUTE_KEY.replace("shards = 1\n", "shards = 1\nshard_count = 2\n");
    let file = dir.write("two-errors.toml", &text);
    let (code, out) = validate(&[&file]);
    assert_eq!(code, Some(1), "{out}");
    let found = positions(&out, &file);
    for marker in ["shard_count", "FETCH pets"] {
        let want = line_of(&text, marker);
        assert!(
            found.iter().any(|(l, _, _)| *l == want),
            "no error reported at line {want} ({marker:?}); got {found:?}; output:\n{out}"
        );
    }
}

/// A config on `port`: `GET /prod/hi` (mock) and everything else proxied to a port nobody
/// listens on (a refused connect: 504 and a gateway-log warning).
fn serving_config(dir: &TempDir, port: u16) -> PathBuf {
    let dead: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let apis = rest_proxy_api(dead, 2000, &mock_route("GET /hi", 200, "hi"));
    dir.write(
        "gateway.toml",
        &config_text(&Server::default(), port, &apis),
    )
}

/// Starts `tollgate args...`, waits until `addr` accepts.
fn spawn(args: &[&OsStr], addr: SocketAddr, dir: TempDir) -> Gateway {
    Gateway::spawn(args, addr, Some(dir))
}

/// Stops `gw` with SIGTERM and waits (bounded) for a clean exit; its whole output.
fn stop(mut gw: Gateway) -> String {
    signal(gw.pid(), libc::SIGTERM);
    let status = gw.wait_exit(Duration::from_secs(10));
    // Let the output readers take the last lines.
    std::thread::sleep(Duration::from_millis(100));
    let out = gw.output();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}; output:\n{out}"
    );
    out
}

#[test]
fn version_and_help() {
    let (code, out) = run_to_end(&[Path::new("--version")]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out.trim(),
        format!("tollgate {}", env!("CARGO_PKG_VERSION"))
    );
    let (code, out) = run_to_end(&[Path::new("--help")]);
    assert_eq!(code, Some(0), "{out}");
    for word in [
        "run",
        "validate",
        "doctor",
        "usage",
        "--config",
        "--log-level",
        "--log-format",
        "TOLLGATE_LOG",
    ] {
        assert!(out.contains(word), "{word} missing from --help:\n{out}");
    }
    // A bad level is refused before anything starts.
    let (code, out) = run_to_end(&[
        Path::new("--log-level"),
        Path::new("loud"),
        Path::new("doctor"),
    ]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("loud"), "{out}");
}

#[test]
fn run_subcommand_serves_the_config() {
    let dir = TempDir::new("cli-run");
    let port = free_port();
    let path = serving_config(&dir, port);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let gw = spawn(
        &[OsStr::new("run"), OsStr::new("--config"), path.as_os_str()],
        addr,
        dir,
    );
    let mut c = Client::connect(addr);
    let r = c.request(&get("/prod/hi"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "hi"));
    assert!(
        gw.wait_output("tollgate: info: listening on", Duration::from_secs(5)),
        "{}",
        gw.output()
    );
    let out = stop(gw);
    assert!(out.contains("tollgate: info: stopped"), "{out}");
}

/// Every line of `out` as a JSON object (panics on a line that is not one).
fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}\nall output:\n{out}"));
            for key in ["time", "level", "message"] {
                assert!(v[key].is_string(), "{key} missing: {l}");
            }
            v
        })
        .collect()
}

#[test]
fn json_log_format_gives_parseable_lines_with_fields() {
    let dir = TempDir::new("cli-json");
    let port = free_port();
    let path = serving_config(&dir, port);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let gw = spawn(
        &[
            OsStr::new("--config"),
            path.as_os_str(),
            OsStr::new("--log-format"),
            OsStr::new("json"),
        ],
        addr,
        dir,
    );
    // Three refused backend connects: one rate-limited line (count 1), two held back.
    for _ in 0..3 {
        let mut c = Client::connect(addr);
        assert_eq!(c.request(&get("/prod/nowhere")).status, 504);
    }
    assert!(gw.wait_output("upstream connect failed", Duration::from_secs(5)));
    let out = stop(gw);
    let lines = json_lines(&out);
    let find = |prefix: &str| {
        lines
            .iter()
            .find(|v| v["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{out}"))
    };
    let start = find("listening on");
    assert_eq!(start["level"], "info");
    assert_eq!(start["listeners"], format!("http://{addr}"));
    assert_eq!(start["shards"], 1);
    // RFC 3339 UTC with milliseconds.
    let time = start["time"].as_str().unwrap_or("");
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
    let up = find("upstream connect failed");
    assert_eq!(up["level"], "warn");
    assert_eq!(up["count"], 1, "the first line of its interval: {up}");
    assert_eq!(up["shard"], 0);
    assert_eq!(up["detail"], "connection refused");
    assert!(up["upstream"]
        .as_str()
        .is_some_and(|u| u.starts_with("127.0.0.1:")));
    assert_eq!(
        lines
            .iter()
            .filter(|v| v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("upstream")))
            .count(),
        1,
        "rate-limited: {out}"
    );
    find("shutting down");
    find("stopped");
}

/// Runs `tollgate args...` with `env` until it prints `needle` (`None`: until it exits) or
/// exits, at most 10 s, then kills it: (exited, output).
fn run_until(args: &[&OsStr], env: &[(&str, &str)], needle: Option<&str>) -> (bool, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    let text = Arc::new(Mutex::new(String::new()));
    let mut stderr = child.stderr.take().expect("stderr");
    let sink = text.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut t = sink.lock().unwrap_or_else(|e| e.into_inner());
            t.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let start = Instant::now();
    let exited = loop {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break true;
        }
        let seen =
            needle.is_some_and(|n| text.lock().unwrap_or_else(|e| e.into_inner()).contains(n));
        if seen || start.elapsed() > Duration::from_secs(10) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let out = text.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (exited, out)
}

#[test]
fn tollgate_log_sets_the_level_and_the_flag_wins() {
    let dead: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let apis = rest_proxy_api(dead, 2000, &mock_route("GET /hi", 200, "hi"));
    let gw = Gateway::start_with_env(&Server::default(), &apis, &[("TOLLGATE_LOG", "error")]);
    let mut c = Client::connect(gw.addr);
    assert_eq!(c.request(&get("/prod/hi")).status, 200);
    assert_eq!(c.request(&get("/prod/nowhere")).status, 504);

    // Error lines still come out: a second instance on the same port is refused (as JSON
    // here, from TOLLGATE_LOG_FORMAT).
    let dir = TempDir::new("cli-level");
    let second = dir.write(
        "second.toml",
        &config_text(&Server::default(), gw.addr.port(), &apis),
    );
    let (exited, out) = run_until(
        &[OsStr::new("--config"), second.as_os_str()],
        &[("TOLLGATE_LOG", "error"), ("TOLLGATE_LOG_FORMAT", "json")],
        None,
    );
    assert!(exited, "the second instance exits: {out}");
    let lines = json_lines(&out);
    assert!(
        lines.iter().any(|v| v["level"] == "error"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("another process already listens"))),
        "{out}"
    );
    assert!(lines.iter().all(|v| v["level"] == "error"), "{out}");

    // The first one said nothing at info or warn level: no start line, no upstream warning,
    // no drain lines.
    let out = stop(gw);
    for quiet in ["listening on", "upstream", "shutting down", "stopped"] {
        assert!(
            !out.contains(quiet),
            "{quiet:?} printed at TOLLGATE_LOG=error:\n{out}"
        );
    }

    // The flag wins over the environment.
    let port = free_port();
    let path = serving_config(&dir, port);
    let (exited, out) = run_until(
        &[
            OsStr::new("run"),
            OsStr::new("--config"),
            path.as_os_str(),
            OsStr::new("--log-level"),
            OsStr::new("info"),
        ],
        &[("TOLLGATE_LOG", "error")],
        Some("listening on"),
    );
    assert!(!exited, "{out}");
    assert!(out.contains("tollgate: info: listening on"), "{out}");
}
