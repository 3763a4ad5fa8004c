//! Process control and measurement: finds the programs, hands out loopback ports, starts the
//! origin and the proxies (configs written to the temp dir, pinned to their CPUs, with the
//! environment of their variant), waits until they listen, and runs one tollgate-load phase
//! with the CPU of proxy, origin, load generator and the rest of the machine sampled around it.

use crate::configs::{self, Routes, Setup};
use crate::load::{self, LoadResult, LoadSpec};
use crate::procs::{self, Child, GroupSample, TempDir};
use crate::run::results::Row;
use crate::run::{saturated, Options, Phase, ProxyKind, Scenario};
use crate::sysinfo;
use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The programs used.
#[derive(Clone, Debug)]
pub struct Tools {
    pub tollgate: PathBuf,
    pub load: PathBuf,
    pub nginx: Option<PathBuf>,
    pub haproxy: Option<PathBuf>,
    pub wrk: Option<PathBuf>,
}

pub const INSTALL_HINT: &str = "apt-get install -y nginx haproxy wrk";

/// Finds tollgate and tollgate-load in `bin_dir` (an error telling how to build them if
/// missing) and nginx, HAProxy, wrk on the system (None if missing).
pub fn find_tools(bin_dir: &Path) -> Result<Tools, String> {
    let tollgate = bin_dir.join("tollgate");
    let load = bin_dir.join("tollgate-load");
    let missing: Vec<String> = [&tollgate, &load]
        .iter()
        .filter(|p| !sysinfo::is_executable(p))
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing {}: build them first with `cargo build --release --workspace` (or point --bin-dir at a target directory that has them)",
            missing.join(" and ")
        ));
    }
    Ok(Tools {
        tollgate,
        load,
        nginx: sysinfo::find_program("nginx"),
        haproxy: sysinfo::find_program("haproxy"),
        wrk: sysinfo::find_program("wrk"),
    })
}

/// Hands out loopback ports that were free a moment ago, never the same one twice.
#[derive(Default)]
pub(super) struct Ports(HashSet<u16>);

impl Ports {
    pub(super) fn free(&mut self) -> Result<u16, String> {
        for _ in 0..1000 {
            let l =
                TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
            let port = l.local_addr().map_err(|e| e.to_string())?.port();
            if self.0.insert(port) {
                return Ok(port);
            }
        }
        Err("no free loopback port".into())
    }
}

