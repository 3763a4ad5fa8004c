//! Hot config reload, end to end: `POST /reload` and SIGHUP re-read the file the gateway was
//! started with. Under steady load on 2 shards (keep-alive and new connections, mocks and a
//! proxied route) a reload fails no request and its new route is live on both shards; a
//! request in flight across a reload finishes on the old config; a bad file (syntax, semantic)
//! keeps the old config serving and reports file:line; throttle buckets and quota counts of
//! unchanged limits carry over (a changed limit starts fresh); listeners are added and removed
//! (an address another process holds fails the reload); a rotated TLS certificate is what new
//! handshakes get, while an established TLS connection goes on; an unchanged authorizer keeps
//! its result cache, a changed one starts empty; idle backend connections of an unchanged
//! upstream are reused, those of a removed one closed; quota counts taken before and after a
//! reload (2 shards holding leases) are saved exactly at exit; a route added by a reload has
//! its own metric series (and a new upstream its pool gauge), a kept route keeps counting in
//! its series and a removed route's counts stay; an access log file a reload adds (the first
//! destination) is written, and the one it replaces is closed.

use crate::client::{get, Client};
use crate::harness::{free_port, Gateway, TempDir};
use crate::ops_support::{admin_get, parse_prometheus, signal, slow_backend};
use crate::origin::Origin;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const IO: Duration = Duration::from_secs(10);

/// `POST path` on the admin listener: (status, body).
fn admin_post(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, IO)
        .unwrap_or_else(|e| panic!("connect admin {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    s.write_all(
        format!("POST {path} HTTP/1.1\r\nhost: admin\r\ncontent-length: 0\r\n\r\n").as_bytes(),
    )
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

/// Sends `bytes` and reads one response, without panicking on I/O errors.
fn try_request(c: &mut Client, bytes: &[u8]) -> std::io::Result<crate::client::Response> {
    c.stream.write_all(bytes)?;
    c.try_read_response(false)
}

/// A gateway started from a config file the test rewrites; the admin listener on `admin`.
struct Reloadable {
    // Field order: the gateway is killed before its directory is removed.
    gw: Gateway,
    admin: SocketAddr,
    path: PathBuf,
    dir: TempDir,
}

impl Reloadable {
    /// Starts the gateway with `config(port, admin_port)` written to `gateway.toml`; waits until
    /// every shard listens.
    fn start(config: impl Fn(u16, u16) -> String) -> Reloadable {
        let dir = TempDir::new("reload");
        let port = free_port();
        let admin_port = free_port();
        let path = dir.write("gateway.toml", &config(port, admin_port));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let args = [std::ffi::OsStr::new("--config"), path.as_os_str()];
        let gw = Gateway::spawn(&args, addr, None);
        assert!(
            gw.wait_output("listening on", Duration::from_secs(10)),
            "{}",
            gw.output()
        );
        Reloadable {
            gw,
            admin: ([127, 0, 0, 1], admin_port).into(),
            path,
            dir,
        }
    }

    fn rewrite(&self, text: &str) {
        // Written aside and renamed, as editors and deploy tools do: never half a file.
        let tmp = self.dir.write("gateway.toml.new", text);
        std::fs::rename(tmp, &self.path).expect("rename config");
    }

    fn reload(&self) -> (u16, String) {
        admin_post(self.admin, "/reload")
    }

    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let (status, body) = admin_get(self.admin, "/metrics");
        assert_eq!(status, 200);
        parse_prometheus(&body).get(name, labels)
    }

    fn status(&self, path: &str) -> (u16, String) {
        let r = Client::connect(self.gw.addr).request(&get(path));
        (r.status, r.body_str())
    }
}

fn server(shards: usize, admin_port: u16) -> String {
    format!(
        "[server]\nshards = {shards}\npin_cpus = false\nidle_timeout_ms = 30000\n\n[admin]\nport = {admin_port}\n"
    )
}

fn listener(port: u16) -> String {
    format!("[[listeners]]\naddress = \"127.0.0.1\"\nport = {port}\n")
}

fn mock(key: &str, body: &str) -> String {
    format!(
        "  [[apis.routes]]\n  key = \"{key}\"\n  integration = {{ type = \"mock\", status = 200, body = \"{body}\" }}\n"
    )
}

/// API `a`, stage `prod`, with `routes` (TOML).
fn api(routes: &str) -> String {
    format!("[[apis]]\nname = \"a\"\nprotocol = \"rest\"\n  [[apis.stages]]\n  name = \"prod\"\n{routes}")
}

