//! Backend connections of one shard: a keep-alive pool per upstream (LIFO reuse, capped) whose
//! idle connections close on their own. A pooled connection holds no read buffer: it takes one
//! from the shard's `BufPool` when its response arrives.
//!
//! Idle connections are closed, without waiting for the next request, when
//! - their `upstream_idle_timeout` passes: one reaper task per shard sleeps until the earliest
//!   expiry (the oldest entry: every entry gets the same timeout, so each upstream's list is
//!   ordered by expiry, newest at the back for reuse, oldest at the front for expiry);
//! - the backend closes them or sends anything (EOF, RST, stray bytes): each parked connection
//!   has the reaper's readiness waker registered through `Conn::poll_idle` (the lean path's
//!   armed multishot receive, or the poll path's one-shot `POLL_ADD`: no syscall, no buffer,
//!   no task per connection). A wake sets a flag and wakes the reaper, which then checks the
//!   idle connections once and closes those that became readable, however many closed at once.
//!
//! Per request this costs O(1) and no allocation: `put` registers the waker (a reference-count
//! increment), `take` re-checks readiness with a no-op waker, which also unregisters the
//! reaper's, so a connection in use never wakes it. A connection that became readable while
//! parked is never handed out. All of it is per shard, on the shard's thread: no locks.
//!
//! `https://` backends (`Secure`, one per TLS upstream per shard): a new connection does its
//! TLS handshake in `connect` (SNI = the URI's host, verified against the integration's
//! `ca_file` or the bundled web roots); pooled, it is reused like a plain one, so the
//! handshake is paid once per pooled connection, not per request.

use crate::buffer::{Buf, BufPool};
use crate::net::{self, Conn};
use glommio::timer::Timer;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use tollgate_core::tls::BackendTls;

pub struct UpConn {
    pub conn: Conn,
    pub buf: Buf,
    /// Served at least one response before (a failure may mean the backend closed it while
    /// idle, which is worth one retry).
    pub reused: bool,
}

/// Idle entries per upstream with their expiry: pure bookkeeping, no I/O.
struct IdleSet<T> {
    /// Per upstream: oldest at the front, newest at the back.
    lists: Vec<VecDeque<(T, Instant)>>,
    cap: usize,
    timeout: Duration,
    len: usize,
}

impl<T> IdleSet<T> {
    fn new(upstreams: usize, cap: usize, timeout: Duration) -> IdleSet<T> {
        IdleSet {
            lists: (0..upstreams).map(|_| VecDeque::new()).collect(),
            cap,
            timeout,
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Entries parked for `upstream`.
    fn len_of(&self, upstream: usize) -> usize {
        self.lists.get(upstream).map_or(0, VecDeque::len)
    }

    /// Whether `upstream` has room for one more idle entry.
    fn has_room(&self, upstream: usize) -> bool {
        self.lists.get(upstream).is_some_and(|l| l.len() < self.cap)
    }

    /// Parks `item` until `now + timeout`; gives it back if there is no room.
    fn push(&mut self, upstream: usize, item: T, now: Instant) -> Result<(), T> {
        match self.lists.get_mut(upstream) {
            Some(l) if l.len() < self.cap => {
                l.push_back((item, now + self.timeout));
                self.len += 1;
                Ok(())
            }
            _ => Err(item),
        }
    }

    /// The newest entry of `upstream` that has not expired at `now`. Expired entries found on
    /// the way are dropped: if the newest has expired, so has every older one.
    fn pop(&mut self, upstream: usize, now: Instant) -> Option<T> {
        let l = self.lists.get_mut(upstream)?;
        let (item, expires) = l.pop_back()?;
        self.len -= 1;
        if expires > now {
            return Some(item);
        }
        drop(item);
        self.len -= l.len();
        l.clear();
        None
    }

    /// Drops every entry whose expiry is at or before `now`; returns how many.
    fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        for l in &mut self.lists {
            while l.front().is_some_and(|(_, e)| *e <= now) {
                l.pop_front();
                n += 1;
            }
        }
        self.len -= n;
        n
    }

    /// When the next entry expires (`None`: nothing is parked).
    fn next_expiry(&self) -> Option<Instant> {
        self.lists
            .iter()
            .filter_map(|l| l.front().map(|(_, e)| *e))
            .min()
    }

    /// Keeps the entries for which `keep` is true; returns how many were dropped.
    fn retain(&mut self, mut keep: impl FnMut(&mut T) -> bool) -> usize {
        let before = self.len;
        for l in &mut self.lists {
            l.retain_mut(|(item, _)| keep(item));
        }
        self.len = self.lists.iter().map(VecDeque::len).sum();
        before - self.len
    }
}

/// Woken by a parked connection that became readable: notes it and wakes the reaper task.
struct Readiness {
    fired: AtomicBool,
    /// The reaper task's waker, set on its first poll.
    reaper: OnceLock<Waker>,
}

impl Wake for Readiness {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Relaxed);
        if let Some(w) = self.reaper.get() {
            w.wake_by_ref();
        }
    }
}

