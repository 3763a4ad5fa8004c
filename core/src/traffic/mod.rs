//! Traffic control without a runtime: API keys, usage plans, the throttling hierarchy and
//! quotas, as compiled tables plus the per-request decision.
//!
//! - `bucket`: exact fixed-point token buckets and the `ShareBalancer` that splits each limit
//!   into per-shard shares (every limit is per key / per stage / per account across all
//!   shards, never per shard).
//! - `period`: DAY / WEEK (from Monday) / MONTH quota periods on UTC boundaries.
//! - `quota`: the shared quota counters (`QuotaStore`) and each shard's `QuotaLease`.
//! - `state`: the quota state file format.
//! - `cluster`: quotas and throttles shared by several hosts through Redis (pure logic).
//! - here: `Traffic` (what `config::compile` builds: keys, plans, the flat table of limits),
//!   `RouteLimits` (one per route per stage: the resolved chain, as indexes), `ShardTraffic`
//!   (one shard's buckets and leases, with the report / assign / release steps of a
//!   rebalance), `Traffic::state_entries` / `restore` (quota counters ↔ state file entries by
//!   name), `Traffic::usage` (GetUsage-like report) and `Traffic::decide`, the hierarchy in the guide's
//!   order: the API key first (only on `api_key_required` routes), then the throttles
//!   plan-per-route, plan, stage-per-route, stage, account, then the plan's quota.
//!
//! A request takes a token from every level of its chain only when all of them have one, and
//! spends quota only when no throttle refused it, so a refused request costs nothing.

pub mod bucket;
pub mod cluster;
pub mod period;
pub mod quota;
pub mod state;

use crate::gateway::responses::ResponseType;
use bucket::{Limit, ShardReport, Share, ShareBalancer, TokenBucket};
use period::Period;
use quota::{QuotaLease, QuotaStore};
use std::collections::HashMap;

/// "None" in the index tables.
pub const NONE: u32 = u32::MAX;

/// Index of the account-level bucket.
pub const ACCOUNT_BUCKET: u32 = 0;

/// Where an API's key comes from (`api_key_source`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeySource {
    /// The `x-api-key` request header.
    #[default]
    Header,
    /// The authorizer's `usageIdentifierKey`.
    Authorizer,
}

/// An API key as the data plane knows it: the name only (its value is only in the lookup
/// map, which `Debug` does not print).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub name: Box<str>,
    pub enabled: bool,
}

/// A plan's quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub period: Period,
    /// Requests subtracted from `limit` in the initial period of each key (the first period
    /// a counter counts without a state-file entry for its plan and key); `< limit`.
    pub offset: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub name: Box<str>,
    pub quota: Option<Quota>,
}

/// One key in one plan: the unit plan limits and quotas are counted per (across all stages
/// of the plan). Its index is also the quota counter's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Membership {
    pub plan: u32,
    pub key: u32,
    /// Bucket of the plan's `throttle` for this key, or `NONE`.
    pub throttle_bucket: u32,
    /// First bucket of this key's plan route throttles (`PlanStage::routes` offsets add to it).
    pub route_base: u32,
}

/// A plan on one API stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanStage {
    pub plan: u32,
    /// Per route of the API (its index in `Api::routes`): offset of the plan's route throttle
    /// from `Membership::route_base`, or `NONE`.
    pub routes: Box<[u32]>,
}

/// Which plan (if any) a key is in on one stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Index into `Traffic::memberships`, or `NONE`: the key has no plan on this stage.
    pub membership: u32,
    /// Index into `Traffic::plan_stages`.
    pub plan_stage: u32,
}

impl Binding {
    pub const UNBOUND: Binding = Binding {
        membership: NONE,
        plan_stage: NONE,
    };
}

/// The traffic-control side of one route on one stage, resolved at compile time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteLimits {
    pub api_key_required: bool,
    pub key_source: KeySource,
    /// The route's index in its API.
    pub route: u32,
    /// The (api, stage)'s index into `Traffic::bindings`.
    pub stage_slot: u32,
    /// Bucket of the stage's `route_throttles` entry for this route, or `NONE`.
    pub stage_route_bucket: u32,
    /// Bucket of the stage's `throttle`, or `NONE`.
    pub stage_bucket: u32,
}

