//! TOML text → `model::Config`: parses with positions (toml_edit keeps the span of every key
//! and value) and reads each section by hand, so that unknown keys, wrong types and missing
//! keys are all reported, each at its own position, instead of stopping at the first one.
//! A syntax error stops everything: it is the only error reported then.

use super::diagnostics::{Diagnostics, Spanned};
use super::model::{
    AccessLog, Admin, Api, ApiKey, Authorizer, Cluster, Config, Domain, GatewayResponse,
    Integration, Listener, Mapping, PlanStage, Quota, Route, Server, Stage, Text, Throttle,
    TlsFiles, UsagePlan,
};
use crate::gateway::Protocol;
use std::ops::Range;
use toml_edit::{ImDocument, Item, TableLike};

const ROOT_KEYS: &[&str] = &[
    "server",
    "listeners",
    "apis",
    "domains",
    "api_keys",
    "usage_plans",
    "admin",
    "cluster",
];
/// The root of an `api_keys_file`.
const KEYS_FILE_ROOT_KEYS: &[&str] = &["api_keys"];
const SERVER_KEYS: &[&str] = &[
    "shards",
    "pin_cpus",
    "read_buffer_bytes",
    "max_header_bytes",
    "max_body_bytes",
    "header_read_timeout_ms",
    "body_read_timeout_ms",
    "idle_timeout_ms",
    "client_write_timeout_ms",
    "upstream_connect_timeout_ms",
    "upstream_pool_size",
    "upstream_idle_timeout_ms",
    "receive_ring_buffers",
    "receive_ring_buffer_bytes",
    "account_throttle",
    "state_file",
    "state_flush_ms",
    "api_keys_file",
    "drain_timeout_ms",
];
const LISTENER_KEYS: &[&str] = &["address", "port", "tls"];
const TLS_KEYS: &[&str] = &["certificate", "key"];
const MUTUAL_TLS_KEYS: &[&str] = &["truststore"];
const API_KEYS: &[&str] = &[
    "name",
    "protocol",
    "hosts",
    "stages",
    "routes",
    "gateway_responses",
    "api_key_source",
    "binary_media_types",
    "authorizers",
];
const GATEWAY_RESPONSE_KEYS: &[&str] = &["type", "status", "headers", "body"];
const STAGE_KEYS: &[&str] = &[
    "name",
    "variables",
    "throttle",
    "route_throttles",
    "access_log",
];
const ACCESS_LOG_KEYS: &[&str] = &["destination", "format"];
const ADMIN_KEYS: &[&str] = &["address", "port"];
const CLUSTER_KEYS: &[&str] = &[
    "redis",
    "sync_interval_ms",
    "key_prefix",
    "fail_open_after_ms",
];
const THROTTLE_KEYS: &[&str] = &["rate", "burst"];
const ROUTE_KEYS: &[&str] = &[
    "key",
    "integration",
    "api_key_required",
    "authorizer",
    "authorization_scopes",
];
const AWS_PROXY_KEYS: &[&str] = &["type", "uri", "payload_format_version", "timeout_ms"];
const AUTHORIZER_KEYS: &[&str] = &[
    "name",
    "type",
    "uri",
    "identity_sources",
    "validation_regex",
    "ttl_seconds",
    "payload_format_version",
    "simple_responses",
    "timeout_ms",
    "cache_entries",
    "issuer",
    "audiences",
    "jwks_uri",
    "jwks_file",
    "jwks_refresh_seconds",
    "jwks_cooldown_ms",
];
const API_KEY_KEYS: &[&str] = &["name", "value", "enabled"];
const USAGE_PLAN_KEYS: &[&str] = &["name", "throttle", "quota", "keys", "stages"];
const QUOTA_KEYS: &[&str] = &["limit", "period", "offset"];
const PLAN_STAGE_KEYS: &[&str] = &["api", "stage", "route_throttles"];
const HTTP_PROXY_KEYS: &[&str] = &["type", "uri", "timeout_ms", "ca_file"];
const MOCK_KEYS: &[&str] = &["type", "status", "headers", "body"];
const DOMAIN_KEYS: &[&str] = &[
    "name",
    "mappings",
    "certificate",
    "key",
    "security_policy",
    "mutual_tls",
];
const MAPPING_KEYS: &[&str] = &["path", "api", "stage"];

