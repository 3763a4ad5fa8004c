//! Hot config reload (SIGHUP, admin `POST /reload`): the main thread's side (`Reloader`:
//! re-read and validate the file with the start-up code, check what a running process can
//! change, hand every shard its copy, wait for the answers, account, report) and the shard's
//! side (`apply`: open and close listeners, reload TLS certificates, build the new generation
//! with what carries over, swap it in between requests).
//!
//! Hand-over: every shard has a channel of `Order`s that its control loop (`runtime`, which
//! already wakes every 20 ms for the drain flag) polls with `try_recv`; requests never look at
//! it. (glommio's own cross-executor channels need both ends connected inside executors — the
//! main and admin threads are not — and wake the shard through its eventfd; the timer the
//! shard already runs makes a remote wake-up unnecessary, at the price of up to 20 ms.) A
//! shard swaps its `Rc<Gen>` (`Shard::swap`); a request holds the generation it started on to
//! its end, and a connection's next request takes the new one.
//!
//! What a running process cannot change (shards, pinning, buffer sizes, receive rings, admin
//! listener, state file, `[cluster]`) makes the reload fail with the running config kept, saying
//! a restart is needed.
//!
//! Metrics follow the configuration: each generation registers its own counter block per
//! shard with the registry (`metrics`), which sums blocks by labels at scrape time. Access
//! log destinations the new configuration adds are opened and their writers started here
//! (`Writers::assign`, before any shard swaps: a file that cannot be opened refuses the
//! reload); the ones no configuration in force uses are retired after each attempt, and their
//! writers end once every shard's last generation using them is gone.

use crate::logging::{self, Writers};
use crate::metrics::Registry;
use crate::net::{self, Listener};
use crate::shard::{Gen, Shard};
use crate::traffic_state::{self, TrafficShared};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tollgate_core::config;
use tollgate_core::gateway::Gateway;
use tollgate_core::lambda::Authorizer;
use tollgate_core::tls::{Identity, Tls};

/// How long the main thread waits for every shard to swap.
const SHARD_WAIT: Duration = Duration::from_secs(10);

/// The reloader, whoever held it last (a panic while reloading leaves it usable).
pub fn lock(r: &Mutex<Reloader>) -> MutexGuard<'_, Reloader> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails when some other socket already listens on `addr` (at start, `runtime`, and for a
/// listener a reload adds). Our listeners use
/// `SO_REUSEPORT`, so a second gateway would bind beside the first and silently take part of
/// its connections: a probe bound without it (but with `SO_REUSEADDR`, so connections in
/// TIME_WAIT do not count) finds out first.
pub fn check_free(addr: SocketAddr) -> Result<(), String> {
    use socket2::{Domain, Socket, Type};
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, None).and_then(|s| {
        s.set_reuse_address(true)?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.bind(&addr.into())?;
        Ok(s)
    });
    match probe {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(format!(
            "tollgate: cannot listen on {addr}: another process already listens there (is another tollgate running?); not starting"
        )),
        Err(e) => Err(format!("tollgate: cannot listen on {addr}: {e}")),
    }
}

/// A new configuration for one shard.
pub struct Order {
    pub gateway: Gateway,
    pub traffic: Arc<TrafficShared>,
    /// The access log writers' senders, by slot (`None`: retired).
    pub log_senders: Vec<Option<SyncSender<Vec<u8>>>>,
    /// The shard's answer: its index and whether it swapped.
    pub reply: mpsc::Sender<(usize, Result<(), String>)>,
}

/// Why a reload failed: the HTTP status `POST /reload` answers with and the message.
#[derive(Debug)]
pub struct Refused {
    /// 409: nothing to reload (no config file) or shutting down; 422: the file has errors or
    /// changes what needs a restart (nothing changed); 500: a shard could not swap (the
    /// others did: the message names them).
    pub status: u16,
    pub message: String,
}

fn refused(status: u16, message: String) -> Refused {
    Refused { status, message }
}

