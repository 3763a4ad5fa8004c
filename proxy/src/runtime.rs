//! Starting the shards: one glommio executor per shard on its own thread, pinned to a CPU of
//! the process's allowed set, each with its own listeners, its own copy of the gateway and its
//! accept loop (one task per client connection, served by `conn`). The socket path is chosen
//! here, once, from `TOLLGATE_SOCKET_PATH`, and handed to `net` before any shard starts; so is
//! traffic control's shared state (`traffic_state::start`: quota store, state file, rebalance),
//! handed to every shard.
//! Start-up failures (io_uring set-up refused for lack of locked memory, a port in use — also
//! by another process, which `SO_REUSEPORT` would otherwise silently share with) are
//! reported in one clear line and make the process exit non-zero — never a silent exit 0.
//!
//! After start-up the main thread waits for signals (blocked in every thread, taken with
//! `sigtimedwait`): SIGTERM/SIGINT drain and exit 0, SIGUSR1 reopens the access log files,
//! SIGHUP reloads the config file (`reload`; the admin listener's `POST /reload` does the
//! same). Each shard's control loop polls its reload channel with its drain flag.
//! Draining: every shard closes its listeners, answers with `connection: close`, and stops once
//! its in-flight requests are done or `drain_timeout_ms` has passed.

use crate::admin::{self, Control};
use crate::conn;
use crate::logging::{self, Writers};
use crate::metrics::{Registry, ShardMetrics};
use crate::net::{self, Listener, SocketPath};
use crate::reload::{self, Bound, Order, Reloader};
use crate::shard::{Ops, Shard};
use crate::traffic_state::{self, TrafficShared};
use glommio::{LocalExecutorBuilder, Placement};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate_core::gateway::access_log;
use tollgate_core::gateway::Gateway;

/// The CPUs this process may run on (honours `taskset`), in ascending order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for pid 0 (this thread).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect();
            if !cpus.is_empty() {
                return cpus;
            }
        }
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0..n).collect()
}

/// The soft `RLIMIT_MEMLOCK` in bytes (`None` = unlimited or unknown).
pub fn memlock_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0
        || r.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(r.rlim_cur)
}

/// Memory glommio registers for io_uring per executor. We do no file I/O, so a small pool
/// keeps the locked-memory need low.
pub const IO_MEMORY: usize = 512 * 1024;

/// One line explaining why an executor did not start.
fn explain_start_failure(shard: usize, err: &str) -> String {
    let limit = memlock_limit();
    let lim = match limit {
        Some(b) => format!("{} KiB", b / 1024),
        None => "unlimited".to_string(),
    };
    format!(
        "tollgate: shard {shard} could not start its io_uring executor ({err}); the locked-memory limit (ulimit -l) is {lim}: raise it with `ulimit -l 65536` (systemd: LimitMEMLOCK=64M) and start again"
    )
}

/// The socket path named by `TOLLGATE_SOCKET_PATH` (read once, at start-up); an invalid value
/// is an error message to print before exiting.
pub fn socket_path_from_env() -> Result<SocketPath, String> {
    SocketPath::parse(std::env::var_os(SocketPath::ENV).as_deref())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (one connection is one descriptor, two
/// when proxied); says so in one line when it changed anything.
pub fn raise_nofile_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 || r.rlim_cur >= r.rlim_max {
            return;
        }
        let from = r.rlim_cur;
        r.rlim_cur = r.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &r) == 0 {
            logging::event(format_args!(
                "open files limit raised from {from} to {} (the hard limit)",
                r.rlim_max
            ));
        }
    }
}

/// The signals the main thread takes; blocked in every thread (the mask is inherited).
fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// The next signal of `set` within `timeout`, if one came.
fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: sigtimedwait reads the set and timeout; a null info pointer is allowed.
    let n = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (n > 0).then_some(n)
}

