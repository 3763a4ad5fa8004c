//! The compiled gateway: what a shard consults per request. Built once from a validated
//! `config::Config`, then cloned into every shard (it is `Clone + Send`, holds no `Rc`/locks).
//!
//! CONTRACT (types fixed; the config work fills in `compile` and `resolve`):
//! request → `resolve(host, method, path)` → API + stage (custom-domain mapping, `/{stage}` prefix
//! or `$default` stage) → route (router) → per-(route, stage) `Target` whose stage variables were
//! substituted at compile time.

use crate::method::Method;
use crate::router::{Params, Router};
use std::net::SocketAddr;
use std::time::Duration;

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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            shards: 0,
            pin_cpus: true,
            read_buffer_bytes: 16 * 1024,
            max_header_bytes: 10 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            client_write_timeout: Duration::from_secs(30),
            upstream_connect_timeout: Duration::from_secs(3),
            upstream_pool_size: 64,
            upstream_idle_timeout: Duration::from_secs(60),
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
    // private representation, owned by the config work
    pub(crate) _private: (),
}

impl PathTemplate {
    /// Appends the backend request target to `out`: the template path with `params`
    /// substituted (names resolved at compile time to indexes into `params`), then the query:
    /// the template's own query (if any) and the client's `query` (passed through verbatim),
    /// joined with `&`. For HTTP APIs whose URI has no path, `request_path` (the client path
    /// after the stage prefix) is used as the path, as API Gateway does.
    pub fn write(&self, params: &[&str], request_path: &str, query: Option<&str>, out: &mut Vec<u8>) {
        let _ = (params, request_path, query, out);
        todo!("config work")
    }
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
}

/// The outcome of dispatching a request.
#[derive(Debug)]
pub enum Resolved<'g, 'p> {
    Route(RouteMatch<'g, 'p>),
    /// No API/stage/route: the error depends on the protocol of the API (or APIs) that could
    /// have served it: REST → 403 Missing Authentication Token, HTTP → 404 Not Found.
    NoRoute(Protocol),
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
    // dispatch tables (domains, host → APIs, stage names) are private to the config work
    pub(crate) _dispatch: (),
}

impl Gateway {
    /// Dispatches a request. `host` is the Host header value as received (may carry `:port`,
    /// any case); `path` is the request path without the query string. Allocation-free.
    pub fn resolve<'g, 'p>(&'g self, host: Option<&[u8]>, method: Method, path: &'p str) -> Resolved<'g, 'p> {
        let _ = (host, method, path);
        todo!("config work")
    }
}
