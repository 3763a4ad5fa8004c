//! Smoke test of the comparison harness: a quick run of the plain, gateway-keys,
//! connection-sweep and two-shard scenarios with tiny phases (`--duration-ms 300 --rounds 1`), using the debug
//! `tollgate` and `tollgate-load` from the same target directory (`--bin-dir`; `cargo test
//! --workspace` builds them). It checks that RESULTS.md has every column and section with
//! numbers for tollgate, tollgate-poll and tollgate-stock, and for nginx and HAProxy where they
//! are installed;
//! where they are not, the report must say they were skipped. A second run does the same for
//! the issue scenarios (`fixed-rate`, `access-log`, `scrape`, `https`) at low rates, and a
//! third the `cluster` scenario (where `redis-server` is installed).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BENCH: &str = env!("CARGO_BIN_EXE_tollgate-bench");

/// The whole run must end by then (it took ~30 s on a quiet machine with four proxies; five
/// now, so about 40 s).
const LIMIT: Duration = Duration::from_secs(120);

/// The runs that measure load take this lock, so they run one at a time: on a 2-core machine
/// two at once starve each other's proxies and phases fail for lack of CPU.
static RUNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_run_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    RUNS.lock().unwrap_or_else(|e| e.into_inner())
}

fn installed(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .any(|d| d.join(name).is_file())
}

/// The cells of the first table row in the section `section` whose cells satisfy `want`.
fn find_row<'a>(
    md: &'a str,
    section: &str,
    want: impl Fn(&[&str]) -> bool,
) -> Option<Vec<&'a str>> {
    let start = md.find(section)?;
    let end = md[start + 1..]
        .find("\n### ")
        .map_or(md.len(), |e| start + 1 + e);
    md[start..end].lines().find_map(|l| {
        let cells: Vec<&str> = l
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        want(&cells).then_some(cells)
    })
}

/// The cells of the table row whose first cell is exactly `name`, in the section `section`.
fn row<'a>(md: &'a str, section: &str, name: &str) -> Option<Vec<&'a str>> {
    find_row(md, section, |c| c.first() == Some(&name))
}

/// The cells of the sweep-table row for `conns` connections and proxy `name` in `section`.
fn sweep_row<'a>(md: &'a str, section: &str, conns: &str, name: &str) -> Option<Vec<&'a str>> {
    find_row(md, section, |c| {
        c.first() == Some(&conns) && c.get(1) == Some(&name)
    })
}

/// What a saturation-mark cell may hold.
fn bound_cell(cell: &str) -> bool {
    [
        "—",
        "client-bound",
        "origin-bound",
        "client-bound, origin-bound",
    ]
    .contains(&cell)
}

