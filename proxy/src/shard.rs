//! One shard: the state a core owns. Plain per-core data: the accept loop that serves
//! connections with it lives in `runtime`, the swap of configurations in `reload`.
//!
//! - `Shard`: what outlives a configuration: request-id generator, buffers, metrics, access
//!   log buffers, drain state, rate-limited log lines, and the current `Gen`.
//! - `Gen` (one configuration generation as this shard runs it): its copy of the compiled
//!   gateway and every piece of state indexed by it: backend pools, https client state,
//!   authorizer caches, traffic-control buckets and quota leases, the shared traffic state, the
//!   metric series map. A reload builds a new `Gen` and swaps it in between requests
//!   (`Shard::swap`); a request holds its `Rc<Gen>` (through a `Turn`) to its end, so it
//!   finishes on the configuration it started on.
//! - `Turn`: one request's view: the shard plus the generation it runs on, with the
//!   generation's parts under the names the connection code uses.
//!
//! Nothing here is written by other cores (the admin listener only reads `metrics`), except
//! `Gen::traffic` (the quota store and the rebalance exchange, `traffic_state`), never touched
//! per request except when a quota lease runs out.

use crate::buffer::BufPool;
use crate::logging::{RateLimited, ShardLog};
use crate::metrics::{Layout, ShardMetrics};
use crate::traffic_state::{self, TrafficShared};
use crate::upstream::{self, Pools, SecureSlot};
use std::cell::{Cell, RefCell};
use std::ops::Deref;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_core::gateway::{Api, Gateway, Route, Stage};
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
    /// The configuration new requests run on (replaced by `swap`).
    gen: RefCell<Rc<Gen>>,
    pub ids: RefCell<RequestIds>,
    /// Read buffers and head scratch for this shard's client and backend connections.
    pub bufs: Rc<BufPool>,
    /// This shard's counters (read by the admin listener's scrapes).
    pub metrics: Arc<ShardMetrics>,
    /// The metric series of the process (built from the start-up config).
    pub registry_layout: Arc<Layout>,
    /// Access log buffers, one per destination.
    pub log: ShardLog,
    /// Shutting down: every response closes its connection.
    pub draining: Cell<bool>,
    /// One gateway-log line per upstream failure kind per interval.
    pub upstream_lines: [RateLimited; UPSTREAM_KINDS],
    pub accept_lines: RateLimited,
    /// Wall clock minus bucket clock, in ns (refreshed every rebalance tick), so quota
    /// periods need no clock read per request.
    unix_offset_ns: Cell<i128>,
}

/// One configuration generation on one shard (see the module doc).
pub struct Gen {
    pub gateway: Gateway,
    pub pools: RefCell<Pools>,
    /// TLS client state per upstream (`Some` for https backends).
    pub secure: Vec<SecureSlot>,
    /// Lambda authorizer results, one bounded cache per authorizer (issue 17).
    pub auth_caches: RefCell<Caches>,
    /// Lambda authorizer calls in progress, so concurrent requests of one identity share one.
    pub auth_inflight: Inflight,
    /// This shard's share of every throttle bucket and its quota leases.
    pub limits: RefCell<ShardTraffic>,
    /// Shared with every shard: quota store, clock epoch, rebalance exchange.
    pub traffic: Arc<TrafficShared>,
    /// This generation's routes → the process's metric series.
    pub layout: Series,
}

impl Gen {
    /// Shard `index`'s state for `gateway` (fresh pools, caches, buckets and leases; `reload`
    /// carries over what did not change).
    pub fn new(
        index: usize,
        gateway: Gateway,
        traffic: Arc<TrafficShared>,
        registry: &Layout,
        pool_gauges: Arc<[AtomicU64]>,
    ) -> Gen {
        let s = &gateway.settings;
        let pools = Pools::new(
            gateway.upstreams.len(),
            s.upstream_pool_size,
            s.upstream_idle_timeout,
            pool_gauges,
            registry.pool_gauges_for(&gateway),
        );
        let secure = upstream::secure(gateway.upstreams.iter().map(|u| u.tls.as_ref()));
        Gen {
            secure,
            pools: RefCell::new(pools),
            auth_caches: RefCell::new(Caches::for_gateway(&gateway)),
            auth_inflight: Inflight::default(),
            limits: RefCell::new(traffic.shard_state(index)),
            layout: Series::new(&gateway, registry),
            gateway,
            traffic,
        }
    }
}

/// A generation's metric series: its own layout, mapped onto the process's (whose series
/// were fixed at start). A route, stage or API that a reload added is counted under its
/// stage's route-less series when that exists, else under the no-stage series.
pub struct Series {
    local: Layout,
    to_registry: Box<[usize]>,
}

impl Series {
    fn new(gw: &Gateway, registry: &Layout) -> Series {
        let local = Layout::new(gw);
        let index: std::collections::HashMap<(&str, &str, &str), usize> = registry
            .all_labels()
            .iter()
            .enumerate()
            .map(|(i, [a, s, r])| ((&**a, &**s, &**r), i))
            .collect();
        let to_registry = local
            .all_labels()
            .iter()
            .map(|[a, s, r]| {
                index
                    .get(&(&**a, &**s, &**r))
                    .or_else(|| index.get(&(&**a, &**s, "")))
                    .copied()
                    .unwrap_or(0)
            })
            .collect();
        Series { local, to_registry }
    }

