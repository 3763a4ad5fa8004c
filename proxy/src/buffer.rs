//! Connection buffers and the per-shard pool they come from. A connection's read buffer
//! (`Buf`) holds the unread bytes in `start..end` (pipelined requests and body bytes that
//! arrived with a head stay there until consumed); its storage is taken from the shard's
//! `BufPool` only when bytes are read and goes back as soon as it is empty at a request
//! boundary (`release`) or the connection ends (drop). An idle keep-alive connection, client or
//! backend, therefore holds no read buffer and no response scratch (`take_out`/`give_out`).
//!
//! Storage comes in two sizes: a connection starts with a small buffer (`SMALL_BUF`, enough
//! for a request head and a small body in one read) and moves to a full-size one
//! (`read_buffer_bytes`, at least a maximal head) only when a read filled the small one, or
//! unread bytes fill it: a client that trickles a partial head holds a few KiB, not 64, and a
//! large body still moves with full-size reads from its second read on.
//!
//! The pool also lends the storage of a connection's request future (`BufPool::pooled`): a
//! connection task keeps only a small future while it waits for bytes and runs the large
//! request state machine in a block taken from here, so parked connections do not carry it.
//!
//! After a burst (`conn_opened` / `conn_closed`: the shard's connections fell to half a peak
//! of at least `TRIM_PEAK`), `trim` drops the free lists to a few blocks and hands free heap
//! pages back to the system (`malloc_trim`), so RSS comes back instead of staying at the peak.
//! `Shard::trim_later` schedules it, after the socket layer's and the executor's own trims.

use std::alloc::Layout;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::rc::Rc;
use std::task::{Context, Poll};

/// Size of the first buffer a connection takes (a request head, or a small body with it).
pub const SMALL_BUF: usize = 4096;

/// Connections a shard must have reached before their closing counts as a burst to trim after.
pub const TRIM_PEAK: usize = 1024;
/// Free blocks of each kind a trim keeps: a few, enough for the next requests without an
/// allocation (16 kept 16 full-size read buffers, about 1 MiB with the default 64 KiB, and RSS
/// stayed 13 % above its start after a 10,000-connection burst; measured with the bench's
/// `memory` scenario).
const TRIM_KEEP: usize = 2;

/// Free buffers of one shard. Single-threaded (`Rc`, `RefCell`): a shard never shares it.
pub struct BufPool {
    /// Full-size buffers: `read_buffer_bytes`, at least a maximal head.
    size: usize,
    /// Small buffers (at most `size`).
    small: usize,
    /// Free full-size read buffers kept for reuse; more than `keep` are freed.
    free: RefCell<Vec<Box<[u8]>>>,
    /// Free small read buffers.
    free_small: RefCell<Vec<Box<[u8]>>>,
    /// Free response/request-head scratch vectors.
    outs: RefCell<Vec<Vec<u8>>>,
    /// Free blocks for `pooled` futures, all of `block`'s layout.
    blocks: RefCell<Vec<NonNull<u8>>>,
    block: Cell<Option<Layout>>,
    keep: usize,
    /// Read buffers handed out and not yet returned (for tests and leak checks).
    lent: Cell<usize>,
    /// Open connections of the shard, and their peak since the last trim.
    conns: Cell<usize>,
    peak: Cell<usize>,
}

/// Initial capacity of an `out` scratch vector; larger ones (a big head) are not kept.
const OUT_CAPACITY: usize = 4096;
const OUT_KEEP_MAX: usize = 64 * 1024;

impl BufPool {
    /// A pool of `size`-byte read buffers (and `SMALL_BUF`-byte first buffers) keeping at most
    /// `keep` free ones of each kind.
    pub fn new(size: usize, keep: usize) -> Rc<BufPool> {
        Rc::new(BufPool {
            size,
            small: SMALL_BUF.min(size),
            free: RefCell::new(Vec::new()),
            free_small: RefCell::new(Vec::new()),
            outs: RefCell::new(Vec::new()),
            blocks: RefCell::new(Vec::new()),
            block: Cell::new(None),
            keep,
            lent: Cell::new(0),
            conns: Cell::new(0),
            peak: Cell::new(0),
        })
    }

