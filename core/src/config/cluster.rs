//! `[cluster]` → `traffic::cluster::ClusterSettings`: the Redis URL (standalone `redis://`
//! only), `sync_interval_ms`, `key_prefix` and `fail_open_after_ms`, each range-checked, with
//! errors at the offending value. `[cluster]` and `state_file` exclude each other: with a
//! cluster the quota counters live in Redis.

use super::diagnostics::Diagnostics;
use super::model::Config;
use crate::traffic::cluster::ClusterSettings;
use std::time::Duration;

/// Allowed ranges (inclusive); documented in tuning/CONFIG.md ("Cluster").
pub(crate) const SYNC_INTERVAL_MS: (i64, i64) = (10, 10_000);
pub(crate) const FAIL_OPEN_AFTER_MS: (i64, i64) = (0, 600_000);
pub(crate) const DEFAULT_SYNC_INTERVAL_MS: u64 = 100;
pub(crate) const DEFAULT_FAIL_OPEN_AFTER_MS: u64 = 1000;
pub(crate) const DEFAULT_KEY_PREFIX: &str = "tollgate:";

pub(crate) fn compile(cfg: &Config, d: &mut Diagnostics<'_>) -> Option<ClusterSettings> {
    let c = cfg.cluster.as_ref()?;
    if let Some(sf) = &cfg.server.state_file {
        d.error(
            sf.span.clone(),
            "`state_file` cannot be used with `[cluster]`: the quota counters live in Redis",
        );
    }
    let redis = c.redis.as_ref().and_then(|r| match redis_url(&r.value) {
        Ok(()) => Some(r.value.clone()),
        Err(e) => {
            d.error(r.span.clone(), e);
            None
        }
    });
    let millis = |v: &Option<super::diagnostics::Spanned<i64>>,
                  key: &str,
                  (lo, hi): (i64, i64),
                  default: u64,
                  d: &mut Diagnostics<'_>| {
        match v {
            None => Some(Duration::from_millis(default)),
            Some(n) if (lo..=hi).contains(&n.value) => {
                Some(Duration::from_millis(n.value.unsigned_abs()))
            }
            Some(n) => {
                d.error(
                    n.span.clone(),
                    format!("`{key}` must be between {lo} and {hi}, found {}", n.value),
                );
                None
            }
        }
    };
    let sync_interval = millis(
        &c.sync_interval_ms,
        "sync_interval_ms",
        SYNC_INTERVAL_MS,
        DEFAULT_SYNC_INTERVAL_MS,
        d,
    );
    let fail_open_after = millis(
        &c.fail_open_after_ms,
        "fail_open_after_ms",
        FAIL_OPEN_AFTER_MS,
        DEFAULT_FAIL_OPEN_AFTER_MS,
        d,
    );
    let key_prefix = match &c.key_prefix {
        None => Some(DEFAULT_KEY_PREFIX.to_string()),
        Some(p)
            if p.value.len() <= 64
                && !p
                    .value
                    .chars()
                    .any(|ch| ch.is_whitespace() || ch.is_control()) =>
        {
            Some(p.value.clone())
        }
        Some(p) => {
            d.error(
                p.span.clone(),
                "`key_prefix` must be at most 64 characters, without spaces or control characters",
            );
            None
        }
    };
    Some(ClusterSettings {
        redis: redis?,
        sync_interval: sync_interval?,
        key_prefix: key_prefix?,
        fail_open_after: fail_open_after?,
    })
}

