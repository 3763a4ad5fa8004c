//! `pipeline N`: runs tollgate's in-process request pipeline N times, for counting CPU
//! instructions per request under callgrind (`bench/callgrind.sh` runs it with N and 2N and
//! divides the difference by N, which removes start-up and config compilation).
//!
//! One iteration: parse a realistic client request head, make a request id, then run the
//! request pipeline (`tollgate_core::pipeline`) as a shard does: dispatch on a gateway with
//! 1,000 routes, the integration request (backend head), parse a backend response head, the
//! integration response (client head) — everything per request except the I/O.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::time::Instant;
use tollgate_bench::configs::{self, Routes};
use tollgate_core::config;
use tollgate_core::forward::ClientInfo;
use tollgate_core::http::{request, response, MAX_HEADERS};
use tollgate_core::pipeline::{self, Context, Integration};
use tollgate_core::request_id::RequestIds;

/// Routes in the gateway config.
const ROUTES: usize = 1000;

/// A browser-like request for a route in the middle of the table.
const REQUEST: &[u8] = b"GET /svc499/items/8a7b6c5d?expand=owner&limit=20 HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: application/json, text/plain, */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc\r\n\
X-Forwarded-For: 203.0.113.7\r\n\
Connection: keep-alive\r\n\
Cookie: session=3f9a1c; theme=dark\r\n\
\r\n";

/// A typical backend response head.
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Date: Tue, 04 Mar 2025 10:00:00 GMT\r\n\
Content-Type: application/json; charset=utf-8\r\n\
Content-Length: 1024\r\n\
Cache-Control: no-store\r\n\
ETag: \"5f2b-1c9d\"\r\n\
Connection: keep-alive\r\n\
Keep-Alive: timeout=60\r\n\
X-Backend-Instance: i-0abc123\r\n\
\r\n";

fn main() -> ExitCode {
    let n: u64 = match std::env::args().nth(1).map(|a| a.parse()) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("usage: pipeline ITERATIONS");
            return ExitCode::from(2);
        }
    };
    let text = configs::tollgate(Routes::Gateway { count: ROUTES }, 18080, 9000, 1);
    let gateway = match config::load_str("<pipeline bench>", &text) {
        Ok(g) => g,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return ExitCode::FAILURE;
        }
    };
    let client = ClientInfo {
        ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        port: 18080,
        proto: "http",
    };
    let mut ids = RequestIds::new(0x5eed);
    let mut upstream_out: Vec<u8> = Vec::with_capacity(4096);
    let mut client_out: Vec<u8> = Vec::with_capacity(4096);
    let mut bytes = 0usize;
    for _ in 0..n {
        let mut req_headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let req = match request::parse(black_box(REQUEST), &mut req_headers, 10 * 1024) {
            Ok(Some(r)) => r,
            other => {
                eprintln!("request did not parse: {other:?}");
                return ExitCode::FAILURE;
            }
        };
        let mut ctx = Context::new(ids.next(), client, Instant::now(), &req);
        let m = match pipeline::dispatch(&gateway, &req, &mut ctx) {
            Ok(m) => m,
            Err(f) => {
                eprintln!("no route for {}: {f:?}", req.path);
                return ExitCode::FAILURE;
            }
        };
        upstream_out.clear();
        match pipeline::integration_request(&gateway, &req, &m, &ctx, &mut upstream_out) {
            Ok(Integration::Proxy { .. }) => {}
            other => {
                eprintln!("the route is not an http_proxy integration: {other:?}");
                return ExitCode::FAILURE;
            }
        }
        let mut resp_headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let resp = match response::parse(black_box(RESPONSE), &mut resp_headers, 10 * 1024, false) {
            Ok(Some(r)) => r,
            other => {
                eprintln!("response did not parse: {other:?}");
                return ExitCode::FAILURE;
            }
        };
        client_out.clear();
        let plan = pipeline::integration_response(&resp, &ctx, &mut client_out);
        black_box(plan);
        bytes += black_box(&upstream_out).len() + black_box(&client_out).len();
    }
    println!("{n} iterations, {bytes} head bytes written");
    ExitCode::SUCCESS
}
