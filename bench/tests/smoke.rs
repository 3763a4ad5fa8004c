//! Smoke test of the comparison harness: a quick run of the plain scenario with tiny phases
//! (`--duration-ms 300 --rounds 1`), using the debug `tollgate` and `tollgate-load` from the
//! same target directory (`--bin-dir`; `cargo test --workspace` builds them). It checks that
//! RESULTS.md has every column with numbers for tollgate, and for nginx and HAProxy where they
//! are installed; where they are not, the report must say they were skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BENCH: &str = env!("CARGO_BIN_EXE_tollgate-bench");

/// The whole run must end by then (it takes ~15 s on a quiet machine).
const LIMIT: Duration = Duration::from_secs(120);

fn installed(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .any(|d| d.join(name).is_file())
}

/// The cells of the table row whose first cell is exactly `name`, in the section `section`.
fn row<'a>(md: &'a str, section: &str, name: &str) -> Option<Vec<&'a str>> {
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
        (cells.first() == Some(&name)).then_some(cells)
    })
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
            "plain",
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
    ] {
        assert!(md.contains(col), "column {col:?} missing:\n{md}");
    }
    for head in [
        "## Machine",
        "## Versions",
        "## Method",
        "nginx",
        "HAProxy",
        "tollgate",
    ] {
        assert!(md.contains(head), "{head:?} missing:\n{md}");
    }
    let wrk = installed("wrk");
    for section in ["(`plain-0`)", "(`plain-1k`)"] {
        let mut measured = vec!["tollgate"];
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
            // proxy, rps, wrk rps, p50, p99, p99.9, cpu max, cpu rate, rss, busy, failed
            for (i, cell) in cells.iter().enumerate().skip(1) {
                if i == 2 && !wrk {
                    continue;
                }
                assert!(
                    numeric(cell),
                    "{name} {section}: column {i} is {cell:?}:\n{md}\n{log}"
                );
            }
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
