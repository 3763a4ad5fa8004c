//! Config loading errors, through the public API only: each kind of mistake is reported with
//! its file, line, column and reason (one small bad config per row), and every error of a file
//! is reported, in file order.

use tollgate_core::config::load_str;

#[path = "support/config_text.rs"]
mod config_text;
use config_text::{errors_of, position_of};

const LISTENER: &str = "[[listeners]]\naddress = \"127.0.0.1\"\nport = 8080\n";

/// A config with the listener and `apis` (TOML text).
fn with_listener(apis: &str) -> String {
    format!("{LISTENER}{apis}")
}

/// One API `svc` of `protocol` with stage `stage` (variable `backend`) and `routes` (TOML text).
fn one_api(protocol: &str, stage: &str, routes: &str) -> String {
    with_listener(&format!(
        r#"[[apis]]
name = "svc"
protocol = "{protocol}"
  [[apis.stages]]
  name = "{stage}"
  variables = {{ backend = "127.0.0.1:9000" }}
{routes}"#
    ))
}

/// One REST API `svc` with stage `prod`.
fn rest_api(routes: &str) -> String {
    one_api("rest", "prod", routes)
}

/// One HTTP API `svc` with the `$default` stage.
fn http_api(routes: &str) -> String {
    one_api("http", "$default", routes)
}

fn route(key: &str, integration: &str) -> String {
    format!("  [[apis.routes]]\n  key = \"{key}\"\n  integration = {integration}\n")
}

const MOCK: &str = "{ type = \"mock\", status = 200 }";

fn proxy(uri: &str) -> String {
    format!("{{ type = \"http_proxy\", uri = \"{uri}\" }}")
}

