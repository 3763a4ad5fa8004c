//! A function's result (the Invoke API response body) → the response the client gets.
//!
//! Payload 1.0 (guide L16004-16046, L40945-40960): a JSON object with `statusCode`, optional
//! `headers` / `multiValueHeaders` (a key in both keeps only the `multiValueHeaders` values),
//! `body` (string) and `isBase64Encoded`. REST APIs refuse any other key (API Gateway answers
//! "Malformed Lambda proxy response"). Payload 2.0 (L40964-41020) adds `cookies` (one
//! `set-cookie` each); valid JSON without `statusCode` is inferred as 200, `application/json`,
//! with the JSON as the body (a JSON string: its text). Anything else is `Malformed`: the
//! pipeline answers 502.
//!
//! `isBase64Encoded: true` bodies are decoded when `decode_base64` says so (HTTP APIs always;
//! REST APIs when the request's `Accept` is one of the `binary_media_types`), else the base64
//! text is the body, as API Gateway sends it.

use super::{base64, PayloadVersion};
use crate::forward::{push_decimal, reason_phrase};
use serde_json::{Map, Value};

/// The client response a result maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub status: u16,
    /// In order; `set-cookie` entries included.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The result is not a valid Lambda proxy response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

const REST_KEYS: [&str; 5] = [
    "statusCode",
    "headers",
    "multiValueHeaders",
    "body",
    "isBase64Encoded",
];

/// Maps the result JSON. `strict`: REST's key check.
pub fn map_result(
    json: &[u8],
    version: PayloadVersion,
    strict: bool,
    decode_base64: bool,
) -> Result<Mapped, Malformed> {
    let value: Value =
        serde_json::from_slice(json).map_err(|_| Malformed("the result is not valid JSON"))?;
    let obj = match (version, value) {
        (_, Value::Object(o)) if o.contains_key("statusCode") => o,
        (PayloadVersion::V2, other) => return Ok(inferred(json, other)),
        (PayloadVersion::V1, _) => return Err(Malformed("the result has no statusCode")),
    };
    if strict && obj.keys().any(|k| !REST_KEYS.contains(&k.as_str())) {
        return Err(Malformed("the result has an unknown key"));
    }
    let status = status_code(&obj["statusCode"])?;
    let mut headers = result_headers(&obj, version)?;
    let body = result_body(&obj, decode_base64)?;
    for (k, v) in &headers {
        check_header(k, v)?;
    }
    headers.retain(|(k, _)| !is_dropped(k));
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("content-type".into(), "application/json".into()));
    }
    Ok(Mapped {
        status,
        headers,
        body,
    })
}

/// `headers`, `multiValueHeaders` (which wins for a name in both) and, for 2.0, `cookies`
/// as `set-cookie` headers, in that order.
fn result_headers(
    obj: &Map<String, Value>,
    version: PayloadVersion,
) -> Result<Vec<(String, String)>, Malformed> {
    let mut headers: Vec<(String, String)> = Vec::new();
    let empty = Map::new();
    let multi = match obj.get("multiValueHeaders") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(Malformed("multiValueHeaders is not an object")),
    };
    match obj.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                if multi.keys().any(|mk| mk.eq_ignore_ascii_case(k)) {
                    continue;
                }
                if let Some(v) = scalar(v)? {
                    headers.push((k.clone(), v));
                }
            }
        }
        Some(_) => return Err(Malformed("headers is not an object")),
    }
    for (k, v) in multi {
        match v {
            Value::Null => {}
            Value::Array(vs) => {
                for v in vs {
                    if let Some(v) = scalar(v)? {
                        headers.push((k.clone(), v));
                    }
                }
            }
            _ => return Err(Malformed("a multiValueHeaders entry is not an array")),
        }
    }
    if version == PayloadVersion::V2 {
        match obj.get("cookies") {
            None | Some(Value::Null) => {}
            Some(Value::Array(cs)) => {
                for c in cs {
                    match c {
                        Value::String(s) => headers.push(("set-cookie".into(), s.clone())),
                        _ => return Err(Malformed("a cookie is not a string")),
                    }
                }
            }
            Some(_) => return Err(Malformed("cookies is not an array")),
        }
    }
    Ok(headers)
}

