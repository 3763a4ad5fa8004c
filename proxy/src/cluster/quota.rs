//! Quota leases: the lease round of a sync (`sync_quotas`: one pipelined `LEASE_LUA` call per
//! counter that owes, wants or gives back stock), what each counter asks for, and how
//! Redis's answers are booked into the `HostStock`; period rollover (`roll_periods`).

use redis::{ErrorKind, RedisResult, Value};
use tollgate_core::traffic::cluster::{self as logic, HostStock};

use super::counter::Counter;
use super::health::Conn;
use super::sync::{unix_ms, Sync};

/// A spent counter (Redis said nothing is left) is asked again at most every this many syncs.
pub(super) const SPENT_RETRY_TICKS: u32 = 5;

/// A lease call's arguments: `EVALSHA`, the script, 2 keys, 8 values.
const LEASE_ARGS: usize = 13;
/// A lease call's bytes besides the script's hash and the two key names: `EVALSHA` and
/// nine numbers of at most 20 digits.
const LEASE_DATA: usize = 7 + 9 * 20;

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
    /// the retired counters of replaced traffic states giving back everything: one pipeline,
    /// one round trip (none when no counter needs a call). The regular sync sends these
    /// calls together with the demand script instead (`Sync::sync_round`).
    pub(super) fn sync_quotas(&mut self, mode: Mode) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        let mut queued = std::mem::take(&mut self.queued);
        queued.clear();
        self.queue_quotas(&mut pipe, mode, &mut queued);
        let r = if queued.is_empty() {
            Ok(())
        } else {
            self.send(&pipe, queued.len())
                .and_then(|replies| self.apply_quotas(&mut replies.into_iter(), &queued))
        };
        self.queued = queued;
        r?;
        self.count_retiring_sync(mode);
        Ok(())
    }

    /// Queues on `pipe` the lease calls of one round (`mode`): the followed counters', and
    /// at regular syncs and at exit the retiring generations' (everything back); one
    /// `Queued` per call, in order.
    pub(super) fn queue_quotas(
        &mut self,
        pipe: &mut redis::Pipeline,
        mode: Mode,
        queued: &mut Vec<Queued>,
    ) {
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        if let Some(stock) = self.shared.store.cluster() {
            let (counters, shards) = (&mut self.counters, self.shared.shards);
            queue_round(pipe, conn, stock, counters, mode, shards, None, queued);
        }
        if mode == Mode::Refill {
            return;
        }
        for (i, r) in self.retiring.iter_mut().enumerate() {
            if r.syncs_left.is_none() && mode != Mode::Last {
                continue;
            }
            if let Some(stock) = r.shared.store.cluster() {
                let shards = r.shared.shards;
                queue_round(
                    pipe,
                    conn,
                    stock,
                    &mut r.counters,
                    Mode::Last,
                    shards,
                    Some(i),
                    queued,
                );
            }
        }
    }

    /// Books Redis's replies to the `queued` lease calls (taken from `replies`, in order). A
    /// call Redis answered with an error books nothing (its withdrawn stock is dropped and
    /// its debt kept: Redis may count a few requests nobody admitted, never the reverse);
    /// the first such error is returned once every call is booked.
    pub(super) fn apply_quotas(
        &mut self,
        replies: &mut impl Iterator<Item = Value>,
        queued: &[Queued],
    ) -> RedisResult<()> {
        let mut first_err = None;
        for q in queued {
            let reply = replies.next().map_or_else(
                || Err((ErrorKind::ResponseError, "missing lease reply").into()),
                redis::from_owned_redis_value::<(i64, i64)>,
            );
            let (grant, used) = match reply {
                Ok(r) => r,
                Err(e) => {
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            let (stock, counters) = match q.group {
                None => (self.shared.store.cluster(), &mut self.counters),
                Some(i) => match self.retiring.get_mut(i) {
                    Some(r) => (r.shared.store.cluster(), &mut r.counters),
                    None => continue,
                },
            };
            if let (Some(stock), Some(c)) = (stock, counters.get_mut(q.pos)) {
                apply_lease(stock, c, q.back, q.owed, grant, used);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// After a round that reached Redis: a regular sync counts down the retiring generations
    /// it gave back; those done (and, at exit, all) are forgotten.
    pub(super) fn count_retiring_sync(&mut self, mode: Mode) {
        if mode == Mode::Refill {
            return;
        }
        if mode == Mode::Sync {
            for r in &mut self.retiring {
                r.syncs_left = r.syncs_left.map(|n| n.saturating_sub(1));
            }
        }
        self.retiring.retain(|r| r.syncs_left != Some(0));
    }
}

/// A lease call queued on a pipeline: its counter (`group`: `None`, the counters followed;
/// `Some(i)`, retiring generation `i`; `pos` in that list), what it withdrew from the stock
/// and what it owes.
pub(super) struct Queued {
    group: Option<usize>,
    pos: usize,
    back: u64,
    owed: u64,
}

/// Queues one lease call per counter of `stock` that needs one (`group`: see `Queued`).
#[allow(clippy::too_many_arguments)]
fn queue_round(
    pipe: &mut redis::Pipeline,
    conn: &Conn,
    stock: &HostStock,
    counters: &mut [Counter],
    mode: Mode,
    shards: usize,
    group: Option<usize>,
    queued: &mut Vec<Queued>,
) {
    for (pos, c) in counters.iter_mut().enumerate() {
        if let Some((back, owed)) = queue_lease(pipe, conn, stock, c, mode, shards) {
            queued.push(Queued {
                group,
                pos,
                back,
                owed,
            });
        }
    }
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
    // owed > 0, given back < 0 (both far below 2^63: counts of requests).
    let add = i64::try_from(owed)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(back).unwrap_or(i64::MAX));
    // Sized once: growing a command argument by argument cost more than the call's encoding.
    // (`key` brings the cached count key `c.key` up to date.)
    let key_len = c.key().len();
    let mut cmd = redis::Cmd::with_capacity(
        LEASE_ARGS,
        LEASE_DATA + conn.lease_sha.len() + key_len + c.seen.len(),
    );
    cmd.arg("EVALSHA")
        .arg(&conn.lease_sha)
        .arg(2)
        .arg(&c.key)
        .arg(&c.seen)
        .arg(c.limit)
        .arg(want)
        .arg(c.expire_at_ms())
        .arg(c.offset)
        .arg(add)
        .arg(if c.known { "1" } else { "0" })
        .arg(logic::MAX_HOST_BLOCK)
        .arg(logic::REMAINING_DIVISOR);
    pipe.add_command(cmd);
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
