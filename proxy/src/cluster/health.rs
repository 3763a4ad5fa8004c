//! Failure handling: connecting (scripts loaded, the `epoch` check for a Redis that lost its
//! data), timeouts, success and failure of a sync (logging at a bounded rate, backoff), and
//! failing open after `fail_open_after`.

use redis::{Connection, ConnectionLike, ErrorKind, RedisResult, Value};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tollgate_core::traffic::cluster as logic;

use super::scripts::{DEMAND_LUA, LEASE_LUA};
use super::stats::STATS;
use super::sync::Sync;

/// Longest wait between reconnect attempts.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// At most one Redis error line per this long (the others are counted in the next line).
pub(super) const LOG_EVERY: Duration = Duration::from_secs(5);

pub(super) struct Conn {
    pub(super) conn: Connection,
    pub(super) lease_sha: String,
    pub(super) demand_sha: String,
}

impl Sync {
    /// Sends `pipe` (`n` commands) in one round trip and returns each command's reply, an
    /// error reply (`Value::ServerError`) in its place; a failed connection is an error.
    pub(super) fn send(&mut self, pipe: &redis::Pipeline, n: usize) -> RedisResult<Vec<Value>> {
        let Some(conn) = self.conn.as_mut() else {
            return Err((ErrorKind::IoError, "not connected to Redis").into());
        };
        STATS
            .ops
            .fetch_add(u64::try_from(n).unwrap_or(0), Ordering::Relaxed);
        conn.conn
            .req_packed_commands(&pipe.get_packed_pipeline(), 0, n)
    }

    pub(super) fn timeout(&self) -> Duration {
        self.settings
            .fail_open_after
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    pub(super) fn connect(&mut self) -> RedisResult<()> {
        let timeout = self.timeout();
        let Some(client) = &self.client else {
            return Ok(());
        };
        let mut conn = client.get_connection_with_timeout(timeout)?;
        conn.set_read_timeout(Some(timeout))?;
        conn.set_write_timeout(Some(timeout))?;
        let lease_sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(LEASE_LUA)
            .query(&mut conn)?;
        let demand_sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(DEMAND_LUA)
            .query(&mut conn)?;
        let epoch_key = format!("{}epoch", self.settings.key_prefix);
        // A fresh candidate per connection: after Redis lost its data, whoever sets the key
        // first sets a value no host remembers.
        self.attempts += 1;
        let candidate = format!("{}-{}", self.host_id, self.attempts);
        let (_, epoch): (Option<String>, String) = redis::pipe()
            .cmd("SET")
            .arg(&epoch_key)
            .arg(&candidate)
            .arg("NX")
            .cmd("GET")
            .arg(&epoch_key)
            .query(&mut conn)?;
        STATS.ops.fetch_add(4, Ordering::Relaxed);
        if self.epoch.as_ref().is_some_and(|e| *e != epoch) {
            eprintln!(
                "tollgate: cluster: Redis {} lost its counters (restarted without persistence?): this host adds back the quota it admitted or holds",
                self.settings.redis
            );
            for c in &mut self.counters {
                c.held = 0;
                c.spent = false;
            }
        }
        self.epoch = Some(epoch);
        self.conn = Some(Conn {
            conn,
            lease_sha,
            demand_sha,
        });
        Ok(())
    }

    pub(super) fn succeeded(&mut self) {
        self.synced = true;
        self.last_ok = Instant::now();
        self.backoff = self.settings.sync_interval;
        STATS.up.store(true, Ordering::Relaxed);
        if let Some(since) = self.down_since.take() {
            eprintln!(
                "tollgate: cluster: Redis {} reachable again after {} ms{}",
                self.settings.redis,
                since.elapsed().as_millis(),
                if self.failed_open {
                    "; quotas and throttles are shared again, the requests admitted meanwhile were added to the Redis counters"
                } else {
                    ""
                }
            );
        }
        if self.failed_open {
            self.failed_open = false;
            if let Some(s) = self.stock() {
                s.set_fail_open(false);
            }
            STATS.fail_open.store(false, Ordering::Relaxed);
        }
    }

    pub(super) fn failed(&mut self, e: &redis::RedisError) {
        self.conn = None;
        STATS.errors.fetch_add(1, Ordering::Relaxed);
        STATS.up.store(false, Ordering::Relaxed);
        let now = Instant::now();
        self.next_attempt = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        if self.down_since.is_none() {
            self.down_since = Some(now);
            eprintln!(
                "tollgate: cluster: Redis {} unreachable ({e}): serving from the quota leases and throttle shares in hand; quotas fail open after {} ms",
                self.settings.redis,
                self.settings.fail_open_after.as_millis()
            );
            self.last_log = Some(now);
            return;
        }
        if self
            .last_log
            .is_some_and(|t| now.duration_since(t) < LOG_EVERY)
        {
            self.suppressed += 1;
            return;
        }
        eprintln!(
            "tollgate: cluster: Redis {} still unreachable ({e}; {} more error(s) since the last line)",
            self.settings.redis, self.suppressed
        );
        self.suppressed = 0;
        self.last_log = Some(now);
    }

    pub(super) fn check_fail_open(&mut self) {
        if self.failed_open
            || self.conn.is_some()
            || self.last_ok.elapsed() < self.settings.fail_open_after
        {
            return;
        }
        self.failed_open = true;
        STATS.fail_open.store(true, Ordering::Relaxed);
        if let Some(s) = self.stock() {
            s.set_fail_open(true);
        }
        if let Some(link) = self.link() {
            for (b, l) in self.limits.iter().enumerate() {
                link.set_host_limit(b, logic::fallback_share(*l, self.hosts));
            }
        }
        eprintln!(
            "tollgate: cluster: no Redis for {} ms: failing open — quotas are not checked (requests admitted are counted and added to Redis when it is back), throttles use rate / {} host(s) last seen",
            self.last_ok.elapsed().as_millis(),
            self.hosts
        );
    }
}
