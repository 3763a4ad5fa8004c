//! The readiness-polling socket path behind `net`'s contract: glommio's `TcpStream`, a
//! `recv`/`send` syscall per operation and a one-shot `POLL_ADD` to wait. Deadlines become
//! glommio's per-stream read/write timeouts, touched only when they change.

use super::MIN_TIMEOUT;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub(super) struct Stream {
    inner: TcpStream,
    /// The read timeout last given to glommio (`None`: none set).
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl Stream {
    pub(super) fn new(inner: TcpStream) -> Stream {
        Stream {
            inner,
            read_timeout: None,
            write_timeout: None,
        }
    }

    /// A stream for `fd`, a connected TCP socket (the lean path refused it).
    pub(super) fn from_fd(fd: OwnedFd) -> Stream {
        use std::os::fd::{FromRawFd, IntoRawFd};
        // SAFETY: `fd` is a connected TCP socket we own; ownership moves into the stream.
        Stream::new(unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) })
    }

    pub(super) fn with_sock<R>(&self, f: impl FnOnce(socket2::SockRef<'_>) -> R) -> R {
        f(socket2::SockRef::from(&self.inner))
    }

    pub(super) async fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        self.arm_read_deadline(deadline)?;
        self.inner.read(buf).await
    }

    pub(super) async fn readable(&mut self, deadline: Instant) -> io::Result<()> {
        self.arm_read_deadline(deadline)?;
        self.inner.readable().await.map_err(io::Error::from)
    }

    /// Waits on the stream's one-shot readiness poll (the one `read` arms after a short read,
    /// or a new one): its completion wakes the single waiter registered here. The read
    /// timeout is cleared first, so an idle connection has no timer running and a timeout
    /// cannot pass for readiness; the next `read` sets its own deadline again.
    pub(super) fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.read_timeout.is_some() && self.inner.set_read_timeout(None).is_ok() {
            self.read_timeout = None;
        }
        // `readable()` holds only `&mut self.inner`: polling it once registers the waker on
        // the stream's readiness source, and dropping the future cancels nothing.
        let wait = pin!(self.inner.readable());
        match wait.poll(cx) {
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }

    fn arm_read_deadline(&mut self, deadline: Instant) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "read deadline passed",
            ));
        }
        // Only touch the socket's timeout when it changes by more than a millisecond: the
        // common case (a fresh deadline per request) then costs no extra work.
        let want = left.max(MIN_TIMEOUT);
        if self
            .read_timeout
            .is_none_or(|t| t.abs_diff(want) > Duration::from_millis(1))
        {
            self.inner
                .set_read_timeout(Some(want))
                .map_err(io::Error::from)?;
            self.read_timeout = Some(want);
        }
        Ok(())
    }

    pub(super) async fn write_all(&mut self, buf: &[u8], timeout: Duration) -> io::Result<()> {
        let want = timeout.max(MIN_TIMEOUT);
        if self.write_timeout != Some(want) {
            self.inner
                .set_write_timeout(Some(want))
                .map_err(io::Error::from)?;
            self.write_timeout = Some(want);
        }
        self.inner.write_all(buf).await
    }

    pub(super) async fn shutdown_write(&self) -> io::Result<()> {
        self.inner
            .shutdown(std::net::Shutdown::Write)
            .await
            .map_err(io::Error::from)
    }
}
