//! What an HTTP proxy integration sends where: the backend request head built from the
//! client's (Host rewritten, hop-by-hop headers dropped, `X-Forwarded-*` added), the client
//! response head built from the backend's (hop-by-hop dropped, `x-amzn-RequestId` added, the
//! body's relay mode chosen), and mock integration responses. Both head writers share one
//! header-copy loop (`copy_headers`). Pure byte building into caller-owned buffers, no allocation
//! beyond growing them.

use crate::gateway::{MockTarget, ProxyTarget, Upstream};
use crate::http::request::RequestHead;
use crate::http::response::ResponseHead;
use crate::http::{is_hop_by_hop_request, is_hop_by_hop_response, BodyKind};
use smallvec::SmallVec;
use std::io::Write;
use std::net::IpAddr;

/// Facts about the client connection that the backend is told.
#[derive(Clone, Copy, Debug)]
pub struct ClientInfo {
    pub ip: IpAddr,
    /// The listener port the client connected to (`X-Forwarded-Port`).
    pub port: u16,
    /// `http` or `https` (`X-Forwarded-Proto`).
    pub proto: &'static str,
}

/// Header names listed in `Connection` (RFC 9110 §7.6.1): also hop-by-hop for this message.
fn connection_tokens<'a>(headers: &[httparse::Header<'a>]) -> SmallVec<[&'a [u8]; 4]> {
    let mut tokens = SmallVec::new();
    for h in headers {
        if h.name.eq_ignore_ascii_case("connection") {
            for t in h.value.split(|&b| b == b',') {
                let t = t.trim_ascii();
                if !t.is_empty() {
                    tokens.push(t);
                }
            }
        }
    }
    tokens
}

fn named_in(tokens: &[&[u8]], name: &str) -> bool {
    tokens
        .iter()
        .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
}

/// Appends `n` in decimal (no `fmt` machinery: this runs for every request).
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    // Fast paths for the usual small numbers (statuses, short lengths, address bytes): a
    // fixed-size append, no loop.
    let d = |n: u64| b'0' + (n % 10) as u8;
    if n < 10 {
        out.push(d(n));
        return;
    }
    if n < 100 {
        out.extend_from_slice(&[d(n / 10), d(n)]);
        return;
    }
    if n < 1000 {
        out.extend_from_slice(&[d(n / 100), d(n / 10), d(n)]);
        return;
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `HTTP/1.1 <status> <reason>\r\n`.
fn push_status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends an address as `Display` would (dotted quad by hand; IPv6 is rare enough for fmt).
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{v6}");
        }
    }
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Copies a message's end-to-end headers to `out`, as received: drops the hop-by-hop ones
/// (`hop_by_hop`), the ones its `Connection` field names, and those `skip` claims (`skip` may
/// keep what it needs of them). The parsers have already refused framing headers that could be
/// read two ways (several `Content-Length` values, malformed `Transfer-Encoding`), so the
/// framing headers that remain are copied as they are.
fn copy_headers<'b>(
    out: &mut Vec<u8>,
    headers: &[httparse::Header<'b>],
    hop_by_hop: fn(&str) -> bool,
    mut skip: impl FnMut(&httparse::Header<'b>) -> bool,
) {
    let conn_tokens = connection_tokens(headers);
    for h in headers {
        if hop_by_hop(h.name) || named_in(&conn_tokens, h.name) || skip(h) {
            continue;
        }
        push_header(out, h.name.as_bytes(), h.value);
    }
}

/// Appends the backend request head for `req` to `out`.
///
/// `params` and `path` come from the route match; the request target is the integration's
/// path template with them substituted and the client's query appended.
#[allow(clippy::too_many_arguments)]
pub fn write_upstream_head(
    req: &RequestHead<'_, '_>,
    upstream: &Upstream,
    target: &ProxyTarget,
    params: &[&str],
    path: &str,
    client: &ClientInfo,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(req.method_str.as_bytes());
    out.push(b' ');
    target.path.write(params, path, req.query, out);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(upstream.host_header.as_bytes());
    out.extend_from_slice(b"\r\n");

    let mut xff: Option<&[u8]> = None;
    copy_headers(out, req.headers, is_hop_by_hop_request, |h| {
        if h.name.eq_ignore_ascii_case("x-forwarded-for") {
            // Several X-Forwarded-For headers: the last one's chain is kept.
            xff = Some(h.value);
            return true;
        }
        h.name.eq_ignore_ascii_case("x-forwarded-proto")
            || h.name.eq_ignore_ascii_case("x-forwarded-port")
    });
    out.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prev) = xff {
        let prev = prev.trim_ascii();
        if !prev.is_empty() {
            out.extend_from_slice(prev);
            out.extend_from_slice(b", ");
        }
    }
    push_ip(out, client.ip);
    out.extend_from_slice(b"\r\nx-forwarded-proto: ");
    out.extend_from_slice(client.proto.as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-port: ");
    push_decimal(out, u64::from(client.port));
    out.extend_from_slice(b"\r\n");
    if req.body == BodyKind::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How the backend's body is passed to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relay {
    /// Bytes as they come (CL, chunked to an HTTP/1.1 client, or until close to HTTP/1.0).
    Raw,
    /// Chunk framing removed (an HTTP/1.0 client cannot read chunked); the connection closes.
    Dechunk,
    /// A body delimited by the backend's close, sent chunked to an HTTP/1.1 client (as nginx
    /// does): a clean close ends it with the `0` chunk, a reset leaves that out, so the client
    /// can tell a cut body from a complete one, and the client connection may stay open.
    Rechunk,
}

/// What `write_client_head` decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientHead {
    pub relay: Relay,
    /// The client connection ends after this response (`connection: close` was sent).
    pub close: bool,
}

