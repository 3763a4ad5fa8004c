//! A misbehaving backend on 127.0.0.1 for framing tests: each connection reads until a given
//! byte string has arrived (or a bounded wait passes), records every byte it received, writes
//! a scripted response verbatim, then closes cleanly or resets (`SO_LINGER` 0). Every thread stops by itself within a few seconds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a connection ends after the scripted response.
#[derive(Clone, Copy, Debug)]
pub enum End {
    /// FIN.
    Close,
    /// RST.
    Reset,
}

#[derive(Clone)]
pub struct Script {
    /// Respond once the received bytes contain this.
    pub until: Vec<u8>,
    /// Sent verbatim.
    pub response: Vec<u8>,
    pub end: End,
}

pub struct RawOrigin {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// Longest wait for `until`, and longest life of a connection thread.
const WAIT: Duration = Duration::from_secs(5);

impl RawOrigin {
    /// Serves connections with `script`, for at most 30 s.
    pub fn start(script: Script) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind raw origin");
        let addr = listener.local_addr().expect("raw origin address");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let rec = received.clone();
        std::thread::spawn(move || {
            let born = Instant::now();
            while born.elapsed() < Duration::from_secs(30) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let idx = {
                            let mut r = rec.lock().unwrap_or_else(|e| e.into_inner());
                            r.push(Vec::new());
                            r.len() - 1
                        };
                        let (rec, script) = (rec.clone(), script.clone());
                        std::thread::spawn(move || serve(s, &script, &rec, idx));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        RawOrigin { addr, received }
    }

    /// The bytes received on each connection so far.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits (at most 5 s) until some connection received bytes containing `needle`.
    pub fn wait_for(&self, needle: &[u8]) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        loop {
            for r in self.received() {
                if contains(&r, needle) {
                    return r;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "raw origin never received {:?}; got {:?}",
                    String::from_utf8_lossy(needle),
                    self.received()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn serve(mut s: TcpStream, script: &Script, rec: &Mutex<Vec<Vec<u8>>>, idx: usize) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let record = |s: &mut TcpStream, until: Instant, stop_at: Option<&[u8]>| {
        let mut tmp = [0u8; 16384];
        while Instant::now() < until {
            match s.read(&mut tmp) {
                Ok(0) => return false,
                Ok(n) => {
                    let mut r = rec.lock().unwrap_or_else(|e| e.into_inner());
                    r[idx].extend_from_slice(&tmp[..n]);
                    if stop_at.is_some_and(|needle| contains(&r[idx], needle)) {
                        return true;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return false,
            }
        }
        false
    };
    if !record(&mut s, Instant::now() + WAIT, Some(&script.until)) {
        return;
    }
    if s.write_all(&script.response).is_err() {
        return;
    }
    match script.end {
        End::Close => {
            let _ = s.shutdown(std::net::Shutdown::Write);
            record(&mut s, Instant::now() + Duration::from_secs(1), None);
        }
        End::Reset => {
            // Let the gateway read what was sent before the reset arrives.
            std::thread::sleep(Duration::from_millis(200));
            set_linger_zero(&s);
        }
    }
}

fn set_linger_zero(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `size_of::<linger>()` bytes from a valid `linger` on a socket
    // this function borrows.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Reads everything the gateway sends on `s` until it closes or resets, at most `wait`;
/// returns the bytes and whether the end was a clean EOF.
pub fn read_until_closed(s: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + wait;
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let mut out = Vec::new();
    let mut tmp = [0u8; 16384];
    while Instant::now() < deadline {
        match s.read(&mut tmp) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&tmp[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (out, false),
        }
    }
    panic!(
        "connection still open after {wait:?}; got {:?}",
        String::from_utf8_lossy(&out)
    );
}
