//! Gateway responses: every answer tollgate makes without the backend, as one of API Gateway's
//! 21 response types (guide L22508-22935, DIGEST §5.1), with its documented status, JSON body
//! and `x-amzn-ErrorType`. Protocol-level refusals (400 malformed request, 408, 431, 501, 505)
//! are not gateway responses: `http::error` names them and `pipeline::refuse` writes them.
//!
//! A response is resolved per API: the type's own customisation, then DEFAULT_4XX / DEFAULT_5XX,
//! then the built-in default below (details on `GatewayResponses`). `GatewayResponses` is the
//! per-API table of `CustomResponse`s (`[[apis.gateway_responses]]`: status, static headers,
//! a `BodyTemplate` compiled at load into text and `$context` / `$stageVariables` variables);
//! `write` renders one response into the connection's out buffer without allocating (the body
//! length is computed first, so `content-length` is exact). Templates may quote the request's
//! authorizer result (`$context.authorizer.principalId`, `.claims.NAME`, `.NAME`) and API key
//! name (`$context.identity.apiKeyId`); the names are resolved at compile time. A REST API's
//! built-in answer to an authorizer policy's denial says `{"Message":...}` with a capital M, as
//! API Gateway's does. The config-side checks with
//! positions are in `config::compile`; the rules themselves (`check_status`,
//! `check_header_name`, `check_header_value`, template syntax) are here.

use crate::forward::{push_decimal, reason_phrase};
use crate::lambda::policy::{authorizer_name, AuthResult, AuthValue, AuthorizerName};

/// API Gateway's gateway response types (`[[apis.gateway_responses]] type = "..."`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResponseType {
    AccessDenied,
    ApiConfigurationError,
    AuthorizerConfigurationError,
    AuthorizerFailure,
    BadRequestParameters,
    BadRequestBody,
    Default4xx,
    Default5xx,
    ExpiredToken,
    IntegrationFailure,
    IntegrationTimeout,
    InvalidApiKey,
    InvalidSignature,
    MissingAuthenticationToken,
    QuotaExceeded,
    RequestTooLarge,
    ResourceNotFound,
    Throttled,
    Unauthorized,
    UnsupportedMediaType,
    WafFiltered,
}

/// A type's built-in answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Builtin {
    pub status: u16,
    /// `x-amzn-ErrorType`.
    pub error_type: &'static str,
    /// The text of `{"message":"..."}`; `None` renders `{"message":null}` (as API Gateway does
    /// for authorizer errors).
    pub message: Option<&'static str>,
}

const fn b(status: u16, error_type: &'static str, message: &'static str) -> Builtin {
    Builtin {
        status,
        error_type,
        message: Some(message),
    }
}

impl ResponseType {
    pub const ALL: [ResponseType; 21] = {
        use ResponseType::*;
        [
            AccessDenied,
            ApiConfigurationError,
            AuthorizerConfigurationError,
            AuthorizerFailure,
            BadRequestParameters,
            BadRequestBody,
            Default4xx,
            Default5xx,
            ExpiredToken,
            IntegrationFailure,
            IntegrationTimeout,
            InvalidApiKey,
            InvalidSignature,
            MissingAuthenticationToken,
            QuotaExceeded,
            RequestTooLarge,
            ResourceNotFound,
            Throttled,
            Unauthorized,
            UnsupportedMediaType,
            WafFiltered,
        ]
    };

    /// The name used by API Gateway and in the config file (`MISSING_AUTHENTICATION_TOKEN`):
    /// `$context.error.responseType`.
    pub const fn name(self) -> &'static str {
        use ResponseType::*;
        match self {
            AccessDenied => "ACCESS_DENIED",
            ApiConfigurationError => "API_CONFIGURATION_ERROR",
            AuthorizerConfigurationError => "AUTHORIZER_CONFIGURATION_ERROR",
            AuthorizerFailure => "AUTHORIZER_FAILURE",
            BadRequestParameters => "BAD_REQUEST_PARAMETERS",
            BadRequestBody => "BAD_REQUEST_BODY",
            Default4xx => "DEFAULT_4XX",
            Default5xx => "DEFAULT_5XX",
            ExpiredToken => "EXPIRED_TOKEN",
            IntegrationFailure => "INTEGRATION_FAILURE",
            IntegrationTimeout => "INTEGRATION_TIMEOUT",
            InvalidApiKey => "INVALID_API_KEY",
            InvalidSignature => "INVALID_SIGNATURE",
            MissingAuthenticationToken => "MISSING_AUTHENTICATION_TOKEN",
            QuotaExceeded => "QUOTA_EXCEEDED",
            RequestTooLarge => "REQUEST_TOO_LARGE",
            ResourceNotFound => "RESOURCE_NOT_FOUND",
            Throttled => "THROTTLED",
            Unauthorized => "UNAUTHORIZED",
            UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            WafFiltered => "WAF_FILTERED",
        }
    }

    pub fn from_name(name: &str) -> Option<ResponseType> {
        ResponseType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Index into per-type tables (`0..ALL.len()`).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The built-in status, error type and message. Statuses are the guide's (L22735-22925);
    /// texts the guide does not give are API Gateway's observed ones (DIGEST §0 "Gaps").
    /// DEFAULT_4XX / DEFAULT_5XX have no status of their own in API Gateway; their built-ins
    /// here are what tollgate answers for a 4xx / 5xx that has no specific type.
    pub const fn builtin(self) -> Builtin {
        use ResponseType::*;
        match self {
            AccessDenied => b(
                403,
                "AccessDeniedException",
                "User is not authorized to access this resource with an explicit deny",
            ),
            ApiConfigurationError => {
                b(500, "InternalServerErrorException", "Internal server error")
            }
            AuthorizerConfigurationError => Builtin {
                status: 500,
                error_type: "AuthorizerConfigurationException",
                message: None,
            },
            AuthorizerFailure => Builtin {
                status: 500,
                error_type: "AuthorizerFailureException",
                message: None,
            },
            BadRequestParameters => b(400, "BadRequestException", "Invalid request parameters"),
            BadRequestBody => b(400, "BadRequestException", "Invalid request body"),
            Default4xx => b(400, "BadRequestException", "Bad Request"),
            Default5xx => b(500, "InternalServerErrorException", "Internal server error"),
            ExpiredToken => b(
                403,
                "ExpiredTokenException",
                "The security token included in the request is expired",
            ),
            IntegrationFailure => b(504, "InternalServerErrorException", "Internal server error"),
            IntegrationTimeout => b(
                504,
                "InternalServerErrorException",
                "Endpoint request timed out",
            ),
            InvalidApiKey => b(403, "ForbiddenException", "Forbidden"),
            InvalidSignature => b(
                403,
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided",
            ),
            MissingAuthenticationToken => b(
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ),
            QuotaExceeded => b(429, "LimitExceededException", "Limit Exceeded"),
            // The message quotes the configured limit; see `write`.
            RequestTooLarge => b(
                413,
                "RequestTooLargeException",
                "HTTP content length exceeded 10485760 bytes.",
            ),
            ResourceNotFound => b(404, "NotFoundException", "Not Found"),
            Throttled => b(429, "TooManyRequestsException", "Too Many Requests"),
            Unauthorized => b(401, "UnauthorizedException", "Unauthorized"),
            UnsupportedMediaType => b(
                415,
                "UnsupportedMediaTypeException",
                "Unsupported Media Type",
            ),
            WafFiltered => b(403, "ForbiddenException", "Forbidden"),
        }
    }

    /// The DEFAULT_4XX / DEFAULT_5XX type this one falls back to (by its built-in status);
    /// `None` for the two defaults themselves.
    pub const fn fallback(self) -> Option<ResponseType> {
        match self {
            ResponseType::Default4xx | ResponseType::Default5xx => None,
            _ if self.builtin().status < 500 => Some(ResponseType::Default4xx),
            _ => Some(ResponseType::Default5xx),
        }
    }

    /// REQUEST_TOO_LARGE cannot be customised (guide L52968-52969).
    pub const fn customizable(self) -> bool {
        !matches!(self, ResponseType::RequestTooLarge)
    }
}

