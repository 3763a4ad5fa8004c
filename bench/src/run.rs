//! The benchmark run: finds the tools, starts the origin and the proxies pinned as the method
//! says (tollgate three times from one binary: as built, `tollgate-poll` with
//! `TOLLGATE_SOCKET_PATH=poll`, and `tollgate-stock` with `GLOMMIO_STOCK_RINGS=1` as well),
//! drives every scenario with the proxies interleaved round by round (the classic ones with wrk and
//! an open-loop phase, the connection sweep and the two-shard scenario closed loop only),
//! samples CPU and memory from `/proc`, and collects what the report shows.

use crate::configs::{self, Routes};
use crate::idle;
use crate::load::{self, LoadResult, LoadSpec, WrkResult};
use crate::plot::{self, Point};
use crate::procs::{self, Child, GroupSample, TempDir};
use crate::sysinfo;
use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The proxies compared, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    /// tollgate as built (glommio with the ring patch, see vendor/glommio/PATCHES.md, and the
    /// lean socket path: multishot receive into a provided-buffer ring, sends as SQEs).
    Tollgate,
    /// The same binary and config started with `TOLLGATE_SOCKET_PATH=poll`: glommio's
    /// readiness-polling `TcpStream` path instead of the lean one.
    TollgatePoll,
    /// The same binary and config started with `GLOMMIO_STOCK_RINGS=1` and
    /// `TOLLGATE_SOCKET_PATH=poll`: io_uring rings set up as stock glommio 0.9 does, and its
    /// socket path (glommio as published).
    TollgateStock,
    Nginx,
    Haproxy,
}

/// The environment variable that makes tollgate's glommio set its rings up as stock glommio.
pub const STOCK_RINGS_ENV: &str = "GLOMMIO_STOCK_RINGS";

/// The environment variable that picks tollgate's socket path (`poll`: glommio's readiness
/// polling; unset: the lean path).
pub const SOCKET_PATH_ENV: &str = "TOLLGATE_SOCKET_PATH";

/// The default `--proxies` list: every proxy, in report (and round) order.
pub const DEFAULT_PROXIES: &str = "tollgate,tollgate-poll,tollgate-stock,nginx,haproxy";

impl ProxyKind {
    pub const ALL: [ProxyKind; 5] = [
        ProxyKind::Tollgate,
        ProxyKind::TollgatePoll,
        ProxyKind::TollgateStock,
        ProxyKind::Nginx,
        ProxyKind::Haproxy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ProxyKind::Tollgate => "tollgate",
            ProxyKind::TollgatePoll => "tollgate-poll",
            ProxyKind::TollgateStock => "tollgate-stock",
            ProxyKind::Nginx => "nginx",
            ProxyKind::Haproxy => "HAProxy",
        }
    }

    /// Position in report order.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The plot color (see [`plot::color`]): nginx, HAProxy and tollgate-stock keep theirs
    /// from before tollgate-poll existed.
    pub fn color(self) -> usize {
        match self {
            ProxyKind::Tollgate => 0,
            ProxyKind::Nginx => 1,
            ProxyKind::Haproxy => 2,
            ProxyKind::TollgatePoll => 3,
            ProxyKind::TollgateStock => 4,
        }
    }

    /// The tollgate variants (same binary, same config).
    pub fn is_tollgate(self) -> bool {
        matches!(
            self,
            ProxyKind::Tollgate | ProxyKind::TollgatePoll | ProxyKind::TollgateStock
        )
    }

    pub fn parse(s: &str) -> Option<ProxyKind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tollgate" => Some(ProxyKind::Tollgate),
            "tollgate-poll" | "tollgate_poll" | "poll" => Some(ProxyKind::TollgatePoll),
            "tollgate-stock" | "tollgate_stock" | "stock" => Some(ProxyKind::TollgateStock),
            "nginx" => Some(ProxyKind::Nginx),
            "haproxy" => Some(ProxyKind::Haproxy),
            _ => None,
        }
    }

    /// Environment changes for the proxy's process: tollgate-poll gets
    /// `TOLLGATE_SOCKET_PATH=poll`, tollgate-stock that and `GLOMMIO_STOCK_RINGS=1`; none of
    /// them inherits the other variables from the harness.
    fn env(self) -> &'static [(&'static str, Option<&'static str>)] {
        match self {
            ProxyKind::Tollgate => &[(STOCK_RINGS_ENV, None), (SOCKET_PATH_ENV, None)],
            ProxyKind::TollgatePoll => &[(STOCK_RINGS_ENV, None), (SOCKET_PATH_ENV, Some("poll"))],
            ProxyKind::TollgateStock => &[
                (STOCK_RINGS_ENV, Some("1")),
                (SOCKET_PATH_ENV, Some("poll")),
            ],
            ProxyKind::Nginx | ProxyKind::Haproxy => &[],
        }
    }
}

/// The scenarios, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Plain0,
    Plain1k,
    Body64k,
    Gateway,
    /// Closed loop at several connection counts (`Options::sweep_connections`).
    Conns,
    /// Two workers/threads/shards allowed on CPUs 0 and 1, shared with origin and generator.
    TwoShards,
    Idle,
}

impl Scenario {
    pub fn id(self) -> &'static str {
        match self {
            Scenario::Plain0 => "plain-0",
            Scenario::Plain1k => "plain-1k",
            Scenario::Body64k => "64k",
            Scenario::Gateway => "gateway",
            Scenario::Conns => "conns",
            Scenario::TwoShards => "2-shards",
            Scenario::Idle => "idle",
        }
    }

    /// Closed loop only (no wrk, no open-loop phase), at one or more connection counts.
    pub fn is_sweep(self) -> bool {
        matches!(self, Scenario::Conns | Scenario::TwoShards)
    }

    pub fn title(self, gateway_routes: usize, idle: usize) -> String {
        match self {
            Scenario::Plain0 => "Plain proxy, 1 route, 0-byte responses".into(),
            Scenario::Plain1k => "Plain proxy, 1 route, 1 KiB responses".into(),
            Scenario::Body64k => "Plain proxy, 1 route, 64 KiB responses".into(),
            Scenario::Gateway => format!(
                "Gateway routing: a route with a path parameter among {gateway_routes} routes, 0-byte responses"
            ),
            Scenario::Conns => {
                "Connection sweep: plain proxy, 1 route, 0-byte responses, closed loop".into()
            }
            Scenario::TwoShards => {
                "Two shards / workers / threads on CPUs 0 and 1, plain proxy, 0-byte responses"
                    .into()
            }
            Scenario::Idle => format!("{idle} idle keep-alive connections"),
        }
    }

    /// Parses a comma list: plain (= plain-0 + plain-1k), plain-0, plain-1k, 64k, gateway,
    /// conns, 2-shards, idle, all.
    pub fn parse_list(s: &str) -> Result<Vec<Scenario>, String> {
        let mut v = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let add: &[Scenario] = match part.to_ascii_lowercase().as_str() {
                "plain" => &[Scenario::Plain0, Scenario::Plain1k],
                "plain-0" | "plain0" => &[Scenario::Plain0],
                "plain-1k" | "plain1k" => &[Scenario::Plain1k],
                "64k" | "large" => &[Scenario::Body64k],
                "gateway" | "routes" => &[Scenario::Gateway],
                "conns" | "connections" | "sweep" => &[Scenario::Conns],
                "2-shards" | "2shards" | "two-shards" | "shards" => &[Scenario::TwoShards],
                "idle" => &[Scenario::Idle],
                "all" => &ALL_SCENARIOS,
                other => {
                    return Err(format!(
                        "unknown scenario {other:?} (use plain, plain-0, plain-1k, 64k, gateway, conns, 2-shards, idle, all)"
                    ))
                }
            };
            for s in add {
                if !v.contains(s) {
                    v.push(*s);
                }
            }
        }
        if v.is_empty() {
            return Err("no scenario given".into());
        }
        v.sort_by_key(|s| ALL_SCENARIOS.iter().position(|a| a == s));
        Ok(v)
    }

    fn routes(self, gateway_routes: usize) -> Routes {
        match self {
            Scenario::Gateway => Routes::Gateway {
                count: gateway_routes,
            },
            _ => Routes::Single,
        }
    }

    fn paths(self, gateway_routes: usize) -> Vec<String> {
        match self {
            Scenario::Plain0 | Scenario::Conns | Scenario::TwoShards | Scenario::Idle => {
                vec!["/0".into()]
            }
            Scenario::Plain1k => vec!["/1k".into()],
            Scenario::Body64k => vec!["/64k".into()],
            Scenario::Gateway => configs::gateway_paths(gateway_routes),
        }
    }

    fn body(self) -> usize {
        match self {
            Scenario::Plain1k => crate::origin::BODY_1K,
            Scenario::Body64k => crate::origin::BODY_64K,
            _ => 0,
        }
    }
}

