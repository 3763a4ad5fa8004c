//! `tollgate` with no `--config` serves its built-in demo config on 127.0.0.1:8080. Skipped
//! (with a printed reason) when that port is taken; serialized with anything else here that
//! would use 8080 (`harness::free_port` never hands it out).

use crate::client::{get, req, Client};
use crate::harness::Gateway;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;

/// Held by every test that uses 127.0.0.1:8080.
pub static PORT_8080: Mutex<()> = Mutex::new(());

#[test]
fn builtin_demo_config_serves_pets() {
    let _guard = PORT_8080.lock().unwrap_or_else(|e| e.into_inner());
    let addr: SocketAddr = ([127, 0, 0, 1], 8080).into();
    match TcpListener::bind(addr) {
        Ok(l) => drop(l),
        Err(e) => {
            eprintln!("SKIPPED builtin_demo_config_serves_pets: 127.0.0.1:8080 is busy ({e})");
            return;
        }
    }
    let mut gw = Gateway::spawn(&[], addr, None);
    let mut c = Client::connect(addr);

    let r = c.request(&get("/demo/pets"));
    assert_eq!(r.status, 200, "GET /demo/pets: {r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.to_ascii_lowercase().contains("json")),
        "GET /demo/pets content-type: {:?}",
        r.headers
    );
    let body = r.body_str();
    let trimmed = body.trim();
    assert!(
        (trimmed.starts_with('[') && trimmed.ends_with(']'))
            || (trimmed.starts_with('{') && trimmed.ends_with('}')),
        "GET /demo/pets body is not JSON: {body:?}"
    );
    assert!(r.has_header("x-amzn-requestid"));

    let r = c.request(&get("/demo/pets/1"));
    assert_eq!(r.status, 200, "GET /demo/pets/1: {r:?}");
    let r = c.request(&req(
        "POST",
        "/demo/pets",
        &[("Content-Type", "application/json")],
        b"{\"type\":\"dog\"}",
    ));
    assert!((200..300).contains(&r.status), "POST /demo/pets: {r:?}");
    // The http API's $default stage answers other paths.
    let r = c.request(&get("/somewhere/else"));
    assert_eq!(
        r.status, 200,
        "GET /somewhere/else (http API $default): {r:?}"
    );

    gw.assert_running();
    assert!(
        gw.wait_output(
            "listening on http://127.0.0.1:8080",
            std::time::Duration::from_secs(2)
        ),
        "startup line missing; output:\n{}",
        gw.output()
    );
}
