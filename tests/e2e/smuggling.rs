//! Request smuggling and malformed heads: ambiguous framing and bad syntax are answered 400 and
//! the connection closed, and nothing (or only the legitimate first request) reaches the
//! origin, never a smuggled second request.

use crate::client::{Client, Closed};
use crate::harness::{rest_proxy_api, Gateway, Server};
use crate::origin::Origin;
use std::time::Duration;

const BAD_REQUEST: u16 = 400;

/// Sends `raw` on a fresh connection and expects a 400 gateway error and a close, with no
/// request at the origin.
fn refused(gw: &Gateway, origin: &Origin, what: &str, raw: &[u8]) {
    let before = origin.seen().len();
    let mut c = Client::connect(gw.addr);
    c.send(raw);
    let r = c
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("{what}: expected a 400 response, got {e}"));
    assert_eq!(r.status, BAD_REQUEST, "{what}: {r:?}");
    assert!(
        r.has_header("x-amzn-errortype"),
        "{what}: 400 without x-amzn-ErrorType: {:?}",
        r.headers
    );
    assert!(
        matches!(
            c.wait_closed(Duration::from_secs(2)),
            Closed::Eof | Closed::Reset
        ),
        "{what}: connection should be closed after the 400"
    );
    // The origin may only be reached through the gateway, which is done with this request.
    let seen = origin.seen();
    assert_eq!(
        seen.len(),
        before,
        "{what}: the origin received {:?}",
        &seen[before..]
    );
}

fn assert_nothing_smuggled(origin: &Origin) {
    for s in origin.seen() {
        assert!(
            !s.target.contains("smuggled") && !s.method.contains("smuggled"),
            "a smuggled request reached the origin: {s:?}"
        );
    }
}

#[test]
fn ambiguous_framing_is_refused() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 5000, ""));
    refused(
        &gw,
        &origin,
        "Content-Length + Transfer-Encoding",
        b"POST /prod/echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /prod/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n",
    );
    refused(
        &gw,
        &origin,
        "Transfer-Encoding + Content-Length",
        b"POST /prod/echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /prod/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n",
    );
    refused(
        &gw,
        &origin,
        "two differing Content-Lengths",
        b"POST /prod/echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\nContent-Length: 47\r\n\r\nhelloGET /prod/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n",
    );
    refused(
        &gw,
        &origin,
        "Content-Length list with differing values",
        b"POST /prod/echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5, 47\r\n\r\nhelloGET /prod/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n",
    );
    refused(
        &gw,
        &origin,
        "Transfer-Encoding: gzip, chunked",
        b"POST /prod/echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    );
    refused(
        &gw,
        &origin,
        "Transfer-Encoding: chunked, gzip",
        b"POST /prod/echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    );
    refused(
        &gw,
        &origin,
        "non-numeric Content-Length",
        b"POST /prod/echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: +5\r\n\r\nhello",
    );
    assert_nothing_smuggled(&origin);
    assert_eq!(origin.connections(), 0, "no backend connection was needed");
}

#[test]
fn malformed_heads_are_refused() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 5000, ""));
    refused(
        &gw,
        &origin,
        "bare LF line endings",
        b"GET /prod/echo HTTP/1.1\nHost: gw.test\n\n",
    );
    refused(
        &gw,
        &origin,
        "bare LF inside the head",
        b"GET /prod/echo HTTP/1.1\r\nHost: gw.test\nX-A: b\r\n\r\n",
    );
    refused(
        &gw,
        &origin,
        "obs-fold",
        b"GET /prod/echo HTTP/1.1\r\nHost: gw.test\r\nX-Folded: a\r\n  b\r\n\r\n",
    );
    refused(
        &gw,
        &origin,
        "obs-fold hiding Transfer-Encoding",
        b"POST /prod/echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\nX-Folded: a\r\n Transfer-Encoding: chunked\r\n\r\nhello",
    );
    refused(
        &gw,
        &origin,
        "space before colon",
        b"POST /prod/echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(origin.connections(), 0, "no backend connection was needed");
}

#[test]
fn invalid_chunk_size_does_not_smuggle() {
    for (what, body) in [
        ("non-hex chunk size", &b"zz\r\nhello\r\n0\r\n\r\n"[..]),
        ("chunk size with a sign", &b"+5\r\nhello\r\n0\r\n\r\n"[..]),
        (
            "chunk size overflowing 64 bits",
            &b"10000000000000005\r\nhello\r\n0\r\n\r\n"[..],
        ),
        (
            "chunk data longer than its size",
            &b"2\r\nhello\r\n0\r\n\r\n"[..],
        ),
    ] {
        // A fresh pair per case, so the origin's log belongs to this case alone.
        let origin = Origin::start();
        let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 5000, ""));
        let mut raw =
            b"POST /prod/echo/legit HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        raw.extend_from_slice(body);
        raw.extend_from_slice(b"GET /prod/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n");
        let mut c = Client::connect(gw.addr);
        c.send(&raw);
        match c.try_read_response(false) {
            Ok(r) => {
                assert_eq!(r.status, BAD_REQUEST, "{what}: {r:?}");
                assert!(r.has_header("x-amzn-errortype"), "{what}: {:?}", r.headers);
                assert!(
                    matches!(
                        c.wait_closed(Duration::from_secs(2)),
                        Closed::Eof | Closed::Reset
                    ),
                    "{what}: connection should be closed after the 400"
                );
            }
            // Closing without an answer is acceptable.
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ),
                "{what}: expected 400 or a close, got {e}"
            ),
        }
        // Let the origin finish reading whatever the gateway sent it.
        origin.wait_idle(Duration::from_secs(2));
        let seen = origin.seen();
        assert!(seen.len() <= 1, "{what}: origin saw {seen:?}");
        for s in &seen {
            assert_eq!(s.target, "/echo/legit", "{what}: origin saw {s:?}");
            assert!(
                !s.complete,
                "{what}: origin accepted an invalid body: {s:?}"
            );
        }
        assert_nothing_smuggled(&origin);
    }
}
