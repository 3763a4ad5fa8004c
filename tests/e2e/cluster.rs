//! `[cluster]`: two tollgate hosts (2 shards each, their own loopback ports) sharing one Redis
//! (`redis-server` on a free loopback port, no persistence, started and stopped by the test):
//! a quota of 1,000 hit through both hosts from 64 connections admits 1,000–1,001; a stage
//! throttle of 50/s holds across both hosts over 10 s within ±10 % (traffic on both hosts and
//! on one); Redis stopped mid-run: requests go on being served (failing open after
//! `fail_open_after_ms`), the outage is logged, and once Redis is back (empty) the counts are
//! reconciled (`tollgate usage` reads them from Redis); one host killed with `kill -9`: the
//! other goes on and the total stays within the documented bound (what the dead host held);
//! a quota `offset` is charged once per plan and key, not again by new processes. The Redis
//! ops counter stays far below the request rate. A burst on a host that just started sees no
//! 429 while quota is left (initial lease, then credit while the refill is on its way); a host
//! without Redis is not ready (`/readyz` 503) until it fails open; hosts whose configs differ
//! (limits at other positions) still share the stage throttle they have alike; while Redis is
//! gone, requests wake the sync thread at most once per sync interval. Reload: one host reloaded
//! (a new route) while both spend a quota of 1,000 still admits 1,000–1,001 and fails no
//! request; a reload raising and lowering the plan's quota limit on both hosts takes effect
//! across the swap (300 → 600: 300 more; 1,000 → 700 during traffic: 700 in all); a change to
//! `[cluster]` itself is refused; a key removed from its plan by a reload has its stock given
//! back (Redis then counts exactly what was admitted).

use crate::client::{Client, Response};
use crate::harness::{free_port, run_to_end, Gateway, Server, TempDir};
use crate::traffic::{get_with_key, keyed_config, wait_all_shards, ALICE};
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `redis-server` on a loopback port, killed on drop.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
        };
        r.restart();
        r
    }

    /// Starts (again) on the same port, empty.
    fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server (is it installed?): {e}"));
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "redis-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One host: its config file (kept for `tollgate usage`) and its process.
struct Host {
    gw: Gateway,
    config: PathBuf,
    admin: SocketAddr,
    _dir: TempDir,
}

fn cluster_section(redis: &Redis, fail_open_after_ms: u64) -> String {
    format!(
        "\n[cluster]\nredis = \"{}\"\nsync_interval_ms = 100\nkey_prefix = \"e2e:\"\nfail_open_after_ms = {fail_open_after_ms}\n",
        redis.url()
    )
}

fn host(apis: &str, redis: &Redis, fail_open_after_ms: u64) -> Host {
    let dir = TempDir::new("cluster");
    let port = free_port();
    let admin_port = free_port();
    let server = Server::default().with("shards", "2");
    let text = format!(
        "{}\n[admin]\naddress = \"127.0.0.1\"\nport = {admin_port}\n{}",
        crate::harness::config_text(&server, port, apis),
        cluster_section(redis, fail_open_after_ms)
    );
    let config = dir.write("gateway.toml", &text);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let args = [std::ffi::OsStr::new("--config"), config.as_os_str()];
    let gw = Gateway::spawn(&args, addr, None);
    wait_all_shards(&gw);
    Host {
        gw,
        config,
        admin: ([127, 0, 0, 1], admin_port).into(),
        _dir: dir,
    }
}

/// Counts of one client run.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    refused: AtomicU64,
    other: AtomicU64,
    /// Admitted per 100 ms window since the start (for the per-interval rate).
    windows: Mutex<Vec<u64>>,
}

impl Counts {
    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }
    fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
    fn other(&self) -> u64 {
        self.other.load(Ordering::Relaxed)
    }
}

