//! The errors the gateway itself answers, shaped like Amazon API Gateway's gateway responses:
//! status, `{"message":...}` JSON body, `x-amzn-ErrorType`, `x-amzn-RequestId`.
//!
//! Each variant's status line, error type and body are static bytes; writing a response only
//! copies them (and the request id and body length) into the caller's buffer.

/// API Gateway's payload limit (10 MB), quoted by the default 413 message.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10_485_760;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayError {
    /// REST API, no route/stage: 403 `{"message":"Missing Authentication Token"}`.
    MissingAuthenticationToken,
    /// HTTP API, no route: 404 `{"message":"Not Found"}`.
    NotFound,
    /// Body over the payload limit: 413.
    RequestTooLarge,
    /// Head over the limit: 431.
    HeadersTooLarge,
    /// Malformed request or refused framing: 400.
    BadRequest,
    /// Not HTTP/1.x: 505.
    VersionNotSupported,
    /// A transfer coding other than chunked (RFC 9112 §6.1): 501, protocol-level.
    NotImplemented,
    /// The request body stopped arriving: 408, protocol-level.
    RequestTimeout,
    /// Integration timeout: 504 `{"message":"Endpoint request timed out"}`.
    IntegrationTimeout,
    /// Backend refused/reset/sent garbage: 502.
    IntegrationFailure,
    /// Gateway bug or misconfiguration at run time: 500.
    Internal,
}

/// The static parts of one gateway response.
struct Parts {
    status: u16,
    /// `HTTP/1.1 <status> <reason>\r\n` + the headers before the body length.
    head: &'static str,
    error_type: &'static str,
    /// The JSON body (for `RequestTooLarge`: with the default limit).
    body: &'static str,
}

macro_rules! head {
    ($status:literal, $reason:literal) => {
        concat!(
            "HTTP/1.1 ",
            $status,
            " ",
            $reason,
            "\r\ncontent-type: application/json\r\ncontent-length: "
        )
    };
}

const TOO_LARGE_BODY_START: &str = "{\"message\":\"HTTP content length exceeded ";
const TOO_LARGE_BODY_END: &str = " bytes.\"}";

impl GatewayError {
    fn parts(self) -> Parts {
        use GatewayError::*;
        let (status, head, error_type, body) = match self {
            MissingAuthenticationToken => (
                403,
                head!("403", "Forbidden"),
                "MissingAuthenticationTokenException",
                r#"{"message":"Missing Authentication Token"}"#,
            ),
            NotFound => (
                404,
                head!("404", "Not Found"),
                "NotFoundException",
                r#"{"message":"Not Found"}"#,
            ),
            RequestTooLarge => (
                413,
                head!("413", "Content Too Large"),
                "RequestTooLargeException",
                r#"{"message":"HTTP content length exceeded 10485760 bytes."}"#,
            ),
            HeadersTooLarge => (
                431,
                head!("431", "Request Header Fields Too Large"),
                "RequestHeaderFieldsTooLargeException",
                r#"{"message":"Request Header Fields Too Large"}"#,
            ),
            BadRequest => (
                400,
                head!("400", "Bad Request"),
                "BadRequestException",
                r#"{"message":"Bad Request"}"#,
            ),
            VersionNotSupported => (
                505,
                head!("505", "HTTP Version Not Supported"),
                "BadRequestException",
                r#"{"message":"HTTP Version Not Supported"}"#,
            ),
            NotImplemented => (
                501,
                head!("501", "Not Implemented"),
                "BadRequestException",
                r#"{"message":"Not Implemented"}"#,
            ),
            RequestTimeout => (
                408,
                head!("408", "Request Timeout"),
                "BadRequestException",
                r#"{"message":"Request Timeout"}"#,
            ),
            IntegrationTimeout => (
                504,
                head!("504", "Gateway Timeout"),
                "InternalServerErrorException",
                r#"{"message":"Endpoint request timed out"}"#,
            ),
            IntegrationFailure => (
                502,
                head!("502", "Bad Gateway"),
                "InternalServerErrorException",
                r#"{"message":"Internal server error"}"#,
            ),
            Internal => (
                500,
                head!("500", "Internal Server Error"),
                "InternalServerErrorException",
                r#"{"message":"Internal server error"}"#,
            ),
        };
        Parts {
            status,
            head,
            error_type,
            body,
        }
    }

    pub fn status(self) -> u16 {
        self.parts().status
    }

    /// The `x-amzn-ErrorType` value, e.g. `NotFoundException`.
    pub fn error_type(self) -> &'static str {
        self.parts().error_type
    }

    /// The JSON body as sent by `write` (the 413 one quotes `DEFAULT_MAX_BODY_BYTES`).
    pub fn body(self) -> &'static str {
        self.parts().body
    }
}

