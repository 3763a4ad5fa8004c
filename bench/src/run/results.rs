//! The results model: one load phase (`Phase`) with its saturation marks, each scenario's rows
//! (`LoadRow`, `SweepRow`, `IdleRow`) and the whole run (`Results`), and the medians the report
//! takes over rounds. Plain data; the drivers fill it, the report reads it.

use crate::load::WrkResult;
use crate::plot::Point;
use crate::run::{HttpsMode, Options, ProxyKind, Scenario};
use std::time::Duration;

/// One load phase of one proxy (medians are taken over these).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Phase {
    pub rps: f64,
    pub cpu_us_per_req: f64,
    /// CPU time the proxy used ÷ wall time (1.0 = one full CPU; up to 2.0 with two shards).
    pub proxy_busy: f64,
    /// CPU time of the origin and the load generator together ÷ wall time (with one client
    /// CPU: the share of it they used).
    pub client_busy: f64,
    /// The load generator's own CPU time ÷ wall time.
    pub load_busy: f64,
    /// The origin's CPU time ÷ wall time (it is single-threaded: 1.0 = saturated).
    pub origin_busy: f64,
    /// The load generator's CPU was saturated (≥ [`BOUND`]): the client CPU when origin and
    /// generator have one of their own, else the generator's own thread.
    pub client_bound: bool,
    /// The origin's thread was saturated (≥ [`BOUND`]).
    pub origin_bound: bool,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub bad: u64,
    /// Share of the proxy's CPU taken by other processes meanwhile (from `/proc/stat`).
    pub others_proxy_cpu: f64,
    /// Share of the client CPU taken by processes other than origin and load generator.
    pub others_client_cpu: f64,
}

/// CPU share from which the client side (load generator) or the origin counts as saturated.
pub const BOUND: f64 = 0.95;

/// `share` reaches [`BOUND`] as the report shows it (whole percent), so that a row showing
/// 95% is marked.
pub fn saturated(share: f64) -> bool {
    (share * 100.0).round() >= (BOUND * 100.0).round()
}

impl Phase {
    /// "client-bound", "origin-bound", both, or None.
    pub fn bound(&self) -> Option<&'static str> {
        match (self.client_bound, self.origin_bound) {
            (true, true) => Some("client-bound, origin-bound"),
            (true, false) => Some("client-bound"),
            (false, true) => Some("origin-bound"),
            (false, false) => None,
        }
    }
}

/// The saturation mark of a set of phases: set when any of them was client- or origin-bound.
pub fn bound_of<'a>(phases: impl IntoIterator<Item = &'a Phase>) -> Option<&'static str> {
    let (mut c, mut o) = (false, false);
    for p in phases {
        c |= p.client_bound;
        o |= p.origin_bound;
    }
    Phase {
        client_bound: c,
        origin_bound: o,
        ..Phase::default()
    }
    .bound()
}

/// One proxy's results in a load scenario.
#[derive(Clone, Debug)]
pub struct LoadRow {
    pub proxy: ProxyKind,
    /// Why it was not (fully) measured.
    pub failure: Option<String>,
    pub closed: Vec<Phase>,
    pub wrk: Vec<WrkResult>,
    pub open: Vec<Phase>,
    pub peak_rss_kib: u64,
    /// The latency distribution of the open-loop round with the median p99.
    pub curve: Vec<Point>,
    pub codes: Vec<String>,
}

impl LoadRow {
    pub(super) fn new(proxy: ProxyKind) -> LoadRow {
        LoadRow {
            proxy,
            failure: None,
            closed: Vec::new(),
            wrk: Vec::new(),
            open: Vec::new(),
            peak_rss_kib: 0,
            curve: Vec::new(),
            codes: Vec::new(),
        }
    }

    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// A load scenario's results.
#[derive(Clone, Debug)]
pub struct LoadScenario {
    pub scenario: Scenario,
    pub paths: Vec<String>,
    /// The open-loop rate used for the latency columns (0 if none could be set).
    pub rate: f64,
    pub rows: Vec<LoadRow>,
    pub notes: Vec<String>,
}

/// The `gateway-keys` scenario's results: tollgate on the same route and request with the
/// traffic limits (`keys`) and without (`plain`), closed loop, measured round by round in turn.
#[derive(Clone, Debug)]
pub struct KeysScenario {
    pub paths: Vec<String>,
    /// tollgate on the config with the API key, usage plan, stage throttle and quota.
    pub keys: LoadRow,
    /// tollgate on the same route without any of them.
    pub plain: LoadRow,
    pub notes: Vec<String>,
}

/// The target of issue 14: keys ÷ plain CPU per request at most this.
pub const KEYS_TARGET_RATIO: f64 = 1.10;

impl KeysScenario {
    /// The median CPU µs per request of keys ÷ that of plain (None unless both were measured).
    pub fn cpu_ratio(&self) -> Option<f64> {
        if !self.keys.ok() || !self.plain.ok() {
            return None;
        }
        let k = median_of(&self.keys.closed, |p| p.cpu_us_per_req)?;
        let p = median_of(&self.plain.closed, |p| p.cpu_us_per_req)?;
        (p > 0.0).then(|| k / p)
    }
}

/// One proxy's results in a closed-loop-only scenario (`conns`, `2-shards`).
#[derive(Clone, Debug)]
pub struct SweepRow {
    pub proxy: ProxyKind,
    /// Why it was not (fully) measured.
    pub failure: Option<String>,
    /// Closed-loop phases per connection count (the order of `SweepScenario::counts`), one
    /// per round.
    pub phases: Vec<Vec<Phase>>,
    pub peak_rss_kib: u64,
    pub codes: Vec<String>,
}

impl SweepRow {
    pub(super) fn new(proxy: ProxyKind, counts: usize) -> SweepRow {
        SweepRow {
            proxy,
            failure: None,
            phases: vec![Vec::new(); counts],
            peak_rss_kib: 0,
            codes: Vec::new(),
        }
    }

    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }

