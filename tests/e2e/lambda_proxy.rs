//! `aws_proxy` integrations end to end: a REST API (payload 1.0) and an HTTP API (payload 2.0
//! and 1.0) in front of the local function server. The events the function receives are
//! checked field by field against the guide's examples (L15885-15986, L40783-40845), and every
//! result-mapping case is checked on what the client gets (L16004-16046, L40964-41020).

use crate::client::{req, Client, Response};
use crate::harness::{free_port, Gateway, Server};
use crate::lambda_server::{FunctionServer, Reply};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0xff, 0x10, 0x80,
];
const PNG_B64: &str = "iVBORw0KGgoA/xCA";

/// The `reply` function: answers by the route's `{case}` path parameter.
fn reply(case: &str) -> Reply {
    match case {
        "full" => Reply::value(json!({
            "statusCode": 201,
            "headers": {"x-a": "1", "x-b": "single", "Content-Length": "999"},
            "multiValueHeaders": {"x-b": ["m1", "m2"]},
            "body": "made"
        })),
        "plain" => Reply::value(json!({"statusCode": 404, "body": "nothing"})),
        "string_status" => Reply::value(json!({"statusCode": "202"})),
        "binary" => Reply::value(json!({
            "statusCode": 200,
            "headers": {"content-type": "image/png"},
            "body": PNG_B64,
            "isBase64Encoded": true
        })),
        "cookies" => Reply::value(json!({
            "statusCode": 200,
            "cookies": ["a=1", "b=2; Path=/"],
            "headers": {"content-type": "text/plain"},
            "body": "with cookies"
        })),
        "infer_string" => Reply::json(r#""Hello from Lambda!""#),
        "infer_object" => Reply::json(r#"{ "message": "Hello from Lambda!" }"#),
        "unknown_key" => Reply::value(json!({"statusCode": 200, "body": "x", "extra": 1})),
        "no_status" => Reply::value(json!({"body": "x"})),
        "not_json" => Reply::json("this is not json"),
        "bad_header" => Reply::value(json!({"statusCode": 200, "headers": {"x-a": "a\r\nx-b: b"}})),
        "bad_status" => Reply::value(json!({"statusCode": 99})),
        "error" => Reply::error("boom"),
        "throttled" => Reply {
            status: 429,
            function_error: None,
            body: br#"{"Type":"User","message":"Rate Exceeded."}"#.to_vec(),
            delay: Duration::ZERO,
        },
        "slow" => Reply::value(json!({"statusCode": 200, "body": "late"}))
            .after(Duration::from_millis(1500)),
        _ => Reply::value(json!({"statusCode": 500, "body": "unknown case"})),
    }
}

fn functions() -> FunctionServer {
    FunctionServer::start(|name, event| match name {
        "reply" => reply(event["pathParameters"]["case"].as_str().unwrap_or("")),
        _ => Reply::value(json!({"statusCode": 200, "body": "ok"})),
    })
}

fn apis(fs: &FunctionServer) -> String {
    let dead = format!(
        "http://127.0.0.1:{}/2015-03-31/functions/gone/invocations",
        free_port()
    );
    format!(
        r#"[[apis]]
name = "pets"
protocol = "rest"
binary_media_types = ["image/png"]
  [[apis.stages]]
  name = "prod"
  variables = {{ who = "tests" }}
  [[apis.routes]]
  key = "GET /pets/{{id}}"
  integration = {{ type = "aws_proxy", uri = "{echo}" }}
  [[apis.routes]]
  key = "GET /plain"
  integration = {{ type = "aws_proxy", uri = "{echo}", payload_format_version = "1.0" }}
  [[apis.routes]]
  key = "POST /upload"
  integration = {{ type = "aws_proxy", uri = "{echo}" }}
  [[apis.routes]]
  key = "GET /reply/{{case}}"
  integration = {{ type = "aws_proxy", uri = "{reply}", timeout_ms = 500 }}
  [[apis.routes]]
  key = "GET /gone"
  integration = {{ type = "aws_proxy", uri = "{dead}" }}

[[apis]]
name = "hpets"
protocol = "http"
hosts = ["h.test"]
  [[apis.stages]]
  name = "$default"
  [[apis.routes]]
  key = "GET /pets/{{id}}"
  integration = {{ type = "aws_proxy", uri = "{echo}", payload_format_version = "2.0" }}
  [[apis.routes]]
  key = "POST /upload"
  integration = {{ type = "aws_proxy", uri = "{echo}" }}
  [[apis.routes]]
  key = "GET /v1/{{id}}"
  integration = {{ type = "aws_proxy", uri = "{echo}", payload_format_version = "1.0" }}
  [[apis.routes]]
  key = "GET /reply/{{case}}"
  integration = {{ type = "aws_proxy", uri = "{reply}", timeout_ms = 500 }}
"#,
        echo = fs.uri("echo"),
        reply = fs.uri("reply"),
    )
}

fn start() -> (FunctionServer, Gateway) {
    let fs = functions();
    let gw = Gateway::start(&Server::default(), &apis(&fs));
    (fs, gw)
}

fn http_get(target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("GET {target} HTTP/1.1\r\nHost: h.test\r\n").into_bytes();
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `dd/Mon/yyyy:HH:MM:SS +0000`.
fn is_clf_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 26
        && b[2] == b'/'
        && b[6] == b'/'
        && b[11] == b':'
        && s.ends_with(" +0000")
        && [0, 1, 7, 8, 9, 10, 12, 13, 15, 16, 18, 19]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
}

#[test]
fn payload_1_0_event_matches_the_guide() {
    let (fs, gw) = start();
    let mut c = Client::connect(gw.addr);
    let before = now_ms();
    let r = c.request(&req(
        "GET",
        "/prod/pets/42?parameter1=value1&parameter1=value2&parameter2=a%20b",
        &[
            ("header1", "value1"),
            ("header2", "value1"),
            ("header2", "value2"),
            ("User-Agent", "agent/1"),
        ],
        b"",
    ));
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(r.body_str(), "ok");
    let e = fs.last("echo");
    assert_eq!(e["resource"], "/pets/{id}");
    assert_eq!(e["path"], "/pets/42");
    assert_eq!(e["httpMethod"], "GET");
    // Single-value maps hold the last value, the multi-value maps every value in order.
    assert_eq!(e["headers"]["header1"], "value1");
    assert_eq!(e["headers"]["header2"], "value2");
    assert_eq!(e["headers"]["Host"], "gw.test");
    assert_eq!(e["multiValueHeaders"]["header1"], json!(["value1"]));
    assert_eq!(
        e["multiValueHeaders"]["header2"],
        json!(["value1", "value2"])
    );
    assert_eq!(e["queryStringParameters"]["parameter1"], "value2");
    assert_eq!(e["queryStringParameters"]["parameter2"], "a b");
    assert_eq!(
        e["multiValueQueryStringParameters"],
        json!({"parameter1": ["value1", "value2"], "parameter2": ["a b"]})
    );
    assert_eq!(e["pathParameters"], json!({"id": "42"}));
    assert_eq!(e["stageVariables"], json!({"who": "tests"}));
    assert_eq!(e["body"], Value::Null);
    assert_eq!(e["isBase64Encoded"], false);
    assert!(e.get("version").is_none(), "REST events have no version");
    let rc = &e["requestContext"];
    assert_eq!(rc["accountId"], "000000000000");
    assert_eq!(rc["apiId"], "pets");
    assert_eq!(rc["authorizer"], json!({"claims": null, "scopes": null}));
    assert_eq!(rc["domainName"], "gw.test");
    assert_eq!(rc["domainPrefix"], "gw");
    assert_eq!(rc["httpMethod"], "GET");
    assert_eq!(rc["path"], "/prod/pets/42");
    assert_eq!(rc["protocol"], "HTTP/1.1");
    assert_eq!(rc["requestId"], r.request_id().as_str());
    assert_eq!(rc["extendedRequestId"], r.request_id().as_str());
    assert_eq!(rc["resourceId"], Value::Null);
    assert_eq!(rc["resourcePath"], "/pets/{id}");
    assert_eq!(rc["stage"], "prod");
    assert_eq!(rc["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(rc["identity"]["userAgent"], "agent/1");
    for k in [
        "accessKey",
        "accountId",
        "caller",
        "cognitoIdentityId",
        "user",
        "userArn",
    ] {
        assert_eq!(rc["identity"][k], Value::Null, "identity.{k}");
    }
    let t = rc["requestTimeEpoch"].as_u64().expect("requestTimeEpoch");
    assert!(
        t >= before.saturating_sub(1000) && t <= now_ms() + 1000,
        "{t}"
    );
    assert!(
        is_clf_time(rc["requestTime"].as_str().unwrap_or("")),
        "{}",
        rc["requestTime"]
    );

    // No query, no path parameters: null maps, as in the guide.
    let r = c.request(&req("GET", "/prod/plain", &[], b""));
    assert_eq!(r.status, 200);
    let e = fs.last("echo");
    assert_eq!(e["queryStringParameters"], Value::Null);
    assert_eq!(e["multiValueQueryStringParameters"], Value::Null);
    assert_eq!(e["pathParameters"], Value::Null);
    assert_eq!(e["resource"], "/plain");
}

#[test]
fn payload_2_0_event_matches_the_guide() {
    let (fs, gw) = start();
    let mut c = Client::connect(gw.addr);
    let r = c.request(&http_get(
        "/pets/7?parameter1=value1&parameter1=value2&parameter2=value",
        &[
            ("Header1", "value1"),
            ("header2", "value1"),
            ("Header2", "value2"),
            ("Cookie", "cookie1; cookie2"),
            ("User-Agent", "agent"),
        ],
    ));
    assert_eq!(r.status, 200, "{}", r.body_str());
    let e = fs.last("echo");
    assert_eq!(e["version"], "2.0");
    assert_eq!(e["routeKey"], "GET /pets/{id}");
    assert_eq!(e["rawPath"], "/pets/7");
    assert_eq!(
        e["rawQueryString"],
        "parameter1=value1&parameter1=value2&parameter2=value"
    );
    assert_eq!(e["cookies"], json!(["cookie1", "cookie2"]));
    // Lowercased names, duplicates joined with commas, cookies not repeated in headers.
    assert_eq!(e["headers"]["header1"], "value1");
    assert_eq!(e["headers"]["header2"], "value1,value2");
    assert_eq!(e["headers"]["host"], "h.test");
    assert!(e["headers"].get("cookie").is_none(), "{}", e["headers"]);
    assert!(e["headers"].get("Header1").is_none());
    assert_eq!(
        e["queryStringParameters"],
        json!({"parameter1": "value1,value2", "parameter2": "value"})
    );
    assert!(e.get("multiValueHeaders").is_none());
    assert!(e.get("multiValueQueryStringParameters").is_none());
    assert_eq!(e["pathParameters"], json!({"id": "7"}));
    assert!(
        e.get("stageVariables").is_none(),
        "no stage variables: left out"
    );
    assert_eq!(e["body"], Value::Null);
    assert_eq!(e["isBase64Encoded"], false);
    let rc = &e["requestContext"];
    assert_eq!(rc["accountId"], "000000000000");
    assert_eq!(rc["apiId"], "hpets");
    assert_eq!(rc["domainName"], "h.test");
    assert_eq!(rc["domainPrefix"], "h");
    assert_eq!(
        rc["http"],
        json!({"method": "GET", "path": "/pets/7", "protocol": "HTTP/1.1",
               "sourceIp": "127.0.0.1", "userAgent": "agent"})
    );
    assert_eq!(rc["requestId"], r.request_id().as_str());
    assert_eq!(rc["routeKey"], "GET /pets/{id}");
    assert_eq!(rc["stage"], "$default");
    assert!(
        is_clf_time(rc["time"].as_str().unwrap_or("")),
        "{}",
        rc["time"]
    );
    assert!(rc["timeEpoch"]
        .as_u64()
        .is_some_and(|t| t.abs_diff(now_ms()) < 10_000));
    assert!(rc.get("authorizer").is_none());

    // An HTTP API route on payload 1.0 gets the 1.0 event with `version`.
    let r = c.request(&http_get("/v1/9", &[]));
    assert_eq!(r.status, 200);
    let e = fs.last("echo");
    assert_eq!(e["version"], "1.0");
    assert_eq!(e["resource"], "/v1/{id}");
    assert_eq!(e["pathParameters"], json!({"id": "9"}));
    assert_eq!(e["requestContext"]["stage"], "$default");
}

#[test]
fn request_bodies_text_binary_and_chunked() {
    let (fs, gw) = start();
    let mut c = Client::connect(gw.addr);
    let r = c.request(&req(
        "POST",
        "/prod/upload",
        &[("Content-Type", "text/plain")],
        b"Hello from the client",
    ));
    assert_eq!(r.status, 200, "{}", r.body_str());
    let e = fs.last("echo");
    assert_eq!(e["body"], "Hello from the client");
    assert_eq!(e["isBase64Encoded"], false);
    // A binary media type of the API travels base64-encoded.
    let r = c.request(&req(
        "POST",
        "/prod/upload",
        &[("Content-Type", "image/png")],
        PNG,
    ));
    assert_eq!(r.status, 200);
    let e = fs.last("echo");
    assert_eq!(e["body"], PNG_B64);
    assert_eq!(e["isBase64Encoded"], true);
    // A chunked body is read whole first.
    let mut raw =
        b"POST /prod/upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    raw.extend_from_slice(&crate::client::chunk_encode(b"chunky body text", &[3, 5]));
    let r = c.request(&raw);
    assert_eq!(r.status, 200);
    assert_eq!(fs.last("echo")["body"], "chunky body text");
    // HTTP API, payload 2.0: same rules.
    let mut raw = b"POST /upload HTTP/1.1\r\nHost: h.test\r\nContent-Type: image/png\r\n".to_vec();
    raw.extend_from_slice(format!("Content-Length: {}\r\n\r\n", PNG.len()).as_bytes());
    raw.extend_from_slice(PNG);
    let r = c.request(&raw);
    assert_eq!(r.status, 200);
    let e = fs.last("echo");
    assert_eq!(e["version"], "2.0");
    assert_eq!(e["body"], PNG_B64);
    assert_eq!(e["isBase64Encoded"], true);
    // The connection carried every request.
    let r = c.request(&req("GET", "/prod/plain", &[], b""));
    assert_eq!(r.status, 200);
    assert!(!r.closes());
}

fn rest(c: &mut Client, case: &str, headers: &[(&str, &str)]) -> Response {
    c.request(&req("GET", &format!("/prod/reply/{case}"), headers, b""))
}

fn http(c: &mut Client, case: &str) -> Response {
    c.request(&http_get(&format!("/reply/{case}"), &[]))
}

fn values<'r>(r: &'r Response, name: &str) -> Vec<&'r str> {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn results_map_to_responses() {
    let (_fs, gw) = start();
    let mut c = Client::connect(gw.addr);
    // headers + multiValueHeaders: the multi-value entry wins; framing is tollgate's.
    let r = rest(&mut c, "full", &[]);
    assert_eq!(r.status, 201);
    assert_eq!(r.body_str(), "made");
    assert_eq!(r.header("x-a"), Some("1"));
    assert_eq!(values(&r, "x-b"), ["m1", "m2"]);
    assert_eq!(r.header("content-length"), Some("4"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.has_header("x-amzn-requestid"));
    let r = rest(&mut c, "plain", &[]);
    assert_eq!((r.status, r.body_str().as_str()), (404, "nothing"));
    let r = rest(&mut c, "string_status", &[]);
    assert_eq!((r.status, r.body.len()), (202, 0));

    // REST: a base64 result is decoded only for an Accept of a binary media type.
    let r = rest(&mut c, "binary", &[("Accept", "image/png")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, PNG);
    assert_eq!(r.header("content-type"), Some("image/png"));
    let r = rest(&mut c, "binary", &[("Accept", "text/html, image/*;q=0.8")]);
    assert_eq!(r.body_str(), PNG_B64, "image/* is not image/png");
    let r = rest(&mut c, "binary", &[]);
    assert_eq!(r.body_str(), PNG_B64);
    // HTTP API: always decoded.
    let r = http(&mut c, "binary");
    assert_eq!(r.body, PNG);

    // 2.0: cookies, one set-cookie each; inference for JSON without statusCode.
    let r = http(&mut c, "cookies");
    assert_eq!(r.status, 200);
    assert_eq!(values(&r, "set-cookie"), ["a=1", "b=2; Path=/"]);
    assert_eq!(r.body_str(), "with cookies");
    let r = http(&mut c, "infer_string");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "Hello from Lambda!")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = http(&mut c, "infer_object");
    assert_eq!(r.body_str(), r#"{ "message": "Hello from Lambda!" }"#);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = http(&mut c, "no_status");
    assert_eq!((r.status, r.body_str().as_str()), (200, r#"{"body":"x"}"#));
    assert!(!r.closes(), "every answer kept the connection");
}

#[test]
fn malformed_results_and_function_errors() {
    let (_fs, gw) = start();
    let mut c = Client::connect(gw.addr);
    let bad_gateway = r#"{"message":"Internal server error"}"#;
    for case in [
        "unknown_key",
        "no_status",
        "not_json",
        "bad_header",
        "bad_status",
        "error",
    ] {
        let r = rest(&mut c, case, &[]);
        assert_eq!(r.status, 502, "{case}: {}", r.body_str());
        r.assert_gateway_error(502, bad_gateway);
    }
    // HTTP APIs: 500 Internal Server Error.
    for case in ["not_json", "error", "bad_status"] {
        let r = http(&mut c, case);
        r.assert_gateway_error(500, r#"{"message":"Internal Server Error"}"#);
    }
    // The Invoke API refusing the call.
    let r = rest(&mut c, "throttled", &[]);
    r.assert_gateway_error(500, bad_gateway);
    // A slow function: 504 at the integration timeout, and the connection goes on.
    let r = rest(&mut c, "slow", &[]);
    r.assert_gateway_error(504, r#"{"message":"Endpoint request timed out"}"#);
    let r = rest(&mut c, "full", &[]);
    assert_eq!(r.status, 201);
    // Nothing listens at the function's endpoint.
    let r = c.request(&req("GET", "/prod/gone", &[], b""));
    r.assert_gateway_error(504, bad_gateway);
}

#[test]
fn a_slow_function_does_not_hold_up_other_requests() {
    let (_fs, gw) = start();
    let mut slow = Client::connect(gw.addr);
    slow.send(&req("GET", "/prod/reply/slow", &[], b""));
    std::thread::sleep(Duration::from_millis(50));
    let started = std::time::Instant::now();
    let mut quick = Client::connect(gw.addr);
    let r = rest(&mut quick, "full", &[]);
    assert_eq!(r.status, 201);
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    let r = slow.read_response();
    assert_eq!(r.status, 504);
}
