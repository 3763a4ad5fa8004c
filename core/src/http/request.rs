//! Request heads: strict parsing, framing and the smuggling defences.

use super::BodyKind;
use crate::method::Method;

#[derive(Debug)]
pub struct RequestHead<'b, 'h> {
    pub method: Method,
    /// The method token as sent (e.g. for `Other` methods).
    pub method_str: &'b str,
    /// Path without query (origin-form; starts with `/`).
    pub path: &'b str,
    /// Query string without the `?`, if any.
    pub query: Option<&'b str>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of request line + headers + final CRLF.
    pub head_len: usize,
    pub body: BodyKind,
    /// After this request the connection may serve another (HTTP/1.1 without `Connection:
    /// close`, or HTTP/1.0 with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    pub host: Option<&'b [u8]>,
}

/// Why a head was refused. Every variant answers 4xx/5xx and closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Head bigger than the limit, or more than `MAX_HEADERS` headers → 431.
    TooLarge,
    /// Syntax (bare CR/LF, obs-fold, bad token bytes, bad request target, ...) → 400.
    Malformed(&'static str),
    /// Ambiguous framing (CL+TE, differing CLs, TE other than chunked, bad CL) → 400.
    Smuggling(&'static str),
    /// Not HTTP/1.0 or 1.1 → 505.
    Version,
}

/// Parses a request head from the start of `buf`. `Ok(None)`: incomplete (and `buf` is still
/// within `max_header_bytes`). `headers` is caller-owned scratch (reused per request).
pub fn parse<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>; super::MAX_HEADERS],
    max_header_bytes: usize,
) -> Result<Option<RequestHead<'b, 'h>>, HeadError> {
    let _ = (buf, headers, max_header_bytes);
    todo!("http work")
}
