// tollgate patch (PATCHES.md #4): the lean socket path's public handle.
//
//! `LeanStream`: a connected socket driven by completions instead of readiness. Receives
//! land in the executor's provided-buffer ring (multishot, no syscall per read); sends are
//! SQEs flushed with the reactor's one `io_uring_enter` per turn. The reactor side, and the
//! rules that keep buffers alive until their completions, are in `sys/lean.rs`.

use crate::sys::lean::{self, LeanRef};
pub use crate::sys::lean::{LeanStats, Relayed};
use std::{
    io,
    os::fd::{IntoRawFd, OwnedFd, RawFd},
    task::{Context, Poll},
};

/// A connected stream socket on the lean socket path. Dropping it drops unread bytes, cancels
/// its receive, lets bytes already written go out (as close(2) would; a peer that never takes
/// them is cut off by `TCP_USER_TIMEOUT` after 10 s), and closes the descriptor once the
/// kernel is done with every operation it had in flight.
#[derive(Debug)]
pub struct LeanStream {
    lean: LeanRef,
    id: u32,
}

impl std::fmt::Debug for lean::LeanState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeanState").finish_non_exhaustive()
    }
}

impl LeanStream {
    /// Takes over `fd`, a connected stream socket, and starts receiving into the ring. Gives
    /// the descriptor back if this executor cannot run the lean path (old kernel).
    pub fn from_fd(fd: OwnedFd) -> Result<LeanStream, OwnedFd> {
        match crate::executor().reactor().sys.lean() {
            Some(lean) => {
                let id = lean.borrow_mut().open(fd.into_raw_fd());
                Ok(LeanStream { lean, id })
            }
            None => Err(fd),
        }
    }

    /// The socket's descriptor (still owned by the stream).
    pub fn raw_fd(&self) -> RawFd {
        self.lean.borrow().fd(self.id)
    }

    /// Ready when a read would not wait (data, EOF or an error). Holds no buffer.
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.lean.borrow_mut().readable(self.id, cx.waker()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Copies received bytes into `buf` (`Ok(0)`: EOF).
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.lean.borrow_mut().read(self.id, buf, cx.waker()) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    /// tollgate patch 9: moves up to `max` (> 0) received bytes to `dst` without copying
    /// them out of the receive ring: sent from the ring buffers with one `sendmsg(2)` when
    /// `dst` has no send in the kernel and the step is large (at least 16 KiB with what `dst`
    /// has queued), otherwise (and for what the socket does not take) copied into `dst`'s
    /// send queue as `write` does. Buffers fully moved are back in the ring when this
    /// returns. `Pending`: nothing received yet. `Starved`: use `poll_read` for now. `dst`
    /// must be another stream of the same executor, else `SinkFailed` (`InvalidInput`).
    /// Keep the send queue bounded with `dst.poll_write_room` between steps.
    pub fn poll_relay_to(&self, cx: &mut Context<'_>, dst: &LeanStream, max: usize) -> Poll<Relayed> {
        if !std::rc::Rc::ptr_eq(&self.lean, &dst.lean) || self.id == dst.id || max == 0 {
            return Poll::Ready(Relayed::SinkFailed(io::Error::new(
                io::ErrorKind::InvalidInput,
                "relay needs another lean stream of this executor and max > 0",
            )));
        }
        match self.lean.borrow_mut().relay(self.id, dst.id, max, cx.waker()) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    /// Queues `data` for sending (copied; the caller's buffer is free on return). Fails if an
    /// earlier send failed.
    pub fn write(&self, data: &[u8]) -> io::Result<()> {
        self.lean.borrow_mut().write(self.id, data)
    }

    /// Bytes written but not yet handed to the kernel's socket buffer.
    pub fn poll_write_room(&self, cx: &mut Context<'_>, limit: usize) -> Poll<io::Result<()>> {
        match self.lean.borrow_mut().write_room(self.id, limit, cx.waker()) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    /// Ready once every byte written has been sent (or a send failed).
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.lean.borrow_mut().flushed(self.id, cx.waker()) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

impl Drop for LeanStream {
    fn drop(&mut self) {
        self.lean.borrow_mut().release(self.id);
    }
}

/// Sizes the provided-buffer ring of executors that start their lean path after this call:
/// `count` buffers (rounded up to a power of two) of `size` bytes.
pub fn lean_configure(count: usize, size: usize) {
    lean::configure(count, size)
}

/// Gives back the memory this executor's lean path kept from a burst of sockets (the free
/// tail of its slot table, pooled send vectors); returns the slots cut (tollgate patch 7).
pub fn lean_trim() -> usize {
    crate::executor().reactor().sys.lean_trim()
}

/// Counters of this executor's lean path; `None` if it has not started (or cannot).
pub fn lean_stats() -> Option<LeanStats> {
    crate::executor().reactor().sys.lean_stats()
}
