//! HTTP/1.1 on borrowed buffers (RFC 9112, strict): request and response heads parsed with
//! `httparse` without copying, body framing decided with the smuggling defences, a streaming
//! chunked-body validator, and the gateway's own error responses.
//! `request::parse` / `response::parse` return `Ok(None)` while the head is incomplete, and
//! nothing here allocates per request.
//!
//! This module owns the shared pieces: `BodyKind`, the header-slot count, the hop-by-hop header
//! tables, and the strictness checks both head parsers use (CRLF-only line endings, field value
//! bytes, list-valued header fields such as `Content-Length`, `Transfer-Encoding` and
//! `Connection`).

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
    let n = name.as_bytes();
    let is = |s: &str| n.eq_ignore_ascii_case(s.as_bytes());
    match n.len() {
        2 => is("te"),
        3 => is("via"),
        4 => is("host"),
        6 => is("expect"),
        7 => is("trailer") || is("upgrade"),
        10 => is("connection") || is("keep-alive"),
        11 => is("content-md5"),
        12 => is("max-forwards"),
        16 => is("proxy-connection"),
        17 => is("transfer-encoding"),
        18 => is("proxy-authenticate"),
        19 => is("proxy-authorization"),
        _ => false,
    }
}

/// Headers not forwarded from a backend response to the client (lowercase compare).
pub fn is_hop_by_hop_response(name: &str) -> bool {
    let n = name.as_bytes();
    let is = |s: &str| n.eq_ignore_ascii_case(s.as_bytes());
    match n.len() {
        2 => is("te"),
        7 => is("trailer") || is("upgrade"),
        10 => is("connection") || is("keep-alive"),
        16 => is("proxy-connection"),
        18 => is("proxy-authenticate"),
        _ => false,
    }
}

/// `tchar` (RFC 9110 §5.6.2): the bytes of a token such as a method or a field name.
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// `is_tchar` as a table: one load per byte on the hot path.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = tchar_by_rule(i as u8);
        i += 1;
    }
    t
};

const fn tchar_by_rule(b: u8) -> bool {
    matches!(b,
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
        | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

/// A byte allowed inside a field value (RFC 9110 §5.5): VCHAR, SP, HTAB, obs-text.
#[inline]
pub(crate) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// Only CRLF ends a line: every CR must be followed by LF and every LF preceded by CR.
pub(crate) fn check_line_endings(head: &[u8]) -> Result<(), &'static str> {
    for i in memchr::memchr2_iter(b'\r', b'\n', head) {
        if head[i] == b'\r' {
            if head.get(i + 1) != Some(&b'\n') {
                return Err("bare CR in head");
            }
        } else if i == 0 || head[i - 1] != b'\r' {
            return Err("bare LF in head");
        }
    }
    Ok(())
}

/// Field names are tokens and values hold no control characters besides HTAB. `httparse`
/// checks this as well; checking again keeps the guarantee independent of its SIMD paths.
pub(crate) fn check_fields(headers: &[httparse::Header<'_>]) -> Result<(), &'static str> {
    for h in headers {
        if h.name.is_empty() || !h.name.bytes().all(is_tchar) {
            return Err("invalid header name");
        }
        if !valid_field_value(h.value) {
            return Err("control character in header value");
        }
    }
    Ok(())
}

/// Whether every byte of `v` is a field-value byte (`is_field_value_byte`), eight bytes at a
/// time: a word with no byte below 0x20 and no 0x7F is clean (bytes >= 0x80 are obs-text,
/// allowed); only a word that may hold one (a HTAB, or a real control) is checked bytewise.
#[inline]
pub(crate) fn valid_field_value(v: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut words = v.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let x = u64::from_le_bytes(b);
        // High bit set in a byte lane when that byte is < 0x20 (for bytes < 0x80; lanes with
        // the top bit set are masked out by `!x`), or when it is 0x7F (x ^ 0x7F.. is zero).
        let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let y = x ^ (ONES * 0x7F);
        let is_del = y.wrapping_sub(ONES) & !y & HIGH;
        if (below_space | is_del) != 0 && !w.iter().all(|&b| is_field_value_byte(b)) {
            return false;
        }
    }
    words.remainder().iter().all(|&b| is_field_value_byte(b))
}

/// Strips optional whitespace (SP / HTAB) from both ends.
#[inline]
pub(crate) fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &v[start..end]
}

/// The elements of a comma-separated field value, OWS-trimmed (empty elements included).
#[inline]
pub(crate) fn list_items(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim_ows)
}

