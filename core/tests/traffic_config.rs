//! Traffic control in the config, through the public API: a config with API keys, usage plans,
//! stage and route throttles compiles into route chains that `Traffic::decide` follows (key
//! check, then the throttles, then the quota); each config mistake is reported at its file,
//! line and column; `api_keys_file` errors name that file; key values never appear in errors
//! or in `Debug` output.

use tollgate_core::config::{load_file, load_str};
use tollgate_core::gateway::responses::ResponseType;
use tollgate_core::gateway::{Gateway, Resolved};
use tollgate_core::method::Method;
use tollgate_core::traffic::quota::AtomicQuotaStore;
use tollgate_core::traffic::{Decision, KeySource, Now, RouteLimits, ShardTraffic};

#[path = "support/config_text.rs"]
mod config_text;
use config_text::{errors_of, position_of};

const ALICE: &str = "alice0123456789abcdefXYZ";
const BOB: &str = "bob0123456789abcdefghijXYZ";
const CAROL: &str = "carol0123456789abcdefXYZ";
const DAVE: &str = "dave0123456789abcdefghXYZ";

fn config() -> String {
    format!(
        r#"[server]
account_throttle = {{ rate = 1000.0, burst = 500 }}

[[listeners]]
address = "127.0.0.1"
port = 8080

[[api_keys]]
name = "alice"
value = "{ALICE}"

[[api_keys]]
name = "bob"
value = "{BOB}"
enabled = false

[[api_keys]]
name = "carol"
value = "{CAROL}"

[[api_keys]]
name = "dave"
value = "{DAVE}"

[[usage_plans]]
name = "gold"
throttle = {{ rate = 0.0, burst = 5 }}
keys = ["alice", "bob"]
  [[usage_plans.stages]]
  api = "petstore"
  stage = "prod"
  route_throttles = {{ "GET /pets" = {{ rate = 0.0, burst = 3 }} }}

[[usage_plans]]
name = "bronze"
quota = {{ limit = 2, period = "DAY", offset = 0 }}
keys = ["dave", "alice"]
  [[usage_plans.stages]]
  api = "petstore"
  stage = "beta"

[[apis]]
name = "petstore"
protocol = "rest"
api_key_source = "HEADER"
  [[apis.stages]]
  name = "prod"
  throttle = {{ rate = 0.0, burst = 50 }}
  route_throttles = {{ "GET /health" = {{ rate = 0.0, burst = 4 }} }}
  [[apis.stages]]
  name = "beta"
  [[apis.routes]]
  key = "GET /pets"
  api_key_required = true
  integration = {{ type = "mock" }}
  [[apis.routes]]
  key = "GET /health"
  integration = {{ type = "mock" }}
"#
    )
}

fn gateway(text: &str) -> Gateway {
    match load_str("t.toml", text) {
        Ok(g) => g,
        Err(e) => panic!("{e:#?}"),
    }
}

fn limits(g: &Gateway, path: &str) -> RouteLimits {
    match g.resolve(None, Method::Get, path) {
        Resolved::Route(m) => {
            let stage = m
                .api
                .stages
                .iter()
                .position(|s| s.name == m.stage.name)
                .unwrap_or(usize::MAX);
            m.route.limits[stage]
        }
        Resolved::NoRoute(miss) => panic!("{path}: {miss:?}"),
    }
}

const NOW: Now = Now {
    mono_ns: 5,
    unix_secs: 1_764_500_000,
};

/// `n` requests in a row with `key` on `path`, one shard, one instant.
fn decisions(g: &Gateway, path: &str, key: Option<&str>, n: usize) -> Vec<Decision> {
    let route = limits(g, path);
    let mut shard = ShardTraffic::new(&g.traffic, 0, 1, 0);
    let store = AtomicQuotaStore::new(g.traffic.memberships.len());
    (0..n)
        .map(|_| {
            g.traffic
                .decide(&route, key.map(str::as_bytes), &mut shard, &store, NOW)
        })
        .collect()
}

fn cont(g: &Gateway, key: &str) -> Decision {
    let index = g.traffic.keys.iter().position(|k| &*k.name == key);
    Decision::Continue {
        key: index.map(|i| i as u32),
    }
}

