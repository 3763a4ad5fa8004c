//! The compiled gateway: what a shard consults per request. Built once from a validated config
//! file (`config::load_str` / `load_file`), then cloned into every shard (it is `Clone + Send`,
//! holds no `Rc`/locks).
//!
//! request → `resolve(host, method, path)` → API + stage (custom-domain mapping, `/{stage}` prefix
//! or `$default` stage) → route (router) → per-(route, stage) `Target` whose stage variables were
//! substituted at compile time. This module owns the per-request side: the dispatch tables
//! (`Dispatch`), `Gateway::resolve` and `PathTemplate::write`; `config::compile` fills them in.

use crate::method::Method;
use crate::router::{Params, Router};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

pub mod responses;

/// Host settings (`[server]` in the config file). Defaults are documented in tuning/CONFIG.md.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Number of shards (executors); 0 in the file means one per online CPU and is resolved by
    /// the proxy at start, so here 0 still means "auto".
    pub shards: usize,
    pub pin_cpus: bool,
    /// Size of each connection's read buffer (client and backend).
    pub read_buffer_bytes: usize,
    /// Request line + headers limit (API Gateway: 10,240 bytes).
    pub max_header_bytes: usize,
    /// Payload limit (API Gateway: 10 MB = 10,485,760 bytes); larger gets 413.
    pub max_body_bytes: u64,
    /// A client must deliver a complete request head within this time once it started one.
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this.
    pub idle_timeout: Duration,
    /// A client that accepts no bytes for this long while we send is dropped.
    pub client_write_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    /// Idle pooled backend connections kept per backend per shard.
    pub upstream_pool_size: usize,
    pub upstream_idle_timeout: Duration,
    /// Buffers in each shard's io_uring receive ring (lean socket path; a power of two).
    pub receive_ring_buffers: usize,
    /// Bytes per receive-ring buffer (the most one receive completion delivers).
    pub receive_ring_buffer_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            shards: 0,
            pin_cpus: true,
            read_buffer_bytes: 64 * 1024,
            max_header_bytes: 10 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            client_write_timeout: Duration::from_secs(30),
            upstream_connect_timeout: Duration::from_secs(3),
            upstream_pool_size: 256,
            upstream_idle_timeout: Duration::from_secs(60),
            receive_ring_buffers: 256,
            receive_ring_buffer_bytes: 16 * 1024,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// REST API: reached as `/{stage}/...`; no route → 403 Missing Authentication Token.
    Rest,
    /// HTTP API: `$default` stage without prefix allowed, `$default` route; no route → 404.
    Http,
}

/// A backend address shared by every target that points at it; a shard keeps one connection
/// pool per `Upstream`, indexed by its position in `Gateway::upstreams`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Upstream {
    /// Resolved at compile time (config load).
    pub addr: SocketAddr,
    /// `Host` header value sent to the backend (`host[:port]` as written in the URI).
    pub host_header: Box<str>,
}

/// The backend path + query of an `http_proxy` integration, with stage variables already
/// substituted; only `{param}` / `{greedy}` references remain.
#[derive(Clone, Debug, PartialEq)]
pub struct PathTemplate {
    /// The path as literal runs and parameter references (unused when `request_path` is set).
    path: Box<[Part]>,
    /// Send the client's path (after the stage prefix) instead of `path`: HTTP APIs whose
    /// integration URI has no path.
    request_path: bool,
    /// The template's own query string, if it has a non-empty one.
    query: Option<Box<[Part]>>,
}

/// One piece of a compiled template.
#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(Box<str>),
    /// Index into the route's parameters (`Router::param_names` order).
    Param(usize),
}

/// A piece of template text: a literal run or a `{name}` reference (`at`: offset of the `{`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    Text(&'a str),
    Param { name: &'a str, at: usize },
}

/// Splits template text into literal runs and `{name}` references; `Err((offset, reason))` on
/// an unbalanced or empty brace.
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token<'_>>, (usize, String)> {
    let mut tokens = Vec::new();
    let mut pos = 0;
    while let Some(i) = text[pos..].find(['{', '}']) {
        let at = pos + i;
        if text[at..].starts_with('}') {
            return Err((at, "`}` without a matching `{`".to_string()));
        }
        let Some(len) = text[at + 1..].find(['{', '}']) else {
            return Err((at, "`{` is never closed".to_string()));
        };
        let end = at + 1 + len;
        if text[end..].starts_with('{') {
            return Err((at, "`{` is never closed".to_string()));
        }
        let name = &text[at + 1..end];
        if name.is_empty() {
            return Err((
                at,
                "empty `{}`: write `{name}` with a path parameter name".to_string(),
            ));
        }
        if at > pos {
            tokens.push(Token::Text(&text[pos..at]));
        }
        tokens.push(Token::Param { name, at });
        pos = end + 1;
    }
    if pos < text.len() {
        tokens.push(Token::Text(&text[pos..]));
    }
    Ok(tokens)
}

