//! The run: worker threads, each with its own edge-triggered epoll loop over
//! its share of the connections, and the progress reporter. The hot path
//! picks a pre-serialized request, writes it, parses responses in place and
//! records latency; it does not allocate. With TLS (`crate::tls`) a connection's
//! bytes go through its rustls session instead of straight to the socket; a plain
//! connection only checks that it has none.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::sync::mpsc;
use std::time::Duration;

use crate::conn::{self, now_ns, Epoll, Event, Socket, EV_HUP, EV_IN, EV_OUT};
use crate::http::{ResponseInfo, ResponseParser, Step};
use crate::report::Summary;
use crate::scenario::{RequestSet, Rng};
use crate::schedule::{ns_to_us, Due, Sample, Schedule};
use crate::stats::{Progress, Stats};
use crate::tls::{ClientConfig, Handshake, TlsClient, TlsConn};
use crate::{Config, Error, Mode};
use std::sync::Arc;

/// Housekeeping period: timeouts, reconnect back-off, progress counters.
const TICK_NS: u64 = 10_000_000;
/// Wait before reconnecting after a failed connect.
const BACKOFF_NS: u64 = 10_000_000;
/// Grace after the duration before the run is cut off, whatever is pending.
pub const HARD_GRACE: Duration = Duration::from_secs(10);
const RBUF_INITIAL: usize = 16 * 1024;
const RBUF_MAX: usize = 256 * 1024;

/// Run the load described by `cfg` and return the merged measurements.
pub fn run(cfg: &Config) -> Result<Summary, Error> {
    cfg.validate()?;
    conn::raise_fd_limit();
    let start = now_ns();
    let duration_ns = u64::try_from(cfg.duration.as_nanos()).unwrap_or(u64::MAX / 4);
    let progress: Vec<Progress> = (0..cfg.threads).map(|_| Progress::default()).collect();
    let tls = match &cfg.tls {
        Some(o) => Some(TlsClient::new(&cfg.target.url.host, o)?),
        None => None,
    };
    let results = std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(cfg.threads);
        for (t, prog) in progress.iter().enumerate() {
            let plan = Plan::new(cfg, t, start, duration_ns);
            let tls = tls.as_ref();
            let h = std::thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn_scoped(scope, move || worker(cfg, plan, prog, tls))
                .map_err(|e| Error::new(format!("cannot start worker thread: {e}")))?;
            handles.push(h);
        }
        let (done_tx, done_rx) = mpsc::channel::<()>();
        if cfg.progress && cfg.duration > Duration::from_secs(3) {
            let progress = &progress;
            scope.spawn(move || reporter(progress, start, done_rx));
        }
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::new("worker thread panicked")))
            })
            .collect();
        drop(done_tx);
        Ok::<_, Error>(results)
    })?;
    let mut stats = Stats::new();
    let mut finish = start;
    for r in results {
        let (s, f) = r?;
        stats.merge(&s);
        finish = finish.max(f);
    }
    Ok(Summary::new(
        cfg,
        stats,
        Duration::from_nanos(finish - start),
    ))
}

