//! Traffic control in the config → `traffic::Traffic` and each route's `RouteLimits`: API keys
//! (main file and `api_keys_file`), usage plans (throttle, quota, keys, stages, route
//! throttles), `api_key_source`, stage `route_throttles` and route `api_key_required`. Every
//! name is resolved here (with closest-name suggestions when it does not exist) so the request
//! path only follows indexes. Key values never appear in an error message.

use super::decode;
use super::diagnostics::{Diagnostics, Spanned};
use super::model::{self, Config, Text};
use crate::gateway::{Api, Protocol, Throttle};
use crate::traffic::bucket::{Limit, MAX_RATE};
use crate::traffic::period::{Period, PeriodKind};
use crate::traffic::quota::MAX_LIMIT;
use crate::traffic::{
    Binding, KeySource, Membership, Plan, PlanStage, Quota, RouteLimits, Traffic, NONE,
};

/// API key value length (API Gateway: an alphanumeric string of 20 to 128 characters).
pub(crate) const KEY_VALUE_LEN: (usize, usize) = (20, 128);
/// Longest API key name (API Gateway: 1024).
pub(crate) const MAX_KEY_NAME: usize = 1024;
/// Longest usage plan name.
pub(crate) const MAX_PLAN_NAME: usize = 1024;
/// Largest `burst`.
pub(crate) const MAX_BURST: i64 = 1_000_000_000_000;
pub(crate) const STATE_FLUSH_MS: (i64, i64) = (10, 3_600_000);

/// `throttle = { rate, burst }` checked: rate finite in `0..=MAX_RATE`, burst in
/// `0..=MAX_BURST`.
pub(crate) fn throttle(t: &model::Throttle, d: &mut Diagnostics<'_>) -> Option<Throttle> {
    let rate = t.rate.as_ref().and_then(|r| {
        if r.value.is_finite() && r.value >= 0.0 && r.value <= MAX_RATE {
            Some(r.value)
        } else if r.value.is_finite() && r.value > MAX_RATE {
            d.error(
                r.span.clone(),
                format!("`rate` must be at most {MAX_RATE:.0} requests per second"),
            );
            None
        } else {
            d.error(
                r.span.clone(),
                "`rate` must be a number of requests per second ≥ 0",
            );
            None
        }
    });
    let burst = t.burst.as_ref().and_then(|b| {
        if (0..=MAX_BURST).contains(&b.value) {
            Some(b.value.unsigned_abs())
        } else if b.value < 0 {
            d.error(b.span.clone(), "`burst` must be ≥ 0");
            None
        } else {
            d.error(
                b.span.clone(),
                format!("`burst` must be at most {MAX_BURST}"),
            );
            None
        }
    });
    Some(Throttle {
        rate: rate?,
        burst: burst?,
    })
}

/// A throttle that must not exceed the account's (API Gateway: stage, route and usage plan
/// limits cannot exceed the account-level limits).
fn limited(
    t: &model::Throttle,
    account: Throttle,
    what: &str,
    d: &mut Diagnostics<'_>,
) -> Option<Limit> {
    let th = throttle(t, d)?;
    let mut ok = true;
    if th.rate > account.rate {
        if let Some(r) = &t.rate {
            d.error(
                r.span.clone(),
                format!(
                    "{what} `rate` {} is above the account's {} (`account_throttle` in [server]): no limit can exceed the account's",
                    th.rate, account.rate
                ),
            );
        }
        ok = false;
    }
    if th.burst > account.burst {
        if let Some(b) = &t.burst {
            d.error(
                b.span.clone(),
                format!(
                    "{what} `burst` {} is above the account's {} (`account_throttle` in [server]): no limit can exceed the account's",
                    th.burst, account.burst
                ),
            );
        }
        ok = false;
    }
    ok.then(|| Limit::new(th.rate, th.burst))
}

/// `" (did you mean `x`?)"` or nothing.
fn hint(name: &str, known: &[&str]) -> String {
    decode::closest(name, known).map_or(String::new(), |k| format!(" (did you mean `{k}`?)"))
}

fn names_list(known: &[&str]) -> String {
    if known.is_empty() {
        return "none is defined".to_string();
    }
    let list: Vec<String> = known.iter().take(10).map(|k| format!("`{k}`")).collect();
    let more = if known.len() > 10 { ", ..." } else { "" };
    format!("defined: {}{more}", list.join(", "))
}