/// What a response may quote about the request that caused it (`$context.*`,
/// `$stageVariables.*`), and how it is framed.
#[derive(Clone, Copy, Debug)]
pub struct ErrorContext<'a> {
    pub request_id: &'a [u8],
    /// Stage name (`$context.stage`), empty when no stage was matched.
    pub stage: &'a str,
    /// The matched stage's variables (`$stageVariables.NAME`), empty when none.
    pub stage_variables: &'a [(Box<str>, Box<str>)],
    /// Request method as sent (`$context.httpMethod`).
    pub http_method: &'a [u8],
    /// Request path as sent, without the query (`$context.path`).
    pub path: &'a [u8],
    /// Replaces the built-in status when the type is not customised with a status of its own
    /// (e.g. 502 for a malformed backend response answered as DEFAULT_5XX).
    pub status: Option<u16>,
    /// Replaces the built-in message (`$context.error.message`).
    pub message: Option<&'a str>,
    /// Quoted by REQUEST_TOO_LARGE's message.
    pub max_body_bytes: u64,
    /// Add `connection: close`.
    pub close: bool,
    /// A HEAD request: send the head (with the body's length), no body.
    pub head_request: bool,
    /// The authorizer's result for the request, if it got one (`$context.authorizer.*`).
    pub authorizer: Option<&'a AuthResult>,
    /// The name of the API key the request was counted against (`$context.identity.apiKeyId`).
    pub api_key_id: Option<&'a str>,
    /// A REST authorizer policy denied the request: the built-in body is
    /// `{"Message":"..."}` (capital M), as API Gateway answers an explicit deny and a method
    /// no Allow covers.
    pub policy_denial: bool,
}

/// The variables a customised body may use (`$name` or `${name}`), besides
/// `$stageVariables.NAME`.
pub const BODY_VARIABLES: [&str; 9] = [
    "context.requestId",
    "context.error.message",
    "context.error.messageString",
    "context.error.responseType",
    "context.stage",
    "context.httpMethod",
    "context.path",
    "context.authorizer.principalId",
    "context.identity.apiKeyId",
];

/// Longest stage variable name (API Gateway quota, as `config::validate`).
const MAX_STAGE_VARIABLE_NAME: usize = 64;

/// A value a body template substitutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Var {
    RequestId,
    Message,
    MessageString,
    ResponseType,
    Stage,
    HttpMethod,
    Path,
    /// `$stageVariables.NAME`: the name is `text[start..end]` of the template.
    StageVariable {
        start: usize,
        end: usize,
    },
    /// `$context.identity.apiKeyId`.
    ApiKeyId,
    /// `$context.authorizer.principalId`.
    PrincipalId,
    /// `$context.authorizer.claims.NAME` / `claims['NAME']`: NAME is `text[start..end]`.
    Claim {
        start: usize,
        end: usize,
    },
    /// `$context.authorizer.NAME` (a Lambda authorizer's context key): `text[start..end]`.
    AuthorizerKey {
        start: usize,
        end: usize,
    },
    /// A `$context.authorizer.*` name with no value here (`claims` alone, `error`, ...).
    Empty,
}

/// One precompiled segment of a body template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece {
    /// `text[start..end]`, copied as is.
    Text {
        start: usize,
        end: usize,
    },
    Var(Var),
}

/// Why a body template was refused; `range` is in bytes of the template text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateError {
    /// `$name` / `${name}` that is not one of `BODY_VARIABLES` or `stageVariables.NAME`.
    UnknownVariable {
        range: std::ops::Range<usize>,
        name: String,
    },
    /// Anything else (an unclosed `${`, an invalid stage variable name), with the reason.
    Invalid {
        range: std::ops::Range<usize>,
        reason: String,
    },
}

/// A customised body, compiled once at load into literal text and variables, so that `write`
/// only copies (API Gateway's "non-VTL mapping template supporting only simple variable
/// substitutions", guide L22546-22548).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyTemplate {
    text: Box<str>,
    pieces: Box<[Piece]>,
}

/// The built-in body, `{"message":$context.error.messageString}` (what API Gateway's default
/// gateway responses use as their template).
const DEFAULT_BODY: &str = "{\"message\":$context.error.messageString}";
const DEFAULT_PIECES: [Piece; 3] = [
    Piece::Text { start: 0, end: 11 },
    Piece::Var(Var::MessageString),
    Piece::Text { start: 39, end: 40 },
];
/// The built-in body of a REST authorizer policy's denial (`Message`, as API Gateway's).
const DENIAL_BODY: &str = "{\"Message\":$context.error.messageString}";