/// One progress line a second on stderr until the workers are done.
fn reporter(progress: &[Progress], start: u64, done: mpsc::Receiver<()>) {
    let mut last_count = 0u64;
    let mut last_t = start;
    let mut tick = 1u64;
    loop {
        let due = start + tick * 1_000_000_000;
        let wait = due.saturating_sub(now_ns());
        match done.recv_timeout(Duration::from_nanos(wait)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let now = now_ns();
        let count: u64 = progress
            .iter()
            .map(|p| p.completed.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        let errors: u64 = progress
            .iter()
            .map(|p| p.errors.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        let secs = (now - last_t) as f64 / 1e9;
        let rate = if secs > 0.0 {
            (count - last_count.min(count)) as f64 / secs
        } else {
            0.0
        };
        eprintln!("[{tick:>4}s] {rate:>12.0} req/s   total {count:>11}   errors {errors}");
        last_count = count;
        last_t = now;
        tick += 1;
    }
}

/// What one worker does.
struct Plan {
    index: usize,
    /// Global indices of this worker's connections.
    conns: std::ops::Range<usize>,
    start_ns: u64,
    end_ns: u64,
    /// Closed loop with `-n`: how many requests this worker issues.
    quota: Option<u64>,
}

impl Plan {
    fn new(cfg: &Config, t: usize, start_ns: u64, duration_ns: u64) -> Plan {
        let c = cfg.connections;
        let base = c / cfg.threads;
        let extra = c % cfg.threads;
        let lo = t * base + t.min(extra);
        let hi = lo + base + usize::from(t < extra);
        let quota = match cfg.mode {
            Mode::Closed { .. } => cfg.max_requests.map(|n| {
                let share = |k: usize| (u128::from(n) * k as u128 / c as u128) as u64;
                share(hi) - share(lo)
            }),
            Mode::Open { .. } => None,
        };
        Plan {
            index: t,
            conns: lo..hi,
            start_ns,
            end_ns: start_ns.saturating_add(duration_ns),
            quota,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    intended: u64,
    sent: u64,
    head: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No socket; reconnect at this time (`u64::MAX`: never).
    Down(u64),
    Connecting(u64),
    Open,
}

struct Conn {
    idx: u32,
    gen: u32,
    sock: Option<Socket>,
    /// The TLS session on `sock` (TLS runs only).
    tls: Option<Box<TlsConn>>,
    /// TLS runs: this connection slot's client config (its own session store with --resume).
    tls_config: Option<Arc<ClientConfig>>,
    phase: Phase,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    parser: ResponseParser,
    inflight: VecDeque<InFlight>,
    /// Open loop: this connection's share of the schedule.
    sched: Option<Schedule>,
    /// Open loop: a wake-up for the next due request is queued.
    armed: bool,
}

impl Conn {
    fn tag(&self) -> u64 {
        (u64::from(self.gen) << 32) | u64::from(self.idx)
    }
}

/// Worker state other than the connections.
struct Ctx<'a> {
    reqs: &'a RequestSet,
    addr: std::net::SocketAddr,
    ep: Epoll,
    stats: Stats,
    rng: Rng,
    open: bool,
    depth: usize,
    timeout_ns: u64,
    end_ns: u64,
    quota: Option<u64>,
    /// Closed loop: the duration is over, issue nothing new.
    stopping: bool,
    /// Requests written and not yet answered, over all connections.
    inflight_total: usize,
    /// Open loop: connections whose schedule still has requests.
    scheduled_conns: usize,
    timers: BinaryHeap<Reverse<(u64, u32, u32)>>,
    /// TLS runs: the client every new connection's session comes from.
    tls: Option<&'a TlsClient>,
    /// Close each connection after its response (`--new-conn-per-request`).
    new_conn: bool,
}

impl Ctx<'_> {
    #[inline]
    fn can_issue(&self) -> bool {
        !self.stopping && !matches!(self.quota, Some(q) if self.stats.sent >= q)
    }
}

fn worker(
    cfg: &Config,
    plan: Plan,
    progress: &Progress,
    tls: Option<&TlsClient>,
) -> Result<(Stats, u64), Error> {
    if !cfg.cpus.is_empty() {
        let cpu = cfg.cpus[plan.index % cfg.cpus.len()];
        conn::pin_to_cpu(cpu)
            .map_err(|e| Error::new(format!("--cpus: cannot pin a thread to CPU {cpu}: {e}")))?;
    }
    let (open, depth) = match cfg.mode {
        Mode::Closed { pipeline } => (false, pipeline),
        Mode::Open { .. } => (true, 1),
    };
    if open {
        conn::tighten_timer_slack();
    }
    let ep = Epoll::new().map_err(|e| Error::new(format!("epoll_create1: {e}")))?;
    let timeout_ns = u64::try_from(cfg.timeout.as_nanos()).unwrap_or(u64::MAX / 4);
    let hard_end = plan.end_ns.saturating_add(HARD_GRACE.as_nanos() as u64);
    let drain_end = plan.end_ns.saturating_add(timeout_ns).min(hard_end);
    let mut conns = new_conns(cfg, &plan, tls, depth);
    let mut ctx = Ctx {
        reqs: &cfg.requests,
        addr: cfg.target.addr,
        ep,
        stats: Stats::new(),
        rng: Rng::new(0x5EED ^ plan.index as u64),
        open,
        depth,
        timeout_ns,
        end_ns: plan.end_ns,
        quota: plan.quota,
        stopping: false,
        inflight_total: 0,
        scheduled_conns: conns
            .iter()
            .filter(|c| {
                c.sched
                    .as_ref()
                    .is_some_and(|s| s.next_intended().is_some())
            })
            .count(),
        timers: BinaryHeap::with_capacity(conns.len() + 1),
        tls,
        new_conn: cfg.new_conn_per_request,
    };
    let finish = event_loop(&mut conns, &mut ctx, progress, drain_end)?;
    progress.publish(&ctx.stats);
    drop(conns);
    Ok((ctx.stats, finish))
}

/// A worker's connections, all down, with their buffers (room for `depth` requests) and, in
/// open loop, their share of the schedule.
fn new_conns(cfg: &Config, plan: &Plan, tls: Option<&TlsClient>, depth: usize) -> Vec<Conn> {
    let wcap = cfg.requests.max_len() * depth;
    plan.conns
        .clone()
        .enumerate()
        .map(|(i, global)| Conn {
            idx: i as u32,
            gen: 0,
            sock: None,
            tls: None,
            tls_config: tls.map(TlsClient::slot_config),
            phase: Phase::Down(0),
            rbuf: vec![0; RBUF_INITIAL],
            rstart: 0,
            rend: 0,
            wbuf: Vec::with_capacity(wcap),
            wpos: 0,
            parser: ResponseParser::new(),
            inflight: VecDeque::with_capacity(depth),
            sched: match cfg.mode {
                Mode::Open { rate } => Some(Schedule::new(
                    plan.start_ns,
                    plan.end_ns,
                    rate,
                    global,
                    cfg.connections,
                    cfg.max_requests,
                )),
                Mode::Closed { .. } => None,
            },
            armed: false,
        })
        .collect()
}

/// The worker's event loop: connects, then handles readiness, timers and housekeeping until
/// everything owed is answered or `drain_end` passes. The time it finished.
fn event_loop(
    conns: &mut [Conn],
    ctx: &mut Ctx<'_>,
    progress: &Progress,
    drain_end: u64,
) -> Result<u64, Error> {
    let open = ctx.open;
    let mut now = now_ns();
    for c in conns.iter_mut() {
        connect(c, ctx, now);
    }
    let mut events = vec![Event { events: 0, u64: 0 }; conns.len().clamp(16, 1024)];
    let mut next_tick = now + TICK_NS;
    loop {
        let wake = wake_at(ctx, next_tick, drain_end);
        let n = ctx
            .ep
            .wait(&mut events, wake.saturating_sub(now))
            .map_err(|e| Error::new(format!("epoll_wait: {e}")))?;
        now = now_ns();
        now = dispatch(&events[..n], conns, ctx, open, now);
        if open {
            now = now_ns();
            fire_timers(conns, ctx, now);
        } else if !ctx.stopping && now >= ctx.end_ns {
            ctx.stopping = true;
        }
        if now >= next_tick {
            next_tick = now + TICK_NS;
            housekeeping(conns, ctx, now);
            progress.publish(&ctx.stats);
        }
        let done = ctx.inflight_total == 0
            && if open {
                ctx.scheduled_conns == 0
            } else {
                !ctx.can_issue()
            };
        if done {
            return Ok(now);
        }
        if now >= drain_end {
            // Everything still owed has waited at least the timeout.
            let mut owed = ctx.inflight_total as u64;
            for c in conns.iter() {
                if let Some(s) = &c.sched {
                    owed += s.backlog(u64::MAX);
                }
            }
            ctx.stats.errors.timeout += owed;
            return Ok(now);
        }
    }
}

/// When the event loop must wake at the latest: the next tick, the drain deadline, the end
/// of the run (until stopping) and the earliest timer.
#[inline]
fn wake_at(ctx: &Ctx<'_>, next_tick: u64, drain_end: u64) -> u64 {
    let mut wake = next_tick.min(drain_end);
    if !ctx.stopping {
        wake = wake.min(ctx.end_ns);
    }
    if let Some(Reverse((t, _, _))) = ctx.timers.peek() {
        wake = wake.min(*t);
    }
    wake
}

/// Hands each event to its connection (stale generations are ignored); in open loop the
/// clock is read again before each. The time after the last.
#[inline]
fn dispatch(events: &[Event], conns: &mut [Conn], ctx: &mut Ctx<'_>, open: bool, now: u64) -> u64 {
    let mut now = now;
    for ev in events {
        let idx = (ev.u64 & 0xffff_ffff) as usize;
        let gen = (ev.u64 >> 32) as u32;
        let Some(c) = conns.get_mut(idx) else {
            continue;
        };
        if c.gen != gen {
            continue;
        }
        if open {
            now = now_ns();
        }
        on_event(c, ctx, ev.events, now);
    }
    now
}

fn connect(c: &mut Conn, ctx: &mut Ctx<'_>, now: u64) {
    let wanted = if ctx.open {
        c.sched
            .as_ref()
            .is_some_and(|s| s.next_intended().is_some())
    } else {
        ctx.can_issue()
    };
    if !wanted {
        c.phase = Phase::Down(u64::MAX);
        return;
    }
    let res = Socket::connect(&ctx.addr).and_then(|s| {
        ctx.ep.add(s.fd(), c.tag())?;
        let tls = match (ctx.tls, &c.tls_config) {
            (Some(t), Some(config)) => Some(Box::new(t.connect(config)?)),
            _ => None,
        };
        Ok((s, tls))
    });
    match res {
        Ok((s, tls)) => {
            c.sock = Some(s);
            c.tls = tls;
            c.phase = Phase::Connecting(now);
        }
        Err(_) => {
            ctx.stats.errors.connect += 1;
            c.phase = Phase::Down(now + BACKOFF_NS);
        }
    }
}

/// Drop the socket and everything in flight on it, then reconnect (now, or
/// after the back-off).
fn reset(c: &mut Conn, ctx: &mut Ctx<'_>, now: u64, backoff: bool) {
    ctx.inflight_total -= c.inflight.len();
    c.inflight.clear();
    c.tls = None;
    c.sock = None;
    c.gen = c.gen.wrapping_add(1);
    c.rstart = 0;
    c.rend = 0;
    c.wbuf.clear();
    c.wpos = 0;
    c.parser.reset();
    c.armed = false;
    if backoff {
        c.phase = Phase::Down(now + BACKOFF_NS);
    } else {
        connect(c, ctx, now);
    }
}

/// In closed loop, requests queued behind a response that closed the
/// connection were never answered: issue them again on the new connection.
fn unissue_rest(c: &Conn, ctx: &mut Ctx<'_>) {
    if !ctx.open {
        ctx.stats.sent -= c.inflight.len() as u64;
    }
}

#[inline]
fn on_event(c: &mut Conn, ctx: &mut Ctx<'_>, evs: u32, now: u64) {
    match c.phase {
        Phase::Down(_) => {}
        Phase::Connecting(_) => {
            if evs & (EV_OUT | EV_HUP) == 0 {
                return;
            }
            let ok = matches!(c.sock.as_ref().map(Socket::take_error), Some(Ok(None)));
            if !ok {
                ctx.stats.errors.connect += 1;
                reset(c, ctx, now, true);
                return;
            }
            c.phase = Phase::Open;
            ctx.stats.connects += 1;
            if let (Some(t), Some(sock)) = (c.tls.as_mut(), c.sock.as_ref()) {
                // The ClientHello goes now, not with the first request.
                if t.flush(sock).is_err() {
                    ctx.stats.errors.write += 1;
                    reset(c, ctx, now, true);
                    return;
                }
            }
            send_more(c, ctx, now);
        }
        Phase::Open => {
            if evs & EV_OUT != 0 && c.wpos < c.wbuf.len() && !flush(c, ctx, now) {
                return;
            }
            if evs & EV_OUT != 0 {
                if let (Some(t), Some(sock)) = (c.tls.as_mut(), c.sock.as_ref()) {
                    if t.wants_write() && t.flush(sock).is_err() {
                        ctx.stats.errors.write += 1;
                        reset(c, ctx, now, false);
                        return;
                    }
                }
            }
            if evs & (EV_IN | EV_HUP) != 0 {
                on_readable(c, ctx, evs & EV_HUP != 0, now);
            }
        }
    }
}

/// Write what is pending in `wbuf`. Returns false if the connection was reset.
#[inline]
fn flush(c: &mut Conn, ctx: &mut Ctx<'_>, now: u64) -> bool {
    let Some(sock) = c.sock.as_ref() else {
        return false;
    };
    while c.wpos < c.wbuf.len() {
        match write_to(sock, &mut c.tls, &c.wbuf[c.wpos..]) {
            Ok(n) if n > 0 => {
                ctx.stats.bytes_written += n as u64;
                c.wpos += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            _ => {
                ctx.stats.errors.write += 1;
                reset(c, ctx, now, false);
                return false;
            }
        }
    }
    c.wbuf.clear();
    c.wpos = 0;
    true
}

/// Queue and write one request, straight from its prepared buffer when
/// nothing else is pending. Returns false if the connection was reset.
#[inline]
fn send_one(c: &mut Conn, ctx: &mut Ctx<'_>, intended: u64, now: u64) -> bool {
    let reqs = ctx.reqs;
    let req = reqs.pick(&mut ctx.rng);
    c.inflight.push_back(InFlight {
        intended,
        sent: now,
        head: req.head,
    });
    ctx.inflight_total += 1;
    ctx.stats.sent += 1;
    if c.wpos < c.wbuf.len() {
        c.wbuf.extend_from_slice(&req.bytes);
        return true;
    }
    let Some(sock) = c.sock.as_ref() else {
        return false;
    };
    match write_to(sock, &mut c.tls, &req.bytes) {
        Ok(n) if n == req.bytes.len() => {
            ctx.stats.bytes_written += n as u64;
            true
        }
        Ok(n) if n > 0 => {
            ctx.stats.bytes_written += n as u64;
            c.wbuf.clear();
            c.wbuf.extend_from_slice(&req.bytes[n..]);
            c.wpos = 0;
            true
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            c.wbuf.clear();
            c.wbuf.extend_from_slice(&req.bytes);
            c.wpos = 0;
            true
        }
        _ => {
            ctx.stats.errors.write += 1;
            reset(c, ctx, now, false);
            false
        }
    }
}

/// Writes to the socket, or through the connection's TLS session.
#[inline]
fn write_to(sock: &Socket, tls: &mut Option<Box<TlsConn>>, buf: &[u8]) -> io::Result<usize> {
    match tls {
        None => sock.write(buf),
        Some(t) => t.write(sock, buf),
    }
}

/// Reads from the socket, or plaintext from the connection's TLS session (counting its
/// handshake when it completes).
#[inline]
fn read_from(
    sock: &Socket,
    tls: &mut Option<Box<TlsConn>>,
    buf: &mut [u8],
    stats: &mut Stats,
) -> io::Result<usize> {
    match tls {
        None => sock.read(buf),
        Some(t) => {
            let mut done = None;
            let r = t.read(sock, buf, &mut done);
            match done {
                Some(Handshake::Full) => stats.tls_full += 1,
                Some(Handshake::Resumed) => stats.tls_resumed += 1,
                None => {}
            }
            r
        }
    }
}

/// Issue what the mode allows on an open connection.
#[inline]
fn send_more(c: &mut Conn, ctx: &mut Ctx<'_>, now: u64) {
    if c.phase != Phase::Open {
        return;
    }
    if ctx.open {
        open_next(c, ctx, now);
        return;
    }
    let room = ctx.depth - c.inflight.len();
    if room == 0 || !ctx.can_issue() {
        return;
    }
    if room == 1 {
        send_one(c, ctx, now, now);
        return;
    }
    // Pipelining: batch the requests into one write.
    let reqs = ctx.reqs;
    while c.inflight.len() < ctx.depth && ctx.can_issue() {
        let req = reqs.pick(&mut ctx.rng);
        c.wbuf.extend_from_slice(&req.bytes);
        c.inflight.push_back(InFlight {
            intended: now,
            sent: now,
            head: req.head,
        });
        ctx.inflight_total += 1;
        ctx.stats.sent += 1;
    }
    flush(c, ctx, now);
}

/// Open loop: an idle connection sends its next due request, or arms a wake-up.
#[inline]
fn open_next(c: &mut Conn, ctx: &mut Ctx<'_>, now: u64) {
    if !c.inflight.is_empty() || c.armed {
        return;
    }
    let Some(sched) = c.sched.as_mut() else {
        return;
    };
    match sched.poll(now) {
        Due::Now(intended) => {
            sched.advance();
            if sched.next_intended().is_none() {
                ctx.scheduled_conns -= 1;
            }
            send_one(c, ctx, intended, now);
        }
        Due::At(t) => {
            c.armed = true;
            ctx.timers.push(Reverse((t, c.idx, c.gen)));
        }
        Due::Exhausted => {}
    }
}

fn fire_timers(conns: &mut [Conn], ctx: &mut Ctx<'_>, now: u64) {
    while let Some(&Reverse((t, idx, gen))) = ctx.timers.peek() {
        if t > now {
            break;
        }
        ctx.timers.pop();
        if let Some(c) = conns.get_mut(idx as usize) {
            if c.gen == gen && c.armed {
                c.armed = false;
                send_more(c, ctx, now);
            }
        }
    }
}

#[inline]
fn on_readable(c: &mut Conn, ctx: &mut Ctx<'_>, hup: bool, now: u64) {
    loop {
        if c.rend == c.rbuf.len() {
            if c.rstart > 0 {
                c.rbuf.copy_within(c.rstart..c.rend, 0);
                c.rend -= c.rstart;
                c.rstart = 0;
            } else if c.rbuf.len() < RBUF_MAX {
                let n = c.rbuf.len() * 2;
                c.rbuf.resize(n, 0);
            } else {
                ctx.stats.errors.parse += 1;
                reset(c, ctx, now, false);
                return;
            }
        }
        let space = c.rbuf.len() - c.rend;
        let Some(sock) = c.sock.as_ref() else { return };
        match read_from(sock, &mut c.tls, &mut c.rbuf[c.rend..], &mut ctx.stats) {
            Ok(0) => {
                on_eof(c, ctx, now);
                return;
            }
            Ok(n) => {
                ctx.stats.bytes_read += n as u64;
                c.rend += n;
                if !process(c, ctx, now) {
                    return;
                }
                // A short read drained the socket (epoll(7)); a new edge
                // will come with new data, unless the peer also closed. (Not
                // for TLS: a short read of plaintext says nothing about the
                // socket, so read until WouldBlock.)
                if n < space && !hup && c.tls.is_none() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                ctx.stats.errors.read += 1;
                reset(c, ctx, now, false);
                return;
            }
        }
    }
    // TLS: plaintext rustls would not take before the handshake (over its buffer limit) waits
    // in `wbuf`, and no writable edge may come for it: the handshake's end is read here.
    if c.tls.is_some() && c.wpos < c.wbuf.len() && !flush(c, ctx, now) {
        return;
    }
    send_more(c, ctx, now);
}

/// Parse every complete response in the buffer. Returns false if the
/// connection was reset.
#[inline]
fn process(c: &mut Conn, ctx: &mut Ctx<'_>, now: u64) -> bool {
    while c.rstart < c.rend {
        let head = c.inflight.front().is_some_and(|f| f.head);
        match c.parser.parse(&c.rbuf[c.rstart..c.rend], head) {
            Ok(Step::NeedMore { consumed }) => {
                c.rstart += consumed;
                break;
            }
            Ok(Step::Done { consumed, info }) => {
                c.rstart += consumed;
                if !complete(c, ctx, info, now) {
                    return false;
                }
                if info.close || ctx.new_conn {
                    unissue_rest(c, ctx);
                    reset(c, ctx, now, false);
                    return false;
                }
            }
            Err(_) => {
                ctx.stats.errors.parse += 1;
                reset(c, ctx, now, false);
                return false;
            }
        }
    }
    if c.rstart == c.rend {
        c.rstart = 0;
        c.rend = 0;
    }
    true
}

/// Account one response. Returns false (after a reset) for a response nobody asked for.
#[inline]
fn complete(c: &mut Conn, ctx: &mut Ctx<'_>, info: ResponseInfo, now: u64) -> bool {
    let Some(req) = c.inflight.pop_front() else {
        ctx.stats.errors.parse += 1;
        reset(c, ctx, now, false);
        return false;
    };
    ctx.inflight_total -= 1;
    let s = &mut ctx.stats;
    s.completed += 1;
    s.count_status(info.status);
    let sample = Sample::new(req.intended, req.sent, now);
    s.latency.saturating_record(ns_to_us(sample.corrected_ns));
    if ctx.open {
        s.service.saturating_record(ns_to_us(sample.service_ns));
    }
    true
}

fn on_eof(c: &mut Conn, ctx: &mut Ctx<'_>, now: u64) {
    match c.parser.on_eof() {
        Ok(Some(info)) => {
            // A close-delimited body ended: a normal end of the connection.
            if complete(c, ctx, info, now) {
                unissue_rest(c, ctx);
                reset(c, ctx, now, false);
            }
            return;
        }
        Ok(None) => {}
        Err(_) => {
            ctx.stats.errors.read += 1;
            reset(c, ctx, now, false);
            return;
        }
    }
    if !c.inflight.is_empty() {
        // Closed with requests unanswered.
        ctx.stats.errors.read += 1;
    }
    reset(c, ctx, now, false);
}

fn housekeeping(conns: &mut [Conn], ctx: &mut Ctx<'_>, now: u64) {
    for c in conns.iter_mut() {
        match c.phase {
            Phase::Open => {
                if let Some(f) = c.inflight.front() {
                    if now.saturating_sub(f.sent) >= ctx.timeout_ns {
                        ctx.stats.errors.timeout += c.inflight.len() as u64;
                        reset(c, ctx, now, false);
                    }
                }
            }
            Phase::Connecting(since) => {
                if now.saturating_sub(since) >= ctx.timeout_ns {
                    ctx.stats.errors.connect += 1;
                    reset(c, ctx, now, false);
                }
            }
            Phase::Down(at) => {
                if now >= at {
                    connect(c, ctx, now);
                }
            }
        }
    }
}
