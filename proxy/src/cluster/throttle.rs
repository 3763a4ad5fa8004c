//! Throttle demand: a sync publishes the host's smoothed demand per limit (`DEMAND_LUA`, on the
//! sync's one pipeline) and sets the host's part of each limit from every host's totals.

use redis::{ErrorKind, RedisResult, Value};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tollgate_core::traffic::cluster as logic;

use super::sync::{Sync, CREDIT_AFTER_SYNCS};

impl Sync {
    /// Queues the demand script on `pipe`: the demand the shards handed in since the last
    /// sync is taken from the link (kept in `swapped`) and smoothed (into `pending`), every
    /// limit with some smoothed demand is published under its identity. `apply_demand` books
    /// the reply; `restore_demand` hands the demand back when the sync failed before it.
    /// Returns whether it queued the call (nothing without a link or a connection).
    pub(super) fn queue_demand(&mut self, pipe: &mut redis::Pipeline) -> bool {
        let (Some(link), Some(conn)) = (self.shared.link.as_ref(), self.conn.as_ref()) else {
            return false;
        };
        let ttl = (self.settings.sync_interval * 5).max(Duration::from_millis(500));
        // Sized once for every limit (16-hex-digit identity, demand of at most 20 digits):
        // growing it argument by argument cost more than its encoding.
        let limits = self.smoothed.len();
        let mut cmd = redis::Cmd::with_capacity(
            5 + 2 * limits,
            7 + conn.demand_sha.len()
                + 1
                + self.settings.key_prefix.len()
                + self.host_id.len()
                + 20
                + limits * (16 + 20),
        );
        cmd.arg("EVALSHA")
            .arg(&conn.demand_sha)
            .arg(0)
            .arg(&self.settings.key_prefix)
            .arg(&self.host_id)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(500));
        self.swapped.clear();
        self.pending.clear();
        for (b, s) in self.smoothed.iter().enumerate() {
            let d = link
                .demand
                .get(b)
                .map_or(0, |d| d.swap(0, Ordering::Relaxed));
            let n = logic::smooth(*s, d);
            self.swapped.push(d);
            self.pending.push(n);
            if n > 0 {
                if let Some(id) = self.ids.get(b) {
                    cmd.arg(id).arg(n);
                }
            }
        }
        pipe.add_command(cmd);
        true
    }

    /// The sync failed before its demand script was booked: the demand taken from the link
    /// goes back to it (the next sync publishes it); the smoothed demand stays as it was.
    pub(super) fn restore_demand(&mut self) {
        if let Some(link) = self.shared.link.as_ref() {
            for (b, d) in self.swapped.iter().enumerate() {
                if *d > 0 {
                    link.add_demand(b, *d);
                }
            }
        }
        self.swapped.clear();
    }

    /// Books the demand script's `reply`: the smoothed demand it published becomes the
    /// host's (also when the call failed: that demand is spent), then the hosts seen and
    /// every limit's total give the host's part of each limit.
    pub(super) fn apply_demand(&mut self, reply: Option<Value>) -> RedisResult<()> {
        if self.pending.len() == self.smoothed.len() {
            std::mem::swap(&mut self.smoothed, &mut self.pending);
        }
        self.swapped.clear();
        let Some(link) = self.shared.link.as_ref() else {
            return Ok(());
        };
        let Value::Array(items) = reply
            .ok_or_else(|| {
                redis::RedisError::from((ErrorKind::ResponseError, "missing demand reply"))
            })?
            .extract_error()?
        else {
            return Err((
                ErrorKind::TypeError,
                "the demand script did not answer a list",
            )
                .into());
        };
        let mut it = items.iter().map(text);
        self.hosts = it
            .next()
            .flatten()
            .and_then(|h| h.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        self.totals.iter_mut().for_each(|t| *t = 0);
        while let (Some(id), Some(t)) = (it.next(), it.next()) {
            let (Some(id), Some(t)) = (id, t) else {
                continue;
            };
            if let (Some(&b), Ok(t)) = (self.by_id.get(id), t.parse::<u64>()) {
                if let Some(slot) = self.totals.get_mut(b) {
                    *slot = t;
                }
            }
        }
        if self.credit_from.is_none() {
            // Registered: the others count this host from their next sync on.
            self.credit_from =
                Some(Instant::now() + self.settings.sync_interval * CREDIT_AFTER_SYNCS);
        }
        for (b, limit) in self.limits.iter().enumerate() {
            let own = self.smoothed.get(b).copied().unwrap_or(0);
            let total = self.totals.get(b).copied().unwrap_or(0);
            link.set_host_limit(b, logic::host_share(*limit, own, total, self.hosts));
        }
        Ok(())
    }
}

/// A reply item as text (the demand script answers strings), without copying it.
fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}
