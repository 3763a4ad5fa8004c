//! The open-loop schedule and coordinated-omission correction, with no I/O:
//! every request has an intended send time on a fixed global grid
//! (`start + seq / rate`), request `seq` belongs to connection `seq % connections`,
//! and a request that is due while its connection is busy waits. Latency is
//! measured from the intended time ("corrected"); the time from the actual
//! send is the uncorrected "service time". [`simulate`] drives the same state
//! machine with a simulated clock and server, for tests.

use hdrhistogram::Histogram;

/// When the next request of a connection is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Due at (or before) `now`: send it; the value is its intended time.
    Now(u64),
    /// Not yet: wake up at this time.
    At(u64),
    /// The schedule has no more requests for this connection.
    Exhausted,
}

/// One connection's share of the global schedule. Times are nanoseconds on
/// any monotonic clock.
#[derive(Debug, Clone)]
pub struct Schedule {
    start_ns: u64,
    ns_per_req: f64,
    /// Sequence number of this connection's next request.
    seq: u64,
    stride: u64,
    /// Requests are intended strictly before this time...
    end_ns: u64,
    /// ...and have a global sequence number below this.
    limit: u64,
}

impl Schedule {
    /// Connection `conn` of `connections` at a total `rate` (requests/s), for
    /// requests intended in `[start_ns, end_ns)`, at most `limit` in total
    /// over all connections.
    pub fn new(
        start_ns: u64,
        end_ns: u64,
        rate: f64,
        conn: usize,
        connections: usize,
        limit: Option<u64>,
    ) -> Self {
        Schedule {
            start_ns,
            ns_per_req: 1e9 / rate,
            seq: conn as u64,
            stride: connections.max(1) as u64,
            end_ns,
            limit: limit.unwrap_or(u64::MAX),
        }
    }

    #[inline]
    fn time_of(&self, seq: u64) -> u64 {
        self.start_ns + (seq as f64 * self.ns_per_req) as u64
    }

    /// Intended time of the next request, if there is one.
    #[inline]
    pub fn next_intended(&self) -> Option<u64> {
        if self.seq >= self.limit {
            return None;
        }
        let t = self.time_of(self.seq);
        (t < self.end_ns).then_some(t)
    }

    /// What an idle connection should do at `now`.
    #[inline]
    pub fn poll(&self, now: u64) -> Due {
        match self.next_intended() {
            None => Due::Exhausted,
            Some(t) if t <= now => Due::Now(t),
            Some(t) => Due::At(t),
        }
    }

    /// The request returned by [`Schedule::poll`] was sent.
    #[inline]
    pub fn advance(&mut self) {
        self.seq += self.stride;
    }

    /// How many of this connection's requests are due at or before `now` but
    /// not sent (the backlog a busy or broken connection has built up).
    pub fn backlog(&self, now: u64) -> u64 {
        let mut n = 0;
        let mut s = self.clone();
        while let Due::Now(_) = s.poll(now) {
            n += 1;
            s.advance();
        }
        n
    }
}

/// Latency of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// From the intended send time: what a user of the system would see.
    pub corrected_ns: u64,
    /// From the actual send: what a closed-loop tester would report.
    pub service_ns: u64,
}

impl Sample {
    #[inline]
    pub fn new(intended_ns: u64, sent_ns: u64, done_ns: u64) -> Self {
        Sample {
            corrected_ns: done_ns.saturating_sub(intended_ns),
            service_ns: done_ns.saturating_sub(sent_ns),
        }
    }
}

/// A fresh latency histogram in microseconds: 1 µs .. 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid")
}

/// Nanoseconds to the histogram's microseconds, rounded to nearest.
#[inline]
pub fn ns_to_us(ns: u64) -> u64 {
    (ns + 500) / 1000
}

/// Outcome of [`simulate`].
pub struct SimResult {
    pub corrected: Histogram<u64>,
    pub service: Histogram<u64>,
    pub sent: u64,
}

