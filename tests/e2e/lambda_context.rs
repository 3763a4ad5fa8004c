//! Authorizer context outside the integration, end to end: `$context.authorizer.principalId`,
//! a Lambda authorizer's context keys, JWT claims (`claims.NAME`, `claims['NAME']`) and
//! `$context.identity.apiKeyId` in access log lines and customised gateway responses; an
//! explicit deny's default body (`{"Message":...}`) and a customised one quoting the denying
//! policy's context; the method ARN and `accountId` with `[server] region` / `account_id`.

use crate::client::{req, Client, Response};
use crate::harness::{free_port, Gateway, Server, TempDir};
use crate::lambda_jwt::{claims, jwks, rsa_key, sign, ISSUER};
use crate::lambda_server::{FunctionServer, Reply};
use crate::ops_support::wait_lines;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const KEY: &str = "alice0123456789abcdefghij";
const LOG_FORMAT: &str = "id=$context.requestId|st=$context.status|p=$context.authorizer.principalId|t=$context.authorizer.tenant|n=$context.authorizer.level|k=$context.identity.apiKeyId|c=$context.authorizer.claims.sub|r=$context.authorizer.claims['custom:role']|rt=$context.error.responseType";

fn policy(principal: &str, effect: &str, context: Value) -> Reply {
    Reply::value(json!({
        "principalId": principal,
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": effect, "Resource": "*"}]},
        "context": context,
    }))
}

fn functions() -> FunctionServer {
    FunctionServer::start(|name, event| match name {
        "auth" => match event["authorizationToken"].as_str().unwrap_or("") {
            "Bearer allow" => policy("user-1", "Allow", json!({"tenant": "t1", "level": 3})),
            "Bearer deny" => policy("user-x", "Deny", json!({"reason": "suspended"})),
            "Bearer deny2" => policy("user-y", "Deny", json!({})),
            _ => Reply::error("Unauthorized"),
        },
        _ => Reply::value(json!({"statusCode": 200, "body": "ok"})),
    })
}

/// A REST API `ctx` (stage `prod`, access log to `log`): `GET /pets/{id}` behind a TOKEN
/// authorizer and an API key with a quota of 1 request; `GET /open/{id}` behind the authorizer
/// only. QUOTA_EXCEEDED and ACCESS_DENIED are customised to quote the authorizer and the key.
fn rest_api(fs: &FunctionServer, log: &Path) -> String {
    format!(
        r#"[[api_keys]]
name = "alice"
value = "{KEY}"

[[usage_plans]]
name = "small"
quota = {{ limit = 1, period = "DAY" }}
keys = ["alice"]
  [[usage_plans.stages]]
  api = "ctx"
  stage = "prod"

[[apis]]
name = "ctx"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  access_log = {{ destination = "{log}", format = "{LOG_FORMAT}" }}
  [[apis.authorizers]]
  name = "tokens"
  type = "token"
  uri = "{auth}"
  identity_sources = ["method.request.header.Authorization"]
  ttl_seconds = 300
  [[apis.routes]]
  key = "GET /pets/{{id}}"
  authorizer = "tokens"
  api_key_required = true
  integration = {{ type = "aws_proxy", uri = "{echo}" }}
  [[apis.routes]]
  key = "GET /open/{{id}}"
  authorizer = "tokens"
  integration = {{ type = "aws_proxy", uri = "{echo}" }}
  [[apis.gateway_responses]]
  type = "QUOTA_EXCEEDED"
  body = '{{"who":"$context.authorizer.principalId","tenant":"$context.authorizer.tenant","level":$context.authorizer.level,"key":"$context.identity.apiKeyId","msg":$context.error.messageString}}'
  [[apis.gateway_responses]]
  type = "ACCESS_DENIED"
  body = '{{"who":"$context.authorizer.principalId","why":"$context.authorizer.reason","key":"$context.identity.apiKeyId"}}'
"#,
        log = log.display(),
        auth = fs.uri("auth"),
        echo = fs.uri("echo"),
    )
}

fn get(c: &mut Client, path: &str, headers: &[(&str, &str)]) -> Response {
    c.request(&req("GET", path, headers, b""))
}

