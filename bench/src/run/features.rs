//! The costs of two operations features of tollgate (issue 18), tollgate only, each measured
//! side by side without and with the feature, rounds interleaved:
//! - `access-log`: two tollgates on the same route, one whose stage writes a JSON access log to
//!   a file; closed loop; CPU per request on ÷ off. The log is counted (it must hold a line per
//!   answered request) and truncated after each phase so it never fills the disk.
//! - `scrape`: one tollgate with an `[admin]` listener, open loop at the first fixed rate,
//!   phases without and with a thread that GETs `/metrics` every second (each answer must be a
//!   200 in Prometheus text); p99 with ÷ without.

use crate::configs::{Routes, Setup};
use crate::procs;
use crate::run::control::{Ctx, PhaseSpec, Proxy};
use crate::run::drivers::{keep, record_peak_rss, Field};
use crate::run::{LoadRow, PairScenario, Phase, ProxyKind, Scenario, DEFAULT_FIXED_RATES, WARM_UP};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The progress line of one phase.
fn line(round: usize, label: &str, ph: &Phase) -> String {
    format!(
        "round {} {:<22} {:>9.0} req/s  p99 {:.3} ms  {:>6.2} µs CPU/req  proxy CPU {:>3.0}%",
        round + 1,
        label,
        ph.rps,
        ph.p99_us / 1000.0,
        ph.cpu_us_per_req,
        ph.proxy_busy * 100.0,
    )
}

/// Lines in `path` (0 if it cannot be read).
fn count_lines(path: &Path) -> u64 {
    match std::fs::File::open(path) {
        Ok(f) => BufReader::with_capacity(1 << 20, f)
            .split(b'\n')
            .filter(|l| l.is_ok())
            .count() as u64,
        Err(_) => 0,
    }
}

/// The `access-log` rows.
const LOG_LABELS: [&str; 2] = ["tollgate (log off)", "tollgate (log on)"];

/// Runs the `access-log` scenario: tollgate without and with its JSON access log, closed loop,
/// rounds interleaved.
pub(super) fn run_access_log(
    ctx: &mut Ctx<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<PairScenario, String> {
    let opts = ctx.opts;
    let scen = Scenario::AccessLog;
    let log = ctx.temp.join("access-log.json");
    let (rows, running) = start_log_pair(ctx, &log, progress);
    let mut f = Field {
        rows,
        running,
        notes: Vec::new(),
    };
    let layout = ctx.pinned.clone();
    let warm = PhaseSpec::closed(opts.duration.min(WARM_UP), opts.connections, &layout);
    ctx.warm_up(&mut f.running, &mut f.rows, scen, &warm, progress);
    let spec = PhaseSpec::closed(opts.duration, opts.connections, &layout);
    let mut lines = 0;
    for round in 0..opts.rounds {
        for i in 0..f.rows.len() {
            lines += log_phase(ctx, (round, i), &log, &spec, &mut f, progress);
        }
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
    let _ = std::fs::remove_file(&log);
    let with = rows.pop().ok_or("no log-on row")?;
    let base = rows.pop().ok_or("no log-off row")?;
    let res = PairScenario {
        scenario: scen,
        rate: 0.0,
        base,
        with,
        control: None,
        count: lines,
        notes,
    };
    report_ratio(&res, "CPU per request log on ÷ off", progress);
    Ok(res)
}

/// Starts tollgate without and with the access log to `log`: a row each and the running
/// proxies in the same order (`None` where it failed to start).
fn start_log_pair(
    ctx: &mut Ctx<'_>,
    log: &Path,
    progress: &mut dyn FnMut(&str),
) -> (Vec<LoadRow>, Vec<Option<Proxy>>) {
    let scen = Scenario::AccessLog;
    let cpus = ctx.pinned.proxy.clone();
    let mut rows = Vec::with_capacity(2);
    let mut running: Vec<Option<Proxy>> = Vec::with_capacity(2);
    for (i, label) in LOG_LABELS.iter().enumerate() {
        let setup = Setup {
            access_log: (i == 1).then(|| log.to_path_buf()),
            ..Setup::default()
        };
        let mut row = LoadRow::new(ProxyKind::Tollgate);
        let tag = format!("{}-{}", scen.id(), if i == 1 { "on" } else { "off" });
        match ctx.start_proxy_with(ProxyKind::Tollgate, Routes::Single, &tag, 1, &cpus, &setup) {
            Ok(p) => running.push(Some(p)),
            Err(e) => {
                progress(&format!("  {label}: {e}"));
                row.failure = Some(format!("did not start: {e}"));
                running.push(None);
            }
        }
        rows.push(row);
    }
    (rows, running)
}

/// Proxy `i`'s closed-loop phase of round `round`; with the log on, the lines it wrote (a line
/// per answered request is expected; none fails the row). The lines counted (0 log off).
fn log_phase(
    ctx: &mut Ctx<'_>,
    (round, i): (usize, usize),
    log: &Path,
    spec: &PhaseSpec<'_>,
    f: &mut Field,
    progress: &mut dyn FnMut(&str),
) -> u64 {
    // Only this phase's lines are counted: the warm-up's and earlier rounds' go.
    if i == 1 {
        std::thread::sleep(Duration::from_millis(300));
        let _ = std::fs::File::create(log);
    }
    let what = format!("closed-loop phase (round {})", round + 1);
    let scen = Scenario::AccessLog;
    let Some(result) = ctx.watched_phase(&mut f.running, i, scen, spec, &what, &mut f.notes) else {
        return 0;
    };
    let label = LOG_LABELS[i];
    let kept = keep(
        &mut f.rows[i],
        &mut f.running[i],
        result,
        "closed loop",
        progress,
        |_, ph| line(round, label, ph),
    );
    let Some((ph, r)) = kept else { return 0 };
    let mut n = 0;
    if i == 1 {
        // The shard hands its buffer over every 100 ms; the writer thread then writes.
        std::thread::sleep(Duration::from_millis(400));
        n = count_lines(log);
        let _ = std::fs::File::create(log);
        if n < r.requests {
            f.notes.push(format!(
                "Round {}: the access log has {n} lines for {} answered requests ({} missing: dropped under load, counted in `tollgate_access_log_dropped_lines_total`).",
                round + 1,
                r.requests,
                r.requests - n
            ));
        }
        if n == 0 {
            let why = format!("round {}: the access log stayed empty", round + 1);
            progress(&format!("  {label}: FAILED: {why}"));
            f.rows[i].failure = Some(why);
            f.running[i] = None;
            return n;
        }
    }
    f.rows[i].closed.push(ph);
    n
}

fn report_ratio(res: &PairScenario, what: &str, progress: &mut dyn FnMut(&str)) {
    match res.ratio() {
        Some(r) => progress(&format!("  {what}: {r:.3} (target ≤ {:.2})", res.target())),
        None => progress(&format!("  {what}: not measured")),
    }
}

/// One `GET /metrics` on the admin listener: Ok when the answer is a 200 with Prometheus
/// text (a `# TYPE` line).
pub fn scrape_once(addr: SocketAddr) -> Result<(), String> {
    let timeout = Duration::from_secs(1);
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    s.take(64 << 20)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&body);
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "answered {:?}",
            text.lines().next().unwrap_or("nothing")
        ));
    }
    if !text.contains("\n# TYPE ") {
        return Err("the answer holds no Prometheus text".into());
    }
    Ok(())
}

