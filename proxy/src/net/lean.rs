//! The lean socket path behind `net`'s contract: glommio's `LeanStream` (tollgate patch), a
//! multishot receive into the shard's provided-buffer ring and sends queued as SQEs. Nothing
//! here makes a syscall per read or write; waits are wakers registered with the ring's slot.

use super::{until, Splice, SpliceError, MIN_TIMEOUT, SEND_QUEUE_LIMIT};
use glommio::net::{LeanStream, Relayed};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// What `shutdown_write` waits for queued bytes when no write set a timeout yet.
const DEFAULT_FLUSH_WAIT: Duration = Duration::from_secs(10);

pub(super) struct Stream {
    inner: LeanStream,
    /// The last `write_all` timeout, reused by `shutdown_write` to flush.
    write_timeout: Option<Duration>,
}

impl Stream {
    /// Takes over `fd`; gives it back if this executor cannot run the lean path.
    pub(super) fn from_fd(fd: OwnedFd) -> Result<Stream, OwnedFd> {
        LeanStream::from_fd(fd).map(|inner| Stream {
            inner,
            write_timeout: None,
        })
    }

    pub(super) fn with_sock<R>(&self, f: impl FnOnce(socket2::SockRef<'_>) -> R) -> R {
        // SAFETY: `inner` owns the descriptor and keeps it open for this call.
        let fd = unsafe { BorrowedFd::borrow_raw(self.inner.raw_fd()) };
        f(socket2::SockRef::from(&fd))
    }

    pub(super) async fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        let l = &self.inner;
        until(deadline, "read deadline passed", |cx| l.poll_read(cx, buf)).await
    }

    pub(super) async fn readable(&mut self, deadline: Instant) -> io::Result<()> {
        let l = &self.inner;
        until(deadline, "read deadline passed", |cx| {
            l.poll_readable(cx).map(Ok)
        })
        .await
    }

    /// The receive stays armed while a connection is idle, so its completion (bytes, EOF as
    /// a zero-length receive, an error) wakes the one waker registered here. `poll_readable`
    /// also says ready when the receive ring ran dry earlier (a read would use recv(2)); only
    /// then is a read tried, into a one-byte scratch: bytes or EOF mean the connection is not
    /// clean (what was read no longer matters), nothing means it still is (the read re-armed
    /// the receive and registered the waker).
    pub(super) fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.poll_readable(cx).is_pending() {
            return Poll::Pending;
        }
        let mut scratch = [0u8; 1];
        match self.inner.poll_read(cx, &mut scratch) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(()),
        }
    }

    pub(super) async fn write_all(&mut self, buf: &[u8], timeout: Duration) -> io::Result<()> {
        let want = timeout.max(MIN_TIMEOUT);
        self.write_timeout = Some(want);
        self.inner.write(buf)?;
        let l = &self.inner;
        until(Instant::now() + want, "write timed out", |cx| {
            l.poll_write_room(cx, SEND_QUEUE_LIMIT)
        })
        .await
    }

    /// Moves up to `max` received bytes to `dst` out of the receive ring (no copy in user
    /// space when `dst` takes them at once; see `LeanStream::poll_relay_to`), then waits, as
    /// `write_all` does, until fewer than `SEND_QUEUE_LIMIT` bytes wait unsent on `dst`.
    pub(super) async fn splice_to(
        &mut self,
        dst: &mut Stream,
        max: usize,
        deadline: Instant,
        write_timeout: Duration,
    ) -> Result<Splice, SpliceError> {
        let (l, d) = (&self.inner, &dst.inner);
        let step = until(deadline, "read deadline passed", |cx| {
            l.poll_relay_to(cx, d, max).map(Ok)
        })
        .await
        .map_err(SpliceError::Source)?;
        let n = match step {
            Relayed::Moved(n) => n,
            Relayed::Eof => return Ok(Splice::Moved(0)),
            Relayed::Starved => return Ok(Splice::Copy),
            Relayed::SourceFailed(e) => return Err(SpliceError::Source(e)),
            Relayed::SinkFailed(_) => return Err(SpliceError::Sink),
        };
        let want = write_timeout.max(MIN_TIMEOUT);
        dst.write_timeout = Some(want);
        until(Instant::now() + want, "write timed out", |cx| {
            d.poll_write_room(cx, SEND_QUEUE_LIMIT)
        })
        .await
        .map_err(|_| SpliceError::Sink)?;
        Ok(Splice::Moved(n))
    }

    pub(super) async fn shutdown_write(&self) -> io::Result<()> {
        let wait = self.write_timeout.unwrap_or(DEFAULT_FLUSH_WAIT);
        let l = &self.inner;
        until(Instant::now() + wait, "write timed out", |cx| {
            l.poll_flush(cx)
        })
        .await?;
        // SAFETY: shutdown(2) on the descriptor `inner` owns.
        if unsafe { libc::shutdown(l.raw_fd(), libc::SHUT_WR) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
