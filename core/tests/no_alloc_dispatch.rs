//! Proves that dispatch makes no heap allocation, repeated slashes included: `Gateway::resolve`
//! (custom domain mapping, `/{stage}` prefix, `$default` stage, route trie with `{param}` and
//! `{proxy+}`) on paths with empty segments. The shared counting global allocator
//! (`support/counting_alloc.rs`) counts every allocation made by the thread under test.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{allocations_during, assert_counter_sees_allocations};
use tollgate_core::config::load_str;
use tollgate_core::gateway::Resolved;
use tollgate_core::method::Method;

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
    assert_counter_sees_allocations();

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
    let ((), n) = allocations_during(|| {
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
