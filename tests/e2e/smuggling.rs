//! Request smuggling and malformed heads: ambiguous framing and bad syntax are answered 400
//! (a transfer coding other than chunked: 501) and the connection closed, and nothing (or only
//! the legitimate first request) reaches the origin, never a smuggled second request. A
//! backend response with ambiguous framing is answered 502.

use crate::client::{get, Client, Closed};
use crate::harness::{rest_proxy_api, Gateway, Server};
use crate::origin::Origin;
use crate::raw_origin::{End, RawOrigin, Script};
use std::time::Duration;

const BAD_REQUEST: u16 = 400;
const NOT_IMPLEMENTED: u16 = 501;

/// Sends `raw` on a fresh connection and expects a 400 gateway error and a close, with no
/// request at the origin.
fn refused(gw: &Gateway, origin: &Origin, what: &str, raw: &[u8]) {
    refused_with(
        gw,
        origin,
        what,
        raw,
        BAD_REQUEST,
        r#"{"message":"Bad Request"}"#,
    );
}

/// `refused` with another status and body.
fn refused_with(gw: &Gateway, origin: &Origin, what: &str, raw: &[u8], status: u16, body: &str) {
    let before = origin.seen().len();
    let mut c = Client::connect(gw.addr);
    c.send(raw);
    let r = c
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("{what}: expected a {status} response, got {e}"));
    assert_eq!(r.status, status, "{what}: {r:?}");
    assert_eq!(r.body_str(), body, "{what}");
    assert!(
        r.closes(),
        "{what}: no connection: close in {:?}",
        r.headers
    );
    assert!(
        r.has_header("x-amzn-errortype"),
        "{what}: {status} without x-amzn-ErrorType: {:?}",
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

/// Identical repeated Content-Length values are refused too (AWS http-desync-guardian rates
/// them Severe; nginx answers 400), with nothing reaching the origin.
#[test]
fn content_length_lists_and_repeats_are_refused() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 5000, ""));
    for (what, head) in [
        ("Content-Length: 1000,1000", "Content-Length: 1000,1000\r\n"),
        ("Content-Length: 5, 5", "Content-Length: 5, 5\r\n"),
        (
            "two identical Content-Length fields",
            "Content-Length: 5\r\nContent-Length: 5\r\n",
        ),
    ] {
        let raw = format!(
            "POST /prod/echo HTTP/1.1\r\nHost: gw.test\r\n{head}\r\nhelloGET /prod/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n"
        );
        refused(&gw, &origin, what, raw.as_bytes());
    }
    // A single plain value still works.
    let mut c = Client::connect(gw.addr);
    let r =
        c.request(b"POST /prod/echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(r.status, 200, "{r:?}");
    assert_nothing_smuggled(&origin);
}

/// RFC 9112 §6.1: a transfer coding the server does not implement gets 501 and a close; a
/// malformed or ambiguous Transfer-Encoding stays 400.
#[test]
fn transfer_codings_other_than_chunked_get_501() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 5000, ""));
    let not_implemented = r#"{"message":"Not Implemented"}"#;
    for (what, te) in [
        ("gzip, chunked", "Transfer-Encoding: gzip, chunked\r\n"),
        (
            "two fields ending in chunked",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        ),
        ("identity", "Transfer-Encoding: identity\r\n"),
        ("an unknown coding", "Transfer-Encoding: x-unknown\r\n"),
        (
            "a coding with a parameter",
            "Transfer-Encoding: chunked;q=1\r\n",
        ),
    ] {
        let raw = format!(
            "POST /prod/echo HTTP/1.1\r\nHost: gw.test\r\n{te}\r\n0\r\n\r\nGET /prod/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n"
        );
        refused_with(
            &gw,
            &origin,
            what,
            raw.as_bytes(),
            NOT_IMPLEMENTED,
            not_implemented,
        );
    }
    for (what, te) in [
        ("chunked, gzip", "Transfer-Encoding: chunked, gzip\r\n"),
        (
            "chunked twice",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        ),
        ("a quoted coding", "Transfer-Encoding: \"chunked\"\r\n"),
        ("an empty element", "Transfer-Encoding: gzip,,chunked\r\n"),
        (
            "Content-Length next to gzip, chunked",
            "Transfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n",
        ),
    ] {
        let raw = format!(
            "POST /prod/echo HTTP/1.1\r\nHost: gw.test\r\n{te}\r\n0\r\n\r\nGET /prod/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n"
        );
        refused(&gw, &origin, what, raw.as_bytes());
    }
    assert_nothing_smuggled(&origin);
    assert_eq!(origin.connections(), 0, "no backend connection was needed");
}

/// A backend response with a Content-Length list or repeat is malformed: 502, and none of
/// its bytes reach the client.
#[test]
fn backend_content_length_lists_get_502() {
    for cl in [
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
    ] {
        let raw = RawOrigin::start(Script {
            until: b"\r\n\r\n".to_vec(),
            response: format!("HTTP/1.1 200 OK\r\n{cl}\r\nhelloHTTP/1.1 200 OK\r\n").into_bytes(),
            end: End::Close,
        });
        let gw = Gateway::start(&Server::default(), &rest_proxy_api(raw.addr, 5000, ""));
        let mut c = Client::connect(gw.addr);
        let r = c.request(&get("/prod/x"));
        r.assert_gateway_error(502, r#"{"message":"Internal server error"}"#);
        assert!(!r.body_str().contains("hello"), "{cl:?}: {r:?}");
    }
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