/// Appends a complete response (status line, `content-type: application/json`,
/// `content-length`, `x-amzn-RequestId`, `x-amzn-ErrorType`, `connection: close` when `close`,
/// body) to `out`. For a HEAD request, `head` omits the body but keeps its length.
pub fn write(err: GatewayError, request_id: &[u8], close: bool, head: bool, out: &mut Vec<u8>) {
    write_with_limit(err, request_id, close, head, DEFAULT_MAX_BODY_BYTES, out);
}

/// `write`, with the configured payload limit quoted by the 413 message (`HTTP content length
/// exceeded <max_body_bytes> bytes.`); other variants ignore it.
pub fn write_with_limit(
    err: GatewayError,
    request_id: &[u8],
    close: bool,
    head: bool,
    max_body_bytes: u64,
    out: &mut Vec<u8>,
) {
    let parts = err.parts();
    let mut digits = Digits::new();
    let limit: &[u8] = if err == GatewayError::RequestTooLarge {
        digits.format(max_body_bytes)
    } else {
        b""
    };
    let body_len = if err == GatewayError::RequestTooLarge {
        TOO_LARGE_BODY_START.len() + limit.len() + TOO_LARGE_BODY_END.len()
    } else {
        parts.body.len()
    };
    let mut len_digits = Digits::new();
    let body_len_str = len_digits.format(body_len as u64);

    const ID: &[u8] = b"\r\nx-amzn-RequestId: ";
    const TYPE: &[u8] = b"\r\nx-amzn-ErrorType: ";
    const CLOSE: &[u8] = b"connection: close\r\n";
    let total = parts.head.len()
        + body_len_str.len()
        + ID.len()
        + request_id.len()
        + TYPE.len()
        + parts.error_type.len()
        + 2
        + if close { CLOSE.len() } else { 0 }
        + 2
        + if head { 0 } else { body_len };
    out.reserve(total);

    out.extend_from_slice(parts.head.as_bytes());
    out.extend_from_slice(body_len_str);
    out.extend_from_slice(ID);
    out.extend_from_slice(request_id);
    out.extend_from_slice(TYPE);
    out.extend_from_slice(parts.error_type.as_bytes());
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(CLOSE);
    }
    out.extend_from_slice(b"\r\n");
    if !head {
        if err == GatewayError::RequestTooLarge {
            out.extend_from_slice(TOO_LARGE_BODY_START.as_bytes());
            out.extend_from_slice(limit);
            out.extend_from_slice(TOO_LARGE_BODY_END.as_bytes());
        } else {
            out.extend_from_slice(parts.body.as_bytes());
        }
    }
}

/// Decimal formatting of a `u64` on the stack.
struct Digits {
    buf: [u8; 20],
}

impl Digits {
    fn new() -> Self {
        Digits { buf: [0; 20] }
    }