/// Waits until `port` accepts connections (or the child exits, or 10 s pass).
pub(super) fn wait_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(10);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if procs::interrupted() {
            return Err("interrupted".into());
        }
        if let Some(exit) = child.try_exit() {
            return Err(format!(
                "{} exited at start-up (exit code {:?}): {}",
                child.name,
                exit.code,
                one_line(&child.log_tail(600))
            ));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(format!(
                "{} did not listen on 127.0.0.1:{port} within 10 s: {}",
                child.name,
                one_line(&child.log_tail(600))
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Log text on one line, for table notes.
pub fn one_line(s: &str) -> String {
    let joined = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    if joined.is_empty() {
        "(no output)".into()
    } else {
        joined.replace('|', "\\|")
    }
}

/// A proxy under test.
pub(super) struct Proxy {
    pub(super) kind: ProxyKind,
    pub(super) port: u16,
    pub(super) child: Child,
}

/// Where the proxy and the client side (origin + load generator) may run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) proxy: Vec<usize>,
    pub(super) client: Vec<usize>,
}

impl Layout {
    /// Proxy and client side compete for the same CPUs.
    fn shared(&self) -> bool {
        self.proxy == self.client
    }
}

/// The CPU time spent during one load phase: the proxy's, the origin's and the load
/// generator's clock ticks, the phase's length, and every CPU's (busy, total) ticks before
/// and after it.
struct Window<'c> {
    proxy_ticks: f64,
    origin_ticks: f64,
    load_ticks: f64,
    secs: f64,
    clk_tck: f64,
    cpus_before: &'c [(u64, u64)],
    cpus_after: &'c [(u64, u64)],
}

impl Window<'_> {
    /// The phase's figures from load result `r`, the proxy pinned as `layout` says.
    fn phase(&self, r: &LoadResult, layout: &Layout) -> Phase {
        let (proxy_ticks, origin_ticks, load_ticks) =
            (self.proxy_ticks, self.origin_ticks, self.load_ticks);
        let client_ticks = origin_ticks + load_ticks;
        let (others_proxy_cpu, others_client_cpu) = if layout.shared() {
            let o = self.others(&layout.proxy, proxy_ticks + client_ticks);
            (o, o)
        } else {
            (
                self.others(&layout.proxy, proxy_ticks),
                self.others(&layout.client, client_ticks),
            )
        };
        let busy = |t: f64| t / self.clk_tck / self.secs;
        let (load_busy, origin_busy, client_busy) =
            (busy(load_ticks), busy(origin_ticks), busy(client_ticks));
        // One client CPU (origin + generator): saturated when they fill it. Otherwise the
        // single generator thread is the client side's limit.
        let client_saturated = layout.client.len() == 1 && !layout.shared();
        Phase {
            rps: r.rps,
            cpu_us_per_req: if r.requests > 0 {
                proxy_ticks / self.clk_tck * 1e6 / r.requests as f64
            } else {
                f64::NAN
            },
            proxy_busy: busy(proxy_ticks),
            client_busy,
            load_busy,
            origin_busy,
            client_bound: saturated(load_busy) || (client_saturated && saturated(client_busy)),
            origin_bound: saturated(origin_busy),
            p50_us: r.p50_us as f64,
            p99_us: r.p99_us as f64,
            p999_us: r.p999_us as f64,
            bad: r.bad(),
            others_proxy_cpu,
            others_client_cpu,
        }
    }

    /// What the rest of the machine did on `cpus` meanwhile (same window): the share of their
    /// time busy beyond `ours_ticks`.
    fn others(&self, cpus: &[usize], ours_ticks: f64) -> f64 {
        let (c0, c1) = (self.cpus_before, self.cpus_after);
        let (mut busy, mut total) = (0u64, 0u64);
        for &cpu in cpus {
            if let (Some(a), Some(b)) = (c0.get(cpu), c1.get(cpu)) {
                busy += b.0.saturating_sub(a.0);
                total += b.1.saturating_sub(a.1);
            }
        }
        if total == 0 {
            0.0
        } else {
            ((busy as f64 - ours_ticks) / total as f64).clamp(0.0, 1.0)
        }
    }
}

/// How to drive one tollgate-load phase.
pub(super) struct PhaseSpec<'a> {
    pub(super) scenario_file: Option<&'a Path>,
    /// Open loop at this rate; None = closed loop.
    pub(super) rate: Option<f64>,
    pub(super) duration: Duration,
    pub(super) hgrm: Option<&'a Path>,
    pub(super) connections: usize,
    pub(super) layout: &'a Layout,
    /// TLS (`https://` and these tollgate-load options), or plain HTTP when None.
    pub(super) tls: Option<&'static [&'static str]>,
}

impl<'a> PhaseSpec<'a> {
    pub(super) fn closed(
        duration: Duration,
        connections: usize,
        layout: &'a Layout,
    ) -> PhaseSpec<'a> {
        PhaseSpec {
            scenario_file: None,
            rate: None,
            duration,
            hgrm: None,
            connections,
            layout,
            tls: None,
        }
    }
}

/// Everything the scenario functions share.
pub(super) struct Ctx<'a> {
    pub(super) opts: &'a Options,
    pub(super) tools: &'a Tools,
    pub(super) temp: &'a TempDir,
    pub(super) ports: Ports,
    pub(super) origin: Child,
    pub(super) origin_port: u16,
    /// The method's pinning: proxy on CPU 0, origin + load generator on CPU 1.
    pub(super) pinned: Layout,
    /// The two-shard scenario: everything allowed on CPUs 0 and 1.
    pub(super) wide: Layout,
    pub(super) nofile: u64,
    pub(super) clk_tck: f64,
    pub(super) seq: usize,
}

