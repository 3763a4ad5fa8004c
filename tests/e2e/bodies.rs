//! Large bodies: 9 MB streamed both ways, and the 10 MB payload limit (413) for
//! Content-Length and chunked uploads.

use crate::client::{chunk_encode, get, req, Client, Closed};
use crate::harness::{rest_proxy_api, Gateway, Server};
use crate::origin::{Echo, Origin};
use crate::raw_origin::{End, RawOrigin, Script};
use crate::util::{fnv_hex, pattern};
use std::io::Write;
use std::time::Duration;

const MB: usize = 1024 * 1024;
const TOO_LARGE: &str = r#"{"message":"HTTP content length exceeded 10485760 bytes."}"#;

#[test]
fn nine_mb_upload_is_streamed_through() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 10_000, ""));
    let body = pattern(3, 9 * MB);
    let sum = fnv_hex(&body);

    let mut c = Client::connect(gw.addr);
    let r = c.request(&req("PUT", "/prod/blob", &[], &body));
    assert_eq!(r.status, 200, "{:?}", r.body_str());
    let e = Echo::parse(&r.body);
    assert_eq!(e.body_len, body.len() as u64);
    assert_eq!(e.body_fnv, sum, "9 MB Content-Length upload checksum");

    // The same body chunked.
    let mut chunked =
        b"POST /prod/blob HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    chunked.extend_from_slice(&chunk_encode(&body, &[1 << 20, 12_345]));
    let r = c.request(&chunked);
    assert_eq!(r.status, 200, "{:?}", r.body_str());
    let e = Echo::parse(&r.body);
    assert_eq!(e.body_len, body.len() as u64);
    assert_eq!(e.body_fnv, sum, "9 MB chunked upload checksum");
}

#[test]
fn nine_mb_download_is_streamed_through() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 10_000, ""));
    let mut c = Client::connect(gw.addr);
    for chunked in [0, 1] {
        let size = 9 * MB + 17;
        let r = c.request(&get(&format!(
            "/prod/download?size={size}&chunked={chunked}"
        )));
        assert_eq!(r.status, 200, "{:?}", r.headers);
        assert_eq!(r.body.len(), size, "download length (chunked={chunked})");
        assert_eq!(
            fnv_hex(&r.body),
            fnv_hex(&pattern(0, size)),
            "download bytes (chunked={chunked})"
        );
    }
}

#[test]
fn eleven_mb_content_length_gets_413() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 10_000, ""));
    let mut c = Client::connect(gw.addr);
    let len = 11 * MB;
    // The head and the first 64 KiB; a gateway must refuse on the Content-Length alone.
    let mut msg =
        format!("POST /prod/blob HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {len}\r\n\r\n")
            .into_bytes();
    msg.extend_from_slice(&pattern(0, 64 * 1024));
    let r = c.request(&msg);
    r.assert_gateway_error(413, TOO_LARGE);
    // The rest of the body is not wanted: the gateway closes.
    c.assert_closed("after 413");
    assert_eq!(
        origin.requests(),
        0,
        "origin must not see a refused request: {:?}",
        origin.seen()
    );
}

#[test]
fn eleven_mb_chunked_upload_is_refused() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 10_000, ""));
    let mut c = Client::connect(gw.addr);
    let size = 11 * MB;
    let mut msg =
        b"POST /prod/blob HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    msg.extend_from_slice(&chunk_encode(&pattern(0, size), &[256 * 1024]));

    // Write from another thread: the gateway may stop reading at any point.
    let mut w = c.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&msg);
    });
    match c.try_read_response(false) {
        Ok(r) => {
            r.assert_gateway_error(413, TOO_LARGE);
        }
        Err(e) => {
            // Closing without an answer is acceptable; hanging is not.
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                ),
                "expected 413 or a closed connection, got {e}"
            );
        }
    }
    assert!(
        matches!(
            c.wait_closed(Duration::from_secs(2)),
            Closed::Eof | Closed::Reset
        ),
        "the connection should be closed after an oversized chunked body"
    );
    let _ = c.stream.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
    // Let the origin finish with whatever it got (its connection is closed by now).
    let seen = origin.wait_for(Duration::from_secs(2), |log| {
        log.iter().all(|s| !s.body_fnv.is_empty())
    });
    for s in seen {
        assert!(
            !(s.complete && s.body_len >= size as u64),
            "origin received the whole oversized body: {s:?}"
        );
    }
}

/// A client that sends its whole (refused) body before reading the answer gets the 413, not a
/// reset: the gateway closes gracefully (FIN, then reads and discards the rest for a moment).
#[test]
fn refused_body_sent_in_full_still_gets_the_413() {
    let origin = Origin::start();
    let server = Server::default().with("max_body_bytes", "1000");
    let gw = Gateway::start(&server, &rest_proxy_api(origin.addr, 10_000, ""));
    let len = 768 * 1024;
    let mut c = Client::connect(gw.addr);
    let head =
        format!("POST /prod/blob HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {len}\r\n\r\n");
    c.send(head.as_bytes());
    // Give the gateway time to answer and close before the body follows.
    std::thread::sleep(Duration::from_millis(200));
    let body = pattern(0, len);
    for part in body.chunks(16 * 1024) {
        c.stream
            .write_all(part)
            .expect("writing the rest of a refused body must not be reset");
    }
    let r = c.read_response();
    assert_eq!(r.status, 413, "{}", r.body_str());
    assert!(r.closes(), "a refused body ends the connection");
    assert_eq!(origin.requests(), 0);
}

/// A chunk-size line that alone takes the body past `max_body_bytes` gets 413 at once, before
/// any of that chunk is forwarded (the client has not even sent its data).
#[test]
fn oversize_chunk_size_line_gets_413_at_once() {
    let raw = RawOrigin::start(Script {
        until: b"never sent".to_vec(),
        response: Vec::new(),
        end: End::Close,
    });
    let server = Server::default().with("max_body_bytes", "1000");
    let gw = Gateway::start(&server, &rest_proxy_api(raw.addr, 10_000, ""));
    let mut c = Client::connect(gw.addr);
    c.send(
        b"POST /prod/big HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n100000\r\nxyz",
    );
    let started = std::time::Instant::now();
    let r = c.read_response();
    r.assert_gateway_error(
        413,
        r#"{"message":"HTTP content length exceeded 1000 bytes."}"#,
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "413 came after {:?}",
        started.elapsed()
    );
    assert!(r.closes(), "{:?}", r.headers);
    c.assert_closed("after the 413");
    let got = raw.wait_for(b"\r\n\r\n");
    let text = String::from_utf8_lossy(&got);
    assert!(
        !text.contains("1000") && !text.contains("xyz"),
        "part of the oversize chunk reached the backend: {text:?}"
    );
    // A body that fits still goes through the same limit.
    let raw_ok = RawOrigin::start(Script {
        until: b"0\r\n\r\n".to_vec(),
        response: b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
        end: End::Close,
    });
    let gw = Gateway::start(&server, &rest_proxy_api(raw_ok.addr, 10_000, ""));
    let mut c = Client::connect(gw.addr);
    let mut msg =
        b"POST /prod/big HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n"
            .to_vec();
    msg.extend_from_slice(&[b'a'; 1000]);
    msg.extend_from_slice(b"\r\n0\r\n\r\n");
    let r = c.request(&msg);
    assert_eq!(r.status, 200, "exactly max_body_bytes in one chunk: {r:?}");
}
