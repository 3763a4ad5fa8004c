//! The report from in-memory result sets. Golden: `report::render` of a fixed result set
//! (every scenario kind, failures, status codes, notes, skipped proxies, plots, a machine that
//! was not quiet) must equal `tests/golden/RESULTS-*.md`, generated from the report code before
//! its prose moved into `templates/report.md`; run with `BLESS_REPORT=1` to rewrite them after
//! an intended change to the report (and review the diff). Semantics: ratios, bound marks and
//! row order computed by hand from a small result set.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tollgate_bench::configs::{HaproxyRoutes, NginxRoutes};
use tollgate_bench::load::WrkResult;
use tollgate_bench::report;
use tollgate_bench::run::{
    ClusterScenario, FixedRateScenario, HttpsMode, HttpsScenario, IdleRow, KeysScenario, LoadRow,
    LoadScenario, OpsPhase, Options, PairScenario, Phase, ProxyKind, Results, Scenario, SweepRow,
    SweepScenario, ALL_SCENARIOS,
};

/// A phase with distinct values everywhere, so that a column read from the wrong field shows.
fn phase(rps: f64, cpu: f64, proxy_busy: f64, client_busy: f64) -> Phase {
    Phase {
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
        wrk: wrk.iter().map(|&rps| WrkResult { rps, bad: 0 }).collect(),
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
        fixed_rates: vec![10_000.0, 30_000.0],
        nginx_routes: NginxRoutes::Prefix,
        haproxy_routes: HaproxyRoutes::MapBeg,
        scenarios: vec![
            Scenario::Plain0,
            Scenario::Gateway,
            Scenario::GatewayKeys,
            Scenario::FixedRate,
            Scenario::AccessLog,
            Scenario::Scrape,
            Scenario::Https,
            Scenario::Cluster,
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
        proxy_cpu: 0,
        client_cpu: 1,
        nofile: 65_536,
        clk_tck: 100.0,
        loads: vec![plain, gateway],
        sweeps: vec![conns, two],
        idle: Some(idle),
        memory: None,
        keys: Some(keys_scenario(
            vec![
                phase(41_000.0, 21.7, 0.96, 0.81),
                phase(40_500.0, 21.9, 0.97, 0.80),
                phase(41_200.0, 21.5, 0.96, 0.82),
            ],
            vec![
                phase(42_000.0, 20.6, 0.96, 0.82),
                phase(42_400.0, 20.4, 0.95, 0.83),
                phase(41_900.0, 20.8, 0.96, 0.82),
            ],
        )),
        fixed: Some(fixed_scenario()),
        pairs: vec![access_log_scenario(), scrape_scenario()],
        https: Some(https_scenario()),
        cluster: Some(cluster_scenario()),
        skipped: vec!["wrk not installed: the wrk column is empty".into()],
        notes: vec!["tollgate-bench itself was a debug build.".into()],
        elapsed: Duration::from_millis(612_400),
    }
}

/// An open-loop phase at `rate` with the given p99 (ms) and CPU per request.
fn rate_phase(rate: f64, p99_ms: f64, cpu: f64) -> Phase {
    Phase {
        rps: rate * 0.999,
        cpu_us_per_req: cpu,
        proxy_busy: rate * cpu / 1e6,
        client_busy: 0.4,
        p50_us: p99_ms * 250.0,
        p99_us: p99_ms * 1000.0,
        p999_us: p99_ms * 1500.0,
        ..Phase::default()
    }
}

/// `fixed-rate` at 10,000 and 30,000 req/s, three rounds: tollgate behind nginx at 10,000
/// req/s (CPU and p99), ahead at 30,000; HAProxy failed its second rate.
fn fixed_scenario() -> FixedRateScenario {
    let rounds = |rate, v: &[(f64, f64)]| -> Vec<Phase> {
        v.iter()
            .map(|&(p99, cpu)| rate_phase(rate, p99, cpu))
            .collect()
    };
    let (a, b) = (10_000.0, 30_000.0);
    FixedRateScenario {
        rates: vec![a, b],
        rows: vec![
            sweep_row(
                ProxyKind::Tollgate,
                vec![
                    rounds(a, &[(1.4, 61.0), (1.2, 59.0), (2.9, 64.0)]),
                    rounds(b, &[(0.9, 18.0), (1.1, 19.0), (1.0, 18.5)]),
                ],
                3000,
            ),
            sweep_row(
                ProxyKind::Nginx,
                vec![
                    rounds(a, &[(0.8, 42.0), (0.9, 43.0), (0.7, 42.5)]),
                    rounds(b, &[(1.3, 20.0), (1.2, 19.5), (1.5, 19.0)]),
                ],
                9000,
            ),
            SweepRow {
                failure: Some("30000 req/s: tollgate-load wrote no report".into()),
                ..sweep_row(
                    ProxyKind::Haproxy,
                    vec![
                        rounds(a, &[(1.0, 46.0), (1.1, 46.5), (0.9, 47.0)]),
                        Vec::new(),
                    ],
                    12_000,
                )
            },
        ],
        notes: vec![
            "HAProxy round 2: the open loop at 10000 req/s reached only 9400 req/s.".into(),
        ],
    }
}

fn pair(
    scenario: Scenario,
    rate: f64,
    base: Vec<Phase>,
    with: Vec<Phase>,
    control: Option<Vec<Phase>>,
    count: u64,
) -> PairScenario {
    let row = |phases: Vec<Phase>| {
        let mut r = load_row(ProxyKind::Tollgate, Vec::new(), &[], 30_000);
        r.wrk.clear();
        if scenario == Scenario::Scrape {
            r.open = phases;
        } else {
            r.closed = phases;
        }
        r
    };
    PairScenario {
        scenario,
        rate,
        base: row(base),
        with: row(with),
        control: control.map(row),
        count,
        notes: Vec::new(),
    }
}

/// `access-log`: medians 20.0 off, 21.0 on: 1.050, met.
fn access_log_scenario() -> PairScenario {
    let p = |rps, cpu| phase(rps, cpu, 0.96, 0.8);
    pair(
        Scenario::AccessLog,
        0.0,
        vec![p(50_000.0, 20.0), p(49_000.0, 20.5), p(51_000.0, 19.5)],
        vec![p(47_000.0, 21.0), p(46_000.0, 21.5), p(48_000.0, 20.9)],
        None,
        1_410_000,
    )
}

/// `scrape` at 10,000 req/s: p99 median 1.20 ms with; without, the base phases' 0.9-1.1 and
/// the control's 1.2-1.4 pool to a median of 1.15: 1.043, met; control ÷ base 1.300.
fn scrape_scenario() -> PairScenario {
    let r = |p99, cpu| rate_phase(10_000.0, p99, cpu);
    pair(
        Scenario::Scrape,
        10_000.0,
        vec![r(1.0, 30.0), r(0.9, 31.0), r(1.1, 30.5)],
        vec![r(1.2, 31.0), r(1.3, 31.5), r(1.1, 30.8)],
        Some(vec![r(1.3, 30.0), r(1.4, 30.2), r(1.2, 30.4)]),
        12,
    )
}

/// `https`: three modes, tollgate, nginx and HAProxy, one round.
fn https_scenario() -> HttpsScenario {
    let p = |rps: f64, cpu| vec![phase(rps, cpu, 0.95, 0.7)];
    HttpsScenario {
        modes: HttpsMode::ALL.to_vec(),
        rows: vec![
            sweep_row(
                ProxyKind::Tollgate,
                vec![p(40_000.0, 24.0), p(2_000.0, 480.0), p(6_000.0, 160.0)],
                5000,
            ),
            sweep_row(
                ProxyKind::Nginx,
                vec![p(30_000.0, 32.0), p(2_400.0, 400.0), p(5_000.0, 190.0)],
                9000,
            ),
            sweep_row(
                ProxyKind::Haproxy,
                vec![p(32_000.0, 30.0), p(2_200.0, 440.0), p(5_500.0, 175.0)],
                12_000,
            ),
        ],
        certificate: "self-signed ECDSA P-256 (SHA-256), generated at run time".into(),
        notes: vec!["nginx: resumed handshake per request round 1: only 10 of 100 handshakes were resumed; the phase is left out.".into()],
    }
}

/// A `gateway-keys` result: tollgate's keys and plain rows (closed loop only).
fn keys_scenario(keys: Vec<Phase>, plain: Vec<Phase>) -> KeysScenario {
    let row = |closed: Vec<Phase>| LoadRow {
        open: Vec::new(),
        wrk: Vec::new(),
        closed,
        ..load_row(ProxyKind::Tollgate, Vec::new(), &[], 30_000)
    };
    KeysScenario {
        paths: vec!["/prod/items/8a7b6c5d".into()],
        keys: row(keys),
        plain: row(plain),
        notes: Vec::new(),
    }
}

/// A `cluster` result, three rounds: closed loop without and with `[cluster]` (tollgate's
/// CPU, the redis-server's, the counters), open loop at 10,000 and 30,000 req/s with it.
fn cluster_scenario() -> ClusterScenario {
    let row = |closed: Vec<Phase>| LoadRow {
        open: Vec::new(),
        wrk: Vec::new(),
        closed,
        ..load_row(ProxyKind::Tollgate, Vec::new(), &[], 31_000)
    };
    let ops = |secs, requests, tollgate_ops, redis_commands, redis_cpu_s| OpsPhase {
        secs,
        requests,
        tollgate_ops,
        redis_commands: Some(redis_commands),
        redis_cpu_s,
    };
    let open = |rate: f64, v: &[(f64, u64)]| -> Vec<(Phase, OpsPhase)> {
        v.iter()
            .map(|&(p99, n)| {
                (
                    rate_phase(rate, p99, 22.0),
                    ops(4.0, (rate * 4.0) as u64, Some(n), 440, 0.04),
                )
            })
            .collect()
    };
    ClusterScenario {
        base: row(vec![
            phase(40_000.0, 20.0, 0.96, 0.80),
            phase(40_400.0, 20.4, 0.96, 0.81),
            phase(40_200.0, 20.2, 0.97, 0.80),
        ]),
        with: row(vec![
            phase(39_000.0, 20.8, 0.96, 0.82),
            phase(38_600.0, 21.0, 0.97, 0.83),
            phase(38_000.0, 21.6, 0.96, 0.82),
        ]),
        closed_ops: vec![
            ops(4.2, 160_000, Some(42), 420, 0.16),
            ops(4.2, 160_000, Some(63), 462, 0.32),
            ops(4.2, 160_000, Some(46), 504, 0.16),
        ],
        base_ops: vec![ops(4.2, 170_000, None, 399, 0.0); 3],
        rates: vec![10_000.0, 30_000.0],
        open: vec![
            open(10_000.0, &[(1.1, 48), (1.2, 52), (1.0, 50)]),
            open(30_000.0, &[(1.5, 60), (1.4, 64), (1.6, 56)]),
        ],
        redis_version: "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64".into(),
        commandstats: vec![
            ("evalsha".into(), 1200),
            ("time".into(), 1200),
            ("hset".into(), 300),
        ],
        notes: vec!["Round 2: the open loop at 30000 req/s reached only 28000 req/s.".into()],
    }
}

/// A small result set whose ratios are easy to check by hand: one round, busy 50 % / 30 % /
/// 20 % everywhere.
fn small() -> Results {
    let p = |rps, cpu| phase(rps, cpu, 0.5, 0.5);
    let one = |proxy, ph| load_row(proxy, vec![ph], &[], 2048);
    let mut res = fixture();
    res.opts.mode = "quick".into();
    res.opts.rounds = 1;
    res.opts.sweep_connections = vec![16, 256];
    res.opts.gateway_routes = 10;
    res.opts.scenarios = vec![Scenario::Plain0, Scenario::Conns, Scenario::TwoShards];
    res.fixed = None;
    res.pairs.clear();
    res.https = None;
    res.cluster = None;
    res.loads = vec![LoadScenario {
        scenario: Scenario::Plain0,
        paths: vec!["/0".into()],
        rate: 5000.0,
        rows: vec![
            one(ProxyKind::Tollgate, p(20_000.0, 20.0)),
            one(ProxyKind::TollgatePoll, p(16_000.0, 25.0)),
            one(ProxyKind::TollgateStock, p(10_000.0, 40.0)),
            one(ProxyKind::Nginx, p(40_000.0, 10.0)),
            one(
                ProxyKind::Haproxy,
                Phase {
                    client_bound: true,
                    ..p(30_000.0, 10.0)
                },
            ),
        ],
        notes: Vec::new(),
    }];
    let counts = |a: Phase, b: Phase| vec![vec![a], vec![b]];
    res.sweeps = vec![
        SweepScenario {
            scenario: Scenario::Conns,
            counts: vec![16, 256],
            workers: 1,
            proxy_cpus: vec![0],
            client_cpus: vec![1],
            duration: Duration::from_secs(1),
            rows: vec![
                sweep_row(
                    ProxyKind::Tollgate,
                    counts(p(10_000.0, 30.0), p(12_000.0, 25.0)),
                    1024,
                ),
                sweep_row(
                    ProxyKind::TollgatePoll,
                    counts(p(8_000.0, 40.0), p(10_000.0, 30.0)),
                    1024,
                ),
                sweep_row(
                    ProxyKind::TollgateStock,
                    counts(p(5_000.0, 60.0), p(6_000.0, 50.0)),
                    1024,
                ),
                sweep_row(
                    ProxyKind::Nginx,
                    counts(p(20_000.0, 15.0), p(24_000.0, 12.5)),
                    1024,
                ),
            ],
            notes: Vec::new(),
        },
        SweepScenario {
            scenario: Scenario::TwoShards,
            counts: vec![64],
            workers: 2,
            proxy_cpus: vec![0, 1],
            client_cpus: vec![0, 1],
            duration: Duration::from_secs(1),
            rows: vec![sweep_row(
                ProxyKind::Tollgate,
                vec![vec![Phase {
                    origin_bound: true,
                    ..p(8_000.0, 40.0)
                }]],
                1024,
            )],
            notes: Vec::new(),
        },
    ];
    res.idle = None;
    res
}

/// The table line of `md` that starts with `start`.
fn line<'a>(md: &'a str, start: &str) -> &'a str {
    md.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?} in:\n{md}"))
}

