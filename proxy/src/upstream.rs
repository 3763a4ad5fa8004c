//! Backend connections of one shard: a keep-alive pool per upstream (LIFO, capped, idle
//! connections expire). A pooled connection holds no read buffer: it takes one from the
//! shard's `BufPool` when its response arrives.

use crate::buffer::{Buf, BufPool};
use crate::net::{self, Conn};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub struct UpConn {
    pub conn: Conn,
    pub buf: Buf,
    /// Served at least one response before (a failure may mean the backend closed it while
    /// idle, which is worth one retry).
    pub reused: bool,
    idle_since: Instant,
}

pub struct Pools {
    idle: Vec<Vec<UpConn>>,
    cap: usize,
    idle_timeout: Duration,
}

impl Pools {
    pub fn new(upstreams: usize, cap: usize, idle_timeout: Duration) -> Pools {
        Pools {
            idle: (0..upstreams).map(|_| Vec::new()).collect(),
            cap,
            idle_timeout,
        }
    }

    /// The most recently used idle connection to `upstream` that has not expired.
    pub fn take(&mut self, upstream: usize, now: Instant) -> Option<UpConn> {
        let pool = self.idle.get_mut(upstream)?;
        while let Some(mut c) = pool.pop() {
            if now.saturating_duration_since(c.idle_since) < self.idle_timeout {
                c.reused = true;
                return Some(c);
            }
        }
        None
    }

    /// Returns a connection whose last exchange ended cleanly.
    pub fn put(&mut self, upstream: usize, mut c: UpConn, now: Instant) {
        if let Some(pool) = self.idle.get_mut(upstream) {
            if pool.len() < self.cap && c.buf.is_empty() {
                c.idle_since = now;
                c.buf.release();
                pool.push(c);
            }
        }
    }
}

pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    bufs: &Rc<BufPool>,
) -> io::Result<UpConn> {
    let conn = net::connect(addr, timeout).await?;
    Ok(UpConn {
        conn,
        buf: Buf::new(bufs),
        reused: false,
        idle_since: Instant::now(),
    })
}
