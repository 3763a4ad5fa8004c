//! Token buckets with exact integer refill, and the `ShareBalancer` that splits one limit
//! (per key, per stage, ... across all shards) into per-shard shares.
//!
//! Fixed point: one token is `UNITS_PER_TOKEN` (10^12) units and a rate is kept in
//! milli-tokens per second, so one nanosecond at a rate of `r` milli-tokens/s adds exactly `r`
//! units: the refill is `elapsed_ns × rate_milli`, an integer product with no division and no
//! rounding, so nothing drifts however often or rarely the bucket is read. Levels are `u128`
//! (a day of idle time at 10^9 requests/s stays far from overflow, and the level is capped at
//! the capacity anyway).
//!
//! Sharing: each shard owns its buckets and touches no other core's memory per request. A limit
//! is split into per-shard shares (rate and capacity) that always sum exactly to the limit;
//! at a coarse interval every shard reports its demand (requests that asked for a token) and
//! hands in its current tokens, and `ShareBalancer::rebalance` gives each shard a share in
//! proportion to its demand (with a small floor so an idle shard can start again) and hands the
//! pooled tokens back out in proportion to the new capacities. Tokens are conserved exactly,
//! so the sum over shards is one bucket of the configured rate and burst, whatever the shape of
//! the traffic.

/// Units in one token.
pub const UNITS_PER_TOKEN: u128 = 1_000_000_000_000;

/// Highest configurable rate (requests per second); keeps `rate × 1000` well inside `u64`.
pub const MAX_RATE: f64 = 1_000_000_000.0;

/// A configured limit: `rate` requests per second refill, `burst` capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    /// Requests per second × 1000 (rates are exact to 0.001 request per second).
    pub rate_milli: u64,
    /// Bucket capacity in requests.
    pub burst: u64,
}

impl Limit {
    /// `rate` must be finite, ≥ 0 and ≤ `MAX_RATE` (checked by the config).
    pub fn new(rate: f64, burst: u64) -> Limit {
        let milli = (rate.clamp(0.0, MAX_RATE) * 1000.0).round();
        Limit {
            // In range by the clamp above.
            rate_milli: milli as u64,
            burst,
        }
    }

    /// The capacity in units.
    pub fn capacity_units(&self) -> u128 {
        u128::from(self.burst) * UNITS_PER_TOKEN
    }
}

/// One token bucket (one shard's share of a limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    rate_milli: u64,
    capacity: u128,
    level: u128,
    last_ns: u64,
    /// Requests that asked for a token since the last `report` (the shard's demand).
    demand: u64,
}

impl TokenBucket {
    /// A full bucket for the whole `limit`.
    pub fn new(limit: Limit, now_ns: u64) -> TokenBucket {
        let capacity = limit.capacity_units();
        TokenBucket::with_share(limit.rate_milli, capacity, capacity, now_ns)
    }

    /// A bucket for one share: `rate_milli`, `capacity` and starting `level` in units.
    pub fn with_share(rate_milli: u64, capacity: u128, level: u128, now_ns: u64) -> TokenBucket {
        TokenBucket {
            rate_milli,
            capacity,
            level: level.min(capacity),
            last_ns: now_ns,
            demand: 0,
        }
    }

    /// Adds the tokens earned since the last refill (a clock that went back adds nothing).
    fn refill(&mut self, now_ns: u64) {
        if now_ns > self.last_ns {
            let earned = u128::from(now_ns - self.last_ns) * u128::from(self.rate_milli);
            self.level = self.level.saturating_add(earned).min(self.capacity);
            self.last_ns = now_ns;
        }
    }

    /// Refills, counts one request of demand and says whether a whole token is there, without
    /// taking it (the hierarchy takes from every level only when all of them have one).
    pub fn ready(&mut self, now_ns: u64) -> bool {
        self.refill(now_ns);
        self.demand = self.demand.saturating_add(1);
        self.level >= UNITS_PER_TOKEN
    }

