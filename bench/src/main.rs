//! The `tollgate-bench` command: `--quick` (1 round; 1 s load and wrk phases, 0.8 s for the
//! connection sweep and the two-shard scenario; under 3 minutes) or `--full` (3 rounds; 4 s
//! load phases, 2 s for wrk, the sweep and two-shard phases; under 17 minutes), with the
//! proxies of `--proxies` (default tollgate, tollgate-poll, tollgate-stock, nginx, HAProxy);
//! writes RESULTS.md and SVG plots.
//! The hidden `origin` subcommand is the benchmark origin the harness starts; the hidden
//! `functions` subcommand is the Lambda function server of `bench/lambda-cost.sh`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tollgate_bench::configs::{HaproxyRoutes, NginxRoutes};
use tollgate_bench::run::{self, Options, ProxyKind, Scenario};
use tollgate_bench::{functions, origin, procs, report};

#[derive(Parser)]
#[command(
    name = "tollgate-bench",
    version,
    about = "Side-by-side benchmark of tollgate, nginx and HAProxy on this machine; writes bench/RESULTS.md",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// 1 round, 1 s per load and wrk phase, 0.8 s per sweep phase (the default; < 3 min)
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// 3 rounds, 4 s per load phase, 2 s per wrk and sweep phase (quiet machine; < 17 min)
    #[arg(long)]
    full: bool,
    /// Override the length of each load and wrk phase, in milliseconds (sweep phases: half)
    #[arg(long, value_name = "MS")]
    duration_ms: Option<u64>,
    /// Override the number of rounds
    #[arg(long)]
    rounds: Option<usize>,
    /// Scenarios, comma separated: plain (= plain-0,plain-1k), 64k, gateway, gateway-keys
    /// (tollgate only: with and without API key, usage plan, throttles, quota), fixed-rate
    /// (open loop at --fixed-rates; tollgate, nginx, HAProxy), access-log (tollgate only: JSON
    /// access log on vs off), scrape (tollgate only: /metrics every second vs none, at the
    /// first fixed rate), https (tollgate, nginx, HAProxy terminating TLS: keep-alive, full and
    /// resumed handshakes), cluster (tollgate only: the gateway-keys config without and with
    /// [cluster] and a local redis-server; Redis operations per second at --fixed-rates),
    /// conns, 2-shards, idle, all; memory (opt-in: idle and slow-client bursts, RSS a minute
    /// after)
    #[arg(long, default_value = "all")]
    scenarios: String,
    /// Proxies to compare, comma separated, run in this order (tollgate-poll: tollgate with
    /// TOLLGATE_SOCKET_PATH=poll; tollgate-stock: with GLOMMIO_STOCK_RINGS=1 as well)
    #[arg(long, default_value = run::DEFAULT_PROXIES)]
    proxies: String,
    /// Where RESULTS.md and the SVGs go (default: the bench/ directory of the source tree)
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Where the tollgate and tollgate-load binaries are (default: target/release)
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Load-generator connections (also of the 2-shards scenario)
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Connection counts of the conns sweep, comma separated
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "16,64,256",
        value_name = "N,N,..."
    )]
    sweep_connections: Vec<usize>,
    /// Connections in the idle-connection scenario
    #[arg(long, default_value_t = 10_000)]
    idle_connections: usize,
    /// Routes in the gateway scenario
    #[arg(long, default_value_t = 1000)]
    gateway_routes: usize,
    /// nginx's gateway routes: prefix (`location /svc{i}/items/`, the fastest), map (one regex
    /// location and a `map` of the services) or regex (a regex location per route)
    #[arg(long, default_value = "prefix", value_name = "STYLE")]
    nginx_routes: String,
    /// HAProxy's gateway routes: map (`map_beg` over a map file) or regex (a `path_reg` ACL
    /// per route)
    #[arg(long, default_value = "map", value_name = "STYLE")]
    haproxy_routes: String,
    /// Open-loop rates of the fixed-rate scenario, req/s, comma separated (scrape uses the
    /// first, cluster all)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10000,30000",
        value_name = "R,R,..."
    )]
    fixed_rates: Vec<f64>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// The benchmark origin (started by the harness itself)
    #[command(hide = true)]
    Origin {
        #[arg(long)]
        port: u16,
        /// Stop after this many seconds
        #[arg(long, default_value_t = 1200)]
        max_secs: u64,
    },
    /// The Lambda function server of bench/lambda-cost.sh (Invoke API, fixed answers)
    #[command(hide = true)]
    Functions {
        #[arg(long)]
        port: u16,
        /// Stop after this many seconds
        #[arg(long, default_value_t = 1200)]
        max_secs: u64,
        /// Write the call counts to this file
        #[arg(long, value_name = "FILE")]
        stats: Option<PathBuf>,
    },
}