/// Why `name` (from a `{name}` in an integration URI) is not one of `params`.
pub(crate) fn unknown_param_reason(name: &str, params: &[&str]) -> String {
    if let Some(base) = name.strip_suffix('+') {
        if params.contains(&base) {
            return format!(
                "write `{{{base}}}` (without `+`) to use the greedy path parameter `{{{name}}}`"
            );
        }
    }
    if params.is_empty() {
        format!("`{{{name}}}` is not a path parameter of the route (it has none)")
    } else {
        let list: Vec<String> = params.iter().map(|p| format!("`{{{p}}}`")).collect();
        format!(
            "`{{{name}}}` is not a path parameter of the route (it has {})",
            list.join(", ")
        )
    }
}

impl PathTemplate {
    /// Compiles a backend path (`/pets/{petId}`) and optional query (`a=1&id={petId}`).
    /// `params` are the route's parameter names in `Router::param_names` order (a greedy
    /// `{proxy+}` is named `proxy` and referenced as `{proxy}`). With `request_path`, `path` is
    /// ignored and the client's path is sent (HTTP APIs whose URI has no path). An empty `path`
    /// means `/`. `Err` is a plain sentence.
    pub fn new(
        path: &str,
        query: Option<&str>,
        params: &[&str],
        request_path: bool,
    ) -> Result<PathTemplate, String> {
        let path = if path.is_empty() { "/" } else { path };
        let path = if request_path {
            Box::default()
        } else {
            compile_parts(path, params)?
        };
        let query = match query {
            Some(q) if !q.is_empty() => Some(compile_parts(q, params)?),
            _ => None,
        };
        Ok(PathTemplate {
            path,
            request_path,
            query,
        })
    }

    /// Appends the backend request target to `out`: the template path with `params`
    /// substituted (names resolved at compile time to indexes into `params`), then the query:
    /// the template's own query (if any) and the client's `query` (passed through verbatim),
    /// joined with `&`. For HTTP APIs whose URI has no path, `request_path` (the client path
    /// after the stage prefix) is used as the path, as API Gateway does.
    pub fn write(
        &self,
        params: &[&str],
        request_path: &str,
        query: Option<&str>,
        out: &mut Vec<u8>,
    ) {
        if self.request_path {
            if request_path.is_empty() {
                out.push(b'/');
            } else {
                out.extend_from_slice(request_path.as_bytes());
            }
        } else {
            write_parts(&self.path, params, out);
        }
        let mut separator = b'?';
        if let Some(q) = &self.query {
            out.push(b'?');
            write_parts(q, params, out);
            separator = b'&';
        }
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            out.push(separator);
            out.extend_from_slice(q.as_bytes());
        }
    }
}

fn compile_parts(text: &str, params: &[&str]) -> Result<Box<[Part]>, String> {
    let tokens = tokenize(text).map_err(|(_, reason)| reason)?;
    let mut parts = Vec::with_capacity(tokens.len());
    for t in tokens {
        match t {
            Token::Text(s) => parts.push(Part::Text(s.into())),
            Token::Param { name, .. } => match params.iter().position(|p| *p == name) {
                Some(i) => parts.push(Part::Param(i)),
                None => return Err(unknown_param_reason(name, params)),
            },
        }
    }
    Ok(parts.into_boxed_slice())
}

fn write_parts(parts: &[Part], params: &[&str], out: &mut Vec<u8>) {
    for p in parts {
        match p {
            Part::Text(s) => out.extend_from_slice(s.as_bytes()),
            Part::Param(i) => {
                if let Some(v) = params.get(*i) {
                    out.extend_from_slice(v.as_bytes());
                }
            }
        }
    }
}