    /// The phases at connection count number `i` (empty if none).
    pub fn at(&self, i: usize) -> &[Phase] {
        self.phases.get(i).map_or(&[], Vec::as_slice)
    }
}

/// A closed-loop-only scenario's results.
#[derive(Clone, Debug)]
pub struct SweepScenario {
    pub scenario: Scenario,
    /// Client connections of each phase.
    pub counts: Vec<usize>,
    /// Workers / threads / shards per proxy.
    pub workers: usize,
    /// The CPUs the proxies were allowed on.
    pub proxy_cpus: Vec<usize>,
    /// The CPUs origin and load generator were allowed on.
    pub client_cpus: Vec<usize>,
    pub duration: Duration,
    pub rows: Vec<SweepRow>,
    pub notes: Vec<String>,
}

/// What the load and sweep rows share: the proxy, why it is no longer measured, the non-2xx
/// status codes seen, the peak RSS.
pub(super) type RowParts<'a> = (
    ProxyKind,
    &'a mut Option<String>,
    &'a mut Vec<String>,
    &'a mut u64,
);

/// A scenario row the drivers fill alike (load and sweep rows).
pub(super) trait Row {
    fn common(&mut self) -> RowParts<'_>;
}

impl Row for LoadRow {
    fn common(&mut self) -> RowParts<'_> {
        (
            self.proxy,
            &mut self.failure,
            &mut self.codes,
            &mut self.peak_rss_kib,
        )
    }
}

impl Row for SweepRow {
    fn common(&mut self) -> RowParts<'_> {
        (
            self.proxy,
            &mut self.failure,
            &mut self.codes,
            &mut self.peak_rss_kib,
        )
    }
}

/// The `fixed-rate` scenario: each anchor proxy in open loop at each rate, one phase per round
/// (`SweepRow::phases[i]` = rate `rates[i]`).
#[derive(Clone, Debug)]
pub struct FixedRateScenario {
    pub rates: Vec<f64>,
    pub rows: Vec<SweepRow>,
    pub notes: Vec<String>,
}

/// The `https` scenario: each anchor proxy in each mode, closed loop, one phase per round
/// (`SweepRow::phases[i]` = mode `modes[i]`).
#[derive(Clone, Debug)]
pub struct HttpsScenario {
    pub modes: Vec<HttpsMode>,
    pub rows: Vec<SweepRow>,
    /// The certificate every proxy served, in words (key type, names).
    pub certificate: String,
    pub notes: Vec<String>,
}

/// `access-log` and `scrape`: tollgate without (`base`) and with (`with`) the feature, rounds
/// interleaved. `access-log` compares the closed-loop phases' CPU per request, `scrape` the
/// open-loop phases' p99 at `rate`.
#[derive(Clone, Debug)]
pub struct PairScenario {
    pub scenario: Scenario,
    /// The open-loop rate (`scrape`); 0 for closed loop.
    pub rate: f64,
    pub base: LoadRow,
    pub with: LoadRow,
    /// `scrape` only: a second phase without the feature in every round (the *with* phase
    /// runs between the two, their order alternating), so `base` ÷ `control` shows how far
    /// the statistic moves with nothing changed, in the same run.
    pub control: Option<LoadRow>,
    /// `scrape`: successful `/metrics` scrapes during the `with` phases; `access-log`: lines
    /// found in the log after the `with` phases.
    pub count: u64,
    pub notes: Vec<String>,
}

/// The targets of issue 18: access log on ÷ off CPU per request, scrape ÷ none p99.
pub const ACCESS_LOG_TARGET_RATIO: f64 = 1.10;
pub const SCRAPE_TARGET_RATIO: f64 = 1.10;

impl PairScenario {
    /// The phases the comparison reads (closed loop for `access-log`, open loop for `scrape`).
    pub fn phases(&self, r: &LoadRow) -> Vec<Phase> {
        if self.scenario == Scenario::Scrape {
            r.open.clone()
        } else {
            r.closed.clone()
        }
    }