/// target/release next to this program's own target directory.
fn default_bin_dir(exe: &std::path::Path) -> PathBuf {
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    let dir = if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().map(PathBuf::from).unwrap_or(dir)
    } else {
        dir
    };
    match dir.parent() {
        Some(target) => target.join("release"),
        None => PathBuf::from("target/release"),
    }
}

/// Runs a hidden subcommand (`origin`, `functions`) to its end.
fn run_subcommand(cmd: Cmd) -> ExitCode {
    let (name, result) = match cmd {
        Cmd::Origin { port, max_secs } => ("origin", origin::serve(port, max_secs)),
        Cmd::Functions {
            port,
            max_secs,
            stats,
        } => ("functions", functions::serve(port, max_secs, stats)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate-bench {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(cmd) = cli.command.take() {
        return run_subcommand(cmd);
    }
    procs::install_handlers();
    let program_start = std::time::Instant::now();
    let opts = match options(cli) {
        Ok(o) => o,
        Err(code) => return code,
    };
    announce(&opts);
    let result = run::run(&opts, &mut |line| eprintln!("tollgate-bench: {line}"));
    let res = match result {
        Ok(r) => r,
        Err(e) => {
            procs::kill_all();
            if procs::interrupted() {
                eprintln!("tollgate-bench: interrupted; every child stopped, temp files removed");
                return ExitCode::from(130);
            }
            eprintln!("tollgate-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match report::write(&res, &opts.out) {
        Ok(_) => eprintln!(
            "tollgate-bench: wrote {} (measuring {:.0} s; total time {:.0} s)",
            opts.out.join("RESULTS.md").display(),
            res.elapsed.as_secs_f64(),
            program_start.elapsed().as_secs_f64()
        ),
        Err(e) => {
            eprintln!("tollgate-bench: cannot write {}: {e}", opts.out.display());
            return ExitCode::FAILURE;
        }
    }
    verdict(&opts, &res)
}

/// The run's options from the command line; a bad value is reported on stderr and yields the
/// exit code (2 for a usage error).
fn options(cli: Cli) -> Result<Options, ExitCode> {
    let full = cli.full;
    let mode = if full { "full" } else { "quick" };
    let times = run::mode_times(full);
    let custom = cli.duration_ms.is_some() || cli.rounds.is_some();
    let scenarios = match Scenario::parse_list(&cli.scenarios) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tollgate-bench: --scenarios: {e}");
            return Err(ExitCode::from(2));
        }
    };
    let proxies = parse_proxies(&cli.proxies)?;
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("tollgate-bench: cannot find my own executable: {e}");
            return Err(ExitCode::FAILURE);
        }
    };
    let rounds = cli.rounds.unwrap_or(times.rounds).max(1);
    let sweep_connections = parse_sweep(&cli.sweep_connections)?;
    let Some(nginx_routes) = NginxRoutes::parse(&cli.nginx_routes) else {
        eprintln!("tollgate-bench: --nginx-routes: use prefix, map or regex");
        return Err(ExitCode::from(2));
    };
    let Some(haproxy_routes) = HaproxyRoutes::parse(&cli.haproxy_routes) else {
        eprintln!("tollgate-bench: --haproxy-routes: use map or regex");
        return Err(ExitCode::from(2));
    };
    if cli.fixed_rates.is_empty()
        || cli
            .fixed_rates
            .iter()
            .any(|r| !(r.is_finite() && *r >= 1.0))
    {
        eprintln!("tollgate-bench: --fixed-rates: rates must be at least 1 req/s");
        return Err(ExitCode::from(2));
    }
    let (duration, wrk_duration, sweep_duration) = match cli.duration_ms {
        Some(d) => {
            let ms = |v: u64| Duration::from_millis(v.max(100));
            (ms(d), ms(d), ms(d / 2))
        }
        None => (times.duration, times.wrk, times.sweep),
    };
    // Children run in their own directories: every path they get must be absolute.
    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(Options {
        mode: if custom {
            format!("{mode} (custom)")
        } else {
            mode.to_string()
        },
        duration,
        wrk_duration,
        sweep_duration,
        rounds,
        wrk_rounds: 1,
        connections: cli.connections.max(1),
        sweep_connections,
        idle_connections: cli.idle_connections.max(1),
        gateway_routes: cli.gateway_routes.max(1),
        fixed_rates: cli.fixed_rates.clone(),
        nginx_routes,
        haproxy_routes,
        scenarios,
        proxies,
        out: absolute(cli.out.unwrap_or_else(|| manifest.clone())),
        bin_dir: absolute(cli.bin_dir.unwrap_or_else(|| default_bin_dir(&exe))),
        self_exe: exe,
        workspace: manifest.parent().map(PathBuf::from).unwrap_or(manifest),
    })
}

/// `--proxies`: the named proxies in order, each once.
fn parse_proxies(list: &str) -> Result<Vec<ProxyKind>, ExitCode> {
    let mut proxies = Vec::new();
    for p in list.split(',').filter(|p| !p.trim().is_empty()) {
        match ProxyKind::parse(p) {
            Some(k) if !proxies.contains(&k) => proxies.push(k),
            Some(_) => {}
            None => {
                eprintln!(
                    "tollgate-bench: --proxies: unknown proxy {p:?} (one of {})",
                    run::DEFAULT_PROXIES.replace(',', ", ")
                );
                return Err(ExitCode::from(2));
            }
        }
    }
    Ok(proxies)
}

/// `--sweep-connections`: the counts in order, each once, none zero, at least one.
fn parse_sweep(counts: &[usize]) -> Result<Vec<usize>, ExitCode> {
    let mut sweep_connections: Vec<usize> = Vec::new();
    for &c in counts {
        if c == 0 {
            eprintln!("tollgate-bench: --sweep-connections: counts must be at least 1");
            return Err(ExitCode::from(2));
        }
        if !sweep_connections.contains(&c) {
            sweep_connections.push(c);
        }
    }
    if sweep_connections.is_empty() {
        eprintln!("tollgate-bench: --sweep-connections: no count given");
        return Err(ExitCode::from(2));
    }
    Ok(sweep_connections)
}

/// Tells on stderr what the run will do and about how long it will take.
fn announce(opts: &Options) {
    eprintln!(
        "tollgate-bench: {} mode, {} round(s) of {:.1} s (wrk {:.1} s, sweep {:.1} s), proxies {}, scenarios {}",
        opts.mode,
        opts.rounds,
        opts.duration.as_secs_f64(),
        opts.wrk_duration.as_secs_f64(),
        opts.sweep_duration.as_secs_f64(),
        opts.proxies
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(","),
        opts.scenarios
            .iter()
            .map(|s| s.id())
            .collect::<Vec<_>>()
            .join(",")
    );
    eprintln!(
        "tollgate-bench: planned run time about {:.0} s",
        run::planned_time(opts).as_secs_f64()
    );
}

/// The exit code of a finished run: failure when tollgate was asked for and nothing of it was
/// measured, or when a gateway-keys row failed.
fn verdict(opts: &Options, res: &run::Results) -> ExitCode {
    if opts.proxies.contains(&ProxyKind::Tollgate) && !tollgate_measured(res) {
        eprintln!("tollgate-bench: tollgate could not be measured (see RESULTS.md notes)");
        return ExitCode::FAILURE;
    }
    // gateway-keys refuses nothing by construction: a failed row (a non-2xx answer) fails the run.
    if let Some(k) = &res.keys {
        for (label, row) in [("keys", &k.keys), ("plain", &k.plain)] {
            if let Some(why) = &row.failure {
                eprintln!("tollgate-bench: gateway-keys, tollgate ({label}) failed: {why}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// Whether at least one tollgate row of any scenario succeeded.
fn tollgate_measured(res: &run::Results) -> bool {
    res.loads
        .iter()
        .flat_map(|s| &s.rows)
        .any(|r| r.proxy == ProxyKind::Tollgate && r.ok())
        || res
            .sweeps
            .iter()
            .flat_map(|s| &s.rows)
            .any(|r| r.proxy == ProxyKind::Tollgate && r.ok())
        || res
            .idle
            .iter()
            .flatten()
            .any(|r| r.proxy == ProxyKind::Tollgate && r.failure.is_none())
        || res
            .memory
            .iter()
            .flatten()
            .any(|r| r.proxy == ProxyKind::Tollgate && r.failure.is_none())
        || res.keys.iter().any(|k| k.keys.ok() || k.plain.ok())
        || res
            .fixed
            .iter()
            .flat_map(|s| &s.rows)
            .chain(res.https.iter().flat_map(|s| &s.rows))
            .any(|r| r.proxy == ProxyKind::Tollgate && r.ok())
        || res.pairs.iter().any(|p| p.base.ok() || p.with.ok())
        || res.cluster.iter().any(|c| c.base.ok() || c.with.ok())
}
