//! Follow-on-reload: `follow` hands a reloaded traffic state to the sync thread, which carries
//! each counter's and limit's account with Redis over by identity and retires (`Retiring`) the
//! counters the new config lacks.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tollgate_core::gateway::Gateway;
use tollgate_core::traffic::bucket::Limit;
use tollgate_core::traffic::cluster::{self as logic, HostStock};

use super::counter::{counters, Counter};
use super::ids::limit_ids;
use super::link::Link;
use super::quota::Mode;
use super::sync::Sync;
use crate::traffic_state::TrafficShared;

/// A config reload's order to the sync thread: from now on stock and sync `shared` (its
/// limits named by `ids`); the thread answers on `reply` once it did.
pub struct Follow {
    pub(super) shared: Arc<TrafficShared>,
    pub(super) ids: Vec<String>,
    pub(super) reply: mpsc::Sender<()>,
}

/// How long a reload waits for the sync thread to take its new traffic state (one Redis
/// round trip normally; a call in progress can take up to its timeout, 1 s).
pub(super) const FOLLOW_WAIT: Duration = Duration::from_secs(3);

/// Retired groups are given back to Redis at this many regular syncs after their reload's
/// hand-over (late releases of leases included), then forgotten.
pub(super) const RETIRE_SYNCS: u32 = 2;

/// Config reload: has the host's sync thread (which stocks `old`) follow `new`, built by
/// `traffic_state::successor` with the quota counters of unchanged identity sharing `old`'s
/// slots. Returns once the thread stocked `new`'s other counters and took its throttle
/// limits (or after `FOLLOW_WAIT`; it follows anyway), so shards swapping to `new` find
/// stock. Nothing when either has no cluster link.
pub fn follow(old: &TrafficShared, new: &Arc<TrafficShared>, gw: &Gateway) {
    let (Some(ol), Some(nl)) = (old.link.as_ref(), new.link.as_ref()) else {
        return;
    };
    let Some(tx) = ol.follow.get() else {
        return;
    };
    let _ = nl.follow.set(tx.clone());
    if let Some(t) = ol.waker.get() {
        nl.set_waker(t.clone());
    }
    let (reply, answer) = mpsc::channel();
    let order = Follow {
        shared: new.clone(),
        ids: limit_ids(gw),
        reply,
    };
    let sent = tx.send(order).is_ok();
    ol.wake();
    if sent && answer.recv_timeout(FOLLOW_WAIT).is_err() {
        eprintln!(
            "tollgate: cluster: the sync thread did not take the reloaded limits within {FOLLOW_WAIT:?}; it will when its Redis call returns (shards admit on credit meanwhile)"
        );
    }
}

/// The counters of a traffic state a reload replaced, whose identity the new config does
/// not have (plan or key gone, quota period changed): once the reload handed over, their
/// stock and what they owe go back to Redis for `RETIRE_SYNCS` regular syncs, then they are
/// forgotten.
pub(super) struct Retiring {
    pub(super) shared: Arc<TrafficShared>,
    pub(super) counters: Vec<Counter>,
    /// Regular syncs left once `shared` is retired (`None`: not yet).
    pub(super) syncs_left: Option<u32>,
}

impl Sync {
    /// Whether a reload handed over since the last look (every shard runs the new generation):
    /// its retired counters are given back from the next regular sync on, and the counters
    /// whose limit changed give back at once what the shards returned while swapping
    /// (leases taken under the old limit).
    pub(super) fn retire_check(&mut self) -> bool {
        let mut reset = false;
        for r in &mut self.retiring {
            if r.syncs_left.is_some() || !r.shared.is_retired() {
                continue;
            }
            r.syncs_left = Some(RETIRE_SYNCS);
            if let Some(stock) = r.shared.store.cluster() {
                for c in &r.counters {
                    stock.set_credit_budget(c.index, 0);
                }
            }
            for c in &mut self.counters {
                if c.reset_on_retire {
                    c.reset_on_retire = false;
                    c.reset = true;
                    reset = true;
                }
            }
        }
        reset
    }

    /// A reload (`follow`): from now on stock and sync `order.shared`. Its counters that
    /// share a slot with one followed so far (same plan, key and period: see
    /// `HostStock::successor`) keep that counter's account with Redis (held, period, demand;
    /// nothing moves: the stock is the same atomics); a changed limit gives the stock back
    /// and leases anew under it. Counters the new config does not have retire (`Retiring`).
    /// Limits keep their smoothed demand and host share by identity; new ones start at an
    /// equal share per host. Then one lease round stocks the new counters before answering.
    pub(super) fn follow(&mut self, order: Follow) {
        let target = order.shared;
        let mut fresh = counters(target.tables(), &self.settings.key_prefix);
        let old = std::mem::replace(&mut self.shared, target.clone());
        let mut old_counters = std::mem::take(&mut self.counters);
        if let Some(ns) = target.store.cluster() {
            self.carry_counters(&mut fresh, &mut old_counters, &old, ns);
            ns.set_waker(std::thread::current());
            ns.set_fail_open(self.failed_open);
        }
        if let Some(l) = target.link.as_ref() {
            l.set_waker(std::thread::current());
        }
        self.counters = fresh;
        self.retire(&old, &target, old_counters);
        self.follow_throttles(&old, &target, order.ids);
        self.roll_periods();
        if self.conn.is_some() {
            if let Err(e) = self.sync_quotas(Mode::Refill) {
                self.failed(&e);
            }
        }
        self.set_credit_budgets();
        self.arm();
        let _ = order.reply.send(());
    }