fn numeric(cell: &str) -> bool {
    let c = cell.trim_end_matches('×').replace(',', "");
    let c = c.split(" / ").next().unwrap_or("").trim_end_matches('%');
    c.parse::<f64>().is_ok_and(f64::is_finite)
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn quick_plain_run_reports_every_column() {
    let _serial = one_run_at_a_time();
    // target/debug/tollgate-bench → target/debug has tollgate and tollgate-load too.
    let bin_dir = Path::new(BENCH)
        .parent()
        .expect("bench binary has a directory");
    let missing: Vec<&str> = ["tollgate", "tollgate-load"]
        .into_iter()
        .filter(|b| !bin_dir.join(b).is_file())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "SKIPPED: {} not built in {} (`cargo test --workspace` builds them; or run `cargo build -p tollgate -p tollgate-load`)",
            missing.join(" and "),
            bin_dir.display()
        );
        return;
    }
    let out =
        TempDir(std::env::temp_dir().join(format!("tollgate-bench-smoke-{}", std::process::id())));
    std::fs::create_dir_all(&out.0).expect("create out dir");
    let mut child = Command::new(BENCH)
        .args([
            "--quick",
            "--duration-ms",
            "300",
            "--rounds",
            "1",
            "--scenarios",
            "plain,gateway-keys,conns,2-shards",
        ])
        .arg("--out")
        .arg(&out.0)
        .arg("--bin-dir")
        .arg(bin_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tollgate-bench");
    let end = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > end {
            // SIGTERM: the harness kills its children and removes its temp dir.
            // SAFETY: kill(2) on our own child's pid; no memory involved.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            std::thread::sleep(Duration::from_secs(2));
            let _ = child.kill();
            let _ = child.wait();
            panic!("tollgate-bench did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().expect("output");
    let log = String::from_utf8_lossy(&output.stderr).to_string();
    let md = std::fs::read_to_string(out.0.join("RESULTS.md"))
        .unwrap_or_else(|e| panic!("no RESULTS.md ({e}); harness said:\n{log}"));

    for col in [
        "req/s (tollgate-load)",
        "req/s (wrk)",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "CPU µs/req (max load)",
        "CPU µs/req (fixed rate)",
        "peak RSS MiB",
        "CPU0 / CPU1 busy",
        "| bound |",
        // the connection sweep and 2-shards tables
        "| connections | proxy | req/s | CPU µs/req | req/s ÷ nginx | CPU µs/req ÷ nginx |",
        "CPU busy: proxy / load gen / origin",
        // the ratio summary
        "| scenario | tollgate / tollgate-poll req/s | tollgate / tollgate-poll CPU µs/req | tollgate / tollgate-stock req/s | tollgate / tollgate-stock CPU µs/req | tollgate / nginx req/s | tollgate / nginx CPU µs/req | tollgate / HAProxy req/s | tollgate / HAProxy CPU µs/req | bound |",
    ] {
        assert!(md.contains(col), "column {col:?} missing:\n{md}");
    }
    for head in [
        "## Machine",
        "## Versions",
        "## Method",
        "## Ratios",
        "(`conns`)\n",
        "(`2-shards`)\n",
        "the generator and origin share the CPUs, so CPU µs per request carries the comparison",
        "**tollgate-poll.**",
        "TOLLGATE_SOCKET_PATH=poll",
        "**tollgate-stock.**",
        "GLOMMIO_STOCK_RINGS=1",
        "**Saturation marks.**",
        "nginx",
        "HAProxy",
        "tollgate",
    ] {
        assert!(md.contains(head), "{head:?} missing:\n{md}");
    }
    let wrk = installed("wrk");
    let mut measured = vec!["tollgate", "tollgate-poll", "tollgate-stock"];
    for (name, program) in [("nginx", "nginx"), ("HAProxy", "haproxy")] {
        if installed(program) {
            measured.push(name);
        }
    }
    for section in ["(`plain-0`)", "(`plain-1k`)"] {
        let mut measured = vec!["tollgate", "tollgate-poll", "tollgate-stock"];
        for (name, program) in [("nginx", "nginx"), ("HAProxy", "haproxy")] {
            if installed(program) {
                measured.push(name);
            } else {
                assert!(
                    md.contains(&format!("{name} skipped: not installed")),
                    "{name} is not installed: the report must say it was skipped:\n{md}"
                );
            }
        }
        for name in &measured {
            let cells = row(&md, section, name)
                .unwrap_or_else(|| panic!("no measured row for {name} in {section}:\n{md}\n{log}"));
            // proxy, rps, wrk rps, p50, p99, p99.9, cpu max, cpu rate, rss, busy, failed, bound
            assert_eq!(cells.len(), 12, "{name} {section}: {cells:?}");
            for (i, cell) in cells.iter().enumerate().take(11).skip(1) {
                if i == 2 && !wrk {
                    continue;
                }
                assert!(
                    numeric(cell),
                    "{name} {section}: column {i} is {cell:?}:\n{md}\n{log}"
                );
            }
            assert!(
                bound_cell(cells[11]),
                "{name} {section}: bound column is {:?}",
                cells[11]
            );
        }
        for other in measured.iter().skip(1) {
            let label = format!("tollgate / {other}");
            let cells = row(&md, section, &label)
                .unwrap_or_else(|| panic!("no ratio row {label:?} in {section}:\n{md}"));
            for (i, cell) in cells.iter().enumerate().take(9).skip(1) {
                if i == 2 && !wrk {
                    continue;
                }
                assert!(
                    cell.ends_with('×') && numeric(cell),
                    "{label} {section}: ratio column {i} is {cell:?}:\n{md}"
                );
            }
        }
    }
    // The connection sweep and the two-shard scenario: req/s, CPU µs/req and the ratios to
    // nginx for every proxy at every connection count.
    for (section, counts) in [
        ("(`conns`)\n", &["16", "64", "256"][..]),
        ("(`2-shards`)\n", &["64"][..]),
    ] {
        for conns in counts {
            for name in &measured {
                let cells = sweep_row(&md, section, conns, name).unwrap_or_else(|| {
                    panic!("no row for {name} at {conns} connections in {section}:\n{md}\n{log}")
                });
                assert_eq!(cells.len(), 9, "{section} {conns} {name}: {cells:?}");
                for i in [2, 3, 7] {
                    assert!(
                        numeric(cells[i]),
                        "{name} {section} {conns}: column {i} is {:?}:\n{md}\n{log}",
                        cells[i]
                    );
                }
                if installed("nginx") {
                    for i in [4, 5] {
                        assert!(
                            cells[i].ends_with('×') && numeric(cells[i]),
                            "{name} {section} {conns}: ratio column {i} is {:?}:\n{md}",
                            cells[i]
                        );
                    }
                }
                assert!(bound_cell(cells[8]), "{section}: bound is {:?}", cells[8]);
            }
        }
    }
    // The ratio summary: tollgate ÷ tollgate-poll and ÷ tollgate-stock for every scenario and
    // connection count.
    for label in [
        "`plain-0`",
        "`plain-1k`",
        "`conns`, 16 connections",
        "`conns`, 64 connections",
        "`conns`, 256 connections",
        "`2-shards`, 64 connections",
    ] {
        let cells = row(&md, "## Ratios", label)
            .unwrap_or_else(|| panic!("no ratio summary row {label:?}:\n{md}"));
        assert_eq!(cells.len(), 10, "{label}: {cells:?}");
        let mut ratio_cols = vec![1, 2, 3, 4];
        if installed("nginx") {
            ratio_cols.extend([5, 6]);
        }
        if installed("haproxy") {
            ratio_cols.extend([7, 8]);
        }
        for i in ratio_cols {
            assert!(
                cells[i].ends_with('×') && numeric(cells[i]),
                "ratio summary {label}: column {i} is {:?}:\n{md}",
                cells[i]
            );
        }
    }
    // gateway-keys: tollgate on the keyed and the plain config, both measured (numbers, no
    // failed request), and the keys ÷ plain CPU ratio with its target.
    let section = "(`gateway-keys`)\n";
    for name in ["tollgate (keys)", "tollgate (plain)"] {
        let cells = row(&md, section, name)
            .unwrap_or_else(|| panic!("no measured row {name:?} in {section}:\n{md}\n{log}"));
        // config, rps, cpu, busy, failed, bound
        assert_eq!(cells.len(), 6, "{name}: {cells:?}");
        for (i, cell) in cells.iter().enumerate().take(5).skip(1) {
            assert!(
                numeric(cell),
                "{name} gateway-keys: column {i} is {cell:?}:\n{md}\n{log}"
            );
        }
        assert_eq!(cells[4], "0", "{name}: failed requests:\n{md}\n{log}");
        assert!(bound_cell(cells[5]), "{name}: bound is {:?}", cells[5]);
    }
    let ratio_line = md
        .lines()
        .find(|l| l.starts_with("CPU per request keys ÷ plain (medians): **"))
        .unwrap_or_else(|| panic!("no keys ÷ plain ratio:\n{md}\n{log}"));
    let value = ratio_line
        .split("**")
        .nth(1)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("ratio not a number: {ratio_line}"));
    assert!(
        value > 0.5 && value < 3.0 && ratio_line.contains("(target ≤ 1.10"),
        "{ratio_line}"
    );
    let bars = std::fs::read_to_string(out.0.join("throughput.svg")).unwrap_or_default();
    for needle in ["tollgate-poll", "tollgate-stock", "conns-256", "2-shards"] {
        assert!(bars.contains(needle), "throughput.svg lacks {needle:?}");
    }
    for svg in [
        "throughput.svg",
        "latency-plain-0.svg",
        "latency-plain-1k.svg",
    ] {
        assert!(md.contains(svg), "{svg} not referenced");
        let text = std::fs::read_to_string(out.0.join(svg)).unwrap_or_default();
        assert!(text.starts_with("<svg"), "{svg} not written");
    }
    assert!(status.success(), "tollgate-bench failed: {status}\n{log}");
}

/// Runs tollgate-bench with `args` (plus `--out` and `--bin-dir`) within [`LIMIT`]; None when
/// the binaries it needs are not built. Returns RESULTS.md, the harness's log and whether it
/// succeeded.
fn run_bench(args: &[&str]) -> Option<(String, String, bool)> {
    let bin_dir = Path::new(BENCH)
        .parent()
        .expect("bench binary has a directory");
    if ["tollgate", "tollgate-load"]
        .iter()
        .any(|b| !bin_dir.join(b).is_file())
    {
        eprintln!(
            "SKIPPED: tollgate or tollgate-load not built in {}",
            bin_dir.display()
        );
        return None;
    }
    // One directory per run: the tests of this file may run at the same time.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = TempDir(
        std::env::temp_dir().join(format!("tollgate-bench-smoke2-{}-{n}", std::process::id())),
    );
    std::fs::create_dir_all(&out.0).expect("create out dir");
    let mut child = Command::new(BENCH)
        .args(args)
        .arg("--out")
        .arg(&out.0)
        .arg("--bin-dir")
        .arg(bin_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tollgate-bench");
    let end = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > end {
            // SAFETY: kill(2) on our own child's pid; no memory involved.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            std::thread::sleep(Duration::from_secs(2));
            let _ = child.kill();
            let _ = child.wait();
            panic!("tollgate-bench did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().expect("output");
    let log = String::from_utf8_lossy(&output.stderr).to_string();
    let md = std::fs::read_to_string(out.0.join("RESULTS.md"))
        .unwrap_or_else(|e| panic!("no RESULTS.md ({e}); harness said:\n{log}"));
    Some((md, log, status.success()))
}

/// The issue scenarios at rates a debug build sustains: every section, its rows with numbers,
/// the README rows, the ratio lines, and TLS handshakes that match their modes (a mismatch
/// leaves the phase out, and the row's cells empty).
#[test]
fn issue_scenarios_report_their_rows() {
    let _serial = one_run_at_a_time();
    let Some((md, log, ok)) = run_bench(&[
        "--duration-ms",
        "500",
        "--rounds",
        "1",
        "--scenarios",
        "fixed-rate,access-log,scrape,https",
        "--fixed-rates",
        "200,400",
        // Fewer than the default 64: the debug builds' warm-ups on a shared machine.
        "--connections",
        "16",
        "--proxies",
        "tollgate,nginx,haproxy",
    ]) else {
        return;
    };
    assert!(ok, "tollgate-bench failed:\n{log}");
    let mut anchors = vec!["tollgate"];
    for (name, program) in [("nginx", "nginx"), ("HAProxy", "haproxy")] {
        if installed(program) {
            anchors.push(name);
        }
    }
    for rate in ["200 req/s", "400 req/s"] {
        for name in &anchors {
            let cells = sweep_row(&md, "(`fixed-rate`)\n", rate, name)
                .unwrap_or_else(|| panic!("no {rate} row for {name}:\n{md}\n{log}"));
            assert_eq!(cells.len(), 12, "{cells:?}");
            for i in [2, 3, 4, 5] {
                assert!(
                    numeric(cells[i]),
                    "{name} {rate}: column {i} is {:?}:\n{md}",
                    cells[i]
                );
            }
            assert_eq!(
                cells[10], "0",
                "{name} {rate}: failed requests:\n{md}\n{log}"
            );
        }
    }
    for rate in ["fixed 200 req/s", "fixed 400 req/s"] {
        let cells = row(&md, "(`fixed-rate`)\n", rate)
            .unwrap_or_else(|| panic!("no README row {rate:?}:\n{md}"));
        assert!(numeric(cells[1]), "{cells:?}");
    }
    for (section, names, ratio) in [
        (
            "(`access-log`)\n",
            &["tollgate (log off)", "tollgate (log on)"][..],
            "CPU per request log on ÷ off (medians): **",
        ),
        (
            "(`scrape`)\n",
            &[
                "tollgate (no scrape)",
                "tollgate (scrape 1/s)",
                "tollgate (no scrape, control)",
            ][..],
            "every phase without, base and control): **",
        ),
    ] {
        for name in names {
            let cells = row(&md, section, name)
                .unwrap_or_else(|| panic!("no row {name:?} in {section}:\n{md}\n{log}"));
            assert_eq!(cells.len(), 9, "{cells:?}");
            for i in [1, 3, 5] {
                assert!(
                    numeric(cells[i]),
                    "{name}: column {i} is {:?}:\n{md}",
                    cells[i]
                );
            }
            assert_eq!(cells[7], "0", "{name}: failed requests:\n{md}\n{log}");
        }
        assert!(md.contains(ratio), "{ratio:?} missing:\n{md}");
    }
    assert!(
        !md.contains("Successful scrapes: 0."),
        "no scrape succeeded:\n{md}\n{log}"
    );
    assert!(
        !md.contains("Log lines counted after the *log on* phases: 0."),
        "{md}"
    );
    for mode in [
        "keep-alive",
        "full handshake per request",
        "resumed handshake per request",
    ] {
        for name in &anchors {
            let cells = sweep_row(&md, "(`https`)\n", mode, name)
                .unwrap_or_else(|| panic!("no {mode} row for {name}:\n{md}\n{log}"));
            assert!(
                numeric(cells[2]) && numeric(cells[3]),
                "{name} {mode}: {cells:?}:\n{md}\n{log}"
            );
            assert_eq!(
                cells[7], "0",
                "{name} {mode}: failed requests:\n{md}\n{log}"
            );
        }
    }
    assert!(
        !md.contains("the phase is left out"),
        "handshakes did not match:\n{md}"
    );
}

#[test]
fn pipeline_bench_runs_the_request_pipeline() {
    // The callgrind bench binary must keep working against tollgate-core's API.
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .arg("50")
        .output()
        .expect("run pipeline");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("50 iterations"),
        "pipeline failed: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn traffic_bench_decides_without_refusing() {
    // The callgrind traffic bench: every keyed decision admitted with the key, none on the
    // config without limits; a refusal or a missing key makes the binary fail.
    for (mode, want) in [("keyed", "50 keyed"), ("open", "0 keyed")] {
        let out = Command::new(env!("CARGO_BIN_EXE_traffic"))
            .args(["50", mode])
            .output()
            .expect("run traffic");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("50 iterations") && stdout.contains(want),
            "traffic {mode} failed: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn traffic_bench_configs_load() {
    // `traffic config keys|plain` prints the configs bench/callgrind-keys.sh compares: both
    // must load, on the given ports, and only `keys` may need an API key.
    for (mode, required) in [("keys", true), ("plain", false)] {
        let out = Command::new(env!("CARGO_BIN_EXE_traffic"))
            .args(["config", mode, "18123", "19123"])
            .output()
            .expect("run traffic config");
        assert!(
            out.status.success(),
            "traffic config {mode}: {}",
            out.status
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("port = 18123") && text.contains("127.0.0.1:19123"));
        let gw = tollgate_core::config::load_str("<traffic config>", &text)
            .unwrap_or_else(|e| panic!("traffic config {mode} does not load: {e:?}\n{text}"));
        assert_eq!(
            gw.traffic.keys.len(),
            if required { 2 } else { 0 },
            "{mode}: keys"
        );
        assert_eq!(
            text.contains("api_key_required = true"),
            required,
            "{mode}:\n{text}"
        );
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_traffic"))
        .args(["config", "nokeys", "1", "2"])
        .output()
        .expect("run traffic config");
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown mode is a usage error"
    );
}

/// The `cluster` scenario at rates a debug build sustains (skipped without redis-server): both
/// closed-loop rows with numbers, the cluster row's Redis operations counted by tollgate and by
/// Redis, an open-loop row per rate with operations, the ratio lines, Redis's commandstats.
#[test]
fn cluster_scenario_counts_redis_operations() {
    let _serial = one_run_at_a_time();
    if !installed("redis-server") {
        eprintln!("SKIPPED: redis-server is not installed");
        return;
    }
    let Some((md, log, ok)) = run_bench(&[
        "--duration-ms",
        "600",
        "--rounds",
        "1",
        "--scenarios",
        "cluster",
        "--fixed-rates",
        "200,400",
        "--connections",
        "16",
        "--proxies",
        "tollgate",
    ]) else {
        return;
    };
    assert!(ok, "tollgate-bench failed:\n{log}");
    let section = "(`cluster`)\n";
    for name in ["tollgate (no cluster)", "tollgate (cluster)"] {
        let cells =
            row(&md, section, name).unwrap_or_else(|| panic!("no row {name:?}:\n{md}\n{log}"));
        assert_eq!(cells.len(), 10, "{cells:?}");
        for i in [1, 3, 4, 5, 7] {
            assert!(
                numeric(cells[i]),
                "{name}: column {i} is {:?}:\n{md}",
                cells[i]
            );
        }
    }
    let cells = row(&md, section, "tollgate (cluster)").expect("cluster row");
    let ops: f64 = cells[6].replace(',', "").parse().unwrap_or(0.0);
    assert!(
        ops > 0.0,
        "the cluster host sent no Redis operation: {cells:?}\n{md}\n{log}"
    );
    let cells = row(&md, section, "tollgate (no cluster)").expect("single-host row");
    assert_eq!(cells[6], "—", "no [cluster], no counter: {cells:?}");
    for rate in ["200 req/s", "400 req/s"] {
        let cells = row(&md, section, rate)
            .unwrap_or_else(|| panic!("no open-loop row {rate:?}:\n{md}\n{log}"));
        for i in [1, 3, 5, 6, 7] {
            assert!(
                numeric(cells[i]),
                "{rate}: column {i} is {:?}:\n{md}",
                cells[i]
            );
        }
        let ops: f64 = cells[5].replace(',', "").parse().unwrap_or(0.0);
        assert!(ops > 0.0, "{rate}: {cells:?}");
    }
    assert!(
        md.contains("CPU per request with `[cluster]` ÷ without, tollgate only (medians): **"),
        "{md}"
    );
    assert!(md.contains("Including the redis-server's CPU: "), "{md}");
    assert!(
        !md.contains("Including the redis-server's CPU: not measured"),
        "{md}"
    );
    assert!(
        md.contains("`evalsha` "),
        "Redis ran no lease or demand script:\n{md}"
    );
    assert!(md.contains("per second); the extra lease refills"), "{md}");
}