/// Connections held open until each shard has some (the kernel spreads them): every request
/// sent on all of them reaches both shards. Checked with the per-shard connection gauge.
fn connections_on_every_shard(r: &Reloadable, shards: usize) -> Vec<Client> {
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for _ in 0..8 {
            held.push(Client::connect(r.gw.addr));
        }
        // The gauge counts a connection once its task started: give it a moment.
        std::thread::sleep(Duration::from_millis(50));
        let on: Vec<f64> = (0..shards)
            .map(|s| {
                r.metric("tollgate_open_connections", &[("shard", &s.to_string())])
                    .unwrap_or(0.0)
            })
            .collect();
        if on.iter().all(|&n| n > 0.0) {
            return held;
        }
        assert!(
            Instant::now() < deadline,
            "connections never reached every shard: {on:?}"
        );
    }
}

#[test]
fn reload_under_load_fails_no_request_and_the_new_route_is_live_on_both_shards() {
    let origin = Origin::start();
    let slow = slow_backend(Duration::from_millis(1500));
    let proxied = |o: SocketAddr| {
        format!(
            "  [[apis.routes]]\n  key = \"ANY /o/{{proxy+}}\"\n  integration = {{ type = \"http_proxy\", uri = \"http://{o}/{{proxy}}\", timeout_ms = 5000 }}\n"
        )
    };
    let slow_route = format!(
        "  [[apis.routes]]\n  key = \"GET /slow\"\n  integration = {{ type = \"http_proxy\", uri = \"http://{slow}/slow\", timeout_ms = 5000 }}\n"
    );
    let v1 = {
        let (o, s) = (origin.addr, slow_route.clone());
        move |port: u16, admin: u16| {
            format!(
                "{}{}{}",
                server(2, admin),
                listener(port),
                api(&format!("{}{}{}", mock("GET /a", "one"), proxied(o), s))
            )
        }
    };
    let r = Reloadable::start(&v1);
    let (port, admin_port) = (r.gw.addr.port(), r.admin.port());
    assert_eq!(r.status("/prod/a"), (200, "one".to_string()));
    assert_eq!(r.status("/prod/b").0, 403, "not there before the reload");

    // A request in flight across the reload: its route is gone from the new config.
    let addr = r.gw.addr;
    let in_flight = std::thread::spawn(move || Client::connect(addr).request(&get("/prod/slow")));
    std::thread::sleep(Duration::from_millis(300));

    // Steady load: keep-alive clients and clients opening a connection per request.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut load = Vec::new();
    for t in 0..6 {
        let (stop, done, failures) = (stop.clone(), done.clone(), failures.clone());
        load.push(std::thread::spawn(move || {
            let keep_alive = t % 2 == 0;
            let mut c = keep_alive.then(|| Client::connect(addr));
            let paths = ["/prod/a", "/prod/o/x"];
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let path = paths[i % paths.len()];
                i += 1;
                let resp = match &mut c {
                    Some(c) => try_request(c, &get(path)),
                    None => try_request(&mut Client::connect(addr), &get(path)),
                };
                match resp {
                    Ok(resp) if resp.status == 200 => {
                        let body = resp.body_str();
                        if path == "/prod/a" && body != "one" && body != "two" {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{path}: body {body:?}"));
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(resp) => failures
                        .lock()
                        .unwrap()
                        .push(format!("{path}: status {}", resp.status)),
                    Err(e) => {
                        failures.lock().unwrap().push(format!("{path}: {e}"));
                        return;
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));

    // Reload 1 by POST /reload: /a changes, /b appears, /slow is gone.
    let v2 = format!(
        "{}{}{}",
        server(2, admin_port),
        listener(port),
        api(&format!(
            "{}{}{}",
            mock("GET /a", "two"),
            mock("GET /b", "bee"),
            proxied(origin.addr)
        ))
    );
    r.rewrite(&v2);
    let (status, body) = r.reload();
    assert_eq!(status, 200, "{body}\n{}", r.gw.output());
    assert!(body.contains("generation 2"), "{body}");
    std::thread::sleep(Duration::from_millis(1500));

    // Reload 2 by SIGHUP: /c appears.
    let v3 = format!(
        "{}{}{}",
        server(2, admin_port),
        listener(port),
        api(&format!(
            "{}{}{}{}",
            mock("GET /a", "two"),
            mock("GET /b", "bee"),
            mock("GET /c", "sea"),
            proxied(origin.addr)
        ))
    );
    r.rewrite(&v3);
    signal(r.gw.pid(), libc::SIGHUP);
    assert!(
        r.gw.wait_output("generation 3 on all 2 shards", Duration::from_secs(10)),
        "{}",
        r.gw.output()
    );
    while started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("load thread");
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(
        done.load(Ordering::Relaxed) > 100,
        "too little load: {}",
        done.load(Ordering::Relaxed)
    );

    // The slow request started on the first config and finished on it.
    let slow_resp = in_flight.join().expect("in-flight thread");
    assert_eq!(slow_resp.status, 200, "{}", slow_resp.body_str());
    assert_eq!(r.status("/prod/slow").0, 403, "gone after the reload");

    // The new routes on both shards (connections held on each).
    let mut held = connections_on_every_shard(&r, 2);
    for c in &mut held {
        let resp = c.request(&get("/prod/c"));
        assert_eq!((resp.status, resp.body_str()), (200, "sea".to_string()));
        let resp = c.request(&get("/prod/a"));
        assert_eq!(resp.body_str(), "two");
    }
    assert_eq!(r.metric("tollgate_config_generation", &[]), Some(3.0));
    assert_eq!(
        r.metric("tollgate_config_last_reload_success", &[]),
        Some(1.0)
    );
    let at = r
        .metric("tollgate_config_last_reload_timestamp_seconds", &[])
        .expect("timestamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!((now - at).abs() < 60.0, "reload time {at} vs now {now}");
}

#[test]
fn a_bad_file_keeps_the_old_config_and_reports_file_and_line() {
    let v1 = |port: u16, admin: u16| {
        format!(
            "{}{}{}",
            server(2, admin),
            listener(port),
            api(&mock("GET /a", "one"))
        )
    };
    let r = Reloadable::start(v1);
    let (port, admin) = (r.gw.addr.port(), r.admin.port());
    let file = r.path.display().to_string();

    // A syntax error on line 4 of the file.
    let good = v1(port, admin);
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(3, "this is = = not toml");
    r.rewrite(&lines.join("\n"));
    let (status, body) = r.reload();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains(&format!("{file}:4:")), "{body}");
    assert!(body.contains("generation 1"), "{body}");
    assert_eq!(r.status("/prod/a"), (200, "one".to_string()));
    assert!(
        r.gw.wait_output(&format!("reload failed: {file}:4:"), Duration::from_secs(5)),
        "the gateway log says so: {}",
        r.gw.output()
    );
    assert_eq!(
        r.metric("tollgate_config_last_reload_success", &[]),
        Some(0.0)
    );
    assert_eq!(r.metric("tollgate_config_generation", &[]), Some(1.0));

    // A semantic error: an integration type that does not exist, by SIGHUP.
    let bad = format!(
        "{}{}{}",
        server(2, admin),
        listener(port),
        api("  [[apis.routes]]\n  key = \"GET /b\"\n  integration = { type = \"carrier_pigeon\" }\n")
    );
    let bad_line = bad
        .lines()
        .position(|l| l.contains("carrier_pigeon"))
        .expect("line")
        + 1;
    r.rewrite(&bad);
    signal(r.gw.pid(), libc::SIGHUP);
    let needle = format!("SIGHUP: reload failed: {file}:{bad_line}:");
    assert!(
        r.gw.wait_output(&needle, Duration::from_secs(5)),
        "expected {needle:?} in: {}",
        r.gw.output()
    );
    assert_eq!(r.status("/prod/a"), (200, "one".to_string()));
    assert_eq!(r.status("/prod/b").0, 403);

    // A setting a running process cannot change.
    r.rewrite(&format!(
        "{}{}{}",
        server(1, admin),
        listener(port),
        api(&mock("GET /a", "one"))
    ));
    let (status, body) = r.reload();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("server.shards"), "{body}");

    // Then a good one: it takes.
    r.rewrite(&format!(
        "{}{}{}",
        server(2, admin),
        listener(port),
        api(&format!(
            "{}{}",
            mock("GET /a", "one"),
            mock("GET /b", "bee")
        ))
    ));
    let series = |route: &str| {
        r.metric(
            "tollgate_count_total",
            &[("api", "a"), ("stage", "prod"), ("route", route)],
        )
        .unwrap_or(0.0)
    };
    let (a_before, none_before) = (series("GET /a"), series(""));
    let (status, body) = r.reload();
    assert_eq!(status, 200, "{body}");
    assert_eq!(r.status("/prod/b"), (200, "bee".to_string()));
    assert_eq!(r.status("/prod/a"), (200, "one".to_string()));
    assert_eq!(r.metric("tollgate_config_generation", &[]), Some(2.0));
    // Metrics after the reload: a route the process started with keeps its series; one the
    // reload added has its own.
    assert_eq!(series("GET /a"), a_before + 1.0);
    assert_eq!(series("GET /b"), 1.0);
    assert_eq!(series(""), none_before);
    assert_eq!(
        r.metric("tollgate_config_last_reload_success", &[]),
        Some(1.0)
    );
    // Only POST.
    assert_eq!(admin_get(r.admin, "/reload").0, 405);
}

const ALICE: &str = "alice0123456789abcdefghij";

/// Key alice in plan `gold` (quota `quota` a day) on API `q`, stage `prod`: `GET /keyed`
/// needs the key; `GET /t` has a route throttle of `burst` with no refill; `extra` routes.
fn traffic_config(port: u16, admin: u16, quota: u64, burst: u64, extra: &str) -> String {
    format!(
        r#"{}{}
[[api_keys]]
name = "alice"
value = "{ALICE}"

[[usage_plans]]
name = "gold"
quota = {{ limit = {quota}, period = "DAY" }}
keys = ["alice"]
  [[usage_plans.stages]]
  api = "q"
  stage = "prod"

[[apis]]
name = "q"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  route_throttles = {{ "GET /t" = {{ rate = 0.0, burst = {burst} }} }}
  [[apis.routes]]
  key = "GET /keyed"
  api_key_required = true
  integration = {{ type = "mock", status = 200, body = "keyed" }}
{}{extra}"#,
        server(1, admin),
        listener(port),
        mock("GET /t", "tee")
    )
}

#[test]
fn throttle_buckets_and_quota_counts_of_unchanged_limits_carry_over() {
    let r = Reloadable::start(|port, admin| traffic_config(port, admin, 5, 4, ""));
    let (port, admin) = (r.gw.addr.port(), r.admin.port());
    let keyed = crate::client::req("GET", "/prod/keyed", &[("x-api-key", ALICE)], b"");
    let mut c = Client::connect(r.gw.addr);
    for _ in 0..3 {
        let resp = c.request(&keyed);
        assert_eq!(resp.status, 200, "{}", resp.body_str());
    }
    for _ in 0..3 {
        assert_eq!(c.request(&get("/prod/t")).status, 200);
    }
    // Unchanged plan and throttle; a new route.
    r.rewrite(&traffic_config(port, admin, 5, 4, &mock("GET /n", "new")));
    let (status, body) = r.reload();
    assert_eq!(status, 200, "{body}");
    assert_eq!(r.status("/prod/n"), (200, "new".to_string()));
    // 3 of the quota's 5 used before the reload: 2 left; 3 of the bucket's 4: 1 left.
    let q: Vec<u16> = (0..4).map(|_| c.request(&keyed).status).collect();
    assert_eq!(q, [200, 200, 429, 429], "the quota count carried over");
    let t: Vec<u16> = (0..3).map(|_| c.request(&get("/prod/t")).status).collect();
    assert_eq!(t, [200, 429, 429], "the bucket carried over");

    // A changed limit starts a fresh bucket (burst 6); the quota limit raised to 7 keeps
    // its count (5 used): 2 more.
    r.rewrite(&traffic_config(port, admin, 7, 6, ""));
    let (status, body) = r.reload();
    assert_eq!(status, 200, "{body}");
    let t: Vec<u16> = (0..7).map(|_| c.request(&get("/prod/t")).status).collect();
    assert_eq!(
        t,
        [200, 200, 200, 200, 200, 200, 429],
        "a fresh bucket of 6"
    );
    let q: Vec<u16> = (0..3).map(|_| c.request(&keyed).status).collect();
    assert_eq!(
        q,
        [200, 200, 429],
        "the count of the same plan/key/period stays"
    );
}

#[test]
fn listeners_are_added_and_removed_and_a_taken_address_fails_the_reload() {
    let second = free_port();
    let config = |port: u16, admin: u16, extra: &[u16]| {
        let mut text = format!("{}{}", server(2, admin), listener(port));
        for p in extra {
            text.push_str(&listener(*p));
        }
        text + &api(&mock("GET /a", "one"))
    };
    let r = Reloadable::start(|port, admin| config(port, admin, &[]));
    let (port, admin) = (r.gw.addr.port(), r.admin.port());
    let second_addr: SocketAddr = ([127, 0, 0, 1], second).into();
    assert!(TcpStream::connect_timeout(&second_addr, IO).is_err());

    r.rewrite(&config(port, admin, &[second]));
    let (status, body) = r.reload();
    assert_eq!(status, 200, "{body}");
    // Every shard listens there now: many new connections all answered.
    for _ in 0..20 {
        let resp = Client::connect(second_addr).request(&get("/prod/a"));
        assert_eq!((resp.status, resp.body_str()), (200, "one".to_string()));
    }
    let mut established = Client::connect(second_addr);
    assert_eq!(established.request(&get("/prod/a")).status, 200);

    r.rewrite(&config(port, admin, &[]));
    let (status, body) = r.reload();
    assert_eq!(status, 200, "{body}");
    let refused = (0..10).all(|_| TcpStream::connect_timeout(&second_addr, IO).is_err());
    assert!(refused, "the removed listener is closed on every shard");
    // Its established connection goes on.
    assert_eq!(established.request(&get("/prod/a")).status, 200);

    // An address another process holds: the reload fails, the old config stays.
    let squatter = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = squatter.local_addr().expect("addr").port();
    r.rewrite(&config(port, admin, &[taken]));
    let (status, body) = r.reload();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains(&format!("127.0.0.1:{taken}")), "{body}");
    assert!(body.contains("another process"), "{body}");
    assert_eq!(r.status("/prod/a").0, 200);
    assert_eq!(r.metric("tollgate_config_generation", &[]), Some(3.0));
}

/// A CA and leaves it signs for 127.0.0.1 / `localhost`.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().expect("ca key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "reload test CA");
        let cert = p.self_signed(&key).expect("ca cert");
        Ca { cert, key }
    }

    /// (certificate PEM with the CA, key PEM, leaf DER).
    fn leaf(&self, cn: &str) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().expect("leaf key");
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &self.cert, &self.key).expect("leaf");
        (
            format!("{}{}", cert.pem(), self.cert.pem()),
            key.serialize_pem(),
            cert.der().to_vec(),
        )
    }
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A client config trusting `ca` (with its own session store).
fn tls_client(ca: &Ca) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert.der().clone()).expect("root");
    let mut cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// A fresh client config each time (no session to resume: every handshake sees the
