//! The gateway's own error responses: no route (REST 403, HTTP 404), integration timeout
//! (504) and integration failure (INTEGRATION_FAILURE, 504 as the guide's table says, L22839:
//! reset by the backend, nobody listening).

use crate::client::{get, req, Client};
use crate::harness::{free_port, mock_route, rest_proxy_api, Gateway, Server};
use crate::origin::Origin;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const MISSING_TOKEN: &str = r#"{"message":"Missing Authentication Token"}"#;
const NOT_FOUND: &str = r#"{"message":"Not Found"}"#;
const TIMED_OUT: &str = r#"{"message":"Endpoint request timed out"}"#;
const INTERNAL: &str = r#"{"message":"Internal server error"}"#;

#[test]
fn rest_api_unknown_route_or_stage_is_403() {
    let apis = format!(
        "[[apis]]\nname = \"pets\"\nprotocol = \"rest\"\n  [[apis.stages]]\n  name = \"prod\"\n{}{}",
        mock_route("GET /pets", 200, "pets"),
        mock_route("GET /pets/{petId}", 200, "pet"),
    );
    let gw = Gateway::start(&Server::default(), &apis);
    let mut c = Client::connect(gw.addr);

    // The routes exist.
    let r = c.request(&get("/prod/pets"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "pets"));
    let r = c.request(&get("/prod/pets/7"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "pet"));

    for (what, request) in [
        ("unknown path", get("/prod/owners")),
        ("unknown method", req("DELETE", "/prod/pets", &[], b"")),
        ("too deep", get("/prod/pets/7/toys")),
        ("unknown stage", get("/staging/pets")),
        ("no stage", get("/pets")),
        ("root", get("/")),
    ] {
        let r = c.request(&request);
        r.assert_gateway_error(403, MISSING_TOKEN);
        assert_eq!(
            r.header("x-amzn-errortype"),
            Some("MissingAuthenticationTokenException"),
            "{what}: {:?}",
            r.headers
        );
        assert!(!r.closes(), "{what}: a 403 should keep the connection");
    }
}

#[test]
fn http_api_unknown_route_is_404() {
    let apis = format!(
        "[[apis]]\nname = \"web\"\nprotocol = \"http\"\n  [[apis.stages]]\n  name = \"$default\"\n{}",
        mock_route("GET /items", 200, "items"),
    );
    let gw = Gateway::start(&Server::default(), &apis);
    let mut c = Client::connect(gw.addr);
    let r = c.request(&get("/items"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "items"));
    for request in [
        get("/nothing"),
        req("POST", "/items", &[], b"x"),
        get("/items/1"),
    ] {
        let r = c.request(&request);
        r.assert_gateway_error(404, NOT_FOUND);
        assert!(!r.closes(), "a 404 should keep the connection");
    }
}

#[test]
fn backend_that_never_answers_gives_504() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 500, ""));
    let mut c = Client::connect(gw.addr);
    let start = Instant::now();
    let r = c.request(&get("/prod/never"));
    let took = start.elapsed();
    r.assert_gateway_error(504, TIMED_OUT);
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(2),
        "504 after {took:?} with timeout_ms = 500"
    );
    assert_eq!(origin.requests(), 1);
    // The next request works (on this connection unless the gateway chose to close it).
    let mut c = if r.closes() {
        Client::connect(gw.addr)
    } else {
        c
    };
    let r = c.request(&get("/prod/echo/next"));
    assert_eq!(r.status, 200);
}

#[test]
fn backend_reset_gives_504() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 5000, ""));
    let mut c = Client::connect(gw.addr);
    let r = c.request(&get("/prod/reset"));
    r.assert_gateway_error(504, INTERNAL);
    // After a pooled connection exists, a reset is still a 504 (not a hang, not a retry loop).
    let mut c = Client::connect(gw.addr);
    let r = c.request(&get("/prod/echo/warm"));
    assert_eq!(r.status, 200);
    let r = c.request(&req("POST", "/prod/reset", &[], b"payload"));
    r.assert_gateway_error(504, INTERNAL);
}

#[test]
fn backend_not_listening_gives_504() {
    let dead: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(dead, 5000, ""));
    let mut c = Client::connect(gw.addr);
    let start = Instant::now();
    let r = c.request(&get("/prod/anything"));
    r.assert_gateway_error(504, INTERNAL);
    assert!(start.elapsed() < Duration::from_secs(2));
    // With a body too.
    let mut c = if r.closes() {
        Client::connect(gw.addr)
    } else {
        c
    };
    let r = c.request(&req("PUT", "/prod/anything", &[], b"data"));
    r.assert_gateway_error(504, INTERNAL);
}
