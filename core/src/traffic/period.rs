//! Quota periods on UTC boundaries: DAY (from 00:00 UTC), WEEK (from Monday 00:00 UTC, as
//! AWS starts weeks) and MONTH (from the 1st at 00:00 UTC), and the civil-date arithmetic they
//! need (days since 1970-01-01 ↔ year/month/day, proleptic Gregorian, leap years included),
//! written by hand so no date crate is needed.
//!
//! A period has no start-day offset: API Gateway's `QuotaSettings.offset` is "the number of
//! requests subtracted from the given limit in the initial time period", a count, which the
//! quota store applies (`quota`), not a calendar shift.

const SECS_PER_DAY: i64 = 86_400;

/// `DAY | WEEK | MONTH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeriodKind {
    Day,
    Week,
    Month,
}

impl PeriodKind {
    pub fn from_name(name: &str) -> Option<PeriodKind> {
        match name {
            "DAY" => Some(PeriodKind::Day),
            "WEEK" => Some(PeriodKind::Week),
            "MONTH" => Some(PeriodKind::Month),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PeriodKind::Day => "DAY",
            PeriodKind::Week => "WEEK",
            PeriodKind::Month => "MONTH",
        }
    }
}

/// A quota period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Period {
    kind: PeriodKind,
}

impl Period {
    pub fn new(kind: PeriodKind) -> Period {
        Period { kind }
    }

    pub fn kind(&self) -> PeriodKind {
        self.kind
    }

    /// The UTC day (days since 1970-01-01) the period holding `day` starts on.
    pub fn start_day(&self, day: i64) -> i64 {
        match self.kind {
            PeriodKind::Day => day,
            PeriodKind::Week => {
                // 1970-01-01 was a Thursday: weekday 3 with Monday = 0.
                day - (day + 3).rem_euclid(7)
            }
            PeriodKind::Month => {
                let (y, m, _) = civil_from_days(day);
                days_from_civil(y, m, 1)
            }
        }
    }

    /// The first day of the next period after the one starting on `start_day`.
    pub fn next_start_day(&self, start_day: i64) -> i64 {
        match self.kind {
            PeriodKind::Day => start_day + 1,
            PeriodKind::Week => start_day + 7,
            PeriodKind::Month => {
                let (y, m, _) = civil_from_days(start_day);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(ny, nm, 1)
            }
        }
    }

    /// `[start, end)` of the period holding `unix_secs`, in seconds since the epoch (UTC).
    pub fn bounds(&self, unix_secs: i64) -> (i64, i64) {
        let start = self.start_day(unix_secs.div_euclid(SECS_PER_DAY));
        (
            start * SECS_PER_DAY,
            self.next_start_day(start) * SECS_PER_DAY,
        )
    }
}

pub use crate::civil::{civil_from_days, days_from_civil};

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i64, m: u32, d: u32) -> i64 {
        days_from_civil(y, m, d)
    }

    fn secs(y: i64, m: u32, d: u32, h: i64, min: i64, s: i64) -> i64 {
        day(y, m, d) * SECS_PER_DAY + h * 3600 + min * 60 + s
    }

    #[test]
    fn day_periods_start_at_midnight_utc() {
        let p = Period::new(PeriodKind::Day);
        let t = secs(2026, 11, 30, 23, 59, 59);
        assert_eq!(
            p.bounds(t),
            (secs(2026, 11, 30, 0, 0, 0), secs(2026, 12, 1, 0, 0, 0))
        );
        assert_eq!(p.bounds(t + 1).0, secs(2026, 12, 1, 0, 0, 0));
        // Before the epoch too.
        assert_eq!(
            p.bounds(secs(1969, 12, 31, 12, 0, 0)),
            (secs(1969, 12, 31, 0, 0, 0), secs(1970, 1, 1, 0, 0, 0))
        );
    }

    #[test]
    fn weeks_start_on_monday() {
        let p = Period::new(PeriodKind::Week);
        // 2026-11-30 is a Monday, 2026-11-29 a Sunday.
        let monday = secs(2026, 11, 30, 0, 0, 0);
        for t in [
            monday,
            secs(2026, 12, 2, 12, 0, 0),
            secs(2026, 12, 6, 23, 59, 59),
        ] {
            assert_eq!(p.bounds(t), (monday, secs(2026, 12, 7, 0, 0, 0)), "{t}");
        }
        // The last second of Sunday is still the previous week.
        assert_eq!(p.bounds(monday - 1), (secs(2026, 11, 23, 0, 0, 0), monday));
        // 1970-01-01 (a Thursday) is in the week from Monday 1969-12-29; a week across a year
        // end and across 2024-02-29.
        assert_eq!(p.bounds(0).0, secs(1969, 12, 29, 0, 0, 0));
        assert_eq!(
            p.bounds(secs(2027, 1, 1, 8, 0, 0)),
            (secs(2026, 12, 28, 0, 0, 0), secs(2027, 1, 4, 0, 0, 0))
        );
        assert_eq!(
            p.bounds(secs(2024, 3, 1, 0, 0, 0)),
            (secs(2024, 2, 26, 0, 0, 0), secs(2024, 3, 4, 0, 0, 0))
        );
        // Every week start over 40 years is a Monday, seven days apart.
        let mut start = p.start_day(day(2000, 1, 1));
        assert_eq!(start, day(1999, 12, 27));
        while start < day(2040, 1, 1) {
            assert_eq!((start + 3).rem_euclid(7), 0);
            assert_eq!(p.start_day(start + 6), start);
            let next = p.next_start_day(start);
            assert_eq!(next, start + 7);
            start = next;
        }
    }

    #[test]
    fn months_start_on_the_first_with_their_lengths_and_leap_years() {
        let p = Period::new(PeriodKind::Month);
        assert_eq!(
            p.bounds(secs(2024, 2, 29, 23, 0, 0)),
            (secs(2024, 2, 1, 0, 0, 0), secs(2024, 3, 1, 0, 0, 0))
        );
        assert_eq!(
            p.bounds(secs(2023, 2, 28, 0, 0, 0)),
            (secs(2023, 2, 1, 0, 0, 0), secs(2023, 3, 1, 0, 0, 0))
        );
        assert_eq!(
            p.bounds(secs(2026, 12, 31, 23, 59, 59)),
            (secs(2026, 12, 1, 0, 0, 0), secs(2027, 1, 1, 0, 0, 0))
        );
        assert_eq!(
            p.bounds(secs(2026, 4, 30, 1, 0, 0)),
            (secs(2026, 4, 1, 0, 0, 0), secs(2026, 5, 1, 0, 0, 0))
        );
        assert_eq!(
            p.bounds(secs(2026, 5, 1, 0, 0, 0)).0,
            secs(2026, 5, 1, 0, 0, 0)
        );
        // Lengths over the years: 1900 and 2100 are not leap years, 2000 and 2024 are.
        let lengths = |y: i64| -> Vec<i64> {
            (1..=12)
                .map(|m| {
                    let (s, e) = p.bounds(secs(y, m, 15, 0, 0, 0));
                    (e - s) / SECS_PER_DAY
                })
                .collect()
        };
        let common = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        let leap = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        assert_eq!(lengths(1900), common);
        assert_eq!(lengths(2000), leap);
        assert_eq!(lengths(2023), common);
        assert_eq!(lengths(2024), leap);
        assert_eq!(lengths(2100), common);
    }
}
