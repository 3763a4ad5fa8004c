//! Quota counters shared by every shard (the one cross-core path of traffic control).
//!
//! A usage plan's quota is per key across all shards. Shards do not touch the shared counter
//! per request: each holds a `QuotaLease`, a block of requests it took from the shared
//! `QuotaStore`, and consumes it locally. Only when the lease is empty does the shard ask the
//! store for the next block, and the store never grants more than what is left of the limit,
//! so the shards together never admit more than the limit. Blocks get smaller as the limit
//! nears (a quarter of what is left per shard, at most `MAX_BLOCK`), so the requests still
//! parked in other shards' leases near the end are few: when a shard stops receiving traffic,
//! at most its last small block is left unused until the period ends (under-admission, never
//! over-admission).
//!
//! `AtomicQuotaStore` keeps one `AtomicU64` per counter packing the period (its first UTC day)
//! and the count granted in it, updated with compare-and-swap: a lease in a new period resets
//! the count (period rollover). A counter still at its initial word (day 0, count 0) has
//! never counted anything: its first period starts at the plan's `offset` instead of 0 (API
//! Gateway's "requests subtracted from the given limit in the initial time period"); later
//! periods start at 0. A counter restored from the state file is not at its initial word, so
//! a restart never pre-charges again. A store shared by several hosts (Redis) implements the same
//! trait. The count granted is what is persisted (`state`): it never under-counts.

use super::period::Period;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest block one lease takes.
pub const MAX_BLOCK: u64 = 256;

/// Highest quota limit: the count shares a 64-bit word with the period day.
pub const MAX_LIMIT: u64 = (1 << COUNT_BITS) - 1;

const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// Days since 1970 fit in the 24 high bits until the year 47,000.
const MAX_DAY: u64 = (1 << (64 - COUNT_BITS)) - 1;

/// The shared counters behind the shards' leases.
pub trait QuotaStore: Send + Sync {
    /// Grants up to `block_size(limit - used, shards)` requests of `counter` in the period
    /// starting on UTC day `period_day` (a newer period starts from 0, or from `initial` when
    /// the counter has never counted: the quota's `offset`). Returns how many were granted;
    /// 0 means the quota is spent.
    fn lease(
        &self,
        counter: usize,
        period_day: i64,
        limit: u64,
        initial: u64,
        shards: usize,
    ) -> u64;
    /// Gives back `n` unused requests of a lease taken in `period_day` (ignored if the counter
    /// has moved to another period).
    fn release(&self, counter: usize, period_day: i64, n: u64);
    /// `(period_day, used)` of `counter`.
    fn get(&self, counter: usize) -> (i64, u64);
    /// Sets `counter` (when resuming from the state file).
    fn set(&self, counter: usize, period_day: i64, used: u64);
}

/// The size of the next block for a shard when `remaining` requests are left and `shards`
/// shards share them: a quarter of a fair share, between 1 and `MAX_BLOCK`, never more than
/// `remaining`.
pub fn block_size(remaining: u64, shards: usize) -> u64 {
    let shards = u64::try_from(shards.max(1)).unwrap_or(u64::MAX);
    (remaining / shards.saturating_mul(4))
        .clamp(1, MAX_BLOCK)
        .min(remaining)
}

fn pack(day: i64, used: u64) -> u64 {
    let day = u64::try_from(day).unwrap_or(0).min(MAX_DAY);
    (day << COUNT_BITS) | used.min(COUNT_MASK)
}

fn unpack(word: u64) -> (i64, u64) {
    // The day has at most 24 bits: it fits in an i64.
    ((word >> COUNT_BITS) as i64, word & COUNT_MASK)
}

/// In-process counters: one atomic word per counter.
#[derive(Debug)]
pub struct AtomicQuotaStore {
    slots: Box<[AtomicU64]>,
}