/// Parses `text`; `None` after a syntax error (reported). Everything else that is wrong with
/// the shape of the file is reported and left out of the model.
pub(crate) fn decode(text: &str, d: &mut Diagnostics<'_>) -> Option<Config> {
    let doc = parse(text, d)?;
    let root = Fields::new(doc.as_table(), 0..0);
    root.check_keys(ROOT_KEYS, d);
    let mut config = Config::default();
    if let Some(server) = root.table("server", d) {
        config.server = server_section(&server, d);
    }
    if let Some(admin) = root.table("admin", d) {
        admin.check_keys(ADMIN_KEYS, d);
        config.admin = Some(Admin {
            span: admin.span.clone(),
            address: admin.string("address", d),
            port: admin.int("port", d),
        });
    }
    if let Some(c) = root.table("cluster", d) {
        config.cluster = Some(cluster_section(&c, d));
    }
    let listeners = root.tables("listeners", d);
    if let Some((item, span)) = root.get("listeners") {
        config.listeners_span = Some(span);
        config.listeners_written = !matches!(item.as_array(), Some(a) if a.is_empty());
    }
    for t in listeners {
        t.check_keys(LISTENER_KEYS, d);
        config.listeners.push(Listener {
            address: t.required(t.string("address", d), "address", "[[listeners]]", d),
            port: t.required(t.int("port", d), "port", "[[listeners]]", d),
            tls: t.table("tls", d).map(|tls| {
                tls.check_keys(TLS_KEYS, d);
                TlsFiles {
                    certificate: tls.required(
                        tls.string("certificate", d),
                        "certificate",
                        "a listener's `tls`",
                        d,
                    ),
                    key: tls.required(tls.string("key", d), "key", "a listener's `tls`", d),
                }
            }),
        });
    }
    for t in root.tables("apis", d) {
        config.apis.push(api(&t, d));
    }
    for t in root.tables("domains", d) {
        t.check_keys(DOMAIN_KEYS, d);
        let mut mappings = Vec::new();
        for m in t.tables("mappings", d) {
            m.check_keys(MAPPING_KEYS, d);
            mappings.push(Mapping {
                span: m.span.clone(),
                path: m.string("path", d),
                api: m.required(m.string("api", d), "api", "[[domains.mappings]]", d),
                stage: m.required(m.string("stage", d), "stage", "[[domains.mappings]]", d),
            });
        }
        config.domains.push(domain_tls(
            &t,
            Domain {
                name: t.required(t.string("name", d), "name", "[[domains]]", d),
                mappings,
                tls: None,
                security_policy: None,
                truststore: None,
                mutual_tls_span: None,
            },
            d,
        ));
    }
    config.api_keys = api_keys(&root, d);
    for t in root.tables("usage_plans", d) {
        config.usage_plans.push(usage_plan(&t, d));
    }
    Some(config)
}

/// Parses an `api_keys_file` (only `[[api_keys]]` tables); `None` after a syntax error.
pub(crate) fn decode_keys_file(text: &str, d: &mut Diagnostics<'_>) -> Option<Vec<ApiKey>> {
    let doc = parse(text, d)?;
    let root = Fields::new(doc.as_table(), 0..0);
    root.check_keys(KEYS_FILE_ROOT_KEYS, d);
    Some(api_keys(&root, d))
}

fn api_keys(root: &Fields<'_>, d: &mut Diagnostics<'_>) -> Vec<ApiKey> {
    root.tables("api_keys", d)
        .iter()
        .map(|t| {
            t.check_keys(API_KEY_KEYS, d);
            ApiKey {
                name: t.required(t.string("name", d), "name", "[[api_keys]]", d),
                value: t.required(t.string("value", d), "value", "[[api_keys]]", d),
                enabled: t.bool("enabled", d),
            }
        })
        .collect()
}

