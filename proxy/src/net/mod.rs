//! Socket I/O for the data plane: the one module that knows how bytes move. Two paths sit
//! behind one contract, each in its own file (the way mio's `sys` module splits them):
//! - **lean** (`lean.rs`, default): glommio's `LeanStream` (tollgate patch): a multishot
//!   receive into the shard's provided-buffer ring and sends queued as SQEs, all flushed with
//!   the reactor's one `io_uring_enter` per turn; no syscall per read or write.
//! - **poll** (`poll.rs`): glommio's `TcpStream` (a `recv`/`send` syscall per operation, a
//!   one-shot `POLL_ADD` to wait). Used when the kernel lacks the lean pieces (< 6.0, logged
//!   once) or when the runtime chose it at start-up (`TOLLGATE_SOCKET_PATH=poll`, parsed by the
//!   runtime and passed to `configure`; this module reads no environment).
//!
//! Contract for the code above it:
//! - `Listener::bind` opens a `SO_REUSEPORT` listener on this shard; every shard binds the same
//!   address and the kernel spreads connections. `accept` yields a `Conn` owned by this shard.
//! - `Conn::read` reads at least one byte into `buf` or returns `Ok(0)` at EOF; it fails with
//!   `ErrorKind::TimedOut` if nothing arrives before `deadline`. It never reads more than
//!   `buf.len()` bytes, so a caller bounds memory per connection by the buffer it passes.
//! - `Conn::readable` waits (same deadline rule) until a `read` would not block, without
//!   holding any buffer: an idle connection costs no buffer memory while it waits.
//! - `Conn::poll_idle` is for a connection parked with nothing expected (a pooled backend
//!   connection): `Ready` once a read would not block (stray bytes, EOF, a reset), else
//!   `Pending` with the context's waker registered. One waker per connection: the latest
//!   registration (by `poll_idle`, `read` or `readable`) replaces the earlier one, so a poll
//!   with a no-op waker both checks and unregisters. It costs no syscall and no buffer: the
//!   lean path watches with the receive it keeps armed anyway, the poll path with the one-shot
//!   `POLL_ADD` it arms after a short read (or one more SQE), with no read timeout running.
//! - `Conn::write_all` takes every byte or fails (`TimedOut` after `timeout` without progress).
//!   On the lean path the bytes are copied and sent at the end of the reactor turn; at most
//!   `SEND_QUEUE_LIMIT` bytes per connection wait unsent before `write_all` waits, which is the
//!   backpressure a slow reader meets. A send that fails shows as an error on the next
//!   `write_all` or `shutdown_write`.
//! - `Conn::splice_to` moves received bytes straight to another connection: on the lean path
//!   (both ends plain lean connections of this shard) the bytes go from the receive ring to
//!   the destination with one `sendmsg(2)`, or into its send queue, with no copy through a
//!   buffer of the caller's; every ring buffer emptied is back in the ring when it returns.
//!   Same rules as `read` (deadline, at most `max` bytes, `0` at EOF) and `write_all`
//!   (`SEND_QUEUE_LIMIT`, write timeout). For any other pair (poll path, TLS) and while the
//!   ring is dry it moves nothing and says `Splice::Copy`: the caller reads and writes.
//! - `connect` opens a backend connection or fails (`TimedOut` after `timeout`).
//! - `Conn::shutdown_write` sends FIN after every byte written; the connection can still be read
//!   until the peer closes.
//! - TLS (`tls.rs`) wraps a `Conn` of either path and keeps this contract: a `Listener` with
//!   `with_tls` yields connections whose handshake runs in their first `read`/`readable`; an
//!   https backend comes from `connect_tls`. `Conn::is_tls` and `Conn::tls_session` (SNI
//!   domain, mutual-TLS client certificate) are all the code above needs to know.
//! - `trim` gives back what a burst of connections left in the shard's socket layer (called
//!   by the shard after a burst, never per request).
//! - Dropping a `Conn` closes it. Bytes already written still go out, as with close(2); what
//!   the kernel was doing for it is cancelled and waited for before the descriptor closes, so
//!   no buffer is reused while the kernel may touch it.

mod lean;
mod poll;
mod tls;

pub use tls::{client_config, Edge};

use glommio::net::TcpListener;
use glommio::timer::Timer;
use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Bytes a lean connection may have written but not yet sent before `write_all` waits.
pub const SEND_QUEUE_LIMIT: usize = 256 * 1024;

/// The socket path a process runs on, chosen once at start-up (`TOLLGATE_SOCKET_PATH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketPath {
    /// Multishot receive into the shard's buffer ring, sends as SQEs (the default).
    Lean,
    /// glommio's readiness-polling `TcpStream`.
    Poll,
}

