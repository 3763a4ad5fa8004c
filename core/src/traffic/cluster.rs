//! Quotas and throttles shared by several hosts through Redis: the pure logic (no I/O).
//!
//! - `ClusterSettings`: the validated `[cluster]` section.
//! - `HostStock`: the host-local quota store in cluster mode. It implements `QuotaStore`, so
//!   shards lease from it exactly as they lease from `AtomicQuotaStore`; but it only ever
//!   hands out requests the host's sync thread already leased from Redis (its *stock*), so a
//!   request never waits for Redis and the hosts together never admit more than Redis
//!   granted. The sync thread refills the stock, returns idle stock, rolls periods, and
//!   switches the store to *fail open* (every lease granted, one request at a time, counted
//!   so it can be added to Redis later) when Redis has been unreachable for too long.
//! - *Credit*: a shard that finds the stock empty while Redis has not said the quota is spent
//!   admits on credit, one request at a time, within a per-counter budget the sync thread sets
//!   (`credit_budget`: floor(0.1 % of the limit / hosts), 0 below 1). A request admitted on
//!   credit is counted in `taken` (or, for a period the sync thread has not started yet, in
//!   `early`) with no stock behind it, so it is owed to Redis and charged at the next sync,
//!   which frees that much budget again (`settle_credit`). At most the budget is ever
//!   admitted and not yet charged, so the hosts together over-admit at most the sum of their
//!   budgets.
//! - *Wake-ups*: the first miss after the sync thread armed the store wakes it (`arm`,
//!   `take_wake`); further misses do not until it arms again, so refused requests wake it at
//!   most once per arming (once per sync interval while Redis is unreachable).
//! - `HostStock` accounting: per counter, `stock` (leased from Redis, not handed to a shard)
//!   and `taken` (handed to shards, net of what they gave back). The sync thread remembers
//!   `held`, what Redis counts for this host in the period; `stock + taken - held` is what the
//!   host owes Redis (requests admitted while failed open, or everything after Redis lost its
//!   data). Writers decrement before they increment and the sync thread reads `taken` before
//!   `stock`, so a concurrent read can only under-state what is owed, never invent a debt.
//! - `grant`: the lease arithmetic the Redis Lua script runs (capped grant, smaller blocks as
//!   the limit nears), mirrored here so it is unit-tested; `refill_want` / `idle_return`: how
//!   much the sync thread asks for and gives back.
//! - `host_share`: a throttle's rate and burst for one host from every host's demand — the
//!   rule `ShareBalancer` applies across shards (a floor each, the rest by demand), applied
//!   across hosts; the result is the host's own limit, which its shards then share.

use super::bucket::Limit;
use super::quota::{AtomicQuotaStore, QuotaStore};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The `[cluster]` section, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `redis://[user:password@]host[:port][/db]`.
    pub redis: String,
    /// How often leases and throttle shares are reconciled.
    pub sync_interval: Duration,
    /// Prefix of every Redis key tollgate writes.
    pub key_prefix: String,
    /// How long without Redis before quotas stop being checked and throttles fall back to
    /// rate / last-known-hosts.
    pub fail_open_after: Duration,
}

/// Largest block one host leases from Redis in one call.
pub const MAX_HOST_BLOCK: u64 = 4096;

/// Redis never grants more than this fraction of what is left (1/8), at least 1: blocks get
/// smaller as the limit nears, so the requests parked on hosts near the end are few.
pub const REMAINING_DIVISOR: u64 = 8;

/// The grant of one lease call, as the Lua script computes it: `used` already counted in
/// the period, `want` asked for. At most `want`, at most `MAX_HOST_BLOCK`, at most
/// `max(1, remaining / 8)`, never beyond the limit.
pub fn grant(limit: u64, used: u64, want: u64) -> u64 {
    let remaining = limit.saturating_sub(used);
    want.min(MAX_HOST_BLOCK)
        .min((remaining / REMAINING_DIVISOR).max(1))
        .min(remaining)
}

