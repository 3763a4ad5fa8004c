//! HTTP/1.1 on borrowed buffers (RFC 9112, strict): request and response heads parsed with
//! `httparse` without copying, body framing decided with the smuggling defences, a streaming
//! chunked-body validator, and the gateway's own error responses.
//!
//! CONTRACT (types fixed; the http work fills in the bodies):
//! - `request::parse` / `response::parse` return `Ok(None)` while the head is incomplete.
//! - Nothing here allocates per request.

pub mod chunked;
pub mod error;
pub mod request;
pub mod response;

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (no CL/TE on a request; HEAD responses; 1xx/204/304).
    None,
    /// `Content-Length: n` (n may be 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Response without CL or TE: the body runs until the backend closes.
    UntilClose,
}

/// Header slots given to `httparse`; a head with more headers is refused (431).
pub const MAX_HEADERS: usize = 100;

/// Hop-by-hop and connection-management headers a proxy must not forward (RFC 9110 §7.6.1),
/// plus the ones API Gateway drops toward an HTTP proxy integration (Expect, Max-Forwards, Via,
/// Content-MD5, Proxy-Authenticate). Lowercase.
pub fn is_hop_by_hop_request(name: &str) -> bool {
    let _ = name;
    todo!("http work")
}

/// Headers not forwarded from a backend response to the client (lowercase compare).
pub fn is_hop_by_hop_response(name: &str) -> bool {
    let _ = name;
    todo!("http work")
}
