// tollgate patch (PATCHES.md #4): the lean socket path's reactor side.
//
//! Per-executor state of the lean socket path: a provided-buffer ring registered on the
//! main io_uring ring (`IORING_REGISTER_PBUF_RING`), one slot per lean socket, and the
//! operations waiting for SQEs.
//!
//! - **Receive** is one multishot `IORING_OP_RECV` per socket with `IOSQE_BUFFER_SELECT`:
//!   the kernel picks a buffer from the ring for each chunk it delivers, and the CQE names it.
//!   The chunk sits in the socket's queue until its owner copies it out (or relays it), then
//!   the buffer goes back to the ring. An idle socket holds no buffer. Since tollgate patch 10
//!   the ring's buffers are consumed incrementally where the kernel can (Linux 6.12,
//!   `IOU_PBUF_RING_INC`): receives fill a buffer one after another, whatever socket they are
//!   for, so a small request takes a few hundred bytes of a 64 KiB buffer and a 64 KiB
//!   response one or two completions; a buffer goes back once the kernel has moved on from
//!   it and every chunk in it was read (`filling`, `parts`). Older kernels take a whole
//!   buffer per receive; there buffers larger than 16 KiB are split (`split_for_whole_buffers`).
//!   A socket whose owner does not read stops receiving after `RX_LIMIT_BYTES` (or
//!   `RX_PAUSE` chunks) and is re-armed when drained; TCP flow control holds the sender back
//!   meanwhile. On Linux >= 6.16 each receive carries that total as its limit
//!   (`IORING_RECV_MSHOT_LIM`), so the kernel itself stops it; on older kernels it is
//!   cancelled after `RX_PAUSE` chunks, which lands late (one kernel pass can take dozens of
//!   buffers), so a fast sender can hold much of the ring for a while. When the ring runs dry
//!   the kernel ends the receive with `ENOBUFS`; the owner then reads with one plain `recv(2)`
//!   into its own buffer and re-arms when the socket is empty.
//! - **Send**: bytes written are copied into the slot's own buffer and sent with one
//!   `IORING_OP_SEND` (`MSG_WAITALL`) per flush; at most one send per socket is in the
//!   kernel, writes made meanwhile are coalesced into the next one. Short sends resubmit the
//!   rest.
//! - **Close**: a slot whose owner is gone stays until every operation it had in the kernel
//!   has posted its last CQE (its receive cancelled with `ASYNC_CANCEL`, bytes already
//!   written still sent, as close(2) would, bounded by `TCP_USER_TIMEOUT`), so no buffer is
//!   freed or reused while the kernel may touch it; then the descriptor is closed and the
//!   slot reused.
//!
//! SQEs for all of it are written in one pass per reactor turn (`fill_sqes`, from the main
//! ring's submission) and go to the kernel with the reactor's one `io_uring_enter`. CQEs carry
//! `LEAN_TAG` in their user data and are routed here instead of the source map.

use std::{
    cell::RefCell,
    cmp::Reverse,
    collections::{BinaryHeap, VecDeque},
    io,
    os::unix::io::RawFd,
    rc::Rc,
    sync::atomic::{AtomicU16, AtomicUsize, Ordering},
    task::Waker,
};

use smallvec::SmallVec;

use crate::{iou, uring_sys};

/// User data of every lean SQE carries this bit; glommio's own user data never does.
pub(crate) const LEAN_TAG: u64 = 1 << 63;
const KIND_SHIFT: u32 = 32;
const K_RECV: u64 = 1;
const K_SEND: u64 = 2;
const K_CANCEL: u64 = 3;

const IORING_OP_ASYNC_CANCEL: u8 = 14;
const IORING_OP_SEND: u8 = 26;
const IORING_OP_RECV: u8 = 27;
const IOSQE_BUFFER_SELECT: u8 = 1 << 5;
const IORING_RECV_MULTISHOT: u16 = 1 << 1;
const IORING_CQE_F_BUFFER: u32 = 1 << 0;
const IORING_CQE_F_MORE: u32 = 1 << 1;
/// tollgate patch 10: the kernel will put more bytes into this CQE's buffer (incremental
/// consumption).
const IORING_CQE_F_BUF_MORE: u32 = 1 << 4;
/// tollgate patch 10: `io_uring_buf_reg.flags`: buffers are consumed incrementally
/// (Linux 6.12).
const IOU_PBUF_RING_INC: u16 = 2;
/// Buffers of a kernel without incremental consumption are split into buffers of this size
/// (tollgate patch 10).
const SPLIT_BUF_SIZE: usize = 16 * 1024;
const IORING_CQE_BUFFER_SHIFT: u32 = 16;
const IORING_REGISTER_PBUF_RING: libc::c_uint = 22;
const BGID: u16 = 0x7467; // "tg"

/// How long a released socket may take to hand its last written bytes to the peer.
const LINGER_MS: libc::c_uint = 10_000;
/// Writes at least this large (with what is queued) try a direct `sendmsg(2)` first.
const DIRECT_SEND_MIN: usize = 16 * 1024;
/// Chunks a socket may hold unread before its receive is paused.
const RX_PAUSE: usize = 8;
/// Bytes one multishot receive may take before it ends (`IORING_RECV_MSHOT_LIM`): a socket
/// whose owner does not read holds at most this much of the ring.
const RX_LIMIT_BYTES: usize = 128 * 1024;
/// Send buffers kept for reuse, and the largest one kept.
const POOL_KEEP: usize = 64;
const POOL_MAX_CAP: usize = 16 * 1024;