/// certificate).
fn tls_connect(addr: SocketAddr, ca: &Ca) -> Tls {
    tls_connect_with(addr, &tls_client(ca))
}

fn tls_connect_with(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> Tls {
    let tcp = TcpStream::connect_timeout(&addr, IO).expect("connect");
    tcp.set_read_timeout(Some(IO)).expect("timeout");
    let name = ServerName::try_from("localhost").expect("name");
    let conn = ClientConnection::new(cfg.clone(), name).expect("client");
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).expect("handshake");
    }
    s
}

fn presented(s: &Tls) -> Vec<u8> {
    s.conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .expect("a certificate")
}

/// One keep-alive GET over TLS: the status.
fn tls_get(s: &mut Tls, path: &str) -> u16 {
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
    s.flush().expect("flush");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_string)
                })
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).expect("read body");
                assert!(n > 0, "closed mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            return head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .expect("status");
        }
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn a_rotated_certificate_is_served_to_new_handshakes_after_reload() {
    let ca = Ca::new();
    let old = ca.leaf("old");
    let new = ca.leaf("new");
    let tls_config = |port: u16, admin: u16, cert: &str, key: &str| {
        format!(
            "{}[[listeners]]\naddress = \"127.0.0.1\"\nport = {port}\ntls = {{ certificate = \"{cert}\", key = \"{key}\" }}\n\n{}",
            server(2, admin),
            api(&mock("GET /a", "one"))
        )
    };
    let dir = TempDir::new("reload-certs");
    let cert = dir.write("edge.pem", &old.0);
    let key = dir.write("edge.key", &old.1);
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let r = Reloadable::start(|port, admin| tls_config(port, admin, &cert_s, &key_s));
    let (port, admin) = (r.gw.addr.port(), r.admin.port());

    let mut established = tls_connect(r.gw.addr, &ca);
    assert_eq!(presented(&established), old.2);
    assert_eq!(tls_get(&mut established, "/prod/a"), 200);

    // Sessions from before a reload resume after it (the ticket key is the process's): each
    // client with its own session store, one connection before and one after.
    let clients: Vec<Arc<ClientConfig>> = (0..10)
        .map(|_| {
            let cfg = tls_client(&ca);
            let mut s = tls_connect_with(r.gw.addr, &cfg);
            assert_eq!(tls_get(&mut s, "/prod/a"), 200, "and the tickets are taken");
            cfg
        })
        .collect();
    assert_eq!(r.reload().0, 200);
    let resumed = clients
        .iter()
        .filter(|cfg| {
            let mut s = tls_connect_with(r.gw.addr, cfg);
            let kind = s.conn.handshake_kind();
            assert_eq!(tls_get(&mut s, "/prod/a"), 200);
            kind == Some(rustls::HandshakeKind::Resumed)
        })
        .count();
    assert_eq!(resumed, clients.len(), "sessions resumed after a reload");

    // Rotation in place: the files get the new pair (written aside, renamed).
    std::fs::write(dir.path.join("edge.pem.new"), &new.0).expect("write");
    std::fs::write(dir.path.join("edge.key.new"), &new.1).expect("write");
    std::fs::rename(dir.path.join("edge.key.new"), &key).expect("rename");
    std::fs::rename(dir.path.join("edge.pem.new"), &cert).expect("rename");
    let (status, body) = r.reload();
    assert_eq!(status, 200, "{body}");
    // New handshakes, spread over both shards, all get the new certificate.
    for _ in 0..16 {
        let mut s = tls_connect(r.gw.addr, &ca);
        assert_eq!(presented(&s), new.2, "the rotated certificate");
        assert_eq!(tls_get(&mut s, "/prod/a"), 200);
    }
    // The connection made before goes on.
    assert_eq!(tls_get(&mut established, "/prod/a"), 200);

    // A key that does not match the certificate: a reload error naming the file.
    let other = ca.leaf("other");
    let bad_key = dir.write("other.key", &other.1);
    r.rewrite(&tls_config(
        port,
        admin,
        &cert_s,
        &bad_key.display().to_string(),
    ));
    let (status, body) = r.reload();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains(&r.path.display().to_string()), "{body}");
    // A missing certificate file too.
    r.rewrite(&tls_config(port, admin, "/nonexistent/edge.pem", &key_s));
    let (status, body) = r.reload();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("/nonexistent/edge.pem"), "{body}");
    // Still the rotated certificate.
    assert_eq!(presented(&tls_connect(r.gw.addr, &ca)), new.2);
}

