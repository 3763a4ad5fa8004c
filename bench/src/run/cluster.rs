//! The `cluster` scenario (issue 19's performance section), tollgate only: the `gateway-keys`
//! config with the API key, usage plan, throttles and quota (limits far above the load) without
//! and with a `[cluster]` section pointing at a `redis-server` this module starts on a free
//! loopback port (`--save '' --appendonly no`, pinned to the load generator's CPU like the
//! origin, stopped at the end). Both configs have an `[admin]` listener. Rounds interleaved:
//! - closed loop, each config in turn: tollgate's CPU per request with ÷ without, and the
//!   redis-server's CPU in the same phases (reported apart and added in a second ratio);
//! - open loop at 10,000 and 30,000 req/s (`--fixed-rates`), the cluster config only: Redis
//!   operations per second of the host, read as the delta of `tollgate_cluster_redis_ops_total`
//!   over the phase and cross-checked with Redis's `total_commands_processed` delta.
//!
//! It owns the config text it generates ([`config`]), the redis-server process, the two
//! counters' readings and the results model ([`ClusterScenario`]).

use crate::configs;
use crate::load::LoadResult;
use crate::procs::{self, Child};
use crate::run::control::{one_line, wait_ready, Ctx, Layout, PhaseSpec, Proxy};
use crate::run::drivers::{keep, record_peak_rss};
use crate::run::{median, median_of, LoadRow, Phase, ProxyKind, Scenario, DEFAULT_FIXED_RATES};
use crate::sysinfo;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Issue 19: CPU per request with `[cluster]` ÷ without at most this.
pub const CLUSTER_TARGET_RATIO: f64 = 1.05;

/// The metric the cluster's sync thread counts its Redis operations in.
pub const OPS_METRIC: &str = "tollgate_cluster_redis_ops_total";

/// The largest block of quota one lease takes (tuning/CONFIG.md, "Cluster"): at a request rate
/// R a host needs at least R ÷ this many lease refills per second.
pub const MAX_LEASE: u64 = tollgate_core::traffic::cluster::MAX_HOST_BLOCK;

/// The counters read around one phase of the `cluster` scenario.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpsPhase {
    /// Wall time between the readings before and after the phase (s).
    pub secs: f64,
    /// Responses in the phase.
    pub requests: u64,
    /// Delta of `tollgate_cluster_redis_ops_total` (None: not readable, or no `[cluster]`).
    pub tollgate_ops: Option<u64>,
    /// Delta of Redis's `total_commands_processed`, less the harness's own `INFO` (None: not
    /// readable).
    pub redis_commands: Option<u64>,
    /// CPU time the redis-server used between the readings (s).
    pub redis_cpu_s: f64,
}

impl OpsPhase {
    pub fn tollgate_ops_per_s(&self) -> Option<f64> {
        self.tollgate_ops
            .filter(|_| self.secs > 0.0)
            .map(|n| n as f64 / self.secs)
    }

    pub fn redis_commands_per_s(&self) -> Option<f64> {
        self.redis_commands
            .filter(|_| self.secs > 0.0)
            .map(|n| n as f64 / self.secs)
    }

    /// redis-server CPU µs per answered request.
    pub fn redis_cpu_us_per_req(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.redis_cpu_s * 1e6 / self.requests as f64)
    }
}

/// The `cluster` scenario's results.
#[derive(Clone, Debug)]
pub struct ClusterScenario {
    /// tollgate on the `gateway-keys` config (plus `[admin]`), no `[cluster]`.
    pub base: LoadRow,
    /// The same config with `[cluster]`; its `closed` phases pair with `closed_ops`.
    pub with: LoadRow,
    /// Readings around each closed-loop phase of `with` (same order as `with.closed`).
    pub closed_ops: Vec<OpsPhase>,
    /// Readings around each closed-loop phase of `base` (same order as `base.closed`; Redis
    /// should idle, but for the idle cluster host's syncs).
    pub base_ops: Vec<OpsPhase>,
    /// The open-loop rates (req/s).
    pub rates: Vec<f64>,
    /// Per rate (order of `rates`), per round: the `with` phase and its readings.
    pub open: Vec<Vec<(Phase, OpsPhase)>>,
    /// `redis-server --version`.
    pub redis_version: String,
    /// Calls per Redis command over the whole scenario (`INFO commandstats`), most first.
    pub commandstats: Vec<(String, u64)>,
    pub notes: Vec<String>,
}

