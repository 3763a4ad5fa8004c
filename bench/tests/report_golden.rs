//! The report renders exactly as it did: `report::render` of a fixed in-memory result set
//! (every scenario kind, failures, status codes, notes, skipped proxies, plots, a machine that
//! was not quiet) must equal `tests/golden/RESULTS.md`, which was generated from the report
//! code before its prose moved into `templates/report.md`. Run with `BLESS_REPORT=1` to
//! rewrite the expected file after an intended change to the report (and review the diff).

use std::path::{Path, PathBuf};
use std::time::Duration;
use tollgate_bench::load::WrkResult;
use tollgate_bench::report;
use tollgate_bench::run::{
    IdleRow, LoadRow, LoadScenario, Options, Phase, ProxyKind, Results, Scenario, SweepRow,
    SweepScenario, Tools, ALL_SCENARIOS,
};

/// A phase with distinct values everywhere, so that a column read from the wrong field shows.
fn phase(rps: f64, cpu: f64, proxy_busy: f64, client_busy: f64) -> Phase {
    Phase {
        requests: (rps * 2.0) as u64,
        rps,
        cpu_us_per_req: cpu,
        proxy_busy,
        client_busy,
        load_busy: client_busy * 0.6,
        origin_busy: client_busy * 0.4,
        p50_us: 1000.0 * 1_000_000.0 / rps / 40.0,
        p99_us: 3100.0 * 1_000_000.0 / rps / 40.0,
        p999_us: 7300.0 * 1_000_000.0 / rps / 40.0,
        ..Phase::default()
    }
}

fn load_row(proxy: ProxyKind, rounds: Vec<Phase>, wrk: &[f64], rss_kib: u64) -> LoadRow {
    LoadRow {
        proxy,
        failure: None,
        closed: rounds.clone(),
        wrk: wrk
            .iter()
            .map(|&rps| WrkResult {
                requests: (rps * 2.0) as u64,
                rps,
                bad: 0,
            })
            .collect(),
        open: rounds
            .into_iter()
            .map(|p| Phase {
                rps: 5000.0,
                cpu_us_per_req: p.cpu_us_per_req * 1.3,
                ..p
            })
            .collect(),
        peak_rss_kib: rss_kib,
        curve: Vec::new(),
        codes: Vec::new(),
    }
}

fn sweep_row(proxy: ProxyKind, per_count: Vec<Vec<Phase>>, rss_kib: u64) -> SweepRow {
    SweepRow {
        proxy,
        failure: None,
        phases: per_count,
        peak_rss_kib: rss_kib,
        codes: Vec::new(),
    }
}

fn idle_row(proxy: ProxyKind, held: usize, rss0: u64, rss_n: u64) -> IdleRow {
    IdleRow {
        proxy,
        failure: None,
        requested: 10_000,
        opened: held,
        held,
        rss0_kib: rss0,
        rss_n_kib: rss_n,
        peak_kib: rss_n + 512,
        stopped: None,
    }
}