pub const ALL_SCENARIOS: [Scenario; 7] = [
    Scenario::Plain0,
    Scenario::Plain1k,
    Scenario::Body64k,
    Scenario::Gateway,
    Scenario::Conns,
    Scenario::TwoShards,
    Scenario::Idle,
];

/// Everything a run is told.
#[derive(Clone, Debug)]
pub struct Options {
    /// "quick", "full" or "custom".
    pub mode: String,
    /// Each closed- and open-loop phase of the classic scenarios (plain, 64k, gateway).
    pub duration: Duration,
    /// Each wrk run (wrk counts whole seconds: at least 1 s).
    pub wrk_duration: Duration,
    /// Each phase of the connection sweep and of the two-shard scenario.
    pub sweep_duration: Duration,
    pub rounds: usize,
    /// Rounds that also run wrk (the first ones).
    pub wrk_rounds: usize,
    /// Connections of the classic scenarios and of the two-shard scenario.
    pub connections: usize,
    /// Connection counts of the `conns` sweep.
    pub sweep_connections: Vec<usize>,
    pub idle_connections: usize,
    pub gateway_routes: usize,
    pub scenarios: Vec<Scenario>,
    pub proxies: Vec<ProxyKind>,
    pub out: PathBuf,
    pub bin_dir: PathBuf,
    /// This program (it is also the origin: `tollgate-bench origin`).
    pub self_exe: PathBuf,
    pub workspace: PathBuf,
}

/// The programs used.
#[derive(Clone, Debug)]
pub struct Tools {
    pub tollgate: PathBuf,
    pub load: PathBuf,
    pub nginx: Option<PathBuf>,
    pub haproxy: Option<PathBuf>,
    pub wrk: Option<PathBuf>,
}

pub const INSTALL_HINT: &str = "apt-get install -y nginx haproxy wrk";

/// Finds tollgate and tollgate-load in `bin_dir` (an error telling how to build them if
/// missing) and nginx, HAProxy, wrk on the system (None if missing).
pub fn find_tools(bin_dir: &Path) -> Result<Tools, String> {
    let tollgate = bin_dir.join("tollgate");
    let load = bin_dir.join("tollgate-load");
    let missing: Vec<String> = [&tollgate, &load]
        .iter()
        .filter(|p| !sysinfo::is_executable(p))
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing {}: build them first with `cargo build --release --workspace` (or point --bin-dir at a target directory that has them)",
            missing.join(" and ")
        ));
    }
    Ok(Tools {
        tollgate,
        load,
        nginx: sysinfo::find_program("nginx"),
        haproxy: sysinfo::find_program("haproxy"),
        wrk: sysinfo::find_program("wrk"),
    })
}

/// One load phase of one proxy (medians are taken over these).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Phase {
    pub requests: u64,
    pub rps: f64,
    pub cpu_us_per_req: f64,
    /// CPU time the proxy used ÷ wall time (1.0 = one full CPU; up to 2.0 with two shards).
    pub proxy_busy: f64,
    /// CPU time of the origin and the load generator together ÷ wall time (with one client
    /// CPU: the share of it they used).
    pub client_busy: f64,
    /// The load generator's own CPU time ÷ wall time.
    pub load_busy: f64,
    /// The origin's CPU time ÷ wall time (it is single-threaded: 1.0 = saturated).
    pub origin_busy: f64,
    /// The load generator's CPU was saturated (≥ [`BOUND`]): the client CPU when origin and
    /// generator have one of their own, else the generator's own thread.
    pub client_bound: bool,
    /// The origin's thread was saturated (≥ [`BOUND`]).
    pub origin_bound: bool,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub bad: u64,
    /// Share of the proxy's CPU taken by other processes meanwhile (from `/proc/stat`).
    pub others_proxy_cpu: f64,
    /// Share of the client CPU taken by processes other than origin and load generator.
    pub others_client_cpu: f64,
}

/// CPU share from which the client side (load generator) or the origin counts as saturated.
pub const BOUND: f64 = 0.95;

/// `share` reaches [`BOUND`] as the report shows it (whole percent), so that a row showing
/// 95% is marked.
pub fn saturated(share: f64) -> bool {
    (share * 100.0).round() >= (BOUND * 100.0).round()
}

impl Phase {
    /// "client-bound", "origin-bound", both, or None.
    pub fn bound(&self) -> Option<&'static str> {
        match (self.client_bound, self.origin_bound) {
            (true, true) => Some("client-bound, origin-bound"),
            (true, false) => Some("client-bound"),
            (false, true) => Some("origin-bound"),
            (false, false) => None,
        }
    }
}

/// The saturation mark of a set of phases: set when any of them was client- or origin-bound.
pub fn bound_of<'a>(phases: impl IntoIterator<Item = &'a Phase>) -> Option<&'static str> {
    let (mut c, mut o) = (false, false);
    for p in phases {
        c |= p.client_bound;
        o |= p.origin_bound;
    }
    Phase {
        client_bound: c,
        origin_bound: o,
        ..Phase::default()
    }
    .bound()
}

/// One proxy's results in a load scenario.
#[derive(Clone, Debug)]
pub struct LoadRow {
    pub proxy: ProxyKind,
    /// Why it was not (fully) measured.
    pub failure: Option<String>,
    pub closed: Vec<Phase>,
    pub wrk: Vec<WrkResult>,
    pub open: Vec<Phase>,
    pub peak_rss_kib: u64,
    /// The latency distribution of the open-loop round with the median p99.
    pub curve: Vec<Point>,
    pub codes: Vec<String>,
}

impl LoadRow {
    fn new(proxy: ProxyKind) -> LoadRow {
        LoadRow {
            proxy,
            failure: None,
            closed: Vec::new(),
            wrk: Vec::new(),
            open: Vec::new(),
            peak_rss_kib: 0,
            curve: Vec::new(),
            codes: Vec::new(),
        }
    }

    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// A load scenario's results.
#[derive(Clone, Debug)]
pub struct LoadScenario {
    pub scenario: Scenario,
    pub paths: Vec<String>,
    /// The open-loop rate used for the latency columns (0 if none could be set).
    pub rate: f64,
    pub rows: Vec<LoadRow>,
    pub notes: Vec<String>,
}

/// One proxy's results in a closed-loop-only scenario (`conns`, `2-shards`).
#[derive(Clone, Debug)]
pub struct SweepRow {
    pub proxy: ProxyKind,
    /// Why it was not (fully) measured.
    pub failure: Option<String>,
    /// Closed-loop phases per connection count (the order of `SweepScenario::counts`), one
    /// per round.
    pub phases: Vec<Vec<Phase>>,
    pub peak_rss_kib: u64,
    pub codes: Vec<String>,
}

impl SweepRow {
    fn new(proxy: ProxyKind, counts: usize) -> SweepRow {
        SweepRow {
            proxy,
            failure: None,
            phases: vec![Vec::new(); counts],
            peak_rss_kib: 0,
            codes: Vec::new(),
        }
    }

    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }

    /// The phases at connection count number `i` (empty if none).
    pub fn at(&self, i: usize) -> &[Phase] {
        self.phases.get(i).map_or(&[], Vec::as_slice)
    }
}