#[test]
fn renders_ratios_sweeps_and_bound_marks() {
    let res = small();
    let md = report::render(&res, &[], None, &[]);
    // Ratio summary: tollgate ÷ tollgate-poll / tollgate-stock / nginx / HAProxy, req/s
    // then CPU.
    assert_eq!(
        line(&md, "| scenario |"),
        "| scenario | tollgate / tollgate-poll req/s | tollgate / tollgate-poll CPU µs/req | tollgate / tollgate-stock req/s | tollgate / tollgate-stock CPU µs/req | tollgate / nginx req/s | tollgate / nginx CPU µs/req | tollgate / HAProxy req/s | tollgate / HAProxy CPU µs/req | bound |"
    );
    assert_eq!(
        line(&md, "| `plain-0` |"),
        "| `plain-0` | 1.25× | 0.80× | 2.00× | 0.50× | 0.50× | 2.00× | 0.67× | 2.00× | HAProxy: client-bound |"
    );
    assert_eq!(
        line(&md, "| `conns`, 256 connections |"),
        "| `conns`, 256 connections | 1.20× | 0.83× | 2.00× | 0.50× | 0.50× | 2.00× | — | — | — |"
    );
    assert!(line(&md, "| `2-shards`, 64 connections |").ends_with("tollgate: origin-bound |"));
    // Load table: the bound column and the tollgate / tollgate-poll and tollgate-stock
    // ratio rows, in that order, before nginx's.
    assert!(line(&md, "| HAProxy | 30,000 |").ends_with("| client-bound |"));
    assert!(line(&md, "| tollgate | 20,000 |").ends_with("| — |"));
    assert!(line(&md, "| tollgate-poll | 16,000 |").ends_with("| — |"));
    assert!(line(&md, "| tollgate / tollgate-poll | 1.25× |").contains("| 0.80× |"));
    assert!(line(&md, "| tollgate / tollgate-stock | 2.00× |").contains("| 0.50× |"));
    assert_in_order(
        &md,
        &[
            "| tollgate / tollgate-poll |",
            "| tollgate / tollgate-stock |",
            "| tollgate / nginx |",
        ],
    );
    // Sweep table: per connection count, ratios to nginx.
    assert_eq!(
        line(&md, "| 16 | tollgate-stock |"),
        "| 16 | tollgate-stock | 5,000 | 60.00 | 0.25× | 4.00× | 50% / 30% / 20% | 0 | — |"
    );
    assert_eq!(
        line(&md, "| 16 | tollgate-poll |"),
        "| 16 | tollgate-poll | 8,000 | 40.00 | 0.40× | 2.67× | 50% / 30% / 20% | 0 | — |"
    );
    assert!(line(&md, "| 256 | nginx |").contains("| 1.00× | 1.00× |"));
    assert!(line(&md, "| 64 | tollgate |").ends_with("| origin-bound |"));
    assert!(md.contains(
        "the generator and origin share the CPUs, so CPU µs per request carries the comparison"
    ));
    assert!(md.contains("GLOMMIO_STOCK_RINGS=1"));
}

