//! Per-shard metrics and their Prometheus text rendering.
//!
//! Each shard owns one [`ShardMetrics`]: atomics that only its own thread writes (a relaxed
//! load and store, no locked read-modify-write, no cache line shared with another shard's
//! writes) and that the admin listener's thread reads when scraped; a scrape sums the shards
//! ([`render`]). Request metrics are named after API Gateway's (Count, 4XXError, 5XXError,
//! Latency, IntegrationLatency; guide L38611-38735) and labelled with api, stage and route
//! (the route key; "" when no route matched). Requests that reached no stage are counted
//! under empty api and stage labels. Besides those: 429 THROTTLED and QUOTA_EXCEEDED answers
//! per series, authorizer cache hits and misses per authorizer (the shard copies its cache's
//! counters after each lookup), idle backend connections per upstream (a gauge the shard's
//! pool stores on every park, take and reap), and per-shard counters and gauges. Every name
//! is documented in `tuning/CONFIG.md` ("Metrics").

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use tollgate_core::gateway::responses::ResponseType;
use tollgate_core::gateway::{Api, Gateway, Route, Stage};

/// Upper bounds (ms) of the latency histogram buckets; `+Inf` is the count.
pub const BUCKETS_MS: [u64; 14] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000,
];

/// Counters per series: count, 4xx, 5xx, latency sum, integration latency sum and count,
/// then the latency buckets and the integration latency buckets, then the throttled and
/// quota-rejected counts.
const COUNT: usize = 0;
const E4XX: usize = 1;
const E5XX: usize = 2;
const LAT_SUM: usize = 3;
const ILAT_SUM: usize = 4;
const ILAT_COUNT: usize = 5;
const LAT_BUCKETS: usize = 6;
const ILAT_BUCKETS: usize = LAT_BUCKETS + BUCKETS_MS.len();
const THROTTLED: usize = ILAT_BUCKETS + BUCKETS_MS.len();
const QUOTA: usize = THROTTLED + 1;
const PER_SERIES: usize = QUOTA + 1;

/// The series: one per (api, stage, route or none), plus one for requests that reached no
/// stage. Built once from the gateway; shared by the shards and the scrape.
pub struct Layout {
    /// `(api, stage, route)` label values per series.
    labels: Vec<[Box<str>; 3]>,
    /// Per API: index of its first series and its stage count.
    apis: Vec<(usize, usize)>,
    /// `(api, authorizer)` label values, indexed by `Authorizer::id`.
    authorizers: Vec<[Box<str>; 2]>,
    /// `(upstream address, host, scheme)` label values, indexed like `Gateway::upstreams`.
    upstreams: Vec<[Box<str>; 3]>,
}

impl Layout {
    pub fn new(gw: &Gateway) -> Layout {
        let mut labels: Vec<[Box<str>; 3]> = vec![["".into(), "".into(), "".into()]];
        let mut apis = Vec::with_capacity(gw.apis.len());
        for api in &gw.apis {
            apis.push((labels.len(), api.stages.len()));
            let routes = std::iter::once("").chain(api.routes.iter().map(|r| &*r.key));
            for route in routes {
                for stage in &api.stages {
                    labels.push([api.name.clone(), stage.name.clone(), route.into()]);
                }
            }
        }
        let mut auth: Vec<(u32, [Box<str>; 2])> = gw
            .apis
            .iter()
            .flat_map(|api| {
                api.authorizers
                    .iter()
                    .map(|a| (a.id, [api.name.clone(), a.name.clone()]))
            })
            .collect();
        auth.sort_by_key(|(id, _)| *id);
        let upstreams = gw
            .upstreams
            .iter()
            .map(|u| {
                let scheme = if u.tls.is_some() { "https" } else { "http" };
                [
                    u.addr.to_string().into(),
                    u.host_header.clone(),
                    scheme.into(),
                ]
            })
            .collect();
        Layout {
            labels,
            apis,
            authorizers: auth.into_iter().map(|(_, l)| l).collect(),
            upstreams,
        }
    }

    /// For each of `gw`'s upstreams, the index of the process's pool gauge with the same labels
    /// (`usize::MAX` for an upstream a reload added: not reported until a restart).
    pub fn pool_gauges_for(&self, gw: &Gateway) -> Box<[usize]> {
        let local = Layout::new(gw);
        local
            .upstreams
            .iter()
            .map(|l| {
                self.upstreams
                    .iter()
                    .position(|r| r == l)
                    .unwrap_or(usize::MAX)
            })
            .collect()
    }