/// A closed-loop-only scenario's results.
#[derive(Clone, Debug)]
pub struct SweepScenario {
    pub scenario: Scenario,
    /// Client connections of each phase.
    pub counts: Vec<usize>,
    /// Workers / threads / shards per proxy.
    pub workers: usize,
    /// The CPUs the proxies were allowed on.
    pub proxy_cpus: Vec<usize>,
    /// The CPUs origin and load generator were allowed on.
    pub client_cpus: Vec<usize>,
    pub duration: Duration,
    pub rows: Vec<SweepRow>,
    pub notes: Vec<String>,
}

/// One proxy's results in the idle-connection scenario.
#[derive(Clone, Debug)]
pub struct IdleRow {
    pub proxy: ProxyKind,
    pub failure: Option<String>,
    pub requested: usize,
    pub opened: usize,
    pub held: usize,
    pub rss0_kib: u64,
    pub rss_n_kib: u64,
    pub peak_kib: u64,
    pub stopped: Option<String>,
}

impl IdleRow {
    /// (RSS_N - RSS_0) / N in KiB, N = connections still open at the RSS_N reading.
    pub fn kib_per_conn(&self) -> Option<f64> {
        (self.failure.is_none() && self.held > 0)
            .then(|| (self.rss_n_kib as f64 - self.rss0_kib as f64) / self.held as f64)
    }
}

/// Everything the report needs.
#[derive(Clone, Debug)]
pub struct Results {
    pub date: String,
    pub machine: Vec<(String, String)>,
    pub versions: Vec<(String, String)>,
    pub opts: Options,
    pub tools: Tools,
    pub proxy_cpu: usize,
    pub client_cpu: usize,
    pub nofile: u64,
    pub clk_tck: f64,
    pub loads: Vec<LoadScenario>,
    /// The connection sweep and the two-shard scenario, in report order.
    pub sweeps: Vec<SweepScenario>,
    pub idle: Option<Vec<IdleRow>>,
    /// Proxies (and wrk) left out, with the reason.
    pub skipped: Vec<String>,
    pub notes: Vec<String>,
    pub elapsed: Duration,
}

/// The median of `v` (None when empty).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The median of one field over phases.
pub fn median_of(phases: &[Phase], f: impl Fn(&Phase) -> f64) -> Option<f64> {
    median(phases.iter().map(f).collect())
}

/// Phase lengths and rounds of `--quick` or `--full`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModeTimes {
    /// Closed- and open-loop phases of the classic scenarios.
    pub duration: Duration,
    pub wrk: Duration,
    /// Phases of the connection sweep and the two-shard scenario.
    pub sweep: Duration,
    pub rounds: usize,
}

/// The phase lengths of `--full` (3 rounds) or `--quick` (1 round), sized so that every
/// scenario with all five proxies fits in 12 and 2 minutes on a 2-CPU machine (the test
/// `time_budgets_hold` checks that).
pub fn mode_times(full: bool) -> ModeTimes {
    let ms = Duration::from_millis;
    if full {
        ModeTimes {
            duration: ms(4000),
            wrk: ms(2000),
            sweep: ms(2000),
            rounds: 3,
        }
    } else {
        ModeTimes {
            duration: ms(1000),
            wrk: ms(1000),
            sweep: ms(800),
            rounds: 1,
        }
    }
}

/// Each proxy's warm-up phase at the start of a load scenario (at most the phase length).
pub const WARM_UP: Duration = Duration::from_millis(250);

/// How long a run with `opts` takes: its phases plus the start-up and sampling overheads seen
/// on a 2-CPU machine (about 1 s per scenario for starting the proxies, 50 ms per phase, 3 s
/// per proxy in the idle-connection scenario). wrk is assumed installed.
pub fn planned_time(opts: &Options) -> Duration {
    const PER_PHASE: f64 = 0.05;
    const PER_SCENARIO: f64 = 1.0;
    const IDLE_PER_PROXY: f64 = 3.0;
    let n = opts.proxies.len() as f64;
    let rounds = opts.rounds as f64;
    let d = opts.duration.as_secs_f64();
    let sweep = opts.sweep_duration.as_secs_f64();
    let wrk = opts.wrk_duration.as_secs_f64().round().max(1.0);
    let wrk_rounds = opts.wrk_rounds.min(opts.rounds) as f64;
    let mut secs = 0.0;
    for s in &opts.scenarios {
        secs += PER_SCENARIO
            + n * match s {
                Scenario::Idle => IDLE_PER_PROXY,
                Scenario::Conns | Scenario::TwoShards => {
                    let counts = if *s == Scenario::Conns {
                        opts.sweep_connections.len() as f64
                    } else {
                        1.0
                    };
                    let phases = 1.0 + rounds * counts;
                    opts.sweep_duration.min(WARM_UP).as_secs_f64()
                        + rounds * counts * sweep
                        + phases * PER_PHASE
                }
                _ => {
                    let phases = 1.0 + rounds * 2.0 + wrk_rounds;
                    opts.duration.min(WARM_UP).as_secs_f64()
                        + rounds * 2.0 * d
                        + wrk_rounds * wrk
                        + phases * PER_PHASE
                }
            };
        if *s == Scenario::TwoShards {
            secs += PER_SCENARIO; // its own origin
        }
    }
    Duration::from_secs_f64(secs)
}

/// Hands out loopback ports that were free a moment ago, never the same one twice.
#[derive(Default)]
struct Ports(HashSet<u16>);

impl Ports {
    fn free(&mut self) -> Result<u16, String> {
        for _ in 0..1000 {
            let l =
                TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
            let port = l.local_addr().map_err(|e| e.to_string())?.port();
            if self.0.insert(port) {
                return Ok(port);
            }
        }
        Err("no free loopback port".into())
    }
}