/// The main thread's reload state (shared with the admin listener behind a mutex, so one
/// reload runs at a time).
pub struct Reloader {
    /// The file given at start (`None`: the embedded demo config).
    path: Option<PathBuf>,
    /// The configuration in force (its access log sinks assigned).
    running: Gateway,
    /// The access log writers (shared with the main thread, which finishes them at exit).
    writers: Writers,
    traffic: Arc<TrafficShared>,
    orders: Vec<mpsc::Sender<Order>>,
    registry: Arc<Registry>,
    generation: u64,
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        running: Gateway,
        writers: Writers,
        traffic: Arc<TrafficShared>,
        orders: Vec<mpsc::Sender<Order>>,
        registry: Arc<Registry>,
    ) -> Reloader {
        Reloader {
            path,
            running,
            writers,
            traffic,
            orders,
            registry,
            generation: 1,
        }
    }

    /// The traffic state in force (quota store to persist at exit).
    pub fn traffic(&self) -> Arc<TrafficShared> {
        self.traffic.clone()
    }

    /// The configuration in force.
    pub fn running(&self) -> &Gateway {
        &self.running
    }

    /// Reloads (`why`: "SIGHUP" or "POST /reload", for the log). `Ok`: the message saying
    /// what is in force now. Every outcome is logged and counted in the metrics.
    pub fn reload(&mut self, why: &str) -> Result<String, Refused> {
        let started = Instant::now();
        let result = self.attempt();
        // Destinations opened for a reload that failed, or no longer used: their writers end
        // once the shards' generations using them are gone.
        self.writers.retire_unused(&self.running);
        let reg = &self.registry.reload;
        reg.last_time
            .store(traffic_state::unix_secs().max(0) as u64, Ordering::Relaxed);
        reg.last_success
            .store(u64::from(result.is_ok()), Ordering::Relaxed);
        reg.generation.store(self.generation, Ordering::Relaxed);
        match &result {
            Ok(msg) => logging::event(format_args!(
                "{why}: {msg} ({} ms)",
                started.elapsed().as_millis()
            )),
            Err(r) => {
                for line in r.message.lines() {
                    logging::event(format_args!("{why}: reload failed: {line}"));
                }
            }
        }
        result
    }

    fn attempt(&mut self) -> Result<String, Refused> {
        let Some(path) = self.path.clone() else {
            return Err(refused(
                409,
                "no config file was given at start (serving the built-in demo config): nothing to reload; start with --config FILE".to_string(),
            ));
        };
        let file = path.display().to_string();
        let gw = self.load_checked(&path, &file)?;
        let (traffic, seeded) = traffic_state::successor(&self.traffic, &gw);
        let number = self.generation + 1;
        let answers = self.swap_shards(&gw, &traffic);
        let swapped = answers.iter().filter(|a| matches!(a, Some(Ok(())))).count();
        if swapped == 0 {
            let mut msg = shard_failures(&answers, "no answer");
            msg.push_str(&format!(
                "no shard swapped: the running configuration (generation {}) stays",
                self.generation
            ));
            traffic_state::abandon(&traffic, &self.traffic, &self.running);
            return Err(refused(500, msg));
        }
        // At least one shard runs the new generation: it is the one in force.
        if let Err(e) =
            traffic_state::hand_over(&self.traffic, &traffic, &seeded, gw.settings.state_flush)
        {
            logging::event(format_args!("{e}"));
        }
        self.traffic = traffic;
        self.running = gw;
        self.generation = number;
        if swapped < self.orders.len() {
            let msg = format!(
                "{file}: generation {number} runs on {swapped} of {} shards; the others keep the previous one:\n{}",
                self.orders.len(),
                shard_failures(&answers, &format!("no answer within {SHARD_WAIT:?}"))
            );
            return Err(refused(500, msg.trim_end().to_string()));
        }
        Ok(format!(
            "reloaded {file}: generation {number} on all {} shards",
            self.orders.len()
        ))
    }

    /// Loads and validates the file as at start, then the restart-only checks; 422 with
    /// every error otherwise.
    fn load_checked(&self, path: &std::path::Path, file: &str) -> Result<Gateway, Refused> {
        let mut gw = config::load_file(path).map_err(|errors| {
            let mut msg = String::new();
            for e in &errors {
                msg.push_str(&e.to_string());
                msg.push('\n');
            }
            msg.push_str(&format!(
                "{file} has {} error(s); the running configuration (generation {}) stays",
                errors.len(),
                self.generation
            ));
            refused(422, msg)
        })?;
        self.check(file, &mut gw).map_err(|m| {
            refused(
                422,
                format!(
                    "{m}\nthe running configuration (generation {}) stays",
                    self.generation
                ),
            )
        })?;
        Ok(gw)
    }

    /// Sends every shard the new generation and waits up to `SHARD_WAIT` for their answers:
    /// one entry per shard, None where none came.
    fn swap_shards(
        &self,
        gw: &Gateway,
        traffic: &Arc<TrafficShared>,
    ) -> Vec<Option<Result<(), String>>> {
        let (tx, rx) = mpsc::channel();
        let mut sent = 0;
        let senders = self.writers.senders();
        for order in &self.orders {
            let o = Order {
                gateway: gw.clone(),
                traffic: traffic.clone(),
                log_senders: senders.clone(),
                reply: tx.clone(),
            };
            if order.send(o).is_ok() {
                sent += 1;
            }
        }
        drop(tx);
        let deadline = Instant::now() + SHARD_WAIT;
        let mut answers: Vec<Option<Result<(), String>>> = vec![None; self.orders.len()];
        for _ in 0..sent {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((i, r)) => {
                    if let Some(a) = answers.get_mut(i) {
                        *a = Some(r);
                    }
                }
                Err(_) => break,
            }
        }
        answers
    }

    /// What a running process cannot take, and new listeners' addresses and certificates;
    /// assigns the access log sinks, opening the destinations that are new.
    fn check(&self, file: &str, gw: &mut Gateway) -> Result<(), String> {
        let (old, new) = (&self.running.settings, &gw.settings);
        let buf =
            |s: &tollgate_core::gateway::Settings| s.read_buffer_bytes.max(s.max_header_bytes + 1);
        let fixed = [
            ("server.shards", old.shards != new.shards),
            ("server.pin_cpus", old.pin_cpus != new.pin_cpus),
            (
                "server.read_buffer_bytes / server.max_header_bytes (the buffer size)",
                buf(old) != buf(new),
            ),
            (
                "server.receive_ring_buffers / server.receive_ring_buffer_bytes",
                old.receive_ring_buffers != new.receive_ring_buffers
                    || old.receive_ring_buffer_bytes != new.receive_ring_buffer_bytes,
            ),
            ("[admin]", old.admin != new.admin),
            ("server.state_file", old.state_file != new.state_file),
            // The sync thread's Redis connection and key names (adding or removing the
            // section too): restart-only (CONFIG.md, Cluster).
            ("[cluster]", old.cluster != new.cluster),
        ];
        let changed: Vec<&str> = fixed.iter().filter(|(_, c)| *c).map(|(n, _)| *n).collect();
        if !changed.is_empty() {
            return Err(format!(
                "{file}: {} cannot change while running: restart tollgate to apply it",
                changed.join(", ")
            ));
        }
        for &addr in &gw.listeners {
            if !self.running.listeners.contains(&addr) {
                check_free(addr).map_err(|e| format!("{file}: new listener: {e}"))?;
            }
            if let Some(id) = gw.tls.listener(addr) {
                net::Edge::new(&gw.tls, id)
                    .map_err(|e| format!("{file}: listener {addr}: TLS: {e}"))?;
            }
        }
        self.writers.assign(gw).map_err(|e| format!("{file}: {e}"))
    }
}

