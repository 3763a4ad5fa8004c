//! Chunked transfer coding through the proxy: uploads, downloads, and an HTTP/1.0 client that
//! cannot read chunked (the gateway de-chunks and closes).

use crate::client::{chunk_encode, get, Client, Closed};
use crate::harness::{rest_proxy_api, Gateway, Server};
use crate::origin::{Echo, Origin};
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
