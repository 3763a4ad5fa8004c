//! Connections closed with operations in flight: clients that vanish mid-head, mid-upload,
//! mid-download, while their request waits on the backend, or while idle. The gateway must
//! let go of everything such a connection held: its open-descriptor count comes back to
//! where it was, its memory does not grow from one round of aborts to the next (buffers go
//! back to the shard's pool), and it keeps serving.

use crate::client::{get, Client};
use crate::harness::{rest_proxy_api, Gateway, Server};
use crate::origin::Origin;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the gateway");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s
}

/// One round: `n` clients of each kind, each closing with work in flight.
fn abort_round(addr: SocketAddr, n: usize) {
    let chunk = vec![b'x'; 64 * 1024];
    let mut open = Vec::new();
    for _ in 0..n {
        // Idle (waiting for a first request).
        open.push(connect(addr));

        // Half a head.
        let mut s = connect(addr);
        let _ = s.write_all(b"GET /prod/echo HTTP/1.1\r\nHost: a\r\nX-Half: ");
        open.push(s);

        // Mid-upload: 5 MB announced, 256 KiB sent (the gateway is relaying it upstream).
        let mut s = connect(addr);
        let _ = s
            .write_all(b"POST /prod/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5000000\r\n\r\n");
        for _ in 0..4 {
            let _ = s.write_all(&chunk);
        }
        open.push(s);

        // Mid-download: 8 MB coming, 16 KiB read (the gateway is writing to us).
        let mut s = connect(addr);
        let _ = s.write_all(b"GET /prod/download?size=8000000 HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut got = vec![0u8; 16 * 1024];
        let _ = s.read(&mut got);
        open.push(s);

        // Waiting on a backend that never answers.
        let mut s = connect(addr);
        let _ = s.write_all(b"GET /prod/never HTTP/1.1\r\nHost: a\r\n\r\n");
        open.push(s);
    }
    // Let the gateway get into the middle of all of it, then vanish.
    std::thread::sleep(Duration::from_millis(100));
    drop(open);
}

fn wait_fds(pid: u32, want: usize, timeout: Duration) -> usize {
    let start = Instant::now();
    loop {
        let n = open_fds(pid);
        if n <= want || start.elapsed() > timeout {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn aborted_connections_release_descriptors_and_buffers() {
    let origin = Origin::start();
    // 16 KiB buffers: a reused buffer has all its pages touched after the first round, so
    // RSS only grows from round to round if buffers are not given back.
    let server = Server::default()
        .with("idle_timeout_ms", "60000")
        .with("header_read_timeout_ms", "60000")
        .with("read_buffer_bytes", "16384")
        .with("shards", "1");
    // The `never` requests give up after 1 s (504 to a client that is gone).
    let gw = Gateway::start(&server, &rest_proxy_api(origin.addr, 1000, ""));
    let pid = gw.pid();

    let mut c = Client::connect(gw.addr);
    assert_eq!(c.request(&get("/prod/echo")).status, 200);
    drop(c);
    // Settled: listener, rings, eventfds, at most the one pooled backend connection.
    std::thread::sleep(Duration::from_millis(200));
    let base = open_fds(pid);
    assert!(base > 0, "cannot read /proc/{pid}/fd");

    // Warm-up: three times the connections of a measured round, so the shard's pools of free
    // buffers (read buffers, send buffers) reach a high-water mark the measured rounds stay
    // under: from then on, RSS can only grow if something leaks.
    abort_round(gw.addr, 60);
    let left = wait_fds(pid, base, Duration::from_secs(10));
    assert!(
        left <= base,
        "warm-up: {left} descriptors open, {base} before"
    );

    let mut rss = Vec::new();
    for round in 0..5 {
        abort_round(gw.addr, 20);
        let left = wait_fds(pid, base, Duration::from_secs(10));
        assert!(
            left <= base,
            "round {round}: {left} descriptors open after aborted connections, {base} before"
        );
        rss.push(rss_kib(pid));
    }
    // Every round aborts 100 connections that held read buffers (16 KiB each) and write
    // scratch; leaked, they would add over 1.5 MiB per round, 6 MiB over four rounds.
    let growth = rss[4].saturating_sub(rss[0]);
    assert!(
        growth < 1024,
        "RSS grew {growth} KiB from round 1 to round 5 of aborts (KiB per round: {rss:?})"
    );

    // Still serving, on a fresh connection and with the backend pool intact.
    let mut c = Client::connect(gw.addr);
    for _ in 0..3 {
        assert_eq!(c.request(&get("/prod/echo")).status, 200);
    }
}
