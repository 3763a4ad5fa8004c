//! Traffic control on live requests (2 shards): API keys (403 INVALID_API_KEY), key-less routes
//! bypassing usage plan limits, the 429 THROTTLED / QUOTA_EXCEEDED responses, and a quota of
//! 1,000 spent from 64 connections admitting exactly 1,000 (at most one more).
//! Shared helpers for `traffic_accuracy` and `traffic_state` live here too.

use crate::client::{req, Client, Response};
use crate::harness::{Gateway, Server};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const ALICE: &str = "alice0key0000000000000001";
pub const BOB: &str = "bob0key000000000000000002";
pub const MALLORY: &str = "mallory0key0000000000003";

/// Keys alice (plan `gold`, quota `quota` a day), bob (no plan), mallory (disabled, in
/// `gold`); API `shop`, stage `prod` (with `stage_throttle`, TOML or ""), `GET /keyed`
/// (key required) and `GET /open` (no key), both mocks.
pub fn keyed_config(quota: u64, plan_throttle: &str, stage_throttle: &str) -> String {
    format!(
        r#"
[[api_keys]]
name = "alice"
value = "{ALICE}"

[[api_keys]]
name = "bob"
value = "{BOB}"

[[api_keys]]
name = "mallory"
value = "{MALLORY}"
enabled = false

[[usage_plans]]
name = "gold"
{plan_throttle}
quota = {{ limit = {quota}, period = "DAY" }}
keys = ["alice", "mallory"]
  [[usage_plans.stages]]
  api = "shop"
  stage = "prod"

[[apis]]
name = "shop"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  {stage_throttle}
  [[apis.routes]]
  key = "GET /keyed"
  api_key_required = true
  integration = {{ type = "mock", status = 200, body = "keyed" }}
  [[apis.routes]]
  key = "GET /open"
  integration = {{ type = "mock", status = 200, body = "open" }}
"#
    )
}

/// Two unpinned shards.
pub fn two_shards() -> Server {
    Server::default().with("shards", "2")
}

/// Waits until every shard listens: the harness's readiness check passes as soon as one shard
/// accepts, and a connection sent to a shard whose socket is not listening yet is refused.
pub fn wait_all_shards(gw: &Gateway) {
    assert!(
        gw.wait_output("listening on", Duration::from_secs(5)),
        "{}",
        gw.output()
    );
}

/// A gateway on 2 shards serving `apis`, every shard listening.
pub fn start(apis: &str) -> Gateway {
    let gw = Gateway::start(&two_shards(), apis);
    wait_all_shards(&gw);
    gw
}

pub fn get_with_key(path: &str, key: Option<&str>) -> Vec<u8> {
    match key {
        Some(k) => req("GET", path, &[("x-api-key", k)], b""),
        None => req("GET", path, &[], b""),
    }
}

pub fn send(gw: SocketAddr, path: &str, key: Option<&str>) -> Response {
    Client::connect(gw).request(&get_with_key(path, key))
}

/// `n` requests on one keep-alive connection: their statuses.
pub fn statuses(gw: SocketAddr, path: &str, key: Option<&str>, n: usize) -> Vec<u16> {
    let mut c = Client::connect(gw);
    let r = get_with_key(path, key);
    (0..n).map(|_| c.request(&r).status).collect()
}

fn assert_error(r: &Response, status: u16, ty: &str, body: &str) {
    r.assert_gateway_error(status, body);
    assert_eq!(r.header("x-amzn-errortype"), Some(ty), "{r:?}");
    assert_eq!(r.request_id().len(), 36, "{r:?}");
}