fn usage_plan(t: &Fields<'_>, d: &mut Diagnostics<'_>) -> UsagePlan {
    t.check_keys(USAGE_PLAN_KEYS, d);
    let quota = t.table("quota", d).map(|q| {
        q.check_keys(QUOTA_KEYS, d);
        Quota {
            limit: q.required(q.int("limit", d), "limit", "quota", d),
            period: q.required(q.string("period", d), "period", "quota", d),
            offset: q.int("offset", d),
        }
    });
    let stages = t
        .tables("stages", d)
        .iter()
        .map(|s| {
            s.check_keys(PLAN_STAGE_KEYS, d);
            PlanStage {
                span: s.span.clone(),
                api: s.required(s.string("api", d), "api", "[[usage_plans.stages]]", d),
                stage: s.required(s.string("stage", d), "stage", "[[usage_plans.stages]]", d),
                route_throttles: throttle_map(s, "route_throttles", d),
            }
        })
        .collect();
    UsagePlan {
        name: t.required(t.string("name", d), "name", "[[usage_plans]]", d),
        throttle: throttle(t, "throttle", d),
        quota,
        keys: t.strings("keys", d),
        stages,
    }
}

/// `key = { rate, burst }`.
fn throttle(t: &Fields<'_>, key: &str, d: &mut Diagnostics<'_>) -> Option<Throttle> {
    t.table(key, d).map(|th| throttle_fields(&th, key, d))
}

fn throttle_fields(th: &Fields<'_>, what: &str, d: &mut Diagnostics<'_>) -> Throttle {
    th.check_keys(THROTTLE_KEYS, d);
    Throttle {
        rate: th.required(th.float("rate", d), "rate", what, d),
        burst: th.required(th.int("burst", d), "burst", what, d),
    }
}

/// `key = { "GET /pets" = { rate, burst }, ... }`.
fn throttle_map(t: &Fields<'_>, key: &str, d: &mut Diagnostics<'_>) -> Vec<(Text, Throttle)> {
    let Some(map) = t.table(key, d) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (route, _) in map.table.iter() {
        let route_span = map.key_span(route);
        if let Some(th) = map.table(route, d) {
            let what = format!("{key}.\"{route}\"");
            out.push((
                Spanned::new(route.to_string(), route_span),
                throttle_fields(&th, &what, d),
            ));
        }
    }
    out
}

/// A domain's TLS keys: `certificate` and `key` (both or neither), `security_policy`,
/// `mutual_tls = { truststore }`.
fn domain_tls(t: &Fields<'_>, mut dom: Domain, d: &mut Diagnostics<'_>) -> Domain {
    let certificate = t.string("certificate", d);
    let key = t.string("key", d);
    match (&certificate, &key) {
        (Some(_), None) if t.get("key").is_none() => d.error(
            t.span.clone(),
            "a domain with a `certificate` needs its `key` too",
        ),
        (None, Some(_)) if t.get("certificate").is_none() => d.error(
            t.span.clone(),
            "a domain with a `key` needs its `certificate` too",
        ),
        _ => {}
    }
    if certificate.is_some() || key.is_some() {
        dom.tls = Some(TlsFiles { certificate, key });
    }
    dom.security_policy = t.string("security_policy", d);
    if let Some(m) = t.table("mutual_tls", d) {
        m.check_keys(MUTUAL_TLS_KEYS, d);
        dom.mutual_tls_span = Some(m.span.clone());
        dom.truststore = m.required(m.string("truststore", d), "truststore", "`mutual_tls`", d);
    }
    dom
}

/// The TOML document of `text`; `None` after a syntax error (reported at its position).
fn parse<'t>(text: &'t str, d: &mut Diagnostics<'_>) -> Option<ImDocument<&'t str>> {
    match ImDocument::parse(text) {
        Ok(doc) => Some(doc),
        Err(e) => {
            d.error(e.span().unwrap_or(0..0), plain_message(e.message()));
            None
        }
    }
}

/// toml's parse message on one line (`invalid table header\nexpected ...` → `...: expected ...`).
fn plain_message(message: &str) -> String {
    let parts: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if parts.is_empty() {
        "invalid TOML".to_string()
    } else {
        parts.join(": ")
    }
}