/// Each of `needles` occurs in `md`, in this order.
fn assert_in_order(md: &str, needles: &[&str]) {
    let at: Vec<usize> = needles
        .iter()
        .map(|n| {
            md.find(n)
                .unwrap_or_else(|| panic!("{n:?} missing in:\n{md}"))
        })
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "{needles:?} out of order"
    );
}

#[test]
fn method_describes_every_tollgate_variant() {
    let md = report::render(&small(), &[], None, &[]);
    let method = line(&md, "- **tollgate-poll.**");
    for needle in [
        "same tollgate binary and config",
        "`TOLLGATE_SOCKET_PATH=poll`",
        "`TcpStream` readiness path",
        "one-shot `POLL_ADD`",
        "`tollgate / tollgate-poll` is the effect of the lean socket path",
    ] {
        assert!(method.contains(needle), "{needle:?} missing: {method}");
    }
    let stock = line(&md, "- **tollgate-stock.**");
    assert!(stock.contains("`GLOMMIO_STOCK_RINGS=1` and `TOLLGATE_SOCKET_PATH=poll`"));
    assert!(stock.contains("glommio as published"));
    assert_in_order(&md, &["- **tollgate-poll.**", "- **tollgate-stock.**"]);
    assert!(md.contains("(tollgate, tollgate-poll, tollgate-stock, nginx, HAProxy, tollgate, ...)"));
    assert!(line(&md, "- **Pinning.**").contains("tollgate, tollgate-poll and tollgate-stock"));
    assert!(md.contains("the lean socket path is `tollgate / tollgate-poll`"));
}

