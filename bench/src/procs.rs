//! Child processes that never outlive the harness, and what `/proc` says about them.
//!
//! Every child runs in its own process group, pinned to the CPUs it is given, with
//! `PR_SET_PDEATHSIG` so it dies with the harness. Its process group is recorded in a fixed
//! table that a SIGINT/SIGTERM handler (and the panic hook: release builds abort on panic)
//! can read without locking; [`Child`] kills the whole group on drop. CPU time (utime +
//! stime) and memory (`VmRSS`, `VmHWM`) are summed over every process of a group.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Process groups alive right now (0 = free slot).
static PGIDS: [AtomicI32; 64] = [const { AtomicI32::new(0) }; 64];
/// Set by SIGINT/SIGTERM.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Directories to remove if the harness dies by panic.
static TEMP_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The harness was asked to stop (Ctrl-C or SIGTERM).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn register(pgid: i32) {
    for slot in &PGIDS {
        if slot
            .compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
    // More than 64 children at once never happens here; the Drop guard still kills it.
}

fn unregister(pgid: i32) {
    for slot in &PGIDS {
        let _ = slot.compare_exchange(pgid, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// SIGKILLs every recorded process group. Async-signal-safe (atomics and `kill` only).
pub fn kill_all() {
    for slot in &PGIDS {
        let pgid = slot.load(Ordering::SeqCst);
        if pgid > 0 {
            // SAFETY: kill(2) with a negative pid signals a process group; no memory involved.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
    kill_all();
}

/// Installs the SIGINT/SIGTERM/SIGHUP handler and a panic hook that kill every child group
/// and remove the registered temp dirs, and makes the harness a child subreaper, so that
/// grandchildren (nginx's worker) are reaped by [`Child::stop`] rather than left as zombies.
pub fn install_handlers() {
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    // SAFETY: sigaction with a handler that only touches atomics and calls kill(2).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = libc::SA_RESTART;
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_all();
        if let Ok(dirs) = TEMP_DIRS.lock() {
            for d in dirs.iter() {
                let _ = std::fs::remove_dir_all(d);
            }
        }
        default(info);
    }));
}

/// A private directory removed on drop (and by the panic hook).
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> io::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "tollgate-bench-{}-{nanos:x}-{tag}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path)?;
        if let Ok(mut dirs) = TEMP_DIRS.lock() {
            dirs.push(path.clone());
        }
        Ok(TempDir { path })
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        if let Ok(mut dirs) = TEMP_DIRS.lock() {
            dirs.retain(|d| d != &self.path);
        }
    }
}

/// A CPU set for `sched_setaffinity`.
#[derive(Clone, Copy)]
pub struct CpuSet(libc::cpu_set_t);

impl CpuSet {
    pub fn of(cpus: &[usize]) -> CpuSet {
        // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write into it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_ZERO(&mut set);
            for &c in cpus {
                libc::CPU_SET(c, &mut set);
            }
            CpuSet(set)
        }
    }

    /// Pins the calling thread (the whole process if it is the only thread).
    pub fn apply_to_self(&self) -> io::Result<()> {
        // SAFETY: pid 0 = this thread; the set is valid for its size.
        let rc =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Number of online CPUs.
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Clock ticks per second for `/proc/PID/stat` times.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Raises the open-files limit as far as allowed (children inherit it). Returns the soft limit.
pub fn raise_nofile(want: u64) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        if r.rlim_max < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: want,
            };
            // Works as root (up to fs.nr_open); otherwise we stay at the hard limit.
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return want;
            }
        }
        let target = want.min(r.rlim_max);
        let soft = libc::rlimit {
            rlim_cur: target,
            rlim_max: r.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0 {
            target
        } else {
            r.rlim_cur
        }
    }
}

/// How a child ended.
#[derive(Clone, Copy, Debug, Default)]
pub struct Exit {
    /// Exit code, or None if killed by a signal / timed out.
    pub code: Option<i32>,
    pub timed_out: bool,
    /// CPU time the child used (user + system), from wait4's rusage.
    pub cpu: Duration,
}

/// A running child in its own process group, killed (whole group) on drop.
pub struct Child {
    pub pid: i32,
    pub name: String,
    pub log: PathBuf,
    reaped: bool,
}

/// Starts `program args` in a new process group pinned to `cpus`, stdout+stderr to `log`.
pub fn spawn(
    name: &str,
    program: &Path,
    args: &[String],
    cpus: &[usize],
    log: &Path,
    cwd: Option<&Path>,
) -> io::Result<Child> {
    spawn_env(name, program, args, &[], cpus, log, cwd)
}

/// [`spawn`] with changes to the inherited environment: `(name, Some(value))` sets a
/// variable, `(name, None)` removes it.
pub fn spawn_env(
    name: &str,
    program: &Path,
    args: &[String],
    env: &[(&str, Option<&str>)],
    cpus: &[usize],
    log: &Path,
    cwd: Option<&Path>,
) -> io::Result<Child> {
    let out = File::create(log)?;
    let err = out.try_clone()?;
    let set = CpuSet::of(cpus);
    // SAFETY: getppid has no memory effects; read before fork for the pre_exec check.
    let parent = unsafe { libc::getpid() };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit, sched_setaffinity) between
    // fork and exec; `set` is a plain copy made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set.0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        io::Error::new(e.kind(), format!("cannot start {}: {e}", program.display()))
    })?;
    let pid = child.id() as i32;
    register(pid);
    // std's Child is not needed: we reap with wait4 ourselves (for rusage).
    drop(child);
    Ok(Child {
        pid,
        name: name.to_string(),
        log: log.to_path_buf(),
        reaped: false,
    })
}

