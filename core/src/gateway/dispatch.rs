//! Per-request dispatch: the compiled `Gateway`, its private dispatch tables (custom domains,
//! `hosts` groups, stage names) and `Gateway::resolve`: host → custom domain mapping or
//! `/{stage}` prefix or `$default` stage → route (router) → the route's target for that stage.
//! Allocation-free; `config::dispatch` fills the tables in.

use super::model::{Api, Protocol, Route, Stage, Target, Throttle, Upstream};
use super::settings::Settings;
use crate::method::Method;
use crate::router::Params;
use std::collections::HashMap;
use std::net::SocketAddr;

/// The outcome of dispatching a request.
#[derive(Debug)]
pub enum Resolved<'g, 'p> {
    Route(RouteMatch<'g, 'p>),
    /// No API/stage/route: the error depends on the protocol of the API (or APIs) that could
    /// have served it: REST → 403 Missing Authentication Token, HTTP → 404 Not Found.
    NoRoute(Miss<'g>),
}

/// A request that reached no route: how far dispatch got.
#[derive(Clone, Copy, Debug)]
pub struct Miss<'g> {
    pub protocol: Protocol,
    /// The API and stage, when the stage was found but no route matched (their gateway
    /// responses and stage variables answer the request).
    pub api: Option<&'g Api>,
    pub stage: Option<&'g Stage>,
}

impl<'g> Miss<'g> {
    fn unmatched<'p>(protocol: Protocol) -> Resolved<'g, 'p> {
        Resolved::NoRoute(Miss {
            protocol,
            api: None,
            stage: None,
        })
    }
}

#[derive(Debug)]
pub struct RouteMatch<'g, 'p> {
    pub api: &'g Api,
    pub stage: &'g Stage,
    pub route: &'g Route,
    pub target: &'g Target,
    pub params: Params<'p>,
    /// The request path with the stage / base-path prefix removed, as received (always starts
    /// with `/`; repeated `/` after the prefix are kept: `/prod//pets` → `//pets`).
    pub path: &'p str,
}

#[derive(Clone, Debug)]
pub struct Gateway {
    pub settings: Settings,
    pub listeners: Vec<SocketAddr>,
    pub upstreams: Vec<Upstream>,
    pub apis: Vec<Api>,
    /// Domains, host → APIs, stage names (filled in by `config::compile`).
    pub(crate) dispatch: Dispatch,
    /// API keys, usage plans and the flat table of limits `Route::limits` index into.
    pub traffic: crate::traffic::Traffic,
    /// TLS listeners and custom-domain certificates (`config::tls`).
    pub tls: crate::tls::Tls,
}

/// `(api index, stage index)` into `Gateway::apis` / `Api::stages`.
pub(crate) type StageRef = (u32, u32);

/// The private dispatch tables: custom domains, `hosts` groups and the stage names each group
/// answers. Host names are stored lowercase, without a trailing dot.
#[derive(Clone, Debug, Default)]
pub(crate) struct Dispatch {
    /// Exact custom domain name → index into `domains`.
    pub(crate) exact_domains: HashMap<Box<[u8]>, u32, ahash::RandomState>,
    /// Wildcard `*.example.com` stored as `example.com` → index into `domains`.
    pub(crate) wildcard_domains: HashMap<Box<[u8]>, u32, ahash::RandomState>,
    pub(crate) domains: Vec<Domain>,
    /// A name from some API's `hosts` → index into `groups`.
    pub(crate) hosts: HashMap<Box<[u8]>, u32, ahash::RandomState>,
    /// The APIs reached without a custom domain; entry 0 is the host-less APIs.
    pub(crate) groups: Vec<Group>,
    /// `throttle` per stage: `[api][stage]`.
    pub(crate) throttles: Vec<Vec<Option<Throttle>>>,
}

/// A custom domain's API mappings.
#[derive(Clone, Debug)]
pub(crate) struct Domain {
    /// Non-empty mapping paths (no leading or trailing `/`), longest first.
    pub(crate) mappings: Vec<(Box<str>, StageRef)>,
    /// The `(none)` mapping (path `""`).
    pub(crate) none: Option<StageRef>,
    /// What an unmapped path gets: `Rest` if every mapped API is a REST API.
    pub(crate) unmapped: Protocol,
}

/// The APIs that answer one set of hosts (or no particular host).
#[derive(Clone, Debug)]
pub(crate) struct Group {
    /// Stage name (first path segment) → stage.
    pub(crate) stages: HashMap<Box<str>, StageRef, ahash::RandomState>,
    /// The HTTP API `$default` stage that takes what no stage name matched.
    pub(crate) default_stage: Option<StageRef>,
    /// What a request no API took gets: `Rest` if every API of the group is a REST API.
    pub(crate) unmatched: Protocol,
}

