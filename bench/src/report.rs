//! `RESULTS.md` and its plots: date, machine, versions, the method, one table per scenario
//! (medians over rounds, ratios tollgate ÷ nginx and tollgate ÷ HAProxy), notes on what was
//! skipped and which side saturated, and the SVG files it links.

use crate::plot;
use crate::run::{median, median_of, IdleRow, LoadRow, LoadScenario, ProxyKind, Results};
use std::fmt::Write as _;
use std::path::Path;

/// The columns of a load-scenario table (the smoke test looks for these names).
pub const LOAD_COLUMNS: [&str; 11] = [
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

fn table_row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

fn table_head(cols: &[&str]) -> String {
    let mut s = table_row(&cols.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    s.push_str(&table_row(
        &cols
            .iter()
            .enumerate()
            .map(|(i, _)| {
                if i == 0 {
                    ":--".to_string()
                } else {
                    "--:".to_string()
                }
            })
            .collect::<Vec<_>>(),
    ));
    s
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
        let name = if r.ok() {
            r.proxy.name().to_string()
        } else {
            format!("{} (not measured, see notes)", r.proxy.name())
        };
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
        ]));
    }
    let Some(t) = s.rows.iter().find(|r| r.proxy == ProxyKind::Tollgate) else {
        return out;
    };
    let tn = numbers(t);
    for other in s.rows.iter().filter(|r| r.proxy != ProxyKind::Tollgate) {
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
        ]));
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
                one_cell(f),
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
            r.stopped.as_deref().map_or_else(String::new, one_cell),
        ]));
    }
    if let Some(t) = rows.iter().find(|r| r.proxy == ProxyKind::Tollgate) {
        for o in rows.iter().filter(|r| r.proxy != ProxyKind::Tollgate) {
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

fn one_cell(s: &str) -> String {
    crate::run::one_line(s)
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
            .map(|r| (r.proxy.name().to_string(), r.proxy.index(), r.curve.clone()))
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
    let proxies: Vec<ProxyKind> = ProxyKind::ALL
        .into_iter()
        .filter(|k| {
            res.loads
                .iter()
                .any(|s| s.rows.iter().any(|r| r.proxy == *k))
        })
        .collect();
    let mut throughput = None;
    if !res.loads.is_empty() && !proxies.is_empty() {
        let groups: Vec<String> = res
            .loads
            .iter()
            .map(|s| s.scenario.id().to_string())
            .collect();
        let values: Vec<Vec<Option<f64>>> = res
            .loads
            .iter()
            .map(|s| {
                proxies
                    .iter()
                    .map(|k| {
                        s.rows
                            .iter()
                            .find(|r| r.proxy == *k)
                            .and_then(|r| median_of(&r.closed, |p| p.rps))
                    })
                    .collect()
            })
            .collect();
        let names: Vec<(String, usize)> = proxies
            .iter()
            .map(|k| (k.name().to_string(), k.index()))
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

/// Renders RESULTS.md (and writes the SVGs) into `dir`. Returns the Markdown.
pub fn write(res: &Results, dir: &Path) -> std::io::Result<String> {
    std::fs::create_dir_all(dir)?;
    let mut plot_notes = Vec::new();
    let (latency_svgs, throughput_svg) = write_plots(res, dir, &mut plot_notes);
    let md = render(res, &latency_svgs, throughput_svg.as_deref(), &plot_notes);
    std::fs::write(dir.join("RESULTS.md"), &md)?;
    Ok(md)
}

/// The Markdown text of RESULTS.md.
pub fn render(
    res: &Results,
    latency_svgs: &[(String, String)],
    throughput_svg: Option<&str>,
    plot_notes: &[String],
) -> String {
    let o = &res.opts;
    let mut md = String::new();
    let _ = writeln!(md, "# tollgate side-by-side benchmark results\n");
    let _ = writeln!(
        md,
        "Written by `tollgate-bench` (`cargo run --release -p tollgate-bench -- --{}`); do not edit by hand: run it again.\n",
        if o.mode == "full" { "full" } else { "quick" }
    );
    let _ = writeln!(md, "- **Date:** {}", res.date);
    let _ = writeln!(
        md,
        "- **Mode:** {} — {} round(s) of {:.1} s per load phase, {} connections",
        o.mode,
        o.rounds,
        o.duration.as_secs_f64(),
        o.connections
    );
    let _ = writeln!(md, "- **Run time:** {:.0} s", res.elapsed.as_secs_f64());
    let _ = writeln!(md, "\n## Machine\n");
    for (k, v) in &res.machine {
        let _ = writeln!(md, "- **{k}:** {v}");
    }
    let _ = writeln!(md, "\n## Versions\n");
    for (k, v) in &res.versions {
        let _ = writeln!(md, "- **{k}:** {v}");
    }

    let proxy_cpu = res.proxy_cpu;
    let client_cpu = res.client_cpu;
    let _ = writeln!(md, "\n## Method\n");
    let wrk_rounds = o.wrk_rounds.min(o.rounds);
    let method = [
        format!(
            "**Pinning.** The proxy under test runs on CPU {proxy_cpu} (affinity set at spawn, as `taskset -c {proxy_cpu}`): tollgate with `--shards 1` and `pin_cpus = true`, nginx with `worker_processes 1` (master + 1 worker), HAProxy with `nbthread 1`. The origin and the load generator share CPU {client_cpu}: they may saturate it, and then the throughput columns are bounded by CPU {client_cpu}, not by the proxy — the CPU time per request carries the comparison. The column *CPU0 / CPU1 busy* shows which side saturated (proxy CPU time ÷ wall time; origin + load generator CPU time ÷ wall time)."
        ),
        "**Origin.** `tollgate-bench origin`: a single-threaded epoll HTTP/1.1 server with pre-built responses (0 bytes on `/0` and the gateway paths, 1 KiB on `/1k`, 64 KiB on `/64k`), keep-alive, chosen because it costs less CPU per request than nginx as an origin.".to_string(),
        "**Equivalent proxy settings.** All on 127.0.0.1 with free ports, configs generated into a temp dir (removed afterwards). Upstream keep-alive: nginx `keepalive 64` + `proxy_http_version 1.1` + `proxy_set_header Connection \"\"`, HAProxy `http-reuse always`, tollgate's per-shard pool (64 idle). No access logs anywhere. The same work per request: `X-Forwarded-For/-Proto/-Port` to the origin and a request id on every response (tollgate's `x-amzn-RequestId`; nginx `add_header x-amzn-RequestId $request_id`; HAProxy `unique-id` in a response header). Client keep-alive 60 s, no per-connection request limit (nginx `keepalive_requests` raised).".to_string(),
        format!(
            "**Throughput.** Closed loop: `tollgate-load -c {c} -t 1 -d {d:.1}s`, and `wrk -t1 -c{c}` for reference (wrk counts whole seconds; it runs in the first {wrk_rounds} round(s) only; in the gateway scenario it cycles the paths with a Lua script, which costs wrk extra CPU).",
            c = o.connections,
            d = o.duration.as_secs_f64()
        ),
        format!(
            "**Latency.** Open loop at a fixed rate, the same for every proxy: half of the slowest proxy's closed-loop median, measured in the same run; `tollgate-load -R <rate> -c {}`, latency from each request's intended send time (coordinated omission corrected). p50/p99/p99.9 in milliseconds.",
            o.connections
        ),
        format!(
            "**CPU time per request.** utime + stime from `/proc/PID/stat` summed over every process of the proxy's process group (nginx master + worker; HAProxy; tollgate), sampled before and after each load phase, ticks → µs with `sysconf(_SC_CLK_TCK)` = {:.0}, divided by the responses received. *Max load* is the closed-loop phase, *fixed rate* the open-loop phase (identical offered load for every proxy).",
            res.clk_tck
        ),
        "**Memory.** Peak RSS: `VmHWM` from `/proc/PID/status` summed over the proxy's processes (pages shared between nginx's master and worker count in each), read at the end of the scenario; every scenario starts fresh proxy processes. Idle connections: each connection completes one request and stays open; RSS (`VmRSS`) is read before and after, and (RSS_N − RSS_0) ÷ N is reported with N = connections still open at the reading.".to_string(),
        format!(
            "**Rounds.** {} round(s); in each round the proxies run one after the other (tollgate, nginx, HAProxy, tollgate, ...), all closed-loop rounds first, then the open-loop rounds at the rate they set; every cell is the median over rounds. The idle-connection scenario runs once per proxy.",
            o.rounds
        ),
        "**Ratios.** `tollgate / X` = tollgate's value ÷ X's value: above 1 means tollgate is higher — better for req/s, worse for latency, CPU and memory.".to_string(),
        format!("**Limits.** Open files raised to {} for the harness and every child (nginx `worker_rlimit_nofile`/`worker_connections`, HAProxy `maxconn` follow).", res.nofile),
    ];
    for m in method {
        let _ = writeln!(md, "- {m}");
    }

    let _ = writeln!(md, "\n## Results\n");
    if let Some(t) = throughput_svg {
        let _ = writeln!(md, "![Closed-loop throughput per scenario]({t})\n");
    }
    for s in &res.loads {
        let _ = writeln!(
            md,
            "### {} (`{}`)\n",
            s.scenario.title(o.gateway_routes, o.idle_connections),
            s.scenario.id()
        );
        let paths = if s.paths.len() == 1 {
            format!("`{}`", s.paths[0])
        } else {
            format!(
                "{} paths in turn: {}",
                s.paths.len(),
                s.paths
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let rate = if s.rate > 0.0 {
            format!("{} req/s", fmt_num(s.rate, 0))
        } else {
            "not run".into()
        };
        let _ = writeln!(
            md,
            "Requests: {paths}. Latency columns at the fixed open-loop rate of {rate}.\n"
        );
        md.push_str(&load_table(s));
        md.push('\n');
        if let Some((_, svg)) = latency_svgs.iter().find(|(id, _)| id == s.scenario.id()) {
            let _ = writeln!(md, "![Latency by percentile, {}]({svg})\n", s.scenario.id());
        }
        let mut notes: Vec<String> = Vec::new();
        if s.scenario == crate::run::Scenario::Gateway {
            notes.push(format!(
                "Routing only: API keys, usage plans, throttling and authorizers do not exist in tollgate yet, so they are not measured. tollgate: {n} routes `GET /svc{{i}}/items/{{id}}` in its route trie; nginx: {n} regex `location`s (first match wins, `pcre_jit on`) and a 404 `location /`; HAProxy: {n} `path_reg` ACLs with one `use_backend` each and a 404 backend. The requested routes are spread over the table (positions {}), so the first-match proxies pay their average cost.",
                crate::configs::gateway_route_indexes(o.gateway_routes)
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                n = o.gateway_routes
            ));
        }
        for r in &s.rows {
            if let Some(f) = &r.failure {
                notes.push(format!(
                    "**{} not measured:** {}",
                    r.proxy.name(),
                    one_cell(f)
                ));
            }
            if !r.codes.is_empty() {
                notes.push(format!(
                    "{}: non-2xx status codes seen: {}",
                    r.proxy.name(),
                    r.codes.join("; ")
                ));
            }
            if let (Some(pb), Some(cb)) = (
                median_of(&r.closed, |p| p.proxy_busy),
                median_of(&r.closed, |p| p.client_busy),
            ) {
                let others_p = median_of(&r.closed, |p| p.others_proxy_cpu).unwrap_or(0.0);
                let others_c = median_of(&r.closed, |p| p.others_client_cpu).unwrap_or(0.0);
                let verdict = if pb >= 0.9 {
                    format!("the proxy saturated CPU {proxy_cpu}")
                } else if pb + others_p >= 0.9 || cb + others_c >= 0.9 {
                    format!(
                        "other processes took {:.0}% of CPU {proxy_cpu} and {:.0}% of CPU {client_cpu}: the machine was not quiet, so this row is not comparable",
                        others_p * 100.0,
                        others_c * 100.0
                    )
                } else if cb >= 0.9 {
                    format!(
                        "CPU {client_cpu} (origin + load generator) saturated first: the proxy had room left, its req/s is a lower bound"
                    )
                } else {
                    "neither CPU saturated (latency-bound: connections × round-trip)".into()
                };
                notes.push(format!(
                    "{} at max load: proxy CPU {:.0}%, client CPU {:.0}% — {verdict}.",
                    r.proxy.name(),
                    pb * 100.0,
                    cb * 100.0
                ));
            }
        }
        notes.extend(s.notes.iter().cloned());
        if !notes.is_empty() {
            let _ = writeln!(md, "Notes:\n");
            for n in notes {
                let _ = writeln!(md, "- {n}");
            }
            md.push('\n');
        }
    }
    if let Some(rows) = &res.idle {
        let _ = writeln!(
            md,
            "### {} (`idle`)\n",
            crate::run::Scenario::Idle.title(o.gateway_routes, o.idle_connections)
        );
        let _ = writeln!(md, "Each connection sent `GET /0` and got its response; then all stay open and idle while RSS is read.\n");
        md.push_str(&idle_table(rows));
        md.push('\n');
        for r in rows {
            if r.failure.is_none() && r.held < r.requested {
                let _ = writeln!(
                    md,
                    "- {}: only {} of {} connections could be held{}.",
                    r.proxy.name(),
                    r.held,
                    r.requested,
                    r.stopped
                        .as_deref()
                        .map_or_else(String::new, |s| format!(" ({})", one_cell(s)))
                );
            }
        }
        md.push('\n');
    }

    let _ = writeln!(md, "## Skipped and notes\n");
    let mut any = false;
    let phases = || {
        res.loads
            .iter()
            .flat_map(|s| &s.rows)
            .flat_map(|r| r.closed.iter().chain(&r.open))
    };
    let worst_p = phases().map(|p| p.others_proxy_cpu).fold(0.0, f64::max);
    let worst_c = phases().map(|p| p.others_client_cpu).fold(0.0, f64::max);
    if worst_p.max(worst_c) > crate::run::OTHERS_NOTICEABLE {
        let _ = writeln!(
            md,
            "- **The machine was not quiet:** during load phases, other processes used up to {:.0}% of CPU {proxy_cpu} (the proxy's) and up to {:.0}% of CPU {client_cpu} (origin + load generator), measured from `/proc/stat`. Numbers from such a run are not comparable; run again on a quiet machine.",
            worst_p * 100.0,
            worst_c * 100.0
        );
        any = true;
    }
    for s in res.skipped.iter().chain(&res.notes).chain(plot_notes) {
        let _ = writeln!(md, "- {s}");
        any = true;
    }
    let not_run: Vec<&str> = crate::run::ALL_SCENARIOS
        .iter()
        .filter(|s| !o.scenarios.contains(s))
        .map(|s| s.id())
        .collect();
    if !not_run.is_empty() {
        let _ = writeln!(
            md,
            "- Scenarios not run this time (`--scenarios`): {}.",
            not_run.join(", ")
        );
        any = true;
    }
    if !any {
        let _ = writeln!(md, "- Nothing was skipped.");
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

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