    /// Takes one token after `ready` said yes (does nothing if there is none).
    pub fn take(&mut self) {
        if self.level >= UNITS_PER_TOKEN {
            self.level -= UNITS_PER_TOKEN;
        }
    }

    /// `ready` then `take`: true when a token was taken.
    pub fn try_take(&mut self, now_ns: u64) -> bool {
        let ok = self.ready(now_ns);
        if ok {
            self.take();
        }
        ok
    }

    /// Whole tokens available now.
    pub fn tokens(&mut self, now_ns: u64) -> u64 {
        self.refill(now_ns);
        u64::try_from(self.level / UNITS_PER_TOKEN).unwrap_or(u64::MAX)
    }

    /// For a rebalance: refills to `now_ns`, then returns the demand since the last report and
    /// hands over every unit in the bucket (the level becomes 0; `assign` gives a level back).
    pub fn report(&mut self, now_ns: u64) -> ShardReport {
        self.refill(now_ns);
        let report = ShardReport {
            demand: self.demand,
            level: self.level,
        };
        self.demand = 0;
        self.level = 0;
        report
    }

    /// Installs a share computed by `ShareBalancer::rebalance`; the level is added to what the
    /// bucket earned since its report (capped at the new capacity).
    pub fn assign(&mut self, share: &Share, now_ns: u64) {
        self.refill(now_ns);
        self.rate_milli = share.rate_milli;
        self.capacity = share.capacity;
        self.level = self.level.saturating_add(share.level).min(self.capacity);
    }

    pub fn rate_milli(&self) -> u64 {
        self.rate_milli
    }

    pub fn capacity_units(&self) -> u128 {
        self.capacity
    }
}

/// What one shard reports for one limit at a rebalance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardReport {
    /// Requests that asked for a token since the previous report.
    pub demand: u64,
    /// Units handed in.
    pub level: u128,
}

/// One shard's share of a limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Share {
    pub rate_milli: u64,
    /// Capacity in units.
    pub capacity: u128,
    /// Units handed back to the shard.
    pub level: u128,
}

/// Splits one limit over `shards` shards from their observed demand. Kept by whoever runs
/// the rebalance (one per limit); it remembers a smoothed demand per shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareBalancer {
    limit: Limit,
    /// Per shard: demand smoothed over the last rebalances (`s ← s/2 + demand × 1024`: the
    /// last interval weighs half, the one before a quarter, ...), so a shard
    /// that saw no request in one interval but steady traffic before keeps its share.
    smoothed: Vec<u64>,
}

/// Part of a limit's rate every shard keeps whatever its demand: 1 % of the rate split over
/// the shards (so a shard whose traffic starts again is admitted at once, and at most 1 % of
/// the rate idles on shards with no traffic until the next rebalance hands it back).
const FLOOR_DIVISOR: u128 = 100;

/// Fixed-point scale of the smoothed demand (so halving a small demand does not round to 0).
const DEMAND_SCALE: u64 = 1024;

impl ShareBalancer {
    /// `shards` is at least 1.
    pub fn new(limit: Limit, shards: usize) -> ShareBalancer {
        ShareBalancer {
            limit,
            smoothed: vec![0; shards.max(1)],
        }
    }

    pub fn shards(&self) -> usize {
        self.smoothed.len()
    }

    /// The limit being split.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Splits `limit` from the next rebalance on (a host's part of a limit shared with other
    /// hosts, `traffic::cluster`); the smoothed demand is kept.
    pub fn set_limit(&mut self, limit: Limit) {
        self.limit = limit;
    }

    /// The starting shares: equal, full buckets.
    pub fn initial(&self) -> Vec<Share> {
        let weights = vec![1u64; self.shards()];
        let mut out = vec![Share::default(); self.shards()];
        self.split(&weights, self.limit.capacity_units(), &mut out);
        out
    }

