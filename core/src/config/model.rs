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
    pub idle_timeout_ms: Option<Spanned<i64>>,
    pub client_write_timeout_ms: Option<Spanned<i64>>,
    pub upstream_connect_timeout_ms: Option<Spanned<i64>>,
    pub upstream_pool_size: Option<Spanned<i64>>,
    pub upstream_idle_timeout_ms: Option<Spanned<i64>>,
    pub receive_ring_buffers: Option<Spanned<i64>>,
    pub receive_ring_buffer_bytes: Option<Spanned<i64>>,
}

#[derive(Debug)]
pub(crate) struct Listener {
    pub address: Option<Text>,
    pub port: Option<Spanned<i64>>,
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