const INVALID: Decision = Decision::Reject(ResponseType::InvalidApiKey);
const THROTTLED: Decision = Decision::Reject(ResponseType::Throttled);
const QUOTA: Decision = Decision::Reject(ResponseType::QuotaExceeded);
const FREE: Decision = Decision::Continue { key: None };

#[test]
fn keys_plans_and_throttles_compile_into_route_chains() {
    let g = gateway(&config());
    assert_eq!(g.settings.account_throttle.rate, 1000.0);
    assert_eq!(g.apis[0].api_key_source, KeySource::Header);
    let pets = limits(&g, "/prod/pets");
    assert!(pets.api_key_required);
    assert!(!limits(&g, "/prod/health").api_key_required);

    // Key check first: missing, unknown, disabled, no plan on this stage.
    assert_eq!(decisions(&g, "/prod/pets", None, 1), [INVALID]);
    assert_eq!(
        decisions(&g, "/prod/pets", Some("x".repeat(24).as_str()), 1),
        [INVALID]
    );
    assert_eq!(decisions(&g, "/prod/pets", Some(BOB), 1), [INVALID]);
    assert_eq!(decisions(&g, "/prod/pets", Some(CAROL), 1), [INVALID]);
    assert_eq!(decisions(&g, "/prod/pets", Some(DAVE), 1), [INVALID]); // bronze is on beta only
                                                                       // The plan's per-route throttle (3) is the tightest for alice on GET /pets.
    let ok = cont(&g, "alice");
    assert_eq!(
        decisions(&g, "/prod/pets", Some(ALICE), 4),
        [ok, ok, ok, THROTTLED]
    );
    // The key-less route bypasses plan limits; the stage route throttle (4) applies.
    assert_eq!(
        decisions(&g, "/prod/health", None, 5),
        [FREE, FREE, FREE, FREE, THROTTLED]
    );
    // On beta, alice and dave are in bronze: quota 2 per key.
    let dave = cont(&g, "dave");
    assert_eq!(
        decisions(&g, "/beta/pets", Some(DAVE), 3),
        [dave, dave, QUOTA]
    );
    assert_eq!(decisions(&g, "/beta/pets", Some(ALICE), 3), [ok, ok, QUOTA]);
}

#[test]
fn plan_throttles_are_per_key_and_shared_by_the_plan_stages() {
    let text = config().replace(
        "  [[usage_plans.stages]]\n  api = \"petstore\"\n  stage = \"prod\"\n  route_throttles = { \"GET /pets\" = { rate = 0.0, burst = 3 } }\n",
        "  [[usage_plans.stages]]\n  api = \"petstore\"\n  stage = \"prod\"\n",
    );
    let g = gateway(&text);
    let route = limits(&g, "/prod/pets");
    let health = limits(&g, "/prod/health");
    let mut shard = ShardTraffic::new(&g.traffic, 0, 1, 0);
    let store = AtomicQuotaStore::new(g.traffic.memberships.len());
    let mut admitted = 0;
    for _ in 0..10 {
        admitted += usize::from(matches!(
            g.traffic
                .decide(&route, Some(ALICE.as_bytes()), &mut shard, &store, NOW),
            Decision::Continue { .. }
        ));
    }
    // gold's throttle: burst 5 for alice.
    assert_eq!(admitted, 5);
    // The stage limits were charged only for admitted requests: 50 - 5 left for everyone,
    // minus the route throttle of /health (4).
    let mut free = 0;
    for _ in 0..10 {
        free += usize::from(g.traffic.decide(&health, None, &mut shard, &store, NOW) == FREE);
    }
    assert_eq!(free, 4);
}

/// `config()` with `from` replaced by `to` must fail with exactly one error, at the first
/// `marker` (searched in the changed text), whose message contains `needle`.
fn one_error(from: &str, to: &str, marker: &str, needle: &str) {
    let base = config();
    assert!(base.contains(from), "{from:?} is not in the config");
    let text = base.replacen(from, to, 1);
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1, "{to:?}: {errors:#?}");
    let e = &errors[0];
    assert_eq!((e.line, e.column), position_of(&text, marker), "{e}");
    assert!(e.message.contains(needle), "{to:?}: {}", e.message);
    for v in [ALICE, BOB, CAROL, DAVE] {
        assert!(!e.message.contains(v), "a key value in an error: {e}");
    }
}

