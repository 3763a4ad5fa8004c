//! Client-side timeouts: an idle keep-alive connection is closed after `idle_timeout_ms`, and
//! a client that dribbles a request head slower than `header_read_timeout_ms` is cut off.

use crate::client::{get, Client, Closed};
use crate::harness::{mock_route, rest_proxy_api, Gateway, Server};
use crate::origin::Origin;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn mock_api() -> String {
    format!(
        "[[apis]]\nname = \"m\"\nprotocol = \"rest\"\n  [[apis.stages]]\n  name = \"prod\"\n{}",
        mock_route("GET /hello", 200, "hello")
    )
}

#[test]
fn idle_keep_alive_connection_is_closed() {
    let server = Server::default()
        .with("idle_timeout_ms", "300")
        .with("header_read_timeout_ms", "5000");
    let gw = Gateway::start(&server, &mock_api());

    // After a response.
    let mut c = Client::connect(gw.addr);
    let r = c.request(&get("/prod/hello"));
    assert_eq!(r.status, 200);
    assert!(!r.closes());
    let start = Instant::now();
    let how = c.wait_closed(Duration::from_secs(3));
    let took = start.elapsed();
    assert!(
        matches!(how, Closed::Eof | Closed::Reset),
        "idle connection after a response: {how:?} after {took:?}"
    );
    assert!(
        took >= Duration::from_millis(200) && took <= Duration::from_millis(1200),
        "idle connection closed after {took:?} with idle_timeout_ms = 300"
    );

    // Without any request.
    let mut c = Client::connect(gw.addr);
    let start = Instant::now();
    let how = c.wait_closed(Duration::from_secs(3));
    let took = start.elapsed();
    assert!(
        matches!(how, Closed::Eof | Closed::Reset),
        "connection without a request: {how:?} after {took:?}"
    );
    assert!(
        took <= Duration::from_millis(1200),
        "connection without a request closed after {took:?}"
    );

    // A connection that keeps working stays open past the idle timeout in total.
    let mut c = Client::connect(gw.addr);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(700) {
        let r = c.request(&get("/prod/hello"));
        assert_eq!(r.status, 200);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn slow_request_head_is_cut_off() {
    let origin = Origin::start();
    let server = Server::default()
        .with("header_read_timeout_ms", "500")
        .with("idle_timeout_ms", "10000");
    let gw = Gateway::start(&server, &rest_proxy_api(origin.addr, 5000, ""));
    let mut c = Client::connect(gw.addr);
    let head =
        b"GET /prod/echo/slow HTTP/1.1\r\nHost: gw.test\r\nX-Padding: aaaaaaaaaaaaaaaa\r\n\r\n";
    let stop = Arc::new(AtomicBool::new(false));
    let mut w = c.stream.try_clone().unwrap();
    let stop_w = stop.clone();
    let start = Instant::now();
    // One byte every 100 ms: the whole head would take about 7 s.
    let writer = std::thread::spawn(move || {
        for &b in head.iter() {
            if stop_w.load(Ordering::SeqCst) || w.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut how = c.wait_closed(Duration::from_secs(4));
    if let Closed::Data(bytes) = &how {
        // A 408 (or other 4xx) before closing is fine.
        assert!(
            bytes.starts_with(b"HTTP/1.1 4"),
            "slow head answered with {:?}",
            String::from_utf8_lossy(bytes)
        );
        how = c.wait_closed(Duration::from_secs(2));
    }
    let took = start.elapsed();
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(
        matches!(how, Closed::Eof | Closed::Reset),
        "slow head: connection not closed ({how:?} after {took:?})"
    );
    assert!(
        took >= Duration::from_millis(400) && took <= Duration::from_millis(1500),
        "slow head cut off after {took:?} with header_read_timeout_ms = 500"
    );
    assert_eq!(origin.requests(), 0, "origin saw {:?}", origin.seen());
}

/// A request body that stops arriving: after `body_read_timeout_ms` of silence (by default
/// `header_read_timeout_ms`), 408 and a close, since no response has started: on a proxied
/// route (the body is being forwarded) and on a mock route (the body is read and discarded).
#[test]
fn stalled_request_body_gets_408() {
    let origin = Origin::start();
    let routes = mock_route("POST /local", 200, "local");
    for (server, expect_ms) in [
        (Server::default().with("header_read_timeout_ms", "300"), 300),
        (
            Server::default()
                .with("header_read_timeout_ms", "5000")
                .with("body_read_timeout_ms", "400"),
            400,
        ),
    ] {
        let gw = Gateway::start(&server, &rest_proxy_api(origin.addr, 10_000, &routes));
        for path in ["/prod/upload", "/prod/local"] {
            let mut c = Client::connect(gw.addr);
            let mut msg =
                format!("POST {path} HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 4000000\r\n\r\n")
                    .into_bytes();
            msg.extend_from_slice(&[b'x'; 1000]);
            c.send(&msg);
            let started = Instant::now();
            let r = c.read_response();
            let took = started.elapsed();
            r.assert_gateway_error(408, r#"{"message":"Request Timeout"}"#);
            assert!(r.closes(), "{path}: {:?}", r.headers);
            let expect = Duration::from_millis(expect_ms);
            assert!(
                took >= expect.mul_f32(0.7) && took < expect + Duration::from_secs(2),
                "{path}: 408 after {took:?}, body read timeout {expect:?}"
            );
            c.assert_closed("after the 408");
        }
    }
}
