//! The request mix: the TOML scenario format, the one-URL command-line form,
//! validation, and the pre-serialized [`RequestSet`] the hot loop picks from
//! (weighted) without allocating.
//!
//! Scenario file:
//! ```toml
//! # Sent with every request; a request's own headers and then -H win.
//! [headers]
//! x-api-key = "k-123"
//!
//! [[request]]
//! method = "GET"            # default GET
//! path = "/v1/users?page=1"
//! weight = 3                # default 1
//! headers = { authorization = "Bearer t0k" }
//!
//! [[request]]
//! method = "POST"
//! path = "/v1/orders"
//! body_size = 512           # generated body, bytes; default 0
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::Error;

/// Largest generated body, to catch typos before they eat memory.
pub const MAX_BODY_SIZE: usize = 64 << 20;

/// One request of the mix, before serialization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body_size: usize,
    pub weight: u32,
}

impl RequestSpec {
    pub fn get(path: &str) -> Self {
        RequestSpec {
            method: "GET".into(),
            path: path.into(),
            headers: Vec::new(),
            body_size: 0,
            weight: 1,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default, rename = "request")]
    requests: Vec<RequestEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestEntry {
    #[serde(default = "default_method")]
    method: String,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body_size: usize,
    #[serde(default = "default_weight")]
    weight: u32,
}

fn default_method() -> String {
    "GET".into()
}

fn default_weight() -> u32 {
    1
}

/// Parse a scenario's TOML text into request specs (headers merged).
pub fn parse_scenario(text: &str) -> Result<Vec<RequestSpec>, Error> {
    let file: ScenarioFile =
        toml::from_str(text).map_err(|e| Error::new(format!("scenario: {}", e.message())))?;
    if file.requests.is_empty() {
        return Err(Error::new("scenario: no [[request]] entries"));
    }
    let common: Vec<(String, String)> = file.headers.into_iter().collect();
    Ok(file
        .requests
        .into_iter()
        .map(|r| RequestSpec {
            method: r.method,
            path: r.path,
            headers: merge_headers(&common, &r.headers.into_iter().collect::<Vec<_>>()),
            body_size: r.body_size,
            weight: r.weight,
        })
        .collect())
}

/// Read and parse a scenario file.
pub fn load_scenario(path: &Path) -> Result<Vec<RequestSpec>, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::new(format!("scenario {}: {e}", path.display())))?;
    parse_scenario(&text).map_err(|e| Error::new(format!("{}: {e}", path.display())))
}

/// `base` overridden by `over` (header names compare case-insensitively).
pub fn merge_headers(
    base: &[(String, String)],
    over: &[(String, String)],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = base
        .iter()
        .filter(|(n, _)| !over.iter().any(|(o, _)| o.eq_ignore_ascii_case(n)))
        .cloned()
        .collect();
    out.extend(over.iter().cloned());
    out
}

/// Parse a `-H 'name: value'` argument.
pub fn parse_header_arg(arg: &str) -> Result<(String, String), Error> {
    let (name, value) = arg
        .split_once(':')
        .ok_or_else(|| Error::new(format!("-H '{arg}': expected 'name: value'")))?;
    let name = name.trim();
    let value = value.trim();
    check_header(name, value).map_err(|e| Error::new(format!("-H '{arg}': {e}")))?;
    Ok((name.to_string(), value.to_string()))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A request-target must be origin-form (or `*`) of visible ASCII.
pub fn check_path(path: &str) -> Result<(), String> {
    if path != "*" && !path.starts_with('/') {
        return Err(format!("path '{path}' must start with '/'"));
    }
    if !path.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(format!(
            "path '{path}' may only contain visible ASCII (percent-encode the rest)"
        ));
    }
    Ok(())
}

fn check_method(method: &str) -> Result<(), String> {
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(format!("invalid method '{method}'"));
    }
    Ok(())
}

fn check_header(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(format!("invalid header name '{name}'"));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!("header '{name}': value contains CR, LF or NUL"));
    }
    if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
    {
        return Err(format!(
            "header '{name}' is generated from body_size; do not set it"
        ));
    }
    Ok(())
}