/// `body` (`isBase64Encoded` bodies decoded when `decode_base64`).
fn result_body(obj: &Map<String, Value>, decode_base64: bool) -> Result<Vec<u8>, Malformed> {
    let encoded = match obj.get("isBase64Encoded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(Malformed("isBase64Encoded is not a boolean")),
    };
    match obj.get("body") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if encoded && decode_base64 => {
            base64::decode(s.as_bytes()).ok_or(Malformed("the body is not valid base64"))
        }
        Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(_) => Err(Malformed("body is not a string")),
    }
}

/// 2.0's inference for valid JSON without `statusCode` (L40964-40990).
fn inferred(json: &[u8], value: Value) -> Mapped {
    let body = match value {
        Value::String(s) => s.into_bytes(),
        _ => json.trim_ascii().to_vec(),
    };
    Mapped {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body,
    }
}

fn status_code(v: &Value) -> Result<u16, Malformed> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n @ 100..=599) => Ok(n as u16),
        _ => Err(Malformed("statusCode is not a status code")),
    }
}

/// A header value: strings as they are, numbers and booleans as written, `null` dropped.
fn scalar(v: &Value) -> Result<Option<String>, Malformed> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        _ => Err(Malformed("a header value is not a string")),
    }
}

fn check_header(name: &str, value: &str) -> Result<(), Malformed> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(Malformed("a header name is not a token"));
    }
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Malformed("a header value has control characters"));
    }
    Ok(())
}