/// Client threads: `conns[i]` keep-alive connections to `addrs[i]`, pausing `pause` between
/// requests, until `stop` is set or `deadline`. A connection that fails (its host was
/// killed) ends its thread. Counts per host.
fn drive(
    addrs: &[SocketAddr],
    conns: &[usize],
    path: &'static str,
    key: Option<&'static str>,
    pause: Duration,
    stop: &Arc<AtomicBool>,
    deadline: Instant,
) -> (Vec<Arc<Counts>>, Vec<std::thread::JoinHandle<()>>) {
    let counts: Vec<Arc<Counts>> = addrs.iter().map(|_| Arc::default()).collect();
    let started = Instant::now();
    let mut threads = Vec::new();
    for (h, (&addr, &n)) in addrs.iter().zip(conns).enumerate() {
        for _ in 0..n {
            let (counts, stop) = (counts[h].clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let r = get_with_key(path, key);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if c.stream.write_all(&r).is_err() {
                        return;
                    }
                    let Ok(resp) = c.try_read_response(false) else {
                        return;
                    };
                    match resp.status {
                        200 => {
                            counts.ok.fetch_add(1, Ordering::Relaxed);
                            let w = (started.elapsed().as_millis() / 100) as usize;
                            let mut ws = counts.windows.lock().unwrap_or_else(|e| e.into_inner());
                            if ws.len() <= w {
                                ws.resize(w + 1, 0);
                            }
                            ws[w] += 1;
                        }
                        429 => {
                            counts.refused.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            counts.other.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if !pause.is_zero() {
                        std::thread::sleep(pause);
                    }
                }
            }));
        }
    }
    (counts, threads)
}

fn join(threads: Vec<std::thread::JoinHandle<()>>) {
    for t in threads {
        t.join().expect("client thread");
    }
}

/// Waits until no request was admitted anywhere for `quiet` (at most until `deadline`).
fn wait_quiet(counts: &[Arc<Counts>], quiet: Duration, deadline: Instant) {
    let total = || counts.iter().map(|c| c.ok()).sum::<u64>();
    let mut last = total();
    let mut since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = total();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
    }
}

