//! The compiled gateway's data model: APIs, stages, routes and the per-(route, stage)
//! integration targets (`http_proxy`, `mock`, `aws_proxy`), authorizers, backend addresses,
//! stage throttles and each route's traffic-control chain (`traffic::RouteLimits`). Plain data
//! built once by `config::compile`; the per-request side is in `dispatch`.

use super::responses;
use super::uri::PathTemplate;
use crate::lambda::{Authorizer, LambdaTarget};
use crate::router::Router;
use crate::traffic::{KeySource, RouteLimits};
use std::net::SocketAddr;
use std::time::Duration;

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
    /// `https://` backends: the name to send (SNI) and verify, and the CA to verify against.
    pub tls: Option<crate::tls::BackendTls>,
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
    /// `aws_proxy`: a Lambda function behind the Invoke API (`crate::lambda`).
    Lambda(LambdaTarget),
}

#[derive(Clone, Debug)]
pub struct Stage {
    pub name: Box<str>,
    pub variables: Vec<(Box<str>, Box<str>)>,
    /// `access_log = { destination, format }`, if the stage has one.
    pub access_log: Option<Box<super::access_log::AccessLog>>,
}

#[derive(Clone, Debug)]
pub struct Route {
    /// The route key as written (`GET /pets/{petId}`, `$default`): `$context.routeKey`.
    pub key: Box<str>,
    /// One target per stage of the API, same order as `Api::stages`.
    pub targets: Vec<Target>,
    /// Traffic control per stage of the API (same order): key requirement and the resolved
    /// chain of limits.
    pub limits: Vec<RouteLimits>,
    /// Index into `Api::authorizers` (`authorizer = "name"`).
    pub authorizer: Option<u32>,
    /// The route's parameter names, in `RouteMatch::params` order (`{proxy+}` → `proxy`):
    /// `pathParameters` of Lambda events.
    pub param_names: Box<[Box<str>]>,
    /// `authorization_scopes` (JWT authorizers): the token needs one of them.
    pub authorization_scopes: Box<[Box<str>]>,
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
    /// `api_key_source`.
    pub api_key_source: KeySource,
    /// `binary_media_types`: bodies of these types travel base64 in Lambda events/results.
    pub binary_media_types: Vec<Box<str>>,
    /// `[[apis.authorizers]]` (Lambda TOKEN / REQUEST).
    pub authorizers: Vec<Authorizer>,
    /// `[server] region` / `account_id` (method ARNs, `accountId` in Lambda events).
    pub account: crate::lambda::Account,
}
