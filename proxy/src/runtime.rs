//! Starting the shards: one glommio executor per shard on its own thread, pinned to a CPU of
//! the process's allowed set, each with its own listeners, its own copy of the gateway and its
//! accept loop (one task per client connection, served by `conn`). The socket path is chosen
//! here, once, from `TOLLGATE_SOCKET_PATH`, and handed to `net` before any shard starts.
//! Start-up failures (io_uring set-up refused for lack of locked memory, a port in use) are
//! reported in one clear line and make the process exit non-zero — never a silent exit 0.

use crate::conn;
use crate::net::{self, Listener, SocketPath};
use crate::shard::Shard;
use glommio::{LocalExecutorBuilder, Placement};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};
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

/// Runs the gateway until a shard fails; returns the message to print on failure.
pub fn run(gateway: Gateway, shards: usize, path: SocketPath) -> Result<(), String> {
    let cpus = allowed_cpus();
    let pin = gateway.settings.pin_cpus;
    let (tx, rx) = mpsc::channel::<Result<usize, String>>();
    let seed_base = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ ((std::process::id() as u64) << 40);
    let mut threads = Vec::with_capacity(shards);
    net::configure(
        path,
        gateway.settings.receive_ring_buffers,
        gateway.settings.receive_ring_buffer_bytes,
    );
    for i in 0..shards {
        let cpu = cpus[i % cpus.len()];
        let gw = gateway.clone();
        let tx = tx.clone();
        let seed = seed_base ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let t = std::thread::Builder::new()
            .name(format!("tollgate-shard{i}"))
            .spawn(move || {
                let placement = if pin {
                    Placement::Fixed(cpu)
                } else {
                    Placement::Unbound
                };
                let ex = match LocalExecutorBuilder::new(placement)
                    .name(&format!("shard{i}"))
                    .io_memory(IO_MEMORY)
                    .make()
                {
                    Ok(ex) => ex,
                    Err(e) => {
                        let _ = tx.send(Err(explain_start_failure(i, &e.to_string())));
                        return;
                    }
                };
                ex.run(shard_main(i, gw, seed, tx));
            })
            .map_err(|e| format!("tollgate: cannot start thread for shard {i}: {e}"))?;
        threads.push(t);
    }
    drop(tx);
    let mut started = 0;
    while started < shards {
        match rx.recv() {
            Ok(Ok(_)) => started += 1,
            Ok(Err(msg)) => return Err(msg),
            Err(_) => return Err("tollgate: a shard exited during start-up".to_string()),
        }
    }
    let addrs: Vec<String> = gateway
        .listeners
        .iter()
        .map(|a| format!("http://{a}"))
        .collect();
    eprintln!(
        "tollgate: listening on {} ({shards} shard{}{})",
        addrs.join(", "),
        if shards == 1 { "" } else { "s" },
        if pin { ", pinned" } else { "" }
    );
    for (i, t) in threads.into_iter().enumerate() {
        if t.join().is_err() {
            return Err(format!("tollgate: shard {i} panicked"));
        }
    }
    Err("tollgate: all shards stopped".to_string())
}

async fn shard_main(
    index: usize,
    gateway: Gateway,
    seed: u64,
    tx: mpsc::Sender<Result<usize, String>>,
) {
    let listeners: Vec<_> = gateway.listeners.clone();
    let shard = Rc::new(Shard::new(index, gateway, seed));
    let mut bound = Vec::with_capacity(listeners.len());
    for addr in listeners {
        match Listener::bind(addr) {
            Ok(l) => bound.push(l),
            Err(e) => {
                let _ = tx.send(Err(format!("tollgate: cannot listen on {addr}: {e}")));
                return;
            }
        }
    }
    let _ = tx.send(Ok(index));
    drop(tx);
    crate::lambda::start_jwks_refresh(&shard);
    let tasks: Vec<_> = bound
        .into_iter()
        .map(|l| glommio::spawn_local(accept_loop(shard.clone(), l)))
        .collect();
    for t in tasks {
        t.await;
    }
}

/// Accepts connections on `listener` forever, one task per connection.
async fn accept_loop(shard: Rc<Shard>, listener: Listener) {
    loop {
        match listener.accept().await {
            Ok(c) => {
                let shard = shard.clone();
                glommio::spawn_local(conn::serve(shard, c)).detach();
            }
            Err(e) => {
                // EMFILE/ENFILE and friends: back off briefly instead of spinning.
                eprintln!("tollgate: shard {}: accept failed: {e}", shard.index);
                glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