/// `[cluster]`: every key but `redis` optional.
fn cluster_section(t: &Fields<'_>, d: &mut Diagnostics<'_>) -> Cluster {
    t.check_keys(CLUSTER_KEYS, d);
    Cluster {
        redis: t.required(t.string("redis", d), "redis", "[cluster]", d),
        sync_interval_ms: t.int("sync_interval_ms", d),
        key_prefix: t.string("key_prefix", d),
        fail_open_after_ms: t.int("fail_open_after_ms", d),
    }
}

fn server_section(t: &Fields<'_>, d: &mut Diagnostics<'_>) -> Server {
    t.check_keys(SERVER_KEYS, d);
    Server {
        shards: t.int("shards", d),
        pin_cpus: t.bool("pin_cpus", d),
        read_buffer_bytes: t.int("read_buffer_bytes", d),
        max_header_bytes: t.int("max_header_bytes", d),
        max_body_bytes: t.int("max_body_bytes", d),
        header_read_timeout_ms: t.int("header_read_timeout_ms", d),
        body_read_timeout_ms: t.int("body_read_timeout_ms", d),
        idle_timeout_ms: t.int("idle_timeout_ms", d),
        client_write_timeout_ms: t.int("client_write_timeout_ms", d),
        upstream_connect_timeout_ms: t.int("upstream_connect_timeout_ms", d),
        upstream_pool_size: t.int("upstream_pool_size", d),
        upstream_idle_timeout_ms: t.int("upstream_idle_timeout_ms", d),
        receive_ring_buffers: t.int("receive_ring_buffers", d),
        receive_ring_buffer_bytes: t.int("receive_ring_buffer_bytes", d),
        account_throttle: throttle(t, "account_throttle", d),
        state_file: t.string("state_file", d),
        state_flush_ms: t.int("state_flush_ms", d),
        api_keys_file: t.string("api_keys_file", d),
        drain_timeout_ms: t.int("drain_timeout_ms", d),
    }
}

fn api(t: &Fields<'_>, d: &mut Diagnostics<'_>) -> Api {
    t.check_keys(API_KEYS, d);
    let protocol = protocol(t, d);
    let stages = t.tables("stages", d).iter().map(|s| stage(s, d)).collect();
    let routes = t.tables("routes", d).iter().map(|r| route(r, d)).collect();
    let gateway_responses = t
        .tables("gateway_responses", d)
        .iter()
        .map(|g| gateway_response(g, d))
        .collect();
    Api {
        span: t.span.clone(),
        name: t.required(t.string("name", d), "name", "[[apis]]", d),
        protocol,
        hosts: t.strings("hosts", d),
        stages,
        routes,
        gateway_responses,
        api_key_source: t.string("api_key_source", d),
        binary_media_types: t.strings("binary_media_types", d),
        authorizers: t
            .tables("authorizers", d)
            .iter()
            .map(|a| authorizer(a, d))
            .collect(),
    }
}

/// An API's required `protocol`: `rest` or `http`.
fn protocol(t: &Fields<'_>, d: &mut Diagnostics<'_>) -> Option<Spanned<Protocol>> {
    t.required(t.string("protocol", d), "protocol", "[[apis]]", d)
        .and_then(|p| match p.value.as_str() {
            "rest" => Some(Spanned::new(Protocol::Rest, p.span)),
            "http" => Some(Spanned::new(Protocol::Http, p.span)),
            other => {
                d.error(
                    p.span,
                    format!("unknown protocol `{other}`, expected `rest` or `http`"),
                );
                None
            }
        })
}

/// One `[[apis.stages]]`.
fn stage(s: &Fields<'_>, d: &mut Diagnostics<'_>) -> Stage {
    s.check_keys(STAGE_KEYS, d);
    Stage {
        name: s.required(s.string("name", d), "name", "[[apis.stages]]", d),
        variables: s.string_map("variables", d),
        throttle: throttle(s, "throttle", d),
        route_throttles: throttle_map(s, "route_throttles", d),
        access_log: s.table("access_log", d).map(|a| access_log(&a, d)),
    }
}