/// Everything traffic control compiled from the config: keys, plans and the flat table of
/// limits whose indexes the route chains hold. Bucket 0 is the account.
#[derive(Clone, Default)]
pub struct Traffic {
    pub keys: Vec<ApiKey>,
    /// Key value → index into `keys`. Never printed.
    values: HashMap<Box<[u8]>, u32, ahash::RandomState>,
    pub plans: Vec<Plan>,
    pub memberships: Vec<Membership>,
    pub plan_stages: Vec<PlanStage>,
    /// Per (api, stage) slot: per key, its binding.
    pub bindings: Vec<Box<[Binding]>>,
    /// The limit of every bucket (index = bucket id; 0 is the account).
    pub limits: Vec<Limit>,
    /// Whether the account bucket (0) is enforced: `account_throttle` was written in
    /// `[server]`. Without it a route with no other limit pays nothing per request.
    pub account_limited: bool,
}

impl std::fmt::Debug for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traffic")
            .field("keys", &self.keys)
            .field("values", &format_args!("<{} redacted>", self.values.len()))
            .field("plans", &self.plans)
            .field("memberships", &self.memberships)
            .field("plan_stages", &self.plan_stages)
            .field("bindings", &self.bindings)
            .field("limits", &self.limits)
            .field("account_limited", &self.account_limited)
            .finish()
    }
}

/// One line of a usage report (`Traffic::usage`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub plan: Box<str>,
    pub key: Box<str>,
    /// `[period_start, period_end)`, seconds since the epoch (UTC).
    pub period_start: i64,
    pub period_end: i64,
    pub used: u64,
    pub remaining: u64,
}

/// The outcome of `Traffic::decide`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go on; `key` is the API key's index when the route required one (for logs: its name).
    Continue { key: Option<u32> },
    /// Answer with this gateway response (INVALID_API_KEY, THROTTLED or QUOTA_EXCEEDED).
    Reject(ResponseType),
}

/// The clocks a decision reads: monotonic for buckets, wall clock (UTC) for quota periods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub mono_ns: u64,
    pub unix_secs: i64,
}

impl Traffic {
    /// Tables with only the account bucket (enforced).
    pub fn new(account: Limit) -> Traffic {
        Traffic {
            limits: vec![account],
            account_limited: true,
            ..Traffic::default()
        }
    }

    /// Whether `route` has anything to check: an API key, a stage or stage-route throttle, or
    /// the account throttle. When not, the throttle-and-quota phase does nothing for it (no
    /// clock, no hashing, no bucket).
    pub fn applies(&self, route: &RouteLimits) -> bool {
        route.api_key_required
            || route.stage_bucket != NONE
            || route.stage_route_bucket != NONE
            || self.account_limited
    }

    /// Adds a key (its value must be new; the compiler checks). Returns its index.
    pub fn add_key(&mut self, name: &str, value: &str, enabled: bool) -> u32 {
        let index = u32::try_from(self.keys.len()).unwrap_or(NONE);
        self.keys.push(ApiKey {
            name: name.into(),
            enabled,
        });
        self.values.insert(value.as_bytes().into(), index);
        index
    }

    /// The index of the key with this value.
    pub fn key_index(&self, value: &[u8]) -> Option<u32> {
        self.values.get(value).copied()
    }

    /// Adds a bucket; returns its id.
    pub fn add_bucket(&mut self, limit: Limit) -> u32 {
        self.limits.push(limit);
        u32::try_from(self.limits.len() - 1).unwrap_or(NONE)
    }

    /// The membership of (plan name, key name), if the key is in the plan.
    pub fn membership(&self, plan: &str, key: &str) -> Option<usize> {
        self.memberships.iter().position(|m| {
            self.plans
                .get(m.plan as usize)
                .is_some_and(|p| &*p.name == plan)
                && self
                    .keys
                    .get(m.key as usize)
                    .is_some_and(|k| &*k.name == key)
        })
    }

    /// One `ShareBalancer` per bucket (same order as `limits`), for `shards` shards.
    pub fn balancers(&self, shards: usize) -> Vec<ShareBalancer> {
        self.limits
            .iter()
            .map(|l| ShareBalancer::new(*l, shards))
            .collect()
    }