impl ClusterScenario {
    /// tollgate's CPU per request with ÷ without `[cluster]` (medians over rounds; the sync
    /// thread is tollgate's, so it is included; the redis-server is not).
    pub fn cpu_ratio(&self) -> Option<f64> {
        if !self.base.ok() || !self.with.ok() {
            return None;
        }
        let w = median_of(&self.with.closed, |p| p.cpu_us_per_req)?;
        let b = median_of(&self.base.closed, |p| p.cpu_us_per_req)?;
        (b > 0.0).then(|| w / b)
    }

    /// The median over rounds of (tollgate + redis-server CPU per request) with `[cluster]`.
    pub fn with_redis_cpu_us(&self) -> Option<f64> {
        median(
            self.with
                .closed
                .iter()
                .zip(&self.closed_ops)
                .filter_map(|(p, o)| Some(p.cpu_us_per_req + o.redis_cpu_us_per_req()?))
                .collect(),
        )
    }

    /// (tollgate + redis-server) CPU per request with `[cluster]` ÷ tollgate's without.
    pub fn cpu_ratio_with_redis(&self) -> Option<f64> {
        if !self.base.ok() || !self.with.ok() {
            return None;
        }
        let w = self.with_redis_cpu_us()?;
        let b = median_of(&self.base.closed, |p| p.cpu_us_per_req)?;
        (b > 0.0).then(|| w / b)
    }

    /// Median over rounds of `f` at rate number `i`.
    pub fn open_median(
        &self,
        i: usize,
        f: impl Fn(&Phase, &OpsPhase) -> Option<f64>,
    ) -> Option<f64> {
        let v: Vec<f64> = self
            .open
            .get(i)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter_map(|(p, o)| f(p, o))
            .collect();
        median(v)
    }
}

/// The tollgate config of the `cluster` scenario: the `gateway-keys` config with keys
/// ([`configs::tollgate_traffic`]), an `[admin]` listener on 127.0.0.1:`admin`, and with
/// `redis` a `[cluster]` section pointing at the Redis on 127.0.0.1:`redis`, database 0.
pub fn config(listen: u16, origin: u16, admin: u16, redis: Option<u16>) -> String {
    let mut s = String::from("# generated by tollgate-bench (cluster scenario)\n");
    s.push_str(&configs::tollgate_traffic(true, listen, origin));
    s.push_str(&format!(
        "\n[admin]\naddress = \"127.0.0.1\"\nport = {admin}\n"
    ));
    if let Some(port) = redis {
        s.push_str(&format!(
            "\n[cluster]\nredis = \"redis://127.0.0.1:{port}/0\"\nsync_interval_ms = 100\n\
             key_prefix = \"tollgate-bench:\"\n"
        ));
    }
    s
}

/// redis-server's arguments: loopback only, on `port`, no persistence, files under `dir`.
pub fn redis_args(port: u16, dir: &str) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        dir,
        "--logfile",
        "",
        "--daemonize",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The number after `name:` in `INFO` text (`total_commands_processed:123`).
pub fn info_field(info: &str, name: &str) -> Option<u64> {
    info.lines().find_map(|l| {
        let v = l.trim_end().strip_prefix(name)?.strip_prefix(':')?;
        v.parse().ok()
    })
}

/// `cmdstat_<name>:calls=N,...` lines of `INFO commandstats`: (name, calls), most calls first.
pub fn commandstats(info: &str) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.trim_end().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// The value of the sample `name` (no labels) in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(name)?.strip_prefix(' ')?;
        let f: f64 = v.trim().parse().ok()?;
        (f.is_finite() && f >= 0.0).then_some(f as u64)
    })
}

const IO_TIMEOUT: Duration = Duration::from_secs(2);

