//! One shard: the state a core owns. Plain per-core data: the accept loop that serves
//! connections with it lives in `runtime`, the swap of configurations in `reload`.
//!
//! - `Shard`: what outlives a configuration: request-id generator, buffers, metrics, access
//!   log buffers, drain state, rate-limited log lines, and the current `Gen`.
//! - `Gen` (one configuration generation as this shard runs it): its copy of the compiled
//!   gateway and every piece of state indexed by it: backend pools, https client state,
//!   authorizer caches, traffic-control buckets and quota leases, the shared traffic state, its
//!   metric series and their counters, its access log buffers. A reload builds a new `Gen` and swaps it in between requests
//!   (`Shard::swap`); a request holds its `Rc<Gen>` (through a `Turn`) to its end, so it
//!   finishes on the configuration it started on.
//! - `Turn`: one request's view: the shard plus the generation it runs on, with the
//!   generation's parts under the names the connection code uses.
//!
//! Nothing here is written by other cores (the admin listener only reads `metrics`), except
//! `Gen::traffic` (the quota store and the rebalance exchange, `traffic_state`), never touched
//! per request except when a quota lease runs out.

use crate::buffer::BufPool;
use crate::logging::{GenLog, RateLimited, ShardLog, Sinks};
use crate::metrics::{GenMetrics, Layout, Registry, ShardMetrics};
use crate::traffic_state::{self, TrafficShared};
use crate::upstream::{self, Pools, SecureSlot};
use std::cell::{Cell, RefCell};
use std::ops::Deref;
use std::rc::Rc;
use std::sync::mpsc::SyncSender;
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
    /// This shard's counters that do not depend on the configuration (read by the admin
    /// listener's scrapes; each generation has its own series counters, `Series`).
    pub metrics: Arc<ShardMetrics>,
    /// Where a new generation registers its counters.
    pub registry: Arc<Registry>,
    /// Access log buffers, one per destination a generation uses (`Gen::log`).
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
    /// This generation's metric series and their counters on this shard.
    pub layout: Series,
    /// This generation's access log buffers (shared with the other generations of this shard
    /// that log to the same destinations).
    pub log: Sinks,
}

impl Gen {
    /// Shard `index`'s state for `gateway` (fresh pools, caches, buckets and leases; `reload`
    /// carries over what did not change); its counters are registered with `registry`, its
    /// access log buffers come from `log` (`senders`: the writers' senders by slot).
    pub fn build(
        index: usize,
        gateway: Gateway,
        traffic: Arc<TrafficShared>,
        registry: &Registry,
        log: &ShardLog,
        senders: &[Option<SyncSender<Vec<u8>>>],
    ) -> Gen {
        let local = Layout::new(&gateway);
        let counters = registry.register(index, &local);
        let sinks = log.sinks_for(&gateway, senders);
        Gen::with(index, gateway, traffic, Series { local, counters }, sinks)
    }

    /// A generation whose counters no registry reports and that writes no access log (unit
    /// tests of other modules; the last two arguments are unused).
    #[cfg(test)]
    pub fn new(
        index: usize,
        gateway: Gateway,
        traffic: Arc<TrafficShared>,
        _layout: &Layout,
        _pool_gauges: Arc<[std::sync::atomic::AtomicU64]>,
    ) -> Gen {
        let local = Layout::new(&gateway);
        let counters = Arc::new(GenMetrics::detached(index, &local));
        Gen::with(
            index,
            gateway,
            traffic,
            Series { local, counters },
            Sinks::default(),
        )
    }

    fn with(
        index: usize,
        gateway: Gateway,
        traffic: Arc<TrafficShared>,
        layout: Series,
        log: Sinks,
    ) -> Gen {
        let s = &gateway.settings;
        let upstreams = gateway.upstreams.len();
        let pools = Pools::new(
            upstreams,
            s.upstream_pool_size,
            s.upstream_idle_timeout,
            layout.counters.pool_idle.clone(),
        );
        let secure = upstream::secure(gateway.upstreams.iter().map(|u| u.tls.as_ref()));
        Gen {
            secure,
            pools: RefCell::new(pools),
            auth_caches: RefCell::new(Caches::for_gateway(&gateway)),
            auth_inflight: Inflight::default(),
            limits: RefCell::new(traffic.shard_state(index)),
            layout,
            log,
            gateway,
            traffic,
        }
    }
}