/// Waits until `port` accepts connections (or the child exits, or 10 s pass).
fn wait_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(10);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if procs::interrupted() {
            return Err("interrupted".into());
        }
        if let Some(exit) = child.try_exit() {
            return Err(format!(
                "{} exited at start-up (exit code {:?}): {}",
                child.name,
                exit.code,
                one_line(&child.log_tail(600))
            ));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(format!(
                "{} did not listen on 127.0.0.1:{port} within 10 s: {}",
                child.name,
                one_line(&child.log_tail(600))
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Log text on one line, for table notes.
pub fn one_line(s: &str) -> String {
    let joined = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    if joined.is_empty() {
        "(no output)".into()
    } else {
        joined.replace('|', "\\|")
    }
}

/// A proxy under test.
struct Proxy {
    kind: ProxyKind,
    port: u16,
    child: Child,
}

/// Where the proxy and the client side (origin + load generator) may run.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Layout {
    proxy: Vec<usize>,
    client: Vec<usize>,
}

impl Layout {
    /// Proxy and client side compete for the same CPUs.
    fn shared(&self) -> bool {
        self.proxy == self.client
    }
}

/// How to drive one tollgate-load phase.
struct PhaseSpec<'a> {
    scenario_file: Option<&'a Path>,
    /// Open loop at this rate; None = closed loop.
    rate: Option<f64>,
    duration: Duration,
    hgrm: Option<&'a Path>,
    connections: usize,
    layout: &'a Layout,
}

impl<'a> PhaseSpec<'a> {
    fn closed(duration: Duration, connections: usize, layout: &'a Layout) -> PhaseSpec<'a> {
        PhaseSpec {
            scenario_file: None,
            rate: None,
            duration,
            hgrm: None,
            connections,
            layout,
        }
    }
}

/// Everything the scenario functions share.
struct Ctx<'a> {
    opts: &'a Options,
    tools: &'a Tools,
    temp: &'a TempDir,
    ports: Ports,
    origin: Child,
    origin_port: u16,
    /// The method's pinning: proxy on CPU 0, origin + load generator on CPU 1.
    pinned: Layout,
    /// The two-shard scenario: everything allowed on CPUs 0 and 1.
    wide: Layout,
    nofile: u64,
    clk_tck: f64,
    seq: usize,
}

/// Starts the benchmark origin (this program's `origin` subcommand) on `cpus`.
fn start_origin(
    opts: &Options,
    temp: &TempDir,
    ports: &mut Ports,
    cpus: &[usize],
    tag: &str,
) -> Result<(Child, u16), String> {
    let port = ports.free()?;
    // The origin stops by itself well after the longest possible run.
    let budget = 600
        + opts.scenarios.len() as u64
            * opts.rounds as u64
            * (opts.proxies.len() as u64 + 1)
            * 4
            * (opts.duration.as_secs() + 20);
    let mut origin = procs::spawn(
        "origin",
        &opts.self_exe,
        &[
            "origin".into(),
            "--port".into(),
            port.to_string(),
            "--max-secs".into(),
            budget.to_string(),
        ],
        cpus,
        &temp.join(&format!("{tag}.log")),
        None,
    )
    .map_err(|e| e.to_string())?;
    wait_ready(&mut origin, port)?;
    Ok((origin, port))
}

impl Ctx<'_> {
    fn next_tag(&mut self, what: &str) -> String {
        self.seq += 1;
        format!("{:04}-{what}", self.seq)
    }

    /// Starts `kind` with `workers` workers/threads/shards, allowed on `cpus`.
    fn start_proxy(
        &mut self,
        kind: ProxyKind,
        routes: Routes,
        scen: &str,
        workers: usize,
        cpus: &[usize],
    ) -> Result<Proxy, String> {
        let port = self.ports.free()?;
        let tag = self.next_tag(&format!("{}-{scen}", kind.name().to_ascii_lowercase()));
        let dir = self.temp.join(&tag);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |name: &str, text: String| -> Result<PathBuf, String> {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(p)
        };
        let (program, args): (PathBuf, Vec<String>) = match kind {
            ProxyKind::Tollgate | ProxyKind::TollgatePoll | ProxyKind::TollgateStock => {
                let cfg = write(
                    "tollgate.toml",
                    configs::tollgate(routes, port, self.origin_port, workers),
                )?;
                (
                    self.tools.tollgate.clone(),
                    vec![
                        "--config".into(),
                        cfg.display().to_string(),
                        "--shards".into(),
                        workers.to_string(),
                    ],
                )
            }
            ProxyKind::Nginx => {
                let program = self.tools.nginx.clone().ok_or("nginx is not installed")?;
                let cfg = write(
                    "nginx.conf",
                    configs::nginx(routes, port, self.origin_port, &dir, self.nofile, workers),
                )?;
                (
                    program,
                    vec![
                        "-p".into(),
                        dir.display().to_string(),
                        "-e".into(),
                        dir.join("nginx-error.log").display().to_string(),
                        "-c".into(),
                        cfg.display().to_string(),
                    ],
                )
            }
            ProxyKind::Haproxy => {
                let program = self
                    .tools
                    .haproxy
                    .clone()
                    .ok_or("HAProxy is not installed")?;
                let cfg = write(
                    "haproxy.cfg",
                    configs::haproxy(routes, port, self.origin_port, self.nofile, workers),
                )?;
                (
                    program,
                    vec!["-f".into(), cfg.display().to_string(), "-db".into()],
                )
            }
        };
        let mut child = procs::spawn_env(
            kind.name(),
            &program,
            &args,
            kind.env(),
            cpus,
            &dir.join("output.log"),
            Some(&dir),
        )
        .map_err(|e| e.to_string())?;
        wait_ready(&mut child, port)?;
        Ok(Proxy { kind, port, child })
    }

    /// Warm-up: one short phase per running proxy (it opens the upstream connections), which
    /// must answer right. A proxy that fails is reported, its row (`failures`, in the order of
    /// `running`) says why, and it is left out of the rest of the scenario.
    fn warm_up<'r>(
        &mut self,
        running: &mut [Option<Proxy>],
        failures: impl Iterator<Item = (ProxyKind, &'r mut Option<String>)>,
        scen: Scenario,
        spec: &PhaseSpec<'_>,
        progress: &mut dyn FnMut(&str),
    ) {
        for (slot, (kind, failure)) in running.iter_mut().zip(failures) {
            let Some(p) = slot.as_mut() else {
                continue;
            };
            match self.phase(p, scen, spec) {
                Ok((_, r)) => {
                    if let Some(why) = check_answers(&r, scen.body()) {
                        *failure = Some(format!("answered wrongly during warm-up: {why}"));
                    }
                }
                Err(e) => *failure = Some(format!("warm-up failed: {e}")),
            }
            if let Some(f) = failure.as_deref() {
                progress(&format!("  {}: {f}", kind.name()));
                *slot = None;
            }
        }
    }

    /// Runs one tollgate-load phase against `p`, with CPU sampled around it.
    fn phase(
        &mut self,
        p: &mut Proxy,
        scen: Scenario,
        ps: &PhaseSpec<'_>,
    ) -> Result<(Phase, LoadResult), String> {
        if let Some(exit) = p.child.try_exit() {
            return Err(format!(
                "{} exited (code {:?}): {}",
                p.kind.name(),
                exit.code,
                one_line(&p.child.log_tail(600))
            ));
        }
        let paths = scen.paths(self.opts.gateway_routes);
        let url = format!("http://127.0.0.1:{}{}", p.port, paths[0]);
        let tag = self.next_tag(&format!("load-{}-{}", scen.id(), p.kind.name()));
        let spec = LoadSpec {
            url: &url,
            scenario: ps.scenario_file,
            connections: ps.connections,
            duration: ps.duration,
            rate: ps.rate,
            hgrm: ps.hgrm,
            cpus: &ps.layout.client,
            work: &self.temp.path,
            tag: &tag,
        };
        let p0 = p.child.sample();
        let o0 = self.origin.sample();
        let c0 = procs::cpu_times();
        let ran = load::run_tollgate_load(&self.tools.load, &spec)?;
        let c1 = procs::cpu_times();
        let p1 = p.child.sample();
        let o1 = self.origin.sample();
        let r = &ran.result;
        let secs = if r.elapsed_s > 0.0 {
            r.elapsed_s
        } else {
            ran.wall.as_secs_f64()
        }
        .max(1e-6);
        let ticks =
            |a: &GroupSample, b: &GroupSample| b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64;
        let proxy_ticks = ticks(&p0, &p1);
        let origin_ticks = ticks(&o0, &o1);
        let load_ticks = ran.client_cpu.as_secs_f64() * self.clk_tck;
        let client_ticks = origin_ticks + load_ticks;
        // What the rest of the machine did on those CPUs meanwhile (same window).
        let others = |cpus: &[usize], ours_ticks: f64| {
            let (mut busy, mut total) = (0u64, 0u64);
            for &cpu in cpus {
                if let (Some(a), Some(b)) = (c0.get(cpu), c1.get(cpu)) {
                    busy += b.0.saturating_sub(a.0);
                    total += b.1.saturating_sub(a.1);
                }
            }
            if total == 0 {
                0.0
            } else {
                ((busy as f64 - ours_ticks) / total as f64).clamp(0.0, 1.0)
            }
        };
        let layout = ps.layout;
        let (others_proxy_cpu, others_client_cpu) = if layout.shared() {
            let o = others(&layout.proxy, proxy_ticks + client_ticks);
            (o, o)
        } else {
            (
                others(&layout.proxy, proxy_ticks),
                others(&layout.client, client_ticks),
            )
        };
        let busy = |t: f64| t / self.clk_tck / secs;
        let (load_busy, origin_busy, client_busy) =
            (busy(load_ticks), busy(origin_ticks), busy(client_ticks));
        // One client CPU (origin + generator): saturated when they fill it. Otherwise the
        // single generator thread is the client side's limit.
        let client_saturated = layout.client.len() == 1 && !layout.shared();
        let phase = Phase {
            requests: r.requests,
            rps: r.rps,
            cpu_us_per_req: if r.requests > 0 {
                proxy_ticks / self.clk_tck * 1e6 / r.requests as f64
            } else {
                f64::NAN
            },
            proxy_busy: busy(proxy_ticks),
            client_busy,
            load_busy,
            origin_busy,
            client_bound: saturated(load_busy) || (client_saturated && saturated(client_busy)),
            origin_bound: saturated(origin_busy),
            p50_us: r.p50_us as f64,
            p99_us: r.p99_us as f64,
            p999_us: r.p999_us as f64,
            bad: r.bad(),
            others_proxy_cpu,
            others_client_cpu,
        };
        Ok((phase, ran.result))
    }

    /// Runs proxy `i`'s closed-loop phase while the others (which should be idle) are
    /// watched: CPU they use meanwhile is taken from the proxy under test, and noted.
    /// None when proxy `i` is not running.
    fn watched_phase(
        &mut self,
        running: &mut [Option<Proxy>],
        i: usize,
        scen: Scenario,
        ps: &PhaseSpec<'_>,
        what: &str,
        notes: &mut Vec<String>,
    ) -> Option<Result<(Phase, LoadResult), String>> {
        let idle_before = sample_all(running);
        let phase_start = Instant::now();
        let p = running[i].as_mut()?;
        let name = p.kind.name();
        let result = self.phase(p, scen, ps);
        let secs = phase_start.elapsed().as_secs_f64().max(1e-6);
        for (j, after) in sample_all(running).into_iter().enumerate() {
            if let (true, Some(a), Some(b), Some(other)) =
                (j != i, idle_before[j], after, running[j].as_ref())
            {
                let busy = b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / self.clk_tck / secs;
                if busy > 0.05 {
                    notes.push(format!(
                        "{} used {:.0}% of a CPU while idle during {name}'s {what}: that CPU time was taken from the proxy under test.",
                        other.kind.name(),
                        busy * 100.0,
                    ));
                }
            }
        }
        Some(result)
    }
}

