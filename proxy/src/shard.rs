//! One shard: the state a core owns (its copy of the compiled gateway, its backend pools, its
//! request-id generator, its buffers, its authorizer caches, its metrics and access log
//! buffers, its drain state, its traffic-control buckets and quota leases). Plain per-core
//! data: the accept loop that serves connections with it lives in `runtime`. Nothing here is
//! written by other cores (the admin listener only reads `metrics`), except `traffic` (the
//! quota store and the rebalance exchange, `traffic_state`), never touched per request except
//! when a quota lease runs out.

use crate::buffer::BufPool;
use crate::logging::{RateLimited, ShardLog};
use crate::metrics::{Layout, ShardMetrics};
use crate::traffic_state::{self, TrafficShared};
use crate::upstream::{self, Pools, SecureSlot};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_core::gateway::Gateway;
use tollgate_core::lambda::cache::Caches;
use tollgate_core::lambda::inflight::Inflight;
use tollgate_core::pipeline::{self, Context, Failure};
use tollgate_core::request_id::RequestIds;
use tollgate_core::traffic::{Now, ShardTraffic};

/// Free buffers a shard keeps for reuse (of each kind); beyond that they are freed, so a
/// burst of connections does not pin its peak memory.
const BUFS_KEPT: usize = 256;

pub struct Shard {
    pub index: usize,
    pub gateway: Gateway,
    pub pools: RefCell<Pools>,
    /// TLS client state per upstream (`Some` for https backends).
    pub secure: Vec<SecureSlot>,
    pub ids: RefCell<RequestIds>,
    /// Read buffers and head scratch for this shard's client and backend connections.
    pub bufs: Rc<BufPool>,
    /// This shard's counters (read by the admin listener's scrapes).
    pub metrics: Arc<ShardMetrics>,
    pub layout: Arc<Layout>,
    /// Access log buffers, one per destination.
    pub log: ShardLog,
    /// Shutting down: every response closes its connection.
    pub draining: Cell<bool>,
    /// One gateway-log line per upstream failure kind per interval.
    pub upstream_lines: [RateLimited; UPSTREAM_KINDS],
    pub accept_lines: RateLimited,
    /// This shard's share of every throttle bucket and its quota leases.
    pub limits: RefCell<ShardTraffic>,
    /// Shared with every shard: quota store, clock epoch, rebalance exchange.
    pub traffic: Arc<TrafficShared>,
    /// Wall clock minus bucket clock, in ns (refreshed every rebalance tick), so quota
    /// periods need no clock read per request.
    unix_offset_ns: Cell<i128>,
    /// Lambda authorizer results, one bounded cache per authorizer (issue 17).
    pub auth_caches: RefCell<Caches>,
    /// Lambda authorizer calls in progress, so concurrent requests of one identity share one.
    pub auth_inflight: Inflight,
}

/// Upstream failure kinds with their own rate-limited log line: connect refused/failed,
/// connect or response timeout, failure after connecting, malformed response.
pub const UPSTREAM_KINDS: usize = 4;
/// At most one gateway-log line per kind per this interval (per shard).
pub const EVENT_EVERY: Duration = Duration::from_secs(10);

/// Parts of a shard made before its thread starts (shared with the scrape / the writers).
pub struct Ops {
    pub metrics: Arc<ShardMetrics>,
    pub layout: Arc<Layout>,
    pub log_senders: Vec<std::sync::mpsc::SyncSender<Vec<u8>>>,
}

impl Shard {
    pub fn new(
        index: usize,
        gateway: Gateway,
        seed: u64,
        ops: Ops,
        traffic: Arc<TrafficShared>,
    ) -> Shard {
        let s = &gateway.settings;
        let pools = Pools::new(
            gateway.upstreams.len(),
            s.upstream_pool_size,
            s.upstream_idle_timeout,
            ops.metrics.pool_idle.clone(),
        );
        // One size for client and backend buffers: a request or response head must fit.
        let buf_size = s.read_buffer_bytes.max(s.max_header_bytes + 1);
        let secure = upstream::secure(gateway.upstreams.iter().map(|u| u.tls.as_ref()));
        Shard {
            index,
            secure,
            bufs: BufPool::new(buf_size, BUFS_KEPT),
            pools: RefCell::new(pools),
            ids: RefCell::new(RequestIds::new(seed)),
            auth_caches: RefCell::new(Caches::for_gateway(&gateway)),
            auth_inflight: Inflight::default(),
            gateway,
            log: ShardLog::new(ops.log_senders, ops.metrics.clone()),
            metrics: ops.metrics,
            layout: ops.layout,
            draining: Cell::new(false),
            upstream_lines: [
                RateLimited::new(EVENT_EVERY),
                RateLimited::new(EVENT_EVERY),
                RateLimited::new(EVENT_EVERY),
                RateLimited::new(EVENT_EVERY),
            ],
            accept_lines: RateLimited::new(EVENT_EVERY),
            limits: RefCell::new(traffic.shard_state(index)),
            unix_offset_ns: Cell::new(traffic_state::unix_offset_ns(&traffic)),
            traffic,
        }
    }

    /// Re-reads the wall clock against the bucket clock (once per rebalance tick).
    pub fn refresh_clock(&self) {
        self.unix_offset_ns
            .set(traffic_state::unix_offset_ns(&self.traffic));
    }

    /// The traffic clocks at `t` (bucket time and UTC seconds), without a clock read.
    pub fn traffic_now(&self, t: Instant) -> Now {
        let mono_ns = self.traffic.mono_ns(t);
        let unix_ns = i128::from(mono_ns) + self.unix_offset_ns.get();
        Now {
            mono_ns,
            unix_secs: i64::try_from(unix_ns.div_euclid(1_000_000_000)).unwrap_or(0),
        }
    }

    /// The throttle-and-quota phase's decision, with this shard's state (its inputs were taken
    /// from the head by `pipeline::throttle_input`).
    pub fn throttle(
        &self,
        input: &pipeline::ThrottleInput<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), Failure> {
        let started = ctx.started;
        pipeline::throttle_apply(
            &self.gateway,
            input,
            ctx,
            &mut self.limits.borrow_mut(),
            &self.traffic.store,
            || self.traffic_now(started),
        )
    }

    pub fn next_request_id(&self) -> [u8; 36] {
        self.ids.borrow_mut().next()
    }
}