impl AtomicQuotaStore {
    /// `counters` counters at day 0, count 0.
    pub fn new(counters: usize) -> AtomicQuotaStore {
        AtomicQuotaStore {
            slots: (0..counters).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

impl QuotaStore for AtomicQuotaStore {
    fn lease(
        &self,
        counter: usize,
        period_day: i64,
        limit: u64,
        initial: u64,
        shards: usize,
    ) -> u64 {
        let Some(slot) = self.slots.get(counter) else {
            return 0;
        };
        let mut current = slot.load(Ordering::Acquire);
        loop {
            let (day, used) = unpack(current);
            // A newer period starts from zero (from `initial` for a counter that never
            // counted: the initial period); a shard whose clock is behind takes from the
            // counter's period as it is.
            let (day, used) = if period_day > day {
                (period_day, if current == 0 { initial } else { 0 })
            } else {
                (day, used)
            };
            let remaining = limit.min(MAX_LIMIT).saturating_sub(used);
            if remaining == 0 {
                if day != unpack(current).0 {
                    // Record the rollover even when nothing can be granted (limit 0).
                    let _ = slot.compare_exchange(
                        current,
                        pack(day, used),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
                return 0;
            }
            let grant = block_size(remaining, shards);
            match slot.compare_exchange_weak(
                current,
                pack(day, used + grant),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return grant,
                Err(now) => current = now,
            }
        }
    }

    fn release(&self, counter: usize, period_day: i64, n: u64) {
        let Some(slot) = self.slots.get(counter) else {
            return;
        };
        let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
            let (day, used) = unpack(w);
            (day == period_day).then(|| pack(day, used.saturating_sub(n)))
        });
    }

    fn get(&self, counter: usize) -> (i64, u64) {
        self.slots
            .get(counter)
            .map_or((0, 0), |s| unpack(s.load(Ordering::Acquire)))
    }

    fn set(&self, counter: usize, period_day: i64, used: u64) {
        if let Some(slot) = self.slots.get(counter) {
            slot.store(pack(period_day, used), Ordering::Release);
        }
    }
}

/// One shard's lease on one counter: requests it may admit without asking the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaLease {
    period_day: i64,
    left: u64,
    /// The last UTC day asked about and the start of its period ([`QuotaLease::period_start`]).
    day_start: Option<(i64, i64)>,
}

impl QuotaLease {
    /// The first day of `period`'s period holding `day`, remembered for the last day asked:
    /// the calendar arithmetic (a civil-date round trip for `MONTH`) runs once per day and
    /// lease, not per request. A lease belongs to one membership, so to one plan's period.
    pub fn period_start(&mut self, period: &Period, day: i64) -> i64 {
        match self.day_start {
            Some((d, start)) if d == day => start,
            _ => {
                let start = period.start_day(day);
                self.day_start = Some((day, start));
                start
            }
        }
    }

    /// Admits one request of `counter` in the period starting on `period_day`: from the lease
    /// if it has some left for that period, else from a new block of the store (`initial`:
    /// the quota's `offset`, see [`QuotaStore::lease`]). False when the quota is spent.
    pub fn try_take<S: QuotaStore + ?Sized>(
        &mut self,
        store: &S,
        counter: usize,
        period_day: i64,
        limit: u64,
        initial: u64,
        shards: usize,
    ) -> bool {
        if self.period_day != period_day {
            // A lease from an earlier period is worth nothing now.
            self.period_day = period_day;
            self.left = 0;
        }
        if self.left == 0 {
            self.left = store.lease(counter, period_day, limit, initial, shards);
            if self.left == 0 {
                return false;
            }
        }
        self.left -= 1;
        true
    }

    /// Requests still leased (unused).
    pub fn left(&self) -> u64 {
        self.left
    }

    /// Gives the unused part back to the store (graceful shutdown, reload).
    pub fn release<S: QuotaStore + ?Sized>(&mut self, store: &S, counter: usize) {
        if self.left > 0 {
            store.release(counter, self.period_day, self.left);
            self.left = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn blocks_shrink_as_the_limit_nears() {
        assert_eq!(block_size(100_000, 2), MAX_BLOCK);
        assert_eq!(block_size(800, 2), 100);
        assert_eq!(block_size(7, 2), 1);
        assert_eq!(block_size(1, 64), 1);
        assert_eq!(block_size(0, 2), 0);
    }

    #[test]
    fn grants_stop_exactly_at_the_limit_and_reset_next_period() {
        let store = AtomicQuotaStore::new(1);
        let mut granted = 0;
        loop {
            let g = store.lease(0, 100, 1_000, 0, 2);
            if g == 0 {
                break;
            }
            granted += g;
        }
        assert_eq!(granted, 1_000);
        assert_eq!(store.get(0), (100, 1_000));
        // An older period does not reset; a newer one does.
        assert_eq!(store.lease(0, 99, 1_000, 0, 2), 0);
        assert!(store.lease(0, 101, 1_000, 0, 2) > 0);
        assert_eq!(store.get(0).0, 101);
    }

    #[test]
    fn release_returns_unused_requests_of_the_same_period_only() {
        let store = AtomicQuotaStore::new(1);
        let mut lease = QuotaLease::default();
        assert!(lease.try_take(&store, 0, 5, 1_000, 0, 1));
        let used = store.get(0).1;
        assert_eq!(used, 250);
        lease.release(&store, 0);
        assert_eq!(store.get(0), (5, 1));
        store.release(0, 4, 1);
        assert_eq!(store.get(0), (5, 1));
    }

    #[test]
    fn period_start_is_remembered_per_day_and_matches_the_calendar() {
        use super::super::period::PeriodKind;
        // WEEK: day 0 (1970-01-01, a Thursday) is in the week from Monday 1969-12-29, so a
        // fresh lease must not take day 0 for a period start.
        let month = Period::new(PeriodKind::Month);
        let week = Period::new(PeriodKind::Week);
        for period in [month, week] {
            let mut lease = QuotaLease::default();
            for day in [0, 0, -1, 20_000, 20_000, 20_001, 20_030, 19_999, 0] {
                assert_eq!(
                    lease.period_start(&period, day),
                    period.start_day(day),
                    "{period:?} day {day}"
                );
            }
        }
        assert_ne!(week.start_day(0), 0);
    }

    #[test]
    fn the_offset_is_charged_in_the_initial_period_only() {
        let store = AtomicQuotaStore::new(2);
        let mut lease = QuotaLease::default();
        // Limit 10, offset 7: 3 requests in the first period.
        let mut admitted = 0;
        while lease.try_take(&store, 0, 50, 10, 7, 1) {
            admitted += 1;
        }
        assert_eq!(admitted, 3);
        assert_eq!(store.get(0), (50, 10));
        // The next period starts at 0: all 10.
        let mut admitted = 0;
        while lease.try_take(&store, 0, 51, 10, 7, 1) {
            admitted += 1;
        }
        assert_eq!(admitted, 10);
        // Counter 1 was untouched by counter 0's initial period.
        assert_eq!(store.get(1), (0, 0));
        assert_eq!(store.lease(1, 51, 10, 9, 1), 1);
        assert_eq!(store.lease(1, 51, 10, 9, 1), 0);
    }

    #[test]
    fn a_restored_counter_is_not_charged_the_offset_again() {
        // As after a restart in the same period: the state file had (50, 4).
        let store = AtomicQuotaStore::new(1);
        store.set(0, 50, 4);
        let mut lease = QuotaLease::default();
        let mut admitted = 0;
        while lease.try_take(&store, 0, 50, 10, 7, 1) {
            admitted += 1;
        }
        assert_eq!(admitted, 6);
        // Restored at 0 used in this period (seen before, an older period in the file).
        let store = AtomicQuotaStore::new(1);
        store.set(0, 50, 0);
        let mut lease = QuotaLease::default();
        let mut admitted = 0;
        while lease.try_take(&store, 0, 50, 10, 7, 1) {
            admitted += 1;
        }
        assert_eq!(admitted, 10);
    }

    #[test]
    fn a_lease_from_an_old_period_is_dropped() {
        let store = AtomicQuotaStore::new(1);
        let mut lease = QuotaLease::default();
        for _ in 0..3 {
            assert!(lease.try_take(&store, 0, 1, 3, 0, 1));
        }
        assert!(!lease.try_take(&store, 0, 1, 3, 0, 1));
        assert!(lease.try_take(&store, 0, 2, 3, 0, 1));
        assert_eq!(store.get(0), (2, 1));
    }

    /// 64 "connections" over `shards` shard threads; each shard serves its connections in
    /// turn, all hammering until refused. Returns the number admitted.
    fn hammer(limit: u64, shards: usize, connections: usize) -> u64 {
        let store = Arc::new(AtomicQuotaStore::new(1));
        let threads: Vec<_> = (0..shards)
            .map(|s| {
                let store = Arc::clone(&store);
                let mine = (0..connections).filter(|c| c % shards == s).count();
                std::thread::spawn(move || {
                    let mut lease = QuotaLease::default();
                    let mut admitted = 0u64;
                    let mut refused_in_a_row = 0;
                    // Each round, every connection of this shard sends one request.
                    while refused_in_a_row < mine * 4 {
                        for _ in 0..mine {
                            if lease.try_take(&*store, 0, 20_000, limit, 0, shards) {
                                admitted += 1;
                                refused_in_a_row = 0;
                            } else {
                                refused_in_a_row += 1;
                            }
                        }
                    }
                    admitted
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap_or(0)).sum()
    }

    #[test]
    fn a_limit_of_1000_over_2_shards_from_64_connections() {
        for _ in 0..20 {
            let admitted = hammer(1_000, 2, 64);
            assert!((1_000..=1_001).contains(&admitted), "{admitted}");
        }
    }

    #[test]
    fn large_limits_over_many_shards_stay_within_a_tenth_of_a_percent() {
        let admitted = hammer(100_000, 8, 64);
        assert!((100_000..=100_100).contains(&admitted), "{admitted}");
    }
}