/// How many requests to ask Redis for: the stock should cover two sync intervals at the
/// last interval's consumption, and at least one request per shard (so a key's first request
/// on a host finds something), at most `MAX_HOST_BLOCK`. 0 when the stock is enough.
pub fn refill_want(stock: u64, consumed_last_interval: u64, shards: usize) -> u64 {
    let keep = u64::try_from(shards.max(1)).unwrap_or(1);
    let target = consumed_last_interval
        .saturating_mul(2)
        .max(keep)
        .min(MAX_HOST_BLOCK);
    // Low-water mark: refill once the stock is below half of the target (or below keep).
    if stock >= keep && stock.saturating_mul(2) >= target {
        0
    } else {
        target.saturating_sub(stock)
    }
}

/// How much idle stock to give back to Redis: when nothing was consumed for `idle_intervals`
/// ≥ 2, everything above one request per shard; everything when the quota is known to be
/// spent (others may need what is parked here).
pub fn idle_return(stock: u64, idle_intervals: u32, shards: usize, spent: bool) -> u64 {
    if idle_intervals < 2 {
        return 0;
    }
    if spent {
        return stock;
    }
    stock.saturating_sub(u64::try_from(shards.max(1)).unwrap_or(1))
}

/// A host's credit budget for a counter of `limit` when `hosts` hosts share it:
/// floor(0.1 % × limit ÷ hosts) (0 when that is below 1). The budgets of all hosts sum to at
/// most 0.1 % of the limit: the most the hosts can admit on credit before Redis says the
/// quota is spent.
pub fn credit_budget(limit: u64, hosts: usize) -> u64 {
    let hosts = u64::try_from(hosts.max(1)).unwrap_or(u64::MAX);
    limit / 1000 / hosts
}

/// Smoothed demand, as `ShareBalancer` smooths it: the last interval weighs half.
pub fn smooth(previous: u64, demand: u64) -> u64 {
    (previous / 2).saturating_add(demand.saturating_mul(1024))
}

/// One host's part of `limit` when its (smoothed) demand is `own` out of `total` over
/// `hosts` hosts: a floor of 1 % of the rate over the hosts, the rest in proportion to the
/// demand (equal parts when nobody asked). The parts of all hosts sum to the limit (up to
/// rounding down) when they saw the same totals. Burst: the same proportion, at least one
/// token when the burst has one per host.
pub fn host_share(limit: Limit, own: u64, total: u64, hosts: usize) -> Limit {
    let n = u128::try_from(hosts.max(1)).unwrap_or(1);
    let (own, total) = if total == 0 || own > total {
        (1u128, n)
    } else {
        (u128::from(own), u128::from(total))
    };
    let part = |whole: u128, floor: u128| -> u128 {
        let floor = floor.min(whole / n);
        floor + (whole - floor * n) * own / total
    };
    let rate = u128::from(limit.rate_milli);
    let burst = u128::from(limit.burst);
    let burst_floor = if burst >= n { 1 } else { 0 };
    Limit {
        rate_milli: u64::try_from(part(rate, rate / (100 * n))).unwrap_or(u64::MAX),
        burst: u64::try_from(part(burst, burst_floor.max(burst / (100 * n)))).unwrap_or(u64::MAX),
    }
}

/// The fallback share when Redis has been gone for `fail_open_after`: an equal part over the
/// hosts last seen (their sum stays the configured rate when all of them lost Redis).
pub fn fallback_share(limit: Limit, last_known_hosts: usize) -> Limit {
    let n = u64::try_from(last_known_hosts.max(1)).unwrap_or(1);
    Limit {
        rate_milli: limit.rate_milli / n,
        burst: (limit.burst / n).max(u64::from(limit.burst > 0)),
    }
}

/// The quota store a host's shards lease from: the in-process counters, or (with
/// `[cluster]`) the stock leased from Redis. One branch per lease refill, none per request.
#[derive(Debug)]
pub enum HostQuotaStore {
    Local(AtomicQuotaStore),
    Cluster(HostStock),
}

impl HostQuotaStore {
    /// The cluster stock, if this is one.
    pub fn cluster(&self) -> Option<&HostStock> {
        match self {
            HostQuotaStore::Cluster(s) => Some(s),
            HostQuotaStore::Local(_) => None,
        }
    }
}

impl QuotaStore for HostQuotaStore {
    fn lease(&self, c: usize, day: i64, limit: u64, initial: u64, shards: usize) -> u64 {
        match self {
            HostQuotaStore::Local(s) => s.lease(c, day, limit, initial, shards),
            HostQuotaStore::Cluster(s) => s.lease(c, day, limit, initial, shards),
        }
    }