impl BodyTemplate {
    /// Compiles `text`. A `$` followed by a letter or `_` starts a variable reference, which
    /// runs over `[A-Za-z0-9_]` words joined by single dots (`$context.path.` ends before the
    /// last dot); `${name}` delimits it explicitly. Any other `$` is literal text.
    pub fn parse(text: &str) -> Result<BodyTemplate, TemplateError> {
        let bytes = text.as_bytes();
        let mut pieces = Vec::new();
        let mut literal = 0;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                i += 1;
                continue;
            }
            let (name, end) = if bytes.get(i + 1) == Some(&b'{') {
                match bytes[i + 2..].iter().position(|&b| b == b'}') {
                    Some(n) => (i + 2..i + 2 + n, i + 3 + n),
                    None => {
                        return Err(TemplateError::Invalid {
                            range: i..i + 2,
                            reason: "`${` without a closing `}`".to_string(),
                        })
                    }
                }
            } else {
                let start = i + 1;
                if !bytes
                    .get(start)
                    .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
                {
                    i += 1;
                    continue;
                }
                let mut j = word_end(bytes, start);
                while bytes.get(j) == Some(&b'.') && bytes.get(j + 1).is_some_and(|b| is_word(*b)) {
                    j = word_end(bytes, j + 1);
                }
                // `$context.authorizer.claims['custom:role']`.
                if &text[start..j] == "context.authorizer.claims" && text[j..].starts_with("['") {
                    if let Some(n) = text[j + 2..].find("']") {
                        j += 2 + n + 2;
                    }
                }
                (start..j, j)
            };
            let var = resolve(text, name.clone()).map_err(|e| match e {
                None => TemplateError::UnknownVariable {
                    range: i..end,
                    name: text[name.clone()].to_string(),
                },
                Some(reason) => TemplateError::Invalid {
                    range: i..end,
                    reason,
                },
            })?;
            if literal < i {
                pieces.push(Piece::Text {
                    start: literal,
                    end: i,
                });
            }
            pieces.push(Piece::Var(var));
            i = end;
            literal = end;
        }
        if literal < bytes.len() {
            pieces.push(Piece::Text {
                start: literal,
                end: bytes.len(),
            });
        }
        Ok(BodyTemplate {
            text: text.into(),
            pieces: pieces.into(),
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn word_end(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| is_word(*b)) {
        i += 1;
    }
    i
}

/// The variable `text[name]` names; `Err(None)` when unknown, `Err(Some(reason))` when it is a
/// stage variable with an invalid name.
fn resolve(text: &str, name: std::ops::Range<usize>) -> Result<Var, Option<String>> {
    let s = &text[name.clone()];
    let var = match s {
        "context.requestId" => Var::RequestId,
        "context.error.message" => Var::Message,
        "context.error.messageString" => Var::MessageString,
        "context.error.responseType" => Var::ResponseType,
        "context.stage" => Var::Stage,
        "context.httpMethod" => Var::HttpMethod,
        "context.path" => Var::Path,
        "context.identity.apiKeyId" => Var::ApiKeyId,
        "context.identity.apiKey" => return Err(Some(API_KEY_VALUE.to_string())),
        _ if s.starts_with("context.authorizer.") => {
            let at = name.start + "context.authorizer.".len();
            let rest = &s["context.authorizer.".len()..];
            // The byte range of `inner` (a part of `rest`) in `text`.
            let range = |inner: &str| {
                let start = at + (inner.as_ptr() as usize - rest.as_ptr() as usize);
                (start, start + inner.len())
            };
            match authorizer_name(rest).ok_or(None)? {
                AuthorizerName::PrincipalId => Var::PrincipalId,
                AuthorizerName::Claim(c) => {
                    let (start, end) = range(c);
                    Var::Claim { start, end }
                }
                AuthorizerName::Key(k) => {
                    let (start, end) = range(k);
                    Var::AuthorizerKey { start, end }
                }
                AuthorizerName::NoValue => Var::Empty,
                AuthorizerName::ApiKeyValue => return Err(Some(API_KEY_VALUE.to_string())),
            }
        }
        _ => {
            let Some(var) = s.strip_prefix("stageVariables.") else {
                return Err(None);
            };
            let ok =
                !var.is_empty() && var.len() <= MAX_STAGE_VARIABLE_NAME && var.bytes().all(is_word);
            if !ok {
                return Err(Some(format!(
                    "invalid stage variable name `{var}`: use 1 to {MAX_STAGE_VARIABLE_NAME} of A-Z a-z 0-9 _"
                )));
            }
            Var::StageVariable {
                start: name.start + "stageVariables.".len(),
                end: name.end,
            }
        }
    };
    Ok(var)
}

/// Why `$context.identity.apiKey` / `$context.authorizer.usageIdentifierKey` are refused.
const API_KEY_VALUE: &str =
    "API key values never appear in responses: use `$context.identity.apiKeyId` (the key's name)";

/// A substituted value: raw bytes, the message JSON-quoted (`null` when there is none), or an
/// authorizer's non-text value written as compact JSON.
enum Value<'a> {
    Raw(&'a [u8]),
    Quoted(Option<&'a [u8]>),
    Json(&'a serde_json::Value),
}

/// Counts the bytes written to it (the length of a JSON value without allocating).
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Value<'_> {
    fn len(&self) -> usize {
        match self {
            Value::Json(v) => {
                let mut c = Counter(0);
                // Cannot fail: the counter accepts everything.
                let _ = serde_json::to_writer(&mut c, v);
                c.0
            }
            Value::Raw(v) => v.len(),
            Value::Quoted(None) => 4,
            Value::Quoted(Some(m)) => 2 + m.iter().map(|&b| escaped_len(b)).sum::<usize>(),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::Json(v) => {
                // Cannot fail: writing to a Vec.
                let _ = serde_json::to_writer(&mut *out, v);
            }
            Value::Raw(v) => out.extend_from_slice(v),
            Value::Quoted(None) => out.extend_from_slice(b"null"),
            Value::Quoted(Some(m)) => {
                out.push(b'"');
                for &b in *m {
                    match b {
                        b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                        0..=0x1f => {
                            const HEX: &[u8; 16] = b"0123456789abcdef";
                            out.extend_from_slice(b"\\u00");
                            out.push(HEX[usize::from(b >> 4)]);
                            out.push(HEX[usize::from(b & 0xf)]);
                        }
                        _ => out.push(b),
                    }
                }
                out.push(b'"');
            }
        }
    }
}

/// Bytes of `b` inside a JSON string.
fn escaped_len(b: u8) -> usize {
    match b {
        b'"' | b'\\' => 2,
        0..=0x1f => 6,
        _ => 1,
    }
}

/// What a template's variables read, for one response.
struct Values<'c, 'a> {
    ctx: &'c ErrorContext<'a>,
    message: Option<&'c [u8]>,
    response_type: &'static str,
}

impl<'c> Values<'c, '_> {
    fn get(&self, text: &'c str, var: Var) -> Value<'c> {
        match var {
            Var::RequestId => Value::Raw(self.ctx.request_id),
            Var::Message => Value::Raw(self.message.unwrap_or(b"")),
            Var::MessageString => Value::Quoted(self.message),
            Var::ResponseType => Value::Raw(self.response_type.as_bytes()),
            Var::Stage => Value::Raw(self.ctx.stage.as_bytes()),
            Var::HttpMethod => Value::Raw(self.ctx.http_method),
            Var::Path => Value::Raw(self.ctx.path),
            Var::StageVariable { start, end } => {
                let name = text.get(start..end).unwrap_or("");
                let value = self
                    .ctx
                    .stage_variables
                    .iter()
                    .find(|(k, _)| &**k == name)
                    .map_or(&b""[..], |(_, v)| v.as_bytes());
                Value::Raw(value)
            }
            Var::ApiKeyId => Value::Raw(self.ctx.api_key_id.unwrap_or("").as_bytes()),
            Var::PrincipalId => self.authorizer(AuthorizerName::PrincipalId),
            Var::Claim { start, end } => {
                self.authorizer(AuthorizerName::Claim(text.get(start..end).unwrap_or("")))
            }
            Var::AuthorizerKey { start, end } => {
                self.authorizer(AuthorizerName::Key(text.get(start..end).unwrap_or("")))
            }
            Var::Empty => Value::Raw(b""),
        }
    }

    /// A `$context.authorizer.*` value (empty without one).
    fn authorizer(&self, name: AuthorizerName<'c>) -> Value<'c> {
        match self.ctx.authorizer.and_then(|a| a.value(name)) {
            None => Value::Raw(b""),
            Some(AuthValue::Text(t)) => Value::Raw(t.as_bytes()),
            Some(AuthValue::Json(v)) => Value::Json(v),
        }
    }

    fn piece(&self, text: &'c str, piece: Piece) -> Value<'c> {
        match piece {
            Piece::Text { start, end } => {
                Value::Raw(text.as_bytes().get(start..end).unwrap_or(b""))
            }
            Piece::Var(v) => self.get(text, v),
        }
    }

    fn len(&self, text: &'c str, pieces: &[Piece]) -> usize {
        pieces.iter().map(|p| self.piece(text, *p).len()).sum()
    }

    fn render(&self, text: &'c str, pieces: &[Piece], out: &mut Vec<u8>) {
        for p in pieces {
            self.piece(text, *p).write(out);
        }
    }
}

/// The status of a customised response: 200-599, except 204, 205 and 304, which cannot carry
/// the body every gateway response has (RFC 9110 §15.3.5, §15.3.6, §15.4.5), and 1xx, which
/// are interim responses.
pub fn check_status(status: i64) -> Result<u16, &'static str> {
    match u16::try_from(status) {
        Ok(s @ 200..=599) if !matches!(s, 204 | 205 | 304) => Ok(s),
        _ => Err("`status` must be between 200 and 599, and not 204, 205 or 304 (a gateway response always has a body)"),
    }
}

/// Headers a customisation cannot set: the framing headers the gateway computes and the two
/// `x-amzn-*` headers every gateway response carries.
const RESERVED_HEADERS: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "x-amzn-requestid",
    "x-amzn-errortype",
];

/// A customised header name: an RFC 9110 token, not one of the headers the gateway writes.
pub fn check_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(format!("`{name}` is not a valid header name"));
    }
    if RESERVED_HEADERS
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
    {
        return Err(format!(
            "`{name}` cannot be set on a gateway response: the gateway writes it"
        ));
    }
    Ok(())
}

