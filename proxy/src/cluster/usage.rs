//! `tollgate usage` with `[cluster]`: the counters of the current periods, read from Redis.

use std::time::Duration;
use tollgate_core::gateway::Gateway;
use tollgate_core::traffic::state;

use super::counter::counters;

/// `tollgate usage` with `[cluster]`: the current period's count of every quota counter,
/// from Redis (what hosts leased: the requests admitted plus the small blocks still held).
pub fn usage_entries(gw: &Gateway, unix_secs: i64) -> Result<Vec<state::Entry>, String> {
    let Some(settings) = &gw.settings.cluster else {
        return Ok(Vec::new());
    };
    let fail = |e: redis::RedisError| format!("tollgate usage: Redis {}: {e}", settings.redis);
    let client = redis::Client::open(settings.redis.as_str()).map_err(fail)?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .map_err(fail)?;
    let t = &gw.traffic;
    let today = unix_secs.div_euclid(86_400);
    let mut out = Vec::new();
    for c in counters(t, &settings.key_prefix) {
        let Some(m) = t.memberships.get(c.index) else {
            continue;
        };
        let (Some(plan), Some(key)) = (t.plans.get(m.plan as usize), t.keys.get(m.key as usize))
        else {
            continue;
        };
        let day = c.period.start_day(today);
        let used: Option<u64> = redis::cmd("GET")
            .arg(format!("{}{day}", c.base))
            .query(&mut conn)
            .map_err(fail)?;
        out.push(state::Entry {
            plan: plan.name.to_string(),
            key: key.name.to_string(),
            period_start: day * 86_400,
            used: used.unwrap_or(0),
        });
    }
    Ok(out)
}
