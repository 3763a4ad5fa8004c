//! HTTP/1.1 details through the proxy: `Expect: 100-continue`, HEAD, and bodiless statuses
//! (204, 304) that must leave the connection usable.

use crate::client::{get, req, Client};
use crate::harness::{rest_proxy_api, Gateway, Server};
use crate::origin::{Echo, Origin};
use crate::util::{fnv_hex, pattern};

#[test]
fn expect_100_continue_gets_interim_then_final_response() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 5000, ""));
    let mut c = Client::connect(gw.addr);
    let body = pattern(5, 50_000);
    c.send(
        format!(
            "PUT /prod/upload HTTP/1.1\r\nHost: gw.test\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let interim = c.read_response();
    assert_eq!(
        interim.status, 100,
        "expected 100 Continue first: {interim:?}"
    );
    c.send(&body);
    let r = c.read_response();
    assert_eq!(r.status, 200, "{r:?}");
    let e = Echo::parse(&r.body);
    assert_eq!(e.method, "PUT");
    assert_eq!(e.body_len, body.len() as u64);
    assert_eq!(e.body_fnv, fnv_hex(&body));
    assert!(
        e.header("expect").is_none(),
        "Expect must not be forwarded: {:?}",
        e.headers
    );
    // Still usable.
    let r = c.request(&get("/prod/echo/next"));
    assert_eq!(Echo::parse(&r.body).target, "/echo/next");
}

#[test]
fn head_gets_headers_without_a_body() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 5000, ""));
    let mut c = Client::connect(gw.addr);
    for target in [
        "/prod/echo/h",
        "/prod/download?size=100000&chunked=0",
        "/prod/download?size=100000&chunked=1",
    ] {
        c.send(&req("HEAD", target, &[], b""));
        let r = c.read_head_response();
        assert_eq!(r.status, 200, "HEAD {target}: {r:?}");
        assert!(r.has_header("x-amzn-requestid"));
        if target.ends_with("chunked=0") {
            assert_eq!(
                r.header("content-length"),
                Some("100000"),
                "{:?}",
                r.headers
            );
        }
        // If any body bytes followed the head, the next response would not parse.
        let r = c.request(&get("/prod/echo/after-head"));
        assert_eq!(r.status, 200, "after HEAD {target}: {r:?}");
        assert_eq!(Echo::parse(&r.body).target, "/echo/after-head");
    }
    let heads = origin.seen().iter().filter(|s| s.method == "HEAD").count();
    assert_eq!(heads, 3, "the origin should get HEAD requests");
}

#[test]
fn bodiless_statuses_keep_the_connection_usable() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 5000, ""));
    let mut c = Client::connect(gw.addr);
    for code in [204, 304, 204] {
        let r = c.request(&get(&format!("/prod/status?code={code}")));
        assert_eq!(r.status, code, "{r:?}");
        assert!(r.has_header("x-amzn-requestid"));
        assert!(
            !r.has_header("transfer-encoding"),
            "{code} with transfer-encoding: {:?}",
            r.headers
        );
        assert!(!r.closes(), "{code} closed the connection: {:?}", r.headers);
        let r = c.request(&get(&format!("/prod/echo/after-{code}")));
        assert_eq!(r.status, 200, "request after {code}: {r:?}");
        assert_eq!(Echo::parse(&r.body).target, format!("/echo/after-{code}"));
    }
    // Other statuses pass through with their bodies.
    let r = c.request(&get("/prod/status?code=418"));
    assert_eq!((r.status, r.body_str().as_str()), (418, "status 418"));
    let r = c.request(&get("/prod/status?code=500"));
    assert_eq!((r.status, r.body_str().as_str()), (500, "status 500"));
    assert!(
        !r.has_header("x-amzn-errortype"),
        "a backend 500 is not a gateway error"
    );
}
