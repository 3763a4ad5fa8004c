//! Pooled backend connections close on their own, with no traffic to trigger it, on both
//! socket paths: after a burst, when `upstream_idle_timeout_ms` passes (the origin sees every
//! connection closed by tollgate), and when the origin closes idle keep-alive connections
//! (tollgate's side must not linger in CLOSE-WAIT; the next request still succeeds). Also:
//! an unknown `TOLLGATE_SOCKET_PATH` is refused at start-up.
//!
//! The origin here is its own small one: it can hold every response until a whole burst has
//! arrived (so tollgate needs one backend connection per request), close a connection after
//! answering, and it counts the connections closed by its peer.

use crate::client::{get, Client};
use crate::harness::{config_text, free_port, rest_proxy_api, Gateway, Server, TempDir, BIN};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// No origin connection thread lives longer than this.
const MAX_CONN_LIFE: Duration = Duration::from_secs(30);
/// The longest the origin holds a response while waiting for the rest of a burst.
const MAX_HOLD: Duration = Duration::from_secs(10);

#[derive(Default)]
struct State {
    stop: AtomicBool,
    accepted: AtomicUsize,
    /// Connection threads still running (their socket is open).
    open: AtomicUsize,
    /// Connections the peer (tollgate) closed: a read returned EOF or a reset.
    closed_by_peer: AtomicUsize,
    /// Connections the origin closed after answering.
    closed_by_origin: AtomicUsize,
    /// Request heads received, with a condvar for the burst gate.
    requests: Mutex<usize>,
    arrived: Condvar,
}

/// How the origin behaves.
#[derive(Clone, Copy, Default)]
struct Behaviour {
    /// Responses wait (bounded) until this many requests arrived in total.
    hold_until: usize,
    /// Close each connection this long after answering on it.
    close_after: Option<Duration>,
    /// Body bytes per response (`0`: the 2-byte `ok`).
    body_len: usize,
    /// This long after answering, write a stray response nobody asked for.
    stray_after: Option<Duration>,
}

