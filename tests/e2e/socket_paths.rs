//! Both socket paths serve the same traffic: the default lean path (multishot receive into
//! the shard's ring, sends as SQEs) is what every other test exercises; here the readiness-
//! polling path (`TOLLGATE_SOCKET_PATH=poll`, also the fallback on kernels without the lean
//! pieces) and a lean path with a receive ring far too small for the load (receives run dry
//! and fall back to `recv(2)`) get keep-alive, pipelining and 9 MB bodies both ways.

use crate::client::{get, req, Client};
use crate::harness::{rest_proxy_api, Gateway, Server};
use crate::origin::{Echo, Origin};
use crate::util::{fnv_hex, pattern};

fn exercise(gw: &Gateway, origin: &Origin) {
    let mut c = Client::connect(gw.addr);
    for i in 0..20 {
        let r = c.request(&get(&format!("/prod/echo/{i}")));
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_eq!(Echo::parse(&r.body).target, format!("/echo/{i}"));
    }

    let mut batch = Vec::new();
    for i in 0..8 {
        batch.extend_from_slice(&req("POST", &format!("/prod/echo/p{i}"), &[], b"xyz"));
    }
    c.send(&batch);
    for i in 0..8 {
        let r = c.read_response();
        assert_eq!(r.status, 200, "pipelined {i}: {r:?}");
        assert_eq!(Echo::parse(&r.body).target, format!("/echo/p{i}"));
    }

    let body = pattern(7, 9 * 1024 * 1024);
    let r = c.request(&req("PUT", "/prod/blob", &[], &body));
    assert_eq!(r.status, 200, "{:?}", r.body_str());
    assert_eq!(
        Echo::parse(&r.body).body_fnv,
        fnv_hex(&body),
        "upload checksum"
    );

    let r = c.request(&get("/prod/download?size=9000000"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 9_000_000, "download length");
    assert!(origin.requests() >= 30);
}

#[test]
fn readiness_polling_path_serves_the_same_traffic() {
    let origin = Origin::start();
    let gw = Gateway::start_with_env(
        &Server::default(),
        &rest_proxy_api(origin.addr, 10_000, ""),
        &[("TOLLGATE_SOCKET_PATH", "poll")],
    );
    exercise(&gw, &origin);
}

#[test]
fn lean_path_with_a_starved_receive_ring_serves_the_same_traffic() {
    let origin = Origin::start();
    let server = Server::default()
        .with("receive_ring_buffers", "2")
        .with("receive_ring_buffer_bytes", "512");
    let gw = Gateway::start_with_env(
        &server,
        &rest_proxy_api(origin.addr, 10_000, ""),
        &[("TOLLGATE_SOCKET_PATH", "lean")],
    );
    exercise(&gw, &origin);
}
