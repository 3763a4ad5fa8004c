//! `[server]` → `gateway::Settings` (defaults for what is not written, each value range-checked)
//! and `[[listeners]]` → socket addresses.

use super::diagnostics::{Diagnostics, Spanned};
use super::model::{Config, Listener, Server};
use super::traffic;
use crate::gateway::Settings;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// Allowed ranges (inclusive) of the `[server]` keys; documented in tuning/CONFIG.md.
pub(crate) const SHARDS: (i64, i64) = (0, 1024);
pub(crate) const READ_BUFFER_BYTES: (i64, i64) = (1024, 16 * 1024 * 1024);
pub(crate) const MAX_HEADER_BYTES: (i64, i64) = (256, 1024 * 1024);
pub(crate) const MAX_BODY_BYTES: (i64, i64) = (0, i64::MAX);
pub(crate) const TIMEOUT_MS: (i64, i64) = (1, 24 * 60 * 60 * 1000);
pub(crate) const UPSTREAM_POOL_SIZE: (i64, i64) = (0, 65_536);
pub(crate) const RECEIVE_RING_BUFFERS: (i64, i64) = (1, 32_768);
pub(crate) const RECEIVE_RING_BUFFER_BYTES: (i64, i64) = (512, 1024 * 1024);

/// `base`: the directory relative `state_file` / `api_keys_file` paths are resolved against.
pub(crate) fn settings(s: &Server, base: &Path, d: &mut Diagnostics<'_>) -> Settings {
    let mut out = Settings::default();
    sizes(s, &mut out, d);
    timeouts(s, &mut out, d);
    traffic_state(s, base, &mut out, d);
    out
}

/// Shards and pinning, buffer, head, body and pool sizes, the receive ring.
fn sizes(s: &Server, out: &mut Settings, d: &mut Diagnostics<'_>) {
    out.shards = count(&s.shards, "shards", SHARDS, out.shards, d);
    out.pin_cpus = s.pin_cpus.as_ref().map_or(out.pin_cpus, |b| b.value);
    out.read_buffer_bytes = count(
        &s.read_buffer_bytes,
        "read_buffer_bytes",
        READ_BUFFER_BYTES,
        out.read_buffer_bytes,
        d,
    );
    out.max_header_bytes = count(
        &s.max_header_bytes,
        "max_header_bytes",
        MAX_HEADER_BYTES,
        out.max_header_bytes,
        d,
    );
    out.max_body_bytes = checked(&s.max_body_bytes, "max_body_bytes", MAX_BODY_BYTES, d)
        .map_or(out.max_body_bytes, i64::unsigned_abs);
    out.upstream_pool_size = count(
        &s.upstream_pool_size,
        "upstream_pool_size",
        UPSTREAM_POOL_SIZE,
        out.upstream_pool_size,
        d,
    );
    out.receive_ring_buffers = count(
        &s.receive_ring_buffers,
        "receive_ring_buffers",
        RECEIVE_RING_BUFFERS,
        out.receive_ring_buffers,
        d,
    )
    .next_power_of_two();
    out.receive_ring_buffer_bytes = count(
        &s.receive_ring_buffer_bytes,
        "receive_ring_buffer_bytes",
        RECEIVE_RING_BUFFER_BYTES,
        out.receive_ring_buffer_bytes,
        d,
    );
}

/// The `*_timeout_ms` keys; `body_read_timeout` defaults to `header_read_timeout`.
fn timeouts(s: &Server, out: &mut Settings, d: &mut Diagnostics<'_>) {
    out.header_read_timeout = millis(
        &s.header_read_timeout_ms,
        "header_read_timeout_ms",
        out.header_read_timeout,
        d,
    );
    out.body_read_timeout = millis(
        &s.body_read_timeout_ms,
        "body_read_timeout_ms",
        out.header_read_timeout,
        d,
    );
    out.idle_timeout = millis(&s.idle_timeout_ms, "idle_timeout_ms", out.idle_timeout, d);
    out.client_write_timeout = millis(
        &s.client_write_timeout_ms,
        "client_write_timeout_ms",
        out.client_write_timeout,
        d,
    );
    out.upstream_connect_timeout = millis(
        &s.upstream_connect_timeout_ms,
        "upstream_connect_timeout_ms",
        out.upstream_connect_timeout,
        d,
    );
    out.upstream_idle_timeout = millis(
        &s.upstream_idle_timeout_ms,
        "upstream_idle_timeout_ms",
        out.upstream_idle_timeout,
        d,
    );
    out.drain_timeout = millis(
        &s.drain_timeout_ms,
        "drain_timeout_ms",
        out.drain_timeout,
        d,
    );
}