/// What an expected error says: all of it, or how it starts.
enum Says {
    Exactly(&'static str),
    StartsWith(&'static str),
}

struct Row {
    what: &'static str,
    text: String,
    /// Every expected error: the text it points at (first occurrence) and its message.
    errors: Vec<(&'static str, Says)>,
}

fn row(what: &'static str, text: String, errors: Vec<(&'static str, Says)>) -> Row {
    Row { what, text, errors }
}

use Says::{Exactly, StartsWith};

fn rows() -> Vec<Row> {
    vec![
        row(
            "unknown key in [server]",
            format!("[server]\nshards = 1\nidle_timeout = 5000\n{LISTENER}"),
            vec![(
                "idle_timeout =",
                StartsWith("unknown key `idle_timeout`, expected one of `shards`, `pin_cpus`"),
            )],
        ),
        row(
            "misspelled key in an API (protocol then also missing)",
            with_listener("[[apis]]\nname = \"a\"\nprot = \"rest\"\n  [[apis.stages]]\n  name = \"prod\"\n"),
            vec![
                ("[[apis]]", Exactly("missing key `protocol` in [[apis]]")),
                (
                    "prot =",
                    Exactly("unknown key `prot`, expected one of `name`, `protocol`, `hosts`, `stages`, `routes`, `gateway_responses`, `api_key_source`, `binary_media_types`, `authorizers` (did you mean `protocol`?)"),
                ),
            ],
        ),
        row(
            "wrong type",
            "[[listeners]]\naddress = \"127.0.0.1\"\nport = \"8080\"\n".to_string(),
            vec![("\"8080\"", Exactly("`port` must be an integer, found a string"))],
        ),
        row(
            "wrong type in [server]",
            format!("[server]\npin_cpus = \"yes\"\n{LISTENER}"),
            vec![("\"yes\"", Exactly("`pin_cpus` must be a boolean, found a string"))],
        ),
        row(
            "syntax error",
            "[[listeners]]\naddress = \"127.0.0.1\"\nport = 80 80\n".to_string(),
            vec![("80\n", Exactly("expected newline, `#`"))],
        ),
        row(
            "server value out of range",
            format!("[server]\nread_buffer_bytes = 100\nidle_timeout_ms = 0\n{LISTENER}"),
            vec![
                ("100", Exactly("`read_buffer_bytes` must be between 1024 and 16777216")),
                ("0\n[[listeners]]", Exactly("`idle_timeout_ms` must be between 1 and 86400000")),
            ],
        ),
        row(
            "no listeners",
            "[server]\nshards = 1\n".to_string(),
            vec![(
                "[server]",
                Exactly("no listeners: add at least one [[listeners]] with `address` and `port`"),
            )],
        ),
        row(
            "bad listener address and port",
            "[[listeners]]\naddress = \"localhost\"\nport = 70000\n".to_string(),
            vec![
                (
                    "\"localhost\"",
                    Exactly("`localhost` is not an IP address: write an IPv4 or IPv6 literal such as 127.0.0.1, 0.0.0.0 or ::"),
                ),
                ("70000", Exactly("`port` must be between 1 and 65535")),
            ],
        ),
        row(
            "bad route key",
            rest_api(&route("FETCH pets/{id", MOCK)),
            vec![("\"FETCH", StartsWith("unknown method `FETCH`"))],
        ),
        row(
            "duplicate route",
            rest_api(&(route("GET /pets/{id}", MOCK) + &route("GET /pets/{petId}", MOCK))),
            vec![("\"GET /pets/{petId}\"", StartsWith("duplicate route"))],
        ),
        row(
            "$default route in a REST API",
            rest_api(&route("$default", MOCK)),
            vec![(
                "\"$default\"",
                Exactly("the `$default` route is only for http APIs: use `ANY /{proxy+}` in a REST API"),
            )],
        ),
        row(
            "$default stage in a REST API",
            with_listener("[[apis]]\nname = \"a\"\nprotocol = \"rest\"\nstages = [{ name = \"$default\" }]\n"),
            vec![(
                "\"$default\"",
                Exactly("a `$default` stage is only for http APIs: REST APIs are reached as /{stage}/..."),
            )],
        ),
        row(
            "bad stage name",
            with_listener("[[apis]]\nname = \"a\"\nprotocol = \"http\"\nstages = [{ name = \"pro d\" }]\n"),
            vec![(
                "\"pro d\"",
                StartsWith("invalid stage name `pro d`: use 1 to 128 of A-Z a-z 0-9 _ -"),
            )],
        ),
        row(
            "API without stages",
            with_listener("[[apis]]\nname = \"a\"\nprotocol = \"http\"\n"),
            vec![(
                "\"a\"",
                Exactly("API `a` has no stages: add at least one [[apis.stages]]"),
            )],
        ),
        row(
            "duplicate API, stage and domain names",
            with_listener(
                r#"[[apis]]
name = "a"
protocol = "rest"
hosts = ["a.example"]
stages = [{ name = "prod" }, { name = "prod" }]
[[apis]]
name = "a"
protocol = "rest"
hosts = ["b.example"]
stages = [{ name = "beta" }]
[[domains]]
name = "api.example.com"
mappings = [{ api = "a", stage = "prod" }]
[[domains]]
name = "API.example.com"
mappings = [{ api = "a", stage = "prod" }]
"#,
            ),
            vec![
                ("\"prod\" }]", Exactly("API `a` already has a stage `prod`")),
                ("\"a\"\nprotocol = \"rest\"\nhosts = [\"b", Exactly("another API is already named `a`")),
                (
                    "\"API.example.com\"",
                    Exactly("another [[domains]] entry is already named `api.example.com`"),
                ),
            ],
        ),
        row(
            "unknown integration type and missing integration",
            rest_api("  [[apis.routes]]\n  key = \"GET /a\"\n  integration = { type = \"lambda\" }\n  [[apis.routes]]\n  key = \"GET /b\"\n"),
            vec![
                ("\"lambda\"", Exactly("unknown integration type `lambda`, expected `http_proxy`, `mock` or `aws_proxy`")),
                ("[[apis.routes]]\n  key = \"GET /b\"", Exactly("missing key `integration` in [[apis.routes]]")),
            ],
        ),
        row(
            "integration URI that is not a URI",
            rest_api(&route("GET /a", &proxy("127.0.0.1:9000/a"))),
            vec![(
                "\"127.0.0.1:9000/a\"",
                Exactly("`127.0.0.1:9000/a` is not an absolute URI: write http://host[:port][/path][?query]"),
            )],
        ),
        row(
            "ca_file on an http backend",
            rest_api(&route(
                "GET /a",
                "{ type = \"http_proxy\", uri = \"http://127.0.0.1/a\", ca_file = \"/nonexistent/ca.pem\" }",
            )),
            vec![
                (
                    "\"http://127",
                    Exactly("`ca_file` (`/nonexistent/ca.pem`) is only for https:// integration URIs"),
                ),
                (
                    "\"/nonexistent/ca.pem\"",
                    StartsWith("certificate file `/nonexistent/ca.pem`: cannot read it"),
                ),
            ],
        ),
        row(
            "backend host that does not resolve",
            rest_api(&route("GET /a", &proxy("http://no-such-host.invalid/a"))),
            vec![(
                "\"http://no-such-host",
                StartsWith("cannot resolve backend host `no-such-host.invalid`: "),
            )],
        ),
        row(
            "URI parameter that the route does not have",
            rest_api(&route("GET /pets/{petId}", &proxy("http://127.0.0.1:9000/pets/{id}"))),
            vec![(
                "{id}\"",
                Exactly("`{id}` is not a path parameter of the route (it has `{petId}`)"),
            )],
        ),
        row(
            "greedy parameter written with +",
            rest_api(&route("ANY /{proxy+}", &proxy("http://127.0.0.1:9000/{proxy+}"))),
            vec![(
                "{proxy+}\" }",
                Exactly("write `{proxy}` (without `+`) to use the greedy path parameter `{proxy+}`"),
            )],
        ),
        row(
            "{proxy} on a route without a greedy parameter",
            rest_api(&route("GET /pets", &proxy("http://127.0.0.1:9000/{proxy}"))),
            vec![(
                "{proxy}\"",
                Exactly("`{proxy}` is not a path parameter of the route (it has none)"),
            )],
        ),
        row(
            "stage variable that one stage does not define",
            with_listener(&format!(
                "[[apis]]\nname = \"a\"\nprotocol = \"rest\"\n  [[apis.stages]]\n  name = \"prod\"\n  variables = {{ backend = \"127.0.0.1:9000\" }}\n  [[apis.stages]]\n  name = \"beta\"\n{}",
                route("GET /a", &proxy("http://${stageVariables.backend}/a"))
            )),
            vec![(
                "${stageVariables.backend}",
                Exactly("stage `beta` does not define the stage variable `backend`"),
            )],
        ),
        row(
            "stage variable missing in the $default stage",
            http_api(&route("$default", &proxy("http://${stageVariables.host}/"))),
            vec![(
                "${stageVariables.host}",
                Exactly("stage `$default` does not define the stage variable `host`"),
            )],
        ),
        row(
            "other ${...} references",
            rest_api(&route("GET /a", &proxy("http://127.0.0.1/${context.path}"))),
            vec![(
                "${context",
                Exactly("`${context.path}`: only `${stageVariables.NAME}` can be used in an integration URI"),
            )],
        ),
        row(
            "timeout out of range (REST and HTTP)",
            rest_api(&route("GET /a", "{ type = \"http_proxy\", uri = \"http://127.0.0.1/\", timeout_ms = 29001 }"))
                + "[[apis]]\nname = \"h\"\nprotocol = \"http\"\nhosts = [\"h.example\"]\nstages = [{ name = \"$default\" }]\nroutes = [{ key = \"$default\", integration = { type = \"http_proxy\", uri = \"http://127.0.0.1\", timeout_ms = 49 } }]\n",
            vec![
                ("29001", Exactly("`timeout_ms` must be between 50 and 29000 for rest APIs")),
                ("49", Exactly("`timeout_ms` must be between 50 and 30000 for http APIs")),
            ],
        ),
        row(
            "mock status and headers",
            rest_api(&route(
                "GET /a",
                "{ type = \"mock\", status = 600, headers = { \"content-length\" = \"3\" } }",
            )),
            vec![
                ("600", Exactly("`status` must be between 100 and 599")),
                (
                    "\"content-length\"",
                    Exactly("`content-length` cannot be set on a mock response: the gateway writes it"),
                ),
            ],
        ),
        row(
            "stage variables and throttle",
            with_listener("[[apis]]\nname = \"a\"\nprotocol = \"rest\"\n  [[apis.stages]]\n  name = \"prod\"\n  variables = { \"bad-name\" = \"x\" }\n  throttle = { rate = -1.0, burst = 10 }\n"),
            vec![
                (
                    "\"bad-name\"",
                    Exactly("invalid stage variable name `bad-name`: use 1 to 64 of A-Z a-z 0-9 _"),
                ),
                ("-1.0", Exactly("`rate` must be a number of requests per second ≥ 0")),
            ],
        ),
        row(
            "mapping to an unknown API and stage, bad mapping paths",
            rest_api("")
                + r#"[[domains]]
name = "api.example.com"
  [[domains.mappings]]
  path = "v1"
  api = "nope"
  stage = "prod"
  [[domains.mappings]]
  path = "v2"
  api = "svc"
  stage = "beta"
  [[domains.mappings]]
  path = "/v3"
  api = "svc"
  stage = "prod"
  [[domains.mappings]]
  path = "v1"
  api = "svc"
  stage = "prod"
"#,
            vec![
                ("\"nope\"", Exactly("no API is named `nope`")),
                ("\"beta\"", Exactly("API `svc` has no stage `beta`")),
                (
                    "\"/v3\"",
                    Exactly("mapping path `/v3` must not start or end with `/` (write `v1` or `orders/v1`)"),
                ),
                (
                    "\"v1\"\n  api = \"svc\"",
                    Exactly("domain `api.example.com` already has a mapping for path `v1`"),
                ),
            ],
        ),
        row(
            "two host-less APIs with the same stage, two $default stages",
            with_listener(
                r#"[[apis]]
name = "a"
protocol = "rest"
stages = [{ name = "prod" }]
[[apis]]
name = "b"
protocol = "http"
stages = [{ name = "$default" }, { name = "prod" }]
[[apis]]
name = "c"
protocol = "http"
stages = [{ name = "$default" }]
"#,
            ),
            vec![
                (
                    "\"prod\" }]\n[[apis]]\nname = \"c\"",
                    Exactly("API `a` also has a stage `prod` and neither API has `hosts`: requests to /prod/... would be ambiguous"),
                ),
                (
                    "\"$default\" }]\n",
                    Exactly("API `b` also has a `$default` stage and neither API has `hosts`: requests that name no stage would be ambiguous"),
                ),
            ],
        ),
        row(
            "APIs sharing a host with the same stage; host with a port; host that is a domain",
            with_listener(
                r#"[[apis]]
name = "a"
protocol = "rest"
hosts = ["shop.example", "x.example:8080"]
stages = [{ name = "prod" }]
[[apis]]
name = "b"
protocol = "rest"
hosts = ["Shop.Example", "api.example.com"]
stages = [{ name = "prod" }]
[[domains]]
name = "*.example.com"
mappings = [{ api = "a", stage = "prod" }]
"#,
            ),
            vec![
                (
                    "\"x.example:8080\"",
                    Exactly("write the host without a port (`x.example`): any listener port reaches it"),
                ),
                (
                    "\"api.example.com\"",
                    Exactly("`api.example.com` is a custom domain ([[domains]]): its requests follow the domain's mappings, not `hosts`"),
                ),
                (
                    "\"prod\" }]\n[[domains]]",
                    Exactly("API `a` also has a stage `prod` and both APIs list `shop.example` in `hosts`: requests to /prod/... would be ambiguous"),
                ),
            ],
        ),
    ]
}

#[test]
fn each_mistake_is_reported_at_its_position() {
    for r in rows() {
        let errors = errors_of(&r.text);
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errors.len(),
            r.errors.len(),
            "{}: expected {} error(s), got:\n{}\n--- config:\n{}",
            r.what,
            r.errors.len(),
            shown.join("\n"),
            r.text
        );
        for (marker, says) in &r.errors {
            let (line, column) = position_of(&r.text, marker);
            let found = errors.iter().find(|e| e.line == line && e.column == column);
            let Some(e) = found else {
                panic!(
                    "{}: no error at {line}:{column} ({marker:?}); got:\n{}\n--- config:\n{}",
                    r.what,
                    shown.join("\n"),
                    r.text
                );
            };
            assert_eq!(e.file, "test.toml", "{}", r.what);
            assert!(
                !e.message.contains('\n'),
                "{}: multi-line message {:?}",
                r.what,
                e.message
            );
            match says {
                Exactly(m) => assert_eq!(e.message, *m, "{}", r.what),
                StartsWith(m) => assert!(e.message.starts_with(m), "{}: {:?}", r.what, e.message),
            }
        }
    }
}

#[test]
fn every_error_in_a_file_is_reported() {
    // An unknown key, a bad route key and a bad URI in one file: all three.
    let text = format!(
        "[server]\nshards = 1\nshard_count = 2\n{}",
        &rest_api(&(route("FETCH pets/{id", MOCK) + &route("GET /a", &proxy("ftp://x/"))))[..]
    );
    let errors = errors_of(&text);
    for marker in ["shard_count", "\"FETCH", "\"ftp://x/\""] {
        let (line, column) = position_of(&text, marker);
        assert!(
            errors.iter().any(|e| e.line == line && e.column == column),
            "{marker}: {errors:?}"
        );
    }
    assert_eq!(errors.len(), 3, "{errors:?}");
    // In file order.
    assert!(errors
        .windows(2)
        .all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)));
}

