//! The benchmark origin: a single-threaded epoll HTTP/1.1 server with pre-built responses,
//! so that the origin costs as little CPU per request as possible and is not what limits a
//! run. Keep-alive and pipelining; bodies by path prefix: `/1k` → 1 KiB, `/64k` → 64 KiB,
//! anything else → 0 bytes. Requests with a `Content-Length` body have it skipped; chunked
//! request bodies are not supported (400 and close). Stops by itself after `max_secs`.
//! The epoll loop is shared with the Lambda function server ([`crate::functions`]) through
//! [`Answers`], which picks a pre-built response per request.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Body sizes served, by path prefix.
pub const BODY_1K: usize = 1024;
pub const BODY_64K: usize = 64 * 1024;

/// The body size the origin answers `path` with.
pub fn body_size_for(path: &[u8]) -> usize {
    if path.starts_with(b"/64k") {
        BODY_64K
    } else if path.starts_with(b"/1k") {
        BODY_1K
    } else {
        0
    }
}

fn response(body: usize) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nserver: origin\r\ncontent-type: application/octet-stream\r\ncontent-length: {body}\r\n\r\n"
    )
    .into_bytes();
    r.extend((0..body).map(|i| b'a' + (i % 26) as u8));
    r
}

const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

struct Conn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    /// Body bytes of the current request still to skip.
    skip: u64,
    out: Vec<u8>,
    out_pos: usize,
    want_write: bool,
    close_after_write: bool,
}

/// What parsing the buffered input found.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Need more bytes.
    Partial,
    /// A complete head of `len` bytes: respond with `body` bytes, skip `content_length`.
    Request {
        len: usize,
        body: usize,
        content_length: u64,
        close: bool,
    },
    Bad,
}

/// Picks a pre-built response for each request (by method and path) and is told when the
/// server loop turns (at least once a second).
pub trait Answers {
    /// The id of the answer to `method path`.
    fn classify(&mut self, method: &str, path: &str) -> usize;
    /// The complete response (head and body) of answer `id`.
    fn response(&self, id: usize) -> &[u8];
    /// Called once per turn of the server loop and when it stops.
    fn tick(&mut self, _stopping: bool) {}
}

/// The origin's answers: the answer id is the body size.
struct BodySizes([Vec<u8>; 3]);

impl Answers for BodySizes {
    fn classify(&mut self, _method: &str, path: &str) -> usize {
        body_size_for(path.as_bytes())
    }
    fn response(&self, id: usize) -> &[u8] {
        match id {
            BODY_64K => &self.0[2],
            BODY_1K => &self.0[1],
            _ => &self.0[0],
        }
    }
}

/// Parses one request head at the start of `buf` (only what the origin needs).
pub fn parse_request(buf: &[u8]) -> Parsed {
    parse_head(buf, &mut |_, path| body_size_for(path.as_bytes()))
}

/// Parses one request head at the start of `buf`; `body` of the result is what `classify`
/// says for its method and path.
pub fn parse_head(buf: &[u8], classify: &mut dyn FnMut(&str, &str) -> usize) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(_) => Parsed::Bad,
        Ok(httparse::Status::Complete(len)) => {
            let mut content_length = 0;
            let mut close = req.version == Some(0);
            for h in req.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    match std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                    {
                        Some(n) => content_length = n,
                        None => return Parsed::Bad,
                    }
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    return Parsed::Bad;
                } else if h.name.eq_ignore_ascii_case("connection") {
                    let v = h.value.to_ascii_lowercase();
                    if v.windows(5).any(|w| w == b"close") {
                        close = true;
                    } else if v.windows(10).any(|w| w == b"keep-alive") {
                        close = false;
                    }
                }
            }
            let body = classify(req.method.unwrap_or("GET"), req.path.unwrap_or("/"));
            Parsed::Request {
                len,
                body,
                content_length,
                close,
            }
        }
    }
}

fn epoll_ctl(ep: i32, op: i32, fd: i32, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: valid epoll fd and event struct.
    if unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

const LISTENER: u64 = u64::MAX;

/// Serves on `127.0.0.1:port` until `max_secs` have passed.
pub fn serve(port: u16, max_secs: u64) -> io::Result<()> {
    let mut answers = BodySizes([response(0), response(BODY_1K), response(BODY_64K)]);
    serve_with(port, max_secs, &mut answers)
}

/// Serves `answers` on `127.0.0.1:port` until `max_secs` have passed.
pub fn serve_with(port: u16, max_secs: u64, answers: &mut dyn Answers) -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    // SAFETY: plain syscall.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(io::Error::last_os_error());
    }
    epoll_ctl(
        ep,
        libc::EPOLL_CTL_ADD,
        listener.as_raw_fd(),
        libc::EPOLLIN as u32,
        LISTENER,
    )?;
    let mut conns = Conns {
        slots: Vec::new(),
        free: Vec::new(),
    };
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let end = Instant::now() + Duration::from_secs(max_secs);
    let mut scratch = vec![0u8; 64 * 1024];
    while Instant::now() < end {
        answers.tick(false);
        // SAFETY: the events buffer is valid for its length.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 1000) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            let token = ev.u64;
            if token == LISTENER {
                conns.accept_all(ep, &listener);
            } else {
                conns.ready(ep, token as usize, ev.events, &mut scratch, answers);
            }
        }
    }
    answers.tick(true);
    // SAFETY: closing our own epoll fd.
    unsafe { libc::close(ep) };
    Ok(())
}

