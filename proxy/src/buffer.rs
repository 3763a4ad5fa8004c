//! Connection buffers and the per-shard pool they come from. A connection's read buffer
//! (`Buf`) holds the unread bytes in `start..end` (pipelined requests and body bytes that
//! arrived with a head stay there until consumed); its storage is taken from the shard's
//! `BufPool` only when bytes are read and goes back as soon as it is empty at a request
//! boundary (`release`) or the connection ends (drop). An idle keep-alive connection, client or
//! backend, therefore holds no read buffer and no response scratch (`take_out`/`give_out`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Free buffers of one shard. Single-threaded (`Rc`, `RefCell`): a shard never shares it.
pub struct BufPool {
    size: usize,
    /// Free read buffers kept for reuse; more than `keep` are freed.
    free: RefCell<Vec<Box<[u8]>>>,
    /// Free response/request-head scratch vectors.
    outs: RefCell<Vec<Vec<u8>>>,
    keep: usize,
    /// Read buffers handed out and not yet returned (for tests and leak checks).
    lent: Cell<usize>,
}

/// Initial capacity of an `out` scratch vector; larger ones (a big head) are not kept.
const OUT_CAPACITY: usize = 4096;
const OUT_KEEP_MAX: usize = 64 * 1024;

impl BufPool {
    /// A pool of `size`-byte read buffers keeping at most `keep` free ones of each kind.
    pub fn new(size: usize, keep: usize) -> Rc<BufPool> {
        Rc::new(BufPool {
            size,
            free: RefCell::new(Vec::new()),
            outs: RefCell::new(Vec::new()),
            keep,
            lent: Cell::new(0),
        })
    }

    fn take(&self) -> Box<[u8]> {
        self.lent.set(self.lent.get() + 1);
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice())
    }

    fn give(&self, data: Box<[u8]>) {
        self.lent.set(self.lent.get() - 1);
        let mut free = self.free.borrow_mut();
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
}

pub struct Buf {
    data: Option<Box<[u8]>>,
    pool: Rc<BufPool>,
    start: usize,
    end: usize,
}

impl Buf {
    /// An empty buffer that takes its storage from `pool` on first use.
    pub fn new(pool: &Rc<BufPool>) -> Buf {
        Buf {
            data: None,
            pool: pool.clone(),
            start: 0,
            end: 0,
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
        }
    }

    /// Free space to read into (taking storage from the pool if needed), after moving unread
    /// bytes to the front when the tail is full. Empty only when the buffer is entirely unread
    /// bytes.
    #[inline]
    pub fn spare(&mut self) -> &mut [u8] {
        let pool = &self.pool;
        let data = self.data.get_or_insert_with(|| pool.take());
        if self.end == data.len() && self.start > 0 {
            data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut data[self.end..]
    }

    #[inline]
    pub fn commit(&mut self, n: usize) {
        let cap = self.data.as_ref().map_or(0, |d| d.len());
        self.end = (self.end + n).min(cap);
    }

    /// Whether unread bytes fill the whole buffer (a head that does not fit).
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
}
