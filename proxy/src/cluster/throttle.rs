//! Throttle demand: a sync publishes the host's smoothed demand per limit (`DEMAND_LUA`) and
//! sets the host's part of each limit from every host's totals.

use redis::RedisResult;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tollgate_core::traffic::cluster as logic;

use super::stats::STATS;
use super::sync::{Sync, CREDIT_AFTER_SYNCS};

impl Sync {
    pub(super) fn sync_throttles(&mut self) -> RedisResult<()> {
        let Some(link) = self.shared.link.as_ref() else {
            return Ok(());
        };
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let ttl = (self.settings.sync_interval * 5).max(Duration::from_millis(500));
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&conn.demand_sha)
            .arg(0)
            .arg(&self.settings.key_prefix)
            .arg(&self.host_id)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(500));
        for (b, s) in self.smoothed.iter_mut().enumerate() {
            let d = link
                .demand
                .get(b)
                .map_or(0, |d| d.swap(0, Ordering::Relaxed));
            *s = logic::smooth(*s, d);
            if *s > 0 {
                if let Some(id) = self.ids.get(b) {
                    cmd.arg(id).arg(*s);
                }
            }
        }
        STATS.ops.fetch_add(1, Ordering::Relaxed);
        let reply: Vec<String> = cmd.query(&mut conn.conn)?;
        let mut it = reply.iter();
        self.hosts = it
            .next()
            .and_then(|h| h.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        self.totals.iter_mut().for_each(|t| *t = 0);
        while let (Some(id), Some(t)) = (it.next(), it.next()) {
            if let (Some(&b), Ok(t)) = (self.by_id.get(id.as_str()), t.parse::<u64>()) {
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