fn connect(port: u16) -> Result<TcpStream, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// `INFO <section>` to the Redis on `port` (an inline command; the answer is one bulk string).
fn redis_info(port: u16, section: &str) -> Result<String, String> {
    let mut s = connect(port)?;
    s.write_all(format!("INFO {section}\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    let end = Instant::now() + IO_TIMEOUT;
    loop {
        if let Some(nl) = buf.windows(2).position(|w| w == b"\r\n") {
            let head = String::from_utf8_lossy(&buf[..nl]).to_string();
            let len: usize = head
                .strip_prefix('$')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("INFO answered {head:?}"))?;
            if buf.len() >= nl + 2 + len {
                return Ok(String::from_utf8_lossy(&buf[nl + 2..nl + 2 + len]).into_owned());
            }
        }
        if Instant::now() > end || buf.len() > 1 << 20 {
            return Err("INFO: no complete answer".into());
        }
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("INFO: connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One `GET <path>` on the admin listener: (status line, body).
fn admin_get(port: u16, path: &str) -> Result<(String, String), String> {
    let mut s = connect(port)?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    s.take(16 << 20)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&body).into_owned();
    let status = text.lines().next().unwrap_or("").to_string();
    Ok((status, text))
}

/// `tollgate_cluster_redis_ops_total` from the admin listener on `port`.
fn tollgate_ops(port: u16) -> Result<u64, String> {
    let (status, text) = admin_get(port, "/metrics")?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("GET /metrics answered {status:?}"));
    }
    metric_value(&text, OPS_METRIC).ok_or_else(|| format!("no {OPS_METRIC} in /metrics"))
}

/// The redis-server of the scenario.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn commands(&self) -> Option<u64> {
        redis_info(self.port, "stats")
            .ok()
            .and_then(|i| info_field(&i, "total_commands_processed"))
    }
}

/// A reading of the three counters.
struct Reading {
    at: Instant,
    ops: Option<u64>,
    commands: Option<u64>,
    /// The redis-server's CPU time in ns: the sum of its threads' `schedstat` (ns resolution;
    /// it uses well under 1 % of a CPU, a few clock ticks per phase), else its CPU ticks
    /// × 10⁹ ÷ `clk_tck`.
    redis_cpu_ns: u64,
}

/// The first field of `/proc/<pid>/task/<tid>/schedstat` (time on a CPU, ns), summed over the
/// threads of `pid` (None when unreadable).
fn schedstat_ns(pid: i32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut sum = 0u64;
    let mut any = false;
    for t in tasks.flatten() {
        let text = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        if let Some(ns) = parse_schedstat(&text) {
            sum += ns;
            any = true;
        }
    }
    any.then_some(sum)
}

/// The time on a CPU (ns) of a `schedstat` line: "<on-cpu ns> <waiting ns> <timeslices>".
pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

fn read(redis: &Redis, admin: Option<u16>, clk_tck: f64) -> Reading {
    Reading {
        at: Instant::now(),
        ops: admin.and_then(|p| tollgate_ops(p).ok()),
        commands: redis.commands(),
        redis_cpu_ns: schedstat_ns(redis.child.pid).unwrap_or_else(|| {
            (redis.child.sample().cpu_ticks as f64 * 1e9 / clk_tck.max(1.0)) as u64
        }),
    }
}

fn between(a: &Reading, b: &Reading, requests: u64) -> OpsPhase {
    OpsPhase {
        secs: b.at.duration_since(a.at).as_secs_f64(),
        requests,
        tollgate_ops: a.ops.zip(b.ops).map(|(a, b)| b.saturating_sub(a)),
        // The `INFO` of reading `b` is not counted yet when it answers; that of `a` is.
        redis_commands: a
            .commands
            .zip(b.commands)
            .map(|(a, b)| b.saturating_sub(a).saturating_sub(1)),
        redis_cpu_s: b.redis_cpu_ns.saturating_sub(a.redis_cpu_ns) as f64 / 1e9,
    }
}

/// Starts tollgate on `config(.., redis)` pinned to the proxy CPU, waits until it listens and
/// its `/readyz` answers 200 (with `[cluster]` the host becomes ready after its first sync).
fn start_tollgate(
    ctx: &mut Ctx<'_>,
    label: &str,
    admin: u16,
    redis: Option<u16>,
) -> Result<Proxy, String> {
    let kind = ProxyKind::Tollgate;
    let port = ctx.ports.free()?;
    let tag = ctx.next_tag(&format!("tollgate-{}-{label}", Scenario::Cluster.id()));
    let dir = ctx.temp.join(&tag);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cfg = dir.join("tollgate.toml");
    std::fs::write(&cfg, config(port, ctx.origin_port, admin, redis))
        .map_err(|e| format!("{}: {e}", cfg.display()))?;
    let args = vec![
        "--config".to_string(),
        cfg.display().to_string(),
        "--shards".into(),
        "1".into(),
    ];
    let mut child = procs::spawn_env(
        kind.name(),
        &ctx.tools.tollgate,
        &args,
        kind.env(),
        &ctx.pinned.proxy,
        &dir.join("output.log"),
        Some(&dir),
    )
    .map_err(|e| e.to_string())?;
    wait_ready(&mut child, port)?;
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match admin_get(admin, "/readyz") {
            Ok((status, _)) if status.starts_with("HTTP/1.1 200") => break,
            Ok((status, _)) if Instant::now() >= end => {
                return Err(format!("/readyz still answers {status:?} after 10 s"))
            }
            Err(e) if Instant::now() >= end => return Err(format!("/readyz: {e}")),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
        if let Some(exit) = child.try_exit() {
            return Err(format!(
                "tollgate exited at start-up (exit code {:?}): {}",
                exit.code,
                one_line(&child.log_tail(600))
            ));
        }
    }
    Ok(Proxy { kind, port, child })
}