/// A shard's listeners: address, socket, accept task.
pub type Bound = Vec<(SocketAddr, Rc<Listener>, glommio::Task<()>)>;

/// What `apply` needs from the runtime to start an accept loop.
pub type StartAccept<'a> = &'a dyn Fn(Rc<Listener>) -> glommio::Task<()>;

/// On shard `shard`: takes `order`'s configuration. New listeners are bound first (an error
/// leaves everything as it was); then the kept listeners take the new certificates, the new
/// generation is built with what carries over (buckets, quota leases, idle backend
/// connections of unchanged upstreams) and swapped in, removed listeners close (their
/// connections finish) and the generation's background tasks start.
pub async fn apply(shard: &Rc<Shard>, bound: &mut Bound, order: Order, start: StartAccept<'_>) {
    let index = shard.index;
    let reply = order.reply.clone();
    let result = apply_inner(shard, bound, order, start);
    // The accept tasks of removed listeners were cancelled: let them be dropped (closing
    // their sockets) and the reactor cancel their pending accepts before answering, so that
    // once `POST /reload` answers, the removed addresses refuse connections.
    glommio::executor().yield_now().await;
    glommio::timer::sleep(Duration::from_millis(2)).await;
    let _ = reply.send((index, result));
}

fn apply_inner(
    shard: &Rc<Shard>,
    bound: &mut Bound,
    order: Order,
    start: StartAccept<'_>,
) -> Result<(), String> {
    let gw = order.gateway;
    let mut added = Vec::new();
    for &addr in &gw.listeners {
        if bound.iter().any(|(a, _, _)| *a == addr) {
            continue;
        }
        let l = Listener::bind(addr)
            .and_then(|l| l.with_tls(&gw.tls))
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        added.push((addr, Rc::new(l)));
    }
    let old = shard.generation();
    // Unchanged certificates (same files, same contents): the listeners keep their rustls
    // configs (no rebuild on every shard, TLS 1.2 session-id caches kept). Session tickets
    // resume across a reload either way (the ticket key is the process's, `net`).
    if !same_tls(&old.gateway.tls, &gw.tls) {
        for (addr, l, _) in bound.iter() {
            if gw.listeners.contains(addr) {
                l.set_tls(&gw.tls)
                    .map_err(|e| format!("listener {addr}: TLS: {e}"))?;
            }
        }
    }
    let new = Gen::build(
        shard.index,
        gw,
        order.traffic,
        &shard.registry,
        &shard.log,
        &order.log_senders,
    );
    traffic_state::carry_over(&old, &new);
    carry_pools(&old, &new);
    carry_authorizers(&old, &new);
    let prev = shard.swap(new);
    drop(prev);
    // Removed listeners: dropping the accept task closes the socket; their connections
    // finish on their own tasks.
    let gen = shard.generation();
    bound.retain(|(a, _, _)| gen.gateway.listeners.contains(a));
    for (addr, l) in added {
        let task = start(l.clone());
        bound.push((addr, l, task));
    }
    traffic_state::spawn_rebalance(shard.clone(), gen.clone());
    crate::lambda::start_jwks_refresh(shard, &gen);
    Ok(())
}

