//! The `memory` scenario (issue 20): what connections cost in RSS and whether it comes back.
//! For each proxy, two bursts of `--idle-connections` connections, one after the other:
//! - **idle**: each connection completes one request and stays open (keep-alive, idle);
//! - **slow**: each connection sends a partial request head, one byte per connection per
//!   round (`SLOW_HEAD`, never completed, for at most `SLOW_FOR`), as a slow or malicious
//!   client does.
//!
//! Each burst reports RSS before it, while its connections are held, and `AFTER` (a minute)
//! after they all closed, so memory that never comes back shows. Opt-in (`--scenarios
//! memory`, not part of `all`): it waits two minutes per proxy and measures no CPU.
//!
//! What the readings mean: the idle burst's *before* is read 0.3 s after one warm-up request
//! (so the first backend connection, and whatever the proxy allocates at start, such as
//! tollgate's receive ring, are in it: the baseline is the started, warmed proxy, not an empty
//! process); the slow burst's *before* is the idle burst's *after*, so its percentage is
//! relative to what the first burst left, not to the start. The idle burst's *after* falls at
//! tollgate's default backend idle timeout (60 s): pooled backend connections the burst opened
//! may still be open, or just closed, when it is read.

use super::control::{one_line, Ctx};
use super::scenario::ProxyKind;
use crate::configs::Routes;
use crate::idle;
use crate::procs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long after a burst closed its "after" RSS is read (the "a minute after").
pub const AFTER: Duration = Duration::from_secs(60);

/// The planned time per proxy (two bursts, each waiting `AFTER`, plus opening them).
pub const PLANNED_SECS_PER_PROXY: f64 = 2.0 * 60.0 + 10.0;

/// The partial head a slow client sends, one byte per round; it never ends the head.
pub const SLOW_HEAD: &[u8] = b"GET /0 HTTP/1.1\r\nHost: bench\r\nX-Slow: 0123456789abcdef";

/// Pause between rounds of slow bytes.
const SLOW_ROUND: Duration = Duration::from_millis(10);

/// Rounds stop after this long (a shorter partial head for many connections), so RSS is read
/// well within every proxy's header timeout (tollgate's `header_read_timeout_ms` is 10 s by
/// default): the scenario measures held slow clients, not closed ones.
const SLOW_FOR: Duration = Duration::from_secs(5);

/// The two bursts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Burst {
    Idle,
    Slow,
}

impl Burst {
    pub fn name(self) -> &'static str {
        match self {
            Burst::Idle => "idle keep-alive",
            Burst::Slow => "slow partial head",
        }
    }
}

/// One proxy's result for one burst.
#[derive(Clone, Debug)]
pub struct MemoryRow {
    pub proxy: ProxyKind,
    pub burst: Burst,
    pub failure: Option<String>,
    pub requested: usize,
    /// Connections still open when RSS was read with them held.
    pub held: usize,
    pub before_kib: u64,
    pub held_kib: u64,
    pub after_kib: u64,
    pub stopped: Option<String>,
}

impl MemoryRow {
    /// (RSS held − RSS before) / connections held, in KiB.
    pub fn kib_per_conn(&self) -> Option<f64> {
        (self.failure.is_none() && self.held > 0)
            .then(|| (self.held_kib as f64 - self.before_kib as f64) / self.held as f64)
    }

    /// RSS `AFTER` the burst relative to before it, in percent.
    pub fn after_pct(&self) -> Option<f64> {
        (self.failure.is_none() && self.before_kib > 0).then(|| {
            (self.after_kib as f64 - self.before_kib as f64) * 100.0 / self.before_kib as f64
        })
    }
}

/// Opens `n` connections that each send `SLOW_HEAD` one byte per round.
fn open_slow(addr: SocketAddr, n: usize, deadline: Instant) -> (Vec<TcpStream>, Option<String>) {
    let mut streams = Vec::with_capacity(n);
    let mut stopped = None;
    while streams.len() < n {
        if procs::interrupted() || Instant::now() >= deadline {
            stopped = Some("interrupted or out of time while opening connections".into());
            break;
        }
        match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                streams.push(s);
            }
            Err(e) => {
                stopped = Some(format!("connect failed: {e}"));
                break;
            }
        }
    }
    let started = Instant::now();
    for i in 0..SLOW_HEAD.len() {
        if procs::interrupted() || started.elapsed() >= SLOW_FOR {
            break;
        }
        // A connection the proxy closed is dropped from the set.
        streams.retain_mut(|s| s.write_all(&SLOW_HEAD[i..i + 1]).is_ok());
        std::thread::sleep(SLOW_ROUND);
    }
    (streams, stopped)
}