/// Writes `text` to the file `name` in `dir`; its path.
fn write_in(dir: &Path, name: &str, text: String) -> Result<PathBuf, String> {
    let p = dir.join(name);
    std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(p)
}

/// Starts the benchmark origin (this program's `origin` subcommand) on `cpus`.
pub(super) fn start_origin(
    opts: &Options,
    temp: &TempDir,
    ports: &mut Ports,
    cpus: &[usize],
    tag: &str,
) -> Result<(Child, u16), String> {
    let port = ports.free()?;
    // The origin stops by itself well after the longest possible run.
    let budget = 600
        + opts.scenarios.len() as u64
            * opts.rounds as u64
            * (opts.proxies.len() as u64 + 1)
            * 4
            * (opts.duration.as_secs() + 20);
    let mut origin = procs::spawn(
        "origin",
        &opts.self_exe,
        &[
            "origin".into(),
            "--port".into(),
            port.to_string(),
            "--max-secs".into(),
            budget.to_string(),
        ],
        cpus,
        &temp.join(&format!("{tag}.log")),
        None,
    )
    .map_err(|e| e.to_string())?;
    wait_ready(&mut origin, port)?;
    Ok((origin, port))
}

impl Ctx<'_> {
    pub(super) fn next_tag(&mut self, what: &str) -> String {
        self.seq += 1;
        format!("{:04}-{what}", self.seq)
    }

    /// Starts `kind` with `workers` workers/threads/shards, allowed on `cpus`.
    pub(super) fn start_proxy(
        &mut self,
        kind: ProxyKind,
        routes: Routes,
        scen: &str,
        workers: usize,
        cpus: &[usize],
    ) -> Result<Proxy, String> {
        self.start_proxy_with(kind, routes, scen, workers, cpus, &Setup::default())
    }

    /// [`Ctx::start_proxy`] with a scenario's additions (TLS, access log, admin listener); the
    /// gateway route styles of nginx and HAProxy come from the options.
    pub(super) fn start_proxy_with(
        &mut self,
        kind: ProxyKind,
        routes: Routes,
        scen: &str,
        workers: usize,
        cpus: &[usize],
        setup: &Setup,
    ) -> Result<Proxy, String> {
        let setup = Setup {
            nginx_routes: self.opts.nginx_routes,
            haproxy_routes: self.opts.haproxy_routes,
            ..setup.clone()
        };
        let port = self.ports.free()?;
        let tag = self.next_tag(&format!("{}-{scen}", kind.name().to_ascii_lowercase()));
        let dir = self.temp.join(&tag);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let (program, args) = match kind {
            ProxyKind::Tollgate | ProxyKind::TollgatePoll | ProxyKind::TollgateStock => {
                self.tollgate_command(routes, port, workers, &dir, &setup)?
            }
            ProxyKind::Nginx => self.nginx_command(routes, port, workers, &dir, &setup)?,
            ProxyKind::Haproxy => self.haproxy_command(routes, port, workers, &dir, &setup)?,
        };
        let mut child = procs::spawn_env(
            kind.name(),
            &program,
            &args,
            kind.env(),
            cpus,
            &dir.join("output.log"),
            Some(&dir),
        )
        .map_err(|e| e.to_string())?;
        wait_ready(&mut child, port)?;
        Ok(Proxy { kind, port, child })
    }

    /// tollgate's program and arguments, its config written in `dir`.
    fn tollgate_command(
        &self,
        routes: Routes,
        port: u16,
        workers: usize,
        dir: &Path,
        setup: &Setup,
    ) -> Result<(PathBuf, Vec<String>), String> {
        let cfg = write_in(
            dir,
            "tollgate.toml",
            configs::tollgate_with(routes, port, self.origin_port, workers, setup),
        )?;
        Ok((
            self.tools.tollgate.clone(),
            vec![
                "--config".into(),
                cfg.display().to_string(),
                "--shards".into(),
                workers.to_string(),
            ],
        ))
    }

    /// nginx's program and arguments, its config written in `dir` (its prefix directory).
    fn nginx_command(
        &self,
        routes: Routes,
        port: u16,
        workers: usize,
        dir: &Path,
        setup: &Setup,
    ) -> Result<(PathBuf, Vec<String>), String> {
        let program = self.tools.nginx.clone().ok_or("nginx is not installed")?;
        let cfg = write_in(
            dir,
            "nginx.conf",
            configs::nginx(
                routes,
                port,
                self.origin_port,
                dir,
                self.nofile,
                workers,
                setup,
            ),
        )?;
        Ok((
            program,
            vec![
                "-p".into(),
                dir.display().to_string(),
                "-e".into(),
                dir.join("nginx-error.log").display().to_string(),
                "-c".into(),
                cfg.display().to_string(),
            ],
        ))
    }

    /// HAProxy's program and arguments, its config (and route map) written in `dir`.
    fn haproxy_command(
        &self,
        routes: Routes,
        port: u16,
        workers: usize,
        dir: &Path,
        setup: &Setup,
    ) -> Result<(PathBuf, Vec<String>), String> {
        let program = self
            .tools
            .haproxy
            .clone()
            .ok_or("HAProxy is not installed")?;
        if let Routes::Gateway { count } = routes {
            write_in(dir, configs::HAPROXY_MAP, configs::haproxy_route_map(count))?;
        }
        let cfg = write_in(
            dir,
            "haproxy.cfg",
            configs::haproxy(
                routes,
                port,
                self.origin_port,
                self.nofile,
                workers,
                dir,
                setup,
            ),
        )?;
        Ok((
            program,
            vec!["-f".into(), cfg.display().to_string(), "-db".into()],
        ))
    }

    /// Warm-up: one short phase per running proxy (it opens the upstream connections), which
    /// must answer right. A proxy that fails is reported, its row (`rows`, in the order of
    /// `running`) says why, and it is left out of the rest of the scenario.
    pub(super) fn warm_up(
        &mut self,
        running: &mut [Option<Proxy>],
        rows: &mut [impl Row],
        scen: Scenario,
        spec: &PhaseSpec<'_>,
        progress: &mut dyn FnMut(&str),
    ) {
        for (slot, row) in running.iter_mut().zip(rows) {
            let Some(p) = slot.as_mut() else {
                continue;
            };
            let (kind, failure, _, _) = row.common();
            match self.phase(p, scen, spec) {
                Ok((_, r)) => {
                    if let Some(why) = check_answers(&r, scen.body()) {
                        *failure = Some(format!("answered wrongly during warm-up: {why}"));
                    }
                }
                Err(e) => *failure = Some(format!("warm-up failed: {e}")),
            }
            if let Some(f) = failure.as_deref() {
                progress(&format!("  {}: {f}", kind.name()));
                *slot = None;
            }
        }
    }

    /// Runs one tollgate-load phase against `p`, with CPU sampled around it.
    pub(super) fn phase(
        &mut self,
        p: &mut Proxy,
        scen: Scenario,
        ps: &PhaseSpec<'_>,
    ) -> Result<(Phase, LoadResult), String> {
        if let Some(exit) = p.child.try_exit() {
            return Err(format!(
                "{} exited (code {:?}): {}",
                p.kind.name(),
                exit.code,
                one_line(&p.child.log_tail(600))
            ));
        }
        let paths = scen.paths(self.opts.gateway_routes);
        let scheme = if ps.tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{}{}", p.port, paths[0]);
        let tag = self.next_tag(&format!("load-{}-{}", scen.id(), p.kind.name()));
        let spec = LoadSpec {
            url: &url,
            scenario: ps.scenario_file,
            connections: ps.connections,
            duration: ps.duration,
            rate: ps.rate,
            hgrm: ps.hgrm,
            cpus: &ps.layout.client,
            work: &self.temp.path,
            tag: &tag,
            extra: ps.tls.unwrap_or(&[]),
        };
        let p0 = p.child.sample();
        let o0 = self.origin.sample();
        let c0 = procs::cpu_times();
        let ran = load::run_tollgate_load(&self.tools.load, &spec)?;
        let c1 = procs::cpu_times();
        let p1 = p.child.sample();
        let o1 = self.origin.sample();
        let r = &ran.result;
        let secs = if r.elapsed_s > 0.0 {
            r.elapsed_s
        } else {
            ran.wall.as_secs_f64()
        }
        .max(1e-6);
        let ticks =
            |a: &GroupSample, b: &GroupSample| b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64;
        let window = Window {
            proxy_ticks: ticks(&p0, &p1),
            origin_ticks: ticks(&o0, &o1),
            load_ticks: ran.client_cpu.as_secs_f64() * self.clk_tck,
            secs,
            clk_tck: self.clk_tck,
            cpus_before: &c0,
            cpus_after: &c1,
        };
        let phase = window.phase(r, ps.layout);
        Ok((phase, ran.result))
    }

    /// Runs proxy `i`'s closed-loop phase while the others (which should be idle) are
    /// watched: CPU they use meanwhile is taken from the proxy under test, and noted.
    /// None when proxy `i` is not running.
    pub(super) fn watched_phase(
        &mut self,
        running: &mut [Option<Proxy>],
        i: usize,
        scen: Scenario,
        ps: &PhaseSpec<'_>,
        what: &str,
        notes: &mut Vec<String>,
    ) -> Option<Result<(Phase, LoadResult), String>> {
        let idle_before = sample_all(running);
        let phase_start = Instant::now();
        let p = running[i].as_mut()?;
        let name = p.kind.name();
        let result = self.phase(p, scen, ps);
        let secs = phase_start.elapsed().as_secs_f64().max(1e-6);
        for (j, after) in sample_all(running).into_iter().enumerate() {
            if let (true, Some(a), Some(b), Some(other)) =
                (j != i, idle_before[j], after, running[j].as_ref())
            {
                let busy = b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / self.clk_tck / secs;
                if busy > 0.05 {
                    notes.push(format!(
                        "{} used {:.0}% of a CPU while idle during {name}'s {what}: that CPU time was taken from the proxy under test.",
                        other.kind.name(),
                        busy * 100.0,
                    ));
                }
            }
        }
        Some(result)
    }
}