    /// The process's series of a request from where dispatch got (the references point
    /// into `gw`, this generation's gateway).
    pub fn series(
        &self,
        gw: &Gateway,
        api: Option<&Api>,
        stage: Option<&Stage>,
        route: Option<&Route>,
    ) -> usize {
        let i = self.local.series(gw, api, stage, route);
        self.to_registry.get(i).copied().unwrap_or(0)
    }
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
        // One size for client and backend buffers: a request or response head must fit.
        let buf_size = s.read_buffer_bytes.max(s.max_header_bytes + 1);
        let unix_offset_ns = traffic_state::unix_offset_ns(&traffic);
        let gen = Gen::new(
            index,
            gateway,
            traffic,
            &ops.layout,
            ops.metrics.pool_idle.clone(),
        );
        Shard {
            index,
            gen: RefCell::new(Rc::new(gen)),
            bufs: BufPool::new(buf_size, BUFS_KEPT),
            ids: RefCell::new(RequestIds::new(seed)),
            log: ShardLog::new(ops.log_senders, ops.metrics.clone()),
            metrics: ops.metrics,
            registry_layout: ops.layout,
            draining: Cell::new(false),
            upstream_lines: [
                RateLimited::new(EVENT_EVERY),
                RateLimited::new(EVENT_EVERY),
                RateLimited::new(EVENT_EVERY),
                RateLimited::new(EVENT_EVERY),
            ],
            accept_lines: RateLimited::new(EVENT_EVERY),
            unix_offset_ns: Cell::new(unix_offset_ns),
        }
    }

    /// The configuration a request starting now runs on (a reference count, no copy).
    #[inline]
    pub fn generation(&self) -> Rc<Gen> {
        self.gen.borrow().clone()
    }

    /// How long a connection may wait for its next request (from the current configuration;
    /// read before the wait, without taking the generation).
    #[inline]
    pub fn idle_timeout(&self) -> Duration {
        self.gen.borrow().gateway.settings.idle_timeout
    }

    /// Whether `gen` is still the configuration new requests get.
    pub fn is_current(&self, gen: &Rc<Gen>) -> bool {
        Rc::ptr_eq(&self.gen.borrow(), gen)
    }

    /// Installs `gen` for the requests that start from now on; the old generation lives on
    /// until the requests holding it finish. Returns it.
    pub fn swap(&self, gen: Gen) -> Rc<Gen> {
        std::mem::replace(&mut *self.gen.borrow_mut(), Rc::new(gen))
    }

    /// Re-reads the wall clock against the bucket clock (once per rebalance tick; every
    /// generation shares the first one's epoch).
    pub fn refresh_clock(&self, traffic: &TrafficShared) {
        self.unix_offset_ns
            .set(traffic_state::unix_offset_ns(traffic));
    }

    pub fn next_request_id(&self) -> [u8; 36] {
        self.ids.borrow_mut().next()
    }
}

/// One request's view of its shard: the shard itself (through `Deref`) and the generation
/// the request started on, whose parts are fields under the names the connection code reads
/// (`gateway`, `pools`, `secure`, `auth_caches`, `auth_inflight`, `layout`). Borrowed from an
/// `Rc<Gen>` held for the request: a reload in the middle does not change what it sees.
pub struct Turn<'a> {
    shard: &'a Shard,
    pub gen: &'a Gen,
    pub gateway: &'a Gateway,
    pub pools: &'a RefCell<Pools>,
    pub secure: &'a [SecureSlot],
    pub auth_caches: &'a RefCell<Caches>,
    pub auth_inflight: &'a Inflight,
    pub layout: &'a Series,
}

impl Deref for Turn<'_> {
    type Target = Shard;
    fn deref(&self) -> &Shard {
        self.shard
    }
}

impl<'a> Turn<'a> {
    #[inline]
    pub fn new(shard: &'a Shard, gen: &'a Gen) -> Turn<'a> {
        Turn {
            shard,
            gen,
            gateway: &gen.gateway,
            pools: &gen.pools,
            secure: &gen.secure,
            auth_caches: &gen.auth_caches,
            auth_inflight: &gen.auth_inflight,
            layout: &gen.layout,
        }
    }

    /// The traffic clocks at `t` (bucket time and UTC seconds), without a clock read.
    pub fn traffic_now(&self, t: Instant) -> Now {
        let mono_ns = self.gen.traffic.mono_ns(t);
        let unix_ns = i128::from(mono_ns) + self.shard.unix_offset_ns.get();
        Now {
            mono_ns,
            unix_secs: i64::try_from(unix_ns.div_euclid(1_000_000_000)).unwrap_or(0),
        }
    }

    /// The throttle-and-quota phase's decision, with this generation's state (its inputs were
    /// taken from the head by `pipeline::throttle_input`).
    pub fn throttle(
        &self,
        input: &pipeline::ThrottleInput<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), Failure> {
        let started = ctx.started;
        pipeline::throttle_apply(
            &self.gen.gateway,
            input,
            ctx,
            &mut self.gen.limits.borrow_mut(),
            &self.gen.traffic.store,
            || self.traffic_now(started),
        )
    }
}
