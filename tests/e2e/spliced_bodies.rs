//! Large response bodies that the lean path relays straight from its receive ring (no copy
//! through a buffer of ours, `net::Conn::splice_to`): Content-Length bodies and a
//! close-delimited one, larger than the ring's receive limit for one connection and than the
//! kernel's socket buffers (up to 4 MiB on loopback), to clients that read slowly through a
//! small window, so the gateway's sends come back short, its send queue fills and the relay
//! has to wait on it while the backend keeps sending. Every byte has to arrive, in order, and the
//! Content-Length framing has to leave the keep-alive connection usable. (On the poll path,
//! `TOLLGATE_SOCKET_PATH=poll`, the same tests cover the copy path.)

use crate::harness::{rest_proxy_api, Gateway, Server};
use crate::origin::Origin;
use crate::raw_origin::{read_until_closed, End, RawOrigin, Script};
use crate::util::pattern;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

/// Connects to the gateway with a small receive buffer, so the gateway's socket cannot take
/// a whole body at once: its sends come back short and the rest waits in its send queue.
fn connect_small_window(addr: std::net::SocketAddr) -> TcpStream {
    use std::os::fd::AsRawFd;
    let s = TcpStream::connect(addr).expect("connect");
    let bytes: libc::c_int = 16 * 1024;
    // SAFETY: setsockopt reads a valid c_int from a socket this function owns.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s
}

/// Reads one response with a Content-Length body, `step` bytes at a time with a pause after
/// each read; returns the status line and the body.
fn read_slowly(s: &mut TcpStream, step: usize, pause: Duration) -> (String, Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = Vec::new();
    let mut tmp = vec![0u8; step];
    let head_end = loop {
        assert!(Instant::now() < deadline, "no response head in time");
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut tmp).expect("read head");
        assert!(n > 0, "closed before the head ended");
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("content-length in the response head");
    let mut body = buf.split_off(head_end);
    while body.len() < len {
        assert!(
            Instant::now() < deadline,
            "body incomplete: {} of {len}",
            body.len()
        );
        std::thread::sleep(pause);
        let want = step.min(len - body.len());
        let n = s.read(&mut tmp[..want]).expect("read body");
        assert!(n > 0, "closed after {} of {len} body bytes", body.len());
        body.extend_from_slice(&tmp[..n]);
    }
    assert_eq!(body.len(), len, "no byte past the body");
    (head.lines().next().unwrap_or("").to_string(), body)
}

#[test]
fn large_content_length_bodies_reach_a_slow_client_byte_exact() {
    content_length_bodies(Server::default());
}

/// The same through a receive ring of two 1 KiB buffers, which the backend's bytes run dry at
/// once: the relay's steps fall back to reading and writing (`recv(2)`) and back again.
#[test]
fn content_length_bodies_survive_a_receive_ring_that_runs_dry() {
    content_length_bodies(
        Server::default()
            .with("receive_ring_buffers", "2")
            .with("receive_ring_buffer_bytes", "1024"),
    );
}

fn content_length_bodies(server: Server) {
    let origin = Origin::start();
    let gw = Gateway::start(&server, &rest_proxy_api(origin.addr, 20_000, ""));
    let mut s = connect_small_window(gw.addr);
    // Sizes that end inside a ring buffer; the second request on the same connection shows
    // the first body ended exactly where its Content-Length said.
    for size in [MIB + 5, 9 * MIB + 16_385] {
        let req =
            format!("GET /prod/download?size={size}&chunked=0 HTTP/1.1\r\nHost: gw.test\r\n\r\n");
        s.write_all(req.as_bytes()).expect("send request");
        // Let the backend's bytes pile up in the gateway before reading anything.
        std::thread::sleep(Duration::from_millis(300));
        let (status, body) = read_slowly(&mut s, 8 * 1024, Duration::from_micros(500));
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert_eq!(body.len(), size);
        let want = pattern(0, size);
        if let Some(at) = body.iter().zip(&want).position(|(a, b)| a != b) {
            panic!("body of {size} bytes differs from the origin's at byte {at}");
        }
    }
    assert_eq!(origin.requests(), 2, "{:?}", origin.seen());
}

#[test]
fn close_delimited_body_reaches_a_slow_http10_client_byte_exact() {
    let body = pattern(7, 6 * MIB + 3);
    let mut response =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\r\n".to_vec();
    response.extend_from_slice(&body);
    let origin = RawOrigin::start(Script {
        until: b"\r\n\r\n".to_vec(),
        response,
        end: End::Close,
    });
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 20_000, ""));
    let mut s = connect_small_window(gw.addr);
    // HTTP/1.0: the body is passed on as it comes and ends with the connection.
    s.write_all(b"GET /prod/blob HTTP/1.0\r\nHost: gw.test\r\n\r\n")
        .expect("send request");
    std::thread::sleep(Duration::from_millis(300));
    let (got, clean) = read_until_closed(&mut s, Duration::from_secs(20));
    assert!(clean, "the gateway closed cleanly after the body");
    let head_end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .expect("response head");
    assert!(got.starts_with(b"HTTP/1.0 200") || got.starts_with(b"HTTP/1.1 200"));
    let got = &got[head_end..];
    assert_eq!(got.len(), body.len(), "body length");
    if let Some(at) = got.iter().zip(&body).position(|(a, b)| a != b) {
        panic!("close-delimited body differs from the origin's at byte {at}");
    }
}