impl SocketPath {
    /// The environment variable that chooses the path.
    pub const ENV: &'static str = "TOLLGATE_SOCKET_PATH";

    /// The path named by the variable's value: unset or `lean` is the lean path, `poll` the
    /// polling one; anything else is refused with a message saying what is accepted.
    pub fn parse(value: Option<&std::ffi::OsStr>) -> Result<SocketPath, String> {
        match value.map(|v| v.to_str()) {
            None | Some(Some("lean")) => Ok(SocketPath::Lean),
            Some(Some("poll")) => Ok(SocketPath::Poll),
            Some(v) => Err(format!(
                "tollgate: {}={:?} is not a socket path: use `lean` (the default) or `poll`",
                Self::ENV,
                v.map_or_else(|| "(not UTF-8)".to_string(), str::to_string)
            )),
        }
    }
}

/// Set once by `configure` before the shards start; read when a socket is opened.
static POLL_PATH: AtomicBool = AtomicBool::new(false);

/// Chooses the socket path and sizes the per-shard receive ring of the lean path; call once,
/// before the shards start.
pub fn configure(path: SocketPath, ring_buffers: usize, ring_buffer_bytes: usize) {
    POLL_PATH.store(path == SocketPath::Poll, Ordering::Relaxed);
    glommio::net::lean_configure(ring_buffers, ring_buffer_bytes);
}

/// Gives back what a burst of connections left in this shard's socket layer (the lean
/// path's slot table and send-vector pool; the poll path keeps nothing per closed socket).
pub fn trim() -> usize {
    glommio::net::lean_trim()
}

#[cfg(test)]
fn configure_lean(buffers: usize, buffer_bytes: usize) {
    glommio::net::lean_configure(buffers, buffer_bytes);
}

/// This shard's lean-path counters (`None` on the poll path).
#[cfg(test)]
pub fn lean_stats() -> Option<glommio::net::LeanStats> {
    glommio::net::lean_stats()
}

/// Waits (at most `limit`) until every lean socket this executor dropped is closed: a dropped
/// socket closes after its last CQE, on a later reactor turn, so a test that ends its executor
/// (or trims) right after dropping connections must let the reactor get there first.
#[cfg(test)]
pub async fn dropped_sockets_closed(limit: std::time::Duration) {
    let until = std::time::Instant::now() + limit;
    while lean_stats().is_some_and(|st| st.closing > 0) && std::time::Instant::now() < until {
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
    }
}

pub struct Listener {
    inner: TcpListener,
    /// Set for a TLS listener: every accepted connection is wrapped. Replaced by a config
    /// reload (`set_tls`) between accepts.
    edge: RefCell<Option<Rc<Edge>>>,
}

impl Listener {
    pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
        let inner = TcpListener::bind(addr).map_err(io::Error::from)?;
        Ok(Listener {
            inner,
            edge: RefCell::new(None),
        })
    }

    /// Terminates TLS on this listener if `tls` has a certificate for its address (builds
    /// this shard's rustls configs); a listener without one stays plain.
    pub fn with_tls(self, tls: &tollgate_core::tls::Tls) -> io::Result<Listener> {
        self.set_tls(tls)?;
        Ok(self)
    }

    /// Config reload: connections accepted from now on handshake with `tls`'s certificates
    /// for this address (or stay plain without one); those accepted before keep theirs. On
    /// error the listener is unchanged.
    pub fn set_tls(&self, tls: &tollgate_core::tls::Tls) -> io::Result<()> {
        let addr = self.inner.local_addr().map_err(io::Error::from)?;
        let edge = match tls.listener(addr) {
            Some(id) => Some(Rc::new(Edge::new(tls, id)?)),
            None => None,
        };
        *self.edge.borrow_mut() = edge;
        Ok(())
    }

    pub async fn accept(&self) -> io::Result<Conn> {
        let stream = self.inner.accept().await.map_err(io::Error::from)?;
        let conn = Conn::new(stream)?;
        let edge = self.edge.borrow().clone();
        match &edge {
            Some(edge) => Ok(Conn {
                io: Io::Tls(Box::new(tls::Stream::accept(
                    conn.into_plain()?,
                    edge.clone(),
                ))),
            }),
            None => Ok(conn),
        }
    }
}

/// A connection's socket. The lean variant is inline (32 bytes); the others are boxed so a
/// parked lean connection does not carry the size of glommio's `TcpStream` (about 120 bytes)
/// or of the TLS state.
enum Io {
    Lean(lean::Stream),
    Poll(Box<poll::Stream>),
    Tls(Box<tls::Stream>),
}

/// The socket under a TLS stream: the same two paths, without a TLS variant (so TLS code
/// calls them directly, with no recursion between `Conn` and `tls::Stream`).
enum Plain {
    Lean(lean::Stream),
    Poll(poll::Stream),
}