/// `used` of alice in `tollgate usage --config <config> --key alice` (read from Redis).
fn usage_used(config: &Path) -> u64 {
    let (code, out) = run_to_end(&[
        Path::new("usage"),
        Path::new("--config"),
        config,
        Path::new("--key"),
        Path::new("alice"),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("\"source\": \"redis redis://"), "{out}");
    let at = out.find("\"used\": ").unwrap_or_else(|| panic!("{out}"));
    out[at + 8..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"))
}

/// A metric's value from the host's admin listener.
fn metric(admin: SocketAddr, name: &str) -> u64 {
    let r: Response = Client::connect(admin).request(&crate::client::get("/metrics"));
    let body = r.body_str();
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
}

#[test]
fn cluster_quota_of_1000_across_two_hosts_from_64_connections() {
    let redis = Redis::start();
    let apis = keyed_config(1000, "", "");
    let a = host(&apis, &redis, 1000);
    let b = host(&apis, &redis, 1000);
    let ops_before = metric(a.admin, "tollgate_cluster_redis_ops_total");
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(30);
    let (counts, threads) = drive(
        &[a.gw.addr, b.gw.addr],
        &[32, 32],
        "/prod/keyed",
        Some(ALICE),
        Duration::ZERO,
        &stop,
        deadline,
    );
    // Until nothing was admitted for 1.5 s (every host's stock is spent).
    wait_quiet(&counts, Duration::from_millis(1500), deadline);
    stop.store(true, Ordering::Relaxed);
    join(threads);
    let elapsed = started.elapsed().as_secs_f64();
    let ok: u64 = counts.iter().map(|c| c.ok()).sum();
    let refused: u64 = counts.iter().map(|c| c.refused()).sum();
    let other: u64 = counts.iter().map(|c| c.other()).sum();
    eprintln!(
        "admitted {ok} (a {}, b {}), refused {refused}",
        counts[0].ok(),
        counts[1].ok()
    );
    assert_eq!(other, 0);
    assert!(refused >= 200, "the quota was never reached: {ok} admitted");
    assert!(
        counts[0].ok() > 0 && counts[1].ok() > 0,
        "both hosts admitted"
    );
    assert!((1000..=1001).contains(&ok), "a quota of 1000 admitted {ok}");
    // The Redis ops of host a do not follow the request rate: at most one demand call and
    // one lease call per counter per 100 ms sync (plus reconnects), while thousands of
    // requests per second were answered.
    let ops = metric(a.admin, "tollgate_cluster_redis_ops_total") - ops_before;
    let per_second = ops as f64 / elapsed;
    let requests_per_second = (ok + refused) as f64 / elapsed;
    eprintln!("host a: {per_second:.1} Redis ops/s for {requests_per_second:.0} requests/s");
    assert!(per_second <= 40.0, "{ops} Redis ops in {elapsed:.1} s");
    assert_eq!(metric(a.admin, "tollgate_cluster_redis_up"), 1);
    assert_eq!(metric(a.admin, "tollgate_cluster_fail_open"), 0);
    assert_eq!(usage_used(&b.config), 1000);
}

/// `differ`: host b's config has one more stage (`beta`, throttled 7/s, before `prod`), so
/// every limit after it has another position on b than on a.
fn throttle_run(shape: &str, conns: [usize; 2], differ: bool) {
    const RATE: f64 = 50.0;
    const BURST: u64 = 10;
    const WINDOW: Duration = Duration::from_secs(10);
    let redis = Redis::start();
    let stage = format!("throttle = {{ rate = {RATE:.1}, burst = {BURST} }}");
    let apis = keyed_config(1_000_000, "", &stage);
    let apis_b = if differ {
        let with_beta = apis.replacen(
            "[[apis.stages]]",
            "[[apis.stages]]\n  name = \"beta\"\n  throttle = { rate = 7.0, burst = 3 }\n  [[apis.stages]]",
            1,
        );
        assert_ne!(with_beta, apis);
        with_beta
    } else {
        apis.clone()
    };
    let a = host(&apis, &redis, 1000);
    let b = host(&apis_b, &redis, 1000);
    let stop = Arc::new(AtomicBool::new(false));
    let (counts, threads) = drive(
        &[a.gw.addr, b.gw.addr],
        &conns,
        "/prod/open",
        None,
        Duration::from_millis(10),
        &stop,
        Instant::now() + WINDOW,
    );
    join(threads);
    let ok: u64 = counts.iter().map(|c| c.ok()).sum();
    let refused: u64 = counts.iter().map(|c| c.refused()).sum();
    let want = RATE * WINDOW.as_secs_f64() + BURST as f64;
    eprintln!(
        "{shape}: admitted {ok} (a {}, b {}), refused {refused}, want {want} ±10 %",
        counts[0].ok(),
        counts[1].ok()
    );
    assert_eq!(counts.iter().map(|c| c.other()).sum::<u64>(), 0);
    assert!(refused > ok, "{shape}: the load did not exceed the limit");
    let error = (ok as f64 - want) / want;
    assert!(
        error.abs() <= 0.10,
        "{shape}: admitted {ok} in {WINDOW:?} across two hosts, want {want} ±10 % (off by {:.1} %)",
        error * 100.0
    );
}

#[test]
fn cluster_stage_throttle_of_50_per_second_across_both_hosts() {
    throttle_run("both hosts", [16, 16], false);
}

#[test]
fn cluster_stage_throttle_of_50_per_second_with_traffic_on_one_host() {
    throttle_run("one host", [16, 0], false);
}

/// Hosts whose configs differ (one reloaded, the other not yet): the stage throttle both have
/// is still one limit across them, whatever its position in each host's table.
#[test]
fn cluster_stage_throttle_is_shared_when_host_configs_differ() {
    throttle_run("configs differ", [16, 16], true);
}

#[test]
fn cluster_redis_outage_fails_open_and_reconciles() {
    let mut redis = Redis::start();
    let apis = keyed_config(1_000_000, "", "");
    let a = host(&apis, &redis, 300);
    let b = host(&apis, &redis, 300);
    let run = |ms: u64| {
        let stop = Arc::new(AtomicBool::new(false));
        let (counts, threads) = drive(
            &[a.gw.addr, b.gw.addr],
            &[4, 4],
            "/prod/keyed",
            Some(ALICE),
            Duration::from_millis(2),
            &stop,
            Instant::now() + Duration::from_millis(ms),
        );
        join(threads);
        let ok: u64 = counts.iter().map(|c| c.ok()).sum();
        let refused: u64 = counts.iter().map(|c| c.refused()).sum();
        let other: u64 = counts.iter().map(|c| c.other()).sum();
        (ok, refused, other)
    };
    let before = run(1000);
    // Both hosts are cold (the key's first requests on them): what the initial lease does
    // not cover is admitted on credit while the refill is on its way. No refusal.
    assert_eq!(
        (before.1, before.2),
        (0, 0),
        "before the outage: {before:?}"
    );
    assert!(before.0 > 0, "before the outage: {before:?}");
    let wakeups = |h: &Host| metric(h.admin, "tollgate_cluster_wakeups_total");
    let wakeups_before = [wakeups(&a), wakeups(&b)];
    redis.stop();
    // Within the grace (300 ms) the leases in hand serve, then the credit; once both are
    // spent requests may be refused until the hosts fail open. No request fails otherwise.
    let grace = run(700);
    assert_eq!(grace.2, 0, "during the grace: {grace:?}");
    // Refused or not, requests wake the sync thread at most once per sync interval while
    // Redis is gone (700 ms: at most 7 syncs, 2 more for the edges).
    for (h, before) in [&a, &b].into_iter().zip(wakeups_before) {
        let woke = wakeups(h) - before;
        assert!(woke <= 9, "{woke} wake-ups in 700 ms without Redis");
    }
    // Failed open: every request is served.
    let open = run(1500);
    assert!(open.0 > 0, "{open:?}");
    assert_eq!((open.1, open.2), (0, 0), "failed open: {open:?}");
    for h in [&a, &b] {
        let out = h.gw.output();
        assert!(out.contains("unreachable"), "{out}");
        assert!(out.contains("failing open"), "{out}");
        assert_eq!(metric(h.admin, "tollgate_cluster_fail_open"), 1);
        assert_eq!(metric(h.admin, "tollgate_cluster_redis_up"), 0);
        assert!(metric(h.admin, "tollgate_cluster_redis_errors_total") >= 1);
    }
    // Redis comes back empty (no persistence): both hosts add back what they admitted.
    redis.restart();
    for h in [&a, &b] {
        assert!(
            h.gw.wait_output("reachable again", Duration::from_secs(5)),
            "{}",
            h.gw.output()
        );
    }
    let after = run(500);
    assert_eq!((after.1, after.2), (0, 0), "after the outage: {after:?}");
    // Idle stock above one request per shard goes back after two idle syncs.
    std::thread::sleep(Duration::from_millis(800));
    let admitted = before.0 + grace.0 + open.0 + after.0;
    let used = usage_used(&a.config);
    eprintln!("admitted {admitted}, Redis counts {used}");
    // Redis counts every admitted request, plus at most one request per shard still held
    // by each host (2 hosts × 2 shards).
    assert!(
        (admitted..=admitted + 4).contains(&used),
        "admitted {admitted}, Redis counts {used}"
    );
    assert_eq!(metric(a.admin, "tollgate_cluster_fail_open"), 0);
}

#[test]
fn cluster_host_killed_with_sigkill_loses_at_most_its_leases() {
    const LIMIT: u64 = 5000;
    let redis = Redis::start();
    let apis = keyed_config(LIMIT, "", "");
    let a = host(&apis, &redis, 1000);
    let b = host(&apis, &redis, 1000);
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(30);
    let (counts, threads) = drive(
        &[a.gw.addr, b.gw.addr],
        &[16, 16],
        "/prod/keyed",
        Some(ALICE),
        Duration::from_millis(1),
        &stop,
        deadline,
    );
    // Once a fifth of the quota is spent, kill b.
    while counts.iter().map(|c| c.ok()).sum::<u64>() < LIMIT / 5 {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    let b_pid = b.gw.pid();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(b_pid as libc::pid_t, libc::SIGKILL) },
        0
    );
    let b_ok_at_kill = counts[1].ok();
    wait_quiet(&counts, Duration::from_millis(1500), deadline);
    stop.store(true, Ordering::Relaxed);
    join(threads);
    let a_ok = counts[0].ok();
    let b_ok = counts[1].ok();
    let total = a_ok + b_ok;
    // The bound (CONFIG.md, "Cluster"): a killed host loses what it held — its stock (at
    // most two sync intervals of what it admitted) and its shards' leases — plus the
    // requests admitted whose responses never left it (one per connection).
    let windows = counts[1]
        .windows
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let per_interval = windows.iter().copied().max().unwrap_or(0);
    let bound = 3 * per_interval + 16;
    eprintln!(
        "admitted {total} (a {a_ok}, b {b_ok}, b at the kill {b_ok_at_kill}), b's busiest 100 ms: {per_interval}, bound {bound}"
    );
    assert!(a_ok > LIMIT / 2, "a went on after b died: {a_ok}");
    // What b admitted on credit and never charged is the only over-admission a kill can
    // cause: at most b's credit budget, floor(0.1 % × 5,000 / 2) = 2.
    assert!(total <= LIMIT + 2, "over-admitted: {total}");
    assert!(
        total + bound >= LIMIT,
        "lost {} > bound {bound}",
        LIMIT - total
    );
    assert_eq!(counts.iter().map(|c| c.other()).sum::<u64>(), 0);
}

/// The period's count of alice in plan gold, read with `redis-cli`.
fn redis_count(redis: &Redis) -> Option<u64> {
    let day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    let out = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "GET"])
        .arg(format!("e2e:q:4:gold:alice:{day}"))
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[test]
fn cluster_quota_offset_is_charged_once_per_plan_and_key() {
    let redis = Redis::start();
    // Limit 10, offset 6: 4 requests in the key's initial period, across both hosts.
    let apis = keyed_config(10, "", "").replace(
        "quota = { limit = 10, period = \"DAY\" }",
        "quota = { limit = 10, period = \"DAY\", offset = 6 }",
    );
    assert!(apis.contains("offset = 6"));
    let a = host(&apis, &redis, 1000);
    let b = host(&apis, &redis, 1000);
    let mut admitted = 0;
    for i in 0..20 {
        let addr = if i % 2 == 0 { a.gw.addr } else { b.gw.addr };
        let r = Client::connect(addr).request(&get_with_key("/prod/keyed", Some(ALICE)));
        admitted += u64::from(r.status == 200);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(admitted, 4);
    assert_eq!(redis_count(&redis), Some(10));
    // New processes (they never counted this key themselves): the marker in Redis says the
    // key was counted before, so the offset is not charged again.
    drop((a, b));
    let c = host(&apis, &redis, 1000);
    let r = Client::connect(c.gw.addr).request(&get_with_key("/prod/keyed", Some(ALICE)));
    assert_eq!(r.status, 429);
    assert_eq!(
        redis_count(&redis),
        Some(10),
        "the offset was charged again"
    );
}

/// `GET /readyz` status of a host's admin listener (0: not answering yet). One connection
/// (the admin listener serves one at a time), bounded by timeouts.
fn readyz(admin: SocketAddr) -> u16 {
    use std::io::Read as _;
    let Ok(mut c) = TcpStream::connect_timeout(&admin, Duration::from_millis(200)) else {
        return 0;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(3)));
    if c.write_all(b"GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return 0;
    }
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[test]
fn cluster_cold_host_burst_gets_no_429_while_quota_remains() {
    let redis = Redis::start();
    // Limit 1,000,000: each of the two hosts may admit floor(0.1 % × 1,000,000 / 2) = 500
    // requests on credit while its stock is empty and the refill is on its way.
    let apis = keyed_config(1_000_000, "", "");
    let a = host(&apis, &redis, 1000);
    // a is warm: it has served the key for a while.
    let stop = Arc::new(AtomicBool::new(false));
    let (warm, threads) = drive(
        &[a.gw.addr],
        &[4],
        "/prod/keyed",
        Some(ALICE),
        Duration::from_millis(1),
        &stop,
        Instant::now() + Duration::from_millis(500),
    );
    join(threads);
    assert!(warm[0].ok() > 0);
    // b starts (ready: its first sync leased an initial block), and at once 32 connections
    // hammer it without pause, while a goes on.
    let b = host(&apis, &redis, 1000);
    assert_eq!(readyz(b.admin), 200);
    let (counts, threads) = drive(
        &[a.gw.addr, b.gw.addr],
        &[4, 32],
        "/prod/keyed",
        Some(ALICE),
        Duration::ZERO,
        &stop,
        Instant::now() + Duration::from_millis(1500),
    );
    join(threads);
    let (ok_a, ok_b) = (counts[0].ok(), counts[1].ok());
    let refused: u64 = counts.iter().map(|c| c.refused()).sum();
    let other: u64 = counts.iter().map(|c| c.other()).sum();
    eprintln!(
        "cold burst: admitted a {ok_a}, b {ok_b}; refused a {}, b {}",
        counts[0].refused(),
        counts[1].refused()
    );
    assert_eq!(other, 0);
    assert!(ok_b >= 500, "the burst on b was not a burst: {ok_b}");
    assert_eq!(refused, 0, "429s with quota left ({ok_b} admitted on b)");
    // Every admitted request is counted in Redis (the credit was charged), plus what the
    // hosts still hold.
    std::thread::sleep(Duration::from_millis(300));
    let admitted = warm[0].ok() + ok_a + ok_b;
    let used = usage_used(&a.config);
    assert!(used >= admitted, "admitted {admitted}, Redis counts {used}");
}

#[test]
fn cluster_host_is_not_ready_until_it_synced_or_failed_open() {
    // Nothing listens on this port: the first sync cannot succeed.
    let port = free_port();
    let redis = Redis { port, child: None };
    let dir = TempDir::new("cluster");
    let listen = free_port();
    let admin_port = free_port();
    let text = format!(
        "{}\n[admin]\naddress = \"127.0.0.1\"\nport = {admin_port}\n{}",
        crate::harness::config_text(
            &Server::default().with("shards", "2"),
            listen,
            &keyed_config(100, "", "")
        ),
        cluster_section(&redis, 1500)
    );
    let config = dir.write("gateway.toml", &text);
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    let started = Instant::now();
    // Polls /readyz from the start (the admin listener answers while the host waits).
    let poller = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while started.elapsed() < Duration::from_secs(8) {
            let status = readyz(admin);
            seen.push((started.elapsed(), status));
            if status == 200 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        seen
    });
    let args = [std::ffi::OsStr::new("--config"), config.as_os_str()];
    let gw = Gateway::spawn(&args, ([127, 0, 0, 1], listen).into(), None);
    let seen = poller.join().expect("poller");
    // Not ready while the first sync fails; ready once it failed open (1500 ms), not before.
    let first_ready = seen
        .iter()
        .find(|(_, s)| *s == 200)
        .map(|(t, _)| *t)
        .unwrap_or_else(|| panic!("never ready: {seen:?}"));
    assert!(
        seen.iter().any(|(_, s)| *s == 503),
        "the admin listener never said 503 before ready: {seen:?}"
    );
    assert!(first_ready >= Duration::from_millis(1450), "{seen:?}");
    assert!(started.elapsed() >= Duration::from_millis(1450));
    assert_eq!(readyz(admin), 200);
    assert!(gw.output().contains("failing open"), "{}", gw.output());
    let r = Client::connect(gw.addr).request(&get_with_key("/prod/keyed", Some(ALICE)));
    assert_eq!(r.status, 200);
    drop(redis);
}

