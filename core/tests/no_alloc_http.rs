//! Proves the per-request work makes no heap allocation: `request::parse` on a typical
//! request, `ChunkedDecoder::feed`, protocol refusals (`pipeline::refuse`) into a pre-reserved buffer,
//! `RequestIds::next`, and the pipeline's phases (context, dispatch, integration request and
//! response, every failure's gateway response) into pre-reserved buffers. The shared counting
//! global allocator (`support/counting_alloc.rs`) counts every allocation made by the thread
//! under test.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;
use tollgate_core::config;
use tollgate_core::forward::ClientInfo;
use tollgate_core::gateway::Protocol;
use tollgate_core::http::chunked::ChunkedDecoder;
use tollgate_core::http::error::GatewayError;
use tollgate_core::http::{request, response, BodyKind, MAX_HEADERS};
use tollgate_core::pipeline::{self, Context, Failure, Integration};
use tollgate_core::request_id::RequestIds;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{allocations_during, assert_counter_sees_allocations};

const REQUEST: &[u8] = b"POST /prod/pets/42/toys?color=red&size=2 HTTP/1.1\r\n\
Host: abc123.execute-api.us-east-1.amazonaws.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) tollgate-test/1.0\r\n\
Accept: application/json, text/plain;q=0.9, */*;q=0.8\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl\r\n\
Content-Type: application/json\r\n\
Content-Length: 27\r\n\
Connection: keep-alive\r\n\
X-Forwarded-For: 203.0.113.7\r\n\
Expect: 100-continue\r\n\
\r\n\
{\"name\":\"rex\",\"toys\":[1,2]}";

#[test]
fn control_the_counter_sees_allocations() {
    assert_counter_sees_allocations();
}

#[test]
fn request_parse_does_not_allocate() {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut checked = 0;
    let ((), n) = allocations_during(|| {
        for _ in 0..100 {
            let head = request::parse(REQUEST, &mut headers, 10_240)
                .ok()
                .flatten()
                .map(|h| (h.body, h.headers.len(), h.keep_alive, h.expect_continue));
            assert_eq!(head, Some((BodyKind::Length(27), 11, true, true)));
            checked += 1;
        }
        // Refusals and incomplete heads do not allocate either.
        assert!(request::parse(&REQUEST[..100], &mut headers, 10_240).is_ok_and(|h| h.is_none()));
        assert!(request::parse(b"GET / HTTP/1.1\nHost: a\n\n", &mut headers, 10_240).is_err());
        assert!(request::parse(REQUEST, &mut headers, 64).is_err());
    });
    assert_eq!(checked, 100);
    assert_eq!(n, 0, "request::parse allocated");
}

#[test]
fn response_parse_does_not_allocate() {
    let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nServer: origin\r\nDate: Tue, 02 May 2017 03:15:47 GMT\r\n\r\n";
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let ((), n) = allocations_during(|| {
        let body = response::parse(raw, &mut headers, 8192, false)
            .ok()
            .flatten()
            .map(|h| h.body);
        assert_eq!(body, Some(BodyKind::Chunked));
    });
    assert_eq!(n, 0, "response::parse allocated");
}

#[test]
fn chunked_feed_does_not_allocate() {
    let body: &[u8] =
        b"1a;name=\"v\"\r\nabcdefghijklmnopqrstuvwxyz\r\n3\r\nxyz\r\n0\r\nX-Checksum: 1234\r\n\r\nNEXT";
    let ((), n) = allocations_during(|| {
        let mut total = 0usize;
        let mut d = ChunkedDecoder::new();
        let r = d.feed(body, |s| total += s.len());
        assert_eq!(r, Ok((body.len() - 4, true)));
        // Byte by byte.
        let mut d = ChunkedDecoder::new();
        for b in body.chunks(1) {
            if d.feed(b, |s| total += s.len()).is_ok_and(|(_, done)| done) {
                break;
            }
        }
        assert_eq!(d.data_len(), 29);
        assert_eq!(total, 58);
        // Errors do not allocate.
        let mut d = ChunkedDecoder::new();
        assert!(d.feed(b"5\nhello", |_| {}).is_err());
        // Nor do extension ranges (BWS included) and the body limit.
        let mut d = ChunkedDecoder::with_limit(29);
        let mut ext = 0usize;
        let r = d.feed_parts(
            b"1a ; a = \"q\\\"\" ;b\r\nabcdefghijklmnopqrstuvwxyz\r\n",
            |_| {},
            |r| ext += r.len(),
        );
        assert_eq!((r.map(|(_, done)| done), ext), (Ok(false), 15));
        assert!(d.feed(b"4\r\n", |_| {}).is_err());
    });
    assert_eq!(n, 0, "ChunkedDecoder::feed allocated");
}