fn fixture() -> Results {
    let opts = Options {
        mode: "full".into(),
        duration: Duration::from_millis(4000),
        wrk_duration: Duration::from_millis(2000),
        sweep_duration: Duration::from_millis(2000),
        rounds: 3,
        wrk_rounds: 1,
        connections: 64,
        sweep_connections: vec![16, 64, 256],
        idle_connections: 10_000,
        gateway_routes: 1000,
        scenarios: vec![
            Scenario::Plain0,
            Scenario::Gateway,
            Scenario::Conns,
            Scenario::TwoShards,
            Scenario::Idle,
        ],
        proxies: ProxyKind::ALL.to_vec(),
        out: PathBuf::from("/nonexistent"),
        bin_dir: PathBuf::from("/nonexistent/release"),
        self_exe: PathBuf::from("/nonexistent/tollgate-bench"),
        workspace: PathBuf::from("/nonexistent"),
    };
    let plain = LoadScenario {
        scenario: Scenario::Plain0,
        paths: vec!["/0".into()],
        rate: 12_345.0,
        rows: vec![
            // Saturated proxy CPU.
            load_row(
                ProxyKind::Tollgate,
                vec![
                    phase(52_000.0, 18.1, 0.97, 0.80),
                    phase(50_000.0, 18.4, 0.96, 0.81),
                    phase(51_000.0, 18.2, 0.98, 0.79),
                ],
                &[49_000.0],
                3 * 1024 + 100,
            ),
            // Neither CPU saturated.
            load_row(
                ProxyKind::TollgatePoll,
                vec![phase(41_000.0, 22.5, 0.85, 0.70)],
                &[40_000.0],
                3 * 1024,
            ),
            // Client side saturated, with non-2xx codes and a client-bound mark.
            LoadRow {
                codes: vec!["404: 3".into(), "502: 1".into()],
                ..load_row(
                    ProxyKind::TollgateStock,
                    vec![Phase {
                        client_bound: true,
                        bad: 4,
                        ..phase(30_000.0, 31.0, 0.70, 0.96)
                    }],
                    &[],
                    2900,
                )
            },
            // Another process took CPU meanwhile: the machine was not quiet.
            load_row(
                ProxyKind::Nginx,
                vec![Phase {
                    others_proxy_cpu: 0.12,
                    others_client_cpu: 0.08,
                    ..phase(45_000.0, 20.0, 0.80, 0.85)
                }],
                &[44_000.5],
                9000,
            ),
            LoadRow {
                failure: Some("did not start: haproxy exited\n  [ALERT] bad | config\n".into()),
                ..load_row(ProxyKind::Haproxy, Vec::new(), &[], 0)
            },
        ],
        notes: vec!["wrk against HAProxy: connection refused".into()],
    };
    let gateway = LoadScenario {
        scenario: Scenario::Gateway,
        paths: vec![
            "/svc0/items/1000".into(),
            "/svc249/items/8919".into(),
            "/svc499/items/16838".into(),
        ],
        rate: 0.0,
        rows: vec![
            load_row(
                ProxyKind::Tollgate,
                vec![Phase {
                    origin_bound: true,
                    ..phase(38_000.0, 24.0, 0.9, 0.5)
                }],
                &[37_000.0],
                4096,
            ),
            load_row(
                ProxyKind::Nginx,
                vec![phase(21_000.0, 44.0, 0.99, 0.4)],
                &[],
                8192,
            ),
        ],
        notes: Vec::new(),
    };
    let conns = SweepScenario {
        scenario: Scenario::Conns,
        counts: vec![16, 64, 256],
        workers: 1,
        proxy_cpus: vec![0],
        client_cpus: vec![1],
        duration: Duration::from_millis(2000),
        rows: vec![
            sweep_row(
                ProxyKind::Tollgate,
                vec![
                    vec![phase(30_000.0, 20.0, 0.6, 0.9)],
                    vec![phase(50_000.0, 18.0, 0.95, 0.9)],
                    vec![Phase {
                        client_bound: true,
                        ..phase(52_000.0, 17.5, 0.96, 0.97)
                    }],
                ],
                5000,
            ),
            sweep_row(
                ProxyKind::Nginx,
                vec![
                    vec![phase(28_000.0, 22.0, 0.6, 0.9)],
                    vec![phase(45_000.0, 20.0, 0.95, 0.9)],
                    vec![phase(46_000.0, 19.5, 0.96, 0.92)],
                ],
                12_000,
            ),
            SweepRow {
                failure: Some("64 connections: tollgate-poll exited (code Some(1))".into()),
                codes: vec!["503: 12".into()],
                ..sweep_row(
                    ProxyKind::TollgatePoll,
                    vec![vec![phase(25_000.0, 24.0, 0.7, 0.8)], Vec::new(), Vec::new()],
                    0,
                )
            },
        ],
        notes: vec!["nginx used 7% of a CPU while idle during tollgate's 16-connection phase (round 1): that CPU time was taken from the proxy under test.".into()],
    };
    let two = SweepScenario {
        scenario: Scenario::TwoShards,
        counts: vec![64],
        workers: 2,
        proxy_cpus: vec![0, 1],
        client_cpus: vec![0, 1],
        duration: Duration::from_millis(2000),
        rows: vec![
            sweep_row(
                ProxyKind::Tollgate,
                vec![vec![Phase {
                    origin_bound: true,
                    ..phase(60_000.0, 21.0, 1.2, 0.8)
                }]],
                7000,
            ),
            sweep_row(
                ProxyKind::Haproxy,
                vec![vec![phase(55_000.0, 23.0, 1.1, 0.85)]],
                15_000,
            ),
        ],
        notes: Vec::new(),
    };
    let idle = vec![
        idle_row(ProxyKind::Tollgate, 10_000, 4000, 4000 + 10_000 * 3),
        IdleRow {
            stopped: Some("connect: too many open files\nEMFILE".into()),
            ..idle_row(ProxyKind::Nginx, 8_192, 9000, 9000 + 8_192 * 5)
        },
        IdleRow {
            failure: Some("did not start: port in use".into()),
            ..idle_row(ProxyKind::Haproxy, 0, 0, 0)
        },
    ];
    Results {
        date: "2026-11-30 06:00:00 UTC".into(),
        machine: vec![
            ("CPUs (nproc)".into(), "2".into()),
            ("CPU model".into(), "Example CPU @ 2.00GHz".into()),
            ("kernel".into(), "6.1.0".into()),
        ],
        versions: vec![
            ("tollgate".into(), "tollgate 0.1.0 (git abc1234)".into()),
            ("wrk".into(), "not installed".into()),
        ],
        opts,
        tools: Tools {
            tollgate: PathBuf::from("/nonexistent/tollgate"),
            load: PathBuf::from("/nonexistent/tollgate-load"),
            nginx: None,
            haproxy: None,
            wrk: None,
        },
        proxy_cpu: 0,
        client_cpu: 1,
        nofile: 65_536,
        clk_tck: 100.0,
        loads: vec![plain, gateway],
        sweeps: vec![conns, two],
        idle: Some(idle),
        skipped: vec!["wrk not installed: the wrk column is empty".into()],
        notes: vec!["tollgate-bench itself was a debug build.".into()],
        elapsed: Duration::from_millis(612_400),
    }
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compares `md` with the expected file `name` (or rewrites it under `BLESS_REPORT=1`).
fn check(md: &str, name: &str) {
    let path = golden(name);
    if std::env::var_os("BLESS_REPORT").is_some() {
        std::fs::write(&path, md).expect("write the expected report");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (generate with BLESS_REPORT=1)", path.display()));
    if md != want {
        let first = md
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(md.lines().count().min(want.lines().count()));
        panic!(
            "report differs from {} at line {}:\n got: {:?}\nwant: {:?}",
            path.display(),
            first + 1,
            md.lines().nth(first),
            want.lines().nth(first)
        );
    }
}

#[test]
fn full_report_is_unchanged() {
    let res = fixture();
    let md = report::render(
        &res,
        &[("plain-0".into(), "latency-plain-0.svg".into())],
        Some("throughput.svg"),
        &["Could not draw latency-gateway.svg: no data".into()],
    );
    check(&md, "RESULTS-full.md");
}

/// Quick mode, nothing skipped, no plots, no ratio section, every scenario left out.
#[test]
fn sparse_report_is_unchanged() {
    let mut res = fixture();
    res.opts.mode = "quick".into();
    res.opts.scenarios = vec![Scenario::Idle];
    res.opts.proxies = vec![ProxyKind::Nginx, ProxyKind::Tollgate];
    res.loads.clear();
    res.sweeps.clear();
    res.skipped.clear();
    res.notes.clear();
    let md = report::render(&res, &[], None, &[]);
    assert!(ALL_SCENARIOS.len() > res.opts.scenarios.len());
    check(&md, "RESULTS-sparse.md");
}

/// No scenario at all and a quiet machine: "Nothing was skipped."
#[test]
fn empty_report_is_unchanged() {
    let mut res = fixture();
    res.opts.mode = "custom".into();
    res.opts.scenarios = ALL_SCENARIOS.to_vec();
    res.opts.proxies.clear();
    res.loads.clear();
    res.sweeps.clear();
    res.idle = None;
    res.skipped.clear();
    res.notes.clear();
    res.machine.clear();
    let md = report::render(&res, &[], None, &[]);
    check(&md, "RESULTS-empty.md");
}