/// A stage's throttling settings (`throttle = { rate, burst }`), kept for traffic control.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Throttle {
    /// Steady-state requests per second (token refill rate).
    pub rate: f64,
    /// Bucket capacity.
    pub burst: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProxyTarget {
    /// Index into `Gateway::upstreams`.
    pub upstream: u32,
    pub path: PathTemplate,
    /// Integration timeout (default 29 s): no complete response head by then → 504.
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MockTarget {
    pub status: u16,
    /// Extra headers (content-length is computed, not configured).
    pub headers: Vec<(Box<str>, Box<str>)>,
    pub body: Box<[u8]>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    HttpProxy(ProxyTarget),
    Mock(MockTarget),
}

#[derive(Clone, Debug)]
pub struct Stage {
    pub name: Box<str>,
    pub variables: Vec<(Box<str>, Box<str>)>,
}

#[derive(Clone, Debug)]
pub struct Route {
    /// The route key as written (`GET /pets/{petId}`, `$default`): `$context.routeKey`.
    pub key: Box<str>,
    /// One target per stage of the API, same order as `Api::stages`.
    pub targets: Vec<Target>,
}

#[derive(Clone, Debug)]
pub struct Api {
    pub name: Box<str>,
    pub protocol: Protocol,
    pub stages: Vec<Stage>,
    pub routes: Vec<Route>,
    pub router: Router,
    /// Its gateway responses (built-ins plus `[[apis.gateway_responses]]`).
    pub responses: responses::GatewayResponses,
}

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
    /// The request path with the stage / base-path prefix removed (always starts with `/`).
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

/// The first segment of `path` and what follows it (`/` if nothing); `None` without a leading `/`.
fn split_first_segment(path: &str) -> Option<(&str, &str)> {
    let after = path.strip_prefix('/')?;
    Some(match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    })
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
/// segment-aligned prefix, else `(none)`. Returns the stage and the path after the mapping.
fn map_domain<'p>(domain: &Domain, path: &'p str) -> Option<(StageRef, &'p str)> {
    let after = path.strip_prefix('/').unwrap_or(path);
    for (prefix, stage) in &domain.mappings {
        if let Some(rest) = after.strip_prefix(&**prefix) {
            if rest.is_empty() {
                return Some((*stage, "/"));
            }
            if rest.starts_with('/') {
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

    fn template(
        path: &str,
        query: Option<&str>,
        params: &[&str],
        request_path: bool,
    ) -> PathTemplate {
        match PathTemplate::new(path, query, params, request_path) {
            Ok(t) => t,
            Err(e) => panic!("{path:?} {query:?}: {e}"),
        }
    }

    fn written(
        t: &PathTemplate,
        params: &[&str],
        request_path: &str,
        query: Option<&str>,
    ) -> String {
        let mut out = b"GET ".to_vec();
        t.write(params, request_path, query, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn template_substitutes_params() {
        let t = template("/pets/{petId}", None, &["petId"], false);
        assert_eq!(written(&t, &["7"], "/pets/7", None), "GET /pets/7");
        let t = template("/u/{a}/x/{b}/{a}.json", None, &["a", "b"], false);
        assert_eq!(
            written(&t, &["1", "two"], "/", None),
            "GET /u/1/x/two/1.json"
        );
        // Values are passed as received (still percent-encoded).
        assert_eq!(
            written(&t, &["a%2Fb", "c"], "/", None),
            "GET /u/a%2Fb/x/c/a%2Fb.json"
        );
        // Parameters in the template query too.
        let t = template("/search", Some("id={id}&v=1"), &["id"], false);
        assert_eq!(written(&t, &["9"], "/", None), "GET /search?id=9&v=1");
    }

    #[test]
    fn template_greedy_proxy() {
        let t = template("/petstore/{proxy}", None, &["proxy"], false);
        assert_eq!(
            written(&t, &["pets/1/toys"], "/pets/1/toys", None),
            "GET /petstore/pets/1/toys"
        );
        let t = template("/{proxy}", None, &["tenant", "proxy"], false);
        assert_eq!(
            written(&t, &["acme", "a/b"], "/acme/a/b", Some("x=1")),
            "GET /a/b?x=1"
        );
        assert_eq!(
            PathTemplate::new("/{proxy+}", None, &["proxy"], false),
            Err(
                "write `{proxy}` (without `+`) to use the greedy path parameter `{proxy+}`"
                    .to_string()
            )
        );
        assert_eq!(
            PathTemplate::new("/{proxy}", None, &["id"], false),
            Err("`{proxy}` is not a path parameter of the route (it has `{id}`)".to_string())
        );
    }

    #[test]
    fn template_query_merge() {
        let t = template("/a", Some("x=1"), &[], false);
        assert_eq!(written(&t, &[], "/a", Some("y=2&z")), "GET /a?x=1&y=2&z");
        assert_eq!(written(&t, &[], "/a", None), "GET /a?x=1");
        assert_eq!(written(&t, &[], "/a", Some("")), "GET /a?x=1");
        let t = template("/a", None, &[], false);
        assert_eq!(written(&t, &[], "/a", Some("y=2")), "GET /a?y=2");
        assert_eq!(written(&t, &[], "/a", Some("")), "GET /a");
        // A URI ending in `?` has no query of its own.
        let t = template("/a", Some(""), &[], false);
        assert_eq!(written(&t, &[], "/a", Some("y=2")), "GET /a?y=2");
    }

    #[test]
    fn template_full_request_path() {
        // HTTP API URI without a path: the client's path (after the stage) is sent.
        let t = template("", None, &[], true);
        assert_eq!(
            written(&t, &[], "/store/checkout", Some("a=1")),
            "GET /store/checkout?a=1"
        );
        let t = template("/", Some("src=gw"), &[], true);
        assert_eq!(written(&t, &[], "/x/y", Some("a=1")), "GET /x/y?src=gw&a=1");
        // REST API URI without a path: `/` as written.
        let t = template("", None, &[], false);
        assert_eq!(written(&t, &[], "/store/checkout", None), "GET /");
    }

    #[test]
    fn template_syntax_errors() {
        for (path, reason) in [
            ("/a/{id", "`{` is never closed"),
            ("/a/{i{d}", "`{` is never closed"),
            ("/a/id}", "`}` without a matching `{`"),
            (
                "/a/{}",
                "empty `{}`: write `{name}` with a path parameter name",
            ),
        ] {
            assert_eq!(
                PathTemplate::new(path, None, &["id"], false),
                Err(reason.to_string()),
                "{path}"
            );
        }
    }

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
        let g = gateway(include_str!("../../tuning/examples/custom-domains.toml"));
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
                Target::Mock(_) => panic!("mock"),
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
