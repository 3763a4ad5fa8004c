//! A streaming validator/decoder for chunked bodies (RFC 9112 §7.1), fed bytes as they arrive.
//!
//! The decoder is a byte-level state machine with O(1) state, so input may be split anywhere
//! (one byte at a time works). It is strict, because the proxy relays the framing as received:
//! chunk sizes are 1*HEXDIG below 2^63 with nothing before them, every line ends in CRLF,
//! chunk data is followed by exactly CRLF, and trailer fields are `token:value` lines in a
//! bounded section. Chunk extensions (RFC 9112 §7.1.1) are
//! `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`, validated, bounded by
//! the chunk-line limit, and reported to the caller (`feed_parts`) so a relay can drop them.
//! With a body limit (`with_limit`), a chunk size that would take the body past it fails as
//! soon as the size is complete, before any of that chunk's data is handed out.
//! It stops at the end of the body: what follows belongs to the next message.

use super::{is_qdtext, is_quotable};
use std::fmt;
use std::ops::Range;

/// Longest chunk-size line (size, extensions; without the CRLF) accepted: this also bounds
/// the extensions.
pub const MAX_CHUNK_LINE_BYTES: u32 = 4096;
/// Largest trailer section (trailer fields and the final CRLF) accepted.
pub const MAX_TRAILER_BYTES: u32 = 8192;

/// Chunk sizes must stay below 2^63 (what signed 64-bit parsers downstream can hold).
const MAX_CHUNK_SIZE: u64 = i64::MAX as u64;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// Start of a chunk-size line: a hex digit must come.
    #[default]
    SizeStart,
    /// In the chunk size (at least one digit seen).
    Size,
    /// Whitespace after the size: `;` must follow.
    SizeBws,
    /// After `;` (and any BWS): the extension name must start.
    ExtNameStart,
    ExtName,
    /// Whitespace after a name: `=` or `;` must follow.
    ExtNameBws,
    /// After `=` (and any BWS): a token or a quoted string must start.
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    ExtQuotedEscape,
    /// After the closing quote: `;`, BWS or CR.
    ExtQuotedEnd,
    /// Whitespace after a value: `;` must follow.
    ExtValueEnd,
    /// CR of the chunk-size line seen.
    SizeLf,
    /// In chunk data; `remaining` bytes left.
    Data,
    DataCr,
    DataLf,
    /// Start of a trailer line (or of the final CRLF).
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// CR of the final empty line seen.
    FinalLf,
    Done,
    Failed(ChunkError),
}

impl State {
    /// States entered by the bytes of a chunk extension (from the first BWS or `;` after the
    /// size up to the CR).
    #[inline]
    fn in_extension(self) -> bool {
        use State::*;
        matches!(
            self,
            SizeBws
                | ExtNameStart
                | ExtName
                | ExtNameBws
                | ExtValueStart
                | ExtToken
                | ExtQuoted
                | ExtQuotedEscape
                | ExtQuotedEnd
                | ExtValueEnd
        )
    }
}

#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Chunk size being parsed, then the data bytes left in the chunk.
    remaining: u64,
    data_len: u64,
    /// Bytes of the current chunk-size line, or of the trailer section so far.
    line_len: u32,
    /// Body bytes (data only) allowed in total.
    limit: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::SizeStart,
            remaining: 0,
            data_len: 0,
            line_len: 0,
            limit: u64::MAX,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// The framing is malformed (413 does not apply).
    Malformed(&'static str),
    /// A chunk size takes the body past the limit given to `with_limit`.
    TooLarge,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::Malformed(why) => write!(f, "invalid chunked body: {why}"),
            ChunkError::TooLarge => f.write_str("chunked body exceeds the body limit"),
        }
    }
}

impl std::error::Error for ChunkError {}

