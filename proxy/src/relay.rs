//! Streams a message body from one connection to another without buffering it whole: bytes
//! already read (in the source's buffer) first, then read/write in buffer-sized steps, bounded
//! by the body's framing (Content-Length, chunked, or until the source closes). Between two
//! plain lean connections a Content-Length body, and an until-close body passed as it comes,
//! skip the source's buffer: `Conn::splice_to` sends them from the shard's receive ring.
//! Chunked and re-chunked bodies keep the copy: their framing is parsed or written in `sbuf`.
//!
//! Chunked bodies are validated as they pass; chunk extensions are cut out (RFC 9112 §7.1.1
//! lets a recipient ignore them; passing them on would hand the next parser input we did not
//! have to accept). A body delimited by the backend's close can be re-encoded as chunked, so a
//! client can tell a complete body (the `0` chunk) from one cut by a reset (no `0` chunk).

use crate::buffer::Buf;
use crate::net::{Conn, Splice, SpliceError};
use smallvec::SmallVec;
use std::io;
use std::ops::Range;
use std::time::{Duration, Instant};
use tollgate_core::forward::Relay;
use tollgate_core::http::chunked::{ChunkError, ChunkedDecoder};
use tollgate_core::http::BodyKind;

pub enum Framing {
    Length(u64),
    /// `dechunk`: send only the data, without chunk framing.
    Chunked {
        decoder: ChunkedDecoder,
        dechunk: bool,
    },
    /// Until the source closes; `rechunk`: send it chunked, ending with the `0` chunk only
    /// when the source closed cleanly.
    UntilClose {
        rechunk: bool,
    },
}

impl Framing {
    /// A request body as the head framed it (`UntilClose` cannot frame a request: no body).
    pub fn request(body: BodyKind) -> Framing {
        match body {
            BodyKind::Length(n) => Framing::Length(n),
            BodyKind::Chunked => Framing::Chunked {
                decoder: ChunkedDecoder::new(),
                dechunk: false,
            },
            BodyKind::None | BodyKind::UntilClose => Framing::Length(0),
        }
    }

    /// A backend response body, passed to the client as `relay` says.
    pub fn response(body: BodyKind, relay: Relay) -> Framing {
        match body {
            BodyKind::None => Framing::Length(0),
            BodyKind::Length(n) => Framing::Length(n),
            BodyKind::Chunked => Framing::Chunked {
                decoder: ChunkedDecoder::new(),
                dechunk: relay == Relay::Dechunk,
            },
            BodyKind::UntilClose => Framing::UntilClose {
                rechunk: relay == Relay::Rechunk,
            },
        }
    }