    /// The series of a request from where dispatch got (the references point into `gw`).
    pub fn series(
        &self,
        gw: &Gateway,
        api: Option<&Api>,
        stage: Option<&Stage>,
        route: Option<&Route>,
    ) -> usize {
        let (Some(api), Some(stage)) = (api, stage) else {
            return 0;
        };
        let Some(a) = index_in(&gw.apis, api) else {
            return 0;
        };
        let Some(s) = index_in(&api.stages, stage) else {
            return 0;
        };
        let r = route
            .and_then(|r| index_in(&api.routes, r))
            .map_or(0, |r| r + 1);
        let (base, stages) = self.apis[a];
        base + r * stages + s
    }
}

impl Layout {
    /// Every series' `(api, stage, route)` labels, by series index.
    pub fn all_labels(&self) -> &[[Box<str>; 3]] {
        &self.labels
    }
}

/// Configuration reloads, for the scrape (written by the main thread, `reload`).
#[derive(Default)]
pub struct ReloadStatus {
    /// 1 at start, +1 per successful reload.
    pub generation: AtomicU64,
    /// The last reload's result: 1 success, 0 failure (1 before any reload).
    pub last_success: AtomicU64,
    /// When the last reload attempt ended (seconds since the epoch; 0: none yet).
    pub last_time: AtomicU64,
}

/// The index of `item` in `slice` when it is one of its elements (address arithmetic only).
fn index_in<T>(slice: &[T], item: &T) -> Option<usize> {
    let size = std::mem::size_of::<T>().max(1);
    let off = (item as *const T as usize).checked_sub(slice.as_ptr() as usize)?;
    let i = off / size;
    (off % size == 0 && i < slice.len()).then_some(i)
}

/// Adds `n` to a counter only this shard writes: no locked instruction.
#[inline]
fn add(a: &AtomicU64, n: u64) {
    a.store(a.load(Relaxed).wrapping_add(n), Relaxed);
}

/// One shard's counters.
pub struct ShardMetrics {
    pub shard: usize,
    series: Box<[AtomicU64]>,
    /// Per authorizer: cache hits, then misses (copies of the shard's cache counters).
    auth_cache: Box<[AtomicU64]>,
    /// Idle (pooled) backend connections per upstream: the shard's pools store them.
    pub pool_idle: Arc<[AtomicU64]>,
    pub open_connections: AtomicU64,
    /// Requests between a parsed head and their end (also read by the drain).
    pub in_flight: AtomicU64,
    pub upstream_connect_errors: AtomicU64,
    pub upstream_timeouts: AtomicU64,
    pub upstream_failures: AtomicU64,
    pub accept_errors: AtomicU64,
    pub access_log_lines: AtomicU64,
    pub access_log_dropped: AtomicU64,
}

