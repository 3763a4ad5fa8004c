//! `[cluster]`: quotas and throttles shared by several hosts through Redis — the host's one
//! sync thread (`tollgate-cluster`) and the only code that talks to Redis.
//!
//! A regular sync is one round trip: its lease calls and its demand script go on one pipeline
//! (`Sync::sync_round`); between syncs the thread sleeps, unparked by a miss, a reload order
//! or the exit (it looks every 10 ms only while a reload's hand-over is pending).
//!
//! The shards never wait for Redis: they lease quota from the host's `HostStock` (the quota
//! store of `traffic_state` in cluster mode) and throttle with their own buckets. This thread,
//! every `sync_interval` (and at each UTC midnight, where quota periods roll):
//! - **quotas**: per counter, one Lua script call (pipelined, one round trip for all counters
//!   that need one) that atomically adds what the host owes (requests admitted while failed
//!   open, or everything after Redis lost its data), gives back idle stock, and grants a new
//!   block (`used + n ≤ limit`, at most 1/8 of what is left, `PEXPIREAT` at the period end,
//!   the quota's `offset` charged once per plan and key through a `SET NX` marker). Only
//!   counters whose stock is below its low-water mark, idle, or owed are called, so the ops
//!   per second do not grow with the request rate beyond lease refills (≤ 1 per counter per
//!   interval). The stock is sized by the counter's demand over the last interval (admitted
//!   plus refused), for two intervals; a shard that finds it empty admits on *credit* (a
//!   budget of floor(0.1 % × limit ÷ hosts) per host, see `traffic::cluster`) and wakes this
//!   thread, which refills at once and charges the credit to Redis. The first miss after
//!   each regular sync (or after a refill that got something) wakes it, later misses do not.
//! - **ready**: `Ready::wait` returns (the shards start, `/readyz` turns 200) once the first full
//!   sync leased an initial block for every plan and key and registered the host, and the
//!   others have had two intervals to count it (its credit starts then), or, without Redis,
//!   once it failed open. At each period rollover (UTC midnight) the thread wakes, starts the
//!   new periods and leases their first blocks in the same sync; shards that get there
//!   first admit on credit.
//! - **throttles**: one Lua call publishes the host's smoothed demand per limit (a hash with
//!   an expiry per host, hosts in a sorted set by last sync; each limit under a stable
//!   identity, `limit_ids`, a hash of what it limits and its rate and burst, so hosts whose
//!   configs differ share only the limits they have alike) and returns every limit's total;
//!   the host's part of each limit (`traffic::cluster::host_share`: the demand rule
//!   `ShareBalancer` uses across shards) goes to `Link`, which the shards' rebalance round
//!   hands to its balancers as the host's limit.
//! - **Redis down or slow** (every call has a timeout): the shards go on with the stock and
//!   shares in hand; after `fail_open_after` without a successful sync the store fails open
//!   (quota unchecked, admitted requests counted) and every throttle falls back to
//!   rate / last-known-hosts; errors are logged at most once per `LOG_EVERY`, the state
//!   changes once each; reconnects back off (sync interval doubling to `MAX_BACKOFF`); once
//!   back, the counts admitted meanwhile are added to Redis. A changed `epoch` key means Redis
//!   lost its data (restart without persistence): the host adds everything it holds again.
//! - **exit** (`Link::shutdown`, after the shards gave back their leases): the stock goes back
//!   to Redis.
//! - **reload** (`follow`, called by `traffic_state::successor` before any shard swaps): the
//!   thread takes the new `TrafficShared`, whose counters of unchanged plan, key and period
//!   share the old store's slots (`HostStock::successor`), so their account with Redis
//!   (`held`, period, demand) carries over as it is; a changed limit gives the stock back and
//!   leases anew (`Counter::reset`, again once the shards swapped); new counters get their
//!   first block before `follow` returns; counters the new config lacks retire (`Retiring`:
//!   given back to Redis at the syncs after the hand-over). Throttle limits keep demand and
//!   share by identity. `[cluster]` itself is restart-only (`reload::check`).
//! - `usage_entries`: `tollgate usage` reads the counters of the current periods from Redis.
//!
//! Metrics (`render_metrics`, one cluster per process): `tollgate_cluster_redis_up`,
//! `tollgate_cluster_fail_open`, `tollgate_cluster_redis_errors_total`,
//! `tollgate_cluster_redis_ops_total`, `tollgate_cluster_wakeups_total`.
//!
//! Modules: `sync` (the thread and its loop), `quota` (lease rounds), `throttle` (demand),
//! `health` (connection, failures, fail-open), `reload` (follow-on-reload), `counter`, `ids`,
//! `link`, `scripts`, `stats`, `usage`.

mod counter;
mod health;
mod ids;
mod link;
mod quota;
mod reload;
mod scripts;
mod stats;
mod sync;
mod throttle;
mod usage;

pub use link::Link;
pub use reload::follow;
pub use stats::render_metrics;
pub use sync::{start, Ready};
pub use usage::usage_entries;