/// A waker that does nothing: polling with it checks readiness and unregisters the reaper.
struct NoWake;

impl Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

/// What the pools and their reaper task share.
struct Shared {
    idle: RefCell<IdleSet<UpConn>>,
    /// Idle connections per upstream, published for the metrics scrape (only this shard
    /// writes them).
    gauges: Arc<[AtomicU64]>,
    readiness: Arc<Readiness>,
    /// `readiness` as a waker, registered with every parked connection.
    waker: Waker,
}

impl Shared {
    /// Stores `upstream`'s idle count in its gauge (a relaxed store on this shard's line).
    fn publish(&self, idle: &IdleSet<UpConn>, upstream: usize) {
        if let Some(g) = self.gauges.get(upstream) {
            g.store(idle.len_of(upstream) as u64, Ordering::Relaxed);
        }
    }

    fn publish_all(&self, idle: &IdleSet<UpConn>) {
        for u in 0..self.gauges.len() {
            self.publish(idle, u);
        }
    }

    fn wake_reaper(&self) {
        if let Some(w) = self.readiness.reaper.get() {
            w.wake_by_ref();
        }
    }
}

pub struct Pools {
    shared: Rc<Shared>,
    noop: Waker,
    reaper_started: bool,
}

impl Pools {
    /// Pools for `upstreams` backends, each holding at most `cap` idle connections for
    /// `idle_timeout`; `gauges` (one per upstream, or none) get the idle counts.
    pub fn new(
        upstreams: usize,
        cap: usize,
        idle_timeout: Duration,
        gauges: Arc<[AtomicU64]>,
    ) -> Pools {
        let readiness = Arc::new(Readiness {
            fired: AtomicBool::new(false),
            reaper: OnceLock::new(),
        });
        Pools {
            shared: Rc::new(Shared {
                idle: RefCell::new(IdleSet::new(upstreams, cap, idle_timeout)),
                gauges,
                waker: Waker::from(readiness.clone()),
                readiness,
            }),
            noop: Waker::from(Arc::new(NoWake)),
            reaper_started: false,
        }
    }

    /// The most recently used idle connection to `upstream` that has not expired and has not
    /// become readable while parked.
    pub fn take(&mut self, upstream: usize, now: Instant) -> Option<UpConn> {
        let mut idle = self.shared.idle.borrow_mut();
        let mut cx = Context::from_waker(&self.noop);
        let mut found = None;
        while let Some(mut c) = idle.pop(upstream, now) {
            if c.conn.poll_idle(&mut cx).is_pending() {
                c.reused = true;
                found = Some(c);
                break;
            }
            // EOF, a reset or stray bytes while parked: closed here (dropped).
        }
        self.shared.publish(&idle, upstream);
        found
    }