/// Runs the whole benchmark. `progress` gets one line per step.
pub fn run(opts: &Options, progress: &mut dyn FnMut(&str)) -> Result<Results, String> {
    let started = Instant::now();
    let tools = find_tools(&opts.bin_dir)?;
    let mut skipped = Vec::new();
    let mut notes = Vec::new();
    let mut proxies = Vec::new();
    for &k in &opts.proxies {
        let present = match k {
            ProxyKind::Tollgate | ProxyKind::TollgatePoll | ProxyKind::TollgateStock => true,
            ProxyKind::Nginx => tools.nginx.is_some(),
            ProxyKind::Haproxy => tools.haproxy.is_some(),
        };
        if present {
            proxies.push(k);
        } else {
            let msg = format!(
                "{} skipped: not installed (install with `{INSTALL_HINT}`)",
                k.name()
            );
            progress(&msg);
            skipped.push(msg);
        }
    }
    for k in ProxyKind::ALL {
        if !opts.proxies.contains(&k) {
            skipped.push(format!("{} skipped: not selected (--proxies)", k.name()));
        }
    }
    if tools.wrk.is_none() {
        let msg =
            format!("wrk not installed: the wrk column is empty (install with `{INSTALL_HINT}`)");
        progress(&msg);
        skipped.push(msg);
    }
    if cfg!(debug_assertions) {
        notes.push("tollgate-bench itself was a debug build: its origin is slower than in a release build (run with `cargo run --release -p tollgate-bench`).".into());
    }
    if !opts
        .bin_dir
        .components()
        .any(|c| c.as_os_str() == "release")
    {
        notes.push(format!(
            "The tollgate and tollgate-load binaries came from {} (not a release directory): these numbers say nothing about release performance.",
            opts.bin_dir.display()
        ));
    }

    let ncpu = procs::online_cpus();
    let proxy_cpu = 0;
    let client_cpu = if ncpu >= 2 { 1 } else { 0 };
    if ncpu < 2 {
        notes.push("Only one CPU: proxy, origin and load generator all share CPU 0.".into());
    }
    if ncpu > 2 {
        notes.push(format!(
            "{ncpu} CPUs online; the method uses only CPU 0 (proxy) and CPU 1 (origin + load generator)."
        ));
    }
    let want_fds = (opts.idle_connections as u64 + 4096).max(65_536);
    let nofile = procs::raise_nofile(want_fds);
    if nofile < opts.idle_connections as u64 + 1024 {
        notes.push(format!(
            "The open-files limit could only be raised to {nofile} (run as root or raise the hard limit for {} idle connections).",
            opts.idle_connections
        ));
    }
    // The harness itself (the idle-connection client, sampling) runs on the client CPU.
    let _ = procs::CpuSet::of(&[client_cpu]).apply_to_self();
    let clk_tck = procs::clock_ticks();

    let wide: Vec<usize> = (0..ncpu.clamp(1, 2)).collect();
    if ncpu < 2 && opts.scenarios.contains(&Scenario::TwoShards) {
        notes.push(
            "Only one CPU: the 2-shards scenario ran its two shards / workers / threads on CPU 0."
                .into(),
        );
    }

    let temp = TempDir::new("run").map_err(|e| format!("temp dir: {e}"))?;
    let mut ports = Ports::default();
    let (origin, origin_port) = start_origin(opts, &temp, &mut ports, &[client_cpu], "origin")?;
    progress(&format!(
        "origin on 127.0.0.1:{origin_port} (CPU {client_cpu}); proxies on CPU {proxy_cpu}"
    ));

    let mut ctx = Ctx {
        opts,
        tools: &tools,
        temp: &temp,
        ports,
        origin,
        origin_port,
        pinned: Layout {
            proxy: vec![proxy_cpu],
            client: vec![client_cpu],
        },
        wide: Layout {
            proxy: wide.clone(),
            client: wide,
        },
        nofile,
        clk_tck,
        seq: 0,
    };
    let mut loads = Vec::new();
    let mut sweeps = Vec::new();
    let mut idle_rows = None;
    for &scen in &opts.scenarios {
        if procs::interrupted() {
            return Err("interrupted".into());
        }
        let scen_start = Instant::now();
        progress(&format!("scenario {}", scen.id()));
        if scen == Scenario::Idle {
            idle_rows = Some(run_idle(&mut ctx, &proxies, progress)?);
        } else if scen.is_sweep() {
            sweeps.push(run_sweep(&mut ctx, scen, &proxies, progress)?);
        } else {
            loads.push(run_load(&mut ctx, scen, &proxies, progress)?);
        }
        progress(&format!(
            "  ({} took {:.0} s; {:.0} s so far)",
            scen.id(),
            scen_start.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64()
        ));
    }
    ctx.origin.stop();

    let mut versions = vec![
        (
            "tollgate".to_string(),
            format!(
                "{} (git {})",
                sysinfo::first_line(&tools.tollgate, &["--version"], None)
                    .unwrap_or_else(|| "?".into()),
                sysinfo::git_rev(&opts.workspace)
            ),
        ),
        (
            "tollgate-load".to_string(),
            sysinfo::first_line(&tools.load, &["--version"], None).unwrap_or_else(|| "?".into()),
        ),
    ];
    for (name, p, arg) in [
        ("nginx", &tools.nginx, "-v"),
        ("HAProxy", &tools.haproxy, "-v"),
        ("wrk", &tools.wrk, "-v"),
    ] {
        let v = match p {
            Some(p) => sysinfo::first_line(p, &[arg], None).unwrap_or_else(|| "?".into()),
            None => "not installed".into(),
        };
        versions.push((name.to_string(), v));
    }
    let machine = vec![
        ("CPUs (nproc)".to_string(), ncpu.to_string()),
        ("CPU model".to_string(), sysinfo::cpu_model()),
        ("kernel".to_string(), sysinfo::kernel()),
    ];
    Ok(Results {
        date: sysinfo::now_utc(),
        machine,
        versions,
        opts: opts.clone(),
        tools: tools.clone(),
        proxy_cpu,
        client_cpu,
        nofile,
        clk_tck,
        loads,
        sweeps,
        idle: idle_rows,
        skipped,
        notes,
        elapsed: started.elapsed(),
    })
}