/// One serialized request.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub bytes: Box<[u8]>,
    /// A HEAD request: its response has no body whatever its headers say.
    pub head: bool,
}

/// The serialized request mix and its weights.
#[derive(Debug, Clone)]
pub struct RequestSet {
    requests: Vec<Prepared>,
    /// Running sums of weights; `pick` searches it.
    cumulative: Vec<u64>,
    total: u64,
}

fn body_bytes(n: usize) -> impl Iterator<Item = u8> {
    const PATTERN: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    PATTERN.iter().copied().cycle().take(n)
}

/// Serialize one request for HTTP/1.1 keep-alive.
pub fn serialize(spec: &RequestSpec, host_header: &str) -> Result<Prepared, Error> {
    let ctx = |e: String| Error::new(format!("request {} {}: {e}", spec.method, spec.path));
    check_method(&spec.method).map_err(ctx)?;
    check_path(&spec.path).map_err(ctx)?;
    for (n, v) in &spec.headers {
        check_header(n, v).map_err(ctx)?;
    }
    if spec.body_size > MAX_BODY_SIZE {
        return Err(ctx(format!("body_size is larger than {MAX_BODY_SIZE}")));
    }
    if spec.weight == 0 {
        return Err(ctx("weight must be at least 1".into()));
    }
    let mut out = Vec::with_capacity(128 + spec.body_size);
    out.extend_from_slice(spec.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(spec.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !spec
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("host"))
    {
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(host_header.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (n, v) in &spec.headers {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let wants_length = matches!(spec.method.as_str(), "POST" | "PUT" | "PATCH");
    if spec.body_size > 0 || wants_length {
        out.extend_from_slice(format!("Content-Length: {}\r\n", spec.body_size).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend(body_bytes(spec.body_size));
    Ok(Prepared {
        bytes: out.into_boxed_slice(),
        head: spec.method.eq_ignore_ascii_case("HEAD"),
    })
}

impl RequestSet {
    /// Validate and serialize a mix.
    pub fn build(specs: &[RequestSpec], host_header: &str) -> Result<Self, Error> {
        if specs.is_empty() {
            return Err(Error::new("no requests to send"));
        }
        let mut requests = Vec::with_capacity(specs.len());
        let mut cumulative = Vec::with_capacity(specs.len());
        let mut total = 0u64;
        for spec in specs {
            requests.push(serialize(spec, host_header)?);
            total += u64::from(spec.weight);
            cumulative.push(total);
        }
        Ok(RequestSet {
            requests,
            cumulative,
            total,
        })
    }

    pub fn len(&self) -> usize {
        self.requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    pub fn get(&self, i: usize) -> &Prepared {
        &self.requests[i]
    }

    /// Longest serialized request, for sizing write buffers.
    pub fn max_len(&self) -> usize {
        self.requests
            .iter()
            .map(|r| r.bytes.len())
            .max()
            .unwrap_or(0)
    }

    /// Weighted pick; no allocation, one multiply and a short search.
    #[inline]
    pub fn pick(&self, rng: &mut Rng) -> &Prepared {
        if self.requests.len() == 1 {
            return &self.requests[0];
        }
        let r = ((u128::from(rng.next_u64()) * u128::from(self.total)) >> 64) as u64;
        let i = self.cumulative.partition_point(|&c| c <= r);
        &self.requests[i.min(self.requests.len() - 1)]
    }
}

/// xorshift64*: a tiny, fast, per-thread generator for the weighted pick.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_get() {
        let p = serialize(&RequestSpec::get("/x?y=1"), "127.0.0.1:8080").unwrap();
        assert_eq!(
            &*p.bytes,
            b"GET /x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n".as_slice()
        );
        assert!(!p.head);
    }

    #[test]
    fn serializes_post_with_body_and_headers() {
        let spec = RequestSpec {
            method: "POST".into(),
            path: "/o".into(),
            headers: vec![
                ("x-api-key".into(), "k".into()),
                ("Host".into(), "api.test".into()),
            ],
            body_size: 40,
            weight: 1,
        };
        let p = serialize(&spec, "ignored").unwrap();
        let text = String::from_utf8(p.bytes.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(
            head,
            "POST /o HTTP/1.1\r\nx-api-key: k\r\nHost: api.test\r\nContent-Length: 40"
        );
        assert_eq!(body.len(), 40);
        assert!(body.starts_with("abcdefghijklmnopqrstuvwxyz0123456789abcd"));
        let post0 = serialize(
            &RequestSpec {
                method: "PUT".into(),
                ..RequestSpec::get("/")
            },
            "h",
        )
        .unwrap();
        assert!(post0.bytes.ends_with(b"Content-Length: 0\r\n\r\n"));
        let head = serialize(
            &RequestSpec {
                method: "HEAD".into(),
                ..RequestSpec::get("/")
            },
            "h",
        )
        .unwrap();
        assert!(head.head);
    }

    #[test]
    fn rejects_invalid_input() {
        let bad = |f: fn(&mut RequestSpec)| {
            let mut s = RequestSpec::get("/");
            f(&mut s);
            serialize(&s, "h").is_err()
        };
        assert!(bad(|s| s.method = "G T".into()));
        assert!(bad(|s| s.path = "nope".into()));
        assert!(bad(|s| s.path = "/a b".into()));
        assert!(bad(
            |s| s.headers = vec![("x".into(), "a\r\nInjected: 1".into())]
        ));
        assert!(bad(|s| s.headers = vec![("bad name".into(), "v".into())]));
        assert!(bad(
            |s| s.headers = vec![("Content-Length".into(), "5".into())]
        ));
        assert!(bad(|s| s.weight = 0));
        assert!(bad(|s| s.body_size = MAX_BODY_SIZE + 1));
        assert!(parse_header_arg("no-colon").is_err());
        assert_eq!(
            parse_header_arg("Authorization:  Bearer abc ").unwrap(),
            ("Authorization".to_string(), "Bearer abc".to_string())
        );
    }

    #[test]
    fn parses_scenario_file() {
        let specs = parse_scenario(
            r#"
            [headers]
            x-api-key = "k1"
            authorization = "Bearer common"

            [[request]]
            path = "/a"
            weight = 3
            headers = { authorization = "Bearer mine" }

            [[request]]
            method = "POST"
            path = "/b"
            body_size = 16
            "#,
        )
        .unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].method, "GET");
        assert_eq!(specs[0].weight, 3);
        assert_eq!(
            specs[0].headers,
            vec![
                ("x-api-key".to_string(), "k1".to_string()),
                ("authorization".to_string(), "Bearer mine".to_string())
            ]
        );
        assert_eq!(specs[1].body_size, 16);
        assert_eq!(specs[1].weight, 1);
        assert_eq!(specs[1].headers.len(), 2);
    }

    #[test]
    fn scenario_errors_are_reported() {
        assert!(parse_scenario("").is_err());
        assert!(parse_scenario("[[request]]\nmethod = \"GET\"\n").is_err());
        assert!(parse_scenario("[[request]]\npath = \"/\"\nbogus = 1\n").is_err());
        assert!(parse_scenario("[[request]]\npath = \"/\"\nweight = -1\n").is_err());
    }

    #[test]
    fn weighted_pick_follows_weights() {
        let specs = vec![
            RequestSpec {
                weight: 1,
                ..RequestSpec::get("/one")
            },
            RequestSpec {
                weight: 3,
                ..RequestSpec::get("/three")
            },
            RequestSpec {
                weight: 6,
                ..RequestSpec::get("/six")
            },
        ];
        let set = RequestSet::build(&specs, "h").unwrap();
        let mut rng = Rng::new(7);
        let mut counts = [0u32; 3];
        for _ in 0..100_000 {
            let p = set.pick(&mut rng);
            let i = (0..3).find(|&i| std::ptr::eq(set.get(i), p)).unwrap();
            counts[i] += 1;
        }
        for (c, w) in counts.iter().zip([1.0, 3.0, 6.0]) {
            let expect = 100_000.0 * w / 10.0;
            assert!((f64::from(*c) - expect).abs() < expect * 0.05, "{counts:?}");
        }
    }
}
