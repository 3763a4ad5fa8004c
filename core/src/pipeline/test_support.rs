//! Shared fixtures of the pipeline's unit tests.

use super::Context;
use crate::config;
use crate::forward::ClientInfo;
use crate::gateway::Gateway;
use crate::http::request::{self, RequestHead};
use crate::http::MAX_HEADERS;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

/// A REST API `rest` (stage `prod`, variable `who = "tests"`: a proxied and two mock routes)
/// and an HTTP API on host `h.example`.
pub(crate) const CONFIG: &str = r#"
[server]
max_body_bytes = 1000

[[listeners]]
address = "127.0.0.1"
port = 8080

[[apis]]
name = "rest"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  variables = { who = "tests" }
  [[apis.routes]]
  key = "GET /pets/{id}"
  integration = { type = "http_proxy", uri = "http://127.0.0.1:9000/animals/{id}", timeout_ms = 1500 }
  [[apis.routes]]
  key = "POST /echo"
  integration = { type = "mock", status = 201, headers = { "content-type" = "text/plain" }, body = "made" }
  [[apis.routes]]
  key = "GET /teapot"
  integration = { type = "mock", status = 418, body = "" }

[[apis]]
name = "http"
protocol = "http"
hosts = ["h.example"]
  [[apis.stages]]
  name = "$default"
  [[apis.routes]]
  key = "GET /here"
  integration = { type = "mock", status = 200, body = "here" }
"#;

pub(crate) fn gateway() -> Gateway {
    match config::load_str("<pipeline tests>", CONFIG) {
        Ok(g) => g,
        Err(e) => panic!("test config: {e:?}"),
    }
}

pub(crate) fn client() -> ClientInfo {
    ClientInfo {
        ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)),
        port: 8080,
        proto: "http",
    }
}

pub(crate) const ID: [u8; 36] = *b"c0ffee00-0000-4000-8000-000000000001";

/// Parses `raw` and runs `f` with its head and a fresh context.
pub(crate) fn with_head<'g>(
    raw: &[u8],
    f: impl for<'b, 'h> FnOnce(&RequestHead<'b, 'h>, &mut Context<'g>),
) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = request::parse(raw, &mut headers, 8192)
        .expect("valid head")
        .expect("complete head");
    let mut ctx = Context::new(ID, client(), Instant::now(), &head);
    f(&head, &mut ctx);
}
