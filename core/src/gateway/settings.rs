//! Host settings (`[server]` in the config file): sizes, limits and timeouts every shard runs
//! with, and the traffic-control host settings (account throttle, quota state file, API keys
//! file). `config::settings` fills them in and range-checks them; defaults are here and in
//! tuning/CONFIG.md.

use super::model::Throttle;
use std::path::PathBuf;
use std::time::Duration;

/// Host settings (`[server]` in the config file). Defaults are documented in tuning/CONFIG.md.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Number of shards (executors); 0 in the file means one per online CPU and is resolved by
    /// the proxy at start, so here 0 still means "auto".
    pub shards: usize,
    pub pin_cpus: bool,
    /// Size of each connection's read buffer (client and backend).
    pub read_buffer_bytes: usize,
    /// Request line + headers limit (API Gateway: 10,240 bytes).
    pub max_header_bytes: usize,
    /// Payload limit (API Gateway: 10 MB = 10,485,760 bytes); larger gets 413.
    pub max_body_bytes: u64,
    /// A client must deliver a complete request head within this time once it started one.
    pub header_read_timeout: Duration,
    /// A request body must keep arriving: no byte of it for this long gets 408 (when no response
    /// has started) and a close. Defaults to `header_read_timeout`.
    pub body_read_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this.
    pub idle_timeout: Duration,
    /// A client that accepts no bytes for this long while we send is dropped.
    pub client_write_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    /// Idle pooled backend connections kept per backend per shard.
    pub upstream_pool_size: usize,
    pub upstream_idle_timeout: Duration,
    /// Buffers in each shard's io_uring receive ring (lean socket path; a power of two).
    pub receive_ring_buffers: usize,
    /// Bytes per receive-ring buffer (the most one receive completion delivers).
    pub receive_ring_buffer_bytes: usize,
    /// The account-level throttle (API Gateway's default: 10,000 requests/s, burst 5,000),
    /// across all shards.
    pub account_throttle: Throttle,
    /// `region` / `account_id`: what method ARNs and Lambda events say.
    pub account: crate::lambda::Account,
    /// Where quota counters are kept across restarts (`None`: in memory only).
    pub state_file: Option<PathBuf>,
    /// How often the quota counters are written to `state_file`.
    pub state_flush: Duration,
    /// The file `[[api_keys]]` were also read from (resolved against the config's directory).
    pub api_keys_file: Option<PathBuf>,
    /// On SIGTERM/SIGINT, in-flight requests get this long to finish before the process exits.
    pub drain_timeout: Duration,
    /// The admin listener (`[admin]`: `/metrics`, `/healthz`, `/readyz`); `None`: none.
    pub admin: Option<std::net::SocketAddr>,
    /// `[cluster]`: quotas and throttles shared with other hosts through Redis.
    pub cluster: Option<crate::traffic::cluster::ClusterSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            shards: 0,
            pin_cpus: true,
            read_buffer_bytes: 64 * 1024,
            max_header_bytes: 10 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            client_write_timeout: Duration::from_secs(30),
            upstream_connect_timeout: Duration::from_secs(3),
            upstream_pool_size: 256,
            upstream_idle_timeout: Duration::from_secs(60),
            receive_ring_buffers: 64,
            receive_ring_buffer_bytes: 64 * 1024,
            account_throttle: Throttle {
                rate: 10_000.0,
                burst: 5_000,
            },
            account: crate::lambda::Account::default(),
            state_file: None,
            state_flush: Duration::from_millis(1000),
            api_keys_file: None,
            drain_timeout: Duration::from_secs(30),
            admin: None,
            cluster: None,
        }
    }
}