/// Whether any header called `name` lists `token` (case-insensitive).
pub(crate) fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| list_items(h.value))
        .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether the connection may carry another message after this one, from the version default
/// (1.1 persistent, 1.0 not) and the `Connection` tokens.
pub(crate) fn keep_alive(minor_version: u8, headers: &[httparse::Header<'_>]) -> bool {
    if has_token(headers, "connection", "close") {
        return false;
    }
    minor_version >= 1 || has_token(headers, "connection", "keep-alive")
}

/// Why `content_length` refused the `Content-Length` fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClError {
    /// Not 1*DIGIT, empty, or over `u64::MAX`.
    Invalid,
    /// More than one value: several fields or a list, identical or not. RFC 9110 §8.6 lets a
    /// recipient merge identical ones, but AWS's desync classifier (http-desync-guardian) rates
    /// them Severe and nginx refuses them, so they are refused here too.
    Repeated,
}

/// The message's `Content-Length`, if any: at most one field holding one 1*DIGIT value.
pub(crate) fn content_length(headers: &[httparse::Header<'_>]) -> Result<Option<u64>, ClError> {
    let mut found: Option<u64> = None;
    for h in headers {
        if !h.name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        if found.is_some() {
            return Err(ClError::Repeated);
        }
        let mut items = list_items(h.value);
        let n = items
            .next()
            .and_then(parse_decimal)
            .ok_or(ClError::Invalid)?;
        if let Some(more) = items.next() {
            return Err(if parse_decimal(more).is_some() {
                ClError::Repeated
            } else {
                ClError::Invalid
            });
        }
        found = Some(n);
    }
    Ok(found)
}

/// 1*DIGIT as a `u64`; `None` when empty, not all digits, or overflowing.
pub(crate) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// What the `Transfer-Encoding` fields (combined in order, as one list) say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TransferCodings {
    /// Any `Transfer-Encoding` field was present.
    pub present: bool,
    /// Number of codings listed (non-empty elements).
    pub count: usize,
    /// Number of empty list elements (`chunked,` or an empty field).
    pub empty: usize,
    /// Elements that are not `token *( OWS ";" OWS token "=" ( token / quoted-string ) )`.
    pub invalid: usize,
    /// How many codings are exactly `chunked` (case-insensitive, without parameters).
    pub chunked: usize,
    /// Well-formed codings other than a plain `chunked` (`gzip`, `identity`, `chunked;q=1`):
    /// codings this gateway does not implement.
    pub other: usize,
    /// The last coding is a plain `chunked`.
    pub final_chunked: bool,
}