static CONF_COUNT: AtomicUsize = AtomicUsize::new(64);
static CONF_SIZE: AtomicUsize = AtomicUsize::new(64 * 1024);

/// Sets the provided-buffer ring of executors whose lean path starts after this call:
/// `count` buffers (rounded up to a power of two, at most 32768) of `size` bytes each.
pub(crate) fn configure(count: usize, size: usize) {
    CONF_COUNT.store(count.clamp(1, 32768).next_power_of_two(), Ordering::Relaxed);
    CONF_SIZE.store(size.clamp(512, 1 << 20), Ordering::Relaxed);
}

/// Counters of one executor's lean path.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeanStats {
    /// Buffers in the provided-buffer ring.
    pub buffers: usize,
    /// Of those, how many the kernel can fill now (the rest hold unread data).
    pub buffers_free: usize,
    /// Bytes per buffer.
    pub buffer_size: usize,
    /// tollgate patch 10: the kernel fills each buffer incrementally (many receives per
    /// buffer, Linux 6.12); false on older kernels, whose ring was split into
    /// `SPLIT_BUF_SIZE` buffers if configured larger.
    pub incremental: bool,
    /// Sockets open (owned by a `LeanStream`).
    pub open: usize,
    /// Sockets whose owner is gone, waiting for their last CQE before the descriptor closes.
    pub closing: usize,
    /// Times a receive ran out of ring buffers and fell back to `recv(2)`.
    pub starved: u64,
    /// Bytes written by owners and not yet taken by the kernel, all sockets together.
    pub send_queued_bytes: usize,
    /// tollgate patch 8: slot ids the table spans (every id below this is open, closing or
    /// free): the most sockets open at once since the last `lean_trim`, which cuts it to the
    /// last socket still open.
    pub slot_ids: usize,
    /// tollgate patch 8: slot-table chunks allocated (`SLOT_CHUNK` slots each).
    pub slot_chunks: usize,
}

/// What one `LeanStream::poll_relay_to` step did (tollgate patch 9).
#[derive(Debug)]
pub enum Relayed {
    /// This many bytes left the source: sent, or queued on the destination.
    Moved(usize),
    /// The source closed (every byte before the close was moved).
    Eof,
    /// The receive ring ran dry for the source: read it with `poll_read` (one `recv(2)`)
    /// until it is empty again.
    Starved,
    /// Receiving failed.
    SourceFailed(io::Error),
    /// Sending failed (now or earlier).
    SinkFailed(io::Error),
}

#[derive(Clone, Copy)]
struct Chunk {
    bid: u16,
    /// Where the unread bytes start and where the chunk ends, from the buffer's start (a
    /// buffer filled incrementally holds several chunks one after the other).
    off: u32,
    len: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Recv,
    Send,
    /// Cancel this socket's multishot receive (backpressure).
    Pause,
}

#[derive(Default)]
struct Slot {
    fd: RawFd,
    gone: bool,
    recv_queued: bool,
    recv_inflight: bool,
    pause_queued: bool,
    send_queued: bool,
    send_inflight: bool,
    /// Last receive ended with ENOBUFS: read with recv(2) until the socket is empty.
    starved: bool,
    eof: bool,
    rx_err: Option<i32>,
    tx_err: Option<i32>,
    rx: SmallVec<[Chunk; 4]>,
    tx_cur: Vec<u8>,
    tx_off: usize,
    tx_next: Vec<u8>,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

/// tollgate patch 7: the slot table in chunks of `SLOT_CHUNK` slots, each allocated when one
/// of its ids is first used and freed by `trim` once every slot in it is free, so a few sockets
/// that outlive a burst do not pin the whole table. Indexed like a `Vec` by slot id.
const SLOT_CHUNK: usize = 256;

#[derive(Default)]
struct Slots {
    chunks: Vec<Option<Box<[Slot]>>>,
    /// Ids handed out so far: `0..len` (free ones are in `free_slots`).
    len: usize,
}

impl Slots {
    fn free_slot() -> Slot {
        Slot {
            fd: -1,
            ..Slot::default()
        }
    }

    /// Makes sure slot `id`'s chunk exists.
    fn ensure(&mut self, id: usize) {
        let c = id / SLOT_CHUNK;
        if self.chunks.len() <= c {
            self.chunks.resize_with(c + 1, || None);
        }
        if self.chunks[c].is_none() {
            self.chunks[c] = Some((0..SLOT_CHUNK).map(|_| Self::free_slot()).collect());
        }
    }

    /// A new id after the last one handed out.
    fn push(&mut self) -> u32 {
        let id = self.len;
        self.ensure(id);
        self.len += 1;
        id as u32
    }

    fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.chunks.iter().flatten().flat_map(|c| c.iter())
    }

    /// Frees every chunk whose slots are all free; returns the slots freed.
    fn trim(&mut self) -> usize {
        let mut freed = 0;
        for c in self.chunks.iter_mut() {
            if c.as_ref().is_some_and(|c| c.iter().all(|s| s.fd == -1)) {
                *c = None;
                freed += SLOT_CHUNK;
            }
        }
        freed
    }