/// Where the `[[api_keys]]` of the `api_keys_file` were read, with that file's diagnostics.
pub(crate) struct KeysFile<'a, 't> {
    pub keys: &'a [model::ApiKey],
    pub d: &'a mut Diagnostics<'t>,
}

/// Checks every traffic-control entry and builds the tables; fills `Api::api_key_source` and
/// each `Route::limits` (created by `compile::api` with `api_key_required` set).
pub(crate) fn compile(
    cfg: &Config,
    apis: &mut [Api],
    stage_throttles: &[Vec<Option<Throttle>>],
    account: Throttle,
    keys_file: Option<KeysFile<'_, '_>>,
    d: &mut Diagnostics<'_>,
) -> Traffic {
    let mut traffic = Traffic::new(Limit::new(account.rate, account.burst));
    // Enforced only when written (so a config without traffic control pays nothing per request).
    traffic.account_limited = cfg.server.account_throttle.is_some();
    // Keys: names (for plans) in index order.
    let mut key_names: Vec<String> = Vec::new();
    let mut values: Vec<String> = Vec::new();
    add_keys(&cfg.api_keys, &mut traffic, &mut key_names, &mut values, d);
    if let Some(kf) = keys_file {
        add_keys(kf.keys, &mut traffic, &mut key_names, &mut values, kf.d);
    }
    drop(values);

    key_sources(cfg, apis, d);
    let (slot_base, slots) = stage_limits(cfg, apis, stage_throttles, account, &mut traffic, d);
    traffic.bindings = vec![vec![Binding::UNBOUND; traffic.keys.len()].into(); slots as usize];

    // Usage plans.
    let key_refs: Vec<&str> = key_names.iter().map(String::as_str).collect();
    // For "key in two plans on one stage": (slot, key) → plan name.
    let mut bound: Vec<Vec<Option<u32>>> = vec![vec![None; traffic.keys.len()]; slots as usize];
    for (pi, p) in cfg.usage_plans.iter().enumerate() {
        plan(
            pi,
            p,
            cfg,
            apis,
            &slot_base,
            &key_refs,
            account,
            &mut bound,
            &mut traffic,
            d,
        );
    }
    traffic
}

/// Each API's `api_key_source` (copied into its routes' limits); route keys must not be
/// required where API keys do not exist (http APIs).
fn key_sources(cfg: &Config, apis: &mut [Api], d: &mut Diagnostics<'_>) {
    for (a, api) in cfg.apis.iter().zip(apis.iter_mut()) {
        if let Some(src) = &a.api_key_source {
            match src.value.as_str() {
                "HEADER" => api.api_key_source = KeySource::Header,
                "AUTHORIZER" => api.api_key_source = KeySource::Authorizer,
                other => d.error(
                    src.span.clone(),
                    format!(
                        "unknown `api_key_source` `{other}`{}, expected `HEADER` or `AUTHORIZER`",
                        hint(&other.to_ascii_uppercase(), &["HEADER", "AUTHORIZER"])
                    ),
                ),
            }
        }
        if api.protocol == Protocol::Http {
            for r in &a.routes {
                if let Some(req) = r.api_key_required.as_ref().filter(|r| r.value) {
                    d.error(
                        req.span.clone(),
                        "`api_key_required` is for rest APIs: http APIs have no API keys or usage plans (API Gateway)",
                    );
                }
            }
        }
        for route in &mut api.routes {
            for l in &mut route.limits {
                l.key_source = api.api_key_source;
            }
        }
    }
}