/// Headers the function may not set: framing and hop-by-hop ones (tollgate frames the
/// response itself) and the request id.
fn is_dropped(name: &str) -> bool {
    [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "x-amzn-requestid",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Appends the client response for `m` to `out`: status line, the function's headers,
/// `content-length`, `x-amzn-RequestId`, `connection` as needed; no body for HEAD, 1xx, 204
/// and 304.
pub fn write_response(
    m: &Mapped,
    request_id: &[u8],
    close: bool,
    head_request: bool,
    client_minor_version: u8,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(m.status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(m.status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (k, v) in &m.headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let bodyless = matches!(m.status, 100..=199 | 204 | 304);
    if !bodyless {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, m.body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-amzn-RequestId: ");
    out.extend_from_slice(request_id);
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if client_minor_version == 0 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !bodyless && !head_request {
        out.extend_from_slice(&m.body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PayloadVersion::{V1, V2};

    fn ok(json: &str, v: PayloadVersion, strict: bool, decode: bool) -> Mapped {
        map_result(json.as_bytes(), v, strict, decode).expect("valid result")
    }

    fn header<'m>(m: &'m Mapped, name: &str) -> Vec<&'m str> {
        m.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn v1_fields_and_the_multi_value_rule() {
        let m = ok(
            r#"{"statusCode":201,"headers":{"X-A":"1","x-b":"single","n":7},
                "multiValueHeaders":{"X-B":["m1","m2"]},"body":"made","isBase64Encoded":false}"#,
            V1,
            true,
            false,
        );
        assert_eq!(m.status, 201);
        assert_eq!(m.body, b"made");
        assert_eq!(header(&m, "x-a"), ["1"]);
        // The multi-value entry wins, whatever the case of its name.
        assert_eq!(header(&m, "x-b"), ["m1", "m2"]);
        assert_eq!(header(&m, "n"), ["7"]);
        assert_eq!(header(&m, "content-type"), ["application/json"]);
        // Framing headers are tollgate's.
        let m = ok(
            r#"{"statusCode":200,"headers":{"Content-Length":"99","Transfer-Encoding":"chunked","Content-Type":"text/plain"}}"#,
            V1,
            true,
            false,
        );
        assert_eq!(
            m.headers,
            [("Content-Type".to_string(), "text/plain".to_string())]
        );
        assert!(m.body.is_empty());
    }

    #[test]
    fn v1_refusals() {
        for (json, strict) in [
            (r#"{"body":"x"}"#, false),
            (r#""just a string""#, false),
            (r#"{"statusCode":200,"extra":1}"#, true),
            (r#"{"statusCode":600}"#, false),
            (r#"{"statusCode":"abc"}"#, false),
            (r#"{"statusCode":200,"body":{"a":1}}"#, false),
            (r#"{"statusCode":200,"headers":{"a":{"b":1}}}"#, false),
            (r#"{"statusCode":200,"headers":{"bad name":"v"}}"#, false),
            (r#"{"statusCode":200,"headers":{"a":"v\r\nx: y"}}"#, false),
            (r#"{"statusCode":200,"multiValueHeaders":{"a":"v"}}"#, false),
            (r#"{"statusCode":200,"isBase64Encoded":"yes"}"#, false),
            (
                r#"{"statusCode":200,"body":"!!","isBase64Encoded":true}"#,
                false,
            ),
            ("{", false),
        ] {
            assert!(
                map_result(json.as_bytes(), V1, strict, true).is_err(),
                "{json} should be refused"
            );
        }
        // The HTTP API flavour of 1.0 is not strict about extra keys.
        assert!(map_result(br#"{"statusCode":200,"extra":1}"#, V1, false, true).is_ok());
    }

    #[test]
    fn base64_bodies() {
        let json = r#"{"statusCode":200,"body":"iVBORw==","isBase64Encoded":true}"#;
        assert_eq!(ok(json, V1, true, true).body, [0x89, b'P', b'N', b'G']);
        // Not decoded (REST without a binary Accept): the base64 text is the body.
        assert_eq!(ok(json, V1, true, false).body, b"iVBORw==");
    }

    #[test]
    fn v2_cookies_and_inference() {
        let m = ok(
            r#"{"statusCode":200,"cookies":["a=1","b=2; Path=/"],"headers":{"x":"y"},"body":"c"}"#,
            V2,
            false,
            true,
        );
        assert_eq!(header(&m, "set-cookie"), ["a=1", "b=2; Path=/"]);
        // The guide's two examples.
        let m = ok(r#""Hello from Lambda!""#, V2, false, true);
        assert_eq!(
            (m.status, m.body.as_slice()),
            (200, &b"Hello from Lambda!"[..])
        );
        assert_eq!(header(&m, "content-type"), ["application/json"]);
        let m = ok(r#" { "message": "Hello from Lambda!" } "#, V2, false, true);
        assert_eq!(m.body, br#"{ "message": "Hello from Lambda!" }"#);
        let m = ok("[1,2]", V2, false, true);
        assert_eq!(m.body, b"[1,2]");
        assert!(map_result(b"not json", V2, false, true).is_err());
        assert!(map_result(br#"{"statusCode":200,"cookies":"a=1"}"#, V2, false, true).is_err());
    }

    #[test]
    fn written_response() {
        let m = ok(
            r#"{"statusCode":200,"headers":{"x":"y"},"body":"hello"}"#,
            V1,
            true,
            false,
        );
        let mut out = Vec::new();
        write_response(&m, b"rid", false, false, 1, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 200 OK\r\nx: y\r\ncontent-type: application/json\r\ncontent-length: 5\r\nx-amzn-RequestId: rid\r\n\r\nhello"
        );
        let mut out = Vec::new();
        write_response(&m, b"rid", true, true, 1, &mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.ends_with(
                "content-length: 5\r\nx-amzn-RequestId: rid\r\nconnection: close\r\n\r\n"
            ),
            "{text}"
        );
        let m = ok(r#"{"statusCode":204}"#, V1, true, false);
        let mut out = Vec::new();
        write_response(&m, b"rid", false, false, 0, &mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("content-length"), "{text}");
        assert!(text.ends_with("connection: keep-alive\r\n\r\n"), "{text}");
    }
}