/// Scrapes `addr` every second from now until `stop`; counts successes and failures.
fn scraper(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Option<String>> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut last_error = None;
        let mut n = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let due = start + Duration::from_secs(u64::from(n));
            let now = Instant::now();
            if now < due {
                // Woken early by `unpark` when the phase ends.
                std::thread::park_timeout(due - now);
                continue;
            }
            match scrape_once(addr) {
                Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    last_error = Some(e);
                    failed.fetch_add(1, Ordering::Relaxed)
                }
            };
            n += 1;
        }
        last_error
    })
}

/// The rows of `scrape`: without, with, and without again (the control).
pub const SCRAPE_LABELS: [&str; 3] = [
    "tollgate (no scrape)",
    "tollgate (scrape 1/s)",
    "tollgate (no scrape, control)",
];

/// `scrape` runs this many times `--rounds`: p99 at a fixed rate is the noisiest statistic
/// the bench reads (a round's p99 moves by 2× with nothing changed on this machine).
pub const SCRAPE_ROUND_FACTOR: usize = 3;

/// The order of the three phases in `round`: the *with* phase always in the middle, the two
/// phases without it alternating around it, so a drift over the round weighs on both sides.
pub fn scrape_order(round: usize) -> [usize; 3] {
    if round.is_multiple_of(2) {
        [0, 1, 2]
    } else {
        [2, 1, 0]
    }
}

/// Starts the `scrape` scenario's tollgate, warms it up and checks one scrape answers.
fn start_scraped(
    ctx: &mut Ctx<'_>,
    setup: &Setup,
    addr: SocketAddr,
    progress: &mut dyn FnMut(&str),
) -> Result<Proxy, String> {
    let scen = Scenario::Scrape;
    let cpus = ctx.pinned.proxy.clone();
    let mut p = ctx
        .start_proxy_with(
            ProxyKind::Tollgate,
            Routes::Single,
            scen.id(),
            1,
            &cpus,
            setup,
        )
        .map_err(|e| {
            progress(&format!("  tollgate: {e}"));
            format!("did not start: {e}")
        })?;
    let layout = ctx.pinned.clone();
    let warm = PhaseSpec::closed(
        ctx.opts.duration.min(WARM_UP),
        ctx.opts.connections,
        &layout,
    );
    let why = match ctx.phase(&mut p, scen, &warm) {
        Ok((_, r)) => crate::run::check_answers(&r, 0),
        Err(e) => Some(format!("warm-up failed: {e}")),
    }
    .or_else(|| {
        scrape_once(addr)
            .err()
            .map(|e| format!("GET /metrics: {e}"))
    });
    match why {
        Some(why) => {
            progress(&format!("  tollgate: {why}"));
            Err(why)
        }
        None => Ok(p),
    }
}