    fn format(&mut self, mut n: u64) -> &[u8] {
        let mut i = self.buf.len();
        loop {
            i -= 1;
            self.buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        &self.buf[i..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GatewayError::*;

    const ALL: [GatewayError; 11] = [
        MissingAuthenticationToken,
        NotFound,
        RequestTooLarge,
        HeadersTooLarge,
        BadRequest,
        VersionNotSupported,
        NotImplemented,
        RequestTimeout,
        IntegrationTimeout,
        IntegrationFailure,
        Internal,
    ];

    const ID: &[u8] = b"c0ffee00-0000-4000-8000-000000000001";

    fn written(err: GatewayError, close: bool, head: bool) -> String {
        let mut out = Vec::new();
        write(err, ID, close, head, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn exact_bytes() {
        assert_eq!(
            written(MissingAuthenticationToken, false, false),
            "HTTP/1.1 403 Forbidden\r\n\
             content-type: application/json\r\n\
             content-length: 42\r\n\
             x-amzn-RequestId: c0ffee00-0000-4000-8000-000000000001\r\n\
             x-amzn-ErrorType: MissingAuthenticationTokenException\r\n\
             \r\n\
             {\"message\":\"Missing Authentication Token\"}"
        );
        assert_eq!(
            written(NotFound, true, false),
            "HTTP/1.1 404 Not Found\r\n\
             content-type: application/json\r\n\
             content-length: 23\r\n\
             x-amzn-RequestId: c0ffee00-0000-4000-8000-000000000001\r\n\
             x-amzn-ErrorType: NotFoundException\r\n\
             connection: close\r\n\
             \r\n\
             {\"message\":\"Not Found\"}"
        );
        assert_eq!(
            written(RequestTooLarge, true, true),
            "HTTP/1.1 413 Content Too Large\r\n\
             content-type: application/json\r\n\
             content-length: 58\r\n\
             x-amzn-RequestId: c0ffee00-0000-4000-8000-000000000001\r\n\
             x-amzn-ErrorType: RequestTooLargeException\r\n\
             connection: close\r\n\
             \r\n"
        );
    }

    #[test]
    fn every_variant() {
        // (variant, status, reason, error type, message)
        let table = [
            (
                MissingAuthenticationToken,
                403,
                "Forbidden",
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ),
            (NotFound, 404, "Not Found", "NotFoundException", "Not Found"),
            (
                RequestTooLarge,
                413,
                "Content Too Large",
                "RequestTooLargeException",
                "HTTP content length exceeded 10485760 bytes.",
            ),
            (
                HeadersTooLarge,
                431,
                "Request Header Fields Too Large",
                "RequestHeaderFieldsTooLargeException",
                "Request Header Fields Too Large",
            ),
            (
                BadRequest,
                400,
                "Bad Request",
                "BadRequestException",
                "Bad Request",
            ),
            (
                VersionNotSupported,
                505,
                "HTTP Version Not Supported",
                "BadRequestException",
                "HTTP Version Not Supported",
            ),
            (
                NotImplemented,
                501,
                "Not Implemented",
                "BadRequestException",
                "Not Implemented",
            ),
            (
                RequestTimeout,
                408,
                "Request Timeout",
                "BadRequestException",
                "Request Timeout",
            ),
            (
                IntegrationTimeout,
                504,
                "Gateway Timeout",
                "InternalServerErrorException",
                "Endpoint request timed out",
            ),
            (
                IntegrationFailure,
                502,
                "Bad Gateway",
                "InternalServerErrorException",
                "Internal server error",
            ),
            (
                Internal,
                500,
                "Internal Server Error",
                "InternalServerErrorException",
                "Internal server error",
            ),
        ];
        assert_eq!(table.len(), ALL.len());
        for (err, status, reason, error_type, message) in table {
            assert_eq!(err.status(), status);
            assert_eq!(err.error_type(), error_type);
            let body = format!("{{\"message\":\"{message}\"}}");
            assert_eq!(err.body(), body);
            for close in [false, true] {
                let full = written(err, close, false);
                let (head, got_body) = full.split_once("\r\n\r\n").unwrap();
                assert_eq!(got_body, body);
                let mut lines = head.split("\r\n");
                assert_eq!(
                    lines.next(),
                    Some(format!("HTTP/1.1 {status} {reason}").as_str())
                );
                assert_eq!(lines.next(), Some("content-type: application/json"));
                assert_eq!(
                    lines.next(),
                    Some(format!("content-length: {}", body.len()).as_str())
                );
                assert_eq!(
                    lines.next(),
                    Some("x-amzn-RequestId: c0ffee00-0000-4000-8000-000000000001")
                );
                assert_eq!(
                    lines.next(),
                    Some(format!("x-amzn-ErrorType: {error_type}").as_str())
                );
                if close {
                    assert_eq!(lines.next(), Some("connection: close"));
                }
                assert_eq!(lines.next(), None);
                // HEAD: same head, no body.
                let head_only = written(err, close, true);
                assert_eq!(head_only, format!("{head}\r\n\r\n"));
            }
        }
    }

    #[test]
    fn configured_payload_limit() {
        let mut out = Vec::new();
        write_with_limit(RequestTooLarge, b"id", false, false, 1024, &mut out);
        let s = String::from_utf8(out).unwrap();
        let body = r#"{"message":"HTTP content length exceeded 1024 bytes."}"#;
        assert!(s.ends_with(&format!("\r\n\r\n{body}")), "{s}");
        assert!(
            s.contains(&format!("content-length: {}\r\n", body.len())),
            "{s}"
        );
        for limit in [0, 9, 10, u64::MAX] {
            let mut out = Vec::new();
            write_with_limit(RequestTooLarge, b"id", true, false, limit, &mut out);
            let s = String::from_utf8(out).unwrap();
            assert!(s.ends_with(&format!("exceeded {limit} bytes.\"}}")), "{s}");
        }
        // Other variants ignore the limit.
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_with_limit(BadRequest, ID, false, false, 7, &mut a);
        write(BadRequest, ID, false, false, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn appends() {
        let mut out = b"previous".to_vec();
        write(Internal, ID, true, false, &mut out);
        assert!(out.starts_with(b"previousHTTP/1.1 500 Internal Server Error\r\n"));
        assert!(out.ends_with(b"{\"message\":\"Internal server error\"}"));
    }

    #[test]
    fn digits() {
        let mut d = Digits::new();
        assert_eq!(d.format(0), b"0");
        assert_eq!(d.format(10485760), b"10485760");
        assert_eq!(d.format(u64::MAX), b"18446744073709551615");
    }
}
