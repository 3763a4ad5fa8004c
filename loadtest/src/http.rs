//! Incremental HTTP/1.1 response parsing: status line and headers via
//! `httparse`, then the body framed by Content-Length, chunked encoding or
//! connection close. Bodies are skipped, never copied; the caller keeps the
//! unconsumed bytes and calls again when more arrive.

use std::ops::ControlFlow::{self, Break, Continue};

/// Most headers we look at in one response head.
const MAX_HEADERS: usize = 64;
/// Largest response head (or chunk-size / trailer line) we accept.
pub const MAX_HEAD: usize = 64 * 1024;

/// What a finished response tells the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseInfo {
    pub status: u16,
    /// The server will close the connection after this response.
    pub close: bool,
}

/// Result of feeding bytes to the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `consumed` bytes were used (possibly 0); the response is not finished.
    NeedMore { consumed: usize },
    /// A response ended after `consumed` bytes; further bytes belong to the next one.
    Done { consumed: usize, info: ResponseInfo },
}

/// Malformed or unsupported response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Head(httparse::Error),
    HeadTooLarge,
    BadContentLength,
    BadChunk,
    /// A body ended by EOF before it was complete.
    Truncated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body(u64),
    Chunked(Chunk),
    UntilClose,
}

/// Per-connection parser state; reused for every response on the connection.
#[derive(Debug, Clone)]
pub struct ResponseParser {
    state: State,
    info: ResponseInfo,
}

impl Default for ResponseParser {
    fn default() -> Self {
        Self::new()
    }
}

enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

impl ResponseParser {
    pub fn new() -> Self {
        ResponseParser {
            state: State::Head,
            info: ResponseInfo {
                status: 0,
                close: false,
            },
        }
    }

    /// Forget any partial response (after a reconnect).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// True between responses (nothing of the next one consumed yet).
    pub fn at_boundary(&self) -> bool {
        self.state == State::Head
    }

    /// Feed buffered bytes. `head_request` says the response answers a HEAD
    /// request (no body whatever the headers say).
    pub fn parse(&mut self, buf: &[u8], head_request: bool) -> Result<Step, ParseError> {
        let mut pos = 0usize;
        loop {
            let next = match self.state {
                State::Head => self.head(buf, pos, head_request)?,
                State::Body(left) => self.body(buf, pos, left),
                State::UntilClose => Break(Step::NeedMore {
                    consumed: buf.len(),
                }),
                State::Chunked(Chunk::Size) => self.chunk_size(buf, pos)?,
                State::Chunked(Chunk::Data(left)) => self.chunk_data(buf, pos, left),
                State::Chunked(Chunk::DataEnd) => self.chunk_end(buf, pos)?,
                State::Chunked(Chunk::Trailer) => self.trailer(buf, pos)?,
            };
            match next {
                Continue(p) => pos = p,
                Break(step) => return Ok(step),
            }
        }
    }

