//! The scenario model: the proxies compared (`ProxyKind`, with the environment that makes the
//! three tollgate variants out of one binary), the scenarios (`Scenario`: id, title, paths,
//! routes, body size), what a run is told (`Options`), and the phase lengths of `--quick` and
//! `--full` with the time a run is planned to take.

use crate::configs::{self, HaproxyRoutes, NginxRoutes, Routes};
use std::path::PathBuf;
use std::time::Duration;

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

    /// The plot color (see [`crate::plot::color`]): nginx, HAProxy and tollgate-stock keep theirs
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
    pub(crate) fn env(self) -> &'static [(&'static str, Option<&'static str>)] {
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
    /// tollgate only: the same REST route with an API key, usage plan, stage throttle and
    /// quota, and without them, closed loop, interleaved per round.
    GatewayKeys,
    /// Closed loop at several connection counts (`Options::sweep_connections`).
    Conns,
    /// Open loop at fixed rates (`Options::fixed_rates`), tollgate, nginx and HAProxy: p99 of
    /// every round and CPU per request (issue 20).
    FixedRate,
    /// tollgate only: a JSON access log to a file on and off, closed loop (issue 18).
    AccessLog,
    /// tollgate only: open loop at the first fixed rate without and with a `/metrics` scrape
    /// every second (issue 18).
    Scrape,
    /// tollgate, nginx and HAProxy terminating TLS with one certificate: keep-alive requests,
    /// full handshakes and resumed handshakes (a new connection per request) (issue 15).
    Https,
    /// tollgate only: the `gateway-keys` config without and with `[cluster]` (a local
    /// redis-server), closed loop, and open loop at the fixed rates with `[cluster]`: Redis
    /// operations per second (issue 19).
    Cluster,
    /// Two workers/threads/shards allowed on CPUs 0 and 1, shared with origin and generator.
    TwoShards,
    Idle,
    /// Idle and slow-client bursts, RSS before, held and a minute after (`memory.rs`; opt-in).
    Memory,
}

