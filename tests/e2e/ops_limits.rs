//! Limits an operator must see, end to end: at the descriptor limit the gateway keeps
//! serving its open connections, logs failed accepts at a bounded rate, and serves the
//! waiting connections once descriptors are free again; `tollgate doctor` reports every host
//! check.

use crate::client::{get, Client};
use crate::harness::{config_text, free_port, mock_route, run_to_end, Server, TempDir, BIN};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A connection that got a 200 within `timeout` (`None`: not served in time).
fn served(addr: SocketAddr, timeout: Duration) -> Option<TcpStream> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(&get("/a/ok")).ok()?;
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).ok()?;
    buf[..n].starts_with(b"HTTP/1.1 200").then_some(s)
}

#[test]
fn at_the_descriptor_limit_open_connections_keep_working() {
    let dir = TempDir::new("nofile");
    let port = free_port();
    let apis = format!(
        "[[apis]]\nname = \"a\"\nprotocol = \"rest\"\n  [[apis.stages]]\n  name = \"a\"\n{}",
        mock_route("GET /ok", 200, "ok")
    );
    let cfg = dir.write("gw.toml", &config_text(&Server::default(), port, &apis));
    let log = dir.path.join("out.txt");
    let out = std::fs::File::create(&log).expect("output file");
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out);
    // SAFETY: only setrlimit (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let r = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let _child = Child(cmd.spawn().expect("start tollgate"));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let output = || std::fs::read_to_string(&log).unwrap_or_default();
    let start = Instant::now();
    let first = loop {
        if let Some(s) = served(addr, Duration::from_millis(500)) {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not ready:\n{}",
            output()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Fill the descriptor table with served connections until one is not served.
    let mut open = vec![first];
    let waiting = loop {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(400)))
            .expect("timeout");
        let mut s = s;
        s.write_all(&get("/a/ok")).expect("write");
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(n) if buf[..n].starts_with(b"HTTP/1.1 200") => open.push(s),
            _ => break s,
        }
        assert!(
            open.len() < 100,
            "the limit of 64 descriptors was never reached"
        );
    };
    assert!(open.len() > 5, "served {} connections", open.len());
    // Established connections keep being served while accepts fail.
    std::thread::sleep(Duration::from_millis(1500));
    for s in open.iter_mut().take(3) {
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        s.write_all(&get("/a/ok")).expect("write");
        let mut buf = [0u8; 512];
        let n = s
            .read(&mut buf)
            .expect("an open connection is still served");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    let text = output();
    let lines = text.matches("accept failed").count();
    assert_eq!(
        lines, 1,
        "one rate-limited line, not one per retry:\n{text}"
    );
    assert!(text.contains("Too many open files"), "{text}");
    // Free descriptors: the waiting connection is accepted and answered.
    open.truncate(2);
    let mut waiting = waiting;
    waiting
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 512];
    let n = waiting
        .read(&mut buf)
        .expect("the waiting connection is served");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", output());
    let mut c = Client::connect(addr);
    assert_eq!(c.request(&get("/a/ok")).status, 200);
}

#[test]
fn doctor_reports_every_host_check() {
    let (code, out) = run_to_end(&[std::path::Path::new("doctor")]);
    assert!(matches!(code, Some(0 | 1)), "{out}");
    for name in [
        "locked memory (RLIMIT_MEMLOCK)",
        "open files (RLIMIT_NOFILE)",
        "net.core.somaxconn",
        "net.ipv4.ip_local_port_range",
        "io_uring",
        "kernel",
        "CPUs",
        "CPU frequency governor",
    ] {
        assert!(out.contains(name), "{name}:\n{out}");
    }
    // This host runs the other e2e tests, so io_uring works here.
    assert!(out.contains("[ok  ] io_uring: available"), "{out}");
    assert_eq!(code, Some(0), "{out}");
}