/// A keep-alive origin answering every request `200` with `ok` (or `body_len` bytes).
struct PoolOrigin {
    addr: SocketAddr,
    st: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

/// The response for a body of `len` bytes: `ok` for 0, else `len` times `b`.
fn response(len: usize) -> Vec<u8> {
    let body: Vec<u8> = if len == 0 {
        b"ok".to_vec()
    } else {
        vec![b'b'; len]
    };
    let mut r = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
    r.extend_from_slice(&body);
    r
}

impl PoolOrigin {
    /// Answers `200 ok` on keep-alive connections, as `b` says.
    fn start(b: Behaviour) -> PoolOrigin {
        let l = TcpListener::bind("127.0.0.1:0").expect("origin bind");
        let addr = l.local_addr().expect("origin addr");
        l.set_nonblocking(true).expect("nonblocking listener");
        let st = Arc::new(State::default());
        let s = st.clone();
        let accept = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !s.stop.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((c, _)) => {
                        s.accepted.fetch_add(1, Ordering::SeqCst);
                        s.open.fetch_add(1, Ordering::SeqCst);
                        let s = s.clone();
                        conns.push(std::thread::spawn(move || {
                            serve(c, &s, b);
                            s.open.fetch_sub(1, Ordering::SeqCst);
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        PoolOrigin {
            addr,
            st,
            accept: Some(accept),
        }
    }

    fn accepted(&self) -> usize {
        self.st.accepted.load(Ordering::SeqCst)
    }
    fn open(&self) -> usize {
        self.st.open.load(Ordering::SeqCst)
    }
    fn closed_by_peer(&self) -> usize {
        self.st.closed_by_peer.load(Ordering::SeqCst)
    }
    fn closed_by_origin(&self) -> usize {
        self.st.closed_by_origin.load(Ordering::SeqCst)
    }
}

impl Drop for PoolOrigin {
    fn drop(&mut self) {
        self.st.stop.store(true, Ordering::SeqCst);
        self.st.arrived.notify_all();
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

/// One origin connection: requests without bodies (tollgate forwards GETs), one `200 ok` each.
fn serve(mut c: TcpStream, st: &State, b: Behaviour) {
    let answer = response(b.body_len);
    let born = Instant::now();
    let _ = c.set_read_timeout(Some(Duration::from_millis(20)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if st.stop.load(Ordering::SeqCst) || born.elapsed() > MAX_CONN_LIFE {
            return;
        }
        match c.read(&mut buf) {
            Ok(0) => {
                st.closed_by_peer.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => {
                st.closed_by_peer.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
        let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        head.drain(..end + 4);
        let mut n = st.requests.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        st.arrived.notify_all();
        let until = Instant::now() + MAX_HOLD;
        while *n < b.hold_until && Instant::now() < until && !st.stop.load(Ordering::SeqCst) {
            n = st
                .arrived
                .wait_timeout(n, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(n);
        if c.write_all(&answer).is_err() {
            return;
        }
        if let Some(after) = b.stray_after {
            std::thread::sleep(after);
            if c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstray")
                .is_err()
            {
                return;
            }
        }
        if let Some(after) = b.close_after {
            std::thread::sleep(after);
            st.closed_by_origin.fetch_add(1, Ordering::SeqCst);
            return; // dropping `c` closes it (FIN)
        }
    }
}

/// Sends `n` concurrent `GET /prod/x` through the gateway; each must get `200 ok`.
fn burst(gw: &Gateway, n: usize) {
    let addr = gw.addr;
    let clients: Vec<_> = (0..n)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let r = c.request(&get(&format!("/prod/x{i}")));
                assert_eq!((r.status, r.body_str().as_str()), (200, "ok"), "{r:?}");
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; whether it held.
fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn gateway(path: &str, origin: &PoolOrigin, idle_timeout_ms: u64) -> Gateway {
    let server = Server::default()
        .with("upstream_pool_size", "64")
        .with("upstream_idle_timeout_ms", &idle_timeout_ms.to_string());
    Gateway::start_with_env(
        &server,
        &rest_proxy_api(origin.addr, 10_000, ""),
        &[("TOLLGATE_SOCKET_PATH", path)],
    )
}

fn idle_connections_close_when_their_timeout_passes(path: &str) {
    const N: usize = 16;
    const IDLE_MS: u64 = 1_500;
    let origin = PoolOrigin::start(Behaviour {
        hold_until: N,
        ..Behaviour::default()
    });
    let gw = gateway(path, &origin, IDLE_MS);
    burst(&gw, N);
    let done = Instant::now();
    assert_eq!(
        origin.accepted(),
        N,
        "one backend connection per held request"
    );
    // Pooled, not closed after use: all N still open well before the timeout.
    assert_eq!(
        (origin.open(), origin.closed_by_peer()),
        (N, 0),
        "right after the burst ({:?})",
        done.elapsed()
    );
    // No further traffic: tollgate must close every one within timeout + slack.
    let closed = wait_until(Duration::from_millis(IDLE_MS + 3_000), || {
        origin.closed_by_peer() == N
    });
    let took = done.elapsed();
    assert!(
        closed,
        "{path}: {} of {N} pooled connections closed by tollgate {took:?} after the burst (idle timeout {IDLE_MS} ms)",
        origin.closed_by_peer()
    );
    assert!(
        took >= Duration::from_millis(IDLE_MS / 2),
        "{path}: closed after {took:?}, long before the idle timeout"
    );
    assert!(wait_until(Duration::from_secs(2), || origin.open() == 0));
}

/// tollgate's TCP sockets (IPv4 and IPv6 tables of its network namespace) connected to
/// `port` that are in CLOSE-WAIT (state 08).
fn close_wait_to(pid: u32, port: u16) -> usize {
    let want = format!(":{port:04X}");
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/{pid}/net/{t}")).ok())
        .map(|text| {
            text.lines()
                .skip(1)
                .filter(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 3 && f[2].ends_with(&want) && f[3] == "08"
                })
                .count()
        })
        .sum()
}

/// Sockets among the process's descriptors.
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

fn connections_the_backend_closes_do_not_linger(path: &str) {
    const N: usize = 8;
    let origin = PoolOrigin::start(Behaviour {
        hold_until: N,
        close_after: Some(Duration::from_millis(100)),
        ..Behaviour::default()
    });
    // A long idle timeout: only noticing the backend's close can free these sockets.
    let gw = gateway(path, &origin, 60_000);
    let base = open_sockets(gw.pid());
    burst(&gw, N);
    assert_eq!(origin.accepted(), N);
    assert!(
        wait_until(Duration::from_secs(5), || origin.closed_by_origin() == N),
        "the origin closed its {N} connections"
    );
    let port = origin.addr.port();
    let gone = wait_until(Duration::from_secs(3), || {
        close_wait_to(gw.pid(), port) == 0 && open_sockets(gw.pid()) <= base
    });
    assert!(
        gone,
        "{path}: {} sockets to the origin still in CLOSE-WAIT, {} sockets open ({base} before the burst)",
        close_wait_to(gw.pid(), port),
        open_sockets(gw.pid())
    );
    // The next request still works (on a fresh backend connection).
    let mut c = Client::connect(gw.addr);
    let r = c.request(&get("/prod/after"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"), "{r:?}");
    assert_eq!(
        origin.accepted(),
        N + 1,
        "a closed connection is not reused"
    );
}

#[test]
fn lean_idle_backend_connections_close_when_their_timeout_passes() {
    idle_connections_close_when_their_timeout_passes("lean");
}

#[test]
fn poll_idle_backend_connections_close_when_their_timeout_passes() {
    idle_connections_close_when_their_timeout_passes("poll");
}

#[test]
fn lean_backend_connections_closed_by_the_origin_do_not_linger() {
    connections_the_backend_closes_do_not_linger("lean");
}

#[test]
fn poll_backend_connections_closed_by_the_origin_do_not_linger() {
    connections_the_backend_closes_do_not_linger("poll");
}

/// A backend that writes to an idle pooled connection (here: a response nobody asked for)
/// has broken the framing: that connection must never carry the next request, whose answer
/// would otherwise be the stray bytes.
fn stray_bytes_retire_a_pooled_connection(path: &str) {
    let origin = PoolOrigin::start(Behaviour {
        stray_after: Some(Duration::from_millis(50)),
        ..Behaviour::default()
    });
    let gw = gateway(path, &origin, 60_000);
    let mut c = Client::connect(gw.addr);
    let r = c.request(&get("/prod/first"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"), "{r:?}");
    // Let the stray response arrive while the connection is parked.
    std::thread::sleep(Duration::from_millis(300));
    let r = c.request(&get("/prod/second"));
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "ok"),
        "{path}: {r:?}"
    );
    assert_eq!(origin.accepted(), 2, "{path}: a fresh backend connection");
    assert!(
        wait_until(Duration::from_secs(3), || origin.closed_by_peer() >= 1),
        "{path}: the written-to connection was closed"
    );
}

#[test]
fn lean_stray_bytes_retire_a_pooled_connection() {
    stray_bytes_retire_a_pooled_connection("lean");
}

#[test]
fn poll_stray_bytes_retire_a_pooled_connection() {
    stray_bytes_retire_a_pooled_connection("poll");
}

/// A receive ring far too small for the responses runs dry while a response is read (reads
/// fall back to recv(2)); the connection is still clean afterwards and must be reused, not
/// mistaken for one the backend wrote to or closed.
#[test]
fn lean_connections_that_starved_the_receive_ring_are_still_reused() {
    let origin = PoolOrigin::start(Behaviour {
        body_len: 6_000,
        ..Behaviour::default()
    });
    let server = Server::default()
        .with("receive_ring_buffers", "2")
        .with("receive_ring_buffer_bytes", "512");
    let gw = Gateway::start_with_env(
        &server,
        &rest_proxy_api(origin.addr, 10_000, ""),
        &[("TOLLGATE_SOCKET_PATH", "lean")],
    );
    let mut c = Client::connect(gw.addr);
    for i in 0..10 {
        let r = c.request(&get(&format!("/prod/big{i}")));
        assert_eq!(
            (r.status, r.body.len()),
            (200, 6_000),
            "request {i}: {:?}",
            r.headers
        );
    }
    assert_eq!(origin.accepted(), 1, "one backend connection, reused");
}

#[test]
fn an_unknown_socket_path_is_a_startup_error() {
    let dir = TempDir::new("sockpath");
    let apis = rest_proxy_api("127.0.0.1:9".parse().expect("addr"), 1_000, "");
    let cfg = dir.write(
        "gateway.toml",
        &config_text(&Server::default(), free_port(), &apis),
    );
    let mut child = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .env("TOLLGATE_SOCKET_PATH", "uring")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start tollgate");
    let exited = wait_until(Duration::from_secs(10), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(exited, "tollgate kept running with a bad socket path");
    assert!(!out.status.success(), "exit status {:?}", out.status);
    assert!(
        err.contains("TOLLGATE_SOCKET_PATH") && err.contains("\"uring\"") && err.contains("poll"),
        "{err}"
    );
}