/// `POST /reload` on a host's admin listener: (status, body).
fn reload(admin: SocketAddr) -> (u16, String) {
    use std::io::Read as _;
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect admin {admin}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    s.write_all(b"POST /reload HTTP/1.1\r\nhost: admin\r\ncontent-length: 0\r\n\r\n")
        .expect("admin write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("admin read (it closes)");
    let text = String::from_utf8(raw).expect("utf-8 admin response");
    let (head, body) = text.split_once("\r\n\r\n").expect("admin response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("admin status");
    (status, body.to_string())
}

/// Rewrites a host's config file with `edit` (which must change it).
fn edit_config(h: &Host, edit: impl Fn(&str) -> String) {
    let text = std::fs::read_to_string(&h.config).expect("read config");
    let new = edit(&text);
    assert_ne!(new, text, "the edit changed nothing");
    std::fs::write(&h.config, new).expect("write config");
}

/// Host a is reloaded (a new, unrelated route) while both hosts spend a shared quota of
/// 1,000: still 1,000–1,001 admitted in total, no request fails otherwise, the new route is
/// live, and Redis counts exactly what was admitted.
#[test]
fn cluster_reload_in_the_middle_of_the_traffic_keeps_the_quota_exact() {
    let redis = Redis::start();
    let apis = keyed_config(1000, "", "");
    let a = host(&apis, &redis, 1000);
    let b = host(&apis, &redis, 1000);
    edit_config(&a, |t| {
        t.replacen(
            "  [[apis.routes]]\n  key = \"GET /open\"",
            "  [[apis.routes]]\n  key = \"GET /added\"\n  integration = { type = \"mock\", status = 200, body = \"added\" }\n  [[apis.routes]]\n  key = \"GET /open\"",
            1,
        )
    });
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(30);
    let (counts, threads) = drive(
        &[a.gw.addr, b.gw.addr],
        &[4, 4],
        "/prod/keyed",
        Some(ALICE),
        Duration::from_millis(8),
        &stop,
        deadline,
    );
    let total = || counts.iter().map(|c| c.ok()).sum::<u64>();
    while total() < 250 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let at_reload = total();
    let (status, body) = reload(a.admin);
    let after_reload = total();
    assert_eq!(status, 200, "{body}");
    assert!(
        after_reload < 1000,
        "the quota was spent before the reload answered ({at_reload} → {after_reload}): not a reload mid-traffic"
    );
    wait_quiet(&counts, Duration::from_millis(1500), deadline);
    stop.store(true, Ordering::Relaxed);
    join(threads);
    let ok = total();
    let refused: u64 = counts.iter().map(|c| c.refused()).sum();
    let other: u64 = counts.iter().map(|c| c.other()).sum();
    eprintln!(
        "reload at {at_reload} admitted; admitted {ok} (a {}, b {}), refused {refused}",
        counts[0].ok(),
        counts[1].ok()
    );
    assert_eq!(other, 0, "requests failed other than with 429");
    assert!(refused > 0, "the quota was never reached: {ok} admitted");
    assert!(
        counts[0].ok() > 0 && counts[1].ok() > 0,
        "both hosts admitted"
    );
    assert!((1000..=1001).contains(&ok), "a quota of 1000 admitted {ok}");
    let r = Client::connect(a.gw.addr).request(&crate::client::get("/prod/added"));
    assert_eq!((r.status, r.body_str()), (200, "added".to_string()));
    let r = Client::connect(b.gw.addr).request(&crate::client::get("/prod/added"));
    assert_ne!(r.status, 200, "host b was not reloaded");
    assert_eq!(usage_used(&a.config), ok.min(1000));
    // `[cluster]` itself is restart-only: refused, nothing changes.
    edit_config(&a, |t| {
        t.replace("key_prefix = \"e2e:\"", "key_prefix = \"other:\"")
    });
    let (status, body) = reload(a.admin);
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("[cluster] cannot change while running"),
        "{body}"
    );
    let r = Client::connect(a.gw.addr).request(&crate::client::get("/prod/added"));
    assert_eq!(r.status, 200, "the running configuration stays");
}

/// Drives both hosts with alice's key until nothing is admitted for 1 s: (a, b, refused);
/// no request fails other than with 429.
fn spend(a: &Host, b: &Host, conns: [usize; 2], pause: Duration) -> (u64, u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(20);
    let (counts, threads) = drive(
        &[a.gw.addr, b.gw.addr],
        &conns,
        "/prod/keyed",
        Some(ALICE),
        pause,
        &stop,
        deadline,
    );
    wait_quiet(&counts, Duration::from_millis(1000), deadline);
    stop.store(true, Ordering::Relaxed);
    join(threads);
    assert_eq!(counts.iter().map(|c| c.other()).sum::<u64>(), 0);
    (
        counts[0].ok(),
        counts[1].ok(),
        counts.iter().map(|c| c.refused()).sum(),
    )
}

/// A reload that changes the plan's quota limit (on both hosts) takes effect across the
/// swap: raised from 300 to 600 once 300 are spent, exactly 300 more are admitted; lowered
/// from 1,000 to 700 while the hosts hold stock leased under 1,000, the total stops at 700.
#[test]
fn cluster_reload_changing_a_quota_limit_takes_effect_across_the_swap() {
    let redis = Redis::start();
    let a = host(&keyed_config(300, "", ""), &redis, 1000);
    let b = host(&keyed_config(300, "", ""), &redis, 1000);
    let limit = |from: u64, to: u64| {
        move |t: &str| {
            t.replace(
                &format!("quota = {{ limit = {from}, period = \"DAY\" }}"),
                &format!("quota = {{ limit = {to}, period = \"DAY\" }}"),
            )
        }
    };
    let first = spend(&a, &b, [4, 4], Duration::from_millis(2));
    eprintln!("limit 300: {first:?}");
    assert!(first.2 > 0 && (300..=301).contains(&(first.0 + first.1)));
    for h in [&a, &b] {
        edit_config(h, limit(300, 600));
        let (status, body) = reload(h.admin);
        assert_eq!(status, 200, "{body}");
    }
    let second = spend(&a, &b, [4, 4], Duration::from_millis(2));
    let total = first.0 + first.1 + second.0 + second.1;
    eprintln!("limit 600: {second:?}, total {total}");
    assert!(
        second.2 > 0 && (600..=601).contains(&total),
        "total {total}"
    );
    assert_eq!(usage_used(&a.config), total.min(600));
    // Raised to 1,000; slow traffic for a while (the hosts lease stock under 1,000), then
    // lowered to 700 during the traffic.
    for h in [&a, &b] {
        edit_config(h, limit(600, 1000));
        assert_eq!(reload(h.admin).0, 200);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(20);
    let (counts, threads) = drive(
        &[a.gw.addr, b.gw.addr],
        &[2, 2],
        "/prod/keyed",
        Some(ALICE),
        Duration::from_millis(5),
        &stop,
        deadline,
    );
    let ok = || counts.iter().map(|c| c.ok()).sum::<u64>();
    while ok() < 50 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    for h in [&a, &b] {
        edit_config(h, limit(1000, 700));
        assert_eq!(reload(h.admin).0, 200);
    }
    wait_quiet(&counts, Duration::from_millis(1000), deadline);
    stop.store(true, Ordering::Relaxed);
    join(threads);
    assert_eq!(counts.iter().map(|c| c.other()).sum::<u64>(), 0);
    let third = ok();
    let total = total + third;
    eprintln!("limit 1000 then 700: {third} more, total {total}");
    assert!(third > 50, "{third}");
    assert!(
        (700..=701).contains(&total),
        "total {total} for a limit of 700"
    );
    assert_eq!(usage_used(&a.config), 700);
}

/// `GET key` on the test's Redis (RESP by hand): the integer value, 0 when absent.
fn redis_get(redis: &Redis, key: &str) -> u64 {
    use std::io::Read as _;
    let mut s = TcpStream::connect(("127.0.0.1", redis.port)).expect("connect redis");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    s.write_all(format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes())
        .expect("write redis");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        let n = s.read(&mut chunk).expect("read redis");
        assert!(n > 0, "redis closed");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if text.starts_with("$-1\r\n") {
            return 0;
        }
        let mut lines = text.split("\r\n");
        if let (Some(_len), Some(v)) = (lines.next(), lines.next()) {
            if text.matches("\r\n").count() >= 2 {
                return v.parse().unwrap_or_else(|_| panic!("redis said {text:?}"));
            }
        }
    }
}

/// A reload that removes a key from its plan retires the key's counter: once the shards
/// swapped, the stock the host held for it goes back to Redis, which then counts exactly the
/// requests admitted.
#[test]
fn cluster_reload_gives_back_the_stock_of_a_removed_counter() {
    let redis = Redis::start();
    let a = host(&keyed_config(1_000_000, "", ""), &redis, 1000);
    let stop = Arc::new(AtomicBool::new(false));
    let (counts, threads) = drive(
        &[a.gw.addr],
        &[2],
        "/prod/keyed",
        Some(ALICE),
        Duration::from_millis(2),
        &stop,
        Instant::now() + Duration::from_millis(500),
    );
    join(threads);
    let admitted = counts[0].ok();
    assert!(admitted > 0 && counts[0].other() == 0 && counts[0].refused() == 0);
    let day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        / 86_400;
    let key = format!("e2e:q:4:gold:alice:{day}");
    let held = redis_get(&redis, &key);
    assert!(
        held > admitted,
        "the host holds stock for alice: Redis {held}, admitted {admitted}"
    );
    edit_config(&a, |t| {
        t.replace("keys = [\"alice\", \"mallory\"]", "keys = [\"mallory\"]")
    });
    let (status, body) = reload(a.admin);
    assert_eq!(status, 200, "{body}");
    // Given back at the syncs after the hand-over (100 ms each).
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut now = redis_get(&redis, &key);
    while now != admitted && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        now = redis_get(&redis, &key);
    }
    assert_eq!(
        now, admitted,
        "Redis counts what was admitted, no stock left"
    );
    let r = Client::connect(a.gw.addr).request(&get_with_key("/prod/keyed", Some(ALICE)));
    assert_ne!(r.status, 200, "alice is in no plan any more");
}
