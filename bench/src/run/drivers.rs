//! The scenario drivers: each starts every proxy for its scenario, warms them up, runs the
//! phases with the proxies interleaved round by round (load scenarios: closed loop, wrk, then
//! open loop at a rate set from the closed-loop medians; `conns` and `2-shards`: closed loop
//! per connection count; `idle`: held connections and RSS), and fills the scenario's rows.

use crate::configs::{self, Routes};
use crate::idle;
use crate::load::{self, LoadResult, LoadSpec};
use crate::plot::{self, Point};
use crate::procs;
use crate::run::control::{start_origin, Ctx, PhaseSpec, Proxy};
use crate::run::results::Row;
use crate::run::{
    cpu_list, median_of, IdleRow, KeysScenario, LoadRow, LoadScenario, Phase, ProxyKind, Scenario,
    SweepRow, SweepScenario, OTHERS_NOTICEABLE, WARM_UP,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Starts every proxy for a scenario: a row per proxy (made by `row` from the proxy and, if it
/// did not start, why), and the running proxies in the same order (`None` where it failed).
pub(super) fn start_all<R>(
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

/// A scenario's rows, its running proxies (in the same order) and its notes.
pub(super) struct Field<R = LoadRow> {
    pub(super) rows: Vec<R>,
    pub(super) running: Vec<Option<Proxy>>,
    pub(super) notes: Vec<String>,
}

/// Runs a load scenario: warm-up, then per round a closed-loop phase of each proxy (and wrk
/// in the first `wrk_rounds`), then the open loop at half the slowest proxy's maximum.
pub(super) fn run_load(
    ctx: &mut Ctx<'_>,
    scen: Scenario,
    proxies: &[ProxyKind],
    progress: &mut dyn FnMut(&str),
) -> Result<LoadScenario, String> {
    let opts = ctx.opts;
    let paths = scen.paths(opts.gateway_routes);
    let (scenario_file, lua) = scenario_files(ctx, scen, &paths)?;
    let (rows, running) = start_all(ctx, scen, proxies, progress, |k, failure| LoadRow {
        failure,
        ..LoadRow::new(k)
    });
    let mut f = Field {
        rows,
        running,
        notes: Vec::new(),
    };

    let layout = ctx.pinned.clone();
    let closed = |duration| PhaseSpec {
        scenario_file: scenario_file.as_deref(),
        ..PhaseSpec::closed(duration, opts.connections, &layout)
    };

    // Warm-up: opens the upstream connections and checks that every proxy answers right.
    let warm = closed(opts.duration.min(WARM_UP));
    ctx.warm_up(&mut f.running, &mut f.rows, scen, &warm, progress);

    // Closed loop (max throughput) and wrk, proxies interleaved round by round.
    for round in 0..opts.rounds {
        closed_round(ctx, scen, round, &closed(opts.duration), &mut f, progress);
        if round < opts.wrk_rounds {
            wrk_round(
                ctx,
                scen,
                round,
                &paths[0],
                lua.as_deref(),
                &mut f,
                progress,
            )?;
        }
        if procs::interrupted() {
            return Err("interrupted".into());
        }
    }

    let rate = open_rate(&f.rows);
    if rate > 0.0 {
        progress(&format!("  open loop at {rate:.0} req/s"));
        open_loop(ctx, scen, rate, &closed, &mut f, progress)?;
    } else {
        f.notes
            .push("No open-loop latency phase: no proxy completed the closed-loop phase.".into());
    }

    record_peak_rss(&mut f.rows, f.running);
    Ok(LoadScenario {
        scenario: scen,
        paths,
        rate,
        rows: f.rows,
        notes: f.notes,
    })
}

/// With more than one path: the tollgate-load scenario file and the wrk Lua script that
/// spread the requests over them (else none: every request goes to the one path).
fn scenario_files(
    ctx: &Ctx<'_>,
    scen: Scenario,
    paths: &[String],
) -> Result<(Option<PathBuf>, Option<PathBuf>), String> {
    if paths.len() <= 1 {
        return Ok((None, None));
    }
    let s = ctx.temp.join(&format!("{}-scenario.toml", scen.id()));
    let l = ctx.temp.join(&format!("{}-wrk.lua", scen.id()));
    std::fs::write(&s, configs::load_scenario(paths)).map_err(|e| e.to_string())?;
    std::fs::write(&l, configs::wrk_lua(paths)).map_err(|e| e.to_string())?;
    Ok((Some(s), Some(l)))
}

/// One closed-loop phase of each running proxy in turn.
fn closed_round(
    ctx: &mut Ctx<'_>,
    scen: Scenario,
    round: usize,
    ps: &PhaseSpec<'_>,
    f: &mut Field,
    progress: &mut dyn FnMut(&str),
) {
    for i in 0..f.rows.len() {
        // The proxies not under test must stay idle: their CPU is watched meanwhile.
        let what = format!("closed-loop phase (round {})", round + 1);
        let Some(result) = ctx.watched_phase(&mut f.running, i, scen, ps, &what, &mut f.notes)
        else {
            continue;
        };
        let kept = keep(
            &mut f.rows[i],
            &mut f.running[i],
            result,
            "closed loop",
            progress,
            |name, ph| closed_line(round, name, 14, ph),
        );
        if let Some((ph, _)) = kept {
            f.rows[i].closed.push(ph);
        }
    }
}

/// One wrk run against each running proxy in turn, on `path` (with the `lua` script when
/// there are several paths); nothing when wrk is not installed.
fn wrk_round(
    ctx: &mut Ctx<'_>,
    scen: Scenario,
    round: usize,
    path: &str,
    lua: Option<&Path>,
    f: &mut Field,
    progress: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let (opts, tools) = (ctx.opts, ctx.tools);
    let Some(wrk) = &tools.wrk else {
        return Ok(());
    };
    for i in 0..f.rows.len() {
        let Some(p) = f.running[i].as_ref() else {
            continue;
        };
        let url = format!("http://127.0.0.1:{}{}", p.port, path);
        let tag = ctx.next_tag(&format!("wrk-{}-{}", scen.id(), p.kind.name()));
        let spec = LoadSpec {
            url: &url,
            scenario: None,
            connections: opts.connections,
            duration: opts.wrk_duration,
            rate: None,
            hgrm: None,
            cpus: &ctx.pinned.client,
            work: &ctx.temp.path,
            tag: &tag,
            extra: &[],
        };
        match load::run_wrk(wrk, &spec, lua) {
            Ok(ran) => {
                progress(&format!(
                    "  round {} {:<14} wrk         {:>9.0} req/s",
                    round + 1,
                    f.rows[i].proxy.name(),
                    ran.result.rps
                ));
                f.rows[i].wrk.push(ran.result);
            }
            Err(e) => {
                if procs::interrupted() {
                    return Err("interrupted".into());
                }
                f.notes
                    .push(format!("wrk against {}: {e}", f.rows[i].proxy.name()));
            }
        }
    }
    Ok(())
}

/// The fixed open-loop rate: half the slowest proxy's closed-loop maximum (0: none measured).
fn open_rate(rows: &[LoadRow]) -> f64 {
    let slowest = rows
        .iter()
        .filter(|r| r.ok())
        .filter_map(|r| median_of(&r.closed, |p| p.rps))
        .fold(f64::INFINITY, f64::min);
    if slowest.is_finite() && slowest > 2.0 {
        (slowest / 2.0).floor()
    } else {
        0.0
    }
}

/// The open-loop phases at `rate`, proxies interleaved round by round; each row's latency
/// curve is that of its median-p99 phase.
fn open_loop<'s>(
    ctx: &mut Ctx<'_>,
    scen: Scenario,
    rate: f64,
    closed: &dyn Fn(Duration) -> PhaseSpec<'s>,
    f: &mut Field,
    progress: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let mut curves: Vec<Vec<(f64, Vec<Point>)>> = vec![Vec::new(); f.rows.len()];
    for round in 0..ctx.opts.rounds {
        for (i, curve) in curves.iter_mut().enumerate() {
            if let Some(c) = open_phase(ctx, scen, (round, i), rate, closed, f, progress) {
                curve.push(c);
            }
        }
        if procs::interrupted() {
            return Err("interrupted".into());
        }
    }
    for (row, mut c) in f.rows.iter_mut().zip(curves) {
        c.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !c.is_empty() {
            let mid = (c.len() - 1) / 2;
            row.curve = c.swap_remove(mid).1;
        }
    }
    Ok(())
}

/// Proxy `i`'s open-loop phase of round `round`: its p99 and latency curve when it ran.
fn open_phase<'s>(
    ctx: &mut Ctx<'_>,
    scen: Scenario,
    (round, i): (usize, usize),
    rate: f64,
    closed: &dyn Fn(Duration) -> PhaseSpec<'s>,
    f: &mut Field,
    progress: &mut dyn FnMut(&str),
) -> Option<(f64, Vec<Point>)> {
    let p = f.running[i].as_mut()?;
    let hgrm = ctx.temp.join(&format!(
        "{}-{}-{round}.hgrm",
        scen.id(),
        f.rows[i].proxy.name()
    ));
    let open = PhaseSpec {
        rate: Some(rate),
        hgrm: Some(&hgrm),
        ..closed(ctx.opts.duration)
    };
    let result = ctx.phase(p, scen, &open);
    let kept = keep(
        &mut f.rows[i],
        &mut f.running[i],
        result,
        "open loop",
        progress,
        |name, ph| {
            format!(
            "round {} {:<14} open loop   p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  {:>6.2} µs CPU/req",
            round + 1,
            name,
            ph.p50_us / 1000.0,
            ph.p99_us / 1000.0,
            ph.p999_us / 1000.0,
            ph.cpu_us_per_req,
        )
        },
    );
    let (ph, r) = kept?;
    if r.rps < rate * 0.95 {
        f.notes.push(format!(
            "{} round {}: the open loop reached only {:.0} of {rate:.0} req/s.",
            f.rows[i].proxy.name(),
            round + 1,
            r.rps
        ));
    }
    let text = std::fs::read_to_string(&hgrm).unwrap_or_default();
    let curve = (ph.p99_us, plot::parse_hgrm(&text));
    f.rows[i].open.push(ph);
    Some(curve)
}

/// The `gateway-keys` scenario: tollgate twice, on the traffic-control config (`keys`: API
/// key, usage plan with throttle and quota, stage and account throttles) and on the same route
/// without limits (`plain`), both sent the same request with the `x-api-key` header by
/// tollgate-load; a warm-up each, then closed-loop phases alternating keys / plain per round.
/// The limits are far above what the generator reaches: any non-2xx answer fails the row.
pub(super) fn run_keys(
    ctx: &mut Ctx<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<KeysScenario, String> {
    let opts = ctx.opts;
    let scen = Scenario::GatewayKeys;
    let file = ctx.temp.join("gateway-keys-scenario.toml");
    std::fs::write(&file, configs::traffic_load_scenario()).map_err(|e| e.to_string())?;
    let (rows, running) = start_keys(ctx, progress);
    let mut f = Field {
        rows,
        running,
        notes: Vec::new(),
    };
    let layout = ctx.pinned.clone();
    let closed = |duration| PhaseSpec {
        scenario_file: Some(&file),
        ..PhaseSpec::closed(duration, opts.connections, &layout)
    };
    // Warm-up: opens the upstream connections; it must see only 2xx answers too.
    warm_keys(ctx, &closed(opts.duration.min(WARM_UP)), &mut f, progress);
    for round in 0..opts.rounds {
        keys_round(ctx, round, &closed(opts.duration), &mut f, progress);
        if procs::interrupted() {
            return Err("interrupted".into());
        }
    }
    let Field {
        mut rows,
        running,
        notes,
    } = f;
    record_peak_rss(&mut rows, running);
    let plain = rows.pop().ok_or("no plain row")?;
    let keys = rows.pop().ok_or("no keys row")?;
    let res = KeysScenario {
        paths: scen.paths(opts.gateway_routes),
        keys,
        plain,
        notes,
    };
    match res.cpu_ratio() {
        Some(r) => progress(&format!(
            "  CPU per request keys ÷ plain: {r:.3} (target ≤ {:.2})",
            crate::run::KEYS_TARGET_RATIO
        )),
        None => progress("  CPU per request keys ÷ plain: not measured"),
    }
    Ok(res)
}

/// The `gateway-keys` rows, in the order of [`KEYS_LABELS`].
const KEYS_LABELS: [&str; 2] = ["tollgate (keys)", "tollgate (plain)"];

/// Starts tollgate on the traffic-control config with and without limits: a row each and the
/// running proxies in the same order (`None` where it failed to start).
fn start_keys(
    ctx: &mut Ctx<'_>,
    progress: &mut dyn FnMut(&str),
) -> (Vec<LoadRow>, Vec<Option<Proxy>>) {
    let scen = Scenario::GatewayKeys;
    let cpus = ctx.pinned.proxy.clone();
    let mut rows = Vec::with_capacity(2);
    let mut running = Vec::with_capacity(2);
    for (label, keys) in [("keys", true), ("plain", false)] {
        let mut row = LoadRow::new(ProxyKind::Tollgate);
        let routes = Routes::Traffic { keys };
        match ctx.start_proxy(
            ProxyKind::Tollgate,
            routes,
            &format!("{}-{label}", scen.id()),
            1,
            &cpus,
        ) {
            Ok(p) => running.push(Some(p)),
            Err(e) => {
                progress(&format!("  tollgate ({label}): {e}"));
                row.failure = Some(format!("did not start: {e}"));
                running.push(None);
            }
        }
        rows.push(row);
    }
    (rows, running)
}

/// The `gateway-keys` warm-up of each running proxy: one that fails or refuses a request
/// stops being measured.
fn warm_keys(
    ctx: &mut Ctx<'_>,
    warm: &PhaseSpec<'_>,
    f: &mut Field,
    progress: &mut dyn FnMut(&str),
) {
    for (i, label) in KEYS_LABELS.iter().enumerate() {
        let Some(p) = f.running[i].as_mut() else {
            continue;
        };
        let why = match ctx.phase(p, Scenario::GatewayKeys, warm) {
            Ok((_, r)) => refused("warm-up", &r),
            Err(e) => Some(format!("warm-up failed: {e}")),
        };
        if let Some(why) = why {
            progress(&format!("  {label}: FAILED: {why}"));
            f.rows[i].failure = Some(why);
            f.running[i] = None;
        }
    }
}

/// One `gateway-keys` closed-loop phase of each running proxy in turn; a refused request
/// fails the row.
fn keys_round(
    ctx: &mut Ctx<'_>,
    round: usize,
    ps: &PhaseSpec<'_>,
    f: &mut Field,
    progress: &mut dyn FnMut(&str),
) {
    let scen = Scenario::GatewayKeys;
    for (i, &label) in KEYS_LABELS.iter().enumerate() {
        let what = format!("closed-loop phase (round {})", round + 1);
        let Some(result) = ctx.watched_phase(&mut f.running, i, scen, ps, &what, &mut f.notes)
        else {
            continue;
        };
        let kept = keep(
            &mut f.rows[i],
            &mut f.running[i],
            result,
            "closed loop",
            progress,
            |_, ph| closed_line(round, label, 16, ph),
        );
        if let Some((ph, r)) = kept {
            match refused(&format!("closed loop round {}", round + 1), &r) {
                None => f.rows[i].closed.push(ph),
                Some(why) => {
                    progress(&format!("  {label}: FAILED: {why}"));
                    f.rows[i].failure = Some(why);
                    f.running[i] = None;
                }
            }
        }
    }
}

/// Why a `gateway-keys` phase fails its row: any non-2xx answer (the limits must refuse
/// nothing; warm-up's usual 1 % tolerance does not apply), or no 2xx answer at all.
fn refused(phase: &str, r: &LoadResult) -> Option<String> {
    if r.non_2xx > 0 || r.ok_2xx == 0 {
        Some(format!(
            "{phase}: {} of {} answers were not 2xx (status codes: {}; {} socket errors): the limits must refuse nothing",
            r.non_2xx,
            r.requests,
            if r.codes.is_empty() { "none" } else { &r.codes },
            r.errors
        ))
    } else {
        None
    }
}

/// The connection sweep (`conns`: the method's pinning, one worker each, closed loop at every
/// count of `Options::sweep_connections`) and the two-shard scenario (`2-shards`: two
/// workers/threads/shards, proxy, origin and load generator all allowed on CPUs 0 and 1,
/// closed loop at `Options::connections`). Closed loop only; proxies interleaved per round and
/// connection count.
pub(super) fn run_sweep(
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
    ctx.warm_up(&mut running, &mut rows, scen, &warm, progress);

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
                let context = format!("{c} connections");
                let kept = keep(
                    &mut rows[i],
                    &mut running[i],
                    result,
                    &context,
                    progress,
                    |name, ph| {
                        format!(
                        "round {} {:>4} conns {:<14} {:>9.0} req/s  {:>6.2} µs CPU/req  proxy CPU {:>3.0}%  load generator {:>3.0}%  origin {:>3.0}%",
                        round + 1,
                        c,
                        name,
                        ph.rps,
                        ph.cpu_us_per_req,
                        ph.proxy_busy * 100.0,
                        ph.load_busy * 100.0,
                        ph.origin_busy * 100.0,
                    )
                    },
                );
                if let (Some((ph, _)), Some(v)) = (kept, rows[i].phases.get_mut(ci)) {
                    v.push(ph);
                }
            }
            if procs::interrupted() {
                return Err("interrupted".into());
            }
        }
    }

    record_peak_rss(&mut rows, running);
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

