//! The errors the gateway itself answers, shaped like Amazon API Gateway's gateway responses:
//! status, `{"message":...}` JSON body, `x-amzn-ErrorType`, `x-amzn-RequestId`.

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
    /// Integration timeout: 504 `{"message":"Endpoint request timed out"}`.
    IntegrationTimeout,
    /// Backend refused/reset/sent garbage: 502.
    IntegrationFailure,
    /// Gateway bug or misconfiguration at run time: 500.
    Internal,
}

impl GatewayError {
    pub fn status(self) -> u16 {
        todo!("http work")
    }
}

/// Appends a complete response (status line, `content-type: application/json`,
/// `content-length`, `x-amzn-RequestId`, `x-amzn-ErrorType`, `connection: close` when `close`,
/// body) to `out`. For a HEAD request, `head` omits the body but keeps its length.
pub fn write(err: GatewayError, request_id: &[u8], close: bool, head: bool, out: &mut Vec<u8>) {
    let _ = (err, request_id, close, head, out);
    todo!("http work")
}