/// Starts redis-server on a free loopback port, pinned to the client CPU(s).
fn start_redis(ctx: &mut Ctx<'_>) -> Result<(Redis, String), String> {
    let program = sysinfo::find_program("redis-server")
        .ok_or("redis-server is not installed (apt-get install -y redis-server)")?;
    let version = sysinfo::first_line(&program, &["--version"]).unwrap_or_else(|| "?".into());
    let port = ctx.ports.free()?;
    let dir = ctx.temp.join(&ctx.next_tag("redis"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut child = procs::spawn(
        "redis-server",
        &program,
        &redis_args(port, &dir.display().to_string()),
        &ctx.pinned.client,
        &dir.join("redis.log"),
        Some(&dir),
    )
    .map_err(|e| e.to_string())?;
    wait_ready(&mut child, port)?;
    let redis = Redis { child, port };
    if redis.commands().is_none() {
        return Err("redis-server does not answer INFO".into());
    }
    Ok((redis, version))
}

/// Why a phase fails its row: any non-2xx answer (the limits must refuse nothing) or none 2xx.
fn refused(phase: &str, r: &LoadResult) -> Option<String> {
    (r.non_2xx > 0 || r.ok_2xx == 0).then(|| {
        format!(
            "{phase}: {} of {} answers were not 2xx (status codes: {}; {} socket errors): the limits must refuse nothing",
            r.non_2xx,
            r.requests,
            if r.codes.is_empty() { "none" } else { &r.codes },
            r.errors
        )
    })
}

/// `ph` with the redis-server's share of the client CPU(s) taken out of "other processes": it
/// is part of the scenario, reported in its own columns, not a disturbance.
fn without_redis(mut ph: Phase, o: &OpsPhase, client_cpus: usize) -> Phase {
    if o.secs > 0.0 && client_cpus > 0 {
        let share = o.redis_cpu_s / o.secs / client_cpus as f64;
        ph.others_client_cpu = (ph.others_client_cpu - share).max(0.0);
    }
    ph
}

fn ops_text(o: &OpsPhase) -> String {
    let f = |v: Option<f64>| v.map_or_else(|| "—".into(), |v| format!("{v:.1}"));
    format!(
        "Redis ops/s {} (redis commands/s {}), redis CPU {:.2} µs/req",
        f(o.tollgate_ops_per_s()),
        f(o.redis_commands_per_s()),
        o.redis_cpu_us_per_req().unwrap_or(f64::NAN)
    )
}

/// The two tollgates of the scenario, in the order of their rows.
const LABELS: [&str; 2] = ["tollgate (no cluster)", "tollgate (cluster)"];

/// The row of tollgate `i`: 0 without [cluster], 1 with.
fn row_of(res: &mut ClusterScenario, i: usize) -> &mut LoadRow {
    if i == 1 {
        &mut res.with
    } else {
        &mut res.base
    }
}

/// What the phases of one run of the scenario share.
struct Setup<'a> {
    redis: &'a Redis,
    admins: [u16; 2],
    file: &'a Path,
    layout: &'a Layout,
    duration: Duration,
    connections: usize,
    clk_tck: f64,
    client_cpus: usize,
}

impl<'a> Setup<'a> {
    /// A phase of the scenario's traffic file, closed loop or open at `rate`.
    fn spec(&self, duration: Duration, rate: Option<f64>) -> PhaseSpec<'a> {
        PhaseSpec {
            scenario_file: Some(self.file),
            rate,
            ..PhaseSpec::closed(duration, self.connections, self.layout)
        }
    }
}

