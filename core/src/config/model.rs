//! The config file as written: every section and key of the TOML file with the position it
//! was written at, before any semantic check. A required key that was missing or had the wrong
//! type (already reported by `decode`) is `None`, so later checks can skip it quietly.

use super::diagnostics::Spanned;
use crate::gateway::Protocol;
use std::ops::Range;

pub(crate) type Text = Spanned<String>;

#[derive(Debug, Default)]
pub(crate) struct Config {
    pub server: Server,
    /// Where `listeners` was written, if it was.
    pub listeners_span: Option<Range<usize>>,
    /// `listeners` has entries (perhaps refused ones, reported already).
    pub listeners_written: bool,
    pub listeners: Vec<Listener>,
    pub apis: Vec<Api>,
    pub domains: Vec<Domain>,
    /// `[[api_keys]]` of the main file.
    pub api_keys: Vec<ApiKey>,
    pub usage_plans: Vec<UsagePlan>,
    /// `[admin]`, if written.
    pub admin: Option<Admin>,
    /// `[cluster]`, if written.
    pub cluster: Option<Cluster>,
}

/// `[admin]`: the admin listener (metrics, health).
#[derive(Debug)]
pub(crate) struct Admin {
    pub span: Range<usize>,
    pub address: Option<Text>,
    pub port: Option<Spanned<i64>>,
}

/// `[cluster]`: quotas and throttles shared through Redis.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub redis: Option<Text>,
    pub sync_interval_ms: Option<Spanned<i64>>,
    pub key_prefix: Option<Text>,
    pub fail_open_after_ms: Option<Spanned<i64>>,
}

/// A stage's `access_log = { destination, format }`.
#[derive(Debug)]
pub(crate) struct AccessLog {
    pub span: Range<usize>,
    pub destination: Option<Text>,
    pub format: Option<Text>,
}

/// `[server]`: every key optional.
#[derive(Debug, Default)]
pub(crate) struct Server {
    pub shards: Option<Spanned<i64>>,
    pub pin_cpus: Option<Spanned<bool>>,
    pub read_buffer_bytes: Option<Spanned<i64>>,
    pub max_header_bytes: Option<Spanned<i64>>,
    pub max_body_bytes: Option<Spanned<i64>>,
    pub header_read_timeout_ms: Option<Spanned<i64>>,
    pub body_read_timeout_ms: Option<Spanned<i64>>,
    pub idle_timeout_ms: Option<Spanned<i64>>,
    pub client_write_timeout_ms: Option<Spanned<i64>>,
    pub upstream_connect_timeout_ms: Option<Spanned<i64>>,
    pub upstream_pool_size: Option<Spanned<i64>>,
    pub upstream_idle_timeout_ms: Option<Spanned<i64>>,
    pub receive_ring_buffers: Option<Spanned<i64>>,
    pub receive_ring_buffer_bytes: Option<Spanned<i64>>,
    pub account_throttle: Option<Throttle>,
    pub state_file: Option<Text>,
    pub state_flush_ms: Option<Spanned<i64>>,
    pub api_keys_file: Option<Text>,
    pub drain_timeout_ms: Option<Spanned<i64>>,
    /// Lambda: the region and account of method ARNs and events.
    pub region: Option<Text>,
    pub account_id: Option<Text>,
}

/// `[[api_keys]]` (in the main file or in `api_keys_file`).
#[derive(Debug)]
pub(crate) struct ApiKey {
    pub name: Option<Text>,
    /// The secret: never put it in an error message.
    pub value: Option<Text>,
    pub enabled: Option<Spanned<bool>>,
}

/// `[[usage_plans]]`.
#[derive(Debug)]
pub(crate) struct UsagePlan {
    pub name: Option<Text>,
    pub throttle: Option<Throttle>,
    pub quota: Option<Quota>,
    pub keys: Vec<Text>,
    pub stages: Vec<PlanStage>,
}

/// `quota = { limit, period, offset }`.
#[derive(Debug)]
pub(crate) struct Quota {
    pub limit: Option<Spanned<i64>>,
    pub period: Option<Text>,
    pub offset: Option<Spanned<i64>>,
}

/// `[[usage_plans.stages]]`.
#[derive(Debug)]
pub(crate) struct PlanStage {
    pub span: Range<usize>,
    pub api: Option<Text>,
    pub stage: Option<Text>,
    /// `route key → throttle`, in the order written.
    pub route_throttles: Vec<(Text, Throttle)>,
}

#[derive(Debug)]
pub(crate) struct Listener {
    pub address: Option<Text>,
    pub port: Option<Spanned<i64>>,
    /// `tls = { certificate, key }`: the listener terminates TLS.
    pub tls: Option<TlsFiles>,
}