fn same_identity(a: &Identity, b: &Identity) -> bool {
    a.chain == b.chain
        && a.key.secret_der() == b.key.secret_der()
        && a.certificate_file == b.certificate_file
}

/// Whether two configs' edge TLS is the same: listeners, certificates and keys (contents, as
/// read by this load), domains, policies and truststores.
fn same_tls(a: &Tls, b: &Tls) -> bool {
    a.mutual_tls == b.mutual_tls
        && a.listeners.len() == b.listeners.len()
        && a.listeners
            .iter()
            .zip(&b.listeners)
            .all(|((x, i), (y, j))| x == y && same_identity(i, j))
        && a.domains.len() == b.domains.len()
        && a.domains.iter().zip(&b.domains).all(|(x, y)| {
            x.name == y.name
                && x.policy == y.policy
                && x.truststore == y.truststore
                && same_identity(&x.identity, &y.identity)
        })
}

/// Idle backend connections of upstreams both generations have (same address, `Host` and
/// TLS settings) move to the new pools; the rest close with the old generation.
fn carry_pools(old: &Gen, new: &Gen) {
    let now = Instant::now();
    let mut from = old.pools.borrow_mut();
    let mut to = new.pools.borrow_mut();
    for (j, u) in new.gateway.upstreams.iter().enumerate() {
        if let Some(i) = old.gateway.upstreams.iter().position(|o| o == u) {
            while let Some(c) = from.take(i, now) {
                to.put(j, c, now);
            }
        }
    }
}

/// Whether authorizer `a` of `ga` and `b` of `gb` are configured alike (same API and name,
/// same settings, the same backend), so `b` may keep `a`'s cached results and JWKS keys.
fn same_authorizer(
    ga: &Gateway,
    api_a: &str,
    a: &Authorizer,
    gb: &Gateway,
    api_b: &str,
    b: &Authorizer,
) -> bool {
    api_a == api_b
        && a.name == b.name
        && a.kind == b.kind
        && a.path == b.path
        && ga.upstreams.get(a.upstream as usize) == gb.upstreams.get(b.upstream as usize)
        && a.identity_sources == b.identity_sources
        && a.validation.as_ref().map(|r| r.as_str()) == b.validation.as_ref().map(|r| r.as_str())
        && a.ttl == b.ttl
        && a.cache_entries == b.cache_entries
        && a.version == b.version
        && a.simple_responses == b.simple_responses
        && a.timeout == b.timeout
        // The JWT settings have no equality of their own; their debug form is complete (a
        // JWKS upstream's index in it makes a moved upstream count as a change: a fresh cache).
        && format!("{:?}", a.jwt) == format!("{:?}", b.jwt)
}