#[test]
fn ratio_rows_follow_report_order() {
    // `--proxies nginx,tollgate-stock,tollgate-poll,tollgate`: rows in run order, ratio
    // rows in report order.
    let mut res = small();
    res.loads[0].rows.reverse();
    let md = report::render(&res, &[], None, &[]);
    assert_in_order(
        &md,
        &[
            "| HAProxy | 30,000 |",
            "| tollgate | 20,000 |",
            "| tollgate / tollgate-poll |",
            "| tollgate / tollgate-stock |",
            "| tollgate / nginx |",
            "| tollgate / HAProxy |",
        ],
    );
    // The idle table alone (no load or sweep table, so no ratio summary either).
    let idle = |proxy, rss_n_kib| IdleRow {
        requested: 100,
        held: 100,
        rss0_kib: 1000,
        peak_kib: rss_n_kib,
        ..idle_row(proxy, 100, 1000, rss_n_kib)
    };
    res.loads.clear();
    res.sweeps.clear();
    res.idle = Some(vec![
        idle(ProxyKind::TollgateStock, 1400),
        idle(ProxyKind::Tollgate, 1200),
        idle(ProxyKind::TollgatePoll, 1100),
    ]);
    let table = report::render(&res, &[], None, &[]);
    assert_eq!(
        line(&table, "| tollgate / tollgate-poll |"),
        "| tollgate / tollgate-poll | — | — | — | 2.00× | 1.09× |  |"
    );
    assert_in_order(
        &table,
        &[
            "| tollgate / tollgate-poll |",
            "| tollgate / tollgate-stock |",
        ],
    );
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
    res.keys = None;
    res.fixed = None;
    res.pairs.clear();
    res.https = None;
    res.cluster = None;
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
    res.keys = None;
    res.fixed = None;
    res.pairs.clear();
    res.https = None;
    res.cluster = None;
    res.skipped.clear();
    res.notes.clear();
    res.machine.clear();
    let md = report::render(&res, &[], None, &[]);
    check(&md, "RESULTS-empty.md");
}