/// Longest host name looked up (DNS allows 253 characters).
const MAX_HOST: usize = 255;

/// The host part of a Host header, lowercased into `buf`: port and a trailing dot removed,
/// surrounding whitespace trimmed. `None` if it is too long to be a host name.
fn normalize_host<'b>(raw: &[u8], buf: &'b mut [u8; MAX_HOST]) -> Option<&'b [u8]> {
    let raw = raw.trim_ascii();
    let host = if raw.starts_with(b"[") {
        match memchr::memchr(b']', raw) {
            Some(i) => &raw[..=i],
            None => raw,
        }
    } else {
        match memchr::memchr(b':', raw) {
            Some(i) => &raw[..i],
            None => raw,
        }
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    let out = buf.get_mut(..host.len())?;
    for (o, b) in out.iter_mut().zip(host) {
        *o = b.to_ascii_lowercase();
    }
    Some(out)
}

/// The first non-empty segment of `path` and what follows it, as received (`/` if nothing);
/// `None` without a leading `/`. Empty segments before it are skipped, as API Gateway ignores
/// them: `//prod/pets` → `("prod", "/pets")`, `/prod//pets` → `("prod", "//pets")`.
fn split_first_segment(path: &str) -> Option<(&str, &str)> {
    let after = path.strip_prefix('/')?.trim_start_matches('/');
    Some(match memchr::memchr(b'/', after.as_bytes()) {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    })
}

/// `path` after the mapping path `prefix` (segments separated by single `/`), matched whole
/// segment by whole segment with the empty segments of `path` skipped; `/` if nothing follows.
/// `None` if `prefix` is not a segment-aligned prefix of `path`.
fn strip_mapping<'p>(prefix: &str, path: &'p str) -> Option<&'p str> {
    let mut rest = path;
    for want in prefix.split('/') {
        let r = rest.trim_start_matches('/');
        let (seg, tail) = match memchr::memchr(b'/', r.as_bytes()) {
            Some(i) => (&r[..i], &r[i..]),
            None => (r, ""),
        };
        if seg != want {
            return None;
        }
        rest = tail;
    }
    Some(if rest.is_empty() { "/" } else { rest })
}

impl Gateway {
    /// Dispatches a request. `host` is the Host header value as received (may carry `:port`,
    /// any case); `path` is the request path without the query string. Allocation-free.
    pub fn resolve<'g, 'p>(
        &'g self,
        host: Option<&[u8]>,
        method: Method,
        path: &'p str,
    ) -> Resolved<'g, 'p> {
        let d = &self.dispatch;
        let mut buf = [0u8; MAX_HOST];
        // Without domains or `hosts`, the Host header does not matter.
        let host = host
            .filter(|_| !d.domains.is_empty() || !d.hosts.is_empty())
            .and_then(|h| normalize_host(h, &mut buf));

        if let Some(domain) = host.and_then(|h| self.domain(h)) {
            return match map_domain(domain, path) {
                Some((stage, rest)) => self.route(stage, method, rest),
                None => Miss::unmatched(domain.unmapped),
            };
        }

        let group = host
            .and_then(|h| d.hosts.get(h))
            .and_then(|&g| d.groups.get(g as usize))
            .or_else(|| d.groups.first());
        let Some(group) = group else {
            return Miss::unmatched(Protocol::Http);
        };
        let Some((first, rest)) = split_first_segment(path) else {
            return Miss::unmatched(group.unmatched);
        };
        if let Some(&stage) = group.stages.get(first) {
            return self.route(stage, method, rest);
        }
        match group.default_stage {
            Some(stage) => self.route(stage, method, path),
            None => Miss::unmatched(group.unmatched),
        }
    }

    /// The custom domain serving `host` (lowercase, no port): exact name, else the wildcard
    /// with the longest suffix.
    fn domain(&self, host: &[u8]) -> Option<&Domain> {
        let d = &self.dispatch;
        if d.domains.is_empty() {
            return None;
        }
        let index = d.exact_domains.get(host).copied().or_else(|| {
            let mut rest = host;
            while let Some(dot) = memchr::memchr(b'.', rest) {
                rest = &rest[dot + 1..];
                if let Some(&i) = d.wildcard_domains.get(rest) {
                    return Some(i);
                }
            }
            None
        })?;
        d.domains.get(index as usize)
    }

