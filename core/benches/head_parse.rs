//! Cost of parsing a request head with `http::request::parse` (strict RFC 9112 checks on top of
//! `httparse`): a minimal `GET` and a browser-sized head with twelve headers.
//!
//! `cargo bench -p tollgate-core --bench head_parse -- --warm-up-time 1 --measurement-time 2`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tollgate_core::http::{request, MAX_HEADERS};

const SMALL: &[u8] = b"GET /prod/pets/42 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

const TYPICAL: &[u8] = b"POST /prod/pets/42/toys?color=red&size=2 HTTP/1.1\r\n\
Host: abc123.execute-api.us-east-1.amazonaws.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) tollgate-bench/1.0\r\n\
Accept: application/json, text/plain;q=0.9, */*;q=0.8\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl\r\n\
Content-Type: application/json\r\n\
Content-Length: 27\r\n\
Connection: keep-alive\r\n\
X-Forwarded-For: 203.0.113.7\r\n\
x-api-key: 0123456789abcdef0123456789abcdef\r\n\
\r\n";

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("head_parse");
    for (name, raw) in [("small", SMALL), ("typical", TYPICAL)] {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        assert!(matches!(
            request::parse(raw, &mut headers, 10_240),
            Ok(Some(_))
        ));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let head = request::parse(black_box(raw), &mut headers, 10_240);
                black_box(head.map(|h| h.map(|h| h.headers.len())).ok())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
