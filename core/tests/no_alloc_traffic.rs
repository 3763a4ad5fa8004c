//! Proves that a traffic-control decision makes no heap allocation: key lookup (ahash map on
//! the borrowed header value), the five-level throttle chain, the quota lease (and its refill
//! from the shared store) and the rejections. A counting global allocator (this test binary
//! only) counts every allocation made by the thread under test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Only allocations on a thread that is measuring count.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    if MEASURING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns how many allocations it made on this thread (one test in this binary,
/// so the global count is only this thread's).
fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    MEASURING.with(|m| m.set(true));
    f();
    MEASURING.with(|m| m.set(false));
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

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
    let control = allocations_in(|| {
        let v: Vec<u8> = Vec::with_capacity(std::hint::black_box(64));
        std::hint::black_box(v);
    });
    assert!(
        control >= 1,
        "the counting allocator must see a Vec allocation"
    );

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
    let n = allocations_in(|| {
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
    assert_eq!(outcomes[0], 1_500, "{outcomes:?}");
    assert_eq!(n, 0, "Traffic::decide allocated");
}