    /// A response head at `buf[pos..]`: the position after it (an interim response, or a
    /// body follows), or the step when it is complete, or more is needed.
    #[inline]
    fn head(
        &mut self,
        buf: &[u8],
        pos: usize,
        head_request: bool,
    ) -> Result<ControlFlow<Step, usize>, ParseError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(&buf[pos..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if buf.len() - pos >= MAX_HEAD {
                    return Err(ParseError::HeadTooLarge);
                }
                return Ok(Break(Step::NeedMore { consumed: pos }));
            }
            Err(e) => return Err(ParseError::Head(e)),
        };
        let status = resp.code.unwrap_or(0);
        let (framing, close) = framing(&resp, head_request)?;
        let pos = pos + n;
        if (100..200).contains(&status) && status != 101 {
            // Interim response: the real one follows.
            return Ok(Continue(pos));
        }
        self.info = ResponseInfo {
            status,
            close: close || status == 101,
        };
        match framing {
            Framing::None | Framing::Length(0) => return Ok(Break(self.finish(pos))),
            Framing::Length(len) => self.state = State::Body(len),
            Framing::Chunked => self.state = State::Chunked(Chunk::Size),
            Framing::Close => {
                self.info.close = true;
                self.state = State::UntilClose;
            }
        }
        Ok(Continue(pos))
    }

    /// A body of `left` more bytes, from `buf[pos..]`.
    #[inline]
    fn body(&mut self, buf: &[u8], pos: usize, left: u64) -> ControlFlow<Step, usize> {
        let avail = (buf.len() - pos) as u64;
        if avail >= left {
            return Break(self.finish(pos + left as usize));
        }
        self.state = State::Body(left - avail);
        Break(Step::NeedMore {
            consumed: buf.len(),
        })
    }

    /// A chunk-size line at `buf[pos..]`.
    #[inline]
    fn chunk_size(
        &mut self,
        buf: &[u8],
        pos: usize,
    ) -> Result<ControlFlow<Step, usize>, ParseError> {
        match httparse::parse_chunk_size(&buf[pos..]) {
            Ok(httparse::Status::Complete((n, size))) => {
                self.state = State::Chunked(if size == 0 {
                    Chunk::Trailer
                } else {
                    Chunk::Data(size)
                });
                Ok(Continue(pos + n))
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() - pos >= MAX_HEAD {
                    return Err(ParseError::BadChunk);
                }
                Ok(Break(Step::NeedMore { consumed: pos }))
            }
            Err(_) => Err(ParseError::BadChunk),
        }
    }

    /// `left` more bytes of chunk data, from `buf[pos..]`.
    #[inline]
    fn chunk_data(&mut self, buf: &[u8], pos: usize, left: u64) -> ControlFlow<Step, usize> {
        let avail = (buf.len() - pos) as u64;
        if avail >= left {
            self.state = State::Chunked(Chunk::DataEnd);
            Continue(pos + left as usize)
        } else {
            self.state = State::Chunked(Chunk::Data(left - avail));
            Break(Step::NeedMore {
                consumed: buf.len(),
            })
        }
    }

    /// The CRLF after chunk data, at `buf[pos..]`.
    #[inline]
    fn chunk_end(
        &mut self,
        buf: &[u8],
        pos: usize,
    ) -> Result<ControlFlow<Step, usize>, ParseError> {
        let rest = &buf[pos..];
        if rest.len() < 2 {
            if rest.first().is_some_and(|&b| b != b'\r') {
                return Err(ParseError::BadChunk);
            }
            return Ok(Break(Step::NeedMore { consumed: pos }));
        }
        if &rest[..2] != b"\r\n" {
            return Err(ParseError::BadChunk);
        }
        self.state = State::Chunked(Chunk::Size);
        Ok(Continue(pos + 2))
    }

    /// Trailer lines up to the empty line ending the chunked body, at `buf[pos..]`.
    #[inline]
    fn trailer(&mut self, buf: &[u8], pos: usize) -> Result<ControlFlow<Step, usize>, ParseError> {
        let rest = &buf[pos..];
        match rest.windows(2).position(|w| w == b"\r\n") {
            Some(0) => Ok(Break(self.finish(pos + 2))),
            Some(i) => Ok(Continue(pos + i + 2)),
            None => {
                if rest.len() >= MAX_HEAD {
                    return Err(ParseError::BadChunk);
                }
                Ok(Break(Step::NeedMore { consumed: pos }))
            }
        }
    }

    /// The peer closed the connection: finishes a close-delimited body.
    /// Returns `Ok(None)` at a response boundary, an error mid-response.
    pub fn on_eof(&mut self) -> Result<Option<ResponseInfo>, ParseError> {
        match self.state {
            State::Head => Ok(None),
            State::UntilClose => {
                let info = self.info;
                self.reset();
                Ok(Some(info))
            }
            _ => {
                self.reset();
                Err(ParseError::Truncated)
            }
        }
    }

    fn finish(&mut self, consumed: usize) -> Step {
        self.state = State::Head;
        Step::Done {
            consumed,
            info: self.info,
        }
    }
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Body framing per RFC 9112 §6.3, and whether the connection closes after.
fn framing(
    resp: &httparse::Response<'_, '_>,
    head_request: bool,
) -> Result<(Framing, bool), ParseError> {
    let status = resp.code.unwrap_or(0);
    let mut close = resp.version == Some(0);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut has_te = false;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let v = h.value.trim_ascii();
            if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                return Err(ParseError::BadContentLength);
            }
            let n = v.iter().fold(0u64, |a, &d| a * 10 + u64::from(d - b'0'));
            if length.is_some_and(|l| l != n) {
                return Err(ParseError::BadContentLength);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            has_te = true;
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            if has_token(h.value, b"close") {
                close = true;
            } else if has_token(h.value, b"keep-alive") && resp.version == Some(0) {
                close = false;
            }
        }
    }
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::None
    } else if has_te {
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    Ok((framing, close))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` in pieces of the given sizes, keeping unconsumed bytes
    /// like the connection does; returns finished responses.
    fn feed(input: &[u8], pieces: &[usize], head: bool) -> Result<Vec<ResponseInfo>, ParseError> {
        let mut p = ResponseParser::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < input.len() {
            let n = pieces
                .get(i)
                .copied()
                .unwrap_or(usize::MAX)
                .min(input.len() - at);
            i += 1;
            buf.extend_from_slice(&input[at..at + n]);
            at += n;
            loop {
                match p.parse(&buf, head)? {
                    Step::NeedMore { consumed } => {
                        buf.drain(..consumed);
                        break;
                    }
                    Step::Done { consumed, info } => {
                        buf.drain(..consumed);
                        out.push(info);
                        if buf.is_empty() {
                            break;
                        }
                    }
                }
            }
        }
        if let Some(info) = p.on_eof()? {
            out.push(info);
        }
        Ok(out)
    }

    const CL: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: t\r\n\r\nok";
    const CHUNKED: &[u8] =
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";

    fn ok(status: u16) -> ResponseInfo {
        ResponseInfo {
            status,
            close: false,
        }
    }

    #[test]
    fn content_length_whole() {
        assert_eq!(feed(CL, &[], false).unwrap(), vec![ok(200)]);
    }

    #[test]
    fn chunked_whole() {
        assert_eq!(feed(CHUNKED, &[], false).unwrap(), vec![ok(201)]);
    }

    #[test]
    fn every_split_point_and_bytewise() {
        for input in [CL, CHUNKED] {
            for cut in 1..input.len() {
                assert_eq!(feed(input, &[cut], false).unwrap().len(), 1, "cut at {cut}");
            }
            assert_eq!(feed(input, &[1; 512], false).unwrap().len(), 1);
        }
    }

    #[test]
    fn pipelined_responses_in_one_buffer() {
        let mut all = Vec::new();
        for _ in 0..3 {
            all.extend_from_slice(CL);
            all.extend_from_slice(CHUNKED);
        }
        all.extend_from_slice(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        all.extend_from_slice(
            b"HTTP/1.1 503 Busy\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbye",
        );
        let got = feed(&all, &[], false).unwrap();
        let statuses: Vec<u16> = got.iter().map(|i| i.status).collect();
        assert_eq!(statuses, vec![200, 201, 200, 201, 200, 201, 404, 503]);
        assert!(got[7].close);
        assert!(!got[6].close);
        // Same stream, split at odd places.
        assert_eq!(feed(&all, &[7, 13, 1, 100, 3, 50], false).unwrap().len(), 8);
    }

    #[test]
    fn large_body_is_skipped_across_reads() {
        let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
        r.extend_from_slice(&vec![b'x'; 100_000]);
        r.extend_from_slice(CL);
        let got = feed(&r, &[4096; 100], false).unwrap();
        assert_eq!(got, vec![ok(200), ok(200)]);
    }

    #[test]
    fn close_delimited_and_http10() {
        let got = feed(
            b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nsome body until close",
            &[10],
            false,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![ResponseInfo {
                status: 200,
                close: true
            }]
        );
        let got = feed(
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
            &[],
            false,
        )
        .unwrap();
        assert!(got[0].close);
        let got = feed(
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok",
            &[],
            false,
        )
        .unwrap();
        assert!(!got[0].close);
    }

    #[test]
    fn bodiless_responses() {
        let r = b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n";
        assert_eq!(feed(r, &[], false).unwrap(), vec![ok(204), ok(304)]);
        // HEAD: Content-Length describes the GET body that is not sent.
        assert_eq!(
            feed(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", &[], true).unwrap(),
            vec![ok(200)]
        );
        // Interim 100 Continue is skipped.
        let r = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(feed(r, &[], false).unwrap(), vec![ok(200)]);
    }

    #[test]
    fn malformed_responses() {
        assert!(matches!(
            feed(b"HTTX/1.1 200 OK\r\n\r\n", &[], false),
            Err(ParseError::Head(_))
        ));
        assert_eq!(
            feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", &[], false),
            Err(ParseError::BadContentLength)
        );
        assert_eq!(
            feed(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                &[],
                false
            ),
            Err(ParseError::BadContentLength)
        );
        assert_eq!(
            feed(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                &[],
                false
            ),
            Err(ParseError::BadChunk)
        );
        assert_eq!(
            feed(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX",
                &[],
                false
            ),
            Err(ParseError::BadChunk)
        );
        assert_eq!(
            feed(
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                &[],
                false
            ),
            Err(ParseError::Truncated)
        );
        let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
        while huge.len() <= MAX_HEAD {
            huge.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(feed(&huge, &[], false).is_err());
    }
}
