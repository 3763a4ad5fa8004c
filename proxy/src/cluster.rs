//! `[cluster]`: quotas and throttles shared by several hosts through Redis — the host's one
//! sync thread (`tollgate-cluster`) and the only code that talks to Redis.
//!
//! The shards never wait for Redis: they lease quota from the host's `HostStock` (the quota
//! store of `traffic_state` in cluster mode) and throttle with their own buckets. This thread,
//! every `sync_interval` (and at each UTC midnight, where quota periods roll):
//! - **quotas**: per counter, one Lua script call (pipelined, one round trip for all counters
//!   that need one) that atomically adds what the host owes (requests admitted while failed
//!   open, or everything after Redis lost its data), gives back idle stock, and grants a new
//!   block (`used + n ≤ limit`, at most 1/8 of what is left, `PEXPIREAT` at the period end,
//!   the quota's `offset` charged once per plan and key through a `SET NX` marker). Only
//!   counters whose stock is below its low-water mark, idle, or owed are called, so the ops
//!   per second do not grow with the request rate beyond lease refills (≤ 1 per counter per
//!   interval). The stock is sized by the counter's demand over the last interval (admitted
//!   plus refused), for two intervals; a shard that finds it empty admits on *credit* (a
//!   budget of floor(0.1 % × limit ÷ hosts) per host, see `traffic::cluster`) and wakes this
//!   thread, which refills at once and charges the credit to Redis. The first miss after
//!   each regular sync (or after a refill that got something) wakes it, later misses do not.
//! - **ready**: `Ready::wait` returns (the shards start, `/readyz` turns 200) once the first full
//!   sync leased an initial block for every plan and key and registered the host, and the
//!   others have had two intervals to count it (its credit starts then), or, without Redis,
//!   once it failed open. At each period rollover (UTC midnight) the thread wakes, starts the
//!   new periods and leases their first blocks in the same sync; shards that get there
//!   first admit on credit.
//! - **throttles**: one Lua call publishes the host's smoothed demand per limit (a hash with
//!   an expiry per host, hosts in a sorted set by last sync; each limit under a stable
//!   identity, `limit_ids`, a hash of what it limits and its rate and burst, so hosts whose
//!   configs differ share only the limits they have alike) and returns every limit's total;
//!   the host's part of each limit (`traffic::cluster::host_share`: the demand rule
//!   `ShareBalancer` uses across shards) goes to `Link`, which the shards' rebalance round
//!   hands to its balancers as the host's limit.
//! - **Redis down or slow** (every call has a timeout): the shards go on with the stock and
//!   shares in hand; after `fail_open_after` without a successful sync the store fails open
//!   (quota unchecked, admitted requests counted) and every throttle falls back to
//!   rate / last-known-hosts; errors are logged at most once per `LOG_EVERY`, the state
//!   changes once each; reconnects back off (sync interval doubling to `MAX_BACKOFF`); once
//!   back, the counts admitted meanwhile are added to Redis. A changed `epoch` key means Redis
//!   lost its data (restart without persistence): the host adds everything it holds again.
//! - **exit** (`Link::shutdown`, after the shards gave back their leases): the stock goes back
//!   to Redis.
//! - **reload** (`follow`, called by `traffic_state::successor` before any shard swaps): the
//!   thread takes the new `TrafficShared`, whose counters of unchanged plan, key and period
//!   share the old store's slots (`HostStock::successor`), so their account with Redis
//!   (`held`, period, demand) carries over as it is; a changed limit gives the stock back and
//!   leases anew (`Counter::reset`, again once the shards swapped); new counters get their
//!   first block before `follow` returns; counters the new config lacks retire (`Retiring`:
//!   given back to Redis at the syncs after the hand-over). Throttle limits keep demand and
//!   share by identity. `[cluster]` itself is restart-only (`reload::check`).
//! - `usage_entries`: `tollgate usage` reads the counters of the current periods from Redis.
//!
//! Metrics (`render_metrics`, one cluster per process): `tollgate_cluster_redis_up`,
//! `tollgate_cluster_fail_open`, `tollgate_cluster_redis_errors_total`,
//! `tollgate_cluster_redis_ops_total`, `tollgate_cluster_wakeups_total`.

use crate::traffic_state::TrafficShared;
use redis::{Connection, RedisResult};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate_core::gateway::{Api, Gateway};
use tollgate_core::traffic::bucket::Limit;
use tollgate_core::traffic::cluster::{self as logic, ClusterSettings, HostStock};
use tollgate_core::traffic::period::Period;
use tollgate_core::traffic::{state, Binding, Membership, PlanStage, Traffic};

/// Longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// At most one Redis error line per this long (the others are counted in the next line).
const LOG_EVERY: Duration = Duration::from_secs(5);
/// How much longer than `fail_open_after` (plus two sync intervals) `start` waits for the
/// host to be ready before starting the shards anyway.
const READY_SLACK: Duration = Duration::from_secs(1);
/// How long the exit path waits for the stock to be given back.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);
/// Longest sleep between looks at the stop flag and at misses (a miss also wakes the thread).
const MISS_POLL: Duration = Duration::from_millis(10);
/// Credit is given only once the host registered this many sync intervals ago: every other
/// host has synced since and counts it, so the budgets (limit / 1000 / hosts) of all hosts
/// sum to at most 0.1 % of the limit.
const CREDIT_AFTER_SYNCS: u32 = 2;
/// A spent counter (Redis said nothing is left) is asked again at most every this many syncs.
const SPENT_RETRY_TICKS: u32 = 5;

/// The quota lease script: KEYS = count, seen marker; ARGV = limit, want, expire_at_ms,
/// offset, add (signed: owed > 0, returned < 0), known (1: this host counted the key before,
/// never charge the offset), max block, remaining divisor. Returns `{grant, used}`;
/// `{0, -1}` when the period is over by Redis's clock.
const LEASE_LUA: &str = r"
local limit = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local expire_at = tonumber(ARGV[3])
local offset = tonumber(ARGV[4])
local add = tonumber(ARGV[5])
local known = ARGV[6] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now >= expire_at then return {0, -1} end
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if redis.call('SET', KEYS[2], '1', 'NX') and not known then used = used + offset end
used = math.max(0, used + add)
local grant = 0
local remaining = limit - used
if remaining > 0 and want > 0 then
  grant = math.min(want, tonumber(ARGV[7]), math.max(1, math.floor(remaining / tonumber(ARGV[8]))), remaining)
end
used = used + grant
redis.call('SET', KEYS[1], string.format('%.0f', used))
redis.call('PEXPIREAT', KEYS[1], expire_at)
return {grant, used}
";

