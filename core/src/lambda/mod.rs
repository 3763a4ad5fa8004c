//! Lambda: the pure side of `aws_proxy` integrations and Lambda authorizers (issue 17).
//!
//! - `event`: the payload 1.0 / 2.0 events of an `aws_proxy` integration and the TOKEN /
//!   REQUEST (1.0 / 2.0) events of a Lambda authorizer, built from the request head (guide
//!   L15885-15986, L40783-40845, L13913-14000, L39969-40073).
//! - `result`: a function's result JSON → the client response (statusCode, headers,
//!   multiValueHeaders, cookies, body, isBase64Encoded, 2.0's inference; L16004-16046,
//!   L40964-41020).
//! - `policy`: an authorizer's output (IAM policy, simple response, principalId, context) and
//!   its evaluation against the method ARN (`*` / `?` wildcards, explicit Deny wins).
//! - `cache`: the per-shard authorizer result cache (TTL, bounded, least recently used out);
//!   `inflight`: authorizer calls in progress, shared by concurrent requests of one identity.
//! - `jwt`: JWT authorizers (JWKS, token verification).
//! - `base64`, `time`: binary bodies, `requestTime`.
//!
//! The compiled config types (`LambdaTarget`, `Authorizer`, `IdentitySource`) live here and
//! are held by the gateway model. Nothing here does I/O: `proxy/src/lambda.rs` POSTs the
//! events to the function endpoint (the Lambda Invoke API) and hands the answers back.

pub mod base64;
pub mod cache;
pub mod event;
pub mod inflight;
pub mod jwt;
pub mod policy;
pub mod result;
pub mod time;

use std::time::Duration;

/// Default `[server] account_id`: `requestContext.accountId` and the account in ARNs.
pub const ACCOUNT_ID: &str = "000000000000";
/// Default `[server] region`: the region in method ARNs.
pub const REGION: &str = "local";

/// The AWS region and account tollgate answers as (`[server] region`, `account_id`): the
/// `accountId` of events and the `{region}:{account}` of method ARNs
/// (`arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/{METHOD}/{path}`), so policies
/// written for API Gateway match unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub region: Box<str>,
    /// Exactly 12 digits.
    pub account_id: Box<str>,
}

impl Default for Account {
    fn default() -> Self {
        Account {
            region: REGION.into(),
            account_id: ACCOUNT_ID.into(),
        }
    }
}

impl Account {
    /// Checks a `region`: 1 to 32 of `a-z 0-9 -`, starting with a letter and not ending
    /// with `-` (`us-east-1`, `eu-central-2`, `local`): it goes into ARNs as is.
    pub fn check_region(region: &str) -> Result<(), &'static str> {
        let b = region.as_bytes();
        let ok = (1..=32).contains(&b.len())
            && b[0].is_ascii_lowercase()
            && b[b.len() - 1] != b'-'
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        if ok {
            Ok(())
        } else {
            Err("`region` must be an AWS region name such as \"us-east-1\": 1 to 32 of a-z 0-9 -, starting with a letter")
        }
    }

    /// Checks an `account_id`: exactly 12 digits, as AWS account ids are.
    pub fn check_account_id(id: &str) -> Result<(), &'static str> {
        if id.len() == 12 && id.bytes().all(|c| c.is_ascii_digit()) {
            Ok(())
        } else {
            Err("`account_id` must be exactly 12 digits, such as \"123456789012\"")
        }
    }
}
/// The Invoke API header that marks a function error (`Handled` / `Unhandled`).
pub const FUNCTION_ERROR_HEADER: &str = "x-amz-function-error";
/// Largest function result read (the Lambda synchronous response limit is 6 MB).
pub const MAX_RESULT_BYTES: usize = 6 * 1024 * 1024 + 64 * 1024;
/// Largest authorizer result read (API Gateway caps authorizer results at 8 KB for WebSocket;
/// REST/HTTP policies are small too; 64 KiB leaves room).
pub const MAX_AUTHORIZER_RESULT_BYTES: usize = 64 * 1024;

/// `payload_format_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadVersion {
    V1,
    V2,
}

/// An `aws_proxy` integration for one stage: where its function is invoked.
#[derive(Clone, Debug, PartialEq)]
pub struct LambdaTarget {
    /// Index into `Gateway::upstreams` (the function endpoint).
    pub upstream: u32,
    /// The Invoke API path (`/2015-03-31/functions/NAME/invocations`), query included.
    pub path: Box<str>,
    pub version: PayloadVersion,
    /// Integration timeout: no complete result by then → 504.
    pub timeout: Duration,
}

/// `type` of a Lambda authorizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorizerKind {
    Token,
    Request,
    /// HTTP APIs: a JWT checked against the issuer's keys (`jwt`).
    Jwt,
}

/// Where a JWT authorizer's keys come from.
#[derive(Clone, Debug)]
pub enum JwksSource {
    /// Read from a file when the config is loaded.
    File(jwt::Keys),
    /// Fetched by each shard at start and refreshed in the background: `GET path` on
    /// `upstream`.
    Uri { upstream: u32, path: Box<str> },
}

/// A JWT authorizer's settings.
#[derive(Clone, Debug)]
pub struct JwtSettings {
    pub config: jwt::JwtConfig,
    pub source: JwksSource,
    /// JWKS refresh period (API Gateway caches keys for two hours).
    pub refresh: Duration,
    /// Least time between two fetches asked for by tokens with an unknown `kid`.
    pub cooldown: Duration,
}

/// Where an identity source value is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentitySource {
    /// A request header (case-insensitive name); several fields are joined with `,`.
    Header(Box<str>),
    /// A query string parameter (case-sensitive name); several values joined with `,`.
    Query(Box<str>),
    /// A stage variable.
    StageVariable(Box<str>),
    /// A `$context` variable.
    Context(ContextVariable),
}

/// The `$context` variables an identity source may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextVariable {
    HttpMethod,
    Path,
    RouteKey,
    Stage,
    SourceIp,
    UserAgent,
}

impl ContextVariable {
    pub const ALL: [(&'static str, ContextVariable); 6] = [
        ("httpMethod", ContextVariable::HttpMethod),
        ("path", ContextVariable::Path),
        ("routeKey", ContextVariable::RouteKey),
        ("stage", ContextVariable::Stage),
        ("identity.sourceIp", ContextVariable::SourceIp),
        ("identity.userAgent", ContextVariable::UserAgent),
    ];
}

/// A compiled `[[apis.authorizers]]` entry (Lambda TOKEN / REQUEST).
#[derive(Clone, Debug)]
pub struct Authorizer {
    pub name: Box<str>,
    /// Unique across the gateway: index of this authorizer's cache in a shard.
    pub id: u32,
    pub kind: AuthorizerKind,
    /// Index into `Gateway::upstreams` and the Invoke API path of the authorizer function.
    pub upstream: u32,
    pub path: Box<str>,
    pub identity_sources: Vec<IdentitySource>,
    /// TOKEN: the token must match it, else 401 without calling.
    pub validation: Option<regex::Regex>,
    /// 0: no caching.
    pub ttl: Duration,
    /// Entries kept in each shard's cache for this authorizer.
    pub cache_entries: usize,
    pub version: PayloadVersion,
    /// HTTP APIs, payload 2.0: `{"isAuthorized": bool, "context": {...}}` answers.
    pub simple_responses: bool,
    /// How long the authorizer may take (API Gateway: 10 s).
    pub timeout: Duration,
    /// JWT authorizers: issuer, audiences, keys.
    pub jwt: Option<Box<JwtSettings>>,
}

impl PartialEq for Authorizer {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