    /// New shares from one report per shard (`reports.len() == out.len() == shards`): rate and
    /// capacity in proportion to the smoothed demand (equal when nobody asked), each at least a
    /// floor (1 % of the rate over the shards; one token of capacity when the burst allows),
    /// summing exactly to the limit; the pooled units go back in whole tokens in proportion to
    /// the capacities, none lost.
    pub fn rebalance(&mut self, reports: &[ShardReport], out: &mut [Share]) {
        let n = self.shards().min(reports.len()).min(out.len());
        for (s, r) in self.smoothed.iter_mut().zip(&reports[..n]) {
            *s = (*s / 2).saturating_add(r.demand.saturating_mul(DEMAND_SCALE));
        }
        let mut weights = self.smoothed[..n].to_vec();
        if weights.iter().all(|w| *w == 0) {
            weights.iter_mut().for_each(|w| *w = 1);
        }
        let pool: u128 = reports[..n].iter().map(|r| r.level).sum();
        self.split(&weights, pool, &mut out[..n]);
    }

    fn split(&self, weights: &[u64], pool: u128, out: &mut [Share]) {
        let rate = u128::from(self.limit.rate_milli);
        let capacity = self.limit.capacity_units();
        let n = out.len() as u128;
        let mut rates = vec![0u128; out.len()];
        let mut caps = vec![0u128; out.len()];
        if u128::from(self.limit.burst) < n {
            // Fewer tokens of burst than shards: a share of part of a token could never
            // admit anything, so whole tokens go to the busiest shards (ties: lowest index)
            // and the rate only to them (a shard with no capacity could keep none of it).
            let mut order: Vec<usize> = (0..out.len()).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(weights.get(i).copied().unwrap_or(0)));
            let mut held = vec![0u64; out.len()];
            for &i in order
                .iter()
                .take(usize::try_from(self.limit.burst).unwrap_or(0))
            {
                caps[i] = UNITS_PER_TOKEN;
                held[i] = weights.get(i).copied().unwrap_or(0).max(1);
            }
            if held.iter().any(|h| *h > 0) {
                apportion(rate, &held, 0, &mut rates);
            }
            fill(out, &rates, &caps, pool, capacity);
            return;
        }
        apportion(rate, weights, rate / (FLOOR_DIVISOR * n.max(1)), &mut rates);
        // A capacity under one token admits nothing: keep one token per shard if the burst
        // has that many.
        let cap_floor =
            (capacity / (FLOOR_DIVISOR * n.max(1))).max(UNITS_PER_TOKEN.min(capacity / n.max(1)));
        apportion(capacity, weights, cap_floor, &mut caps);
        fill(out, &rates, &caps, pool, capacity);
    }
}

fn fill(out: &mut [Share], rates: &[u128], caps: &[u128], pool: u128, capacity: u128) {
    let pool = pool.min(capacity);
    let mut given: u128 = 0;
    for ((s, r), c) in out.iter_mut().zip(rates).zip(caps) {
        s.rate_milli = u64::try_from(*r).unwrap_or(u64::MAX);
        s.capacity = *c;
        // Whole tokens only, so no shard is left with a useless fraction of a token.
        let exact = if capacity == 0 {
            0
        } else {
            mul_div(pool, *c, capacity)
        };
        s.level = exact - exact % UNITS_PER_TOKEN;
        given += s.level;
    }
    // The rest (rounding, less than one token per shard) goes to the largest share first,
    // then to any shard with room: no unit is lost.
    let mut left = pool - given.min(pool);
    let largest = out
        .iter()
        .enumerate()
        .max_by_key(|(_, s)| s.capacity)
        .map_or(0, |(i, _)| i);
    let order = std::iter::once(largest).chain((0..out.len()).filter(|i| *i != largest));
    for i in order {
        if left == 0 {
            break;
        }
        let s = &mut out[i];
        let add = (s.capacity - s.level).min(left);
        s.level += add;
        left -= add;
    }
}

/// `a × b / c` without overflow for the magnitudes used here (`a, b ≤ 2^104`).
fn mul_div(a: u128, b: u128, c: u128) -> u128 {
    match a.checked_mul(b) {
        Some(p) => p / c,
        // Split `a` to keep the product in range: (q·c + r)·b / c = q·b + r·b / c.
        None => (a / c) * b + mul_div_small(a % c, b, c),
    }
}

