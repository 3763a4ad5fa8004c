//! The checked model → `gateway::Gateway`: APIs, stages and routes (route keys parsed and added
//! to each API's router), per-(route, stage) targets with stage variables substituted and
//! backends resolved once into deduplicated `Upstream`s, and each API's gateway responses
//! (`[[apis.gateway_responses]]` checked and precompiled). Every problem found on the way is
//! reported; the result is only used when there was none.

use super::diagnostics::{Diagnostics, Spanned};
use super::model::{self, Config, Integration, Text};
use super::traffic::{self as traffic_config, KeysFile};
use super::uri::{self, Piece};
use super::{cluster, decode, dispatch, lambda, ops, settings, validate};
use crate::gateway::responses::{
    self, BodyTemplate, CustomResponse, GatewayResponses, ResponseType, TemplateError,
};
use crate::gateway::{
    self, Api, Gateway, MockTarget, PathTemplate, Protocol, ProxyTarget, Route, Stage, Target,
    Throttle, Token, Upstream,
};
use crate::router::{parse_route_key, RouteKey, RouterBuilder, Segment};
use crate::tls::BackendTls;
use crate::traffic::KeySource;
use rustls::pki_types::CertificateDer;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Integration timeout bounds (API Gateway: REST 50 ms to 29 s, HTTP APIs up to 30 s).
pub(crate) const MIN_TIMEOUT_MS: i64 = 50;
pub(crate) const MAX_REST_TIMEOUT_MS: i64 = 29_000;
pub(crate) const MAX_HTTP_TIMEOUT_MS: i64 = 30_000;
pub(crate) const DEFAULT_TIMEOUT_MS: u64 = 29_000;

/// `keys_file`: the `[[api_keys]]` read from `api_keys_file`, with that file's diagnostics.
/// `base`: the directory relative paths in `[server]` are resolved against.
pub(crate) fn compile(
    cfg: &Config,
    base: &std::path::Path,
    keys_file: Option<KeysFile<'_, '_>>,
    d: &mut Diagnostics<'_>,
) -> Gateway {
    let mut settings = settings::settings(&cfg.server, base, d);
    settings.account = lambda::account(&cfg.server, d);
    let listeners = settings::listeners(cfg, d);
    settings.admin = ops::admin(cfg, &listeners, d);
    settings.cluster = cluster::compile(cfg, d);
    let mut upstreams = Upstreams::default();
    let mut apis = Vec::with_capacity(cfg.apis.len());
    let mut throttles = Vec::with_capacity(cfg.apis.len());
    let mut authorizer_ids = 0u32;
    for (i, a) in cfg.apis.iter().enumerate() {
        if let Some(name) = &a.name {
            if let Err(reason) = validate::api_name(&name.value) {
                d.error(name.span.clone(), reason);
            } else if cfg.apis[..i]
                .iter()
                .any(|b| b.name.as_ref().is_some_and(|n| n.value == name.value))
            {
                d.error(
                    name.span.clone(),
                    format!("another API is already named `{}`", name.value),
                );
            }
        }
        let (mut api, api_throttles) = api(a, &mut upstreams, &mut authorizer_ids, d);
        api.account = settings.account.clone();
        apis.push(api);
        throttles.push(api_throttles);
    }
    let traffic = traffic_config::compile(
        cfg,
        &mut apis,
        &throttles,
        settings.account_throttle,
        keys_file,
        d,
    );
    let dispatch = dispatch::build(cfg, &apis, throttles, d);
    Gateway {
        settings,
        listeners,
        upstreams: upstreams.list,
        apis,
        dispatch,
        traffic,
        tls: super::tls::tls(cfg, d),
    }
}