/// Starts every proxy for a scenario: a row per proxy (made by `row` from the proxy and, if it
/// did not start, why), and the running proxies in the same order (`None` where it failed).
fn start_all<R>(
    ctx: &mut Ctx<'_>,
    scen: Scenario,
    proxies: &[ProxyKind],
    progress: &mut dyn FnMut(&str),
    mut row: impl FnMut(ProxyKind, Option<String>) -> R,
) -> (Vec<R>, Vec<Option<Proxy>>) {
    let routes = scen.routes(ctx.opts.gateway_routes);
    let (workers, cpus) = if scen == Scenario::TwoShards {
        (2, ctx.wide.proxy.clone())
    } else {
        (1, ctx.pinned.proxy.clone())
    };
    let mut rows = Vec::with_capacity(proxies.len());
    let mut running = Vec::with_capacity(proxies.len());
    for &k in proxies {
        match ctx.start_proxy(k, routes, scen.id(), workers, &cpus) {
            Ok(p) => {
                rows.push(row(k, None));
                running.push(Some(p));
            }
            Err(e) => {
                progress(&format!("  {}: {e}", k.name()));
                rows.push(row(k, Some(format!("did not start: {e}"))));
                running.push(None);
            }
        }
    }
    (rows, running)
}

fn run_load(
    ctx: &mut Ctx<'_>,
    scen: Scenario,
    proxies: &[ProxyKind],
    progress: &mut dyn FnMut(&str),
) -> Result<LoadScenario, String> {
    let opts = ctx.opts;
    let paths = scen.paths(opts.gateway_routes);
    let mut notes = Vec::new();
    let (scenario_file, lua) = if paths.len() > 1 {
        let s = ctx.temp.join(&format!("{}-scenario.toml", scen.id()));
        let l = ctx.temp.join(&format!("{}-wrk.lua", scen.id()));
        std::fs::write(&s, configs::load_scenario(&paths)).map_err(|e| e.to_string())?;
        std::fs::write(&l, configs::wrk_lua(&paths)).map_err(|e| e.to_string())?;
        (Some(s), Some(l))
    } else {
        (None, None)
    };
    let (mut rows, mut running) = start_all(ctx, scen, proxies, progress, |k, failure| LoadRow {
        failure,
        ..LoadRow::new(k)
    });

    let layout = ctx.pinned.clone();
    let closed = |duration| PhaseSpec {
        scenario_file: scenario_file.as_deref(),
        ..PhaseSpec::closed(duration, opts.connections, &layout)
    };

    // Warm-up: opens the upstream connections and checks that every proxy answers right.
    let warm = closed(opts.duration.min(WARM_UP));
    let failures = rows.iter_mut().map(|r| (r.proxy, &mut r.failure));
    ctx.warm_up(&mut running, failures, scen, &warm, progress);

    // Closed loop (max throughput) and wrk, proxies interleaved round by round.
    for round in 0..opts.rounds {
        for i in 0..rows.len() {
            // The proxies not under test must stay idle: their CPU is watched meanwhile.
            let what = format!("closed-loop phase (round {})", round + 1);
            let Some(result) = ctx.watched_phase(
                &mut running,
                i,
                scen,
                &closed(opts.duration),
                &what,
                &mut notes,
            ) else {
                continue;
            };
            match result {
                Ok((ph, r)) => {
                    progress(&format!(
                        "  round {} {:<14} closed loop {:>9.0} req/s  {:>6.2} µs CPU/req  proxy CPU {:>3.0}%  client CPU {:>3.0}% (origin {:.0}%){}{}",
                        round + 1,
                        rows[i].proxy.name(),
                        ph.rps,
                        ph.cpu_us_per_req,
                        ph.proxy_busy * 100.0,
                        ph.client_busy * 100.0,
                        ph.origin_busy * 100.0,
                        bound_suffix(&ph),
                        contention(&ph)
                    ));
                    if !r.codes.is_empty() {
                        rows[i].codes.push(r.codes.clone());
                    }
                    rows[i].closed.push(ph);
                }
                Err(e) => fail(
                    rows[i].proxy,
                    &mut rows[i].failure,
                    &mut running[i],
                    format!("closed loop: {e}"),
                    progress,
                ),
            }
        }
        if round < opts.wrk_rounds {
            if let Some(wrk) = &ctx.tools.wrk {
                for i in 0..rows.len() {
                    let Some(p) = running[i].as_ref() else {
                        continue;
                    };
                    let url = format!("http://127.0.0.1:{}{}", p.port, paths[0]);
                    let tag = ctx.next_tag(&format!("wrk-{}-{}", scen.id(), p.kind.name()));
                    let spec = LoadSpec {
                        url: &url,
                        scenario: None,
                        connections: opts.connections,
                        duration: opts.wrk_duration,
                        rate: None,
                        hgrm: None,
                        cpus: &layout.client,
                        work: &ctx.temp.path,
                        tag: &tag,
                    };
                    match load::run_wrk(wrk, &spec, lua.as_deref()) {
                        Ok(ran) => {
                            progress(&format!(
                                "  round {} {:<14} wrk         {:>9.0} req/s",
                                round + 1,
                                rows[i].proxy.name(),
                                ran.result.rps
                            ));
                            rows[i].wrk.push(ran.result);
                        }
                        Err(e) => {
                            if procs::interrupted() {
                                return Err("interrupted".into());
                            }
                            notes.push(format!("wrk against {}: {e}", rows[i].proxy.name()));
                        }
                    }
                }
            }
        }
        if procs::interrupted() {
            return Err("interrupted".into());
        }
    }

    // The fixed open-loop rate: half the slowest proxy's closed-loop maximum.
    let slowest = rows
        .iter()
        .filter(|r| r.ok())
        .filter_map(|r| median_of(&r.closed, |p| p.rps))
        .fold(f64::INFINITY, f64::min);
    let rate = if slowest.is_finite() && slowest > 2.0 {
        (slowest / 2.0).floor()
    } else {
        0.0
    };
    if rate > 0.0 {
        progress(&format!("  open loop at {rate:.0} req/s"));
        let mut curves: Vec<Vec<(f64, Vec<Point>)>> = vec![Vec::new(); rows.len()];
        for round in 0..opts.rounds {
            for i in 0..rows.len() {
                let Some(p) = running[i].as_mut() else {
                    continue;
                };
                let hgrm = ctx.temp.join(&format!(
                    "{}-{}-{round}.hgrm",
                    scen.id(),
                    rows[i].proxy.name()
                ));
                let open = PhaseSpec {
                    rate: Some(rate),
                    hgrm: Some(&hgrm),
                    ..closed(opts.duration)
                };
                match ctx.phase(p, scen, &open) {
                    Ok((ph, r)) => {
                        progress(&format!(
                            "  round {} {:<14} open loop   p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  {:>6.2} µs CPU/req{}{}",
                            round + 1,
                            rows[i].proxy.name(),
                            ph.p50_us / 1000.0,
                            ph.p99_us / 1000.0,
                            ph.p999_us / 1000.0,
                            ph.cpu_us_per_req,
                            bound_suffix(&ph),
                            contention(&ph)
                        ));
                        if r.rps < rate * 0.95 {
                            notes.push(format!(
                                "{} round {}: the open loop reached only {:.0} of {rate:.0} req/s.",
                                rows[i].proxy.name(),
                                round + 1,
                                r.rps
                            ));
                        }
                        if !r.codes.is_empty() {
                            rows[i].codes.push(r.codes.clone());
                        }
                        let text = std::fs::read_to_string(&hgrm).unwrap_or_default();
                        curves[i].push((ph.p99_us, plot::parse_hgrm(&text)));
                        rows[i].open.push(ph);
                    }
                    Err(e) => fail(
                        rows[i].proxy,
                        &mut rows[i].failure,
                        &mut running[i],
                        format!("open loop: {e}"),
                        progress,
                    ),
                }
            }
            if procs::interrupted() {
                return Err("interrupted".into());
            }
        }
        for (row, mut c) in rows.iter_mut().zip(curves) {
            c.sort_by(|a, b| a.0.total_cmp(&b.0));
            if !c.is_empty() {
                let mid = (c.len() - 1) / 2;
                row.curve = c.swap_remove(mid).1;
            }
        }
    } else {
        notes.push("No open-loop latency phase: no proxy completed the closed-loop phase.".into());
    }

    for (row, p) in rows.iter_mut().zip(running.iter()) {
        if let Some(p) = p {
            row.peak_rss_kib = p.child.sample().hwm_kib;
        }
    }
    drop(running);
    Ok(LoadScenario {
        scenario: scen,
        paths,
        rate,
        rows,
        notes,
    })
}