/// A customised header value: an RFC 9110 field value (no control characters but tab, no
/// leading or trailing whitespace; may be empty).
pub fn check_header_value(value: &str) -> Result<(), &'static str> {
    let bytes = value.as_bytes();
    if bytes.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err("a header value cannot contain line breaks or control characters");
    }
    if bytes.first().is_some_and(|b| matches!(b, b' ' | b'\t'))
        || bytes.last().is_some_and(|b| matches!(b, b' ' | b'\t'))
    {
        return Err("a header value cannot start or end with whitespace");
    }
    Ok(())
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One `[[apis.gateway_responses]]` entry, checked and precompiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomResponse {
    status: Option<u16>,
    /// `name: value\r\n` lines, in the order written.
    headers: Box<[u8]>,
    /// The headers include `content-type` (replacing `application/json`).
    content_type: bool,
    /// `None`: the built-in body template.
    body: Option<BodyTemplate>,
}

impl CustomResponse {
    /// Checks `status` and `headers` (as `check_status`, `check_header_name`,
    /// `check_header_value`, and no name twice, ignoring case) and renders the header lines.
    pub fn new(
        status: Option<u16>,
        headers: &[(&str, &str)],
        body: Option<BodyTemplate>,
    ) -> Result<CustomResponse, String> {
        if let Some(s) = status {
            check_status(i64::from(s))?;
        }
        let mut lines = Vec::new();
        for (i, (name, value)) in headers.iter().enumerate() {
            check_header_name(name)?;
            check_header_value(value)?;
            if headers[..i]
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                return Err(format!("header `{name}` is set twice"));
            }
            lines.extend_from_slice(name.as_bytes());
            lines.extend_from_slice(b": ");
            lines.extend_from_slice(value.as_bytes());
            lines.extend_from_slice(b"\r\n");
        }
        Ok(CustomResponse {
            status,
            headers: lines.into(),
            content_type: headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type")),
            body,
        })
    }
}

