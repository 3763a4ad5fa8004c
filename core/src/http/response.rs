//! Backend response heads: strict parsing and body framing.
//!
//! The same strictness as for requests (CRLF only, no obs-fold, clean field values), with the
//! response framing rules of RFC 9112 §6.3. Framing that a client could read differently from
//! us (Content-Length together with Transfer-Encoding, several or invalid Content-Lengths,
//! `chunked` applied twice, Transfer-Encoding on HTTP/1.0) is refused, and the proxy answers
//! 502 instead of relaying it.

use super::{BodyKind, ClError};
use std::fmt;

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

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::TooLarge => f.write_str("response head too large"),
            ResponseError::Malformed(why) => write!(f, "malformed response head: {why}"),
        }
    }
}

impl std::error::Error for ResponseError {}

/// Parses a backend response head. `head_request`: the request was HEAD (no body follows).
pub fn parse<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>; super::MAX_HEADERS],
    max_header_bytes: usize,
    head_request: bool,
) -> Result<Option<ResponseHead<'b, 'h>>, ResponseError> {
    let window = &buf[..buf.len().min(max_header_bytes)];
    let mut resp = httparse::Response::new(&mut headers[..]);
    let head_len = match resp.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            let seen = window.strip_suffix(b"\r").unwrap_or(window);
            super::check_line_endings(seen).map_err(ResponseError::Malformed)?;
            if window.len() >= max_header_bytes {
                return Err(ResponseError::TooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooLarge),
        Err(httparse::Error::Version) => {
            return Err(ResponseError::Malformed("unsupported HTTP version"))
        }
        Err(httparse::Error::HeaderName) => {
            return Err(ResponseError::Malformed(
                "invalid header name, obs-fold or whitespace before colon",
            ))
        }
        Err(httparse::Error::HeaderValue) => {
            return Err(ResponseError::Malformed("invalid header value"))
        }
        Err(_) => return Err(ResponseError::Malformed("invalid status line")),
    };
    super::check_line_endings(&window[..head_len]).map_err(ResponseError::Malformed)?;
    let (Some(minor_version), Some(status)) = (resp.version, resp.code) else {
        return Err(ResponseError::Malformed("incomplete status line"));
    };
    let reason = resp.reason.unwrap_or("");
    let headers: &'h [httparse::Header<'b>] = resp.headers;
    if minor_version > 1 {
        return Err(ResponseError::Malformed("unsupported HTTP version"));
    }
    if !(100..=599).contains(&status) {
        return Err(ResponseError::Malformed("status code out of range"));
    }
    super::check_fields(headers).map_err(ResponseError::Malformed)?;

    let body = framing(headers, minor_version, status, head_request)?;
    let keep_alive = body != BodyKind::UntilClose && super::keep_alive(minor_version, headers);
    Ok(Some(ResponseHead {
        status,
        reason,
        minor_version,
        headers,
        head_len,
        body,
        keep_alive,
    }))
}