/// The demand script: ARGV = prefix, host id, ttl_ms, then (limit identity, smoothed demand)
/// pairs (`limit_ids`). Returns `{hosts, id, total, id, total, ...}` over the hosts seen
/// within ttl.
const DEMAND_LUA: &str = r"
local prefix, host, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hosts = prefix .. 'hosts'
redis.call('ZADD', hosts, now, host)
redis.call('ZREMRANGEBYSCORE', hosts, '-inf', now - ttl)
redis.call('PEXPIRE', hosts, ttl * 10)
local mine = prefix .. 'd:' .. host
redis.call('DEL', mine)
local i = 4
while i <= #ARGV do
  local j = math.min(i + 199, #ARGV)
  redis.call('HSET', mine, unpack(ARGV, i, j))
  i = j + 1
end
if #ARGV >= 4 then redis.call('PEXPIRE', mine, ttl) end
local members = redis.call('ZRANGE', hosts, 0, -1)
local totals, order = {}, {}
for _, h in ipairs(members) do
  local kv = redis.call('HGETALL', prefix .. 'd:' .. h)
  for k = 1, #kv, 2 do
    local f = kv[k]
    if totals[f] == nil then totals[f] = 0; order[#order + 1] = f end
    totals[f] = totals[f] + tonumber(kv[k + 1])
  end
end
local out = {tostring(#members)}
for _, f in ipairs(order) do
  out[#out + 1] = f
  out[#out + 1] = string.format('%.0f', totals[f])
end
return out
";

/// Process-wide cluster metrics (a process runs at most one cluster link).
struct Stats {
    enabled: AtomicBool,
    up: AtomicBool,
    fail_open: AtomicBool,
    errors: AtomicU64,
    ops: AtomicU64,
    wakeups: AtomicU64,
}

impl Stats {
    const fn new() -> Stats {
        Stats {
            enabled: AtomicBool::new(false),
            up: AtomicBool::new(false),
            fail_open: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            wakeups: AtomicU64::new(0),
        }
    }
}

static STATS: Stats = Stats::new();

/// Appends the cluster metrics to a Prometheus text exposition (nothing without `[cluster]`).
pub fn render_metrics(out: &mut String) {
    render_stats(&STATS, out);
}

fn render_stats(stats: &Stats, out: &mut String) {
    if !stats.enabled.load(Ordering::Relaxed) {
        return;
    }
    let metrics: [(&str, &str, &str, u64); 5] = [
        (
            "tollgate_cluster_redis_up",
            "gauge",
            "1 when the last sync with Redis succeeded.",
            u64::from(stats.up.load(Ordering::Relaxed)),
        ),
        (
            "tollgate_cluster_fail_open",
            "gauge",
            "1 while quotas are unchecked and throttles fall back (Redis gone longer than fail_open_after_ms).",
            u64::from(stats.fail_open.load(Ordering::Relaxed)),
        ),
        (
            "tollgate_cluster_redis_errors_total",
            "counter",
            "Failed Redis connections and calls.",
            stats.errors.load(Ordering::Relaxed),
        ),
        (
            "tollgate_cluster_redis_ops_total",
            "counter",
            "Redis commands sent by this host (scripts count one each).",
            stats.ops.load(Ordering::Relaxed),
        ),
        (
            "tollgate_cluster_wakeups_total",
            "counter",
            "Times a shard that found its quota stock empty woke the sync thread (at most once per sync, or per refill that got something).",
            stats.wakeups.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, v) in metrics {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    }
}

/// What the shards' rebalance rounds and the sync thread exchange: per limit (bucket index),
/// the demand seen since the last sync and the host's part of the limit.
pub struct Link {
    demand: Box<[AtomicU64]>,
    rate_milli: Box<[AtomicU64]>,
    burst: Box<[AtomicU64]>,
    stop: AtomicBool,
    done: AtomicBool,
    /// The sync thread's order channel (set by `start`, handed on to successors by `follow`).
    follow: std::sync::OnceLock<mpsc::Sender<Follow>>,
}

/// A config reload's order to the sync thread: from now on stock and sync `shared` (its
/// limits named by `ids`); the thread answers on `reply` once it did.
pub struct Follow {
    shared: Arc<TrafficShared>,
    ids: Vec<String>,
    reply: mpsc::Sender<()>,
}

/// How long a reload waits for the sync thread to take its new traffic state (one Redis
/// round trip normally; a call in progress can take up to its timeout, 1 s).
const FOLLOW_WAIT: Duration = Duration::from_secs(3);

/// Retired groups are given back to Redis at this many regular syncs after their reload's
/// hand-over (late releases of leases included), then forgotten.
const RETIRE_SYNCS: u32 = 2;

/// Config reload: has the host's sync thread (which stocks `old`) follow `new`, built by
/// `traffic_state::successor` with the quota counters of unchanged identity sharing `old`'s
/// slots. Returns once the thread stocked `new`'s other counters and took its throttle
/// limits (or after `FOLLOW_WAIT`; it follows anyway), so shards swapping to `new` find
/// stock. Nothing when either has no cluster link.
pub fn follow(old: &TrafficShared, new: &Arc<TrafficShared>, gw: &Gateway) {
    let (Some(ol), Some(nl)) = (old.link.as_ref(), new.link.as_ref()) else {
        return;
    };
    let Some(tx) = ol.follow.get() else {
        return;
    };
    let _ = nl.follow.set(tx.clone());
    let (reply, answer) = mpsc::channel();
    let order = Follow {
        shared: new.clone(),
        ids: limit_ids(gw),
        reply,
    };
    if tx.send(order).is_ok() && answer.recv_timeout(FOLLOW_WAIT).is_err() {
        eprintln!(
            "tollgate: cluster: the sync thread did not take the reloaded limits within {FOLLOW_WAIT:?}; it will when its Redis call returns (shards admit on credit meanwhile)"
        );
    }
}

impl Link {
    /// Until the first sync, the host's part of each limit is the whole limit.
    pub fn new(limits: &[Limit]) -> Link {
        Link {
            demand: limits.iter().map(|_| AtomicU64::new(0)).collect(),
            rate_milli: limits
                .iter()
                .map(|l| AtomicU64::new(l.rate_milli))
                .collect(),
            burst: limits.iter().map(|l| AtomicU64::new(l.burst)).collect(),
            stop: AtomicBool::new(false),
            done: AtomicBool::new(false),
            follow: std::sync::OnceLock::new(),
        }
    }

    /// A rebalance round's demand for limit `b` (requests that asked for a token).
    pub fn add_demand(&self, b: usize, n: u64) {
        if let Some(d) = self.demand.get(b) {
            d.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The host's part of limit `b`.
    pub fn host_limit(&self, b: usize) -> Option<Limit> {
        Some(Limit {
            rate_milli: self.rate_milli.get(b)?.load(Ordering::Relaxed),
            burst: self.burst.get(b)?.load(Ordering::Relaxed),
        })
    }

    /// Demand handed in since the last sync for limit `b` (tests).
    #[cfg(test)]
    pub fn demand(&self, b: usize) -> u64 {
        self.demand.get(b).map_or(0, |d| d.load(Ordering::Relaxed))
    }

    pub(crate) fn set_host_limit(&self, b: usize, l: Limit) {
        if let (Some(r), Some(c)) = (self.rate_milli.get(b), self.burst.get(b)) {
            r.store(l.rate_milli, Ordering::Relaxed);
            c.store(l.burst, Ordering::Relaxed);
        }
    }

    /// The exit path: the sync thread gives the stock back to Redis (waits at most
    /// `SHUTDOWN_WAIT`). Call it after the shards gave back their leases.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        while !self.done.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn unix_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

/// `{prefix}q:{plan length}:{plan}:{key}:` (the period's first day is appended): the length
/// keeps names with `:` apart.
fn count_base(prefix: &str, plan: &str, key: &str) -> String {
    format!("{prefix}q:{}:{plan}:{key}:", plan.len())
}

fn seen_key(prefix: &str, plan: &str, key: &str) -> String {
    format!("{prefix}seen:{}:{plan}:{key}", plan.len())
}

/// One quota counter (membership with a quota) as the sync thread follows it.
struct Counter {
    index: usize,
    base: String,
    seen: String,
    limit: u64,
    offset: u64,
    period: Period,
    /// First day of the period being leased (`i64::MIN`: none yet).
    day: i64,
    /// What Redis counts for this host in the period.
    held: u64,
    last_taken: u64,
    /// Demand in the last regular sync interval: requests admitted (net of the leases given
    /// back) plus requests refused for an empty stock.
    consumed: u64,
    idle: u32,
    /// Redis said nothing is left; asked again every `SPENT_RETRY_TICKS` only.
    spent: bool,
    spent_ticks: u32,
    /// A lease call succeeded once in this process: the offset is never charged again.
    known: bool,
    /// The quota limit changed on a reload: the next lease call gives the whole stock back
    /// and leases anew under the new limit.
    reset: bool,
    /// ... and once more after the reload's hand-over (leases the shards gave back while
    /// they swapped).
    reset_on_retire: bool,
}

impl Counter {
    fn key(&self) -> String {
        format!("{}{}", self.base, self.day)
    }

    fn expire_at_ms(&self) -> u64 {
        u64::try_from(self.period.next_start_day(self.day))
            .unwrap_or(0)
            .saturating_mul(86_400_000)
    }
}

/// What a quota sync does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The regular sync: measure consumption, refill, give idle stock back, pay debts.
    Sync,
    /// Between syncs, after a miss: refill empty stocks only (consumption is not measured).
    Refill,
    /// The exit path: give everything back, lease nothing.
    Last,
}

struct Conn {
    conn: Connection,
    lease_sha: String,
    demand_sha: String,
}

/// The counters of a traffic state a reload replaced, whose identity the new config does
/// not have (plan or key gone, quota period changed): once the reload handed over, their
/// stock and what they owe go back to Redis for `RETIRE_SYNCS` regular syncs, then they are
/// forgotten.
struct Retiring {
    shared: Arc<TrafficShared>,
    counters: Vec<Counter>,
    /// Regular syncs left once `shared` is retired (`None`: not yet).
    syncs_left: Option<u32>,
}

struct Sync {
    shared: Arc<TrafficShared>,
    /// Reload orders (`follow`).
    orders: mpsc::Receiver<Follow>,
    retiring: Vec<Retiring>,
    settings: ClusterSettings,
    client: Option<redis::Client>,
    conn: Option<Conn>,
    counters: Vec<Counter>,
    limits: Vec<Limit>,
    /// Per limit, its stable identity in Redis (`limit_ids`), and the way back.
    ids: Vec<String>,
    by_id: HashMap<String, usize>,
    smoothed: Vec<u64>,
    totals: Vec<u64>,
    hosts: usize,
    /// When this host may start admitting on credit (set at its first registration).
    credit_from: Option<Instant>,
    /// A full sync succeeded once (quotas leased, the host registered).
    synced: bool,
    host_id: String,
    /// Connections made (for the epoch candidate); `epoch`: the value Redis had when we
    /// last connected.
    attempts: u64,
    epoch: Option<String>,
    last_ok: Instant,
    failed_open: bool,
    /// Since when Redis is unreachable (for the log).
    down_since: Option<Instant>,
    backoff: Duration,
    next_attempt: Instant,
    last_log: Option<Instant>,
    suppressed: u64,
}

fn counters(t: &Traffic, prefix: &str) -> Vec<Counter> {
    let mut out = Vec::new();
    for (index, m) in t.memberships.iter().enumerate() {
        let (Some(plan), Some(key)) = (t.plans.get(m.plan as usize), t.keys.get(m.key as usize))
        else {
            continue;
        };
        let Some(q) = plan.quota else { continue };
        out.push(Counter {
            index,
            base: count_base(prefix, &plan.name, &key.name),
            seen: seen_key(prefix, &plan.name, &key.name),
            limit: q.limit,
            offset: q.offset,
            period: q.period,
            day: i64::MIN,
            held: 0,
            last_taken: 0,
            consumed: 0,
            idle: 0,
            spent: false,
            spent_ticks: 0,
            known: false,
            reset: false,
            reset_on_retire: false,
        });
    }
    out
}

/// FNV-1a, 64 bits: a hash every host computes alike (no per-process seed).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Per limit (bucket index), a stable identity for its demand in Redis: a 16-hex-digit hash of
/// what the limit is (the account; an API's stage; a stage's route; a plan and key; a plan,
/// key, stage and route) and its rate and burst. Hosts whose configs differ for a while (one
/// reloaded, the other not yet) share a limit only when both have it with the same rate and
/// burst; a limit on only some hosts is shared only among them. Unnamed buckets (none today)
/// fall back to their index.
fn limit_ids(gw: &Gateway) -> Vec<String> {
    let t = &gw.traffic;
    let mut names: Vec<Option<String>> = vec![None; t.limits.len()];
    name_bucket(&mut names, 0, "account".to_string());
    let slots = name_stage_buckets(gw, &mut names);
    for m in &t.memberships {
        name_membership_buckets(gw, &slots, m, &mut names);
    }
    hashed_ids(names, &t.limits)
}

/// Names bucket `b` `what` unless it has a name already (the first name wins).
fn name_bucket(names: &mut [Option<String>], b: u32, what: String) {
    if let Some(slot) = names.get_mut(b as usize) {
        slot.get_or_insert(what);
    }
}

/// Names the stage and stage-route buckets; returns stage slot → (api, stage) names.
fn name_stage_buckets<'g>(
    gw: &'g Gateway,
    names: &mut [Option<String>],
) -> HashMap<u32, (&'g str, &'g str)> {
    let mut slots: HashMap<u32, (&str, &str)> = HashMap::new();
    for api in &gw.apis {
        for route in &api.routes {
            for (si, l) in route.limits.iter().enumerate() {
                let Some(stage) = api.stages.get(si) else {
                    continue;
                };
                slots.insert(l.stage_slot, (&api.name, &stage.name));
                name_bucket(
                    names,
                    l.stage_bucket,
                    format!("stage\0{}\0{}", api.name, stage.name),
                );
                name_bucket(
                    names,
                    l.stage_route_bucket,
                    format!("stage-route\0{}\0{}\0{}", api.name, stage.name, route.key),
                );
            }
        }
    }
    slots
}

/// Names membership `m`'s plan throttle and its plan-route buckets on every stage it is
/// bound to.
fn name_membership_buckets(
    gw: &Gateway,
    slots: &HashMap<u32, (&str, &str)>,
    m: &Membership,
    names: &mut [Option<String>],
) {
    let t = &gw.traffic;
    let (Some(plan), Some(key)) = (t.plans.get(m.plan as usize), t.keys.get(m.key as usize)) else {
        return;
    };
    name_bucket(
        names,
        m.throttle_bucket,
        format!("plan\0{}\0{}", plan.name, key.name),
    );
    for (slot, bindings) in t.bindings.iter().enumerate() {
        let Some((ps, api, api_name, stage_name)) = bound_stage(gw, slots, m, slot, bindings)
        else {
            continue;
        };
        for (r, offset) in ps.routes.iter().enumerate() {
            if *offset == tollgate_core::traffic::NONE {
                continue;
            }
            let Some(route) = api.routes.get(r) else {
                continue;
            };
            name_bucket(
                names,
                m.route_base.saturating_add(*offset),
                format!(
                    "plan-route\0{}\0{}\0{api_name}\0{stage_name}\0{}",
                    plan.name, key.name, route.key
                ),
            );
        }
    }
}

/// The plan stage, API and (api, stage) names of stage slot `slot` if `m`'s key is bound
/// there to `m`'s plan.
fn bound_stage<'g>(
    gw: &'g Gateway,
    slots: &HashMap<u32, (&'g str, &'g str)>,
    m: &Membership,
    slot: usize,
    bindings: &[Binding],
) -> Option<(&'g PlanStage, &'g Api, &'g str, &'g str)> {
    let b = bindings.get(m.key as usize)?;
    let ps = gw.traffic.plan_stages.get(b.plan_stage as usize)?;
    let (api_name, stage_name) = u32::try_from(slot).ok().and_then(|s| slots.get(&s))?;
    let api = gw.apis.iter().find(|a| &*a.name == *api_name)?;
    if ps.plan != m.plan {
        return None;
    }
    Some((ps, api, api_name, stage_name))
}

/// Each bucket's identity: the hash of its name (or its index), rate and burst.
fn hashed_ids(names: Vec<Option<String>>, limits: &[Limit]) -> Vec<String> {
    names
        .into_iter()
        .zip(limits)
        .enumerate()
        .map(|(b, (n, l))| {
            let what = n.unwrap_or_else(|| format!("bucket\0{b}"));
            let h = fnv1a(format!("{what}\0{}\0{}", l.rate_milli, l.burst).as_bytes());
            format!("{h:016x}")
        })
        .collect()
}

/// The sync thread's word that the host may serve (`start`, `Ready::wait`).
pub struct Ready {
    rx: mpsc::Receiver<()>,
    timeout: Duration,
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
    fn stock(&self) -> Option<&HostStock> {
        self.shared.store.cluster()
    }

    fn link(&self) -> Option<&Link> {
        self.shared.link.as_ref()
    }

    /// Whether the host may report ready: synced once and counted by the other hosts
    /// (credit allowed), or failed open.
    fn ready(&self) -> bool {
        self.failed_open || (self.synced && self.credit_allowed())
    }

    fn credit_allowed(&self) -> bool {
        self.credit_from.is_some_and(|t| Instant::now() >= t)
    }

    fn run(&mut self, ready: &mpsc::Sender<()>) {
        if let Some(s) = self.stock() {
            s.set_waker(std::thread::current());
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
            // there), in slices so a shutdown is seen quickly.
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
                std::thread::park_timeout(left.min(MISS_POLL));
            }
            if !self.link().is_some_and(|l| l.stop.load(Ordering::Acquire)) {
                self.tick(false);
            }
        }
    }

    /// One sync (`last`: the exit path; return everything, lease nothing).
    fn tick(&mut self, last: bool) {
        self.roll_periods();
        if self.conn.is_none() && Instant::now() >= self.next_attempt {
            if let Err(e) = self.connect() {
                self.failed(&e);
            }
        }
        self.retire_check();
        if self.conn.is_some() {
            let mode = if last { Mode::Last } else { Mode::Sync };
            let r = self.sync_quotas(mode);
            let r = if last {
                r
            } else {
                r.and_then(|()| self.sync_throttles())
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

    /// Whether a reload handed over since the last look (every shard runs the new generation):
    /// its retired counters are given back from the next regular sync on, and the counters
    /// whose limit changed give back at once what the shards returned while swapping
    /// (leases taken under the old limit).
    fn retire_check(&mut self) -> bool {
        let mut reset = false;
        for r in &mut self.retiring {
            if r.syncs_left.is_some() || !r.shared.is_retired() {
                continue;
            }
            r.syncs_left = Some(RETIRE_SYNCS);
            if let Some(stock) = r.shared.store.cluster() {
                for c in &r.counters {
                    stock.set_credit_budget(c.index, 0);
                }
            }
            for c in &mut self.counters {
                if c.reset_on_retire {
                    c.reset_on_retire = false;
                    c.reset = true;
                    reset = true;
                }
            }
        }
        reset
    }

    /// Lets the next miss wake this thread, on the store it stocks and on replaced ones.
    fn arm(&self) {
        if let Some(s) = self.stock() {
            s.arm();
        }
        for r in &self.retiring {
            if let Some(s) = r.shared.store.cluster() {
                s.arm();
            }
        }
    }

    /// A reload (`follow`): from now on stock and sync `order.shared`. Its counters that
    /// share a slot with one followed so far (same plan, key and period: see
    /// `HostStock::successor`) keep that counter's account with Redis (held, period, demand;
    /// nothing moves: the stock is the same atomics); a changed limit gives the stock back
    /// and leases anew under it. Counters the new config does not have retire (`Retiring`).
    /// Limits keep their smoothed demand and host share by identity; new ones start at an
    /// equal share per host. Then one lease round stocks the new counters before answering.
    fn follow(&mut self, order: Follow) {
        let target = order.shared;
        let mut fresh = counters(target.tables(), &self.settings.key_prefix);
        let old = std::mem::replace(&mut self.shared, target.clone());
        let mut old_counters = std::mem::take(&mut self.counters);
        if let Some(ns) = target.store.cluster() {
            self.carry_counters(&mut fresh, &mut old_counters, &old, ns);
            ns.set_waker(std::thread::current());
            ns.set_fail_open(self.failed_open);
        }
        self.counters = fresh;
        self.retire(&old, &target, old_counters);
        self.follow_throttles(&old, &target, order.ids);
        self.roll_periods();
        if self.conn.is_some() {
            if let Err(e) = self.sync_quotas(Mode::Refill) {
                self.failed(&e);
            }
        }
        self.set_credit_budgets();
        self.arm();
        let _ = order.reply.send(());
    }

    /// Each of `fresh` (counters of the new store `ns`) that shares a slot with one of
    /// `old_counters` (of `old`) or of a retiring generation takes over that one's account.
    fn carry_counters(
        &mut self,
        fresh: &mut [Counter],
        old_counters: &mut Vec<Counter>,
        old: &TrafficShared,
        ns: &HostStock,
    ) {
        for nc in fresh {
            let found = take_match(old_counters, old, ns, nc.index).or_else(|| {
                self.retiring
                    .iter_mut()
                    .find_map(|r| take_match(&mut r.counters, &r.shared, ns, nc.index))
            });
            let Some(oc) = found else { continue };
            carry_counter(nc, &oc, ns);
        }
    }

    /// From now on `old` (unless it is `target`) retires with `old_counters`; `target` no
    /// longer does.
    fn retire(
        &mut self,
        old: &Arc<TrafficShared>,
        target: &Arc<TrafficShared>,
        old_counters: Vec<Counter>,
    ) {
        self.retiring.retain(|r| !Arc::ptr_eq(&r.shared, target));
        if !Arc::ptr_eq(old, target) {
            self.retiring.push(Retiring {
                shared: old.clone(),
                counters: old_counters,
                syncs_left: None,
            });
        }
    }

    /// Throttles, by limit identity: `target`'s limits (named by `ids`) keep `old`'s
    /// smoothed demand and host share, new ones start at an equal share per host.
    fn follow_throttles(&mut self, old: &TrafficShared, target: &TrafficShared, ids: Vec<String>) {
        let limits = target.tables().limits.clone();
        let mut by_id = HashMap::with_capacity(ids.len());
        for (b, id) in ids.iter().enumerate() {
            by_id.entry(id.clone()).or_insert(b);
        }
        let mut smoothed = vec![0; limits.len()];
        let mut totals = vec![0; limits.len()];
        if let Some(link) = target.link.as_ref() {
            for (b, id) in ids.iter().enumerate() {
                let Some(l) = limits.get(b) else { continue };
                match self.carried_throttle(old, link, b, id) {
                    Some((share, s, t)) => {
                        link.set_host_limit(b, share);
                        smoothed[b] = s;
                        totals[b] = t;
                    }
                    None if self.failed_open => {
                        link.set_host_limit(b, logic::fallback_share(*l, self.hosts));
                    }
                    None => link.set_host_limit(b, logic::host_share(*l, 0, 0, self.hosts)),
                }
            }
        }
        self.limits = limits;
        self.ids = ids;
        self.by_id = by_id;
        self.smoothed = smoothed;
        self.totals = totals;
    }

    /// For the new limit `b` (identity `id`) of `link`: the old generation's same limit hands
    /// its demand since the last sync to `link`; returns that limit's host share, smoothed
    /// demand and total, if `old` had it.
    fn carried_throttle(
        &self,
        old: &TrafficShared,
        link: &Link,
        b: usize,
        id: &str,
    ) -> Option<(Limit, u64, u64)> {
        let ob = self.by_id.get(id).copied()?;
        let ol = old.link.as_ref()?;
        // Demand the old generation's rounds handed in since the last sync.
        let d = ol
            .demand
            .get(ob)
            .map_or(0, |d| d.swap(0, Ordering::Relaxed));
        link.add_demand(b, d);
        Some((
            ol.host_limit(ob)?,
            self.smoothed.get(ob).copied().unwrap_or(0),
            self.totals.get(ob).copied().unwrap_or(0),
        ))
    }

    /// Every counter's credit budget: floor(0.1 % of the limit / hosts last seen), 0 while
    /// Redis says the quota is spent or before the other hosts count this one.
    fn set_credit_budgets(&self) {
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

    /// Starts the current period (by this host's clock) of every counter whose period
    /// changed. The old period's stock is dropped (its count expires with it).
    fn roll_periods(&mut self) {
        let today = i64::try_from(unix_ms() / 86_400_000).unwrap_or(0);
        let Some(stock) = self.shared.store.cluster() else {
            return;
        };
        for c in &mut self.counters {
            let day = c.period.start_day(today);
            if day != c.day {
                let (old_stock, old_taken) = stock.roll(c.index, day);
                // What the old period admitted on credit and never charged: its counter is
                // over, so that credit is free again.
                stock.settle_credit(c.index, (old_stock + old_taken).saturating_sub(c.held));
                c.day = day;
                c.held = 0;
                c.last_taken = 0;
                c.idle = 0;
                c.spent = false;
            }
        }
    }

    fn timeout(&self) -> Duration {
        self.settings
            .fail_open_after
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    fn connect(&mut self) -> RedisResult<()> {
        let timeout = self.timeout();
        let Some(client) = &self.client else {
            return Ok(());
        };
        let mut conn = client.get_connection_with_timeout(timeout)?;
        conn.set_read_timeout(Some(timeout))?;
        conn.set_write_timeout(Some(timeout))?;
        let lease_sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(LEASE_LUA)
            .query(&mut conn)?;
        let demand_sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(DEMAND_LUA)
            .query(&mut conn)?;
        let epoch_key = format!("{}epoch", self.settings.key_prefix);
        // A fresh candidate per connection: after Redis lost its data, whoever sets the key
        // first sets a value no host remembers.
        self.attempts += 1;
        let candidate = format!("{}-{}", self.host_id, self.attempts);
        let (_, epoch): (Option<String>, String) = redis::pipe()
            .cmd("SET")
            .arg(&epoch_key)
            .arg(&candidate)
            .arg("NX")
            .cmd("GET")
            .arg(&epoch_key)
            .query(&mut conn)?;
        STATS.ops.fetch_add(4, Ordering::Relaxed);
        if self.epoch.as_ref().is_some_and(|e| *e != epoch) {
            eprintln!(
                "tollgate: cluster: Redis {} lost its counters (restarted without persistence?): this host adds back the quota it admitted or holds",
                self.settings.redis
            );
            for c in &mut self.counters {
                c.held = 0;
                c.spent = false;
            }
        }
        self.epoch = Some(epoch);
        self.conn = Some(Conn {
            conn,
            lease_sha,
            demand_sha,
        });
        Ok(())
    }

    /// One lease round for the counters followed (`mode`) and, at regular syncs and at exit,
    /// one giving back everything of the retired counters of replaced traffic states.
    fn sync_quotas(&mut self, mode: Mode) -> RedisResult<()> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        if let Some(stock) = self.shared.store.cluster() {
            lease_round(conn, stock, &mut self.counters, mode, self.shared.shards)?;
        }
        if mode == Mode::Refill {
            return Ok(());
        }
        for r in &mut self.retiring {
            if r.syncs_left.is_none() && mode != Mode::Last {
                continue;
            }
            if let Some(stock) = r.shared.store.cluster() {
                lease_round(conn, stock, &mut r.counters, Mode::Last, r.shared.shards)?;
            }
            if mode == Mode::Sync {
                r.syncs_left = r.syncs_left.map(|n| n.saturating_sub(1));
            }
        }
        self.retiring.retain(|r| r.syncs_left != Some(0));
        Ok(())
    }
    fn sync_throttles(&mut self) -> RedisResult<()> {
        let Some(link) = self.shared.link.as_ref() else {
            return Ok(());
        };
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let ttl = (self.settings.sync_interval * 5).max(Duration::from_millis(500));
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&conn.demand_sha)
            .arg(0)
            .arg(&self.settings.key_prefix)
            .arg(&self.host_id)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(500));
        for (b, s) in self.smoothed.iter_mut().enumerate() {
            let d = link
                .demand
                .get(b)
                .map_or(0, |d| d.swap(0, Ordering::Relaxed));
            *s = logic::smooth(*s, d);
            if *s > 0 {
                if let Some(id) = self.ids.get(b) {
                    cmd.arg(id).arg(*s);
                }
            }
        }
        STATS.ops.fetch_add(1, Ordering::Relaxed);
        let reply: Vec<String> = cmd.query(&mut conn.conn)?;
        let mut it = reply.iter();
        self.hosts = it
            .next()
            .and_then(|h| h.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        self.totals.iter_mut().for_each(|t| *t = 0);
        while let (Some(id), Some(t)) = (it.next(), it.next()) {
            if let (Some(&b), Ok(t)) = (self.by_id.get(id.as_str()), t.parse::<u64>()) {
                if let Some(slot) = self.totals.get_mut(b) {
                    *slot = t;
                }
            }
        }
        if self.credit_from.is_none() {
            // Registered: the others count this host from their next sync on.
            self.credit_from =
                Some(Instant::now() + self.settings.sync_interval * CREDIT_AFTER_SYNCS);
        }
        for (b, limit) in self.limits.iter().enumerate() {
            let own = self.smoothed.get(b).copied().unwrap_or(0);
            let total = self.totals.get(b).copied().unwrap_or(0);
            link.set_host_limit(b, logic::host_share(*limit, own, total, self.hosts));
        }
        Ok(())
    }

    fn succeeded(&mut self) {
        self.synced = true;
        self.last_ok = Instant::now();
        self.backoff = self.settings.sync_interval;
        STATS.up.store(true, Ordering::Relaxed);
        if let Some(since) = self.down_since.take() {
            eprintln!(
                "tollgate: cluster: Redis {} reachable again after {} ms{}",
                self.settings.redis,
                since.elapsed().as_millis(),
                if self.failed_open {
                    "; quotas and throttles are shared again, the requests admitted meanwhile were added to the Redis counters"
                } else {
                    ""
                }
            );
        }
        if self.failed_open {
            self.failed_open = false;
            if let Some(s) = self.stock() {
                s.set_fail_open(false);
            }
            STATS.fail_open.store(false, Ordering::Relaxed);
        }
    }

    fn failed(&mut self, e: &redis::RedisError) {
        self.conn = None;
        STATS.errors.fetch_add(1, Ordering::Relaxed);
        STATS.up.store(false, Ordering::Relaxed);
        let now = Instant::now();
        self.next_attempt = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        if self.down_since.is_none() {
            self.down_since = Some(now);
            eprintln!(
                "tollgate: cluster: Redis {} unreachable ({e}): serving from the quota leases and throttle shares in hand; quotas fail open after {} ms",
                self.settings.redis,
                self.settings.fail_open_after.as_millis()
            );
            self.last_log = Some(now);
            return;
        }
        if self
            .last_log
            .is_some_and(|t| now.duration_since(t) < LOG_EVERY)
        {
            self.suppressed += 1;
            return;
        }
        eprintln!(
            "tollgate: cluster: Redis {} still unreachable ({e}; {} more error(s) since the last line)",
            self.settings.redis, self.suppressed
        );
        self.suppressed = 0;
        self.last_log = Some(now);
    }

    fn check_fail_open(&mut self) {
        if self.failed_open
            || self.conn.is_some()
            || self.last_ok.elapsed() < self.settings.fail_open_after
        {
            return;
        }
        self.failed_open = true;
        STATS.fail_open.store(true, Ordering::Relaxed);
        if let Some(s) = self.stock() {
            s.set_fail_open(true);
        }
        if let Some(link) = self.link() {
            for (b, l) in self.limits.iter().enumerate() {
                link.set_host_limit(b, logic::fallback_share(*l, self.hosts));
            }
        }
        eprintln!(
            "tollgate: cluster: no Redis for {} ms: failing open — quotas are not checked (requests admitted are counted and added to Redis when it is back), throttles use rate / {} host(s) last seen",
            self.last_ok.elapsed().as_millis(),
            self.hosts
        );
    }
}

/// Takes out of `from` (counters of `owner`'s store) the one whose slot is `store`'s counter `c`.
fn take_match(
    from: &mut Vec<Counter>,
    owner: &TrafficShared,
    store: &HostStock,
    c: usize,
) -> Option<Counter> {
    let os = owner.store.cluster()?;
    let p = from
        .iter()
        .position(|oc| store.shares_slot(c, os, oc.index))?;
    Some(from.swap_remove(p))
}

/// The new counter `nc` (of store `ns`) takes over `oc`'s account with Redis; a changed limit
/// gives the stock back and leases anew under it.
fn carry_counter(nc: &mut Counter, oc: &Counter, ns: &HostStock) {
    nc.day = oc.day;
    nc.held = oc.held;
    nc.last_taken = oc.last_taken;
    nc.consumed = oc.consumed;
    nc.idle = oc.idle;
    nc.known = oc.known;
    if oc.limit == nc.limit {
        nc.spent = oc.spent;
        nc.spent_ticks = oc.spent_ticks;
        nc.reset = oc.reset;
        nc.reset_on_retire = oc.reset_on_retire;
    } else {
        nc.reset = true;
        nc.reset_on_retire = true;
        ns.set_spent(nc.index, false);
    }
}

/// One lease call per counter of `stock` that needs one (pipelined).
fn lease_round(
    conn: &mut Conn,
    stock: &HostStock,
    counters: &mut [Counter],
    mode: Mode,
    shards: usize,
) -> RedisResult<()> {
    let mut pipe = redis::pipe();
    // (counter position, withdrawn, owed)
    let mut batch: Vec<(usize, u64, u64)> = Vec::new();
    for (pos, c) in counters.iter_mut().enumerate() {
        if let Some((back, owed)) = queue_lease(&mut pipe, conn, stock, c, mode, shards) {
            batch.push((pos, back, owed));
        }
    }
    if batch.is_empty() {
        return Ok(());
    }
    STATS
        .ops
        .fetch_add(u64::try_from(batch.len()).unwrap_or(0), Ordering::Relaxed);
    // On an error the withdrawn stock is dropped and the debt kept: Redis may count a
    // few requests nobody admitted (under-admission), never the reverse.
    let results: Vec<(i64, i64)> = pipe.query(&mut conn.conn)?;
    for ((pos, back, owed), (grant, used)) in batch.into_iter().zip(results) {
        let Some(c) = counters.get_mut(pos) else {
            continue;
        };
        apply_lease(stock, c, back, owed, grant, used);
    }
    Ok(())
}

/// Queues `c`'s lease call on `pipe` if it has anything to hand in, ask for or give back;
/// returns what it withdrew from the stock and what it owes.
fn queue_lease(
    pipe: &mut redis::Pipeline,
    conn: &Conn,
    stock: &HostStock,
    c: &mut Counter,
    mode: Mode,
    shards: usize,
) -> Option<(u64, u64)> {
    stock.absorb_early(c.index);
    let (taken, held_here) = stock.counts(c.index);
    if mode == Mode::Sync {
        note_consumption(stock, c, taken);
    }
    let owed = (taken + held_here).saturating_sub(c.held);
    // A reload changed the limit: everything in stock goes back and the grant follows
    // the new limit (one atomic call).
    let reset = c.reset && mode != Mode::Last;
    let want = lease_want(stock, c, mode, reset, taken, held_here, shards);
    let want = hold_back_while_spent(c, want);
    let give_back = match mode {
        Mode::Last => held_here,
        _ if reset => held_here,
        Mode::Refill => 0,
        Mode::Sync => logic::idle_return(held_here, c.idle, shards, c.spent),
    };
    if owed == 0 && want == 0 && give_back == 0 {
        return None;
    }
    let back = stock.withdraw(c.index, give_back);
    let add = i128::from(owed) - i128::from(back);
    pipe.cmd("EVALSHA")
        .arg(&conn.lease_sha)
        .arg(2)
        .arg(c.key())
        .arg(&c.seen)
        .arg(c.limit)
        .arg(want)
        .arg(c.expire_at_ms())
        .arg(c.offset)
        .arg(add.to_string())
        .arg(if c.known { "1" } else { "0" })
        .arg(logic::MAX_HOST_BLOCK)
        .arg(logic::REMAINING_DIVISOR);
    Some((back, owed))
}

/// A regular sync's bookkeeping: what `c` consumed since the last one and how long it idled.
fn note_consumption(stock: &HostStock, c: &mut Counter, taken: u64) {
    let refused = stock.refused(c.index, true);
    c.consumed = taken.saturating_sub(c.last_taken) + refused;
    c.idle = if taken == c.last_taken && refused == 0 {
        c.idle.saturating_add(1)
    } else {
        0
    };
    c.last_taken = taken;
}

/// How much `c` asks Redis for in this round.
fn lease_want(
    stock: &HostStock,
    c: &Counter,
    mode: Mode,
    reset: bool,
    taken: u64,
    held_here: u64,
    shards: usize,
) -> u64 {
    match mode {
        Mode::Last => 0,
        _ if reset => logic::refill_want(0, c.consumed, shards),
        // Spent counters are asked again by the regular syncs only.
        Mode::Refill if held_here > 0 || c.spent => 0,
        // An empty stock: at least what the last interval consumed.
        // What the last interval consumed, or more if this one already did: the
        // stock doubles at each miss while a burst ramps up, and stays within two
        // intervals of consumption (the bound of what a killed host loses).
        Mode::Refill => logic::refill_want(
            0,
            c.consumed
                .max(taken.saturating_sub(c.last_taken) + stock.refused(c.index, false)),
            shards,
        ),
        Mode::Sync => logic::refill_want(held_here, c.consumed, shards),
    }
}

/// A spent counter asks again only every `SPENT_RETRY_TICKS` rounds: `want`, or 0 between.
fn hold_back_while_spent(c: &mut Counter, want: u64) -> u64 {
    if c.spent && want > 0 {
        c.spent_ticks += 1;
        if c.spent_ticks < SPENT_RETRY_TICKS {
            return 0;
        }
        c.spent_ticks = 0;
    }
    want
}

/// Books Redis's answer (`grant`, `used`) to `c`'s lease call into `c` and the stock.
fn apply_lease(stock: &HostStock, c: &mut Counter, back: u64, owed: u64, grant: i64, used: i64) {
    if used < 0 {
        // The period is over by Redis's clock: nothing was counted.
        return;
    }
    let grant = u64::try_from(grant).unwrap_or(0);
    let used = u64::try_from(used).unwrap_or(0);
    c.held = (c.held + owed).saturating_sub(back) + grant;
    c.known = true;
    c.reset = false;
    c.spent = used >= c.limit;
    // The requests admitted on credit up to the read of `counts` are charged now.
    stock.settle_credit(c.index, owed);
    if c.spent {
        stock.set_credit_budget(c.index, 0);
    }
    stock.set_spent(c.index, c.spent);
    stock.stock_up(c.index, grant);
    stock.set_global(c.index, used);
}

/// `tollgate usage` with `[cluster]`: the current period's count of every quota counter,
/// from Redis (what hosts leased: the requests admitted plus the small blocks still held).
pub fn usage_entries(gw: &Gateway, unix_secs: i64) -> Result<Vec<state::Entry>, String> {
    let Some(settings) = &gw.settings.cluster else {
        return Ok(Vec::new());
    };
    let fail = |e: redis::RedisError| format!("tollgate usage: Redis {}: {e}", settings.redis);
    let client = redis::Client::open(settings.redis.as_str()).map_err(fail)?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .map_err(fail)?;
    let t = &gw.traffic;
    let today = unix_secs.div_euclid(86_400);
    let mut out = Vec::new();
    for c in counters(t, &settings.key_prefix) {
        let Some(m) = t.memberships.get(c.index) else {
            continue;
        };
        let (Some(plan), Some(key)) = (t.plans.get(m.plan as usize), t.keys.get(m.key as usize))
        else {
            continue;
        };
        let day = c.period.start_day(today);
        let used: Option<u64> = redis::cmd("GET")
            .arg(format!("{}{day}", c.base))
            .query(&mut conn)
            .map_err(fail)?;
        out.push(state::Entry {
            plan: plan.name.to_string(),
            key: key.name.to_string(),
            period_start: day * 86_400,
            used: used.unwrap_or(0),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_keep_plan_and_key_apart() {
        assert_ne!(count_base("t:", "a:b", "c"), count_base("t:", "a", "b:c"));
        assert_eq!(count_base("t:", "gold", "alice"), "t:q:4:gold:alice:");
        assert_eq!(seen_key("t:", "gold", "alice"), "t:seen:4:gold:alice");
    }

    /// A config with every kind of limit; `stage_b` is stage b's throttle line (or nothing).
    fn limits_config(stage_b: &str, plan_rate: f64) -> Gateway {
        let text = format!(
            r#"
[server]
account_throttle = {{ rate = 1000.0, burst = 500 }}
[[listeners]]
address = "127.0.0.1"
port = 8080
[cluster]
redis = "redis://127.0.0.1:1/0"
[[api_keys]]
name = "alice"
value = "alice0123456789abcdef"
[[api_keys]]
name = "bob"
value = "bob0123456789abcdefgh"
[[usage_plans]]
name = "gold"
throttle = {{ rate = {plan_rate:.1}, burst = 10 }}
keys = ["alice", "bob"]
  [[usage_plans.stages]]
  api = "a"
  stage = "prod"
  route_throttles = {{ "GET /x" = {{ rate = 5.0, burst = 5 }} }}
[[apis]]
name = "a"
protocol = "rest"
  [[apis.stages]]
  name = "b"
  {stage_b}
  [[apis.stages]]
  name = "prod"
  throttle = {{ rate = 50.0, burst = 10 }}
  route_throttles = {{ "GET /x" = {{ rate = 20.0, burst = 10 }} }}
  [[apis.routes]]
  key = "GET /x"
  integration = {{ type = "mock", status = 200 }}
"#
        );
        tollgate_core::config::load_str("<ids>", &text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// Limit identity → its limit, for one config.
    fn ids_by_limit(gw: &Gateway) -> HashMap<String, Limit> {
        let ids = limit_ids(gw);
        assert_eq!(ids.len(), gw.traffic.limits.len());
        ids.into_iter()
            .zip(gw.traffic.limits.iter().copied())
            .collect()
    }

    #[test]
    fn limit_identities_are_stable_unique_and_follow_rate_and_burst() {
        let one = limits_config("", 10.0);
        let ids = ids_by_limit(&one);
        // Account, stage prod, stage-route, 2 × (plan, plan route): all distinct.
        assert_eq!(ids.len(), 7, "{ids:?}");
        assert_eq!(ids.len(), one.traffic.limits.len());
        // The same config built again: the same identities (no per-process seed).
        assert_eq!(limit_ids(&one), limit_ids(&limits_config("", 10.0)));
        // Another host's config has one more limit (a throttle on stage b, compiled before
        // prod's, so every later bucket index shifts): the limits both have keep their
        // identity; the new one is only on that host.
        let two = limits_config("throttle = { rate = 7.0, burst = 3 }", 10.0);
        let ids_two = ids_by_limit(&two);
        assert_eq!(ids_two.len(), 8);
        // Stage prod's throttle was bucket 1, is bucket 2 on the other host: same identity;
        // stage b's (bucket 1 there) is not in the first config.
        assert_eq!(limit_ids(&one)[1], limit_ids(&two)[2]);
        assert!(!ids.contains_key(&limit_ids(&two)[1]));
        for (id, l) in &ids {
            assert_eq!(ids_two.get(id), Some(l), "{id} lost or changed its limit");
        }
        // The plan throttle's rate changed: those (per key) are new identities, the rest
        // are shared.
        let three = limits_config("", 12.0);
        let ids_three = ids_by_limit(&three);
        let shared = ids.keys().filter(|id| ids_three.contains_key(*id)).count();
        assert_eq!(shared, 5, "alice's and bob's plan throttles changed");
    }

    #[test]
    fn metrics_render_only_with_a_cluster() {
        let stats = Stats::new();
        let mut out = String::new();
        render_stats(&stats, &mut out);
        assert!(out.is_empty());
        stats.enabled.store(true, Ordering::Relaxed);
        stats.up.store(true, Ordering::Relaxed);
        stats.ops.store(42, Ordering::Relaxed);
        render_stats(&stats, &mut out);
        for line in [
            "tollgate_cluster_redis_up 1",
            "tollgate_cluster_fail_open 0",
            "tollgate_cluster_redis_errors_total 0",
            "tollgate_cluster_redis_ops_total 42",
            "tollgate_cluster_wakeups_total 0",
        ] {
            assert!(out.lines().any(|l| l == line), "{out}");
        }
    }
}
