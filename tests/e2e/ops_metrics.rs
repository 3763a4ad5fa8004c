//! `/metrics`, `/healthz` and `/readyz` on the admin listener, end to end: the exposition is
//! parsed with a Prometheus text parser and its counts equal the traffic sent, across two
//! shards (each shard counts its own requests; the scrape sums them).

use crate::client::{get, Client};
use crate::harness::{free_port, Gateway, Server};
use crate::ops_support::{admin_get, parse_prometheus, Exposition};
use crate::origin::Origin;
use std::net::SocketAddr;

fn labels(route: &str) -> [(&'static str, &str); 3] {
    [("api", "shop"), ("stage", "prod"), ("route", route)]
}

fn value(m: &Exposition, name: &str, route: &str) -> f64 {
    m.get(name, &labels(route))
        .unwrap_or_else(|| panic!("no {name} for route {route:?}"))
}

#[test]
fn metrics_count_the_traffic_sent() {
    let origin = Origin::start();
    let admin_port = free_port();
    let apis = format!(
        r#"[[apis]]
name = "shop"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  [[apis.routes]]
  key = "GET /pets"
  integration = {{ type = "mock", status = 200, body = "pets" }}
  [[apis.routes]]
  key = "ANY /o/{{proxy+}}"
  integration = {{ type = "http_proxy", uri = "http://{}/{{proxy}}", timeout_ms = 5000 }}

[admin]
port = {admin_port}
"#,
        origin.addr
    );
    let gw = Gateway::start(&Server::default().with("shards", "2"), &apis);
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    assert_eq!(admin_get(admin, "/healthz").0, 200);
    // Ready once every shard has started (the harness only waited for the first listener).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = admin_get(admin, "/readyz");
        if r == (200, "ready\n".to_string()) {
            break;
        }
        assert_eq!(r, (503, "starting\n".to_string()), "before ready");
        assert!(std::time::Instant::now() < deadline, "never ready");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(admin_get(admin, "/nope").0, 404);

    // A fresh connection per request, so both shards take some.
    let send = |target: &str, n: usize, status: u16| {
        for _ in 0..n {
            let mut c = Client::connect(gw.addr);
            assert_eq!(c.request(&get(target)).status, status, "{target}");
        }
    };
    send("/prod/pets", 7, 200);
    send("/prod/o/echo", 5, 200);
    send("/prod/o/status?code=502", 3, 502);
    send("/prod/o/status?code=404", 2, 404);
    send("/prod/missing", 4, 403);
    // Refused before any stage is known: counted under empty api and stage.
    for _ in 0..2 {
        let mut c = Client::connect(gw.addr);
        assert_eq!(
            c.request(b"GET /prod/pets HTTP/1.1\r\nhost: a\r\nbad header\r\n\r\n")
                .status,
            400
        );
    }
    // A connection left open shows in the gauge.
    let open = Client::connect(gw.addr);
    let mut held = open;
    assert_eq!(held.request(&get("/prod/pets")).status, 200);

    // Closed connections leave the gauge once their shard saw the close: scrape until then.
    let started = std::time::Instant::now();
    let m = loop {
        let (status, body) = admin_get(admin, "/metrics");
        assert_eq!(status, 200);
        let m = parse_prometheus(&body);
        if m.sum("tollgate_open_connections") <= 1.0
            || started.elapsed() > std::time::Duration::from_secs(3)
        {
            break m;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(m.types["tollgate_count_total"], "counter");
    assert_eq!(m.types["tollgate_latency_milliseconds"], "histogram");

    assert_eq!(value(&m, "tollgate_count_total", "GET /pets"), 8.0);
    assert_eq!(value(&m, "tollgate_4xxerror_total", "GET /pets"), 0.0);
    assert_eq!(value(&m, "tollgate_count_total", "ANY /o/{proxy+}"), 10.0);
    assert_eq!(value(&m, "tollgate_5xxerror_total", "ANY /o/{proxy+}"), 3.0);
    assert_eq!(value(&m, "tollgate_4xxerror_total", "ANY /o/{proxy+}"), 2.0);
    assert_eq!(value(&m, "tollgate_count_total", ""), 4.0);
    assert_eq!(value(&m, "tollgate_4xxerror_total", ""), 4.0);
    let nowhere = [("api", ""), ("stage", ""), ("route", "")];
    assert_eq!(m.get("tollgate_count_total", &nowhere), Some(2.0));
    assert_eq!(m.get("tollgate_4xxerror_total", &nowhere), Some(2.0));
    assert_eq!(m.sum("tollgate_count_total"), 24.0);

    // Histograms: cumulative buckets ending in +Inf = count; integration latency only for
    // proxied requests.
    for (route, n, integrated) in [("GET /pets", 8.0, 0.0), ("ANY /o/{proxy+}", 10.0, 10.0)] {
        let mut buckets: Vec<(f64, f64)> = m
            .samples
            .iter()
            .filter(|s| {
                s.name == "tollgate_latency_milliseconds_bucket"
                    && s.labels.get("route").map(String::as_str) == Some(route)
            })
            .map(|s| {
                let le = s.labels["le"].parse::<f64>().unwrap_or(f64::INFINITY);
                (le, s.value)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(buckets.len() > 2, "{route}: {buckets:?}");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{route}: {buckets:?}"
        );
        assert_eq!(buckets.last().map(|b| b.1), Some(n), "{route}");
        assert_eq!(value(&m, "tollgate_latency_milliseconds_count", route), n);
        assert_eq!(
            value(&m, "tollgate_integration_latency_milliseconds_count", route),
            integrated
        );
    }

    let shards: Vec<_> = m
        .samples
        .iter()
        .filter(|s| s.name == "tollgate_open_connections")
        .collect();
    assert_eq!(shards.len(), 2, "one gauge per shard");
    assert_eq!(
        m.sum("tollgate_open_connections"),
        1.0,
        "the held connection"
    );
    assert_eq!(m.sum("tollgate_upstream_connect_errors_total"), 0.0);
    drop(held);
}