    /// tollgate patch 8: forgets the free ids above the last slot in use, so that neither
    /// `free` (a heap of every free id: 10,000 after a burst of 10,000 sockets) nor `chunks`
    /// keeps the burst's size. Ids handed out later start over from there (`push`). A free
    /// slot has nothing in the kernel (`maybe_free`), so no completion names a cut id.
    /// Returns the ids cut.
    fn cut_free_tail(&mut self, free: &mut BinaryHeap<Reverse<u32>>) -> usize {
        let used = (0..self.len)
            .rev()
            .find(|&id| {
                self.chunks[id / SLOT_CHUNK]
                    .as_ref()
                    .is_some_and(|c| c[id % SLOT_CHUNK].fd != -1)
            })
            .map_or(0, |id| id + 1);
        let cut = self.len - used;
        if cut > 0 {
            free.retain(|&Reverse(id)| (id as usize) < used);
            self.len = used;
            self.chunks.truncate(used.div_ceil(SLOT_CHUNK));
        }
        free.shrink_to_fit();
        self.chunks.shrink_to_fit();
        cut
    }
}

impl std::ops::Index<usize> for Slots {
    type Output = Slot;
    fn index(&self, id: usize) -> &Slot {
        match &self.chunks[id / SLOT_CHUNK] {
            Some(c) => &c[id % SLOT_CHUNK],
            None => unreachable!("lean slot {id} is free and its chunk was trimmed"),
        }
    }
}

impl std::ops::IndexMut<usize> for Slots {
    fn index_mut(&mut self, id: usize) -> &mut Slot {
        match &mut self.chunks[id / SLOT_CHUNK] {
            Some(c) => &mut c[id % SLOT_CHUNK],
            None => unreachable!("lean slot {id} is free and its chunk was trimmed"),
        }
    }
}

impl Slot {
    fn busy_in_kernel(&self) -> bool {
        self.recv_inflight || self.send_inflight
    }
    fn queued(&self) -> bool {
        self.recv_queued || self.send_queued || self.pause_queued
    }
    fn tx_pending(&self) -> usize {
        self.tx_cur.len() - self.tx_off + self.tx_next.len()
    }
}

pub(crate) struct LeanState {
    ring: *mut u8,
    mask: u16,
    tail: u16,
    bufs: *mut u8,
    buf_size: usize,
    buf_count: usize,
    in_ring: usize,
    /// tollgate patch 10: per buffer, whether the kernel may still write into it (it is in
    /// the ring, perhaps partly filled), how many bytes it has put there, and how many of its
    /// chunks are still unread. A buffer goes back to the ring when the kernel is done with
    /// it and its last chunk was read.
    filling: Vec<bool>,
    filled: Vec<u32>,
    parts: Vec<u32>,
    incremental: bool,
    slots: Slots,
    /// Free slot ids, lowest first (tollgate patch 7: so the slots in use stay at the front
    /// and `trim` can cut the free tail after a burst).
    free_slots: BinaryHeap<Reverse<u32>>,
    pending: VecDeque<(u32, Op)>,
    pool: Vec<Vec<u8>>,
    open: usize,
    closing: usize,
    starved: u64,
    /// The kernel takes a total-bytes limit on multishot receives (`IORING_RECV_MSHOT_LIM`,
    /// Linux 6.16): each receive ends after `RX_LIMIT_BYTES`, so one connection
    /// cannot drain the ring. Cleared at the first `EINVAL` (older kernels).
    mshot_limit: bool,
}

#[repr(C)]
struct BufReg {
    ring_addr: u64,
    ring_entries: u32,
    bgid: u16,
    flags: u16,
    resv: [u64; 3],
}

/// Maps `bytes` of memory, faulted in up front: the ring cycles through every buffer, so all
/// of it is touched soon anyway, and populating it now makes the process's memory use flat
/// from the start instead of creeping up as buffers are first used.
fn page_alloc(bytes: usize) -> io::Result<*mut u8> {
    // SAFETY: anonymous private mapping, checked for failure.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p as *mut u8)
}

fn kernel_has_multishot_recv() -> bool {
    // Multishot receive needs Linux 6.0 (the buffer ring itself 5.19).
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return false;
    }
    let rel: Vec<u8> = u
        .release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    let rel = String::from_utf8_lossy(&rel);
    let mut it = rel.split(|c: char| !c.is_ascii_digit());
    let major: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    major >= 6
}

/// Maps a ring of `count` entries and registers it as buffer group `BGID` on `ring_fd` with
/// `flags`. The ring lives as long as the io_uring ring (it is never unmapped once
/// registered).
fn register_ring(ring_fd: RawFd, count: usize, flags: u16) -> io::Result<*mut u8> {
    let ring_bytes = (count * 16).max(4096);
    let ring = page_alloc(ring_bytes)?;
    let reg = BufReg {
        ring_addr: ring as u64,
        ring_entries: count as u32,
        bgid: BGID,
        flags,
        resv: [0; 3],
    };
    // SAFETY: plain io_uring_register(2) with a pointer to a live struct.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring_fd,
            IORING_REGISTER_PBUF_RING,
            &reg as *const BufReg,
            1,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        // SAFETY: the mapping made above, not registered.
        unsafe { libc::munmap(ring as _, ring_bytes) };
        return Err(e);
    }
    Ok(ring)
}

