//! Route match cost against the number of routes (10, 1,000, 10,000): a literal hit, a
//! `{param}` hit, a greedy fallback after backtracking out of a deep branch, and a miss that
//! walks the whole branch. The cost must stay flat as routes grow.
//!
//! `cargo bench -p tollgate-core --bench route_match -- --warm-up-time 1 --measurement-time 2`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use tollgate_core::method::Method;
use tollgate_core::router::{parse_route_key, Router, RouterBuilder};

/// `n` routes: services `svc{i}` with a literal, a one-param, a two-level and a two-param
/// route each, plus one `ANY /{proxy+}` catch-all.
fn routes(n: usize) -> Router {
    let mut b = RouterBuilder::new();
    for j in 0..n - 1 {
        let i = j / 4;
        let key = match j % 4 {
            0 => format!("GET /svc{i}/items"),
            1 => format!("GET /svc{i}/items/{{id}}"),
            2 => format!("GET /svc{i}/items/{{id}}/sub"),
            _ => format!("POST /svc{i}/orders/{{orderId}}/lines/{{line}}"),
        };
        let key = parse_route_key(&key).expect("generated keys are valid");
        b.add(&key, j as u32).expect("generated keys are distinct");
    }
    let proxy = parse_route_key("ANY /{proxy+}").expect("valid");
    b.add(&proxy, (n - 1) as u32).expect("distinct");
    b.build()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_match");
    for n in [10usize, 1_000, 10_000] {
        let router = routes(n);
        // A service in the middle of the generated ones (all four of its routes exist).
        let k = (n - 1) / 8;
        let cases = [
            ("literal", Method::Get, format!("/svc{k}/items")),
            ("param", Method::Get, format!("/svc{k}/items/42/sub")),
            ("greedy", Method::Get, format!("/svc{k}/items/42/sub/extra")),
            // `OTHER` is never routed except to `$default` (none here): walks and backtracks.
            ("miss", Method::Other, format!("/svc{k}/items/42/sub")),
        ];
        for (name, method, path) in &cases {
            let expect_some = *name != "miss";
            assert_eq!(router.find(*method, path).is_some(), expect_some, "{path}");
            g.bench_with_input(BenchmarkId::new(*name, n), path, |b, path| {
                b.iter(|| router.find(black_box(*method), black_box(path.as_str())))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
