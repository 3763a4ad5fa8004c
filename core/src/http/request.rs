//! Request heads: strict parsing, framing and the smuggling defences.
//!
//! `parse` runs `httparse` over at most `max_header_bytes` of the buffer, then applies what
//! `httparse` leaves to the caller: CRLF-only line endings, origin-form targets, exactly one
//! Host on HTTP/1.1, and unambiguous body framing (RFC 9112 §6, RFC 9110 §8.6). Every refusal
//! closes the connection, so nothing after a refused head is ever read as a request.

use super::{BodyKind, ClError};
use crate::method::Method;
use std::fmt;

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
    /// Ambiguous framing (CL+TE, several CLs, bad CL, malformed TE, `chunked` twice or not
    /// last) → 400.
    Smuggling(&'static str),
    /// A well-formed transfer coding other than `chunked` (`gzip, chunked`, `identity`, an
    /// unknown coding): RFC 9112 §6.1 → 501.
    UnsupportedCoding,
    /// Not HTTP/1.0 or 1.1 → 505.
    Version,
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TooLarge => f.write_str("request head too large"),
            HeadError::Malformed(why) => write!(f, "malformed request head: {why}"),
            HeadError::Smuggling(why) => write!(f, "ambiguous request framing: {why}"),
            HeadError::Version => f.write_str("HTTP version not supported"),
            HeadError::UnsupportedCoding => f.write_str("transfer coding not implemented"),
        }
    }
}

impl std::error::Error for HeadError {}

/// Parses a request head from the start of `buf`. `Ok(None)`: incomplete (and `buf` is still
/// within `max_header_bytes`). `headers` is caller-owned scratch (reused per request).
pub fn parse<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>; super::MAX_HEADERS],
    max_header_bytes: usize,
) -> Result<Option<RequestHead<'b, 'h>>, HeadError> {
    let window = &buf[..buf.len().min(max_header_bytes)];
    let mut req = httparse::Request::new(&mut headers[..]);
    let head_len = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            // Refuse a bare LF/CR as soon as it is visible; a trailing CR may still get its LF.
            let seen = window.strip_suffix(b"\r").unwrap_or(window);
            super::check_line_endings(seen).map_err(HeadError::Malformed)?;
            if window.len() >= max_header_bytes {
                return Err(HeadError::TooLarge);
            }
            return Ok(None);
        }
        Err(e) => return Err(map_error(e, window)),
    };
    let head = &window[..head_len];
    super::check_line_endings(head).map_err(HeadError::Malformed)?;

    let (Some(method_str), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(HeadError::Malformed("incomplete request line"));
    };
    let headers: &'h [httparse::Header<'b>] = req.headers;
    if minor_version > 1 {
        return Err(HeadError::Version);
    }
    if method_str.is_empty() || !method_str.bytes().all(super::is_tchar) {
        return Err(HeadError::Malformed("invalid method"));
    }
    check_target(target)?;
    super::check_fields(headers).map_err(HeadError::Malformed)?;

    let mut host: Option<&'b [u8]> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Err(HeadError::Malformed("more than one Host"));
            }
            if !valid_host(h.value) {
                return Err(HeadError::Malformed("invalid Host"));
            }
            host = Some(h.value);
        }
    }
    if host.is_none() && minor_version == 1 {
        return Err(HeadError::Malformed("missing Host"));
    }

    let body = framing(headers, minor_version)?;
    let expect_continue = minor_version == 1
        && headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("expect")
                && super::trim_ows(h.value).eq_ignore_ascii_case(b"100-continue")
        });
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    Ok(Some(RequestHead {
        method: Method::from_bytes(method_str.as_bytes()),
        method_str,
        path,
        query,
        minor_version,
        headers,
        head_len,
        body,
        keep_alive: super::keep_alive(minor_version, headers),
        expect_continue,
        host,
    }))
}

fn map_error(e: httparse::Error, window: &[u8]) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooLarge,
        httparse::Error::Version => version_error(window),
        httparse::Error::HeaderName => {
            HeadError::Malformed("invalid header name, obs-fold or whitespace before colon")
        }
        httparse::Error::HeaderValue => HeadError::Malformed("invalid header value"),
        httparse::Error::NewLine => HeadError::Malformed("invalid line ending"),
        httparse::Error::Token => HeadError::Malformed("invalid method or request target"),
        _ => HeadError::Malformed("invalid request line"),
    }
}