impl Plain {
    fn with_sock<R>(&self, f: impl FnOnce(socket2::SockRef<'_>) -> R) -> R {
        match self {
            Plain::Lean(l) => l.with_sock(f),
            Plain::Poll(s) => s.with_sock(f),
        }
    }

    async fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        match self {
            Plain::Lean(l) => l.read(buf, deadline).await,
            Plain::Poll(s) => s.read(buf, deadline).await,
        }
    }

    async fn readable(&mut self, deadline: Instant) -> io::Result<()> {
        match self {
            Plain::Lean(l) => l.readable(deadline).await,
            Plain::Poll(s) => s.readable(deadline).await,
        }
    }

    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            Plain::Lean(l) => l.poll_idle(cx),
            Plain::Poll(s) => s.poll_idle(cx),
        }
    }

    async fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Plain::Lean(l) => l.shutdown_write().await,
            Plain::Poll(s) => s.shutdown_write().await,
        }
    }

    async fn write_all(&mut self, buf: &[u8], timeout: Duration) -> io::Result<()> {
        match self {
            Plain::Lean(l) => l.write_all(buf, timeout).await,
            Plain::Poll(s) => s.write_all(buf, timeout).await,
        }
    }
}

pub struct Conn {
    io: Io,
}

/// The shortest timeout glommio accepts (it refuses zero).
const MIN_TIMEOUT: Duration = Duration::from_micros(1);

/// Waits for `f` to be ready, or fails with `TimedOut` at `deadline` (a timer is only set
/// up if `f` is not ready at once).
async fn until<T>(
    deadline: Instant,
    what: &'static str,
    mut f: impl FnMut(&mut Context<'_>) -> Poll<io::Result<T>>,
) -> io::Result<T> {
    let mut timer: Option<Timer> = None;
    poll_fn(|cx| {
        if let Poll::Ready(r) = f(cx) {
            return Poll::Ready(r);
        }
        let t = timer
            .get_or_insert_with(|| Timer::new(deadline.saturating_duration_since(Instant::now())));
        if Pin::new(t).poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
        }
        Poll::Pending
    })
    .await
}

impl Conn {
    fn new(stream: glommio::net::TcpStream) -> io::Result<Conn> {
        let path = if POLL_PATH.load(Ordering::Relaxed) {
            SocketPath::Poll
        } else {
            SocketPath::Lean
        };
        Conn::on(path, stream)
    }

    fn on(path: SocketPath, stream: glommio::net::TcpStream) -> io::Result<Conn> {
        stream.set_nodelay(true).map_err(io::Error::from)?;
        let io = if path == SocketPath::Poll {
            Io::Poll(Box::new(poll::Stream::new(stream)))
        } else {
            match lean::Stream::from_fd(stream.into_owned_fd()) {
                Ok(l) => Io::Lean(l),
                Err(fd) => Io::Poll(Box::new(poll::Stream::from_fd(fd))),
            }
        };
        Ok(Conn { io })
    }

    /// The plain socket of a connection that is not TLS yet (to wrap it).
    fn into_plain(self) -> io::Result<Plain> {
        match self.io {
            Io::Lean(l) => Ok(Plain::Lean(l)),
            Io::Poll(s) => Ok(Plain::Poll(*s)),
            Io::Tls(_) => Err(io::Error::other("already a TLS connection")),
        }
    }