impl ShardMetrics {
    pub fn new(shard: usize, layout: &Layout) -> ShardMetrics {
        let n = layout.labels.len() * PER_SERIES;
        ShardMetrics {
            shard,
            series: (0..n).map(|_| AtomicU64::new(0)).collect(),
            auth_cache: (0..layout.authorizers.len() * 2)
                .map(|_| AtomicU64::new(0))
                .collect(),
            pool_idle: (0..layout.upstreams.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            open_connections: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            upstream_connect_errors: AtomicU64::new(0),
            upstream_timeouts: AtomicU64::new(0),
            upstream_failures: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            access_log_lines: AtomicU64::new(0),
            access_log_dropped: AtomicU64::new(0),
        }
    }

    /// Counts one request of `series` answered with `status` after `latency_ms`, with its
    /// backend's latency when it had one.
    pub fn request(
        &self,
        series: usize,
        status: u16,
        latency_ms: u64,
        integration_ms: Option<u64>,
    ) {
        let Some(s) = self
            .series
            .get(series * PER_SERIES..(series + 1) * PER_SERIES)
        else {
            return;
        };
        add(&s[COUNT], 1);
        match status {
            400..=499 => add(&s[E4XX], 1),
            500..=599 => add(&s[E5XX], 1),
            _ => {}
        }
        add(&s[LAT_SUM], latency_ms);
        if let Some(b) = bucket(latency_ms) {
            add(&s[LAT_BUCKETS + b], 1);
        }
        if let Some(ms) = integration_ms {
            add(&s[ILAT_SUM], ms);
            add(&s[ILAT_COUNT], 1);
            if let Some(b) = bucket(ms) {
                add(&s[ILAT_BUCKETS + b], 1);
            }
        }
    }

    /// Counts a 429 of `series` by its gateway response type (THROTTLED or QUOTA_EXCEEDED;
    /// other types are counted by `request` alone).
    pub fn rejected(&self, series: usize, ty: ResponseType) {
        let at = match ty {
            ResponseType::Throttled => THROTTLED,
            ResponseType::QuotaExceeded => QUOTA,
            _ => return,
        };
        if let Some(a) = self.series.get(series * PER_SERIES + at) {
            add(a, 1);
        }
    }

    /// Publishes authorizer `id`'s cache counters (totals kept by the shard's cache).
    pub fn auth_cache(&self, id: u32, hits: u64, misses: u64) {
        let i = id as usize * 2;
        if let (Some(h), Some(m)) = (self.auth_cache.get(i), self.auth_cache.get(i + 1)) {
            h.store(hits, Relaxed);
            m.store(misses, Relaxed);
        }
    }

    pub fn inc(a: &AtomicU64) {
        add(a, 1);
    }

    /// For the gauges (only this shard writes them).
    pub fn dec(a: &AtomicU64) {
        a.store(a.load(Relaxed).saturating_sub(1), Relaxed);
    }
}

/// The first bucket `ms` falls in (`None`: only `+Inf`).
fn bucket(ms: u64) -> Option<usize> {
    BUCKETS_MS.iter().position(|&b| ms <= b)
}

/// Every shard's metrics, for the scrape.
pub struct Registry {
    pub layout: Arc<Layout>,
    pub shards: Vec<Arc<ShardMetrics>>,
    pub reload: ReloadStatus,
}

impl Registry {
    pub fn new(gw: &Gateway, shards: usize) -> Registry {
        let layout = Arc::new(Layout::new(gw));
        let shards = (0..shards)
            .map(|i| Arc::new(ShardMetrics::new(i, &layout)))
            .collect();
        let reload = ReloadStatus::default();
        reload.generation.store(1, Relaxed);
        reload.last_success.store(1, Relaxed);
        Registry {
            layout,
            shards,
            reload,
        }
    }
}

fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn labels(l: &[Box<str>; 3], extra: Option<(&str, &str)>, out: &mut String) {
    out.push_str("{api=\"");
    escape_label(&l[0], out);
    out.push_str("\",stage=\"");
    escape_label(&l[1], out);
    out.push_str("\",route=\"");
    escape_label(&l[2], out);
    out.push('"');
    if let Some((k, v)) = extra {
        let _ = write!(out, ",{k}=\"{v}\"");
    }
    out.push('}');
}

/// The Prometheus text exposition (format 0.0.4) of every shard's counters, summed.
pub fn render(reg: &Registry) -> String {
    let n = reg.layout.labels.len();
    let mut sum = vec![0u64; n * PER_SERIES];
    for s in &reg.shards {
        for (t, a) in sum.iter_mut().zip(s.series.iter()) {
            *t = t.wrapping_add(a.load(Relaxed));
        }
    }
    let active: Vec<usize> = (0..n)
        .filter(|&i| sum[i * PER_SERIES + COUNT] > 0)
        .collect();
    let mut out = String::with_capacity(4096 + active.len() * 2048);
    let counters = [
        (
            "tollgate_count_total",
            "Requests answered (API Gateway Count).",
            COUNT,
        ),
        (
            "tollgate_4xxerror_total",
            "Requests answered with a 4xx status (API Gateway 4XXError).",
            E4XX,
        ),
        (
            "tollgate_5xxerror_total",
            "Requests answered with a 5xx status (API Gateway 5XXError).",
            E5XX,
        ),
        (
            "tollgate_throttled_total",
            "Requests refused with 429 THROTTLED (a throttle bucket was empty).",
            THROTTLED,
        ),
        (
            "tollgate_quota_exceeded_total",
            "Requests refused with 429 QUOTA_EXCEEDED (the usage plan quota was used up).",
            QUOTA,
        ),
    ];
    for (name, help, at) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for &i in &active {
            out.push_str(name);
            labels(&reg.layout.labels[i], None, &mut out);
            let _ = writeln!(out, " {}", sum[i * PER_SERIES + at]);
        }
    }
    let histograms = [
        (
            "tollgate_latency_milliseconds",
            "From the complete request head to the end of the response (API Gateway Latency).",
            LAT_BUCKETS,
            LAT_SUM,
            COUNT,
        ),
        (
            "tollgate_integration_latency_milliseconds",
            "From the start of the backend exchange to its response head (API Gateway IntegrationLatency).",
            ILAT_BUCKETS,
            ILAT_SUM,
            ILAT_COUNT,
        ),
    ];
    for (name, help, buckets, sum_at, count_at) in histograms {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for &i in &active {
            let base = i * PER_SERIES;
            let l = &reg.layout.labels[i];
            let mut cumulative = 0;
            for (b, le) in BUCKETS_MS.iter().enumerate() {
                cumulative += sum[base + buckets + b];
                let le = le.to_string();
                let _ = write!(out, "{name}_bucket");
                labels(l, Some(("le", &le)), &mut out);
                let _ = writeln!(out, " {cumulative}");
            }
            let _ = write!(out, "{name}_bucket");
            labels(l, Some(("le", "+Inf")), &mut out);
            let _ = writeln!(out, " {}", sum[base + count_at]);
            let _ = write!(out, "{name}_sum");
            labels(l, None, &mut out);
            let _ = writeln!(out, " {}", sum[base + sum_at]);
            let _ = write!(out, "{name}_count");
            labels(l, None, &mut out);
            let _ = writeln!(out, " {}", sum[base + count_at]);
        }
    }
    type Get = fn(&ShardMetrics) -> &AtomicU64;
    let per_shard: [(&str, &str, &str, Get); 8] = [
        (
            "tollgate_open_connections",
            "gauge",
            "Client connections open.",
            |m| &m.open_connections,
        ),
        (
            "tollgate_in_flight_requests",
            "gauge",
            "Requests between their head and the end of their response.",
            |m| &m.in_flight,
        ),
        (
            "tollgate_upstream_connect_errors_total",
            "counter",
            "Backend connections refused or failed.",
            |m| &m.upstream_connect_errors,
        ),
        (
            "tollgate_upstream_timeouts_total",
            "counter",
            "Backend connects or responses over the integration timeout (504).",
            |m| &m.upstream_timeouts,
        ),
        (
            "tollgate_upstream_failures_total",
            "counter",
            "Backend exchanges that failed after connecting (reset, closed, malformed response).",
            |m| &m.upstream_failures,
        ),
        (
            "tollgate_accept_errors_total",
            "counter",
            "Failed accepts (such as EMFILE at the descriptor limit).",
            |m| &m.accept_errors,
        ),
        (
            "tollgate_access_log_lines_total",
            "counter",
            "Access log lines handed to their writer.",
            |m| &m.access_log_lines,
        ),
        (
            "tollgate_access_log_dropped_lines_total",
            "counter",
            "Access log lines dropped because their destination did not keep up.",
            |m| &m.access_log_dropped,
        ),
    ];
    render_auth_cache(reg, &mut out);
    render_pool_idle(reg, &mut out);
    for (name, kind, help, get) in per_shard {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for m in &reg.shards {
            let _ = writeln!(
                out,
                "{name}{{shard=\"{}\"}} {}",
                m.shard,
                get(m).load(Relaxed)
            );
        }
    }
    crate::cluster::render_metrics(&mut out);
    render_reload(&reg.reload, &mut out);
    out
}