    /// The quota counters of `store` as state-file entries (stable identity: plan name, key
    /// name, period start). Counters never used (period day 0 and count 0) are left out.
    pub fn state_entries<S: QuotaStore + ?Sized>(&self, store: &S) -> Vec<state::Entry> {
        let mut out = Vec::new();
        for (m, membership) in self.memberships.iter().enumerate() {
            let (Some(plan), Some(key)) = (
                self.plans.get(membership.plan as usize),
                self.keys.get(membership.key as usize),
            ) else {
                continue;
            };
            if plan.quota.is_none() {
                continue;
            }
            let (day, used) = store.get(m);
            if day == 0 && used == 0 {
                continue;
            }
            out.push(state::Entry {
                plan: plan.name.to_string(),
                key: key.name.to_string(),
                period_start: day * 86_400,
                used,
            });
        }
        out
    }

    /// Loads `entries` (from the state file) into `store`: each entry whose plan and key still
    /// exist, whose plan still has a quota and whose period is the current one (per the plan's
    /// period now) sets that counter. An entry of another period sets the counter to the
    /// current period with 0 used (if no current entry set it): the key was counted before,
    /// so its initial period is over and the quota's `offset` is not charged again. Returns
    /// how many counters of the current period were restored.
    pub fn restore<S: QuotaStore + ?Sized>(
        &self,
        store: &S,
        entries: &[state::Entry],
        unix_secs: i64,
    ) -> usize {
        let mut restored = 0;
        for e in entries {
            let Some(m) = self.membership(&e.plan, &e.key) else {
                continue;
            };
            let Some(q) = self
                .memberships
                .get(m)
                .and_then(|ms| self.plans.get(ms.plan as usize))
                .and_then(|p| p.quota)
            else {
                continue;
            };
            let current = q.period.start_day(unix_secs.div_euclid(86_400));
            if e.period_start == current * 86_400 {
                store.set(m, current, e.used);
                restored += 1;
            } else if store.get(m) == (0, 0) {
                store.set(m, current, 0);
            }
        }
        restored
    }

    /// Usage per key and plan with a quota for the period holding `unix_secs`, like API
    /// Gateway's GetUsage: used (from `entries`, the state file's counters; 0 when none) and
    /// remaining. Only names, never key values.
    pub fn usage(&self, entries: &[state::Entry], unix_secs: i64) -> Vec<Usage> {
        let mut out = Vec::with_capacity(self.memberships.len());
        for m in &self.memberships {
            let (Some(plan), Some(key)) = (
                self.plans.get(m.plan as usize),
                self.keys.get(m.key as usize),
            ) else {
                continue;
            };
            let Some(q) = plan.quota else { continue };
            let (start, end) = q.period.bounds(unix_secs);
            let used = entries
                .iter()
                .find(|e| *e.plan == *plan.name && *e.key == *key.name && e.period_start == start)
                .map_or(0, |e| e.used)
                .min(q.limit);
            out.push(Usage {
                plan: plan.name.clone(),
                key: key.name.clone(),
                period_start: start,
                period_end: end,
                used,
                remaining: q.limit - used,
            });
        }
        out
    }

    /// Decides one request: `key` is the key value the request carried (the `x-api-key`
    /// header or the authorizer's `usageIdentifierKey`, per `route.key_source`). Pure apart
    /// from the shard's buckets and leases and the shared quota store.
    pub fn decide<S: QuotaStore + ?Sized>(
        &self,
        route: &RouteLimits,
        key: Option<&[u8]>,
        shard: &mut ShardTraffic,
        store: &S,
        now: Now,
    ) -> Decision {
        let mut chain = [NONE; 5];
        let mut quota: Option<(usize, Quota)> = None;
        let mut key_index = None;
        if route.api_key_required {
            let Some(binding) = self.binding(route, key) else {
                return Decision::Reject(ResponseType::InvalidApiKey);
            };
            let m = binding.membership as usize;
            let Some(membership) = self.memberships.get(m) else {
                return Decision::Reject(ResponseType::InvalidApiKey);
            };
            key_index = Some(membership.key);
            let offset = self
                .plan_stages
                .get(binding.plan_stage as usize)
                .and_then(|ps| ps.routes.get(route.route as usize))
                .copied()
                .unwrap_or(NONE);
            if offset != NONE {
                chain[0] = membership.route_base + offset;
            }
            chain[1] = membership.throttle_bucket;
            quota = self
                .plans
                .get(membership.plan as usize)
                .and_then(|p| p.quota)
                .map(|q| (m, q));
        }
        chain[2] = route.stage_route_bucket;
        chain[3] = route.stage_bucket;
        if self.account_limited {
            chain[4] = ACCOUNT_BUCKET;
        }
        for &b in &chain {
            if b != NONE && !shard.bucket(b).is_some_and(|b| b.ready(now.mono_ns)) {
                return Decision::Reject(ResponseType::Throttled);
            }
        }
        if let Some((m, q)) = quota {
            let today = now.unix_secs.div_euclid(86_400);
            let shards = shard.shards;
            let admitted = shard.leases.get_mut(m).is_some_and(|lease| {
                let day = lease.period_start(&q.period, today);
                lease.try_take(store, m, day, q.limit, q.offset, shards)
            });
            if !admitted {
                return Decision::Reject(ResponseType::QuotaExceeded);
            }
        }
        for &b in &chain {
            if let Some(bucket) = shard.bucket(b) {
                bucket.take();
            }
        }
        Decision::Continue { key: key_index }
    }

