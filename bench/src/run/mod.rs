//! The benchmark run: finds the tools, starts the origin and the proxies pinned as the method
//! says (tollgate three times from one binary: as built, `tollgate-poll` with
//! `TOLLGATE_SOCKET_PATH=poll`, and `tollgate-stock` with `GLOMMIO_STOCK_RINGS=1` as well),
//! drives every scenario with the proxies interleaved round by round (the classic ones with wrk and
//! an open-loop phase, `gateway-keys` tollgate only on two configs, closed loop, the connection sweep and the two-shard scenario closed loop only),
//! samples CPU and memory from `/proc`, and collects what the report shows.
//!
//! Submodules, one concern each: `scenario` (what is compared and how long: proxies,
//! scenarios, options, phase lengths), `results` (what is measured and the medians over
//! rounds), `control` (programs, ports, starting proxies and the origin, measuring one
//! phase), `drivers` (the scenarios themselves), `anchors` (`fixed-rate` and `https`:
//! tollgate against nginx and HAProxy only), `features` (`access-log` and `scrape`: tollgate
//! without and with the feature), `cluster` (the `gateway-keys` config without and with
//! `[cluster]` and a local redis-server). This file runs them in order and records the machine and
//! versions.

mod anchors;
mod cluster;
mod control;
mod drivers;
mod features;
mod memory;
mod results;
mod scenario;

pub use anchors::handshake_mismatch;
pub use cluster::{ClusterScenario, OpsPhase, CLUSTER_TARGET_RATIO, MAX_LEASE, OPS_METRIC};
pub use control::{check_answers, find_tools, one_line, Tools, INSTALL_HINT};
pub use features::{scrape_once, scrape_order, SCRAPE_LABELS, SCRAPE_ROUND_FACTOR};
pub use memory::{section as memory_section, MemoryRow};
pub use results::*;
pub use scenario::*;

use crate::procs::{self, TempDir};
use crate::sysinfo;
use control::{start_origin, Ctx, Layout, Ports};
use drivers::{run_idle, run_keys, run_load, run_sweep};
use std::time::Instant;

/// Runs the whole benchmark. `progress` gets one line per step.
pub fn run(opts: &Options, progress: &mut dyn FnMut(&str)) -> Result<Results, String> {
    let started = Instant::now();
    let tools = find_tools(&opts.bin_dir)?;
    let (proxies, skipped) = available_proxies(opts, &tools, progress);
    let mut notes = build_notes(opts);
    let m = prepare_machine(opts, &mut notes);

    let temp = TempDir::new("run").map_err(|e| format!("temp dir: {e}"))?;
    let mut ports = Ports::default();
    let (origin, origin_port) = start_origin(opts, &temp, &mut ports, &[m.client_cpu], "origin")?;
    progress(&format!(
        "origin on 127.0.0.1:{origin_port} (CPU {}); proxies on CPU {}",
        m.client_cpu, m.proxy_cpu
    ));

    let mut ctx = Ctx {
        opts,
        tools: &tools,
        temp: &temp,
        ports,
        origin,
        origin_port,
        pinned: Layout {
            proxy: vec![m.proxy_cpu],
            client: vec![m.client_cpu],
        },
        wide: Layout {
            proxy: m.wide.clone(),
            client: m.wide.clone(),
        },
        nofile: m.nofile,
        clk_tck: m.clk_tck,
        seq: 0,
    };
    let mut c = Collected::default();
    for &scen in &opts.scenarios {
        if procs::interrupted() {
            return Err("interrupted".into());
        }
        let scen_start = Instant::now();
        progress(&format!("scenario {}", scen.id()));
        run_scenario(&mut ctx, scen, &proxies, &mut c, &mut notes, progress)?;
        progress(&format!(
            "  ({} took {:.0} s; {:.0} s so far)",
            scen.id(),
            scen_start.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64()
        ));
    }
    ctx.origin.stop();

    let machine = vec![
        ("CPUs (nproc)".to_string(), m.ncpu.to_string()),
        ("CPU model".to_string(), sysinfo::cpu_model()),
        ("kernel".to_string(), sysinfo::kernel()),
    ];
    Ok(Results {
        date: sysinfo::now_utc(),
        machine,
        versions: versions(&tools, opts),
        opts: opts.clone(),
        proxy_cpu: m.proxy_cpu,
        client_cpu: m.client_cpu,
        nofile: m.nofile,
        clk_tck: m.clk_tck,
        loads: c.loads,
        sweeps: c.sweeps,
        idle: c.idle,
        memory: c.memory,
        keys: c.keys,
        fixed: c.fixed,
        pairs: c.pairs,
        https: c.https,
        cluster: c.cluster,
        skipped,
        notes,
        elapsed: started.elapsed(),
    })
}