    /// Each of `fresh` (counters of the new store `ns`) that shares a slot with one of
    /// `old_counters` (of `old`) or of a retiring generation takes over that one's account.
    pub(super) fn carry_counters(
        &mut self,
        fresh: &mut [Counter],
        old_counters: &mut Vec<Counter>,
        old: &TrafficShared,
        ns: &HostStock,
    ) {
        for nc in fresh {
            let found = take_match(old_counters, old, ns, nc.index).or_else(|| {
                self.retiring
                    .iter_mut()
                    .find_map(|r| take_match(&mut r.counters, &r.shared, ns, nc.index))
            });
            let Some(oc) = found else { continue };
            carry_counter(nc, &oc, ns);
        }
    }

    /// From now on `old` (unless it is `target`) retires with `old_counters`; `target` no
    /// longer does.
    pub(super) fn retire(
        &mut self,
        old: &Arc<TrafficShared>,
        target: &Arc<TrafficShared>,
        old_counters: Vec<Counter>,
    ) {
        self.retiring.retain(|r| !Arc::ptr_eq(&r.shared, target));
        if !Arc::ptr_eq(old, target) {
            self.retiring.push(Retiring {
                shared: old.clone(),
                counters: old_counters,
                syncs_left: None,
            });
        }
    }

    /// Throttles, by limit identity: `target`'s limits (named by `ids`) keep `old`'s
    /// smoothed demand and host share, new ones start at an equal share per host.
    pub(super) fn follow_throttles(
        &mut self,
        old: &TrafficShared,
        target: &TrafficShared,
        ids: Vec<String>,
    ) {
        let limits = target.tables().limits.clone();
        let mut by_id = HashMap::with_capacity(ids.len());
        for (b, id) in ids.iter().enumerate() {
            by_id.entry(id.clone()).or_insert(b);
        }
        let mut smoothed = vec![0; limits.len()];
        let mut totals = vec![0; limits.len()];
        if let Some(link) = target.link.as_ref() {
            for (b, id) in ids.iter().enumerate() {
                let Some(l) = limits.get(b) else { continue };
                match self.carried_throttle(old, link, b, id) {
                    Some((share, s, t)) => {
                        link.set_host_limit(b, share);
                        smoothed[b] = s;
                        totals[b] = t;
                    }
                    None if self.failed_open => {
                        link.set_host_limit(b, logic::fallback_share(*l, self.hosts));
                    }
                    None => link.set_host_limit(b, logic::host_share(*l, 0, 0, self.hosts)),
                }
            }
        }
        self.limits = limits;
        self.ids = ids;
        self.by_id = by_id;
        self.smoothed = smoothed;
        self.totals = totals;
    }

    /// For the new limit `b` (identity `id`) of `link`: the old generation's same limit hands
    /// its demand since the last sync to `link`; returns that limit's host share, smoothed
    /// demand and total, if `old` had it.
    pub(super) fn carried_throttle(
        &self,
        old: &TrafficShared,
        link: &Link,
        b: usize,
        id: &str,
    ) -> Option<(Limit, u64, u64)> {
        let ob = self.by_id.get(id).copied()?;
        let ol = old.link.as_ref()?;
        // Demand the old generation's rounds handed in since the last sync.
        let d = ol
            .demand
            .get(ob)
            .map_or(0, |d| d.swap(0, Ordering::Relaxed));
        link.add_demand(b, d);
        Some((
            ol.host_limit(ob)?,
            self.smoothed.get(ob).copied().unwrap_or(0),
            self.totals.get(ob).copied().unwrap_or(0),
        ))
    }
}

/// Takes out of `from` (counters of `owner`'s store) the one whose slot is `store`'s counter `c`.
pub(super) fn take_match(
    from: &mut Vec<Counter>,
    owner: &TrafficShared,
    store: &HostStock,
    c: usize,
) -> Option<Counter> {
    let os = owner.store.cluster()?;
    let p = from
        .iter()
        .position(|oc| store.shares_slot(c, os, oc.index))?;
    Some(from.swap_remove(p))
}

/// The new counter `nc` (of store `ns`) takes over `oc`'s account with Redis; a changed limit
/// gives the stock back and leases anew under it.
pub(super) fn carry_counter(nc: &mut Counter, oc: &Counter, ns: &HostStock) {
    nc.day = oc.day;
    nc.held = oc.held;
    nc.last_taken = oc.last_taken;
    nc.consumed = oc.consumed;
    nc.idle = oc.idle;
    nc.known = oc.known;
    if oc.limit == nc.limit {
        nc.spent = oc.spent;
        nc.spent_ticks = oc.spent_ticks;
        nc.reset = oc.reset;
        nc.reset_on_retire = oc.reset_on_retire;
    } else {
        nc.reset = true;
        nc.reset_on_retire = true;
        ns.set_spent(nc.index, false);
    }
}