    /// Runs `f` on the socket (for address lookups).
    fn with_sock<R>(&self, f: impl FnOnce(socket2::SockRef<'_>) -> R) -> R {
        match &self.io {
            Io::Lean(l) => l.with_sock(f),
            Io::Poll(s) => s.with_sock(f),
            Io::Tls(t) => t.plain().with_sock(f),
        }
    }

    /// Whether this connection speaks TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }

    /// What the TLS handshake settled (after it): SNI domain, client certificate.
    pub fn tls_session(&self) -> Option<Rc<tollgate_core::tls::TlsSession>> {
        match &self.io {
            Io::Tls(t) => t.session(),
            _ => None,
        }
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.with_sock(|s| s.peer_addr())?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an inet socket"))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.with_sock(|s| s.local_addr())?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an inet socket"))
    }

    /// Reads into `buf`; `Ok(0)` is EOF.
    pub async fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        match &mut self.io {
            Io::Lean(l) => l.read(buf, deadline).await,
            Io::Poll(s) => s.read(buf, deadline).await,
            Io::Tls(t) => t.read(buf, deadline).await,
        }
    }

    /// Waits, holding no buffer, until a `read` would not block (data, EOF or an error).
    pub async fn readable(&mut self, deadline: Instant) -> io::Result<()> {
        match &mut self.io {
            Io::Lean(l) => l.readable(deadline).await,
            Io::Poll(s) => s.readable(deadline).await,
            Io::Tls(t) => t.readable(deadline).await,
        }
    }

    /// For a connection parked with nothing expected from its peer: `Ready` if a read would
    /// not block (bytes, EOF or an error arrived), else `Pending` with `cx`'s waker registered
    /// to be woken when that happens. See the contract above.
    pub fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.io {
            Io::Lean(l) => l.poll_idle(cx),
            Io::Poll(s) => s.poll_idle(cx),
            Io::Tls(t) => t.poll_idle(cx),
        }
    }

    /// Sends FIN after every byte written; reads still work until the peer closes.
    pub async fn shutdown_write(&mut self) -> io::Result<()> {
        match &mut self.io {
            Io::Lean(l) => l.shutdown_write().await,
            Io::Poll(s) => s.shutdown_write().await,
            Io::Tls(t) => t.shutdown_write().await,
        }
    }

    pub async fn write_all(&mut self, buf: &[u8], timeout: Duration) -> io::Result<()> {
        match &mut self.io {
            Io::Lean(l) => l.write_all(buf, timeout).await,
            Io::Poll(s) => s.write_all(buf, timeout).await,
            Io::Tls(t) => t.write_all(buf, timeout).await,
        }
    }

    /// Moves up to `max` (> 0) bytes this connection receives to `dst` without copying them
    /// through a buffer of ours, where both are plain lean connections of this shard (see the
    /// contract). `Ok(Splice::Copy)` (nothing moved) for any other pair, and while the
    /// receive ring is dry: then use `read` and `write_all` for that step.
    pub async fn splice_to(
        &mut self,
        dst: &mut Conn,
        max: usize,
        deadline: Instant,
        write_timeout: Duration,
    ) -> Result<Splice, SpliceError> {
        match (&mut self.io, &mut dst.io) {
            (Io::Lean(s), Io::Lean(d)) if max > 0 => {
                s.splice_to(d, max, deadline, write_timeout).await
            }
            _ => Ok(Splice::Copy),
        }
    }

    /// Whether `splice_to` can move bytes from this connection to `dst` (both plain lean).
    pub fn can_splice_to(&self, dst: &Conn) -> bool {
        matches!((&self.io, &dst.io), (Io::Lean(_), Io::Lean(_)))
    }
}

/// What one `Conn::splice_to` step did.
#[derive(Debug, PartialEq, Eq)]
pub enum Splice {
    /// This many bytes left the source for the destination (sent or queued to send); 0: the
    /// source closed.
    Moved(usize),
    /// Nothing moved: this pair (or this moment) needs `read` and `write_all`.
    Copy,
}

/// Which side of a `Conn::splice_to` failed.
#[derive(Debug)]
pub enum SpliceError {
    /// Reading the source failed, or nothing arrived before the deadline (`TimedOut`).
    Source(io::Error),
    /// Writing the destination failed or timed out.
    Sink,
}

/// Opens a backend connection.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
    Conn::new(open(addr, timeout).await?)
}

/// Opens an https backend connection: TCP, then the TLS handshake with `name` as SNI and the
/// name verified, all within `timeout`.
pub async fn connect_tls(
    addr: SocketAddr,
    timeout: Duration,
    config: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
) -> io::Result<Conn> {
    let deadline = Instant::now() + timeout;
    let plain = connect(addr, timeout).await?.into_plain()?;
    let t = tls::Stream::connect(plain, config, name, deadline).await?;
    Ok(Conn {
        io: Io::Tls(Box::new(t)),
    })
}

/// Opens a connection on `path`, whatever `configure` chose (tests run both paths in one
/// process).
#[cfg(test)]
pub async fn connect_on(path: SocketPath, addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
    Conn::on(path, open(addr, timeout).await?)
}