/// A generation's metric series: its layout (series numbered in this generation) and its
/// counter block on this shard, registered with the process's registry, which sums the
/// blocks of every generation and shard by labels at each scrape. A route present before
/// and after a reload keeps its labels, so its counts continue in the same series.
pub struct Series {
    local: Layout,
    pub counters: Arc<GenMetrics>,
}

impl Series {
    /// The series of a request from where dispatch got (the references point into `gw`,
    /// this generation's gateway): an index into this generation's counters.
    pub fn series(
        &self,
        gw: &Gateway,
        api: Option<&Api>,
        stage: Option<&Stage>,
        route: Option<&Route>,
    ) -> usize {
        self.local.series(gw, api, stage, route)
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
    pub registry: Arc<Registry>,
    /// The access log writers' senders, by slot (`None`: retired).
    pub log_senders: Vec<Option<SyncSender<Vec<u8>>>>,
}

/// How long after a burst of connections ended the shard first trims its memory
/// (`Shard::trim_later`): long enough that a burst that comes back finds its buffers, short
/// enough that RSS is back well within a minute.
const TRIM_AFTER: Duration = Duration::from_secs(5);

/// The longest a shard waits for a burst's pooled backend connections to expire before its
/// second trim (a longer `upstream_idle_timeout` gets no second trim).
const TRIM_POOLED_MAX: Duration = Duration::from_secs(600);

/// Gives back what a burst left: the socket layer's tables, the executor's (run queues, timer
/// map, ring submission queues), then the buffer pool's free lists and the allocator's free
/// pages (`BufPool::trim`, last, so that it returns what the others freed).
fn trim(bufs: &BufPool) {
    crate::net::trim();
    glommio::executor().trim();
    bufs.trim();
}

impl Shard {
    /// Called when a burst of connections ended (`BufPool::conn_closed` said so): trims the
    /// shard's memory `TRIM_AFTER` from now, and again once the backend connections the burst
    /// left in the pools have expired (parked by now, they are closed within the current
    /// `upstream_idle_timeout`), which gives back their sockets' slots too.
    pub fn trim_later(&self) {
        let bufs = self.bufs.clone();
        let pooled = self.gen.borrow().gateway.settings.upstream_idle_timeout;
        glommio::spawn_local(async move {
            glommio::timer::sleep(TRIM_AFTER).await;
            trim(&bufs);
            if pooled <= TRIM_POOLED_MAX {
                // A second past the last expiry: the pool's reaper has closed them by then.
                let wait = pooled.saturating_sub(TRIM_AFTER) + Duration::from_secs(1);
                glommio::timer::sleep(wait).await;
                trim(&bufs);
            }
        })
        .detach();
    }

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
        let log = ShardLog::new(ops.metrics.clone());
        let gen = Gen::build(
            index,
            gateway,
            traffic,
            &ops.registry,
            &log,
            &ops.log_senders,
        );
        Shard {
            index,
            gen: RefCell::new(Rc::new(gen)),
            bufs: BufPool::new(buf_size, BUFS_KEPT),
            ids: RefCell::new(RequestIds::new(seed)),
            log,
            metrics: ops.metrics,
            registry: ops.registry,
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

    /// The idle and header-read timeouts of the current configuration (read before a wait,
    /// without holding the generation across it).
    #[inline]
    pub fn read_timeouts(&self) -> (Duration, Duration) {
        let s = &self.gen.borrow().gateway.settings;
        (s.idle_timeout, s.header_read_timeout)
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
/// (`gateway`, `pools`, `secure`, `auth_caches`, `auth_inflight`, `layout`, `counters`,
/// `log`). Borrowed from an
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
    /// This generation's counters on this shard (series, authorizer caches).
    pub counters: &'a GenMetrics,
    /// The access log (shadows `Shard::log`: the request writes to its generation's sinks).
    pub log: GenLog<'a>,
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
            counters: &gen.layout.counters,
            log: shard.log.with(&gen.log),
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