/// A stage's `access_log`: `destination` and `format`, both required.
fn access_log(a: &Fields<'_>, d: &mut Diagnostics<'_>) -> AccessLog {
    a.check_keys(ACCESS_LOG_KEYS, d);
    AccessLog {
        span: a.span.clone(),
        destination: a.required(a.string("destination", d), "destination", "access_log", d),
        format: a.required(a.string("format", d), "format", "access_log", d),
    }
}

/// One `[[apis.routes]]` with its required `integration`.
fn route(r: &Fields<'_>, d: &mut Diagnostics<'_>) -> Route {
    r.check_keys(ROUTE_KEYS, d);
    let integration = r
        .required(
            r.table("integration", d),
            "integration",
            "[[apis.routes]]",
            d,
        )
        .and_then(|i| integration(&i, d));
    Route {
        key: r.required(r.string("key", d), "key", "[[apis.routes]]", d),
        integration,
        api_key_required: r.bool("api_key_required", d),
        authorizer: r.string("authorizer", d),
        authorization_scopes: r.strings("authorization_scopes", d),
    }
}

/// One `[[apis.gateway_responses]]`.
fn gateway_response(g: &Fields<'_>, d: &mut Diagnostics<'_>) -> GatewayResponse {
    g.check_keys(GATEWAY_RESPONSE_KEYS, d);
    GatewayResponse {
        span: g.span.clone(),
        kind: g.required(g.string("type", d), "type", "[[apis.gateway_responses]]", d),
        status: g.int("status", d),
        headers: g.string_map("headers", d),
        body: g.string("body", d),
    }
}

fn authorizer(t: &Fields<'_>, d: &mut Diagnostics<'_>) -> Authorizer {
    t.check_keys(AUTHORIZER_KEYS, d);
    let what = "[[apis.authorizers]]";
    let identity_sources = t
        .get("identity_sources")
        .map(|(_, span)| Spanned::new(t.strings("identity_sources", d), span));
    Authorizer {
        span: t.span.clone(),
        name: t.required(t.string("name", d), "name", what, d),
        kind: t.required(t.string("type", d), "type", what, d),
        uri: t.string("uri", d),
        identity_sources,
        validation_regex: t.string("validation_regex", d),
        ttl_seconds: t.int("ttl_seconds", d),
        payload_format_version: t.string("payload_format_version", d),
        simple_responses: t.bool("simple_responses", d),
        timeout_ms: t.int("timeout_ms", d),
        cache_entries: t.int("cache_entries", d),
        issuer: t.string("issuer", d),
        audiences: t
            .get("audiences")
            .map(|(_, span)| Spanned::new(t.strings("audiences", d), span)),
        jwks_uri: t.string("jwks_uri", d),
        jwks_file: t.string("jwks_file", d),
        jwks_refresh_seconds: t.int("jwks_refresh_seconds", d),
        jwks_cooldown_ms: t.int("jwks_cooldown_ms", d),
    }
}

fn integration(t: &Fields<'_>, d: &mut Diagnostics<'_>) -> Option<Integration> {
    let kind = t.required(t.string("type", d), "type", "integration", d)?;
    match kind.value.as_str() {
        "http_proxy" => {
            t.check_keys(HTTP_PROXY_KEYS, d);
            Some(Integration::HttpProxy {
                uri: t.required(t.string("uri", d), "uri", "an http_proxy integration", d),
                timeout_ms: t.int("timeout_ms", d),
                ca_file: t.string("ca_file", d),
            })
        }
        "mock" => {
            t.check_keys(MOCK_KEYS, d);
            Some(Integration::Mock {
                status: t.int("status", d),
                headers: t.string_map("headers", d),
                body: t.string("body", d).map(|b| b.value).unwrap_or_default(),
            })
        }
        "aws_proxy" => {
            t.check_keys(AWS_PROXY_KEYS, d);
            Some(Integration::AwsProxy {
                uri: t.required(t.string("uri", d), "uri", "an aws_proxy integration", d),
                payload_format_version: t.string("payload_format_version", d),
                timeout_ms: t.int("timeout_ms", d),
            })
        }
        other => {
            d.error(
                kind.span,
                format!(
                    "unknown integration type `{other}`, expected `http_proxy`, `mock` or `aws_proxy`"
                ),
            );
            None
        }
    }
}