async fn open(addr: SocketAddr, timeout: Duration) -> io::Result<glommio::net::TcpStream> {
    glommio::net::TcpStream::connect_timeout(addr, timeout.max(Duration::from_millis(1)))
        .await
        .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    //! The lean path against real loopback sockets: data arrives intact (also when the
    //! receive ring runs dry), and connections closed with receives and sends in flight give
    //! every ring buffer back and close every descriptor.

    use super::*;
    use glommio::LocalExecutorBuilder;
    use std::io::{Read, Write};

    /// The socket inode behind `fd` (`socket:[N]` in /proc/self/fd).
    fn socket_inode(fd: std::os::fd::RawFd) -> Option<String> {
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
        let link = link.to_str()?;
        link.starts_with("socket:[").then(|| link.to_string())
    }

    /// This process's descriptors that still refer to one of `sockets` (by inode, so a
    /// descriptor number another test reused, or another test's sockets, do not count: tests
    /// run in one process at the same time).
    fn fds_of(sockets: &std::collections::HashSet<String>) -> usize {
        std::fs::read_dir("/proc/self/fd").map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|l| l.to_str().is_some_and(|l| sockets.contains(l)))
                .count()
        })
    }

    /// Runs `body` on a fresh executor (SQ of `ring_depth` entries) with a listener on a free
    /// loopback port.
    fn on_executor<T, F, Fut>(ring_depth: usize, body: F) -> T
    where
        F: FnOnce(Listener, SocketAddr) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T>,
        T: Send + 'static,
    {
        LocalExecutorBuilder::default()
            .ring_depth(ring_depth)
            .make()
            .expect("executor (ulimit -l?)")
            .run(async move {
                let l = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                let addr = l.inner.local_addr().unwrap();
                body(l, addr).await
            })
    }

    /// Waits (bounded) until this executor's lean path has no socket open or closing and
    /// every buffer back in the ring.
    async fn settled() -> glommio::net::LeanStats {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let st = lean_stats().expect("lean path started");
            if (st.open == 0 && st.closing == 0 && st.buffers_free == st.buffers)
                || Instant::now() > until
            {
                return st;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Clients each send `per_conn` bytes and read back an 8-byte count; the server reads
    /// everything, checks the bytes, answers. `ring_depth`: glommio's SQ size (its CQ ring is
    /// twice that), small to make multishot completions overflow the CQ ring.
    fn echo_counts(conns: usize, per_conn: usize, ring_depth: usize) -> glommio::net::LeanStats {
        on_executor(ring_depth, move |l, addr| async move {
            let clients = std::thread::spawn(move || {
                let hs: Vec<_> = (0..conns)
                    .map(|i| {
                        std::thread::spawn(move || {
                            let mut s = std::net::TcpStream::connect(addr).unwrap();
                            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                            let data: Vec<u8> =
                                (0..per_conn).map(|j| (i * 7 + j * 13) as u8).collect();
                            s.write_all(&data).unwrap();
                            let mut got = [0u8; 8];
                            s.read_exact(&mut got).unwrap();
                            u64::from_le_bytes(got)
                        })
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().unwrap())
                    .collect::<Vec<_>>()
            });
            let mut tasks = Vec::new();
            for _ in 0..conns {
                let mut c = l.accept().await.unwrap();
                assert!(matches!(c.io, Io::Lean(_)), "lean path in use");
                tasks.push(glommio::spawn_local(async move {
                    let mut buf = vec![0u8; 3000];
                    let mut all = Vec::new();
                    while all.len() < per_conn {
                        let n = c
                            .read(&mut buf, Instant::now() + Duration::from_secs(10))
                            .await
                            .unwrap();
                        assert!(n > 0, "early EOF");
                        all.extend_from_slice(&buf[..n]);
                    }
                    let first = all[0] as usize; // i * 7 mod 256
                    let ok = all
                        .iter()
                        .enumerate()
                        .all(|(j, b)| *b == (first + j * 13) as u8);
                    assert!(ok, "bytes arrived out of order or damaged");
                    c.write_all(&(all.len() as u64).to_le_bytes(), Duration::from_secs(5))
                        .await
                        .unwrap();
                    c.shutdown_write().await.unwrap();
                }));
            }
            for t in tasks {
                t.await;
            }
            let counts = clients.join().unwrap();
            assert!(counts.iter().all(|n| *n == per_conn as u64), "{counts:?}");
            settled().await
        })
    }

    /// Connections dropped with a receive armed and a large send in flight (the peer does not
    /// read), and peers that vanish while the server waits to read.
    fn aborts(conns: usize) -> (glommio::net::LeanStats, usize, usize) {
        on_executor(128, move |l, addr| async move {
            let mut sockets = std::collections::HashSet::new();
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let clients = std::thread::spawn(move || {
                let mut keep = Vec::new();
                for i in 0..conns {
                    let mut s = std::net::TcpStream::connect(addr).unwrap();
                    if i % 2 == 0 {
                        s.write_all(&[b'x'; 40_000]).unwrap();
                    }
                    keep.push(s);
                }
                // Hold them (unread) until the server has dropped its half, then vanish.
                let _ = rx.recv_timeout(Duration::from_secs(10));
                drop(keep);
            });
            let mut tasks = Vec::new();
            for i in 0..conns {
                let mut c = l.accept().await.unwrap();
                let fd = c.with_sock(|s| std::os::fd::AsRawFd::as_raw_fd(&*s));
                sockets.extend(socket_inode(fd));
                tasks.push(glommio::spawn_local(async move {
                    // 4 MB to a peer that never reads: sends stay in flight.
                    let chunk = vec![b'y'; 64 * 1024];
                    for _ in 0..64 {
                        let r = c.write_all(&chunk, Duration::from_millis(200)).await;
                        if r.is_err() {
                            break;
                        }
                    }
                    if i % 2 == 1 {
                        // Wait to read from a peer that has sent nothing.
                        let r = c.readable(Instant::now() + Duration::from_millis(50)).await;
                        assert!(r.is_err(), "timed out as expected");
                    }
                    drop(c);
                }));
            }
            for t in tasks {
                t.await;
            }
            let _ = tx.send(());
            clients.join().unwrap();
            let st = settled().await;
            let deadline = Instant::now() + Duration::from_secs(15);
            assert_eq!(sockets.len(), conns, "every accepted socket's inode read");
            while fds_of(&sockets) > 0 && Instant::now() < deadline {
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
            (st, 0, fds_of(&sockets))
        })
    }

    /// Backpressure both ways: peers that send 2 MB each while the server does not read, and
    /// that do not read while the server sends them 16 MB each (more than loopback socket
    /// buffers hold). Returns the stats seen while both were blocked; every byte then has to
    /// arrive intact.
    fn backpressure(conns: usize) -> glommio::net::LeanStats {
        const SEND: usize = 2 << 20;
        const DOWN: usize = 16 << 20;
        on_executor(128, move |l, addr| async move {
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let clients = std::thread::spawn(move || {
                let socks: Vec<_> = (0..conns)
                    .map(|_| {
                        let s = std::net::TcpStream::connect(addr).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                        let mut w = s.try_clone().unwrap();
                        let writer = std::thread::spawn(move || {
                            let data: Vec<u8> = (0..SEND).map(|j| (j % 251) as u8).collect();
                            w.write_all(&data).unwrap();
                        });
                        (s, writer)
                    })
                    .collect();
                // Read nothing until the server has looked at its memory.
                let _ = go_rx.recv_timeout(Duration::from_secs(20));
                for (mut s, writer) in socks {
                    let mut sink = vec![0u8; 64 * 1024];
                    let mut got = 0;
                    while got < DOWN {
                        let n = s.read(&mut sink).unwrap();
                        assert!(n > 0, "early EOF");
                        got += n;
                    }
                    writer.join().unwrap();
                }
            });
            let mut conns_v = Vec::new();
            for _ in 0..conns {
                conns_v.push(l.accept().await.unwrap());
            }
            // Each server task sends 2 MB to a peer that is not reading yet.
            let mut senders = Vec::new();
            for c in conns_v.iter_mut() {
                let c: *mut Conn = c;
                senders.push(glommio::spawn_local(async move {
                    // SAFETY: every task is awaited below, before `conns_v` is used again.
                    let c = unsafe { &mut *c };
                    let chunk = vec![7u8; 64 * 1024];
                    for _ in 0..DOWN / chunk.len() {
                        c.write_all(&chunk, Duration::from_secs(20)).await.unwrap();
                    }
                    c.shutdown_write().await.unwrap();
                }));
            }
            glommio::timer::sleep(Duration::from_millis(300)).await;
            let blocked = lean_stats().expect("lean path");
            go_tx.send(()).unwrap();
            for t in senders {
                t.await;
            }
            // Now read what the peers sent: all of it, in order.
            for c in conns_v.iter_mut() {
                let mut buf = vec![0u8; 16 * 1024];
                let mut got = 0usize;
                while got < SEND {
                    let n = c
                        .read(&mut buf, Instant::now() + Duration::from_secs(20))
                        .await
                        .unwrap();
                    assert!(n > 0, "early EOF at {got}");
                    assert!(
                        buf[..n]
                            .iter()
                            .enumerate()
                            .all(|(i, b)| *b == ((got + i) % 251) as u8),
                        "bytes damaged at {got}"
                    );
                    got += n;
                }
            }
            drop(conns_v);
            clients.join().unwrap();
            blocked
        })
    }

    /// `splice_to` from an "origin" peer that sends `total` bytes of a pattern to a "client"
    /// peer that reads them slowly, in steps of at most `step` bytes (not a divisor of the
    /// ring's buffer size, so buffers are left partly moved). Returns the most ring buffers
    /// the source held between steps and the stats once everything settled. With `cut`, the
    /// server drops both connections after `cut` bytes, a partly moved buffer still queued.
    fn splice(total: usize, step: usize, cut: Option<usize>) -> (usize, glommio::net::LeanStats) {
        on_executor(128, move |l, addr| async move {
            let origin = std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let data: Vec<u8> = (0..total).map(|j| (j % 253) as u8).collect();
                // The server may cut the connection: then the write fails, which is fine.
                let _ = s.write_all(&data);
                let mut end = [0u8; 1];
                let _ = s.read(&mut end);
            });
            let mut src = l.accept().await.unwrap();
            let client = std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut buf = vec![0u8; 32 * 1024];
                let mut got = 0usize;
                loop {
                    let n = s.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    assert!(
                        buf[..n]
                            .iter()
                            .enumerate()
                            .all(|(i, b)| *b == ((got + i) % 253) as u8),
                        "bytes damaged at {got}"
                    );
                    got += n;
                    // A slow reader: the server's send queue fills and it has to wait.
                    std::thread::sleep(Duration::from_micros(300));
                }
                got
            });
            let mut dst = l.accept().await.unwrap();
            assert!(src.can_splice_to(&dst), "both lean");
            let mut moved = 0usize;
            let mut held_max = 0usize;
            let limit = cut.unwrap_or(total);
            while moved < limit {
                let r = src
                    .splice_to(
                        &mut dst,
                        step.min(limit - moved),
                        Instant::now() + Duration::from_secs(10),
                        Duration::from_secs(10),
                    )
                    .await
                    .unwrap();
                match r {
                    Splice::Moved(n) => {
                        assert!(n > 0 && n <= step, "moved {n} of at most {step}");
                        moved += n;
                    }
                    // The ring is large enough here; a dry ring would say `Copy`.
                    Splice::Copy => panic!("unexpected copy step"),
                }
                let st = lean_stats().expect("lean path");
                held_max = held_max.max(st.buffers - st.buffers_free);
            }
            if cut.is_none() {
                dst.shutdown_write().await.unwrap();
            }
            drop(src);
            drop(dst);
            // The executor has to keep running while the peers finish: it closes the sockets.
            while !(client.is_finished() && origin.is_finished()) {
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            let got = client.join().unwrap();
            origin.join().unwrap();
            match cut {
                None => assert_eq!(got, total, "every byte arrived"),
                Some(c) => assert!(got <= c, "{got} bytes arrived of {c} moved"),
            }
            (held_max, settled().await)
        })
    }

    #[test]
    fn spliced_bodies_arrive_intact_and_every_ring_buffer_goes_back_once() {
        // 4 MiB through a slow reader in steps that leave buffers partly moved. A buffer
        // lost shows as `buffers_free < buffers`; one returned twice trips the ring's
        // ownership check (debug builds) in glommio's `put_buf`.
        let (held, st) = splice(4 << 20, 10_007, None);
        assert_eq!((st.open, st.closing), (0, 0), "{st:?}");
        assert_eq!(st.buffers_free, st.buffers, "{st:?}");
        // A slow destination does not make the source hold more than its receive limit
        // (8 buffers, a few more on kernels that pause it late).
        assert!(held <= 12, "{held} ring buffers held by one source");

        // Dropped mid-body, with a partly moved buffer still queued on the source.
        let (_, st) = splice(2 << 20, 5_000, Some(777_777));
        assert_eq!((st.open, st.closing), (0, 0), "{st:?}");
        assert_eq!(st.buffers_free, st.buffers, "{st:?}");
    }

    #[test]
    fn the_socket_path_is_lean_by_default_poll_on_request_and_nothing_else() {
        use std::ffi::OsStr;
        assert_eq!(SocketPath::parse(None), Ok(SocketPath::Lean));
        assert_eq!(
            SocketPath::parse(Some(OsStr::new("lean"))),
            Ok(SocketPath::Lean)
        );
        assert_eq!(
            SocketPath::parse(Some(OsStr::new("poll"))),
            Ok(SocketPath::Poll)
        );
        for bad in ["", "POLL", "uring", "poll "] {
            let e = SocketPath::parse(Some(OsStr::new(bad))).expect_err(bad);
            assert!(
                e.contains(&format!("{:?}", bad)) && e.contains("`lean`") && e.contains("`poll`"),
                "{e}"
            );
        }
    }

    #[test]
    fn slow_peers_meet_bounded_memory() {
        let conns = 4;
        let st = backpressure(conns);
        // Sends: each connection queues at most the limit (256 KiB) plus one write.
        assert!(st.send_queued_bytes <= conns * (256 + 64) * 1024, "{st:?}");
        assert!(
            st.send_queued_bytes > 0,
            "the peers' windows filled: {st:?}"
        );
        // Receives: a connection that is not read holds a handful of ring buffers (its
        // receive is paused after 8), not its peer's 2 MB.
        let held = st.buffers - st.buffers_free;
        assert!(held <= conns * 12, "{held} ring buffers held: {st:?}");
    }

    #[test]
    fn lean_path_delivers_bytes_and_gives_every_buffer_back() {
        // Default ring: many connections, bytes intact, ring full again afterwards.
        let st = echo_counts(16, 200_000, 128);
        assert_eq!((st.open, st.closing), (0, 0), "{st:?}");
        assert_eq!(st.buffers_free, st.buffers, "{st:?}");

        // Drops with operations in flight: buffers back, descriptors closed.
        let (st, base, after) = aborts(20);
        assert_eq!((st.open, st.closing), (0, 0), "{st:?}");
        assert_eq!(st.buffers_free, st.buffers, "{st:?}");
        assert!(
            after <= base,
            "{after} descriptors still open on the dropped connections' sockets"
        );

        // A ring far too small for the load: receives run dry (ENOBUFS), fall back to
        // recv(2), pause and re-arm; bytes still arrive intact and in order. This executor
        // starts its lean path after the call, so it gets the small ring.
        configure_lean(4, 1024);
        let st = echo_counts(8, 100_000, 128);
        assert_eq!(st.buffers, 4, "{st:?}");
        assert!(st.starved > 0, "the small ring ran dry: {st:?}");
        assert_eq!(st.buffers_free, st.buffers, "{st:?}");
        assert_eq!((st.open, st.closing), (0, 0), "{st:?}");

        // A CQ ring of 8 entries for 32 busy sockets: multishot completions can outrun it and
        // wait in the kernel's overflow list until the reactor enters with GETEVENTS.
        configure_lean(64, 64 * 1024);
        let st = echo_counts(32, 300_000, 4);
        assert_eq!(st.buffers_free, st.buffers, "{st:?}");
    }

    /// tollgate patch 10: with incremental consumption the small receives of many sockets
    /// share ring buffers, one after another. Read back in an order other than the one they
    /// arrived in, every byte is where its chunk says, a buffer the kernel has moved on from
    /// goes back to the ring when its last chunk is read, and all of them are back at the end.
    #[test]
    fn small_receives_share_ring_buffers_and_every_buffer_goes_back() {
        const CONNS: usize = 48;
        const ROUNDS: usize = 40;
        const MSG: usize = 700;
        let (st, held_max) = on_executor(256, |l, addr| async move {
            let clients = std::thread::spawn(move || {
                let mut socks: Vec<_> = (0..CONNS)
                    .map(|_| std::net::TcpStream::connect(addr).unwrap())
                    .collect();
                for r in 0..ROUNDS {
                    for (i, s) in socks.iter_mut().enumerate() {
                        let mut msg: Vec<u8> =
                            (0..MSG).map(|j| (i * 31 + r * 7 + j) as u8).collect();
                        msg[0] = i as u8;
                        s.write_all(&msg).unwrap();
                    }
                    for s in socks.iter_mut() {
                        let mut ack = [0u8; 1];
                        s.read_exact(&mut ack).unwrap();
                    }
                }
            });
            let mut conns = Vec::new();
            for _ in 0..CONNS {
                conns.push(l.accept().await.unwrap());
            }
            let mut held_max = 0;
            let mut buf = vec![0u8; MSG];
            for r in 0..ROUNDS {
                // Last accepted first: chunks of one buffer are read out of arrival order.
                for (k, c) in conns.iter_mut().rev().enumerate() {
                    let mut got = 0;
                    while got < MSG {
                        let deadline = Instant::now() + Duration::from_secs(10);
                        let n = c.read(&mut buf[got..], deadline).await.unwrap();
                        assert!(n > 0, "early EOF");
                        got += n;
                    }
                    if k == 0 {
                        let st = lean_stats().expect("lean path");
                        held_max = held_max.max(st.buffers - st.buffers_free);
                    }
                    let i = buf[0] as usize;
                    let ok = buf[1..]
                        .iter()
                        .enumerate()
                        .all(|(j, b)| *b == (i * 31 + r * 7 + j + 1) as u8);
                    assert!(
                        ok,
                        "round {r}: connection {i}'s bytes damaged or out of order"
                    );
                }
                for c in conns.iter_mut() {
                    c.write_all(b"k", Duration::from_secs(5)).await.unwrap();
                }
            }
            // The acks go out when the reactor next runs: wait for the clients without
            // blocking it.
            while !clients.is_finished() {
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            clients.join().unwrap();
            drop(conns);
            (settled().await, held_max)
        });
        assert_eq!((st.open, st.closing), (0, 0), "{st:?}");
        assert_eq!(st.buffers_free, st.buffers, "{st:?}");
        if std::env::var_os("GLOMMIO_WHOLE_BUFFERS").is_some_and(|v| v == "1") {
            // The older kernels' ring: whole buffers, large ones split to 16 KiB.
            assert!(!st.incremental && st.buffer_size <= 16 * 1024, "{st:?}");
        }
        if st.incremental && st.buffer_size >= 16 * 1024 {
            // 48 messages of 700 bytes fit in two 64 KiB buffers; whole-buffer receives
            // would hold one buffer per connection.
            assert!(
                held_max <= 4,
                "{held_max} buffers held for {CONNS} small messages: {st:?}"
            );
        }
    }
}
