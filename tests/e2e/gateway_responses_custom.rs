//! Customised gateway responses (`[[apis.gateway_responses]]`), end to end: a type's own
//! customisation, the DEFAULT_4XX / DEFAULT_5XX fallback, the built-in default when neither is
//! set, substitutions in the body, custom headers, and that REQUEST_TOO_LARGE cannot be
//! customised (refused by `tollgate validate`).

use crate::client::{get, req, Client};
use crate::harness::{config_text, free_port, mock_route, run_to_end, Gateway, Server, TempDir};
use std::net::SocketAddr;

/// A REST API `pets` (stage `prod`, stage variable `team = "blue"`) with a mock route and a
/// proxy route to `backend`, plus `responses` (TOML `[[apis.gateway_responses]]` tables).
fn api(backend: SocketAddr, responses: &str) -> String {
    format!(
        r#"[[apis]]
name = "pets"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  variables = {{ team = "blue" }}
{}  [[apis.routes]]
  key = "GET /down"
  integration = {{ type = "http_proxy", uri = "http://{backend}/down", timeout_ms = 2000 }}
{responses}"#,
        mock_route("GET /pets", 200, "pets"),
    )
}

/// A loopback address nobody listens on (connections are refused).
fn refused_backend() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

#[test]
fn specific_type_wins_with_status_headers_and_substituted_body() {
    let responses = r#"
  [[apis.gateway_responses]]
  type = "MISSING_AUTHENTICATION_TOKEN"
  status = 404
  headers = { "access-control-allow-origin" = "*" }
  body = '{"error":$context.error.messageString,"type":"$context.error.responseType","id":"$context.requestId","stage":"$context.stage","team":"$stageVariables.team","method":"$context.httpMethod","path":"$context.path","raw":"$context.error.message"}'
  [[apis.gateway_responses]]
  type = "DEFAULT_4XX"
  status = 418
  body = '{"fallback":"4xx"}'
"#;
    let gw = Gateway::start(&Server::default(), &api(refused_backend(), responses));
    let mut c = Client::connect(gw.addr);
    let r = c.request(&get("/prod/pets"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "pets"));

    let r = c.request(&req("DELETE", "/prod/owners", &[], b""));
    assert_eq!(r.status, 404, "{r:?}");
    let id = r.request_id();
    assert_eq!(
        r.body_str(),
        format!(
            r#"{{"error":"Missing Authentication Token","type":"MISSING_AUTHENTICATION_TOKEN","id":"{id}","stage":"prod","team":"blue","method":"DELETE","path":"/prod/owners","raw":"Missing Authentication Token"}}"#
        )
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("MissingAuthenticationTokenException")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(!r.closes(), "a customised 404 keeps the connection");

    // HEAD: the same head, no body.
    c.send(&req("HEAD", "/prod/owners", &[], b""));
    let h = c.read_head_response();
    assert_eq!(h.status, 404);
    assert!(h.body.is_empty());
    assert_eq!(h.header("access-control-allow-origin"), Some("*"));

    // The connection is still sound.
    let r = c.request(&get("/prod/pets"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "pets"));
}

#[test]
fn default_4xx_and_5xx_fall_back_and_uncustomised_types_stay_builtin() {
    // Only the defaults are customised: a 403 MISSING_AUTHENTICATION_TOKEN takes DEFAULT_4XX's
    // status and body; an INTEGRATION_FAILURE takes DEFAULT_5XX's.
    let responses = r#"
  [[apis.gateway_responses]]
  type = "DEFAULT_4XX"
  status = 400
  headers = { "x-team" = "pets" }
  body = '{"oops":$context.error.messageString,"type":"$context.error.responseType"}'
  [[apis.gateway_responses]]
  type = "DEFAULT_5XX"
  body = '{"down":"$context.error.responseType"}'
"#;
    let gw = Gateway::start(&Server::default(), &api(refused_backend(), responses));
    let mut c = Client::connect(gw.addr);

    let r = c.request(&get("/prod/nothing"));
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.body_str(),
        r#"{"oops":"Missing Authentication Token","type":"MISSING_AUTHENTICATION_TOKEN"}"#
    );
    assert_eq!(r.header("x-team"), Some("pets"));
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("MissingAuthenticationTokenException")
    );

    let r = c.request(&get("/prod/down"));
    assert_eq!(
        r.status, 504,
        "DEFAULT_5XX sets no status: the type's own (504)"
    );
    assert_eq!(r.body_str(), r#"{"down":"INTEGRATION_FAILURE"}"#);
    assert!(!r.has_header("x-team"), "DEFAULT_4XX headers are not 5xx's");

    // An API without customisations answers the built-ins (requests that reach no API too).
    let plain = Gateway::start(&Server::default(), &api(refused_backend(), ""));
    let mut c = Client::connect(plain.addr);
    let r = c.request(&get("/prod/nothing"));
    r.assert_gateway_error(403, r#"{"message":"Missing Authentication Token"}"#);
    let r = c.request(&get("/prod/down"));
    r.assert_gateway_error(504, r#"{"message":"Internal server error"}"#);
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("InternalServerErrorException")
    );
}

#[test]
fn request_too_large_is_builtin_and_cannot_be_customised() {
    // The guide: REQUEST_TOO_LARGE cannot be customised; the config refuses it, and an
    // unknown `$context` variable, with the file and line.
    let dir = TempDir::new("grtl");
    let bad = api(
        refused_backend(),
        "  [[apis.gateway_responses]]\n  type = \"REQUEST_TOO_LARGE\"\n  status = 400\n",
    );
    let path = dir.write(
        "bad.toml",
        &config_text(&Server::default(), free_port(), &bad),
    );
    let (code, out) = run_to_end(&[std::path::Path::new("validate"), &path]);
    assert_ne!(
        code,
        Some(0),
        "REQUEST_TOO_LARGE customisation accepted: {out}"
    );
    assert!(out.contains("REQUEST_TOO_LARGE"), "{out}");
    assert!(
        out.contains("bad.toml:"),
        "error names the file and line: {out}"
    );

    let unknown = api(
        refused_backend(),
        "  [[apis.gateway_responses]]\n  type = \"THROTTLED\"\n  body = '$context.nope'\n",
    );
    let path = dir.write(
        "unknown.toml",
        &config_text(&Server::default(), free_port(), &unknown),
    );
    let (code, out) = run_to_end(&[std::path::Path::new("validate"), &path]);
    assert_ne!(code, Some(0), "unknown variable accepted: {out}");
    assert!(out.contains("$context.nope"), "{out}");
}