/// `tollgate_authorizer_cache_{hits,misses}_total{api,authorizer}`, summed over the shards.
fn render_auth_cache(reg: &Registry, out: &mut String) {
    let families = [
        (
            "tollgate_authorizer_cache_hits_total",
            "Authorizer lookups answered from the shard's result cache.",
            0,
        ),
        (
            "tollgate_authorizer_cache_misses_total",
            "Authorizer lookups that found no live cached result (an authorizer call follows).",
            1,
        ),
    ];
    for (name, help, at) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (i, [api, auth]) in reg.layout.authorizers.iter().enumerate() {
            let total: u64 = reg
                .shards
                .iter()
                .filter_map(|m| m.auth_cache.get(i * 2 + at))
                .map(|a| a.load(Relaxed))
                .fold(0, u64::wrapping_add);
            out.push_str(name);
            out.push_str("{api=\"");
            escape_label(api, out);
            out.push_str("\",authorizer=\"");
            escape_label(auth, out);
            let _ = writeln!(out, "\"}} {total}");
        }
    }
}

/// `tollgate_upstream_idle_connections{shard,upstream,host,scheme}`: each shard's pool size.
fn render_pool_idle(reg: &Registry, out: &mut String) {
    let name = "tollgate_upstream_idle_connections";
    let _ = writeln!(
        out,
        "# HELP {name} Idle keep-alive backend connections pooled, per shard and upstream.\n# TYPE {name} gauge"
    );
    for m in &reg.shards {
        for (i, [addr, host, scheme]) in reg.layout.upstreams.iter().enumerate() {
            let n = m.pool_idle.get(i).map_or(0, |a| a.load(Relaxed));
            let _ = write!(out, "{name}{{shard=\"{}\",upstream=\"", m.shard);
            escape_label(addr, out);
            out.push_str("\",host=\"");
            escape_label(host, out);
            let _ = writeln!(out, "\",scheme=\"{scheme}\"}} {n}");
        }
    }
}