fn mul_div_small(r: u128, b: u128, c: u128) -> u128 {
    match r.checked_mul(b) {
        Some(p) => p / c,
        None => {
            // Rare: scale down (loses at most a few units, given back by `fill`).
            let shift = 32;
            ((r >> shift) * b / (c >> shift).max(1)).min(b)
        }
    }
}

/// Splits `total` into `out` (same length as `weights`): `floor` each (at most
/// `total / n`), the rest in proportion to `weights` by largest remainder, so the parts sum
/// exactly to `total`.
fn apportion(total: u128, weights: &[u64], floor: u128, out: &mut [u128]) {
    let n = out.len() as u128;
    if n == 0 {
        return;
    }
    let floor = floor.min(total / n);
    let rest = total - floor * n;
    let sum: u128 = weights.iter().map(|w| u128::from(*w)).sum();
    let equal = sum == 0;
    let weight = |w: u64| if equal { 1 } else { u128::from(w) };
    let sum = if equal { n } else { sum };
    let mut given: u128 = 0;
    for (o, w) in out.iter_mut().zip(weights) {
        *o = mul_div(rest, weight(*w), sum);
        given += *o;
    }
    // The rounding remainder is less than one unit per weighted shard: one each, in order.
    let mut left = rest - given.min(rest);
    for (o, w) in out.iter_mut().zip(weights) {
        if left == 0 {
            break;
        }
        if weight(*w) > 0 {
            *o += 1;
            left -= 1;
        }
    }
    out[0] += left;
    for o in out.iter_mut() {
        *o += floor;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn starts_full_and_admits_the_burst_then_refuses() {
        let mut b = TokenBucket::new(Limit::new(10.0, 5), 0);
        for _ in 0..5 {
            assert!(b.try_take(0));
        }
        assert!(!b.try_take(0));
        // 100 ms at 10/s is exactly one token.
        assert!(!b.try_take(SEC / 10 - 1));
        assert!(b.try_take(SEC / 10));
        assert!(!b.try_take(SEC / 10));
    }

    #[test]
    fn refill_is_capped_at_the_burst() {
        let mut b = TokenBucket::new(Limit::new(100.0, 20), 0);
        for _ in 0..20 {
            assert!(b.try_take(0));
        }
        assert_eq!(b.tokens(SEC / 10), 10);
        assert_eq!(b.tokens(SEC), 20);
    }

    #[test]
    fn long_idle_does_not_overflow() {
        let mut b = TokenBucket::new(Limit::new(MAX_RATE, u64::MAX / 2), 0);
        b.take();
        assert_eq!(b.tokens(u64::MAX), u64::MAX / 2);
        let mut small = TokenBucket::new(Limit::new(1.0, 3), 5);
        assert_eq!(small.tokens(u64::MAX), 3);
        // A clock going back adds nothing and takes nothing.
        assert_eq!(small.tokens(0), 3);
    }

    #[test]
    fn fractional_rates_are_exact() {
        // 0.5 requests per second: one token every 2 s.
        let mut b = TokenBucket::new(Limit::new(0.5, 1), 0);
        assert!(b.try_take(0));
        assert!(!b.try_take(2 * SEC - 1));
        assert!(b.try_take(2 * SEC));
    }

    /// Requests every `gap_ns` for `seconds`: how many are admitted.
    fn run(limit: Limit, gap_ns: u64, seconds: u64) -> u64 {
        let mut b = TokenBucket::new(limit, 0);
        let mut admitted = 0;
        let mut t = 0;
        while t <= seconds * SEC {
            admitted += u64::from(b.try_take(t));
            t += gap_ns;
        }
        admitted
    }

    #[test]
    fn exact_at_high_rates_over_simulated_seconds() {
        for (rate, burst) in [(10_000u64, 5_000u64), (33_333, 100), (100_000, 2)] {
            // (A burst of 1 would drop refill between arrivals: a bucket that can hold only one
            // token loses what it earns while full, which is correct, not drift.)
            let limit = Limit::new(rate as f64, burst);
            // Over-admission check: offered load 3× the rate (gaps not dividing a second).
            let gap = SEC / (3 * rate) + 7;
            let admitted = run(limit, gap, 10);
            let expected = rate * 10 + burst;
            assert!(
                admitted.abs_diff(expected) <= 1,
                "rate {rate}: admitted {admitted}, expected {expected}"
            );
        }
    }

    #[test]
    fn no_under_admission_just_below_the_rate() {
        // Offered load at 99 % of the rate: every request is admitted.
        let rate = 50_000u64;
        let gap = SEC * 100 / (rate * 99);
        let offered = 10 * SEC / gap + 1;
        assert_eq!(run(Limit::new(rate as f64, 1), gap, 10), offered);
    }

    #[test]
    fn no_over_admission_at_exactly_the_rate_with_no_burst_left() {
        let rate = 20_000u64;
        let mut b = TokenBucket::new(Limit::new(rate as f64, 10), 0);
        while b.try_take(0) {}
        let gap = SEC / rate;
        let mut admitted = 0;
        for i in 1..=(rate * 5) {
            admitted += u64::from(b.try_take(i * gap));
            admitted += u64::from(b.try_take(i * gap)); // a second request at the same instant
        }
        assert_eq!(admitted, rate * 5);
    }

    #[test]
    fn apportion_sums_exactly_and_keeps_a_floor() {
        let mut out = [0u128; 3];
        apportion(1_000, &[0, 1, 2], 1_000 / 300, &mut out);
        assert_eq!(out.iter().sum::<u128>(), 1_000);
        assert!(out[0] >= 1_000 / 300);
        assert!(out[2] > out[1]);
        let mut out = [0u128; 2];
        apportion(7, &[1, 1], 0, &mut out);
        assert_eq!(out.iter().sum::<u128>(), 7);
    }

    #[test]
    fn rebalance_conserves_tokens() {
        let limit = Limit::new(100.0, 200);
        let mut bal = ShareBalancer::new(limit, 3);
        let reports = [
            ShardReport {
                demand: 90,
                level: 5 * UNITS_PER_TOKEN + 3,
            },
            ShardReport {
                demand: 10,
                level: 40 * UNITS_PER_TOKEN,
            },
            ShardReport {
                demand: 0,
                level: 1,
            },
        ];
        let mut out = [Share::default(); 3];
        bal.rebalance(&reports, &mut out);
        assert_eq!(out.iter().map(|s| s.rate_milli).sum::<u64>(), 100_000);
        assert_eq!(
            out.iter().map(|s| s.capacity).sum::<u128>(),
            limit.capacity_units()
        );
        assert_eq!(
            out.iter().map(|s| s.level).sum::<u128>(),
            45 * UNITS_PER_TOKEN + 4
        );
        assert!(out.iter().all(|s| s.level <= s.capacity));
        assert!(out[0].rate_milli > out[1].rate_milli);
        assert!(out[2].rate_milli > 0);
    }

    /// Simulates `shards` shards for `seconds`: `offered` requests per second spread by
    /// `pick(i)` (the shard of request `i`), a rebalance every `interval_ns`. Returns admitted.
    fn simulate(
        limit: Limit,
        shards: usize,
        offered: u64,
        seconds: u64,
        interval_ns: u64,
        pick: impl Fn(u64) -> usize,
    ) -> u64 {
        let mut bal = ShareBalancer::new(limit, shards);
        let mut buckets: Vec<TokenBucket> = bal
            .initial()
            .iter()
            .map(|s| TokenBucket::with_share(s.rate_milli, s.capacity, s.level, 0))
            .collect();
        let mut reports = vec![ShardReport::default(); shards];
        let mut shares = vec![Share::default(); shards];
        let gap = SEC / offered;
        let mut next_rebalance = interval_ns;
        let mut admitted = 0;
        let mut i = 0;
        let mut t = 0;
        while t < seconds * SEC {
            while t >= next_rebalance {
                for (r, b) in reports.iter_mut().zip(buckets.iter_mut()) {
                    *r = b.report(next_rebalance);
                }
                bal.rebalance(&reports, &mut shares);
                for (b, s) in buckets.iter_mut().zip(&shares) {
                    b.assign(s, next_rebalance);
                }
                next_rebalance += interval_ns;
            }
            admitted += u64::from(buckets[pick(i)].try_take(t));
            i += 1;
            t += gap;
        }
        admitted
    }

    #[test]
    fn a_burst_smaller_than_the_shard_count_stays_usable() {
        // Burst 1 over 2 shards: one shard holds the whole token (never half a token each,
        // which would admit nothing), and it moves to the shard with the demand.
        let limit = Limit::new(0.0, 1);
        let mut bal = ShareBalancer::new(limit, 2);
        let init = bal.initial();
        assert_eq!(
            init.iter().map(|s| s.capacity).collect::<Vec<_>>(),
            [UNITS_PER_TOKEN, 0]
        );
        let mut out = [Share::default(); 2];
        let reports = [
            ShardReport {
                demand: 0,
                level: UNITS_PER_TOKEN,
            },
            ShardReport {
                demand: 5,
                level: 0,
            },
        ];
        bal.rebalance(&reports, &mut out);
        assert_eq!((out[0].capacity, out[0].level), (0, 0));
        assert_eq!(
            (out[1].capacity, out[1].level),
            (UNITS_PER_TOKEN, UNITS_PER_TOKEN)
        );
        // With a rate, only the shard that can hold tokens gets it; burst 0 admits nothing.
        let mut bal = ShareBalancer::new(Limit::new(10.0, 1), 2);
        bal.rebalance(&reports, &mut out);
        assert_eq!((out[0].rate_milli, out[1].rate_milli), (0, 10_000));
        let none = ShareBalancer::new(Limit::new(10.0, 0), 2).initial();
        assert!(none.iter().all(|s| s.capacity == 0 && s.rate_milli == 0));
    }

    #[test]
    fn one_limit_over_shards_in_both_traffic_shapes() {
        let limit = Limit::new(100.0, 200);
        let target = 100 * 10 + 200;
        let within = |n: u64| n.abs_diff(target) * 100 <= target * 5;
        for shards in [1usize, 2] {
            // Shape 1: one keep-alive connection, so every request lands on shard 0.
            let one = simulate(limit, shards, 2_000, 10, SEC / 10, |_| 0);
            // Shape 2: many connections spread over every shard.
            let all = simulate(limit, shards, 2_000, 10, SEC / 10, |i| {
                (i as usize) % shards
            });
            assert!(within(one), "{shards} shards, one shard busy: {one}");
            assert!(within(all), "{shards} shards, all busy: {all}");
        }
        // More rates and offered loads (just above the limit, well above it), 2 shards.
        for (rate, burst) in [(10u64, 5u64), (1_000, 100), (10_000, 5_000)] {
            let limit = Limit::new(rate as f64, burst);
            let target = rate * 10 + burst;
            for factor in [12u64, 30, 200] {
                let offered = rate * factor / 10;
                for shape in 0..2 {
                    let got = simulate(limit, 2, offered, 10, SEC / 10, |i| {
                        if shape == 0 {
                            0
                        } else {
                            (i as usize) % 2
                        }
                    });
                    // Tokens are conserved: never more than one bucket of the limit.
                    assert!(got <= target, "over-admission: {got} > {target}");
                    assert!(
                        got.abs_diff(target) * 100 <= target * 5,
                        "rate {rate} burst {burst} offered {offered}/s shape {shape}: {got} vs {target}"
                    );
                }
            }
        }
        // Without rebalancing, the one-shard shape on 2 shards would get about half: the
        // simulation can tell the difference.
        let never = simulate(limit, 2, 2_000, 10, 100 * SEC, |_| 0);
        assert!(!within(never), "{never}");
    }
}