/// One API's gateway responses (the built-ins plus its `[[apis.gateway_responses]]`).
///
/// Resolution, for a response of type T (guide L22725-22925, DIGEST §5.1): T's own
/// customisation if it has one, else DEFAULT_4XX / DEFAULT_5XX (by T's built-in status) if
/// customised, else the built-in answer. The customisation found supplies the headers and the
/// body (its own body template, or the built-in `{"message":$context.error.messageString}`)
/// as a whole. The status resolves on its own: T's customised status, else the DEFAULT_4XX /
/// DEFAULT_5XX customised status ("changing the status code of this fallback gateway response
/// changes the status codes of all other 4XX responses", L22797-22808), else
/// `ErrorContext::status`, else the built-in one. `x-amzn-ErrorType`,
/// `$context.error.message` and `$context.error.responseType` are always T's.
/// REQUEST_TOO_LARGE is never customised, not even through DEFAULT_4XX.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GatewayResponses {
    custom: [Option<Box<CustomResponse>>; 21],
}

impl GatewayResponses {
    /// Only the built-in defaults (for requests that reached no API, and APIs that customise
    /// nothing).
    pub fn builtin() -> GatewayResponses {
        GatewayResponses::default()
    }

    /// Customises `ty`; refuses REQUEST_TOO_LARGE and a type customised already.
    pub fn customize(&mut self, ty: ResponseType, response: CustomResponse) -> Result<(), String> {
        if !ty.customizable() {
            return Err(format!(
                "{} cannot be customised (API Gateway does not support it, guide L52968)",
                ty.name()
            ));
        }
        let slot = &mut self.custom[ty.index()];
        if slot.is_some() {
            return Err(format!("{} is customised twice", ty.name()));
        }
        *slot = Some(Box::new(response));
        Ok(())
    }

    /// `ty`'s own customisation.
    pub fn custom(&self, ty: ResponseType) -> Option<&CustomResponse> {
        self.custom[ty.index()].as_deref()
    }

    /// Appends a complete response of type `ty` to `out`: status line, `content-type`,
    /// `content-length`, `x-amzn-RequestId`, `x-amzn-ErrorType`, customised headers,
    /// `connection: close` when asked, body (unless a HEAD request).
    pub fn write(&self, ty: ResponseType, ctx: &ErrorContext<'_>, out: &mut Vec<u8>) {
        let builtin = ty.builtin();
        let (own, fallback) = if ty.customizable() {
            (self.custom(ty), ty.fallback().and_then(|f| self.custom(f)))
        } else {
            (None, None)
        };
        let chosen = own.or(fallback);
        let status = own
            .and_then(|c| c.status)
            .or(fallback.and_then(|c| c.status))
            .or(ctx.status)
            .unwrap_or(builtin.status);
        let mut limit_msg = [0u8; 64];
        let message: Option<&[u8]> = match (ctx.message, ty) {
            (Some(m), _) => Some(m.as_bytes()),
            (None, ResponseType::RequestTooLarge) => {
                Some(too_large_message(ctx.max_body_bytes, &mut limit_msg))
            }
            (None, _) => builtin.message.map(str::as_bytes),
        };
        let values = Values {
            ctx,
            message,
            response_type: ty.name(),
        };
        let (text, pieces): (&str, &[Piece]) = match chosen.and_then(|c| c.body.as_ref()) {
            Some(t) => (&t.text, &t.pieces),
            // Same pieces: the two bodies differ only in the case of one literal letter.
            None if ctx.policy_denial => (DENIAL_BODY, &DEFAULT_PIECES),
            None => (DEFAULT_BODY, &DEFAULT_PIECES),
        };
        let headers: &[u8] = chosen.map_or(&[], |c| &c.headers);
        let body_len = values.len(text, pieces);
        out.reserve(256 + headers.len() + body_len);
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, u64::from(status));
        out.push(b' ');
        out.extend_from_slice(reason_phrase(status).as_bytes());
        out.extend_from_slice(b"\r\n");
        if !chosen.is_some_and(|c| c.content_type) {
            out.extend_from_slice(b"content-type: application/json\r\n");
        }
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, body_len as u64);
        out.extend_from_slice(b"\r\nx-amzn-RequestId: ");
        out.extend_from_slice(ctx.request_id);
        out.extend_from_slice(b"\r\nx-amzn-ErrorType: ");
        out.extend_from_slice(builtin.error_type.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(headers);
        if ctx.close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !ctx.head_request {
            values.render(text, pieces, out);
        }
    }
}