    fn release(&self, c: usize, day: i64, n: u64) {
        match self {
            HostQuotaStore::Local(s) => s.release(c, day, n),
            HostQuotaStore::Cluster(s) => s.release(c, day, n),
        }
    }

    fn get(&self, c: usize) -> (i64, u64) {
        match self {
            HostQuotaStore::Local(s) => s.get(c),
            HostQuotaStore::Cluster(s) => s.get(c),
        }
    }

    fn set(&self, c: usize, day: i64, used: u64) {
        match self {
            HostQuotaStore::Local(s) => s.set(c, day, used),
            HostQuotaStore::Cluster(s) => s.set(c, day, used),
        }
    }
}

/// One counter of the host stock.
#[derive(Debug, Default)]
struct Slot {
    /// Period (first UTC day) the stock belongs to.
    day: AtomicU64,
    /// Requests leased from Redis, not yet handed to a shard.
    stock: AtomicU64,
    /// Handed to shards in this period, net of what they gave back.
    taken: AtomicU64,
    /// The period's count in Redis, as of the last sync (what `get` reports).
    global: AtomicU64,
    /// Redis said nothing is left: a miss does not wake the sync thread, no credit.
    spent: AtomicBool,
    /// Requests this host may admit on credit (set by the sync thread).
    credit_budget: AtomicU64,
    /// Requests admitted on credit and not yet charged to Redis.
    credit_out: AtomicU64,
    /// Admitted on credit for a period newer than the stock's (before the sync thread
    /// started it); they join `taken` once it has.
    early: AtomicU64,
    /// Requests refused for an empty stock (not spent) since the sync thread last looked:
    /// demand the stock did not cover.
    refused: AtomicU64,
}

/// The host-local quota store in cluster mode (see the module doc).
#[derive(Debug)]
pub struct HostStock {
    /// Per counter; a reload's successor store shares the slots of counters whose identity
    /// (plan, key, quota period) is unchanged (`successor`).
    slots: Box<[Arc<Slot>]>,
    fail_open: AtomicBool,
    /// A miss may wake the sync thread (cleared by the miss that does).
    armed: AtomicBool,
    /// A miss woke the sync thread since it last looked.
    woken: AtomicBool,
    /// The sync thread, woken (unparked) by a miss on a counter that is not spent.
    waker: std::sync::OnceLock<std::thread::Thread>,
}

fn day_word(day: i64) -> u64 {
    u64::try_from(day).unwrap_or(0)
}

fn word_day(word: u64) -> i64 {
    i64::try_from(word).unwrap_or(0)
}