#[test]
fn api_keys_are_required_where_configured() {
    let gw = start(&keyed_config(1000, "", ""));
    let forbidden =
        |r: Response| assert_error(&r, 403, "ForbiddenException", r#"{"message":"Forbidden"}"#);
    forbidden(send(gw.addr, "/prod/keyed", None));
    forbidden(send(
        gw.addr,
        "/prod/keyed",
        Some("wrong0key000000000000000"),
    ));
    // Disabled key, and a valid key with no usage plan on this stage.
    forbidden(send(gw.addr, "/prod/keyed", Some(MALLORY)));
    forbidden(send(gw.addr, "/prod/keyed", Some(BOB)));
    let ok = send(gw.addr, "/prod/keyed", Some(ALICE));
    assert_eq!((ok.status, ok.body_str().as_str()), (200, "keyed"));
    // The connection stays usable after a 403.
    let mut c = Client::connect(gw.addr);
    assert_eq!(c.request(&get_with_key("/prod/keyed", None)).status, 403);
    assert_eq!(
        c.request(&get_with_key("/prod/keyed", Some(ALICE))).status,
        200
    );
    // Key values never appear in the gateway's output.
    assert!(!gw.output().contains(ALICE), "{}", gw.output());
}

#[test]
fn key_less_routes_bypass_usage_plan_limits() {
    // Quota 2: the keyed route stops after 2...
    let gw = start(&keyed_config(2, "", ""));
    assert_eq!(
        statuses(gw.addr, "/prod/keyed", Some(ALICE), 4),
        [200, 200, 429, 429]
    );
    // ... the key-less route takes the key's requests without limit, key sent or not.
    let open = statuses(gw.addr, "/prod/open", Some(ALICE), 30);
    assert!(open.iter().all(|s| *s == 200), "{open:?}");
    let open = statuses(gw.addr, "/prod/open", None, 10);
    assert!(open.iter().all(|s| *s == 200), "{open:?}");
}

#[test]
fn throttled_and_quota_exceeded_responses() {
    // Stage burst 3, no refill: THROTTLED once 3 are admitted (the key has quota left). The
    // requests are paced over 1 s: a shard's share of the burst is only part of it until a
    // rebalance (every 100 ms) hands it the other shard's tokens.
    let stage = "throttle = { rate = 0.0, burst = 3 }";
    let gw = start(&keyed_config(1000, "", stage));
    let mut c = Client::connect(gw.addr);
    let mut admitted = 0;
    let mut throttled = None;
    for _ in 0..40 {
        let r = c.request(&get_with_key("/prod/open", None));
        match r.status {
            200 => admitted += 1,
            _ => throttled = Some(r),
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(admitted, 3, "stage burst 3 with no refill");
    let throttled = throttled.expect("a refusal");
    assert_error(
        &throttled,
        429,
        "TooManyRequestsException",
        r#"{"message":"Too Many Requests"}"#,
    );
    assert!(!throttled.closes(), "a 429 keeps the connection");
    drop(gw);

    // Quota 2: QUOTA_EXCEEDED on the third.
    let gw = start(&keyed_config(2, "", ""));
    let mut c = Client::connect(gw.addr);
    for _ in 0..2 {
        assert_eq!(
            c.request(&get_with_key("/prod/keyed", Some(ALICE))).status,
            200
        );
    }
    let r = c.request(&get_with_key("/prod/keyed", Some(ALICE)));
    assert_error(
        &r,
        429,
        "LimitExceededException",
        r#"{"message":"Limit Exceeded"}"#,
    );
    let again = c.request(&get_with_key("/prod/keyed", Some(ALICE)));
    assert_ne!(
        r.request_id(),
        again.request_id(),
        "each response has its own id"
    );
}

/// Runs `conns` client threads against `path` until `stop` or `deadline`: each sends
/// requests on its own keep-alive connection (pausing `pause` between them) and counts 200s.
/// Returns (admitted, refused, other statuses).
pub fn hammer(
    gw: SocketAddr,
    path: &'static str,
    key: Option<&'static str>,
    conns: usize,
    pause: Duration,
    deadline: Instant,
    stop_after_refusals: Option<u64>,
) -> (u64, u64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (ok, refused, other, stop) =
                (ok.clone(), refused.clone(), other.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(gw);
                let r = get_with_key(path, key);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match c.request(&r).status {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        429 => {
                            let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
                            if stop_after_refusals.is_some_and(|m| n >= m) {
                                stop.store(true, Ordering::Relaxed);
                            }
                            n
                        }
                        _ => other.fetch_add(1, Ordering::Relaxed),
                    };
                    if !pause.is_zero() {
                        std::thread::sleep(pause);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    (
        ok.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
    )
}

#[test]
fn a_quota_of_1000_from_64_connections_admits_1000() {
    let gw = start(&keyed_config(1000, "", ""));
    // Until 200 refusals (every connection saw the quota spent), at most 20 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (ok, refused, other) = hammer(
        gw.addr,
        "/prod/keyed",
        Some(ALICE),
        64,
        Duration::ZERO,
        deadline,
        Some(200),
    );
    assert_eq!(other, 0);
    assert!(refused >= 200, "the quota was never reached: {ok} admitted");
    assert!((1000..=1001).contains(&ok), "a quota of 1000 admitted {ok}");
}
