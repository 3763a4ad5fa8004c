//! The admin listener (`[admin]`, loopback by default): `GET /metrics` (Prometheus text of
//! every shard's counters, summed at scrape time), `GET /healthz` (the process answers) and
//! `GET /readyz` (200 once every shard has bound its listeners, 503 before and while
//! draining) and `GET /usage[?key=NAME][&plan=NAME]` (quota use per API key and usage plan for
//! the current period, from the live counters, as `tollgate usage` prints it from the state
//! file) and `POST /reload` (re-read the config file, as SIGHUP does; answers once every shard
//! has swapped: 200 with what is in force, or the error with 409 / 422 / 500, see
//! `reload::Refused`). It runs on its own plain thread, off the data plane: a scrape reads the shards'
//! counters and never sends anything to a shard. One connection at a time, each answered and
//! closed, with short timeouts, so a stuck client cannot hold it long.

use crate::metrics::{self, Registry};
use crate::reload::{self, Reloader};
use crate::traffic_state;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
pub fn start(
    addr: SocketAddr,
    reg: Arc<Registry>,
    control: Arc<Control>,
    reloader: Arc<Mutex<Reloader>>,
) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| format!("tollgate: cannot listen on {addr} (admin): {e}"))?;
    std::thread::Builder::new()
        .name("tollgate-admin".to_string())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        let _ = serve(s, &reg, &control, &reloader);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })
        .map_err(|e| format!("tollgate: cannot start the admin listener: {e}"))?;
    Ok(())
}

fn serve(
    mut s: TcpStream,
    reg: &Registry,
    control: &Control,
    reloader: &Mutex<Reloader>,
) -> std::io::Result<()> {
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
    let mut split = target.splitn(2, |&b| b == b'?');
    let path = split.next().unwrap_or(&[]);
    let query = split.next().unwrap_or(&[]);
    let (status, ctype, body) = if path == b"/reload" {
        if method != b"POST" {
            (
                "405 Method Not Allowed".to_string(),
                "text/plain",
                "only POST\n".to_string(),
            )
        } else if control.draining.load(Ordering::Acquire) {
            (
                "409 Conflict".to_string(),
                "text/plain",
                "shutting down: no reload\n".to_string(),
            )
        } else {
            match reload::lock(reloader).reload("POST /reload") {
                Ok(msg) => ("200 OK".to_string(), "text/plain", format!("{msg}\n")),
                Err(r) => (
                    format!("{} {}", r.status, reason(r.status)),
                    "text/plain",
                    format!("{}\n", r.message),
                ),
            }
        }
    } else if method != b"GET" && method != b"HEAD" {
        (
            "405 Method Not Allowed".to_string(),
            "text/plain",
            "only GET\n".to_string(),
        )
    } else {
        let (status, ctype, body) = get(path, query, reg, control, reloader);
        (status.to_string(), ctype, body)
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

/// The answers to `GET` / `HEAD`: (status line, content type, body).
fn get(
    path: &[u8],
    query: &[u8],
    reg: &Registry,
    control: &Control,
    reloader: &Mutex<Reloader>,
) -> (&'static str, &'static str, String) {
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
        b"/usage" => {
            let key = query_param(query, b"key");
            let plan = query_param(query, b"plan");
            let traffic = reload::lock(reloader).traffic();
            match traffic_state::live_usage(
                &traffic,
                key.as_deref(),
                plan.as_deref(),
                traffic_state::unix_secs(),
            ) {
                Ok(json) => ("200 OK", "application/json", json),
                Err(msg) => ("404 Not Found", "text/plain", format!("{msg}\n")),
            }
        }
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        409 => "Conflict",
        422 => "Unprocessable Entity",
        _ => "Internal Server Error",
    }
}

/// The value of `name` in a query string (`a=1&b=2`), percent-decoded; `None` when absent or
/// not valid UTF-8.
fn query_param(query: &[u8], name: &[u8]) -> Option<String> {
    let raw = query
        .split(|&b| b == b'&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix(b"="))?;
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                let hex = std::str::from_utf8(raw.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::query_param;

    #[test]
    fn query_params_are_found_and_decoded() {
        assert_eq!(query_param(b"key=alice", b"key").as_deref(), Some("alice"));
        assert_eq!(
            query_param(b"plan=gold&key=a%20b", b"key").as_deref(),
            Some("a b")
        );
        assert_eq!(query_param(b"keys=x", b"key"), None);
        assert_eq!(query_param(b"plan=gold", b"key"), None);
        assert_eq!(query_param(b"key=%zz", b"key"), None);
        assert_eq!(query_param(b"key=%4", b"key"), None);
    }
}