/// The scenario's results before anything ran, with a column per open-loop rate.
fn empty_result(rates: &[f64]) -> ClusterScenario {
    ClusterScenario {
        base: LoadRow::new(ProxyKind::Tollgate),
        with: LoadRow::new(ProxyKind::Tollgate),
        closed_ops: Vec::new(),
        base_ops: Vec::new(),
        open: vec![Vec::new(); rates.len()],
        rates: rates.to_vec(),
        redis_version: String::new(),
        commandstats: Vec::new(),
        notes: Vec::new(),
    }
}

/// Starts the scenario's redis-server and notes its version; when it cannot start, both rows
/// say why and there is None.
fn redis_for(
    ctx: &mut Ctx<'_>,
    res: &mut ClusterScenario,
    progress: &mut dyn FnMut(&str),
) -> Option<Redis> {
    let (redis, version) = match start_redis(ctx) {
        Ok(r) => r,
        Err(e) => {
            progress(&format!("  redis-server: {e}"));
            res.base.failure = Some(format!("no Redis: {e}"));
            res.with.failure = res.base.failure.clone();
            return None;
        }
    };
    res.redis_version = version;
    progress(&format!(
        "  redis-server on 127.0.0.1:{} (CPU {})",
        redis.port,
        crate::run::cpu_list(&ctx.pinned.client)
    ));
    Some(redis)
}