impl HostStock {
    pub fn new(counters: usize) -> HostStock {
        HostStock {
            slots: (0..counters).map(|_| Arc::new(Slot::default())).collect(),
            fail_open: AtomicBool::new(false),
            armed: AtomicBool::new(true),
            woken: AtomicBool::new(false),
            waker: std::sync::OnceLock::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// The store of a reloaded configuration: counter `j` shares this store's slot `i` when
    /// `from[j] == Some(i)` (same plan, key and quota period: stock, requests taken, credit
    /// and period stay one set of atomics, so shards on either generation lease from and
    /// give back to the same counts and nothing is moved, lost or counted twice); the other
    /// counters start empty. Fail-open state and the sync thread's waker carry over.
    pub fn successor(&self, from: &[Option<usize>]) -> HostStock {
        let waker = std::sync::OnceLock::new();
        if let Some(t) = self.waker.get() {
            let _ = waker.set(t.clone());
        }
        HostStock {
            slots: from
                .iter()
                .map(|i| {
                    i.and_then(|i| self.slots.get(i).cloned())
                        .unwrap_or_default()
                })
                .collect(),
            fail_open: AtomicBool::new(self.fail_open()),
            armed: AtomicBool::new(true),
            woken: AtomicBool::new(false),
            waker,
        }
    }

    /// Whether this store's counter `c` and `other`'s counter `oc` are one slot (`successor`).
    pub fn shares_slot(&self, c: usize, other: &HostStock, oc: usize) -> bool {
        match (self.slots.get(c), other.slots.get(oc)) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn set_fail_open(&self, on: bool) {
        self.fail_open.store(on, Ordering::Release);
    }

    pub fn fail_open(&self) -> bool {
        self.fail_open.load(Ordering::Acquire)
    }

    /// The thread a miss wakes (the sync thread, once).
    pub fn set_waker(&self, t: std::thread::Thread) {
        let _ = self.waker.set(t);
    }

    /// Whether Redis said counter `c` is spent (misses on it do not wake the sync thread).
    pub fn set_spent(&self, c: usize, spent: bool) {
        if let Some(s) = self.slots.get(c) {
            s.spent.store(spent, Ordering::Relaxed);
        }
    }

    /// A shard found the stock empty (or behind its period): wakes the sync thread if it is
    /// armed (once until it arms again).
    fn wake(&self) {
        if self.armed.load(Ordering::Relaxed) && self.armed.swap(false, Ordering::AcqRel) {
            self.woken.store(true, Ordering::Release);
            if let Some(t) = self.waker.get() {
                t.unpark();
            }
        }
    }

    /// Lets the next miss wake the sync thread again (sync thread: at each regular sync, and
    /// after a refill that got something).
    pub fn arm(&self) {
        self.armed.store(true, Ordering::Release);
    }

    /// Whether a miss woke the sync thread since the last call (sync thread).
    pub fn take_wake(&self) -> bool {
        self.woken.swap(false, Ordering::AcqRel)
    }

    /// One request on credit, if the budget has room.
    fn credit(s: &Slot) -> bool {
        let budget = s.credit_budget.load(Ordering::Acquire);
        s.credit_out
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (v < budget).then_some(v + 1)
            })
            .is_ok()
    }

    /// Sets counter `c`'s credit budget (sync thread).
    pub fn set_credit_budget(&self, c: usize, budget: u64) {
        if let Some(s) = self.slots.get(c) {
            s.credit_budget.store(budget, Ordering::Release);
        }
    }

    /// `owed` requests of counter `c` were charged to Redis: that much credit is free again
    /// (sync thread). `owed` is read from `counts` before the charge, so credit admitted
    /// meanwhile stays outstanding.
    pub fn settle_credit(&self, c: usize, owed: u64) {
        if let Some(s) = self.slots.get(c) {
            let _ = s
                .credit_out
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                    Some(v - v.min(owed))
                });
        }
    }

    /// Requests admitted on credit and not yet charged (tests, metrics).
    pub fn credit_out(&self, c: usize) -> u64 {
        self.slots
            .get(c)
            .map_or(0, |s| s.credit_out.load(Ordering::Acquire))
    }

    /// Refused requests of counter `c` since the last call (`take`) or so far (sync thread).
    pub fn refused(&self, c: usize, take: bool) -> u64 {
        self.slots.get(c).map_or(0, |s| {
            if take {
                s.refused.swap(0, Ordering::AcqRel)
            } else {
                s.refused.load(Ordering::Acquire)
            }
        })
    }

    /// Moves the requests admitted early (for the stock's current period, before the sync
    /// thread started it) into `taken` (sync thread, after `roll`, before `counts`).
    pub fn absorb_early(&self, c: usize) {
        if let Some(s) = self.slots.get(c) {
            let e = s.early.swap(0, Ordering::AcqRel);
            if e > 0 {
                s.taken.fetch_add(e, Ordering::AcqRel);
            }
        }
    }

    /// The period counter `c`'s stock belongs to.
    pub fn day(&self, c: usize) -> i64 {
        self.slots
            .get(c)
            .map_or(0, |s| word_day(s.day.load(Ordering::Acquire)))
    }

    /// `(taken, stock)`, read in that order (see the module doc).
    pub fn counts(&self, c: usize) -> (u64, u64) {
        self.slots.get(c).map_or((0, 0), |s| {
            let taken = s.taken.load(Ordering::Acquire);
            (taken, s.stock.load(Ordering::Acquire))
        })
    }

    /// Starts period `day` for counter `c`: returns `(stock, taken)` of the old period and
    /// sets both to 0; the requests admitted early (on credit, for the new period) become the
    /// new period's `taken` (sync thread only).
    pub fn roll(&self, c: usize, day: i64) -> (u64, u64) {
        let Some(s) = self.slots.get(c) else {
            return (0, 0);
        };
        s.day.store(day_word(day), Ordering::Release);
        let stock = s.stock.swap(0, Ordering::AcqRel);
        let taken = s.taken.swap(0, Ordering::AcqRel);
        s.global.store(0, Ordering::Release);
        s.spent.store(false, Ordering::Relaxed);
        s.refused.store(0, Ordering::Relaxed);
        self.absorb_early(c);
        (stock, taken)
    }

    /// Adds `n` requests leased from Redis to the stock (sync thread only).
    pub fn stock_up(&self, c: usize, n: u64) {
        if let Some(s) = self.slots.get(c) {
            s.stock.fetch_add(n, Ordering::AcqRel);
        }
    }

    /// Takes up to `n` requests out of the stock to give back to Redis; returns how many.
    pub fn withdraw(&self, c: usize, n: u64) -> u64 {
        let Some(s) = self.slots.get(c) else {
            return 0;
        };
        let mut got = 0;
        let _ = s
            .stock
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                got = v.min(n);
                Some(v - got)
            });
        got
    }

    /// Records the period's count in Redis (for `get`: usage reports).
    pub fn set_global(&self, c: usize, used: u64) {
        if let Some(s) = self.slots.get(c) {
            s.global.store(used, Ordering::Release);
        }
    }
}