/// The state of the `scrape` scenario: its one tollgate, the rows (no scrape, scrape 1/s,
/// control), the notes, and the scraper's counts.
struct Scraped {
    proxy: Option<Proxy>,
    rows: [LoadRow; 3],
    notes: Vec<String>,
    addr: SocketAddr,
    rate: f64,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

/// Runs the `scrape` scenario: one tollgate in open loop at the first fixed rate, phases
/// without, with and again without a thread scraping `/metrics`, in alternating order.
pub(super) fn run_scrape(
    ctx: &mut Ctx<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<PairScenario, String> {
    let opts = ctx.opts;
    let rate = opts
        .fixed_rates
        .first()
        .copied()
        .unwrap_or(DEFAULT_FIXED_RATES[0]);
    let admin = ctx.ports.free()?;
    let setup = Setup {
        admin_port: Some(admin),
        ..Setup::default()
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], admin));
    let layout = ctx.pinned.clone();
    let mut s = Scraped {
        proxy: None,
        rows: [
            LoadRow::new(ProxyKind::Tollgate),
            LoadRow::new(ProxyKind::Tollgate),
            LoadRow::new(ProxyKind::Tollgate),
        ],
        notes: Vec::new(),
        addr,
        rate,
        ok: Arc::new(AtomicU64::new(0)),
        failed: Arc::new(AtomicU64::new(0)),
    };
    match start_scraped(ctx, &setup, addr, progress) {
        Ok(p) => s.proxy = Some(p),
        Err(why) => {
            for r in s.rows.iter_mut() {
                r.failure = Some(why.clone());
            }
        }
    }
    let spec = PhaseSpec {
        rate: Some(rate),
        ..PhaseSpec::closed(opts.duration, opts.connections, &layout)
    };
    for round in 0..opts.rounds * SCRAPE_ROUND_FACTOR {
        for i in scrape_order(round) {
            if s.proxy.is_none() {
                break;
            }
            scrape_phase(ctx, (round, i), &spec, &mut s, progress);
        }
        if procs::interrupted() {
            return Err("interrupted".into());
        }
    }
    Ok(finish_scrape(s, progress))
}

/// Row `i`'s open-loop phase of round `round`, with the scraper running for row 1.
fn scrape_phase(
    ctx: &mut Ctx<'_>,
    (round, i): (usize, usize),
    spec: &PhaseSpec<'_>,
    s: &mut Scraped,
    progress: &mut dyn FnMut(&str),
) {
    let Some(p) = s.proxy.as_mut() else { return };
    let label = SCRAPE_LABELS[i];
    let rate = s.rate;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = (i == 1).then(|| scraper(s.addr, stop.clone(), s.ok.clone(), s.failed.clone()));
    let result = ctx.phase(p, Scenario::Scrape, spec);
    stop.store(true, Ordering::Relaxed);
    if let Some(Ok(Some(e))) = thread.map(|t| {
        t.thread().unpark();
        t.join()
    }) {
        s.notes
            .push(format!("Round {}: a scrape failed: {e}", round + 1));
    }
    let kept = keep(
        &mut s.rows[i],
        &mut s.proxy,
        result,
        "open loop",
        progress,
        |_, ph| line(round, label, ph),
    );
    if let Some((ph, r)) = kept {
        if r.rps < rate * 0.95 {
            s.notes.push(format!(
                "{label} round {}: the open loop at {rate:.0} req/s reached only {:.0} req/s.",
                round + 1,
                r.rps
            ));
        }
        s.rows[i].open.push(ph);
    } else {
        // The proxy stopped: no row is measured any further.
        let f = s.rows[i].failure.clone();
        for r in s.rows.iter_mut() {
            r.failure = r.failure.take().or_else(|| f.clone());
        }
    }
}

/// The scenario's result: the failed scrapes noted, the peak RSS on every row, the ratios
/// reported.
fn finish_scrape(s: Scraped, progress: &mut dyn FnMut(&str)) -> PairScenario {
    let Scraped {
        proxy,
        mut rows,
        mut notes,
        rate,
        ok,
        failed,
        ..
    } = s;
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        notes.push(format!("{failed} scrapes failed."));
    }
    if let Some(p) = proxy.as_ref() {
        let hwm = p.child.sample().hwm_kib;
        for r in rows.iter_mut() {
            r.peak_rss_kib = hwm;
        }
    }
    let [base, with, control] = rows;
    let res = PairScenario {
        scenario: Scenario::Scrape,
        rate,
        base,
        with,
        control: Some(control),
        count: ok.load(Ordering::Relaxed),
        notes,
    };
    report_ratio(&res, "p99 with scrapes ÷ without", progress);
    if let Some(n) = res.noise() {
        progress(&format!("  p99 control ÷ base (nothing changed): {n:.3}"));
    }
    res
}
