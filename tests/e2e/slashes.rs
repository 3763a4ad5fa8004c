//! Repeated slashes, as API Gateway treats them: empty path segments are ignored in the stage
//! prefix, in a custom domain's base path and in the route (`/prod//pets` and `//prod/pets`
//! reach `GET /pets` of stage `prod`). What the origin receives: `{param}` and `{proxy}` values
//! are what matched; an HTTP API URI without a path sends the path after the stage as received.

use crate::client::{get, Client, Response};
use crate::harness::{mock_route, Gateway, Server};
use crate::origin::{Echo, Origin};
use std::net::SocketAddr;

/// `GET target` with `Host: host`.
fn get_host(c: &mut Client, host: &str, target: &str) -> Response {
    c.request(format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
}

/// The request target the origin saw, from its echo body (`r` must be a proxied 200).
fn origin_target(r: &Response, what: &str) -> String {
    assert_eq!(r.status, 200, "{what}: {r:?}");
    Echo::parse(&r.body).target
}

/// Asserts a mock answer with `body`.
fn assert_mock(r: &Response, body: &str, what: &str) {
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, body),
        "{what}: {r:?}"
    );
}

/// REST API `svc`, stage `prod`: a mock `GET /pets`, `GET /pets/{petId}` and
/// `ANY /files/{proxy+}` proxied to `origin` with path templates.
fn rest_api(origin: SocketAddr) -> String {
    format!(
        r#"[[apis]]
name = "svc"
protocol = "rest"
stages = [{{ name = "prod" }}]
{pets}  [[apis.routes]]
  key = "GET /pets/{{petId}}"
  integration = {{ type = "http_proxy", uri = "http://{origin}/v2/pets/{{petId}}" }}
  [[apis.routes]]
  key = "ANY /files/{{proxy+}}"
  integration = {{ type = "http_proxy", uri = "http://{origin}/store/{{proxy}}" }}
"#,
        pets = mock_route("GET /pets", 200, "pets"),
    )
}

#[test]
fn rest_stage_prefix_and_routes_ignore_empty_segments() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &rest_api(origin.addr));
    let mut c = Client::connect(gw.addr);

    for target in [
        "/prod/pets",
        "/prod//pets",
        "//prod/pets",
        "//prod//pets//",
        "///prod///pets",
        "/prod/pets/",
    ] {
        assert_mock(&c.request(&get(target)), "pets", target);
    }
    // Parameter values are what matched.
    for target in [
        "/prod/pets/7?x=1",
        "/prod//pets//7?x=1",
        "//prod/pets/7/?x=1",
    ] {
        let r = c.request(&get(target));
        assert_eq!(origin_target(&r, target), "/v2/pets/7?x=1", "{target}");
    }
    // A greedy value runs from its first non-empty segment to its last one, as received.
    for (target, sent) in [
        ("/prod/files/a/b", "/store/a/b"),
        ("//prod//files//a/b", "/store/a/b"),
        ("/prod/files/a//b/", "/store/a//b"),
    ] {
        let r = c.request(&get(target));
        assert_eq!(origin_target(&r, target), sent, "{target}");
    }
    // What did not match before still does not: an unknown route or stage is 403.
    let missing = r#"{"message":"Missing Authentication Token"}"#;
    for target in ["/prod//nope", "//nostage//pets", "//", "/prod/files//"] {
        c.request(&get(target)).assert_gateway_error(403, missing);
    }
    // The keep-alive connection served all of it.
    assert_mock(&c.request(&get("//prod//pets")), "pets", "last");
}

/// HTTP API `web` (stages `$default` and `v2`: a mock `GET /hello`, `$default` proxied to
/// `origin` without a path) and REST API `shop` (stage `prod`, `ANY /{proxy+}` →
/// `origin/{proxy}`), with custom domain `api.example.com`: `orders/v1` → shop prod,
/// `(none)` → web v2.
fn mixed_apis(origin: SocketAddr) -> String {
    format!(
        r#"[[apis]]
name = "web"
protocol = "http"
stages = [{{ name = "$default" }}, {{ name = "v2" }}]
{hello}  [[apis.routes]]
  key = "$default"
  integration = {{ type = "http_proxy", uri = "http://{origin}" }}

[[apis]]
name = "shop"
protocol = "rest"
stages = [{{ name = "prod" }}]
  [[apis.routes]]
  key = "ANY /{{proxy+}}"
  integration = {{ type = "http_proxy", uri = "http://{origin}/{{proxy}}" }}

[[domains]]
name = "api.example.com"
mappings = [
  {{ path = "orders/v1", api = "shop", stage = "prod" }},
  {{ path = "", api = "web", stage = "v2" }},
]
"#,
        hello = mock_route("GET /hello", 200, "hello"),
    )
}

#[test]
fn http_api_default_stage_and_custom_domain_ignore_empty_segments() {
    let origin = Origin::start();
    let gw = Gateway::start(&Server::default(), &mixed_apis(origin.addr));
    let mut c = Client::connect(gw.addr);

    // Explicit stage and `$default` stage, mock route.
    for target in ["/hello", "//hello", "/hello//", "/v2//hello", "//v2/hello"] {
        assert_mock(&c.request(&get(target)), "hello", target);
    }
    // `$default` route with a URI without a path: the path after the stage, as received.
    for (target, sent) in [
        ("//x//y/?q=1", "//x//y/?q=1"),
        ("/x/y", "/x/y"),
        ("/v2//x//y", "//x//y"),
        ("//v2/x", "/x"),
        ("/v2", "/"),
    ] {
        let r = c.request(&get(target));
        assert_eq!(origin_target(&r, target), sent, "{target}");
    }
    // The REST API's stage prefix, through the same host-less dispatch.
    let r = c.request(&get("//prod//a/b"));
    assert_eq!(origin_target(&r, "//prod//a/b"), "/a/b");

    // Custom domain: the base path mapping ignores empty segments too.
    let host = "api.example.com";
    for (target, sent) in [
        ("/orders/v1/items/1", "/items/1"),
        ("//orders//v1//items/1", "/items/1"),
        ("/orders/v1/items//1", "/items//1"),
        ("//other//path", "//other//path"),
    ] {
        let r = get_host(&mut c, host, target);
        assert_eq!(origin_target(&r, target), sent, "{host} {target}");
    }
    assert_mock(
        &get_host(&mut c, host, "//hello"),
        "hello",
        "domain //hello",
    );
    // A mapping matches whole segments only: `ordersx` goes to `(none)`, unstripped.
    let r = get_host(&mut c, host, "//ordersx/v1");
    assert_eq!(origin_target(&r, "//ordersx/v1"), "//ordersx/v1");
    // The mapping fixes the stage: `/orders/v1//` is the shop API's root, which has no route.
    get_host(&mut c, host, "/orders//v1//")
        .assert_gateway_error(403, r#"{"message":"Missing Authentication Token"}"#);

    let seen = origin.seen();
    assert!(
        seen.iter().any(|s| s.target == "//x//y/?q=1"),
        "the origin's own log: {:?}",
        seen.iter().map(|s| &s.target).collect::<Vec<_>>()
    );
}