#[test]
fn a_config_file_that_is_gone_is_a_reload_error() {
    let r = Reloadable::start(|port, admin| {
        format!(
            "{}{}{}",
            server(1, admin),
            listener(port),
            api(&mock("GET /a", "one"))
        )
    });
    std::fs::remove_file(&r.path).expect("remove config");
    let (status, body) = r.reload();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("cannot read the config file"), "{body}");
    assert_eq!(r.status("/prod/a"), (200, "one".to_string()));
}

#[test]
fn an_unchanged_authorizer_keeps_its_cache_and_a_changed_one_starts_empty() {
    use crate::lambda_server::{FunctionServer, Reply};
    use serde_json::json;
    let fs = FunctionServer::start(|_, _| {
        Reply::value(json!({
            "principalId": "u",
            "policyDocument": {"Version": "2012-10-17", "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"}
            ]},
        }))
    });
    let uri = fs.uri("token_auth");
    let config = move |port: u16, admin: u16, ttl: u32, extra: &str| {
        format!(
            r#"{}{}[[apis]]
name = "a"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  [[apis.authorizers]]
  name = "tokens"
  type = "token"
  uri = "{uri}"
  identity_sources = ["method.request.header.Authorization"]
  ttl_seconds = {ttl}
  [[apis.routes]]
  key = "GET /p"
  authorizer = "tokens"
  integration = {{ type = "mock", status = 200, body = "p" }}
{extra}"#,
            server(1, admin),
            listener(port)
        )
    };
    let r = {
        let config = config.clone();
        Reloadable::start(move |port, admin| config(port, admin, 300, ""))
    };
    let (port, admin) = (r.gw.addr.port(), r.admin.port());
    let call = || {
        let resp = Client::connect(r.gw.addr).request(&crate::client::req(
            "GET",
            "/prod/p",
            &[("Authorization", "Bearer t1")],
            b"",
        ));
        assert_eq!(resp.status, 200, "{}", resp.body_str());
    };
    call();
    call();
    assert_eq!(fs.count("token_auth"), 1, "cached");
    // Same authorizer, another route: the cache stays.
    r.rewrite(&config(port, admin, 300, &mock("GET /q", "q")));
    assert_eq!(r.reload().0, 200);
    call();
    assert_eq!(fs.count("token_auth"), 1, "the cache carried over");
    // The authorizer's TTL changed: its cache starts empty.
    r.rewrite(&config(port, admin, 200, ""));
    assert_eq!(r.reload().0, 200);
    call();
    assert_eq!(fs.count("token_auth"), 2, "a changed authorizer asks again");
    call();
    assert_eq!(fs.count("token_auth"), 2);
    // The cache counters went on across both reloads (the moved cache's lookups counted
    // once, the fresh cache's added to them): 3 hits, 2 misses.
    let auth = [("api", "a"), ("authorizer", "tokens")];
    assert_eq!(
        r.metric("tollgate_authorizer_cache_hits_total", &auth),
        Some(3.0)
    );
    assert_eq!(
        r.metric("tollgate_authorizer_cache_misses_total", &auth),
        Some(2.0)
    );
}

