//! A raw HTTP/1.1 client over one TCP connection: writes exactly the bytes a test gives it and
//! parses what comes back (status line, headers, Content-Length / chunked / until-close
//! bodies, interim 1xx responses as responses of their own). Pipelining is just several
//! requests in one `send` followed by as many `read_response` calls. Every read has a 10 s
//! timeout, so a misbehaving gateway fails a test instead of hanging it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct Response {
    /// Minor version of the status line (`HTTP/1.x`).
    pub minor_version: u8,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was delimited by the connection closing.
    pub until_close: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `Connection: close` was sent.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
    }

    /// The x-amzn-RequestId header (panics if missing).
    pub fn request_id(&self) -> String {
        self.header("x-amzn-requestid")
            .unwrap_or_else(|| panic!("no x-amzn-RequestId in {self:?}"))
            .to_string()
    }

    /// Asserts an API Gateway style error: `status`, JSON body exactly `body`, an
    /// `x-amzn-ErrorType` header and an `x-amzn-RequestId`.
    pub fn assert_gateway_error(&self, status: u16, body: &str) {
        assert_eq!(
            self.status,
            status,
            "status; body {:?}, headers {:?}",
            self.body_str(),
            self.headers
        );
        assert_eq!(
            self.body_str(),
            body,
            "error body; headers {:?}",
            self.headers
        );
        assert!(
            self.has_header("x-amzn-errortype"),
            "gateway error without x-amzn-ErrorType: {self:?}"
        );
        assert!(
            self.has_header("x-amzn-requestid"),
            "gateway error without x-amzn-RequestId: {self:?}"
        );
    }
}

/// How a connection ended (or didn't) while we waited for it to close.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// Orderly close (FIN).
    Eof,
    /// Reset (RST) or another socket error.
    Reset,
    /// The peer sent bytes instead.
    Data(Vec<u8>),
    /// Still open after the wait.
    Open,
}

pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("client write failed: {e}"));
    }

    /// Sends `bytes` and reads one response (to a non-HEAD request).
    pub fn request(&mut self, bytes: &[u8]) -> Response {
        self.send(bytes);
        self.read_response()
    }

    /// Reads one response to a non-HEAD request; panics on I/O or parse errors.
    pub fn read_response(&mut self) -> Response {
        self.try_read_response(false)
            .unwrap_or_else(|e| panic!("reading a response failed: {e}"))
    }

    /// Reads one response to a HEAD request (no body, whatever the headers say).
    pub fn read_head_response(&mut self) -> Response {
        self.try_read_response(true)
            .unwrap_or_else(|e| panic!("reading a HEAD response failed: {e}"))
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 64 * 1024];
        let n = self.stream.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    fn fill_or_eof(&mut self, what: &str) -> io::Result<()> {
        if self.fill()? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed while reading {what} (have {:?})",
                    String::from_utf8_lossy(&self.buf[..self.buf.len().min(300)])
                ),
            ));
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        self.buf.drain(..n).collect()
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.take(p + 2);
                return Ok(line[..p].to_vec());
            }
            self.fill_or_eof("a chunk line")?;
        }
    }

    /// Reads one response; `head_request`: it answers a HEAD (no body follows).
    pub fn try_read_response(&mut self, head_request: bool) -> io::Result<Response> {
        let head_len = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            self.fill_or_eof("a response head")?;
        };
        let head = self.take(head_len);
        let mut hbuf = [httparse::EMPTY_HEADER; 128];
        let mut r = httparse::Response::new(&mut hbuf);
        match r.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            other => {
                return Err(io::Error::other(format!(
                    "unparsable response head ({other:?}): {:?}",
                    String::from_utf8_lossy(&head)
                )))
            }
        }
        let mut resp = Response {
            minor_version: r.version.unwrap_or(1),
            status: r.code.unwrap_or(0),
            reason: r.reason.unwrap_or("").to_string(),
            headers: r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            body: Vec::new(),
            until_close: false,
        };
        let no_body =
            head_request || (100..200).contains(&resp.status) || matches!(resp.status, 204 | 304);
        if no_body {
            return Ok(resp);
        }
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            loop {
                let line = self.read_line()?;
                let line = String::from_utf8_lossy(&line).into_owned();
                let size =
                    usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| io::Error::other(format!("bad chunk size line {line:?}")))?;
                if size == 0 {
                    while !self.read_line()?.is_empty() {}
                    break;
                }
                while self.buf.len() < size + 2 {
                    self.fill_or_eof("chunk data")?;
                }
                let data = self.take(size);
                resp.body.extend_from_slice(&data);
                if self.take(2) != b"\r\n" {
                    return Err(io::Error::other("chunk data not followed by CRLF"));
                }
            }
        } else if let Some(cl) = resp.header("content-length") {
            let n: usize = cl
                .trim()
                .parse()
                .map_err(|_| io::Error::other(format!("bad content-length {cl:?}")))?;
            while self.buf.len() < n {
                self.fill_or_eof("a content-length body")?;
            }
            resp.body = self.take(n);
        } else {
            // Delimited by close.
            while self.fill()? > 0 {}
            resp.body = std::mem::take(&mut self.buf);
            resp.until_close = true;
        }
        Ok(resp)
    }

    /// Waits up to `timeout` for the peer to close the connection (any unread buffered or
    /// arriving bytes count as `Data`).
    pub fn wait_closed(&mut self, timeout: Duration) -> Closed {
        if !self.buf.is_empty() {
            return Closed::Data(std::mem::take(&mut self.buf));
        }
        let deadline = Instant::now() + timeout;
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Closed::Open;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut tmp = [0u8; 4096];
            match self.stream.read(&mut tmp) {
                Ok(0) => break Closed::Eof,
                Ok(n) => break Closed::Data(tmp[..n].to_vec()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break Closed::Reset,
            }
        };
        let _ = self.stream.set_read_timeout(Some(IO_TIMEOUT));
        result
    }

    /// Asserts the gateway closes this connection within 2 s.
    pub fn assert_closed(&mut self, context: &str) {
        match self.wait_closed(Duration::from_secs(2)) {
            Closed::Eof | Closed::Reset => {}
            other => panic!("{context}: expected the connection to be closed, got {other:?}"),
        }
    }
}

/// A request with `Host: gw.test`, the given extra headers and body (Content-Length is added
/// when there is a body or the method usually has one).
pub fn req(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: gw.test\r\n").into_bytes();
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// `GET target` with no extra headers.
pub fn get(target: &str) -> Vec<u8> {
    req("GET", target, &[], b"")
}

/// Chunk-encodes `body` in pieces of the given sizes (cycled), with a final `0` chunk.
pub fn chunk_encode(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 8 + 64);
    let mut off = 0;
    let mut i = 0;
    while off < body.len() {
        let n = sizes[i % sizes.len()].min(body.len() - off);
        i += 1;
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&body[off..off + n]);
        out.extend_from_slice(b"\r\n");
        off += n;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}
