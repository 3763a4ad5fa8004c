//! `/metrics`, `/healthz` and `/readyz` on the admin listener, end to end: the exposition is
//! parsed with a Prometheus text parser and its counts equal the traffic sent, across two
//! shards (each shard counts its own requests; the scrape sums them); and the operations
//! metrics (429 THROTTLED / QUOTA_EXCEEDED, authorizer cache hits and misses, idle backend
//! connections, connect errors and timeouts) against traffic that causes a known number of
//! each.

use crate::client::{get, req, Client};
use crate::harness::{free_port, Gateway, Server};
use crate::lambda_server::{FunctionServer, Reply};
use crate::ops_support::{admin_get, parse_prometheus, slow_backend, Exposition};
use crate::origin::Origin;
use std::net::SocketAddr;
use std::time::Duration;

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

    // Closed connections leave the gauge once their shard saw the close, and a request is
    // counted by its log phase, just after its response was written: scrape until both
    // (24 requests were sent; more would fail the exact checks below).
    let started = std::time::Instant::now();
    let m = loop {
        let (status, body) = admin_get(admin, "/metrics");
        assert_eq!(status, 200);
        let m = parse_prometheus(&body);
        if (m.sum("tollgate_open_connections") <= 1.0 && m.sum("tollgate_count_total") >= 24.0)
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

const KEY: &str = "metrics0key00000000000001";

/// An allow-everything TOKEN authorizer's answer.
fn allow_all(event: &serde_json::Value) -> Reply {
    let token = event["authorizationToken"].as_str().unwrap_or("");
    Reply::value(serde_json::json!({
        "principalId": token,
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"}
        ]},
    }))
}