/// Stage buckets, stage route buckets and stage slots in every route's limits; returns each
/// API's first slot and the number of slots.
fn stage_limits(
    cfg: &Config,
    apis: &mut [Api],
    stage_throttles: &[Vec<Option<Throttle>>],
    account: Throttle,
    traffic: &mut Traffic,
    d: &mut Diagnostics<'_>,
) -> (Vec<u32>, u32) {
    let mut slot_base = Vec::with_capacity(apis.len());
    let mut slots = 0u32;
    for (ai, (a, api)) in cfg.apis.iter().zip(apis.iter_mut()).enumerate() {
        slot_base.push(slots);
        for (si, s) in a.stages.iter().enumerate() {
            if si >= api.stages.len() {
                break;
            }
            let slot = slots + u32::try_from(si).unwrap_or(NONE);
            let stage_bucket = match (
                stage_throttles
                    .get(ai)
                    .and_then(|t| t.get(si))
                    .copied()
                    .flatten(),
                &s.throttle,
            ) {
                (Some(_), Some(t)) => {
                    limited(t, account, "the stage", d).map_or(NONE, |l| traffic.add_bucket(l))
                }
                _ => NONE,
            };
            let mut route_buckets = vec![NONE; api.routes.len()];
            for (key, t) in &s.route_throttles {
                if let Some(r) = route_index(key, a, api, d) {
                    if let Some(l) = limited(t, account, "the route", d) {
                        route_buckets[r] = traffic.add_bucket(l);
                    }
                }
            }
            for (r, route) in api.routes.iter_mut().enumerate() {
                if let Some(l) = route.limits.get_mut(si) {
                    l.stage_slot = slot;
                    l.stage_bucket = stage_bucket;
                    l.stage_route_bucket = route_buckets[r];
                }
            }
        }
        slots += u32::try_from(api.stages.len()).unwrap_or(0);
    }
    (slot_base, slots)
}

fn add_keys(
    keys: &[model::ApiKey],
    traffic: &mut Traffic,
    names: &mut Vec<String>,
    values: &mut Vec<String>,
    d: &mut Diagnostics<'_>,
) {
    for k in keys {
        let name = k.name.as_ref().filter(|n| match key_name(&n.value) {
            Ok(()) if names.contains(&n.value) => {
                d.error(
                    n.span.clone(),
                    format!("another API key is already named `{}`", n.value),
                );
                false
            }
            Ok(()) => true,
            Err(reason) => {
                d.error(n.span.clone(), reason);
                false
            }
        });
        let value = k.value.as_ref().filter(|v| match key_value(&v.value) {
            Ok(()) => match values.iter().position(|o| *o == v.value) {
                Some(i) => {
                    let other = names.get(i).map_or("", String::as_str);
                    d.error(
                        v.span.clone(),
                        format!("this value is already the value of API key `{other}`: key values must be unique"),
                    );
                    false
                }
                None => true,
            },
            Err(reason) => {
                d.error(v.span.clone(), reason);
                false
            }
        });
        if let (Some(n), Some(v)) = (name, value) {
            let enabled = k.enabled.as_ref().is_none_or(|e| e.value);
            traffic.add_key(&n.value, &v.value, enabled);
            names.push(n.value.clone());
            values.push(v.value.clone());
        }
    }
}

