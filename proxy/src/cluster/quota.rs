//! Quota leases: the lease round of a sync (`sync_quotas`: one pipelined `LEASE_LUA` call per
//! counter that owes, wants or gives back stock), what each counter asks for, and how
//! Redis's answers are booked into the `HostStock`; period rollover (`roll_periods`).

use redis::RedisResult;
use std::sync::atomic::Ordering;
use tollgate_core::traffic::cluster::{self as logic, HostStock};

use super::counter::Counter;
use super::health::Conn;
use super::stats::STATS;
use super::sync::{unix_ms, Sync};

/// A spent counter (Redis said nothing is left) is asked again at most every this many syncs.
pub(super) const SPENT_RETRY_TICKS: u32 = 5;

/// What a quota sync does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// The regular sync: measure consumption, refill, give idle stock back, pay debts.
    Sync,
    /// Between syncs, after a miss: refill empty stocks only (consumption is not measured).
    Refill,
    /// The exit path: give everything back, lease nothing.
    Last,
}

impl Sync {
    /// Starts the current period (by this host's clock) of every counter whose period
    /// changed. The old period's stock is dropped (its count expires with it).
    pub(super) fn roll_periods(&mut self) {
        let today = i64::try_from(unix_ms() / 86_400_000).unwrap_or(0);
        let Some(stock) = self.shared.store.cluster() else {
            return;
        };
        for c in &mut self.counters {
            let day = c.period.start_day(today);
            if day != c.day {
                let (old_stock, old_taken) = stock.roll(c.index, day);
                // What the old period admitted on credit and never charged: its counter is
                // over, so that credit is free again.
                stock.settle_credit(c.index, (old_stock + old_taken).saturating_sub(c.held));
                c.day = day;
                c.held = 0;
                c.last_taken = 0;
                c.idle = 0;
                c.spent = false;
            }
        }
    }

    /// One lease round for the counters followed (`mode`) and, at regular syncs and at exit,
    /// one giving back everything of the retired counters of replaced traffic states.
    pub(super) fn sync_quotas(&mut self, mode: Mode) -> RedisResult<()> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        if let Some(stock) = self.shared.store.cluster() {
            lease_round(conn, stock, &mut self.counters, mode, self.shared.shards)?;
        }
        if mode == Mode::Refill {
            return Ok(());
        }
        for r in &mut self.retiring {
            if r.syncs_left.is_none() && mode != Mode::Last {
                continue;
            }
            if let Some(stock) = r.shared.store.cluster() {
                lease_round(conn, stock, &mut r.counters, Mode::Last, r.shared.shards)?;
            }
            if mode == Mode::Sync {
                r.syncs_left = r.syncs_left.map(|n| n.saturating_sub(1));
            }
        }
        self.retiring.retain(|r| r.syncs_left != Some(0));
        Ok(())
    }
}

/// One lease call per counter of `stock` that needs one (pipelined).
pub(super) fn lease_round(
    conn: &mut Conn,
    stock: &HostStock,
    counters: &mut [Counter],
    mode: Mode,
    shards: usize,
) -> RedisResult<()> {
    let mut pipe = redis::pipe();
    // (counter position, withdrawn, owed)
    let mut batch: Vec<(usize, u64, u64)> = Vec::new();
    for (pos, c) in counters.iter_mut().enumerate() {
        if let Some((back, owed)) = queue_lease(&mut pipe, conn, stock, c, mode, shards) {
            batch.push((pos, back, owed));
        }
    }
    if batch.is_empty() {
        return Ok(());
    }
    STATS
        .ops
        .fetch_add(u64::try_from(batch.len()).unwrap_or(0), Ordering::Relaxed);
    // On an error the withdrawn stock is dropped and the debt kept: Redis may count a
    // few requests nobody admitted (under-admission), never the reverse.
    let results: Vec<(i64, i64)> = pipe.query(&mut conn.conn)?;
    for ((pos, back, owed), (grant, used)) in batch.into_iter().zip(results) {
        let Some(c) = counters.get_mut(pos) else {
            continue;
        };
        apply_lease(stock, c, back, owed, grant, used);
    }
    Ok(())
}