    fn list(&self, len: usize) -> &RefCell<Vec<Box<[u8]>>> {
        if len == self.size {
            &self.free
        } else {
            &self.free_small
        }
    }

    fn take(&self, len: usize) -> Box<[u8]> {
        self.lent.set(self.lent.get() + 1);
        self.list(len)
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0u8; len].into_boxed_slice())
    }

    fn give(&self, data: Box<[u8]>) {
        self.lent.set(self.lent.get() - 1);
        let mut free = self.list(data.len()).borrow_mut();
        if free.len() < self.keep {
            free.push(data);
        }
    }

    /// Read buffers currently held by connections.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn lent(&self) -> usize {
        self.lent.get()
    }

    /// Puts a pooled scratch vector into `out` if it has none.
    pub fn take_out(&self, out: &mut Vec<u8>) {
        if out.capacity() == 0 {
            *out = self
                .outs
                .borrow_mut()
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(OUT_CAPACITY));
        }
    }

    /// Moves `out`'s allocation back to the pool, leaving `out` empty and unallocated.
    pub fn give_out(&self, out: &mut Vec<u8>) {
        let mut v = std::mem::take(out);
        let mut outs = self.outs.borrow_mut();
        if v.capacity() > 0 && v.capacity() <= OUT_KEEP_MAX && outs.len() < self.keep {
            v.clear();
            outs.push(v);
        }
    }

    /// Runs `f` from a block of this pool instead of inside the caller's future: the caller
    /// holds a pointer while it awaits, and the block comes back to the pool (not to the
    /// allocator) when the future is done. One future type per pool keeps its blocks (the
    /// first layout seen); another layout is allocated and freed each time.
    /// `make` builds the future straight into the block (no copy of the whole state through
    /// the stack, where the compiler can).
    #[inline(always)]
    pub fn pooled<F: Future>(&self, make: impl FnOnce() -> F) -> Pooled<'_, F> {
        let layout = Layout::new::<F>();
        let ptr = if layout.size() == 0 {
            NonNull::<F>::dangling()
        } else {
            let reuse = match self.block.get() {
                Some(l) => l == layout,
                None => {
                    self.block.set(Some(layout));
                    true
                }
            };
            let block = if reuse {
                self.blocks.borrow_mut().pop()
            } else {
                None
            };
            match block {
                Some(b) => b.cast::<F>(),
                None => {
                    // SAFETY: `layout` has a non-zero size.
                    let p = unsafe { std::alloc::alloc(layout) };
                    match NonNull::new(p) {
                        Some(p) => p.cast::<F>(),
                        None => std::alloc::handle_alloc_error(layout),
                    }
                }
            }
        };
        // SAFETY: `ptr` is valid for writes of an `F` (allocated with its layout) and unused.
        unsafe { ptr.as_ptr().write(make()) };
        Pooled { ptr, pool: self }
    }

    fn give_block(&self, p: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        let mut blocks = self.blocks.borrow_mut();
        if self.block.get() == Some(layout) && blocks.len() < self.keep {
            blocks.push(p);
        } else {
            // SAFETY: `p` was allocated with `layout` by `pooled`.
            unsafe { std::alloc::dealloc(p.as_ptr(), layout) };
        }
    }

    /// Counts a connection of this shard opening.
    pub fn conn_opened(&self) {
        let n = self.conns.get() + 1;
        self.conns.set(n);
        if n > self.peak.get() {
            self.peak.set(n);
        }
    }

    /// Counts a connection closing; true when this ends a burst that is worth a `trim` (the
    /// connections fell to half a peak of at least `TRIM_PEAK`). The peak then starts over.
    pub fn conn_closed(&self) -> bool {
        let n = self.conns.get().saturating_sub(1);
        self.conns.set(n);
        let peak = self.peak.get();
        if peak >= TRIM_PEAK && n <= peak / 2 {
            self.peak.set(n);
            return true;
        }
        false
    }

    /// Frees what a burst left in the free lists (beyond `TRIM_KEEP` of each kind), then asks
    /// the allocator to return free heap pages to the system. Returns the blocks freed.
    pub fn trim(&self) -> usize {
        let mut freed = 0;
        for list in [&self.free, &self.free_small] {
            let mut l = list.borrow_mut();
            freed += l.len().saturating_sub(TRIM_KEEP);
            l.truncate(TRIM_KEEP);
            l.shrink_to_fit();
        }
        {
            let mut outs = self.outs.borrow_mut();
            freed += outs.len().saturating_sub(TRIM_KEEP);
            outs.truncate(TRIM_KEEP);
            outs.shrink_to_fit();
        }
        if let Some(layout) = self.block.get() {
            let mut blocks = self.blocks.borrow_mut();
            while blocks.len() > TRIM_KEEP {
                if let Some(p) = blocks.pop() {
                    // SAFETY: every kept block was allocated with `layout`.
                    unsafe { std::alloc::dealloc(p.as_ptr(), layout) };
                    freed += 1;
                }
            }
            blocks.shrink_to_fit();
        }
        release_free_memory();
        freed
    }
}