#[inline]
fn hex_value(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that fails with `ChunkError::TooLarge` as soon as a (well-formed) chunk size
    /// would take the body's data past `limit` bytes.
    pub fn with_limit(limit: u64) -> Self {
        ChunkedDecoder {
            limit,
            ..Self::default()
        }
    }

    /// Sets the body limit (see `with_limit`).
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Consumes framing and data from `input`, calling `on_data` with each run of body bytes.
    /// Returns how many bytes of `input` belong to this body (all of it unless the body ended
    /// inside `input`) and whether the body (incl. trailers and final CRLF) is complete.
    ///
    /// After an error the decoder stays failed and returns the same error again. Once done it
    /// consumes nothing more.
    pub fn feed<'a>(
        &mut self,
        input: &'a [u8],
        on_data: impl FnMut(&'a [u8]),
    ) -> Result<(usize, bool), ChunkError> {
        self.feed_parts(input, on_data, |_| {})
    }

    /// `feed`, also calling `on_ext` with the ranges of `input` that hold chunk extensions
    /// (from the BWS or `;` after the size up to, not including, the CR). Removing them from
    /// the consumed input leaves valid chunked framing without extensions. An extension split
    /// across calls is reported in pieces.
    pub fn feed_parts<'a>(
        &mut self,
        input: &'a [u8],
        mut on_data: impl FnMut(&'a [u8]),
        mut on_ext: impl FnMut(Range<usize>),
    ) -> Result<(usize, bool), ChunkError> {
        if let State::Failed(e) = self.state {
            return Err(e);
        }
        let mut i = 0;
        let mut ext_start: Option<usize> = None;
        while i < input.len() {
            match self.state {
                State::Done => break,
                State::Data => {
                    let avail = (input.len() - i) as u64;
                    let n = self.remaining.min(avail) as usize;
                    on_data(&input[i..i + n]);
                    i += n;
                    self.remaining -= n as u64;
                    self.data_len += n as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                _ => {
                    let b = input[i];
                    if let Err(e) = self.step(b) {
                        self.state = State::Failed(e);
                        return Err(e);
                    }
                    if self.state.in_extension() {
                        ext_start.get_or_insert(i);
                    } else if let Some(start) = ext_start.take() {
                        on_ext(start..i);
                    }
                    i += 1;
                }
            }
        }
        if let Some(start) = ext_start {
            on_ext(start..i);
        }
        Ok((i, self.state == State::Done))
    }

    /// Body bytes (excluding framing) seen so far.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// The whole body, trailers and final CRLF included, has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Advances over one framing byte (every state except `Data`, `Done` and `Failed`).
    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        let in_size = self.state == State::Size;
        self.step_inner(b).map_err(ChunkError::Malformed)?;
        // The size is complete (a malformed or overflowing one has failed already): refuse
        // it at once if it takes the body past the limit.
        if in_size
            && self.state != State::Size
            && self.data_len.saturating_add(self.remaining) > self.limit
        {
            return Err(ChunkError::TooLarge);
        }
        Ok(())
    }

    /// Advances over one framing byte: counts it against the bound of the part of the framing
    /// it is in (chunk-size line or trailer section), then takes that part's transition.
    fn step_inner(&mut self, b: u8) -> Result<(), &'static str> {
        use State::*;
        self.state = match self.state {
            SizeStart => {
                self.count_line_byte(b)?;
                self.size_start(b)?
            }
            Size => {
                self.count_line_byte(b)?;
                self.size_next(b)?
            }
            SizeBws | ExtNameStart | ExtName | ExtNameBws | ExtValueStart | ExtToken
            | ExtQuoted | ExtQuotedEscape | ExtQuotedEnd | ExtValueEnd => {
                self.count_line_byte(b)?;
                extension_next(self.state, b)?
            }
            SizeLf => self.size_line_end(b)?,
            DataCr | DataLf => self.data_end_next(b)?,
            TrailerStart | TrailerName | TrailerValue | TrailerLf | FinalLf => {
                self.count_trailer_byte()?;
                trailer_next(self.state, b)?
            }
            Data | Done | Failed(_) => return Err("decoder misuse"),
        };
        Ok(())
    }

    /// The first digit of a chunk size.
    #[inline]
    fn size_start(&mut self, b: u8) -> Result<State, &'static str> {
        match hex_value(b) {
            Some(d) => {
                self.remaining = d;
                Ok(State::Size)
            }
            None => Err("invalid chunk size"),
        }
    }

    /// After a digit of the chunk size: another digit (the size stays below 2^63), `;`, BWS or
    /// the CR.
    #[inline]
    fn size_next(&mut self, b: u8) -> Result<State, &'static str> {
        match b {
            b';' => Ok(State::ExtNameStart),
            b' ' | b'\t' => Ok(State::SizeBws),
            b'\r' => Ok(State::SizeLf),
            _ => match hex_value(b) {
                Some(d) => {
                    if self.remaining > MAX_CHUNK_SIZE >> 4 {
                        return Err("chunk size too large");
                    }
                    self.remaining = (self.remaining << 4) | d;
                    Ok(State::Size)
                }
                None => Err("invalid chunk size"),
            },
        }
    }

    /// The LF ending the chunk-size line: the chunk's data follows, or the trailer section
    /// after the last chunk (size 0).
    #[inline]
    fn size_line_end(&mut self, b: u8) -> Result<State, &'static str> {
        if b != b'\n' {
            return Err("bare CR in chunk-size line");
        }
        self.line_len = 0;
        Ok(if self.remaining == 0 {
            State::TrailerStart
        } else {
            State::Data
        })
    }

    /// The CRLF after a chunk's data, then the next chunk-size line.
    #[inline]
    fn data_end_next(&mut self, b: u8) -> Result<State, &'static str> {
        match (self.state, b) {
            (State::DataCr, b'\r') => Ok(State::DataLf),
            (State::DataLf, b'\n') => {
                self.line_len = 0;
                Ok(State::SizeStart)
            }
            (State::DataCr | State::DataLf, _) => Err("chunk data not followed by CRLF"),
            _ => Err("decoder misuse"),
        }
    }

    /// Counts one byte of the trailer section against its bound.
    #[inline]
    fn count_trailer_byte(&mut self) -> Result<(), &'static str> {
        self.line_len += 1;
        if self.line_len > MAX_TRAILER_BYTES {
            return Err("trailer section too large");
        }
        Ok(())
    }

    /// Counts one byte of the chunk-size line against its bound; a LF here is always bare.
    #[inline]
    fn count_line_byte(&mut self, b: u8) -> Result<(), &'static str> {
        self.line_len += 1;
        if self.line_len > MAX_CHUNK_LINE_BYTES {
            return Err("chunk-size line too long");
        }
        if b == b'\n' {
            return Err("bare LF in chunk-size line");
        }
        Ok(())
    }
}

