//! Per-shard metrics and their Prometheus text rendering.
//!
//! Two kinds of counters. [`ShardMetrics`], one per shard, for what does not depend on the
//! configuration (connections, in-flight requests, upstream failures, access log lines).
//! [`GenMetrics`], one per configuration generation per shard, for what does: request series,
//! authorizer cache counts and upstream pool gauges, numbered in that generation ([`Layout`]),
//! so a request adds to its series with one index into its generation's block. Both are
//! atomics that only their shard's thread writes (a relaxed load and store, no locked
//! read-modify-write) and that the admin listener's thread reads when scraped.
//!
//! The [`Registry`] interns every label set a generation brings (an append-only list: a label
//! set keeps its index for the life of the process) and keeps every generation's blocks; a
//! scrape ([`render`]) sums them by label set, so a series present before and after a reload
//! continues, and one a reload added has its own labels at once. A block whose generation has
//! ended (only the registry still holds it) is folded into per-label totals and freed, so
//! counters never go backwards and memory follows the label sets, not the reloads. The
//! registry's lock is taken by reloads and scrapes only.
//!
//! Request metrics are named after API Gateway's (Count, 4XXError, 5XXError, Latency,
//! IntegrationLatency; guide L38611-38735) and labelled with api, stage and route (the route
//! key; "" when no route matched). Requests that reached no stage are counted under empty api
//! and stage labels. Besides those: 429 THROTTLED and QUOTA_EXCEEDED answers per series,
//! authorizer cache hits and misses per authorizer (the shard adds what its cache's counters
//! grew by after each lookup), idle backend connections per upstream (a gauge the shard's pool
//! stores on every park, take and reap), and per-shard counters and gauges. Every name is
//! documented in `tuning/CONFIG.md` ("Metrics").

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
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

/// One generation's series, authorizers and upstreams, in its own numbering: one series per
/// (api, stage, route or none), plus series 0 for requests that reached no stage.
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

    /// The series of a request from where dispatch got (the references point into `gw`, the
    /// gateway this layout was built from).
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
        let Some(&(base, stages)) = self.apis.get(a) else {
            return 0;
        };
        base + r * stages + s
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