/// Returns free heap pages to the system: glibc's `malloc_trim(0)` (every arena: it releases
/// whole free pages inside the heaps, not only at their tops). Elsewhere, nothing.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only inspects and releases the allocator's free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Drop for BufPool {
    fn drop(&mut self) {
        if let Some(layout) = self.block.get() {
            for p in self.blocks.get_mut().drain(..) {
                // SAFETY: every kept block was allocated with `layout`.
                unsafe { std::alloc::dealloc(p.as_ptr(), layout) };
            }
        }
    }
}

/// A future running in a block of a `BufPool` (see `BufPool::pooled`). It never moves once
/// written there, so polling it pinned is sound while `Pooled` itself moves freely.
pub struct Pooled<'p, F: Future> {
    ptr: NonNull<F>,
    pool: &'p BufPool,
}

impl<F: Future> Future for Pooled<'_, F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `ptr` holds a live `F` that is only dropped in place by `drop` below and is
        // never moved out: pinning it is sound.
        unsafe { Pin::new_unchecked(&mut *self.ptr.as_ptr()) }.poll(cx)
    }
}

impl<F: Future> Drop for Pooled<'_, F> {
    fn drop(&mut self) {
        // SAFETY: `ptr` holds a live `F`, dropped exactly once here; then its block is free.
        unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
        self.pool.give_block(self.ptr.cast(), Layout::new::<F>());
    }
}

pub struct Buf {
    data: Option<Box<[u8]>>,
    pool: Rc<BufPool>,
    start: usize,
    end: usize,
    /// A read filled the (small) buffer: the next `spare` moves to a full-size one.
    grow: bool,
}

impl Buf {
    /// An empty buffer that takes its storage from `pool` on first use.
    pub fn new(pool: &Rc<BufPool>) -> Buf {
        Buf {
            data: None,
            pool: pool.clone(),
            start: 0,
            end: 0,
            grow: false,
        }
    }