/// Runs both bursts against every proxy, one proxy at a time.
pub(super) fn run_memory(
    ctx: &mut Ctx<'_>,
    proxies: &[ProxyKind],
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<MemoryRow>, String> {
    let n = ctx.opts.idle_connections;
    let mut rows = Vec::new();
    for &k in proxies {
        let cpus = ctx.pinned.proxy.clone();
        let p = match ctx.start_proxy(k, Routes::Single, "memory", 1, &cpus) {
            Ok(p) => p,
            Err(e) => {
                for burst in [Burst::Idle, Burst::Slow] {
                    rows.push(failed(k, burst, n, format!("did not start: {e}")));
                }
                continue;
            }
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], p.port));
        // One request first, so the upstream connection exists before the first reading.
        let warm = idle::open(
            addr,
            "/0",
            1,
            Instant::now() + Duration::from_secs(5),
            &procs::interrupted,
        );
        if warm.streams.is_empty() {
            let why = format!(
                "no 2xx answer to a first request: {}",
                warm.stopped.unwrap_or_default()
            );
            for burst in [Burst::Idle, Burst::Slow] {
                rows.push(failed(k, burst, n, why.clone()));
            }
            continue;
        }
        drop(warm);
        std::thread::sleep(Duration::from_millis(300));
        for burst in [Burst::Idle, Burst::Slow] {
            let before_kib = p.child.sample().rss_kib;
            let deadline = Instant::now() + Duration::from_secs(60);
            let (streams, stopped) = match burst {
                Burst::Idle => {
                    let set = idle::open(addr, "/0", n, deadline, &procs::interrupted);
                    (set.streams, set.stopped)
                }
                Burst::Slow => open_slow(addr, n, deadline),
            };
            if procs::interrupted() {
                return Err("interrupted".into());
            }
            std::thread::sleep(Duration::from_millis(500));
            let held_kib = p.child.sample().rss_kib;
            let held = idle::still_open(&streams);
            drop(streams);
            let closed = Instant::now();
            while closed.elapsed() < AFTER {
                if procs::interrupted() {
                    return Err("interrupted".into());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let row = MemoryRow {
                proxy: k,
                burst,
                failure: None,
                requested: n,
                held,
                before_kib,
                held_kib,
                after_kib: p.child.sample().rss_kib,
                stopped,
            };
            progress(&format!(
                "  {:<14} {:<17} {} of {n} held, RSS {:.1} → {:.1} MiB ({} KiB/connection), {:.1} MiB a minute after ({:+.1} %)",
                k.name(),
                burst.name(),
                row.held,
                row.before_kib as f64 / 1024.0,
                row.held_kib as f64 / 1024.0,
                row.kib_per_conn().map_or("—".into(), |v| format!("{v:.2}")),
                row.after_kib as f64 / 1024.0,
                row.after_pct().unwrap_or(f64::NAN),
            ));
            rows.push(row);
        }
        drop(p);
    }
    Ok(rows)
}

fn failed(proxy: ProxyKind, burst: Burst, n: usize, why: String) -> MemoryRow {
    MemoryRow {
        proxy,
        burst,
        failure: Some(why),
        requested: n,
        held: 0,
        before_kib: 0,
        held_kib: 0,
        after_kib: 0,
        stopped: None,
    }
}

/// The report section: one table, a row per proxy and burst.
pub fn section(rows: &[MemoryRow]) -> String {
    let mib = |k: u64| format!("{:.1}", k as f64 / 1024.0);
    let mut out = String::from(
        "## Connection memory: idle and slow clients, and RSS a minute after\n\n\
         Each burst opens `--idle-connections` connections to one proxy: *idle keep-alive* \
         connections complete one request each and stay open; *slow partial head* connections \
         send an incomplete request head one byte per connection per round. RSS is read before \
         the burst, with its connections held, and a minute after they all closed.\n\n\
         | proxy | burst | connections held | RSS before (MiB) | RSS held (MiB) | KiB / connection | RSS a minute after (MiB) | after vs before | note |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        let cells = match &r.failure {
            Some(f) => vec![
                format!("{} (not measured)", r.proxy.name()),
                r.burst.name().into(),
                "—".into(),
                "—".into(),
                "—".into(),
                "—".into(),
                "—".into(),
                "—".into(),
                one_line(f),
            ],
            None => vec![
                r.proxy.name().into(),
                r.burst.name().into(),
                format!("{} of {}", r.held, r.requested),
                mib(r.before_kib),
                mib(r.held_kib),
                r.kib_per_conn()
                    .map_or_else(|| "—".into(), |v| format!("{v:.2}")),
                mib(r.after_kib),
                r.after_pct()
                    .map_or_else(|| "—".into(), |v| format!("{v:+.1} %")),
                r.stopped.as_deref().map_or_else(String::new, one_line),
            ],
        };
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(burst: Burst, before: u64, held: u64, after: u64, n: usize) -> MemoryRow {
        MemoryRow {
            proxy: ProxyKind::Tollgate,
            burst,
            failure: None,
            requested: n,
            held: n,
            before_kib: before,
            held_kib: held,
            after_kib: after,
            stopped: None,
        }
    }

    #[test]
    fn per_connection_and_after_figures() {
        let r = row(Burst::Idle, 10_000, 30_000, 11_000, 10_000);
        assert_eq!(r.kib_per_conn(), Some(2.0));
        assert_eq!(r.after_pct(), Some(10.0));
        let mut f = r.clone();
        f.failure = Some("x".into());
        assert_eq!(f.kib_per_conn(), None);
        let s = section(&[r, row(Burst::Slow, 8192, 16384, 8192, 2048)]);
        assert!(s.contains("| tollgate | idle keep-alive | 10000 of 10000 | 9.8 | 29.3 | 2.00 | 10.7 | +10.0 % |"), "{s}");
        assert!(
            s.contains("| slow partial head | 2048 of 2048 | 8.0 | 16.0 | 4.00 | 8.0 | +0.0 % |"),
            "{s}"
        );
    }
}