pub(crate) fn key_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an API key name cannot be empty".to_string());
    }
    if name.chars().count() > MAX_KEY_NAME {
        return Err(format!(
            "an API key name has at most {MAX_KEY_NAME} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("an API key name cannot contain control characters".to_string());
    }
    Ok(())
}

/// The reason never quotes the value (it is a secret).
pub(crate) fn key_value(value: &str) -> Result<(), String> {
    let (min, max) = KEY_VALUE_LEN;
    if !(min..=max).contains(&value.len()) {
        return Err(format!(
            "an API key value has {min} to {max} characters (this one has {})",
            value.chars().count()
        ));
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("an API key value has only letters and digits (A-Z a-z 0-9)".to_string());
    }
    Ok(())
}

fn plan_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a usage plan name cannot be empty".to_string());
    }
    if name.chars().count() > MAX_PLAN_NAME {
        return Err(format!(
            "a usage plan name has at most {MAX_PLAN_NAME} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("a usage plan name cannot contain control characters".to_string());
    }
    Ok(())
}

/// The index in `api.routes` of the route written as `key` in `route_throttles`; reports an
/// unknown route key (an invalid route, reported already, is skipped quietly).
fn route_index(key: &Text, a: &model::Api, api: &Api, d: &mut Diagnostics<'_>) -> Option<usize> {
    if let Some(i) = api.routes.iter().position(|r| *r.key == key.value) {
        return Some(i);
    }
    let written = a
        .routes
        .iter()
        .any(|r| r.key.as_ref().is_some_and(|k| k.value == key.value));
    if !written {
        let known: Vec<&str> = api.routes.iter().map(|r| &*r.key).collect();
        d.error(
            key.span.clone(),
            format!(
                "API `{}` has no route `{}`{} ({})",
                api.name,
                key.value,
                hint(&key.value, &known),
                names_list(&known)
            ),
        );
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn plan(
    pi: usize,
    p: &model::UsagePlan,
    cfg: &Config,
    apis: &[Api],
    slot_base: &[u32],
    key_names: &[&str],
    account: Throttle,
    bound: &mut [Vec<Option<u32>>],
    traffic: &mut Traffic,
    d: &mut Diagnostics<'_>,
) {
    let mut ok = plan_name_free(pi, p, cfg, d);
    let name = p.name.as_ref().map_or("", |n| n.value.as_str());
    let throttle = match &p.throttle {
        None => None,
        Some(t) => match limited(t, account, "the usage plan", d) {
            Some(l) => Some(l),
            None => {
                ok = false;
                None
            }
        },
    };
    let quota = match &p.quota {
        None => None,
        Some(q) => match quota(q, d) {
            Some(q) => Some(q),
            None => {
                ok = false;
                None
            }
        },
    };
    let keys = plan_keys(p, key_names, d, &mut ok);
    // Stages: (slot, api index, route throttle limits by route index).
    let mut stages: Vec<(u32, usize, Vec<Option<Limit>>)> = Vec::with_capacity(p.stages.len());
    for s in &p.stages {
        let Some((ai, si)) = plan_stage_target(s, apis, d, &mut ok) else {
            continue;
        };
        let api = &apis[ai];
        let slot = slot_base[ai] + u32::try_from(si).unwrap_or(NONE);
        if stages.iter().any(|(sl, _, _)| *sl == slot) {
            d.error(
                s.span.clone(),
                format!(
                    "stage `{}` of API `{}` is listed twice in this plan",
                    api.stages[si].name, api.name
                ),
            );
            ok = false;
            continue;
        }
        let routes = plan_route_limits(s, &cfg.apis[ai], api, account, d, &mut ok);
        if let Some(row) = bound.get_mut(slot as usize) {
            ok &= bind_keys(pi, &keys, row, cfg, api, si, d);
        }
        stages.push((slot, ai, routes));
    }
    if !ok {
        return;
    }

    // The tables.
    let plan_index = u32::try_from(traffic.plans.len()).unwrap_or(NONE);
    traffic.plans.push(Plan {
        name: name.into(),
        quota,
    });
    let (route_limits, plan_stage_index) = add_plan_stages(plan_index, &stages, traffic);
    add_memberships(
        plan_index,
        throttle,
        &keys,
        &route_limits,
        &plan_stage_index,
        traffic,
    );
}

/// Checks the name of usage plan `pi` (valid, not taken by an earlier plan); `false` after an
/// error.
fn plan_name_free(pi: usize, p: &model::UsagePlan, cfg: &Config, d: &mut Diagnostics<'_>) -> bool {
    let Some(n) = &p.name else { return true };
    if let Err(reason) = plan_name(&n.value) {
        d.error(n.span.clone(), reason);
        false
    } else if cfg.usage_plans[..pi]
        .iter()
        .any(|q| q.name.as_ref().is_some_and(|m| m.value == n.value))
    {
        d.error(
            n.span.clone(),
            format!("another usage plan is already named `{}`", n.value),
        );
        false
    } else {
        true
    }
}

/// The plan's `keys` as indexes into `key_names`, each with where it was written; a key listed
/// twice is reported and kept once, an unknown one is reported and clears `ok`.
fn plan_keys<'p>(
    p: &'p model::UsagePlan,
    key_names: &[&str],
    d: &mut Diagnostics<'_>,
    ok: &mut bool,
) -> Vec<(u32, &'p Text)> {
    let mut keys: Vec<(u32, &Text)> = Vec::with_capacity(p.keys.len());
    for k in &p.keys {
        match key_names.iter().position(|n| *n == k.value) {
            Some(i) => {
                let i = u32::try_from(i).unwrap_or(NONE);
                if keys.iter().any(|(j, _)| *j == i) {
                    d.error(
                        k.span.clone(),
                        format!("API key `{}` is listed twice in this plan", k.value),
                    );
                } else {
                    keys.push((i, k));
                }
            }
            None => {
                d.error(
                    k.span.clone(),
                    format!(
                        "unknown API key `{}`{} ({} in [[api_keys]])",
                        k.value,
                        hint(&k.value, key_names),
                        names_list(key_names)
                    ),
                );
                *ok = false;
            }
        }
    }
    keys
}

/// The (API index, stage index) a plan's `stages` entry names; `None` when it is incomplete
/// (quietly) or names an unknown API or stage or an http API (reported, clears `ok`).
fn plan_stage_target(
    s: &model::PlanStage,
    apis: &[Api],
    d: &mut Diagnostics<'_>,
    ok: &mut bool,
) -> Option<(usize, usize)> {
    let api_name = s.api.as_ref()?;
    let Some(ai) = apis.iter().position(|a| *a.name == api_name.value) else {
        let known: Vec<&str> = apis.iter().map(|a| &*a.name).collect();
        d.error(
            api_name.span.clone(),
            format!(
                "unknown API `{}`{} ({})",
                api_name.value,
                hint(&api_name.value, &known),
                names_list(&known)
            ),
        );
        *ok = false;
        return None;
    };
    let api = &apis[ai];
    if api.protocol == Protocol::Http {
        d.error(
            api_name.span.clone(),
            format!(
                "API `{}` is an http API: usage plans are for rest APIs (API Gateway)",
                api.name
            ),
        );
        *ok = false;
        return None;
    }
    let stage_name = s.stage.as_ref()?;
    let Some(si) = api
        .stages
        .iter()
        .position(|st| *st.name == stage_name.value)
    else {
        let known: Vec<&str> = api.stages.iter().map(|st| &*st.name).collect();
        d.error(
            stage_name.span.clone(),
            format!(
                "API `{}` has no stage `{}`{} ({})",
                api.name,
                stage_name.value,
                hint(&stage_name.value, &known),
                names_list(&known)
            ),
        );
        *ok = false;
        return None;
    };
    Some((ai, si))
}

/// A plan stage's `route_throttles` as limits by route index; an unknown route or a bad limit
/// clears `ok`.
fn plan_route_limits(
    s: &model::PlanStage,
    a: &model::Api,
    api: &Api,
    account: Throttle,
    d: &mut Diagnostics<'_>,
    ok: &mut bool,
) -> Vec<Option<Limit>> {
    let mut routes = vec![None; api.routes.len()];
    for (key, t) in &s.route_throttles {
        match route_index(key, a, api, d) {
            Some(r) => match limited(t, account, "the route", d) {
                Some(l) => routes[r] = Some(l),
                None => *ok = false,
            },
            None => *ok = false,
        }
    }
    routes
}

/// Binds the plan's keys on one stage (`row`: that stage's plan by key): a key is in at most
/// one usage plan per stage. `false` after an error.
fn bind_keys(
    pi: usize,
    keys: &[(u32, &Text)],
    row: &mut [Option<u32>],
    cfg: &Config,
    api: &Api,
    si: usize,
    d: &mut Diagnostics<'_>,
) -> bool {
    let mut ok = true;
    for (k, at) in keys {
        let Some(cell) = row.get_mut(*k as usize) else {
            continue;
        };
        match cell {
            Some(other) => {
                let other = cfg.usage_plans[*other as usize]
                    .name
                    .as_ref()
                    .map_or("", |n| n.value.as_str());
                d.error(
                    at.span.clone(),
                    format!(
                        "API key `{}` is already in usage plan `{other}` on stage `{}` of API `{}`: a key is in at most one usage plan per stage",
                        at.value, api.stages[si].name, api.name
                    ),
                );
                ok = false;
            }
            None => *cell = Some(u32::try_from(pi).unwrap_or(NONE)),
        }
    }
    ok
}

/// Adds a `PlanStage` per stage of plan `plan_index`; returns the plan's route limits (in
/// order, one bucket each per key) and each stage's (slot, plan stage index).
fn add_plan_stages(
    plan_index: u32,
    stages: &[(u32, usize, Vec<Option<Limit>>)],
    traffic: &mut Traffic,
) -> (Vec<Limit>, Vec<(u32, u32)>) {
    let mut route_limits: Vec<Limit> = Vec::new();
    let mut plan_stage_index = Vec::with_capacity(stages.len());
    for (slot, _, routes) in stages {
        let offsets: Box<[u32]> = routes
            .iter()
            .map(|l| match l {
                Some(l) => {
                    route_limits.push(*l);
                    u32::try_from(route_limits.len() - 1).unwrap_or(NONE)
                }
                None => NONE,
            })
            .collect();
        plan_stage_index.push((
            *slot,
            u32::try_from(traffic.plan_stages.len()).unwrap_or(NONE),
        ));
        traffic.plan_stages.push(PlanStage {
            plan: plan_index,
            routes: offsets,
        });
    }
    (route_limits, plan_stage_index)
}

/// Adds each key's membership of plan `plan_index` (its own throttle and route buckets) and
/// binds it on each of the plan's stages.
fn add_memberships(
    plan_index: u32,
    throttle: Option<Limit>,
    keys: &[(u32, &Text)],
    route_limits: &[Limit],
    plan_stage_index: &[(u32, u32)],
    traffic: &mut Traffic,
) {
    for (k, _) in keys {
        let throttle_bucket = throttle.map_or(NONE, |l| traffic.add_bucket(l));
        let route_base = u32::try_from(traffic.limits.len()).unwrap_or(NONE);
        for l in route_limits {
            traffic.add_bucket(*l);
        }
        let membership = u32::try_from(traffic.memberships.len()).unwrap_or(NONE);
        traffic.memberships.push(Membership {
            plan: plan_index,
            key: *k,
            throttle_bucket,
            route_base,
        });
        for (slot, plan_stage) in plan_stage_index {
            if let Some(b) = traffic
                .bindings
                .get_mut(*slot as usize)
                .and_then(|b| b.get_mut(*k as usize))
            {
                *b = Binding {
                    membership,
                    plan_stage: *plan_stage,
                };
            }
        }
    }
}

/// `quota = { limit, period, offset }`; `None` after an error.
fn quota(q: &model::Quota, d: &mut Diagnostics<'_>) -> Option<Quota> {
    let limit = q.limit.as_ref().and_then(|l| match u64::try_from(l.value) {
        Ok(n) if n <= MAX_LIMIT => Some(n),
        _ => {
            d.error(
                l.span.clone(),
                format!("`limit` must be between 0 and {MAX_LIMIT} requests per period"),
            );
            None
        }
    });
    let kind = q.period.as_ref().and_then(|p| {
        let kind = PeriodKind::from_name(&p.value);
        if kind.is_none() {
            d.error(
                p.span.clone(),
                format!(
                    "unknown quota period `{}`{}, expected `DAY`, `WEEK` or `MONTH`",
                    p.value,
                    hint(&p.value.to_ascii_uppercase(), &["DAY", "WEEK", "MONTH"])
                ),
            );
        }
        kind
    });
    let offset = quota_offset(q.offset.as_ref(), limit, d);
    Some(Quota {
        limit: limit?,
        period: Period::new(kind?),
        offset: offset?,
    })
}

/// `quota.offset`: requests subtracted from the limit in the initial period (API Gateway's
/// `QuotaSettings.offset`), `0 <= offset < limit`; default 0. `None` after an error.
fn quota_offset(
    offset: Option<&Spanned<i64>>,
    limit: Option<u64>,
    d: &mut Diagnostics<'_>,
) -> Option<u64> {
    let Some(o) = offset else { return Some(0) };
    match (u64::try_from(o.value), limit) {
        (Ok(n), Some(l)) if n < l => Some(n),
        (Ok(n), None) => Some(n),
        (_, limit) => {
            d.error(
                o.span.clone(),
                match limit {
                    Some(0) => "`offset` must be 0 when `limit` is 0 (it is the number of requests subtracted from the limit in the initial period)".to_string(),
                    Some(l) => format!(
                        "`offset` must be between 0 and {} (below `limit` = {l}): it is the number of requests subtracted from the limit in the initial period",
                        l - 1
                    ),
                    None => "`offset` must be 0 or more: it is the number of requests subtracted from the limit in the initial period".to_string(),
                },
            );
            None
        }
    }
}

/// `[server] state_flush_ms`.
pub(crate) fn flush_ms(v: &Option<Spanned<i64>>, d: &mut Diagnostics<'_>) -> Option<u64> {
    let v = v.as_ref()?;
    let (min, max) = STATE_FLUSH_MS;
    if (min..=max).contains(&v.value) {
        Some(v.value.unsigned_abs())
    } else {
        d.error(
            v.span.clone(),
            format!("`state_flush_ms` must be between {min} and {max}"),
        );
        None
    }
}

/// A route's limits before `compile` resolves its stage (one per stage).
pub(crate) fn route_limits(route: u32, api_key_required: bool, stages: usize) -> Vec<RouteLimits> {
    vec![
        RouteLimits {
            api_key_required,
            key_source: KeySource::Header,
            route,
            stage_slot: NONE,
            stage_route_bucket: NONE,
            stage_bucket: NONE,
        };
        stages
    ]
}