#[test]
fn operations_metrics_count_what_happened() {
    let origin = Origin::start();
    let fs = FunctionServer::start(|_, event| allow_all(event));
    let slow = slow_backend(Duration::from_millis(1500));
    let dead: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let admin_port = free_port();
    let apis = format!(
        r#"[[api_keys]]
name = "k"
value = "{KEY}"

[[usage_plans]]
name = "small"
quota = {{ limit = 3, period = "DAY" }}
keys = ["k"]
  [[usage_plans.stages]]
  api = "shop"
  stage = "prod"

[[apis]]
name = "shop"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  route_throttles = {{ "GET /limited" = {{ rate = 0.01, burst = 2 }} }}
  [[apis.authorizers]]
  name = "tokens"
  type = "token"
  uri = "{auth}"
  identity_sources = ["method.request.header.Authorization"]
  ttl_seconds = 300
  [[apis.routes]]
  key = "GET /keyed"
  api_key_required = true
  integration = {{ type = "mock", status = 200, body = "keyed" }}
  [[apis.routes]]
  key = "GET /limited"
  integration = {{ type = "mock", status = 200, body = "limited" }}
  [[apis.routes]]
  key = "GET /authed"
  authorizer = "tokens"
  integration = {{ type = "mock", status = 200, body = "authed" }}
  [[apis.routes]]
  key = "ANY /o/{{proxy+}}"
  integration = {{ type = "http_proxy", uri = "http://{origin}/{{proxy}}", timeout_ms = 5000 }}
  [[apis.routes]]
  key = "GET /dead"
  integration = {{ type = "http_proxy", uri = "http://{dead}/x", timeout_ms = 2000 }}
  [[apis.routes]]
  key = "GET /slow"
  integration = {{ type = "http_proxy", uri = "http://{slow}/x", timeout_ms = 300 }}

[admin]
port = {admin_port}
"#,
        auth = fs.uri("auth"),
        origin = origin.addr,
    );
    // One shard: the throttle bucket, the authorizer cache and the pool are that shard's.
    let gw = Gateway::start(&Server::default().with("shards", "1"), &apis);
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    let mut c = Client::connect(gw.addr);
    let status = |c: &mut Client, target: &str, headers: &[(&str, &str)]| {
        c.request(&req("GET", target, headers, b"")).status
    };

    // Quota of 3: 3 pass, 2 QUOTA_EXCEEDED.
    let quota: Vec<u16> = (0..5)
        .map(|_| status(&mut c, "/prod/keyed", &[("x-api-key", KEY)]))
        .collect();
    assert_eq!(quota, [200, 200, 200, 429, 429]);
    // Burst 2, 1 token per 100 s: 2 pass, 3 THROTTLED.
    let limited: Vec<u16> = (0..5)
        .map(|_| status(&mut c, "/prod/limited", &[]))
        .collect();
    assert_eq!(limited, [200, 200, 429, 429, 429]);
    // Authorizer cache: token a (miss, hit, hit), token b (miss, hit): 3 hits, 2 misses, 2
    // calls. A request without the header is refused before any lookup.
    for token in ["a", "a", "a", "b", "b"] {
        let auth = format!("Bearer {token}");
        assert_eq!(
            status(&mut c, "/prod/authed", &[("authorization", &auth)]),
            200
        );
    }
    assert_eq!(status(&mut c, "/prod/authed", &[]), 401);
    assert_eq!(fs.count("auth"), 2, "one call per token");
    // Backend: 4 exchanges on one client connection leave one pooled connection; one refused
    // connect; one response over the 300 ms timeout.
    for _ in 0..4 {
        assert_eq!(status(&mut c, "/prod/o/echo", &[]), 200);
    }
    assert_eq!(status(&mut c, "/prod/dead", &[]), 504, "refused connect");
    let mut c2 = Client::connect(gw.addr);
    assert_eq!(status(&mut c2, "/prod/slow", &[]), 504);

    let (code, body) = admin_get(admin, "/metrics");
    assert_eq!(code, 200);
    let m = parse_prometheus(&body);
    assert_eq!(m.types["tollgate_throttled_total"], "counter");
    assert_eq!(m.types["tollgate_quota_exceeded_total"], "counter");
    assert_eq!(
        m.get("tollgate_quota_exceeded_total", &labels("GET /keyed")),
        Some(2.0)
    );
    assert_eq!(
        m.get("tollgate_throttled_total", &labels("GET /keyed")),
        Some(0.0)
    );
    assert_eq!(
        m.get("tollgate_throttled_total", &labels("GET /limited")),
        Some(3.0)
    );
    assert_eq!(
        m.get("tollgate_quota_exceeded_total", &labels("GET /limited")),
        Some(0.0)
    );
    assert_eq!(m.sum("tollgate_throttled_total"), 3.0);
    assert_eq!(m.sum("tollgate_quota_exceeded_total"), 2.0);
    // Both 429 kinds are also 4XXError.
    assert_eq!(
        m.get("tollgate_4xxerror_total", &labels("GET /limited")),
        Some(3.0)
    );

    let auth = [("api", "shop"), ("authorizer", "tokens")];
    assert_eq!(m.types["tollgate_authorizer_cache_hits_total"], "counter");
    assert_eq!(
        m.get("tollgate_authorizer_cache_hits_total", &auth),
        Some(3.0)
    );
    assert_eq!(
        m.get("tollgate_authorizer_cache_misses_total", &auth),
        Some(2.0)
    );

    assert_eq!(m.types["tollgate_upstream_idle_connections"], "gauge");
    let origin_addr = origin.addr.to_string();
    let pool = |addr: &str| {
        m.samples
            .iter()
            .find(|s| {
                s.name == "tollgate_upstream_idle_connections"
                    && s.labels.get("upstream").map(String::as_str) == Some(addr)
            })
            .map(|s| {
                (
                    s.labels["shard"].clone(),
                    s.labels["scheme"].clone(),
                    s.value,
                )
            })
    };
    assert_eq!(
        pool(&origin_addr),
        Some(("0".to_string(), "http".to_string(), 1.0)),
        "one kept-alive origin connection pooled:\n{body}"
    );
    assert_eq!(pool(&dead.to_string()).map(|p| p.2), Some(0.0));
    assert_eq!(m.sum("tollgate_upstream_connect_errors_total"), 1.0);
    assert_eq!(m.sum("tollgate_upstream_timeouts_total"), 1.0);
    assert_eq!(m.sum("tollgate_open_connections"), 2.0, "c and c2");
    drop(c2);
}