impl Child {
    /// Non-blocking: has the group leader exited?
    pub fn try_exit(&mut self) -> Option<Exit> {
        if self.reaped {
            return Some(Exit::default());
        }
        let mut status = 0;
        // SAFETY: rusage is plain data filled by wait4.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child pid with valid out-pointers.
        let r = unsafe { libc::wait4(self.pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == self.pid || r < 0 {
            self.reaped = true;
            let code = if r == self.pid && libc::WIFEXITED(status) {
                Some(libc::WEXITSTATUS(status))
            } else {
                None
            };
            let tv = |t: libc::timeval| {
                Duration::from_secs(t.tv_sec.max(0) as u64)
                    + Duration::from_micros(t.tv_usec.max(0) as u64)
            };
            return Some(Exit {
                code,
                timed_out: false,
                cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
            });
        }
        None
    }

    /// Waits for the child to exit by itself, at most `limit`; then kills its group.
    pub fn wait_for(&mut self, limit: Duration) -> Exit {
        let end = Instant::now() + limit;
        loop {
            if let Some(e) = self.try_exit() {
                self.kill_group();
                return e;
            }
            if interrupted() || Instant::now() >= end {
                self.kill_group();
                let mut e = self.wait_killed();
                e.timed_out = !interrupted();
                return e;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_killed(&mut self) -> Exit {
        for _ in 0..400 {
            if let Some(e) = self.try_exit() {
                return e;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Exit::default()
    }

    fn kill_group(&self) {
        // SAFETY: signals our own process group.
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
        }
    }

    /// Kills the whole group and reaps the leader and every other member that was handed to
    /// us (we are a subreaper).
    pub fn stop(&mut self) {
        self.kill_group();
        if !self.reaped {
            let _ = self.wait_killed();
        }
        for _ in 0..100 {
            let mut status = 0;
            // SAFETY: waitpid on our own process group with a valid out-pointer.
            let r = unsafe { libc::waitpid(-self.pid, &mut status, libc::WNOHANG) };
            if r < 0 {
                break; // ECHILD: nothing of that group left to reap
            }
            if r == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        unregister(self.pid);
    }

    /// The last `max` bytes of the child's output (for error messages).
    pub fn log_tail(&self, max: usize) -> String {
        tail_of(&self.log, max)
    }

    pub fn sample(&self) -> GroupSample {
        sample_group(self.pid)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `max` bytes of a file, trimmed, one line per line.
pub fn tail_of(path: &Path, max: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(max);
    String::from_utf8_lossy(&text[start..]).trim().to_string()
}

/// Per-CPU (busy, total) clock ticks from `/proc/stat`, indexed by CPU number. Busy counts
/// user, nice, system, irq, softirq and steal; total adds idle and iowait.
pub fn cpu_times() -> Vec<(u64, u64)> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").unwrap_or_default())
}

/// Parses the `cpuN` lines of `/proc/stat` (see [`cpu_times`]).
pub fn parse_proc_stat(text: &str) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(n) = f
            .next()
            .and_then(|c| c.strip_prefix("cpu"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let v: Vec<u64> = f.take(8).map(|x| x.parse().unwrap_or(0)).collect();
        if v.len() < 8 {
            continue;
        }
        let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
        let total = busy + v[3] + v[4];
        if out.len() <= n {
            out.resize(n + 1, (0, 0));
        }
        out[n] = (busy, total);
    }
    out
}

/// CPU and memory of a process group at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GroupSample {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// From the text of `/proc/PID/stat`: (pgrp, utime + stime ticks).
pub fn parse_stat(text: &str) -> Option<(i32, u64)> {
    // comm may contain spaces and parentheses: the fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): field k is at index k - 3.
    let pgrp = f.get(2)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((pgrp, utime + stime))
}

/// `VmRSS` and `VmHWM` (KiB) from the text of `/proc/PID/status`.
pub fn parse_status(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Sums CPU and memory over every live process whose process group is `pgid`.
pub fn sample_group(pgid: i32) -> GroupSample {
    let mut s = GroupSample::default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return s;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((pgrp, ticks)) = parse_stat(&stat) else {
            continue;
        };
        if pgrp != pgid {
            continue;
        }
        s.cpu_ticks += ticks;
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let (rss, hwm) = parse_status(&status);
            s.rss_kib += rss;
            s.hwm_kib += hwm;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_odd_comm() {
        let text = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_stat(text), Some((1234, 325)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn proc_stat_per_cpu() {
        let text = "cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 5 1 4 50 2 0 1 1 0 0\ncpu1 5 0 6 50 0 0 0 0 0 0\nintr 1 2\n";
        assert_eq!(parse_proc_stat(text), vec![(12, 64), (11, 61)]);
        assert!(!cpu_times().is_empty());
    }

    #[test]
    fn status_fields() {
        let text = "Name:\tnginx\nVmHWM:\t   10240 kB\nVmRSS:\t    8192 kB\n";
        assert_eq!(parse_status(text), (8192, 10240));
        assert_eq!(parse_status(""), (0, 0));
    }

    #[test]
    fn environment_changes_reach_the_child() {
        let dir = std::env::temp_dir().join(format!("tollgate-bench-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("out.log");
        let mut child = spawn_env(
            "sh",
            Path::new("/bin/sh"),
            &["-c".into(), "echo \"A=$TB_A B=${HOME:-unset}\"".into()],
            &[("TB_A", Some("1")), ("HOME", None)],
            &[0],
            &log,
            None,
        )
        .expect("spawn sh");
        let exit = child.wait_for(Duration::from_secs(10));
        assert_eq!(exit.code, Some(0));
        assert_eq!(tail_of(&log, 100), "A=1 B=unset");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn own_group_is_sampled() {
        // SAFETY: getpgrp has no memory effects.
        let me = unsafe { libc::getpgrp() };
        let s = sample_group(me);
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
    }
}
