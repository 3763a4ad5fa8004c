//! Chunked transfer coding through the proxy: uploads, downloads, an HTTP/1.0 client that
//! cannot read chunked (the gateway de-chunks and closes), chunk extensions (accepted, not
//! passed on), and close-delimited backend bodies re-chunked for HTTP/1.1 clients.

use crate::client::{chunk_encode, get, Client, Closed};
use crate::harness::{rest_proxy_api, Gateway, Server};
use crate::origin::{Echo, Origin};
use crate::raw_origin::{read_until_closed, End, RawOrigin, Script};
use crate::util::{fnv_hex, pattern};
use std::time::Duration;

#[test]
fn chunked_upload_reaches_the_origin_intact() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 5000, ""));
    let mut c = Client::connect(gw.addr);

    let body = pattern(1, 150_000);
    // Odd chunk sizes, a chunk extension and a trailer.
    let mut encoded = b"1;name=value\r\n".to_vec();
    encoded.extend_from_slice(&body[..1]);
    encoded.extend_from_slice(b"\r\n");
    let rest = chunk_encode(&body[1..], &[100, 70_000, 3, 8192]);
    encoded.extend_from_slice(&rest[..rest.len() - 2]); // up to "0\r\n"
    encoded.extend_from_slice(b"X-Trailer: t\r\n\r\n");

    let mut head =
        b"POST /prod/upload?mode=chunked HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    head.extend_from_slice(&encoded);
    let r = c.request(&head);
    assert_eq!(r.status, 200, "{r:?}");
    let e = Echo::parse(&r.body);
    assert_eq!(e.target, "/upload?mode=chunked");
    assert_eq!(e.body_len, body.len() as u64, "origin body length");
    assert_eq!(e.body_fnv, fnv_hex(&body), "origin body checksum");
    assert!(
        e.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked")),
        "origin should get a chunked body: {:?}",
        e.headers
    );
    assert!(e.header("content-length").is_none());

    // The connection is still good.
    let r = c.request(&get("/prod/echo/after"));
    assert_eq!(r.status, 200);
    assert_eq!(Echo::parse(&r.body).target, "/echo/after");
}

#[test]
fn chunked_download_reaches_the_client_intact() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 5000, ""));
    let mut c = Client::connect(gw.addr);
    let size = 300_001;
    let r = c.request(&get(&format!("/prod/download?size={size}&chunked=1")));
    assert_eq!(r.status, 200, "{:?}", r.headers);
    assert!(
        r.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked")),
        "HTTP/1.1 client should get the chunked response: {:?}",
        r.headers
    );
    assert_eq!(r.body.len(), size);
    assert!(r.body == pattern(0, size), "downloaded bytes differ");
    assert!(!r.closes());
    // Keep-alive still works after a chunked response.
    let r = c.request(&get("/prod/download?size=10&chunked=1"));
    assert_eq!(r.body, pattern(0, 10));
}

#[test]
fn http10_client_gets_a_dechunked_body_and_a_close() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 5000, ""));
    let mut c = Client::connect(gw.addr);
    let size = 200_000;
    c.send(
        format!("GET /prod/download?size={size}&chunked=1 HTTP/1.0\r\nHost: gw.test\r\n\r\n")
            .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 200, "{:?}", r.headers);
    assert!(
        !r.has_header("transfer-encoding"),
        "an HTTP/1.0 client must not get chunked: {:?}",
        r.headers
    );
    assert_eq!(r.body.len(), size, "de-chunked body length");
    assert!(r.body == pattern(0, size), "de-chunked bytes differ");
    if r.until_close {
        // The body ran until the close: that is the close.
    } else {
        assert!(
            matches!(
                c.wait_closed(Duration::from_secs(2)),
                Closed::Eof | Closed::Reset
            ),
            "connection should close after a de-chunked HTTP/1.0 response"
        );
    }
}