/// RFC 9112 §6.3 for responses. The framing headers are validated even when the status or
/// the request method means there is no body, since they are relayed to the client.
fn framing(
    headers: &[httparse::Header<'_>],
    minor_version: u8,
    status: u16,
    head_request: bool,
) -> Result<BodyKind, ResponseError> {
    let te = super::transfer_codings(headers);
    let cl = match super::content_length(headers) {
        Ok(cl) => cl,
        Err(ClError::Invalid) => return Err(ResponseError::Malformed("invalid Content-Length")),
        Err(ClError::Repeated) => {
            return Err(ResponseError::Malformed("more than one Content-Length"))
        }
    };
    let has_cl = headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("content-length"));
    if te.present {
        if minor_version == 0 {
            return Err(ResponseError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 response",
            ));
        }
        if has_cl {
            return Err(ResponseError::Malformed(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if te.count == 0 || te.empty != 0 || te.invalid != 0 {
            return Err(ResponseError::Malformed("malformed Transfer-Encoding"));
        }
        if te.chunked > 1 {
            return Err(ResponseError::Malformed("chunked applied more than once"));
        }
    }
    let bodiless = head_request || matches!(status, 100..=199 | 204 | 304);
    Ok(if bodiless {
        BodyKind::None
    } else if te.present {
        if te.final_chunked {
            BodyKind::Chunked
        } else {
            BodyKind::UntilClose
        }
    } else if let Some(n) = cl {
        BodyKind::Length(n)
    } else {
        BodyKind::UntilClose
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::MAX_HEADERS;

    const LIMIT: usize = 8192;

    fn scratch<'b>() -> [httparse::Header<'b>; MAX_HEADERS] {
        [httparse::EMPTY_HEADER; MAX_HEADERS]
    }

    fn ok(raw: &[u8], head_request: bool) -> (u16, BodyKind, bool, usize) {
        let mut h = scratch();
        let r = parse(raw, &mut h, LIMIT, head_request)
            .unwrap_or_else(|e| panic!("{:?}: {e:?}", String::from_utf8_lossy(raw)))
            .unwrap_or_else(|| panic!("{:?}: incomplete", String::from_utf8_lossy(raw)));
        (r.status, r.body, r.keep_alive, r.head_len)
    }

    #[test]
    fn fields() {
        let raw = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhi";
        let mut h = scratch();
        let r = parse(raw, &mut h, LIMIT, false).unwrap().unwrap();
        assert_eq!((r.status, r.reason, r.minor_version), (201, "Created", 1));
        assert_eq!(r.headers.len(), 2);
        assert_eq!(r.head_len, raw.len() - 2);
        assert_eq!(r.body, BodyKind::Length(2));
        assert!(r.keep_alive);
        let mut h = scratch();
        let r = parse(b"HTTP/1.1 200 \r\n\r\n", &mut h, LIMIT, false)
            .unwrap()
            .unwrap();
        assert_eq!(r.reason, "");
    }

    #[test]
    fn framing_and_keep_alive() {
        use BodyKind::*;
        // (raw, head_request, status, body, keep_alive)
        let cases: &[(&[u8], bool, u16, BodyKind, bool)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                200,
                Length(5),
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                false,
                200,
                Length(0),
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                200,
                Chunked,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
                false,
                200,
                Chunked,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                200,
                Chunked,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                false,
                200,
                UntilClose,
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                false,
                200,
                UntilClose,
                false,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", false, 200, UntilClose, false),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n",
                false,
                200,
                UntilClose,
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
                false,
                200,
                Length(5),
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                200,
                Length(5),
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: Keep-Alive\r\n\r\n",
                false,
                200,
                Length(5),
                true,
            ),
            // HEAD: no body whatever the headers say.
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                true,
                200,
                None,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                true,
                200,
                None,
                true,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", true, 200, None, true),
            (b"HTTP/1.1 404 Not Found\r\n\r\n", true, 404, None, true),
            // Bodiless statuses.
            (b"HTTP/1.1 204 No Content\r\n\r\n", false, 204, None, true),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 120\r\n\r\n",
                false,
                304,
                None,
                true,
            ),
            (b"HTTP/1.1 100 Continue\r\n\r\n", false, 100, None, true),
            (
                b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n",
                false,
                103,
                None,
                true,
            ),
            (
                b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
                false,
                204,
                None,
                false,
            ),
            (b"HTTP/1.0 204 No Content\r\n\r\n", false, 204, None, false),
        ];
        for &(raw, head_request, status, body, keep_alive) in cases {
            assert_eq!(
                ok(raw, head_request),
                (status, body, keep_alive, raw.len()),
                "{:?} head={head_request}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn refused_responses() {
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\x7f\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX y: a\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            // Identical repeats and lists too (http-desync-guardian: Severe).
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000,1000\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip;\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/2.0 200 OK\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 600 High\r\n\r\n",
            b"HTTP/1.1 200 OK\r\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\r\n",
        ];
        for &raw in cases {
            let mut h = scratch();
            let r = parse(raw, &mut h, LIMIT, false);
            assert!(
                matches!(r, Err(ResponseError::Malformed(_))),
                "{:?}: {:?}",
                String::from_utf8_lossy(raw),
                r.map(|o| o.map(|h| h.body))
            );
        }
    }

    #[test]
    fn incomplete_and_too_large() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n";
        for i in 0..raw.len() {
            let mut h = scratch();
            assert!(
                matches!(parse(&raw[..i], &mut h, LIMIT, false), Ok(None)),
                "split at {i}"
            );
        }
        let mut h = scratch();
        assert_eq!(
            parse(raw, &mut h, raw.len() - 1, false).unwrap_err(),
            ResponseError::TooLarge
        );
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let mut h = scratch();
        assert_eq!(
            parse(&many, &mut h, 1 << 20, false).unwrap_err(),
            ResponseError::TooLarge
        );
    }

    #[test]
    fn head_len_with_body_following() {
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut buf = head.to_vec();
        buf.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
        assert_eq!(ok(&buf, false), (200, BodyKind::Chunked, true, head.len()));
    }
}
