//! Process-wide `[cluster]` metrics (`Stats`, the one `STATS`) and their Prometheus
//! rendering (`render_metrics`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Process-wide cluster metrics (a process runs at most one cluster link).
pub(super) struct Stats {
    pub(super) enabled: AtomicBool,
    pub(super) up: AtomicBool,
    pub(super) fail_open: AtomicBool,
    pub(super) errors: AtomicU64,
    pub(super) ops: AtomicU64,
    pub(super) wakeups: AtomicU64,
}

impl Stats {
    pub(super) const fn new() -> Stats {
        Stats {
            enabled: AtomicBool::new(false),
            up: AtomicBool::new(false),
            fail_open: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            wakeups: AtomicU64::new(0),
        }
    }
}

pub(super) static STATS: Stats = Stats::new();

/// Appends the cluster metrics to a Prometheus text exposition (nothing without `[cluster]`).
pub fn render_metrics(out: &mut String) {
    render_stats(&STATS, out);
}

pub(super) fn render_stats(stats: &Stats, out: &mut String) {
    if !stats.enabled.load(Ordering::Relaxed) {
        return;
    }
    let metrics: [(&str, &str, &str, u64); 5] = [
        (
            "tollgate_cluster_redis_up",
            "gauge",
            "1 when the last sync with Redis succeeded.",
            u64::from(stats.up.load(Ordering::Relaxed)),
        ),
        (
            "tollgate_cluster_fail_open",
            "gauge",
            "1 while quotas are unchecked and throttles fall back (Redis gone longer than fail_open_after_ms).",
            u64::from(stats.fail_open.load(Ordering::Relaxed)),
        ),
        (
            "tollgate_cluster_redis_errors_total",
            "counter",
            "Failed Redis connections and calls.",
            stats.errors.load(Ordering::Relaxed),
        ),
        (
            "tollgate_cluster_redis_ops_total",
            "counter",
            "Redis commands sent by this host (scripts count one each).",
            stats.ops.load(Ordering::Relaxed),
        ),
        (
            "tollgate_cluster_wakeups_total",
            "counter",
            "Times a shard that found its quota stock empty woke the sync thread (at most once per sync, or per refill that got something).",
            stats.wakeups.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, v) in metrics {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_only_with_a_cluster() {
        let stats = Stats::new();
        let mut out = String::new();
        render_stats(&stats, &mut out);
        assert!(out.is_empty());
        stats.enabled.store(true, Ordering::Relaxed);
        stats.up.store(true, Ordering::Relaxed);
        stats.ops.store(42, Ordering::Relaxed);
        render_stats(&stats, &mut out);
        for line in [
            "tollgate_cluster_redis_up 1",
            "tollgate_cluster_fail_open 0",
            "tollgate_cluster_redis_errors_total 0",
            "tollgate_cluster_redis_ops_total 42",
            "tollgate_cluster_wakeups_total 0",
        ] {
            assert!(out.lines().any(|l| l == line), "{out}");
        }
    }
}
