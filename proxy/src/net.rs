//! Socket I/O for the data plane: the one module that knows how bytes move (today glommio's
//! `TcpStream`; the lean io_uring path replaces the inside of this module, not its callers).
//!
//! Contract for the code above it:
//! - `Listener::bind` opens a `SO_REUSEPORT` listener on this shard; every shard binds the same
//!   address and the kernel spreads connections. `accept` yields a `Conn` owned by this shard.
//! - `Conn::read` reads at least one byte into `buf` or returns `Ok(0)` at EOF; it fails with
//!   `ErrorKind::TimedOut` if nothing arrives before `deadline`. It never reads more than
//!   `buf.len()` bytes, so a caller bounds memory per connection by the buffer it passes.
//! - `Conn::readable` waits (same deadline rule) until a `read` would not block, without
//!   holding any buffer: an idle connection costs no buffer memory while it waits.
//! - `Conn::write_all` writes every byte or fails (`TimedOut` after `timeout` without progress).
//! - `connect` opens a backend connection or fails (`TimedOut` after `timeout`).
//! - `Conn::shutdown_write` sends FIN; the connection can still be read until the peer closes.
//! - Dropping a `Conn` closes it; no operation outlives the future that started it.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub struct Listener {
    inner: TcpListener,
}

impl Listener {
    pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
        let inner = TcpListener::bind(addr).map_err(io::Error::from)?;
        Ok(Listener { inner })
    }

    pub async fn accept(&self) -> io::Result<Conn> {
        let stream = self.inner.accept().await.map_err(io::Error::from)?;
        Conn::new(stream)
    }
}

pub struct Conn {
    stream: TcpStream,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

/// The shortest timeout glommio accepts (it refuses zero).
const MIN_TIMEOUT: Duration = Duration::from_micros(1);

impl Conn {
    fn new(stream: TcpStream) -> io::Result<Conn> {
        stream.set_nodelay(true).map_err(io::Error::from)?;
        Ok(Conn {
            stream,
            read_timeout: None,
            write_timeout: None,
        })
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr().map_err(io::Error::from)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr().map_err(io::Error::from)
    }

    /// Reads into `buf`; `Ok(0)` is EOF.
    pub async fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        self.arm_read_deadline(deadline)?;
        self.stream.read(buf).await
    }

    /// Waits, holding no buffer, until a `read` would not block (data, EOF or an error).
    pub async fn readable(&mut self, deadline: Instant) -> io::Result<()> {
        self.arm_read_deadline(deadline)?;
        self.stream.readable().await.map_err(io::Error::from)
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
            self.stream
                .set_read_timeout(Some(want))
                .map_err(io::Error::from)?;
            self.read_timeout = Some(want);
        }
        Ok(())
    }

    /// Sends FIN (no more writes); reads still work until the peer closes.
    pub async fn shutdown_write(&self) -> io::Result<()> {
        self.stream
            .shutdown(std::net::Shutdown::Write)
            .await
            .map_err(io::Error::from)
    }

    pub async fn write_all(&mut self, buf: &[u8], timeout: Duration) -> io::Result<()> {
        let want = timeout.max(MIN_TIMEOUT);
        if self.write_timeout != Some(want) {
            self.stream
                .set_write_timeout(Some(want))
                .map_err(io::Error::from)?;
            self.write_timeout = Some(want);
        }
        self.stream.write_all(buf).await
    }
}

/// Opens a backend connection.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
    let stream = TcpStream::connect_timeout(addr, timeout.max(Duration::from_millis(1)))
        .await
        .map_err(io::Error::from)?;
    Conn::new(stream)
}