/// `httparse` says `Version` for anything after the target that is not `HTTP/1.0` or
/// `HTTP/1.1`; only a well-formed `HTTP/<digit>` there is an unsupported version (505), the
/// rest (`http/1.1`, a doubled space, junk) is a malformed request line (400).
fn version_error(window: &[u8]) -> HeadError {
    let start = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(window.len());
    let mut parts = window[start..].splitn(3, |&b| b == b' ');
    let (_method, _target) = (parts.next(), parts.next());
    match parts.next() {
        Some(v) if v.starts_with(b"HTTP/") && v.get(5).is_some_and(u8::is_ascii_digit) => {
            HeadError::Version
        }
        _ => HeadError::Malformed("invalid HTTP version"),
    }
}

/// Only origin-form (`/path[?query]`, RFC 9112 §3.2.1) is served: absolute-form,
/// authority-form (CONNECT) and asterisk-form (`OPTIONS *`) are refused, as are fragments and
/// raw non-ASCII bytes (they must be percent-encoded).
fn check_target(target: &str) -> Result<(), HeadError> {
    if !target.starts_with('/') {
        return Err(HeadError::Malformed("request target not in origin-form"));
    }
    if !target.bytes().all(|b| b.is_ascii_graphic() && b != b'#') {
        return Err(HeadError::Malformed("invalid byte in request target"));
    }
    Ok(())
}

/// `Host = uri-host [ ":" port ]` (RFC 9110 §7.2), checked at the byte level: reg-name,
/// IPv4 and IP-literal characters only; empty is allowed.
fn valid_host(v: &[u8]) -> bool {
    v.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
            )
    })
}