/// Queues `c`'s lease call on `pipe` if it has anything to hand in, ask for or give back;
/// returns what it withdrew from the stock and what it owes.
pub(super) fn queue_lease(
    pipe: &mut redis::Pipeline,
    conn: &Conn,
    stock: &HostStock,
    c: &mut Counter,
    mode: Mode,
    shards: usize,
) -> Option<(u64, u64)> {
    stock.absorb_early(c.index);
    let (taken, held_here) = stock.counts(c.index);
    if mode == Mode::Sync {
        note_consumption(stock, c, taken);
    }
    let owed = (taken + held_here).saturating_sub(c.held);
    // A reload changed the limit: everything in stock goes back and the grant follows
    // the new limit (one atomic call).
    let reset = c.reset && mode != Mode::Last;
    let want = lease_want(stock, c, mode, reset, taken, held_here, shards);
    let want = hold_back_while_spent(c, want);
    let give_back = match mode {
        Mode::Last => held_here,
        _ if reset => held_here,
        Mode::Refill => 0,
        Mode::Sync => logic::idle_return(held_here, c.idle, shards, c.spent),
    };
    if owed == 0 && want == 0 && give_back == 0 {
        return None;
    }
    let back = stock.withdraw(c.index, give_back);
    let add = i128::from(owed) - i128::from(back);
    pipe.cmd("EVALSHA")
        .arg(&conn.lease_sha)
        .arg(2)
        .arg(c.key())
        .arg(&c.seen)
        .arg(c.limit)
        .arg(want)
        .arg(c.expire_at_ms())
        .arg(c.offset)
        .arg(add.to_string())
        .arg(if c.known { "1" } else { "0" })
        .arg(logic::MAX_HOST_BLOCK)
        .arg(logic::REMAINING_DIVISOR);
    Some((back, owed))
}

/// A regular sync's bookkeeping: what `c` consumed since the last one and how long it idled.
pub(super) fn note_consumption(stock: &HostStock, c: &mut Counter, taken: u64) {
    let refused = stock.refused(c.index, true);
    c.consumed = taken.saturating_sub(c.last_taken) + refused;
    c.idle = if taken == c.last_taken && refused == 0 {
        c.idle.saturating_add(1)
    } else {
        0
    };
    c.last_taken = taken;
}

/// How much `c` asks Redis for in this round.
pub(super) fn lease_want(
    stock: &HostStock,
    c: &Counter,
    mode: Mode,
    reset: bool,
    taken: u64,
    held_here: u64,
    shards: usize,
) -> u64 {
    match mode {
        Mode::Last => 0,
        _ if reset => logic::refill_want(0, c.consumed, shards),
        // Spent counters are asked again by the regular syncs only.
        Mode::Refill if held_here > 0 || c.spent => 0,
        // An empty stock: at least what the last interval consumed.
        // What the last interval consumed, or more if this one already did: the
        // stock doubles at each miss while a burst ramps up, and stays within two
        // intervals of consumption (the bound of what a killed host loses).
        Mode::Refill => logic::refill_want(
            0,
            c.consumed
                .max(taken.saturating_sub(c.last_taken) + stock.refused(c.index, false)),
            shards,
        ),
        Mode::Sync => logic::refill_want(held_here, c.consumed, shards),
    }
}

/// A spent counter asks again only every `SPENT_RETRY_TICKS` rounds: `want`, or 0 between.
pub(super) fn hold_back_while_spent(c: &mut Counter, want: u64) -> u64 {
    if c.spent && want > 0 {
        c.spent_ticks += 1;
        if c.spent_ticks < SPENT_RETRY_TICKS {
            return 0;
        }
        c.spent_ticks = 0;
    }
    want
}

/// Books Redis's answer (`grant`, `used`) to `c`'s lease call into `c` and the stock.
pub(super) fn apply_lease(
    stock: &HostStock,
    c: &mut Counter,
    back: u64,
    owed: u64,
    grant: i64,
    used: i64,
) {
    if used < 0 {
        // The period is over by Redis's clock: nothing was counted.
        return;
    }
    let grant = u64::try_from(grant).unwrap_or(0);
    let used = u64::try_from(used).unwrap_or(0);
    c.held = (c.held + owed).saturating_sub(back) + grant;
    c.known = true;
    c.reset = false;
    c.spent = used >= c.limit;
    // The requests admitted on credit up to the read of `counts` are charged now.
    stock.settle_credit(c.index, owed);
    if c.spent {
        stock.set_credit_budget(c.index, 0);
    }
    stock.set_spent(c.index, c.spent);
    stock.stock_up(c.index, grant);
    stock.set_global(c.index, used);
}