fn api(
    a: &model::Api,
    upstreams: &mut Upstreams,
    authorizer_ids: &mut u32,
    d: &mut Diagnostics<'_>,
) -> (Api, Vec<Option<Throttle>>) {
    // Without a (valid) protocol, check as leniently as an http API allows.
    let protocol = a.protocol.as_ref().map_or(Protocol::Http, |p| p.value);
    let name = a.name.as_ref().map_or("", |n| n.value.as_str());
    if a.stages.is_empty() {
        let at = a.name.as_ref().map_or(a.span.clone(), |n| n.span.clone());
        d.error(
            at,
            format!("API `{name}` has no stages: add at least one [[apis.stages]]"),
        );
    }
    let (stages, throttles) = stages(a, protocol, name, d);

    let authorizers = lambda::authorizers(&a.authorizers, protocol, authorizer_ids, upstreams, d);
    let (routes, router) = routes(a, protocol, &stages, &authorizers, upstreams, d);
    let api = Api {
        name: name.into(),
        protocol,
        stages,
        routes,
        router,
        responses: gateway_responses(&a.gateway_responses, d),
        api_key_source: KeySource::Header,
        binary_media_types: lambda::binary_media_types(&a.binary_media_types, d),
        authorizers,
        account: Default::default(),
    };
    (api, throttles)
}

/// The API's stages, checked (names, duplicates, variables), and each stage's throttle.
fn stages(
    a: &model::Api,
    protocol: Protocol,
    name: &str,
    d: &mut Diagnostics<'_>,
) -> (Vec<Stage>, Vec<Option<Throttle>>) {
    let mut stages: Vec<Stage> = Vec::with_capacity(a.stages.len());
    let mut throttles = Vec::with_capacity(a.stages.len());
    for s in &a.stages {
        let stage_name = s.name.as_ref().map_or("", |n| n.value.as_str());
        if let Some(n) = &s.name {
            if n.value == "$default" {
                if protocol == Protocol::Rest {
                    d.error(
                        n.span.clone(),
                        "a `$default` stage is only for http APIs: REST APIs are reached as /{stage}/...",
                    );
                }
            } else if let Err(reason) = validate::stage_name(&n.value) {
                d.error(n.span.clone(), reason);
            }
            if stages.iter().any(|st| *st.name == n.value) {
                d.error(
                    n.span.clone(),
                    format!("API `{name}` already has a stage `{}`", n.value),
                );
            }
        }
        check_variables(&s.variables, d);
        throttles.push(
            s.throttle
                .as_ref()
                .and_then(|t| traffic_config::throttle(t, d)),
        );
        stages.push(Stage {
            access_log: s.access_log.as_ref().and_then(|l| ops::access_log(l, d)),
            name: stage_name.into(),
            variables: s
                .variables
                .iter()
                .map(|(k, v)| (k.value.as_str().into(), v.value.as_str().into()))
                .collect(),
        });
    }
    (stages, throttles)
}

/// The API's routes, checked and added to its router, with their integrations and authorizers.
fn routes(
    a: &model::Api,
    protocol: Protocol,
    stages: &[Stage],
    authorizers: &[crate::lambda::Authorizer],
    upstreams: &mut Upstreams,
    d: &mut Diagnostics<'_>,
) -> (Vec<Route>, crate::router::Router) {
    let mut builder = RouterBuilder::new();
    let mut routes = Vec::with_capacity(a.routes.len());
    for r in &a.routes {
        let Some(key) = &r.key else { continue };
        let parsed = match parse_route_key(&key.value) {
            Ok(k) => k,
            Err(e) => {
                d.error(key.span.clone(), e.to_string());
                continue;
            }
        };
        if parsed == RouteKey::Default && protocol == Protocol::Rest {
            d.error(
                key.span.clone(),
                "the `$default` route is only for http APIs: use `ANY /{proxy+}` in a REST API",
            );
            continue;
        }
        let index = u32::try_from(routes.len()).unwrap_or(u32::MAX);
        if let Err(reason) = builder.add(&parsed, index) {
            d.error(key.span.clone(), reason);
            continue;
        }
        let params = param_names(&parsed);
        let targets = match &r.integration {
            Some(i) => targets(i, &params, protocol, &a.stages, upstreams, d),
            None => Vec::new(),
        };
        let authorizer =
            lambda::route_authorizer(r.authorizer.as_ref(), &a.authorizers, authorizers, d);
        let api_key_required = r.api_key_required.as_ref().is_some_and(|b| b.value);
        routes.push(Route {
            key: key.value.as_str().into(),
            targets,
            limits: traffic_config::route_limits(index, api_key_required, stages.len()),
            authorizer,
            param_names: params.iter().map(|p| Box::<str>::from(*p)).collect(),
            authorization_scopes: r
                .authorization_scopes
                .iter()
                .map(|s| Box::<str>::from(s.value.as_str()))
                .collect(),
        });
    }
    (routes, builder.build())
}

