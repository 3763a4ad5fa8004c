//! Graceful shutdown and listener checks, end to end: SIGTERM lets a slow in-flight request
//! finish (with `connection: close`), closes the listeners, answers an idle keep-alive
//! connection's next request with `connection: close`, and exits 0; the drain timeout cuts
//! what is still running; a second gateway on the same port is refused.

use crate::client::{get, Client};
use crate::harness::{config_text, run_to_end, Gateway, Server, TempDir};
use crate::ops_support::{signal, slow_backend};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn api(slow: SocketAddr) -> String {
    format!(
        r#"[[apis]]
name = "shop"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  [[apis.routes]]
  key = "GET /slow"
  integration = {{ type = "http_proxy", uri = "http://{slow}/slow", timeout_ms = 10000 }}
  [[apis.routes]]
  key = "GET /fast"
  integration = {{ type = "mock", status = 200, body = "fast" }}
"#
    )
}

/// Whether new connections are refused within `timeout`.
fn refuses_connections(addr: SocketAddr, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return true,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    false
}

#[test]
fn sigterm_lets_a_slow_in_flight_request_finish() {
    let slow = slow_backend(Duration::from_millis(1500));
    let server = Server::default()
        .with("shards", "2")
        .with("drain_timeout_ms", "8000");
    let mut gw = Gateway::start(&server, &api(slow));
    let mut idle = Client::connect(gw.addr);
    let r = idle.request(&get("/prod/fast"));
    assert_eq!(r.status, 200);
    assert!(!r.closes(), "keep-alive before the shutdown");

    let mut busy = Client::connect(gw.addr);
    busy.send(&get("/prod/slow"));
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    signal(gw.pid(), libc::SIGTERM);
    assert!(
        gw.wait_output("shutting down", Duration::from_secs(2)),
        "{}",
        gw.output()
    );
    assert!(
        refuses_connections(gw.addr, Duration::from_secs(2)),
        "listeners close on SIGTERM\n{}",
        gw.output()
    );
    // The idle keep-alive connection's next request is answered, and says close.
    let r = idle.request(&get("/prod/fast"));
    assert_eq!(r.status, 200);
    assert!(
        r.closes(),
        "a response during the drain closes its connection"
    );
    // The in-flight request finishes.
    let r = busy.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "slow"));
    assert!(r.closes(), "{:?}", r.headers);
    let status = gw
        .wait_exit(Duration::from_secs(5))
        .expect("exits after the drain");
    assert_eq!(status.code(), Some(0), "{}", gw.output());
    assert!(sent.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_drain_timeout_cuts_what_is_left() {
    let slow = slow_backend(Duration::from_secs(6));
    let server = Server::default().with("drain_timeout_ms", "300");
    let mut gw = Gateway::start(&server, &api(slow));
    let mut busy = Client::connect(gw.addr);
    busy.send(&get("/prod/slow"));
    std::thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    signal(gw.pid(), libc::SIGINT);
    let status = gw
        .wait_exit(Duration::from_secs(4))
        .expect("exits at the drain timeout");
    assert_eq!(status.code(), Some(0), "{}", gw.output());
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "exited after {took:?}, before the timeout"
    );
    assert!(gw.output().contains("drain timeout"), "{}", gw.output());
    assert!(
        busy.try_read_response(false).is_err(),
        "the cut request gets no response"
    );
}

#[test]
fn a_second_instance_on_the_same_port_is_refused() {
    let slow = slow_backend(Duration::from_millis(1));
    let gw = Gateway::start(&Server::default(), &api(slow));
    let dir = TempDir::new("second");
    let path = dir.write(
        "second.toml",
        &config_text(&Server::default(), gw.addr.port(), &api(slow)),
    );
    let (code, out) = run_to_end(&[std::path::Path::new("--config"), &path]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("another process already listens"), "{out}");
    // The first one still takes every connection.
    for _ in 0..20 {
        let mut c = Client::connect(gw.addr);
        assert_eq!(c.request(&get("/prod/fast")).status, 200);
    }
}
