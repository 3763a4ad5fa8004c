//! The sync loop: `start` spawns the `tollgate-cluster` thread (`Sync`), whose `run` sleeps to
//! the next sync (waking early for misses, reload orders and the exit), `tick` runs one sync,
//! and `Ready` tells the runtime when the host may serve.

use redis::RedisResult;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate_core::gateway::Gateway;
use tollgate_core::traffic::bucket::Limit;
use tollgate_core::traffic::cluster::{self as logic, ClusterSettings, HostStock};

use super::counter::{counters, Counter};
use super::health::Conn;
use super::ids::limit_ids;
use super::link::Link;
use super::quota::{Mode, Queued};
use super::reload::{Follow, Retiring};
use super::stats::STATS;
use crate::traffic_state::TrafficShared;

/// How much longer than `fail_open_after` (plus two sync intervals) `start` waits for the
/// host to be ready before starting the shards anyway.
pub(super) const READY_SLACK: Duration = Duration::from_secs(1);

/// Longest sleep between looks at whether a reload handed over (`Sync::retire_check`) while
/// one is pending. Otherwise the thread sleeps to the next sync: a miss, a reload order and
/// the exit wake it (`HostStock`'s and `Link`'s waker).
pub(super) const HANDOVER_POLL: Duration = Duration::from_millis(10);
/// Credit is given only once the host registered this many sync intervals ago: every other
/// host has synced since and counts it, so the budgets (limit / 1000 / hosts) of all hosts
/// sum to at most 0.1 % of the limit.
pub(super) const CREDIT_AFTER_SYNCS: u32 = 2;

pub(super) fn unix_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

pub(super) struct Sync {
    pub(super) shared: Arc<TrafficShared>,
    /// Reload orders (`follow`).
    pub(super) orders: mpsc::Receiver<Follow>,
    pub(super) retiring: Vec<Retiring>,
    pub(super) settings: ClusterSettings,
    pub(super) client: Option<redis::Client>,
    pub(super) conn: Option<Conn>,
    pub(super) counters: Vec<Counter>,
    pub(super) limits: Vec<Limit>,
    /// Per limit, its stable identity in Redis (`limit_ids`), and the way back.
    pub(super) ids: Vec<String>,
    pub(super) by_id: HashMap<String, usize>,
    pub(super) smoothed: Vec<u64>,
    /// The sync in flight: per limit, the demand taken from the link and the smoothed
    /// demand published (`queue_demand`); kept between syncs for their capacity.
    pub(super) swapped: Vec<u64>,
    pub(super) pending: Vec<u64>,
    /// The lease calls of the round in flight (kept between rounds for its capacity).
    pub(super) queued: Vec<Queued>,
    pub(super) totals: Vec<u64>,
    pub(super) hosts: usize,
    /// When this host may start admitting on credit (set at its first registration).
    pub(super) credit_from: Option<Instant>,
    /// A full sync succeeded once (quotas leased, the host registered).
    pub(super) synced: bool,
    pub(super) host_id: String,
    /// Connections made (for the epoch candidate); `epoch`: the value Redis had when we
    /// last connected.
    pub(super) attempts: u64,
    pub(super) epoch: Option<String>,
    pub(super) last_ok: Instant,
    pub(super) failed_open: bool,
    /// Since when Redis is unreachable (for the log).
    pub(super) down_since: Option<Instant>,
    pub(super) backoff: Duration,
    pub(super) next_attempt: Instant,
    pub(super) last_log: Option<Instant>,
    pub(super) suppressed: u64,
}

/// The sync thread's word that the host may serve (`start`, `Ready::wait`).
pub struct Ready {
    pub(super) rx: mpsc::Receiver<()>,
    pub(super) timeout: Duration,
}

impl Ready {
    /// Waits until the host is ready (at most `fail_open_after` + three sync intervals + 1 s).
    pub fn wait(self) {
        let _ = self.rx.recv_timeout(self.timeout);
    }
}

