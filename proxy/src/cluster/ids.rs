//! Stable identities of throttle limits in Redis (`limit_ids`): the same limit gets the same
//! identity on every host, whatever its bucket index there.

use std::collections::HashMap;
use tollgate_core::gateway::{Api, Gateway};
use tollgate_core::traffic::bucket::Limit;
use tollgate_core::traffic::{Binding, Membership, PlanStage};

/// FNV-1a, 64 bits: a hash every host computes alike (no per-process seed).
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Per limit (bucket index), a stable identity for its demand in Redis: a 16-hex-digit hash of
/// what the limit is (the account; an API's stage; a stage's route; a plan and key; a plan,
/// key, stage and route) and its rate and burst. Hosts whose configs differ for a while (one
/// reloaded, the other not yet) share a limit only when both have it with the same rate and
/// burst; a limit on only some hosts is shared only among them. Unnamed buckets (none today)
/// fall back to their index.
pub(super) fn limit_ids(gw: &Gateway) -> Vec<String> {
    let t = &gw.traffic;
    let mut names: Vec<Option<String>> = vec![None; t.limits.len()];
    name_bucket(&mut names, 0, "account".to_string());
    let slots = name_stage_buckets(gw, &mut names);
    for m in &t.memberships {
        name_membership_buckets(gw, &slots, m, &mut names);
    }
    hashed_ids(names, &t.limits)
}

/// Names bucket `b` `what` unless it has a name already (the first name wins).
pub(super) fn name_bucket(names: &mut [Option<String>], b: u32, what: String) {
    if let Some(slot) = names.get_mut(b as usize) {
        slot.get_or_insert(what);
    }
}

/// Names the stage and stage-route buckets; returns stage slot → (api, stage) names.
pub(super) fn name_stage_buckets<'g>(
    gw: &'g Gateway,
    names: &mut [Option<String>],
) -> HashMap<u32, (&'g str, &'g str)> {
    let mut slots: HashMap<u32, (&str, &str)> = HashMap::new();
    for api in &gw.apis {
        for route in &api.routes {
            for (si, l) in route.limits.iter().enumerate() {
                let Some(stage) = api.stages.get(si) else {
                    continue;
                };
                slots.insert(l.stage_slot, (&api.name, &stage.name));
                name_bucket(
                    names,
                    l.stage_bucket,
                    format!("stage\0{}\0{}", api.name, stage.name),
                );
                name_bucket(
                    names,
                    l.stage_route_bucket,
                    format!("stage-route\0{}\0{}\0{}", api.name, stage.name, route.key),
                );
            }
        }
    }
    slots
}

/// Names membership `m`'s plan throttle and its plan-route buckets on every stage it is
/// bound to.
pub(super) fn name_membership_buckets(
    gw: &Gateway,
    slots: &HashMap<u32, (&str, &str)>,
    m: &Membership,
    names: &mut [Option<String>],
) {
    let t = &gw.traffic;
    let (Some(plan), Some(key)) = (t.plans.get(m.plan as usize), t.keys.get(m.key as usize)) else {
        return;
    };
    name_bucket(
        names,
        m.throttle_bucket,
        format!("plan\0{}\0{}", plan.name, key.name),
    );
    for (slot, bindings) in t.bindings.iter().enumerate() {
        let Some((ps, api, api_name, stage_name)) = bound_stage(gw, slots, m, slot, bindings)
        else {
            continue;
        };
        for (r, offset) in ps.routes.iter().enumerate() {
            if *offset == tollgate_core::traffic::NONE {
                continue;
            }
            let Some(route) = api.routes.get(r) else {
                continue;
            };
            name_bucket(
                names,
                m.route_base.saturating_add(*offset),
                format!(
                    "plan-route\0{}\0{}\0{api_name}\0{stage_name}\0{}",
                    plan.name, key.name, route.key
                ),
            );
        }
    }
}

/// The plan stage, API and (api, stage) names of stage slot `slot` if `m`'s key is bound
/// there to `m`'s plan.
pub(super) fn bound_stage<'g>(
    gw: &'g Gateway,
    slots: &HashMap<u32, (&'g str, &'g str)>,
    m: &Membership,
    slot: usize,
    bindings: &[Binding],
) -> Option<(&'g PlanStage, &'g Api, &'g str, &'g str)> {
    let b = bindings.get(m.key as usize)?;
    let ps = gw.traffic.plan_stages.get(b.plan_stage as usize)?;
    let (api_name, stage_name) = u32::try_from(slot).ok().and_then(|s| slots.get(&s))?;
    let api = gw.apis.iter().find(|a| &*a.name == *api_name)?;
    if ps.plan != m.plan {
        return None;
    }
    Some((ps, api, api_name, stage_name))
}