/// The gateway-keys section: both rows with their medians, and the keys ÷ plain CPU ratio
/// against the 1.10 target (met, not met, not measured when a row failed).
#[test]
fn gateway_keys_rows_and_ratio() {
    let mut res = small();
    let p = |rps, cpu| phase(rps, cpu, 0.9, 0.8);
    // Medians: keys 22.0 (of 21, 22, 30), plain 20.0 (of 19, 20, 25): 1.100, exactly the target.
    res.keys = Some(keys_scenario(
        vec![p(40_000.0, 21.0), p(39_000.0, 22.0), p(30_000.0, 30.0)],
        vec![p(41_000.0, 19.0), p(40_000.0, 20.0), p(35_000.0, 25.0)],
    ));
    let md = report::render(&res, &[], None, &[]);
    assert!(md.contains("(`gateway-keys`)"), "{md}");
    assert!(
        md.contains("| tollgate (keys) | 39,000 | 22.00 | 90% / 80% | 0 | — |"),
        "{md}"
    );
    assert!(
        md.contains("| tollgate (plain) | 40,000 | 20.00 | 90% / 80% | 0 | — |"),
        "{md}"
    );
    assert!(
        md.contains("CPU per request keys ÷ plain (medians): **1.100** — met (target ≤ 1.10"),
        "{md}"
    );
    assert_in_order(
        &md,
        &[
            "### Plain proxy",
            "### Traffic control",
            "### Connection sweep",
        ],
    );

    let k = res.keys.as_mut().expect("set above");
    k.keys.closed[0].cpu_us_per_req = 23.0; // median 23.0: 1.150
    let md = report::render(&res, &[], None, &[]);
    assert!(md.contains("**1.150** — NOT met"), "{md}");

    let k = res.keys.as_mut().expect("set above");
    k.plain.failure = Some("closed loop round 1: 3 of 9000 answers were not 2xx".into());
    let md = report::render(&res, &[], None, &[]);
    assert!(
        md.contains("| tollgate (plain) (FAILED, see notes) |"),
        "{md}"
    );
    assert!(md.contains("keys ÷ plain (medians): not measured"), "{md}");
    assert!(md.contains("3 of 9000 answers were not 2xx"), "{md}");
}