#[test]
fn refusals_do_not_allocate_into_a_reserved_buffer() {
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let id = [b'a'; 36];
    let all = [
        GatewayError::BadRequest,
        GatewayError::HeadersTooLarge,
        GatewayError::NotImplemented,
        GatewayError::VersionNotSupported,
    ];
    let ((), n) = allocations_during(|| {
        for err in all {
            for (close, head) in [(false, false), (true, false), (false, true), (true, true)] {
                out.clear();
                pipeline::refuse(err, &id, close, head, &mut out);
                assert!(out.starts_with(b"HTTP/1.1 "));
            }
        }
    });
    assert_eq!(n, 0, "pipeline::refuse allocated");
}

const PIPELINE_CONFIG: &str = r#"
[[listeners]]
address = "127.0.0.1"
port = 8080

[[apis]]
name = "svc"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  variables = { who = "tests" }
  [[apis.routes]]
  key = "GET /pets/{id}"
  integration = { type = "http_proxy", uri = "http://127.0.0.1:9000/animals/{id}", timeout_ms = 1500 }
  [[apis.routes]]
  key = "POST /echo"
  integration = { type = "mock", status = 201, body = "made" }
"#;

#[test]
fn pipeline_phases_do_not_allocate() {
    let gw = config::load_str("<no-alloc>", PIPELINE_CONFIG).expect("test config");
    let client = ClientInfo {
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 8080,
        proto: "http",
    };
    let req: &[u8] = b"GET /prod/pets/42?x=1 HTTP/1.1\r\nHost: api.example.com\r\n\
        Accept: */*\r\nConnection: keep-alive\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n";
    let mock: &[u8] = b"POST /prod/echo HTTP/1.1\r\nHost: a\r\ncontent-length: 3\r\n\r\n";
    let resp: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\n";
    let failures = [
        Failure::NoRoute(Protocol::Rest),
        Failure::NoRoute(Protocol::Http),
        Failure::BodyTooLarge,
        Failure::BackendFailed,
        Failure::IntegrationTimeout,
        Failure::BadBackendResponse,
        Failure::Internal,
        Failure::Refused(GatewayError::BadRequest),
    ];
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let start = Instant::now();
    let ((), n) = allocations_during(|| {
        for _ in 0..10 {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let head = request::parse(req, &mut headers, 8192)
                .expect("valid")
                .expect("complete");
            let mut ctx = Context::new([b'a'; 36], client, start, &head);
            let m = pipeline::dispatch(&gw, &head, &mut ctx).expect("route");
            out.clear();
            let step = pipeline::integration_request(&gw, &head, &m, &ctx, &mut out);
            assert!(matches!(step, Ok(Integration::Proxy { .. })));
            let mut rh = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let r = response::parse(resp, &mut rh, 8192, false)
                .expect("valid")
                .expect("complete");
            out.clear();
            let plan = pipeline::integration_response(&r, &ctx, &mut out);
            assert_eq!(plan.body, BodyKind::Length(5));
            for f in failures {
                out.clear();
                pipeline::respond(&gw, &ctx, f, false, &mut out);
                assert!(out.starts_with(b"HTTP/1.1 "));
            }

            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let head = request::parse(mock, &mut headers, 8192)
                .expect("valid")
                .expect("complete");
            let mut ctx = Context::new([b'b'; 36], client, start, &head);
            let m = pipeline::dispatch(&gw, &head, &mut ctx).expect("route");
            out.clear();
            let step = pipeline::integration_request(&gw, &head, &m, &ctx, &mut out);
            assert_eq!(step, Ok(Integration::Local { close: false }));
            assert!(out.ends_with(b"made"));
        }
    });
    assert_eq!(n, 0, "a pipeline phase allocated");
}

#[test]
fn request_ids_do_not_allocate() {
    let mut ids = RequestIds::new(0x1234_5678);
    let mut last = [0u8; 36];
    let ((), n) = allocations_during(|| {
        for _ in 0..1000 {
            let id = ids.next();
            assert_ne!(id, last);
            last = id;
        }
    });
    assert_eq!(n, 0, "RequestIds::next allocated");
}