/// The API's `[[apis.gateway_responses]]` on top of the built-ins; entries with an error are
/// left out (and reported).
fn gateway_responses(
    entries: &[model::GatewayResponse],
    d: &mut Diagnostics<'_>,
) -> GatewayResponses {
    let mut out = GatewayResponses::builtin();
    let mut seen: Vec<ResponseType> = Vec::with_capacity(entries.len());
    for e in entries {
        let ty = e.kind.as_ref().and_then(|k| response_type(k, &seen, d));
        if let Some(t) = ty {
            seen.push(t);
        }
        let status = match &e.status {
            None => Some(None),
            Some(s) => match responses::check_status(s.value) {
                Ok(n) => Some(Some(n)),
                Err(reason) => {
                    d.error(s.span.clone(), reason);
                    None
                }
            },
        };
        let mut headers_ok = true;
        for (i, (name, value)) in e.headers.iter().enumerate() {
            if let Err(reason) = responses::check_header_name(&name.value) {
                d.error(name.span.clone(), reason);
                headers_ok = false;
            } else if e.headers[..i]
                .iter()
                .any(|(n, _)| n.value.eq_ignore_ascii_case(&name.value))
            {
                d.error(
                    name.span.clone(),
                    format!(
                        "header `{}` is set twice (header names ignore case)",
                        name.value
                    ),
                );
                headers_ok = false;
            }
            if let Err(reason) = responses::check_header_value(&value.value) {
                d.error(value.span.clone(), reason);
                headers_ok = false;
            }
        }
        let body = match &e.body {
            None => Some(None),
            Some(b) => match BodyTemplate::parse(&b.value) {
                Ok(t) => Some(Some(t)),
                Err(err) => {
                    let (range, reason) = template_error(err);
                    d.error(d.inside(b, range), reason);
                    None
                }
            },
        };
        let (Some(ty), Some(status), Some(body), true) = (ty, status, body, headers_ok) else {
            continue;
        };
        let headers: Vec<(&str, &str)> = e
            .headers
            .iter()
            .map(|(n, v)| (n.value.as_str(), v.value.as_str()))
            .collect();
        let custom = CustomResponse::new(status, &headers, body).and_then(|c| out.customize(ty, c));
        if let Err(reason) = custom {
            d.error(e.span.clone(), reason);
        }
    }
    out
}

/// The response type named by `type`, or `None` after reporting an unknown name,
/// REQUEST_TOO_LARGE or a type customised earlier in the same API.
fn response_type(
    kind: &Text,
    seen: &[ResponseType],
    d: &mut Diagnostics<'_>,
) -> Option<ResponseType> {
    let name = kind.value.as_str();
    let Some(ty) = ResponseType::from_name(name) else {
        let names: Vec<&str> = ResponseType::ALL
            .iter()
            .filter(|t| t.customizable())
            .map(|t| t.name())
            .collect();
        let hint = ResponseType::ALL
            .iter()
            .map(|t| t.name())
            .find(|n| n.eq_ignore_ascii_case(name))
            .or_else(|| decode::closest(name, &names))
            .map_or(String::new(), |n| format!(" (did you mean `{n}`?)"));
        d.error(
            kind.span.clone(),
            format!(
                "unknown gateway response type `{name}`{hint}, expected one of {}",
                names.join(", ")
            ),
        );
        return None;
    };
    if !ty.customizable() {
        d.error(
            kind.span.clone(),
            "REQUEST_TOO_LARGE cannot be customised: API Gateway does not support it, its 413 is always the built-in `{\"message\":\"HTTP content length exceeded <max_body_bytes> bytes.\"}`",
        );
        return None;
    }
    if seen.contains(&ty) {
        d.error(
            kind.span.clone(),
            format!("`{name}` is already customised in this API: write one entry per type"),
        );
        return None;
    }
    Some(ty)
}

