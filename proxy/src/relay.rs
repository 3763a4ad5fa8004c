//! Streams a message body from one connection to another without buffering it whole: bytes
//! already read (in the source's buffer) first, then read/write in buffer-sized steps, bounded
//! by the body's framing (Content-Length, chunked, or until the source closes).

use crate::buffer::Buf;
use crate::net::Conn;
use smallvec::SmallVec;
use std::time::{Duration, Instant};
use tollgate_core::http::chunked::ChunkedDecoder;

pub enum Framing {
    Length(u64),
    /// `dechunk`: send only the data, without chunk framing.
    Chunked {
        decoder: ChunkedDecoder,
        dechunk: bool,
    },
    UntilClose,
}

#[derive(Debug)]
pub enum RelayError {
    /// Reading the source failed or it closed early.
    Source,
    /// Writing the destination failed.
    Sink,
    /// The source sent malformed chunk framing.
    Framing,
    /// The body grew past the limit.
    TooLarge,
}

pub struct Limits {
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Body bytes allowed (data only, without chunk framing).
    pub max_body: u64,
}

/// Relays one body. `dst` is `None` to discard it (draining a request nobody will read).
pub async fn relay(
    src: &mut Conn,
    sbuf: &mut Buf,
    mut dst: Option<&mut Conn>,
    mut framing: Framing,
    limits: &Limits,
) -> Result<(), RelayError> {
    loop {
        if !sbuf.is_empty() {
            match &mut framing {
                Framing::Length(rem) => {
                    let n = (*rem).min(sbuf.len() as u64) as usize;
                    if let Some(d) = dst.as_deref_mut() {
                        d.write_all(&sbuf.filled()[..n], limits.write_timeout)
                            .await
                            .map_err(|_| RelayError::Sink)?;
                    }
                    sbuf.consume(n);
                    *rem -= n as u64;
                }
                Framing::Chunked { decoder, dechunk } => {
                    let filled = sbuf.filled();
                    let base = filled.as_ptr() as usize;
                    let mut ranges: SmallVec<[(usize, usize); 8]> = SmallVec::new();
                    let (used, done) = decoder
                        .feed(filled, |d| {
                            if !d.is_empty() {
                                ranges.push((d.as_ptr() as usize - base, d.len()));
                            }
                        })
                        .map_err(|_| RelayError::Framing)?;
                    if decoder.data_len() > limits.max_body {
                        return Err(RelayError::TooLarge);
                    }
                    if let Some(d) = dst.as_deref_mut() {
                        if *dechunk {
                            for (off, len) in ranges {
                                d.write_all(&filled[off..off + len], limits.write_timeout)
                                    .await
                                    .map_err(|_| RelayError::Sink)?;
                            }
                        } else {
                            d.write_all(&filled[..used], limits.write_timeout)
                                .await
                                .map_err(|_| RelayError::Sink)?;
                        }
                    }
                    sbuf.consume(used);
                    if done {
                        return Ok(());
                    }
                }
                Framing::UntilClose => {
                    if let Some(d) = dst.as_deref_mut() {
                        d.write_all(sbuf.filled(), limits.write_timeout)
                            .await
                            .map_err(|_| RelayError::Sink)?;
                    }
                    let n = sbuf.len();
                    sbuf.consume(n);
                }
            }
        }
        if let Framing::Length(0) = framing {
            return Ok(());
        }
        let spare = sbuf.spare();
        // A Content-Length body is read no further than its end (the rest belongs to the
        // next message on this connection).
        let want = match framing {
            Framing::Length(rem) => (rem.min(spare.len() as u64)) as usize,
            _ => spare.len(),
        };
        let n = src
            .read(&mut spare[..want], Instant::now() + limits.read_timeout)
            .await
            .map_err(|_| RelayError::Source)?;
        if n == 0 {
            return match framing {
                Framing::UntilClose => Ok(()),
                _ => Err(RelayError::Source),
            };
        }
        sbuf.commit(n);
    }
}
