//! `Counter`: one quota counter (a membership with a quota) as the sync thread follows it —
//! its Redis key names, period and account with Redis (`held`, demand, spent, reset).

use std::fmt::Write as _;
use tollgate_core::traffic::period::Period;
use tollgate_core::traffic::Traffic;

/// `{prefix}q:{plan length}:{plan}:{key}:` (the period's first day is appended): the length
/// keeps names with `:` apart.
pub(super) fn count_base(prefix: &str, plan: &str, key: &str) -> String {
    format!("{prefix}q:{}:{plan}:{key}:", plan.len())
}

pub(super) fn seen_key(prefix: &str, plan: &str, key: &str) -> String {
    format!("{prefix}seen:{}:{plan}:{key}", plan.len())
}

/// One quota counter (membership with a quota) as the sync thread follows it.
pub(super) struct Counter {
    pub(super) index: usize,
    pub(super) base: String,
    pub(super) seen: String,
    pub(super) limit: u64,
    pub(super) offset: u64,
    pub(super) period: Period,
    /// First day of the period being leased (`i64::MIN`: none yet).
    pub(super) day: i64,
    /// What Redis counts for this host in the period.
    pub(super) held: u64,
    pub(super) last_taken: u64,
    /// Demand in the last regular sync interval: requests admitted (net of the leases given
    /// back) plus requests refused for an empty stock.
    pub(super) consumed: u64,
    pub(super) idle: u32,
    /// Redis said nothing is left; asked again every `SPENT_RETRY_TICKS` only.
    pub(super) spent: bool,
    pub(super) spent_ticks: u32,
    /// A lease call succeeded once in this process: the offset is never charged again.
    pub(super) known: bool,
    /// The quota limit changed on a reload: the next lease call gives the whole stock back
    /// and leases anew under the new limit.
    pub(super) reset: bool,
    /// ... and once more after the reload's hand-over (leases the shards gave back while
    /// they swapped).
    pub(super) reset_on_retire: bool,
    /// The count key of period `key_day` (`key`), kept between syncs: rebuilt only when the
    /// period changed.
    pub(super) key: String,
    pub(super) key_day: i64,
}

impl Counter {
    /// The count key of the period being leased: `base` and the period's first day.
    pub(super) fn key(&mut self) -> &str {
        if self.key_day != self.day || self.key.is_empty() {
            self.key.clear();
            let _ = write!(self.key, "{}{}", self.base, self.day);
            self.key_day = self.day;
        }
        &self.key
    }

    pub(super) fn expire_at_ms(&self) -> u64 {
        u64::try_from(self.period.next_start_day(self.day))
            .unwrap_or(0)
            .saturating_mul(86_400_000)
    }
}

pub(super) fn counters(t: &Traffic, prefix: &str) -> Vec<Counter> {
    let mut out = Vec::new();
    for (index, m) in t.memberships.iter().enumerate() {
        let (Some(plan), Some(key)) = (t.plans.get(m.plan as usize), t.keys.get(m.key as usize))
        else {
            continue;
        };
        let Some(q) = plan.quota else { continue };
        out.push(Counter {
            index,
            base: count_base(prefix, &plan.name, &key.name),
            seen: seen_key(prefix, &plan.name, &key.name),
            limit: q.limit,
            offset: q.offset,
            period: q.period,
            day: i64::MIN,
            held: 0,
            last_taken: 0,
            consumed: 0,
            idle: 0,
            spent: false,
            spent_ticks: 0,
            known: false,
            reset: false,
            reset_on_retire: false,
            key: String::new(),
            key_day: i64::MIN,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_keep_plan_and_key_apart() {
        assert_ne!(count_base("t:", "a:b", "c"), count_base("t:", "a", "b:c"));
        assert_eq!(count_base("t:", "gold", "alice"), "t:q:4:gold:alice:");
        assert_eq!(seen_key("t:", "gold", "alice"), "t:seen:4:gold:alice");
    }

    #[test]
    fn the_count_key_follows_the_period() {
        let gw = tollgate_core::config::load_str(
            "<key>",
            r#"
[[listeners]]
address = "127.0.0.1"
port = 8080
[[api_keys]]
name = "alice"
value = "alice0123456789abcdef"
[[usage_plans]]
name = "gold"
quota = { limit = 100, period = "DAY" }
keys = ["alice"]
"#,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let mut cs = counters(&gw.traffic, "t:");
        assert_eq!(cs.len(), 1);
        let c = &mut cs[0];
        c.day = 20_000;
        assert_eq!(c.key(), "t:q:4:gold:alice:20000");
        assert_eq!(c.key(), "t:q:4:gold:alice:20000");
        c.day = 20_001;
        assert_eq!(c.key(), "t:q:4:gold:alice:20001");
    }
}
