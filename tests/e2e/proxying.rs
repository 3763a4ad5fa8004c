//! HTTP proxy integrations: methods, path and query, bodies, the Host rewrite, X-Forwarded-*,
//! hop-by-hop headers (both directions) and x-amzn-RequestId.

use crate::client::{req, Client};
use crate::harness::{rest_proxy_api, Gateway, Server};
use crate::origin::{Echo, Origin};
use crate::util::{fnv_hex, is_uuid, pattern};
use std::collections::HashSet;

#[test]
fn methods_paths_bodies_and_headers_are_forwarded() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 5000, ""));
    let mut c = Client::connect(gw.addr);
    let mut ids = Vec::new();

    // GET with query, hop-by-hop headers and an end-to-end header.
    let r = c.request(&req(
        "GET",
        "/prod/echo/a/b?x=1&y=two%20words&x=3",
        &[
            ("Connection", "keep-alive, X-Hop-Custom"),
            ("X-Hop-Custom", "must-not-pass"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic c2VjcmV0"),
            ("X-Custom", "kept"),
            ("Accept", "*/*"),
        ],
        b"",
    ));
    assert_eq!(r.status, 200, "GET through proxy: {r:?}");
    ids.push(r.request_id());
    let e = Echo::parse(&r.body);
    assert_eq!(e.method, "GET");
    assert_eq!(e.target, "/echo/a/b?x=1&y=two%20words&x=3", "path + query");
    assert_eq!(e.body_len, 0);
    assert_eq!(
        e.headers_named("host"),
        vec![origin.addr.to_string().as_str()],
        "Host must be rewritten to the backend authority"
    );
    assert_eq!(e.header("x-custom"), Some("kept"));
    assert_eq!(e.header("accept"), Some("*/*"));
    for hop in [
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "x-hop-custom",
    ] {
        assert!(
            e.header(hop).is_none(),
            "hop-by-hop header {hop:?} reached the origin: {:?}",
            e.headers
        );
    }
    assert_eq!(
        e.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "{:?}",
        e.headers
    );
    assert_eq!(e.header("x-forwarded-proto"), Some("http"));
    let port = gw.addr.port().to_string();
    assert_eq!(e.header("x-forwarded-port"), Some(port.as_str()));
    // Response direction: the origin's hop-by-hop headers do not reach the client, its
    // end-to-end ones do.
    assert!(r.has_header("x-origin-conn"), "{:?}", r.headers);
    assert!(
        !r.has_header("keep-alive") && !r.has_header("x-origin-hop"),
        "hop-by-hop response headers reached the client: {:?}",
        r.headers
    );

    // POST with a binary body; an incoming X-Forwarded-For gets the client appended.
    let body = pattern(7, 100_000);
    let r = c.request(&req(
        "POST",
        "/prod/items?kind=new",
        &[
            ("Content-Type", "application/octet-stream"),
            ("X-Forwarded-For", "203.0.113.9"),
        ],
        &body,
    ));
    assert_eq!(r.status, 200, "POST through proxy: {r:?}");
    ids.push(r.request_id());
    let e = Echo::parse(&r.body);
    assert_eq!(e.method, "POST");
    assert_eq!(e.target, "/items?kind=new");
    assert_eq!(e.body_len, body.len() as u64);
    assert_eq!(e.body_fnv, fnv_hex(&body), "POST body checksum");
    assert_eq!(e.header("content-length"), Some("100000"));
    assert_eq!(
        e.header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1"),
        "{:?}",
        e.headers
    );

    // PUT with a small text body.
    let r = c.request(&req("PUT", "/prod/items/42", &[], b"{\"name\":\"rex\"}"));
    assert_eq!(r.status, 200, "PUT through proxy: {r:?}");
    ids.push(r.request_id());
    let e = Echo::parse(&r.body);
    assert_eq!(e.method, "PUT");
    assert_eq!(e.target, "/items/42");
    assert_eq!(e.body_fnv, fnv_hex(b"{\"name\":\"rex\"}"));

    // DELETE without a body.
    let r = c.request(&req("DELETE", "/prod/items/42", &[], b""));
    assert_eq!(r.status, 200, "DELETE through proxy: {r:?}");
    ids.push(r.request_id());
    let e = Echo::parse(&r.body);
    assert_eq!(e.method, "DELETE");
    assert_eq!(e.target, "/items/42");
    assert_eq!(e.body_len, 0);

    // A few more on fresh connections, for request id uniqueness.
    for i in 0..5 {
        let mut c = Client::connect(gw.addr);
        let r = c.request(&req("GET", &format!("/prod/echo/{i}"), &[], b""));
        assert_eq!(r.status, 200);
        ids.push(r.request_id());
    }
    for id in &ids {
        assert!(is_uuid(id), "x-amzn-RequestId {id:?} is not a 36-char UUID");
    }
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "request ids repeat: {ids:?}");

    let seen = origin.seen();
    assert_eq!(seen.len(), 9, "origin saw {seen:#?}");
    assert!(seen.iter().all(|s| s.complete));
    let authority = origin.addr.to_string();
    assert!(seen
        .iter()
        .all(|s| s.header("host") == Some(authority.as_str()) && s.headers.len() > 3));
}

#[test]
fn http_api_uri_without_path_sends_the_full_request_path() {
    let origin = Origin::start();
    let apis = format!(
        r#"[[apis]]
name = "web"
protocol = "http"
  [[apis.stages]]
  name = "$default"
  variables = {{ backend = "{}" }}
  [[apis.routes]]
  key = "$default"
  integration = {{ type = "http_proxy", uri = "http://${{stageVariables.backend}}" }}
"#,
        origin.addr
    );
    let gw = Gateway::start(&Server::default(), &apis);
    let mut c = Client::connect(gw.addr);
    let r = c.request(&req("PATCH", "/v1/orders/9?expand=lines", &[], b"patch"));
    assert_eq!(r.status, 200, "{r:?}");
    let e = Echo::parse(&r.body);
    assert_eq!(e.method, "PATCH");
    assert_eq!(e.target, "/v1/orders/9?expand=lines");
    assert_eq!(e.body_fnv, fnv_hex(b"patch"));
    assert_eq!(e.header("host"), Some(origin.addr.to_string().as_str()));
}

#[test]
fn path_parameters_and_template_query_are_substituted() {
    let origin = Origin::start();
    let extra = r#"  [[apis.routes]]
  key = "GET /pets/{petId}"
  integration = { type = "http_proxy", uri = "http://${stageVariables.backend}/animals/{petId}?src=gw", timeout_ms = 5000 }
"#;
    let gw = Gateway::start(
        &Server::default(),
        &rest_proxy_api(origin.addr, 5000, extra),
    );
    let mut c = Client::connect(gw.addr);
    let r = c.request(&req("GET", "/prod/pets/42?x=1", &[], b""));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(Echo::parse(&r.body).target, "/animals/42?src=gw&x=1");
    let r = c.request(&req("GET", "/prod/pets/7", &[], b""));
    assert_eq!(Echo::parse(&r.body).target, "/animals/7?src=gw");
    // The greedy route still takes the rest.
    let r = c.request(&req("GET", "/prod/pets/7/toys", &[], b""));
    assert_eq!(Echo::parse(&r.body).target, "/pets/7/toys");
}
