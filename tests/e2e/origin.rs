//! A real HTTP/1.1 origin on 127.0.0.1, in-process: std::net, one thread per connection,
//! keep-alive, request bodies (Content-Length or chunked) read incrementally into a running
//! checksum (never buffered whole), and a log of every request head it received.
//!
//! Behaviour is chosen by the last segment of the request path:
//! - `download?size=N&chunked=1`: streams N pattern bytes (`util::pattern`), chunked or with
//!   Content-Length.
//! - `status?code=N`: answers status N (204 and 304 without a body; 304 with a Content-Length).
//! - `never`: reads but never answers (the connection thread ends when the peer closes, when
//!   the origin is dropped, or after 30 s).
//! - `reset`: reads the request head, then closes with `SO_LINGER` 0 (the peer gets a RST).
//! - anything else (`echo`): 200 with a text body describing the request (see `Echo`), plus
//!   `x-origin-conn: <connection number>` and some hop-by-hop response headers.
//!
//! Dropping an `Origin` stops its accept thread and shuts down its open connections.

use crate::util::{pattern, Fnv};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// No connection thread lives longer than this.
const MAX_CONN_LIFE: Duration = Duration::from_secs(30);
const MAX_HEAD: usize = 64 * 1024;

/// One request the origin received (logged when its head arrived; body fields filled in as
/// the body is read).
#[derive(Clone, Debug)]
pub struct Seen {
    /// Connection number (1-based, in accept order).
    pub conn: usize,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    pub body_fnv: String,
    /// The whole body was received.
    pub complete: bool,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    connections: AtomicUsize,
    /// Request heads received.
    requests: AtomicUsize,
    /// Connection threads still running.
    active: AtomicUsize,
    log: Mutex<Vec<Seen>>,
    open: Mutex<HashMap<usize, TcpStream>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Origin {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Origin {
    pub fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("origin bind");
        let addr = listener.local_addr().expect("origin addr");
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        let accept = std::thread::spawn(move || accept_loop(listener, sh));
        Origin {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Request heads received so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Every request received so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.shared.log).clone()
    }

    /// Waits (polling, at most `timeout`) until `cond` holds for the log; returns the log.
    pub fn wait_for(&self, timeout: Duration, cond: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let start = Instant::now();
        loop {
            let log = self.seen();
            if cond(&log) || start.elapsed() > timeout {
                return log;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Origin {
    /// Waits (polling, at most `timeout`) until no connection is open; true if none is.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        while self.shared.active.load(Ordering::SeqCst) > 0 {
            if start.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for (_, s) in lock(&self.shared.open).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let born = Instant::now();
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) || born.elapsed() > Duration::from_secs(120) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let n = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.open).insert(n, clone);
        }
        let sh = shared.clone();
        shared.active.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || {
            let _ = serve_conn(&sh, stream, n);
            lock(&sh.open).remove(&n);
            sh.active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// A connection's read side with its own buffer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Conn {
    fn unread(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads more bytes; `Ok(false)` at EOF.
    fn fill(&mut self) -> io::Result<bool> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Err(io::Error::other("origin buffer full"));
        }
        let n = self.stream.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n > 0)
    }

    /// The next request head (through the blank line); `None` at EOF between requests.
    fn read_head(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(pos) = find(self.unread(), b"\r\n\r\n") {
                let head = self.unread()[..pos + 4].to_vec();
                self.start += pos + 4;
                return Ok(Some(head));
            }
            if self.end - self.start > MAX_HEAD {
                return Err(io::Error::other("head too large"));
            }
            if !self.fill()? {
                return if self.start == self.end {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    /// One CRLF-terminated line, without the CRLF.
    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(pos) = find(self.unread(), b"\r\n") {
                let line = self.unread()[..pos].to_vec();
                self.start += pos + 2;
                return Ok(line);
            }
            if self.end - self.start > 8192 {
                return Err(io::Error::other("line too long"));
            }
            if !self.fill()? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Reads `n` body bytes into the checksum, updating `seen` as it goes.
    fn body_bytes(&mut self, mut n: u64, h: &mut Fnv, count: &mut u64) -> io::Result<()> {
        while n > 0 {
            if self.start == self.end && !self.fill()? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let take = (n as usize).min(self.end - self.start);
            h.update(&self.buf[self.start..self.start + take]);
            self.start += take;
            n -= take as u64;
            *count += take as u64;
        }
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `key=value` pairs of a query string.
fn query_param<'a>(target: &'a str, key: &str) -> Option<&'a str> {
    let q = target.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then_some(v)
    })
}

fn serve_conn(shared: &Shared, stream: TcpStream, conn_no: usize) -> io::Result<()> {
    let born = Instant::now();
    stream.set_read_timeout(Some(MAX_CONN_LIFE))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    stream.set_nodelay(true)?;
    let mut c = Conn {
        stream,
        buf: vec![0; 64 * 1024],
        start: 0,
        end: 0,
    };
    loop {
        if shared.stop.load(Ordering::SeqCst) || born.elapsed() > MAX_CONN_LIFE {
            return Ok(());
        }
        let Some(head) = c.read_head()? else {
            return Ok(());
        };
        let mut hbuf = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut hbuf);
        if !matches!(req.parse(&head), Ok(httparse::Status::Complete(_))) {
            shared.requests.fetch_add(1, Ordering::SeqCst);
            lock(&shared.log).push(Seen {
                conn: conn_no,
                method: "<unparsable>".into(),
                target: String::from_utf8_lossy(&head).into_owned(),
                headers: Vec::new(),
                body_len: 0,
                body_fnv: String::new(),
                complete: false,
            });
            let _ = c.stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            return Ok(());
        }
        let method = req.method.unwrap_or("").to_string();
        let target = req.path.unwrap_or("").to_string();
        let headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let chunked =
            get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length: u64 = get("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let close = get("connection").is_some_and(|v| v.to_ascii_lowercase().contains("close"));
        shared.requests.fetch_add(1, Ordering::SeqCst);
        let index = {
            let mut log = lock(&shared.log);
            log.push(Seen {
                conn: conn_no,
                method: method.clone(),
                target: target.clone(),
                headers: headers.clone(),
                body_len: 0,
                body_fnv: String::new(),
                complete: false,
            });
            log.len() - 1
        };
        let path = target.split('?').next().unwrap_or("");
        let behaviour = path.rsplit('/').next().unwrap_or("");

        if behaviour == "never" {
            // Read whatever comes, answer nothing.
            let mut sink = [0u8; 16 * 1024];
            while !shared.stop.load(Ordering::SeqCst) && born.elapsed() < MAX_CONN_LIFE {
                match c.stream.read(&mut sink) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            return Ok(());
        }
        if behaviour == "reset" {
            set_linger_zero(&c.stream);
            lock(&shared.open).remove(&conn_no);
            return Ok(()); // dropping the last handle sends the RST
        }

        // The body, into a running checksum.
        let mut h = Fnv::new();
        let mut count = 0u64;
        let body_result = if chunked {
            read_chunked(&mut c, &mut h, &mut count)
        } else {
            c.body_bytes(length, &mut h, &mut count)
        };
        {
            let mut log = lock(&shared.log);
            let s = &mut log[index];
            s.body_len = count;
            s.body_fnv = h.hex();
            s.complete = body_result.is_ok();
        }
        body_result?;

        let is_head = method == "HEAD";
        let conn_header = if close {
            "close"
        } else {
            "keep-alive, x-origin-hop"
        };
        match behaviour {
            "download" => {
                let size: u64 = query_param(&target, "size")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let chunked_out = query_param(&target, "chunked") == Some("1");
                download(&mut c.stream, conn_no, size, chunked_out, is_head, close)?;
            }
            "status" => {
                let code: u16 = query_param(&target, "code")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(200);
                let resp = match code {
                    204 => format!("HTTP/1.1 204 No Content\r\nx-origin-conn: {conn_no}\r\nconnection: {conn_header}\r\n\r\n"),
                    304 => format!("HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ncontent-length: 5\r\nx-origin-conn: {conn_no}\r\nconnection: {conn_header}\r\n\r\n"),
                    _ => {
                        let body = format!("status {code}");
                        format!(
                            "HTTP/1.1 {code} Whatever\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-origin-conn: {conn_no}\r\nconnection: {conn_header}\r\n\r\n{}",
                            body.len(),
                            if is_head { "" } else { &body }
                        )
                    }
                };
                c.stream.write_all(resp.as_bytes())?;
            }
            _ => {
                let mut body = format!(
                    "method {method}\ntarget {target}\nbody-length {count}\nbody-fnv {}\nconn {conn_no}\n",
                    h.hex()
                );
                for (n, v) in &headers {
                    body.push_str(&format!("header {n}: {v}\n"));
                }
                let mut resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-origin-conn: {conn_no}\r\nkeep-alive: timeout=30\r\nx-origin-hop: secret\r\nconnection: {conn_header}\r\n\r\n",
                    body.len()
                );
                if !is_head {
                    resp.push_str(&body);
                }
                c.stream.write_all(resp.as_bytes())?;
            }
        }
        if close {
            return Ok(());
        }
    }
}

fn read_chunked(c: &mut Conn, h: &mut Fnv, count: &mut u64) -> io::Result<()> {
    loop {
        let line = c.read_line()?;
        let line = String::from_utf8_lossy(&line);
        let size_str = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_str, 16)
            .map_err(|_| io::Error::other(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            // Trailers, then the blank line.
            while !c.read_line()?.is_empty() {}
            return Ok(());
        }
        c.body_bytes(size, h, count)?;
        if !c.read_line()?.is_empty() {
            return Err(io::Error::other("chunk data not followed by CRLF"));
        }
    }
}

/// Sizes of successive chunks of a chunked download (varied on purpose).
const CHUNK_SIZES: [usize; 4] = [65536, 1, 4097, 30000];

fn download(
    s: &mut TcpStream,
    conn_no: usize,
    size: u64,
    chunked: bool,
    is_head: bool,
    close: bool,
) -> io::Result<()> {
    let framing = if chunked {
        "transfer-encoding: chunked".to_string()
    } else {
        format!("content-length: {size}")
    };
    let conn = if close { "close" } else { "keep-alive" };
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n{framing}\r\nx-origin-conn: {conn_no}\r\nconnection: {conn}\r\n\r\n"
    );
    s.write_all(head.as_bytes())?;
    if is_head {
        return Ok(());
    }
    let mut off = 0u64;
    let mut i = 0;
    while off < size {
        let n = (CHUNK_SIZES[i % CHUNK_SIZES.len()] as u64).min(size - off) as usize;
        i += 1;
        let data = pattern(off, n);
        if chunked {
            let mut piece = format!("{n:x}\r\n").into_bytes();
            piece.extend_from_slice(&data);
            piece.extend_from_slice(b"\r\n");
            s.write_all(&piece)?;
        } else {
            s.write_all(&data)?;
        }
        off += n as u64;
    }
    if chunked {
        s.write_all(b"0\r\n\r\n")?;
    }
    Ok(())
}

/// Makes the next close of `s` send a RST instead of a FIN.
fn set_linger_zero(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `size_of::<linger>()` bytes from a valid `linger` on a socket
    // we own.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt(SO_LINGER)");
}

/// The echo body, parsed back.
#[derive(Debug)]
pub struct Echo {
    pub method: String,
    pub target: String,
    pub body_len: u64,
    pub body_fnv: String,
    pub conn: usize,
    pub headers: Vec<(String, String)>,
}

impl Echo {
    pub fn parse(body: &[u8]) -> Echo {
        let text = String::from_utf8_lossy(body);
        let mut e = Echo {
            method: String::new(),
            target: String::new(),
            body_len: u64::MAX,
            body_fnv: String::new(),
            conn: 0,
            headers: Vec::new(),
        };
        for line in text.lines() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "method" => e.method = v.to_string(),
                "target" => e.target = v.to_string(),
                "body-length" => e.body_len = v.parse().unwrap_or(u64::MAX),
                "body-fnv" => e.body_fnv = v.to_string(),
                "conn" => e.conn = v.parse().unwrap_or(0),
                "header" => {
                    let (n, hv) = v.split_once(": ").unwrap_or((v, ""));
                    e.headers.push((n.to_string(), hv.to_string()));
                }
                _ => panic!("not an origin echo body: {text:?}"),
            }
        }
        assert!(!e.method.is_empty(), "not an origin echo body: {text:?}");
        e
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}