/// `redis://[user[:password]@]host[:port][/db]`; other schemes are refused with the reason.
fn redis_url(url: &str) -> Result<(), String> {
    if url.starts_with("redis+sentinel://") {
        return Err("`redis+sentinel://` is not supported: the Redis client tollgate uses (the `redis` crate) has no sentinel URL support; point `redis` at the master (`redis://host:port/db`) or at a proxy in front of the sentinels".to_string());
    }
    if url.starts_with("rediss://") {
        return Err(
            "`rediss://` (TLS) is not supported yet: use `redis://` on a trusted network"
                .to_string(),
        );
    }
    let Some(rest) = url.strip_prefix("redis://") else {
        return Err(format!(
            "`redis` must be a `redis://host[:port][/db]` URL, found `{url}`"
        ));
    };
    let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return Err(format!("unclosed `[` in the host of `{url}`")),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(format!("`redis` URL `{url}` has no host"));
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!(
                "`redis` URL `{url}`: port must be 1..65535, found `{p}`"
            ));
        }
    }
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(format!(
            "`redis` URL `{url}`: the path must be a database number, found `/{db}`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config;

    const BASE: &str = "[[listeners]]\naddress = \"127.0.0.1\"\nport = 8080\n";

    fn load(extra: &str) -> Result<crate::gateway::Gateway, Vec<config::ConfigError>> {
        config::load_str("c.toml", &format!("{BASE}{extra}"))
    }

    fn error(extra: &str) -> String {
        match load(extra) {
            Ok(_) => panic!("accepted: {extra}"),
            Err(e) => e
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn defaults_and_values() {
        let g = load("[cluster]\nredis = \"redis://127.0.0.1:6379/0\"\n").expect("valid");
        let c = g.settings.cluster.expect("cluster");
        assert_eq!(c.redis, "redis://127.0.0.1:6379/0");
        assert_eq!(c.sync_interval.as_millis(), 100);
        assert_eq!(c.fail_open_after.as_millis(), 1000);
        assert_eq!(c.key_prefix, "tollgate:");
        let g = load("[cluster]\nredis = \"redis://[::1]\"\nsync_interval_ms = 50\nkey_prefix = \"tg:\"\nfail_open_after_ms = 0\n").expect("valid");
        let c = g.settings.cluster.expect("cluster");
        assert_eq!(
            (c.sync_interval.as_millis(), c.fail_open_after.as_millis()),
            (50, 0)
        );
        assert_eq!(c.key_prefix, "tg:");
        assert!(load("").expect("valid").settings.cluster.is_none());
    }

    #[test]
    fn errors_point_at_the_value() {
        let e = error("[cluster]\nredis = \"redis+sentinel://h:26379/mymaster\"\n");
        assert!(
            e.starts_with("c.toml:5:9: `redis+sentinel://` is not supported"),
            "{e}"
        );
        let e = error("[cluster]\nredis = \"http://x\"\n");
        assert!(e.contains("c.toml:5:9: `redis` must be a `redis://"), "{e}");
        let e = error("[cluster]\nredis = \"redis://h:0\"\n");
        assert!(e.contains("port must be 1..65535"), "{e}");
        let e = error("[cluster]\nredis = \"redis://h/x\"\n");
        assert!(e.contains("database number"), "{e}");
        let e = error("[cluster]\nredis = \"redis://h\"\nsync_interval_ms = 5\n");
        assert!(
            e.contains("c.toml:6:20: `sync_interval_ms` must be between 10 and 10000, found 5"),
            "{e}"
        );
        let e = error("[cluster]\nredis = \"redis://h\"\nfail_open_after_ms = -1\n");
        assert!(e.contains("c.toml:6:22: `fail_open_after_ms`"), "{e}");
        let e = error("[cluster]\nsync_interval_ms = 100\n");
        assert!(e.contains("redis"), "{e}");
        let e = error("[cluster]\nredis = \"redis://h\"\nkey_prefx = \"a\"\n");
        assert!(e.contains("c.toml:6:1: unknown key `key_prefx`"), "{e}");
        let e = error("[cluster]\nredis = \"redis://h\"\nkey_prefix = \"a b\"\n");
        assert!(e.contains("`key_prefix` must be"), "{e}");
        let e = error("[server]\nstate_file = \"q.state\"\n[cluster]\nredis = \"redis://h\"\n");
        assert!(
            e.contains("c.toml:5:14: `state_file` cannot be used with `[cluster]`"),
            "{e}"
        );
    }
}
