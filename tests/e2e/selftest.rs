//! Checks of the test tools themselves, without the gateway: the raw client against the local
//! origin directly. When these fail, a gateway test failure says nothing about tollgate.

use crate::client::{chunk_encode, get, req, Client, Closed};
use crate::origin::{Echo, Origin};
use crate::util::{fnv_hex, is_uuid, pattern};
use std::time::Duration;

#[test]
fn client_and_origin_speak_http() {
    let origin = Origin::start();
    let mut c = Client::connect(origin.addr);

    let r = c.request(&req("GET", "/a/echo?x=1", &[("X-Test", "yes")], b""));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-origin-conn"), Some("1"));
    let e = Echo::parse(&r.body);
    assert_eq!(
        (e.method.as_str(), e.target.as_str()),
        ("GET", "/a/echo?x=1")
    );
    assert_eq!(e.header("x-test"), Some("yes"));
    assert_eq!(e.conn, 1);

    let body = pattern(9, 1_000_000);
    let r = c.request(&req("POST", "/echo", &[], &body));
    let e = Echo::parse(&r.body);
    assert_eq!(
        (e.body_len, e.body_fnv),
        (body.len() as u64, fnv_hex(&body))
    );

    let mut chunked =
        b"PUT /echo HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let enc = chunk_encode(&body, &[1, 65_536, 777]);
    chunked.extend_from_slice(&enc[..enc.len() - 2]);
    chunked.extend_from_slice(b"X-T: 1\r\n\r\n");
    let r = c.request(&chunked);
    let e = Echo::parse(&r.body);
    assert_eq!(
        (e.body_len, e.body_fnv),
        (body.len() as u64, fnv_hex(&body))
    );

    for chunked in [0, 1] {
        let r = c.request(&get(&format!("/download?size=300000&chunked={chunked}")));
        assert!(r.body == pattern(0, 300_000), "download chunked={chunked}");
    }

    c.send(&req("HEAD", "/echo", &[], b""));
    let r = c.read_head_response();
    assert!(r.header("content-length").is_some_and(|v| v != "0"));
    for code in [204, 304] {
        let r = c.request(&get(&format!("/status?code={code}")));
        assert_eq!((r.status, r.body.len()), (code, 0));
    }

    // Pipelined.
    let mut batch = get("/p1");
    batch.extend_from_slice(&get("/p2"));
    batch.extend_from_slice(&get("/p3"));
    c.send(&batch);
    for i in 1..=3 {
        assert_eq!(
            Echo::parse(&c.read_response().body).target,
            format!("/p{i}")
        );
    }
    assert_eq!(origin.connections(), 1);
    assert_eq!(origin.requests(), 11);
    assert!(origin.seen().iter().all(|s| s.complete && s.conn == 1));
}

#[test]
fn origin_reset_and_never_behave() {
    let origin = Origin::start();
    let mut c = Client::connect(origin.addr);
    c.send(&get("/reset"));
    let err = c
        .try_read_response(false)
        .expect_err("reset answers nothing");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

    let mut c = Client::connect(origin.addr);
    c.send(&get("/never"));
    assert_eq!(c.wait_closed(Duration::from_millis(300)), Closed::Open);
    drop(c);
    assert!(
        origin.wait_idle(Duration::from_secs(2)),
        "never thread did not end"
    );

    // Connection: close is honoured.
    let mut c = Client::connect(origin.addr);
    let r = c.request(&req("GET", "/echo", &[("Connection", "close")], b""));
    assert!(r.closes());
    assert_eq!(c.wait_closed(Duration::from_secs(2)), Closed::Eof);
}

#[test]
fn uuid_check() {
    assert!(is_uuid("0f8fad5b-d9cb-469f-a165-70867728950e"));
    assert!(!is_uuid("0f8fad5b-d9cb-469f-a165-70867728950"));
    assert!(!is_uuid("0f8fad5bxd9cb-469f-a165-70867728950e"));
}