impl Scenario {
    pub fn id(self) -> &'static str {
        match self {
            Scenario::Plain0 => "plain-0",
            Scenario::Plain1k => "plain-1k",
            Scenario::Body64k => "64k",
            Scenario::Gateway => "gateway",
            Scenario::GatewayKeys => "gateway-keys",
            Scenario::FixedRate => "fixed-rate",
            Scenario::AccessLog => "access-log",
            Scenario::Scrape => "scrape",
            Scenario::Https => "https",
            Scenario::Cluster => "cluster",
            Scenario::Conns => "conns",
            Scenario::TwoShards => "2-shards",
            Scenario::Idle => "idle",
            Scenario::Memory => "memory",
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
            Scenario::GatewayKeys => {
                "Traffic control: API key, usage plan, stage throttle and quota vs none, tollgate only"
                    .into()
            }
            Scenario::FixedRate => {
                "Fixed rates: plain proxy, 1 route, 0-byte responses, open loop".into()
            }
            Scenario::AccessLog => {
                "Access log: a JSON access log to a file on vs off, tollgate only".into()
            }
            Scenario::Scrape => {
                "Metrics scrape: GET /metrics every second vs none, at a fixed rate, tollgate only"
                    .into()
            }
            Scenario::Https => {
                "HTTPS: TLS termination with one certificate, keep-alive and new connections".into()
            }
            Scenario::Cluster => {
                "Cluster: traffic control with quotas and throttles shared through Redis vs one host, tollgate only"
                    .into()
            }
            Scenario::Conns => {
                "Connection sweep: plain proxy, 1 route, 0-byte responses, closed loop".into()
            }
            Scenario::TwoShards => {
                "Two shards / workers / threads on CPUs 0 and 1, plain proxy, 0-byte responses"
                    .into()
            }
            Scenario::Idle => format!("{idle} idle keep-alive connections"),
            Scenario::Memory => format!("Connection memory: bursts of {idle} idle and slow clients"),
        }
    }

    /// Parses a comma list: plain (= plain-0 + plain-1k), plain-0, plain-1k, 64k, gateway,
    /// gateway-keys, fixed-rate, access-log, scrape, https, cluster, conns, 2-shards, idle, all,
    /// memory (opt-in, not in all).
    pub fn parse_list(s: &str) -> Result<Vec<Scenario>, String> {
        let mut v = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let add: &[Scenario] = match part.to_ascii_lowercase().as_str() {
                "plain" => &[Scenario::Plain0, Scenario::Plain1k],
                "plain-0" | "plain0" => &[Scenario::Plain0],
                "plain-1k" | "plain1k" => &[Scenario::Plain1k],
                "64k" | "large" => &[Scenario::Body64k],
                "gateway" | "routes" => &[Scenario::Gateway],
                "gateway-keys" | "keys" | "traffic" => &[Scenario::GatewayKeys],
                "fixed-rate" | "fixed" | "rates" => &[Scenario::FixedRate],
                "access-log" | "accesslog" | "log" => &[Scenario::AccessLog],
                "scrape" | "metrics" => &[Scenario::Scrape],
                "https" | "tls" => &[Scenario::Https],
                "cluster" | "redis" => &[Scenario::Cluster],
                "conns" | "connections" | "sweep" => &[Scenario::Conns],
                "2-shards" | "2shards" | "two-shards" | "shards" => &[Scenario::TwoShards],
                "idle" => &[Scenario::Idle],
                "memory" => &[Scenario::Memory],
                "all" => &ALL_SCENARIOS,
                other => {
                    return Err(format!(
                        "unknown scenario {other:?} (use plain, plain-0, plain-1k, 64k, gateway, gateway-keys, fixed-rate, access-log, scrape, https, cluster, conns, 2-shards, idle, all, memory)"
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
        // `memory` is opt-in (not in `all`): it runs last.
        v.sort_by_key(|s| {
            ALL_SCENARIOS
                .iter()
                .position(|a| a == s)
                .unwrap_or(usize::MAX)
        });
        Ok(v)
    }

    pub(crate) fn routes(self, gateway_routes: usize) -> Routes {
        match self {
            Scenario::Gateway => Routes::Gateway {
                count: gateway_routes,
            },
            _ => Routes::Single,
        }
    }

    pub(crate) fn paths(self, gateway_routes: usize) -> Vec<String> {
        match self {
            Scenario::Plain0
            | Scenario::Conns
            | Scenario::TwoShards
            | Scenario::Idle
            | Scenario::FixedRate
            | Scenario::AccessLog
            | Scenario::Scrape
            | Scenario::Https
            | Scenario::Memory => vec!["/0".into()],
            Scenario::Plain1k => vec!["/1k".into()],
            Scenario::Body64k => vec!["/64k".into()],
            Scenario::Gateway => configs::gateway_paths(gateway_routes),
            Scenario::GatewayKeys | Scenario::Cluster => vec![configs::TRAFFIC_PATH.into()],
        }
    }

    pub(crate) fn body(self) -> usize {
        match self {
            Scenario::Plain1k => crate::origin::BODY_1K,
            Scenario::Body64k => crate::origin::BODY_64K,
            _ => 0,
        }
    }
}

pub const ALL_SCENARIOS: [Scenario; 13] = [
    Scenario::Plain0,
    Scenario::Plain1k,
    Scenario::Body64k,
    Scenario::Gateway,
    Scenario::GatewayKeys,
    Scenario::FixedRate,
    Scenario::AccessLog,
    Scenario::Scrape,
    Scenario::Https,
    Scenario::Cluster,
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
    /// The open-loop rates of `fixed-rate` (req/s); `scrape` uses the first.
    pub fixed_rates: Vec<f64>,
    /// How nginx writes the gateway scenario's routes.
    pub nginx_routes: NginxRoutes,
    /// How HAProxy writes the gateway scenario's routes.
    pub haproxy_routes: HaproxyRoutes,
    pub scenarios: Vec<Scenario>,
    pub proxies: Vec<ProxyKind>,
    pub out: PathBuf,
    pub bin_dir: PathBuf,
    /// This program (it is also the origin: `tollgate-bench origin`).
    pub self_exe: PathBuf,
    pub workspace: PathBuf,
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
/// scenario with all five proxies fits in 17 and 3 minutes on a 2-CPU machine (the test
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

/// The default `--fixed-rates`: issue 20's two moderate loads.
pub const DEFAULT_FIXED_RATES: [f64; 2] = [10_000.0, 30_000.0];

/// The proxies of the comparison scenarios (`fixed-rate`, `https`): tollgate as built, nginx
/// and HAProxy, those of them selected, in `--proxies` order.
pub fn anchors(proxies: &[ProxyKind]) -> Vec<ProxyKind> {
    proxies
        .iter()
        .copied()
        .filter(|k| {
            matches!(
                k,
                ProxyKind::Tollgate | ProxyKind::Nginx | ProxyKind::Haproxy
            )
        })
        .collect()
}

/// The modes of the `https` scenario, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpsMode {
    /// Keep-alive connections, many requests each (closed loop).
    KeepAlive,
    /// A new connection and a full handshake per request (no resumption).
    Full,
    /// A new connection per request, resuming the session (tickets).
    Resumed,
}

impl HttpsMode {
    pub const ALL: [HttpsMode; 3] = [HttpsMode::KeepAlive, HttpsMode::Full, HttpsMode::Resumed];

    pub fn name(self) -> &'static str {
        match self {
            HttpsMode::KeepAlive => "keep-alive",
            HttpsMode::Full => "full handshake per request",
            HttpsMode::Resumed => "resumed handshake per request",
        }
    }

    /// tollgate-load's options for the mode (besides the https:// URL).
    pub fn load_args(self) -> &'static [&'static str] {
        match self {
            HttpsMode::KeepAlive => &["--tls"],
            HttpsMode::Full => &["--tls", "--new-conn-per-request"],
            HttpsMode::Resumed => &["--tls", "--new-conn-per-request", "--resume"],
        }
    }
}

/// The `https` scenario's warm-up (at most the phase length): longer than [`WARM_UP`], as every
/// connection's handshake must complete within it.
pub const HTTPS_WARM_UP: Duration = Duration::from_secs(1);

/// Each proxy's warm-up phase at the start of a load scenario (at most the phase length).
pub const WARM_UP: Duration = Duration::from_millis(250);

/// How long a run with `opts` takes: its phases plus the start-up and sampling overheads seen
/// on a 2-CPU machine (about 1 s per scenario for starting the proxies, 50 ms per phase, 3 s
/// per proxy in the idle-connection scenario). wrk is assumed installed.
pub fn planned_time(opts: &Options) -> Duration {
    let n = opts.proxies.len() as f64;
    let mut secs = 0.0;
    for &s in &opts.scenarios {
        secs += PER_SCENARIO + n * per_proxy_secs(opts, s);
        if s == Scenario::TwoShards {
            secs += PER_SCENARIO; // its own origin
        }
        secs += shared_secs(opts, s);
    }
    Duration::from_secs_f64(secs)
}

/// The planned overhead of each phase (sampling, reading results).
const PER_PHASE: f64 = 0.05;
/// The planned overhead of each scenario (starting the proxies).
const PER_SCENARIO: f64 = 1.0;
/// The planned time per proxy of the idle-connection scenario.
const IDLE_PER_PROXY: f64 = 3.0;

/// The planned time of scenario `s` for each proxy of the list (0 for the scenarios that do
/// not run the whole list: see [`shared_secs`]).
fn per_proxy_secs(opts: &Options, s: Scenario) -> f64 {
    let rounds = opts.rounds as f64;
    let d = opts.duration.as_secs_f64();
    let sweep = opts.sweep_duration.as_secs_f64();
    let wrk = opts.wrk_duration.as_secs_f64().round().max(1.0);
    let wrk_rounds = opts.wrk_rounds.min(opts.rounds) as f64;
    match s {
        Scenario::Idle => IDLE_PER_PROXY,
        Scenario::Memory => super::memory::PLANNED_SECS_PER_PROXY,
        // tollgate only, two configs: counted once for the proxy list.
        Scenario::GatewayKeys | Scenario::AccessLog | Scenario::Scrape | Scenario::Cluster => 0.0,
        // The anchors only: counted in shared_secs.
        Scenario::FixedRate | Scenario::Https => 0.0,
        Scenario::Conns | Scenario::TwoShards => {
            let counts = if s == Scenario::Conns {
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
    }
}

/// The planned time of the scenarios that run the anchors only or tollgate only (0 for the
/// others).
fn shared_secs(opts: &Options, s: Scenario) -> f64 {
    let rounds = opts.rounds as f64;
    let d = opts.duration.as_secs_f64();
    let anchors = anchors(&opts.proxies).len() as f64;
    let warm = opts.duration.min(WARM_UP).as_secs_f64();
    match s {
        Scenario::FixedRate => {
            let phases = rounds * opts.fixed_rates.len() as f64;
            anchors * (warm + phases * d + (1.0 + phases) * PER_PHASE)
        }
        Scenario::Https => {
            let phases = rounds * HttpsMode::ALL.len() as f64;
            let warm = opts.duration.min(HTTPS_WARM_UP).as_secs_f64();
            anchors * (warm + phases * d + (1.0 + phases) * PER_PHASE)
        }
        Scenario::Cluster => {
            // Two tollgate rows (without, with [cluster]): warm-up and a closed-loop phase
            // per round each, the cluster row an open-loop phase per rate and round.
            let open = rounds * opts.fixed_rates.len() as f64;
            2.0 * (warm + rounds * d + (1.0 + rounds) * PER_PHASE) + open * (d + PER_PHASE)
        }
        Scenario::AccessLog | Scenario::Scrape => {
            // Two tollgate rows (off / on): warm-up and a phase per round each.
            2.0 * (warm + rounds * d + (1.0 + rounds) * PER_PHASE)
        }
        Scenario::GatewayKeys => {
            // Two tollgate rows (keys, plain): warm-up and a closed-loop phase per round each.
            let phases = 1.0 + rounds;
            2.0 * (opts.duration.min(WARM_UP).as_secs_f64()
                + rounds * opts.duration.as_secs_f64()
                + phases * PER_PHASE)
        }
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

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
        assert_eq!(
            Scenario::parse_list("https,scrape,access-log,fixed-rate").expect("parses"),
            vec![
                Scenario::FixedRate,
                Scenario::AccessLog,
                Scenario::Scrape,
                Scenario::Https
            ]
        );
        for s in ALL_SCENARIOS {
            assert_eq!(Scenario::parse_list(s.id()), Ok(vec![s]), "{}", s.id());
        }
    }

    #[test]
    fn anchors_and_https_modes() {
        assert_eq!(
            anchors(&[
                ProxyKind::Haproxy,
                ProxyKind::TollgatePoll,
                ProxyKind::Tollgate,
                ProxyKind::TollgateStock,
                ProxyKind::Nginx
            ]),
            vec![ProxyKind::Haproxy, ProxyKind::Tollgate, ProxyKind::Nginx]
        );
        assert_eq!(HttpsMode::KeepAlive.load_args(), ["--tls"]);
        assert!(HttpsMode::Full
            .load_args()
            .contains(&"--new-conn-per-request"));
        assert!(!HttpsMode::Full.load_args().contains(&"--resume"));
        assert!(HttpsMode::Resumed.load_args().contains(&"--resume"));
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
            fixed_rates: DEFAULT_FIXED_RATES.to_vec(),
            nginx_routes: NginxRoutes::default(),
            haproxy_routes: HaproxyRoutes::default(),
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
        // Budgets: quick ≤ 3 min (2 min before gateway-keys, 2.5 before fixed-rate,
        // access-log, scrape and https), full ≤ 17 min (16 before cluster, 12 before
        // fixed-rate, access-log, scrape and https). The plan's overheads
        // are those of a busy machine (a quick run planned at 110 s took 97 s with the load
        // average at 3).
        let quick = planned_time(&mode_options(false)).as_secs_f64();
        let full = planned_time(&mode_options(true)).as_secs_f64();
        assert!(quick <= 180.0, "quick mode plans {quick:.0} s");
        assert!(full <= 1020.0, "full mode plans {full:.0} s");
        assert!(quick > 60.0 && full > 400.0, "{quick} {full}");
        // The new scenarios are in the plan: three rounds of 4 s per rate and anchor, per
        // HTTPS mode and anchor, and per off/on row.
        let mut only = mode_options(true);
        only.scenarios = vec![Scenario::FixedRate, Scenario::Https, Scenario::AccessLog];
        let planned = planned_time(&only).as_secs_f64();
        let phases = 3.0 * 4.0 * (3.0 * 2.0 + 3.0 * 3.0 + 2.0);
        assert!(
            planned > phases && planned < phases + 30.0,
            "{planned} vs {phases}"
        );
        // cluster: three rounds of a closed-loop phase per row and an open-loop phase per rate.
        only.scenarios = vec![Scenario::Cluster];
        let planned = planned_time(&only).as_secs_f64();
        let phases = 3.0 * 4.0 * (2.0 + 2.0);
        assert!(
            planned > phases && planned < phases + 10.0,
            "{planned} vs {phases}"
        );
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
        for k in ProxyKind::ALL {
            assert_eq!(ProxyKind::parse(k.name()), Some(k));
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
}
