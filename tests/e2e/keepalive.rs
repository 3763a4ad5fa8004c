//! Backend keep-alive: the gateway reuses pooled connections to the origin instead of opening
//! one per request, whether the requests share a client connection or not.

use crate::client::{get, Client};
use crate::harness::{rest_proxy_api, Gateway, Server};
use crate::origin::{Echo, Origin};

#[test]
fn one_client_connection_reuses_backend_connections() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 5000, ""));
    let mut c = Client::connect(gw.addr);
    for i in 0..50 {
        let r = c.request(&get(&format!("/prod/echo/{i}")));
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_eq!(Echo::parse(&r.body).target, format!("/echo/{i}"));
    }
    assert_eq!(origin.requests(), 50);
    let used: std::collections::HashSet<usize> = origin.seen().iter().map(|s| s.conn).collect();
    assert!(
        used.len() <= 5,
        "requests arrived on {} connections",
        used.len()
    );
    let conns = origin.connections();
    assert!(
        conns <= 5,
        "50 sequential requests used {conns} backend connections"
    );
}

#[test]
fn several_client_connections_share_backend_connections() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_proxy_api(origin.addr, 5000, ""));
    let mut clients: Vec<Client> = (0..5).map(|_| Client::connect(gw.addr)).collect();
    for i in 0..50 {
        let c = &mut clients[i % 5];
        let r = c.request(&get(&format!("/prod/echo/{i}")));
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_eq!(Echo::parse(&r.body).target, format!("/echo/{i}"));
    }
    // And a fresh client connection per request.
    for i in 50..60 {
        let mut c = Client::connect(gw.addr);
        let r = c.request(&get(&format!("/prod/echo/{i}")));
        assert_eq!(r.status, 200, "request {i}: {r:?}");
    }
    assert_eq!(origin.requests(), 60);
    let conns = origin.connections();
    assert!(
        conns <= 5,
        "60 sequential requests over 15 client connections used {conns} backend connections"
    );
}