/// `tollgate_config_generation` and the last reload's result and time.
fn render_reload(r: &ReloadStatus, out: &mut String) {
    let gauges = [
        (
            "tollgate_config_generation",
            "The configuration in force: 1 at start, +1 per successful reload.",
            &r.generation,
        ),
        (
            "tollgate_config_last_reload_success",
            "Whether the last reload succeeded (1) or failed (0); 1 before any reload.",
            &r.last_success,
        ),
        (
            "tollgate_config_last_reload_timestamp_seconds",
            "When the last reload attempt ended (seconds since the epoch; 0: none yet).",
            &r.last_time,
        ),
    ];
    for (name, help, v) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
            v.load(Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[[listeners]]
address = "127.0.0.1"
port = 8080
[[apis]]
name = "a"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  [[apis.stages]]
  name = "beta"
  [[apis.routes]]
  key = "GET /x"
  integration = { type = "mock", status = 200 }
  [[apis.routes]]
  key = "GET /y"
  integration = { type = "mock", status = 200 }
"#;

    #[test]
    fn series_and_sums() {
        let gw = match tollgate_core::config::load_str("t", CONFIG) {
            Ok(g) => g,
            Err(e) => panic!("{e:?}"),
        };
        let reg = Registry::new(&gw, 2);
        let api = &gw.apis[0];
        let s = reg
            .layout
            .series(&gw, Some(api), Some(&api.stages[1]), Some(&api.routes[1]));
        assert_eq!(
            reg.layout.labels[s],
            ["a".into(), "beta".into(), "GET /y".into()]
        );
        let none = reg
            .layout
            .series(&gw, Some(api), Some(&api.stages[0]), None);
        assert_eq!(
            reg.layout.labels[none],
            ["a".into(), "prod".into(), "".into()]
        );
        assert_eq!(reg.layout.series(&gw, None, None, None), 0);
        let copy = api.stages[0].clone();
        assert_eq!(reg.layout.series(&gw, Some(api), Some(&copy), None), 0);
        reg.shards[0].request(s, 200, 3, Some(2));
        reg.shards[1].request(s, 503, 40_000, None);
        reg.shards[0].rejected(s, ResponseType::Throttled);
        reg.shards[1].rejected(s, ResponseType::Throttled);
        reg.shards[1].rejected(s, ResponseType::QuotaExceeded);
        reg.shards[1].rejected(s, ResponseType::AccessDenied);
        let text = render(&reg);
        let l = "api=\"a\",stage=\"beta\",route=\"GET /y\"";
        assert!(
            text.contains(&format!("tollgate_throttled_total{{{l}}} 2\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("tollgate_quota_exceeded_total{{{l}}} 1\n")),
            "{text}"
        );
        let l = "api=\"a\",stage=\"beta\",route=\"GET /y\"";
        assert!(
            text.contains(&format!("tollgate_count_total{{{l}}} 2\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("tollgate_5xxerror_total{{{l}}} 1\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("tollgate_4xxerror_total{{{l}}} 0\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "tollgate_latency_milliseconds_bucket{{{l},le=\"5\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "tollgate_latency_milliseconds_bucket{{{l},le=\"30000\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "tollgate_latency_milliseconds_bucket{{{l},le=\"+Inf\"}} 2\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("tollgate_latency_milliseconds_sum{{{l}}} 40003\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "tollgate_integration_latency_milliseconds_count{{{l}}} 1\n"
            )),
            "{text}"
        );
        assert!(
            !text.contains("route=\"GET /x\""),
            "unused series are left out: {text}"
        );
    }
}