/// Starts the `tollgate-cluster` thread for `shared` (whose store is a `HostStock` and whose
/// `link` is set). The returned `Ready` says when the host is ready: its first full sync
/// succeeded (an initial lease for every plan and key, its throttle demand registered) and
/// the other hosts have had `CREDIT_AFTER_SYNCS` intervals to count it, or, without Redis,
/// it failed open (`fail_open_after`). The runtime starts the shards (and so `/readyz` says
/// ready) after that.
pub fn start(
    shared: Arc<TrafficShared>,
    settings: ClusterSettings,
    gw: &Gateway,
) -> Result<Ready, String> {
    let client = redis::Client::open(settings.redis.as_str())
        .map_err(|e| format!("tollgate: [cluster] redis `{}`: {e}", settings.redis))?;
    let t = shared.tables();
    let limits = t.limits.clone();
    let ids = limit_ids(gw);
    let ready_wait =
        settings.fail_open_after + settings.sync_interval * (CREDIT_AFTER_SYNCS + 1) + READY_SLACK;
    let mut by_id = HashMap::with_capacity(ids.len());
    for (b, id) in ids.iter().enumerate() {
        by_id.entry(id.clone()).or_insert(b);
    }
    let nonce = format!(
        "{:x}{:x}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let (orders_tx, orders) = mpsc::channel();
    if let Some(link) = shared.link.as_ref() {
        let _ = link.follow.set(orders_tx);
    }
    let mut sync = Sync {
        orders,
        retiring: Vec::new(),
        counters: counters(t, &settings.key_prefix),
        smoothed: vec![0; limits.len()],
        swapped: Vec::with_capacity(limits.len()),
        pending: Vec::with_capacity(limits.len()),
        queued: Vec::new(),
        totals: vec![0; limits.len()],
        limits,
        ids,
        by_id,
        credit_from: None,
        synced: false,
        hosts: 1,
        host_id: nonce,
        attempts: 0,
        epoch: None,
        last_ok: Instant::now(),
        failed_open: false,
        down_since: None,
        backoff: settings.sync_interval,
        next_attempt: Instant::now(),
        last_log: None,
        suppressed: 0,
        client: Some(client),
        conn: None,
        shared,
        settings,
    };
    STATS.enabled.store(true, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("tollgate-cluster".to_string())
        .spawn(move || sync.run(&tx))
        .map_err(|e| format!("tollgate: cannot start the cluster sync thread: {e}"))?;
    Ok(Ready {
        rx,
        timeout: ready_wait,
    })
}

impl Sync {
    pub(super) fn stock(&self) -> Option<&HostStock> {
        self.shared.store.cluster()
    }

    pub(super) fn link(&self) -> Option<&Link> {
        self.shared.link.as_ref()
    }

    /// Whether the host may report ready: synced once and counted by the other hosts
    /// (credit allowed), or failed open.
    pub(super) fn ready(&self) -> bool {
        self.failed_open || (self.synced && self.credit_allowed())
    }

    pub(super) fn credit_allowed(&self) -> bool {
        self.credit_from.is_some_and(|t| Instant::now() >= t)
    }

    pub(super) fn run(&mut self, ready: &mpsc::Sender<()>) {
        if let Some(s) = self.stock() {
            s.set_waker(std::thread::current());
        }
        if let Some(l) = self.link() {
            l.set_waker(std::thread::current());
        }
        self.tick(false);
        let mut told = false;
        loop {
            if !told && self.ready() {
                told = true;
                let _ = ready.send(());
            }
            let stopping = self.link().is_some_and(|l| l.stop.load(Ordering::Acquire));
            if stopping {
                self.tick(true);
                if let Some(l) = self.link() {
                    l.done.store(true, Ordering::Release);
                }
                return;
            }
            // Sleep to the next sync, or to just past the next UTC midnight (periods roll
            // there). A miss, a reload order and the exit unpark the thread; only while a
            // reload's hand-over is pending does it look every `HANDOVER_POLL`.
            let now = unix_ms();
            let to_midnight = 86_400_000 - now % 86_400_000 + 1;
            let interval = u64::try_from(self.settings.sync_interval.as_millis()).unwrap_or(100);
            let deadline = Instant::now() + Duration::from_millis(interval.min(to_midnight));
            while Instant::now() < deadline {
                if self.link().is_some_and(|l| l.stop.load(Ordering::Acquire)) {
                    break;
                }
                // A shard found its stock empty: refill now, not at the next sync. The store
                // is armed again after a refill that reached Redis; else (Redis down) at the
                // next regular sync: while Redis is gone, refused requests wake this thread
                // at most once per sync interval. (A spent counter wakes nobody.)
                while let Ok(order) = self.orders.try_recv() {
                    self.follow(order);
                }
                // (Shards not yet swapped by a reload miss on the replaced store.)
                let woken = self.stock().is_some_and(HostStock::take_wake)
                    | self
                        .retiring
                        .iter()
                        .any(|r| r.shared.store.cluster().is_some_and(HostStock::take_wake));
                if woken {
                    STATS.wakeups.fetch_add(1, Ordering::Relaxed);
                    // Past midnight UTC: start the new periods now.
                    self.roll_periods();
                }
                let reset = self.retire_check();
                if (woken || reset) && self.conn.is_some() {
                    match self.sync_quotas(Mode::Refill) {
                        Ok(()) => self.arm(),
                        Err(e) => self.failed(&e),
                    }
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if self.retiring.iter().any(|r| r.syncs_left.is_none()) {
                    std::thread::park_timeout(left.min(HANDOVER_POLL));
                } else {
                    std::thread::park_timeout(left);
                }
            }
            if !self.link().is_some_and(|l| l.stop.load(Ordering::Acquire)) {
                self.tick(false);
            }
        }
    }

    /// One sync (`last`: the exit path; return everything, lease nothing).
    pub(super) fn tick(&mut self, last: bool) {
        self.roll_periods();
        if self.conn.is_none() && Instant::now() >= self.next_attempt {
            if let Err(e) = self.connect() {
                self.failed(&e);
            }
        }
        self.retire_check();
        if self.conn.is_some() {
            let r = if last {
                self.sync_quotas(Mode::Last)
            } else {
                self.sync_round()
            };
            match r {
                Ok(()) => self.succeeded(),
                Err(e) => self.failed(&e),
            }
        }
        self.check_fail_open();
        self.set_credit_budgets();
        self.arm();
    }

    /// A regular sync in one round trip: the lease calls (`queue_quotas`) and the demand
    /// script (`queue_demand`) on one pipeline, Redis running them in that order. Booked as
    /// when they went one after the other: the leases first; if one failed, the sync fails
    /// and the demand goes back to the link (its reply is not booked).
    fn sync_round(&mut self) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        let mut queued = std::mem::take(&mut self.queued);
        queued.clear();
        self.queue_quotas(&mut pipe, Mode::Sync, &mut queued);
        let demand = self.queue_demand(&mut pipe);
        let n = queued.len() + usize::from(demand);
        let r = if n == 0 {
            Ok(())
        } else {
            self.send(&pipe, n).and_then(|replies| {
                let mut replies = replies.into_iter();
                self.apply_quotas(&mut replies, &queued)?;
                self.count_retiring_sync(Mode::Sync);
                if demand {
                    self.apply_demand(replies.next())
                } else {
                    Ok(())
                }
            })
        };
        self.restore_demand();
        self.queued = queued;
        r
    }

    /// Lets the next miss wake this thread, on the store it stocks and on replaced ones.
    pub(super) fn arm(&self) {
        if let Some(s) = self.stock() {
            s.arm();
        }
        for r in &self.retiring {
            if let Some(s) = r.shared.store.cluster() {
                s.arm();
            }
        }
    }

    /// Every counter's credit budget: floor(0.1 % of the limit / hosts last seen), 0 while
    /// Redis says the quota is spent or before the other hosts count this one.
    pub(super) fn set_credit_budgets(&self) {
        let Some(stock) = self.stock() else {
            return;
        };
        let allowed = self.credit_allowed();
        for c in &self.counters {
            let budget = if allowed && !c.spent {
                logic::credit_budget(c.limit, self.hosts)
            } else {
                0
            };
            stock.set_credit_budget(c.index, budget);
        }
    }
}
