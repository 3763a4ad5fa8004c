//! Proves that dispatch makes no heap allocation, repeated slashes included: `Gateway::resolve`
//! (custom domain mapping, `/{stage}` prefix, `$default` stage, route trie with `{param}` and
//! `{proxy+}`) on paths with empty segments. A counting global allocator (this test binary
//! only) counts every allocation made by the thread under test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use tollgate_core::config::load_str;
use tollgate_core::gateway::Resolved;
use tollgate_core::method::Method;

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

const CONFIG: &str = r#"
[[listeners]]
address = "127.0.0.1"
port = 8080

[[apis]]
name = "shop"
protocol = "rest"
stages = [{ name = "prod" }]
  [[apis.routes]]
  key = "GET /pets/{petId}"
  integration = { type = "mock" }
  [[apis.routes]]
  key = "ANY /files/{proxy+}"
  integration = { type = "mock" }

[[apis]]
name = "web"
protocol = "http"
stages = [{ name = "$default" }]
  [[apis.routes]]
  key = "GET /hello"
  integration = { type = "mock" }
  [[apis.routes]]
  key = "$default"
  integration = { type = "mock" }

[[domains]]
name = "api.example.com"
mappings = [{ path = "orders/v1", api = "shop", stage = "prod" }, { api = "web", stage = "$default" }]
"#;

#[test]
fn resolve_with_empty_segments_does_not_allocate() {
    // Control: the counter sees an allocation.
    let control = allocations_in(|| {
        let v: Vec<u8> = Vec::with_capacity(std::hint::black_box(64));
        std::hint::black_box(v);
    });
    assert!(
        control >= 1,
        "the counting allocator must see a Vec allocation"
    );

    let g = match load_str("t.toml", CONFIG) {
        Ok(g) => g,
        Err(e) => panic!("{e:?}"),
    };
    let requests: [(Option<&[u8]>, &str, &str); 7] = [
        (None, "//prod//pets//7/", "GET /pets/{petId}"),
        (None, "/prod/files//a//b/", "ANY /files/{proxy+}"),
        (None, "//hello", "GET /hello"),
        (None, "//x//y", "$default"),
        (
            Some(b"API.example.com:443"),
            "//orders//v1//pets/1",
            "GET /pets/{petId}",
        ),
        (Some(b"api.example.com"), "//ordersx", "$default"),
        (Some(b"api.example.com"), "/orders/v1//nope", ""),
    ];
    let mut keys: Vec<&str> = Vec::with_capacity(requests.len());
    let n = allocations_in(|| {
        for (host, path, _) in &requests {
            let key = match g.resolve(*host, Method::Get, std::hint::black_box(path)) {
                Resolved::Route(m) => &*m.route.key,
                Resolved::NoRoute(_) => "",
            };
            keys.push(key);
        }
    });
    let want: Vec<&str> = requests.iter().map(|r| r.2).collect();
    assert_eq!(keys, want);
    assert_eq!(n, 0, "Gateway::resolve allocated");
}