/// Authorizers configured as before keep their cached results and their fetched JWKS keys
/// (so a JWT authorizer does not refuse tokens until its first fetch in the new
/// generation); the others start empty.
fn carry_authorizers(old: &Gen, new: &Gen) {
    let mut from = old.auth_caches.borrow_mut();
    let mut to = new.auth_caches.borrow_mut();
    for nb in &new.gateway.apis {
        for b in &nb.authorizers {
            let found = old.gateway.apis.iter().find_map(|na| {
                na.authorizers
                    .iter()
                    .find(|a| same_authorizer(&old.gateway, &na.name, a, &new.gateway, &nb.name, b))
            });
            let Some(a) = found else { continue };
            if let (Some(x), Some(y)) = (from.get_mut(a.id), to.get_mut(b.id)) {
                std::mem::swap(x, y);
                // The lookups the moved cache counted were published by the old generation's
                // counters: the new one counts from there, the old one from its fresh cache.
                let (h, m) = y.counts();
                new.layout.counters.auth_cache_seen(b.id, h, m);
                let (h, m) = x.counts();
                old.layout.counters.auth_cache_seen(a.id, h, m);
            }
            if let Some(keys) = from.jwks(a.id) {
                to.set_jwks(b.id, (*keys).clone());
            }
        }
    }
}

/// One line per shard that did not swap: its error, or `silent` when it did not answer.
fn shard_failures(answers: &[Option<Result<(), String>>], silent: &str) -> String {
    let mut msg = String::new();
    for (i, a) in answers.iter().enumerate() {
        match a {
            Some(Err(e)) => msg.push_str(&format!("shard {i}: {e}\n")),
            Some(Ok(())) => {}
            None => msg.push_str(&format!("shard {i}: {silent}\n")),
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[[listeners]]
address = "127.0.0.1"
port = 8080

[[apis]]
name = "a"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  access_log = { destination = "stdout", format = "clf" }
  [[apis.routes]]
  key = "GET /x"
  integration = { type = "mock", status = 200, body = "" }
"#;

    fn gateway(text: &str) -> Gateway {
        config::load_str("<reload tests>", text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn reloader(path: Option<PathBuf>) -> (Reloader, Arc<Registry>) {
        let mut gw = gateway(CONFIG);
        let dests = tollgate_core::gateway::access_log::destinations(&mut gw);
        let writers = Writers::start(&dests).expect("writers");
        let registry = Arc::new(Registry::new(&gw, 1));
        let traffic = traffic_state::start(&gw, 1).expect("traffic");
        let r = Reloader::new(path, gw, writers, traffic, Vec::new(), registry.clone());
        (r, registry)
    }

    #[test]
    fn without_a_config_file_a_reload_says_so_and_counts_as_failed() {
        let (mut r, reg) = reloader(None);
        let err = r.reload("test").expect_err("nothing to reload");
        assert_eq!(err.status, 409);
        assert!(
            err.message.contains("built-in demo config"),
            "{}",
            err.message
        );
        assert_eq!(reg.reload.last_success.load(Ordering::Relaxed), 0);
        assert_eq!(reg.reload.generation.load(Ordering::Relaxed), 1);
        assert!(reg.reload.last_time.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn restart_only_settings_and_unopenable_log_destinations_are_refused() {
        let (r, _) = reloader(Some(PathBuf::from("g.toml")));
        let mut same = gateway(CONFIG);
        assert_eq!(r.check("g.toml", &mut same), Ok(()));
        let mut shards = gateway(&format!("[server]\nshards = 3\n{CONFIG}"));
        let e = r.check("g.toml", &mut shards).expect_err("shards");
        assert!(e.starts_with("g.toml: server.shards cannot change"), "{e}");
        // (A new destination that opens is covered end to end, `ops_reload`: an open file
        // here would race the descriptor counts of the `net` tests.)
        // A destination that cannot be opened refuses the reload.
        let bad = CONFIG.replace("\"stdout\"", "\"/nonexistent-dir/x.log\"");
        let e = r
            .check("g.toml", &mut gateway(&bad))
            .expect_err("cannot open");
        assert!(e.contains("cannot open the access log"), "{e}");
        assert!(e.contains("stage `prod`"), "{e}");
    }
}