    /// The key's binding on the route's stage: `None` for a missing, unknown or disabled key
    /// or a key with no usage plan on this stage.
    fn binding(&self, route: &RouteLimits, key: Option<&[u8]>) -> Option<Binding> {
        let k = self.key_index(key?)?;
        if !self.keys.get(k as usize)?.enabled {
            return None;
        }
        let b = *self
            .bindings
            .get(route.stage_slot as usize)?
            .get(k as usize)?;
        (b.membership != NONE).then_some(b)
    }
}

/// One shard's traffic state: its share of every bucket and its quota leases.
#[derive(Clone, Debug)]
pub struct ShardTraffic {
    pub buckets: Vec<TokenBucket>,
    /// One per membership (quota counter).
    pub leases: Vec<QuotaLease>,
    /// How many shards share the limits.
    pub shards: usize,
}

impl ShardTraffic {
    /// Shard `shard` of `shards`: an equal share of every limit, full buckets.
    pub fn new(traffic: &Traffic, shard: usize, shards: usize, now_ns: u64) -> ShardTraffic {
        let shards = shards.max(1);
        let buckets = traffic
            .limits
            .iter()
            .map(|l| {
                let share = ShareBalancer::new(*l, shards)
                    .initial()
                    .get(shard)
                    .copied()
                    .unwrap_or_default();
                TokenBucket::with_share(share.rate_milli, share.capacity, share.level, now_ns)
            })
            .collect();
        ShardTraffic {
            buckets,
            leases: vec![QuotaLease::default(); traffic.memberships.len()],
            shards,
        }
    }

    /// For a rebalance: every bucket's report (demand since the last one, units handed in),
    /// written into `out` (same length as `buckets`).
    pub fn report(&mut self, now_ns: u64, out: &mut [ShardReport]) {
        for (b, r) in self.buckets.iter_mut().zip(out.iter_mut()) {
            *r = b.report(now_ns);
        }
    }

    /// Installs bucket `b`'s new share.
    pub fn assign(&mut self, b: usize, share: &Share, now_ns: u64) {
        if let Some(bucket) = self.buckets.get_mut(b) {
            bucket.assign(share, now_ns);
        }
    }

    /// Gives every unused lease back to the store (graceful shutdown or reload).
    pub fn release_leases<S: QuotaStore + ?Sized>(&mut self, store: &S) {
        for (m, lease) in self.leases.iter_mut().enumerate() {
            lease.release(store, m);
        }
    }

