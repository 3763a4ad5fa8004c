//! The benchmark run: finds the tools, starts the origin and the proxies pinned as the method
//! says, drives every scenario with the proxies interleaved round by round, samples CPU and
//! memory from `/proc`, and collects what the report shows.

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
    Tollgate,
    Nginx,
    Haproxy,
}

impl ProxyKind {
    pub const ALL: [ProxyKind; 3] = [ProxyKind::Tollgate, ProxyKind::Nginx, ProxyKind::Haproxy];

    pub fn name(self) -> &'static str {
        match self {
            ProxyKind::Tollgate => "tollgate",
            ProxyKind::Nginx => "nginx",
            ProxyKind::Haproxy => "HAProxy",
        }
    }

    /// Position in report order (also the plot color).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn parse(s: &str) -> Option<ProxyKind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tollgate" => Some(ProxyKind::Tollgate),
            "nginx" => Some(ProxyKind::Nginx),
            "haproxy" => Some(ProxyKind::Haproxy),
            _ => None,
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
    Idle,
}

impl Scenario {
    pub fn id(self) -> &'static str {
        match self {
            Scenario::Plain0 => "plain-0",
            Scenario::Plain1k => "plain-1k",
            Scenario::Body64k => "64k",
            Scenario::Gateway => "gateway",
            Scenario::Idle => "idle",
        }
    }

    pub fn title(self, gateway_routes: usize, idle: usize) -> String {
        match self {
            Scenario::Plain0 => "Plain proxy, 1 route, 0-byte responses".into(),
            Scenario::Plain1k => "Plain proxy, 1 route, 1 KiB responses".into(),
            Scenario::Body64k => "Plain proxy, 1 route, 64 KiB responses".into(),
            Scenario::Gateway => format!(
                "Gateway routing: a route with a path parameter among {gateway_routes} routes, 0-byte responses"
            ),
            Scenario::Idle => format!("{idle} idle keep-alive connections"),
        }
    }

    /// Parses a comma list: plain (= plain-0 + plain-1k), plain-0, plain-1k, 64k, gateway,
    /// idle, all.
    pub fn parse_list(s: &str) -> Result<Vec<Scenario>, String> {
        let mut v = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let add: &[Scenario] = match part.to_ascii_lowercase().as_str() {
                "plain" => &[Scenario::Plain0, Scenario::Plain1k],
                "plain-0" | "plain0" => &[Scenario::Plain0],
                "plain-1k" | "plain1k" => &[Scenario::Plain1k],
                "64k" | "large" => &[Scenario::Body64k],
                "gateway" | "routes" => &[Scenario::Gateway],
                "idle" => &[Scenario::Idle],
                "all" => &ALL_SCENARIOS,
                other => {
                    return Err(format!(
                        "unknown scenario {other:?} (use plain, plain-0, plain-1k, 64k, gateway, idle, all)"
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
            Scenario::Plain0 | Scenario::Idle => vec!["/0".into()],
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

pub const ALL_SCENARIOS: [Scenario; 5] = [
    Scenario::Plain0,
    Scenario::Plain1k,
    Scenario::Body64k,
    Scenario::Gateway,
    Scenario::Idle,
];

/// Everything a run is told.
#[derive(Clone, Debug)]
pub struct Options {
    /// "quick", "full" or "custom".
    pub mode: String,
    pub duration: Duration,
    pub rounds: usize,
    /// Rounds that also run wrk (the first ones).
    pub wrk_rounds: usize,
    pub connections: usize,
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
    /// Share of CPU 0 the proxy used (1.0 = one full CPU).
    pub proxy_busy: f64,
    /// Share of the client CPU used by the origin and the load generator together.
    pub client_busy: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub bad: u64,
    /// Share of the proxy's CPU taken by other processes meanwhile (from `/proc/stat`).
    pub others_proxy_cpu: f64,
    /// Share of the client CPU taken by processes other than origin and load generator.
    pub others_client_cpu: f64,
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

/// Everything the scenario functions share.
struct Ctx<'a> {
    opts: &'a Options,
    tools: &'a Tools,
    temp: &'a TempDir,
    ports: Ports,
    origin: Child,
    origin_port: u16,
    proxy_cpu: usize,
    client_cpu: usize,
    nofile: u64,
    clk_tck: f64,
    seq: usize,
}

impl Ctx<'_> {
    fn next_tag(&mut self, what: &str) -> String {
        self.seq += 1;
        format!("{:04}-{what}", self.seq)
    }

    fn start_proxy(
        &mut self,
        kind: ProxyKind,
        routes: Routes,
        scen: &str,
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
            ProxyKind::Tollgate => {
                let cfg = write(
                    "tollgate.toml",
                    configs::tollgate(routes, port, self.origin_port),
                )?;
                (
                    self.tools.tollgate.clone(),
                    vec![
                        "--config".into(),
                        cfg.display().to_string(),
                        "--shards".into(),
                        "1".into(),
                    ],
                )
            }
            ProxyKind::Nginx => {
                let program = self.tools.nginx.clone().ok_or("nginx is not installed")?;
                let cfg = write(
                    "nginx.conf",
                    configs::nginx(routes, port, self.origin_port, &dir, self.nofile),
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
                    configs::haproxy(routes, port, self.origin_port, self.nofile),
                )?;
                (
                    program,
                    vec!["-f".into(), cfg.display().to_string(), "-db".into()],
                )
            }
        };
        let mut child = procs::spawn(
            kind.name(),
            &program,
            &args,
            &[self.proxy_cpu],
            &dir.join("output.log"),
            Some(&dir),
        )
        .map_err(|e| e.to_string())?;
        wait_ready(&mut child, port)?;
        Ok(Proxy { kind, port, child })
    }

    /// Runs one tollgate-load phase against `p`, with CPU sampled around it.
    fn phase(
        &mut self,
        p: &mut Proxy,
        scen: Scenario,
        scenario_file: Option<&Path>,
        rate: Option<f64>,
        duration: Duration,
        hgrm: Option<&Path>,
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
            scenario: scenario_file,
            connections: self.opts.connections,
            duration,
            rate,
            hgrm,
            cpus: &[self.client_cpu],
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
        let proxy_s = ticks(&p0, &p1) / self.clk_tck;
        let origin_s = ticks(&o0, &o1) / self.clk_tck;
        // What the rest of the machine did on the two CPUs meanwhile (same window).
        let others = |cpu: usize, ours_ticks: f64| match (c0.get(cpu), c1.get(cpu)) {
            (Some(a), Some(b)) if b.1 > a.1 => {
                let busy = b.0.saturating_sub(a.0) as f64;
                ((busy - ours_ticks) / (b.1 - a.1) as f64).clamp(0.0, 1.0)
            }
            _ => 0.0,
        };
        let client_ticks = ticks(&o0, &o1) + ran.client_cpu.as_secs_f64() * self.clk_tck;
        let (others_proxy_cpu, others_client_cpu) = if self.proxy_cpu == self.client_cpu {
            let o = others(self.proxy_cpu, ticks(&p0, &p1) + client_ticks);
            (o, o)
        } else {
            (
                others(self.proxy_cpu, ticks(&p0, &p1)),
                others(self.client_cpu, client_ticks),
            )
        };
        let phase = Phase {
            requests: r.requests,
            rps: r.rps,
            cpu_us_per_req: if r.requests > 0 {
                proxy_s * 1e6 / r.requests as f64
            } else {
                f64::NAN
            },
            proxy_busy: proxy_s / secs,
            client_busy: (origin_s + ran.client_cpu.as_secs_f64()) / secs,
            p50_us: r.p50_us as f64,
            p99_us: r.p99_us as f64,
            p999_us: r.p999_us as f64,
            bad: r.bad(),
            others_proxy_cpu,
            others_client_cpu,
        };
        Ok((phase, ran.result))
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
            ProxyKind::Tollgate => true,
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

    let temp = TempDir::new("run").map_err(|e| format!("temp dir: {e}"))?;
    let mut ports = Ports::default();
    let origin_port = ports.free()?;
    // The origin stops by itself well after the longest possible run.
    let budget = 600
        + opts.scenarios.len() as u64 * opts.rounds as u64 * 3 * 3 * (opts.duration.as_secs() + 20);
    let mut origin = procs::spawn(
        "origin",
        &opts.self_exe,
        &[
            "origin".into(),
            "--port".into(),
            origin_port.to_string(),
            "--max-secs".into(),
            budget.to_string(),
        ],
        &[client_cpu],
        &temp.join("origin.log"),
        None,
    )
    .map_err(|e| e.to_string())?;
    wait_ready(&mut origin, origin_port)?;
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
        proxy_cpu,
        client_cpu,
        nofile,
        clk_tck,
        seq: 0,
    };
    let mut loads = Vec::new();
    let mut idle_rows = None;
    for &scen in &opts.scenarios {
        if procs::interrupted() {
            return Err("interrupted".into());
        }
        progress(&format!("scenario {}", scen.id()));
        if scen == Scenario::Idle {
            idle_rows = Some(run_idle(&mut ctx, &proxies, progress)?);
        } else {
            loads.push(run_load(&mut ctx, scen, &proxies, progress)?);
        }
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
        idle: idle_rows,
        skipped,
        notes,
        elapsed: started.elapsed(),
    })
}

/// Starts every proxy for a scenario; failures become rows with a reason.
fn start_all(
    ctx: &mut Ctx<'_>,
    scen: Scenario,
    proxies: &[ProxyKind],
    progress: &mut dyn FnMut(&str),
) -> Vec<(ProxyKind, Result<Proxy, String>)> {
    let routes = scen.routes(ctx.opts.gateway_routes);
    proxies
        .iter()
        .map(|&k| {
            let r = ctx.start_proxy(k, routes, scen.id());
            if let Err(e) = &r {
                progress(&format!("  {}: {e}", k.name()));
            }
            (k, r)
        })
        .collect()
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
    let started = start_all(ctx, scen, proxies, progress);
    let mut rows: Vec<LoadRow> = Vec::new();
    let mut running: Vec<Option<Proxy>> = Vec::new();
    for (k, r) in started {
        let mut row = LoadRow::new(k);
        match r {
            Ok(p) => running.push(Some(p)),
            Err(e) => {
                row.failure = Some(format!("did not start: {e}"));
                running.push(None);
            }
        }
        rows.push(row);
    }

    // Warm-up: opens the upstream connections and checks that every proxy answers right.
    let warm = opts.duration.min(Duration::from_millis(500));
    for i in 0..rows.len() {
        let Some(p) = running[i].as_mut() else {
            continue;
        };
        match ctx.phase(p, scen, scenario_file.as_deref(), None, warm, None) {
            Ok((_, r)) => {
                if let Some(why) = check_answers(&r, scen.body()) {
                    rows[i].failure = Some(format!("answered wrongly during warm-up: {why}"));
                }
            }
            Err(e) => rows[i].failure = Some(format!("warm-up failed: {e}")),
        }
        if let Some(f) = &rows[i].failure {
            progress(&format!("  {}: {f}", rows[i].proxy.name()));
            running[i] = None;
        }
    }

    // Closed loop (max throughput) and wrk, proxies interleaved round by round.
    for round in 0..opts.rounds {
        for i in 0..rows.len() {
            if running[i].is_none() {
                continue;
            }
            // The proxies not under test must stay idle: their CPU is watched meanwhile.
            let idle_before = sample_all(&running);
            let phase_start = Instant::now();
            let Some(p) = running[i].as_mut() else {
                continue;
            };
            let result = ctx.phase(p, scen, scenario_file.as_deref(), None, opts.duration, None);
            let secs = phase_start.elapsed().as_secs_f64().max(1e-6);
            for (j, after) in sample_all(&running).into_iter().enumerate() {
                if let (true, Some(a), Some(b)) = (j != i, idle_before[j], after) {
                    let busy = b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / ctx.clk_tck / secs;
                    if busy > 0.05 {
                        notes.push(format!(
                            "{} used {:.0}% of a CPU while idle during {}'s closed-loop phase (round {}): that CPU time was taken from the proxy under test.",
                            rows[j].proxy.name(),
                            busy * 100.0,
                            rows[i].proxy.name(),
                            round + 1
                        ));
                    }
                }
            }
            match result {
                Ok((ph, r)) => {
                    progress(&format!(
                        "  round {} {:<8} closed loop {:>9.0} req/s  {:>6.2} µs CPU/req  proxy CPU {:>3.0}%  client CPU {:>3.0}%{}",
                        round + 1,
                        rows[i].proxy.name(),
                        ph.rps,
                        ph.cpu_us_per_req,
                        ph.proxy_busy * 100.0,
                        ph.client_busy * 100.0,
                        contention(&ph)
                    ));
                    if !r.codes.is_empty() {
                        rows[i].codes.push(r.codes.clone());
                    }
                    rows[i].closed.push(ph);
                }
                Err(e) => fail(
                    &mut rows[i],
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
                        duration: opts.duration,
                        rate: None,
                        hgrm: None,
                        cpus: &[ctx.client_cpu],
                        work: &ctx.temp.path,
                        tag: &tag,
                    };
                    match load::run_wrk(wrk, &spec, lua.as_deref()) {
                        Ok(ran) => {
                            progress(&format!(
                                "  round {} {:<8} wrk         {:>9.0} req/s",
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
                match ctx.phase(
                    p,
                    scen,
                    scenario_file.as_deref(),
                    Some(rate),
                    opts.duration,
                    Some(&hgrm),
                ) {
                    Ok((ph, r)) => {
                        progress(&format!(
                            "  round {} {:<8} open loop   p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  {:>6.2} µs CPU/req{}",
                            round + 1,
                            rows[i].proxy.name(),
                            ph.p50_us / 1000.0,
                            ph.p99_us / 1000.0,
                            ph.p999_us / 1000.0,
                            ph.cpu_us_per_req,
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
                        &mut rows[i],
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

fn fail(row: &mut LoadRow, p: &mut Option<Proxy>, why: String, progress: &mut dyn FnMut(&str)) {
    progress(&format!("  {}: {why}", row.proxy.name()));
    row.failure = Some(why);
    *p = None;
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
        match ctx.start_proxy(k, Routes::Single, "idle") {
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