/// The notes about how the binaries were built.
fn build_notes(opts: &Options) -> Vec<String> {
    let mut notes = Vec::new();
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
    notes
}

/// The CPUs, descriptor limit and clock of this machine as the run uses them.
struct Machine {
    ncpu: usize,
    proxy_cpu: usize,
    client_cpu: usize,
    /// The CPUs of the two-shard scenario.
    wide: Vec<usize>,
    nofile: u64,
    clk_tck: f64,
}

/// Chooses the CPUs, raises the open-files limit and pins this process to the client CPU;
/// what falls short of the method goes to `notes`.
fn prepare_machine(opts: &Options, notes: &mut Vec<String>) -> Machine {
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
    Machine {
        ncpu,
        proxy_cpu,
        client_cpu,
        wide,
        nofile,
        clk_tck,
    }
}

/// What the scenarios measured so far.
#[derive(Default)]
struct Collected {
    loads: Vec<LoadScenario>,
    sweeps: Vec<SweepScenario>,
    idle: Option<Vec<IdleRow>>,
    keys: Option<KeysScenario>,
    fixed: Option<FixedRateScenario>,
    pairs: Vec<PairScenario>,
    https: Option<HttpsScenario>,
    memory: Option<Vec<MemoryRow>>,
    cluster: Option<ClusterScenario>,
}

/// Runs scenario `scen` and keeps its result in `c`.
fn run_scenario(
    ctx: &mut Ctx<'_>,
    scen: Scenario,
    proxies: &[ProxyKind],
    c: &mut Collected,
    notes: &mut Vec<String>,
    progress: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let tollgate_only = matches!(
        scen,
        Scenario::GatewayKeys | Scenario::AccessLog | Scenario::Scrape | Scenario::Cluster
    );
    if tollgate_only && !proxies.contains(&ProxyKind::Tollgate) {
        progress("  skipped: tollgate is not among --proxies");
        notes.push(format!(
            "The {} scenario runs tollgate only: tollgate was not among --proxies.",
            scen.id()
        ));
        return Ok(());
    }
    match scen {
        Scenario::GatewayKeys => c.keys = Some(run_keys(ctx, progress)?),
        Scenario::AccessLog => c.pairs.push(features::run_access_log(ctx, progress)?),
        Scenario::Scrape => c.pairs.push(features::run_scrape(ctx, progress)?),
        Scenario::Cluster => c.cluster = Some(cluster::run_cluster(ctx, progress)?),
        Scenario::FixedRate => c.fixed = Some(anchors::run_fixed(ctx, proxies, progress)?),
        Scenario::Https => c.https = Some(anchors::run_https(ctx, proxies, progress)?),
        Scenario::Memory => c.memory = Some(memory::run_memory(ctx, proxies, progress)?),
        Scenario::Idle => c.idle = Some(run_idle(ctx, proxies, progress)?),
        _ if scen.is_sweep() => c.sweeps.push(run_sweep(ctx, scen, proxies, progress)?),
        _ => c.loads.push(run_load(ctx, scen, proxies, progress)?),
    }
    Ok(())
}

/// The selected proxies whose programs are installed, and a line for each proxy (and wrk)
/// left out.
fn available_proxies(
    opts: &Options,
    tools: &Tools,
    progress: &mut dyn FnMut(&str),
) -> (Vec<ProxyKind>, Vec<String>) {
    let mut skipped = Vec::new();
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
    (proxies, skipped)
}

/// The version of every program used (tollgate with the workspace's git revision).
fn versions(tools: &Tools, opts: &Options) -> Vec<(String, String)> {
    let mut versions = vec![
        (
            "tollgate".to_string(),
            format!(
                "{} (git {})",
                sysinfo::first_line(&tools.tollgate, &["--version"]).unwrap_or_else(|| "?".into()),
                sysinfo::git_rev(&opts.workspace)
            ),
        ),
        (
            "tollgate-load".to_string(),
            sysinfo::first_line(&tools.load, &["--version"]).unwrap_or_else(|| "?".into()),
        ),
    ];
    for (name, p, arg) in [
        ("nginx", &tools.nginx, "-v"),
        ("HAProxy", &tools.haproxy, "-v"),
        ("wrk", &tools.wrk, "-v"),
    ] {
        let v = match p {
            Some(p) => sysinfo::first_line(p, &[arg]).unwrap_or_else(|| "?".into()),
            None => "not installed".into(),
        };
        versions.push((name.to_string(), v));
    }
    versions
}
