//! The Lambda function server of `bench/lambda-cost.sh`: the origin's epoll loop
//! ([`crate::origin::serve_with`]) answering the Lambda Invoke API with fixed JSON, so that
//! tollgate's `aws_proxy` integrations and Lambda authorizers can be measured against a server
//! that costs next to nothing per call.
//!
//! - `POST /2015-03-31/functions/NAME/invocations`, NAME starting with `auth`: an authorizer
//!   output that allows everything (`Allow` `execute-api:Invoke` on `*`, principal `bench`,
//!   one context value).
//! - `POST /2015-03-31/functions/NAME/invocations`, any other NAME: a proxy result
//!   `{"statusCode":200, headers: content-type application/json, "body":"{\"ok\":true}"}`.
//! - any other `GET`: 200 `application/json` with that same body (`{"ok":true}`), for an
//!   `http_proxy` route to "the same function".
//! - anything else: 404.
//!
//! The counts of each kind are written to a stats file (`authorizer=N function=N get=N
//! other=N`), rewritten at most every 100 ms while they change and when the server stops, so
//! a script can check that cached authorizer results were really used.

use crate::origin::{self, Answers};
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The body the function returns and the `GET` route answers with.
pub const BODY: &str = r#"{"ok":true}"#;

/// The authorizer's output: allow everything.
pub const AUTHORIZER_OUTPUT: &str = r#"{"principalId":"bench","policyDocument":{"Version":"2012-10-17","Statement":[{"Action":"execute-api:Invoke","Effect":"Allow","Resource":"*"}]},"context":{"tier":"bench"}}"#;

/// The answer ids.
const AUTHORIZER: usize = 0;
const FUNCTION: usize = 1;
const GET: usize = 2;
const OTHER: usize = 3;

/// What a request is, by method and target.
pub fn classify(method: &str, path: &str) -> usize {
    let path = path.split('?').next().unwrap_or(path);
    if method == "POST" {
        if let Some(name) = path
            .strip_prefix("/2015-03-31/functions/")
            .and_then(|rest| rest.strip_suffix("/invocations"))
        {
            if name.is_empty() || name.contains('/') {
                return OTHER;
            }
            return if name.starts_with("auth") {
                AUTHORIZER
            } else {
                FUNCTION
            };
        }
        return OTHER;
    }
    if method == "GET" {
        GET
    } else {
        OTHER
    }
}

fn json_response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The proxy result of the function: status 200, JSON content type, [`BODY`].
pub fn function_result() -> String {
    serde_json::json!({
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": BODY,
    })
    .to_string()
}

struct Functions {
    responses: [Vec<u8>; 4],
    counts: [u64; 4],
    written: [u64; 4],
    last_write: Instant,
    stats: Option<PathBuf>,
}

impl Functions {
    fn write_stats(&mut self) {
        if let Some(path) = &self.stats {
            let [a, f, g, o] = self.counts;
            let text = format!("authorizer={a} function={f} get={g} other={o}\n");
            // Write then rename, so a reader never sees half a line.
            let tmp = path.with_extension("tmp");
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
        self.written = self.counts;
        self.last_write = Instant::now();
    }
}

impl Answers for Functions {
    fn classify(&mut self, method: &str, path: &str) -> usize {
        let id = classify(method, path);
        self.counts[id] += 1;
        id
    }

    fn response(&self, id: usize) -> &[u8] {
        &self.responses[id.min(OTHER)]
    }

    fn tick(&mut self, stopping: bool) {
        if stopping
            || (self.counts != self.written
                && self.last_write.elapsed() >= Duration::from_millis(100))
        {
            self.write_stats();
        }
    }
}

/// Serves the functions on `127.0.0.1:port` for `max_secs`, counting calls into `stats`.
pub fn serve(port: u16, max_secs: u64, stats: Option<PathBuf>) -> io::Result<()> {
    let mut f = Functions {
        responses: [
            json_response("200 OK", AUTHORIZER_OUTPUT),
            json_response("200 OK", &function_result()),
            json_response("200 OK", BODY),
            json_response("404 Not Found", r#"{"message":"not found"}"#),
        ],
        counts: [0; 4],
        written: [u64::MAX; 4],
        last_write: Instant::now(),
        stats,
    };
    f.write_stats();
    origin::serve_with(port, max_secs, &mut f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn classifies_invocations() {
        assert_eq!(
            classify("POST", "/2015-03-31/functions/auth/invocations"),
            AUTHORIZER
        );
        assert_eq!(
            classify("POST", "/2015-03-31/functions/authz-2/invocations"),
            AUTHORIZER
        );
        assert_eq!(
            classify("POST", "/2015-03-31/functions/pets/invocations"),
            FUNCTION
        );
        assert_eq!(
            classify("POST", "/2015-03-31/functions//invocations"),
            OTHER
        );
        assert_eq!(
            classify("POST", "/2015-03-31/functions/a/b/invocations"),
            OTHER
        );
        assert_eq!(classify("GET", "/fn?x=1"), GET);
        assert_eq!(classify("DELETE", "/fn"), OTHER);
    }

    #[test]
    fn answers_and_counts() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let dir = std::env::temp_dir().join(format!("tollgate-fn-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let stats = dir.join("stats");
        let s2 = stats.clone();
        // The server stops by itself after 2 s and then writes its final counts.
        let server = std::thread::spawn(move || serve(port, 2, Some(s2)));
        let mut s = None;
        for _ in 0..100 {
            if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
                s = Some(c);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut s = s.expect("server listens");
        let event = b"{\"type\":\"TOKEN\"}";
        let req = format!(
            "POST /2015-03-31/functions/auth/invocations HTTP/1.1\r\nhost: a\r\ncontent-length: {}\r\n\r\n",
            event.len()
        );
        s.write_all(req.as_bytes()).expect("write");
        s.write_all(event).expect("write");
        s.write_all(b"POST /2015-03-31/functions/pets/invocations HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\n{}GET /fn HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
            .expect("write");
        let mut all = Vec::new();
        s.read_to_end(&mut all).expect("read");
        let text = String::from_utf8_lossy(&all);
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
        let policy = text.find(AUTHORIZER_OUTPUT).expect("authorizer output");
        let result = text.find(&function_result()).expect("function result");
        assert!(policy < result);
        assert!(text.ends_with(&format!("\r\n\r\n{BODY}")), "{text}");
        let parsed: serde_json::Value =
            serde_json::from_str(&function_result()).expect("result is JSON");
        assert_eq!(parsed["body"], BODY);
        server.join().expect("join").expect("serve");
        let counts = std::fs::read_to_string(&stats).expect("stats");
        assert_eq!(counts, "authorizer=1 function=1 get=1 other=0\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