/// The fixed-rate section: each round's p99 in order, medians, ratios against nginx and
/// HAProxy computed by hand, and the README's rows with tollgate's behind-ratios in bold.
#[test]
fn fixed_rate_rounds_ratios_and_readme_rows() {
    let res = fixture();
    let md = report::render(&res, &[], None, &[]);
    // tollgate at 10,000: p99 1.4 / 1.2 / 2.9 (median 1.4), CPU median 61.0; nginx 0.8 and
    // 42.5; HAProxy 1.0 and 46.5. 61 / 42.5 = 1.435…, 61 / 46.5 = 1.311…, 1.4 / 0.8 = 1.75,
    // 1.4 / 1.0 = 1.40.
    assert!(
        md.contains("| 10,000 req/s | tollgate | 1.400 / 1.200 / 2.900 | 1.400 | 61.00 | 9,990 | 1.44× | 1.31× | 1.75× | 1.40× | 0 | — |"),
        "{md}"
    );
    assert!(
        md.contains("| 10,000 req/s | nginx | 0.800 / 0.900 / 0.700 | 0.800 | 42.50 |"),
        "{md}"
    );
    // 30,000: tollgate 18.5 and 1.0 ms, nginx 19.5 and 1.3 ms; HAProxy not measured there.
    assert!(
        md.contains("| 30,000 req/s | tollgate | 0.900 / 1.100 / 1.000 | 1.000 | 18.50 | 29,970 | 0.95× | — | 0.77× | — | 0 | — |"),
        "{md}"
    );
    assert!(
        md.contains("| 30,000 req/s | HAProxy (not measured, see notes) | — | — | — | — | — | — | — | — | — | — |"),
        "{md}"
    );
    // The README rows: behind at 10,000 (bold), ahead of nginx at 30,000.
    assert!(
        md.contains("| fixed 10,000 req/s | 61.0 | **1.44×** | **1.31×** | 1.40 / 0.80 / 1.00 |"),
        "{md}"
    );
    assert!(
        md.contains("| fixed 30,000 req/s | 18.5 | 0.95× | — | 1.00 / 1.30 / — |"),
        "{md}"
    );
    assert!(md.contains("**HAProxy not measured:** 30000 req/s: tollgate-load wrote no report"));
    assert_in_order(
        &md,
        &[
            "### Traffic control",
            "(`fixed-rate`)",
            "(`access-log`)",
            "(`scrape`)",
            "(`https`)",
            "### Connection sweep",
        ],
    );
}