pub(crate) fn transfer_codings(headers: &[httparse::Header<'_>]) -> TransferCodings {
    let mut tc = TransferCodings {
        present: false,
        count: 0,
        empty: 0,
        invalid: 0,
        chunked: 0,
        other: 0,
        final_chunked: false,
    };
    for h in headers {
        if !h.name.eq_ignore_ascii_case("transfer-encoding") {
            continue;
        }
        tc.present = true;
        for item in list_items(h.value) {
            if item.is_empty() {
                tc.empty += 1;
                continue;
            }
            tc.count += 1;
            tc.final_chunked = item.eq_ignore_ascii_case(b"chunked");
            if tc.final_chunked {
                tc.chunked += 1;
            } else if valid_transfer_coding(item) {
                tc.other += 1;
            } else {
                tc.invalid += 1;
            }
        }
    }
    tc
}

/// `transfer-coding = token *( OWS ";" OWS transfer-parameter )`, `transfer-parameter = token
/// BWS "=" BWS ( token / quoted-string )` (RFC 9112 §7, RFC 9110 §5.6). `item` is OWS-trimmed
/// and holds no `,` outside quotes: the list split is naive, so a quoted `,` leaves an
/// unterminated quote here, which is refused.
fn valid_transfer_coding(item: &[u8]) -> bool {
    let mut i = 0;
    let token = |i: &mut usize| {
        let start = *i;
        while *i < item.len() && is_tchar(item[*i]) {
            *i += 1;
        }
        *i > start
    };
    let ows = |i: &mut usize| {
        while *i < item.len() && (item[*i] == b' ' || item[*i] == b'\t') {
            *i += 1;
        }
    };
    if !token(&mut i) {
        return false;
    }
    loop {
        ows(&mut i);
        if i == item.len() {
            return true;
        }
        if item[i] != b';' {
            return false;
        }
        i += 1;
        ows(&mut i);
        if !token(&mut i) {
            return false;
        }
        ows(&mut i);
        if item.get(i) != Some(&b'=') {
            return false;
        }
        i += 1;
        ows(&mut i);
        if item.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match item.get(i) {
                    Some(b'"') => break,
                    Some(b'\\') if item.get(i + 1).is_some_and(|&b| is_quotable(b)) => i += 2,
                    Some(&b) if is_qdtext(b) => i += 1,
                    _ => return false,
                }
            }
            i += 1;
        } else if !token(&mut i) {
            return false;
        }
    }
}

/// qdtext (RFC 9110 §5.6.4): HTAB, SP, `!`, `#`-`[`, `]`-`~`, obs-text.
#[inline]
pub(crate) fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | b'!' | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

