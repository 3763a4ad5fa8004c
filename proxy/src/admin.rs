//! The admin listener (`[admin]`, loopback by default): `GET /metrics` (Prometheus text of
//! every shard's counters, summed at scrape time), `GET /healthz` (the process answers) and
//! `GET /readyz` (200 once every shard has bound its listeners, 503 before and while
//! draining). It runs on its own plain thread, off the data plane: a scrape reads the shards'
//! counters and never sends anything to a shard. One connection at a time, each answered and
//! closed, with short timeouts, so a stuck client cannot hold it long.

use crate::metrics::{self, Registry};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Process state the admin listener reports, set by `runtime`.
#[derive(Default)]
pub struct Control {
    /// Every shard has bound its listeners.
    pub ready: AtomicBool,
    /// SIGTERM/SIGINT: shards are draining.
    pub draining: AtomicBool,
    /// The drain is over: shards stop.
    pub stop: AtomicBool,
}

const IO_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_HEAD: usize = 8192;

/// Binds the admin listener (an error to report before starting) and serves it on its own
/// thread.
pub fn start(addr: SocketAddr, reg: Arc<Registry>, control: Arc<Control>) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| format!("tollgate: cannot listen on {addr} (admin): {e}"))?;
    std::thread::Builder::new()
        .name("tollgate-admin".to_string())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        let _ = serve(s, &reg, &control);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })
        .map_err(|e| format!("tollgate: cannot start the admin listener: {e}"))?;
    Ok(())
}

fn serve(mut s: TcpStream, reg: &Registry, control: &Control) -> std::io::Result<()> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or(&[]);
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next().unwrap_or(&[]), parts.next().unwrap_or(&[]));
    let path = target.split(|&b| b == b'?').next().unwrap_or(&[]);
    let (status, ctype, body) = if method != b"GET" && method != b"HEAD" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        )
    } else {
        match path {
            b"/metrics" => (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                metrics::render(reg),
            ),
            b"/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
            b"/readyz" => {
                if control.draining.load(Ordering::Acquire) {
                    (
                        "503 Service Unavailable",
                        "text/plain",
                        "draining\n".to_string(),
                    )
                } else if control.ready.load(Ordering::Acquire) {
                    ("200 OK", "text/plain", "ready\n".to_string())
                } else {
                    (
                        "503 Service Unavailable",
                        "text/plain",
                        "starting\n".to_string(),
                    )
                }
            }
            _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
        }
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != b"HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    s.write_all(&out)
}