    fn bucket(&mut self, b: u32) -> Option<&mut TokenBucket> {
        if b == NONE {
            None
        } else {
            self.buckets.get_mut(b as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::period::PeriodKind;
    use crate::traffic::quota::AtomicQuotaStore;

    const KEY: &[u8] = b"alice0123456789abcdefghij";

    /// One stage, one route, key `alice` in plan `gold` (and `bob`, disabled, in it too;
    /// `carol` in no plan). Limits as given (burst = tokens available at once).
    struct Fixture {
        traffic: Traffic,
        route: RouteLimits,
    }

    fn fixture(
        account: u64,
        stage: Option<u64>,
        stage_route: Option<u64>,
        plan: Option<u64>,
        plan_route: Option<u64>,
        quota: Option<u64>,
    ) -> Fixture {
        let mut t = Traffic::new(Limit::new(0.0, account));
        let alice = t.add_key("alice", "alice0123456789abcdefghij", true);
        let bob = t.add_key("bob", "bob0123456789abcdefghijkl", false);
        let _carol = t.add_key("carol", "carol0123456789abcdefghij", true);
        t.plans.push(Plan {
            name: "gold".into(),
            quota: quota.map(|limit| Quota {
                limit,
                period: Period::new(PeriodKind::Day),
                offset: 0,
            }),
        });
        let route_limit = plan_route.map(|b| Limit::new(0.0, b));
        let mut bindings = vec![Binding::UNBOUND; 3];
        for (i, k) in [alice, bob].into_iter().enumerate() {
            let throttle_bucket = plan.map_or(NONE, |b| t.add_bucket(Limit::new(0.0, b)));
            let route_base = u32::try_from(t.limits.len()).unwrap_or(NONE);
            if let Some(l) = route_limit {
                t.add_bucket(l);
            }
            t.memberships.push(Membership {
                plan: 0,
                key: k,
                throttle_bucket,
                route_base,
            });
            bindings[k as usize] = Binding {
                membership: u32::try_from(i).unwrap_or(NONE),
                plan_stage: 0,
            };
        }
        t.plan_stages.push(PlanStage {
            plan: 0,
            routes: vec![if route_limit.is_some() { 0 } else { NONE }].into(),
        });
        t.bindings.push(bindings.into());
        let stage_bucket = stage.map_or(NONE, |b| t.add_bucket(Limit::new(0.0, b)));
        let stage_route_bucket = stage_route.map_or(NONE, |b| t.add_bucket(Limit::new(0.0, b)));
        Fixture {
            traffic: t,
            route: RouteLimits {
                api_key_required: true,
                key_source: KeySource::Header,
                route: 0,
                stage_slot: 0,
                stage_route_bucket,
                stage_bucket,
            },
        }
    }

    const NOW: Now = Now {
        mono_ns: 1,
        unix_secs: 1_764_460_800,
    };

    fn run(f: &Fixture, key: Option<&[u8]>, n: usize) -> Vec<Decision> {
        let mut shard = ShardTraffic::new(&f.traffic, 0, 1, 0);
        let store = AtomicQuotaStore::new(f.traffic.memberships.len());
        (0..n)
            .map(|_| f.traffic.decide(&f.route, key, &mut shard, &store, NOW))
            .collect()
    }

    const OK: Decision = Decision::Continue { key: Some(0) };
    const THROTTLED: Decision = Decision::Reject(ResponseType::Throttled);
    const QUOTA: Decision = Decision::Reject(ResponseType::QuotaExceeded);
    const INVALID: Decision = Decision::Reject(ResponseType::InvalidApiKey);

    #[test]
    fn the_key_is_checked_before_any_limit() {
        // Even with every bucket empty, a bad key is INVALID_API_KEY, not THROTTLED.
        let f = fixture(0, Some(0), Some(0), Some(0), Some(0), Some(0));
        assert_eq!(run(&f, None, 1), [INVALID]);
        assert_eq!(run(&f, Some(b"nope0123456789abcdefghij"), 1), [INVALID]);
        assert_eq!(run(&f, Some(b"bob0123456789abcdefghijkl"), 1), [INVALID]); // disabled
        assert_eq!(run(&f, Some(b"carol0123456789abcdefghij"), 1), [INVALID]); // no plan here
        assert_eq!(run(&f, Some(KEY), 1), [THROTTLED]);
    }

    #[test]
    fn each_level_throttles_and_the_smallest_wins() {
        // Each level in turn is the tightest (2 tokens), the others have 10.
        for tight in 0..5 {
            let b = |i: usize| Some(if i == tight { 2 } else { 10 });
            let f = fixture(b(4).unwrap_or(0), b(3), b(2), b(1), b(0), None);
            assert_eq!(
                run(&f, Some(KEY), 3),
                [OK, OK, THROTTLED],
                "tight level {tight}"
            );
        }
    }

    #[test]
    fn a_refused_request_takes_no_token_from_the_other_levels() {
        // The stage (2) refuses the third request: the plan bucket (3) must still have one.
        let f = fixture(100, Some(2), None, Some(3), None, None);
        let mut shard = ShardTraffic::new(&f.traffic, 0, 1, 0);
        let store = AtomicQuotaStore::new(2);
        for _ in 0..3 {
            f.traffic
                .decide(&f.route, Some(KEY), &mut shard, &store, NOW);
        }
        let plan_bucket = f.traffic.memberships[0].throttle_bucket as usize;
        assert_eq!(shard.buckets[plan_bucket].tokens(1), 1);
    }

    #[test]
    fn quota_comes_after_the_throttles_and_is_not_spent_by_throttled_requests() {
        let f = fixture(100, None, None, Some(3), None, Some(5));
        let mut shard = ShardTraffic::new(&f.traffic, 0, 1, 0);
        let store = AtomicQuotaStore::new(2);
        let mut out = Vec::new();
        for _ in 0..4 {
            out.push(
                f.traffic
                    .decide(&f.route, Some(KEY), &mut shard, &store, NOW),
            );
        }
        assert_eq!(out, [OK, OK, OK, THROTTLED]);
        // Blocks of one near a limit of 5: exactly the three admitted requests were counted.
        assert_eq!(store.get(0).1, 3);
        let f = fixture(100, None, None, None, None, Some(2));
        assert_eq!(run(&f, Some(KEY), 3), [OK, OK, QUOTA]);
    }

    #[test]
    fn the_quota_starts_again_in_the_next_period() {
        let f = fixture(100, None, None, None, None, Some(2));
        let mut shard = ShardTraffic::new(&f.traffic, 0, 1, 0);
        let store = AtomicQuotaStore::new(2);
        // The last second of a UTC day, then the first of the next (a DAY quota).
        let day_end = (NOW.unix_secs.div_euclid(86_400) + 1) * 86_400 - 1;
        let mut at = |unix_secs: i64, mono_ns: u64| {
            f.traffic.decide(
                &f.route,
                Some(KEY),
                &mut shard,
                &store,
                Now { mono_ns, unix_secs },
            )
        };
        assert_eq!(
            [at(day_end, 1), at(day_end, 2), at(day_end, 3)],
            [OK, OK, QUOTA]
        );
        assert_eq!(
            [at(day_end + 1, 4), at(day_end + 1, 5), at(day_end + 1, 6)],
            [OK, OK, QUOTA]
        );
    }

    #[test]
    fn routes_without_a_key_bypass_plan_limits() {
        let mut f = fixture(5, Some(3), None, Some(0), Some(0), Some(0));
        f.route.api_key_required = false;
        let none = Decision::Continue { key: None };
        assert_eq!(run(&f, None, 4), [none, none, none, THROTTLED]);
        // A key sent anyway changes nothing.
        assert_eq!(run(&f, Some(KEY), 4), [none, none, none, THROTTLED]);
    }

    #[test]
    fn state_entries_round_trip_through_the_store_by_name() {
        let f = fixture(100, None, None, None, None, Some(10));
        let store = AtomicQuotaStore::new(2);
        let mut shard = ShardTraffic::new(&f.traffic, 0, 1, 0);
        for _ in 0..4 {
            f.traffic
                .decide(&f.route, Some(KEY), &mut shard, &store, NOW);
        }
        shard.release_leases(&store);
        let entries = f.traffic.state_entries(&store);
        let day = NOW.unix_secs.div_euclid(86_400);
        assert_eq!(
            entries,
            [state::Entry {
                plan: "gold".into(),
                key: "alice".into(),
                period_start: day * 86_400,
                used: 4,
            }]
        );
        let text = state::encode(&entries);
        let back = state::decode(&text).unwrap_or_default();
        let fresh = AtomicQuotaStore::new(2);
        assert_eq!(f.traffic.restore(&fresh, &back, NOW.unix_secs), 1);
        assert_eq!(fresh.get(0), (day, 4));
        // A count from yesterday, or for a key no longer in the plan, is not restored; the
        // one from yesterday marks alice's counter as counted before (today at 0).
        let mut old = back.clone();
        old[0].period_start -= 86_400;
        old.push(state::Entry {
            plan: "gold".into(),
            key: "carol".into(),
            period_start: day * 86_400,
            used: 9,
        });
        let other = AtomicQuotaStore::new(2);
        assert_eq!(f.traffic.restore(&other, &old, NOW.unix_secs), 0);
        assert_eq!(other.get(0), (day, 0));
        assert_eq!(other.get(1), (0, 0));
    }

    #[test]
    fn the_offset_is_charged_once_per_key_and_survives_a_restart() {
        let mut f = fixture(100, None, None, None, None, Some(10));
        if let Some(q) = f.traffic.plans[0].quota.as_mut() {
            q.offset = 6;
        }
        let admit = |store: &AtomicQuotaStore, now: Now| {
            let mut shard = ShardTraffic::new(&f.traffic, 0, 1, 0);
            let n = (0..20)
                .filter(|_| {
                    matches!(
                        f.traffic
                            .decide(&f.route, Some(KEY), &mut shard, store, now),
                        Decision::Continue { .. }
                    )
                })
                .count();
            shard.release_leases(store);
            n
        };
        // Initial period: 10 - 6.
        let store = AtomicQuotaStore::new(2);
        assert_eq!(admit(&store, NOW), 4);
        // A restart in the same period resumes at 10 used: nothing more, not a new offset.
        let entries = f.traffic.state_entries(&store);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].used, 10);
        let restarted = AtomicQuotaStore::new(2);
        assert_eq!(f.traffic.restore(&restarted, &entries, NOW.unix_secs), 1);
        assert_eq!(admit(&restarted, NOW), 0);
        // The next day is a full period, in this process and after a restart into it.
        let tomorrow = Now {
            unix_secs: NOW.unix_secs + 86_400,
            ..NOW
        };
        assert_eq!(admit(&store, tomorrow), 10);
        let next_day = AtomicQuotaStore::new(2);
        assert_eq!(
            f.traffic.restore(&next_day, &entries, tomorrow.unix_secs),
            0
        );
        assert_eq!(admit(&next_day, tomorrow), 10);
        // Without any entry (a fresh state file), the key's first period is charged.
        assert_eq!(admit(&AtomicQuotaStore::new(2), tomorrow), 4);
    }

    #[test]
    fn usage_reports_used_and_remaining_for_the_current_period() {
        let f = fixture(100, None, None, None, None, Some(10));
        let day = NOW.unix_secs.div_euclid(86_400);
        let entries = [
            state::Entry {
                plan: "gold".into(),
                key: "alice".into(),
                period_start: day * 86_400,
                used: 7,
            },
            // An earlier period of bob: not this period's usage.
            state::Entry {
                plan: "gold".into(),
                key: "bob".into(),
                period_start: (day - 1) * 86_400,
                used: 3,
            },
        ];
        let report = f.traffic.usage(&entries, NOW.unix_secs);
        let lines: Vec<(&str, u64, u64)> = report
            .iter()
            .map(|u| (&*u.key, u.used, u.remaining))
            .collect();
        assert_eq!(lines, [("alice", 7, 3), ("bob", 0, 10)]);
        assert_eq!(report[0].period_end - report[0].period_start, 86_400);
    }

    #[test]
    fn shard_reports_and_shares_move_tokens_between_shards() {
        let f = fixture(10, None, None, None, None, None);
        let mut a = ShardTraffic::new(&f.traffic, 0, 2, 0);
        let mut b = ShardTraffic::new(&f.traffic, 1, 2, 0);
        let route = RouteLimits {
            api_key_required: false,
            ..f.route
        };
        let store = AtomicQuotaStore::new(2);
        let admitted = |s: &mut ShardTraffic, n: usize| {
            (0..n)
                .filter(|_| {
                    matches!(
                        f.traffic.decide(&route, None, s, &store, NOW),
                        Decision::Continue { .. }
                    )
                })
                .count()
        };
        // Half of the account's 10 each at first.
        assert_eq!(admitted(&mut a, 20), 5);
        let n = f.traffic.limits.len();
        let mut ra = vec![ShardReport::default(); n];
        let mut rb = vec![ShardReport::default(); n];
        a.report(NOW.mono_ns, &mut ra);
        b.report(NOW.mono_ns, &mut rb);
        let mut balancers = f.traffic.balancers(2);
        let mut shares = [Share::default(); 2];
        balancers[0].rebalance(&[ra[0], rb[0]], &mut shares);
        a.assign(0, &shares[0], NOW.mono_ns);
        b.assign(0, &shares[1], NOW.mono_ns);
        // Shard b's 5 unused tokens moved to the busy shard a (b keeps its floor share of
        // capacity, and no token of the pool is lost).
        assert_eq!(admitted(&mut a, 20) + admitted(&mut b, 20), 5);
        assert!(shares[0].level >= 4 * bucket::UNITS_PER_TOKEN);
    }

    #[test]
    fn key_values_are_not_printed() {
        let f = fixture(1, None, None, None, None, None);
        let text = format!("{:?}", f.traffic);
        assert!(text.contains("alice"));
        assert!(!text.contains("0123456789"), "{text}");
    }
}