#[test]
fn idle_backend_connections_of_unchanged_upstreams_are_kept_and_others_closed() {
    let o1 = Origin::start();
    let o2 = Origin::start();
    let config = |port: u16, admin: u16, backend: SocketAddr, extra: &str| {
        format!(
            "{}{}{}",
            server(1, admin),
            listener(port),
            api(&format!(
                "  [[apis.routes]]\n  key = \"ANY /o/{{proxy+}}\"\n  integration = {{ type = \"http_proxy\", uri = \"http://{backend}/{{proxy}}\", timeout_ms = 5000 }}\n{extra}"
            ))
        )
    };
    let o1_addr = o1.addr;
    let r = Reloadable::start(move |port, admin| config(port, admin, o1_addr, ""));
    let (port, admin) = (r.gw.addr.port(), r.admin.port());
    assert_eq!(r.status("/prod/o/x").0, 200);
    assert_eq!(o1.connections(), 1);
    // The same upstream (another route added): its idle connection is reused.
    r.rewrite(&config(port, admin, o1.addr, &mock("GET /m", "m")));
    assert_eq!(r.reload().0, 200);
    assert_eq!(r.status("/prod/o/y").0, 200);
    assert_eq!(o1.connections(), 1, "the pooled connection carried over");
    // Another upstream, then back: the first one's idle connection was closed meanwhile.
    r.rewrite(&config(port, admin, o2.addr, ""));
    assert_eq!(r.reload().0, 200);
    assert_eq!(r.status("/prod/o/z").0, 200);
    assert_eq!(o2.connections(), 1);
    r.rewrite(&config(port, admin, o1.addr, ""));
    assert_eq!(r.reload().0, 200);
    assert_eq!(r.status("/prod/o/w").0, 200);
    assert_eq!(
        o1.connections(),
        2,
        "a fresh connection: the old one was closed"
    );
}