/// The allowed key a misspelled `key` most likely meant: one it is a prefix of (or that is a
/// prefix of it), else one within two edits.
pub(crate) fn closest<'k>(key: &str, allowed: &[&'k str]) -> Option<&'k str> {
    let prefix = allowed
        .iter()
        .find(|k| key.len() >= 3 && k.len() >= 3 && (k.starts_with(key) || key.starts_with(**k)));
    if let Some(k) = prefix {
        return Some(k);
    }
    allowed
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(n, _)| *n <= 2)
        .min_by_key(|(n, _)| *n)
        .map(|(_, k)| k)
}

/// Levenshtein distance (keys are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// `an integer`, `a string`, ... (from `type_name()`) for "found ..." in type errors.
fn describe(name: &str) -> String {
    match name.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {name}"),
        _ => format!("a {name}"),
    }
}

/// A TOML table (header or inline) being read, with the span to report table-wide errors at.
struct Fields<'a> {
    table: &'a dyn TableLike,
    span: Range<usize>,
}

impl<'a> Fields<'a> {
    fn new(table: &'a dyn TableLike, span: Range<usize>) -> Self {
        Fields { table, span }
    }

    /// Reports every key not in `allowed`, at the key.
    fn check_keys(&self, allowed: &[&str], d: &mut Diagnostics<'_>) {
        for (key, _) in self.table.iter() {
            if !allowed.contains(&key) {
                let list: Vec<String> = allowed.iter().map(|k| format!("`{k}`")).collect();
                let hint = match closest(key, allowed) {
                    Some(k) => format!(" (did you mean `{k}`?)"),
                    None => String::new(),
                };
                d.error(
                    self.key_span(key),
                    format!(
                        "unknown key `{key}`, expected one of {}{hint}",
                        list.join(", ")
                    ),
                );
            }
        }
    }

    fn key_span(&self, key: &str) -> Range<usize> {
        self.table
            .key(key)
            .and_then(|k| k.span())
            .unwrap_or_else(|| self.span.clone())
    }

    /// The item under `key` and the span to report it at (its value, else its key).
    fn get(&self, key: &str) -> Option<(&'a Item, Range<usize>)> {
        let item = self.table.get(key)?;
        let span = item.span().unwrap_or_else(|| self.key_span(key));
        Some((item, span))
    }

    /// `value` if `key` was written; reports `key` missing if it was not written at all (a
    /// wrong-typed value was already reported).
    fn required<T>(
        &self,
        value: Option<T>,
        key: &str,
        what: &str,
        d: &mut Diagnostics<'_>,
    ) -> Option<T> {
        if value.is_none() && self.get(key).is_none() {
            d.error(self.span.clone(), format!("missing key `{key}` in {what}"));
        }
        value
    }

    fn wrong_type(
        &self,
        key: &str,
        item: &Item,
        span: Range<usize>,
        want: &str,
        d: &mut Diagnostics<'_>,
    ) {
        d.error(
            span,
            format!(
                "`{key}` must be {want}, found {}",
                describe(item.type_name())
            ),
        );
    }

    fn string(&self, key: &str, d: &mut Diagnostics<'_>) -> Option<Text> {
        let (item, span) = self.get(key)?;
        match item.as_str() {
            Some(s) => Some(Spanned::new(s.to_string(), span)),
            None => {
                self.wrong_type(key, item, span, "a string", d);
                None
            }
        }
    }

    fn int(&self, key: &str, d: &mut Diagnostics<'_>) -> Option<Spanned<i64>> {
        let (item, span) = self.get(key)?;
        match item.as_integer() {
            Some(n) => Some(Spanned::new(n, span)),
            None => {
                self.wrong_type(key, item, span, "an integer", d);
                None
            }
        }
    }

    fn float(&self, key: &str, d: &mut Diagnostics<'_>) -> Option<Spanned<f64>> {
        let (item, span) = self.get(key)?;
        let number = item
            .as_float()
            .or_else(|| item.as_integer().map(|n| n as f64));
        match number {
            Some(n) => Some(Spanned::new(n, span)),
            None => {
                self.wrong_type(key, item, span, "a number", d);
                None
            }
        }
    }