/// The origin's connections, indexed by their epoll token, and the free slots.
struct Conns {
    slots: Vec<Option<Conn>>,
    free: Vec<usize>,
}

impl Conns {
    /// Accepts every pending connection and registers it with `ep`.
    fn accept_all(&mut self, ep: i32, listener: &TcpListener) {
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(true);
                    let _ = stream.set_nodelay(true);
                    let idx = self.free.pop().unwrap_or_else(|| {
                        self.slots.push(None);
                        self.slots.len() - 1
                    });
                    let fd = stream.as_raw_fd();
                    self.slots[idx] = Some(Conn {
                        stream,
                        inbuf: Vec::with_capacity(4096),
                        skip: 0,
                        out: Vec::new(),
                        out_pos: 0,
                        want_write: false,
                        close_after_write: false,
                    });
                    if epoll_ctl(
                        ep,
                        libc::EPOLL_CTL_ADD,
                        fd,
                        (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
                        idx as u64,
                    )
                    .is_err()
                    {
                        self.slots[idx] = None;
                        self.free.push(idx);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
    }

    /// Readiness `events` on connection `idx`: handles it, then closes it or updates its
    /// interest in writability.
    fn ready(
        &mut self,
        ep: i32,
        idx: usize,
        events: u32,
        scratch: &mut [u8],
        answers: &mut dyn Answers,
    ) {
        let Some(Some(conn)) = self.slots.get_mut(idx) else {
            return;
        };
        let keep = handle(conn, events, scratch, answers);
        let fd = conn.stream.as_raw_fd();
        if !keep {
            let _ = epoll_ctl(ep, libc::EPOLL_CTL_DEL, fd, 0, 0);
            self.slots[idx] = None;
            self.free.push(idx);
            return;
        }
        let pending = conn.out_pos < conn.out.len();
        if pending != conn.want_write {
            conn.want_write = pending;
            let mut events = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
            if pending {
                events |= libc::EPOLLOUT as u32;
            }
            let _ = epoll_ctl(ep, libc::EPOLL_CTL_MOD, fd, events, idx as u64);
        }
    }
}

/// Handles readiness on one connection; false: close it.
/// `answers`: the pre-built responses.
fn handle(conn: &mut Conn, events: u32, scratch: &mut [u8], answers: &mut dyn Answers) -> bool {
    if events & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
        loop {
            match conn.stream.read(scratch) {
                Ok(0) => return false,
                Ok(n) => {
                    let mut data = &scratch[..n];
                    if conn.skip > 0 {
                        let s = (conn.skip as usize).min(data.len());
                        conn.skip -= s as u64;
                        data = &data[s..];
                    }
                    conn.inbuf.extend_from_slice(data);
                    if n < scratch.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        // Answer every complete request buffered (pipelining).
        let mut consumed = 0;
        while conn.skip == 0 && !conn.close_after_write {
            match parse_head(&conn.inbuf[consumed..], &mut |m, p| answers.classify(m, p)) {
                Parsed::Partial => break,
                Parsed::Bad => {
                    conn.out.extend_from_slice(BAD_REQUEST);
                    conn.close_after_write = true;
                }
                Parsed::Request {
                    len,
                    body,
                    content_length,
                    close,
                } => {
                    consumed += len;
                    conn.out.extend_from_slice(answers.response(body));
                    let avail = (conn.inbuf.len() - consumed) as u64;
                    let s = avail.min(content_length);
                    consumed += s as usize;
                    conn.skip = content_length - s;
                    if close {
                        conn.close_after_write = true;
                    }
                }
            }
        }
        conn.inbuf.drain(..consumed);
        if conn.inbuf.len() > 64 * 1024 {
            return false;
        }
    }
    // Write what is pending.
    while conn.out_pos < conn.out.len() {
        match conn.stream.write(&conn.out[conn.out_pos..]) {
            Ok(0) => return false,
            Ok(n) => conn.out_pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    if conn.out_pos == conn.out.len() {
        conn.out.clear();
        conn.out_pos = 0;
        if conn.close_after_write {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_origin_needs() {
        assert_eq!(
            parse_request(b"GET /1k HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Partial
        );
        assert_eq!(
            parse_request(b"GET /64k/x HTTP/1.1\r\nHost: x\r\n\r\n"),
            Parsed::Request {
                len: 32,
                body: BODY_64K,
                content_length: 0,
                close: false
            }
        );
        assert_eq!(
            parse_request(b"POST /0 HTTP/1.0\r\ncontent-length: 3\r\n\r\nabc"),
            Parsed::Request {
                len: 39,
                body: 0,
                content_length: 3,
                close: true
            }
        );
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"),
            Parsed::Bad
        );
        assert_eq!(body_size_for(b"/svc1/items/2"), 0);
        assert_eq!(body_size_for(b"/1k"), BODY_1K);
    }

    #[test]
    fn serves_keep_alive_and_pipelined() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        // The origin stops by itself after its time limit; the test does not wait for it.
        std::thread::spawn(move || serve(port, 3));
        let mut s = None;
        for _ in 0..100 {
            if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
                s = Some(c);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut s = s.expect("origin listens");
        s.write_all(b"GET /1k HTTP/1.1\r\nhost: a\r\n\r\nGET /0 HTTP/1.1\r\nhost: a\r\n\r\nGET /64k HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
            .expect("write");
        let mut all = Vec::new();
        s.read_to_end(&mut all).expect("read");
        let text = String::from_utf8_lossy(&all);
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3);
        assert_eq!(
            all.len(),
            response(1024).len() + response(0).len() + response(65536).len()
        );
    }
}