    /// Routes `path` (stage prefix already removed) within a known API and stage.
    fn route<'g, 'p>(
        &'g self,
        (api, stage): StageRef,
        method: Method,
        path: &'p str,
    ) -> Resolved<'g, 'p> {
        let Some(api) = self.apis.get(api as usize) else {
            return Miss::unmatched(Protocol::Http);
        };
        let stage_ref = api.stages.get(stage as usize);
        let miss = Resolved::NoRoute(Miss {
            protocol: api.protocol,
            api: Some(api),
            stage: stage_ref,
        });
        let (Some(stage_ref), Some(m)) = (stage_ref, api.router.find(method, path)) else {
            return miss;
        };
        let Some(route) = api.routes.get(m.value as usize) else {
            return miss;
        };
        let Some(target) = route.targets.get(stage as usize) else {
            return miss;
        };
        Resolved::Route(RouteMatch {
            api,
            stage: stage_ref,
            route,
            target,
            params: m.params,
            path,
        })
    }

    /// The `throttle` settings of stage `stage` of API `api` (indexes into `apis` and
    /// `Api::stages`), if the config set any.
    pub fn throttle(&self, api: usize, stage: usize) -> Option<Throttle> {
        self.dispatch
            .throttles
            .get(api)?
            .get(stage)
            .copied()
            .flatten()
    }

    /// The `(api, stage)` indexes of a match (into `apis` and `Api::stages`), e.g. to key
    /// per-stage state.
    pub fn match_indexes(&self, m: &RouteMatch<'_, '_>) -> Option<(usize, usize)> {
        let api = self.apis.iter().position(|a| std::ptr::eq(a, m.api))?;
        let stage = m.api.stages.iter().position(|s| std::ptr::eq(s, m.stage))?;
        Some((api, stage))
    }
}