/// Appends the client response head for a backend response to `out` and says how to relay
/// its body. `close`: the client asked for the connection to end after this response.
pub fn write_client_head(
    resp: &ResponseHead<'_, '_>,
    client_minor_version: u8,
    request_id: &[u8],
    close: bool,
    out: &mut Vec<u8>,
) -> ClientHead {
    let has_te = resp
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    let relay = match resp.body {
        BodyKind::Chunked if client_minor_version == 0 => Relay::Dechunk,
        // Only a body with no transfer coding at all is re-encoded: one under other codings
        // (`gzip`, or chunked not last) goes as it is, ended by the close.
        BodyKind::UntilClose if client_minor_version >= 1 && !has_te => Relay::Rechunk,
        _ => Relay::Raw,
    };
    // Without framing the client can read, the end of the body is the end of the connection.
    let close = close
        || relay == Relay::Dechunk
        || (resp.body == BodyKind::UntilClose && relay != Relay::Rechunk);
    push_status_line(out, resp.status, resp.reason);
    copy_headers(out, resp.headers, is_hop_by_hop_response, |h| {
        (relay == Relay::Dechunk && h.name.eq_ignore_ascii_case("transfer-encoding"))
            || h.name.eq_ignore_ascii_case("x-amzn-requestid")
    });
    if relay == Relay::Rechunk {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    push_header(out, b"x-amzn-RequestId", request_id);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if client_minor_version == 0 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    ClientHead { relay, close }
}

/// Appends a mock integration's complete response to `out` (no body for HEAD, 1xx, 204, 304).
pub fn write_mock(
    mock: &MockTarget,
    request_id: &[u8],
    close: bool,
    head_request: bool,
    client_minor_version: u8,
    out: &mut Vec<u8>,
) {
    push_status_line(out, mock.status, reason_phrase(mock.status));
    for (name, value) in &mock.headers {
        push_header(out, name.as_bytes(), value.as_bytes());
    }
    let bodyless = matches!(mock.status, 100..=199 | 204 | 304);
    if !bodyless {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, mock.body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    push_header(out, b"x-amzn-RequestId", request_id);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if client_minor_version == 0 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !bodyless && !head_request {
        out.extend_from_slice(&mock.body);
    }
}

/// The standard reason phrase of a status code ("" when unknown; the phrase is optional).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_ip_match_display() {
        for n in [0u64, 7, 10, 99, 200, 65535, 1_000_000, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "203.0.113.255",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().expect("valid test address");
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().into_bytes());
        }
        let mut out = Vec::new();
        push_status_line(&mut out, 204, "No Content");
        assert_eq!(out, b"HTTP/1.1 204 No Content\r\n");
    }

    /// The client head written for backend response `raw`: (head text, relay, close).
    fn client_head(raw: &[u8], minor: u8, close: bool) -> (String, Relay, bool) {
        let mut h = [httparse::EMPTY_HEADER; crate::http::MAX_HEADERS];
        let resp = crate::http::response::parse(raw, &mut h, 8192, false)
            .expect("valid test response")
            .expect("complete test response");
        let mut out = Vec::new();
        let ch = write_client_head(&resp, minor, b"rid", close, &mut out);
        (
            String::from_utf8_lossy(&out).into_owned(),
            ch.relay,
            ch.close,
        )
    }

    #[test]
    fn client_head_relay_modes() {
        let until_close = b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n";
        // HTTP/1.1 client: re-chunked, the connection may stay.
        let (head, relay, close) = client_head(until_close, 1, false);
        assert_eq!((relay, close), (Relay::Rechunk, false));
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nX-A: 1\r\ntransfer-encoding: chunked\r\nx-amzn-RequestId: rid\r\n\r\n"
        );
        let (head, relay, close) = client_head(until_close, 1, true);
        assert_eq!((relay, close), (Relay::Rechunk, true));
        assert!(
            head.ends_with(
                "transfer-encoding: chunked\r\nx-amzn-RequestId: rid\r\nconnection: close\r\n\r\n"
            ),
            "{head}"
        );
        // HTTP/1.0 client: close-delimited as received.
        let (head, relay, close) = client_head(until_close, 0, false);
        assert_eq!((relay, close), (Relay::Raw, true));
        assert!(!head.contains("transfer-encoding"), "{head}");
        // Under another transfer coding: passed as received, closed.
        let (head, relay, close) = client_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            1,
            false,
        );
        assert_eq!((relay, close), (Relay::Raw, true));
        assert_eq!(
            head.to_ascii_lowercase()
                .matches("transfer-encoding")
                .count(),
            1,
            "{head}"
        );
        // Chunked: raw to 1.1, de-chunked (and closed) to 1.0.
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (head, relay, close) = client_head(chunked, 1, false);
        assert_eq!((relay, close), (Relay::Raw, false));
        assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
        let (head, relay, close) = client_head(chunked, 0, false);
        assert_eq!((relay, close), (Relay::Dechunk, true));
        assert!(
            !head.to_ascii_lowercase().contains("transfer-encoding"),
            "{head}"
        );
        // Content-Length is copied as received; hop-by-hop and Connection-named headers go.
        let (head, relay, close) = client_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 007\r\nConnection: x-drop\r\nX-Drop: 1\r\nKeep-Alive: t=5\r\nx-amzn-RequestId: theirs\r\n\r\n",
            1,
            false,
        );
        assert_eq!((relay, close), (Relay::Raw, false));
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nContent-Length: 007\r\nx-amzn-RequestId: rid\r\n\r\n"
        );
    }
}