    /// The statistic compared: p99 (`scrape`) or CPU per request (`access-log`).
    fn stat(&self, p: &Phase) -> f64 {
        if self.scenario == Scenario::Scrape {
            p.p99_us
        } else {
            p.cpu_us_per_req
        }
    }

    /// The phases without the feature: `base`'s, and `control`'s when measured.
    fn without(&self) -> Vec<Phase> {
        let mut v = self.phases(&self.base);
        if let Some(c) = self.control.as_ref().filter(|c| c.ok()) {
            v.extend(self.phases(c));
        }
        v
    }

    /// with ÷ without: CPU per request (`access-log`) or p99 (`scrape`), medians over every
    /// phase of each (for `scrape`, *without* pools the base and control phases).
    pub fn ratio(&self) -> Option<f64> {
        if !self.base.ok() || !self.with.ok() {
            return None;
        }
        let w = median_of(&self.phases(&self.with), |p| self.stat(p))?;
        let b = median_of(&self.without(), |p| self.stat(p))?;
        (b > 0.0).then(|| w / b)
    }

    /// control ÷ base (medians): the same configuration measured twice, the noise floor of
    /// `ratio` in this run. None without a control row.
    pub fn noise(&self) -> Option<f64> {
        let c = self.control.as_ref().filter(|c| c.ok() && self.base.ok())?;
        let a = median_of(&self.phases(c), |p| self.stat(p))?;
        let b = median_of(&self.phases(&self.base), |p| self.stat(p))?;
        (b > 0.0).then(|| a / b)
    }

    pub fn target(&self) -> f64 {
        if self.scenario == Scenario::Scrape {
            SCRAPE_TARGET_RATIO
        } else {
            ACCESS_LOG_TARGET_RATIO
        }
    }
}

/// One proxy's results in the idle-connection scenario.
#[derive(Clone, Debug)]
pub struct IdleRow {
    pub proxy: ProxyKind,
    pub failure: Option<String>,
    pub requested: usize,
    pub held: usize,
    pub rss0_kib: u64,
    pub rss_n_kib: u64,
    pub peak_kib: u64,
    pub stopped: Option<String>,
}

impl IdleRow {
    /// (RSS_N - RSS_0) / N in KiB, N = connections still open at the RSS_N reading.
    pub fn kib_per_conn(&self) -> Option<f64> {
        (self.failure.is_none() && self.held > 0)
            .then(|| (self.rss_n_kib as f64 - self.rss0_kib as f64) / self.held as f64)
    }
}

/// Everything the report needs.
#[derive(Clone, Debug)]
pub struct Results {
    pub date: String,
    pub machine: Vec<(String, String)>,
    pub versions: Vec<(String, String)>,
    pub opts: Options,
    pub proxy_cpu: usize,
    pub client_cpu: usize,
    pub nofile: u64,
    pub clk_tck: f64,
    pub loads: Vec<LoadScenario>,
    /// The connection sweep and the two-shard scenario, in report order.
    pub sweeps: Vec<SweepScenario>,
    pub idle: Option<Vec<IdleRow>>,
    /// The `memory` scenario's bursts, when run.
    pub memory: Option<Vec<super::memory::MemoryRow>>,
    /// The `gateway-keys` scenario, when run.
    pub keys: Option<KeysScenario>,
    /// The `fixed-rate` scenario, when run.
    pub fixed: Option<FixedRateScenario>,
    /// `access-log` and `scrape`, those run, in that order.
    pub pairs: Vec<PairScenario>,
    /// The `https` scenario, when run.
    pub https: Option<HttpsScenario>,
    /// The `cluster` scenario, when run.
    pub cluster: Option<crate::run::ClusterScenario>,
    /// Proxies (and wrk) left out, with the reason.
    pub skipped: Vec<String>,
    pub notes: Vec<String>,
    pub elapsed: Duration,
}

/// The median of `v` (None when empty).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The median of one field over phases.
pub fn median_of(phases: &[Phase], f: impl Fn(&Phase) -> f64) -> Option<f64> {
    median(phases.iter().map(f).collect())
}

/// Other processes' CPU share above which a phase is reported as disturbed.
pub const OTHERS_NOTICEABLE: f64 = 0.05;

/// "0,1" for a CPU list.
pub fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![f64::NAN, 1.0]), Some(1.0));
    }

    #[test]
    fn bound_marks() {
        let free = Phase::default();
        let client = Phase {
            client_bound: true,
            ..Phase::default()
        };
        let origin = Phase {
            origin_bound: true,
            ..Phase::default()
        };
        assert_eq!(free.bound(), None);
        assert_eq!(client.bound(), Some("client-bound"));
        assert_eq!(bound_of([&free, &origin]), Some("origin-bound"));
        assert_eq!(
            bound_of([&client, &origin]),
            Some("client-bound, origin-bound")
        );
        assert_eq!(bound_of([]), None);
        assert!(saturated(0.949) && saturated(1.2) && !saturated(0.944));
    }
}