/// Keeps one phase's outcome on `row`: on success its progress line (`line` of the proxy's
/// name and the phase, then the bound and contention marks) and its non-2xx status codes; on
/// an error (`context`: which phase) the proxy stops being measured and its row says why.
pub(super) fn keep(
    row: &mut impl Row,
    running: &mut Option<Proxy>,
    result: Result<(Phase, LoadResult), String>,
    context: &str,
    progress: &mut dyn FnMut(&str),
    line: impl FnOnce(&str, &Phase) -> String,
) -> Option<(Phase, LoadResult)> {
    let (proxy, failure, codes, _) = row.common();
    match result {
        Ok((ph, r)) => {
            progress(&format!(
                "  {}{}{}",
                line(proxy.name(), &ph),
                bound_suffix(&ph),
                contention(&ph)
            ));
            if !r.codes.is_empty() {
                codes.push(r.codes.clone());
            }
            Some((ph, r))
        }
        Err(e) => {
            let why = format!("{context}: {e}");
            progress(&format!("  {}: {why}", proxy.name()));
            *failure = Some(why);
            *running = None;
            None
        }
    }
}

/// Each row's peak RSS, read from its proxy at the end of the scenario; then stops them.
pub(super) fn record_peak_rss(rows: &mut [impl Row], running: Vec<Option<Proxy>>) {
    for (row, p) in rows.iter_mut().zip(&running) {
        if let Some(p) = p {
            *row.common().3 = p.child.sample().hwm_kib;
        }
    }
}

/// "  [client-bound]" etc. for progress lines (else "").
fn bound_suffix(ph: &Phase) -> String {
    ph.bound().map_or_else(String::new, |b| format!("  [{b}]"))
}

pub(super) fn run_idle(
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

/// A closed-loop phase's progress line: `name` padded to `width`.
fn closed_line(round: usize, name: &str, width: usize, ph: &Phase) -> String {
    format!(
        "round {} {:<width$} closed loop {:>9.0} req/s  {:>6.2} µs CPU/req  proxy CPU {:>3.0}%  client CPU {:>3.0}% (origin {:.0}%)",
        round + 1,
        name,
        ph.rps,
        ph.cpu_us_per_req,
        ph.proxy_busy * 100.0,
        ph.client_busy * 100.0,
        ph.origin_busy * 100.0,
    )
}