impl QuotaStore for HostStock {
    /// Never asks Redis: a block of the host's stock (a quarter of a fair share per shard).
    /// When the stock is empty (and Redis did not say the quota is spent) or belongs to an
    /// earlier period than the shard's clock says: one request on credit if the budget has
    /// room, else 0. Failed open: one request, granted and counted (`taken`) so it is added to
    /// Redis later.
    fn lease(
        &self,
        counter: usize,
        period_day: i64,
        _limit: u64,
        _initial: u64,
        shards: usize,
    ) -> u64 {
        let Some(s) = self.slots.get(counter) else {
            return 0;
        };
        if self.fail_open.load(Ordering::Relaxed) {
            s.taken.fetch_add(1, Ordering::AcqRel);
            return 1;
        }
        // A shard whose clock is behind takes from the stock's period as it is; one ahead
        // wakes the sync thread to start its period, admitting on credit meanwhile (nothing
        // of the new period is used yet: the old period's spent flag does not apply).
        if period_day > word_day(s.day.load(Ordering::Acquire)) {
            self.wake();
            if Self::credit(s) {
                s.early.fetch_add(1, Ordering::AcqRel);
                return 1;
            }
            s.refused.fetch_add(1, Ordering::Relaxed);
            return 0;
        }
        let mut grant = 0;
        let ok = s
            .stock
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                grant = super::quota::block_size(v, shards);
                (grant > 0).then(|| v - grant)
            });
        if ok.is_err() {
            if s.spent.load(Ordering::Relaxed) {
                return 0;
            }
            self.wake();
            if Self::credit(s) {
                s.taken.fetch_add(1, Ordering::AcqRel);
                return 1;
            }
            s.refused.fetch_add(1, Ordering::Relaxed);
            return 0;
        }
        s.taken.fetch_add(grant, Ordering::AcqRel);
        grant
    }

    /// Unused requests go back to the stock (same period only).
    fn release(&self, counter: usize, period_day: i64, n: u64) {
        let Some(s) = self.slots.get(counter) else {
            return;
        };
        if word_day(s.day.load(Ordering::Acquire)) != period_day {
            return;
        }
        let mut moved = 0;
        let _ = s
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                moved = v.min(n);
                Some(v - moved)
            });
        s.stock.fetch_add(moved, Ordering::AcqRel);
    }

    /// `(period, count in Redis as of the last sync)`.
    fn get(&self, counter: usize) -> (i64, u64) {
        self.slots.get(counter).map_or((0, 0), |s| {
            (
                word_day(s.day.load(Ordering::Acquire)),
                s.global.load(Ordering::Acquire),
            )
        })
    }

    /// Cluster counters are not restored from a state file (`[cluster]` excludes
    /// `state_file`); this only records the period's global count.
    fn set(&self, counter: usize, _period_day: i64, used: u64) {
        self.set_global(counter, used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::quota::QuotaLease;

    /// Simulates hosts leasing from one Redis counter with `grant`, shards consuming:
    /// returns (admitted, granted).
    fn simulate(limit: u64, hosts: usize, per_tick: u64) -> (u64, u64) {
        let mut used = 0u64; // Redis
        let stocks: Vec<HostStock> = (0..hosts).map(|_| HostStock::new(1)).collect();
        let mut leases = vec![[QuotaLease::default(); 2]; hosts];
        let mut consumed = vec![0u64; hosts];
        let mut admitted = 0u64;
        for _tick in 0..10_000 {
            // Each host's sync: refill from "Redis".
            for (h, st) in stocks.iter().enumerate() {
                let (_, stock) = st.counts(0);
                let want = refill_want(stock, consumed[h], 2);
                let g = grant(limit, used, want);
                used += g;
                st.stock_up(0, g);
                consumed[h] = 0;
            }
            let before = admitted;
            for (h, st) in stocks.iter().enumerate() {
                for l in &mut leases[h] {
                    for _ in 0..per_tick {
                        if l.try_take(st, 0, 0, limit, 0, 2) {
                            admitted += 1;
                            consumed[h] += 1;
                        }
                    }
                    l.release(st, 0);
                }
            }
            if admitted == before && used >= limit {
                break;
            }
        }
        (admitted, used)
    }

    #[test]
    fn a_successor_store_shares_unchanged_counters_and_starts_the_others_empty() {
        let old = HostStock::new(2);
        old.roll(0, 7);
        old.roll(1, 7);
        old.stock_up(0, 40);
        old.stock_up(1, 9);
        old.set_credit_budget(0, 3);
        // New counter 0 is old counter 1 (same plan, key, period); new counter 1 is new.
        let new = old.successor(&[Some(1), None]);
        assert!(new.shares_slot(0, &old, 1));
        assert!(!new.shares_slot(1, &old, 0));
        assert_eq!(new.counts(0), (0, 9));
        assert_eq!(new.counts(1), (0, 0));
        // A shard still on the old generation takes a block; once swapped it gives back
        // the unused part to the new store: one set of counts, nothing lost or doubled.
        let got = old.lease(1, 7, 100, 0, 1);
        assert!(got > 0);
        assert_eq!(new.counts(0), (got, 9 - got));
        new.release(0, 7, got - 1);
        assert_eq!(old.counts(1), (1, 8));
        // The counter that is not shared: no stock, no credit budget, so nothing is admitted
        // until the sync thread stocks it.
        assert_eq!(new.lease(1, 7, 100, 0, 1), 0);
        assert_eq!(new.refused(1, false), 1);
        assert_eq!(
            old.counts(0),
            (0, 40),
            "the old counter 0 is left to be given back"
        );
    }

    #[test]
    fn hosts_never_admit_more_than_redis_granted_and_drain_the_limit() {
        for (limit, hosts, rate) in [(1_000, 2, 40), (1_000, 3, 7), (100_000, 4, 500), (7, 2, 3)] {
            let (admitted, used) = simulate(limit, hosts, rate);
            assert!(used <= limit, "granted {used} > {limit}");
            assert_eq!(admitted, limit, "limit {limit} hosts {hosts}");
        }
    }

    /// Hosts syncing with one Redis counter as the sync thread does (what a host owes is added
    /// first, then a block is granted; the credit it charged is freed, its budget set from the
    /// spent flag), their 2 shards each asking `per_tick` requests between syncs. Returns
    /// (admitted, Redis count, refusals while the host's last sync said quota was left).
    fn simulate_credit(limit: u64, hosts: usize, per_tick: u64) -> (u64, u64, u64) {
        let mut used = 0u64; // Redis
        let stocks: Vec<HostStock> = (0..hosts).map(|_| HostStock::new(1)).collect();
        let mut leases = vec![[QuotaLease::default(); 2]; hosts];
        let mut held = vec![0u64; hosts];
        let mut consumed = vec![0u64; hosts];
        let (mut admitted, mut early_refusals) = (0u64, 0u64);
        for _tick in 0..10_000 {
            for (h, st) in stocks.iter().enumerate() {
                let (taken, stock) = st.counts(0);
                let owed = (taken + stock).saturating_sub(held[h]);
                used += owed;
                let g = grant(limit, used, refill_want(stock, consumed[h], 2));
                used += g;
                held[h] += owed + g;
                st.stock_up(0, g);
                st.settle_credit(0, owed);
                let spent = used >= limit;
                st.set_spent(0, spent);
                st.set_credit_budget(
                    0,
                    if spent {
                        0
                    } else {
                        credit_budget(limit, hosts)
                    },
                );
                consumed[h] = 0;
            }
            let before = admitted;
            for (h, st) in stocks.iter().enumerate() {
                for l in &mut leases[h] {
                    for _ in 0..per_tick {
                        let spent = st.slots[0].spent.load(Ordering::Relaxed);
                        if l.try_take(st, 0, 0, limit, 0, 2) {
                            admitted += 1;
                            consumed[h] += 1;
                        } else if !spent {
                            early_refusals += 1;
                        }
                    }
                    l.release(st, 0);
                }
            }
            if admitted == before && used >= limit {
                break;
            }
        }
        (admitted, used, early_refusals)
    }

    #[test]
    fn credit_keeps_refusals_away_until_spent_and_over_admission_within_the_budgets() {
        // (limit, hosts, requests per shard per sync): the budgets are 50, 333, 0 per host.
        for (limit, hosts, per_tick) in [(100_000, 2, 20), (1_000_000, 3, 150), (1_000, 2, 5)] {
            let (admitted, used, early_refusals) = simulate_credit(limit, hosts, per_tick);
            let budgets = credit_budget(limit, hosts) * hosts as u64;
            assert!(
                admitted >= limit,
                "{limit}/{hosts}: drained only {admitted}"
            );
            assert!(
                admitted <= limit + budgets,
                "{limit}/{hosts}: admitted {admitted} > {limit} + {budgets}"
            );
            assert!(budgets <= limit / 1000);
            assert!(
                used >= admitted,
                "Redis counts {used} < admitted {admitted}"
            );
            if budgets > 0 {
                assert_eq!(
                    early_refusals, 0,
                    "{limit}/{hosts}: refused with quota left"
                );
            }
        }
        // Without credit (limit 1,000 on 2 hosts) the first requests of a key on a host find
        // one request per shard and are refused until the next sync: what credit is for.
        assert!(simulate_credit(1_000, 2, 5).2 > 0);
    }

    #[test]
    fn grants_are_capped_and_shrink_as_the_limit_nears() {
        assert_eq!(grant(1_000_000, 0, 10_000), MAX_HOST_BLOCK);
        assert_eq!(grant(1_000, 0, 500), 125);
        assert_eq!(grant(1_000, 992, 500), 1);
        assert_eq!(grant(1_000, 999, 5), 1);
        assert_eq!(grant(1_000, 1_000, 5), 0);
        assert_eq!(grant(1_000, 1_200, 5), 0);
        assert_eq!(grant(1_000, 0, 0), 0);
    }

    #[test]
    fn refill_keeps_two_intervals_and_one_per_shard() {
        assert_eq!(refill_want(0, 0, 2), 2);
        assert_eq!(refill_want(2, 0, 2), 0);
        assert_eq!(refill_want(1, 0, 2), 1);
        assert_eq!(refill_want(99, 100, 2), 101);
        assert_eq!(refill_want(100, 100, 2), 0);
        assert_eq!(refill_want(0, 1 << 20, 2), MAX_HOST_BLOCK);
        assert_eq!(idle_return(50, 1, 2, false), 0);
        assert_eq!(idle_return(50, 2, 2, false), 48);
        assert_eq!(idle_return(50, 2, 2, true), 50);
    }

    #[test]
    fn the_stock_is_all_a_host_can_hand_out_until_it_fails_open() {
        let st = HostStock::new(1);
        st.roll(0, 10);
        assert_eq!(
            st.lease(0, 10, 100, 0, 2),
            0,
            "nothing leased from Redis yet"
        );
        st.stock_up(0, 3);
        assert_eq!(
            st.lease(0, 11, 100, 0, 2),
            0,
            "a newer period waits for the sync"
        );
        let mut got = 0;
        while let g @ 1.. = st.lease(0, 10, 100, 0, 2) {
            got += g;
        }
        assert_eq!(got, 3);
        assert_eq!(st.counts(0), (3, 0));
        st.release(0, 10, 2);
        assert_eq!(st.counts(0), (1, 2));
        st.release(0, 9, 1);
        assert_eq!(
            st.counts(0),
            (1, 2),
            "an old period's lease is worth nothing"
        );
        // Three misses (the empty stock, the newer period, the last call of the loop) but one
        // wake-up: the sync thread was armed once; refusals were counted as demand.
        assert!(st.take_wake());
        assert!(!st.take_wake());
        assert_eq!(st.refused(0, true), 3);
        assert_eq!(st.refused(0, false), 0);
        // Failed open: one at a time, counted as taken (owed to Redis).
        st.set_fail_open(true);
        for _ in 0..5 {
            assert_eq!(st.lease(0, 11, 100, 0, 2), 1);
        }
        assert_eq!(st.counts(0), (6, 2));
        assert_eq!(st.withdraw(0, 5), 2);
        assert_eq!(st.roll(0, 11), (0, 6));
    }

    #[test]
    fn credit_admits_within_the_budget_until_charged_and_never_when_spent() {
        assert_eq!(credit_budget(1_000, 2), 0, "0.5 rounds down: no credit");
        assert_eq!(credit_budget(1_000, 1), 1);
        assert_eq!(credit_budget(100_000, 3), 33);
        let st = HostStock::new(1);
        st.roll(0, 10);
        st.set_credit_budget(0, 2);
        // The stock is empty: two on credit, then refused.
        assert_eq!(st.lease(0, 10, 100_000, 0, 2), 1);
        assert_eq!(st.lease(0, 10, 100_000, 0, 2), 1);
        assert_eq!(st.lease(0, 10, 100_000, 0, 2), 0);
        assert_eq!(st.refused(0, true), 1);
        assert_eq!(st.credit_out(0), 2);
        // Owed to Redis: taken with no stock behind it.
        assert_eq!(st.counts(0), (2, 0));
        // The sync thread charged 1 of them (read before the second was counted): one free.
        st.settle_credit(0, 1);
        assert_eq!(st.lease(0, 10, 100_000, 0, 2), 1);
        assert_eq!(st.lease(0, 10, 100_000, 0, 2), 0);
        st.settle_credit(0, 5);
        assert_eq!(st.credit_out(0), 0);
        assert_eq!(st.refused(0, true), 1);
        // Spent: no credit, no refusal counted as demand, no wake-up.
        st.set_spent(0, true);
        assert!(st.take_wake());
        st.arm();
        assert_eq!(st.lease(0, 10, 100_000, 0, 2), 0);
        assert!(!st.take_wake());
        assert_eq!(st.refused(0, false), 0);
        // A newer period than the stock's (midnight, before the sync thread rolled): on
        // credit, counted as the new period's once it starts.
        assert_eq!(st.lease(0, 11, 100_000, 0, 2), 1);
        assert!(st.take_wake());
        assert_eq!(st.roll(0, 11), (0, 3));
        assert_eq!(st.counts(0), (1, 0));
        st.absorb_early(0);
        assert_eq!(st.counts(0), (1, 0));
    }

    #[test]
    fn host_shares_follow_demand_with_a_floor_and_sum_to_the_rate() {
        let l = Limit::new(100.0, 100);
        let a = host_share(l, 3, 4, 2);
        let b = host_share(l, 1, 4, 2);
        assert_eq!(a.rate_milli + b.rate_milli, 100_000);
        assert_eq!(a.rate_milli, 500 + 99_000 * 3 / 4);
        assert!((99..=100).contains(&(a.burst + b.burst)));
        // Traffic on one host only: the other keeps the floor, the busy one the rest.
        let busy = host_share(l, 10, 10, 2);
        let idle = host_share(l, 0, 10, 2);
        assert_eq!(idle.rate_milli, 500);
        assert_eq!(busy.rate_milli + idle.rate_milli, 100_000);
        assert_eq!(idle.burst, 1);
        // Nobody asked: equal parts.
        assert_eq!(host_share(l, 0, 0, 4).rate_milli, 25_000);
        // A burst smaller than the hosts: no floor token.
        assert_eq!(host_share(Limit::new(1.0, 1), 0, 5, 2).burst, 0);
        assert_eq!(host_share(Limit::new(1.0, 1), 5, 5, 2).burst, 1);
        assert_eq!(fallback_share(l, 4).rate_milli, 25_000);
        assert_eq!(fallback_share(Limit::new(1.0, 1), 4).burst, 1);
    }
}