/// How often a shard looks at the process's drain flag.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Runs the gateway until SIGTERM/SIGINT (then `Ok`, after draining) or until a shard fails
/// (the message to print). `config` is the file to re-read on reload (`None`: the embedded
/// demo config, which cannot be reloaded).
pub fn run(
    mut gateway: Gateway,
    shards: usize,
    path: SocketPath,
    config: Option<PathBuf>,
) -> Result<(), String> {
    let set = block_signals();
    check_listeners_free(&gateway)?;
    let cpus = allowed_cpus();
    let pin = gateway.settings.pin_cpus;
    let dests = access_log::destinations(&mut gateway);
    let writers = Writers::start(&dests)?;
    let registry = Arc::new(Registry::new(&gateway, shards));
    let control = Arc::new(Control::default());
    // Quota store, state file and rebalance exchange: created once, before any shard thread.
    let traffic = traffic_state::start(&gateway, shards)?;
    let (order_txs, order_rxs): (Vec<_>, Vec<_>) =
        (0..shards).map(|_| mpsc::channel::<Order>()).unzip();
    let reloader = Arc::new(Mutex::new(Reloader::new(
        config,
        gateway.clone(),
        writers.clone(),
        traffic.clone(),
        order_txs,
        registry.clone(),
    )));
    if let Some(addr) = gateway.settings.admin {
        admin::start(addr, registry.clone(), control.clone(), reloader.clone())?;
    }
    // With [cluster]: the first sync (or failing open) before serving; /readyz says 503 meanwhile.
    traffic.wait_cluster_ready();
    let (tx, rx) = mpsc::channel::<Result<usize, String>>();
    let seed_base = seed_base();
    net::configure(
        path,
        gateway.settings.receive_ring_buffers,
        gateway.settings.receive_ring_buffer_bytes,
    );
    let threads = spawn_shards(
        &gateway, &cpus, pin, seed_base, &registry, &writers, &control, &traffic, order_rxs, &tx,
    )?;
    drop(tx);
    wait_started(&rx, shards)?;
    control.ready.store(true, Ordering::Release);
    log_listening(&gateway, shards, pin);
    drop(traffic);
    let exit = wait_for_exit(&set, &threads, &reloader);
    // The configuration in force now (reloads may have replaced the start-up one).
    let (traffic, drain_timeout) = {
        let r = reload::lock(&reloader);
        (r.traffic(), r.running().settings.drain_timeout)
    };
    if let Some(i) = exit {
        // Keep the quota counts on this exit path too.
        if let Err(msg) = traffic.persist() {
            logging::error(&msg);
        }
        return Err(format!("tollgate: shard {i} stopped"));
    }
    drain_and_stop(
        &registry,
        &control,
        &traffic,
        gateway.settings.state_file.as_deref(),
        drain_timeout,
        threads,
    );
    writers.finish(Duration::from_secs(1));
    logging::event(format_args!("stopped"));
    Ok(())
}

/// Blocks the main thread's signals in this thread (before any other thread starts, so every
/// thread inherits the mask) and returns their set.
fn block_signals() -> libc::sigset_t {
    let set = signal_set();
    // SAFETY: blocks the set in this thread before any other thread starts.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    set
}

/// Fails with the message to print when a listener's port is already in use.
fn check_listeners_free(gateway: &Gateway) -> Result<(), String> {
    for &addr in &gateway.listeners {
        reload::check_free(addr)?;
    }
    Ok(())
}

/// The per-process base of the shards' random seeds (time and process id).
fn seed_base() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ ((std::process::id() as u64) << 40)
}

/// Starts one thread per shard (one per receiver in `order_rxs`), each reporting on `tx` once
/// it listens or why it could not start.
#[allow(clippy::too_many_arguments)]
fn spawn_shards(
    gateway: &Gateway,
    cpus: &[usize],
    pin: bool,
    seed_base: u64,
    registry: &Arc<Registry>,
    writers: &Writers,
    control: &Arc<Control>,
    traffic: &Arc<TrafficShared>,
    mut order_rxs: Vec<mpsc::Receiver<Order>>,
    tx: &mpsc::Sender<Result<usize, String>>,
) -> Result<Vec<std::thread::JoinHandle<()>>, String> {
    let shards = order_rxs.len();
    let mut threads = Vec::with_capacity(shards);
    for i in 0..shards {
        let start = ShardStart {
            index: i,
            cpu: cpus[i % cpus.len()],
            pin,
            gateway: gateway.clone(),
            seed: seed_base ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ops: Ops {
                metrics: registry.shards[i].clone(),
                registry: registry.clone(),
                log_senders: writers.senders(),
            },
            control: control.clone(),
            traffic: traffic.clone(),
            orders: order_rxs.remove(0),
            tx: tx.clone(),
        };
        let t = std::thread::Builder::new()
            .name(format!("tollgate-shard{i}"))
            .spawn(move || start.run())
            .map_err(|e| format!("tollgate: cannot start thread for shard {i}: {e}"))?;
        threads.push(t);
    }
    Ok(threads)
}

