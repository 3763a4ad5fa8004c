//! Pipelining: many requests in one write on one connection, answered in order, mixing proxied
//! and mock routes.

use crate::client::{req, Client};
use crate::harness::{mock_route, rest_proxy_api, Gateway, Server};
use crate::origin::{Echo, Origin};
use crate::util::fnv_hex;

#[test]
fn ten_pipelined_requests_are_answered_in_order() {
    let origin = Origin::start();
    let mocks: String = (1..10)
        .step_by(2)
        .map(|i| mock_route(&format!("GET /m{i}"), 200, &format!("mock-{i}")))
        .collect();
    let gw = Gateway::start(
        &Server::default(),
        &rest_proxy_api(origin.addr, 5000, &mocks),
    );

    let mut batch = Vec::new();
    for i in 0..10 {
        let r = if i % 2 == 1 {
            req("GET", &format!("/prod/m{i}"), &[], b"")
        } else if i == 4 {
            req("POST", "/prod/echo/p4?i=4", &[], b"body-4")
        } else {
            req("GET", &format!("/prod/echo/p{i}?i={i}"), &[], b"")
        };
        batch.extend_from_slice(&r);
    }
    let mut c = Client::connect(gw.addr);
    c.send(&batch);
    for i in 0..10 {
        let r = c.read_response();
        assert_eq!(r.status, 200, "response {i}: {r:?}");
        assert_eq!((r.minor_version, r.reason.as_str()), (1, "OK"));
        if i % 2 == 1 {
            assert_eq!(
                r.body_str(),
                format!("mock-{i}"),
                "response {i} out of order"
            );
        } else {
            let e = Echo::parse(&r.body);
            assert_eq!(
                e.target,
                format!("/echo/p{i}?i={i}"),
                "response {i} out of order"
            );
            if i == 4 {
                assert_eq!(e.method, "POST");
                assert_eq!(e.body_fnv, fnv_hex(b"body-4"));
            }
        }
        assert!(!r.closes(), "response {i} closes the connection");
    }
    // And the connection still serves a request afterwards.
    let r = c.request(&req("GET", "/prod/echo/after", &[], b""));
    assert_eq!(Echo::parse(&r.body).target, "/echo/after");
    assert_eq!(origin.requests(), 6);
}