/// A body template error as a range in the body and a reason.
fn template_error(err: TemplateError) -> (std::ops::Range<usize>, String) {
    match err {
        TemplateError::Invalid { range, reason } => (range, reason),
        TemplateError::UnknownVariable { range, name } => {
            let hint = responses::BODY_VARIABLES
                .iter()
                .find(|v| v.eq_ignore_ascii_case(&name))
                .copied()
                .or_else(|| decode::closest(&name, &responses::BODY_VARIABLES))
                .map_or(String::new(), |v| format!(" (did you mean `${v}`?)"));
            let known: Vec<String> = responses::BODY_VARIABLES
                .iter()
                .map(|v| format!("`${v}`"))
                .collect();
            (
                range,
                format!(
                    "unknown variable `${name}` in a gateway response body{hint}; use {}, `$stageVariables.NAME`",
                    known.join(", ")
                ),
            )
        }
    }
}

fn check_variables(variables: &[(Text, Text)], d: &mut Diagnostics<'_>) {
    if let Some((k, _)) = variables.get(validate::MAX_STAGE_VARIABLES) {
        d.error(
            k.span.clone(),
            format!(
                "a stage has at most {} stage variables",
                validate::MAX_STAGE_VARIABLES
            ),
        );
    }
    for (k, v) in variables {
        if let Err(reason) = validate::variable_name(&k.value) {
            d.error(k.span.clone(), reason);
        }
        if let Err(reason) = validate::variable_value(&v.value) {
            d.error(v.span.clone(), reason);
        }
    }
}

/// The route's parameter names in the order of its segments (`Router::param_names` order); a
/// greedy `{proxy+}` is named `proxy`.
fn param_names(key: &RouteKey) -> Vec<&str> {
    match key {
        RouteKey::Default => Vec::new(),
        RouteKey::Route { segments, .. } => segments
            .iter()
            .filter_map(|s| match s {
                Segment::Literal(_) => None,
                Segment::Param(n) => Some(n.as_str()),
                Segment::Greedy(n) => Some(n.strip_suffix('+').unwrap_or(n)),
            })
            .collect(),
    }
}

/// One target per stage (same order as `stages`); empty after an error.
fn targets(
    integration: &Integration,
    params: &[&str],
    protocol: Protocol,
    stages: &[model::Stage],
    upstreams: &mut Upstreams,
    d: &mut Diagnostics<'_>,
) -> Vec<Target> {
    match integration {
        Integration::Mock {
            status,
            headers,
            body,
        } => match mock(status.as_ref(), headers, body, d) {
            Some(m) => vec![Target::Mock(m); stages.len()],
            None => Vec::new(),
        },
        Integration::HttpProxy {
            uri,
            timeout_ms,
            ca_file,
        } => {
            let timeout = proxy_timeout(timeout_ms.as_ref(), protocol, d);
            upstreams.ca = ca_file
                .as_ref()
                .map(|f| (f.clone(), super::tls::ca_file(f, d)));
            let out = match uri {
                Some(uri) => proxy_targets(uri, params, protocol, timeout, stages, upstreams, d),
                None => Vec::new(),
            };
            upstreams.ca = None;
            out
        }
        Integration::AwsProxy {
            uri,
            payload_format_version,
            timeout_ms,
        } => lambda::targets(
            uri.as_ref(),
            payload_format_version.as_ref(),
            timeout_ms.as_ref(),
            protocol,
            stages,
            upstreams,
            d,
        ),
    }
}

