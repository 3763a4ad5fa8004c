//! Proves that a traffic-control decision makes no heap allocation: key lookup (ahash map on
//! the borrowed header value), the five-level throttle chain, the quota lease (and its refill
//! from the shared store) and the rejections. The shared counting global allocator
//! (`support/counting_alloc.rs`) counts every allocation made by the thread under test.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{allocations_during, assert_counter_sees_allocations};

use tollgate_core::config::load_str;
use tollgate_core::gateway::responses::ResponseType;
use tollgate_core::gateway::{Gateway, Resolved};
use tollgate_core::method::Method;
use tollgate_core::traffic::quota::AtomicQuotaStore;
use tollgate_core::traffic::{Decision, Now, RouteLimits, ShardTraffic};

const KEY: &str = "alice0123456789abcdefXYZ";

const CONFIG: &str = r#"
[[listeners]]
address = "127.0.0.1"
port = 8080

[[api_keys]]
name = "alice"
value = "alice0123456789abcdefXYZ"

[[usage_plans]]
name = "gold"
throttle = { rate = 1000.0, burst = 200 }
quota = { limit = 1500, period = "MONTH", offset = 3 }
keys = ["alice"]
  [[usage_plans.stages]]
  api = "shop"
  stage = "prod"
  route_throttles = { "GET /pets/{petId}" = { rate = 1000.0, burst = 100 } }

[[apis]]
name = "shop"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  throttle = { rate = 2000.0, burst = 300 }
  route_throttles = { "GET /pets/{petId}" = { rate = 2000.0, burst = 300 } }
  [[apis.routes]]
  key = "GET /pets/{petId}"
  api_key_required = true
  integration = { type = "mock" }
"#;

fn route(g: &Gateway) -> RouteLimits {
    match g.resolve(None, Method::Get, "/prod/pets/1") {
        Resolved::Route(m) => m.route.limits[0],
        Resolved::NoRoute(miss) => panic!("{miss:?}"),
    }
}

#[test]
fn a_decision_does_not_allocate() {
    assert_counter_sees_allocations();

    let g = load_str("t.toml", CONFIG).unwrap_or_else(|e| panic!("{e:?}"));
    let route = route(&g);
    let mut shard = ShardTraffic::new(&g.traffic, 0, 2, 0);
    let store = AtomicQuotaStore::new(g.traffic.memberships.len());
    let keys: [Option<&[u8]>; 3] = [
        Some(KEY.as_bytes()),
        Some(b"wrong0123456789abcdefXYZ"),
        None,
    ];
    let mut outcomes = [0u32; 4];
    let ((), n) = allocations_during(|| {
        for i in 0..4_000u64 {
            let now = Now {
                // 4,000 requests over 4 s: throttles refill and refuse, the quota runs out.
                mono_ns: i * 1_000_000,
                unix_secs: 1_764_500_000 + (i / 2_000) as i64,
            };
            let key = keys[match i % 5 {
                0..=2 => 0,
                3 => 1,
                _ => 2,
            }];
            let d = g
                .traffic
                .decide(&route, std::hint::black_box(key), &mut shard, &store, now);
            let slot = match d {
                Decision::Continue { .. } => 0,
                Decision::Reject(ResponseType::Throttled) => 1,
                Decision::Reject(ResponseType::QuotaExceeded) => 2,
                Decision::Reject(_) => 3,
            };
            outcomes[slot] += 1;
        }
    });
    // Every kind of outcome happened (so every path was measured).
    assert!(outcomes.iter().all(|c| *c > 0), "{outcomes:?}");
    // The quota's `offset = 3` is charged in this first (initial) period.
    assert_eq!(outcomes[0], 1_500 - 3, "{outcomes:?}");
    assert_eq!(n, 0, "Traffic::decide allocated");
}