/// `HTTP content length exceeded <limit> bytes.` in `buf`.
fn too_large_message(limit: u64, buf: &mut [u8; 64]) -> &[u8] {
    const START: &[u8] = b"HTTP content length exceeded ";
    const END: &[u8] = b" bytes.";
    let mut n = limit;
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let d = &tmp[i..];
    let len = START.len() + d.len() + END.len();
    buf[..START.len()].copy_from_slice(START);
    buf[START.len()..START.len() + d.len()].copy_from_slice(d);
    buf[START.len() + d.len()..len].copy_from_slice(END);
    &buf[..len]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>() -> ErrorContext<'a> {
        ErrorContext {
            request_id: b"c0ffee00-0000-4000-8000-000000000001",
            stage: "prod",
            stage_variables: &[],
            http_method: b"GET",
            path: b"/prod/pets",
            status: None,
            message: None,
            max_body_bytes: 10_485_760,
            close: false,
            head_request: false,
            authorizer: None,
            api_key_id: None,
            policy_denial: false,
        }
    }

    fn written(ty: ResponseType, ctx: &ErrorContext<'_>) -> String {
        let mut out = Vec::new();
        GatewayResponses::builtin().write(ty, ctx, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn names_round_trip_and_every_type_has_a_documented_default() {
        assert_eq!(ResponseType::ALL.len(), 21);
        for (i, t) in ResponseType::ALL.into_iter().enumerate() {
            assert_eq!(t.index(), i);
            assert_eq!(ResponseType::from_name(t.name()), Some(t));
            let s = t.builtin().status;
            assert!((400..600).contains(&s), "{t:?}");
        }
        assert_eq!(
            ResponseType::from_name("missing_authentication_token"),
            None
        );
        // Statuses from the guide's table (L22735-22925).
        use ResponseType::*;
        for (t, s) in [
            (AccessDenied, 403),
            (ApiConfigurationError, 500),
            (AuthorizerConfigurationError, 500),
            (AuthorizerFailure, 500),
            (BadRequestParameters, 400),
            (BadRequestBody, 400),
            (ExpiredToken, 403),
            (IntegrationFailure, 504),
            (IntegrationTimeout, 504),
            (InvalidApiKey, 403),
            (InvalidSignature, 403),
            (MissingAuthenticationToken, 403),
            (QuotaExceeded, 429),
            (RequestTooLarge, 413),
            (ResourceNotFound, 404),
            (Throttled, 429),
            (Unauthorized, 401),
            (UnsupportedMediaType, 415),
            (WafFiltered, 403),
        ] {
            assert_eq!(t.builtin().status, s, "{t:?}");
        }
        assert_eq!(Throttled.fallback(), Some(Default4xx));
        assert_eq!(IntegrationTimeout.fallback(), Some(Default5xx));
        assert_eq!(Default4xx.fallback(), None);
        assert!(!RequestTooLarge.customizable());
        assert!(Throttled.customizable());
    }

    #[test]
    fn exact_bytes() {
        assert_eq!(
            written(ResponseType::MissingAuthenticationToken, &ctx()),
            "HTTP/1.1 403 Forbidden\r\n\
             content-type: application/json\r\n\
             content-length: 42\r\n\
             x-amzn-RequestId: c0ffee00-0000-4000-8000-000000000001\r\n\
             x-amzn-ErrorType: MissingAuthenticationTokenException\r\n\
             \r\n\
             {\"message\":\"Missing Authentication Token\"}"
        );
        let c = ErrorContext {
            close: true,
            head_request: true,
            ..ctx()
        };
        assert_eq!(
            written(ResponseType::Throttled, &c),
            "HTTP/1.1 429 Too Many Requests\r\n\
             content-type: application/json\r\n\
             content-length: 31\r\n\
             x-amzn-RequestId: c0ffee00-0000-4000-8000-000000000001\r\n\
             x-amzn-ErrorType: TooManyRequestsException\r\n\
             connection: close\r\n\
             \r\n"
        );
    }

    #[test]
    fn overrides_null_message_and_payload_limit() {
        let c = ErrorContext {
            status: Some(502),
            ..ctx()
        };
        let s = written(ResponseType::Default5xx, &c);
        assert!(s.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{s}");
        assert!(s.ends_with("\r\n\r\n{\"message\":\"Internal server error\"}"));

        let s = written(ResponseType::AuthorizerFailure, &ctx());
        assert!(s.ends_with("\r\n\r\n{\"message\":null}"), "{s}");
        assert!(s.contains("content-length: 16\r\n"), "{s}");

        for limit in [0, 1024, u64::MAX] {
            let c = ErrorContext {
                max_body_bytes: limit,
                ..ctx()
            };
            let s = written(ResponseType::RequestTooLarge, &c);
            let body = format!("{{\"message\":\"HTTP content length exceeded {limit} bytes.\"}}");
            assert!(s.ends_with(&format!("\r\n\r\n{body}")), "{s}");
            assert!(s.contains(&format!("content-length: {}\r\n", body.len())));
        }
    }

    fn template(text: &str) -> BodyTemplate {
        BodyTemplate::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
    }

    fn custom(status: Option<u16>, headers: &[(&str, &str)], body: Option<&str>) -> CustomResponse {
        CustomResponse::new(status, headers, body.map(template)).expect("valid customisation")
    }

    fn table(entries: Vec<(ResponseType, CustomResponse)>) -> GatewayResponses {
        let mut t = GatewayResponses::builtin();
        for (ty, c) in entries {
            t.customize(ty, c).expect("customisable");
        }
        t
    }

    fn render(t: &GatewayResponses, ty: ResponseType, ctx: &ErrorContext<'_>) -> String {
        let mut out = Vec::new();
        t.write(ty, ctx, &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    /// (status, head, body) of a response; checks that `content-length` is the body's length.
    fn parts(s: &str) -> (u16, String, String) {
        let (head, body) = s.split_once("\r\n\r\n").expect("a complete head");
        let status = head[9..12].parse().expect("status");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .expect("content-length")
            .parse()
            .expect("a number");
        assert_eq!(len, body.len(), "content-length of {s:?}");
        (status, head.to_string(), body.to_string())
    }

    #[test]
    fn the_builtin_body_is_the_default_template() {
        let t = template(DEFAULT_BODY);
        assert_eq!(&*t.pieces, &DEFAULT_PIECES[..]);
        // A customisation without a body renders exactly the built-in body.
        let g = table(vec![(ResponseType::Throttled, custom(None, &[], None))]);
        for ty in [ResponseType::Throttled, ResponseType::AuthorizerFailure] {
            assert_eq!(render(&g, ty, &ctx()), written(ty, &ctx()));
        }
    }

    #[test]
    fn templates_compile_into_text_and_variables() {
        let t = template("a $5 $ $context.path. ${context.stage}x $stageVariables.v_1!");
        assert_eq!(
            &*t.pieces,
            &[
                Piece::Text { start: 0, end: 7 },
                Piece::Var(Var::Path),
                Piece::Text { start: 20, end: 22 },
                Piece::Var(Var::Stage),
                Piece::Text { start: 38, end: 40 },
                Piece::Var(Var::StageVariable { start: 56, end: 59 }),
                Piece::Text { start: 59, end: 60 },
            ][..]
        );
        assert_eq!(template("").pieces.len(), 0);
        assert_eq!(template("$").pieces.len(), 1);

        let err = |text: &str| BodyTemplate::parse(text).expect_err(text);
        assert_eq!(
            err(r#"{"id":"$context.requestid"}"#),
            TemplateError::UnknownVariable {
                range: 7..25,
                name: "context.requestid".to_string()
            }
        );
        assert_eq!(
            err("x $stageVariables y"),
            TemplateError::UnknownVariable {
                range: 2..17,
                name: "stageVariables".to_string()
            }
        );
        assert_eq!(
            err("$input.body"),
            TemplateError::UnknownVariable {
                range: 0..11,
                name: "input.body".to_string()
            }
        );
        assert!(matches!(
            err("ok ${context.stage"),
            TemplateError::Invalid { range, .. } if range == (3..5)
        ));
        assert!(matches!(
            err("${stageVariables.a-b}"),
            TemplateError::Invalid { range, .. } if range == (0..21)
        ));
        let long = format!("$stageVariables.{}", "v".repeat(65));
        assert!(matches!(err(&long), TemplateError::Invalid { .. }));
    }

    #[test]
    fn every_substitution() {
        let vars: Vec<(Box<str>, Box<str>)> =
            vec![("a".into(), "alpha".into()), ("b".into(), "".into())];
        let c = ErrorContext {
            stage_variables: &vars,
            http_method: b"PATCH",
            ..ctx()
        };
        let body = "$context.requestId|$context.error.message|$context.error.messageString|\
                    $context.error.responseType|$context.stage|$context.httpMethod|$context.path|\
                    $stageVariables.a|$stageVariables.b|$stageVariables.missing|${context.stage}";
        let g = table(vec![(
            ResponseType::MissingAuthenticationToken,
            custom(None, &[], Some(body)),
        )]);
        let (status, _, body) = parts(&render(&g, ResponseType::MissingAuthenticationToken, &c));
        assert_eq!(status, 403);
        assert_eq!(
            body,
            "c0ffee00-0000-4000-8000-000000000001|Missing Authentication Token|\
             \"Missing Authentication Token\"|MISSING_AUTHENTICATION_TOKEN|prod|PATCH|/prod/pets|\
             alpha|||prod"
        );
    }

    #[test]
    fn authorizer_and_api_key_variables() {
        let body = "p=$context.authorizer.principalId|t=$context.authorizer.tenant|\
                    n=${context.authorizer.n}|l=$context.authorizer.l|c=$context.authorizer.claims.sub|\
                    r=$context.authorizer.claims['custom:role']|k=$context.identity.apiKeyId|\
                    e=$context.authorizer.error|";
        let t = template(body);
        assert!(t.pieces.contains(&Piece::Var(Var::PrincipalId)));
        assert!(t.pieces.contains(&Piece::Var(Var::ApiKeyId)));
        assert!(t.pieces.contains(&Piece::Var(Var::Empty)));
        let names: Vec<&str> = t
            .pieces
            .iter()
            .filter_map(|p| match *p {
                Piece::Var(Var::Claim { start, end } | Var::AuthorizerKey { start, end }) => {
                    Some(&body[start..end])
                }
                _ => None,
            })
            .collect();
        assert_eq!(names, ["tenant", "n", "l", "sub", "custom:role"]);
        let g = table(vec![(
            ResponseType::Throttled,
            custom(None, &[], Some(body)),
        )]);
        let lambda = crate::lambda::policy::parse(
            br#"{"principalId":"user-9","policyDocument":{"Statement":[]},"context":{"tenant":"t1","n":7,"l":[1,"x"]}}"#,
            crate::lambda::PayloadVersion::V2,
            false,
        )
        .expect("valid");
        let c = ErrorContext {
            authorizer: Some(&lambda),
            api_key_id: Some("alice"),
            ..ctx()
        };
        let out = render(&g, ResponseType::Throttled, &c);
        let (status, _, got) = parts(&out);
        assert_eq!(status, 429);
        assert_eq!(got, r#"p=user-9|t=t1|n=7|l=[1,"x"]|c=|r=|k=alice|e=|"#);
        // content-length counted the JSON values.
        assert!(
            out.contains(&format!("content-length: {}\r\n", got.len())),
            "{out}"
        );
        // Nothing known: empty values.
        let (_, _, got) = parts(&render(&g, ResponseType::Throttled, &ctx()));
        assert_eq!(got, "p=|t=|n=|l=|c=|r=|k=|e=|");
        // Key values are refused.
        for bad in [
            "$context.identity.apiKey",
            "${context.authorizer.usageIdentifierKey}",
        ] {
            let e = BodyTemplate::parse(bad).expect_err(bad);
            assert!(
                matches!(&e, TemplateError::Invalid { reason, .. } if reason.contains("never appear")),
                "{e:?}"
            );
        }
        assert!(matches!(
            BodyTemplate::parse("$context.authorizer"),
            Err(TemplateError::UnknownVariable { .. })
        ));
    }

    #[test]
    fn a_rest_policy_denial_says_message_with_a_capital_m() {
        let c = ErrorContext {
            policy_denial: true,
            ..ctx()
        };
        let (status, _, body) = parts(&written(ResponseType::AccessDenied, &c));
        assert_eq!(status, 403);
        assert_eq!(
            body,
            r#"{"Message":"User is not authorized to access this resource with an explicit deny"}"#
        );
        let (_, _, body) = parts(&written(ResponseType::AccessDenied, &ctx()));
        assert!(body.starts_with(r#"{"message":"#), "{body}");
        // A customised body is the customisation's, denial or not.
        let g = table(vec![(
            ResponseType::AccessDenied,
            custom(None, &[], Some("no: $context.error.message")),
        )]);
        let (_, _, body) = parts(&render(&g, ResponseType::AccessDenied, &c));
        assert_eq!(
            body,
            "no: User is not authorized to access this resource with an explicit deny"
        );
    }

    #[test]
    fn message_string_is_json_quoted_and_null_without_a_message() {
        let g = table(vec![
            (
                ResponseType::Default5xx,
                custom(
                    None,
                    &[],
                    Some("[$context.error.message][$context.error.messageString]"),
                ),
            ),
            (
                ResponseType::Default4xx,
                custom(None, &[], Some("$context.error.messageString")),
            ),
        ]);
        // AUTHORIZER_FAILURE has no message: empty, and `null` quoted.
        let (_, _, body) = parts(&render(&g, ResponseType::AuthorizerFailure, &ctx()));
        assert_eq!(body, "[][null]");
        let c = ErrorContext {
            message: Some("say \"hi\"\\\n\u{1}é"),
            ..ctx()
        };
        let (_, _, body) = parts(&render(&g, ResponseType::Unauthorized, &c));
        assert_eq!(body, r#""say \"hi\"\\\u000a\u0001é""#);
    }

    #[test]
    fn resolution_own_then_default_class_then_builtin() {
        use ResponseType::*;
        let g = table(vec![
            (
                MissingAuthenticationToken,
                custom(
                    Some(404),
                    &[("x-own", "1")],
                    Some("own $context.error.responseType"),
                ),
            ),
            (
                Default4xx,
                custom(
                    None,
                    &[("x-d4", "1")],
                    Some("d4 $context.error.responseType"),
                ),
            ),
        ]);
        let s = render(&g, MissingAuthenticationToken, &ctx());
        let (status, head, body) = parts(&s);
        assert_eq!(
            (status, body.as_str()),
            (404, "own MISSING_AUTHENTICATION_TOKEN")
        );
        assert!(
            head.contains("\r\nx-own: 1") && !head.contains("x-d4"),
            "{s}"
        );
        assert!(head.contains("x-amzn-ErrorType: MissingAuthenticationTokenException"));

        // A 4xx type without its own: DEFAULT_4XX's headers and body, its own status and type.
        let (status, head, body) = parts(&render(&g, Throttled, &ctx()));
        assert_eq!((status, body.as_str()), (429, "d4 THROTTLED"));
        assert!(head.contains("\r\nx-d4: 1") && head.contains("TooManyRequestsException"));

        // A 5xx type: DEFAULT_4XX does not apply, built-in.
        for ty in [IntegrationTimeout, Default5xx] {
            assert_eq!(render(&g, ty, &ctx()), written(ty, &ctx()));
        }
        // REQUEST_TOO_LARGE is never customised, not even through DEFAULT_4XX.
        assert_eq!(
            render(&g, RequestTooLarge, &ctx()),
            written(RequestTooLarge, &ctx())
        );

        let g = table(vec![(Default5xx, custom(Some(503), &[], Some("five")))]);
        let (status, _, body) = parts(&render(&g, IntegrationFailure, &ctx()));
        assert_eq!((status, body.as_str()), (503, "five"));
        assert_eq!(
            render(&g, Unauthorized, &ctx()),
            written(Unauthorized, &ctx())
        );
    }

    #[test]
    fn status_resolution_and_error_context_status() {
        use ResponseType::*;
        let bad_gateway = ErrorContext {
            status: Some(502),
            ..ctx()
        };
        // The type's own status, then DEFAULT_4XX/5XX's, then ErrorContext::status, then built-in.
        let g = table(vec![
            (Throttled, custom(None, &[], Some("t"))),
            (Default4xx, custom(Some(418), &[], None)),
            (Unauthorized, custom(Some(451), &[], None)),
            (Default5xx, custom(None, &[("x", "y")], None)),
        ]);
        assert_eq!(parts(&render(&g, Throttled, &ctx())).0, 418);
        assert_eq!(parts(&render(&g, Unauthorized, &ctx())).0, 451);
        assert_eq!(parts(&render(&g, AccessDenied, &ctx())).0, 418);
        assert_eq!(parts(&render(&g, Default5xx, &bad_gateway)).0, 502);
        assert_eq!(parts(&render(&g, Default5xx, &ctx())).0, 500);
        assert_eq!(parts(&render(&g, IntegrationTimeout, &ctx())).0, 504);
        let g = table(vec![(Default5xx, custom(Some(503), &[], None))]);
        assert_eq!(parts(&render(&g, Default5xx, &bad_gateway)).0, 503);
        assert_eq!(parts(&render(&g, IntegrationFailure, &bad_gateway)).0, 503);
        // Without a customisation ErrorContext::status still applies.
        let g = table(vec![(Throttled, custom(Some(420), &[], None))]);
        let s = render(&g, Default5xx, &bad_gateway);
        assert!(s.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{s}");
    }

    #[test]
    fn customised_exact_bytes_head_and_close() {
        let g = table(vec![(
            ResponseType::MissingAuthenticationToken,
            custom(
                Some(404),
                &[
                    ("access-control-allow-origin", "*"),
                    ("Content-Type", "text/plain"),
                ],
                Some("no $context.httpMethod $context.path"),
            ),
        )]);
        assert_eq!(
            render(&g, ResponseType::MissingAuthenticationToken, &ctx()),
            "HTTP/1.1 404 Not Found\r\n\
             content-length: 17\r\n\
             x-amzn-RequestId: c0ffee00-0000-4000-8000-000000000001\r\n\
             x-amzn-ErrorType: MissingAuthenticationTokenException\r\n\
             access-control-allow-origin: *\r\n\
             Content-Type: text/plain\r\n\
             \r\n\
             no GET /prod/pets"
        );
        let c = ErrorContext {
            head_request: true,
            close: true,
            path: b"/prod/pets/and/more",
            ..ctx()
        };
        assert_eq!(
            render(&g, ResponseType::MissingAuthenticationToken, &c),
            "HTTP/1.1 404 Not Found\r\n\
             content-length: 26\r\n\
             x-amzn-RequestId: c0ffee00-0000-4000-8000-000000000001\r\n\
             x-amzn-ErrorType: MissingAuthenticationTokenException\r\n\
             access-control-allow-origin: *\r\n\
             Content-Type: text/plain\r\n\
             connection: close\r\n\
             \r\n"
        );
        // Without a content-type header of its own, the body is application/json.
        let g = table(vec![(
            ResponseType::Throttled,
            custom(None, &[("x-a", "")], Some("{}")),
        )]);
        let s = render(&g, ResponseType::Throttled, &ctx());
        assert!(
            s.starts_with("HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: 2\r\n"),
            "{s}"
        );
        assert!(s.ends_with("\r\nx-a: \r\n\r\n{}"), "{s}");
    }

    #[test]
    fn refusals() {
        let mut g = GatewayResponses::builtin();
        assert!(g
            .customize(ResponseType::RequestTooLarge, custom(None, &[], None))
            .is_err());
        assert!(g
            .customize(ResponseType::Throttled, custom(None, &[], None))
            .is_ok());
        assert!(g
            .customize(ResponseType::Throttled, custom(None, &[], None))
            .is_err());
        assert!(g.custom(ResponseType::Throttled).is_some());
        assert!(g.custom(ResponseType::Default4xx).is_none());

        for s in [200, 201, 404, 599] {
            assert_eq!(check_status(s), Ok(s as u16));
        }
        for s in [-1, 0, 100, 199, 204, 205, 304, 600, 70000] {
            assert!(check_status(s).is_err(), "{s}");
        }
        assert!(check_header_name("x-trace_1").is_ok());
        for n in [
            "",
            "bad name",
            "a:b",
            "Content-Length",
            "transfer-encoding",
            "CONNECTION",
            "x-amzn-requestid",
            "X-Amzn-ErrorType",
        ] {
            assert!(check_header_name(n).is_err(), "{n}");
        }
        assert!(check_header_value("a\tb é").is_ok());
        assert!(check_header_value("").is_ok());
        for v in ["a\r\nb: c", " a", "a ", "a\u{7f}"] {
            assert!(check_header_value(v).is_err(), "{v:?}");
        }
        assert!(CustomResponse::new(None, &[("x", "1"), ("X", "2")], None).is_err());
        assert!(CustomResponse::new(Some(204), &[], None).is_err());
        assert!(CustomResponse::new(None, &[("connection", "keep-alive")], None).is_err());
    }
}