/// access-log (CPU ratio) and scrape (p99 ratio) against their 1.10 targets.
#[test]
fn access_log_and_scrape_ratios() {
    let mut res = fixture();
    let md = report::render(&res, &[], None, &[]);
    assert!(
        md.contains("| tollgate (log on) | 47,000 | 21.00 / 21.50 / 20.90 | 21.00 |"),
        "{md}"
    );
    assert!(
        md.contains("CPU per request log on ÷ off (medians): **1.050** — met (target ≤ 1.10"),
        "{md}"
    );
    assert!(
        md.contains("Log lines counted after the *log on* phases: 1,410,000."),
        "{md}"
    );
    assert!(
        md.contains("| tollgate (scrape 1/s) | 9,990 | 31.00 / 31.50 / 30.80 | 31.00 | 1.200 / 1.300 / 1.100 | 1.200 |"),
        "{md}"
    );
    assert!(
        md.contains("| tollgate (no scrape, control) | 9,990 | 30.00 / 30.20 / 30.40 | 30.20 | 1.300 / 1.400 / 1.200 | 1.300 |"),
        "{md}"
    );
    assert!(
        md.contains("base and control): **1.043** — met (target ≤ 1.10"),
        "{md}"
    );
    assert!(
        md.contains("the same configuration measured twice: 1.300."),
        "{md}"
    );
    assert!(md.contains("`tollgate-load -R 10000 -c 64"), "{md}");
    // Without the control row the ratio is against the base phases alone: 1.200, not met.
    res.pairs[1].control = None;
    let md = report::render(&res, &[], None, &[]);
    assert!(
        md.contains("base and control): **1.200** — NOT met (target ≤ 1.10"),
        "{md}"
    );
    assert!(md.contains("measured twice: not measured."), "{md}");
    res.pairs[1].with.failure = Some("open loop: tollgate exited".into());
    let md = report::render(&res, &[], None, &[]);
    assert!(md.contains("base and control): not measured"), "{md}");
    assert!(
        md.contains("**tollgate (scrape 1/s) not measured:** open loop: tollgate exited"),
        "{md}"
    );
}

/// The scrape phase sits between the two phases without it, which alternate round by round.
#[test]
fn scrape_phase_order() {
    use tollgate_bench::run::scrape_order;
    assert_eq!(scrape_order(0), [0, 1, 2]);
    assert_eq!(scrape_order(1), [2, 1, 0]);
    assert_eq!(scrape_order(2), [0, 1, 2]);
    assert_eq!(
        tollgate_bench::run::SCRAPE_LABELS[1],
        "tollgate (scrape 1/s)"
    );
}

/// The https table: each mode's rows with ratios against nginx and HAProxy.
#[test]
fn https_modes_and_ratios() {
    let md = report::render(&fixture(), &[], None, &[]);
    assert!(
        md.contains("TLS 1.3, `TLS13_AES_128_GCM_SHA256` and `X25519`"),
        "{md}"
    );
    // 24 / 32 = 0.75, 24 / 30 = 0.80, 40,000 / 30,000 = 1.33.
    assert!(
        md.contains("| keep-alive | tollgate | 40,000 | 24.00 | 0.75× | 0.80× | 1.33× | 0 | — |"),
        "{md}"
    );
    // 480 / 400 = 1.20, 480 / 440 = 1.09, 2,000 / 2,400 = 0.83.
    assert!(
        md.contains(
            "| full handshake per request | tollgate | 2,000 | 480.00 | 1.20× | 1.09× | 0.83× |"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "| resumed handshake per request | HAProxy | 5,500 | 175.00 | 0.92× | 1.00× | 1.10× |"
        ),
        "{md}"
    );
}