#[test]
fn each_mistake_is_reported_at_its_position() {
    one_error(
        "keys = [\"alice\", \"bob\"]",
        "keys = [\"alice\", \"bobb\"]",
        "\"bobb\"",
        "unknown API key `bobb` (did you mean `bob`?)",
    );
    one_error(
        "keys = [\"dave\", \"alice\"]\n  [[usage_plans.stages]]\n  api = \"petstore\"\n  stage = \"beta\"",
        "keys = [\"dave\", \"alice\"]\n  [[usage_plans.stages]]\n  api = \"petstore\"\n  stage = \"prod\"",
        "\"alice\"]\n  [[usage_plans.stages]]\n  api = \"petstore\"\n  stage = \"prod\"",
        "API key `alice` is already in usage plan `gold` on stage `prod` of API `petstore`",
    );
    one_error(
        "api = \"petstore\"\n  stage = \"beta\"",
        "api = \"petstor\"\n  stage = \"beta\"",
        "\"petstor\"",
        "unknown API `petstor` (did you mean `petstore`?)",
    );
    one_error(
        "stage = \"beta\"\n\n",
        "stage = \"betta\"\n\n",
        "\"betta\"",
        "API `petstore` has no stage `betta` (did you mean `beta`?)",
    );
    one_error(
        "route_throttles = { \"GET /pets\" = { rate = 0.0, burst = 3 } }",
        "route_throttles = { \"GET /pet\" = { rate = 0.0, burst = 3 } }",
        "\"GET /pet\"",
        "API `petstore` has no route `GET /pet` (did you mean `GET /pets`?)",
    );
    one_error(
        "route_throttles = { \"GET /health\"",
        "route_throttles = { \"POST /health\"",
        "\"POST /health\"",
        "has no route `POST /health`",
    );
    one_error(
        "period = \"DAY\"",
        "period = \"YEAR\"",
        "\"YEAR\"",
        "unknown quota period `YEAR`",
    );
    one_error(
        "period = \"DAY\"",
        "period = \"day\"",
        "\"day\"",
        "(did you mean `DAY`?)",
    );
    // `offset`: requests subtracted from the limit in the initial period, 0 <= offset < limit.
    one_error(
        "period = \"DAY\", offset = 0",
        "period = \"WEEK\", offset = 2",
        "2 }",
        "`offset` must be between 0 and 1 (below `limit` = 2)",
    );
    one_error(
        "period = \"DAY\", offset = 0",
        "period = \"MONTH\", offset = -1",
        "-1 }",
        "`offset` must be between 0 and 1 (below `limit` = 2)",
    );
    one_error(
        "limit = 2, period = \"DAY\", offset = 0",
        "limit = 0, period = \"DAY\", offset = 1",
        "1 }",
        "`offset` must be 0 when `limit` is 0",
    );
    one_error(
        "limit = 2,",
        "limit = -2,",
        "-2",
        "`limit` must be between 0 and",
    );
    one_error(
        "throttle = { rate = 0.0, burst = 5 }",
        "throttle = { rate = -1.0, burst = 5 }",
        "-1.0",
        "`rate` must be a number of requests per second ≥ 0",
    );
    one_error(
        "throttle = { rate = 0.0, burst = 5 }",
        "throttle = { rate = 2000.0, burst = 5 }",
        "2000.0",
        "above the account's 1000",
    );
    one_error(
        "throttle = { rate = 0.0, burst = 50 }",
        "throttle = { rate = 0.0, burst = 501 }",
        "501",
        "the stage `burst` 501 is above the account's 500",
    );
    one_error(
        "keys = [\"alice\", \"bob\"]",
        "keys = [\"alice\", \"bob\"]\nkey = []",
        "key = []",
        "unknown key `key`",
    );
    one_error(
        "api_key_source = \"HEADER\"",
        "api_key_source = \"header\"",
        "\"header\"",
        "unknown `api_key_source` `header` (did you mean `HEADER`?)",
    );
    one_error(
        &format!("value = \"{CAROL}\""),
        "value = \"short\"",
        "\"short\"",
        "an API key value has 20 to 128 characters (this one has 5)",
    );
    one_error(
        &format!("value = \"{CAROL}\""),
        "value = \"has-a-dash-0123456789abc\"",
        "\"has-a-dash",
        "only letters and digits",
    );
    one_error(
        &format!("value = \"{CAROL}\""),
        &format!("value = \"{ALICE}\""),
        &format!("\"{ALICE}\"\n\n[[api_keys]]\nname = \"dave\""),
        "already the value of API key `alice`",
    );
    one_error(
        "name = \"carol\"",
        "name = \"alice\"",
        &format!("\"alice\"\nvalue = \"{CAROL}\""),
        "another API key is already named `alice`",
    );
    one_error(
        "name = \"bronze\"",
        "name = \"gold\"",
        "\"gold\"\nquota",
        "another usage plan is already named `gold`",
    );
    one_error(
        "account_throttle = { rate = 1000.0, burst = 500 }",
        "account_throttle = { rate = 1000.0, burst = 500 }\nstate_flush_ms = 0",
        "0\n",
        "`state_flush_ms` must be between 10 and 3600000",
    );
}

