//! `RESULTS.md` and its plots: date, machine, versions, the method, a summary of the ratios
//! (tollgate ÷ tollgate-poll, i.e. the lean socket path; tollgate ÷ tollgate-stock, i.e. against
//! glommio as published: stock rings and the poll path; and tollgate ÷ nginx, ÷ HAProxy),
//! one table per scenario (medians over rounds; rows marked client-bound / origin-bound where
//! the client side saturated), notes on what was skipped, and the SVG files it links.
//!
//! The tables are built here; the prose around them is `bench/templates/report.md`, whose
//! named parts [`render`] fills with the values it computes.

use crate::configs::{HaproxyRoutes, NginxRoutes};
use crate::plot;
use crate::run::{
    bound_of, cpu_list, median, median_of, one_line, ClusterScenario, FixedRateScenario,
    HttpsScenario, IdleRow, KeysScenario, LoadRow, LoadScenario, OpsPhase, Options, PairScenario,
    Phase, ProxyKind, Results, Scenario, SweepRow, SweepScenario, ALL_SCENARIOS, BOUND,
    CLUSTER_TARGET_RATIO, KEYS_TARGET_RATIO, MAX_LEASE, OPS_METRIC, OTHERS_NOTICEABLE,
    SOCKET_PATH_ENV, STOCK_RINGS_ENV,
};
use std::fmt::{Display, Write as _};
use std::path::Path;
use std::time::Duration;

/// The columns of a load-scenario table (the smoke test looks for these names).
pub const LOAD_COLUMNS: [&str; 12] = [
    "proxy",
    "req/s (tollgate-load)",
    "req/s (wrk)",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "CPU µs/req (max load)",
    "CPU µs/req (fixed rate)",
    "peak RSS MiB",
    "CPU0 / CPU1 busy",
    "failed requests",
    "bound",
];

/// The columns of the connection-sweep and two-shard tables.
pub const SWEEP_COLUMNS: [&str; 9] = [
    "connections",
    "proxy",
    "req/s",
    "CPU µs/req",
    "req/s ÷ nginx",
    "CPU µs/req ÷ nginx",
    "CPU busy: proxy / load gen / origin",
    "failed requests",
    "bound",
];

/// The columns of the ratio summary (closed loop, medians over rounds).
pub const RATIO_COLUMNS: [&str; 10] = [
    "scenario",
    "tollgate / tollgate-poll req/s",
    "tollgate / tollgate-poll CPU µs/req",
    "tollgate / tollgate-stock req/s",
    "tollgate / tollgate-stock CPU µs/req",
    "tollgate / nginx req/s",
    "tollgate / nginx CPU µs/req",
    "tollgate / HAProxy req/s",
    "tollgate / HAProxy CPU µs/req",
    "bound",
];

/// The proxies tollgate is divided by in the ratio summary, in column order.
const RATIO_OTHERS: [ProxyKind; 4] = [
    ProxyKind::TollgatePoll,
    ProxyKind::TollgateStock,
    ProxyKind::Nginx,
    ProxyKind::Haproxy,
];

/// What a saturation mark cell shows when nothing saturated.
const NOT_BOUND: &str = "—";

/// The columns of the `gateway-keys` table.
pub const KEYS_COLUMNS: [&str; 6] = [
    "config",
    "req/s (tollgate-load)",
    "CPU µs/req",
    "CPU0 / CPU1 busy",
    "failed requests",
    "bound",
];

/// The columns of the `fixed-rate` table.
pub const FIXED_COLUMNS: [&str; 12] = [
    "rate",
    "proxy",
    "p99 ms per round",
    "p99 ms",
    "CPU µs/req",
    "req/s reached",
    "CPU µs/req ÷ nginx",
    "CPU µs/req ÷ HAProxy",
    "p99 ÷ nginx",
    "p99 ÷ HAProxy",
    "failed requests",
    "bound",
];

/// The columns of the `access-log` and `scrape` tables.
pub const PAIR_COLUMNS: [&str; 9] = [
    "config",
    "req/s (tollgate-load)",
    "CPU µs/req per round",
    "CPU µs/req",
    "p99 ms per round",
    "p99 ms",
    "CPU0 / CPU1 busy",
    "failed requests",
    "bound",
];

/// The columns of the `https` table.
pub const HTTPS_COLUMNS: [&str; 9] = [
    "mode",
    "proxy",
    "req/s",
    "CPU µs/req",
    "CPU µs/req ÷ nginx",
    "CPU µs/req ÷ HAProxy",
    "req/s ÷ nginx",
    "failed requests",
    "bound",
];

/// The columns of the README's fixed-rate rows ([`readme_rows`]).
pub const README_FIXED_COLUMNS: [&str; 5] = [
    "",
    "tollgate CPU µs/req",
    "CPU per request vs nginx",
    "vs HAProxy",
    "p99 ms: tollgate / nginx / HAProxy",
];

/// The columns of the idle-connection table.
pub const IDLE_COLUMNS: [&str; 7] = [
    "proxy",
    "connections held",
    "RSS before MiB",
    "RSS with connections MiB",
    "KiB per connection",
    "peak RSS MiB",
    "notes",
];

