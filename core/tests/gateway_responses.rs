//! `[[apis.gateway_responses]]` through the public loader: valid customisations reach the
//! API's table (checked by rendering), and each refusal is reported at its line and column with
//! its reason. The shared counting allocator (`support/counting_alloc.rs`) shows that rendering
//! a customised response into a reserved buffer allocates nothing.

use tollgate_core::config::{load_str, ConfigError};
use tollgate_core::gateway::responses::{ErrorContext, ResponseType};
use tollgate_core::gateway::Gateway;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{allocations_during, assert_counter_sees_allocations};
#[path = "support/config_text.rs"]
mod config_text;
use config_text::{errors_of, position_of};

const HEAD: &str = r#"[[listeners]]
address = "127.0.0.1"
port = 8080

[[apis]]
name = "svc"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  variables = { who = "svc-prod" }
  [[apis.routes]]
  key = "GET /pets"
  integration = { type = "mock" }
"#;

fn config(responses: &str) -> String {
    format!("{HEAD}{responses}")
}

fn load(responses: &str) -> Gateway {
    let text = config(responses);
    match load_str("test.toml", &text) {
        Ok(g) => g,
        Err(e) => panic!("refused:\n{e:#?}\n{text}"),
    }
}

/// The single error of `responses`, with the (line, column) of `marker` in the whole text.
fn refused(responses: &str, marker: &str) -> (ConfigError, (u32, u32)) {
    let text = config(responses);
    let mut errors = errors_of(&text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    (errors.remove(0), position_of(&text, marker))
}

fn assert_refused(responses: &str, marker: &str, reason: &str) {
    let (e, at) = refused(responses, marker);
    assert_eq!((e.line, e.column), at, "{e}");
    assert_eq!(e.file, "test.toml");
    assert!(e.message.contains(reason), "{e}\nwanted: {reason}");
}

fn render(g: &Gateway, ty: ResponseType, head: bool) -> String {
    let api = &g.apis[0];
    let ctx = ErrorContext {
        request_id: b"rid-1",
        stage: &api.stages[0].name,
        stage_variables: &api.stages[0].variables,
        http_method: b"DELETE",
        path: b"/prod/nothing",
        status: None,
        message: None,
        max_body_bytes: 100,
        close: false,
        head_request: head,
        authorizer: None,
        api_key_id: None,
        policy_denial: false,
    };
    let mut out = Vec::new();
    api.responses.write(ty, &ctx, &mut out);
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn a_customised_type_and_the_default_4xx_fallback() {
    let g = load(
        r#"
  [[apis.gateway_responses]]
  type = "MISSING_AUTHENTICATION_TOKEN"
  status = 404
  headers = { "access-control-allow-origin" = "*" }
  body = '{"error":$context.error.messageString,"id":"$context.requestId","who":"$stageVariables.who","at":"$context.httpMethod $context.path"}'

  [[apis.gateway_responses]]
  type = "DEFAULT_4XX"
  headers = { "content-type" = "text/plain" }
  body = "$context.error.responseType in ${context.stage}"
"#,
    );
    assert_eq!(
        render(&g, ResponseType::MissingAuthenticationToken, false),
        "HTTP/1.1 404 Not Found\r\n\
         content-type: application/json\r\n\
         content-length: 98\r\n\
         x-amzn-RequestId: rid-1\r\n\
         x-amzn-ErrorType: MissingAuthenticationTokenException\r\n\
         access-control-allow-origin: *\r\n\
         \r\n\
         {\"error\":\"Missing Authentication Token\",\"id\":\"rid-1\",\"who\":\"svc-prod\",\"at\":\"DELETE /prod/nothing\"}"
    );
    assert_eq!(
        render(&g, ResponseType::Throttled, false),
        "HTTP/1.1 429 Too Many Requests\r\n\
         content-length: 17\r\n\
         x-amzn-RequestId: rid-1\r\n\
         x-amzn-ErrorType: TooManyRequestsException\r\n\
         content-type: text/plain\r\n\
         \r\n\
         THROTTLED in prod"
    );
    let head = render(&g, ResponseType::Throttled, true);
    assert!(head.ends_with("content-type: text/plain\r\n\r\n"), "{head}");
    assert!(head.contains("content-length: 17\r\n"), "{head}");
    // 5xx and REQUEST_TOO_LARGE stay built-in.
    let s = render(&g, ResponseType::IntegrationTimeout, false);
    assert!(
        s.starts_with("HTTP/1.1 504 Gateway Timeout\r\ncontent-type: application/json\r\n")
            && s.ends_with("\r\n\r\n{\"message\":\"Endpoint request timed out\"}"),
        "{s}"
    );
    let s = render(&g, ResponseType::RequestTooLarge, false);
    assert!(
        s.starts_with("HTTP/1.1 413 ")
            && s.ends_with("{\"message\":\"HTTP content length exceeded 100 bytes.\"}"),
        "{s}"
    );
}

#[test]
fn default_5xx_status_applies_to_every_5xx_type_and_inline_arrays_work() {
    let g = load(
        r#"
[[apis]]
name = "other"
protocol = "http"
hosts = ["other.example"]
stages = [{ name = "$default" }]
gateway_responses = [{ type = "DEFAULT_5XX", status = 503 }, { type = "UNAUTHORIZED" }]
"#,
    );
    // The first API is untouched.
    assert_eq!(
        render(&g, ResponseType::IntegrationFailure, false)
            .lines()
            .next(),
        Some("HTTP/1.1 504 Gateway Timeout")
    );
    let other = &g.apis[1].responses;
    for ty in [
        ResponseType::IntegrationFailure,
        ResponseType::AuthorizerFailure,
        ResponseType::Default5xx,
    ] {
        assert!(other.custom(ty).is_some() == (ty == ResponseType::Default5xx));
        let ctx = ErrorContext {
            request_id: b"r",
            stage: "$default",
            stage_variables: &[],
            http_method: b"GET",
            path: b"/",
            status: None,
            message: None,
            max_body_bytes: 1,
            close: true,
            head_request: false,
            authorizer: None,
            api_key_id: None,
            policy_denial: false,
        };
        let mut out = Vec::new();
        other.write(ty, &ctx, &mut out);
        let s = String::from_utf8(out).expect("utf-8");
        assert!(
            s.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{ty:?}: {s}"
        );
        assert!(
            s.contains("\r\nconnection: close\r\n\r\n{\"message\":"),
            "{s}"
        );
    }
    assert!(other.custom(ResponseType::Unauthorized).is_some());
}

#[test]
fn type_refusals() {
    assert_refused(
        "[[apis.gateway_responses]]\ntype = \"THROTTLE\"\n",
        "\"THROTTLE\"",
        "unknown gateway response type `THROTTLE` (did you mean `THROTTLED`?)",
    );
    assert_refused(
        "[[apis.gateway_responses]]\ntype = \"default_4xx\"\n",
        "\"default_4xx\"",
        "(did you mean `DEFAULT_4XX`?)",
    );
    assert_refused(
        "[[apis.gateway_responses]]\ntype = \"REQUEST_TOO_LARGE\"\nstatus = 400\n",
        "\"REQUEST_TOO_LARGE\"",
        "REQUEST_TOO_LARGE cannot be customised",
    );
    assert_refused(
        "[[apis.gateway_responses]]\ntype = \"THROTTLED\"\n[[apis.gateway_responses]]\nstatus = 420\ntype = 'THROTTLED'\n",
        "'THROTTLED'",
        "`THROTTLED` is already customised in this API",
    );
    assert_refused(
        "[[apis.gateway_responses]]\nstatus = 404\n",
        "[[apis.gateway_responses]]",
        "missing key `type` in [[apis.gateway_responses]]",
    );
    assert_refused(
        "[[apis.gateway_responses]]\ntype = \"THROTTLED\"\nstatuss = 420\n",
        "statuss",
        "unknown key `statuss`, expected one of `type`, `status`, `headers`, `body` (did you mean `status`?)",
    );
    assert_refused(
        "[[apis.gateway_responses]]\ntype = \"THROTTLED\"\nbody = { a = 1 }\n",
        "{ a = 1 }",
        "`body` must be a string, found an inline table",
    );
}

#[test]
fn status_and_header_refusals() {
    for status in ["100", "199", "204", "205", "304", "600", "-1"] {
        assert_refused(
            &format!("[[apis.gateway_responses]]\ntype = \"THROTTLED\"\nstatus = {status}\n"),
            &format!("{status}\n"),
            "`status` must be between 200 and 599, and not 204, 205 or 304",
        );
    }
    for name in [
        "Content-Length",
        "transfer-encoding",
        "connection",
        "x-amzn-RequestId",
        "X-AMZN-ERRORTYPE",
    ] {
        assert_refused(
            &format!(
                "[[apis.gateway_responses]]\ntype = \"THROTTLED\"\nheaders = {{ \"{name}\" = \"x\" }}\n"
            ),
            &format!("\"{name}\""),
            "cannot be set on a gateway response: the gateway writes it",
        );
    }
    assert_refused(
        "[[apis.gateway_responses]]\ntype = \"THROTTLED\"\nheaders = { \"bad name\" = \"x\" }\n",
        "\"bad name\"",
        "`bad name` is not a valid header name",
    );
    assert_refused(
        "[[apis.gateway_responses]]\ntype = \"THROTTLED\"\nheaders = { \"x-a\" = \"a\\r\\nb: c\" }\n",
        "\"a\\r",
        "a header value cannot contain line breaks",
    );
    assert_refused(
        "[[apis.gateway_responses]]\ntype = \"THROTTLED\"\nheaders = { \"x-a\" = \"a \" }\n",
        "\"a \"",
        "cannot start or end with whitespace",
    );
    assert_refused(
        "[[apis.gateway_responses]]\ntype = \"THROTTLED\"\nheaders = { \"X-A\" = \"1\", \"x-a\" = \"2\" }\n",
        "\"x-a\"",
        "header `x-a` is set twice",
    );
}

#[test]
fn body_refusals_point_inside_the_template() {
    assert_refused(
        "[[apis.gateway_responses]]\ntype = \"THROTTLED\"\nbody = '{\"id\":\"$context.requestid\"}'\n",
        "$context.requestid",
        "unknown variable `$context.requestid` in a gateway response body (did you mean `$context.requestId`?)",
    );
    assert_refused(
        "[[apis.gateway_responses]]\ntype = \"DEFAULT_5XX\"\nbody = \"ok $context.resourcePath\"\n",
        "$context.resourcePath",
        "unknown variable `$context.resourcePath`",
    );
    assert_refused(
        "[[apis.gateway_responses]]\ntype = \"DEFAULT_5XX\"\nbody = \"x ${context.stage\"\n",
        "${context",
        "`${` without a closing `}`",
    );
    assert_refused(
        "[[apis.gateway_responses]]\ntype = \"DEFAULT_5XX\"\nbody = \"${stageVariables.a-b}\"\n",
        "${stageVariables.a-b}",
        "invalid stage variable name `a-b`",
    );
    // Escaped strings report at the start of the value.
    assert_refused(
        "[[apis.gateway_responses]]\ntype = \"DEFAULT_5XX\"\nbody = \"\\u0041 $input.body\"\n",
        "\"\\u0041",
        "unknown variable `$input.body`",
    );
}

#[test]
fn every_error_in_one_file_is_reported() {
    let text = config(
        "[[apis.gateway_responses]]\ntype = \"NOPE\"\nstatus = 1000\nheaders = { \"connection\" = \"close\" }\nbody = \"$nope\"\n",
    );
    let errors = load_str("test.toml", &text).expect_err("refused");
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(errors.len(), 4, "{messages:#?}");
    assert!(messages[0].starts_with("unknown gateway response type `NOPE`"));
    assert!(messages[1].starts_with("`status` must be"));
    assert!(messages[2].contains("`connection` cannot be set"));
    assert!(messages[3].starts_with("unknown variable `$nope`"));
}

#[test]
fn rendering_a_customised_response_does_not_allocate() {
    let g = load(
        r#"
  [[apis.gateway_responses]]
  type = "DEFAULT_4XX"
  status = 404
  headers = { "access-control-allow-origin" = "*", "x-why" = "custom" }
  body = '{"m":$context.error.messageString,"t":"$context.error.responseType","id":"$context.requestId","v":"$stageVariables.who","p":"$context.path"}'
"#,
    );
    let api = &g.apis[0];
    let ctx = ErrorContext {
        request_id: b"rid-1",
        stage: &api.stages[0].name,
        stage_variables: &api.stages[0].variables,
        http_method: b"GET",
        path: b"/prod/x",
        status: None,
        message: None,
        max_body_bytes: 100,
        close: true,
        head_request: false,
        authorizer: None,
        api_key_id: None,
        policy_denial: false,
    };
    let mut out = Vec::with_capacity(4096);
    assert_counter_sees_allocations();
    let ((), made) = allocations_during(|| {
        for ty in [
            ResponseType::MissingAuthenticationToken,
            ResponseType::Throttled,
            ResponseType::IntegrationTimeout,
        ] {
            out.clear();
            api.responses.write(ty, &ctx, &mut out);
        }
    });
    assert_eq!(made, 0);
    // The buffer holds the last one, the built-in 5xx; the 4xx were customised.
    assert!(out.starts_with(b"HTTP/1.1 504 "));
    out.clear();
    api.responses.write(ResponseType::Throttled, &ctx, &mut out);
    let s = String::from_utf8(out).expect("utf-8");
    assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"), "{s}");
    assert!(
        s.ends_with("\r\n\r\n{\"m\":\"Too Many Requests\",\"t\":\"THROTTLED\",\"id\":\"rid-1\",\"v\":\"svc-prod\",\"p\":\"/prod/x\"}"),
        "{s}"
    );
}
