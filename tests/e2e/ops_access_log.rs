//! Access logs end to end: one line per request with the right values (request id equal to
//! the response's `x-amzn-RequestId`, status, route key, integration status and latencies,
//! gateway response type, length), reopen after rename on SIGUSR1, and a destination that
//! blocks (a FIFO nobody reads) neither stalls requests nor goes uncounted.

use crate::client::{get, req, Client};
use crate::harness::{free_port, Gateway, Server, TempDir};
use crate::ops_support::{admin_get, parse_prometheus, signal, slow_backend, wait_lines};
use crate::origin::Origin;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const FORMAT: &str = "id=$context.requestId|st=$context.status|rk=$context.routeKey|is=$context.integrationStatus|il=$context.integrationLatency|rl=$context.responseLatency|rt=$context.error.responseType|len=$context.responseLength|m=$context.httpMethod|p=$context.path";

/// A REST API `shop`, stage `prod` logging to `log` with `format`: `GET /slow` proxied to
/// `slow`, `ANY /o/{proxy+}` to `origin`, `POST /made` a mock.
fn api(log: &Path, format: &str, slow: SocketAddr, origin: SocketAddr) -> String {
    format!(
        r#"[[apis]]
name = "shop"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  access_log = {{ destination = "{}", format = '{format}' }}
  [[apis.routes]]
  key = "GET /slow"
  integration = {{ type = "http_proxy", uri = "http://{slow}/slow", timeout_ms = 5000 }}
  [[apis.routes]]
  key = "ANY /o/{{proxy+}}"
  integration = {{ type = "http_proxy", uri = "http://{origin}/{{proxy}}", timeout_ms = 5000 }}
  [[apis.routes]]
  key = "POST /made"
  integration = {{ type = "mock", status = 201, body = "made" }}
"#,
        log.display()
    )
}

/// `key=value` fields of one line.
fn fields(line: &str) -> std::collections::HashMap<&str, &str> {
    line.split('|').filter_map(|f| f.split_once('=')).collect()
}

#[test]
fn one_line_per_request_with_its_values() {
    let dir = TempDir::new("alog");
    let log = dir.path.join("access.log");
    let origin = Origin::start();
    let slow = slow_backend(Duration::from_millis(300));
    let gw = Gateway::start(&Server::default(), &api(&log, FORMAT, slow, origin.addr));
    let mut c = Client::connect(gw.addr);
    let r_slow = c.request(&get("/prod/slow"));
    assert_eq!(r_slow.status, 200);
    let r_made = c.request(&req("POST", "/prod/made", &[], b"hi"));
    assert_eq!(r_made.status, 201);
    let r_503 = c.request(&get("/prod/o/status?code=503"));
    assert_eq!(r_503.status, 503);
    let r_none = c.request(&get("/prod/nothing"));
    assert_eq!(r_none.status, 403);
    let lines = wait_lines(&log, 4, Duration::from_secs(5));
    assert_eq!(
        lines.len(),
        4,
        "one line per request: {lines:#?}\n{}",
        gw.output()
    );

    let slow_line = fields(&lines[0]);
    assert_eq!(slow_line["id"], r_slow.request_id());
    assert_eq!(slow_line["st"], "200");
    assert_eq!(slow_line["rk"], "GET /slow");
    assert_eq!(slow_line["is"], "200");
    assert_eq!(slow_line["rt"], "-");
    assert_eq!(slow_line["len"], "4");
    assert_eq!(slow_line["m"], "GET");
    assert_eq!(slow_line["p"], "/prod/slow");
    let il: u64 = slow_line["il"].parse().expect("integration latency");
    let rl: u64 = slow_line["rl"].parse().expect("response latency");
    assert!(
        (300..3000).contains(&il),
        "integration latency {il} ms for a 300 ms backend"
    );
    assert!(
        rl >= il && rl < il + 2000,
        "response latency {rl} ms vs integration {il} ms"
    );

    let made = fields(&lines[1]);
    assert_eq!(made["id"], r_made.request_id());
    assert_eq!(
        (made["st"], made["rk"], made["is"], made["il"]),
        ("201", "POST /made", "-", "-")
    );
    assert_eq!(made["len"], "4");

    let failed = fields(&lines[2]);
    assert_eq!(failed["id"], r_503.request_id());
    assert_eq!((failed["st"], failed["is"]), ("503", "503"));
    assert_eq!(failed["rk"], "ANY /o/{proxy+}");
    assert_eq!(failed["p"], "/prod/o/status");

    let none = fields(&lines[3]);
    assert_eq!(none["id"], r_none.request_id());
    assert_eq!((none["st"], none["rk"]), ("403", "-"));
    assert_eq!(none["rt"], "MISSING_AUTHENTICATION_TOKEN");
    assert_eq!(none["len"], r_none.body.len().to_string());
}