/// The connection sweep (`conns`: the method's pinning, one worker each, closed loop at every
/// count of `Options::sweep_connections`) and the two-shard scenario (`2-shards`: two
/// workers/threads/shards, proxy, origin and load generator all allowed on CPUs 0 and 1,
/// closed loop at `Options::connections`). Closed loop only; proxies interleaved per round and
/// connection count.
fn run_sweep(
    ctx: &mut Ctx<'_>,
    scen: Scenario,
    proxies: &[ProxyKind],
    progress: &mut dyn FnMut(&str),
) -> Result<SweepScenario, String> {
    if scen != Scenario::TwoShards {
        return sweep(ctx, scen, proxies, progress);
    }
    // The origin gets both CPUs too: a second origin for this scenario only.
    let cpus = ctx.wide.client.clone();
    let (origin, port) = start_origin(ctx.opts, ctx.temp, &mut ctx.ports, &cpus, "origin-wide")?;
    progress(&format!(
        "  origin on 127.0.0.1:{port} (CPUs {}); proxies, origin and load generator share them",
        cpu_list(&cpus)
    ));
    let pinned_origin = std::mem::replace(&mut ctx.origin, origin);
    let pinned_port = std::mem::replace(&mut ctx.origin_port, port);
    let result = sweep(ctx, scen, proxies, progress);
    let mut wide_origin = std::mem::replace(&mut ctx.origin, pinned_origin);
    ctx.origin_port = pinned_port;
    wide_origin.stop();
    result
}

/// "0,1" for a CPU list.
pub fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn sweep(
    ctx: &mut Ctx<'_>,
    scen: Scenario,
    proxies: &[ProxyKind],
    progress: &mut dyn FnMut(&str),
) -> Result<SweepScenario, String> {
    let opts = ctx.opts;
    let (counts, workers, layout) = if scen == Scenario::TwoShards {
        (vec![opts.connections], 2, ctx.wide.clone())
    } else {
        (opts.sweep_connections.clone(), 1, ctx.pinned.clone())
    };
    let mut notes = Vec::new();
    let (mut rows, mut running) = start_all(ctx, scen, proxies, progress, |k, failure| SweepRow {
        failure,
        ..SweepRow::new(k, counts.len())
    });

    // Warm-up at the scenario's usual connection count; checks the answers.
    let warm = PhaseSpec::closed(opts.sweep_duration.min(WARM_UP), opts.connections, &layout);
    let failures = rows.iter_mut().map(|r| (r.proxy, &mut r.failure));
    ctx.warm_up(&mut running, failures, scen, &warm, progress);

    for round in 0..opts.rounds {
        for (ci, &c) in counts.iter().enumerate() {
            let spec = PhaseSpec::closed(opts.sweep_duration, c, &layout);
            for i in 0..rows.len() {
                let what = format!("{c}-connection phase (round {})", round + 1);
                let Some(result) =
                    ctx.watched_phase(&mut running, i, scen, &spec, &what, &mut notes)
                else {
                    continue;
                };
                match result {
                    Ok((ph, r)) => {
                        progress(&format!(
                            "  round {} {:>4} conns {:<14} {:>9.0} req/s  {:>6.2} µs CPU/req  proxy CPU {:>3.0}%  load generator {:>3.0}%  origin {:>3.0}%{}{}",
                            round + 1,
                            c,
                            rows[i].proxy.name(),
                            ph.rps,
                            ph.cpu_us_per_req,
                            ph.proxy_busy * 100.0,
                            ph.load_busy * 100.0,
                            ph.origin_busy * 100.0,
                            bound_suffix(&ph),
                            contention(&ph)
                        ));
                        if !r.codes.is_empty() {
                            rows[i].codes.push(r.codes.clone());
                        }
                        if let Some(v) = rows[i].phases.get_mut(ci) {
                            v.push(ph);
                        }
                    }
                    Err(e) => fail(
                        rows[i].proxy,
                        &mut rows[i].failure,
                        &mut running[i],
                        format!("{c} connections: {e}"),
                        progress,
                    ),
                }
            }
            if procs::interrupted() {
                return Err("interrupted".into());
            }
        }
    }

    for (row, p) in rows.iter_mut().zip(running.iter()) {
        if let Some(p) = p {
            row.peak_rss_kib = p.child.sample().hwm_kib;
        }
    }
    drop(running);
    Ok(SweepScenario {
        scenario: scen,
        counts,
        workers,
        proxy_cpus: layout.proxy.clone(),
        client_cpus: layout.client.clone(),
        duration: opts.sweep_duration,
        rows,
        notes,
    })
}

/// Other processes' share of the two CPUs during a phase, when it matters (else "").
pub fn contention(ph: &Phase) -> String {
    if ph.others_proxy_cpu.max(ph.others_client_cpu) > OTHERS_NOTICEABLE {
        format!(
            "  [other processes: {:.0}% of the proxy CPU, {:.0}% of the client CPU]",
            ph.others_proxy_cpu * 100.0,
            ph.others_client_cpu * 100.0
        )
    } else {
        String::new()
    }
}

/// Other processes' CPU share above which a phase is reported as disturbed.
pub const OTHERS_NOTICEABLE: f64 = 0.05;

/// A sample of every running proxy (None where not running).
fn sample_all(running: &[Option<Proxy>]) -> Vec<Option<GroupSample>> {
    running
        .iter()
        .map(|p| p.as_ref().map(|p| p.child.sample()))
        .collect()
}

/// Records why `proxy` stopped being measured and stops it.
fn fail(
    proxy: ProxyKind,
    failure: &mut Option<String>,
    p: &mut Option<Proxy>,
    why: String,
    progress: &mut dyn FnMut(&str),
) {
    progress(&format!("  {}: {why}", proxy.name()));
    *failure = Some(why);
    *p = None;
}

/// "  [client-bound]" etc. for progress lines (else "").
fn bound_suffix(ph: &Phase) -> String {
    ph.bound().map_or_else(String::new, |b| format!("  [{b}]"))
}

/// Why a warm-up result shows a proxy that does not proxy right (None = fine).
pub fn check_answers(r: &LoadResult, body: usize) -> Option<String> {
    if r.ok_2xx == 0 {
        let codes = if r.codes.is_empty() {
            "none".to_string()
        } else {
            r.codes.clone()
        };
        return Some(format!(
            "no 2xx response ({} responses, {} socket errors; status codes {codes})",
            r.requests, r.errors
        ));
    }
    if r.bad() * 100 > r.requests.max(1) {
        return Some(format!(
            "{} of {} requests failed (status codes: {}; {} socket errors/timeouts)",
            r.bad(),
            r.requests,
            r.codes,
            r.errors
        ));
    }
    if r.requests > 0 && (r.bytes_read / r.requests) < body as u64 {
        return Some(format!(
            "responses average {} bytes, less than the {body}-byte body",
            r.bytes_read / r.requests
        ));
    }
    None
}

