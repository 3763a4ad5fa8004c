//! Backend response heads: strict parsing and body framing.

use super::BodyKind;

#[derive(Debug)]
pub struct ResponseHead<'b, 'h> {
    pub status: u16,
    pub reason: &'b str,
    pub minor_version: u8,
    pub headers: &'h [httparse::Header<'b>],
    pub head_len: usize,
    /// Framing given the request method (HEAD → None) and status (1xx/204/304 → None).
    pub body: BodyKind,
    /// The backend connection may be reused after this response.
    pub keep_alive: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    TooLarge,
    Malformed(&'static str),
}

/// Parses a backend response head. `head_request`: the request was HEAD (no body follows).
pub fn parse<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>; super::MAX_HEADERS],
    max_header_bytes: usize,
    head_request: bool,
) -> Result<Option<ResponseHead<'b, 'h>>, ResponseError> {
    let _ = (buf, headers, max_header_bytes, head_request);
    todo!("http work")
}