#[test]
fn json_lines_parse_and_a_refused_backend_is_logged() {
    let dir = TempDir::new("alogj");
    let log = dir.path.join("access.json");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let origin = Origin::start();
    let format = "json";
    let gw = Gateway::start(&Server::default(), &api(&log, format, closed, origin.addr));
    let mut c = Client::connect(gw.addr);
    let r = c.request(&req("GET", "/prod/slow", &[("user-agent", "t\"q")], b""));
    assert_eq!(r.status, 504, "INTEGRATION_FAILURE answers 504");
    let lines = wait_lines(&log, 1, Duration::from_secs(5));
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert!(l.starts_with('{') && l.ends_with('}'), "{l}");
    assert!(
        l.contains(&format!("\"requestId\":\"{}\"", r.request_id())),
        "{l}"
    );
    assert!(l.contains("\"status\":\"504\""), "{l}");
    assert!(l.contains("\"routeKey\":\"GET /slow\""), "{l}");
    assert!(l.contains("\"ip\": \"127.0.0.1\""), "{l}");
    // The gateway's own log names the failure once.
    assert!(
        gw.wait_output(
            "connect failed (connection refused)",
            Duration::from_secs(2)
        ),
        "{}",
        gw.output()
    );
}

#[test]
fn sigusr1_reopens_the_file_after_a_rename() {
    let dir = TempDir::new("alogr");
    let log = dir.path.join("access.log");
    let origin = Origin::start();
    let gw = Gateway::start(
        &Server::default(),
        &api(&log, FORMAT, origin.addr, origin.addr),
    );
    let mut c = Client::connect(gw.addr);
    let first = c.request(&req("POST", "/prod/made", &[], b""));
    assert_eq!(wait_lines(&log, 1, Duration::from_secs(5)).len(), 1);
    let rotated = dir.path.join("access.log.1");
    std::fs::rename(&log, &rotated).expect("rename");
    signal(gw.pid(), libc::SIGUSR1);
    assert!(
        gw.wait_output("reopening", Duration::from_secs(5)),
        "{}",
        gw.output()
    );
    // The writer reopens on its next chunk or within its 200 ms idle tick.
    std::thread::sleep(Duration::from_millis(400));
    let second = c.request(&req("POST", "/prod/made", &[], b""));
    let new_lines = wait_lines(&log, 1, Duration::from_secs(5));
    assert_eq!(
        new_lines.len(),
        1,
        "the new file gets the new line\n{}",
        gw.output()
    );
    assert_eq!(fields(&new_lines[0])["id"], second.request_id());
    let old = wait_lines(&rotated, 1, Duration::from_secs(1));
    assert_eq!(old.len(), 1, "{old:?}");
    assert_eq!(fields(&old[0])["id"], first.request_id());
}

#[test]
fn a_blocked_destination_does_not_stall_requests() {
    let dir = TempDir::new("alogf");
    let fifo = dir.path.join("access.fifo");
    let cpath = std::ffi::CString::new(fifo.to_str().expect("utf-8 path")).expect("c path");
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) }, 0, "mkfifo");
    // Hold the read end open and never read: the pipe fills and the writer blocks.
    // SAFETY: open with a NUL-terminated path; the fd is closed below.
    let rfd = unsafe { libc::open(cpath.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) };
    assert!(rfd >= 0, "open fifo for reading");
    let admin = free_port();
    let format = "$context.requestId $context.identity.userAgent";
    let origin = Origin::start();
    let apis = format!(
        "{}\n[admin]\nport = {admin}\n",
        api(&fifo, format, origin.addr, origin.addr)
    );
    let gw = Gateway::start(&Server::default(), &apis);
    let admin: SocketAddr = ([127, 0, 0, 1], admin).into();
    // 4 KiB lines: the pipe (64 KiB), the writer's queue (2 MiB) and the shard's buffer
    // (1 MiB) fill within ~800 requests; every request must still be answered promptly.
    let ua = "u".repeat(4096);
    let n = 1500;
    let mut c = Client::connect(gw.addr);
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..n {
        let t = Instant::now();
        let r = c.request(&req("POST", "/prod/made", &[("user-agent", &ua)], b""));
        assert_eq!(r.status, 201);
        slowest = slowest.max(t.elapsed());
    }
    let took = start.elapsed();
    assert!(
        slowest < Duration::from_secs(1),
        "slowest request took {slowest:?}"
    );
    // The last request is logged just after its response was written: scrape until every
    // line is accounted for (at most 3 s; more lines than requests fail below).
    let scraped = Instant::now();
    let (written, dropped) = loop {
        let (status, body) = admin_get(admin, "/metrics");
        assert_eq!(status, 200);
        let m = parse_prometheus(&body);
        let written = m.sum("tollgate_access_log_lines_total");
        let dropped = m.sum("tollgate_access_log_dropped_lines_total");
        if written + dropped >= n as f64 || scraped.elapsed() > Duration::from_secs(3) {
            break (written, dropped);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        written + dropped,
        n as f64,
        "every line is written or counted as dropped"
    );
    assert!(
        dropped > 0.0,
        "a blocked FIFO drops lines ({written} written), took {took:?}"
    );
    // SAFETY: closing the fd we opened.
    unsafe { libc::close(rfd) };
}