    /// The body ends only when the source closes (its connection cannot be reused).
    pub fn until_close(&self) -> bool {
        matches!(self, Framing::UntilClose { .. })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RelayError {
    /// Reading the source failed or it closed early.
    Source,
    /// The source sent nothing for `read_timeout` before the body was complete.
    SourceTimeout,
    /// Writing the destination failed.
    Sink,
    /// The source sent malformed chunk framing.
    Framing,
    /// The body grew past the limit (for chunked bodies: as soon as a chunk-size line says
    /// so, before any of that chunk is passed on).
    TooLarge,
}

pub struct Limits {
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Body bytes allowed (data only, without chunk framing).
    pub max_body: u64,
}

/// Room kept in front of a read for a chunk-size line (16 hex digits and CRLF).
const CHUNK_HEAD_ROOM: usize = 18;
/// Room kept after a read for the CRLF that ends a chunk's data.
const CHUNK_TAIL_ROOM: usize = 2;

/// The most one splice step moves: what a slow destination's send queue can hold past
/// `SEND_QUEUE_LIMIT` stays what the copy path's 64 KiB read buffer allowed (the source
/// holds at most 8 ring buffers, 128 KiB, at a time).
const SPLICE_STEP_MAX: usize = 64 * 1024;

/// What one step of the relay loop decided.
enum Step {
    /// The body is complete.
    Done,
    /// Go round the loop again.
    Next,
    /// Read into the source's buffer next.
    Read,
}

/// Relays one body. `dst` is `None` to discard it (draining a request nobody will read).
pub async fn relay(
    src: &mut Conn,
    sbuf: &mut Buf,
    mut dst: Option<&mut Conn>,
    mut framing: Framing,
    limits: &Limits,
) -> Result<(), RelayError> {
    if let Framing::Chunked { decoder, .. } = &mut framing {
        decoder.set_limit(limits.max_body);
    }
    loop {
        if !sbuf.is_empty() && pass_buffered(sbuf, dst.as_deref_mut(), &mut framing, limits).await?
        {
            return Ok(());
        }
        if let Framing::Length(0) = framing {
            return Ok(());
        }
        match splice_step(src, dst.as_deref_mut(), &mut framing, limits).await? {
            Step::Done => return Ok(()),
            Step::Next => continue,
            Step::Read => {}
        }
        if let Framing::UntilClose { rechunk: true } = framing {
            if sbuf.spare().len() > CHUNK_HEAD_ROOM + CHUNK_TAIL_ROOM {
                match read_rechunked(src, sbuf, dst.as_deref_mut(), limits).await? {
                    Step::Done => return Ok(()),
                    Step::Next | Step::Read => continue,
                }
            }
        }
        if read_more(src, sbuf, dst.as_deref_mut(), &framing, limits).await? {
            return Ok(());
        }
    }
}

/// Passes on what the source's buffer holds, as the framing says; true when that ended the
/// body (a chunked body's last chunk).
async fn pass_buffered(
    sbuf: &mut Buf,
    dst: Option<&mut Conn>,
    framing: &mut Framing,
    limits: &Limits,
) -> Result<bool, RelayError> {
    match framing {
        Framing::Length(rem) => {
            let n = (*rem).min(sbuf.len() as u64) as usize;
            if let Some(d) = dst {
                write(d, &sbuf.filled()[..n], limits).await?;
            }
            sbuf.consume(n);
            *rem -= n as u64;
        }
        Framing::Chunked { decoder, dechunk } => {
            return pass_chunked(sbuf, dst, decoder, *dechunk, limits).await;
        }
        Framing::UntilClose { rechunk } => {
            if let Some(d) = dst {
                if *rechunk {
                    // Bytes that came with the head: framed apart (once per body).
                    let mut head = [0u8; CHUNK_HEAD_ROOM];
                    let at = chunk_head(&mut head, sbuf.len());
                    write(d, &head[at..], limits).await?;
                    write(d, sbuf.filled(), limits).await?;
                    write(d, b"\r\n", limits).await?;
                } else {
                    write(d, sbuf.filled(), limits).await?;
                }
            }
            let n = sbuf.len();
            sbuf.consume(n);
        }
    }
    Ok(false)
}

/// Validates the chunked framing in the source's buffer and passes it on (the data only when
/// `dechunk`, else the framing as received minus chunk extensions); true after the last chunk.
async fn pass_chunked(
    sbuf: &mut Buf,
    dst: Option<&mut Conn>,
    decoder: &mut ChunkedDecoder,
    dechunk: bool,
    limits: &Limits,
) -> Result<bool, RelayError> {
    let filled = sbuf.filled();
    let base = filled.as_ptr() as usize;
    // Data runs when de-chunking, extension ranges otherwise.
    let mut data: SmallVec<[Range<usize>; 8]> = SmallVec::new();
    let mut exts: SmallVec<[Range<usize>; 4]> = SmallVec::new();
    let (used, done) = decoder
        .feed_parts(
            filled,
            |d| {
                if dechunk && !d.is_empty() {
                    let off = d.as_ptr() as usize - base;
                    data.push(off..off + d.len());
                }
            },
            |ext| {
                if !dechunk {
                    exts.push(ext);
                }
            },
        )
        .map_err(|e| match e {
            ChunkError::TooLarge => RelayError::TooLarge,
            ChunkError::Malformed(_) => RelayError::Framing,
        })?;
    if let Some(d) = dst {
        if dechunk {
            for r in data {
                write(d, &filled[r], limits).await?;
            }
        } else {
            // The framing as received, minus the extensions (usually none: one write).
            let mut at = 0;
            for r in exts {
                if r.start > at {
                    write(d, &filled[at..r.start], limits).await?;
                }
                at = r.end;
            }
            if used > at {
                write(d, &filled[at..used], limits).await?;
            }
        }
    }
    sbuf.consume(used);
    Ok(done)
}

/// Lean to lean, body passed as it comes: straight from the receive ring to the destination
/// (the source's buffer is empty here). `Step::Read` when this step cannot splice (another
/// socket path, chunked framing, discarding, or the receive ring ran dry).
async fn splice_step(
    src: &mut Conn,
    dst: Option<&mut Conn>,
    framing: &mut Framing,
    limits: &Limits,
) -> Result<Step, RelayError> {
    let max = match framing {
        Framing::Length(rem) => (*rem).min(SPLICE_STEP_MAX as u64) as usize,
        Framing::UntilClose { rechunk: false } => SPLICE_STEP_MAX,
        _ => 0,
    };
    let Some(d) = dst.filter(|d| max > 0 && src.can_splice_to(d)) else {
        return Ok(Step::Read);
    };
    let deadline = Instant::now() + limits.read_timeout;
    match src.splice_to(d, max, deadline, limits.write_timeout).await {
        Ok(Splice::Moved(0)) => match framing {
            Framing::UntilClose { .. } => Ok(Step::Done),
            _ => Err(RelayError::Source),
        },
        Ok(Splice::Moved(n)) => {
            if let Framing::Length(rem) = framing {
                *rem -= n as u64;
            }
            Ok(Step::Next)
        }
        // The receive ring ran dry: this step reads and writes.
        Ok(Splice::Copy) => Ok(Step::Read),
        Err(SpliceError::Source(e)) => Err(read_error(e)),
        Err(SpliceError::Sink) => Err(RelayError::Sink),
    }
}

/// A close-delimited body re-encoded as chunked: reads between the room for the chunk-size
/// line and its CRLF, then sends the whole chunk from the buffer in one write (nothing is
/// kept in the buffer); at the source's close, the `0` chunk.
async fn read_rechunked(
    src: &mut Conn,
    sbuf: &mut Buf,
    dst: Option<&mut Conn>,
    limits: &Limits,
) -> Result<Step, RelayError> {
    let spare = sbuf.spare();
    let end = spare.len() - CHUNK_TAIL_ROOM;
    let n = read(src, &mut spare[CHUNK_HEAD_ROOM..end], limits).await?;
    // A read that filled the room: the next one may use a full-size buffer.
    let full = n == end - CHUNK_HEAD_ROOM;
    let Some(d) = dst else {
        return Ok(if n == 0 { Step::Done } else { Step::Next });
    };
    if n == 0 {
        write(d, b"0\r\n\r\n", limits).await?;
        return Ok(Step::Done);
    }
    let mut head = [0u8; CHUNK_HEAD_ROOM];
    let at = chunk_head(&mut head, n);
    spare[at..CHUNK_HEAD_ROOM].copy_from_slice(&head[at..]);
    let tail = CHUNK_HEAD_ROOM + n;
    spare[tail..tail + CHUNK_TAIL_ROOM].copy_from_slice(b"\r\n");
    write(d, &spare[at..tail + CHUNK_TAIL_ROOM], limits).await?;
    if full {
        sbuf.read_filled_spare();
    }
    Ok(Step::Next)
}

/// Reads more of the body into the source's buffer (a Content-Length body no further than its
/// end: the rest belongs to the next message on this connection); true when the source's
/// close ended a close-delimited body (after the `0` chunk when re-chunking).
async fn read_more(
    src: &mut Conn,
    sbuf: &mut Buf,
    dst: Option<&mut Conn>,
    framing: &Framing,
    limits: &Limits,
) -> Result<bool, RelayError> {
    let spare = sbuf.spare();
    let want = match framing {
        Framing::Length(rem) => ((*rem).min(spare.len() as u64)) as usize,
        _ => spare.len(),
    };
    let n = read(src, &mut spare[..want], limits).await?;
    if n == 0 {
        return match framing {
            Framing::UntilClose { rechunk: false } => Ok(true),
            Framing::UntilClose { rechunk: true } => match dst {
                Some(d) => write(d, b"0\r\n\r\n", limits).await.map(|()| true),
                None => Ok(true),
            },
            _ => Err(RelayError::Source),
        };
    }
    sbuf.commit(n);
    Ok(false)
}

async fn write(d: &mut Conn, bytes: &[u8], limits: &Limits) -> Result<(), RelayError> {
    d.write_all(bytes, limits.write_timeout)
        .await
        .map_err(|_| RelayError::Sink)
}

async fn read(src: &mut Conn, into: &mut [u8], limits: &Limits) -> Result<usize, RelayError> {
    src.read(into, Instant::now() + limits.read_timeout)
        .await
        .map_err(read_error)
}

fn read_error(e: io::Error) -> RelayError {
    if matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) {
        RelayError::SourceTimeout
    } else {
        RelayError::Source
    }
}

/// Writes `<hex len>\r\n` right-aligned into `out`; returns where it starts.
fn chunk_head(out: &mut [u8; CHUNK_HEAD_ROOM], len: usize) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut i = CHUNK_HEAD_ROOM - 2;
    out[i..].copy_from_slice(b"\r\n");
    let mut n = len as u64;
    loop {
        i -= 1;
        out[i] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_heads() {
        for len in [0usize, 1, 9, 10, 15, 16, 255, 4096, 16_384, usize::MAX] {
            let mut out = [0u8; CHUNK_HEAD_ROOM];
            let at = chunk_head(&mut out, len);
            assert_eq!(out[at..].to_vec(), format!("{len:x}\r\n").into_bytes());
        }
    }

    #[test]
    fn framing_constructors() {
        assert!(matches!(
            Framing::request(BodyKind::Length(7)),
            Framing::Length(7)
        ));
        assert!(matches!(
            Framing::request(BodyKind::None),
            Framing::Length(0)
        ));
        assert!(matches!(
            Framing::request(BodyKind::Chunked),
            Framing::Chunked { dechunk: false, .. }
        ));
        assert!(matches!(
            Framing::response(BodyKind::Chunked, Relay::Dechunk),
            Framing::Chunked { dechunk: true, .. }
        ));
        assert!(matches!(
            Framing::response(BodyKind::Chunked, Relay::Raw),
            Framing::Chunked { dechunk: false, .. }
        ));
        assert!(matches!(
            Framing::response(BodyKind::UntilClose, Relay::Rechunk),
            Framing::UntilClose { rechunk: true }
        ));
        assert!(matches!(
            Framing::response(BodyKind::UntilClose, Relay::Raw),
            Framing::UntilClose { rechunk: false }
        ));
        assert!(Framing::response(BodyKind::UntilClose, Relay::Raw).until_close());
        assert!(!Framing::response(BodyKind::Length(3), Relay::Raw).until_close());
    }
}
