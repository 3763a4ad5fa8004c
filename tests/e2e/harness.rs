//! Starting and stopping the real gateway: free loopback ports, config files in a private temp
//! dir, the child process (its stdout/stderr captured for failure messages), a readiness wait
//! by polling `connect`, and kill + wait on drop so no process outlives its test.

use std::collections::HashSet;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// How long a gateway may take to accept connections after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Ports handed out by `free_port` in this process (never handed out twice: the gateway binds
/// with `SO_REUSEPORT`, so two gateways on one port would silently share connections).
static USED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port nobody listens on right now (bind to port 0, note the port, close).
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local_addr").port();
        drop(l);
        if port == 8080 {
            continue; // reserved for the built-in demo config test
        }
        let mut used = USED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
        if used.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// A fresh private directory under the system temp dir, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "tollgate-e2e-{}-{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            nanos,
            tag
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    /// Writes `name` in this directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `[server]` settings; every test runs one unpinned shard. Override keys with `set`.
#[derive(Clone, Debug)]
pub struct Server {
    entries: Vec<(String, String)>,
}

impl Default for Server {
    fn default() -> Self {
        let mut s = Server {
            entries: Vec::new(),
        };
        s.set("shards", "1")
            .set("pin_cpus", "false")
            .set("max_body_bytes", "10485760")
            .set("header_read_timeout_ms", "5000")
            .set("idle_timeout_ms", "30000")
            .set("upstream_pool_size", "64");
        s
    }
}

impl Server {
    /// Sets `key = value` (`value` is TOML, e.g. `"300"` or `"false"`).
    pub fn set(&mut self, key: &str, value: &str) -> &mut Server {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value.to_string(),
            None => self.entries.push((key.to_string(), value.to_string())),
        }
        self
    }

    pub fn with(mut self, key: &str, value: &str) -> Server {
        self.set(key, value);
        self
    }

    fn toml(&self) -> String {
        let mut out = String::from("[server]\n");
        for (k, v) in &self.entries {
            out.push_str(&format!("{k} = {v}\n"));
        }
        out
    }
}

/// A whole config file: `server`, one listener on `port`, then `apis` (TOML `[[apis]]` text).
pub fn config_text(server: &Server, port: u16, apis: &str) -> String {
    format!(
        "{}\n[[listeners]]\naddress = \"127.0.0.1\"\nport = {port}\n\n{apis}",
        server.toml()
    )
}

/// A REST API `svc`, stage `prod` (stage variable `backend`), `ANY /{proxy+}` proxied to
/// `http://${stageVariables.backend}/{proxy}` with `timeout_ms`, plus `extra_routes` (TOML).
pub fn rest_proxy_api(backend: SocketAddr, timeout_ms: u64, extra_routes: &str) -> String {
    format!(
        r#"[[apis]]
name = "svc"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  variables = {{ backend = "{backend}" }}
  [[apis.routes]]
  key = "ANY /{{proxy+}}"
  integration = {{ type = "http_proxy", uri = "http://${{stageVariables.backend}}/{{proxy}}", timeout_ms = {timeout_ms} }}
{extra_routes}
"#
    )
}

/// A mock route (TOML) answering `status` with a text body.
pub fn mock_route(key: &str, status: u16, body: &str) -> String {
    format!(
        r#"  [[apis.routes]]
  key = "{key}"
  integration = {{ type = "mock", status = {status}, headers = {{ "content-type" = "text/plain" }}, body = "{body}" }}
"#
    )
}

/// Output of the child collected by reader threads.
#[derive(Default)]
struct Output {
    text: Mutex<String>,
}

fn collect(mut r: impl Read + Send + 'static, out: Arc<Output>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.text
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
}

/// A running gateway process, killed (and waited for) on drop.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    output: Arc<Output>,
    readers: Vec<JoinHandle<()>>,
    /// The output was already part of a panic message.
    reported: bool,
    _dir: Option<TempDir>,
}

impl Gateway {
    /// Starts a gateway with `server` settings and `apis` on a fresh port. If the port was
    /// taken in the meantime (the process says it cannot listen), retries on another one.
    pub fn start(server: &Server, apis: &str) -> Gateway {
        Gateway::start_with_env(server, apis, &[])
    }

    /// `start`, with extra environment variables for the gateway process.
    pub fn start_with_env(server: &Server, apis: &str, env: &[(&str, &str)]) -> Gateway {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            let dir = TempDir::new("gw");
            let path = dir.write("gateway.toml", &config_text(server, port, apis));
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let args = [std::ffi::OsStr::new("--config"), path.as_os_str()];
            match Gateway::try_spawn(&args, env, addr, Some(dir)) {
                Ok(gw) => return gw,
                Err(msg) if attempt < 3 && msg.contains("cannot listen") => continue,
                Err(msg) => panic!("{msg}"),
            }
        }
    }

    /// Starts `tollgate` with `args` and waits until `addr` accepts connections.
    pub fn spawn(args: &[&std::ffi::OsStr], addr: SocketAddr, dir: Option<TempDir>) -> Gateway {
        Gateway::try_spawn(args, &[], addr, dir).unwrap_or_else(|msg| panic!("{msg}"))
    }

    fn try_spawn(
        args: &[&std::ffi::OsStr],
        env: &[(&str, &str)],
        addr: SocketAddr,
        dir: Option<TempDir>,
    ) -> Result<Gateway, String> {
        let mut child = Command::new(BIN)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let output = Arc::new(Output::default());
        let readers = vec![
            collect(child.stdout.take().expect("stdout"), output.clone()),
            collect(child.stderr.take().expect("stderr"), output.clone()),
        ];
        let mut gw = Gateway {
            child,
            addr,
            output,
            readers,
            reported: false,
            _dir: dir,
        };
        gw.wait_ready()?;
        Ok(gw)
    }

    /// Polls `connect` until the gateway accepts; `Err` (with its output) if it exits first
    /// or takes longer than `READY_TIMEOUT`.
    fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader threads take the last bytes.
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                self.reported = true;
                return Err(format!(
                    "tollgate exited before accepting connections ({status}); output:\n{}",
                    self.output()
                ));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                self.reported = true;
                return Err(format!(
                    "tollgate did not accept connections on {} within {READY_TIMEOUT:?}; output:\n{}",
                    self.addr,
                    self.output()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the process printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output
            .text
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The gateway's process id (for `/proc` checks).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (polling, at most `timeout`) until the output contains `needle`.
    pub fn wait_output(&self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while !self.output().contains(needle) {
            if start.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Waits (polling, at most `timeout`) for the process to exit; its status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Panics (with its output) if the process is no longer running.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.reported = true;
            panic!("tollgate exited ({status}); output:\n{}", self.output());
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let exited = matches!(self.child.try_wait(), Ok(Some(_)));
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        if (std::thread::panicking() || exited) && !self.reported {
            eprintln!(
                "--- tollgate on {} output{} ---\n{}--- end ---",
                self.addr,
                if exited { " (it had exited)" } else { "" },
                self.output()
            );
        }
    }
}

/// Runs `tollgate` with `args` to completion: (exit code, stdout + stderr). Bounded: killed
/// after 20 s.
pub fn run_to_end(args: &[&Path]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    let output = Arc::new(Output::default());
    let readers = [
        collect(child.stdout.take().expect("stdout"), output.clone()),
        collect(child.stderr.take().expect("stderr"), output.clone()),
    ];
    let start = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    for r in readers {
        let _ = r.join();
    }
    let text = output
        .text
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    match status {
        Some(s) => (s.code(), text),
        None => panic!("tollgate {args:?} did not finish within 20 s; output:\n{text}"),
    }
}