#[test]
fn quota_counts_taken_before_and_after_a_reload_are_saved_exactly_at_exit() {
    let state = TempDir::new("reload-state");
    let state_file = state.path.join("quota.state").display().to_string();
    let config = move |port: u16, admin: u16, extra: &str| {
        traffic_config(port, admin, 1000, 4, extra).replacen(
            "shards = 1\n",
            &format!("shards = 2\nstate_file = \"{state_file}\"\nstate_flush_ms = 3600000\n"),
            1,
        )
    };
    let mut r = {
        let config = config.clone();
        Reloadable::start(move |port, admin| config(port, admin, ""))
    };
    let (port, admin) = (r.gw.addr.port(), r.admin.port());
    let keyed = crate::client::req("GET", "/prod/keyed", &[("x-api-key", ALICE)], b"");
    // Several connections (both shards hold leases when the reload comes).
    for _ in 0..5 {
        let mut c = Client::connect(r.gw.addr);
        for _ in 0..5 {
            assert_eq!(c.request(&keyed).status, 200);
        }
    }
    r.rewrite(&config(port, admin, &mock("GET /n", "new")));
    assert_eq!(r.reload().0, 200);
    for _ in 0..2 {
        let mut c = Client::connect(r.gw.addr);
        for _ in 0..5 {
            assert_eq!(c.request(&keyed).status, 200);
        }
    }
    signal(r.gw.pid(), libc::SIGTERM);
    assert!(
        r.gw.wait_exit(Duration::from_secs(10)).is_some(),
        "{}",
        r.gw.output()
    );
    assert!(
        r.gw.output().contains("quota state saved"),
        "{}",
        r.gw.output()
    );
    let (code, out) = crate::harness::run_to_end(&[
        std::path::Path::new("usage"),
        std::path::Path::new("--config"),
        &r.path,
        std::path::Path::new("--key"),
        std::path::Path::new("alice"),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("\"used\": 35,"),
        "25 before + 10 after the reload: {out}"
    );
}

/// `tollgate_count_total` of route `route` of api `a`, stage `prod` (`None`: no such series).
fn route_count(r: &Reloadable, route: &str) -> Option<f64> {
    r.metric(
        "tollgate_count_total",
        &[("api", "a"), ("stage", "prod"), ("route", route)],
    )
}

/// Sends `n` requests for `path` on new connections (spread over the shards), each a 200.
fn hit(r: &Reloadable, path: &str, n: usize) {
    for _ in 0..n {
        assert_eq!(r.status(path).0, 200, "{path}");
    }
}

#[test]
fn a_route_added_by_a_reload_has_its_own_series_and_a_kept_route_keeps_counting() {
    let o = Origin::start();
    let backend = o.addr;
    let proxied = move |key: &str| {
        format!(
            "  [[apis.routes]]\n  key = \"{key}\"\n  integration = {{ type = \"http_proxy\", uri = \"http://{backend}/\", timeout_ms = 5000 }}\n"
        )
    };
    let r = Reloadable::start(|port, admin| {
        format!(
            "{}{}{}",
            server(2, admin),
            listener(port),
            api(&mock("GET /a", "a"))
        )
    });
    let (port, admin) = (r.gw.addr.port(), r.admin.port());
    hit(&r, "/prod/a", 3);
    assert_eq!(route_count(&r, "GET /a"), Some(3.0));
    // Generation 2 adds a mock route and a proxied route to a backend the process never had.
    r.rewrite(&format!(
        "{}{}{}",
        server(2, admin),
        listener(port),
        api(&format!(
            "{}{}{}",
            mock("GET /a", "a"),
            mock("GET /b", "b"),
            proxied("GET /p")
        ))
    ));
    assert_eq!(r.reload().0, 200);
    hit(&r, "/prod/b", 2);
    hit(&r, "/prod/a", 4);
    hit(&r, "/prod/p", 1);
    let (status, body) = admin_get(r.admin, "/metrics");
    assert_eq!(status, 200);
    let m = parse_prometheus(&body);
    let count = |route: &str| {
        m.get(
            "tollgate_count_total",
            &[("api", "a"), ("stage", "prod"), ("route", route)],
        )
    };
    assert_eq!(count("GET /b"), Some(2.0), "the new route's own series");
    assert_eq!(count("GET /p"), Some(1.0));
    assert_eq!(
        count("GET /a"),
        Some(7.0),
        "the kept route's series continues"
    );
    assert_eq!(
        count(""),
        None,
        "nothing fell back to the route-less series"
    );
    let bucket = m.get(
        "tollgate_latency_milliseconds_bucket",
        &[
            ("api", "a"),
            ("stage", "prod"),
            ("route", "GET /b"),
            ("le", "+Inf"),
        ],
    );
    assert_eq!(bucket, Some(2.0));
    // The new upstream's pool gauge: its one connection idles on some shard.
    let idle: f64 = m
        .samples
        .iter()
        .filter(|s| {
            s.name == "tollgate_upstream_idle_connections"
                && s.labels.get("upstream").map(String::as_str) == Some(&backend.to_string())
        })
        .map(|s| s.value)
        .sum();
    assert_eq!(idle, 1.0, "{body}");
    // Generation 3 removes `GET /b`: its counts stay (counters never go backwards), once
    // the generation that counted them has ended too.
    r.rewrite(&format!(
        "{}{}{}",
        server(2, admin),
        listener(port),
        api(&mock("GET /a", "a"))
    ));
    assert_eq!(r.reload().0, 200);
    hit(&r, "/prod/a", 2);
    assert_eq!(route_count(&r, "GET /b"), Some(2.0));
    assert_eq!(route_count(&r, "GET /a"), Some(9.0));
    assert_eq!(route_count(&r, "GET /p"), Some(1.0));
    assert_eq!(r.metric("tollgate_config_generation", &[]), Some(3.0));
}

/// The descriptors of process `pid` that point at `path`.
fn open_descriptors(pid: u32, path: &std::path::Path) -> usize {
    let want = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| std::fs::read_link(e.path()).ok().as_deref() == Some(want.as_path()))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_new_access_log_file_is_written_after_a_reload_and_a_removed_one_closed() {
    use crate::ops_support::wait_lines;
    let logs = TempDir::new("reload-logs");
    let first = logs.path.join("first.log");
    let second = logs.path.join("second.log");
    let config = |port: u16, admin: u16, log: Option<&std::path::Path>| {
        let stage = match log {
            Some(p) => format!(
                "  access_log = {{ destination = \"{}\", format = '$context.routeKey $context.status $context.requestId' }}\n",
                p.display()
            ),
            None => String::new(),
        };
        format!(
            "{}{}[[apis]]\nname = \"a\"\nprotocol = \"rest\"\n  [[apis.stages]]\n  name = \"prod\"\n{stage}{}",
            server(2, admin),
            listener(port),
            mock("GET /a", "a")
        )
    };
    // No access log at start: the first destination comes with a reload.
    let r = Reloadable::start(|port, admin| config(port, admin, None));
    let (port, admin) = (r.gw.addr.port(), r.admin.port());
    hit(&r, "/prod/a", 1);
    r.rewrite(&config(port, admin, Some(&first)));
    let (status, body) = r.reload();
    assert_eq!(status, 200, "{body}");
    hit(&r, "/prod/a", 3);
    let lines = wait_lines(&first, 3, Duration::from_secs(5));
    assert_eq!(
        lines.len(),
        3,
        "only the requests after the reload: {lines:?}"
    );
    assert!(
        lines.iter().all(|l| l.starts_with("GET /a 200 ")),
        "{lines:?}"
    );
    // Another file: the new one gets the lines, the old one is flushed and closed.
    r.rewrite(&config(port, admin, Some(&second)));
    assert_eq!(r.reload().0, 200);
    hit(&r, "/prod/a", 2);
    assert_eq!(wait_lines(&second, 2, Duration::from_secs(5)).len(), 2);
    let pid = r.gw.pid();
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_descriptors(pid, &first) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        open_descriptors(pid, &first),
        0,
        "the removed destination is closed"
    );
    assert_eq!(open_descriptors(pid, &second), 1);
    assert_eq!(
        std::fs::read_to_string(&first)
            .unwrap_or_default()
            .lines()
            .count(),
        3
    );
    let m = parse_prometheus(&admin_get(r.admin, "/metrics").1);
    assert_eq!(m.sum("tollgate_access_log_lines_total"), 5.0);
    assert_eq!(m.sum("tollgate_access_log_dropped_lines_total"), 0.0);
    // A destination that cannot be opened refuses the reload; the running one keeps logging.
    r.rewrite(&config(
        port,
        admin,
        Some(std::path::Path::new("/nonexistent-dir/x.log")),
    ));
    let (status, body) = r.reload();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("cannot open the access log"), "{body}");
    hit(&r, "/prod/a", 1);
    assert_eq!(wait_lines(&second, 3, Duration::from_secs(5)).len(), 3);
}