    /// Returns a connection whose last exchange ended cleanly. It is closed instead if the
    /// pool is full, bytes are left in its buffer, or it is readable already.
    pub fn put(&mut self, upstream: usize, mut c: UpConn, now: Instant) {
        let mut idle = self.shared.idle.borrow_mut();
        if !idle.has_room(upstream) || !c.buf.is_empty() {
            return;
        }
        c.buf.release();
        if c.conn
            .poll_idle(&mut Context::from_waker(&self.shared.waker))
            .is_ready()
        {
            return;
        }
        let was_empty = idle.len() == 0;
        let parked = idle.push(upstream, c, now).is_ok();
        self.shared.publish(&idle, upstream);
        if parked && was_empty {
            drop(idle);
            // The reaper has no expiry to wait for while nothing is parked: start it, or
            // wake it so that it sets its timer.
            if self.reaper_started {
                self.shared.wake_reaper();
            } else {
                self.reaper_started = true;
                glommio::spawn_local(reap(Rc::downgrade(&self.shared))).detach();
            }
        }
    }

    /// Idle connections parked right now (all upstreams).
    #[cfg(test)]
    pub fn idle(&self) -> usize {
        self.shared.idle.borrow().len()
    }
}

impl Drop for Pools {
    fn drop(&mut self) {
        // The reaper holds only a weak reference: woken, it finds the pools gone and ends.
        self.shared.wake_reaper();
    }
}