    fn bool(&self, key: &str, d: &mut Diagnostics<'_>) -> Option<Spanned<bool>> {
        let (item, span) = self.get(key)?;
        match item.as_bool() {
            Some(b) => Some(Spanned::new(b, span)),
            None => {
                self.wrong_type(key, item, span, "a boolean", d);
                None
            }
        }
    }

    /// A sub-table (`[x]` or `x = { ... }`).
    fn table(&self, key: &str, d: &mut Diagnostics<'_>) -> Option<Fields<'a>> {
        let (item, span) = self.get(key)?;
        match item.as_table_like() {
            Some(t) => Some(Fields::new(t, span)),
            None => {
                self.wrong_type(key, item, span, "a table", d);
                None
            }
        }
    }

    /// An array of tables: `[[x]]` sections or `x = [{ ... }, ...]`.
    fn tables(&self, key: &str, d: &mut Diagnostics<'_>) -> Vec<Fields<'a>> {
        let Some((item, span)) = self.get(key) else {
            return Vec::new();
        };
        if let Some(aot) = item.as_array_of_tables() {
            return aot
                .iter()
                .map(|t| Fields::new(t, t.span().unwrap_or_else(|| span.clone())))
                .collect();
        }
        let Some(array) = item.as_array() else {
            self.wrong_type(
                key,
                item,
                span,
                &format!("an array of tables (`[[{key}]]`)"),
                d,
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for v in array.iter() {
            let at = v.span().unwrap_or_else(|| span.clone());
            match v.as_inline_table() {
                Some(t) => out.push(Fields::new(t, at)),
                None => d.error(
                    at,
                    format!(
                        "each entry of `{key}` must be a table, found {}",
                        describe(v.type_name())
                    ),
                ),
            }
        }
        out
    }

    /// A table of string values (`variables`, `headers`): `(key, value)` in written order.
    fn string_map(&self, key: &str, d: &mut Diagnostics<'_>) -> Vec<(Text, Text)> {
        let Some(t) = self.table(key, d) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, item) in t.table.iter() {
            let name_span = t.key_span(name);
            let span = item.span().unwrap_or_else(|| name_span.clone());
            match item.as_str() {
                Some(v) => out.push((
                    Spanned::new(name.to_string(), name_span),
                    Spanned::new(v.to_string(), span),
                )),
                None => t.wrong_type(&format!("{key}.{name}"), item, span, "a string", d),
            }
        }
        out
    }

    /// An array of strings.
    fn strings(&self, key: &str, d: &mut Diagnostics<'_>) -> Vec<Text> {
        let Some((item, span)) = self.get(key) else {
            return Vec::new();
        };
        let Some(array) = item.as_array() else {
            self.wrong_type(key, item, span, "an array of strings", d);
            return Vec::new();
        };
        let mut out = Vec::new();
        for v in array.iter() {
            let at = v.span().unwrap_or_else(|| span.clone());
            match v.as_str() {
                Some(s) => out.push(Spanned::new(s.to_string(), at)),
                None => d.error(
                    at,
                    format!(
                        "each entry of `{key}` must be a string, found {}",
                        describe(v.type_name())
                    ),
                ),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_key_that_was_meant() {
        assert_eq!(closest("prot", API_KEYS), Some("protocol"));
        assert_eq!(
            closest("idle_timeout", SERVER_KEYS),
            Some("idle_timeout_ms")
        );
        assert_eq!(closest("shard", SERVER_KEYS), Some("shards"));
        assert_eq!(closest("nmae", API_KEYS), Some("name"));
        assert_eq!(closest("stgaes", API_KEYS), Some("stages"));
        assert_eq!(closest("frobnicate", API_KEYS), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn syntax_messages_are_one_line() {
        assert_eq!(
            plain_message("invalid table header\nexpected `.`, `]]`\n"),
            "invalid table header: expected `.`, `]]`"
        );
        assert_eq!(plain_message(""), "invalid TOML");
    }
}