/// tollgate patch 10: without incremental consumption every receive takes a whole buffer,
/// however few bytes it delivers: buffers larger than `SPLIT_BUF_SIZE` become that many more
/// buffers of `SPLIT_BUF_SIZE` (the same memory, at most 32768 buffers, a power of two).
fn split_for_whole_buffers(count: usize, size: usize) -> (usize, usize) {
    if size <= SPLIT_BUF_SIZE {
        return (count, size);
    }
    let n = (count * size / SPLIT_BUF_SIZE).clamp(1, 32768);
    let n = if n.is_power_of_two() { n } else { n.next_power_of_two() / 2 };
    (n, SPLIT_BUF_SIZE)
}

impl LeanState {
    /// Registers a provided-buffer ring on `ring_fd` (the main ring). Fails on kernels without
    /// the pieces (then the caller uses readiness polling).
    pub(crate) fn new(ring_fd: RawFd) -> io::Result<LeanState> {
        if !kernel_has_multishot_recv() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "multishot receive needs Linux >= 6.0",
            ));
        }
        let count = CONF_COUNT.load(Ordering::Relaxed);
        let size = CONF_SIZE.load(Ordering::Relaxed);
        // tollgate patch 10: incremental consumption first; a kernel that does not know the
        // flag refuses it (EINVAL), and then large buffers are split so that a small receive
        // does not take a whole large buffer. `GLOMMIO_WHOLE_BUFFERS=1` in the environment
        // skips the first attempt (to test and measure the older kernels' ring here).
        let try_inc = !std::env::var_os("GLOMMIO_WHOLE_BUFFERS").is_some_and(|v| v == "1");
        let first = if try_inc {
            register_ring(ring_fd, count, IOU_PBUF_RING_INC)
        } else {
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        };
        let (incremental, count, size, ring) =
            match first {
                Ok(ring) => (true, count, size, ring),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    let (count, size) = split_for_whole_buffers(count, size);
                    (false, count, size, register_ring(ring_fd, count, 0)?)
                }
                Err(e) => return Err(e),
            };
        let bufs = page_alloc(count * size)?;
        let mut st = LeanState {
            ring,
            mask: (count - 1) as u16,
            tail: 0,
            bufs,
            buf_size: size,
            buf_count: count,
            in_ring: 0,
            filling: vec![false; count],
            filled: vec![0; count],
            parts: vec![0; count],
            incremental,
            slots: Slots::default(),
            free_slots: BinaryHeap::new(),
            pending: VecDeque::new(),
            pool: Vec::new(),
            open: 0,
            closing: 0,
            starved: 0,
            mshot_limit: true,
        };
        for bid in 0..count {
            st.put_buf(bid as u16);
        }
        st.publish_tail();
        Ok(st)
        // The ring and buffer memory live as long as the executor's io_uring ring; they are
        // not unmapped (the kernel may write into them until the ring is torn down).
    }

    fn put_buf(&mut self, bid: u16) {
        let b = bid as usize;
        // tollgate patch 9/10: a buffer returned twice would be filled for two owners.
        assert!(!self.filling[b] && self.parts[b] == 0, "lean: buffer {bid} returned twice");
        self.filling[b] = true;
        self.filled[b] = 0;
        let idx = (self.tail & self.mask) as usize;
        // SAFETY: idx < entries; each entry is 16 bytes {addr u64, len u32, bid u16, resv u16}.
        // Entry 0's `resv` is the shared tail, so fields are written one by one.
        unsafe {
            let e = self.ring.add(idx * 16);
            (e as *mut u64).write(self.bufs.add(bid as usize * self.buf_size) as u64);
            (e.add(8) as *mut u32).write(self.buf_size as u32);
            (e.add(12) as *mut u16).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        self.in_ring += 1;
    }

    fn publish_tail(&self) {
        // SAFETY: the tail lives at offset 14 of the ring; the kernel reads it with acquire.
        unsafe { (*(self.ring.add(14) as *const AtomicU16)).store(self.tail, Ordering::Release) }
    }

    fn recycle(&mut self, bid: u16) {
        self.put_buf(bid);
        self.publish_tail();
    }

    /// tollgate patch 10: the owner is done with one chunk of buffer `bid`; the buffer goes
    /// back to the ring (the caller publishes the tail) once the kernel is done with it too
    /// and no other chunk of it is unread.
    fn chunk_done(&mut self, bid: u16) {
        let b = bid as usize;
        self.parts[b] -= 1;
        if self.parts[b] == 0 && !self.filling[b] {
            self.put_buf(bid);
        }
    }

    pub(crate) fn stats(&self) -> LeanStats {
        LeanStats {
            buffers: self.buf_count,
            buffers_free: self.in_ring,
            buffer_size: self.buf_size,
            incremental: self.incremental,
            open: self.open,
            closing: self.closing,
            starved: self.starved,
            send_queued_bytes: self.slots.iter().map(Slot::tx_pending).sum(),
            slot_ids: self.slots.len,
            slot_chunks: self.slots.chunks.iter().filter(|c| c.is_some()).count(),
        }
    }

    /// tollgate patch 7: gives back the memory a burst of sockets left behind: the chunks of
    /// the slot table whose slots are all free (free ids are reused lowest first, so after a
    /// burst the sockets still open sit in the first chunks) and the pooled send vectors.
    /// Returns the slots freed. Their ids stay free: a chunk comes back when one is reused.
    /// Patch 8: the free ids above the last socket open are forgotten (`Slots::cut_free_tail`).
    pub(crate) fn trim(&mut self) -> usize {
        self.pool.clear();
        self.pool.shrink_to_fit();
        self.pending.shrink_to_fit();
        let freed = self.slots.trim();
        self.slots.cut_free_tail(&mut self.free_slots);
        freed
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Takes ownership of `fd` and arms its receive.
    pub(crate) fn open(&mut self, fd: RawFd) -> u32 {
        let id = match self.free_slots.pop() {
            Some(Reverse(id)) => {
                self.slots.ensure(id as usize);
                id
            }
            None => self.slots.push(),
        };
        let s = &mut self.slots[id as usize];
        *s = Slot {
            fd,
            ..Slot::default()
        };
        self.open += 1;
        self.arm(id);
        id
    }

    fn arm(&mut self, id: u32) {
        let s = &mut self.slots[id as usize];
        if !s.recv_queued && !s.recv_inflight && !s.eof && s.rx_err.is_none() && !s.gone {
            s.recv_queued = true;
            self.pending.push_back((id, Op::Recv));
        }
    }

    /// The owner is gone: drop unread data, cancel the receive, let bytes already written
    /// go out (as close(2) would), and close the descriptor once nothing is in the kernel.
    /// A peer that never takes those bytes is cut off by `TCP_USER_TIMEOUT` (`LINGER_MS`).
    pub(crate) fn release(&mut self, id: u32) {
        let s = &mut self.slots[id as usize];
        s.gone = true;
        s.reader = None;
        s.writer = None;
        let rx = std::mem::take(&mut s.rx);
        if s.recv_inflight && !s.pause_queued {
            s.pause_queued = true;
            self.pending.push_back((id, Op::Pause));
        }
        if s.tx_pending() > 0 && s.tx_err.is_none() {
            let ms: libc::c_uint = LINGER_MS;
            // SAFETY: setsockopt on our descriptor with a live c_uint.
            unsafe {
                libc::setsockopt(
                    s.fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_USER_TIMEOUT,
                    &ms as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
                );
            }
        }
        self.open -= 1;
        self.closing += 1;
        for c in rx {
            self.chunk_done(c.bid);
        }
        self.publish_tail();
        self.maybe_free(id);
    }

    fn maybe_free(&mut self, id: u32) {
        let s = &mut self.slots[id as usize];
        if !s.gone || s.busy_in_kernel() || s.queued() {
            return;
        }
        let fd = s.fd;
        let cur = std::mem::take(&mut s.tx_cur);
        let next = std::mem::take(&mut s.tx_next);
        *s = Slot {
            fd: -1,
            ..Slot::default()
        };
        // SAFETY: the slot owned the descriptor and nothing in the kernel uses it any more.
        unsafe { libc::close(fd) };
        self.give_vec(cur);
        self.give_vec(next);
        self.closing -= 1;
        self.free_slots.push(Reverse(id));
    }

    fn take_vec(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_default()
    }

    fn give_vec(&mut self, mut v: Vec<u8>) {
        if v.capacity() != 0 && v.capacity() <= POOL_MAX_CAP && self.pool.len() < POOL_KEEP {
            v.clear();
            self.pool.push(v);
        }
    }

    pub(crate) fn fd(&self, id: u32) -> RawFd {
        self.slots[id as usize].fd
    }

    /// Ready when a read would not wait: data, EOF, an error, or a ring that ran dry (the
    /// read then uses recv(2)).
    pub(crate) fn readable(&mut self, id: u32, waker: &Waker) -> bool {
        let s = &mut self.slots[id as usize];
        if !s.rx.is_empty() || s.eof || s.rx_err.is_some() || s.starved {
            return true;
        }
        set_waker(&mut s.reader, waker);
        self.arm(id);
        false
    }

    /// Copies received bytes into `buf`. `None`: nothing yet (waker registered).
    pub(crate) fn read(&mut self, id: u32, buf: &mut [u8], waker: &Waker) -> Option<io::Result<usize>> {
        let s = &mut self.slots[id as usize];
        if !s.rx.is_empty() {
            let mut n = 0;
            let mut done = 0;
            for c in s.rx.iter_mut() {
                if n == buf.len() {
                    break;
                }
                let take = (c.len - c.off).min((buf.len() - n) as u32) as usize;
                // SAFETY: the chunk's bytes are inside buffer `bid`, which the kernel filled
                // and will not touch until it is back in the ring.
                let src = unsafe {
                    std::slice::from_raw_parts(
                        self.bufs.add(c.bid as usize * self.buf_size + c.off as usize),
                        take,
                    )
                };
                buf[n..n + take].copy_from_slice(src);
                n += take;
                c.off += take as u32;
                if c.off == c.len {
                    done += 1;
                }
            }
            let finished: SmallVec<[u16; 8]> = s.rx.drain(..done).map(|c| c.bid).collect();
            let empty = s.rx.is_empty();
            for bid in finished {
                self.chunk_done(bid);
            }
            self.publish_tail();
            if empty {
                self.arm(id);
            }
            return Some(Ok(n));
        }
        if s.eof {
            return Some(Ok(0));
        }
        if let Some(e) = s.rx_err {
            return Some(Err(io::Error::from_raw_os_error(e)));
        }
        if s.starved {
            // SAFETY: recv(2) into a caller-owned buffer on our descriptor.
            let r = unsafe {
                libc::recv(s.fd, buf.as_mut_ptr() as _, buf.len(), libc::MSG_DONTWAIT)
            };
            if r > 0 {
                return Some(Ok(r as usize));
            }
            if r == 0 {
                s.eof = true;
                return Some(Ok(0));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Some(Err(e));
            }
            s.starved = false;
        }
        set_waker(&mut s.reader, waker);
        self.arm(id);
        None
    }

    /// Queues `data` to be sent. A large write with nothing in the kernel for this socket is
    /// sent at once with one `sendmsg(2)` from the caller's buffer (together with any bytes
    /// queued this turn): for bulk data the syscall costs less than copying the bytes into the
    /// send buffer. Whatever the socket does not take is queued as usual.
    pub(crate) fn write(&mut self, id: u32, mut data: &[u8]) -> io::Result<()> {
        let s = &mut self.slots[id as usize];
        if let Some(e) = s.tx_err {
            return Err(io::Error::from_raw_os_error(e));
        }
        if data.is_empty() {
            return Ok(());
        }
        if !s.send_inflight && s.tx_cur.len() - s.tx_off + data.len() >= DIRECT_SEND_MIN {
            let queued = &s.tx_cur[s.tx_off..];
            let mut iov = [
                libc::iovec {
                    iov_base: queued.as_ptr() as *mut libc::c_void,
                    iov_len: queued.len(),
                },
                libc::iovec {
                    iov_base: data.as_ptr() as *mut libc::c_void,
                    iov_len: data.len(),
                },
            ];
            let skip = usize::from(queued.is_empty());
            // SAFETY: a zeroed msghdr with iovecs that point into live buffers for the call.
            let r = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = iov[skip..].as_mut_ptr();
                msg.msg_iovlen = 2 - skip;
                libc::sendmsg(s.fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::WouldBlock {
                    s.tx_err = e.raw_os_error();
                    s.tx_cur.clear();
                    s.tx_off = 0;
                    return Err(e);
                }
            } else {
                let mut sent = r as usize;
                let from_queue = sent.min(queued.len());
                s.tx_off += from_queue;
                sent -= from_queue;
                if s.tx_off == s.tx_cur.len() {
                    // The queued send (if any) finds nothing left and is skipped.
                    s.tx_cur.clear();
                    s.tx_off = 0;
                }
                data = &data[sent..];
                if data.is_empty() {
                    return Ok(());
                }
            }
        }
        self.enqueue(id, data);
        Ok(())
    }

    /// Appends `data` to socket `id`'s send queue: to the send that is (or will be) queued
    /// when nothing is in the kernel, else to the bytes that follow the send in flight.
    #[inline]
    fn enqueue(&mut self, id: u32, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let s = &self.slots[id as usize];
        if !s.send_inflight {
            // Nothing in the kernel: the bytes join the send that is (or will be) queued.
            if self.slots[id as usize].tx_cur.capacity() == 0 {
                let v = self.take_vec();
                self.slots[id as usize].tx_cur = v;
            }
            let s = &mut self.slots[id as usize];
            s.tx_cur.extend_from_slice(data);
            if !s.send_queued {
                s.send_queued = true;
                self.pending.push_back((id, Op::Send));
            }
        } else {
            if self.slots[id as usize].tx_next.capacity() == 0 {
                let v = self.take_vec();
                self.slots[id as usize].tx_next = v;
            }
            self.slots[id as usize].tx_next.extend_from_slice(data);
        }
    }

    /// tollgate patch 9: moves up to `max` (> 0) received bytes of socket `src` to socket
    /// `dst` without copying them in user space when `dst` can take them at once: with no send
    /// of `dst`'s in the kernel and at least `DIRECT_SEND_MIN` bytes (with what `dst` has
    /// queued, which goes first), one `sendmsg(2)` straight from the ring buffers. What the
    /// socket does not take, and every byte of a smaller step, is copied into `dst`'s send
    /// queue as `write` does. Every ring buffer whose bytes were all moved goes back to the
    /// ring before this returns; a partly moved one stays first in `src`'s queue with its
    /// offset. `None`: nothing received yet (`src`'s reader waker registered).
    pub(crate) fn relay(&mut self, src: u32, dst: u32, max: usize, waker: &Waker) -> Option<Relayed> {
        debug_assert!(src != dst && max > 0);
        if let Some(e) = self.slots[dst as usize].tx_err {
            return Some(Relayed::SinkFailed(io::Error::from_raw_os_error(e)));
        }
        let s = &mut self.slots[src as usize];
        if s.rx.is_empty() {
            if s.eof {
                return Some(Relayed::Eof);
            }
            if let Some(e) = s.rx_err {
                return Some(Relayed::SourceFailed(io::Error::from_raw_os_error(e)));
            }
            if s.starved {
                return Some(Relayed::Starved);
            }
            set_waker(&mut s.reader, waker);
            self.arm(src);
            return None;
        }
        // iov[0]: `dst`'s queued bytes (filled in below if they go first); then the chunks.
        let mut iov: SmallVec<[libc::iovec; 10]> = SmallVec::new();
        iov.push(libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        });
        let mut moved = 0usize;
        for c in s.rx.iter() {
            if moved == max {
                break;
            }
            let take = ((c.len - c.off) as usize).min(max - moved);
            iov.push(libc::iovec {
                // SAFETY: inside buffer `bid`, which the kernel filled and will not touch
                // until it is back in the ring (after the last use of these iovecs below).
                iov_base: unsafe {
                    self.bufs.add(c.bid as usize * self.buf_size + c.off as usize)
                } as *mut libc::c_void,
                iov_len: take,
            });
            moved += take;
        }
        let d = &mut self.slots[dst as usize];
        let mut sent_body = 0usize;
        if !d.send_inflight && d.tx_cur.len() - d.tx_off + moved >= DIRECT_SEND_MIN {
            let queued = &d.tx_cur[d.tx_off..];
            iov[0] = libc::iovec {
                iov_base: queued.as_ptr() as *mut libc::c_void,
                iov_len: queued.len(),
            };
            let queued_len = queued.len();
            let skip = usize::from(queued_len == 0);
            // SAFETY: a zeroed msghdr with iovecs that point into live buffers for the call.
            let r = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = iov[skip..].as_mut_ptr();
                msg.msg_iovlen = iov.len() - skip;
                libc::sendmsg(d.fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::WouldBlock {
                    d.tx_err = e.raw_os_error();
                    d.tx_cur.clear();
                    d.tx_off = 0;
                    return Some(Relayed::SinkFailed(e));
                }
            } else {
                let sent = r as usize;
                let from_queue = sent.min(queued_len);
                d.tx_off += from_queue;
                sent_body = sent - from_queue;
                if d.tx_off == d.tx_cur.len() {
                    // The queued send (if any) finds nothing left and is skipped.
                    d.tx_cur.clear();
                    d.tx_off = 0;
                }
            }
        }
        // What the socket did not take: copied into the send queue.
        let mut skip = sent_body;
        for v in &iov[1..] {
            if skip >= v.iov_len {
                skip -= v.iov_len;
                continue;
            }
            // SAFETY: the iovec points into a ring buffer still held by `src` (see above).
            let rest = unsafe {
                std::slice::from_raw_parts((v.iov_base as *const u8).add(skip), v.iov_len - skip)
            };
            skip = 0;
            self.enqueue(dst, rest);
        }
        // Consume the moved bytes: buffers fully moved go back to the ring.
        let s = &mut self.slots[src as usize];
        let mut left = moved;
        let mut done = 0;
        for c in s.rx.iter_mut() {
            if left == 0 {
                break;
            }
            let take = ((c.len - c.off) as usize).min(left);
            c.off += take as u32;
            left -= take;
            if c.off == c.len {
                done += 1;
            }
        }
        let finished: SmallVec<[u16; 8]> = s.rx.drain(..done).map(|c| c.bid).collect();
        let empty = s.rx.is_empty();
        for bid in finished {
            self.chunk_done(bid);
        }
        self.publish_tail();
        if empty {
            self.arm(src);
        }
        Some(Relayed::Moved(moved))
    }

    /// Ready (`Some`) when fewer than `limit` bytes wait to be sent, or the socket failed.
    pub(crate) fn write_room(&mut self, id: u32, limit: usize, waker: &Waker) -> Option<io::Result<()>> {
        let s = &mut self.slots[id as usize];
        if let Some(e) = s.tx_err {
            return Some(Err(io::Error::from_raw_os_error(e)));
        }
        if s.tx_pending() < limit {
            return Some(Ok(()));
        }
        set_waker(&mut s.writer, waker);
        None
    }

    /// Ready when every byte written has been sent, or the socket failed.
    pub(crate) fn flushed(&mut self, id: u32, waker: &Waker) -> Option<io::Result<()>> {
        self.write_room(id, 1, waker)
    }

    /// Writes SQEs for pending operations. Returns false if the SQ filled up first.
    pub(crate) fn fill_sqes(&mut self, ring: &mut iou::IoUring) -> bool {
        while let Some(&(id, op)) = self.pending.front() {
            let s = &mut self.slots[id as usize];
            let wanted = match op {
                Op::Recv => {
                    s.recv_queued = false;
                    !s.gone && !s.recv_inflight && !s.eof && s.rx_err.is_none()
                }
                Op::Send => {
                    s.send_queued = false;
                    s.tx_off < s.tx_cur.len() && s.tx_err.is_none()
                }
                Op::Pause => {
                    s.pause_queued = false;
                    s.recv_inflight
                }
            };
            if !wanted {
                self.pending.pop_front();
                self.maybe_free(id);
                continue;
            }
            // Put the flag back while we try for an SQE (the queue entry still stands).
            match op {
                Op::Recv => s.recv_queued = true,
                Op::Send => s.send_queued = true,
                Op::Pause => s.pause_queued = true,
            }
            let mut sq = ring.sq();
            let Some(mut sqe) = sq.prepare_sqe() else {
                return false;
            };
            self.pending.pop_front();
            let s = &mut self.slots[id as usize];
            let tag = |k: u64| LEAN_TAG | (k << KIND_SHIFT) | id as u64;
            // SAFETY: raw SQE fields as the kernel ABI defines them; buffers referenced stay
            // alive (slot-owned) until their CQE, see `complete`.
            unsafe {
                sqe.clear();
                let raw: &mut uring_sys::io_uring_sqe = sqe.raw_mut();
                match op {
                    Op::Recv => {
                        s.recv_queued = false;
                        s.recv_inflight = true;
                        raw.opcode = IORING_OP_RECV;
                        raw.fd = s.fd;
                        raw.flags = IOSQE_BUFFER_SELECT;
                        raw.ioprio = IORING_RECV_MULTISHOT;
                        raw.buf_index.buf_index.index_or_group = BGID;
                        if self.mshot_limit {
                            // `optlen`: total bytes this multishot receive may take.
                            raw.buf_index.buf_index.splice_fd_in = RX_LIMIT_BYTES as i32;
                        }
                        raw.user_data = tag(K_RECV);
                    }
                    Op::Send => {
                        s.send_queued = false;
                        s.send_inflight = true;
                        raw.opcode = IORING_OP_SEND;
                        raw.fd = s.fd;
                        raw.addr = s.tx_cur.as_ptr().add(s.tx_off) as u64;
                        raw.len = (s.tx_cur.len() - s.tx_off) as u32;
                        raw.cmd_flags.msg_flags = (libc::MSG_NOSIGNAL | libc::MSG_WAITALL) as u32;
                        raw.user_data = tag(K_SEND);
                    }
                    Op::Pause => {
                        s.pause_queued = false;
                        raw.opcode = IORING_OP_ASYNC_CANCEL;
                        raw.fd = -1;
                        raw.addr = tag(K_RECV);
                        raw.user_data = tag(K_CANCEL);
                    }
                }
            }
        }
        true
    }

    /// Handles one tagged CQE. Returns true if it woke a task.
    pub(crate) fn complete(&mut self, user_data: u64, res: i32, flags: u32) -> bool {
        let id = user_data as u32;
        let kind = (user_data >> KIND_SHIFT) & 0xff;
        let mut wake = None;
        match kind {
            K_RECV => {
                let more = flags & IORING_CQE_F_MORE != 0;
                let s = &mut self.slots[id as usize];
                let mut give_back = None;
                if flags & IORING_CQE_F_BUFFER != 0 {
                    let bid = (flags >> IORING_CQE_BUFFER_SHIFT) as u16;
                    let b = bid as usize;
                    assert!(self.filling[b], "lean: buffer {bid} not in the ring");
                    // tollgate patch 10: this CQE's bytes start where the buffer's last ones
                    // ended (always 0 without incremental consumption).
                    let start = self.filled[b];
                    let n = res.max(0) as u32;
                    self.filled[b] = start + n;
                    if res > 0 && !s.gone {
                        s.rx.push(Chunk {
                            bid,
                            off: start,
                            len: start + n,
                        });
                        self.parts[b] += 1;
                    }
                    if flags & IORING_CQE_F_BUF_MORE == 0 {
                        // The kernel is done with this buffer.
                        self.filling[b] = false;
                        self.in_ring -= 1;
                        if self.parts[b] == 0 {
                            give_back = Some(bid);
                        }
                    }
                }
                if res == 0 {
                    s.eof = true;
                } else if res < 0 {
                    match -res {
                        libc::EINVAL if self.mshot_limit && s.rx.is_empty() => {
                            // This kernel has no receive limit: go on without it.
                            self.mshot_limit = false;
                        }
                        libc::ENOBUFS => {
                            s.starved = true;
                            self.starved += 1;
                        }
                        libc::ECANCELED => {}
                        e => s.rx_err = Some(e),
                    }
                }
                if !more {
                    s.recv_inflight = false;
                } else if s.rx.len() >= RX_PAUSE && !s.pause_queued && !s.gone {
                    s.pause_queued = true;
                    self.pending.push_back((id, Op::Pause));
                }
                wake = s.reader.take();
                if let Some(bid) = give_back {
                    self.recycle(bid);
                }
                if !more {
                    let s = &self.slots[id as usize];
                    // Paused and already drained, or cancelled for nothing: receive again.
                    if s.rx.is_empty() && !s.starved && res != 0 {
                        self.arm(id);
                    }
                }
            }
            K_SEND => {
                let s = &mut self.slots[id as usize];
                s.send_inflight = false;
                if res <= 0 {
                    s.tx_err = Some(if res == 0 { libc::EPIPE } else { -res });
                    s.tx_cur.clear();
                    s.tx_off = 0;
                    s.tx_next.clear();
                    wake = s.writer.take();
                } else {
                    s.tx_off += res as usize;
                    wake = s.writer.take();
                    if s.tx_off < s.tx_cur.len() {
                        s.send_queued = true;
                        self.pending.push_back((id, Op::Send));
                    } else {
                        s.tx_cur.clear();
                        s.tx_off = 0;
                        if !s.tx_next.is_empty() {
                            std::mem::swap(&mut s.tx_cur, &mut s.tx_next);
                            s.send_queued = true;
                            self.pending.push_back((id, Op::Send));
                        } else {
                            let a = std::mem::take(&mut s.tx_cur);
                            let b = std::mem::take(&mut s.tx_next);
                            self.give_vec(a);
                            self.give_vec(b);
                        }
                    }
                }
            }
            _ => {}
        }
        self.maybe_free(id);
        match wake {
            Some(w) => {
                w.wake();
                true
            }
            None => false,
        }
    }
}

fn set_waker(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(w) if w.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

pub(crate) type LeanRef = Rc<RefCell<LeanState>>;
