//! Protocol-level refusals: the answers to a request that cannot be handled as HTTP/1.1 at all
//! (malformed head or body framing, head too large, wrong version, unsupported transfer
//! coding). They are not API Gateway gateway responses (those are `gateway::responses`, chosen
//! by `pipeline::respond`), but share their shape: status, `{"message":...}` JSON body,
//! `x-amzn-ErrorType`, `x-amzn-RequestId`. Every refusal closes the connection.
//!
//! Status lines use `forward::reason_phrase` and numbers `forward::push_decimal`, the one
//! table and the one formatter of the crate.

use crate::forward::{push_decimal, reason_phrase};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayError {
    /// Malformed request or refused framing (head or chunked body): 400.
    BadRequest,
    /// Head over the limit: 431.
    HeadersTooLarge,
    /// A transfer coding other than chunked (RFC 9112 §6.1): 501.
    NotImplemented,
    /// Not HTTP/1.x: 505.
    VersionNotSupported,
}

impl GatewayError {
    /// Status, `x-amzn-ErrorType` and JSON body.
    const fn parts(self) -> (u16, &'static str, &'static str) {
        use GatewayError::*;
        match self {
            BadRequest => (400, "BadRequestException", r#"{"message":"Bad Request"}"#),
            HeadersTooLarge => (
                431,
                "RequestHeaderFieldsTooLargeException",
                r#"{"message":"Request Header Fields Too Large"}"#,
            ),
            NotImplemented => (
                501,
                "NotImplementedException",
                r#"{"message":"Not Implemented"}"#,
            ),
            VersionNotSupported => (
                505,
                "BadRequestException",
                r#"{"message":"HTTP Version Not Supported"}"#,
            ),
        }
    }

    pub const fn status(self) -> u16 {
        self.parts().0
    }

    /// The `x-amzn-ErrorType` value, e.g. `BadRequestException`.
    pub const fn error_type(self) -> &'static str {
        self.parts().1
    }

    /// The JSON body.
    pub const fn body(self) -> &'static str {
        self.parts().2
    }
}

/// Appends a complete response (status line, `content-type: application/json`,
/// `content-length`, `x-amzn-RequestId`, `x-amzn-ErrorType`, `connection: close` when `close`,
/// body) to `out`. For a HEAD request, `head` omits the body but keeps its length.
pub fn write(err: GatewayError, request_id: &[u8], close: bool, head: bool, out: &mut Vec<u8>) {
    let (status, error_type, body) = err.parts();
    out.reserve(200 + request_id.len() + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
    push_decimal(out, body.len() as u64);
    out.extend_from_slice(b"\r\nx-amzn-RequestId: ");
    out.extend_from_slice(request_id);
    out.extend_from_slice(b"\r\nx-amzn-ErrorType: ");
    out.extend_from_slice(error_type.as_bytes());
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GatewayError::*;

    const ID: &[u8] = b"c0ffee00-0000-4000-8000-000000000001";

    fn written(err: GatewayError, close: bool, head: bool) -> String {
        let mut out = Vec::new();
        write(err, ID, close, head, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn exact_bytes() {
        assert_eq!(
            written(BadRequest, true, false),
            "HTTP/1.1 400 Bad Request\r\n\
             content-type: application/json\r\n\
             content-length: 25\r\n\
             x-amzn-RequestId: c0ffee00-0000-4000-8000-000000000001\r\n\
             x-amzn-ErrorType: BadRequestException\r\n\
             connection: close\r\n\
             \r\n\
             {\"message\":\"Bad Request\"}"
        );
        assert_eq!(
            written(HeadersTooLarge, false, true),
            "HTTP/1.1 431 Request Header Fields Too Large\r\n\
             content-type: application/json\r\n\
             content-length: 45\r\n\
             x-amzn-RequestId: c0ffee00-0000-4000-8000-000000000001\r\n\
             x-amzn-ErrorType: RequestHeaderFieldsTooLargeException\r\n\
             \r\n"
        );
    }

    #[test]
    fn every_variant() {
        // (variant, status, reason, error type, message)
        let table = [
            (
                BadRequest,
                400,
                "Bad Request",
                "BadRequestException",
                "Bad Request",
            ),
            (
                HeadersTooLarge,
                431,
                "Request Header Fields Too Large",
                "RequestHeaderFieldsTooLargeException",
                "Request Header Fields Too Large",
            ),
            (
                NotImplemented,
                501,
                "Not Implemented",
                "NotImplementedException",
                "Not Implemented",
            ),
            (
                VersionNotSupported,
                505,
                "HTTP Version Not Supported",
                "BadRequestException",
                "HTTP Version Not Supported",
            ),
        ];
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
    fn appends() {
        let mut out = b"previous".to_vec();
        write(VersionNotSupported, ID, true, false, &mut out);
        assert!(out.starts_with(b"previousHTTP/1.1 505 HTTP Version Not Supported\r\n"));
        assert!(out.ends_with(b"{\"message\":\"HTTP Version Not Supported\"}"));
    }
}
