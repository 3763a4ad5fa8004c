//! Connection memory (issue 20), measured on the gateway process's RSS: what an idle
//! keep-alive connection costs, what a client trickling a partial head costs, and that RSS
//! comes back after such a burst closes. Bounds are the targets; the build at the time
//! of writing measured about 4.4 KiB per idle connection and 12 KiB per slow client before the
//! work, 1.5 and 5.5 KiB after (debug build, loopback).

use crate::harness::{mock_route, Gateway, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Resident set of `pid` in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Raises this process's open-files limit to at least `want` (up to the hard limit); false
/// when the hard limit is lower.
fn raise_nofile(want: u64) -> bool {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return false;
        }
        if lim.rlim_cur >= want {
            return true;
        }
        if lim.rlim_max < want {
            return false;
        }
        lim.rlim_cur = want;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0
    }
}

fn mock_api() -> String {
    format!(
        "[[apis]]\nname = \"m\"\nprotocol = \"rest\"\n  [[apis.stages]]\n  name = \"prod\"\n{}",
        mock_route("GET /hello", 200, "hi")
    )
}

fn gateway() -> Gateway {
    let server = Server::default()
        .with("header_read_timeout_ms", "60000")
        .with("idle_timeout_ms", "60000");
    Gateway::start(&server, &mock_api())
}

/// One complete keep-alive request and its response on `s`.
fn request(s: &mut TcpStream) {
    s.write_all(b"GET /prod/hello HTTP/1.1\r\nhost: x\r\n\r\n")
        .expect("write request");
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !(got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"hi")) {
        let n = s.read(&mut chunk).expect("read response");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

fn connect(gw: &Gateway) -> TcpStream {
    let s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Waits until the gateway's RSS is at most `limit` KiB; the last value seen.
fn rss_settles(pid: u32, limit: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let r = rss_kib(pid);
        if r <= limit || Instant::now() >= deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_idle_keep_alive_connection_costs_at_most_2_kib() {
    const N: u64 = 1000;
    assert!(raise_nofile(4 * N + 256), "open-files limit too low");
    let gw = gateway();
    let pid = gw.pid();
    let mut warm = connect(&gw);
    request(&mut warm);
    drop(warm);
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(pid);
    let conns: Vec<TcpStream> = (0..N)
        .map(|_| {
            let mut s = connect(&gw);
            request(&mut s);
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let held = rss_kib(pid);
    let per_conn = (held.saturating_sub(before) * 1024) / N;
    assert!(
        per_conn <= 2048,
        "{N} idle keep-alive connections: RSS {before} -> {held} KiB, {per_conn} bytes each"
    );
    drop(conns);
}

#[test]
fn a_slow_partial_head_costs_at_most_8_kib_and_memory_comes_back() {
    // More than `buffer::TRIM_PEAK` (1,024), so their closing counts as a burst to trim after.
    const N: u64 = 1100;
    assert!(raise_nofile(4 * N + 256), "open-files limit too low");
    let gw = gateway();
    let pid = gw.pid();
    let mut warm = connect(&gw);
    request(&mut warm);
    drop(warm);
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(pid);
    let mut conns: Vec<TcpStream> = (0..N).map(|_| connect(&gw)).collect();
    // A partial head, one byte per connection per round.
    let head = b"GET /prod/hello HTTP/1.1\r\nhost: x\r\nx-slow: 0123456789abcdef";
    for i in 0..head.len() {
        for s in &mut conns {
            s.write_all(&head[i..i + 1]).expect("write one byte");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(500));
    let held = rss_kib(pid);
    let per_conn = (held.saturating_sub(before) * 1024) / N;
    assert!(
        per_conn <= 8192,
        "{N} clients trickling a head: RSS {before} -> {held} KiB, {per_conn} bytes each"
    );
    // Each of them is still waiting for its head: none was answered or closed.
    conns[0].set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    assert!(
        matches!(conns[0].read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a slow client got an answer or a close before its head was complete"
    );
    drop(conns);
    // The shard trims a few seconds after the burst ended (`shard::TRIM_AFTER`).
    let limit = before + before / 10;
    let after = rss_settles(pid, limit, Duration::from_secs(20));
    assert!(
        after <= limit,
        "RSS {before} KiB before, {held} KiB with {N} slow clients, {after} KiB 20 s after they closed (limit {limit})"
    );
}