/// Everything one shard thread takes with it.
struct ShardStart {
    index: usize,
    cpu: usize,
    pin: bool,
    gateway: Gateway,
    seed: u64,
    ops: Ops,
    control: Arc<Control>,
    traffic: Arc<TrafficShared>,
    orders: mpsc::Receiver<Order>,
    tx: mpsc::Sender<Result<usize, String>>,
}

impl ShardStart {
    /// The shard thread: starts its executor (or reports why it could not) and runs the shard.
    fn run(self) {
        let placement = if self.pin {
            Placement::Fixed(self.cpu)
        } else {
            Placement::Unbound
        };
        let ex = match LocalExecutorBuilder::new(placement)
            .name(&format!("shard{}", self.index))
            .io_memory(IO_MEMORY)
            .make()
        {
            Ok(ex) => ex,
            Err(e) => {
                let _ = self
                    .tx
                    .send(Err(explain_start_failure(self.index, &e.to_string())));
                return;
            }
        };
        let ShardStart {
            index,
            gateway,
            seed,
            ops,
            control,
            traffic,
            orders,
            tx,
            ..
        } = self;
        ex.run(shard_main(
            index, gateway, seed, ops, control, traffic, orders, tx,
        ));
    }
}

/// Waits until all `shards` report listening; the first failure (or a shard gone without a
/// word) is the message to print.
fn wait_started(rx: &mpsc::Receiver<Result<usize, String>>, shards: usize) -> Result<(), String> {
    let mut started = 0;
    while started < shards {
        match rx.recv() {
            Ok(Ok(_)) => started += 1,
            Ok(Err(msg)) => return Err(msg),
            Err(_) => return Err("tollgate: a shard exited during start-up".to_string()),
        }
    }
    Ok(())
}

/// Logs the listeners (and the admin listener) once every shard serves.
fn log_listening(gateway: &Gateway, shards: usize, pin: bool) {
    let addrs: Vec<String> = gateway
        .listeners
        .iter()
        .map(|a| match gateway.tls.listener(*a) {
            Some(_) => format!("https://{a}"),
            None => format!("http://{a}"),
        })
        .collect();
    let listeners = addrs.join(", ");
    log::info!(
        listeners = listeners.as_str(), shards = shards, pinned = pin;
        "listening on {listeners} ({shards} shard{}{})",
        if shards == 1 { "" } else { "s" },
        if pin { ", pinned" } else { "" }
    );
    if let Some(a) = gateway.settings.admin {
        log::info!(admin:% = a; "admin listener on http://{a} (/metrics, /healthz, /readyz, POST /reload)");
    }
}

/// Waits for SIGTERM/SIGINT (`None`), handling SIGUSR1 (reopen the access logs) and SIGHUP
/// (reload the config; the outcome is logged) on the way, or until a shard thread ends
/// (`Some(its index)`).
fn wait_for_exit(
    set: &libc::sigset_t,
    threads: &[std::thread::JoinHandle<()>],
    reloader: &Mutex<Reloader>,
) -> Option<usize> {
    loop {
        match wait_signal(set, Duration::from_millis(200)) {
            Some(libc::SIGTERM | libc::SIGINT) => return None,
            Some(libc::SIGUSR1) => {
                logging::event(format_args!("SIGUSR1: reopening the access log files"));
                logging::reopen();
            }
            Some(libc::SIGHUP) => {
                // The outcome is logged (and counted) by `reload`.
                let _ = reload::lock(reloader).reload("SIGHUP");
            }
            _ => {
                if let Some(i) = threads.iter().position(|t| t.is_finished()) {
                    return Some(i);
                }
            }
        }
    }
}