fn run_idle(
    ctx: &mut Ctx<'_>,
    proxies: &[ProxyKind],
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<IdleRow>, String> {
    let n = ctx.opts.idle_connections;
    let mut rows = Vec::new();
    for &k in proxies {
        let mut row = IdleRow {
            proxy: k,
            failure: None,
            requested: n,
            opened: 0,
            held: 0,
            rss0_kib: 0,
            rss_n_kib: 0,
            peak_kib: 0,
            stopped: None,
        };
        let cpus = ctx.pinned.proxy.clone();
        match ctx.start_proxy(k, Routes::Single, "idle", 1, &cpus) {
            Err(e) => row.failure = Some(format!("did not start: {e}")),
            Ok(p) => {
                let addr = SocketAddr::from(([127, 0, 0, 1], p.port));
                // One request first, so the upstream connection exists before RSS_0.
                let warm = idle::open(
                    addr,
                    "/0",
                    1,
                    Instant::now() + Duration::from_secs(5),
                    &procs::interrupted,
                );
                if warm.streams.is_empty() {
                    row.failure = Some(format!(
                        "no 2xx answer to a first request: {}",
                        warm.stopped.unwrap_or_default()
                    ));
                } else {
                    drop(warm);
                    std::thread::sleep(Duration::from_millis(300));
                    row.rss0_kib = p.child.sample().rss_kib;
                    let deadline = Instant::now() + Duration::from_secs(60);
                    let set = idle::open(addr, "/0", n, deadline, &procs::interrupted);
                    if procs::interrupted() {
                        return Err("interrupted".into());
                    }
                    row.opened = set.streams.len();
                    std::thread::sleep(Duration::from_millis(500));
                    let s = p.child.sample();
                    row.held = idle::still_open(&set.streams);
                    row.rss_n_kib = s.rss_kib;
                    row.peak_kib = s.hwm_kib;
                    row.stopped = set.stopped.clone();
                    drop(set);
                }
                drop(p);
            }
        }
        match (&row.failure, row.kib_per_conn()) {
            (Some(f), _) => progress(&format!("  {}: {f}", k.name())),
            (None, Some(per)) => progress(&format!(
                "  {:<8} {} of {n} connections held, RSS {:.1} → {:.1} MiB, {per:.2} KiB/connection",
                k.name(),
                row.held,
                row.rss0_kib as f64 / 1024.0,
                row.rss_n_kib as f64 / 1024.0
            )),
            (None, None) => progress(&format!("  {:<8} no connection held", k.name())),
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![f64::NAN, 1.0]), Some(1.0));
    }

    #[test]
    fn scenario_lists() {
        assert_eq!(
            Scenario::parse_list("idle,plain").expect("parses"),
            vec![Scenario::Plain0, Scenario::Plain1k, Scenario::Idle]
        );
        assert_eq!(
            Scenario::parse_list("all").expect("parses"),
            ALL_SCENARIOS.to_vec()
        );
        assert!(Scenario::parse_list("bogus").is_err());
        assert!(Scenario::parse_list("").is_err());
        assert_eq!(
            Scenario::parse_list("2-shards,conns,plain-0").expect("parses"),
            vec![Scenario::Plain0, Scenario::Conns, Scenario::TwoShards]
        );
        assert!(ALL_SCENARIOS.contains(&Scenario::Conns));
        assert!(ALL_SCENARIOS.contains(&Scenario::TwoShards));
        assert!(Scenario::Conns.is_sweep() && !Scenario::Plain0.is_sweep());
    }

    /// The options `--quick` and `--full` give, with every scenario and proxy.
    fn mode_options(full: bool) -> Options {
        let t = mode_times(full);
        Options {
            mode: if full { "full" } else { "quick" }.into(),
            duration: t.duration,
            wrk_duration: t.wrk,
            sweep_duration: t.sweep,
            rounds: t.rounds,
            wrk_rounds: 1,
            connections: 64,
            sweep_connections: vec![16, 64, 256],
            idle_connections: 10_000,
            gateway_routes: 1000,
            scenarios: ALL_SCENARIOS.to_vec(),
            proxies: ProxyKind::ALL.to_vec(),
            out: PathBuf::new(),
            bin_dir: PathBuf::new(),
            self_exe: PathBuf::new(),
            workspace: PathBuf::new(),
        }
    }

    #[test]
    fn time_budgets_hold() {
        // Budgets: quick ≤ 2 min, full ≤ 12 min. The plan's overheads are those of a busy
        // machine (a quick run planned at 110 s took 97 s with the load average at 3).
        let quick = planned_time(&mode_options(false)).as_secs_f64();
        let full = planned_time(&mode_options(true)).as_secs_f64();
        assert!(quick <= 115.0, "quick mode plans {quick:.0} s");
        assert!(full <= 700.0, "full mode plans {full:.0} s");
        assert!(quick > 60.0 && full > 400.0, "{quick} {full}");
    }

    #[test]
    fn proxy_kinds() {
        assert_eq!(
            ProxyKind::parse(" Tollgate-Stock "),
            Some(ProxyKind::TollgateStock)
        );
        assert_eq!(
            ProxyKind::parse("tollgate_poll"),
            Some(ProxyKind::TollgatePoll)
        );
        assert_eq!(ProxyKind::parse("bogus"), None);
        let names: Vec<&str> = ProxyKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "tollgate",
                "tollgate-poll",
                "tollgate-stock",
                "nginx",
                "HAProxy"
            ]
        );
        let defaults: Vec<Option<ProxyKind>> =
            DEFAULT_PROXIES.split(',').map(ProxyKind::parse).collect();
        assert_eq!(
            defaults,
            ProxyKind::ALL.map(Some),
            "default = every proxy, in order"
        );
        assert!(ProxyKind::ALL[..3].iter().all(|k| k.is_tollgate()));
        for (i, k) in ProxyKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(ProxyKind::parse(k.name()), Some(*k));
        }
        let colors: HashSet<usize> = ProxyKind::ALL.iter().map(|k| k.color()).collect();
        assert_eq!(colors.len(), ProxyKind::ALL.len(), "one color each");
        // tollgate: lean path and patched rings whatever the harness's environment holds;
        // tollgate-poll: the readiness path; tollgate-stock: stock rings and the poll path.
        assert_eq!(
            ProxyKind::Tollgate.env(),
            &[(STOCK_RINGS_ENV, None), (SOCKET_PATH_ENV, None)]
        );
        assert_eq!(
            ProxyKind::TollgatePoll.env(),
            &[(STOCK_RINGS_ENV, None), (SOCKET_PATH_ENV, Some("poll"))]
        );
        assert_eq!(
            ProxyKind::TollgateStock.env(),
            &[
                (STOCK_RINGS_ENV, Some("1")),
                (SOCKET_PATH_ENV, Some("poll"))
            ]
        );
        assert!(ProxyKind::Nginx.env().is_empty() && ProxyKind::Haproxy.env().is_empty());
    }

    #[test]
    fn bound_marks() {
        let free = Phase::default();
        let client = Phase {
            client_bound: true,
            ..Phase::default()
        };
        let origin = Phase {
            origin_bound: true,
            ..Phase::default()
        };
        assert_eq!(free.bound(), None);
        assert_eq!(client.bound(), Some("client-bound"));
        assert_eq!(bound_of([&free, &origin]), Some("origin-bound"));
        assert_eq!(
            bound_of([&client, &origin]),
            Some("client-bound, origin-bound")
        );
        assert_eq!(bound_of([]), None);
        assert!(saturated(0.949) && saturated(1.2) && !saturated(0.944));
        let wide = Layout {
            proxy: vec![0, 1],
            client: vec![0, 1],
        };
        assert!(wide.shared());
    }

    #[test]
    fn answer_checks() {
        let good = LoadResult {
            requests: 100,
            ok_2xx: 100,
            bytes_read: 100 * 1200,
            ..Default::default()
        };
        assert_eq!(check_answers(&good, 1024), None);
        let short = LoadResult {
            bytes_read: 100 * 100,
            ..good.clone()
        };
        assert!(check_answers(&short, 1024).is_some());
        let errs = LoadResult {
            non_2xx: 50,
            ok_2xx: 50,
            codes: "404: 50".into(),
            ..good.clone()
        };
        assert!(check_answers(&errs, 0).is_some_and(|s| s.contains("404")));
        assert!(check_answers(&LoadResult::default(), 0).is_some());
    }
}
