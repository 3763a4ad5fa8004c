//! A local Lambda function server for the e2e tests, speaking the Invoke API on 127.0.0.1:
//! `POST /2015-03-31/functions/{name}/invocations` with the event as the JSON body; the
//! function's reply (chosen by the test's handler) as the response, `X-Amz-Function-Error` on
//! a function error. Other requests (a JWKS `GET`) reach the handler named by their target. Every invocation is recorded (function name, parsed event). Connections
//! are kept alive; every read has a timeout and the server stops on drop.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What a function answers.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The Invoke API status (200 when the function ran).
    pub status: u16,
    /// `X-Amz-Function-Error` value (`Unhandled`), if the function failed.
    pub function_error: Option<&'static str>,
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Reply {
    /// The function returned `json` (any JSON text).
    pub fn json(json: &str) -> Reply {
        Reply {
            status: 200,
            function_error: None,
            body: json.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }

    pub fn value(v: Value) -> Reply {
        Reply::json(&v.to_string())
    }

    /// The function raised an error with this message.
    pub fn error(message: &str) -> Reply {
        Reply {
            status: 200,
            function_error: Some("Unhandled"),
            body: serde_json::json!({"errorMessage": message, "errorType": "Error"})
                .to_string()
                .into_bytes(),
            delay: Duration::ZERO,
        }
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Handler = dyn Fn(&str, &Value) -> Reply + Send + Sync;

#[derive(Clone, Debug)]
pub struct Invocation {
    pub function: String,
    pub event: Value,
}

struct Shared {
    handler: Box<Handler>,
    calls: Mutex<Vec<Invocation>>,
    stop: AtomicBool,
}

pub struct FunctionServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FunctionServer {
    pub fn start(
        handler: impl Fn(&str, &Value) -> Reply + Send + Sync + 'static,
    ) -> FunctionServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind function server");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            calls: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if sh.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let sh = sh.clone();
                std::thread::spawn(move || serve(stream, &sh));
            }
        });
        FunctionServer {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// The Invoke API URI of function `name`.
    pub fn uri(&self, name: &str) -> String {
        format!(
            "http://{}/2015-03-31/functions/{name}/invocations",
            self.addr
        )
    }

    pub fn calls(&self) -> Vec<Invocation> {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Invocations of `function` so far.
    pub fn count(&self, function: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.function == function)
            .count()
    }

    /// The last event `function` received.
    pub fn last(&self, function: &str) -> Value {
        self.calls()
            .into_iter()
            .rev()
            .find(|c| c.function == function)
            .map(|c| c.event)
            .unwrap_or_else(|| panic!("{function} was not invoked"))
    }
}

impl Drop for FunctionServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Serves requests on one connection until it closes, errs or idles for 10 s.
fn serve(mut s: TcpStream, sh: &Shared) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16384];
    loop {
        let end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < end + len {
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        let body = buf[end..end + len].to_vec();
        buf.drain(..end + len);
        let target = head.split(' ').nth(1).unwrap_or("").to_string();
        // An Invoke API call is named by its function; any other request by its target.
        let function = target
            .strip_prefix("/2015-03-31/functions/")
            .and_then(|r| r.strip_suffix("/invocations"))
            .unwrap_or(&target)
            .to_string();
        let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        sh.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Invocation {
                function: function.clone(),
                event: event.clone(),
            });
        let reply = (sh.handler)(&function, &event);
        if !reply.delay.is_zero() {
            std::thread::sleep(reply.delay);
        }
        let mut out = format!(
            "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-amz-executed-version: $LATEST\r\n",
            reply.status,
            reply.body.len()
        );
        if let Some(fe) = reply.function_error {
            out.push_str(&format!("x-amz-function-error: {fe}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&reply.body);
        if s.write_all(&bytes).is_err() {
            return;
        }
    }
}