/// Graceful shutdown: every shard keeps serving (idle connections' next requests get
/// `connection: close`) until nothing is in flight or `drain_timeout`, then the quota state
/// is saved and the shards stop.
fn drain_and_stop(
    registry: &Registry,
    control: &Control,
    traffic: &TrafficShared,
    state_file: Option<&std::path::Path>,
    drain_timeout: Duration,
    threads: Vec<std::thread::JoinHandle<()>>,
) {
    logging::event(format_args!(
        "shutting down: no new connections; in-flight requests get up to {} ms",
        drain_timeout.as_millis()
    ));
    control.draining.store(true, Ordering::Release);
    let deadline = Instant::now() + drain_timeout;
    let in_flight = || -> u64 {
        registry
            .shards
            .iter()
            .map(|m| m.in_flight.load(Ordering::Relaxed))
            .sum()
    };
    while in_flight() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let cut = in_flight();
    if cut > 0 {
        log::warn!(cut = cut; "drain timeout: {cut} request(s) still in flight are cut");
    }
    // Quota counts: the shards hand back their unused leases, then the counts are written.
    match traffic.stop_and_persist() {
        Ok(()) => {
            if let Some(path) = state_file {
                logging::event(format_args!("quota state saved to {}", path.display()));
            }
        }
        Err(msg) => logging::error(&msg),
    }
    control.stop.store(true, Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(1);
    for t in threads {
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn shard_main(
    index: usize,
    gateway: Gateway,
    seed: u64,
    ops: Ops,
    control: Arc<Control>,
    traffic: Arc<TrafficShared>,
    orders: mpsc::Receiver<Order>,
    tx: mpsc::Sender<Result<usize, String>>,
) {
    let listeners: Vec<_> = gateway.listeners.clone();
    let shard = Rc::new(Shard::new(index, gateway, seed, ops, traffic));
    let gen = shard.generation();
    let mut sockets = Vec::with_capacity(listeners.len());
    for addr in listeners {
        match Listener::bind(addr).and_then(|l| l.with_tls(&gen.gateway.tls)) {
            Ok(l) => sockets.push((addr, Rc::new(l))),
            Err(e) => {
                let _ = tx.send(Err(format!("tollgate: cannot listen on {addr}: {e}")));
                return;
            }
        }
    }
    let _ = tx.send(Ok(index));
    drop(tx);
    traffic_state::spawn_rebalance(shard.clone(), gen.clone());
    crate::lambda::start_jwks_refresh(&shard, &gen);
    drop(gen);
    let start = |l: Rc<Listener>| glommio::spawn_local(accept_loop(shard.clone(), l));
    let mut accepting: Bound = sockets
        .into_iter()
        .map(|(addr, l)| (addr, l.clone(), start(l)))
        .collect();
    // Always: a reload may add the first access log destination.
    let flusher = {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(logging::FLUSH_EVERY).await;
                shard.log.flush();
            }
        })
    };
    while !control.draining.load(Ordering::Acquire) {
        glommio::timer::sleep(DRAIN_POLL).await;
        // A reload: between two requests of this shard's event loop, like every task switch.
        while let Ok(order) = orders.try_recv() {
            reload::apply(&shard, &mut accepting, order, &start).await;
        }
    }
    // Dropping the accept tasks cancels them and closes the listeners.
    drop(accepting);
    shard.draining.set(true);
    while !control.stop.load(Ordering::Acquire) {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    drop(flusher);
    shard.log.flush();
}

/// Accepts connections on `listener` until cancelled, one task per connection. A failed
/// accept (EMFILE at the descriptor limit, ...) is counted, backs off, and is logged at most
/// once per interval; established connections keep being served meanwhile.
async fn accept_loop(shard: Rc<Shard>, listener: Rc<Listener>) {
    let mut backoff = Duration::from_millis(10);
    loop {
        match listener.accept().await {
            Ok(c) => {
                backoff = Duration::from_millis(10);
                let shard = shard.clone();
                glommio::spawn_local(conn::serve(shard, c)).detach();
            }
            Err(e) => {
                ShardMetrics::inc(&shard.metrics.accept_errors);
                if let Some(n) = shard.accept_lines.due(Instant::now()) {
                    log::warn!(
                        shard = shard.index, error:% = e, count = n;
                        "accept failed: {e}; backing off"
                    );
                }
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }
}