fn fmt_num(v: f64, digits: usize) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    if digits == 0 {
        // Thousands separators for big counts.
        let s = format!("{:.0}", v);
        let (sign, digits_str) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, c) in digits_str.chars().enumerate() {
            if i > 0 && (digits_str.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else {
        format!("{v:.digits$}")
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "—".into(), |v| fmt_num(v, digits))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

fn table_row<S: AsRef<str>>(cells: &[S]) -> String {
    let cells: Vec<&str> = cells.iter().map(AsRef::as_ref).collect();
    format!("| {} |\n", cells.join(" | "))
}

/// The header row and the alignment row (first column left, the others right).
fn table_head(cols: &[&str]) -> String {
    let align: Vec<&str> = (0..cols.len())
        .map(|i| if i == 0 { ":--" } else { "--:" })
        .collect();
    table_row(cols) + &table_row(&align)
}

/// A table row's proxy cell: its name, marked when it was not (fully) measured.
fn row_name(proxy: ProxyKind, ok: bool) -> String {
    if ok {
        proxy.name().to_string()
    } else {
        format!("{} (not measured, see notes)", proxy.name())
    }
}

/// The numeric cells of a row (None = not measured), in LOAD_COLUMNS order after "proxy",
/// except the busy and failed columns.
struct LoadNumbers {
    rps: Option<f64>,
    wrk: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
    cpu_max: Option<f64>,
    cpu_rate: Option<f64>,
    rss: Option<f64>,
}

fn numbers(r: &LoadRow) -> LoadNumbers {
    let ms = |f: fn(&crate::run::Phase) -> f64| median_of(&r.open, f).map(|v| v / 1000.0);
    LoadNumbers {
        rps: median_of(&r.closed, |p| p.rps),
        wrk: median(r.wrk.iter().map(|w| w.rps).collect()),
        p50: ms(|p| p.p50_us),
        p99: ms(|p| p.p99_us),
        p999: ms(|p| p.p999_us),
        cpu_max: median_of(&r.closed, |p| p.cpu_us_per_req),
        cpu_rate: median_of(&r.open, |p| p.cpu_us_per_req),
        rss: (r.peak_rss_kib > 0).then(|| r.peak_rss_kib as f64 / 1024.0),
    }
}

fn load_table(s: &LoadScenario) -> String {
    let mut out = table_head(&LOAD_COLUMNS);
    for r in &s.rows {
        let n = numbers(r);
        let busy = match (
            median_of(&r.closed, |p| p.proxy_busy),
            median_of(&r.closed, |p| p.client_busy),
        ) {
            (Some(a), Some(b)) => format!("{:.0}% / {:.0}%", a * 100.0, b * 100.0),
            _ => "—".into(),
        };
        let failed: u64 = r.closed.iter().chain(&r.open).map(|p| p.bad).sum::<u64>()
            + r.wrk.iter().map(|w| w.bad).sum::<u64>();
        let name = row_name(r.proxy, r.ok());
        out.push_str(&table_row(&[
            name,
            opt(n.rps, 0),
            opt(n.wrk, 0),
            opt(n.p50, 3),
            opt(n.p99, 3),
            opt(n.p999, 3),
            opt(n.cpu_max, 2),
            opt(n.cpu_rate, 2),
            opt(n.rss, 1),
            busy,
            if r.closed.is_empty() {
                "—".into()
            } else {
                failed.to_string()
            },
            bound_of(r.closed.iter().chain(&r.open))
                .unwrap_or(NOT_BOUND)
                .to_string(),
        ]));
    }
    let Some(t) = s.rows.iter().find(|r| r.proxy == ProxyKind::Tollgate) else {
        return out;
    };
    let tn = numbers(t);
    for other in others_in_report_order(&s.rows, |r| r.proxy) {
        let on = numbers(other);
        out.push_str(&table_row(&[
            format!("tollgate / {}", other.proxy.name()),
            ratio(tn.rps, on.rps),
            ratio(tn.wrk, on.wrk),
            ratio(tn.p50, on.p50),
            ratio(tn.p99, on.p99),
            ratio(tn.p999, on.p999),
            ratio(tn.cpu_max, on.cpu_max),
            ratio(tn.cpu_rate, on.cpu_rate),
            ratio(tn.rss, on.rss),
            "—".into(),
            "—".into(),
            "—".into(),
        ]));
    }
    out
}

/// The rows of every proxy but tollgate, in report order (`ProxyKind::ALL`: tollgate-poll,
/// tollgate-stock, nginx, HAProxy) whatever order `--proxies` ran them in, so each
/// `tollgate / X` ratio row has the same place in every table.
fn others_in_report_order<R>(rows: &[R], proxy: impl Fn(&R) -> ProxyKind) -> Vec<&R> {
    ProxyKind::ALL
        .into_iter()
        .filter(|k| *k != ProxyKind::Tollgate)
        .filter_map(|k| rows.iter().find(|r| proxy(r) == k))
        .collect()
}

/// Median req/s and CPU µs/req of a set of closed-loop phases.
fn closed_numbers(phases: &[Phase]) -> (Option<f64>, Option<f64>) {
    (
        median_of(phases, |p| p.rps),
        median_of(phases, |p| p.cpu_us_per_req),
    )
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{}%", percent(v)))
}

fn sweep_table(s: &SweepScenario) -> String {
    let mut out = table_head(&SWEEP_COLUMNS);
    let nginx = s.rows.iter().find(|r| r.proxy == ProxyKind::Nginx);
    for (ci, &c) in s.counts.iter().enumerate() {
        let (n_rps, n_cpu) = nginx.map_or((None, None), |r| closed_numbers(r.at(ci)));
        for r in &s.rows {
            let phases = r.at(ci);
            let (rps, cpu) = closed_numbers(phases);
            let name = row_name(r.proxy, r.ok());
            let busy = if phases.is_empty() {
                "—".to_string()
            } else {
                format!(
                    "{} / {} / {}",
                    pct(median_of(phases, |p| p.proxy_busy)),
                    pct(median_of(phases, |p| p.load_busy)),
                    pct(median_of(phases, |p| p.origin_busy))
                )
            };
            out.push_str(&table_row(&[
                c.to_string(),
                name,
                opt(rps, 0),
                opt(cpu, 2),
                ratio(rps, n_rps),
                ratio(cpu, n_cpu),
                busy,
                if phases.is_empty() {
                    "—".into()
                } else {
                    phases.iter().map(|p| p.bad).sum::<u64>().to_string()
                },
                bound_of(phases).unwrap_or(NOT_BOUND).to_string(),
            ]));
        }
    }
    out
}

/// One closed-loop comparison, a line of the ratio summary and a bar group of the throughput
/// plot: a load scenario, or a sweep scenario at one connection count, with each proxy's
/// closed-loop phases.
struct ClosedLine<'a> {
    scenario: Scenario,
    /// The connection count of a sweep scenario's line.
    connections: Option<usize>,
    rows: Vec<(ProxyKind, &'a [Phase])>,
}

impl ClosedLine<'_> {
    /// Median req/s and CPU µs/req of proxy `k` (None where it has no phases).
    fn of(&self, k: ProxyKind) -> (Option<f64>, Option<f64>) {
        self.rows
            .iter()
            .find(|(p, _)| *p == k)
            .map_or((None, None), |(_, ph)| closed_numbers(ph))
    }
}

fn closed_lines(res: &Results) -> Vec<ClosedLine<'_>> {
    let loads = res.loads.iter().map(|s| ClosedLine {
        scenario: s.scenario,
        connections: None,
        rows: s
            .rows
            .iter()
            .map(|r| (r.proxy, r.closed.as_slice()))
            .collect(),
    });
    let sweeps = res.sweeps.iter().flat_map(|s| {
        s.counts.iter().enumerate().map(|(ci, &c)| ClosedLine {
            scenario: s.scenario,
            connections: Some(c),
            rows: s.rows.iter().map(|r| (r.proxy, r.at(ci))).collect(),
        })
    });
    loads.chain(sweeps).collect()
}

/// The ratio summary: tollgate ÷ each other proxy, req/s and CPU µs/req, per scenario.
fn ratio_table(res: &Results) -> String {
    let mut out = table_head(&RATIO_COLUMNS);
    for line in closed_lines(res) {
        let id = line.scenario.id();
        let (t_rps, t_cpu) = line.of(ProxyKind::Tollgate);
        let mut cells = vec![match line.connections {
            None => format!("`{id}`"),
            Some(c) => format!("`{id}`, {c} connections"),
        }];
        for k in RATIO_OTHERS {
            let (rps, cpu) = line.of(k);
            cells.push(ratio(t_rps, rps));
            cells.push(ratio(t_cpu, cpu));
        }
        let bound: Vec<String> = line
            .rows
            .iter()
            .filter_map(|(k, ph)| bound_of(ph.iter()).map(|b| format!("{}: {b}", k.name())))
            .collect();
        cells.push(if bound.is_empty() {
            NOT_BOUND.to_string()
        } else {
            bound.join("; ")
        });
        out.push_str(&table_row(&cells));
    }
    out
}

