//! Lambda authorizers end to end (guide L13189-14130, L39955-40415): TOKEN and REQUEST
//! authorizers of a REST API, payload 2.0 simple-response and 1.0 authorizers of an HTTP API,
//! all served by the local function server. Checked: the events the authorizer receives,
//! allow / deny / explicit deny / not-covered methods with `*` and `?` wildcards, the context
//! reaching the integration, the per-shard cache (one call per identity per TTL, a different
//! identity gets its own call), 401 without a call on a missing identity or a token failing the
//! regex, and an authorizer that is down, slow or answering garbage.

use crate::client::{req, Client, Response};
use crate::harness::{free_port, Gateway, Server};
use crate::lambda_server::{FunctionServer, Reply};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ARN: &str = "arn:aws:execute-api:local:000000000000:pets/prod";

fn policy(principal: &str, statements: Value, context: Value) -> Reply {
    Reply::value(json!({
        "principalId": principal,
        "policyDocument": {"Version": "2012-10-17", "Statement": statements},
        "context": context,
    }))
}

fn allow(resource: &str) -> Value {
    json!({"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resource})
}

fn deny(resource: &str) -> Value {
    json!({"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": resource})
}

fn token_auth(event: &Value) -> Reply {
    match event["authorizationToken"].as_str().unwrap_or("") {
        "Bearer allow" => policy(
            "user-allow",
            json!([allow("arn:aws:execute-api:*:*:pets/prod/GET/*")]),
            json!({"role": "admin", "level": 3, "ok": true}),
        ),
        "Bearer wild" => policy(
            "user-wild",
            json!([allow(&format!("{ARN}/GET/pets/?"))]),
            json!({}),
        ),
        "Bearer mixed" => policy(
            "user-mixed",
            json!([allow("*"), deny(&format!("{ARN}/POST/*"))]),
            json!({}),
        ),
        "Bearer deny" => policy("user-deny", json!([deny("*")]), json!({})),
        "Bearer unauthorized" => Reply::error("Unauthorized"),
        "Bearer fail" => Reply::error("database is down"),
        other => Reply::error(&format!("unexpected token {other}")),
    }
}

fn request_auth(event: &Value) -> Reply {
    let user = event["headers"]["X-User"].as_str().unwrap_or("");
    if user == "alice" {
        policy(
            user,
            json!([allow("*")]),
            json!({"user": user, "tenant": event["queryStringParameters"]["tenant"]}),
        )
    } else {
        policy(user, json!([deny("*")]), json!({}))
    }
}

fn simple_auth(event: &Value) -> Reply {
    let user = event["headers"]["x-user"].as_str().unwrap_or("");
    Reply::value(json!({
        "isAuthorized": user == "alice",
        "context": {"user": user, "n": 5, "list": [1, 2]},
    }))
}

fn functions() -> FunctionServer {
    FunctionServer::start(|name, event| match name {
        "token_auth" => token_auth(event),
        "request_auth" => request_auth(event),
        "simple_auth" => simple_auth(event),
        "slow_auth" => token_auth(event).after(Duration::from_millis(1500)),
        "delayed_auth" => token_auth(event).after(Duration::from_millis(300)),
        "garbage_auth" => Reply::json(r#"{"principalId": "x", "policyDocument": "nope"}"#),
        "not_json_auth" => Reply::json("<html>"),
        _ => Reply::value(json!({"statusCode": 200, "body": "ok"})),
    })
}

fn apis(fs: &FunctionServer) -> String {
    let dead = format!(
        "http://127.0.0.1:{}/2015-03-31/functions/gone/invocations",
        free_port()
    );
    let token = |name: &str, uri: &str, extra: &str| {
        format!(
            r#"  [[apis.authorizers]]
  name = "{name}"
  type = "token"
  uri = "{uri}"
  identity_sources = ["method.request.header.Authorization"]
  validation_regex = "^Bearer [-0-9a-zA-Z._]+$"
  {extra}
"#
        )
    };
    let route = |key: &str, auth: &str| {
        format!(
            r#"  [[apis.routes]]
  key = "{key}"
  authorizer = "{auth}"
  integration = {{ type = "aws_proxy", uri = "{}" }}
"#,
            fs.uri("echo")
        )
    };
    let mut rest = String::from(
        r#"[[apis]]
name = "pets"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  variables = { tier = "gold" }
"#,
    );
    rest += &token("tokens", &fs.uri("token_auth"), "ttl_seconds = 300");
    rest += &token("nocache", &fs.uri("token_auth"), "ttl_seconds = 0");
    rest += &token("short", &fs.uri("token_auth"), "ttl_seconds = 1");
    rest += &token("down", &dead, "ttl_seconds = 0");
    rest += &token("slow", &fs.uri("slow_auth"), "timeout_ms = 300");
    rest += &token("garbage", &fs.uri("garbage_auth"), "");
    rest += &token("delayed", &fs.uri("delayed_auth"), "timeout_ms = 3000");
    rest += &token("notjson", &fs.uri("not_json_auth"), "");
    rest += &format!(
        r#"  [[apis.authorizers]]
  name = "req"
  type = "request"
  uri = "{}"
  identity_sources = ["method.request.header.X-User", "method.request.querystring.tenant", "stageVariables.tier"]
  ttl_seconds = 300
"#,
        fs.uri("request_auth")
    );
    rest += &route("GET /pets/{id}", "tokens");
    rest += &route("POST /pets", "tokens");
    rest += &route("GET /nc", "nocache");
    rest += &route("GET /short", "short");
    rest += &route("GET /down", "down");
    rest += &route("GET /slow", "slow");
    rest += &route("GET /garbage", "garbage");
    rest += &route("GET /delayed/{id}", "delayed");
    rest += &route("GET /notjson", "notjson");
    rest += &route("GET /req/{id}", "req");
    rest += &format!(
        r#"  [[apis.routes]]
  key = "GET /open"
  integration = {{ type = "aws_proxy", uri = "{}" }}
"#,
        fs.uri("echo")
    );
    let http = format!(
        r#"
[[apis]]
name = "hp"
protocol = "http"
hosts = ["h.test"]
  [[apis.stages]]
  name = "$default"
  [[apis.authorizers]]
  name = "simple"
  type = "request"
  uri = "{simple}"
  identity_sources = ["$request.header.X-User"]
  payload_format_version = "2.0"
  simple_responses = true
  ttl_seconds = 300
  [[apis.authorizers]]
  name = "v1"
  type = "request"
  uri = "{request}"
  identity_sources = ["$request.header.X-User", "$request.querystring.k"]
  payload_format_version = "1.0"
  ttl_seconds = 0
  [[apis.authorizers]]
  name = "broken"
  type = "request"
  uri = "{garbage}"
  identity_sources = ["$request.header.X-User"]
  payload_format_version = "2.0"
  simple_responses = true
  [[apis.routes]]
  key = "GET /s/{{id}}"
  authorizer = "simple"
  integration = {{ type = "aws_proxy", uri = "{echo}", payload_format_version = "2.0" }}
  [[apis.routes]]
  key = "GET /v1"
  authorizer = "v1"
  integration = {{ type = "aws_proxy", uri = "{echo}", payload_format_version = "1.0" }}
  [[apis.routes]]
  key = "GET /broken"
  authorizer = "broken"
  integration = {{ type = "mock", status = 200, body = "never" }}
"#,
        simple = fs.uri("simple_auth"),
        request = fs.uri("request_auth"),
        garbage = fs.uri("garbage_auth"),
        echo = fs.uri("echo"),
    );
    rest + &http
}

fn start() -> (FunctionServer, Gateway) {
    let fs = functions();
    let gw = Gateway::start(&Server::default(), &apis(&fs));
    (fs, gw)
}

fn get(c: &mut Client, path: &str, token: Option<&str>) -> Response {
    let headers: Vec<(&str, &str)> = token.map(|t| ("Authorization", t)).into_iter().collect();
    c.request(&req("GET", path, &headers, b""))
}

fn http_get(c: &mut Client, target: &str, user: Option<&str>) -> Response {
    let mut raw = format!("GET {target} HTTP/1.1\r\nHost: h.test\r\n");
    if let Some(u) = user {
        raw.push_str(&format!("X-User: {u}\r\n"));
    }
    raw.push_str("\r\n");
    c.request(raw.as_bytes())
}

const UNAUTHORIZED: &str = r#"{"message":"Unauthorized"}"#;
/// REST denials by a policy say `Message` (capital M), as API Gateway's do.
const EXPLICIT_DENY: &str =
    r#"{"Message":"User is not authorized to access this resource with an explicit deny"}"#;
const NOT_AUTHORIZED: &str = r#"{"Message":"User is not authorized to access this resource"}"#;

#[test]
fn token_allow_passes_context_and_is_cached_per_token() {
    let (fs, gw) = start();
    let mut c = Client::connect(gw.addr);
    let r = get(&mut c, "/prod/pets/42", Some("Bearer allow"));
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(
        fs.last("token_auth"),
        json!({"type": "TOKEN", "authorizationToken": "Bearer allow",
               "methodArn": format!("{ARN}/GET/pets/42")})
    );
    // principalId and the stringified context reach the integration.
    assert_eq!(
        fs.last("echo")["requestContext"]["authorizer"],
        json!({"principalId": "user-allow", "role": "admin", "level": "3", "ok": "true"})
    );
    // Same token: the cached policy answers, for other paths and methods too.
    let r = get(&mut c, "/prod/pets/43", Some("Bearer allow"));
    assert_eq!(r.status, 200);
    assert_eq!(fs.count("token_auth"), 1);
    let r = c.request(&req(
        "POST",
        "/prod/pets",
        &[("Authorization", "Bearer allow")],
        b"{}",
    ));
    r.assert_gateway_error(403, NOT_AUTHORIZED);
    assert_eq!(fs.count("token_auth"), 1, "POST was decided from the cache");
    // Another token gets its own call: `?` matches exactly one character.
    let r = get(&mut c, "/prod/pets/7", Some("Bearer wild"));
    assert_eq!(r.status, 200);
    assert_eq!(fs.count("token_auth"), 2);
    let r = get(&mut c, "/prod/pets/42", Some("Bearer wild"));
    r.assert_gateway_error(403, NOT_AUTHORIZED);
    assert_eq!(fs.count("token_auth"), 2);
    // ... and the first token is still cached.
    let r = get(&mut c, "/prod/pets/44", Some("Bearer allow"));
    assert_eq!(r.status, 200);
    assert_eq!(fs.count("token_auth"), 2);
}

#[test]
fn token_missing_or_failing_the_regex_is_401_without_a_call() {
    let (fs, gw) = start();
    let mut c = Client::connect(gw.addr);
    get(&mut c, "/prod/pets/1", None).assert_gateway_error(401, UNAUTHORIZED);
    get(&mut c, "/prod/pets/1", Some("Basic abc")).assert_gateway_error(401, UNAUTHORIZED);
    get(&mut c, "/prod/pets/1", Some("Bearer a b")).assert_gateway_error(401, UNAUTHORIZED);
    get(&mut c, "/prod/pets/1", Some("")).assert_gateway_error(401, UNAUTHORIZED);
    assert_eq!(fs.count("token_auth"), 0);
    // A route without an authorizer is not affected.
    assert_eq!(get(&mut c, "/prod/open", None).status, 200);
}

#[test]
fn deny_unauthorized_and_failing_authorizers() {
    let (fs, gw) = start();
    let mut c = Client::connect(gw.addr);
    get(&mut c, "/prod/pets/1", Some("Bearer deny")).assert_gateway_error(403, EXPLICIT_DENY);
    let r = get(&mut c, "/prod/pets/1", Some("Bearer unauthorized"));
    r.assert_gateway_error(401, UNAUTHORIZED);
    let r = get(&mut c, "/prod/pets/1", Some("Bearer fail"));
    r.assert_gateway_error(500, r#"{"message":null}"#);
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("AuthorizerFailureException")
    );
    // Explicit Deny wins over an Allow of `*`.
    assert_eq!(
        get(&mut c, "/prod/pets/1", Some("Bearer mixed")).status,
        200
    );
    let r = c.request(&req(
        "POST",
        "/prod/pets",
        &[("Authorization", "Bearer mixed")],
        b"{}",
    ));
    r.assert_gateway_error(403, EXPLICIT_DENY);
    assert_eq!(
        fs.count("echo"),
        1,
        "only the allowed request reached the function"
    );
}

#[test]
fn ttl_zero_calls_every_time_and_entries_expire() {
    let (fs, gw) = start();
    let mut c = Client::connect(gw.addr);
    for _ in 0..3 {
        assert_eq!(get(&mut c, "/prod/nc", Some("Bearer allow")).status, 200);
    }
    assert_eq!(fs.count("token_auth"), 3);
    assert_eq!(get(&mut c, "/prod/short", Some("Bearer allow")).status, 200);
    assert_eq!(get(&mut c, "/prod/short", Some("Bearer allow")).status, 200);
    assert_eq!(fs.count("token_auth"), 4, "ttl 1 s: the second was cached");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(get(&mut c, "/prod/short", Some("Bearer allow")).status, 200);
    assert_eq!(fs.count("token_auth"), 5, "expired: called again");
}

#[test]
fn request_authorizer_event_identity_sources_and_cache_key() {
    let (fs, gw) = start();
    let mut c = Client::connect(gw.addr);
    let r = c.request(&req(
        "GET",
        "/prod/req/5?tenant=t1&x=y",
        &[("X-User", "alice")],
        b"",
    ));
    assert_eq!(r.status, 200, "{}", r.body_str());
    let e = fs.last("request_auth");
    assert_eq!(e["type"], "REQUEST");
    assert_eq!(e["methodArn"], format!("{ARN}/GET/req/5"));
    assert_eq!(e["resource"], "/req/{id}");
    assert_eq!(e["path"], "/req/5");
    assert_eq!(e["httpMethod"], "GET");
    assert_eq!(e["headers"]["X-User"], "alice");
    assert_eq!(
        e["queryStringParameters"],
        json!({"tenant": "t1", "x": "y"})
    );
    assert_eq!(e["pathParameters"], json!({"id": "5"}));
    assert_eq!(e["stageVariables"], json!({"tier": "gold"}));
    let rc = &e["requestContext"];
    assert_eq!(rc["path"], "/prod/req/5");
    assert_eq!(rc["stage"], "prod");
    assert_eq!(rc["resourcePath"], "/req/{id}");
    assert_eq!(rc["httpMethod"], "GET");
    assert_eq!(rc["apiId"], "pets");
    assert_eq!(rc["requestId"], r.request_id().as_str());
    assert_eq!(rc["identity"]["sourceIp"], "127.0.0.1");
    assert!(e.get("version").is_none());
    assert_eq!(
        fs.last("echo")["requestContext"]["authorizer"],
        json!({"principalId": "alice", "user": "alice", "tenant": "t1"})
    );
    // Same identity (other query parameters do not count): cached.
    let r = c.request(&req(
        "GET",
        "/prod/req/6?tenant=t1&x=z",
        &[("X-User", "alice")],
        b"",
    ));
    assert_eq!(r.status, 200);
    assert_eq!(fs.count("request_auth"), 1);
    // One identity source differs: its own call, its own result.
    let r = c.request(&req(
        "GET",
        "/prod/req/6?tenant=t2",
        &[("X-User", "alice")],
        b"",
    ));
    assert_eq!(r.status, 200);
    assert_eq!(fs.count("request_auth"), 2);
    let r = c.request(&req(
        "GET",
        "/prod/req/6?tenant=t1",
        &[("X-User", "bob")],
        b"",
    ));
    r.assert_gateway_error(403, EXPLICIT_DENY);
    assert_eq!(fs.count("request_auth"), 3);
    // A missing identity source: 401 without a call.
    let r = c.request(&req("GET", "/prod/req/6", &[("X-User", "alice")], b""));
    r.assert_gateway_error(401, UNAUTHORIZED);
    let r = c.request(&req("GET", "/prod/req/6?tenant=t1", &[], b""));
    r.assert_gateway_error(401, UNAUTHORIZED);
    assert_eq!(fs.count("request_auth"), 3);
}

#[test]
fn authorizer_down_slow_or_answering_garbage() {
    let (fs, gw) = start();
    let mut c = Client::connect(gw.addr);
    for path in ["/prod/down", "/prod/garbage", "/prod/notjson"] {
        let r = get(&mut c, path, Some("Bearer allow"));
        r.assert_gateway_error(500, r#"{"message":null}"#);
        assert_eq!(
            r.header("x-amzn-errortype"),
            Some("AuthorizerConfigurationException"),
            "{path}"
        );
        assert!(!r.closes(), "{path}: the connection goes on");
    }
    // A slow authorizer: its request waits for the authorizer timeout, others go on.
    let mut slow = Client::connect(gw.addr);
    slow.send(&req(
        "GET",
        "/prod/slow",
        &[("Authorization", "Bearer allow")],
        b"",
    ));
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    assert_eq!(get(&mut c, "/prod/open", None).status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    let r = slow.read_response();
    r.assert_gateway_error(500, r#"{"message":null}"#);
    assert_eq!(fs.count("slow_auth"), 1);
}

#[test]
fn http_api_simple_responses_and_payload_1_0() {
    let (fs, gw) = start();
    let mut c = Client::connect(gw.addr);
    let r = http_get(&mut c, "/s/3?q=1", Some("alice"));
    assert_eq!(r.status, 200, "{}", r.body_str());
    let e = fs.last("simple_auth");
    assert_eq!(e["version"], "2.0");
    assert_eq!(e["type"], "REQUEST");
    assert_eq!(
        e["routeArn"],
        "arn:aws:execute-api:local:000000000000:hp/$default/GET/s/3"
    );
    assert_eq!(e["identitySource"], json!(["alice"]));
    assert_eq!(e["routeKey"], "GET /s/{id}");
    assert_eq!(e["rawPath"], "/s/3");
    assert_eq!(e["rawQueryString"], "q=1");
    assert_eq!(e["pathParameters"], json!({"id": "3"}));
    assert_eq!(e["requestContext"]["http"]["method"], "GET");
    // 2.0 context values keep their JSON types, under `lambda`.
    assert_eq!(
        fs.last("echo")["requestContext"]["authorizer"]["lambda"],
        json!({"user": "alice", "n": 5, "list": [1, 2]})
    );
    assert_eq!(http_get(&mut c, "/s/4", Some("alice")).status, 200);
    assert_eq!(fs.count("simple_auth"), 1, "cached");
    http_get(&mut c, "/s/4", Some("bob")).assert_gateway_error(403, r#"{"message":"Forbidden"}"#);
    http_get(&mut c, "/s/4", None).assert_gateway_error(401, UNAUTHORIZED);
    assert_eq!(fs.count("simple_auth"), 2);
    // Errors read "Internal Server Error" on HTTP APIs.
    http_get(&mut c, "/broken", Some("alice"))
        .assert_gateway_error(500, r#"{"message":"Internal Server Error"}"#);
    // A payload 1.0 authorizer of an HTTP API: version, identitySource, authorizationToken.
    let r = http_get(&mut c, "/v1?k=kv", Some("alice"));
    assert_eq!(r.status, 200, "{}", r.body_str());
    let e = fs.last("request_auth");
    assert_eq!(e["version"], "1.0");
    assert_eq!(e["type"], "REQUEST");
    assert_eq!(e["identitySource"], "alice,kv");
    assert_eq!(e["authorizationToken"], "alice,kv");
    // An HTTP API needs every identity source even without a cache.
    http_get(&mut c, "/v1", Some("alice")).assert_gateway_error(401, UNAUTHORIZED);
}

#[test]
fn concurrent_requests_of_one_identity_share_one_call() {
    let (fs, gw) = start();
    let mut clients: Vec<Client> = (0..6).map(|_| Client::connect(gw.addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&req(
            "GET",
            &format!("/prod/delayed/{i}"),
            &[("Authorization", "Bearer allow")],
            b"",
        ));
    }
    for c in &mut clients {
        assert_eq!(c.read_response().status, 200);
    }
    assert_eq!(fs.count("delayed_auth"), 1, "one call for one identity");
    // Another identity at the same time is not held back by the first one's cache entry.
    let r = get(&mut clients[0], "/prod/delayed/9", Some("Bearer mixed"));
    assert_eq!(r.status, 200);
    assert_eq!(fs.count("delayed_auth"), 2);
}