/// The next state in a chunk extension (`state` is one of `State::in_extension`), from the BWS
/// or `;` after the size up to the CR.
#[inline]
fn extension_next(state: State, b: u8) -> Result<State, &'static str> {
    use State::*;
    Ok(match (state, b) {
        // BWS (RFC 9110 §5.6.3) is allowed before `;` and around `=`, and nowhere else:
        // whitespace must be followed by `;` or `=`, never by the CR.
        (SizeBws | ExtNameStart | ExtNameBws | ExtValueStart | ExtValueEnd, b' ' | b'\t') => state,
        (ExtName, b' ' | b'\t') => ExtNameBws,
        (ExtToken | ExtQuotedEnd, b' ' | b'\t') => ExtValueEnd,
        (SizeBws | ExtNameBws | ExtValueEnd, b';') => ExtNameStart,
        (SizeBws, _) => return Err("whitespace after chunk size"),
        (ExtNameStart, _) if super::is_tchar(b) => ExtName,
        (ExtNameStart, _) => return Err("invalid chunk extension"),
        (ExtName, _) if super::is_tchar(b) => ExtName,
        (ExtName | ExtNameBws, b'=') => ExtValueStart,
        (ExtName | ExtToken | ExtQuotedEnd, b';') => ExtNameStart,
        (ExtName | ExtToken | ExtQuotedEnd, b'\r') => SizeLf,
        (ExtName | ExtNameBws | ExtValueEnd, _) => return Err("invalid chunk extension"),
        (ExtValueStart, b'"') => ExtQuoted,
        (ExtValueStart | ExtToken, _) if super::is_tchar(b) => ExtToken,
        (ExtValueStart | ExtToken, _) => return Err("invalid chunk extension"),
        (ExtQuoted, b'"') => ExtQuotedEnd,
        (ExtQuoted, b'\\') => ExtQuotedEscape,
        (ExtQuoted, _) if is_qdtext(b) => ExtQuoted,
        (ExtQuotedEscape, _) if is_quotable(b) => ExtQuoted,
        (ExtQuoted | ExtQuotedEscape | ExtQuotedEnd, _) => return Err("invalid chunk extension"),
        _ => return Err("decoder misuse"),
    })
}