fn idle_table(rows: &[IdleRow]) -> String {
    let mut out = table_head(&IDLE_COLUMNS);
    let mib = |k: u64| fmt_num(k as f64 / 1024.0, 1);
    for r in rows {
        if let Some(f) = &r.failure {
            out.push_str(&table_row(&[
                format!("{} (not measured)", r.proxy.name()),
                "—".into(),
                "—".into(),
                "—".into(),
                "—".into(),
                "—".into(),
                one_line(f),
            ]));
            continue;
        }
        out.push_str(&table_row(&[
            r.proxy.name().to_string(),
            format!(
                "{} of {}",
                fmt_num(r.held as f64, 0),
                fmt_num(r.requested as f64, 0)
            ),
            mib(r.rss0_kib),
            mib(r.rss_n_kib),
            opt(r.kib_per_conn(), 2),
            mib(r.peak_kib),
            r.stopped.as_deref().map_or_else(String::new, one_line),
        ]));
    }
    if let Some(t) = rows.iter().find(|r| r.proxy == ProxyKind::Tollgate) {
        for o in others_in_report_order(rows, |r| r.proxy) {
            let peak =
                |r: &IdleRow| (r.failure.is_none() && r.peak_kib > 0).then_some(r.peak_kib as f64);
            out.push_str(&table_row(&[
                format!("tollgate / {}", o.proxy.name()),
                "—".into(),
                "—".into(),
                "—".into(),
                ratio(t.kib_per_conn(), o.kib_per_conn()),
                ratio(peak(t), peak(o)),
                String::new(),
            ]));
        }
    }
    out
}

/// The order proxies take turns in a round: "tollgate, tollgate-poll, ..., tollgate, ...".
fn round_order(proxies: &[ProxyKind]) -> String {
    let Some(first) = proxies.first() else {
        return "none selected".into();
    };
    let mut names: Vec<&str> = proxies.iter().map(|k| k.name()).collect();
    names.extend([first.name(), "..."]);
    names.join(", ")
}

/// Writes the plots into `dir`; returns (scenario id → latency SVG name, throughput SVG name).
fn write_plots(
    res: &Results,
    dir: &Path,
    notes: &mut Vec<String>,
) -> (Vec<(String, String)>, Option<String>) {
    let mut latency = Vec::new();
    for s in &res.loads {
        let series: Vec<plot::Series> = s
            .rows
            .iter()
            .filter(|r| !r.curve.is_empty())
            .map(|r| (r.proxy.name().to_string(), r.proxy.color(), r.curve.clone()))
            .collect();
        if series.is_empty() {
            continue;
        }
        let name = format!("latency-{}.svg", s.scenario.id());
        let title = format!(
            "{}: latency at {} req/s (open loop)",
            s.scenario.id(),
            fmt_num(s.rate, 0)
        );
        match plot::latency_chart(&dir.join(&name), &title, &series) {
            Ok(()) => latency.push((s.scenario.id().to_string(), name)),
            Err(e) => notes.push(format!("Could not draw {name}: {e}")),
        }
    }
    // One bar group per classic scenario and per sweep connection count.
    let lines = closed_lines(res);
    let proxies: Vec<ProxyKind> = ProxyKind::ALL
        .into_iter()
        .filter(|k| lines.iter().any(|l| l.rows.iter().any(|(p, _)| p == k)))
        .collect();
    let groups: Vec<String> = lines
        .iter()
        .map(|l| match l.connections {
            Some(c) if l.scenario == Scenario::Conns => format!("{}-{c}", l.scenario.id()),
            _ => l.scenario.id().to_string(),
        })
        .collect();
    let values: Vec<Vec<Option<f64>>> = lines
        .iter()
        .map(|l| proxies.iter().map(|&k| l.of(k).0).collect())
        .collect();
    let mut throughput = None;
    if !groups.is_empty() && !proxies.is_empty() {
        let names: Vec<(String, usize)> = proxies
            .iter()
            .map(|k| (k.name().to_string(), k.color()))
            .collect();
        let name = "throughput.svg".to_string();
        match plot::bar_chart(
            &dir.join(&name),
            "Closed-loop throughput (tollgate-load, median over rounds)",
            "requests/s",
            &groups,
            &names,
            &values,
        ) {
            Ok(()) => throughput = Some(name),
            Err(e) => notes.push(format!("Could not draw {name}: {e}")),
        }
    }
    (latency, throughput)
}

/// The report's prose: named parts with `{{name}}` placeholders (format: the comment at its top).
const TEMPLATE: &str = include_str!("../templates/report.md");

/// The part `name` of [`TEMPLATE`], from its marker line to the next, less the line break that
/// ends its last line.
fn part(name: &str) -> &'static str {
    let marker = format!("<!-- part: {name} -->\n");
    let Some(start) = TEMPLATE.find(&marker).map(|i| i + marker.len()) else {
        debug_assert!(false, "templates/report.md has no part {name:?}");
        return "";
    };
    let rest = &TEMPLATE[start..];
    match rest.find("\n<!-- part: ") {
        Some(end) => &rest[..end],
        None => rest.strip_suffix('\n').unwrap_or(rest),
    }
}