fn mock(
    status: Option<&Spanned<i64>>,
    headers: &[(Text, Text)],
    body: &str,
    d: &mut Diagnostics<'_>,
) -> Option<MockTarget> {
    let status = match status {
        None => Some(200),
        Some(s) => match u16::try_from(s.value) {
            Ok(n) if (100..=599).contains(&n) => Some(n),
            _ => {
                d.error(s.span.clone(), "`status` must be between 100 and 599");
                None
            }
        },
    };
    let mut ok = true;
    for (name, value) in headers {
        if let Err(reason) = validate::mock_header_name(&name.value) {
            d.error(name.span.clone(), reason);
            ok = false;
        }
        if let Err(reason) = validate::mock_header_value(&value.value) {
            d.error(value.span.clone(), reason);
            ok = false;
        }
    }
    let status = status.filter(|_| ok)?;
    Some(MockTarget {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (n.value.as_str().into(), v.value.as_str().into()))
            .collect(),
        body: body.as_bytes().into(),
    })
}

/// An integration's `timeout_ms` (http_proxy and aws_proxy): within API Gateway's range for the
/// API's protocol, else reported and the default.
pub(super) fn proxy_timeout(
    t: Option<&Spanned<i64>>,
    protocol: Protocol,
    d: &mut Diagnostics<'_>,
) -> Duration {
    let default = Duration::from_millis(DEFAULT_TIMEOUT_MS);
    let Some(t) = t else { return default };
    let (max, kind) = match protocol {
        Protocol::Rest => (MAX_REST_TIMEOUT_MS, "rest"),
        Protocol::Http => (MAX_HTTP_TIMEOUT_MS, "http"),
    };
    if (MIN_TIMEOUT_MS..=max).contains(&t.value) {
        Duration::from_millis(t.value.unsigned_abs())
    } else {
        d.error(
            t.span.clone(),
            format!("`timeout_ms` must be between {MIN_TIMEOUT_MS} and {max} for {kind} APIs"),
        );
        default
    }
}

fn proxy_targets(
    uri: &Text,
    params: &[&str],
    protocol: Protocol,
    timeout: Duration,
    stages: &[model::Stage],
    upstreams: &mut Upstreams,
    d: &mut Diagnostics<'_>,
) -> Vec<Target> {
    let pieces = match uri::pieces(&uri.value) {
        Ok(p) => p,
        Err((range, reason)) => {
            d.error(d.inside(uri, range), reason);
            return Vec::new();
        }
    };
    let mut ok = check_param_references(uri, &pieces, params, d);
    let has_variables = pieces.iter().any(|p| matches!(p, Piece::Variable { .. }));
    for s in stages {
        let Some(stage) = &s.name else { continue };
        for p in &pieces {
            if let Piece::Variable { name, span } = p {
                if !s.variables.iter().any(|(k, _)| k.value == *name) {
                    d.error(
                        d.inside(uri, span.clone()),
                        format!(
                            "stage `{}` does not define the stage variable `{name}`",
                            stage.value
                        ),
                    );
                    ok = false;
                }
            }
        }
    }
    if !ok {
        return Vec::new();
    }
    if stages.is_empty() && !has_variables {
        // Still check the URI of an API without stages.
        if let Err(reason) = proxy_target(&uri.value, params, protocol, timeout, upstreams) {
            d.error(uri.span.clone(), reason);
        }
        return Vec::new();
    }
    let mut out = Vec::with_capacity(stages.len());
    for s in stages {
        let variables: Vec<(&str, &str)> = s
            .variables
            .iter()
            .map(|(k, v)| (k.value.as_str(), v.value.as_str()))
            .collect();
        let Ok(text) = uri::substitute(&pieces, &variables) else {
            return Vec::new();
        };
        match proxy_target(&text, params, protocol, timeout, upstreams) {
            Ok(t) => out.push(Target::HttpProxy(t)),
            Err(reason) => {
                let reason = match (&s.name, has_variables) {
                    (Some(n), true) => format!("in stage `{}` (URI `{text}`): {reason}", n.value),
                    _ => reason,
                };
                d.error(uri.span.clone(), reason);
            }
        }
    }
    out
}

