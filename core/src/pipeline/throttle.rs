//! Phase 3, throttle and quota: the API key, the throttling hierarchy and the usage plan's
//! quota for a dispatched request, counted synchronously before the integration request.
//!
//! The decision itself is `traffic::Traffic::decide`; this phase finds the route's limits on
//! its stage, reads the key (`x-api-key` for `api_key_source = "HEADER"`), and maps a refusal
//! to a [`Failure`] (INVALID_API_KEY 403, THROTTLED 429, QUOTA_EXCEEDED 429). The caller hands
//! in the shard's buckets and leases, the shared quota store and the clock (read only when the
//! route has a limit): a route with no limit at all costs one branch.
//!
//! `api_key_source = "AUTHORIZER"`: the key is the authorizer's `usageIdentifierKey` from the
//! authorize phase's result in `Context` (no result, no key: 403 on `api_key_required` routes).
//! Because an authorizer call may be awaited between reading the head and this decision, the
//! phase has two steps: [`throttle_input`] while the head is borrowed, [`throttle_apply`] after
//! authorize.

use super::{Context, Failure};
use crate::gateway::responses::ResponseType;
use crate::gateway::{Gateway, RouteMatch, Stage};
use crate::http::request::RequestHead;
use crate::traffic::quota::QuotaStore;
use crate::traffic::{Decision, KeySource, Now, RouteLimits, ShardTraffic};
use smallvec::SmallVec;

/// The header the key comes in with `api_key_source = "HEADER"` (as API Gateway).
pub const API_KEY_HEADER: &str = "x-api-key";

/// What the phase needs from the request head and the route match, taken while they are
/// borrowed (an authorizer call may come between this and [`throttle_apply`]): the route's
/// limits and, for `api_key_source = "HEADER"`, a copy of the `x-api-key` value.
#[derive(Debug)]
pub struct ThrottleInput<'g> {
    limits: &'g RouteLimits,
    /// The header key; an over-long value is kept as an empty one, which matches no key.
    header_key: Option<SmallVec<[u8; MAX_KEY_BYTES]>>,
}

/// Longest API key value (API Gateway: 20-128 characters).
const MAX_KEY_BYTES: usize = 128;

/// Takes the phase's inputs from the head and match; `Ok(None)` when no limit applies to the
/// route (the common case: one branch, no copy).
pub fn throttle_input<'g>(
    gw: &Gateway,
    head: &RequestHead<'_, '_>,
    m: &RouteMatch<'g, '_>,
) -> Result<Option<ThrottleInput<'g>>, Failure> {
    let Some(limits) = route_limits(m) else {
        return Err(Failure::Internal);
    };
    if !gw.traffic.applies(limits) {
        return Ok(None);
    }
    let header_key = (limits.api_key_required && limits.key_source == KeySource::Header)
        .then(|| api_key_header(head))
        .flatten()
        .map(|v| SmallVec::from_slice(if v.len() <= MAX_KEY_BYTES { v } else { b"" }));
    Ok(Some(ThrottleInput { limits, header_key }))
}

/// Runs the phase: `Ok` to go on (with `ctx.api_key` set when the route required a key), or
/// the failure to answer. `now` is called once. With `api_key_source = "AUTHORIZER"` the key
/// is the authorizer's `usageIdentifierKey` (so this runs after the authorize phase).
pub fn throttle_apply<S: QuotaStore + ?Sized>(
    gw: &Gateway,
    input: &ThrottleInput<'_>,
    ctx: &mut Context<'_>,
    shard: &mut ShardTraffic,
    store: &S,
    now: impl FnOnce() -> Now,
) -> Result<(), Failure> {
    let limits = input.limits;
    let key: Option<&[u8]> = if limits.api_key_required {
        match limits.key_source {
            KeySource::Header => input.header_key.as_deref(),
            KeySource::Authorizer => ctx.authorizer_api_key().map(str::as_bytes),
        }
    } else {
        None
    };
    match gw.traffic.decide(limits, key, shard, store, now()) {
        Decision::Continue { key } => {
            ctx.api_key = key;
            Ok(())
        }
        Decision::Reject(ResponseType::InvalidApiKey) => Err(Failure::InvalidApiKey),
        // A valid key that is throttled or out of quota: its name is quoted by the response and
        // the log line (`$context.identity.apiKeyId`); one lookup, on refusals only.
        Decision::Reject(ty) => {
            ctx.api_key = key.and_then(|k| gw.traffic.key_index(k));
            Err(if ty == ResponseType::QuotaExceeded {
                Failure::QuotaExceeded
            } else {
                Failure::Throttled
            })
        }
    }
}