/// Run the open-loop state machine against a simulated server with one
/// request in flight per connection, as the engine does. `server(conn,
/// sent_ns)` returns when the response to a request sent at `sent_ns`
/// completes. Connections are independent here, so each is simulated in turn.
pub fn simulate(
    rate: f64,
    connections: usize,
    duration_ns: u64,
    mut server: impl FnMut(usize, u64) -> u64,
) -> SimResult {
    let mut corrected = new_histogram();
    let mut service = new_histogram();
    let mut sent = 0;
    for conn in 0..connections {
        let mut sched = Schedule::new(0, duration_ns, rate, conn, connections, None);
        let mut now = 0u64;
        loop {
            match sched.poll(now) {
                Due::Exhausted => break,
                Due::At(t) => now = t,
                Due::Now(intended) => {
                    sched.advance();
                    sent += 1;
                    let done = server(conn, now).max(now);
                    let s = Sample::new(intended, now, done);
                    corrected.saturating_record(ns_to_us(s.corrected_ns));
                    service.saturating_record(ns_to_us(s.service_ns));
                    now = done;
                }
            }
        }
    }
    SimResult {
        corrected,
        service,
        sent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    #[test]
    fn global_grid_is_evenly_spaced_across_connections() {
        // 1000 req/s over 4 connections: connection c sends at c ms, c+4 ms, ...
        let mut times = Vec::new();
        for c in 0..4 {
            let mut s = Schedule::new(5 * S, 5 * S + 20 * MS, 1000.0, c, 4, None);
            while let Some(t) = s.next_intended() {
                times.push(t - 5 * S);
                s.advance();
            }
        }
        times.sort_unstable();
        let want: Vec<u64> = (0..20).map(|i| i * MS).collect();
        assert_eq!(times, want);
    }

    #[test]
    fn poll_reports_due_and_wait_times() {
        let mut s = Schedule::new(0, S, 10.0, 0, 1, None);
        assert_eq!(s.poll(0), Due::Now(0));
        s.advance();
        assert_eq!(s.poll(50 * MS), Due::At(100 * MS));
        assert_eq!(s.poll(350 * MS), Due::Now(100 * MS));
        assert_eq!(s.backlog(350 * MS), 3);
        for _ in 0..9 {
            s.advance();
        }
        assert_eq!(s.poll(10 * S), Due::Exhausted);
    }

    #[test]
    fn request_limit_is_global() {
        let mut total = 0;
        for c in 0..3 {
            let mut s = Schedule::new(0, 100 * S, 100.0, c, 3, Some(10));
            while let Due::Now(_) = s.poll(u64::MAX) {
                s.advance();
                total += 1;
            }
        }
        assert_eq!(total, 10);
    }

    #[test]
    fn sample_measures_from_intended_time() {
        let s = Sample::new(100, 300, 1300);
        assert_eq!(
            s,
            Sample {
                corrected_ns: 1200,
                service_ns: 1000
            }
        );
        assert_eq!(Sample::new(500, 400, 450).corrected_ns, 0);
    }

    /// A server that answers in 1 ms, except that it stalls everything for
    /// 1 s once: responses to requests arriving during the stall complete
    /// when the stall ends (+1 ms).
    fn stalling_server(stall_at: u64) -> impl FnMut(usize, u64) -> u64 {
        move |_, sent| {
            if (stall_at..stall_at + S).contains(&sent) {
                stall_at + S + MS
            } else {
                sent + MS
            }
        }
    }

    #[test]
    fn correction_exposes_a_stall_that_service_time_hides() {
        // 100 req/s for 50 s on one connection: 5000 requests, 100 of them
        // (2%) are due during the 1 s stall.
        let r = simulate(100.0, 1, 50 * S, stalling_server(20 * S));
        assert_eq!(r.sent, 5000);
        assert_eq!(r.corrected.len(), 5000);
        let p50 = r.corrected.value_at_quantile(0.50);
        let p99 = r.corrected.value_at_quantile(0.99);
        let max = r.corrected.max();
        // Most requests still see 1 ms...
        assert!((990..=1010).contains(&p50), "p50 {p50}");
        // ...but a user would have seen a tail of hundreds of ms,
        assert!(p99 >= 400_000, "corrected p99 {p99} us");
        assert!(max >= 990_000, "corrected max {max} us");
        // while the send-to-receive time hides it: one slow request in 5000.
        let sp99 = r.service.value_at_quantile(0.99);
        let sp999 = r.service.value_at_quantile(0.999);
        assert!(sp99 <= 1010, "service p99 {sp99}");
        assert!(sp999 <= 1010, "service p99.9 {sp999}");
        assert!(r.service.max() >= 990_000);
        // Corrected and uncorrected agree where nothing stalls.
        let quiet = simulate(100.0, 1, 10 * S, |_, t| t + MS);
        assert_eq!(quiet.corrected.max(), quiet.service.max());
    }

    #[test]
    fn correction_with_several_connections() {
        // 400 req/s over 4 connections for 50 s; 400 of 20000 requests due during the stall.
        let r = simulate(400.0, 4, 50 * S, stalling_server(30 * S));
        assert_eq!(r.sent, 20_000);
        assert!(r.corrected.value_at_quantile(0.99) >= 400_000);
        assert!(r.service.value_at_quantile(0.99) <= 1010);
    }

    #[test]
    fn a_slow_server_builds_a_backlog() {
        // 100 req/s but each response takes 20 ms on one connection: capacity
        // is 50 req/s, so the waiting time grows without bound.
        let r = simulate(100.0, 1, 10 * S, |_, t| t + 20 * MS);
        assert!(r.service.max() <= 20_100);
        assert!(r.corrected.max() >= 5_000_000, "max {}", r.corrected.max());
    }
}