/// Picks the mapping for `path` on a custom domain: the longest mapping path that is a
/// segment-aligned prefix (empty segments of `path` ignored), else `(none)`. Returns the stage
/// and the path after the mapping, as received.
fn map_domain<'p>(domain: &Domain, path: &'p str) -> Option<(StageRef, &'p str)> {
    if path.starts_with('/') {
        for (prefix, stage) in &domain.mappings {
            if let Some(rest) = strip_mapping(prefix, path) {
                return Some((*stage, rest));
            }
        }
    }
    domain.none.map(|stage| (stage, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    // Everything below loads configs, so it needs the router.

    fn gateway(text: &str) -> Gateway {
        match load_str("t.toml", text) {
            Ok(g) => g,
            Err(errors) => {
                let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                panic!("{}\n--- config:\n{text}", shown.join("\n"))
            }
        }
    }

    const LISTENER: &str = "[[listeners]]\naddress = \"127.0.0.1\"\nport = 8080\n";

    /// REST `shop` (stages prod, beta), HTTP `web` ($default and v2 stages), HTTP `admin`
    /// (hosts admin.internal), a domain with multi-level and (none) mappings, a wildcard domain
    /// and a more specific exact name under it.
    fn dispatch_config() -> Gateway {
        gateway(&format!(
            r#"{LISTENER}
[[apis]]
name = "shop"
protocol = "rest"
stages = [
  {{ name = "prod", variables = {{ backend = "127.0.0.1:9000" }} }},
  {{ name = "beta", variables = {{ backend = "127.0.0.1:9001" }} }},
]
  [[apis.routes]]
  key = "GET /items/{{id}}"
  integration = {{ type = "http_proxy", uri = "http://${{stageVariables.backend}}/items/{{id}}" }}
  [[apis.routes]]
  key = "GET /"
  integration = {{ type = "mock", body = "shop root" }}

[[apis]]
name = "web"
protocol = "http"
stages = [{{ name = "$default" }}, {{ name = "v2" }}]
  [[apis.routes]]
  key = "GET /hello"
  integration = {{ type = "mock", body = "hello" }}
  [[apis.routes]]
  key = "$default"
  integration = {{ type = "http_proxy", uri = "http://127.0.0.1:9300" }}

[[apis]]
name = "admin"
protocol = "http"
hosts = ["admin.internal"]
stages = [{{ name = "ops" }}]
  [[apis.routes]]
  key = "GET /metrics"
  integration = {{ type = "mock", body = "metrics" }}

[[domains]]
name = "api.example.com"
mappings = [
  {{ path = "orders", api = "shop", stage = "beta" }},
  {{ path = "orders/v1", api = "shop", stage = "prod" }},
  {{ path = "", api = "web", stage = "v2" }},
]

[[domains]]
name = "*.tenants.example.com"
mappings = [{{ api = "shop", stage = "prod" }}]

[[domains]]
name = "vip.tenants.example.com"
mappings = [{{ path = "shop", api = "shop", stage = "beta" }}]
"#
        ))
    }

    /// `(api, stage, route key, path after the prefix, params)` of a match, or the protocol of
    /// a miss.
    fn outcome(
        g: &Gateway,
        host: Option<&str>,
        method: Method,
        path: &str,
    ) -> Result<(String, String, String, String, Vec<String>), Protocol> {
        match g.resolve(host.map(str::as_bytes), method, path) {
            Resolved::NoRoute(p) => Err(p.protocol),
            Resolved::Route(m) => {
                // The target is the route's target for the matched stage.
                let (api, stage) = g.match_indexes(&m).unwrap_or((usize::MAX, usize::MAX));
                assert!(std::ptr::eq(&g.apis[api], m.api));
                assert!(std::ptr::eq(m.target, &m.route.targets[stage]));
                Ok((
                    m.api.name.to_string(),
                    m.stage.name.to_string(),
                    m.route.key.to_string(),
                    m.path.to_string(),
                    m.params.iter().map(|p| p.to_string()).collect(),
                ))
            }
        }
    }

    fn hit(
        api: &str,
        stage: &str,
        key: &str,
        path: &str,
        params: &[&str],
    ) -> Result<(String, String, String, String, Vec<String>), Protocol> {
        Ok((
            api.to_string(),
            stage.to_string(),
            key.to_string(),
            path.to_string(),
            params.iter().map(|p| p.to_string()).collect(),
        ))
    }

    #[test]
    fn resolve_rest_stage_prefix() {
        let g = dispatch_config();
        let o = |path| outcome(&g, Some("127.0.0.1:8080"), Method::Get, path);
        assert_eq!(
            o("/prod/items/1"),
            hit("shop", "prod", "GET /items/{id}", "/items/1", &["1"])
        );
        assert_eq!(
            o("/beta/items/2"),
            hit("shop", "beta", "GET /items/{id}", "/items/2", &["2"])
        );
        assert_eq!(o("/prod"), hit("shop", "prod", "GET /", "/", &[]));
        assert_eq!(o("/prod/"), hit("shop", "prod", "GET /", "/", &[]));
        // The API was chosen by its stage: its protocol decides the miss.
        assert_eq!(o("/prod/nope"), Err(Protocol::Rest));
        assert_eq!(
            outcome(&g, None, Method::Post, "/prod/items/1"),
            Err(Protocol::Rest)
        );
        // Per-stage targets: different backends.
        let upstream = |path| match g.resolve(None, Method::Get, path) {
            Resolved::Route(RouteMatch {
                target: Target::HttpProxy(p),
                ..
            }) => g.upstreams[p.upstream as usize].addr.port(),
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(
            (upstream("/prod/items/1"), upstream("/beta/items/1")),
            (9000, 9001)
        );
    }

    #[test]
    fn resolve_http_default_and_explicit_stage() {
        let g = dispatch_config();
        let o = |path| outcome(&g, None, Method::Get, path);
        // No stage segment matched: the $default stage, nothing stripped.
        assert_eq!(
            o("/hello"),
            hit("web", "$default", "GET /hello", "/hello", &[])
        );
        assert_eq!(o("/"), hit("web", "$default", "$default", "/", &[]));
        assert_eq!(
            o("/store/checkout"),
            hit("web", "$default", "$default", "/store/checkout", &[])
        );
        // `/ops` is a stage of `admin` only, which answers admin.internal only.
        assert_eq!(
            o("/ops/metrics"),
            hit("web", "$default", "$default", "/ops/metrics", &[])
        );
        // An explicit stage of the HTTP API.
        assert_eq!(
            o("/v2/hello"),
            hit("web", "v2", "GET /hello", "/hello", &[])
        );
        assert_eq!(o("/v2"), hit("web", "v2", "$default", "/", &[]));
        // Stage names are case-sensitive.
        assert_eq!(
            o("/PROD/items/1"),
            hit("web", "$default", "$default", "/PROD/items/1", &[])
        );
    }

    #[test]
    fn resolve_custom_domain_mappings() {
        let g = dispatch_config();
        let o = |path| outcome(&g, Some("api.example.com"), Method::Get, path);
        // Longest matching mapping, whole segments.
        assert_eq!(
            o("/orders/v1/items/1"),
            hit("shop", "prod", "GET /items/{id}", "/items/1", &["1"])
        );
        assert_eq!(
            o("/orders/items/1"),
            hit("shop", "beta", "GET /items/{id}", "/items/1", &["1"])
        );
        assert_eq!(o("/orders/v1"), hit("shop", "prod", "GET /", "/", &[]));
        assert_eq!(o("/orders/v1/"), hit("shop", "prod", "GET /", "/", &[]));
        assert_eq!(o("/orders/v2/items/3"), Err(Protocol::Rest));
        // Not a whole segment: the (none) mapping gets it, unstripped.
        assert_eq!(
            o("/ordersandmore"),
            hit("web", "v2", "$default", "/ordersandmore", &[])
        );
        assert_eq!(o("/hello"), hit("web", "v2", "GET /hello", "/hello", &[]));
        // The mapping fixes the stage: a stage name in the path is just a path.
        assert_eq!(
            o("/prod/items/1"),
            hit("web", "v2", "$default", "/prod/items/1", &[])
        );
    }

    /// Empty path segments are ignored in the stage prefix, a base path mapping and the route,
    /// as API Gateway does; `path` keeps what follows the prefix as received.
    #[test]
    fn resolve_ignores_empty_segments() {
        let g = dispatch_config();
        let o = |host, path| outcome(&g, host, Method::Get, path);
        // REST stage prefix.
        assert_eq!(
            o(None, "/prod//items/1"),
            hit("shop", "prod", "GET /items/{id}", "//items/1", &["1"])
        );
        assert_eq!(
            o(None, "//prod/items/1"),
            hit("shop", "prod", "GET /items/{id}", "/items/1", &["1"])
        );
        assert_eq!(
            o(None, "///beta///items//2//"),
            hit("shop", "beta", "GET /items/{id}", "///items//2//", &["2"])
        );
        assert_eq!(o(None, "//prod"), hit("shop", "prod", "GET /", "/", &[]));
        assert_eq!(o(None, "//prod//"), hit("shop", "prod", "GET /", "//", &[]));
        assert_eq!(o(None, "//prod//nope"), Err(Protocol::Rest));
        // HTTP API: explicit stage and `$default` stage.
        assert_eq!(
            o(None, "//v2//hello"),
            hit("web", "v2", "GET /hello", "//hello", &[])
        );
        assert_eq!(
            o(None, "//hello/"),
            hit("web", "$default", "GET /hello", "//hello/", &[])
        );
        assert_eq!(o(None, "//"), hit("web", "$default", "$default", "//", &[]));
        // Custom domain: multi-level mapping, single-level mapping, (none).
        let api = Some("api.example.com");
        assert_eq!(
            o(api, "//orders//v1//items/1"),
            hit("shop", "prod", "GET /items/{id}", "//items/1", &["1"])
        );
        assert_eq!(
            o(api, "/orders//items/1"),
            hit("shop", "beta", "GET /items/{id}", "//items/1", &["1"])
        );
        assert_eq!(
            o(api, "//orders/v1"),
            hit("shop", "prod", "GET /", "/", &[])
        );
        assert_eq!(
            o(api, "/orders/v1//"),
            hit("shop", "prod", "GET /", "//", &[])
        );
        // Whole segments still: `orders` then `v2` is the `orders` mapping.
        assert_eq!(o(api, "//orders//v2//items/3"), Err(Protocol::Rest));
        assert_eq!(
            o(api, "//ordersandmore"),
            hit("web", "v2", "$default", "//ordersandmore", &[])
        );
        assert_eq!(
            o(api, "//hello"),
            hit("web", "v2", "GET /hello", "//hello", &[])
        );
        let vip = Some("vip.tenants.example.com");
        assert_eq!(
            o(vip, "///shop//items/5"),
            hit("shop", "beta", "GET /items/{id}", "//items/5", &["5"])
        );
        // A REST-only gateway: `//prod/...` no longer misses (it answered 403 before).
        let rest_only = gateway(&format!(
            "{LISTENER}[[apis]]\nname = \"r\"\nprotocol = \"rest\"\nstages = [{{ name = \"prod\" }}]\nroutes = [{{ key = \"GET /pets\", integration = {{ type = \"mock\" }} }}]\n"
        ));
        for path in ["/prod/pets", "/prod//pets", "//prod/pets", "//prod//pets//"] {
            assert!(
                matches!(
                    outcome(&rest_only, None, Method::Get, path),
                    Ok((_, _, ref key, _, _)) if key == "GET /pets"
                ),
                "{path}"
            );
        }
        assert_eq!(
            outcome(&rest_only, None, Method::Get, "//"),
            Err(Protocol::Rest)
        );
    }

    /// What the backend is sent when the request path has empty segments: `{param}` and
    /// `{proxy}` values are what matched; a URI without a path (HTTP API) sends the path after
    /// the stage as received.
    #[test]
    fn forwarded_path_with_empty_segments() {
        let g = gateway(&format!(
            r#"{LISTENER}
[[apis]]
name = "h"
protocol = "http"
stages = [{{ name = "$default" }}, {{ name = "prod" }}]
  [[apis.routes]]
  key = "GET /pets/{{petId}}"
  integration = {{ type = "http_proxy", uri = "http://127.0.0.1:9000/v2/pets/{{petId}}" }}
  [[apis.routes]]
  key = "ANY /files/{{proxy+}}"
  integration = {{ type = "http_proxy", uri = "http://127.0.0.1:9000/store/{{proxy}}" }}
  [[apis.routes]]
  key = "$default"
  integration = {{ type = "http_proxy", uri = "http://127.0.0.1:9000" }}
"#
        ));
        let sent = |path: &str| match g.resolve(None, Method::Get, path) {
            Resolved::Route(RouteMatch {
                target: Target::HttpProxy(p),
                params,
                path: rest,
                route,
                ..
            }) => {
                let mut out = Vec::new();
                p.path.write(&params, rest, Some("q=1"), &mut out);
                (
                    route.key.to_string(),
                    String::from_utf8(out).unwrap_or_default(),
                )
            }
            other => panic!("{path}: {other:?}"),
        };
        let want = |key: &str, path: &str| (key.to_string(), path.to_string());
        assert_eq!(
            sent("/prod//pets//7/"),
            want("GET /pets/{petId}", "/v2/pets/7?q=1")
        );
        assert_eq!(
            sent("//pets/7"),
            want("GET /pets/{petId}", "/v2/pets/7?q=1")
        );
        assert_eq!(
            sent("//prod//files//a//b//"),
            want("ANY /files/{proxy+}", "/store/a//b?q=1")
        );
        assert_eq!(
            sent("/files/a/b"),
            want("ANY /files/{proxy+}", "/store/a/b?q=1")
        );
        // No path in the URI: the path after the stage, as received.
        assert_eq!(sent("/prod//x//y"), want("$default", "//x//y?q=1"));
        assert_eq!(sent("//prod/x/y"), want("$default", "/x/y?q=1"));
        assert_eq!(sent("//x//y/"), want("$default", "//x//y/?q=1"));
        assert_eq!(sent("/prod"), want("$default", "/?q=1"));
    }

    #[test]
    fn resolve_wildcard_domain() {
        let g = dispatch_config();
        let o = |host, path| outcome(&g, Some(host), Method::Get, path);
        assert_eq!(
            o("acme.tenants.example.com", "/items/5"),
            hit("shop", "prod", "GET /items/{id}", "/items/5", &["5"])
        );
        assert_eq!(
            o("a.b.tenants.example.com", "/items/5"),
            hit("shop", "prod", "GET /items/{id}", "/items/5", &["5"])
        );
        // The bare parent name is not covered by the wildcard.
        assert_eq!(
            o("tenants.example.com", "/items/5"),
            hit("web", "$default", "$default", "/items/5", &[])
        );
        // The exact name beats the wildcard; its only mapping is `shop`, no (none).
        assert_eq!(
            o("vip.tenants.example.com", "/shop/items/5"),
            hit("shop", "beta", "GET /items/{id}", "/items/5", &["5"])
        );
        assert_eq!(
            o("vip.tenants.example.com", "/items/5"),
            Err(Protocol::Rest)
        );
    }

    #[test]
    fn resolve_host_with_port_and_case() {
        let g = dispatch_config();
        let want = hit("shop", "prod", "GET /items/{id}", "/items/1", &["1"]);
        for host in [
            "API.Example.COM:8443",
            "api.example.com.",
            " api.example.com:80 ",
        ] {
            assert_eq!(
                outcome(&g, Some(host), Method::Get, "/orders/v1/items/1"),
                want,
                "{host}"
            );
        }
        for host in ["Admin.INTERNAL", "admin.internal:9999"] {
            assert_eq!(
                outcome(&g, Some(host), Method::Get, "/ops/metrics"),
                hit("admin", "ops", "GET /metrics", "/metrics", &[]),
                "{host}"
            );
        }
        // IPv6 literal hosts and unknown names reach the host-less APIs.
        for host in ["[::1]:8080", "[::1]", "unknown.example"] {
            assert_eq!(
                outcome(&g, Some(host), Method::Get, "/prod/items/1"),
                hit("shop", "prod", "GET /items/{id}", "/items/1", &["1"]),
                "{host}"
            );
        }
        // A host name longer than any DNS name is just an unknown host.
        let long = "a".repeat(300);
        assert_eq!(
            outcome(&g, Some(&long), Method::Get, "/v2/hello"),
            hit("web", "v2", "GET /hello", "/hello", &[])
        );
    }

    #[test]
    fn resolve_api_hosts() {
        let g = dispatch_config();
        // An API with `hosts` is only reached with those hosts ...
        assert_eq!(
            outcome(&g, Some("admin.internal"), Method::Get, "/ops/metrics"),
            hit("admin", "ops", "GET /metrics", "/metrics", &[])
        );
        // ... and those hosts reach only the APIs that list them (no fallback to host-less).
        assert_eq!(
            outcome(&g, Some("admin.internal"), Method::Get, "/prod/items/1"),
            Err(Protocol::Http)
        );
        assert_eq!(
            outcome(&g, Some("admin.internal"), Method::Get, "/ops/other"),
            Err(Protocol::Http)
        );
    }

    #[test]
    fn resolve_no_route_protocols() {
        // Only REST APIs: an unknown stage is a REST miss (403 Missing Authentication Token).
        let rest_only = gateway(&format!(
            "{LISTENER}[[apis]]\nname = \"r\"\nprotocol = \"rest\"\nstages = [{{ name = \"prod\" }}]\nroutes = [{{ key = \"GET /a\", integration = {{ type = \"mock\" }} }}]\n"
        ));
        assert_eq!(
            outcome(&rest_only, None, Method::Get, "/nostage/a"),
            Err(Protocol::Rest)
        );
        assert_eq!(
            outcome(&rest_only, None, Method::Get, "/"),
            Err(Protocol::Rest)
        );
        assert_eq!(
            outcome(&rest_only, None, Method::Get, "/prod/b"),
            Err(Protocol::Rest)
        );
        assert_eq!(
            outcome(&rest_only, None, Method::Get, "*"),
            Err(Protocol::Rest)
        );
        assert_eq!(
            outcome(&rest_only, None, Method::Get, "/prod/a"),
            hit("r", "prod", "GET /a", "/a", &[])
        );

        // A REST and an HTTP API without a $default stage: a miss before any API is chosen is
        // an HTTP miss (404); after the REST API was chosen, a REST miss.
        let mixed = gateway(&format!(
            "{LISTENER}[[apis]]\nname = \"r\"\nprotocol = \"rest\"\nstages = [{{ name = \"prod\" }}]\nroutes = [{{ key = \"GET /a\", integration = {{ type = \"mock\" }} }}]\n[[apis]]\nname = \"h\"\nprotocol = \"http\"\nstages = [{{ name = \"live\" }}]\nroutes = [{{ key = \"GET /a\", integration = {{ type = \"mock\" }} }}]\n"
        ));
        assert_eq!(
            outcome(&mixed, None, Method::Get, "/nostage/a"),
            Err(Protocol::Http)
        );
        assert_eq!(
            outcome(&mixed, None, Method::Get, "/prod/b"),
            Err(Protocol::Rest)
        );
        assert_eq!(
            outcome(&mixed, None, Method::Get, "/live/b"),
            Err(Protocol::Http)
        );
        assert_eq!(
            outcome(&mixed, None, Method::Get, "/live/a"),
            hit("h", "live", "GET /a", "/a", &[])
        );

        // Every API has `hosts`: other hosts have no candidate API at all (404).
        let hosted = gateway(&format!(
            "{LISTENER}[[apis]]\nname = \"r\"\nprotocol = \"rest\"\nhosts = [\"r.example\"]\nstages = [{{ name = \"prod\" }}]\n"
        ));
        assert_eq!(
            outcome(&hosted, Some("other.example"), Method::Get, "/prod/a"),
            Err(Protocol::Http)
        );
        assert_eq!(
            outcome(&hosted, None, Method::Get, "/prod/a"),
            Err(Protocol::Http)
        );
        assert_eq!(
            outcome(&hosted, Some("r.example"), Method::Get, "/x/a"),
            Err(Protocol::Rest)
        );
    }

    /// The dispatch table in tuning/CONFIG.md, on tuning/examples/custom-domains.toml.
    #[test]
    fn resolve_documented_examples() {
        let g = gateway(include_str!("../../../tuning/examples/custom-domains.toml"));
        let o = |host: &str, method, path| {
            outcome(&g, Some(host), method, path)
                .map(|(api, stage, key, path, _)| (api, stage, key, path))
        };
        let hit = |api: &str, stage: &str, key: &str, path: &str| {
            Ok((
                api.to_string(),
                stage.to_string(),
                key.to_string(),
                path.to_string(),
            ))
        };
        assert_eq!(
            o("api.example.com", Method::Get, "/orders/v1/items/1"),
            hit("orders", "v1", "GET /items/{id}", "/items/1")
        );
        assert_eq!(
            o("API.Example.com:8443", Method::Get, "/orders/v2/items/1"),
            hit("orders", "v2", "GET /items/{id}", "/items/1")
        );
        assert_eq!(
            o("api.example.com", Method::Get, "/status"),
            hit("site", "live", "GET /status", "/status")
        );
        assert_eq!(
            o("acme.tenants.example.com", Method::Get, "/hello"),
            hit("site", "live", "$default", "/hello")
        );
        assert_eq!(
            o("admin.internal", Method::Get, "/ops/metrics"),
            hit("admin", "ops", "GET /metrics", "/metrics")
        );
        assert_eq!(
            o("127.0.0.1:8080", Method::Get, "/live/status"),
            hit("site", "live", "GET /status", "/status")
        );
        assert_eq!(
            o("127.0.0.1:8080", Method::Get, "/v1/items/1"),
            hit("orders", "v1", "GET /items/{id}", "/items/1")
        );
        assert_eq!(
            o("127.0.0.1:8080", Method::Get, "/nope"),
            Err(Protocol::Http)
        );
        assert_eq!(
            o("api.example.com", Method::Get, "//orders//v1/items/1"),
            hit("orders", "v1", "GET /items/{id}", "/items/1")
        );
        assert_eq!(
            o("127.0.0.1:8080", Method::Get, "//live//status"),
            hit("site", "live", "GET /status", "//status")
        );

        // And the built-in demo config.
        let g = gateway(crate::config::DEFAULT_CONFIG);
        let o = |path| {
            outcome(&g, Some("127.0.0.1:8080"), Method::Get, path)
                .map(|(api, stage, key, path, _)| (api, stage, key, path))
        };
        assert_eq!(o("/demo/pets"), hit("pets", "demo", "GET /pets", "/pets"));
        assert_eq!(
            o("/demo/pets/1"),
            hit("pets", "demo", "GET /pets/{petId}", "/pets/1")
        );
        assert_eq!(o("/demo"), hit("pets", "demo", "GET /", "/"));
        assert_eq!(o("/demo/nope"), Err(Protocol::Rest));
        assert_eq!(
            o("/anything"),
            hit("hello", "$default", "$default", "/anything")
        );
        assert_eq!(o("/"), hit("hello", "$default", "$default", "/"));
    }

    #[test]
    fn stage_variables_in_host_path_and_query() {
        let g = gateway(&format!(
            r#"{LISTENER}
[[apis]]
name = "a"
protocol = "http"
stages = [
  {{ name = "prod", variables = {{ host = "127.0.0.1", port = "9000", ver = "v2", flag = "on" }} }},
  {{ name = "beta", variables = {{ host = "localhost", port = "9001", ver = "v3", flag = "off" }} }},
]
  [[apis.routes]]
  key = "GET /pets/{{petId}}"
  integration = {{ type = "http_proxy", uri = "http://${{stageVariables.host}}:${{stageVariables.port}}/${{stageVariables.ver}}/pets/{{petId}}?flag=${{stageVariables.flag}}" }}
  [[apis.routes]]
  key = "ANY /{{proxy+}}"
  integration = {{ type = "http_proxy", uri = "http://${{stageVariables.host}}:${{stageVariables.port}}" }}
"#
        ));
        let request = |path: &str, query: Option<&str>| match g.resolve(None, Method::Get, path) {
            Resolved::Route(m) => match m.target {
                Target::HttpProxy(p) => {
                    let mut out = Vec::new();
                    p.path.write(&m.params, m.path, query, &mut out);
                    let up = &g.upstreams[p.upstream as usize];
                    (
                        up.host_header.to_string(),
                        up.addr.port(),
                        String::from_utf8(out).unwrap_or_default(),
                    )
                }
                Target::Mock(_) | Target::Lambda(_) => panic!("not http_proxy"),
            },
            Resolved::NoRoute(p) => panic!("{path}: no route ({:?})", p.protocol),
        };
        assert_eq!(
            request("/prod/pets/7", Some("x=1")),
            (
                "127.0.0.1:9000".to_string(),
                9000,
                "/v2/pets/7?flag=on&x=1".to_string()
            )
        );
        assert_eq!(
            request("/beta/pets/7", None),
            (
                "localhost:9001".to_string(),
                9001,
                "/v3/pets/7?flag=off".to_string()
            )
        );
        // HTTP API, URI without a path: the full path after the stage.
        assert_eq!(
            request("/prod/store/orders/1", Some("a=b")),
            (
                "127.0.0.1:9000".to_string(),
                9000,
                "/store/orders/1?a=b".to_string()
            )
        );
    }
}