fn zeros(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

/// One shard's counters that do not depend on the configuration.
pub struct ShardMetrics {
    pub shard: usize,
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
    pub fn new(shard: usize) -> ShardMetrics {
        ShardMetrics {
            shard,
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

    pub fn inc(a: &AtomicU64) {
        add(a, 1);
    }

    /// For the gauges (only this shard writes them).
    pub fn dec(a: &AtomicU64) {
        a.store(a.load(Relaxed).saturating_sub(1), Relaxed);
    }
}

/// One generation's counters on one shard, in the generation's own numbering (`Layout`):
/// only that shard writes them, the scrape reads them and adds them up by labels with the
/// other generations' and shards'.
pub struct GenMetrics {
    shard: usize,
    series: Box<[AtomicU64]>,
    /// Per authorizer: cache hits, then misses (lookups counted in this generation).
    auth: Box<[AtomicU64]>,
    /// Per authorizer: the cache's own `(hits, misses)` when last published (shard-only).
    auth_seen: Box<[AtomicU64]>,
    /// Idle (pooled) backend connections per upstream: the generation's pools store them.
    pub pool_idle: Arc<[AtomicU64]>,
    /// Local series, authorizer and upstream → the registry's label set.
    series_of: Box<[usize]>,
    auth_of: Box<[usize]>,
    upstream_of: Box<[usize]>,
}

impl GenMetrics {
    fn with_labels(
        shard: usize,
        layout: &Layout,
        series_of: Box<[usize]>,
        auth_of: Box<[usize]>,
        upstream_of: Box<[usize]>,
    ) -> GenMetrics {
        let auths = layout.authorizers.len() * 2;
        GenMetrics {
            shard,
            series: zeros(layout.labels.len() * PER_SERIES),
            auth: zeros(auths),
            auth_seen: zeros(auths),
            pool_idle: Arc::from(zeros(layout.upstreams.len())),
            series_of,
            auth_of,
            upstream_of,
        }
    }

    /// Counters that no registry reports (unit tests of other modules).
    #[cfg(test)]
    pub fn detached(shard: usize, layout: &Layout) -> GenMetrics {
        GenMetrics::with_labels(shard, layout, Box::new([]), Box::new([]), Box::new([]))
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

    /// Publishes authorizer `id`'s cache counters (`hits`, `misses`: the totals its cache
    /// keeps): what they grew by since the last call is added to this generation's counts.
    pub fn auth_cache(&self, id: u32, hits: u64, misses: u64) {
        let i = id as usize * 2;
        for (at, now) in [(i, hits), (i + 1, misses)] {
            if let (Some(seen), Some(total)) = (self.auth_seen.get(at), self.auth.get(at)) {
                add(total, now.saturating_sub(seen.load(Relaxed)));
                seen.store(now, Relaxed);
            }
        }
    }

    /// Records authorizer `id`'s cache counters as already published (a reload moved a cache,
    /// with the lookups it counted, to or from this generation).
    pub fn auth_cache_seen(&self, id: u32, hits: u64, misses: u64) {
        let i = id as usize * 2;
        if let (Some(h), Some(m)) = (self.auth_seen.get(i), self.auth_seen.get(i + 1)) {
            h.store(hits, Relaxed);
            m.store(misses, Relaxed);
        }
    }
}

/// The first bucket `ms` falls in (`None`: only `+Inf`).
fn bucket(ms: u64) -> Option<usize> {
    BUCKETS_MS.iter().position(|&b| ms <= b)
}

/// Label sets in the order they first appeared; an index, once given, names the same labels
/// for the life of the process (the list only grows).
struct Interned<const N: usize> {
    list: Vec<[Box<str>; N]>,
    index: HashMap<[Box<str>; N], usize>,
}

impl<const N: usize> Interned<N> {
    fn new() -> Self {
        Interned {
            list: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn intern(&mut self, l: &[Box<str>; N]) -> usize {
        if let Some(&i) = self.index.get(l) {
            return i;
        }
        let i = self.list.len();
        self.list.push(l.clone());
        self.index.insert(l.clone(), i);
        i
    }

    fn all(&mut self, ls: &[[Box<str>; N]]) -> Box<[usize]> {
        ls.iter().map(|l| self.intern(l)).collect()
    }
}

/// What the registry's lock guards: touched by reloads (`register`) and scrapes only.
struct Book {
    series: Interned<3>,
    authorizers: Interned<2>,
    upstreams: Interned<3>,
    /// The counters of every generation some shard may still count in.
    live: Vec<Arc<GenMetrics>>,
    /// Counts of the generations no shard holds any more, by label set: series ×
    /// `PER_SERIES`, then authorizer × 2.
    retired_series: Vec<u64>,
    retired_auth: Vec<u64>,
}

impl Book {
    /// Adds the counts of generations that no shard holds any more to the retired totals
    /// and forgets their blocks (their pool gauges went with their pools).
    fn retire(&mut self) {
        let (series, auth) = (&mut self.retired_series, &mut self.retired_auth);
        self.live.retain(|g| {
            // Only this list holds it: its generation was dropped (the `Arc`'s release on
            // drop orders the shard's last writes before this acquire).
            if Arc::strong_count(g) > 1 {
                return true;
            }
            add_series(series, g);
            add_auth(auth, g);
            false
        });
    }
}

fn add_series(sum: &mut Vec<u64>, g: &GenMetrics) {
    for (local, &global) in g.series_of.iter().enumerate() {
        let (from, to) = (local * PER_SERIES, global * PER_SERIES);
        if sum.len() < to + PER_SERIES {
            sum.resize(to + PER_SERIES, 0);
        }
        for k in 0..PER_SERIES {
            if let Some(a) = g.series.get(from + k) {
                sum[to + k] = sum[to + k].wrapping_add(a.load(Relaxed));
            }
        }
    }
}

fn add_auth(sum: &mut Vec<u64>, g: &GenMetrics) {
    for (local, &global) in g.auth_of.iter().enumerate() {
        if sum.len() < global * 2 + 2 {
            sum.resize(global * 2 + 2, 0);
        }
        for k in 0..2 {
            if let Some(a) = g.auth.get(local * 2 + k) {
                sum[global * 2 + k] = sum[global * 2 + k].wrapping_add(a.load(Relaxed));
            }
        }
    }
}

/// Every shard's metrics, for the scrape: the per-shard counters, and every generation's
/// counter blocks with the label sets they map to.
pub struct Registry {
    pub shards: Vec<Arc<ShardMetrics>>,
    pub reload: ReloadStatus,
    book: Mutex<Book>,
}

impl Registry {
    /// The registry of `shards` shards; `gw`'s series come first in the exposition.
    pub fn new(gw: &Gateway, shards: usize) -> Registry {
        let shards = (0..shards)
            .map(|i| Arc::new(ShardMetrics::new(i)))
            .collect();
        let reload = ReloadStatus::default();
        reload.generation.store(1, Relaxed);
        reload.last_success.store(1, Relaxed);
        let mut book = Book {
            series: Interned::new(),
            authorizers: Interned::new(),
            upstreams: Interned::new(),
            live: Vec::new(),
            retired_series: Vec::new(),
            retired_auth: Vec::new(),
        };
        let layout = Layout::new(gw);
        book.series.all(&layout.labels);
        book.authorizers.all(&layout.authorizers);
        book.upstreams.all(&layout.upstreams);
        Registry {
            shards,
            reload,
            book: Mutex::new(book),
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counters of a new generation with `layout` on `shard` (at start and on reload;
    /// takes the registry's lock, never taken by requests).
    pub fn register(&self, shard: usize, layout: &Layout) -> Arc<GenMetrics> {
        let mut book = self.book();
        book.retire();
        let series_of = book.series.all(&layout.labels);
        let auth_of = book.authorizers.all(&layout.authorizers);
        let upstream_of = book.upstreams.all(&layout.upstreams);
        let g = Arc::new(GenMetrics::with_labels(
            shard,
            layout,
            series_of,
            auth_of,
            upstream_of,
        ));
        book.live.push(g.clone());
        g
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

/// The Prometheus text exposition (format 0.0.4) of every shard's counters, summed over
/// shards and generations by labels.
pub fn render(reg: &Registry) -> String {
    let mut book = reg.book();
    book.retire();
    let n = book.series.list.len();
    let mut sum = book.retired_series.clone();
    sum.resize(n * PER_SERIES, 0);
    let mut auth = book.retired_auth.clone();
    auth.resize(book.authorizers.list.len() * 2, 0);
    for g in &book.live {
        add_series(&mut sum, g);
        add_auth(&mut auth, g);
    }
    let book = &*book;
    let active: Vec<usize> = (0..n)
        .filter(|&i| sum[i * PER_SERIES + COUNT] > 0)
        .collect();
    let mut out = String::with_capacity(4096 + active.len() * 2048);
    render_counters(book, &sum, &active, &mut out);
    render_histograms(book, &sum, &active, &mut out);
    render_auth_cache(book, &auth, &mut out);
    render_pool_idle(reg, book, &mut out);
    render_per_shard(reg, &mut out);
    crate::cluster::render_metrics(&mut out);
    render_reload(&reg.reload, &mut out);
    out
}

/// The request counters (Count, 4XXError, 5XXError, 429s) of the `active` series.
fn render_counters(book: &Book, sum: &[u64], active: &[usize], out: &mut String) {
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
        for &i in active {
            out.push_str(name);
            labels(&book.series.list[i], None, out);
            let _ = writeln!(out, " {}", sum[i * PER_SERIES + at]);
        }
    }
}

/// The Latency and IntegrationLatency histograms of the `active` series.
fn render_histograms(book: &Book, sum: &[u64], active: &[usize], out: &mut String) {
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
        for &i in active {
            let base = i * PER_SERIES;
            let l = &book.series.list[i];
            let mut cumulative = 0;
            for (b, le) in BUCKETS_MS.iter().enumerate() {
                cumulative += sum[base + buckets + b];
                let le = le.to_string();
                let _ = write!(out, "{name}_bucket");
                labels(l, Some(("le", &le)), out);
                let _ = writeln!(out, " {cumulative}");
            }
            let _ = write!(out, "{name}_bucket");
            labels(l, Some(("le", "+Inf")), out);
            let _ = writeln!(out, " {}", sum[base + count_at]);
            let _ = write!(out, "{name}_sum");
            labels(l, None, out);
            let _ = writeln!(out, " {}", sum[base + sum_at]);
            let _ = write!(out, "{name}_count");
            labels(l, None, out);
            let _ = writeln!(out, " {}", sum[base + count_at]);
        }
    }
}

/// The per-shard gauges and counters (connections, upstream failures, accepts, log lines).
fn render_per_shard(reg: &Registry, out: &mut String) {
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
}

/// `tollgate_authorizer_cache_{hits,misses}_total{api,authorizer}`: `totals` (hits and
/// misses per label set), summed over shards and generations.
fn render_auth_cache(book: &Book, totals: &[u64], out: &mut String) {
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
        for (i, [api, auth]) in book.authorizers.list.iter().enumerate() {
            let total = totals.get(i * 2 + at).copied().unwrap_or(0);
            out.push_str(name);
            out.push_str("{api=\"");
            escape_label(api, out);
            out.push_str("\",authorizer=\"");
            escape_label(auth, out);
            let _ = writeln!(out, "\"}} {total}");
        }
    }
}

/// `tollgate_upstream_idle_connections{shard,upstream,host,scheme}`: each shard's pooled
/// connections per upstream, summed over the generations it still holds, for every upstream
/// of a generation some shard holds.
fn render_pool_idle(reg: &Registry, book: &Book, out: &mut String) {
    let name = "tollgate_upstream_idle_connections";
    let _ = writeln!(
        out,
        "# HELP {name} Idle keep-alive backend connections pooled, per shard and upstream.\n# TYPE {name} gauge"
    );
    let mut shown = vec![false; book.upstreams.list.len()];
    for g in &book.live {
        for &u in g.upstream_of.iter() {
            if let Some(s) = shown.get_mut(u) {
                *s = true;
            }
        }
    }
    for m in &reg.shards {
        let mut idle = vec![0u64; shown.len()];
        for g in book.live.iter().filter(|g| g.shard == m.shard) {
            for (local, &u) in g.upstream_of.iter().enumerate() {
                if let (Some(t), Some(a)) = (idle.get_mut(u), g.pool_idle.get(local)) {
                    *t += a.load(Relaxed);
                }
            }
        }
        for (i, [addr, host, scheme]) in book.upstreams.list.iter().enumerate() {
            if !shown[i] {
                continue;
            }
            let _ = write!(out, "{name}{{shard=\"{}\",upstream=\"", m.shard);
            escape_label(addr, out);
            out.push_str("\",host=\"");
            escape_label(host, out);
            let _ = writeln!(out, "\",scheme=\"{scheme}\"}} {}", idle[i]);
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
        let layout = Layout::new(&gw);
        let shard = [reg.register(0, &layout), reg.register(1, &layout)];
        let api = &gw.apis[0];
        let s = layout.series(&gw, Some(api), Some(&api.stages[1]), Some(&api.routes[1]));
        assert_eq!(
            layout.labels[s],
            ["a".into(), "beta".into(), "GET /y".into()]
        );
        let none = layout.series(&gw, Some(api), Some(&api.stages[0]), None);
        assert_eq!(layout.labels[none], ["a".into(), "prod".into(), "".into()]);
        assert_eq!(layout.series(&gw, None, None, None), 0);
        let copy = api.stages[0].clone();
        assert_eq!(layout.series(&gw, Some(api), Some(&copy), None), 0);
        shard[0].request(s, 200, 3, Some(2));
        shard[1].request(s, 503, 40_000, None);
        shard[0].rejected(s, ResponseType::Throttled);
        shard[1].rejected(s, ResponseType::Throttled);
        shard[1].rejected(s, ResponseType::QuotaExceeded);
        shard[1].rejected(s, ResponseType::AccessDenied);
        let text = render(&reg);
        let l = "api=\"a\",stage=\"beta\",route=\"GET /y\"";
        for want in [
            format!("tollgate_throttled_total{{{l}}} 2\n"),
            format!("tollgate_quota_exceeded_total{{{l}}} 1\n"),
            format!("tollgate_count_total{{{l}}} 2\n"),
            format!("tollgate_5xxerror_total{{{l}}} 1\n"),
            format!("tollgate_4xxerror_total{{{l}}} 0\n"),
            format!("tollgate_latency_milliseconds_bucket{{{l},le=\"5\"}} 1\n"),
            format!("tollgate_latency_milliseconds_bucket{{{l},le=\"30000\"}} 1\n"),
            format!("tollgate_latency_milliseconds_bucket{{{l},le=\"+Inf\"}} 2\n"),
            format!("tollgate_latency_milliseconds_sum{{{l}}} 40003\n"),
            format!("tollgate_integration_latency_milliseconds_count{{{l}}} 1\n"),
        ] {
            assert!(text.contains(&want), "{want:?} missing from:\n{text}");
        }
        assert!(
            !text.contains("route=\"GET /x\""),
            "unused series are left out: {text}"
        );
    }

    #[test]
    fn series_follow_generations_and_never_go_backwards() {
        let load =
            |t: &str| tollgate_core::config::load_str("t", t).unwrap_or_else(|e| panic!("{e:?}"));
        let one = load(CONFIG);
        let added = CONFIG.replace("GET /x", "GET /z");
        let two = load(&added);
        let reg = Registry::new(&one, 1);
        let (l1, l2) = (Layout::new(&one), Layout::new(&two));
        let g1 = reg.register(0, &l1);
        let series = |gw: &Gateway, l: &Layout, r: usize| {
            let api = &gw.apis[0];
            l.series(gw, Some(api), Some(&api.stages[0]), Some(&api.routes[r]))
        };
        g1.request(series(&one, &l1, 0), 200, 1, None);
        g1.request(series(&one, &l1, 1), 200, 1, None);
        // Generation 2 has `GET /z` where generation 1 had `GET /x`; `GET /y` is in both.
        let g2 = reg.register(0, &l2);
        g2.request(series(&two, &l2, 0), 200, 1, None);
        g2.request(series(&two, &l2, 1), 200, 1, None);
        g2.request(series(&two, &l2, 1), 200, 1, None);
        let count = |text: &str, route: &str| {
            let l = format!("tollgate_count_total{{api=\"a\",stage=\"prod\",route=\"{route}\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(l.as_str()))
                .map(|v| v.to_string())
        };
        let text = render(&reg);
        assert_eq!(count(&text, "GET /z").as_deref(), Some("1"), "{text}");
        assert_eq!(count(&text, "GET /y").as_deref(), Some("3"), "{text}");
        assert_eq!(count(&text, "GET /x").as_deref(), Some("1"), "{text}");
        // Generation 1 ends: its counts are kept under their labels.
        drop(g1);
        let text = render(&reg);
        assert_eq!(reg.book().live.len(), 1);
        assert_eq!(count(&text, "GET /x").as_deref(), Some("1"), "{text}");
        assert_eq!(count(&text, "GET /y").as_deref(), Some("3"), "{text}");
        g2.request(series(&two, &l2, 1), 200, 1, None);
        assert_eq!(count(&render(&reg), "GET /y").as_deref(), Some("4"));
    }

    #[test]
    fn authorizer_lookups_are_counted_once_when_a_cache_moves() {
        let gw = tollgate_core::config::load_str("t", CONFIG).unwrap_or_else(|e| panic!("{e:?}"));
        let mut layout = Layout::new(&gw);
        layout.authorizers = vec![["a".into(), "auth".into()]];
        let reg = Registry::new(&gw, 1);
        let (old, new) = (reg.register(0, &layout), reg.register(0, &layout));
        old.auth_cache(0, 5, 2);
        // The cache (5 hits, 2 misses) moves to the new generation; the old one gets a fresh one.
        new.auth_cache_seen(0, 5, 2);
        old.auth_cache_seen(0, 0, 0);
        new.auth_cache(0, 7, 2);
        old.auth_cache(0, 0, 1);
        let text = render(&reg);
        let l = "{api=\"a\",authorizer=\"auth\"}";
        assert!(
            text.contains(&format!("tollgate_authorizer_cache_hits_total{l} 7\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("tollgate_authorizer_cache_misses_total{l} 3\n")),
            "{text}"
        );
    }
}