/// Runs the cluster scenario: tollgate without and with [cluster] in closed loop, then the
/// [cluster] one in open loop at each rate, every round.
pub(super) fn run_cluster(
    ctx: &mut Ctx<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<ClusterScenario, String> {
    let opts = ctx.opts;
    let rates: Vec<f64> = {
        let mut r: Vec<f64> = opts.fixed_rates.clone();
        if r.is_empty() {
            r = DEFAULT_FIXED_RATES.to_vec();
        }
        r
    };
    let mut res = empty_result(&rates);
    let Some(redis) = redis_for(ctx, &mut res, progress) else {
        return Ok(res);
    };
    let file = ctx.temp.join("cluster-scenario.toml");
    std::fs::write(&file, configs::traffic_load_scenario()).map_err(|e| e.to_string())?;
    let admins = [ctx.ports.free()?, ctx.ports.free()?];
    let mut running = start_both(ctx, &redis, admins, &mut res, progress);
    let layout = ctx.pinned.clone();
    let setup = Setup {
        redis: &redis,
        admins,
        file: &file,
        layout: &layout,
        duration: opts.duration,
        connections: opts.connections,
        clk_tck: ctx.clk_tck,
        client_cpus: ctx.pinned.client.len(),
    };
    warm_up(ctx, &setup, &mut running, &mut res, progress);
    for round in 0..opts.rounds {
        // Closed loop: without, then with [cluster].
        for i in 0..2 {
            closed_phase(ctx, &setup, round, i, &mut running, &mut res, progress);
        }
        // Open loop, [cluster] only, at each rate.
        for (k, &rate) in rates.iter().enumerate() {
            if running[1].is_none() {
                break;
            }
            open_phase(
                ctx,
                &setup,
                round,
                (k, rate),
                &mut running,
                &mut res,
                progress,
            );
        }
        if procs::interrupted() {
            return Err("interrupted".into());
        }
    }
    finish(&mut res, running, redis, progress);
    Ok(res)
}

/// Starts tollgate without and with [cluster]; a failed start is kept on its row.
fn start_both(
    ctx: &mut Ctx<'_>,
    redis: &Redis,
    admins: [u16; 2],
    res: &mut ClusterScenario,
    progress: &mut dyn FnMut(&str),
) -> Vec<Option<Proxy>> {
    let mut running: Vec<Option<Proxy>> = Vec::with_capacity(2);
    for (i, label) in LABELS.iter().enumerate() {
        let tag = if i == 1 { "cluster" } else { "single" };
        let r = start_tollgate(ctx, tag, admins[i], (i == 1).then_some(redis.port));
        match r {
            Ok(p) => running.push(Some(p)),
            Err(e) => {
                progress(&format!("  {label}: {e}"));
                row_of(res, i).failure = Some(format!("did not start: {e}"));
                running.push(None);
            }
        }
    }
    running
}

/// Warms both tollgates up; one that fails or refuses a request stops being measured.
fn warm_up(
    ctx: &mut Ctx<'_>,
    setup: &Setup<'_>,
    running: &mut [Option<Proxy>],
    res: &mut ClusterScenario,
    progress: &mut dyn FnMut(&str),
) {
    let warm = setup.spec(setup.duration.min(crate::run::WARM_UP), None);
    for i in 0..2 {
        let Some(p) = running[i].as_mut() else {
            continue;
        };
        let why = match ctx.phase(p, Scenario::Cluster, &warm) {
            Ok((_, r)) => refused("warm-up", &r),
            Err(e) => Some(format!("warm-up failed: {e}")),
        };
        if let Some(why) = why {
            progress(&format!("  {}: FAILED: {why}", LABELS[i]));
            row_of(res, i).failure = Some(why);
            running[i] = None;
        }
    }
}

/// One closed-loop phase of tollgate `i` in round `round`, with the Redis operations it caused.
fn closed_phase(
    ctx: &mut Ctx<'_>,
    setup: &Setup<'_>,
    round: usize,
    i: usize,
    running: &mut [Option<Proxy>],
    res: &mut ClusterScenario,
    progress: &mut dyn FnMut(&str),
) {
    let what = format!("closed-loop phase (round {})", round + 1);
    let admin = (i == 1).then_some(setup.admins[i]);
    let before = read(setup.redis, admin, setup.clk_tck);
    let Some(result) = ctx.watched_phase(
        running,
        i,
        Scenario::Cluster,
        &setup.spec(setup.duration, None),
        &what,
        &mut res.notes,
    ) else {
        return;
    };
    let after = read(setup.redis, admin, setup.clk_tck);
    let label = LABELS[i];
    let kept = keep(
        row_of(res, i),
        &mut running[i],
        result,
        "closed loop",
        progress,
        |_, ph| {
            format!(
                "round {} {:<22} closed loop {:>9.0} req/s  {:>6.2} µs CPU/req  proxy CPU {:>3.0}%",
                round + 1,
                label,
                ph.rps,
                ph.cpu_us_per_req,
                ph.proxy_busy * 100.0
            )
        },
    );
    let Some((ph, r)) = kept else { return };
    if let Some(why) = refused(&format!("closed loop round {}", round + 1), &r) {
        progress(&format!("  {label}: FAILED: {why}"));
        row_of(res, i).failure = Some(why);
        running[i] = None;
        return;
    }
    let ops = between(&before, &after, r.requests);
    let ph = without_redis(ph, &ops, setup.client_cpus);
    if i == 1 {
        progress(&format!("    {}", ops_text(&ops)));
        res.closed_ops.push(ops);
    } else {
        res.base_ops.push(ops);
    }
    row_of(res, i).closed.push(ph);
}

/// One open-loop phase of tollgate with [cluster] at rate `k` (`rate` req/s) in round `round`.
fn open_phase(
    ctx: &mut Ctx<'_>,
    setup: &Setup<'_>,
    round: usize,
    (k, rate): (usize, f64),
    running: &mut [Option<Proxy>],
    res: &mut ClusterScenario,
    progress: &mut dyn FnMut(&str),
) {
    let what = format!("open-loop phase at {rate:.0} req/s (round {})", round + 1);
    let before = read(setup.redis, Some(setup.admins[1]), setup.clk_tck);
    let Some(result) = ctx.watched_phase(
        running,
        1,
        Scenario::Cluster,
        &setup.spec(setup.duration, Some(rate)),
        &what,
        &mut res.notes,
    ) else {
        return;
    };
    let after = read(setup.redis, Some(setup.admins[1]), setup.clk_tck);
    let label = LABELS[1];
    let kept = keep(
        &mut res.with,
        &mut running[1],
        result,
        "open loop",
        progress,
        |_, ph| {
            format!(
                "round {} {:<22} open loop {:>9.0} req/s  p99 {:.3} ms  {:>6.2} µs CPU/req",
                round + 1,
                label,
                ph.rps,
                ph.p99_us / 1000.0,
                ph.cpu_us_per_req
            )
        },
    );
    let Some((ph, r)) = kept else { return };
    if let Some(why) = refused(&what, &r) {
        progress(&format!("  {label}: FAILED: {why}"));
        res.with.failure = Some(why);
        running[1] = None;
        return;
    }
    if r.rps < rate * 0.95 {
        res.notes.push(format!(
            "Round {}: the open loop at {} req/s reached only {:.0} req/s.",
            round + 1,
            rate,
            r.rps
        ));
    }
    let ops = between(&before, &after, r.requests);
    progress(&format!("    {}", ops_text(&ops)));
    let ph = without_redis(ph, &ops, setup.client_cpus);
    res.open[k].push((ph, ops));
}

/// The peak RSS of both rows and Redis's command statistics; stops the proxies and Redis.
fn finish(
    res: &mut ClusterScenario,
    running: Vec<Option<Proxy>>,
    redis: Redis,
    progress: &mut dyn FnMut(&str),
) {
    let mut rows = [res.base.clone(), res.with.clone()];
    record_peak_rss(&mut rows, running);
    let [base, with] = rows;
    res.base = base;
    res.with = with;
    res.commandstats = redis_info(redis.port, "commandstats")
        .map(|i| commandstats(&i))
        .unwrap_or_default();
    let mut redis = redis;
    redis.child.stop();
    match res.cpu_ratio() {
        Some(r) => progress(&format!(
            "  CPU per request cluster ÷ single host: {r:.3} (target ≤ {CLUSTER_TARGET_RATIO:.2}); with redis-server's CPU: {}",
            res.cpu_ratio_with_redis()
                .map_or_else(|| "—".into(), |v| format!("{v:.3}"))
        )),
        None => progress("  CPU per request cluster ÷ single host: not measured"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_text() {
        let with = config(18080, 19090, 17070, Some(16379));
        let without = config(18080, 19090, 17070, None);
        // Both: the gateway-keys config with keys, its listener and origin, and an admin listener.
        for c in [&with, &without] {
            assert!(
                c.contains(&configs::tollgate_traffic(true, 18080, 19090)),
                "{c}"
            );
            assert!(
                c.contains("[admin]\naddress = \"127.0.0.1\"\nport = 17070\n"),
                "{c}"
            );
            assert!(c.contains("api_key_required = true"), "{c}");
            assert!(
                c.contains("[[usage_plans]]") && c.contains("quota = {"),
                "{c}"
            );
            assert!(
                !c.contains("state_file"),
                "[cluster] excludes state_file: {c}"
            );
        }
        assert!(
            with.ends_with(
                "\n[cluster]\nredis = \"redis://127.0.0.1:16379/0\"\nsync_interval_ms = 100\n\
                 key_prefix = \"tollgate-bench:\"\n"
            ),
            "{with}"
        );
        assert!(!without.contains("[cluster]") && !without.contains("redis://"));
        // The two differ only by the [cluster] section.
        assert_eq!(with.replace(&without, ""), with[without.len()..]);
        assert!(with.starts_with(&without));
        // tollgate's own config loader accepts both and reads what the scenario relies on.
        let g = tollgate_core::config::load_str("cluster.toml", &with).expect("tollgate loads it");
        let c = g.settings.cluster.as_ref().expect("[cluster]");
        assert_eq!(c.redis, "redis://127.0.0.1:16379/0");
        assert_eq!(c.sync_interval, Duration::from_millis(100));
        assert_eq!(c.key_prefix, "tollgate-bench:");
        assert_eq!(
            g.settings.admin,
            Some(SocketAddr::from(([127, 0, 0, 1], 17070)))
        );
        assert_eq!(g.listeners, vec![SocketAddr::from(([127, 0, 0, 1], 18080))]);
        assert_eq!(g.settings.state_file, None);
        let g =
            tollgate_core::config::load_str("single.toml", &without).expect("tollgate loads it");
        assert!(g.settings.cluster.is_none());
        assert_eq!(
            g.settings.admin,
            Some(SocketAddr::from(([127, 0, 0, 1], 17070)))
        );
    }

    #[test]
    fn redis_arguments() {
        let a = redis_args(16379, "/tmp/x");
        let pos = |k: &str| a.iter().position(|s| s == k).expect(k);
        assert_eq!(a[pos("--port") + 1], "16379");
        assert_eq!(a[pos("--bind") + 1], "127.0.0.1");
        assert_eq!(a[pos("--save") + 1], "", "no RDB snapshots");
        assert_eq!(a[pos("--appendonly") + 1], "no");
        assert_eq!(a[pos("--dir") + 1], "/tmp/x");
        assert_eq!(a.len() % 2, 0, "flag / value pairs");
    }

    #[test]
    fn counters_are_parsed() {
        let info = "# Stats\r\ntotal_connections_received:7\r\ntotal_commands_processed:1234\r\n\
                    instantaneous_ops_per_sec:5\r\n";
        assert_eq!(info_field(info, "total_commands_processed"), Some(1234));
        assert_eq!(info_field(info, "total_connections_received"), Some(7));
        assert_eq!(info_field(info, "total_commands"), None);
        let stats = "# Commandstats\r\ncmdstat_info:calls=3,usec=90,usec_per_call=30.00\r\n\
                     cmdstat_evalsha:calls=120,usec=2400,usec_per_call=20.00,rejected_calls=0\r\n\
                     cmdstat_hset:calls=40,usec=80\r\n";
        assert_eq!(
            commandstats(stats),
            vec![
                ("evalsha".to_string(), 120),
                ("hset".to_string(), 40),
                ("info".to_string(), 3)
            ]
        );
        let metrics = "# TYPE tollgate_cluster_redis_ops_total counter\n\
                       tollgate_cluster_redis_ops_total_x 9\n\
                       tollgate_cluster_redis_ops_total 4711\n";
        assert_eq!(metric_value(metrics, OPS_METRIC), Some(4711));
        assert_eq!(metric_value("other 1\n", OPS_METRIC), None);
        assert_eq!(parse_schedstat("1463707 7144131 12\n"), Some(1_463_707));
        assert_eq!(parse_schedstat(""), None);
        // This process's own threads: a positive CPU time that does not go backwards.
        let pid = std::process::id() as i32;
        let a = schedstat_ns(pid).expect("own schedstat");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = schedstat_ns(pid).expect("own schedstat");
        assert!(a > 0 && b > a, "{a} {b}");
    }

    #[test]
    fn deltas_and_ratios() {
        let t0 = Instant::now();
        let a = Reading {
            at: t0,
            ops: Some(100),
            commands: Some(1000),
            redis_cpu_ns: 100_000_000,
        };
        let b = Reading {
            at: t0 + Duration::from_secs(2),
            ops: Some(160),
            commands: Some(1061),
            redis_cpu_ns: 300_000_000,
        };
        let o = between(&a, &b, 40_000);
        assert_eq!(o.tollgate_ops, Some(60));
        assert_eq!(
            o.redis_commands,
            Some(60),
            "the harness's INFO is not counted"
        );
        assert_eq!(o.tollgate_ops_per_s(), Some(30.0));
        assert!((o.redis_cpu_s - 0.2).abs() < 1e-9);
        assert_eq!(o.redis_cpu_us_per_req(), Some(5.0));
        let none = between(&Reading { ops: None, ..a }, &b, 0);
        assert_eq!(none.tollgate_ops, None);
        assert_eq!(none.redis_cpu_us_per_req(), None);

        let ph = |cpu| Phase {
            cpu_us_per_req: cpu,
            ..Phase::default()
        };
        let mut base = LoadRow::new(ProxyKind::Tollgate);
        base.closed = vec![ph(20.0), ph(22.0), ph(21.0)];
        let mut with = LoadRow::new(ProxyKind::Tollgate);
        with.closed = vec![ph(21.0), ph(23.0), ph(22.0)];
        let op = |redis_cpu_s| OpsPhase {
            requests: 1_000_000,
            redis_cpu_s,
            ..OpsPhase::default()
        };
        let c = ClusterScenario {
            base,
            with,
            closed_ops: vec![op(1.0), op(1.0), op(3.0)],
            base_ops: vec![OpsPhase::default(); 3],
            rates: vec![10_000.0, 30_000.0],
            open: vec![Vec::new(), Vec::new()],
            redis_version: String::new(),
            commandstats: Vec::new(),
            notes: Vec::new(),
        };
        assert!((c.cpu_ratio().expect("ratio") - 22.0 / 21.0).abs() < 1e-9);
        // Per round: 22, 24, 25 µs with redis; median 24.
        assert_eq!(c.with_redis_cpu_us(), Some(24.0));
        assert!((c.cpu_ratio_with_redis().expect("ratio") - 24.0 / 21.0).abs() < 1e-9);
        let mut failed = c.clone();
        failed.with.failure = Some("x".into());
        assert_eq!(failed.cpu_ratio(), None);
        assert_eq!(c.open_median(0, |p, _| Some(p.rps)), None);
    }
}