/// The shard's reaper: closes parked connections that became readable (when `Readiness`
/// fired) and those whose idle timeout passed, then sleeps until the next expiry or wake.
async fn reap(shared: Weak<Shared>) {
    let mut timer: Option<(Instant, Timer)> = None;
    poll_fn(|cx| {
        let Some(sh) = shared.upgrade() else {
            return Poll::Ready(());
        };
        if sh.readiness.reaper.get().is_none() {
            let _ = sh.readiness.reaper.set(cx.waker().clone());
        }
        let mut now = Instant::now();
        loop {
            let mut idle = sh.idle.borrow_mut();
            if sh.readiness.fired.swap(false, Ordering::Relaxed) {
                let mut wcx = Context::from_waker(&sh.waker);
                idle.retain(|c| c.conn.poll_idle(&mut wcx).is_pending());
            }
            idle.expire(now);
            sh.publish_all(&idle);
            let next = idle.next_expiry();
            drop(idle);
            let Some(at) = next else {
                timer = None;
                return Poll::Pending;
            };
            let t = match &mut timer {
                Some((when, t)) if *when == at => t,
                _ => {
                    let t = Timer::new(at.saturating_duration_since(now));
                    &mut timer.insert((at, t)).1
                }
            };
            match Pin::new(t).poll(cx) {
                // The timer fires at or after `at`: everything due by then goes now.
                Poll::Ready(_) => {
                    timer = None;
                    now = Instant::now().max(at);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

/// What a shard needs to open TLS connections to one https upstream.
pub struct Secure {
    config: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
}

/// An upstream's TLS slot: `None` for a plain backend, else its client state or the reason
/// it could not be built (then every connection to it fails, never falls back to plain).
pub type SecureSlot = Option<Result<Secure, String>>;

/// One slot per upstream (pass each upstream's TLS settings, in `Gateway::upstreams` order).
pub fn secure<'a>(upstreams: impl Iterator<Item = Option<&'a BackendTls>>) -> Vec<SecureSlot> {
    upstreams
        .map(|tls| {
            let tls = tls?;
            let name = rustls::pki_types::ServerName::try_from(tls.server_name.to_string())
                .map_err(|e| format!("{}: {e}", tls.server_name));
            let config = net::client_config(tls.ca.as_deref()).map_err(|e| e.to_string());
            Some(name.and_then(|name| {
                Ok(Secure {
                    config: config?,
                    name,
                })
            }))
        })
        .collect()
}

pub async fn connect(
    secure: Option<&Result<Secure, String>>,
    addr: SocketAddr,
    timeout: Duration,
    bufs: &Rc<BufPool>,
) -> io::Result<UpConn> {
    let conn = match secure {
        Some(Ok(s)) => net::connect_tls(addr, timeout, s.config.clone(), s.name.clone()).await?,
        Some(Err(e)) => return Err(io::Error::other(e.clone())),
        None => net::connect(addr, timeout).await?,
    };
    Ok(UpConn {
        conn,
        buf: Buf::new(bufs),
        reused: false,
    })
}

#[cfg(test)]
mod tests {
    //! The bookkeeping (LIFO reuse, cap, expiry order, next expiry, retain) with plain values,
    //! then the pools on a real executor against loopback backends: connections close when
    //! their timeout passes and when the backend closes them, with no request to trigger it.

    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn reuse_is_newest_first_and_capped() {
        let now = t0();
        let mut s = IdleSet::new(2, 2, Duration::from_secs(10));
        assert!(s.push(0, 'a', now).is_ok());
        assert!(s.push(0, 'b', now + Duration::from_secs(1)).is_ok());
        assert_eq!(s.push(0, 'c', now), Err('c'), "third entry over the cap");
        assert!(s.push(1, 'x', now).is_ok(), "the cap is per upstream");
        assert_eq!(s.push(7, 'z', now), Err('z'), "unknown upstream");
        assert_eq!(s.len(), 3);
        let later = now + Duration::from_secs(2);
        assert_eq!(s.pop(0, later), Some('b'));
        assert_eq!(s.pop(0, later), Some('a'));
        assert_eq!(s.pop(0, later), None);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn an_expired_newest_entry_empties_its_list() {
        let now = t0();
        let mut s = IdleSet::new(2, 8, Duration::from_secs(10));
        for i in 0..3 {
            s.push(0, i, now + Duration::from_secs(i)).unwrap();
        }
        s.push(1, 9, now + Duration::from_secs(5)).unwrap();
        // At +12 s, entries 0..=2 (expiring at +10..=+12) are all gone.
        assert_eq!(s.pop(0, now + Duration::from_secs(12)), None);
        assert_eq!(s.len(), 1, "only the other upstream's entry is left");
        assert_eq!(s.pop(1, now + Duration::from_secs(12)), Some(9));
    }

    #[test]
    fn expiry_takes_the_oldest_and_reports_the_next() {
        let now = t0();
        let timeout = Duration::from_secs(10);
        let mut s = IdleSet::new(2, 8, timeout);
        assert_eq!(s.next_expiry(), None);
        s.push(0, 'a', now).unwrap();
        s.push(1, 'b', now + Duration::from_secs(1)).unwrap();
        s.push(0, 'c', now + Duration::from_secs(3)).unwrap();
        assert_eq!(s.next_expiry(), Some(now + timeout));
        assert_eq!(s.expire(now + Duration::from_millis(9_999)), 0);
        assert_eq!(s.expire(now + Duration::from_secs(11)), 2, "a and b");
        assert_eq!(s.next_expiry(), Some(now + Duration::from_secs(13)));
        assert_eq!(s.len(), 1);
        assert_eq!(s.pop(0, now + Duration::from_secs(12)), Some('c'));
        assert_eq!(s.next_expiry(), None);
    }

    #[test]
    fn retain_drops_what_became_unusable_and_keeps_counts() {
        let now = t0();
        let mut s = IdleSet::new(2, 8, Duration::from_secs(10));
        for i in 0..6 {
            s.push(i % 2, i, now).unwrap();
        }
        assert_eq!(s.retain(|v| *v % 3 != 0), 2, "0 and 3");
        assert_eq!(s.len(), 4);
        assert_eq!(s.pop(1, now), Some(5));
        assert_eq!(s.pop(1, now), Some(1));
        assert_eq!(s.pop(0, now), Some(4));
        assert_eq!(s.pop(0, now), Some(2));
        assert_eq!(s.len(), 0);
    }

    /// A loopback backend that accepts `n` connections, closes the first `close_first` of
    /// them when told to, and reports how many of the others it saw closed by their peer
    /// (EOF), each within `limit`.
    fn backend(
        n: usize,
        close_first: usize,
        limit: Duration,
    ) -> (
        SocketAddr,
        std::sync::mpsc::Sender<()>,
        std::thread::JoinHandle<usize>,
    ) {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            let mut socks: Vec<_> = (0..n)
                .filter_map(|_| l.accept().ok())
                .map(|a| a.0)
                .collect();
            let _ = rx.recv_timeout(limit);
            socks.drain(..close_first.min(socks.len()));
            let until = Instant::now() + limit;
            socks
                .into_iter()
                .filter(|mut s| {
                    let left = until.saturating_duration_since(Instant::now());
                    let _ = s.set_read_timeout(Some(left.max(Duration::from_millis(1))));
                    matches!(s.read(&mut [0u8; 16]), Ok(0))
                })
                .count()
        });
        (addr, tx, h)
    }

    /// Polls every 10 ms (at most `limit`) until `pools` holds `want` idle connections.
    async fn idle_becomes(pools: &Pools, want: usize, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while pools.idle() != want {
            if Instant::now() > until {
                return false;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    #[test]
    fn parked_connections_close_when_the_backend_does_and_when_they_expire() {
        for path in [net::SocketPath::Lean, net::SocketPath::Poll] {
            let (addr, close, backend) = backend(4, 2, Duration::from_secs(20));
            // Generous: the backend thread and this executor share a busy CI machine.
            let timeout = Duration::from_millis(3000);
            let (early, late) = glommio::LocalExecutorBuilder::default()
                .make()
                .expect("executor (ulimit -l?)")
                .run(async move {
                    let bufs = BufPool::new(1024, 4);
                    let gauges: Arc<[AtomicU64]> = Arc::from([AtomicU64::new(0)]);
                    let gauge = || gauges[0].load(Ordering::Relaxed);
                    let mut pools = Pools::new(1, 8, timeout, gauges.clone());
                    for _ in 0..4 {
                        let conn = net::connect_on(path, addr, Duration::from_secs(5))
                            .await
                            .expect("connect");
                        let c = UpConn {
                            conn,
                            buf: Buf::new(&bufs),
                            reused: false,
                        };
                        pools.put(0, c, Instant::now());
                    }
                    let parked = Instant::now();
                    assert_eq!(pools.idle(), 4, "{path:?}");
                    assert_eq!(gauge(), 4, "{path:?}: the scrape's gauge");
                    // The backend closes two: they go long before the idle timeout.
                    close.send(()).expect("backend");
                    let early = idle_becomes(&pools, 2, Duration::from_millis(2500)).await;
                    let early = early && parked.elapsed() < timeout;
                    if early {
                        assert_eq!(gauge(), 2, "{path:?}: gauge after the backend closed");
                    }
                    // The other two go when the timeout passes, with nothing taken meanwhile.
                    let late = idle_becomes(&pools, 0, timeout + Duration::from_secs(3)).await;
                    assert!(parked.elapsed() >= timeout, "{path:?}: expired early");
                    assert!(pools.take(0, Instant::now()).is_none());
                    assert_eq!(gauge(), 0, "{path:?}: gauge after expiry");
                    // Before this executor ends, or the backend never sees the EOFs it counts.
                    net::dropped_sockets_closed(Duration::from_secs(5)).await;
                    (early, late)
                });
            assert!(early, "{path:?}: closed by the backend, still pooled");
            assert!(late, "{path:?}: idle timeout passed, still pooled");
            assert_eq!(backend.join().expect("backend"), 2, "{path:?}: EOFs seen");
        }
    }
}
