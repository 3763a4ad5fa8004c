//! The idle-connection client: opens many keep-alive connections to a proxy, each completing
//! one request (so the proxy holds it as an idle keep-alive connection, not a half-open
//! one), keeps them open while the proxy's memory is read, and tells how many are still open.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Connections opened before their responses are read (well under listen backlogs).
const BATCH: usize = 256;

/// The open connections and what happened while opening them.
pub struct IdleSet {
    pub streams: Vec<TcpStream>,
    /// Why opening stopped early, if it did.
    pub stopped: Option<String>,
}

/// Reads one response with an empty or Content-Length body; true when it was a 2xx.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(head)) => {
                let len: usize = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .unwrap_or(0);
                let ok = resp.code.is_some_and(|c| (200..300).contains(&c));
                while buf.len() < head + len {
                    let n = s.read(&mut chunk)?;
                    if n == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                return Ok(ok);
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
    }
}

/// Opens up to `n` connections to `addr`, each sending `GET path` and reading its response.
/// Stops early on `deadline`, on interruption, or when connections keep failing.
pub fn open(
    addr: SocketAddr,
    path: &str,
    n: usize,
    deadline: Instant,
    interrupted: &dyn Fn() -> bool,
) -> IdleSet {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut streams = Vec::with_capacity(n);
    let mut buf = Vec::with_capacity(4096);
    let mut failures = 0usize;
    let mut last_error = String::new();
    while streams.len() < n {
        if interrupted() {
            return IdleSet {
                streams,
                stopped: Some("interrupted".into()),
            };
        }
        if Instant::now() >= deadline {
            return IdleSet {
                streams,
                stopped: Some("time limit reached while opening connections".into()),
            };
        }
        if failures > 100 {
            return IdleSet {
                streams,
                stopped: Some(format!("connections kept failing: {last_error}")),
            };
        }
        let want = BATCH.min(n - streams.len());
        let mut batch = Vec::with_capacity(want);
        for _ in 0..want {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
                Ok(mut s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = s.set_nodelay(true);
                    match s.write_all(request.as_bytes()) {
                        Ok(()) => batch.push(s),
                        Err(e) => {
                            failures += 1;
                            last_error = e.to_string();
                        }
                    }
                }
                Err(e) => {
                    failures += 1;
                    last_error = e.to_string();
                    if e.raw_os_error() == Some(libc::EMFILE) {
                        break;
                    }
                }
            }
        }
        if batch.is_empty() && failures > 0 && last_error.contains("Too many open files") {
            return IdleSet {
                streams,
                stopped: Some(format!("client ran out of descriptors: {last_error}")),
            };
        }
        for mut s in batch {
            match read_response(&mut s, &mut buf) {
                Ok(true) => streams.push(s),
                Ok(false) => {
                    failures += 1;
                    last_error = "non-2xx response".into();
                }
                Err(e) => {
                    failures += 1;
                    last_error = e.to_string();
                }
            }
        }
    }
    IdleSet {
        streams,
        stopped: None,
    }
}

/// How many of `streams` the server has not closed (a non-blocking peek sees no EOF/error).
pub fn still_open(streams: &[TcpStream]) -> usize {
    let mut open = 0;
    let mut b = [0u8; 1];
    for s in streams {
        if s.set_nonblocking(true).is_err() {
            continue;
        }
        match s.peek(&mut b) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => open += 1,
            Ok(n) if n > 0 => open += 1,
            _ => {}
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn opens_and_counts_keep_alive_connections() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let mut kept = Vec::new();
            for _ in 0..3 {
                let Ok((mut s, _)) = l.accept() else { break };
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                kept.push(s);
            }
            // Close one of them: the client must notice.
            kept.pop();
            std::thread::sleep(Duration::from_millis(300));
            drop(kept);
        });
        let set = open(
            addr,
            "/0",
            3,
            Instant::now() + Duration::from_secs(5),
            &|| false,
        );
        assert_eq!(set.streams.len(), 3);
        assert!(set.stopped.is_none());
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(still_open(&set.streams), 2);
        let _ = server.join();
    }
}