    /// Unread bytes.
    #[inline]
    pub fn filled(&self) -> &[u8] {
        match &self.data {
            Some(d) => &d[self.start..self.end],
            None => &[],
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    #[inline]
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Returns the storage to the pool if no unread bytes are left (else keeps it).
    #[inline]
    pub fn release(&mut self) {
        if self.is_empty() {
            if let Some(d) = self.data.take() {
                self.pool.give(d);
            }
            self.grow = false;
        }
    }

    /// Free space to read into, after moving unread bytes to the front when the tail is
    /// full. Storage is taken from the pool if needed: a small buffer first, a full-size one
    /// once a read filled the small one or its unread bytes fill it. Empty only when the
    /// buffer is entirely unread bytes at full size.
    #[inline]
    pub fn spare(&mut self) -> &mut [u8] {
        let pool = &self.pool;
        let data = self.data.get_or_insert_with(|| pool.take(pool.small));
        let len = data.len();
        if len < pool.size && (self.grow || (self.end == len && self.start == 0)) {
            self.enlarge();
        } else if self.end == len && self.start > 0 {
            data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        match &mut self.data {
            Some(d) => &mut d[self.end..],
            None => &mut [],
        }
    }

    /// Moves the unread bytes into a full-size buffer and gives the small one back.
    #[cold]
    fn enlarge(&mut self) {
        let mut big = self.pool.take(self.pool.size);
        if let Some(old) = self.data.take() {
            let n = self.end - self.start;
            big[..n].copy_from_slice(&old[self.start..self.end]);
            self.end = n;
            self.start = 0;
            self.pool.give(old);
        }
        self.grow = false;
        self.data = Some(big);
    }

    #[inline]
    pub fn commit(&mut self, n: usize) {
        let cap = self.data.as_ref().map_or(0, |d| d.len());
        self.end = (self.end + n).min(cap);
        if self.end == cap {
            self.grow = true;
        }
    }

    /// Says that a read into `spare` (not committed: the caller sent the bytes on from the
    /// buffer itself) filled it, so the next `spare` may move to a full-size buffer.
    #[inline]
    pub fn read_filled_spare(&mut self) {
        self.grow = true;
    }

    /// Whether unread bytes fill the whole buffer at full size (a head that does not fit).
    pub fn is_full(&self) -> bool {
        self.start == 0 && self.end == self.pool.size
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if let Some(d) = self.data.take() {
            self.pool.give(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn compacts_when_tail_is_full() {
        let pool = BufPool::new(8, 4);
        let mut b = Buf::new(&pool);
        b.spare()[..8].copy_from_slice(b"abcdefgh");
        b.commit(8);
        assert!(b.is_full());
        b.consume(6);
        assert_eq!(b.filled(), b"gh");
        assert_eq!(b.spare().len(), 6);
        assert_eq!(b.filled(), b"gh");
        b.consume(2);
        assert!(b.is_empty());
        assert_eq!(b.spare().len(), 8);
    }

    #[test]
    fn storage_is_taken_lazily_and_returned_when_empty_or_dropped() {
        let pool = BufPool::new(16, 4);
        let mut b = Buf::new(&pool);
        assert_eq!(pool.lent(), 0, "a new buffer holds no storage");
        assert_eq!(b.filled(), b"");
        b.spare()[..3].copy_from_slice(b"abc");
        b.commit(3);
        assert_eq!(pool.lent(), 1);
        b.release();
        assert_eq!(pool.lent(), 1, "unread bytes keep the storage");
        b.consume(3);
        b.release();
        assert_eq!(pool.lent(), 0);
        b.spare();
        let mut c = Buf::new(&pool);
        c.spare();
        assert_eq!(pool.lent(), 2);
        drop(b);
        drop(c);
        assert_eq!(pool.lent(), 0, "dropping returns storage, read or not");
        assert_eq!(pool.free.borrow().len(), 2, "and it is kept for reuse");
    }

    #[test]
    fn the_pool_keeps_at_most_keep_free_buffers() {
        let pool = BufPool::new(16, 2);
        let mut bufs: Vec<Buf> = (0..5).map(|_| Buf::new(&pool)).collect();
        for b in &mut bufs {
            b.spare();
        }
        drop(bufs);
        assert_eq!(pool.lent(), 0);
        assert_eq!(pool.free.borrow().len(), 2);
    }

    #[test]
    fn out_scratch_round_trips() {
        let pool = BufPool::new(16, 2);
        let mut out = Vec::new();
        pool.take_out(&mut out);
        assert!(out.capacity() >= OUT_CAPACITY);
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        pool.give_out(&mut out);
        assert_eq!(out.capacity(), 0);
        pool.take_out(&mut out);
        assert!(out.is_empty() && out.capacity() >= OUT_CAPACITY);
        let mut big = Vec::with_capacity(OUT_KEEP_MAX + 1);
        pool.give_out(&mut big);
        assert_eq!(pool.outs.borrow().len(), 0, "oversized scratch is freed");
    }

    /// Storage size a buffer holds now (0: none).
    fn cap(b: &Buf) -> usize {
        b.data.as_ref().map_or(0, |d| d.len())
    }

    #[test]
    fn a_trickled_head_keeps_a_small_buffer_and_a_full_read_grows_it() {
        let pool = BufPool::new(64 * 1024, 4);
        let mut b = Buf::new(&pool);
        // One byte at a time, as a slow client sends: the small buffer is enough.
        for i in 0..SMALL_BUF - 1 {
            let spare = b.spare();
            spare[0] = (i % 251) as u8;
            b.commit(1);
            assert_eq!(cap(&b), SMALL_BUF, "after {} bytes", i + 1);
        }
        // Filled: the next read goes to a full-size buffer, unread bytes moved intact.
        b.spare()[0] = ((SMALL_BUF - 1) % 251) as u8;
        b.commit(1);
        assert_eq!(b.spare().len(), 64 * 1024 - SMALL_BUF);
        assert_eq!(cap(&b), 64 * 1024);
        assert!(b
            .filled()
            .iter()
            .enumerate()
            .all(|(i, &x)| x == (i % 251) as u8));
        assert_eq!(pool.lent(), 1, "the small buffer went back");
        assert_eq!(pool.free_small.borrow().len(), 1);

        // A read that fills the small buffer (a large body): the next read is full-size
        // even though the bytes were consumed meanwhile.
        let mut c = Buf::new(&pool);
        let n = c.spare().len();
        assert_eq!(n, SMALL_BUF);
        c.commit(n);
        c.consume(n);
        assert_eq!(c.spare().len(), 64 * 1024);
        // A short read does not grow it.
        let mut d = Buf::new(&pool);
        d.spare();
        d.commit(100);
        d.consume(100);
        assert_eq!(d.spare().len(), SMALL_BUF);
        // A head filling the whole full-size buffer is `is_full`, a small one never is.
        let mut e = Buf::new(&pool);
        let n = e.spare().len();
        e.commit(n);
        assert!(!e.is_full());
        let n = e.spare().len();
        e.commit(n);
        assert!(e.is_full());
    }

    #[test]
    fn pooled_futures_reuse_their_block_and_drop_what_they_hold() {
        use std::task::Waker;
        let pool = BufPool::new(16, 2);
        let dropped = Rc::new(Cell::new(0));
        struct Guard(Rc<Cell<u32>>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        // One future type (one layout), finishing at once or never.
        async fn job(g: Guard, n: u32, finish: bool) -> u32 {
            let _g = g;
            if !finish {
                std::future::pending::<()>().await;
            }
            n * 2
        }
        let mut cx = Context::from_waker(Waker::noop());
        let run = |n: u32| {
            let mut f = pool.pooled(|| job(Guard(dropped.clone()), n, true));
            Pin::new(&mut f).poll(&mut Context::from_waker(Waker::noop()))
        };
        assert_eq!(run(3), Poll::Ready(6));
        assert_eq!(pool.blocks.borrow().len(), 1, "the block came back");
        let first = pool.blocks.borrow()[0];
        assert_eq!(run(4), Poll::Ready(8));
        assert_eq!(pool.blocks.borrow().len(), 1);
        assert_eq!(pool.blocks.borrow()[0], first, "and was reused");
        assert_eq!(dropped.get(), 2);
        // Dropped before completion: what it holds is dropped, the block comes back.
        let mut f = pool.pooled(|| job(Guard(dropped.clone()), 5, false));
        assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        assert_eq!(pool.blocks.borrow().len(), 0, "in use");
        drop(f);
        assert_eq!(dropped.get(), 3);
        assert_eq!(pool.blocks.borrow().len(), 1);
    }

    /// What a burst of connections leaves in a shard's executor comes back with the trim
    /// `Shard::trim_later` runs after it: the lean path's slot table down to the last socket
    /// still open (chunks and free ids), the timer map (each connection arms a timeout) and
    /// the run queue (they all wake at once), both far above what a quiet shard needs.
    #[test]
    fn the_trim_after_a_burst_gives_back_the_executors_tables() {
        const N: usize = 1200;
        const KEPT: usize = 3;
        let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = server.local_addr().expect("address");
        server.set_nonblocking(true).expect("non-blocking");
        let accepted = std::thread::spawn(move || {
            let (mut got, until) = (Vec::new(), Instant::now() + Duration::from_secs(20));
            while got.len() < N && Instant::now() < until {
                match server.accept() {
                    Ok((s, _)) => got.push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            got
        });
        let (held, after, freed) = glommio::LocalExecutorBuilder::default()
            .make()
            .expect("executor (ulimit -l?)")
            .run(async move {
                let mut conns = Vec::new();
                for _ in 0..N {
                    let c = crate::net::connect(addr, Duration::from_secs(5)).await;
                    conns.push(c.expect("connect"));
                }
                let timers: Vec<_> = (0..N)
                    .map(|_| glommio::spawn_local(glommio::timer::sleep(Duration::from_millis(20))))
                    .collect();
                for t in timers {
                    t.await;
                }
                let held = crate::net::lean_stats().expect("lean path");
                // The first sockets outlive the burst, as long-lived ones do.
                let rest = conns.split_off(KEPT);
                drop(rest);
                crate::net::dropped_sockets_closed(Duration::from_secs(10)).await;
                crate::net::trim();
                let freed = glommio::executor().trim();
                let after = crate::net::lean_stats().expect("lean path");
                drop(conns);
                (held, after, freed)
            });
        drop(accepted.join());
        assert!(
            held.slot_ids >= N && held.slot_chunks >= N / 256,
            "{held:?}"
        );
        assert_eq!((after.open, after.closing), (KEPT, 0), "{after:?}");
        assert_eq!((after.slot_ids, after.slot_chunks), (KEPT, 1), "{after:?}");
        // The timer map and the run queue each held room for more than N entries.
        assert!(freed >= N, "{freed} entries' worth of capacity freed");
    }

    #[test]
    fn a_burst_ending_is_reported_once_and_trim_cuts_the_free_lists() {
        let pool = BufPool::new(64 * 1024, 256);
        for _ in 0..TRIM_PEAK {
            pool.conn_opened();
        }
        let mut bufs: Vec<Buf> = (0..100).map(|_| Buf::new(&pool)).collect();
        for b in &mut bufs {
            b.spare();
        }
        drop(bufs);
        assert_eq!(pool.free_small.borrow().len(), 100);
        let reported: Vec<bool> = (0..TRIM_PEAK).map(|_| pool.conn_closed()).collect();
        assert_eq!(reported.iter().filter(|&&r| r).count(), 1, "one report");
        assert!(reported[TRIM_PEAK / 2 - 1], "when half the peak has gone");
        assert_eq!(pool.trim(), 100 - TRIM_KEEP);
        assert_eq!(pool.free_small.borrow().len(), TRIM_KEEP);
        // A small shard's connections coming and going are no burst.
        for _ in 0..10 {
            pool.conn_opened();
        }
        assert!((0..10).all(|_| !pool.conn_closed()));
    }
}