/// `template` with every `{{name}}` replaced by the value of `name` in `vars`.
fn fill(template: &str, vars: &[(&str, &dyn Display)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let value = after.find("}}").and_then(|close| {
            let name = &after[..close];
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (close, v))
        });
        match value {
            Some((close, v)) => {
                let _ = write!(out, "{v}");
                rest = &after[close + 2..];
            }
            None => {
                debug_assert!(false, "no value for a placeholder in {template:?}");
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `items` as Markdown list items, one a line.
fn bullets<S: Display>(items: impl IntoIterator<Item = S>) -> String {
    items.into_iter().map(|i| format!("- {i}\n")).collect()
}

/// "16, 64, 256".
fn comma_list<T: Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A share (1.0 = 100 %) as whole percent, without the sign.
fn percent(share: f64) -> String {
    format!("{:.0}", share * 100.0)
}

/// A section's "Notes:" block ("" without notes).
fn notes_block(notes: &[String]) -> String {
    if notes.is_empty() {
        return String::new();
    }
    fill(part("notes"), &[("list", &bullets(notes))]) + "\n"
}

/// The notes every row may need: why a proxy was not measured, and non-2xx answers seen.
fn row_notes(notes: &mut Vec<String>, proxy: ProxyKind, failure: Option<&str>, codes: &[String]) {
    if let Some(f) = failure {
        notes.push(fill(
            part("not-measured"),
            &[("proxy", &proxy.name()), ("why", &one_line(f))],
        ));
    }
    if !codes.is_empty() {
        notes.push(fill(
            part("codes"),
            &[("proxy", &proxy.name()), ("codes", &codes.join("; "))],
        ));
    }
}

/// Renders RESULTS.md (and writes the SVGs) into `dir`. Returns the Markdown.
pub fn write(res: &Results, dir: &Path) -> std::io::Result<String> {
    std::fs::create_dir_all(dir)?;
    let mut plot_notes = Vec::new();
    let (latency_svgs, throughput_svg) = write_plots(res, dir, &mut plot_notes);
    let mut md = render(res, &latency_svgs, throughput_svg.as_deref(), &plot_notes);
    // The profile of one shard (`bench/profile.sh` writes PROFILE.md next to RESULTS.md) is
    // part of the results: it says where the CPU time per request goes.
    if let Ok(profile) = std::fs::read_to_string(dir.join("PROFILE.md")) {
        md.push('\n');
        md.push_str(&profile);
    }
    std::fs::write(dir.join("RESULTS.md"), &md)?;
    Ok(md)
}

/// The Markdown text of RESULTS.md: the template's `document` part, filled.
pub fn render(
    res: &Results,
    latency_svgs: &[(String, String)],
    throughput_svg: Option<&str>,
    plot_notes: &[String],
) -> String {
    let o = &res.opts;
    let secs = |d: Duration| format!("{:.1}", d.as_secs_f64());
    let wrk_secs = o.wrk_duration.as_secs_f64().round().max(1.0);
    let facts =
        |list: &[(String, String)]| bullets(list.iter().map(|(k, v)| format!("**{k}:** {v}")));
    let ratios = if res.loads.is_empty() && res.sweeps.is_empty() {
        String::new()
    } else {
        fill(
            part("ratios"),
            &[
                ("socket_path_env", &SOCKET_PATH_ENV),
                ("stock_rings_env", &STOCK_RINGS_ENV),
                ("table", &ratio_table(res)),
            ],
        ) + "\n"
    };
    let throughput = throughput_svg.map_or_else(String::new, |svg| {
        fill(part("throughput"), &[("svg", &svg)]) + "\n\n"
    });
    let mut scenarios: String = res
        .loads
        .iter()
        .map(|s| load_section(res, s, latency_svgs))
        .chain(res.keys.iter().map(|k| keys_section(o, k)))
        .chain(res.fixed.iter().map(|f| fixed_section(res, f)))
        .chain(res.pairs.iter().map(|p| pair_section(res, p)))
        .chain(res.https.iter().map(|h| https_section(res, h)))
        .chain(res.cluster.iter().map(|c| cluster_section(res, c)))
        .chain(res.sweeps.iter().map(|s| sweep_section(o, s)))
        .collect();
    if let Some(rows) = &res.idle {
        scenarios.push_str(&idle_section(o, rows));
    }
    if let Some(rows) = &res.memory {
        scenarios.push_str(&crate::run::memory_section(rows));
    }
    fill(
        part("document"),
        &[
            (
                "mode_flag",
                &if o.mode == "full" { "full" } else { "quick" },
            ),
            ("date", &res.date),
            ("mode", &o.mode),
            ("rounds", &o.rounds),
            ("duration", &secs(o.duration)),
            ("wrk_duration", &format!("{wrk_secs:.1}")),
            ("wrk_secs", &wrk_secs),
            ("wrk_rounds", &o.wrk_rounds.min(o.rounds)),
            ("sweep_duration", &secs(o.sweep_duration)),
            ("connections", &o.connections),
            ("sweep_connections", &comma_list(&o.sweep_connections)),
            ("elapsed", &format!("{:.0}", res.elapsed.as_secs_f64())),
            ("machine", &facts(&res.machine)),
            ("versions", &facts(&res.versions)),
            ("proxy_cpu", &res.proxy_cpu),
            ("client_cpu", &res.client_cpu),
            ("socket_path_env", &SOCKET_PATH_ENV),
            ("stock_rings_env", &STOCK_RINGS_ENV),
            ("keepalive", &crate::configs::UPSTREAM_KEEPALIVE),
            ("clk_tck", &format!("{:.0}", res.clk_tck)),
            ("round_order", &round_order(&o.proxies)),
            ("bound", &percent(BOUND)),
            ("nofile", &res.nofile),
            ("ratios", &ratios),
            ("throughput", &throughput),
            ("scenarios", &scenarios),
            ("skipped", &skipped_and_notes(res, plot_notes)),
        ],
    )
}

/// A load scenario's section: requests, table, latency plot, notes.
fn load_section(res: &Results, s: &LoadScenario, latency_svgs: &[(String, String)]) -> String {
    let o = &res.opts;
    let id = s.scenario.id();
    let paths = match s.paths.as_slice() {
        [one] => format!("`{one}`"),
        all => format!(
            "{} paths in turn: {}",
            all.len(),
            comma_list(&all.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>())
        ),
    };
    let rate = if s.rate > 0.0 {
        format!("{} req/s", fmt_num(s.rate, 0))
    } else {
        "not run".into()
    };
    let latency = latency_svgs
        .iter()
        .find(|(i, _)| i == id)
        .map_or_else(String::new, |(_, svg)| {
            fill(part("latency"), &[("id", &id), ("svg", svg)]) + "\n\n"
        });
    let mut notes: Vec<String> = Vec::new();
    if s.scenario == Scenario::Gateway {
        let routes: [(&str, &dyn Display); 1] = [("routes", &o.gateway_routes)];
        let nginx = fill(
            part(match o.nginx_routes {
                NginxRoutes::Prefix => "nginx-routes-prefix",
                NginxRoutes::Map => "nginx-routes-map",
                NginxRoutes::Regex => "nginx-routes-regex",
            }),
            &routes,
        );
        let haproxy = fill(
            part(match o.haproxy_routes {
                HaproxyRoutes::MapBeg => "haproxy-routes-map",
                HaproxyRoutes::Regex => "haproxy-routes-regex",
            }),
            &routes,
        );
        notes.push(fill(
            part("gateway"),
            &[
                ("nginx", &nginx),
                ("haproxy", &haproxy),
                ("routes", &o.gateway_routes),
                (
                    "positions",
                    &comma_list(&crate::configs::gateway_route_indexes(o.gateway_routes)),
                ),
            ],
        ));
    }
    for r in &s.rows {
        row_notes(&mut notes, r.proxy, r.failure.as_deref(), &r.codes);
        notes.extend(max_load_note(res, r));
    }
    notes.extend(s.notes.iter().cloned());
    fill(
        part("load"),
        &[
            (
                "title",
                &s.scenario.title(o.gateway_routes, o.idle_connections),
            ),
            ("id", &id),
            ("paths", &paths),
            ("rate", &rate),
            ("table", &load_table(s)),
            ("latency", &latency),
            ("notes", &notes_block(&notes)),
        ],
    )
}

/// The `gateway-keys` section: the keys and plain rows and the CPU ratio against its target.
fn keys_section(o: &Options, k: &KeysScenario) -> String {
    let mut table = table_head(&KEYS_COLUMNS);
    let mut notes: Vec<String> = Vec::new();
    for (label, r) in [("keys", &k.keys), ("plain", &k.plain)] {
        let busy = match (
            median_of(&r.closed, |p| p.proxy_busy),
            median_of(&r.closed, |p| p.client_busy),
        ) {
            (Some(a), Some(b)) => format!("{:.0}% / {:.0}%", a * 100.0, b * 100.0),
            _ => "—".into(),
        };
        let name = if r.ok() {
            format!("tollgate ({label})")
        } else {
            format!("tollgate ({label}) (FAILED, see notes)")
        };
        table.push_str(&table_row(&[
            name,
            opt(median_of(&r.closed, |p| p.rps), 0),
            opt(median_of(&r.closed, |p| p.cpu_us_per_req), 2),
            busy,
            if r.closed.is_empty() {
                "—".into()
            } else {
                r.closed.iter().map(|p| p.bad).sum::<u64>().to_string()
            },
            bound_of(&r.closed).unwrap_or(NOT_BOUND).to_string(),
        ]));
        if let Some(f) = &r.failure {
            notes.push(fill(
                part("not-measured"),
                &[
                    ("proxy", &format!("tollgate ({label})")),
                    ("why", &one_line(f)),
                ],
            ));
        }
    }
    notes.extend(k.notes.iter().cloned());
    let verdict = match k.cpu_ratio() {
        None => "not measured".to_string(),
        Some(r) if r <= KEYS_TARGET_RATIO => format!("**{}** — met", fmt_num(r, 3)),
        Some(r) => format!("**{}** — NOT met", fmt_num(r, 3)),
    };
    fill(
        part("gateway-keys"),
        &[
            (
                "title",
                &Scenario::GatewayKeys.title(o.gateway_routes, o.idle_connections),
            ),
            ("path", &k.paths.first().map_or("", String::as_str)),
            ("key", &crate::configs::TRAFFIC_KEY),
            ("rounds", &o.rounds),
            ("duration", &format!("{:.1}", o.duration.as_secs_f64())),
            ("connections", &o.connections),
            ("table", &table),
            ("ratio", &verdict),
            ("target", &fmt_num(KEYS_TARGET_RATIO, 2)),
            ("notes", &notes_block(&notes)),
        ],
    )
}

/// "1.234 / 1.456 / 1.300": one value per round, in round order.
fn per_round(phases: &[Phase], f: impl Fn(&Phase) -> f64, digits: usize) -> String {
    if phases.is_empty() {
        return "—".into();
    }
    phases
        .iter()
        .map(|p| fmt_num(f(p), digits))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Failed requests of a set of phases ("—" when none ran).
fn failed(phases: &[Phase]) -> String {
    if phases.is_empty() {
        "—".into()
    } else {
        phases.iter().map(|p| p.bad).sum::<u64>().to_string()
    }
}

/// The median of `f` over the phases of proxy `k`'s row at index `i` (None if not measured).
fn row_median(rows: &[SweepRow], k: ProxyKind, i: usize, f: impl Fn(&Phase) -> f64) -> Option<f64> {
    rows.iter()
        .find(|r| r.proxy == k)
        .and_then(|r| median_of(r.at(i), f))
}

/// Notes for the rows of a sweep-like scenario (not measured, status codes, peak RSS).
fn sweep_like_notes(rows: &[SweepRow], extra: &[String]) -> Vec<String> {
    let mut notes: Vec<String> = Vec::new();
    for r in rows {
        row_notes(&mut notes, r.proxy, r.failure.as_deref(), &r.codes);
    }
    let rss: Vec<String> = rows
        .iter()
        .filter(|r| r.peak_rss_kib > 0)
        .map(|r| {
            format!(
                "{} {} MiB",
                r.proxy.name(),
                fmt_num(r.peak_rss_kib as f64 / 1024.0, 1)
            )
        })
        .collect();
    if !rss.is_empty() {
        notes.push(fill(part("peak-rss"), &[("list", &rss.join(", "))]));
    }
    notes.extend(extra.iter().cloned());
    notes
}

/// A ratio cell, bold when tollgate is behind (the ratio is above 1).
fn ratio_marked(a: Option<f64>, b: Option<f64>) -> String {
    let r = ratio(a, b);
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a / b > 1.0 && r != "—" => format!("**{r}**"),
        _ => r,
    }
}

/// The README's fixed-rate rows: tollgate's CPU per request at each rate, its ratios against
/// nginx and HAProxy, and the p99 medians of the three (the table shape of the README's
/// Performance section).
pub fn readme_rows(f: &FixedRateScenario) -> String {
    let mut out = table_head(&README_FIXED_COLUMNS);
    for (i, rate) in f.rates.iter().enumerate() {
        let cpu = |k| row_median(&f.rows, k, i, |p| p.cpu_us_per_req);
        let p99 = |k| row_median(&f.rows, k, i, |p| p.p99_us).map(|v| v / 1000.0);
        let t = cpu(ProxyKind::Tollgate);
        out.push_str(&table_row(&[
            format!("fixed {} req/s", fmt_num(*rate, 0)),
            opt(t, 1),
            ratio_marked(t, cpu(ProxyKind::Nginx)),
            ratio_marked(t, cpu(ProxyKind::Haproxy)),
            format!(
                "{} / {} / {}",
                opt(p99(ProxyKind::Tollgate), 2),
                opt(p99(ProxyKind::Nginx), 2),
                opt(p99(ProxyKind::Haproxy), 2)
            ),
        ]));
    }
    out
}

fn fixed_table(f: &FixedRateScenario) -> String {
    let mut out = table_head(&FIXED_COLUMNS);
    for (i, rate) in f.rates.iter().enumerate() {
        let cpu = |k| row_median(&f.rows, k, i, |p| p.cpu_us_per_req);
        let p99 = |k| row_median(&f.rows, k, i, |p| p.p99_us).map(|v| v / 1000.0);
        for r in &f.rows {
            let phases = r.at(i);
            out.push_str(&table_row(&[
                format!("{} req/s", fmt_num(*rate, 0)),
                row_name(r.proxy, r.ok()),
                per_round(phases, |p| p.p99_us / 1000.0, 3),
                opt(p99(r.proxy), 3),
                opt(cpu(r.proxy), 2),
                opt(median_of(phases, |p| p.rps), 0),
                ratio(cpu(r.proxy), cpu(ProxyKind::Nginx)),
                ratio(cpu(r.proxy), cpu(ProxyKind::Haproxy)),
                ratio(p99(r.proxy), p99(ProxyKind::Nginx)),
                ratio(p99(r.proxy), p99(ProxyKind::Haproxy)),
                failed(phases),
                bound_of(phases).unwrap_or(NOT_BOUND).to_string(),
            ]));
        }
    }
    out
}

/// The `fixed-rate` section: per rate and proxy, each round's p99, medians and ratios, and the
/// README's rows.
fn fixed_section(res: &Results, f: &FixedRateScenario) -> String {
    let o = &res.opts;
    let rates: Vec<String> = f
        .rates
        .iter()
        .map(|r| format!("{} req/s", fmt_num(*r, 0)))
        .collect();
    let readme = if f.rows.iter().any(|r| r.proxy == ProxyKind::Tollgate) {
        fill(part("readme-rows"), &[("rows", &readme_rows(f))]) + "\n\n"
    } else {
        String::new()
    };
    fill(
        part("fixed-rate"),
        &[
            (
                "title",
                &Scenario::FixedRate.title(o.gateway_routes, o.idle_connections),
            ),
            ("rates", &rates.join(" and ")),
            ("connections", &o.connections),
            ("duration", &format!("{:.1}", o.duration.as_secs_f64())),
            ("proxy_cpu", &res.proxy_cpu),
            ("client_cpu", &res.client_cpu),
            ("rounds", &o.rounds),
            ("table", &fixed_table(f)),
            ("readme", &readme),
            ("notes", &notes_block(&sweep_like_notes(&f.rows, &f.notes))),
        ],
    )
}

/// The `access-log` and `scrape` sections: both rows, each round's values, the ratio against
/// its target.
fn pair_section(res: &Results, p: &PairScenario) -> String {
    let o = &res.opts;
    let mut notes: Vec<String> = Vec::new();
    let table = pair_table(p, &mut notes);
    notes.extend(p.notes.iter().cloned());
    let verdict = ratio_verdict(p.ratio(), p.target());
    let rounds = if p.scenario == Scenario::Scrape {
        o.rounds * crate::run::SCRAPE_ROUND_FACTOR
    } else {
        o.rounds
    };
    let noise = p
        .noise()
        .map_or_else(|| "not measured".to_string(), |n| fmt_num(n, 3));
    let name = if p.scenario == Scenario::Scrape {
        "scrape"
    } else {
        "access-log"
    };
    fill(
        part(name),
        &[
            (
                "title",
                &p.scenario.title(o.gateway_routes, o.idle_connections),
            ),
            ("rate", &format!("{} req/s", fmt_num(p.rate, 0))),
            ("rate_arg", &format!("{:.0}", p.rate)),
            ("connections", &o.connections),
            ("duration", &format!("{:.1}", o.duration.as_secs_f64())),
            ("rounds", &rounds),
            ("proxy_cpu", &res.proxy_cpu),
            ("client_cpu", &res.client_cpu),
            ("table", &table),
            ("ratio", &verdict),
            ("noise", &noise),
            ("target", &fmt_num(p.target(), 2)),
            ("count", &fmt_num(p.count as f64, 0)),
            ("notes", &notes_block(&notes)),
        ],
    )
}

/// The table of an `access-log` or `scrape` section, a row per measured configuration; their
/// failures and non-2xx codes go to `notes`.
fn pair_table(p: &PairScenario, notes: &mut Vec<String>) -> String {
    let labels: &[&str] = if p.scenario == Scenario::Scrape {
        &crate::run::SCRAPE_LABELS
    } else {
        &["tollgate (log off)", "tollgate (log on)"]
    };
    let mut table = table_head(&PAIR_COLUMNS);
    let rows = [Some(&p.base), Some(&p.with), p.control.as_ref()];
    for (label, r) in labels.iter().zip(rows.into_iter().flatten()) {
        let phases = p.phases(r);
        table.push_str(&table_row(&[
            labelled(label, r),
            opt(median_of(&phases, |p| p.rps), 0),
            per_round(&phases, |p| p.cpu_us_per_req, 2),
            opt(median_of(&phases, |p| p.cpu_us_per_req), 2),
            per_round(&phases, |p| p.p99_us / 1000.0, 3),
            opt(median_of(&phases, |p| p.p99_us).map(|v| v / 1000.0), 3),
            busy_pair(&phases),
            failed(&phases),
            bound_of(&phases).unwrap_or(NOT_BOUND).to_string(),
        ]));
        pair_row_notes(label, r, notes);
    }
    table
}

/// A row's label, marked when the row was not measured.
fn labelled(label: &str, r: &LoadRow) -> String {
    if r.ok() {
        label.to_string()
    } else {
        format!("{label} (not measured, see notes)")
    }
}

/// "proxy % / client %" busy, the medians over `phases` ("—" when not measured).
fn busy_pair(phases: &[Phase]) -> String {
    match (
        median_of(phases, |p| p.proxy_busy),
        median_of(phases, |p| p.client_busy),
    ) {
        (Some(a), Some(b)) => format!("{:.0}% / {:.0}%", a * 100.0, b * 100.0),
        _ => "—".into(),
    }
}

/// The notes of one row of a two-configuration section: why it was not measured, its non-2xx
/// status codes.
fn pair_row_notes(label: &str, r: &LoadRow, notes: &mut Vec<String>) {
    if let Some(f) = &r.failure {
        notes.push(fill(
            part("pair-not-measured"),
            &[("label", &label), ("why", &one_line(f))],
        ));
    }
    if !r.codes.is_empty() {
        notes.push(fill(
            part("codes"),
            &[("proxy", &label), ("codes", &r.codes.join("; "))],
        ));
    }
}

/// A ratio against its target: "**r** — met", "**r** — NOT met" or "not measured".
fn ratio_verdict(ratio: Option<f64>, target: f64) -> String {
    match ratio {
        None => "not measured".to_string(),
        Some(r) if r <= target => format!("**{}** — met", fmt_num(r, 3)),
        Some(r) => format!("**{}** — NOT met", fmt_num(r, 3)),
    }
}

/// The columns of the `cluster` scenario's closed-loop table.
pub const CLUSTER_CLOSED_COLUMNS: [&str; 10] = [
    "config",
    "req/s",
    "CPU µs/req per round",
    "CPU µs/req",
    "redis-server CPU µs/req",
    "tollgate + redis-server CPU µs/req",
    "Redis ops/s (tollgate)",
    "Redis commands/s (redis)",
    "CPU0 / CPU1 busy",
    "bound",
];

/// The columns of the `cluster` scenario's open-loop table.
pub const CLUSTER_OPEN_COLUMNS: [&str; 10] = [
    "rate",
    "req/s",
    "p99 ms",
    "CPU µs/req",
    "Redis ops/s (tollgate) per round",
    "Redis ops/s (tollgate)",
    "Redis commands/s (redis)",
    "Redis ops per 1,000 req",
    "lease refills/s needed (≥)",
    "redis-server CPU busy",
];

/// The `cluster` section: closed loop without and with `[cluster]` (tollgate's CPU, the
/// redis-server's, both ratios), open loop with `[cluster]` at each rate (Redis operations per
/// second from both counters), the Redis commands of the whole scenario.
fn cluster_section(res: &Results, c: &ClusterScenario) -> String {
    let o = &res.opts;
    let mut notes: Vec<String> = Vec::new();
    let closed = cluster_closed_table(c, &mut notes);
    let open = cluster_open_table(c);
    notes.extend(c.notes.iter().cloned());
    let verdict = ratio_verdict(c.cpu_ratio(), CLUSTER_TARGET_RATIO);
    fill(
        part("cluster"),
        &[
            (
                "title",
                &Scenario::Cluster.title(o.gateway_routes, o.idle_connections),
            ),
            ("path", &crate::configs::TRAFFIC_PATH),
            ("key", &crate::configs::TRAFFIC_KEY),
            ("connections", &o.connections),
            ("duration", &format!("{:.1}", o.duration.as_secs_f64())),
            ("rounds", &o.rounds),
            ("proxy_cpu", &res.proxy_cpu),
            ("client_cpu", &res.client_cpu),
            ("redis_version", &one_line(&c.redis_version)),
            (
                "rates",
                &c.rates
                    .iter()
                    .map(|r| format!("{} req/s", fmt_num(*r, 0)))
                    .collect::<Vec<_>>()
                    .join(" and "),
            ),
            ("max_lease", &fmt_num(MAX_LEASE as f64, 0)),
            ("ops_metric", &OPS_METRIC),
            ("closed", &closed),
            ("open", &open),
            ("ratio", &verdict),
            (
                "ratio_redis",
                &match c.cpu_ratio_with_redis() {
                    None => "not measured".to_string(),
                    Some(r) => fmt_num(r, 3),
                },
            ),
            ("target", &fmt_num(CLUSTER_TARGET_RATIO, 2)),
            ("growth", &cluster_growth(c)),
            ("commands", &cluster_commands(c)),
            ("notes", &notes_block(&notes)),
        ],
    )
}

/// The `cluster` closed-loop table, without then with `[cluster]`; failures and non-2xx codes
/// go to `notes`.
fn cluster_closed_table(c: &ClusterScenario, notes: &mut Vec<String>) -> String {
    let labels = ["tollgate (no cluster)", "tollgate (cluster)"];
    let mut closed = table_head(&CLUSTER_CLOSED_COLUMNS);
    for (label, (r, ops)) in labels
        .iter()
        .zip([(&c.base, &c.base_ops), (&c.with, &c.closed_ops)])
    {
        closed.push_str(&cluster_closed_row(label, r, ops));
        pair_row_notes(label, r, notes);
    }
    closed
}

/// One row of the `cluster` closed-loop table: `r`'s phases and the Redis readings of each.
fn cluster_closed_row(label: &str, r: &LoadRow, ops: &[OpsPhase]) -> String {
    let phases = &r.closed;
    let sum = median(
        phases
            .iter()
            .zip(ops)
            .filter_map(|(p, o)| Some(p.cpu_us_per_req + o.redis_cpu_us_per_req()?))
            .collect(),
    );
    table_row(&[
        labelled(label, r),
        opt(median_of(phases, |p| p.rps), 0),
        per_round(phases, |p| p.cpu_us_per_req, 2),
        opt(median_of(phases, |p| p.cpu_us_per_req), 2),
        opt(
            median(
                ops.iter()
                    .filter_map(|o| o.redis_cpu_us_per_req())
                    .collect(),
            ),
            2,
        ),
        opt(sum, 2),
        opt(
            median(ops.iter().filter_map(|o| o.tollgate_ops_per_s()).collect()),
            1,
        ),
        opt(
            median(
                ops.iter()
                    .filter_map(|o| o.redis_commands_per_s())
                    .collect(),
            ),
            1,
        ),
        busy_pair(phases),
        bound_of(phases).unwrap_or(NOT_BOUND).to_string(),
    ])
}

/// The `cluster` open-loop table: a row per rate.
fn cluster_open_table(c: &ClusterScenario) -> String {
    let mut open = table_head(&CLUSTER_OPEN_COLUMNS);
    for (i, &rate) in c.rates.iter().enumerate() {
        open.push_str(&cluster_open_row(c, i, rate));
    }
    open
}

/// The `cluster` open-loop row of rate `i` (`rate` req/s).
fn cluster_open_row(c: &ClusterScenario, i: usize, rate: f64) -> String {
    let phases: Vec<Phase> = c
        .open
        .get(i)
        .map(|v| v.iter().map(|(p, _)| p.clone()).collect())
        .unwrap_or_default();
    let ops_round: Vec<String> = c
        .open
        .get(i)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|(_, o)| opt(o.tollgate_ops_per_s(), 1))
        .collect();
    let per_1k = c.open_median(i, |_, o| {
        let n = o.tollgate_ops?;
        (o.requests > 0).then(|| n as f64 * 1000.0 / o.requests as f64)
    });
    table_row(&[
        format!("{} req/s", fmt_num(rate, 0)),
        opt(median_of(&phases, |p| p.rps), 0),
        opt(median_of(&phases, |p| p.p99_us).map(|v| v / 1000.0), 3),
        opt(median_of(&phases, |p| p.cpu_us_per_req), 2),
        if ops_round.is_empty() {
            "—".into()
        } else {
            ops_round.join(", ")
        },
        opt(c.open_median(i, |_, o| o.tollgate_ops_per_s()), 1),
        opt(c.open_median(i, |_, o| o.redis_commands_per_s()), 1),
        opt(per_1k, 2),
        fmt_num(rate / MAX_LEASE as f64, 1),
        c.open_median(i, |_, o| (o.secs > 0.0).then(|| o.redis_cpu_s / o.secs))
            .map_or_else(|| "—".into(), |v| format!("{:.1}%", v * 100.0)),
    ])
}

/// How the Redis operations per second grow from the lowest rate to the highest (empty with
/// fewer than two rates).
fn cluster_growth(c: &ClusterScenario) -> String {
    let (2.., Some(&lo), Some(&hi)) = (c.rates.len(), c.rates.first(), c.rates.last()) else {
        return String::new();
    };
    let first = c.open_median(0, |_, o| o.tollgate_ops_per_s());
    let last = c.open_median(c.rates.len() - 1, |_, o| o.tollgate_ops_per_s());
    let (Some(a), Some(b)) = (first, last) else {
        return "Redis operations per second: not measured.".into();
    };
    fill(
        part("cluster-growth"),
        &[
            ("lo", &fmt_num(lo, 0)),
            ("hi", &fmt_num(hi, 0)),
            ("ops_lo", &fmt_num(a, 1)),
            ("ops_hi", &fmt_num(b, 1)),
            (
                "delta",
                &if b - a >= -0.05 {
                    format!("{} more", fmt_num((b - a).max(0.0), 1))
                } else {
                    format!("{} fewer", fmt_num(a - b, 1))
                },
            ),
            ("refills", &fmt_num((hi - lo) / MAX_LEASE as f64, 1)),
        ],
    )
}

/// The Redis commands of the whole scenario with their counts ("not read" when unknown).
fn cluster_commands(c: &ClusterScenario) -> String {
    if c.commandstats.is_empty() {
        "not read".to_string()
    } else {
        c.commandstats
            .iter()
            .map(|(n, k)| format!("`{n}` {}", fmt_num(*k as f64, 0)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn https_table(h: &HttpsScenario) -> String {
    let mut out = table_head(&HTTPS_COLUMNS);
    for (i, mode) in h.modes.iter().enumerate() {
        let cpu = |k| row_median(&h.rows, k, i, |p| p.cpu_us_per_req);
        let rps = |k| row_median(&h.rows, k, i, |p| p.rps);
        for r in &h.rows {
            let phases = r.at(i);
            out.push_str(&table_row(&[
                mode.name().to_string(),
                row_name(r.proxy, r.ok()),
                opt(rps(r.proxy), 0),
                opt(cpu(r.proxy), 2),
                ratio(cpu(r.proxy), cpu(ProxyKind::Nginx)),
                ratio(cpu(r.proxy), cpu(ProxyKind::Haproxy)),
                ratio(rps(r.proxy), rps(ProxyKind::Nginx)),
                failed(phases),
                bound_of(phases).unwrap_or(NOT_BOUND).to_string(),
            ]));
        }
    }
    out
}

/// The `https` section: per mode and proxy, req/s and CPU per request with ratios.
fn https_section(res: &Results, h: &HttpsScenario) -> String {
    let o = &res.opts;
    fill(
        part("https"),
        &[
            (
                "title",
                &Scenario::Https.title(o.gateway_routes, o.idle_connections),
            ),
            ("connections", &o.connections),
            ("duration", &format!("{:.1}", o.duration.as_secs_f64())),
            ("rounds", &o.rounds),
            ("proxy_cpu", &res.proxy_cpu),
            ("certificate", &h.certificate),
            ("suite", &tollgate_load::tls::CIPHER_SUITE),
            ("group", &tollgate_load::tls::KX_GROUP),
            ("table", &https_table(h)),
            ("notes", &notes_block(&sweep_like_notes(&h.rows, &h.notes))),
        ],
    )
}

/// Which side a row's closed loop saturated, and how busy each was (None if not measured).
fn max_load_note(res: &Results, r: &LoadRow) -> Option<String> {
    let pb = median_of(&r.closed, |p| p.proxy_busy)?;
    let cb = median_of(&r.closed, |p| p.client_busy)?;
    let others_p = median_of(&r.closed, |p| p.others_proxy_cpu).unwrap_or(0.0);
    let others_c = median_of(&r.closed, |p| p.others_client_cpu).unwrap_or(0.0);
    let vars: [(&str, &dyn Display); 4] = [
        ("proxy_cpu", &res.proxy_cpu),
        ("client_cpu", &res.client_cpu),
        ("others_proxy", &percent(others_p)),
        ("others_client", &percent(others_c)),
    ];
    let verdict = if pb >= 0.9 {
        "proxy-saturated"
    } else if (pb + others_p >= 0.9 && others_p > OTHERS_NOTICEABLE)
        || (cb + others_c >= 0.9 && others_c > OTHERS_NOTICEABLE)
    {
        // Saturated only with other processes' help: the row says nothing about the proxy.
        "not-quiet-row"
    } else if cb >= 0.9 {
        "client-saturated"
    } else {
        "neither-saturated"
    };
    Some(fill(
        part("max-load"),
        &[
            ("proxy", &r.proxy.name()),
            ("proxy_busy", &percent(pb)),
            ("client_busy", &percent(cb)),
            ("load_busy", &pct(median_of(&r.closed, |p| p.load_busy))),
            ("origin_busy", &pct(median_of(&r.closed, |p| p.origin_busy))),
            ("verdict", &fill(part(verdict), &vars)),
        ],
    ))
}

/// A closed-loop-only scenario's section (`conns` or `2-shards`).
fn sweep_section(o: &Options, s: &SweepScenario) -> String {
    let mut notes: Vec<String> = Vec::new();
    for r in &s.rows {
        row_notes(&mut notes, r.proxy, r.failure.as_deref(), &r.codes);
    }
    let rss: Vec<String> = s
        .rows
        .iter()
        .filter(|r| r.peak_rss_kib > 0)
        .map(|r| {
            format!(
                "{} {} MiB",
                r.proxy.name(),
                fmt_num(r.peak_rss_kib as f64 / 1024.0, 1)
            )
        })
        .collect();
    if !rss.is_empty() {
        notes.push(fill(part("peak-rss"), &[("list", &rss.join(", "))]));
    }
    notes.extend(s.notes.iter().cloned());
    let name = if s.scenario == Scenario::TwoShards {
        "2-shards"
    } else {
        "conns"
    };
    fill(
        part(name),
        &[
            (
                "title",
                &s.scenario.title(o.gateway_routes, o.idle_connections),
            ),
            ("id", &s.scenario.id()),
            ("counts", &comma_list(&s.counts)),
            ("duration", &format!("{:.1}", s.duration.as_secs_f64())),
            ("workers", &s.workers),
            ("proxy_cpus", &cpu_list(&s.proxy_cpus)),
            ("client_cpus", &cpu_list(&s.client_cpus)),
            ("max_busy", &(s.proxy_cpus.len() * 100)),
            ("table", &sweep_table(s)),
            ("notes", &notes_block(&notes)),
        ],
    )
}

/// The idle-connection section: table, and which proxies could not hold every connection.
fn idle_section(o: &Options, rows: &[IdleRow]) -> String {
    let held: String = rows
        .iter()
        .filter(|r| r.failure.is_none() && r.held < r.requested)
        .map(|r| {
            let why = r
                .stopped
                .as_deref()
                .map_or_else(String::new, |s| format!(" ({})", one_line(s)));
            fill(
                part("idle-held"),
                &[
                    ("proxy", &r.proxy.name()),
                    ("held", &r.held),
                    ("requested", &r.requested),
                    ("why", &why),
                ],
            ) + "\n"
        })
        .collect();
    fill(
        part("idle"),
        &[
            (
                "title",
                &Scenario::Idle.title(o.gateway_routes, o.idle_connections),
            ),
            ("table", &idle_table(rows)),
            ("held", &held),
        ],
    ) + "\n"
}

/// The closing list: a machine that was not quiet, what was skipped, notes, scenarios not run.
fn skipped_and_notes(res: &Results, plot_notes: &[String]) -> String {
    let mut items: Vec<String> = Vec::new();
    let phases = || {
        res.loads
            .iter()
            .flat_map(|s| &s.rows)
            .flat_map(|r| r.closed.iter().chain(&r.open))
            .chain(
                res.sweeps
                    .iter()
                    .flat_map(|s| &s.rows)
                    .flat_map(|r| r.phases.iter().flatten()),
            )
            .chain(
                res.keys
                    .iter()
                    .flat_map(|k| k.keys.closed.iter().chain(&k.plain.closed)),
            )
            .chain(
                res.fixed
                    .iter()
                    .flat_map(|s| &s.rows)
                    .chain(res.https.iter().flat_map(|s| &s.rows))
                    .flat_map(|r| r.phases.iter().flatten()),
            )
            .chain(
                res.pairs
                    .iter()
                    .flat_map(|p| [&p.base, &p.with])
                    .flat_map(|r| r.closed.iter().chain(&r.open)),
            )
            .chain(
                res.cluster
                    .iter()
                    .flat_map(|c| [&c.base, &c.with])
                    .flat_map(|r| r.closed.iter().chain(&r.open)),
            )
    };
    let worst_p = phases().map(|p| p.others_proxy_cpu).fold(0.0, f64::max);
    let worst_c = phases().map(|p| p.others_client_cpu).fold(0.0, f64::max);
    if worst_p.max(worst_c) > OTHERS_NOTICEABLE {
        items.push(fill(
            part("not-quiet"),
            &[
                ("others_proxy", &percent(worst_p)),
                ("proxy_cpu", &res.proxy_cpu),
                ("others_client", &percent(worst_c)),
                ("client_cpu", &res.client_cpu),
            ],
        ));
    }
    items.extend(
        res.skipped
            .iter()
            .chain(&res.notes)
            .chain(plot_notes)
            .cloned(),
    );
    let not_run: Vec<&str> = ALL_SCENARIOS
        .iter()
        .filter(|s| !res.opts.scenarios.contains(s))
        .map(|s| s.id())
        .collect();
    if !not_run.is_empty() {
        items.push(fill(part("not-run"), &[("list", &not_run.join(", "))]));
    }
    if items.is_empty() {
        items.push(part("nothing-skipped").into());
    }
    bullets(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parts_and_placeholders() {
        assert_eq!(
            fill("a {{x}} {y} {{x}}{{s}}", &[("x", &1), ("s", &"!")]),
            "a 1 {y} 1!"
        );
        let doc = part("document");
        assert!(doc.starts_with("# tollgate side-by-side benchmark results\n"));
        assert!(doc.ends_with("{{skipped}}"), "{doc:?}");
        assert_eq!(part("nothing-skipped"), "Nothing was skipped.");
        // Every part is reachable by its marker and none is empty.
        for marker in TEMPLATE.lines().filter(|l| l.starts_with("<!-- part: ")) {
            let name = marker
                .trim_start_matches("<!-- part: ")
                .trim_end_matches(" -->");
            assert!(!part(name).trim().is_empty(), "part {name:?} is empty");
        }
    }

    #[test]
    fn number_formats() {
        assert_eq!(fmt_num(1234567.0, 0), "1,234,567");
        assert_eq!(fmt_num(999.0, 0), "999");
        assert_eq!(fmt_num(1.23456, 2), "1.23");
        assert_eq!(fmt_num(f64::NAN, 2), "—");
        assert_eq!(ratio(Some(2.0), Some(4.0)), "0.50×");
        assert_eq!(ratio(Some(2.0), None), "—");
        assert_eq!(ratio(Some(2.0), Some(0.0)), "—");
    }
}
