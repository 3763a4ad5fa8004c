//! Every gateway response tollgate produces today, end to end: status, exact body,
//! `x-amzn-ErrorType` and `x-amzn-RequestId` (MISSING_AUTHENTICATION_TOKEN,
//! RESOURCE_NOT_FOUND, REQUEST_TOO_LARGE, INTEGRATION_FAILURE, INTEGRATION_TIMEOUT, DEFAULT_5XX
//! as 502 for a malformed backend response); and local answers with a request body, which is
//! read and discarded so the connection stays usable (413 / 400 and a close when it cannot be).

use crate::client::{chunk_encode, get, req, Client, Response};
use crate::harness::{free_port, mock_route, rest_proxy_api, Gateway, Server};
use crate::origin::Origin;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const INTERNAL: &str = r#"{"message":"Internal server error"}"#;

/// Asserts a gateway response: status, `content-type: application/json`, exact body, error
/// type, and a request id shaped like API Gateway's (a 36-character UUID).
fn check(r: &Response, status: u16, error_type: &str, body: &str) {
    r.assert_gateway_error(status, body);
    assert_eq!(r.header("x-amzn-errortype"), Some(error_type), "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let id = r.request_id();
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(id.matches('-').count(), 4, "{id}");
}

fn rest_mock_api() -> String {
    format!(
        "[[apis]]\nname = \"pets\"\nprotocol = \"rest\"\n  [[apis.stages]]\n  name = \"prod\"\n{}{}",
        mock_route("GET /pets", 200, "pets"),
        mock_route("POST /upload", 201, "stored"),
    )
}

#[test]
fn missing_authentication_token() {
    let gw = Gateway::start(&Server::default(), &rest_mock_api());
    let mut c = Client::connect(gw.addr);
    for target in ["/prod/cats", "/staging/pets", "/"] {
        let r = c.request(&get(target));
        check(
            &r,
            403,
            "MissingAuthenticationTokenException",
            r#"{"message":"Missing Authentication Token"}"#,
        );
        assert!(!r.closes(), "a keep-alive client keeps its connection");
    }
    // Each answer has its own request id.
    let a = c.request(&get("/prod/cats")).request_id();
    let b = c.request(&get("/prod/cats")).request_id();
    assert_ne!(a, b);
}

#[test]
fn resource_not_found() {
    let apis = format!(
        "[[apis]]\nname = \"h\"\nprotocol = \"http\"\n  [[apis.stages]]\n  name = \"$default\"\n{}",
        mock_route("GET /here", 200, "here")
    );
    let gw = Gateway::start(&Server::default(), &apis);
    let mut c = Client::connect(gw.addr);
    assert_eq!(c.request(&get("/here")).status, 200);
    let r = c.request(&get("/not/here"));
    check(&r, 404, "NotFoundException", r#"{"message":"Not Found"}"#);
    // HEAD: the same head, no body.
    c.send(&req("HEAD", "/not/here", &[], b""));
    let r = c.read_head_response();
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-length"), Some("23"));
    assert!(r.body.is_empty());
}

#[test]
fn request_too_large_quotes_the_limit_and_closes() {
    let server = Server::default().with("max_body_bytes", "1000");
    let gw = Gateway::start(&server, &rest_mock_api());
    let body = r#"{"message":"HTTP content length exceeded 1000 bytes."}"#;
    // Declared length over the limit: answered at once.
    let mut c = Client::connect(gw.addr);
    c.send(b"POST /prod/upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 1001\r\n\r\n");
    let r = c.read_response();
    check(&r, 413, "RequestTooLargeException", body);
    assert!(r.closes());
    c.assert_closed("after 413");
    // The same with no route: the payload limit comes first.
    let mut c = Client::connect(gw.addr);
    c.send(b"POST /prod/none HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5000\r\n\r\n");
    let r = c.read_response();
    check(&r, 413, "RequestTooLargeException", body);
    c.assert_closed("after 413 without a route");
}

#[test]
fn integration_failure_when_nobody_listens() {
    let dead: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(dead, 5000, ""));
    let mut c = Client::connect(gw.addr);
    let r = c.request(&get("/prod/anything"));
    check(&r, 504, "InternalServerErrorException", INTERNAL);
    assert!(!r.closes(), "{r:?}");
    // A body nobody forwarded is read and dropped: the connection carries on.
    let r = c.request(&req("PUT", "/prod/anything", &[], &vec![b'x'; 40_000]));
    check(&r, 504, "InternalServerErrorException", INTERNAL);
    assert!(!r.closes(), "{r:?}");
    let r = c.request(&get("/prod/again"));
    check(&r, 504, "InternalServerErrorException", INTERNAL);
}

#[test]
fn integration_failure_when_the_backend_resets() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 5000, ""));
    let mut c = Client::connect(gw.addr);
    let r = c.request(&get("/prod/reset"));
    check(&r, 504, "InternalServerErrorException", INTERNAL);
}