/// What a quoted-pair may escape: HTAB, SP, VCHAR, obs-text.
#[inline]
pub(crate) fn is_quotable(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_value_check_agrees_with_the_bytewise_rule() {
        let base = b"Mozilla/5.0 (X11; Linux x86_64) \xc3\xa9t\xc3\xa9 \ttab ok".to_vec();
        assert!(valid_field_value(&base));
        for len in [0, 1, 7, 8, 9, 15, 16, 17, base.len()] {
            let v = &base[..len];
            for pos in 0..len {
                for b in 0..=255u8 {
                    let mut w = v.to_vec();
                    w[pos] = b;
                    assert_eq!(
                        valid_field_value(&w),
                        w.iter().all(|&c| is_field_value_byte(c)),
                        "byte {b:#04x} at {pos} of {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn tchar_table_matches_the_rule() {
        for b in 0..=255u8 {
            assert_eq!(is_tchar(b), tchar_by_rule(b), "{b:#04x}");
        }
    }

    #[test]
    fn hop_by_hop_request_headers() {
        for name in [
            "connection",
            "Keep-Alive",
            "proxy-connection",
            "TE",
            "trailer",
            "Transfer-Encoding",
            "upgrade",
            "Expect",
            "max-forwards",
            "via",
            "proxy-authenticate",
            "Proxy-Authorization",
            "content-md5",
            "HOST",
        ] {
            assert!(is_hop_by_hop_request(name), "{name}");
        }
        for name in [
            "",
            "content-length",
            "content-type",
            "x-forwarded-for",
            "tee",
            "hosts",
            "authorization",
            "vía",
            "keep_alive",
        ] {
            assert!(!is_hop_by_hop_request(name), "{name}");
        }
    }

    #[test]
    fn hop_by_hop_response_headers() {
        for name in [
            "Connection",
            "keep-alive",
            "Proxy-Connection",
            "te",
            "Trailer",
            "UPGRADE",
            "proxy-authenticate",
        ] {
            assert!(is_hop_by_hop_response(name), "{name}");
        }
        for name in [
            "transfer-encoding",
            "content-length",
            "host",
            "expect",
            "via",
            "content-md5",
            "proxy-authorization",
            "server",
            "",
        ] {
            assert!(!is_hop_by_hop_response(name), "{name}");
        }
    }

    #[test]
    fn line_endings() {
        assert_eq!(check_line_endings(b"a\r\nb\r\n\r\n"), Ok(()));
        assert_eq!(check_line_endings(b""), Ok(()));
        assert!(check_line_endings(b"\n").is_err());
        assert!(check_line_endings(b"a\nb").is_err());
        assert!(check_line_endings(b"a\rb").is_err());
        assert!(check_line_endings(b"a\r").is_err());
        assert!(check_line_endings(b"a\r\r\n").is_err());
        assert!(check_line_endings(b"a\r\n\n").is_err());
    }

    #[test]
    fn ows_and_lists() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
        let items: Vec<&[u8]> = list_items(b" a ,b,, c").collect();
        assert_eq!(items, [&b"a"[..], b"b", b"", b"c"]);
    }

    fn cl(values: &[&str]) -> Result<Option<u64>, ClError> {
        let h: Vec<httparse::Header<'_>> = values
            .iter()
            .map(|v| httparse::Header {
                name: "Content-Length",
                value: v.as_bytes(),
            })
            .collect();
        content_length(&h)
    }

    #[test]
    fn content_length_is_one_plain_value() {
        assert_eq!(cl(&[]), Ok(None));
        assert_eq!(cl(&["0"]), Ok(Some(0)));
        assert_eq!(cl(&["007"]), Ok(Some(7)));
        assert_eq!(cl(&[" 1000 "]), Ok(Some(1000)));
        for (values, want) in [
            (&["1000,1000"][..], ClError::Repeated),
            (&["1000, 1000"], ClError::Repeated),
            (&["5, 6"], ClError::Repeated),
            (&["5", "5"], ClError::Repeated),
            (&["5", "6"], ClError::Repeated),
            (&["5", "x"], ClError::Repeated),
            (&["5,"], ClError::Invalid),
            (&[",5"], ClError::Invalid),
            (&["5,x"], ClError::Invalid),
            (&[""], ClError::Invalid),
            (&["+5"], ClError::Invalid),
        ] {
            assert_eq!(cl(values), Err(want), "{values:?}");
        }
    }

    fn te(values: &[&str]) -> TransferCodings {
        let h: Vec<httparse::Header<'_>> = values
            .iter()
            .map(|v| httparse::Header {
                name: "Transfer-Encoding",
                value: v.as_bytes(),
            })
            .collect();
        transfer_codings(&h)
    }

    #[test]
    fn transfer_coding_classes() {
        /// (fields, count, empty, invalid, chunked, other, final_chunked)
        type Case = (
            &'static [&'static str],
            usize,
            usize,
            usize,
            usize,
            usize,
            bool,
        );
        let cases: &[Case] = &[
            (&["chunked"], 1, 0, 0, 1, 0, true),
            (&["CHUNKED"], 1, 0, 0, 1, 0, true),
            (&["gzip, chunked"], 2, 0, 0, 1, 1, true),
            (&["gzip", "chunked"], 2, 0, 0, 1, 1, true),
            (&["identity"], 1, 0, 0, 0, 1, false),
            (&["x-custom"], 1, 0, 0, 0, 1, false),
            (&["chunked;q=1"], 1, 0, 0, 0, 1, false),
            (
                &["gzip ; level = 9 ;a=\"b\\\"c\", chunked"],
                2,
                0,
                0,
                1,
                1,
                true,
            ),
            (&["chunked, gzip"], 2, 0, 0, 1, 1, false),
            (&["chunked, chunked"], 2, 0, 0, 2, 0, true),
            (&["chunked,"], 1, 1, 0, 1, 0, true),
            (&[""], 0, 1, 0, 0, 0, false),
            (&["\"chunked\""], 1, 0, 1, 0, 0, false),
            (&["chunked x"], 1, 0, 1, 0, 0, false),
            (&["gzip;"], 1, 0, 1, 0, 0, false),
            (&["gzip;a"], 1, 0, 1, 0, 0, false),
            (&["gzip;a="], 1, 0, 1, 0, 0, false),
            (&["gzip;a=\"b"], 1, 0, 1, 0, 0, false),
            (&["gzip;a=b c"], 1, 0, 1, 0, 0, false),
            (&["g(z)ip"], 1, 0, 1, 0, 0, false),
        ];
        for &(values, count, empty, invalid, chunked, other, final_chunked) in cases {
            let t = te(values);
            assert_eq!(
                (
                    t.present,
                    t.count,
                    t.empty,
                    t.invalid,
                    t.chunked,
                    t.other,
                    t.final_chunked
                ),
                (true, count, empty, invalid, chunked, other, final_chunked),
                "{values:?}"
            );
        }
        assert!(!te(&[]).present);
    }

    /// A deterministic stand-in for the `core/fuzz` target: mutated heads and chunked bodies
    /// never panic, and a chunked body decodes the same whole and byte by byte.
    #[test]
    fn mutated_inputs_never_panic() {
        const SEEDS: &[&[u8]] = &[
            b"POST /a/b?c=d HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            b"GET / HTTP/1.0\r\nContent-Length: 3, 3\r\nExpect: 100-continue\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"5;a=\"b\\\"c\"\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\nrest",
        ];
        const BYTES: &[u8] = b"\r\n\t :;,=\"\\0aF9Zgx\x00\x7f\x80\xff/?#";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut buf = Vec::new();
        for round in 0..20_000 {
            buf.clear();
            buf.extend_from_slice(SEEDS[round % SEEDS.len()]);
            for _ in 0..1 + rand() % 4 {
                let at = (rand() % (buf.len() as u64 + 1)) as usize;
                let b = BYTES[(rand() % BYTES.len() as u64) as usize];
                match rand() % 4 {
                    0 if at < buf.len() => buf[at] = b,
                    1 => buf.insert(at, b),
                    2 if at < buf.len() => {
                        buf.remove(at);
                    }
                    _ => buf.truncate(at),
                }
            }
            let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
            if let Ok(Some(head)) = request::parse(&buf, &mut h, 200) {
                assert!(head.head_len <= buf.len() && head.path.starts_with('/'));
            }
            let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
            if let Ok(Some(head)) = response::parse(&buf, &mut h, 200, round % 2 == 0) {
                assert!(head.head_len <= buf.len());
            }
            let mut whole = chunked::ChunkedDecoder::new();
            let mut data_whole = Vec::new();
            let r_whole = whole.feed(&buf, |d| data_whole.extend_from_slice(d));
            let mut bytes = chunked::ChunkedDecoder::new();
            let mut data_bytes = Vec::new();
            let mut r_bytes = Ok((0, false));
            let mut used = 0;
            for b in buf.chunks(1) {
                r_bytes = bytes.feed(b, |d| data_bytes.extend_from_slice(d));
                match r_bytes {
                    Ok((n, done)) => {
                        used += n;
                        if done {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            match (r_whole, r_bytes) {
                (Ok((n, done)), Ok((_, done_b))) => {
                    assert_eq!((n, done), (used, done_b), "{:?}", buf);
                    assert_eq!(data_whole, data_bytes);
                }
                (Err(a), Err(b)) => assert_eq!(a, b),
                (a, b) => panic!("{a:?} vs {b:?} on {buf:?}"),
            }
        }
    }

    #[test]
    fn decimal() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"0012"), Some(12));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        for bad in [&b""[..], b"+5", b"-5", b"5 ", b"0x5", b"5.0", b"1e3"] {
            assert_eq!(parse_decimal(bad), None, "{:?}", bad);
        }
    }
}