/// RFC 9112 §7.1.1: chunk extensions, with BWS around `;` and `=` and quoted strings, are
/// accepted and not passed on; malformed ones are refused.
#[test]
fn chunk_extensions_are_accepted_and_dropped() {
    let raw = RawOrigin::start(Script {
        until: b"0\r\n\r\n".to_vec(),
        response: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        end: End::Close,
    });
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(raw.addr, 5000, ""));
    let mut c = Client::connect(gw.addr);
    let r = c.request(
        b"POST /prod/ext HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n\
          5; name=value\r\nhello\r\n6 ;a = \"q\\\"x;y\" ; b\r\n world\r\n0; a=\"quoted\"; b=c\r\n\r\n",
    );
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"), "{r:?}");
    let got = raw.wait_for(b"0\r\n\r\n");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.ends_with("\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        "the backend should get the chunks without extensions: {text:?}"
    );
    for ext in ["name", "quoted", "b=c", ";"] {
        assert!(!text.contains(ext), "{ext:?} reached the backend: {text:?}");
    }
    // Malformed extensions: bare CR, an unterminated quote, whitespace before the CRLF.
    for body in [
        &b"5;a=b\rc\r\nhello\r\n0\r\n\r\n"[..],
        b"5;a=\"b\r\nhello\r\n0\r\n\r\n",
        b"5;a \r\nhello\r\n0\r\n\r\n",
        b"5;(a)\r\nhello\r\n0\r\n\r\n",
    ] {
        let mut c = Client::connect(gw.addr);
        let mut msg =
            b"POST /prod/ext HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        msg.extend_from_slice(body);
        let r = c.request(&msg);
        assert_eq!(r.status, 400, "{:?}: {r:?}", String::from_utf8_lossy(body));
        c.assert_closed("after a malformed chunk extension");
    }
}

/// Extensions in a backend's chunked response do not reach the client either.
#[test]
fn response_chunk_extensions_are_dropped() {
    let raw = RawOrigin::start(Script {
        until: b"\r\n\r\n".to_vec(),
        response: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5; ext=1\r\nhello\r\n0 ; last=\"x\"\r\nT: v\r\n\r\n".to_vec(),
        end: End::Close,
    });
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(raw.addr, 5000, ""));
    let mut c = Client::connect(gw.addr);
    c.send(b"GET /prod/x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n");
    let (bytes, _) = read_until_closed(&mut c.stream, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.ends_with("\r\n\r\n5\r\nhello\r\n0\r\nT: v\r\n\r\n"),
        "{text:?}"
    );
    assert!(
        !text.contains("ext=") && !text.contains("last="),
        "{text:?}"
    );
}

fn close_delimited_origin(body: &[u8], end: End) -> RawOrigin {
    let mut response =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    response.extend_from_slice(body);
    RawOrigin::start(Script {
        until: b"\r\n\r\n".to_vec(),
        response,
        end,
    })
}

/// A backend body delimited by its close reaches an HTTP/1.1 client chunked, ended by the
/// `0` chunk, and the client keeps its connection; HTTP/1.0 clients get it close-delimited.
#[test]
fn close_delimited_response_is_rechunked_for_http11() {
    let body = pattern(9, 100_000);
    let raw = close_delimited_origin(&body, End::Close);
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(raw.addr, 5000, ""));
    let mut c = Client::connect(gw.addr);
    for round in 0..2 {
        let r = c.request(&get("/prod/until-close"));
        assert_eq!(r.status, 200, "round {round}: {:?}", r.headers);
        assert_eq!(
            r.header("transfer-encoding"),
            Some("chunked"),
            "round {round}: {:?}",
            r.headers
        );
        assert!(
            !r.until_close && !r.closes(),
            "round {round}: {:?}",
            r.headers
        );
        assert_eq!(r.body.len(), body.len(), "round {round}");
        assert_eq!(fnv_hex(&r.body), fnv_hex(&body), "round {round}");
    }
    // HTTP/1.0: as received, then the close.
    let mut c = Client::connect(gw.addr);
    let r = c.request(b"GET /prod/until-close HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(!r.has_header("transfer-encoding"), "{:?}", r.headers);
    assert!(r.until_close, "{:?}", r.headers);
    assert_eq!(fnv_hex(&r.body), fnv_hex(&body));
}

/// When the backend resets the connection mid-body, the HTTP/1.1 client gets the data so far
/// without the terminating `0` chunk, and the connection closes: the cut is visible.
#[test]
fn reset_close_delimited_response_has_no_last_chunk() {
    let body = pattern(4, 3000);
    let raw = close_delimited_origin(&body, End::Reset);
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(raw.addr, 5000, ""));
    let mut c = Client::connect(gw.addr);
    c.send(&get("/prod/until-reset"));
    let (bytes, _) = read_until_closed(&mut c.stream, Duration::from_secs(5));
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&bytes[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    // Whole data chunks only, as many as the gateway's reads made, and no `0` chunk.
    let mut rest = &bytes[split + 4..];
    let mut data = Vec::new();
    while !rest.is_empty() {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a complete chunk-size line");
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap_or("?"), 16)
            .expect("a plain hex chunk size");
        assert_ne!(size, 0, "a cut body must not end with the last chunk");
        let chunk = &rest[eol + 2..];
        assert!(chunk.len() >= size + 2 && &chunk[size..size + 2] == b"\r\n");
        data.extend_from_slice(&chunk[..size]);
        rest = &chunk[size + 2..];
    }
    assert_eq!(data, body);
}
