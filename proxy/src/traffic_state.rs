//! Traffic control's cross-core side and its file I/O: the only paths where shards meet.
//!
//! - `TrafficShared`, created once by `start` (from `runtime::run`) and handed to every shard
//!   in an `Arc`: the shared quota store (one atomic word per counter), the clock epoch every
//!   shard measures bucket time from, and the rebalance exchange.
//! - The rebalance (`spawn_rebalance`, one task per shard): every `REBALANCE` (100 ms, on
//!   boundaries of the shared epoch so shards report together) each shard hands in its
//!   buckets' demand and tokens under one mutex; the last shard to report computes every
//!   limit's new shares (`ShareBalancer`), and each shard installs its own. Each tick also
//!   gives unused quota leases back to the store, so the store's counts (what is persisted)
//!   are the admitted requests, not the leased ones.
//! - The state file: read at start (`start`: missing → every quota from 0, with one log line;
//!   corrupt or unreadable → refused, file untouched, unless `--reset-state`, which moves it
//!   aside), written every `state_flush_ms` by one thread (`tollgate-state`) and at exit
//!   (`stop_and_persist`: temp file, fsync, rename, fsync of the directory).
//! - Exit: the runtime's graceful shutdown (SIGTERM / SIGINT) calls `stop_and_persist` once
//!   in-flight requests are done: the shards hand back their leases, then the counts are written.
//! - `usage_report`: `tollgate usage`, GetUsage-like JSON from the state file.
//! - With `[cluster]`: `start` starts the `tollgate-cluster` sync thread (`cluster::start`),
//!   and `wait_cluster_ready` (called by the runtime once the admin listener is up, before
//!   the shards start) waits for its first sync or for it to fail open. On a reload,
//!   `successor` shares the quota slots of unchanged counters with the new state and has the
//!   sync thread follow it (`cluster::follow`); `abandon` sends it back if no shard swapped.
//!
//! Per request, none of this is touched: the shard's `ShardTraffic` is plain data and the
//! quota store is only reached when a lease is empty.

use crate::cluster::{self, Link};
use crate::shard::{Gen, Shard};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate_core::gateway::Gateway;
use tollgate_core::traffic::bucket::{ShardReport, Share, ShareBalancer};
use tollgate_core::traffic::cluster::{HostQuotaStore, HostStock};
use tollgate_core::traffic::period::civil_from_days;
use tollgate_core::traffic::quota::AtomicQuotaStore;
use tollgate_core::traffic::quota::QuotaStore;
use tollgate_core::traffic::{state, ShardTraffic, Traffic, NONE};

/// How often shards rebalance bucket shares and hand back unused quota leases.
pub const REBALANCE: Duration = Duration::from_millis(100);

/// How long a shard that reported polls for its new shares before the next tick.
const COLLECT_POLL: Duration = Duration::from_millis(2);
const COLLECT_POLLS: u32 = 40;

/// How long the exit path waits for every shard to hand back its leases.
const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// `--reset-state`: start even if the state file is corrupt (set by `main` before `run`).
static RESET_STATE: AtomicBool = AtomicBool::new(false);

/// `tollgate --reset-state`: a corrupt or unreadable state file is moved aside
/// (`<state_file>.corrupt-<unix time>`) and every quota starts from 0.
pub fn set_reset_state(on: bool) {
    RESET_STATE.store(on, Ordering::Relaxed);
}

/// What every shard shares (see the module doc).
pub struct TrafficShared {
    /// The in-process counters, or with `[cluster]` the stock leased from Redis.
    pub store: HostQuotaStore,
    /// With `[cluster]`: the exchange with the `tollgate-cluster` sync thread (demand per
    /// limit in, the host's part of each limit out).
    pub link: Option<Link>,
    /// Bucket time is nanoseconds since this instant, on every shard.
    pub epoch: Instant,
    pub shards: usize,
    /// Whether any limit or quota exists (else no rebalance task runs).
    pub active: bool,
    /// The compiled tables (names for the state file).
    traffic: Traffic,
    state_file: Option<PathBuf>,
    round: Mutex<Round>,
    /// With `[cluster]`, until `wait_cluster_ready`: the sync thread's word that the host may
    /// serve.
    cluster_ready: Mutex<Option<cluster::Ready>>,
    /// Set on the way out: shards hand back their leases and count themselves in `released`.
    stopping: AtomicBool,
    released: AtomicUsize,
    /// Serialises writes of the state file (the flush thread and the exit path); holds the
    /// last text written, so an unchanged state is not rewritten.
    written: Mutex<String>,
    /// A config reload replaced this state (`successor`): its flush thread stops.
    retired: AtomicBool,
}

