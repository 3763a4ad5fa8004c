//! Gateway responses: every answer tollgate makes without the backend, as one of API Gateway's
//! 21 response types (guide L22508-22935, DIGEST §5.1), with its documented status, JSON body
//! and `x-amzn-ErrorType`. Protocol-level refusals (400 malformed request, 408, 431, 501, 505)
//! are not gateway responses: they live in `http::error`.
//!
//! A response is resolved per API: the type's own customisation, then DEFAULT_4XX / DEFAULT_5XX,
//! then the built-in default below. `GatewayResponses` is the per-API table; `write` renders one
//! response into the connection's out buffer without allocating.

use crate::forward::{push_decimal, reason_phrase};

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
}

/// One API's gateway responses (the built-ins plus its `[[apis.gateway_responses]]`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GatewayResponses {
    _custom: (),
}

impl GatewayResponses {
    /// Only the built-in defaults (for requests that reached no API, and APIs that customise
    /// nothing).
    pub fn builtin() -> GatewayResponses {
        GatewayResponses::default()
    }

    /// Appends a complete response of type `ty` to `out`: status line, `content-type`,
    /// `content-length`, `x-amzn-RequestId`, `x-amzn-ErrorType`, customised headers,
    /// `connection: close` when asked, body (unless a HEAD request).
    pub fn write(&self, ty: ResponseType, ctx: &ErrorContext<'_>, out: &mut Vec<u8>) {
        let builtin = ty.builtin();
        let status = ctx.status.unwrap_or(builtin.status);
        let mut limit_msg = [0u8; 64];
        let message: Option<&[u8]> = match (ctx.message, ty) {
            (Some(m), _) => Some(m.as_bytes()),
            (None, ResponseType::RequestTooLarge) => {
                Some(too_large_message(ctx.max_body_bytes, &mut limit_msg))
            }
            (None, _) => builtin.message.map(str::as_bytes),
        };
        const BODY_START: &[u8] = b"{\"message\":";
        let body_len = BODY_START.len()
            + match message {
                Some(m) => m.len() + 2,
                None => 4,
            }
            + 1;
        out.reserve(256 + body_len);
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, u64::from(status));
        out.push(b' ');
        out.extend_from_slice(reason_phrase(status).as_bytes());
        out.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
        push_decimal(out, body_len as u64);
        out.extend_from_slice(b"\r\nx-amzn-RequestId: ");
        out.extend_from_slice(ctx.request_id);
        out.extend_from_slice(b"\r\nx-amzn-ErrorType: ");
        out.extend_from_slice(builtin.error_type.as_bytes());
        out.extend_from_slice(b"\r\n");
        if ctx.close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !ctx.head_request {
            out.extend_from_slice(BODY_START);
            match message {
                Some(m) => {
                    out.push(b'"');
                    out.extend_from_slice(m);
                    out.push(b'"');
                }
                None => out.extend_from_slice(b"null"),
            }
            out.push(b'}');
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
}
