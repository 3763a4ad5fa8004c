//! End-to-end runs of the generator through the library API against tiny
//! in-process HTTP servers on 127.0.0.1 (std::net, a thread per connection).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use tollgate_load::scenario::{RequestSet, RequestSpec};
use tollgate_load::{run, target, Config, Mode};

/// How the test server answers each request.
#[derive(Clone, Copy)]
enum Behavior {
    /// `200 ok`, keep-alive.
    Ok,
    /// `200 ok` with `Connection: close`, then close.
    CloseEach,
    /// Chunked `200`.
    Chunked,
    /// Read requests, never answer.
    Silent,
    /// Like `Ok`, but each connection stalls once for `pause` after `after`
    /// (measured from when the server was started).
    StallOnce { after: Duration, pause: Duration },
}

fn respond(stream: &mut TcpStream, how: Behavior) -> std::io::Result<bool> {
    match how {
        Behavior::Ok | Behavior::StallOnce { .. } => {
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")?
        }
        Behavior::CloseEach => {
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")?;
            return Ok(false);
        }
        Behavior::Chunked => stream.write_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n",
        )?,
        Behavior::Silent => {}
    }
    Ok(true)
}

fn serve_conn(mut stream: TcpStream, how: Behavior, started: Instant) {
    let _ = stream.set_nodelay(true);
    let mut stalled = false;
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0usize;
    loop {
        let n = match stream.read(&mut buf[have..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        have += n;
        // Answer every complete request head in the buffer (requests carry no body here).
        let mut start = 0;
        while let Some(end) = buf[start..have].windows(4).position(|w| w == b"\r\n\r\n") {
            start += end + 4;
            if let Behavior::StallOnce { after, pause } = how {
                if !stalled && started.elapsed() >= after {
                    stalled = true;
                    thread::sleep(pause);
                }
            }
            match respond(&mut stream, how) {
                Ok(true) => {}
                _ => return,
            }
        }
        buf.copy_within(start..have, 0);
        have -= start;
        if have == buf.len() {
            return;
        }
    }
}

fn server(how: Behavior) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let started = Instant::now();
    thread::spawn(move || {
        for s in listener.incoming().flatten() {
            thread::spawn(move || serve_conn(s, how, started));
        }
    });
    addr
}

fn config(addr: SocketAddr, path: &str) -> Config {
    let t = target::resolve(&format!("http://{addr}{path}"), false).expect("loopback target");
    let reqs = RequestSet::build(&[RequestSpec::get(path)], &t.url.host_header).expect("request");
    Config::new(t, reqs)
}

#[test]
fn open_loop_hits_the_requested_rate() {
    let addr = server(Behavior::Ok);
    let mut cfg = config(addr, "/rate");
    cfg.mode = Mode::Open { rate: 2000.0 };
    cfg.connections = 4;
    cfg.threads = 2;
    cfg.duration = Duration::from_secs(2);
    let s = run(&cfg).expect("run");
    let rate = s.requests_per_sec();
    assert!(
        (1800.0..=2200.0).contains(&rate),
        "rate {rate}: {}",
        s.render()
    );
    // Every request scheduled in the 2 s window was sent and answered with 200.
    assert!((3990..=4000).contains(&s.stats.completed), "{}", s.render());
    assert_eq!(s.stats.status[200], s.stats.completed);
    assert_eq!(s.stats.sent, s.stats.completed);
    assert_eq!(s.stats.errors.total(), 0, "{:?}", s.stats.errors);
    assert_eq!(s.stats.latency.len(), s.stats.completed);
    assert_eq!(s.stats.service.len(), s.stats.completed);
    // Corrected latency can only be larger than the service time.
    assert!(s.stats.latency.value_at_quantile(0.5) >= s.stats.service.value_at_quantile(0.5));
    let j = s.json();
    assert_eq!(j.mode, "open");
    assert_eq!(j.rate, Some(2000.0));
    assert_eq!(j.connections, 4);
    assert!(j.service_time.is_some());
}

#[test]
fn open_loop_latency_includes_time_waiting_behind_a_stall() {
    // 500 req/s over 2 connections for 2 s; every connection stalls 400 ms
    // once, 1 s in: ~200 of ~1000 requests are due during the stall.
    let addr = server(Behavior::StallOnce {
        after: Duration::from_secs(1),
        pause: Duration::from_millis(400),
    });
    let mut cfg = config(addr, "/stall");
    cfg.mode = Mode::Open { rate: 500.0 };
    cfg.connections = 2;
    cfg.duration = Duration::from_secs(2);
    let s = run(&cfg).expect("run");
    assert!((990..=1000).contains(&s.stats.completed), "{}", s.render());
    assert_eq!(s.stats.errors.total(), 0, "{:?}", s.stats.errors);
    let corrected_p90 = s.stats.latency.value_at_quantile(0.90);
    let service_p90 = s.stats.service.value_at_quantile(0.90);
    // Requests that queued behind the stall carry their wait...
    assert!(s.stats.latency.max() >= 350_000, "{}", s.render());
    assert!(corrected_p90 >= 50_000, "{}", s.render());
    // ...which the send-to-response time does not show.
    assert!(service_p90 < corrected_p90 / 4, "{}", s.render());
}

#[test]
fn closed_loop_bounded_by_request_count() {
    let addr = server(Behavior::Ok);
    let mut cfg = config(addr, "/n");
    cfg.connections = 8;
    cfg.threads = 2;
    cfg.max_requests = Some(5000);
    let s = run(&cfg).expect("run");
    assert_eq!(s.stats.completed, 5000, "{}", s.render());
    assert_eq!(s.stats.sent, 5000);
    assert_eq!(s.stats.status[200], 5000);
    assert_eq!(s.stats.errors.total(), 0);
    assert_eq!(s.stats.bytes_read, 5000 * 40);
    assert!(s.elapsed < Duration::from_secs(5), "{:?}", s.elapsed);
    let j = serde_json::to_value(s.json()).expect("json");
    assert_eq!(j["requests"], 5000);
    assert_eq!(j["status_codes"]["200"], 5000);
    assert_eq!(j["status"]["2xx"], 5000);
    assert_eq!(j["mode"], "closed");
    assert!(j["latency"]["p99_us"].as_u64().is_some());
}

#[test]
fn closed_loop_pipelined_with_chunked_responses() {
    let addr = server(Behavior::Chunked);
    let mut cfg = config(addr, "/pipe");
    cfg.connections = 3;
    cfg.mode = Mode::Closed { pipeline: 8 };
    cfg.max_requests = Some(3001);
    let s = run(&cfg).expect("run");
    assert_eq!(s.stats.completed, 3001, "{}", s.render());
    assert_eq!(s.stats.status[200], 3001);
    assert_eq!(s.stats.errors.total(), 0);
}

#[test]
fn reconnects_when_the_server_closes_each_connection() {
    let addr = server(Behavior::CloseEach);
    let mut cfg = config(addr, "/close");
    cfg.connections = 2;
    cfg.max_requests = Some(200);
    let s = run(&cfg).expect("run");
    assert_eq!(s.stats.completed, 200, "{}", s.render());
    assert_eq!(s.stats.errors.total(), 0, "{:?}", s.stats.errors);
    assert!(s.stats.connects >= 200);
}

#[test]
fn silent_server_times_out_and_the_run_still_ends() {
    let addr = server(Behavior::Silent);
    let mut cfg = config(addr, "/silent");
    cfg.connections = 2;
    cfg.duration = Duration::from_millis(800);
    cfg.timeout = Duration::from_millis(200);
    let s = run(&cfg).expect("run");
    assert_eq!(s.stats.completed, 0);
    assert!(s.stats.errors.timeout >= 4, "{:?}", s.stats.errors);
    assert!(s.elapsed < Duration::from_secs(2), "{:?}", s.elapsed);
}

#[test]
fn open_loop_against_a_silent_server_counts_what_was_owed() {
    let addr = server(Behavior::Silent);
    let mut cfg = config(addr, "/owed");
    cfg.mode = Mode::Open { rate: 100.0 };
    cfg.connections = 2;
    cfg.duration = Duration::from_millis(500);
    cfg.timeout = Duration::from_millis(200);
    let s = run(&cfg).expect("run");
    assert_eq!(s.stats.completed, 0);
    // 50 requests were scheduled; each was either timed out in flight or never sent.
    assert_eq!(s.stats.errors.timeout, 50, "{:?}", s.stats.errors);
}

#[test]
fn refused_connections_are_counted_and_the_run_ends() {
    // Bind then drop a listener to get a port nobody listens on.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cfg = config(addr, "/");
    cfg.connections = 2;
    cfg.duration = Duration::from_millis(300);
    let s = run(&cfg).expect("run");
    assert_eq!(s.stats.completed, 0);
    assert!(s.stats.errors.connect > 0);
    assert!(s.elapsed < Duration::from_secs(2));
}

#[test]
fn non_loopback_targets_are_refused() {
    for url in [
        "http://10.0.0.1:8080/",
        "http://192.168.1.10/",
        "http://[2001:db8::1]:80/",
    ] {
        let err = target::resolve(url, false).expect_err(url);
        assert!(err.to_string().contains("not a loopback address"), "{err}");
    }
    assert!(target::resolve("http://127.0.0.2:9/", false).is_ok());
}