/// A certificate chain and its private key, as PEM file paths.
#[derive(Debug)]
pub(crate) struct TlsFiles {
    pub certificate: Option<Text>,
    pub key: Option<Text>,
}

#[derive(Debug)]
pub(crate) struct Api {
    /// The `[[apis]]` table (for errors about the API as a whole).
    pub span: Range<usize>,
    pub name: Option<Text>,
    pub protocol: Option<Spanned<Protocol>>,
    pub hosts: Vec<Text>,
    pub stages: Vec<Stage>,
    pub routes: Vec<Route>,
    pub gateway_responses: Vec<GatewayResponse>,
    /// `api_key_source`: `HEADER` (default) or `AUTHORIZER`.
    pub api_key_source: Option<Text>,
    /// `binary_media_types`.
    pub binary_media_types: Vec<Text>,
    pub authorizers: Vec<Authorizer>,
}

/// `[[apis.authorizers]]`: a Lambda authorizer (TOKEN / REQUEST).
#[derive(Debug)]
pub(crate) struct Authorizer {
    pub span: Range<usize>,
    pub name: Option<Text>,
    /// `type`.
    pub kind: Option<Text>,
    pub uri: Option<Text>,
    pub identity_sources: Option<Spanned<Vec<Text>>>,
    pub validation_regex: Option<Text>,
    pub ttl_seconds: Option<Spanned<i64>>,
    pub payload_format_version: Option<Text>,
    pub simple_responses: Option<Spanned<bool>>,
    pub timeout_ms: Option<Spanned<i64>>,
    pub cache_entries: Option<Spanned<i64>>,
    /// JWT authorizers.
    pub issuer: Option<Text>,
    pub audiences: Option<Spanned<Vec<Text>>>,
    pub jwks_uri: Option<Text>,
    pub jwks_file: Option<Text>,
    pub jwks_refresh_seconds: Option<Spanned<i64>>,
    pub jwks_cooldown_ms: Option<Spanned<i64>>,
}

/// `[[apis.gateway_responses]]`: one customised gateway response type.
#[derive(Debug)]
pub(crate) struct GatewayResponse {
    /// The table (for errors about the entry as a whole).
    pub span: Range<usize>,
    /// `type` (the response type name).
    pub kind: Option<Text>,
    pub status: Option<Spanned<i64>>,
    pub headers: Vec<(Text, Text)>,
    pub body: Option<Text>,
}

#[derive(Debug)]
pub(crate) struct Stage {
    pub name: Option<Text>,
    /// `(name, value)` in the order written.
    pub variables: Vec<(Text, Text)>,
    pub throttle: Option<Throttle>,
    /// `route key → throttle`, in the order written.
    pub route_throttles: Vec<(Text, Throttle)>,
    pub access_log: Option<AccessLog>,
}

#[derive(Debug)]
pub(crate) struct Throttle {
    pub rate: Option<Spanned<f64>>,
    pub burst: Option<Spanned<i64>>,
}

#[derive(Debug)]
pub(crate) struct Route {
    pub key: Option<Text>,
    pub integration: Option<Integration>,
    pub api_key_required: Option<Spanned<bool>>,
    /// `authorizer`: the name of one of the API's authorizers.
    pub authorizer: Option<Text>,
    /// `authorization_scopes` (JWT authorizers).
    pub authorization_scopes: Vec<Text>,
}

#[derive(Debug)]
pub(crate) enum Integration {
    HttpProxy {
        uri: Option<Text>,
        timeout_ms: Option<Spanned<i64>>,
        /// PEM bundle an `https://` backend's certificate is verified against.
        ca_file: Option<Text>,
    },
    Mock {
        status: Option<Spanned<i64>>,
        headers: Vec<(Text, Text)>,
        body: String,
    },
    /// `aws_proxy`: a Lambda function behind the Invoke API.
    AwsProxy {
        uri: Option<Text>,
        payload_format_version: Option<Text>,
        timeout_ms: Option<Spanned<i64>>,
    },
}

#[derive(Debug)]
pub(crate) struct Domain {
    pub name: Option<Text>,
    pub mappings: Vec<Mapping>,
    /// `certificate` and `key` (both or neither), span of the `[[domains]]` table.
    pub tls: Option<TlsFiles>,
    pub security_policy: Option<Text>,
    /// `mutual_tls = { truststore }`.
    pub truststore: Option<Text>,
    /// Where `mutual_tls` was written.
    pub mutual_tls_span: Option<Range<usize>>,
}

#[derive(Debug)]
pub(crate) struct Mapping {
    /// The `[[domains.mappings]]` table.
    pub span: Range<usize>,
    /// `None` when not written: the `(none)` mapping `""`.
    pub path: Option<Text>,
    pub api: Option<Text>,
    pub stage: Option<Text>,
}