/// The gateway prose names the nginx and HAProxy configurations in use.
#[test]
fn gateway_names_the_peer_configurations() {
    let mut res = fixture();
    let md = report::render(&res, &[], None, &[]);
    assert!(
        md.contains("nginx: 1000 prefix `location /svc{i}/items/` blocks"),
        "{md}"
    );
    assert!(
        md.contains("HAProxy: `use_backend %[path,map_beg(routes.map,be_404)]`"),
        "{md}"
    );
    res.opts.nginx_routes = NginxRoutes::Regex;
    res.opts.haproxy_routes = HaproxyRoutes::Regex;
    let md = report::render(&res, &[], None, &[]);
    assert!(md.contains("nginx: 1000 regex `location`s"), "{md}");
    assert!(md.contains("HAProxy: 1000 `path_reg` ACLs"), "{md}");
    res.opts.nginx_routes = NginxRoutes::Map;
    let md = report::render(&res, &[], None, &[]);
    assert!(md.contains("a `map $gw_svc` of the 1000 services"), "{md}");
}

/// The cluster section: tollgate's and redis-server's CPU per request and both ratios, the
/// counters of both sides per rate, the growth against the lease refills, a failed row.
#[test]
fn cluster_rows_ratios_and_ops() {
    let mut res = fixture();
    let md = report::render(&res, &[], None, &[]);
    // Without: 20.0 / 20.4 / 20.2 µs, median 20.2; Redis idles but for the other host's syncs.
    assert!(
        md.contains("| tollgate (no cluster) | 40,200 | 20.00 / 20.40 / 20.20 | 20.20 | 0.00 | 20.20 | — | 95.0 | 96% / 80% | — |"),
        "{md}"
    );
    // With: median 21.0; redis 1, 2, 1 µs/req; sums 21.8, 23.0, 22.6 → 22.6; ops/s 10, 15,
    // 10.95 → 10.95; commands/s 100, 110, 120 → 110.
    assert!(
        md.contains("| tollgate (cluster) | 38,600 | 20.80 / 21.00 / 21.60 | 21.00 | 1.00 | 22.60 | 11.0 | 110.0 | 96% / 82% | — |"),
        "{md}"
    );
    assert!(
        md.contains("tollgate only (medians): **1.040** — met (target ≤ 1.05, issue 19). Including the redis-server's CPU: 1.119."),
        "{md}"
    );
    // 10,000 req/s: 12, 13, 12.5 ops/s; 1.2, 1.3, 1.25 per 1,000 requests; 10,000 ÷ 4,096.
    assert!(
        md.contains("| 10,000 req/s | 9,990 | 1.100 | 22.00 | 12.0, 13.0, 12.5 | 12.5 | 110.0 | 1.25 | 2.4 | 1.0% |"),
        "{md}"
    );
    assert!(
        md.contains("| 30,000 req/s | 29,970 | 1.500 | 22.00 | 15.0, 16.0, 14.0 | 15.0 | 110.0 | 0.50 | 7.3 | 1.0% |"),
        "{md}"
    );
    assert!(
        md.contains("from 12.5 to 15.0 per second (2.5 more per second); the extra lease refills that much more traffic needs are at least 4.9 per second."),
        "{md}"
    );
    assert!(
        md.contains("`evalsha` 1,200, `time` 1,200, `hset` 300."),
        "{md}"
    );
    assert!(md.contains("reached only 28000 req/s"), "{md}");
    let c = res.cluster.as_mut().expect("cluster");
    c.with.failure = Some("closed loop round 2: 3 of 9 answers were not 2xx".into());
    let md = report::render(&res, &[], None, &[]);
    assert!(
        md.contains("tollgate only (medians): not measured (target ≤ 1.05, issue 19). Including the redis-server's CPU: not measured."),
        "{md}"
    );
    assert!(
        md.contains(
            "**tollgate (cluster) not measured:** closed loop round 2: 3 of 9 answers were not 2xx"
        ),
        "{md}"
    );
}