/// Each bucket's identity: the hash of its name (or its index), rate and burst.
pub(super) fn hashed_ids(names: Vec<Option<String>>, limits: &[Limit]) -> Vec<String> {
    names
        .into_iter()
        .zip(limits)
        .enumerate()
        .map(|(b, (n, l))| {
            let what = n.unwrap_or_else(|| format!("bucket\0{b}"));
            let h = fnv1a(format!("{what}\0{}\0{}", l.rate_milli, l.burst).as_bytes());
            format!("{h:016x}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config with every kind of limit; `stage_b` is stage b's throttle line (or nothing).
    fn limits_config(stage_b: &str, plan_rate: f64) -> Gateway {
        let text = format!(
            r#"
[server]
account_throttle = {{ rate = 1000.0, burst = 500 }}
[[listeners]]
address = "127.0.0.1"
port = 8080
[cluster]
redis = "redis://127.0.0.1:1/0"
[[api_keys]]
name = "alice"
value = "alice0123456789abcdef"
[[api_keys]]
name = "bob"
value = "bob0123456789abcdefgh"
[[usage_plans]]
name = "gold"
throttle = {{ rate = {plan_rate:.1}, burst = 10 }}
keys = ["alice", "bob"]
  [[usage_plans.stages]]
  api = "a"
  stage = "prod"
  route_throttles = {{ "GET /x" = {{ rate = 5.0, burst = 5 }} }}
[[apis]]
name = "a"
protocol = "rest"
  [[apis.stages]]
  name = "b"
  {stage_b}
  [[apis.stages]]
  name = "prod"
  throttle = {{ rate = 50.0, burst = 10 }}
  route_throttles = {{ "GET /x" = {{ rate = 20.0, burst = 10 }} }}
  [[apis.routes]]
  key = "GET /x"
  integration = {{ type = "mock", status = 200 }}
"#
        );
        tollgate_core::config::load_str("<ids>", &text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// Limit identity → its limit, for one config.
    fn ids_by_limit(gw: &Gateway) -> HashMap<String, Limit> {
        let ids = limit_ids(gw);
        assert_eq!(ids.len(), gw.traffic.limits.len());
        ids.into_iter()
            .zip(gw.traffic.limits.iter().copied())
            .collect()
    }

    #[test]
    fn limit_identities_are_stable_unique_and_follow_rate_and_burst() {
        let one = limits_config("", 10.0);
        let ids = ids_by_limit(&one);
        // Account, stage prod, stage-route, 2 × (plan, plan route): all distinct.
        assert_eq!(ids.len(), 7, "{ids:?}");
        assert_eq!(ids.len(), one.traffic.limits.len());
        // The same config built again: the same identities (no per-process seed).
        assert_eq!(limit_ids(&one), limit_ids(&limits_config("", 10.0)));
        // Another host's config has one more limit (a throttle on stage b, compiled before
        // prod's, so every later bucket index shifts): the limits both have keep their
        // identity; the new one is only on that host.
        let two = limits_config("throttle = { rate = 7.0, burst = 3 }", 10.0);
        let ids_two = ids_by_limit(&two);
        assert_eq!(ids_two.len(), 8);
        // Stage prod's throttle was bucket 1, is bucket 2 on the other host: same identity;
        // stage b's (bucket 1 there) is not in the first config.
        assert_eq!(limit_ids(&one)[1], limit_ids(&two)[2]);
        assert!(!ids.contains_key(&limit_ids(&two)[1]));
        for (id, l) in &ids {
            assert_eq!(ids_two.get(id), Some(l), "{id} lost or changed its limit");
        }
        // The plan throttle's rate changed: those (per key) are new identities, the rest
        // are shared.
        let three = limits_config("", 12.0);
        let ids_three = ids_by_limit(&three);
        let shared = ids.keys().filter(|id| ids_three.contains_key(*id)).count();
        assert_eq!(shared, 5, "alice's and bob's plan throttles changed");
    }
}