#[test]
fn integration_timeout() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 300, ""));
    let mut c = Client::connect(gw.addr);
    let start = Instant::now();
    let r = c.request(&get("/prod/never"));
    let took = start.elapsed();
    check(
        &r,
        504,
        "InternalServerErrorException",
        r#"{"message":"Endpoint request timed out"}"#,
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

/// A backend that answers every connection's first request with `response`, then closes.
/// Serves at most `count` connections and stops after 10 s.
fn bad_origin(response: Vec<u8>, count: usize) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    let t = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(10);
        let mut served = 0;
        while served < count && Instant::now() < end {
            match listener.accept() {
                Ok((mut s, _)) => {
                    served += 1;
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = s.write_all(&response);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (addr, t)
}

#[test]
fn malformed_backend_response_is_default_5xx_502() {
    for bad in [
        &b"HTTP/1.1 2x0 OK\r\ncontent-length: 0\r\n\r\n"[..],
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
    ] {
        let (addr, t) = bad_origin(bad.to_vec(), 1);
        let gw = Gateway::start(&Server::default(), &rest_proxy_api(addr, 5000, ""));
        let mut c = Client::connect(gw.addr);
        let r = c.request(&get("/prod/x"));
        assert_eq!(r.reason, "Bad Gateway", "{r:?}");
        check(&r, 502, "InternalServerErrorException", INTERNAL);
        drop(gw);
        t.join().expect("bad origin thread");
    }
}

#[test]
fn local_answer_drains_bodies_and_keeps_the_connection() {
    let gw = Gateway::start(&Server::default(), &rest_mock_api());
    let mut c = Client::connect(gw.addr);
    for size in [40_000usize, 200_000] {
        let body = vec![b'b'; size];
        // Mock route.
        let r = c.request(&req("POST", "/prod/upload", &[], &body));
        assert_eq!((r.status, r.body_str().as_str()), (201, "stored"));
        assert!(!r.closes(), "{size}: {r:?}");
        // Gateway response (no route).
        let r = c.request(&req("POST", "/prod/nothing", &[], &body));
        check(
            &r,
            403,
            "MissingAuthenticationTokenException",
            r#"{"message":"Missing Authentication Token"}"#,
        );
        assert!(!r.closes(), "{size}: {r:?}");
        // Chunked.
        let mut raw =
            b"POST /prod/upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        raw.extend_from_slice(&chunk_encode(&body, &[1000, 7, 30_000]));
        let r = c.request(&raw);
        assert_eq!(r.status, 201, "{size}: {r:?}");
        assert!(!r.closes());
    }
    // The same connection still serves a plain request: every body byte was consumed.
    let r = c.request(&get("/prod/pets"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "pets"));
}

#[test]
fn local_answer_body_past_the_limit_is_413_and_closes() {
    let server = Server::default().with("max_body_bytes", "50000");
    let gw = Gateway::start(&server, &rest_mock_api());
    let mut c = Client::connect(gw.addr);
    let mut raw =
        b"POST /prod/upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    raw.extend_from_slice(&chunk_encode(&vec![b'z'; 60_000], &[10_000]));
    c.send(&raw);
    let r = c.read_response();
    check(
        &r,
        413,
        "RequestTooLargeException",
        r#"{"message":"HTTP content length exceeded 50000 bytes."}"#,
    );
    assert!(r.closes(), "{r:?}");
    c.assert_closed("after 413");
    // Under the limit, chunked, the connection is kept.
    let mut c = Client::connect(gw.addr);
    let mut raw =
        b"POST /prod/upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    raw.extend_from_slice(&chunk_encode(&vec![b'z'; 50_000], &[10_000]));
    let r = c.request(&raw);
    assert_eq!(r.status, 201);
    assert!(!r.closes());
}

#[test]
fn local_answer_malformed_chunked_body_is_400_and_closes() {
    let gw = Gateway::start(&Server::default(), &rest_mock_api());
    for bad in [
        &b"5\r\nhello\r\nzz\r\n\r\n"[..],
        b"5\r\nhelloXX0\r\n\r\n",
        b"-1\r\n\r\n",
    ] {
        let mut c = Client::connect(gw.addr);
        let mut raw =
            b"POST /prod/upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        raw.extend_from_slice(bad);
        c.send(&raw);
        let r = c.read_response();
        check(
            &r,
            400,
            "BadRequestException",
            r#"{"message":"Bad Request"}"#,
        );
        assert!(r.closes(), "{r:?}");
        c.assert_closed("after 400");
    }
}
