//! `tollgate doctor`: reads the host settings that decide how far tollgate can go (locked
//! memory for io_uring, open files, listen backlog, local ports for backend connections,
//! io_uring availability, kernel version for the lean socket path, CPUs and their frequency
//! governor) and prints each with the value it recommends and how to set it. Read-only:
//! it changes nothing. Exit status 1 only when tollgate cannot run at all here (io_uring
//! refused); everything else is advice.

use crate::runtime;
use std::fmt::Write as _;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warn,
    /// tollgate cannot run with this.
    Fail,
    /// Nothing to judge (not available on this host).
    Info,
}

pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub value: String,
    pub recommended: &'static str,
    pub how: &'static str,
}

/// Locked memory wanted: io_uring rings and registered buffers of every shard, with room.
const MEMLOCK_WANT: u64 = 64 * 1024 * 1024;
const NOFILE_WANT: u64 = 65_536;
const SOMAXCONN_WANT: u64 = 4096;
const PORT_SPAN_WANT: u64 = 28_000;

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn rlimit(resource: libc::__rlimit_resource_t) -> Option<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    (unsafe { libc::getrlimit(resource, &mut r) } == 0).then_some((r.rlim_cur, r.rlim_max))
}

fn show_limit(n: u64, unit: u64) -> String {
    if n == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else if unit > 1 {
        format!("{} KiB", n / unit)
    } else {
        n.to_string()
    }
}

/// `(major, minor)` of a kernel release string such as `6.8.0-45-generic`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn uname_release() -> Option<String> {
    // SAFETY: utsname is plain data filled by uname.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return None;
        }
        let bytes: Vec<u8> = u
            .release
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8(bytes).ok()
    }
}