/// Body framing of a request (RFC 9112 §6.3), refusing everything two parsers could read
/// differently.
fn framing(headers: &[httparse::Header<'_>], minor_version: u8) -> Result<BodyKind, HeadError> {
    let te = super::transfer_codings(headers);
    if te.present {
        if minor_version == 0 {
            return Err(HeadError::Smuggling(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("content-length"))
        {
            return Err(HeadError::Smuggling(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if te.count == 0 || te.empty != 0 || te.invalid != 0 {
            return Err(HeadError::Smuggling("malformed Transfer-Encoding"));
        }
        if te.chunked > 1 {
            return Err(HeadError::Smuggling("chunked applied more than once"));
        }
        if te.chunked == 1 && !te.final_chunked {
            return Err(HeadError::Smuggling("chunked is not the final coding"));
        }
        if te.other != 0 {
            return Err(HeadError::UnsupportedCoding);
        }
        return Ok(BodyKind::Chunked);
    }
    match super::content_length(headers) {
        Ok(Some(n)) => Ok(BodyKind::Length(n)),
        Ok(None) => Ok(BodyKind::None),
        Err(ClError::Invalid) => Err(HeadError::Smuggling("invalid Content-Length")),
        Err(ClError::Repeated) => Err(HeadError::Smuggling("more than one Content-Length")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::MAX_HEADERS;

    const LIMIT: usize = 10_240;

    fn scratch<'b>() -> [httparse::Header<'b>; MAX_HEADERS] {
        [httparse::EMPTY_HEADER; MAX_HEADERS]
    }

    /// Parses a complete head (panics when incomplete or refused).
    fn ok(raw: &[u8]) -> (BodyKind, bool, bool, usize) {
        let mut h = scratch();
        let head = parse(raw, &mut h, LIMIT)
            .unwrap_or_else(|e| panic!("{:?}: {e:?}", String::from_utf8_lossy(raw)))
            .unwrap_or_else(|| panic!("{:?}: incomplete", String::from_utf8_lossy(raw)));
        (
            head.body,
            head.keep_alive,
            head.expect_continue,
            head.head_len,
        )
    }

    fn err(raw: &[u8]) -> HeadError {
        let mut h = scratch();
        match parse(raw, &mut h, LIMIT) {
            Err(e) => e,
            Ok(r) => panic!(
                "{:?} was accepted: {:?}",
                String::from_utf8_lossy(raw),
                r.map(|h| h.body)
            ),
        }
    }

    fn is_malformed(e: HeadError) -> bool {
        matches!(e, HeadError::Malformed(_))
    }

    fn is_smuggling(e: HeadError) -> bool {
        matches!(e, HeadError::Smuggling(_))
    }

    #[test]
    fn get_with_query() {
        let raw =
            b"GET /pets/dog?type=a&b=c?d HTTP/1.1\r\nHost: api.example.com\r\nAccept: */*\r\n\r\n";
        let mut h = scratch();
        let head = parse(raw, &mut h, LIMIT).unwrap().unwrap();
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.method_str, "GET");
        assert_eq!(head.path, "/pets/dog");
        assert_eq!(head.query, Some("type=a&b=c?d"));
        assert_eq!(head.minor_version, 1);
        assert_eq!(head.headers.len(), 2);
        assert_eq!(head.headers[1].name, "Accept");
        assert_eq!(head.head_len, raw.len());
        assert_eq!(head.body, BodyKind::None);
        assert!(head.keep_alive);
        assert!(!head.expect_continue);
        assert_eq!(head.host, Some(&b"api.example.com"[..]));
    }

    #[test]
    fn path_without_query_and_empty_query() {
        let mut h = scratch();
        let head = parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &mut h, LIMIT)
            .unwrap()
            .unwrap();
        assert_eq!((head.path, head.query), ("/", None));
        let mut h = scratch();
        let head = parse(b"GET /x? HTTP/1.1\r\nHost: a\r\n\r\n", &mut h, LIMIT)
            .unwrap()
            .unwrap();
        assert_eq!((head.path, head.query), ("/x", Some("")));
    }

    #[test]
    fn other_methods_keep_their_token() {
        let mut h = scratch();
        let head = parse(b"PROPFIND /d HTTP/1.1\r\nHost: a\r\n\r\n", &mut h, LIMIT)
            .unwrap()
            .unwrap();
        assert_eq!(head.method, Method::Other);
        assert_eq!(head.method_str, "PROPFIND");
    }

    #[test]
    fn valid_requests() {
        use BodyKind::*;
        // (raw, body, keep_alive, expect_continue)
        let cases: &[(&[u8], BodyKind, bool, bool)] = &[
            (b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", Length(5), true, false),
            (b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", Length(0), true, false),
            (b"POST /p HTTP/1.1\r\nHost: a\r\ncontent-length:  007 \r\n\r\n", Length(7), true, false),
            (b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n", Length(u64::MAX), true, false),
            (b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", Chunked, true, false),
            (b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  ChUnKeD \t\r\n\r\n", Chunked, true, false),
            (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", None, false, false),
            (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n", None, false, false),
            (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: te, close\r\n\r\n", None, false, false),
            (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", None, true, false),
            (b"GET / HTTP/1.0\r\n\r\n", None, false, false),
            (b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", None, true, false),
            (b"GET / HTTP/1.0\r\nConnection: foo ,Keep-Alive\r\n\r\n", None, true, false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", None, false, false),
            (b"POST /p HTTP/1.0\r\nContent-Length: 3\r\n\r\n", Length(3), false, false),
            (b"PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n", Length(9), true, true),
            (b"PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 9\r\n\r\n", Length(9), true, true),
            (b"PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 9\r\n\r\n", Length(9), true, false),
            // RFC 9110 §10.1.1: ignore 100-continue from an HTTP/1.0 client.
            (b"PUT /u HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n", Length(9), false, false),
            // Empty Host is allowed (RFC 9112 §3.2), and one leading CRLF is ignored.
            (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", None, true, false),
            (b"\r\nGET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", None, true, false),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX-Bin: caf\xc3\xa9\t!\r\n\r\n", None, true, false),
        ];
        for &(raw, body, keep_alive, expect) in cases {
            let got = ok(raw);
            assert_eq!(
                (got.0, got.1, got.2, got.3),
                (body, keep_alive, expect, raw.len()),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn malformed_heads() {
        let cases: &[&[u8]] = &[
            // Bare LF / bare CR line endings, anywhere.
            b"GET / HTTP/1.1\nHost: a\n\n",
            b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\n",
            b"GET / HTTP/1.1\r\nHost: a\n\r\n",
            b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\rHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
            // obs-fold, also hiding a framing header.
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n  b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
            // Whitespace between name and colon.
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\n",
            // Bad token bytes in names and methods.
            b"GET / HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: b\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"G\xc3\x89T / HTTP/1.1\r\nHost: a\r\n\r\n",
            b" GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            // Control characters in values.
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x1bb\r\n\r\n",
            // Request targets other than origin-form.
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET x HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
            // Request-line shapes.
            b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
            b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / http/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.10\r\nHost: a\r\n\r\n",
            b"GET /\r\n\r\n",
            // Host: missing on 1.1, repeated, or not a host.
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n",
        ];
        for &raw in cases {
            let e = err(raw);
            assert!(is_malformed(e), "{:?}: {e:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn smuggling_heads() {
        let cases: &[&[u8]] = &[
            // CL + TE in either order, also with an invalid CL.
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n",
            // Several CLs that differ, as fields or as a list.
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 47\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 47\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5, 6\r\n\r\n",
            // Identical repeats and lists too (http-desync-guardian: Severe; nginx: 400).
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000,1000\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
            // CL that is not 1*DIGIT or overflows.
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5.0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \xd9\xa5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            // TE other than exactly one chunked.
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
            // Malformed codings, CL next to an unsupported coding, chunked not last.
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip;\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip x\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked, chunked\r\n\r\n",
            // TE on HTTP/1.0.
            b"POST / HTTP/1.0\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        ];
        for &raw in cases {
            let e = err(raw);
            assert!(is_smuggling(e), "{:?}: {e:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn unsupported_transfer_codings() {
        let cases: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: GZIP ,  chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunk\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x-zip; level=\"9\", chunked\r\n\r\n",
        ];
        for &raw in cases {
            assert_eq!(
                err(raw),
                HeadError::UnsupportedCoding,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn unsupported_versions() {
        for raw in [
            &b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
            b"GET / HTTP/0.9\r\nHost: a\r\n\r\n",
            b"GET / HTTP/3\r\nHost: a\r\n\r\n",
            // Refused as soon as the version is known to be wrong.
            b"GET / HTTP/2",
        ] {
            assert_eq!(
                err(raw),
                HeadError::Version,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn pipelined_heads() {
        let first = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
        let second = b"POST /b?x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
        let mut buf = first.to_vec();
        buf.extend_from_slice(second);
        let mut h = scratch();
        let head = parse(&buf, &mut h, LIMIT).unwrap().unwrap();
        assert_eq!(head.head_len, first.len());
        assert_eq!(head.path, "/a");
        assert_eq!(head.body, BodyKind::None);
        let rest = &buf[head.head_len..];
        let mut h = scratch();
        let head = parse(rest, &mut h, LIMIT).unwrap().unwrap();
        assert_eq!(head.head_len, second.len() - 2);
        assert_eq!((head.path, head.query), ("/b", Some("x")));
        assert_eq!(head.body, BodyKind::Length(2));
        assert_eq!(&rest[head.head_len..], b"hi");
    }

    #[test]
    fn incomplete_at_every_split_point() {
        let raw = b"POST /pets/1?a=b HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: t/1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n";
        for i in 0..raw.len() {
            let mut h = scratch();
            assert!(
                matches!(parse(&raw[..i], &mut h, LIMIT), Ok(None)),
                "split at {i}"
            );
        }
        assert_eq!(ok(raw).0, BodyKind::Chunked);
    }

    #[test]
    fn incomplete_bare_lf_is_refused_early() {
        let mut h = scratch();
        assert!(is_malformed(
            parse(b"GET / HTTP/1.1\nHost: a", &mut h, LIMIT).unwrap_err()
        ));
    }

    #[test]
    fn too_large() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let mut h = scratch();
        // Exactly at the limit is fine; one byte less is too large.
        assert!(parse(raw, &mut h, raw.len()).unwrap().is_some());
        let mut h = scratch();
        assert_eq!(
            parse(raw, &mut h, raw.len() - 1).unwrap_err(),
            HeadError::TooLarge
        );
        // Incomplete and already at the limit.
        let mut h = scratch();
        assert_eq!(
            parse(&raw[..20], &mut h, 20).unwrap_err(),
            HeadError::TooLarge
        );
        // Incomplete and under the limit: wait for more.
        let mut h = scratch();
        assert!(parse(&raw[..20], &mut h, 21).unwrap().is_none());
        // A body after a head within the limit does not count.
        let mut buf = raw.to_vec();
        buf.extend_from_slice(&[b'x'; 100]);
        let mut h = scratch();
        assert_eq!(
            parse(&buf, &mut h, raw.len()).unwrap().unwrap().head_len,
            raw.len()
        );
    }

    #[test]
    fn too_many_headers() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADERS - 1 {
            raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        let mut at_limit = raw.clone();
        at_limit.extend_from_slice(b"\r\n");
        let mut h = scratch();
        let head = parse(&at_limit, &mut h, 1 << 20).unwrap().unwrap();
        assert_eq!(head.headers.len(), MAX_HEADERS);
        raw.extend_from_slice(b"X-One-More: v\r\n\r\n");
        let mut h = scratch();
        assert_eq!(
            parse(&raw, &mut h, 1 << 20).unwrap_err(),
            HeadError::TooLarge
        );
    }

    #[test]
    fn display() {
        assert_eq!(
            HeadError::Smuggling("x").to_string(),
            "ambiguous request framing: x"
        );
    }
}