/// `key=value` fields of one access log line.
fn fields(line: &str) -> HashMap<&str, &str> {
    line.split('|').filter_map(|f| f.split_once('=')).collect()
}

#[test]
fn rest_lines_responses_and_method_arn_carry_the_authorizer_and_key() {
    let dir = TempDir::new("actx");
    let log = dir.path.join("access.log");
    let fs = functions();
    let server = Server::default()
        .with("region", "\"eu-west-2\"")
        .with("account_id", "\"123456789012\"");
    let gw = Gateway::start(&server, &rest_api(&fs, &log));
    let mut c = Client::connect(gw.addr);
    let allow = [("Authorization", "Bearer allow"), ("x-api-key", KEY)];

    // 1. Allowed, counted against alice's quota.
    let r1 = get(&mut c, "/prod/pets/1", &allow);
    assert_eq!(r1.status, 200, "{}", r1.body_str());
    // The method ARN the authorizer got, and the integration's accountId, are the configured ones.
    assert_eq!(
        fs.last("auth")["methodArn"],
        "arn:aws:execute-api:eu-west-2:123456789012:ctx/prod/GET/pets/1"
    );
    assert_eq!(
        fs.last("echo")["requestContext"]["accountId"],
        "123456789012"
    );
    // 2. Quota spent: the customised QUOTA_EXCEEDED quotes principal, context and key name.
    let r2 = get(&mut c, "/prod/pets/2", &allow);
    assert_eq!(r2.status, 429, "{}", r2.body_str());
    let body: Value = serde_json::from_str(&r2.body_str()).expect("JSON body");
    assert_eq!(
        body,
        json!({"who": "user-1", "tenant": "t1", "level": 3, "key": "alice", "msg": "Limit Exceeded"})
    );
    assert!(
        !r2.body_str().contains(KEY),
        "the key's value never appears"
    );
    // 3. An explicit deny: the customised ACCESS_DENIED quotes the denying policy.
    let r3 = get(&mut c, "/prod/open/3", &[("Authorization", "Bearer deny")]);
    assert_eq!(r3.status, 403);
    assert_eq!(r3.header("x-amzn-errortype"), Some("AccessDeniedException"));
    let body: Value = serde_json::from_str(&r3.body_str()).expect("JSON body");
    assert_eq!(
        body,
        json!({"who": "user-x", "why": "suspended", "key": ""})
    );
    // 4. No token: 401, no authorizer values.
    let r4 = get(&mut c, "/prod/open/4", &[]);
    r4.assert_gateway_error(401, r#"{"message":"Unauthorized"}"#);
    // 5. Allowed without a key requirement: principal and context, no key.
    let r5 = get(&mut c, "/prod/open/5", &[("Authorization", "Bearer allow")]);
    assert_eq!(r5.status, 200);

    let lines = wait_lines(&log, 5, Duration::from_secs(5));
    assert_eq!(lines.len(), 5, "{lines:#?}\n{}", gw.output());
    let l: Vec<HashMap<&str, &str>> = lines.iter().map(|l| fields(l)).collect();
    let expect = [
        (&r1, "200", "user-1", "t1", "3", "alice", "-"),
        (&r2, "429", "user-1", "t1", "3", "alice", "QUOTA_EXCEEDED"),
        (&r3, "403", "user-x", "-", "-", "-", "ACCESS_DENIED"),
        (&r4, "401", "-", "-", "-", "-", "UNAUTHORIZED"),
        (&r5, "200", "user-1", "t1", "3", "-", "-"),
    ];
    for (i, (r, st, p, t, n, k, rt)) in expect.iter().enumerate() {
        let f = &l[i];
        assert_eq!(f["id"], r.request_id(), "line {i}: {}", lines[i]);
        assert_eq!(
            (f["st"], f["p"], f["t"], f["n"], f["k"], f["rt"]),
            (*st, *p, *t, *n, *k, *rt),
            "line {i}: {}",
            lines[i]
        );
        // A Lambda authorizer has no claims.
        assert_eq!((f["c"], f["r"]), ("-", "-"), "line {i}");
    }
    assert!(
        !lines.iter().any(|l| l.contains(KEY)),
        "the key's value never appears in the log"
    );
}

#[test]
fn an_explicit_deny_says_message_with_a_capital_m_by_default() {
    let fs = functions();
    let apis = format!(
        r#"[[apis]]
name = "plain"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  [[apis.authorizers]]
  name = "tokens"
  type = "token"
  uri = "{auth}"
  identity_sources = ["method.request.header.Authorization"]
  [[apis.routes]]
  key = "GET /x"
  authorizer = "tokens"
  integration = {{ type = "aws_proxy", uri = "{echo}" }}
"#,
        auth = fs.uri("auth"),
        echo = fs.uri("echo"),
    );
    let gw = Gateway::start(&Server::default(), &apis);
    let mut c = Client::connect(gw.addr);
    let r = get(&mut c, "/prod/x", &[("Authorization", "Bearer deny2")]);
    r.assert_gateway_error(
        403,
        r#"{"Message":"User is not authorized to access this resource with an explicit deny"}"#,
    );
    assert_eq!(r.header("x-amzn-errortype"), Some("AccessDeniedException"));
    // The default region and account.
    assert_eq!(
        fs.last("auth")["methodArn"],
        "arn:aws:execute-api:local:000000000000:plain/prod/GET/x"
    );
    assert_eq!(fs.count("echo"), 0);
}

#[test]
fn jwt_claims_in_lines_and_responses() {
    let dir = TempDir::new("actxjwt");
    let log = dir.path.join("access.log");
    let key = rsa_key("a");
    let file = dir.write("jwks.json", &jwks(&[&key]));
    let dead = free_port();
    let apis = format!(
        r#"[[apis]]
name = "jw"
protocol = "http"
hosts = ["h.test"]
  [[apis.stages]]
  name = "$default"
  access_log = {{ destination = "{log}", format = "{LOG_FORMAT}" }}
  [[apis.authorizers]]
  name = "file"
  type = "jwt"
  issuer = "{ISSUER}"
  audiences = ["aud1"]
  jwks_file = "{file}"
  [[apis.routes]]
  key = "GET /down"
  authorizer = "file"
  integration = {{ type = "http_proxy", uri = "http://127.0.0.1:{dead}/x", timeout_ms = 1000 }}
  [[apis.gateway_responses]]
  type = "INTEGRATION_FAILURE"
  body = '''{{"sub":"$context.authorizer.claims.sub","role":"$context.authorizer.claims['custom:role']","p":"$context.authorizer.principalId"}}'''
"#,
        log = log.display(),
        file = file.display(),
    );
    let gw = Gateway::start(&Server::default(), &apis);
    let mut c = Client::connect(gw.addr);
    let token = sign(
        &key,
        "a",
        &claims(json!({"sub": "user-7", "custom:role": "admin"})),
    );
    let raw =
        format!("GET /down HTTP/1.1\r\nHost: h.test\r\nAuthorization: Bearer {token}\r\n\r\n");
    let r = c.request(raw.as_bytes());
    assert_eq!(r.status, 504, "{}", r.body_str());
    let body: Value = serde_json::from_str(&r.body_str()).expect("JSON body");
    assert_eq!(
        body,
        json!({"sub": "user-7", "role": "admin", "p": "user-7"})
    );
    // No token: 401 before the integration, nothing to quote.
    let r2 = c.request(b"GET /down HTTP/1.1\r\nHost: h.test\r\n\r\n");
    assert_eq!(r2.status, 401);
    let lines = wait_lines(&log, 2, Duration::from_secs(5));
    assert_eq!(lines.len(), 2, "{lines:#?}\n{}", gw.output());
    let f = fields(&lines[0]);
    assert_eq!(f["id"], r.request_id());
    assert_eq!(
        (f["st"], f["c"], f["r"], f["p"], f["t"], f["k"]),
        ("504", "user-7", "admin", "user-7", "-", "-"),
        "{}",
        lines[0]
    );
    let f = fields(&lines[1]);
    assert_eq!((f["st"], f["c"], f["p"]), ("401", "-", "-"), "{}", lines[1]);
}