/// Both steps at once, for a request with no authorizer call in between.
pub fn throttle<S: QuotaStore + ?Sized>(
    gw: &Gateway,
    head: &RequestHead<'_, '_>,
    m: &RouteMatch<'_, '_>,
    ctx: &mut Context<'_>,
    shard: &mut ShardTraffic,
    store: &S,
    now: impl FnOnce() -> Now,
) -> Result<(), Failure> {
    match throttle_input(gw, head, m)? {
        None => Ok(()),
        Some(input) => throttle_apply(gw, &input, ctx, shard, store, now),
    }
}

/// The matched route's limits on the matched stage (`Route::limits` is per stage, in
/// `Api::stages` order): the stage's index from its address in that slice, no search.
fn route_limits<'g>(m: &RouteMatch<'g, '_>) -> Option<&'g RouteLimits> {
    let size = std::mem::size_of::<Stage>();
    let base = m.api.stages.as_ptr() as usize;
    let at = (m.stage as *const Stage as usize).checked_sub(base)?;
    let index = at / size.max(1);
    let stage = m.api.stages.get(index)?;
    std::ptr::eq(stage, m.stage)
        .then(|| m.route.limits.get(index))
        .flatten()
}

/// The `x-api-key` value (surrounding whitespace trimmed); `None` when missing, empty or sent
/// more than once (an ambiguous key is no key).
fn api_key_header<'b>(head: &RequestHead<'b, '_>) -> Option<&'b [u8]> {
    let mut found = None;
    for h in head.headers {
        if h.name.eq_ignore_ascii_case(API_KEY_HEADER) {
            if found.is_some() {
                return None;
            }
            found = Some(h.value.trim_ascii());
        }
    }
    found.filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::super::{dispatch, test_support::client};
    use super::*;
    use crate::config;
    use crate::http::{request, MAX_HEADERS};
    use crate::traffic::quota::AtomicQuotaStore;
    use std::time::Instant;

    const CONFIG: &str = r#"
[server]
account_throttle = { rate = 0.0, burst = 100 }

[[listeners]]
address = "127.0.0.1"
port = 8080

[[api_keys]]
name = "alice"
value = "alice0123456789abcdefghij"

[[api_keys]]
name = "bob"
value = "bob0123456789abcdefghijkl"
enabled = false

[[usage_plans]]
name = "gold"
throttle = { rate = 0.0, burst = 5 }
quota = { limit = 3, period = "DAY" }
keys = ["alice", "bob"]
  [[usage_plans.stages]]
  api = "rest"
  stage = "prod"

[[apis]]
name = "rest"
protocol = "rest"
  [[apis.stages]]
  name = "beta"
  [[apis.stages]]
  name = "prod"
  route_throttles = { "GET /open" = { rate = 0.0, burst = 2 } }
  [[apis.routes]]
  key = "GET /keyed"
  api_key_required = true
  integration = { type = "mock", status = 200, body = "k" }
  [[apis.routes]]
  key = "GET /open"
  integration = { type = "mock", status = 200, body = "o" }
"#;

    const NOW: Now = Now {
        mono_ns: 1,
        unix_secs: 1_764_460_800,
    };

    struct Env {
        gw: Gateway,
        shard: ShardTraffic,
        store: AtomicQuotaStore,
    }

    fn env(text: &str) -> Env {
        let gw = config::load_str("<throttle tests>", text).unwrap_or_else(|e| panic!("{e:?}"));
        let shard = ShardTraffic::new(&gw.traffic, 0, 1, 0);
        let store = AtomicQuotaStore::new(gw.traffic.memberships.len());
        Env { gw, shard, store }
    }

    /// Runs dispatch then the phase on `raw`: the failure (if any) and the key name.
    fn run(e: &mut Env, raw: &[u8]) -> (Result<(), Failure>, Option<String>, usize) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = request::parse(raw, &mut headers, 8192)
            .expect("valid head")
            .expect("complete head");
        let mut ctx = Context::new([b'a'; 36], client(), Instant::now(), &head);
        let m = dispatch(&e.gw, &head, &mut ctx).expect("route");
        let mut clock_reads = 0;
        let r = throttle(&e.gw, &head, &m, &mut ctx, &mut e.shard, &e.store, || {
            clock_reads += 1;
            NOW
        });
        let name = ctx
            .api_key
            .and_then(|k| e.gw.traffic.keys.get(k as usize))
            .map(|k| k.name.to_string());
        (r, name, clock_reads)
    }

    fn get(path: &str, key: Option<&str>) -> Vec<u8> {
        let key = key.map_or(String::new(), |k| format!("x-api-key: {k}\r\n"));
        format!("GET {path} HTTP/1.1\r\nhost: a\r\n{key}\r\n").into_bytes()
    }

    const ALICE: &str = "alice0123456789abcdefghij";

    #[test]
    fn keys_are_checked_on_key_routes() {
        let mut e = env(CONFIG);
        let refused = (Err(Failure::InvalidApiKey), None, 1);
        assert_eq!(run(&mut e, &get("/prod/keyed", None)), refused);
        assert_eq!(
            run(
                &mut e,
                &get("/prod/keyed", Some("wrong0123456789abcdefghij"))
            ),
            refused
        );
        assert_eq!(
            run(
                &mut e,
                &get("/prod/keyed", Some("bob0123456789abcdefghijkl"))
            ),
            refused
        );
        // The key's plan is not on this stage.
        assert_eq!(run(&mut e, &get("/beta/keyed", Some(ALICE))), refused);
        // Sent twice: ambiguous, refused even though each copy is valid.
        let twice = format!(
            "GET /prod/keyed HTTP/1.1\r\nhost: a\r\nx-api-key: {ALICE}\r\nX-Api-Key: {ALICE}\r\n\r\n"
        );
        assert_eq!(run(&mut e, twice.as_bytes()), refused);
        assert_eq!(
            run(&mut e, &get("/prod/keyed", Some(ALICE))),
            (Ok(()), Some("alice".to_string()), 1)
        );
    }

    #[test]
    fn quota_then_throttle_failures() {
        // Quota 3, plan burst 5, no refill: three pass, then QUOTA_EXCEEDED.
        let mut e = env(CONFIG);
        let results: Vec<_> = (0..5)
            .map(|_| run(&mut e, &get("/prod/keyed", Some(ALICE))).0)
            .collect();
        assert_eq!(
            results,
            [
                Ok(()),
                Ok(()),
                Ok(()),
                Err(Failure::QuotaExceeded),
                Err(Failure::QuotaExceeded)
            ]
        );
        // The stage route throttle on GET /open (burst 2): THROTTLED on the third.
        let results: Vec<_> = (0..3)
            .map(|_| run(&mut e, &get("/prod/open", None)).0)
            .collect();
        assert_eq!(results, [Ok(()), Ok(()), Err(Failure::Throttled)]);
        // The other stage has no route throttle: only the account (burst 100) applies.
        assert_eq!(run(&mut e, &get("/beta/open", None)).0, Ok(()));
    }

    #[test]
    fn a_route_without_limits_reads_no_clock() {
        let text = CONFIG.replace("account_throttle = { rate = 0.0, burst = 100 }", "");
        let mut e = env(&text);
        assert!(!e.gw.traffic.account_limited);
        for _ in 0..200 {
            assert_eq!(run(&mut e, &get("/beta/open", None)), (Ok(()), None, 0));
        }
        // The stage with a route throttle still counts.
        assert_eq!(run(&mut e, &get("/prod/open", None)).2, 1);
    }
}