/// One rebalance round: per shard, its reports (one per bucket) and, once every shard
/// reported, its new shares.
struct Round {
    balancers: Vec<ShareBalancer>,
    reports: Vec<Vec<ShardReport>>,
    reported: Vec<bool>,
    shares: Vec<Vec<Share>>,
    pending: Vec<bool>,
    column: Vec<ShardReport>,
    out: Vec<Share>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl TrafficShared {
    fn new(gateway: &Gateway, shards: usize) -> TrafficShared {
        let traffic = gateway.traffic.clone();
        let shards = shards.max(1);
        let buckets = traffic.limits.len();
        let active = traffic.account_limited || buckets > 1 || !traffic.memberships.is_empty();
        // With `[cluster]` even a config without limits has the link and the sync thread, so
        // that a reload may add limits (and the thread follows every successor).
        let clustered = gateway.settings.cluster.is_some();
        let counters = traffic.memberships.len();
        TrafficShared {
            store: if clustered {
                HostQuotaStore::Cluster(HostStock::new(counters))
            } else {
                HostQuotaStore::Local(AtomicQuotaStore::new(counters))
            },
            link: clustered.then(|| Link::new(&traffic.limits)),
            epoch: Instant::now(),
            shards,
            active,
            state_file: gateway.settings.state_file.clone(),
            round: Mutex::new(Round {
                balancers: traffic.balancers(shards),
                reports: vec![vec![ShardReport::default(); buckets]; shards],
                reported: vec![false; shards],
                shares: vec![vec![Share::default(); buckets]; shards],
                pending: vec![false; shards],
                column: vec![ShardReport::default(); shards],
                out: vec![Share::default(); shards],
            }),
            traffic,
            cluster_ready: Mutex::new(None),
            stopping: AtomicBool::new(false),
            released: AtomicUsize::new(0),
            written: Mutex::new(String::new()),
            retired: AtomicBool::new(false),
        }
    }

    /// A shard's traffic state at start: its equal share of every limit.
    pub fn shard_state(&self, index: usize) -> ShardTraffic {
        ShardTraffic::new(
            &self.traffic,
            index,
            self.shards,
            self.mono_ns(Instant::now()),
        )
    }

    /// Nanoseconds from the shared epoch to `t`.
    pub fn mono_ns(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Shard `i` hands in its reports; the last one of a round computes every share. Returns
    /// whether shard `i` has installed its new shares (else it polls with `collect`).
    fn report(&self, i: usize, st: &mut ShardTraffic, now_ns: u64) -> bool {
        let mut r = lock(&self.round);
        let r = &mut *r;
        if r.pending.get(i) == Some(&true) {
            install(r, i, st, now_ns);
            return true;
        }
        if r.reported.get(i) != Some(&false) {
            return false;
        }
        st.report(now_ns, &mut r.reports[i]);
        r.reported[i] = true;
        if r.reported.iter().all(|x| *x) {
            for (b, balancer) in r.balancers.iter_mut().enumerate() {
                for (s, c) in r.column.iter_mut().enumerate() {
                    *c = r.reports[s][b];
                }
                if let Some(link) = &self.link {
                    cluster_round(link, b, balancer, &r.column);
                }
                balancer.rebalance(&r.column, &mut r.out);
                for (s, share) in r.out.iter().enumerate() {
                    r.shares[s][b] = *share;
                }
            }
            r.reported.iter_mut().for_each(|x| *x = false);
            r.pending.iter_mut().for_each(|x| *x = true);
            install(r, i, st, now_ns);
            return true;
        }
        false
    }

    /// With `[cluster]`: waits until the host's first sync succeeded (an initial quota lease
    /// for every plan and key) and the other hosts count it, or until it failed open after
    /// `fail_open_after_ms` without Redis. The runtime calls it after starting the admin
    /// listener (which answers `/readyz` 503 meanwhile) and before starting the shards.
    /// Without `[cluster]` (or called again) it returns at once.
    pub fn wait_cluster_ready(&self) {
        let ready = lock(&self.cluster_ready).take();
        if let Some(r) = ready {
            r.wait();
        }
    }

    /// Whether a reload replaced this state and every shard left it (`hand_over`, `abandon`).
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// The compiled traffic tables (limits, plans, keys, memberships).
    pub fn tables(&self) -> &Traffic {
        &self.traffic
    }

    /// Installs shard `i`'s new shares if the round is complete; whether it did.
    fn collect(&self, i: usize, st: &mut ShardTraffic, now_ns: u64) -> bool {
        let mut r = lock(&self.round);
        if r.pending.get(i) == Some(&true) {
            install(&mut r, i, st, now_ns);
            true
        } else {
            false
        }
    }

    /// The quota counters as state-file text.
    fn state_text(&self) -> String {
        state::encode(&self.traffic.state_entries(&self.store))
    }

    /// Writes the quota counters to `state_file` now (atomically; skipped when nothing
    /// changed since the last write). Without a `state_file`, does nothing.
    pub fn persist(&self) -> Result<(), String> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let mut written = lock(&self.written);
        let text = self.state_text();
        if *written == text {
            return Ok(());
        }
        write_atomically(path, text.as_bytes())
            .map_err(|e| format!("tollgate: cannot write quota state {}: {e}", path.display()))?;
        *written = text;
        Ok(())
    }

    /// The exit path: asks every shard to hand back its unused quota leases (waits for them,
    /// at most `RELEASE_WAIT`), then persists. Call it once the gateway stops serving
    /// (graceful shutdown), before the process exits.
    pub fn stop_and_persist(&self) -> Result<(), String> {
        self.stopping.store(true, Ordering::Release);
        let deadline = Instant::now() + RELEASE_WAIT;
        // Without limits no rebalance task runs (and no lease exists): nothing to wait for.
        while self.active
            && self.released.load(Ordering::Acquire) < self.shards
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(link) = &self.link {
            // The leases are back in the host stock: give it back to Redis.
            link.shutdown();
        }
        self.persist()
    }
}

/// With `[cluster]`, in a rebalance round, for limit `b`: hands the host's demand to the sync
/// thread and splits the host's part of the limit (not the whole limit) over the shards.
fn cluster_round(link: &Link, b: usize, balancer: &mut ShareBalancer, column: &[ShardReport]) {
    link.add_demand(b, column.iter().map(|r| r.demand).sum());
    if let Some(host) = link.host_limit(b) {
        if balancer.limit() != host {
            balancer.set_limit(host);
        }
    }
}

fn install(r: &mut Round, i: usize, st: &mut ShardTraffic, now_ns: u64) {
    if let Some(shares) = r.shares.get(i) {
        for (b, share) in shares.iter().enumerate() {
            st.assign(b, share, now_ns);
        }
    }
    if let Some(p) = r.pending.get_mut(i) {
        *p = false;
    }
}

/// Temp file in the same directory, fsync, rename over `path`, fsync the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads the state file: `Ok(None)` when it does not exist.
fn read_state(path: &Path) -> Result<Option<Vec<state::Entry>>, String> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| "not UTF-8 text: not a tollgate quota state file".to_string())?;
            state::decode(text).map(Some).map_err(|e| e.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Creates the shared state for `shards` shards: loads the quota counters from `state_file`
/// and, with one, starts the flush thread. An error is the message to print before exiting
/// non-zero.
pub fn start(gateway: &Gateway, shards: usize) -> Result<Arc<TrafficShared>, String> {
    let shared = Arc::new(TrafficShared::new(gateway, shards));
    if let (Some(settings), Some(_)) = (&gateway.settings.cluster, &shared.link) {
        let ready = cluster::start(shared.clone(), settings.clone(), gateway)?;
        *lock(&shared.cluster_ready) = Some(ready);
    }
    let Some(path) = shared.state_file.clone() else {
        return Ok(shared);
    };
    let unix = i64::try_from(unix_now().as_secs()).unwrap_or(i64::MAX);
    match read_state(&path) {
        Ok(None) => {
            log::info!(
                "quota state file {} does not exist yet: every quota starts from 0",
                path.display()
            );
            // Create it now: a path that cannot be written fails here, not at every flush.
            shared.persist()?;
        }
        Ok(Some(entries)) => {
            let n = shared.traffic.restore(&shared.store, &entries, unix);
            log::info!(
                "resumed {n} quota counter(s) of the current period from {}",
                path.display()
            );
            *lock(&shared.written) = shared.state_text();
        }
        Err(e) if RESET_STATE.load(Ordering::Relaxed) => {
            let mut aside = path.as_os_str().to_owned();
            aside.push(format!(".corrupt-{unix}"));
            let aside = PathBuf::from(aside);
            std::fs::rename(&path, &aside).map_err(|re| {
                format!(
                    "tollgate: quota state file {} is refused ({e}) and cannot be moved aside for --reset-state: {re}",
                    path.display()
                )
            })?;
            log::warn!(
                "quota state file {} is refused ({e}); --reset-state: moved it to {} and every quota starts from 0",
                path.display(),
                aside.display()
            );
        }
        Err(e) => {
            return Err(format!(
                "tollgate: quota state file {} is refused: {e}. It is left as it is; not starting. Fix or remove it, or start with --reset-state to move it aside and start every quota from 0",
                path.display()
            ))
        }
    }
    let flusher = shared.clone();
    let every = gateway.settings.state_flush;
    std::thread::Builder::new()
        .name("tollgate-state".to_string())
        .spawn(move || flush_loop(&flusher, every))
        .map_err(|e| format!("tollgate: cannot start the quota state thread: {e}"))?;
    Ok(shared)
}

/// The `tollgate-state` thread: persists every `every` (the exit path persists once more).
fn flush_loop(shared: &TrafficShared, every: Duration) {
    let mut next = Instant::now() + every;
    let mut last_error: Option<String> = None;
    loop {
        let left = next.saturating_duration_since(Instant::now());
        std::thread::sleep(left);
        if shared.retired.load(Ordering::Acquire) {
            return;
        }
        if Instant::now() >= next {
            // A failing write is said once, not at every interval (and again once it works).
            match shared.persist() {
                Err(msg) if last_error.as_deref() != Some(msg.as_str()) => {
                    log::error!("{}", msg.strip_prefix("tollgate: ").unwrap_or(&msg));
                    last_error = Some(msg);
                }
                Err(_) => {}
                Ok(()) => {
                    if last_error.take().is_some() {
                        log::info!("quota state written again");
                    }
                }
            }
            next = Instant::now() + every;
        }
    }
}

/// Starts shard `shard`'s rebalance task for configuration generation `gen` (nothing when it
/// has no limit or quota); the task ends once a reload replaced `gen`.
pub fn spawn_rebalance(shard: Rc<Shard>, gen: Rc<Gen>) {
    if !gen.traffic.active {
        return;
    }
    glommio::spawn_local(rebalance_loop(shard, gen)).detach();
}

async fn rebalance_loop(shard: Rc<Shard>, gen: Rc<Gen>) {
    let shared = gen.traffic.clone();
    let period = u64::try_from(REBALANCE.as_nanos()).unwrap_or(u64::MAX);
    let mut released = false;
    while shard.is_current(&gen) {
        // Sleep to the next boundary of the shared epoch: all shards report together.
        let now = shared.mono_ns(Instant::now());
        let next = (now / period + 1) * period;
        glommio::timer::sleep(Duration::from_nanos(next - now)).await;
        if !shard.is_current(&gen) {
            break;
        }
        shard.refresh_clock(&shared);
        // Unused quota leases go back every tick: the store counts what was admitted.
        gen.limits.borrow_mut().release_leases(&shared.store);
        if shared.stopping.load(Ordering::Acquire) && !released {
            released = true;
            shared.released.fetch_add(1, Ordering::AcqRel);
        }
        let now = shared.mono_ns(Instant::now());
        if shared.report(shard.index, &mut gen.limits.borrow_mut(), now) {
            continue;
        }
        for _ in 0..COLLECT_POLLS {
            glommio::timer::sleep(COLLECT_POLL).await;
            let now = shared.mono_ns(Instant::now());
            if shared.collect(shard.index, &mut gen.limits.borrow_mut(), now) {
                break;
            }
        }
    }
}

// ---- Config reload: what carries over from one configuration's traffic state to the next.

/// A stable name per bucket of `gw` (index = bucket id; `None` for a bucket nothing names),
/// so a reload can match the buckets of two configs: the account, a stage, a stage's route
/// throttle, a key's plan throttle, a key's plan route throttle.
pub fn bucket_names(gw: &Gateway) -> Vec<Option<String>> {
    let t = &gw.traffic;
    let mut names: Vec<Option<String>> = vec![None; t.limits.len()];
    let mut name = |b: u32, n: String| {
        if let Some(slot) = names.get_mut(b as usize) {
            slot.get_or_insert(n);
        }
    };
    name(
        tollgate_core::traffic::ACCOUNT_BUCKET,
        "account".to_string(),
    );
    for m in &t.memberships {
        let (Some(p), Some(k)) = (t.plans.get(m.plan as usize), t.keys.get(m.key as usize)) else {
            continue;
        };
        if m.throttle_bucket != NONE {
            name(m.throttle_bucket, format!("plan\0{}\0{}", p.name, k.name));
        }
    }
    for api in &gw.apis {
        for route in &api.routes {
            for (stage, rl) in api.stages.iter().zip(route.limits.iter()) {
                let at = format!("{}\0{}", api.name, stage.name);
                if rl.stage_bucket != NONE {
                    name(rl.stage_bucket, format!("stage\0{at}"));
                }
                if rl.stage_route_bucket != NONE {
                    name(
                        rl.stage_route_bucket,
                        format!("stage-route\0{at}\0{}", route.key),
                    );
                }
                let Some(bindings) = t.bindings.get(rl.stage_slot as usize) else {
                    continue;
                };
                for b in bindings.iter().filter(|b| b.membership != NONE) {
                    let (Some(m), Some(ps)) = (
                        t.memberships.get(b.membership as usize),
                        t.plan_stages.get(b.plan_stage as usize),
                    ) else {
                        continue;
                    };
                    let Some(&off) = ps.routes.get(rl.route as usize) else {
                        continue;
                    };
                    let (Some(p), Some(k)) =
                        (t.plans.get(m.plan as usize), t.keys.get(m.key as usize))
                    else {
                        continue;
                    };
                    if off != NONE {
                        name(
                            m.route_base.saturating_add(off),
                            format!("plan-route\0{}\0{}\0{at}\0{}", p.name, k.name, route.key),
                        );
                    }
                }
            }
        }
    }
    names
}

/// The traffic state for `gateway` replacing `old` on a reload: the same clock epoch (bucket
/// times stay comparable), and every quota counter of a plan and key both configs have, with
/// the same quota period, carried over with its count. Returns it with the counters as they
/// were copied (for `settle`). Its flush thread starts with `hand_over`.
///
/// With `[cluster]` (both configs have the same section: `reload` refuses a change) the
/// counters are not copied but shared: such a counter of the new store *is* the old one's
/// slot (`HostStock::successor`: stock, requests taken, credit), and the host's sync thread
/// follows the new state (`cluster::follow`) before this returns, having stocked its new
/// counters, so the shards that swap find stock.
pub fn successor(
    old: &TrafficShared,
    gateway: &Gateway,
) -> (Arc<TrafficShared>, Vec<state::Entry>) {
    let mut new = TrafficShared::new(gateway, old.shards);
    new.epoch = old.epoch;
    if let (Some(from), HostQuotaStore::Cluster(_)) = (old.store.cluster(), &new.store) {
        new.store = HostQuotaStore::Cluster(from.successor(&same_counters(old, &new)));
        let new = Arc::new(new);
        cluster::follow(old, &new, gateway);
        return (new, Vec::new());
    }
    let seeded = old.traffic.state_entries(&old.store);
    new.traffic.restore(&new.store, &seeded, unix_secs());
    *lock(&new.written) = lock(&old.written).clone();
    (Arc::new(new), seeded)
}

/// Per counter of `new`, the counter of `old` with the same identity: the same plan and key,
/// both with a quota of the same period (the limit may differ: Redis counts the same key).
fn same_counters(old: &TrafficShared, new: &TrafficShared) -> Vec<Option<usize>> {
    let (ot, nt) = (&old.traffic, &new.traffic);
    let period = |t: &Traffic, m: usize| {
        t.memberships
            .get(m)
            .and_then(|ms| t.plans.get(ms.plan as usize))
            .and_then(|p| p.quota)
            .map(|q| q.period)
    };
    nt.memberships
        .iter()
        .enumerate()
        .map(|(j, m)| {
            let (p, k) = (nt.plans.get(m.plan as usize)?, nt.keys.get(m.key as usize)?);
            let i = ot.membership(&p.name, &k.name)?;
            let mine = period(nt, j)?;
            (period(ot, i) == Some(mine)).then_some(i)
        })
        .collect()
}

/// A reload none of whose shards swapped: the cluster sync thread goes back to `running`
/// (the counters it took from it are the same slots again) and `failed` retires.
pub fn abandon(failed: &Arc<TrafficShared>, running: &Arc<TrafficShared>, gateway: &Gateway) {
    cluster::follow(failed, running, gateway);
    failed.retired.store(true, Ordering::Release);
}

/// Once every shard runs on `new`: what `old`'s counters took since `successor` copied them
/// (leases the shards took in between; leases they gave back) is applied to `new`'s, so no
/// admitted request goes uncounted. Then `old`'s flush thread stops and `new`'s starts (with
/// a state file).
pub fn hand_over(
    old: &TrafficShared,
    new: &Arc<TrafficShared>,
    seeded: &[state::Entry],
    flush_every: Duration,
) -> Result<(), String> {
    // With `[cluster]` the counters are shared slots, not copies: nothing to add (the sync
    // thread gives back the retired ones once it sees `retired`).
    let copied = if new.store.cluster().is_some() {
        Vec::new()
    } else {
        old.traffic.state_entries(&old.store)
    };
    for now in copied {
        let before = seeded
            .iter()
            .find(|e| e.plan == now.plan && e.key == now.key && e.period_start == now.period_start)
            .map_or(0, |e| e.used);
        let Some(m) = new.traffic.membership(&now.plan, &now.key) else {
            continue;
        };
        let day = now.period_start.div_euclid(86_400);
        // Only into the same period of the new plan's quota (as `successor` copied).
        let period = new
            .traffic
            .memberships
            .get(m)
            .and_then(|ms| new.traffic.plans.get(ms.plan as usize))
            .and_then(|p| p.quota)
            .map(|q| q.period.start_day(day));
        if period != Some(day) {
            continue;
        }
        if now.used > before {
            add_used(&new.store, m, day, now.used - before);
        } else if now.used < before {
            new.store.release(m, day, before - now.used);
        }
    }
    old.retired.store(true, Ordering::Release);
    if new.state_file.is_some() {
        let flusher = new.clone();
        std::thread::Builder::new()
            .name("tollgate-state".to_string())
            .spawn(move || flush_loop(&flusher, flush_every))
            .map_err(|e| format!("tollgate: cannot start the quota state thread: {e}"))?;
    }
    Ok(())
}

/// Adds `n` to counter `m` of period `day` (through the store's own lease and release, so
/// shards leasing at the same time lose nothing).
fn add_used<S: QuotaStore + ?Sized>(store: &S, m: usize, day: i64, mut n: u64) {
    while n > 0 {
        let got = store.lease(m, day, tollgate_core::traffic::quota::MAX_LIMIT, 0, 1);
        if got == 0 {
            return;
        }
        if got > n {
            store.release(m, day, got - n);
            return;
        }
        n -= got;
    }
}

/// On the shard, when it swaps from `old` to `new`: the throttle buckets whose name and
/// limit are unchanged keep their tokens (a changed limit starts a fresh bucket), and the
/// unused quota leases of unchanged plans (same key, same quota) move over; the others go
/// back to the old store (`hand_over` accounts for them). Returns (buckets kept, leases kept).
pub fn carry_over(old: &Gen, new: &Gen) -> (usize, usize) {
    let old_names = bucket_names(&old.gateway);
    let new_names = bucket_names(&new.gateway);
    let (ot, nt) = (&old.gateway.traffic, &new.gateway.traffic);
    let mut from = old.limits.borrow_mut();
    let mut to = new.limits.borrow_mut();
    let mut buckets = 0;
    for (j, name) in new_names.iter().enumerate() {
        let Some(name) = name else { continue };
        let Some(i) = old_names.iter().position(|n| n.as_ref() == Some(name)) else {
            continue;
        };
        if ot.limits.get(i) == nt.limits.get(j) {
            if let (Some(b), Some(slot)) = (from.buckets.get(i), to.buckets.get_mut(j)) {
                *slot = b.clone();
                buckets += 1;
            }
        }
    }
    let mut leases = 0;
    for (i, m) in ot.memberships.iter().enumerate() {
        let (Some(p), Some(k)) = (ot.plans.get(m.plan as usize), ot.keys.get(m.key as usize))
        else {
            continue;
        };
        let target = nt.membership(&p.name, &k.name).filter(|&j| {
            nt.memberships
                .get(j)
                .and_then(|nm| nt.plans.get(nm.plan as usize))
                .is_some_and(|np| np.quota == p.quota)
        });
        match (target, from.leases.get_mut(i)) {
            (Some(j), Some(lease)) => {
                if let Some(slot) = to.leases.get_mut(j) {
                    *slot = std::mem::take(lease);
                    leases += 1;
                }
            }
            (None, Some(lease)) => lease.release(&old.traffic.store, i),
            _ => {}
        }
    }
    (buckets, leases)
}

/// `YYYY-MM-DD` of a UTC day number.
fn date(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `tollgate usage`: per key and usage plan with a quota, used and remaining requests of the
/// current period, from the state file, as JSON (names only, never key values). `key` /
/// `plan` keep only that key / plan.
pub fn usage_report(
    gateway: &Gateway,
    key: Option<&str>,
    plan: Option<&str>,
    unix_secs: i64,
) -> Result<String, String> {
    check_usage_filter(&gateway.traffic, key, plan)?;
    if let Some(c) = &gateway.settings.cluster {
        let entries = cluster::usage_entries(gateway, unix_secs)?;
        return Ok(render_usage(
            &gateway.traffic,
            &entries,
            &format!("redis {}", c.redis),
            key,
            plan,
            unix_secs,
        ));
    }
    let Some(path) = &gateway.settings.state_file else {
        return Err(
            "tollgate usage: the config has no `state_file`: quota counters live only in the running gateway's memory (ask its admin listener: GET /usage)"
                .to_string(),
        );
    };
    let entries = read_state(path)
        .map_err(|e| {
            format!(
                "tollgate usage: quota state file {} is refused: {e}",
                path.display()
            )
        })?
        .unwrap_or_default();
    Ok(render_usage(
        &gateway.traffic,
        &entries,
        &path.display().to_string(),
        key,
        plan,
        unix_secs,
    ))
}

/// The same report from a running gateway's counters (the admin listener's `GET /usage`):
/// what the shards have admitted, up to the last lease tick (100 ms).
pub fn live_usage(
    shared: &TrafficShared,
    key: Option<&str>,
    plan: Option<&str>,
    unix_secs: i64,
) -> Result<String, String> {
    check_usage_filter(&shared.traffic, key, plan)?;
    let entries = shared.traffic.state_entries(&shared.store);
    Ok(render_usage(
        &shared.traffic,
        &entries,
        "live",
        key,
        plan,
        unix_secs,
    ))
}

fn check_usage_filter(t: &Traffic, key: Option<&str>, plan: Option<&str>) -> Result<(), String> {
    if let Some(k) = key {
        if !t.keys.iter().any(|x| &*x.name == k) {
            return Err(format!(
                "tollgate usage: no API key named `{k}` in the config"
            ));
        }
    }
    if let Some(p) = plan {
        if !t.plans.iter().any(|x| &*x.name == p) {
            return Err(format!(
                "tollgate usage: no usage plan named `{p}` in the config"
            ));
        }
    }
    Ok(())
}

fn render_usage(
    t: &Traffic,
    entries: &[state::Entry],
    source: &str,
    key: Option<&str>,
    plan: Option<&str>,
    unix_secs: i64,
) -> String {
    let mut out = String::from("{\n  \"source\": ");
    json_string(source, &mut out);
    out.push_str(",\n  \"items\": [");
    let mut first = true;
    for u in t.usage(entries, unix_secs) {
        if key.is_some_and(|k| k != &*u.key) || plan.is_some_and(|p| p != &*u.plan) {
            continue;
        }
        out.push_str(if first { "\n    " } else { ",\n    " });
        first = false;
        out.push_str("{\"usagePlanId\": ");
        json_string(&u.plan, &mut out);
        out.push_str(", \"keyId\": ");
        json_string(&u.key, &mut out);
        out.push_str(&format!(
            ", \"startDate\": \"{}\", \"endDate\": \"{}\", \"used\": {}, \"remaining\": {}, \"limit\": {}}}",
            date(u.period_start.div_euclid(86_400)),
            date((u.period_end - 1).div_euclid(86_400)),
            u.used,
            u.remaining,
            u.used + u.remaining
        ));
    }
    out.push_str(if first { "]\n}\n" } else { "\n  ]\n}\n" });
    out
}

/// Seconds since the epoch now (UTC), for `usage_report`.
pub fn unix_secs() -> i64 {
    i64::try_from(unix_now().as_secs()).unwrap_or(i64::MAX)
}

/// Nanoseconds from `mono_ns` (shared epoch) to wall-clock time: `unix_ns - mono_ns`.
pub fn unix_offset_ns(shared: &TrafficShared) -> i128 {
    let mono = i128::from(shared.mono_ns(Instant::now()));
    i128::try_from(unix_now().as_nanos()).unwrap_or(0) - mono
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::config;
    use tollgate_core::traffic::quota::QuotaStore;
    use tollgate_core::traffic::{Decision, RouteLimits};

    fn gateway(state_file: Option<&Path>) -> Gateway {
        let state = state_file.map_or(String::new(), |p| {
            format!("state_file = {:?}\n", p.display().to_string())
        });
        let text = format!(
            r#"
[server]
{state}
[[listeners]]
address = "127.0.0.1"
port = 8080

[[api_keys]]
name = "alice"
value = "alice0123456789abcdefghij"

[[usage_plans]]
name = "gold"
quota = {{ limit = 100, period = "DAY" }}
keys = ["alice"]
  [[usage_plans.stages]]
  api = "a"
  stage = "prod"

[[apis]]
name = "a"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  throttle = {{ rate = 0.0, burst = 10 }}
  [[apis.routes]]
  key = "GET /x"
  integration = {{ type = "mock", status = 200, body = "" }}
"#
        );
        config::load_str("<traffic_state tests>", &text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn open_route(gw: &Gateway) -> RouteLimits {
        gw.apis[0].routes[0].limits[0]
    }

    fn admitted(gw: &Gateway, shared: &TrafficShared, st: &mut ShardTraffic, n: usize) -> usize {
        let route = open_route(gw);
        let now = tollgate_core::traffic::Now {
            mono_ns: shared.mono_ns(Instant::now()),
            unix_secs: unix_secs(),
        };
        (0..n)
            .filter(|_| {
                matches!(
                    gw.traffic.decide(&route, None, st, &shared.store, now),
                    Decision::Continue { .. }
                )
            })
            .count()
    }

    #[test]
    fn a_round_completes_when_every_shard_reported_and_moves_tokens() {
        let gw = gateway(None);
        let shared = TrafficShared::new(&gw, 2);
        let mut a = shared.shard_state(0);
        let mut b = shared.shard_state(1);
        // Equal shares of the stage's burst of 10; shard a uses its 5.
        assert_eq!(admitted(&gw, &shared, &mut a, 20), 5);
        let now = shared.mono_ns(Instant::now());
        assert!(!shared.report(0, &mut a, now), "b has not reported yet");
        assert!(!shared.collect(0, &mut a, now));
        assert!(!shared.report(0, &mut a, now), "a reports once a round");
        assert!(
            shared.report(1, &mut b, now),
            "the last report installs at once"
        );
        assert!(shared.collect(0, &mut a, now));
        assert!(!shared.collect(0, &mut a, now), "installed once");
        // b's unused 5 tokens: most now on the busy shard a, none lost or made.
        let got_a = admitted(&gw, &shared, &mut a, 20);
        let got_b = admitted(&gw, &shared, &mut b, 20);
        assert_eq!(got_a + got_b, 5);
        assert!(got_a >= 4, "a got {got_a}");
    }

    #[test]
    fn with_a_cluster_the_round_reports_demand_and_splits_the_hosts_part() {
        let text = "[[listeners]]\naddress = \"127.0.0.1\"\nport = 8080\n\
            [cluster]\nredis = \"redis://127.0.0.1:1/0\"\n\
            [[apis]]\nname = \"a\"\nprotocol = \"rest\"\n\
            [[apis.stages]]\nname = \"prod\"\nthrottle = { rate = 0.0, burst = 10 }\n\
            [[apis.routes]]\nkey = \"GET /x\"\nintegration = { type = \"mock\", status = 200 }\n";
        let gw = config::load_str("<cluster>", text).unwrap_or_else(|e| panic!("{e:?}"));
        let shared = TrafficShared::new(&gw, 2);
        assert!(
            shared.store.cluster().is_some(),
            "the host stock is the store"
        );
        let link = shared.link.as_ref().expect("a cluster link");
        let stage = open_route(&gw).stage_bucket as usize;
        let mut a = shared.shard_state(0);
        let mut b = shared.shard_state(1);
        // Until a sync, the host has the whole limit: 5 tokens per shard.
        assert_eq!(admitted(&gw, &shared, &mut a, 20), 5);
        // The sync thread says this host's part is 4 tokens (another host has the rest).
        link.set_host_limit(
            stage,
            tollgate_core::traffic::bucket::Limit {
                rate_milli: 0,
                burst: 4,
            },
        );
        let now = shared.mono_ns(Instant::now());
        assert!(!shared.report(0, &mut a, now));
        assert!(shared.report(1, &mut b, now));
        assert!(shared.collect(0, &mut a, now));
        assert_eq!(link.demand(stage), 20, "a's 20 requests asked for a token");
        // b's 5 unused tokens are pooled, but the host's part holds 4.
        let got = admitted(&gw, &shared, &mut a, 20) + admitted(&gw, &shared, &mut b, 20);
        assert_eq!(got, 4);
    }

    #[test]
    fn state_file_round_trip_and_refusals() {
        let dir = std::env::temp_dir().join(format!("tollgate-state-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("q.state");
        let _ = std::fs::remove_file(&path);
        assert_eq!(read_state(&path), Ok(None));
        let gw = gateway(Some(&path));
        let shared = TrafficShared::new(&gw, 1);
        let day = unix_secs().div_euclid(86_400);
        shared.store.set(0, day, 42);
        shared.persist().expect("persist");
        assert!(
            !dir.join("q.state.tmp").exists(),
            "the temp file was renamed"
        );
        let entries = read_state(&path).expect("valid").expect("exists");
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].used, &*entries[0].key), (42, "alice"));
        // GetUsage-like report from the file, filtered by key.
        let json = usage_report(&gw, Some("alice"), None, unix_secs()).expect("report");
        assert!(
            json.contains("\"used\": 42, \"remaining\": 58, \"limit\": 100"),
            "{json}"
        );
        assert!(!json.contains("alice0123456789"), "no key values: {json}");
        assert!(usage_report(&gw, Some("nobody"), None, unix_secs()).is_err());
        // A flipped byte: refused.
        let mut bytes = std::fs::read(&path).expect("read");
        let at = bytes.iter().position(|b| *b == b'4').expect("a digit");
        bytes[at] = b'5';
        std::fs::write(&path, &bytes).expect("write");
        assert!(read_state(&path).is_err());
        assert!(usage_report(&gw, None, None, unix_secs()).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn gen_for(text: &str, shared: Arc<TrafficShared>) -> Gen {
        let gw = config::load_str("<carry tests>", text).unwrap_or_else(|e| panic!("{e:?}"));
        let layout = crate::metrics::Layout::new(&gw);
        Gen::new(0, gw, shared, &layout, Arc::from([]))
    }

    const CARRY: &str = r#"
[[listeners]]
address = "127.0.0.1"
port = 8080

[[apis]]
name = "a"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  throttle = { rate = 0.0, burst = 10 }
  route_throttles = { "GET /x" = { rate = 0.0, burst = 4 } }
  [[apis.routes]]
  key = "GET /x"
  integration = { type = "mock", status = 200, body = "" }
"#;

    #[test]
    fn buckets_are_named_by_what_they_limit() {
        let gw = config::load_str("<names>", CARRY).unwrap_or_else(|e| panic!("{e:?}"));
        let names = bucket_names(&gw);
        assert_eq!(names.len(), gw.traffic.limits.len());
        assert_eq!(names[0].as_deref(), Some("account"));
        assert!(names.contains(&Some("stage\0a\0prod".to_string())));
        assert!(names.contains(&Some("stage-route\0a\0prod\0GET /x".to_string())));
    }

    #[test]
    fn unchanged_buckets_keep_their_tokens_and_changed_ones_start_fresh() {
        let gw = config::load_str("<carry>", CARRY).unwrap_or_else(|e| panic!("{e:?}"));
        let shared = Arc::new(TrafficShared::new(&gw, 1));
        let old = gen_for(CARRY, shared.clone());
        // 3 of the route's 4 tokens (and 3 of the stage's 10).
        assert_eq!(admitted(&gw, &shared, &mut old.limits.borrow_mut(), 3), 3);
        // Same limits: 1 left (the route's bucket is the tightest).
        let (next, _) = successor(&shared, &gw);
        let same = gen_for(CARRY, next);
        let (kept, _) = carry_over(&old, &same);
        assert_eq!(kept, gw.traffic.limits.len(), "every bucket matched");
        assert_eq!(
            admitted(&gw, &same.traffic, &mut same.limits.borrow_mut(), 5),
            1
        );
        // The route's limit changed to 6: a fresh bucket of 6, but the stage's (unchanged)
        // has 7 of 10 left after the 3 before: 6 pass.
        let changed_text = CARRY.replace("burst = 4", "burst = 6");
        let changed_gw =
            config::load_str("<changed>", &changed_text).unwrap_or_else(|e| panic!("{e:?}"));
        let (next, _) = successor(&shared, &changed_gw);
        let changed = gen_for(&changed_text, next);
        carry_over(&old, &changed);
        assert_eq!(
            admitted(
                &changed_gw,
                &changed.traffic,
                &mut changed.limits.borrow_mut(),
                10
            ),
            6
        );
        // The stage's bucket carried over: only 1 of its 10 is left after those 6 + 3.
        let stage_only = CARRY.replace(
            "  route_throttles = { \"GET /x\" = { rate = 0.0, burst = 4 } }\n",
            "",
        );
        let stage_gw = config::load_str("<stage>", &stage_only).unwrap_or_else(|e| panic!("{e:?}"));
        let (next, _) = successor(&changed.traffic, &stage_gw);
        let stage = gen_for(&stage_only, next);
        carry_over(&changed, &stage);
        assert_eq!(
            admitted(&stage_gw, &stage.traffic, &mut stage.limits.borrow_mut(), 5),
            1
        );
    }

    #[test]
    fn with_a_cluster_a_successor_shares_the_slots_of_unchanged_counters() {
        let cfg = |limit: u64, period: &str| {
            let text = format!(
                "[[listeners]]\naddress = \"127.0.0.1\"\nport = 8080\n\
                [cluster]\nredis = \"redis://127.0.0.1:1/0\"\n\
                [[api_keys]]\nname = \"alice\"\nvalue = \"alice0123456789abcdefghij\"\n\
                [[usage_plans]]\nname = \"gold\"\nquota = {{ limit = {limit}, period = \"{period}\" }}\n\
                keys = [\"alice\"]\n[[usage_plans.stages]]\napi = \"a\"\nstage = \"prod\"\n\
                [[apis]]\nname = \"a\"\nprotocol = \"rest\"\n[[apis.stages]]\nname = \"prod\"\n\
                [[apis.routes]]\nkey = \"GET /x\"\nintegration = {{ type = \"mock\", status = 200 }}\n"
            );
            config::load_str("<cluster successor>", &text).unwrap_or_else(|e| panic!("{e:?}"))
        };
        let old = TrafficShared::new(&cfg(100, "DAY"), 1);
        let stock = old.store.cluster().expect("cluster store");
        stock.roll(0, 5);
        stock.stock_up(0, 30);
        // A changed limit: the same counter (Redis counts the same key), one slot.
        let (raised, seeded) = successor(&old, &cfg(200, "DAY"));
        assert!(seeded.is_empty(), "nothing is copied with a cluster");
        let next = raised.store.cluster().expect("cluster store");
        assert!(next.shares_slot(0, stock, 0));
        assert_eq!(next.counts(0), (0, 30));
        // Another period: another counter, an empty slot.
        let (weekly, _) = successor(&old, &cfg(100, "WEEK"));
        let w = weekly.store.cluster().expect("cluster store");
        assert!(!w.shares_slot(0, stock, 0));
        assert_eq!(w.counts(0), (0, 0));
    }

    #[test]
    fn quota_counts_carry_over_and_later_leases_are_added() {
        let gw = gateway(None);
        let shared = Arc::new(TrafficShared::new(&gw, 1));
        let day = unix_secs().div_euclid(86_400);
        shared.store.set(0, day, 42);
        let (next, seeded) = successor(&shared, &gw);
        assert_eq!(next.store.get(0), (day, 42), "copied by plan and key");
        assert_eq!(next.epoch, shared.epoch, "one bucket clock");
        // A shard took 8 more from the old store before it swapped.
        shared.store.set(0, day, 50);
        hand_over(&shared, &next, &seeded, Duration::from_secs(1)).expect("hand over");
        assert_eq!(next.store.get(0), (day, 50));
        assert!(shared.retired.load(Ordering::Acquire));
        // A key's first lease taken while the shards swapped (nothing to copy before).
        let fresh = Arc::new(TrafficShared::new(&gw, 1));
        let (next, seeded) = successor(&fresh, &gw);
        assert_eq!(next.store.get(0), (0, 0));
        fresh.store.set(0, day, 8);
        hand_over(&fresh, &next, &seeded, Duration::from_secs(1)).expect("hand over");
        assert_eq!(next.store.get(0), (day, 8));
        // A plan whose quota period changed does not keep the count.
        let weekly = config::load_str(
            "<weekly>",
            r#"
[[listeners]]
address = "127.0.0.1"
port = 8080
[[api_keys]]
name = "alice"
value = "alice0123456789abcdefghij"
[[usage_plans]]
name = "gold"
quota = { limit = 100, period = "WEEK" }
keys = ["alice"]
  [[usage_plans.stages]]
  api = "a"
  stage = "prod"
[[apis]]
name = "a"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  [[apis.routes]]
  key = "GET /x"
  integration = { type = "mock", status = 200, body = "" }
"#,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let (weekly_shared, _) = successor(&next, &weekly);
        let week_start = weekly.traffic.plans[0]
            .quota
            .map_or(day, |q| q.period.start_day(day));
        if week_start != day {
            // (On a Monday both periods start the same day: the count is the same period's.)
            assert_eq!(
                weekly_shared.store.get(0).1,
                0,
                "another period: not carried"
            );
        }
    }
}