/// Reports each `{name}` in the literal text of the URI that is not a parameter of the route.
fn check_param_references(
    uri: &Text,
    pieces: &[Piece<'_>],
    params: &[&str],
    d: &mut Diagnostics<'_>,
) -> bool {
    let mut ok = true;
    for p in pieces {
        let Piece::Text { text, at } = p else {
            continue;
        };
        match gateway::tokenize(text) {
            Err((offset, reason)) => {
                d.error(d.inside(uri, at + offset..at + offset + 1), reason);
                ok = false;
            }
            Ok(tokens) => {
                for t in tokens {
                    if let Token::Param { name, at: offset } = t {
                        if !params.contains(&name) {
                            let start = at + offset;
                            d.error(
                                d.inside(uri, start..start + name.len() + 2),
                                gateway::unknown_param_reason(name, params),
                            );
                            ok = false;
                        }
                    }
                }
            }
        }
    }
    ok
}

/// The target for one stage's URI (stage variables already substituted).
fn proxy_target(
    text: &str,
    params: &[&str],
    protocol: Protocol,
    timeout: Duration,
    upstreams: &mut Upstreams,
) -> Result<ProxyTarget, String> {
    let u = uri::parse_http(text)?;
    let tls = match (&upstreams.ca, u.tls) {
        (Some((file, _)), false) => {
            return Err(format!(
                "`ca_file` (`{}`) is only for https:// integration URIs",
                file.value
            ))
        }
        // An unreadable CA file was reported at `ca_file`.
        (Some((_, None)), true) => return Err("no usable `ca_file`".to_string()),
        (Some((_, Some(ca))), true) => Some(ca.clone()),
        (None, _) => None,
    };
    let tls = u.tls.then(|| BackendTls {
        server_name: u.host.to_ascii_lowercase().into(),
        ca: tls,
    });
    let upstream = upstreams.index(u.host, u.port, u.authority, tls)?;
    // HTTP APIs send the whole request path when the URI has none (API Gateway's `$default`
    // and greedy routes); REST APIs use the path as written.
    let request_path = protocol == Protocol::Http && (u.path.is_empty() || u.path == "/");
    let path = PathTemplate::new(u.path, u.query, params, request_path)?;
    Ok(ProxyTarget {
        upstream,
        path,
        timeout,
    })
}

/// Backends met so far, deduplicated, and the addresses host names resolved to.
#[derive(Default)]
pub(super) struct Upstreams {
    list: Vec<Upstream>,
    /// The `ca_file` of the integration being compiled (and its certificates if it loaded).
    ca: Option<(Text, Option<Vec<CertificateDer<'static>>>)>,
    resolved: HashMap<(String, u16), Result<SocketAddr, String>>,
}

impl Upstreams {
    pub(super) fn index(
        &mut self,
        host: &str,
        port: u16,
        authority: &str,
        tls: Option<BackendTls>,
    ) -> Result<u32, String> {
        let upstream = Upstream {
            addr: self.resolve(host, port)?,
            host_header: authority.into(),
            tls,
        };
        let i = match self.list.iter().position(|u| *u == upstream) {
            Some(i) => i,
            None => {
                self.list.push(upstream);
                self.list.len() - 1
            }
        };
        u32::try_from(i).map_err(|_| "too many backends".to_string())
    }

    /// The first address `host` resolves to (looked up once per host and port).
    fn resolve(&mut self, host: &str, port: u16) -> Result<SocketAddr, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        self.resolved
            .entry((host.to_string(), port))
            .or_insert_with(|| match (host, port).to_socket_addrs() {
                Ok(mut addrs) => addrs
                    .next()
                    .ok_or_else(|| format!("backend host `{host}` resolves to no address")),
                Err(e) => Err(format!("cannot resolve backend host `{host}`: {e}")),
            })
            .clone()
    }
}