/// Whether this process may set up an io_uring (a one-entry ring, closed at once).
fn io_uring_setup() -> Result<(), std::io::Error> {
    // io_uring_params is 120 bytes of plain data; zeroed asks for defaults.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup(entries, params) with a zeroed params block of the kernel's size;
    // the returned descriptor is closed.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: closing the descriptor we just got.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

/// Every check, in report order.
pub fn checks() -> Vec<Check> {
    vec![
        memlock_check(),
        nofile_check(),
        somaxconn_check(),
        port_range_check(),
        io_uring_check(),
        kernel_check(),
        cpus_check(),
        governor_check(),
    ]
}

/// The locked-memory limit against what io_uring needs.
fn memlock_check() -> Check {
    match rlimit(libc::RLIMIT_MEMLOCK) {
        Some((soft, hard)) => Check {
            name: "locked memory (RLIMIT_MEMLOCK)",
            verdict: if soft == libc::RLIM_INFINITY || soft >= MEMLOCK_WANT {
                Verdict::Ok
            } else {
                Verdict::Warn
            },
            value: format!(
                "soft {}, hard {}",
                show_limit(soft, 1024),
                show_limit(hard, 1024)
            ),
            recommended: "64 MiB or more (io_uring rings and buffers of every shard)",
            how: "ulimit -l 65536; systemd: LimitMEMLOCK=64M (tuning/tollgate.service)",
        },
        None => info("locked memory (RLIMIT_MEMLOCK)", "unknown"),
    }
}

/// The open-files limit against one descriptor per connection.
fn nofile_check() -> Check {
    match rlimit(libc::RLIMIT_NOFILE) {
        Some((soft, hard)) => Check {
            name: "open files (RLIMIT_NOFILE)",
            verdict: if hard >= NOFILE_WANT { Verdict::Ok } else { Verdict::Warn },
            value: format!(
                "soft {}, hard {} (tollgate raises the soft limit to the hard one at start)",
                show_limit(soft, 1),
                show_limit(hard, 1)
            ),
            recommended: "a hard limit of 65536 or more (one descriptor per client connection, one more per backend connection)",
            how: "ulimit -Hn 1048576; systemd: LimitNOFILE=1048576",
        },
        None => info("open files (RLIMIT_NOFILE)", "unknown"),
    }
}

/// The listen backlog (`net.core.somaxconn`).
fn somaxconn_check() -> Check {
    let somaxconn = read_trim("/proc/sys/net/core/somaxconn");
    match somaxconn.as_deref().and_then(|v| v.parse::<u64>().ok()) {
        Some(n) => Check {
            name: "listen backlog (net.core.somaxconn)",
            verdict: if n >= SOMAXCONN_WANT {
                Verdict::Ok
            } else {
                Verdict::Warn
            },
            value: n.to_string(),
            recommended: "4096 or more (connection bursts wait in the accept queue)",
            how: "sysctl -w net.core.somaxconn=4096 (persist in /etc/sysctl.d/)",
        },
        None => info("listen backlog (net.core.somaxconn)", "unreadable"),
    }
}

/// The local port range available to backend connections.
fn port_range_check() -> Check {
    let range = read_trim("/proc/sys/net/ipv4/ip_local_port_range");
    let span = range.as_deref().and_then(|r| {
        let mut it = r.split_whitespace().map(|v| v.parse::<u64>().ok());
        let (lo, hi) = (it.next()??, it.next()??);
        Some((lo, hi))
    });
    match span {
        Some((lo, hi)) => Check {
            name: "local port range (net.ipv4.ip_local_port_range)",
            verdict: if hi.saturating_sub(lo) >= PORT_SPAN_WANT {
                Verdict::Ok
            } else {
                Verdict::Warn
            },
            value: format!(
                "{lo}-{hi} ({} ports for backend connections per backend address)",
                hi.saturating_sub(lo) + 1
            ),
            recommended: "a span of 28000 or more, such as 1024-65535",
            how: "sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"",
        },
        None => info(
            "local port range (net.ipv4.ip_local_port_range)",
            "unreadable",
        ),
    }
}

/// Whether an io_uring can be set up here (the one check that can fail).
fn io_uring_check() -> Check {
    let disabled = read_trim("/proc/sys/kernel/io_uring_disabled");
    match io_uring_setup() {
        Ok(()) => Check {
            name: "io_uring",
            verdict: Verdict::Ok,
            value: "available".to_string(),
            recommended: "available",
            how: "-",
        },
        Err(e) => Check {
            name: "io_uring",
            verdict: Verdict::Fail,
            value: format!(
                "refused: {e}{}",
                disabled.map_or(String::new(), |d| format!(" (kernel.io_uring_disabled = {d})"))
            ),
            recommended: "available (tollgate's executors run on io_uring)",
            how: "sysctl -w kernel.io_uring_disabled=0; allow io_uring_setup in the seccomp profile (containers); raise the locked-memory limit",
        },
    }
}

/// The kernel version against the lean socket path's needs.
fn kernel_check() -> Check {
    let release = uname_release();
    match release.as_deref().and_then(kernel_version) {
        Some(v) => Check {
            name: "kernel",
            verdict: if v >= (6, 0) { Verdict::Ok } else { Verdict::Warn },
            value: release.unwrap_or_default(),
            recommended: "6.0 or newer for the lean socket path (multishot receive into a buffer ring); older kernels use the poll path",
            how: "upgrade the kernel (or run with TOLLGATE_SOCKET_PATH=poll)",
        },
        None => info("kernel", "unknown"),
    }
}

/// The allowed and online CPU counts (information only).
fn cpus_check() -> Check {
    let allowed = runtime::allowed_cpus().len();
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    Check {
        name: "CPUs",
        verdict: Verdict::Info,
        value: format!(
            "{allowed} allowed of {online} online (one shard per allowed CPU by default)"
        ),
        recommended:
            "a shard per CPU that serves traffic; keep a core for interrupts on busy hosts",
        how: "taskset / systemd CPUAffinity=, or [server] shards",
    }
}

/// The distinct frequency governors of the allowed CPUs, in first-seen order.
fn allowed_cpu_governors() -> Vec<String> {
    let mut governors: Vec<String> = Vec::new();
    for cpu in runtime::allowed_cpus() {
        if let Some(g) = read_trim(&format!(
            "/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"
        )) {
            if !governors.contains(&g) {
                governors.push(g);
            }
        }
    }
    governors
}

/// The CPU frequency governors against `performance`.
fn governor_check() -> Check {
    let governors = allowed_cpu_governors();
    if governors.is_empty() {
        Check {
            name: "CPU frequency governor",
            verdict: Verdict::Info,
            value: "no cpufreq (virtual machine or fixed frequency)".to_string(),
            recommended: "performance",
            how: "-",
        }
    } else {
        Check {
            name: "CPU frequency governor",
            verdict: if governors.iter().all(|g| g == "performance") {
                Verdict::Ok
            } else {
                Verdict::Warn
            },
            value: governors.join(", "),
            recommended: "performance (latency: no ramp-up after idle)",
            how: "cpupower frequency-set -g performance",
        }
    }
}

fn info(name: &'static str, value: &str) -> Check {
    Check {
        name,
        verdict: Verdict::Info,
        value: value.to_string(),
        recommended: "-",
        how: "-",
    }
}

/// The report, one block per check.
pub fn report(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let tag = match c.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
            Verdict::Info => "info",
        };
        let _ = writeln!(out, "[{tag}] {}: {}", c.name, c.value);
        if c.verdict != Verdict::Ok {
            let _ = writeln!(out, "       recommended: {}", c.recommended);
            if c.how != "-" {
                let _ = writeln!(out, "       how: {}", c.how);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.8.0-45-generic"), Some((6, 8)));
        assert_eq!(
            kernel_version("5.15.167.4-microsoft-standard-WSL2"),
            Some((5, 15))
        );
        assert_eq!(kernel_version("6.0"), Some((6, 0)));
        assert_eq!(kernel_version("x"), None);
        assert!((5, 19) < (6, 0) && (6, 0) <= (6, 0) && (10, 1) >= (6, 0));
    }

    #[test]
    fn every_check_is_reported() {
        let c = checks();
        let text = report(&c);
        for name in [
            "locked memory",
            "open files",
            "net.core.somaxconn",
            "ip_local_port_range",
            "io_uring",
            "kernel",
            "CPUs",
            "governor",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
        // Anything not ok says what to aim for.
        for ch in c.iter().filter(|c| c.verdict == Verdict::Warn) {
            assert!(text.contains(ch.recommended), "{text}");
        }
    }
}