/// The bounded integer keys of `[[apis.authorizers]]` (a Lambda and a JWT authorizer): each
/// value out of its range is reported at the value with the range, and the values in range load.
#[test]
fn authorizer_numbers_out_of_range_are_reported_at_the_value() {
    let authorizers = |cache: i64, timeout: i64, refresh: i64, cooldown: i64| {
        with_listener(&format!(
            r#"[[apis]]
name = "svc"
protocol = "http"
  [[apis.stages]]
  name = "$default"
  [[apis.authorizers]]
  name = "req"
  type = "request"
  uri = "http://127.0.0.1:9001/2015-03-31/functions/f/invocations"
  identity_sources = ["$request.header.X-A"]
  cache_entries = {cache}
  timeout_ms = {timeout}
  [[apis.authorizers]]
  name = "jwt"
  type = "jwt"
  identity_sources = ["$request.header.Authorization"]
  issuer = "https://issuer.test"
  audiences = ["api"]
  jwks_uri = "http://127.0.0.1:9002/keys"
  jwks_refresh_seconds = {refresh}
  jwks_cooldown_ms = {cooldown}
  [[apis.routes]]
  key = "GET /x"
  integration = {{ type = "mock" }}
"#
        ))
    };
    // At the ends of each range: loads.
    for (cache, timeout, refresh, cooldown) in
        [(1, 50, 60, 100), (1_000_000, 10_000, 86_400, 3_600_000)]
    {
        let text = authorizers(cache, timeout, refresh, cooldown);
        if let Err(e) = load_str("test.toml", &text) {
            panic!("{e:?}");
        }
    }
    // One past each end: four errors, in file order.
    for (cache, timeout, refresh, cooldown) in
        [(0, 49, 59, 99), (1_000_001, 10_001, 86_401, 3_600_001)]
    {
        let text = authorizers(cache, timeout, refresh, cooldown);
        let errors = errors_of(&text);
        let got: Vec<(&str, (u32, u32))> = errors
            .iter()
            .map(|e| (e.message.as_str(), (e.line, e.column)))
            .collect();
        let want = [
            (
                "`cache_entries` must be between 1 and 1000000",
                format!("cache_entries = {cache}"),
            ),
            (
                "`timeout_ms` must be between 50 and 10000",
                format!("timeout_ms = {timeout}"),
            ),
            (
                "`jwks_refresh_seconds` must be between 60 and 86400",
                format!("jwks_refresh_seconds = {refresh}"),
            ),
            (
                "`jwks_cooldown_ms` must be between 100 and 3600000",
                format!("jwks_cooldown_ms = {cooldown}"),
            ),
        ];
        let want: Vec<(&str, (u32, u32))> = want
            .iter()
            .map(|(m, at)| {
                let (line, column) = position_of(&text, at);
                let value_column = column + at.find('=').map_or(0, |i| i as u32 + 2);
                (*m, (line, value_column))
            })
            .collect();
        assert_eq!(got, want);
    }
}
