//! The `tollgate-bench` command: `--quick` (1 round of 2 s per phase, about 2 minutes) or
//! `--full` (3 rounds of 5 s, under 10 minutes); writes RESULTS.md and SVG plots. The hidden
//! `origin` subcommand is the benchmark origin the harness starts.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tollgate_bench::run::{self, Options, ProxyKind, Scenario};
use tollgate_bench::{origin, procs, report};

#[derive(Parser)]
#[command(
    name = "tollgate-bench",
    version,
    about = "Side-by-side benchmark of tollgate, nginx and HAProxy on this machine; writes bench/RESULTS.md",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// 1 round of 2 s per load phase (the default)
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// 3 rounds of 5 s per load phase (run only on a quiet machine)
    #[arg(long)]
    full: bool,
    /// Override the length of each load phase, in milliseconds
    #[arg(long, value_name = "MS")]
    duration_ms: Option<u64>,
    /// Override the number of rounds
    #[arg(long)]
    rounds: Option<usize>,
    /// Scenarios, comma separated: plain (= plain-0,plain-1k), 64k, gateway, idle, all
    #[arg(long, default_value = "all")]
    scenarios: String,
    /// Proxies to compare, comma separated
    #[arg(long, default_value = "tollgate,nginx,haproxy")]
    proxies: String,
    /// Where RESULTS.md and the SVGs go (default: the bench/ directory of the source tree)
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Where the tollgate and tollgate-load binaries are (default: target/release)
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Load-generator connections
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Connections in the idle-connection scenario
    #[arg(long, default_value_t = 10_000)]
    idle_connections: usize,
    /// Routes in the gateway scenario
    #[arg(long, default_value_t = 1000)]
    gateway_routes: usize,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Cmd::Origin { port, max_secs }) = cli.command {
        return match origin::serve(port, max_secs) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tollgate-bench origin: {e}");
                ExitCode::FAILURE
            }
        };
    }
    procs::install_handlers();
    let full = cli.full;
    let (mode, secs_ms, rounds) = if full {
        ("full", 5000, 3)
    } else {
        ("quick", 2000, 1)
    };
    let custom = cli.duration_ms.is_some() || cli.rounds.is_some();
    let scenarios = match Scenario::parse_list(&cli.scenarios) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tollgate-bench: --scenarios: {e}");
            return ExitCode::from(2);
        }
    };
    let mut proxies = Vec::new();
    for p in cli.proxies.split(',').filter(|p| !p.trim().is_empty()) {
        match ProxyKind::parse(p) {
            Some(k) if !proxies.contains(&k) => proxies.push(k),
            Some(_) => {}
            None => {
                eprintln!(
                    "tollgate-bench: --proxies: unknown proxy {p:?} (tollgate, nginx, haproxy)"
                );
                return ExitCode::from(2);
            }
        }
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("tollgate-bench: cannot find my own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rounds = cli.rounds.unwrap_or(rounds).max(1);
    // Children run in their own directories: every path they get must be absolute.
    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let opts = Options {
        mode: if custom {
            format!("{mode} (custom)")
        } else {
            mode.to_string()
        },
        duration: Duration::from_millis(cli.duration_ms.unwrap_or(secs_ms).max(100)),
        rounds,
        wrk_rounds: 1,
        connections: cli.connections.max(1),
        idle_connections: cli.idle_connections.max(1),
        gateway_routes: cli.gateway_routes.max(1),
        scenarios,
        proxies,
        out: absolute(cli.out.unwrap_or_else(|| manifest.clone())),
        bin_dir: absolute(cli.bin_dir.unwrap_or_else(|| default_bin_dir(&exe))),
        self_exe: exe,
        workspace: manifest.parent().map(PathBuf::from).unwrap_or(manifest),
    };
    eprintln!(
        "tollgate-bench: {} mode, {} round(s) of {:.1} s, scenarios {}",
        opts.mode,
        opts.rounds,
        opts.duration.as_secs_f64(),
        opts.scenarios
            .iter()
            .map(|s| s.id())
            .collect::<Vec<_>>()
            .join(",")
    );
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
            "tollgate-bench: wrote {} ({:.0} s)",
            opts.out.join("RESULTS.md").display(),
            res.elapsed.as_secs_f64()
        ),
        Err(e) => {
            eprintln!("tollgate-bench: cannot write {}: {e}", opts.out.display());
            return ExitCode::FAILURE;
        }
    }
    let tollgate_measured = res
        .loads
        .iter()
        .flat_map(|s| &s.rows)
        .any(|r| r.proxy == ProxyKind::Tollgate && r.ok())
        || res
            .idle
            .iter()
            .flatten()
            .any(|r| r.proxy == ProxyKind::Tollgate && r.failure.is_none());
    if opts.proxies.contains(&ProxyKind::Tollgate) && !tollgate_measured {
        eprintln!("tollgate-bench: tollgate could not be measured (see RESULTS.md notes)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