/// A sample of every running proxy (None where not running).
pub(super) fn sample_all(running: &[Option<Proxy>]) -> Vec<Option<GroupSample>> {
    running
        .iter()
        .map(|p| p.as_ref().map(|p| p.child.sample()))
        .collect()
}
/// Why a warm-up result shows a proxy that does not proxy right (None = fine).
pub fn check_answers(r: &LoadResult, body: usize) -> Option<String> {
    if r.ok_2xx == 0 {
        let codes = if r.codes.is_empty() {
            "none".to_string()
        } else {
            r.codes.clone()
        };
        return Some(format!(
            "no 2xx response ({} responses, {} socket errors; status codes {codes})",
            r.requests, r.errors
        ));
    }
    if r.bad() * 100 > r.requests.max(1) {
        return Some(format!(
            "{} of {} requests failed (status codes: {}; {} socket errors/timeouts)",
            r.bad(),
            r.requests,
            r.codes,
            r.errors
        ));
    }
    if r.requests > 0 && (r.bytes_read / r.requests) < body as u64 {
        return Some(format!(
            "responses average {} bytes, less than the {body}-byte body",
            r.bytes_read / r.requests
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        let wide = Layout {
            proxy: vec![0, 1],
            client: vec![0, 1],
        };
        assert!(wide.shared());
        let pinned = Layout {
            proxy: vec![0],
            client: vec![1],
        };
        assert!(!pinned.shared());
    }

    #[test]
    fn answer_checks() {
        let good = LoadResult {
            requests: 100,
            ok_2xx: 100,
            bytes_read: 100 * 1200,
            ..Default::default()
        };
        assert_eq!(check_answers(&good, 1024), None);
        let short = LoadResult {
            bytes_read: 100 * 100,
            ..good.clone()
        };
        assert!(check_answers(&short, 1024).is_some());
        let errs = LoadResult {
            non_2xx: 50,
            ok_2xx: 50,
            codes: "404: 50".into(),
            ..good.clone()
        };
        assert!(check_answers(&errs, 0).is_some_and(|s| s.contains("404")));
        assert!(check_answers(&LoadResult::default(), 0).is_some());
    }
}