/// The account throttle, the quota state file and its flush interval, the API keys file.
fn traffic_state(s: &Server, base: &Path, out: &mut Settings, d: &mut Diagnostics<'_>) {
    out.account_throttle = s
        .account_throttle
        .as_ref()
        .and_then(|t| traffic::throttle(t, d))
        .unwrap_or(out.account_throttle);
    out.state_file = s
        .state_file
        .as_ref()
        .and_then(|p| path(p, "state_file", base, d));
    out.state_flush =
        traffic::flush_ms(&s.state_flush_ms, d).map_or(out.state_flush, Duration::from_millis);
    out.api_keys_file = s
        .api_keys_file
        .as_ref()
        .and_then(|p| path(p, "api_keys_file", base, d));
}

/// A file path from the config, relative ones resolved against `base`.
fn path(
    p: &super::model::Text,
    key: &str,
    base: &Path,
    d: &mut Diagnostics<'_>,
) -> Option<std::path::PathBuf> {
    if p.value.is_empty() {
        d.error(p.span.clone(), format!("`{key}` cannot be empty"));
        return None;
    }
    Some(base.join(&p.value))
}

fn count(
    v: &Option<Spanned<i64>>,
    key: &str,
    range: (i64, i64),
    default: usize,
    d: &mut Diagnostics<'_>,
) -> usize {
    checked(v, key, range, d).map_or(default, |n| usize::try_from(n).unwrap_or(default))
}

fn millis(
    v: &Option<Spanned<i64>>,
    key: &str,
    default: Duration,
    d: &mut Diagnostics<'_>,
) -> Duration {
    checked(v, key, TIMEOUT_MS, d).map_or(default, |n| Duration::from_millis(n.unsigned_abs()))
}

/// The value if it is within `(min, max)`; reports it otherwise.
fn checked(
    v: &Option<Spanned<i64>>,
    key: &str,
    (min, max): (i64, i64),
    d: &mut Diagnostics<'_>,
) -> Option<i64> {
    let v = v.as_ref()?;
    if (min..=max).contains(&v.value) {
        Some(v.value)
    } else {
        let message = if max == i64::MAX {
            format!("`{key}` must be at least {min}")
        } else {
            format!("`{key}` must be between {min} and {max}")
        };
        d.error(v.span.clone(), message);
        None
    }
}

pub(crate) fn listeners(c: &Config, d: &mut Diagnostics<'_>) -> Vec<SocketAddr> {
    if c.listeners.is_empty() && !c.listeners_written {
        d.error(
            c.listeners_span.clone().unwrap_or(0..0),
            "no listeners: add at least one [[listeners]] with `address` and `port`",
        );
    }
    let mut out: Vec<SocketAddr> = Vec::new();
    for l in &c.listeners {
        if let Some(addr) = listener(l, d) {
            if out.contains(&addr) {
                if let Some(at) = &l.port {
                    d.error(
                        at.span.clone(),
                        format!("another listener already uses {addr}"),
                    );
                }
            } else {
                out.push(addr);
            }
        }
    }
    out
}

fn listener(l: &Listener, d: &mut Diagnostics<'_>) -> Option<SocketAddr> {
    let ip = l.address.as_ref().and_then(|a| {
        let text = a.value.trim_start_matches('[').trim_end_matches(']');
        match text.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                d.error(
                    a.span.clone(),
                    format!(
                        "`{}` is not an IP address: write an IPv4 or IPv6 literal such as 127.0.0.1, 0.0.0.0 or ::",
                        a.value
                    ),
                );
                None
            }
        }
    });
    let port = l.port.as_ref().and_then(|p| match u16::try_from(p.value) {
        Ok(n) if n > 0 => Some(n),
        _ => {
            d.error(p.span.clone(), "`port` must be between 1 and 65535");
            None
        }
    });
    Some(SocketAddr::new(ip?, port?))
}