/// The next state in the trailer section: `token:value` lines, then the final CRLF.
#[inline]
fn trailer_next(state: State, b: u8) -> Result<State, &'static str> {
    use State::*;
    Ok(match (state, b) {
        (TrailerStart, b'\r') => FinalLf,
        (TrailerStart | TrailerName, _) if super::is_tchar(b) => TrailerName,
        (TrailerName, b':') => TrailerValue,
        (TrailerStart | TrailerName, _) => return Err("invalid trailer field"),
        (TrailerValue, b'\r') => TrailerLf,
        (TrailerValue, _) if super::is_field_value_byte(b) => TrailerValue,
        (TrailerValue, _) => return Err("invalid trailer field value"),
        (TrailerLf, b'\n') => TrailerStart,
        (TrailerLf, _) => return Err("bare CR in trailer section"),
        (FinalLf, b'\n') => Done,
        (FinalLf, _) => return Err("bare CR at the end of the chunked body"),
        _ => return Err("decoder misuse"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split at the given cut points; returns (data, consumed, done).
    fn feed_split(input: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut data = Vec::new();
        let mut consumed = 0;
        let mut start = 0;
        let mut done = false;
        for &end in cuts.iter().chain(std::iter::once(&input.len())) {
            let piece = &input[start..end];
            let (used, fin) = d.feed(piece, |s| data.extend_from_slice(s))?;
            consumed += used;
            assert!(used <= piece.len());
            if fin {
                done = true;
                assert!(d.is_done());
                break;
            }
            assert_eq!(used, piece.len(), "an unfinished body consumes all input");
            start = end;
        }
        assert_eq!(d.data_len(), data.len() as u64);
        Ok((data, consumed, done))
    }

    const VALID: &[(&[u8], &[u8])] = &[
        (b"0\r\n\r\n", b""),
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
        (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
        (b"a\r\n0123456789\r\n000\r\n\r\n", b"0123456789"),
        (b"0005\r\nhe\r\nl\r\n0\r\n\r\n", b"he\r\nl"),
        (b"5;ext\r\nhello\r\n0;last\r\n\r\n", b"hello"),
        (
            b"5;a=b;c;d=\"q \\\"x\\\" ;\"\r\nhello\r\n0\r\n\r\n",
            b"hello",
        ),
        (b"3;n=\"\"\r\nabc\r\n0\r\n\r\n", b"abc"),
        // BWS around `;` and `=` (RFC 9112 §7.1.1), quoted strings with escapes.
        (b"5; name=value\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5 ;a\r\nhello\r\n0\r\n\r\n", b"hello"),
        (
            b"5\t; a = b ;\tc\r\nhello\r\n0; a=\"quoted\"; b=c\r\n\r\n",
            b"hello",
        ),
        (b"5;a =\t\"x;y\" ;b\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"2;a=\"\\\\\\\"\"\r\nhi\r\n0\r\n\r\n", b"hi"),
        (
            b"3\r\nabc\r\n0\r\nX-Sum: 1234\r\nExpires:\r\nX-T:\tv v\r\n\r\n",
            b"abc",
        ),
        (b"0\r\nA:b\r\n\r\n", b""),
    ];

    #[test]
    fn valid_bodies_in_every_split() {
        for &(body, want) in VALID {
            // Whole, then every single cut, then every pair of cuts, then byte by byte.
            let (data, used, done) = feed_split(body, &[]).unwrap();
            assert_eq!((data.as_slice(), used, done), (want, body.len(), true));
            for i in 0..=body.len() {
                let (data, used, done) = feed_split(body, &[i]).unwrap();
                assert_eq!(
                    (data.as_slice(), used, done),
                    (want, body.len(), true),
                    "cut {i}"
                );
                for j in i..=body.len() {
                    let (data, used, done) = feed_split(body, &[i, j]).unwrap();
                    assert_eq!(
                        (data.as_slice(), used, done),
                        (want, body.len(), true),
                        "cuts {i} {j}"
                    );
                }
            }
            let cuts: Vec<usize> = (1..body.len()).collect();
            let (data, used, done) = feed_split(body, &cuts).unwrap();
            assert_eq!((data.as_slice(), used, done), (want, body.len(), true));
        }
    }

    #[test]
    fn largest_chunk_size_is_accepted() {
        let mut d = ChunkedDecoder::new();
        assert_eq!(d.feed(b"7FFFFFFFFFFFFFFF\r\nabc", |_| {}), Ok((21, false)));
        assert_eq!(d.data_len(), 3);
        let mut d = ChunkedDecoder::new();
        assert_eq!(d.feed(b"00007fffffffffffffff\r\n", |_| {}), Ok((22, false)));
    }

    #[test]
    fn stops_at_the_end_of_the_body() {
        let body = b"5\r\nhello\r\n0\r\nT: v\r\n\r\n";
        let mut buf = body.to_vec();
        buf.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
        for i in 0..=buf.len() {
            let (data, used, done) = feed_split(&buf, &[i]).unwrap();
            assert_eq!(
                (data.as_slice(), used, done),
                (&b"hello"[..], body.len(), true)
            );
        }
        // Once done, further input is not consumed.
        let mut d = ChunkedDecoder::new();
        assert_eq!(d.feed(body, |_| {}), Ok((body.len(), true)));
        assert_eq!(d.feed(b"more", |_| {}), Ok((0, true)));
        assert_eq!(d.feed(b"", |_| {}), Ok((0, true)));
    }

    #[test]
    fn empty_input() {
        let mut d = ChunkedDecoder::new();
        assert_eq!(d.feed(b"", |_| {}), Ok((0, false)));
        assert_eq!(d.data_len(), 0);
        assert!(!d.is_done());
    }

    #[test]
    fn data_runs_borrow_the_input() {
        let input = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let mut runs: Vec<(usize, usize)> = Vec::new();
        let base = input.as_ptr() as usize;
        let mut d = ChunkedDecoder::new();
        d.feed(input, |s| runs.push((s.as_ptr() as usize - base, s.len())))
            .unwrap();
        assert_eq!(runs, [(3, 3), (11, 2)]);
    }

    #[test]
    fn malformed_bodies() {
        let cases: &[&[u8]] = &[
            // Bad hex, signs, prefixes, whitespace.
            b"zz\r\nhello\r\n0\r\n\r\n",
            b"g\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"\t5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5\t\r\nhello\r\n0\r\n\r\n",
            b"\r\nhello\r\n0\r\n\r\n",
            b"5_0\r\n",
            // Overflow: 2^63 and 2^64 + 5.
            b"8000000000000000\r\n",
            b"10000000000000005\r\nhello\r\n0\r\n\r\n",
            b"000000000000000000010000000000000000\r\n",
            // Bare LF / bare CR in the size line.
            b"5\nhello\r\n0\r\n\r\n",
            b"5\rhello\r\n0\r\n\r\n",
            b"5;a\nhello\r\n0\r\n\r\n",
            // Chunk data not followed by exactly CRLF.
            b"2\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r0\r\n\r\n",
            b"5\r\nhello0\r\n\r\n",
            b"5\r\nhello\r\r\n0\r\n\r\n",
            // Bad extensions.
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            b"5;a=b c\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\"c\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"\\\x01\"\r\nhello\r\n0\r\n\r\n",
            b"5;a(b)\r\nhello\r\n0\r\n\r\n",
            b"5;;a\r\nhello\r\n0\r\n\r\n",
            // BWS not followed by `;` or `=`, bare CR/LF inside, unterminated quotes.
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5 ; \r\nhello\r\n0\r\n\r\n",
            b"5;a \r\nhello\r\n0\r\n\r\n",
            b"5;a=b \r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\" \r\nhello\r\n0\r\n\r\n",
            b"5;a = \r\nhello\r\n0\r\n\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"5;a b\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\rc\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\nc\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=b\rc\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\\\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\r\nhello\"\r\n0\r\n\r\n",
            b"5;a=b=c\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"\x7f\"\r\nhello\r\n0\r\n\r\n",
            b"5;a\x00\r\nhello\r\n0\r\n\r\n",
            b"5;=b\r\nhello\r\n0\r\n\r\n",
            b"5\x0b;a\r\nhello\r\n0\r\n\r\n",
            // Bad trailers.
            b"0\r\n\n",
            b"0\r\n\r\r\n",
            b"0\r\n\rx",
            b"0\r\nX: a\n\r\n",
            b"0\r\nX: a\r\r\n",
            b"0\r\nX : a\r\n\r\n",
            b"0\r\n X: a\r\n\r\n",
            b"0\r\nX: a\r\n b\r\n\r\n",
            b"0\r\n: a\r\n\r\n",
            b"0\r\nX\r\n\r\n",
            b"0\r\nX: a\x00b\r\n\r\n",
            b"0\r\nX: a\x7f\r\n\r\n",
            b"0\r\nX(: a\r\n\r\n",
            b"0\r\nGET / HTTP/1.1\r\n\r\n",
        ];
        for &body in cases {
            let cuts: Vec<usize> = (1..body.len()).collect();
            for split in [&[][..], &cuts[..]] {
                let r = feed_split(body, split);
                assert!(
                    r.is_err(),
                    "{:?} (split {}) was accepted: {r:?}",
                    String::from_utf8_lossy(body),
                    !split.is_empty()
                );
            }
        }
    }

    #[test]
    fn errors_are_sticky() {
        let mut d = ChunkedDecoder::new();
        let e = d.feed(b"x", |_| {}).unwrap_err();
        assert_eq!(d.feed(b"0\r\n\r\n", |_| {}), Err(e));
        assert_eq!(e, ChunkError::Malformed("invalid chunk size"));
        assert_eq!(e.to_string(), "invalid chunked body: invalid chunk size");
    }

    #[test]
    fn oversize_trailers() {
        let mut body = b"0\r\n".to_vec();
        while body.len() < MAX_TRAILER_BYTES as usize + 10 {
            body.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        body.extend_from_slice(b"\r\n");
        assert_eq!(
            feed_split(&body, &[]).unwrap_err(),
            ChunkError::Malformed("trailer section too large")
        );
        // Just under the bound is fine.
        let mut body = b"0\r\nX: ".to_vec();
        body.resize(3 + MAX_TRAILER_BYTES as usize - 4, b'a');
        body.extend_from_slice(b"\r\n\r\n");
        let (_, used, done) = feed_split(&body, &[]).unwrap();
        assert_eq!((used, done), (body.len(), true));
        // One trailer line that never ends.
        let mut d = ChunkedDecoder::new();
        let mut r = d.feed(b"0\r\nX: ", |_| {});
        for _ in 0..MAX_TRAILER_BYTES {
            r = d.feed(b"a", |_| {});
            if r.is_err() {
                break;
            }
        }
        assert_eq!(r, Err(ChunkError::Malformed("trailer section too large")));
    }

    #[test]
    fn oversize_chunk_line() {
        let mut body = b"5".to_vec();
        for _ in 0..MAX_CHUNK_LINE_BYTES {
            body.extend_from_slice(b";a");
        }
        body.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        assert_eq!(
            feed_split(&body, &[]).unwrap_err(),
            ChunkError::Malformed("chunk-size line too long")
        );
        // Leading zeros count against the same bound.
        let mut body = vec![b'0'; MAX_CHUNK_LINE_BYTES as usize];
        body.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
        assert!(feed_split(&body, &[]).is_err());
    }

    /// Removes the reported extension ranges from the consumed input, feeding in pieces.
    fn strip_extensions(input: &[u8], step: usize) -> (Vec<u8>, Vec<u8>) {
        let mut d = ChunkedDecoder::new();
        let mut kept = Vec::new();
        let mut data = Vec::new();
        for piece in input.chunks(step) {
            let mut ext: Vec<Range<usize>> = Vec::new();
            let (used, _) = d
                .feed_parts(piece, |s| data.extend_from_slice(s), |r| ext.push(r))
                .unwrap();
            let mut at = 0;
            for r in ext {
                assert!(at <= r.start && r.start < r.end && r.end <= used, "{r:?}");
                kept.extend_from_slice(&piece[at..r.start]);
                at = r.end;
            }
            kept.extend_from_slice(&piece[at..used]);
        }
        assert!(d.is_done());
        (kept, data)
    }

    #[test]
    fn extensions_are_reported_for_removal() {
        let cases: &[(&[u8], &[u8])] = &[
            (
                b"5; name=value\r\nhello\r\n0; a=\"quoted\"; b=c\r\n\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
            (
                b"5 ;a = \"x\\\"y\" ;b\r\nhello\r\n3\r\nabc\r\n0\r\nT: v\r\n\r\n",
                b"5\r\nhello\r\n3\r\nabc\r\n0\r\nT: v\r\n\r\n",
            ),
            (b"5\r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
        ];
        for &(input, want) in cases {
            for step in 1..=input.len() {
                let (kept, data) = strip_extensions(input, step);
                assert_eq!(kept, want, "step {step}");
                assert_eq!(feed_split(want, &[]).unwrap().0, data, "step {step}");
            }
        }
    }

    #[test]
    fn a_chunk_size_past_the_limit_fails_before_its_data() {
        // Exactly at the limit is fine.
        let mut d = ChunkedDecoder::with_limit(8);
        let mut data = Vec::new();
        let r = d.feed(b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n", |s| {
            data.extend_from_slice(s)
        });
        assert_eq!((r, data.as_slice()), (Ok((23, true)), &b"abcdefgh"[..]));
        // One byte over: the size line fails, no byte of that chunk is handed out.
        for split in [1, 4, 9, 10, 11] {
            let body = b"3\r\nabc\r\n6;x=y\r\ndefghi\r\n0\r\n\r\n";
            let mut d = ChunkedDecoder::with_limit(8);
            let mut data = Vec::new();
            let mut r = Ok((0, false));
            for piece in [&body[..split], &body[split..]] {
                r = d.feed(piece, |s| data.extend_from_slice(s));
                if r.is_err() {
                    break;
                }
            }
            assert_eq!(r, Err(ChunkError::TooLarge), "split {split}");
            assert_eq!(data, b"abc", "split {split}");
        }
        // A size over the limit fails as soon as it is complete (CR, `;` or BWS)...
        for end in [&b"\r"[..], b";", b" "] {
            let mut d = ChunkedDecoder::new();
            d.set_limit(1000);
            assert_eq!(d.feed(b"3e90", |_| {}), Ok((4, false)));
            assert_eq!(d.feed(end, |_| {}), Err(ChunkError::TooLarge));
            assert_eq!(d.feed(b"\n", |_| {}), Err(ChunkError::TooLarge));
        }
        // ...unless it is malformed: an overflowing size is a framing error, not a 413.
        let mut d = ChunkedDecoder::with_limit(1000);
        assert_eq!(
            d.feed(b"10000000000000005\r\n", |_| {}),
            Err(ChunkError::Malformed("chunk size too large"))
        );
        let mut d = ChunkedDecoder::with_limit(0);
        assert_eq!(d.feed(b"0\r\n\r\n", |_| {}), Ok((5, true)));
        let mut d = ChunkedDecoder::with_limit(0);
        assert_eq!(d.feed(b"1\r", |_| {}), Err(ChunkError::TooLarge));
        // Without a limit the same sizes are fine.
        let mut d = ChunkedDecoder::new();
        assert_eq!(d.feed(b"FFFFFFFF\r\n", |_| {}), Ok((10, false)));
    }

    #[test]
    fn data_len_counts_across_feeds() {
        let mut d = ChunkedDecoder::new();
        let mut seen = 0;
        let body = b"4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n";
        for b in body.chunks(1) {
            d.feed(b, |s| seen += s.len()).unwrap();
        }
        assert_eq!((d.data_len(), seen), (7, 7));
        assert!(d.is_done());
    }
}
