//! Protocol-level refusals: the answers to a request that cannot be handled as HTTP/1.1 at all
//! (malformed head or body framing, head too large, wrong version, unsupported transfer
//! coding, a request body that stopped arriving). They are not API Gateway gateway responses (those are `gateway::responses`), but
//! share their shape: status, `{"message":...}` JSON body, `x-amzn-ErrorType`,
//! `x-amzn-RequestId`. Every refusal closes the connection.
//!
//! This module only names them; `pipeline::refuse` writes them (with the crate's one reason
//! phrase table and decimal formatter, which live with the head writers in `forward`).

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
    /// The request body stopped arriving before any response started: 408.
    RequestTimeout,
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
            RequestTimeout => (
                408,
                "RequestTimeoutException",
                r#"{"message":"Request Timeout"}"#,
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

#[cfg(test)]
mod tests {
    use super::*;
    use GatewayError::*;

    #[test]
    fn every_variant() {
        // (variant, status, error type, message); the rendered bytes are tested with
        // `pipeline::refuse`.
        let table = [
            (BadRequest, 400, "BadRequestException", "Bad Request"),
            (
                HeadersTooLarge,
                431,
                "RequestHeaderFieldsTooLargeException",
                "Request Header Fields Too Large",
            ),
            (
                NotImplemented,
                501,
                "NotImplementedException",
                "Not Implemented",
            ),
            (
                VersionNotSupported,
                505,
                "BadRequestException",
                "HTTP Version Not Supported",
            ),
            (
                RequestTimeout,
                408,
                "RequestTimeoutException",
                "Request Timeout",
            ),
        ];
        for (err, status, error_type, message) in table {
            assert_eq!(err.status(), status);
            assert_eq!(err.error_type(), error_type);
            assert_eq!(err.body(), format!("{{\"message\":\"{message}\"}}"));
        }
    }
}
