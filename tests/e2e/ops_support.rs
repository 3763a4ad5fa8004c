//! Support for the operations tests: an admin-listener GET, a Prometheus text-format parser
//! (exposition format 0.0.4: comments, metric names, label sets with escapes, values), waiting
//! for access log lines, and sending signals to the gateway.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// `GET path` on the admin listener: (status, body).
pub fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect admin {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: admin\r\n\r\n").as_bytes())
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
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.parse().ok())
        .expect("admin content-length");
    assert_eq!(body.len(), len, "admin body length");
    (status, body.to_string())
}

/// One sample: metric name, labels, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The parsed exposition: samples, and `# TYPE` per metric family.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    pub types: BTreeMap<String, String>,
}

impl Exposition {
    /// The value of `name` with exactly these labels, if present.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    /// The sum of `name` over every label set.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }
}

/// Parses Prometheus text; panics with the line on any syntax error.
pub fn parse_prometheus(text: &str) -> Exposition {
    let mut e = Exposition::default();
    for (n, line) in text.lines().enumerate() {
        let fail = |why: &str| -> ! { panic!("metrics line {}: {why}: {line:?}", n + 1) };
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut parts = rest.trim_start().splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        fail("unknown type");
                    }
                    if e.types.insert(name.to_string(), kind.to_string()).is_some() {
                        fail("second TYPE for a family");
                    }
                }
                (Some("HELP"), Some(_), _) => {}
                _ => {}
            }
            continue;
        }
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(line.len());
        let name = &line[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            fail("bad metric name");
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let end;
            loop {
                // label name
                let start = match chars.peek() {
                    Some(&(i, '}')) => {
                        end = Some(i + 1);
                        break;
                    }
                    Some(&(i, _)) => i,
                    None => fail("unterminated labels"),
                };
                let mut eq = None;
                for (i, c) in chars.by_ref() {
                    if c == '=' {
                        eq = Some(i);
                        break;
                    }
                    if !(c.is_ascii_alphanumeric() || c == '_') {
                        fail("bad label name");
                    }
                }
                let eq = eq.unwrap_or_else(|| fail("label without ="));
                let key = &r[start..eq];
                if chars.next().map(|(_, c)| c) != Some('"') {
                    fail("label value not quoted");
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            _ => fail("bad escape"),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => value.push(c),
                        None => fail("unterminated label value"),
                    }
                }
                if labels.insert(key.to_string(), value).is_some() {
                    fail("repeated label");
                }
                match chars.next() {
                    Some((_, ',')) => continue,
                    Some((i, '}')) => {
                        end = Some(i + 1);
                        break;
                    }
                    _ => fail("expected , or }"),
                }
            }
            rest = &r[end.unwrap_or_else(|| fail("labels"))..];
        }
        let value_text = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| fail("no space before the value"))
            .split(' ')
            .next()
            .unwrap_or("");
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| fail("bad value")),
        };
        e.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    // Every sample belongs to a declared family (histograms: _bucket, _sum, _count).
    for s in &e.samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suf| {
                s.name
                    .strip_suffix(suf)
                    .filter(|f| e.types.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(&s.name);
        assert!(
            e.types.contains_key(family),
            "sample {} has no TYPE",
            s.name
        );
    }
    e
}

/// The lines of `path` once it has at least `n` (polling, at most `timeout`).
pub fn wait_lines(path: &Path, n: usize, timeout: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n || start.elapsed() > timeout {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `sig` to process `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a child's pid.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig})");
}

#[test]
fn the_parser_reads_the_format() {
    let e = parse_prometheus(
        "# HELP a_total Some help.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"uo\\\\te\\n\"} 3\n\
         # TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 7.5\nh_count 2\n",
    );
    assert_eq!(
        e.get("a_total", &[("x", "1"), ("y", "q\"uo\\te\n")]),
        Some(3.0)
    );
    assert_eq!(e.get("h_sum", &[]), Some(7.5));
    assert_eq!(e.get("h_bucket", &[("le", "+Inf")]), Some(2.0));
    assert_eq!(e.get("a_total", &[("x", "1")]), None);
    let bad = std::panic::catch_unwind(|| parse_prometheus("# TYPE a counter\na{x=1} 2\n"));
    assert!(bad.is_err(), "unquoted label value is refused");
    let bad = std::panic::catch_unwind(|| parse_prometheus("b 2\n"));
    assert!(bad.is_err(), "a sample without TYPE is refused");
}

/// A backend on 127.0.0.1 that answers every request (keep-alive) with `200 slow` after
/// `delay`; each connection thread ends when the peer closes or after 20 s.
pub fn slow_backend(delay: Duration) -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind slow backend");
    let addr = l.local_addr().expect("addr");
    l.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let born = Instant::now();
        while born.elapsed() < Duration::from_secs(20) {
            match l.accept() {
                Ok((s, _)) => {
                    std::thread::spawn(move || serve_slow(s, delay, born));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    addr
}

fn serve_slow(mut s: TcpStream, delay: Duration, born: Instant) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while born.elapsed() < Duration::from_secs(20) {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..i + 4);
            std::thread::sleep(delay);
            if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow")
                .is_err()
            {
                return;
            }
            continue;
        }
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}