#[test]
fn http_apis_have_no_api_keys() {
    let text = format!(
        "{}[[apis]]\nname = \"web\"\nprotocol = \"http\"\nstages = [{{ name = \"$default\" }}]\n  [[apis.routes]]\n  key = \"GET /x\"\n  api_key_required = true\n  integration = {{ type = \"mock\" }}\n",
        config()
    );
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0]
        .message
        .contains("`api_key_required` is for rest APIs"));
}

/// A fresh directory under the system temp dir (removed by the caller).
fn temp_dir(tag: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "tollgate-traffic-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

#[test]
fn api_keys_file_is_read_next_to_the_config_and_its_errors_name_it() {
    let dir = temp_dir("keys");
    // The carol and dave keys move to keys.toml.
    let base = config();
    let start = base.find("[[api_keys]]\nname = \"carol\"").unwrap_or(0);
    let end = base.find("[[usage_plans]]").unwrap_or(0);
    let moved = &base[start..end];
    let main = base.replacen(moved, "", 1).replacen(
        "[server]\n",
        "[server]\napi_keys_file = \"keys.toml\"\n",
        1,
    );
    std::fs::write(dir.join("main.toml"), &main).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("keys.toml"), moved).unwrap_or_else(|e| panic!("{e}"));
    let g = load_file(&dir.join("main.toml")).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(g.traffic.keys.len(), 4);
    assert_eq!(
        g.settings.api_keys_file.as_deref(),
        Some(dir.join("keys.toml").as_path())
    );
    let dave = cont(&g, "dave");
    assert_eq!(
        decisions(&g, "/beta/pets", Some(DAVE), 3),
        [dave, dave, QUOTA]
    );

    // An error in keys.toml names keys.toml, at its own line and column.
    let bad = "colour = 1\n".to_string() + &moved.replacen(CAROL, "tooshort", 1);
    std::fs::write(dir.join("keys.toml"), &bad).unwrap_or_else(|e| panic!("{e}"));
    let errors = load_file(&dir.join("main.toml")).err().unwrap_or_default();
    let keys_name = dir.join("keys.toml").display().to_string();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors.iter().all(|e| e.file == keys_name), "{errors:#?}");
    assert_eq!((errors[0].line, errors[0].column), (1, 1));
    assert!(errors[0]
        .message
        .contains("unknown key `colour`, expected one of `api_keys`"));
    assert_eq!(
        (errors[1].line, errors[1].column),
        position_of(&bad, "\"tooshort\"")
    );
    // A key-value line in keys.toml that duplicates a main-file value is reported there too.
    let dup = moved.replacen(CAROL, ALICE, 1);
    std::fs::write(dir.join("keys.toml"), &dup).unwrap_or_else(|e| panic!("{e}"));
    let errors = load_file(&dir.join("main.toml")).err().unwrap_or_default();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].file, keys_name);
    assert!(!errors[0].message.contains(ALICE));
    // A missing file is reported at `api_keys_file` in the main file.
    std::fs::remove_file(dir.join("keys.toml")).unwrap_or_else(|e| panic!("{e}"));
    let errors = load_file(&dir.join("main.toml")).err().unwrap_or_default();
    assert!(
        errors.iter().any(|e| e.file.ends_with("main.toml")
            && e.message.contains("cannot read the `api_keys_file`")),
        "{errors:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn key_values_never_appear_in_debug_output() {
    let g = gateway(&config());
    let text = format!("{g:?}");
    assert!(text.contains("alice"));
    for v in [ALICE, BOB, CAROL, DAVE] {
        assert!(!text.contains(v), "a key value in Debug output");
    }
}
